/*
 * bert.c — a BERT encoder in fp32 on the CPU.
 *
 * Sources. Two layouts carry the same model:
 *   - a sentence-transformers directory: config.json (shape), model.safetensors
 *     (weights, names "embeddings.*", "encoder.layer.N.*", optionally prefixed
 *     "bert."), vocab.txt + tokenizer_config.json (tokenizer), modules.json +
 *     1_Pooling/config.json (pooling, normalization), sentence_bert_config.json
 *     (max_seq_length);
 *   - a GGUF file, architecture "bert", as llama.cpp's converter writes it
 *     (and Ollama stores all-minilm): bert.* hyperparameters, token_embd /
 *     position_embd / token_types / token_embd_norm and blk.N.{attn_q, attn_k,
 *     attn_v, attn_output, attn_output_norm, ffn_up, ffn_down,
 *     layer_output_norm}, the vocabulary in tokenizer.ggml.tokens. GGUF has no
 *     max_seq_length: the cap is bert.context_length unless the caller gives
 *     one (pass 256 to match sentence-transformers for MiniLM).
 * Every hyperparameter is range-checked before anything is sized from it, and
 * every tensor's presence, dtype and shape is checked against the config.
 * F32 tensors are used in place from the read-only mapping when aligned; F16
 * and BF16 ones are widened into owned copies.
 *
 * Memory. Linear weights are repacked once into the kernel's panel layout
 * (nr_kern_pack) and the mapped pages they came from are released;
 * with int8 (nr_bert_open's int8 flag) they are quantized instead
 * (nr_kern_pack_i8: int8 per output channel, ~1/4 of the fp32 bytes, and
 * only that copy is kept), and every linear layer quantizes its input rows
 * per token on the fly into one workspace sized at open for
 * max_batch_tokens x max(H, F) bytes; embeddings, LayerNorm, attention
 * (Q·Kᵀ, softmax, P·V), pooling and all activations between layers stay
 * fp32. F16/BF16 files are widened to fp32 first, then quantized. Q, K and
 * V are packed as one [3H][H] matrix so one GEMM produces all three. The
 * token embedding table stays in the mapping: only the rows of tokens seen
 * are ever paged in. The forward workspace is sized once, at open, for
 * max_batch_tokens.
 *
 * Forward over a packed batch of T tokens (sequences back to back, no
 * padding, so no work is spent on pad tokens and no attention mask is needed):
 *     x    = LN(word[id] + pos[p] + type[0])                  [T][H]
 *     per layer:
 *       qkv  = x·Wqkvᵀ + bqkv                                  [T][3H]
 *       ctx  = softmax(q·kᵀ/√d)·v, per sequence and head       [T][H]
 *       x    = LN(x + ctx·Woᵀ + bo)
 *       h    = GELU(x·W1ᵀ + b1)                                [T][F]  (reuses qkv)
 *       x    = LN(x + h·W2ᵀ + b2)
 *     out  = pool(x) per sequence, then L2-normalize if configured.
 * This is the computation of transformers' BertModel (post-LN, exact-erf
 * GELU) followed by sentence-transformers' Pooling and Normalize modules.
 */
#include "nr_bert.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_gguf.h"
#include "nr_half.h"
#include "nr_kern.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_safetensors.h"
#include "nr_wordpiece.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_WORKERS 256

/* fp32 (pw) or int8 (pw8) weights of one linear layer: one of the two is packed. */
struct bert_layer {
    struct nr_pw qkv;           /* [3H][H] packed */
    struct nr_pw8 qkv8;         /* [3H][H] int8 (int8 models) */
    struct nr_pw8 out8;         /* [H][H] int8 */
    struct nr_pw8 up8;          /* [F][H] int8 */
    struct nr_pw8 down8;        /* [H][F] int8 */
    const float *qkv_b;         /* [3H] */
    struct nr_pw out;           /* [H][H] packed */
    const float *out_b;         /* [H] */
    const float *ln1_g, *ln1_b; /* [H] */
    struct nr_pw up;            /* [F][H] packed */
    const float *up_b;          /* [F] */
    struct nr_pw down;          /* [H][F] packed */
    const float *down_b;        /* [H] */
    const float *ln2_g, *ln2_b; /* [H] */
};

struct nr_bert {
    struct nr_bert_config cfg;
    struct nr_wordpiece *tok;
    struct nr_st *st; /* one of st / gguf is open */
    struct nr_gguf *gguf;
    const struct nr_kern_ops *ops;
    int int8; /* linear layers in int8 (the pw8 fields) */

    const float *word_emb;            /* [vocab][H] (mapped or owned) */
    const float *pos_emb;             /* [max_pos][H] */
    const float *type_emb;            /* [type_vocab][H] */
    const float *emb_ln_g, *emb_ln_b; /* [H] */
    struct bert_layer *layer;         /* [layers] */

    void **owned; /* buffers to free at close */
    int n_owned, cap_owned;
    size_t weight_bytes; /* packed + owned copies */

    int max_batch_tokens;
    float *x;       /* [max_batch_tokens][H] */
    float *big;     /* [max_batch_tokens][max(3H, F)] */
    float *ctx;     /* [max_batch_tokens][H] */
    float *scratch; /* [MAX_WORKERS][max_seq] attention rows */
    int *offs;      /* [max_batch_tokens] sequence start rows */
    void *qws;      /* int8 only: quantized rows, nr_kern_i8_ws_bytes(T, max(H, F)) */
    size_t qws_bytes;
    size_t workspace_bytes;
};

/* ------------------------------------------------------------ ownership */

static int own(struct nr_bert *m, void *p, size_t bytes)
{
    if (m->n_owned == m->cap_owned) {
        int ncap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = nr_realloc(m->owned, (size_t)ncap * sizeof *n);
        if (!n)
            return nr_err_set(NR_ENOMEM, "out of memory loading model");
        m->owned = n;
        m->cap_owned = ncap;
    }
    m->owned[m->n_owned++] = p;
    m->weight_bytes += bytes;
    return NR_OK;
}

static float *alloc_owned(struct nr_bert *m, size_t nfloats)
{
    size_t bytes;
    float *p;
    if (nr_mul_size(nfloats, sizeof(float), &bytes))
        return NULL;
    p = nr_aligned_alloc(64, bytes);
    if (!p)
        return NULL;
    if (own(m, p, bytes)) {
        nr_free(p);
        return NULL;
    }
    return p;
}

