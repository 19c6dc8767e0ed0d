/* Small matrix products in registers: C := alpha * op(A) @ B + beta * C, row-major,
 * op(A) = A or A.T, for the layers of small networks.
 *
 * Why not BLAS: OpenBLAS's Haswell/Zen kernels (what it runs on an AVX2 CPU) have no
 * small-matrix path, so a 32x64 @ 64x64 product first packs both operands into
 * buffers, and at these sizes the packing and the call cost as much as the
 * arithmetic (benchmarks/README.md has the rates). On AVX-512 CPUs OpenBLAS's SkylakeX
 * kernels do have a small-matrix path, but the 512-bit variant of this kernel still
 * beats or ties them on every product it takes (kernel_fits() in _kernels.pyx). This
 * kernel reads op(A) and B where they lie when B has short rows: each tile of C, up to
 * 6 rows (AVX2) or 12 rows (AVX-512) by 2 vectors (8 or 16 float64, 16 or 32 float32),
 * is 12 or 24 vector accumulators, fed by one row of B and broadcast elements of A per
 * step of k. When B has long rows, its column panels are read from a copy, as BLAS
 * kernels do: made once by the caller (predict's packed weights), which 1-4 rows of C
 * read panel by panel, or per product, with op(A) copied into tiles; one row of C
 * without a copy streams B row after row. benchmarks/bench_small_gemm.py compares the
 * kernel with BLAS by shape.
 *
 * Every element of C is one chain of fused multiply-adds over p = 0, 1, ..., k-1,
 * starting from 0, then alpha * sum (+ beta * C): its bits do not depend on where the
 * element falls in a tile, on the size of the matrix around it, or on the remainder
 * code paths, nor on the variant: the 256-bit (AVX2 + FMA) and 512-bit (AVX-512F)
 * kernels run the same chains. The caller checks bpf_small_gemm_on().
 */
#ifndef BPFAST_SMALLGEMM_H
#define BPFAST_SMALLGEMM_H

#include <pthread.h>
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

/* The rows of the tallest tile (AVX-512's; AVX2's are half as tall): blocks of rows cut
 * at its multiples fill whole tiles at both levels. */
#define BPF_SG_TILE_ROWS 12
static inline ptrdiff_t bpf_small_gemm_tile_rows(void) { return BPF_SG_TILE_ROWS; }

#ifdef BPF_DISPATCH
#include <immintrin.h>

/* The vector operations of each type, so that one macro writes every kernel: the
 * arithmetic (PFX: _mm256 or _mm512), then the masked loads and stores of each width. */
#define BPF_VOPS_ARITH(X, VT, SUF, PFX, TARGET)                                      \
    TARGET BPF_INLINE VT bpf_vzero_##X(void) { return PFX##_setzero_##SUF(); }         \
    TARGET BPF_INLINE VT bpf_vset_##X(X##_elem v) { return PFX##_set1_##SUF(v); }      \
    TARGET BPF_INLINE VT bpf_vbcast_##X(const X##_elem* p) { return PFX##_set1_##SUF(*p); } \
    TARGET BPF_INLINE VT bpf_vfma_##X(VT a, VT b, VT c) { return PFX##_fmadd_##SUF(a, b, c); } \
    TARGET BPF_INLINE VT bpf_vmul_##X(VT a, VT b) { return PFX##_mul_##SUF(a, b); }    \
    TARGET BPF_INLINE VT bpf_vadd_##X(VT a, VT b) { return PFX##_add_##SUF(a, b); }

#define BPF_VOPS(X, VT, LANES, SUF, MASK_T)                                          \
    BPF_VOPS_ARITH(X, VT, SUF, _mm256, BPF_AVX2)                                     \
    BPF_AVX2 BPF_INLINE VT bpf_vload_##X(const X##_elem* p, int masked, __m256i mask) { \
        return masked ? _mm256_maskload_##SUF(p, mask) : _mm256_loadu_##SUF(p);        \
    }                                                                                \
    BPF_AVX2 BPF_INLINE void bpf_vstore_##X(X##_elem* p, VT v, int masked, __m256i mask) { \
        if (masked) _mm256_maskstore_##SUF(p, mask, v); else _mm256_storeu_##SUF(p, v); \
    }                                                                                \
    /* The first `count` lanes (1 <= count <= LANES) set. */                         \
    BPF_AVX2 BPF_INLINE __m256i bpf_vmask_##X(ptrdiff_t count) {                     \
        static const MASK_T ones[2 * LANES] = {[0 ... LANES - 1] = -1};               \
        return _mm256_loadu_si256((const __m256i*)(ones + LANES - count));          \
    }

typedef double bpf_sg_d_elem;
typedef float bpf_sg_f_elem;
BPF_VOPS(bpf_sg_d, __m256d, 4, pd, int64_t)
BPF_VOPS(bpf_sg_f, __m256, 8, ps, int32_t)

#define BPF_SG_NOINLINE __attribute__((noinline))

/* The rows of op(A) one pass over the column tiles takes: about this many bytes. */
#define BPF_SG_A_CHUNK (192 * 1024)
/* Rows of B longer than this are read from a copy of each column panel. */
#define BPF_SG_ROW_BYTES 1024
/* The rows of B (and columns of op(A)) a block of the packed product takes: this many bytes. */
#ifndef BPF_SG_KC_BYTES
#define BPF_SG_KC_BYTES 4096
#endif

/* This thread's buffer for the copies of B and op(A), of at least `bytes`, kept between
 * calls and freed when the thread ends (a server's thread per request must not leave
 * megabytes behind); NULL if it cannot be had: the kernel then reads the operands in
 * place, with the same bits. */
