"""Concurrency: separate Networks train in parallel threads and give bit-identical results to
running one by one; many threads may predict with one Network at once; training on one
Network from two threads at once refuses the second with RuntimeError -- deterministically
proven from inside fit's callback -- and is never silently corrupted; the owning thread may
re-enter (a callback calling predict)."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bpfast
from helpers import child_output, run_together

CONFIGS = [
    dict(sizes=[6, 32, 16, 3], activation="relu", output_activation="softmax", loss="cross_entropy"),
    dict(sizes=[6, 24, 3], activation="tanh", output_activation="identity", loss="mse"),
    dict(sizes=[6, 8, 8, 8, 3], activation="sigmoid", output_activation="sigmoid", loss="sse"),
]


def problem(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    Y = np.eye(3)[rng.integers(0, 3, n)]
    return X, Y


def job(k, barrier=None):
    """Everything one thread does with its own network; returns all its results."""
    cfg = CONFIGS[k % len(CONFIGS)]
    dtype = ("float64", "float32")[k % 2]
    X, Y = problem(seed=k)
    net = bpfast.Network(**cfg, dtype=dtype, seed=k)
    if barrier is not None:
        barrier.wait()
    out = [net.forward(X)]
    out.append(net.backward(Y))
    out.append(net._grads.copy())
    net.step(0.05)
    for i in range(20):
        out.append(net.train_step(X[i * 10:(i + 1) * 10], Y[i * 10:(i + 1) * 10], 0.05))
    hist = net.fit(X, Y, epochs=8, batch_size=16, lr=0.05, seed=k, momentum=0.5 * (k % 2),
                   validation_data=(X[:50], Y[:50]))
    out += [hist.loss, hist.val_loss, net.predict(X), net.get_parameters()]
    return out


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("n_threads", [2, 8])
def test_separate_networks_in_parallel_threads_are_bit_identical_to_sequential(n_threads):
    jobs = 2 * n_threads
    sequential = [job(k) for k in range(jobs)]
    barrier = threading.Barrier(n_threads)
    with ThreadPoolExecutor(n_threads) as pool:
        # Each wave of n_threads starts together at the barrier.
        parallel = list(pool.map(lambda k: job(k, barrier), range(jobs)))
    for k in range(jobs):
        same(parallel[k], sequential[k])


def test_reference_and_functional_calls_in_parallel_threads():
    rng = np.random.default_rng(1)
    X, W, b = rng.normal(size=(200, 30)), rng.normal(size=(30, 20)), rng.normal(size=20)
    want = bpfast.dense_forward(X, W, b, "tanh"), bpfast.backprop_error(X @ W, W)

    def work(i):
        got = bpfast.dense_forward(X, W, b, "tanh"), bpfast.backprop_error(X @ W, W)
        net = bpfast.Network([3, 4, 2], backend="reference", seed=i)
        net.fit(X[:20, :3], np.abs(np.tanh(X[:20, 3:5])), epochs=2, batch_size=5, seed=i)
        return got, net.get_parameters()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    for i, (got, params) in enumerate(results):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        solo = bpfast.Network([3, 4, 2], backend="reference", seed=i)
        solo.fit(X[:20, :3], np.abs(np.tanh(X[:20, 3:5])), epochs=2, batch_size=5, seed=i)
        assert np.array_equal(params, solo.get_parameters())


# ============================================================== one network, two threads
def calls_on(net, X, Y):
    """Every public entry point of a Network, as (name, thunk)."""
    return [
        ("forward", lambda: net.forward(X)),
        ("predict", lambda: net.predict(X)),
        ("evaluate", lambda: net.evaluate(X, Y)),
        ("train_step", lambda: net.train_step(X, Y, 0.1)),
        ("train_step-validated", lambda: net.train_step(X.tolist(), Y.tolist(), 0.1)),
        ("fit", lambda: net.fit(X, Y, epochs=1)),
        ("step", lambda: net.step(0.1)),
        ("get_parameters", lambda: net.get_parameters()),
        ("set_parameters", lambda: net.set_parameters(np.zeros_like(net._params))),
        ("weights[0] =", lambda: net.weights.__setitem__(0, np.zeros(net.weights[0].shape))),
        ("biases[1] =", lambda: net.biases.__setitem__(1, np.zeros(net.biases[1].shape))),
        ("save", lambda: bpfast.save(net, "/nonexistent-dir/never-written.npz")),
    ]


def in_other_thread(fn):
    """Run fn in a new thread and wait for it; returns ('ok', value) or ('raised', exc)."""
    box = {}

    def run():
        try:
            box["r"] = ("ok", fn())
        except BaseException as exc:       # noqa: B902 -- report whatever happened
            box["r"] = ("raised", exc)
    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive(), "a call on a busy Network blocked instead of raising"
    return box["r"]


def test_a_second_thread_is_refused_while_fit_holds_the_network(backend):
    """Deterministic: the callback runs inside fit, holding the lock, and from there every
    method is called from a second thread -- each must raise RuntimeError at once."""
    X, Y = problem(n=40)
    net = bpfast.Network(**CONFIGS[1], backend=backend, seed=3)
    twin = bpfast.Network(**CONFIGS[1], backend=backend, seed=3)
    outcomes = {}

    def callback(epoch, history):
        for name, call in calls_on(net, X[:5], Y[:5]):
            kind, value = in_other_thread(call)
            outcomes.setdefault(name, []).append((kind, type(value).__name__, str(value)))

    net.fit(X, Y, epochs=3, batch_size=8, seed=1, callback=callback)
    assert set(outcomes) == {name for name, _ in calls_on(net, X, Y)}
    for name, results in outcomes.items():
        assert len(results) == 3
        for kind, type_name, message in results:
            assert (kind, type_name) == ("raised", "RuntimeError"), (name, type_name, message)
            assert "in use by another thread" in message, (name, message)
    # Nothing the refused calls tried was applied: the same fit without them gives the same.
    twin.fit(X, Y, epochs=3, batch_size=8, seed=1)
    assert np.array_equal(net.get_parameters(), twin.get_parameters())


def test_a_second_thread_is_refused_during_forward_backward_too():
    """A slow validation-free path: hold the lock via a callback of a nested fit."""
    X, Y = problem(n=40)
    net = bpfast.Network(**CONFIGS[0], seed=0)
    net.forward(X)
    seen = []

    def callback(epoch, history):
        seen.append(in_other_thread(lambda: net.backward(Y)))

    net.fit(X, Y, epochs=1, callback=callback)
    kind, exc = seen[0]
    # fit already invalidated the forward, but the call must be refused for being concurrent
    # (RuntimeError either way) and must not have run.
    assert kind == "raised" and isinstance(exc, RuntimeError)


def test_the_owning_thread_may_re_enter_from_the_callback(tmp_path):
    X, Y = problem(n=40)
    net = bpfast.Network(**CONFIGS[0], seed=0)
    twin = bpfast.Network(**CONFIGS[0], seed=0)
    seen = []

    def callback(epoch, history):
        seen.append((net.predict(X[:5]), net.evaluate(X, Y), net.get_parameters()))
        bpfast.save(net, tmp_path / f"epoch{epoch}.npz")       # checkpointing from a callback

    net.fit(X, Y, epochs=3, batch_size=8, seed=2, callback=callback, validation_data=(X, Y))
    hist = twin.fit(X, Y, epochs=3, batch_size=8, seed=2, validation_data=(X, Y))
    assert np.array_equal(net.get_parameters(), twin.get_parameters())
    assert [s[1] for s in seen] == hist.val_loss
    assert np.array_equal(bpfast.load(tmp_path / "epoch2.npz").get_parameters(), seen[2][2])


def test_the_lock_is_released_after_errors_and_interrupts():
    X, Y = problem(n=40)
    net = bpfast.Network(**CONFIGS[1], seed=0)
    failures = [
        lambda: net.fit(X, Y, epochs=3, lr_schedule=lambda e: 0.1 if e == 0 else -1.0),
        lambda: net.fit(X * 1e10, Y * 1e10, epochs=2, lr=1e300),
        lambda: net.fit(X, Y, epochs=2, callback=lambda e, h: 1 / 0),
    ]
    for fail in failures:
        with pytest.raises((ValueError, FloatingPointError, ZeroDivisionError)):
            fail()
        assert in_other_thread(lambda: net.predict(X))[0] == "ok"

    def interrupt(epoch, history):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, Y, epochs=2, callback=interrupt)
    assert in_other_thread(lambda: net.train_step(X, Y, 0.01))[0] == "ok"


def test_hammering_one_network_never_gives_a_torn_result():
    """One trainer and several readers share a network with no lock of their own. Every
    call either raises RuntimeError or acts on a consistent state: the trainer's accepted
    steps equal the same steps taken alone, and every prediction a reader got is the
    prediction of one of the parameter states the trainer went through."""
    X, Y = problem(n=64)
    net = bpfast.Network(**CONFIGS[0], seed=5)
    start = net.get_parameters()
    n_steps, n_readers = 150, 3
    stop = threading.Event()
    readings = [[] for _ in range(n_readers)]
    refused = {"trainer": 0, "readers": 0}
    lock = threading.Lock()

    def trainer():
        done = 0
        while done < n_steps:
            try:
                net.train_step(X, Y, 0.05)
                done += 1
                time.sleep(0)           # let the readers in now and then
            except RuntimeError:
                with lock:
                    refused["trainer"] += 1
        stop.set()

    def reader(r):
        while not stop.is_set():
            try:
                readings[r].append(net.predict(X[:4]))
            except RuntimeError:
                with lock:
                    refused["readers"] += 1

    threads = [threading.Thread(target=trainer)] + [threading.Thread(target=reader, args=(r,))
                                                     for r in range(n_readers)]
    assert run_together(threads, 120)

    alone = bpfast.Network(**CONFIGS[0], seed=5)
    alone.set_parameters(start)
    states = {alone.predict(X[:4]).tobytes()}
    for _ in range(n_steps):
        alone.train_step(X, Y, 0.05)
        states.add(alone.predict(X[:4]).tobytes())
    assert np.array_equal(net.get_parameters(), alone.get_parameters())
    n_read = sum(map(len, readings))
    assert n_read > 0
    for r in readings:
        for p in r:
            assert p.tobytes() in states, "a reader saw a state the trainer never had"
    print(f"\n[concurrency] {n_read} reads, refused: {refused}")


@pytest.mark.skipif("libasan" in __import__("os").environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer's -O0 build pads every stack frame; this test "
                           "measures the release build's stack use")
def test_training_in_a_thread_with_the_smallest_stack():
    """Python lets a thread have a 32 KiB stack: the kernels' stack buffers (the transposed
    W, 16 KB at most) must fit in it. The small-product kernel is forced on, so that these
    shapes never reach BLAS, whose stack needs are its own: OpenBLAS's AVX-512 kernels
    crash even NumPy's matmul of a 32x64 by 64x64 matrix in such a thread. A subprocess,
    so that an overflow would be a failed test and not a crashed run."""
    import textwrap
    script = textwrap.dedent("""
        import threading, numpy as np, bpfast
        from bpfast import _kernels
        _kernels.small_gemm(1)
        threading.stack_size(32 * 1024)
        rng = np.random.default_rng(0)
        done = []
        def work():
            for sizes, dt in (([64, 64, 10], "float64"), ([64, 64, 10], "float32"),
                              ([64, 32, 64, 10], "float64"), ([2, 2, 1], "float64")):
                X = rng.normal(size=(100, sizes[0])).astype(dt)
                Y = np.eye(sizes[-1], dtype=dt)[rng.integers(0, sizes[-1], 100)]
                net = bpfast.Network(sizes, "relu", "softmax", "cross_entropy", dtype=dt, seed=0)
                net.fit(X, Y, epochs=2, batch_size=32)
                net.train_step(X[:32], Y[:32], lr=0.1)
                done.append(np.isfinite(net.get_parameters()).all())
        t = threading.Thread(target=work)
        t.start()
        t.join()
        print("trained", len(done), all(done))
    """)
    assert child_output(script, 300).split() == ["trained", "4", "True"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_threads_train_two_networks_as_one_after_the_other(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 64)).astype(dtype)
    Y = rng.uniform(size=(512, 10)).astype(dtype)
    kw = dict(epochs=5, batch_size=32, lr=0.05, shuffle=True)

    def make(seed):
        return bpfast.Network([64, 64, 10], dtype=dtype, seed=seed)

    sequential = []
    for seed in (1, 2):
        net = make(seed)
        net.fit(X, Y, seed=seed, **kw)
        sequential.append(net.get_parameters())
    nets = [make(1), make(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda net, s: net.fit(X, Y, seed=s, **kw), nets, (1, 2)))
    for net, want in zip(nets, sequential):
        assert np.array_equal(net.get_parameters(), want)


def test_many_threads_predict_and_evaluate_on_one_network_at_once(backend):
    """Prediction shares the network: 4 threads x 50 calls, none refused, every answer the
    single-threaded one. A thread that trains meanwhile is refused, not torn."""
    X, Y = problem(n=64)
    net = bpfast.Network(**CONFIGS[0], backend=backend, seed=7)
    want_out, want_loss = net.predict(X), net.evaluate(X, Y)
    start = threading.Barrier(4)

    def worker(_):
        start.wait()
        got = [(net.predict(X), net.evaluate(X, Y)) for _ in range(50 if backend == "cython" else 3)]
        return got

    with ThreadPoolExecutor(4) as pool:
        results = [r for chunk in pool.map(worker, range(4)) for r in chunk]
    assert results
    for out, loss in results:
        assert np.array_equal(out, want_out) and loss == want_loss


def test_training_is_refused_while_another_thread_predicts():
    X, Y = problem(n=8)
    net = bpfast.Network(**CONFIGS[1], seed=3)
    before = net.get_parameters()
    with net._shared():             # another thread's predict, held open
        kind, value = in_other_thread(lambda: net.train_step(X, Y, 0.1))
        assert (kind, type(value).__name__) == ("raised", "RuntimeError")
        kind, value = in_other_thread(lambda: net.predict(X))
        assert kind == "ok"
    assert np.array_equal(net.get_parameters(), before)
