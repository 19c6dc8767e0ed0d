"""save and load: a Network as a NumPy .npz file holding its architecture and parameters."""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from bpfast.network import Network

FORMAT = "bpfast-network-1"
_KEYS = {"format", "sizes", "activation", "output_activation", "loss", "dtype", "params"}


def save(net: Network, path) -> None:
    """Write ``net`` to ``path`` (.npz) atomically.

    The file is written beside its destination and renamed over it only when
    complete, so an interrupted save never leaves a broken file in place of the
    previous model.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a bpfast.Network; got {type(net).__name__}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bpfast-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format=np.array(FORMAT), sizes=np.array(net.sizes, dtype=np.int64),
                     activation=np.array(net.activation),
                     output_activation=np.array(net.output_activation),
                     loss=np.array(net.loss), dtype=np.array(net.dtype.name),
                     params=net.get_parameters())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path, backend: str = "cython") -> Network:
    """Read a Network written by ``save``; it predicts bit-identically to the saved one.

    Raises FileNotFoundError for a missing file and ValueError for a file that
    is truncated, corrupt or not a bpfast model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not _KEYS <= set(data.files) or str(data["format"]) != FORMAT:
                raise ValueError(f"{path!r} is not a bpfast model file (format {FORMAT})")
            fields = {k: data[k] for k in _KEYS}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise ValueError(f"{path!r} is not a readable bpfast model file: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path!r} is not a readable bpfast model file: {exc}") from None
    net = Network([int(s) for s in fields["sizes"]], activation=str(fields["activation"]),
                  output_activation=str(fields["output_activation"]), loss=str(fields["loss"]),
                  dtype=str(fields["dtype"]), backend=backend, seed=None)
    params = fields["params"]
    if params.dtype != net.dtype or params.shape != net._params.shape:
        raise ValueError(f"{path!r} is corrupt: parameters of dtype {params.dtype} and shape "
                         f"{params.shape} do not fit sizes {net.sizes}")
    net.set_parameters(params)
    return net
