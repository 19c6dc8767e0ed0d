"""scikit-learn estimators trained by bpfast: ``MLPClassifier`` and ``MLPRegressor``.

They follow ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` with
``solver='sgd'``: the same parameter names, defaults and meanings, the same
Glorot-uniform initialisation drawn from the same ``random_state`` stream, the
same momentum / Nesterov update, L2 penalty, learning-rate schedules and
stopping rule -- but the epochs run in bpfast's native engine, as many at a
time as the stopping rule allows, through :meth:`bpfast.Network.fit`.

    >>> from bpfast.sklearn import MLPClassifier            # doctest: +SKIP
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=0.1,
    ...                     batch_size=32, random_state=0).fit(X, y)
    >>> clf.predict(X[:5]), clf.predict_proba(X[:5])

This module needs scikit-learn (>= 1.6); ``import bpfast`` itself does not.

Differences from scikit-learn's own MLP, all deliberate and documented:

- only ``solver='sgd'`` (plain / momentum / Nesterov SGD); no ``sample_weight``;
  no sparse input; no multilabel classification.
- a classifier always has a softmax output, one unit per class (also for two
  classes, where scikit-learn uses one logistic unit): ``coefs_[-1]`` has shape
  ``(n_hidden, n_classes)``. A single class gives one unit whose probability is 1.
- the L2 penalty uses the nominal batch size for every batch (scikit-learn
  divides by the actual size of the last, possibly smaller, batch), and the
  L2 part of ``loss_curve_`` is computed with the weights at the end of the epoch.
- ``partial_fit`` keeps the optimizer's state between calls, as scikit-learn
  does: the learning rate and the momentum velocities.
- ``momentum`` must be < 1.
"""
from __future__ import annotations

import numbers
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "bpfast.sklearn needs scikit-learn >= 1.6 (pip install 'scikit-learn>=1.6'). "
        "The rest of bpfast (bpfast.Network, bpfast.save/load, the CLI) works without it. "
        f"The import failed with: {_exc}") from _exc

from bpfast.network import Network

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names -> bpfast's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
LEARNING_RATES = ("constant", "invscaling", "adaptive")
BACKENDS = ("cython", "reference")


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


