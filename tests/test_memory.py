"""Leak tests: resident memory and Python's allocated blocks stay flat over many calls.

By default the counts are reduced so the module takes a few seconds; with
``BPFAST_FULL_MEMTEST=1`` it runs the full counts (100 000 train_step calls, 1 000 fit
calls, ...) and prints the RSS figures (run with ``-s`` to see them):

    BPFAST_FULL_MEMTEST=1 python -m pytest -s tests/test_memory.py

Two measures, after a warm-up that lets workspaces and caches reach their final size:
- resident set size from /proc/self/statm: must grow by less than a few MB;
- ``sys.getallocatedblocks()`` (live blocks of Python's allocator): a reference leaked by
  the compiled code (a float, a tuple, an exception per call) shows up here exactly, long
  before it is visible in the RSS, so its growth must stay far below the number of calls.
"""
import gc
import os
import sys
import tempfile

import numpy as np
import pytest

import bpfast

FULL = os.environ.get("BPFAST_FULL_MEMTEST", "") not in ("", "0")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024 * 1024
RSS_LIMIT = 4 * MB

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="needs /proc/self/statm (Linux)")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def count(full, reduced):
    return full if FULL else reduced


def measure(name, body, n, warmup):
    """Run body(i) for i < warmup, then n times; assert flat RSS and allocated blocks."""
    def run(times):
        """body(i) for i < times; then, after a collection, the RSS and the Python blocks."""
        for i in range(times):
            body(i)
        gc.collect()
        return rss(), sys.getallocatedblocks()

    rss0, blocks0 = run(warmup)
    rss1, blocks1 = run(n)
    grow, dblocks = rss1 - rss0, blocks1 - blocks0
    print(f"\n[memory] {name}: {n} calls, RSS {rss0 / MB:.1f} MB -> {rss1 / MB:.1f} MB "
          f"({grow / MB:+.2f} MB), Python blocks {blocks0} -> {blocks1} ({dblocks:+d})")
    assert grow < RSS_LIMIT, f"{name}: RSS grew by {grow / MB:.2f} MB over {n} calls"
    # A leak of one object per call would add >= n blocks; allow incidental caches.
    assert dblocks < max(500, n // 50), f"{name}: {dblocks} Python blocks more after {n} calls"
    return rss0, rss1


def problem(n=64, sizes=(4, 16, 3), seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)].astype(dtype)
    return X, Y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_step_is_flat(dtype):
    net = bpfast.Network([4, 16, 3], activation="tanh", output_activation="softmax",
                         loss="cross_entropy", dtype=dtype, seed=0)
    X, Y = problem(dtype=np.dtype(dtype))
    batches = [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 64, 8)]

    def body(i):
        xb, yb = batches[i % 8]
        net.train_step(xb, yb, 0.01)

    measure(f"train_step {dtype} (fast path)", body, count(100_000, 20_000), 2_000)


def test_train_step_through_validation_is_flat():
    """Lists, other dtypes and Fortran order take the Python validation path every call."""
    net = bpfast.Network([4, 16, 3], seed=0)
    X, Y = problem()
    forms = [(X[:8].tolist(), Y[:8].tolist()), (X[:8].astype(np.float32), Y[:8]),
             (np.asfortranarray(X[:8]), Y[:8]), (X[:8].astype(">f8"), Y[:8].astype(">f8"))]

    def body(i):
        xb, yb = forms[i % 4]
        net.train_step(xb, yb, 0.01)

    measure("train_step (validated inputs)", body, count(50_000, 5_000), 1_000)


def test_fit_is_flat():
    net = bpfast.Network([4, 16, 3], activation="relu", output_activation="softmax",
                         loss="cross_entropy", seed=0)
    X, Y = problem(n=64)
    Xv, Yv = problem(n=16, seed=1)
    options = [dict(), dict(momentum=0.9, nesterov=True), dict(weight_decay=1e-3),
               dict(validation_data=(Xv, Yv), callback=lambda e, h: None),
               dict(lr_schedule="invscaling", shuffle=False)]

    def body(i):
        net.fit(X, Y, epochs=3, batch_size=16, lr=0.01, seed=i, **options[i % len(options)])

    measure("fit", body, count(1_000, 200), 50)


