"""Checks at the Python boundary: every argument is validated and converted once here.

Kernels trust their arguments, so everything that could make them read out of
bounds or compute a silently wrong number is refused here, with a message that
names the argument, what was expected and what was given.

Conventions: a value of the wrong *type* raises TypeError, a value of the right
type but out of range (or of the wrong shape) raises ValueError.
"""
import math
import numbers

import numpy as np

from bpfast import _kernels

FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}

# BLAS takes its dimensions as C ints: no width and no number of rows may exceed this.
MAX_DIM = 2 ** 31 - 1
MAX_SEED = 2 ** 64 - 1


def as_dtype(dtype):
    """np.dtype for 'float32'/'float64' (or the NumPy types); anything else is an error.

    A string that is not a float32/float64 name raises ValueError; None or an
    object that is no dtype at all raises TypeError.
    """
    if dtype is None:
        # np.dtype(None) would silently mean float64.
        raise TypeError("dtype must be 'float32' or 'float64'; got None")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        cls = ValueError if isinstance(dtype, str) else TypeError
        raise cls(f"dtype must be 'float32' or 'float64'; got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt


def _numeric_array(x, name):
    """x as an ndarray of real numbers (bool, int or float), not yet converted to a dtype."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            # Ragged nested lists raise ValueError in NumPy; keep the type, name the argument.
            raise type(exc)(f"{name} must be a rectangular array of real numbers; "
                            f"could not convert it ({exc})") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real; got a complex array ({arr.dtype})")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")
    return arr


def result_dtype(*arrays):
    """float32 if every array is float32 (or narrower float), else float64."""
    dt = np.result_type(*arrays, np.float32)
    return np.dtype(np.float32) if dt == np.float32 else np.dtype(np.float64)


# The kernel's finiteness check, specialised per dtype once: calling the fused function
# makes Cython pick the specialisation from the argument on every call, which costs as
# much as checking a row of 784 values.
_IS_FINITE = {np.dtype(np.float32): _kernels.is_finite["float"],
              np.dtype(np.float64): _kernels.is_finite["double"]}


def all_finite(x):
    """True when the array x (any layout) holds no NaN or infinity."""
    if x.size == 0:
        return True
    is_finite = _IS_FINITE.get(x.dtype)
    # flags.carray: C-contiguous, aligned and writeable (the kernel's typed memoryview
    # refuses read-only buffers); ravel() of such an array is a view.
    if is_finite is not None and x.flags.carray:
        return bool(is_finite(x.ravel()))
    return bool(np.isfinite(x).all())


def _kernel_ready(x, dtype, writeable):
    """True when x can go to the kernels as it is: C-contiguous, aligned, native `dtype`."""
    if type(x) is not np.ndarray or x.dtype != dtype:
        return False
    flags = x.flags         # one flags object, not one per attribute read
    return flags.carray if writeable else flags.c_contiguous and flags.aligned


def _convert(arr, dtype, writeable):
    """One conversion to a C-contiguous aligned array of dtype (a copy only when needed)."""
    if _kernel_ready(arr, dtype, writeable):
        return arr
    with np.errstate(over="ignore", invalid="ignore"):      # overflow is reported as inf below
        out = np.require(arr, dtype=dtype, requirements=["C", "A"])
    if type(out) is not np.ndarray:
        out = out.view(np.ndarray)
    if writeable and not out.flags.writeable:
        out = out.copy()
    return out


def _not_finite_message(name, src_dtype, dtype):
    narrowed = src_dtype.kind == "f" and src_dtype.itemsize > dtype.itemsize
    if narrowed or src_dtype.kind in "iu":
        return f"{name} contains NaN or infinity (or values too large for {dtype.name})"
    return f"{name} contains NaN or infinity"


def as_matrix(x, name, dtype, width=None, rows=None, allow_1d=False, column_1d=False,
              writeable=True, check_finite=True):
    """x as a C-contiguous 2-D array of `dtype`, finite, non-empty, converted at most once.

    width: required number of columns; rows: required number of rows.
    allow_1d: a 1-D input of length width is taken as one row (a single sample).
    column_1d: a 1-D input is taken as one column (targets of a single output).
    writeable: the result must be writeable (the typed memoryviews of the kernels
        refuse read-only buffers); a read-only input is then copied.
    check_finite: False leaves the finiteness check to the caller (predict checks the
        first layer's product instead, see Network._outputs).
    Shapes are checked before anything is converted or copied.
    """
    ready = type(x) is np.ndarray and x.ndim == 2 and _kernel_ready(x, dtype, writeable)
    if ready:
        arr = x   # the fast path: already what the kernels need
    else:
        arr = _numeric_array(x, name)
        if arr.ndim == 1:
            if column_1d:
                arr = arr.reshape(-1, 1)
            elif allow_1d and width is not None and arr.shape[0] == width:
                arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            want = f"(n, {width})" if width is not None else "(n, m)"
            raise ValueError(f"{name} must be 2-D of shape {want}; got {arr.ndim}-D shape {arr.shape}")
    n, m = arr.shape
    if width is not None and m != width:
        raise ValueError(f"{name} must have {width} columns (shape (n, {width})); got shape {arr.shape}")
    if n == 0 or m == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one row and column are needed")
    if rows is not None and n != rows:
        raise ValueError(f"{name} has {n} rows but {rows} were expected (one per input row); "
                         f"got shape {arr.shape}")
    if n > MAX_DIM or m > MAX_DIM:
        raise ValueError(f"{name} has shape {arr.shape}; at most {MAX_DIM} rows and columns are "
                         f"supported (split it into batches)")
    if ready:               # nothing to convert: only the finiteness check is left
        if check_finite and not all_finite(arr):
            raise ValueError(_not_finite_message(name, arr.dtype, dtype))
        return arr
    if not check_finite:
        return _convert(arr, dtype, writeable)
    return _finite_in(arr, name, dtype, writeable)


def _finite_in(arr, name, dtype, writeable):
    """arr converted once to dtype, then checked finite (after the cast: 1e300 is finite
    in float64 and not in float32)."""
    out = _convert(arr, dtype, writeable)
    if not all_finite(out):
        raise ValueError(_not_finite_message(name, arr.dtype, dtype))
    return out


def as_parameters(x, name, dtype, shape):
    """x as parameter values of `shape` in `dtype`, checked finite after the cast (1e300 is
    finite in float64 and infinite in float32)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers; got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(dtype, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(_not_finite_message(name, arr.dtype, dtype))
    return out


def is_sparse(x):
    """True for a scipy.sparse matrix or array (scipy is a dependency, imported lazily)."""
    module = type(x).__module__
    if not module.startswith("scipy.sparse"):
        return False
    import scipy.sparse
    return scipy.sparse.issparse(x)


def as_csr(x, name, dtype, width):
    """A scipy.sparse X as CSR arrays (values in dtype, intp column indices, intp row
    starts; duplicates summed), checked like a dense X: width, rows, finite values."""
    csr = x.tocsr(copy=True)
    if csr.ndim != 2 or csr.shape[1] != width:
        raise ValueError(f"{name} must have {width} columns (shape (n, {width})); got shape "
                         f"{csr.shape}")
    if csr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {csr.shape}); at least one row is needed")
    if csr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {csr.dtype}")
    csr.sum_duplicates()
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.ascontiguousarray(csr.data, dtype=dtype)
    if not all_finite(values):
        raise ValueError(_not_finite_message(name, csr.dtype, np.dtype(dtype)))
    return (csr.shape[0], values, np.ascontiguousarray(csr.indices, dtype=np.intp),
            np.ascontiguousarray(csr.indptr, dtype=np.intp))


def one_hot_labels(labels, n_classes, name="Y"):
    """Integer class labels in [0, n_classes) as rows of an identity matrix."""
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise ValueError(f"{name} holds class label {bad}; labels must be in [0, {n_classes}) "
                         f"for a network of {n_classes} outputs")
    return np.eye(n_classes)[labels]


def as_sample_weight(x, n, dtype, name="sample_weight", all_zero=False):
    """Sample weights: one finite number >= 0 per row, in dtype; not all 0 unless
    `all_zero` (one MPI rank's share, whose rows then do not count)."""
    w = as_vector(x, name, dtype, n)
    if (w < 0).any():
        raise ValueError(f"{name} must be >= 0; got {w[w < 0][0]!r} at row "
                         f"{int(np.argmax(w < 0))}")
    if not all_zero and not w.any():
        raise ValueError(f"{name} is all zeros: no row would count")
    return w


def as_vector(x, name, dtype, length, writeable=True):
    """x as a C-contiguous finite 1-D array of `dtype` and `length` elements."""
    arr = _numeric_array(x, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name} must be 1-D of shape ({length},); got shape {arr.shape}")
    return _finite_in(arr, name, dtype, writeable)


def _real(x, name):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(x).__name__}")
    try:
        return float(x)
    except OverflowError:       # an int too large for a float
        return math.inf if x > 0 else -math.inf


def positive_float(x, name):
    """A finite float > 0 (learning rates)."""
    x = _real(x, name)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {x!r}")
    return x


def nonnegative_float(x, name, upper=None):
    """A finite float >= 0 (and < upper when given)."""
    x = _real(x, name)
    if not (math.isfinite(x) and x >= 0 and (upper is None or x < upper)):
        bound = f" and < {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be a finite number >= 0{bound}; got {x!r}")
    return x


