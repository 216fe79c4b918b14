/*
 * llama.c — decoder-only transformers from GGUF files on the CPU: the
 * `llama`, `qwen2` and `gemma3` architectures of llama.cpp's converter.
 *
 * Tensors (GGUF ne[0] is the innermost dimension, so a weight W [out][in]
 * is stored with ne = {in, out}; E = n_embd, F = n_ff, D = head_dim,
 * Q = n_head·D, K = n_head_kv·D, V = n_vocab):
 *     token_embd          {E, V}     any weight type; rows looked up per token
 *     blk.N.attn_norm     {E}        RMSNorm weight
 *     blk.N.attn_q/k/v    {E, Q/K/K} (+ .bias {Q}/{K}/{K} in qwen2)
 *     blk.N.attn_output   {Q, E}
 *     blk.N.ffn_norm      {E}
 *     blk.N.ffn_gate/up   {E, F}; blk.N.ffn_down {F, E}
 *     gemma3 only: blk.N.attn_q_norm / attn_k_norm {D}, blk.N.post_attention_norm
 *                  and blk.N.post_ffw_norm {E}
 *     output_norm         {E};  output {E, V} (absent: tied to token_embd)
 *     rope_freqs          {rope_dim/2} (optional; Llama 3.x frequency factors)
 * Every one is checked for presence, ndim, shape and type at open; norms and
 * biases (small) are copied into one owned fp32 block, every matrix stays in
 * the read-only mapping and is read by nr_quant in its stored format.
 *
 * Forward over a batch of T tokens at positions p0 .. p0+T-1 (prefill splits
 * the prompt into batches of max_batch; decode is T = 1):
 *     x = embd[id]  (gemma3: · sqrt(E))                            [T][E]
 *     per layer:
 *       h = rmsnorm(x)·w_attn_norm
 *       q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)         [T][Q], [T][K]
 *       gemma3: q, k = rmsnorm per head · q_norm / k_norm
 *       q, k = rope(q, k, pos)
 *       kv cache[layer][pos] = k, v  (f16)
 *       a = softmax(q·kᵀ·scale + causal/window mask)·v per head    [T][Q]
 *       o = a·Woᵀ;  gemma3: o = rmsnorm(o)·w_post_attention_norm
 *       x += o
 *       h = rmsnorm(x)·w_ffn_norm
 *       f = (act(h·Wgateᵀ) ⊙ h·Wupᵀ)·Wdownᵀ    act = SiLU, gemma3: GELU(tanh)
 *       gemma3: f = rmsnorm(f)·w_post_ffw_norm
 *       x += f
 *     logits = rmsnorm(x[T-1])·w_out_norm · Woutᵀ   (last token only)
 *
 * Architecture details, each checked against transformers (the fixtures of
 * tests/test_llama.c):
 *   - RoPE. llama.cpp's converter permutes the rows of attn_q / attn_k of
 *     `llama` so that the two halves HF rotates together become adjacent
 *     pairs: llama rotates (2i, 2i+1) ("normal" mode); qwen2 and gemma3 keep
 *     HF's order and rotate (i, i + rope_dim/2) ("neox" mode). Angle =
 *     pos · base^(-2i/rope_dim) / factor_i, factor_i from rope_freqs (Llama
 *     3.x) or computed from {arch}.rope.scaling.* of type "llama3"; a
 *     "linear" scaling divides pos by its factor.
 *   - gemma3: RMSNorm in Gemma is x·(1 + w); the converter stores 1 + w in
 *     the file, so every norm here is plain x·w. Local (sliding) layers use
 *     rope base 10000 and attend to the last `sliding_window` positions
 *     (keys in (p - window, p]); every 6th layer (l % 6 == 5) is global with
 *     {arch}.rope.freq_base and full causal attention. Attention scale is
 *     1/sqrt(D) (query_pre_attn_scalar = D for the sizes that ship as GGUF).
 *
 * Arithmetic. Linear layers follow llama.cpp: each activation row is
 * quantized once into the format the weight type pairs with (nr_quant_act)
 * and integer block dot products run against the stored weights
 * (nr_quant_matmul for T > 1, nr_quant_matvec for T = 1). "Exact" mode
 * (opts.exact or NANORAG_LLAMA_EXACT=1) instead dequantizes each weight row
 * and takes fp32 dot products with unquantized activations: slower, but it
 * is the computation of a float reference run on the dequantized weights,
 * which the tests use to tell kernel error from model error. Norms, RoPE,
 * softmax and residuals are fp32; the KV cache is f16 (as llama.cpp's
 * default), read with f16 dot/axpy kernels; attention uses an online
 * softmax over chunks of keys, so it needs no buffer sized by the context.
 *
 * Memory. One scratch block, sized at open for max_batch tokens, holds every
 * activation; eval allocates nothing. A sequence owns its KV cache, [layer]
 * [pos][K] f16 for keys and the same for values.
 *
 * Threads. The model's pool splits the rows of each matrix product and the
 * (head, query block) tasks of attention; elementwise work (norms, rope,
 * activations) runs on the calling thread — it is a few percent of the time.
 * nr_llama_eval holds the model's mutex, so calls on one model serialize.
 */
#include "nr_llama.h"

#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_kern.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_quant.h"
#include "nr_tok.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hard caps on hyperparameters read from a file, checked before sizing. */
#define LL_MAX_LAYER    512
#define LL_MAX_EMBD     65536
#define LL_MAX_HEAD     1024
#define LL_MAX_HEAD_DIM 512 /* the attention kernel keeps one head's output on the stack */
#define LL_MAX_FF       (1 << 20)
#define LL_MAX_CTX      (1 << 21)
#define LL_MAX_BATCH    8192
#define LL_KEY_CHUNK    64 /* keys scored at once by the online softmax */
#define LL_QUERY_BLOCK  16 /* queries per attention task in prefill */

enum ll_arch { ARCH_LLAMA = 0, ARCH_QWEN2 = 1, ARCH_GEMMA3 = 2 };

struct ll_layer {
    struct nr_qmat wq, wk, wv, wo; /* [Q][E], [K][E], [K][E], [E][Q] */
    struct nr_qmat gate, up, down; /* [F][E], [F][E], [E][F] */
    const float *attn_norm;        /* [E] */
    const float *ffn_norm;         /* [E] */
    const float *post_attn_norm;   /* [E] gemma3, else NULL */
    const float *post_ffw_norm;    /* [E] gemma3, else NULL */
    const float *q_norm, *k_norm;  /* [D] gemma3, else NULL */
    const float *bq, *bk, *bv;     /* [Q], [K], [K] qwen2, else NULL */
    int window;                    /* sliding window in positions; 0: full causal */
    int rope_set;                  /* 0: global rope table, 1: local (gemma3 sliding layers) */
};

