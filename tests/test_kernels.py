"""Every compiled kernel against its twin in bpfast.reference, both dtypes, many shapes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bpfast
from bpfast import _kernels, functional, reference

DTYPES = [np.float64, np.float32]
# (batch, n_in, n_out): 1-wide layers, batch 1, non-square, and sizes past the BLAS threshold.
SHAPES = [(1, 1, 1), (1, 2, 1), (4, 1, 3), (3, 5, 1), (7, 3, 11), (1, 64, 10), (32, 64, 10),
          (64, 100, 37), (5, 200, 3)]
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "softmax"]


def on_every_dtype_and_shape(test):
    """Parametrize `test` over DTYPES and SHAPES (arguments dtype and shape)."""
    return pytest.mark.parametrize("dtype", DTYPES)(pytest.mark.parametrize("shape", SHAPES)(test))


def tol(dtype, k=1):
    # float64 differs from the reference only in summation order; float32 in precision.
    # Sums of k products of O(1) numbers may cancel, so the absolute error grows with k.
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-14 * k)
    return dict(rtol=2e-5, atol=2e-6 * k)


def data(shape, dtype, seed=0):
    n, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    cast = lambda a: a.astype(dtype)
    return (cast(rng.normal(size=(n, n_in))), cast(rng.normal(size=(n_in, n_out))),
            cast(rng.normal(size=n_out)), cast(rng.normal(size=(n, n_out))))


def ref_of(a):
    return np.asarray(a, dtype=np.float64).tolist()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("loops", [False, True])
@pytest.mark.parametrize("mkn", [(1, 1, 1), (3, 4, 5), (17, 1, 9), (64, 70, 30), (5, 300, 2)])
def test_gemm_every_transpose_and_path_matches_numpy(dtype, trans_a, trans_b, loops, mkn):
    m, k, n = mkn
    rng = np.random.default_rng(1)
    A = rng.normal(size=(m, k)).astype(dtype)
    B = rng.normal(size=(k, n)).astype(dtype)
    A_in = np.ascontiguousarray(A.T) if trans_a else A
    B_in = np.ascontiguousarray(B.T) if trans_b else B
    C = _kernels.matmul(A_in, B_in, trans_a, trans_b, loops)
    assert C.dtype == dtype
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), **tol(dtype, k))


@on_every_dtype_and_shape
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_matches_reference(dtype, shape, activation):
    X, W, b, _ = data(shape, dtype)
    got = bpfast.dense_forward(X, W, b, activation)
    want = reference.dense_forward(ref_of(X), ref_of(W), ref_of(b), activation)
    assert got.dtype == dtype and got.shape == (shape[0], shape[2])
    np.testing.assert_allclose(got, want, **tol(dtype, shape[1]))


@on_every_dtype_and_shape
def test_backprop_error_matches_reference(dtype, shape):
    _, W, _, delta = data(shape, dtype)
    got = bpfast.backprop_error(delta, W)
    assert got.shape == (shape[0], shape[1])
    np.testing.assert_allclose(got, reference.backprop_error(ref_of(delta), ref_of(W)),
                               **tol(dtype, shape[2]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_activation_backward_matches_reference(dtype, activation):
    X, W, b, _ = data((6, 4, 5), dtype)
    A = bpfast.dense_forward(X, W, b, activation)
    E = np.random.default_rng(3).normal(size=A.shape).astype(dtype)
    got = functional.activation_backward(E, A, activation)
    want = ref_of(E)
    reference.activation_backward(want, ref_of(A), activation)
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,activation", [
    ("mse", "sigmoid"), ("mse", "identity"), ("mse", "tanh"), ("mse", "relu"), ("mse", "softmax"),
    ("sse", "sigmoid"), ("sse", "identity"), ("sse", "softmax"), ("cross_entropy", "softmax")])
@pytest.mark.parametrize("shape", [(1, 3, 1), (5, 3, 4), (33, 2, 10)])
def test_output_delta_matches_reference(dtype, loss, activation, shape):
    if loss == "cross_entropy" and shape[2] == 1:
        pytest.skip("softmax over one output is constant")
    X, W, b, _ = data(shape, dtype)
    A = bpfast.dense_forward(X, W, b, activation)
    rng = np.random.default_rng(4)
    Y = np.eye(shape[2], dtype=dtype)[rng.integers(0, shape[2], shape[0])] \
        if loss == "cross_entropy" else rng.uniform(size=A.shape).astype(dtype)
    value, delta = functional.output_delta(A, Y, loss, activation)
    want_value, want_delta = reference.output_delta(ref_of(A), ref_of(Y), loss, activation)
    assert value == pytest.approx(want_value, rel=1e-12 if dtype == np.float64 else 1e-5)
    np.testing.assert_allclose(delta, want_delta, **tol(dtype))


@on_every_dtype_and_shape
def test_weight_gradients_match_reference(dtype, shape):
    X, _, _, delta = data(shape, dtype)
    dW, db = functional.weight_gradients(X, delta)
    want_dW, want_db = reference.weight_gradients(ref_of(X), ref_of(delta))
    np.testing.assert_allclose(dW, want_dW, **tol(dtype, shape[0]))
    np.testing.assert_allclose(db, want_db, **tol(dtype, shape[0]))


@on_every_dtype_and_shape
def test_sgd_update_in_place_matches_reference(dtype, shape):
    _, W, _, _ = data(shape, dtype)
    grad = np.random.default_rng(5).normal(size=W.shape).astype(dtype)
    want = ref_of(W)
    reference.sgd_update(want, ref_of(grad), 0.3)
    W_id = id(W)
    assert bpfast.sgd_update(W, grad, 0.3) is None
    assert id(W) == W_id
    np.testing.assert_allclose(W, want, **tol(dtype))


@on_every_dtype_and_shape
def test_fused_sgd_equals_gradient_then_update(dtype, shape):
    X, W, b, delta = data(shape, dtype)
    W_ref, b_ref = ref_of(W), ref_of(b)
    reference.sgd_fused_update(W_ref, b_ref, ref_of(X), ref_of(delta), 0.05)
    _kernels.sgd_fused_update(W, b, X, delta, 0.05)
    np.testing.assert_allclose(W, W_ref, **tol(dtype, shape[0]))
    np.testing.assert_allclose(b, b_ref, **tol(dtype, shape[0]))


def test_sgd_update_on_a_strided_view_changes_the_base():
    base = np.zeros((4, 6))
    view = base[:, ::2]
    bpfast.sgd_update(view, np.ones((4, 3)), 0.5)
    assert np.all(base[:, ::2] == -0.5) and np.all(base[:, 1::2] == 0)


def test_sigmoid_and_softmax_do_not_overflow_at_extremes():
    z = np.array([[-1e308, -800.0, -30.0, 0.0, 30.0, 800.0, 1e308]])
    W = np.eye(7)
    s = bpfast.dense_forward(z, W, np.zeros(7), "sigmoid")
    assert np.all(np.isfinite(s)) and s[0, 0] == 0.0 and s[0, 3] == 0.5 and s[0, -1] == 1.0
    p = bpfast.dense_forward(z, W, np.zeros(7), "softmax")
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0)
    assert reference.dense_forward(z.tolist(), W.tolist(), [0.0] * 7, "sigmoid")[0][0] == 0.0
    s32 = bpfast.dense_forward(np.array([[-1e38, 1e38]], np.float32), np.eye(2, dtype=np.float32),
                               np.zeros(2, np.float32), "sigmoid")
    assert s32.tolist() == [[0.0, 1.0]]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), n_in=st.integers(1, 40), n_out=st.integers(1, 40),
       dtype=st.sampled_from(DTYPES), activation=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2 ** 32 - 1))
def test_forward_and_backprop_error_match_reference_for_any_shape(n, n_in, n_out, dtype,
                                                                  activation, seed):
    X, W, b, delta = data((n, n_in, n_out), dtype, seed)
    np.testing.assert_allclose(bpfast.dense_forward(X, W, b, activation),
                               reference.dense_forward(ref_of(X), ref_of(W), ref_of(b), activation),
                               **tol(dtype, n_in))
    np.testing.assert_allclose(bpfast.backprop_error(delta, W),
                               reference.backprop_error(ref_of(delta), ref_of(W)),
                               **tol(dtype, n_out))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 64, 10), (15, 64, 10), (32, 64, 16), (32, 64, 17),
                                   (32, 1024, 1), (32, 1025, 1), (64, 16, 3), (16, 2, 2),
                                   (32, 13, 5), (16, 7, 16), (20, 100, 10)])  # rows not 8k
def test_backprop_error_on_both_sides_of_the_narrow_layer_path(dtype, shape):
    """Narrow W (few outputs) is transposed into a buffer first; results as by NumPy."""
    n, n_in, n_out = shape
    rng = np.random.default_rng(n * n_in + n_out)
    delta = rng.normal(size=(n, n_out)).astype(dtype)
    W = rng.normal(size=(n_in, n_out)).astype(dtype)
    want = delta.astype(np.float64) @ W.astype(np.float64).T
    np.testing.assert_allclose(bpfast.backprop_error(delta, W), want, **tol(dtype, n_out))


@pytest.fixture(params=[2, 1, 0], ids=["avx512", "avx2", "baseline"])
def simd_level(request):
    """Run a test with each variant of the element-wise loops that this CPU can run."""
    level = _kernels.simd_level(request.param)
    if level != request.param:
        _kernels.simd_level(2)
        pytest.skip(f"this CPU has no SIMD level {request.param}")
    yield level
    _kernels.simd_level(2)


def ulps(got, want, dtype):
    """Distance in units of the last place (+0 and -0 are equal)."""
    as_int = np.int64 if dtype == np.float64 else np.int32
    got, want = np.asarray(got, dtype), np.asarray(want, dtype)
    d = np.abs(got.view(as_int).astype(np.int64) - want.view(as_int).astype(np.int64))
    return np.where(got == want, 0, d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_vectorized_activations_within_a_few_ulps_of_libm(simd_level, dtype, activation):
    z = np.concatenate([np.linspace(-800, 800, 40001), np.linspace(-4, 4, 20001),
                        np.linspace(-0.7, 0.7, 20001), [-0.0, 0.0, 1e-300, -1e-300, 1e-30, -745.5,
                                                        -708.5, -103.9, 88.0, 0.625, -0.625]])
    z = z.astype(dtype)
    got = bpfast.dense_forward(z.reshape(-1, 1), np.ones((1, 1), dtype), np.zeros(1, dtype),
                               activation).ravel()
    want = np.array(reference.dense_forward(z.astype(np.float64).reshape(-1, 1).tolist(),
                                            [[1.0]], [0.0], activation)).ravel()
    assert ulps(got, want, dtype).max() <= 4
    if activation == "sigmoid":
        assert np.all(got[z == 0] == 0.5)
    if activation == "tanh":
        assert np.all(np.abs(got) <= 1) and np.array_equal(got, -got[::-1][::-1] * -1)
    # The backward loops, on the same outputs: the same operations in the same order
    # as the reference (float32: as NumPy does them in float32), so equal to the bit.
    E = np.random.default_rng(0).normal(size=(got.size, 1)).astype(dtype)
    A = got.reshape(-1, 1)
    back = functional.activation_backward(E, A, activation)
    if dtype == np.float64:
        want_back = E.tolist()
        reference.activation_backward(want_back, A.tolist(), activation)
    else:
        one = dtype(1)
        want_back = {"sigmoid": E * (A * (one - A)), "tanh": E * (one - A * A),
                     "relu": np.where(A > 0, E, 0), "identity": E}[activation]
    assert ulps(back.ravel(), np.ravel(want_back), dtype).max() == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_vectorized_softmax_matches_reference(simd_level, dtype):
    rows = np.random.default_rng(0).normal(scale=30, size=(50, 7)).astype(dtype)
    p = bpfast.dense_forward(rows, np.eye(7, dtype=dtype), np.zeros(7, dtype), "softmax")
    p_ref = reference.dense_forward(rows.astype(np.float64).tolist(), np.eye(7).tolist(),
                                    [0.0] * 7, "softmax")
    # float32: z - max is rounded in float32 first, a relative error of |z - max| * 6e-8.
    np.testing.assert_allclose(p, p_ref, rtol=1e-14 if dtype == np.float64 else 2e-5,
                               atol=1e-300 if dtype == np.float64 else 1e-37)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 2, 7, 10, 32, 33])
def test_softmax_of_a_row_does_not_depend_on_its_batch(simd_level, dtype, width):
    """softmax runs exp() over the whole batch in one loop: a row alone gets the same bits."""
    rows = np.random.default_rng(width).normal(scale=20, size=(19, width)).astype(dtype)
    rows[3, 0] = 1e4 if width > 1 else rows[3, 0]     # a saturated row
    eye, zeros = np.eye(width, dtype=dtype), np.zeros(width, dtype)
    batch = bpfast.dense_forward(rows, eye, zeros, "softmax")
    one_by_one = np.vstack([bpfast.dense_forward(r[None], eye, zeros, "softmax") for r in rows])
    assert np.array_equal(batch, one_by_one)
    np.testing.assert_allclose(batch.sum(axis=1), 1, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m", [(1, 1), (5, 7), (2, 40), (32, 10), (7, 33), (32, 64), (3, 100)])
def test_bias_gradients_are_row_by_row_sums_at_every_simd_level(simd_level, dtype, n, m):
    """db sums delta's rows in order (register-blocked from 64 elements on): exact bits."""
    rng = np.random.default_rng(n * m)
    X, delta = rng.normal(size=(n, 3)).astype(dtype), rng.normal(size=(n, m)).astype(dtype)
    b, W = rng.normal(size=m).astype(dtype), rng.normal(size=(3, m)).astype(dtype)
    want_db, want_b, step = np.zeros(m, dtype), b.copy(), dtype(-0.05)
    for row in delta:
        want_db = want_db + row
        want_b = want_b + step * row
    assert np.array_equal(functional.weight_gradients(X, delta)[1], want_db)
    _kernels.sgd_fused_update(W, b, X, delta, 0.05)
    assert np.array_equal(b, want_b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 63, 64, 65, 1000])
