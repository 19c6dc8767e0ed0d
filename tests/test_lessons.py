"""The worked numbers of the tutorials bpfast grew from (lessons 000-004, each also an
example in examples/), through bpfast's public API."""
import math

import numpy as np
import pytest

import bpfast
from bpfast import functional, reference


# Lesson 003: output errors 0.8 and 0.5; output 1 is fed by weights 2.0 and 3.0 and
# output 2 by 1.0 and 4.0. W is (n_in, n_out): column j holds output j's weights.
W_003 = np.array([[2.0, 1.0],
                  [3.0, 4.0]])
E_OUT_003 = np.array([[0.8, 0.5]])


@pytest.mark.parametrize("backprop_error", [bpfast.backprop_error,
                                            lambda e, w: np.array(reference.backprop_error(e.tolist(), w.tolist()))])
def test_lesson003_error_through_the_transposed_matrix(backprop_error):
    # e_hidden = W @ e_out in the lesson's column convention, delta @ W.T in ours.
    np.testing.assert_allclose(backprop_error(E_OUT_003, W_003), [[2.1, 4.4]], rtol=1e-15)


def test_lesson003_error_split_in_proportion_to_the_weights():
    # Normalising each output's weights to sum 1 splits 0.8 into 0.32 + 0.48 and
    # 0.5 into 0.1 + 0.4; the hidden nodes recombine them into 0.42 and 0.88.
    W_split = W_003 / W_003.sum(axis=0, keepdims=True)
    np.testing.assert_allclose(W_split * E_OUT_003, [[0.32, 0.1], [0.48, 0.4]], rtol=1e-15)
    np.testing.assert_allclose(bpfast.backprop_error(E_OUT_003, W_split), [[0.42, 0.88]],
                               rtol=1e-15)


def test_lesson004_epochs_batches_and_updates(backend):
    # 100 samples in batches of 50 for 100 epochs: (100 / 50) * 100 = 200 updates.
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(100, 3)), rng.uniform(size=(100, 1))
    net = bpfast.Network([3, 4, 1], backend=backend, seed=0)
    epochs = 100 if backend == "cython" else 3
    history = net.fit(X, Y, epochs=epochs, batch_size=50, lr=0.1)
    assert history.n_updates == 2 * epochs
    assert len(history.loss) == epochs


@pytest.mark.parametrize("n,batch,updates", [(100, 50, 2), (101, 50, 3), (7, 10, 1), (10, 1, 10)])
def test_lesson004_last_partial_batch_is_trained(n, batch, updates):
    rng = np.random.default_rng(1)
    net = bpfast.Network([2, 1], seed=0)
    history = net.fit(rng.normal(size=(n, 2)), rng.uniform(size=(n, 1)), epochs=3,
                      batch_size=batch, lr=0.1)
    assert history.n_updates == 3 * updates == 3 * math.ceil(n / batch)


def test_lesson001_sigmoid_neuron_local_and_upstream_gradients():
    # The computational graph of f = sigmoid(w0*x0 + w1*x1 + w2) at w = (2, -3, -3),
    # x = (-1, -2): forward 0.73; the sigmoid's local gradient (1 - f) f = 0.1966
    # times the upstream gradient 1 gives dw = x * 0.1966, dw2 = 0.1966 and, sent
    # back through the weights, dx = w * 0.1966 = (0.39, -0.59).
    net = bpfast.Network([2, 1], activation="identity", output_activation="sigmoid", loss="sse")
    net.weights[0] = [[2.0], [-3.0]]
    net.biases[0] = [-3.0]
    x = np.array([[-1.0, -2.0]])
    f = net.forward(x)[0, 0]
    assert f == pytest.approx(0.7310585786)
    local = (1 - f) * f
    assert local == pytest.approx(0.19661193)
    # sse's dLoss/dA = 2 (A - Y): a target of f - 0.5 makes the upstream gradient 1.
    net.backward([[f - 0.5]])
    np.testing.assert_allclose(net.grad_weights[0].ravel(), [-local, -2 * local], rtol=1e-12)
    np.testing.assert_allclose(net.grad_biases[0], [local], rtol=1e-12)
    dx = bpfast.backprop_error([[local]], net.weights[0])
    np.testing.assert_allclose(dx, [[0.39322387, -0.58983580]], rtol=1e-7)


def test_lesson000_002_feed_forward_and_losses():
    # A 2-2-1 sigmoid network by hand: h = sigmoid(x W1 + b1), y = sigmoid(h W2 + b2).
    W1, b1 = np.array([[0.15, 0.25], [0.20, 0.30]]), np.array([0.35, 0.35])
    W2, b2 = np.array([[0.40], [0.45]]), np.array([0.60])
    X, Y = np.array([[0.05, 0.10], [1.0, 0.0]]), np.array([[0.01], [0.99]])
    sig = lambda z: 1 / (1 + math.exp(-z))
    want = []
    for x in X:
        h = [sig(x[0] * W1[0, j] + x[1] * W1[1, j] + b1[j]) for j in range(2)]
        want.append(sig(h[0] * W2[0, 0] + h[1] * W2[1, 0] + b2[0]))
    H = bpfast.dense_forward(X, W1, b1, "sigmoid")
    out = bpfast.dense_forward(H, W2, b2, "sigmoid")
    np.testing.assert_allclose(out.ravel(), want, rtol=1e-15)
    mse, _ = functional.output_delta(out, Y, "mse", "sigmoid")
    sse, _ = functional.output_delta(out, Y, "sse", "sigmoid")
    assert mse == pytest.approx(((np.array(want) - Y.ravel()) ** 2).mean(), rel=1e-14)
    assert sse == pytest.approx(((np.array(want) - Y.ravel()) ** 2).sum(), rel=1e-14)
    # The same through a Network with these weights.
    net = bpfast.Network([2, 2, 1], loss="sse")
    net.weights[0], net.biases[0], net.weights[1], net.biases[1] = W1, b1, W2, b2
    np.testing.assert_allclose(net.forward(X).ravel(), want, rtol=1e-15)
    assert net.backward(Y) == pytest.approx(sse, rel=1e-15)


def test_lesson002_three_layer_regression_with_linear_output_learns():
    # y = h2 W3 + b3, h2 = sigmoid(h1 W2 + b2), h1 = sigmoid(x W1 + b1), L = sum of squares.
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(64, 2))
    Y = (X[:, :1] * X[:, 1:]) + 0.5 * X[:, :1]
    net = bpfast.Network([2, 8, 8, 1], activation="sigmoid", output_activation="identity",
                         loss="sse", seed=0)
    history = net.fit(X, Y, epochs=300, batch_size=8, lr=0.02)
    assert history.loss[-1] < 0.1 * history.loss[0]
    assert net.evaluate(X, Y) == pytest.approx(np.sum((net.predict(X) - Y) ** 2), rel=1e-12)
