/*
 * quant_neon: nr_quant's dot kernels for aarch64 with the dot-product
 * extension (sdot) and fp16 conversions (armv8.2-a+dotprod+fp16, as
 * CMakeLists.txt compiles *_neon.c). The arithmetic is quant.c's: the same
 * exact int32 per block or sub-block as the scalar reference, one fp32
 * conversion per block.
 *
 * sdot multiplies signed by signed bytes (4 products summed into each int32
 * lane), so the weight quants (0..63, representable as int8) go in as they
 * are and the block offsets (q - 8, q - 16, q - 32) are applied with the
 * precomputed act sums, exactly as on x86: a Q4_0 block's correction
 * 8 * sum(a) over 4 lanes is 2 * sum(a) per lane.
 *
 * 128-bit vectors: a 32-block is two registers. Two fp32 accumulators per
 * act row (even and odd blocks) hide the FMA latency; the K types multiply
 * each sub-block's int32 lanes by its scale with one mla by scalar.
 */
#include "quant_internal.h"

#include <arm_neon.h>
#include <string.h>

#define QN_INLINE static inline __attribute__((always_inline))
/* Unroll the loops over act rows and block chunks completely, so per-row
 * accumulators stay in registers (see quant_x86.h). */
#define QN_UNROLL _Pragma("GCC unroll 8")

QN_INLINE float qn_h(const uint8_t *p)
{
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* ------------------------------------------------------------ 32-blocks */

struct qn_q32 {
    int8x16_t lo, hi; /* elements 0..15, 16..31 */
};

/* Q5_0's bits 16*half .. 16*half+15 -> 0x10 in the bytes where they are set. */
QN_INLINE uint8x16_t qn_bits16(uint32_t qh, int half)
{
    static const uint8_t bitv[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)(qh >> (16 * half))),
                               vdup_n_u8((uint8_t)(qh >> (16 * half + 8))));
    return vandq_u8(vtstq_u8(v, vld1q_u8(bitv)), vdupq_n_u8(0x10));
}

/* kind: 0 Q4_0, 1 Q4_1, 2 Q5_0, 3 Q8_0 */
QN_INLINE struct qn_q32 qn_unpack32(const uint8_t *w, const int kind)
{
    struct qn_q32 q;
    if (kind == 3) {
        q.lo = vld1q_s8((const int8_t *)(w + 2));
        q.hi = vld1q_s8((const int8_t *)(w + 18));
        return q;
    }
    uint8x16_t v = vld1q_u8(w + (kind == 0 ? 2 : kind == 1 ? 4 : 6));
    uint8x16_t lo = vandq_u8(v, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(v, 4);
    if (kind == 2) {
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        lo = vorrq_u8(lo, qn_bits16(qh, 0));
        hi = vorrq_u8(hi, qn_bits16(qh, 1));
    }
    q.lo = vreinterpretq_s8_u8(lo);
    q.hi = vreinterpretq_s8_u8(hi);
    return q;
}

QN_INLINE int32x4_t qn_block32(struct qn_q32 q, const int8_t *a, int32_t isum, const int kind)
{
    int32_t init = kind == 0 ? -2 * isum : kind == 2 ? -4 * isum : 0;
    int32x4_t s = vdotq_s32(vdupq_n_s32(init), q.lo, vld1q_s8(a));
    return vdotq_s32(s, q.hi, vld1q_s8(a + 16));
}

QN_INLINE void qn_dot32(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                        const int nx, const int kind)
{
    const size_t bytes = kind == 0 ? 18 : kind == 1 ? 20 : kind == 2 ? 22 : 34;
    const int nb = k / 32;
    float32x4_t acc0[NR_QUANT_MR], acc1[NR_QUANT_MR];
    float accm[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int32_t *is[NR_QUANT_MR];
    int b = 0;

    QN_UNROLL
    for (int j = 0; j < nx; j++) {
        acc0[j] = vdupq_n_f32(0.0f);
        acc1[j] = vdupq_n_f32(0.0f);
        accm[j] = 0.0f;
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        is[j] = nr_qa_isum(xq + (size_t)j * xs, k);
    }
    for (; b + 2 <= nb; b += 2, w += 2 * bytes) {
        struct qn_q32 q0 = qn_unpack32(w, kind), q1 = qn_unpack32(w + bytes, kind);
        float d0 = qn_h(w), d1 = qn_h(w + bytes);
        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            const int8_t *a = (const int8_t *)(xq + (size_t)j * xs) + 32 * b;
            int32x4_t s0 = qn_block32(q0, a, is[j][b], kind);
            int32x4_t s1 = qn_block32(q1, a + 32, is[j][b + 1], kind);
            acc0[j] = vfmaq_n_f32(acc0[j], vcvtq_f32_s32(s0), d0 * dx[j][b]);
            acc1[j] = vfmaq_n_f32(acc1[j], vcvtq_f32_s32(s1), d1 * dx[j][b + 1]);
            if (kind == 1)
                accm[j] += qn_h(w + 2) * dx[j][b] * (float)is[j][b] +
                           qn_h(w + bytes + 2) * dx[j][b + 1] * (float)is[j][b + 1];
        }
    }
    if (b < nb) {
        struct qn_q32 q0 = qn_unpack32(w, kind);
        float d0 = qn_h(w);
        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            const int8_t *a = (const int8_t *)(xq + (size_t)j * xs) + 32 * b;
            int32x4_t s0 = qn_block32(q0, a, is[j][b], kind);
            acc0[j] = vfmaq_n_f32(acc0[j], vcvtq_f32_s32(s0), d0 * dx[j][b]);
            if (kind == 1)
                accm[j] += qn_h(w + 2) * dx[j][b] * (float)is[j][b];
        }
    }
    QN_UNROLL
    for (int j = 0; j < nx; j++)
        out[j] = vaddvq_f32(vaddq_f32(acc0[j], acc1[j])) + accm[j];
}

