"""bpfast.distributed: data-parallel training over MPI.

Two halves. Real MPI runs (``mpiexec -n 2`` of mpi_worker.py, skipped without mpi4py
and mpiexec) check that two ranks train as one process on the concatenated global
batches, for every loss and optimizer, to 1e-12; that the ranks stay bit-identical;
that uneven shards fail on every rank without a hang; local SGD; and that a run killed
after a checkpoint and resumed ends where the uninterrupted run ends, bit for bit.

In-process tests run R "ranks" as threads over a small communicator (ThreadComm below:
Allreduce sums in rank order), for the same claims at R = 3, the argument checks, the
failure paths, and the summation-order claim itself: with nothing to reorder (one rank,
or a second rank whose rows weigh 0) the result is bit-identical to Network.fit.
"""
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import bpfast
from bpfast import distributed, optim

from helpers import run_together
import mpi_worker as worker

HERE = os.path.dirname(os.path.abspath(__file__))
BOUND = 1e-12       # relative: only the order of summation differs


def relative(a, b):
    return np.abs(np.asarray(a) - b).max() / np.abs(b).max()


# ---------------------------------------------------------------------- threads as ranks
class World:
    """R threads that meet at a barrier for each collective."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=30)
        self.slots = [None] * size

    def exchange(self, rank, item):
        self.slots[rank] = item
        self.barrier.wait()
        items = list(self.slots)
        self.barrier.wait()
        return items


class ThreadComm:
    """The communicator methods bpfast.distributed uses, for threads of one process."""

    def __init__(self, world, rank):
        self.world, self.rank = world, rank
        self.allreduces = 0

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.world.size

    def Allreduce(self, sendbuf, recvbuf):
        assert not isinstance(sendbuf, np.ndarray)      # in place
        self.allreduces += 1
        items = self.world.exchange(self.rank, recvbuf.copy())
        total = items[0].copy()
        for item in items[1:]:
            total += item
        recvbuf[...] = total

    def Bcast(self, buf, root=0):
        buf[...] = self.world.exchange(self.rank, buf.copy())[root]

    def allgather(self, obj):
        return self.world.exchange(self.rank, obj)

    def bcast(self, obj, root=0):
        return self.world.exchange(self.rank, obj)[root]


def on_ranks(size, target):
    """target(comm, rank) on `size` threads; returns (results, exceptions) per rank."""
    world = World(size)
    results, errors = [None] * size, [None] * size

    def run(rank):
        try:
            results[rank] = target(ThreadComm(world, rank), rank)
        except BaseException as exc:        # noqa: B902 -- reported per rank
            errors[rank] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    assert run_together(threads, 60), "a rank hangs"
    return results, errors


def train_on_ranks(size, loss, kwargs, net_seed=None, **extra):
    """A worker scenario on `size` threads: [(parameters, History)] per rank."""
    shards = worker.data(loss, size)
    validation = worker.data(loss, size, seed=8)

    def target(comm, rank):
        net = worker.network(loss, seed=rank if net_seed is None else net_seed)
        args = {**worker.fit_args(kwargs, shards[rank], validation[rank]), **extra}
        history = distributed.fit(net, *shards[rank][:2], comm, **args)
        return net.get_parameters(), history

    results, errors = on_ranks(size, target)
    for error in errors:
        if error is not None:
            raise error
    return results


@pytest.mark.parametrize("name", sorted(worker.scenarios()))
def test_three_ranks_train_as_one_process(name):
    loss, kwargs = worker.scenarios()[name]
    results = train_on_ranks(3, loss, kwargs)
    params, losses = worker.reference(loss, kwargs, 3)
    assert relative(results[0][0], params) <= BOUND
    assert relative(results[0][1].loss, losses[:, 0]) <= BOUND
    if "validation" in name:
        assert relative(results[0][1].val_loss, losses[:, 1]) <= BOUND
    for p, history in results[1:]:
        assert np.array_equal(p, results[0][0])
        assert history.loss == results[0][1].loss and history.val_loss == results[0][1].val_loss
    assert results[0][1].n_updates == worker.EPOCHS * worker.ROWS // worker.BATCH


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam", "adamw", "rprop"])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_rank_is_bitwise_network_fit(name, weighted):
    # One rank: no sum to reorder, so the same bits as fit with the optimizer object
    # (which, like every rank, updates from the gradient buffer).
    loss = "mse"
    X, Y, W = worker.data(loss, 1)[0]
    kwargs = dict(worker.OPTIMIZERS[name])
    net = worker.network(loss)
    opt = optim.make(net, kwargs.pop("optimizer"), kwargs.pop("lr"), kwargs.pop("momentum", 0),
                     kwargs.pop("nesterov", False), kwargs.pop("weight_decay", 0),
                     (0.9, 0.999), 1e-8, (0.5, 1.2), (1e-6, 50.0), None)
    expected = net.fit(X, Y, epochs=3, batch_size=8, shuffle=False, optimizer=opt,
                       sample_weight=W if weighted else None)
    (params, history), = train_on_ranks(1, loss, dict(worker.OPTIMIZERS[name],
                                                      sample_weight=weighted), net_seed=0)
    assert np.array_equal(params, net.get_parameters())
    assert history.loss == expected.loss


def test_a_rank_whose_rows_weigh_nothing_changes_no_bit():
    # Rank 1's gradient is exactly 0 and rank 0's weight in every global batch exactly 1:
    # the sum has nothing to reorder, so two ranks give the bits of one process on rank
    # 0's rows.
    loss = "cross_entropy"
    shards = worker.data(loss, 2)
    weights = [shards[0][2] + 1, np.zeros(worker.ROWS)]

    def target(comm, rank):
        net = worker.network(loss, seed=rank)
        distributed.fit(net, *shards[rank][:2], comm, epochs=3, batch_size=8, lr=0.01,
                        optimizer="adam", shuffle=False, sample_weight=weights[rank])
        return net.get_parameters()

    results, errors = on_ranks(2, target)
    assert errors == [None, None]
    net = worker.network(loss)
    opt = optim.Adam(net, lr=0.01)
    net.fit(*shards[0][:2], epochs=3, batch_size=8, shuffle=False, optimizer=opt,
            sample_weight=weights[0])
    assert np.array_equal(results[0], net.get_parameters())
    assert np.array_equal(results[1], results[0])


def test_shards_of_different_sizes_with_the_same_batches():
    # 40 and 35 rows in batches of 8: five batches each, the last of 8 and 3 rows.
    loss = "mse"
    shards = worker.data(loss, 2)
    shards[1] = tuple(part[:35] for part in shards[1])

    def target(comm, rank):
        net = worker.network(loss, seed=rank)
        history = distributed.fit(net, *shards[rank][:2], comm, epochs=2, batch_size=8,
                                  lr=0.05, momentum=0.9, shuffle=False)
        return net.get_parameters(), history.loss

    results, errors = on_ranks(2, target)
    assert errors == [None, None]
    net = worker.network(loss)
    opt = optim.SGD(net, lr=0.05, momentum=0.9)
    epoch_losses = []
    for _ in range(2):
        total = 0.0
        for start in range(0, 40, 8):
            X = np.concatenate([s[0][start:start + 8] for s in shards])
            Y = np.concatenate([s[1][start:start + 8] for s in shards])
            net.forward(X)
            total += net.backward(Y) * X.shape[0]
            opt.step()
        epoch_losses.append(total / 75)
    assert relative(results[0][0], net.get_parameters()) <= BOUND
    assert relative(results[0][1], epoch_losses) <= BOUND
    assert np.array_equal(results[0][0], results[1][0])


# ---------------------------------------------------------------------- refusals
def test_uneven_shards_fail_on_every_rank():
    def target(comm, rank):
        X, Y, _ = worker.data("mse", 2, rows=40 if rank == 0 else 20)[rank]
        distributed.fit(worker.network("mse"), X, Y, comm, batch_size=8)

    _, errors = on_ranks(2, target)
    for error in errors:
        assert isinstance(error, ValueError)
        assert "rank 0: 40 rows = 5 batches, rank 1: 20 rows = 3 batches" in str(error)


def test_one_ranks_bad_argument_stops_every_rank():
    def target(comm, rank):
        X, Y, _ = worker.data("mse", 2)[rank]
        if rank == 1:
            Y = Y[:, :2]
        distributed.fit(worker.network("mse"), X, Y, comm, batch_size=8)

    _, errors = on_ranks(2, target)
    assert type(errors[1]) is ValueError and "Y" in str(errors[1])
    assert isinstance(errors[0], distributed.RankError)
    assert "rank 1 refused its arguments: ValueError" in str(errors[0])


def test_ranks_must_agree_on_the_settings():
    def target(comm, rank):
        X, Y, _ = worker.data("mse", 2)[rank]
        distributed.fit(worker.network("mse"), X, Y, comm, batch_size=8, lr=0.1 + rank)

    _, errors = on_ranks(2, target)
    for error in errors:
        assert isinstance(error, ValueError) and "same optimizer" in str(error)


def test_sample_weights_all_zero_everywhere_are_refused():
    def target(comm, rank):
        X, Y, _ = worker.data("mse", 2)[rank]
        distributed.fit(worker.network("mse"), X, Y, comm, sample_weight=np.zeros(40))

    _, errors = on_ranks(2, target)
    for error in errors:
        assert isinstance(error, ValueError) and "all zeros" in str(error)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(sync_every=0), ValueError, "sync_every"),
    (dict(checkpoint_every=1.5), TypeError, "checkpoint_every"),
    (dict(checkpoint=3), TypeError, "checkpoint"),
    (dict(sample_weight=-np.ones(40)), ValueError, "sample_weight"),
    (dict(validation_data=np.ones(3)), TypeError, "validation_data"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer"),
])
def test_argument_checks(kwargs, exc, words):
    X, Y, _ = worker.data("mse", 1)[0]
    _, errors = on_ranks(1, lambda comm, rank: distributed.fit(
        worker.network("mse"), X, Y, comm, **kwargs))
    assert type(errors[0]) is exc and words in str(errors[0])


def test_comm_must_be_a_communicator():
    X, Y, _ = worker.data("mse", 1)[0]
    with pytest.raises(TypeError, match="Allreduce"):
        distributed.fit(worker.network("mse"), X, Y, object())


def test_divergence_raises_on_every_rank_and_restores_the_epoch():
    shards = worker.data("sse", 2)

    def target(comm, rank):
        net = worker.network("sse")
        start = net.get_parameters()
        try:
            distributed.fit(net, *shards[rank][:2], comm, epochs=5, lr=1e60, shuffle=False)
        except FloatingPointError as exc:
            return exc, net.get_parameters(), net.history_, start
        return None

    results, errors = on_ranks(2, target)
    assert errors == [None, None]
    for exc, params, history, start in results:
        assert exc is not None and history.diverged and np.isfinite(params).all()
        assert np.array_equal(params, results[0][1])
        if not history.loss:
            assert np.array_equal(params, start)


# ---------------------------------------------------------------------- local SGD
def test_local_sgd_on_one_rank_is_plain_training():
    results = [train_on_ranks(1, "mse", worker.OPTIMIZERS["nesterov"], sync_every=k)[0][0]
               for k in (1, 4)]
    assert np.array_equal(results[0], results[1])


def test_local_sgd_keeps_ranks_identical_and_trains():
    exact = train_on_ranks(2, "mse", dict(worker.OPTIMIZERS["adam"], epochs=20))
    local = train_on_ranks(2, "mse", dict(worker.OPTIMIZERS["adam"], epochs=20), sync_every=3)
    assert np.array_equal(local[0][0], local[1][0])
    assert local[0][1].loss == local[1][1].loss
    assert not np.array_equal(local[0][0], exact[0][0])
    assert local[0][1].loss[-1] < 0.8 * local[0][1].loss[0]
    assert abs(local[0][1].loss[-1] - exact[0][1].loss[-1]) < 0.05 * exact[0][1].loss[-1]


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_and_resume_equal_one_uninterrupted_run(tmp_path):
    loss, kwargs = worker.CHECKPOINTED
    path = str(tmp_path / "run.npz")
    whole = train_on_ranks(2, loss, kwargs)
    train_on_ranks(2, loss, dict(kwargs, epochs=2), checkpoint=path)
    saved, metadata = bpfast.load(path, with_metadata=True)
    assert metadata[distributed.CHECKPOINT_KEY]["epoch"] == 2
    resumed = train_on_ranks(2, loss, kwargs, net_seed=99, resume=path, checkpoint=path)
    for (params, history), (p, h) in zip(resumed, whole):
        assert np.array_equal(params, p)
        assert history.loss == h.loss and history.n_updates == h.n_updates
    assert bpfast.load(path, with_metadata=True)[1][distributed.CHECKPOINT_KEY]["epoch"] == 4


def test_resume_refuses_another_run(tmp_path):
    loss, kwargs = worker.CHECKPOINTED
    path = str(tmp_path / "run.npz")
    train_on_ranks(2, loss, dict(kwargs, epochs=1), checkpoint=path)
    shards = worker.data(loss, 2)

    def target(comm, rank):
        distributed.fit(worker.network(loss), *shards[rank][:2], comm, batch_size=4,
                        optimizer="adam", resume=path)

    _, errors = on_ranks(2, target)
    assert type(errors[0]) is ValueError and "batch_size=8" in str(errors[0])
    assert isinstance(errors[1], distributed.RankError)
    bpfast.save(worker.network(loss), path)
    _, errors = on_ranks(2, target)
    assert "no checkpoint" in str(errors[0]) and isinstance(errors[1], distributed.RankError)
    bpfast.save(worker.network(loss), path, metadata={distributed.CHECKPOINT_KEY: {"epoch": 1}})
    _, errors = on_ranks(2, target)
    assert "incomplete checkpoint" in str(errors[0])
    assert isinstance(errors[1], distributed.RankError)


def test_a_failed_checkpoint_write_stops_every_rank(tmp_path):
    shards = worker.data("mse", 2)
    path = str(tmp_path / "missing" / "run.npz")

    def target(comm, rank):
        distributed.fit(worker.network("mse"), *shards[rank][:2], comm, epochs=2,
                        checkpoint=path)

    _, errors = on_ranks(2, target)
    assert isinstance(errors[0], FileNotFoundError)
    assert isinstance(errors[1], distributed.RankError) and "checkpoint" in str(errors[1])


# ---------------------------------------------------------------------- real MPI
def _mpiexec():
    pytest.importorskip("mpi4py")
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which(
        "mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install mpich)")
    return found


@pytest.fixture(scope="module")
def mpi_runs(tmp_path_factory):
    """The worker's three launches on 2 ranks: exact scenarios, killed run, resumed run."""
    mpiexec = _mpiexec()
    outdir = str(tmp_path_factory.mktemp("mpi"))
    # The ranks import the bpfast this process imported (src/ or the installed one).
    where = os.path.dirname(os.path.dirname(os.path.abspath(bpfast.__file__)))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([where, os.environ.get("PYTHONPATH", "")]))
    codes = {}
    for mode in ("exact", "killed", "resumed"):
        # -m mpi4py: an exception on one rank aborts all instead of leaving them waiting.
        done = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py",
                               os.path.join(HERE, "mpi_worker.py"), outdir, mode],
                              env=env, capture_output=True, text=True, timeout=120)
        codes[mode] = (done.returncode, done.stdout + done.stderr)

    def result(name, rank):
        with np.load(os.path.join(outdir, f"{name}.{rank}.npz")) as f:
            return {key: f[key] for key in f.files}

    return codes, result, outdir


