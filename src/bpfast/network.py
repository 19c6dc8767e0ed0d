"""Network: owns the parameters, validates at the boundary, dispatches to a backend.

All parameters live in one flat buffer allocated once; ``weights[i]`` and
``biases[i]`` are live views into it, so they can be changed in place (or
assigned whole through ``net.weights[i] = new``, which copies after checking the
shape) but never resized or replaced: the kernels can hold raw pointers.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from bpfast import _engine, _fitting, _kernels, optim
from bpfast._access import Access
from bpfast._engine import NeedsValidation
from bpfast._fitting import History
from bpfast._layout import aligned_zeros, param_layout
from bpfast._packing import PackedWeights
from bpfast._parameters import parameter_lists
from bpfast._reference_engine import ReferenceEngine
from bpfast._validation import (MAX_DIM, as_bool, as_csr, as_dtype, as_matrix, as_parameters,
                                as_sample_weight, choice, is_sparse, one_hot_labels,
                                positive_float, positive_int, seed_value, thread_count)
from bpfast.activations import activation_code, loss_code

BACKENDS = ("cython", "reference")
_FIXED = ("sizes", "activation", "output_activation", "loss", "dtype", "backend")
PREDICT_CHUNK = 8192        # rows per forward call in predict(): bounds the workspace


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
    n_threads : int >= 1 or None
        Threads a call may use (``fit``, ``train_step``, ``predict``... also take it for
        one call). None: every CPU this process may use, at most the BLAS thread limit
        (``bpfast.default_threads()``). Results are the same bits at any count.

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
                 dtype="float64", backend="cython", seed=0, n_threads=None):
        self._build(sizes, activation, output_activation, loss, dtype, backend, seed, n_threads)
        rng = self._rng
        for W in self.weights:
            W[...] = rng.normal(0.0, W.shape[0] ** -0.5, size=W.shape)

    @classmethod
    def _from_parameters(cls, params, sizes, activation, output_activation, loss, dtype,
                         backend, n_threads=None, name="flat parameters") -> "Network":
        """A Network (seed None) holding ``params``, as ``Network(..., seed=None)`` followed
        by ``set_parameters(params)`` would, without drawing initial weights it would
        overwrite (``load`` builds its networks so). The settings are validated as the
        constructor's, the parameters as ``set_parameters``'s; messages call them `name`."""
        net = cls.__new__(cls)
        net._build(sizes, activation, output_activation, loss, dtype, backend, None, n_threads)
        params = np.asarray(params)
        if (params.dtype.kind == "f" and params.dtype.itemsize == net.dtype.itemsize
                and params.shape == net._params.shape):
            # Floats of the same width (either byte order) copy exactly: the engine's
            # check of the copy is as_parameters' check, at a fraction of its cost.
            net._params[...] = params
            if net._engine.params_finite():
                return net
        net._params[...] = as_parameters(params, name, net.dtype, net._params.shape)
        return net

    def _build(self, sizes, activation, output_activation, loss, dtype, backend, seed, n_threads):
        """Validate the settings; allocate the buffers, their views and the engine."""
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) and not isinstance(sizes, np.ndarray):
            raise TypeError(f"sizes must be a sequence of layer widths like [2, 2, 1]; got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least 2 widths (inputs and outputs); got {list(sizes)!r}")
        sizes = [positive_int(s, f"sizes[{i}]", upper=MAX_DIM) for i, s in enumerate(sizes)]
        codes = (activation_code(activation),
                 activation_code(output_activation, output=True, argname="output_activation"),
                 loss_code(loss, output_activation))
        dtype = as_dtype(dtype)
        backend = choice(backend, "backend", BACKENDS)
        seed = seed_value(seed)
        n_threads = thread_count(n_threads)
        layout, n_params = param_layout(sizes)
        params = aligned_zeros(n_params, dtype)
        grads = aligned_zeros(n_params, dtype)
        # The optimizer's state, laid out like the parameters twice (bpfast.optim), whose
        # optimizer it is (_state_kind) and the updates it has seen (_state_step).
        state = np.zeros(2 * n_params, dtype=dtype)
        access = Access()       # training is exclusive, predicting shared (_access.py)
        # Set through __dict__: __setattr__ guards the fixed attributes against later
        # assignment, and its checks are a fifth of the cost of a small network's set-up.
        vars(self).update(
            sizes=sizes, activation=activation, output_activation=output_activation,
            loss=loss, _codes=codes, dtype=dtype, backend=backend, seed=seed, _generator=None,
            _access=access, _exclusive=access.exclusive, _shared=access.shared,
            _fitting=False, history_=None, _layout=layout, _params=params, _grads=grads,
            _state=state, _state_kind=None, _state_step=0, _n_threads=n_threads,
            **parameter_lists(layout, params, grads, access))
        self._engine = self._make_engine()
        self._engine.threads = n_threads or 0
        del params      # PackedWeights counts the references the Network itself holds
        self._packs = PackedWeights(self._engine, access, self._params,
                                    backend == "cython" and self._engine.packable())
        self._packs.settle()

    # ------------------------------------------------------------------ set-up
    @property
    def n_threads(self) -> Optional[int]:
        """Threads a call may use; None: ``bpfast.default_threads()`` at each call."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value) -> None:
        self._n_threads = thread_count(value)
        self._engine.threads = self._n_threads or 0

    def _threads(self, n_threads) -> int:
        """An engine call's thread count: -1 for the Network's own, else n_threads checked."""
        return -1 if n_threads is None else thread_count(n_threads)

    @property
    def _rng(self) -> np.random.Generator:
        """The generator of the initial weights and of fit's default shuffling seeds, seeded
        with ``seed``; made on first use, since making one is a quarter of a small
        network's set-up and a loaded network may never need it."""
        rng = self._generator
        if rng is None:
            with self._access.gate:     # two threads pickling at once: one generator
                rng = self._generator
                if rng is None:
                    rng = self.__dict__["_generator"] = np.random.default_rng(self.seed)
        return rng

    def _make_engine(self):
        if self.backend == "cython":
            return _engine.Engine(self.sizes, *self._codes, self._params, self._grads, self._state)
        return ReferenceEngine(self.sizes, self.activation, self.output_activation, self.loss,
                               self._params, self._grads, self._state)

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

    def __repr__(self):
        return (f"Network(sizes={self.sizes}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, loss={self.loss!r}, "
                f"dtype={self.dtype.name!r}, backend={self.backend!r}, "
                f"n_threads={self._n_threads or f'None (now {_kernels.default_threads()})'})")

    def config(self) -> dict:
        """The settings that build this architecture: ``Network(**net.config())``."""
        return dict(sizes=list(self.sizes), activation=self.activation,
                    output_activation=self.output_activation, loss=self.loss,
                    dtype=self.dtype.name, backend=self.backend, n_threads=self._n_threads)

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
                    "params": self._params.copy(), "optimizer_state": self._state.copy(),
                    "optimizer": self._state_kind, "optimizer_step": self._state_step}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["config"], seed=state["seed"])
        self._rng.bit_generator.state = state["rng"]
        self.set_parameters(state["params"])
        self._state[...] = state["optimizer_state"]
        self._state_kind = state["optimizer"]
        self._state_step = state["optimizer_step"]

    def _apart(self, *arrays):
        """The arrays, each copied if it shares memory with the parameters: training must
        not change its own data (a CSR matrix's tuple of arrays is left as it is)."""
        return [a.copy() if not isinstance(a, tuple) and np.may_share_memory(a, self._params)
                else a for a in arrays]

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def _X(self, X, name="X", check_finite=True):
        # A sparse X is validated, then made dense (fit alone densifies batch by batch).
        if type(X) is not np.ndarray and is_sparse(X):
            import scipy.sparse
            n_rows, values, columns, starts = as_csr(X, name, self.dtype, self.sizes[0])
            return scipy.sparse.csr_matrix((values, columns, starts),
                                           shape=(n_rows, self.sizes[0])).toarray()
        return as_matrix(X, name, self.dtype, width=self.sizes[0], allow_1d=True,
                         check_finite=check_finite)

    def _Y(self, Y, rows, name="Y"):
        # 1-D integers with cross-entropy: class labels, one-hot encoded here. Else 1-D is a
        # vector of targets for a single output, or the targets of a single sample.
        if self.loss == "cross_entropy" and self.sizes[-1] > 1:
            labels = np.asarray(Y) if not isinstance(Y, np.ndarray) else Y
            if labels.ndim == 1 and labels.dtype.kind in "iu":
                Y = one_hot_labels(labels, self.sizes[-1], name)
        return as_matrix(Y, name, self.dtype, width=self.sizes[-1], rows=rows,
                         allow_1d=rows == 1, column_1d=self.sizes[-1] == 1)

    # ------------------------------------------------------------------ the four calls
    def forward(self, X) -> np.ndarray:
        """Output for X, shape (batch, sizes[-1]); keeps what ``backward`` needs."""
        X = self._X(X)
        with self._exclusive():
            return self._engine.forward(X, True)

    def backward(self, Y, sample_weight=None) -> float:
        """Loss of the last ``forward`` against Y; fills ``grad_weights``/``grad_biases``.

        ``sample_weight`` (one weight >= 0 per row) makes it the weighted mean, as in
        ``fit``. Each ``forward`` allows one ``backward``; ``train_step`` and ``fit``
        invalidate it.
        """
        if self._engine.batch == 0:
            raise RuntimeError("backward() needs a forward() first (and one backward per forward)")
        Y = self._Y(Y, self._engine.batch)
        if sample_weight is not None:
            sample_weight = as_sample_weight(sample_weight, Y.shape[0], self.dtype)
        with self._exclusive():
            return self._engine.backward(Y, sample_weight)

    def loss_and_gradient(self, X, Y, sample_weight=None):
        """The loss over all of (X, Y) and its gradient, for full-batch optimizers (such as
        ``scipy.optimize.minimize``'s L-BFGS-B): ``(loss, flat gradient)``, the gradient laid
        out as ``get_parameters()``. One native call; the parameters do not change."""
        X = self._X(X)
        Y = self._Y(Y, X.shape[0])
        if sample_weight is not None:
            sample_weight = as_sample_weight(sample_weight, X.shape[0], self.dtype)
        with self._exclusive():
            loss = self._engine.loss_and_gradient(X, Y, sample_weight)
            return loss, self._grads.copy()

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

    def train_step(self, X, Y, lr: float, n_threads: Optional[int] = None) -> float:
        """forward + backward + SGD step, fused; returns the loss before the step.

        The fused update writes straight into the weights: ``grad_weights`` are not filled.
        ``n_threads`` overrides the Network's for this call.
        Raises FloatingPointError, with the parameters left as they were, if the loss or
        the updated parameters would not be finite.
        """
        self._access.acquire()
        try:
            try:
                # The hot path of a training loop: arguments already right, checked in C.
                loss = self._engine.try_train_step(X, Y, lr, self._threads(n_threads))
            except NeedsValidation:
                X = self._X(X)
                Y = self._Y(Y, X.shape[0])
                lr = positive_float(lr, "lr")
                X, Y = self._apart(X, Y)
                loss = self._engine.train_step(X, Y, lr, self._threads(n_threads))
            if loss != loss:
                raise FloatingPointError(f"train_step with lr={lr:g} diverged: the loss or the "
                                         f"parameters would not be finite; the parameters were "
                                         f"left as they were. Try a smaller lr.")
            return loss
        finally:
            self._access.release()

    # ------------------------------------------------------------------ whole data sets
    def predict(self, X, n_threads: Optional[int] = None) -> np.ndarray:
        """Output for X, shape (n, sizes[-1]); nothing is kept for ``backward``.
        ``n_threads`` overrides the Network's for this call.

        Once two predictions in a row find the weights unchanged, a copy of the wide
        layers' weights packed for the product kernel is kept (as much memory again as
        those weights) and read until they change; the outputs have the same bits either
        way (``_packing.py``)."""
        source = X
        X = self._X(X, check_finite=False)
        threads = self._threads(n_threads)
        self._access.start_reading()
        try:
            return self._outputs(X, threads, source)
        finally:
            self._access.stop_reading()

    def predictor(self, n_threads: Optional[int] = None):
        """A frozen copy for inference, its weights packed once (see ``bpfast._predictor``):
        the bits of ``predict`` now; later changes of this Network do not reach it."""
        from bpfast._predictor import Predictor
        return Predictor(self, n_threads)

    def evaluate(self, X, Y, n_threads: Optional[int] = None) -> float:
        """The loss on (X, Y) without training (the same definition as ``fit`` reports)."""
        out = self.predict(X, n_threads)
        return self._loss_of(out, self._Y(Y, out.shape[0]))

    def _outputs(self, X, threads=-1, source=None):
        """Forward of X in chunks of PREDICT_CHUNK rows (the caller holds a lock). With
        `source` (X as given; X unchecked for NaN and infinity) the engine checks the first
        layer's product instead; a failure validates `source`, which raises the usual error
        (or finds an overflow from finite X, and the chunk runs unchecked)."""
        packed = self._packs.ready(X.shape[0])

        def chunk(rows):
            out = self._engine.forward(rows, False, threads, source is not None, packed)
            if out is None:
                self._X(source)
                out = self._engine.forward(rows, False, threads, False, packed)
            return out
        if X.shape[0] <= PREDICT_CHUNK:
            return chunk(X)
        return np.concatenate([chunk(X[i:i + PREDICT_CHUNK])
                               for i in range(0, X.shape[0], PREDICT_CHUNK)])

    def _loss_of(self, out, Y):
        return float(_kernels.output_delta(out, Y, self.loss, self.output_activation)[0])

    def fit(self, X, Y, epochs: int = 10, batch_size: int = 32, lr: float = 0.1,
            shuffle: bool = True, seed: Optional[int] = None, momentum: float = 0.0,
            nesterov: bool = False, weight_decay: float = 0.0, lr_schedule="constant",
            power_t: float = 0.5, step_size: int = 10, gamma: float = 0.5,
            validation_data=None, callback: Optional[Callable] = None,
            progress: bool = False, keep_momentum: bool = False, *, optimizer="sgd",
            betas=(0.9, 0.999), eps: float = 1e-8, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
            keep_state: bool = False, sample_weight=None, clip_norm: Optional[float] = None,
            early_stopping: bool = False, patience: int = 10, min_delta: float = 0.0,
            restore_best: bool = True, comm=None, sync_every: int = 1, checkpoint=None,
            checkpoint_every: int = 1, resume=None, n_threads: Optional[int] = None) -> History:
        """Mini-batch training over whole epochs, in native calls that release the GIL.

        Parameters
        ----------
        X : array_like, shape (N, sizes[0])
        Y : array_like, shape (N, sizes[-1])
            With the 'cross_entropy' loss, also 1-D integer class labels in
            [0, sizes[-1]), one-hot encoded here.
        epochs, batch_size : int >= 1
            Each epoch makes ceil(N / batch_size) updates; the last batch may be smaller.
        lr : float > 0
            The learning rate (Rprop: the initial step size).
        shuffle : bool or callable
            Visit the samples in a new random order each epoch; a callable gives the
            order itself: ``shuffle(e)`` returns epoch e's row indices, each row once.
        seed : int or None
            Seeds the shuffle (a native RNG, independent of NumPy's global state);
            None draws it from the Network's own seeded generator.
        momentum : float in [0, 1)
            SGD's classical momentum ``v = momentum * v - lr * g; W += v``; with
            ``nesterov=True``, ``W += momentum * v - lr * g``.
        weight_decay : float >= 0
            On weights, not biases. SGD, Adam and Rprop: an L2 penalty, the loss gains
            ``0.5 * weight_decay * sum(W ** 2)`` and the gradient ``weight_decay * W``;
            AdamW: decoupled, ``W *= 1 - lr * weight_decay`` each step.
        lr_schedule : {'constant', 'invscaling', 'step'} or callable
            Learning rate of epoch e (from 0): constant ``lr``; invscaling
            ``lr / (e + 1) ** power_t``; step ``lr * gamma ** (e // step_size)``; a
            callable is called as ``lr_schedule(e)``. Applies to every optimizer (for
            Rprop, whose steps adapt by themselves, only its first value counts, as in
            PyTorch).
        validation_data : (Xv, Yv) or None
            Its loss is recorded after every epoch in ``History.val_loss``.
        callback : callable or None
            ``callback(epoch, history)`` after every epoch; returning False stops.
            Returning an int k >= 1 (not a bool) asks for the next call after k more
            epochs, which then run in one native call (a callable ``lr_schedule`` is then
            evaluated for those epochs up front).
        progress : bool
            Show a progress bar (needs tqdm).
        keep_momentum : bool
            The old name of ``keep_state``, kept working.
        optimizer : {'sgd', 'adam', 'adamw', 'rprop'} or a bpfast.optim object
            'adam' and 'adamw' take ``betas`` and ``eps``, 'rprop' takes ``etas`` and
            ``step_sizes`` (their meanings in ``torch.optim``); see ``bpfast.optim``. An
            object brings its own hyper-parameters (lr included; the schedule scales it)
            and always updates from the gradients, as its ``step()`` does, so a fit and a
            loop of ``forward``, ``backward``, ``step()`` give the same bits.
        keep_state : bool
            Continue from the optimizer state the previous fit left (velocities,
            moments, step sizes and the step count; incremental training, as
            scikit-learn's ``partial_fit`` does); by default each fit starts afresh.
        sample_weight : array_like, shape (N,), or None
            Each batch's loss and gradient are the weighted average over its rows,
            divided by the batch's sum of weights ('sse': the weighted sum), as in
            scikit-learn: integer weights on a full batch equal repeating the rows.
        clip_norm : float > 0 or None
            Scale each batch's gradient to this global norm when it is larger, as
            ``torch.nn.utils.clip_grad_norm_``.
        n_threads : int >= 1 or None
            Threads for this fit (None: the Network's ``n_threads``). The trained
            parameters are the same bits at any thread count.
        comm : an mpi4py communicator or None
            Data-parallel training over MPI: ``bpfast.distributed.fit`` (which takes
            ``sync_every``, ``checkpoint``, ``checkpoint_every`` and ``resume``, and no
            schedule, callback, early stopping, progress bar or keep_state).
        early_stopping : bool
            Stop when the monitored loss (``val_loss`` with validation data, else the
            training loss) has not improved by more than ``min_delta`` for ``patience``
            epochs; with ``restore_best`` the parameters of the best epoch are put back
            at the end (``History.best_epoch``).

        Returns
        -------
        History
            ``loss`` per epoch (mean over samples of the batch losses, 'sse': their
            sum, plus the L2 term), ``val_loss``, ``lr`` and ``n_updates``.

        Raises
        ------
        FloatingPointError
            If the loss stops being finite. The parameters are restored to their
            values at the start of the epoch in which that happened, and the optimizer
            state is dropped.
        KeyboardInterrupt
            Ctrl-C reaches the native loop between batches (within about 0.1 s however
            long an epoch is). The parameters are those after the last completed update,
            consistent with the optimizer state.
        RuntimeError
            If called from inside its own callback.

        Notes
        -----
        ``net.history_`` is the History of the latest fit, also when that fit was
        interrupted or diverged: its ``loss`` holds the epochs completed, ``n_updates``
        every update made, the interrupted epoch's included.

        Divergence: a loss that stays finite but grows past a million times the first
        epoch's sets ``History.diverged`` and warns (RuntimeWarning) once, without
        stopping.
        """
        if comm is not None:
            from bpfast import distributed
            return distributed.fit_with_arguments_of_fit(self, locals())
        if is_sparse(X) and self.backend == "cython":
            # The engine densifies a batch at a time: the same bits as the dense matrix.
            n_rows, *csr = as_csr(X, "X", self.dtype, self.sizes[0])
            X = tuple(csr)
        else:
            X = self._X(X)
            n_rows = X.shape[0]
        Y = self._Y(Y, n_rows)
        epochs = positive_int(epochs, "epochs")
        # A batch larger than the data is the whole data (and must fit a C Py_ssize_t).
        batch_size = min(positive_int(batch_size, "batch_size"), n_rows)
        opt = optim.make(self, optimizer, lr, momentum, nesterov, weight_decay, betas, eps,
                         etas, step_sizes, clip_norm)
        shuffle = shuffle if callable(shuffle) else as_bool(shuffle, "shuffle")
        progress = as_bool(progress, "progress")
        keep = as_bool(keep_state, "keep_state") or as_bool(keep_momentum, "keep_momentum")
        schedule = _fitting.schedule_of(opt.lr, lr_schedule, power_t, step_size, gamma)
        early = _fitting.EarlyStopping.of(early_stopping, patience, min_delta, restore_best)
        if sample_weight is not None:
            sample_weight = as_sample_weight(sample_weight, n_rows, self.dtype)
        validation = _fitting.validation_pair(self, validation_data)
        X, Y = self._apart(X, Y)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable; got {type(callback).__name__}")
        seed = seed_value(seed)
        update = opt.update(from_gradients=not isinstance(optimizer, str))
        threads = self._threads(n_threads)

        with self._exclusive():
            if self._fitting:
                raise RuntimeError("fit() was called from inside its own callback; train in "
                                   "the callback with train_step(), or return False to stop")
            if not self._engine.params_finite():
                raise ValueError("the parameters contain NaN or infinity (set from outside?); "
                                 "assign finite values before fit")
            self._fitting = True
            try:
                self._prepare_state(opt, keep)
                history = self.history_ = History()
                return _fitting.run(self, X, Y, epochs, batch_size, shuffle, seed, opt, update,
                                    schedule, sample_weight, validation, callback, progress,
                                    early, callable(lr_schedule), history, threads)
            finally:
                self._fitting = False

    # ------------------------------------------------------------------ optimizer state
    def _prepare_state(self, opt, keep: bool) -> None:
        """Keep the state for opt (keep=True and it is opt's kind), or start it afresh."""
        if keep and self._state_kind == opt.name:
            return
        if keep and self._state_kind is not None:
            raise ValueError(f"keep_state=True, but the optimizer state is {self._state_kind}'s "
                             f"and this fit runs {opt.name}; drop keep_state to start afresh")
        opt.initial_state(self._state)
        self._state_kind, self._state_step = opt.name, 0

    def _forget_state(self) -> None:
        self._state[...] = 0
        self._state_kind, self._state_step = None, 0

    def _optimizer_step(self, opt) -> None:
        """bpfast.optim's step(): the update from the stored gradients, in place."""
        with self._exclusive():
            if self._state_kind != opt.name:
                self._prepare_state(opt, keep=False)
            before = self._params.copy(), self._state.copy()
            update = opt.update()
            update["step"] = self._state_step
            step = self._engine.step_from_gradients(update)
            if not self._engine.params_finite():
                self._params[...], self._state[...] = before
                raise FloatingPointError(f"{opt!r}.step() would make parameters NaN or "
                                         f"infinite; parameters and state were left as they "
                                         f"were. Try a smaller lr.")
            self._state_step = step

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

