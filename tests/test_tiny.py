"""Tiny layers (_tiny.h: a layer's forward, or its backward with plain SGD, in one pass of
scalar loops) give the bits of the general path (a kernel call per phase)."""
import numpy as np
import pytest

import bpfast
from bpfast import _kernels

DTYPES = [np.float64, np.float32]


def train(sizes, activation, output_activation, loss, dtype, batch_size, tiny, **fit_args):
    _kernels.tiny_layers(tiny)
    try:
        rng = np.random.default_rng(sum(sizes) * batch_size)
        X = rng.normal(size=(37, sizes[0])).astype(dtype)
        if output_activation == "softmax":
            Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], 37)]
        else:
            Y = rng.uniform(size=(37, sizes[-1])).astype(dtype)
        net = bpfast.Network(sizes, activation, output_activation, loss, dtype=dtype, seed=3)
        history = net.fit(X, Y, epochs=4, batch_size=batch_size, seed=5, **fit_args)
        step_loss = net.train_step(X[:batch_size], Y[:batch_size], lr=0.05)
        return net.get_parameters(), history.loss, step_loss, net.predict(X)
    finally:
        _kernels.tiny_layers(True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, batch_size", [([2, 2, 1], 1), ([2, 2, 1], 4), ([3, 4, 2], 2),
                                               ([1, 1, 1], 1), ([2, 3, 3, 2], 3), ([8, 8], 1)])
@pytest.mark.parametrize("activation, output_activation, loss", [
    ("sigmoid", "sigmoid", "mse"), ("tanh", "identity", "sse"), ("relu", "softmax", "cross_entropy"),
    ("identity", "tanh", "mse"), ("relu", "relu", "mse")])
def test_tiny_layers_train_to_the_bits_of_the_general_path(dtype, sizes, batch_size, activation,
                                                          output_activation, loss):
    """fit (shuffled, last batch partial), train_step and predict: the same bits either way."""
    args = (sizes, activation, output_activation, loss, dtype, batch_size)
    tiny, general = train(*args, True, lr=0.1), train(*args, False, lr=0.1)
    assert np.array_equal(tiny[0], general[0])
    assert tiny[1] == general[1] and tiny[2] == general[2]
    assert np.array_equal(tiny[3], general[3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_layers_with_weight_decay_and_momentum(dtype):
    """Weight decay scales W in the fused update (w_scale != 1); momentum takes the general
    backward path while the forward pass stays tiny: the same bits either way."""
    for fit_args in (dict(lr=0.2, weight_decay=0.1), dict(lr=0.2, momentum=0.9, nesterov=True)):
        args = ([2, 2, 1], "sigmoid", "sigmoid", "mse", dtype, 1)
        tiny, general = train(*args, True, **fit_args), train(*args, False, **fit_args)
        assert np.array_equal(tiny[0], general[0])
        assert tiny[1] == general[1]


def test_tiny_forward_matches_numpy():
    """A 1x2 @ 2x2 sigmoid layer runs on the tiny path (4 multiply-adds)."""
    X = np.array([[0.1, 0.2]])
    W1, b1 = np.array([[0.1, 0.2], [0.3, 0.4]]), np.zeros(2)
    A = bpfast.dense_forward(X, W1, b1, "sigmoid")
    z = X @ W1
    np.testing.assert_allclose(A, 1 / (1 + np.exp(-z)), rtol=1e-15)
