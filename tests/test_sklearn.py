"""bpfast.sklearn: scikit-learn's own estimator checks, and agreement with scikit-learn's MLP."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import bpfast  # noqa: E402
from bpfast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from helpers import child_output  # noqa: E402

# Short fits that hit max_iter on purpose warn; test_warns_when_max_iter_reached checks it.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ---------------------------------------------------------------- scikit-learn's checks
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- the same numbers as scikit-learn
def _blobs(n=240, centers=3):
    X, y = make_blobs(n_samples=n, centers=centers, random_state=0)
    return StandardScaler().fit_transform(X), y


def _max_diff(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b))


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_classifier_matches_sklearn_sgd(nesterov, activation):
    # Same Glorot init from the same random_state stream, same updates: without
    # shuffling (whose order differs) the weights agree to rounding error.
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(10, 6), activation=activation, solver="sgd", shuffle=False,
              random_state=0, learning_rate_init=0.05, batch_size=40, max_iter=8, alpha=1e-3,
              nesterovs_momentum=nesterov, momentum=0.8)
    ours, theirs = MLPClassifier(**kw).fit(X, y), SkMLPClassifier(**kw).fit(X, y)
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-12
    assert _max_diff(ours.intercepts_, theirs.intercepts_) < 1e-12
    # The L2 part of our loss uses end-of-epoch weights: equal to ~1e-5 here.
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)
    assert ours.score(X, y) == theirs.score(X, y)


@pytest.mark.parametrize("learning_rate", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regressor_matches_sklearn_sgd(learning_rate, n_outputs):
    X, y = make_regression(n_samples=120, n_features=4, n_targets=n_outputs, noise=1.0,
                           random_state=0)
    y = (y - y.mean(axis=0)) / y.std(axis=0)
    kw = dict(hidden_layer_sizes=(8,), activation="tanh", solver="sgd", shuffle=False,
              random_state=1, learning_rate_init=0.02, batch_size=30, max_iter=25, alpha=0.0,
              learning_rate=learning_rate, tol=1e-2, n_iter_no_change=2)
    ours, theirs = MLPRegressor(**kw).fit(X, y), SkMLPRegressor(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-12
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), atol=1e-12)
    assert ours.predict(X).shape == y.shape


def test_regressor_loss_curve_includes_the_l2_term_with_several_outputs():
    """With 3 outputs bpfast's own loss weighs the L2 term differently; the curve is rescaled."""
    X, y = make_regression(n_samples=120, n_features=4, n_targets=3, noise=1.0, random_state=0)
    y = (y - y.mean(axis=0)) / y.std(axis=0)
    kw = dict(hidden_layer_sizes=(8,), activation="tanh", solver="sgd", shuffle=False,
              random_state=1, learning_rate_init=0.02, batch_size=30, max_iter=10, alpha=0.1)
    ours, theirs = MLPRegressor(**kw).fit(X, y), SkMLPRegressor(**kw).fit(X, y)
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-12
    # The L2 term is ~27% of the loss here; taken at the end of each epoch instead of
    # before each batch it moves the curve by ~1%.
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=0.03)


@pytest.mark.parametrize("solver, learning_rate",
                         [("sgd", "constant"), ("sgd", "adaptive"), ("adam", "constant")])
def test_epochs_run_in_chunks_give_the_same_fit_as_one_by_one(solver, learning_rate,
                                                               monkeypatch, capsys):
    """Without anything to see every epoch, the epochs that cannot stop run in one call."""
    from bpfast import _fitting
    chunks = []
    original = _fitting._epochs_until_next_call
    monkeypatch.setattr(_fitting, "_epochs_until_next_call",
                        lambda verdict: chunks.append(original(verdict)) or chunks[-1])
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), learning_rate_init=0.2 if solver == "sgd" else 0.01,
              batch_size=16, max_iter=60, random_state=0, tol=1e-3, n_iter_no_change=3,
              solver=solver, learning_rate=learning_rate)
    chunked = MLPClassifier(**kw).fit(X, y)
    assert max(chunks) == 4 and len(chunks) < chunked.n_iter_
    chunks.clear()
    # SGD: invscaling with power_t=0 is the constant rate, but is looked at after every
    # epoch. Adam ignores the schedules; verbose prints every epoch.
    every_epoch = (dict(learning_rate="invscaling", power_t=0.0) if solver == "sgd"
                   else dict(verbose=True))
    one_by_one = MLPClassifier(**dict(kw, **every_epoch)).fit(X, y)
    assert set(chunks) == {1}
    if learning_rate == "constant":
        assert chunked.n_iter_ == one_by_one.n_iter_ < 60
        assert chunked.loss_curve_ == one_by_one.loss_curve_
        assert _max_diff(chunked.coefs_, one_by_one.coefs_) == 0
    assert len(chunked.loss_curve_) == chunked.n_iter_


