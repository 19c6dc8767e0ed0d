"""The Network API (docs/design.md), and the two backends computing the same numbers."""
import numpy as np
import pytest

import bpfast

CONFIGS = [
    dict(sizes=[2, 2, 1], activation="sigmoid", output_activation="sigmoid", loss="mse"),
    dict(sizes=[3, 5, 4, 2], activation="tanh", output_activation="identity", loss="sse"),
    dict(sizes=[4, 6, 3], activation="relu", output_activation="softmax", loss="cross_entropy"),
    dict(sizes=[1, 1], activation="identity", output_activation="tanh", loss="mse"),
]


def make_data(cfg, n=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, cfg["sizes"][0]))
    k = cfg["sizes"][-1]
    Y = np.eye(k)[rng.integers(0, k, n)] if cfg["loss"] == "cross_entropy" else rng.uniform(size=(n, k))
    return X, Y


def net_and_data(cfg, n=10, seed=0, **kw):
    """A network of cfg (from seed; other settings in kw) and n rows of data for it:
    (net, X, Y)."""
    return (bpfast.Network(**cfg, seed=seed, **kw), *make_data(cfg, n=n))


def pair(cfg, n=10):
    """The network of cfg on both backends from the same seed, and n rows of data for it:
    (cython network, reference network, X, Y)."""
    fast, slow = [bpfast.Network(**cfg, backend=b, seed=3) for b in ("cython", "reference")]
    return (fast, slow, *make_data(cfg, n=n))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_backends_agree_on_forward_loss_and_gradients(cfg):
    fast, slow, X, Y = pair(cfg)
    np.testing.assert_allclose(fast.forward(X), slow.forward(X), rtol=1e-13)
    assert fast.backward(Y) == pytest.approx(slow.backward(Y), rel=1e-13)
    np.testing.assert_allclose(fast._grads, slow._grads, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(momentum=0.5, nesterov=True),
                                     dict(weight_decay=0.01), dict(shuffle=True, seed=7)])
