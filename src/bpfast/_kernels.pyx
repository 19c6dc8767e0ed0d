# cython: language_level=3
"""Compiled kernels of bpfast, fused over float32/float64, GIL released.

Each ``cdef`` kernel has a ``def`` twin of the same name as the function in
``reference.py``, so one test can call both. The ``def`` twins check only what
keeps memory safe (shapes and, through typed memoryviews, dtype and
C-contiguity); friendly conversion and messages live in ``bpfast.functional``.
"""
from cython cimport floating
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
    void bpf_momentum_d(Py_ssize_t size, double* P, const double* G, double* V, double lr,
                        double mu, double decay, int nesterov)
    void bpf_momentum_f(Py_ssize_t size, float* P, const float* G, float* V, float lr,
                        float mu, float decay, int nesterov)
    int bpf_cpu_level()
    int bpf_set_cpu_level(int cap)

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
    double bpf_tiny_sgd_step_d(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                               const Py_ssize_t* b_off, const Py_ssize_t* a_off, int hidden_act,
                               int output_act, int sse, Py_ssize_t n, const double* X,
                               const double* Y, double* P, double* acts, double* err0,
                               double* err1, double lr, double w_scale)
    double bpf_tiny_sgd_step_f(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                               const Py_ssize_t* b_off, const Py_ssize_t* a_off, int hidden_act,
                               int output_act, int sse, Py_ssize_t n, const float* X,
                               const float* Y, float* P, float* acts, float* err0,
                               float* err1, float lr, float w_scale)

cdef extern from "_smallgemm.h" nogil:
    # Small products in registers (AVX2 + FMA), where OpenBLAS has no small-matrix path.
    bint bpf_small_gemm_on()
    int bpf_set_small_gemm(int mode)
    void bpf_small_gemm_d(int trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                          const double* A, Py_ssize_t lda, const double* B, Py_ssize_t ldb,
                          double beta, double* C, Py_ssize_t ldc)
    void bpf_small_gemm_f(int trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
                          const float* A, Py_ssize_t lda, const float* B, Py_ssize_t ldb,
                          float beta, float* C, Py_ssize_t ldc)

import numpy as np

from bpfast.activations import ACTIVATIONS, LOSSES

# Up to this many multiply-adds a BLAS call costs more than the arithmetic, so the
# direct loops run instead. Measured by benchmarks/bench_gemm_threshold.py: OpenBLAS's
# small-matrix kernels win from about a hundred multiply-adds on (4-16-3 at batch 16
# trains 1.8x faster than with loops up to 4096), plain loops below (2-2-1: 2x).
cdef Py_ssize_t SMALL_GEMM = 64

# Products whose operands op(A) and B take at most this many bytes together run in
# _smallgemm.h's kernel when it is on (AVX2 CPUs), which reads them unpacked:
# benchmarks/bench_small_gemm.py on a Zen 3 has it 1.1-2.6x faster than OpenBLAS up to
# here, and float64 slower from 192 KB on (rows of B 1 KB apart share L1 sets).
cdef Py_ssize_t SMALL_GEMM_BYTES = 96 * 1024

# Layers whose products are all at most SMALL_GEMM multiply-adds run whole in _tiny.h
# (False: through the general path, for the tests that compare the two).
cdef bint TINY_LAYERS = True

# column_sums() and all_finite() hand at least this many elements to their C loops.
cdef Py_ssize_t COLUMN_SUMS_C = 64
cdef Py_ssize_t ALL_FINITE_C = 64

# backprop_error_into() transposes W of up to NARROW_W elements (8 KB in float64) for
# BLAS, and of up to WT_BYTES (16 KB: 2048 float64, 4096 float32) for the small-product
# kernel, into a buffer on the stack (kept small: a thread may have a small stack).
cdef enum:
    NARROW_W = 1024
    WT_BYTES = 16384
    WT_DOUBLES = 2048


# ---------------------------------------------------------------- matrix products

cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t lda,
               const floating* B, Py_ssize_t ldb,
               floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, row-major, C is (m, n)."""
    if m == 0 or n == 0:
        return
    if m * n * k <= SMALL_GEMM or k == 0:
        dot_products(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    if (not trans_b and (m * k + k * n) * <Py_ssize_t>sizeof(floating) <= SMALL_GEMM_BYTES
            and bpf_small_gemm_on()):
        if floating is double:
            bpf_small_gemm_d(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        else:
            bpf_small_gemm_f(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
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


# ---------------------------------------------------------------- activations

cdef void bias_activation(Py_ssize_t n, Py_ssize_t m, const floating* b, int activation,
                          floating* Z) noexcept nogil:
    """Z := f(Z + b), one pass over Z (softmax: then its three sweeps, see _vmath.h).

    The loops are vectorized and picked for the CPU at run time (_vmath.h).
    """
    cdef int act = ACT_IDENTITY if activation == ACT_SOFTMAX else activation
    if floating is double:
        bpf_bias_act_d(n, m, b, Z, act)
    else:
        bpf_bias_act_f(n, m, b, Z, act)
    if activation == ACT_SOFTMAX:
        if floating is double:
            bpf_softmax_d(n, m, Z)
        else:
            bpf_softmax_f(n, m, Z)


cdef void activation_backward_inplace(Py_ssize_t size, floating* E, const floating* A,
                                      int activation) noexcept nogil:
    """E := E * f'(Z), with f' written in terms of A = f(Z) (not for softmax)."""
    if floating is double:
        bpf_act_backward_d(size, E, A, activation)
    else:
        bpf_act_backward_f(size, E, A, activation)


# ---------------------------------------------------------------- the phases of a step

cdef void forward_layer(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, const floating* X,
                        const floating* W, const floating* b, int activation,
                        floating* A) noexcept nogil:
    """A := f(X @ W + b).

    A tiny layer (at most SMALL_GEMM multiply-adds) runs in _tiny.h's scalar loops:
    the same operations in the same order, without a call per phase.
    """
    if TINY_LAYERS and n * n_in * n_out <= SMALL_GEMM and activation != ACT_SOFTMAX:
        if floating is double:
            bpf_tiny_forward_d(n, n_in, n_out, X, W, b, activation, A)
        else:
            bpf_tiny_forward_f(n, n_in, n_out, X, W, b, activation, A)
        return
    gemm(False, False, n, n_out, n_in, <floating>1, X, n_in, W, n_out, <floating>0, A, n_out)
    bias_activation(n, n_out, b, activation, A)


cdef void backprop_error_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                              const floating* delta, const floating* W,
                              floating* E) noexcept nogil:
    """E := delta @ W.T, (n, n_out) @ (n_out, n_in): the error sent back through W.

    Behind a narrow layer (a few outputs), OpenBLAS is slow with W.T as the operand
    (64-64-10 at batch 32: 1.46 µs in float64) and faster with W transposed first
    into a small buffer on the stack (0.87 µs + the copy); see
    benchmarks/bench_step_phases.py for shapes on both sides of the rule. When the
    small-product kernel is on (AVX2 CPUs), any W of up to WT_BYTES is copied so,
    since the kernel reads B untransposed only.
    """
    cdef double Wt_store[WT_DOUBLES]       # WT_BYTES, aligned for either type
    cdef floating* Wt = <floating*>Wt_store
    cdef Py_ssize_t i = 0, j, k
    cdef bint narrow = n >= 16 and n_out <= 16 and n_in * n_out <= NARROW_W
    # The copy costs n_in * n_out moves against n * n_in * n_out multiply-adds (on a
    # Zen 3, 32 x 64 x 32 in float64: 1.1x faster than BLAS with W.T).
    cdef bint for_kernel = (n_in * n_out * <Py_ssize_t>sizeof(floating) <= WT_BYTES and
                            bpf_small_gemm_on() and
                            (n * n_out + n_out * n_in) * <Py_ssize_t>sizeof(floating)
                            <= SMALL_GEMM_BYTES)
    if (narrow or for_kernel) and n * n_in * n_out > SMALL_GEMM:
        # 8 rows of W at a time, so that each store run into Wt is 8 contiguous
        # elements (64x10: 0.21 -> 0.11 µs).
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


cdef double output_delta_into(Py_ssize_t n, Py_ssize_t m, const floating* A, const floating* Y,
                              int loss, int activation, floating* delta) noexcept nogil:
    """delta := dLoss/dZ of the output layer; returns the loss (accumulated in double)."""
    cdef Py_ssize_t i, j, size = n * m
    cdef double value = 0, diff, scale
    cdef floating s
    if loss == LOSS_CROSS_ENTROPY:
        # Softmax + cross-entropy fused: dLoss/dZ = (A * sum(Y) - Y) / n, no division by A.
        if floating is double:
            return bpf_xent_delta_d(n, m, A, Y, delta)
        else:
            return bpf_xent_delta_f(n, m, A, Y, delta)
    scale = 1.0 / size if loss == LOSS_MSE else 1.0
    for i in range(size):
        diff = <double>A[i] - <double>Y[i]
        value += diff * diff
        delta[i] = <floating>(2 * scale * diff)    # dLoss/dA
    if activation == ACT_SOFTMAX:
        # Softmax couples a row: dZ_i = A_i * (G_i - sum_j G_j A_j).
        for i in range(n):
            s = 0
            for j in range(m):
                s += delta[i * m + j] * A[i * m + j]
            for j in range(m):
                delta[i * m + j] = A[i * m + j] * (delta[i * m + j] - s)
    else:
        activation_backward_inplace(size, delta, A, activation)
    return scale * value


cdef void column_sums(Py_ssize_t n, Py_ssize_t m, const floating* delta, floating alpha,
                      bint accumulate, floating* db) noexcept nogil:
    """db := alpha * delta.sum(axis=0), added to db with accumulate (summed row by row).

    Tiny layers use inline loops: there a dispatched call costs more than it saves.
    From COLUMN_SUMS_C elements on, _vmath.h sums blocks of columns in vector
    registers (64-64-10 at batch 32: 0.35 -> 0.10 µs); the same additions in the
    same order, so the same bits.
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


