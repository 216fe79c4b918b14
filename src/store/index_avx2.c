/*
 * index_avx2: the index's dot products with AVX2 + FMA.
 *
 * One row at a time, as index_avx512.c explains (one sequential stream).
 * fp32: four 8-lane accumulators over steps of 32 floats, the rest into a0,
 * one reduction: the same sequence for every row.
 *
 * int8 without VNNI: vpmaddubsw (u8 x s8, pairs summed to int16 with
 * saturation) on |q| and sign(v, q) = v * sign(q), so each product is q * v.
 * It cannot saturate here: codes lie in [-127, 127] (the quantizer never
 * makes -128, which is also what keeps sign(v, q) from overflowing), so a
 * pair sums to at most 2 * 127 * 127 = 32258 < 32767. vpmaddwd with ones
 * then widens pairs to int32.
 */
#include "nr_index.h"

#include <immintrin.h>

static float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static void dot_f32_avx2(const float *q, const float *rows, size_t stride, int dimp, int n,
                         float *out)
{
    for (int i = 0; i < n; i++) {
        const float *r = rows + (size_t)i * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int t = 0;
        for (; t + 32 <= dimp; t += 32) {
            a0 = _mm256_fmadd_ps(_mm256_load_ps(r + t), _mm256_load_ps(q + t), a0);
            a1 = _mm256_fmadd_ps(_mm256_load_ps(r + t + 8), _mm256_load_ps(q + t + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_load_ps(r + t + 16), _mm256_load_ps(q + t + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_load_ps(r + t + 24), _mm256_load_ps(q + t + 24), a3);
        }
        for (; t < dimp; t += 8)
            a0 = _mm256_fmadd_ps(_mm256_load_ps(r + t), _mm256_load_ps(q + t), a0);
        out[i] = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}

/* acc += q . v over 32 bytes, exact (see the top of the file). */
static __m256i dot32(__m256i acc, __m256i qa, __m256i qv, const int8_t *r)
{
    __m256i v = _mm256_sign_epi8(_mm256_load_si256((const __m256i *)r), qv);
    __m256i p = _mm256_maddubs_epi16(qa, v);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static void dot_i8_avx2(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                        int dimp, int n, int32_t *out)
{
    (void)csum;
    for (int i = 0; i < n; i++) {
        const int8_t *r = codes + (size_t)i * stride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        for (int t = 0; t < dimp; t += 64) { /* dimp % 64 == 0 */
            __m256i q0 = _mm256_load_si256((const __m256i *)(q + t));
            __m256i q1 = _mm256_load_si256((const __m256i *)(q + t + 32));
            a0 = dot32(a0, _mm256_abs_epi8(q0), q0, r + t);
            a1 = dot32(a1, _mm256_abs_epi8(q1), q1, r + t + 32);
        }
        out[i] = hsum_epi32(_mm256_add_epi32(a0, a1));
    }
}

const struct nr_index_kern nr_index_kern_avx2 = {"avx2", dot_f32_avx2, dot_i8_avx2};