@pytest.mark.parametrize("name", sorted(worker.scenarios()))
def test_mpi_two_ranks_train_as_one_process(mpi_runs, name):
    codes, result, _ = mpi_runs
    assert codes["exact"][0] == 0, codes["exact"][1]
    loss, kwargs = worker.scenarios()[name]
    params, losses = worker.reference(loss, kwargs, 2)
    ranks = [result(name, r) for r in range(2)]
    assert "error" not in ranks[0], ranks[0].get("error")
    assert relative(ranks[0]["params"], params) <= BOUND
    assert relative(ranks[0]["loss"], losses[:, 0]) <= BOUND
    if "validation" in name:
        assert relative(ranks[0]["val_loss"], losses[:, 1]) <= BOUND
    for key in ("params", "loss", "val_loss"):
        assert np.array_equal(ranks[0][key], ranks[1][key])


def test_mpi_uneven_shards_raise_value_error_on_every_rank(mpi_runs):
    codes, result, _ = mpi_runs
    assert codes["exact"][0] == 0, codes["exact"][1]
    for rank in range(2):
        error = str(result("uneven", rank)["error"])
        assert error.startswith("ValueError") and "different numbers of batches" in error


def test_mpi_local_sgd_and_float32_keep_ranks_identical(mpi_runs):
    codes, result, _ = mpi_runs
    for name in ("sync1", "sync3", "float32"):
        ranks = [result(name, r) for r in range(2)]
        assert np.array_equal(ranks[0]["params"], ranks[1]["params"])
        assert np.array_equal(ranks[0]["loss"], ranks[1]["loss"])
    exact, local = result("sync1", 0)["loss"], result("sync3", 0)["loss"]
    assert not np.array_equal(exact, local)
    assert abs(local[-1] - exact[-1]) < 0.05 * exact[-1]


