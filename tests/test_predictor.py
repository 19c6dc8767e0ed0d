"""Network.predictor(): a frozen copy for inference with weights packed once; the bits
of the Network's predict, on every path, thread count and SIMD level."""
import pickle

import numpy as np
import pytest

import bpfast
from bpfast import _kernels

# Wide (float64's 784 rows of W in two packed blocks), wider, deep (two blocks in float32
# too), narrow only.
SHAPES = [[784, 300, 10], [50, 1030, 20, 3], [1100, 260, 2], [20, 8, 2]]


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.mark.parametrize("sizes", SHAPES)
def test_the_bits_of_predict_at_every_batch_and_thread_count(sizes, dtype):
    net = bpfast.Network(sizes, "relu", "softmax", "cross_entropy", dtype=dtype, seed=3)
    frozen = net.predictor()
    rng = np.random.default_rng(0)
    for rows in (1, 2, 5, 13, 64, 200):
        X = rng.normal(size=(rows, sizes[0]))
        for threads in (1, 2, 3):
            want = net.predict(X, n_threads=threads)
            assert np.array_equal(frozen.predict(X, n_threads=threads), want)
            assert np.array_equal(want, net.predict(X, n_threads=1))


def test_the_packed_weights_are_what_it_reads(dtype):
    """Wide layers are packed, narrow ones not, and spoiling the packed copy changes the
    predictions of a batch (so the test above compares the packed path)."""
    net = bpfast.Network([64, 700, 5], dtype=dtype, seed=0)
    frozen = net.predictor()
    packs = frozen._net._engine.packs
    if not _kernels.small_gemm_used(40, 700, 64, np.dtype(dtype)) or packs is None:
        pytest.skip("the register kernel is off on this CPU")
    X = np.random.default_rng(1).normal(size=(40, 64))
    before, one = frozen.predict(X), frozen.predict(X[:1])
    packs[...] = 0
    assert not np.array_equal(frozen.predict(X), before)
    assert not np.array_equal(frozen.predict(X[:1]), one)      # one row reads it too
    assert bpfast.Network([20, 8, 2]).predictor()._net._engine.packs is None


def test_a_frozen_copy_does_not_follow_the_network(dtype):
    net = bpfast.Network([30, 400, 3], "tanh", "softmax", "cross_entropy", dtype=dtype, seed=1)
    X = np.random.default_rng(2).normal(size=(50, 30))
    Y = np.eye(3)[np.arange(50) % 3]
    frozen, twin = net.predictor(), net.clone()
    net.fit(X, Y, epochs=2, batch_size=10, lr=0.1)
    net.weights[0][...] = 0
    assert np.array_equal(frozen.predict(X), twin.predict(X))
    assert not np.array_equal(frozen.predict(X), net.predict(X))


def test_the_bits_at_the_other_simd_level(dtype):
    """Packed at one level and used at another (the packs are then ignored), or packed
    at the other: the same chains, the same bits."""
    net = bpfast.Network([100, 600, 4], dtype=dtype, seed=5)
    X = np.random.default_rng(3).normal(size=(30, 100))
    frozen = net.predictor()
    try:
        for level in (1, 2):
            if _kernels.simd_level(level) != level:
                continue
            want = net.predict(X)          # the products each level picks, unpacked
            assert np.array_equal(frozen.predict(X), want)
            assert np.array_equal(net.predictor().predict(X), want)
    finally:
        _kernels.simd_level(2)


def test_it_validates_X_as_predict_does(dtype):
    frozen = bpfast.Network([40, 300, 2], dtype=dtype).predictor()
    with pytest.raises(ValueError, match="X must have 40 columns"):
        frozen.predict(np.zeros((3, 41)))
    X = np.zeros((3, 40))
    X[1, 7] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        frozen.predict(X)
    with pytest.raises(ValueError, match="n_threads"):
        frozen.predict(np.zeros((3, 40)), n_threads=0)


def test_pickle_threads_and_repr(dtype):
    net = bpfast.Network([25, 520, 3], dtype=dtype, seed=2, n_threads=1)
    frozen = net.predictor(n_threads=2)
    assert frozen.n_threads == 2 and net.n_threads == 1
    assert frozen.sizes == [25, 520, 3] and frozen.dtype == np.dtype(dtype)
    X = np.random.default_rng(4).normal(size=(9, 25))
    again = pickle.loads(pickle.dumps(frozen))
    assert np.array_equal(again.predict(X), frozen.predict(X))
    assert "Predictor(sizes=[25, 520, 3]" in repr(frozen)
    for bad in (0, -1, 1.5):
        with pytest.raises((ValueError, TypeError), match="n_threads"):
            net.predictor(n_threads=bad)


def test_the_reference_backend_has_a_predictor_too():
    net = bpfast.Network([6, 5, 2], backend="reference", seed=0)
    X = np.random.default_rng(5).normal(size=(4, 6))
    assert np.array_equal(net.predictor().predict(X), net.predict(X))
