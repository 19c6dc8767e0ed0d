"""scikit-learn estimators trained by bpfast: ``MLPClassifier`` and ``MLPRegressor``.

They follow ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the
same parameter names, defaults and meanings, the same solvers (``'adam'``, the
default, ``'sgd'`` and ``'lbfgs'``), the same output layers and losses (softmax
for several classes; one logistic unit for two classes; logistic units for a
multilabel indicator ``y``; identity, or ``exp`` with ``loss='poisson'``, for
the regressor, one unit per target), the same Glorot-uniform initialisation
drawn from the same ``random_state`` stream, the same Adam arithmetic (epsilon
added to ``sqrt(v)``, the bias corrections folded into the learning rate), the
same momentum / Nesterov update, L2 penalty, learning-rate schedules, sample
weights and stopping rule, the same order of the samples (``shuffle=True``
shuffles each epoch with the ``random_state`` stream, as scikit-learn does), and
scipy.sparse CSR / CSC input. The stochastic
solvers run their epochs in bpfast's native engine, as many at a time as the
stopping rule allows, through :meth:`bpfast.Network.fit`; ``'lbfgs'`` runs
``scipy.optimize.minimize(method='L-BFGS-B')`` on scikit-learn's objective, each
loss and gradient over all rows one native call
(:meth:`bpfast.Network.loss_and_gradient`). scikit-learn's own test suite
(``sklearn/neural_network/tests/test_mlp.py``) runs on these estimators in
bpfast's tests.

    >>> from bpfast.sklearn import MLPClassifier            # doctest: +SKIP
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), batch_size=32,
    ...                     random_state=0).fit(X, y)
    >>> clf.predict(X[:5]), clf.predict_proba(X[:5])

This module needs scikit-learn (>= 1.6); ``import bpfast`` itself does not.

Differences from scikit-learn's own MLP, all deliberate and documented:

- sparse X is densified one batch at a time (the model equals the dense
  input's, bit for bit); ``'lbfgs'`` densifies it once.
- the L2 penalty divides ``alpha`` by the nominal batch size times the mean
  sample weight for every batch (scikit-learn divides by each batch's sum of
  weights: its size without weights, smaller for the last batch), and the L2
  part of ``loss_curve_`` is computed with the weights at the end of the epoch.
- ``sample_weight`` must be >= 0 (scikit-learn also takes negative weights). A
  batch whose weights are all 0 moves nothing by its data (scikit-learn raises
  ZeroDivisionError), though Adam's moments and the L2 decay still act.
- ``partial_fit`` keeps the optimizer's state between calls, as scikit-learn
  does: the learning rate and the momentum velocities, or Adam's moments and
  step count (a pickled or deep-copied estimator keeps them too). If ``solver``
  changed in between, the new solver starts afresh (scikit-learn carries on
  with the old one).
- ``momentum`` must be < 1.
- training stops at the first epoch whose loss or parameters are not finite,
  and the parameters go back to their values at the start of that epoch; then
  ``fit`` raises scikit-learn's ValueError ("Solver produced non-finite parameter
  weights"), or, with ``early_stopping``, keeps the best weights and warns, as
  scikit-learn ends up doing (its remaining epochs, up to ``max_iter``, are
  recorded as scikit-learn records them: a nan loss and a nan validation score
  each, without being run). scikit-learn instead trains on to ``max_iter`` and
  raises only if the final weights are not finite: a loss that overflows to
  infinity while the weights stay finite passes there and raises here.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

try:
    from sklearn.base import ClassifierMixin, RegressorMixin
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils._param_validation import StrOptions
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import column_or_1d, validate_data

    from bpfast._sklearn_base import PARAMETER_CONSTRAINTS, _BaseMLP
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "bpfast.sklearn needs scikit-learn >= 1.6 (pip install 'scikit-learn>=1.6'). "
        "The rest of bpfast (bpfast.Network, bpfast.save/load, the CLI) works without it. "
        f"The import failed with: {_exc}") from _exc

__all__ = ["MLPClassifier", "MLPRegressor"]


def _stochastic_solver(estimator) -> bool:
    """partial_fit exists for 'sgd' and 'adam' only (scikit-learn's available_if)."""
    if estimator.solver not in ("sgd", "adam"):
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True

_ACCEPT_SPARSE = ["csr", "csc"]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by bpfast (Adam, SGD or L-BFGS).

    A drop-in for ``sklearn.neural_network.MLPClassifier``: same parameters,
    defaults, initialisation, output layers and update rules, with the
    computation done by bpfast's compiled engine. Several classes get a softmax
    output and the cross-entropy; two classes one logistic unit (the probability
    of ``classes_[1]``) and a multilabel indicator ``y`` one logistic unit per
    label, with the binary cross-entropy.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Width of each hidden layer; ``()`` gives a softmax regression.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Hidden activation (bpfast's 'identity', 'sigmoid', 'tanh', 'relu').
    solver : {'adam', 'sgd', 'lbfgs'}, default='adam'
        'adam': scikit-learn's Adam (see ``beta_1``, ``beta_2``, ``epsilon``; the rate
        is ``learning_rate_init`` whatever ``learning_rate`` says, as in scikit-learn);
        'sgd': SGD with ``momentum``, ``nesterovs_momentum`` and ``learning_rate``;
        'lbfgs': full-batch L-BFGS-B (scipy) on the loss over all rows plus
        ``alpha / (2 * n_samples) * ||W||^2``, stopped by ``max_iter``, ``max_fun`` and
        ``tol`` (scipy's ``gtol``); no ``partial_fit``.
    alpha : float >= 0, default=0.0001
        L2 penalty, as in scikit-learn: each batch adds ``alpha / (2 * batch) * ||W||^2``
        to the loss (biases are not penalised), i.e. ``weight_decay = alpha / batch_size``
        (with ``sample_weight``, batch counts ``batch_size * mean(sample_weight)``).
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is ``min(200, n_samples)``; larger values are clipped.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        For ``solver='sgd'`` only: 'constant': ``learning_rate_init``; 'invscaling':
        after each epoch, ``learning_rate_init / (t + 1) ** power_t`` with ``t`` the
        samples seen; 'adaptive': divided by 5 each time the loss stalls (see ``tol``)
        until < 1e-6.
    learning_rate_init : float > 0, default=0.001
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples every epoch, in scikit-learn's order (drawn from the
        ``random_state`` stream).
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
        ``solver='sgd'`` only.
    nesterovs_momentum : bool, default=True
        ``solver='sgd'`` only.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for two classes, as
        scikit-learn does), stop on its accuracy (weighted by ``sample_weight``) and keep
        the best weights.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's decay rates of its first and second moment estimates.
    epsilon : float > 0, default=1e-8
        Adam's ``eps``, added to ``sqrt(v)``: ``update = -lr_t * m / (sqrt(v) + eps)``
        with ``lr_t = learning_rate_init * sqrt(1 - beta_2^t) / (1 - beta_1^t)``.
    n_iter_no_change : int >= 1 or np.inf, default=10
    max_fun : int >= 1, default=15000
        ``solver='lbfgs'`` only: the most loss evaluations.
    dtype : {None, 'float32', 'float64'}, default=None
        Floating-point type of the network; None follows X (float32 stays
        float32, anything else becomes float64).
    backend : {'cython', 'reference'}, default='cython'
        'reference' trains on bpfast's pure-Python kernels (slow; for checking).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted (for a multilabel ``y``: ``0 .. n_labels - 1``).
    network_ : bpfast.Network
        The trained network, sizes ``[n_features_in_, *hidden_layer_sizes, n_outputs_]``.
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
        Number of output units: 1 for two classes, else the number of classes or labels.
    out_activation_ : str
        'softmax' or 'logistic'.
    """

    _is_classifier = True

    def _output(self):
        # scikit-learn's choice: softmax for several classes, logistic units (one for two
        # classes, one per label for multilabel) with the binary cross-entropy otherwise.
        if self._label_binarizer.y_type_ == "multiclass":
            return "softmax", "cross_entropy", "softmax"
        return "sigmoid", "binary_cross_entropy", "logistic"

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, accept_sparse=_ACCEPT_SPARSE, multi_output=True,
                             dtype=(np.float64, np.float32), reset=first_pass)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if incremental and "classes_" not in self.__dict__:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            binarizer = LabelBinarizer()
            binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self._label_binarizer, self.classes_ = binarizer, binarizer.classes_
        elif incremental and classes is not None and not np.array_equal(
                unique_labels(classes), self.classes_):
            raise ValueError(f"`classes={unique_labels(classes)!r}` is not the same as on the last "
                             f"call to partial_fit, was: {self.classes_!r}")
        if not incremental and ("classes_" not in self.__dict__ or not self.warm_start):
            binarizer = LabelBinarizer()
            binarizer.fit(y)
            self._label_binarizer, self.classes_ = binarizer, binarizer.classes_
        else:
            labels = unique_labels(y)
            if self.warm_start and not incremental:
                if set(labels) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {labels}")
            elif len(np.setdiff1d(labels, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {labels}.")
        Y = self._label_binarizer.transform(y).astype(X.dtype)
        return X, Y

    def _targets_of(self, Y):
        """The labels that the 0/1 target rows Y encode."""
        return self._label_binarizer.inverse_transform(Y.ravel() if Y.shape[1] == 1 else Y)

    def _validation_score(self, out, y, sample_weight=None) -> float:
        return float(accuracy_score(y, self._targets_of(out), sample_weight=sample_weight))

    @available_if(_stochastic_solver)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                    classes: Optional[ArrayLike] = None) -> "MLPClassifier":
        """One epoch over (X, y), continuing the current network and optimizer state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            As in ``fit``.
        classes : array-like of shape (n_classes,), default=None
            All the classes; required on the first call (when not fitted yet).
            Third in scikit-learn's order, after ``sample_weight``: pass it by name.

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (softmax outputs).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; the network's dtype. Rows sum to 1, except
            for a multilabel classifier, whose columns are each label's probability.
        """
        proba = self._forward(X)
        if proba.shape[1] == 1:         # one logistic unit: the probability of classes_[1]
            proba = proba.ravel()
            return np.vstack([1 - proba, proba]).T
        return proba

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Logarithm of ``predict_proba(X)``, shape (n_samples, n_classes)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by bpfast (Adam, SGD or L-BFGS).

    A drop-in for ``sklearn.neural_network.MLPRegressor``: same parameters,
    defaults, initialisation and update rules, one output per target.
    ``loss='poisson'`` gives an ``exp`` output and the half Poisson deviance.
    Internally the network minimises bpfast's ``'mse'`` (mean over samples and
    outputs of ``(A - Y) ** 2``), whose gradient is scikit-learn's times
    ``2 / n_outputs``: SGD's learning rate is scaled by ``n_outputs / 2``, Adam's
    epsilon by ``2 / n_outputs``, which makes each update equal to scikit-learn's;
    ``loss_curve_`` reports scikit-learn's value, half the mean squared error
    plus the L2 term.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'poisson' needs y >= 0. Keyword-only here, while scikit-learn takes it
        first by position.
    solver : {'adam', 'sgd', 'lbfgs'}, default='adam'
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
        Stop on the R^2 (weighted by ``sample_weight``) of a held-out
        ``validation_fraction`` and keep the best weights.
    validation_fraction : float in (0, 1), default=0.1
    beta_1 : float in [0, 1), default=0.9
    beta_2 : float in [0, 1), default=0.999
    epsilon : float > 0, default=1e-8
    n_iter_no_change : int >= 1 or np.inf, default=10
    max_fun : int >= 1, default=15000
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
        'identity', or 'exp' with ``loss='poisson'``.
    """

    _is_classifier = False
    _parameter_constraints: dict = {**PARAMETER_CONSTRAINTS,
                                    "loss": [StrOptions({"squared_error", "poisson"})]}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, backend="cython"):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, dtype=dtype,
            backend=backend)
        self.loss = loss

    def _output(self):
        if self.loss == "poisson":      # scikit-learn's: exp output, half Poisson deviance
            return "exp", "poisson", "exp"
        return "identity", "mse", "identity"

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, accept_sparse=_ACCEPT_SPARSE, multi_output=True,
                             dtype=(np.float64, np.float32), y_numeric=True, reset=first_pass)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' requires non-negative y")
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, Y

    def _targets_of(self, Y):
        """The network's outputs as predictions: one column as a 1-D array."""
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _validation_score(self, pred, y, sample_weight=None) -> float:
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y, pred.ravel() if pred.shape[1] == 1 else pred,
                              sample_weight=sample_weight))

    @available_if(_stochastic_solver)
    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: Optional[ArrayLike] = None) -> "MLPRegressor":
        """One epoch over (X, y), continuing the current network and optimizer state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            As in ``fit``.

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
