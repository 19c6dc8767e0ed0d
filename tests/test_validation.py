"""Validation at the Network boundary: every bad argument is refused with the right
exception type and a message that names the argument; every acceptable input form is
converted once and gives exactly the results of the canonical input (C-contiguous, of the
network's dtype). tests/test_validation_functional.py does the same for the kernels.

Convention: a value of the wrong *type* raises TypeError, a value of the right type but out
of range or of the wrong shape raises ValueError; misuse of the call order raises
RuntimeError.
"""
import re

import numpy as np
import pytest

import bpfast
from bpfast import _validation
from validation_helpers import BAD_LR, BACKENDS, DTYPES, Counting, data, net_of, raises, variants

# np.matrix is one of the accepted input types; its PendingDeprecationWarning is NumPy's business.
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


@pytest.mark.parametrize("sizes, exc", [
    ([], ValueError), ([3], ValueError), ([3, 0], ValueError), ([3, -2, 1], ValueError),
    ([0, 1], ValueError), ([3, 2.0], TypeError), ([3, 2.5], TypeError), ([True, 1], TypeError),
    ([3, "2"], TypeError), ([3, None], TypeError), ([3, 2 ** 31], ValueError),
    ([2 ** 40, 2 ** 40], ValueError), (np.array([3, 1.5]), TypeError),
])
def test_bad_sizes(sizes, exc):
    with raises(exc, "sizes"):
        bpfast.Network(sizes)


@pytest.mark.parametrize("sizes", ["21", b"21", None, 3, 3.0, {3, 1}, {3: 1}, (s for s in [3, 1])])
def test_sizes_that_are_no_sequence(sizes):
    with raises(TypeError, "sizes"):
        bpfast.Network(sizes)


def test_sizes_accept_tuples_numpy_arrays_and_numpy_ints():
    for sizes in ((3, 4, 2), np.array([3, 4, 2]), [np.int32(3), np.int64(4), np.uint8(2)]):
        net = bpfast.Network(sizes)
        assert net.sizes == [3, 4, 2] and all(type(s) is int for s in net.sizes)


# Constructor argument -> (values refused with ValueError, values refused with TypeError).
BAD_CONSTRUCTOR_VALUES = {
    "activation": (["relu6", "Sigmoid"], [None, 1]),
    "output_activation": (["gelu"], [len]),
    "loss": (["mae"], [None]),
    "dtype": (["float16", "int32", "complex128", "doubel", int], [None, 5]),
    "backend": (["Cython", "numpy"], [None, ["cython"]]),
    "seed": ([-1, 2 ** 64], [1.0, True, "0"]),
}


@pytest.mark.parametrize("kw, exc, name", [
    (dict({name: value}), exc, name)
    for name, (bad_values, bad_types) in BAD_CONSTRUCTOR_VALUES.items()
    for exc, values in ((ValueError, bad_values), (TypeError, bad_types)) for value in values
] + [
    (dict(activation="softmax"), ValueError, "softmax"),
    (dict(loss="cross_entropy", output_activation="sigmoid"), ValueError, "cross_entropy"),
])
def test_bad_constructor_arguments(kw, exc, name):
    with raises(exc, name):
        bpfast.Network([3, 4, 2], **kw)


def test_softmax_hidden_layer_message_says_output_only():
    with raises(ValueError, "activation", "output") as r:
        bpfast.Network([3, 4, 2], activation="softmax")
    assert "hidden" in str(r.value)


def test_cross_entropy_with_softmax_is_accepted():
    bpfast.Network([3, 2], output_activation="softmax", loss="cross_entropy")


@pytest.mark.parametrize("dtype, want", [("float32", np.float32), (np.float32, np.float32),
                                         (np.dtype("f8"), np.float64), ("f4", np.float32),
                                         (float, np.float64)])
def test_dtype_spellings(dtype, want):
    assert bpfast.Network([2, 1], dtype=dtype).dtype == want