/* ------------------------------------------------------------ config */

static int json_int(json_t *o, const char *key, int lo, int hi, int def, int required, int *v,
                    const char *file)
{
    json_t *j = json_object_get(o, key);
    json_int_t x;
    if (!j) {
        if (required)
            return nr_err_set(NR_EFORMAT, "%s: missing \"%s\"", file, key);
        *v = def;
        return NR_OK;
    }
    if (!json_is_integer(j))
        return nr_err_set(NR_EFORMAT, "%s: \"%s\" is not an integer", file, key);
    x = json_integer_value(j);
    if (x < lo || x > hi)
        return nr_err_set(NR_EFORMAT, "%s: \"%s\" = %lld is outside [%d, %d]", file, key,
                          (long long)x, lo, hi);
    *v = (int)x;
    return NR_OK;
}

static int json_bool(json_t *o, const char *key, int def)
{
    json_t *j = json_object_get(o, key);
    if (json_is_boolean(j))
        return json_is_true(j);
    return def;
}

static int load_json(const char *dir, const char *name, int required, json_t **out)
{
    char path[4096];
    char *text;
    size_t len;
    json_error_t jerr;
    int rc;

    *out = NULL;
    if ((rc = nr_path_join(path, sizeof path, dir, name)))
        return rc;
    if (!nr_path_is_file(path)) {
        if (required)
            return nr_err_set(NR_ENOTFOUND, "model directory has no %s", name);
        return NR_OK;
    }
    if ((rc = nr_file_read(path, 16u << 20, &text, &len)))
        return rc;
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    nr_free(text);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return nr_err_set(NR_EFORMAT, "%s: invalid JSON at line %d: %s", name, jerr.line,
                          jerr.text);
    }
    return NR_OK;
}

static int check_shape_config(struct nr_bert_config *c)
{
    if (c->hidden % c->heads != 0)
        return nr_err_set(NR_EFORMAT, "hidden size %d is not a multiple of %d heads", c->hidden,
                          c->heads);
    if (!(c->ln_eps > 0.0f && c->ln_eps < 1.0f))
        return nr_err_set(NR_EFORMAT, "layer_norm_eps %g is outside (0, 1)", (double)c->ln_eps);
    if (c->max_seq <= 2 || c->max_seq > c->max_pos)
        c->max_seq = c->max_pos;
    return NR_OK;
}

static int config_from_dir(const char *dir, struct nr_bert_config *c)
{
    json_t *cfg = NULL, *stc = NULL, *pool = NULL, *mods = NULL, *tokc = NULL;
    json_t *j;
    int rc;

    if ((rc = load_json(dir, "config.json", 1, &cfg)))
        goto fail;
    j = json_object_get(cfg, "model_type");
    if (json_is_string(j) && strcmp(json_string_value(j), "bert") != 0) {
        rc = nr_err_set(NR_EUNSUPPORTED, "config.json: model_type \"%s\" is not bert",
                        json_string_value(j));
        goto fail;
    }
    j = json_object_get(cfg, "hidden_act");
    if (json_is_string(j) && strcmp(json_string_value(j), "gelu") != 0) {
        rc = nr_err_set(NR_EUNSUPPORTED, "config.json: hidden_act \"%s\" (only gelu)",
                        json_string_value(j));
        goto fail;
    }
    j = json_object_get(cfg, "position_embedding_type");
    if (json_is_string(j) && strcmp(json_string_value(j), "absolute") != 0) {
        rc = nr_err_set(NR_EUNSUPPORTED, "config.json: position_embedding_type \"%s\"",
                        json_string_value(j));
        goto fail;
    }
    if ((rc = json_int(cfg, "vocab_size", 1, 1 << 22, 0, 1, &c->vocab, "config.json")) ||
        (rc = json_int(cfg, "hidden_size", 8, 8192, 0, 1, &c->hidden, "config.json")) ||
        (rc = json_int(cfg, "num_hidden_layers", 1, 128, 0, 1, &c->layers, "config.json")) ||
        (rc = json_int(cfg, "num_attention_heads", 1, 256, 0, 1, &c->heads, "config.json")) ||
        (rc = json_int(cfg, "intermediate_size", 1, 65536, 0, 1, &c->ffn, "config.json")) ||
        (rc = json_int(cfg, "max_position_embeddings", 3, 65536, 512, 0, &c->max_pos,
                       "config.json")) ||
        (rc = json_int(cfg, "type_vocab_size", 1, 16, 2, 0, &c->type_vocab, "config.json")))
        goto fail;
    j = json_object_get(cfg, "layer_norm_eps");
    c->ln_eps = json_is_number(j) ? (float)json_number_value(j) : 1e-12f;

    /* sentence-transformers files: all optional (a plain HF BERT directory
     * gets mean pooling, no normalization, max_position_embeddings tokens). */
    c->pooling = NR_POOL_MEAN;
    c->normalize = 0;
    c->max_seq = c->max_pos;
    if ((rc = load_json(dir, "sentence_bert_config.json", 0, &stc)))
        goto fail;
    if (stc && (rc = json_int(stc, "max_seq_length", 1, 65536, c->max_pos, 0, &c->max_seq,
                              "sentence_bert_config.json")))
        goto fail;
    if ((rc = load_json(dir, "1_Pooling/config.json", 0, &pool)))
        goto fail;
    if (pool) {
        int cls = json_bool(pool, "pooling_mode_cls_token", 0);
        int mean = json_bool(pool, "pooling_mode_mean_tokens", 0);
        int max = json_bool(pool, "pooling_mode_max_tokens", 0);
        int sqrt_len = json_bool(pool, "pooling_mode_mean_sqrt_len_tokens", 0);
        if (cls + mean + max + sqrt_len != 1) {
            rc = nr_err_set(NR_EUNSUPPORTED,
                            "1_Pooling/config.json: exactly one pooling mode must be on");
            goto fail;
        }
        c->pooling = cls    ? NR_POOL_CLS
                     : mean ? NR_POOL_MEAN
                     : max  ? NR_POOL_MAX
                            : NR_POOL_MEAN_SQRT;
    }
    {
        char path[4096];
        char *text = NULL;
        size_t len;
        if ((rc = nr_path_join(path, sizeof path, dir, "modules.json")))
            goto fail;
        if (nr_path_is_file(path)) {
            json_error_t jerr;
            size_t i;
            if ((rc = nr_file_read(path, 1u << 20, &text, &len)))
                goto fail;
            mods = json_loadb(text, len, 0, &jerr);
            nr_free(text);
            if (!json_is_array(mods)) {
                rc = nr_err_set(NR_EFORMAT, "modules.json: not a JSON array");
                goto fail;
            }
            for (i = 0; i < json_array_size(mods); i++) {
                json_t *type = json_object_get(json_array_get(mods, i), "type");
                if (json_is_string(type) && strstr(json_string_value(type), "Normalize"))
                    c->normalize = 1;
            }
        }
    }
    c->lowercase = 1;
    c->strip_accents = -1;
    c->chinese_chars = 1;
    if ((rc = load_json(dir, "tokenizer_config.json", 0, &tokc)))
        goto fail;
    if (tokc) {
        json_t *sa = json_object_get(tokc, "strip_accents");
        int mml = 0;
        c->lowercase = json_bool(tokc, "do_lower_case", 1);
        c->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : -1;
        c->chinese_chars = json_bool(tokc, "tokenize_chinese_chars", 1);
        if (json_int(tokc, "model_max_length", 1, 1 << 30, 0, 0, &mml, "tokenizer_config.json") ==
                NR_OK &&
            mml > 0 && mml < c->max_seq)
            c->max_seq = mml;
    }
    snprintf(c->source, sizeof c->source, "safetensors");
    rc = check_shape_config(c);
fail:
    json_decref(cfg);
    json_decref(stc);
    json_decref(pool);
    json_decref(mods);
    json_decref(tokc);
    return rc;
}

