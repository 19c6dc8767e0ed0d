# cython: language_level=3, boundscheck=False, wraparound=False
"""Native timing of each phase of one SGD step, for bench_step_phases.py (built by pyximport)."""
from cython cimport floating
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from bpfast._kernels cimport (ACT_RELU, ACT_SOFTMAX, LOSS_CROSS_ENTROPY, gemm, dense_forward_into,
                              backprop_error_into, output_delta_into,
                              activation_backward_into, sgd_fused_update_into)


cdef double now() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + 1e-9 * t.tv_nsec


cdef void phase(int which, Py_ssize_t n, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2,
                floating* X, floating* W1, floating* b1, floating* W2, floating* b2,
                floating* Y, floating* H, floating* O, floating* D2, floating* E) noexcept nogil:
    # lr = 0: the weights stay put, so every repetition does the same work
    if which == 0:      # the five matrix products alone, as the step calls them
        gemm(False, False, n, d1, d0, <floating>1, X, d0, W1, d1, <floating>0, H, d1)
        gemm(False, False, n, d2, d1, <floating>1, H, d1, W2, d2, <floating>0, O, d2)
        backprop_error_into(n, d1, d2, D2, W2, E)       # a product (W2 transposed first)
        gemm(True, False, d1, d2, n, <floating>-0.0, H, d1, D2, d2, <floating>1, W2, d2)
        gemm(True, False, d0, d1, n, <floating>-0.0, X, d0, E, d1, <floating>1, W1, d1)
    elif which == 1:
        dense_forward_into(n, d0, d1, X, W1, b1, ACT_RELU, H)
    elif which == 2:
        dense_forward_into(n, d1, d2, H, W2, b2, ACT_SOFTMAX, O)
    elif which == 3:
        output_delta_into(n, d2, O, Y, LOSS_CROSS_ENTROPY, ACT_SOFTMAX, <floating*>NULL, D2)
    elif which == 4:
        backprop_error_into(n, d1, d2, D2, W2, E)
    elif which == 5:
        activation_backward_into(n * d1, E, H, ACT_RELU)
    elif which == 6:
        sgd_fused_update_into(n, d1, d2, W2, b2, H, D2, <floating>0, <floating>1)
    elif which == 7:
        sgd_fused_update_into(n, d0, d1, W1, b1, X, E, <floating>0, <floating>1)
    elif which == 8:    # phase 4 as one BLAS call with W2.T as the operand
        gemm(False, True, n, d1, d2, <floating>1, D2, d2, W2, d2, <floating>0, E, d1)


def time_phase(int which, floating[:, ::1] X, floating[:, ::1] W1, floating[::1] b1,
               floating[:, ::1] W2, floating[::1] b2, floating[:, ::1] Y, floating[:, ::1] H,
               floating[:, ::1] O, floating[:, ::1] D2, floating[:, ::1] E, int reps):
    """Seconds per call of phase `which`, the best of 5 runs of `reps` calls."""
    cdef Py_ssize_t n = X.shape[0], d0 = X.shape[1], d1 = W1.shape[1], d2 = W2.shape[1]
    cdef double t0, best = 1e300
    cdef int r, k
    with nogil:
        for k in range(5):
            t0 = now()
            for r in range(reps):
                phase(which, n, d0, d1, d2, &X[0, 0], &W1[0, 0], &b1[0], &W2[0, 0], &b2[0],
                      &Y[0, 0], &H[0, 0], &O[0, 0], &D2[0, 0], &E[0, 0])
            best = min(best, (now() - t0) / reps)
    return best



def time_gemm(floating[:, ::1] A, floating[:, ::1] B, floating[:, ::1] C, bint trans_a,
              int reps):
    """Seconds per call of gemm(): C := op(A) @ B, the median of 7 runs of `reps` calls."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = B.shape[0]
    cdef double t0
    cdef double runs[7]
    cdef int r, i
    with nogil:
        for i in range(7):
            t0 = now()
            for r in range(reps):
                gemm(trans_a, False, m, n, k, <floating>1, &A[0, 0], A.shape[1], &B[0, 0], n,
                     <floating>0, &C[0, 0], n)
            runs[i] = (now() - t0) / reps
    return sorted([runs[i] for i in range(7)])[3]