# (value, expected exception) for X of a network with 3 inputs
BAD_X = [
    pytest.param(np.zeros(3 * 4 * 2).reshape(3, 4, 2), ValueError, id="3-D"),
    pytest.param(np.float64(1.0), ValueError, id="0-D"),
    pytest.param(np.zeros((5, 4)), ValueError, id="too-wide"),
    pytest.param(np.zeros((5, 2)), ValueError, id="too-narrow"),
    pytest.param(np.zeros(5), ValueError, id="1-D-not-a-sample"),
    pytest.param(np.zeros((0, 3)), ValueError, id="no-rows"),
    pytest.param(np.zeros((5, 0)), ValueError, id="no-columns"),
    pytest.param([], ValueError, id="empty-list"),
    pytest.param([[]], ValueError, id="empty-row"),
    pytest.param(np.array([[0, 1, np.nan]] * 2), ValueError, id="nan"),
    pytest.param(np.array([[0, np.inf, 1]] * 2), ValueError, id="inf"),
    pytest.param(np.array([[0, 1, -np.inf]] * 2, dtype=np.float32), ValueError, id="-inf-f32"),
    pytest.param(np.array([[1e300, 0, 0]]), ValueError, id="overflow-on-narrowing"),
    pytest.param(np.ones((2, 3), dtype=complex), TypeError, id="complex"),
    pytest.param(np.ones((2, 3), dtype=object), TypeError, id="object"),
    pytest.param([["a", "b", "c"]], TypeError, id="strings"),
    pytest.param([[1, 2, None]], TypeError, id="none-inside"),
    pytest.param([[1, 2, 3], [4, 5]], ValueError, id="ragged"),
    pytest.param(np.array([[1, 2, 3]], dtype="datetime64[s]"), TypeError, id="datetime"),
    pytest.param(None, TypeError, id="None"),
    pytest.param("1,2,3", TypeError, id="str"),
    pytest.param({"a": 1}, TypeError, id="dict"),
    pytest.param([[10 ** 400, 0, 0]], TypeError, id="int-beyond-float"),
]


def call(net, method, X, Y):
    if method == "forward":
        return net.forward(X)
    if method == "predict":
        return net.predict(X)
    if method == "train_step":
        return net.train_step(X, Y, 0.1)
    if method == "fit":
        return net.fit(X, Y, epochs=1, batch_size=2)
    if method == "evaluate":
        return net.evaluate(X, Y)
    if method == "fit-validation":
        return net.fit(*data(), epochs=1, validation_data=(X, Y))
    raise AssertionError(method)


X_METHODS = ["forward", "predict", "train_step", "fit", "evaluate", "fit-validation"]


@pytest.mark.parametrize("method", X_METHODS)
@pytest.mark.parametrize("bad, exc", BAD_X)
def test_bad_X_refused_by_every_method(backend, method, bad, exc):
    net = net_of(backend, "float32")     # float32: 1e300 overflows on conversion too
    name = "validation_data[0]" if method == "fit-validation" else "X"
    _, Y = data(n=2)
    with raises(exc, name, unchanged=net):
        call(net, method, bad, Y)


BAD_Y = [
    pytest.param(np.zeros((5, 3)), ValueError, id="too-wide"),
    pytest.param(np.zeros((5, 1)), ValueError, id="too-narrow"),
    pytest.param(np.zeros((4, 2)), ValueError, id="fewer-rows"),
    pytest.param(np.zeros((6, 2)), ValueError, id="more-rows"),
    pytest.param(np.zeros(10), ValueError, id="1-D"),
    pytest.param(np.zeros((5, 2, 1)), ValueError, id="3-D"),
    pytest.param(np.full((5, 2), np.nan), ValueError, id="nan"),
    pytest.param(np.full((5, 2), np.inf), ValueError, id="inf"),
    pytest.param(np.ones((5, 2), dtype=complex), TypeError, id="complex"),
    pytest.param(np.ones((5, 2), dtype=object), TypeError, id="object"),
    pytest.param(None, TypeError, id="None"),
]


@pytest.mark.parametrize("method", ["train_step", "fit", "evaluate", "fit-validation"])
@pytest.mark.parametrize("bad, exc", BAD_Y)
def test_bad_Y_refused_by_every_method(backend, method, bad, exc):
    net = net_of(backend)
    X, _ = data(n=5)
    name = "validation_data[1]" if method == "fit-validation" else "Y"
    with raises(exc, name, unchanged=net):
        call(net, method, X, bad)


