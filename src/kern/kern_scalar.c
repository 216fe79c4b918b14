/*
 * kern_scalar: the plain reference implementation of nr_kern_ops.
 *
 * Every SIMD variant is tested against this file, and this file is tested
 * against a double-precision reference, so it is written to be obviously
 * correct rather than fast: textbook definitions, one output at a time, libm
 * for exp and erf. It is also the fallback on CPUs without a SIMD variant.
 *
 *   linear     y[i][j] = act(sum_t x[i][t] * W[j][t] + b[j]) (+ y[i][j])
 *              W is kept as given ([n][k] row-major): "packing" is a copy.
 *   GELU       torch.nn.GELU(): 0.5 x (1 + erf(x/√2)), computed as
 *              0.5 x erfc(-x/√2), the same function, which keeps full
 *              relative precision for large negative x where 1 + erf cancels.
 *   layernorm  everything relative to x0 = x[0]: m = sum(x - x0)/n, then
 *              d = (x - x0) - m and the corrected two-pass variance of Chan,
 *              Golub and LeVeque, var = (sum d² - (sum d)²/n) / n, whose
 *              second term cancels the rounding error of m. Shifting means a
 *              large common offset (all values near 1000, say) never meets
 *              the deviations in one float: the mean x0 + m itself is never
 *              rounded, and d keeps the precision of the deviations.
 *   softmax    e = exp(x - max); e / sum(e).
 *   int8       the integer arithmetic of kern_internal.h ("INT8 GEMM"), one
 *              output at a time: quant_i8 stores Aq as plain int8 (two's
 *              complement bytes), gemm_i8 sums Aq·Wq in int32 straight from
 *              the shared packed layout (no +128 trick), then the fp32
 *              epilogue. It is the reference the SIMD tiles must match
 *              exactly, and the fallback where no int8 tile exists (avx2).
 *
 * Sums are plain sequential float sums: the reference should show what naive
 * fp32 gives, and the tests bound it against double.
 */
#include "kern_internal.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <math.h>
#include <string.h>

static int scalar_pack(struct nr_pw *pw, const float *w, int n, int k)
{
    size_t count, bytes;

    if (n <= 0 || k <= 0)
        return nr_err_set(NR_EINVAL, "kern: cannot pack a %d x %d weight", n, k);
    if (nr_mul_size((size_t)n, (size_t)k, &count) || nr_mul_size(count, sizeof(float), &bytes))
        return nr_err_set(NR_ELIMIT, "kern: weight %d x %d too large", n, k);
    pw->data = nr_aligned_alloc(64, bytes);
    if (!pw->data)
        return nr_err_set(NR_ENOMEM, "kern: out of memory packing a %d x %d weight", n, k);
    memcpy(pw->data, w, bytes);
    pw->n = n;
    pw->k = k;
    pw->bytes = bytes;
    return NR_OK;
}

static float gelu1(float x)
{
    return 0.5f * x * erfcf(-x * (float)M_SQRT1_2);
}

static void scalar_gemm(const float *A, int lda, const struct nr_pw *W, const float *bias, float *C,
                        int ldc, int m, int j0, int j1, int act, int accumulate)
{
    int k = W->k;

    for (int i = 0; i < m; i++) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        for (int j = j0; j < j1; j++) {
            const float *w = W->data + (size_t)j * k;
            float s = 0.0f;
            for (int t = 0; t < k; t++)
                s += a[t] * w[t];
            if (bias)
                s += bias[j];
            if (act == NR_ACT_GELU)
                s = gelu1(s);
            c[j] = accumulate ? c[j] + s : s;
        }
    }
}

static void scalar_quant_i8(const float *A, int lda, int m, int k, const float *smooth_inv,
                            uint8_t *q, int ldq, float *sa)
{
    for (int i = 0; i < m; i++) {
        const float *a = A + (size_t)i * lda;
        uint8_t *d = q + (size_t)i * ldq;
        float amax = 0.0f, inv;
        for (int t = 0; t < k; t++) {
            float x = smooth_inv ? a[t] * smooth_inv[t] : a[t];
            amax = fabsf(x) > amax ? fabsf(x) : amax;
        }
        inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int t = 0; t < k; t++) {
            long v = lrintf((smooth_inv ? a[t] * smooth_inv[t] : a[t]) * inv);
            d[t] = (uint8_t)(int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int t = k; t < (k + 3) / 4 * 4; t++)
            d[t] = 0;
        sa[i] = amax / 127.0f;
    }
}

static void scalar_gemm_i8(const uint8_t *q, int ldq, const float *sa, const struct nr_pw8 *W,
                           const float *bias, float *C, int ldc, int m, int j0, int j1, int act,
                           int accumulate)
{
    const int k = W->k;

    for (int i = 0; i < m; i++) {
        const int8_t *a = (const int8_t *)(q + (size_t)i * ldq);
        float *c = C + (size_t)i * ldc;
        for (int j = j0; j < j1; j++) {
            const int8_t *w = W->data + (size_t)(j / NR_I8) * W->kp * NR_I8 + (j % NR_I8) * 4;
            int32_t acc = 0;
            float v;
            for (int t = 0; t < k; t++)
                acc += (int32_t)a[t] * w[(size_t)(t / 4) * 4 * NR_I8 + t % 4];
            v = fmaf((float)acc * sa[i], W->scale[j], bias ? bias[j] : 0.0f);
            if (act == NR_ACT_GELU)
                v = gelu1(v);
            c[j] = accumulate ? c[j] + v : v;
        }
    }
}

static float scalar_dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void scalar_axpy(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void scalar_layernorm(float *x, int rows, int dim, const float *g, const float *b, float eps)
{
    if (dim <= 0)
        return;
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * dim;
        float shift = v[0], s = 0.0f, sd = 0.0f, sd2 = 0.0f;
        for (int i = 0; i < dim; i++)
            s += v[i] - shift;
        float mean = s / (float)dim; /* minus shift */
        for (int i = 0; i < dim; i++) {
            float d = (v[i] - shift) - mean;
            sd += d;
            sd2 += d * d;
        }
        float var = (sd2 - sd * sd / (float)dim) / (float)dim;
        if (var < 0.0f)
            var = 0.0f;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < dim; i++)
            v[i] = ((v[i] - shift) - mean) * rstd * g[i] + b[i];
    }
}

static void scalar_softmax(float *x, int n)
{
    float mx = x[0], sum = 0.0f;
    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

static void scalar_exp(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = expf(x[i]);
}

static void scalar_erf(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = erff(x[i]);
}

static void scalar_gelu(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = gelu1(x[i]);
}

const struct nr_kern_ops nr_kern_scalar_ops = {
    .name = "scalar",
    .pack = scalar_pack,
    .gemm = scalar_gemm,
    .nblock = 1,
    .dot = scalar_dot,
    .axpy = scalar_axpy,
    .layernorm = scalar_layernorm,
    .softmax = scalar_softmax,
    .exp = scalar_exp,
    .erf = scalar_erf,
    .gelu = scalar_gelu,
    .tile = NULL,
    .quant_i8 = scalar_quant_i8,
    .gemm_i8 = scalar_gemm_i8,
};
