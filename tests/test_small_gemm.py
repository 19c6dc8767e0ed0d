"""The small-product kernel of _smallgemm.h (AVX2 + FMA) against NumPy and against BLAS.

gemm() sends a product there when the kernel is on and its operands are small; the
tests force it on (small_gemm(1)) or off (small_gemm(0)) and compare.
"""
import contextlib
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bpfast
from bpfast import _kernels

DTYPES = [np.float64, np.float32]
HAS_KERNEL = _kernels.small_gemm(1)
_kernels.small_gemm(-1)
needs_kernel = pytest.mark.skipif(not HAS_KERNEL, reason="this CPU has no AVX2 + FMA")


@pytest.fixture
def kernel_on():
    _kernels.small_gemm(1)
    yield
    _kernels.small_gemm(-1)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def assert_product_close(C, A, B, dtype):
    """|C - A @ B| within k rounding errors of the sum of |products| (computed in float64)."""
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    bound = (A.shape[1] + 2) * eps(dtype) * (np.abs(A64) @ np.abs(B64)) + 1e-300
    assert C.dtype == dtype
    assert np.all(np.abs(C - A64 @ B64) <= bound)


def operands(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
def test_every_tile_and_remainder_shape(kernel_on, dtype, trans_a):
    """Rows 1..13 (tiles of 6 and each remainder), columns 1..35 (1 or 2 vectors, masked
    or not, for 4 and 8 lanes), k from 1 up."""
    for m, n, k in itertools.product(range(1, 14), range(1, 36), (1, 2, 7, 65)):
        if m * n * k <= _kernels.tiny_product():
            continue                          # the direct loops take these
        A, B = operands(m, k, n, dtype, seed=m * 1000 + n * 10 + k)
        A_in = np.ascontiguousarray(A.T) if trans_a else A
        assert_product_close(_kernels.matmul(A_in, B, trans_a, False), A, B, dtype)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
def test_bits_do_not_depend_on_the_tile(kernel_on, dtype):
    """Each element is one chain of multiply-adds: a row or a column computed alone
    (other tile shapes, remainder paths) has the same bits as inside the whole product."""
    m, k, n = 13, 70, 37
    A, B = operands(m, k, n, dtype, seed=5)
    C = _kernels.matmul(A, B)
    for i in (0, 5, 6, 12):
        assert np.array_equal(_kernels.matmul(A[i:i + 1].copy(), B), C[i:i + 1])
        assert np.array_equal(_kernels.matmul(np.ascontiguousarray(A[i:i + 1].T), B, True),
                              C[i:i + 1])
    for j in (0, 3, 8, 16, 36):
        assert np.array_equal(_kernels.matmul(A, B[:, j:j + 1].copy()), C[:, j:j + 1])
        assert np.array_equal(_kernels.matmul(A, B[:, j:].copy()), C[:, j:])


@needs_kernel
@given(m=st.integers(1, 40), k=st.integers(1, 80), n=st.integers(1, 40),
       trans_a=st.booleans(), double=st.booleans(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_matches_numpy_for_any_shape(m, k, n, trans_a, double, seed):
    dtype = np.float64 if double else np.float32
    _kernels.small_gemm(1)
    try:
        A, B = operands(m, k, n, dtype, seed)
        A_in = np.ascontiguousarray(A.T) if trans_a else A
        assert_product_close(_kernels.matmul(A_in, B, trans_a, False), A, B, dtype)
    finally:
        _kernels.small_gemm(-1)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_in, n_out", [(64, 10), (13, 33), (7, 9)])
def test_fused_update_with_alpha_and_beta(kernel_on, dtype, n_in, n_out):
    """W := W - lr * A.T @ delta: the kernel's alpha and beta (beta == 1 reads C)."""
    rng = np.random.default_rng(n_in)
    A_prev = rng.normal(size=(32, n_in)).astype(dtype)
    delta = rng.normal(size=(32, n_out)).astype(dtype)
    W, b = rng.normal(size=(n_in, n_out)).astype(dtype), np.zeros(n_out, dtype)
    want = W.astype(np.float64) - 0.1 * (A_prev.T.astype(np.float64) @ delta)
    _kernels.sgd_fused_update(W, b, A_prev, delta, 0.1)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(W, want, rtol=tol, atol=tol * 10)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, n", [(9, 20, 11), (6, 16, 16), (13, 5, 3)])
def test_alpha_beta_and_beta_zero_never_reads_C(kernel_on, dtype, m, k, n):
    """beta == 0 ignores C (a forward layer writes into uninitialized memory: a NaN
    there must not leak in); other betas scale it (BLAS's rules)."""
    A, B = operands(m, k, n, dtype, seed=m)
    C = np.full((m, n), np.nan, dtype)
    _kernels.matmul(A, B, alpha=-0.5, beta=0, out=C)
    assert_product_close(C / dtype(-0.5), A, B, dtype)
    C0 = np.random.default_rng(1).normal(size=(m, n)).astype(dtype)
    C = C0.copy()
    _kernels.matmul(A, B, alpha=2, beta=0.25, out=C)
    want = 2 * (A.astype(np.float64) @ B.astype(np.float64)) + 0.25 * C0
    tol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol * k)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_and_blas_train_the_same_network(dtype):
    """fit through the kernel and through BLAS: the same network up to rounding."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 64)).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 200)]
    params = []
    for mode in (1, 0):
        _kernels.small_gemm(mode)
        net = bpfast.Network([64, 64, 10], "relu", "softmax", "cross_entropy", dtype=dtype,
                             seed=1)
        net.fit(X, Y, epochs=3, batch_size=32, lr=0.05, momentum=0.9, seed=2)
        params.append(net.get_parameters())
    _kernels.small_gemm(-1)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(params[0], params[1], rtol=tol, atol=tol)
    assert not np.array_equal(params[0], np.zeros_like(params[0]))


def test_automatic_choice_follows_the_simd_level():
    """Automatic: on from SIMD level 1 (AVX2 + FMA) on; never below AVX2."""
    try:
        for level in (2, 1, 0):
            got = _kernels.simd_level(level)
            assert _kernels.small_gemm(-1) == (got >= 1)
            assert _kernels.small_gemm(0) is False
            assert _kernels.small_gemm(1) == (got >= 1)
    finally:
        _kernels.simd_level(2)
        _kernels.small_gemm(-1)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, n_in, n_out", [(32, 64, 32), (7, 50, 40), (16, 16, 3), (3, 40, 9),
                                             (32, 64, 64)])
def test_backprop_error_copies_W_transposed_for_the_kernel(kernel_on, dtype, n, n_in, n_out):
    """E = delta @ W.T: W (up to 16 KB) is copied transposed into a stack buffer and the
    kernel runs it untransposed: the bits of the kernel's delta @ W.T.copy()."""
    rng = np.random.default_rng(n_in)
    delta = rng.normal(size=(n, n_out)).astype(dtype)
    W = rng.normal(size=(n_in, n_out)).astype(dtype)
    E = bpfast.backprop_error(delta, W)
    copied = n_in * n_out * np.dtype(dtype).itemsize <= 16384   # else BLAS with W.T
    assert np.array_equal(E, _kernels.matmul(delta, np.ascontiguousarray(W.T))) or not copied
    assert_product_close(E, delta, np.ascontiguousarray(W.T), dtype)


def products_at_both_levels(m, k, n, trans_a, beta, dtype, threads):
    """(op(A), B, C0, C): C = 0.75 * op(A) @ B + beta * C0 for random operands, in the
    kernel (past its limits) at SIMD level 1 on one thread and at level 2 on `threads`,
    every product split even when small; asserts that the two have the same bits."""
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    A = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.normal(size=(k, n)).astype(dtype)
    C0 = rng.normal(size=(m, n)).astype(dtype)
    before = _kernels.split_thresholds()
    results = []
    try:
        _kernels.small_gemm(2)
        _kernels.split_thresholds(product=64)          # split even these across threads
        for level in (1, 2):
            assert _kernels.simd_level(level) == level
            out = C0.copy()
            _kernels.matmul(A, B, trans_a=trans_a, alpha=0.75, beta=beta, out=out,
                            n_threads=threads if level == 2 else 1)
            results.append(out)
    finally:
        _kernels.simd_level(2)
        _kernels.small_gemm(-1)
        _kernels.split_thresholds(*before)
    assert np.array_equal(results[0], results[1])
    return (A.T if trans_a else A), B, C0, results[0]


@pytest.mark.skipif(_kernels.simd_level() < 2, reason="this CPU has no AVX-512")
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 70), n=st.integers(1, 80),
       trans_a=st.booleans(), beta=st.sampled_from([0.0, 1.0, -0.5]),
       dtype=st.sampled_from(DTYPES), threads=st.integers(1, 3))