static int gguf_int(struct nr_gguf *g, const char *key, int lo, int hi, int def, int required,
                    int *v)
{
    int64_t x;
    int rc = nr_gguf_get_i64(g, key, &x);
    if (rc == NR_ENOTFOUND && !required) {
        *v = def;
        return NR_OK;
    }
    if (rc == NR_ENOTFOUND)
        return nr_err_set(NR_EFORMAT, "gguf: missing key %s", key);
    if (rc)
        return rc;
    if (x < lo || x > hi)
        return nr_err_set(NR_EFORMAT, "gguf: %s = %lld is outside [%d, %d]", key, (long long)x, lo,
                          hi);
    *v = (int)x;
    return NR_OK;
}

static int config_from_gguf(struct nr_gguf *g, struct nr_bert_config *c)
{
    const char *arch;
    size_t alen;
    int rc, pooling = 1;
    uint64_t n_tokens;
    int elem;

    if ((rc = nr_gguf_get_str(g, "general.architecture", &arch, &alen)))
        return rc == NR_ENOTFOUND ? nr_err_set(NR_EFORMAT, "gguf: no general.architecture") : rc;
    if (alen != 4 || memcmp(arch, "bert", 4) != 0)
        return nr_err_set(NR_EUNSUPPORTED, "gguf: architecture \"%.*s\" is not bert",
                          (int)(alen > 64 ? 64 : alen), arch);
    if ((rc = gguf_int(g, "bert.embedding_length", 8, 8192, 0, 1, &c->hidden)) ||
        (rc = gguf_int(g, "bert.block_count", 1, 128, 0, 1, &c->layers)) ||
        (rc = gguf_int(g, "bert.attention.head_count", 1, 256, 0, 1, &c->heads)) ||
        (rc = gguf_int(g, "bert.feed_forward_length", 1, 65536, 0, 1, &c->ffn)) ||
        (rc = gguf_int(g, "bert.context_length", 3, 65536, 512, 0, &c->max_pos)) ||
        (rc = gguf_int(g, "tokenizer.ggml.token_type_count", 1, 16, 2, 0, &c->type_vocab)) ||
        (rc = gguf_int(g, "bert.pooling_type", 0, 4, 1, 0, &pooling)))
        return rc;
    rc = nr_gguf_get_f32(g, "bert.attention.layer_norm_epsilon", &c->ln_eps);
    if (rc == NR_ENOTFOUND)
        c->ln_eps = 1e-12f;
    else if (rc)
        return rc;
    if (pooling == 1)
        c->pooling = NR_POOL_MEAN;
    else if (pooling == 2)
        c->pooling = NR_POOL_CLS;
    else
        return nr_err_set(NR_EUNSUPPORTED, "gguf: bert.pooling_type %d (only mean and cls)",
                          pooling);
    if ((rc = nr_gguf_get_arr(g, "tokenizer.ggml.tokens", &elem, &n_tokens)))
        return rc == NR_ENOTFOUND ? nr_err_set(NR_EFORMAT, "gguf: no tokenizer.ggml.tokens") : rc;
    if (elem != NR_GGUF_STRING || n_tokens < 1 || n_tokens > (1u << 22))
        return nr_err_set(NR_EFORMAT, "gguf: tokenizer.ggml.tokens is not a string array of "
                                      "1..4194304 entries");
    c->vocab = (int)n_tokens;
    /* Ollama's and llama.cpp's embedders normalize BERT sentence vectors. */
    c->normalize = 1;
    c->max_seq = c->max_pos;
    c->lowercase = 1;
    c->strip_accents = -1;
    c->chinese_chars = 1;
    snprintf(c->source, sizeof c->source, "gguf");
    {
        const char *name;
        size_t nlen;
        if (nr_gguf_get_str(g, "general.name", &name, &nlen) == NR_OK)
            snprintf(c->name, sizeof c->name, "%.*s", (int)(nlen > 100 ? 100 : nlen), name);
    }
    return check_shape_config(c);
}

/* ------------------------------------------------------------ tensors */

/*
 * Find a tensor by its safetensors name (with or without a "bert." prefix)
 * or its GGUF name and check it is [rows][cols] (cols == 0: a vector of
 * rows); gives its stored bytes, dtype and name. get_tensor below returns it
 * as fp32: in place when stored as aligned F32, else widened into an owned
 * copy. src and src_bytes receive the stored bytes (for releasing their pages
 * after packing).
 */
