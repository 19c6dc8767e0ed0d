"""bpfast.sklearn when things go wrong: divergence, copies mid-training, threads, Ctrl-C.

Each behaviour is compared with scikit-learn's own MLP where scikit-learn has one.
"""
import copy
import pickle
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_diabetes, make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_param_validation  # noqa: E402

from bpfast.network import Network  # noqa: E402
from bpfast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from helpers import run_together  # noqa: E402

# Short fits that stop at max_iter warn; the tests that expect a ConvergenceWarning catch it.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

NON_FINITE = "Solver produced non-finite parameter weights"


def _diabetes(standardize):
    """The diabetes data with its target unscaled (25 to 346): large gradients."""
    X, y = load_diabetes(return_X_y=True)
    return (StandardScaler().fit_transform(X) if standardize else X), y


def _fit_outcome(estimator, X, y):
    """'raised' for scikit-learn's non-finite ValueError, else 'fitted'."""
    with np.errstate(all="ignore"):
        try:
            estimator.fit(X, y)
        except ValueError as exc:
            assert NON_FINITE in str(exc)
            return "raised"
    return "fitted"


# ---------------------------------------------------------------- (a) divergence
# learning_rate_init=0.005 on the unscaled target; shuffle=False so that both
# libraries visit the samples in the same order and follow the same trajectory
# (with shuffling the orders differ, and at these settings whether a run ends in
# NaN or stays finite depends on the order -- for scikit-learn alone as well).
DIVERGENCE_CASES = {
    # raw X (columns of norm 1): the fit is poor but nothing diverges
    "raw X, (100,)": (False, dict(hidden_layer_sizes=(100,)), "fitted"),
    # standardized X: the weights reach NaN in the second epoch
    "standardized X, (100,)": (True, dict(hidden_layer_sizes=(100,)), "raised"),
    "standardized X, (32,), batch 32": (True, dict(hidden_layer_sizes=(32,), batch_size=32),
                                        "raised"),
    # the loss explodes to ~1e33 and stays finite: scikit-learn stops on tol after
    # 12 epochs without a word (R^2 ~ -1e33), and so does bpfast
    "standardized X, (64, 32), finite divergence": (True, dict(hidden_layer_sizes=(64, 32)),
                                                    "fitted"),
}


@pytest.mark.parametrize("case", list(DIVERGENCE_CASES))
def test_raises_where_scikit_learn_raises(case):
    standardize, params, expected = DIVERGENCE_CASES[case]
    X, y = _diabetes(standardize)
    kw = dict(solver="sgd", learning_rate_init=0.005, shuffle=False, random_state=0,
              max_iter=60, **params)
    theirs = SkMLPRegressor(**kw)
    assert _fit_outcome(theirs, X, y) == expected      # the case is what it says
    ours = MLPRegressor(**kw)
    assert _fit_outcome(ours, X, y) == expected
    # Either way the estimator stays consistent and usable: the epochs it counts are
    # the ones it trained, and a divergence left the parameters of the last good epoch.
    assert ours.n_iter_ == len(ours.loss_curve_) and ours.t_ == ours.n_iter_ * len(X)
    assert all(np.isfinite(W).all() for W in ours.coefs_ + ours.intercepts_)
    # Past the first epochs of a divergence, rounding differences grow as fast as the
    # loss; the first epoch agrees (up to the L2 term, taken at the epoch's end here).
    if ours.loss_curve_:
        assert ours.loss_curve_[0] == pytest.approx(theirs.loss_curve_[0], rel=1e-4)
    if expected == "fitted":
        assert ours.n_iter_ == theirs.n_iter_


def test_divergence_with_early_stopping_keeps_the_best_weights_like_scikit_learn():
    """scikit-learn trains on with NaN weights, then restores the best ones: no error."""
    X, y = _diabetes(standardize=True)
    kw = dict(solver="sgd", learning_rate_init=0.005, shuffle=False, random_state=0,
              max_iter=30, early_stopping=True)
    with np.errstate(all="ignore"):
        theirs = SkMLPRegressor(**kw).fit(X, y)
    assert not np.isfinite(theirs.validation_scores_).all()    # it did diverge there
    with pytest.warns(ConvergenceWarning, match="diverged .* best validation score"):
        ours = MLPRegressor(**kw).fit(X, y)
    # The epochs before the divergence score as scikit-learn's, and the best of them
    # (the first) is the one both keep.
    np.testing.assert_allclose(ours.validation_scores_,
                               theirs.validation_scores_[:len(ours.validation_scores_)],
                               rtol=1e-6)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_a_loss_that_overflows_raises_although_scikit_learn_passes():
    """The one documented difference: scikit-learn raises on non-finite final weights only."""
    X, y = _diabetes(standardize=True)
    kw = dict(solver="sgd", learning_rate_init=0.005, shuffle=False, random_state=0,
              max_iter=40, hidden_layer_sizes=(16, 16, 16), momentum=0.0)
    theirs = SkMLPRegressor(**kw)
    assert _fit_outcome(theirs, X, y) == "fitted"
    assert np.isinf(theirs.loss_curve_).any()        # an infinite loss, finite weights
    assert theirs.score(X, y) < -1e100
    ours = MLPRegressor(**kw)
    assert _fit_outcome(ours, X, y) == "raised"
    assert np.isfinite(ours.loss_curve_).all() and np.isfinite(ours.predict(X)).all()


