"""n_threads: the thread team trains and predicts to the same bits at every thread count.

Products are cut by shape alone (BLAS) or split where the cut cannot change a bit (the
register kernel, element-wise loops), so 1, 2 and 3 threads must give identical
parameters. Most tests lower the split thresholds so that small, fast networks are cut
as a large one is; one test keeps the defaults on a network large enough to be cut.
"""
import hashlib
import multiprocessing
import os
import threading

import numpy as np
import pytest

import bpfast
from bpfast import _kernels
from helpers import child_output, run_together

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUTS = (("softmax", "cross_entropy"), ("sigmoid", "mse"), ("identity", "sse"),
           ("sigmoid", "binary_cross_entropy"), ("exp", "poisson"))
OPTIMIZERS = (dict(), dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
              dict(optimizer="adam", weight_decay=1e-2), dict(optimizer="adamw"),
              dict(optimizer="rprop"), dict(clip_norm=0.5, momentum=0.5))


@pytest.fixture
def small_splits():
    """Split products from 512 multiply-adds (in up to 4 blocks) and loops from 128
    elements on."""
    before = _kernels.split_thresholds()
    _kernels.split_thresholds(256, 64, 4)
    yield
    _kernels.split_thresholds(*before)


@pytest.fixture(params=["blas", "kernel"])
def product_path(request):
    """Products in BLAS (cut by shape) or in the register kernel (split by threads)."""
    if request.param == "kernel":
        if not _kernels.small_gemm(1):
            _kernels.small_gemm(-1)
            pytest.skip("the register kernel needs AVX2 and FMA")
    else:
        _kernels.small_gemm(0)
    yield request.param
    _kernels.small_gemm(-1)


def data(sizes, dtype, rows=150, seed=0, positive=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    if positive:
        Y = rng.poisson(1.0, size=(rows, sizes[-1])).astype(dtype)
    else:
        Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], rows)]
    return X, Y


def trained(sizes, act, out, loss, dtype, opt, n_threads, rows=150, batch=40, epochs=2):
    X, Y = data(sizes, dtype, rows, positive=loss == "poisson")
    net = bpfast.Network(sizes, act, out, loss, dtype=dtype, seed=3, n_threads=n_threads)
    lr = 0.01 if opt.get("optimizer") in ("adam", "adamw") else 0.05
    if loss == "sse":
        lr /= 100
    history = net.fit(X, Y, epochs=epochs, batch_size=batch, lr=lr, seed=5, **opt)
    net.train_step(X[:33], Y[:33], 0.01)
    return net, history


def fingerprint(net, history, X):
    digest = hashlib.sha256(net.get_parameters().tobytes())
    digest.update(np.array(history.loss).tobytes())
    digest.update(net.predict(X).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("out, loss", OUTPUTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_and_loss_trains_to_the_same_bits_on_1_2_and_3_threads(
        small_splits, product_path, act, out, loss, dtype):
    sizes = [24, 48, 40, 5]
    X, _ = data(sizes, dtype)
    prints = {t: fingerprint(*trained(sizes, act, out, loss, dtype, {}, t), X)
              for t in (1, 2, 3)}
    assert prints[1] == prints[2] == prints[3]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: "-".join(map(str, o.values())) or "sgd")
def test_every_optimizer_trains_to_the_same_bits_on_1_2_and_3_threads(small_splits, product_path,
                                                                       opt, dtype):
    sizes = [24, 48, 40, 5]
    X, _ = data(sizes, dtype)
    prints = {t: fingerprint(*trained(sizes, "tanh", "softmax", "cross_entropy", dtype, opt, t),
                             X) for t in (1, 2, 3)}
    assert prints[1] == prints[2] == prints[3]


def test_the_manual_calls_give_the_same_bits_on_1_and_2_threads(small_splits):
    sizes = [24, 48, 5]
    X, Y = data(sizes, "float64")
    nets = []
    for t in (1, 2):
        net = bpfast.Network(sizes, "relu", "softmax", "cross_entropy", seed=1, n_threads=t)
        net.forward(X)
        net.backward(Y)
        net.step(0.1)
        loss, grad = net.loss_and_gradient(X, Y)
        nets.append((net.get_parameters(), loss, grad, net.predict(X), net.evaluate(X, Y)))
    for a, b in zip(*nets):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_network_large_enough_to_be_cut_trains_to_the_same_bits_at_default_thresholds(dtype):
    sizes = [784, 256, 10]           # its products are cut in 2-4 blocks by default
    X, Y = data(sizes, dtype, rows=256)
    prints = {}
    for t in (1, 2, 3):
        net = bpfast.Network(sizes, "relu", "softmax", "cross_entropy", dtype=dtype, seed=1,
                             n_threads=t)
        history = net.fit(X, Y, epochs=2, batch_size=128, lr=0.05, seed=2)
        prints[t] = fingerprint(net, history, X)
    assert prints[1] == prints[2] == prints[3]


def test_predict_gives_the_same_bits_as_forward_at_any_thread_count():
    net = bpfast.Network([784, 512, 10], "relu", "softmax", "cross_entropy", dtype="float32",
                         seed=0)
    X, _ = data([784, 512, 10], "float32", rows=300)
    reference = net.predict(X, n_threads=1)
    for t in (2, 3, None):
        assert np.array_equal(net.predict(X, n_threads=t), reference)
    assert np.array_equal(net.forward(X), reference)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_more_than_one_thread_runs_blocks_on_the_workers_and_one_thread_does_not(small_splits):
    sizes = [24, 48, 5]
    X, Y = data(sizes, "float64", rows=400)
    net = bpfast.Network(sizes, "relu", "softmax", "cross_entropy", seed=1, n_threads=1)
    before = _kernels.team_worker_blocks()
    net.fit(X, Y, epochs=3, batch_size=100, lr=0.1)
    assert _kernels.team_worker_blocks() == before
    # A worker that wakes late finds the blocks taken by the caller: on a busy machine
    # that can happen for a while, so train until one has run (or 200 fits).
    for _ in range(200):
        net.fit(X, Y, epochs=3, batch_size=100, lr=0.1, n_threads=2)
        if _kernels.team_worker_blocks() > before:
            break
    assert _kernels.team_worker_blocks() > before


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (65, ValueError),
                                        (2.0, TypeError), ("2", TypeError), (True, TypeError)])