static int find_tensor(struct nr_bert *m, const char *st_name, const char *gg_name, int rows,
                       int cols, const void **data_out, int *dtype_out, size_t *src_bytes,
                       const char **name_out)
{
    const void *data;
    int dtype; /* 0 f32, 1 f16, 2 bf16 */
    const char *name;

    if (m->st) {
        char pref[256];
        const struct nr_st_tensor *t = nr_st_find(m->st, st_name);
        if (!t) {
            snprintf(pref, sizeof pref, "bert.%s", st_name);
            t = nr_st_find(m->st, pref);
        }
        if (!t)
            return nr_err_set(NR_EFORMAT, "model.safetensors: missing tensor %s", st_name);
        name = t->name;
        if (cols ? (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
                 : (t->ndim != 1 || t->shape[0] != rows))
            return nr_err_set(NR_EFORMAT,
                              "model.safetensors: tensor %s has shape [%lld%s%lld], "
                              "expected [%d, %d]",
                              name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                              t->ndim > 1 ? (long long)t->shape[1] : 0LL, rows, cols);
        if (t->dtype == NR_ST_F32)
            dtype = 0;
        else if (t->dtype == NR_ST_F16)
            dtype = 1;
        else if (t->dtype == NR_ST_BF16)
            dtype = 2;
        else
            return nr_err_set(NR_EUNSUPPORTED, "model.safetensors: tensor %s has dtype %s", name,
                              nr_st_dtype_name(t->dtype));
        data = t->data;
        *src_bytes = t->nbytes;
    } else {
        int64_t ne[2] = {cols ? cols : rows, rows};
        const struct nr_gguf_tensor *t;
        int rc =
            nr_gguf_expect(m->gguf, gg_name,
                           (1ull << NR_GGML_F32) | (1ull << NR_GGML_F16) | (1ull << NR_GGML_BF16),
                           cols ? 2 : 1, ne, &t);
        if (rc)
            return rc;
        name = t->name;
        dtype = t->type == NR_GGML_F32 ? 0 : t->type == NR_GGML_F16 ? 1 : 2;
        data = t->data;
        *src_bytes = t->nbytes;
    }
    *data_out = data;
    *dtype_out = dtype;
    *name_out = name;
    return NR_OK;
}

/* Widen n stored elements of dtype (0 f32, 1 f16, 2 bf16) into dst. */
static void widen(float *dst, const void *data, int dtype, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        if (dtype == 0) {
            memcpy(&dst[i], b + 4 * i, 4);
            continue;
        }
        memcpy(&h, b + 2 * i, 2);
        dst[i] = dtype == 1 ? nr_fp16_to_fp32(h) : nr_bf16_to_fp32(h);
    }
}

static int get_tensor(struct nr_bert *m, const char *st_name, const char *gg_name, int rows,
                      int cols, const float **out, const void **src, size_t *src_bytes)
{
    const void *data;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    int dtype;
    const char *name;
    int rc = find_tensor(m, st_name, gg_name, rows, cols, &data, &dtype, src_bytes, &name);
    if (rc)
        return rc;
    *src = data;
    if (dtype == 0 && ((uintptr_t)data & 3) == 0) {
        *out = data;
        return NR_OK;
    }
    {
        float *dst = alloc_owned(m, n);
        if (!dst)
            return nr_err_set(NR_ENOMEM, "out of memory widening tensor %s", name);
        widen(dst, data, dtype, n);
        *out = dst;
    }
    return NR_OK;
}

static int get_vec(struct nr_bert *m, const char *st_name, const char *gg_name, int n,
                   const float **out)
{
    const void *src;
    size_t bytes;
    return get_tensor(m, st_name, gg_name, n, 0, out, &src, &bytes);
}

/* Pack a linear weight [rows][cols] and release the pages it came from. */
static int pack_linear(struct nr_bert *m, const float *w, int rows, int cols, struct nr_pw *pw,
                       struct nr_pw8 *pw8)
{
    int rc;
    if (m->int8) {
        if ((rc = nr_kern_pack_i8(m->ops, pw8, w, rows, cols, NULL)))
            return rc;
        m->weight_bytes += pw8->bytes;
        return NR_OK;
    }
    if ((rc = nr_kern_pack(m->ops, pw, w, rows, cols)))
        return rc;
    m->weight_bytes += pw->bytes;
    return NR_OK;
}

static int get_linear(struct nr_bert *m, const char *st_name, const char *gg_name, int rows,
                      int cols, struct nr_pw *pw, struct nr_pw8 *pw8)
{
    const float *w;
    const void *src;
    size_t bytes;
    int rc = get_tensor(m, st_name, gg_name, rows, cols, &w, &src, &bytes);
    if (rc)
        return rc;
    if ((rc = pack_linear(m, w, rows, cols, pw, pw8)))
        return nr_err_set(rc, "out of memory packing %s", st_name);
    nr_file_release_range(src, bytes);
    return NR_OK;
}

