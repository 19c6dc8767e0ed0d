"""save and load: a Network as a NumPy .npz file holding its architecture and parameters.

A model file is an ordinary ``.npz`` (``np.load`` reads it, without pickles) with
the fields ``format`` (``"bpfast-network-1"``), ``sizes``, ``activation``,
``output_activation``, ``loss``, ``dtype`` and ``params`` (the flat parameter
array, laid out as ``Network.get_parameters`` returns it), and optionally
``metadata``: a JSON text holding whatever dict was given to ``save`` (the
command line keeps its feature names, scaling and class names there, so that a
model is one file).

``save`` is atomic: the model is written to a temporary file beside its
destination, flushed to disk and renamed over the destination only when
complete, so an interrupted save (an exception, a full disk, a killed process)
leaves the previous file intact and no temporary file behind (a killed process
may leave a ``.<name>.*.tmp`` file, never a broken model). Saving over a
symbolic link replaces the file the link points to and keeps the link.

``load`` trusts nothing in the file: it reads no pickles, reads each field's
.npy header first and checks its type, shape and size against what the model
needs and against the size the zip directory gives the member, and only then
inflates exactly the bytes the header announces. A truncated, corrupt, foreign
or crafted file (a header announcing terabytes, a small compressed member that
inflates to gigabytes) raises ValueError with the path and the reason, without
a crash or a large allocation.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import stat
import zipfile

import numpy as np

from bpfast import optim
from bpfast._layout import param_layout
from bpfast._validation import FLOAT_DTYPES, choice
from bpfast.network import BACKENDS, Network

FORMAT = "bpfast-network-1"
# The Network settings stored as text fields; with `sizes` they are Network.config()
# without the backend, which is chosen when loading.
_CONFIG_STRINGS = ("activation", "output_activation", "loss", "dtype")
_METADATA = "metadata"
# The optimizer's state (bpfast.optim), in files written since it exists: its buffer,
# whose it is, and its step count.
_STATE, _STATE_KIND, _STATE_STEP = "optimizer_state", "optimizer", "optimizer_step"
# The JSON text of the metadata is stored as a NumPy unicode scalar (4 bytes a character).
MAX_METADATA_CHARS = 4 * 2 ** 20
# What the small fields may announce: generous for their content, tiny next to memory.
_NAME_BYTES = 4 * 256                  # a format, activation, loss or dtype name
_SIZES_BYTES = 8 * 2 ** 16             # up to 65536 layer widths
# Deflate inflates at most about 1032:1; a member announcing more than this many times
# its compressed size cannot be what its header says.
_MAX_DEFLATE_RATIO = 1100


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


def _metadata_text(metadata) -> str:
    """The JSON text of a metadata dict, or TypeError/ValueError naming `metadata`."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict (JSON-able); got {type(metadata).__name__}")
    try:
        # allow_nan=False: NaN and infinity are not JSON, and another reader would choke.
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(f"metadata must hold only JSON types (dict, list, str, number, bool, "
                        f"None): {exc}") from None
    except ValueError as exc:
        raise ValueError(f"metadata cannot be stored as JSON: {exc}") from None
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"metadata is {len(text)} characters as JSON; at most "
                         f"{MAX_METADATA_CHARS} are stored")
    return text


