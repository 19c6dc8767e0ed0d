"""The benchmark script runs end to end (quick mode, smallest case) and writes its table."""
import os
import re
import subprocess
import sys

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
