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
from bpfast._layout import param_layout
from bpfast._engine import OPTIMIZERS, NeedsValidation

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

    def __init__(self, sizes, hidden_act, output_act, loss, params, grads, state):
        self.sizes = list(sizes)
        self.hidden_act, self.output_act, self.loss = hidden_act, output_act, loss
        self.params, self.grads, self.state = params, grads, state
        # (W slice, W shape, b slice) per layer of the flat buffers
        self.views = [(slice(s.w, s.b), (s.n_in, s.n_out), slice(s.b, s.end))
                      for s in param_layout(self.sizes)[0]]
        self.batch = 0
        self.acts = None
        self.rng = 0
        self.indices = None
        self.threads = 0        # as Engine's; NumPy's calls choose their own threads

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

    def _backward_all(self, acts, Y, layers, sample_weight=None, lr=None, w_scale=1.0):
        """Compute the error and backpropagate; returns (loss, per-layer (dW, db) or None).

        With lr given, each layer is updated in place by fused SGD right after its
        error was sent back through the old W (as the compiled engine does).
        """
        loss, delta = ref.output_delta(acts[-1], Y, self.loss, self.output_act, sample_weight)
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

    def _step_from_gradients(self, u):
        """The optimizer's step from the gradient buffer, as _engine's step_from_gradients."""
        u["step"] += 1
        half = self.params.shape[0]
        if u["clip_norm"] > 0:
            norm = math.sqrt(float(np.dot(self.grads.astype(np.float64), self.grads)))
            scale = u["clip_norm"] / (norm + 1e-6)
            if scale < 1:
                self.grads *= self.grads.dtype.type(scale)
        layers, grads = self._layers(self.params), self._layers(self.grads)
        first, second = self._layers(self.state[:half]), self._layers(self.state[half:])
        name, lr, wd = OPTIMIZERS[u["optimizer"]], u["lr"], u["weight_decay"]
        for (W, b), (dW, db), (m_W, m_b), (v_W, v_b) in zip(layers, grads, first, second):
            for P, G, S1, S2, decay in ((W, dW, m_W, v_W, wd), (b, db, m_b, v_b, 0.0)):
                if name == "sgd":
                    ref.sgd_update(P, G, lr, S1 if u["momentum"] else None, u["momentum"],
                                   decay, u["nesterov"])
                elif name == "rprop":
                    ref.rprop_update(P, G, S2, S1, (u["eta_minus"], u["eta_plus"]),
                                     (u["step_min"], u["step_max"]), decay)
                else:
                    ref.adam_update(P, G, S1, S2, u["step"], lr, (u["beta1"], u["beta2"]),
                                    u["eps"], decay, name == "adamw", u["folded"])
        self._write(self.params, layers)
        self._write(self.state[:half], first)
        self._write(self.state[half:], second)
        return u["step"]

    # -- the Engine interface
    def forward(self, X, keep=True, threads=-1, check_input=False, use_packs=False):
        # use_packs: the compiled Engine's packed weights; the reference packs nothing.
        if check_input and not keep and not np.isfinite(X).all():
            return None
        acts = self._forward_all(X.tolist(), self._layers(self.params))
        if keep:
            self.acts, self.batch = acts, X.shape[0]
        return np.asarray(acts[-1], dtype=self.params.dtype)

    def backward(self, Y, sample_weight=None, threads=-1):
        if self.batch == 0:
            raise RuntimeError("backward() needs a forward() first (and one backward per forward)")
        if Y.shape[0] != self.batch:
            raise ValueError(f"Y has {Y.shape[0]} rows but the last forward() had {self.batch}")
        loss, grads = self._backward_all(self.acts, Y.tolist(), self._layers(self.params),
                                         None if sample_weight is None else sample_weight.tolist())
        self._write(self.grads, grads)
        self.batch, self.acts = 0, None
        return loss

    def loss_and_gradient(self, X, Y, sample_weight=None, threads=-1):
        self.forward(X)
        return self.backward(Y, sample_weight)

    def _train_batch(self, X, Y, sample_weight, u):
        layers = self._layers(self.params)
        acts = self._forward_all(X, layers)
        if (u["optimizer"] == 0 and u["momentum"] == 0 and u["clip_norm"] == 0
                and not u["from_gradients"]):
            u["step"] += 1
            loss, _ = self._backward_all(acts, Y, layers, sample_weight, u["lr"],
                                         1.0 - u["lr"] * u["weight_decay"])
            self._write(self.params, layers)
            return loss
        loss, grads = self._backward_all(acts, Y, layers, sample_weight)
        self._write(self.grads, grads)
        self._step_from_gradients(u)
        return loss

    def step_from_gradients(self, update, threads=-1):
        return self._step_from_gradients(dict(update))

    def try_train_step(self, X, Y, lr, threads=-1):
        raise NeedsValidation     # no fast path: the Network validates first

    def train_step(self, X, Y, lr, threads=-1):
        self.batch, self.acts = 0, None
        backup = self.params.copy()
        update = dict(optimizer=0, lr=lr, momentum=0.0, weight_decay=0.0, clip_norm=0.0,
                      from_gradients=False, step=0)
        loss = self._train_batch(X.tolist(), Y.tolist(), None, update)
        if not (math.isfinite(loss) and self.params_finite()):
            self.params[...] = backup
            return math.nan
        return loss

    def seed(self, seed, n_samples):
        self.rng = int(seed) & _MASK
        self.indices = list(range(n_samples))

    def epochs(self, X, Y, batch_size, shuffled, lrs, sample_weight, update, threads=-1,
               orders=None):
        """As _engine.Engine.epochs: (losses of the completed epochs, n_updates, diverged,
        interrupted, step); Ctrl-C raises KeyboardInterrupt here directly. orders: None or
        each epoch's sample order, one row an epoch."""
        self.batch, self.acts = 0, None
        u = dict(update)
        losses, n_updates = [], 0
        w = None if sample_weight is None else sample_weight.tolist()
        for e, lr in enumerate(lrs):
            backup = self.params.copy()
            u["lr"] = float(lr)
            order = None if orders is None else orders[e].tolist()
            loss, n, ok = self._epoch(X, Y, w, batch_size, shuffled, u, order)
            n_updates += n
            if u["weight_decay"] and OPTIMIZERS[u["optimizer"]] != "adamw":
                loss += 0.5 * u["weight_decay"] * self.weight_sq_norm()
            if not (ok and math.isfinite(loss) and self.params_finite()):
                self.params[...] = backup
                return np.array(losses), n_updates, True, False, u["step"]
            losses.append(loss)
        return np.array(losses), n_updates, False, False, u["step"]

    def _epoch(self, X, Y, w, batch_size, shuffled, u, order=None):
        N = X.shape[0]
        if shuffled and order is None:
            self.rng = shuffle(self.indices, self.rng)
            order = self.indices
        Xl, Yl = X.tolist(), Y.tolist()
        loss_sum, n_updates = 0.0, 0
        for start in range(0, N, batch_size):
            rows = order[start:start + batch_size] if shuffled else range(start, min(start + batch_size, N))
            loss = self._train_batch([Xl[i] for i in rows], [Yl[i] for i in rows],
                                     None if w is None else [w[i] for i in rows], u)
            n_updates += 1
            if not math.isfinite(loss):
                return loss, n_updates, False
            loss_sum += loss if self.loss == "sse" else loss * len(rows)
        return (loss_sum if self.loss == "sse" else loss_sum / N), n_updates, True

    def weight_sq_norm(self):
        """sum of W[l]**2 over all layers, in double (biases are not regularised)."""
        return float(sum(np.dot(self.params[w].astype(np.float64), self.params[w]) for w, _, _ in self.views))

    def params_finite(self):
        return bool(np.isfinite(self.params).all())