static int load_layer(struct nr_bert *m, int i)
{
    const struct nr_bert_config *c = &m->cfg;
    struct bert_layer *L = &m->layer[i];
    int H = c->hidden, F = c->ffn, rc;
    char a[160], b[160];
    const float *q, *k, *v, *qb, *kb, *vb;
    const void *src[3];
    size_t bytes[3];
    float *qkv, *qkv_b;

#define NAMES(st, gg)                                                                              \
    (snprintf(a, sizeof a, "encoder.layer.%d.%s", i, st), snprintf(b, sizeof b, "blk.%d.%s", i, gg))
    NAMES("attention.self.query.weight", "attn_q.weight");
    if ((rc = get_tensor(m, a, b, H, H, &q, &src[0], &bytes[0])))
        return rc;
    NAMES("attention.self.key.weight", "attn_k.weight");
    if ((rc = get_tensor(m, a, b, H, H, &k, &src[1], &bytes[1])))
        return rc;
    NAMES("attention.self.value.weight", "attn_v.weight");
    if ((rc = get_tensor(m, a, b, H, H, &v, &src[2], &bytes[2])))
        return rc;
    NAMES("attention.self.query.bias", "attn_q.bias");
    if ((rc = get_vec(m, a, b, H, &qb)))
        return rc;
    NAMES("attention.self.key.bias", "attn_k.bias");
    if ((rc = get_vec(m, a, b, H, &kb)))
        return rc;
    NAMES("attention.self.value.bias", "attn_v.bias");
    if ((rc = get_vec(m, a, b, H, &vb)))
        return rc;

    /* Fuse Q, K, V into one [3H][H] weight and one [3H] bias. The fused
     * weight is only a staging copy: the packed form is what is kept. */
    qkv = nr_aligned_alloc(64, (size_t)3 * H * H * sizeof(float));
    qkv_b = alloc_owned(m, (size_t)3 * H);
    if (!qkv || !qkv_b) {
        nr_free(qkv);
        return nr_err_set(NR_ENOMEM, "out of memory fusing QKV of layer %d", i);
    }
    memcpy(qkv, q, (size_t)H * H * sizeof(float));
    memcpy(qkv + (size_t)H * H, k, (size_t)H * H * sizeof(float));
    memcpy(qkv + (size_t)2 * H * H, v, (size_t)H * H * sizeof(float));
    memcpy(qkv_b, qb, (size_t)H * sizeof(float));
    memcpy(qkv_b + H, kb, (size_t)H * sizeof(float));
    memcpy(qkv_b + 2 * H, vb, (size_t)H * sizeof(float));
    rc = pack_linear(m, qkv, 3 * H, H, &L->qkv, &L->qkv8);
    nr_free(qkv);
    if (rc)
        return nr_err_set(rc, "out of memory packing QKV of layer %d", i);
    L->qkv_b = qkv_b;
    for (int t = 0; t < 3; t++)
        nr_file_release_range(src[t], bytes[t]);

    {
        /* The rest of the layer: per tensor, its names in both layouts, its
         * shape ([rows] for vectors, cols 0) and where it goes. */
        struct {
            const char *st, *gg;
            int rows, cols;
            const float **vec; /* vectors: used in place or widened */
            struct nr_pw *pw;  /* linear weights: packed */
            struct nr_pw8 *pw8;
        } t[] = {
            {"attention.output.dense.weight", "attn_output.weight", H, H, NULL, &L->out, &L->out8},
            {"attention.output.dense.bias", "attn_output.bias", H, 0, &L->out_b, NULL, NULL},
            {"attention.output.LayerNorm.weight", "attn_output_norm.weight", H, 0, &L->ln1_g, NULL,
             NULL},
            {"attention.output.LayerNorm.bias", "attn_output_norm.bias", H, 0, &L->ln1_b, NULL,
             NULL},
            {"intermediate.dense.weight", "ffn_up.weight", F, H, NULL, &L->up, &L->up8},
            {"intermediate.dense.bias", "ffn_up.bias", F, 0, &L->up_b, NULL, NULL},
            {"output.dense.weight", "ffn_down.weight", H, F, NULL, &L->down, &L->down8},
            {"output.dense.bias", "ffn_down.bias", H, 0, &L->down_b, NULL, NULL},
            {"output.LayerNorm.weight", "layer_output_norm.weight", H, 0, &L->ln2_g, NULL, NULL},
            {"output.LayerNorm.bias", "layer_output_norm.bias", H, 0, &L->ln2_b, NULL, NULL},
        };
        for (size_t j = 0; j < sizeof t / sizeof t[0]; j++) {
            NAMES(t[j].st, t[j].gg);
            rc = t[j].vec ? get_vec(m, a, b, t[j].rows, t[j].vec)
                          : get_linear(m, a, b, t[j].rows, t[j].cols, t[j].pw, t[j].pw8);
            if (rc)
                return rc;
        }
    }
#undef NAMES
    return NR_OK;
}

static int load_weights(struct nr_bert *m)
{
    const struct nr_bert_config *c = &m->cfg;
    int rc;

    {
        /* The token table is used in place: only looked-up rows page in. */
        const void *src;
        size_t bytes;
        if ((rc = get_tensor(m, "embeddings.word_embeddings.weight", "token_embd.weight", c->vocab,
                             c->hidden, &m->word_emb, &src, &bytes)))
            return rc;
    }
    if ((rc =
             get_tensor(m, "embeddings.position_embeddings.weight", "position_embd.weight",
                        c->max_pos, c->hidden, &m->pos_emb, &(const void *){NULL}, &(size_t){0})) ||
        (rc = get_tensor(m, "embeddings.token_type_embeddings.weight", "token_types.weight",
                         c->type_vocab, c->hidden, &m->type_emb, &(const void *){NULL},
                         &(size_t){0})) ||
        (rc = get_vec(m, "embeddings.LayerNorm.weight", "token_embd_norm.weight", c->hidden,
                      &m->emb_ln_g)) ||
        (rc = get_vec(m, "embeddings.LayerNorm.bias", "token_embd_norm.bias", c->hidden,
                      &m->emb_ln_b)))
        return rc;
    m->layer = nr_calloc((size_t)c->layers, sizeof *m->layer);
    if (!m->layer)
        return nr_err_set(NR_ENOMEM, "out of memory loading model");
    for (int i = 0; i < c->layers; i++)
        if ((rc = load_layer(m, i)))
            return rc;
    return NR_OK;
}

/* ------------------------------------------------------------ tokenizer */

static int load_tokenizer(struct nr_bert *m, const char *dir)
{
    struct nr_wordpiece_opts o;
    int rc;

    nr_wordpiece_opts_default(&o);
    o.lowercase = m->cfg.lowercase;
    o.strip_accents = m->cfg.strip_accents;
    o.chinese_chars = m->cfg.chinese_chars;
    if (dir) {
        char path[4096];
        if ((rc = nr_path_join(path, sizeof path, dir, "vocab.txt")))
            return rc;
        if ((rc = nr_wordpiece_load(path, &o, &m->tok)))
            return nr_err_wrap(rc, "vocab.txt");
    } else {
        int n = m->cfg.vocab;
        const char **toks = nr_calloc((size_t)n, sizeof *toks);
        size_t *lens = nr_calloc((size_t)n, sizeof *lens);
        rc = NR_OK;
        if (!toks || !lens)
            rc = nr_err_set(NR_ENOMEM, "out of memory loading vocabulary");
        for (int i = 0; rc == NR_OK && i < n; i++)
            rc = nr_gguf_get_arr_str(m->gguf, "tokenizer.ggml.tokens", (uint64_t)i, &toks[i],
                                     &lens[i]);
        if (rc == NR_OK)
            rc = nr_wordpiece_from_tokens(toks, lens, n, 1, &o, &m->tok);
        nr_free(toks);
        nr_free(lens);
        if (rc)
            return nr_err_wrap(rc, "gguf vocabulary");
    }
    if (nr_wordpiece_vocab_size(m->tok) != m->cfg.vocab)
        return nr_err_set(NR_EFORMAT, "vocabulary has %d tokens but the model has %d embeddings",
                          nr_wordpiece_vocab_size(m->tok), m->cfg.vocab);
    return NR_OK;
}

