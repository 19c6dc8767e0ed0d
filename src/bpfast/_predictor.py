"""A frozen copy of a Network for inference, as an onnxruntime session is one.

``Network.predict`` reads the live weights, which may change between two calls: it packs
a wide layer's weights into the column panels that the register kernel reads
(``_smallgemm.h``) only once two predictions in a row found them unchanged, and only
while no array into them is held outside the Network (``_packing.py``). A
``Predictor`` copies the Network once and packs those weights at once, whatever happens
to the Network later; its predictions have the bits of the Network's ``predict`` at the
moment it was made (the kernel runs the same chains on packed and unpacked weights).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


class Predictor:
    """Inference with a frozen copy of a Network; make one with ``Network.predictor()``.

    ``predict(X, n_threads=None)`` validates X as ``Network.predict`` does and returns
    the same bits as the Network's ``predict`` did when the Predictor was made. It
    pickles (the weights are packed again when it is loaded). Any number of threads may
    predict at once.
    """

    def __init__(self, network, n_threads: Optional[int] = None):
        # A Network with the same settings and parameters, not a clone: its gradient and
        # optimizer buffers stay zero pages that are never touched.
        self._net = type(network)._from_parameters(
            network.get_parameters(), network.sizes, network.activation,
            network.output_activation, network.loss, network.dtype, network.backend,
            network.n_threads if n_threads is None else n_threads)
        self._net._packs.pack()

    def predict(self, X, n_threads: Optional[int] = None) -> np.ndarray:
        """Output for X, shape (n, sizes[-1]), as ``Network.predict``."""
        return self._net.predict(X, n_threads)

    @property
    def sizes(self):
        return list(self._net.sizes)

    @property
    def dtype(self):
        return self._net.dtype

    @property
    def n_threads(self):
        return self._net.n_threads

    def __getstate__(self):
        return {"network": self._net}

    def __setstate__(self, state):
        self._net = state["network"]
        self._net._packs.pack()

    def __repr__(self):
        return (f"Predictor(sizes={self._net.sizes}, dtype={self._net.dtype.name}, "
                f"{self._net._packs.elements} weights packed)")
