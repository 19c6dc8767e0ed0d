"""The command line: bpfast demo / bench / train / predict, run as real subprocesses."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpfast
from bpfast import __main__ as cli
from bpfast._datasets import one_hot, two_spirals, xor

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, timeout=300):
    args = [a for a in args if a is not None]
    """``python -m bpfast ARGS`` -> CompletedProcess (text)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "bpfast", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def assert_usage_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in proc.stderr, proc.stderr


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
def test_help_lists_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("demo", "bench", "train", "predict"):
        assert cmd in proc.stdout
    for cmd in ("demo", "bench", "train", "predict"):
        sub = run(cmd, "--help")
        assert sub.returncode == 0 and "usage: bpfast " + cmd in sub.stdout


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'bpfast = "bpfast.__main__:main"' in text


def test_no_command_and_unknown_option():
    assert run().returncode == 2
    assert_usage_error(run("train", "x.csv", "--bogus", "1"), "unrecognized arguments")


# ---------------------------------------------------------------- demo
def test_demo_quick():
    proc = run("demo", "--quick", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "XOR" in out and "two spirals" in out
    # XOR is learnt by both backends
    accs = [float(a) for a in re.findall(r"accuracy ([\d.]+)%", out)]
    assert len(accs) == 4 and accs[0] == accs[1] == 100.0
    assert accs[2] == accs[3] > 70.0          # spirals after a few epochs, same on both
    # the two backends compute the same losses, and the compiled one is faster
    diffs = [float(d) for d in re.findall(r"max \|loss difference\| over the epochs (\S+)", out)]
    assert len(diffs) == 2 and max(diffs) < 1e-9
    speedups = [float(s) for s in re.findall(r"speedup cython vs reference: ([\d.]+)x", out)]
    assert len(speedups) == 2 and speedups[1] > 5
    for section in out.split("\n\n")[1:]:
        losses = [float(v) for v in re.findall(r"cython +epoch +\d+ +loss ([\d.]+)", section)]
        assert len(losses) == 6 and losses[-1] < losses[0]


def test_demo_epochs_option():
    proc = run("demo", "--epochs", "3", "--no-progress")
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
    meta = json.loads((tmp_path / "m.npz.json").read_text())
    assert meta["classes"] == ["no", "yes"] and meta["features"] == ["a", "b", "c"]
    net = bpfast.load(model)
    assert net.sizes == [3, 16, 8, 2] and net.activation == "tanh"

    pred = run("predict", model, csvs / "cls.csv")
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.split()
    assert len(lines) == 200 and set(lines) <= {"yes", "no"}
    with open(csvs / "cls.csv") as f:
        truth = [row["label"] for row in csv.DictReader(f)]
    assert np.mean([p == t for p, t in zip(lines, truth)]) == pytest.approx(acc / 100, abs=0.006)

    out = tmp_path / "pred.csv"
    pred = run("predict", model, csvs / "cls.csv", "--proba", "--output", out)
    assert pred.returncode == 0 and pred.stdout == ""
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "p(no)", "p(yes)"] and len(rows) == 201
    assert [r[0] for r in rows[1:]] == lines
    assert all(abs(float(r[1]) + float(r[2]) - 1) < 1e-5 for r in rows[1:])


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


def test_predict_without_sidecar_uses_all_columns(tmp_path):
    net = bpfast.Network([2, 3, 1], seed=0)
    bpfast.save(net, tmp_path / "raw.npz")
    (tmp_path / "x.csv").write_text("u,v\n0.5,1.0\n-1,2\n")
    proc = run("predict", tmp_path / "raw.npz", tmp_path / "x.csv")
    assert proc.returncode == 0, proc.stderr
    got = [float(v) for v in proc.stdout.split()]
    np.testing.assert_allclose(got, net.predict(np.array([[0.5, 1.0], [-1, 2]]))[:, 0])


@pytest.mark.parametrize("args, message", [
    (["train", "{d}/missing.csv"], "no such file"),
    (["train", "{d}/cls.csv", "--target", "nope"], "has no column 'nope'"),
    (["train", "{d}/bad_number.csv", "--target", "label"], "line 3, column 'b': 'oops' is not a"),
    (["train", "{d}/no_header.csv"], "header"),
    (["train", "{d}/ragged.csv"], "line 3: 2 fields"),
    (["train", "{d}/empty.csv"], "empty"),
    (["train", "{d}/cls.csv", "--lr", "abc"], "argument --lr"),
    (["train", "{d}/cls.csv", "--lr", "-1"], "argument --lr"),
    (["train", "{d}/cls.csv", "--epochs", "1.5"], "argument --epochs"),
    (["train", "{d}/cls.csv", "--hidden", "4,x"], "argument --hidden"),
    (["train", "{d}/cls.csv", "--activation", "softmax"], "argument --activation"),
    (["train", "{d}/cls.csv", "--task", "regress", "--target", "label"], "is not a finite number (a regression target"),
    (["train", "{d}/cls.csv", "--output", "{d}/no/such/dir/m.npz", "--epochs", "1"], "no directory"),
    (["predict", "{d}/missing.npz", "{d}/cls.csv"], "no such model file"),
    (["predict", "{d}/cls.csv", "{d}/cls.csv"], "bpfast model"),
])
def test_clear_errors(csvs, args, message):
    proc = run(*[a.format(d=csvs) for a in args], "--no-progress" if args[0] == "train" else None)
    assert_usage_error(proc, message)


def test_predict_missing_feature_column(csvs, tmp_path):
    model = tmp_path / "m.npz"
    assert run("train", csvs / "cls.csv", "--target", "label", "--epochs", "1", "--output",
               model, "--no-progress").returncode == 0
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert_usage_error(run("predict", model, tmp_path / "other.csv"), "has no column 'c'")


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
    assert json.loads(proc.stdout) == ["--quick", "--cases", "64-64-10", "8-8-2:float32",
                                       "--output", "r.md", "--plot", "p.png", "--repeats", "2"]


def test_bench_finds_the_checkout_script():
    found = cli._find_bench(None)
    if not (REPO / "benchmarks" / "bench.py").is_file():
        pytest.skip("no benchmarks/bench.py in this checkout")
    assert found == REPO / "benchmarks" / "bench.py"