/* ------------------------------------------------------------ open/close */

static int alloc_workspace(struct nr_bert *m, int max_batch_tokens)
{
    const struct nr_bert_config *c = &m->cfg;
    size_t T = (size_t)max_batch_tokens, H = (size_t)c->hidden;
    size_t wide = (size_t)(3 * c->hidden > c->ffn ? 3 * c->hidden : c->ffn);
    size_t sx = T * H * sizeof(float), sbig = T * wide * sizeof(float);
    size_t sscr = (size_t)MAX_WORKERS * (size_t)c->max_pos * sizeof(float);
    size_t soff = T * sizeof(int);

    m->max_batch_tokens = max_batch_tokens;
    m->x = nr_aligned_alloc(64, sx);
    m->big = nr_aligned_alloc(64, sbig);
    m->ctx = nr_aligned_alloc(64, sx);
    m->scratch = nr_aligned_alloc(64, sscr);
    m->offs = nr_malloc(soff);
    if (m->int8) {
        m->qws_bytes =
            nr_kern_i8_ws_bytes(max_batch_tokens, c->hidden > c->ffn ? c->hidden : c->ffn);
        m->qws = nr_aligned_alloc(64, m->qws_bytes);
    }
    if (!m->x || !m->big || !m->ctx || !m->scratch || !m->offs || (m->int8 && !m->qws))
        return nr_err_set(NR_ENOMEM, "out of memory for a %d-token workspace", max_batch_tokens);
    m->workspace_bytes = 2 * sx + sbig + sscr + soff + m->qws_bytes;
    return NR_OK;
}

/* weights == 0: config, tokenizer and the open file only (nr_bert_open_meta). */
static int bert_open(const char *path, int max_batch_tokens, int max_seq, int int8, int weights,
                     struct nr_bert **out)
{
    struct nr_bert *m;
    int rc;
    int is_dir = nr_path_is_dir(path);

    *out = NULL;
    if (max_batch_tokens < 1 || max_batch_tokens > (1 << 20))
        return nr_err_set(NR_EINVAL, "max_batch_tokens %d is outside [1, 1048576]",
                          max_batch_tokens);
    m = nr_calloc(1, sizeof *m);
    if (!m)
        return nr_err_set(NR_ENOMEM, "out of memory opening model");
    m->ops = nr_kern_get();
    m->int8 = int8 != 0;
    if (is_dir) {
        char st_path[4096];
        if ((rc = config_from_dir(path, &m->cfg)))
            goto fail;
        if ((rc = nr_path_join(st_path, sizeof st_path, path, "model.safetensors")))
            goto fail;
        if ((rc = nr_st_open(st_path, &m->st)))
            goto fail; /* the reader's message names the file */
        {
            const char *slash = strrchr(path, '/');
            const char *base = slash && slash[1] ? slash + 1 : path;
            snprintf(m->cfg.name, sizeof m->cfg.name, "%.100s", base);
        }
    } else {
        if ((rc = nr_gguf_open(path, &m->gguf)))
            goto fail;
        if ((rc = config_from_gguf(m->gguf, &m->cfg)))
            goto fail;
        if (!m->cfg.name[0]) {
            const char *slash = strrchr(path, '/');
            snprintf(m->cfg.name, sizeof m->cfg.name, "%.100s", slash ? slash + 1 : path);
        }
    }
    if (max_seq > 0)
        m->cfg.max_seq = max_seq < m->cfg.max_pos ? max_seq : m->cfg.max_pos;
    if (m->cfg.max_seq < 2)
        m->cfg.max_seq = 2;
    if ((rc = load_tokenizer(m, is_dir ? path : NULL)))
        goto fail;
    if (weights && (rc = load_weights(m)))
        goto fail;
    {
        /* Report the precision the weights were stored in. */
        const char *d = "f32";
        if (m->st) {
            const struct nr_st_tensor *t = nr_st_find(m->st, "embeddings.word_embeddings.weight");
            if (!t)
                t = nr_st_find(m->st, "bert.embeddings.word_embeddings.weight");
            if (t && t->dtype == NR_ST_F16)
                d = "f16";
            else if (t && t->dtype == NR_ST_BF16)
                d = "bf16";
        } else {
            const struct nr_gguf_tensor *t = nr_gguf_find_tensor(m->gguf, "blk.0.attn_q.weight");
            if (t && t->type == NR_GGML_F16)
                d = "f16";
            else if (t && t->type == NR_GGML_BF16)
                d = "bf16";
        }
        snprintf(m->cfg.dtype, sizeof m->cfg.dtype, "%s", d);
    }
    if (weights && (rc = alloc_workspace(m, max_batch_tokens)))
        goto fail;
    *out = m;
    return NR_OK;
fail:
    nr_bert_close(m);
    return rc;
}

int nr_bert_open(const char *path, int max_batch_tokens, int max_seq, int int8,
                 struct nr_bert **out)
{
    return bert_open(path, max_batch_tokens, max_seq, int8, 1, out);
}

int nr_bert_open_meta(const char *path, int max_seq, struct nr_bert **out)
{
    return bert_open(path, 1, max_seq, 0, 0, out);
}

/* Names of the tensors a backend reads with nr_bert_read_tensor, by enum
 * nr_bert_tensor: (safetensors name, GGUF name); per-layer ones are formats
 * with the layer number. */
