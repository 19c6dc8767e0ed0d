"""bpfast.sklearn beside scikit-learn's MLP: solver='lbfgs' on digits, and sparse input.

    python benchmarks/bench_sklearn_solvers.py            # ~1-2 min
    python benchmarks/bench_sklearn_solvers.py --quick    # smaller problems, fewer rounds
    python benchmarks/bench_sklearn_solvers.py --output RESULTS_sklearn.md

1. digits (1,797 8x8 images scaled to [0, 1], a stratified 80/20 split),
   ``MLPClassifier(solver='lbfgs', hidden_layer_sizes=(64,))`` at the same
   ``max_iter`` and ``random_state``: fit time of bpfast and of scikit-learn and
   their test accuracies.
2. A sparse text-like problem: ``make_classification`` rows with about 2% of their
   entries kept, as a CSR matrix; ``MLPClassifier(solver='adam')`` for a few epochs:
   bpfast on the CSR matrix, bpfast on the same data densified, scikit-learn on the
   CSR matrix.
Each time is the median of interleaved fits (one fit of each contender per round), so
a slow spell of the shared machine hits all alike. BLAS runs on ``--threads`` threads
(default 1, through threadpoolctl) for both libraries: on a small shared machine,
multi-threaded BLAS under load measures the load more than the code.
"""
import argparse
import platform
import statistics
import time
import warnings

import numpy as np
import scipy.sparse
import sklearn
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

import bpfast
from _native import publish
from bpfast.sklearn import MLPClassifier


def interleaved_medians(contenders, rounds):
    """{name: (median seconds of fit, the last fitted estimator)} over `rounds` rounds."""
    times = {name: [] for name in contenders}
    fitted = {}
    for _ in range(rounds):
        for name, fit in contenders.items():
            start = time.perf_counter()
            fitted[name] = fit()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), fitted[name]) for name in contenders}


def quiet(fit):
    """fit() with ConvergenceWarning silenced: a fixed max_iter is the point here."""
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fit()
    return run


def lbfgs_digits(max_iter, rounds):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y,
                                                        random_state=0)
    kw = dict(solver="lbfgs", hidden_layer_sizes=(64,), max_iter=max_iter, random_state=0)
    results = interleaved_medians({
        "bpfast": quiet(lambda: MLPClassifier(**kw).fit(X_train, y_train)),
        "scikit-learn": quiet(lambda: SkMLPClassifier(**kw).fit(X_train, y_train)),
    }, rounds)
    lines = [f"## 1. digits, solver='lbfgs', hidden_layer_sizes=(64,), max_iter={max_iter}",
             "", f"{len(X_train)} training rows, {len(X_test)} test rows; median of {rounds} "
             "interleaved fits.", "",
             "| implementation | fit (s) | L-BFGS iterations | test accuracy |",
             "|---|---|---|---|"]
    for name, (seconds, est) in results.items():
        lines.append(f"| {name} | {seconds:.4f} | {est.n_iter_} | "
                     f"{100 * est.score(X_test, y_test):.2f}% |")
    ratio = results["scikit-learn"][0] / results["bpfast"][0]
    gap = 100 * abs(results["bpfast"][1].score(X_test, y_test)
                    - results["scikit-learn"][1].score(X_test, y_test))
    lines += ["", f"scikit-learn / bpfast fit time: **{ratio:.1f}x**; accuracy gap: "
              f"{gap:.2f} points", ""]
    return lines


def sparse_text_like(n_samples, n_features, epochs, rounds):
    X, y = make_classification(n_samples=n_samples, n_features=n_features,
                               n_informative=min(100, n_features // 4), n_classes=4,
                               random_state=0)
    keep = np.random.RandomState(0).uniform(size=X.shape) < 0.02
    X_sparse = scipy.sparse.csr_matrix(np.abs(X) * keep)
    X_dense = X_sparse.toarray()
    kw = dict(solver="adam", hidden_layer_sizes=(64,), max_iter=epochs, batch_size=200,
              random_state=0, tol=0.0)
    results = interleaved_medians({
        "bpfast, CSR X": quiet(lambda: MLPClassifier(**kw).fit(X_sparse, y)),
        "bpfast, same X dense": quiet(lambda: MLPClassifier(**kw).fit(X_dense, y)),
        "scikit-learn, CSR X": quiet(lambda: SkMLPClassifier(**kw).fit(X_sparse, y)),
    }, rounds)
    density = X_sparse.nnz / np.prod(X_sparse.shape)
    lines = [f"## 2. sparse text-like input, solver='adam', {epochs} epochs",
             "", f"{n_samples} x {n_features} CSR, {100 * density:.1f}% non-zero "
             f"({X_sparse.data.nbytes / 2**20:.1f} MiB of values; "
             f"{X_dense.nbytes / 2**20:.0f} MiB dense), 4 classes, hidden_layer_sizes=(64,), "
             f"batch_size=200; median of {rounds} interleaved fits.", "",
             "| implementation | fit (s) | training accuracy |", "|---|---|---|"]
    for name, (seconds, est) in results.items():
        X_eval = X_dense if "dense" in name else X_sparse
        lines.append(f"| {name} | {seconds:.4f} | {100 * est.score(X_eval, y):.2f}% |")
    base = results["bpfast, CSR X"][0]
    lines += ["", f"scikit-learn (CSR) / bpfast (CSR): **{results['scikit-learn, CSR X'][0] / base:.1f}x**; "
              f"bpfast dense / bpfast CSR: {results['bpfast, same X dense'][0] / base:.2f}x", ""]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller problems, fewer rounds")
    parser.add_argument("--output", help="also write the tables to this Markdown file")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        run(args)


def run(args):
    rounds = 3 if args.quick else 7
    lines = ["# bpfast.sklearn beside scikit-learn", "",
             f"bpfast {bpfast.__version__}, scikit-learn {sklearn.__version__}, NumPy "
             f"{np.__version__}, Python {platform.python_version()}, {platform.machine()}; "
             f"BLAS threads: {args.threads}.", ""]
    lines += lbfgs_digits(max_iter=50 if args.quick else 200, rounds=rounds)
    lines += sparse_text_like(n_samples=2000 if args.quick else 10000,
                              n_features=1000 if args.quick else 5000,
                              epochs=2 if args.quick else 5, rounds=rounds)
    options = (" --quick" if args.quick else "") + (
        f" --threads {args.threads}" if args.threads != 1 else "")
    lines.append(f"Command: `python benchmarks/bench_sklearn_solvers.py{options}`")
    text = "\n".join(lines) + "\n"
    publish(text, args.output)


if __name__ == "__main__":
    main()
