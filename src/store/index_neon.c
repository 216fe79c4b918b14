/*
 * index_neon: the index's dot products with NEON and the dotprod extension
 * (armv8.2-a+dotprod: Cortex-A78AE on the Orin).
 *
 * fp32: four rows at a time share each query load; one 4-lane accumulator
 * per row, reduced with vaddvq_f32, the same sequence for a row alone.
 * int8: sdot (vdotq_s32) multiplies signed by signed bytes directly; exact
 * in int32 (|acc| <= 127 * 127 * 8192 < 2^31).
 */
#include "nr_index.h"

#include <arm_neon.h>

static void dot_f32_neon(const float *q, const float *rows, size_t stride, int dimp, int n,
                         float *out)
{
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *r0 = rows + (size_t)i * stride, *r1 = r0 + stride, *r2 = r1 + stride,
                    *r3 = r2 + stride;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < dimp; t += 4) {
            float32x4_t qv = vld1q_f32(q + t);
            a0 = vfmaq_f32(a0, vld1q_f32(r0 + t), qv);
            a1 = vfmaq_f32(a1, vld1q_f32(r1 + t), qv);
            a2 = vfmaq_f32(a2, vld1q_f32(r2 + t), qv);
            a3 = vfmaq_f32(a3, vld1q_f32(r3 + t), qv);
        }
        out[i] = vaddvq_f32(a0);
        out[i + 1] = vaddvq_f32(a1);
        out[i + 2] = vaddvq_f32(a2);
        out[i + 3] = vaddvq_f32(a3);
    }
    for (; i < n; i++) {
        const float *r0 = rows + (size_t)i * stride;
        float32x4_t a0 = vdupq_n_f32(0.0f);
        for (int t = 0; t < dimp; t += 4)
            a0 = vfmaq_f32(a0, vld1q_f32(r0 + t), vld1q_f32(q + t));
        out[i] = vaddvq_f32(a0);
    }
}

static void dot_i8_neon(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                        int dimp, int n, int32_t *out)
{
    int i = 0;
    (void)csum;
    for (; i + 4 <= n; i += 4) {
        const int8_t *r0 = codes + (size_t)i * stride, *r1 = r0 + stride, *r2 = r1 + stride,
                     *r3 = r2 + stride;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < dimp; t += 16) {
            int8x16_t qv = vld1q_s8(q + t);
            a0 = vdotq_s32(a0, vld1q_s8(r0 + t), qv);
            a1 = vdotq_s32(a1, vld1q_s8(r1 + t), qv);
            a2 = vdotq_s32(a2, vld1q_s8(r2 + t), qv);
            a3 = vdotq_s32(a3, vld1q_s8(r3 + t), qv);
        }
        out[i] = vaddvq_s32(a0);
        out[i + 1] = vaddvq_s32(a1);
        out[i + 2] = vaddvq_s32(a2);
        out[i + 3] = vaddvq_s32(a3);
    }
    for (; i < n; i++) {
        const int8_t *r0 = codes + (size_t)i * stride;
        int32x4_t a0 = vdupq_n_s32(0);
        for (int t = 0; t < dimp; t += 16)
            a0 = vdotq_s32(a0, vld1q_s8(r0 + t), vld1q_s8(q + t));
        out[i] = vaddvq_s32(a0);
    }
}

const struct nr_index_kern nr_index_kern_neon = {"neon", dot_f32_neon, dot_i8_neon};
