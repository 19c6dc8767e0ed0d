"""The benchmark script runs end to end (quick mode, smallest case) and writes its table."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(script, *args, timeout=600, env=None):
    """Run benchmarks/<script> with args from the repository root; check that it exited 0
    (else fail showing its output) and return its CompletedProcess."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_bench_quick_writes_results_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    png = tmp_path / "results.png"
    run_bench("bench.py", "--quick", "--cases", "2-2-1", "--output", out, "--plot", png, timeout=300)
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
    run_bench("bench.py", "--quick", "--cases", "2-2-1", "--output", out,
              "--plot", tmp_path / "r.png", timeout=300)
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
    proc = run_bench("bench_step_phases.py", "--reps", "50", env=env)
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
    proc = run_bench("bench_small_gemm.py", "--flops", "1e5", env=env)
    if not _kernels.small_gemm(1):
        assert "lacks" in proc.stdout
        return
    _kernels.small_gemm(-1)
    rows = re.findall(r"^ *(float32|float64) +(\d+) +(\d+) +(\d+) +(A|A\.T) +(\d+) +([\d.]+) +"
                      r"([\d.]+) +([\d.]+)x +(kernel|BLAS)$", proc.stdout, re.M)
    assert len(rows) == 2 * 25, proc.stdout          # bench_small_gemm.SHAPES, both dtypes
    for dtype, m, k, n, op_a, _, blas, kernel, _, used in rows:
        small = _kernels.small_gemm_used(int(m), int(n), int(k), dtype, op_a == "A.T")
        assert used == ("kernel" if small else "BLAS")
        assert float(blas) > 0 and float(kernel) > 0


# bench_optimizers.py: one quick run shared by the tests below (no timing is asserted).
NUMBER = r"[\d,]+(?:\.\d+)?"


@pytest.fixture(scope="module")
def optimizers_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_optimizers") / "r.md"
    proc = run_bench("bench_optimizers.py", "--quick", "--output", out)
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
    run_bench("bench_sklearn_solvers.py", "--quick", "--output", out)
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


def test_bench_predict_quick_checks_then_times_every_row(tmp_path):
    """bench_predict.py --quick on the small network: the outputs agree before timing, each
    row has positive times and a goal verdict that follows from its ort / bpfast ratio."""
    out = tmp_path / "predict.md"
    proc = run_bench("bench_predict.py", "--quick", "--networks", "784-128-10", "--output", out,
                     timeout=300)
    text = out.read_text(encoding="utf-8")
    assert text.strip() == proc.stdout.strip()
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        with_ort = True
    except ImportError:
        with_ort = False
    cell = rf"(—|{NUMBER})"
    ratio_cell, goal = rf"(—|{NUMBER}x)", r"(met|\*\*missed\*\*|—)"
    rows = _rows(text, rf"^\| 784-128-10 \| (float32|float64) \| (1|default) \| (\d+) \| "
                       rf"({NUMBER}) \| ({NUMBER}) \| {cell} \| ({NUMBER}) \| {ratio_cell} \| "
                       rf"{ratio_cell} \| {goal} \| {goal} \|$")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (dtype, threads, batch) for dtype in ("float32", "float64") for threads in ("1", "default")
        for batch in ("1", "32", "256", "1024")], text
    for _, _, _, bp, pred, ort, numpy_us, ratio_bp, ratio_pred, goal_bp, goal_pred in rows:
        assert min(float(x.replace(",", "")) for x in (bp, pred, numpy_us)) > 0
        for us, ratio, verdict in ((bp, ratio_bp, goal_bp), (pred, ratio_pred, goal_pred)):
            if not with_ort:
                assert (ort, ratio, verdict) == ("—", "—", "—")
                continue
            # The ratio is of the unrounded medians: the printed times give it to about 1%.
            printed = float(ratio[:-1])
            assert printed == pytest.approx(float(ort.replace(",", "")) /
                                            float(us.replace(",", "")), rel=0.02, abs=0.01)
            if printed != 1.0:              # 1.00x rounds both 0.996 and 1.004
                assert (verdict == "met") == (printed > 1)
    assert re.search(r"^- float32 784-128-10 batch 1 on one thread under 10 µs: "
                     r"(met|\*\*missed\*\*) \([\d.]+ µs\)$", text, re.M), text
    pairs = _rows(text, r"^\| 784-128-10 \| (float32|float64) \| (1|default) \| (\w+) / (\w+) \| "
                        r"[\d.e+-]+ \| yes \|$")
    assert len(pairs) == (24 if with_ort else 12), text
    assert "**NO**" not in text
    assert "python benchmarks/bench_predict.py --quick --networks 784-128-10" in text


