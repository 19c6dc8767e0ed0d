"""Optimizers: SGD (momentum, Nesterov), Adam, AdamW and Rprop, for ``fit`` and custom loops.

Each matches the PyTorch optimizer of the same name, step for step::

    opt = bpfast.optim.Adam(net, lr=1e-3)
    for X, Y in batches:
        net.forward(X)
        net.backward(Y)
        opt.step()

``step()`` runs the native update that ``Network.fit`` runs, from the gradients that
``backward`` left, and gives the same bits as ``net.fit(..., optimizer=opt)`` on the same
batches. ``fit`` also takes the names ``"sgd"``, ``"adam"``, ``"adamw"`` and ``"rprop"``.

The state (momentum velocities; Adam's moments; Rprop's step sizes and previous
gradients) lives in the Network, in one flat buffer of twice the parameters laid out
like them, beside the parameters and the gradients; the step count beside it. It pickles,
deep-copies and saves with the Network. Weight decay applies to weights, not biases.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from bpfast._validation import as_bool, choice, nonnegative_float, positive_float

NAMES = ("sgd", "adam", "adamw", "rprop")       # the engine's optimizer codes, in order


def _pair(value, name, check):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers; got {value!r}")
    return tuple(check(v, f"{name}[{i}]") for i, v in enumerate(value))


def _below_one(value, name):
    value = nonnegative_float(value, name, upper=1.0)
    return value


class Optimizer:
    """The settings of one optimizer bound to one Network; ``step()`` updates it."""

    name = ""

    def __init__(self, net, lr: float, weight_decay: float = 0.0,
                 clip_norm: Optional[float] = None):
        from bpfast.network import Network
        if not isinstance(net, Network):
            raise TypeError(f"net must be a bpfast.Network; got {type(net).__name__}")
        self.net = net
        self.lr = positive_float(lr, "lr")
        self.weight_decay = nonnegative_float(weight_decay, "weight_decay")
        self.clip_norm = None if clip_norm is None else positive_float(clip_norm, "clip_norm")

    def update(self, lr: Optional[float] = None, from_gradients: bool = True) -> dict:
        """The engine's settings for a step at learning rate lr (default: self.lr)."""
        out = dict(optimizer=NAMES.index(self.name), lr=self.lr if lr is None else lr,
                   momentum=0.0, weight_decay=self.weight_decay, nesterov=False, beta1=0.0,
                   beta2=0.0, eps=0.0, folded=False, eta_minus=0.0, eta_plus=0.0,
                   step_min=0.0, step_max=0.0, clip_norm=self.clip_norm or 0.0,
                   from_gradients=from_gradients, step=0)
        out.update(self._settings())
        return out

    def _settings(self) -> dict:
        return {}

    def initial_state(self, state: np.ndarray) -> None:
        """Fill a fresh state buffer (2 * n_params): zeros, unless the optimizer says."""
        state[...] = 0

    def step(self) -> None:
        """One update from the gradients of the last ``backward``, in place.

        Raises FloatingPointError, with the parameters and the state left as they were,
        if the update would make a parameter NaN or infinite.
        """
        self.net._optimizer_step(self)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self._describe().items())
        return f"{type(self).__name__}({fields})"

    def _describe(self) -> dict:
        out = {"lr": self.lr}
        if self.weight_decay:
            out["weight_decay"] = self.weight_decay
        if self.clip_norm:
            out["clip_norm"] = self.clip_norm
        return out


