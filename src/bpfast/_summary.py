"""Network.summary(): a Keras-like text table of the layers, their parameters and the state."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from bpfast._layout import param_layout

#: The optimizer state buffers a Network may hold, as (attribute, what its values are).
#: Each is laid out like the parameters; summary() reports every one that exists and
#: holds a nonzero value. An optimizer with state of its own adds its buffer here.
OPTIMIZER_STATE: List[Tuple[str, str]] = [("_velocity", "momentum velocities")]

_HEADER = ("Layer", "Input -> output", "Activation", "Params", "W + b")
_RIGHT_ALIGNED = {3, 4}


def format_bytes(n: int) -> str:
    """'512 bytes', '814,160 bytes = 795.08 KiB', '1,572,864 bytes = 1.50 MiB'."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n:,} bytes = {n / size:.2f} {unit}"
    return f"{n:,} bytes"


def layer_rows(net) -> List[Tuple[str, str, str, str, str]]:
    """One row per layer: name, shapes, activation, parameter count, and W + b."""
    rows = []
    layers = param_layout(net.sizes)[0]
    for i, slots in enumerate(layers):
        activation = net.output_activation if i == len(layers) - 1 else net.activation
        n_w, n_b = slots.b - slots.w, slots.end - slots.b
        rows.append((f"dense_{i}", f"(None, {slots.n_in}) -> (None, {slots.n_out})", activation,
                     f"{n_w + n_b:,}", f"{n_w:,} + {n_b:,}"))
    return rows


def optimizer_state_lines(net) -> List[str]:
    """'momentum velocities: N values' for each state buffer that holds anything."""
    lines = []
    for attribute, what in OPTIMIZER_STATE:
        buffer = getattr(net, attribute, None)
        if buffer is not None and np.any(buffer != 0):
            lines.append(f"{what}: {np.size(buffer):,} values")
    return lines


def _table(rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]

    def line(row):
        cells = [cell.rjust(w) if c in _RIGHT_ALIGNED else cell.ljust(w)
                 for c, (cell, w) in enumerate(zip(row, widths))]
        return "   ".join(cells).rstrip()
    rule = "=" * (sum(widths) + 3 * (len(widths) - 1))
    return [line(rows[0]), rule, *(line(row) for row in rows[1:]), rule]


def summarize(net) -> str:
    """The text of ``net.summary()``."""
    with net._exclusive():          # one consistent view, like every other Network method
        n_params = param_layout(net.sizes)[1]
        n_bytes = n_params * net.dtype.itemsize
        state = optimizer_state_lines(net)
        lines = [f"Network: {' -> '.join(str(s) for s in net.sizes)}",
                 *_table([_HEADER, *layer_rows(net)]),
                 f"Total params: {n_params:,} ({format_bytes(n_bytes)} as {net.dtype.name})",
                 f"dtype: {net.dtype.name}   backend: {net.backend}   loss: {net.loss}",
                 "Optimizer state: " + ("; ".join(state) if state else "none")]
    return "\n".join(lines)