def test_the_avx512_variant_gives_the_bits_of_the_avx2_one(m, k, n, trans_a, beta, dtype,
                                                            threads):
    """Every element is the same FMA chain in both variants, wherever the tiles, masks
    and thread blocks fall."""
    op_a, B, _, C = products_at_both_levels(m, k, n, trans_a, beta, dtype, threads)
    if beta == 0:
        assert_product_close(C / dtype(0.75), op_a, B, dtype)


@pytest.mark.skipif(_kernels.simd_level() < 2, reason="this CPU has no AVX-512")
@pytest.mark.parametrize("m", [96, 97, 107, 150, 300])
@pytest.mark.parametrize("n", [40, 300])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_cut_into_tapered_blocks_keep_every_bit(m, n, trans_a, threads, dtype):
    """From 4 tiles of rows a thread, a product is cut by rows into twice as many blocks
    as threads, large ones then small ones (bpf_taper_start): every row is computed
    once, with the bits of one thread, with B in place (short rows) or packed (long)."""
    op_a, B, C0, C = products_at_both_levels(m, 33, n, trans_a, -0.5, dtype, threads)
    want = 0.75 * (op_a.astype(np.float64) @ B) - 0.5 * C0
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol * 20)


@contextlib.contextmanager
def kernel_at_level(level, mode):
    """The register kernel in small_gemm `mode` at SIMD level `level` (the test is skipped
    on a CPU without it), both restored after."""
    if _kernels.simd_level(level) != level:
        _kernels.simd_level(2)
        pytest.skip("this CPU lacks the level")
    try:
        _kernels.small_gemm(mode)
        yield
    finally:
        _kernels.simd_level(2)
        _kernels.small_gemm(-1)


