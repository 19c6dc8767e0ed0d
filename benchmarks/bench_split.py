"""Where cutting a product for the thread team pays: its cost on one thread, its gain on two.

bpfast cuts a BLAS product of at least 2 * SPLIT_PRODUCT multiply-adds into 2, 4 ... blocks
of C's rows or columns (at most SPLIT_MAX_BLOCKS, from the machine's CPU count), by its shape
alone, so that the bits are the same at every thread
count (src/bpfast/_kernels.pyx). This times the products of the benchmark networks' layers
(forward X @ W, weight gradient A.T @ delta, error delta @ W.T) three ways, taking turns:
whole on one thread, cut on one thread, cut on two threads; medians in µs. A product the
register kernel runs (the "path" column) is not cut on one thread: it splits between
threads wherever it likes, with the same bits.

    python benchmarks/bench_split.py [--repeats 9] [--threads 2]
"""
import argparse
import time

import numpy as np

from bpfast import _kernels

UNCUT = 1 << 50         # a SPLIT_PRODUCT no product reaches


def layer_products(batch, n_in, n_out):
    """(name, m, n, k, trans_a, trans_b) of one layer's three products."""
    return [(f"X@W    {batch}x{n_in} @ {n_in}x{n_out}", batch, n_out, n_in, False, False),
            (f"A.T@d  {n_in}x{batch} @ {batch}x{n_out}", n_in, n_out, batch, True, False),
            (f"d@W.T  {batch}x{n_out} @ {n_out}x{n_in}", batch, n_in, n_out, False, True)]


SHAPES = sorted({p for b, i, o in ((32, 784, 128), (64, 784, 128), (256, 784, 128),
                                   (1024, 784, 128), (256, 784, 1024), (256, 1024, 1024),
                                   (64, 128, 64), (32, 256, 256), (128, 256, 256))
                 for p in layer_products(b, i, o)}, key=lambda p: p[1] * p[2] * p[3])


def operands(m, n, k, trans_a, trans_b, dtype, rng):
    A = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    return A, B, np.empty((m, n), dtype)


def time_once(A, B, C, trans_a, trans_b, n_threads, cut, reps):
    default = _kernels.split_thresholds()[0]
    _kernels.split_thresholds(product=default if cut else UNCUT)
    try:
        start = time.perf_counter()
        for _ in range(reps):
            _kernels.matmul(A, B, trans_a, trans_b, out=C, n_threads=n_threads)
        return (time.perf_counter() - start) / reps
    finally:
        _kernels.split_thresholds(product=default)


def main(repeats, threads, dtypes):
    rng = np.random.default_rng(0)
    print(f"SPLIT_PRODUCT, SPLIT_ELEMENTS, SPLIT_MAX_BLOCKS = {_kernels.split_thresholds()}; "
          f"1 thread whole / cut, {threads} threads cut; µs medians")
    print(f"{'dtype':8} {'product':34} {'path':6} {'MACs':>8} {'whole':>9} {'cut':>9} {'cut/whole':>9} "
          f"{f'{threads} thr':>9} {'speedup':>8}")
    for dtype in dtypes:
        for name, m, n, k, ta, tb in SHAPES:
            A, B, C = operands(m, n, k, ta, tb, dtype, rng)
            reps = max(1, int(2e7 / (m * n * k)))
            runs = {"whole": [], "cut": [], "threads": []}
            for _ in range(repeats):        # take turns, so that noise hits all alike
                runs["whole"].append(time_once(A, B, C, ta, tb, 1, False, reps))
                runs["cut"].append(time_once(A, B, C, ta, tb, 1, True, reps))
                runs["threads"].append(time_once(A, B, C, ta, tb, threads, True, reps))
            whole, cut, par = (np.median(runs[key]) * 1e6 for key in ("whole", "cut", "threads"))
            path = "kernel" if _kernels.small_gemm_used(m, n, k, dtype, ta) and not tb else "BLAS"
            print(f"{dtype:8} {name:34} {path:6} {m * n * k / 1e6:7.1f}M {whole:9.1f} {cut:9.1f} "
                  f"{cut / whole:9.2f} {par:9.1f} {whole / par:7.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 repeats, float32 only")
    args = parser.parse_args()
    main(3 if args.quick else args.repeats, args.threads,
         ["float32"] if args.quick else ["float32", "float64"])
