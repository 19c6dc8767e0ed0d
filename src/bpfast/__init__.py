"""bpfast: dense neural networks trained by backpropagation, fast.

    import bpfast
    net = bpfast.Network([2, 2, 1], activation="sigmoid", loss="mse", seed=0)
    history = net.fit(X, Y, epochs=100, batch_size=4, lr=0.5)

The compiled kernels are ``dense_forward``, ``backprop_error`` and ``sgd_update``
(with the rest in ``bpfast.functional``); ``bpfast.reference`` holds the same
functions in pure Python. ``export_onnx`` writes a Network (or a fitted
``bpfast.sklearn`` estimator) as an ONNX model.
"""
from bpfast import reference
from bpfast._kernels import default_threads
from bpfast._onnx import export_onnx
from bpfast.functional import backprop_error, dense_forward, sgd_update
from bpfast.io import load, save
from bpfast.network import History, Network

__version__ = "0.1.0"

__all__ = ["Network", "History", "dense_forward", "backprop_error", "sgd_update", "save", "load",
           "export_onnx", "default_threads", "reference", "__version__"]
