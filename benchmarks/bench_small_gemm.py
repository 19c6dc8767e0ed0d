"""The small-product kernel (_smallgemm.h, AVX2 + FMA) against OpenBLAS, by shape.

gemm() sends C := op(A) @ B to the kernel when it is on (automatically on an AVX2 CPU
without AVX-512) and op(A) and B take at most SMALL_GEMM_BYTES together. This script
times both paths (the kernel past the limit too) on the products of bench.py's
networks and around that limit, in native code (no Python per call), the two paths
taking turns; one thread, medians. The last column says which one gemm() picks.

    python benchmarks/bench_small_gemm.py
"""
import argparse

import numpy as np

from bpfast import _kernels

from _native import load_step_phases, one_blas_thread

step_phases = load_step_phases()

# (m, k, n, op(A) = A.T): C is (m, n) = op(A) (m, k) @ B (k, n)
SHAPES = [
    (16, 4, 16, False), (16, 16, 3, False), (16, 3, 16, False),         # 4-16-3 at batch 16
    (32, 64, 64, False), (32, 64, 10, False), (32, 10, 64, False),      # 64-64-10 at batch 32
    (64, 32, 10, True), (64, 32, 64, True),
    (64, 128, 10, False), (128, 64, 10, True), (64, 10, 128, False),    # 784-128-10 at 64
    (64, 64, 64, False), (128, 64, 64, False), (64, 128, 128, False),   # around the limit
    (128, 32, 128, True), (32, 256, 256, False), (784, 64, 128, True),
    (32, 784, 128, False), (1024, 784, 128, False), (1437, 64, 64, False),   # larger layers
    (64, 1437, 64, True), (512, 512, 128, True),
    (1, 784, 1024, False), (32, 1024, 1024, False), (256, 1024, 1024, False),  # long rows of B
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flops", type=float, default=3e7,
                        help="floating-point operations per timed run (default 3e7)")
    parser.add_argument("--level", type=int, choices=(1, 2),
                        help="SIMD level cap for the kernel (1: its AVX2 variant; default: the CPU's)")
    args = parser.parse_args(argv)
    if args.level is not None:
        _kernels.simd_level(args.level)
    on = _kernels.small_gemm(1)
    if not on:
        print("the small-product kernel needs AVX2 + FMA, which this CPU lacks")
        return
    print(f"SIMD level {_kernels.simd_level()} (1: the kernel's AVX2 variant, 2: its AVX-512 one)")
    print("C = op(A) @ B, µs per call (median of 7 runs, the paths taking turns), one thread")
    print(f"{'dtype':>7} {'m':>5} {'k':>5} {'n':>5} {'op(A)':>5} {'KB':>6}  {'BLAS':>9} "
          f"{'kernel':>9} {'speedup':>8}  gemm() uses")
    rng = np.random.default_rng(0)
    with one_blas_thread():
        for dtype in (np.float64, np.float32):
            size = np.dtype(dtype).itemsize
            for m, k, n, trans_a in SHAPES:
                A = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
                B = rng.normal(size=(k, n)).astype(dtype)
                C = np.empty((m, n), dtype)
                reps = max(1, int(args.flops / (2 * m * n * k)))
                times = {0: [], 2: []}
                for turn in range(6):
                    for mode in ((0, 2) if turn % 2 else (2, 0)):    # 2: past the limits too
                        _kernels.small_gemm(mode)
                        times[mode].append(step_phases.time_gemm(A, B, C, trans_a, reps))
                _kernels.small_gemm(-1)
                blas, kernel = np.median(times[0]) * 1e6, np.median(times[2]) * 1e6
                kb = (m * k + k * n) * size
                used = "kernel" if _kernels.small_gemm_used(m, n, k, dtype, trans_a) else "BLAS"
                print(f"{np.dtype(dtype).name:>7} {m:5d} {k:5d} {n:5d} {'A.T' if trans_a else 'A':>5} "
                      f"{kb / 1024:6.0f}  {blas:9.3f} {kernel:9.3f} {blas / kernel:7.2f}x  {used}")
    _kernels.small_gemm(-1)


if __name__ == "__main__":
    main()
