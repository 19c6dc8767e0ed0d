"""Ctrl-C during fit: a KeyboardInterrupt within a batch, nothing lost (tools/ctrl_c_latency.py
measures the latency over many tries and sizes; docs/reliability.md has the figures)."""
import sys

import numpy as np
import pytest

from helpers import child_output

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "tools"))
import ctrl_c_latency  # noqa: E402


@pytest.mark.parametrize("sizes, batch, dtype", [([64, 128, 8], 32, "float64"),
                                                 ([2, 2, 1], 1, "float32"),
                                                 ([16, 32, 4], 2000, "float64")])    # full batch
def test_ctrl_c_stops_a_long_fit_quickly_and_keeps_the_partial_history(sizes, batch, dtype):
    result = ctrl_c_latency.one_try(sizes, batch, dtype, delay=0.4)
    assert "latency" in result, result
    # About 20 ms on a quiet machine; a whole second allows for a loaded one.
    assert result["latency"] < 1.0
    assert result["finite"] and result["continued"]      # and the Network trains on
    batches_per_epoch = -(-2000 // batch)
    # Every completed epoch is in the History (also one whose last batch saw the signal),
    # and the interrupted one's updates too.
    assert result["epochs"] * batches_per_epoch <= result["updates"]
    assert result["updates"] < (result["epochs"] + 1) * batches_per_epoch


CHILD_HANDLER = """
import os, signal, threading, time
import numpy as np
import bpfast
calls = []
signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(500, 16)), rng.normal(size=(500, 4))
net, twin = (bpfast.Network([16, 32, 4], "tanh", "identity", seed=0) for _ in range(2))
def poke():
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGUSR1)
threading.Thread(target=poke, daemon=True).start()
h = net.fit(X, Y, epochs=3000, batch_size=50, lr=1e-3, seed=1)
twin.fit(X, Y, epochs=3000, batch_size=50, lr=1e-3, seed=1)
print(len(calls), len(h.loss), bool(np.array_equal(net.get_parameters(), twin.get_parameters())))
"""


def test_a_signal_handler_that_does_not_raise_leaves_fit_running_to_the_same_bits():
    calls, epochs, same = child_output(CHILD_HANDLER, 300).split()
    assert (int(calls), int(epochs), same) == (1, 3000, "True")
