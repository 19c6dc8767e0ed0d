"""Data-parallel training: one Network per MPI rank, each on its own shard of the rows.

Every rank runs the same script::

    from mpi4py import MPI
    import bpfast, bpfast.distributed
    comm = MPI.COMM_WORLD
    X, Y = my_shard(comm.Get_rank(), comm.Get_size())     # rows of this rank only
    net = bpfast.Network([784, 128, 10], ...)
    history = bpfast.distributed.fit(net, X, Y, comm, epochs=10, batch_size=64)

and launches it with ``mpiexec -n 4 python train.py``. Step ``i`` of an epoch trains on
global batch ``i``: every rank's batch ``i`` (``batch_size`` rows each), concatenated in
rank order. Each rank computes its batch's gradient; one ``Allreduce`` of the gradient
buffer, weighted so that the sum is the gradient of the global batch's loss, gives every
rank the same gradient, and every rank takes the same optimizer step. The ranks' Networks
therefore stay bit-identical, and training on R ranks equals training one process on the
concatenated global batches (``batch_size * R`` rows each) up to the order of summation.

``sync_every=k > 1`` is local SGD: each rank takes k steps on its own gradients, then the
parameters and the optimizer state are averaged over the ranks (one Allreduce per k
steps, and at the end of every epoch).

``comm`` is an ``mpi4py`` communicator, or any object with its ``Get_rank``,
``Get_size``, ``Allreduce``, ``Bcast``, ``allgather`` and ``bcast`` methods.
"""
from __future__ import annotations

import math
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Optional

import numpy as np

from bpfast import _fitting, optim
from bpfast._validation import as_bool, as_sample_weight, positive_int, seed_value
from bpfast.network import History, Network

# The metadata key of a checkpoint's run state in a bpfast.save file.
CHECKPOINT_KEY = "bpfast.distributed"
# Allreduce's "the receive buffer is the send buffer" when mpi4py is not imported (and so
# the communicator is none of its); MPI.IN_PLACE when it is.
IN_PLACE = object()
# What a checkpoint's run state holds (History as a dict of its fields).
_RUN_KEYS = ("epoch", "epochs", "seed", "world_size", "batch_size", "shuffle", "sync_every",
             "history")
_COMM_METHODS = ("Get_rank", "Get_size", "Allreduce", "Bcast", "allgather", "bcast")


class RankError(ValueError):
    """Another rank refused its arguments (or failed), so this rank stops too."""


