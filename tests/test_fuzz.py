"""Property tests (hypothesis): random architectures, activations, losses, dtypes, batch
sizes and values never crash, and the compiled backend agrees with the pure-Python
reference; random malformed inputs always raise ValueError or TypeError -- exactly when an
independent oracle says the input is malformed -- and never anything else.

float64 is compared with the float64 reference at rtol 1e-9 (only summation order differs);
float32 is compared with the *float64* reference started from the same (float32-exact)
parameters, at float32 tolerances. Values come from a NumPy generator seeded by hypothesis,
scaled by a drawn factor, so that they are generic (hypothesis' favourite exact zeros and
repeated values would put ReLU pre-activations exactly on the kink, where one rounding of
difference legitimately flips the derivative).
"""
import math
import os
import numbers
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

import bpfast
from bpfast import reference

# Diverging trajectories overflow on purpose; NumPy's warnings about it are expected.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

HIDDEN = ["identity", "sigmoid", "tanh", "relu"]
OUTPUT = HIDDEN + ["softmax"]
# BPFAST_FUZZ_EXAMPLES=5000 for a long bug hunt; the defaults keep the module at a few seconds.
SCALE = int(os.environ.get("BPFAST_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=SCALE or 100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def architectures(draw):
    n_layers = draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 8)) for _ in range(n_layers + 1)]
    output = draw(st.sampled_from(OUTPUT))
    losses = ["mse", "sse"] + (["cross_entropy"] if output == "softmax" else [])
    return dict(sizes=sizes, activation=draw(st.sampled_from(HIDDEN)), output_activation=output,
                loss=draw(st.sampled_from(losses)))


@st.composite
def problems(draw, max_rows=10):
    arch = draw(architectures())
    n = draw(st.integers(1, max_rows))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, arch["sizes"][0])) * scale
    k = arch["sizes"][-1]
    if arch["loss"] == "cross_entropy":
        Y = rng.dirichlet(np.ones(k), size=n) if draw(st.booleans()) else np.eye(k)[rng.integers(0, k, n)]
    else:
        Y = rng.uniform(-1, 1, size=(n, k))
    return arch, X, Y, seed


def exact(dtype, *arrays):
    """The arrays rounded to dtype (as float64), so both sides start from the same numbers."""
    return tuple(a.astype(dtype).astype(np.float64) for a in arrays)


def _initial(arch, net_seed):
    """The float32-exact initial parameters that pair() gives both networks, as float64."""
    return bpfast.Network(**arch, dtype="float32", seed=net_seed).get_parameters().astype(np.float64)


def pair(arch, dtype, net_seed):
    """(compiled network of dtype, float64 reference network with the same parameters)."""
    fast = bpfast.Network(**arch, dtype=dtype, backend="cython", seed=net_seed)
    slow = bpfast.Network(**arch, dtype="float64", backend="reference", seed=net_seed)
    slow.set_parameters(fast.get_parameters().astype(np.float64))
    return fast, slow


def tol(dtype, scale=1.0):
    if dtype == "float64":
        return dict(rtol=1e-9, atol=1e-11 * scale)
    return dict(rtol=2e-4, atol=2e-5 * scale)


def close(a, b, dtype, scale=1.0, what=""):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               err_msg=what, **tol(dtype, scale))


def magnitude(net):
    return 1.0 + float(np.abs(net.get_parameters()).max())


def forward_may_overflow(nets, X):
    """Whether a forward pass of X at any of these networks' parameters may overflow
    float64: a bound on every activation's magnitude (each layer at most width * max|W| *
    its input + max|b|; the activations here shrink or keep magnitudes) past 1e300. There
    one backend's sum of products may end as -inf, which a ReLU makes 0, where the
    other's meets +inf on the way and gives NaN: both are overflow, either may go on."""
    for net in nets:
        bound = max(1.0, float(np.abs(X).max()))
        with np.errstate(over="ignore"):
            for W, b in zip(net.weights, net.biases):
                bound = W.shape[0] * float(np.abs(W).max()) * bound + float(np.abs(b).max())
        if not bound < 1e300:
            return True
    return False