class _BaseMLP(BaseEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor; not for direct use."""

    # Set by the subclasses.
    _output_activation = "identity"
    _loss = "mse"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="sgd",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, dtype=None, backend="cython"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.backend = backend

    # ------------------------------------------------------------------ parameters
    def _hidden_sizes(self) -> Tuple[int, ...]:
        h = self.hidden_layer_sizes
        if _is_int(h):
            h = (h,)
        if isinstance(h, (str, bytes)) or not hasattr(h, "__iter__"):
            raise ValueError("hidden_layer_sizes must be an int or a sequence of ints >= 1; "
                             f"got {self.hidden_layer_sizes!r}")
        h = tuple(h)
        if not all(_is_int(s) and s >= 1 for s in h):
            raise ValueError("hidden_layer_sizes must be > 0 (ints); "
                             f"got {self.hidden_layer_sizes!r}")
        return tuple(int(s) for s in h)

    def _check_params(self) -> None:
        """Validate the hyper-parameters (in fit, never in __init__/set_params)."""
        self._hidden_sizes()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}; got {self.activation!r}")
        if self.solver != "sgd":
            raise ValueError("bpfast's MLP estimators implement solver='sgd' only (with momentum "
                             f"and Nesterov momentum); got solver={self.solver!r}")
        if not (_is_real(self.alpha) and self.alpha >= 0 and np.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a finite number >= 0; got {self.alpha!r}")
        if not (self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1; got {self.batch_size!r}")
        if self.learning_rate not in LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {LEARNING_RATES}; got {self.learning_rate!r}")
        if not (_is_real(self.learning_rate_init) and self.learning_rate_init > 0
                and np.isfinite(self.learning_rate_init)):
            raise ValueError(f"learning_rate_init must be a finite number > 0; got {self.learning_rate_init!r}")
        if not (_is_real(self.power_t) and self.power_t >= 0 and np.isfinite(self.power_t)):
            raise ValueError(f"power_t must be a finite number >= 0; got {self.power_t!r}")
        if not (_is_int(self.max_iter) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an int >= 1; got {self.max_iter!r}")
        if not (_is_real(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0; got {self.tol!r}")
        if not (_is_real(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be a number in [0, 1); got {self.momentum!r}")
        if not (_is_real(self.validation_fraction) and 0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}")
        if not (_is_int(self.n_iter_no_change) and self.n_iter_no_change >= 1):
            raise ValueError(f"n_iter_no_change must be an int >= 1; got {self.n_iter_no_change!r}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if not (isinstance(self.verbose, (bool, np.bool_)) or _is_int(self.verbose)):
            raise ValueError(f"verbose must be a bool or an int; got {self.verbose!r}")
        if self.dtype is not None:
            try:
                dt = np.dtype(self.dtype)
            except TypeError:
                dt = None
            if dt not in (np.float32, np.float64):
                raise ValueError(f"dtype must be None, 'float32' or 'float64'; got {self.dtype!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {self.backend!r}")

    # ------------------------------------------------------------------ the network
    @property
    def coefs_(self) -> List[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape ``(layer_units[i], layer_units[i+1])``.

        Live views of ``network_.weights`` (float32 or float64): changing one in
        place changes the model. Assigning a list of arrays of the same shapes
        copies them into the network.
        """
        net = self.__dict__.get("network_")
        if net is None:
            raise AttributeError("coefs_ exists only after fit")
        return list(net.weights)

    @coefs_.setter
    def coefs_(self, values: Sequence[np.ndarray]) -> None:
        net = self.__dict__.get("network_")
        if net is None:
            raise AttributeError("coefs_ can be set only after fit")
        if len(values) != len(net.weights):
            raise ValueError(f"coefs_ needs {len(net.weights)} arrays; got {len(values)}")
        for i, W in enumerate(values):
            net.weights[i] = W

    @property
    def intercepts_(self) -> List[np.ndarray]:
        """Bias vectors, ``intercepts_[i]`` of shape ``(layer_units[i+1],)``; live views."""
        net = self.__dict__.get("network_")
        if net is None:
            raise AttributeError("intercepts_ exists only after fit")
        return list(net.biases)

    @intercepts_.setter
    def intercepts_(self, values: Sequence[np.ndarray]) -> None:
        net = self.__dict__.get("network_")
        if net is None:
            raise AttributeError("intercepts_ can be set only after fit")
        if len(values) != len(net.biases):
            raise ValueError(f"intercepts_ needs {len(net.biases)} arrays; got {len(values)}")
        for i, b in enumerate(values):
            net.biases[i] = b

    def _initialize(self, n_features: int, n_outputs: int, dtype, rng) -> None:
        """A new network with scikit-learn's Glorot-uniform initialisation, drawn from rng."""
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        net = Network(sizes, activation=ACTIVATIONS[self.activation],
                      output_activation=self._output_activation, loss=self._loss,
                      dtype=dtype, backend=self.backend, seed=0)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            net.weights[i][...] = rng.uniform(-bound, bound, (fan_in, fan_out))
            net.biases[i][...] = rng.uniform(-bound, bound, fan_out)
        self.network_ = net
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(sizes)
        self.out_activation_ = "softmax" if self._output_activation == "softmax" else "identity"
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._best_params = net.get_parameters()
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    # ------------------------------------------------------------------ training
    def _fit(self, X, y, incremental: bool, classes=None):
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = "network_" not in self.__dict__ or (not self.warm_start and not incremental)
        X, Y, labels = self._validate_input(X, y, incremental, first_pass, classes)
        rng = check_random_state(self.random_state)
        if first_pass:
            dtype = self.dtype if self.dtype is not None else X.dtype
            self._initialize(X.shape[1], Y.shape[1], dtype, rng)
        else:
            want = [X.shape[1], *self._hidden_sizes(), Y.shape[1]]
            if self.network_.sizes != want:
                raise ValueError(
                    f"warm_start / partial_fit continue the fitted network of layer sizes "
                    f"{self.network_.sizes}, but the data and hidden_layer_sizes give {want}; "
                    f"fit again with warm_start=False to start over")
        self._fit_stochastic(X, Y, labels, incremental, rng)
        return self

    def _fit_stochastic(self, X, Y, labels, incremental, rng) -> None:
        net = self.network_
        if not incremental or "_optimizer_lr" not in self.__dict__:
            self._optimizer_lr = float(self.learning_rate_init)  # the optimizer's state
        X_val = y_val = shadow = None
        if self.early_stopping:
            stratify = labels if labels is not None else None
            split = train_test_split(X, Y, *(() if labels is None else (labels,)),
                                     random_state=rng, test_size=self.validation_fraction,
                                     stratify=stratify)
            X, X_val, Y, Y_val = split[:4]
            y_val = split[5] if labels is not None else (Y_val.ravel() if Y_val.shape[1] == 1 else Y_val)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            # Network.fit holds the network's lock while it calls back: the validation
            # score is computed on a twin network that receives the current parameters.
            shadow = Network(net.sizes, activation=net.activation,
                                   output_activation=net.output_activation, loss=net.loss,
                                   dtype=net.dtype, backend=net.backend, seed=0)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", UserWarning, stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n))
        # bpfast's loss -> scikit-learn's: the classifier's cross-entropy is the same
        # (softmax, dLoss/dZ = (A - Y) / batch). scikit-learn's squared loss is half the
        # mean, but its gradient is (A - Y) / batch whatever the number of outputs, while
        # bpfast's 'mse' has 2 (A - Y) / (batch * n_outputs): scaling the learning rate
        # by n_outputs / 2 (and the decay by its inverse) gives the same update.
        scale = 1.0 if self._loss == "cross_entropy" else self.n_outputs_ / 2.0
        data_factor = 1.0 if self._loss == "cross_entropy" else 0.5
        l2 = float(self.alpha) / batch_size            # scikit-learn: alpha / n_batch * W
        weight_decay = l2 / scale
        # An epoch's loss from bpfast is data + 0.5 * weight_decay * sq (sq = sum(W**2) at
        # its end); scikit-learn's is data_factor * data + 0.5 * l2 * sq, the same up to
        # sq_coef * sq -- and sq_coef is 0 unless a regressor has several outputs.
        sq_coef = 0.5 * (l2 - data_factor * weight_decay)
        seed = int(rng.randint(np.iinfo(np.int32).max)) if self.shuffle else 0
        self.n_iter_ = 0
        stopped = False

        def schedule(epoch: int) -> float:
            return self._optimizer_lr * scale

        # The stopping rule reads each epoch's loss, but the count it compares with
        # n_iter_no_change grows by at most 1 per epoch: unless something must be seen
        # every epoch, the callback asks for the epochs that cannot stop to run in one go.
        every_epoch = (self.early_stopping or bool(self.verbose) or sq_coef != 0
                       or self.learning_rate == "invscaling")
        seen = 0

        def callback(epoch: int, history):
            nonlocal stopped, seen
            for loss in history.loss[seen:]:
                seen += 1
                if not self._end_of_epoch(data_factor * loss, sq_coef, n, X_val, y_val, shadow):
                    stopped = True
                    return False
            if every_epoch:
                return True
            return self.n_iter_no_change + 1 - self._no_improvement_count

        try:
            net.fit(X, Y, epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                    lr=float(self.learning_rate_init), shuffle=bool(self.shuffle), seed=seed,
                    momentum=float(self.momentum), nesterov=bool(self.nesterovs_momentum),
                    weight_decay=weight_decay, lr_schedule=schedule, callback=callback,
                    keep_momentum=incremental)
        except FloatingPointError as exc:
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed, or "
                             f"learning_rate_init is too large ({exc})") from None
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if not incremental and not stopped and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        if self.early_stopping:
            net.set_parameters(self._best_params)

    def _end_of_epoch(self, loss, sq_coef, n, X_val, y_val, shadow) -> bool:
        """scikit-learn's bookkeeping after an epoch; False when training must stop."""
        if sq_coef:
            weights = self.network_.weights
            loss += sq_coef * sum(float(np.dot(W.ravel(), W.ravel())) for W in weights)
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n
        self.loss_curve_.append(loss)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, loss))
        self._update_no_improvement_count(X_val, y_val, shadow)
        if self.learning_rate == "invscaling":
            self._optimizer_lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if self.learning_rate != "adaptive":
                if self.verbose:
                    print(msg + " Stopping.")
                return False
            if self._optimizer_lr <= 1e-6:
                if self.verbose:
                    print(msg + " Learning rate too small. Stopping.")
                return False
            self._optimizer_lr /= 5.0
            if self.verbose:
                print(msg + " Setting learning rate to %f" % self._optimizer_lr)
            self._no_improvement_count = 0
        return True

    def _update_no_improvement_count(self, X_val, y_val, shadow) -> None:
        if self.early_stopping:
            shadow.set_parameters(self.network_.get_parameters())
            score = self._validation_score(shadow.predict(X_val), y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self.network_.get_parameters()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # ------------------------------------------------------------------ prediction
    def _forward(self, X: ArrayLike) -> np.ndarray:
        check_is_fitted(self, "network_")
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return self.network_.predict(X)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(super().__getstate__())
        net = state.pop("network_", None)
        if net is not None:
            # A Network holds a lock and a native engine: store what rebuilds it.
            state["_network_state"] = {
                "sizes": list(net.sizes), "activation": net.activation,
                "output_activation": net.output_activation, "loss": net.loss,
                "dtype": net.dtype.name, "backend": net.backend, "params": net.get_parameters()}
        return state

    def __setstate__(self, state):
        state = dict(state)
        spec = state.pop("_network_state", None)
        super().__setstate__(state)
        if spec is not None:
            net = Network(spec["sizes"], activation=spec["activation"],
                          output_activation=spec["output_activation"], loss=spec["loss"],
                          dtype=spec["dtype"], backend=spec["backend"], seed=0)
            net.set_parameters(spec["params"])
            self.network_ = net


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by bpfast (SGD, softmax + cross-entropy).

    A drop-in for ``sklearn.neural_network.MLPClassifier(solver='sgd')``: same
    parameters, defaults, initialisation and update rule, with the epochs run
    by bpfast's compiled engine.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Width of each hidden layer; ``()`` gives a softmax regression.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Hidden activation (bpfast's 'identity', 'sigmoid', 'tanh', 'relu').
    solver : {'sgd'}, default='sgd'
        The only solver; present for compatibility with scikit-learn.
    alpha : float >= 0, default=0.0001
        L2 penalty, as in scikit-learn: each batch adds ``alpha / (2 * batch) * ||W||^2``
        to the loss (biases are not penalised), i.e. ``weight_decay = alpha / batch_size``.
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is ``min(200, n_samples)``; larger values are clipped.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        'constant': ``learning_rate_init``; 'invscaling': after each epoch,
        ``learning_rate_init / (t + 1) ** power_t`` with ``t`` the samples seen;
        'adaptive': divided by 5 each time the loss stalls (see ``tol``) until < 1e-6.
    learning_rate_init : float > 0, default=0.001
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples every epoch (bpfast's native shuffle, seeded from
        ``random_state``; the order differs from scikit-learn's).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the validation split and the shuffling.
    tol : float >= 0, default=1e-4
        Training stops when the loss (or the validation accuracy with
        ``early_stopping``) has not improved by ``tol`` for more than
        ``n_iter_no_change`` consecutive epochs.
    verbose : bool, default=False
        Print the loss after every epoch.
    warm_start : bool, default=False
        ``fit`` continues from the previous solution (same classes required).
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), stop on its
        accuracy and keep the best weights.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int >= 1, default=10
    dtype : {None, 'float32', 'float64'}, default=None
        Floating-point type of the network; None follows X (float32 stays
        float32, anything else becomes float64).
    backend : {'cython', 'reference'}, default='cython'
        'reference' trains on bpfast's pure-Python kernels (slow; for checking).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    network_ : bpfast.Network
        The trained network, sizes ``[n_features_in_, *hidden_layer_sizes, n_classes]``.
    coefs_ : list of ndarray
        ``coefs_[i]`` of shape ``(layer_units[i], layer_units[i + 1])``; live views
        of ``network_.weights``.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` of shape ``(layer_units[i + 1],)``; live views of ``network_.biases``.
    loss_ : float
        Loss of the last epoch (mean cross-entropy + L2 term).
    loss_curve_ : list of float
        Loss of every epoch, over all calls since the network was created.
    best_loss_ : float or None
        Smallest loss seen (None with ``early_stopping``).
    validation_scores_ : list of float or None
        Validation accuracy per epoch (``early_stopping`` only).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last ``fit`` (1 after ``partial_fit``).
    t_ : int
        Training samples seen since the network was created.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of output units (= n_classes).
    out_activation_ : str
        'softmax'.
    """

    _output_activation = "softmax"
    _loss = "cross_entropy"

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first_pass)
        if y.ndim == 1 and y.dtype.kind in "biu":
            labels = np.unique(y)       # integer labels are classes: skip type_of_target
        else:
            check_classification_targets(y)
            labels = unique_labels(y)
        if first_pass:
            if incremental:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit.")
                self.classes_ = unique_labels(classes)
            else:
                self.classes_ = labels
        elif incremental and classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"`classes={unique_labels(classes)!r}` is not the same as on the last "
                             f"call to partial_fit, was: {self.classes_!r}")
        if not first_pass and self.warm_start and not incremental:
            if set(labels) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes as "
                                 f"in the previous call to fit. Previously got {self.classes_}, "
                                 f"`y` has {labels}")
        elif labels is not self.classes_ and len(np.setdiff1d(labels, self.classes_)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{self.classes_}. 'y' has {labels}.")
        Y = (y[:, None] == self.classes_[None, :]).astype(X.dtype)
        return X, Y, y

    def _validation_score(self, out, y) -> float:
        return float(accuracy_score(y, self.classes_[np.argmax(out, axis=1)]))

    def fit(self, X: ArrayLike, y: ArrayLike) -> "MLPClassifier":
        """Train on (X, y), from scratch unless ``warm_start``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Real numbers; converted once to the network's dtype.
        y : array-like of shape (n_samples,)
            Class labels (numbers or strings).

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: Optional[ArrayLike] = None) -> "MLPClassifier":
        """One epoch of SGD over (X, y), continuing the current network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes; required on the first call (when not fitted yet).

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (softmax outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``; the network's dtype.
        """
        return self._forward(X)

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Logarithm of ``predict_proba(X)``, shape (n_samples, n_classes)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self._forward(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by bpfast (SGD, identity output, squared error).

    A drop-in for ``sklearn.neural_network.MLPRegressor(solver='sgd')``: same
    parameters, defaults, initialisation and update rule. Internally the
    network minimises bpfast's ``'mse'`` (mean over samples and outputs of
    ``(A - Y) ** 2``) with the learning rate scaled by ``n_outputs / 2``, which
    makes each update equal to scikit-learn's; ``loss_curve_`` reports
    scikit-learn's value, half the mean squared error plus the L2 term.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
    solver : {'sgd'}, default='sgd'
    alpha : float >= 0, default=0.0001
        L2 penalty: ``alpha / (2 * batch) * ||W||^2`` per batch.
    batch_size : int or 'auto', default='auto'
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
    learning_rate_init : float > 0, default=0.001
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
    tol : float >= 0, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Stop on the R^2 of a held-out ``validation_fraction`` and keep the best weights.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int >= 1, default=10
    dtype : {None, 'float32', 'float64'}, default=None
    backend : {'cython', 'reference'}, default='cython'

    See :class:`MLPClassifier` for the meaning of each parameter.

    Attributes
    ----------
    network_ : bpfast.Network
        Sizes ``[n_features_in_, *hidden_layer_sizes, n_outputs_]``.
    coefs_, intercepts_ : list of ndarray
        Live views of the network's weights and biases.
    loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_ :
        As for MLPClassifier, with the squared error (validation: R^2).
    n_iter_, t_, n_features_in_, feature_names_in_, n_layers_, n_outputs_ : int
    out_activation_ : str
        'identity'.
    """

    _output_activation = "identity"
    _loss = "mse"

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=True, reset=first_pass)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, Y, None

    def _validation_score(self, pred, y) -> float:
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y, pred.ravel() if pred.shape[1] == 1 else pred))

    def fit(self, X: ArrayLike, y: ArrayLike) -> "MLPRegressor":
        """Train on (X, y), from scratch unless ``warm_start``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Real-valued targets.

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> "MLPRegressor":
        """One epoch of SGD over (X, y), continuing the current network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Network output for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) for one output, else (n_samples, n_outputs)
            In the network's dtype.
        """
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