struct nr_llama_seq {
    struct nr_llama *m;
    int n_ctx;    /* positions the cache holds */
    int pos;      /* positions filled */
    uint16_t *kc; /* [layer][n_ctx][K] f16 keys (after rope) */
    uint16_t *vc; /* [layer][n_ctx][K] f16 values */
    int32_t *ids; /* [n_ctx] token id at each filled position (nr_gen's prefix reuse) */
    size_t bytes; /* of kc + vc */
};

struct nr_llama {
    struct nr_gguf *g;
    struct nr_tok *tok; /* NULL when the file carries no tokenizer */
    struct nr_pool *pool;
    int own_pool;       /* 1: pool is ours to free (not lent by opts.pool) */
    pthread_mutex_t mu; /* one eval at a time: pool and scratch are shared */
    struct nr_llama_info info;
    char arch_name[16];
    char name[128];
    char *chat_template; /* owned, or NULL */

    int arch;        /* enum ll_arch */
    int n_layer;     /* transformer blocks */
    int E, F, V;     /* n_embd, n_ff, n_vocab */
    int n_head;      /* query heads */
    int n_kv;        /* key/value heads (GQA: n_head is a multiple) */
    int D;           /* head_dim */
    int Q, K;        /* n_head·D, n_kv·D */
    int n_ctx_train; /* positions */
    int rope_dim;    /* dims rotated per head (even, <= D) */
    int rope_neox;   /* 1: rotate (i, i+rope_dim/2); 0: (2i, 2i+1) */
    float eps;       /* RMSNorm epsilon */
    float attn_scale;
    float embd_scale; /* 1, or sqrt(E) for gemma3 */
    int exact;        /* fp32 activations against dequantized weight rows */
    int max_batch;    /* tokens per forward pass */
    int n_workers;    /* pool threads (incl. the caller) */

    struct ll_layer *layers;      /* [n_layer] */
    struct nr_qmat embd;          /* [V][E] token embeddings */
    struct nr_qmat out;           /* [V][E] output projection (may alias embd) */
    const float *out_norm;        /* [E] */
    float *inv_freq;              /* [2][rope_dim/2] rad/position, scaling applied; owned */
    float *small;                 /* owned fp32 copies of norms and biases */
    size_t small_cap, small_used; /* floats */

    /* Scratch (one block, 64-byte aligned slices), sized for max_batch = B. */
    void *scratch;
    size_t scratch_bytes;
    float *x;       /* [B][E] residual stream */
    float *h;       /* [B][E] normed input of a sublayer */
    float *q;       /* [B][Q] */
    float *k, *v;   /* [B][K] */
    float *att;     /* [B][Q] attention output */
    float *o;       /* [B][E] sublayer output */
    float *gt, *up; /* [B][F] */
    float *rcos;    /* [2][B][rope_dim/2] cos of the batch's angles */
    float *rsin;    /* [2][B][rope_dim/2] */
    void *act;      /* [B] act rows back to back, act_row bytes at most each */
    size_t act_row; /* bytes */
    float *wrow;    /* [n_workers][max_k] exact mode: dequantized weight rows */
    int max_k;      /* largest input width of any matrix */
    int act_type;   /* weight type the act buffer currently holds rows for; -1 none */
};

/* ------------------------------------------------------------ helpers */

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static uint64_t weight_type_mask(void)
{
    uint64_t m = 0;
    for (int t = 0; t < NR_GGML_TYPE_COUNT; t++)
        if (nr_quant_supported(t))
            m |= NR_GGML_MASK(t);
    return m;
}

#define SMALL_TYPES                                                                                \
    (NR_GGML_MASK(NR_GGML_F32) | NR_GGML_MASK(NR_GGML_F16) | NR_GGML_MASK(NR_GGML_BF16))

/* A tensor that must be there: missing is a format error of the model file. */
static int expect(struct nr_llama *m, const char *name, uint64_t types, int ndim, const int64_t *ne,
                  const struct nr_gguf_tensor **out)
{
    int rc = nr_gguf_expect(m->g, name, types, ndim, ne, out);
    if (rc == NR_ENOTFOUND)
        return nr_err_set(NR_EFORMAT, "llama: %s: tensor '%s' is missing", m->arch_name, name);
    if (rc)
        return nr_err_wrap(NR_EFORMAT, "llama");
    m->info.weight_bytes += (*out)->nbytes;
    {
        int64_t n = 1;
        for (int d = 0; d < (*out)->ndim; d++)
            n *= (*out)->ne[d];
        m->info.n_params += n;
    }
    return NR_OK;
}

/* A matrix W [rows][cols] (GGUF ne = {cols, rows}) in any supported weight type. */
static int load_mat(struct nr_llama *m, const char *name, int rows, int cols, struct nr_qmat *w)
{
    const struct nr_gguf_tensor *t;
    int64_t ne[2] = {cols, rows};
    int rc = expect(m, name, weight_type_mask(), 2, ne, &t);
    if (rc)
        return rc;
    w->type = t->type;
    w->n = rows;
    w->k = cols;
    w->row_bytes = nr_quant_row_bytes(t->type, cols);
    w->data = t->data;
    if (w->row_bytes == 0 || w->row_bytes * (size_t)rows != t->nbytes)
        return nr_err_set(NR_EFORMAT, "llama: tensor '%s': %d elements per row do not fit type %s",
                          name, cols, nr_quant_name(t->type));
    if (cols > m->max_k)
        m->max_k = cols;
    return NR_OK;
}

/* A vector of n floats copied (and widened) into the model's small block.
 * optional: absent gives *out = NULL and NR_OK. */
