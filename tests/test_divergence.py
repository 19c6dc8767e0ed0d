"""Divergence: a fit whose loss (or parameters) stop being finite raises FloatingPointError
naming the epoch and the learning rate, and leaves the parameters finite and exactly as
they were at the start of the diverging epoch -- checked against snapshots taken by a
callback after every completed epoch."""
import re

import numpy as np
import pytest

import bpfast

# The reference backend casts overflowing Python floats into float32 buffers; NumPy warns.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

BACKENDS = ["cython", "reference"]
DTYPES = ["float64", "float32"]
CONFIGS = {
    "relu-identity-mse": dict(activation="relu", output_activation="identity", loss="mse"),
    "identity-identity-sse": dict(activation="identity", output_activation="identity", loss="sse"),
    "tanh-identity-mse": dict(activation="tanh", output_activation="identity", loss="mse"),
    "relu-softmax-ce": dict(activation="relu", output_activation="softmax", loss="cross_entropy"),
}


def data(cfg, n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * 3
    if cfg["loss"] == "cross_entropy":
        return X, np.eye(2)[rng.integers(0, 2, n)]
    return X, rng.normal(size=(n, 2)) * 3


def diverge(net, X, Y, **kw):
    """fit until it diverges; returns (exception, snapshots: start, after epoch 1, 2, ...)."""
    snaps = [net.get_parameters()]

    def snapshot(epoch, history):
        assert len(history.loss) == epoch + 1 and np.isfinite(history.loss).all()
        snaps.append(net.get_parameters())

    kw.setdefault("epochs", 30)
    with pytest.raises(FloatingPointError) as info:
        net.fit(X, Y, callback=snapshot, **kw)
    return info.value, snaps


def check(exc, snaps, net, lr):
    epoch = len(snaps)                  # snaps[-1] is the start of epoch len(snaps) (1-based)
    msg = str(exc)
    assert re.search(rf"\bepoch {epoch}\b", msg), msg
    assert f"lr={lr:g}" in msg, msg
    params = net.get_parameters()
    assert np.isfinite(params).all()
    assert np.array_equal(params, snaps[-1])
    assert params.dtype == net.dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("lr", [1e3, 1e10, 1e300])
def test_constant_huge_lr(backend, dtype, name, lr):
    cfg = CONFIGS[name]
    net = bpfast.Network([3, 5, 2], dtype=dtype, backend=backend, seed=1, **cfg)
    exc, snaps = diverge(net, *data(cfg), batch_size=4, lr=lr)
    check(exc, snaps, net, lr)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [
    dict(), dict(momentum=0.9), dict(momentum=0.5, nesterov=True), dict(weight_decay=0.01),
    dict(shuffle=False), dict(batch_size=20), dict(batch_size=1), dict(validation_data=True),
])
def test_diverging_in_a_later_epoch_restores_that_epochs_start(backend, dtype, options):
    """Four calm epochs, then a learning rate that explodes: epoch 5 or a later one diverges
    (with one batch per epoch, a huge but finite update may take an epoch to overflow)."""
    cfg = CONFIGS["relu-identity-mse"]
    X, Y = data(cfg)
    kw = dict(batch_size=4, seed=3)
    kw.update(options)
    if kw.pop("validation_data", None):
        kw["validation_data"] = (X[:5], Y[:5])
    net = bpfast.Network([3, 5, 2], dtype=dtype, backend=backend, seed=1, **cfg)
    exc, snaps = diverge(net, X, Y, lr=0.01, lr_schedule=lambda e: 0.01 if e < 4 else 1e300, **kw)
    assert len(snaps) >= 5
    check(exc, snaps, net, 1e300)
    assert not np.array_equal(snaps[-1], snaps[0])      # the calm epochs did train


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_overflowing_in_the_last_update_with_a_finite_loss(backend):
    """One batch per epoch: the loss is computed before the update, so it is finite;
    only the parameters become infinite. That is a divergence too."""
    cfg = CONFIGS["identity-identity-sse"]
    X, Y = data(cfg, n=4)
    net = bpfast.Network([3, 2], backend=backend, seed=0, **cfg)
    exc, snaps = diverge(net, X, Y, batch_size=4, lr=1.5e308, epochs=3)
    assert len(snaps) == 1
    check(exc, snaps, net, 1.5e308)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_network_is_usable_after_divergence(backend, dtype):
    cfg = CONFIGS["tanh-identity-mse"]
    X, Y = data(cfg)
    net = bpfast.Network([3, 5, 2], dtype=dtype, backend=backend, seed=1, **cfg)
    exc, snaps = diverge(net, X, Y, batch_size=4, lr=1e300)
    assert len(snaps) == 1        # restored to the initial parameters
    assert np.isfinite(net.predict(X)).all()
    before = net.evaluate(X, Y)
    hist = net.fit(X, Y, epochs=5, batch_size=4, lr=1e-3)
    assert np.isfinite(hist.loss).all() and hist.loss[-1] < before
    # forward/backward still work, and a pending forward was not left behind
    with pytest.raises(RuntimeError):
        net.backward(Y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_diverge_in_the_same_epoch_from_the_same_state(backend):
    cfg = CONFIGS["tanh-identity-mse"]
    X, Y = data(cfg)
    results = {}
    for b in BACKENDS:
        net = bpfast.Network([3, 5, 2], backend=b, seed=1, **cfg)
        exc, snaps = diverge(net, X, Y, batch_size=4, lr=1e3, seed=0)
        results[b] = (len(snaps), net.get_parameters())
    assert results["cython"][0] == results["reference"][0]
    np.testing.assert_allclose(results["cython"][1], results["reference"][1], rtol=1e-9, atol=1e-12)


def test_stopping_by_callback_is_not_a_divergence():
    cfg = CONFIGS["relu-identity-mse"]
    net = bpfast.Network([3, 5, 2], seed=1, **cfg)
    hist = net.fit(*data(cfg), epochs=10, lr=0.01, callback=lambda e, h: e < 2)
    assert hist.epochs == 3


def test_divergence_message_is_helpful():
    cfg = CONFIGS["relu-identity-mse"]
    net = bpfast.Network([3, 5, 2], seed=1, **cfg)
    exc, snaps = diverge(net, *data(cfg), lr=123.0, epochs=7)
    msg = str(exc)
    assert "lr=123" in msg and f"epoch {len(snaps)} " in msg and "of 7" in msg
    assert "restored" in msg and "smaller lr" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step_with_overflowing_outputs_raises_and_keeps_the_parameters(backend):
    X = np.ones((2, 2))          # outputs 2e200: finite, but their square is not
    Y = np.zeros((2, 1))
    net = bpfast.Network([2, 1], activation="identity", output_activation="identity",
                         backend=backend, seed=0)
    net.weights[0][...] = 1e200
    before = net.get_parameters()
    with pytest.raises(FloatingPointError, match="lr=0.1"):
        net.train_step(X, Y, 0.1)
    assert np.array_equal(net.get_parameters(), before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_train_step_that_would_overflow_the_parameters_raises_and_keeps_them(backend, dtype):
    """A huge lr with a finite loss before the step: the updated weights would be infinite."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3)).astype(dtype)
    Y = (1e6 * rng.normal(size=(8, 2))).astype(dtype)       # gradients of ~1e6
    net = bpfast.Network([3, 4, 2], activation="tanh", output_activation="identity",
                         dtype=dtype, backend=backend, seed=0)
    before = net.get_parameters()
    with pytest.raises(FloatingPointError, match="left as they were"):
        net.train_step(X, Y, 1e308 if dtype == "float64" else 1e38)
    assert np.array_equal(net.get_parameters(), before)
    assert np.isfinite(net.train_step(X, Y, 1e-12))          # and it trains on afterwards


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_that_would_overflow_the_parameters_raises_and_keeps_them(backend):
    net = bpfast.Network([3, 4, 2], backend=backend, seed=0)
    net.forward(np.ones((2, 3)))
    net.backward(np.zeros((2, 2)))
    net.grad_weights[0] = np.full((3, 4), 1e10)
    before = net.get_parameters()
    with pytest.raises(FloatingPointError, match="step"):
        net.step(1e308)
    assert np.array_equal(net.get_parameters(), before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_overflow_inside_the_loss_is_a_divergence_on_both_backends(backend):
    """Outputs of 2e200 are finite but their squares are not: on the reference backend the
    pure-Python arithmetic raises OverflowError, which fit reports as the same
    FloatingPointError as the compiled backend's infinite loss."""
    net = bpfast.Network([2, 1], activation="identity", output_activation="identity",
                         backend=backend, seed=0)
    net.weights[0][...] = 1e200
    exc, snaps = diverge(net, np.ones((4, 2)), np.zeros((4, 1)), lr=1e-3, batch_size=2)
    check(exc, snaps, net, 1e-3)
    assert (net.weights[0] == 1e200).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [
    dict(lr=0.01, lr_schedule="step", step_size=4, gamma=1e35),       # explodes in epoch 5
    dict(lr=1e3), dict(lr=1e3, momentum=0.9), dict(lr=1e3, weight_decay=0.1, shuffle=False),
])
def test_all_epochs_in_one_native_call_restore_the_same_way(backend, dtype, options):
    """Without callback, validation data or a callable schedule, fit runs every epoch in one
    native call, so the restore happens there. It must leave exactly what the per-epoch
    path -- checked against snapshots above -- leaves, with the same message."""
    cfg = CONFIGS["tanh-identity-mse"]
    X, Y = data(cfg)
    nets = [bpfast.Network([3, 5, 2], dtype=dtype, backend=backend, seed=1, **cfg) for _ in range(2)]
    with pytest.raises(FloatingPointError) as one_call:
        nets[0].fit(X, Y, epochs=30, batch_size=4, seed=2, **options)
    exc, snaps = diverge(nets[1], X, Y, epochs=30, batch_size=4, seed=2, **options)
    assert str(one_call.value) == str(exc)
    check(exc, snaps, nets[1], float(re.search(r"lr=(\S+):", str(exc)).group(1)))
    assert np.array_equal(nets[0].get_parameters(), nets[1].get_parameters())
