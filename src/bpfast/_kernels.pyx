# cython: language_level=3
"""Compiled kernels of bpfast, fused over float32/float64, GIL released.

Row-major and batch first, as everywhere in bpfast (docs/design.md)::

    X, A: (n, n_in)   W: (n_in, n_out)   b: (n_out,)
    Z = X @ W + b,  A = f(Z),  E_prev = delta @ W.T,  dW = A_prev.T @ delta

Each public kernel is a pair, one under the other: the ``cdef ... nogil`` function that
the engine calls, named ``<name>_into`` (it writes into buffers it is given), and the
``def`` twin ``<name>`` that Python and the tests call, with the name, argument order and
meaning of its pure-Python twin in ``reference.py`` and its validated public form in
``functional.py``. The ``def`` twins check only what keeps memory safe (shapes and,
through typed memoryviews, dtype and C-contiguity); friendly conversion and messages live
in ``functional.py``. The rest (``gemm``, ``column_sums``, ``sgd_backward_layer``, the tiny
paths) are building blocks, composed of or tested against the pairs.
"""
from cython cimport floating
from libc.math cimport exp, log, pow, sqrt
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "_vmath.h" nogil:
    # Element-wise loops in C: vectorized, compiled per instruction set, picked at run time.
    void bpf_bias_act_d(Py_ssize_t n, Py_ssize_t m, const double* b, double* Z, int act)
    void bpf_bias_act_f(Py_ssize_t n, Py_ssize_t m, const float* b, float* Z, int act)
    void bpf_act_backward_d(Py_ssize_t size, double* E, const double* A, int act)
    void bpf_act_backward_f(Py_ssize_t size, float* E, const float* A, int act)
    void bpf_softmax_d(Py_ssize_t n, Py_ssize_t m, double* Z)
    void bpf_softmax_f(Py_ssize_t n, Py_ssize_t m, float* Z)
    double bpf_xent_delta_d(Py_ssize_t n, Py_ssize_t m, const double* A, const double* Y,
                            double* delta)
    double bpf_xent_delta_f(Py_ssize_t n, Py_ssize_t m, const float* A, const float* Y,
                            float* delta)
    bint bpf_all_finite_d(Py_ssize_t size, const double* x)
    bint bpf_all_finite_f(Py_ssize_t size, const float* x)
    double bpf_sum_squares_d(Py_ssize_t size, const double* x)
    double bpf_sum_squares_f(Py_ssize_t size, const float* x)
    void bpf_column_sums_d(Py_ssize_t n, Py_ssize_t m, const double* D, double alpha, double* db)
    void bpf_column_sums_f(Py_ssize_t n, Py_ssize_t m, const float* D, float alpha, float* db)
    void bpf_sgd_update_d(Py_ssize_t size, double* P, const double* G, double* V, double lr,
                          double mu, double decay, int nesterov)
    void bpf_sgd_update_f(Py_ssize_t size, float* P, const float* G, float* V, float lr,
                          float mu, float decay, int nesterov)
    double bpf_squared_error_d(Py_ssize_t size, const double* A, const double* Y, double scale,
                               double* delta)
    double bpf_squared_error_f(Py_ssize_t size, const float* A, const float* Y, double scale,
                               float* delta)
    void bpf_adam_d(Py_ssize_t size, double* P, const double* G, double* M, double* V,
                    const bpf_adam_args* a)
    void bpf_adam_f(Py_ssize_t size, float* P, const float* G, float* M, float* V,
                    const bpf_adam_args* a)
    void bpf_rprop_d(Py_ssize_t size, double* P, const double* G, double* prev, double* steps,
                     const bpf_rprop_args* r)
    void bpf_rprop_f(Py_ssize_t size, float* P, const float* G, float* prev, float* steps,
                     const bpf_rprop_args* r)
    int bpf_cpu_level()
    int bpf_set_cpu_level(int cap)

cdef extern from "_team.h" nogil:
    # The thread team and the BLAS thread limit (see _team.h).
    ctypedef void (*bpf_block_fn)(void* ctx, Py_ssize_t block) noexcept nogil
    void bpf_team_run(Py_ssize_t n_blocks, bpf_block_fn fn, void* ctx)
    void bpf_team_enter(int n_threads)
    void bpf_team_leave()
    int bpf_team_width()
    int bpf_default_threads()
    Py_ssize_t bpf_block_start(Py_ssize_t total, Py_ssize_t b, Py_ssize_t blocks,
                               Py_ssize_t grain)
    Py_ssize_t bpf_taper_start(Py_ssize_t total, Py_ssize_t b, Py_ssize_t width,
                               Py_ssize_t grain)
    void bpf_blas_find_controls(void* blas_function)
    void bpf_blas_hold(int hold)
    bint bpf_blas_hold_product()
    int bpf_blas_limit()
    long bpf_team_worker_blocks()

cdef extern from "_tiny.h" nogil:
    # Whole tiny layers in scalar loops, with the bits of the general path.
    void bpf_tiny_forward_d(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, const double* X,
                            const double* W, const double* b, int act, double* A)
    void bpf_tiny_forward_f(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, const float* X,
                            const float* W, const float* b, int act, float* A)
    void bpf_tiny_backward_d(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const double* A_prev, const double* delta, double lr,
                             double w_scale, double* W, double* b, double* E, int act)
    void bpf_tiny_backward_f(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const float* A_prev, const float* delta, float lr,
                             float w_scale, float* W, float* b, float* E, int act)
    double bpf_tiny_sgd_train_batch_d(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                               const Py_ssize_t* b_off, const Py_ssize_t* a_off, int hidden_act,
                               int output_act, int loss, Py_ssize_t n, const double* X,
                               const double* Y, double* P, double* acts, double* err0,
                               double* err1, double lr, double w_scale)
    double bpf_tiny_sgd_train_batch_f(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                               const Py_ssize_t* b_off, const Py_ssize_t* a_off, int hidden_act,
                               int output_act, int loss, Py_ssize_t n, const float* X,
                               const float* Y, float* P, float* acts, float* err0,
                               float* err1, float lr, float w_scale)

cdef extern from "_smallgemm.h" nogil:
    # Small products in registers (AVX2 + FMA), where OpenBLAS has no small-matrix path.
    bint bpf_small_gemm_on()
    int bpf_set_small_gemm(int mode)
    void bpf_small_gemm_d(int trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                          const double* A, Py_ssize_t lda, const double* B, Py_ssize_t ldb,
                          double beta, double* C, Py_ssize_t ldc, const double* packed,
                          Py_ssize_t width, Py_ssize_t col0)
    void bpf_small_gemm_f(int trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
                          const float* A, Py_ssize_t lda, const float* B, Py_ssize_t ldb,
                          float beta, float* C, Py_ssize_t ldc, const float* packed,
                          Py_ssize_t width, Py_ssize_t col0)
    # B's rows longer than this many bytes are read from column panels; up to this many
    # rows of op(A) then read a packed B panel by panel.
    enum: BPF_SG_ROW_BYTES
    enum: BPF_SG_PACKED_ROWS
    Py_ssize_t bpf_small_gemm_packed_size_d(Py_ssize_t k, Py_ssize_t n)
    Py_ssize_t bpf_small_gemm_packed_size_f(Py_ssize_t k, Py_ssize_t n)
    void bpf_small_gemm_pack_d(Py_ssize_t k, Py_ssize_t n, const double* B, Py_ssize_t ldb,
                               double* out)
    void bpf_small_gemm_pack_f(Py_ssize_t k, Py_ssize_t n, const float* B, Py_ssize_t ldb,
                               float* out)
    Py_ssize_t bpf_small_gemm_panel(Py_ssize_t item)
    Py_ssize_t bpf_small_gemm_tile_rows()

import os

import numpy as np

from bpfast.activations import ACTIVATIONS, LOSSES
from bpfast._layout import aligned_zeros

# Products of at most this many multiply-adds run in direct loops, where a BLAS call
# costs more than the arithmetic; benchmarks/bench_gemm_threshold.py measures the
# crossing (benchmarks/README.md). A layer whose products are all this small runs whole
# in _tiny.h.
cdef Py_ssize_t TINY_PRODUCT = 64

