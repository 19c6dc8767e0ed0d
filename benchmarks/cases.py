"""The benchmark's cases (the networks bench.py times) and their data and initial weights.

A case is one network, batch size and dtype; every implementation of a case starts from the
same initial parameters (those of bpfast.Network(seed=0)) and trains on the same data.
"""
from dataclasses import dataclass

import numpy as np

import bpfast
from bpfast._layout import param_layout

LR = 0.01           # learning rate of the timed runs (parameters are reset before every block)
CHECK_LR = 0.1      # learning rate of the one-step correctness check


@dataclass
class Case:
    """One timed network: layer sizes, batch, dtype, activations and loss, data set size."""
    sizes: tuple
    batch: int
    dtype: str
    activation: str
    output_activation: str
    loss: str
    n_batches: int          # the data set of fit (and of the loops) has n_batches * batch rows
    reference: bool         # run the pure-Python reference backend

    @property
    def key(self):
        return "-".join(map(str, self.sizes))

    @property
    def name(self):
        return f"{self.key} b{self.batch} {'f32' if self.dtype == 'float32' else 'f64'}"

    @property
    def n_params(self):
        return param_layout(self.sizes)[1]

    @property
    def work(self):
        """Parameters x batch: the x axis of the plot."""
        return self.n_params * self.batch

    @property
    def flops(self):
        """Floating-point operations of the GEMMs of one update."""
        s = self.sizes
        return sum(2 * self.batch * a * b * (2 if l == 0 else 3)
                   for l, (a, b) in enumerate(zip(s[:-1], s[1:])))


CE = ("relu", "softmax", "cross_entropy")
RATE_SIZE = 1024            # the "large GEMM" of the targets' bound: RATE_SIZE^3, one thread
BIG_WORK = 784 * 128 * 64   # from 784-128-10 at batch 64 on: the GEMM-bound targets
CASES = [
    Case((2, 2, 1), 1, "float64", "sigmoid", "sigmoid", "mse", 256, True),
    Case((4, 16, 3), 16, "float64", "tanh", "identity", "mse", 64, True),
    Case((64, 64, 10), 32, "float32", *CE, 32, True),
    Case((64, 64, 10), 32, "float64", *CE, 32, True),
    Case((784, 128, 10), 64, "float32", *CE, 16, False),
    Case((784, 128, 10), 64, "float64", *CE, 16, False),
    Case((784, 1024, 1024, 10), 256, "float32", *CE, 8, False),
]


def select_cases(specs):
    """'all', '64-64-10' (every dtype) or '64-64-10:float32' / '64-64-10:f32'."""
    if not specs:
        return list(CASES)
    wanted = []
    for spec in ",".join(specs).split(","):
        spec = spec.strip()
        if not spec:
            continue
        if spec == "all":
            return list(CASES)
        key, _, dt = spec.partition(":")
        dt = {"f32": "float32", "f64": "float64"}.get(dt, dt)
        hits = [c for c in CASES if c.key == key and (not dt or c.dtype == dt)]
        if not hits:
            raise SystemExit(f"unknown case {spec!r}; known: "
                             + ", ".join(sorted({c.key for c in CASES})) + " (optionally :float32/:float64)")
        wanted += [c for c in hits if c not in wanted]
    return [c for c in CASES if c in wanted]


def make_data(case):
    """(X, Y, labels) of the case's data set; labels is None unless the output is softmax."""
    rng = np.random.default_rng(12345)
    n, d_in, d_out = case.n_batches * case.batch, case.sizes[0], case.sizes[-1]
    X = rng.normal(size=(n, d_in)).astype(case.dtype)
    if case.output_activation == "softmax":
        labels = rng.integers(0, d_out, size=n)
        Y = np.eye(d_out, dtype=case.dtype)[labels]
    else:
        labels = None
        Y = rng.random((n, d_out)).astype(case.dtype)
    return X, Y, labels


def batches(A, batch):
    """The rows of A in consecutive batches, each a contiguous copy."""
    return [np.ascontiguousarray(A[i:i + batch]) for i in range(0, A.shape[0], batch)]


def batch_pairs(data, batch):
    """[(x, y)] over the batches of data = (X, Y, ...)."""
    return list(zip(batches(data[0], batch), batches(data[1], batch)))


def initial_parameters(case):
    """([W], [b]) that every implementation of the case starts from (bpfast's, seed 0)."""
    net = bpfast.Network(list(case.sizes), case.activation, case.output_activation, case.loss,
                         dtype=case.dtype, seed=0)
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]
