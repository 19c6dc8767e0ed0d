"""Inference: bpfast's predict beside onnxruntime and a NumPy forward, at every batch size,
on one thread and on every thread.

    python benchmarks/bench_predict.py               # full run (~3-5 min)
    python benchmarks/bench_predict.py --quick       # fewer, shorter rounds: < 60 s
    python benchmarks/bench_predict.py --networks 784-128-10 --dtypes float32 --batches 1 32
    python benchmarks/bench_predict.py --output /tmp/predict.md

The same weights run three ways: ``bpfast.Network.predict``; onnxruntime on the graph
``bpfast.export_onnx`` writes (one Gemm and its activation per layer, built with the
``onnx`` package; the column is skipped when onnx or onnxruntime is not installed); and a
NumPy forward (``X @ W + b``, ReLU in place, a max-shifted softmax), all in the network's
dtype. Networks 784-128-10 and 784-1024-1024-10 (ReLU hidden, softmax output) in float32
and float64, batches 1, 32, 256 and 1024, each at two thread settings:

- ``1``: bpfast ``n_threads=1`` (where predict takes it; BLAS is limited to one thread
  either way), onnxruntime ``intra_op_num_threads=1, inter_op_num_threads=1``, NumPy with
  BLAS limited to one thread through threadpoolctl;
- ``default``: each library as it comes (bpfast's default n_threads, onnxruntime's default
  session options, NumPy's BLAS with its own thread count), each timed alone in a process
  of its own, the contenders' processes taking turns: a runtime's worker threads spin for
  a while after each call (onnxruntime's, OpenBLAS's, bpfast's), so in a shared process
  they would take a CPU from whichever contender runs next.

Before timing, the three outputs for the same input must agree to the tolerance in
``TOLERANCE`` (largest absolute difference of the softmax probabilities). Times are
wall-clock medians, in µs per call, of interleaved blocks (one block of each contender
per round, the order rotated every round) so that a slow spell of a shared machine hits
all alike. The script exits with status 1 if the outputs disagree.
"""
import argparse
import contextlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import bpfast
from _native import command_line, one_blas_thread, publish

try:
    import onnx
    import onnxruntime
except ImportError:                      # pragma: no cover
    onnx = onnxruntime = None

NETWORKS = {"784-128-10": [784, 128, 10], "784-1024-1024-10": [784, 1024, 1024, 10]}
BATCHES = (1, 32, 256, 1024)
DTYPES = ("float32", "float64")
THREADS = ("1", "default")
# "bpfast": Network.predict (live weights, packed once two calls find them unchanged);
# "predictor": Network.predictor(), a frozen copy, packed at once, as an onnxruntime
# session is a frozen copy.
CONTENDERS = ("bpfast", "predictor", "onnxruntime", "NumPy")
BPFAST = ("bpfast", "predictor")
# Largest absolute difference allowed between two contenders' softmax outputs (values in
# [0, 1]): the three sum the products in different orders.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
# The goals measured here: bpfast at least as fast as onnxruntime in every row, and a
# float32 784-128-10 prediction of one row under this many µs on one thread.
BATCH1_GOAL_US = 10.0
PREDICT_TAKES_THREADS = "n_threads" in inspect.signature(bpfast.Network.predict).parameters


def make_network(sizes, dtype):
    return bpfast.Network(sizes, activation="relu", output_activation="softmax",
                          loss="cross_entropy", dtype=dtype, seed=0)


def numpy_forward(net):
    """The forward pass in NumPy, on copies of net's parameters (in net's dtype)."""
    weights = [np.array(W) for W in net.weights]
    biases = [np.array(b) for b in net.biases]

    from peers import NumpyMLP

    def run(X):
        A = X
        for W, b in zip(weights[:-1], biases[:-1]):
            A = A @ W
            A += b
            NumpyMLP._activate(A, "relu")
        Z = A @ weights[-1]
        Z += biases[-1]
        return NumpyMLP._activate(Z, "softmax")
    return run


def bpfast_predict(net, threads):
    if threads == "1" and PREDICT_TAKES_THREADS:
        return lambda X: net.predict(X, n_threads=1)
    return net.predict