# ---------------------------------------------------------------- behaviour
def test_stops_on_tol_without_warning():
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), tol=1.0, n_iter_no_change=3, max_iter=100,
                            random_state=0).fit(X, y)
    # the loss never improves by 1.0: epochs 2..5 count 1..4 > n_iter_no_change (as sklearn)
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5


def test_warns_when_max_iter_reached():
    X, y = _blobs()
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3


def test_learns_blobs_with_shuffling():
    X, y = _blobs()
    # tol=1e-3: with the default 1e-4 this problem stops anywhere from 33 to past 100
    # epochs depending on the shuffle (scikit-learn's SGD likewise: 40 to 92).
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.1,
                        batch_size=16, max_iter=100, random_state=0, tol=1e-3).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert clf.n_iter_ < 100          # converged (tol) before max_iter
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_string_labels_and_binary():
    X, y = _blobs(centers=2)
    labels = np.array(["no", "yes"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.1, random_state=0,
                        max_iter=50).fit(X, labels)
    assert list(clf.classes_) == ["no", "yes"]
    # scikit-learn's binary output: one logistic unit, two probability columns
    assert clf.coefs_[-1].shape == (8, 1) and clf.out_activation_ == "logistic"
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(proba[:, 1] > 0.5).astype(int)])
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert clf.score(X, labels) > 0.9


def test_coefs_are_live_views():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
    assert [W.shape for W in clf.coefs_] == [(2, 5), (5, 3)]
    assert [b.shape for b in clf.intercepts_] == [(5,), (3,)]
    assert np.shares_memory(clf.coefs_[0], clf.network_.weights[0])
    clf.coefs_[-1][...] = 0
    clf.intercepts_[-1][...] = 0
    np.testing.assert_allclose(clf.predict_proba(X), 1 / 3)
    clf.coefs_ = [np.ones((2, 5)), np.ones((5, 3))]
    assert (clf.network_.weights[1] == 1).all()
    with pytest.raises(AttributeError):
        MLPClassifier().coefs_


def test_alpha_is_weight_decay_over_batch_size():
    # One full-batch update without momentum: alpha adds lr * alpha / batch * W0 to the
    # step, so the difference of two runs from the same start is exactly that.
    X, y = _blobs(n=60)
    kw = dict(hidden_layer_sizes=(4,), random_state=0, shuffle=False, batch_size=60,
              solver="sgd", momentum=0.0, learning_rate_init=0.1, max_iter=1)
    # scikit-learn's Glorot-uniform start, drawn from random_state=0: W0, b0, W1, b1
    rng, W0 = np.random.RandomState(0), []
    for fan_in, fan_out in [(2, 4), (4, 3)]:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        W0.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        rng.uniform(-bound, bound, fan_out)
    a = MLPClassifier(alpha=0.0, **kw).fit(X, y)
    b = MLPClassifier(alpha=3.0, **kw).fit(X, y)
    for Wa, Wb, W in zip(a.coefs_, b.coefs_, W0):
        np.testing.assert_allclose(Wb, Wa - 0.1 * 3.0 / 60 * W, atol=1e-12)


def test_partial_fit():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.1, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(20):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and clf.t_ == 20 * len(X) and len(clf.loss_curve_) == 20
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :1], y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y.astype(float))


@pytest.mark.parametrize("nesterovs_momentum", [False, True])
def test_partial_fit_keeps_the_momentum_like_scikit_learn(nesterovs_momentum):
    """Each partial_fit is one more epoch of the same optimizer: velocities carry over."""
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05, momentum=0.9,
              shuffle=False, nesterovs_momentum=nesterovs_momentum, random_state=0,
              n_iter_no_change=100)
    whole = MLPClassifier(max_iter=3, **kw).fit(X, y)
    parts = MLPClassifier(**kw)
    for _ in range(3):
        parts.partial_fit(X, y, classes=[0, 1, 2])
    for got, want in zip(parts.coefs_ + parts.intercepts_, whole.coefs_ + whole.intercepts_):
        assert np.array_equal(got, want)
    np.testing.assert_allclose(parts.loss_curve_, whole.loss_curve_, rtol=1e-12)