def test_bench_predict_combines_runs_by_the_median_of_their_ratios(tmp_path):
    """--combine reads earlier reports and gives each row its runs' ratios and their
    median; the goal follows the medians, so one run's dip below 1 does not decide it,
    and a row whose median is below 1 does."""
    def report(ratios):
        rows = "".join(f"| 784-128-10 | float32 | 1 | {batch} | 1.0 | 1.0 | 1.0 | 1.0 | "
                       f"{bp:.2f}x | {pred:.2f}x | met | met |\n"
                       for batch, (bp, pred) in ratios.items())
        return "| network | dtype |\n|---|---|\n" + rows
    runs = [{1: (1.10, 1.20), 32: (0.98, 0.97)}, {1: (0.99, 1.20), 32: (1.01, 0.99)},
            {1: (1.05, 1.30), 32: (0.97, 1.02)}]
    paths = []
    for r, ratios in enumerate(runs):
        paths.append(tmp_path / f"run{r}.md")
        paths[-1].write_text(report(ratios), encoding="utf-8")
    text = run_bench("bench_predict.py", "--combine", *paths).stdout
    assert ("| 784-128-10 | float32 | 1 | 1 | 1.10x, 0.99x, 1.05x | 1.05x | "
            "1.20x, 1.20x, 1.30x | 1.20x |") in text
    assert ("| 784-128-10 | float32 | 1 | 32 | 0.98x, 1.01x, 0.97x | 0.98x | "
            "0.97x, 0.99x, 1.02x | 0.99x |") in text
    assert ("- bpfast never slower than onnxruntime: **missed** in 1 of 2 rows (lowest median "
            "0.98x at 784-128-10 float32 1 32)") in text
    assert "- predictor never slower than onnxruntime: **missed** in 1 of 2 rows" in text


# bench_threads.py and bench_jax.py: quick runs; their tables are parsed, no timing asserted.
def _run_script(name, *args, timeout=600):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _num(cell):
    return float(cell.replace(",", "").rstrip("x"))


def test_bench_threads_quick_tables_and_plot(tmp_path):
    """Both parts: three two-network rows; one scaling row per quick case at n_threads 1 and
    2, whose speedup is the ratio of its two times and whose epochs agreed bit for bit."""
    png, out = tmp_path / "threads.png", tmp_path / "threads.md"
    text = _run_script("bench_threads.py", "--quick", "--max-threads", "2", "--plot", str(png),
                       "--output", str(out))
    assert out.read_text(encoding="utf-8").strip() == text.strip()
    two = _rows(text, rf"^\| (2-2-2|64-64-10|784-128-10) \| (1|32|64) \| ({NUMBER}) ms \| "
                      rf"({NUMBER}) ms \| ({NUMBER})x \|$")
    assert [r[0] for r in two] == ["2-2-2", "64-64-10", "784-128-10"], text
    for _, _, seq, par, speedup in two:
        assert _num(speedup) == pytest.approx(_num(seq) / _num(par), rel=0.05, abs=0.01)
    assert ("| network | batch | dtype | 1 thread µs | 2 threads µs | speedup at 2 "
            "| CPUs busy at 2 | same bits |") in text
    rows = _rows(text, rf"^\| (64-64-10|784-128-10) \| (32|64) \| (float32) \| ({NUMBER}) \| "
                       rf"({NUMBER}) \| ({NUMBER})x \| ([\d.]+) \| (yes|\*\*NO\*\*) \|$")
    assert [r[0] for r in rows] == ["64-64-10", "784-128-10"], text
    for *_, one, two_threads, speedup, busy, bits in rows:
        assert bits == "yes"
        assert 0 < float(busy) <= 2.1           # process CPU time / wall time, 2 threads
        assert _num(speedup) == pytest.approx(_num(one) / _num(two_threads), rel=0.05, abs=0.01)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "No plot: matplotlib is not installed." in text and not png.exists()
    else:
        assert png.stat().st_size > 0 and f"Plot: `{png}`" in text


