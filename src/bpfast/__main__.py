"""The bpfast command line: ``bpfast`` or ``python -m bpfast``.

Subcommands
-----------
demo      train on XOR and two spirals with both backends; print losses, accuracy, speedup
bench     run the repository's ``benchmarks/bench.py`` (options are passed through)
train     train a network on a CSV file and save it (``model.npz`` + ``model.npz.json``)
predict   predict with a saved model on a CSV file

Model files written by ``train``
--------------------------------
``MODEL`` (e.g. ``model.npz``) is a plain ``bpfast.save`` file: ``bpfast.load``
reads it. Beside it, ``MODEL.json`` (``model.npz.json``) holds what turns CSV
rows into network inputs and outputs back into answers::

    {"format": "bpfast-cli-1", "task": "classify" | "regress",
     "target": "species", "features": ["x1", "x2", ...],
     "feature_mean": [...], "feature_scale": [...],     # inputs are (x - mean) / scale
     "classes": ["setosa", ...],                        # classify: output column i -> label
     "target_mean": m, "target_scale": s}               # regress: y = output * s + m

Errors in the input (a missing file, an unknown column, a value that is not a
number, a bad option) print ``bpfast: error: ...`` to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SIDECAR_FORMAT = "bpfast-cli-1"
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")


class CLIError(Exception):
    """A user error: printed as ``bpfast: error: <message>``, exit status 2."""


# ====================================================================== helpers
def _checked(text: str, convert, ok, expected: str, out_of_range: Optional[str] = None):
    """convert(text) if ok() accepts it, else argparse's "expected <expected>, got <text>"."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {out_of_range or expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _checked(text, int, lambda v: v >= 1, "a whole number >= 1")


def _positive_float(text: str) -> float:
    return _checked(text, float, lambda v: math.isfinite(v) and v > 0, "a number > 0",
                    "a finite number > 0")


