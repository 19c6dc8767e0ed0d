"""Sparse (CSR) input trains to the bits of the dense matrix; the full-batch loss and
gradient for L-BFGS; backward with sample weights."""
import numpy as np
import pytest

import bpfast

sparse = pytest.importorskip("scipy.sparse")


def sparse_problem(n=40, d=12, density=0.2, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = sparse.random(n, d, density=density, format="csr", random_state=seed,
                      dtype=np.float64).astype(dtype)
    Y = np.eye(3)[rng.integers(0, 3, n)].astype(dtype)
    return X, Y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sparse_input_trains_to_the_bits_of_the_dense_matrix(dtype, shuffle, optimizer):
    X, Y = sparse_problem(dtype=dtype)
    w = np.random.default_rng(1).uniform(0.5, 2, X.shape[0])
    a = bpfast.Network([12, 9, 3], "relu", "softmax", "cross_entropy", dtype=dtype, seed=2)
    b = a.clone()
    kw = dict(epochs=3, batch_size=7, shuffle=shuffle, seed=3, optimizer=optimizer, lr=0.05,
              sample_weight=w)
    ha = a.fit(X, Y, **kw)
    hb = b.fit(X.toarray(), Y, **kw)
    assert np.array_equal(a.get_parameters(), b.get_parameters())
    assert ha.loss == hb.loss
    assert np.array_equal(a.predict(X), b.predict(X.toarray()))


def test_sparse_duplicates_and_formats_mean_what_scipy_means():
    X, Y = sparse_problem()
    coo = X.tocoo()
    doubled = sparse.coo_matrix((np.r_[coo.data, coo.data], (np.r_[coo.row, coo.row],
                                                            np.r_[coo.col, coo.col])),
                                shape=X.shape)                   # every entry twice: summed
    a = bpfast.Network([12, 9, 3], "relu", "softmax", "cross_entropy", seed=2)
    b = a.clone()
    a.fit(doubled, Y, epochs=2, seed=1)
    b.fit(2 * X.toarray(), Y, epochs=2, seed=1)
    assert np.array_equal(a.get_parameters(), b.get_parameters())


def test_bad_sparse_input_is_refused_naming_it():
    X, Y = sparse_problem()
    net = bpfast.Network([12, 9, 3], "relu", "softmax", "cross_entropy")
    with pytest.raises(ValueError, match="12 columns"):
        net.fit(sparse.random(40, 5, format="csr"), Y)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.fit(bad, Y)
    with pytest.raises(ValueError, match="NaN"):
        net.predict(bad)


def test_loss_and_gradient_is_forward_and_backward_over_every_row(backend):
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(15, 4)), rng.normal(size=(15, 2))
    w = rng.uniform(0.1, 2, 15)
    net = bpfast.Network([4, 6, 2], "tanh", "identity", backend=backend, seed=0)
    before = net.get_parameters()
    loss, grad = net.loss_and_gradient(X, Y, sample_weight=w)
    assert np.array_equal(net.get_parameters(), before)
    net.forward(X)
    assert net.backward(Y, sample_weight=w) == loss
    assert np.array_equal(net._grads, grad)


def test_lbfgs_on_the_native_loss_and_gradient_fits_as_on_the_reference():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 3))
    Y = np.tanh(X @ rng.normal(size=(3, 1)))
    results = []
    for backend in ("cython", "reference"):
        net = bpfast.Network([3, 5, 1], "tanh", "identity", backend=backend, seed=1)

        def f(flat):
            net.set_parameters(flat)
            return net.loss_and_gradient(X, Y)

        res = optimize.minimize(f, net.get_parameters(), jac=True, method="L-BFGS-B",
                                options=dict(maxiter=50))
        results.append(res)
    assert results[0].fun < 1e-3 * bpfast.Network([3, 5, 1], "tanh", "identity",
                                                   seed=1).evaluate(X, Y)
    np.testing.assert_allclose(results[0].x, results[1].x, rtol=1e-6, atol=1e-8)
