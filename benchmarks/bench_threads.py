#!/usr/bin/env python3
"""bpfast and threads: two Networks in two Python threads, and one Network over n_threads.

1. Two networks, two Python threads: two fits one after the other, then the same two fits
   in two threads (each Network at n_threads=1, BLAS held to one thread), medians of
   several runs: the engine releases the GIL, so the threads overlap.
2. One network over n_threads = 1..N (N = the CPUs this process may use), for each of
   bench.py's cases: µs per update of fit (wall clock, the thread counts interleaved,
   medians) and the speedup over one thread. Before timing, one epoch at every count
   must give the bits of n_threads=1 (the script exits with status 1 otherwise).

    python benchmarks/bench_threads.py                       # both parts (a few minutes)
    python benchmarks/bench_threads.py --quick               # < 60 s (tests/CI)
    python benchmarks/bench_threads.py --part scaling --cases 784-128-10 --plot benchmarks/threads.png
"""
import os
import statistics
import sys
import threading
import time

import numpy as np

import bpfast

from _native import (command_line, exit_status, one_blas_thread, parse_timing_args, publish, pyplot,
                     save_figure, timing_parser)
from _timing import BpfastFit, fmt_us, interleaved_medians, load_average, log, same_bits
from cases import CASES, initial_parameters, make_data, select_cases

QUICK_CASES = ["64-64-10:float32", "784-128-10:float32"]


# ----------------------------------------------------------------------------- part 1
def make(sizes, seed):
    return bpfast.Network(sizes, activation="relu", output_activation="softmax",
                          loss="cross_entropy", seed=seed, n_threads=1)


def two_networks(repeats, quick):
    """Two fits in sequence against the same two in two Python threads; markdown lines."""
    rng = np.random.default_rng(0)
    lines = ["| network | batch | sequential | two threads | speedup |",
             "|---|---:|---:|---:|---:|"]
    for sizes, batch, epochs in (([2, 2, 2], 1, 200), ([64, 64, 10], 32, 20),
                                 ([784, 128, 10], 64, 2)):
        if quick:
            epochs = max(1, epochs // 10)
        X = rng.normal(size=(4096, sizes[0]))
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 4096)]
        kw = dict(epochs=epochs, batch_size=batch, lr=0.01, shuffle=True, seed=1)
        seq, par = [], []
        with one_blas_thread():
            for _ in range(repeats):
                nets = [make(sizes, 1), make(sizes, 2)]
                start = time.perf_counter()
                for net in nets:
                    net.fit(X, Y, **kw)
                seq.append(time.perf_counter() - start)
                nets = [make(sizes, 1), make(sizes, 2)]
                threads = [threading.Thread(target=net.fit, args=(X, Y), kwargs=kw) for net in nets]
                start = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                par.append(time.perf_counter() - start)
        s, p = statistics.median(seq), statistics.median(par)
        lines.append(f"| {'-'.join(map(str, sizes))} | {batch} | {s * 1e3:.1f} ms | "
                     f"{p * 1e3:.1f} ms | {s / p:.2f}x |")
        log(f"  two networks: {'-'.join(map(str, sizes))} done")
    return lines


# ----------------------------------------------------------------------------- part 2
def scaling(cases, counts, repeats, block):
    """[(case, {n_threads: seconds per update}, {n_threads: CPUs busy}, same bits at every
    count)] for one Network."""
    out = []
    for case in cases:
        log(f"[{case.name}] n_threads {counts[0]}..{counts[-1]}")
        data, init = make_data(case), initial_parameters(case)
        impls = [BpfastFit(case, data, init, k, name=f"bpfast fit, n_threads={k}") for k in counts]
        for impl in impls:                      # one epoch at each count: the same bits?
            impl.run(case.n_batches)
        bits = all(same_bits(impl.weights(), impls[0].weights()) for impl in impls[1:])
        busy = {}
        medians = interleaved_medians(impls, repeats, block, label=case.name, busy=busy)
        out.append((case, {k: medians[impl.name] for k, impl in zip(counts, impls)},
                    {k: busy[impl.name] for k, impl in zip(counts, impls)}, bits))
    return out