cdef void sgd_fused(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                    const floating* A_prev, const floating* delta, floating lr,
                    floating w_scale, floating* W, floating* b) noexcept nogil:
    """W := w_scale * W - lr * A_prev.T @ delta,  b -= lr * delta.sum(axis=0).

    Plain SGD needs no gradient buffer: one GEMM with alpha = -lr writes into W.
    w_scale = 1 - lr * weight_decay applies L2 decay in the same call.
    """
    gemm(True, False, n_in, n_out, n, -lr, A_prev, n_in, delta, n_out, w_scale, W, n_out)
    column_sums(n, n_out, delta, -lr, True, b)


cdef void sgd_backward_layer(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const floating* A_prev, const floating* delta, floating lr,
                             floating w_scale, floating* W, floating* b, floating* E,
                             int activation) noexcept nogil:
    """A layer's backward pass with plain SGD: E := (delta @ W.T) * f'(A_prev) through
    the old W (skipped when E is NULL: the first layer), then sgd_fused().

    A tiny layer runs in _tiny.h's scalar loops, with the same bits.
    """
    if TINY_LAYERS and n * n_in * n_out <= SMALL_GEMM:
        if floating is double:
            bpf_tiny_backward_d(n, n_in, n_out, A_prev, delta, lr, w_scale, W, b, E, activation)
        else:
            bpf_tiny_backward_f(n, n_in, n_out, A_prev, delta, lr, w_scale, W, b, E, activation)
        return
    if E != NULL:
        backprop_error_into(n, n_in, n_out, delta, W, E)
    sgd_fused(n, n_in, n_out, A_prev, delta, lr, w_scale, W, b)
    if E != NULL:
        activation_backward_inplace(n * n_in, E, A_prev, activation)


cdef bint tiny_network(int L, const Py_ssize_t* sizes, Py_ssize_t n, int hidden_act,
                       int output_act, int loss) noexcept nogil:
    """Whether tiny_sgd_step() can train this network on batches of n rows: every layer
    tiny, MSE or SSE, no softmax."""
    cdef int l
    if not TINY_LAYERS or loss == LOSS_CROSS_ENTROPY or ACT_SOFTMAX in (hidden_act, output_act):
        return False
    for l in range(L):
        if n * sizes[l] * sizes[l + 1] > SMALL_GEMM:
            return False
    return True


cdef double tiny_sgd_step(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                          const Py_ssize_t* b_off, const Py_ssize_t* a_off, int hidden_act,
                          int output_act, int loss, Py_ssize_t n, const floating* X,
                          const floating* Y, floating* P, floating* acts, floating* err0,
                          floating* err1, floating lr, floating w_scale) noexcept nogil:
    """A whole plain-SGD step of a tiny network (see tiny_network) in one call of _tiny.h,
    with the bits of forward_all + backward_all; returns the batch loss."""
    if floating is double:
        return bpf_tiny_sgd_step_d(L, sizes, w_off, b_off, a_off, hidden_act, output_act,
                                   loss == LOSS_SSE, n, X, Y, P, acts, err0, err1, lr, w_scale)
    else:
        return bpf_tiny_sgd_step_f(L, sizes, w_off, b_off, a_off, hidden_act, output_act,
                                   loss == LOSS_SSE, n, X, Y, P, acts, err0, err1, lr, w_scale)


