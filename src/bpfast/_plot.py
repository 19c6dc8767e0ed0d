"""History.plot(): the loss curves of a fit, with the learning rate on a second axis."""
from __future__ import annotations

import os

from bpfast._validation import missing_optional

#: Size of the figure: 8 x 4.5 inches at 100 dots per inch, a 800 x 450 pixel PNG.
FIGSIZE = (8.0, 4.5)
DPI = 100


def _import_matplotlib():
    try:
        import matplotlib
        import matplotlib.figure
    except ImportError as exc:
        raise missing_optional("matplotlib", "History.plot", "peers", exc) from exc
    return matplotlib


def _figure(matplotlib, offscreen):
    """A figure: pyplot's (shown by plt.show() or a notebook), or an off-screen Agg one."""
    if offscreen:
        # Drawn by the Agg renderer whatever pyplot's backend is, so saving works without a
        # display, and the figure stays out of pyplot's list of open figures.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        figure = matplotlib.figure.Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(figure)
        return figure
    import matplotlib.pyplot as plt
    return plt.figure(figsize=FIGSIZE, dpi=DPI)


def plot_history(history, path=None):
    """Plot ``history.loss`` (and ``val_loss``) per epoch, the learning rate on a right axis.

    Returns the loss Axes (the learning rate's is ``ax.right_ax``). Without ``path``
    the figure is a pyplot figure, shown by ``plt.show()`` or a notebook; with a
    path it is drawn off-screen (Agg, no display needed) and saved there as a PNG
    of 800 x 450 pixels.
    """
    if path is not None:
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            raise TypeError(f"path must be a str, bytes, os.PathLike or None; "
                            f"got {type(path).__name__}") from None
    if not history.loss:
        raise ValueError("history has no epochs to plot (its loss list is empty)")
    matplotlib = _import_matplotlib()
    figure = _figure(matplotlib, offscreen=path is not None)
    ax = figure.add_subplot()
    epochs = range(1, len(history.loss) + 1)
    lines = ax.plot(epochs, history.loss, color="tab:blue", label="loss")
    if history.val_loss:
        lines += ax.plot(range(1, len(history.val_loss) + 1), history.val_loss,
                         color="tab:orange", label="val_loss")
    # Losses often fall by orders of magnitude: a log scale when every value allows one.
    if min(history.loss + history.val_loss) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    if history.lr:
        right = ax.twinx()
        lines += right.plot(range(1, len(history.lr) + 1), history.lr, color="tab:green",
                            linestyle="--", drawstyle="steps-mid", label="learning rate")
        right.set_ylabel("learning rate")
        right.set_ylim(bottom=0, top=max(history.lr) * 1.1)
        ax.right_ax = right
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    ax.set_title(f"{len(history.loss)} epochs, {history.n_updates:,} updates")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, format="png")
    return ax
