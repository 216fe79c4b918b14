/*
 * quant_internal: what quant.c shares with its SIMD variants and the tests:
 * the private activation ("act") layouts and the table of kernels one
 * variant fills.
 *
 * ACT LAYOUTS (one act row; rows of a matmul are nr_quant_act_bytes apart,
 * a multiple of 64, so every row keeps the 64-byte alignment of the first):
 *
 *   Q8 (for Q4_0, Q4_1, Q5_0, Q8_0 weights), nb = k / 32 blocks:
 *     int8_t  qs[k]      at 0              q[t] = roundf(x[t] / d[b]), |q| <= 127
 *     float   d[nb]      at up64(k)        d[b] = max_t |x[t]| / 127 over block b
 *     int32_t isum[nb]   after d           isum[b] = sum of block b's q
 *   Q8K (for Q4_K, Q5_K, Q6_K weights), nb = k / 256 super-blocks:
 *     int8_t  qs[k]      at 0              as above, one d per 256
 *     float   d[nb]      at up64(k)
 *     int16_t bsums[16*nb] after d         sum of each run of 16 q
 *   F32 (for F32, F16, BF16 weights):
 *     float   x[k]       at 0              a plain copy
 *
 * Unlike ggml's block_q8_0 / block_q8_K, quants and scales live in separate
 * arrays: the quants of every block are then contiguous and 64-byte aligned
 * for the SIMD loads, and d stays fp32 (ggml rounds Q8_0's to fp16; keeping
 * fp32 only removes an error). The Q8K scale is symmetric (±127, never -128,
 * like Q8) so that a sign trick that negates an activation cannot overflow.
 *
 * KERNELS. A dot kernel computes, for one weight row w (k elements, the
 * file's bytes) and nx act rows (1 <= nx <= NR_QUANT_MR, row j at
 * xq + j*xstride bytes):   out[j] = dot(w, act_j).
 * matvec calls it with nx = 1; matmul with up to NR_QUANT_MR so one weight
 * row's unpacked blocks serve several activations. The integer part of each
 * block (or sub-block) product is defined exactly in quant.c's design
 * comment; every variant computes the same integers and differs from the
 * scalar reference only in the order of the fp32 accumulation.
 */
#ifndef NR_QUANT_INTERNAL_H
#define NR_QUANT_INTERNAL_H

#include "nr_gguf.h"

#include <stddef.h>
#include <stdint.h>

#define NR_QUANT_MR 4 /* act rows per kernel call in matmul */

static inline size_t nr_qa_up64(size_t v)
{
    return (v + 63) & ~(size_t)63;
}

/* Offsets inside one act row of k elements (layouts above). */
static inline const float *nr_qa_d(const void *xq, int k)
{
    return (const float *)((const char *)xq + nr_qa_up64((size_t)k));
}
static inline const int32_t *nr_qa_isum(const void *xq, int k)
{
    return (const int32_t *)(nr_qa_d(xq, k) + k / 32);
}
static inline const int16_t *nr_qa_bsums(const void *xq, int k)
{
    return (const int16_t *)(nr_qa_d(xq, k) + k / 256);
}

typedef void (*nr_qdot_fn)(const void *w, const void *xq, size_t xstride, int nx, int k,
                           float *out);

struct nr_quant_kernels {
    const char *name;                   /* "scalar", "avx2", "avx512", "neon" */
    nr_qdot_fn dot[NR_GGML_TYPE_COUNT]; /* by weight type; NULL: use the scalar one */
    float (*dot_f16)(const uint16_t *a, const float *b, int n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);
    void (*f32_to_f16)(const float *x, uint16_t *y, int n);
    /* One act block of n (32 or 256) floats: q, the 16-element sums and the
     * returned scale, byte for byte as nr_quant_act_block_ref. NULL: scalar. */
    float (*act_block)(const float *x, int n, int8_t *q, int32_t *gsum);
};

/* The reference act block (quant.c): d = amax / 127 (NaN, with q = 0, if x
 * holds NaN or Inf), q = roundf(x / d) clamped to ±127 (0 if d < 1e-30),
 * gsum[g] = sum of q[16g .. 16g+15]. */
float nr_quant_act_block_ref(const float *x, int n, int8_t *q, int32_t *gsum);

extern const struct nr_quant_kernels nr_quant_scalar_kernels;
#if defined(__x86_64__)
extern const struct nr_quant_kernels nr_quant_avx2_kernels;
extern const struct nr_quant_kernels nr_quant_avx512_kernels;
#endif
#if defined(__aarch64__)
extern const struct nr_quant_kernels nr_quant_neon_kernels;
#endif

/* The table named `name` if built and supported by this CPU, else NULL. */
const struct nr_quant_kernels *nr_quant_kernels_by_name(const char *name);
/* The table in use (selected once, as nr_kern: NANORAG_KERN or the best). */
const struct nr_quant_kernels *nr_quant_kernels_get(void);
/*
 * Tests only: make `k` the table every nr_quant_* call uses (NULL: back to
 * the selected one). Not thread-safe: call while no kernel runs.
 */
void nr_quant_kernels_force(const struct nr_quant_kernels *k);

/* The Q4_K / Q5_K packed 6-bit scale and min of sub-block j (0..7). */
static inline void nr_q4k_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

#endif
