"""export_onnx: onnxruntime runs the exported graph to the numbers bpfast's predict gives."""
import os
import pathlib
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import bpfast  # noqa: E402
from bpfast import _onnx  # noqa: E402
from bpfast.activations import HIDDEN_ACTIVATIONS  # noqa: E402

# Every valid (output activation, loss) pair; the loss does not enter the graph but must not
# change it either.
OUTPUTS = [(out, loss) for out in HIDDEN_ACTIVATIONS for loss in ("mse", "sse")]
OUTPUTS += [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("exp", "poisson")]
TOLERANCE = {"float64": 1e-12, "float32": 1e-6}


def _run(path, X):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session, session.run(None, {"X": X})


def _random_network(sizes, activation, output, loss, dtype, seed):
    net = bpfast.Network(sizes, activation=activation, output_activation=output, loss=loss,
                         dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for b in net.biases:                        # non-zero biases, so their place is tested too
        b[...] = rng.normal(0.0, 0.5, b.shape)
    return net


# ---------------------------------------------------------------- Network
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output,loss", OUTPUTS)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_network_graph_equals_predict(tmp_path, activation, output, loss, dtype):
    net = _random_network([6, 9, 7, 4], activation, output, loss, dtype, seed=len(activation))
    path = tmp_path / "net.onnx"
    bpfast.export_onnx(net, path)
    X = (np.random.default_rng(1).normal(size=(300, 6)) * 3).astype(dtype)
    session, (got,) = _run(path, X)
    assert [o.name for o in session.get_outputs()] == ["output"]
    assert got.dtype == np.dtype(dtype) and got.shape == (300, 4)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got, net.predict(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("sizes", [[3, 1], [1, 1], [2, 5, 5, 5, 5, 2], [30, 64, 10]])
def test_network_shapes_and_batch_sizes(tmp_path, sizes):
    # No hidden layer, single units, deep stacks; the batch dimension is free.
    net = _random_network(sizes, "tanh", "sigmoid", "mse", "float64", seed=2)
    bpfast.export_onnx(net, tmp_path / "net.onnx")
    for rows in (1, 7, 1000):
        X = np.random.default_rng(rows).normal(size=(rows, sizes[0]))
        (got,) = _run(tmp_path / "net.onnx", X)[1]
        np.testing.assert_allclose(got, net.predict(X), rtol=1e-12, atol=1e-12)


def test_trained_network_and_model_checks(tmp_path):
    X = np.random.default_rng(0).normal(size=(64, 3))
    Y = np.tanh(X @ np.array([[1.0], [-2.0], [0.5]]))
    net = bpfast.Network([3, 8, 1], activation="relu", output_activation="identity", seed=0)
    net.fit(X, Y, epochs=20, batch_size=8, lr=0.05, momentum=0.9)
    path = tmp_path / "trained.onnx"
    model = bpfast.export_onnx(net, path)
    loaded = onnx.load(path)
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.SerializeToString() == model.SerializeToString()
    assert loaded.producer_name == "bpfast"
    assert {p.key: p.value for p in loaded.metadata_props}["bpfast.sizes"] == "[3, 8, 1]"
    assert [op.version for op in loaded.opset_import] == [_onnx.DEFAULT_OPSET]
    assert loaded.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    np.testing.assert_allclose(_run(path, X)[1][0], net.predict(X), rtol=1e-12, atol=1e-12)


def test_float32_graph_is_float32(tmp_path):
    net = _random_network([4, 5, 3], "sigmoid", "softmax", "cross_entropy", "float32", seed=0)
    model = bpfast.export_onnx(net, tmp_path / "f32.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)


@pytest.mark.parametrize("opset", [_onnx.MIN_OPSET, 17, None])
def test_opsets(tmp_path, opset):
    net = _random_network([3, 4, 3], "relu", "softmax", "cross_entropy", "float64", seed=0)
    model = bpfast.export_onnx(net, tmp_path / "m.onnx", opset=opset)
    assert model.opset_import[0].version == (opset or _onnx.DEFAULT_OPSET)
    X = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X)[1][0], net.predict(X),
                               rtol=1e-12, atol=1e-12)


def test_path_types(tmp_path):
    net = _random_network([2, 2], "tanh", "tanh", "mse", "float64", seed=0)
    for path in (str(tmp_path / "a.onnx"), os.fsencode(tmp_path / "b.onnx"),
                 pathlib.Path(tmp_path / "c.onnx")):
        bpfast.export_onnx(net, path)
        assert os.path.getsize(os.fsdecode(path)) > 0


# ---------------------------------------------------------------- estimators
def _estimators():
    pytest.importorskip("sklearn")
    from bpfast.sklearn import MLPClassifier, MLPRegressor
    return MLPClassifier, MLPRegressor


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # short fits: ConvergenceWarning
        return estimator.fit(X, y)


def _exported(estimator, X, y, path):
    """The estimator fitted on (X, y), exported to path and run there by onnxruntime on X:
    (the fitted estimator, the session, its outputs)."""
    fitted = _fit(estimator, X, y)
    bpfast.export_onnx(fitted, path)
    session, outputs = _run(path, X)
    return fitted, session, outputs


def _assert_refused(exc, match, net_or_estimator, tmp_path, **kw):
    """export_onnx raises exc, its message matching `match`, and writes nothing in tmp_path."""
    with pytest.raises(exc, match=match):
        bpfast.export_onnx(net_or_estimator, tmp_path / "x.onnx", **kw)
    assert not os.listdir(tmp_path)


LABELS = {
    "three ints": lambda rng: rng.integers(0, 3, 90) * 10 + 5,
    "two strings": lambda rng: np.where(rng.random(90) > 0.5, "cat", "dog"),
    "object strings": lambda rng: np.array(["x", "yy", "zzz"] * 30, dtype=object),
    "bools": lambda rng: rng.random(90) > 0.4,
    "integral floats": lambda rng: rng.integers(0, 4, 90) * 2.0,
    "one class": lambda rng: np.full(90, 7),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("labels", list(LABELS))
def test_classifier_labels_and_probabilities(tmp_path, labels, dtype):
    MLPClassifier = _estimators()[0]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5)).astype(dtype)
    y = LABELS[labels](rng)
    clf, session, (label, proba) = _exported(
        MLPClassifier(hidden_layer_sizes=(8, 6), activation="tanh", max_iter=30,
                      learning_rate_init=0.05, random_state=0), X, y, tmp_path / "clf.onnx")
    assert [o.name for o in session.get_outputs()] == ["output_label", "output_probability"]
    assert label.shape == (90,) and proba.shape == clf.predict_proba(X).shape
    assert proba.dtype == np.dtype(dtype)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=tol, atol=tol)
    assert np.array_equal(label, clf.predict(X))
    if len(clf.classes_) > 1:
        assert len(set(label.tolist())) > 1     # the labels are not all one class by accident


