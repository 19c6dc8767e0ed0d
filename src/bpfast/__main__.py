"""The bpfast command line: ``bpfast`` or ``python -m bpfast``.

Subcommands
-----------
demo      train on XOR and two spirals with both backends; print losses, accuracy, speed ratio
bench     run ``benchmarks/bench.py`` of the source checkout bpfast was imported from
train     train a network on a CSV file and save it as one model file
predict   predict with a model written by ``train`` on a CSV file
export    write a model as an ONNX graph

Model files written by ``train``
--------------------------------
``MODEL`` (e.g. ``model.npz``) is one ``bpfast.save`` file, written atomically:
``bpfast.load`` reads the network, and ``bpfast.load(MODEL, with_metadata=True)``
also gives what turns CSV rows into network inputs and outputs back into answers::

    {"format": "bpfast-cli-2", "task": "classify" | "regress",
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
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from bpfast._csvdata import (CLI_FORMAT, CLIError, CSVTable, check_metadata, cli_metadata,
                             refuse_repeated, standardize)
from bpfast.activations import HIDDEN_ACTIVATIONS

_SCORE_ROWS = 8192      # rows per predict call when scoring the training data
_MAX_ONE_HOT = 2 ** 28  # rows x classes of the one-hot targets (2 GiB in float64)


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


def _delimiter(text: str) -> str:
    text = {"tab": "\t", "\\t": "\t"}.get(text, text)
    if len(text) != 1 or text in "\"\r\n":
        raise argparse.ArgumentTypeError(f"expected one character (or 'tab'), got {text!r}")
    return text


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


def _warn(text: str) -> None:
    print(f"bpfast: warning: {text}", file=sys.stderr)


def _same_file(a: str, b: str) -> bool:
    """True if paths a and b name one file (through links too), whether or not a exists."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _refuse_overwriting(output: Optional[str], option: str, **inputs: Optional[str]) -> None:
    """CLIError if writing `output` would replace one of the inputs (name=path)."""
    if output is None:
        return
    for name, path in inputs.items():
        if path is not None and _same_file(output, path):
            raise CLIError(f"{option} {output} is the {name.replace('_', ' ')} ({path}); "
                           f"writing it would destroy it: choose another file")


def _load_model(path: str):
    """(net, metadata) of a model file, with its errors as CLIErrors."""
    import bpfast

    if not os.path.exists(path):
        raise CLIError(f"no such model file: {path}")
    try:
        return bpfast.load(path, with_metadata=True)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _table(path: str, args) -> CSVTable:
    table = CSVTable(path, header=not args.no_header, delimiter=args.delimiter)
    if table.delimiter != "," and args.delimiter is None:
        print(f"bpfast: {path}: columns separated by {table.delimiter!r} (detected)",
              file=sys.stderr)
    return table


# ====================================================================== bench
def _checkout_bench() -> Optional[Path]:
    """benchmarks/bench.py of the source checkout this bpfast was imported from, if any.

    Only a checkout laid out as ROOT/src/bpfast with ROOT/pyproject.toml counts:
    an installed bpfast (site-packages/bpfast) has none, and the current
    directory is never searched (a file planted there would run with your rights).
    """
    package = Path(__file__).resolve().parent
    root = package.parents[1]
    if package.parent.name != "src" or not (root / "pyproject.toml").is_file():
        return None
    script = root / "benchmarks" / "bench.py"
    return script if script.is_file() else None


def cmd_bench(args, extra: List[str]) -> int:
    """Run the benchmark script benchmarks/bench.py of the bpfast source checkout this
    bpfast was imported from (never one in the current directory); the options below and
    any others are passed through to it."""
    if args.script:
        path = Path(args.script)
        if not path.is_file():
            raise CLIError(f"benchmark script not found: {args.script}")
    else:
        path = _checkout_bench()
        if path is None:
            raise CLIError(f"benchmark script not found: 'bpfast bench' runs benchmarks/bench.py "
                           f"of a bpfast source checkout, and this bpfast "
                           f"({Path(__file__).resolve().parent}) was not imported from one. Clone "
                           f"the bpfast repository and run 'python benchmarks/bench.py' there, or "
                           f"give --script PATH")
    argv = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
    if args.cases is not None:
        argv += ["--cases", *args.cases]
    for option, value in (("--output", args.output), ("--plot", args.plot)):
        if value is not None:
            argv += [option, value]
    argv += extra
    return subprocess.call(argv)


