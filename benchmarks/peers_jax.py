"""JAX as a peer of bpfast: the benchmark cases' network, loss and plain SGD, jit-compiled.

Two ways to drive it, the two a JAX user would write:

    JaxStep    one jax.jit-compiled SGD step (forward, jax.grad of the loss, update),
               called from a Python loop once per batch
    JaxScan    a whole epoch in one jax.jit: lax.scan of the same step over the batches

Both keep the parameters as a list of (W (n_in, n_out), b) and pass them back in with
their buffers donated, so XLA may update them in place. run(n) blocks until the last
update is computed (JAX dispatches asynchronously), and times with the wall clock.

Importing this module imports JAX and enables float64 in it (jax_enable_x64): float32
cases keep float32 arrays, float64 cases get float64. Pin the process's CPUs (or set
XLA_FLAGS) before the import: XLA sizes its thread pool when it starts.
"""
import itertools
import math
import time
import warnings

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

from _timing import Impl
from cases import CHECK_LR, LR

jax.config.update("jax_enable_x64", True)

JAX_VERSION = jax.__version__


def _activate(Z, name):
    if name == "relu":
        return jax.nn.relu(Z)
    if name == "sigmoid":
        return jax.nn.sigmoid(Z)
    if name == "tanh":
        return jnp.tanh(Z)
    if name == "identity":
        return Z
    raise ValueError(f"no JAX version of activation {name!r}")


def make_loss(case):
    """loss(params, x, y): the case's loss, as bpfast defines it, for jax.grad."""
    L = len(case.sizes) - 1

    def forward_logits(params, x):
        A = x
        for l, (W, b) in enumerate(params):
            Z = A @ W + b
            A = Z if l == L - 1 else _activate(Z, case.activation)
        return A

    if (case.output_activation, case.loss) == ("softmax", "cross_entropy"):
        def loss(params, x, y):
            # mean over the batch of -sum y log softmax(z): gradient (softmax - y) / batch
            logp = jax.nn.log_softmax(forward_logits(params, x), axis=1)
            return -jnp.mean(jnp.sum(y * logp, axis=1))
    elif case.loss == "mse":
        def loss(params, x, y):
            # mean over batch and outputs of (f(z) - y)^2, bpfast's mse
            A = _activate(forward_logits(params, x), case.output_activation)
            return jnp.mean((A - y) ** 2)
    else:
        raise ValueError(f"no JAX version of loss {case.loss!r} with {case.output_activation}")
    return loss


def make_sgd_step(case, lr):
    """step(params, x, y) -> params after one plain SGD update (not jitted)."""
    grad = jax.grad(make_loss(case))

    def step(params, x, y):
        g = grad(params, x, y)
        return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]
    return step


def _jit_donating(f):
    """jax.jit(f) that may reuse the buffers of its first argument (the parameters)."""
    return jax.jit(f, donate_argnums=0)


class _JaxImpl(Impl):
    """Shared by both variants: the case's data set as device arrays of shape (batches,
    batch, features), parameters from the case's initial weights, run, reset, weights.
    A variant's _advance(params, n) makes at least n updates and returns (params, updates)."""

    def __init__(self, case, data, init, lr=LR):
        self.case, self.init, self.lr = case, init, lr
        self.dtype = np.dtype(case.dtype)
        B = case.batch
        self.n_batches = data[0].shape[0] // B
        self.X, self.Y = (jnp.asarray(a[:self.n_batches * B].reshape(self.n_batches, B, -1), self.dtype)
                          for a in data[:2])
        self.params = None
        self.reset()

    def reset(self):
        # fresh device arrays: the last ones were donated to the step
        self.params = [(jnp.asarray(W, self.dtype), jnp.asarray(b, self.dtype))
                       for W, b in zip(*self.init)]

    def weights(self):
        """[(W, b)] as NumPy arrays, for the correctness check."""
        return [(np.asarray(W).copy(), np.asarray(b).copy()) for W, b in self.params]

    def run(self, n):
        """At least n updates, until the last is computed; (wall seconds, updates)."""
        t0 = time.perf_counter()
        params, done = self._advance(self.params, n)
        jax.block_until_ready(params)
        t = time.perf_counter() - t0
        self.params = params
        return t, done


class JaxStep(_JaxImpl):
    """jax.jit(SGD step), called from a Python loop once per batch."""
    name = "JAX jit step"

    def __init__(self, case, data, init, lr=LR):
        super().__init__(case, data, init, lr)
        self.pairs = list(zip(self.X, self.Y))
        self.step = _jit_donating(make_sgd_step(case, lr))

    def _advance(self, params, n):
        step = self.step
        for x, y in itertools.islice(itertools.cycle(self.pairs), n):
            params = step(params, x, y)
        return params, n


class JaxScan(_JaxImpl):
    """One jax.jit per epoch: lax.scan of the SGD step over the batches of the data set."""
    name = "JAX epoch scan"

    def __init__(self, case, data, init, lr=LR):
        super().__init__(case, data, init, lr)
        step = make_sgd_step(case, lr)

        def epoch(params, X, Y):
            def body(p, xy):
                return step(p, *xy), None
            return lax.scan(body, params, (X, Y))[0]
        self.epoch = _jit_donating(epoch)

    def _advance(self, params, n):
        epoch, X, Y = self.epoch, self.X, self.Y
        epochs = max(1, math.ceil(n / self.n_batches))
        for _ in range(epochs):
            params = epoch(params, X, Y)
        return params, epochs * self.n_batches


def rel_err(got, want):
    """Relative Frobenius error of the arrays `got` against the arrays `want`, all together."""
    num = math.sqrt(sum(float(np.sum((np.asarray(g, np.float64) - np.asarray(w, np.float64)) ** 2))
                        for g, w in zip(got, want)))
    den = math.sqrt(sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for w in want))
    return num / den if den else num


def check_jax(case, data, init, bpfast_weights):
    """One CHECK_LR step of each JAX variant on the first batch, from init, against the
    weights bpfast's train_step reached from the same start (`bpfast_weights`, [(W, b)]).

    Returns [(name, weights rel. error, update rel. error, ok)], with bench.py's
    tolerances: the update W_after - W_before is the sharp test.
    """
    B = case.batch
    one = (data[0][:B], data[1][:B])
    flat = lambda ws: [np.asarray(a, np.float64) for W, b in ws for a in (W, b)]  # noqa: E731
    before = flat(zip(*init))
    want = flat(bpfast_weights)
    want_upd = [w - b0 for w, b0 in zip(want, before)]
    tol_w = 1e-6
    tol_u = 1e-6 if case.dtype == "float64" else 1e-4
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # a backend without donation says so
        for cls in (JaxStep, JaxScan):
            impl = cls(case, one, init, lr=CHECK_LR)
            impl.run(1)
            got = flat(impl.weights())
            ew = rel_err(got, want)
            eu = rel_err([g - b0 for g, b0 in zip(got, before)], want_upd)
            out.append((impl.name, ew, eu, ew <= tol_w and eu <= tol_u))
    return out