def test_bench_threads_rejects_an_unknown_case():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_threads.py"),
                           "--part", "scaling", "--cases", "3-3-3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown case '3-3-3'" in proc.stderr


def _jax_installed():
    return importlib.util.find_spec("jax") is not None


def _verdict_follows(cell, value, bound):
    """A 'met' / '**missed**' cell agrees with value >= bound (unless too close to call
    from the rounded figures the table prints)."""
    verdict = "met" if "met" in cell and "missed" not in cell else "missed"
    if abs(value - bound) > 0.01 * bound:
        assert verdict == ("met" if value >= bound else "missed"), (cell, value, bound)


@pytest.mark.parametrize("hide_jax", [False, True], ids=["jax-if-installed", "jax-hidden"])
def test_bench_jax_quick_both_settings(tmp_path, hide_jax):
    """One-CPU and default-threads tables, the speedup table with verdicts that follow from
    its numbers, and with JAX both variants timed and agreeing with bpfast; without JAX
    (absent, or hidden by a package that fails to import) the bpfast columns still run."""
    env = dict(os.environ)
    if hide_jax:
        (tmp_path / "jax").mkdir()
        (tmp_path / "jax" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_jax.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    text = proc.stdout
    has_jax = _jax_installed() and not hide_jax
    assert "## One CPU (pinned to CPU" in text and "## Default threads (" in text
    jax_cell = NUMBER if has_jax else "—"
    ratio_cell = rf"{NUMBER}x" if has_jax else "—"
    rows = _rows(text, rf"^\| (64-64-10|784-128-10) \| (32|64) \| float32 \| {jax_cell} \| "
                       rf"{jax_cell} \| {NUMBER} \| {ratio_cell} \|$")
    assert [r[0] for r in rows] == ["64-64-10", "784-128-10"] * 2, text
    speed = _rows(text, rf"^\| (64-64-10|784-128-10) \| (?:32|64) \| float32 \| ({NUMBER}) \| "
                        rf"({NUMBER}) \| ({NUMBER})x \| ([\d.]+) \| ([^|]+) \| (yes|\*\*NO\*\*) \| "
                        rf"([^|]+) \|$")
    assert [r[0] for r in speed] == ["64-64-10", "784-128-10"], text
    for key, one, default, speedup, busy, target, bits, vs_jax in speed:
        assert bits == "yes"                    # n_threads left the bits alone
        assert float(busy) > 0
        ratio = _num(one) / _num(default)
        assert _num(speedup) == pytest.approx(ratio, rel=0.05, abs=0.01)
        if key == "784-128-10":
            assert target.strip().startswith(">= 1.5x: ")
            _verdict_follows(target, ratio, 1.5)
        else:
            assert target.strip() == "—"
        if has_jax:
            m = re.fullmatch(r"(met|\*\*missed\*\*) \(([\d.]+)x\)", vs_jax.strip())
            assert m, vs_jax
            _verdict_follows(m.group(1), float(m.group(2)), 1.0)
        else:
            assert vs_jax.strip() == "—"
    checks = _rows(text, r"^\| (one-cpu|default) \| [^|]+ \| (JAX jit step|JAX epoch scan) \| "
                         r"[\d.e+-]+ \| [\d.e+-]+ \| yes \|$")
    assert len(checks) == (8 if has_jax else 0), text
    assert ("JAX columns skipped: JAX not installed" in text) == (not has_jax)
