"""The fused training engine: fit against train_step and an independent NumPy
implementation, and reproducibility from seeds."""
import numpy as np
import pytest

import bpfast
from numpy_oracle import fit as numpy_fit

CFG = dict(sizes=[5, 8, 3], activation="tanh", output_activation="softmax", loss="cross_entropy")


def data(n=23, seed=0, sizes=(5, 8, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, sizes[0])), np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 4, 23, 50])
def test_fit_without_shuffle_is_repeated_train_step_bit_for_bit(dtype, batch_size):
    X, Y = data()
    X, Y = X.astype(dtype), Y.astype(dtype)
    a, b = bpfast.Network(**CFG, dtype=dtype, seed=1), bpfast.Network(**CFG, dtype=dtype, seed=1)
    history = a.fit(X, Y, epochs=3, batch_size=batch_size, lr=0.1, shuffle=False)
    losses = []
    for _ in range(3):
        for start in range(0, len(X), batch_size):
            losses.append(b.train_step(X[start:start + batch_size], Y[start:start + batch_size], 0.1))
    assert np.array_equal(a.get_parameters(), b.get_parameters())
    sizes = [len(X[s:s + batch_size]) for s in range(0, len(X), batch_size)]
    per_epoch = np.array(losses).reshape(3, -1) @ np.array(sizes) / len(X)
    np.testing.assert_allclose(history.loss, per_epoch, rtol=1e-12 if dtype == "float64" else 1e-6)


@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(momentum=0.7, nesterov=True),
                                     dict(weight_decay=0.05), dict(momentum=0.9, weight_decay=0.01),
                                     dict(momentum=0.5, nesterov=True, weight_decay=0.1)])
@pytest.mark.parametrize("cfg", [CFG, dict(sizes=[5, 6, 4, 3], activation="relu",
                                           output_activation="identity", loss="mse")])
def test_fit_update_rules_match_plain_numpy(options, cfg):
    X, Y = data(sizes=cfg["sizes"])
    net = bpfast.Network(**cfg, seed=2)
    Ws, bs = numpy_fit([W.copy() for W in net.weights], [b.copy() for b in net.biases], X, Y,
                       cfg["activation"], cfg["output_activation"], cfg["loss"], epochs=4,
                       batch_size=5, lr=0.05, **options)
    net.fit(X, Y, epochs=4, batch_size=5, lr=0.05, shuffle=False, **options)
    for got, want in zip(list(net.weights) + list(net.biases), Ws + bs):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_keep_momentum_continues_training_as_one_longer_fit(backend, nesterov):
    X, Y = data()
    opts = dict(batch_size=4, lr=0.05, shuffle=False, momentum=0.8, nesterov=nesterov,
                weight_decay=0.01)
    whole, parts, fresh = (bpfast.Network(**CFG, backend=backend, seed=4) for _ in range(3))
    whole.fit(X, Y, epochs=3, **opts)
    parts.fit(X, Y, epochs=1, **opts)
    parts.fit(X, Y, epochs=2, keep_momentum=True, **opts)
    fresh.fit(X, Y, epochs=1, **opts)
    fresh.fit(X, Y, epochs=2, **opts)              # velocities back at 0: another path
    assert np.array_equal(parts.get_parameters(), whole.get_parameters())
    assert not np.allclose(fresh.get_parameters(), whole.get_parameters())


def test_a_diverged_fit_leaves_no_velocity_to_keep(backend):
    cfg = dict(sizes=[5, 6, 3], activation="relu", output_activation="identity", loss="mse")
    X, Y = data(sizes=cfg["sizes"])
    net, twin = (bpfast.Network(**cfg, backend=backend, seed=5) for _ in range(2))
    net.fit(X, Y, epochs=1, batch_size=4, lr=0.01, momentum=0.9)
    with pytest.raises(FloatingPointError):
        net.fit(X * 1e3, Y, epochs=30, batch_size=4, lr=1e3, momentum=0.9, keep_momentum=True)
    twin.set_parameters(net.get_parameters())      # restored to the start of the bad epoch
    opts = dict(epochs=2, batch_size=4, lr=0.01, momentum=0.9, shuffle=False)
    net.fit(X, Y, keep_momentum=True, **opts)
    twin.fit(X, Y, **opts)
    assert np.array_equal(net.get_parameters(), twin.get_parameters())


def test_weight_decay_adds_its_term_to_the_reported_loss():
    X, Y = data()
    net = bpfast.Network(**CFG, seed=3)
    history = net.fit(X, Y, epochs=1, batch_size=len(X), lr=1e-300, weight_decay=0.5)
    # lr tiny: the parameters stay put, so the loss is the data loss + 0.5 * wd * |W|^2.
    l2 = sum(float((W ** 2).sum()) for W in net.weights)
    assert history.loss[0] == pytest.approx(net.evaluate(X, Y) + 0.25 * l2, rel=1e-12)


