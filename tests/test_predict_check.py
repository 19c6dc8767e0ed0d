"""predict checks X for NaN and infinity on the first layer's product instead of on X
(a non-finite element of a row of X makes that whole row of X @ W non-finite): the same
errors as a check of X, and no false alarm when finite X overflows the product."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bpfast

SHAPES = [[30, 7, 3], [784, 128, 10], [5, 300, 2]]      # narrowing, wide, widening


@settings(max_examples=60, deadline=None)
@given(shape=st.sampled_from(SHAPES), dtype=st.sampled_from(["float32", "float64"]),
       backend=st.sampled_from(["cython", "reference"]), rows=st.integers(1, 40),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]), data=st.data())
def test_a_nan_or_infinity_anywhere_in_X_is_refused(shape, dtype, backend, rows, bad, data):
    if backend == "reference" and shape[0] > 100:
        rows = min(rows, 3)
    net = bpfast.Network(shape, dtype=dtype, seed=rows, backend=backend)
    X = np.random.default_rng(rows).normal(size=(rows, shape[0]))
    i = data.draw(st.integers(0, rows - 1))
    j = data.draw(st.integers(0, shape[0] - 1))
    X[i, j] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.predict(X)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.predict(X.astype(dtype))                 # already in the network's dtype
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.evaluate(X, np.zeros((rows, shape[-1])))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_zero_row_of_W_does_not_hide_an_infinity(dtype):
    """inf * 0 is NaN: a row of W that is all zeros still shows X's infinity."""
    net = bpfast.Network([64, 40, 3], dtype=dtype, seed=0)
    net.weights[0][5, :] = 0
    X = np.ones((8, 64), dtype)
    X[3, 5] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.predict(X)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_finite_X_that_overflows_the_product_is_not_refused(backend):
    """Finite X whose first product overflows is predicted as before (the check of X
    itself finds nothing), with the bits of forward()."""
    net = bpfast.Network([50, 20, 4], dtype="float64", seed=1, backend=backend)
    net.weights[0][...] = 1.0
    X = np.full((6, 50), 1e307)
    X[0] = 0.5
    out = net.predict(X)
    assert np.array_equal(out, net.forward(X), equal_nan=True)
    assert np.isfinite(out[0]).all()


def test_a_float64_value_too_large_for_float32_is_refused():
    net = bpfast.Network([300, 20, 2], dtype="float32", seed=0)
    X = np.zeros((4, 300))
    X[2, 299] = 1e300
    with pytest.raises(ValueError, match="too large for float32"):
        net.predict(X)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_in_chunks_checks_every_chunk(dtype, monkeypatch):
    """Past PREDICT_CHUNK rows predict runs in chunks: a NaN in a later chunk is found."""
    import bpfast.network
    monkeypatch.setattr(bpfast.network, "PREDICT_CHUNK", 16)
    net = bpfast.Network([40, 30, 3], dtype=dtype, seed=0)
    X = np.random.default_rng(0).normal(size=(50, 40)).astype(dtype)
    good = net.predict(X)
    assert np.array_equal(good, np.concatenate([net.forward(X[i:i + 16])
                                                for i in range(0, 50, 16)]))
    X[47, 3] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.predict(X)