# Products whose operands op(A) and B take at most this many bytes together run in
# _smallgemm.h's register kernel when it is on: up to here it beats OpenBLAS, past it
# BLAS wins (benchmarks/bench_small_gemm.py). On AVX2 CPUs (OpenBLAS's Haswell kernels,
# no small-matrix path) SMALL_GEMM_BYTES. On AVX-512 CPUs the kernel's 512-bit variant
# beats or ties OpenBLAS's SkylakeX kernels on larger products, from 5 rows of op(A) and
# SMALL_GEMM_MIN_AVX512 multiply-adds on (below, OpenBLAS's small-matrix path ties it):
# with A, when B has short rows (at most BPF_SG_ROW_BYTES bytes, read in place) and at
# most SMALL_GEMM_B_AVX512 bytes, however many rows A has (it runs them in chunks that
# stay in L2), and at any size when B has long rows (it copies B into column panels, as BLAS
# does); with A.T (read across its rows), up to SMALL_GEMM_BYTES_AVX512_AT bytes of
# operands; and with A at any size when B is one tile wide (at most
# SMALL_GEMM_NARROW_AVX512 bytes a row: a classifier's output layer), where the two tie
# (256x128x10 and 1024x1024x10, both types), so that a prediction's rows can run through
# every layer on a thread of their own. At every level, a single row of A (one sample)
# at any size (BLAS's GEMM is several times slower there), and up to BPF_SG_PACKED_ROWS
# rows when B has long rows (BLAS copies all of B for those few rows: 784x1024x1024
# float32, 2 rows, 6x the time of one). Where they tie, the kernel is chosen: its
# products split between threads without a fixed cut.
cdef Py_ssize_t SMALL_GEMM_BYTES = 96 * 1024
cdef Py_ssize_t SMALL_GEMM_B_AVX512 = 1024 * 1024
cdef Py_ssize_t SMALL_GEMM_BYTES_AVX512_AT = 4096 * 1024
cdef Py_ssize_t SMALL_GEMM_MIN_AVX512 = 1 << 20     # multiply-adds
cdef Py_ssize_t SMALL_GEMM_NARROW_AVX512 = 128
# small_gemm()'s mode: -1 automatic (the limits above, by SIMD level), 1 the AVX2 limit
# at every level (tests: the same path, so the same bits, at every level), 2 every
# product the kernel can run (not op(B) = B.T), past the limits too (benchmarks).
cdef int SMALL_GEMM_MODE = -1

# Layers whose products are all at most TINY_PRODUCT multiply-adds run whole in _tiny.h
# (False: through the general path, for the tests that compare the two).
cdef bint TINY_LAYERS = True

# column_sums() and all_finite() hand at least this many elements to _vmath.h's
# dispatched loops; below, a call costs more than it saves.
cdef Py_ssize_t COLUMN_SUMS_C = 64
cdef Py_ssize_t ALL_FINITE_C = 64

# backprop_error_into() transposes W of up to NARROW_W elements (8 KB in float64) for
# BLAS, and of up to WT_BYTES (16 KB: 2048 float64, 4096 float32) for the small-product
# kernel, into a buffer on the stack (kept small: a thread may have a small stack).
cdef enum:
    NARROW_W = 1024
    WT_BYTES = 16384
    WT_DOUBLES = 2048

# Threads. A BLAS product of at least 2 * SPLIT_PRODUCT multiply-adds is cut into 2, 4 ...
# up to SPLIT_MAX_BLOCKS blocks of rows or columns of C (at least SPLIT_PRODUCT each, cut
# at multiples of SPLIT_GRAIN), and the blocks are shared by the thread team. The cut
# depends on the shape and the machine alone, never on the thread count: a block of a
# product is its own BLAS call, whose bits differ from those of the same elements in a
# larger call, so cutting the same way at every thread count is what keeps the bits.
# SPLIT_MAX_BLOCKS follows the machine's CPU count (os.cpu_count(), not the affinity mask
# or any thread limit): each block more costs one thread a few percent
# (benchmarks/bench_split.py). The register kernel's and the element-wise loops' bits do
# not depend on a cut: they split by the thread count, from SPLIT_ELEMENTS elements a block.
cdef Py_ssize_t SPLIT_PRODUCT = 1 << 20
cdef Py_ssize_t SPLIT_MAX_BLOCKS = 1
while SPLIT_MAX_BLOCKS * 2 <= min(8, os.cpu_count() or 1):
    SPLIT_MAX_BLOCKS *= 2
cdef Py_ssize_t SPLIT_GRAIN = 16
cdef Py_ssize_t SPLIT_ELEMENTS = 1 << 15
# BLAS products from this many multiply-adds run with the BLAS held to one thread
# (OpenBLAS threads its own from 65536 up, depending on its version).
cdef Py_ssize_t BLAS_HOLD_PRODUCT = 1 << 16

bpf_blas_find_controls(<void*>sgemm)


def _check(bint ok, str message):
    if not ok:
        raise ValueError(message)


cdef inline object new_array(shape, bint is_double):
    return np.empty(shape, dtype=np.float64 if is_double else np.float32)


# ================================================================ matrix products

cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t lda,
               const floating* B, Py_ssize_t ldb,
               floating beta, floating* C, Py_ssize_t ldc,
               const floating* B_packed=NULL, bint in_kernel=False) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, row-major, C is (m, n).

    Direct loops for the tiniest products, the register kernel for small ones when it
    is on, BLAS otherwise; a large product is cut into blocks of C's rows (when it has
    more rows than columns) or columns, shared by the thread team (see SPLIT_PRODUCT).
    B_packed: NULL, or B as pack_b() packed it at the SIMD level in use now, which the
    register kernel then reads instead of packing B itself (the same bits).
    in_kernel: the register kernel, whatever the shape (the caller knows it is on and
    that the whole product it is a block of runs there: see forward_in_kernel).
    """
    if m == 0 or n == 0:
        return
    if not in_kernel and (m * n * k <= TINY_PRODUCT or k == 0):
        dot_products(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    cdef GemmJob job
    job.kernel = in_kernel or kernel_fits(trans_a, trans_b, m, n, k, sizeof(floating))
    job.packed = B_packed if job.kernel else NULL
    job.width = n
    # Column blocks of a packed B start at whole panels.
    cdef Py_ssize_t grain = (bpf_small_gemm_panel(sizeof(floating)) if job.packed != NULL
                             else SPLIT_GRAIN)
    # Cut along the longer side; with B packed, along the rows from ROWS_CUT_PACKED of
    # them (cut by columns, every thread would copy all of op(A) into tiles).
    job.by_rows = m > n or (job.packed != NULL and m >= ROWS_CUT_PACKED)
    cdef Py_ssize_t size = m if job.by_rows else n
    job.blocks = 1
    job.tapered = False
    cdef Py_ssize_t unit = SPLIT_PRODUCT
    if job.kernel:
        # The kernel's bits do not depend on the cut: as many blocks as threads. A few rows
        # (samples) are bound by reading B, which threads share from a quarter of the size.
        if m <= BPF_SG_PACKED_ROWS:
            unit = max(1, SPLIT_PRODUCT // 4)
        if m * n * k // 2 >= unit and size >= 2 * grain:
            job.blocks = max(1, min(bpf_team_width(), m * n * k // unit, size // grain))
        if job.by_rows and job.blocks > 1:
            grain = bpf_small_gemm_tile_rows()      # blocks of whole tiles
            job.tapered = tapers(m, job.blocks, grain)
            if job.tapered:
                job.blocks *= 2
    else:
        while (job.blocks < SPLIT_MAX_BLOCKS and m * n * k // (2 * job.blocks) >= SPLIT_PRODUCT
               and size >= 2 * job.blocks * SPLIT_GRAIN):
            job.blocks *= 2
    cdef bint release = (not job.kernel and m * n * k >= BLAS_HOLD_PRODUCT
                         and bpf_blas_hold_product())
    job.grain = grain
    if job.blocks == 1:
        product(job.kernel, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                <const floating*>job.packed, n, 0)
    else:
        job.trans_a = trans_a
        job.trans_b = trans_b
        job.is_double = floating is double
        job.m = m
        job.n = n
        job.k = k
        job.lda = lda
        job.ldb = ldb
        job.ldc = ldc
        job.alpha = alpha
        job.beta = beta
        job.A = A
        job.B = B
        job.C = C
        bpf_team_run(job.blocks, gemm_block, &job)
    if release:
        bpf_blas_hold(0)


cdef inline bint kernel_fits(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                            Py_ssize_t k, Py_ssize_t item) noexcept nogil:
    """Whether gemm() runs alpha * op(A) @ op(B) in the register kernel (see
    SMALL_GEMM_BYTES); item: the bytes of an element."""
    if trans_b or not bpf_small_gemm_on():
        return False
    if SMALL_GEMM_MODE == 2 or (m == 1 and not trans_a):
        return True             # one sample: B streamed row by row beats BLAS's GEMM
    if m <= BPF_SG_PACKED_ROWS and not trans_a and n * item > BPF_SG_ROW_BYTES:
        return True             # a few samples: B read once for all of them
    cdef Py_ssize_t size = (m * k + k * n) * item
    if bpf_cpu_level() >= 2 and SMALL_GEMM_MODE < 0:
        if not trans_a and n * item <= SMALL_GEMM_NARROW_AVX512:
            return True         # one tile wide (a classifier's output layer): a tie
        if m <= 4 or m * n * k < SMALL_GEMM_MIN_AVX512:
            return False                # 2-4 rows: a tile's 4-8 chains are too few
        if trans_a:
            return n * item <= BPF_SG_ROW_BYTES and size <= SMALL_GEMM_BYTES_AVX512_AT
        return n * item > BPF_SG_ROW_BYTES or k * n * item <= SMALL_GEMM_B_AVX512
    return size <= SMALL_GEMM_BYTES


cdef struct GemmJob:
    # A product cut into `blocks` blocks of C's rows (by_rows) or columns (starting at
    # multiples of `grain`; tapered: see tapers); packed: B packed for the kernel (or
    # NULL), `width` columns.
    bint kernel, by_rows, tapered, trans_a, trans_b, is_double
    Py_ssize_t m, n, k, lda, ldb, ldc, blocks, grain, width
    double alpha, beta
    const void* A
    const void* B
    const void* packed
    void* C


cdef void gemm_block(void* ctx, Py_ssize_t block) noexcept nogil:
    cdef GemmJob* job = <GemmJob*>ctx
    if job.is_double:
        product_block(job, block, <const double*>job.A, <const double*>job.B, <double*>job.C)
    else:
        product_block(job, block, <const float*>job.A, <const float*>job.B, <float*>job.C)


cdef inline void product_block(const GemmJob* job, Py_ssize_t block, const floating* A,
                               const floating* B, floating* C) noexcept nogil:
    cdef Py_ssize_t size = job.m if job.by_rows else job.n
    cdef Py_ssize_t start = split_start(size, block, job.blocks, job.grain, job.tapered)
    cdef Py_ssize_t count = (split_start(size, block + 1, job.blocks, job.grain, job.tapered)
                             - start)
    if count <= 0:
        return
    if job.by_rows:          # rows start..: of op(A) and of C
        product(job.kernel, job.trans_a, job.trans_b, count, job.n, job.k,
                <floating>job.alpha, A + (start if job.trans_a else start * job.lda), job.lda,
                B, job.ldb, <floating>job.beta, C + start * job.ldc, job.ldc,
                <const floating*>job.packed, job.width, 0)
    else:                    # columns start..: of op(B) and of C
        product(job.kernel, job.trans_a, job.trans_b, job.m, count, job.k,
                <floating>job.alpha, A, job.lda,
                B + (start * job.ldb if job.trans_b else start), job.ldb,
                <floating>job.beta, C + start, job.ldc, <const floating*>job.packed,
                job.width, start)


cdef inline void product(bint kernel, bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                         Py_ssize_t k, floating alpha, const floating* A, Py_ssize_t lda,
                         const floating* B, Py_ssize_t ldb,
                         floating beta, floating* C, Py_ssize_t ldc, const floating* packed,
                         Py_ssize_t width, Py_ssize_t col0) noexcept nogil:
    """One product, whole, in the register kernel (packed: see gemm()) or BLAS."""
    if kernel:
        if floating is double:
            bpf_small_gemm_d(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                             packed, width, col0)
        else:
            bpf_small_gemm_f(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                             packed, width, col0)
        return
    # BLAS is column-major: a row-major C is a column-major C.T = op(B).T @ op(A).T,
    # so pass the operands swapped and the transposes as they are.
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int im = <int>m, in_ = <int>n, ik = <int>k
    cdef int ilda = <int>lda, ildb = <int>ldb, ildc = <int>ldc
    if floating is double:
        dgemm(&tb, &ta, &in_, &im, &ik, &alpha, <double*>B, &ildb, <double*>A, &ilda,
              &beta, C, &ildc)
    else:
        sgemm(&tb, &ta, &in_, &im, &ik, &alpha, <float*>B, &ildb, <float*>A, &ilda,
              &beta, C, &ildc)


cdef Py_ssize_t packed_size(Py_ssize_t k, Py_ssize_t n, bint is_double) noexcept nogil:
    """Elements of a (k, n) B packed by pack_b at the SIMD level in use now (0: nothing to
    pack: the register kernel is off, or B's rows are short and read in place)."""
    if not bpf_small_gemm_on():
        return 0
    return bpf_small_gemm_packed_size_d(k, n) if is_double else bpf_small_gemm_packed_size_f(k, n)


cdef void pack_b(Py_ssize_t k, Py_ssize_t n, const floating* B, floating* out) noexcept nogil:
    """B (k, n, row-major) into `out` (packed_size elements) as the register kernel packs
    it: products with B may then skip the packing (gemm's B_packed)."""
    if floating is double:
        bpf_small_gemm_pack_d(k, n, B, n, out)
    else:
        bpf_small_gemm_pack_f(k, n, B, n, out)


cdef void gemm_loops(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     floating alpha, const floating* A, Py_ssize_t lda,
                     const floating* B, Py_ssize_t ldb,
                     floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    """The same product as gemm() in direct loops: one dot product per element of C.

    For the tiniest shapes, where even setting up vectorized loops costs more than
    the few multiply-adds, and as the test oracle of gemm(). beta == 0 never reads C.
    """
    dot_products(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef inline void dot_products(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t k, floating alpha, const floating* A, Py_ssize_t lda,
                              const floating* B, Py_ssize_t ldb,
                              floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    # gemm_loops' body, inline so that gemm() specializes it for each call site.
    cdef Py_ssize_t i, j, p, sa_i, sa_p, sb_p, sb_j
    cdef floating s
    # op(A)[i, p] is A[i * sa_i + p * sa_p]; op(B)[p, j] is B[p * sb_p + j * sb_j].
    if trans_a:
        sa_i = 1
        sa_p = lda
    else:
        sa_i = lda
        sa_p = 1
    if trans_b:
        sb_p = 1
        sb_j = ldb
    else:
        sb_p = ldb
        sb_j = 1
    for i in range(m):
        for j in range(n):
            s = 0
            for p in range(k):
                s += A[i * sa_i + p * sa_p] * B[p * sb_p + j * sb_j]
            if beta == 0:
                C[i * ldc + j] = alpha * s
            else:
                C[i * ldc + j] = alpha * s + beta * C[i * ldc + j]


def matmul(floating[:, ::1] A, floating[:, ::1] B, bint trans_a=False, bint trans_b=False,
           bint loops=False, double alpha=1, double beta=0, out=None, int n_threads=1,
           bint packed=False):
    """alpha * op(A) @ op(B) (+ beta * out) through gemm() (or gemm_loops() with
    loops=True) on n_threads threads (0: the default), into `out` when given; for tests
    and benchmarks. packed=True: B packed first by pack_b, as predict's copy is, and the
    product given that copy (when B's rows are long enough to pack and B is not
    transposed)."""
    cdef Py_ssize_t m = A.shape[1] if trans_a else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if trans_b else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if trans_b else B.shape[1]
    _check(k == kb, f"matmul: inner sizes differ ({k} vs {kb})")
    if out is None:
        out = new_array((m, n), floating is double)
    cdef floating[:, ::1] C = out
    _check(C.shape[0] == m and C.shape[1] == n, "matmul: out has the wrong shape")
    if m == 0 or n == 0:
        return out
    # A product over k == 0 reads neither operand.
    cdef const floating* pa = &A[0, 0] if k > 0 else NULL
    cdef const floating* pb = &B[0, 0] if k > 0 else NULL
    cdef Py_ssize_t size = packed_size(k, n, floating is double) if packed and k > 0 else 0
    cdef floating[::1] copy
    cdef const floating* pcopy = NULL
    if size > 0 and not trans_b:
        copy = aligned_zeros(size, np.float64 if floating is double else np.float32)
        pack_b(k, n, pb, &copy[0])
        pcopy = &copy[0]
    with nogil:
        team_enter(n_threads)
        if loops:
            gemm_loops(trans_a, trans_b, m, n, k, <floating>alpha, pa, A.shape[1], pb,
                       B.shape[1], <floating>beta, &C[0, 0], n)
        else:
            gemm(trans_a, trans_b, m, n, k, <floating>alpha, pa, A.shape[1], pb, B.shape[1],
                 <floating>beta, &C[0, 0], n, pcopy)
        team_leave()
    return out


# ================================================================ the forward pass

cdef struct Elementwise:
    # An element-wise loop cut into `blocks` blocks of its `size` elements (rows of
    # `row` elements for bias_activation); the loop's own arrays and scalars.
    bint is_double
    Py_ssize_t size, row, blocks
    void* x
    const void* y
    void* s1
    void* s2
    const void* args
    int code               # bias_activation_block: the activation; loop_block: LOOP_*
    int activation         # LOOP_ACT_BACKWARD's
    double lr, momentum, decay
    bint nesterov


cdef enum:
    # The loops loop_block() runs: x, y, s1, s2 are E, A (activation_backward) or W, grad
    # and the optimizer's state.
    LOOP_ACT_BACKWARD = 0
    LOOP_SGD = 1
    LOOP_ADAM = 2
    LOOP_RPROP = 3


cdef inline void run_split(Elementwise* job, bpf_block_fn fn, bint is_double,
                           Py_ssize_t size, Py_ssize_t row, void* x, const void* y, void* s1,
                           void* s2, int code) noexcept nogil:
    """Set job's arrays and run fn over its blocks: one a thread from 2 * SPLIT_ELEMENTS
    elements on (size rows of `row` elements, or size elements when row is 0), else
    fn(job, 0) on this thread alone."""
    job.is_double = is_double
    job.size = size
    job.row = row
    job.x = x
    job.y = y
    job.s1 = s1
    job.s2 = s2
    job.code = code
    job.blocks = element_blocks(size * row if row > 0 else size, size)
    if job.blocks > 1:
        bpf_team_run(job.blocks, fn, job)
    else:
        fn(job, 0)


cdef inline Py_ssize_t element_blocks(Py_ssize_t elements, Py_ssize_t units) noexcept nogil:
    """Blocks for an element-wise loop over `elements` in `units` (rows or elements):
    one per thread, each of at least SPLIT_ELEMENTS. Its bits do not depend on the cut."""
    if elements // 2 < SPLIT_ELEMENTS:
        return 1
    return max(1, min(<Py_ssize_t>bpf_team_width(), elements // SPLIT_ELEMENTS, units))


cdef inline Py_ssize_t block_range(const Elementwise* job, Py_ssize_t block,
                                   Py_ssize_t* count) noexcept nogil:
    """The first unit of block `block`, and in count how many it has."""
    if job.blocks == 1:             # the common case: no division on a small layer's path
        count[0] = job.size
        return 0
    cdef Py_ssize_t grain = 1 if job.row > 0 else 64
    cdef Py_ssize_t start = bpf_block_start(job.size, block, job.blocks, grain)
    count[0] = bpf_block_start(job.size, block + 1, job.blocks, grain) - start
    return start


cdef void gather_rows(const floating* src, Py_ssize_t width, const Py_ssize_t* idx,
                      Py_ssize_t count, floating* dst) noexcept nogil:
    """dst[r] := src[idx[r]] for r < count, rows of `width` elements: a shuffled batch,
    copied by the team from 2 * SPLIT_ELEMENTS elements on."""
    cdef Elementwise job
    job.args = idx
    run_split(&job, gather_block, floating is double, count, width, dst, src, NULL, NULL, 0)


cdef void gather_block(void* ctx, Py_ssize_t block) noexcept nogil:
    cdef Elementwise* job = <Elementwise*>ctx
    cdef Py_ssize_t rows, first = block_range(job, block, &rows), r
    cdef Py_ssize_t size = job.row * (8 if job.is_double else 4)
    cdef const Py_ssize_t* idx = <const Py_ssize_t*>job.args
    for r in range(first, first + rows):
        memcpy(<char*>job.x + r * size, <const char*>job.y + idx[r] * size, size)


cdef void bias_activation_block(void* ctx, Py_ssize_t block) noexcept nogil:
    cdef Elementwise* job = <Elementwise*>ctx
    cdef Py_ssize_t rows, first = block_range(job, block, &rows)
    if job.is_double:
        bpf_bias_act_d(rows, job.row, <const double*>job.y, <double*>job.x + first * job.row,
                       job.code)
    else:
        bpf_bias_act_f(rows, job.row, <const float*>job.y, <float*>job.x + first * job.row,
                       job.code)


cdef void bias_activation(Py_ssize_t n, Py_ssize_t m, const floating* b, int activation,
                          floating* Z) noexcept nogil:
    """Z := f(Z + b), one pass over Z (softmax: then its three sweeps, see _vmath.h).

    The loops are vectorized and picked for the CPU at run time (_vmath.h).
    """
    cdef int act = ACT_IDENTITY if activation in (ACT_SOFTMAX, ACT_EXP) else activation
    cdef Py_ssize_t i
    cdef Elementwise job
    run_split(&job, bias_activation_block, floating is double, n, m, Z, b, NULL, NULL, act)
    if activation == ACT_EXP:
        # libm's exp, one element at a time: the output of a Poisson regression only.
        for i in range(n * m):
            Z[i] = <floating>exp(<double>Z[i])
    elif activation == ACT_SOFTMAX:
        if floating is double:
            bpf_softmax_d(n, m, Z)
        else:
            bpf_softmax_f(n, m, Z)


cdef bint forward_in_kernel(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            Py_ssize_t item) noexcept nogil:
    """Whether dense_forward_into runs X @ W of n rows in the register kernel, whose
    every element is one chain of FMAs: then any block of the rows, run apart with
    in_kernel=True, gives the same bits."""
    return (n_in > 0 and n * n_in * n_out > TINY_PRODUCT
            and kernel_fits(False, False, n, n_out, n_in, item))


cdef bint dense_forward_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const floating* X, const floating* W, const floating* b,
                             int activation, floating* A, bint check_input=False,
                             const floating* W_packed=NULL, bint in_kernel=False) noexcept nogil:
    """A := f(X @ W + b); True. W_packed: NULL or W packed by pack_b (see gemm()).
    in_kernel: X @ W in the register kernel (see forward_in_kernel).

    check_input: False (A unfinished) when X holds a NaN or an infinity, found in X @ W,
    which is smaller than X when the layer narrows: a non-finite element of a row of X
    makes every element of that row of X @ W non-finite (NaN * w, inf * 0 and inf - inf
    are NaN, inf * w is infinite). The converse fails only on overflow, which the caller
    tells apart by checking X itself.
    A tiny layer (at most TINY_PRODUCT multiply-adds) runs in _tiny.h's scalar loops:
    the same operations in the same order, without a call per phase.
    """
    if (TINY_LAYERS and not in_kernel and n * n_in * n_out <= TINY_PRODUCT
            and activation <= ACT_RELU):
        if check_input and not all_finite(n * n_in, X):
            return False
        if floating is double:
            bpf_tiny_forward_d(n, n_in, n_out, X, W, b, activation, A)
        else:
            bpf_tiny_forward_f(n, n_in, n_out, X, W, b, activation, A)
        return True
    gemm(False, False, n, n_out, n_in, <floating>1, X, n_in, W, n_out, <floating>0, A, n_out,
         W_packed, in_kernel)
    if check_input and not all_finite(n * n_out, A):
        return False
    bias_activation(n, n_out, b, activation, A)
    return True


def dense_forward(floating[:, ::1] X, floating[:, ::1] W, floating[::1] b, str activation):
    """A = f(X @ W + b) as a new array."""
    cdef Py_ssize_t n = X.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    cdef int code = ACTIVATIONS[activation]
    _check(X.shape[1] == n_in and b.shape[0] == n_out and n > 0 and n_in > 0 and n_out > 0,
           f"dense_forward: shapes X{(X.shape[0], X.shape[1])}, W{(n_in, n_out)}, "
           f"b{(b.shape[0],)} do not fit")
    out = new_array((n, n_out), floating is double)
    cdef floating[:, ::1] A = out
    with nogil:
        dense_forward_into(n, n_in, n_out, &X[0, 0], &W[0, 0], &b[0], code, &A[0, 0])
    return out


# ================================================================ the error, backwards

cdef double output_delta_into(Py_ssize_t n, Py_ssize_t m, const floating* A, const floating* Y,
                              int loss, int activation, const floating* sample_weight,
                              floating* delta) noexcept nogil:
    """delta := dLoss/dZ of the output layer; returns the loss (accumulated in double).

    sample_weight (NULL: none) makes the loss and delta the weighted average over rows,
    divided by the sum of the weights ('sse': the weighted sum), so integer weights
    equal repeated rows.
    """
    cdef Py_ssize_t i, j
    cdef double value
    cdef floating s
    if loss == LOSS_CROSS_ENTROPY:
        # Softmax + cross-entropy fused: dLoss/dZ = (A * sum(Y) - Y) / n, no division by A.
        if floating is double:
            value = bpf_xent_delta_d(n, m, A, Y, delta)
        else:
            value = bpf_xent_delta_f(n, m, A, Y, delta)
    elif loss == LOSS_BINARY_CROSS_ENTROPY or loss == LOSS_POISSON:
        # Sigmoid + binary cross-entropy and exp + Poisson deviance (canonical links):
        # dLoss/dZ = (A - Y) / n.
        value = 0
        for i in range(n):
            value += row_loss(m, A + i * m, Y + i * m, loss)
        for i in range(n * m):
            delta[i] = (A[i] - Y[i]) / <floating>n
        value /= n
    else:
        if floating is double:
            value = bpf_squared_error_d(n * m, A, Y, 1.0 / (n * m) if loss == LOSS_MSE else 1.0,
                                        delta)                      # delta = dLoss/dA
        else:
            value = bpf_squared_error_f(n * m, A, Y, 1.0 / (n * m) if loss == LOSS_MSE else 1.0,
                                        delta)
        if activation == ACT_SOFTMAX:
            # Softmax couples a row: dZ_i = A_i * (G_i - sum_j G_j A_j).
            for i in range(n):
                s = 0
                for j in range(m):
                    s += delta[i * m + j] * A[i * m + j]
                for j in range(m):
                    delta[i * m + j] = A[i * m + j] * (delta[i * m + j] - s)
        else:
            activation_backward_into(n * m, delta, A, activation)
    if sample_weight != NULL:
        value = weigh_rows(n, m, A, Y, loss, sample_weight, delta)
    return value


cdef double weigh_rows(Py_ssize_t n, Py_ssize_t m, const floating* A, const floating* Y,
                       int loss, const floating* w, floating* delta) noexcept nogil:
    """Turn the unweighted output delta (scaled by 1/n, 1/(n m) or 1) into the weighted
    one, row i times w_i * n / sum(w) ('sse': w_i); returns the weighted loss. Rows whose
    weights sum to 0 contribute nothing."""
    cdef Py_ssize_t i, j
    cdef double total = 0, value = 0, factor
    for i in range(n):
        total += w[i]
    for i in range(n):
        value += w[i] * row_loss(m, A + i * m, Y + i * m, loss)
        if loss == LOSS_SSE:
            factor = w[i]
        else:
            factor = w[i] * n / total if total > 0 else 0
        for j in range(m):
            delta[i * m + j] = <floating>(delta[i * m + j] * factor)
    if loss == LOSS_SSE:
        return value
    if total == 0:
        return 0
    return value / (total * m) if loss == LOSS_MSE else value / total


cdef double row_loss(Py_ssize_t m, const floating* a, const floating* y,
                     int loss) noexcept nogil:
    """The loss of one row, summed over its outputs, in double (0 log 0 counts as 0):
    squared errors, -sum(y log a), -sum(y log a + (1 - y) log(1 - a)), or the half
    Poisson deviance sum(y log(y / a) - y + a)."""
    cdef Py_ssize_t j
    cdef double value = 0, diff, p, t
    for j in range(m):
        p = a[j]
        t = y[j]
        if loss == LOSS_CROSS_ENTROPY:
            if t != 0:
                value -= t * log(p if p > 0 else 5e-324)
        elif loss == LOSS_BINARY_CROSS_ENTROPY:
            if t != 0:
                value -= t * log(p if p > 0 else 5e-324)
            if t != 1:
                value -= (1 - t) * log(1 - p if p < 1 else 5e-324)
        elif loss == LOSS_POISSON:
            value += p - t
            if t != 0:
                value += t * log(t / p)
        else:
            diff = p - t
            value += diff * diff
    return value


def output_delta(floating[:, ::1] A, floating[:, ::1] Y, str loss, str activation,
                 floating[::1] sample_weight=None):
    """Return (loss, delta) with delta = dLoss/dZ of the output layer."""
    cdef Py_ssize_t n = A.shape[0], m = A.shape[1]
    cdef int loss_code = LOSSES[loss], act = ACTIVATIONS[activation]
    cdef double value
    _check(Y.shape[0] == n and Y.shape[1] == m and n > 0 and m > 0,
           "output_delta: A and Y differ in shape or are empty")
    _check(sample_weight is None or sample_weight.shape[0] == n,
           "output_delta: sample_weight needs one weight per row")
    cdef const floating* w = &sample_weight[0] if sample_weight is not None else NULL
    out = new_array((n, m), floating is double)
    cdef floating[:, ::1] delta = out
    with nogil:
        value = output_delta_into(n, m, &A[0, 0], &Y[0, 0], loss_code, act, w, &delta[0, 0])
    return value, out


cdef void backprop_error_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                              const floating* delta, const floating* W,
                              floating* E) noexcept nogil:
    """E := delta @ W.T, (n, n_out) @ (n_out, n_in): the error sent back through W.

    Behind a narrow layer (a few outputs) OpenBLAS is slow with W.T as the operand, and
    faster with W transposed first into a small buffer on the stack; when the
    small-product kernel is on (AVX2 CPUs), any W of up to WT_BYTES is copied so, since
    the kernel reads B untransposed only. benchmarks/bench_step_phases.py times shapes
    on both sides of the rule.
    """
    cdef double Wt_store[WT_DOUBLES]       # WT_BYTES, aligned for either type
    cdef floating* Wt = <floating*>Wt_store
    cdef Py_ssize_t i = 0, j, k
    cdef bint narrow = n >= 16 and n_out <= 16 and n_in * n_out <= NARROW_W
    # The copy costs n_in * n_out moves against n * n_in * n_out multiply-adds.
    cdef bint for_kernel = (n_in * n_out * <Py_ssize_t>sizeof(floating) <= WT_BYTES and
                            kernel_fits(False, False, n, n_in, n_out, sizeof(floating)))
    if (narrow or for_kernel) and n * n_in * n_out > TINY_PRODUCT:
        # 8 rows of W at a time, so that each store run into Wt is 8 contiguous elements.
        while i + 8 <= n_in:
            for j in range(n_out):
                for k in range(8):
                    Wt[j * n_in + i + k] = W[(i + k) * n_out + j]
            i += 8
        while i < n_in:
            for j in range(n_out):
                Wt[j * n_in + i] = W[i * n_out + j]
            i += 1
        gemm(False, False, n, n_in, n_out, <floating>1, delta, n_out, Wt, n_in, <floating>0,
             E, n_in)
    else:
        gemm(False, True, n, n_in, n_out, <floating>1, delta, n_out, W, n_out, <floating>0,
             E, n_in)


def backprop_error(floating[:, ::1] delta, floating[:, ::1] W):
    """E_prev = delta @ W.T as a new array."""
    cdef Py_ssize_t n = delta.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    _check(delta.shape[1] == n_out and n > 0 and n_in > 0 and n_out > 0,
           f"backprop_error: shapes delta{(n, delta.shape[1])}, W{(n_in, n_out)} do not fit")
    out = new_array((n, n_in), floating is double)
    cdef floating[:, ::1] E = out
    with nogil:
        backprop_error_into(n, n_in, n_out, &delta[0, 0], &W[0, 0], &E[0, 0])
    return out


cdef void activation_backward_into(Py_ssize_t size, floating* E, const floating* A,
                                   int activation) noexcept nogil:
    """E := E * f'(Z), in place, with f' written in terms of A = f(Z) (not for softmax)."""
    cdef Elementwise job
    job.activation = activation
    run_split(&job, loop_block, floating is double, size, 0, E, A, NULL, NULL,
              LOOP_ACT_BACKWARD)


def activation_backward(floating[:, ::1] E, floating[:, ::1] A, str activation):
    """E *= f'(Z) in place, f' written in terms of A = f(Z)."""
    cdef int code = ACTIVATIONS[activation]
    _check(code <= ACT_RELU, f"activation_backward: {activation} is handled by output_delta")
    _check(E.shape[0] == A.shape[0] and E.shape[1] == A.shape[1],
           "activation_backward: E and A differ in shape")
    if E.size == 0:
        return
    with nogil:
        activation_backward_into(E.shape[0] * E.shape[1], &E[0, 0], &A[0, 0], code)


# ================================================================ gradients and updates

cdef void column_sums(Py_ssize_t n, Py_ssize_t m, const floating* delta, floating alpha,
                      bint accumulate, floating* db) noexcept nogil:
    """db := alpha * delta.sum(axis=0), added to db with accumulate (summed row by row).

    Tiny layers use inline loops: there a dispatched call costs more than it saves.
    From COLUMN_SUMS_C elements on, _vmath.h sums blocks of columns in vector
    registers: the same additions in the same order, so the same bits.
    """
    cdef Py_ssize_t i, j
    if not accumulate:
        for j in range(m):
            db[j] = 0
    if n * m >= COLUMN_SUMS_C:
        if floating is double:
            bpf_column_sums_d(n, m, delta, alpha, db)
        else:
            bpf_column_sums_f(n, m, delta, alpha, db)
        return
    for i in range(n):
        for j in range(m):
            db[j] += alpha * delta[i * m + j]


cdef void weight_gradients_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                const floating* A_prev, const floating* delta,
                                floating* dW, floating* db) noexcept nogil:
    """dW := A_prev.T @ delta,  db := delta.sum(axis=0)."""
    gemm(True, False, n_in, n_out, n, <floating>1, A_prev, n_in, delta, n_out,
         <floating>0, dW, n_out)
    column_sums(n, n_out, delta, <floating>1, False, db)


def weight_gradients(floating[:, ::1] A_prev, floating[:, ::1] delta):
    """Return (dW, db) = (A_prev.T @ delta, delta.sum(axis=0))."""
    cdef Py_ssize_t n = A_prev.shape[0], n_in = A_prev.shape[1], n_out = delta.shape[1]
    _check(delta.shape[0] == n and n > 0 and n_in > 0 and n_out > 0,
           "weight_gradients: A_prev and delta differ in rows or are empty")
    dW_arr = new_array((n_in, n_out), floating is double)
    db_arr = new_array(n_out, floating is double)
    cdef floating[:, ::1] dW = dW_arr
    cdef floating[::1] db = db_arr
    with nogil:
        weight_gradients_into(n, n_in, n_out, &A_prev[0, 0], &delta[0, 0], &dW[0, 0], &db[0])
    return dW_arr, db_arr


cdef void sgd_update_into(Py_ssize_t size, floating* W, const floating* grad,
                          floating* velocity, floating lr, floating momentum,
                          floating weight_decay, bint nesterov) noexcept nogil:
    """The SGD update from a stored gradient, in place: with g = grad + weight_decay * W,
    plain ``W -= lr * g`` (velocity NULL), or momentum ``v = momentum * v - lr * g;
    W += v`` (Nesterov: ``W += momentum * v - lr * g``). What Network.step and every
    momentum step of fit run; the vectorized loops are _vmath.h's (same bits at every
    SIMD level)."""
    cdef Elementwise job
    job.lr = lr
    job.momentum = momentum
    job.decay = weight_decay
    job.nesterov = nesterov
    run_split(&job, loop_block, floating is double, size, 0, W, grad, velocity, NULL,
              LOOP_SGD)


cdef void loop_block(void* ctx, Py_ssize_t block) noexcept nogil:
    # A block of a flat element-wise loop: an activation's derivative, or an optimizer's
    # update (SGD, Adam, Rprop).
    cdef Elementwise* job = <Elementwise*>ctx
    cdef Py_ssize_t count, first = block_range(job, block, &count)
    if job.is_double:
        loop_range(job, count, <double*>job.x + first, <const double*>job.y + first,
                     <double*>job.s1 + first if job.s1 != NULL else NULL,
                     <double*>job.s2 + first if job.s2 != NULL else NULL)
    else:
        loop_range(job, count, <float*>job.x + first, <const float*>job.y + first,
                     <float*>job.s1 + first if job.s1 != NULL else NULL,
                     <float*>job.s2 + first if job.s2 != NULL else NULL)


cdef inline void loop_range(const Elementwise* job, Py_ssize_t count, floating* W,
                            const floating* G, floating* s1, floating* s2) noexcept nogil:
    if job.code == LOOP_ACT_BACKWARD:
        if floating is double:
            bpf_act_backward_d(count, W, G, job.activation)
        else:
            bpf_act_backward_f(count, W, G, job.activation)
    elif job.code == LOOP_SGD:
        if floating is double:
            bpf_sgd_update_d(count, W, G, s1, job.lr, job.momentum, job.decay, job.nesterov)
        else:
            bpf_sgd_update_f(count, W, G, s1, <float>job.lr, <float>job.momentum,
                             <float>job.decay, job.nesterov)
    elif job.code == LOOP_ADAM:
        if floating is double:
            bpf_adam_d(count, W, G, s1, s2, <const bpf_adam_args*>job.args)
        else:
            bpf_adam_f(count, W, G, s1, s2, <const bpf_adam_args*>job.args)
    elif floating is double:
        bpf_rprop_d(count, W, G, s1, s2, <const bpf_rprop_args*>job.args)
    else:
        bpf_rprop_f(count, W, G, s1, s2, <const bpf_rprop_args*>job.args)


def sgd_update(floating[::1] W, floating[::1] grad, double lr, floating[::1] velocity=None,
               double momentum=0, double weight_decay=0, bint nesterov=False):
    """W -= lr * (grad + weight_decay * W) in place over flat arrays; with velocity, the
    momentum update (velocity changes in place too)."""
    _check(W.shape[0] == grad.shape[0], "sgd_update: W and grad differ in size")
    _check(velocity is None or velocity.shape[0] == W.shape[0],
           "sgd_update: W and velocity differ in size")
    if W.shape[0] == 0:
        return
    cdef floating* v = &velocity[0] if velocity is not None else NULL
    with nogil:
        sgd_update_into(W.shape[0], &W[0], &grad[0], v, <floating>lr, <floating>momentum,
                        <floating>weight_decay, nesterov)


cdef void adam_update_into(Py_ssize_t size, floating* W, const floating* grad, floating* m,
                           floating* v, const bpf_adam_args* args) noexcept nogil:
    """One Adam/AdamW step in place (the scalars of step t in args: adam_args())."""
    cdef Elementwise job
    job.args = args
    run_split(&job, loop_block, floating is double, size, 0, W, grad, m, v, LOOP_ADAM)


cdef bpf_adam_args adam_args(long long t, double lr, double beta1, double beta2, double eps,
                             double weight_decay, bint decoupled, bint folded) noexcept nogil:
    """The scalars of Adam's step t (from 1): lr / (1 - beta1^t), sqrt(1 - beta2^t), the
    decays. folded: eps is added to sqrt(v), not to sqrt(v) / sqrt(1 - beta2^t) (the
    bias corrections folded into the learning rate, as scikit-learn's Adam does)."""
    cdef bpf_adam_args a
    a.step = lr / (1 - pow(beta1, <double>t))
    a.beta1 = beta1
    a.beta2 = beta2
    a.bc2_sqrt = sqrt(1 - pow(beta2, <double>t))
    a.eps = eps / a.bc2_sqrt if folded else eps
    # The float kernel's moments decay by the betas rounded to float: its corrections are
    # theirs. (A beta that rounds up to 1 keeps its double corrections: with weight
    # 1 - 1 = 0 that moment stays 0 either way, and 1 - 1^t would divide by 0.)
    cdef double b1f = <float>beta1, b2f = <float>beta2
    if b1f >= 1:
        b1f = beta1
    if b2f >= 1:
        b2f = beta2
    a.step_f = lr / (1 - pow(b1f, <double>t))
    a.bc2_sqrt_f = sqrt(1 - pow(b2f, <double>t))
    a.eps_f = eps / a.bc2_sqrt_f if folded else eps
    a.decay = 0 if decoupled else weight_decay
    a.shrink = 1 - lr * weight_decay if decoupled else 1
    return a


def adam_update(floating[::1] W, floating[::1] grad, floating[::1] m, floating[::1] v,
                long long step, double lr, tuple betas=(0.9, 0.999), double eps=1e-8,
                double weight_decay=0, bint decoupled=False, bint folded=False):
    """Adam's step number `step` (from 1) in place over flat arrays: W, m and v change.

    weight_decay is an L2 term on the gradient (Adam), or with decoupled=True shrinks W
    by 1 - lr * weight_decay first (AdamW); folded: scikit-learn's placement of eps.
    """
    _check(W.shape[0] == grad.shape[0] == m.shape[0] == v.shape[0],
           "adam_update: W, grad, m and v differ in size")
    if W.shape[0] == 0:
        return
    cdef bpf_adam_args a = adam_args(step, lr, betas[0], betas[1], eps, weight_decay,
                                     decoupled, folded)
    with nogil:
        adam_update_into(W.shape[0], &W[0], &grad[0], &m[0], &v[0], &a)


cdef void rprop_update_into(Py_ssize_t size, floating* W, const floating* grad,
                            floating* prev, floating* steps,
                            const bpf_rprop_args* args) noexcept nogil:
    """One iRprop- step in place: steps grow or shrink by the sign of grad * prev."""
    cdef Elementwise job
    job.args = args
    run_split(&job, loop_block, floating is double, size, 0, W, grad, prev, steps,
              LOOP_RPROP)


cdef bpf_rprop_args rprop_args(double eta_minus, double eta_plus, double step_min,
                               double step_max, double weight_decay) noexcept nogil:
    cdef bpf_rprop_args r
    r.eta_minus = eta_minus
    r.eta_plus = eta_plus
    r.step_min = step_min
    r.step_max = step_max
    r.decay = weight_decay
    return r


def rprop_update(floating[::1] W, floating[::1] grad, floating[::1] prev, floating[::1] steps,
                 tuple etas=(0.5, 1.2), tuple step_sizes=(1e-6, 50.0), double weight_decay=0):
    """One iRprop- step in place over flat arrays: W, prev and steps change."""
    _check(W.shape[0] == grad.shape[0] == prev.shape[0] == steps.shape[0],
           "rprop_update: W, grad, prev and steps differ in size")
    if W.shape[0] == 0:
        return
    cdef bpf_rprop_args r = rprop_args(etas[0], etas[1], step_sizes[0], step_sizes[1],
                                       weight_decay)
    with nogil:
        rprop_update_into(W.shape[0], &W[0], &grad[0], &prev[0], &steps[0], &r)


cdef void sgd_fused_update_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                floating* W, floating* b, const floating* A_prev,
                                const floating* delta, floating lr,
                                floating w_scale) noexcept nogil:
    """W := w_scale * W - lr * A_prev.T @ delta,  b -= lr * delta.sum(axis=0).

    The update plain SGD trains with (fit and train_step): it needs no gradient buffer,
    one GEMM with alpha = -lr writes into W; w_scale = 1 - lr * weight_decay applies L2
    decay in the same call.
    """
    gemm(True, False, n_in, n_out, n, -lr, A_prev, n_in, delta, n_out, w_scale, W, n_out)
    column_sums(n, n_out, delta, -lr, True, b)


def sgd_fused_update(floating[:, ::1] W, floating[::1] b, floating[:, ::1] A_prev,
                     floating[:, ::1] delta, double lr):
    """W -= lr * A_prev.T @ delta and b -= lr * delta.sum(axis=0), in place."""
    cdef Py_ssize_t n = A_prev.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    _check(A_prev.shape[1] == n_in and delta.shape[0] == n and delta.shape[1] == n_out
           and b.shape[0] == n_out and n > 0 and n_in > 0 and n_out > 0,
           "sgd_fused_update: shapes do not fit")
    with nogil:
        sgd_fused_update_into(n, n_in, n_out, &W[0, 0], &b[0], &A_prev[0, 0], &delta[0, 0],
                              <floating>lr, <floating>1)


# ================================================================ a layer's backward pass

cdef void sgd_backward_layer(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const floating* A_prev, const floating* delta, floating lr,
                             floating w_scale, floating* W, floating* b, floating* E,
                             int activation) noexcept nogil:
    """A layer's backward pass with plain SGD: E := (delta @ W.T) * f'(A_prev) through
    the old W (skipped when E is NULL: the first layer), then sgd_fused_update_into().

    A tiny layer runs in _tiny.h's scalar loops, with the same bits.
    """
    if TINY_LAYERS and n * n_in * n_out <= TINY_PRODUCT:
        if floating is double:
            bpf_tiny_backward_d(n, n_in, n_out, A_prev, delta, lr, w_scale, W, b, E, activation)
        else:
            bpf_tiny_backward_f(n, n_in, n_out, A_prev, delta, lr, w_scale, W, b, E, activation)
        return
    if E != NULL:
        backprop_error_into(n, n_in, n_out, delta, W, E)
    sgd_fused_update_into(n, n_in, n_out, W, b, A_prev, delta, lr, w_scale)
    if E != NULL:
        activation_backward_into(n * n_in, E, A_prev, activation)


cdef bint tiny_network(int L, const Py_ssize_t* sizes, Py_ssize_t n, int hidden_act,
                       int output_act, int loss) noexcept nogil:
    """Whether tiny_sgd_train_batch() can train this network on batches of n rows: every
    layer tiny, MSE or SSE, no softmax."""
    cdef int l
    if not TINY_LAYERS or loss > LOSS_SSE or output_act > ACT_RELU:
        return False
    for l in range(L):
        if n * sizes[l] * sizes[l + 1] > TINY_PRODUCT:
            return False
    return True


cdef double tiny_sgd_train_batch(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                                 const Py_ssize_t* b_off, const Py_ssize_t* a_off,
                                 int hidden_act, int output_act, int loss, Py_ssize_t n,
                                 const floating* X, const floating* Y, floating* P,
                                 floating* acts, floating* err0, floating* err1, floating lr,
                                 floating w_scale) noexcept nogil:
    """A whole plain-SGD step of a tiny network (see tiny_network) in one call of _tiny.h,
    with the bits of the engine's forward_all + backward_all; returns the batch loss."""
    if floating is double:
        return bpf_tiny_sgd_train_batch_d(L, sizes, w_off, b_off, a_off, hidden_act, output_act,
                                          loss, n, X, Y, P, acts, err0, err1, lr, w_scale)
    else:
        return bpf_tiny_sgd_train_batch_f(L, sizes, w_off, b_off, a_off, hidden_act, output_act,
                                          loss, n, X, Y, P, acts, err0, err1, lr, w_scale)


# ================================================================ checks over buffers

cdef double sum_squares(Py_ssize_t size, const floating* x) noexcept nogil:
    """The sum of x[i]**2 in double (8 partial sums: see _vmath.h)."""
    if floating is double:
        return bpf_sum_squares_d(size, x)
    else:
        return bpf_sum_squares_f(size, x)


cdef bint all_finite(Py_ssize_t size, const floating* x) noexcept nogil:
    """True when no element is NaN or infinite (from ALL_FINITE_C elements on, in
    _vmath.h's dispatched loop: fit checks the parameters after every epoch,
    train_step its X and Y)."""
    cdef Py_ssize_t i
    cdef int bad = 0
    if size >= ALL_FINITE_C:
        if floating is double:
            return bpf_all_finite_d(size, x)
        else:
            return bpf_all_finite_f(size, x)
    # x - x is 0 for finite x and NaN otherwise.
    for i in range(size):
        bad |= not (x[i] - x[i] == 0)
    return not bad


def is_finite(floating[::1] x):
    """True when the flat array x has no NaN or infinity."""
    cdef bint ok = True
    if x.shape[0] > 0:
        with nogil:
            ok = all_finite(x.shape[0], &x[0])
    return ok


# ================================================================ threads

cdef void team_enter(int n_threads) noexcept nogil:
    """The kernels this thread runs until team_leave() may use n_threads threads (0:
    every CPU this process may use, at most the BLAS thread limit)."""
    bpf_team_enter(n_threads)


cdef void team_leave() noexcept nogil:
    bpf_team_leave()


cdef Py_ssize_t kernel_tile_rows() noexcept nogil:
    """Rows of the register kernel's tallest tile."""
    return bpf_small_gemm_tile_rows()


cdef bint tapers(Py_ssize_t total, Py_ssize_t width, Py_ssize_t grain) noexcept nogil:
    """Whether a cut of `total` between `width` threads, whose bits do not depend on the
    cut, runs as 2 * width tapered blocks (bpf_taper_start): when each small block has
    a unit of `grain` or more."""
    return width > 1 and (total + grain - 1) // grain >= 4 * width


cdef Py_ssize_t split_start(Py_ssize_t total, Py_ssize_t b, Py_ssize_t blocks,
                            Py_ssize_t grain, bint tapered) noexcept nogil:
    """Where block b of `blocks` starts in [0, total), at a multiple of `grain`: tapered
    (blocks // 2 large, then as many small; see tapers) or even (bpf_block_start)."""
    if tapered:
        return bpf_taper_start(total, b, blocks // 2, grain)
    return bpf_block_start(total, b, blocks, grain)


cdef int team_width() noexcept nogil:
    """Threads a job of this thread's call may run on now."""
    return bpf_team_width()


cdef void team_run(Py_ssize_t n_blocks, team_block_fn fn, void* ctx) noexcept nogil:
    """fn(ctx, b) for every block b, shared by the team (see _team.h)."""
    bpf_team_run(n_blocks, <bpf_block_fn>fn, ctx)


def default_threads():
    """What n_threads=None means now: the CPUs this process may use (its affinity
    mask), at most the thread limit of the BLAS bpfast calls (threadpoolctl's)."""
    return bpf_default_threads()


def team_worker_blocks():
    """Blocks of work the team's worker threads have run so far (tests check that a
    call with n_threads > 1 uses them)."""
    return bpf_team_worker_blocks()


def blas_thread_limit():
    """The thread limit of the BLAS bpfast calls (0: bpfast cannot read it)."""
    return bpf_blas_limit()


def split_thresholds(product=None, elements=None, max_blocks=None):
    """(SPLIT_PRODUCT, SPLIT_ELEMENTS, SPLIT_MAX_BLOCKS): set them to measure
    (benchmarks/bench_split.py) or to make tests split small shapes."""
    global SPLIT_PRODUCT, SPLIT_ELEMENTS, SPLIT_MAX_BLOCKS
    if product is not None:
        SPLIT_PRODUCT = max(1, int(product))
    if elements is not None:
        SPLIT_ELEMENTS = max(1, int(elements))
    if max_blocks is not None:
        SPLIT_MAX_BLOCKS = max(1, int(max_blocks))
    return SPLIT_PRODUCT, SPLIT_ELEMENTS, SPLIT_MAX_BLOCKS


# ================================================================ switches for tests and benchmarks

ACTIVATION_CODES = {"identity": ACT_IDENTITY, "sigmoid": ACT_SIGMOID, "tanh": ACT_TANH,
                    "relu": ACT_RELU, "softmax": ACT_SOFTMAX, "exp": ACT_EXP}
LOSS_CODES = {"mse": LOSS_MSE, "sse": LOSS_SSE, "cross_entropy": LOSS_CROSS_ENTROPY,
              "binary_cross_entropy": LOSS_BINARY_CROSS_ENTROPY, "poisson": LOSS_POISSON}


def tiny_product(limit=None):
    """Products of at most this many multiply-adds run in direct loops instead of BLAS
    (and layers of only such products in _tiny.h); set it to measure."""
    global TINY_PRODUCT
    if limit is not None:
        TINY_PRODUCT = limit
    return TINY_PRODUCT


def simd_level(cap=None):
    """The instruction set of the element-wise loops: 0 baseline x86-64, 1 AVX2+FMA, 2 AVX-512.

    simd_level(cap) makes them use at most level `cap` and returns the level now in
    use (tests run every variant the CPU has; simd_level(2) restores the default).
    """
    if cap is not None:
        return bpf_set_cpu_level(int(cap))
    return bpf_cpu_level()


def tiny_layers(on=None):
    """Whether tiny layers run whole in _tiny.h (set it for tests and measurements)."""
    global TINY_LAYERS
    if on is not None:
        TINY_LAYERS = bool(on)
    return TINY_LAYERS


def small_gemm_bytes(limit=None):
    """Products whose operands take at most this many bytes may use the small-product
    kernel; set it to measure (benchmarks/bench_small_gemm.py)."""
    global SMALL_GEMM_BYTES
    if limit is not None:
        SMALL_GEMM_BYTES = limit
    return SMALL_GEMM_BYTES


def small_gemm(mode=None):
    """Whether gemm() runs small products in _smallgemm.h's kernel instead of BLAS.

    small_gemm(mode) sets it: None leaves it, -1 automatic (on from SIMD level 1, AVX2 +
    FMA, which the kernel needs; which products, by level), 0 never, 1 up to the AVX2
    limit at every level (tests: the same path at every level), 2 for every product it
    can run, past the size limits too (benchmarks). Returns whether it is on now.
    """
    global SMALL_GEMM_MODE
    if mode is not None:
        SMALL_GEMM_MODE = max(-1, min(2, int(mode)))
        return bool(bpf_set_small_gemm(int(mode)))
    return bool(bpf_small_gemm_on())


def small_gemm_used(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, dtype, bint trans_a=False):
    """Whether gemm() would run this product of `dtype` in the register kernel now."""
    return kernel_fits(trans_a, False, m, n, k, np.dtype(dtype).itemsize)
