"""save and load: a Network as a NumPy .npz file holding its architecture and parameters.

A model file is an ordinary ``.npz`` (``np.load`` reads it, without pickles) with
the fields ``config``, a JSON text holding the format (``"bpfast-network-2"``),
``sizes``, ``activation``, ``output_activation``, ``loss`` and ``dtype`` (and, when
the network has optimizer state, ``optimizer`` and ``optimizer_step``); ``params``,
the flat parameter array laid out as ``Network.get_parameters`` returns it; with
optimizer state, ``optimizer_state``; and optionally ``metadata``: a JSON text
holding whatever dict was given to ``save`` (the command line keeps its feature
names, scaling and class names there, so that a model is one file). Files of the
previous format, ``bpfast-network-1``, whose every setting is a field of its own
(``format``, ``sizes``, ``activation``, ... , ``optimizer``, ``optimizer_step``),
load as before.

``save`` is atomic: the model is written to a temporary file beside its
destination, flushed to disk and renamed over the destination only when
complete, so an interrupted save (an exception, a full disk, a killed process)
leaves the previous file intact and no temporary file behind (a killed process
may leave a ``.<name>.*.tmp`` file, never a broken model). Saving over a
symbolic link replaces the file the link points to and keeps the link.

``load`` trusts nothing in the file: it reads no pickles, checks each member's
size in the zip directory against what the model can hold there (the parameter
count comes from ``sizes`` before the parameters are read) and against what its
compression can give, inflates no more than that size, then checks the .npy
header's type, shape and size against what the model needs and against the bytes
that follow it. A truncated, corrupt, foreign or crafted file (a header announcing
terabytes, a small compressed member that inflates to gigabytes) raises ValueError
with the path and the reason, without a crash or a large allocation.
"""
from __future__ import annotations

import io as _io
import json
import math
import os
import re
import secrets
import stat
import zipfile
import zlib

import numpy as np

from bpfast import optim
from bpfast._layout import param_layout
from bpfast._validation import FLOAT_DTYPES, choice
from bpfast.network import BACKENDS, Network

FORMAT = "bpfast-network-2"
FORMAT_1 = "bpfast-network-1"       # one field per setting; still loaded
# The Network settings stored as text; with `sizes` they are Network.config() without
# the backend, which is chosen when loading.
_CONFIG_STRINGS = ("activation", "output_activation", "loss", "dtype")
# The field holding the settings as JSON (format 2), and the keys it must hold.
_CONFIG = "config"
_HEADER_KEYS = frozenset(("format", "sizes") + _CONFIG_STRINGS)
_METADATA = "metadata"
# The optimizer's state (bpfast.optim), in files written since it exists: its buffer,
# whose it is, and its step count (format 2 keeps the last two in the config).
_STATE, _STATE_KIND, _STATE_STEP = "optimizer_state", "optimizer", "optimizer_step"
_HEADER_KEYS_WITH_STATE = _HEADER_KEYS | {_STATE_KIND, _STATE_STEP}
# The JSON text of the metadata is stored as a NumPy unicode scalar (4 bytes a character).
MAX_METADATA_CHARS = 4 * 2 ** 20
# What the small fields may announce: generous for their content, tiny next to memory.
_NAME_BYTES = 4 * 256                  # a format, activation, loss or dtype name
_MAX_LAYERS = 2 ** 16                  # layer widths in a file
_SIZES_BYTES = 8 * _MAX_LAYERS
# The config's JSON: 11 characters a width (10 digits and a comma) and room for the rest.
_CONFIG_BYTES = 4 * (11 * _MAX_LAYERS + 4096)
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
    header = dict(format=FORMAT, sizes=config["sizes"], **{key: config[key] for key in _CONFIG_STRINGS})
    fields = {_CONFIG: None, "params": params}      # the config first: load reads it first
    if net._state_kind is not None:
        header.update({_STATE_KIND: net._state_kind, _STATE_STEP: net._state_step})
        fields[_STATE] = net._state.copy()
    fields[_CONFIG] = np.array(json.dumps(header, separators=(",", ":")))
    if text is not None:
        fields[_METADATA] = np.array(text)
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