cdef void momentum_step(Py_ssize_t size, floating* P, const floating* G, floating* V,
                        floating lr, floating mu, floating decay, bint nesterov) noexcept nogil:
    """g = G + decay * P;  V := mu * V - lr * g;  P += V, or P += mu * V - lr * g (Nesterov)."""
    if floating is double:
        bpf_momentum_d(size, P, G, V, lr, mu, decay, nesterov)
    else:
        bpf_momentum_f(size, P, G, V, lr, mu, decay, nesterov)


cdef void sgd_update_into(Py_ssize_t size, floating lr, const floating* grad,
                          floating* W) noexcept nogil:
    """W -= lr * grad."""
    cdef Py_ssize_t i
    for i in range(size):
        W[i] -= lr * grad[i]


cdef double sum_squares(Py_ssize_t size, const floating* x) noexcept nogil:
    """The sum of x[i]**2 in double (8 partial sums: see _vmath.h)."""
    if floating is double:
        return bpf_sum_squares_d(size, x)
    else:
        return bpf_sum_squares_f(size, x)


cdef bint all_finite(Py_ssize_t size, const floating* x) noexcept nogil:
    """True when no element is NaN or infinite.

    From ALL_FINITE_C elements on, the dispatched loop of _vmath.h: the baseline
    build of this loop does not vectorize (4810 doubles: 2.6 µs; AVX-512: 0.37 µs),
    and fit checks the parameters after every epoch, train_step its X and Y.
    """
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


# ---------------------------------------------------------------- def twins for Python and tests

def _check(bint ok, str message):
    if not ok:
        raise ValueError(message)


def matmul(floating[:, ::1] A, floating[:, ::1] B, bint trans_a=False, bint trans_b=False,
           bint loops=False, double alpha=1, double beta=0, out=None):
    """alpha * op(A) @ op(B) (+ beta * out) through gemm() (or gemm_loops() with
    loops=True), into `out` when given; for tests."""
    cdef Py_ssize_t m = A.shape[1] if trans_a else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if trans_b else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if trans_b else B.shape[1]
    _check(k == kb, f"matmul: inner sizes differ ({k} vs {kb})")
    if out is None:
        out = np.empty((m, n), dtype=np.float64 if floating is double else np.float32)
    cdef floating[:, ::1] C = out
    _check(C.shape[0] == m and C.shape[1] == n, "matmul: out has the wrong shape")
    if m == 0 or n == 0:
        return out
    # A product over k == 0 reads neither operand.
    cdef const floating* pa = &A[0, 0] if k > 0 else NULL
    cdef const floating* pb = &B[0, 0] if k > 0 else NULL
    with nogil:
        if loops:
            gemm_loops(trans_a, trans_b, m, n, k, <floating>alpha, pa, A.shape[1], pb,
                       B.shape[1], <floating>beta, &C[0, 0], n)
        else:
            gemm(trans_a, trans_b, m, n, k, <floating>alpha, pa, A.shape[1], pb, B.shape[1],
                 <floating>beta, &C[0, 0], n)
    return out


def dense_forward(floating[:, ::1] X, floating[:, ::1] W, floating[::1] b, str activation):
    """A = f(X @ W + b) as a new array."""
    cdef Py_ssize_t n = X.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    cdef int code = ACTIVATIONS[activation]
    _check(X.shape[1] == n_in and b.shape[0] == n_out and n > 0 and n_in > 0 and n_out > 0,
           f"dense_forward: shapes X{(X.shape[0], X.shape[1])}, W{(n_in, n_out)}, "
           f"b{(b.shape[0],)} do not fit")
    out = np.empty((n, n_out), dtype=np.float64 if floating is double else np.float32)
    cdef floating[:, ::1] A = out
    with nogil:
        forward_layer(n, n_in, n_out, &X[0, 0], &W[0, 0], &b[0], code, &A[0, 0])
    return out


def backprop_error(floating[:, ::1] delta, floating[:, ::1] W):
    """E_prev = delta @ W.T as a new array."""
    cdef Py_ssize_t n = delta.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    _check(delta.shape[1] == n_out and n > 0 and n_in > 0 and n_out > 0,
           f"backprop_error: shapes delta{(n, delta.shape[1])}, W{(n_in, n_out)} do not fit")
    out = np.empty((n, n_in), dtype=np.float64 if floating is double else np.float32)
    cdef floating[:, ::1] E = out
    with nogil:
        backprop_error_into(n, n_in, n_out, &delta[0, 0], &W[0, 0], &E[0, 0])
    return out


