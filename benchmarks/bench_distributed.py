"""Data-parallel training over MPI: time per step on 1 and 2 ranks, and PyTorch DDP beside it.

    python benchmarks/bench_distributed.py                 # ~2-3 min; prints a Markdown report
    python benchmarks/bench_distributed.py --quick         # fewer steps and repeats
    python benchmarks/bench_distributed.py --output /tmp/scaling.md

It launches itself under ``mpiexec -n 1`` and ``mpiexec -n 2`` (the mpich wheel's mpiexec
beside the Python executable, else the one on PATH), each rank with one BLAS thread, and
times for each shape (float32, softmax + cross-entropy, SGD with momentum):

- bpfast.distributed.fit: the time per step with ``batch_size`` rows per rank, and the
  part of it spent in the gradient Allreduce (waiting for the other rank included);
- on one rank also Network.fit on the same batches (the native loop: no Allreduce, no
  Python between steps), which gives bpfast's own per-step overhead, and a step of twice
  the batch: the work of one 2-rank step in one process, for the speed-up;
- torch DistributedDataParallel on gloo, the same network and batches, when torch is
  installed (one intra-op thread per rank);
- the Allreduce itself: latency (8 bytes) and bandwidth, fitted to
  ``t = alpha + 2 (R-1)/R * bytes / beta`` over buffers of 64 KB to 32 MB.

Medians over repeats; the first run of each measurement is a warm-up. The machine is
what it is: with 2 cores, the 2-rank runs use both, and anything else running shows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from _native import publish

# name, sizes, rows per rank's batch, steps per measurement (full run)
SHAPES = [("64-64-10", [64, 64, 10], 32, 2000),
          ("784-128-10", [784, 128, 10], 64, 300),
          ("784-1024-1024-10", [784, 1024, 1024, 10], 256, 12)]
ALLREDUCE_SIZES = [2, 256, 16384, 262144, 2097152, 8388608]      # float32 elements
LR, MOMENTUM = 0.01, 0.9
SYNC_EVERY = (1, 4, 16, 64)


# ---------------------------------------------------------------------- rank side
class TimedComm:
    """A communicator that times its Allreduce calls on buffers of `size` elements."""

    def __init__(self, comm, size):
        self._comm, self._size, self.seconds = comm, size, 0.0

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def Allreduce(self, sendbuf, recvbuf):
        if recvbuf.size != self._size:
            return self._comm.Allreduce(sendbuf, recvbuf)
        start = time.perf_counter()
        self._comm.Allreduce(sendbuf, recvbuf)
        self.seconds += time.perf_counter() - start


def shard(sizes, rows, rank):
    rng = np.random.default_rng(100 + rank)
    X = rng.normal(size=(rows, sizes[0])).astype(np.float32)
    return X, rng.integers(0, sizes[-1], rows)


def network(sizes):
    import bpfast
    return bpfast.Network(sizes, activation="relu", output_activation="softmax",
                          loss="cross_entropy", dtype="float32", seed=0)


def median_runs(comm, repeats, run):
    """run() -> tuple of per-step seconds; the median of each over `repeats` (+1 warm-up)."""
    results = []
    for _ in range(repeats + 1):
        comm.Barrier()
        results.append(run())
    return [float(np.median([r[i] for r in results[1:]])) for i in range(len(results[0]))]


def time_bpfast(comm, sizes, batch, steps, repeats):
    """bpfast.distributed.fit: (seconds per step, of which in the gradient Allreduce)."""
    from bpfast import distributed
    net = network(sizes)
    X, y = shard(sizes, batch * steps, comm.Get_rank())
    timed = TimedComm(comm, net._params.size)

    def run():
        timed.seconds = 0.0
        start = time.perf_counter()
        distributed.fit(net, X, y, timed, epochs=1, batch_size=batch, lr=LR,
                        momentum=MOMENTUM, shuffle=False)
        return (time.perf_counter() - start) / steps, timed.seconds / steps

    return median_runs(comm, repeats, run)


def time_native(comm, sizes, batch, steps, repeats):
    """Network.fit on one process, the same batches: seconds per step."""
    from bpfast import optim
    net = network(sizes)
    X, y = shard(sizes, batch * steps, 0)
    opt = optim.SGD(net, lr=LR, momentum=MOMENTUM)

    def run():
        start = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, shuffle=False)
        return ((time.perf_counter() - start) / steps,)

    return median_runs(comm, repeats, run)[0]


def overhead(comm, sizes, batch, steps, repeats):
    """bpfast's own per-step cost on one rank beyond the Allreduce: distributed.fit minus
    its Allreduce time minus Network.fit's native step, interleaved, each repeat paired."""
    out = []
    for _ in range(repeats):
        dist, allreduce = time_bpfast(comm, sizes, batch, steps, 1)
        out.append(dist - allreduce - time_native(comm, sizes, batch, steps, 1))
    return float(np.median(out)), float(np.min(out))


