#!/usr/bin/env python3
"""bpfast benchmark: time per weight update, side by side, in one run and one thread.

Implementations (the rows of the result table):

    bpfast fit            Network.fit over a data set of several batches, shuffle off;
                          wall time of the whole call / History.n_updates
    bpfast train_step     Network.train_step called from a Python loop
    reference             Network(backend="reference").train_step (pure Python; small cases)
    NumPy                 a hand-written NumPy step (forward, loss gradient, backward with
                          delta @ W.T, in-place SGD)
    PyTorch               nn.Sequential + torch.optim.SGD: zero_grad/forward/loss/backward/step
    scikit-learn          MLPClassifier/MLPRegressor(solver="sgd").partial_fit per batch,
                          where sklearn has the same network and loss
    FANN (C, per-sample fann_train)
                          the C library's fann_train on one row per call, in a small C program
                          compiled at run time against doublefann and timed inside it
                          (sigmoid hidden and output layers, MSE, batch 1, float64: 2-2-1)
    GEMM bound (3 products/layer at the large-GEMM rate)
                          the issue's bound, from 784-128-10 on: the flops of 3 products
                          per layer at the single-thread rate of a 1024^3 np.matmul
    GEMM lower bound      a stricter one: the matrix products one step needs (X@W, A.T@delta, delta@W.T;
                          2 for the first layer), each timed with NumPy matmul on the
                          real shapes; the sum of their medians

All timings are medians over repeated blocks; within a case the implementations are
interleaved (their order rotates every repetition) so that noise hits them alike.
Before a timed block, every implementation is reset to the same initial weights.

Run from the repository root:

    python benchmarks/bench.py                 # full run, writes RESULTS.md and results.png
    python benchmarks/bench.py --quick         # a few seconds, for tests/CI
    python benchmarks/bench.py --cases 64-64-10 784-128-10:float32

Only numpy, scipy and bpfast are required; torch, scikit-learn, matplotlib and
threadpoolctl are used when installed and skipped otherwise, and so is FANN (it needs
libfann-dev and a C compiler: `apt-get install libfann-dev`).
"""
import os

# One thread everywhere. These must be set before NumPy/OpenBLAS load; threadpoolctl
# (when installed) additionally limits the already-loaded pools below.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import atexit
import datetime
import gc
import itertools
import math
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import bpfast

try:
    import scipy
    from scipy.linalg import blas as scipy_blas
except ImportError:     # bpfast needs scipy, but keep the script importable
    scipy = scipy_blas = None

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

try:
    import torch
except ImportError:
    torch = None

try:
    import sklearn
    from sklearn.neural_network import MLPClassifier, MLPRegressor
except ImportError:
    sklearn = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LR = 0.01           # learning rate of the timed runs (parameters are reset before every block)
CHECK_LR = 0.1      # learning rate of the one-step correctness check

# The timer of the timed blocks. Process CPU time by default: every implementation runs on
# the calling thread only, so on an idle machine it equals wall time, and on a shared one it
# leaves out the time the process waits descheduled (--timer wall for wall-clock time).
TIMERS = {"cpu": time.process_time, "wall": time.perf_counter}
_timer = [TIMERS["cpu"]]


def clock():
    return _timer[0]()


FANN_STEP_US = 0.12     # FANN's per-sample step as the target quotes it: used only when FANN
                        # is not measured in the run (not installed, or no 2-2-1 case)


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
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
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

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
RATE_SIZE = 1024            # the "large GEMM" of the bound: RATE_SIZE^3, one thread
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
    return [np.ascontiguousarray(A[i:i + batch]) for i in range(0, A.shape[0], batch)]


def initial_parameters(case):
    net = bpfast.Network(list(case.sizes), case.activation, case.output_activation, case.loss,
                         dtype=case.dtype, seed=0)
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]


# ----------------------------------------------------------------------------- implementations
class Impl:
    """One implementation of one case. run(n) makes >= n updates and returns (seconds, updates)."""
    name = "?"
    reps_cap = None          # at most this many repetitions (the slow reference)
    inner_wall = None        # wall-clock seconds of the last run() as measured inside it, when
                             # the caller's clock would count more (FANN's process start)

    def reset(self):
        pass

    def run(self, n):
        raise NotImplementedError

    def weights(self):
        """[(W (n_in, n_out), b)] as NumPy arrays, for the correctness check."""
        raise NotImplementedError


class _Looped(Impl):
    """Calls self.step(x, y) over the batches from a Python loop."""

    def run(self, n):
        step = self.step
        it = itertools.islice(itertools.cycle(self.pairs), n)
        t0 = clock()
        for x, y in it:
            step(x, y)
        return clock() - t0, n


class BpfastFit(Impl):
    name = "bpfast fit"

    def __init__(self, case, data, init):
        self.case, (self.X, self.Y) = case, data[:2]
        self.net = bpfast.Network(list(case.sizes), case.activation, case.output_activation,
                                  case.loss, dtype=case.dtype, seed=0)
        self.init = init
        self.reset()

    def reset(self):
        for W, b, W0, b0 in zip(self.net.weights, self.net.biases, *self.init):
            W[...] = W0
            b[...] = b0

    def run(self, n):
        epochs = max(1, math.ceil(n / self.case.n_batches))
        t0 = clock()
        hist = self.net.fit(self.X, self.Y, epochs=epochs, batch_size=self.case.batch, lr=LR,
                            shuffle=False)
        return clock() - t0, hist.n_updates

    def weights(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.net.weights, self.net.biases)]


class BpfastStep(BpfastFit, _Looped):
    name = "bpfast train_step"
    backend = "cython"

    def __init__(self, case, data, init):
        self.case, self.init = case, init
        self.net = bpfast.Network(list(case.sizes), case.activation, case.output_activation,
                                  case.loss, dtype=case.dtype, backend=self.backend, seed=0)
        self.pairs = list(zip(batches(data[0], case.batch), batches(data[1], case.batch)))
        train_step = self.net.train_step
        self.step = lambda x, y, lr=LR: train_step(x, y, lr)
        self.reset()

    run = _Looped.run


class Reference(BpfastStep):
    name = "reference (pure Python)"
    backend = "reference"
    reps_cap = 3