typedef struct { void* data; size_t capacity; } bpf_sg_buffer;
static pthread_key_t bpf_sg_key;
static pthread_once_t bpf_sg_key_once = PTHREAD_ONCE_INIT;

static void bpf_sg_buffer_free(void* p) {
    bpf_sg_buffer* buffer = (bpf_sg_buffer*)p;
    free(buffer->data);
    free(buffer);
}

static void bpf_sg_key_make(void) { pthread_key_create(&bpf_sg_key, bpf_sg_buffer_free); }

static void* bpf_sg_panel(size_t bytes) {
    pthread_once(&bpf_sg_key_once, bpf_sg_key_make);
    bpf_sg_buffer* buffer = (bpf_sg_buffer*)pthread_getspecific(bpf_sg_key);
    if (buffer == NULL) {
        buffer = (bpf_sg_buffer*)calloc(1, sizeof(bpf_sg_buffer));
        if (buffer == NULL || pthread_setspecific(bpf_sg_key, buffer) != 0) {
            free(buffer);
            return NULL;
        }
    }
    if (bytes > buffer->capacity) {
        free(buffer->data);
        buffer->capacity = (bytes + 4095) / 4096 * 4096;
        buffer->data = aligned_alloc(64, buffer->capacity);
        if (buffer->data == NULL)
            buffer->capacity = 0;
    }
    return buffer->data;
}

/* Four rows of A, BPF_SG_PACK4_COLUMNS(T) columns from a (rows lda apart), transposed:
 * out[q * step + r] = a[r * lda + q] (a copy: the bits are A's). */
