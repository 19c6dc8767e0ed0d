/* The element-wise loops of the kernels, vectorized and chosen for the CPU at run time.
 *
 * libm's exp() and tanh() are scalar calls, and a sigmoid or tanh layer spends
 * most of its time there. These are Cephes' exp/expf and tanh/tanhf (1-3 ulp),
 * written without branches or calls so that the compiler vectorizes the loops
 * around them. Every loop is compiled three times, for baseline x86-64 (SSE2),
 * AVX2+FMA and AVX-512, and the first call picks the best variant the CPU
 * supports: a wheel built here runs on any x86-64. (Cython cannot attach target
 * attributes to a function, hence C.)
 *
 * Only exp(x) for x <= 0 is needed (sigmoid uses exp(-|z|), softmax exp(z - max),
 * tanh exp(-2|z|)), so results lie in [0, 1]; 2^n is applied in two halves to
 * reach subnormals.
 */
#ifndef BPFAST_VMATH_H
#define BPFAST_VMATH_H

#include <math.h>
#include <stdint.h>
#include <stddef.h>

#include "_codes.h"

#define BPF_INLINE static inline __attribute__((always_inline))

typedef union { double d; int64_t i; } bpf_d64;
typedef union { float f; int32_t i; } bpf_f32;

/* Cephes' exp(x) for x <= 0 (and x not NaN), double, in parts: exp(x) = R 2^k with
 * R = (q + p) / (q - p) and 2^k = s1 s2 (two halves, each normal, to reach subnormals). */
BPF_INLINE void bpf_exp_parts_d(double x, double* p, double* q, double* s1, double* s2) {
    const double magic = 6755399441055744.0;           /* 1.5 * 2^52: rounds to an integer */
    x = x < -746.0 ? -746.0 : x;                         /* exp(-746) == 0 in double */
    double n = (x * 1.4426950408889634073599 + magic) - magic;
    double r = x - n * 6.93145751953125E-1 - n * 1.42860682030941723212E-6;
    double rr = r * r;
    *p = r * ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr
              + 9.99999999999999999910E-1);
    *q = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr
          + 2.27265548208155028766E-1) * rr + 2.00000000000000000009E0;
    int32_t k = (int32_t)n;
    int32_t k1 = k >> 1, k2 = k - k1;
    bpf_d64 h1, h2;
    h1.i = (int64_t)(k1 + 1023) << 52;
    h2.i = (int64_t)(k2 + 1023) << 52;
    *s1 = h1.d;
    *s2 = h2.d;
}

/* exp(x) for x <= 0 (and x not NaN), double. */
BPF_INLINE double bpf_exp_neg_d(double x) {
    double p, q, s1, s2;
    bpf_exp_parts_d(x, &p, &q, &s1, &s2);
    return (1.0 + 2.0 * p / (q - p)) * s1 * s2;           /* R as Cephes writes it */
}

/* exp(x) for x <= 0 (and x not NaN), float. */
BPF_INLINE float bpf_exp_neg_f(float x) {
    const float magic = 12582912.0f;                     /* 1.5 * 2^23 */
    x = x < -104.0f ? -104.0f : x;                       /* exp(-104) == 0 in float */
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r
                + 4.1665795894E-2f) * r + 1.6666665459E-1f) * r + 5.0000001201E-1f;
    float e = p * (r * r) + r + 1.0f;
    int32_t k = (int32_t)n;
    int32_t k1 = k >> 1, k2 = k - k1;
    bpf_f32 s1, s2;
    s1.i = (k1 + 127) << 23;
    s2.i = (k2 + 127) << 23;
    return e * s1.f * s2.f;
}

/* |x| and c ? a : b on the bits, without branches. Tiny layers (2-2-1) run these in
 * the scalar tails of the loops, where GCC compiles a ternary on the sign of the input
 * into a branch that mispredicts half the time; vector loops blend either way. */