/* ------------------------------------------------------------ K types */

QN_INLINE void qn_kscales(const uint8_t *s, uint8_t sc[8], uint8_t m[8])
{
    uint32_t u[3], v[4];
    memcpy(u, s, 12);
    v[0] = u[0] & 0x3f3f3f3fu;
    v[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    v[2] = u[1] & 0x3f3f3f3fu;
    v[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    memcpy(sc, v, 8);
    memcpy(m, v + 2, 8);
}

/* q5: 0 for Q4_K, 1 for Q5_K. */
QN_INLINE void qn_dotk(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                       const int nx, const int q5)
{
    const size_t bytes = q5 ? 176 : 144;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m10 = vdupq_n_u8(0x10);
    float32x4_t acc[NR_QUANT_MR];
    float accm[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int16_t *bs[NR_QUANT_MR];

    QN_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = vdupq_n_f32(0.0f);
        accm[j] = 0.0f;
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        bs[j] = nr_qa_bsums(xq + (size_t)j * xs, k);
    }
    for (int b = 0; b < k / 256; b++, w += bytes) {
        uint8_t sc[8], m[8];
        const uint8_t *qs = w + (q5 ? 48 : 16);
        int32x4_t sumi[NR_QUANT_MR], sumi1[NR_QUANT_MR];
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        float d = qn_h(w), dmin = qn_h(w + 2);

        qn_kscales(w + 4, sc, m);
        if (q5) {
            qh0 = vld1q_u8(w + 16);
            qh1 = vld1q_u8(w + 32);
        }
        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            sumi[j] = vdupq_n_s32(0);
            sumi1[j] = vdupq_n_s32(0);
        }
        QN_UNROLL
        for (int c = 0; c < 4; c++) {
            uint8x16_t v0 = vld1q_u8(qs + 32 * c), v1 = vld1q_u8(qs + 32 * c + 16);
            uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4);
            uint8x16_t h0 = vshrq_n_u8(v0, 4), h1 = vshrq_n_u8(v1, 4);
            if (q5) {
                /* bit 2c of qh -> bit 4 for the low sub-block, bit 2c+1 for the high */
                const int8x16_t sl = vdupq_n_s8((int8_t)(4 - 2 * c));
                const int8x16_t sh = vdupq_n_s8((int8_t)(3 - 2 * c));
                l0 = vorrq_u8(l0, vandq_u8(vshlq_u8(qh0, sl), m10));
                l1 = vorrq_u8(l1, vandq_u8(vshlq_u8(qh1, sl), m10));
                h0 = vorrq_u8(h0, vandq_u8(vshlq_u8(qh0, sh), m10));
                h1 = vorrq_u8(h1, vandq_u8(vshlq_u8(qh1, sh), m10));
            }
            QN_UNROLL
            for (int j = 0; j < nx; j++) {
                const int8_t *a = (const int8_t *)(xq + (size_t)j * xs) + 256 * b + 64 * c;
                int32x4_t s0 = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(l0), vld1q_s8(a));
                s0 = vdotq_s32(s0, vreinterpretq_s8_u8(l1), vld1q_s8(a + 16));
                int32x4_t s1 = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(h0), vld1q_s8(a + 32));
                s1 = vdotq_s32(s1, vreinterpretq_s8_u8(h1), vld1q_s8(a + 48));
                sumi[j] = vmlaq_n_s32(sumi[j], s0, sc[2 * c]);
                sumi1[j] = vmlaq_n_s32(sumi1[j], s1, sc[2 * c + 1]);
            }
        }
        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            const int16_t *s = bs[j] + 16 * b;
            int summ = 0;
            for (int t = 0; t < 8; t++)
                summ += m[t] * (s[2 * t] + s[2 * t + 1]);
            acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(vaddq_s32(sumi[j], sumi1[j])), d * dx[j][b]);
            accm[j] += dmin * dx[j][b] * (float)summ;
        }
    }
    QN_UNROLL
    for (int j = 0; j < nx; j++)
        out[j] = vaddvq_f32(acc[j]) - accm[j];
}

