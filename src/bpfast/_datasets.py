"""Small built-in data sets for the demo and the examples: XOR and two spirals.

Both are generated here (no download, no files): ``xor()`` is the four-row
truth table, ``two_spirals()`` two interleaved Archimedean spirals, the classic
hard case for a small MLP (Lang & Witbrock, 1988).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

__all__ = ["xor", "two_spirals", "one_hot"]


def xor(dtype="float64") -> Tuple[np.ndarray, np.ndarray]:
    """The XOR truth table.

    Parameters
    ----------
    dtype : {'float64', 'float32'}
        dtype of X.

    Returns
    -------
    X : ndarray of shape (4, 2)
        The inputs (0,0), (0,1), (1,0), (1,1).
    y : ndarray of shape (4,), int64
        ``x1 XOR x2``: 0, 1, 1, 0.
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y


def two_spirals(n_per_class: int = 100, turns: float = 1.5, noise: float = 0.0,
                seed: int = 0, dtype="float64") -> Tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, one per class, inside the unit disc.

    Point ``i`` of spiral 0 sits at radius ``r = 0.1 + 0.9 * i / (n - 1)`` and angle
    ``2 * pi * turns * i / (n - 1)``; spiral 1 is spiral 0 rotated by 180 degrees.
    The rows alternate between the classes.

    Parameters
    ----------
    n_per_class : int >= 2
        Points per spiral.
    turns : float > 0
        Number of turns of each spiral (1.5 is learnable by a [2, 32, 32, 2] tanh
        network in a few hundred epochs; 3 is hard).
    noise : float >= 0
        Standard deviation of Gaussian noise added to the coordinates.
    seed : int
        Seeds the noise.
    dtype : {'float64', 'float32'}
        dtype of X.

    Returns
    -------
    X : ndarray of shape (2 * n_per_class, 2)
        Coordinates, within about [-1, 1] (plus noise).
    y : ndarray of shape (2 * n_per_class,), int64
        Class 0 or 1.
    """
    n = int(n_per_class)
    if n < 2:
        raise ValueError(f"n_per_class must be >= 2; got {n_per_class!r}")
    if not turns > 0:
        raise ValueError(f"turns must be > 0; got {turns!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise!r}")
    t = np.linspace(0.0, 1.0, n)
    r = 0.1 + 0.9 * t
    theta = 2.0 * math.pi * turns * t
    spiral = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    X = np.empty((2 * n, 2))
    X[0::2] = spiral
    X[1::2] = -spiral
    y = np.tile(np.array([0, 1], dtype=np.int64), n)
    if noise:
        X += np.random.default_rng(seed).normal(0.0, noise, size=X.shape)
    return X.astype(dtype), y


def one_hot(y: np.ndarray, n_classes: int, dtype="float64") -> np.ndarray:
    """One-hot rows for integer labels.

    Parameters
    ----------
    y : ndarray of shape (n,), ints in [0, n_classes)
    n_classes : int
    dtype : {'float64', 'float32'}

    Returns
    -------
    Y : ndarray of shape (n, n_classes)
        ``Y[i, y[i]] = 1``, zeros elsewhere.
    """
    y = np.asarray(y)
    Y = np.zeros((y.shape[0], n_classes), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y