def test_same_seed_same_weights_different_seed_different_weights(backend):
    X, Y = data()
    runs = []
    for seed in (5, 5, 6):
        net = bpfast.Network(**CFG, backend=backend, seed=0)
        net.fit(X, Y, epochs=2, batch_size=4, lr=0.1, shuffle=True, seed=seed)
        runs.append(net.get_parameters())
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_shuffle_seed_is_independent_of_numpy_global_state_and_reproducible_from_network_seed():
    X, Y = data()
    out = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)
        net = bpfast.Network(**CFG, seed=7)
        net.fit(X, Y, epochs=2, batch_size=4, lr=0.1)         # seed=None: from the Network's seed
        out.append(net.get_parameters())
    assert np.array_equal(out[0], out[1])


def test_shuffle_visits_every_sample_once_per_epoch():
    # A linear network with lr tiny enough to leave weights unchanged reports the
    # epoch loss as the mean over samples: equal with and without shuffling.
    X, Y = data()
    cfg = dict(sizes=[5, 3], activation="identity", output_activation="identity", loss="mse")
    a, b = bpfast.Network(**cfg, seed=1), bpfast.Network(**cfg, seed=1)
    ha = a.fit(X, Y, epochs=1, batch_size=4, lr=1e-300, shuffle=True, seed=3)
    hb = b.fit(X, Y, epochs=1, batch_size=4, lr=1e-300, shuffle=False)
    assert ha.loss[0] == pytest.approx(hb.loss[0], rel=1e-12)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_callable_shuffle_visits_the_orders_it_gives(backend, dtype):
    """shuffle(e) gives epoch e's order: the same bits as fitting, one epoch at a time,
    on the rows put in that order (with the optimizer state kept between epochs)."""
    X, Y = data()
    X, Y = X.astype(dtype), Y.astype(dtype)
    orders = [np.random.default_rng(e).permutation(len(X)) for e in range(4)]
    asked = []

    def order(epoch):
        asked.append(epoch)
        return orders[epoch]

    kw = dict(batch_size=5, optimizer="adam", lr=0.01, weight_decay=1e-3)
    net = bpfast.Network(**CFG, dtype=dtype, backend=backend, seed=0)
    twin = net.clone()
    net.fit(X, Y, epochs=4, shuffle=order, **kw)
    assert asked == [0, 1, 2, 3]            # each epoch once, in order
    for e, rows in enumerate(orders):
        twin.fit(X[rows], Y[rows], epochs=1, shuffle=False, keep_state=e > 0, **kw)
    assert np.array_equal(net.get_parameters(), twin.get_parameters())
    # an order of the engine's own generator would have ended elsewhere
    other = bpfast.Network(**CFG, dtype=dtype, backend=backend, seed=0)
    other.fit(X, Y, epochs=4, shuffle=True, seed=1, **kw)
    assert not np.array_equal(net.get_parameters(), other.get_parameters())


def test_a_callable_shuffle_in_chunks_and_with_a_callback_gives_the_same_bits(monkeypatch):
    """All epochs in one native call, two or one at a time (a callback), or as many as
    fit's cap on the orders handed over at once allows: the same bits."""
    from bpfast import _fitting
    X, Y = data()
    orders = [np.random.default_rng(e).permutation(len(X)) for e in range(6)]
    runs = []
    for callback, cap in ((None, None), (lambda epoch, history: 2, None),
                          (lambda epoch, history: True, None), (None, 4 * len(X))):
        if cap:
            monkeypatch.setattr(_fitting, "ORDER_ENTRIES", cap)
        net = bpfast.Network(**CFG, seed=0)
        net.fit(X, Y, epochs=6, batch_size=4, lr=0.1, shuffle=lambda e: orders[e],
                callback=callback)
        runs.append(net.get_parameters())
    assert all(np.array_equal(runs[0], run) for run in runs[1:])


@pytest.mark.parametrize("order, exc, message", [
    (lambda n: np.arange(n, dtype=float), TypeError, "integer row indices"),
    (lambda n: np.arange(n - 1), ValueError, r"23 row indices \(one per row\)"),
    (lambda n: np.arange(n).reshape(1, n), ValueError, "23 row indices"),
    (lambda n: np.r_[0, np.arange(n - 1)], ValueError, "exactly once"),
    (lambda n: np.arange(1, n + 1), ValueError, "exactly once"),
    (lambda n: np.arange(n) - 1, ValueError, "exactly once"),
])
def test_a_callable_shuffle_must_give_each_row_once(order, exc, message):
    X, Y = data()
    net = bpfast.Network(**CFG, seed=0)
    before = net.get_parameters()
    with pytest.raises(exc, match=r"shuffle\(0\) must return .*" + message):
        net.fit(X, Y, epochs=2, batch_size=4, shuffle=lambda e: order(len(X)))
    assert np.array_equal(net.get_parameters(), before)