def positive_int(x, name, upper=None):
    """An int >= 1 (and <= upper when given): epochs, batch sizes, layer widths."""
    # A plain int in range returns at once: isinstance against the numbers.Integral ABC
    # costs most of a microsecond, which predict(x, n_threads=1) of one row would pay.
    if type(x) is int and x >= 1 and (upper is None or x <= upper):
        return x
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(x).__name__} {x!r}")
    if x < 1:
        raise ValueError(f"{name} must be >= 1; got {x}")
    if upper is not None and x > upper:
        raise ValueError(f"{name} must be <= {upper}; got {x}")
    return int(x)


def thread_count(x, name="n_threads"):
    """None (every CPU this process may use) or an int >= 1 (at most 64: the team's size)."""
    return None if x is None else positive_int(x, name, upper=64)


def as_bool(x, name):
    """A bool (or NumPy bool): flags such as shuffle and nesterov; no truthy strings."""
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(x).__name__} {x!r}")
    return bool(x)


def seed_value(x, name="seed"):
    """None or an int in [0, 2**64): a seed for NumPy's and the native generators."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative int or None; got {type(x).__name__} {x!r}")
    if not 0 <= x <= MAX_SEED:
        raise ValueError(f"{name} must be in [0, 2**64); got {x}")
    return int(x)


def missing_optional(package, needed_for, extra, exc):
    """The ImportError for an optional package that is not installed: which extra of
    bpfast brings it. (The import itself stays in the module that needs it.)"""
    return ImportError(f'{needed_for} needs {package}: pip install "bpfast[{extra}]" '
                       f"(or pip install {package}). The import failed with: {exc}")


def choice(x, name, options, alternative=None):
    """One of the strings in `options` (the messages also name an `alternative`, such as
    'a callable', that the caller accepts before asking)."""
    want = f"one of {tuple(options)}" + (f" or {alternative}" if alternative else "")
    if not isinstance(x, str):
        raise TypeError(f"{name} must be a string, {want}; got {type(x).__name__}")
    if x not in options:
        raise ValueError(f"{name} must be {want}; got {x!r}")
    return x