# The .npy header exactly as NumPy writes it (format 1.0): parsed by this pattern instead of
# NumPy's ast.literal_eval, which is most of the cost of reading a small member. Any
# other header (another writer's spelling, format 2.0 or 3.0) goes to NumPy's own parser.
_DIM = r"(?:0|[1-9][0-9]*)"
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[A-Za-z][0-9]*)', 'fortran_order': (False|True), "
                         rf"'shape': \((?:({_DIM}(?:, {_DIM})*),?)?\), \}} *\n")
# Room for a member's .npy magic and header beside its data: NumPy's reader refuses
# headers over 10000 bytes.
_HEADER_ROOM = 16384
# A model file up to this size is read whole (a 2-4-1 model's is 1.2 KB, a 784-128-10's 0.8 MB).
_READ_WHOLE = 2 ** 20
_LOCAL_HEADER_SIZE = 30         # a zip member's local header, before its name and extra field
_ZIP_ENCRYPTED = 0x1            # general purpose flag: refused by ZipFile.open


class _WholeFile(_io.BytesIO):
    """A small file's bytes, read whole: stored members are sliced from them, not copied."""

    def __init__(self, data):
        super().__init__(data)
        self.view = memoryview(data)


def _archive(f):
    """What zipfile reads the unbuffered file `f` through: the bytes of a small regular
    file, read in one call (zipfile's seeks and reads on the file would cost more than
    that), else a buffered reader of the file."""
    status = os.fstat(f.fileno())
    if stat.S_ISREG(status.st_mode) and status.st_size <= _READ_WHOLE:
        return _WholeFile(f.read(status.st_size))
    return _io.BufferedReader(f)


def _read_stored(fp, info, key):
    """The bytes of a stored (uncompressed) member, read from the archive's file.

    What ``ZipFile.open`` would give, for a tenth of its cost on the small members of a
    model file: it checks the local header's signature and name and the CRC as that
    does; the size is the zip directory's, already checked by the caller.
    """
    fp.seek(info.header_offset)
    local = fp.read(_LOCAL_HEADER_SIZE)
    if len(local) != _LOCAL_HEADER_SIZE or local[:4] != b"PK\x03\x04":
        raise _Invalid(f"field '{key}' has no valid local zip header")
    name_length = int.from_bytes(local[26:28], "little")
    extra_length = int.from_bytes(local[28:30], "little")
    if fp.read(name_length) != info.orig_filename.encode("utf-8"):
        raise _Invalid(f"field '{key}': its local zip header names another member")
    fp.seek(extra_length, os.SEEK_CUR)
    if isinstance(fp, _WholeFile):
        start = fp.tell()
        raw = fp.view[start:start + info.file_size]
    else:
        raw = fp.read(info.file_size)
    if len(raw) == info.file_size and zlib.crc32(raw) != info.CRC:
        raise _Invalid(f"field '{key}' is corrupt (its CRC-32 does not match)")
    return raw


def _npy_header(raw, key):
    """(shape, fortran order, dtype, offset of the data) of the .npy bytes `raw`."""
    if raw[:8] == b"\x93NUMPY\x01\x00" and len(raw) >= 10:
        start = 10 + int.from_bytes(raw[8:10], "little")
        match = _NPY_HEADER.fullmatch(bytes(raw[10:start]).decode("latin1"))
        if match is not None:
            descr, fortran, dims = match.groups()
            shape = tuple(int(d) for d in dims.split(", ")) if dims else ()
            return shape, fortran == "True", np.dtype(descr), start
    f = _io.BytesIO(raw)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise _Invalid(f"field '{key}' has an unsupported .npy format version {version}")
    return shape, fortran, dtype, f.tell()