# ============================================================== the two backends agree
@SETTINGS
@given(problems(), st.sampled_from(["float64", "float32"]), st.integers(0, 2 ** 32 - 1))
def test_forward_backward_step_agree(problem, dtype, net_seed):
    arch, X, Y, _ = problem
    X, Y = exact(dtype, X, Y)
    fast, slow = pair(arch, dtype, net_seed)
    out_f, out_s = fast.forward(X), slow.forward(X)
    assert out_f.shape == (X.shape[0], arch["sizes"][-1]) and out_f.dtype == dtype
    assert np.isfinite(out_f).all()
    s = magnitude(fast) * (1 + np.abs(X).max())
    close(out_f, out_s, dtype, s, "forward")
    loss_f, loss_s = fast.backward(Y), slow.backward(Y)
    assert math.isfinite(loss_f)
    close(loss_f, loss_s, dtype, s * s, "loss")
    close(fast._grads, slow._grads, dtype, s * s, "gradients")
    fast.step(0.05)
    slow.step(0.05)
    close(fast.get_parameters(), slow.get_parameters(), dtype, s * s, "after step")
    # The step may cancel large terms: scale by the magnitudes after it.
    s = magnitude(slow) ** len(arch["sizes"]) * (1 + np.abs(X).max())
    close(fast.predict(X), slow.predict(X), dtype, s, "predict")


@SETTINGS
@given(problems(), st.sampled_from(["float64", "float32"]), st.integers(0, 2 ** 32 - 1),
       st.sampled_from([0.01, 0.1, 0.5]))
def test_train_step_agrees_and_equals_forward_backward_step(problem, dtype, net_seed, lr):
    arch, X, Y, _ = problem
    X, Y = exact(dtype, X, Y)
    fast, slow = pair(arch, dtype, net_seed)
    split = bpfast.Network(**arch, dtype=dtype, seed=net_seed)
    s = magnitude(fast) * (1 + np.abs(X).max())
    loss_f, loss_s = fast.train_step(X, Y, lr), slow.train_step(X, Y, lr)
    close(loss_f, loss_s, dtype, s * s, "loss")
    close(fast.get_parameters(), slow.get_parameters(), dtype, s, "parameters")
    split.forward(X)
    assert split.backward(Y) == pytest.approx(loss_f, rel=1e-12 if dtype == "float64" else 1e-6)
    split.step(lr)
    close(split.get_parameters(), fast.get_parameters(), dtype, s, "fused vs split")


@st.composite
def fit_options(draw, n):
    opts = dict(epochs=draw(st.integers(1, 3)), batch_size=draw(st.integers(1, n + 2)),
                lr=draw(st.sampled_from([0.01, 0.05, 0.2])), shuffle=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 64 - 1)))
    if draw(st.booleans()):
        opts["momentum"] = draw(st.sampled_from([0.5, 0.9]))
        opts["nesterov"] = draw(st.booleans())
    if draw(st.booleans()):
        opts["weight_decay"] = draw(st.sampled_from([1e-4, 1e-2]))
    schedule = draw(st.sampled_from(["constant", "invscaling", "step"]))
    opts["lr_schedule"] = schedule
    if schedule == "step":
        opts["step_size"] = 1
    return opts


