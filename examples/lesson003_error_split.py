"""Lesson 003: splitting the output errors back onto the hidden nodes.

The tutorial's example: output node 1 has error e1 = 0.8 and is connected to the
two hidden nodes by weights 2.0 and 3.0; output node 2 has error e2 = 0.5 and
weights 1.0 and 4.0. Splitting each error in proportion to the weights,

    e1 -> 0.8 * 2/(2+3) = 0.32 and 0.8 * 3/(2+3) = 0.48
    e2 -> 0.5 * 1/(1+4) = 0.10 and 0.5 * 4/(1+4) = 0.40

so the hidden errors are 0.32 + 0.10 = 0.42 and 0.48 + 0.40 = 0.88.

Dropping the normalising denominators (the tutorial notes this only rescales
what comes back) leaves a matrix product with the transposed weights,
``E_hidden = e @ W.T`` -- ``bpfast.backprop_error`` -- which gives
0.8*2 + 0.5*1 = 2.1 and 0.8*3 + 0.5*4 = 4.4. With each output's weights
normalised to sum 1 first, the same product gives back 0.42 and 0.88.

W follows bpfast's (n_in, n_out) layout: W[i, j] is the weight from hidden node i
to output node j, so output 1's weights are the first column (2.0, 3.0).

Run:  python examples/lesson003_error_split.py
"""
import numpy as np

import bpfast
from bpfast import reference

W = np.array([[2.0, 1.0],
              [3.0, 4.0]])
e = np.array([[0.8, 0.5]])          # one row: the errors of output 1 and output 2


def main() -> None:
    # 1. the tutorial's way, loop by loop: split each output's error by its weights
    n_hidden, n_out = W.shape
    split = np.zeros((n_hidden, n_out))
    for j in range(n_out):
        for i in range(n_hidden):
            split[i, j] = e[0, j] * W[i, j] / W[:, j].sum()
    for j in range(n_out):
        parts = " and ".join(f"{split[i, j]:.2f}" for i in range(n_hidden))
        print(f"error {e[0, j]:.1f} of output {j + 1} splits by weights "
              f"{', '.join(f'{w:.1f}' for w in W[:, j])} into {parts}")
    hidden = split.sum(axis=1)
    print("split in proportion to the weights:", " ".join(f"{v:.2f}" for v in hidden))

    # 2. the transposed-matrix product, compiled and pure Python
    E = bpfast.backprop_error(e, W)
    E_ref = reference.backprop_error(e.tolist(), W.tolist())
    print("backprop_error(e, W) = e @ W.T:", " ".join(f"{v:.2f}" for v in E[0]))
    print("reference.backprop_error:      ", " ".join(f"{v:.2f}" for v in E_ref[0]))

    # 3. normalise each output's weights (each column) to sum 1: the product is the split
    W_norm = W / W.sum(axis=0, keepdims=True)
    E_norm = bpfast.backprop_error(e, W_norm)
    print("normalised W =", W_norm.tolist())
    print("backprop_error(e, W normalised):", " ".join(f"{v:.2f}" for v in E_norm[0]))

    assert np.allclose(hidden, [0.42, 0.88]) and np.allclose(E_norm[0], hidden)
    assert np.allclose(E[0], [2.1, 4.4]) and np.allclose(E_ref[0], [2.1, 4.4])


if __name__ == "__main__":
    main()