def onnxruntime_predict(net, threads):
    """A function running net's exported graph in onnxruntime, or None without it."""
    if onnxruntime is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        model = bpfast.export_onnx(net, os.path.join(tmp, "net.onnx"))
    options = onnxruntime.SessionOptions()
    if threads == "1":
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda X: session.run(None, {name: X})[0]


def thread_limit(threads):
    """BLAS held to one thread for the '1' setting (bpfast's and NumPy's products)."""
    return one_blas_thread() if threads == "1" else contextlib.nullcontext()


def largest_differences(fns, X):
    """{(a, b): max |a(X) - b(X)|} over the pairs of contenders, in float64."""
    outs = {name: np.asarray(fn(X), dtype=np.float64) for name, fn in fns.items()}
    names = list(outs)
    return {(a, b): float(np.max(np.abs(outs[a] - outs[b])))
            for i, a in enumerate(names) for b in names[i + 1:]}


def calls_per_block(fn, X, block_seconds):
    """How many calls of fn(X) fill about block_seconds (at least one)."""
    fn(X)                                   # warm: first-call allocations, thread start-up
    number, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn(X)
        elapsed = time.perf_counter() - start
        if elapsed >= block_seconds / 4 or number >= 1 << 20:
            break
        number *= 4
    return max(1, int(number * block_seconds / max(elapsed, 1e-9)))


