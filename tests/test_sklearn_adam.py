"""bpfast.sklearn's Adam solver and sample weights, against scikit-learn's own MLP.

Both libraries draw the same Glorot initial weights from the same random_state and see
the same batches (unshuffled, or shuffled in scikit-learn's order from that random_state):
every update is scikit-learn's, so the loss curves agree to rounding error (1e-10
relative) and so do the weights. Where alpha > 0
the L2 part of bpfast's loss_curve_ is taken with the weights at the end of each epoch
(a documented difference), so there the weights are compared and the curve loosely.
"""
import inspect
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_blobs, make_regression  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bpfast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LOSS_RTOL = 1e-10       # loss curves, relative
COEF_ATOL = 1e-12       # weights and biases, absolute (they are of order 1)


def _blobs(n=240, centers=3, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _regression(n=120, n_outputs=1):
    X, y = make_regression(n_samples=n, n_features=4, n_targets=n_outputs, noise=1.0,
                           random_state=0)
    return X, (y - y.mean(axis=0)) / y.std(axis=0)


def _max_diff(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b))


def _fit_both(ours, theirs, X, y, sample_weight=None, **kw):
    return (ours(**kw).fit(X, y, sample_weight=sample_weight),
            theirs(**kw).fit(X, y, sample_weight=sample_weight))


def _assert_same_fit(ours, theirs, loss_rtol=LOSS_RTOL):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert len(ours.loss_curve_) == len(theirs.loss_curve_)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=loss_rtol, atol=0)
    assert _max_diff(ours.coefs_, theirs.coefs_) < COEF_ATOL
    assert _max_diff(ours.intercepts_, theirs.intercepts_) < COEF_ATOL


# ---------------------------------------------------------------- defaults
@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, SkMLPClassifier),
                                          (MLPRegressor, SkMLPRegressor)])
def test_defaults_are_scikit_learns(ours, theirs):
    mine, sk = ours().get_params(), theirs().get_params()
    # dtype and backend are bpfast's own.
    assert set(mine) - {"dtype", "backend"} == set(sk)
    for name in set(mine) & set(sk):
        assert mine[name] == sk[name], name
    assert mine["solver"] == "adam" and mine["learning_rate_init"] == 0.001
    # fit and partial_fit take what scikit-learn's take, in its order
    for method in ("fit", "partial_fit"):
        assert (list(inspect.signature(getattr(ours, method)).parameters)
                == list(inspect.signature(getattr(theirs, method)).parameters))


def test_default_estimator_trains_as_scikit_learns():
    """Nothing but random_state and shuffle set: 100 relu units, Adam at 0.001, alpha 1e-4,
    batch min(200, n) -- one full batch of 200 here, where the L2 term is exact."""
    X, y = _blobs(n=200)
    ours, theirs = _fit_both(MLPClassifier, SkMLPClassifier, X, y, random_state=0,
                             shuffle=False, max_iter=15)
    _assert_same_fit(ours, theirs, loss_rtol=1e-3)      # alpha's term at the epoch's end
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)


# ---------------------------------------------------------------- Adam, step for step
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_classifier_adam_matches_sklearn(activation):
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(10, 6), activation=activation, solver="adam",
              shuffle=False, random_state=0, learning_rate_init=0.01, batch_size=40,
              max_iter=40, alpha=0.0, tol=1e-3, n_iter_no_change=3, beta_1=0.8,
              beta_2=0.99, epsilon=1e-7)
    ours, theirs = _fit_both(MLPClassifier, SkMLPClassifier, X, y, **kw)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)
    assert ours.score(X, y) == theirs.score(X, y)


