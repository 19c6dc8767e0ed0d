"""bpfast against PyTorch's autograd (float64): forward, loss, gradients, SGD steps.

Skipped where PyTorch is not installed.
"""
import numpy as np
import pytest

import bpfast

torch = pytest.importorskip("torch")

ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
       "identity": lambda z: z, "softmax": lambda z: torch.softmax(z, dim=1)}


def torch_loss(A, Y, loss, n):
    if loss == "mse":
        return torch.nn.functional.mse_loss(A, Y)
    if loss == "sse":
        return ((A - Y) ** 2).sum()
    return -(Y * torch.log(A)).sum() / n


@pytest.mark.parametrize("act,out,loss", [("sigmoid", "sigmoid", "mse"), ("tanh", "identity", "sse"),
                                          ("relu", "softmax", "cross_entropy"),
                                          ("identity", "softmax", "mse")])
def test_matches_torch_autograd_over_several_sgd_steps(act, out, loss):
    sizes = [5, 7, 6, 3]
    net = bpfast.Network(sizes, activation=act, output_activation=out, loss=loss, seed=0)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 5))
    Y = np.eye(3)[rng.integers(0, 3, 8)] if loss == "cross_entropy" else rng.uniform(size=(8, 3))
    params = [torch.tensor(p.copy(), requires_grad=True)
              for W, b in zip(net.weights, net.biases) for p in (W, b)]
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    lr = 0.1
    for _ in range(5):
        A = Xt
        for l in range(len(sizes) - 1):
            A = ACT[out if l == len(sizes) - 2 else act](A @ params[2 * l] + params[2 * l + 1])
        L = torch_loss(A, Yt, loss, X.shape[0])
        for p in params:
            p.grad = None
        L.backward()
        out_np = net.forward(X)
        np.testing.assert_allclose(out_np, A.detach().numpy(), rtol=1e-10, atol=1e-15)
        assert net.backward(Y) == pytest.approx(L.item(), rel=1e-10)
        grads = [g for gW, gb in zip(net.grad_weights, net.grad_biases) for g in (gW, gb)]
        for g, p in zip(grads, params):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-15)
        net.step(lr)
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        for mine, theirs in zip([p for W, b in zip(net.weights, net.biases) for p in (W, b)], params):
            np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-10, atol=1e-15)


def test_fit_with_momentum_matches_torch_sgd():
    sizes = [4, 8, 2]
    net = bpfast.Network(sizes, activation="tanh", output_activation="identity", loss="mse", seed=2)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(12, 4)), rng.normal(size=(12, 2))
    params = [torch.tensor(p.copy(), requires_grad=True)
              for W, b in zip(net.weights, net.biases) for p in (W, b)]
    # torch's SGD momentum uses v = mu v + g; p -= lr v, which equals ours (v' = -lr v).
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    for _ in range(2):
        for start in range(0, 12, 4):
            xb, yb = torch.tensor(X[start:start + 4]), torch.tensor(Y[start:start + 4])
            opt.zero_grad()
            A = torch.tanh(xb @ params[0] + params[1]) @ params[2] + params[3]
            torch.nn.functional.mse_loss(A, yb).backward()
            opt.step()
    net.fit(X, Y, epochs=2, batch_size=4, lr=0.05, momentum=0.9, shuffle=False)
    for mine, theirs in zip([p for W, b in zip(net.weights, net.biases) for p in (W, b)], params):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-10, atol=1e-14)
