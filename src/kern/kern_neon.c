/*
 * kern_neon: AArch64 Advanced SIMD kernels, 4 fp32 lanes per q register.
 * Target: Jetson Orin's Cortex-A78AE (two 128-bit FMA pipes, latency 4;
 * 64 KiB L1d, 256 KiB L2 per core).
 *
 * GEMM TILE: MR = 8 rows x NR = 8 columns of C in 16 q accumulators. The k
 * loop advances 4 at a time: one q load per row brings A[r][t..t+4) (8
 * registers), then for each of the 4 steps two q loads of the packed W panel
 * and 16 vfmaq_laneq_f32, which multiply by one lane of the A register, so
 * no broadcasts are needed. 16 accumulators + 8 A + 2 W = 26 of the 32
 * vector registers; 16 independent accumulators are twice the 2 pipes x 4
 * cycles of latency; and the loop issues 16 loads per 64 FMAs, far under
 * the two load ports. k % 4 leftovers use vfmaq_n_f32 one step at a time.
 * Rows 1..8 are separate instantiations; column edges (n % 8) go through a
 * padded buffer. KC = 384 (a 12 KiB panel slice, L1-resident) and a 128 KiB
 * L2 budget for the A block (half the A78AE's L2). The blocking around the
 * tile is in kern.c.
 *
 * EPILOGUE (last k block): bias, GELU, residual add and store from a stack
 * copy of the tile, in one non-inlined routine.
 *
 * VECTOR MATH: the same algorithms and constants as kern_avx512.c
 * (kern_internal.h): exp with 2^n built in the exponent field, erfc via the
 * fitted P8(t) * exp(-z²), GELU through erfc so the negative tail keeps its
 * precision. vdivq_f32 gives the exact reciprocal for t. Errors are printed
 * by tests/test_kern.c (run under qemu by scripts/test_aarch64.sh).
 */
#include "kern_internal.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define MR 8
#define NR 8
#define KC 384

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------ vector math */

ALWAYS_INLINE float32x4_t v_exp(float32x4_t x)
{
    const float32x4_t one = vdupq_n_f32(1.0f);
    /* vmaxq/vminq propagate NaN, so a NaN x stays NaN */
    float32x4_t xc = vminq_f32(vdupq_n_f32(NR_EXP_MAX), vmaxq_f32(vdupq_n_f32(NR_EXP_MIN), x));
    float32x4_t n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(NR_EXP_LOG2E)));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(NR_EXP_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(NR_EXP_LN2_LO));
    float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(one, p, r);
    p = vfmaq_f32(one, p, r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    /* x < NR_EXP_MIN (and -inf) -> 0; NaN compares false and stays NaN */
    uint32x4_t tiny = vcltq_f32(x, vdupq_n_f32(NR_EXP_MIN));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), tiny));
}

/* erfc(z) for z >= 0 (or NaN) */
ALWAYS_INLINE float32x4_t v_erfc_pos(float32x4_t z)
{
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t t = vdivq_f32(one, vfmaq_f32(one, vdupq_n_f32(NR_ERFC_P), z));
    float32x4_t p = vdupq_n_f32(NR_ERFC_C8);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C7), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C6), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C5), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C4), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C3), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C2), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C1), p, t);
    p = vfmaq_f32(vdupq_n_f32(NR_ERFC_C0), p, t);
    return vmulq_f32(p, v_exp(vnegq_f32(vmulq_f32(z, z))));
}

ALWAYS_INLINE float32x4_t v_erf(float32x4_t x)
{
    const float32x4_t ax = vabsq_f32(x), x2 = vmulq_f32(x, x);
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    float32x4_t r = vsubq_f32(vdupq_n_f32(1.0f), v_erfc_pos(ax));
    r = vreinterpretq_f32_u32(
        vorrq_u32(vreinterpretq_u32_f32(r), vandq_u32(sign, vreinterpretq_u32_f32(x))));
    float32x4_t s = vdupq_n_f32(NR_ERF_T6);
    s = vfmaq_f32(vdupq_n_f32(NR_ERF_T5), s, x2);
    s = vfmaq_f32(vdupq_n_f32(NR_ERF_T4), s, x2);
    s = vfmaq_f32(vdupq_n_f32(NR_ERF_T3), s, x2);
    s = vfmaq_f32(vdupq_n_f32(NR_ERF_T2), s, x2);
    s = vfmaq_f32(vdupq_n_f32(NR_ERF_T1), s, x2);
    s = vfmaq_f32(vdupq_n_f32(NR_ERF_T0), s, x2);
    uint32x4_t small = vcltq_f32(ax, vdupq_n_f32(NR_ERF_TMAX));
    return vbslq_f32(small, vmulq_f32(s, x), r);
}

ALWAYS_INLINE float32x4_t v_gelu(float32x4_t x)
{
    float32x4_t z = vmulq_f32(x, vdupq_n_f32((float)M_SQRT1_2));
    float32x4_t q = v_erfc_pos(vabsq_f32(z));
    uint32x4_t neg = vcltq_f32(z, vdupq_n_f32(0.0f));
    float32x4_t opq = vbslq_f32(neg, q, vsubq_f32(vdupq_n_f32(2.0f), q));
    return vmulq_f32(vmulq_f32(vdupq_n_f32(0.5f), x), opq);
}