def test_binary_classifier_from_sklearn_data(tmp_path):
    MLPClassifier = _estimators()[0]
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)      # scaling stays outside the graph
    clf, _, (label, proba) = _exported(
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01,
                      random_state=0), X, y, tmp_path / "bc.onnx")
    assert np.array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-12, atol=1e-12)
    assert (label == y).mean() > 0.9


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regressor(tmp_path, n_outputs, dtype):
    MLPRegressor = _estimators()[1]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4)).astype(dtype)
    y = X @ rng.normal(size=(4, n_outputs)) + 0.5
    reg, session, (pred,) = _exported(
        MLPRegressor(hidden_layer_sizes=(10,), activation="relu", max_iter=40,
                     learning_rate_init=0.01, random_state=0),
        X, y.ravel() if n_outputs == 1 else y, tmp_path / "reg.onnx")
    assert [o.name for o in session.get_outputs()] == ["variable"]
    assert pred.shape == (80, n_outputs) and pred.dtype == np.dtype(dtype)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(pred, reg.predict(X).reshape(80, n_outputs), rtol=tol, atol=tol)


# ---------------------------------------------------------------- errors
def test_wrong_object_is_type_error(tmp_path):
    for thing in (None, "net.npz", [2, 2, 1], object()):
        _assert_refused(TypeError, "net_or_estimator must be a bpfast.Network", thing, tmp_path)


