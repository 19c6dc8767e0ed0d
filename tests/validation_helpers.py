"""What the validation tests share: the exact-exception context, small networks and data."""
import numpy as np

import bpfast

BACKENDS = ["cython", "reference"]


DTYPES = ["float64", "float32"]


class Raises:
    """``with raises(ValueError, "X"):`` -- the exact type, and every name in the message.

    With ``unchanged=net``, also that the refused call left the network's parameters as
    they were when the block began.
    """

    def __init__(self, exc, *names, unchanged=None):
        self.exc, self.names, self.net = exc, names, unchanged

    def __enter__(self):
        self.before = None if self.net is None else self.net.get_parameters()
        return self

    def __exit__(self, etype, value, tb):
        assert etype is not None, f"expected {self.exc.__name__}, nothing was raised"
        if etype is not self.exc:
            return False     # re-raise the unexpected exception, with its traceback
        for name in self.names:
            assert name in str(value), f"{name!r} is not named in: {value}"
        if self.net is not None:
            assert np.array_equal(self.net.get_parameters(), self.before), \
                "the refused call changed the parameters"
        self.value = value
        return True


raises = Raises


def net_of(backend="cython", dtype="float64", sizes=(3, 4, 2), **kw):
    kw.setdefault("activation", "tanh")
    kw.setdefault("output_activation", "sigmoid")
    return bpfast.Network(list(sizes), dtype=dtype, backend=backend, seed=0, **kw)


def data(n=5, n_in=3, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.uniform(size=(n, n_out))


def fdata(dtype=np.float64, n=4, n_in=3, n_out=2):
    rng = np.random.default_rng(1)
    return tuple(a.astype(dtype) for a in (rng.normal(size=(n, n_in)), rng.normal(size=(n_in, n_out)),
                                          rng.normal(size=n_out), rng.normal(size=(n, n_out))))


class Counting:
    """An array-like that counts how often it is converted (NumPy calls __array__)."""

    def __init__(self, a):
        self.a, self.n = np.asarray(a), 0

    def __array__(self, dtype=None, copy=None):
        self.n += 1
        return self.a if dtype is None else self.a.astype(dtype)


BAD_LR = [(0, ValueError), (0.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
          (float("inf"), ValueError), (-float("inf"), ValueError), (10 ** 400, ValueError),
          (np.float32("nan"), ValueError), ("0.1", TypeError), (None, TypeError),
          (True, TypeError), (np.bool_(True), TypeError), (1j, TypeError),
          (np.array(0.1), TypeError), ([0.1], TypeError)]


def variants(X, dtype):
    """(name, X') pairs that must give exactly the results of the canonical X."""
    other = np.float32 if dtype == "float64" else np.float64
    canon = X.astype(dtype)
    F = np.asfortranarray(canon)
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3), dtype=dtype)
    wide[::2, ::3] = canon
    readonly = canon.copy()
    readonly.flags.writeable = False
    raw = np.zeros(canon.nbytes + 1, dtype=np.uint8)
    misaligned = np.ndarray(canon.shape, dtype=canon.dtype, buffer=raw, offset=1)
    misaligned[...] = canon
    out = [("list", canon.tolist()), ("tuple", tuple(map(tuple, canon.tolist()))),
           ("fortran", F), ("strided", wide[::2, ::3]), ("reversed", canon[::-1].copy()[::-1]),
           ("readonly", readonly), ("misaligned", misaligned),
           ("matrix", np.asmatrix(canon)), ("other-float", canon.astype(other))]
    return out
