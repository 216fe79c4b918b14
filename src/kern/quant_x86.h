/*
 * quant_x86: the x86 dot kernels of nr_quant, written once and compiled
 * twice: by quant_avx2.c (AVX2 + FMA + F16C) and by quant_avx512.c (the same
 * with AVX-512 VL + VNNI, QX_VNNI defined). Include only from those files;
 * everything here is static. The arithmetic is quant.c's (design comment):
 * unsigned weight quants times signed act quants, exact int32 sums per block
 * or super-block, one conversion to fp32 per block.
 *
 * Vector width: 256-bit (quant_avx512.c adds a 512-bit Q6_K). On Zen 4 a
 * 512-bit integer op costs two 256-bit ones; wider vectors only paid where
 * unpacking dominated (Q6_K), and the 32-element blocks map onto one ymm.
 *
 * The integer steps, per 32 quants u (0..63, unsigned) and act bytes s
 * (-127..127, signed):
 *   QX_DOT_U8I8(acc, u, s)  acc[i] += sum of the 4 products of lane i
 *       AVX2: vpmaddubsw (pairs into int16: |2 * 63 * 127| < 2^15 and,
 *       for Q8_0's sign trick, 2 * 128 * 127 < 2^15, so it never
 *       saturates) then vpmaddwd with ones; VNNI: one vpdpbusd.
 *   QX_DOT_I16(acc, p, sc)  acc[i] += p[2i]*sc[2i] + p[2i+1]*sc[2i+1]
 *       (int16 pair sums times a sub-block scale) — vpmaddwd + vpaddd, or
 *       one vpdpwssd with VNNI.
 * Block offsets (q - 8, q - 16) are exact integer corrections c * sum(a)
 * (c = 8 or 16): applied to the totals of 4 blocks at once in the grouped
 * path of qx_dot32, or folded into a block's int32 start value (sum(a) *
 * c / 8 per lane) in the per-block path.
 *
 * Each kernel handles nx act rows (1..NR_QUANT_MR) per weight row: a block
 * is unpacked once and used nx times. The accumulation order of one row's
 * result does not depend on nx, so matvec and matmul agree bit for bit.
 */
#ifndef NR_QUANT_X86_H
#define NR_QUANT_X86_H

#include "quant_internal.h"

#include <immintrin.h>
#include <string.h>

#define QX_INLINE static inline __attribute__((always_inline))
/* Loops over act rows (nx, a constant after inlining) and over the chunks
 * of a block must unroll completely: then the per-row accumulators live in
 * registers instead of stack arrays indexed at run time. */
#define QX_UNROLL _Pragma("GCC unroll 8")

#if defined(QX_VNNI)
#define QX_DOT_U8I8(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define QX_DOT_I16(acc, p, sc) _mm256_dpwssd_epi32((acc), (p), (sc))
#else
#define QX_DOT_U8I8(acc, u, s)                                                                     \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#define QX_DOT_I16(acc, p, sc) _mm256_add_epi32((acc), _mm256_madd_epi16((p), (sc)))
#endif

QX_INLINE float qx_h(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

QX_INLINE float qx_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of nibbles -> 32 quants: low nibbles (elements 0..15), then high. */
QX_INLINE __m256i qx_nib32(const uint8_t *qs)
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* Q5_0's 32 high bits -> 0x10 in byte i where bit i is set. */
QX_INLINE __m256i qx_bits32(const uint8_t *p)
{
    uint32_t qh;
    memcpy(&qh, p, 4);
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
                                         2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), sel);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* ------------------------------------------------------------ 32-blocks */

/* kind: 0 Q4_0, 1 Q4_1, 2 Q5_0, 3 Q8_0 (a compile-time constant after inlining). */
QX_INLINE __m256i qx_unpack32(const uint8_t *w, const int kind)
{
    if (kind == 0)
        return qx_nib32(w + 2);
    if (kind == 1)
        return qx_nib32(w + 4);
    if (kind == 2)
        return _mm256_or_si256(qx_nib32(w + 6), qx_bits32(w + 2));
    return _mm256_loadu_si256((const __m256i *)(w + 2));
}