#define BPF_SG_PACK4_COLUMNS(T) ((ptrdiff_t)(32 / sizeof(T)))
BPF_AVX2 BPF_INLINE void bpf_sg_pack4_float(const float* a, ptrdiff_t lda, float* out,
                                            ptrdiff_t step) {
    __m256 r0 = _mm256_loadu_ps(a), r1 = _mm256_loadu_ps(a + lda);
    __m256 r2 = _mm256_loadu_ps(a + 2 * lda), r3 = _mm256_loadu_ps(a + 3 * lda);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 c0 = _mm256_shuffle_ps(t0, t2, 0x44), c1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 c2 = _mm256_shuffle_ps(t1, t3, 0x44), c3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    _mm_storeu_ps(out, _mm256_castps256_ps128(c0));
    _mm_storeu_ps(out + step, _mm256_castps256_ps128(c1));
    _mm_storeu_ps(out + 2 * step, _mm256_castps256_ps128(c2));
    _mm_storeu_ps(out + 3 * step, _mm256_castps256_ps128(c3));
    _mm_storeu_ps(out + 4 * step, _mm256_extractf128_ps(c0, 1));
    _mm_storeu_ps(out + 5 * step, _mm256_extractf128_ps(c1, 1));
    _mm_storeu_ps(out + 6 * step, _mm256_extractf128_ps(c2, 1));
    _mm_storeu_ps(out + 7 * step, _mm256_extractf128_ps(c3, 1));
}
BPF_AVX2 BPF_INLINE void bpf_sg_pack4_double(const double* a, ptrdiff_t lda, double* out,
                                             ptrdiff_t step) {
    __m256d r0 = _mm256_loadu_pd(a), r1 = _mm256_loadu_pd(a + lda);
    __m256d r2 = _mm256_loadu_pd(a + 2 * lda), r3 = _mm256_loadu_pd(a + 3 * lda);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(out, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(out + step, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(out + 2 * step, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(out + 3 * step, _mm256_permute2f128_pd(t1, t3, 0x31));
}

/* One tile of C: MR rows (1..MRMAX) by NV vectors (1 or 2), the last one masked or not,
 * over k steps. first: the chains start from 0, else from the partial sums in C; last:
 * the chains end here (C := alpha * sum + beta * C), else C keeps the partial sums.
 * Called with constant MR, NV, MASKED so that the compiler unrolls it into registers. */
#define BPF_SMALL_GEMM(X, T, VT, LANES, TARGET, MT, MRMAX, TILES)                    \
    TARGET BPF_INLINE void X##_tile(int MR, int NV, int MASKED, int trans_a, ptrdiff_t k, \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc, MT mask, int first, int last) {                     \
        VT acc[MRMAX][2], b[2];                                                      \
        /* op(A)[r, p] is A[r * step_r + p * step_p] */                              \
        ptrdiff_t step_r = trans_a ? 1 : lda, step_p = trans_a ? lda : 1;            \
        for (int r = 0; r < MR; r++)                                                 \
            for (int v = 0; v < NV; v++)                                             \
                acc[r][v] = first ? bpf_vzero_##X()                                  \
                          : bpf_vload_##X(C + r * ldc + v * LANES, MASKED && v == NV - 1, mask); \
        for (ptrdiff_t p = 0; p < k; p++) {                                          \
            for (int v = 0; v < NV; v++)                                             \
                b[v] = bpf_vload_##X(B + p * ldb + v * LANES, MASKED && v == NV - 1, mask); \
            for (int r = 0; r < MR; r++) {                                           \
                VT a = bpf_vbcast_##X(A + r * step_r + p * step_p);                  \
                for (int v = 0; v < NV; v++) acc[r][v] = bpf_vfma_##X(a, b[v], acc[r][v]); \
            }                                                                        \
        }                                                                            \
        /* alpha and beta made opaque here: broadcast once outside the loops, they held  \
         * vector registers through the FMAs and b[1] went to the stack, a quarter slower \
         * (tests/test_kernel_codegen.py reads the machine code for such spills). */     \
        T alpha_ = alpha, beta_ = beta;                                              \
        __asm__ volatile("" : "+m"(alpha_), "+m"(beta_));                            \
        VT va = bpf_vset_##X(alpha_), vb = bpf_vset_##X(beta_);                      \
        for (int r = 0; r < MR; r++)                                                 \
            for (int v = 0; v < NV; v++) {                                           \
                T* c = C + r * ldc + v * LANES;                                      \
                int masked = MASKED && v == NV - 1;                                  \
                VT x = acc[r][v];                                                    \
                if (last) {                                                          \
                    x = bpf_vmul_##X(va, x);                                         \
                    if (beta != 0)          /* beta == 0 never reads C (BLAS's rule) */ \
                        x = bpf_vadd_##X(x, bpf_vmul_##X(vb, bpf_vload_##X(c, masked, mask))); \
                }                                                                    \
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
    /* One row of C against B with long rows, B read row after row (a column panel's  \
     * rows would lie a page apart): the sums wait in `sums`, each element the same      \
     * chain as in a tile, four steps of k per pass over them. The next pass's rows are  \
     * fetched ahead: each starts a page of its own, where the hardware prefetcher        \
     * starts over (a thread reading half of each row ran 8% slower without). */        \
    TARGET static void X##_row_stream(ptrdiff_t n, ptrdiff_t k, T alpha, const T* a,   \
            ptrdiff_t step_p, const T* B, ptrdiff_t ldb, T beta, T* c, T* sums) {     \
        ptrdiff_t full = n / LANES * LANES;                                          \
        MT none = bpf_vmask_##X(LANES), tail = bpf_vmask_##X(n > full ? n - full : LANES); \
        for (ptrdiff_t j = 0; j < n; j += LANES)                                     \
            bpf_vstore_##X(sums + j, bpf_vzero_##X(), 0, none);                      \
        ptrdiff_t p = 0;                                                             \
        for (; p + 4 <= k; p += 4) {                                                 \
            VT x0 = bpf_vbcast_##X(a + p * step_p), x1 = bpf_vbcast_##X(a + (p + 1) * step_p); \
            VT x2 = bpf_vbcast_##X(a + (p + 2) * step_p), x3 = bpf_vbcast_##X(a + (p + 3) * step_p); \
            const T* b = B + p * ldb;                                                \
            for (ptrdiff_t j = 0; j < n; j += LANES) {                               \
                int part = j >= full;                                                \
                MT m_ = part ? tail : none;                                          \
                VT y = bpf_vload_##X(sums + j, 0, none);                             \
                _mm_prefetch((const char*)(b + 4 * ldb + j), _MM_HINT_T0);           \
                _mm_prefetch((const char*)(b + 5 * ldb + j), _MM_HINT_T0);           \
                _mm_prefetch((const char*)(b + 6 * ldb + j), _MM_HINT_T0);           \
                _mm_prefetch((const char*)(b + 7 * ldb + j), _MM_HINT_T0);           \
                y = bpf_vfma_##X(x0, bpf_vload_##X(b + j, part, m_), y);             \
                y = bpf_vfma_##X(x1, bpf_vload_##X(b + ldb + j, part, m_), y);       \
                y = bpf_vfma_##X(x2, bpf_vload_##X(b + 2 * ldb + j, part, m_), y);   \
                y = bpf_vfma_##X(x3, bpf_vload_##X(b + 3 * ldb + j, part, m_), y);   \
                bpf_vstore_##X(sums + j, y, 0, none);                                \
            }                                                                        \
        }                                                                            \
        for (; p < k; p++) {                                                         \
            VT x0 = bpf_vbcast_##X(a + p * step_p);                                  \
            for (ptrdiff_t j = 0; j < n; j += LANES) {                               \
                int part = j >= full;                                                \
                VT y = bpf_vload_##X(sums + j, 0, none);                             \
                y = bpf_vfma_##X(x0, bpf_vload_##X(B + p * ldb + j, part, part ? tail : none), y); \
                bpf_vstore_##X(sums + j, y, 0, none);                                \
            }                                                                        \
        }                                                                            \
        VT va = bpf_vset_##X(alpha), vb = bpf_vset_##X(beta);                        \
        for (ptrdiff_t j = 0; j < n; j += LANES) {                                   \
            int part = j >= full;                                                    \
            MT m_ = part ? tail : none;                                              \
            VT x = bpf_vmul_##X(va, bpf_vload_##X(sums + j, 0, none));               \
            if (beta != 0)                                                           \
                x = bpf_vadd_##X(x, bpf_vmul_##X(vb, bpf_vload_##X(c + j, part, m_))); \
            bpf_vstore_##X(c + j, x, part, m_);                                      \
        }                                                                            \
    }                                                                                \
    /* Columns j0.. of C, B read in place: rows in chunks of about BPF_SG_A_CHUNK bytes \
     * of op(A), each chunk through every column tile while it is in L2. */             \
    TARGET BPF_INLINE void X##_gemm_rows_body(int trans_a, ptrdiff_t j0, ptrdiff_t m,   \
            ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda, const T* B,  \
            ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {                            \
        ptrdiff_t step_r = trans_a ? 1 : lda;                                        \
        ptrdiff_t chunk = BPF_SG_A_CHUNK / (k * (ptrdiff_t)sizeof(T)) / MRMAX * MRMAX; \
        if (chunk < MRMAX) chunk = MRMAX;                                            \
        int first = 1, last = 1;                                                     \
        for (ptrdiff_t i0 = 0; i0 < m; i0 += chunk) {                                \
            ptrdiff_t i1 = m - i0 < chunk ? m : i0 + chunk;                          \
            for (ptrdiff_t j = j0; j < n; ) {                                        \
                /* Columns j.. in 2 vectors, or what is left in 1 or 2, the last masked. */ \
                ptrdiff_t left = n - j, width = left < 2 * LANES ? left : 2 * LANES; \
                int nv = width > LANES ? 2 : 1, masked = width % LANES != 0;          \
                MT mask = bpf_vmask_##X(masked ? width - (nv - 1) * LANES : LANES);   \
                const T* b = B + j;                                                  \
                ptrdiff_t b_ld = ldb;                                                \
                for (ptrdiff_t i = i0; i < i1; i += MRMAX) {                         \
                    ptrdiff_t mr = i1 - i < MRMAX ? i1 - i : MRMAX;                  \
                    const T* a = A + i * step_r;                                     \
                    T* c = C + i * ldc + j;                                          \
                    TILES(X, (int)mr, nv, masked, k, trans_a, lda)                   \
                }                                                                    \
                j += width;                                                          \
            }                                                                        \
        }                                                                            \
    }                                                                                \
    /* beta == 0 (nearly every product) compiled apart: a tile then skips C's reload, which \
     * counts where k is short (784x64x128 A.T float64: 140 against 115 us). Each copy is   \
     * a function of its own, so that each gets all the registers. */                    \
    TARGET static BPF_SG_NOINLINE void X##_gemm_rows_beta0(int trans_a, ptrdiff_t j0,   \
            ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda,  \
            const T* B, ptrdiff_t ldb, T* C, ptrdiff_t ldc) {                        \
        X##_gemm_rows_body(trans_a, j0, m, n, k, alpha, A, lda, B, ldb, 0, C, ldc);   \
    }                                                                                \
    TARGET static BPF_SG_NOINLINE void X##_gemm_rows_beta(int trans_a, ptrdiff_t j0,    \
            ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda,  \
            const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {                \
        X##_gemm_rows_body(trans_a, j0, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
    }                                                                                \
    TARGET BPF_INLINE void X##_gemm_rows(int trans_a, ptrdiff_t j0, ptrdiff_t m, ptrdiff_t n, \
            ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, \
            T beta, T* C, ptrdiff_t ldc) {                                           \
        if (beta == 0)                                                               \
            X##_gemm_rows_beta0(trans_a, j0, m, n, k, alpha, A, lda, B, ldb, C, ldc); \
        else                                                                         \
            X##_gemm_rows_beta(trans_a, j0, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
    }                                                                                \
    /* Where the block of B's rows from p0 (a multiple of kc) starts in B packed with n \
     * columns: the blocks before it, each its panels of kc rows and one vector apart. */ \
    BPF_INLINE ptrdiff_t X##_packed_block(ptrdiff_t p0, ptrdiff_t kc, ptrdiff_t n) {   \
        const ptrdiff_t panels = (n + 2 * LANES - 1) / (2 * LANES);                 \
        return p0 * panels * 2 * LANES + p0 / kc * panels * LANES;                   \
    }                                                                                \
    /* kb rows of the n columns from B into column panels of 2 vectors, each kb rows   \
     * long and one vector more apart (so that the panels' starts do not share L1 sets). */ \
    TARGET BPF_INLINE void X##_pack_block(ptrdiff_t kb, ptrdiff_t n, const T* B,       \
                                          ptrdiff_t ldb, T* out) {                    \
        const ptrdiff_t P = 2 * LANES;                                               \
        for (ptrdiff_t p = 0; p < kb; p++)                                           \
            for (ptrdiff_t j = 0; j < n; j += LANES) {                               \
                ptrdiff_t w = n - j < LANES ? n - j : LANES;                         \
                MT part = bpf_vmask_##X(w);                                          \
                bpf_vstore_##X(out + j / P * (kb * P + LANES) + p * P + j % P,        \
                               bpf_vload_##X(B + p * ldb + j, w < LANES, part), w < LANES, part); \
            }                                                                        \
    }                                                                                \
    /* `rows` rows and kb columns of op(A) (from A, which points at the first) into   \
     * tiles of MRMAX rows stored column by column: tile t's element (r, p) at         \
     * out[t * MRMAX * kb + p * MRMAX + r]. Rows of A are transposed 4 at a time in   \
     * registers (one element at a time, this copy took 4% of a wide prediction). */   \
    TARGET BPF_INLINE void X##_pack_a(int trans_a, ptrdiff_t rows, ptrdiff_t kb,       \
                                      const T* A, ptrdiff_t lda, T* out) {            \
        const ptrdiff_t W = BPF_SG_PACK4_COLUMNS(T);                                 \
        for (ptrdiff_t t = 0; t < rows; t += MRMAX) {                                \
            ptrdiff_t mr = rows - t < MRMAX ? rows - t : MRMAX;                      \
            T* tile = out + t * kb;                                                  \
            if (trans_a) {      /* op(A)'s rows lie side by side in A's rows */        \
                for (ptrdiff_t p = 0; p < kb; p++)                                   \
                    for (ptrdiff_t r = 0; r < mr; r++)                               \
                        tile[p * MRMAX + r] = A[t + r + p * lda];                    \
                continue;                                                            \
            }                                                                        \
            ptrdiff_t r = 0;                                                         \
            for (; r + 4 <= mr; r += 4) {                                            \
                const T* a = A + (t + r) * lda;                                      \
                ptrdiff_t p = 0;                                                     \
                for (; p + W <= kb; p += W)                                          \
                    bpf_sg_pack4_##T(a + p, lda, tile + p * MRMAX + r, MRMAX);       \
                for (; p < kb; p++)                                                  \
                    for (int q = 0; q < 4; q++)                                      \
                        tile[p * MRMAX + r + q] = a[q * lda + p];                    \
            }                                                                        \
            for (; r < mr; r++)                                                      \
                for (ptrdiff_t p = 0; p < kb; p++)                                   \
                    tile[p * MRMAX + r] = A[(t + r) * lda + p];                      \
        }                                                                            \
    }                                                                                \
    /* B with long rows (a column panel's rows would share few L1 sets), as BLAS      \
     * kernels do: a block of kc rows of B (all its columns when beta == 0, the partial  \
     * sums waiting in C between blocks; one panel of every row otherwise) is copied   \
     * into contiguous column panels of 2 vectors, and each chunk of rows of op(A) into \
     * tiles of MRMAX rows stored column by column (rows of A a power of two apart      \
     * would also share L1 sets); then every tile of C runs from the copies. */          \
    TARGET BPF_INLINE void X##_gemm_packed_body(int trans_a, ptrdiff_t m, ptrdiff_t n,  \
            ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, \
            T beta, T* C, ptrdiff_t ldc, const T* packed, ptrdiff_t packed_cols,       \
            ptrdiff_t col0) {                                                        \
        const ptrdiff_t P = 2 * LANES;                                               \
        ptrdiff_t step_r = trans_a ? 1 : lda, step_p = trans_a ? lda : 1;            \
        ptrdiff_t group = beta == 0 ? (n + P - 1) / P * P : P;                        \
        ptrdiff_t kc = beta == 0 ? BPF_SG_KC_BYTES / (ptrdiff_t)sizeof(T) : k;        \
        if (kc > k) kc = k;                                                          \
        if (beta != 0) packed = NULL;   /* packed as beta == 0 cuts B */              \
        if (packed == NULL) col0 = 0;   /* the copy made here starts at column j0 */  \
        ptrdiff_t chunk = BPF_SG_A_CHUNK / (kc * (ptrdiff_t)sizeof(T)) / MRMAX * MRMAX; \
        if (chunk < MRMAX) chunk = MRMAX;                                            \
        if (chunk > (m + MRMAX - 1) / MRMAX * MRMAX) chunk = (m + MRMAX - 1) / MRMAX * MRMAX; \
        ptrdiff_t b_size = packed == NULL ? (kc * P + LANES) * (group / P) : 0;       \
        T* pack_b = (T*)bpf_sg_panel((b_size + chunk * kc) * sizeof(T));              \
        T* pack_a = pack_b + b_size;                                                 \
        if (pack_b == NULL) {   /* no memory for the copies: in place, the same bits */ \
            X##_gemm_rows(trans_a, 0, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);  \
            return;                                                                  \
        }                                                                            \
        for (ptrdiff_t j0 = 0; j0 < n; j0 += group) {                                \
            ptrdiff_t j1 = n - j0 < group ? n : j0 + group;                          \
            for (ptrdiff_t p0 = 0; p0 < k; p0 += kc) {                               \
                ptrdiff_t kb = k - p0 < kc ? k - p0 : kc;                            \
                int first = p0 == 0, last = p0 + kb == k;                            \
                const T* block = packed == NULL ? pack_b                             \
                               : packed + X##_packed_block(p0, kc, packed_cols);    \
                if (packed == NULL)                                                  \
                    X##_pack_block(kb, j1 - j0, B + p0 * ldb + j0, ldb, pack_b);     \
                for (ptrdiff_t i0 = 0; i0 < m; i0 += chunk) {                        \
                    ptrdiff_t i1 = m - i0 < chunk ? m : i0 + chunk;                  \
                    X##_pack_a(trans_a, i1 - i0, kb, A + i0 * step_r + p0 * step_p, lda, \
                               pack_a);                                              \
                    for (ptrdiff_t j = j0; j < j1; j += P) {                         \
                        ptrdiff_t width = j1 - j < P ? j1 - j : P;                   \
                        int nv = width > LANES ? 2 : 1, masked = width % LANES != 0;  \
                        MT mask = bpf_vmask_##X(masked ? width - (nv - 1) * LANES : LANES); \
                        const T* b = block + (col0 / P + (j - j0) / P) * (kb * P + LANES); \
                        ptrdiff_t b_ld = P;                                          \
                        for (ptrdiff_t i = i0; i < i1; i += MRMAX) {                 \
                            ptrdiff_t mr = i1 - i < MRMAX ? i1 - i : MRMAX;          \
                            const T* a = pack_a + (i - i0) * kb;                     \
                            T* c = C + i * ldc + j;                                  \
                            TILES(X, (int)mr, nv, masked, kb, 1, MRMAX)              \
                        }                                                            \
                    }                                                                \
                }                                                                    \
            }                                                                        \
        }                                                                            \
    }                                                                                \
    /* Compiled apart for beta == 0, as X##_gemm_rows is. */                          \
    TARGET static BPF_SG_NOINLINE void X##_gemm_packed_beta0(int trans_a, ptrdiff_t m,  \
            ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda, const T* B,  \
            ptrdiff_t ldb, T* C, ptrdiff_t ldc, const T* packed, ptrdiff_t packed_cols, \
            ptrdiff_t col0) {                                                        \
        X##_gemm_packed_body(trans_a, m, n, k, alpha, A, lda, B, ldb, 0, C, ldc,      \
                             packed, packed_cols, col0);                             \
    }                                                                                \
    TARGET static BPF_SG_NOINLINE void X##_gemm_packed_beta(int trans_a, ptrdiff_t m,   \
            ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda, const T* B,  \
            ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc, const T* packed,              \
            ptrdiff_t packed_cols, ptrdiff_t col0) {                                 \
        X##_gemm_packed_body(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,   \
                             packed, packed_cols, col0);                             \
    }                                                                                \
    TARGET BPF_INLINE void X##_gemm_packed(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc, const T* packed, ptrdiff_t packed_cols, ptrdiff_t col0) { \
        if (beta == 0)                                                               \
            X##_gemm_packed_beta0(trans_a, m, n, k, alpha, A, lda, B, ldb, C, ldc,    \
                                  packed, packed_cols, col0);                        \
        else                                                                         \
            X##_gemm_packed_beta(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, \
                                 packed, packed_cols, col0);                         \
    }                                                                                \
    /* B (k by n) as X##_gemm_packed copies it with beta == 0, once for many products: \
     * its blocks of rows one after the other, each its column panels. */               \
    static ptrdiff_t X##_packed_size(ptrdiff_t k, ptrdiff_t n) {                     \
        const ptrdiff_t P = 2 * LANES, kc = BPF_SG_KC_BYTES / (ptrdiff_t)sizeof(T);  \
        if (n * (ptrdiff_t)sizeof(T) <= BPF_SG_ROW_BYTES)                            \
            return 0;               /* short rows: read in place, never packed */     \
        return k * ((n + P - 1) / P * P) + (k + kc - 1) / kc * ((n + P - 1) / P) * LANES; \
    }                                                                                \
    TARGET static void X##_pack_b(ptrdiff_t k, ptrdiff_t n, const T* B, ptrdiff_t ldb, \
                                  T* out) {                                          \
        const ptrdiff_t kc = BPF_SG_KC_BYTES / (ptrdiff_t)sizeof(T);                 \
        for (ptrdiff_t p0 = 0; p0 < k; p0 += kc) {                                   \
            ptrdiff_t kb = k - p0 < kc ? k - p0 : kc;                                \
            X##_pack_block(kb, n, B + p0 * ldb, ldb, out + X##_packed_block(p0, kc, n)); \
        }                                                                            \
    }                                                                                \
    /* R rows of C (R = 1..4) from G column panels of B packed by X##_pack_b (panel    \
     * `panel` on): 2GR chains, each element the same chain as in a tile, through every \
     * block of kc rows in registers. Each panel is one stream of contiguous memory,    \
     * which the hardware prefetcher follows from L3 or DRAM (the row stream's rows of B \
     * start a page each), and each element of B read serves all R rows. The last     \
     * panel's padding lanes are summed too and never stored: only C's stores are      \
     * masked, `width` of its columns being this group's. */                          \
    TARGET BPF_INLINE void X##_rows_panels(int R, int G, ptrdiff_t k, T alpha,         \
            const T* A, ptrdiff_t step_r, ptrdiff_t step_p, const T* packed,          \
            ptrdiff_t packed_cols, ptrdiff_t panel, T* C, ptrdiff_t ldc, ptrdiff_t width) { \
        const ptrdiff_t P = 2 * LANES, kc = BPF_SG_KC_BYTES / (ptrdiff_t)sizeof(T);  \
        VT acc[4][2 * BPF_SG_ROW_PANELS];                                            \
        MT none = bpf_vmask_##X(LANES);                                              \
        for (int r = 0; r < R; r++)                                                  \
            for (int v = 0; v < 2 * G; v++) acc[r][v] = bpf_vzero_##X();             \
        for (ptrdiff_t p0 = 0; p0 < k; p0 += kc) {                                   \
            ptrdiff_t kb = k - p0 < kc ? k - p0 : kc, stride = kb * P + LANES;        \
            const T* b = packed + X##_packed_block(p0, kc, packed_cols) + panel * stride; \
            const T* a = A + p0 * step_p;                                            \
            for (ptrdiff_t p = 0; p < kb; p++, b += P, a += step_p) {                \
                VT bv[2 * BPF_SG_ROW_PANELS];                                        \
                for (int g = 0; g < G; g++) {                                        \
                    bv[2 * g] = bpf_vload_##X(b + g * stride, 0, none);              \
                    bv[2 * g + 1] = bpf_vload_##X(b + g * stride + LANES, 0, none);  \
                }                                                                    \
                for (int r = 0; r < R; r++) {                                        \
                    VT x = bpf_vbcast_##X(a + r * step_r);                           \
                    for (int v = 0; v < 2 * G; v++)                                  \
                        acc[r][v] = bpf_vfma_##X(x, bv[v], acc[r][v]);               \
                }                                                                    \
            }                                                                        \
        }                                                                            \
        VT va = bpf_vset_##X(alpha);                                                 \
        for (int r = 0; r < R; r++)                                                  \
            for (int v = 0; v < 2 * G && v * LANES < width; v++) {                   \
                ptrdiff_t left = width - v * LANES;                                  \
                bpf_vstore_##X(C + r * ldc + v * LANES, bpf_vmul_##X(va, acc[r][v]),  \
                               left < LANES, bpf_vmask_##X(left < LANES ? left : LANES)); \
            }                                                                        \
    }                                                                                \
    /* R rows of C (n columns, from col0, a whole panel, of the packed_cols packed),   \
     * beta == 0: groups of G panels (fewer as R grows, for the registers), then what  \
     * is left one panel at a time. */                                               \
    TARGET BPF_INLINE void X##_rows_packed_by(int R, int G, ptrdiff_t n, ptrdiff_t k,  \
            T alpha, const T* A, ptrdiff_t step_r, ptrdiff_t step_p, const T* packed,  \
            ptrdiff_t packed_cols, ptrdiff_t col0, T* C, ptrdiff_t ldc) {            \
        const ptrdiff_t P = 2 * LANES;                                               \
        ptrdiff_t panels = (n + P - 1) / P, q = 0;                                   \
        for (; q + G <= panels; q += G)                                              \
            X##_rows_panels(R, G, k, alpha, A, step_r, step_p, packed, packed_cols,   \
                            col0 / P + q, C + q * P, ldc, n - q * P);                \
        for (; q < panels; q++)                                                      \
            X##_rows_panels(R, 1, k, alpha, A, step_r, step_p, packed, packed_cols,   \
                            col0 / P + q, C + q * P, ldc, n - q * P);                \
    }                                                                                \
    TARGET static BPF_SG_NOINLINE void X##_rows_packed(ptrdiff_t m, ptrdiff_t n,       \
            ptrdiff_t k, T alpha, const T* A, ptrdiff_t step_r, ptrdiff_t step_p,      \
            const T* packed, ptrdiff_t packed_cols, ptrdiff_t col0, T* C, ptrdiff_t ldc) { \
        switch (m) {                                                                 \
            case 1: X##_rows_packed_by(1, BPF_SG_ROW_PANELS, n, k, alpha, A, step_r,  \
                        step_p, packed, packed_cols, col0, C, ldc); break;            \
            case 2: X##_rows_packed_by(2, 2, n, k, alpha, A, step_r, step_p, packed,  \
                        packed_cols, col0, C, ldc); break;                            \
            case 3: X##_rows_packed_by(3, 2, n, k, alpha, A, step_r, step_p, packed,  \
                        packed_cols, col0, C, ldc); break;                            \
            default: X##_rows_packed_by(4, MRMAX >= 12 ? 2 : 1, n, k, alpha, A, step_r, \
                        step_p, packed, packed_cols, col0, C, ldc); break;            \
        }                                                                            \
    }                                                                                \
    /* packed: NULL, or B as X##_pack_b packs its packed_cols columns, of which this    \
     * product's start at col0, a whole panel (the bits are the same either way). */    \
    TARGET static void X##_gemm(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,    \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc, const T* packed, ptrdiff_t packed_cols, ptrdiff_t col0) { \
        if (n * (ptrdiff_t)sizeof(T) > BPF_SG_ROW_BYTES) {                           \
            if (m <= BPF_SG_PACKED_ROWS && packed != NULL && beta == 0) {            \
                X##_rows_packed(m, n, k, alpha, A, trans_a ? 1 : lda, trans_a ? lda : 1, \
                                packed, packed_cols, col0, C, ldc);                  \
                return;                                                              \
            }                                                                        \
            T* sums = m == 1 ? (T*)bpf_sg_panel((n + LANES) * sizeof(T)) : NULL;       \
            if (sums != NULL)                                                        \
                X##_row_stream(n, k, alpha, A, trans_a ? lda : 1, B, ldb, beta, C, sums); \
            else                                                                     \
                X##_gemm_packed(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, \
                                packed, packed_cols, col0);                          \
            return;                                                                  \
        }                                                                            \
        /* One row (a prediction of one sample): a tile would have 2 FMA chains, one  \
         * after the other; a row of 8 vectors has 8. */                              \
        ptrdiff_t wide = m == 1 ? n / (8 * LANES) * (8 * LANES) : 0;                  \
        for (ptrdiff_t j = 0; j < wide; j += 8 * LANES)                              \
            X##_row8(trans_a, k, alpha, A, lda, B + j, ldb, beta, C + j);            \
        X##_gemm_rows(trans_a, wide, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);   \
    }