@SETTINGS
@given(st.data(), st.sampled_from(["float64", "float32"]), st.integers(0, 2 ** 32 - 1))
def test_fit_agrees(data, dtype, net_seed):
    arch, X, Y, _ = data.draw(problems(max_rows=12))
    if dtype == "float32":
        # Over many updates a float32 rounding can flip a ReLU derivative on its kink;
        # fit is compared in float32 for the smooth activations only.
        assume(arch["activation"] != "relu" and arch["output_activation"] != "relu")
    opts = data.draw(fit_options(X.shape[0]))
    X, Y = exact(dtype, X, Y)
    fast, slow = pair(arch, dtype, net_seed)
    Xv, Yv = X[:3], Y[:3]
    with_val = data.draw(st.booleans())     # without: all epochs run in one native call
    if with_val:
        opts["validation_data"] = (Xv, Yv)

    def run(net):
        try:
            return net.fit(X, Y, **opts), None
        except FloatingPointError as exc:
            return None, exc

    (h_fast, e_fast), (h_slow, e_slow) = run(fast), run(slow)
    if dtype == "float32":
        # float32 has a smaller range and precision than its float64 yardstick: compare only
        # trajectories that stay moderate (a blow-up legitimately overflows float32 first).
        assume(e_slow is None and e_fast is None)
        assume(np.abs(slow.get_parameters()).max() < 1e3 and max(h_slow.loss + h_slow.val_loss) < 1e6)
        if arch["output_activation"] in ("softmax", "sigmoid"):
            # A cross-entropy past -log(FLT_MIN) ~ 87 means a probability below float32's
            # normal range: float32 saturates there (found: loss 115 against float64's 78).
            assume(max(h_slow.loss + h_slow.val_loss) < 80)
    if e_fast is not None or e_slow is not None:
        # Divergence (identity/relu with big steps) is legitimate; both backends must see it,
        # in the same epoch, and both restore the same parameters, unless the forward pass
        # itself reached float64's overflow, where ReLU may hide -inf in one of them.
        if (e_fast is None) != (e_slow is None):
            assume(not forward_may_overflow((fast, slow), X))
        assert e_fast is not None and e_slow is not None, (e_fast, e_slow)
        assert str(e_fast) == str(e_slow)
        assert np.isfinite(fast.get_parameters()).all()
        return
    n_batches = -(-X.shape[0] // opts["batch_size"])
    assert h_fast.n_updates == h_slow.n_updates == opts["epochs"] * n_batches
    assert h_fast.epochs == opts["epochs"] and len(h_fast.val_loss) == opts["epochs"] * with_val
    assert np.isfinite(h_fast.loss).all()
    np.testing.assert_allclose(h_fast.lr, h_slow.lr, rtol=1e-15)
    s = magnitude(slow) * (1 + np.abs(X).max())
    t = tol(dtype)
    got = [np.asarray(h_fast.loss), np.asarray(h_fast.val_loss), fast.get_parameters().astype(np.float64)]
    want = [np.asarray(h_slow.loss), np.asarray(h_slow.val_loss), slow.get_parameters()]
    if dtype == "float64":
        for g, w, a in zip(got, want, (s * s, s * s, s)):
            # An overflowing sum may end as +-inf in one backend and NaN in the other: with
            # fused multiply-adds (BLAS, the small-product kernel) inf + (x * y too big) is
            # inf, while a rounded product is -inf and inf - inf is NaN. Both say overflow
            # (a validation loss can overflow while training stays finite).
            if not np.array_equal(np.isfinite(g), np.isfinite(w)):
                assume(not forward_may_overflow((fast, slow), X))
            assert np.array_equal(np.isfinite(g), np.isfinite(w)), (g, w)
            ok = np.isfinite(w)
            np.testing.assert_allclose(g[ok], w[ok], rtol=t["rtol"], atol=t["atol"] * a)
        return
    # float32: many updates amplify its rounding as much as the dynamics amplify any small
    # perturbation. Measure that amplification with a float64 run started from parameters
    # perturbed by 1e-6 (relative, ~16 float32 ulps); float32 must stay within a few times it.
    twin = bpfast.Network(**arch, dtype="float64", backend="reference", seed=0)
    noise = np.random.default_rng(net_seed).standard_normal(slow.get_parameters().shape)
    twin.set_parameters(_initial(arch, net_seed) * (1 + 1e-6 * noise))
    h_twin = twin.fit(X, Y, **opts)
    spread = [np.asarray(h_twin.loss), np.asarray(h_twin.val_loss), twin.get_parameters()]
    for g, w, p, a, what in zip(got, want, spread, (s * s, s * s, s), ("loss", "val_loss", "params")):
        spread_max = np.max(np.abs(p - w), initial=0.0)
        bound = t["atol"] * a + t["rtol"] * np.abs(w) + 10 * spread_max
        assert (np.abs(g - w) <= bound).all(), (what, g, w, spread_max)


@SETTINGS
@given(st.data(), st.sampled_from(["float64", "float32"]), st.sampled_from(["cython", "reference"]),
       st.integers(0, 2 ** 32 - 1))
def test_fit_in_one_native_call_equals_fit_epoch_by_epoch(data, dtype, backend, net_seed):
    """A callback (or validation data, or a callable schedule) makes fit return to Python
    after every epoch; without them every epoch runs in one native call. Same numbers, bit
    for bit, and the same divergence."""
    arch, X, Y, _ = data.draw(problems(max_rows=12))
    opts = data.draw(fit_options(X.shape[0]))
    results = []
    for per_epoch in (False, True):
        net = bpfast.Network(**arch, dtype=dtype, backend=backend, seed=net_seed)
        kw = dict(opts, callback=(lambda e, h: None)) if per_epoch else opts
        try:
            h = net.fit(X, Y, **kw)
            results.append((h.loss, h.lr, h.n_updates, net.get_parameters().tobytes()))
        except FloatingPointError as exc:
            results.append((str(exc), net.get_parameters().tobytes()))
    assert results[0] == results[1]


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2 ** 32 - 1),
       st.sampled_from(OUTPUT), st.sampled_from([np.float64, np.float32]))
