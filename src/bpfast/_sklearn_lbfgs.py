"""scikit-learn's full-batch ``solver='lbfgs'`` for bpfast's MLP estimators.

``scipy.optimize.minimize(method='L-BFGS-B')`` runs on the flat parameter vector;
each evaluation is one native call, :meth:`bpfast.Network.loss_and_gradient`, over
all the rows, turned into scikit-learn's objective: its loss (half the mean squared
error for the squared loss; cross-entropies and the Poisson deviance as bpfast's),
its gradient (for the squared loss ``(A - Y) / n`` per output, which is bpfast's
times ``n_outputs / 2``) and its L2 term, ``alpha / (2 * sw_sum) * ||W||^2`` with
``sw_sum`` the number of rows or the sum of the sample weights (biases are not
penalised). The options (``maxfun``, ``maxiter``, ``gtol = tol``) and the
convergence warning are scikit-learn's.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result

from bpfast._layout import param_layout


def weight_mask(sizes) -> np.ndarray:
    """True at the flat positions of the weights, False at the biases'."""
    layers, n_params = param_layout(sizes)
    mask = np.zeros(n_params, dtype=bool)
    for layer in layers:
        mask[layer.w:layer.b] = True
    return mask


def sklearn_objective(net, X, Y, sample_weight, alpha: float):
    """``theta -> (loss, gradient)`` as scikit-learn's ``_loss_grad_lbfgs`` computes them,
    evaluated by ``net`` (whose parameters it sets to ``theta``)."""
    mask = weight_mask(net.sizes)
    sw_sum = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    squared = net.loss == "mse"
    loss_factor = 0.5 if squared else 1.0
    grad_factor = net.sizes[-1] / 2.0 if squared else 1.0
    penalty = float(alpha) / sw_sum

    def objective(theta):
        if not np.isfinite(theta).all():
            return np.inf, np.zeros_like(theta)
        net.set_parameters(theta)
        loss, grad = net.loss_and_gradient(X, Y, sample_weight)
        weights = theta[mask]
        grad = grad.astype(np.float64) * grad_factor
        grad[mask] += penalty * weights
        return float(loss) * loss_factor + 0.5 * penalty * float(weights @ weights), grad

    return objective


def fit_lbfgs(estimator, X, Y, sample_weight) -> None:
    """Train ``estimator.network_`` on all of (X, Y) by L-BFGS-B as scikit-learn does;
    sets ``n_iter_`` and ``loss_`` and warns (ConvergenceWarning) as scikit-learn."""
    net = estimator.network_
    if hasattr(X, "toarray"):
        X = X.toarray()         # densified once rather than at every evaluation
    X = np.ascontiguousarray(X, dtype=net.dtype)
    Y = np.ascontiguousarray(Y, dtype=net.dtype)
    objective = sklearn_objective(net, X, Y, sample_weight, estimator.alpha)
    verbose = estimator.verbose
    iprint = 1 if verbose is True or verbose >= 1 else -1
    result = scipy.optimize.minimize(
        objective, net.get_parameters().astype(np.float64), method="L-BFGS-B", jac=True,
        options={"maxfun": estimator.max_fun, "maxiter": estimator.max_iter,
                 "gtol": estimator.tol, **_get_additional_lbfgs_options_dict("iprint", iprint)})
    estimator.n_iter_ = _check_optimize_result("lbfgs", result, estimator.max_iter)
    estimator.loss_ = float(result.fun)
    if not np.isfinite(result.x).all():
        raise ValueError("Solver produced non-finite parameter weights. The input data may "
                         "contain large values and need to be preprocessed.")
    net.set_parameters(result.x)