def test_classifier_divergence_raises_like_scikit_learn():
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    X, y = make_blobs(n_samples=200, centers=3, random_state=0)
    X = X * 1e2                             # unscaled inputs through two linear layers
    kw = dict(solver="sgd", learning_rate_init=0.1, shuffle=False, random_state=0, max_iter=20,
              activation="identity", hidden_layer_sizes=(10, 10))
    assert _fit_outcome(SkMLPClassifier(**kw), X, y) == "raised"
    assert _fit_outcome(MLPClassifier(**kw), X, y) == "raised"


# ---------------------------------------------------------------- (b) copies mid-training
def _regression():
    X, y = make_blobs(n_samples=150, centers=3, random_state=1)
    X = StandardScaler().fit_transform(X)
    return X, np.c_[X[:, 0] * X[:, 1], np.sin(X[:, 0])]


@pytest.mark.parametrize("copier", [lambda est: pickle.loads(pickle.dumps(est)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_a_copy_between_partial_fits_continues_bit_for_bit(estimator, copier):
    """The momentum velocities and the learning rate travel with the copy."""
    if estimator == "classifier":
        X, y = make_blobs(n_samples=150, centers=3, random_state=1)
        X = StandardScaler().fit_transform(X)
        est, extra = MLPClassifier(hidden_layer_sizes=(8,)), {"classes": [0, 1, 2]}
    else:
        (X, y), est, extra = _regression(), MLPRegressor(hidden_layer_sizes=(8,)), {}
    est.set_params(learning_rate_init=0.05, momentum=0.9, batch_size=32, random_state=0,
                   learning_rate="invscaling", power_t=0.3)
    for _ in range(2):
        est.partial_fit(X, y, **extra)
    assert np.abs(est.network_._state).max() > 0          # there is momentum to keep
    twin = copier(est)
    assert twin.network_ is not est.network_
    for model in (est, twin):
        for _ in range(3):
            model.partial_fit(X, y)
    for got, want in zip(twin.coefs_ + twin.intercepts_, est.coefs_ + est.intercepts_):
        assert np.array_equal(got, want)
    assert twin.loss_curve_ == est.loss_curve_ and twin.t_ == est.t_ == 5 * len(X)
    assert twin._optimizer_lr == est._optimizer_lr


def test_a_copy_of_a_warm_started_fit_continues_bit_for_bit():
    X, y = _regression()
    est = MLPRegressor(hidden_layer_sizes=(6,), learning_rate_init=0.05, max_iter=4,
                       warm_start=True, random_state=3, tol=0.0)
    est.fit(X, y)
    twin = copy.deepcopy(est)
    est.fit(X, y)
    twin.fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(twin.coefs_, est.coefs_))
    assert twin.loss_curve_ == est.loss_curve_


# ---------------------------------------------------------------- (c) threads
def test_predict_predict_proba_and_score_from_four_threads():
    X, y = make_blobs(n_samples=300, centers=3, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.1, max_iter=30,
                        random_state=0, tol=0.1).fit(X, y)
    want = (clf.predict(X), clf.predict_proba(X), clf.score(X, y))
    errors, mismatches = [], []
    start = threading.Barrier(4)

    def work():
        start.wait()
        for _ in range(50):
            try:
                got = (clf.predict(X), clf.predict_proba(X), clf.score(X, y))
            except Exception as exc:        # noqa: BLE001 - counted, not swallowed
                errors.append(exc)
                continue
            if not (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
                    and got[2] == want[2]):
                mismatches.append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    assert run_together(threads, 120), "a thread hangs"
    assert not errors, f"{len(errors)} of 200 calls raised, e.g. {errors[0]!r}"
    assert not mismatches


# ---------------------------------------------------------------- (d) Ctrl-C
def _blobs():
    X, y = make_blobs(n_samples=240, centers=3, random_state=0)
    return StandardScaler().fit_transform(X), y


def _reference(epochs, **kw):
    """The same classifier trained for exactly `epochs` epochs, uninterrupted."""
    X, y = _blobs()
    return MLPClassifier(**dict(kw, max_iter=epochs)).fit(X, y)


KW = dict(hidden_layer_sizes=(8,), learning_rate_init=0.1, batch_size=16, random_state=0,
          tol=0.0, n_iter_no_change=1000)


def _assert_true_to(est, ref):
    assert est.n_iter_ == ref.n_iter_ == len(est.loss_curve_)
    assert est.loss_curve_ == ref.loss_curve_
    assert est.t_ == ref.t_
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_ + est.intercepts_,
                                                     ref.coefs_ + ref.intercepts_))


