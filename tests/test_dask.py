"""Many models at once: bpfast Networks and estimators travel between processes, and
scikit-learn's GridSearchCV gives the same scores, bit for bit, serially, on joblib's
threading and loky backends, and on a dask.distributed cluster (threads, processes, and
processes one of which is killed in the middle of the search).
"""
import copy
import os
import pickle
import threading

import numpy as np
import pytest

import bpfast
from bpfast import optim

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from bpfast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

TIMEOUT = 120       # seconds any one search may take before the test fails
KILL_MARKER = "BPFAST_TEST_KILL_MARKER"


def within(seconds, function):
    """function() on a thread; its result, or a failure if it takes longer than seconds."""
    box = {}

    def run():
        try:
            box["result"] = function()
        except BaseException as exc:        # noqa: B902 -- raised again below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"did not finish within {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def roundtrips():
    out = {"pickle": lambda obj: pickle.loads(pickle.dumps(obj)), "deepcopy": copy.deepcopy}
    try:
        import cloudpickle
        out["cloudpickle"] = lambda obj: cloudpickle.loads(cloudpickle.dumps(obj))
    except ImportError:
        pass
    try:
        from distributed.protocol import deserialize, serialize
        out["dask"] = lambda obj: deserialize(*serialize(obj))
    except ImportError:
        pass
    return out


COPIERS = roundtrips()


# ---------------------------------------------------------------------- copies
@pytest.mark.parametrize("copier", sorted(COPIERS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rprop"])
def test_a_network_travels_with_its_optimizer_state(copier, optimizer):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 4)), rng.random((30, 2))
    net = bpfast.Network([4, 6, 2], activation="tanh", dtype="float32", seed=1)
    opt = optim.make(net, optimizer, 0.01, 0.9, False, 0.0, (0.9, 0.999), 1e-8, (0.5, 1.2),
                     (1e-6, 50.0), None)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer=opt)
    twin = COPIERS[copier](net)
    assert twin is not net and twin._state_kind == optimizer
    assert np.array_equal(twin._state, net._state) and twin._state_step == net._state_step
    for n in (net, twin):
        n.fit(X, Y, epochs=2, batch_size=8, optimizer=optimizer, lr=0.01, momentum=0.9,
              keep_state=True)
    assert np.array_equal(twin.get_parameters(), net.get_parameters())
    assert np.array_equal(twin.predict(X), net.predict(X))


def _classification():
    return make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3,
                               random_state=0)


def _regression():
    X, y = make_regression(n_samples=120, n_features=6, noise=0.1, random_state=0)
    return X, y / np.abs(y).max()


ESTIMATORS = {
    "classifier": (lambda: MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05,
                                         batch_size=16, max_iter=15, random_state=0),
                   _classification),
    "regressor": (lambda: MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=0.01,
                                       batch_size=16, max_iter=15, random_state=0),
                  _regression),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("copier", sorted(COPIERS))
@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_every_estimator_travels_fitted_or_not(copier, kind):
    make, data = ESTIMATORS[kind]
    X, y = data()
    fresh = COPIERS[copier](make())
    assert fresh.get_params() == make().get_params()
    fitted = make().fit(X, y)
    twin = COPIERS[copier](fitted)
    assert np.array_equal(twin.predict(X), fitted.predict(X))
    assert twin.network_ is not fitted.network_
    for est in (fitted, twin):          # the optimizer state travelled too
        est.partial_fit(X, y)
    assert np.array_equal(twin.predict(X), fitted.predict(X))
    assert twin.loss_curve_ == fitted.loss_curve_
    assert np.array_equal(fresh.fit(X, y).predict(X), make().fit(X, y).predict(X))


# ---------------------------------------------------------------------- searches
GRID = {"hidden_layer_sizes": [(4,), (8,)], "learning_rate_init": [0.02, 0.1]}


def search(estimator=None, n_jobs=None):
    return GridSearchCV(estimator or ESTIMATORS["classifier"][0](), GRID, cv=3,
                        n_jobs=n_jobs, error_score="raise")