static int load_vec(struct nr_llama *m, const char *name, int n, int optional, const float **out)
{
    const struct nr_gguf_tensor *t;
    int64_t ne[1] = {n};
    float *dst;
    int rc;
    *out = NULL;
    if (optional && !nr_gguf_find_tensor(m->g, name))
        return NR_OK;
    if ((rc = expect(m, name, SMALL_TYPES, 1, ne, &t)))
        return rc;
    if (m->small_used + (size_t)n > m->small_cap)
        return nr_err_set(NR_EINTERNAL, "llama: small-tensor block too small at '%s'", name);
    dst = m->small + m->small_used;
    nr_quant_dequant_row(t->type, t->data, dst, n);
    for (int i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return nr_err_set(NR_EFORMAT, "llama: tensor '%s' holds a non-finite value at %d", name,
                              i);
    m->small_used += (size_t)n;
    *out = dst;
    return NR_OK;
}

/* "{arch}.suffix" as u32 within [lo, hi]; def >= 0 is used when the key is absent. */
static int hp_u32(struct nr_llama *m, const char *suffix, long def, long lo, long hi, int *out)
{
    char key[96];
    uint32_t v;
    int rc;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    rc = nr_gguf_get_u32(m->g, key, &v);
    if (rc == NR_ENOTFOUND && def >= 0) {
        *out = (int)def;
        return NR_OK;
    }
    if (rc == NR_ENOTFOUND)
        return nr_err_set(NR_EFORMAT, "llama: key '%s' is missing", key);
    if (rc)
        return nr_err_wrap(NR_EFORMAT, "llama");
    if ((long)v < lo || (long)v > hi)
        return nr_err_set(NR_EFORMAT, "llama: %s = %u is outside [%ld, %ld]", key, v, lo, hi);
    *out = (int)v;
    return NR_OK;
}

static int hp_f32(struct nr_llama *m, const char *suffix, float def, float lo, float hi, float *out)
{
    char key[96];
    float v;
    int rc;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    rc = nr_gguf_get_f32(m->g, key, &v);
    if (rc == NR_ENOTFOUND) {
        *out = def;
        return NR_OK;
    }
    if (rc)
        return nr_err_wrap(NR_EFORMAT, "llama");
    if (!(v >= lo && v <= hi))
        return nr_err_set(NR_EFORMAT, "llama: %s = %g is outside [%g, %g]", key, (double)v,
                          (double)lo, (double)hi);
    *out = v;
    return NR_OK;
}

/* ------------------------------------------------------------ open */

void nr_llama_opts_default(struct nr_llama_opts *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 0;
    o->max_batch = 512;
    o->exact = 0;
}

/*
 * Inverse frequencies of both rope tables (global, local), with the file's
 * frequency scaling applied. Llama 3 scaling ("llama3" in HF's config, a
 * rope_freqs tensor in llama.cpp's files): wavelengths longer than
 * orig_ctx/low_freq_factor are divided by `factor`, shorter than
 * orig_ctx/high_freq_factor kept, and blended linearly in between.
 */
static int rope_setup(struct nr_llama *m, float base_global, float base_local)
{
    const int half = m->rope_dim / 2;
    const float *ff = NULL;
    float lin = 1.0f; /* linear scaling factor of the global table */
    float l3_factor = 0, l3_low = 1, l3_high = 4;
    int l3_orig = 0;
    char key[96], type[32] = "";
    int rc;

    if ((rc = load_vec(m, "rope_freqs.weight", half, 1, &ff)))
        return rc;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    rc = nr_gguf_get_cstr(m->g, key, type, sizeof type);
    if (rc && rc != NR_ENOTFOUND)
        return nr_err_wrap(NR_EFORMAT, "llama: %s", key);
    if (type[0] && strcmp(type, "none") != 0) {
        float factor;
        if ((rc = hp_f32(m, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor)))
            return rc;
        if (strcmp(type, "linear") == 0) {
            lin = factor;
        } else if (strcmp(type, "llama3") == 0) {
            l3_factor = factor;
            if ((rc = hp_f32(m, "rope.scaling.low_freq_factor", 1.0f, 1e-3f, 1e6f, &l3_low)) ||
                (rc = hp_f32(m, "rope.scaling.high_freq_factor", 4.0f, 1e-3f, 1e6f, &l3_high)) ||
                (rc = hp_u32(m, "rope.scaling.original_context_length", 8192, 1, LL_MAX_CTX,
                             &l3_orig)))
                return rc;
            if (!(l3_high > l3_low))
                return nr_err_set(NR_EFORMAT,
                                  "llama: rope scaling high_freq_factor %g <= low_freq_factor %g",
                                  (double)l3_high, (double)l3_low);
        } else if (strcmp(type, "yarn") == 0 || strcmp(type, "longrope") == 0) {
            return nr_err_set(NR_EUNSUPPORTED, "llama: rope scaling '%s' is not supported", type);
        } else {
            return nr_err_set(NR_EFORMAT, "llama: unknown rope scaling type '%s'", type);
        }
    }
    if (ff)
        for (int i = 0; i < half; i++)
            if (!(ff[i] > 0))
                return nr_err_set(NR_EFORMAT, "llama: rope_freqs[%d] = %g is not positive", i,
                                  (double)ff[i]);

    for (int set = 0; set < 2; set++) {
        double base = set == 0 ? base_global : base_local;
        for (int i = 0; i < half; i++) {
            double f = pow(base, -2.0 * i / m->rope_dim);
            if (set == 0) {
                if (ff) {
                    f /= ff[i];
                } else if (l3_factor > 0) {
                    double wavelen = 2.0 * M_PI / f;
                    double low_wl = l3_orig / (double)l3_low, high_wl = l3_orig / (double)l3_high;
                    if (wavelen > low_wl) {
                        f /= l3_factor;
                    } else if (wavelen >= high_wl) {
                        double s = (l3_orig / wavelen - l3_low) / (double)(l3_high - l3_low);
                        f = (1 - s) * f / l3_factor + s * f;
                    }
                }
                f /= lin;
            }
            m->inv_freq[set * half + i] = (float)f;
        }
    }
    return NR_OK;
}

static int load_arch(struct nr_llama *m)
{
    char key[96], bname[96];
    const struct nr_gguf_tensor *te;
    float base_global, base_local, scale_q = 0;
    int rc, window = 0, key_len, val_len, rope_default;

    if ((rc = hp_u32(m, "block_count", -1, 1, LL_MAX_LAYER, &m->n_layer)) ||
        (rc = hp_u32(m, "embedding_length", -1, 1, LL_MAX_EMBD, &m->E)) ||
        (rc = hp_u32(m, "feed_forward_length", -1, 1, LL_MAX_FF, &m->F)) ||
        (rc = hp_u32(m, "attention.head_count", -1, 1, LL_MAX_HEAD, &m->n_head)) ||
        (rc = hp_u32(m, "attention.head_count_kv", m->n_head, 1, LL_MAX_HEAD, &m->n_kv)) ||
        (rc = hp_u32(m, "context_length", -1, 1, LL_MAX_CTX, &m->n_ctx_train)))
        return rc;
    {
        int n_expert;
        if ((rc = hp_u32(m, "expert_count", 0, 0, 1 << 16, &n_expert)))
            return rc;
        if (n_expert > 0)
            return nr_err_set(NR_EUNSUPPORTED,
                              "llama: mixture-of-experts models (%s.expert_count = %d) are not "
                              "supported",
                              m->arch_name, n_expert);
    }
    if (m->n_head % m->n_kv)
        return nr_err_set(NR_EFORMAT, "llama: head_count %d is not a multiple of head_count_kv %d",
                          m->n_head, m->n_kv);
    if (m->E % m->n_head && m->arch != ARCH_GEMMA3)
        return nr_err_set(NR_EFORMAT,
                          "llama: embedding_length %d is not a multiple of "
                          "head_count %d",
                          m->E, m->n_head);
    if ((rc = hp_u32(m, "attention.key_length", m->E / m->n_head, 2, LL_MAX_HEAD_DIM, &key_len)) ||
        (rc = hp_u32(m, "attention.value_length", key_len, 2, LL_MAX_HEAD_DIM, &val_len)))
        return rc;
    if (key_len != val_len || key_len % 2)
        return nr_err_set(NR_EFORMAT, "llama: key_length %d / value_length %d: need equal, even",
                          key_len, val_len);
    m->D = key_len;
    if ((int64_t)m->n_head * m->D > LL_MAX_EMBD * 4)
        return nr_err_set(NR_EFORMAT, "llama: %d heads of %d dims is too wide", m->n_head, m->D);
    m->Q = m->n_head * m->D;
    m->K = m->n_kv * m->D;
    rope_default = m->D;
    if ((rc = hp_u32(m, "rope.dimension_count", rope_default, 2, m->D, &m->rope_dim)))
        return rc;
    if (m->rope_dim % 2)
        return nr_err_set(NR_EFORMAT, "llama: rope.dimension_count %d is odd", m->rope_dim);
    if ((rc = hp_f32(m, "rope.freq_base", m->arch == ARCH_GEMMA3 ? 1e6f : 10000.0f, 1.0f, 1e12f,
                     &base_global)) ||
        (rc = hp_f32(m, "attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f, &m->eps)))
        return rc;
    base_local = base_global;
    m->rope_neox = m->arch != ARCH_LLAMA;
    m->embd_scale = 1.0f;
    if (m->arch == ARCH_GEMMA3) {
        if ((rc = hp_u32(m, "attention.sliding_window", 0, 0, LL_MAX_CTX, &window)))
            return rc;
        base_local = 10000.0f;
        m->embd_scale = sqrtf((float)m->E);
        /* transformers: query_pre_attn_scalar; llama.cpp: head_dim (27B: E/n_head,
         * a size that does not ship as such a file here). */
        scale_q = (float)m->D;
    }
    m->attn_scale = 1.0f / sqrtf(scale_q > 0 ? scale_q : (float)m->D);

    /* token_embd fixes the vocabulary size. */
    {
        int64_t ne[2] = {m->E, -1};
        if ((rc = expect(m, "token_embd.weight", weight_type_mask(), 2, ne, &te)))
            return rc;
        if (te->ne[1] < 1 || te->ne[1] > NR_TOK_MAX_VOCAB)
            return nr_err_set(NR_EFORMAT,
                              "llama: token_embd has %lld rows (vocabulary must be "
                              "1..%d)",
                              (long long)te->ne[1], NR_TOK_MAX_VOCAB);
        m->V = (int)te->ne[1];
        /* expect() counted it; load_mat counts again */
        m->info.weight_bytes -= te->nbytes;
        m->info.n_params -= te->ne[0] * te->ne[1];
        if ((rc = load_mat(m, "token_embd.weight", m->V, m->E, &m->embd)))
            return rc;
    }
    snprintf(key, sizeof key, "%s.vocab_size", m->arch_name);
    {
        uint32_t vs;
        rc = nr_gguf_get_u32(m->g, key, &vs);
        if (rc == NR_OK && vs != (uint32_t)m->V)
            return nr_err_set(NR_EFORMAT, "llama: %s = %u but token_embd has %d rows", key, vs,
                              m->V);
        if (rc && rc != NR_ENOTFOUND)
            return nr_err_wrap(NR_EFORMAT, "llama");
    }

    /* Small fp32 block: an upper bound of every vector we copy. */
    m->small_cap = (size_t)m->n_layer *
                       (4 * (size_t)m->E + 2 * (size_t)m->D + (size_t)m->Q + 2 * (size_t)m->K) +
                   (size_t)m->E + (size_t)m->rope_dim;
    m->small = nr_malloc(m->small_cap * sizeof(float));
    m->inv_freq = nr_malloc((size_t)m->rope_dim * sizeof(float));
    m->layers = nr_calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->small || !m->inv_freq || !m->layers)
        return nr_err_set(NR_ENOMEM, "llama: out of memory for %d layers", m->n_layer);

    for (int l = 0; l < m->n_layer; l++) {
        struct ll_layer *L = &m->layers[l];
#define NAME(s) (snprintf(bname, sizeof bname, "blk.%d.%s", l, s), bname)
        if ((rc = load_vec(m, NAME("attn_norm.weight"), m->E, 0, &L->attn_norm)) ||
            (rc = load_mat(m, NAME("attn_q.weight"), m->Q, m->E, &L->wq)) ||
            (rc = load_mat(m, NAME("attn_k.weight"), m->K, m->E, &L->wk)) ||
            (rc = load_mat(m, NAME("attn_v.weight"), m->K, m->E, &L->wv)) ||
            (rc = load_mat(m, NAME("attn_output.weight"), m->E, m->Q, &L->wo)) ||
            (rc = load_vec(m, NAME("ffn_norm.weight"), m->E, 0, &L->ffn_norm)) ||
            (rc = load_mat(m, NAME("ffn_gate.weight"), m->F, m->E, &L->gate)) ||
            (rc = load_mat(m, NAME("ffn_up.weight"), m->F, m->E, &L->up)) ||
            (rc = load_mat(m, NAME("ffn_down.weight"), m->E, m->F, &L->down)))
            return rc;
        if (m->arch == ARCH_QWEN2 && ((rc = load_vec(m, NAME("attn_q.bias"), m->Q, 0, &L->bq)) ||
                                      (rc = load_vec(m, NAME("attn_k.bias"), m->K, 0, &L->bk)) ||
                                      (rc = load_vec(m, NAME("attn_v.bias"), m->K, 0, &L->bv))))
            return rc;
        if (m->arch == ARCH_GEMMA3 &&
            ((rc = load_vec(m, NAME("attn_q_norm.weight"), m->D, 0, &L->q_norm)) ||
             (rc = load_vec(m, NAME("attn_k_norm.weight"), m->D, 0, &L->k_norm)) ||
             (rc = load_vec(m, NAME("post_attention_norm.weight"), m->E, 0, &L->post_attn_norm)) ||
             (rc = load_vec(m, NAME("post_ffw_norm.weight"), m->E, 0, &L->post_ffw_norm))))
            return rc;
#undef NAME
        if (m->arch == ARCH_GEMMA3 && l % 6 != 5) {
            L->window = window;
            L->rope_set = 1;
        }
    }
    if ((rc = load_vec(m, "output_norm.weight", m->E, 0, &m->out_norm)))
        return rc;
    if (nr_gguf_find_tensor(m->g, "output.weight")) {
        if ((rc = load_mat(m, "output.weight", m->V, m->E, &m->out)))
            return rc;
    } else {
        m->out = m->embd; /* tied */
    }
    return rope_setup(m, base_global, base_local);
}

/* The weight type holding most bytes: what the file "is" (q4_k, q8_0, ...). */
static const char *dominant_type(const struct nr_llama *m)
{
    size_t bytes[NR_GGML_TYPE_COUNT] = {0};
    int best = m->embd.type;
    for (int l = 0; l < m->n_layer; l++) {
        const struct nr_qmat *w[7] = {&m->layers[l].wq,  &m->layers[l].wk,   &m->layers[l].wv,
                                      &m->layers[l].wo,  &m->layers[l].gate, &m->layers[l].up,
                                      &m->layers[l].down};
        for (int i = 0; i < 7; i++)
            bytes[w[i]->type] += w[i]->row_bytes * (size_t)w[i]->n;
    }
    for (int t = 0; t < NR_GGML_TYPE_COUNT; t++)
        if (bytes[t] > bytes[best])
            best = t;
    return nr_quant_name(best);
}

static int scratch_setup(struct nr_llama *m)
{
    const size_t B = (size_t)m->max_batch;
    const size_t half = (size_t)m->rope_dim / 2;
    size_t sizes[14], total = 0;
    int types_k[3] = {m->E, m->Q, m->F};
    unsigned char *p;

    m->act_row = 0;
    for (int l = 0; l < m->n_layer; l++) {
        const struct nr_qmat *w[7] = {&m->layers[l].wq,  &m->layers[l].wk,   &m->layers[l].wv,
                                      &m->layers[l].wo,  &m->layers[l].gate, &m->layers[l].up,
                                      &m->layers[l].down};
        for (int i = 0; i < 7; i++) {
            size_t a = nr_quant_act_bytes(w[i]->type, w[i]->k);
            if (a > m->act_row)
                m->act_row = a;
        }
    }
    for (int i = 0; i < 3; i++) {
        size_t a = nr_quant_act_bytes(m->out.type, types_k[i]);
        if (a > m->act_row)
            m->act_row = a;
    }
    sizes[0] = B * m->E * sizeof(float);                         /* x */
    sizes[1] = sizes[0];                                         /* h */
    sizes[2] = B * m->Q * sizeof(float);                         /* q */
    sizes[3] = B * m->K * sizeof(float);                         /* k */
    sizes[4] = sizes[3];                                         /* v */
    sizes[5] = sizes[2];                                         /* att */
    sizes[6] = sizes[0];                                         /* o */
    sizes[7] = B * m->F * sizeof(float);                         /* gt */
    sizes[8] = sizes[7];                                         /* up */
    sizes[9] = 2 * B * half * sizeof(float);                     /* rcos */
    sizes[10] = sizes[9];                                        /* rsin */
    sizes[11] = B * m->act_row;                                  /* act */
    sizes[12] = (size_t)m->n_workers * m->max_k * sizeof(float); /* wrow */
    sizes[13] = 0;
    for (int i = 0; i < 13; i++)
        total += align64(sizes[i]);
    m->scratch = nr_aligned_alloc(64, total);
    if (!m->scratch)
        return nr_err_set(NR_ENOMEM, "llama: out of memory for %zu bytes of scratch", total);
    m->scratch_bytes = total;
    p = m->scratch;
    m->x = (float *)p, p += align64(sizes[0]);
    m->h = (float *)p, p += align64(sizes[1]);
    m->q = (float *)p, p += align64(sizes[2]);
    m->k = (float *)p, p += align64(sizes[3]);
    m->v = (float *)p, p += align64(sizes[4]);
    m->att = (float *)p, p += align64(sizes[5]);
    m->o = (float *)p, p += align64(sizes[6]);
    m->gt = (float *)p, p += align64(sizes[7]);
    m->up = (float *)p, p += align64(sizes[8]);
    m->rcos = (float *)p, p += align64(sizes[9]);
    m->rsin = (float *)p, p += align64(sizes[10]);
    m->act = p, p += align64(sizes[11]);
    m->wrow = (float *)p;
    return NR_OK;
}

int nr_llama_open(const char *path, const struct nr_llama_opts *opts, struct nr_llama **out)
{
    struct nr_llama_opts o;
    struct nr_llama *m = NULL;
    const char *s;
    size_t slen;
    int rc;

    *out = NULL;
    if (opts)
        o = *opts;
    else
        nr_llama_opts_default(&o);
    if (o.max_batch <= 0)
        o.max_batch = 512;
    if (o.max_batch > LL_MAX_BATCH)
        return nr_err_set(NR_EINVAL, "llama: max_batch %d is above %d", o.max_batch, LL_MAX_BATCH);
    m = nr_calloc(1, sizeof *m);
    if (!m)
        return nr_err_set(NR_ENOMEM, "llama: out of memory");
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        nr_free(m);
        return nr_err_set(NR_ENOMEM, "llama: cannot create a mutex");
    }
    m->max_batch = o.max_batch;
    m->exact = o.exact;
    s = getenv("NANORAG_LLAMA_EXACT");
    if (s && s[0] == '1')
        m->exact = 1;
    m->act_type = -1;

    if ((rc = nr_gguf_open(path, &m->g)))
        goto fail;
    rc = nr_gguf_get_cstr(m->g, "general.architecture", m->arch_name, sizeof m->arch_name);
    if (rc == NR_ENOTFOUND) {
        rc = nr_err_set(NR_EFORMAT, "llama: %s has no general.architecture", path);
        goto fail;
    }
    if (rc == NR_ELIMIT) {
        rc = nr_err_set(NR_EUNSUPPORTED, "llama: architecture name too long: not supported");
        goto fail;
    }
    if (rc)
        goto fail;
    if (strcmp(m->arch_name, "llama") == 0) {
        m->arch = ARCH_LLAMA;
    } else if (strcmp(m->arch_name, "qwen2") == 0) {
        m->arch = ARCH_QWEN2;
    } else if (strcmp(m->arch_name, "gemma3") == 0) {
        m->arch = ARCH_GEMMA3;
    } else {
        rc = nr_err_set(NR_EUNSUPPORTED,
                        "llama: architecture '%s' is not supported "
                        "(llama, qwen2, gemma3 are)",
                        m->arch_name);
        goto fail;
    }
    if ((rc = load_arch(m)))
        goto fail;

    if (nr_gguf_find_key(m->g, "tokenizer.ggml.model") >= 0) {
        if ((rc = nr_tok_open_gguf(m->g, &m->tok))) {
            nr_err_wrap(rc, "llama: tokenizer");
            goto fail;
        }
        if (nr_tok_n_vocab(m->tok) > m->V) {
            rc = nr_err_set(NR_EFORMAT, "llama: tokenizer has %d tokens, the model %d",
                            nr_tok_n_vocab(m->tok), m->V);
            goto fail;
        }
    }
    if (nr_gguf_get_str(m->g, "tokenizer.chat_template", &s, &slen) == NR_OK && slen > 0) {
        m->chat_template = nr_strndup(s, slen);
        if (!m->chat_template) {
            rc = nr_err_set(NR_ENOMEM, "llama: out of memory");
            goto fail;
        }
    }
    if (nr_gguf_get_cstr(m->g, "general.name", m->name, sizeof m->name) != NR_OK) {
        const char *b = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", b ? b + 1 : path);
    }

    m->own_pool = !o.pool;
    m->pool = o.pool ? o.pool : nr_pool_new(o.threads);
    if (!m->pool) {
        rc = NR_ENOMEM;
        goto fail;
    }
    m->n_workers = nr_pool_threads(m->pool);
    if ((rc = scratch_setup(m)))
        goto fail;

    m->info.arch = m->arch_name;
    m->info.name = m->name;
    m->info.file_type = dominant_type(m);
    m->info.n_layer = m->n_layer;
    m->info.n_embd = m->E;
    m->info.n_head = m->n_head;
    m->info.n_head_kv = m->n_kv;
    m->info.head_dim = m->D;
    m->info.n_ff = m->F;
    m->info.n_vocab = m->V;
    m->info.n_ctx_train = m->n_ctx_train;
    m->info.scratch_bytes = m->scratch_bytes + m->small_cap * sizeof(float);
    m->info.threads = m->n_workers;
    m->info.kernel = m->exact ? "exact" : nr_quant_variant();
    *out = m;
    return NR_OK;
fail:
    nr_llama_close(m);
    return rc;
}

void nr_llama_close(struct nr_llama *m)
{
    if (!m)
        return;
    nr_tok_free(m->tok);
    if (m->own_pool)
        nr_pool_free(m->pool);
    nr_free(m->scratch);
    nr_free(m->layers);
    nr_free(m->small);
    nr_free(m->inv_freq);
    nr_free(m->chat_template);
    nr_gguf_close(m->g);
    pthread_mutex_destroy(&m->mu);
    nr_free(m);
}

const struct nr_llama_info *nr_llama_info(const struct nr_llama *m)
{
    return &m->info;
}
const struct nr_tok *nr_llama_tok(const struct nr_llama *m)
{
    return m->tok;
}
const char *nr_llama_chat_template(const struct nr_llama *m)
{
    return m->chat_template;
}

/* ------------------------------------------------------------ sequences */

size_t nr_llama_kv_bytes(const struct nr_llama *m, int n_ctx)
{
    size_t n;
    if (n_ctx <= 0)
        return 0;
    if (nr_mul_size((size_t)m->n_layer * 2 * sizeof(uint16_t), (size_t)n_ctx, &n) ||
        nr_mul_size(n, (size_t)m->K, &n))
        return 0;
    return n;
}

int nr_llama_seq_new(struct nr_llama *m, int n_ctx, struct nr_llama_seq **out)
{
    struct nr_llama_seq *s;
    size_t bytes;
    *out = NULL;
    if (n_ctx <= 0)
        n_ctx = m->n_ctx_train < 4096 ? m->n_ctx_train : 4096;
    if (n_ctx > m->n_ctx_train)
        n_ctx = m->n_ctx_train;
    bytes = nr_llama_kv_bytes(m, n_ctx);
    if (bytes == 0)
        return nr_err_set(NR_ELIMIT, "llama: a KV cache of %d positions is too large", n_ctx);
    s = nr_calloc(1, sizeof *s);
    if (!s)
        return nr_err_set(NR_ENOMEM, "llama: out of memory");
    s->kc = nr_aligned_alloc(64, bytes / 2);
    s->vc = nr_aligned_alloc(64, bytes / 2);
    s->ids = nr_malloc((size_t)n_ctx * sizeof *s->ids);
    if (!s->kc || !s->vc || !s->ids) {
        nr_free(s->kc);
        nr_free(s->vc);
        nr_free(s->ids);
        nr_free(s);
        return nr_err_set(NR_ENOMEM, "llama: out of memory for a KV cache of %zu bytes", bytes);
    }
    s->m = m;
    s->n_ctx = n_ctx;
    s->bytes = bytes;
    *out = s;
    return NR_OK;
}

void nr_llama_seq_free(struct nr_llama_seq *s)
{
    if (!s)
        return;
    nr_free(s->kc);
    nr_free(s->vc);
    nr_free(s->ids);
    nr_free(s);
}

int nr_llama_seq_pos(const struct nr_llama_seq *s)
{
    return s->pos;
}
int nr_llama_seq_n_ctx(const struct nr_llama_seq *s)
{
    return s->n_ctx;
}

const int32_t *nr_llama_seq_ids(const struct nr_llama_seq *s)
{
    return s->ids;
}

void nr_llama_seq_truncate(struct nr_llama_seq *s, int pos)
{
    if (pos < 0)
        pos = 0;
    if (pos < s->pos)
        s->pos = pos;
}

/* ------------------------------------------------------------ forward */

static void rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    float r;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        y[i] = x[i] * r * w[i];
}

struct exact_ctx {
    struct nr_llama *m;
    const struct nr_qmat *W;
    const float *x; /* [T][ldx] */
    int ldx, T;
    float *y; /* [T][ldy] */
    int ldy;
};

#define EXACT_ROWS 16

static void exact_task(void *vctx, int task, int worker)
{
    struct exact_ctx *c = vctx;
    const struct nr_qmat *W = c->W;
    const struct nr_kern_ops *ops = nr_kern_get();
    float *row = c->m->wrow + (size_t)worker * c->m->max_k;
    int r0 = task * EXACT_ROWS, r1 = r0 + EXACT_ROWS < W->n ? r0 + EXACT_ROWS : W->n;
    for (int r = r0; r < r1; r++) {
        nr_quant_dequant_row(W->type, (const unsigned char *)W->data + (size_t)r * W->row_bytes,
                             row, W->k);
        for (int t = 0; t < c->T; t++)
            c->y[(size_t)t * c->ldy + r] = ops->dot(row, c->x + (size_t)t * c->ldx, W->k);
    }
}

/*
 * y[t][0..W->n) = W · x[t] for t < T (x rows W->k wide, stride ldx; y stride
 * ldy), plus bias when not NULL. The act buffer keeps the last quantized
 * input: `fresh` says x changed since the previous call.
 */
static void linear(struct nr_llama *m, const struct nr_qmat *W, const float *x, int ldx, int T,
                   float *y, int ldy, const float *bias, int fresh)
{
    if (m->exact) {
        struct exact_ctx c = {m, W, x, ldx, T, y, ldy};
        nr_pool_run(m->pool, (W->n + EXACT_ROWS - 1) / EXACT_ROWS, exact_task, &c);
    } else {
        size_t ab = nr_quant_act_bytes(W->type, W->k);
        if (fresh || m->act_type != W->type) {
            for (int t = 0; t < T; t++)
                nr_quant_act(W->type, x + (size_t)t * ldx, W->k, (unsigned char *)m->act + t * ab);
            m->act_type = W->type;
        }
        if (T == 1)
            nr_quant_matvec(m->pool, W, m->act, y);
        else
            nr_quant_matmul(m->pool, W, m->act, T, y, ldy);
    }
    if (bias)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < W->n; i++)
                y[(size_t)t * ldy + i] += bias[i];
}