QN_INLINE void qn_dotq6k(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                         const int nx)
{
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    float32x4_t acc[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int16_t *bs[NR_QUANT_MR];

    QN_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = vdupq_n_f32(0.0f);
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        bs[j] = nr_qa_bsums(xq + (size_t)j * xs, k);
    }
    for (int b = 0; b < k / 256; b++, w += 210) {
        const int8_t *sc = (const int8_t *)(w + 192);
        int32x4_t sumi[NR_QUANT_MR], sumi1[NR_QUANT_MR];
        float d = qn_h(w + 208);

        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            sumi[j] = vdupq_n_s32(0);
            sumi1[j] = vdupq_n_s32(0);
        }
        QN_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qhp = w + 128 + 32 * h;
            uint8x16_t qa[2] = {vld1q_u8(ql), vld1q_u8(ql + 16)};
            uint8x16_t qb[2] = {vld1q_u8(ql + 32), vld1q_u8(ql + 48)};
            uint8x16_t qh[2] = {vld1q_u8(qhp), vld1q_u8(qhp + 16)};
            QN_UNROLL
            for (int s = 0; s < 4; s++) {
                int8x16_t q[2];
                QN_UNROLL
                for (int u = 0; u < 2; u++) {
                    uint8x16_t lo, hi;
                    if (s == 0) {
                        lo = vandq_u8(qa[u], m4);
                        hi = vandq_u8(vshlq_n_u8(qh[u], 4), m30);
                    } else if (s == 1) {
                        lo = vandq_u8(qb[u], m4);
                        hi = vandq_u8(vshlq_n_u8(qh[u], 2), m30);
                    } else if (s == 2) {
                        lo = vshrq_n_u8(qa[u], 4);
                        hi = vandq_u8(qh[u], m30);
                    } else {
                        lo = vshrq_n_u8(qb[u], 4);
                        hi = vandq_u8(vshrq_n_u8(qh[u], 2), m30);
                    }
                    q[u] = vreinterpretq_s8_u8(vorrq_u8(lo, hi));
                }
                const int g = 8 * h + 2 * s;
                QN_UNROLL
                for (int j = 0; j < nx; j++) {
                    const int8_t *a =
                        (const int8_t *)(xq + (size_t)j * xs) + 256 * b + 128 * h + 32 * s;
                    int32x4_t s0 = vdotq_s32(vdupq_n_s32(0), q[0], vld1q_s8(a));
                    int32x4_t s1 = vdotq_s32(vdupq_n_s32(0), q[1], vld1q_s8(a + 16));
                    sumi[j] = vmlaq_n_s32(sumi[j], s0, sc[g]);
                    sumi1[j] = vmlaq_n_s32(sumi1[j], s1, sc[g + 1]);
                }
            }
        }
        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            const int16_t *s = bs[j] + 16 * b;
            int corr = 0;
            for (int g = 0; g < 16; g++)
                corr += sc[g] * s[g];
            int32x4_t tot = vaddq_s32(sumi[j], sumi1[j]);
            /* - 32 * sum_g sc[g] * bsums[g], spread over the 4 lanes */
            tot = vsubq_s32(tot, vdupq_n_s32(8 * corr));
            acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(tot), d * dx[j][b]);
        }
    }
    QN_UNROLL
    for (int j = 0; j < nx; j++)
        out[j] = vaddvq_f32(acc[j]);
}

/* ------------------------------------------------------------ float weights */

