"""solver='lbfgs', scikit-learn's output layers and losses, and sparse input, each checked
against scikit-learn's own MLP (its objective function, its fitted models) or against
bpfast's dense results."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification  # noqa: E402
from sklearn.datasets import make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402

from bpfast._sklearn_lbfgs import sklearn_objective  # noqa: E402
from bpfast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Short fits that stop at max_iter warn; the tests that expect a ConvergenceWarning catch it.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _problems():
    """(name, our estimator class, scikit-learn's, X, y, extra parameters)."""
    rng = np.random.RandomState(0)
    X, y3 = make_classification(n_samples=40, n_features=6, n_informative=4, n_classes=3,
                                random_state=0)
    Xm, Ym = make_multilabel_classification(n_samples=40, n_features=6, n_classes=4,
                                            random_state=0)
    Xr, Yr = make_regression(n_samples=40, n_features=6, n_targets=3, random_state=0)
    Xp = rng.uniform(size=(40, 6))
    yp = rng.poisson(np.exp(Xp @ rng.uniform(-1, 1, 6)))
    return [
        ("binary", MLPClassifier, SkMLPClassifier, X, (y3 > 0).astype(int), {}),
        ("multiclass", MLPClassifier, SkMLPClassifier, X, y3, {}),
        ("multilabel", MLPClassifier, SkMLPClassifier, Xm / 10, Ym, {}),
        ("multi-output", MLPRegressor, SkMLPRegressor, Xr, Yr / 100, {}),
        ("poisson", MLPRegressor, SkMLPRegressor, Xp, yp, {"loss": "poisson"}),
    ]


PROBLEMS = _problems()
IDS = [p[0] for p in PROBLEMS]


def _sk_theta_to_ours(sk, sizes):
    """scikit-learn's packing (all coefs, then all intercepts) -> bpfast's [W0|b0|W1|b1]."""
    return np.concatenate([part for W, b in zip(sk.coefs_, sk.intercepts_)
                           for part in (W.ravel(), b)])


@pytest.mark.parametrize("name, Ours, Theirs, X, y, extra", PROBLEMS, ids=IDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_is_scikit_learns(name, Ours, Theirs, X, y, extra, weighted):
    """Loss and gradient equal scikit-learn's _loss_grad_lbfgs at the same parameters
    (L2 term, sample weights and the squared loss's scaling included)."""
    sw = np.random.RandomState(1).uniform(0.2, 2.0, len(X)) if weighted else None
    kw = dict(hidden_layer_sizes=(5, 4), activation="tanh", solver="lbfgs", alpha=0.3,
              max_iter=2, random_state=0, **extra)
    ours = Ours(**kw).fit(X, y, sample_weight=sw)
    theirs = Theirs(**kw).fit(X, y, sample_weight=sw)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_outputs_ == theirs.n_outputs_
    Y = ours._label_binarizer.transform(y) if Ours is MLPClassifier else y.reshape(len(X), -1)
    Y = Y.astype(float)
    objective = sklearn_objective(ours.network_, X, Y, sw, ours.alpha)
    layer_units = [X.shape[1], 5, 4, theirs.n_outputs_]
    for theta_source in (theirs, ours):
        theta_sk = np.concatenate([W.ravel() for W in theta_source.coefs_]
                                  + [b for b in theta_source.intercepts_])
        activations = [X] + [None] * 3
        deltas = [None] * 3
        coef_grads = [np.empty((a, b)) for a, b in zip(layer_units[:-1], layer_units[1:])]
        intercept_grads = [np.empty(b) for b in layer_units[1:]]
        want_loss, want_grad = theirs._loss_grad_lbfgs(
            theta_sk, X, Y, sw, activations, deltas, coef_grads, intercept_grads)
        theirs._unpack(theta_sk)
        loss, grad = objective(_sk_theta_to_ours(theirs, layer_units))
        assert loss == pytest.approx(want_loss, rel=1e-12)
        np.testing.assert_allclose(grad, _sk_theta_to_ours(
            type("G", (), {"coefs_": coef_grads, "intercepts_": intercept_grads}),
            layer_units), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, Ours, Theirs, X, y, extra", PROBLEMS, ids=IDS)
def test_lbfgs_fit_follows_scikit_learns(name, Ours, Theirs, X, y, extra):
    """Same start, same objective, same L-BFGS-B: the same model after 15 iterations."""
    kw = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=15, random_state=0, **extra)
    ours, theirs = Ours(**kw).fit(X, y), Theirs(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    if Ours is MLPClassifier:
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-5, atol=1e-7)


def test_lbfgs_warns_and_stops_at_max_iter_and_max_fun():
    X, y = make_classification(n_samples=60, n_features=5, random_state=0)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clf = MLPClassifier(solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clf = MLPClassifier(solver="lbfgs", max_fun=4, random_state=0).fit(X, y)
    assert clf.n_iter_ <= 4
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="sgd"), "partial_fit")


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_gives_the_dense_inputs_model(solver, fmt):
    rng = np.random.RandomState(0)
    X, y = make_classification(n_samples=120, n_features=30, random_state=0)
    X[rng.uniform(size=X.shape) < 0.8] = 0.0
    X_sparse = scipy.sparse.csr_matrix(X) if fmt == "csr" else scipy.sparse.csc_matrix(X)
    kw = dict(hidden_layer_sizes=(7,), solver=solver, max_iter=12, batch_size=25,
              random_state=0)
    dense, sparse = MLPClassifier(**kw).fit(X, y), MLPClassifier(**kw).fit(X_sparse, y)
    for got, want in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sparse.predict_proba(X_sparse), dense.predict_proba(X))