def test_mpi_killed_run_resumes_to_the_uninterrupted_parameters(mpi_runs):
    codes, result, outdir = mpi_runs
    assert codes["killed"][0] != 0                   # a rank died in epoch 3
    assert not os.path.exists(os.path.join(outdir, "killed.0.npz"))
    assert codes["resumed"][0] == 0, codes["resumed"][1]
    for rank in range(2):
        whole, resumed = result("uninterrupted", rank), result("resumed", rank)
        assert np.array_equal(resumed["params"], whole["params"])
        assert np.array_equal(resumed["loss"], whole["loss"])
        assert int(resumed["n_updates"]) == int(whole["n_updates"])


def test_network_fit_with_comm_is_distributed_fit():
    """Network.fit(comm=...) runs bpfast.distributed.fit with the same arguments (2 ranks),
    and refuses what it cannot take."""
    rng = np.random.default_rng(3)
    shards = [(rng.normal(size=(12, 4)), rng.normal(size=(12, 2))) for _ in range(2)]
    kw = dict(epochs=2, batch_size=4, lr=0.05, optimizer="adam", shuffle=True, seed=5)

    def by_method(comm, rank):
        net = bpfast.Network([4, 6, 2], "tanh", "identity", seed=1)
        net.fit(*shards[rank], comm=comm, **kw)
        return net.get_parameters()

    def by_function(comm, rank):
        net = bpfast.Network([4, 6, 2], "tanh", "identity", seed=1)
        distributed.fit(net, *shards[rank], comm, **kw)
        return net.get_parameters()

    got, errors = on_ranks(2, by_method)
    want, errors_too = on_ranks(2, by_function)
    assert errors == errors_too == [None, None]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    net = bpfast.Network([4, 6, 2], seed=1)
    with pytest.raises(ValueError, match="does not take callback"):
        net.fit(*shards[0], comm=object(), callback=lambda e, h: None)
