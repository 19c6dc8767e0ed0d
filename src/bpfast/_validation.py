"""Checks at the Python boundary: every argument is validated and converted once here.

Kernels trust their arguments, so everything that could make them read out of
bounds or compute a silently wrong number is refused here, with a message that
names the argument, what was expected and what was given.
"""
import math
import numbers

import numpy as np

from bpfast import _kernels

FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def as_dtype(dtype):
    """np.dtype for 'float32'/'float64' (or the NumPy types); anything else is an error."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64'; got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt


def _numeric_array(x, name):
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be an array of real numbers; could not convert it ({exc})") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real; got a complex array ({arr.dtype})")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")
    return arr


def result_dtype(*arrays):
    """float32 if every array is float32 (or narrower float), else float64."""
    dt = np.result_type(*arrays, np.float32)
    return np.dtype(np.float32) if dt == np.float32 else np.dtype(np.float64)


def as_matrix(x, name, dtype, width=None, rows=None, allow_1d=False):
    """x as a C-contiguous 2-D array of `dtype`, finite, non-empty, converted at most once.

    width: required number of columns; rows: required number of rows.
    allow_1d: a 1-D input of length width is taken as one row (a single sample).
    """
    # The fast path: already what the kernels need, checked in a few attribute reads.
    if not (type(x) is np.ndarray and x.dtype == dtype and x.ndim == 2 and x.flags.c_contiguous):
        arr = _numeric_array(x, name)
        if arr.ndim == 1 and allow_1d and width is not None and arr.shape[0] == width:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            want = f"(n, {width})" if width is not None else "(n, m)"
            raise ValueError(f"{name} must be 2-D of shape {want}; got {arr.ndim}-D shape {arr.shape}")
        x = np.ascontiguousarray(arr, dtype=dtype)
    n, m = x.shape
    if width is not None and m != width:
        raise ValueError(f"{name} must have {width} columns (shape (n, {width})); got shape {x.shape}")
    if n == 0 or m == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); at least one row and column are needed")
    if rows is not None and n != rows:
        raise ValueError(f"{name} has {n} rows but {rows} were expected (one per input row); "
                         f"got shape {x.shape}")
    if not _kernels.is_finite(x.reshape(-1)):
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def as_vector(x, name, dtype, length):
    """x as a C-contiguous finite 1-D array of `dtype` and `length` elements."""
    arr = _numeric_array(x, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name} must be 1-D of shape ({length},); got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not _kernels.is_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def positive_float(x, name):
    """A finite float > 0 (learning rates)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(x).__name__}")
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {x!r}")
    return x


def nonnegative_float(x, name, upper=None):
    """A finite float >= 0 (and < upper when given)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(x).__name__}")
    x = float(x)
    if not (math.isfinite(x) and x >= 0 and (upper is None or x < upper)):
        bound = f" and < {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be a finite number >= 0{bound}; got {x!r}")
    return x


def positive_int(x, name):
    """An int >= 1 (epochs, batch sizes, layer widths)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(x).__name__} {x!r}")
    if x < 1:
        raise ValueError(f"{name} must be >= 1; got {x}")
    return int(x)