def fit(net, X, Y, comm, epochs: int = 10, batch_size: int = 32, lr: float = 0.1,
        shuffle: bool = True, seed: Optional[int] = None, optimizer="sgd",
        momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
        betas=(0.9, 0.999), eps: float = 1e-8, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
        sample_weight=None, validation_data=None, sync_every: int = 1, checkpoint=None,
        checkpoint_every: int = 1, resume=None, clip_norm: Optional[float] = None) -> History:
    """Train ``net`` on this rank's rows ``(X, Y)`` together with every rank of ``comm``.

    Every rank calls it with its own shard and the same other arguments (those that
    differ are a ValueError on every rank). The arguments mean what they mean in
    ``Network.fit``; these differ:

    Parameters
    ----------
    comm : mpi4py communicator (or an object with its methods)
    batch_size : int >= 1
        Rows per rank: a global batch has up to ``batch_size * comm.Get_size()`` rows.
        Every rank's shard must give the same number of batches,
        ``ceil(rows / batch_size)``; else ValueError on every rank.
    shuffle, seed : bool, int or None
        Each rank shuffles its own rows every epoch, with a generator derived from
        ``seed``, its rank and the epoch. ``seed=None`` draws one on rank 0 and
        shares it.
    sample_weight : array_like of this rank's rows, or None
        The global batch's gradient is the weighted average over all its rows.
    validation_data : (Xv, Yv) of this rank, or None
        Evaluated on every rank and combined: ``val_loss`` is the loss over all the
        ranks' validation rows (given on every rank or on none).
    sync_every : int >= 1
        1: exact data-parallel SGD (one Allreduce of the gradients a step). k > 1:
        local SGD, each rank steps on its own batch's gradient and the parameters and
        optimizer state are averaged every k steps and at the end of every epoch.
    checkpoint : path or None
        Rank 0 writes the Network, its optimizer state and the run's progress there
        (``bpfast.save``, atomic) every ``checkpoint_every`` epochs and after the last.
    resume : path or None
        A checkpoint to continue from: rank 0 reads it and shares it; training goes on
        from its epoch to ``epochs`` exactly as the uninterrupted run would have.
        The History returned holds the checkpoint's epochs too.

    Returns
    -------
    History
        The same on every rank: ``loss`` per epoch is that of the global batches
        (the mean over all ranks' rows, 'sse': the sum), ``val_loss`` likewise.

    Raises
    ------
    ValueError, TypeError
        On every rank at once when any rank's arguments are wrong (RankError, a
        ValueError, on the others), never a hang.
    FloatingPointError
        On every rank, with the parameters of the start of the epoch, if the loss or
        the parameters stop being finite.
    """
    missing = [m for m in _COMM_METHODS if not callable(getattr(comm, m, None))]
    if missing:
        raise TypeError(f"comm must be an mpi4py communicator (or have its methods "
                        f"{', '.join(_COMM_METHODS)}); {type(comm).__name__} lacks "
                        f"{', '.join(missing)}")
    rank, size = int(comm.Get_rank()), int(comm.Get_size())
    with ExitStack() as stack:
        # Everything that can fail on one rank alone happens before the first collective,
        # and its outcome is part of it: then every rank raises, none waits forever.
        try:
            if not isinstance(net, Network):
                raise TypeError(f"net must be a bpfast.Network; got {type(net).__name__}")
            stack.enter_context(net._exclusive())
            local = _prepare(net, X, Y, rank, epochs, batch_size, lr, shuffle, seed,
                             optimizer, momentum, nesterov, weight_decay, betas, eps, etas,
                             step_sizes, sample_weight, validation_data, sync_every,
                             checkpoint, checkpoint_every, resume, clip_norm)
            error = None
        except Exception as exc:        # shared with the other ranks, then raised here
            local, error = None, exc
        infos = comm.allgather(_summary(local, error))
        failed = [r for r, info in enumerate(infos) if info["error"] is not None]
        if failed:
            if error is not None:
                raise error
            raise RankError(f"rank {failed[0]} refused its arguments: "
                            f"{infos[failed[0]]['error']}")
        plan = _agree(infos, local.batch_size)
        return _Run(net, comm, rank, size, local, plan, infos[0]).train()


# ---------------------------------------------------------------------- set-up
@dataclass
class _Local:
    """One rank's validated arguments."""
    X: np.ndarray
    Y: np.ndarray
    weights: Optional[np.ndarray]
    validation: Optional[tuple]
    epochs: int
    batch_size: int
    shuffle: bool
    seed: Optional[int]
    opt: optim.Optimizer
    sync_every: int
    checkpoint: Optional[str]
    checkpoint_every: int
    settings: dict          # what every rank must agree on
    resumed: Optional[dict] = None      # rank 0 with resume: the checkpoint's contents