def _interrupting_fit(monkeypatch, after_epochs, forward_callback, exc=KeyboardInterrupt):
    """Network.fit that stops with `exc` after `after_epochs` completed epochs.

    As Network.fit does on Ctrl-C: the History of the epochs completed is left in
    ``history_``. With forward_callback=False the estimator's callback never ran,
    so all of its bookkeeping must come from that History.
    """
    original = Network.fit

    def fit(self, X, Y, epochs=10, callback=None, **kw):
        def relay(epoch, history):
            self.history_ = history
            if len(history.loss) >= after_epochs:
                raise exc("interrupted")
            if forward_callback and callback(epoch, history) is False:
                return False
            return True         # (not the callback's k: come back after every epoch)
        return original(self, X, Y, epochs=epochs, callback=relay, **kw)

    monkeypatch.setattr(Network, "fit", fit)


@pytest.mark.parametrize("forward_callback", [True, False], ids=["callback-ran", "no-callback"])
def test_ctrl_c_warns_and_keeps_what_was_trained(monkeypatch, forward_callback):
    X, y = _blobs()
    _interrupting_fit(monkeypatch, 7, forward_callback)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = MLPClassifier(max_iter=50, **KW).fit(X, y)
    messages = [str(w.message) for w in caught]
    assert messages == ["Training interrupted by user."]     # and no ConvergenceWarning
    assert caught[0].filename == __file__                      # points at the caller's fit
    monkeypatch.undo()
    _assert_true_to(clf, _reference(7, **KW))


def test_ctrl_c_counts_the_epochs_the_callback_never_saw(monkeypatch):
    """Epochs that ran without a callback (as in a chunk of epochs) before Ctrl-C count."""
    X, y = _blobs()
    original = Network.fit

    def fit(self, X, Y, epochs=10, callback=None, **kw):
        # 5 epochs without the estimator's callback, then Ctrl-C.
        self.history_ = original(self, X, Y, epochs=5, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(Network, "fit", fit)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf = MLPClassifier(max_iter=50, **KW).fit(X, y)
    monkeypatch.undo()
    _assert_true_to(clf, _reference(5, **KW))


def test_ctrl_c_during_partial_fit_and_with_early_stopping(monkeypatch):
    X, y = _blobs()
    _interrupting_fit(monkeypatch, 1, forward_callback=False)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf = MLPClassifier(**KW).partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and clf.t_ == len(X) and len(clf.loss_curve_) == 1
    monkeypatch.undo()
    _interrupting_fit(monkeypatch, 4, forward_callback=True)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        es = MLPClassifier(early_stopping=True, max_iter=50, **KW).fit(X, y)
    assert es.n_iter_ == len(es.validation_scores_) == 4
    best = int(np.argmax(es.validation_scores_))
    assert es.best_validation_score_ == es.validation_scores_[best]


def test_a_divergence_in_a_chunk_of_epochs_counts_the_epochs_before_it(monkeypatch):
    X, y = _blobs()
    _interrupting_fit(monkeypatch, 6, forward_callback=False, exc=FloatingPointError)
    clf = MLPClassifier(max_iter=50, **KW)
    with pytest.raises(ValueError, match=NON_FINITE):
        clf.fit(X, y)
    monkeypatch.undo()
    assert clf.n_iter_ == len(clf.loss_curve_) == 6
    assert clf.loss_curve_ == _reference(6, **KW).loss_curve_


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_parameter_table_passes_scikit_learns_param_validation_check(Estimator):
    """Every parameter is in the table; a bad type or value raises naming it, in fit and partial_fit."""
    check_param_validation(Estimator.__name__, Estimator())


def test_n_iter_no_change_may_be_infinite_as_in_scikit_learn():
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", shuffle=False, random_state=0,
              learning_rate_init=0.1, batch_size=40, max_iter=15, tol=10.0,
              n_iter_no_change=np.inf)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        ours = MLPClassifier(**kw).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        theirs = SkMLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 15      # tol=10 would stop after 11 otherwise
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours.coefs_, theirs.coefs_)) < 1e-12


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_batch_size_larger_than_the_data_is_clipped_with_a_warning_at_the_callers_line():
    X, y = _blobs()
    with pytest.warns(UserWarning, match="clipped") as caught:
        clf = MLPClassifier(hidden_layer_sizes=(4,), batch_size=10_000, max_iter=2).fit(X, y)
    assert [w.filename for w in caught if "clipped" in str(w.message)] == [__file__]
    assert clf.n_iter_ == 2
