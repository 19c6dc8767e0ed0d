"""The loop of ``Network.fit``: native calls of one or more epochs and the Python work
between them (History, schedules, validation, early stopping, callbacks, progress bar).

The epochs themselves run in the engine (``_engine.Engine.epochs`` or its reference
twin), one native call per chunk of epochs; Python comes back only where something must
happen between epochs.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from bpfast import _engine
from bpfast._validation import (as_bool, choice, missing_optional, nonnegative_float,
                                positive_float, positive_int)

LR_SCHEDULES = ("constant", "invscaling", "step")
DIVERGED_RATIO = 1e6      # an epoch loss this many times the first epoch's marks divergence
ORDER_ENTRIES = 1 << 22   # at most this many sample indices (32 MB) handed over per call


@dataclass
class History:
    """What ``Network.fit`` measured, one entry per completed epoch."""
    loss: List[float] = field(default_factory=list)       # training loss (+ L2 term)
    val_loss: List[float] = field(default_factory=list)   # with validation_data only
    lr: List[float] = field(default_factory=list)         # learning rate of each epoch
    n_updates: int = 0                                    # weight updates made in total
    diverged: bool = False                                # see Network.fit, "Divergence"
    best_epoch: int = -1                                  # with early_stopping: from 0

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def plot(self, path=None):
        """Loss (and val_loss) per epoch, learning rate on a right axis; needs matplotlib.

        Returns the Axes; with ``path``, also saves the figure there as a PNG.
        """
        from bpfast._plot import plot_history
        return plot_history(self, path)


def schedule_of(lr, lr_schedule, power_t, step_size, gamma):
    """The learning rate of epoch e (from 0), as a function, every value checked."""
    if callable(lr_schedule):
        def schedule(epoch):
            return positive_float(lr_schedule(epoch), f"lr_schedule({epoch})")
        return schedule
    choice(lr_schedule, "lr_schedule", LR_SCHEDULES, "a callable")
    if lr_schedule == "invscaling":
        power_t = nonnegative_float(power_t, "power_t")
        return _checked(lambda epoch: lr / (epoch + 1) ** power_t,
                        f"lr_schedule='invscaling' with lr={lr:g} and power_t={power_t:g}")
    if lr_schedule == "step":
        step_size = positive_int(step_size, "step_size")
        gamma = positive_float(gamma, "gamma")
        return _checked(lambda epoch: lr * gamma ** (epoch // step_size),
                        f"lr_schedule='step' with lr={lr:g} and gamma={gamma:g}")
    return lambda epoch: lr


def _checked(rate, description):
    """A schedule whose every learning rate is checked: a finite number > 0."""
    def schedule(epoch):
        try:
            value = rate(epoch)
        except OverflowError:
            value = float("inf")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{description} gives the learning rate {value!r} at epoch "
                             f"{epoch}; choose parameters that keep it a finite number > 0")
        return value
    return schedule


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved by min_delta for `patience` epochs,
    and (restore_best) put back the parameters of the best epoch at the end."""
    patience: int
    min_delta: float
    restore_best: bool
    best: float = math.inf
    best_epoch: int = -1
    best_params: Optional[np.ndarray] = None
    waited: int = 0

    @classmethod
    def of(cls, early_stopping, patience, min_delta, restore_best):
        if not as_bool(early_stopping, "early_stopping"):
            return None
        return cls(positive_int(patience, "patience"), nonnegative_float(min_delta, "min_delta"),
                   as_bool(restore_best, "restore_best"))

    def should_stop(self, epoch, value, params) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            if self.restore_best:
                self.best_params = params.copy()
            return False
        self.waited += 1
        return self.waited >= self.patience