/* Panels one row reads at once from a packed B: 2 chains each, 8 in all, as many as two
 * FMA units with a latency of 4 keep busy. */
#define BPF_SG_ROW_PANELS 4
/* Up to this many rows read a packed B panel by panel (X##_rows_packed); more run in
 * tiles (their copy of op(A) then pays). */
#define BPF_SG_PACKED_ROWS 4

/* The call to X##_tile with constant shape arguments for every (rows, vectors, mask). */
#define BPF_TILE(X, MR, NV, MASKED, K, TA, LDA) X##_tile(MR, NV, MASKED, TA, K, alpha, a, LDA, \
                                                b, b_ld, beta, c, ldc, mask, first, last)
#define BPF_TILE_ROWS6(X, mr, NV, MASKED, K, TA, LDA)                                         \
    switch (mr) {                                                                    \
        case 6: BPF_TILE(X, 6, NV, MASKED, K, TA, LDA); break;                                \
        case 5: BPF_TILE(X, 5, NV, MASKED, K, TA, LDA); break;                                \
        case 4: BPF_TILE(X, 4, NV, MASKED, K, TA, LDA); break;                                \
        case 3: BPF_TILE(X, 3, NV, MASKED, K, TA, LDA); break;                                \
        case 2: BPF_TILE(X, 2, NV, MASKED, K, TA, LDA); break;                                \
        default: BPF_TILE(X, 1, NV, MASKED, K, TA, LDA); break;                               \
    }