class SGD(Optimizer):
    """SGD, with classical or Nesterov momentum: ``v = momentum * v - lr * g; W += v``
    (Nesterov: ``W += momentum * v - lr * g``), ``g = grad + weight_decay * W`` on weights.

    The same trajectory as ``torch.optim.SGD(lr, momentum, nesterov=...)``, whose velocity
    is scaled by lr: ``v_torch = -v / lr`` while lr stays constant.
    """

    name = "sgd"

    def __init__(self, net, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: Optional[float] = None):
        super().__init__(net, lr, weight_decay, clip_norm)
        self.momentum = nonnegative_float(momentum, "momentum", upper=1.0)
        self.nesterov = as_bool(nesterov, "nesterov")

    def _settings(self):
        return dict(momentum=self.momentum, nesterov=self.nesterov)

    def _describe(self):
        return {**super()._describe(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``): ``g = grad + weight_decay * W`` (weights only),
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``W -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    name = "adam"

    def __init__(self, net, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: Optional[float] = None,
                 folded_eps: bool = False):
        super().__init__(net, lr, weight_decay, clip_norm)
        self.betas = _pair(betas, "betas", _below_one)
        self.eps = positive_float(eps, "eps")
        # scikit-learn adds eps to sqrt(v) and folds the bias corrections into the rate.
        self.folded_eps = as_bool(folded_eps, "folded_eps")

    def _settings(self):
        return dict(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                    folded=self.folded_eps)

    def _describe(self):
        return {**super()._describe(), "betas": self.betas, "eps": self.eps}


class AdamW(Adam):
    """AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay, ``W *= 1 - lr *
    weight_decay`` before the step (weights only), no L2 term in the gradient."""

    name = "adamw"

    def __init__(self, net, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, clip_norm: Optional[float] = None):
        super().__init__(net, lr, betas, eps, weight_decay, clip_norm)


class Rprop(Optimizer):
    """iRprop- (``torch.optim.Rprop``; FANN's default training): each parameter has its own
    step size, starting at ``lr``, times ``etas[1]`` while its gradient keeps its sign and
    times ``etas[0]`` when it flips (that step then makes no move), clamped to
    ``step_sizes``; ``W -= sign(g) * step``.

    Rprop follows the sign of the whole gradient, so it is meant for full-batch training
    (``batch_size`` at least the number of samples). A learning-rate schedule sets only
    the initial step size, as in PyTorch.
    """

    name = "rprop"

    def __init__(self, net, lr: float = 0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
                 weight_decay: float = 0.0, clip_norm: Optional[float] = None):
        super().__init__(net, lr, weight_decay, clip_norm)
        self.etas = _pair(etas, "etas", positive_float)
        if not self.etas[0] < 1 < self.etas[1]:
            raise ValueError(f"etas must be (eta_minus, eta_plus) with 0 < eta_minus < 1 < "
                             f"eta_plus; got {etas!r}")
        self.step_sizes = _pair(step_sizes, "step_sizes", positive_float)
        if not self.step_sizes[0] <= self.step_sizes[1]:
            raise ValueError(f"step_sizes must be (smallest, largest); got {step_sizes!r}")

    def _settings(self):
        return dict(eta_minus=self.etas[0], eta_plus=self.etas[1],
                    step_min=self.step_sizes[0], step_max=self.step_sizes[1])

    def initial_state(self, state):
        half = state.shape[0] // 2
        state[:half] = self.lr          # the step sizes
        state[half:] = 0                # the previous gradients

    def _describe(self):
        return {**super()._describe(), "etas": self.etas, "step_sizes": self.step_sizes}


CLASSES = {cls.name: cls for cls in (SGD, Adam, AdamW, Rprop)}


def make(net, optimizer, lr, momentum, nesterov, weight_decay, betas, eps, etas, step_sizes,
         clip_norm) -> Optimizer:
    """fit's optimizer: a bpfast.optim object for this net, or one built from its name."""
    if isinstance(optimizer, Optimizer):
        if optimizer.net is not net:
            raise ValueError("optimizer belongs to another Network; build it with this one")
        return optimizer
    choice(optimizer, "optimizer", NAMES, "a bpfast.optim object")
    if optimizer == "sgd":
        return SGD(net, lr, momentum, nesterov, weight_decay, clip_norm)
    if optimizer == "rprop":
        return Rprop(net, lr, etas, step_sizes, weight_decay, clip_norm)
    return CLASSES[optimizer](net, lr, betas, eps, weight_decay, clip_norm)


