/* Tiny layers (products of at most SMALL_GEMM multiply-adds, e.g. 2-2-1 at batch 1):
 * a layer's forward pass, and its backward pass with the plain SGD update, each in one
 * function of scalar loops.
 *
 * At these sizes a step is a few dozen flops, and the general path (a call per
 * product, per bias, per activation; vector loops that run only their scalar tails)
 * costs ~1600 instructions per 2-2-1 update, several times the arithmetic. These do
 * the same operations in the same order as that path (gemm()'s dot products, then
 * the bias, then the activation; the error through the old W, the fused update
 * W := -lr * A_prev.T @ delta + w_scale * W, the bias rows in order, then f'), so
 * the results are the same to the bit (tested against the general path).
 *
 * Activation codes as in activations.py: 0 identity, 1 sigmoid, 2 tanh, 3 relu
 * (softmax rows stay on the general path).
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
    if (act == 1) for (ptrdiff_t k = 0; k < size; k++) A[k] = bpf_sigmoid_##X(A[k]); \
    else if (act == 2) for (ptrdiff_t k = 0; k < size; k++) A[k] = bpf_tanh_##X(A[k]); \
    else if (act == 3) for (ptrdiff_t k = 0; k < size; k++) A[k] = A[k] > 0 ? A[k] : 0;

#define BPF_TINY(X, T)                                                               \
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
        if (E) {                                                                     \
            ptrdiff_t size = n * n_in;                                               \
            if (act == 1)                                                            \
                for (ptrdiff_t k = 0; k < size; k++) E[k] *= A_prev[k] * (1 - A_prev[k]); \
            else if (act == 2)                                                       \
                for (ptrdiff_t k = 0; k < size; k++) E[k] *= 1 - A_prev[k] * A_prev[k]; \
            else if (act == 3)                                                       \
                for (ptrdiff_t k = 0; k < size; k++) E[k] = A_prev[k] > 0 ? E[k] : 0; \
        }                                                                            \
    }

BPF_TINY(d, double)
BPF_TINY(f, float)

#endif