/*
 * y[i] = W[i] · x (+ bias[i]) for nm matrices reading the same input x,
 * decode only (T = 1): one pool run for all of them (nr_quant_matvec_n)
 * instead of nm — a decode step hands work to the pool ~5 times per layer
 * instead of ~8, and on small models that hand-off is a large part of the
 * step. x is quantized once per distinct weight type, into act rows 0..nm-1.
 * Same numbers as nm linear() calls. Exact mode and max_batch < nm take the
 * plain path.
 */
static void linear_n(struct nr_llama *m, int nm, const struct nr_qmat *const *W, const float *x,
                     float *const *y, const float *const *bias)
{
    const void *xq[NR_QUANT_MAX_GROUP];
    if (m->exact || nm > m->max_batch) {
        for (int i = 0; i < nm; i++)
            linear(m, W[i], x, W[i]->k, 1, y[i], W[i]->n, bias[i], i == 0);
        return;
    }
    for (int i = 0; i < nm; i++) {
        int j = 0;
        while (j < i && W[j]->type != W[i]->type)
            j++;
        xq[i] = (const unsigned char *)m->act + (size_t)j * m->act_row;
        if (j == i)
            nr_quant_act(W[i]->type, x, W[i]->k, (unsigned char *)m->act + (size_t)i * m->act_row);
    }
    m->act_type = W[0]->type; /* act row 0 holds x for W[0]'s type, as linear() leaves it */
    nr_quant_matvec_n(m->pool, nm, W, xq, y);
    for (int i = 0; i < nm; i++)
        if (bias[i])
            for (int r = 0; r < W[i]->n; r++)
                y[i][r] += bias[i][r];
}

