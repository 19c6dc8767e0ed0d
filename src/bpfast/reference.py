"""The reference implementation: bpfast's kernels in pure Python.

Lists of lists of floats, plain loops, no NumPy. Every function here has a
compiled twin of the same name, argument order and meaning in ``_kernels.pyx``,
so a test can call both and compare. This module is the ground truth of the
tests and the slow side of the benchmarks.

Conventions (row-major, batch first; docs/design.md):
    X, A: (batch, n_in)    W: (n_in, n_out)    b: (n_out,)
    Z = X @ W + b,  A = f(Z),  E_prev = delta @ W.T,  dW = A_prev.T @ delta
Derivatives of activations are written in terms of the layer's output A.
"""
import math


def _sigmoid(z):
    # Both branches only ever exponentiate a non-positive number: no overflow.
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# name: (f(z), f'(z) written with a = f(z))
_ACTIVATIONS = {
    "identity": (lambda z: z, lambda a: 1.0),
    "sigmoid": (_sigmoid, lambda a: a * (1.0 - a)),
    "tanh": (math.tanh, lambda a: 1.0 - a * a),
    "relu": (lambda z: z if z > 0.0 else 0.0, lambda a: 1.0 if a > 0.0 else 0.0),
}


def _softmax_row(z):
    # Shifting by the max leaves softmax unchanged and keeps exp() <= 1.
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def matmul(A, B):
    """C = A @ B for lists of lists."""
    n_inner, n_cols = len(B), len(B[0])
    return [[sum(row[k] * B[k][j] for k in range(n_inner)) for j in range(n_cols)] for row in A]


def transpose(A):
    """A.T for a list of lists."""
    return [list(col) for col in zip(*A)]


def dense_forward(X, W, b, activation):
    """A = f(X @ W + b): the forward pass of one dense layer."""
    Z = matmul(X, W)
    Z = [[z + bj for z, bj in zip(row, b)] for row in Z]
    if activation == "softmax":
        return [_softmax_row(row) for row in Z]
    f = _ACTIVATIONS[activation][0]
    return [[f(z) for z in row] for row in Z]


def backprop_error(delta, W):
    """E_prev = delta @ W.T: each output's error flows back along its weights (lesson 003)."""
    return matmul(delta, transpose(W))


def activation_backward(E, A, activation):
    """delta = E * f'(Z), in place on E, with f' written in terms of A = f(Z)."""
    df = _ACTIVATIONS[activation][1]
    for e_row, a_row in zip(E, A):
        for j, a in enumerate(a_row):
            e_row[j] *= df(a)


def output_delta(A, Y, loss, activation):
    """Return (loss, delta) where delta = dLoss/dZ of the output layer.

    mse: mean((A - Y)^2); sse: sum((A - Y)^2); cross_entropy: -mean over the
    batch of sum(Y * log A), softmax output only, where dLoss/dZ fuses to
    (A * sum(Y) - Y) / batch, i.e. (A - Y) / batch for rows of Y summing to 1.
    """
    n, m = len(A), len(A[0])
    if loss == "cross_entropy":
        value = 0.0
        delta = []
        for a_row, y_row in zip(A, Y):
            # y * log(a) is 0 where y is 0, even if a underflowed to 0.
            value -= sum(y * math.log(max(a, 5e-324)) for a, y in zip(a_row, y_row) if y != 0.0)
            y_sum = sum(y_row)
            delta.append([(a * y_sum - y) / n for a, y in zip(a_row, y_row)])
        return value / n, delta
    scale = 1.0 / (n * m) if loss == "mse" else 1.0
    # (a - y) * (a - y), not ** 2: a huge difference gives inf, as in C, not OverflowError.
    value = scale * sum((a - y) * (a - y) for a_row, y_row in zip(A, Y) for a, y in zip(a_row, y_row))
    # dLoss/dA, then through the activation to dLoss/dZ.
    G = [[2.0 * scale * (a - y) for a, y in zip(a_row, y_row)] for a_row, y_row in zip(A, Y)]
    if activation == "softmax":
        # Softmax couples a row: dZ_i = A_i * (G_i - sum_j G_j A_j).
        for g_row, a_row in zip(G, A):
            s = sum(g * a for g, a in zip(g_row, a_row))
            g_row[:] = [a * (g - s) for g, a in zip(g_row, a_row)]
    else:
        activation_backward(G, A, activation)
    return value, G


def weight_gradients(A_prev, delta):
    """Return (dW, db) = (A_prev.T @ delta, column sums of delta)."""
    dW = matmul(transpose(A_prev), delta)
    db = [sum(col) for col in zip(*delta)]
    return dW, db


def sgd_update(W, grad, lr, velocity=None, momentum=0.0, weight_decay=0.0, nesterov=False):
    """The SGD update from a stored gradient, in place, with g = grad + weight_decay * W:
    W -= lr * g; with velocity (changed in place too) the momentum update
    v = momentum * v - lr * g; W += v (Nesterov: W += momentum * v - lr * g).

    W, grad (and velocity) are all flat lists or all lists of rows.
    """
    for i, g in enumerate(grad):
        if isinstance(g, list):
            sgd_update(W[i], g, lr, None if velocity is None else velocity[i], momentum,
                       weight_decay, nesterov)
            continue
        if weight_decay:
            g += weight_decay * W[i]
        if velocity is None:
            W[i] -= lr * g
        else:
            velocity[i] = momentum * velocity[i] - lr * g
            W[i] += momentum * velocity[i] - lr * g if nesterov else velocity[i]


def sgd_fused_update(W, b, A_prev, delta, lr):
    """W -= lr * A_prev.T @ delta and b -= lr * sum(delta): SGD with no gradient buffer."""
    dW, db = weight_gradients(A_prev, delta)
    sgd_update(W, dW, lr)
    sgd_update(b, db, lr)
