"""Where the time of one 64-64-10 step goes: each phase timed in native code.

Second table: the error sent back through a layer, E = delta @ W.T, as one BLAS
call with W.T as the operand and as bpfast's backprop_error_into(), which for
narrow layers (<= 16 outputs, W of <= 1024 elements, batch >= 16) transposes W into
a stack buffer first so that BLAS runs its faster non-transposed kernels, and on an
AVX2 CPU (where the small-product kernel is on) does so for any W of <= 16 KB whose
product the kernel takes.

Shows how much of a step is matrix products (OpenBLAS through scipy's cython_blas)
and how much the element-wise work around them, for float32 and float64, and what
the products alone would give against the NumPy step of bench.py. Builds a small
Cython module with pyximport (needs Cython and a C compiler, as building bpfast does).

    python benchmarks/bench_step_phases.py
"""
import argparse

import numpy as np

from _native import load_step_phases, one_blas_thread

step_phases = load_step_phases()

PHASES = ["the 5 matrix products alone", "forward layer 1 (GEMM + bias + relu)",
          "forward layer 2 (GEMM + bias + softmax)", "output delta + loss",
          "backprop error delta @ W2.T", "relu derivative", "SGD layer 2 (GEMM + bias)",
          "SGD layer 1 (GEMM + bias)"]


def arrays(dtype, n=32, sizes=(64, 64, 10), seed=0):
    rng = np.random.default_rng(seed)
    d0, d1, d2 = sizes
    X = rng.normal(size=(n, d0)).astype(dtype)
    W1, W2 = (rng.normal(size=s).astype(dtype) * 0.1 for s in ((d0, d1), (d1, d2)))
    b1, b2 = np.zeros(d1, dtype), np.zeros(d2, dtype)
    Y = np.eye(d2, dtype=dtype)[rng.integers(0, d2, n)]
    H, O, D2, E = (np.empty(s, dtype) for s in ((n, d1), (n, d2), (n, d2), (n, d1)))
    for which in (1, 2, 3, 4):       # fill H, O, D2, E with the values of a real step
        step_phases.time_phase(which, X, W1, b1, W2, b2, Y, H, O, D2, E, 1)
    return X, W1, b1, W2, b2, Y, H, O, D2, E


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20000, help="calls per timed run")
    reps = parser.parse_args(argv).reps
    print(f"64-64-10, batch 32, one thread: µs per call (best of 5 runs of {reps:,} calls)")
    print(f"{'phase':<42}{'float32':>10}{'float64':>10}")
    results = {}
    with one_blas_thread():
        for dtype in (np.float32, np.float64):
            args = arrays(dtype)
            results[dtype] = [step_phases.time_phase(w, *args, reps) * 1e6
                              for w in range(len(PHASES))]
    for i, name in enumerate(PHASES):
        print(f"{name:<42}{results[np.float32][i]:>10.3f}{results[np.float64][i]:>10.3f}")
    for dtype in (np.float32, np.float64):
        step = sum(results[dtype][1:])
        print(f"{np.dtype(dtype).name}: phases 1-7 sum to {step:.2f} µs, of which the products "
              f"{results[dtype][0]:.2f} µs ({100 * results[dtype][0] / step:.0f}%)")
    backprop_table(reps)


def backprop_table(reps):
    print()
    print("E = delta @ W.T, µs per call: BLAS with W.T / backprop_error_into (float64)")
    print(f"{'batch':>6}{'n_in':>6}{'n_out':>6}{'W.T':>10}{'bpfast':>10}{'speedup':>9}")
    for n, n_in, n_out in ((32, 64, 10), (64, 64, 10), (16, 16, 3), (32, 128, 8),
                           (256, 64, 16), (32, 1024, 1), (8, 64, 10), (32, 64, 32),
                           (32, 64, 64)):
        args = arrays(np.float64, n=n, sizes=(1, n_in, n_out))
        calls = max(10, reps * 4096 // (n * n_in * n_out))
        plain, auto = (step_phases.time_phase(w, *args, calls) * 1e6 for w in (8, 4))
        print(f"{n:>6}{n_in:>6}{n_out:>6}{plain:>10.3f}{auto:>10.3f}{plain / auto:>8.2f}x")


if __name__ == "__main__":
    main()
