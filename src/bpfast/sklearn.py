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
  does: the learning rate and the momentum velocities (a pickled or deep-copied
  estimator keeps them too).
- ``momentum`` must be < 1.
- training stops at the first epoch whose loss or parameters are not finite,
  and the parameters go back to their values at the start of that epoch; then
  ``fit`` raises scikit-learn's ValueError ("Solver produced non-finite parameter
  weights"), or, with ``early_stopping``, keeps the best weights and warns, as
  scikit-learn ends up doing. scikit-learn instead trains on to ``max_iter`` and
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
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import column_or_1d, validate_data

    from bpfast._sklearn_base import _BaseMLP
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "bpfast.sklearn needs scikit-learn >= 1.6 (pip install 'scikit-learn>=1.6'). "
        "The rest of bpfast (bpfast.Network, bpfast.save/load, the CLI) works without it. "
        f"The import failed with: {_exc}") from _exc

__all__ = ["MLPClassifier", "MLPRegressor"]


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
    n_iter_no_change : int >= 1 or np.inf, default=10
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
    n_iter_no_change : int >= 1 or np.inf, default=10
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