def test_functional_kernels_agree_with_reference(n, n_in, n_out, seed, activation, dtype):
    rng = np.random.default_rng(seed)
    X, W, b, D = (rng.normal(size=s).astype(dtype) for s in ((n, n_in), (n_in, n_out), (n_out,), (n, n_out)))
    t = tol("float64" if dtype == np.float64 else "float32", 1 + n_in)
    np.testing.assert_allclose(bpfast.dense_forward(X, W, b, activation),
                               reference.dense_forward(X.tolist(), W.tolist(), b.tolist(), activation), **t)
    np.testing.assert_allclose(bpfast.backprop_error(D, W),
                               reference.backprop_error(D.tolist(), W.tolist()), **t)
    W2 = W.copy()
    bpfast.sgd_update(W2, np.ones_like(W), 0.5)
    np.testing.assert_allclose(W2, W - dtype(0.5), **t)


# ============================================================== malformed input
def oracle_matrix(x, width, rows=None, dtype=np.float64, allow_1d=True, column_1d=False):
    """True when x is an acceptable (rows, width) matrix, by a route independent of bpfast."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = np.array(x)
    except Exception:
        return False
    if a.dtype.kind not in "biuf":
        return False
    if a.ndim == 1:
        if column_1d:
            a = a[:, None]
        elif allow_1d and a.shape[0] == width:
            a = a[None, :]
    if a.ndim != 2 or a.shape[1] != width or a.shape[0] == 0:
        return False
    if rows is not None and a.shape[0] != rows:
        return False
    with np.errstate(all="ignore"):
        return bool(np.isfinite(a.astype(dtype)).all())


# Finite values stay below 1e6 so that valid inputs train without overflowing (the network
# under test is sigmoid/sigmoid); 1e300 is drawn only where it must overflow float32.
FLOATS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0]))
ELEMENTS = st.one_of(FLOATS, st.integers(-5, 5), st.booleans(),
                     st.complex_numbers(max_magnitude=3), st.text(max_size=2), st.none())
DTYPES_ANY = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8,
                              np.bool_, np.complex128, object, "U3", ">f8", "datetime64[s]"])


@st.composite
def junk(draw, width, huge=False):
    """Anything: mostly near misses of a (n, width) matrix, sometimes right by chance."""
    kind = draw(st.sampled_from(["array", "array", "shaped", "shaped", "list", "ragged", "scalar", "other"]))
    if kind in ("array", "list", "shaped"):
        if kind == "shaped":      # the right shape: only the dtype or the values can be wrong
            shape = (draw(st.sampled_from([1, 2, 3])), width)
            kind = "array"
        else:
            ndim = draw(st.integers(0, 3))
            shape = tuple(draw(st.sampled_from([0, 1, 2, 3, width, width + 1])) for _ in range(ndim))
        size = int(np.prod(shape)) if shape else 1
        element = ELEMENTS if kind == "list" else FLOATS
        if huge:
            element = st.one_of(element, st.just(1e300))
        values = draw(st.lists(element, min_size=size, max_size=size))
        if kind == "list":
            try:
                arr = np.empty(size, dtype=object)
                arr[:] = values
                return arr.reshape(shape).tolist()
            except Exception:
                return values
        dtype = draw(DTYPES_ANY)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                arr = np.array(values, dtype=np.float64).astype(dtype).reshape(shape)
        except (ValueError, TypeError, OverflowError):
            arr = np.array(values, dtype=np.float64).reshape(shape)
        if arr.ndim == 2 and draw(st.booleans()):
            arr = np.asfortranarray(arr)
        return arr
    if kind == "ragged":
        return [[1.0] * width, [1.0] * (width + 1)]
    if kind == "scalar":
        return draw(ELEMENTS)
    return draw(st.sampled_from([None, "x", {"a": 1}, {1, 2}, object(), b"abc", np.float64]))


BAD_SCALARS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
                        st.booleans(), st.none(), st.text(max_size=2), st.complex_numbers(max_magnitude=2),
                        st.just(np.float32(0.1)), st.just(np.array(0.1)), st.just(10 ** 400))


def ok_lr(lr):
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        return False
    try:
        value = float(lr)
    except OverflowError:
        return False
    return math.isfinite(value) and value > 0


def ok_int(x):
    return not isinstance(x, (bool, np.bool_)) and isinstance(x, numbers.Integral) and x >= 1


MALFORMED = settings(max_examples=SCALE or 100, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@MALFORMED
@given(st.data(), st.sampled_from(["cython", "reference"]), st.sampled_from(["float64", "float32"]))
def test_malformed_X_and_Y_raise_value_or_type_errors(data, backend, dtype):
    width, n_out = 3, data.draw(st.sampled_from([1, 2]))
    net = bpfast.Network([width, 4, n_out], dtype=dtype, backend=backend, seed=0)
    before = net.get_parameters()
    X = data.draw(junk(width, huge=dtype == "float32"), "X")
    method = data.draw(st.sampled_from(["forward", "predict", "train_step", "fit", "evaluate"]))
    x_ok = oracle_matrix(X, width, dtype=dtype)
    rows = None
    if x_ok:
        a = np.array(X)
        rows = 1 if a.ndim == 1 else a.shape[0]
    Y = data.draw(st.one_of(junk(n_out, huge=dtype == "float32"), st.just(np.zeros((rows or 1, n_out)))), "Y")
    y_ok = oracle_matrix(Y, n_out, rows=rows, dtype=dtype, allow_1d=rows == 1, column_1d=n_out == 1)
    needs_y = method in ("train_step", "fit", "evaluate")
    valid = x_ok and (y_ok or not needs_y)
    event("valid" if valid else "malformed")
    try:
        if method == "forward":
            out = net.forward(X)
        elif method == "predict":
            out = net.predict(X)
        elif method == "train_step":
            out = net.train_step(X, Y, 0.1)
        elif method == "fit":
            out = net.fit(X, Y, epochs=1, batch_size=2).loss[0]
        else:
            out = net.evaluate(X, Y)
    except (ValueError, TypeError) as exc:
        assert not valid, f"valid input refused: {exc}"
        assert np.array_equal(net.get_parameters(), before)
        msg = str(exc)
        assert "X" in msg or "Y" in msg, msg
        return
    assert valid, f"malformed input accepted by {method}: X={X!r} Y={Y!r}"
    assert np.isfinite(out).all()


@MALFORMED
@given(BAD_SCALARS, BAD_SCALARS, BAD_SCALARS, st.sampled_from(["cython", "reference"]))
def test_malformed_scalars_raise_value_or_type_errors(lr, epochs, batch_size, backend):
    net = bpfast.Network([2, 3, 1], backend=backend, seed=0)
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    valid = ok_lr(lr) and ok_int(epochs) and ok_int(batch_size)
    assume(not valid or (epochs <= 3 and lr < 10))
    try:
        net.fit(X, Y, epochs=epochs, batch_size=batch_size, lr=lr)
    except (ValueError, TypeError) as exc:
        assert not valid, exc
        assert any(name in str(exc) for name in ("lr", "epochs", "batch_size")), exc
        return
    assert valid
    for call in (lambda: net.train_step(X, Y, lr), lambda: net.step(lr)):
        try:
            call()
        except (ValueError, TypeError) as exc:
            assert not ok_lr(lr), exc
            assert "lr" in str(exc)
        else:
            assert ok_lr(lr)


@MALFORMED
@given(st.lists(st.one_of(st.integers(-2, 9), st.floats(-1, 9), st.booleans(), st.none(), st.text(max_size=1)),
                max_size=5),
       st.sampled_from(OUTPUT + ["bogus", None]), st.sampled_from(HIDDEN + ["softmax", "bogus", 3]),
       st.sampled_from(["mse", "sse", "cross_entropy", "nll", None]),
       st.sampled_from(["float64", "float32", "float16", None, "x"]),
       st.sampled_from(["cython", "reference", "gpu", None]))
def test_malformed_constructor_arguments(sizes, output, hidden, loss, dtype, backend):
    try:
        net = bpfast.Network(sizes, activation=hidden, output_activation=output, loss=loss,
                             dtype=dtype, backend=backend)
    except (ValueError, TypeError):
        return
    assert len(sizes) >= 2 and all(type(s) is int and s >= 1 for s in sizes)
    assert hidden in HIDDEN and output in OUTPUT and dtype in ("float64", "float32")
    assert loss in ("mse", "sse") or (loss == "cross_entropy" and output == "softmax")
    assert net.forward(np.ones((1, sizes[0]))).shape == (1, sizes[-1])


@MALFORMED
@given(st.data())
def test_malformed_functional_arguments(data):
    n_in, n_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    X = data.draw(junk(n_in), "X")
    W = data.draw(st.one_of(junk(n_out), st.just(np.ones((n_in, n_out)))), "W")
    b = data.draw(st.one_of(junk(n_out), st.just(np.zeros(n_out))), "b")
    try:
        out = bpfast.dense_forward(X, W, b, "tanh")
    except (ValueError, TypeError):
        return
    Wa = np.asarray(W)
    assert Wa.ndim == 2 and oracle_matrix(X, Wa.shape[0]) and oracle_matrix(W, Wa.shape[1])
    assert np.isfinite(out).all()
    try:
        E = bpfast.backprop_error(X, W)
    except (ValueError, TypeError):
        return
    assert np.isfinite(E).all()