#define BPF_BIT_OPS(X, T, BITS, I, I_MAX)  /* BITS: the union whose member X is the T */ \
    BPF_INLINE T bpf_abs_##X(T v) { BITS u; u.X = v; u.i &= I_MAX; return u.X; }      \
    BPF_INLINE T bpf_pick_##X(int c, T a, T b) {                                       \
        BITS x, y;                                                                     \
        x.X = a;                                                                       \
        y.X = b;                                                                       \
        I m = -(I)(c != 0);                                                            \
        x.i = (x.i & m) | (y.i & ~m);                                                  \
        return x.X;                                                                    \
    }
BPF_BIT_OPS(d, double, bpf_d64, int64_t, INT64_MAX)
BPF_BIT_OPS(f, float, bpf_f32, int32_t, INT32_MAX)

/* sigmoid(v), double, with one division instead of two: from exp(-|v|) = R 2^k with
 * R = (q + p) / (q - p), 1 / (1 + exp(-|v|)) = (q - p) / ((q - p) + (q + p) 2^k) and
 * exp(-|v|) / (1 + exp(-|v|)) = (q + p) 2^k / (the same). Never overflows. */
BPF_INLINE double bpf_sigmoid_d(double v) {
    double p, q, s1, s2;
    bpf_exp_parts_d(-bpf_abs_d(v), &p, &q, &s1, &s2);
    double den = q - p, num = (q + p) * s1 * s2;
    double inv = 1.0 / (den + num);
    return bpf_pick_d(v >= 0, den * inv, num * inv);
}

/* sigmoid(v), float: expf has no division, so 1 / (1 + e) is the only one. */
BPF_INLINE float bpf_sigmoid_f(float v) {
    float e = bpf_exp_neg_f(-bpf_abs_f(v));
    float s = 1.0f / (1.0f + e);
    return bpf_pick_f(v >= 0, s, e * s);
}

/* tanh(x) of either type for |x| >= 0.625, via e = exp(-2|x|): (1 - e) / (1 + e) written
 * as 1 - 2e / (1 + e), one rounding near 1, so saturated units round like libm's tanh
 * and 1 - tanh^2 stays accurate. */
#define BPF_TANH_BIG(X, T)                                                             \
    BPF_INLINE T bpf_tanh_big_##X(T x) {                                               \
        T e = bpf_exp_neg_##X((T)-2 * bpf_abs_##X(x));                                 \
        T big = (T)1 - (T)2 * e / ((T)1 + e);                                          \
        return bpf_pick_##X(x < 0, -big, big);                                         \
    }
BPF_TANH_BIG(d, double)
BPF_TANH_BIG(f, float)

/* tanh(x), double: Cephes' rational approximation below 0.625, else tanh_big. */
BPF_INLINE double bpf_tanh_d(double x) {
    double z = x * x;
    double p = (-9.64399179425052238628E-1 * z - 9.92877231001918586564E1) * z
               - 1.61468768441708447952E3;
    double q = ((z + 1.12811678491632931402E2) * z + 2.23548839060100448583E3) * z
               + 4.84406305325125486048E3;
    double small = x + x * z * (p / q);
    return bpf_pick_d(bpf_abs_d(x) < 0.625, small, bpf_tanh_big_d(x));
}

/* tanh(x), float (Cephes' tanhf). */
BPF_INLINE float bpf_tanh_f(float x) {
    float z = x * x;
    float small = ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) * z
                    + 1.33314422036E-1f) * z - 3.33332819422E-1f) * z * x + x;
    return bpf_pick_f(bpf_abs_f(x) < 0.625f, small, bpf_tanh_big_f(x));
}

/* The element formulas that both these vector loops and _tiny.h's scalar loops apply,
 * written once so that the two paths round alike: relu(v), and an error E times f'(Z)
 * written through A = f(Z) (back_<f>). */
#define BPF_RELU(v) ((v) > 0 ? (v) : 0)
#define BPF_BACK_SIGMOID(e, a) ((e) * ((a) * (1 - (a))))
#define BPF_BACK_TANH(e, a) ((e) * (1 - (a) * (a)))
#define BPF_BACK_RELU(e, a) ((a) > 0 ? (e) : 0)

/* The squared-error output layer: delta := 2 scale (A - Y), i.e. dLoss/dA before f';
 * returns scale * sum((A - Y)^2), summed in double in order. scale is 1 / size for MSE
 * and 1 for SSE. The general path (output_delta_into) and _tiny.h both call it, so the
 * two round alike. */
