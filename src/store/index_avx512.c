/*
 * index_avx512: the index's dot products with AVX-512F and AVX512-VNNI.
 *
 * One row at a time, several accumulators per row: the rows of a block are
 * back to back, so the scan is one sequential stream, which the hardware
 * prefetchers follow best. (Interleaving four rows to share query loads made
 * four short streams 1.5 KiB apart and ran at ~60% of this speed on Zen 4;
 * software prefetch did not recover it. The query stays in L1 either way.)
 *
 * fp32: accumulators a0..a3 over steps of 64 floats, the rest (dimp % 64,
 * a multiple of 16) into a0, then one reduction: every row gets the same
 * sequence, so a score never depends on where the row sits.
 *
 * int8: vpdpbusd multiplies unsigned by signed bytes. The query byte q is
 * turned into q + 128 (xor 0x80) and the row's code v stays signed:
 * sum (q + 128) v = sum q v + 128 sum v, so the exact int8 dot is the
 * accumulator minus 128 * csum (the row's code sum, kept by the index).
 * No overflow: |acc| <= 255 * 127 * 8192 < 2^31.
 */
#include "nr_index.h"

#include <immintrin.h>

static void dot_f32_avx512(const float *q, const float *rows, size_t stride, int dimp, int n,
                           float *out)
{
    for (int i = 0; i < n; i++) {
        const float *r = rows + (size_t)i * stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int t = 0;
        for (; t + 64 <= dimp; t += 64) {
            a0 = _mm512_fmadd_ps(_mm512_load_ps(r + t), _mm512_load_ps(q + t), a0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(r + t + 16), _mm512_load_ps(q + t + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_load_ps(r + t + 32), _mm512_load_ps(q + t + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_load_ps(r + t + 48), _mm512_load_ps(q + t + 48), a3);
        }
        for (; t < dimp; t += 16)
            a0 = _mm512_fmadd_ps(_mm512_load_ps(r + t), _mm512_load_ps(q + t), a0);
        out[i] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

static void dot_i8_avx512(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                          int dimp, int n, int32_t *out)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int i = 0; i < n; i++) {
        const int8_t *r = codes + (size_t)i * stride;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0;
        int t = 0;
        for (; t + 128 <= dimp; t += 128) {
            __m512i q0 = _mm512_xor_si512(_mm512_load_si512(q + t), bias);
            __m512i q1 = _mm512_xor_si512(_mm512_load_si512(q + t + 64), bias);
            a0 = _mm512_dpbusd_epi32(a0, q0, _mm512_load_si512(r + t));
            a1 = _mm512_dpbusd_epi32(a1, q1, _mm512_load_si512(r + t + 64));
        }
        if (t < dimp)
            a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_load_si512(q + t), bias),
                                     _mm512_load_si512(r + t));
        out[i] = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1)) - 128 * csum[i];
    }
}

const struct nr_index_kern nr_index_kern_avx512 = {"avx512", dot_f32_avx512, dot_i8_avx512};
