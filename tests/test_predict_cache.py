"""predict's packed copy of the weights (_packing.py): made after two predictions
find the parameters unchanged, read only while they stay so.

Every way to change the parameters is tried after the copy is made; each time predict
must give the bits of a fresh clone's predict, which never reads a packed copy. A stale
copy would give the old weights' outputs, so these tests fail on a cache that misses a
write.
"""
import pickle
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import bpfast
from bpfast import _kernels

# Rows of B longer than 1 KB are packed: 300 and 260 float32 outputs, 130 float64.
WIDE = {"float32": [20, 300, 260, 3], "float64": [20, 130, 3]}

needs_kernel = pytest.mark.skipif(_kernels.simd_level() < 1,
                                  reason="the register kernel (and its packing) needs AVX2 and FMA")


@pytest.fixture(autouse=True)
def every_product_in_the_kernel():
    """These layers are small: by default BLAS would run some of their products, which
    read no packed copy. The kernel's path is the one under test."""
    _kernels.small_gemm(2)
    yield
    _kernels.small_gemm(-1)


def make(dtype="float32", **kw):
    return bpfast.Network(WIDE[dtype], "relu", "softmax", "cross_entropy", dtype=dtype,
                          seed=3, **kw)


def batch(net, rows=7, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, net.sizes[0])).astype(net.dtype)


def expected(net, X):
    """predict as the live weights give it, without any packed copy."""
    return net.clone().predict(X)


def cached(net):
    return net._packs.current()


def warm(net, X):
    """Two predictions: the second packs the weights and reads the copy."""
    net.predict(X)
    out = net.predict(X)
    assert cached(net)
    return out


def check(net, X):
    """predict is right now and stays right over the next two calls (which re-pack)."""
    want = expected(net, X)
    for _ in range(3):
        np.testing.assert_array_equal(net.predict(X), want)


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_copy_is_made_and_read(dtype):
    net = make(dtype)
    X = batch(net)
    first = net.predict(X)
    assert not cached(net)              # one prediction: nothing packed yet
    assert net._engine.packs is None
    np.testing.assert_array_equal(warm(net, X), first)
    # The copy is really read: spoiling it spoils the outputs (the Network's own
    # weights are untouched, so this can only come from the copy).
    net._engine.packs[...] = 0
    assert not np.array_equal(net.predict(X), first)
    net.weights[0][...] *= 1            # any hand-out drops the copy
    np.testing.assert_array_equal(net.predict(X), first)


@needs_kernel
def test_a_stale_copy_is_freed_by_the_next_prediction():
    net = make()
    X = batch(net)
    warm(net, X)
    size = net._engine.packs.nbytes
    assert size >= (300 * 260 + 20 * 300) * 4     # the wide layers, packed
    net.train_step(X, np.arange(7) % 3, 0.1)
    assert net._engine.packs is not None          # nothing predicted since
    check(net, X)                                 # the first of three frees it
    net.weights[0][...] *= 1
    net.predict(X)
    assert net._engine.packs is None and not cached(net)
    net.predict(X)
    assert cached(net) and net._engine.packs.nbytes == size


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 3])
def test_a_few_rows_read_the_copy_too(dtype, rows):
    """A prediction of one sample or a few reads the packed copy (its panels are
    contiguous streams, which the hardware prefetcher follows, where the live weights'
    rows start a page each), with the bits of the live weights."""
    net = make(dtype)
    x = batch(net, rows=rows)
    first = net.predict(x)
    np.testing.assert_array_equal(warm(net, x), first)
    np.testing.assert_array_equal(first, expected(net, x))
    net._engine.packs[...] = 0
    assert not np.array_equal(net.predict(x), first)


@needs_kernel
def test_nothing_packed_for_narrow_layers_or_the_reference():
    narrow = bpfast.Network([20, 64, 3], dtype="float32")
    assert not narrow._packs._packable
    ref = bpfast.Network(WIDE["float32"], dtype="float32", backend="reference")
    assert not ref._packs._packable
    X = batch(ref, rows=3)
    np.testing.assert_array_equal(ref.predict(X), ref.predict(X))


WRITES = {
    "in place, view dropped": lambda net: net.weights[0].__imul__(2),
    "in place, second layer": lambda net: net.weights[1].__iadd__(0.5),
    "bias": lambda net: net.biases[0].__iadd__(1),
    "assignment": lambda net: net.weights[0].__setitem__(Ellipsis, 0.25),
    "list assignment": lambda net: net.weights.__setitem__(1, np.full((300, 260), -0.01)),
    "slice of the list": lambda net: net.weights[0:2][1].__imul__(-1),
    "iteration": lambda net: [W.__imul__(0.5) for W in net.weights],
    "set_parameters": lambda net: net.set_parameters(net.get_parameters() * 1.5),
    "copyto": lambda net: np.copyto(net.weights[0], 0.01),
    "memoryview": lambda net: memoryview(net.weights[0]).cast("B").__setitem__(
        slice(0, 4), b"\x00\x00\x80\x3f"),
    "sgd_update": lambda net: bpfast.sgd_update(net.weights[0], np.ones((20, 300)), 0.1),
    "train_step": lambda net: net.train_step(batch(net), np.eye(3)[[0, 1, 2, 0, 1, 2, 0]], 0.5),
    "fit": lambda net: net.fit(batch(net, 40), np.arange(40) % 3, epochs=2, batch_size=8,
                               lr=0.5),
    "forward, backward, step": lambda net: (net.forward(batch(net)),
                                            net.backward(np.arange(7) % 3), net.step(0.5)),
    "optimizer step": lambda net: (net.forward(batch(net)), net.backward(np.arange(7) % 3),
                                   bpfast.optim.Adam(net, lr=0.01).step()),
    "fit with early stopping": lambda net: net.fit(
        batch(net, 40), np.arange(40) % 3, epochs=6, batch_size=8, lr=1.0,
        validation_data=(batch(net, 10, 1), np.arange(10) % 3), early_stopping=True,
        patience=1),
}