#define BPF_SQUARED_ERROR(X, T)                                                      \
    static inline double bpf_squared_error_##X(ptrdiff_t size, const T* A, const T* Y, \
                                               double scale, T* delta) {            \
        double value = 0;                                                            \
        for (ptrdiff_t k = 0; k < size; k++) {                                       \
            double diff = (double)A[k] - (double)Y[k];                               \
            value += diff * diff;                                                    \
            delta[k] = (T)(2.0 * scale * diff);                                      \
        }                                                                            \
        return scale * value;                                                        \
    }
BPF_SQUARED_ERROR(d, double)
BPF_SQUARED_ERROR(f, float)

/* sqrt at the type's own precision (correctly rounded, so the same at every SIMD level). */
#define bpf_sqrt_d sqrt
#define bpf_sqrt_f sqrtf

/* The scalars of one Adam step (computed once per batch by the engine). The float
 * kernel decays m and v by the betas rounded to float, b, with weights 1 - b (exact):
 * its bias corrections are those of the rounded betas (the _f fields), which keep the
 * corrected moments unbiased; the corrections of the double betas would scale every
 * early step by sqrt((1 - 0.999) / (1 - (float)0.999)) = 1 + 6.4e-6 (beta2 = 0.999). */
typedef struct {
    double step;        /* lr / (1 - beta1^t) */
    double beta1, beta2;
    double bc2_sqrt;    /* sqrt(1 - beta2^t) */
    double eps;         /* eps, or eps / bc2_sqrt (folded) */
    double step_f, bc2_sqrt_f, eps_f;   /* the same, of the betas rounded to float */
    double decay;       /* Adam's L2 term on the gradient (0 for AdamW and for biases) */
    double shrink;      /* AdamW's decoupled decay: P *= 1 - lr * weight_decay (1: none) */
} bpf_adam_args;

/* The scalars of one iRprop- step. */
typedef struct {
    double eta_minus, eta_plus, step_min, step_max;
    double decay;       /* L2 term on the gradient (0 for biases) */
} bpf_rprop_args;

/* One family of loops per type and target:
 *   bias_<f>(n, m, b, Z):  Z := f(Z + b) over n rows of m (f: identity, sigmoid, tanh, relu)
 *   softmax(n, m, Z):      Z[i] := softmax(Z[i]) row by row, shifted by the row max
 *                          so that exp() <= 1
 *   back_<f>(size, E, A):  E := E * f'(Z), written in terms of A = f(Z)
 *   xent_delta(n, m, A, Y, delta): softmax + cross-entropy output delta, returns the loss
 *   all_finite(size, x):   1 when no element is NaN or infinite
 *   sum_squares(size, x):  the sum of x[i]^2, in double
 *   column_sums(n, m, D, alpha, db): db[j] += alpha * sum of D[i, j] over rows i
 *   sgd_plain(size, P, G, lr):          P -= lr G
 *   sgd_decay(size, P, G, lr, decay):   P -= lr (G + decay P)
 *   sgd_momentum(size, P, G, V, lr, mu, decay, nesterov): the momentum SGD update
 *       g = G + decay P;  V := mu V - lr g;  P += V  (Nesterov: P += mu V - lr g)
 *   adam(size, P, G, M, V, a): Adam and AdamW (the arithmetic of torch.optim.Adam/AdamW)
 *       P := shrink P (AdamW's decoupled decay);  g = G + decay P (Adam's L2);
 *       M := b1 M + (1 - b1) g;  V := b2 V + (1 - b2) g^2;
 *       P := P - step (M / (sqrt(V) * (1 / bc2_sqrt) + eps))
 *   rprop(size, P, G, prev, steps, r): iRprop- (torch.optim.Rprop)
 *       g = G + decay P; by the sign of g * prev the step grows (eta_plus), shrinks
 *       (eta_minus, and g := 0) or stays, clamped to [step_min, step_max];
 *       P -= sign(g) step;  prev := g
 */
#define BPF_ROWS(BODY)                                                               \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        T* z = Z + i * m;                                                            \
        for (ptrdiff_t j = 0; j < m; j++) { T v = z[j] + b[j]; BODY }                \
    }

