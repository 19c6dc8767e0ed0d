"""Handwritten digits: bpfast.sklearn.MLPClassifier next to scikit-learn's MLPClassifier.

scikit-learn's bundled 8x8 digits (1797 images, 10 classes), pixels scaled to
[0, 1], a stratified 75/25 split. Two comparisons, one per solver. In each, both
estimators get the same settings -- one hidden layer of 64 ReLU units, batches
of 32, alpha 1e-4 and exactly ``max_iter`` epochs (the stopping rule is switched
off with n_iter_no_change = max_iter); first SGD with Nesterov momentum 0.9 at
learning rate 0.1, then Adam with scikit-learn's defaults (learning rate 0.001,
betas 0.9 and 0.999, epsilon 1e-8) -- and the same random_state, hence the same
initial weights; only the shuffling order differs. Third, full-batch L-BFGS
(solver='lbfgs', at most ``max_iter`` iterations, scikit-learn's default tol):
there no order is drawn, and both run the same optimizer from the same start
on the same objective. The script prints the
held-out accuracy and the fit time of each -- the median of --repeats fits, the
two estimators taking turns so that a slow moment of a shared machine hits both
alike -- and the ratio of the fit times.

Run:  python examples/digits.py [--max-iter 50] [--repeats 3] [--quick]
"""
import argparse
import statistics
import sys
import time
import warnings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=50, help="epochs (default 50)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits per estimator, taking turns; the median counts")
    parser.add_argument("--quick", action="store_true", help="10 epochs, one fit each")
    args = parser.parse_args()
    if args.quick:
        args.max_iter, args.repeats = 10, 1

    try:
        from sklearn.datasets import load_digits
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import train_test_split
        from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    except ImportError:
        print("this example needs scikit-learn (pip install scikit-learn); skipped")
        return 0
    from bpfast.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    common = dict(hidden_layer_sizes=(64,), activation="relu", batch_size=32, alpha=1e-4,
                  max_iter=args.max_iter, tol=1e-12, n_iter_no_change=args.max_iter,
                  random_state=0)
    sgd = dict(solver="sgd", learning_rate_init=0.1, momentum=0.9, nesterovs_momentum=True)
    adam = dict(solver="adam", learning_rate_init=0.001, beta_1=0.9, beta_2=0.999,
                epsilon=1e-8)
    print(f"digits: {len(X_train)} training / {len(X_test)} test images, 64 features, 10 classes")
    data = (X_train, y_train, X_test, y_test)
    estimators = (MLPClassifier, SkMLPClassifier)
    # The SGD lines come first, unlabelled: benchmarks/report.py reads them.
    compare("", {**common, **sgd}, estimators, data, args.repeats, ConvergenceWarning)
    print()
    compare("adam", {**common, **adam}, estimators, data, args.repeats, ConvergenceWarning)
    print()
    lbfgs = dict(solver="lbfgs", hidden_layer_sizes=(64,), activation="relu", alpha=1e-4,
                 max_iter=args.max_iter, random_state=0)
    compare("lbfgs", lbfgs, estimators, data, args.repeats, ConvergenceWarning)
    return 0


def compare(solver, settings, estimators, data, repeats, convergence_warning) -> None:
    """Fit bpfast's and scikit-learn's estimator, taking turns, and print the results.

    solver labels the lines ('' for none); estimators: (bpfast's, scikit-learn's) class;
    data: (X_train, y_train, X_test, y_test).
    """
    X_train, y_train, X_test, y_test = data
    tag = f" ({solver})" if solver else ""
    print(f"{solver + ' ' if solver else ''}settings: "
          + ", ".join(f"{k}={v}" for k, v in settings.items()))
    names = {"bpfast" + tag: estimators[0], "scikit-learn" + tag: estimators[1]}
    width = max(map(len, names)) + 2
    times = {name: [] for name in names}
    fitted = {}
    for _ in range(max(1, repeats)):
        for name, cls in names.items():
            clf = cls(**settings)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", convergence_warning)
                start = time.perf_counter()
                clf.fit(X_train, y_train)
                times[name].append(time.perf_counter() - start)
            fitted[name] = clf
    results = {}
    for name, clf in fitted.items():
        acc = clf.score(X_test, y_test)
        results[name] = (acc, statistics.median(times[name]))
        print(f"{name:<{width}}test accuracy {100 * acc:.2f}%  fit time {results[name][1]:.4f} s  "
              f"({clf.n_iter_} {'iterations' if solver == 'lbfgs' else 'epochs'}, final "
              f"training loss {clf.loss_:.4f})")
    ours, theirs = (results[name] for name in names)
    print(f"{solver + ' ' if solver else ''}speed ratio (scikit-learn fit time / bpfast fit "
          f"time): {theirs[1] / ours[1]:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
