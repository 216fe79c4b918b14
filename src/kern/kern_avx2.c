/*
 * kern_avx2: AVX2 + FMA kernels, 8 fp32 lanes per ymm.
 *
 * GEMM TILE: MR = 6 rows x NR = 16 columns of C in 12 ymm accumulators (the
 * classic 6x16 shape for 16 registers: 12 accumulators + 2 W vectors + 1
 * broadcast). Per k step: two loads of the packed W panel (16 contiguous
 * weights), six broadcasts of A, twelve FMAs. With two 256-bit FMA pipes of
 * latency 4, at least 8 independent accumulators are needed to stay
 * throughput-bound; 12 give slack. KC = 384 (a 24 KiB panel slice). Rows
 * 1..6 are separate instantiations (accumulators stay in registers); column
 * edges (n % 16) go through a zero-padded buffer, since masked moves are
 * slow on AMD and only edge tiles need them. Measured on Zen 4 (bench_kern):
 * 84-93% of the FMA peak at m = 4096, 85-96% at m = 12. The blocking
 * around the tile is in kern.c.
 *
 * PREFETCH: each k step also prefetches the W line 64 steps (4 KiB) ahead.
 * For small m (a 12-token query) W streams from DRAM and the hardware
 * prefetchers alone left this tile at ~8 GB/s; with it the 6-layer query
 * (bench_kern, Zen 4) went from 5.1 to 3.6 ms on one core, 2.5 to 1.75 ms
 * on two. (The avx512 tile, two lines per step, streams at full speed
 * without it, and got slightly slower with it.) Prefetches never fault, so
 * running past the end of the panel is harmless.
 *
 * EPILOGUE (last k block): bias, GELU, residual add and store, from a stack
 * copy of the tile, in one non-inlined routine.
 *
 * VECTOR MATH: the same algorithms and constants as kern_avx512.c
 * (kern_internal.h), with 2^n built in the exponent field
 * ((n + 127) << 23; n is in [-126, 127] after clamping) instead of vscalefps.
 * Measured errors are printed by tests/test_kern.c.
 */
#include "kern_internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define MR      6
#define NR      16
#define KC      384
#define PF_DIST 64 /* k steps (64 B each) between the W prefetch and its use */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------ vector math */

ALWAYS_INLINE __m256 v_exp(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    /* max/min with x second: a NaN x passes through unchanged */
    __m256 xc =
        _mm256_min_ps(_mm256_set1_ps(NR_EXP_MAX), _mm256_max_ps(_mm256_set1_ps(NR_EXP_MIN), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(NR_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(NR_EXP_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(NR_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, one);
    p = _mm256_fmadd_ps(p, r, one);
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    /* x < NR_EXP_MIN (and -inf) -> 0; NaN compares false and stays NaN */
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(NR_EXP_MIN), _CMP_LT_OQ);
    return _mm256_andnot_ps(tiny, y);
}

/* erfc(z) for z >= 0 (or NaN) */
ALWAYS_INLINE __m256 v_erfc_pos(__m256 z)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(NR_ERFC_P), z, one));
    __m256 p = _mm256_set1_ps(NR_ERFC_C8);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C7));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C6));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C5));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C4));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C3));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C2));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C1));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(NR_ERFC_C0));
    return _mm256_mul_ps(p, v_exp(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z))));
}

ALWAYS_INLINE __m256 v_erf(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 ax = _mm256_andnot_ps(sign, x), x2 = _mm256_mul_ps(x, x);
    __m256 q = v_erfc_pos(ax);
    __m256 r = _mm256_sub_ps(_mm256_set1_ps(1.0f), q);
    __m256 s = _mm256_set1_ps(NR_ERF_T6);
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(NR_ERF_T5));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(NR_ERF_T4));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(NR_ERF_T3));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(NR_ERF_T2));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(NR_ERF_T1));
    s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(NR_ERF_T0));
    __m256 small = _mm256_cmp_ps(ax, _mm256_set1_ps(NR_ERF_TMAX), _CMP_LT_OQ);
    return _mm256_blendv_ps(_mm256_or_ps(r, _mm256_and_ps(sign, x)), _mm256_mul_ps(s, x), small);
}

ALWAYS_INLINE __m256 v_gelu(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps((float)M_SQRT1_2));
    __m256 q = v_erfc_pos(_mm256_andnot_ps(sign, z));
    __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 opq = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), q), q, neg);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), opq);
}

