"""The compiled kernels as public functions, validated and converted at the boundary.

Each function has a twin of the same name in ``bpfast.reference`` (pure Python,
lists). Arrays may be anything NumPy converts to real numbers; the result is
float32 when every input is float32, float64 otherwise.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from bpfast import _kernels
from bpfast._validation import (_convert, _not_finite_message, _numeric_array, all_finite,
                                as_bool, as_matrix, as_sample_weight, as_vector,
                                nonnegative_float, positive_float, positive_int, result_dtype)
from bpfast.activations import activation_code, loss_code

__all__ = ["dense_forward", "backprop_error", "activation_backward", "output_delta",
           "weight_gradients", "sgd_update", "sgd_fused_update", "adam_update", "rprop_update"]


def _as_W(W, name="W"):
    W = _numeric_array(W, name)
    if W.ndim != 2 or 0 in W.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array of shape (n_in, n_out); "
                         f"got shape {W.shape}")
    return W


def dense_forward(X, W, b, activation: str = "identity") -> np.ndarray:
    """One dense layer forward: ``A = f(X @ W + b)``.

    Parameters
    ----------
    X : array_like, shape (batch, n_in)
    W : array_like, shape (n_in, n_out)
    b : array_like, shape (n_out,)
    activation : {'identity', 'sigmoid', 'tanh', 'relu', 'softmax'}

    Returns
    -------
    A : ndarray, shape (batch, n_out), float32 if all inputs are float32 else float64
    """
    activation_code(activation, output=True)
    W = _as_W(W)
    X, b = _numeric_array(X, "X"), _numeric_array(b, "b")     # converted once, here
    dtype = result_dtype(X, W, b)
    W = as_matrix(W, "W", dtype)
    X = as_matrix(X, "X", dtype, width=W.shape[0], allow_1d=True)
    b = as_vector(b, "b", dtype, W.shape[1])
    return _kernels.dense_forward(X, W, b, activation)


def backprop_error(delta, W) -> np.ndarray:
    """The transpose-matmul error backpropagation: ``E_prev = delta @ W.T``.

    Parameters
    ----------
    delta : array_like, shape (batch, n_out)
        The error at the layer's output (dLoss/dZ).
    W : array_like, shape (n_in, n_out)

    Returns
    -------
    E_prev : ndarray, shape (batch, n_in)
    """
    W = _as_W(W)
    delta = _numeric_array(delta, "delta")
    dtype = result_dtype(delta, W)
    W = as_matrix(W, "W", dtype)
    delta = as_matrix(delta, "delta", dtype, width=W.shape[1], allow_1d=True)
    return _kernels.backprop_error(delta, W)


def activation_backward(E, A, activation: str) -> np.ndarray:
    """``delta = E * f'(Z)`` with f' written in terms of the layer output ``A = f(Z)``.

    Returns a new array (the compiled kernel works in place on a private copy).
    """
    activation_code(activation)
    caller_E = E
    A, E, _ = _matching(A, E, "A", "E")
    if isinstance(caller_E, np.ndarray) and np.may_share_memory(E, caller_E):
        E = E.copy()            # never change the caller's array
    _kernels.activation_backward(E, A, activation)
    return E


def _matching(A, B, name_a, name_b):
    """A and B converted once to their common dtype, B of A's shape: (A, B, dtype)."""
    A, B = _numeric_array(A, name_a), _numeric_array(B, name_b)
    dtype = result_dtype(A, B)
    A = as_matrix(A, name_a, dtype)
    return A, as_matrix(B, name_b, dtype, width=A.shape[1], rows=A.shape[0]), dtype


def output_delta(A, Y, loss: str, activation: str, sample_weight=None):
    """The loss of an output ``A`` against targets ``Y`` and ``delta = dLoss/dZ``.

    With ``sample_weight`` (one weight >= 0 per row) the mean over rows is the weighted
    mean, divided by the sum of the weights ('sse': the weighted sum).

    Returns
    -------
    (loss_value, delta) : (float, ndarray of the shape of A)
    """
    activation_code(activation, output=True, argname="activation")
    loss_code(loss, activation)
    A, Y, dtype = _matching(A, Y, "A", "Y")
    if sample_weight is not None:
        sample_weight = as_sample_weight(sample_weight, A.shape[0], dtype)
    return _kernels.output_delta(A, Y, loss, activation, sample_weight)