@pytest.mark.parametrize("n_outputs", [1, 2, 3])
def test_regressor_adam_matches_sklearn(n_outputs):
    """bpfast's 'mse' gradient is scikit-learn's times 2 / n_outputs: epsilon follows it
    (with 3 outputs not a power of two, so not bit for bit)."""
    X, y = _regression(n_outputs=n_outputs)
    kw = dict(hidden_layer_sizes=(8,), activation="tanh", shuffle=False, random_state=1,
              learning_rate_init=0.01, batch_size=30, max_iter=60, alpha=0.0, tol=1e-4,
              n_iter_no_change=4, epsilon=1e-3)     # a large eps: its scaling shows
    ours, theirs = _fit_both(MLPRegressor, SkMLPRegressor, X, y, **kw)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), atol=1e-12)
    # the scaling matters: an unscaled epsilon would follow another path
    assert ours.network_._state_kind == "adam"


@pytest.mark.parametrize("estimators, data", [
    ((MLPClassifier, SkMLPClassifier), _blobs),
    ((MLPRegressor, SkMLPRegressor), lambda: _regression(n=240, n_outputs=2)),
])
def test_adam_with_alpha_updates_as_sklearn(estimators, data):
    """alpha / batch * W in the gradient, as scikit-learn (every batch full here)."""
    X, y = data()
    kw = dict(hidden_layer_sizes=(10,), shuffle=False, random_state=0, batch_size=40,
              learning_rate_init=0.01, max_iter=20, alpha=0.5, n_iter_no_change=100)
    ours, theirs = _fit_both(*estimators, X, y, **kw)
    _assert_same_fit(ours, theirs, loss_rtol=1e-2)
    # the penalty moved the weights: a fit without it ends elsewhere
    plain = estimators[0](**dict(kw, alpha=0.0)).fit(X, y)
    assert _max_diff(plain.coefs_, ours.coefs_) > 1e-3


# ---------------------------------------------------------------- shuffled
SHUFFLED = dict(hidden_layer_sizes=(10,), random_state=0, batch_size=40,
                learning_rate_init=0.01, max_iter=20, n_iter_no_change=100)


@pytest.mark.parametrize("estimators, data", [
    ((MLPClassifier, SkMLPClassifier), _blobs),
    ((MLPRegressor, SkMLPRegressor), lambda: _regression(n=240, n_outputs=2)),
])
@pytest.mark.parametrize("extra", [dict(), dict(solver="sgd"),
                                   dict(early_stopping=True, validation_fraction=1 / 6)])
def test_shuffled_fits_are_scikit_learns(estimators, data, extra):
    """shuffle=True, the default: every epoch's order is scikit-learn's, drawn from the
    random_state stream after the initial weights (and the early-stopping split), so
    every batch and update is scikit-learn's (every batch full: the L2 term is exact)."""
    X, y = data()
    ours, theirs = _fit_both(*estimators, X, y, **SHUFFLED, **extra)
    assert ours.n_iter_ == theirs.n_iter_
    assert _max_diff(ours.coefs_, theirs.coefs_) < COEF_ATOL
    assert _max_diff(ours.intercepts_, theirs.intercepts_) < COEF_ATOL
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)  # L2 at the end
    # the order matters: unshuffled batches end elsewhere
    plain = estimators[0](**SHUFFLED, **extra, shuffle=False).fit(X, y)
    assert _max_diff(plain.coefs_, ours.coefs_) > 1e-3


def test_shuffled_partial_fit_and_warm_start_are_scikit_learns():
    """Each call draws its orders from random_state afresh, as scikit-learn's does."""
    X, y = _blobs()
    for kw, calls in ((dict(), "partial_fit"), (dict(warm_start=True), "fit")):
        ours, theirs = MLPClassifier(**SHUFFLED, **kw), SkMLPClassifier(**SHUFFLED, **kw)
        for model in (ours, theirs):
            for _ in range(3):
                if calls == "partial_fit":
                    model.partial_fit(X, y, classes=[0, 1, 2])
                else:
                    model.fit(X, y)
        assert _max_diff(ours.coefs_, theirs.coefs_) < COEF_ATOL, calls


