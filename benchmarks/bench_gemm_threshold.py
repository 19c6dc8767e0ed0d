"""How small must a matrix product be for direct loops to beat BLAS inside fit?

Times Network.fit per update (one thread, medians) for small networks with the
loops/BLAS threshold of bpfast._kernels.gemm() set to several values, so that the
default (SMALL_GEMM in _kernels.pyx) can be chosen from numbers measured side by side.

    python benchmarks/bench_gemm_threshold.py
"""
import time

import numpy as np

import bpfast
from bpfast import _kernels

from _native import one_blas_thread

THRESHOLDS = (0, 16, 64, 256, 1024, 4096)
CASES = [([2, 2, 1], 1), ([2, 2, 1], 4), ([4, 8, 2], 4), ([3, 16, 1], 8), ([8, 8, 8], 8),
         ([4, 16, 3], 16), ([10, 10, 10], 10), ([8, 32, 4], 16)]


def per_update(net, X, Y, batch_size, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        history = net.fit(X, Y, epochs=20, batch_size=batch_size, lr=0.01, shuffle=False)
        times.append((time.perf_counter() - start) / history.n_updates)
    return sorted(times)[len(times) // 2]


def main():
    default = _kernels.tiny_product()
    print(f"fit, µs per update (median of 7), by threshold; default {default}")
    print(f"{'network':>14} {'batch':>5} " + " ".join(f"{t:>7}" for t in THRESHOLDS))
    with one_blas_thread():
        for sizes, batch_size in CASES:
            rng = np.random.default_rng(0)
            X = rng.normal(size=(batch_size * 256, sizes[0]))
            Y = rng.uniform(size=(batch_size * 256, sizes[-1]))
            row = []
            for threshold in THRESHOLDS:
                _kernels.tiny_product(threshold)
                net = bpfast.Network(sizes, activation="tanh", seed=0)
                net.fit(X, Y, epochs=1, batch_size=batch_size, lr=0.01)     # warm up
                row.append(per_update(net, X, Y, batch_size) * 1e6)
            print(f"{'-'.join(map(str, sizes)):>14} {batch_size:>5} "
                  + " ".join(f"{t:7.2f}" for t in row))
    _kernels.tiny_product(default)


if __name__ == "__main__":
    main()