def weight_gradients(A_prev, delta):
    """``(dW, db) = (A_prev.T @ delta, delta.sum(axis=0))``."""
    A_prev, delta = _numeric_array(A_prev, "A_prev"), _numeric_array(delta, "delta")
    dtype = result_dtype(A_prev, delta)
    A_prev = as_matrix(A_prev, "A_prev", dtype)
    delta = as_matrix(delta, "delta", dtype, rows=A_prev.shape[0])
    return _kernels.weight_gradients(A_prev, delta)


def _updatable(arr, name, dtype=None):
    """arr as the ndarray an in-place update writes into (np.matrix and other subclasses
    are viewed as plain arrays)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is updated in place); "
                        f"got {type(arr).__name__}")
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64 to be updated in place; got {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name} must have W's dtype {dtype}; got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; it must be writeable to be updated in place")
    return arr.view(np.ndarray)


def _in_place(update, *arrays):
    """Run update(*flat arrays) on C-contiguous flat views of arrays, through contiguous
    copies written back for strided ones."""
    flat = [a.reshape(-1) if a.flags.c_contiguous and a.flags.aligned
            else np.array(a, order="C", copy=True).reshape(-1) for a in arrays]
    update(*flat)
    for a, f in zip(arrays, flat):
        if not np.shares_memory(a, f):
            a[...] = f.reshape(a.shape)


def _gradient_for(W, grad, name):
    grad = _numeric_array(grad, name)
    if grad.shape != W.shape:
        raise ValueError(f"{name} must have W's shape {W.shape}; got {grad.shape}")
    flat = _convert(grad, W.dtype, writeable=True).reshape(-1)
    if not all_finite(flat):
        raise ValueError(_not_finite_message(name, grad.dtype, W.dtype))
    if np.may_share_memory(flat, W):
        flat = flat.copy()        # the update must read the old gradient throughout
    return flat


def sgd_update(W: np.ndarray, grad, lr: float, velocity: Optional[np.ndarray] = None,
               momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> None:
    """In-place SGD from a stored gradient, with ``g = grad + weight_decay * W``.

    Without ``velocity``: ``W -= lr * g``. With it, momentum: ``velocity = momentum *
    velocity - lr * g; W += velocity`` (``nesterov=True``: ``W += momentum * velocity -
    lr * g``), velocity updated in place too. This is the update ``Network.step`` runs, and
    ``fit`` with momentum after each layer's gradient.

    Parameters
    ----------
    W : ndarray of float32 or float64, any shape and layout, writeable; changed in place
    grad : array_like of W's shape
    lr : float > 0
    velocity : ndarray of W's shape and dtype, writeable, or None
    momentum : float in [0, 1)
    weight_decay : float >= 0
    nesterov : bool
    """
    W = _updatable(W, "W")
    lr = positive_float(lr, "lr")
    momentum = nonnegative_float(momentum, "momentum", upper=1.0)
    weight_decay = nonnegative_float(weight_decay, "weight_decay")
    nesterov = as_bool(nesterov, "nesterov")
    flat_grad = _gradient_for(W, grad, "grad")
    if velocity is None:
        _in_place(lambda w: _kernels.sgd_update(w, flat_grad, lr, None, momentum,
                                                weight_decay, nesterov), W)
        return
    velocity = _updatable(velocity, "velocity", W.dtype)
    if velocity.shape != W.shape:
        raise ValueError(f"velocity must have W's shape {W.shape}; got {velocity.shape}")
    if np.may_share_memory(velocity, W):
        raise ValueError("velocity and W must not share memory")
    if not all_finite(velocity):
        raise ValueError("velocity contains NaN or infinity")
    _in_place(lambda w, v: _kernels.sgd_update(w, flat_grad, lr, v, momentum, weight_decay,
                                               nesterov), W, velocity)


def _state_for(W, arrays):
    """Validated state arrays of an in-place optimizer step: W's shape and dtype, finite."""
    out = []
    for name, arr in arrays:
        arr = _updatable(arr, name, W.dtype)
        if arr.shape != W.shape:
            raise ValueError(f"{name} must have W's shape {W.shape}; got {arr.shape}")
        if not all_finite(arr):
            raise ValueError(f"{name} contains NaN or infinity")
        if any(np.may_share_memory(arr, other) for other in [W] + out):
            raise ValueError(f"{name} must not share memory with W or the other state")
        out.append(arr)
    return out