@pytest.mark.parametrize("bad, exc", BAD_Y)
def test_bad_Y_refused_by_backward_which_stays_possible(backend, bad, exc):
    net = net_of(backend)
    X, Y = data(n=5)
    net.forward(X)
    with raises(exc, "Y"):
        net.backward(bad)
    assert net.backward(Y) > 0      # the refused call did not consume the forward


def test_Y_must_have_the_rows_of_the_last_forward(backend):
    net = net_of(backend)
    X, Y = data(n=5)
    net.forward(X[:3])
    with raises(ValueError, "Y", "3"):
        net.backward(Y)


def test_mismatched_rows_of_X_and_Y_name_both_counts(backend):
    net = net_of(backend)
    X, Y = data(n=5)
    with raises(ValueError, "Y", "4", "5"):
        net.train_step(X, Y[:4], 0.1)


def test_backward_before_forward_is_a_runtime_error(backend):
    with raises(RuntimeError, "forward"):
        net_of(backend).backward(data()[1])


def test_backward_twice_is_a_runtime_error(backend):
    net = net_of(backend)
    X, Y = data()
    net.forward(X)
    net.backward(Y)
    with raises(RuntimeError, "forward"):
        net.backward(Y)


@pytest.mark.parametrize("between", ["train_step", "fit"])
def test_train_step_and_fit_invalidate_the_last_forward(backend, between):
    net = net_of(backend)
    X, Y = data()
    net.forward(X)
    if between == "train_step":
        net.train_step(X, Y, 0.1)
    else:
        net.fit(X, Y, epochs=1)
    with raises(RuntimeError, "forward"):
        net.backward(Y)


def test_predict_between_forward_and_backward_does_not_change_the_gradients():
    X, Y = data(n=6)
    want = net_of("cython")
    want.forward(X)
    want.backward(Y)
    net = net_of("cython")
    net.forward(X)
    net.predict(X[:2] + 1)
    net.backward(Y)
    assert np.array_equal(net.get_parameters(), want.get_parameters())
    assert np.array_equal(net._grads, want._grads)


def test_predict_between_forward_and_backward_reference_backend():
    X, Y = data(n=6)
    want, net = net_of("reference"), net_of("reference")
    want.forward(X)
    want.backward(Y)
    net.forward(X)
    net.predict(X[:2] + 1)
    net.backward(Y)
    assert np.array_equal(net._grads, want._grads)




@pytest.mark.parametrize("lr, exc", BAD_LR)
@pytest.mark.parametrize("method", ["step", "train_step", "fit"])
def test_bad_learning_rates(backend, method, lr, exc):
    net = net_of(backend)
    X, Y = data()
    with raises(exc, "lr", unchanged=net):
        if method == "step":
            net.forward(X)
            net.backward(Y)
            net.step(lr)
        elif method == "train_step":
            net.train_step(X, Y, lr)
        else:
            net.fit(X, Y, epochs=1, lr=lr)


@pytest.mark.parametrize("lr", [1, np.float32(0.5), np.float64(0.25), np.int64(1)])
def test_learning_rates_of_other_real_types(backend, lr):
    X, Y = data()
    a, b = net_of(backend), net_of(backend)
    assert a.train_step(X, Y, lr) == b.train_step(X, Y, float(lr))
    assert np.array_equal(a.get_parameters(), b.get_parameters())


