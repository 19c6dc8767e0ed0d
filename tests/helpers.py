"""Small pieces several test modules (and tests/mpi_worker.py) share."""
import subprocess
import sys

import numpy as np


def random_problem(rng, sizes, loss, n):
    """n random rows for a network of layer sizes `sizes`: X standard normal; Y one-hot
    rows of random classes for the cross-entropy, else uniform in [0, 1)."""
    X = rng.normal(size=(n, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    else:
        Y = rng.uniform(size=(n, sizes[-1]))
    return X, Y


def child_output(code, timeout):
    """Run ``python -c code`` in a fresh interpreter: its stdout, once it has exited 0 (a
    failure shows its stderr)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_together(threads, timeout):
    """Start every thread, then wait up to `timeout` seconds for each: whether all ended."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return not any(t.is_alive() for t in threads)