@needs_kernel
@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_reaches_predict(write):
    net = make()
    X = batch(net)
    before = warm(net, X)
    WRITES[write](net)
    assert not np.array_equal(expected(net, X), before) or write == "fit with early stopping"
    check(net, X)


@needs_kernel
def test_a_view_held_across_predictions():
    net = make()
    X = batch(net)
    W = net.weights[1]                  # held from before the copy could be made
    for _ in range(3):
        net.predict(X)
    assert not cached(net)              # a held view may be written at any moment
    W[:5] += 1.0
    check(net, X)
    sub = net.weights[1][:, 10:20]      # a view of a view holds the memory too
    for _ in range(3):
        net.predict(X)
    assert not cached(net)
    del W
    sub[...] = 0.3
    check(net, X)
    del sub
    check(net, X)
    assert cached(net)                  # no array into the parameters is left outside


@needs_kernel
def test_a_view_taken_between_predictions_and_dropped():
    net = make()
    X = batch(net)
    warm(net, X)
    W = net.weights[0]
    W[3, :] = 2.0
    del W                               # written and gone before the next prediction
    check(net, X)


@needs_kernel
def test_a_fit_callback_that_predicts_sees_every_epoch():
    """fit writes the weights natively between its callback's calls, under one hold of
    the training lock: predictions inside it must not keep a copy."""
    net = make()
    X, Xv = batch(net, 40), batch(net, 9, 1)
    seen = []

    def callback(epoch, history):
        seen.append((net.predict(Xv), net.predict(Xv), net.clone().predict(Xv)))

    net.fit(X, np.arange(40) % 3, epochs=4, batch_size=8, lr=0.5, callback=callback)
    assert len(seen) == 4
    for a, b, want in seen:
        np.testing.assert_array_equal(a, want)
        np.testing.assert_array_equal(b, want)
    assert not np.array_equal(seen[0][2], seen[-1][2])


@needs_kernel
def test_predictions_from_many_threads():
    net = make()
    X = batch(net, 33)
    want = expected(net, X)
    outs, errors = [], []

    def run():
        try:
            for _ in range(20):
                outs.append(net.predict(X))
        except Exception as exc:       # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cached(net)
    for out in outs:
        np.testing.assert_array_equal(out, want)


@needs_kernel
def test_estimator_coefs_are_live():
    from bpfast.sklearn import MLPClassifier
    X = batch(make(), 60)
    y = np.arange(60) % 3
    est = MLPClassifier(hidden_layer_sizes=(300, 260), max_iter=3, dtype="float32",
                        random_state=0).fit(X, y)
    est.predict_proba(X)
    est.predict_proba(X)
    est.coefs_[1][...] = 0.0            # live views: the next prediction must see it
    est.intercepts_[1][...] = np.arange(260)
    np.testing.assert_array_equal(est.predict_proba(X),
                                  est.network_.clone().predict(X))


@needs_kernel
def test_pickle_and_clone_make_their_own_copy():
    net = make()
    X = batch(net)
    warm(net, X)
    for other in (pickle.loads(pickle.dumps(net)), net.clone()):
        assert not cached(other)
        np.testing.assert_array_equal(warm(other, X), net.predict(X))
        other.weights[0][...] = 0
        np.testing.assert_array_equal(net.predict(X), expected(net, X))


class Writes(RuleBasedStateMachine):
    """Random interleavings of predictions, views taken, held, written and dropped,
    assignments and training steps: predict always gives the live weights' bits."""

    def __init__(self):
        super().__init__()
        self.net = make()
        self.X = batch(self.net)
        self.held = []

    @rule()
    def predict(self):
        np.testing.assert_array_equal(self.net.predict(self.X), expected(self.net, self.X))

    @rule(layer=st.integers(0, 2), scale=st.floats(0.5, 2.0))
    def write_dropped_view(self, layer, scale):
        self.net.weights[layer][...] *= scale

    @rule(layer=st.integers(0, 2), start=st.integers(0, 10))
    def hold_view(self, layer, start):
        self.held.append(self.net.weights[layer][start:])

    @rule(value=st.floats(-1, 1))
    def write_held(self, value):
        if self.held:
            self.held[-1][..., :2] = value

    @rule()
    def drop_held(self):
        if self.held:
            self.held.pop(0)

    @rule(seed=st.integers(0, 3))
    def train(self, seed):
        self.net.train_step(batch(self.net, seed=seed), np.arange(7) % 3, 0.1)

    @rule(scale=st.floats(0.5, 2.0))
    def set_parameters(self, scale):
        self.net.set_parameters(self.net.get_parameters() * scale)

    @invariant()
    def right(self):
        np.testing.assert_array_equal(self.net.predict(self.X), expected(self.net, self.X))


TestWrites = needs_kernel(Writes.TestCase)
TestWrites.settings = settings(max_examples=40, stateful_step_count=12, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])