def test_a_bad_thread_count_is_refused_everywhere_with_its_name(bad, error):
    net = bpfast.Network([3, 4, 2], seed=0)
    X, Y = np.zeros((5, 3)), np.zeros((5, 2))
    calls = [lambda: bpfast.Network([3, 4, 2], n_threads=bad),
             lambda: setattr(net, "n_threads", bad),
             lambda: net.fit(X, Y, epochs=1, n_threads=bad),
             lambda: net.train_step(X, Y, 0.1, n_threads=bad),
             lambda: net.predict(X, n_threads=bad),
             lambda: net.evaluate(X, Y, n_threads=bad)]
    for call in calls:
        with pytest.raises(error, match="n_threads"):
            call()
    assert net.n_threads is None


def test_n_threads_is_kept_by_config_clone_pickle_and_shown_in_the_repr():
    import pickle
    net = bpfast.Network([3, 4, 2], seed=0, n_threads=3)
    assert net.config()["n_threads"] == 3
    assert net.clone().n_threads == 3
    assert pickle.loads(pickle.dumps(net)).n_threads == 3
    assert "n_threads=3" in repr(net)
    net.n_threads = None
    assert f"n_threads=None (now {bpfast.default_threads()})" in repr(net)


def test_the_default_is_the_allowed_cpus_capped_by_threadpoolctls_blas_limit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cpus = len(os.sched_getaffinity(0))
    limit = _kernels.blas_thread_limit()
    assert bpfast.default_threads() == min(cpus, limit) if limit > 0 else cpus
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert _kernels.blas_thread_limit() == 1
        assert bpfast.default_threads() == 1
    assert _kernels.blas_thread_limit() == limit


def test_a_fit_leaves_the_blas_thread_limit_as_it_found_it():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = _kernels.blas_thread_limit()
    seen = []
    X, Y = data([784, 256, 10], "float32", rows=256)
    net = bpfast.Network([784, 256, 10], "relu", "softmax", "cross_entropy", dtype="float32")
    net.fit(X, Y, epochs=2, batch_size=128,
            callback=lambda n, h: seen.append(_kernels.blas_thread_limit()))
    assert seen == [before, before]         # between epochs, and after
    assert _kernels.blas_thread_limit() == before
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        net.fit(X, Y, epochs=1, batch_size=128)
        assert _kernels.blas_thread_limit() == 1
    assert _kernels.blas_thread_limit() == before


AFFINITY_CHILD = """
import os, bpfast
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
print(bpfast.default_threads())
"""


def test_the_default_follows_the_affinity_mask():
    assert child_output(AFFINITY_CHILD, 120).strip() == "1"


def test_networks_in_separate_python_threads_train_to_the_bits_of_a_serial_run(small_splits):
    sizes = [24, 48, 40, 5]
    serial = [fingerprint(*trained(sizes, "relu", "softmax", "cross_entropy", "float64", {}, 2,
                                   epochs=4), data(sizes, "float64")[0]) for _ in range(3)]
    results = [None] * 3

    def work(i):
        results[i] = fingerprint(*trained(sizes, "relu", "softmax", "cross_entropy", "float64",
                                          {}, 2, epochs=4), data(sizes, "float64")[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    assert run_together(threads, 300)
    assert results == serial


def _train_in_child(queue):
    _kernels.split_thresholds(256, 64, 4)
    sizes = [24, 48, 40, 5]
    net, history = trained(sizes, "relu", "softmax", "cross_entropy", "float64", {}, 2)
    queue.put(fingerprint(net, history, data(sizes, "float64")[0]))


def test_a_forked_child_trains_with_threads_after_the_parent_used_them(small_splits):
    sizes = [24, 48, 40, 5]
    expected = fingerprint(*trained(sizes, "relu", "softmax", "cross_entropy", "float64", {}, 2),
                           data(sizes, "float64")[0])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_train_in_child, args=(queue,))
    child.start()
    child.join(120)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=10) == expected


def test_joblibs_process_workers_default_to_their_share_of_the_cores():
    joblib = pytest.importorskip("joblib")
    cpus = len(os.sched_getaffinity(0))
    shares = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(bpfast.default_threads)() for _ in range(2))
    assert shares == [max(cpus // 2, 1)] * 2