def _prepare(net, X, Y, rank, epochs, batch_size, lr, shuffle, seed, optimizer, momentum,
             nesterov, weight_decay, betas, eps, etas, step_sizes, sample_weight,
             validation_data, sync_every, checkpoint, checkpoint_every, resume, clip_norm):
    X = net._X(X)
    Y = net._Y(Y, X.shape[0])
    X, Y = net._apart(X, Y)
    # All zeros is allowed on one rank; the sum over every rank is checked once the ranks
    # have spoken.
    weights = None if sample_weight is None else as_sample_weight(
        sample_weight, X.shape[0], net.dtype, all_zero=True)
    validation = _fitting.validation_pair(net, validation_data)
    opt = optim.make(net, optimizer, lr, momentum, nesterov, weight_decay, betas, eps, etas,
                     step_sizes, clip_norm)
    local = _Local(X, Y, weights, validation, positive_int(epochs, "epochs"),
                   positive_int(batch_size, "batch_size"), as_bool(shuffle, "shuffle"),
                   seed_value(seed), opt, positive_int(sync_every, "sync_every"),
                   _path(checkpoint, "checkpoint"),
                   positive_int(checkpoint_every, "checkpoint_every"), {})
    resume = _path(resume, "resume")
    local.settings = dict(network=repr(net), epochs=local.epochs, batch_size=local.batch_size,
                          shuffle=local.shuffle, seed=local.seed, optimizer=repr(opt),
                          sync_every=local.sync_every, sample_weight=weights is not None,
                          validation_data=validation is not None, resume=resume is not None,
                          checkpoint_every=local.checkpoint_every)
    if resume is not None and rank == 0:
        local.resumed = _read_checkpoint(net, resume, local)
    if local.seed is None and rank == 0 and local.resumed is None:
        local.seed = int(net._rng.integers(0, 2 ** 63))
    return local


def _path(value, name):
    if value is None:
        return None
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a path or None; got {type(value).__name__}")
    return os.fsdecode(os.fspath(value))


def _read_checkpoint(net, path, local):
    """Rank 0: a checkpoint's parameters, optimizer state and run state, checked."""
    from bpfast.io import load
    saved, metadata = load(path, with_metadata=True)
    run = (metadata or {}).get(CHECKPOINT_KEY)
    if not isinstance(run, dict):
        raise ValueError(f"resume: {path!r} is a bpfast model but no checkpoint of "
                         f"bpfast.distributed.fit (its metadata has no {CHECKPOINT_KEY!r})")
    missing = [key for key in _RUN_KEYS if key not in run]
    if missing or not isinstance(run["history"], dict) or saved._state_kind is None:
        raise ValueError(f"resume: {path!r} is an incomplete checkpoint (it lacks "
                         f"{', '.join(missing) or 'the history or the optimizer state'})")
    theirs = {k: v for k, v in saved.config().items() if k != "backend"}
    ours = {k: v for k, v in net.config().items() if k != "backend"}
    if theirs != ours:
        raise ValueError(f"resume: {path!r} holds a network {theirs}, not this one {ours}")
    if saved._state_kind != local.opt.name:
        raise ValueError(f"resume: {path!r} holds the optimizer state of "
                         f"{saved._state_kind!r}; this run trains with {local.opt.name!r}")
    for key in ("batch_size", "shuffle", "sync_every"):
        if run[key] != getattr(local, key):
            raise ValueError(f"resume: {path!r} was written by a run with {key}="
                             f"{run[key]!r}; this one has {key}={getattr(local, key)!r} "
                             f"(a resumed run continues the same run)")
    if local.seed is not None and local.seed != run["seed"]:
        raise ValueError(f"resume: {path!r} was written by a run with seed={run['seed']}; "
                         f"pass that seed or seed=None")
    return dict(run=run, params=saved._params.copy(), state=saved._state.copy(),
                state_step=int(saved._state_step))


def _summary(local, error):
    """What a rank tells the others before training: small, picklable."""
    if error is not None:
        return {"error": f"{type(error).__name__}: {error}"}
    resumed = local.resumed
    return {"error": None, "rows": local.X.shape[0], "settings": local.settings,
            "seed": local.seed, "weight_sum": None if local.weights is None else
            float(local.weights.sum(dtype=np.float64)),
            "resumed": None if resumed is None else
            dict(run=resumed["run"], state_step=resumed["state_step"])}


