"""The compiled kernels as public functions, validated and converted at the boundary.

Each function has a twin of the same name in ``bpfast.reference`` (pure Python,
lists). Arrays may be anything NumPy converts to real numbers; the result is
float32 when every input is float32, float64 otherwise.
"""
from __future__ import annotations

import numpy as np

from bpfast import _kernels
from bpfast._validation import (_convert, _not_finite_message, _numeric_array, all_finite,
                                as_matrix, as_vector, positive_float, result_dtype)
from bpfast.activations import activation_code, loss_code

__all__ = ["dense_forward", "backprop_error", "activation_backward", "output_delta",
           "weight_gradients", "sgd_update"]


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
    A, E = _numeric_array(A, "A"), _numeric_array(E, "E")
    dtype = result_dtype(E, A)
    A = as_matrix(A, "A", dtype)
    E = as_matrix(E, "E", dtype, width=A.shape[1], rows=A.shape[0])
    if isinstance(caller_E, np.ndarray) and np.may_share_memory(E, caller_E):
        E = E.copy()            # never change the caller's array
    _kernels.activation_backward(E, A, activation)
    return E


def output_delta(A, Y, loss: str, activation: str):
    """The loss of an output ``A`` against targets ``Y`` and ``delta = dLoss/dZ``.

    Returns
    -------
    (loss_value, delta) : (float, ndarray of the shape of A)
    """
    activation_code(activation, output=True, argname="activation")
    loss_code(loss, activation)
    A, Y = _numeric_array(A, "A"), _numeric_array(Y, "Y")
    dtype = result_dtype(A, Y)
    A = as_matrix(A, "A", dtype)
    Y = as_matrix(Y, "Y", dtype, width=A.shape[1], rows=A.shape[0])
    return _kernels.output_delta(A, Y, loss, activation)


def weight_gradients(A_prev, delta):
    """``(dW, db) = (A_prev.T @ delta, delta.sum(axis=0))``."""
    A_prev, delta = _numeric_array(A_prev, "A_prev"), _numeric_array(delta, "delta")
    dtype = result_dtype(A_prev, delta)
    A_prev = as_matrix(A_prev, "A_prev", dtype)
    delta = as_matrix(delta, "delta", dtype, rows=A_prev.shape[0])
    return _kernels.weight_gradients(A_prev, delta)


def sgd_update(W: np.ndarray, grad, lr: float) -> None:
    """In-place SGD: ``W -= lr * grad``.

    Parameters
    ----------
    W : ndarray of float32 or float64, any shape and layout, writeable; changed in place
    grad : array_like of W's shape
    lr : float > 0
    """
    if not isinstance(W, np.ndarray):
        raise TypeError(f"W must be a NumPy array (it is updated in place); got {type(W).__name__}")
    if W.dtype not in (np.float32, np.float64):
        raise TypeError(f"W must be float32 or float64 to be updated in place; got {W.dtype}")
    if not W.flags.writeable:
        raise ValueError("W is read-only; it must be writeable to be updated in place")
    lr = positive_float(lr, "lr")
    grad = _numeric_array(grad, "grad")
    if grad.shape != W.shape:
        raise ValueError(f"grad must have W's shape {W.shape}; got {grad.shape}")
    flat_grad = _convert(grad, W.dtype, writeable=True).reshape(-1)
    if not all_finite(flat_grad):
        raise ValueError(_not_finite_message("grad", grad.dtype, W.dtype))
    if np.may_share_memory(flat_grad, W):
        flat_grad = flat_grad.copy()        # W -= lr * grad must read the old grad throughout
    if W.flags.c_contiguous and W.flags.aligned:
        _kernels.sgd_update(W.reshape(-1), flat_grad, lr)
    else:
        # Strided W: update a contiguous copy, then write it back through the view.
        flat_W = np.array(W, order="C", copy=True).reshape(-1)
        _kernels.sgd_update(flat_W, flat_grad, lr)
        W[...] = flat_W.reshape(W.shape)