def test_adam_float32_follows_sklearn():
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(10,), shuffle=False, random_state=0, batch_size=40,
              learning_rate_init=0.01, max_iter=20, alpha=0.0, n_iter_no_change=100)
    ours, theirs = _fit_both(MLPClassifier, SkMLPClassifier, X.astype(np.float32), y, **kw)
    assert ours.coefs_[0].dtype == theirs.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    assert _max_diff(ours.coefs_, theirs.coefs_) < 1e-4


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_adam_ignores_learning_rate_schedules_like_sklearn(learning_rate):
    """scikit-learn's Adam keeps learning_rate_init; where 'adaptive' would divide the rate
    by 5 it stops, as with 'constant'."""
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), shuffle=False, random_state=0, batch_size=40,
              learning_rate_init=0.02, max_iter=200, alpha=0.0, tol=1e-3, n_iter_no_change=2,
              power_t=0.9)
    ours, theirs = _fit_both(MLPClassifier, SkMLPClassifier, X, y, learning_rate=learning_rate,
                             **kw)
    _assert_same_fit(ours, theirs)
    assert ours.n_iter_ < 200               # stopped by the rule, not by max_iter
    constant = MLPClassifier(**kw).fit(X, y)
    assert constant.loss_curve_ == ours.loss_curve_


# ---------------------------------------------------------------- incremental training
@pytest.mark.parametrize("weighted", [False, True])
def test_partial_fit_continues_adam_like_sklearn(weighted):
    """Each partial_fit is one more epoch of the same Adam: moments and step count carry
    over, as in scikit-learn, and a pickled estimator carries them too."""
    X, y = _blobs()
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X)) if weighted else None
    kw = dict(hidden_layer_sizes=(8,), shuffle=False, random_state=0, batch_size=40,
              learning_rate_init=0.01, alpha=0.0)
    ours, theirs = MLPClassifier(**kw), SkMLPClassifier(**kw)
    for i in range(4):
        part = slice(0, 240) if i % 2 == 0 else slice(0, 120)   # different data each call
        for est in (ours, theirs):
            est.partial_fit(X[part], y[part], sample_weight=None if w is None else w[part],
                            classes=[0, 1, 2])
        if i == 1:
            copied = pickle.loads(pickle.dumps(ours))
    _assert_same_fit(ours, theirs)
    assert ours.network_._state_step == 6 + 3 + 6 + 3       # Adam's step count: updates
    for i in (2, 3):
        part = slice(0, 240) if i % 2 == 0 else slice(0, 120)
        copied.partial_fit(X[part], y[part], sample_weight=None if w is None else w[part])
    assert _max_diff(copied.coefs_, ours.coefs_) == 0
    # a fit of 4 epochs is 4 partial_fits on the same data
    whole = MLPClassifier(max_iter=4, n_iter_no_change=100, **kw).fit(X, y, sample_weight=w)
    parts = MLPClassifier(**kw)
    for _ in range(4):
        parts.partial_fit(X, y, sample_weight=w, classes=[0, 1, 2])
    assert _max_diff(parts.coefs_ + parts.intercepts_, whole.coefs_ + whole.intercepts_) == 0
    assert parts.loss_curve_ == whole.loss_curve_


def test_warm_start_restarts_adam_like_sklearn():
    """fit with warm_start continues the weights but, as scikit-learn, not Adam's state."""
    X, y = _regression()
    kw = dict(hidden_layer_sizes=(8,), shuffle=False, random_state=0, batch_size=30,
              learning_rate_init=0.01, max_iter=5, alpha=0.0, warm_start=True,
              n_iter_no_change=100)
    ours, theirs = MLPRegressor(**kw), SkMLPRegressor(**kw)
    for _ in range(3):
        ours.fit(X, y)
        theirs.fit(X, y)
    assert len(ours.loss_curve_) == 15
    _assert_same_fit(ours, theirs)


def test_solver_changed_between_partial_fits_starts_afresh():
    X, y = _blobs()
    est = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2])
    assert est.network_._state_kind == "adam"
    est.set_params(solver="sgd", learning_rate_init=0.05).partial_fit(X, y)
    assert est.network_._state_kind == "sgd" and len(est.loss_curve_) == 2
    est.set_params(solver="adam").partial_fit(X, y)
    assert est.network_._state_kind == "adam" and est.network_._state_step == 2


