"""The machinery shared by bpfast.sklearn's MLPClassifier and MLPRegressor.

What each hyper-parameter may be is a table in scikit-learn's
``_parameter_constraints`` form, checked by ``BaseEstimator._validate_params``
at the start of ``fit`` and ``partial_fit``: a wrong value raises scikit-learn's
``InvalidParameterError`` (a ValueError and a TypeError) naming the parameter.
What a table cannot say -- no bool for a number, each hidden layer width -- is
checked after it.

``_BaseMLP`` hands solver='lbfgs' to ``bpfast._sklearn_lbfgs`` and maps
scikit-learn's SGD and Adam training onto
:meth:`bpfast.Network.fit`: the learning-rate, L2 and epsilon scaling that make
each update equal to scikit-learn's, sample weights (also through the
early-stopping split), the per-epoch bookkeeping (``loss_curve_``, ``n_iter_``,
``t_``, the stopping rule) run from Network.fit's callback, and what happens on
a divergence or a Ctrl-C. This module imports scikit-learn; ``bpfast.sklearn``
explains when it is missing.
"""
from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from bpfast import optim
from bpfast._sklearn_lbfgs import fit_lbfgs
from bpfast.network import BACKENDS, Network

#: scikit-learn's activation names -> bpfast's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}

PARAMETER_CONSTRAINTS: dict = {
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "solver": [StrOptions({"sgd", "adam", "lbfgs"})],
    "alpha": [Interval(Real, 0, np.inf, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
    "learning_rate_init": [Interval(Real, 0, np.inf, closed="neither")],
    "power_t": [Interval(Real, 0, np.inf, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "shuffle": ["boolean"],
    "random_state": ["random_state"],
    "tol": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "warm_start": ["boolean"],
    # bpfast's momentum update needs momentum < 1 (scikit-learn accepts 1).
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "nesterovs_momentum": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "beta_1": [Interval(Real, 0, 1, closed="left")],
    "beta_2": [Interval(Real, 0, 1, closed="left")],
    "epsilon": [Interval(Real, 0, None, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
    "max_fun": [Interval(Integral, 1, None, closed="left")],
    "dtype": [None, StrOptions({"float32", "float64"}),
              Options(type, {np.float32, np.float64, float}),
              Options(np.dtype, {np.dtype(np.float32), np.dtype(np.float64)})],
    "backend": [StrOptions(set(BACKENDS))],
}


def hidden_sizes(hidden_layer_sizes) -> Tuple[int, ...]:
    """The hidden layer widths as a tuple of ints, each >= 1 (ValueError otherwise)."""
    sizes = hidden_layer_sizes
    if isinstance(sizes, Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    sizes = tuple(sizes)
    if not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be > 0 (ints); got {hidden_layer_sizes!r}")
    return tuple(int(s) for s in sizes)


def check_no_bools(params: dict, constraints: dict) -> None:
    """Refuse True/False for a number (the table's Intervals take bools as 0 and 1)."""
    for name, value in params.items():
        flags = {"boolean", "verbose"} & set(map(str, constraints[name]))
        if isinstance(value, (bool, np.bool_)) and not flags:
            raise ValueError(f"{name} must not be a bool; got {value!r}")


def checked_sample_weight(sample_weight, X):
    """scikit-learn's validation of sample_weight, then bpfast's rule: every weight >= 0."""
    if sample_weight is None:
        return None
    sample_weight = _check_sample_weight(sample_weight, X)
    negative = sample_weight < 0
    if negative.any():
        row = int(np.argmax(negative))
        raise ValueError(f"sample_weight must be >= 0 (bpfast weighs each row's error by it); "
                         f"got {float(sample_weight[row])!r} at row {row}")
    return sample_weight


def scikit_learn_order(n: int, rng):
    """scikit-learn's sample order, epoch after epoch: each epoch shuffles the last one's
    with rng, the generator that drew the initial weights -- so that, batch for batch,
    bpfast's estimators take scikit-learn's very updates. For Network.fit's callable
    ``shuffle``, which asks for each epoch once, in order."""
    indices = np.arange(n)

    def order(epoch: int) -> np.ndarray:
        nonlocal indices
        # The draws of sklearn.utils.shuffle(indices, random_state=rng) (rng.shuffle of
        # an arange), without its checks: a tenth of its time on small data.
        indices = indices[rng.permutation(n)]
        return indices

    return order


def _network_arrays(attr: str, name: str, doc: str) -> property:
    """A property for the network's ``attr`` list ('weights' or 'biases'), public as ``name``.

    Reading gives the live views; assigning a list of arrays of the same shapes
    copies them into the network.
    """
    assigned = "_assigned_" + name

    def get(self) -> List[np.ndarray]:
        net = self.__dict__.get("network_")
        if net is not None:
            return list(getattr(net, attr))
        if assigned in self.__dict__:
            return self.__dict__[assigned]
        raise AttributeError(f"{name} exists only after fit (or after assigning it)")

    def set(self, values: Sequence[np.ndarray]) -> None:
        net = self.__dict__.get("network_")
        if net is None:
            # Before any fit (as scikit-learn's worked example does): kept as given -- the
            # list itself, so that its items may still be replaced -- and copied into the
            # network the next fit or partial_fit creates.
            self.__dict__[assigned] = values
            return
        target = getattr(net, attr)
        if len(values) != len(target):
            raise ValueError(f"{name} needs {len(target)} arrays; got {len(values)}")
        for i, value in enumerate(values):
            target[i] = value

    return property(get, set, doc=doc)


class _BaseMLP(BaseEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor; not for direct use."""

    # Set by the subclasses.
    _output_activation = "identity"
    _loss = "mse"

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, backend="cython"):
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
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.backend = backend

    coefs_ = _network_arrays("weights", "coefs_", """\
        Weight matrices, ``coefs_[i]`` of shape ``(layer_units[i], layer_units[i+1])``.

        Live views of ``network_.weights`` (float32 or float64): changing one in
        place changes the model. Assigning a list of arrays of the same shapes
        copies them into the network.""")
    intercepts_ = _network_arrays("biases", "intercepts_", """\
        Bias vectors, ``intercepts_[i]`` of shape ``(layer_units[i+1],)``; live views.""")

    def _initialize(self, n_features: int, n_outputs: int, dtype, rng) -> None:
        """A new network with scikit-learn's Glorot-uniform initialisation, drawn from rng."""
        sizes = [n_features, *hidden_sizes(self.hidden_layer_sizes), n_outputs]
        output_activation, loss, self.out_activation_ = self._output()
        net = Network(sizes, activation=ACTIVATIONS[self.activation],
                      output_activation=output_activation, loss=loss,
                      dtype=dtype, backend=self.backend, seed=0)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            net.weights[i][...] = rng.uniform(-bound, bound, (fan_in, fan_out))
            net.biases[i][...] = rng.uniform(-bound, bound, fan_out)
        for attr, name in (("weights", "coefs_"), ("biases", "intercepts_")):
            values = self.__dict__.pop("_assigned_" + name, None)
            if values is not None:      # assigned before this first fit: they win
                for target, value in zip(getattr(net, attr), values):
                    target[...] = np.reshape(value, target.shape)
        self.network_ = net
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(sizes)
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

    def _output(self):
        """(bpfast's output activation, bpfast's loss, scikit-learn's out_activation_)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None):
        """Train on (X, y), from scratch unless ``warm_start``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Real numbers; converted once to the network's dtype.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            MLPClassifier: class labels (numbers or strings), or a 0/1 multilabel
            indicator matrix. MLPRegressor: real-valued targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights >= 0 (not all 0), as in scikit-learn: each batch's loss and
            gradient are the weighted mean over its rows; integer weights on a full
            batch equal repeating the rows. With ``early_stopping`` the weights are
            split with the rows and weigh the validation score (accuracy, or R^2).

        Returns
        -------
        self : the fitted estimator
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _fit(self, X, y, incremental: bool, classes=None, sample_weight=None):
        self._validate_params()         # the table above, then what it cannot say
        check_no_bools(self.get_params(deep=False), self._parameter_constraints)
        hidden = hidden_sizes(self.hidden_layer_sizes)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = "network_" not in self.__dict__ or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, first_pass, classes)
        if hasattr(X, "tocsr"):
            X = X.tocsr()           # CSC as CSR: the row batches bpfast reads
        sample_weight = checked_sample_weight(sample_weight, X)
        rng = check_random_state(self.random_state)
        if first_pass:
            dtype = self.dtype if self.dtype is not None else X.dtype
            self._initialize(X.shape[1], Y.shape[1], dtype, rng)
        else:
            want = [X.shape[1], *hidden, Y.shape[1]]
            if self.network_.sizes != want:
                raise ValueError(
                    f"warm_start / partial_fit continue the fitted network of layer sizes "
                    f"{self.network_.sizes}, but the data and hidden_layer_sizes give {want}; "
                    f"fit again with warm_start=False to start over")
        if not incremental or "_optimizer_lr" not in self.__dict__:
            self._optimizer_lr = float(self.learning_rate_init)  # the optimizer's state
        if self.solver == "lbfgs":
            fit_lbfgs(self, X, Y, sample_weight)
            return self
        validation = None
        if self.early_stopping:
            X, Y, sample_weight, validation = self._split_validation(X, Y, sample_weight, rng)
            if sample_weight is not None and not sample_weight.any():
                raise ValueError("sample_weight is 0 on every row of the training part left "
                                 "by the early-stopping split: no row would count")
        self._fit_stochastic(X, Y, sample_weight, validation, incremental, rng)
        return self

    def _split_validation(self, X, Y, sample_weight, rng):
        """scikit-learn's hold-out split: X, Y, sample_weight of the training part, and
        (X_val, y_val, sample_weight_val) -- the weights split with the rows.

        As scikit-learn 1.9, a classifier with one output (two classes) is stratified on
        its 0/1 target (so too small a class raises train_test_split's error); several
        outputs (more classes, multilabel) and a regressor are not.
        """
        arrays = [X, Y] if sample_weight is None else [X, Y, sample_weight]
        stratify = Y.astype(bool) if self._is_classifier and Y.shape[1] == 1 else None
        split = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        X, X_val, Y, Y_val = split[:4]
        sw, sw_val = (None, None) if sample_weight is None else split[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X, Y, sw, (X_val, self._targets_of(Y_val), sw_val)

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped", UserWarning, stacklevel=5)
        return int(np.clip(self.batch_size, 1, n))

    def _fit_stochastic(self, X, Y, sample_weight, validation, incremental, rng) -> None:
        net = self.network_
        n = X.shape[0]
        batch_size = self._batch_size(n)
        # bpfast's loss -> scikit-learn's: the classifier's cross-entropy is the same
        # (softmax, dLoss/dZ = (A - Y) / batch). scikit-learn's squared loss is half the
        # mean, but its gradient is (A - Y) / batch whatever the number of outputs, while
        # bpfast's 'mse' has 2 (A - Y) / (batch * n_outputs): bpfast's gradients are
        # scikit-learn's divided by scale = n_outputs / 2. SGD: scaling the learning rate by
        # scale (and the decay by its inverse) gives the same update. Adam, whose step
        # m / (sqrt(v) + eps) does not change when the gradient and eps scale together:
        # eps / scale (and the same decay) gives the same update.
        squared = net.loss == "mse"     # the cross-entropies and Poisson are scikit-learn's
        scale = self.n_outputs_ / 2.0 if squared else 1.0
        data_factor = 0.5 if squared else 1.0
        # scikit-learn: alpha / sw_sum * W, sw_sum the batch's sum of weights (its size
        # without weights). bpfast's decay is one number: the nominal batch times the mean
        # weight -- the same when every batch is full and the batches' weights sum alike
        # (one batch, equal weights).
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        l2 = float(self.alpha) / (batch_size * mean_weight)
        weight_decay = l2 / scale
        # An epoch's loss from bpfast is data + 0.5 * weight_decay * sq (sq = sum(W**2) at
        # its end); scikit-learn's is data_factor * data + 0.5 * l2 * sq, the same up to
        # sq_coef * sq -- and sq_coef is 0 unless a regressor has several outputs.
        sq_coef = 0.5 * (l2 - data_factor * weight_decay)
        order = scikit_learn_order(n, rng) if self.shuffle else False
        self.n_iter_ = 0
        stopped = False
        # The stopping rule reads each epoch's loss, but the count it compares with
        # n_iter_no_change grows by at most 1 per epoch: unless something must be seen
        # every epoch, the callback asks for the epochs that cannot stop to run in one go.
        every_epoch = (validation is not None or bool(self.verbose) or sq_coef != 0
                       or self._schedule() == "invscaling")

        def take_in(history) -> bool:
            """scikit-learn's bookkeeping for the epochs not taken in yet; False: stop."""
            # n_iter_ counts this fit's epochs taken in: _end_of_epoch adds 1 first thing.
            while self.n_iter_ < len(history.loss):
                if not self._end_of_epoch(data_factor * history.loss[self.n_iter_], sq_coef, n,
                                          validation):
                    return False
            return True

        def callback(epoch: int, history):
            nonlocal stopped
            if not take_in(history):
                stopped = True
                return False
            if every_epoch:
                return True
            return int(min(self.max_iter, self.n_iter_no_change + 1 - self._no_improvement_count))

        if self.solver == "adam":
            # scikit-learn's AdamOptimizer: eps added to sqrt(v), the bias corrections in
            # the rate (folded_eps); its rate ignores learning_rate's schedules.
            rule = dict(optimizer=optim.Adam(
                net, lr=float(self.learning_rate_init),
                betas=(float(self.beta_1), float(self.beta_2)),
                eps=float(self.epsilon) / scale, weight_decay=weight_decay, folded_eps=True))
        else:
            rule = dict(optimizer="sgd", lr=float(self.learning_rate_init),
                        momentum=float(self.momentum), nesterov=bool(self.nesterovs_momentum),
                        weight_decay=weight_decay,
                        lr_schedule=lambda epoch: self._optimizer_lr * scale)
        # partial_fit continues the optimizer's state (velocities; Adam's moments and step
        # count) -- if it is this solver's: after a change of solver it starts afresh.
        keep_state = incremental and net._state_kind == self.solver
        # After an interrupt or a divergence, Network.fit's History of this call (its
        # history_) holds the epochs completed since the callback last ran.
        earlier_history = getattr(net, "history_", None)
        diverged, interrupted = None, False
        try:
            net.fit(X, Y, epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                    shuffle=order, seed=0, callback=callback,
                    keep_state=keep_state, sample_weight=sample_weight, **rule)
        except FloatingPointError as exc:
            diverged = exc
        except KeyboardInterrupt:
            interrupted = True
        if diverged is not None or interrupted:
            history = getattr(net, "history_", None)
            if history is not None and history is not earlier_history:
                take_in(history)
        if diverged is not None and not self.early_stopping:
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed, or "
                             f"learning_rate_init is too large ({diverged})") from None
        if diverged is not None:
            # scikit-learn trains on with non-finite weights to max_iter -- every epoch's
            # loss and validation score nan, which never counts as "no improvement" -- then
            # restores the best weights: its record, without running the nan epochs.
            remaining = self.max_iter - self.n_iter_
            self.loss_curve_.extend([np.nan] * remaining)
            self.validation_scores_.extend([np.nan] * remaining)
            self.loss_ = np.nan
            self.t_ += remaining * n
            self.n_iter_ = self.max_iter
            self._no_improvement_count = 0
            warnings.warn(f"Training diverged ({diverged}); the weights with the best "
                          "validation score were kept.", ConvergenceWarning, stacklevel=4)
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        elif interrupted:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        elif not incremental and not stopped and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        if self.early_stopping:
            net.set_parameters(self._best_params)

    def _schedule(self) -> str:
        """The learning-rate rule in force: learning_rate for 'sgd'; scikit-learn's Adam
        keeps learning_rate_init whatever learning_rate says (and stops where 'adaptive'
        would lower the rate)."""
        return self.learning_rate if self.solver == "sgd" else "constant"

    def _end_of_epoch(self, loss, sq_coef, n, validation) -> bool:
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
        self._update_no_improvement_count(validation)
        schedule = self._schedule()
        if schedule == "invscaling":
            self._optimizer_lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if schedule != "adaptive":
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

    def _update_no_improvement_count(self, validation) -> None:
        if validation is not None:
            X_val, y_val, sample_weight_val = validation
            # Called back from inside Network.fit: its owning thread may predict.
            score = self._validation_score(self.network_.predict(X_val), y_val,
                                           sample_weight_val)
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True       # CSR and CSC X
        return tags

    # ------------------------------------------------------------------ prediction
    def predict(self, X: ArrayLike) -> np.ndarray:
        """The prediction of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            MLPClassifier: the most probable class, from ``classes_`` (multilabel: the
            indicator matrix, probability > 0.5). MLPRegressor: the network's output, in
            its dtype; 1-D for one output.
        """
        return self._targets_of(self._forward(X))

    def _targets_of(self, Y):
        """What the network's outputs Y predict (set by the subclasses)."""
        raise NotImplementedError

    def _forward(self, X: ArrayLike) -> np.ndarray:
        # Reads the fitted state only: predict, predict_proba and score may run in threads.
        check_is_fitted(self, "network_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32),
                          reset=False)
        if hasattr(X, "tocsr"):
            X = X.tocsr()
        return self.network_.predict(X)