class NumpyMLP(_Looped):
    """The hand-written NumPy step: what a competent NumPy user writes."""
    name = "NumPy"

    def __init__(self, case, data, init, lr=LR):
        self.case, self.init, self.lr = case, init, lr
        self.W = [W.copy() for W in init[0]]
        self.b = [b.copy() for b in init[1]]
        self.pairs = list(zip(batches(data[0], case.batch), batches(data[1], case.batch)))
        self.step = self.train_step

    def reset(self):
        for W, b, W0, b0 in zip(self.W, self.b, *self.init):
            W[...] = W0
            b[...] = b0

    @staticmethod
    def _activate(Z, name):
        """f(Z), computed in place."""
        if name == "relu":
            np.maximum(Z, 0, out=Z)
        elif name == "sigmoid":
            np.negative(Z, out=Z)
            np.exp(Z, out=Z)
            Z += 1
            np.reciprocal(Z, out=Z)
        elif name == "tanh":
            np.tanh(Z, out=Z)
        elif name == "softmax":
            Z -= Z.max(axis=1, keepdims=True)
            np.exp(Z, out=Z)
            Z /= Z.sum(axis=1, keepdims=True)
        return Z

    @staticmethod
    def _times_derivative(E, A, name):
        """E *= f'(Z), with f' written through the activation A = f(Z)."""
        if name == "relu":
            E *= A > 0
        elif name == "sigmoid":
            E *= A * (1 - A)
        elif name == "tanh":
            E *= 1 - A * A
        return E

    def train_step(self, X, Y):
        case, Ws, bs, lr = self.case, self.W, self.b, self.lr
        L = len(Ws)
        acts = [X]
        A = X
        for l in range(L):
            Z = A @ Ws[l]
            Z += bs[l]
            A = self._activate(Z, case.activation if l < L - 1 else case.output_activation)
            acts.append(A)
        delta = A - Y
        if case.loss == "cross_entropy":         # softmax output: dLoss/dZ = (A - Y) / batch
            delta *= 1.0 / X.shape[0]
        else:                                    # mse: 2 (A - Y) f'(Z) / (batch * n_out)
            delta *= 2.0 / delta.size
            self._times_derivative(delta, A, case.output_activation)
        for l in range(L - 1, -1, -1):
            W = Ws[l]
            if l:
                E = delta @ W.T                  # through the old W, before its update
            dW = acts[l].T @ delta
            dW *= lr
            W -= dW
            bs[l] -= lr * delta.sum(axis=0)
            if l:
                delta = self._times_derivative(E, acts[l], case.activation)

    def weights(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.W, self.b)]


class TorchMLP(_Looped):
    name = "PyTorch"
    ACT = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}

    def __init__(self, case, data, init, lr=LR):
        nn = torch.nn
        self.case, self.init = case, init
        tdt = torch.float32 if case.dtype == "float32" else torch.float64
        layers, L = [], len(case.sizes) - 1
        self.linears = []
        for l, (a, b) in enumerate(zip(case.sizes[:-1], case.sizes[1:])):
            lin = nn.Linear(a, b)
            self.linears.append(lin)
            layers.append(lin)
            act = case.activation if l < L - 1 else case.output_activation
            if act == "softmax":
                assert case.loss == "cross_entropy" and l == L - 1   # fused into CrossEntropyLoss
            elif act != "identity":
                layers.append(getattr(nn, self.ACT[act])())
        self.model = nn.Sequential(*layers).to(tdt)
        if case.loss == "cross_entropy":
            loss_fn = nn.CrossEntropyLoss()     # log-softmax + NLL on the logits, class targets
            targets = [torch.from_numpy(np.ascontiguousarray(y.argmax(axis=1))) for y in batches(data[1], case.batch)]
        elif case.loss == "mse":
            loss_fn = nn.MSELoss()
            targets = [torch.from_numpy(y) for y in batches(data[1], case.batch)]
        else:
            raise ValueError(case.loss)
        self.pairs = list(zip([torch.from_numpy(x) for x in batches(data[0], case.batch)], targets))
        self.reset()
        opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        model = self.model

        def step(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        self.step = step

    def reset(self):
        with torch.no_grad():
            for lin, W0, b0 in zip(self.linears, *self.init):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W0.T)))
                lin.bias.copy_(torch.from_numpy(b0))

    def weights(self):
        return [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy())
                for lin in self.linears]


def sklearn_reason(case):
    """None if scikit-learn has this network and loss, else why not."""
    if sklearn is None:
        return "scikit-learn not installed"
    if case.activation not in ("relu", "tanh", "sigmoid", "identity"):
        return f"no {case.activation} in sklearn"
    if case.output_activation == "softmax" and case.loss == "cross_entropy":
        return None
    if case.output_activation == "identity" and case.loss == "mse":
        return None
    return f"sklearn has no {case.output_activation} output with {case.loss} loss"


class SklearnMLP(_Looped):
    name = "scikit-learn"
    ACT = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh", "identity": "identity"}

    def __init__(self, case, data, init, lr=LR):
        self.case, self.init = case, init
        hidden = tuple(case.sizes[1:-1])
        kw = dict(hidden_layer_sizes=hidden, activation=self.ACT[case.activation], solver="sgd",
                  alpha=0.0, batch_size=case.batch, learning_rate="constant", momentum=0.0,
                  nesterovs_momentum=False, shuffle=False, early_stopping=False, random_state=0)
        xs = batches(data[0], case.batch)
        if case.output_activation == "softmax":
            # log-loss, mean over the batch: the same gradient as bpfast's cross_entropy
            self.model = MLPClassifier(learning_rate_init=lr, **kw)
            ys = [np.ascontiguousarray(y.argmax(axis=1)) for y in batches(data[1], case.batch)]
            self.model.partial_fit(xs[0], ys[0], classes=np.arange(case.sizes[-1]))
        else:
            # sklearn's squared error is mean over rows of sum over outputs / 2, so its
            # gradient is (A - Y) / batch; bpfast's mse is 2 (A - Y) / (batch * n_out):
            # lr * 2 / n_out makes the two updates identical.
            self.model = MLPRegressor(learning_rate_init=lr * 2.0 / case.sizes[-1], **kw)
            ys = batches(data[1], case.batch)
            self.model.partial_fit(xs[0], ys[0])
        self.pairs = list(zip(xs, ys))
        self.step = self.model.partial_fit
        self.reset()

    def reset(self):
        for W, b, W0, b0 in zip(self.model.coefs_, self.model.intercepts_, *self.init):
            W[...] = W0
            b[...] = b0

    def weights(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.model.coefs_, self.model.intercepts_)]


# FANN: the C library, driven by a small C program compiled at run time (skipped when
# there is no C compiler or no libfann-dev). It sets FANN's weights to the case's initial
# parameters, times n calls of fann_train (one row per call, cycling through the rows
# bench.py passes on stdin) with CLOCK_PROCESS_CPUTIME_ID and CLOCK_MONOTONIC, and prints
# both times and then every connection's weight, for the correctness check.
FANN_NAME = "FANN (C, per-sample fann_train)"
FANN_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <doublefann.h>

/* usage: fann_step n_steps lr n_rows n_layers size_0 ... size_last
   stdin (doubles): the weights in fann_get_connection_array's order, the rows of X, the rows of Y
   stdout: "cpu_seconds wall_seconds" of the n_steps calls, then "from to weight" per connection */

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double *read_doubles(size_t n)
{
    double *p = malloc(n * sizeof *p);
    if (p == NULL || fread(p, sizeof *p, n, stdin) != n) {
        fprintf(stderr, "fann_step: expected %zu doubles on stdin\n", n);
        exit(2);
    }
    return p;
}