/* The exact int32 lanes of one block's product (offsets folded in, see top). */
QX_INLINE __m256i qx_block32(__m256i q, const uint8_t *a, int32_t isum, const int kind)
{
    __m256i va = _mm256_load_si256((const __m256i *)a);
    if (kind == 0)
        return QX_DOT_U8I8(_mm256_set1_epi32(-isum), q, va);
    if (kind == 1)
        return QX_DOT_U8I8(_mm256_setzero_si256(), q, va);
    if (kind == 2)
        return QX_DOT_U8I8(_mm256_set1_epi32(-2 * isum), q, va);
    return QX_DOT_U8I8(_mm256_setzero_si256(), _mm256_sign_epi8(q, q), _mm256_sign_epi8(va, q));
}

/* 4 fp16 at stride `bytes` (Q4_1's d or m of 4 blocks) -> 4 floats. */
QX_INLINE __m128 qx_h4(const uint8_t *p, size_t bytes)
{
    uint16_t h[4];
    for (int i = 0; i < 4; i++)
        memcpy(&h[i], p + (size_t)i * bytes, 2);
    return _mm_cvtph_ps(
        _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
}

/* The int32 totals of s0..s3 (8 lanes each), in order, in one xmm. */
QX_INLINE __m128i qx_sum4(__m256i s0, __m256i s1, __m256i s2, __m256i s3)
{
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/*
 * Q4_0, Q4_1, Q5_0 go by groups of 4 blocks: the 4 int32 totals are reduced
 * into one xmm (two vphaddd), the offsets (8 or 16 times the act sums) and
 * Q4_1's min term applied to the 4 at once, and the 4 (d * dx) multiplied
 * in one FMA, instead of a scalar f16 conversion, broadcasts and an FMA per
 * block (measured from L2, avx512: q4_0 16.5 -> 17.1 GB/s, q4_1 14.0 -> 15.4,
 * q5_0 15.6 -> 16.3; Q8_0, whose blocks need no offset, got slower: 37.4 ->
 * 36.1, so it keeps the per-block path). The per-block path, also for the
 * last nb % 4 blocks, alternates two float accumulators so consecutive
 * blocks' FMAs do not wait on each other.
 */
QX_INLINE void qx_dot32(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                        const int nx, const int kind)
{
    const size_t bytes = kind == 0 ? 18 : kind == 1 ? 20 : kind == 2 ? 22 : 34;
    const int nb = k / 32;
    __m256 acc0[NR_QUANT_MR], acc1[NR_QUANT_MR];
    __m128 acc4[NR_QUANT_MR];
    float accm[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int32_t *is[NR_QUANT_MR];
    int b = 0;

    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        acc0[j] = _mm256_setzero_ps();
        acc1[j] = _mm256_setzero_ps();
        acc4[j] = _mm_setzero_ps();
        accm[j] = 0.0f;
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        is[j] = nr_qa_isum(xq + (size_t)j * xs, k);
    }
    for (; kind != 3 && b + 4 <= nb; b += 4, w += 4 * bytes) {
        __m256i q0 = qx_unpack32(w, kind), q1 = qx_unpack32(w + bytes, kind);
        __m256i q2 = qx_unpack32(w + 2 * bytes, kind), q3 = qx_unpack32(w + 3 * bytes, kind);
        __m128 d4 = qx_h4(w, bytes), m4 = _mm_setzero_ps();
        if (kind == 1)
            m4 = qx_h4(w + 2, bytes);
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            const uint8_t *a = xq + (size_t)j * xs + 32 * (size_t)b;
            /* offsets applied to the 4 totals at once: c * isum, c = 8 or 16 */
            __m128i t = qx_sum4(qx_block32(q0, a, 0, 1), qx_block32(q1, a + 32, 0, 1),
                                qx_block32(q2, a + 64, 0, 1), qx_block32(q3, a + 96, 0, 1));
            __m128 dxv = _mm_loadu_ps(dx[j] + b);
            __m128i isv = _mm_loadu_si128((const __m128i *)(is[j] + b));
            if (kind == 0)
                t = _mm_sub_epi32(t, _mm_slli_epi32(isv, 3));
            if (kind == 2)
                t = _mm_sub_epi32(t, _mm_slli_epi32(isv, 4));
            acc4[j] = _mm_fmadd_ps(_mm_mul_ps(d4, dxv), _mm_cvtepi32_ps(t), acc4[j]);
            if (kind == 1)
                acc4[j] = _mm_fmadd_ps(_mm_mul_ps(m4, dxv), _mm_cvtepi32_ps(isv), acc4[j]);
        }
    }
    for (; b + 2 <= nb; b += 2, w += 2 * bytes) {
        __m256i q0 = qx_unpack32(w, kind), q1 = qx_unpack32(w + bytes, kind);
        float d0 = qx_h(w), d1 = qx_h(w + bytes);
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            const uint8_t *a = xq + (size_t)j * xs + 32 * (size_t)b;
            __m256i s0 = qx_block32(q0, a, is[j][b], kind);
            __m256i s1 = qx_block32(q1, a + 32, is[j][b + 1], kind);
            acc0[j] =
                _mm256_fmadd_ps(_mm256_set1_ps(d0 * dx[j][b]), _mm256_cvtepi32_ps(s0), acc0[j]);
            acc1[j] =
                _mm256_fmadd_ps(_mm256_set1_ps(d1 * dx[j][b + 1]), _mm256_cvtepi32_ps(s1), acc1[j]);
            if (kind == 1)
                accm[j] += qx_h(w + 2) * dx[j][b] * (float)is[j][b] +
                           qx_h(w + bytes + 2) * dx[j][b + 1] * (float)is[j][b + 1];
        }
    }
    if (b < nb) {
        __m256i q0 = qx_unpack32(w, kind);
        float d0 = qx_h(w);
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            __m256i s0 = qx_block32(q0, xq + (size_t)j * xs + 32 * (size_t)b, is[j][b], kind);
            acc0[j] =
                _mm256_fmadd_ps(_mm256_set1_ps(d0 * dx[j][b]), _mm256_cvtepi32_ps(s0), acc0[j]);
            if (kind == 1)
                accm[j] += qx_h(w + 2) * dx[j][b] * (float)is[j][b];
        }
    }
    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        __m128 r = _mm_add_ps(acc4[j], _mm_movehl_ps(acc4[j], acc4[j]));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        out[j] = qx_hsum(_mm256_add_ps(acc0[j], acc1[j])) + _mm_cvtss_f32(r) + accm[j];
    }
}