static const char *const tensor_names[NR_BT_COUNT][2] = {
    {"embeddings.word_embeddings.weight", "token_embd.weight"},
    {"embeddings.position_embeddings.weight", "position_embd.weight"},
    {"embeddings.token_type_embeddings.weight", "token_types.weight"},
    {"embeddings.LayerNorm.weight", "token_embd_norm.weight"},
    {"embeddings.LayerNorm.bias", "token_embd_norm.bias"},
    {"encoder.layer.%d.attention.self.query.weight", "blk.%d.attn_q.weight"},
    {"encoder.layer.%d.attention.self.key.weight", "blk.%d.attn_k.weight"},
    {"encoder.layer.%d.attention.self.value.weight", "blk.%d.attn_v.weight"},
    {"encoder.layer.%d.attention.self.query.bias", "blk.%d.attn_q.bias"},
    {"encoder.layer.%d.attention.self.key.bias", "blk.%d.attn_k.bias"},
    {"encoder.layer.%d.attention.self.value.bias", "blk.%d.attn_v.bias"},
    {"encoder.layer.%d.attention.output.dense.weight", "blk.%d.attn_output.weight"},
    {"encoder.layer.%d.attention.output.dense.bias", "blk.%d.attn_output.bias"},
    {"encoder.layer.%d.attention.output.LayerNorm.weight", "blk.%d.attn_output_norm.weight"},
    {"encoder.layer.%d.attention.output.LayerNorm.bias", "blk.%d.attn_output_norm.bias"},
    {"encoder.layer.%d.intermediate.dense.weight", "blk.%d.ffn_up.weight"},
    {"encoder.layer.%d.intermediate.dense.bias", "blk.%d.ffn_up.bias"},
    {"encoder.layer.%d.output.dense.weight", "blk.%d.ffn_down.weight"},
    {"encoder.layer.%d.output.dense.bias", "blk.%d.ffn_down.bias"},
    {"encoder.layer.%d.output.LayerNorm.weight", "blk.%d.layer_output_norm.weight"},
    {"encoder.layer.%d.output.LayerNorm.bias", "blk.%d.layer_output_norm.bias"},
};

void nr_bert_tensor_shape(const struct nr_bert *m, int id, int *rows, int *cols)
{
    const struct nr_bert_config *c = &m->cfg;
    int H = c->hidden, F = c->ffn;
    *cols = 0;
    switch (id) {
    case NR_BT_WORD:
        *rows = c->vocab, *cols = H;
        break;
    case NR_BT_POS:
        *rows = c->max_pos, *cols = H;
        break;
    case NR_BT_TYPE:
        *rows = c->type_vocab, *cols = H;
        break;
    case NR_BT_Q:
    case NR_BT_K:
    case NR_BT_V:
    case NR_BT_O:
        *rows = H, *cols = H;
        break;
    case NR_BT_UP:
        *rows = F, *cols = H;
        break;
    case NR_BT_DOWN:
        *rows = H, *cols = F;
        break;
    case NR_BT_UP_B:
        *rows = F;
        break;
    default:
        *rows = id >= 0 && id < NR_BT_COUNT ? H : 0;
        break;
    }
}

int nr_bert_read_tensor(struct nr_bert *m, int layer, int id, float *dst)
{
    char a[160], b[160];
    const void *data;
    const char *name;
    size_t bytes;
    int rows, cols, dtype, rc;

    if (id < 0 || id >= NR_BT_COUNT || (id >= NR_BT_Q && (layer < 0 || layer >= m->cfg.layers)))
        return nr_err_set(NR_EINVAL, "bert: no tensor %d of layer %d", id, layer);
    nr_bert_tensor_shape(m, id, &rows, &cols);
    snprintf(a, sizeof a, tensor_names[id][0], layer);
    snprintf(b, sizeof b, tensor_names[id][1], layer);
    if ((rc = find_tensor(m, a, b, rows, cols, &data, &dtype, &bytes, &name)))
        return rc;
    widen(dst, data, dtype, (size_t)rows * (size_t)(cols ? cols : 1));
    nr_file_release_range(data, bytes);
    return NR_OK;
}

void nr_bert_close(struct nr_bert *m)
{
    if (!m)
        return;
    if (m->layer) {
        for (int i = 0; i < m->cfg.layers; i++) {
            nr_kern_pw_free(&m->layer[i].qkv);
            nr_kern_pw_free(&m->layer[i].out);
            nr_kern_pw_free(&m->layer[i].up);
            nr_kern_pw_free(&m->layer[i].down);
            nr_kern_pw8_free(&m->layer[i].qkv8);
            nr_kern_pw8_free(&m->layer[i].out8);
            nr_kern_pw8_free(&m->layer[i].up8);
            nr_kern_pw8_free(&m->layer[i].down8);
        }
        nr_free(m->layer);
    }
    for (int i = 0; i < m->n_owned; i++)
        nr_free(m->owned[i]);
    nr_free(m->owned);
    nr_wordpiece_free(m->tok);
    nr_st_close(m->st);
    nr_gguf_close(m->gguf);
    nr_free(m->x);
    nr_free(m->big);
    nr_free(m->ctx);
    nr_free(m->scratch);
    nr_free(m->offs);
    nr_free(m->qws);
    nr_free(m);
}

const struct nr_bert_config *nr_bert_config(const struct nr_bert *m)
{
    return &m->cfg;
}
const struct nr_wordpiece *nr_bert_tokenizer(const struct nr_bert *m)
{
    return m->tok;
}
int nr_bert_max_batch_tokens(const struct nr_bert *m)
{
    return m->max_batch_tokens;
}
size_t nr_bert_weight_bytes(const struct nr_bert *m)
{
    return m->weight_bytes;
}
size_t nr_bert_workspace_bytes(const struct nr_bert *m)
{
    return m->workspace_bytes;
}
const char *nr_bert_linear_kernel(const struct nr_bert *m)
{
    return m->int8 && m->layer ? m->layer[0].qkv8.ops->name : m->ops->name;
}

/* ------------------------------------------------------------ forward */

#define ROWS_PER_TASK 32

struct fwd {
    struct nr_bert *m;
    const int32_t *ids;
    const int *lens;
    int n_seq;
    int T;
    const float *ln_g, *ln_b; /* for the layernorm pass */
    float *out;
};

