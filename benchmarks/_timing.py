"""Wall-clock timing of `fit` at a chosen n_threads, shared by bench_threads.py and bench_jax.py.

Process CPU time (bench.py's default clock) adds up the time of every thread, so it would
hide a multi-threaded speedup: these scripts time with time.perf_counter. As in bench.py,
each implementation is calibrated to blocks of about `block` seconds, the implementations
of a case take turns (their order rotates every repetition), every block starts from the
case's initial weights, and the figure is the median of the blocks.
"""
import gc
import math
import os
import statistics
import sys
import time

import numpy as np

import bpfast
from cases import LR


def log(msg):
    """Progress, on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


class BpfastFit:
    """Network.fit over the case's data set (shuffle off) at a fixed n_threads."""

    def __init__(self, case, data, init, n_threads, name=None):
        self.case, (self.X, self.Y), self.init = case, data[:2], init
        self.net = bpfast.Network(list(case.sizes), case.activation, case.output_activation,
                                  case.loss, dtype=case.dtype, seed=0, n_threads=n_threads)
        self.name = name or f"bpfast fit, n_threads={n_threads}"
        self.last_cpu = None        # process CPU seconds of the last run(), all threads
        self.reset()

    def reset(self):
        for W, b, W0, b0 in zip(self.net.weights, self.net.biases, *self.init):
            W[...] = W0
            b[...] = b0

    def run(self, n):
        """Make at least n updates (whole epochs); (wall seconds, updates)."""
        epochs = max(1, math.ceil(n / self.case.n_batches))
        c0, t0 = time.process_time(), time.perf_counter()
        hist = self.net.fit(self.X, self.Y, epochs=epochs, batch_size=self.case.batch, lr=LR,
                            shuffle=False)
        t = time.perf_counter() - t0
        self.last_cpu = time.process_time() - c0
        return t, hist.n_updates

    def weights(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.net.weights, self.net.biases)]


def same_bits(a, b):
    """Whether two [(W, b)] lists hold exactly the same numbers."""
    return all(np.array_equal(x, y) for (Wa, ba), (Wb, bb) in zip(a, b)
               for x, y in ((Wa, Wb), (ba, bb)))


def calibrate(impl, block):
    """Updates per block so that one block of impl takes about `block` seconds."""
    n = 1
    while True:
        t, done = impl.run(n)
        impl.reset()
        if t >= block / 4:
            return max(1, math.ceil(done * block / max(t, 1e-9)))
        n = done * (4 if t < block / 40 else 2)


def interleaved_medians(impls, repeats, block, label="", busy=None):
    """{impl.name: median wall seconds per update} over `repeats` blocks of each impl,
    the impls taking turns. If `busy` is a dict, busy[impl.name] gets the median of
    process CPU time / wall time over the blocks of each impl with a `last_cpu`: how many
    CPUs the process kept busy (a thread spinning while it waits counts as busy, one
    descheduled by another process's work does not)."""
    sizes = {}
    for impl in impls:                  # warm-up (JAX compiles here) and block length
        impl.run(2)
        impl.reset()
        sizes[impl.name] = calibrate(impl, block)
    samples = {impl.name: [] for impl in impls}
    cpus = {impl.name: [] for impl in impls}
    gc.collect()
    for rep in range(repeats):
        k = rep % len(impls)
        for impl in impls[k:] + impls[:k]:
            impl.reset()
            gc.collect()
            gc.disable()
            try:
                t, done = impl.run(sizes[impl.name])
            finally:
                gc.enable()
            samples[impl.name].append(t / done)
            if getattr(impl, "last_cpu", None) is not None:
                cpus[impl.name].append(impl.last_cpu / t)
        log(f"  {label} rep {rep + 1}/{repeats}")
    if busy is not None:
        busy.update({name: statistics.median(v) for name, v in cpus.items() if v})
    return {name: statistics.median(v) for name, v in samples.items()}


def load_average():
    """The 1-minute load average, as text ('?' where the OS has none)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "?"


def fmt_us(seconds):
    """Seconds per update as µs, with the digits that matter at that size."""
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 1000 else f"{us:.1f}" if us >= 10 else f"{us:.2f}"