def _momentum(text: str) -> float:
    return _checked(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _layer_sizes(text: str) -> List[int]:
    """'64,32' -> [64, 32]; '' or '0' -> [] (no hidden layer)."""
    text = text.strip()
    if text in ("", "0", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated layer widths like 64,32; got {text!r}") from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"layer widths must be >= 1; got {text!r}")
        sizes.append(size)
    return sizes


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar on stderr when tqdm is installed and enabled, else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="epoch", leave=False, file=sys.stderr)


def _say(bar, text: str) -> None:
    """Print a line without breaking a progress bar."""
    if bar is not None:
        bar.write(text, file=sys.stdout)
    else:
        print(text, flush=True)


def _read_csv(path: str) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of a CSV file with a header row; every row as wide as the header."""
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not a UTF-8 text (CSV) file: {exc}") from None
    except csv.Error as exc:
        raise CLIError(f"{path} is not valid CSV: {exc}") from None
    if not rows:
        raise CLIError(f"{path} is empty; a header row and at least one data row are needed")
    header = [h.strip() for h in rows[0]]
    if all(_is_number(h) for h in header):
        raise CLIError(f"{path}: the first row must be a header of column names; got {rows[0]!r}")
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise CLIError(f"{path}: duplicate column names in the header: {dupes}")
    data = rows[1:]
    if not data:
        raise CLIError(f"{path} has a header but no data rows")
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise CLIError(f"{path} line {i + 2}: {len(row)} fields, but the header has "
                           f"{len(header)} ({', '.join(header)})")
    return header, [[cell.strip() for cell in row] for row in data]


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _numeric_columns(path: str, header: List[str], rows: List[List[str]],
                     columns: Sequence[str], what: str) -> np.ndarray:
    """The named columns as a float64 (n, len(columns)) array, or a clear error."""
    index = [header.index(c) for c in columns]
    out = np.empty((len(rows), len(index)))
    for i, row in enumerate(rows):
        for j, k in enumerate(index):
            cell = row[k]
            try:
                value = float(cell)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value):
                shown = repr(cell) if cell else "an empty cell"
                raise CLIError(f"{path} line {i + 2}, column {header[k]!r}: {shown} is not a "
                               f"finite number ({what} must be numeric)")
            out[i, j] = value
    return out


def _column(header: List[str], name: str, path: str) -> str:
    if name in header:
        return name
    raise CLIError(f"{path} has no column {name!r}; its columns are: {', '.join(header)}")


def _sidecar_path(model: str) -> str:
    return model + ".json"


# ====================================================================== demo
def _demo_run(name: str, backend: str, sizes, activation, output_activation, loss, X, Y, y,
              epochs, batch_size, lr, momentum, print_every, progress) -> Dict:
    import bpfast

    net = bpfast.Network(sizes, activation=activation, output_activation=output_activation,
                         loss=loss, backend=backend, seed=0)
    bar = _progress(epochs, progress, f"{name} {backend}")
    overhead = [0.0]     # time spent printing and drawing the bar, not training

    def callback(epoch: int, history) -> bool:
        t0 = time.perf_counter()
        if (epoch + 1) % print_every == 0 or epoch == 0 or epoch + 1 == epochs:
            _say(bar, f"  {backend:<9} epoch {epoch + 1:>5}  loss {history.loss[-1]:.6f}")
        if bar is not None:
            bar.update(1)
        overhead[0] += time.perf_counter() - t0
        return True

    start = time.perf_counter()
    history = net.fit(X, Y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                      shuffle=True, seed=1, callback=callback)
    seconds = time.perf_counter() - start - overhead[0]
    if bar is not None:
        bar.close()
    out = net.predict(X)
    pred = (out[:, 0] > 0.5).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
    correct = int((pred == y).sum())
    print(f"  {backend}: accuracy {100.0 * correct / len(y):.1f}% ({correct}/{len(y)}), final loss "
          f"{history.loss[-1]:.6f}, {history.n_updates} updates in {seconds:.3f} s "
          f"({1e3 * seconds / epochs:.3f} ms/epoch)")
    return {"loss": history.loss, "seconds": seconds, "epochs": epochs}


def cmd_demo(args) -> int:
    from bpfast._datasets import one_hot, two_spirals, xor

    quick = args.quick
    progress = not args.no_progress
    X, y = xor()
    spiral_X, spiral_y = two_spirals(100, turns=1.5)
    problems = [
        dict(name="XOR", X=X, Y=y.reshape(-1, 1).astype(float), y=y, sizes=[2, 4, 1],
             activation="tanh", output_activation="sigmoid", loss="mse", batch_size=4, lr=0.5,
             momentum=0.9, epochs=args.epochs or (300 if quick else 1000)),
        dict(name="two spirals", X=spiral_X, Y=one_hot(spiral_y, 2), y=spiral_y,
             sizes=[2, 32, 32, 2], activation="relu", output_activation="softmax",
             loss="cross_entropy", batch_size=20, lr=0.1, momentum=0.9,
             epochs=args.epochs or (20 if quick else 100)),
    ]
    print("bpfast demo: the same network trained by the compiled (cython) and the pure-Python "
          "(reference) backend, from the same initial weights and batch order.")
    for p in problems:
        epochs = p["epochs"]
        print(f"\n{p['name']}: {len(p['y'])} samples, network {p['sizes']} ({p['activation']} hidden, "
              f"{p['output_activation']} output, {p['loss']} loss), lr {p['lr']}, momentum "
              f"{p['momentum']}, batch {p['batch_size']}, {epochs} epochs")
        every = max(1, epochs // 5)
        runs = {}
        for backend in ("cython", "reference"):
            runs[backend] = _demo_run(p["name"], backend, p["sizes"], p["activation"],
                                      p["output_activation"], p["loss"], p["X"], p["Y"], p["y"],
                                      epochs, p["batch_size"], p["lr"], p["momentum"], every,
                                      progress)
        diff = max(abs(a - b) for a, b in zip(runs["cython"]["loss"], runs["reference"]["loss"]))
        speedup = runs["reference"]["seconds"] / runs["cython"]["seconds"]
        print(f"  backends agree: max |loss difference| over the epochs {diff:.2e}")
        print(f"  speedup cython vs reference: {speedup:.1f}x (time of one fit each, "
              "printing excluded)")
    return 0


# ====================================================================== bench
def _find_bench(script: Optional[str]) -> Optional[Path]:
    if script:
        path = Path(script)
        return path if path.is_file() else None
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "benchmarks" / "bench.py", Path.cwd() / "benchmarks" / "bench.py"]
    return next((c for c in candidates if c.is_file()), None)


def cmd_bench(args, extra: List[str]) -> int:
    path = _find_bench(args.script)
    if path is None:
        where = args.script or "benchmarks/bench.py of the bpfast repository checkout"
        raise CLIError(f"benchmark script not found ({where}); 'bpfast bench' runs from a source "
                       "checkout (git clone ...; pip install -e .) or give --script PATH")
    argv = [sys.executable, str(path)]
    if args.quick:
        argv.append("--quick")
    if args.cases is not None:
        argv += ["--cases", *args.cases]
    if args.output is not None:
        argv += ["--output", args.output]
    if args.plot is not None:
        argv += ["--plot", args.plot]
    argv += extra
    return subprocess.call(argv)


# ====================================================================== train
def _task_of(values: List[str], task: str) -> str:
    if task != "auto":
        return task
    if not all(_is_number(v) for v in values):
        return "classify"
    numbers = [float(v) for v in values]
    if all(n.is_integer() for n in numbers) and len(set(numbers)) <= max(2, min(20, len(numbers) // 5)):
        return "classify"
    return "regress"


def _sorted_labels(values: List[str]) -> List[str]:
    labels = set(values)
    if all(_is_number(v) for v in labels):
        return sorted(labels, key=lambda v: (float(v), v))
    return sorted(labels)


def cmd_train(args) -> int:
    import bpfast

    header, rows = _read_csv(args.data)
    target = _column(header, args.target, args.data) if args.target else header[-1]
    if args.features:
        features = [_column(header, f.strip(), args.data) for f in args.features.split(",") if f.strip()]
        if target in features:
            raise CLIError(f"the target column {target!r} cannot also be a feature")
    else:
        features = [h for h in header if h != target]
    if not features:
        raise CLIError(f"{args.data} has no feature columns besides the target {target!r}")
    X = _numeric_columns(args.data, header, rows, features, "features")
    t_index = header.index(target)
    raw_target = [row[t_index] for row in rows]
    if any(v == "" for v in raw_target):
        line = raw_target.index("") + 2
        raise CLIError(f"{args.data} line {line}: the target column {target!r} is empty")
    task = _task_of(raw_target, args.task)

    if args.standardize:
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    Xs = (X - mean) / scale
    meta = {"format": SIDECAR_FORMAT, "task": task, "target": target, "features": features,
            "feature_mean": mean.tolist(), "feature_scale": scale.tolist()}
    if task == "classify":
        classes = _sorted_labels(raw_target)
        lookup = {c: i for i, c in enumerate(classes)}
        y_index = np.array([lookup[v] for v in raw_target])
        Y = np.zeros((len(rows), len(classes)))
        Y[np.arange(len(rows)), y_index] = 1.0
        out_act, loss = "softmax", "cross_entropy"
        meta["classes"] = classes
    else:
        y = _numeric_columns(args.data, header, rows, [target], "a regression target")
        t_mean, t_scale = float(y.mean()), float(y.std()) or 1.0
        Y = (y - t_mean) / t_scale
        out_act, loss = "identity", "mse"
        meta["target_mean"], meta["target_scale"] = t_mean, t_scale
    sizes = [X.shape[1], *args.hidden, Y.shape[1]]
    net = bpfast.Network(sizes, activation=args.activation, output_activation=out_act, loss=loss,
                         dtype=args.dtype, seed=args.seed)
    print(f"training {task}: {len(rows)} rows, {len(features)} features -> {target!r}"
          + (f" ({len(meta['classes'])} classes)" if task == "classify" else "")
          + f"; network {sizes}, {args.activation}, {loss}, lr {args.lr}, batch {args.batch_size}, "
            f"{args.epochs} epochs")
    every = max(1, args.epochs // 10)
    bar = _progress(args.epochs, not args.no_progress, "train")

    def callback(epoch: int, history) -> bool:
        if (epoch + 1) % every == 0 or epoch == 0:
            _say(bar, f"epoch {epoch + 1:>5}  loss {history.loss[-1]:.6f}")
        if bar is not None:
            bar.update(1)
        return True

    start = time.perf_counter()
    try:
        net.fit(Xs, Y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                momentum=args.momentum, seed=args.seed, callback=callback)
    except FloatingPointError as exc:
        raise CLIError(f"{exc}") from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    out = net.predict(Xs)
    if task == "classify":
        acc = float((out.argmax(axis=1) == y_index).mean())
        print(f"training accuracy {100 * acc:.1f}% in {seconds:.2f} s")
    else:
        pred = out[:, 0] * meta["target_scale"] + meta["target_mean"]
        resid = pred - y[:, 0]
        ss_tot = float(((y[:, 0] - y[:, 0].mean()) ** 2).sum())
        r2 = 1 - float((resid ** 2).sum()) / ss_tot if ss_tot else float("nan")
        print(f"training RMSE {math.sqrt(float((resid ** 2).mean())):.6g}, R^2 {r2:.4f} "
              f"in {seconds:.2f} s")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise CLIError(f"cannot write {args.output}: no directory {out_dir}")
    bpfast.save(net, args.output)
    with open(_sidecar_path(args.output), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    print(f"saved {args.output} and {_sidecar_path(args.output)}")
    return 0


# ====================================================================== predict
def cmd_predict(args) -> int:
    import bpfast

    if not os.path.exists(args.model):
        raise CLIError(f"no such model file: {args.model}")
    try:
        net = bpfast.load(args.model)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    meta = None
    side = _sidecar_path(args.model)
    if os.path.exists(side):
        try:
            with open(side, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise CLIError(f"{side} is not a readable model description: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            raise CLIError(f"{side} is not a bpfast model description ({SIDECAR_FORMAT})")
    header, rows = _read_csv(args.data)
    if meta is not None:
        features = [_column(header, c, args.data) for c in meta["features"]]
    else:
        # A bare network file: every column is an input, in order.
        features = header
    if len(features) != net.n_inputs:
        raise CLIError(f"the model takes {net.n_inputs} inputs but {args.data} gives "
                       f"{len(features)} feature columns")
    X = _numeric_columns(args.data, header, rows, features, "features")
    if meta is not None:
        X = (X - np.asarray(meta["feature_mean"])) / np.asarray(meta["feature_scale"])
    out = net.predict(X)
    if meta is None:
        names = [f"output{j}" for j in range(out.shape[1])]
        table = [[repr(float(v)) for v in row] for row in out]
    elif meta["task"] == "classify":
        classes = meta["classes"]
        names = [meta["target"]]
        table = [[classes[k]] for k in out.argmax(axis=1)]
        if args.proba:
            names += [f"p({c})" for c in classes]
            table = [t + [f"{p:.6g}" for p in row] for t, row in zip(table, out)]
    else:
        names = [meta["target"]]
        pred = out[:, 0] * meta["target_scale"] + meta["target_mean"]
        table = [[f"{v:.10g}"] for v in pred]
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            writer.writerows(table)
        print(f"wrote {len(table)} predictions to {args.output}", file=sys.stderr)
    else:
        for row in table:
            print(",".join(row))
    return 0


# ====================================================================== argument parsing
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``bpfast`` command (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="bpfast",
        description="bpfast: dense neural networks trained by backpropagation, fast "
                    "(Cython kernels with a pure-Python reference).",
        epilog="Run 'bpfast COMMAND --help' for the options of a command.")
    from bpfast import __version__
    parser.add_argument("--version", action="version", version=f"bpfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="train on XOR and two spirals with both backends",
                       description="Train the same networks on XOR and on a generated two-spirals "
                                   "set with the compiled (cython) and the pure-Python (reference) "
                                   "backend; print the loss every few epochs, the accuracy, and "
                                   "the measured speedup (ratio of the time of one fit each, "
                                   "printing excluded).")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs for both problems (default: XOR 1000, spirals 100; --quick: 300, 20)")
    p.add_argument("--quick", action="store_true", help="fewer epochs: a few seconds in all")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (tqdm)")

    p = sub.add_parser("bench", help="run benchmarks/bench.py of the repository checkout",
                       description="Run the benchmark script benchmarks/bench.py of the bpfast "
                                   "source checkout; the options below and any others are passed "
                                   "through to it.")
    p.add_argument("--quick", action="store_true", help="a short run (tests/CI)")
    p.add_argument("--cases", nargs="*", metavar="CASE", help="cases to run, e.g. 64-64-10")
    p.add_argument("--output", metavar="FILE", help="markdown report to write")
    p.add_argument("--plot", metavar="FILE", help="PNG plot to write")
    p.add_argument("--script", metavar="PATH", help="the benchmark script (default: found in the checkout)")

    p = sub.add_parser("train", help="train a network on a CSV file and save it",
                       description="Train on a CSV file with a header row. Features must be numeric; "
                                   "they are standardised (the mean and scale are saved). The model "
                                   "is written with bpfast.save to --output, and what maps CSV "
                                   "columns and classes to the network to --output + '.json'.")
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--target", metavar="COL", help="target column name (default: the last column)")
    p.add_argument("--features", metavar="COLS",
                   help="comma-separated feature columns (default: all but the target)")
    p.add_argument("--task", choices=("auto", "classify", "regress"), default="auto",
                   help="classify (softmax + cross-entropy) or regress (identity + MSE); auto: "
                        "classify when the target is text or a few distinct integers")
    p.add_argument("--hidden", type=_layer_sizes, default=[32], metavar="SIZES",
                   help="hidden layer widths, comma-separated (default: 32; 0 for none)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="hidden activation (default: relu)")
    p.add_argument("--epochs", type=_positive_int, default=100, help="epochs (default: 100)")
    p.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate (default: 0.01)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default: 32)")
    p.add_argument("--momentum", type=_momentum, default=0.9, help="momentum in [0, 1) (default: 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and shuffling (default: 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="use the features as they are")
    p.add_argument("--output", "-o", default="model.npz", metavar="MODEL",
                   help="model file to write (default: model.npz; also MODEL.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (tqdm)")

    p = sub.add_parser("predict", help="predict with a saved model on a CSV file",
                       description="Predict for every row of a CSV file (header row required; "
                                   "the feature columns are found by name, other columns are "
                                   "ignored). Prints one prediction per line, or writes a CSV.")
    p.add_argument("model", help="model file written by 'bpfast train' (or bpfast.save)")
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--output", "-o", metavar="FILE", help="write a CSV here instead of printing")
    p.add_argument("--proba", action="store_true", help="classification: add class probabilities")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``bpfast`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on a usage or input error (message on stderr), or the
        exit status of the benchmark script for ``bench``.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "bench":
            return cmd_bench(args, extra)
        if args.command == "train":
            return cmd_train(args)
        return cmd_predict(args)
    except CLIError as exc:
        print(f"bpfast: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        # Anything else the input can cause (unwritable output, bad values deep inside).
        print(f"bpfast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bpfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