/* ------------------------------------------------------------ K types */

/*
 * Q4_K/Q5_K's packed scales -> the 8 scales and the 8 mins as the bytes of
 * two 64-bit integers (layout in quant.c). Kept in registers: storing them
 * as bytes and reloading 8 at a time stalls store-to-load forwarding.
 */
QX_INLINE void qx_kscales(const uint8_t *s, uint64_t *sc, uint64_t *m)
{
    uint32_t u[3];
    memcpy(u, s, 12);
    *sc = (u[0] & 0x3f3f3f3fu) | (uint64_t)((u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u))
                                     << 32;
    *m = (u[1] & 0x3f3f3f3fu) |
         (uint64_t)(((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u)) << 32;
}

/* q5: 0 for Q4_K, 1 for Q5_K. */
QX_INLINE void qx_dotk(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                       const int nx, const int q5)
{
    const int bytes = q5 ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m10 = _mm256_set1_epi8(0x10);
    __m256 acc[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int16_t *bs[NR_QUANT_MR];

    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = _mm256_setzero_ps();
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        bs[j] = nr_qa_bsums(xq + (size_t)j * xs, k);
    }
    for (int b = 0; b < k / 256; b++, w += bytes) {
        uint64_t sc, m;
        const uint8_t *qs = w + (q5 ? 48 : 16);
        __m256i sumi[NR_QUANT_MR], sumi1[NR_QUANT_MR], qh = _mm256_setzero_si256();
        float d = qx_h(w), dmin = qx_h(w + 2);

        qx_kscales(w + 4, &sc, &m);
        /* the 8 scales in both 128-bit lanes, for per-chunk byte broadcasts */
        const __m256i sc8 = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128((long long)sc));
        /* mins: m[j] repeated for the two 16-sums of sub-block j */
        __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m));
        __m256i m16 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(m8, m8)),
                                              _mm_unpackhi_epi16(m8, m8), 1);
        if (q5)
            qh = _mm256_loadu_si256((const __m256i *)(w + 16));
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            sumi[j] = _mm256_setzero_si256();
            sumi1[j] = _mm256_setzero_si256();
        }
        QX_UNROLL
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(v, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            /* int16 lanes of sc[2c] / sc[2c+1]: byte 2c (2c+1) then a zero byte */
            const __m256i p_lo = _mm256_set1_epi16((short)(0x8000 | (2 * c)));
            const __m256i p_hi = _mm256_set1_epi16((short)(0x8000 | (2 * c + 1)));
            __m256i s_lo = _mm256_shuffle_epi8(sc8, p_lo), s_hi = _mm256_shuffle_epi8(sc8, p_hi);
            if (q5) {
                /* bits 2c and 2c+1 of qh (shifted down by 2 per chunk) -> bit 4 */
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), m10));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), m10));
                qh = _mm256_srli_epi16(qh, 2);
            }
            QX_UNROLL
            for (int j = 0; j < nx; j++) {
                const uint8_t *a = xq + (size_t)j * xs + 256 * (size_t)b + 64 * (size_t)c;
                __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_load_si256((const __m256i *)a));
                __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_load_si256((const __m256i *)(a + 32)));
                sumi[j] = QX_DOT_I16(sumi[j], p0, s_lo);
                sumi1[j] = QX_DOT_I16(sumi1[j], p1, s_hi);
            }
        }
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            __m256i mins =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[j] + 16 * b)), m16);
            __m256i tot = _mm256_add_epi32(sumi[j], sumi1[j]);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx[j][b]), _mm256_cvtepi32_ps(tot), acc[j]);
            acc[j] =
                _mm256_fmadd_ps(_mm256_set1_ps(-dmin * dx[j][b]), _mm256_cvtepi32_ps(mins), acc[j]);
        }
    }
    QX_UNROLL
    for (int j = 0; j < nx; j++)
        out[j] = qx_hsum(acc[j]);
}