/* ------------------------------------------------------------ GEMM tile */

/* Bias, activation, residual and store for rows x cols results in buf[r][NR]. */
static __attribute__((noinline)) void
tile_epilogue(float *buf, int rows, int cols, const float *bias, int flags, float *c, size_t ldc)
{
    float bpad[NR] = {0};
    float32x4_t b0 = vdupq_n_f32(0.0f), b1 = b0;

    if (bias) {
        memcpy(bpad, bias, (size_t)cols * sizeof *bias);
        b0 = vld1q_f32(bpad);
        b1 = vld1q_f32(bpad + 4);
    }
    for (int r = 0; r < rows; r++, c += ldc, buf += NR) {
        float32x4_t v0 = vaddq_f32(vld1q_f32(buf), b0);
        float32x4_t v1 = vaddq_f32(vld1q_f32(buf + 4), b1);
        if (flags & NR_TILE_GELU) {
            v0 = v_gelu(v0);
            v1 = v_gelu(v1);
        }
        if (cols == NR) {
            if (flags & NR_TILE_ACC) {
                v0 = vaddq_f32(v0, vld1q_f32(c));
                v1 = vaddq_f32(v1, vld1q_f32(c + 4));
            }
            vst1q_f32(c, v0);
            vst1q_f32(c + 4, v1);
        } else {
            vst1q_f32(buf, v0);
            vst1q_f32(buf + 4, v1);
            for (int j = 0; j < cols; j++)
                c[j] = flags & NR_TILE_ACC ? buf[j] + c[j] : buf[j];
        }
    }
}

#define FMA_LANE(L)                                                                                \
    do {                                                                                           \
        const float32x4_t w0 = vld1q_f32(w), w1 = vld1q_f32(w + 4);                                \
        w += ldw;                                                                                  \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                        \
        {                                                                                          \
            acc[r][0] = vfmaq_laneq_f32(acc[r][0], w0, av[r], L);                                  \
            acc[r][1] = vfmaq_laneq_f32(acc[r][1], w1, av[r], L);                                  \
        }                                                                                          \
    } while (0)

ALWAYS_INLINE void tile_rows(const int R, const float *a, size_t lda, const float *w, size_t ldw,
                             int kc, float *c, size_t ldc, int cols, const float *bias, int flags)
{
    float32x4_t acc[MR][2];
    float buf[MR * NR];
    int t = 0;

#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (!(flags & NR_TILE_LOADC)) {
            acc[r][0] = vdupq_n_f32(0.0f);
            acc[r][1] = vdupq_n_f32(0.0f);
        } else if (cols == NR) {
            acc[r][0] = vld1q_f32(c + r * ldc);
            acc[r][1] = vld1q_f32(c + r * ldc + 4);
        } else {
            memset(buf, 0, sizeof buf);
            memcpy(buf, c + r * ldc, (size_t)cols * sizeof *c);
            acc[r][0] = vld1q_f32(buf);
            acc[r][1] = vld1q_f32(buf + 4);
        }
    }
    for (; t + 4 <= kc; t += 4) {
        float32x4_t av[MR];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            av[r] = vld1q_f32(a + r * lda + t);
        FMA_LANE(0);
        FMA_LANE(1);
        FMA_LANE(2);
        FMA_LANE(3);
    }
    for (; t < kc; t++, w += ldw) {
        const float32x4_t w0 = vld1q_f32(w), w1 = vld1q_f32(w + 4);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            acc[r][0] = vfmaq_n_f32(acc[r][0], w0, a[r * lda + t]);
            acc[r][1] = vfmaq_n_f32(acc[r][1], w1, a[r * lda + t]);
        }
    }
    if (flags & NR_TILE_LAST) {
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            vst1q_f32(buf + r * NR, acc[r][0]);
            vst1q_f32(buf + r * NR + 4, acc[r][1]);
        }
        tile_epilogue(buf, R, cols, bias, flags, c, ldc);
        return;
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (cols == NR) {
            vst1q_f32(c + r * ldc, acc[r][0]);
            vst1q_f32(c + r * ldc + 4, acc[r][1]);
        } else {
            vst1q_f32(buf, acc[r][0]);
            vst1q_f32(buf + 4, acc[r][1]);
            memcpy(c + r * ldc, buf, (size_t)cols * sizeof *c);
        }
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

static const struct nr_kern_tile neon_tile = {
    .mr = MR, .nr = NR, .kc = KC, .a_bytes = 128 * 1024, .run = tile_run};

static int neon_pack(struct nr_pw *pw, const float *w, int n, int k)
{
    return nr_kern_pack_panels(pw, w, n, k, NR);
}

static void neon_gemm(const float *A, int lda, const struct nr_pw *W, const float *bias, float *C,
                      int ldc, int m, int j0, int j1, int act, int accumulate)
{
    nr_kern_gemm_tiled(&neon_tile, A, lda, W, bias, C, ldc, m, j0, j1, act, accumulate);
}