def _read_member(zf, key, max_bytes, check=None):
    """The array `key` of an .npz, inflating no more than its checked size allows.

    The member's size in the zip directory is checked first (it may not exceed
    ``max_bytes`` and a header, nor what its compression can give), then exactly that
    many bytes are inflated (zipfile checks the CRC), then the .npy header:
    ``check(shape, dtype)`` may refuse it, so does a size over ``max_bytes`` or one that
    disagrees with the bytes that follow the header.
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
    if info.file_size > max_bytes + _HEADER_ROOM:
        raise _Invalid(f"field '{key}' is {info.file_size} bytes long; a bpfast model holds "
                       f"at most {max_bytes} bytes there, and a header")
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & _ZIP_ENCRYPTED:
        raw = _read_stored(zf.fp, info, key)
    else:
        with zf.open(info) as f:
            # read(n), never read(): zipfile inflates at most n bytes, whatever the stream
            # holds, and checks the CRC once the member's size is reached.
            raw = f.read(info.file_size)
    if len(raw) != info.file_size:
        raise _Invalid(f"field '{key}' is truncated: {len(raw)} of {info.file_size} bytes")
    shape, fortran, dtype, start = _npy_header(raw, key)
    if dtype.hasobject:
        raise _Invalid(f"field '{key}' holds Python objects, which are never loaded")
    if check is not None:
        check(shape, dtype)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise _Invalid(f"field '{key}' announces {nbytes} bytes (shape {shape}, {dtype}); "
                       f"a bpfast model holds at most {max_bytes} there")
    present = len(raw) - start
    if nbytes > present:
        raise _Invalid(f"field '{key}' is truncated: its header announces shape {shape} "
                       f"({nbytes} bytes) but {present} bytes follow")
    if nbytes < present:
        raise _Invalid(f"field '{key}' holds {present} bytes after its header, which "
                       f"announces shape {shape} ({nbytes} bytes)")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
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


def _read_json(zf, key, max_bytes):
    """The JSON object stored as the text field `key`."""
    text = _read_string(zf, key, max_bytes)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _Invalid(f"field '{key}' is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _Invalid(f"field '{key}' must hold a JSON object; got {type(value).__name__}")
    return value


def _config_of_header(header):
    """The Network settings and the optimizer's (kind, step) or None, from the 'config'
    field of a format-2 file, every key and type checked."""
    fmt = header.get("format")
    if fmt != FORMAT:
        raise _Invalid(f"it is not a bpfast model file (format {fmt!r}, expected {FORMAT!r})")
    keys = header.keys()
    missing = unknown = ()
    if keys != _HEADER_KEYS and keys != _HEADER_KEYS_WITH_STATE:
        missing = sorted(_HEADER_KEYS - keys)
        unknown = sorted(keys - _HEADER_KEYS_WITH_STATE)
    if missing or unknown:
        raise _Invalid(f"field '{_CONFIG}' " + (f"lacks {missing}" if missing else "")
                       + (" and " if missing and unknown else "")
                       + (f"holds unknown keys {unknown}" if unknown else ""))
    for key in _CONFIG_STRINGS:
        if not isinstance(header[key], str):
            raise _Invalid(f"field '{_CONFIG}': '{key}' must be a string; got "
                           f"{type(header[key]).__name__} {header[key]!r}")
    sizes = header["sizes"]
    if (not isinstance(sizes, list) or len(sizes) < 2 or len(sizes) > _MAX_LAYERS
            or not all(type(s) is int for s in sizes)):
        raise _Invalid(f"field '{_CONFIG}': 'sizes' must be a list of 2 to {_MAX_LAYERS} "
                       f"integers; got {str(sizes)[:200]}")
    config = {key: header[key] for key in _CONFIG_STRINGS}
    config["sizes"] = sizes
    kind = header.get(_STATE_KIND)
    if kind is None and _STATE_STEP not in header:
        return config, None
    step = header.get(_STATE_STEP)
    if kind not in optim.NAMES:
        raise _Invalid(f"field '{_CONFIG}': '{_STATE_KIND}' must be one of {optim.NAMES}; "
                       f"got {kind!r}")
    if type(step) is not int or step < 0:
        raise _Invalid(f"field '{_CONFIG}': '{_STATE_STEP}' must be an integer >= 0; "
                       f"got {step!r}")
    return config, (kind, step)


def _config_of_fields(zf):
    """The same from the separate fields of a format-1 file (bpfast-network-1)."""
    fmt = _read_string(zf, "format")
    if fmt != FORMAT_1:
        raise _Invalid(f"it is not a bpfast model file (format {fmt!r}, expected {FORMAT!r} "
                       f"or {FORMAT_1!r})")
    config = {key: _read_string(zf, key) for key in _CONFIG_STRINGS}
    config["sizes"] = [int(s) for s in _read_member(zf, "sizes", _SIZES_BYTES, _check_sizes)]
    if _STATE_KIND + ".npy" not in zf.NameToInfo:
        return config, None
    kind = _read_string(zf, _STATE_KIND)
    if kind not in optim.NAMES:
        raise _Invalid(f"field '{_STATE_KIND}' must be one of {optim.NAMES}; got {kind!r}")

    def check_step(shape, dtype):
        if dtype.kind not in "iu" or shape != ():
            raise _Invalid(f"field '{_STATE_STEP}' must be an integer; got {dtype} {shape}")

    step = int(_read_member(zf, _STATE_STEP, 8, check_step)[()])
    if step < 0:
        raise _Invalid(f"field '{_STATE_STEP}' is negative: {step}")
    return config, (kind, step)


def _read_fields(zf, with_metadata):
    """The Network settings, the parameters, the optimizer state and (if wanted) the
    metadata of an open .npz of either format."""
    if _CONFIG + ".npy" in zf.NameToInfo:
        config, optimizer = _config_of_header(_read_json(zf, _CONFIG, _CONFIG_BYTES))
    else:
        config, optimizer = _config_of_fields(zf)
    sizes = config["sizes"]
    if any(s < 1 for s in sizes):
        raise _Invalid(f"field 'sizes' holds a width < 1: {sizes}")
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

    def check_state(shape, dtype):
        if dtype.kind != "f" or dtype.itemsize != want.itemsize or shape != (2 * n_params,):
            raise _Invalid(f"field '{_STATE}' ({dtype}, shape {shape}) does not fit the "
                           f"parameters (expected shape ({2 * n_params},))")

    params = _read_member(zf, "params", n_params * want.itemsize, check_params)
    state = None
    if optimizer is not None:
        buffer = _read_member(zf, _STATE, 2 * n_params * want.itemsize, check_state)
        buffer = buffer.astype(want, copy=False)        # native byte order
        if not np.isfinite(buffer).all():
            raise _Invalid(f"field '{_STATE}' contains NaN or infinity")
        state = (buffer, *optimizer)
    metadata = None
    if with_metadata and _METADATA + ".npy" in zf.NameToInfo:
        metadata = _read_json(zf, _METADATA, 4 * MAX_METADATA_CHARS)
    return config, params, state, metadata


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

    Files of the previous format (``bpfast-network-1``, one field per setting) load too.

    Raises FileNotFoundError for a missing file (and the other OSErrors of
    opening it, such as PermissionError), and ValueError naming the path and
    the reason for a file that is truncated, corrupt or not a bpfast model.
    """
    choice(backend, "backend", BACKENDS)
    if not isinstance(with_metadata, bool):
        raise TypeError(f"with_metadata must be True or False; got {with_metadata!r}")
    path = os.fsdecode(os.fspath(path))     # bytes paths too (surrogate-escaped)
    with open(path, "rb", buffering=0) as f:
        try:
            with _archive(f) as source, zipfile.ZipFile(source) as zf:
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
        # Validated as Network(**config) and set_parameters(params) would (the
        # parameters finite after the cast to the network's dtype, in native byte order).
        net = Network._from_parameters(params, **config, backend=backend, name="field 'params'")
        if state is not None:
            net._state[...], net._state_kind, net._state_step = state
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {path!r}: the model it describes is invalid ({exc})") from exc
    return (net, metadata) if with_metadata else net