@dataclass
class _Plan:
    """What the ranks agreed on: every rank's rows and the global batches' row counts."""
    rows: list
    n_batches: int
    global_rows: np.ndarray     # rows of each global batch


def _agree(infos, batch_size) -> _Plan:
    """Check that the ranks can train together; the same verdict on every rank."""
    first = infos[0]["settings"]
    for r, info in enumerate(infos[1:], 1):
        for key, value in info["settings"].items():
            if value != first[key]:
                raise ValueError(f"every rank must pass the same {key}: rank 0 has "
                                 f"{first[key]!r}, rank {r} has {value!r}")
    rows = [info["rows"] for info in infos]
    batches = [-(-n // batch_size) for n in rows]
    if len(set(batches)) != 1:
        described = ", ".join(f"rank {r}: {n} rows = {b} batches"
                              for r, (n, b) in enumerate(zip(rows, batches)))
        raise ValueError(f"the ranks' shards give different numbers of batches of "
                         f"batch_size={batch_size} ({described}); give every rank the "
                         f"same number of batches (equal shards, or within one batch)")
    if first["sample_weight"] and not sum(info["weight_sum"] for info in infos) > 0:
        raise ValueError("sample_weight is all zeros on every rank: no row would count")
    n_batches = batches[0]
    global_rows = np.zeros(n_batches, dtype=np.int64)
    for n in rows:
        global_rows += _batch_rows(n, batch_size, n_batches)
    return _Plan(rows, n_batches, global_rows)


def _batch_rows(n, batch_size, n_batches):
    out = np.full(n_batches, batch_size, dtype=np.int64)
    out[-1] = n - batch_size * (n_batches - 1)
    return out


def epoch_order(seed: int, rank: int, epoch: int, n_rows: int) -> np.ndarray:
    """The order in which rank ``rank`` visits its rows in epoch ``epoch`` (with shuffle).

    A function of (seed, rank, epoch) alone, so a resumed run shuffles as the
    uninterrupted one did: NumPy's generator seeded with ``SeedSequence(seed,
    spawn_key=(rank, epoch))``.
    """
    ss = np.random.SeedSequence(seed, spawn_key=(rank, epoch))
    return np.random.default_rng(ss).permutation(n_rows)


# ---------------------------------------------------------------------- training
class _Run:
    """One rank's training loop, once every rank agreed."""

    def __init__(self, net, comm, rank, size, local, plan, root):
        self.net, self.comm, self.rank, self.size = net, comm, rank, size
        self.local, self.plan = local, plan
        self.opt = local.opt
        self.in_place = _in_place(comm)
        resumed = root["resumed"]
        self.seed = root["seed"] if resumed is None else resumed["run"]["seed"]
        self.history = History()
        self.start_epoch = 0
        # Every rank begins with rank 0's parameters (and with its optimizer state when
        # resuming; a fresh state is the same everywhere already).
        net._prepare_state(self.opt, keep=False)
        if resumed is not None:
            if rank == 0:
                net._params[...] = local.resumed["params"]
                net._state[...] = local.resumed["state"]
            comm.Bcast(net._state, root=0)
            net._state_step = resumed["state_step"]
            run = resumed["run"]
            self.start_epoch = run["epoch"]
            saved = run["history"]
            self.history = History(loss=list(saved["loss"]), val_loss=list(saved["val_loss"]),
                                   lr=list(saved["lr"]), n_updates=saved["n_updates"])
        comm.Bcast(net._params, root=0)
        self.n_params = net._params.shape[0]
        self.rows = _batch_rows(local.X.shape[0], local.batch_size, plan.n_batches)
        self.mean_loss = net.loss != "sse"
        self.total_rows = sum(plan.rows)
        self.update = self.opt.update(from_gradients=True)
        # The state takes part in local SGD's averaging only when the optimizer has one.
        self.uses_state = not (self.opt.name == "sgd" and self.update["momentum"] == 0)

    # -- one epoch's batches
    def _batches(self, epoch):
        local = self.local
        X, Y, W = local.X, local.Y, local.weights
        if local.shuffle:
            order = epoch_order(self.seed, self.rank, epoch, X.shape[0])
            X, Y = X[order], Y[order]
            W = None if W is None else W[order]
        bounds = [(b * local.batch_size, b * local.batch_size + n) for b, n in enumerate(self.rows)]
        xs = [X[s:e] for s, e in bounds]
        ys = [Y[s:e] for s, e in bounds]
        ws = None if W is None else [W[s:e] for s, e in bounds]
        return xs, ys, ws

    def _factors(self, ws):
        """Each batch's gradient weight in the global batch's, and loss weight in the epoch's."""
        plan = self.plan
        if not self.mean_loss:
            ones = np.ones(plan.n_batches)
            return ones, ones
        if ws is None:
            factors = self.rows / plan.global_rows
            return factors, self.rows.astype(np.float64)
        local = np.array([w.sum(dtype=np.float64) for w in ws])
        total = local.copy()
        self.comm.Allreduce(self.in_place, total)
        factors = np.divide(local, total, out=np.zeros_like(local), where=total > 0)
        return factors, factors * plan.global_rows

    def train(self) -> History:
        net, local, history = self.net, self.local, self.history
        net.history_ = history
        for epoch in range(self.start_epoch, local.epochs):
            backup = net._params.copy()
            if local.shuffle or epoch == self.start_epoch:
                xs, ys, ws = self._batches(epoch)
                factors, loss_weights = self._factors(ws)
                factors = factors.tolist()
            if local.sync_every == 1:
                losses = self._exact_epoch(xs, ys, ws, factors)
            else:
                losses = self._local_sgd_epoch(xs, ys, ws)
            history.n_updates += self.plan.n_batches
            self._end_epoch(epoch, float(np.dot(losses, loss_weights)), backup)
            if local.checkpoint is not None and self._checkpoint_due(epoch):
                self._write_checkpoint(epoch)
        return history

    def _exact_epoch(self, xs, ys, ws, factors):
        """Synchronous data-parallel SGD: one gradient Allreduce per step.

        The hot loop of small networks: everything it calls is bound to a local name,
        and the step count lives in the update dict until the epoch ends (the Network's
        attribute setter is Python code).
        """
        net, grads, update = self.net, self.net._grads, self.update
        allreduce, in_place, multiply = self.comm.Allreduce, self.in_place, np.multiply
        step = net._engine.step_from_gradients
        losses = []
        update["step"] = net._state_step
        forward, backward = net._engine.forward, net._engine.backward
        if ws is None:
            ws = [None] * len(xs)
        try:
            for x, y, w, f in zip(xs, ys, ws, factors):
                forward(x)
                losses.append(backward(y, w))
                if f != 1.0:
                    multiply(grads, f, out=grads)
                allreduce(in_place, grads)
                update["step"] = step(update)
        finally:
            net._state_step = update["step"]
        return losses

    def _local_sgd_epoch(self, xs, ys, ws):
        """Local SGD: k local steps, then the ranks' parameters and state averaged."""
        net, update, k = self.net, self.update, self.local.sync_every
        engine = net._engine
        losses = []
        for b in range(len(xs)):
            engine.forward(xs[b])
            losses.append(engine.backward(ys[b], None if ws is None else ws[b]))
            update["step"] = net._state_step
            net._state_step = engine.step_from_gradients(update)
            if (b + 1) % k == 0 or b == len(xs) - 1:
                self._average_parameters()
        return losses

    def _average_parameters(self):
        net, n = self.net, self.n_params
        if self.uses_state:
            buf = np.concatenate([net._params, net._state])
        else:
            buf = net._params.copy()
        self.comm.Allreduce(self.in_place, buf)
        buf *= 1.0 / self.size
        net._params[...] = buf[:n]
        if self.uses_state:
            net._state[...] = buf[n:]

    def _end_epoch(self, epoch, loss_part, backup):
        """Combine the ranks' losses; check that training is still finite."""
        net, local, history = self.net, self.local, self.history
        # One small Allreduce: the training loss, the validation loss and its rows.
        parts = np.array([loss_part, 0.0, 0.0])
        if local.validation is not None:
            Xv, Yv = local.validation
            val = net._loss_of(net._outputs(Xv), Yv)
            parts[1:] = (val * Xv.shape[0] if self.mean_loss else val), Xv.shape[0]
        self.comm.Allreduce(self.in_place, parts)
        loss = parts[0] / self.total_rows if self.mean_loss else parts[0]
        if self.opt.weight_decay and self.opt.name != "adamw":
            loss += (0.5 * float(net.dtype.type(self.opt.weight_decay))
                     * net._engine.weight_sq_norm())
        if not (math.isfinite(loss) and net._engine.params_finite()):
            net._params[...] = backup
            net._forget_state()         # not finite either; a later fit starts afresh
            history.diverged = True
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1} (of {local.epochs}) with "
                f"lr={self.opt.lr:g}: the loss or the parameters stopped being finite; the "
                f"parameters were restored to the start of that epoch. Try a smaller lr.")
        history.loss.append(float(loss))
        history.lr.append(self.opt.lr)
        if local.validation is not None:
            history.val_loss.append(float(parts[1] / parts[2] if self.mean_loss else parts[1]))

    # -- checkpoints
    def _checkpoint_due(self, epoch):
        done = epoch + 1
        return done % self.local.checkpoint_every == 0 or done == self.local.epochs

    def _write_checkpoint(self, epoch):
        """Rank 0 writes; every rank learns whether that worked (and raises if not)."""
        error = None
        if self.rank == 0:
            from bpfast.io import save
            local, h = self.local, self.history
            run = dict(epoch=epoch + 1, epochs=local.epochs, seed=self.seed,
                       world_size=self.size, batch_size=local.batch_size,
                       shuffle=local.shuffle, sync_every=local.sync_every,
                       history=dict(loss=h.loss, val_loss=h.val_loss, lr=h.lr,
                                    n_updates=h.n_updates))
            try:
                save(self.net, local.checkpoint, metadata={CHECKPOINT_KEY: run})
            except Exception as exc:
                error = exc
        message = self.comm.bcast(None if error is None else f"{type(error).__name__}: "
                                  f"{error}", root=0)
        if error is not None:
            raise error
        if message is not None:
            raise RankError(f"rank 0 could not write the checkpoint: {message}")