def test_warm_start_continues():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True,
                        random_state=0).fit(X, y)
    W = clf.coefs_[0].copy()
    clf.fit(X, y)
    assert len(clf.loss_curve_) == 10 and not np.allclose(W, clf.coefs_[0])
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])
    clf.set_params(warm_start=False).fit(X, y)
    assert len(clf.loss_curve_) == 5


def test_regressor_early_stopping_matches_sklearn():
    X, y = make_regression(n_samples=200, n_features=4, noise=5.0, random_state=0)
    y = (y - y.mean()) / y.std()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", shuffle=False, random_state=0,
              learning_rate_init=0.01, batch_size=20, max_iter=60, early_stopping=True,
              n_iter_no_change=3, tol=1e-3)
    ours, theirs = MLPRegressor(**kw).fit(X, y), SkMLPRegressor(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-10)
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-12     # the best weights, restored


def test_early_stopping_keeps_best_weights():
    X, y = _blobs(n=300)
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, learning_rate_init=0.1,
                        n_iter_no_change=5, max_iter=200, random_state=0).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    assert clf.best_loss_ is None


def test_invalid_parameters_raise_in_fit():
    X, y = _blobs(n=30)
    for params, match in [({"solver": "newton"}, "solver"),
                          ({"max_fun": 0}, "max_fun"),
                          ({"beta_1": 1.0}, "beta_1"),
                          ({"beta_2": -0.1}, "beta_2"),
                          ({"epsilon": 0.0}, "epsilon"),
                          ({"activation": "softmax"}, "activation"),
                          ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes"),
                          ({"learning_rate": "optimal"}, "learning_rate"),
                          ({"momentum": 1.5}, "momentum"),
                          ({"batch_size": 0}, "batch_size"),
                          ({"dtype": "int32"}, "dtype"),
                          ({"backend": "gpu"}, "backend"),
                          ({"max_iter": True}, "max_iter"),        # not 1
                          ({"alpha": np.True_}, "alpha"),
                          ({"n_iter_no_change": 0}, "n_iter_no_change"),
                          ({"validation_fraction": 1.0}, "validation_fraction")]:
        est = MLPClassifier(**params)           # no validation at construction
        with pytest.raises(ValueError, match=match):
            est.fit(X, y)
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(X)


def test_dtype_follows_input_or_param():
    X, y = _blobs(n=60)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(X.astype(np.float32), y)
    assert clf.network_.dtype == np.float32 and clf.predict_proba(X).dtype == np.float32
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, dtype="float32").fit(X, y * 1.0)
    assert reg.network_.dtype == np.float32 and reg.predict(X).dtype == np.float32
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X.astype(int), y)
    assert reg.network_.dtype == np.float64


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_reference_backend_agrees(solver):
    X, y = _blobs(n=40)
    kw = dict(hidden_layer_sizes=(4,), max_iter=3, batch_size=8, random_state=0, solver=solver)
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(backend="reference", **kw).fit(X, y)
    assert b.network_.backend == "reference"
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12


def test_pickle_and_save_roundtrip(tmp_path):
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y)
    clf2 = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf2.predict_proba(X), clf.predict_proba(X))
    clf2.partial_fit(X, y)                       # the unpickled network trains
    bpfast.save(clf.network_, tmp_path / "m.npz")
    net = bpfast.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(net.predict(X), clf.predict_proba(X))


def test_in_pipeline_and_cross_validation():
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,),
                                                         learning_rate_init=0.1, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.9
    assert clone(pipe).get_params()["mlpclassifier__hidden_layer_sizes"] == (8,)


def test_verbose_prints_losses(capsys):
    X, y = _blobs(n=60)
    MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, verbose=True, tol=10.0,
                 n_iter_no_change=1).fit(X, y * 1.0)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Stopping." in out


def test_import_bpfast_without_sklearn():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import bpfast, numpy as np\n"
            "net = bpfast.Network([2, 2, 1], seed=0); net.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1)\n"
            "try:\n"
            "    import bpfast.sklearn\n"
            "except ImportError as e:\n"
            "    print('ImportError:', e)\n")
    out = child_output(code, 120)
    assert "ImportError: bpfast.sklearn needs scikit-learn" in out
    assert "pip install" in out
