/* Small matrix products in registers: C := alpha * op(A) @ B + beta * C, row-major,
 * op(A) = A or A.T, for the layers of small networks.
 *
 * Why not BLAS: OpenBLAS's Haswell/Zen kernels (what it runs on an AVX2 CPU) have no
 * small-matrix path, so a 32x64 @ 64x64 product first packs both operands into
 * buffers, and at these sizes the packing and the call cost as much as the
 * arithmetic (benchmarks/README.md has the rates). On AVX-512 CPUs OpenBLAS's SkylakeX
 * kernels do have a small-matrix path, but the 512-bit variant of this kernel still
 * beats them on products whose B has short rows (a layer's weights of up to 128 float32
 * or float64 outputs). This kernel reads the operands where they lie: each tile of C,
 * 6 rows by 2 vectors (8 or 16 float64, 16 or 32 float32), is 12 vector accumulators,
 * fed by one row of B and six broadcast elements of A per step of k.
 * benchmarks/bench_small_gemm.py compares the two by shape.
 *
 * Every element of C is one chain of fused multiply-adds over p = 0, 1, ..., k-1,
 * starting from 0, then alpha * sum (+ beta * C): its bits do not depend on where the
 * element falls in a tile, on the size of the matrix around it, or on the remainder
 * code paths, nor on the variant: the 256-bit (AVX2 + FMA) and 512-bit (AVX-512F)
 * kernels run the same chains. The caller checks bpf_small_gemm_on().
 */
#ifndef BPFAST_SMALLGEMM_H
#define BPFAST_SMALLGEMM_H

#include <stdlib.h>

#include "_vmath.h"

/* -1: automatic, 0: never, 1: on (tests). Automatic and on agree: on from AVX2 + FMA. */
static int bpf_small_gemm_mode = -1;

/* Whether gemm() may use this kernel: from SIMD level 1 (AVX2 + FMA) on, in its 256-bit
 * variant at level 1 and its 512-bit one at level 2 (the products each wins on are
 * gemm()'s choice: kernel_fits() in _kernels.pyx). */
static inline int bpf_small_gemm_on(void) {
#ifdef BPF_DISPATCH
    int level = bpf_cpu_level();
    if (bpf_small_gemm_mode < 0)
        return level >= 1;
    return bpf_small_gemm_mode == 1 && level >= 1;
#else
    return 0;
#endif
}

static inline int bpf_set_small_gemm(int mode) {
    bpf_small_gemm_mode = mode < 0 ? -1 : mode > 0;
    return bpf_small_gemm_on();
}

#ifdef BPF_DISPATCH
#include <immintrin.h>

/* The vector operations of each type, so that one macro writes both kernels. */
#define BPF_VOPS(X, VT, LANES, SUF, BCAST, MASK_T)                                   \
    BPF_AVX2 BPF_INLINE VT bpf_vzero_##X(void) { return _mm256_setzero_##SUF(); }     \
    BPF_AVX2 BPF_INLINE VT bpf_vset_##X(X##_elem v) { return _mm256_set1_##SUF(v); }  \
    BPF_AVX2 BPF_INLINE VT bpf_vbcast_##X(const X##_elem* p) { return BCAST(p); }     \
    BPF_AVX2 BPF_INLINE VT bpf_vload_##X(const X##_elem* p, int masked, __m256i mask) { \
        return masked ? _mm256_maskload_##SUF(p, mask) : _mm256_loadu_##SUF(p);        \
    }                                                                                \
    BPF_AVX2 BPF_INLINE void bpf_vstore_##X(X##_elem* p, VT v, int masked, __m256i mask) { \
        if (masked) _mm256_maskstore_##SUF(p, mask, v); else _mm256_storeu_##SUF(p, v); \
    }                                                                                \
    BPF_AVX2 BPF_INLINE VT bpf_vfma_##X(VT a, VT b, VT c) { return _mm256_fmadd_##SUF(a, b, c); } \
    BPF_AVX2 BPF_INLINE VT bpf_vmul_##X(VT a, VT b) { return _mm256_mul_##SUF(a, b); } \
    BPF_AVX2 BPF_INLINE VT bpf_vadd_##X(VT a, VT b) { return _mm256_add_##SUF(a, b); } \
    /* The first `count` lanes (1 <= count <= LANES) set. */                         \
    BPF_AVX2 BPF_INLINE __m256i bpf_vmask_##X(ptrdiff_t count) {                     \
        static const MASK_T ones[2 * LANES] = {[0 ... LANES - 1] = -1};               \
        return _mm256_loadu_si256((const __m256i*)(ones + LANES - count));          \
    }