def _in_place(comm):
    """MPI.IN_PLACE once mpi4py is in use (an mpi4py communicator, or a wrapper around
    one, needs it; other communicators take any marker), else IN_PLACE."""
    mpi = sys.modules.get("mpi4py.MPI")
    return IN_PLACE if mpi is None else mpi.IN_PLACE


def fit_with_arguments_of_fit(net, args: dict) -> History:
    """Network.fit(comm=...): fit() here with Network.fit's arguments, those it cannot take
    refused first (on every rank alike, since every rank passes the same)."""
    unsupported = dict(lr_schedule="constant", callback=None, early_stopping=False,
                       progress=False, keep_state=False, keep_momentum=False, n_threads=None)
    for name, default in unsupported.items():
        if args[name] is not default and args[name] != default:
            raise ValueError(f"fit(comm=...) does not take {name}; got {args[name]!r}")
    passed = ("epochs", "batch_size", "lr", "shuffle", "seed", "optimizer", "momentum",
              "nesterov", "weight_decay", "betas", "eps", "etas", "step_sizes",
              "sample_weight", "validation_data", "sync_every", "checkpoint",
              "checkpoint_every", "resume", "clip_norm")
    return fit(net, args["X"], args["Y"], args["comm"], **{name: args[name] for name in passed})
