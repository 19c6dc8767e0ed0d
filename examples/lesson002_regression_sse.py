"""Lesson 002: a 3-layer regression network trained on the sum of squared errors.

The tutorial's network and loss, in its own notation (row vectors, batch first):

    h1 = sigmoid(x W1 + b1)
    h2 = sigmoid(h1 W2 + b2)
    y^ = h2 W3 + b3                      (identity output)
    L  = sum_i ||y_i - y^_i||^2          (loss="sse")

and the chain rule that makes the gradients cheap:

    dL/dW3 = dL/dy^ . dy^/dW3
    dL/dW2 = dL/dy^ . dy^/dh2 . dh2/dW2
    dL/dW1 = dL/dy^ . dy^/dh2 . dh2/dh1 . dh1/dW1

This example (1) writes those products out in NumPy for one batch and checks
them against ``Network.backward``'s gradients, (2) trains the network with
``Network.fit`` on y = sin(x) and prints the loss every few epochs, and (3)
checks that ``predict`` is exactly the three formulas above.

Run:  python examples/lesson002_regression_sse.py [--epochs N]
"""
import argparse

import numpy as np

import bpfast


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def chain_rule_gradients(net: bpfast.Network, X: np.ndarray, Y: np.ndarray):
    """dL/dW1..3 and dL/db1..3 of L = sum (Y - y^)^2, by the lesson's chain rule."""
    (W1, W2, W3), (b1, b2, b3) = net.weights, net.biases
    h1 = sigmoid(X @ W1 + b1)
    h2 = sigmoid(h1 @ W2 + b2)
    y_hat = h2 @ W3 + b3
    dL_dy = 2.0 * (y_hat - Y)                 # dL/dy^
    dL_dz3 = dL_dy                            # identity output: dy^/dz3 = 1
    dL_dh2 = dL_dz3 @ W3.T                    # dy^/dh2 = W3
    dL_dz2 = dL_dh2 * h2 * (1 - h2)           # dh2/dz2 = sigmoid'(z2) = h2 (1 - h2)
    dL_dh1 = dL_dz2 @ W2.T                    # dz2/dh1 = W2
    dL_dz1 = dL_dh1 * h1 * (1 - h1)
    grads_W = [X.T @ dL_dz1, h1.T @ dL_dz2, h2.T @ dL_dz3]   # dz/dW = the layer's input
    grads_b = [dL_dz1.sum(0), dL_dz2.sum(0), dL_dz3.sum(0)]
    return float(((Y - y_hat) ** 2).sum()), grads_W, grads_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X = np.sort(rng.uniform(-3, 3, size=(200, 1)), axis=0)
    Y = np.sin(X) + rng.normal(0, 0.05, size=X.shape)
    net = bpfast.Network([1, 16, 16, 1], activation="sigmoid", output_activation="identity",
                         loss="sse", seed=0)

    # (1) the chain rule by hand versus Network.backward, on one batch of 20
    loss_hand, gW, gb = chain_rule_gradients(net, X[:20], Y[:20])
    net.forward(X[:20])
    loss_net = net.backward(Y[:20])
    diff = max(max(np.abs(a - b).max() for a, b in zip(gW, net.grad_weights)),
               max(np.abs(a - b).max() for a, b in zip(gb, net.grad_biases)))
    print(f"one batch: L = {loss_net:.6f} (by hand {loss_hand:.6f}); "
          f"max |chain rule - backward| = {diff:.3e}")
    assert diff < 1e-10 and abs(loss_hand - loss_net) < 1e-10

    # (2) training; with 'sse' the gradient is a sum over the batch, so lr is per sample
    every = max(1, args.epochs // 6)

    def report(epoch, history):
        if (epoch + 1) % every == 0 or epoch == 0:
            print(f"epoch {epoch + 1:>4}: loss {history.loss[-1]:.6f}")

    hist = net.fit(X, Y, epochs=args.epochs, batch_size=20, lr=0.01, momentum=0.9, seed=0,
                   callback=report)
    print(f"trained {hist.epochs} epochs, {hist.n_updates} updates")

    # (3) predict is the lesson's three formulas
    (W1, W2, W3), (b1, b2, b3) = net.weights, net.biases
    by_formula = sigmoid(sigmoid(X @ W1 + b1) @ W2 + b2) @ W3 + b3
    pred = net.predict(X)
    print(f"max |predict - formulas| = {np.abs(pred - by_formula).max():.3e}")
    mse = float(np.mean((pred - np.sin(X)) ** 2))
    print(f"SSE on the training set {float(((pred - Y) ** 2).sum()):.6f}; "
          f"MSE against sin(x) {mse:.6f}")


if __name__ == "__main__":
    main()