def scaling_table(rows, counts):
    """Markdown lines: µs per update at each count, then the speedup over one thread."""
    head = ["network", "batch", "dtype"] + [f"{k} thread{'s' * (k > 1)} µs" for k in counts]
    head += [f"speedup at {k}" for k in counts[1:]]
    head += [f"CPUs busy at {counts[-1]}", "same bits"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|---:|---|" + "---:|" * (2 * len(counts)) + "---|"]
    for case, t, busy, bits in rows:
        cells = [case.key, str(case.batch), case.dtype] + [fmt_us(t[k]) for k in counts]
        cells += [f"{t[counts[0]] / t[k]:.2f}x" for k in counts[1:]]
        cells.append(f"{busy[counts[-1]]:.2f}")
        cells.append("yes" if bits else "**NO**")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(rows, counts, path):
    """Speedup over one thread against n_threads, a line per case; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(counts, counts, "k--", lw=1, label="linear")
    for case, t, *_ in rows:
        ax.plot(counts, [t[counts[0]] / t[k] for k in counts], "o-", label=case.name)
    ax.set_xlabel("n_threads")
    ax.set_ylabel("speedup of fit over n_threads=1")
    ax.set_xticks(counts)
    ax.set_title("bpfast: one network over n_threads")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(plt, fig, path)
    return True


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = timing_parser(__doc__, "short runs; scaling on " + " ".join(QUICK_CASES) + " only (< 60 s)",
                      quick_block=0.02, timer=False)
    p.add_argument("--part", choices=("all", "two", "scaling"), default="all")
    p.add_argument("--cases", nargs="*", metavar="CASE",
                   help="scaling cases, e.g. 64-64-10 784-128-10:float64 (default: all of "
                        "bench.py's: " + ", ".join(dict.fromkeys(c.key for c in CASES)) + ")")
    p.add_argument("--max-threads", type=int,
                   help="largest n_threads of the scaling (default: the CPUs this process may use)")
    p.add_argument("--plot", help="save the scaling plot here (PNG; needs matplotlib)")
    p.add_argument("--output", help="also write the markdown here")
    args = parse_timing_args(p, argv)
    repeats, block = args.repeats, args.block
    n_max = args.max_threads or len(os.sched_getaffinity(0))
    if n_max < 1:
        p.error("--max-threads must be at least 1")
    counts = list(range(1, n_max + 1))

    lines = ["# bpfast and threads", "",
             f"- {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable by this process; "
             f"bpfast's default n_threads here: {bpfast.default_threads()}; load average "
             f"(1 min) at the start: {load_average()}", ""]
    if args.part in ("all", "two"):
        lines += ["## Two networks in two Python threads (n_threads=1 each, BLAS at 1 thread; "
                  f"medians of {2 if args.quick else 5})", ""]
        lines += two_networks(2 if args.quick else 5, args.quick) + [""]
    ok = True
    if args.part in ("all", "scaling"):
        cases = select_cases(args.cases or (QUICK_CASES if args.quick else None))
        rows = scaling(cases, counts, repeats, block)
        ok = all(bits for *_, bits in rows)
        lines += [f"## One network over n_threads (fit, µs per update, wall clock, medians of "
                  f"{repeats})", ""]
        lines += scaling_table(rows, counts) + [""]
        if args.plot:
            if plot(rows, counts, args.plot):
                lines += [f"Plot: `{args.plot}`", ""]
            else:
                lines += ["No plot: matplotlib is not installed.", ""]
    lines += [f"Load average (1 min) at the end: {load_average()}.", ""]
    lines += [f"Command: `{command_line(__file__, argv)}`", ""]
    publish("\n".join(lines), args.output)
    return exit_status(ok, "n_threads CHANGED THE BITS of an epoch; see the table.")

if __name__ == "__main__":
    sys.exit(main())