def long_rows(dtype):
    """Columns from which a row of B takes more than 1 KB: the kernel then copies B into
    column panels (several rows of op(A)) or streams it row after row (one row)."""
    return 1024 // np.dtype(dtype).itemsize + 1


@pytest.mark.skipif(_kernels.simd_level() < 2, reason="this CPU has no AVX-512")
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 30), k=st.sampled_from([1, 2, 5, 17, 64, 513, 1030]),
       extra=st.integers(0, 70), trans_a=st.booleans(), beta=st.sampled_from([0.0, 1.0, -0.5]),
       dtype=st.sampled_from(DTYPES), threads=st.integers(1, 3))
def test_long_rows_of_B_give_the_same_bits_at_both_levels(m, k, extra, trans_a, beta, dtype,
                                                           threads):
    """B with rows over 1 KB: copied into panels by blocks of k (when beta == 0: k of
    1030 float32 or 513 float64 takes two blocks, the partial sums waiting in C), op(A)
    into tiles of 6 or 12 rows, or one row streamed: the chains are the same at both
    levels, on any thread count, and equal the product to rounding."""
    op_a, B, C0, C = products_at_both_levels(m, k, long_rows(dtype) + extra, trans_a, beta,
                                             dtype, threads)
    want = 0.75 * (op_a.astype(np.float64) @ B) + beta * C0
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol * np.sqrt(k) * 4)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("level", [1, 2])
def test_a_row_alone_has_its_bits_in_a_product_with_long_rows(dtype, level):
    """One sample's prediction (a row streamed against B) has the bits of the same row in
    a batch (B copied into panels, tiles of rows), at k in one block and in two."""
    with kernel_at_level(level, 2):
        n = long_rows(dtype) + 37
        for k in (300, 1500):
            A, B = operands(29, k, n, dtype, seed=k)
            C = _kernels.matmul(A, B)
            for i in (0, 11, 12, 28):
                assert np.array_equal(_kernels.matmul(A[i:i + 1].copy(), B), C[i:i + 1])
            assert np.array_equal(_kernels.matmul(A[:13].copy(), B), C[:13])
            assert_product_close(C, A, B, dtype)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("level", [1, 2])