# ---------------------------------------------------------------- sample weights
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_classifier_sample_weight_matches_sklearn(solver):
    X, y = _blobs()
    w = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)
    kw = dict(hidden_layer_sizes=(10, 6), solver=solver, shuffle=False, random_state=0,
              learning_rate_init=0.01, batch_size=40, max_iter=30, alpha=0.0, tol=1e-3,
              n_iter_no_change=3)
    ours, theirs = _fit_both(MLPClassifier, SkMLPClassifier, X, y, sample_weight=w, **kw)
    _assert_same_fit(ours, theirs)
    unweighted = MLPClassifier(**kw).fit(X, y)
    assert _max_diff(unweighted.coefs_, ours.coefs_) > 1e-3     # the weights mattered


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regressor_sample_weight_matches_sklearn(n_outputs):
    X, y = _regression(n_outputs=n_outputs)
    w = np.random.default_rng(2).uniform(0.0, 3.0, len(X))
    kw = dict(hidden_layer_sizes=(8,), activation="tanh", shuffle=False, random_state=1,
              learning_rate_init=0.01, batch_size=30, max_iter=40, alpha=0.0,
              n_iter_no_change=100)
    ours, theirs = _fit_both(MLPRegressor, SkMLPRegressor, X, y, sample_weight=w, **kw)
    _assert_same_fit(ours, theirs)


@pytest.mark.parametrize("weights, batch_size", [("random", 120), ("constant", 30)])
def test_sample_weight_and_alpha_match_sklearn(weights, batch_size):
    """scikit-learn divides alpha by each batch's sum of weights, bpfast by batch_size times
    the mean weight: the same for a full batch, and for batches whose weights sum alike."""
    X, y = _regression()
    w = (np.random.default_rng(3).uniform(0.1, 3.0, len(X)) if weights == "random"
         else np.full(len(X), 2.5))
    kw = dict(hidden_layer_sizes=(8,), shuffle=False, random_state=1, learning_rate_init=0.01,
              batch_size=batch_size, max_iter=30, alpha=2.0, n_iter_no_change=100)
    ours, theirs = _fit_both(MLPRegressor, SkMLPRegressor, X, y, sample_weight=w, **kw)
    # A large penalty (a third of the loss), taken at each epoch's end: the curves
    # differ by a few percent, the weights not at all.
    _assert_same_fit(ours, theirs, loss_rtol=0.05)


@pytest.mark.parametrize("estimators, data", [
    ((MLPClassifier, SkMLPClassifier), lambda: _blobs(n=300)),
    ((MLPRegressor, SkMLPRegressor), lambda: _regression(n=300)),
])
def test_early_stopping_splits_and_scores_the_weights_like_sklearn(estimators, data):
    """The weights are split with the rows; the validation score is weighted."""
    X, y = data()
    w = np.random.default_rng(4).uniform(0.0, 2.0, len(X))
    kw = dict(hidden_layer_sizes=(8,), shuffle=False, random_state=0, learning_rate_init=0.01,
              batch_size=27, max_iter=300, alpha=0.0, early_stopping=True,
              validation_fraction=0.1, n_iter_no_change=3, tol=1e-3)
    ours, theirs = _fit_both(*estimators, X, y, sample_weight=w, **kw)
    assert ours.n_iter_ == theirs.n_iter_ < 300
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                               rtol=LOSS_RTOL)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                        rel=LOSS_RTOL)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=LOSS_RTOL)
    assert _max_diff(ours.coefs_, theirs.coefs_) < COEF_ATOL        # the best, restored
    # unweighted, the validation scores differ
    plain = estimators[0](**kw).fit(X, y)
    assert plain.validation_scores_[:3] != ours.validation_scores_[:3]