def test_multilabel_and_binary_outputs_are_scikit_learns():
    X, Y = make_multilabel_classification(n_samples=60, n_classes=3, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    clf.fit(X, Y)
    proba = clf.predict_proba(X)
    assert clf.out_activation_ == "logistic" and proba.shape == (60, 3)
    np.testing.assert_array_equal(clf.predict(X), (proba > 0.5).astype(int))
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])


@pytest.mark.parametrize("name, Ours, Theirs, X, y, extra", PROBLEMS, ids=IDS)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_stochastic_solvers_follow_scikit_learns_on_every_output(name, Ours, Theirs, X, y,
                                                                 extra, solver):
    """Unshuffled mini-batches: loss curves and weights as scikit-learn's for the logistic,
    multilabel, multi-output and Poisson outputs too. (alpha=0: the L2 part of an
    epoch's loss is computed from the epoch's last weights, scikit-learn's from each
    batch's -- the documented difference; the updates themselves include it alike.)"""
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=8, batch_size=10, alpha=0.0,
              shuffle=False, random_state=0, learning_rate_init=0.01, **extra)
    ours, theirs = Ours(**kw).fit(X, y), Theirs(**kw).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name, Ours, Theirs, X, y, extra", PROBLEMS, ids=IDS)
def test_l2_updates_follow_scikit_learns_on_every_output(name, Ours, Theirs, X, y, extra):
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", max_iter=8, batch_size=10, alpha=0.5,
              shuffle=False, random_state=0, learning_rate_init=0.01, **extra)
    ours, theirs = Ours(**kw).fit(X, y), Theirs(**kw).fit(X, y)
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_logistic_outputs_export_to_onnx_as_predict_and_predict_proba(tmp_path, kind):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    import bpfast
    X, Y = make_multilabel_classification(n_samples=50, n_classes=3, random_state=0)
    y = Y if kind == "multilabel" else np.where(Y[:, 0] == 1, "yes", "no")
    clf = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=30, random_state=0)
    clf.fit(X, y)
    assert clf.out_activation_ == "logistic"
    bpfast.export_onnx(clf, tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": X.astype(np.float64)})
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(label, clf.predict(X))
