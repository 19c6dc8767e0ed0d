"""Train a fixed set of networks and hash their parameters: the bits a refactor must keep.

Every product runs in bpfast's own code (direct loops, tiny layers and the register-tiled
kernel, forced on), none in BLAS, whose bits depend on its build and the CPU; so the
hashes hold on any CPU with AVX2 and FMA. ``python tests/bits_fixture.py`` prints the
table that tests/data/trained_bits.json records.
"""
import hashlib
import itertools
import json
import os

import numpy as np

import bpfast
from bpfast import _kernels

SHAPES = ([2, 2, 1], [4, 16, 3], [12, 24, 16, 5])
DTYPES = ("float64", "float32")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUTS = (("sigmoid", "mse"), ("identity", "sse"), ("softmax", "cross_entropy"), ("softmax", "mse"))
OPTIMIZERS = (dict(), dict(momentum=0.9), dict(momentum=0.8, nesterov=True, weight_decay=1e-3),
              dict(weight_decay=1e-2))


def cases():
    for sizes, dtype, act, (out, loss), opt in itertools.product(SHAPES, DTYPES, ACTIVATIONS,
                                                                 OUTPUTS, OPTIMIZERS):
        key = f"{'-'.join(map(str, sizes))} {dtype} {act} {out} {loss} {sorted(opt.items())}"
        yield key, sizes, dtype, act, out, loss, opt


def trained_hash(sizes, dtype, act, out, loss, opt):
    rng = np.random.default_rng(sum(sizes))
    X = rng.normal(size=(37, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], 37)]
    net = bpfast.Network(sizes, act, out, loss, dtype=dtype, seed=5)
    try:
        losses = net.fit(X, Y, epochs=3, batch_size=8, lr=0.05, seed=11, **opt).loss
        for _ in range(2):
            net.train_step(X[:5], Y[:5], 0.01)
        net.forward(X[:7])
        net.backward(Y[:7])
        net.step(0.01)
    except FloatingPointError:
        return "diverged"
    if not np.isfinite(net.get_parameters()).all():
        return "diverged"
    digest = hashlib.sha256(net.get_parameters().tobytes())
    digest.update(np.array(losses).tobytes())
    digest.update(net.predict(X).tobytes())
    return digest.hexdigest()[:16]


def table():
    _kernels.small_gemm(1)
    try:
        return {key: trained_hash(*args) for key, *args in cases()}
    finally:
        _kernels.small_gemm(-1)     # automatic, the default


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(__file__), "data", "trained_bits.json")
    with open(path, "w") as f:
        json.dump(table(), f, indent=0, sort_keys=True)
    print(f"wrote {path}")
