"""The rank side of test_mpi.py: ``mpiexec -n R python mpi_worker.py OUTDIR MODE``.

Each rank trains the scenarios of MODE with bpfast.distributed.fit on its shard and writes
what it got (parameters, History, or the error it raised) to OUTDIR/<scenario>.<rank>.npz;
test_mpi.py compares that with one process training on the concatenated global batches,
which ``reference()`` here computes. The data and the settings of each scenario are
defined once, here, for both sides.
"""
import os
import sys

import numpy as np

import bpfast
from bpfast import distributed
from helpers import random_problem

ROWS, BATCH, EPOCHS = 40, 8, 3          # rows per rank, rows per rank's batch
SIZES = [6, 8, 3]
OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.2),
    "nesterov": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.01, weight_decay=1e-3),
    "adamw": dict(optimizer="adamw", lr=0.01, weight_decay=0.1),
    "rprop": dict(optimizer="rprop", lr=0.01),
}
LOSSES = {"mse": ("tanh", "sigmoid"), "sse": ("tanh", "identity"),
          "cross_entropy": ("relu", "softmax")}


def network(loss, seed=0, dtype="float64"):
    hidden, output = LOSSES[loss]
    return bpfast.Network(SIZES, activation=hidden, output_activation=output, loss=loss,
                          dtype=dtype, seed=seed)


def data(loss, ranks, rows=ROWS, seed=7):
    """Every rank's shard of one data set: a list of (X, Y, sample_weight) per rank."""
    rng = np.random.default_rng(seed)
    shards = []
    for _ in range(ranks):
        X, Y = random_problem(rng, SIZES, loss, rows)
        shards.append((X, Y, rng.integers(0, 4, rows).astype(np.float64)))
    return shards


def scenarios():
    """name -> (loss, fit keyword arguments) of the exactness scenarios."""
    out = {}
    for loss in LOSSES:
        for name, kwargs in OPTIMIZERS.items():
            out[f"{loss}-{name}"] = (loss, dict(kwargs))
    out["mse-adam-weights"] = ("mse", dict(OPTIMIZERS["adam"], sample_weight=True))
    out["sse-nesterov-weights"] = ("sse", dict(OPTIMIZERS["nesterov"], sample_weight=True))
    out["cross_entropy-sgd-weights"] = ("cross_entropy", dict(OPTIMIZERS["sgd"],
                                                              sample_weight=True))
    out["mse-nesterov-validation"] = ("mse", dict(OPTIMIZERS["nesterov"], validation=True))
    out["cross_entropy-adam-shuffle"] = ("cross_entropy", dict(OPTIMIZERS["adam"],
                                                               shuffle=True, seed=11))
    return out


CHECKPOINTED = ("cross_entropy", dict(OPTIMIZERS["adam"], shuffle=True, seed=5, epochs=4))


def fit_args(kwargs, shard, validation_shard=None):
    """bpfast.distributed.fit's keyword arguments for a scenario on one rank's shard."""
    kwargs = dict(kwargs)
    args = dict(epochs=kwargs.pop("epochs", EPOCHS), batch_size=BATCH,
                shuffle=kwargs.pop("shuffle", False), seed=kwargs.pop("seed", None))
    if kwargs.pop("sample_weight", False):
        args["sample_weight"] = shard[2]
    if kwargs.pop("validation", False):
        args["validation_data"] = validation_shard[:2]
    return {**args, **kwargs}


def global_batches(shards, order=None):
    """The rows of all shards in global-batch order: batch i of rank 0, of rank 1, ..."""
    pieces = []
    for start in range(0, shards[0][0].shape[0], BATCH):
        for r, shard in enumerate(shards):
            rows = np.arange(start, min(start + BATCH, shard[0].shape[0]))
            if order is not None:
                rows = order[r][rows]
            pieces.append(tuple(part[rows] for part in shard))
    return tuple(np.concatenate([p[i] for p in pieces]) for i in range(3))


