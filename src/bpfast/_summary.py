"""Network.summary(): a Keras-like text table of the layers, their parameters and the state."""
from __future__ import annotations

from typing import List, Sequence, Tuple


from bpfast._layout import param_layout

#: What each optimizer keeps per parameter, in the two halves of Network._state.
STATE_HALVES = {"sgd": ("momentum velocities", None), "adam": ("first moments", "second moments"),
                "adamw": ("first moments", "second moments"),
                "rprop": ("step sizes", "previous gradients")}

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
    """The optimizer whose state the Network holds, its step count and its buffers
    ('sgd, 8 steps', 'momentum velocities: 21 values'); nothing when it holds none."""
    kind = getattr(net, "_state_kind", None)
    if kind is None or not net._state.any():       # plain SGD keeps none
        return []
    half = net._state.shape[0] // 2
    first, second = STATE_HALVES[kind]
    parts = [f"{kind}, {net._state_step:,} steps", f"{first}: {half:,} values"]
    if second is not None:
        parts.append(f"{second}: {half:,} values")
    return parts


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
