/*
 * kern_avx512: AVX-512 (F, DQ, BW, VL) kernels, 16 fp32 lanes per zmm.
 *
 * GEMM TILE: MR = 8 rows x NR = 32 columns of C in 16 zmm accumulators
 * (8 rows x 2 vectors). Per k step: two aligned 64-byte loads of the packed
 * W panel (its 32 weights for this k are contiguous), then for each row one
 * broadcast of A[r][t] feeding two FMAs. That is 16 FMAs for 2 loads + 8
 * broadcasts, so the loop is bound by the FMA pipes, not by loads: Zen 4
 * executes one 512-bit FMA per cycle (two 256-bit halves) and two loads, and
 * 16 independent accumulators cover the 4-cycle FMA latency four times over.
 * 32 registers hold 16 accumulators + 2 W vectors + broadcasts with no
 * spills (the inner loop compiles to exactly 2 loads, 8 vbroadcastss and 16
 * vfmadd231ps). A 12 x 32 tile measured ~6% slower on Zen 4 (the FMA pipe
 * is already the limit; more A streams) and makes more edge work for small
 * m. Rows 1..8 are instantiated separately so the compiler keeps every
 * accumulator in a register; column edges (n % 32) use AVX-512 masks.
 * KC = 384: BERT's k = 384 is one block, k = 1536 four. The blocking around
 * the tile is in kern.c.
 *
 * MEASURED (bench_kern, 2-core Zen 4 VM at ~3.7 GHz, FMA peak 117 GFLOP/s
 * per core): 88-95% of peak at m = 4096 for the four MiniLM shapes, 91-98%
 * at m = 12, on one thread and on two. m = 1 reaches only ~40%: two
 * accumulator chains cannot hide the FMA latency (a query has >= 3 tokens).
 * A software prefetch of W (which helps the AVX2 tile) did not help here.
 *
 * EPILOGUE (last k block only): bias add, GELU, residual add and the masked
 * store run on the tile's 8 x 32 results from a 1 KiB stack copy, in one
 * non-inlined routine shared by all row counts, to keep the hot tile small.
 *
 * VECTOR MATH (constants and their derivation in kern_internal.h):
 *   exp:  Cody-Waite reduction to |r| <= ln2/2, Taylor to r^7, vscalefps for
 *         2^n. Inputs below -87.34 give 0 (no denormals: they would slow the
 *         P·V product), NaN propagates. Measured max relative error 7.7e-8
 *         (< 1 ulp) on [-87, 88] (tests/test_kern.c prints it).
 *   erfc: for z >= 0, erfc(z) = P8(t) * exp(-z²), t = 1/(1 + 0.42 z)
 *         (our fit, kern_internal.h).
 *   erf:  sign(x) (1 - erfc(|x|)), and the Maclaurin series below |x| = 0.5;
 *         measured max abs error 1.6e-7 on [-10, 10], max relative error
 *         1.6e-7 for |x| < 0.5.
 *   GELU: measured max abs error 3.8e-7 on [-8, 8], which is the rounding of
 *         the float result itself (glibc's erfcf gives the same).
 *   GELU: 0.5 x (1 + erf(x/√2)) = 0.5 x (2 - erfc(z)) for z >= 0 and
 *         0.5 x erfc(-z) for z < 0, so the negative tail keeps its relative
 *         precision instead of cancelling in 1 + erf.
 * Softmax, layernorm, dot and axpy are the scalar algorithms vectorized, with
 * masked tails.
 *
 * INT8 TILE (AVX-512 VNNI; arithmetic and layout in kern_internal.h):
 * MR8 = 8 rows x 32 columns in 16 zmm int32 accumulators, the fp32 tile's
 * shape. Per group of 4 k: two 64-byte loads of the packed panel (32
 * channels x 4 int8), then per row one 4-byte broadcast of the quantized A
 * (stored as Aq + 128, u8) feeding two vpdpbusd. Each vpdpbusd does 64
 * multiply-adds where a vfmadd231ps does 16, for the same 16 : 10
 * arithmetic : load ratio as the fp32 tile. All of k stays in the
 * accumulators (exact int32, no k blocks). At the end: acc - 128·colsum (the
 * unsigned-A correction), then a non-inlined epilogue shared by all row
 * counts converts to fp32 and applies sa·sw, bias, GELU and the residual,
 * exactly as the scalar gemm_i8 orders them.
 * quant_i8: per row, max|x| (exact in any order), inv = 127/max in scalar
 * float (as the scalar reference), vcvtps2dq (round to nearest even, the
 * default MXCSR mode, as lrintf), clamp to ±127, +128, vpmovdb.
 */
#include "kern_internal.h"

#include <immintrin.h>
#include <math.h>

#define MR 8
#define NR 32
#define KC 384

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------ vector math */