#define BPF_COLUMN_BLOCK(T_, B)                                                      \
    for (; j0 + B <= m; j0 += B) {                                                   \
        T_ acc[B];                                                                   \
        for (int k = 0; k < B; k++) acc[k] = db[j0 + k];                             \
        for (ptrdiff_t i = 0; i < n; i++) {                                          \
            const T_* row = D + i * m + j0;                                          \
            for (int k = 0; k < B; k++) acc[k] += alpha * row[k];                    \
        }                                                                            \
        for (int k = 0; k < B; k++) db[j0 + k] = acc[k];                             \
    }

#define BPF_DEFINE(NAME, TARGET, T_, X)                                              \
    typedef T_ NAME##_t;                                                             \
    TARGET static void NAME##_bias_identity(ptrdiff_t n, ptrdiff_t m, const T_* b, T_* Z) { \
        typedef T_ T; BPF_ROWS(z[j] = v;)                                            \
    }                                                                                \
    TARGET static void NAME##_bias_sigmoid(ptrdiff_t n, ptrdiff_t m, const T_* b, T_* Z) {  \
        typedef T_ T;                                                                \
        BPF_ROWS(z[j] = bpf_sigmoid_##X(v);)                                         \
    }                                                                                \
    TARGET static void NAME##_bias_tanh(ptrdiff_t n, ptrdiff_t m, const T_* b, T_* Z) {     \
        typedef T_ T; BPF_ROWS(z[j] = bpf_tanh_##X(v);)                              \
    }                                                                                \
    TARGET static void NAME##_bias_relu(ptrdiff_t n, ptrdiff_t m, const T_* b, T_* Z) {     \
        typedef T_ T; BPF_ROWS(z[j] = BPF_RELU(v);)                                  \
    }                                                                                \
    TARGET static void NAME##_softmax(ptrdiff_t n, ptrdiff_t m, T_* restrict Z) {   \
        /* Three sweeps so that the exp() of the whole block is one vectorized loop \
         * (rows of a few classes would leave most vector lanes empty): shift      \
         * each row by its max, exp() everything, normalize each row. */           \
        for (ptrdiff_t i = 0; i < n; i++) {                                          \
            T_* z = Z + i * m;                                                       \
            T_ zmax = z[0];                                                          \
            for (ptrdiff_t j = 1; j < m; j++) zmax = z[j] > zmax ? z[j] : zmax;      \
            for (ptrdiff_t j = 0; j < m; j++) z[j] -= zmax;                          \
        }                                                                            \
        for (ptrdiff_t k = 0; k < n * m; k++) Z[k] = bpf_exp_neg_##X(Z[k]);         \
        for (ptrdiff_t i = 0; i < n; i++) {                                          \
            T_* z = Z + i * m;                                                       \
            T_ sum = 0;                                                              \
            for (ptrdiff_t j = 0; j < m; j++)   /* in order: no reassociation */     \
                sum += z[j];                                                         \
            for (ptrdiff_t j = 0; j < m; j++) z[j] = z[j] / sum;                     \
        }                                                                            \
    }                                                                                \
    TARGET static void NAME##_back_sigmoid(ptrdiff_t size, T_* E, const T_* A) {    \
        for (ptrdiff_t i = 0; i < size; i++) E[i] = BPF_BACK_SIGMOID(E[i], A[i]);    \
    }                                                                                \
    TARGET static void NAME##_back_tanh(ptrdiff_t size, T_* E, const T_* A) {       \
        for (ptrdiff_t i = 0; i < size; i++) E[i] = BPF_BACK_TANH(E[i], A[i]);       \
    }                                                                                \
    TARGET static void NAME##_back_relu(ptrdiff_t size, T_* E, const T_* A) {       \
        for (ptrdiff_t i = 0; i < size; i++) E[i] = BPF_BACK_RELU(E[i], A[i]);       \
    }                                                                                \
    TARGET static int NAME##_all_finite(ptrdiff_t size, const T_* x) {               \
        /* x - x is 0 for a finite x, NaN otherwise; an integer OR vectorizes. */    \
        int bad = 0;                                                                 \
        for (ptrdiff_t i = 0; i < size; i++) bad |= !(x[i] - x[i] == 0);             \
        return !bad;                                                                 \
    }                                                                                \
    TARGET static double NAME##_sum_squares(ptrdiff_t size, const T_* x) {           \
        /* In double, in 8 partial sums (part[k] takes x[k], x[k + 8], ...) added in a\
         * fixed order: 8 chains of additions instead of one, and the same bits at   \
         * every SIMD level. */                                                      \
        double part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0;                         \
        ptrdiff_t i = 0;                                                             \
        for (; i + 8 <= size; i += 8)                                                \
            for (int k = 0; k < 8; k++) part[k] += (double)x[i + k] * (double)x[i + k];\
        for (; i < size; i++) tail += (double)x[i] * (double)x[i];                   \
        return (((part[0] + part[1]) + (part[2] + part[3]))                          \
                + ((part[4] + part[5]) + (part[6] + part[7]))) + tail;               \
    }                                                                                \
    TARGET static void NAME##_column_sums(ptrdiff_t n, ptrdiff_t m, const T_* restrict D, \
                                          T_ alpha, T_* restrict db) {               \
        /* db[j] += alpha * D[i, j], rows in order (the bits of the plain double loop): \
         * a block of columns is summed in registers, stored once. */               \
        ptrdiff_t j0 = 0;                                                            \
        BPF_COLUMN_BLOCK(T_, 32)                                                     \
        BPF_COLUMN_BLOCK(T_, 8)                                                      \
        for (ptrdiff_t i = 0; i < n; i++)                                            \
            for (ptrdiff_t j = j0; j < m; j++) db[j] += alpha * D[i * m + j];        \
    }                                                                                \
    TARGET static double NAME##_xent_delta(ptrdiff_t n, ptrdiff_t m, const T_* restrict A, \
                                           const T_* restrict Y, T_* restrict delta) {  \
        /* Softmax + cross-entropy: delta = (A * sum(Y_row) - Y) / n; returns          \
         * -sum(Y log A) / n (0 log 0 counts as 0). A power-of-two n is a multiply by  \
         * its exact reciprocal: the same bits as the division, without its cost. */  \
        double loss = 0;                                                             \
        int pow2 = (n & (n - 1)) == 0;                                               \
        T_ inv = (T_)1 / (T_)n, tn = (T_)n;                                          \
        for (ptrdiff_t i = 0; i < n; i++) {                                          \
            const T_* a = A + i * m;                                                 \
            const T_* y = Y + i * m;                                                 \
            T_* d = delta + i * m;                                                   \
            T_ y_sum = 0;                                                            \
            for (ptrdiff_t j = 0; j < m; j++) {                                      \
                y_sum += y[j];                                                       \
                if (y[j] != 0)                                                       \
                    loss -= (double)y[j] * log(a[j] > 0 ? (double)a[j] : 5e-324);    \
            }                                                                        \
            if (pow2)                                                                \
                for (ptrdiff_t j = 0; j < m; j++) d[j] = (a[j] * y_sum - y[j]) * inv;  \
            else                                                                     \
                for (ptrdiff_t j = 0; j < m; j++) d[j] = (a[j] * y_sum - y[j]) / tn;   \
        }                                                                            \
        return loss / n;                                                             \
    }                                                                                \
    TARGET static void NAME##_sgd_plain(ptrdiff_t size, T_* restrict P, const T_* restrict G, \
                                        T_ lr) {                                     \
        for (ptrdiff_t i = 0; i < size; i++) P[i] -= lr * G[i];                      \
    }                                                                                \
    TARGET static void NAME##_sgd_decay(ptrdiff_t size, T_* restrict P, const T_* restrict G, \
                                        T_ lr, T_ decay) {                           \
        for (ptrdiff_t i = 0; i < size; i++) P[i] -= lr * (G[i] + decay * P[i]);    \
    }                                                                                \
    TARGET static void NAME##_adam(ptrdiff_t size, T_* restrict P, const T_* restrict G, \
                                   T_* restrict M, T_* restrict V, const bpf_adam_args* a) { \
        const int single = sizeof(T_) == sizeof(float);                             \
        const T_ step = (T_)(single ? a->step_f : a->step);                          \
        const T_ b1 = (T_)a->beta1, b2 = (T_)a->beta2;                               \
        const T_ c1 = (T_)1 - b1, c2 = (T_)1 - b2;                                   \
        /* One division per element, not two: times the reciprocal of sqrt(1 - b2^t). */ \
        const T_ inv_bc2 = (T_)(1.0 / (single ? a->bc2_sqrt_f : a->bc2_sqrt));       \
        const T_ eps = (T_)(single ? a->eps_f : a->eps);                             \
        const T_ decay = (T_)a->decay;                                               \
        const T_ shrink = (T_)a->shrink;                                             \
        for (ptrdiff_t i = 0; i < size; i++) {                                       \
            T_ p = P[i] * shrink;                                                    \
            T_ g = G[i] + decay * p;                                                 \
            T_ m = b1 * M[i] + c1 * g;                                               \
            T_ v = b2 * V[i] + c2 * (g * g);                                         \
            M[i] = m;                                                                \
            V[i] = v;                                                                \
            P[i] = p - step * (m / (bpf_sqrt_##X(v) * inv_bc2 + eps));                \
        }                                                                            \
    }                                                                                \
    TARGET static void NAME##_rprop(ptrdiff_t size, T_* restrict P, const T_* restrict G, \
                                    T_* restrict prev, T_* restrict steps,           \
                                    const bpf_rprop_args* r) {                       \
        const T_ up = (T_)r->eta_plus, down = (T_)r->eta_minus;                      \
        const T_ lo = (T_)r->step_min, hi = (T_)r->step_max, decay = (T_)r->decay;   \
        for (ptrdiff_t i = 0; i < size; i++) {                                       \
            T_ g = G[i] + decay * P[i];                                              \
            T_ turn = g * prev[i];                                                   \
            T_ s = steps[i] * (turn > 0 ? up : turn < 0 ? down : (T_)1);             \
            s = s < lo ? lo : s > hi ? hi : s;                                       \
            g = turn < 0 ? (T_)0 : g;                                                \
            steps[i] = s;                                                            \
            P[i] -= (g > 0 ? s : g < 0 ? -s : (T_)0);                                \
            prev[i] = g;                                                             \
        }                                                                            \
    }                                                                                \
    TARGET static void NAME##_sgd_momentum(ptrdiff_t size, T_* restrict P, const T_* restrict G, \
                                       T_* restrict V, T_ lr, T_ mu, T_ decay, int nesterov) { \
        for (ptrdiff_t i = 0; i < size; i++) {                                       \
            T_ g = G[i] + decay * P[i];                                              \
            V[i] = mu * V[i] - lr * g;                                               \
            P[i] += nesterov ? mu * V[i] - lr * g : V[i];                            \
        }                                                                            \
    }

