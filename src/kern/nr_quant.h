/*
 * nr_quant: GGUF weight formats for the decoder — block layouts,
 * dequantization, reference quantizers, and fused quantized dot products
 * (matrix × vector for decode, matrix × several vectors for prefill).
 *
 * Weight types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K
 * (numbers as enum nr_ggml_type in nr_gguf.h; byte layouts exactly as GGUF /
 * ggml define them, written out in quant.c's design comment).
 *
 * Activations: a dot product of a quantized weight row with an fp32 vector
 * is computed the way llama.cpp does it, so results are comparable: the
 * vector is first quantized once per step ("act" below) into the format
 * the weight type pairs with, then integer dot products run per block:
 *   Q4_0, Q4_1, Q5_0, Q8_0  ->  Q8_0-style blocks of 32 (+ block sums for Q4_1)
 *   Q4_K, Q5_K, Q6_K        ->  Q8_K blocks of 256 (fp32 scale + 16 sums)
 *   F32, F16, BF16          ->  fp32 (no quantization)
 * The exact act layout is private to quant.c; callers only size buffers with
 * nr_quant_act_bytes and fill them with nr_quant_act.
 *
 * Implementations: quant.c holds the scalar reference of everything and the
 * dispatch; quant_avx2.c, quant_avx512.c, quant_neon.c hold SIMD dot
 * products, chosen once at start-up with the same rule as nr_kern
 * (NANORAG_KERN=scalar|avx2|avx512|neon forces one, for tests and
 * benchmarks). Every SIMD routine is tested against the scalar one.
 *
 * Threads: all functions are reentrant; nr_quant_matvec and nr_quant_matmul
 * split rows over the pool (NULL pool: calling thread only). Their results
 * are bitwise equal to nr_quant_dot_row's for any thread count and any m
 * (tests/test_quant.c), so prefill and decode compute the same numbers.
 * An activation block holding NaN or Inf makes the dots that use it NaN.
 */
#ifndef NR_QUANT_H
#define NR_QUANT_H

#include <stddef.h>
#include <stdint.h>

struct nr_pool;

/* A 2-D weight as stored in the file: n rows of k elements, row-major. */
struct nr_qmat {
    int type;         /* enum nr_ggml_type */
    int n;            /* rows (output features) */
    int k;            /* elements per row (input features); multiple of the block */
    size_t row_bytes; /* bytes per row (nr_quant_row_bytes(type, k)) */
    const void *data; /* n * row_bytes bytes (borrowed, usually the mmap) */
};

/* 1 for the types above, 0 otherwise. */
int nr_quant_supported(int type);
/* Elements per block: 1 (F32/F16/BF16), 32, or 256; 0 if unsupported. */
int nr_quant_block(int type);
/* Bytes for k elements (k a multiple of the block); 0 if unsupported or not a multiple. */
size_t nr_quant_row_bytes(int type, int64_t k);
/* Short name ("q4_k"); "?" for unknown. */
const char *nr_quant_name(int type);

/* Dequantize one row of k elements (k a multiple of the block). */
void nr_quant_dequant_row(int type, const void *src, float *dst, int64_t k);

/* Reference quantizer (round to nearest, the ggml reference rules; for the
 * writer, tests and benchmark models, not for speed). k multiple of the block.
 * F16/BF16 round to nearest even. 0 or NR_EINVAL (unsupported type / k). */
int nr_quant_quantize_row(int type, const float *src, void *dst, int64_t k);

/* Bytes of act buffer for a k-vector multiplied by weights of `wtype`. */
size_t nr_quant_act_bytes(int wtype, int k);
/* Quantize x[k] for weights of `wtype` into xq (nr_quant_act_bytes bytes,
 * 64-byte aligned). */
void nr_quant_act(int wtype, const float *x, int k, void *xq);

/* dot(row r of W, x) for one row, with xq from nr_quant_act(W->type, x). */
float nr_quant_dot_row(const struct nr_qmat *W, int r, const void *xq);

/* y[r] = dot(W[r], x) for r in [0, n). xq from nr_quant_act. */
void nr_quant_matvec(struct nr_pool *pool, const struct nr_qmat *W, const void *xq, float *y);

/*
 * nm matvecs in one pool run (nm <= NR_QUANT_MAX_GROUP): y[i][r] =
 * dot(W[i][r], xq[i]). For matrices that read the same input (q/k/v,
 * gate/up in a decode step): one hand-off to the pool instead of nm, the
 * rows of all of them spread over the threads together. Bitwise equal to nm
 * nr_quant_matvec calls.
 */
#define NR_QUANT_MAX_GROUP 4
void nr_quant_matvec_n(struct nr_pool *pool, int nm, const struct nr_qmat *const *W,
                       const void *const *xq, float *const *y);

/*
 * C[i][r] = dot(W[r], x_i) for m vectors: xq holds m act rows back to back,
 * each nr_quant_act_bytes(W->type, W->k) bytes; C is [m][ldc]. Weight rows
 * are reused across the m vectors while in cache (prefill).
 */
void nr_quant_matmul(struct nr_pool *pool, const struct nr_qmat *W, const void *xq, int m, float *C,
                     int ldc);

/* f16 helpers for the KV cache (SIMD where present). */
float nr_quant_dot_f16(const uint16_t *a, const float *b, int n);
void nr_quant_axpy_f16(float *y, float a, const uint16_t *x, int n); /* y += a*x */
void nr_quant_f32_to_f16(const float *x, uint16_t *y, int n);

/* Name of the variant in use ("avx512", ...). */
const char *nr_quant_variant(void);

#endif
