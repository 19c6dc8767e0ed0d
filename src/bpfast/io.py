"""save and load: a Network as a NumPy .npz file holding its architecture and parameters.

``save`` is atomic: the model is written to a temporary file beside its
destination, flushed to disk and renamed over the destination only when
complete, so an interrupted save (an exception, a full disk, a killed process)
leaves the previous file intact and no temporary file behind (a killed process
may leave a ``.<name>.*.tmp`` file, never a broken model).

``load`` trusts nothing in the file: it reads no pickles, checks every field's
type and shape, and checks the array headers against the bytes actually present
before allocating anything, so a truncated, corrupt or foreign file raises
ValueError with the path and the reason, never a crash or a huge allocation.
"""
from __future__ import annotations

import io
import os
import secrets
import stat
import zipfile

import numpy as np

from bpfast._validation import FLOAT_DTYPES, choice
from bpfast.network import BACKENDS, Network

FORMAT = "bpfast-network-1"
_STRING_KEYS = ("format", "activation", "output_activation", "loss", "dtype")
_KEYS = set(_STRING_KEYS) | {"sizes", "params"}


# ---------------------------------------------------------------------- save
def _create_temp(path):
    """Open a new, private temporary file beside `path`; returns (fd, temp path).

    O_EXCL makes it ours alone; mode 0o666 lets the process umask decide the
    permissions, as for any new file (mkstemp would force 0o600).
    """
    directory, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _fsync_directory(directory):
    """Make the rename itself durable (best effort: not every platform can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(net: Network, path) -> None:
    """Write ``net`` to ``path`` (an .npz file; any name, no suffix is added) atomically.

    The file is written beside its destination and renamed over it only when
    complete, so an interrupted save never leaves a broken file in place of the
    previous model, nor a temporary file. Replacing a file keeps its permissions.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a bpfast.Network; got {type(net).__name__}")
    path = os.fsdecode(os.fspath(path))     # bytes paths too (surrogate-escaped)
    params = net.get_parameters()   # one consistent snapshot
    fields = dict(format=np.array(FORMAT), sizes=np.array(net.sizes, dtype=np.int64),
                  activation=np.array(net.activation),
                  output_activation=np.array(net.output_activation),
                  loss=np.array(net.loss), dtype=np.array(net.dtype.name), params=params)
    fd, tmp = _create_temp(path)
    try:
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "wb") as f:
            fd = None
            np.savez(f, **fields)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


# ---------------------------------------------------------------------- load
class _Invalid(Exception):
    """A reason why the file is not a valid model; becomes a ValueError naming the path."""


def _read_member(zf, key):
    """The array `key` of an .npz, parsed from its bytes with every header checked."""
    try:
        raw = zf.read(key + ".npy")
    except KeyError:
        raise _Invalid(f"it has no '{key}' field, so it is not a bpfast model file "
                       f"(format {FORMAT})") from None
    buf = io.BytesIO(raw)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
    else:
        raise _Invalid(f"field '{key}' has an unsupported .npy format version {version}")
    if dtype.hasobject:
        raise _Invalid(f"field '{key}' holds Python objects, which are never loaded")
    count = 1
    for s in shape:
        count *= s
    offset = buf.tell()
    if count * dtype.itemsize > len(raw) - offset:
        raise _Invalid(f"field '{key}' is truncated: its header announces shape {shape} "
                       f"({count * dtype.itemsize} bytes) but {len(raw) - offset} bytes follow")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _string(arr, key):
    if arr.dtype.kind != "U" or arr.shape != ():
        raise _Invalid(f"field '{key}' must be a string; got {arr.dtype} of shape {arr.shape}")
    return str(arr[()])


def _read_fields(f):
    with zipfile.ZipFile(f) as zf:
        arrays = {key: _read_member(zf, key) for key in ("format",)}
        if _string(arrays["format"], "format") != FORMAT:
            raise _Invalid(f"it is not a bpfast model file (format {arrays['format']!r}, "
                           f"expected {FORMAT!r})")
        for key in sorted(_KEYS - {"format"}):
            arrays[key] = _read_member(zf, key)
    fields = {key: _string(arrays[key], key) for key in _STRING_KEYS}
    sizes, params = arrays["sizes"], arrays["params"]
    if sizes.dtype.kind not in "iu" or sizes.ndim != 1 or sizes.shape[0] < 2:
        raise _Invalid(f"field 'sizes' must be at least 2 integers; got {sizes.dtype} of "
                       f"shape {sizes.shape}")
    fields["sizes"] = [int(s) for s in sizes]
    if any(s < 1 for s in fields["sizes"]):
        raise _Invalid(f"field 'sizes' holds a width < 1: {fields['sizes']}")
    if fields["dtype"] not in FLOAT_DTYPES:
        raise _Invalid(f"field 'dtype' must be one of {tuple(FLOAT_DTYPES)}; got {fields['dtype']!r}")
    n_params = sum(a * b + b for a, b in zip(fields["sizes"][:-1], fields["sizes"][1:]))
    if params.dtype != FLOAT_DTYPES[fields["dtype"]] or params.shape != (n_params,):
        raise _Invalid(f"its parameters ({params.dtype}, shape {params.shape}) do not fit "
                       f"sizes {fields['sizes']} and dtype {fields['dtype']} (expected shape "
                       f"({n_params},))")
    fields["params"] = params
    return fields


def load(path, backend: str = "cython") -> Network:
    """Read a Network written by ``save``; it predicts bit-identically to the saved one.

    Raises FileNotFoundError for a missing file (and the other OSErrors of
    opening it, such as PermissionError), and ValueError naming the path and
    the reason for a file that is truncated, corrupt or not a bpfast model.
    """
    choice(backend, "backend", BACKENDS)
    path = os.fsdecode(os.fspath(path))     # bytes paths too (surrogate-escaped)
    with open(path, "rb") as f:
        try:
            fields = _read_fields(f)
        except _Invalid as exc:
            raise ValueError(f"cannot load {path!r}: {exc}") from None
        except MemoryError:
            raise
        except Exception as exc:
            # zipfile.BadZipFile, zlib.error, EOFError, a malformed .npy header, ...
            raise ValueError(f"cannot load {path!r}: it is truncated, corrupt or not a "
                             f"bpfast model file ({type(exc).__name__}: {exc})") from exc
    try:
        net = Network(fields["sizes"], activation=fields["activation"],
                      output_activation=fields["output_activation"], loss=fields["loss"],
                      dtype=fields["dtype"], backend=backend, seed=None)
        net.set_parameters(fields["params"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {path!r}: the model it describes is invalid ({exc})") from exc
    return net
