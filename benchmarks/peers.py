"""The implementations bench.py times side by side: bpfast and its peers.

Each is an Impl: run(n) makes at least n weight updates of one case and returns (seconds,
updates), reset() puts the case's initial parameters back, weights() gives the parameters
for the correctness check. bench.py's docstring says what each row of the table measures.
Optional peers (PyTorch, scikit-learn, FANN) are skipped where they are not installed, and
the *_reason() functions say why.
"""
import atexit
import itertools
import math
import os
import shlex
import shutil
import statistics
import subprocess
import tempfile

import numpy as np

from _native import clock, wall_clock
from _timing import ArrayParams, BpfastFit, Impl
from cases import LR, RATE_SIZE, batch_pairs, batches

try:
    import scipy
    from scipy.linalg import blas as scipy_blas
except ImportError:     # bpfast needs scipy, but keep the script importable
    scipy = scipy_blas = None

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


class _Looped(Impl):
    """Calls self.step(x, y) over the batches from a Python loop."""

    def run(self, n):
        step = self.step
        it = itertools.islice(itertools.cycle(self.pairs), n)
        t0 = clock()
        for x, y in it:
            step(x, y)
        return clock() - t0, n


class BpfastStep(_Looped, BpfastFit):
    """The same network as BpfastFit, stepped by train_step from a Python loop (_Looped.run)."""
    name = "bpfast train_step"

    def __init__(self, case, data, init):
        super().__init__(case, data, init)
        self.pairs = batch_pairs(data, case.batch)
        train_step = self.net.train_step
        self.step = lambda x, y, lr=LR: train_step(x, y, lr)


class Reference(BpfastStep):
    name = "reference (pure Python)"
    backend = "reference"
    reps_cap = 3


class NumpyMLP(_Looped, ArrayParams):
    """The hand-written NumPy step: what a competent NumPy user writes."""
    name = "NumPy"

    def __init__(self, case, data, init, lr=LR):
        self.case, self.init, self.lr = case, init, lr
        self.W = [W.copy() for W in init[0]]
        self.b = [b.copy() for b in init[1]]
        self.pairs = batch_pairs(data, case.batch)
        self.step = self.train_step

    def params(self):
        return self.W, self.b

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


class SklearnMLP(_Looped, ArrayParams):
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

    def params(self):
        return self.model.coefs_, self.model.intercepts_


# FANN: the C library, driven by the small C program fann_step.c (its header says what it
# does), compiled at run time; skipped when there is no C compiler or no libfann-dev.
FANN_NAME = "FANN (C, per-sample fann_train)"
_fann = {}      # the compiled programs, by source file: compiled once per run, on first use


def fann_program(source="fann_step.c"):
    """(path of the compiled FANN program benchmarks/<source>, None), or (None, why there
    is none)."""
    if source not in _fann:
        built = _fann[source] = dict(exe=None, why=None, cmd=None)
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            built["why"] = "no C compiler (cc/gcc) found"
            return None, built["why"]
        tmp = tempfile.mkdtemp(prefix="bpfast_bench_fann_")
        atexit.register(shutil.rmtree, tmp, True)
        path = os.path.join(HERE, source)
        exe = os.path.join(tmp, os.path.splitext(source)[0])
        cmd = [cc, "-O2", "-o", exe, path, "-ldoublefann", "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            err = (proc.stderr.replace(path, source).strip().splitlines()
                   if proc.returncode else None)
        except (OSError, subprocess.SubprocessError) as e:
            err = [str(e)]
        if err is None:
            built.update(exe=exe, cmd=shlex.join(os.path.basename(a) for a in cmd))
        else:
            first = next((line for line in err if "error" in line or "cannot find" in line),
                         err[0] if err else "no message")
            built["why"] = f"compiling against doublefann failed (is libfann-dev installed?): {first}"
    return _fann[source]["exe"], _fann[source]["why"]


def fann_stdin(init, data, layout):
    """What a FANN program reads: the initial weights in FANN's connection order (from
    fann_connections), then the rows of X and of Y, as float64 bytes."""
    Ws, bs = init
    start = [Ws[l][i, j] if i < Ws[l].shape[0] else bs[l][j] for _, _, l, i, j in layout]
    return b"".join(np.ascontiguousarray(a, np.float64).tobytes()
                    for a in (np.array(start), data[0], data[1]))


def fann_compile_command(source="fann_step.c"):
    """The command that compiled the FANN program (file names only), or None if none did."""
    return _fann.get(source, {}).get("cmd")


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
        self.rows, self.stdin = data[0].shape[0], fann_stdin(init, data, self.layout)
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
        return (wall if wall_clock() else cpu), n

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
    """The targets' bound: 3 products per layer at the rate of one large single-thread GEMM.

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