BAD_FIT = [
    (dict(epochs=0), ValueError, "epochs"), (dict(epochs=-3), ValueError, "epochs"),
    (dict(epochs=2.0), TypeError, "epochs"), (dict(epochs=True), TypeError, "epochs"),
    (dict(epochs="3"), TypeError, "epochs"), (dict(epochs=None), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"), (dict(batch_size=-1), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"), (dict(batch_size=False), TypeError, "batch_size"),
    (dict(batch_size=np.bool_(True)), TypeError, "batch_size"),
    (dict(momentum=-0.1), ValueError, "momentum"), (dict(momentum=1.0), ValueError, "momentum"),
    (dict(momentum=float("nan")), ValueError, "momentum"), (dict(momentum="0.9"), TypeError, "momentum"),
    (dict(weight_decay=-1e-3), ValueError, "weight_decay"),
    (dict(weight_decay=float("inf")), ValueError, "weight_decay"),
    (dict(weight_decay=None), TypeError, "weight_decay"),
    (dict(nesterov="yes", momentum=0.5), TypeError, "nesterov"),
    (dict(nesterov=1), TypeError, "nesterov"),
    (dict(shuffle=None), TypeError, "shuffle"), (dict(shuffle="False"), TypeError, "shuffle"),
    (dict(progress="yes"), TypeError, "progress"),
    (dict(seed=-1), ValueError, "seed"), (dict(seed=2 ** 64), ValueError, "seed"),
    (dict(seed=0.5), TypeError, "seed"), (dict(seed=True), TypeError, "seed"),
    (dict(lr_schedule="cosine"), ValueError, "lr_schedule"),
    (dict(lr_schedule=5), TypeError, "lr_schedule"),
    (dict(lr_schedule=None), TypeError, "lr_schedule"),
    (dict(lr_schedule="invscaling", power_t=-1), ValueError, "power_t"),
    (dict(lr_schedule="invscaling", power_t="a"), TypeError, "power_t"),
    (dict(lr_schedule="step", step_size=0), ValueError, "step_size"),
    (dict(lr_schedule="step", step_size=1.5), TypeError, "step_size"),
    (dict(lr_schedule="step", gamma=0), ValueError, "gamma"),
    (dict(lr_schedule="step", gamma=float("nan")), ValueError, "gamma"),
    (dict(lr_schedule=lambda e: 0.0), ValueError, "lr_schedule(0)"),
    (dict(lr_schedule=lambda e: -1), ValueError, "lr_schedule(0)"),
    (dict(lr_schedule=lambda e: "0.1"), TypeError, "lr_schedule(0)"),
    (dict(lr_schedule=lambda e: None), TypeError, "lr_schedule(0)"),
    (dict(lr_schedule=lambda e: float("inf")), ValueError, "lr_schedule(0)"),
    (dict(validation_data=np.zeros((2, 5, 3))), TypeError, "validation_data"),
    (dict(validation_data=(np.zeros((2, 3)),)), TypeError, "validation_data"),
    (dict(validation_data=None.__class__), TypeError, "validation_data"),
    (dict(callback=5), TypeError, "callback"), (dict(callback="print"), TypeError, "callback"),
]


@pytest.mark.parametrize("kw, exc, name", BAD_FIT)
def test_bad_fit_arguments(backend, kw, exc, name):
    net = net_of(backend)
    kw = dict(kw)
    with raises(exc, name, unchanged=net):
        net.fit(*data(), epochs=kw.pop("epochs", 2), **kw)


def test_lr_schedule_refused_in_a_later_epoch_keeps_the_completed_epochs(backend):
    net = net_of(backend)
    seen = []
    with raises(ValueError, "lr_schedule(2)"):
        net.fit(*data(), epochs=5, lr_schedule=lambda e: 0.1 if e < 2 else -1.0,
                callback=lambda e, h: seen.append(e))
    assert seen == [0, 1]


def test_fit_flags_accept_numpy_bools(backend):
    X, Y = data()
    a, b = net_of(backend), net_of(backend)
    a.fit(X, Y, epochs=2, shuffle=np.bool_(False), nesterov=np.bool_(True), momentum=0.5)
    b.fit(X, Y, epochs=2, shuffle=False, nesterov=True, momentum=0.5)
    assert np.array_equal(a.get_parameters(), b.get_parameters())


def test_fit_seed_range_is_the_same_on_both_backends():
    X, Y = data(n=9)
    nets = [net_of(b) for b in BACKENDS]
    for net in nets:
        net.fit(X, Y, epochs=2, batch_size=2, seed=2 ** 64 - 1)
    np.testing.assert_allclose(nets[0].get_parameters(), nets[1].get_parameters(), rtol=1e-11,
                               atol=1e-14)


def test_parameter_lists_cannot_be_replaced(backend):
    net = net_of(backend)
    for name in ("weights", "biases", "grad_weights", "grad_biases"):
        with raises(AttributeError, name):
            setattr(net, name, [np.zeros((3, 4)), np.zeros((4, 2))])