/* Rotate each head of v [T][n_heads·D] by the batch's angles of table `set`. */
static void rope(const struct nr_llama *m, float *v, int T, int n_heads, int set)
{
    const int half = m->rope_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *c = m->rcos + ((size_t)set * m->max_batch + t) * half;
        const float *s = m->rsin + ((size_t)set * m->max_batch + t) * half;
        for (int hh = 0; hh < n_heads; hh++) {
            float *x = v + (size_t)t * n_heads * m->D + (size_t)hh * m->D;
            if (m->rope_neox) {
                for (int i = 0; i < half; i++) {
                    float a = x[i], b = x[i + half];
                    x[i] = a * c[i] - b * s[i];
                    x[i + half] = a * s[i] + b * c[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float a = x[2 * i], b = x[2 * i + 1];
                    x[2 * i] = a * c[i] - b * s[i];
                    x[2 * i + 1] = a * s[i] + b * c[i];
                }
            }
        }
    }
}

struct attn_ctx {
    struct nr_llama *m;
    const struct ll_layer *L;
    const uint16_t *kc, *vc; /* this layer's cache: [n_ctx][K] */
    int p0, T;
    int nqb; /* query blocks */
};

/* One head, LL_QUERY_BLOCK queries: online softmax over chunks of keys. */
static void attn_task(void *vctx, int task, int worker)
{
    struct attn_ctx *c = vctx;
    struct nr_llama *m = c->m;
    const int D = m->D, K = m->K;
    const int hh = task / c->nqb, qb = task % c->nqb;
    const int kvh = hh / (m->n_head / m->n_kv);
    const int t0 = qb * LL_QUERY_BLOCK;
    const int t1 = t0 + LL_QUERY_BLOCK < c->T ? t0 + LL_QUERY_BLOCK : c->T;
    float acc[LL_MAX_HEAD_DIM];
    float sc[LL_KEY_CHUNK];
    (void)worker;
    for (int t = t0; t < t1; t++) {
        const float *qv = m->q + (size_t)t * m->Q + (size_t)hh * D;
        const int p = c->p0 + t;
        int lo = 0;
        float mx = -INFINITY, sum = 0;
        if (c->L->window > 0 && p - c->L->window + 1 > 0)
            lo = p - c->L->window + 1;
        memset(acc, 0, sizeof(float) * D);
        for (int j0 = lo; j0 <= p; j0 += LL_KEY_CHUNK) {
            int nj = p + 1 - j0 < LL_KEY_CHUNK ? p + 1 - j0 : LL_KEY_CHUNK;
            float cmax = -INFINITY;
            for (int j = 0; j < nj; j++) {
                const uint16_t *kr = c->kc + (size_t)(j0 + j) * K + (size_t)kvh * D;
                sc[j] = nr_quant_dot_f16(kr, qv, D) * m->attn_scale;
                if (sc[j] > cmax)
                    cmax = sc[j];
            }
            if (cmax > mx) {
                float r = expf(mx - cmax); /* 0 on the first chunk */
                for (int d = 0; d < D; d++)
                    acc[d] *= r;
                sum *= r;
                mx = cmax;
            }
            for (int j = 0; j < nj; j++) {
                const uint16_t *vr = c->vc + (size_t)(j0 + j) * K + (size_t)kvh * D;
                float w = expf(sc[j] - mx);
                sum += w;
                nr_quant_axpy_f16(acc, w, vr, D);
            }
        }
        {
            float *o = m->att + (size_t)t * m->Q + (size_t)hh * D;
            float inv = 1.0f / sum;
            for (int d = 0; d < D; d++)
                o[d] = acc[d] * inv;
        }
    }
}