#define BPF_TILE_ROWS12(X, mr, NV, MASKED, K, TA, LDA)                                        \
    switch (mr) {                                                                    \
        case 12: BPF_TILE(X, 12, NV, MASKED, K, TA, LDA); break;                              \
        case 11: BPF_TILE(X, 11, NV, MASKED, K, TA, LDA); break;                              \
        case 10: BPF_TILE(X, 10, NV, MASKED, K, TA, LDA); break;                              \
        case 9: BPF_TILE(X, 9, NV, MASKED, K, TA, LDA); break;                                \
        case 8: BPF_TILE(X, 8, NV, MASKED, K, TA, LDA); break;                                \
        case 7: BPF_TILE(X, 7, NV, MASKED, K, TA, LDA); break;                                \
        default: BPF_TILE_ROWS6(X, mr, NV, MASKED, K, TA, LDA)                                \
    }
#define BPF_TILES_BY(ROWS, X, mr, nv, masked, K, TA, LDA)                           \
    if (nv == 2 && !masked) { ROWS(X, mr, 2, 0, K, TA, LDA) }                        \
    else if (nv == 2) { ROWS(X, mr, 2, 1, K, TA, LDA) }                              \
    else if (!masked) { ROWS(X, mr, 1, 0, K, TA, LDA) }                              \
    else { ROWS(X, mr, 1, 1, K, TA, LDA) }