def time_ddp(comm, sizes, batch, steps, repeats):
    """torch DDP on gloo: seconds per step (forward, loss, backward + all-reduce, step)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = DistributedDataParallel(torch.nn.Sequential(*layers[:-1]))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    X, y = shard(sizes, batch * steps, comm.Get_rank())
    xs = torch.from_numpy(X).split(batch)
    ys = torch.from_numpy(y).split(batch)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        dist.barrier()
        start = time.perf_counter()
        for xb, yb in zip(xs, ys):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            opt.step()
        return ((time.perf_counter() - start) / steps,)

    return median_runs(comm, repeats, run)[0]


def allreduce_times(comm, repeats):
    """Seconds per in-place float32 Allreduce of each size in ALLREDUCE_SIZES."""
    from mpi4py import MPI
    out = {}
    for n in ALLREDUCE_SIZES:
        buf = np.ones(n, dtype=np.float32)
        calls = max(5, min(2000, int(2e8 / (n * 4 + 1e4))))

        def run():
            start = time.perf_counter()
            for _ in range(calls):
                comm.Allreduce(MPI.IN_PLACE, buf)
            return ((time.perf_counter() - start) / calls,)

        out[n * 4] = median_runs(comm, repeats, run)[0]
    return out


def teacher_data(sizes, rows, seed):
    """Rows labelled by a fixed random network (a task the student can learn)."""
    import bpfast
    teacher = bpfast.Network(sizes, activation="tanh", output_activation="softmax",
                             loss="cross_entropy", dtype="float32", seed=1234)
    for W in teacher.weights:
        W *= 3
    X = np.random.default_rng(seed).normal(size=(rows, sizes[0])).astype(np.float32)
    return X, teacher.predict(X).argmax(axis=1)


def local_sgd(comm, quick):
    """sync_every=k on every rank: seconds per step, and the losses after a fixed number
    of epochs (training, and on held-out rows), for k in SYNC_EVERY."""
    from bpfast import distributed
    out = {}
    for name, sizes, batch, epochs in (("64-64-10", [64, 64, 10], 32, 6),
                                       ("784-128-10", [784, 128, 10], 64, 3)):
        steps = 25 if quick else 100
        X, y = teacher_data(sizes, batch * steps, 10 + comm.Get_rank())
        validation = teacher_data(sizes, 500, 99 + comm.Get_rank())
        out[name] = {}
        for k in SYNC_EVERY:
            net = network(sizes)
            comm.Barrier()
            start = time.perf_counter()
            history = distributed.fit(net, X, y, comm, epochs=epochs, batch_size=batch,
                                      lr=0.05, momentum=MOMENTUM, seed=1, sync_every=k,
                                      validation_data=validation)
            seconds = (time.perf_counter() - start) / (epochs * steps)
            out[name][k] = (seconds, history.loss[-1], history.val_loss[-1])
    return out


def worker(path, quick):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    ranks = comm.Get_size()
    repeats = 3 if quick else 5
    result = {"ranks": ranks, "shapes": {}}
    for name, sizes, batch, steps in SHAPES:
        steps = max(4, steps // 4) if quick else steps
        row = {}
        row["step"], row["allreduce"] = time_bpfast(comm, sizes, batch, steps, repeats)
        # On one rank: the native loop; on two: both ranks run it at once, with no
        # communication, which shows what the machine gives two processes.
        row["native"] = time_native(comm, sizes, batch, steps, repeats)
        if ranks == 1:
            row["double_batch"] = time_bpfast(comm, sizes, 2 * batch, steps, repeats)[0]
            if name == "64-64-10":
                row["overhead_median"], row["overhead_min"] = overhead(
                    comm, sizes, batch, steps, 3 * repeats)
        result["shapes"][name] = row
    if ranks > 1:
        result["allreduce_bytes"] = allreduce_times(comm, repeats)
        result["local_sgd"] = local_sgd(comm, quick)
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        result["torch"] = None
    else:
        port = comm.bcast(_free_port() if comm.Get_rank() == 0 else None, root=0)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=comm.Get_rank(), world_size=ranks)
        result["torch"] = torch.__version__
        for name, sizes, batch, steps in SHAPES:
            steps = max(4, steps // 4) if quick else steps
            result["shapes"][name]["ddp"] = time_ddp(comm, sizes, batch, steps, repeats)
        dist.destroy_process_group()
    result["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    if comm.Get_rank() == 0:
        with open(path, "w") as f:
            json.dump(result, f)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- driver
def mpiexec():
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which(
        "mpiexec")
    if found is None:
        sys.exit("no mpiexec: pip install mpi4py mpich")
    return found


def launch(ranks, quick):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py",
                   os.path.abspath(__file__), "--worker", path] + (["--quick"] if quick else [])
        subprocess.run(command, env=env, check=True, timeout=1800)
        with open(path) as f:
            return json.load(f)


def fit_allreduce(times, ranks=2):
    """alpha (s) and beta (bytes/s) of t = alpha + 2 (R-1)/R * bytes / beta: alpha is the
    smallest buffer's time, beta the least-squares fit, in relative error, of the rest
    over the buffers of 64 KB and more."""
    alpha = times[min(times)]
    x = np.array([2 * (ranks - 1) / ranks * b for b in times if b >= 65536], dtype=float)
    t = np.array([times[b] for b in times if b >= 65536])
    w = 1 / t ** 2          # relative errors: each size counts alike
    inverse_beta = np.sum(w * x * (t - alpha)) / np.sum(w * x * x)
    return alpha, 1 / inverse_beta


def us(seconds):
    return f"{seconds * 1e6:,.1f}" if seconds < 1e-3 else f"{seconds * 1e6:,.0f}"


def report(one, two, command):
    lines = ["# bpfast.distributed: time per step on 1 and 2 ranks", "",
             f"`{command}`; {platform.processor() or platform.machine()}, {os.cpu_count()} "
             f"cores, {two['mpi']}, torch {two['torch'] or 'not installed'}; float32, "
             f"softmax + cross-entropy, SGD with momentum, one BLAS thread per rank. "
             f"Times in µs per step (medians).", "",
             "| shape | batch/rank | 1 rank | 1 rank, 2x batch | 2 ranks | of which Allreduce "
             "| speed-up 2 ranks | fit (native) | fit, 2 processes at once | DDP 1 rank "
             "| DDP 2 ranks | DDP / bpfast, 2 ranks |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    goals = {}
    for name, sizes, batch, _ in SHAPES:
        a, b = one["shapes"][name], two["shapes"][name]
        speedup = a["double_batch"] / b["step"]
        share = b["allreduce"] / b["step"]
        ddp1, ddp2 = a.get("ddp"), b.get("ddp")
        ratio = f"{ddp2 / b['step']:.1f}x" if ddp2 else "—"
        lines.append(
            f"| {name} | {batch} | {us(a['step'])} | {us(a['double_batch'])} | {us(b['step'])} "
            f"| {us(b['allreduce'])} ({share:.0%}) | {speedup:.2f}x | {us(a['native'])} | "
            f"{us(b['native'])} | "
            f"{us(ddp1) if ddp1 else '—'} | {us(ddp2) if ddp2 else '—'} | "
            f"{ratio} |")
        goals[name] = (speedup, ddp2 / b["step"] if ddp2 else None)
    times = {int(k): v for k, v in two["allreduce_bytes"].items()}
    alpha, beta = fit_allreduce(times)
    o = one["shapes"]["64-64-10"]
    lines += ["", "Speed-up: one rank's step on twice the batch (the same rows as one 2-rank "
              "step, and the same result up to rounding) over the 2-rank step. \"fit, 2 "
              "processes at once\": Network.fit's step while the other rank runs the same, "
              "with no communication: what the machine gives two processes (the 1-rank "
              "figure again if two cores are free).", "",
              "## Allreduce (2 ranks, float32, in place)", "",
              "| bytes | " + " | ".join(f"{b:,}" for b in times) + " |",
              "|---|" + "---|" * len(times),
              "| µs | " + " | ".join(us(t) for t in times.values()) + " |", "",
              f"Fit of t = alpha + 2(R-1)/R * bytes / beta over 64 KB - 32 MB: alpha = "
              f"{alpha * 1e6:.1f} µs, beta = {beta / 1e9:.2f} GB/s; the 8-byte latency is "
              f"{min(times.values()) * 1e6:.1f} µs.", "",
              "## bpfast's own overhead (64-64-10 b32, 1 rank)", "",
              f"distributed.fit's step minus its Allreduce minus Network.fit's native step: "
              f"median {o['overhead_median'] * 1e6:.2f} µs, min {o['overhead_min'] * 1e6:.2f} "
              f"µs (target < 3 µs).", ""]
    if "local_sgd" in two:
        lines += ["## Local SGD (2 ranks, sync_every=k)", "",
                  "Rows labelled by a fixed random network; the same epochs for every k; "
                  "µs per step (validation included), and the losses after the last epoch.",
                  "", "| shape | k | µs per step | training loss | held-out loss |",
                  "|---|---|---|---|---|"]
        for name, by_k in two["local_sgd"].items():
            for k, (seconds, loss, val) in by_k.items():
                lines.append(f"| {name} | {k} | {us(seconds)} | {loss:.4f} | {val:.4f} |")
        lines.append("")
    lines += ["## Goals", ""]
    big = goals["784-1024-1024-10"][0]
    lines.append(f"- 784-1024-1024-10 on 2 ranks at least 1.5x one rank: {big:.2f}x, "
                 f"{'met' if big >= 1.5 else 'missed'}.")
    small = goals["64-64-10"][1]
    if small is None:
        lines.append("- 64-64-10 on 2 ranks at least 5x faster than DDP: not measured "
                     "(no torch).")
    else:
        lines.append(f"- 64-64-10 on 2 ranks at least 5x faster than DDP: {small:.1f}x, "
                     f"{'met' if small >= 5 else 'missed'}.")
    return "\n".join(lines) + "\n", dict(alpha=alpha, beta=beta)


# ---------------------------------------------------------------------- cost model
LINKS_GBIT = (1, 10, 25, 100)
MODEL_RANKS = (2, 4, 8, 16, 32, 64)
LINK_LATENCY = 20e-6        # seconds per message of the ring over a network (assumed)


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def compute_model(one, name, batch):
    """Seconds of a one-rank step as c0 + c1 * rows, through the two measured batches."""
    row = one["shapes"][name]
    c1 = (row["double_batch"] - row["step"]) / batch
    return row["step"] - c1 * batch, max(c1, 0.0)


def ring(ranks, size_bytes, latency, bandwidth):
    """A ring all-reduce: 2 (R-1) messages and 2 (R-1)/R of the buffer through each link."""
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * size_bytes / bandwidth


def predicted_speedup(one, name, sizes, batch, ranks, latency, bandwidth, sync_every=1):
    """One process on R*batch rows a step over R ranks on batch rows each (same result)."""
    c0, c1 = compute_model(one, name, batch)
    size = 4 * n_params(sizes) * (1 if sync_every == 1 else 3)   # local SGD: + momentum
    step = c0 + c1 * batch + ring(ranks, size, latency, bandwidth) / sync_every
    return (c0 + c1 * ranks * batch) / step


def model_tables(one, two):
    """The cost model's predictions, per shape: speed-up against ranks and link speed."""
    times = {int(k): v for k, v in two["allreduce_bytes"].items()}
    alpha, beta = fit_allreduce(times)
    lines = ["## Cost model", "",
             "Per step: compute(rows) + a ring all-reduce of the float32 gradients, "
             "2(R-1) * latency + 2(R-1)/R * bytes / bandwidth. compute(rows) = c0 + c1 * "
             "rows is fitted to the one-rank steps on batch and 2x batch above; the latency "
             f"over a network is taken as {LINK_LATENCY * 1e6:.0f} µs a message (TCP; RDMA "
             "is lower) and the bandwidth as the link's. Speed-up: one process on the R "
             "ranks' rows in one batch, over R ranks.", ""]
    for name, sizes, batch, _ in SHAPES:
        c0, c1 = compute_model(one, name, batch)
        size = 4 * n_params(sizes)
        measured = predicted_speedup(one, name, sizes, batch, 2, alpha / 2, beta)
        lines += [f"**{name}**, batch {batch} per rank: {size / 1e6:.3g} MB of gradients, "
                  f"compute {c0 * 1e6:,.0f} + {c1 * 1e6:.3g} µs per row; on this machine's "
                  f"shared memory (an all-reduce of 2 ranks: {alpha * 1e6:.1f} µs + bytes / "
                  f"{beta / 1e9:.2f} GB/s) "
                  f"2 ranks would give {measured:.2f}x.", "",
                  "| link | " + " | ".join(f"R={r}" for r in MODEL_RANKS) + " |",
                  "|---|" + "---|" * len(MODEL_RANKS)]
        for gbit in LINKS_GBIT:
            cells = [predicted_speedup(one, name, sizes, batch, r, LINK_LATENCY, gbit * 1.25e8)
                     for r in MODEL_RANKS]
            lines.append(f"| {gbit} Gbit/s | " + " | ".join(f"{c:.2f}x" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--output", help="also write the report (Markdown) there")
    parser.add_argument("--json", help="also write the raw measurements (JSON) there")
    parser.add_argument("--model", help="print the report and the cost model of a --json "
                        "file, without measuring")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.quick)
    if args.model:
        with open(args.model) as f:
            saved = json.load(f)
        text, _ = report(saved["one_rank"], saved["two_ranks"], saved.get("command", "?"))
        print(text + "\n" + model_tables(saved["one_rank"], saved["two_ranks"]))
        return None
    one, two = launch(1, args.quick), launch(2, args.quick)
    command = "python benchmarks/bench_distributed.py" + (" --quick" if args.quick else "")
    text, _ = report(one, two, command)
    text += "\n" + model_tables(one, two)
    publish(text, args.output)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"one_rank": one, "two_ranks": two, "command": command}, f, indent=1)


if __name__ == "__main__":
    main()
