"""Validation at the boundary of the functional kernels (bpfast.functional and the
top-level dense_forward, backprop_error, sgd_update): exact exception types, messages that
name the argument, every accepted input form converted once.
"""
import numpy as np
import pytest

import bpfast
from bpfast import functional
from validation_helpers import BAD_LR, Counting, fdata, raises, variants

# np.matrix is one of the accepted input types; its PendingDeprecationWarning is NumPy's business.
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


@pytest.mark.parametrize("args, exc, name", [
    (lambda X, W, b: (X[:, :2], W, b), ValueError, "X"),
    (lambda X, W, b: (X[None], W, b), ValueError, "X"),
    (lambda X, W, b: (X[:0], W, b), ValueError, "X"),
    (lambda X, W, b: (X, W[:0], b), ValueError, "W"),
    (lambda X, W, b: (X, W[:, 0], b), ValueError, "W"),
    (lambda X, W, b: (X, W[None], b), ValueError, "W"),
    (lambda X, W, b: (X, W, b[:1]), ValueError, "b"),
    (lambda X, W, b: (X, W, b[None]), ValueError, "b"),
    (lambda X, W, b: (X, W, b[0]), ValueError, "b"),
    (lambda X, W, b: (np.where(X > 0, np.nan, X), W, b), ValueError, "X"),
    (lambda X, W, b: (X, np.full_like(W, np.inf), b), ValueError, "W"),
    (lambda X, W, b: (X, W, b + np.nan), ValueError, "b"),
    (lambda X, W, b: (X + 0j, W, b), TypeError, "X"),
    (lambda X, W, b: (X, W.astype(object), b), TypeError, "W"),
    (lambda X, W, b: (X, W, None), TypeError, "b"),
    (lambda X, W, b: ("X", W, b), TypeError, "X"),
])
def test_dense_forward_bad_arguments(args, exc, name):
    X, W, b, _ = fdata()
    with raises(exc, name):
        bpfast.dense_forward(*args(X, W, b), "sigmoid")


@pytest.mark.parametrize("activation, exc", [("gelu", ValueError), (None, TypeError), (3, TypeError)])
def test_dense_forward_bad_activation(activation, exc):
    X, W, b, _ = fdata()
    with raises(exc, "activation"):
        bpfast.dense_forward(X, W, b, activation)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_forward_and_backprop_error_accept_every_form(dtype):
    X, W, b, D = fdata(dtype)
    want = bpfast.dense_forward(X, W, b, "tanh")
    want_E = bpfast.backprop_error(D, W)
    assert want.dtype == dtype and want_E.dtype == dtype
    for (name, Xv), (_, Wv), (_, Dv) in zip(variants(X, dtype), variants(W, dtype), variants(D, dtype)):
        if name == "other-float" or (dtype == np.float32 and name in ("list", "tuple")):
            continue     # mixing dtypes (and lists) promote to float64, tested below
        bv = b.tolist() if dtype == np.float64 else b
        assert np.array_equal(bpfast.dense_forward(Xv, Wv, bv, "tanh"), want), name
        assert np.array_equal(bpfast.backprop_error(Dv, Wv), want_E), name
    assert np.array_equal(bpfast.dense_forward(X[0], W, b, "tanh"), want[:1])
    assert np.array_equal(bpfast.backprop_error(D[0], W), want_E[:1])


def test_functional_result_dtype_rules():
    X, W, b, D = fdata(np.float32)
    assert bpfast.dense_forward(X, W, b).dtype == np.float32
    assert bpfast.dense_forward(X, W.astype(np.float64), b).dtype == np.float64
    assert bpfast.dense_forward(X.tolist(), W, b).dtype == np.float64     # lists are float64
    assert bpfast.dense_forward(X.astype(np.float16), W, b).dtype == np.float32
    assert bpfast.backprop_error(D.astype(np.int32), W).dtype == np.float64


@pytest.mark.parametrize("args, exc, name", [
    (lambda D, W: (D[:, :1], W), ValueError, "delta"),
    (lambda D, W: (D[:0], W), ValueError, "delta"),
    (lambda D, W: (D, W[:, :0]), ValueError, "W"),
    (lambda D, W: (D, W.ravel()), ValueError, "W"),
    (lambda D, W: (D * np.nan, W), ValueError, "delta"),
    (lambda D, W: (D, W.astype(complex)), TypeError, "W"),
    (lambda D, W: (None, W), TypeError, "delta"),
])
def test_backprop_error_bad_arguments(args, exc, name):
    _, W, _, D = fdata()
    with raises(exc, name):
        bpfast.backprop_error(*args(D, W))