QN_INLINE float32x4_t qn_load4(const uint8_t *w, const int kind)
{
    if (kind == 0)
        return vld1q_f32((const float *)w);
    uint16x4_t h = vld1_u16((const uint16_t *)w);
    if (kind == 1)
        return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

QN_INLINE float qn_load1(const uint8_t *w, const int kind)
{
    float f;
    uint16_t h;
    if (kind == 0) {
        memcpy(&f, w, 4);
        return f;
    }
    if (kind == 1)
        return qn_h(w);
    memcpy(&h, w, 2);
    uint32_t u = (uint32_t)h << 16;
    memcpy(&f, &u, 4);
    return f;
}

QN_INLINE void qn_dotf(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                       const int nx, const int kind)
{
    const int es = kind == 0 ? 4 : 2;
    float32x4_t acc[NR_QUANT_MR], acc1[NR_QUANT_MR];
    int i = 0;

    QN_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = vdupq_n_f32(0.0f);
        acc1[j] = vdupq_n_f32(0.0f);
    }
    for (; i + 8 <= k; i += 8) {
        float32x4_t v0 = qn_load4(w + (size_t)i * es, kind);
        float32x4_t v1 = qn_load4(w + (size_t)(i + 4) * es, kind);
        QN_UNROLL
        for (int j = 0; j < nx; j++) {
            const float *x = (const float *)(xq + (size_t)j * xs) + i;
            acc[j] = vfmaq_f32(acc[j], v0, vld1q_f32(x));
            acc1[j] = vfmaq_f32(acc1[j], v1, vld1q_f32(x + 4));
        }
    }
    for (; i + 4 <= k; i += 4) {
        float32x4_t v = qn_load4(w + (size_t)i * es, kind);
        QN_UNROLL
        for (int j = 0; j < nx; j++)
            acc[j] = vfmaq_f32(acc[j], v, vld1q_f32((const float *)(xq + (size_t)j * xs) + i));
    }
    QN_UNROLL
    for (int j = 0; j < nx; j++) {
        const float *x = (const float *)(xq + (size_t)j * xs);
        float s = vaddvq_f32(vaddq_f32(acc[j], acc1[j]));
        for (int t = i; t < k; t++)
            s += qn_load1(w + (size_t)t * es, kind) * x[t];
        out[j] = s;
    }
}

/* ------------------------------------------------------------ entry points */

#define QN_ENTRY(name, call)                                                                       \
    static void name(const void *w, const void *xq, size_t xs, int nx, int k, float *out)          \
    {                                                                                              \
        switch (nx) {                                                                              \
        case 1:                                                                                    \
            call(w, xq, xs, k, out, 1);                                                            \
            break;                                                                                 \
        case 2:                                                                                    \
            call(w, xq, xs, k, out, 2);                                                            \
            break;                                                                                 \
        case 3:                                                                                    \
            call(w, xq, xs, k, out, 3);                                                            \
            break;                                                                                 \
        default:                                                                                   \
            call(w, xq, xs, k, out, 4);                                                            \
            break;                                                                                 \
        }                                                                                          \
    }

#define QN_Q4_0(w, x, xs, k, o, n) qn_dot32(w, x, xs, k, o, n, 0)
#define QN_Q4_1(w, x, xs, k, o, n) qn_dot32(w, x, xs, k, o, n, 1)
#define QN_Q5_0(w, x, xs, k, o, n) qn_dot32(w, x, xs, k, o, n, 2)
#define QN_Q8_0(w, x, xs, k, o, n) qn_dot32(w, x, xs, k, o, n, 3)
#define QN_Q4_K(w, x, xs, k, o, n) qn_dotk(w, x, xs, k, o, n, 0)
#define QN_Q5_K(w, x, xs, k, o, n) qn_dotk(w, x, xs, k, o, n, 1)
#define QN_Q6_K(w, x, xs, k, o, n) qn_dotq6k(w, x, xs, k, o, n)
#define QN_F32(w, x, xs, k, o, n)  qn_dotf(w, x, xs, k, o, n, 0)
#define QN_F16(w, x, xs, k, o, n)  qn_dotf(w, x, xs, k, o, n, 1)
#define QN_BF16(w, x, xs, k, o, n) qn_dotf(w, x, xs, k, o, n, 2)