typedef double bpf_sg_d_elem;
typedef float bpf_sg_f_elem;
BPF_VOPS(bpf_sg_d, __m256d, 4, pd, _mm256_broadcast_sd, int64_t)
BPF_VOPS(bpf_sg_f, __m256, 8, ps, _mm256_broadcast_ss, int32_t)

/* The rows of op(A) one pass over the column tiles takes: about this many bytes. */
#define BPF_SG_A_CHUNK (192 * 1024)
/* Rows of B longer than this are read from a copy of each column panel. */
#define BPF_SG_ROW_BYTES 1024

/* This thread's buffer for a column panel of B, of at least `bytes` (kept between calls;
 * NULL if it cannot be had: the kernel then reads B in place, with the same bits). */
static void* bpf_sg_panel(size_t bytes) {
    static __thread void* buffer = NULL;
    static __thread size_t capacity = 0;
    if (bytes > capacity) {
        free(buffer);
        capacity = (bytes + 4095) / 4096 * 4096;
        buffer = aligned_alloc(64, capacity);
        if (buffer == NULL)
            capacity = 0;
    }
    return buffer;
}

/* One tile of C: MR rows (1..6) by NV vectors (1 or 2), the last one masked or not.
 * Called with constant MR, NV, MASKED so that the compiler unrolls it into registers. */
