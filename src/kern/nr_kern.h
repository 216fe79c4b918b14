/*
 * nr_kern: CPU compute kernels for the encoder (and later the decoder).
 *
 * One header, several implementations: kern_scalar.c (the plain reference,
 * always built), kern_avx2.c, kern_avx512.c (x86-64), kern_neon.c (aarch64).
 * Each fills a `struct nr_kern_ops` table; nr_kern_select() picks the best one
 * the CPU supports once, at start-up (or the one named by NANORAG_KERN=
 * scalar|avx2|avx512|neon, for tests and benchmarks), and nr_kern_get()
 * returns it. Tests compare every variant against the scalar table.
 *
 * Layouts: all matrices are row-major fp32. Linear layers follow PyTorch:
 * weight W is [n][k] (out features × in features), y = x·Wᵀ + b.
 * Weights are repacked once at load time (nr_kern_pack) into the layout the
 * selected variant's GEMM micro-kernel reads; the packed form is private to
 * the variant that made it.
 *
 * INT8 linear layers (nr_pw8, nr_kern_pack_i8, nr_kern_linear_i8): weights
 * quantized symmetrically per output channel, activations per row (token) on
 * the fly, int32 accumulation, fp32 epilogue (scales, bias, GELU, residual)
 * and fp32 outputs. The arithmetic is defined once, in kern_internal.h
 * ("INT8 GEMM"); every variant computes the same int32 accumulators exactly.
 */
#ifndef NR_KERN_H
#define NR_KERN_H

#include <stddef.h>
#include <stdint.h>

struct nr_pool;

/* A weight matrix packed for one kernel variant. */
struct nr_pw {
    int n;                         /* output features (rows of W) */
    int k;                         /* input features (cols of W) */
    float *data;                   /* packed copy, owned (nr_free) */
    size_t bytes;                  /* size of data */
    const struct nr_kern_ops *ops; /* the variant that packed it */
};

/*
 * A weight matrix quantized to int8 (one layout shared by every variant; see
 * kern_internal.h). One allocation, carved into data, scale and colsum.
 */
struct nr_pw8 {
    int n;                         /* output features (rows of W) */
    int k;                         /* input features (cols of W) */
    int kp;                        /* k rounded up to a multiple of 4 (one VNNI group) */
    int8_t *data;                  /* [ceil(n/32)][kp/4][32][4] int8, owned (nr_free) */
    float *scale;                  /* [ceil(n/32)*32] max|W[j][:]| / 127 (0 past n) */
    int32_t *colsum;               /* [ceil(n/32)*32] sum_t Wq[j][t] (0 past n) */
    float *smooth_inv;             /* [k] 1/s[t] applied to A before quantizing, or NULL */
    size_t bytes;                  /* size of the one allocation behind data */
    const struct nr_kern_ops *ops; /* the variant whose gemm_i8 runs it */
};

enum nr_act { NR_ACT_NONE = 0, NR_ACT_GELU = 1 /* exact erf GELU, as torch.nn.GELU() */ };

struct nr_kern_ops {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */

    /* Pack W [n][k] row-major into pw (allocates pw->data). 0, NR_EINVAL (n or k < 1),
     * NR_ELIMIT (size overflow) or NR_ENOMEM; on failure nothing is allocated. */
    int (*pack)(struct nr_pw *pw, const float *w, int n, int k);

    /*
     * C[i][j] (+)= act(sum_t A[i][t] * W[j][t] + bias[j]) for i in [0,m),
     * j in [j0,j1). bias may be NULL. With accumulate != 0 the result is added
     * to C's previous contents AFTER the activation (used for residuals:
     * x += W·h + b). j0 and j1 are multiples of the variant's column block
     * (ops->nblock) except j1 == n. Single-threaded: nr_kern_linear splits
     * the work.
     */
    void (*gemm)(const float *A, int lda, const struct nr_pw *W, const float *bias, float *C,
                 int ldc, int m, int j0, int j1, int act, int accumulate);
    int nblock; /* column block of gemm (j0/j1 granularity) */

    float (*dot)(const float *a, const float *b, int n);
    /* y += a * x */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* In place over rows of x [rows][dim]: y = (x - mean) / sqrt(var + eps) * g + b */
    void (*layernorm)(float *x, int rows, int dim, const float *g, const float *b, float eps);
    /* In place softmax over x[0..n) (max-subtracted; x must hold a finite value) */
    void (*softmax)(float *x, int n);

    /* Added after the first draft of this header (fields only appended). */

    /* In place over x[0..n): exp, erf, and exact-erf GELU (the same
     * approximations the fused GEMM epilogue and softmax use; derivation in
     * kern_internal.h, measured errors in each variant's file). */
    void (*exp)(float *x, int n);
    void (*erf)(float *x, int n);
    void (*gelu)(float *x, int n);
    /* Register-blocked micro-kernel behind gemm and the fused attention;
     * NULL for the scalar reference. Private (kern_internal.h). */
    const struct nr_kern_tile *tile;

