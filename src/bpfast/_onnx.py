"""export_onnx: a Network, or a fitted bpfast.sklearn estimator, as an ONNX model file.

The graph is built with the ``onnx`` package's own helpers (``onnx.helper``,
``onnx.numpy_helper``) and checked with ``onnx.checker`` before anything is
written. Each layer is one ``Gemm`` (``X @ W + b``) followed by its activation
(``Sigmoid``, ``Tanh``, ``Relu``, ``Exp``, ``Softmax`` over the last axis; nothing for
identity), in the network's dtype: a float32 network gives a float32 graph, a
float64 network a float64 graph. The batch dimension is left free.

Inputs and outputs follow skl2onnx's names, so code written for a converted
scikit-learn model runs the exported one unchanged:

=====================  ===========  ==============================================
exported object        input        outputs
=====================  ===========  ==============================================
``Network``            ``X``        ``output`` (N, sizes[-1]), what ``predict`` returns
``MLPClassifier``      ``X``        ``output_label`` (N,) from ``classes_``, then
                                    ``output_probability`` (N, n_classes), what
                                    ``predict_proba`` returns (a plain tensor, like
                                    skl2onnx's ``zipmap=False``)
``MLPRegressor``       ``X``        ``variable`` (N, n_outputs)
=====================  ===========  ==============================================

A two-class MLPClassifier (one logistic unit) gets ``output_probability`` as
``[1 - p, p]``; a multilabel one gets ``output_label`` as the (N, n_labels) int64
indicator of ``p > 0.5``.

Like the estimators themselves, the graph takes the features as they are: any
scaling the data needs (a StandardScaler in a pipeline, say) stays outside it.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from bpfast._layout import param_layout
from bpfast._validation import missing_optional
from bpfast.io import write_atomically
from bpfast.network import Network

__all__ = ["export_onnx", "DEFAULT_OPSET", "MIN_OPSET"]

#: The default ONNX opset: recent (onnx 1.16), and run by onnxruntime since its 1.18 release.
DEFAULT_OPSET = 21
#: The oldest opset the graph can use (Softmax over one axis, as here, since opset 13).
MIN_OPSET = 13

INPUT_NAME = "X"
NETWORK_OUTPUT = "output"
LABEL_OUTPUT = "output_label"
PROBABILITY_OUTPUT = "output_probability"
REGRESSOR_OUTPUT = "variable"

# A single ONNX file is one protobuf message, which cannot exceed 2 GB.
_MAX_MODEL_BYTES = 2 ** 31 - 1
_HEADROOM_BYTES = 1 << 20       # names, shapes, metadata and the class labels

_ACTIVATION_OPS = {"identity": None, "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu",
                   "softmax": "Softmax", "exp": "Exp"}


def _import_onnx():
    """The onnx module, or an ImportError that says how to install it."""
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError as exc:
        raise missing_optional("onnx", "export_onnx", "onnx", exc) from exc
    return onnx


def _resolve(model):
    """(network, kind, classes) of what is exported; kind is network/classifier/regressor."""
    if isinstance(model, Network):
        return model, "network", None
    # An estimator exists only if bpfast.sklearn was imported: never import scikit-learn here.
    estimators = sys.modules.get("bpfast.sklearn")
    if estimators is not None and isinstance(model, estimators._BaseMLP):
        net = model.__dict__.get("network_")
        if net is None:
            raise ValueError(f"net_or_estimator: this {type(model).__name__} is not fitted yet; "
                             f"call fit (or partial_fit) before export_onnx")
        if isinstance(model, estimators.MLPClassifier):
            return net, "classifier", np.asarray(model.classes_)
        return net, "regressor", None
    raise TypeError("net_or_estimator must be a bpfast.Network or a fitted "
                    "bpfast.sklearn.MLPClassifier / MLPRegressor; got "
                    f"{type(model).__module__}.{type(model).__qualname__}")


def _opset(opset, onnx):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, (bool, np.bool_)) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int or None; got {type(opset).__name__}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {newest} (the newest this "
                         f"onnx {onnx.__version__} knows); got {opset}")
    return int(opset)


def _path(path):
    try:
        return os.fsdecode(os.fspath(path))     # bytes paths too (surrogate-escaped)
    except TypeError:
        raise TypeError(f"path must be a str, bytes or os.PathLike; got {type(path).__name__}") from None


def _label_tensor(classes, numpy_helper):
    """The classes as a constant tensor; strings (any NumPy string or object array) as STRING."""
    if classes.dtype.kind in "OUS":
        values = np.array([str(c) if not isinstance(c, bytes) else c.decode() for c in classes],
                          dtype=object)
    else:
        values = classes
    return numpy_helper.from_array(values, "classes")


def _dense_nodes(net, params, output_name, helper, numpy_helper):
    """Gemm + activation for every layer, from INPUT_NAME to output_name; (nodes, initializers)."""
    nodes, initializers = [], []
    layers = param_layout(net.sizes)[0]
    previous = INPUT_NAME
    for i, slots in enumerate(layers):
        last = i == len(layers) - 1
        activation = net.output_activation if last else net.activation
        op = _ACTIVATION_OPS[activation]
        W = params[slots.w:slots.b].reshape(slots.n_in, slots.n_out)
        b = params[slots.b:slots.end]
        initializers += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        z = output_name if last and op is None else f"Z{i}"
        nodes.append(helper.make_node("Gemm", [previous, f"W{i}", f"b{i}"], [z], name=f"dense{i}"))
        previous = z
        if op is not None:
            a = output_name if last else f"A{i}"
            attrs = {"axis": -1} if op == "Softmax" else {}
            nodes.append(helper.make_node(op, [z], [a], name=f"{activation}{i}", **attrs))
            previous = a
    return nodes, initializers


def _build(net, kind, classes, opset, onnx):
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    params = net.get_parameters()           # one consistent snapshot
    if params.nbytes + _HEADROOM_BYTES > _MAX_MODEL_BYTES:
        raise ValueError(f"net_or_estimator: its {params.size:,} parameters "
                         f"({params.nbytes / 2 ** 30:.2f} GiB) do not fit in one ONNX file, "
                         f"which protobuf limits to 2 GiB")
    elem = helper.np_dtype_to_tensor_dtype(net.dtype)
    n_out = net.sizes[-1]
    inputs = [helper.make_tensor_value_info(INPUT_NAME, elem, ["N", net.sizes[0]])]
    if kind == "classifier" and net.output_activation == "sigmoid" and n_out > 1:
        # Multilabel: predict's rule, each label where its probability is > 0.5.
        nodes, initializers = _dense_nodes(net, params, PROBABILITY_OUTPUT, helper, numpy_helper)
        initializers.append(numpy_helper.from_array(np.array(0.5, dtype=net.dtype), "half"))
        nodes.append(helper.make_node("Greater", [PROBABILITY_OUTPUT, "half"], ["above_half"],
                                      name="above_half"))
        nodes.append(helper.make_node("Cast", ["above_half"], [LABEL_OUTPUT], name="label",
                                      to=onnx.TensorProto.INT64))
        outputs = [helper.make_tensor_value_info(LABEL_OUTPUT, onnx.TensorProto.INT64,
                                                 ["N", n_out]),
                   helper.make_tensor_value_info(PROBABILITY_OUTPUT, elem, ["N", n_out])]
    elif kind == "classifier":
        binary = n_out == 1             # one logistic unit: the probability of classes_[1]
        raw = "positive_probability" if binary else PROBABILITY_OUTPUT
        nodes, initializers = _dense_nodes(net, params, raw, helper, numpy_helper)
        if binary:                      # predict_proba's two columns, [1 - p, p]
            initializers.append(numpy_helper.from_array(np.ones((1, 1), net.dtype), "one"))
            nodes.append(helper.make_node("Sub", ["one", raw], ["negative_probability"],
                                          name="complement"))
            nodes.append(helper.make_node("Concat", ["negative_probability", raw],
                                          [PROBABILITY_OUTPUT], name="both", axis=1))
            if len(classes) == 1:       # a single class is predicted whatever p is
                classes = np.repeat(classes, 2)
        labels = _label_tensor(classes, numpy_helper)
        initializers.append(labels)
        # predict's rule: classes_[argmax(proba, axis=1)], the first maximum on ties (for
        # one logistic unit the same as classes_[p > 0.5]).
        nodes.append(helper.make_node("ArgMax", [PROBABILITY_OUTPUT], ["class_index"],
                                      name="argmax", axis=1, keepdims=0))
        nodes.append(helper.make_node("Gather", ["classes", "class_index"], [LABEL_OUTPUT],
                                      name="label", axis=0))
        outputs = [helper.make_tensor_value_info(LABEL_OUTPUT, labels.data_type, ["N"]),
                   helper.make_tensor_value_info(PROBABILITY_OUTPUT, elem,
                                                 ["N", 2 if binary else n_out])]
    else:
        name = REGRESSOR_OUTPUT if kind == "regressor" else NETWORK_OUTPUT
        nodes, initializers = _dense_nodes(net, params, name, helper, numpy_helper)
        outputs = [helper.make_tensor_value_info(name, elem, ["N", n_out])]
    graph = helper.make_graph(nodes, f"bpfast_{kind}", inputs, outputs, initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    from bpfast import __version__
    model = helper.make_model(graph, opset_imports=opset_ids, producer_name="bpfast",
                              producer_version=__version__,
                              # The oldest IR that carries this opset: older runtimes load it.
                              ir_version=helper.find_min_ir_version_for(opset_ids),
                              doc_string=f"{kind} exported by bpfast: {net!r}")
    helper.set_model_props(model, {f"bpfast.{key}": str(value)
                                   for key, value in net.config().items() if key != "backend"})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net_or_estimator, path, opset=None):
    """Write a Network or a fitted bpfast.sklearn estimator to ``path`` as an ONNX model.

    Parameters
    ----------
    net_or_estimator : bpfast.Network, or a fitted bpfast.sklearn.MLPClassifier / MLPRegressor
        A Network exports input ``X`` and output ``output`` (what ``predict`` returns);
        a classifier two outputs, ``output_label`` (what ``predict`` returns) and
        ``output_probability`` (``predict_proba``); a regressor ``variable``, of shape
        (N, n_outputs) also for one output. The graph has the network's dtype: feed it
        float32 for a float32 network, float64 for a float64 one.
    path : str, bytes or os.PathLike
        Destination file. It is written atomically: to a temporary file beside it,
        renamed over it only when complete, so a failed export leaves any previous
        file intact and no temporary file behind.
    opset : int or None
        The ONNX opset of the default domain; None means ``DEFAULT_OPSET`` (21), or
        the newest the installed onnx knows if that is older. At least ``MIN_OPSET`` (13).

    Returns
    -------
    onnx.ModelProto
        The model that was written (it passed ``onnx.checker.check_model``).

    Raises
    ------
    ImportError
        If the onnx package is not installed (``pip install "bpfast[onnx]"``).
    TypeError
        If net_or_estimator is neither a Network nor a bpfast estimator, or opset or
        path has the wrong type.
    ValueError
        If the estimator is not fitted, opset is out of range, or the parameters
        exceed the 2 GiB a single ONNX file can hold.
    """
    net, kind, classes = _resolve(net_or_estimator)
    path = _path(path)
    onnx = _import_onnx()
    opset = _opset(opset, onnx)
    model = _build(net, kind, classes, opset, onnx)
    data = model.SerializeToString()
    write_atomically(path, lambda f: f.write(data))
    return model