/* ------------------------------------------------------------ vector ops */

static float neon_dot(const float *a, const float *b, int n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int i = 0;
    float s;

    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    if (i + 4 <= n) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        i += 4;
    }
    s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void neon_axpy(float *y, float a, const float *x, int n)
{
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void neon_layernorm(float *x, int rows, int dim, const float *g, const float *b, float eps)
{
    if (dim <= 0)
        return;
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * dim;
        const float x0 = v[0];
        const float32x4_t shift = vdupq_n_f32(x0);
        float32x4_t vs = vdupq_n_f32(0.0f), vsd = vs, vsd2 = vs;
        float s, sd, sd2;
        int i;

        for (i = 0; i + 4 <= dim; i += 4)
            vs = vaddq_f32(vs, vsubq_f32(vld1q_f32(v + i), shift));
        s = vaddvq_f32(vs);
        for (; i < dim; i++)
            s += v[i] - x0;
        /* mean - x0; see kern_scalar.c for why everything stays shifted */
        const float mean = s / (float)dim;
        const float32x4_t vm = vdupq_n_f32(mean);
        for (i = 0; i + 4 <= dim; i += 4) {
            float32x4_t d = vsubq_f32(vsubq_f32(vld1q_f32(v + i), shift), vm);
            vsd = vaddq_f32(vsd, d);
            vsd2 = vfmaq_f32(vsd2, d, d);
        }
        sd = vaddvq_f32(vsd);
        sd2 = vaddvq_f32(vsd2);
        for (; i < dim; i++) {
            float d = (v[i] - x0) - mean;
            sd += d;
            sd2 += d * d;
        }
        float var = (sd2 - sd * sd / (float)dim) / (float)dim;
        if (var < 0.0f)
            var = 0.0f;
        const float rstd = 1.0f / sqrtf(var + eps);
        for (i = 0; i + 4 <= dim; i += 4) {
            float32x4_t d = vmulq_n_f32(vsubq_f32(vsubq_f32(vld1q_f32(v + i), shift), vm), rstd);
            vst1q_f32(v + i, vfmaq_f32(vld1q_f32(b + i), d, vld1q_f32(g + i)));
        }
        for (; i < dim; i++)
            v[i] = ((v[i] - x0) - mean) * rstd * g[i] + b[i];
    }
}

static void neon_softmax(float *x, int n)
{
    float32x4_t vmx = vdupq_n_f32(-INFINITY), vsum = vdupq_n_f32(0.0f);
    float mx, sum;
    int i;

    for (i = 0; i + 4 <= n; i += 4)
        vmx = vmaxq_f32(vmx, vld1q_f32(x + i));
    mx = vmaxvq_f32(vmx);
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    const float32x4_t vm = vdupq_n_f32(mx);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t e = v_exp(vsubq_f32(vld1q_f32(x + i), vm));
        vsum = vaddq_f32(vsum, e);
        vst1q_f32(x + i, e);
    }
    if (i < n) {
        /* tail through a padded buffer so it uses the same exp */
        float tmp[4];
        int rest = n - i;
        for (int j = 0; j < 4; j++)
            tmp[j] = j < rest ? x[i + j] - mx : -INFINITY;
        float32x4_t e = v_exp(vld1q_f32(tmp));
        vsum = vaddq_f32(vsum, e);
        vst1q_f32(tmp, e);
        memcpy(x + i, tmp, (size_t)rest * sizeof *x);
    }
    sum = vaddvq_f32(vsum);
    const float inv = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++)
        x[i] *= inv;
}

/* Apply a vector function to x[0..n) in place, the tail via a padded buffer. */
#define MAP_INPLACE(fn, x, n)                                                                      \
    do {                                                                                           \
        int i_ = 0;                                                                                \
        for (; i_ + 4 <= (n); i_ += 4)                                                             \
            vst1q_f32((x) + i_, fn(vld1q_f32((x) + i_)));                                          \
        if (i_ < (n)) {                                                                            \
            float t_[4] = {0};                                                                     \
            memcpy(t_, (x) + i_, (size_t)((n)-i_) * sizeof(float));                                \
            vst1q_f32(t_, fn(vld1q_f32(t_)));                                                      \
            memcpy((x) + i_, t_, (size_t)((n)-i_) * sizeof(float));                                \
        }                                                                                          \
    } while (0)

static void neon_exp(float *x, int n)
{
    MAP_INPLACE(v_exp, x, n);
}
static void neon_erf(float *x, int n)
{
    MAP_INPLACE(v_erf, x, n);
}
static void neon_gelu(float *x, int n)
{
    MAP_INPLACE(v_gelu, x, n);
}

const struct nr_kern_ops nr_kern_neon_ops = {
    .name = "neon",
    .pack = neon_pack,
    .gemm = neon_gemm,
    .nblock = NR,
    .dot = neon_dot,
    .axpy = neon_axpy,
    .layernorm = neon_layernorm,
    .softmax = neon_softmax,
    .exp = neon_exp,
    .erf = neon_erf,
    .gelu = neon_gelu,
    .tile = &neon_tile,
};