def adam_update(W: np.ndarray, grad, m: np.ndarray, v: np.ndarray, step: int, lr: float,
                betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                decoupled: bool = False, folded: bool = False) -> None:
    """Adam's step number ``step`` (from 1), in place on W, m and v (``torch.optim.Adam``;
    with ``decoupled=True``, ``AdamW``): see ``bpfast.optim.Adam`` for the formulas.
    ``folded=True`` places eps as scikit-learn does."""
    W = _updatable(W, "W")
    lr = positive_float(lr, "lr")
    step = positive_int(step, "step")
    betas = tuple(nonnegative_float(b, f"betas[{i}]", upper=1.0) for i, b in enumerate(betas))
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair; got {betas!r}")
    eps = positive_float(eps, "eps")
    weight_decay = nonnegative_float(weight_decay, "weight_decay")
    decoupled, folded = as_bool(decoupled, "decoupled"), as_bool(folded, "folded")
    flat_grad = _gradient_for(W, grad, "grad")
    m, v = _state_for(W, (("m", m), ("v", v)))
    _in_place(lambda w, m_, v_: _kernels.adam_update(w, flat_grad, m_, v_, step, lr, betas, eps,
                                                     weight_decay, decoupled, folded), W, m, v)


def rprop_update(W: np.ndarray, grad, prev: np.ndarray, steps: np.ndarray, etas=(0.5, 1.2),
                 step_sizes=(1e-6, 50.0), weight_decay: float = 0.0) -> None:
    """One iRprop- step in place on W, prev (the previous gradients) and steps (the step
    sizes): see ``bpfast.optim.Rprop``."""
    W = _updatable(W, "W")
    etas = tuple(positive_float(e, f"etas[{i}]") for i, e in enumerate(etas))
    step_sizes = tuple(positive_float(e, f"step_sizes[{i}]") for i, e in enumerate(step_sizes))
    if len(etas) != 2 or len(step_sizes) != 2:
        raise ValueError("etas and step_sizes must be pairs")
    weight_decay = nonnegative_float(weight_decay, "weight_decay")
    flat_grad = _gradient_for(W, grad, "grad")
    prev, steps = _state_for(W, (("prev", prev), ("steps", steps)))
    _in_place(lambda w, p, s: _kernels.rprop_update(w, flat_grad, p, s, etas, step_sizes,
                                                    weight_decay), W, prev, steps)


def sgd_fused_update(W: np.ndarray, b: np.ndarray, A_prev, delta, lr: float) -> None:
    """Plain SGD with no gradient buffer, in place: ``W -= lr * A_prev.T @ delta`` and
    ``b -= lr * delta.sum(axis=0)``, the update plain-SGD training runs in ``fit`` and
    ``train_step`` (one product writes into W).

    Parameters
    ----------
    W : ndarray (n_in, n_out) of float32 or float64, writeable; changed in place
    b : ndarray (n_out,) of W's dtype, writeable; changed in place
    A_prev : array_like (batch, n_in), the layer's input
    delta : array_like (batch, n_out), dLoss/dZ of the layer
    lr : float > 0
    """
    W = _updatable(W, "W")
    b = _updatable(b, "b", W.dtype)
    if W.ndim != 2 or 0 in W.shape:
        raise ValueError(f"W must be a non-empty 2-D array of shape (n_in, n_out); got shape {W.shape}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"b must have shape ({W.shape[1]},); got {b.shape}")
    lr = positive_float(lr, "lr")
    A_prev = as_matrix(A_prev, "A_prev", W.dtype, width=W.shape[0], allow_1d=True)
    delta = as_matrix(delta, "delta", W.dtype, width=W.shape[1], rows=A_prev.shape[0])
    if np.may_share_memory(A_prev, W) or np.may_share_memory(A_prev, b):
        A_prev = A_prev.copy()
    if np.may_share_memory(delta, W) or np.may_share_memory(delta, b):
        delta = delta.copy()
    _in_place(lambda w, bias: _kernels.sgd_fused_update(w.reshape(W.shape), bias, A_prev,
                                                        delta, lr), W, b)
