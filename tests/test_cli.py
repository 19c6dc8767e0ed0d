"""The command line: bpfast demo / bench / train / predict / export, mostly as real
subprocesses; the error paths and the wiring to optional APIs also in-process through
``main()``, which returns the exit status."""
import csv
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import bpfast
from bpfast import __main__ as cli
from bpfast._datasets import one_hot, two_spirals, xor

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, timeout=300, env=None):
    """``python -m bpfast ARGS`` -> CompletedProcess (text)."""
    args = [a for a in args if a is not None]
    env = dict(os.environ if env is None else env, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "bpfast", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def assert_usage_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in proc.stderr, proc.stderr


def main_error(capsys, *args):
    """Run main(args) in-process; assert exit status 2 and a one-line message; return it."""
    status = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpfast: error: "), err
    return lines[0]


def listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    label = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    with open(d / "cls.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "label"])
        w.writerows([[*map(float, x), lab] for x, lab in zip(X, label)])
    with open(d / "reg.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "y", "b", "c"])      # target in the middle
        w.writerows([[x[0], 3 * x[0] - 2 * x[1] + 5, x[1], x[2]] for x in X])
    (d / "bad_number.csv").write_text("a,b,label\n1,2,x\n3,oops,y\n")
    (d / "no_header.csv").write_text("1,2,3\n4,5,6\n")
    (d / "ragged.csv").write_text("a,b,label\n1,2,x\n3,4\n")
    (d / "empty.csv").write_text("")
    (d / "dup_header.csv").write_text("a,b,a,label\n1,2,3,x\n4,5,6,y\n")
    return d


@pytest.fixture(scope="module")
def models(csvs, tmp_path_factory):
    """A classifier and a regressor written by 'bpfast train'."""
    d = tmp_path_factory.mktemp("models")
    for name, data, target in (("cls.npz", "cls.csv", "label"), ("reg.npz", "reg.csv", "y")):
        assert cli.main(["train", str(csvs / data), "--target", target, "--epochs", "3",
                         "--output", str(d / name), "--no-progress"]) == 0
    return d


# ---------------------------------------------------------------- data sets
def test_datasets():
    X, y = xor()
    assert X.shape == (4, 2) and list(y) == [0, 1, 1, 0]
    X, y = two_spirals(50, noise=0.01, seed=3)
    assert X.shape == (100, 2) and np.bincount(y).tolist() == [50, 50]
    assert np.abs(X).max() < 1.1
    np.testing.assert_array_equal(one_hot(y, 2).argmax(axis=1), y)
    with pytest.raises(ValueError):
        two_spirals(1)


# ---------------------------------------------------------------- help and usage
COMMANDS = ("demo", "bench", "train", "predict", "export")


def test_help_lists_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in COMMANDS:
        assert cmd in proc.stdout
    for cmd in COMMANDS:
        sub = run(cmd, "--help")
        assert sub.returncode == 0 and "usage: bpfast " + cmd in sub.stdout


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'bpfast = "bpfast.__main__:main"' in text


def test_no_command_and_unknown_option():
    assert run().returncode == 2
    assert_usage_error(run("train", "x.csv", "--bogus", "1"), "unrecognized arguments")


def test_the_activation_choices_are_the_library_s():
    from bpfast.activations import HIDDEN_ACTIVATIONS
    train = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "activation")
    assert tuple(train.choices) == HIDDEN_ACTIVATIONS


# ---------------------------------------------------------------- demo
def test_demo_quick():
    proc = run("demo", "--quick")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "XOR" in out and "two spirals" in out
    # XOR is learnt by both backends
    accs = [float(a) for a in re.findall(r"accuracy ([\d.]+)%", out)]
    assert len(accs) == 4 and accs[0] == accs[1] == 100.0
    assert accs[2] == accs[3] > 70.0          # spirals after a few epochs, same on both
    # the two backends compute the same losses, and the compiled fit is faster
    diffs = [float(d) for d in re.findall(r"max \|loss difference\| over the epochs (\S+)", out)]
    assert len(diffs) == 2 and max(diffs) < 1e-9
    ratios = re.findall(r"fit, compiled vs reference: ([\d.]+)x faster \(one fit each, same "
                        r"weights and batches\)", out)
    assert len(ratios) == 2 and float(ratios[1]) > 5
    for section in out.split("\n\n")[1:]:
        for backend in ("cython", "reference"):
            losses = [float(v) for v in re.findall(backend + r" +epoch +\d+ +loss ([\d.]+)", section)]
            assert len(losses) == 6 and losses[-1] < losses[0]


def test_demo_times_fits_without_a_callback(monkeypatch, capsys):
    """Like with like: both backends' timed fits run without a per-epoch callback (which
    would time Python overhead), from the same weights, with the same batches."""
    calls = []
    real_fit = bpfast.Network.fit

    def fit(self, X, Y, **kw):
        calls.append((self.backend, kw.get("epochs"), kw.get("callback"), kw.get("progress", False),
                      kw.get("seed"), self.get_parameters()))
        return real_fit(self, X, Y, **kw)
    monkeypatch.setattr(bpfast.Network, "fit", fit)
    assert cli.main(["demo", "--epochs", "7"]) == 0
    timed = [c for c in calls if c[1] == 7]
    assert [c[0] for c in timed] == ["cython", "reference"] * 2
    assert all(c[2] is None and c[3] is False for c in calls)
    for a, b in (timed[0:2], timed[2:4]):
        assert a[4] == b[4] and np.array_equal(a[5], b[5])      # same shuffle seed, same weights
    out = capsys.readouterr().out
    assert out.count("reference epoch     7  loss") == 2


def test_demo_epochs_option():
    proc = run("demo", "--epochs", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("3 epochs") == 2
    assert_usage_error(run("demo", "--epochs", "0"), "--epochs")


# ---------------------------------------------------------------- train / predict
def test_train_and_predict_classifier(csvs, tmp_path):
    model = tmp_path / "m.npz"
    proc = run("train", csvs / "cls.csv", "--target", "label", "--hidden", "16,8", "--epochs", "40",
               "--lr", "0.05", "--batch-size", "16", "--activation", "tanh", "--task", "classify",
               "--output", model, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    acc = float(re.search(r"training accuracy ([\d.]+)%", proc.stdout).group(1))
    assert acc > 90
    assert listing(tmp_path) == ["m.npz"]            # one file: no sidecar
    net, meta = bpfast.load(model, with_metadata=True)
    assert meta["classes"] == ["no", "yes"] and meta["features"] == ["a", "b", "c"]
    assert meta["format"] == "bpfast-cli-2" and meta["task"] == "classify"
    assert net.sizes == [3, 16, 8, 2] and net.activation == "tanh"

    pred = run("predict", model, csvs / "cls.csv")
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.split()
    assert len(lines) == 200 and set(lines) <= {"yes", "no"}
    with open(csvs / "cls.csv") as f:
        truth = [row["label"] for row in csv.DictReader(f)]
    assert np.mean([p == t for p, t in zip(lines, truth)]) == pytest.approx(acc / 100, abs=0.006)

    # the predictions are the network's on the scaled features, by hand
    with open(csvs / "cls.csv") as f:
        X = np.array([[float(r[c]) for c in "abc"] for r in csv.DictReader(f)])
    P = net.predict((X - meta["feature_mean"]) / np.array(meta["feature_scale"]))
    assert lines == [meta["classes"][k] for k in P.argmax(axis=1)]

    out = tmp_path / "pred.csv"
    pred = run("predict", model, csvs / "cls.csv", "--proba", "--output", out)
    assert pred.returncode == 0 and pred.stdout == ""
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "p(no)", "p(yes)"] and len(rows) == 201
    assert [r[0] for r in rows[1:]] == lines
    np.testing.assert_allclose(np.array([r[1:] for r in rows[1:]], dtype=float), P, rtol=1e-5)

    printed = run("predict", model, csvs / "cls.csv", "--proba")     # stdout: same, header too
    assert printed.returncode == 0
    assert list(csv.reader(printed.stdout.splitlines())) == rows


def test_train_and_predict_regressor(csvs, tmp_path):
    model = tmp_path / "r.npz"
    proc = run("train", csvs / "reg.csv", "--target", "y", "--epochs", "60", "--lr", "0.01",
               "--hidden", "0", "--output", model, "--no-progress")     # linear model
    assert proc.returncode == 0, proc.stderr
    assert "training regress" in proc.stdout                            # auto-detected
    r2 = float(re.search(r"R\^2 ([-\d.]+)", proc.stdout).group(1))
    assert r2 > 0.999
    pred = run("predict", model, csvs / "reg.csv")
    values = np.array([float(v) for v in pred.stdout.split()])
    with open(csvs / "reg.csv") as f:
        truth = np.array([float(row["y"]) for row in csv.DictReader(f)])
    assert np.abs(values - truth).max() < 0.1


def test_train_prints_the_summary_when_the_network_has_one(csvs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bpfast.Network, "summary", lambda self: f"SUMMARY OF {self.sizes}",
                        raising=False)
    assert cli.main(["train", str(csvs / "cls.csv"), "--epochs", "1", "--hidden", "5",
                     "--output", str(tmp_path / "m.npz"), "--no-progress"]) == 0
    assert "SUMMARY OF [3, 5, 2]" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(bpfast.Network, "summary"), reason="Network.summary not here yet")
def test_train_prints_the_real_summary(csvs, tmp_path):
    proc = run("train", csvs / "cls.csv", "--epochs", "1", "--hidden", "5", "--output",
               tmp_path / "m.npz", "--no-progress")
    assert proc.returncode == 0
    # The summary printed is that of the model saved, optimizer state and all.
    assert bpfast.load(tmp_path / "m.npz").summary() in proc.stdout
    assert "Optimizer state: sgd, " in proc.stdout


# ---------------------------------------------------------------- one model file
def test_predict_refuses_a_model_without_cli_metadata(tmp_path, capsys):
    net = bpfast.Network([2, 3, 1], seed=0)
    bpfast.save(net, tmp_path / "raw.npz")
    (tmp_path / "x.csv").write_text("u,v\n0.5,1.0\n-1,2\n")
    proc = run("predict", tmp_path / "raw.npz", tmp_path / "x.csv")
    assert_usage_error(proc, "no 'bpfast train' metadata")
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    # a two-file model of an older 'bpfast train': said so
    (tmp_path / "raw.npz.json").write_text('{"format": "bpfast-cli-1"}')
    assert "older 'bpfast train'" in main_error(capsys, "predict", tmp_path / "raw.npz",
                                                tmp_path / "x.csv")
    # metadata of someone else's
    bpfast.save(net, tmp_path / "other.npz", metadata={"author": "me"})
    assert "not from 'bpfast train'" in main_error(capsys, "predict", tmp_path / "other.npz",
                                                   tmp_path / "x.csv")


def mutate(meta, change):
    meta = {**meta}
    for key, value in change.items():
        if value is KeyError:
            del meta[key]
        else:
            meta[key] = value
    return meta


@pytest.mark.parametrize("which, change, words", [
    ("cls", {"classes": KeyError}, "missing classes"),
    ("cls", {"features": KeyError, "feature_mean": KeyError}, "missing features, feature_mean"),
    ("cls", {"classes": ["no"]}, "'classes' must be 2"),
    ("cls", {"classes": ["no", "no"]}, "'classes' must be 2 distinct"),
    ("cls", {"classes": "no,yes"}, "'classes'"),
    ("cls", {"classes": [0, 1]}, "'classes'"),
    ("cls", {"task": "cluster"}, "unknown task 'cluster'"),
    ("cls", {"task": None}, "unknown task"),
    ("cls", {"format": "bpfast-cli-1"}, "not from 'bpfast train'"),
    ("cls", {"features": ["a", "b"]}, "'features' must be 3"),
    ("cls", {"features": "abc"}, "'features'"),
    ("cls", {"feature_mean": [0, 0, "0"]}, "'feature_mean' must be 3 finite numbers"),
    ("cls", {"feature_mean": [0, 0, True]}, "'feature_mean'"),
    ("cls", {"feature_scale": [1, 1]}, "'feature_scale' must be 3"),
    ("cls", {"feature_scale": [1, 0, 1]}, "'feature_scale' must be positive"),
    ("cls", {"feature_scale": {"a": 1}}, "'feature_scale'"),
    ("cls", {"target": 3}, "'target'"),
    ("reg", {"target_scale": KeyError}, "missing target_scale"),
    ("reg", {"target_scale": "1"}, "'target_scale'"),
    ("reg", {"target_mean": None}, "'target_mean'"),
    ("reg", {"target_scale": -1.0}, "the scale > 0"),
    ("reg", {"task": "classify", "classes": ["x"]}, "a classifier at least 2"),
    ("cls", {"task": "regress", "target_mean": 0, "target_scale": 1}, "1 output"),
])
def test_malformed_metadata_is_a_one_line_error(models, csvs, tmp_path, capsys, which, change,
                                                words):
    net, meta = bpfast.load(models / f"{which}.npz", with_metadata=True)
    bpfast.save(net, tmp_path / "bad.npz", metadata=mutate(meta, change))
    data = csvs / ("cls.csv" if which == "cls" else "reg.csv")
    message = main_error(capsys, "predict", tmp_path / "bad.npz", data)
    assert words in message and "bad.npz" in message


def test_metadata_with_nan_written_by_another_tool_is_refused(models, csvs, tmp_path, capsys):
    import json
    net, meta = bpfast.load(models / "reg.npz", with_metadata=True)
    meta["target_mean"] = float("nan")
    fields = dict(np.load(models / "reg.npz"))
    fields["metadata"] = np.array(json.dumps(meta))      # json writes NaN unless told not to
    with open(tmp_path / "nan.npz", "wb") as f:
        np.savez(f, **fields)
    assert "'target_mean'" in main_error(capsys, "predict", tmp_path / "nan.npz", csvs / "reg.csv")


# ---------------------------------------------------------------- reading the data right
def write(path, text):
    Path(path).write_text(text)
    return path


def test_a_nan_in_the_target_is_an_error_naming_the_row(tmp_path, capsys):
    for cell in ("nan", "NaN", "inf", "-Infinity"):
        data = write(tmp_path / "d.csv", f"x,y\n1,0\n2,1\n3,{cell}\n4,1\n")
        for task in ("auto", "classify", "regress"):
            message = main_error(capsys, "train", data, "--task", task, "--epochs", "1",
                                 "--output", tmp_path / "m.npz", "--no-progress")
            assert "line 4" in message and "'y'" in message and cell in message
    data = write(tmp_path / "d.csv", "x,y\n1,a\n2,\n")
    assert "line 3: the target column 'y' is empty" in main_error(
        capsys, "train", data, "--output", tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_numeric_targets_are_compared_as_numbers(tmp_path):
    rows = "\n".join(f"{i % 7},{[1, 1.0, '2', '2.00', ' 1 ', '1e0'][i % 6]}" for i in range(60))
    data = write(tmp_path / "d.csv", "x,label\n" + rows + "\n")
    proc = run("train", data, "--task", "classify", "--epochs", "2", "--output",
               tmp_path / "m.npz", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "(2 classes)" in proc.stdout
    assert bpfast.load(tmp_path / "m.npz", with_metadata=True)[1]["classes"] == ["1", "2"]
    pred = run("predict", tmp_path / "m.npz", data)
    assert set(pred.stdout.split()) <= {"1", "2"}


def test_a_file_without_a_header_is_refused_with_a_hint_or_read_with_no_header(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 2))
    body = "".join(f"{a},{b},{int(a > b)}\n" for a, b in X)
    data = write(tmp_path / "plain.csv", body)
    message = main_error(capsys, "train", data, "--output", tmp_path / "m.npz")
    assert "--no-header" in message and "looks like data" in message
    # numbers and a text label that recurs below: data too
    labelled = write(tmp_path / "labelled.csv", "".join(f"{a},{b},{'yn'[int(a > b)]}\n" for a, b in X))
    assert "looks like data" in main_error(capsys, "train", labelled, "--output", tmp_path / "m.npz")
    # numbers among names that do not recur below: a header
    named = write(tmp_path / "named.csv", "x,2019,label\n" + "".join(f"{a},{b},{'yn'[int(a > b)]}\n"
                                                                    for a, b in X))
    assert _csvdata.CSVTable(str(named)).columns == ["x", "2019", "label"]
    assert cli.main(["train", str(data), "--no-header", "--task", "classify", "--epochs", "30",
                     "--lr", "0.1", "--output", str(tmp_path / "m.npz"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "80 rows, 2 features -> '3'" in out                  # the header row was data
    meta = bpfast.load(tmp_path / "m.npz", with_metadata=True)[1]
    assert meta["features"] == ["1", "2"] and meta["target"] == "3"
    # predict on the features alone, without a header: the columns in order
    feats = write(tmp_path / "feats.csv", "".join(f"{a},{b}\n" for a, b in X))
    assert "--no-header" in main_error(capsys, "predict", tmp_path / "m.npz", feats)
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(feats), "--no-header"]) == 0
    labels = capsys.readouterr().out.split()
    assert len(labels) == 80
    assert np.mean(np.array(labels, dtype=int) == (X[:, 0] > X[:, 1])) > 0.9


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters_are_detected_and_give_the_same_model(csvs, tmp_path, delimiter):
    with open(csvs / "cls.csv") as f:
        rows = list(csv.reader(f))
    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    for name, data in (("comma.npz", csvs / "cls.csv"), ("other.npz", other)):
        proc = run("train", data, "--epochs", "3", "--output", tmp_path / name, "--no-progress")
        assert proc.returncode == 0, proc.stderr
    assert repr(delimiter) in proc.stderr                       # said which one it found
    a = bpfast.load(tmp_path / "comma.npz", with_metadata=True)
    b = bpfast.load(tmp_path / "other.npz", with_metadata=True)
    assert a[1] == b[1] and np.array_equal(a[0].get_parameters(), b[0].get_parameters())
    pred = [run("predict", tmp_path / "comma.npz", data).stdout for data in (csvs / "cls.csv", other)]
    assert pred[0] == pred[1] and len(pred[0].split()) == 200


def test_an_undetected_delimiter_is_named_in_the_error(tmp_path, capsys):
    data = write(tmp_path / "colon.csv", "a:b:label\n1:2:x\n3:4:y\n5:6:x\n7:8:y\n")
    message = main_error(capsys, "train", data, "--output", tmp_path / "m.npz")
    assert "one column only" in message and "--delimiter" in message
    assert cli.main(["train", str(data), "--delimiter", ":", "--epochs", "1", "--output",
                     str(tmp_path / "m.npz"), "--no-progress"]) == 0
    assert bpfast.load(tmp_path / "m.npz", with_metadata=True)[1]["features"] == ["a", "b"]


@pytest.mark.parametrize("column", ["a", "y"])
def test_a_standard_deviation_that_overflows_is_refused(tmp_path, capsys, column):
    rows = [[1e300 * (-1) ** i, i % 3, i % 2] for i in range(20)]
    if column == "y":
        rows = [[i % 3, i % 2, 1e300 * (-1) ** i] for i in range(20)]
        header = "a,b,y"
    else:
        header = "a,b,y"
    data = write(tmp_path / "big.csv", header + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    message = main_error(capsys, "train", data, "--task", "regress" if column == "y" else "classify",
                         "--output", tmp_path / "m.npz", "--no-progress")
    assert f"column {column!r} cannot be standardised" in message
    assert not (tmp_path / "m.npz").exists()


def test_as_many_classes_as_rows_warns(tmp_path, capsys):
    data = write(tmp_path / "ids.csv", "x,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(30)))
    assert cli.main(["train", str(data), "--task", "classify", "--epochs", "1", "--output",
                     str(tmp_path / "m.npz"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "as many classes as rows (30)" in err
    # chosen by --task auto (text in every row differs: an identifier, say), it is an error
    data = write(tmp_path / "ids.csv", "x,id\n" + "".join(f"{i},np.float64({i})\n" for i in range(30)))
    message = main_error(capsys, "train", data, "--output", tmp_path / "n.npz")
    assert "as many classes as rows (30)" in message and "--task classify" in message


def test_one_hot_targets_beyond_2_gib_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_MAX_ONE_HOT", 20 * 9)       # as if: 20 rows x 10 classes is too many
    data = write(tmp_path / "d.csv", "x,y\n" + "".join(f"{i},c{i % 10}\n" for i in range(20)))
    assert "20 rows x 10 classes" in main_error(capsys, "train", data, "--output", tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_a_single_class_is_refused(tmp_path, capsys):
    data = write(tmp_path / "one.csv", "x,y\n1,a\n2,a\n3,a\n")
    assert "one class only ('a')" in main_error(capsys, "train", data, "--output",
                                                 tmp_path / "m.npz")
    data = write(tmp_path / "one.csv", "x,y\n1,1\n2,1.0\n3,1\n")
    assert "one class only ('1')" in main_error(capsys, "train", data, "--task", "classify",
                                                 "--output", tmp_path / "m.npz")


def test_proba_on_a_regressor_is_refused(models, csvs, capsys):
    assert "regression model" in main_error(capsys, "predict", models / "reg.npz",
                                            csvs / "reg.csv", "--proba")


def test_reading_a_csv_needs_little_more_memory_than_the_file(tmp_path):
    """Numbers go straight into NumPy: the whole train run (reading, scaling, a one-epoch
    fit, saving) of a 4.4 MB CSV allocates less than the file's size (0.74x; Python
    lists of all the cells took 8.6x)."""
    import tracemalloc
    rng = np.random.default_rng(0)
    X = rng.normal(size=(25000, 8))
    data = tmp_path / "big.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(8)] + ["y"])
        w.writerows([[*map(float, x), float(x.sum())] for x in X])
    size = data.stat().st_size
    tracemalloc.start()
    try:
        status = cli.main(["train", str(data), "--epochs", "1", "--hidden", "4", "--output",
                           str(tmp_path / "m.npz"), "--no-progress"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0
    assert peak < size, (peak, size)


# ---------------------------------------------------------------- never overwrite an input
def test_train_refuses_to_overwrite_its_data(csvs, tmp_path, capsys):
    data = tmp_path / "data.csv"
    shutil.copy(csvs / "cls.csv", data)
    before = data.read_bytes()
    assert "training data" in main_error(capsys, "train", data, "-o", data, "--epochs", "1")
    os.symlink(data, tmp_path / "alias.npz")
    assert "training data" in main_error(capsys, "train", data, "-o", tmp_path / "alias.npz")
    assert "training data" in main_error(capsys, "train", data, "--plot", data)
    assert "model output" in main_error(capsys, "train", data, "-o", tmp_path / "m.npz",
                                        "--plot", tmp_path / "m.npz")
    assert data.read_bytes() == before
    proc = run("train", data, "-o", data, "--epochs", "1")
    assert_usage_error(proc, "would destroy it")
    assert data.read_bytes() == before


def test_predict_refuses_to_overwrite_the_model_or_its_data(models, csvs, tmp_path, capsys):
    model, data = tmp_path / "m.npz", tmp_path / "x.csv"
    shutil.copy(models / "cls.npz", model)
    shutil.copy(csvs / "cls.csv", data)
    saved = model.read_bytes(), data.read_bytes()
    assert "is the model" in main_error(capsys, "predict", model, data, "-o", model)
    assert "is the input data" in main_error(capsys, "predict", model, data, "-o", data)
    os.link(model, tmp_path / "hard.npz")
    assert "is the model" in main_error(capsys, "predict", model, data, "-o", tmp_path / "hard.npz")
    assert "is the model" in main_error(capsys, "export", model, model)
    assert (model.read_bytes(), data.read_bytes()) == saved
    assert_usage_error(run("predict", model, data, "-o", model), "would destroy it")
    assert bpfast.load(model).sizes == bpfast.load(models / "cls.npz").sizes


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("args, message", [
    (["train", "{d}/missing.csv"], "no such file"),
    (["train", "{d}/cls.csv", "--target", "nope"], "has no column 'nope'"),
    (["train", "{d}/bad_number.csv", "--target", "label"], "line 3, column 'b': 'oops' is not a"),
    (["train", "{d}/no_header.csv"], "--no-header"),
    (["train", "{d}/ragged.csv"], "line 3: 2 fields"),
    (["train", "{d}/empty.csv"], "empty"),
    (["train", "{d}/cls.csv", "--lr", "abc"], "argument --lr"),
    (["train", "{d}/cls.csv", "--lr", "-1"], "argument --lr"),
    (["train", "{d}/cls.csv", "--epochs", "1.5"], "argument --epochs"),
    (["train", "{d}/cls.csv", "--hidden", "4,x"], "argument --hidden"),
    (["train", "{d}/cls.csv", "--activation", "softmax"], "argument --activation"),
    (["train", "{d}/cls.csv", "--delimiter", "ab"], "argument --delimiter"),
    (["train", "{d}/cls.csv", "--features", "a,b,a"], "--features names 'a' more than once"),
    (["train", "{d}/dup_header.csv"], "dup_header.csv: the header names 'a' more than once"),
    (["train", "{d}/cls.csv", "--features", "a,label", "--target", "label"], "cannot also be a feature"),
    (["train", "{d}/cls.csv", "--task", "regress", "--target", "label"], "is not a finite number (a regression target"),
    (["train", "{d}/cls.csv", "--output", "{d}/no/such/dir/m.npz", "--epochs", "1"], "no directory"),
    (["predict", "{d}/missing.npz", "{d}/cls.csv"], "no such model file"),
    (["predict", "{d}/cls.csv", "{d}/cls.csv"], "bpfast model"),
    (["export", "{d}/missing.npz", "{d}/out.onnx"], "no such model file"),
    (["export", "{d}/m.npz", "{d}/out.onnx", "--opset", "0"], "argument --opset"),
])
def test_clear_errors(csvs, args, message):
    proc = run(*[a.format(d=csvs) for a in args], "--no-progress" if args[0] == "train" else None)
    assert_usage_error(proc, message)


def test_predict_missing_feature_column(models, tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert_usage_error(run("predict", models / "cls.npz", tmp_path / "other.csv"),
                       "has no column 'c'")


# ---------------------------------------------------------------- export and --plot
def test_export_calls_export_onnx(models, tmp_path, monkeypatch, capsys):
    calls = []

    def export_onnx(net, path, opset=None):
        calls.append((net, path, opset))
        Path(path).write_bytes(b"onnx")
    monkeypatch.setattr(bpfast, "export_onnx", export_onnx, raising=False)
    assert cli.main(["export", str(models / "cls.npz"), str(tmp_path / "m.onnx"),
                     "--opset", "17"]) == 0
    (net, path, opset), = calls
    assert (path, opset) == (str(tmp_path / "m.onnx"), 17)
    assert np.array_equal(net.get_parameters(), bpfast.load(models / "cls.npz").get_parameters())
    err = capsys.readouterr().err
    assert "(x - feature_mean) / feature_scale" in err and "['no', 'yes']" in err
    assert cli.main(["export", str(models / "reg.npz"), str(tmp_path / "r.onnx")]) == 0
    assert calls[-1][2] is None
    assert "its output is (y - " in capsys.readouterr().err

    def no_onnx(net, path, opset=None):
        raise ImportError("No module named 'onnx'")
    monkeypatch.setattr(bpfast, "export_onnx", no_onnx)
    assert "pip install onnx" in main_error(capsys, "export", models / "cls.npz", tmp_path / "x.onnx")
    monkeypatch.delattr(bpfast, "export_onnx")
    assert "no ONNX export" in main_error(capsys, "export", models / "cls.npz", tmp_path / "x.onnx")


def test_export_help_says_the_scaling_stays_outside():
    proc = run("export", "--help")
    assert "scaling stays outside the graph" in " ".join(proc.stdout.split())


@pytest.mark.skipif(not hasattr(bpfast, "export_onnx"), reason="bpfast.export_onnx not here yet")
def test_export_a_trained_model_to_onnx(models, csvs, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    proc = run("export", models / "cls.npz", out)
    assert proc.returncode == 0, proc.stderr
    net, meta = bpfast.load(models / "cls.npz", with_metadata=True)
    with open(csvs / "cls.csv") as f:
        X = np.array([[float(r[c]) for c in meta["features"]] for r in csv.DictReader(f)])
    Xs = (X - meta["feature_mean"]) / np.array(meta["feature_scale"])
    session = ort.InferenceSession(str(out))
    got = session.run(None, {session.get_inputs()[0].name: Xs.astype(net.dtype)})[0]
    np.testing.assert_allclose(got, net.predict(Xs), rtol=1e-5, atol=1e-7)


def test_plot_calls_history_plot_after_saving(csvs, tmp_path, monkeypatch, capsys):
    drawn = []

    def plot(self, path=None):
        drawn.append((len(self.loss), path, (tmp_path / "m.npz").exists()))
    monkeypatch.setattr(bpfast.History, "plot", plot, raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib"))
    assert cli.main(["train", str(csvs / "cls.csv"), "--epochs", "4", "--output",
                     str(tmp_path / "m.npz"), "--plot", str(tmp_path / "loss.png"),
                     "--no-progress"]) == 0
    assert drawn == [(4, str(tmp_path / "loss.png"), True)]
    assert "loss.png" in capsys.readouterr().out


def test_plot_without_matplotlib_is_a_one_line_error_before_training(csvs, tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib fails
    message = main_error(capsys, "train", csvs / "cls.csv", "--output", tmp_path / "m.npz",
                         "--plot", tmp_path / "loss.png")
    assert "--plot needs matplotlib" in message
    assert listing(tmp_path) == []


@pytest.mark.skipif(not hasattr(bpfast.History, "plot"), reason="History.plot not here yet")
def test_plot_writes_a_png(csvs, tmp_path):
    pytest.importorskip("matplotlib")
    proc = run("train", csvs / "cls.csv", "--epochs", "3", "--output", tmp_path / "m.npz",
               "--plot", tmp_path / "loss.png", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- bench
def test_bench_missing_script():
    assert_usage_error(run("bench", "--script", "/nonexistent/bench.py"),
                       "benchmark script not found")


def test_bench_forwards_options(tmp_path):
    fake = tmp_path / "bench.py"
    fake.write_text("import sys, json; print(json.dumps(sys.argv[1:])); sys.exit(3)\n")
    proc = run("bench", "--script", fake, "--quick", "--cases", "64-64-10", "8-8-2:float32",
               "--output", "r.md", "--plot", "p.png", "--repeats", "2")
    assert proc.returncode == 3                  # the script's own exit status
    import json
    assert json.loads(proc.stdout) == ["--quick", "--cases", "64-64-10", "8-8-2:float32",
                                       "--output", "r.md", "--plot", "p.png", "--repeats", "2"]


def test_bench_finds_the_checkout_script():
    if not (REPO / "benchmarks" / "bench.py").is_file():
        pytest.skip("no benchmarks/bench.py in this checkout")
    if Path(cli.__file__).resolve().parents[2] != REPO:
        pytest.skip("bpfast is not imported from this checkout")
    assert cli._checkout_bench() == REPO / "benchmarks" / "bench.py"


def test_an_installed_bpfast_never_runs_a_bench_script_from_the_current_directory(tmp_path):
    """bpfast installed outside a checkout, run where someone planted benchmarks/bench.py:
    the planted file must not run."""
    site = tmp_path / "site-packages"
    shutil.copytree(Path(bpfast.__file__).parent, site / "bpfast",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    work = tmp_path / "work"
    (work / "benchmarks").mkdir(parents=True)
    marker = tmp_path / "ran"
    (work / "benchmarks" / "bench.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (work / "pyproject.toml").write_text("[project]\nname = 'bpfast'\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = run("bench", "--quick", cwd=work, env=env)
    assert not marker.exists()
    assert_usage_error(proc, "source checkout", "python benchmarks/bench.py")


# ---------------------------------------------------------------- the CSV reader itself
from bpfast import _csvdata  # noqa: E402


def test_reader_handles_quotes_line_endings_bom_and_blank_lines(tmp_path):
    text = ('\ufeff"x, first",y,label\r\n'
            '1.5,"2",a\r\n'
            '\r\n'
            '  -3 , 4e2 ,"b\r\nwith a line break"\r\n'
            ',,\r\n'
            '5,6,a\r\n')
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode("utf-8"))
    table = _csvdata.CSVTable(str(path))
    assert table.columns == ["x, first", "y", "label"] and table.delimiter == ","
    X, y = table.read(["x, first", "y"], "label")
    assert X.tolist() == [[1.5, 2.0], [-3.0, 400.0], [5.0, 6.0]]
    names, index = y.classes()
    assert names == ["a", "b\r\nwith a line break"] and index.tolist() == [0, 1, 0]
    # line numbers count physical lines, quoted line breaks included
    path.write_text('a,b\n"1\n",2\n3,oops\n')
    with pytest.raises(_csvdata.CLIError, match="line 4, column 'b': 'oops'"):
        _csvdata.CSVTable(str(path)).read(["a", "b"])
    (tmp_path / "r.csv").write_bytes(b"a,b\r1,2\r3,4\r")         # old Mac line ends
    assert _csvdata.CSVTable(str(tmp_path / "r.csv")).read(["a", "b"])[0].tolist() == [[1, 2], [3, 4]]


def test_mixed_targets_order_numbers_then_text():
    class Table:
        path, columns = "t.csv", ["y"]
    target = _csvdata.TargetColumn(Table, "y", 8)
    target.add(0, ["b", "10", "2.0", "a", "2", "-1", "b", "1e1"], list(range(2, 10)))
    target.finish(8)
    names, index = target.classes()
    assert names == ["-1", "2", "10", "a", "b"]
    assert [names[i] for i in index] == ["b", "10", "2", "a", "2", "-1", "b", "10"]
    assert target.task("auto") == "classify" and not target.numeric
    assert [_csvdata.number_label(v) for v in (1.0, -0.0, 0.25, 1e300, 2.0 ** 60)] == \
        ["1", "0", "0.25", "1e+300", "1.152921504606847e+18"]


def test_the_sniffer_sees_a_short_sample_only(tmp_path, monkeypatch):
    """csv.Sniffer's quote search is quadratic on some inputs (64 KiB of ',"' took 14 s):
    it gets at most a few KiB of whole lines."""
    seen = []
    real = _csvdata.csv.Sniffer.sniff

    def sniff(self, sample, delimiters=None):
        seen.append(len(sample))
        return real(self, sample, delimiters)
    monkeypatch.setattr(_csvdata.csv.Sniffer, "sniff", sniff)
    path = tmp_path / "q.csv"
    path.write_text(',"' * 40000 + "\n")
    with pytest.raises(_csvdata.CLIError):
        _csvdata.CSVTable(str(path)).read(["1"])
    rows = "".join(f"{i};{i * 2};{i % 2}\n" for i in range(5000))
    path.write_text("a;b;c\n" + rows)
    assert _csvdata.CSVTable(str(path)).delimiter == ";"
    assert seen and max(seen) <= _csvdata._SNIFF_CHARS


def test_a_pipe_as_data_is_refused_and_a_closed_output_pipe_ends_quietly(models, csvs, tmp_path):
    proc = subprocess.run(f"cat {csvs / 'cls.csv'} | {sys.executable} -m bpfast predict "
                          f"{models / 'cls.npz'} /dev/stdin", shell=True, capture_output=True,
                          text=True, env=dict(os.environ))
    assert_usage_error(proc, "not a regular file")
    big = tmp_path / "big.csv"          # ~2 MB of predictions: more than a pipe buffers
    big.write_text("a,b,c\n" + "0.5,-1.25,2\n" * 40000)
    proc = subprocess.run(f"{sys.executable} -m bpfast predict {models / 'cls.npz'} {big} "
                          f"--proba | head -2", shell=True, capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.stdout.splitlines()[0] == "label,p(no),p(yes)" and proc.stderr == ""