QX_INLINE void qx_dotq6k(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                         const int nx)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int16_t *bs[NR_QUANT_MR];

    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = _mm256_setzero_ps();
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        bs[j] = nr_qa_bsums(xq + (size_t)j * xs, k);
    }
    for (int b = 0; b < k / 256; b++, w += 210) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(w + 192));
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8), sumi[NR_QUANT_MR], sumi1[NR_QUANT_MR];
        float d = qx_h(w + 208);

        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            sumi[j] = _mm256_setzero_si256();
            sumi1[j] = _mm256_setzero_si256();
        }
        QX_UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i qa = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
            __m256i qb = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(qa, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(qb, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                                   _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            QX_UNROLL
            for (int s = 0; s < 4; s++) {
                /* scales of sub-blocks 8h+2s (lanes 0..7) and 8h+2s+1 (8..15) */
                const int g = 8 * h + 2 * s;
                __m128i pick = _mm_setr_epi8((char)g, (char)g, (char)g, (char)g, (char)g, (char)g,
                                             (char)g, (char)g, (char)(g + 1), (char)(g + 1),
                                             (char)(g + 1), (char)(g + 1), (char)(g + 1),
                                             (char)(g + 1), (char)(g + 1), (char)(g + 1));
                __m256i scs = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
                QX_UNROLL
                for (int j = 0; j < nx; j++) {
                    const uint8_t *a = xq + (size_t)j * xs + 256 * (size_t)b + 128 * h + 32 * s;
                    __m256i p = _mm256_maddubs_epi16(q[s], _mm256_load_si256((const __m256i *)a));
                    if (s & 1)
                        sumi1[j] = QX_DOT_I16(sumi1[j], p, scs);
                    else
                        sumi[j] = QX_DOT_I16(sumi[j], p, scs);
                }
            }
        }
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            /* - 32 * sum_g sc[g] * bsums[g] */
            __m256i corr =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[j] + 16 * b)), sc16);
            sumi[j] =
                _mm256_sub_epi32(_mm256_add_epi32(sumi[j], sumi1[j]), _mm256_slli_epi32(corr, 5));
            acc[j] =
                _mm256_fmadd_ps(_mm256_set1_ps(d * dx[j][b]), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    QX_UNROLL
    for (int j = 0; j < nx; j++)
        out[j] = qx_hsum(acc[j]);
}