#define BPF_TILES6(X, mr, nv, masked, K, TA, LDA) \
    BPF_TILES_BY(BPF_TILE_ROWS6, X, mr, nv, masked, K, TA, LDA)
#define BPF_TILES12(X, mr, nv, masked, K, TA, LDA) \
    BPF_TILES_BY(BPF_TILE_ROWS12, X, mr, nv, masked, K, TA, LDA)

/* The same operations on AVX-512's 16-float / 8-double vectors, masks in k registers. */
#define BPF_VOPS512(X, VT, LANES, SUF, MT)                                           \
    BPF_VOPS_ARITH(X, VT, SUF, _mm512, BPF_AVX512)                                   \
    BPF_AVX512 BPF_INLINE VT bpf_vload_##X(const X##_elem* p, int masked, MT mask) {  \
        return masked ? _mm512_maskz_loadu_##SUF(mask, p) : _mm512_loadu_##SUF(p);    \
    }                                                                                \
    BPF_AVX512 BPF_INLINE void bpf_vstore_##X(X##_elem* p, VT v, int masked, MT mask) { \
        if (masked) _mm512_mask_storeu_##SUF(p, mask, v); else _mm512_storeu_##SUF(p, v); \
    }                                                                                \
    /* The first `count` lanes (1 <= count <= LANES) set. */                         \
    BPF_AVX512 BPF_INLINE MT bpf_vmask_##X(ptrdiff_t count) { return (MT)((1u << count) - 1u); }