@pytest.mark.parametrize("i, value, exc, name", [
    (0, np.zeros((4, 3)), ValueError, "weights[0]"),
    (0, np.zeros((3, 4, 1)), ValueError, "weights[0]"),
    (1, np.zeros(8), ValueError, "weights[1]"),
    (0, np.zeros((30, 40)), ValueError, "weights[0]"),
    (0, np.full((3, 4), np.nan), ValueError, "weights[0]"),
    (1, np.ones((4, 2), dtype=complex), TypeError, "weights[1]"),
    (0, [["a"] * 4] * 3, TypeError, "weights[0]"),
    (slice(0, 1), [np.zeros((3, 4))], TypeError, "weights"),
    ("0", np.zeros((3, 4)), TypeError, "weights"),
])
def test_bad_weight_assignments(backend, i, value, exc, name):
    net = net_of(backend)
    with raises(exc, name, unchanged=net):
        net.weights[i] = value


def test_weight_list_index_out_of_range():
    net = net_of()
    with pytest.raises(IndexError):
        net.weights[2] = np.zeros((4, 2))
    with pytest.raises(IndexError):
        net.biases[-3] = np.zeros(2)


def test_bias_assignment_checks_shape_and_accepts_lists(backend):
    net = net_of(backend)
    with raises(ValueError, "biases[0]"):
        net.biases[0] = np.zeros(3)
    net.biases[0] = [1, 2, 3, 4]
    assert net.biases[0].tolist() == [1, 2, 3, 4]


def test_weight_views_cannot_be_resized_and_reshaping_a_view_is_harmless(backend):
    X, _ = data()
    net = net_of(backend)
    want = net.forward(X)
    W = net.weights[0]
    with pytest.raises(ValueError):
        W.resize((30, 40))
    with pytest.raises(ValueError):
        W.resize((300, 400), refcheck=False)     # a view never owns its data
    with pytest.raises((ValueError, AttributeError)):
        W.shape = (30, 40)
    W.shape = (4, 3)                         # the caller's own view only
    assert net.weights[0].shape == (3, 4)
    with pytest.raises(ValueError):
        net._params.resize(1000)             # the buffer is referenced by the views
    assert np.array_equal(net.forward(X), want)
    net.weights[0] = np.ones((3, 4))         # the checked assignment sees the real shape
    assert np.array_equal(W, np.ones((4, 3)))


def test_in_place_changes_through_views_are_seen_by_both_backends(backend):
    X, _ = data()
    net = net_of(backend)
    net.weights[1][...] = 0
    net.biases[1][...] = [0.0, 100.0]
    out = net.forward(X)
    np.testing.assert_allclose(out[:, 0], 0.5)
    np.testing.assert_allclose(out[:, 1], 1.0)


def test_nan_written_through_a_view_is_refused_by_fit(backend):
    net = net_of(backend)
    net.weights[0][1, 2] = np.nan
    with raises(ValueError, "parameters", "NaN"):
        net.fit(*data(), epochs=1)


@pytest.mark.parametrize("flat, exc", [
    (np.zeros(5), ValueError), (np.zeros((26, 1)), ValueError),
    (np.full(26, np.inf), ValueError), (np.zeros(26, dtype=complex), TypeError),
    (["a"] * 26, TypeError),
])
def test_bad_set_parameters(backend, flat, exc):
    net = net_of(backend)
    assert net.get_parameters().shape == (26,)
    with raises(exc, "parameters", unchanged=net):
        net.set_parameters(flat)




