"""The binary cross-entropy (sigmoid output) and Poisson (exp output) losses: against the
reference, finite differences, scikit-learn's loss functions, and their refusals."""
import numpy as np
import pytest

import bpfast
from bpfast import functional, reference

CASES = [("binary_cross_entropy", "sigmoid"), ("poisson", "exp")]


def targets(loss, n, m, rng):
    if loss == "binary_cross_entropy":
        return (rng.random((n, m)) < 0.4).astype(float)     # multilabel 0/1, some rows all 0
    return rng.poisson(2.0, size=(n, m)).astype(float)      # counts, zeros included


def outputs_and_targets(loss, out, n, m, rng):
    """Outputs of the loss's output activation for random Z, and targets for them."""
    Z = rng.normal(size=(n, m))
    A = 1 / (1 + np.exp(-Z)) if out == "sigmoid" else np.exp(Z)
    return A, targets(loss, n, m, rng)


@pytest.mark.parametrize("loss, out", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_delta_match_the_reference(loss, out, weighted):
    rng = np.random.default_rng(0)
    A, Y = outputs_and_targets(loss, out, 9, 4, rng)
    w = rng.uniform(0.1, 2.0, 9) if weighted else None
    value, delta = functional.output_delta(A, Y, loss, out, sample_weight=w)
    ref_value, ref_delta = reference.output_delta(A.tolist(), Y.tolist(), loss, out,
                                                  None if w is None else w.tolist())
    assert value == pytest.approx(ref_value, rel=1e-13)
    np.testing.assert_allclose(delta, ref_delta, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("loss, out", CASES)
def test_the_losses_are_scikit_learns(loss, out):
    nn_base = pytest.importorskip("sklearn.neural_network._base")
    A, Y = outputs_and_targets(loss, out, 7, 3, np.random.default_rng(1))
    value, _ = functional.output_delta(A, Y, loss, out)
    if loss == "binary_cross_entropy":
        want = nn_base.binary_log_loss(Y, A)
    else:
        want = nn_base.poisson_loss(Y, A)
    assert value == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("loss, out", CASES)
def test_gradients_match_finite_differences(loss, out, backend):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(6, 3))
    Y = targets(loss, 6, 2, rng)
    net = bpfast.Network([3, 5, 2], "tanh", out, loss, backend=backend, seed=3)
    net.forward(X)
    net.backward(Y)
    grads = np.concatenate([np.concatenate([g.ravel(), b]) for g, b in
                            zip(net.grad_weights, net.grad_biases)])
    params = net.get_parameters()
    h = 1e-6
    for k in range(0, params.size, 3):
        up, down = params.copy(), params.copy()
        up[k] += h
        down[k] -= h
        net.set_parameters(up)
        f_up = net.evaluate(X, Y)
        net.set_parameters(down)
        f_down = net.evaluate(X, Y)
        assert grads[k] == pytest.approx((f_up - f_down) / (2 * h), rel=1e-5, abs=1e-8)
    net.set_parameters(params)


@pytest.mark.parametrize("loss, out", CASES)
def test_training_agrees_between_the_backends(loss, out):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 4))
    Y = targets(loss, 20, 3, rng)
    results = []
    for backend in ("cython", "reference"):
        net = bpfast.Network([4, 6, 3], "relu", out, loss, backend=backend, seed=1)
        h = net.fit(X, Y, epochs=5, batch_size=6, lr=0.05, seed=2, optimizer="adam")
        results.append((h.loss, net.get_parameters()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-9, atol=1e-12)


def test_the_pairs_of_loss_and_output_are_enforced():
    for kw, message in [(dict(output_activation="softmax", loss="binary_cross_entropy"),
                         "needs output_activation='sigmoid'"),
                        (dict(output_activation="identity", loss="poisson"),
                         "needs output_activation='exp'"),
                        (dict(output_activation="exp", loss="mse"), "goes with loss='poisson'"),
                        (dict(activation="exp"), "only allowed for the output layer")]:
        with pytest.raises(ValueError, match=message):
            bpfast.Network([2, 3, 1], **kw)