def test_finiteness_check_at_every_simd_level(simd_level, dtype, size):
    """The check fit makes after every epoch and train_step on X and Y (C from 64 on)."""
    info = np.finfo(dtype)
    x = np.linspace(-1, 1, size).astype(dtype)
    x[::7] = info.max
    x[1::7] = info.tiny / 4          # subnormal
    assert _kernels.is_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        for where in {0, size // 2, size - 1}:
            y = x.copy()
            y[where] = bad
            assert not _kernels.is_finite(y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("small_gemm", [0, 1], ids=["blas", "small-gemm"])
def test_every_simd_level_trains_the_same_network_bit_for_bit(dtype, small_gemm):
    """Built without FMA contraction, the variants round alike: same network on every CPU.

    With the products through BLAS at every level; and through the small-product kernel
    (AVX2 + FMA) at every level that can run it.
    """
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 6)).astype(dtype), rng.uniform(size=(64, 3)).astype(dtype)
    results = []
    try:
        for level in (2, 1, 0):
            if _kernels.simd_level(level) != level or _kernels.small_gemm(small_gemm) != small_gemm:
                continue
            net = bpfast.Network([6, 9, 3], activation="tanh", output_activation="sigmoid",
                                 dtype=dtype, seed=0)
            net.fit(X, Y, epochs=5, batch_size=8, lr=0.5)
            history = net.fit(X, Y, epochs=2, batch_size=8, lr=0.1, momentum=0.9,
                              nesterov=True, weight_decay=0.01)    # with the L2 term
            results.append((net.get_parameters(), history.loss))
    finally:
        _kernels.simd_level(2)
        _kernels.small_gemm(-1)
    if len(results) < 2:
        pytest.skip("fewer than two SIMD levels can run this configuration here")
    for params, loss in results[1:]:
        assert np.array_equal(params, results[0][0])
        assert loss == results[0][1]
