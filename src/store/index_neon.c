/*
 * index_neon: the index's dot products with NEON and the dotprod extension
 * (armv8.2-a+dotprod: Cortex-A78AE on the Orin).
 *
 * One row at a time, as index_avx512.c explains (one sequential stream).
 * fp32: four 4-lane accumulators over steps of 16 floats, one reduction.
 * int8: sdot (vdotq_s32) multiplies signed by signed bytes directly; exact
 * in int32 (|acc| <= 127 * 127 * 8192 < 2^31).
 */
#include "nr_index.h"

#include <arm_neon.h>

static void dot_f32_neon(const float *q, const float *rows, size_t stride, int dimp, int n,
                         float *out)
{
    for (int i = 0; i < n; i++) {
        const float *r = rows + (size_t)i * stride;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < dimp; t += 16) { /* dimp % 16 == 0 */
            a0 = vfmaq_f32(a0, vld1q_f32(r + t), vld1q_f32(q + t));
            a1 = vfmaq_f32(a1, vld1q_f32(r + t + 4), vld1q_f32(q + t + 4));
            a2 = vfmaq_f32(a2, vld1q_f32(r + t + 8), vld1q_f32(q + t + 8));
            a3 = vfmaq_f32(a3, vld1q_f32(r + t + 12), vld1q_f32(q + t + 12));
        }
        out[i] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    }
}

static void dot_i8_neon(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                        int dimp, int n, int32_t *out)
{
    (void)csum;
    for (int i = 0; i < n; i++) {
        const int8_t *r = codes + (size_t)i * stride;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < dimp; t += 64) { /* dimp % 64 == 0 */
            a0 = vdotq_s32(a0, vld1q_s8(r + t), vld1q_s8(q + t));
            a1 = vdotq_s32(a1, vld1q_s8(r + t + 16), vld1q_s8(q + t + 16));
            a2 = vdotq_s32(a2, vld1q_s8(r + t + 32), vld1q_s8(q + t + 32));
            a3 = vdotq_s32(a3, vld1q_s8(r + t + 48), vld1q_s8(q + t + 48));
        }
        out[i] = vaddvq_s32(vaddq_s32(vaddq_s32(a0, a1), vaddq_s32(a2, a3)));
    }
}

const struct nr_index_kern nr_index_kern_neon = {"neon", dot_f32_neon, dot_i8_neon};