/* ------------------------------------------------------------ float weights */

/* kind: 0 F32, 1 F16, 2 BF16. k any; the tail past a multiple of 8 is scalar. */
QX_INLINE __m256 qx_load8(const uint8_t *w, const int kind)
{
    if (kind == 0)
        return _mm256_loadu_ps((const float *)w);
    if (kind == 1)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16));
}

QX_INLINE float qx_load1(const uint8_t *w, const int kind)
{
    float f;
    uint16_t h;
    if (kind == 0) {
        memcpy(&f, w, 4);
        return f;
    }
    memcpy(&h, w, 2);
    if (kind == 1)
        return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    memcpy(&f, &u, 4);
    return f;
}

QX_INLINE void qx_dotf(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                       const int nx, const int kind)
{
    const int es = kind == 0 ? 4 : 2;
    __m256 acc[NR_QUANT_MR], acc1[NR_QUANT_MR];
    int i = 0;

    /* two chains per act row (FMA latency), 16 elements a step */
    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = _mm256_setzero_ps();
        acc1[j] = _mm256_setzero_ps();
    }
    for (; i + 16 <= k; i += 16) {
        __m256 v0 = qx_load8(w + (size_t)i * es, kind);
        __m256 v1 = qx_load8(w + (size_t)(i + 8) * es, kind);
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            const float *x = (const float *)(xq + (size_t)j * xs) + i;
            acc[j] = _mm256_fmadd_ps(v0, _mm256_load_ps(x), acc[j]);
            acc1[j] = _mm256_fmadd_ps(v1, _mm256_load_ps(x + 8), acc1[j]);
        }
    }
    for (; i + 8 <= k; i += 8) {
        __m256 v = qx_load8(w + (size_t)i * es, kind);
        QX_UNROLL
        for (int j = 0; j < nx; j++)
            acc[j] = _mm256_fmadd_ps(v, _mm256_load_ps((const float *)(xq + (size_t)j * xs) + i),
                                     acc[j]);
    }
    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        const float *x = (const float *)(xq + (size_t)j * xs);
        float s = qx_hsum(_mm256_add_ps(acc[j], acc1[j]));
        for (int t = i; t < k; t++)
            s += qx_load1(w + (size_t)t * es, kind) * x[t];
        out[j] = s;
    }
}

/* ------------------------------------------------------------ entry points */

#define QX_ENTRY(name, call)                                                                       \
    __attribute__((unused)) static void name(const void *w, const void *xq, size_t xs, int nx,     \
                                             int k, float *out)                                    \
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

#define QX_Q4_0(w, x, xs, k, o, n) qx_dot32(w, x, xs, k, o, n, 0)
#define QX_Q4_1(w, x, xs, k, o, n) qx_dot32(w, x, xs, k, o, n, 1)
#define QX_Q5_0(w, x, xs, k, o, n) qx_dot32(w, x, xs, k, o, n, 2)
#define QX_Q8_0(w, x, xs, k, o, n) qx_dot32(w, x, xs, k, o, n, 3)
#define QX_Q4_K(w, x, xs, k, o, n) qx_dotk(w, x, xs, k, o, n, 0)
#define QX_Q5_K(w, x, xs, k, o, n) qx_dotk(w, x, xs, k, o, n, 1)
#define QX_Q6_K(w, x, xs, k, o, n) qx_dotq6k(w, x, xs, k, o, n)
#define QX_F32(w, x, xs, k, o, n)  qx_dotf(w, x, xs, k, o, n, 0)
#define QX_F16(w, x, xs, k, o, n)  qx_dotf(w, x, xs, k, o, n, 1)
#define QX_BF16(w, x, xs, k, o, n) qx_dotf(w, x, xs, k, o, n, 2)