#if defined(__GNUC__) && defined(__x86_64__)
#define BPF_DISPATCH 1
#define BPF_AVX2 __attribute__((target("avx2,fma")))
#define BPF_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
BPF_DEFINE(bpf_avx512_d, BPF_AVX512, double, d)
BPF_DEFINE(bpf_avx512_f, BPF_AVX512, float, f)
BPF_DEFINE(bpf_avx2_d, BPF_AVX2, double, d)
BPF_DEFINE(bpf_avx2_f, BPF_AVX2, float, f)
#endif
BPF_DEFINE(bpf_base_d, , double, d)
BPF_DEFINE(bpf_base_f, , float, f)

/* -1: not yet asked; 0: baseline x86-64; 1: AVX2 + FMA; 2: AVX-512 (F, DQ, VL). */
static int bpf_level = -1;
static int bpf_level_cap = 2;

static inline int bpf_cpu_level(void) {
    if (bpf_level < 0) {
        int level = 0;
#ifdef BPF_DISPATCH
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            level = 1;
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
                    && __builtin_cpu_supports("avx512vl"))
                level = 2;
        }
#endif
        bpf_level = level < bpf_level_cap ? level : bpf_level_cap;
    }
    return bpf_level;
}

/* Use at most `cap` (0, 1 or 2): tests run every variant the CPU has. Returns the level used. */
static inline int bpf_set_cpu_level(int cap) {
    bpf_level_cap = cap;
    bpf_level = -1;
    return bpf_cpu_level();
}

