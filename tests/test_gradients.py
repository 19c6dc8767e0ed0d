"""Gradients of whole networks against central finite differences (float64), and an
independent NumPy implementation, for every activation and loss, on both backends."""
import numpy as np
import pytest

import bpfast
from helpers import random_problem
from numpy_oracle import loss_and_grads

CASES = [(act, out, loss) for act in ("sigmoid", "tanh", "relu", "identity")
         for out, loss in (("sigmoid", "mse"), ("identity", "sse"), ("tanh", "mse"),
                           ("softmax", "cross_entropy"), ("softmax", "mse"), ("relu", "sse"))]


def problem(out, loss, sizes, n=5, seed=0):
    return random_problem(np.random.default_rng(seed), sizes, loss, n)


@pytest.mark.parametrize("act,out,loss", CASES)
def test_gradients_match_central_differences(backend, act, out, loss):
    sizes = [3, 4, 5, 3]
    net = bpfast.Network(sizes, activation=act, output_activation=out, loss=loss,
                         backend=backend, seed=1)
    for b in net.biases:          # keep relu units away from their kink
        b[...] = 0.1
    X, Y = problem(out, loss, sizes)
    net.forward(X)
    loss_value = net.backward(Y)
    analytic = net._grads.copy()
    params = net._params
    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        old = params[i]
        params[i] = old + h
        up = net.evaluate(X, Y)
        params[i] = old - h
        down = net.evaluate(X, Y)
        params[i] = old
        numeric[i] = (up - down) / (2 * h)
    assert loss_value == pytest.approx(net.evaluate(X, Y), rel=1e-14)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("act,out,loss", CASES)
def test_gradients_match_independent_numpy_implementation(act, out, loss):
    sizes = [4, 6, 3]
    net = bpfast.Network(sizes, activation=act, output_activation=out, loss=loss, seed=2)
    X, Y = problem(out, loss, sizes, n=7, seed=3)
    net.forward(X)
    value = net.backward(Y)
    want_value, dWs, dbs = loss_and_grads([W.copy() for W in net.weights],
                                          [b.copy() for b in net.biases], X, Y, act, out, loss)
    assert value == pytest.approx(want_value, rel=1e-12)
    for got, want in zip(list(net.grad_weights) + list(net.grad_biases), dWs + dbs):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