def test_backends_agree_after_fit(cfg, options):
    fast, slow, X, Y = pair(cfg, n=9)
    kw = dict(epochs=3, batch_size=4, lr=0.1, shuffle=False)
    kw.update(options)
    h_fast, h_slow = fast.fit(X, Y, **kw), slow.fit(X, Y, **kw)
    assert h_fast.n_updates == h_slow.n_updates == 9
    np.testing.assert_allclose(h_fast.loss, h_slow.loss, rtol=1e-12)
    np.testing.assert_allclose(fast._params, slow._params, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_backends_agree_on_train_step_and_step(cfg):
    fast, slow, X, Y = pair(cfg)
    assert fast.train_step(X, Y, 0.2) == pytest.approx(slow.train_step(X, Y, 0.2), rel=1e-13)
    np.testing.assert_allclose(fast._params, slow._params, rtol=1e-12)
    for net in (fast, slow):
        net.forward(X)
        net.backward(Y)
        net.step(0.2)
    np.testing.assert_allclose(fast._params, slow._params, rtol=1e-12)


def test_float32_network_agrees_with_float64_reference():
    cfg = CONFIGS[2]
    net32 = bpfast.Network(**cfg, dtype="float32", seed=5)
    ref = bpfast.Network(**cfg, dtype="float64", backend="reference", seed=5)
    ref.set_parameters(net32.get_parameters().astype(np.float64))
    X, Y = make_data(cfg)
    out = net32.forward(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.forward(X), rtol=1e-5, atol=1e-6)
    assert net32.backward(Y) == pytest.approx(ref.backward(Y), rel=1e-5)
    np.testing.assert_allclose(net32._grads, ref._grads, rtol=1e-4, atol=1e-6)


def test_train_step_equals_forward_backward_step():
    cfg = CONFIGS[1]
    a, b = (bpfast.Network(**cfg, seed=9) for _ in range(2))
    X, Y = make_data(cfg)
    loss = a.train_step(X, Y, 0.05)
    b.forward(X)
    assert b.backward(Y) == loss
    b.step(0.05)
    np.testing.assert_allclose(a._params, b._params, rtol=1e-14)


def test_weights_are_live_views_with_the_documented_shapes():
    net = bpfast.Network([3, 4, 2], seed=0)
    assert [W.shape for W in net.weights] == [(3, 4), (4, 2)]
    assert [b.shape for b in net.biases] == [(4,), (2,)]
    X = np.ones((1, 3))
    before = net.forward(X)
    net.weights[1][...] = 0.0       # in place: the network sees it
    net.biases[1][...] = [1.0, -1.0]
    np.testing.assert_allclose(net.forward(X), 1 / (1 + np.exp([[-1.0, 1.0]])))
    assert not np.allclose(before, net.forward(X))
    net.weights[0] = np.zeros((3, 4))   # assignment copies into the live array
    assert np.all(net.weights[0] == 0)
    with pytest.raises(ValueError, match=r"weights\[0\].*shape \(3, 4\)"):
        net.weights[0] = np.zeros((4, 4))
    with pytest.raises(AttributeError, match="weights"):
        net.weights = []


def test_default_init_is_scaled_normal_and_reproducible():
    a, b = bpfast.Network([400, 300, 2], seed=11), bpfast.Network([400, 300, 2], seed=11)
    c = bpfast.Network([400, 300, 2], seed=12)
    assert np.array_equal(a._params, b._params) and not np.array_equal(a._params, c._params)
    assert np.std(a.weights[0]) == pytest.approx(400 ** -0.5, rel=0.02)
    assert np.std(a.weights[1]) == pytest.approx(300 ** -0.5, rel=0.05)
    assert np.all(a.biases[0] == 0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_load_round_trip_is_exact(tmp_path, dtype, backend):
    net, X, Y = net_and_data(CONFIGS[2], seed=4, dtype=dtype, backend=backend)
    net.fit(X, Y, epochs=2, batch_size=3, lr=0.1)
    path = tmp_path / "model.npz"
    bpfast.save(net, path)
    loaded = bpfast.load(path, backend=backend)
    assert (loaded.sizes, loaded.activation, loaded.output_activation, loaded.loss, loaded.dtype) == \
           (net.sizes, net.activation, net.output_activation, net.loss, net.dtype)
    assert np.array_equal(loaded.get_parameters(), net.get_parameters())
    assert np.array_equal(loaded.predict(X), net.predict(X))


def test_fit_learns_xor_and_reports_history():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    Y = np.array([[0], [1], [1], [0]], dtype=float)
    net = bpfast.Network([2, 4, 1], activation="tanh", seed=1)
    seen = []
    history = net.fit(X, Y, epochs=3000, batch_size=4, lr=0.5, callback=lambda e, h: seen.append(e))
    assert history.n_updates == 3000 and len(history.loss) == 3000 and seen[-1] == 2999
    assert history.loss[-1] < 0.01 < history.loss[0]
    assert np.array_equal(net.predict(X) > 0.5, Y > 0.5)


def test_callback_returning_k_is_next_called_after_k_epochs_with_the_same_result(backend):
    cfg = CONFIGS[1]
    X, Y = make_data(cfg, n=20)
    kw = dict(epochs=10, batch_size=6, lr=0.05, momentum=0.9, nesterov=True, shuffle=True, seed=4)
    calls, lengths = [], []

    def every_third(epoch, history):
        calls.append(epoch)
        lengths.append(len(history.loss))
        return 3

    chunked, per_epoch = (bpfast.Network(**cfg, backend=backend, seed=0) for _ in range(2))
    h = chunked.fit(X, Y, callback=every_third, **kw)
    h_ref = per_epoch.fit(X, Y, callback=lambda e, hist: True, **kw)
    assert calls == [0, 3, 6, 9] and lengths == [1, 4, 7, 10]
    assert h.loss == h_ref.loss and h.n_updates == h_ref.n_updates == 40
    assert np.array_equal(chunked.get_parameters(), per_epoch.get_parameters())


def test_callback_return_values():
    net, X, Y = net_and_data(CONFIGS[1], n=20)
    assert len(net.fit(X, Y, epochs=5, callback=lambda e, h: np.False_).loss) == 1
    assert len(net.fit(X, Y, epochs=5, callback=lambda e, h: None).loss) == 5
    # Validation data is scored every epoch whatever the callback asks.
    h = net.fit(X, Y, epochs=5, validation_data=(X, Y), callback=lambda e, h: 4)
    assert len(h.val_loss) == 5
    for bad in (0, -2):
        with pytest.raises(ValueError, match=f"callback returned {bad}"):
            net.fit(X, Y, epochs=3, callback=lambda e, h: bad)
    calls = []
    h = net.fit(X, Y, epochs=7, callback=lambda e, h: calls.append(e) or np.int64(10 ** 18))
    assert calls == [0, 6] and len(h.loss) == 7      # a NumPy int; capped at the epochs left


def test_fit_validation_data_callback_stop_and_schedules():
    net, X, Y = net_and_data(CONFIGS[1], n=20)
    history = net.fit(X, Y, epochs=10, batch_size=5, lr=0.01, validation_data=(X[:5], Y[:5]),
                      callback=lambda epoch, h: epoch < 3, lr_schedule="step", step_size=2,
                      gamma=0.5)
    assert len(history.loss) == len(history.val_loss) == 4 and history.n_updates == 16
    assert history.lr == [0.01, 0.01, 0.005, 0.005]
    assert history.val_loss[-1] == pytest.approx(net.evaluate(X[:5], Y[:5]), rel=1e-14)
    h2 = net.fit(X, Y, epochs=3, batch_size=20, lr=0.1, lr_schedule="invscaling", power_t=0.5)
    np.testing.assert_allclose(h2.lr, [0.1, 0.1 / 2 ** 0.5, 0.1 / 3 ** 0.5])
    h3 = net.fit(X, Y, epochs=2, batch_size=20, lr=1.0, lr_schedule=lambda e: 0.1 * (e + 1))
    assert h3.lr == [0.1, 0.2]


@pytest.mark.parametrize("copier", ["pickle", "deepcopy", "clone"])
def test_a_copied_network_trains_on_bit_for_bit_as_the_original(copier, backend):
    import copy
    import pickle
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(12, 3)), rng.random((12, 2))
    net = bpfast.Network([3, 5, 2], activation="tanh", backend=backend, seed=3)
    net.fit(X, Y, epochs=2, batch_size=5, momentum=0.9)        # velocities are not zero now
    copy_of = {"pickle": lambda n: pickle.loads(pickle.dumps(n)), "deepcopy": copy.deepcopy,
               "clone": lambda n: n.clone()}[copier]
    twin = copy_of(net)
    assert twin is not net and twin.config() == net.config()
    assert np.array_equal(twin.get_parameters(), net.get_parameters())
    for n in (net, twin):       # seed=None: the shuffle seed comes from the Network's own generator
        n.fit(X, Y, epochs=3, batch_size=5, momentum=0.9, keep_momentum=True)
    assert np.array_equal(twin.get_parameters(), net.get_parameters())
    twin.weights[0][0, 0] += 1.0                                   # independent buffers
    assert twin.weights[0][0, 0] != net.weights[0][0, 0]


def test_clone_can_move_a_network_to_the_other_backend():
    net = bpfast.Network([2, 3, 1], seed=1)
    ref = net.clone(backend="reference")
    assert ref.backend == "reference" and np.array_equal(ref.get_parameters(), net.get_parameters())
    X = np.array([[0.5, -1.0]])
    assert np.allclose(ref.predict(X), net.predict(X), rtol=1e-12)
