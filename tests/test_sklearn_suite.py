"""scikit-learn's own MLP test suite, run on bpfast's estimators.

The module is built at collection time from the installed scikit-learn's
``sklearn/neural_network/tests/test_mlp.py``: its import of scikit-learn's
MLPClassifier / MLPRegressor becomes ``from bpfast.sklearn import ...`` and the
rest runs unchanged, so the suite follows the scikit-learn version installed.
The tests that read or write private attributes of scikit-learn's own
implementation are deselected below, each with its reason.
"""
import importlib.util
import re
import sys
import types

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("bpfast.sklearn")

#: Tests of scikit-learn's suite that cannot apply to another implementation, and why.
PRIVATE_ATTRIBUTE_TESTS = {
    "test_gradient": "calls scikit-learn's private _loss_grad_lbfgs with its private "
                     "activation / delta buffers (test_sklearn_lbfgs.py checks bpfast's "
                     "loss and gradient against that very function instead)",
    "test_learning_rate_warmstart": "reads scikit-learn's private _optimizer.learning_rate",
    "test_adaptive_learning_rate": "reads scikit-learn's private _optimizer.learning_rate",
}

#: Tests that fail for a known reason outside the estimators' code, run as strict xfail
#: so that a fix shows up as a pass to be moved out of this list.
KNOWN_FAILURES: dict = {}

ORIGINAL_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
BPFAST_IMPORT = "from bpfast.sklearn import MLPClassifier, MLPRegressor"


def _swapped_suite() -> types.ModuleType:
    """scikit-learn's test_mlp.py with its estimators swapped for bpfast's, as a module."""
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    if spec is None or spec.origin is None:
        pytest.skip("the installed scikit-learn has no neural_network/tests/test_mlp.py",
                    allow_module_level=True)
    with open(spec.origin, encoding="utf-8") as handle:
        source = handle.read()
    if ORIGINAL_IMPORT not in source:
        raise AssertionError(f"{spec.origin} no longer has the line {ORIGINAL_IMPORT!r}: "
                             "the swap needs updating")
    source = source.replace(ORIGINAL_IMPORT, BPFAST_IMPORT)
    module = types.ModuleType("bpfast_swapped_test_mlp")
    module.__file__ = spec.origin
    exec(compile(source, spec.origin + " (bpfast's estimators)", "exec"), module.__dict__)
    return module


_suite = _swapped_suite()


@pytest.fixture
def global_random_seed():
    """scikit-learn's conftest fixture, pinned to one seed."""
    return 42


def _collect():
    for name, value in vars(_suite).items():
        if not (name.startswith("test_") and callable(value)):
            continue
        if name in PRIVATE_ATTRIBUTE_TESTS:
            reason = PRIVATE_ATTRIBUTE_TESTS[name]
            value = pytest.mark.skip(reason=f"private attribute: {reason}")(value)
        elif name in KNOWN_FAILURES:
            value = pytest.mark.xfail(reason=KNOWN_FAILURES[name], strict=True)(value)
        globals()[name] = value


_collect()
assert set(PRIVATE_ATTRIBUTE_TESTS) | set(KNOWN_FAILURES) <= {n for n in vars(_suite) if n.startswith("test_")}, \
    "a deselected test is no longer in scikit-learn's suite"