def test_sklearns_own_mlp_is_type_error(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    sk = _fit(SkMLPClassifier(hidden_layer_sizes=(3,), max_iter=5), X, y)
    _assert_refused(TypeError, "got sklearn.neural_network", sk, tmp_path)


@pytest.mark.parametrize("which", [0, 1])
def test_unfitted_estimator_is_value_error(tmp_path, which):
    _assert_refused(ValueError, "not fitted", _estimators()[which](), tmp_path)


def test_bad_opset_and_path(tmp_path):
    net = _random_network([2, 2], "tanh", "tanh", "mse", "float64", seed=0)
    for bad in ("21", 21.0, True):
        _assert_refused(TypeError, "opset", net, tmp_path, opset=bad)
    for bad in (_onnx.MIN_OPSET - 1, onnx.defs.onnx_opset_version() + 1, -5):
        _assert_refused(ValueError, "opset must be between", net, tmp_path, opset=bad)
    with pytest.raises(TypeError, match="path must be"):
        bpfast.export_onnx(net, 3)
    assert not os.listdir(tmp_path)


def test_too_large_for_one_file(tmp_path, monkeypatch):
    net = _random_network([100, 100], "tanh", "tanh", "mse", "float64", seed=0)
    monkeypatch.setattr(_onnx, "_MAX_MODEL_BYTES", _onnx._HEADROOM_BYTES + 1000)
    with pytest.raises(ValueError, match="do not fit in one ONNX file"):
        bpfast.export_onnx(net, tmp_path / "x.onnx")
    assert not os.listdir(tmp_path)


def test_missing_onnx_says_how_to_install(tmp_path, monkeypatch):
    net = _random_network([2, 2], "tanh", "tanh", "mse", "float64", seed=0)
    for name in [m for m in sys.modules if m == "onnx" or m.startswith("onnx.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnx", None)      # what `import onnx` sees when absent
    with pytest.raises(ImportError, match=r'pip install "bpfast\[onnx\]"'):
        bpfast.export_onnx(net, tmp_path / "x.onnx")
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------- atomic write
def _old_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous model")
    return path


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, error):
    path = _old_file(tmp_path)
    net = _random_network([3, 4, 2], "relu", "identity", "mse", "float64", seed=0)
    written = []

    def failing_fsync(fd):                     # the bytes are in the temporary file by now
        written.append(os.fstat(fd).st_size)
        raise error
    monkeypatch.setattr(_onnx.os, "fsync", failing_fsync)
    with pytest.raises(type(error)):
        bpfast.export_onnx(net, path)
    assert written and written[0] > 100
    assert path.read_bytes() == b"the previous model"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    path = _old_file(tmp_path)
    net = _random_network([3, 2], "relu", "identity", "mse", "float64", seed=0)

    def reject(model, full_check=False):
        raise onnx.checker.ValidationError("rejected")
    monkeypatch.setattr(onnx.checker, "check_model", reject)
    with pytest.raises(onnx.checker.ValidationError):
        bpfast.export_onnx(net, path)
    assert path.read_bytes() == b"the previous model"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_export_replaces_old_file(tmp_path):
    path = _old_file(tmp_path)
    net = _random_network([3, 2], "relu", "identity", "mse", "float64", seed=0)
    bpfast.export_onnx(net, path)
    onnx.checker.check_model(onnx.load(path))
    assert os.listdir(tmp_path) == ["model.onnx"]