def reference(loss, kwargs, ranks):
    """One process training on the concatenated global batches: (parameters, History)."""
    shards = data(loss, ranks)
    net = network(loss)
    kwargs = fit_args(kwargs, shards[0], data(loss, ranks, seed=8)[0])
    shuffled, seed, epochs = kwargs.pop("shuffle"), kwargs.pop("seed"), kwargs.pop("epochs")
    weighted = "sample_weight" in kwargs
    kwargs.pop("sample_weight", None)
    if "validation_data" in kwargs:
        kwargs["validation_data"] = global_batches(data(loss, ranks, seed=8))[:2]
    kwargs["batch_size"] = BATCH * ranks
    losses = []
    for epoch in range(epochs):
        order = None
        if shuffled:
            order = [distributed.epoch_order(seed, r, epoch, ROWS) for r in range(ranks)]
        X, Y, W = global_batches(shards, order)
        history = net.fit(X, Y, epochs=1, shuffle=False, keep_state=epoch > 0,
                          sample_weight=W if weighted else None, **kwargs)
        losses.append((history.loss[0], history.val_loss[0] if history.val_loss else np.nan))
    return net.get_parameters(), np.array(losses)


class _DyingComm:
    """A communicator that ends this process (as a crash would) at its n-th Allreduce."""

    def __init__(self, comm, die_at):
        self._comm, self._die_at, self._calls = comm, die_at, 0

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def Allreduce(self, sendbuf, recvbuf):
        self._calls += 1
        if self._calls == self._die_at:
            os._exit(17)
        return self._comm.Allreduce(sendbuf, recvbuf)


def save_result(outdir, name, rank, **arrays):
    np.savez(os.path.join(outdir, f"{name}.{rank}.npz"), **arrays)


def run_fit(outdir, name, rank, net, shard, comm, **kwargs):
    try:
        history = distributed.fit(net, shard[0], shard[1], comm, **kwargs)
    except Exception as exc:
        save_result(outdir, name, rank, error=np.array(f"{type(exc).__name__}: {exc}"))
        return
    save_result(outdir, name, rank, params=net.get_parameters(), loss=np.array(history.loss),
                val_loss=np.array(history.val_loss), n_updates=history.n_updates)


def main(outdir, mode):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    loss, kwargs = CHECKPOINTED
    path = os.path.join(outdir, "checkpoint.npz")
    if mode == "exact":
        for name, (case_loss, case) in scenarios().items():
            shard = data(case_loss, ranks)[rank]
            args = fit_args(case, shard, data(case_loss, ranks, seed=8)[rank])
            run_fit(outdir, name, rank, network(case_loss, seed=rank), shard, comm, **args)
        # Shards of 40 and 20 rows: 5 and 3 batches of 8.
        shard = data("mse", ranks, rows=ROWS if rank == 0 else ROWS // 2)[rank]
        run_fit(outdir, "uneven", rank, network("mse"), shard, comm, batch_size=BATCH)
        shard = data("mse", ranks)[rank]
        for k in (1, 3):
            run_fit(outdir, f"sync{k}", rank, network("mse"), shard, comm, epochs=20,
                    batch_size=BATCH, lr=0.1, momentum=0.9, seed=3, sync_every=k)
        run_fit(outdir, "float32", rank, network("mse", dtype="float32"), shard, comm,
                **fit_args(OPTIMIZERS["adam"], shard))
        shard = data(loss, ranks)[rank]
        run_fit(outdir, "uninterrupted", rank, network(loss), shard, comm,
                **fit_args(kwargs, shard), checkpoint=os.path.join(outdir, "other.npz"),
                checkpoint_every=2)
    elif mode == "killed":
        # Two epochs of five steps, the checkpoint after the second; then die in the third.
        shard = data(loss, ranks)[rank]
        comm = _DyingComm(comm, die_at=13) if rank == 1 else comm
        run_fit(outdir, "killed", rank, network(loss), shard, comm, **fit_args(kwargs, shard),
                checkpoint=path, checkpoint_every=2)
    elif mode == "resumed":
        shard = data(loss, ranks)[rank]
        run_fit(outdir, "resumed", rank, network(loss, seed=99), shard, comm,
                **fit_args(kwargs, shard), checkpoint=path, checkpoint_every=2, resume=path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