static void embed_task(void *arg, int task, int worker)
{
    struct fwd *f = arg;
    struct nr_bert *m = f->m;
    int H = m->cfg.hidden;
    int r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK;
    if (r1 > f->T)
        r1 = f->T;
    for (int r = r0; r < r1; r++) {
        /* position within its sequence: r - start of the sequence holding r */
        int s = 0, lo = 0, hi = f->n_seq - 1;
        while (lo <= hi) { /* last sequence whose offset <= r */
            int mid = (lo + hi) / 2;
            if (m->offs[mid] <= r) {
                s = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        {
            int pos = r - m->offs[s];
            const float *we = m->word_emb + (size_t)f->ids[r] * H;
            const float *pe = m->pos_emb + (size_t)pos * H;
            const float *te = m->type_emb;
            float *x = m->x + (size_t)r * H;
            for (int j = 0; j < H; j++)
                x[j] = we[j] + pe[j] + te[j];
        }
    }
    m->ops->layernorm(m->x + (size_t)r0 * H, r1 - r0, H, m->emb_ln_g, m->emb_ln_b, m->cfg.ln_eps);
}

static void layernorm_task(void *arg, int task, int worker)
{
    struct fwd *f = arg;
    struct nr_bert *m = f->m;
    int H = m->cfg.hidden;
    int r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK;
    if (r1 > f->T)
        r1 = f->T;
    m->ops->layernorm(m->x + (size_t)r0 * H, r1 - r0, H, f->ln_g, f->ln_b, m->cfg.ln_eps);
}

static void attention_task(void *arg, int task, int worker)
{
    struct fwd *f = arg;
    struct nr_bert *m = f->m;
    const struct nr_bert_config *c = &m->cfg;
    int s = task / c->heads, h = task % c->heads;
    int hd = c->hidden / c->heads;
    int off = m->offs[s];
    nr_kern_attention(m->ops, m->big + (size_t)off * 3 * c->hidden, 3 * c->hidden, f->lens[s],
                      c->heads, hd, h, h + 1, 1.0f / sqrtf((float)hd),
                      m->ctx + (size_t)off * c->hidden, c->hidden,
                      m->scratch + (size_t)(worker % MAX_WORKERS) * c->max_pos);
}

static void pool_task(void *arg, int s, int worker)
{
    struct fwd *f = arg;
    struct nr_bert *m = f->m;
    const struct nr_bert_config *c = &m->cfg;
    int H = c->hidden, L = f->lens[s];
    const float *x = m->x + (size_t)m->offs[s] * H;
    float *o = f->out + (size_t)s * H;

    if (c->pooling == NR_POOL_CLS) {
        memcpy(o, x, (size_t)H * sizeof(float));
    } else if (c->pooling == NR_POOL_MAX) {
        memcpy(o, x, (size_t)H * sizeof(float));
        for (int t = 1; t < L; t++)
            for (int j = 0; j < H; j++)
                if (x[(size_t)t * H + j] > o[j])
                    o[j] = x[(size_t)t * H + j];
    } else {
        float scale = c->pooling == NR_POOL_MEAN ? 1.0f / (float)L : 1.0f / sqrtf((float)L);
        memset(o, 0, (size_t)H * sizeof(float));
        for (int t = 0; t < L; t++)
            m->ops->axpy(o, 1.0f, x + (size_t)t * H, H);
        for (int j = 0; j < H; j++)
            o[j] *= scale;
    }
    if (c->normalize) {
        /* as torch.nn.functional.normalize: v / max(||v||, 1e-12) */
        double ss = 0.0;
        for (int j = 0; j < H; j++)
            ss += (double)o[j] * o[j];
        float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
        for (int j = 0; j < H; j++)
            o[j] *= inv;
    }
}

/* One linear layer in the model's precision. */
static void linear(struct nr_bert *m, struct nr_pool *pool, const float *A, int lda,
                   const struct nr_pw *w, const struct nr_pw8 *w8, const float *b, float *C,
                   int ldc, int T, int act, int acc)
{
    if (m->int8)
        nr_kern_linear_i8(pool, A, lda, w8, b, C, ldc, T, act, acc, m->qws, m->qws_bytes);
    else
        nr_kern_linear(pool, A, lda, w, b, C, ldc, T, act, acc);
}

int nr_bert_forward(struct nr_bert *m, struct nr_pool *pool, const int32_t *ids, const int *lens,
                    int n_seq, float *out)
{
    const struct nr_bert_config *c = &m->cfg;
    int H = c->hidden, T = 0, ntask;
    struct fwd f;

    if (n_seq < 1)
        return nr_err_set(NR_EINVAL, "no sequences to encode");
    if (!m->layer)
        return nr_err_set(NR_EINVAL, "bert: model opened without CPU weights");
    for (int s = 0; s < n_seq; s++) {
        if (lens[s] < 1 || lens[s] > c->max_seq)
            return nr_err_set(NR_EINVAL, "sequence %d has %d tokens (allowed 1..%d)", s, lens[s],
                              c->max_seq);
        if (T > m->max_batch_tokens - lens[s])
            return nr_err_set(NR_EINVAL, "batch exceeds %d tokens", m->max_batch_tokens);
        m->offs[s] = T;
        T += lens[s];
    }
    for (int r = 0; r < T; r++)
        if (ids[r] < 0 || ids[r] >= c->vocab)
            return nr_err_set(NR_EINVAL, "token id %d outside the vocabulary", (int)ids[r]);

    f.m = m;
    f.ids = ids;
    f.lens = lens;
    f.n_seq = n_seq;
    f.T = T;
    f.out = out;
    ntask = (T + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    nr_pool_run(pool, ntask, embed_task, &f);

    for (int l = 0; l < c->layers; l++) {
        const struct bert_layer *L = &m->layer[l];
        linear(m, pool, m->x, H, &L->qkv, &L->qkv8, L->qkv_b, m->big, 3 * H, T, NR_ACT_NONE, 0);
        nr_pool_run(pool, n_seq * c->heads, attention_task, &f);
        linear(m, pool, m->ctx, H, &L->out, &L->out8, L->out_b, m->x, H, T, NR_ACT_NONE, 1);
        f.ln_g = L->ln1_g;
        f.ln_b = L->ln1_b;
        nr_pool_run(pool, ntask, layernorm_task, &f);
        linear(m, pool, m->x, H, &L->up, &L->up8, L->up_b, m->big, c->ffn, T, NR_ACT_GELU, 0);
        linear(m, pool, m->big, c->ffn, &L->down, &L->down8, L->down_b, m->x, H, T, NR_ACT_NONE, 1);
        f.ln_g = L->ln2_g;
        f.ln_b = L->ln2_b;
        nr_pool_run(pool, ntask, layernorm_task, &f);
    }
    nr_pool_run(pool, n_seq, pool_task, &f);
    return NR_OK;
}