ALWAYS_INLINE __m512 v_exp(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    /* max/min with x second: a NaN x passes through unchanged */
    __m512 xc =
        _mm512_min_ps(_mm512_set1_ps(NR_EXP_MAX), _mm512_max_ps(_mm512_set1_ps(NR_EXP_MIN), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(NR_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(NR_EXP_LN2_HI), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(NR_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, one);
    p = _mm512_fmadd_ps(p, r, one);
    __m512 y = _mm512_scalef_ps(p, n);
    /* x < NR_EXP_MIN (and -inf) -> 0; NaN compares false and stays NaN */
    __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(NR_EXP_MIN), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(y, tiny, _mm512_setzero_ps());
}

/* erfc(z) for z >= 0 (or NaN) */
ALWAYS_INLINE __m512 v_erfc_pos(__m512 z)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(NR_ERFC_P), z, one));
    __m512 p = _mm512_set1_ps(NR_ERFC_C8);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C7));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C6));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C5));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C4));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C3));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C2));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C1));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(NR_ERFC_C0));
    return _mm512_mul_ps(p, v_exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z))));
}

ALWAYS_INLINE __m512 v_erf(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 ax = _mm512_andnot_ps(sign, x), x2 = _mm512_mul_ps(x, x);
    __m512 q = v_erfc_pos(ax);
    __m512 r = _mm512_sub_ps(_mm512_set1_ps(1.0f), q);
    __m512 s = _mm512_set1_ps(NR_ERF_T6);
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(NR_ERF_T5));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(NR_ERF_T4));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(NR_ERF_T3));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(NR_ERF_T2));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(NR_ERF_T1));
    s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(NR_ERF_T0));
    __mmask16 small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(NR_ERF_TMAX), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(_mm512_or_ps(r, _mm512_and_ps(sign, x)), small, _mm512_mul_ps(s, x));
}

ALWAYS_INLINE __m512 v_gelu(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps((float)M_SQRT1_2));
    __m512 q = v_erfc_pos(_mm512_andnot_ps(sign, z));
    __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 opq = _mm512_mask_mov_ps(_mm512_sub_ps(_mm512_set1_ps(2.0f), q), neg, q);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), opq);
}

ALWAYS_INLINE __mmask16 tail_mask(int n)
{
    return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
}

/* ------------------------------------------------------------ GEMM tile */

/* Bias, activation, residual and store for rows x cols results in buf[r][NR]. */
static __attribute__((noinline)) void tile_epilogue(const float *buf, int rows, int cols,
                                                    const float *bias, int flags, float *c,
                                                    size_t ldc)
{
    const __mmask16 m0 = tail_mask(cols), m1 = tail_mask(cols - 16 > 0 ? cols - 16 : 0);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();

    if (bias) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    for (int r = 0; r < rows; r++, c += ldc, buf += NR) {
        __m512 v0 = _mm512_add_ps(_mm512_load_ps(buf), b0);
        __m512 v1 = _mm512_add_ps(_mm512_load_ps(buf + 16), b1);
        if (flags & NR_TILE_GELU) {
            v0 = v_gelu(v0);
            v1 = v_gelu(v1);
        }
        if (flags & NR_TILE_ACC) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

ALWAYS_INLINE void tile_rows(const int R, const float *a, size_t lda, const float *w, size_t ldw,
                             int kc, float *c, size_t ldc, int cols, const float *bias, int flags)
{
    const __mmask16 m0 = tail_mask(cols), m1 = tail_mask(cols - 16 > 0 ? cols - 16 : 0);
    __m512 acc[MR][2];

#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (flags & NR_TILE_LOADC) {
            acc[r][0] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
            acc[r][1] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
        } else {
            acc[r][0] = _mm512_setzero_ps();
            acc[r][1] = _mm512_setzero_ps();
        }
    }
    for (int t = 0; t < kc; t++, w += ldw) {
        const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m512 av = _mm512_set1_ps(a[r * lda + t]);
            acc[r][0] = _mm512_fmadd_ps(av, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, w1, acc[r][1]);
        }
    }
    if (flags & NR_TILE_LAST) {
        float buf[MR * NR] __attribute__((aligned(64)));
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            _mm512_store_ps(buf + r * NR, acc[r][0]);
            _mm512_store_ps(buf + r * NR + 16, acc[r][1]);
        }
        tile_epilogue(buf, R, cols, bias, flags, c, ldc);
        return;
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