def run(net, X, Y, epochs, batch_size, shuffle, seed, opt, update, schedule, sample_weight,
        validation, callback, progress, early, per_epoch_schedule, history, threads=-1):
    """fit's loop (the caller holds the Network's lock and has validated everything)."""
    bar = _progress_bar(epochs) if progress else None
    # Without per-epoch Python work, all epochs run in one native call.
    per_epoch = (callback is not None or validation is not None or bar is not None
                 or per_epoch_schedule or early is not None)
    if seed is None:
        seed = int(net._rng.integers(0, 2 ** 63))
    n_rows = Y.shape[0]
    net._engine.seed(seed, n_rows)
    # A callable shuffle gives each epoch's order, handed over a few epochs at a time.
    most = max(1, ORDER_ENTRIES // max(n_rows, 1)) if callable(shuffle) else epochs
    epoch = 0
    chunk = 1 if per_epoch else epochs      # epochs in the next native call
    try:
        while epoch < epochs:
            lrs = [schedule(e) for e in range(epoch, min(epoch + chunk, epoch + most, epochs))]
            orders = None
            if callable(shuffle):
                orders = np.stack([sample_order(shuffle, e, n_rows)
                                   for e in range(epoch, epoch + len(lrs))])
            update["step"] = net._state_step
            losses, n_updates, diverged, interrupted, step = net._engine.epochs(
                X, Y, batch_size, bool(shuffle), np.array(lrs), sample_weight, update, threads,
                orders=orders)
            net._state_step = step
            history.n_updates += n_updates
            history.loss.extend(float(loss) for loss in losses)
            history.lr.extend(lrs[:len(losses)])
            epoch += len(losses)
            if interrupted:
                raise _engine.take_pending_exception() or KeyboardInterrupt()
            if diverged:
                history.diverged = True
                net._forget_state()         # not finite either; a later fit starts afresh
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1} (of {epochs}) with "
                    f"lr={lrs[len(losses)]:g}: the loss or the parameters stopped being "
                    f"finite; the parameters were restored to the start of that epoch. "
                    f"Try a smaller lr.")
            _warn_if_diverging(history)
            if validation is not None:
                history.val_loss.append(net._loss_of(net._outputs(validation[0]), validation[1]))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history.loss[-1]:.4g}")
            if early is not None:
                monitored = history.val_loss[-1] if validation is not None else history.loss[-1]
                if early.should_stop(epoch - 1, monitored, net._params):
                    break
            if callback is not None:
                verdict = callback(epoch - 1, history)
                if verdict is False or verdict is np.False_:
                    break
                if validation is None and bar is None and early is None:
                    chunk = _epochs_until_next_call(verdict)
    finally:
        if bar is not None:
            bar.close()
    if early is not None:
        history.best_epoch = early.best_epoch
        if early.best_params is not None:
            net._params[...] = early.best_params
    return history


def sample_order(shuffle, epoch: int, n_rows: int) -> np.ndarray:
    """``shuffle(epoch)``, checked to be an ordering of the rows 0..n_rows-1, as intp."""
    order = np.asarray(shuffle(epoch))
    if order.dtype.kind not in "iu":
        raise TypeError(f"shuffle({epoch}) must return integer row indices; got an array "
                        f"of {order.dtype}")
    if order.shape != (n_rows,):
        raise ValueError(f"shuffle({epoch}) must return {n_rows} row indices (one per row); "
                         f"got shape {order.shape}")
    order = order.astype(np.intp, copy=True)     # the engine reads it while Python runs on
    if n_rows and (order.min() < 0 or order.max() >= n_rows
                   or not (np.bincount(order, minlength=n_rows) == 1).all()):
        raise ValueError(f"shuffle({epoch}) must return each row index 0..{n_rows - 1} "
                         f"exactly once")
    return order


def _warn_if_diverging(history) -> None:
    """Mark and warn, once, when the loss has grown far past the first epoch's."""
    if history.diverged or len(history.loss) < 2:
        return
    first, last = history.loss[0], history.loss[-1]
    if last > DIVERGED_RATIO * first:
        history.diverged = True
        warnings.warn(f"training is diverging: the loss grew from {first:.4g} (epoch 1) to "
                      f"{last:.4g} (epoch {len(history.loss)}); try a smaller lr or scaled "
                      f"data (History.diverged is set)", RuntimeWarning, stacklevel=5)


def _epochs_until_next_call(verdict) -> int:
    """What a fit callback's return value (other than False) asks for: 1, or its int k."""
    if isinstance(verdict, numbers.Integral) and not isinstance(verdict, (bool, np.bool_)):
        if verdict < 1:
            raise ValueError(f"callback returned {verdict!r}: return False to stop, or an int "
                             f">= 1 of epochs to run before the next call")
        return int(verdict)
    return 1


def _progress_bar(total):
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise missing_optional("tqdm", "progress=True", "peers", exc) from exc
    return tqdm(total=total, unit="epoch")


def validation_pair(net, validation_data):
    """fit's validation_data, validated for `net`: (X_val, Y_val) converted, or None."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, Y_val)")
    Xv = net._X(validation_data[0], "validation_data[0]")
    return Xv, net._Y(validation_data[1], Xv.shape[0], "validation_data[1]")