def activation_backward(floating[:, ::1] E, floating[:, ::1] A, str activation):
    """E *= f'(Z) in place, f' written in terms of A = f(Z)."""
    cdef int code = ACTIVATIONS[activation]
    _check(code != ACT_SOFTMAX, "activation_backward: softmax is handled by output_delta")
    _check(E.shape[0] == A.shape[0] and E.shape[1] == A.shape[1],
           "activation_backward: E and A differ in shape")
    if E.size == 0:
        return
    with nogil:
        activation_backward_inplace(E.shape[0] * E.shape[1], &E[0, 0], &A[0, 0], code)


def output_delta(floating[:, ::1] A, floating[:, ::1] Y, str loss, str activation):
    """Return (loss, delta) with delta = dLoss/dZ of the output layer."""
    cdef Py_ssize_t n = A.shape[0], m = A.shape[1]
    cdef int loss_code = LOSSES[loss], act = ACTIVATIONS[activation]
    cdef double value
    _check(Y.shape[0] == n and Y.shape[1] == m and n > 0 and m > 0,
           "output_delta: A and Y differ in shape or are empty")
    out = np.empty((n, m), dtype=np.float64 if floating is double else np.float32)
    cdef floating[:, ::1] delta = out
    with nogil:
        value = output_delta_into(n, m, &A[0, 0], &Y[0, 0], loss_code, act, &delta[0, 0])
    return value, out


def weight_gradients(floating[:, ::1] A_prev, floating[:, ::1] delta):
    """Return (dW, db) = (A_prev.T @ delta, delta.sum(axis=0))."""
    cdef Py_ssize_t n = A_prev.shape[0], n_in = A_prev.shape[1], n_out = delta.shape[1]
    _check(delta.shape[0] == n and n > 0 and n_in > 0 and n_out > 0,
           "weight_gradients: A_prev and delta differ in rows or are empty")
    dtype = np.float64 if floating is double else np.float32
    dW_arr = np.empty((n_in, n_out), dtype=dtype)
    db_arr = np.empty(n_out, dtype=dtype)
    cdef floating[:, ::1] dW = dW_arr
    cdef floating[::1] db = db_arr
    with nogil:
        weight_gradients_into(n, n_in, n_out, &A_prev[0, 0], &delta[0, 0], &dW[0, 0], &db[0])
    return dW_arr, db_arr


def sgd_update(floating[::1] W, floating[::1] grad, double lr):
    """W -= lr * grad in place, over flat (raveled) arrays."""
    _check(W.shape[0] == grad.shape[0], "sgd_update: W and grad differ in size")
    if W.shape[0] == 0:
        return
    with nogil:
        sgd_update_into(W.shape[0], <floating>lr, &grad[0], &W[0])


def sgd_fused_update(floating[:, ::1] W, floating[::1] b, floating[:, ::1] A_prev,
                     floating[:, ::1] delta, double lr):
    """W -= lr * A_prev.T @ delta and b -= lr * delta.sum(axis=0), in place."""
    cdef Py_ssize_t n = A_prev.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    _check(A_prev.shape[1] == n_in and delta.shape[0] == n and delta.shape[1] == n_out
           and b.shape[0] == n_out and n > 0 and n_in > 0 and n_out > 0,
           "sgd_fused_update: shapes do not fit")
    with nogil:
        sgd_fused(n, n_in, n_out, &A_prev[0, 0], &delta[0, 0], <floating>lr, <floating>1,
                  &W[0, 0], &b[0])


def gemm_threshold(small=None):
    """Products of at most this many multiply-adds skip BLAS; set it to measure."""
    global SMALL_GEMM
    if small is not None:
        SMALL_GEMM = small
    return SMALL_GEMM


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

    small_gemm(mode) sets it: None leaves it, -1 automatic (on at SIMD level 1, i.e.
    an AVX2 CPU without AVX-512), 0 never, 1 at SIMD level 1 or 2 (tests; the kernel
    needs AVX2 + FMA). Returns whether it is on now.
    """
    if mode is not None:
        return bool(bpf_set_small_gemm(int(mode)))
    return bool(bpf_small_gemm_on())


def is_finite(floating[::1] x):
    """True when the flat array x has no NaN or infinity."""
    cdef bint ok = True
    if x.shape[0] > 0:
        with nogil:
            ok = all_finite(x.shape[0], &x[0])
    return ok
