"""CSV data for the command line: the table's layout, its columns read into NumPy, the
target column, and the metadata that a model file written by ``bpfast train`` carries.

Reading streams the rows: numeric cells go straight into a preallocated float64
array, a chunk of rows at a time, and the target column is kept as numbers (and,
for text labels, small integer codes), so reading needs little more memory than
the arrays it returns. Every problem is a ``CLIError`` whose message names the
file, the line and the column.
"""
from __future__ import annotations

import csv
import math
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CLI_FORMAT = "bpfast-cli-2"
# Delimiters csv.Sniffer may choose from; anything else must be given with --delimiter.
DELIMITERS = ",;\t|"
_SAMPLE_CHARS = 1 << 16         # text read to check the file is UTF-8 text, not empty
_SNIFF_CHARS = 1 << 12          # at most this much of it is given to csv.Sniffer
_HEADER_CHECK_ROWS = 100        # rows compared with the first to tell a header from data
_CHUNK_ROWS = 1024              # rows parsed per column-wise conversion


class CLIError(Exception):
    """A user error: printed as ``bpfast: error: <message>``, exit status 2."""


def is_number(text: str) -> bool:
    """True if ``float(text)`` is a finite number."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def number_label(value: float) -> str:
    """How a numeric class is named: '1' for 1 and 1.0, '0.5' for 0.5."""
    value = float(value)
    if value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


def refuse_repeated(names: Sequence[str], where: str) -> None:
    """CLIError if a name occurs more than once in `names`: "<where> names 'a', 'b' more
    than once" (sorted)."""
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise CLIError(f"{where} names {', '.join(map(repr, twice))} more than once")


def _blank(row: List[str]) -> bool:
    return not any(cell.strip() for cell in row)


def _looks_like_data(first: List[str], following: List[List[str]]) -> bool:
    """Whether a first row that should name the columns is rather a row of data.

    It is when all its cells are numbers, or when some are and each of the others
    recurs in its column below (a class label such as 'yes', not a column name).
    """
    numeric = [is_number(cell) for cell in first]
    if all(numeric):
        return True
    if not any(numeric):
        return False
    for j, cell in enumerate(first):
        if not numeric[j] and all(len(row) <= j or row[j].strip() != cell for row in following):
            return False
    return True