int main(int argc, char **argv)
{
    unsigned sizes[64], n_layers, k;
    long n_steps, n_rows, i, r;
    float lr;
    if (argc < 5 || (n_layers = atoi(argv[4])) < 2 || n_layers > 64 || argc != 5 + (int)n_layers) {
        fprintf(stderr, "usage: fann_step n_steps lr n_rows n_layers size_0 ... size_last\n");
        return 2;
    }
    n_steps = atol(argv[1]);
    lr = (float)atof(argv[2]);          /* FANN keeps its learning rate as a float */
    n_rows = atol(argv[3]);
    for (k = 0; k < n_layers; k++)
        sizes[k] = atoi(argv[5 + k]);

    struct fann *ann = fann_create_standard_array(n_layers, sizes);
    /* FANN_SIGMOID is 1/(1+exp(-2 s x)); steepness s = 0.5 makes it the logistic function */
    fann_set_activation_function_hidden(ann, FANN_SIGMOID);
    fann_set_activation_function_output(ann, FANN_SIGMOID);
    fann_set_activation_steepness_hidden(ann, 0.5);
    fann_set_activation_steepness_output(ann, 0.5);
    /* the default FANN_ERRORFUNC_TANH steps along log((1 + d) / (1 - d)) = 2 atanh(d) for
       d = t - y instead of d: not the gradient of MSE */
    fann_set_train_error_function(ann, FANN_ERRORFUNC_LINEAR);
    fann_set_learning_rate(ann, lr);
    fann_set_learning_momentum(ann, 0);

    unsigned n_con = fann_get_total_connections(ann);
    struct fann_connection *con = malloc(n_con * sizeof *con);
    double *w = read_doubles(n_con);
    fann_get_connection_array(ann, con);
    for (k = 0; k < n_con; k++)
        con[k].weight = w[k];
    fann_set_weight_array(ann, con, n_con);
    unsigned n_in = sizes[0], n_out = sizes[n_layers - 1];
    double *X = read_doubles((size_t)n_rows * n_in), *Y = read_doubles((size_t)n_rows * n_out);

    double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), w0 = seconds(CLOCK_MONOTONIC);
    for (i = 0, r = 0; i < n_steps; i++) {
        fann_train(ann, X + r * n_in, Y + r * n_out);
        if (++r == n_rows)
            r = 0;
    }
    double w1 = seconds(CLOCK_MONOTONIC), c1 = seconds(CLOCK_PROCESS_CPUTIME_ID);

    printf("%.9e %.9e\n", c1 - c0, w1 - w0);
    fann_get_connection_array(ann, con);
    for (k = 0; k < n_con; k++)
        printf("%u %u %.17g\n", con[k].from_neuron, con[k].to_neuron, con[k].weight);
    fann_destroy(ann);
    return 0;
}
"""
_fann = {}      # the compiled program: compiled once per run, on first use


def fann_program():
    """(path of the compiled FANN program, None), or (None, why there is none)."""
    if not _fann:
        _fann.update(exe=None, why=None, cmd=None)
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            _fann["why"] = "no C compiler (cc/gcc) found"
            return None, _fann["why"]
        tmp = tempfile.mkdtemp(prefix="bpfast_bench_fann_")
        atexit.register(shutil.rmtree, tmp, True)
        src, exe = os.path.join(tmp, "fann_step.c"), os.path.join(tmp, "fann_step")
        with open(src, "w") as f:
            f.write(FANN_SOURCE)
        cmd = [cc, "-O2", "-o", exe, src, "-ldoublefann", "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            err = proc.stderr.replace(src, "fann_step.c").strip().splitlines() if proc.returncode else None
        except (OSError, subprocess.SubprocessError) as e:
            err = [str(e)]
        if err is None:
            _fann.update(exe=exe, cmd=shlex.join(os.path.basename(a) for a in cmd))
        else:
            first = next((line for line in err if "error" in line or "cannot find" in line),
                         err[0] if err else "no message")
            _fann["why"] = f"compiling against doublefann failed (is libfann-dev installed?): {first}"
    return _fann["exe"], _fann["why"]


def fann_reason(case):
    """None if FANN's fann_train makes this case's step, else why not."""
    if (case.activation, case.output_activation, case.loss) != ("sigmoid", "sigmoid", "mse"):
        return "set up only for sigmoid hidden and output layers with MSE loss"
    if case.batch != 1:
        return "fann_train steps on one sample: batch 1 only"
    if case.dtype != "float64":
        return "doublefann computes in float64: float64 only"
    return fann_program()[1]


def fann_connections(sizes):
    """(from neuron, to neuron, layer, row, column) per connection, in FANN's order.

    FANN numbers the neurons layer after layer, each layer followed by its bias neuron
    (value 1), and stores each neuron's incoming connections together: from the previous
    layer's neurons in order, bias last. Row == n_in stands for the bias b[column];
    FannMLP checks this against the connections the program prints.
    """
    first = list(itertools.accumulate((s + 1 for s in sizes), initial=0))
    return [(first[l] + i, first[l + 1] + j, l, i, j)
            for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
            for j in range(b) for i in range(a + 1)]


class FannMLP(Impl):
    """FANN's fann_train, one row per call, timed inside the compiled program.

    Each run() starts the program from the initial weights, so reset() has nothing to do;
    the process start is outside the timed loop.
    """
    name = FANN_NAME

    def __init__(self, case, data, init, lr=LR):
        self.case = case
        self.exe = fann_program()[0]
        # bpfast's mse for one row is sum (y - t)^2 / (batch * n_out): its gradient is
        # 2 (y - t) / (batch * n_out). fann_train steps by lr (t - y) f'(z), without the 2.
        self.lr = 2.0 * lr / (case.batch * case.sizes[-1])
        self.layout = fann_connections(case.sizes)
        Ws, bs = init
        start = [Ws[l][i, j] if i < Ws[l].shape[0] else bs[l][j] for _, _, l, i, j in self.layout]
        X, Y = data[:2]
        self.rows = X.shape[0]
        self.stdin = b"".join(np.ascontiguousarray(a, np.float64).tobytes()
                              for a in (np.array(start), X, Y))
        self.final = None       # the weights after the last run, in FANN's order

    def run(self, n):
        sizes = self.case.sizes
        proc = subprocess.run([self.exe, str(n), repr(self.lr), str(self.rows), str(len(sizes)),
                               *map(str, sizes)], input=self.stdin, capture_output=True, timeout=600)
        if proc.returncode:
            raise RuntimeError(f"the FANN program failed: {proc.stderr.decode(errors='replace')}")
        head, *lines = proc.stdout.decode().split("\n")
        cpu, wall = map(float, head.split())
        conns = [line.split() for line in lines if line]
        if [(int(f), int(t)) for f, t, _ in conns] != [c[:2] for c in self.layout]:
            raise RuntimeError("FANN's connections are not in the order fann_connections() assumes")
        self.final = [float(w) for _, _, w in conns]
        self.inner_wall = wall
        return (wall if _timer[0] is TIMERS["wall"] else cpu), n

    def weights(self):
        Ws = [np.empty((a, b)) for a, b in zip(self.case.sizes[:-1], self.case.sizes[1:])]
        bs = [np.empty(b) for b in self.case.sizes[1:]]
        for (_, _, l, i, j), w in zip(self.layout, self.final):
            if i < Ws[l].shape[0]:
                Ws[l][i, j] = w
            else:
                bs[l][j] = w
        return list(zip(Ws, bs))


class RateBound(Impl):
    """The issue's bound: 3 products per layer at the rate of one large single-thread GEMM.

    run() times RATE_SIZE^3 products and converts them into "updates" by flops, so that
    its median is the time one update would take at that rate; timed interleaved with
    the others, so the same noise hits it.
    """
    name = "GEMM bound (3 products/layer at the large-GEMM rate)"

    def __init__(self, case):
        rng = np.random.default_rng(2)
        dt, S = np.dtype(case.dtype), RATE_SIZE
        self.A, self.B = (rng.normal(size=(S, S)).astype(dt) for _ in range(2))
        self.C = np.empty((S, S), dt)
        step_flops = sum(2 * case.batch * a * b * 3 for a, b in zip(case.sizes[:-1], case.sizes[1:]))
        self.updates_per_product = 2 * S ** 3 / step_flops

    def run(self, n):
        k = max(1, math.ceil(n / self.updates_per_product))
        t0 = clock()
        for _ in range(k):
            np.matmul(self.A, self.B, out=self.C)
        return clock() - t0, k * self.updates_per_product


class Gemm(Impl):
    """The matrix products of one step, each timed on its own; the bound is the sum of medians."""
    name = "GEMM lower bound"

    def __init__(self, case, use_scipy=False):
        rng = np.random.default_rng(1)
        dt, B = np.dtype(case.dtype), case.batch
        self.products = []      # (label, callable)
        self.samples = {}
        for l, (a, b) in enumerate(zip(case.sizes[:-1], case.sizes[1:])):
            A = rng.normal(size=(B, a)).astype(dt)
            W = rng.normal(size=(a, b)).astype(dt)
            D = rng.normal(size=(B, b)).astype(dt)
            Z, G, E = np.empty((B, b), dt), np.empty((a, b), dt), np.empty((B, a), dt)
            if not use_scipy:
                prods = [(f"L{l} X@W", lambda A=A, W=W, Z=Z: np.matmul(A, W, out=Z)),
                         (f"L{l} A.T@delta", lambda A=A, D=D, G=G: np.matmul(A.T, D, out=G))]
                if l:
                    prods.append((f"L{l} delta@W.T", lambda D=D, W=W, E=E: np.matmul(D, W.T, out=E)))
            else:
                # Fortran BLAS on row-major data: C = X @ Y  <=>  C.T = Y.T @ X.T, and the
                # .T of a C-contiguous array is Fortran-contiguous, so nothing is copied.
                gemm = scipy_blas.get_blas_funcs("gemm", dtype=dt)
                prods = [(f"L{l} X@W", lambda A=A, W=W, Z=Z: gemm(1.0, W.T, A.T, 0.0, Z.T, overwrite_c=1)),
                         (f"L{l} A.T@delta", lambda A=A, D=D, G=G: gemm(1.0, D.T, A.T, 0.0, G.T, trans_b=1, overwrite_c=1))]
                if l:
                    prods.append((f"L{l} delta@W.T", lambda D=D, W=W, E=E: gemm(1.0, W.T, D.T, 0.0, E.T, trans_a=1, overwrite_c=1)))
                # the SciPy calls must compute what NumPy computes, in the given buffers
                for label, f in prods:
                    f()
                tol = 1e-3 if dt == np.float32 else 1e-10
                for got, want in ((Z, A @ W), (G, A.T @ D)) + (((E, D @ W.T),) if l else ()):
                    assert np.allclose(got, want, rtol=tol, atol=tol * np.abs(want).max()), "scipy gemm layout"
            self.products += prods
        for label, _ in self.products:
            self.samples[label] = []
        if use_scipy:
            self.name = "GEMM lower bound (SciPy BLAS)"

    def run(self, n):
        total = 0.0
        for label, f in self.products:
            t0 = clock()
            for _ in range(n):
                f()
            t = clock() - t0
            self.samples[label].append(t / n)
            total += t
        return total, n

    def clear(self):
        for v in self.samples.values():
            v.clear()

    def bound(self):
        return sum(statistics.median(v) for v in self.samples.values())


# ----------------------------------------------------------------------------- correctness
def rel_err(got, want):
    num = math.sqrt(sum(float(np.sum((np.asarray(g, np.float64) - w) ** 2)) for g, w in zip(got, want)))
    den = math.sqrt(sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for w in want))
    return num / den if den else num


def check_case(case, data, init, with_reference):
    """One step of CHECK_LR on the first batch from identical initial weights: every
    implementation must land on the weights bpfast's train_step lands on.

    Returns a list of (implementation, weights rel. error, update rel. error, ok).
    The update check (W_after - W_before) is the sharp one: the weights alone would
    agree even if an implementation got the gradient wrong by a small factor.
    """
    x, y = data[0][:case.batch], data[1][:case.batch]
    sub = (x, y, None if data[2] is None else data[2][:case.batch])
    one = Case(case.sizes, case.batch, case.dtype, case.activation, case.output_activation,
               case.loss, 1, case.reference)
    before = [np.asarray(a, np.float64) for W, b in zip(*init) for a in (W, b)]

    def flat(ws):
        return [np.asarray(a, np.float64) for W, b in ws for a in (W, b)]

    bp = BpfastStep(one, sub, init)
    bp.step(x, y, CHECK_LR)
    want = flat(bp.weights())
    want_upd = [w - b0 for w, b0 in zip(want, before)]

    tol_w = 1e-6
    tol_u = 1e-6 if case.dtype == "float64" else 1e-4   # float32: W_after - W_before cancels
    results = []

    def compare(name, ws):
        got = flat(ws)
        ew = rel_err(got, want)
        eu = rel_err([g - b0 for g, b0 in zip(got, before)], want_upd)
        results.append((name, ew, eu, ew <= tol_w and eu <= tol_u))

    fit = BpfastFit(one, sub, init)
    fit.net.fit(x, y, epochs=1, batch_size=case.batch, lr=CHECK_LR, shuffle=False)
    compare("bpfast fit (1 epoch of 1 batch)", fit.weights())
    npy = NumpyMLP(one, sub, init, lr=CHECK_LR)
    npy.train_step(x, y)
    compare("NumPy", npy.weights())
    if torch is not None:
        tm = TorchMLP(one, sub, init, lr=CHECK_LR)
        tm.step(*tm.pairs[0])
        compare("PyTorch", tm.weights())
    if sklearn_reason(case) is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = SklearnMLP(one, sub, init, lr=CHECK_LR)   # its first partial_fit initialises
            sk.step(*sk.pairs[0])                          # ... and this one is from init
        compare("scikit-learn", sk.weights())
    if fann_reason(case) is None:
        # FANN keeps its learning rate as a C float: 2 * 0.1 becomes 0.2000000030, so its
        # update is larger than bpfast's by that rounding, 1.5e-8 relative. Everything else
        # (doublefann) is float64: with bpfast's lr set to float32(0.2) / 2 the updates agree
        # to 6e-16. FANN also clips the input of the sigmoid's derivative to [0.01, 0.99]
        # (fann_activation_derived); 2-2-1's hidden and output values stay within
        # [0.27, 0.79] from the initial weights, so the clip does not act here.
        fa = FannMLP(one, sub, init, lr=CHECK_LR)
        fa.run(1)
        compare(FANN_NAME, fa.weights())
    if with_reference:
        ref = Reference(one, sub, init)
        ref.step(x, y, CHECK_LR)
        compare("reference (pure Python)", ref.weights())
    return results


# ----------------------------------------------------------------------------- timing
def calibrate(impl, block):
    """Updates per block so that one block takes about `block` seconds."""
    n = 1
    while True:
        t, done = impl.run(n)
        impl.reset()
        if t >= block / 4 or (impl.reps_cap and t >= block / 20):
            return max(1, math.ceil(done * block / max(t, 1e-9)))
        n = done * (4 if t < block / 40 else 2)


def measure_case(case, args, log):
    data = make_data(case)
    init = initial_parameters(case)
    impls, skipped = [], {}
    impls.append(BpfastFit(case, data, init))
    impls.append(BpfastStep(case, data, init))
    if case.reference:
        impls.append(Reference(case, data, init))
    else:
        skipped["reference (pure Python)"] = "too slow in pure Python at this size"
    impls.append(NumpyMLP(case, data, init))
    if torch is not None:
        impls.append(TorchMLP(case, data, init))
    else:
        skipped["PyTorch"] = "torch not installed"
    reason = sklearn_reason(case)
    if reason is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            impls.append(SklearnMLP(case, data, init))
    else:
        skipped["scikit-learn"] = reason
    reason = fann_reason(case)
    if reason is None:
        impls.append(FannMLP(case, data, init))
    else:
        skipped[FANN_NAME] = reason
    if case.work >= BIG_WORK:
        impls.append(RateBound(case))
    gemm = Gemm(case)
    impls.append(gemm)
    gemm_scipy = Gemm(case, use_scipy=True) if scipy_blas is not None else None
    if gemm_scipy is not None:
        impls.append(gemm_scipy)

    sizes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for impl in impls:          # warm-up and block length
            impl.run(2)
            impl.reset()
            block = args.block if not impl.reps_cap else args.block / 2
            sizes[impl.name] = calibrate(impl, block)
        gemm.clear()
        if gemm_scipy is not None:
            gemm_scipy.clear()

        samples = {impl.name: [] for impl in impls}
        walls = {impl.name: [] for impl in impls}      # wall-clock time of the same blocks
        gc.collect()
        gc.freeze()         # torch & co. leave ~1e6 objects: keep gc.collect() below cheap
        for rep in range(args.repeats):
            k = rep % len(impls)
            for impl in impls[k:] + impls[:k]:
                if impl.reps_cap and rep >= (1 if args.quick else impl.reps_cap):
                    continue
                impl.reset()
                gc.collect()
                gc.disable()
                try:
                    w0 = time.perf_counter()
                    t, done = impl.run(sizes[impl.name])
                    w = time.perf_counter() - w0
                    if impl.inner_wall is not None:
                        w = impl.inner_wall
                finally:
                    gc.enable()
                samples[impl.name].append(t / done)
                walls[impl.name].append(w / done)
            log(f"  rep {rep + 1}/{args.repeats}")
        gc.unfreeze()

    medians = {name: statistics.median(v) for name, v in samples.items()}
    medians[gemm.name] = gemm.bound()
    if gemm_scipy is not None:
        medians[gemm_scipy.name] = gemm_scipy.bound()
    return dict(medians=medians, samples=samples, walls=walls, block_updates=sizes, skipped=skipped)


# ----------------------------------------------------------------------------- reporting
ROWS = ["bpfast fit", "bpfast train_step", "reference (pure Python)", "NumPy", "PyTorch",
        "scikit-learn", FANN_NAME, RateBound.name, "GEMM lower bound", "GEMM lower bound (SciPy BLAS)"]


def fmt_us(sec):
    us = sec * 1e6
    if us >= 1e5:
        return f"{us:,.0f}"
    for limit, digits in ((100, 1), (10, 2), (1, 3)):
        if us >= limit:
            return f"{us:.{digits}f}"
    return f"{us:.4f}"


def fmt_ratio(r):
    if r >= 1000:
        return f"{r:,.0f}x"
    if r >= 100:
        return f"{r:.0f}x"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def tables(cases, results):
    head = "| implementation | " + " | ".join(c.name for c in cases) + " |"
    sep = "|---|" + "---:|" * len(cases)
    meta = ["| params x batch | " + " | ".join(f"{c.work:,}" for c in cases) + " |",
            "| fit data set (rows) | " + " | ".join(f"{c.n_batches * c.batch:,}" for c in cases) + " |",
            "| activations / loss | " + " | ".join(f"{c.activation}/{c.output_activation}/{c.loss}" for c in cases) + " |"]
    med = [head, sep] + meta
    for row in ROWS:
        cells = []
        for c in cases:
            r = results[c.name]
            cells.append(fmt_us(r["medians"][row]) if row in r["medians"] else "—")
        if any(x != "—" for x in cells):
            med.append(f"| {row} | " + " | ".join(cells) + " |")
    ratio = [head.replace("implementation", "ratio"), sep]
    for row, label in (("bpfast train_step", "train_step / fit"),
                       ("reference (pure Python)", "reference / fit"),
                       ("NumPy", "NumPy / fit"), ("PyTorch", "PyTorch / fit"),
                       ("scikit-learn", "scikit-learn / fit"), (FANN_NAME, "FANN / fit")):
        cells = []
        for c in cases:
            m = results[c.name]["medians"]
            cells.append(fmt_ratio(m[row] / m["bpfast fit"]) if row in m else "—")
        if any(x != "—" for x in cells):
            ratio.append(f"| {label} | " + " | ".join(cells) + " |")
    for g, label in ((RateBound.name, "fit / GEMM bound (3 products/layer)"),
                     ("GEMM lower bound", "fit / GEMM bound"),
                     ("GEMM lower bound (SciPy BLAS)", "fit / GEMM bound (SciPy BLAS)")):
        cells = []
        for c in cases:
            m = results[c.name]["medians"]
            cells.append(fmt_ratio(m["bpfast fit"] / m[g]) if g in m else "—")
        if any(x != "—" for x in cells):
            ratio.append(f"| {label} | " + " | ".join(cells) + " |")
    gf = []
    for c in cases:
        m = results[c.name]["medians"]
        gf.append(f"{c.flops / m['bpfast fit'] / 1e9:.1f} / {c.flops / m['GEMM lower bound'] / 1e9:.1f}")
    ratio.append("| GFLOP/s fit / GEMM bound | " + " | ".join(gf) + " |")
    return "\n".join(med), "\n".join(ratio)


def raw_table(cases, results):
    lines = ["| case | implementation | updates per block | blocks | min µs | median µs | max µs "
             "| wall-clock median µs |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        r = results[c.name]
        for name, v in r["samples"].items():
            lines.append(f"| {c.name} | {name} | {r['block_updates'][name]:,} | {len(v)} | "
                         f"{fmt_us(min(v))} | {fmt_us(statistics.median(v))} | {fmt_us(max(v))} "
                         f"| {fmt_us(statistics.median(r['walls'][name]))} |")
    return "\n".join(lines)


def verdict(ok, value=None, threshold=None):
    """met/missed, flagged when the value is within 5% of its threshold."""
    text = "**met**" if ok else "**missed**"
    if value is not None and abs(value / threshold - 1) < 0.05:
        text += " (within 5% of the threshold: run-to-run noise can flip it)"
    return text


def targets(cases, results):
    by = {(c.key, c.dtype): results[c.name]["medians"] for c in cases}
    out = []

    m = by.get(("2-2-1", "float64"))
    if m:
        fit, ts = m["bpfast fit"], m["bpfast train_step"]
        if FANN_NAME in m:
            fann = m[FANN_NAME]
            out.append(f"- 2-2-1 batch 1, `fit` per update vs FANN's per-sample step (`fann_train`) "
                       f"measured in this run: {fmt_us(fit)} µs vs {fmt_us(fann)} µs = "
                       f"{fit / fann:.2f}x FANN's → {verdict(fit <= fann, fit, fann)}.")
        else:
            why = next(results[c.name]["skipped"][FANN_NAME] for c in cases
                       if (c.key, c.dtype) == ("2-2-1", "float64"))
            fann = FANN_STEP_US * 1e-6
            out.append(f"- 2-2-1 batch 1, `fit` per update vs FANN's ~{FANN_STEP_US} µs per-sample step "
                       f"(a fixed figure; FANN not measured in this run: {why}): {fmt_us(fit)} µs = "
                       f"{fit / fann:.2f}x FANN's → {verdict(fit <= fann, fit, fann)}.")
        out.append(f"- 2-2-1 batch 1, `train_step` from Python under 3 µs: {ts * 1e6:.2f} µs → "
                   f"{verdict(ts * 1e6 < 3)}.")
    else:
        out.append("- 2-2-1 targets: not measured in this run.")
    for dt in ("float32", "float64"):
        m = by.get(("64-64-10", dt))
        if not m:
            continue
        fit = m["bpfast fit"]
        r_np = m["NumPy"] / fit
        out.append(f"- 64-64-10 b32 {dt}, fit ≥3x faster than NumPy: NumPy/fit = {r_np:.2f}x → {verdict(r_np >= 3, r_np, 3)}.")
        if "PyTorch" in m:
            r_t = m["PyTorch"] / fit
            out.append(f"- 64-64-10 b32 {dt}, fit ≥10x faster than PyTorch: PyTorch/fit = {r_t:.1f}x → {verdict(r_t >= 10, r_t, 10)}.")
        else:
            out.append(f"- 64-64-10 b32 {dt}, fit ≥10x faster than PyTorch: not measured (torch not installed).")
        if "reference (pure Python)" in m:
            r_r = m["reference (pure Python)"] / fit
            out.append(f"- 64-64-10 b32 {dt}, reference ≥1000x slower than fit: reference/fit = {r_r:,.0f}x → {verdict(r_r >= 1000, r_r, 1000)}.")
    big = [c for c in cases if c.work >= BIG_WORK]
    for c in big:
        m = results[c.name]["medians"]
        fit = m["bpfast fit"]
        r_i = fit / m[RateBound.name]
        r_g = fit / m["GEMM lower bound"]
        r_np = m["NumPy"] / fit
        extra = ""
        if "GEMM lower bound (SciPy BLAS)" in m:
            extra = f", the SciPy-BLAS one {fit / m['GEMM lower bound (SciPy BLAS)']:.3f}x"
        out.append(f"- {c.name}, fit within 1.15x of the GEMM lower bound (the issue's: 3 products per "
                   f"layer at the {RATE_SIZE}³ GEMM rate): fit/bound = {r_i:.3f}x → {verdict(r_i <= 1.15, r_i, 1.15)}. "
                   f"Against the stricter bound of the products a step needs, each timed on its "
                   f"own shape: {r_g:.3f}x ({verdict(r_g <= 1.15, r_g, 1.15)}{extra}). "
                   f"Never slower than NumPy: NumPy/fit = {r_np:.2f}x → {verdict(r_np >= 1, r_np, 1)}.")
    if not any(k == "64-64-10" for k, _ in by):
        out.append("- 64-64-10 targets: not measured in this run.")
    if not big:
        out.append("- 784-128-10 and larger: not measured in this run.")
    return "\n".join(out)


def machine_info():
    info = []
    cpu, extra = "unknown", ""
    try:
        fields = {}
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break               # the first processor is enough
                k, _, v = line.partition(":")
                fields[k.strip()] = v.strip()
        cpu = fields.get("model name", cpu)
        flags = set(fields.get("flags", "").split())
        simd = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16") if x in flags]
        extra = f", cache {fields.get('cache size', '?')}, SIMD: {' '.join(simd) or 'none of avx2/avx512'}"
    except OSError:
        cpu = platform.processor() or "unknown"
    try:
        n_avail = len(os.sched_getaffinity(0))
    except AttributeError:
        n_avail = os.cpu_count()
    info.append(f"- CPU: {cpu}{extra} ({os.cpu_count()} logical CPUs, {n_avail} available to this process); "
                f"load average at start {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    info.append(f"- OS: {platform.platform()}; Python {platform.python_version()}")
    vers = [f"bpfast {bpfast.__version__}", f"numpy {np.__version__}",
            f"scipy {scipy.__version__ if scipy else 'not installed'}",
            f"torch {torch.__version__ if torch else 'not installed'}",
            f"scikit-learn {sklearn.__version__ if sklearn else 'not installed'}"]
    try:
        import threadpoolctl
        vers.append(f"threadpoolctl {threadpoolctl.__version__}")
    except ImportError:
        vers.append("threadpoolctl not installed")
    info.append("- Versions: " + ", ".join(vers))
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        if rev:
            info.append(f"- bpfast source: git {rev}")
    except (OSError, subprocess.SubprocessError):
        pass
    if threadpool_info is not None:
        for p in threadpool_info():
            if p.get("user_api") != "blas":
                continue
            path = p.get("filepath", "")
            owner = "NumPy" if "numpy" in path else "SciPy (and bpfast's kernels, via scipy.linalg.cython_blas)" if "scipy" in path else "?"
            info.append(f"- BLAS for {owner}: {p.get('internal_api')} {p.get('version')}, "
                        f"architecture {p.get('architecture')}, {p.get('threading_layer')} threading, "
                        f"threads in this run: {p.get('num_threads')} ({os.path.basename(path)})")
    else:
        blas = "?"
        try:
            cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = f"{cfg.get('name')} {cfg.get('version')}"
        except Exception:       # older NumPy: no dict mode
            pass
        info.append(f"- BLAS: NumPy built with {blas}; threadpoolctl not installed, so the loaded "
                    "libraries are not listed (threads limited through OMP/OPENBLAS/MKL_NUM_THREADS=1)")
    if torch is not None:
        info.append(f"- torch threads: {torch.get_num_threads()} intra-op, "
                    f"{torch.get_num_interop_threads()} inter-op")
    env = {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    info.append("- Thread environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(info)


def plot(cases, results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    style = {"bpfast fit": ("tab:red", "o", "-"), "bpfast train_step": ("tab:orange", "s", "-"),
             "reference (pure Python)": ("tab:brown", "x", ":"), "NumPy": ("tab:blue", "^", "-"),
             "PyTorch": ("tab:purple", "D", "-"), "scikit-learn": ("tab:green", "v", "-"),
             FANN_NAME: ("tab:gray", "P", "-"),
             "GEMM lower bound": ("black", "", "--")}
    dtypes = [dt for dt in ("float64", "float32") if any(c.dtype == dt for c in cases)]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 5.2), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        cs = sorted((c for c in cases if c.dtype == dt), key=lambda c: c.work)
        for name, (color, marker, ls) in style.items():
            pts = [(c.work, results[c.name]["medians"][name] * 1e6) for c in cs
                   if name in results[c.name]["medians"]]
            if pts:
                ax.plot(*zip(*pts), color=color, marker=marker, linestyle=ls, label=name, lw=1.6, ms=6)
        for c in cs:
            ax.annotate(c.name.rsplit(" ", 1)[0], (c.work, results[c.name]["medians"]["bpfast fit"] * 1e6),
                        textcoords="offset points", xytext=(4, -12), fontsize=8, color="tab:red")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(x=0.12, y=0.08)
        ax.set_xlabel("network size: parameters × batch")
        ax.set_ylabel("time per weight update (µs, median)")
        ax.set_title(f"{dt}, one thread")
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.12)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("bpfast benchmark: time per SGD update vs network size (log-log)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- main
def digits_section(repeats):
    """examples/digits.py's output: bpfast.sklearn vs scikit-learn's MLP on the digits."""
    script = os.path.join(ROOT, "examples", "digits.py")
    if not os.path.exists(script):
        return "(examples/digits.py not found)"
    run = subprocess.run([sys.executable, script, "--repeats", str(repeats)],
                         capture_output=True, text=True, timeout=600)
    text = "\n".join("    " + line for line in (run.stdout + run.stderr).strip().splitlines())
    acc = dict(re.findall(r"^(bpfast|scikit-learn)\s+test accuracy ([\d.]+)%", run.stdout, re.M))
    ratio = re.search(r"fit time\): ([\d.]+)x", run.stdout)
    if len(acc) == 2 and ratio:
        gap = float(acc["scikit-learn"]) - float(acc["bpfast"])
        r = float(ratio.group(1))
        text += (f"\n\nTargets: accuracy within one point of scikit-learn's: {gap:+.2f} points → "
                 f"{verdict(abs(gap) <= 1)}; fit at least 10x faster: {r:.1f}x → "
                 f"{verdict(r >= 10, r, 10)}.")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few, short repetitions (tests/CI; < 60 s)")
    p.add_argument("--cases", nargs="*", metavar="CASE",
                   help="cases to run, e.g. 2-2-1 64-64-10 784-128-10:float32 (default: all); "
                        "known: " + ", ".join(dict.fromkeys(c.key for c in CASES)))
    p.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"), help="markdown report")
    p.add_argument("--plot", default=os.path.join(HERE, "results.png"), help="PNG plot (needs matplotlib)")
    p.add_argument("--repeats", type=int, help="timed blocks per implementation (default 11; quick 3)")
    p.add_argument("--block", type=float, help="seconds per timed block (default 0.2; quick 0.01)")
    p.add_argument("--timer", choices=sorted(TIMERS), default="cpu",
                   help="cpu: process CPU time (default; robust on a shared machine); wall: perf_counter")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 11)
    _timer[0] = TIMERS[args.timer]
    args.block = args.block or (0.01 if args.quick else 0.2)
    cases = select_cases(args.cases)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    limiter = threadpool_limits(1) if threadpool_limits is not None else None
    if torch is not None:
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    started = time.time()
    info = machine_info()
    np.seterr(all="ignore")

    checks, results = {}, {}
    for c in cases:
        log(f"[{c.name}] correctness check")
        checks[c.name] = check_case(c, make_data(c), initial_parameters(c), c.reference)
        for name, ew, eu, ok in checks[c.name]:
            if not ok:
                log(f"  CHECK FAILED: {name}: weights rel. err {ew:.2e}, update rel. err {eu:.2e}")
        log(f"[{c.name}] timing")
        results[c.name] = measure_case(c, args, log)
    full_run = not args.quick and not args.cases
    digits = digits_section(5) if full_run else None
    elapsed = time.time() - started

    med_table, ratio_table = tables(cases, results)
    tgt = targets(cases, results)
    check_lines = ["| case | implementation | weights rel. err | update rel. err | agrees |",
                   "|---|---|---:|---:|---|"]
    all_ok = True
    for c in cases:
        for name, ew, eu, ok in checks[c.name]:
            all_ok &= ok
            check_lines.append(f"| {c.name} | {name} | {ew:.1e} | {eu:.1e} | {'yes' if ok else '**NO**'} |")
    skipped = sorted({f"{name}: {why}" for c in cases for name, why in results[c.name]["skipped"].items()})

    script = os.path.relpath(os.path.abspath(__file__), ROOT)
    unset = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    cmd = "python " + shlex.join([script] + (sys.argv[1:] if argv is None else list(argv)))
    plotted = plot(cases, results, args.plot)

    report = f"""# bpfast benchmark results