static void tile_run(const float *a, size_t lda, const float *w, size_t ldw, int kc, float *c,
                     size_t ldc, int rows, int cols, const float *bias, int flags)
{
    switch (rows) {
    case 8:
        tile_rows(8, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    case 7:
        tile_rows(7, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    case 6:
        tile_rows(6, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    case 5:
        tile_rows(5, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    case 4:
        tile_rows(4, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    case 3:
        tile_rows(3, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    case 2:
        tile_rows(2, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    default:
        tile_rows(1, a, lda, w, ldw, kc, c, ldc, cols, bias, flags);
        break;
    }
}

/* ------------------------------------------------------------ int8 GEMM tile */

#define MR8 8

static __attribute__((noinline)) void tile8_epilogue(const int32_t *buf, int rows, int cols,
                                                     const float *sa, const float *sw,
                                                     const float *bias, int flags, float *c,
                                                     size_t ldc)
{
    const __mmask16 m0 = tail_mask(cols), m1 = tail_mask(cols - 16 > 0 ? cols - 16 : 0);
    const __m512 s0 = _mm512_loadu_ps(sw), s1 = _mm512_loadu_ps(sw + 16);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();

    if (bias) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    for (int r = 0; r < rows; r++, c += ldc, buf += NR) {
        const __m512 a = _mm512_set1_ps(sa[r]);
        __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(buf)), a);
        __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(buf + 16)), a);
        v0 = _mm512_fmadd_ps(v0, s0, b0);
        v1 = _mm512_fmadd_ps(v1, s1, b1);
        if (flags & NR_TILE8_GELU) {
            v0 = v_gelu(v0);
            v1 = v_gelu(v1);
        }
        if (flags & NR_TILE8_ACC) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), v1);
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

ALWAYS_INLINE __m512i bcast4(const uint8_t *p)
{
    int32_t x;
    __builtin_memcpy(&x, p, 4);
    return _mm512_set1_epi32(x);
}

ALWAYS_INLINE void tile8_rows(const int R, const uint8_t *q, size_t ldq, const float *sa,
                              const int8_t *w, int kg, const int32_t *colsum, const float *sw,
                              const float *bias, float *c, size_t ldc, int cols, int flags)
{
    __m512i acc[MR8][2];
    int32_t buf[MR8 * NR] __attribute__((aligned(64)));

#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        acc[r][0] = _mm512_setzero_si512();
        acc[r][1] = _mm512_setzero_si512();
    }
    for (int g = 0; g < kg; g++, w += 4 * NR) {
        const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m512i av = bcast4(q + r * ldq + 4 * (size_t)g);
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, w0);
            acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, w1);
        }
    }
    {
        /* undo the +128 of A: sum (a + 128) w = sum a w + 128 colsum */
        const __m512i k0 = _mm512_slli_epi32(_mm512_loadu_si512(colsum), 7);
        const __m512i k1 = _mm512_slli_epi32(_mm512_loadu_si512(colsum + 16), 7);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            _mm512_store_si512(buf + r * NR, _mm512_sub_epi32(acc[r][0], k0));
            _mm512_store_si512(buf + r * NR + 16, _mm512_sub_epi32(acc[r][1], k1));
        }
    }
    tile8_epilogue(buf, R, cols, sa, sw, bias, flags, c, ldc);
}

