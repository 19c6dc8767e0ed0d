"""The timing the benchmark scripts share: what an implementation is (Impl), calibration,
one timed block, interleaved medians, and bpfast's own fit as an implementation (BpfastFit).

The scheme (bench.py's, bench_optimizers.py's, bench_threads.py's and bench_jax.py's): each
implementation is calibrated to blocks of about `block` seconds, the implementations of a
case take turns (their order rotates every repetition), every block starts from the case's
initial weights, and the figure is the median of the blocks, by _native.clock().
"""
import gc
import math
import os
import statistics
import sys
import time

import numpy as np

import bpfast
from _native import clock
from cases import LR


def log(msg):
    """Progress, on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


class Impl:
    """One implementation of one case. run(n) makes >= n updates and returns (seconds, updates)."""
    name = "?"
    reps_cap = None          # at most this many repetitions (the slow reference)
    inner_wall = None        # wall-clock seconds of the last run() as measured inside it, when
                             # the caller's clock would count more (FANN's process start)

    def reset(self):
        pass

    def run(self, n):
        raise NotImplementedError

    def weights(self):
        """[(W (n_in, n_out), b)] as NumPy arrays, for the correctness check."""
        raise NotImplementedError


class ArrayParams(Impl):
    """Parameters held as NumPy arrays, W of shape (n_in, n_out): params() lists them."""

    def params(self):
        """([W], [b]): the implementation's own arrays, updated in place by its steps."""
        raise NotImplementedError

    def reset(self):
        for W, b, W0, b0 in zip(*self.params(), *self.init):
            W[...] = W0
            b[...] = b0

    def weights(self):
        return [(W.copy(), b.copy()) for W, b in zip(*self.params())]


class BpfastFit(ArrayParams):
    """Network.fit over the case's data set (shuffle off) at n_threads (None: bpfast's
    default); the time of the whole call / History.n_updates. Subclasses may change the
    batch, the updates per epoch and the keywords of fit (fit_kw)."""
    name = "bpfast fit"
    backend = "cython"

    def __init__(self, case, data, init, n_threads=None, name=None):
        self.case, (self.X, self.Y), self.init = case, data[:2], init
        self.net = bpfast.Network(list(case.sizes), case.activation, case.output_activation,
                                  case.loss, dtype=case.dtype, backend=self.backend, seed=0,
                                  n_threads=n_threads)
        if name is not None:
            self.name = name
        self.batch, self.per_epoch, self.fit_kw = case.batch, case.n_batches, dict(lr=LR)
        self.last_cpu = None        # process CPU seconds of the last run(), all threads
        self.reset()

    def params(self):
        return self.net.weights, self.net.biases

    def fit(self, epochs):
        """The History of `epochs` epochs of fit from the current weights."""
        return self.net.fit(self.X, self.Y, epochs=epochs, batch_size=self.batch,
                            shuffle=False, **self.fit_kw)

    def run(self, n):
        """Make at least n updates (whole epochs); (seconds by the chosen timer, updates)."""
        epochs = max(1, math.ceil(n / self.per_epoch))
        c0, t0 = time.process_time(), clock()
        hist = self.fit(epochs)
        t = clock() - t0
        self.last_cpu = time.process_time() - c0
        return t, hist.n_updates


def same_bits(a, b):
    """Whether two [(W, b)] lists hold exactly the same numbers."""
    return all(np.array_equal(x, y) for (Wa, ba), (Wb, bb) in zip(a, b)
               for x, y in ((Wa, Wb), (ba, bb)))


def calibrate(impl, block):
    """Updates per block so that one block of impl takes about `block` seconds (a capped,
    slow implementation settles for a shorter first measurement)."""
    n = 1
    while True:
        t, done = impl.run(n)
        impl.reset()
        if t >= block / 4 or (impl.reps_cap and t >= block / 20):
            return max(1, math.ceil(done * block / max(t, 1e-9)))
        n = done * (4 if t < block / 40 else 2)


def timed_block(impl, n):
    """One timed block of impl, of at least n updates: after a reset and a garbage
    collection, run with the collector off. Returns (seconds by the chosen timer,
    updates done, wall-clock seconds)."""
    impl.reset()
    gc.collect()
    gc.disable()
    try:
        w0 = time.perf_counter()
        t, done = impl.run(n)
        wall = time.perf_counter() - w0
    finally:
        gc.enable()
    return t, done, wall


def interleaved_medians(impls, repeats, block, label="", busy=None):
    """{impl.name: median seconds per update} over `repeats` blocks of each impl, the impls
    taking turns. If `busy` is a dict, busy[impl.name] gets the median of process CPU time /
    wall time over the blocks of each impl with a `last_cpu`: how many CPUs the process kept
    busy (a thread spinning while it waits counts as busy, one descheduled by another
    process's work does not)."""
    sizes = {}
    for impl in impls:                  # warm-up (JAX compiles here) and block length
        impl.run(2)
        impl.reset()
        sizes[impl.name] = calibrate(impl, block)
    samples = {impl.name: [] for impl in impls}
    cpus = {impl.name: [] for impl in impls}
    gc.collect()
    gc.freeze()         # torch & co. leave ~1e6 objects: keep timed_block's gc.collect() cheap
    try:
        for rep in range(repeats):
            k = rep % len(impls)
            for impl in impls[k:] + impls[:k]:
                t, done, wall = timed_block(impl, sizes[impl.name])
                samples[impl.name].append(t / done)
                if getattr(impl, "last_cpu", None) is not None:
                    cpus[impl.name].append(impl.last_cpu / wall)
            log(f"  {label} rep {rep + 1}/{repeats}")
    finally:
        gc.unfreeze()
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