def test_forward_backward_step_predict_evaluate_are_flat():
    net = bpfast.Network([4, 16, 3], seed=0)
    X, Y = problem(n=64)
    big = np.tile(X, (150, 1))          # 9600 rows: predict() works in chunks

    def body(i):
        net.forward(X[: 1 + i % 64])
        net.backward(Y[: 1 + i % 64])
        net.step(0.01)
        if i % 50 == 0:
            net.predict(big)
        net.evaluate(X, Y)

    measure("forward/backward/step/predict/evaluate", body, count(20_000, 3_000), 500)


def test_functional_api_is_flat():
    rng = np.random.default_rng(0)
    X, W, b, D = rng.normal(size=(32, 8)), rng.normal(size=(8, 5)), rng.normal(size=5), rng.normal(size=(32, 5))
    W2 = W.copy()
    G = rng.normal(size=W.shape) * 1e-6

    def body(i):
        bpfast.dense_forward(X, W, b, "softmax")
        bpfast.backprop_error(D, W)
        bpfast.sgd_update(W2, G, 0.1)
        bpfast.functional.output_delta(np.abs(D), D, "mse", "relu")
        bpfast.functional.weight_gradients(X, D)
        bpfast.functional.activation_backward(D, np.tanh(D), "tanh")

    measure("functional kernels", body, count(50_000, 5_000), 500)


def test_error_paths_are_flat():
    """Every refused call builds and drops an exception; nothing may stay behind."""
    net = bpfast.Network([4, 16, 3], activation="identity", output_activation="identity", seed=0)
    X, Y = problem(n=16)
    bad = [lambda: net.forward(X[:, :3]), lambda: net.train_step(X, Y[:5], 0.1),
           lambda: net.train_step(X, Y, -1.0), lambda: net.fit(X, Y, epochs=0),
           lambda: net.backward(Y), lambda: bpfast.dense_forward(X, X, X[0], "relu"),
           lambda: net.forward(np.full((2, 4), np.nan))]
    huge = np.full((16, 4), 1e150)

    def body(i):
        for call in bad:
            try:
                call()
            except (ValueError, TypeError, RuntimeError):
                pass
        if i % 10 == 0:     # divergence: FloatingPointError and a parameter restore
            try:
                net.fit(huge, Y, epochs=1, lr=1e10)
            except FloatingPointError:
                pass

    measure("error paths", body, count(20_000, 2_000), 200)


def test_save_load_is_flat():
    net = bpfast.Network([4, 16, 3], seed=0)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.npz")

        def body(i):
            bpfast.save(net, path)
            bpfast.load(path).predict(np.ones((2, 4)))

        measure("save/load", body, count(2_000, 100), 50)
        assert os.listdir(d) == ["m.npz"]
    fds = len(os.listdir("/proc/self/fd"))
    assert fds < 100, f"{fds} file descriptors open: one is leaked per save/load?"


def test_many_networks_are_freed():
    """Creating and dropping networks (each with its engine workspace) returns the memory."""
    X, Y = problem(n=32, sizes=(8, 16, 4))

    def body(i):
        net = bpfast.Network([8, 16, 16, 4], backend="cython", seed=i)
        net.train_step(X, Y, 0.01)
        net.predict(X)

    measure("create/train/drop networks", body, count(5_000, 500), 50)


def test_reference_backend_is_flat():
    net = bpfast.Network([3, 4, 2], backend="reference", seed=0)
    X, Y = problem(n=8, sizes=(3, 4, 2))

    def body(i):
        net.train_step(X, Y, 0.01)
        if i % 20 == 0:
            net.fit(X, Y, epochs=1, batch_size=4)

    measure("reference backend", body, count(5_000, 500), 100)


def test_the_kernels_copy_buffers_leave_with_their_threads():
    """A wide layer's product copies its weights into a per-thread buffer (megabytes);
    a server that predicts from a new thread per request must not keep one per thread."""
    import threading
    net = bpfast.Network([600, 2000, 3], dtype="float64", seed=0, n_threads=1)
    X = np.random.default_rng(0).normal(size=(32, 600))

    def predict_in_a_thread():
        worker = threading.Thread(target=net.predict, args=(X,))
        worker.start()
        worker.join()

    for _ in range(3):
        predict_in_a_thread()
    gc.collect()
    before = rss()
    for _ in range(count(200, 40)):          # each buffer is about 8 MB
        predict_in_a_thread()
    gc.collect()
    grown = rss() - before
    assert grown < 8 * RSS_LIMIT, f"{grown / MB:.1f} MB more after the threads ended"
