"""Network.summary(): the layer table and totals against known numbers and the parameters."""
import numpy as np
import pytest

import bpfast
from bpfast import _summary


def _row(text, name):
    return next(line.split() for line in text.splitlines() if line.startswith(name + " "))


def test_mnist_sized_network_known_numbers():
    net = bpfast.Network([784, 128, 10], activation="relu", output_activation="softmax",
                         loss="cross_entropy")
    text = net.summary()
    lines = text.splitlines()
    assert lines[0] == "Network: 784 -> 128 -> 10"
    # 784*128 + 128 = 100,480 and 128*10 + 10 = 1,290: 101,770 in all (8 bytes each).
    assert _row(text, "dense_0") == ["dense_0", "(None,", "784)", "->", "(None,", "128)", "relu",
                                     "100,480", "100,352", "+", "128"]
    assert _row(text, "dense_1") == ["dense_1", "(None,", "128)", "->", "(None,", "10)", "softmax",
                                     "1,290", "1,280", "+", "10"]
    assert "Total params: 101,770 (814,160 bytes = 795.08 KiB as float64)" in lines
    assert "dtype: float64   backend: cython   loss: cross_entropy" in lines
    assert lines[-1] == "Optimizer state: none"


def test_float32_bytes_and_reference_backend():
    net = bpfast.Network([784, 128, 10], dtype="float32", backend="reference")
    text = net.summary()
    assert "Total params: 101,770 (407,080 bytes = 397.54 KiB as float32)" in text
    assert "dtype: float32   backend: reference   loss: mse" in text
    tiny = bpfast.Network([2, 1], dtype="float32").summary()
    assert "Total params: 3 (12 bytes as float32)" in tiny


@pytest.mark.parametrize("sizes", [[1, 1], [2, 2, 1], [5, 17, 3, 9, 2], [300, 1000, 1000, 10]])
def test_counts_agree_with_the_parameters(sizes):
    net = bpfast.Network(sizes, activation="tanh")
    text = net.summary()
    total = 0
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        row = _row(text, f"dense_{i}")
        assert row[2] == f"{W.shape[0]})" and row[5] == f"{W.shape[1]})"
        assert row[6] == ("sigmoid" if i == len(sizes) - 2 else "tanh")
        assert row[7:] == [f"{W.size + b.size:,}", f"{W.size:,}", "+", f"{b.size:,}"]
        total += W.size + b.size
    assert total == net.get_parameters().size
    assert f"Total params: {total:,} ({total * 8:,} bytes" in text
    assert sum(line.startswith("dense_") for line in text.splitlines()) == len(sizes) - 1


def test_table_columns_line_up():
    lines = bpfast.Network([784, 1024, 1024, 10]).summary().splitlines()
    header, rule, rows = lines[1], lines[2], lines[3:6]
    assert set(rule) == {"="} and lines[6] == rule
    assert all(len(row) == len(rule) for row in rows)       # right-aligned numbers end the row
    assert header.index("Activation") == rows[0].index("sigmoid")


def test_momentum_velocities_reported_when_nonzero():
    X = np.random.default_rng(0).normal(size=(16, 3))
    Y = X[:, :1] ** 2
    net = bpfast.Network([3, 4, 1], output_activation="identity")
    assert net.summary().endswith("Optimizer state: none")
    net.fit(X, Y, epochs=2, batch_size=4, lr=0.05, momentum=0.9)
    assert net.summary().endswith("Optimizer state: sgd, 8 steps; "
                                  "momentum velocities: 21 values")
    net.fit(X, Y, epochs=1, batch_size=4, lr=0.05)           # plain SGD resets them to 0
    assert net.summary().endswith("Optimizer state: none")


@pytest.mark.parametrize("optimizer, halves", [
    ("adam", "first moments: 13 values; second moments: 13 values"),
    ("rprop", "step sizes: 13 values; previous gradients: 13 values")])
def test_every_optimizer_state_is_named_with_its_step_count(optimizer, halves):
    net = bpfast.Network([2, 3, 1])
    net.fit(np.eye(2), np.ones((2, 1)), epochs=3, batch_size=2, optimizer=optimizer)
    assert net.summary().endswith(f"Optimizer state: {optimizer}, 3 steps; {halves}")


def test_summary_from_a_fit_callback_and_repr_unchanged():
    net = bpfast.Network([2, 2, 1], activation="tanh", loss="sse", seed=3)
    seen = []
    net.fit(np.eye(2), np.ones((2, 1)), epochs=1, callback=lambda e, h: seen.append(net.summary()))
    assert seen and seen[0].startswith("Network: 2 -> 2 -> 1")
    assert repr(net) == ("Network(sizes=[2, 2, 1], activation='tanh', output_activation='sigmoid', "
                         f"loss='sse', dtype='float64', backend='cython', "
                         f"n_threads=None (now {bpfast.default_threads()}))")
    assert str(net) == repr(net)