static void tile8_run(const uint8_t *q, size_t ldq, const float *sa, const int8_t *w, int kg,
                      const int32_t *colsum, const float *sw, const float *bias, float *c,
                      size_t ldc, int rows, int cols, int flags)
{
    switch (rows) {
    case 8:
        tile8_rows(8, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    case 7:
        tile8_rows(7, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    case 6:
        tile8_rows(6, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    case 5:
        tile8_rows(5, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    case 4:
        tile8_rows(4, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    case 3:
        tile8_rows(3, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    case 2:
        tile8_rows(2, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    default:
        tile8_rows(1, q, ldq, sa, w, kg, colsum, sw, bias, c, ldc, cols, flags);
        break;
    }
}

static const struct nr_kern_tile_i8 avx512_tile_i8 = {
    .mr = MR8, .a_bytes = 512 * 1024, .run = tile8_run};

static void avx512_gemm_i8(const uint8_t *q, int ldq, const float *sa, const struct nr_pw8 *W,
                           const float *bias, float *C, int ldc, int m, int j0, int j1, int act,
                           int accumulate)
{
    nr_kern_gemm_i8_tiled(&avx512_tile_i8, q, ldq, sa, W, bias, C, ldc, m, j0, j1, act, accumulate);
}

/* A[t] * smooth_inv[t] (or A[t]) for the lanes in mt, 0 elsewhere */
ALWAYS_INLINE __m512 quant_in(const float *a, const float *si, int t, __mmask16 mt)
{
    __m512 x = _mm512_maskz_loadu_ps(mt, a + t);
    return si ? _mm512_mul_ps(x, _mm512_maskz_loadu_ps(mt, si + t)) : x;
}

static void avx512_quant_i8(const float *A, int lda, int m, int k, const float *smooth_inv,
                            uint8_t *q, int ldq, float *sa)
{
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    const __m512i bias = _mm512_set1_epi32(128);

    for (int i = 0; i < m; i++) {
        const float *a = A + (size_t)i * lda;
        uint8_t *d = q + (size_t)i * ldq;
        __m512 mx = _mm512_setzero_ps();
        float amax, inv;

        for (int t = 0; t < k; t += 16)
            mx = _mm512_max_ps(mx, _mm512_abs_ps(quant_in(a, smooth_inv, t, tail_mask(k - t))));
        amax = _mm512_reduce_max_ps(mx);
        inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        const __m512 vinv = _mm512_set1_ps(inv);
        for (int t = 0; t < k; t += 16) {
            const __mmask16 mt = tail_mask(k - t);
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(quant_in(a, smooth_inv, t, mt), vinv));
            v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), bias);
            _mm_mask_storeu_epi8(d + t, mt, _mm512_cvtepi32_epi8(v));
        }
        for (int t = k; t < (k + 3) / 4 * 4; t++)
            d[t] = 128; /* the quantized zero */
        sa[i] = amax / 127.0f;
    }
}

static const struct nr_kern_tile avx512_tile = {
    .mr = MR, .nr = NR, .kc = KC, .a_bytes = 512 * 1024, .run = tile_run};

static int avx512_pack(struct nr_pw *pw, const float *w, int n, int k)
{
    return nr_kern_pack_panels(pw, w, n, k, NR);
}

static void avx512_gemm(const float *A, int lda, const struct nr_pw *W, const float *bias, float *C,
                        int ldc, int m, int j0, int j1, int act, int accumulate)
{
    nr_kern_gemm_tiled(&avx512_tile, A, lda, W, bias, C, ldc, m, j0, j1, act, accumulate);
}

/* ------------------------------------------------------------ vector ops */

static float avx512_dot(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;

    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void avx512_axpy(float *y, float a, const float *x, int n)
{
    const __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v =
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

static void avx512_layernorm(float *x, int rows, int dim, const float *g, const float *b, float eps)
{
    if (dim <= 0)
        return;
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * dim;
        const __m512 shift = _mm512_set1_ps(v[0]);
        __m512 s = _mm512_setzero_ps(), sd = _mm512_setzero_ps(), sd2 = _mm512_setzero_ps();

        for (int i = 0; i < dim; i += 16) {
            __mmask16 m = tail_mask(dim - i);
            s = _mm512_add_ps(s, _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, v + i), shift));
        }
        /* mean - shift; see kern_scalar.c for why everything stays shifted */
        const __m512 vm = _mm512_set1_ps(_mm512_reduce_add_ps(s) / (float)dim);
        for (int i = 0; i < dim; i += 16) {
            __mmask16 m = tail_mask(dim - i);
            __m512 d =
                _mm512_maskz_sub_ps(m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + i), shift), vm);
            sd = _mm512_add_ps(sd, d);
            sd2 = _mm512_fmadd_ps(d, d, sd2);
        }
        const float tsd = _mm512_reduce_add_ps(sd);
        float var = (_mm512_reduce_add_ps(sd2) - tsd * tsd / (float)dim) / (float)dim;
        if (var < 0.0f)
            var = 0.0f;
        const __m512 rstd = _mm512_set1_ps(1.0f / __builtin_sqrtf(var + eps));
        for (int i = 0; i < dim; i += 16) {
            __mmask16 m = tail_mask(dim - i);
            __m512 d = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + i), shift), vm);
            d = _mm512_mul_ps(d, rstd);
            __m512 y = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, g + i),
                                       _mm512_maskz_loadu_ps(m, b + i));
            _mm512_mask_storeu_ps(v + i, m, y);
        }
    }
}

static void avx512_softmax(float *x, int n)
{
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 mx = ninf, sum = _mm512_setzero_ps();

    for (int i = 0; i < n; i += 16)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = v_exp(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, m, x + i), vmax));
        e = _mm512_maskz_mov_ps(m, e);
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(x + i, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

static void avx512_exp(float *x, int n)
{
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, v_exp(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void avx512_erf(float *x, int n)
{
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, v_erf(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void avx512_gelu(float *x, int n)
{
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, v_gelu(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

const struct nr_kern_ops nr_kern_avx512_ops = {
    .name = "avx512",
    .pack = avx512_pack,
    .gemm = avx512_gemm,
    .nblock = NR,
    .dot = avx512_dot,
    .axpy = avx512_axpy,
    .layernorm = avx512_layernorm,
    .softmax = avx512_softmax,
    .exp = avx512_exp,
    .erf = avx512_erf,
    .gelu = avx512_gelu,
    .tile = &avx512_tile,
    .quant_i8 = avx512_quant_i8,
    .gemm_i8 = avx512_gemm_i8,
};