Time per weight update (one SGD step on one batch), **median** over repeated timed
blocks, in µs of {'process CPU time' if args.timer == 'cpu' else 'wall-clock time'}; one thread everywhere (threadpoolctl
`threadpool_limits(1)`, `torch.set_num_threads(1)`). Produced on
{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; load average at the end
{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes were {'competing for' if os.getloadavg()[0] > 1.2 else 'mostly quiet on'} the CPUs).

Reproduce (from the repository root{', with ' + ' and '.join(unset) + ' unset' if unset else ''}):

    {cmd}

## Machine

{info}

## Median time per update (µs)

{med_table}

## Ratios (median / median)

{ratio_table}

## Targets

{tgt}

On a shared machine the medians move by several percent from run to run (see the min/max
spread in the raw table): a verdict within ~5% of its threshold is not conclusive.

{'## Digits: bpfast.sklearn against scikit-learn' + chr(10) + chr(10) + 'scikit-learn' + chr(39) + 's bundled digits at the same settings (`python examples/digits.py --repeats 5`, one BLAS thread as above; fit time is the median of 5 fits each, the two estimators taking turns):' + chr(10) + chr(10) + digits + chr(10) + chr(10) if digits else ''}## How it was measured

- **bpfast fit**: `Network.fit(X, Y, epochs=k, batch_size=B, lr={LR}, shuffle=False)` over a data
  set of the row count above; time of the whole call (validation, per-epoch bookkeeping
  included) divided by `History.n_updates`.
- **bpfast train_step** / **reference**: `Network.train_step(x, y, lr)` called from a Python loop
  over pre-sliced batches (reference = `backend="reference"`, at most 3 blocks; not run for the
  784-input cases, where one step takes seconds).
- **NumPy**: a plain NumPy step: `Z = A @ W; Z += b`, in-place activation; the output delta
  (softmax + cross-entropy: `(A - Y) / B`; MSE: `2 (A - Y) f'(Z) / (B n_out)`); backward
  `E = delta @ W.T` through the old W, `dW = A.T @ delta`, `W -= lr dW`, `b -= lr delta.sum(0)`.
  It does not compute the loss value (bpfast does).
- **PyTorch**: `nn.Sequential(Linear, activation, ...)`, `torch.optim.SGD`,
  `zero_grad(); loss_fn(model(x), y).backward(); step()` per update; softmax + cross-entropy as
  `nn.CrossEntropyLoss` on the logits with class targets, MSE as `nn.MSELoss`.
- **scikit-learn**: `MLPClassifier`/`MLPRegressor(solver="sgd", momentum=0, alpha=0,
  batch_size=B)`, one `partial_fit` per batch (includes sklearn's input validation per call);
  the regressor's `learning_rate_init` is scaled by 2/n_out so its update equals bpfast's MSE
  update. Not applicable where sklearn lacks the network (sigmoid output with MSE).
- **FANN**: the C library's `fann_train(ann, x, y)`, one row per call cycling through the
  same rows, in a C program written and compiled at run time{' (`' + _fann['cmd'] + '`)' if _fann.get('cmd') else ''} and started
  as a subprocess per block from the same initial weights; the loop is timed inside it with
  `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (and `CLOCK_MONOTONIC` for the wall-clock column), so
  the process start is not counted. `fann_create_standard`, `FANN_SIGMOID` (steepness 0.5: the
  logistic function) for hidden and output layers, `FANN_ERRORFUNC_LINEAR`, no momentum, learning
  rate `2 lr / (B n_out)` (FANN's step has no factor 2). Only where FANN has the network: sigmoid
  layers, MSE, batch 1, float64 (needs libfann-dev and a C compiler; skipped otherwise).
- **GEMM bound (3 products/layer at the large-GEMM rate)**: the issue's definition, for the
  cases from 784-128-10 on: the flops of 3 products per layer (`2 * batch * n_in * n_out * 3`)
  at the single-thread rate of a {RATE_SIZE}³ `np.matmul` of the case's dtype, timed in
  the same interleaved blocks as the implementations.
- **GEMM lower bound**: per layer the products `X@W`, `A.T@delta` and (except the first layer)
  `delta@W.T`, each timed on its own with `np.matmul(..., out=...)` on the case's shapes; the
  bound is the sum of the per-product medians. For tiny networks it is dominated by NumPy's
  per-call overhead (~1 µs per product) and is not a meaningful bound there. The SciPy-BLAS
  row times the same products through `scipy.linalg.blas.?gemm` (the OpenBLAS build bpfast's
  kernels call through `scipy.linalg.cython_blas`), with ~2 µs of f2py call overhead each.
- Each implementation is reset to the same initial weights before each block; the order of
  the implementations rotates every repetition; {args.repeats} repetitions of ≈{args.block} s blocks
  (per-block update counts and min/max below). Garbage collection is off during a block.
- Timer: {'process CPU time (`time.process_time`). Everything runs on the calling thread, so on an idle machine this equals wall time; on a shared machine it leaves out the time spent descheduled. The wall-clock medians of the same blocks are in the raw table; `--timer wall` uses wall-clock time throughout.' if args.timer == 'cpu' else 'wall-clock time (`time.perf_counter`).'}

## Correctness check

Before timing, every implementation made one step (lr={CHECK_LR}) on the first batch from the
same initial weights as bpfast's `train_step`; shown is the relative (Frobenius) error of the
resulting parameters and of the update `W_after - W_before` against bpfast's. Tolerance:
weights 1e-6; update 1e-6 (float64) / 1e-4 (float32, where the subtraction cancels).
FANN keeps its learning rate as a C float, so its update differs from bpfast's by the float
rounding of the rate (1.5e-8 relative at lr {CHECK_LR}); otherwise doublefann agrees to ~1e-16.

{chr(10).join(check_lines)}

{'All implementations train the same network.' if all_ok else '**A CHECK FAILED: the comparison is not like for like.**'}

## Skipped

{chr(10).join('- ' + s for s in skipped) if skipped else '- nothing'}

## Raw timings

{raw_table(cases, results)}

{'![time per update vs network size](' + os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.output))) + ')' if plotted else '(no plot: matplotlib not installed)'}
"""
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(report)
    print("## Median time per update (µs)\n\n" + med_table + "\n\n## Ratios\n\n" + ratio_table
          + "\n\n## Targets\n\n" + tgt + "\n")
    print(f"wrote {args.output}" + (f" and {args.plot}" if plotted else " (no plot: matplotlib missing)"))
    if limiter is not None:
        limiter.restore_original_limits()
    if not all_ok:
        print("A CORRECTNESS CHECK FAILED; see the report.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