#define BPF_SMALL_GEMM(X, T, VT, LANES, TARGET, MT)                                  \
    TARGET BPF_INLINE void X##_tile(int MR, int NV, int MASKED, int trans_a, ptrdiff_t k, \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc, MT mask) {                                          \
        VT acc[6][2], b[2];                                                          \
        /* op(A)[r, p] is A[r * step_r + p * step_p] */                              \
        ptrdiff_t step_r = trans_a ? 1 : lda, step_p = trans_a ? lda : 1;            \
        for (int r = 0; r < MR; r++)                                                 \
            for (int v = 0; v < NV; v++) acc[r][v] = bpf_vzero_##X();                \
        for (ptrdiff_t p = 0; p < k; p++) {                                          \
            for (int v = 0; v < NV; v++)                                             \
                b[v] = bpf_vload_##X(B + p * ldb + v * LANES, MASKED && v == NV - 1, mask); \
            for (int r = 0; r < MR; r++) {                                           \
                VT a = bpf_vbcast_##X(A + r * step_r + p * step_p);                  \
                for (int v = 0; v < NV; v++) acc[r][v] = bpf_vfma_##X(a, b[v], acc[r][v]); \
            }                                                                        \
        }                                                                            \
        VT va = bpf_vset_##X(alpha), vb = bpf_vset_##X(beta);                        \
        for (int r = 0; r < MR; r++)                                                 \
            for (int v = 0; v < NV; v++) {                                           \
                T* c = C + r * ldc + v * LANES;                                      \
                int masked = MASKED && v == NV - 1;                                  \
                VT x = bpf_vmul_##X(va, acc[r][v]);                                  \
                if (beta != 0)              /* beta == 0 never reads C (BLAS's rule) */ \
                    x = bpf_vadd_##X(x, bpf_vmul_##X(vb, bpf_vload_##X(c, masked, mask))); \
                bpf_vstore_##X(c, x, masked, mask);                                  \
            }                                                                        \
    }                                                                                \
    /* One row of C, 8 full vectors wide: 8 independent chains. */                   \
    TARGET BPF_INLINE void X##_row8(int trans_a, ptrdiff_t k, T alpha, const T* a,     \
            ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta, T* c) {                \
        VT acc[8];                                                                   \
        MT none = bpf_vmask_##X(LANES);                                              \
        ptrdiff_t step_p = trans_a ? lda : 1;                                        \
        for (int v = 0; v < 8; v++) acc[v] = bpf_vzero_##X();                        \
        for (ptrdiff_t p = 0; p < k; p++) {                                          \
            VT x = bpf_vbcast_##X(a + p * step_p);                                   \
            for (int v = 0; v < 8; v++)                                              \
                acc[v] = bpf_vfma_##X(x, bpf_vload_##X(B + p * ldb + v * LANES, 0, none), acc[v]); \
        }                                                                            \
        VT va = bpf_vset_##X(alpha), vb = bpf_vset_##X(beta);                        \
        for (int v = 0; v < 8; v++) {                                                \
            VT x = bpf_vmul_##X(va, acc[v]);                                         \
            if (beta != 0)                                                           \
                x = bpf_vadd_##X(x, bpf_vmul_##X(vb, bpf_vload_##X(c + v * LANES, 0, none))); \
            bpf_vstore_##X(c + v * LANES, x, 0, none);                               \
        }                                                                            \
    }                                                                                \
    TARGET static void X##_gemm(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,    \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc) {                                                   \
        ptrdiff_t step_r = trans_a ? 1 : lda;                                        \
        /* Long rows of B: copy each column panel into contiguous memory first (rows  \
         * far apart share L1 sets), then run every row tile of C over it. */         \
        T* panel = n * (ptrdiff_t)sizeof(T) > BPF_SG_ROW_BYTES && m > 1              \
                   ? (T*)bpf_sg_panel(k * 2 * LANES * sizeof(T)) : NULL;             \
        if (panel != NULL) {                                                         \
            for (ptrdiff_t j = 0; j < n; ) {                                         \
                ptrdiff_t left = n - j, width = left < 2 * LANES ? left : 2 * LANES; \
                int nv = width > LANES ? 2 : 1, masked = width % LANES != 0;          \
                MT mask = bpf_vmask_##X(masked ? width - (nv - 1) * LANES : LANES);   \
                for (ptrdiff_t p = 0; p < k; p++)                                    \
                    for (int v = 0; v < nv; v++) {                                   \
                        int last = masked && v == nv - 1;                            \
                        bpf_vstore_##X(panel + p * 2 * LANES + v * LANES,             \
                            bpf_vload_##X(B + p * ldb + j + v * LANES, last, mask), last, mask); \
                    }                                                                \
                for (ptrdiff_t i = 0; i < m; i += 6) {                               \
                    ptrdiff_t mr = m - i < 6 ? m - i : 6;                            \
                    const T* a = A + i * step_r;                                     \
                    T* c = C + i * ldc + j;                                          \
                    const T* b = panel;                                              \
                    ptrdiff_t b_ld = 2 * LANES;                                      \
                    BPF_TILES(X, (int)mr, nv, masked)                                \
                }                                                                    \
                j += width;                                                          \
            }                                                                        \
            return;                                                                  \
        }                                                                            \
        /* Rows in chunks of about BPF_SG_A_CHUNK bytes of op(A), each chunk through   \
         * every column tile while it is in L2 (the order of tiles cannot change a bit). */ \
        ptrdiff_t chunk = BPF_SG_A_CHUNK / (k * (ptrdiff_t)sizeof(T)) / 6 * 6;         \
        if (chunk < 6) chunk = 6;                                                    \
        /* One row (a prediction of one sample): a tile would have 2 FMA chains, one  \
         * after the other; a row of 8 vectors has 8. */                              \
        ptrdiff_t wide = m == 1 ? n / (8 * LANES) * (8 * LANES) : 0;                  \
        for (ptrdiff_t i = 0; i < m && wide > 0; i++)                                \
            for (ptrdiff_t j = 0; j < wide; j += 8 * LANES)                          \
                X##_row8(trans_a, k, alpha, A + i * step_r, lda, B + j, ldb, beta,   \
                         C + i * ldc + j);                                           \
        for (ptrdiff_t i0 = 0; i0 < m; i0 += chunk) {                                \
            ptrdiff_t i1 = m - i0 < chunk ? m : i0 + chunk;                          \
            MT mask = bpf_vmask_##X(LANES);                                          \
            for (ptrdiff_t j = wide; j < n; ) {                                      \
                /* Columns j.. in 2 vectors, or what is left in 1 or 2, the last masked. */ \
                ptrdiff_t left = n - j, width = left < 2 * LANES ? left : 2 * LANES; \
                int nv = width > LANES ? 2 : 1, masked = width % LANES != 0;          \
                if (masked) mask = bpf_vmask_##X(width - (nv - 1) * LANES);          \
                for (ptrdiff_t i = i0; i < i1; i += 6) {                             \
                    ptrdiff_t mr = i1 - i < 6 ? i1 - i : 6;                          \
                    const T* a = A + i * step_r;                                     \
                    T* c = C + i * ldc + j;                                          \
                    const T* b = B + j;                                              \
                    ptrdiff_t b_ld = ldb;                                            \
                    BPF_TILES(X, (int)mr, nv, masked)                                \
                }                                                                    \
                j += width;                                                          \
            }                                                                        \
        }                                                                            \
    }

/* The call to X##_tile with constant shape arguments for every (rows, vectors, mask). */
#define BPF_TILE(X, MR, NV, MASKED) \
    X##_tile(MR, NV, MASKED, trans_a, k, alpha, a, lda, b, b_ld, beta, c, ldc, mask)