def test_sgd_update_bad_arguments():
    W = np.ones((3, 2))
    g = np.ones((3, 2))
    with raises(TypeError, "W"):
        bpfast.sgd_update(W.tolist(), g, 0.1)
    with raises(TypeError, "W"):
        bpfast.sgd_update(W.astype(np.int64), g, 0.1)
    with raises(TypeError, "W"):
        bpfast.sgd_update(W.astype(np.float16), g, 0.1)
    ro = W.copy()
    ro.flags.writeable = False
    with raises(ValueError, "W", "read-only"):
        bpfast.sgd_update(ro, g, 0.1)
    with raises(ValueError, "grad"):
        bpfast.sgd_update(W, g.T, 0.1)
    with raises(ValueError, "grad"):
        bpfast.sgd_update(W, g.ravel(), 0.1)
    with raises(ValueError, "grad"):
        bpfast.sgd_update(W, g * np.nan, 0.1)
    with raises(ValueError, "grad"):
        bpfast.sgd_update(W.astype(np.float32), g * 1e300, 0.1)
    with raises(TypeError, "grad"):
        bpfast.sgd_update(W, g + 1j, 0.1)
    for lr, exc in BAD_LR:
        with raises(exc, "lr"):
            bpfast.sgd_update(W, g, lr)
    assert np.array_equal(W, np.ones((3, 2)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_update_every_layout_of_W_and_grad(dtype):
    rng = np.random.default_rng(0)
    W0 = rng.normal(size=(4, 3)).astype(dtype)
    G = rng.normal(size=(4, 3))
    want = W0.copy()
    bpfast.sgd_update(want, G.astype(dtype), 0.25)
    np.testing.assert_allclose(want, W0 - dtype(0.25) * G.astype(dtype), rtol=1e-6)
    for name, Gv in variants(G.astype(dtype).astype(np.float64), dtype):
        if name == "other-float":
            continue
        W = W0.copy()
        bpfast.sgd_update(W, Gv, 0.25)
        assert np.array_equal(W, want), name
    # W itself strided, Fortran-ordered, misaligned, 0-d and empty
    big = np.zeros((8, 6), dtype=dtype)
    big[::2, ::2] = W0
    bpfast.sgd_update(big[::2, ::2], G.astype(dtype), 0.25)
    assert np.array_equal(big[::2, ::2], want) and not big[1::2].any() and not big[:, 1::2].any()
    F = np.asfortranarray(W0)
    bpfast.sgd_update(F, G.astype(dtype), 0.25)
    assert np.array_equal(F, want)
    raw = np.zeros(W0.nbytes + 1, np.uint8)
    M = np.ndarray(W0.shape, dtype=dtype, buffer=raw, offset=1)
    M[...] = W0
    bpfast.sgd_update(M, G.astype(dtype), 0.25)
    assert np.array_equal(M, want)
    s = np.array(1.0, dtype=dtype)
    bpfast.sgd_update(s, np.array(2.0), 0.5)
    assert s == 0.0
    bpfast.sgd_update(np.zeros((0, 3), dtype=dtype), np.zeros((0, 3)), 0.5)


def test_sgd_update_with_grad_aliasing_W():
    W = np.arange(6.0)
    bpfast.sgd_update(W, W, 0.5)
    assert np.array_equal(W, np.arange(6.0) * 0.5)
    W = np.arange(6.0)
    bpfast.sgd_update(W[1:], W[:-1], 1.0)      # overlapping, shifted: numpy semantics
    assert np.array_equal(W, [0, 1, 1, 1, 1, 1])


def test_functional_extras_validate_and_accept_read_only():
    A = np.full((3, 2), 0.5)
    E = np.ones((3, 2))
    with raises(ValueError, "E"):
        functional.activation_backward(E[:2], A, "sigmoid")
    with raises(ValueError, "activation"):
        functional.activation_backward(E, A, "softmax")
    with raises(ValueError, "loss"):
        functional.output_delta(A, E, "hinge", "sigmoid")
    with raises(ValueError, "cross_entropy"):
        functional.output_delta(A, E, "cross_entropy", "sigmoid")
    with raises(ValueError, "Y"):
        functional.output_delta(A, E[:, :1], "mse", "sigmoid")
    with raises(ValueError, "delta"):
        functional.weight_gradients(A, E[:2])
    with raises(TypeError, "A_prev"):
        functional.weight_gradients(A.astype(complex), E)
    ro_A, ro_E = A.copy(), E.copy()
    ro_A.flags.writeable = ro_E.flags.writeable = False
    got = functional.activation_backward(ro_E, ro_A, "sigmoid")
    assert np.array_equal(got, np.full((3, 2), 0.25))
    assert np.array_equal(ro_E, np.ones((3, 2)))            # never changed in place
    E2 = np.ones((3, 2))
    functional.activation_backward(E2, A, "sigmoid")
    assert np.array_equal(E2, np.ones((3, 2)))
    loss, delta = functional.output_delta(ro_A, ro_E, "mse", "identity")
    assert loss == 0.25 and delta.shape == (3, 2)
    dW, db = functional.weight_gradients(ro_A, ro_E)
    assert np.array_equal(dW, np.full((2, 2), 1.5)) and np.array_equal(db, [3.0, 3.0])


def test_reference_functions_agree_with_the_compiled_ones_on_converted_input():
    X, W, b, D = fdata()
    from bpfast import reference
    got = bpfast.dense_forward(X.tolist(), np.asfortranarray(W), b, "sigmoid")
    want = reference.dense_forward(X.tolist(), W.tolist(), b.tolist(), "sigmoid")
    np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_allclose(bpfast.backprop_error(D[::-1][::-1], W),
                               reference.backprop_error(D.tolist(), W.tolist()), rtol=1e-13)


def test_functional_arguments_are_converted_exactly_once():
    X, W, b, D = fdata()
    args = [Counting(a) for a in (X, W, b)]
    bpfast.dense_forward(*args, "tanh")
    assert [a.n for a in args] == [1, 1, 1]
    args = [Counting(a) for a in (D, W)]
    bpfast.backprop_error(*args)
    assert [a.n for a in args] == [1, 1]
    for fn, arrays in [(functional.output_delta, (np.abs(D), D)), (functional.weight_gradients, (X, D)),
                       (functional.activation_backward, (D, np.tanh(D)))]:
        args = [Counting(a) for a in arrays]
        extra = {"output_delta": ("mse", "relu"), "weight_gradients": (),
                 "activation_backward": ("tanh",)}[fn.__name__]
        fn(*args, *extra)
        assert [a.n for a in args] == [1, 1], fn.__name__
    g = Counting(np.ones_like(W))
    bpfast.sgd_update(W.copy(), g, 0.1)
    assert g.n == 1
