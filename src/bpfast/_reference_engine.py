"""The reference backend's engine: ``_engine.Engine`` step for step, on ``reference.py``.

Same methods, same phases, same batch order and the same SplitMix64 shuffle, so
a Network on backend="reference" and one on backend="cython" compute the same
numbers (up to floating-point summation order). Parameters live in the same
flat NumPy buffer as for the compiled engine; each call reads them into lists
and writes the updated values back.
"""
import math

import numpy as np

from bpfast import reference as ref
from bpfast._engine import NeedsValidation

_MASK = (1 << 64) - 1


def splitmix64(state):
    """(new state, next number) of SplitMix64, as in _engine.pyx."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


def shuffle(idx, state):
    """Fisher-Yates with Lemire's bounded draws, as in _engine.pyx; returns the new state."""
    for i in range(len(idx) - 1, 0, -1):
        bound = i + 1
        state, r = splitmix64(state)
        product = r * bound                     # j is its high 64 bits
        if product & _MASK < bound:
            threshold = (_MASK + 1 - bound) % bound     # 2^64 mod bound
            while product & _MASK < threshold:
                state, r = splitmix64(state)
                product = r * bound
        j = product >> 64
        idx[i], idx[j] = idx[j], idx[i]
    return state


class ReferenceEngine:
    """Pure-Python twin of ``_engine.Engine``."""

    def __init__(self, sizes, hidden_act, output_act, loss, params, grads, velocity):
        self.sizes = list(sizes)
        self.hidden_act, self.output_act, self.loss = hidden_act, output_act, loss
        self.params, self.grads, self.velocity = params, grads, velocity
        self.views = []     # (W view, b view) per layer into a flat buffer
        off = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.views.append((slice(off, off + n_in * n_out), (n_in, n_out),
                               slice(off + n_in * n_out, off + n_in * n_out + n_out)))
            off += n_in * n_out + n_out
        self.batch = 0
        self.acts = None
        self.rng = 0
        self.indices = None

    # -- reading and writing the flat buffers
    def _layers(self, buf):
        return [(buf[w].reshape(shape).tolist(), buf[b].tolist()) for w, shape, b in self.views]

    def _write(self, buf, layers):
        for (w, shape, b), (W, bias) in zip(self.views, layers):
            buf[w] = np.asarray(W, dtype=buf.dtype).reshape(-1)
            buf[b] = np.asarray(bias, dtype=buf.dtype)

    def _act(self, l):
        return self.output_act if l == len(self.views) - 1 else self.hidden_act

    # -- the phases
    def _forward_all(self, X, layers):
        """Run: [A0 = X, A1, ..., AL]."""
        acts = [X]
        for l, (W, b) in enumerate(layers):
            acts.append(ref.dense_forward(acts[-1], W, b, self._act(l)))
        return acts

    def _backward_all(self, acts, Y, layers, lr=None, w_scale=1.0):
        """Compute the error and backpropagate; returns (loss, per-layer (dW, db) or None).

        With lr given, each layer is updated in place by fused SGD right after its
        error was sent back through the old W (as the compiled engine does).
        """
        loss, delta = ref.output_delta(acts[-1], Y, self.loss, self.output_act)
        grads = [None] * len(layers)
        for l in range(len(layers) - 1, -1, -1):
            W, b = layers[l]
            E = ref.backprop_error(delta, W) if l > 0 else None
            if lr is None:
                grads[l] = ref.weight_gradients(acts[l], delta)
            else:
                if w_scale != 1.0:
                    for row in W:
                        row[:] = [w_scale * w for w in row]
                ref.sgd_fused_update(W, b, acts[l], delta, lr)
            if l > 0:
                ref.activation_backward(E, acts[l], self.hidden_act)
                delta = E
        return loss, grads

    # -- the Engine interface
    def forward(self, X, keep=True):
        acts = self._forward_all(X.tolist(), self._layers(self.params))
        if keep:
            self.acts, self.batch = acts, X.shape[0]
        return np.asarray(acts[-1], dtype=self.params.dtype)

    def backward(self, Y):
        if self.batch == 0:
            raise RuntimeError("backward() needs a forward() first (and one backward per forward)")
        if Y.shape[0] != self.batch:
            raise ValueError(f"Y has {Y.shape[0]} rows but the last forward() had {self.batch}")
        loss, grads = self._backward_all(self.acts, Y.tolist(), self._layers(self.params))
        self._write(self.grads, grads)
        self.batch, self.acts = 0, None
        return loss

    def _train_batch(self, X, Y, lr, momentum, nesterov, weight_decay):
        layers = self._layers(self.params)
        acts = self._forward_all(X, layers)
        if momentum == 0:
            loss, _ = self._backward_all(acts, Y, layers, lr, 1.0 - lr * weight_decay)
            self._write(self.params, layers)
            return loss
        loss, grads = self._backward_all(acts, Y, layers)
        velocity = self._layers(self.velocity)
        for (W, b), (dW, db), (vW, vb) in zip(layers, grads, velocity):
            ref.sgd_update(W, dW, lr, vW, momentum, weight_decay, nesterov)
            ref.sgd_update(b, db, lr, vb, momentum, 0.0, nesterov)
        self._write(self.params, layers)
        self._write(self.velocity, velocity)
        return loss

    def try_train_step(self, X, Y, lr):
        raise NeedsValidation     # no fast path: the Network validates first

    def train_step(self, X, Y, lr):
        self.batch, self.acts = 0, None
        backup = self.params.copy()
        loss = self._train_batch(X.tolist(), Y.tolist(), lr, 0.0, False, 0.0)
        if not (math.isfinite(loss) and self.params_finite()):
            self.params[...] = backup
            return math.nan
        return loss

    def seed(self, seed, n_samples):
        self.rng = int(seed) & _MASK
        self.indices = list(range(n_samples))

    def epochs(self, X, Y, batch_size, shuffled, lrs, momentum, nesterov, weight_decay):
        """As _engine.Engine.epochs: (losses of the completed epochs, n_updates, diverged,
        interrupted); Ctrl-C raises KeyboardInterrupt here directly."""
        self.batch, self.acts = 0, None
        losses, n_updates = [], 0
        for lr in lrs:
            backup = self.params.copy()
            loss, n, ok = self._epoch(X, Y, batch_size, shuffled, float(lr), momentum, nesterov,
                                      weight_decay)
            n_updates += n
            if weight_decay:
                loss += 0.5 * weight_decay * self._weight_sq_norm()
            if not (ok and math.isfinite(loss) and self.params_finite()):
                self.params[...] = backup
                return np.array(losses), n_updates, True, False
            losses.append(loss)
        return np.array(losses), n_updates, False, False

    def _epoch(self, X, Y, batch_size, shuffled, lr, momentum, nesterov, weight_decay):
        N = X.shape[0]
        if shuffled:
            self.rng = shuffle(self.indices, self.rng)
        Xl, Yl = X.tolist(), Y.tolist()
        loss_sum, n_updates = 0.0, 0
        for start in range(0, N, batch_size):
            rows = self.indices[start:start + batch_size] if shuffled else range(start, min(start + batch_size, N))
            loss = self._train_batch([Xl[i] for i in rows], [Yl[i] for i in rows],
                                     lr, momentum, nesterov, weight_decay)
            n_updates += 1
            if not math.isfinite(loss):
                return loss, n_updates, False
            loss_sum += loss if self.loss == "sse" else loss * len(rows)
        return (loss_sum if self.loss == "sse" else loss_sum / N), n_updates, True

    def _weight_sq_norm(self):
        return float(sum(np.dot(self.params[w].astype(np.float64), self.params[w]) for w, _, _ in self.views))

    def params_finite(self):
        return bool(np.isfinite(self.params).all())