def integer_variants(dtype):
    X = np.array([[1, -2, 3], [0, 4, -1]])
    return X.astype(dtype), [("int64", X), ("int8", X.astype(np.int8)), ("uint8", np.abs(X).astype(np.uint8)),
                             ("bool", X > 0), ("int-list", X.tolist())]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_input_form_gives_the_canonical_results(backend, dtype):
    X, Y = data(n=4)
    canon_X = X.astype(dtype)
    X = canon_X.astype(np.float64)      # values exactly representable in both dtypes
    canon_Y = Y.astype(dtype)
    ref = net_of(backend, dtype)
    want_forward = ref.forward(canon_X)
    want_predict = ref.predict(canon_X)
    want_loss = ref.evaluate(canon_X, canon_Y)
    stepped = net_of(backend, dtype)
    want_step_loss = stepped.train_step(canon_X, canon_Y, 0.3)
    fitted = net_of(backend, dtype)
    want_hist = fitted.fit(canon_X, canon_Y, epochs=2, batch_size=3, seed=4).loss
    for (name, Xv), (_, Yv) in zip(variants(X, dtype), variants(Y.astype(dtype).astype(np.float64), dtype)):
        if name == "other-float" and dtype == "float64":
            continue   # float32 data in a float64 network: tested on its own below
        net = net_of(backend, dtype)
        assert np.array_equal(net.forward(Xv), want_forward), name
        assert np.array_equal(net.predict(Xv), want_predict), name
        assert net.evaluate(Xv, Yv) == want_loss, name
        assert net.train_step(Xv, Yv, 0.3) == want_step_loss, name
        assert np.array_equal(net.get_parameters(), stepped.get_parameters()), name
        net = net_of(backend, dtype)
        assert net.fit(Xv, Yv, epochs=2, batch_size=3, seed=4).loss == want_hist, name
        assert np.array_equal(net.get_parameters(), fitted.get_parameters()), name


def test_float32_data_to_a_float64_network_is_exactly_the_widened_data(backend):
    X, Y = data(n=4)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    a, b = net_of(backend), net_of(backend)
    assert np.array_equal(a.forward(X32), b.forward(X32.astype(np.float64)))
    assert a.train_step(X32, Y32, 0.1) == b.train_step(X32.astype(np.float64), Y32.astype(np.float64), 0.1)
    assert np.array_equal(a.get_parameters(), b.get_parameters())


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_and_bool_inputs(backend, dtype):
    canon, forms = integer_variants(dtype)
    net = net_of(backend, dtype)
    want = net.forward(canon)
    for name, Xv in forms:
        if name in ("uint8", "bool"):
            want_v = net.forward(np.asarray(Xv).astype(dtype))
        else:
            want_v = want
        assert np.array_equal(net.forward(Xv), want_v), name


def test_byte_swapped_input_is_read_by_value(backend):
    X, Y = data(n=4)
    a, b = net_of(backend), net_of(backend)
    assert np.array_equal(a.forward(X.astype(">f8")), b.forward(X))
    assert np.array_equal(a.predict(X.astype(">f8")), b.predict(X))
    a.fit(X.astype(">f8"), Y.astype(">f8"), epochs=1, seed=0)
    b.fit(X, Y, epochs=1, seed=0)
    assert np.array_equal(a.get_parameters(), b.get_parameters())


def test_byte_swapped_input_train_step(backend):
    X, Y = data(n=4)
    a, b = net_of(backend), net_of(backend)
    assert a.train_step(X.astype(">f8"), Y.astype(">f8"), 0.1) == b.train_step(X, Y, 0.1)
    assert np.array_equal(a.get_parameters(), b.get_parameters())


def test_one_sample_as_1d_arrays(backend):
    X, Y = data(n=1)
    for sizes, Xs, Ys in [((3, 4, 2), X, Y), ((1, 3, 2), X[:, :1], Y), ((3, 2, 1), X, Y[:, :1])]:
        a, b = net_of(backend, sizes=sizes), net_of(backend, sizes=sizes)
        assert np.array_equal(a.forward(Xs[0]), b.forward(Xs))
        assert a.forward(Xs[0]).shape == (1, sizes[-1])
        assert a.backward(Ys[0]) == b.backward(Ys)
        assert a.train_step(Xs[0].tolist(), Ys[0].tolist(), 0.1) == b.train_step(Xs, Ys, 0.1)
        assert np.array_equal(a.get_parameters(), b.get_parameters())


def test_1d_targets_of_a_single_output_as_array_or_list(backend):
    X, Y = data(n=5, n_out=1)
    want = net_of(backend, sizes=(3, 2, 1))
    hist = want.fit(X, Y, epochs=2, batch_size=2, seed=1).loss
    for Yv in (Y[:, 0], Y[:, 0].tolist(), tuple(Y[:, 0])):
        net = net_of(backend, sizes=(3, 2, 1))
        assert net.fit(X, Yv, epochs=2, batch_size=2, seed=1).loss == hist
        assert np.array_equal(net.get_parameters(), want.get_parameters())
        assert net.evaluate(X, Yv) == want.evaluate(X, Y)