QX_ENTRY(qx_q4_0, QX_Q4_0)
QX_ENTRY(qx_q4_1, QX_Q4_1)
QX_ENTRY(qx_q5_0, QX_Q5_0)
QX_ENTRY(qx_q8_0, QX_Q8_0)
QX_ENTRY(qx_q4_k, QX_Q4_K)
QX_ENTRY(qx_q5_k, QX_Q5_K)
QX_ENTRY(qx_q6_k, QX_Q6_K)
QX_ENTRY(qx_f32, QX_F32)
QX_ENTRY(qx_f16, QX_F16)
QX_ENTRY(qx_bf16, QX_BF16)

/* ------------------------------------------------------------ f16 helpers */

static float qx_dot_f16(const uint16_t *a, const float *b, int n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))),
                               _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8))),
                               _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))),
                               _mm256_loadu_ps(b + i), acc0);
    float s = qx_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        s += _cvtsh_ss(a[i]) * b[i];
    return s;
}

static void qx_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                   _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * _cvtsh_ss(x[i]);
}

static void qx_f32_to_f16(const float *x, uint16_t *y, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

/* ------------------------------------------------------------ act */

/* roundf (half away from zero) of finite v, clamped to ±127, as int32:
 * trunc(v) plus the sign where the fraction v - trunc(v) (exact for
 * |v| < 2^23) reaches one half. */
QX_INLINE __m256i qx_round8(__m256 v)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(v, t);
    __m256 up = _mm256_and_ps(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
    __m256 dn = _mm256_and_ps(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ), one);
    t = _mm256_sub_ps(_mm256_add_ps(t, up), dn);
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvttps_epi32(t);
}

QX_INLINE int32_t qx_hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* nr_quant_act_block_ref, byte for byte (tested): the same float operations
 * (amax is exact in any order), roundf by qx_round8. Blocks with NaN/Inf go
 * to the reference. */
static float qx_act_block(const float *x, int n, int8_t *q, int32_t *gsum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(3.4028235e38f);
    __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();

    for (int i = 0; i < n; i += 8) {
        __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));
        mx = _mm256_max_ps(mx, a);
    }
    if (_mm256_movemask_ps(bad))
        return nr_quant_act_block_ref(x, n, q, gsum);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float d = _mm_cvtss_f32(m) / 127.0f;
    __m256 id = _mm256_set1_ps(d >= 1e-30f ? 1.0f / d : 0.0f);
    for (int g = 0; g < n / 16; g++) {
        __m256i i0 = qx_round8(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g), id));
        __m256i i1 = qx_round8(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g + 8), id));
        /* int32 -> int16 (lane-wise, reordered) -> int8 */
        __m256i h = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xd8);
        __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        _mm_storeu_si128((__m128i *)(q + 16 * g), b);
        gsum[g] = qx_hsum_i32(_mm256_add_epi32(i0, i1));
    }
    return d;
}

/* The table of one variant; q4k / q6k name the Q4_K and Q6_K kernels (the
 * avx512 file has its own 512-bit Q6_K). */
#define QX_KERNELS(var_name, q4k, q6k)                                                             \
    {                                                                                              \
        .name = var_name,                                                                          \
        .dot =                                                                                     \
            {                                                                                      \
                [NR_GGML_F32] = qx_f32,   [NR_GGML_F16] = qx_f16,   [NR_GGML_BF16] = qx_bf16,      \
                [NR_GGML_Q4_0] = qx_q4_0, [NR_GGML_Q4_1] = qx_q4_1, [NR_GGML_Q5_0] = qx_q5_0,      \
                [NR_GGML_Q8_0] = qx_q8_0, [NR_GGML_Q4_K] = q4k,     [NR_GGML_Q5_K] = qx_q5_k,      \
                [NR_GGML_Q6_K] = q6k,                                                              \
            },                                                                                     \
        .dot_f16 = qx_dot_f16, .axpy_f16 = qx_axpy_f16, .f32_to_f16 = qx_f32_to_f16,               \
        .act_block = qx_act_block,                                                                 \
    }

#endif
