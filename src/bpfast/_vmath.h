/* Vectorizable exp() for the activation loops, chosen for the CPU at run time.
 *
 * libm's exp() is a scalar call, and a sigmoid layer spends most of its time
 * there. These are Cephes' exp and expf (about 1 ulp), written without branches
 * or calls so that the compiler vectorizes the loops around them. Every loop is
 * compiled twice, for baseline x86-64 (SSE2) and for AVX2+FMA, and the first call
 * picks the variant the CPU supports: a wheel built here runs on any x86-64.
 *
 * Only exp(x) for x <= 0 is needed (sigmoid uses exp(-|z|), softmax exp(z - max)),
 * so results lie in [0, 1]; 2^n is applied in two halves to reach subnormals.
 */
#ifndef BPFAST_VMATH_H
#define BPFAST_VMATH_H

#include <stdint.h>
#include <stddef.h>

#define BPF_INLINE static inline __attribute__((always_inline))

typedef union { double d; int64_t i; } bpf_d64;
typedef union { float f; int32_t i; } bpf_f32;

/* exp(x) for x <= 0 (and x not NaN), double. */
BPF_INLINE double bpf_exp_neg_d(double x) {
    const double magic = 6755399441055744.0;           /* 1.5 * 2^52: rounds to an integer */
    x = x < -746.0 ? -746.0 : x;                         /* exp(-746) == 0 in double */
    double n = (x * 1.4426950408889634073599 + magic) - magic;
    double r = x - n * 6.93145751953125E-1 - n * 1.42860682030941723212E-6;
    double rr = r * r;
    double px = r * ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr
                     + 9.99999999999999999910E-1);
    double qx = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr
                 + 2.27265548208155028766E-1) * rr + 2.00000000000000000009E0;
    double e = 1.0 + 2.0 * px / (qx - px);
    int32_t k = (int32_t)n;
    int32_t k1 = k >> 1, k2 = k - k1;                    /* 2^k = 2^k1 * 2^k2, each normal */
    bpf_d64 s1, s2;
    s1.i = (int64_t)(k1 + 1023) << 52;
    s2.i = (int64_t)(k2 + 1023) << 52;
    return e * s1.d * s2.d;
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

/* The loops. Z := sigmoid(Z + b) over n rows of m; Z := exp(Z - shift) with its sum. */
#define BPF_SIGMOID_LOOP(T, EXP, ABS)                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                      \
        T* z = Z + i * m;                                                    \
        for (ptrdiff_t j = 0; j < m; j++) {                                  \
            T v = z[j] + b[j];                                               \
            T e = EXP(-ABS(v));         /* never overflows */                \
            T s = (T)1 / ((T)1 + e);                                         \
            z[j] = v >= 0 ? s : e * s;                                       \
        }                                                                    \
    }

#define BPF_EXP_SHIFT_LOOP(T, EXP)                                           \
    T sum = 0;                                                               \
    for (ptrdiff_t j = 0; j < m; j++)   /* vectorized */                     \
        z[j] = EXP(z[j] - shift);                                            \
    for (ptrdiff_t j = 0; j < m; j++)   /* in order: no reassociation */     \
        sum += z[j];                                                         \
    return sum;

BPF_INLINE double bpf_abs_d(double x) { return x < 0 ? -x : x; }
BPF_INLINE float bpf_abs_f(float x) { return x < 0 ? -x : x; }

#define BPF_DEFINE(NAME, TARGET, T, EXP, ABS)                                            \
    TARGET static void NAME##_sigmoid(ptrdiff_t n, ptrdiff_t m, const T* b, T* Z) {     \
        BPF_SIGMOID_LOOP(T, EXP, ABS)                                                    \
    }                                                                                    \
    TARGET static T NAME##_exp_shift(ptrdiff_t m, T shift, T* z) {                      \
        BPF_EXP_SHIFT_LOOP(T, EXP)                                                       \
    }

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BPF_DISPATCH 1
#define BPF_AVX2 __attribute__((target("avx2,fma")))
BPF_DEFINE(bpf_avx2_d, BPF_AVX2, double, bpf_exp_neg_d, bpf_abs_d)
BPF_DEFINE(bpf_avx2_f, BPF_AVX2, float, bpf_exp_neg_f, bpf_abs_f)
#endif
BPF_DEFINE(bpf_base_d, , double, bpf_exp_neg_d, bpf_abs_d)
BPF_DEFINE(bpf_base_f, , float, bpf_exp_neg_f, bpf_abs_f)

static int bpf_cpu_level = -1;      /* -1: not yet asked, 0: baseline, 1: AVX2 + FMA */

static inline int bpf_has_avx2(void) {
#ifdef BPF_DISPATCH
    if (bpf_cpu_level < 0) {
        __builtin_cpu_init();
        bpf_cpu_level = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return bpf_cpu_level;
#else
    return 0;
#endif
}

/* Force the baseline loops (for tests comparing the two variants). */
static inline int bpf_set_cpu_level(int level) {
    bpf_cpu_level = -1;
    if (!(level && bpf_has_avx2())) bpf_cpu_level = 0;
    return bpf_cpu_level;
}

#ifdef BPF_DISPATCH
#define BPF_PICK(FN, ...) (bpf_has_avx2() ? bpf_avx2_##FN(__VA_ARGS__) : bpf_base_##FN(__VA_ARGS__))
#else
#define BPF_PICK(FN, ...) bpf_base_##FN(__VA_ARGS__)
#endif

static inline void bpf_sigmoid_d(ptrdiff_t n, ptrdiff_t m, const double* b, double* Z) {
    BPF_PICK(d_sigmoid, n, m, b, Z);
}
static inline void bpf_sigmoid_f(ptrdiff_t n, ptrdiff_t m, const float* b, float* Z) {
    BPF_PICK(f_sigmoid, n, m, b, Z);
}
static inline double bpf_exp_shift_d(ptrdiff_t m, double shift, double* z) {
    return BPF_PICK(d_exp_shift, m, shift, z);
}
static inline float bpf_exp_shift_f(ptrdiff_t m, float shift, float* z) {
    return BPF_PICK(f_exp_shift, m, shift, z);
}

#endif