def test_1d_X_is_a_sample_only_when_its_length_is_the_width():
    net = net_of(sizes=(1, 2, 1))
    with raises(ValueError, "X"):
        net.forward([0.1, 0.2, 0.3])       # three samples or one? refused, not guessed
    assert net.forward([0.5]).shape == (1, 1)


def test_canonical_input_is_not_copied():
    X = np.ones((4, 3))
    assert _validation.as_matrix(X, "X", np.dtype(np.float64), width=3) is X
    F = np.asfortranarray(X)
    C = _validation.as_matrix(F, "X", np.dtype(np.float64), width=3)
    assert C.flags.c_contiguous and not np.shares_memory(C, F)


def test_shapes_are_checked_before_anything_is_copied():
    # A (2**31, 3) view over 24 bytes: converting it would need 48 GiB.
    huge = np.broadcast_to(np.ones((1, 3)), (2 ** 31, 3))
    with raises(ValueError, "X", str(2 ** 31 - 1)):
        net_of().forward(huge)
    with raises(ValueError, "X", "columns"):
        net_of().forward(np.broadcast_to(np.ones((1, 5)), (2 ** 40, 5)))


def test_input_arrays_are_never_modified(backend):
    X, Y = data()
    Xc, Yc = X.copy(), Y.copy()
    net = net_of(backend)
    net.forward(X)
    net.backward(Y)
    net.train_step(X, Y, 0.5)
    net.fit(X, Y, epochs=2, batch_size=2, validation_data=(X, Y))
    net.evaluate(X, Y)
    assert np.array_equal(X, Xc) and np.array_equal(Y, Yc)


def test_error_messages_say_what_was_given():
    with raises(ValueError) as r:
        net_of().forward(np.zeros((7, 5)))
    assert re.search(r"3 columns.*\(7, 5\)", str(r.value))
    with raises(TypeError) as r:
        net_of().fit(*data(), epochs=2.5)
    assert "float" in str(r.value) and "2.5" in str(r.value)


def test_batch_size_beyond_the_data_is_the_whole_data(backend):
    """Found by test_fuzz: a batch_size beyond a C Py_ssize_t overflowed in the engine."""
    X, Y = data(n=5)
    want = net_of(backend)
    want.fit(X, Y, epochs=2, batch_size=5, seed=1)
    for bs in (6, 2 ** 63, 10 ** 400):
        net = net_of(backend)
        assert net.fit(X, Y, epochs=2, batch_size=bs, seed=1).n_updates == 2
        assert np.array_equal(net.get_parameters(), want.get_parameters())


@pytest.mark.parametrize("attr, value", [("sizes", [3, 9, 2]), ("activation", "relu"),
                                         ("output_activation", "identity"), ("loss", "sse"),
                                         ("dtype", np.dtype(np.float32)), ("backend", "reference")])
def test_the_architecture_cannot_be_reassigned(backend, attr, value):
    """It is compiled into the engine; a new value would only make validation, evaluate()
    and save() disagree with what is trained."""
    net = net_of(backend)
    before = getattr(net, attr)
    with raises(AttributeError, attr):
        setattr(net, attr, value)
    assert getattr(net, attr) == before


def test_network_arguments_are_converted_exactly_once(backend):
    X, Y = data(n=6)
    calls = {
        "forward": lambda x, y: net.forward(x), "predict": lambda x, y: net.predict(x),
        "evaluate": lambda x, y: net.evaluate(x, y), "train_step": lambda x, y: net.train_step(x, y, 0.1),
        "fit": lambda x, y: net.fit(x, y, epochs=2, batch_size=4),
        "fit-validation": lambda x, y: net.fit(X, Y, epochs=2, validation_data=(x, y)),
        "backward": lambda x, y: (net.forward(X), net.backward(y)),
    }
    for name, call in calls.items():
        net = net_of(backend)
        x, y = Counting(X), Counting(Y)
        call(x, y)
        assert x.n <= 1 and y.n <= 1, (name, x.n, y.n)