#ifdef BPF_DISPATCH
#define BPF_PICK(X, FN, ...)                                                         \
    switch (bpf_cpu_level()) {                                                       \
        case 2: return bpf_avx512_##X##_##FN(__VA_ARGS__);                           \
        case 1: return bpf_avx2_##X##_##FN(__VA_ARGS__);                             \
        default: return bpf_base_##X##_##FN(__VA_ARGS__);                            \
    }
#else
#define BPF_PICK(X, FN, ...) return bpf_base_##X##_##FN(__VA_ARGS__);
#endif

/* The entry points; act is an activation code of _codes.h (identity: no call). */
#define BPF_ENTRY(X, T)                                                              \
    static inline void bpf_bias_act_##X(ptrdiff_t n, ptrdiff_t m, const T* b, T* Z, int act) { \
        if (act == ACT_SIGMOID) { BPF_PICK(X, bias_sigmoid, n, m, b, Z) }                      \
        if (act == ACT_TANH) { BPF_PICK(X, bias_tanh, n, m, b, Z) }                         \
        if (act == ACT_RELU) { BPF_PICK(X, bias_relu, n, m, b, Z) }                         \
        BPF_PICK(X, bias_identity, n, m, b, Z)                                       \
    }                                                                                \
    static inline void bpf_softmax_##X(ptrdiff_t n, ptrdiff_t m, T* Z) {            \
        BPF_PICK(X, softmax, n, m, Z)                                                \
    }                                                                                \
    /* The SGD update of sgd_update_into (_kernels.pyx): with velocities V, momentum;  \
     * without (V == NULL), plain, with L2 decay when decay != 0. */                 \
    static inline void bpf_sgd_update_##X(ptrdiff_t size, T* P, const T* G, T* V, T lr, T mu, \
                                          T decay, int nesterov) {                   \
        if (V) { BPF_PICK(X, sgd_momentum, size, P, G, V, lr, mu, decay, nesterov) }  \
        if (decay != 0) { BPF_PICK(X, sgd_decay, size, P, G, lr, decay) }            \
        BPF_PICK(X, sgd_plain, size, P, G, lr)                                       \
    }                                                                                \
    static inline void bpf_adam_##X(ptrdiff_t size, T* P, const T* G, T* M, T* V,       \
                                    const bpf_adam_args* a) {                        \
        BPF_PICK(X, adam, size, P, G, M, V, a)                                       \
    }                                                                                \
    static inline void bpf_rprop_##X(ptrdiff_t size, T* P, const T* G, T* prev, T* steps, \
                                     const bpf_rprop_args* r) {                      \
        BPF_PICK(X, rprop, size, P, G, prev, steps, r)                               \
    }                                                                                \
    static inline int bpf_all_finite_##X(ptrdiff_t size, const T* x) {               \
        BPF_PICK(X, all_finite, size, x)                                             \
    }                                                                                \
    static inline double bpf_sum_squares_##X(ptrdiff_t size, const T* x) {           \
        BPF_PICK(X, sum_squares, size, x)                                            \
    }                                                                                \
    static inline void bpf_column_sums_##X(ptrdiff_t n, ptrdiff_t m, const T* D, T alpha, T* db) { \
        BPF_PICK(X, column_sums, n, m, D, alpha, db)                                 \
    }                                                                                \
    static inline double bpf_xent_delta_##X(ptrdiff_t n, ptrdiff_t m, const T* A, const T* Y, T* delta) { \
        BPF_PICK(X, xent_delta, n, m, A, Y, delta)                                   \
    }                                                                                \
    static inline void bpf_act_backward_##X(ptrdiff_t size, T* E, const T* A, int act) { \
        if (act == ACT_SIGMOID) { BPF_PICK(X, back_sigmoid, size, E, A) }                      \
        if (act == ACT_TANH) { BPF_PICK(X, back_tanh, size, E, A) }                         \
        if (act == ACT_RELU) { BPF_PICK(X, back_relu, size, E, A) }                         \
    }

BPF_ENTRY(d, double)
BPF_ENTRY(f, float)

#endif