def test_every_element_of_A_reaches_its_tile(dtype, trans_a, level):
    """B with long rows: op(A) is copied into tiles, 4 rows at a time transposed in
    registers and the rest one by one. With small integers every product is exact, so
    one element copied to a wrong place, or not at all, changes C: rows 2..30 (whole
    groups of 4, tiles of 6 or 12, remainders), k from 1 to 2 vectors and more."""
    with kernel_at_level(level, 1):
        n = long_rows(dtype) + 5
        rng = np.random.default_rng(7)
        for m in range(2, 31):
            for k in (1, 3, 4, 5, 8, 9, 16, 17, 33):
                A = rng.integers(-8, 9, size=(m, k)).astype(dtype)
                B = rng.integers(-8, 9, size=(k, n)).astype(dtype)
                A_in = np.ascontiguousarray(A.T) if trans_a else A
                C = _kernels.matmul(A_in, B, trans_a, False)
                assert np.array_equal(C, A.astype(np.float64) @ B), (m, k)


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
def test_a_few_rows_read_from_packed_B_have_the_bits_of_B_in_place(dtype, trans_a):
    """1-4 rows (a prediction of a few samples) against B packed once (predict's copy):
    its column panels, several at a time, one block of k after another (k past 1024
    float32 or 512 float64 takes two or three), the last panel part padding; on 1-3
    threads, cut at whole panels. The bits are those of B in place (one row streamed, or
    tiles), of each row alone, and of the other SIMD level; the product is right to
    rounding."""
    results = {}
    for level in (1, 2):
        with kernel_at_level(level, 2):
            for n in (long_rows(dtype), 300, 1030, 2000):
                for k in (1, 5, 512, 513, 1500):
                    rng = np.random.default_rng(n * 7 + k)
                    A = rng.normal(size=(k, 4) if trans_a else (4, k)).astype(dtype)
                    B = rng.normal(size=(k, n)).astype(dtype)
                    for m in (1, 2, 3, 4):
                        A_m = np.ascontiguousarray(A[:, :m] if trans_a else A[:m])
                        in_place = _kernels.matmul(A_m, B, trans_a)
                        for threads in (1, 2, 3):
                            C = _kernels.matmul(A_m, B, trans_a, n_threads=threads,
                                                packed=True)
                            assert np.array_equal(C, in_place), (level, m, n, k, threads)
                        assert_product_close(C, A_m.T if trans_a else A_m, B, dtype)
                        results.setdefault((n, k), []).append(C)
    for (n, k), Cs in results.items():          # m = 1..4 at level 1, then at level 2
        for m in (1, 2, 3, 4):
            assert np.array_equal(Cs[m - 1], Cs[m + 3]), (n, k, m)
            assert np.array_equal(Cs[m - 1], Cs[3][:m]), (n, k, m)


def test_a_few_rows_against_long_rows_of_B_run_in_the_kernel():
    """BLAS copies all of B for a product of 2-4 rows (784x1024x1024 float32: 6x the time
    of one row): with long rows of B such products run in the kernel at every level."""
    for m in (1, 2, 3, 4):
        assert _kernels.small_gemm_used(m, 1030, 784, np.float32) == HAS_KERNEL
        assert _kernels.small_gemm_used(m, 300, 784, np.float64) == HAS_KERNEL


@pytest.mark.skipif(_kernels.simd_level() < 2, reason="this CPU has no AVX-512")
def test_b_one_tile_wide_runs_in_the_kernel_on_avx512():
    """A classifier's output layer (B of 10 columns) ties OpenBLAS in the kernel, so it
    runs there, whatever the rows: a prediction's row blocks then go through every layer
    on one thread (forward_rows). A.T products keep their own rule."""
    for m in (2, 5, 256, 4096):
        for dtype, n in ((np.float32, 10), (np.float32, 32), (np.float64, 10), (np.float64, 16)):
            assert _kernels.small_gemm_used(m, n, 128, dtype)
            assert _kernels.small_gemm_used(m, n, 1024, dtype)
    assert not _kernels.small_gemm_used(256, 33, 16, np.float32)     # wider: the old rule