    /* INT8 path (kern_internal.h, "INT8 GEMM"). NULL in a variant without
     * one (avx2: no VNNI there); nr_kern_pack_i8 then picks the scalar table. */

    /* Quantize rows [0, m) of A [m][lda] (k used; times smooth_inv[t] first
     * when not NULL) into q [m][ldq] (ldq >= kp;
     * bytes [k, kp) set to the quantized zero) and sa [m]. The byte encoding
     * is the variant's own (int8, or int8 + 128 for vpdpbusd). */
    void (*quant_i8)(const float *A, int lda, int m, int k, const float *smooth_inv, uint8_t *q,
                     int ldq, float *sa);
    /* As gemm, from quant_i8's output: C[i][j] (+)= act(acc·sa[i]·sw[j] + bias[j]). */
    void (*gemm_i8)(const uint8_t *q, int ldq, const float *sa, const struct nr_pw8 *W,
                    const float *bias, float *C, int ldc, int m, int j0, int j1, int act,
                    int accumulate);
};

/* Select the implementation once (idempotent; thread-safe after first call). */
const struct nr_kern_ops *nr_kern_get(void);
/* The table named `name`, or NULL if not built or not supported by this CPU. */
const struct nr_kern_ops *nr_kern_by_name(const char *name);
/* The plain reference table. */
const struct nr_kern_ops *nr_kern_scalar(void);

/* Pack W with ops (NULL: nr_kern_get()); pw is cleared first and its ops set on
 * success. W is not retained. Free with nr_kern_pw_free (also safe on a
 * cleared pw). Errors as ops->pack. */
int nr_kern_pack(const struct nr_kern_ops *ops, struct nr_pw *pw, const float *w, int n, int k);
void nr_kern_pw_free(struct nr_pw *pw);

/*
 * C = act(A·Wᵀ + bias) (or C += ... with accumulate), m rows, multi-threaded
 * over pool (NULL: calling thread only). Uses W->ops.
 */
void nr_kern_linear(struct nr_pool *pool, const float *A, int lda, const struct nr_pw *W,
                    const float *bias, float *C, int ldc, int m, int act, int accumulate);

/*
 * Quantize W [n][k] to int8 for ops (NULL: nr_kern_get()); a variant without
 * an int8 GEMM gets the scalar one (pw->ops says which). pw is cleared first.
 * 0, NR_EINVAL (n or k < 1), NR_ELIMIT or NR_ENOMEM; on failure nothing is
 * allocated. W is not retained. Free with nr_kern_pw8_free (safe on a cleared pw).
 * smooth (k positive floats, or NULL) migrates quantization difficulty from
 * activations to weights ("SmoothQuant"): W[j][t]·s[t] is quantized, and
 * A[i][t]/s[t] at run time, so the product is unchanged while an input
 * channel with large activations is scaled down before the per-row max.
 */
int nr_kern_pack_i8(const struct nr_kern_ops *ops, struct nr_pw8 *pw, const float *w, int n, int k,
                    const float *smooth);
void nr_kern_pw8_free(struct nr_pw8 *pw);

/* Bytes of workspace nr_kern_linear_i8 needs for m rows of k inputs. */
size_t nr_kern_i8_ws_bytes(int m, int k);

/*
 * C = act(A·Wᵀ + bias) (or C += ...) in int8, as nr_kern_linear, with A
 * quantized per row first (once per call: every column panel reuses it).
 * ws: caller-owned workspace of at least nr_kern_i8_ws_bytes(m, W->k) bytes,
 * 64-byte aligned (the model sizes one at open for its largest batch, so no
 * call allocates); contents are scratch. ws_bytes too small is a bug of the
 * caller (asserted).
 */
void nr_kern_linear_i8(struct nr_pool *pool, const float *A, int lda, const struct nr_pw8 *W,
                       const float *bias, float *C, int ldc, int m, int act, int accumulate,
                       void *ws, size_t ws_bytes);

/*
 * Multi-head self-attention for one sequence of L tokens
 * (softmax(q·kᵀ·scale)·v per head).
 * qkv: [L][ld_qkv] with Q at column 0, K at `hidden`, V at 2*hidden, where
 * hidden = heads * head_dim and head h uses columns [h*head_dim, (h+1)*head_dim).
 * out: [L][ld_out], columns [0, hidden) written. scratch: L floats.
 * Only heads [h0, h1) are computed (the caller splits heads across threads).
 * Every token attends to all L tokens (no padding: sequences are packed).
 * SIMD variants take a fused, register-blocked path when L <= 512 and
 * head_dim is a multiple of their column block (32 in BERT is); it keeps about
 * 100 KiB of working space on the calling thread's stack and does not touch
 * scratch. Other shapes use ops->dot/softmax/axpy with scratch.
 */
void nr_kern_attention(const struct nr_kern_ops *ops, const float *qkv, int ld_qkv, int L,
                       int heads, int head_dim, int h0, int h1, float scale, float *out, int ld_out,
                       float *scratch);

/* Human-readable SIMD feature list of this CPU ("avx2 fma avx512f ..."). */
const char *nr_kern_cpu_features(void);

#endif