# ====================================================================== the table
class CSVTable:
    """A CSV file's layout (delimiter, column names); ``read`` loads chosen columns.

    Parameters
    ----------
    path : str
    header : bool
        The first non-blank row names the columns. A first row that looks like data
        is refused with a hint to ``--no-header``; without a header the columns are
        named "1", "2", ... in order.
    delimiter : str or None
        None: detected by csv.Sniffer among ``DELIMITERS`` (a comma if nothing fits).
    """

    def __init__(self, path: str, header: bool = True, delimiter: Optional[str] = None):
        if not os.path.exists(path):
            raise CLIError(f"no such file: {path}")
        if os.path.isdir(path):
            raise CLIError(f"{path} is a directory, not a CSV file")
        if not os.path.isfile(path):
            # A pipe or a device: the file is read more than once (its layout, then its rows).
            raise CLIError(f"{path} is not a regular file; save the data to a file first")
        self.path = path
        self.has_header = header
        sample = self._sample()
        if not sample.strip():
            raise CLIError(f"{path} is empty; a header row and at least one data row are needed")
        self.delimiter = delimiter or _sniff_delimiter(sample)
        first, following = self._first_rows()
        if header:
            names = [cell.strip() for cell in first]
            if _looks_like_data(names, following):
                raise CLIError(f"{path}: its first row {first!r} looks like data, not column "
                               f"names (numbers, and text that recurs in the rows below); if "
                               f"the file has no header row, give --no-header")
            refuse_repeated(names, f"{path}: the header")
        else:
            names = [str(i + 1) for i in range(len(first))]
        if len(names) == 1 and delimiter is None:
            others = [d for d in DELIMITERS if d in first[0]]
            if others:
                raise CLIError(f"{path}: no delimiter was found in its first row {first[0]!r}; "
                               f"if its columns are separated by {others[0]!r}, give "
                               f"--delimiter {others[0]!r}")
        self.columns: List[str] = names

    # ------------------------------------------------------------------ layout
    def _open(self):
        return open(self.path, newline="", encoding="utf-8-sig")

    def _sample(self) -> str:
        try:
            with self._open() as f:
                return f.read(_SAMPLE_CHARS)
        except UnicodeDecodeError as exc:
            raise CLIError(f"{self.path} is not a UTF-8 text (CSV) file: {exc}") from None

    def _reader(self, f):
        return csv.reader(f, delimiter=self.delimiter)

    def _first_rows(self) -> Tuple[List[str], List[List[str]]]:
        """The first non-blank row, and up to _HEADER_CHECK_ROWS rows after it."""
        rows: List[List[str]] = []
        with self._open() as f:
            reader = self._reader(f)
            try:
                for row in reader:
                    if not _blank(row):
                        rows.append(row)
                        if len(rows) > _HEADER_CHECK_ROWS:
                            break
            except (csv.Error, UnicodeDecodeError) as exc:
                raise CLIError(f"{self.path} line {reader.line_num}: not valid CSV ({exc})") from None
        if not rows:
            raise CLIError(f"{self.path} is empty; a header row and at least one data row are "
                           f"needed")
        return rows[0], rows[1:]

    def column(self, name: str) -> str:
        """``name`` if the table has that column, else a CLIError listing its columns."""
        if name in self.columns:
            return name
        hint = "" if self.has_header else " (without a header, columns are named 1, 2, ...)"
        raise CLIError(f"{self.path} has no column {name!r}; its columns are: "
                       f"{', '.join(self.columns)}{hint}")

    def _max_rows(self) -> int:
        """An upper bound of the data rows: the line breaks of the file, plus one."""
        newlines = returns = 0
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                newlines += block.count(b"\n")
                returns += block.count(b"\r")
        return max(newlines, returns) + 1

    # ------------------------------------------------------------------ reading
    def read(self, features: Sequence[str], target: Optional[str] = None
             ) -> Tuple[np.ndarray, Optional["TargetColumn"]]:
        """The feature columns as a float64 array (rows, len(features)), and the target column.

        Every feature cell must be a finite number; the target cells may be
        numbers or text labels, not empty and not NaN or infinity.
        """
        index = [self.columns.index(name) for name in features]
        width = len(self.columns)
        bound = self._max_rows()
        X = np.empty((bound, len(index)))
        y = None if target is None else TargetColumn(self, target, bound)
        n = 0
        rows: List[List[str]] = []
        lines: List[int] = []
        with self._open() as f:
            reader = self._reader(f)
            try:
                header_pending = self.has_header
                for row in reader:
                    if _blank(row):
                        continue
                    if header_pending:
                        header_pending = False
                        continue
                    if len(row) != width:
                        what = "the header has" if self.has_header else "the first row has"
                        raise CLIError(f"{self.path} line {reader.line_num}: {len(row)} fields, "
                                       f"but {what} {width} ({', '.join(self.columns)})")
                    rows.append(row)
                    lines.append(reader.line_num)
                    if len(rows) == _CHUNK_ROWS:
                        self._store(X, n, index, rows, lines, y)
                        n += len(rows)
                        rows, lines = [], []
            except (csv.Error, UnicodeDecodeError) as exc:
                raise CLIError(f"{self.path} line {reader.line_num}: not valid CSV ({exc})") from None
        if rows:
            self._store(X, n, index, rows, lines, y)
            n += len(rows)
        if n == 0:
            raise CLIError(f"{self.path} has a header but no data rows")
        if y is not None:
            y.finish(n)
        return X[:n], y

    def _store(self, X, start, index, rows, lines, target) -> None:
        """Convert one chunk of rows, column by column, into X[start:start + len(rows)]."""
        stop = start + len(rows)
        for j, k in enumerate(index):
            cells = [row[k] for row in rows]
            try:
                values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
            except ValueError:
                values = None
            if values is None or not np.isfinite(values).all():
                i = next(i for i, cell in enumerate(cells) if not is_number(cell))
                shown = repr(cells[i].strip()) if cells[i].strip() else "an empty cell"
                raise CLIError(f"{self.path} line {lines[i]}, column {self.columns[k]!r}: {shown} "
                               f"is not a finite number (features must be numeric)")
            X[start:stop, j] = values
        if target is not None:
            target.add(start, [row[target.index] for row in rows], lines)


