"""No aliasing effects, no silent overflow, no stale memory: what a Network owes its caller."""
import warnings

import numpy as np
import pytest

import bpfast
from bpfast import functional, reference

BACKENDS = ["cython", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_writing_into_X_between_forward_and_backward_changes_nothing(backend):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    grads = []
    for scribble in (False, True):
        net = bpfast.Network([3, 4, 2], backend=backend, seed=1)
        X_call = X.copy()
        net.forward(X_call)
        if scribble:
            X_call[...] = 123.0
        net.backward(Y)
        grads.append([g.copy() for g in net.grad_weights])
    for a, b in zip(*grads):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fast_path", [True, False])
def test_train_step_on_an_input_that_is_a_parameter_equals_the_step_on_a_copy(backend, fast_path):
    results = []
    for copy in (False, True):
        net = bpfast.Network([3, 3, 3], activation="tanh", output_activation="identity",
                             backend=backend, seed=2)
        X = net.weights[0]                     # (3, 3): a live view into the parameters
        X = X.copy() if copy else X
        Y = np.ones((3, 3)) if fast_path else [[1.0] * 3] * 3
        loss = net.train_step(X, Y, 0.1)
        results.append((loss, net.get_parameters()))
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_fit_on_an_input_that_is_a_parameter_equals_fit_on_a_copy():
    results = []
    for copy in (False, True):
        net = bpfast.Network([3, 3, 3], activation="tanh", output_activation="identity", seed=2)
        X = net.weights[1].copy() if copy else net.weights[1]
        net.fit(X, np.ones((3, 3)), epochs=3, batch_size=2, seed=0)
        results.append(net.get_parameters())
    assert np.array_equal(*results)


def test_the_workspace_shrinks_when_a_much_smaller_batch_follows():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(4000, 20)), rng.normal(size=(4000, 2))
    net = bpfast.Network([20, 64, 2], seed=0)
    net.fit(X, Y, epochs=1, batch_size=4000)
    big = net._engine.work_size
    net.fit(X[:64], Y[:64], epochs=1, batch_size=32)
    small = net._engine.work_size
    assert small * 50 < big
    # and a batch of the same size again reuses it
    net.fit(X[:64], Y[:64], epochs=1, batch_size=32)
    assert net._engine.work_size == small


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_are_checked_finite_after_the_cast(dtype):
    net = bpfast.Network([2, 3, 1], dtype=dtype)
    before = net.get_parameters()
    big = np.full((2, 3), 1e300)
    if dtype == "float32":
        with pytest.raises(ValueError, match=r"weights\[0\].*float32"):
            net.weights[0] = big
        with pytest.raises(ValueError, match="flat parameters"):
            net.set_parameters(np.full(before.shape, 1e300))
        assert np.array_equal(net.get_parameters(), before)
    else:
        net.weights[0] = big        # finite in float64
        assert (net.weights[0] == 1e300).all()


def test_X_and_Y_that_overflow_the_network_dtype_are_refused_naming_them():
    net = bpfast.Network([2, 1], dtype="float32")
    with pytest.raises(ValueError, match="^X .*float32"):
        net.predict(np.full((1, 2), 1e300))
    with pytest.raises(ValueError, match="^Y .*float32"):
        net.train_step(np.ones((1, 2)), np.full((1, 1), 1e300), 0.1)


@pytest.mark.parametrize("schedule, kwargs, named", [
    ("invscaling", dict(power_t=1100), "power_t=1100"),
    ("step", dict(gamma=1e10, step_size=1), "gamma=1e\\+10"),
    ("step", dict(gamma=1e-300, step_size=1), "gamma=1e-300"),
])
def test_a_schedule_that_overflows_is_a_value_error_naming_its_parameter(schedule, kwargs, named):
    net = bpfast.Network([2, 1])
    with pytest.raises(ValueError, match=named):
        net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=50, lr_schedule=schedule, **kwargs)


def test_fit_inside_its_own_callback_is_a_clear_runtime_error():
    net = bpfast.Network([2, 1])
    X, Y = np.ones((4, 2)), np.ones((4, 1))
    with pytest.raises(RuntimeError, match="inside its own callback"):
        net.fit(X, Y, epochs=2, callback=lambda e, h: net.fit(X, Y, epochs=1))
    net.fit(X, Y, epochs=1)             # the Network is free again afterwards


def test_a_finite_divergence_warns_and_marks_the_history():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 4)), 1e3 * rng.normal(size=(50, 1))
    net = bpfast.Network([4, 8, 1], activation="identity", output_activation="identity", seed=0)
    with pytest.warns(RuntimeWarning, match="diverging"):
        h = net.fit(X, Y, epochs=7, batch_size=50, lr=0.005, shuffle=False)
    assert h.diverged and net.history_ is h
    assert h.loss[-1] > 1e6 * h.loss[0] and np.isfinite(h.loss[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calm = bpfast.Network([4, 8, 1], activation="identity", output_activation="identity")
        assert not calm.fit(X, Y, epochs=7, batch_size=50, lr=0.001, shuffle=False).diverged


def test_sgd_update_takes_an_np_matrix():
    W = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    functional.sgd_update(W, np.ones((2, 2)), 0.5)
    assert isinstance(W, np.matrix) and np.array_equal(W, [[0.5, 1.5], [2.5, 3.5]])


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_update_with_momentum_and_decay_matches_its_reference_twin(nesterov, dtype):
    rng = np.random.default_rng(3)
    W, G, V = (rng.normal(size=(4, 5)).astype(dtype) for _ in range(3))
    W_ref, V_ref = W.tolist(), V.tolist()
    for _ in range(3):
        functional.sgd_update(W, G, 0.1, velocity=V, momentum=0.9, weight_decay=0.01,
                              nesterov=nesterov)
        reference.sgd_update(W_ref, G.tolist(), 0.1, V_ref, 0.9, 0.01, nesterov)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(W, W_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(V, V_ref, rtol=tol, atol=tol)


def test_sgd_update_refuses_a_velocity_of_another_shape_or_dtype():
    W = np.ones((2, 3))
    with pytest.raises(ValueError, match="velocity must have W's shape"):
        functional.sgd_update(W, np.ones((2, 3)), 0.1, velocity=np.zeros((3, 2)), momentum=0.9)
    with pytest.raises(TypeError, match="velocity must have W's dtype"):
        functional.sgd_update(W, np.ones((2, 3)), 0.1, velocity=np.zeros((2, 3), np.float32))


def test_sgd_fused_update_matches_its_reference_twin():
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    A, D = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    W_ref, b_ref = W.tolist(), b.tolist()
    functional.sgd_fused_update(W, b, A, D, 0.1)
    reference.sgd_fused_update(W_ref, b_ref, A.tolist(), D.tolist(), 0.1)
    np.testing.assert_allclose(W, W_ref, rtol=1e-13)
    np.testing.assert_allclose(b, b_ref, rtol=1e-13)
    np.testing.assert_allclose(W, np.array(W_ref), rtol=1e-13)
