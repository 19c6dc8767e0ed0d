"""Network: owns the parameters, validates at the boundary, dispatches to a backend.

All parameters live in one flat buffer allocated once; ``weights[i]`` and
``biases[i]`` are live views into it, so they can be changed in place (or
assigned whole through ``net.weights[i] = new``, which copies after checking the
shape) but never resized or replaced: the kernels can hold raw pointers.
"""
from __future__ import annotations

import math
import numbers
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from bpfast import _engine, _kernels
from bpfast._engine import NeedsValidation
from bpfast._layout import param_layout
from bpfast._reference_engine import ReferenceEngine
from bpfast._validation import (MAX_DIM, as_bool, as_dtype, as_matrix, as_parameters, choice,
                                nonnegative_float, positive_float, positive_int, seed_value)
from bpfast.activations import activation_code, loss_code

BACKENDS = ("cython", "reference")
LR_SCHEDULES = ("constant", "invscaling", "step")
_FIXED = ("sizes", "activation", "output_activation", "loss", "dtype", "backend")
PREDICT_CHUNK = 8192        # rows per forward call in predict(): bounds the workspace


@dataclass
class History:
    """What ``Network.fit`` measured, one entry per completed epoch."""
    loss: List[float] = field(default_factory=list)       # training loss (+ L2 term)
    val_loss: List[float] = field(default_factory=list)   # with validation_data only
    lr: List[float] = field(default_factory=list)         # learning rate of each epoch
    n_updates: int = 0                                    # weight updates made in total
    diverged: bool = False                                # see Network.fit, "Divergence"

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def plot(self, path=None):
        """Loss (and val_loss) per epoch, learning rate on a right axis; needs matplotlib.

        Returns the Axes; with ``path``, also saves the figure there as a PNG.
        """
        from bpfast._plot import plot_history
        return plot_history(self, path)


class ParameterList(Sequence):
    """The live weight (or bias) arrays of a Network.

    Indexing gives the live array; assigning ``params[i] = value`` copies value
    into it after checking the shape. The list itself cannot grow or shrink.
    """

    def __init__(self, arrays, name, exclusive=None):
        self._arrays = tuple(arrays)
        self._name = name
        self._exclusive = exclusive     # the Network's: refused while another thread uses it

    def __getitem__(self, i):
        # A fresh view each time: setting .shape on it cannot reshape the network's own.
        if isinstance(i, slice):
            return [a.view() for a in self._arrays[i]]
        return self._arrays[i].view()

    def __len__(self):
        return len(self._arrays)

    def __setitem__(self, i, value):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{self._name} indices must be integers; got {type(i).__name__} "
                            f"(the list cannot be resized)")
        target = self._arrays[i]
        arr = as_parameters(value, f"{self._name}[{i}]", target.dtype, target.shape)
        if self._exclusive is None:
            target[...] = arr
            return
        with self._exclusive():
            target[...] = arr

    def __repr__(self):
        return f"ParameterList({list(self._arrays)!r})"