typedef double bpf_sg512_d_elem;
typedef float bpf_sg512_f_elem;
BPF_VOPS512(bpf_sg512_d, __m512d, 8, pd, __mmask8)
BPF_VOPS512(bpf_sg512_f, __m512, 16, ps, __mmask16)

BPF_SMALL_GEMM(bpf_sg_d, double, __m256d, 4, BPF_AVX2, __m256i, 6, BPF_TILES6)
BPF_SMALL_GEMM(bpf_sg_f, float, __m256, 8, BPF_AVX2, __m256i, 6, BPF_TILES6)
/* Every element is the same chain of FMAs as in the AVX2 kernel: the same bits. */
BPF_SMALL_GEMM(bpf_sg512_d, double, __m512d, 8, BPF_AVX512, __mmask8, BPF_SG_TILE_ROWS, BPF_TILES12)
BPF_SMALL_GEMM(bpf_sg512_f, float, __m512, 16, BPF_AVX512, __mmask16, BPF_SG_TILE_ROWS, BPF_TILES12)
#endif

/* The entry points; call only when bpf_small_gemm_on(). packed: NULL, or B packed by
 * bpf_small_gemm_pack_X at the SIMD level in use now (see X##_gemm). */
#ifdef BPF_DISPATCH
#define BPF_SMALL_GEMM_CALL(X)                                                       \
    if (bpf_cpu_level() >= 2)                                                        \
        bpf_sg512_##X##_gemm(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,  \
                             packed, packed_cols, col0);                             \
    else                                                                             \
        bpf_sg_##X##_gemm(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,     \
                          packed, packed_cols, col0);
