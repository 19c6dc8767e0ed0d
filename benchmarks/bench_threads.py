"""Two Networks trained in two Python threads run in parallel: the engine releases the GIL.

Times two fits one after the other and the same two fits in two threads (BLAS
limited to one thread each), and prints the speedup; medians of several runs.

    python benchmarks/bench_threads.py
"""
import threading
import time

import numpy as np

import bpfast

from _native import one_blas_thread


def make(sizes, seed):
    return bpfast.Network(sizes, activation="relu", output_activation="softmax",
                          loss="cross_entropy", seed=seed)


def main(repeats=5):
    rng = np.random.default_rng(0)
    print("network      batch  sequential  two threads  speedup")
    for sizes, batch, epochs in (([2, 2, 2], 1, 200), ([64, 64, 10], 32, 20),
                                 ([784, 128, 10], 64, 2)):
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
        s, p = np.median(seq), np.median(par)
        print(f"{'-'.join(map(str, sizes)):12} {batch:5}  {s * 1e3:8.1f} ms  {p * 1e3:8.1f} ms  {s / p:6.2f}x")


if __name__ == "__main__":
    main()