#define BPF_TILE_ROWS(X, mr, NV, MASKED)                                             \
    switch (mr) {                                                                    \
        case 6: BPF_TILE(X, 6, NV, MASKED); break;                                   \
        case 5: BPF_TILE(X, 5, NV, MASKED); break;                                   \
        case 4: BPF_TILE(X, 4, NV, MASKED); break;                                   \
        case 3: BPF_TILE(X, 3, NV, MASKED); break;                                   \
        case 2: BPF_TILE(X, 2, NV, MASKED); break;                                   \
        default: BPF_TILE(X, 1, NV, MASKED); break;                                  \
    }
#define BPF_TILES(X, mr, nv, masked)                                                 \
    if (nv == 2 && !masked) { BPF_TILE_ROWS(X, mr, 2, 0) }                           \
    else if (nv == 2) { BPF_TILE_ROWS(X, mr, 2, 1) }                                 \
    else if (!masked) { BPF_TILE_ROWS(X, mr, 1, 0) }                                 \
    else { BPF_TILE_ROWS(X, mr, 1, 1) }

/* The same operations on AVX-512's 16-float / 8-double vectors, masks in k registers. */
#define BPF_VOPS512(X, VT, LANES, SUF, MT)                                           \
    BPF_AVX512 BPF_INLINE VT bpf_vzero_##X(void) { return _mm512_setzero_##SUF(); }   \
    BPF_AVX512 BPF_INLINE VT bpf_vset_##X(X##_elem v) { return _mm512_set1_##SUF(v); } \
    BPF_AVX512 BPF_INLINE VT bpf_vbcast_##X(const X##_elem* p) { return _mm512_set1_##SUF(*p); } \
    BPF_AVX512 BPF_INLINE VT bpf_vload_##X(const X##_elem* p, int masked, MT mask) {  \
        return masked ? _mm512_maskz_loadu_##SUF(mask, p) : _mm512_loadu_##SUF(p);    \
    }                                                                                \
    BPF_AVX512 BPF_INLINE void bpf_vstore_##X(X##_elem* p, VT v, int masked, MT mask) { \
        if (masked) _mm512_mask_storeu_##SUF(p, mask, v); else _mm512_storeu_##SUF(p, v); \
    }                                                                                \
    BPF_AVX512 BPF_INLINE VT bpf_vfma_##X(VT a, VT b, VT c) { return _mm512_fmadd_##SUF(a, b, c); } \
    BPF_AVX512 BPF_INLINE VT bpf_vmul_##X(VT a, VT b) { return _mm512_mul_##SUF(a, b); } \
    BPF_AVX512 BPF_INLINE VT bpf_vadd_##X(VT a, VT b) { return _mm512_add_##SUF(a, b); } \
    /* The first `count` lanes (1 <= count <= LANES) set. */                         \
    BPF_AVX512 BPF_INLINE MT bpf_vmask_##X(ptrdiff_t count) { return (MT)((1u << count) - 1u); }

typedef double bpf_sg512_d_elem;
typedef float bpf_sg512_f_elem;
BPF_VOPS512(bpf_sg512_d, __m512d, 8, pd, __mmask8)
BPF_VOPS512(bpf_sg512_f, __m512, 16, ps, __mmask16)

BPF_SMALL_GEMM(bpf_sg_d, double, __m256d, 4, BPF_AVX2, __m256i)
BPF_SMALL_GEMM(bpf_sg_f, float, __m256, 8, BPF_AVX2, __m256i)
/* Every element is the same chain of FMAs as in the AVX2 kernel: the same bits. */
BPF_SMALL_GEMM(bpf_sg512_d, double, __m512d, 8, BPF_AVX512, __mmask8)
BPF_SMALL_GEMM(bpf_sg512_f, float, __m512, 16, BPF_AVX512, __mmask16)
#endif

/* The entry points; call only when bpf_small_gemm_on(). */
#ifdef BPF_DISPATCH
#define BPF_SMALL_GEMM_CALL(X)                                                       \
    if (bpf_cpu_level() >= 2)                                                        \
        bpf_sg512_##X##_gemm(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
    else                                                                             \
        bpf_sg_##X##_gemm(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#else
#define BPF_SMALL_GEMM_CALL(X)
#endif
#define BPF_SMALL_GEMM_ENTRY(X, T)                                                   \
    static inline void bpf_small_gemm_##X(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc) {                                                   \
        BPF_SMALL_GEMM_CALL(X)                                                       \
    }
BPF_SMALL_GEMM_ENTRY(d, double)
BPF_SMALL_GEMM_ENTRY(f, float)

#endif