def block_us(fn, X, number):
    """µs per call of fn(X) over a block of `number` calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn(X)
    return (time.perf_counter() - start) / number * 1e6


def interleaved_medians(fns, X, rounds, block_seconds):
    """{name: median µs per call} over `rounds` rounds of one block per contender."""
    numbers = {name: calls_per_block(fn, X, block_seconds) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(block_us(fns[name], X, numbers[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def contender(name, net, threads):
    """The predict function of contender `name` for net at a thread setting (None: absent)."""
    if name == "bpfast":
        return bpfast_predict(net, threads)
    if name == "predictor":
        return bpfast_predict(net.predictor(), threads)
    if name == "onnxruntime":
        return onnxruntime_predict(net, threads)
    return numpy_forward(net)


def worker(args):
    """--worker NAME: one block per batch of contender NAME at default threads, alone in
    this process; prints {batch: µs per call} as JSON."""
    net = make_network(NETWORKS[args.networks[0]], args.dtypes[0])
    fn = contender(args.worker, net, "default")
    X = np.random.default_rng(0).random((max(args.batches), net.sizes[0])).astype(net.dtype)
    out = {}
    for batch in args.batches:
        Xb = np.ascontiguousarray(X[:batch])
        number = calls_per_block(fn, Xb, args.block)
        out[batch] = [block_us(fn, Xb, number) for _ in range(BLOCKS_PER_PROCESS)]
    print(json.dumps(out))


# Blocks a worker process times per batch: rounds / BLOCKS_PER_PROCESS processes a contender.
BLOCKS_PER_PROCESS = 3


def medians_alone(names, net_name, dtype, args):
    """{batch: {name: median µs per call}}, each contender alone in its own process, the
    processes taking turns (the order rotated every round)."""
    times = {batch: {name: [] for name in names} for batch in args.batches}
    for r in range(max(1, args.rounds // BLOCKS_PER_PROCESS)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            command = [sys.executable, os.path.abspath(__file__), "--worker", name,
                       "--networks", net_name, "--dtypes", dtype, "--block", str(args.block),
                       "--batches", *map(str, args.batches)]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            for batch, blocks in json.loads(result.stdout.splitlines()[-1]).items():
                times[int(batch)][name] += blocks
    return {batch: {name: statistics.median(t) for name, t in per.items()}
            for batch, per in times.items()}


def measure(args):
    """(rows, checks): one row per (network, dtype, threads, batch), one check per
    (network, dtype, threads)."""
    rng = np.random.default_rng(0)
    rows, checks = [], []
    for net_name in args.networks:
        for dtype in args.dtypes:
            net = make_network(NETWORKS[net_name], dtype)
            for threads in args.threads:
                fns = {name: contender(name, net, threads) for name in CONTENDERS}
                fns = {k: v for k, v in fns.items() if v is not None}
                with thread_limit(threads):
                    X = rng.random((max(args.batches), net.sizes[0])).astype(dtype)
                    diffs = largest_differences(fns, X)
                    checks.append((net_name, dtype, threads, diffs))
                    alone = (medians_alone(list(fns), net_name, dtype, args)
                             if threads == "default" else None)
                    for batch in args.batches:
                        Xb = np.ascontiguousarray(X[:batch])
                        med = (alone[batch] if alone is not None else
                               interleaved_medians(fns, Xb, args.rounds, args.block))
                        rows.append((net_name, dtype, threads, batch, med))
                        print(f"  {net_name} {dtype} threads={threads} batch {batch}: "
                              + ", ".join(f"{k} {v:.1f} µs" for k, v in med.items()),
                              file=sys.stderr, flush=True)
    return rows, checks


def fmt(us):
    return "—" if us is None else f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def fmt_ratio(ratio):
    return "—" if ratio is None else f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def ratio_of(med, name="bpfast"):
    if "onnxruntime" not in med:
        return None
    return med["onnxruntime"] / med[name]


def verdict(ratio):
    return "—" if ratio is None else "met" if ratio >= 1 else "**missed**"


def report(args, rows, checks, elapsed):
    agree = all(d <= TOLERANCE[dtype] for _, dtype, _, diffs in checks for d in diffs.values())
    lines = ["# bpfast predict vs onnxruntime vs NumPy", "",
             "µs per call (wall-clock medians of interleaved blocks, "
             f"{args.rounds} rounds of about {args.block * 1e3:g} ms per contender; at "
             "default threads each contender alone in a process of its own, the processes "
             "taking turns); "
             "ort / X > 1 means X is faster. bpfast: `Network.predict`, which keeps its "
             "wide layers' weights packed once two calls find them unchanged; predictor: "
             "`Network.predictor().predict`, a frozen copy packed at once (an onnxruntime "
             "session is a frozen copy too). Goal columns: no slower than onnxruntime.", ""]
    if onnxruntime is None:
        lines += ["onnxruntime (or onnx) is not installed: its column is skipped.", ""]
    lines += ["| network | dtype | threads | batch | bpfast | predictor | onnxruntime | NumPy | "
              "ort / bpfast | ort / predictor | goal bpfast | goal predictor |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for net_name, dtype, threads, batch, med in rows:
        ratios = [ratio_of(med, name) for name in BPFAST]
        lines.append(f"| {net_name} | {dtype} | {threads} | {batch} | {fmt(med['bpfast'])} | "
                     f"{fmt(med['predictor'])} | {fmt(med.get('onnxruntime'))} | "
                     f"{fmt(med['NumPy'])} | {fmt_ratio(ratios[0])} | {fmt_ratio(ratios[1])} | "
                     f"{verdict(ratios[0])} | {verdict(ratios[1])} |")
    lines += ["", "## Goals", ""]
    for name in BPFAST:
        ratios = [(r[:4], ratio_of(r[4], name)) for r in rows if ratio_of(r[4], name) is not None]
        lines.append(goal_line(name, ratios, f"ort / {name}"))
    batch1 = [r[4]["bpfast"] for r in rows if r[:4] == ("784-128-10", "float32", "1", 1)]
    if batch1:
        ok = batch1[0] < BATCH1_GOAL_US
        lines.append(f"- float32 784-128-10 batch 1 on one thread under {BATCH1_GOAL_US:g} µs: "
                     f"{'met' if ok else '**missed**'} ({batch1[0]:.2f} µs)")
    else:
        lines.append("- float32 784-128-10 batch 1 on one thread: not in this run")
    lines += ["", "## Check", "",
              f"Before timing, each pair's largest absolute difference of the outputs on "
              f"{max(args.batches)} rows (tolerance: float32 {TOLERANCE['float32']:g}, "
              f"float64 {TOLERANCE['float64']:g}):", "",
              "| network | dtype | threads | pair | max abs difference | within |",
              "|---|---|---|---|---|---|"]
    for net_name, dtype, threads, diffs in checks:
        for (a, b), d in diffs.items():
            ok = "yes" if d <= TOLERANCE[dtype] else "**NO**"
            lines.append(f"| {net_name} | {dtype} | {threads} | {a} / {b} | {d:.2e} | {ok} |")
    lines += ["", "## Machine", "", *machine_lines(), "",
              f"Command: `{command_line(__file__)}`; {elapsed:.0f} s."]
    return "\n".join(lines) + "\n", agree


def combine(paths):
    """The reports of several runs (--output files) as one: for each row, the ratio of
    every run and their median. On a shared machine one run's medians move by a few
    percent, so a row where both runtimes multiply at the FMA peak can land on either
    side of 1 from run to run; the median of the runs' ratios tells where it lies."""
    runs, order = {}, []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) != 12 or cells[0] not in NETWORKS:
                    continue
                key = tuple(cells[:4])
                if key not in runs:
                    order.append(key)
                runs.setdefault(key, []).append(
                    tuple(None if c == "—" else float(c.rstrip("x")) for c in cells[8:10]))
    lines = [f"# bpfast predict vs onnxruntime over {len(paths)} runs", "",
             "ort / X of each run, then their median; runs: "
             + ", ".join(f"`{p}`" for p in paths) + ".", "",
             "| network | dtype | threads | batch | ort / bpfast, each run | median | "
             "ort / predictor, each run | median |", "|---|---|---|---|---|---|---|---|"]
    medians = {name: [] for name in BPFAST}
    for key in order:
        cells = list(key)
        for i, name in enumerate(BPFAST):
            ratios = [r[i] for r in runs[key] if r[i] is not None]
            median = statistics.median(ratios) if ratios else None
            if median is not None:
                medians[name].append((key, median))
            cells += [", ".join(fmt_ratio(r) for r in ratios), fmt_ratio(median)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Goals (medians over the runs)", ""]
    lines += [goal_line(name, found, "median") for name, found in medians.items()]
    return "\n".join(lines) + "\n"


def goal_line(name, ratios, what):
    """The goal's verdict for contender `name` from its [(row key, ratio)]: met when no
    ratio is below 1, with the lowest (`what` names the ratio)."""
    if not ratios:
        return f"- {name} never slower than onnxruntime: not measured (no onnxruntime)"
    slower = [key for key, ratio in ratios if ratio < 1]
    worst_key, worst = min(ratios, key=lambda kr: kr[1])
    text = "met" if not slower else f"**missed** in {len(slower)} of {len(ratios)} rows"
    return (f"- {name} never slower than onnxruntime: {text} (lowest {what} "
            f"{fmt_ratio(worst)} at {' '.join(map(str, worst_key))})")


def machine_lines():
    """bench.py's machine list (CPU, versions, BLAS libraries), plus onnx's versions."""
    from report import machine_info
    return [machine_info(),
            f"- onnx {getattr(onnx, '__version__', 'not installed')}, onnxruntime "
            f"{getattr(onnxruntime, '__version__', 'not installed')}",
            "- bpfast predict " + ("takes n_threads (the '1' rows pass n_threads=1)"
                                   if PREDICT_TAKES_THREADS else
                                   "has no n_threads in this build: its only threads are BLAS's")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (< 60 s)")
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--threads", nargs="+", choices=THREADS, default=list(THREADS))
    parser.add_argument("--rounds", type=int, help="rounds per row (default 15, quick 3)")
    parser.add_argument("--block", type=float, help="seconds per block (default 0.05, quick 0.005)")
    parser.add_argument("--output", help="also write the markdown report here")
    parser.add_argument("--combine", nargs="+", metavar="REPORT",
                        help="no timing: the reports of earlier runs (--output) as one, "
                             "each row's ratios and their median")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batches):
        parser.error("--batches must be >= 1")
    args.rounds = args.rounds or (3 if args.quick else 15)
    args.block = args.block or (0.005 if args.quick else 0.05)
    if args.worker:
        worker(args)
        return 0
    if args.combine:
        publish(combine(args.combine), args.output)
        return 0
    start = time.perf_counter()
    rows, checks = measure(args)
    text, agree = report(args, rows, checks, time.perf_counter() - start)
    publish(text, args.output)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
