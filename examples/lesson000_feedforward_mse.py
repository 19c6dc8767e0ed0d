"""Lesson 000: the feed-forward pass of a small sigmoid network and its MSE.

The tutorial feeds the inputs through a hidden layer and an output layer, each a
weighted sum followed by a sigmoid, and then measures the mean squared error
between the outputs and the targets. Its figure's numbers are not in the text,
so this example uses the widely published 2-2-2 network of Matt Mazur's "A Step
by Step Backpropagation Example" (inputs 0.05, 0.10; targets 0.01, 0.99), whose
intermediate values can be checked by hand. (Mazur's total error is half the
*sum* of squares over the two outputs, which for two outputs equals the *mean*
computed here: 0.298371109; his dE/dw5 = 0.082167041 equals dMSE/dw5 likewise.)

Each layer is one call of ``bpfast.dense_forward`` (the compiled kernel,
``A = sigmoid(X @ W + b)`` with W of shape (n_in, n_out)); the MSE and the output
error ``delta = dMSE/dZ`` come from ``bpfast.functional.output_delta``. Every
number is recomputed with ``bpfast.reference`` (pure Python) and compared.

Run:  python examples/lesson000_feedforward_mse.py
"""
import numpy as np

import bpfast
from bpfast import reference
from bpfast.functional import output_delta, weight_gradients

# One sample, batch-first: X has shape (1, 2).
X = np.array([[0.05, 0.10]])
Y = np.array([[0.01, 0.99]])
# W[i, j] is the weight from input i to unit j.
W1 = np.array([[0.15, 0.25],     # i1 -> h1 (w1), i1 -> h2 (w3)
               [0.20, 0.30]])    # i2 -> h1 (w2), i2 -> h2 (w4)
b1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.50],     # h1 -> o1 (w5), h1 -> o2 (w7)
               [0.45, 0.55]])    # h2 -> o1 (w6), h2 -> o2 (w8)
b2 = np.array([0.60, 0.60])


def main() -> None:
    # ---- forward, compiled
    H = bpfast.dense_forward(X, W1, b1, "sigmoid")           # (1, 2)
    O = bpfast.dense_forward(H, W2, b2, "sigmoid")           # (1, 2)
    mse, delta = output_delta(O, Y, "mse", "sigmoid")         # mean over outputs of (O - Y)^2
    dW2, db2 = weight_gradients(H, delta)                     # dMSE/dW2 = H.T @ delta

    print("net_h   =", " ".join(f"{v:.10f}" for v in (X @ W1 + b1)[0]))
    print("out_h   =", " ".join(f"{v:.10f}" for v in H[0]))
    print("out_o   =", " ".join(f"{v:.10f}" for v in O[0]))
    print(f"MSE     = {mse:.10f}")
    print("delta_o =", " ".join(f"{v:.10f}" for v in delta[0]))
    print(f"dMSE/dw5 = {dW2[0, 0]:.10f}")
    print("published (Mazur): out_o = 0.75136507 0.772928465, E_total = 0.298371109, "
          "dE/dw5 = 0.082167041")

    # ---- the same with the pure-Python reference kernels
    rH = reference.dense_forward(X.tolist(), W1.tolist(), b1.tolist(), "sigmoid")
    rO = reference.dense_forward(rH, W2.tolist(), b2.tolist(), "sigmoid")
    rmse, rdelta = reference.output_delta(rO, Y.tolist(), "mse", "sigmoid")
    diff = max(np.abs(H - rH).max(), np.abs(O - rO).max(), abs(mse - rmse),
               np.abs(delta - rdelta).max())
    print(f"max |compiled - reference| = {diff:.3e}")
    assert diff < 1e-12

    # ---- and by hand, with the definition of the MSE
    by_hand = float(np.mean((O - Y) ** 2))
    print(f"MSE by hand = mean((out_o - target)^2) = {by_hand:.10f}")
    assert abs(by_hand - mse) < 1e-12


if __name__ == "__main__":
    main()