# ====================================================================== train
def _check_plotting() -> None:
    """CLIError now, before training, if --plot cannot work."""
    import bpfast

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    if not hasattr(bpfast.History, "plot"):
        raise CLIError("--plot needs a bpfast whose History has plot(); this one has none")


def cmd_train(args) -> int:
    """Train on a CSV file. Features must be numeric; they are standardised (the mean and
    scale are saved). The model, with the feature names, scaling and class names, is
    written atomically to one file, --output."""
    import bpfast

    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise CLIError(f"cannot write {args.output}: no directory {out_dir}")
    _refuse_overwriting(args.output, "--output", training_data=args.data)
    _refuse_overwriting(args.plot, "--plot", training_data=args.data, model_output=args.output)
    if args.plot:
        _check_plotting()

    table = _table(args.data, args)
    target = table.column(args.target) if args.target else table.columns[-1]
    if args.features:
        features = [table.column(f.strip()) for f in args.features.split(",") if f.strip()]
        if target in features:
            raise CLIError(f"the target column {target!r} cannot also be a feature")
        refuse_repeated(features, "--features")
    else:
        features = [c for c in table.columns if c != target]
    if not features:
        hint = ""
        if len(table.columns) == 1:
            hint = (f"; read with the delimiter {table.delimiter!r} it has one column only: if its "
                    f"columns are separated by another character, give --delimiter CHAR")
        raise CLIError(f"{args.data} has no feature columns besides the target {target!r}{hint}")
    X, y = table.read(features, target)
    n = len(y)
    task = y.task(args.task)

    if args.standardize:
        mean, scale = standardize(X, features, args.data)
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    if task == "classify":
        classes, y_index = y.classes()
        if len(classes) < 2:
            raise CLIError(f"the target column {target!r} holds one class only ({classes[0]!r}); "
                           f"a classifier needs at least two")
        if len(classes) == n:
            alone = (f"the target column {target!r} has as many classes as rows ({n}): every "
                     f"row is its own class, so nothing can generalise")
            if args.task == "auto":
                # An identifier, or numbers in a form that did not parse: not labels.
                raise CLIError(f"{alone}; is {target!r} the right --target? (--task classify "
                               f"trains anyway)")
            _warn(f"{alone} (a numeric target to predict needs --task regress)")
        if n * len(classes) > _MAX_ONE_HOT:
            raise CLIError(f"{n} rows x {len(classes)} classes: the one-hot targets alone would "
                           f"take {n * len(classes) * np.dtype(args.dtype).itemsize / 2 ** 30:.1f} "
                           f"GiB; is {target!r} the right --target?")
        Y = np.zeros((n, len(classes)), dtype=args.dtype)
        Y[np.arange(n), y_index] = 1.0
        out_act, loss = "softmax", "cross_entropy"
        meta = cli_metadata(task, target, features, mean, scale, classes=classes)
    else:
        values = y.values()                     # (n, 1), kept for the training R^2
        Y = values.copy()
        t_mean, t_scale = standardize(Y, [target], args.data)      # Y scaled in place
        out_act, loss = "identity", "mse"
        meta = cli_metadata(task, target, features, mean, scale, target_mean=t_mean[0],
                            target_scale=t_scale[0])
    sizes = [X.shape[1], *args.hidden, Y.shape[1]]
    net = bpfast.Network(sizes, activation=args.activation, output_activation=out_act, loss=loss,
                         dtype=args.dtype, seed=args.seed)
    print(f"training {task}: {n} rows, {len(features)} features -> {target!r}"
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
        history = net.fit(X, Y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          momentum=args.momentum, seed=args.seed, callback=callback)
    except FloatingPointError as exc:
        raise CLIError(f"{exc}") from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    # The training score, a block of rows at a time: no second (rows, outputs) array.
    blocks = ((net.predict(X[i:i + _SCORE_ROWS]), slice(i, i + _SCORE_ROWS))
              for i in range(0, n, _SCORE_ROWS))
    if task == "classify":
        correct = sum(int((out.argmax(axis=1) == y_index[rows]).sum()) for out, rows in blocks)
        print(f"training accuracy {100 * correct / n:.1f}% in {seconds:.2f} s")
    else:
        truth = values[:, 0]
        sse = sum(float(((out[:, 0] * meta["target_scale"] + meta["target_mean"]
                          - truth[rows]) ** 2).sum()) for out, rows in blocks)
        ss_tot = float(((truth - truth.mean()) ** 2).sum())
        r2 = 1 - sse / ss_tot if ss_tot else float("nan")
        print(f"training RMSE {math.sqrt(sse / n):.6g}, R^2 {r2:.4f} in {seconds:.2f} s")
    if hasattr(net, "summary"):
        print(net.summary())
    bpfast.save(net, args.output, metadata=meta)
    print(f"saved {args.output}")
    if args.plot:
        try:
            history.plot(args.plot)
        except ImportError as exc:
            raise CLIError(f"--plot needs matplotlib ({exc}); the model was saved") from None
        print(f"wrote the loss curve to {args.plot}")
    return 0


# ====================================================================== predict
def cmd_predict(args) -> int:
    """Predict for every row of a CSV file (the feature columns are found by name, other
    columns are ignored; without a header, the file's columns are the features in order).
    Prints one prediction per line (with --proba, a header row and the class
    probabilities), or writes a CSV."""
    _refuse_overwriting(args.output, "--output", model=args.model, input_data=args.data)
    net, meta = _load_model(args.model)
    meta = check_metadata(meta, net, args.model)
    if args.proba and meta["task"] != "classify":
        raise CLIError(f"--proba gives class probabilities, but {args.model} is a regression "
                       f"model")
    table = _table(args.data, args)
    if not table.has_header and len(table.columns) == len(meta["features"]):
        features = table.columns        # no names: the model's features, in order
    else:
        features = [table.column(c) for c in meta["features"]]
    X, _ = table.read(features)
    X -= np.asarray(meta["feature_mean"])
    X /= np.asarray(meta["feature_scale"])
    names = [meta["target"]]
    if args.proba:
        names += [f"p({c})" for c in meta["classes"]]

    def rows_of(out):
        """The CSV rows of one block of network outputs."""
        if meta["task"] == "regress":
            pred = out[:, 0] * meta["target_scale"] + meta["target_mean"]
            return [[f"{v:.10g}"] for v in pred]
        labels = [[meta["classes"][k]] for k in out.argmax(axis=1)]
        if not args.proba:
            return labels
        return [label + [f"{p:.6g}" for p in row] for label, row in zip(labels, out)]

    def write(writer) -> None:
        # A block of rows at a time: neither the outputs nor their text are held whole.
        for i in range(0, X.shape[0], _SCORE_ROWS):
            writer.writerows(rows_of(net.predict(X[i:i + _SCORE_ROWS])))

    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            write(writer)
        print(f"wrote {X.shape[0]} predictions to {args.output}", file=sys.stderr)
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if args.proba:
            writer.writerow(names)      # the probabilities' columns carry the class names
        write(writer)
    return 0


# ====================================================================== export
def cmd_export(args) -> int:
    """Write the network of a model file as an ONNX graph with bpfast.export_onnx. For a
    model written by 'bpfast train', the scaling stays outside the graph: it takes the
    standardised features (x - feature_mean) / feature_scale and gives the class
    probabilities (classify) or the standardised target (regress); the means, scales and
    class names are in the model file's metadata (bpfast.load(MODEL, with_metadata=True))."""
    import bpfast

    _refuse_overwriting(args.output, "OUT", model=args.model)
    net, meta = _load_model(args.model)
    export = getattr(bpfast, "export_onnx", None)
    if export is None:
        raise CLIError("this bpfast has no ONNX export (bpfast.export_onnx)")
    cli_model = isinstance(meta, dict) and meta.get("format") == CLI_FORMAT
    if cli_model:
        meta = check_metadata(meta, net, args.model)
    try:
        export(net, args.output, opset=args.opset)
    except ImportError as exc:
        raise CLIError(f"export needs the onnx package: pip install onnx ({exc})") from None
    print(f"wrote {args.output} (network {net.sizes})")
    if cli_model:
        print(f"note: the graph takes the scaled features (x - feature_mean) / feature_scale of "
              f"the model's metadata, in the order {meta['features']}", file=sys.stderr)
        if meta["task"] == "classify":
            print(f"note: its outputs are the probabilities of {meta['classes']}", file=sys.stderr)
        else:
            print(f"note: its output is (y - {meta['target_mean']:.10g}) / "
                  f"{meta['target_scale']:.10g}", file=sys.stderr)
    return 0


# ====================================================================== argument parsing
def _add_command(sub, name: str, help: str, command):
    """The subparser of `name`; its description is the docstring of `command`, the
    function that runs it."""
    return sub.add_parser(name, help=help, description=command.__doc__)


def _add_csv_input(p) -> None:
    """The CSV file argument (data) and the options of how it is read."""
    p.add_argument("data", help="CSV file (a header row unless --no-header)")
    p.add_argument("--no-header", action="store_true",
                   help="the file has no header row; its columns are named 1, 2, ... (a first "
                        "row that looks like data is otherwise refused)")
    p.add_argument("--delimiter", type=_delimiter, metavar="CHAR",
                   help="the column delimiter (default: detected among , ; tab |)")


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
                                   "backend from the same weights and batches; print the losses, "
                                   "the accuracy, and how many times faster the compiled fit is "
                                   "(one fit each, both without a callback).")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs for both problems (default: XOR 1000, spirals 100; --quick: 300, 20)")
    p.add_argument("--quick", action="store_true", help="fewer epochs: a few seconds in all")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)  # no bar now

    p = _add_command(sub, "bench", "run benchmarks/bench.py of the source checkout", cmd_bench)
    p.add_argument("--quick", action="store_true", help="a short run (tests/CI)")
    p.add_argument("--cases", nargs="*", metavar="CASE", help="cases to run, e.g. 64-64-10")
    p.add_argument("--output", metavar="FILE", help="markdown report to write")
    p.add_argument("--plot", metavar="FILE", help="PNG plot to write")
    p.add_argument("--script", metavar="PATH", help="the benchmark script to run instead")

    p = _add_command(sub, "train", "train a network on a CSV file and save it", cmd_train)
    p.add_argument("--target", metavar="COL", help="target column name (default: the last column)")
    p.add_argument("--features", metavar="COLS",
                   help="comma-separated feature columns (default: all but the target)")
    p.add_argument("--task", choices=("auto", "classify", "regress"), default="auto",
                   help="classify (softmax + cross-entropy) or regress (identity + MSE); auto: "
                        "classify when the target is text or a few distinct whole numbers")
    p.add_argument("--hidden", type=_layer_sizes, default=[32], metavar="SIZES",
                   help="hidden layer widths, comma-separated (default: 32; 0 for none)")
    p.add_argument("--activation", choices=HIDDEN_ACTIVATIONS, default="relu",
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
                   help="model file to write (default: model.npz)")
    p.add_argument("--plot", metavar="PNG", help="draw the loss per epoch into this PNG "
                                                 "(needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (tqdm)")
    _add_csv_input(p)

    p = _add_command(sub, "predict", "predict with a model written by 'bpfast train'", cmd_predict)
    p.add_argument("model", help="model file written by 'bpfast train'")
    p.add_argument("--output", "-o", metavar="FILE", help="write a CSV here instead of printing")
    p.add_argument("--proba", action="store_true", help="classification: add class probabilities")
    _add_csv_input(p)

    p = _add_command(sub, "export", "write a model as an ONNX graph (needs onnx)", cmd_export)
    p.add_argument("model", help="model file (bpfast.save or 'bpfast train')")
    p.add_argument("output", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--opset", type=_positive_int, default=None,
                   help="ONNX opset version (default: the exporter's)")
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
            from bpfast._demo import run_demo
            return run_demo(args.epochs, args.quick)
        if args.command == "bench":
            return cmd_bench(args, extra)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_predict(args)
    except CLIError as exc:
        print(f"bpfast: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (bpfast predict ... | head): stop quietly, and
        # keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError) as exc:
        # Anything else the input can cause (unwritable output, bad values deep inside).
        print(f"bpfast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bpfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