/* Lanes [0, n) set (n clamped to [0, 8]). */
ALWAYS_INLINE __m256i tail_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ------------------------------------------------------------ GEMM tile */

/* Bias, activation, residual and store for rows x cols results in buf[r][NR]. */
static __attribute__((noinline)) void
tile_epilogue(float *buf, int rows, int cols, const float *bias, int flags, float *c, size_t ldc)
{
    float bpad[NR] __attribute__((aligned(32))) = {0};
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();

    if (bias) {
        memcpy(bpad, bias, (size_t)cols * sizeof *bias);
        b0 = _mm256_load_ps(bpad);
        b1 = _mm256_load_ps(bpad + 8);
    }
    for (int r = 0; r < rows; r++, c += ldc, buf += NR) {
        __m256 v0 = _mm256_add_ps(_mm256_load_ps(buf), b0);
        __m256 v1 = _mm256_add_ps(_mm256_load_ps(buf + 8), b1);
        if (flags & NR_TILE_GELU) {
            v0 = v_gelu(v0);
            v1 = v_gelu(v1);
        }
        if (cols == NR) {
            if (flags & NR_TILE_ACC) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
            }
            _mm256_storeu_ps(c, v0);
            _mm256_storeu_ps(c + 8, v1);
        } else {
            _mm256_store_ps(buf, v0);
            _mm256_store_ps(buf + 8, v1);
            for (int j = 0; j < cols; j++)
                c[j] = flags & NR_TILE_ACC ? buf[j] + c[j] : buf[j];
        }
    }
}

ALWAYS_INLINE void tile_rows(const int R, const float *a, size_t lda, const float *w, size_t ldw,
                             int kc, float *c, size_t ldc, int cols, const float *bias, int flags)
{
    const __m256i m0 = tail_mask(cols), m1 = tail_mask(cols - 8);
    __m256 acc[MR][2];

#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        if (!(flags & NR_TILE_LOADC)) {
            acc[r][0] = _mm256_setzero_ps();
            acc[r][1] = _mm256_setzero_ps();
        } else if (cols == NR) {
            acc[r][0] = _mm256_loadu_ps(c + r * ldc);
            acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
        } else {
            acc[r][0] = _mm256_maskload_ps(c + r * ldc, m0);
            acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, m1);
        }
    }
    for (int t = 0; t < kc; t++, w += ldw) {
        const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
        _mm_prefetch((const char *)(w + PF_DIST * ldw), _MM_HINT_T0);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * lda + t);
            acc[r][0] = _mm256_fmadd_ps(av, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, w1, acc[r][1]);
        }
    }
    if (flags & NR_TILE_LAST) {
        float buf[MR * NR] __attribute__((aligned(32)));
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            _mm256_store_ps(buf + r * NR, acc[r][0]);
            _mm256_store_ps(buf + r * NR + 8, acc[r][1]);
        }
        tile_epilogue(buf, R, cols, bias, flags, c, ldc);
        return;
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        if (cols == NR) {
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
            _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
        }
    }
}

