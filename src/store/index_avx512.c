/*
 * index_avx512: the index's dot products with AVX-512F and AVX512-VNNI.
 *
 * fp32: four rows at a time share each query load; each row keeps one
 * 16-lane accumulator over its dimp/16 steps and is reduced with
 * _mm512_reduce_add_ps — the same sequence for a row taken alone, so a score
 * never depends on a row's neighbours.
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
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *r0 = rows + (size_t)i * stride, *r1 = r0 + stride, *r2 = r1 + stride,
                    *r3 = r2 + stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < dimp; t += 16) {
            __m512 qv = _mm512_load_ps(q + t);
            a0 = _mm512_fmadd_ps(_mm512_load_ps(r0 + t), qv, a0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(r1 + t), qv, a1);
            a2 = _mm512_fmadd_ps(_mm512_load_ps(r2 + t), qv, a2);
            a3 = _mm512_fmadd_ps(_mm512_load_ps(r3 + t), qv, a3);
        }
        out[i] = _mm512_reduce_add_ps(a0);
        out[i + 1] = _mm512_reduce_add_ps(a1);
        out[i + 2] = _mm512_reduce_add_ps(a2);
        out[i + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; i < n; i++) {
        const float *r0 = rows + (size_t)i * stride;
        __m512 a0 = _mm512_setzero_ps();
        for (int t = 0; t < dimp; t += 16)
            a0 = _mm512_fmadd_ps(_mm512_load_ps(r0 + t), _mm512_load_ps(q + t), a0);
        out[i] = _mm512_reduce_add_ps(a0);
    }
}

static void dot_i8_avx512(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                          int dimp, int n, int32_t *out)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const int8_t *r0 = codes + (size_t)i * stride, *r1 = r0 + stride, *r2 = r1 + stride,
                     *r3 = r2 + stride;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < dimp; t += 64) {
            __m512i qu = _mm512_xor_si512(_mm512_load_si512(q + t), bias);
            a0 = _mm512_dpbusd_epi32(a0, qu, _mm512_load_si512(r0 + t));
            a1 = _mm512_dpbusd_epi32(a1, qu, _mm512_load_si512(r1 + t));
            a2 = _mm512_dpbusd_epi32(a2, qu, _mm512_load_si512(r2 + t));
            a3 = _mm512_dpbusd_epi32(a3, qu, _mm512_load_si512(r3 + t));
        }
        out[i] = _mm512_reduce_add_epi32(a0) - 128 * csum[i];
        out[i + 1] = _mm512_reduce_add_epi32(a1) - 128 * csum[i + 1];
        out[i + 2] = _mm512_reduce_add_epi32(a2) - 128 * csum[i + 2];
        out[i + 3] = _mm512_reduce_add_epi32(a3) - 128 * csum[i + 3];
    }
    for (; i < n; i++) {
        const int8_t *r0 = codes + (size_t)i * stride;
        __m512i a0 = _mm512_setzero_si512();
        for (int t = 0; t < dimp; t += 64)
            a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_load_si512(q + t), bias),
                                     _mm512_load_si512(r0 + t));
        out[i] = _mm512_reduce_add_epi32(a0) - 128 * csum[i];
    }
}

const struct nr_index_kern nr_index_kern_avx512 = {"avx512", dot_f32_avx512, dot_i8_avx512};
