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
    if activation == "exp":         # the output of a Poisson regression
        return [[math.exp(z) for z in row] for row in Z]
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


def output_delta(A, Y, loss, activation, sample_weight=None):
    """Return (loss, delta) where delta = dLoss/dZ of the output layer.

    mse: mean((A - Y)^2); sse: sum((A - Y)^2); cross_entropy: -mean over the
    batch of sum(Y * log A), softmax output only, where dLoss/dZ fuses to
    (A * sum(Y) - Y) / batch, i.e. (A - Y) / batch for rows of Y summing to 1.
    With sample_weight, the mean over rows is the weighted mean (the sum divided by the
    sum of the weights; 'sse': the weighted sum), so integer weights equal repeated rows.
    """
    n, m = len(A), len(A[0])
    if loss == "cross_entropy":
        value = 0.0
        delta = []
        for a_row, y_row in zip(A, Y):
            value -= _row_cross_entropy(a_row, y_row)
            y_sum = sum(y_row)
            delta.append([(a * y_sum - y) / n for a, y in zip(a_row, y_row)])
        value /= n
    elif loss in ("binary_cross_entropy", "poisson"):
        # Sigmoid + binary cross-entropy, exp + Poisson deviance: dLoss/dZ = (A - Y) / n.
        value = sum(_ROW_LOSS[loss](a_row, y_row) for a_row, y_row in zip(A, Y)) / n
        delta = [[(a - y) / n for a, y in zip(a_row, y_row)] for a_row, y_row in zip(A, Y)]
    else:
        scale = 1.0 / (n * m) if loss == "mse" else 1.0
        # (a - y) * (a - y), not ** 2: a huge difference gives inf, as in C, not OverflowError.
        value = scale * sum(_row_squares(a_row, y_row) for a_row, y_row in zip(A, Y))
        # dLoss/dA, then through the activation to dLoss/dZ.
        delta = [[2.0 * scale * (a - y) for a, y in zip(a_row, y_row)] for a_row, y_row in zip(A, Y)]
        if activation == "softmax":
            # Softmax couples a row: dZ_i = A_i * (G_i - sum_j G_j A_j).
            for g_row, a_row in zip(delta, A):
                s = sum(g * a for g, a in zip(g_row, a_row))
                g_row[:] = [a * (g - s) for g, a in zip(g_row, a_row)]
        else:
            activation_backward(delta, A, activation)
    if sample_weight is not None:
        value = _weigh_rows(A, Y, loss, list(sample_weight), delta)
    return value, delta


def _row_squares(a_row, y_row):
    return sum((a - y) * (a - y) for a, y in zip(a_row, y_row))


def _row_cross_entropy(a_row, y_row):
    # y * log(a) is 0 where y is 0, even if a underflowed to 0.
    return sum(y * math.log(max(a, 5e-324)) for a, y in zip(a_row, y_row) if y != 0.0)


def _row_binary_cross_entropy(a_row, y_row):
    """-sum(y log a + (1 - y) log(1 - a)) over a row (0 log 0 counts as 0)."""
    return -sum((y * math.log(max(a, 5e-324)) if y != 0.0 else 0.0)
                + ((1.0 - y) * math.log(max(1.0 - a, 5e-324)) if y != 1.0 else 0.0)
                for a, y in zip(a_row, y_row))


def _row_poisson(a_row, y_row):
    """The half Poisson deviance sum(y log(y / a) - y + a) over a row."""
    return sum(a - y + (y * math.log(y / a) if y != 0.0 else 0.0) for a, y in zip(a_row, y_row))


_ROW_LOSS = {"mse": _row_squares, "sse": _row_squares,
             "cross_entropy": lambda a, y: -_row_cross_entropy(a, y),
             "binary_cross_entropy": _row_binary_cross_entropy, "poisson": _row_poisson}


def _weigh_rows(A, Y, loss, w, delta):
    """Row i of the unweighted delta times w_i * n / sum(w) ('sse': w_i); the weighted loss."""
    n, m, total = len(A), len(A[0]), sum(w)
    for i, d_row in enumerate(delta):
        factor = w[i] if loss == "sse" else (w[i] * n / total if total > 0 else 0.0)
        d_row[:] = [d * factor for d in d_row]
    value = sum(wi * _ROW_LOSS[loss](a, y) for wi, a, y in zip(w, A, Y))
    if loss == "sse":
        return value
    if total == 0:
        return 0.0
    return value / (total * m) if loss == "mse" else value / total


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


def _flat(x):
    """The numbers of a flat list or of a list of rows, in order."""
    return [v for row in x for v in row] if x and isinstance(x[0], list) else list(x)


def _store(x, values):
    """Write values back into x (flat, or a list of rows), in place."""
    if x and isinstance(x[0], list):
        k = 0
        for row in x:
            row[:] = values[k:k + len(row)]
            k += len(row)
    else:
        x[:] = values


def adam_update(W, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                decoupled=False, folded=False):
    """Adam's step number `step` (from 1), in place on W, m and v:

    AdamW (decoupled): W *= 1 - lr * weight_decay; Adam: g = grad + weight_decay * W;
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    W -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with eps divided by
    sqrt(1 - b2^t) when folded (scikit-learn's placement).
    """
    b1, b2 = betas
    bc1, bc2_sqrt = 1.0 - b1 ** step, math.sqrt(1.0 - b2 ** step)
    rate, eps = lr / bc1, (eps / bc2_sqrt if folded else eps)
    shrink, decay = (1.0 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
    Wf, Mf, Vf = _flat(W), _flat(m), _flat(v)
    for i, g in enumerate(_flat(grad)):
        p = Wf[i] * shrink
        g = g + decay * p
        Mf[i] = b1 * Mf[i] + (1.0 - b1) * g
        Vf[i] = b2 * Vf[i] + (1.0 - b2) * (g * g)
        Wf[i] = p - rate * (Mf[i] / (math.sqrt(Vf[i]) * (1.0 / bc2_sqrt) + eps))
    _store(W, Wf), _store(m, Mf), _store(v, Vf)


def rprop_update(W, grad, prev, steps, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
                 weight_decay=0.0):
    """iRprop-, in place on W, prev and steps: with g = grad + weight_decay * W, a step
    grows by etas[1] where g keeps the sign of prev, shrinks by etas[0] where it flips
    (and g counts as 0 there), clamped to step_sizes; W -= sign(g) * step; prev = g."""
    down, up = etas
    lo, hi = step_sizes
    Wf, Pf, Sf = _flat(W), _flat(prev), _flat(steps)
    for i, g in enumerate(_flat(grad)):
        g = g + weight_decay * Wf[i]
        turn = g * Pf[i]
        s = Sf[i] * (up if turn > 0 else down if turn < 0 else 1.0)
        Sf[i] = min(max(s, lo), hi)
        g = 0.0 if turn < 0 else g
        Wf[i] -= Sf[i] if g > 0 else -Sf[i] if g < 0 else 0.0
        Pf[i] = g
    _store(W, Wf), _store(prev, Pf), _store(steps, Sf)


def sgd_fused_update(W, b, A_prev, delta, lr):
    """W -= lr * A_prev.T @ delta and b -= lr * sum(delta): SGD with no gradient buffer."""
    dW, db = weight_gradients(A_prev, delta)
    sgd_update(W, dW, lr)
    sgd_update(b, db, lr)
