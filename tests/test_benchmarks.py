"""The benchmark script runs end to end (quick mode, smallest case) and writes its table."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks", "bench.py")


def test_bench_quick_writes_results_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    png = tmp_path / "results.png"
    proc = subprocess.run(
        [sys.executable, BENCH, "--quick", "--cases", "2-2-1", "--output", str(out), "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    text = out.read_text(encoding="utf-8")

    header = [line for line in text.splitlines() if line.startswith("| implementation |")]
    assert header and "2-2-1 b1 f64" in header[0]
    rows = [line for line in text.splitlines() if line.startswith("| bpfast fit |")]
    assert rows, text
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert float(cells[1].replace(",", "")) > 0          # µs per update, a positive number
    for row in ("| bpfast train_step |", "| NumPy |", "| GEMM lower bound |"):
        assert row in text
    assert re.search(r"\| NumPy / fit \| [\d,.]+x \|", text)
    assert "## Targets" in text and "## Machine" in text
    assert "python benchmarks/bench.py --quick --cases 2-2-1" in text
    assert "**NO**" not in text                          # the correctness check agreed

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.stat().st_size > 0


FANN_AVAILABLE = (os.path.exists("/usr/include/doublefann.h")
                  and (shutil.which("cc") or shutil.which("gcc")) is not None)


@pytest.mark.skipif(not FANN_AVAILABLE, reason="FANN (libfann-dev) or a C compiler not installed")
def test_bench_measures_fann_beside_fit(tmp_path):
    """With libfann-dev, 2-2-1 gets a measured FANN column and the target compares with it."""
    out = tmp_path / "r.md"
    proc = subprocess.run(
        [sys.executable, BENCH, "--quick", "--cases", "2-2-1", "--output", str(out),
         "--plot", str(tmp_path / "r.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    text = out.read_text(encoding="utf-8")

    row = re.search(r"^\| FANN \(C, per-sample fann_train\) \| ([\d,.]+) \|$", text, re.M)
    assert row, text
    fann_us = row.group(1)
    assert float(fann_us.replace(",", "")) > 0
    assert re.search(r"\| FANN / fit \| [\d,.]+x \|", text)
    target = [line for line in text.splitlines() if line.startswith("- 2-2-1 batch 1, `fit`")]
    assert len(target) == 1 and "measured in this run" in target[0], text
    assert f"vs {fann_us} µs" in target[0]
    # FANN took part in the one-step check, and agreed
    assert re.search(r"^\| 2-2-1 b1 f64 \| FANN \(C, per-sample fann_train\) \| .* \| yes \|$", text, re.M)
    assert "**NO**" not in text


def test_step_phases_runs_and_reports_both_dtypes(tmp_path):
    """bench_step_phases.py builds its Cython module (skipped without Cython) and reports."""
    pytest.importorskip("Cython")
    env = dict(os.environ, HOME=str(tmp_path))          # pyximport builds under ~/.pyxbld
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_step_phases.py"),
                           "--reps", "50"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    shares = re.findall(r"(float32|float64): phases 1-7 sum to ([\d.]+) µs, of which the "
                        r"products ([\d.]+) µs", proc.stdout)
    assert [s[0] for s in shares] == ["float32", "float64"], proc.stdout
    for _, step, products in shares:
        assert 0 < float(products) and 0 < float(step)


def test_small_gemm_bench_compares_both_paths_on_every_shape(tmp_path):
    """bench_small_gemm.py times BLAS and the kernel per shape and says which gemm() uses."""
    pytest.importorskip("Cython")
    from bpfast import _kernels
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_small_gemm.py"),
                           "--flops", "1e5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if not _kernels.small_gemm(1):
        assert "lacks" in proc.stdout
        return
    _kernels.small_gemm(-1)
    rows = re.findall(r"^ *(float32|float64) +(\d+) +(\d+) +(\d+) +(A|A\.T) +(\d+) +([\d.]+) +"
                      r"([\d.]+) +([\d.]+)x +(kernel|BLAS)$", proc.stdout, re.M)
    assert len(rows) == 2 * 17, proc.stdout
    for dtype, m, k, n, op_a, _, blas, kernel, _, used in rows:
        small = _kernels.small_gemm_used(int(m), int(n), int(k), dtype, op_a == "A.T")
        assert used == ("kernel" if small else "BLAS")
        assert float(blas) > 0 and float(kernel) > 0


# bench_optimizers.py: one quick run shared by the tests below (no timing is asserted).
NUMBER = r"[\d,]+(?:\.\d+)?"


@pytest.fixture(scope="module")
def optimizers_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_optimizers") / "r.md"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "bench_optimizers.py"), "--quick",
         "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    text = out.read_text(encoding="utf-8")
    assert text.strip() == proc.stdout.strip()          # --output holds what was printed
    return text


def _rows(text, pattern):
    return re.findall(pattern, text, re.M)


def test_bench_optimizers_prints_every_minibatch_and_full_batch_row(optimizers_report):
    text = optimizers_report
    assert "- CPU: " in text and "threads in this run: 1" in text
    assert "| network | batch | dtype | SGD | SGD momentum 0.9 | Adam | AdamW | Adam / SGD |" in text
    table1 = _rows(text, rf"^\| (64-64-10|784-128-10) \| (32|64) \| (float32|float64) \|"
                         rf"(?: {NUMBER} \|){{4}} ({NUMBER})x \| (met|\*\*missed\*\*) \|$")
    assert [r[:3] for r in table1] == [("64-64-10", "32", "float32"), ("64-64-10", "32", "float64"),
                                       ("784-128-10", "64", "float32"), ("784-128-10", "64", "float64")]
    for *_, ratio, verdict in table1:                   # the verdict follows from the ratio
        assert (verdict == "met") == (float(ratio) <= 1.25)
    table2 = _rows(text, rf"^\| (64-64-10|784-128-10) \| (float32|float64) \| {NUMBER} \| "
                         rf"{NUMBER} \| {NUMBER}x \|$")
    assert len(table2) == 4 and len(set(table2)) == 4
    assert "Command: `python benchmarks/bench_optimizers.py --quick --output" in text


def test_bench_optimizers_times_torch_adam_after_checking_it(optimizers_report):
    pytest.importorskip("torch")
    text = optimizers_report
    rows = _rows(text, rf"^\| (float32|float64) \| {NUMBER} \| {NUMBER} \| {NUMBER} \| "
                       rf"({NUMBER})x \| ({NUMBER})x \| (met|\*\*missed\*\*) \|$")
    assert [r[0] for r in rows] == ["float32", "float64"], text
    for _, default, fused, verdict in rows:
        assert (verdict == "met") == (min(float(default), float(fused)) >= 10)
    checks = _rows(text, r"^\| (float32|float64) \| (torch\.optim\.Adam \((?:default|fused=True)\)) "
                         r"\| [\d.e+-]+ \| yes \|$")
    assert len(checks) == 4, text


@pytest.mark.skipif(not FANN_AVAILABLE, reason="FANN (libfann-dev) or a C compiler not installed")
def test_bench_optimizers_times_fann_rprop_beside_fit(optimizers_report):
    text = optimizers_report
    rows = _rows(text, rf"^\| (2-2-1|4-16-3) \| (4|150) \| {NUMBER} \| {NUMBER} \| {NUMBER}x \| "
                       rf"([\d.e+-]+) \| ([\d.e+-]+) \| [\d.e+-]+ \| [\d.e+-]+ \|$")
    assert [r[:2] for r in rows] == [("2-2-1", "4"), ("4-16-3", "150")], text
    for *_, bp_first, fann_first in rows:               # the same start: the same first MSE
        assert float(fann_first) == pytest.approx(float(bp_first), rel=1e-5)
    assert "they do." in text and "FANN skipped" not in text


def test_bench_sklearn_solvers_quick_writes_both_tables(tmp_path):
    """bench_sklearn_solvers.py --quick: the lbfgs table (bpfast's accuracy within a point of
    scikit-learn's at the same max_iter) and the sparse table with its three contenders."""
    pytest.importorskip("sklearn")
    out = tmp_path / "sk.md"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "bench_sklearn_solvers.py"),
         "--quick", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    text = out.read_text(encoding="utf-8")
    accuracy = {name: float(acc) for name, acc in re.findall(
        r"^\| (bpfast|scikit-learn) \| [\d.]+ \| \d+ \| ([\d.]+)% \|$", text, re.M)}
    assert set(accuracy) == {"bpfast", "scikit-learn"}, text
    assert abs(accuracy["bpfast"] - accuracy["scikit-learn"]) <= 1.0
    assert accuracy["bpfast"] > 90.0
    rows = re.findall(r"^\| (bpfast, CSR X|bpfast, same X dense|scikit-learn, CSR X) \| "
                      r"([\d.]+) \| ([\d.]+)% \|$", text, re.M)
    assert [r[0] for r in rows] == ["bpfast, CSR X", "bpfast, same X dense",
                                    "scikit-learn, CSR X"], text
    assert rows[0][2] == rows[1][2]         # CSR and dense X train the same model
    assert re.search(r"scikit-learn / bpfast fit time: \*\*[\d.]+x\*\*", text)
    assert "python benchmarks/bench_sklearn_solvers.py --quick" in text
