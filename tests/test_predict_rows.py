"""predict with its rows cut between threads (forward_rows in _engine.pyx): when every
layer's product runs in the register kernel and its weights are small or packed, each
thread runs a block of rows through all the layers. The bits must be those of one thread, and of
training's forward, which never cuts by rows."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpfast
from bpfast import _kernels

pytestmark = pytest.mark.skipif(_kernels.simd_level() < 1,
                                reason="the register kernel needs AVX2 and FMA")


@pytest.fixture(autouse=True)
def every_product_in_the_kernel():
    """Small layers go to BLAS by default on AVX-512; the kernel's path is under test."""
    _kernels.small_gemm(2)
    yield
    _kernels.small_gemm(-1)


def network(sizes, dtype, activation="relu", output="softmax", loss="cross_entropy"):
    return bpfast.Network(sizes, activation, output, loss, dtype=dtype, seed=5)


def rows_of(net, rows, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, net.sizes[0])).astype(net.dtype)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 70), min_size=2, max_size=5),
       rows=st.integers(1, 160), dtype=st.sampled_from(["float32", "float64"]),
       activation=st.sampled_from(["relu", "tanh", "sigmoid"]),
       output=st.sampled_from(["softmax", "identity", "sigmoid"]))
def test_the_bits_at_any_thread_count(sizes, rows, dtype, activation, output):
    net = network(sizes, dtype, activation, output, "mse")
    X = rows_of(net, rows)
    one = net.predict(X, n_threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(net.predict(X, n_threads=threads), one)
    np.testing.assert_array_equal(net.forward(X), one)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [24, 47, 48, 301, 1024])
def test_a_realistic_network(dtype, rows):
    _kernels.small_gemm(-1)             # as it runs for users on this CPU
    net = network([784, 128, 10], dtype)
    X = rows_of(net, rows)
    one = net.predict(X, n_threads=1)
    for threads in (2, 3, None):
        np.testing.assert_array_equal(net.predict(X, n_threads=threads), one)
    np.testing.assert_array_equal(net.forward(X), one)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [127, 128, 200, 300])
def test_a_wide_layer_is_cut_by_rows_once_packed(dtype, rows):
    """A layer over 1 MB of weights joins the cut by rows once its weights are packed,
    from 128 rows (before, each thread would copy all of them): the bits of one thread
    and of forward, before and after the packing."""
    net = network([300, 1100, 20], dtype)          # 1.3 MB of float32 weights
    X = rows_of(net, rows)
    want = net.forward(X)
    for _ in range(3):                             # packed from the second prediction
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(net.predict(X, n_threads=threads), want)
    assert net._packs.current()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_classifier_by_default_has_the_bits_of_training_forward(dtype):
    """With the kernel's own choice (on AVX-512 its output layer runs there too, so its
    rows are cut), 784-128-10 predicts the bits of training's forward on any thread count."""
    _kernels.small_gemm(-1)
    net = network([784, 128, 10], dtype)
    X = rows_of(net, 256)
    want = net.forward(X)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(net.predict(X, n_threads=threads), want)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_the_rows_are_cut_between_threads():
    # Each product and element-wise pass of this network is far below the sizes that
    # split by themselves: only a cut by rows gives the workers blocks.
    net = network([50, 40, 30, 5], "float64")
    X = rows_of(net, 200)
    before = _kernels.team_worker_blocks()
    for _ in range(50):
        net.predict(X, n_threads=1)
    assert _kernels.team_worker_blocks() == before
    # A worker that wakes late finds the blocks taken by the caller: try a while.
    for _ in range(500):
        net.predict(X, n_threads=2)
        if _kernels.team_worker_blocks() > before:
            break
    assert _kernels.team_worker_blocks() > before


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 30, 199])
def test_a_non_finite_input_in_any_block_is_refused(bad, row):
    net = network([50, 40, 30, 5], "float32")
    X = rows_of(net, 200)
    X[row, 7] = bad
    for threads in (1, 2, 3):
        with pytest.raises(ValueError, match="X"):
            net.predict(X, n_threads=threads)


def test_kept_scratch_memory_never_shows_through():
    """A prediction's scratch memory is kept for the next one (Engine.take_scratch): a
    larger buffer than needed, left over from a bigger batch, must not change a bit, nor
    must threads predicting at once share one."""
    import threading
    net = network([40, 300, 30, 4], "float32")
    batches = [rows_of(net, rows, seed) for seed, rows in enumerate((300, 7, 130, 2, 300))]
    fresh = [net.clone().predict(X) for X in batches]
    for _ in range(2):
        for X, want in zip(batches, fresh):
            np.testing.assert_array_equal(net.predict(X), want)
    errors = []

    def run(X, want):
        for _ in range(30):
            if not np.array_equal(net.predict(X, n_threads=1), want):
                errors.append("bits differ")

    threads = [threading.Thread(target=run, args=pair) for pair in zip(batches, fresh)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
