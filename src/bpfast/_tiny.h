/* Tiny layers (products of at most TINY_PRODUCT multiply-adds, e.g. 2-2-1 at batch 1):
 * a layer's forward pass, and its backward pass with the plain SGD update, each in one
 * function of scalar loops; a network whose layers are all tiny takes its whole
 * plain-SGD step in one call (bpf_tiny_sgd_train_batch).
 *
 * Why: at these sizes a step is a few dozen flops, and the general path (a call per
 * product, per bias, per activation; vector loops that run only their scalar tails)
 * costs several times the arithmetic in instructions; benchmarks/README.md has the
 * counts and times (2-2-1 in benchmarks/bench.py).
 *
 * They do the same operations in the same order as that path (gemm()'s dot products,
 * then the bias, then the activation; the error through the old W, the fused update
 * W := -lr * A_prev.T @ delta + w_scale * W, the bias rows in order, then f'), so the
 * results are the same to the bit (tests/test_tiny.py). Activation and loss codes are
 * _codes.h's; softmax rows stay on the general path.
 */
#ifndef BPFAST_TINY_H
#define BPFAST_TINY_H

#include "_vmath.h"

/* Loops of a few iterations: GCC's vectorized versions (with their run-time alias
 * checks) would cost more than they save. */
#if defined(__GNUC__) && !defined(__clang__)
#define BPF_SCALAR __attribute__((optimize("no-tree-vectorize")))
#else
#define BPF_SCALAR
#endif

/* A := f(A) over n elements, one loop per activation (not a switch per element). */
#define BPF_TINY_ACT(X, size, A, act)                                                \
    if (act == ACT_SIGMOID) for (ptrdiff_t k = 0; k < size; k++) A[k] = bpf_sigmoid_##X(A[k]); \
    else if (act == ACT_TANH) for (ptrdiff_t k = 0; k < size; k++) A[k] = bpf_tanh_##X(A[k]); \
    else if (act == ACT_RELU) for (ptrdiff_t k = 0; k < size; k++) A[k] = BPF_RELU(A[k]);

#define BPF_TINY(X, T)                                                               \
    /* E := E * f'(Z), f' written through A = f(Z): _vmath.h's back_<f> formulas. */ \
    BPF_INLINE void bpf_tiny_times_derivative_##X(ptrdiff_t size, T* E, const T* A, int act) { \
        if (act == ACT_SIGMOID) for (ptrdiff_t k = 0; k < size; k++) E[k] = BPF_BACK_SIGMOID(E[k], A[k]); \
        else if (act == ACT_TANH) for (ptrdiff_t k = 0; k < size; k++) E[k] = BPF_BACK_TANH(E[k], A[k]); \
        else if (act == ACT_RELU) for (ptrdiff_t k = 0; k < size; k++) E[k] = BPF_BACK_RELU(E[k], A[k]); \
    }                                                                                \
    /* A := f(X @ W + b) */                                                          \
    BPF_SCALAR static void bpf_tiny_forward_##X(ptrdiff_t n, ptrdiff_t n_in, ptrdiff_t n_out, \
            const T* Xin, const T* W, const T* b, int act, T* A) {                   \
        for (ptrdiff_t i = 0; i < n; i++)                                            \
            for (ptrdiff_t j = 0; j < n_out; j++) {                                  \
                T s = 0;                                                             \
                for (ptrdiff_t p = 0; p < n_in; p++) s += Xin[i * n_in + p] * W[p * n_out + j]; \
                A[i * n_out + j] = s + b[j];                                         \
            }                                                                        \
        BPF_TINY_ACT(X, n * n_out, A, act)                                           \
    }                                                                                \
    /* E := (delta @ W.T) * f'(A_prev) (when E is not NULL), through the old W;      \
     * W := -lr * A_prev.T @ delta + w_scale * W;  b += -lr * delta's rows. */       \
    BPF_SCALAR static void bpf_tiny_backward_##X(ptrdiff_t n, ptrdiff_t n_in, ptrdiff_t n_out, \
            const T* A_prev, const T* delta, T lr, T w_scale, T* W, T* b, T* E, int act) { \
        T alpha = -lr;                                                               \
        if (E) {                                                                     \
            for (ptrdiff_t i = 0; i < n; i++)                                        \
                for (ptrdiff_t j = 0; j < n_in; j++) {                               \
                    T s = 0;                                                         \
                    for (ptrdiff_t p = 0; p < n_out; p++)                            \
                        s += delta[i * n_out + p] * W[j * n_out + p];                \
                    E[i * n_in + j] = s;                                             \
                }                                                                    \
        }                                                                            \
        for (ptrdiff_t i = 0; i < n_in; i++)                                         \
            for (ptrdiff_t j = 0; j < n_out; j++) {                                  \
                T s = 0;                                                             \
                for (ptrdiff_t r = 0; r < n; r++) s += A_prev[r * n_in + i] * delta[r * n_out + j]; \
                W[i * n_out + j] = alpha * s + w_scale * W[i * n_out + j];           \
            }                                                                        \
        for (ptrdiff_t r = 0; r < n; r++)                                            \
            for (ptrdiff_t j = 0; j < n_out; j++) b[j] += alpha * delta[r * n_out + j]; \
        if (E) bpf_tiny_times_derivative_##X(n * n_in, E, A_prev, act);             \
    }                                                                                \
    /* One step of plain SGD on one batch of a network whose layers are all tiny, with \
     * the MSE or SSE loss (a code of _codes.h) and no softmax: forward_all, output_delta_into and \
     * backward_all of _engine.pyx / _kernels.pyx in one call, in their order. Layer l \
     * has W at P + w_off[l], b at P + b_off[l], its output at acts + n * a_off[l];    \
     * err0 and err1 hold n * (widest layer) each. Returns the batch loss. */        \
    BPF_SCALAR static double bpf_tiny_sgd_train_batch_##X(int L, const ptrdiff_t* sizes,      \
            const ptrdiff_t* w_off, const ptrdiff_t* b_off, const ptrdiff_t* a_off,  \
            int hidden_act, int output_act, int loss, ptrdiff_t n, const T* Xin,      \
            const T* Y, T* P, T* acts, T* err0, T* err1, T lr, T w_scale) {          \
        const T* inp = Xin;                                                          \
        for (int l = 0; l < L; l++) {                                                \
            T* out = acts + n * a_off[l];                                            \
            bpf_tiny_forward_##X(n, sizes[l], sizes[l + 1], inp, P + w_off[l], P + b_off[l], \
                                 l == L - 1 ? output_act : hidden_act, out);         \
            inp = out;                                                               \
        }                                                                            \
        ptrdiff_t size = n * sizes[L];                                               \
        double scale = loss == LOSS_SSE ? 1.0 : 1.0 / size;                          \
        T* delta = err0;                                                             \
        T* E = err1;                                                                 \
        double value = bpf_squared_error_##X(size, inp, Y, scale, delta);            \
        bpf_tiny_times_derivative_##X(size, delta, inp, output_act);                 \
        for (int l = L - 1; l >= 0; l--) {                                           \
            const T* A_prev = l == 0 ? Xin : acts + n * a_off[l - 1];                \
            bpf_tiny_backward_##X(n, sizes[l], sizes[l + 1], A_prev, delta, lr, w_scale, \
                                  P + w_off[l], P + b_off[l], l > 0 ? E : NULL, hidden_act); \
            T* swap = delta;                                                         \
            delta = E;                                                               \
            E = swap;                                                                \
        }                                                                            \
        return value;                                                                \
    }

BPF_TINY(d, double)
BPF_TINY(f, float)

#endif
