"""Where each layer's parameters lie in the flat buffer: the one definition of the layout.

All parameters of a Network live in one flat array, layer after layer, each
layer's weights (row-major, shape ``(n_in, n_out)``) followed by its biases::

    [ W0 (n0*n1) | b0 (n1) | W1 (n1*n2) | b1 (n2) | ... ]

The gradients and the optimizer's per-parameter state use the same layout, so
one offset addresses a parameter, its gradient and its state.
"""
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np


class LayerSlots(NamedTuple):
    """Layer l's place in the flat buffer: W at [w, b), its biases at [b, end)."""
    n_in: int
    n_out: int
    w: int
    b: int
    end: int


def param_layout(sizes: Sequence[int]) -> Tuple[List[LayerSlots], int]:
    """The slots of every layer of a network of these widths, and the parameter count."""
    layers, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        n_in, n_out = int(n_in), int(n_out)
        layers.append(LayerSlots(n_in, n_out, off, off + n_in * n_out, off + n_in * n_out + n_out))
        off += n_in * n_out + n_out
    return layers, off


def aligned_zeros(size, dtype, align=64):
    """``np.zeros(size, dtype)`` starting on an `align`-byte boundary: the kernels' vector
    loads of a layer's weights then split no cache line where the layout allows."""
    dtype = np.dtype(dtype)
    spare = align // dtype.itemsize
    buffer = np.zeros(size + spare, dtype=dtype)
    start = (-buffer.ctypes.data % align) // dtype.itemsize
    return buffer[start:start + size]