def save(net: Network, path, metadata=None) -> None:
    """Write ``net`` to ``path`` (an .npz file; any name, no suffix is added) atomically.

    Parameters
    ----------
    net : Network
    path : str, bytes or path-like
        The file to write. A symbolic link is followed: the file it points to is
        replaced and the link kept.
    metadata : dict, optional
        Anything JSON can hold (at most ``MAX_METADATA_CHARS`` characters as
        JSON), stored in the same file; ``load(path, with_metadata=True)`` gives
        it back as ``json.loads`` reads it (tuples come back as lists).

    The file is written beside its destination and renamed over it only when
    complete, so an interrupted save never leaves a broken file in place of the
    previous model, nor a temporary file. Replacing a file keeps its permissions.

    Raises
    ------
    TypeError
        ``net`` is not a Network, or ``metadata`` is not a dict of JSON types.
    ValueError
        The parameters contain NaN or infinity (nothing is written), or the
        metadata holds NaN or infinity or is too large.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a bpfast.Network; got {type(net).__name__}")
    path = os.fsdecode(os.fspath(path))     # bytes paths too (surrogate-escaped)
    text = None if metadata is None else _metadata_text(metadata)
    params = net.get_parameters()   # one consistent snapshot
    if not np.isfinite(params).all():
        raise ValueError("the network's parameters contain NaN or infinity; such a model is "
                         "not saved (a file that load refuses would replace the old one)")
    config = net.config()
    fields = dict(format=np.array(FORMAT), sizes=np.array(config["sizes"], dtype=np.int64),
                  **{key: np.array(config[key]) for key in _CONFIG_STRINGS}, params=params)
    if text is not None:
        fields[_METADATA] = np.array(text)
    if net._state_kind is not None:
        fields.update({_STATE: net._state.copy(), _STATE_KIND: np.array(net._state_kind),
                       _STATE_STEP: np.array(net._state_step, dtype=np.int64)})
    write_atomically(path, lambda f: np.savez(f, **fields))


def write_atomically(path, write) -> None:
    """Call write(binary file) on a temporary file beside path, then rename it over path.

    An interrupted write (an exception, a full disk, a killed process) leaves the old
    file intact and no temporary file behind (a killed process may leave a
    ``.<name>.*.tmp`` file, never a broken one). A symbolic link is followed: the file it
    points to is replaced and the link kept; a replaced file keeps its permissions.
    """
    path = os.path.realpath(os.fsdecode(os.fspath(path)))
    fd, tmp = _create_temp(path)
    try:
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "wb") as f:
            fd = None
            write(f)
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
    _fsync_directory(os.path.dirname(path))


# ---------------------------------------------------------------------- load
class _Invalid(Exception):
    """A reason why the file is not a valid model; becomes a ValueError naming the path."""


def _read_member(zf, key, max_bytes, check=None):
    """The array `key` of an .npz, read as a stream: header first, then only the data it announces.

    ``check(shape, dtype)`` may refuse the header before any data is inflated;
    so does a size over ``max_bytes`` or one that disagrees with the member's
    size in the zip directory (a member longer than its array is refused
    without being inflated).
    """
    try:
        info = zf.getinfo(key + ".npy")
    except KeyError:
        raise _Invalid(f"it has no '{key}' field, so it is not a bpfast model file "
                       f"(format {FORMAT})") from None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # NumPy writes stored (savez) or deflated (savez_compressed) members; bzip2 and
        # lzma could inflate far beyond deflate's bound below.
        raise _Invalid(f"field '{key}' uses zip compression method {info.compress_type}; "
                       f"a model file's members are stored or deflated")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _Invalid(f"field '{key}' is stored uncompressed but its compressed and "
                       f"uncompressed sizes differ ({info.compress_size}, {info.file_size})")
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 4096:
        raise _Invalid(f"field '{key}' claims {info.file_size} bytes from {info.compress_size} "
                       f"compressed bytes, more than compression can give")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Invalid(f"field '{key}' has an unsupported .npy format version {version}")
        if dtype.hasobject:
            raise _Invalid(f"field '{key}' holds Python objects, which are never loaded")
        if check is not None:
            check(shape, dtype)
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes > max_bytes:
            raise _Invalid(f"field '{key}' announces {nbytes} bytes (shape {shape}, {dtype}); "
                           f"a bpfast model holds at most {max_bytes} there")
        present = info.file_size - f.tell()
        if nbytes > present:
            raise _Invalid(f"field '{key}' is truncated: its header announces shape {shape} "
                           f"({nbytes} bytes) but {present} bytes follow")
        if nbytes < present:
            raise _Invalid(f"field '{key}' holds {present} bytes after its header, which "
                           f"announces shape {shape} ({nbytes} bytes)")
        # Exactly the announced bytes: the member ends here, so zipfile checks its CRC.
        raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise _Invalid(f"field '{key}' is truncated: {len(raw)} of {nbytes} bytes")
    arr = np.frombuffer(raw, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def _string_check(key):
    def check(shape, dtype):
        if dtype.kind != "U" or shape != ():
            raise _Invalid(f"field '{key}' must be a string; got {dtype} of shape {shape}")
    return check


def _read_string(zf, key, max_bytes=_NAME_BYTES):
    return str(_read_member(zf, key, max_bytes, _string_check(key))[()])


def _check_sizes(shape, dtype):
    if dtype.kind not in "iu" or len(shape) != 1 or shape[0] < 2:
        raise _Invalid(f"field 'sizes' must be at least 2 integers; got {dtype} of shape {shape}")


def _read_fields(zf, with_metadata):
    """The Network settings, the parameters and (if wanted) the metadata of an open .npz."""
    fmt = _read_string(zf, "format")
    if fmt != FORMAT:
        raise _Invalid(f"it is not a bpfast model file (format {fmt!r}, expected {FORMAT!r})")
    config = {key: _read_string(zf, key) for key in _CONFIG_STRINGS}
    sizes = [int(s) for s in _read_member(zf, "sizes", _SIZES_BYTES, _check_sizes)]
    if any(s < 1 for s in sizes):
        raise _Invalid(f"field 'sizes' holds a width < 1: {sizes}")
    config["sizes"] = sizes
    if config["dtype"] not in FLOAT_DTYPES:
        raise _Invalid(f"field 'dtype' must be one of {tuple(FLOAT_DTYPES)}; got {config['dtype']!r}")
    n_params = param_layout(sizes)[1]
    want = FLOAT_DTYPES[config["dtype"]]

    def check_params(shape, dtype):
        # Either byte order: another writer's big-endian file holds the same values.
        if dtype.kind != "f" or dtype.itemsize != want.itemsize or shape != (n_params,):
            raise _Invalid(f"its parameters (field 'params': {dtype}, shape {shape}) do not fit "
                           f"sizes {sizes} and dtype {config['dtype']} (expected shape "
                           f"({n_params},))")

    params = _read_member(zf, "params", n_params * want.itemsize, check_params)
    params = params.astype(want, copy=False)        # native byte order
    state = None
    if _STATE_KIND + ".npy" in zf.NameToInfo:
        state = _read_state(zf, n_params, want)
    metadata = None
    if with_metadata and _METADATA + ".npy" in zf.NameToInfo:
        text = _read_string(zf, _METADATA, 4 * MAX_METADATA_CHARS)
        try:
            metadata = json.loads(text)
        except ValueError as exc:
            raise _Invalid(f"field '{_METADATA}' is not JSON ({exc})") from None
        if not isinstance(metadata, dict):
            raise _Invalid(f"field '{_METADATA}' must hold a JSON object; got "
                           f"{type(metadata).__name__}")
    return config, params, state, metadata


def _read_state(zf, n_params, want):
    """(buffer, optimizer, step) of the optimizer state field, every part checked."""
    kind = _read_string(zf, _STATE_KIND)
    if kind not in optim.NAMES:
        raise _Invalid(f"field '{_STATE_KIND}' must be one of {optim.NAMES}; got {kind!r}")

    def check_state(shape, dtype):
        if dtype.kind != "f" or dtype.itemsize != want.itemsize or shape != (2 * n_params,):
            raise _Invalid(f"field '{_STATE}' ({dtype}, shape {shape}) does not fit the "
                           f"parameters (expected shape ({2 * n_params},))")

    def check_step(shape, dtype):
        if dtype.kind not in "iu" or shape != ():
            raise _Invalid(f"field '{_STATE_STEP}' must be an integer; got {dtype} {shape}")

    buffer = _read_member(zf, _STATE, 2 * n_params * want.itemsize, check_state)
    buffer = buffer.astype(want, copy=False)
    if not np.isfinite(buffer).all():
        raise _Invalid(f"field '{_STATE}' contains NaN or infinity")
    step = int(_read_member(zf, _STATE_STEP, 8, check_step)[()])
    if step < 0:
        raise _Invalid(f"field '{_STATE_STEP}' is negative: {step}")
    return buffer, kind, step


def load(path, backend: str = "cython", *, with_metadata: bool = False):
    """Read a Network written by ``save``; it predicts bit-identically to the saved one.

    Parameters
    ----------
    path : str, bytes or path-like
    backend : {'cython', 'reference'}
        The backend of the returned Network.
    with_metadata : bool
        Return ``(net, metadata)``: the dict given to ``save``, or None for a
        file saved without one (as every file written before metadata existed).

    Raises FileNotFoundError for a missing file (and the other OSErrors of
    opening it, such as PermissionError), and ValueError naming the path and
    the reason for a file that is truncated, corrupt or not a bpfast model.
    """
    choice(backend, "backend", BACKENDS)
    if not isinstance(with_metadata, bool):
        raise TypeError(f"with_metadata must be True or False; got {with_metadata!r}")
    path = os.fsdecode(os.fspath(path))     # bytes paths too (surrogate-escaped)
    with open(path, "rb") as f:
        try:
            with zipfile.ZipFile(f) as zf:
                config, params, state, metadata = _read_fields(zf, with_metadata)
        except _Invalid as exc:
            raise ValueError(f"cannot load {path!r}: {exc}") from None
        except MemoryError:
            raise
        except Exception as exc:
            # zipfile.BadZipFile, zlib.error, EOFError, a malformed .npy header, ...
            raise ValueError(f"cannot load {path!r}: it is truncated, corrupt or not a "
                             f"bpfast model file ({type(exc).__name__}: {exc})") from exc
    try:
        net = Network(**config, backend=backend, seed=None)
        net.set_parameters(params)
        if state is not None:
            net._state[...], net._state_kind, net._state_step = state
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {path!r}: the model it describes is invalid ({exc})") from exc
    return (net, metadata) if with_metadata else net