static void tile_run(const float *a, size_t lda, const float *w, size_t ldw, int kc, float *c,
                     size_t ldc, int rows, int cols, const float *bias, int flags)
{
    switch (rows) {
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

static const struct nr_kern_tile avx2_tile = {
    .mr = MR, .nr = NR, .kc = KC, .a_bytes = 512 * 1024, .run = tile_run};

static int avx2_pack(struct nr_pw *pw, const float *w, int n, int k)
{
    return nr_kern_pack_panels(pw, w, n, k, NR);
}

static void avx2_gemm(const float *A, int lda, const struct nr_pw *W, const float *bias, float *C,
                      int ldc, int m, int j0, int j1, int act, int accumulate)
{
    nr_kern_gemm_tiled(&avx2_tile, A, lda, W, bias, C, ldc, m, j0, j1, act, accumulate);
}

/* ------------------------------------------------------------ vector ops */

ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ALWAYS_INLINE float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float avx2_dot(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    float s;

    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= n) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        i += 8;
    }
    s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void avx2_axpy(float *y, float a, const float *x, int n)
{
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void avx2_layernorm(float *x, int rows, int dim, const float *g, const float *b, float eps)
{
    if (dim <= 0)
        return;
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * dim;
        const float x0 = v[0];
        const __m256 shift = _mm256_set1_ps(x0);
        __m256 vs = _mm256_setzero_ps(), vsd = _mm256_setzero_ps(), vsd2 = _mm256_setzero_ps();
        float s, sd, sd2;
        int i;

        for (i = 0; i + 8 <= dim; i += 8)
            vs = _mm256_add_ps(vs, _mm256_sub_ps(_mm256_loadu_ps(v + i), shift));
        s = hsum(vs);
        for (; i < dim; i++)
            s += v[i] - x0;
        /* mean - x0; see kern_scalar.c for why everything stays shifted */
        const float mean = s / (float)dim;
        const __m256 vm = _mm256_set1_ps(mean);
        for (i = 0; i + 8 <= dim; i += 8) {
            __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i), shift), vm);
            vsd = _mm256_add_ps(vsd, d);
            vsd2 = _mm256_fmadd_ps(d, d, vsd2);
        }
        sd = hsum(vsd);
        sd2 = hsum(vsd2);
        for (; i < dim; i++) {
            float d = (v[i] - x0) - mean;
            sd += d;
            sd2 += d * d;
        }
        float var = (sd2 - sd * sd / (float)dim) / (float)dim;
        if (var < 0.0f)
            var = 0.0f;
        const float rstd = 1.0f / __builtin_sqrtf(var + eps);
        const __m256 vr = _mm256_set1_ps(rstd);
        for (i = 0; i + 8 <= dim; i += 8) {
            __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i), shift), vm);
            d = _mm256_mul_ps(d, vr);
            _mm256_storeu_ps(v + i,
                             _mm256_fmadd_ps(d, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
        }
        for (; i < dim; i++)
            v[i] = ((v[i] - x0) - mean) * rstd * g[i] + b[i];
    }
}

static void avx2_softmax(float *x, int n)
{
    __m256 vmx = _mm256_set1_ps(-__builtin_inff()), vsum = _mm256_setzero_ps();
    float mx, sum;
    int i;

    for (i = 0; i + 8 <= n; i += 8)
        vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(x + i));
    mx = hmax(vmx);
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        vsum = _mm256_add_ps(vsum, e);
        _mm256_storeu_ps(x + i, e);
    }
    if (i < n) {
        /* tail through a padded buffer so it uses the same exp */
        float tmp[8] __attribute__((aligned(32)));
        int rest = n - i;
        for (int j = 0; j < 8; j++)
            tmp[j] = j < rest ? x[i + j] - mx : -__builtin_inff();
        __m256 e = v_exp(_mm256_load_ps(tmp));
        vsum = _mm256_add_ps(vsum, e);
        _mm256_store_ps(tmp, e);
        memcpy(x + i, tmp, (size_t)rest * sizeof *x);
    }
    sum = hsum(vsum);
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++)
        x[i] *= 1.0f / sum;
}

/* Apply a vector function to x[0..n) in place, the tail via a padded buffer. */
#define MAP_INPLACE(fn, x, n)                                                                      \
    do {                                                                                           \
        int i_ = 0;                                                                                \
        for (; i_ + 8 <= (n); i_ += 8)                                                             \
            _mm256_storeu_ps((x) + i_, fn(_mm256_loadu_ps((x) + i_)));                             \
        if (i_ < (n)) {                                                                            \
            float t_[8] __attribute__((aligned(32))) = {0};                                        \
            memcpy(t_, (x) + i_, (size_t)((n)-i_) * sizeof(float));                                \
            _mm256_store_ps(t_, fn(_mm256_load_ps(t_)));                                           \
            memcpy((x) + i_, t_, (size_t)((n)-i_) * sizeof(float));                                \
        }                                                                                          \
    } while (0)

static void avx2_exp(float *x, int n)
{
    MAP_INPLACE(v_exp, x, n);
}
static void avx2_erf(float *x, int n)
{
    MAP_INPLACE(v_erf, x, n);
}
static void avx2_gelu(float *x, int n)
{
    MAP_INPLACE(v_gelu, x, n);
}

const struct nr_kern_ops nr_kern_avx2_ops = {
    .name = "avx2",
    .pack = avx2_pack,
    .gemm = avx2_gemm,
    .nblock = NR,
    .dot = avx2_dot,
    .axpy = avx2_axpy,
    .layernorm = avx2_layernorm,
    .softmax = avx2_softmax,
    .exp = avx2_exp,
    .erf = avx2_erf,
    .gelu = avx2_gelu,
    .tile = &avx2_tile,
};