static float gelu_tanh(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

static float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* T tokens at positions s->pos .. s->pos+T-1; logits of the last when wanted. */
static void forward(struct nr_llama *m, struct nr_llama_seq *s, const int32_t *ids, int T,
                    float *logits)
{
    const int E = m->E, Q = m->Q, K = m->K, F = m->F, half = m->rope_dim / 2;
    const int p0 = s->pos;

    for (int t = 0; t < T; t++) {
        float *x = m->x + (size_t)t * E;
        nr_quant_dequant_row(
            m->embd.type, (const unsigned char *)m->embd.data + (size_t)ids[t] * m->embd.row_bytes,
            x, E);
        if (m->embd_scale != 1.0f)
            for (int i = 0; i < E; i++)
                x[i] *= m->embd_scale;
    }
    for (int set = 0; set < 2; set++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                double a = (double)(p0 + t) * m->inv_freq[set * half + i];
                m->rcos[((size_t)set * m->max_batch + t) * half + i] = (float)cos(a);
                m->rsin[((size_t)set * m->max_batch + t) * half + i] = (float)sin(a);
            }

    for (int l = 0; l < m->n_layer; l++) {
        const struct ll_layer *L = &m->layers[l];
        uint16_t *kc = s->kc + (size_t)l * s->n_ctx * K;
        uint16_t *vc = s->vc + (size_t)l * s->n_ctx * K;

        for (int t = 0; t < T; t++)
            rmsnorm(m->h + (size_t)t * E, m->x + (size_t)t * E, L->attn_norm, E, m->eps);
        if (T == 1) {
            const struct nr_qmat *W[3] = {&L->wq, &L->wk, &L->wv};
            float *Y[3] = {m->q, m->k, m->v};
            const float *B[3] = {L->bq, L->bk, L->bv};
            linear_n(m, 3, W, m->h, Y, B);
        } else {
            linear(m, &L->wq, m->h, E, T, m->q, Q, L->bq, 1);
            linear(m, &L->wk, m->h, E, T, m->k, K, L->bk, 0);
            linear(m, &L->wv, m->h, E, T, m->v, K, L->bv, 0);
        }
        if (L->q_norm) {
            for (int i = 0; i < T * m->n_head; i++)
                rmsnorm(m->q + (size_t)i * m->D, m->q + (size_t)i * m->D, L->q_norm, m->D, m->eps);
            for (int i = 0; i < T * m->n_kv; i++)
                rmsnorm(m->k + (size_t)i * m->D, m->k + (size_t)i * m->D, L->k_norm, m->D, m->eps);
        }
        rope(m, m->q, T, m->n_head, L->rope_set);
        rope(m, m->k, T, m->n_kv, L->rope_set);
        for (int t = 0; t < T; t++) {
            nr_quant_f32_to_f16(m->k + (size_t)t * K, kc + (size_t)(p0 + t) * K, K);
            nr_quant_f32_to_f16(m->v + (size_t)t * K, vc + (size_t)(p0 + t) * K, K);
        }
        {
            struct attn_ctx c = {m, L, kc, vc, p0, T, (T + LL_QUERY_BLOCK - 1) / LL_QUERY_BLOCK};
            nr_pool_run(m->pool, m->n_head * c.nqb, attn_task, &c);
        }
        linear(m, &L->wo, m->att, Q, T, m->o, E, NULL, 1);
        for (int t = 0; t < T; t++) {
            float *o = m->o + (size_t)t * E, *x = m->x + (size_t)t * E;
            if (L->post_attn_norm)
                rmsnorm(o, o, L->post_attn_norm, E, m->eps);
            for (int i = 0; i < E; i++)
                x[i] += o[i];
            rmsnorm(m->h + (size_t)t * E, x, L->ffn_norm, E, m->eps);
        }
        if (T == 1) {
            const struct nr_qmat *W[2] = {&L->gate, &L->up};
            float *Y[2] = {m->gt, m->up};
            const float *B[2] = {NULL, NULL};
            linear_n(m, 2, W, m->h, Y, B);
        } else {
            linear(m, &L->gate, m->h, E, T, m->gt, F, NULL, 1);
            linear(m, &L->up, m->h, E, T, m->up, F, NULL, 0);
        }
        for (size_t i = 0; i < (size_t)T * F; i++) {
            float g = m->arch == ARCH_GEMMA3 ? gelu_tanh(m->gt[i]) : silu(m->gt[i]);
            m->gt[i] = g * m->up[i];
        }
        linear(m, &L->down, m->gt, F, T, m->o, E, NULL, 1);
        for (int t = 0; t < T; t++) {
            float *o = m->o + (size_t)t * E, *x = m->x + (size_t)t * E;
            if (L->post_ffw_norm)
                rmsnorm(o, o, L->post_ffw_norm, E, m->eps);
            for (int i = 0; i < E; i++)
                x[i] += o[i];
        }
    }
    s->pos = p0 + T;
    if (logits) {
        rmsnorm(m->h, m->x + (size_t)(T - 1) * E, m->out_norm, E, m->eps);
        linear(m, &m->out, m->h, E, 1, logits, m->V, NULL, 1);
    }
}

int nr_llama_eval(struct nr_llama *m, struct nr_llama_seq *s, const int32_t *ids, int n,
                  float *logits)
{
    if (!m || !s || !ids || n < 1)
        return nr_err_set(NR_EINVAL, "llama: eval needs a model, a sequence and n >= 1 ids");
    if (s->m != m)
        return nr_err_set(NR_EINVAL, "llama: the sequence belongs to another model");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->V)
            return nr_err_set(NR_EINVAL, "llama: token id %d at %d is outside [0, %d)", ids[i], i,
                              m->V);
    if (n > s->n_ctx - s->pos)
        return nr_err_set(NR_ELIMIT, "llama: %d positions + %d tokens exceed the context of %d",
                          s->pos, n, s->n_ctx);
    pthread_mutex_lock(&m->mu);
    memcpy(s->ids + s->pos, ids, (size_t)n * sizeof *ids);
    for (int i = 0; i < n; i += m->max_batch) {
        int T = n - i < m->max_batch ? n - i : m->max_batch;
        forward(m, s, ids + i, T, i + T == n ? logits : NULL);
    }
    pthread_mutex_unlock(&m->mu);
    return NR_OK;
}