QN_ENTRY(qn_q4_0, QN_Q4_0)
QN_ENTRY(qn_q4_1, QN_Q4_1)
QN_ENTRY(qn_q5_0, QN_Q5_0)
QN_ENTRY(qn_q8_0, QN_Q8_0)
QN_ENTRY(qn_q4_k, QN_Q4_K)
QN_ENTRY(qn_q5_k, QN_Q5_K)
QN_ENTRY(qn_q6_k, QN_Q6_K)
QN_ENTRY(qn_f32, QN_F32)
QN_ENTRY(qn_f16, QN_F16)
QN_ENTRY(qn_bf16, QN_BF16)

/* ------------------------------------------------------------ f16 helpers */

static float qn_dot_f16(const uint16_t *a, const float *b, int n)
{
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(a + i));
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vcvt_high_f32_f16(h), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++)
        s += qn_h((const uint8_t *)(a + i)) * b[i];
    return s;
}

static void qn_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), v, a));
    }
    for (; i < n; i++)
        y[i] += a * qn_h((const uint8_t *)(x + i));
}

static void qn_f32_to_f16(const float *x, uint16_t *y, int n)
{
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) {
        __fp16 h = (__fp16)x[i];
        memcpy(y + i, &h, 2);
    }
}

/* ------------------------------------------------------------ act */

/* roundf of finite v clamped to ±127 (as quant_x86.h's qx_round8). */
QN_INLINE int32x4_t qn_round4(float32x4_t v)
{
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t t = vrndq_f32(v); /* toward zero */
    float32x4_t f = vsubq_f32(v, t);
    float32x4_t up = vreinterpretq_f32_u32(
        vandq_u32(vcgeq_f32(f, vdupq_n_f32(0.5f)), vreinterpretq_u32_f32(one)));
    float32x4_t dn = vreinterpretq_f32_u32(
        vandq_u32(vcleq_f32(f, vdupq_n_f32(-0.5f)), vreinterpretq_u32_f32(one)));
    t = vsubq_f32(vaddq_f32(t, up), dn);
    t = vminq_f32(vmaxq_f32(t, vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f));
    return vcvtq_s32_f32(t);
}

/* nr_quant_act_block_ref, byte for byte; NaN/Inf blocks go to it. */
static float qn_act_block(const float *x, int n, int8_t *q, int32_t *gsum)
{
    float32x4_t mx = vdupq_n_f32(0.0f);
    uint32x4_t bad = vdupq_n_u32(0);
    for (int i = 0; i < n; i += 4) {
        float32x4_t a = vabsq_f32(vld1q_f32(x + i));
        /* not (a <= FLT_MAX): NaN or Inf */
        bad = vorrq_u32(bad, vmvnq_u32(vcleq_f32(a, vdupq_n_f32(3.4028235e38f))));
        mx = vmaxq_f32(mx, a);
    }
    if (vmaxvq_u32(bad))
        return nr_quant_act_block_ref(x, n, q, gsum);
    float d = vmaxvq_f32(mx) / 127.0f;
    float id = d >= 1e-30f ? 1.0f / d : 0.0f;
    for (int g = 0; g < n / 16; g++) {
        int32x4_t i[4];
        QN_UNROLL
        for (int u = 0; u < 4; u++)
            i[u] = qn_round4(vmulq_n_f32(vld1q_f32(x + 16 * g + 4 * u), id));
        int16x8_t h0 = vcombine_s16(vmovn_s32(i[0]), vmovn_s32(i[1]));
        int16x8_t h1 = vcombine_s16(vmovn_s32(i[2]), vmovn_s32(i[3]));
        vst1q_s8(q + 16 * g, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
        gsum[g] = vaddvq_s32(vaddq_s32(vaddq_s32(i[0], i[1]), vaddq_s32(i[2], i[3])));
    }
    return d;
}

const struct nr_quant_kernels nr_quant_neon_kernels = {
    .name = "neon",
    .dot =
        {
            [NR_GGML_F32] = qn_f32,
            [NR_GGML_F16] = qn_f16,
            [NR_GGML_BF16] = qn_bf16,
            [NR_GGML_Q4_0] = qn_q4_0,
            [NR_GGML_Q4_1] = qn_q4_1,
            [NR_GGML_Q5_0] = qn_q5_0,
            [NR_GGML_Q8_0] = qn_q8_0,
            [NR_GGML_Q4_K] = qn_q4_k,
            [NR_GGML_Q5_K] = qn_q5_k,
            [NR_GGML_Q6_K] = qn_q6_k,
        },
    .dot_f16 = qn_dot_f16,
    .axpy_f16 = qn_axpy_f16,
    .f32_to_f16 = qn_f32_to_f16,
    .act_block = qn_act_block,
};