class Network:
    """A dense feed-forward network trained by backpropagation.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``[2, 2, 1]`` is 2 inputs, one hidden layer of
        2 units and 1 output.
    activation : {'sigmoid', 'tanh', 'relu', 'identity'}
        Activation of the hidden layers.
    output_activation : {'sigmoid', 'tanh', 'relu', 'identity', 'softmax'}
    loss : {'mse', 'sse', 'cross_entropy'}
        'mse' = mean over batch and outputs of (A - Y)^2; 'sse' = their sum;
        'cross_entropy' = mean over the batch of -sum(Y * log A), softmax output only.
    dtype : {'float64', 'float32'}
    backend : {'cython', 'reference'}
        'reference' runs the same network on the pure-Python kernels.
    seed : int or None
        Seeds the initial weights (normal, std = n_in ** -0.5; biases 0) and the
        default shuffling seed of ``fit``.

    Notes
    -----
    ``predict`` and ``evaluate`` may run from many threads at once, each in memory of its
    own. Training (``forward``/``backward``/``step``/``train_step``/``fit``) and
    assigning parameters are exclusive: such a call made while another thread predicts
    or trains with the same Network raises RuntimeError (never a torn result). Separate
    Networks train in parallel: the compiled backend releases the GIL.

    A Network pickles and deep-copies whole: settings, parameters, momentum velocities
    and the state of its generator, so that training goes on bit for bit.
    """

    def __init__(self, sizes, activation="sigmoid", output_activation="sigmoid", loss="mse",
                 dtype="float64", backend="cython", seed=0):
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) and not isinstance(sizes, np.ndarray):
            raise TypeError(f"sizes must be a sequence of layer widths like [2, 2, 1]; got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least 2 widths (inputs and outputs); got {list(sizes)!r}")
        self.sizes = [positive_int(s, f"sizes[{i}]", upper=MAX_DIM) for i, s in enumerate(sizes)]
        self.activation = activation
        self.output_activation = output_activation
        self.loss = loss
        self._codes = (activation_code(activation),
                       activation_code(output_activation, output=True, argname="output_activation"),
                       loss_code(loss, output_activation))
        self.dtype = as_dtype(dtype)
        self.backend = choice(backend, "backend", BACKENDS)
        self.seed = seed_value(seed)
        self._rng = np.random.default_rng(seed)
        # Training holds _lock (re-entrant for its own thread: a fit callback may predict or
        # assign); predicting counts itself in _readers, under _reader_gate.
        self._lock = threading.RLock()
        self._reader_gate = threading.Lock()
        self._readers = 0
        self._fitting = False
        self.history_ = None

        n_params = param_layout(self.sizes)[1]
        self._params = np.zeros(n_params, dtype=self.dtype)
        self._grads = np.zeros(n_params, dtype=self.dtype)
        self._velocity = np.zeros(n_params, dtype=self.dtype)
        self.weights = self._views(self._params, "weights", 0)
        self.biases = self._views(self._params, "biases", 1)
        self.grad_weights = self._views(self._grads, "grad_weights", 0)
        self.grad_biases = self._views(self._grads, "grad_biases", 1)
        for W in self.weights:
            W[...] = self._rng.normal(0.0, W.shape[0] ** -0.5, size=W.shape)
        self._engine = self._make_engine()

    # ------------------------------------------------------------------ set-up
    def _views(self, buf, name, which):
        out = [buf[s.w:s.b].reshape(s.n_in, s.n_out) if which == 0 else buf[s.b:s.end]
               for s in param_layout(self.sizes)[0]]
        return ParameterList(out, name, self._exclusive)

    def _make_engine(self):
        if self.backend == "cython":
            return _engine.Engine(self.sizes, *self._codes, self._params, self._grads, self._velocity)
        return ReferenceEngine(self.sizes, self.activation, self.output_activation, self.loss,
                               self._params, self._grads, self._velocity)

    def __setattr__(self, name, value):
        # weights/biases are views into the flat buffer the kernels point into.
        if name in ("weights", "biases", "grad_weights", "grad_biases") and name in self.__dict__:
            raise AttributeError(f"{name} cannot be replaced; assign into it instead "
                                 f"(net.{name}[i] = array, or net.{name}[i][...] = array)")
        # The architecture is compiled into the engine: changing it here would only make
        # validation, evaluate() and save() disagree with what is trained.
        if name in _FIXED and name in self.__dict__:
            raise AttributeError(f"{name} is fixed when a Network is built; build a new "
                                 f"Network to change it")
        super().__setattr__(name, value)

    @contextmanager
    def _exclusive(self):
        """Training or assigning: no other thread may train or predict meanwhile."""
        if not self._lock.acquire(blocking=False):
            raise _busy()
        if self._readers:
            self._lock.release()
            raise _busy()
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _shared(self):
        """Predicting: many threads at once, none while another thread trains."""
        with self._reader_gate:
            if not self._lock.acquire(blocking=False):
                raise _busy()
            self._readers += 1
            self._lock.release()
        try:
            yield
        finally:
            with self._reader_gate:
                self._readers -= 1

    def __repr__(self):
        return (f"Network(sizes={self.sizes}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, loss={self.loss!r}, "
                f"dtype={self.dtype.name!r}, backend={self.backend!r})")

    def config(self) -> dict:
        """The settings that build this architecture: ``Network(**net.config())``."""
        return dict(sizes=list(self.sizes), activation=self.activation,
                    output_activation=self.output_activation, loss=self.loss,
                    dtype=self.dtype.name, backend=self.backend)

    def clone(self, backend: Optional[str] = None) -> "Network":
        """An independent copy: the same settings, parameters, optimizer state and seeds.

        ``backend`` builds the copy on another backend ('cython' or 'reference').
        """
        state = self.__getstate__()
        if backend is not None:
            state["config"]["backend"] = backend
        net = Network.__new__(Network)
        net.__setstate__(state)
        return net

    # A Network holds a lock and a native engine, which are rebuilt, not pickled.
    def __getstate__(self) -> dict:
        with self._shared():
            return {"config": self.config(), "seed": self.seed,
                    "rng": self._rng.bit_generator.state,
                    "params": self._params.copy(), "velocity": self._velocity.copy()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["config"], seed=state["seed"])
        self._rng.bit_generator.state = state["rng"]
        self.set_parameters(state["params"])
        self._velocity[...] = state["velocity"]

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def _X(self, X, name="X"):
        return as_matrix(X, name, self.dtype, width=self.sizes[0], allow_1d=True)

    def _Y(self, Y, rows, name="Y"):
        # 1-D: a vector of targets for a single output, or the targets of a single sample.
        return as_matrix(Y, name, self.dtype, width=self.sizes[-1], rows=rows,
                         allow_1d=rows == 1, column_1d=self.sizes[-1] == 1)

    # ------------------------------------------------------------------ the four calls
    def forward(self, X) -> np.ndarray:
        """Output for X, shape (batch, sizes[-1]); keeps what ``backward`` needs."""
        X = self._X(X)
        with self._exclusive():
            return self._engine.forward(X)

    def backward(self, Y) -> float:
        """Loss of the last ``forward`` against Y; fills ``grad_weights``/``grad_biases``.

        Each ``forward`` allows one ``backward``; ``train_step`` and ``fit`` invalidate it.
        """
        if self._engine.batch == 0:
            raise RuntimeError("backward() needs a forward() first (and one backward per forward)")
        Y = self._Y(Y, self._engine.batch)
        with self._exclusive():
            return self._engine.backward(Y)

    def step(self, lr: float) -> None:
        """In-place SGD with the stored gradients: ``W -= lr * grad_W``, ``b -= lr * grad_b``.

        Raises FloatingPointError, with the parameters left as they were, if the step
        would make a parameter NaN or infinite.
        """
        lr = positive_float(lr, "lr")
        with self._exclusive():
            before = self._params.copy()
            _kernels.sgd_update(self._params, self._grads, lr)
            if not self._engine.params_finite():
                self._params[...] = before
                raise FloatingPointError(f"step(lr={lr:g}) would make parameters NaN or "
                                         f"infinite; they were left as they were. Try a "
                                         f"smaller lr.")

    def train_step(self, X, Y, lr: float) -> float:
        """forward + backward + SGD step, fused; returns the loss before the step.

        The fused update writes straight into the weights: ``grad_weights`` are not filled.
        Raises FloatingPointError, with the parameters left as they were, if the loss or
        the updated parameters would not be finite.
        """
        if not self._lock.acquire(blocking=False):
            raise _busy()
        try:
            if self._readers:
                raise _busy()
            try:
                # The hot path of a training loop: arguments already right, checked in C.
                loss = self._engine.try_train_step(X, Y, lr)
            except NeedsValidation:
                X = self._X(X)
                Y = self._Y(Y, X.shape[0])
                lr = positive_float(lr, "lr")
                if np.may_share_memory(X, self._params):
                    X = X.copy()
                if np.may_share_memory(Y, self._params):
                    Y = Y.copy()
                loss = self._engine.train_step(X, Y, lr)
            if loss != loss:
                raise FloatingPointError(f"train_step with lr={lr:g} diverged: the loss or the "
                                         f"parameters would not be finite; the parameters were "
                                         f"left as they were. Try a smaller lr.")
            return loss
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ whole data sets
    def predict(self, X) -> np.ndarray:
        """Output for X, shape (n, sizes[-1]); nothing is kept for ``backward``."""
        X = self._X(X)
        with self._shared():
            return self._outputs(X)

    def evaluate(self, X, Y) -> float:
        """The loss on (X, Y) without training (the same definition as ``fit`` reports)."""
        out = self.predict(X)
        return self._loss_of(out, self._Y(Y, out.shape[0]))

    def _outputs(self, X):
        """Forward of validated X in chunks of PREDICT_CHUNK rows (the caller holds a lock)."""
        if X.shape[0] <= PREDICT_CHUNK:
            return self._engine.forward(X, keep=False)
        return np.concatenate([self._engine.forward(X[i:i + PREDICT_CHUNK], keep=False)
                               for i in range(0, X.shape[0], PREDICT_CHUNK)])

    def _loss_of(self, out, Y):
        return float(_kernels.output_delta(out, Y, self.loss, self.output_activation)[0])

    def fit(self, X, Y, epochs: int = 10, batch_size: int = 32, lr: float = 0.1,
            shuffle: bool = True, seed: Optional[int] = None, momentum: float = 0.0,
            nesterov: bool = False, weight_decay: float = 0.0, lr_schedule="constant",
            power_t: float = 0.5, step_size: int = 10, gamma: float = 0.5,
            validation_data=None, callback: Optional[Callable] = None,
            progress: bool = False, keep_momentum: bool = False) -> History:
        """Mini-batch gradient descent over whole epochs, in native calls that release the GIL.

        Parameters
        ----------
        X : array_like, shape (N, sizes[0])
        Y : array_like, shape (N, sizes[-1])
        epochs, batch_size : int >= 1
            Each epoch makes ceil(N / batch_size) updates; the last batch may be smaller.
        lr : float > 0
        shuffle : bool
            Visit the samples in a new random order each epoch.
        seed : int or None
            Seeds the shuffle (a native RNG, independent of NumPy's global state);
            None draws it from the Network's own seeded generator.
        momentum : float in [0, 1)
            Classical momentum ``v = momentum * v - lr * g; W += v``; with
            ``nesterov=True``, ``W += momentum * v - lr * g``. Velocities start at 0
            unless ``keep_momentum``.
        weight_decay : float >= 0
            L2 penalty on weights (not biases): the loss gains
            ``0.5 * weight_decay * sum(W ** 2)`` and the gradient ``weight_decay * W``.
        lr_schedule : {'constant', 'invscaling', 'step'} or callable
            Learning rate of epoch e (from 0): constant ``lr``; invscaling
            ``lr / (e + 1) ** power_t``; step ``lr * gamma ** (e // step_size)``; a
            callable is called as ``lr_schedule(e)``.
        validation_data : (Xv, Yv) or None
            Its loss is recorded after every epoch in ``History.val_loss``.
        callback : callable or None
            ``callback(epoch, history)`` after every epoch; returning False stops.
            Returning an int k >= 1 (not a bool) asks for the next call after k more
            epochs, which then run in one native call: a stopping rule that cannot
            fire for a while need not cost a round trip to Python per epoch (a
            callable ``lr_schedule`` is then evaluated for those epochs up front).
        progress : bool
            Show a progress bar (needs tqdm).
        keep_momentum : bool
            Continue from the velocities that the previous ``fit`` left (incremental
            training, as scikit-learn's ``partial_fit`` does); they are reset to 0
            after a diverged fit.

        Returns
        -------
        History
            ``loss`` per epoch (mean over samples of the batch losses, 'sse': their
            sum, plus the L2 term), ``val_loss``, ``lr`` and ``n_updates``.

        Raises
        ------
        FloatingPointError
            If the loss stops being finite. The parameters are restored to their
            values at the start of the epoch in which that happened.
        KeyboardInterrupt
            Ctrl-C reaches the native loop between batches (within about 0.1 s however
            long an epoch is). The parameters are those after the last completed update.
        RuntimeError
            If called from inside its own callback.

        Notes
        -----
        ``net.history_`` is the History of the latest fit, also when that fit was
        interrupted or diverged: its ``loss`` holds the epochs completed, ``n_updates``
        every update made, the interrupted epoch's included.

        Divergence: a loss that stays finite but grows past DIVERGED_RATIO times the
        first epoch's sets ``History.diverged`` and warns (RuntimeWarning) once, without
        stopping.
        """
        X = self._X(X)
        Y = self._Y(Y, X.shape[0])
        epochs = positive_int(epochs, "epochs")
        # A batch larger than the data is the whole data (and must fit a C Py_ssize_t).
        batch_size = min(positive_int(batch_size, "batch_size"), X.shape[0])
        lr = positive_float(lr, "lr")
        momentum = nonnegative_float(momentum, "momentum", upper=1.0)
        weight_decay = nonnegative_float(weight_decay, "weight_decay")
        shuffle = as_bool(shuffle, "shuffle")
        nesterov = as_bool(nesterov, "nesterov")
        progress = as_bool(progress, "progress")
        schedule = self._schedule(lr, lr_schedule, power_t, step_size, gamma)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, Y_val)")
            Xv = self._X(validation_data[0], "validation_data[0]")
            Yv = self._Y(validation_data[1], Xv.shape[0], "validation_data[1]")
        validation = (Xv, Yv) if validation_data is not None else None
        if np.may_share_memory(X, self._params):
            X = X.copy()            # training must not change its own data
        if np.may_share_memory(Y, self._params):
            Y = Y.copy()
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable; got {type(callback).__name__}")
        seed = seed_value(seed)

        with self._exclusive():
            if self._fitting:
                raise RuntimeError("fit() was called from inside its own callback; train in "
                                   "the callback with train_step(), or return False to stop")
            self._fitting = True
            try:
                return self._fit_epochs(X, Y, epochs, batch_size, shuffle, seed, momentum,
                                        nesterov, weight_decay, schedule, validation, callback,
                                        progress, keep_momentum,
                                        callable(lr_schedule))
            finally:
                self._fitting = False

    def _fit_epochs(self, X, Y, epochs, batch_size, shuffle, seed, momentum, nesterov,
                    weight_decay, schedule, validation, callback, progress, keep_momentum,
                    schedule_is_callable):
        """fit's loop over native calls of one or more epochs (the caller holds the lock)."""
        history = self.history_ = History()
        bar = _progress_bar(epochs) if progress else None
        # Without per-epoch Python work, all epochs run in one native call.
        per_epoch = callback is not None or validation or bar is not None or schedule_is_callable
        if not self._engine.params_finite():
            raise ValueError("the parameters contain NaN or infinity (set from outside?); "
                             "assign finite values before fit")
        if seed is None:
            seed = int(self._rng.integers(0, 2 ** 63))
        self._engine.seed(seed, X.shape[0])
        if not keep_momentum:
            self._velocity[...] = 0
        epoch = 0
        chunk = 1 if per_epoch else epochs      # epochs in the next native call
        try:
            while epoch < epochs:
                lrs = [schedule(e) for e in range(epoch, min(epoch + chunk, epochs))]
                losses, n_updates, diverged, interrupted = self._engine.epochs(
                    X, Y, batch_size, shuffle, np.array(lrs), momentum, nesterov, weight_decay)
                history.n_updates += n_updates
                history.loss.extend(float(loss) for loss in losses)
                history.lr.extend(lrs[:len(losses)])
                epoch += len(losses)
                if interrupted:
                    raise _engine.take_pending_exception() or KeyboardInterrupt()
                if diverged:
                    history.diverged = True
                    self._velocity[...] = 0     # not finite either; a later fit starts afresh
                    raise FloatingPointError(
                        f"training diverged in epoch {epoch + 1} (of {epochs}) with "
                        f"lr={lrs[len(losses)]:g}: the loss or the parameters stopped being "
                        f"finite; the parameters were restored to the start of that epoch. "
                        f"Try a smaller lr.")
                _warn_if_diverging(history)
                if validation:
                    history.val_loss.append(self._loss_of(self._outputs(validation[0]),
                                                          validation[1]))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history.loss[-1]:.4g}")
                if callback is not None:
                    verdict = callback(epoch - 1, history)
                    if verdict is False or verdict is np.False_:
                        break
                    if not validation and bar is None:
                        chunk = _epochs_until_next_call(verdict)
        finally:
            if bar is not None:
                bar.close()
        return history

    @staticmethod
    def _schedule(lr, lr_schedule, power_t, step_size, gamma):
        if callable(lr_schedule):
            def schedule(epoch):
                return positive_float(lr_schedule(epoch), f"lr_schedule({epoch})")
            return schedule
        if not isinstance(lr_schedule, str):
            raise TypeError(f"lr_schedule must be one of {LR_SCHEDULES} or a callable; "
                            f"got {type(lr_schedule).__name__}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES} or a callable; got {lr_schedule!r}")
        if lr_schedule == "invscaling":
            power_t = nonnegative_float(power_t, "power_t")
            return _checked_schedule(lambda epoch: lr / (epoch + 1) ** power_t,
                                     f"lr_schedule='invscaling' with lr={lr:g} and power_t={power_t:g}")
        if lr_schedule == "step":
            step_size = positive_int(step_size, "step_size")
            gamma = positive_float(gamma, "gamma")
            return _checked_schedule(lambda epoch: lr * gamma ** (epoch // step_size),
                                     f"lr_schedule='step' with lr={lr:g} and gamma={gamma:g}")
        return lambda epoch: lr

    # ------------------------------------------------------------------ copies
    def get_parameters(self) -> np.ndarray:
        """A copy of all parameters as one flat array (W0, b0, W1, b1, ...)."""
        with self._exclusive():
            return self._params.copy()

    def set_parameters(self, flat) -> None:
        """Set all parameters from one flat array laid out as ``get_parameters`` returns."""
        flat = as_parameters(flat, "flat parameters", self.dtype, self._params.shape)
        with self._exclusive():
            self._params[...] = flat

    def summary(self) -> str:
        """A table of the layers (shapes, activation, parameters), totals and optimizer state."""
        from bpfast._summary import summarize
        return summarize(self)


DIVERGED_RATIO = 1e6      # an epoch loss this many times the first epoch's marks divergence


def _warn_if_diverging(history: History) -> None:
    """Mark and warn, once, when the loss has grown far past the first epoch's."""
    if history.diverged or len(history.loss) < 2:
        return
    first, last = history.loss[0], history.loss[-1]
    if last > DIVERGED_RATIO * first:
        history.diverged = True
        warnings.warn(f"training is diverging: the loss grew from {first:.4g} (epoch 1) to "
                      f"{last:.4g} (epoch {len(history.loss)}); try a smaller lr or scaled "
                      f"data (History.diverged is set)", RuntimeWarning, stacklevel=4)


def _checked_schedule(rate, description):
    """A schedule whose every learning rate is checked: a finite number > 0."""
    def schedule(epoch):
        try:
            value = rate(epoch)
        except OverflowError:
            value = float("inf")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{description} gives the learning rate {value!r} at epoch "
                             f"{epoch}; choose parameters that keep it a finite number > 0")
        return value
    return schedule


def _epochs_until_next_call(verdict) -> int:
    """What a fit callback's return value (other than False) asks for: 1, or its int k."""
    if isinstance(verdict, numbers.Integral) and not isinstance(verdict, (bool, np.bool_)):
        if verdict < 1:
            raise ValueError(f"callback returned {verdict!r}: return False to stop, or an int "
                             f">= 1 of epochs to run before the next call")
        return int(verdict)
    return 1


def _busy():
    return RuntimeError("this Network is in use by another thread; use one Network per thread "
                        "(or a lock of your own)")


def _progress_bar(total):
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from exc
    return tqdm(total=total, unit="epoch")
