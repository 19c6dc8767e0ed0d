"""Every script in examples/ runs, and prints the numbers it promises."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, prelude=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    # The script runs in examples/: a relative PYTHONPATH (PYTHONPATH=src) must still name
    # the bpfast this test process imports, not an installed copy.
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p
                                            for p in env["PYTHONPATH"].split(os.pathsep))
    script = str(EXAMPLES / name)
    if prelude is None:
        cmd = [sys.executable, script, *args]
    else:   # run it after some set-up code, e.g. hiding a module
        code = f"{prelude}\nimport runpy, sys\nsys.argv = {[script, *args]!r}\nrunpy.run_path({script!r}, run_name='__main__')"
        cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def numbers(line):
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", line)]


def line_with(out, prefix):
    for line in out.splitlines():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r} in:\n{out}")


def test_every_example_is_tested():
    tested = {"lesson000_feedforward_mse.py", "lesson001_computational_graph.py",
              "lesson002_regression_sse.py", "lesson003_error_split.py",
              "lesson004_epochs_batches.py", "digits.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_lesson000_feedforward_mse():
    out = run_example("lesson000_feedforward_mse.py")
    # Mazur's published values for this network
    assert numbers(line_with(out, "out_h   ="))[0] == pytest.approx(0.593269992, abs=1e-9)
    o1, o2 = numbers(line_with(out, "out_o   ="))
    assert o1 == pytest.approx(0.75136507, abs=1e-8) and o2 == pytest.approx(0.772928465, abs=1e-9)
    assert numbers(line_with(out, "MSE     ="))[0] == pytest.approx(0.298371109, abs=1e-9)
    assert numbers(line_with(out, "dMSE/dw5 ="))[0] == pytest.approx(0.082167041, abs=1e-9)
    assert numbers(line_with(out, "max |compiled - reference|"))[0] < 1e-12
    assert numbers(line_with(out, "MSE by hand"))[0] == pytest.approx(0.298371109, abs=1e-9)


def test_lesson001_computational_graph():
    out = run_example("lesson001_computational_graph.py")
    assert numbers(line_with(out, "forward: f ="))[0] == pytest.approx(0.73106, abs=1e-5)
    # CS231n's gradients: dw0 = -0.20, dx0 = 0.39, dw1 = -0.39, dx1 = -0.59, db = 0.20
    grads = numbers(line_with(out, "gradients of f:"))
    assert grads == pytest.approx([-0.19661, 0.39322, -0.39322, -0.58984, 0.19661], abs=1e-5)
    hand = numbers(line_with(out, "hand-made dL/d(w0, w1, b)"))
    net = numbers(line_with(out, "Network.backward:"))
    assert net[1:] == pytest.approx(hand, abs=1e-12)
    assert numbers(line_with(out, "max |hand - bpfast|"))[0] < 1e-12


def test_lesson002_regression_sse():
    out = run_example("lesson002_regression_sse.py", "--epochs", "120")
    assert numbers(line_with(out, "one batch:"))[-1] < 1e-10
    losses = [numbers(line)[-1] for line in out.splitlines() if line.startswith("epoch")]
    assert len(losses) >= 3 and losses[-1] < losses[0] / 20
    assert "trained 120 epochs, 1200 updates" in out
    assert numbers(line_with(out, "max |predict - formulas|"))[0] < 1e-12
    assert numbers(line_with(out, "SSE on the training set"))[-1] < 0.05   # MSE against sin(x)


def test_lesson003_error_split():
    out = run_example("lesson003_error_split.py")
    assert "into 0.32 and 0.48" in out and "into 0.10 and 0.40" in out
    assert numbers(line_with(out, "split in proportion")) == [0.42, 0.88]
    assert numbers(line_with(out, "backprop_error(e, W) =")) == [2.1, 4.4]
    assert numbers(line_with(out, "reference.backprop_error")) == [2.1, 4.4]
    assert numbers(line_with(out, "backprop_error(e, W normalised)")) == [0.42, 0.88]


def test_lesson004_epochs_batches():
    out = run_example("lesson004_epochs_batches.py")
    line = line_with(out, "N=100, batch_size=50, epochs=100")
    assert "ceil(100/50) * 100 = 200" in line and "History.n_updates = 200" in line
    assert "History.n_updates = 400" in line_with(out, "N=100, batch_size=30")
    assert "History.n_updates = 300" in line_with(out, "N=100, batch_size=1,")


@pytest.mark.parametrize("solver", ["", "adam"])
def test_digits_quick(solver):
    pytest.importorskip("sklearn")
    out = run_example("digits.py", "--quick")
    tag, prefix = (f" ({solver})", solver + " ") if solver else (" ", "")
    ours = numbers(line_with(out, "bpfast" + tag))
    theirs = numbers(line_with(out, "scikit-learn" + tag))
    assert ours[0] > 90 and theirs[0] > 90                 # test accuracy, %
    assert abs(ours[0] - theirs[0]) < 3
    assert ours[1] > 0 and theirs[1] > 0                   # fit times
    assert f"solver={solver or 'sgd'}" in line_with(out, prefix + "settings:")
    ratio = numbers(line_with(out, prefix + "speed ratio"))[0]
    assert ratio == pytest.approx(theirs[1] / ours[1], rel=0.06)


def test_digits_without_sklearn_skips():
    out = run_example("digits.py", prelude="import sys; sys.modules['sklearn'] = None")
    assert "needs scikit-learn" in out and "skipped" in out