def scores(fitted):
    """Every score of a fitted search, and the best model's coefficients."""
    keys = sorted(k for k in fitted.cv_results_ if k.startswith("split") or k == "mean_test_score")
    return ([np.asarray(fitted.cv_results_[k]) for k in keys],
            [c.copy() for c in fitted.best_estimator_.coefs_])


def assert_same_bits(got, expected):
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert np.array_equal(a, b)


class _quiet:
    """Silence ConvergenceWarning (15 epochs are few on purpose) in a block."""

    def __enter__(self):
        import warnings
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


@pytest.fixture(scope="module")
def serial():
    X, y = _classification()

    def run():
        with _quiet():
            return search(n_jobs=None).fit(X, y)

    return scores(within(TIMEOUT, run))


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_grid_search_on_joblib_backends_equals_serial(serial, backend):
    X, y = _classification()

    def run():
        with _quiet(), joblib.parallel_config(backend=backend, n_jobs=2):
            return search(n_jobs=2).fit(X, y)

    assert_same_bits(scores(within(TIMEOUT, run)), serial)


def _dask_search(client, estimator=None):
    X, y = _classification()

    def run():
        # scatter: a copy of the data on every worker. Without it joblib scatters the
        # data to one worker, and a search losing that worker loses the data too (its
        # tasks fail as "cancelled": scattered data cannot be recomputed).
        with _quiet(), joblib.parallel_config(backend="dask", scatter=[X, y]):
            return search(estimator, n_jobs=-1).fit(X, y)

    return scores(within(TIMEOUT, run))


def test_grid_search_on_a_threaded_dask_cluster_equals_serial(serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert_same_bits(_dask_search(client), serial)


class DyingClassifier(MLPClassifier):
    """Fit number KILL_AT of a search (counted over every process by claiming numbered
    files beside the marker file named by $BPFAST_TEST_KILL_MARKER) writes the marker
    and ends its process, as a crashed or killed worker would; every other fit, the
    retried one included, trains as MLPClassifier."""

    KILL_AT = 5         # of 13 fits: 4 candidates x 3 folds, and the refit

    def fit(self, X, y):
        marker = os.environ.get(KILL_MARKER)
        if marker and _claim_fit_number(marker) == self.KILL_AT:
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(13)
        return super().fit(X, y)


def _claim_fit_number(marker):
    number = 0
    while True:
        try:
            os.close(os.open(f"{marker}.{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return number
        except FileExistsError:
            number += 1


@pytest.fixture(scope="module")
def process_cluster(tmp_path_factory):
    """Two worker processes (restarted by their nannies when they die)."""
    distributed = pytest.importorskip("distributed")
    marker = str(tmp_path_factory.mktemp("kill") / "killed")
    os.environ[KILL_MARKER] = marker            # inherited by the worker processes
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            yield client, marker
    finally:
        os.environ.pop(KILL_MARKER, None)


def test_grid_search_on_dask_worker_processes_equals_serial(serial, process_cluster):
    client, marker = process_cluster
    if os.path.exists(marker):
        pytest.skip("the worker-kill test ran first")      # order within the module
    assert_same_bits(_dask_search(client), serial)


def test_grid_search_survives_a_killed_worker(serial, process_cluster):
    client, marker = process_cluster
    assert not os.path.exists(marker)
    # MLPClassifier's parameters, so that the search's own clones (and scores) are the
    # same as those of the serial search; only the first fit anywhere dies.
    got = _dask_search(client, DyingClassifier(**ESTIMATORS["classifier"][0]().get_params()))
    assert os.path.exists(marker)                  # a worker did die mid-search
    assert os.path.exists(f"{marker}.{DyingClassifier.KILL_AT + 1}")   # and more fits came
    killed_pid = int(open(marker).read())
    assert killed_pid not in client.run(os.getpid).values()
    assert_same_bits(got, serial)
