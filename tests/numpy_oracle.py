"""A plain-NumPy implementation of a whole network's step: an independent oracle for tests.

Written straight from the formulas of docs/design.md, sharing no code with bpfast.
"""
import numpy as np

ACT = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "sigmoid": (lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(Ws, bs, X, act, out_act):
    As = [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        Z = As[-1] @ W + b
        f = out_act if l == len(Ws) - 1 else act
        As.append(softmax(Z) if f == "softmax" else ACT[f][0](Z))
    return As


def loss_and_grads(Ws, bs, X, Y, act, out_act, loss):
    """(loss, [dW], [db]) of the data loss."""
    As = forward(Ws, bs, X, act, out_act)
    A, n = As[-1], X.shape[0]
    if loss == "cross_entropy":
        value = -np.sum(Y * np.log(A)) / n
        delta = (A * Y.sum(axis=1, keepdims=True) - Y) / n
    else:
        scale = 1.0 / A.size if loss == "mse" else 1.0
        value = scale * np.sum((A - Y) ** 2)
        G = 2 * scale * (A - Y)
        if out_act == "softmax":
            delta = A * (G - np.sum(G * A, axis=1, keepdims=True))
        else:
            delta = G * ACT[out_act][1](A)
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        dWs[l] = As[l].T @ delta
        dbs[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ Ws[l].T) * ACT[act][1](As[l])
    return value, dWs, dbs


def fit(Ws, bs, X, Y, act, out_act, loss, epochs, batch_size, lr, momentum=0.0,
        nesterov=False, weight_decay=0.0):
    """Mini-batch SGD without shuffling, with sklearn-style momentum and L2 decay."""
    Ws = [W.copy() for W in Ws]
    bs = [b.copy() for b in bs]
    vW = [np.zeros_like(W) for W in Ws]
    vb = [np.zeros_like(b) for b in bs]
    for _ in range(epochs):
        for start in range(0, X.shape[0], batch_size):
            xb, yb = X[start:start + batch_size], Y[start:start + batch_size]
            _, dWs, dbs = loss_and_grads(Ws, bs, xb, yb, act, out_act, loss)
            for P, G, V, decay in ((Ws, dWs, vW, weight_decay), (bs, dbs, vb, 0.0)):
                for i in range(len(P)):
                    g = G[i] + decay * P[i]
                    if momentum == 0:
                        P[i] -= lr * g
                        continue
                    V[i] = momentum * V[i] - lr * g
                    P[i] += momentum * V[i] - lr * g if nesterov else V[i]
    return Ws, bs