@pytest.mark.parametrize("estimator, data", [
    (MLPClassifier, lambda: _blobs(n=60, seed=3)),
    (MLPRegressor, lambda: _regression(n=60)),
])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_integer_weights_equal_repeated_rows(estimator, data, solver):
    """On one full batch (batch_size='auto' is min(200, n)), a weight of k is the row k
    times and a weight of 0 is no row, even with shuffling and the L2 penalty."""
    X, y = data()
    w = np.random.default_rng(5).integers(0, 4, len(X))
    assert (w == 0).any() and w.sum() <= 200
    kw = dict(hidden_layer_sizes=(6,), solver=solver, learning_rate_init=0.01, random_state=0,
              max_iter=50, alpha=1e-2)
    weighted = estimator(**kw).fit(X, y, sample_weight=w)
    repeated = estimator(**kw).fit(X.repeat(w, axis=0), y.repeat(w, axis=0))
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)
    assert _max_diff(weighted.coefs_, repeated.coefs_) < 1e-12
    method = "predict_proba" if estimator is MLPClassifier else "predict"
    np.testing.assert_allclose(getattr(weighted, method)(X), getattr(repeated, method)(X),
                               atol=1e-12)


def test_sample_weight_forms_and_reference_backend():
    X, y = _blobs(n=80)
    w = np.random.default_rng(6).uniform(0.2, 2.0, len(X))
    kw = dict(hidden_layer_sizes=(5,), random_state=0, max_iter=5, batch_size=16)
    base = MLPClassifier(**kw).fit(X, y, sample_weight=w)
    listed = MLPClassifier(**kw).fit(X, y, sample_weight=list(w))
    assert _max_diff(base.coefs_, listed.coefs_) == 0
    ref = MLPClassifier(backend="reference", **kw).fit(X, y, sample_weight=w)
    assert _max_diff(base.coefs_, ref.coefs_) < 1e-12
    # a scalar weight is every row's weight, as in scikit-learn: only alpha's share changes
    ones = MLPClassifier(**kw).fit(X, y, sample_weight=1.0)
    none = MLPClassifier(**kw).fit(X, y)
    assert _max_diff(ones.coefs_, none.coefs_) == 0
    # float32 data, float64 weights
    f32 = MLPClassifier(**kw).fit(X.astype(np.float32), y, sample_weight=w)
    assert f32.coefs_[0].dtype == np.float32
    assert _max_diff(f32.coefs_, base.coefs_) < 1e-4


@pytest.mark.parametrize("sample_weight, match", [
    (np.ones(79), "shape"),
    (np.ones((80, 1)), "1D"),
    (np.r_[np.ones(79), -1.0], r"sample_weight must be >= 0 .*; got -1.0 at row 79"),
    (np.zeros(80), "at least one non-zero"),
    (np.r_[np.ones(79), np.nan], "NaN"),
    (np.r_[np.ones(79), np.inf], "infinity"),
    (np.array(["a"] * 80), "could not convert"),
])
def test_bad_sample_weight_raises(sample_weight, match):
    X, y = _blobs(n=80)
    for est, extra in [(MLPClassifier(max_iter=2), {}), (MLPRegressor(max_iter=2), {}),
                       (MLPClassifier(), {"classes": [0, 1, 2]})]:
        with pytest.raises(ValueError, match=match):
            if extra:
                est.partial_fit(X, y, sample_weight=sample_weight, **extra)
            else:
                est.fit(X, y, sample_weight=sample_weight)


def test_weights_zero_on_the_training_part_of_the_split_raise():
    X, y = _regression(n=40)
    probe = MLPRegressor(early_stopping=True, random_state=0, max_iter=1)
    w = np.zeros(len(X))
    # the rows scikit-learn's split keeps for validation (the same random stream)
    from sklearn.model_selection import train_test_split
    rng = np.random.RandomState(0)
    probe._initialize(4, 1, np.float64, rng)
    _, val = train_test_split(np.arange(len(X)), random_state=rng, test_size=0.1)
    w[val] = 1.0
    with pytest.raises(ValueError, match="training part"):
        probe.fit(X, y, sample_weight=w)


def test_unknown_loss_is_refused_by_name():
    X, y = _blobs(n=30)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="absolute_error").fit(X, y)       # not even scikit-learn's
    assert MLPRegressor(loss="squared_error", max_iter=2).fit(X, y).n_iter_ == 2