class TargetColumn:
    """The target cells of a table: numbers where they parse, integer codes for text labels."""

    def __init__(self, table: CSVTable, name: str, bound: int):
        self.path = table.path
        self.name = name
        self.index = table.columns.index(name)
        self.numbers = np.empty(bound)                      # NaN where the cell is text
        self.codes = np.empty(bound, dtype=np.int64)        # -1 where the cell is a number
        self.text: Dict[str, int] = {}                      # text label -> code
        self.first_text: Optional[Tuple[int, str]] = None   # (line, cell) of the first label

    def add(self, start: int, cells: List[str], lines: List[int]) -> None:
        numbers, codes, text = self.numbers, self.codes, self.text
        for i, cell in enumerate(cells):
            cell = cell.strip()
            code = text.get(cell)
            if code is None:
                try:
                    value = float(cell)
                except ValueError:
                    if not cell:
                        raise CLIError(f"{self.path} line {lines[i]}: the target column "
                                       f"{self.name!r} is empty") from None
                    code = text[cell] = len(text)
                    if self.first_text is None:
                        self.first_text = (lines[i], cell)
                else:
                    if not math.isfinite(value):
                        raise CLIError(f"{self.path} line {lines[i]}: the target column "
                                       f"{self.name!r} holds {cell!r}, not a finite number; "
                                       f"remove or fill that row")
                    numbers[start + i] = value
                    codes[start + i] = -1
                    continue
            numbers[start + i] = math.nan
            codes[start + i] = code

    def finish(self, n: int) -> None:
        self.numbers = self.numbers[:n]
        self.codes = self.codes[:n]

    @property
    def numeric(self) -> bool:
        return not self.text

    def __len__(self) -> int:
        return len(self.numbers)

    def values(self) -> np.ndarray:
        """The target as numbers (n, 1), or a CLIError naming the first text cell."""
        if not self.numeric:
            line, cell = self.first_text
            raise CLIError(f"{self.path} line {line}, column {self.name!r}: {cell!r} is not a "
                           f"finite number (a regression target must be numeric)")
        return self.numbers.reshape(-1, 1)

    def classes(self) -> Tuple[List[str], np.ndarray]:
        """(class names, the class index of every row).

        Numbers are compared as numbers (``1`` and ``1.0`` are one class, named
        "1") and come first, in order of value; text labels follow, sorted.
        """
        is_number_cell = self.codes < 0
        values, inverse = np.unique(self.numbers[is_number_cell], return_inverse=True)
        names = [number_label(v) for v in values]
        index = np.empty(len(self.codes), dtype=np.int64)
        index[is_number_cell] = inverse.reshape(-1)
        if self.text:
            labels = sorted(self.text)
            order = np.empty(len(labels), dtype=np.int64)
            for rank, label in enumerate(labels):
                order[self.text[label]] = len(names) + rank
            index[~is_number_cell] = order[self.codes[~is_number_cell]]
            names += labels
        return names, index

    def task(self, task: str) -> str:
        """'classify' or 'regress': ``task`` itself, or for 'auto' what the values suggest.

        auto: classify for text labels, or for a few distinct whole numbers
        (at most max(2, min(20, rows // 5))); regress otherwise.
        """
        if task != "auto":
            return task
        if not self.numeric:
            return "classify"
        if not np.all(self.numbers == np.round(self.numbers)):
            return "regress"
        distinct = len(np.unique(self.numbers))
        return "classify" if distinct <= max(2, min(20, len(self) // 5)) else "regress"


def standardize(X: np.ndarray, names: Sequence[str], path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Scale X's columns in place to mean 0 and standard deviation 1; returns (mean, scale).

    A constant column keeps scale 1. A column whose mean or standard deviation
    overflows float64 is refused: its scaled values would be meaningless.
    """
    mean = np.empty(X.shape[1])
    scale = np.empty(X.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(X.shape[1]):
            column = X[:, j]
            mean[j], scale[j] = column.mean(), column.std()
            if not (math.isfinite(mean[j]) and math.isfinite(scale[j])):
                raise CLIError(f"{path}: column {names[j]!r} cannot be standardised: its values "
                               f"are so large that their mean or standard deviation overflows "
                               f"(largest magnitude {np.abs(column).max():.3g}); rescale it")
    scale[scale == 0] = 1.0
    X -= mean
    X /= scale
    return mean, scale


# ====================================================================== model metadata
def cli_metadata(task: str, target: str, features: List[str], mean, scale, *,
                 classes: Optional[List[str]] = None, target_mean: float = 0.0,
                 target_scale: float = 1.0) -> dict:
    """What turns CSV rows into network inputs and outputs back into answers."""
    meta = {"format": CLI_FORMAT, "task": task, "target": target, "features": list(features),
            "feature_mean": [float(v) for v in mean], "feature_scale": [float(v) for v in scale]}
    if task == "classify":
        meta["classes"] = list(classes)
    else:
        meta["target_mean"], meta["target_scale"] = float(target_mean), float(target_scale)
    return meta


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(meta, net, path: str) -> dict:
    """``meta`` if it is complete, well-typed ``bpfast train`` metadata for ``net``, else CLIError."""
    if meta is None:
        old = (" (its .json file beside it is from an older 'bpfast train', whose two-file "
               "models are no longer read: train it again)") if os.path.exists(path + ".json") else ""
        raise CLIError(f"{path} holds no 'bpfast train' metadata (feature names, scaling, classes)"
                       f"{old}; a plain bpfast.save model is used from Python: bpfast.load(...)"
                       f".predict(X)")

    def bad(what: str) -> CLIError:
        return CLIError(f"{path}: its 'bpfast train' metadata is invalid: {what}")

    if not isinstance(meta, dict) or meta.get("format") != CLI_FORMAT:
        shown = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CLIError(f"{path} holds metadata that is not from 'bpfast train' (format "
                       f"{shown!r}, expected {CLI_FORMAT!r})")
    task = meta.get("task")
    if task not in ("classify", "regress"):
        raise bad(f"unknown task {task!r} (expected 'classify' or 'regress')")
    need = ["target", "features", "feature_mean", "feature_scale"]
    need += ["classes"] if task == "classify" else ["target_mean", "target_scale"]
    missing = [key for key in need if key not in meta]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    if not isinstance(meta["target"], str):
        raise bad("'target' must be a column name")
    n_in, n_out = net.n_inputs, net.n_outputs
    features = meta["features"]
    if (not isinstance(features, list) or not all(isinstance(f, str) for f in features)
            or len(features) != n_in or len(set(features)) != n_in):
        raise bad(f"'features' must be {n_in} distinct column names (the network has {n_in} "
                  f"inputs)")
    for key in ("feature_mean", "feature_scale"):
        values = meta[key]
        if not isinstance(values, list) or len(values) != n_in or not all(map(_is_real, values)):
            raise bad(f"{key!r} must be {n_in} finite numbers")
    if not all(v > 0 for v in meta["feature_scale"]):
        raise bad("'feature_scale' must be positive")
    if task == "classify":
        classes = meta["classes"]
        if (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
                or len(classes) != n_out or len(set(classes)) != n_out or n_out < 2):
            raise bad(f"'classes' must be {n_out} distinct names (the network has {n_out} "
                      f"outputs), and a classifier at least 2")
    else:
        if n_out != 1:
            raise bad(f"a regression model has 1 output; the network has {n_out}")
        if not (_is_real(meta["target_mean"]) and _is_real(meta["target_scale"])
                and meta["target_scale"] > 0):
            raise bad("'target_mean' and 'target_scale' must be finite numbers, the scale > 0")
    return meta


def _sniff_delimiter(sample: str) -> str:
    """The delimiter csv.Sniffer finds among DELIMITERS in the sample's first lines, or ','."""
    if len(sample) > _SNIFF_CHARS:
        # Whole lines only, and few: the Sniffer's quote search takes time quadratic in the
        # sample on some inputs (64 KiB of ',"' took 14 s; 4 KiB takes under 0.1 s).
        sample = sample[:_SNIFF_CHARS]
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[:cut]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