#define BPF_SMALL_GEMM_PACK(X)                                                       \
    if (bpf_cpu_level() >= 2) bpf_sg512_##X##_pack_b(k, n, B, ldb, out);              \
    else bpf_sg_##X##_pack_b(k, n, B, ldb, out);
#define BPF_SMALL_GEMM_PACKED_SIZE(X)                                                \
    return bpf_cpu_level() >= 2 ? bpf_sg512_##X##_packed_size(k, n) : bpf_sg_##X##_packed_size(k, n);
#else
#define BPF_SMALL_GEMM_CALL(X)
#define BPF_SMALL_GEMM_PACK(X)
#define BPF_SMALL_GEMM_PACKED_SIZE(X) return 0;
#endif
#define BPF_SMALL_GEMM_ENTRY(X, T)                                                   \
    static inline void bpf_small_gemm_##X(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, \
            T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta,   \
            T* C, ptrdiff_t ldc, const T* packed, ptrdiff_t packed_cols, ptrdiff_t col0) { \
        BPF_SMALL_GEMM_CALL(X)                                                       \
    }                                                                                \
    /* Elements of B (k by n) packed at the level in use now. */                      \
    static inline ptrdiff_t bpf_small_gemm_packed_size_##X(ptrdiff_t k, ptrdiff_t n) { \
        BPF_SMALL_GEMM_PACKED_SIZE(X)                                                \
    }                                                                                \
    static inline void bpf_small_gemm_pack_##X(ptrdiff_t k, ptrdiff_t n, const T* B,  \
                                               ptrdiff_t ldb, T* out) {              \
        BPF_SMALL_GEMM_PACK(X)                                                       \
    }
BPF_SMALL_GEMM_ENTRY(d, double)
BPF_SMALL_GEMM_ENTRY(f, float)

/* Columns of a packed panel at the level in use now: 2 vectors. */
static inline ptrdiff_t bpf_small_gemm_panel(ptrdiff_t item) {
    return (bpf_cpu_level() >= 2 ? 128 : 64) / item;
}

#endif
