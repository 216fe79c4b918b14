/*
 * bench_make_model — write random-weight GGUF models with the exact shapes of
 * Llama-3.2-1B and Llama-3.2-3B for bench_gen (decode speed depends on the
 * shapes and weight types only, not on the values).
 *
 *     bench_make_model SHAPE MIX OUT.gguf [VOCAB.gguf]
 *        SHAPE: 1b  (n_embd 2048, 16 layers, 32 heads, 8 kv heads, ff 8192)
 *               3b  (n_embd 3072, 28 layers, 24 heads, 8 kv heads, ff 8192)
 *               both: head_dim 64 (3B: 128), vocab 128256, tied output
 *        MIX:   q4_k_m  Q4_K for every matrix except attn_v and ffn_down of the
 *                       even layers and the (tied) token_embd, which are Q6_K.
 *                       This approximates llama.cpp's Q4_K_M (which picks its
 *                       Q6_K layers by a slightly different rule); the byte
 *                       count per token is within a few percent of it.
 *               q8_0    every matrix Q8_0
 *
 * VOCAB.gguf (e.g. models/llama3-tokenizer/llama3-vocab.gguf): copy its
 * tokenizer.* keys, so llama.cpp (which refuses a file without a vocabulary)
 * can load the same file; the vocabulary size then follows the token count
 * (128257 for that file: Llama 3.2's 128256 plus <|image|>).
 *
 * Speed over fidelity: blocks are random bytes with their fp16 scale fields
 * set to small finite values (so the numbers stay finite through the
 * layers), written directly instead of quantizing floats. One random buffer
 * per type is shared by every tensor of that type (the writer borrows data),
 * so a 3 GB file needs a few hundred MB of memory to make.
 */
#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_half.h"
#include "nr_mem.h"
#include "nr_quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Bytes of one block and where its fp16 scales are, per type. */
static void scale_fields(int type, int *bb, int *off0, int *off1, float *mag)
{
    *off1 = -1;
    switch (type) {
    case NR_GGML_Q8_0:
        *bb = 34, *off0 = 0, *mag = 3e-4f; /* d * int8 */
        break;
    case NR_GGML_Q4_K:
        *bb = 144, *off0 = 0, *off1 = 2, *mag = 1e-4f; /* d, dmin */
        break;
    case NR_GGML_Q6_K:
        *bb = 210, *off0 = 208, *mag = 2e-5f; /* d at the end */
        break;
    default:
        *bb = 0, *off0 = 0, *mag = 0;
    }
}

/* A buffer of `bytes` valid random blocks of `type`. */
static unsigned char *random_blocks(int type, size_t bytes)
{
    int bb, o0, o1;
    float mag;
    unsigned char *p = malloc(bytes);
    if (!p)
        return NULL;
    scale_fields(type, &bb, &o0, &o1, &mag);
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = next();
        memcpy(p + i, &r, 8);
    }
    for (size_t b = 0; b + (size_t)bb <= bytes; b += (size_t)bb) {
        uint16_t h = nr_fp32_to_fp16(mag * (0.5f + (float)(next() & 1023) / 1024.0f));
        memcpy(p + b + o0, &h, 2);
        if (o1 >= 0) {
            h = nr_fp32_to_fp16(mag * (float)(next() & 1023) / 1024.0f);
            memcpy(p + b + o1, &h, 2);
        }
    }
    return p;
}

/* Copy every tokenizer.* key of vocab into w; *n_tokens gets the token count. */
static int copy_tokenizer(struct nr_gguf_writer *w, const char *vocab, int *n_tokens)
{
    struct nr_gguf *g = NULL;
    int rc = nr_gguf_open(vocab, &g);
    for (int i = 0; !rc && i < nr_gguf_n_kv(g); i++) {
        const char *k = nr_gguf_key(g, i);
        int t = nr_gguf_kv_type(g, i), et;
        uint64_t n;
        if (strncmp(k, "tokenizer.", 10) != 0)
            continue;
        if (t == NR_GGUF_STRING) {
            const char *v;
            size_t len;
            if (!(rc = nr_gguf_get_str(g, k, &v, &len)))
                rc = nr_gguf_writer_add_strn(w, k, v, len);
        } else if (t == NR_GGUF_BOOL) {
            int v;
            if (!(rc = nr_gguf_get_bool(g, k, &v)))
                rc = nr_gguf_writer_add_bool(w, k, v);
        } else if (t == NR_GGUF_ARRAY && !(rc = nr_gguf_get_arr(g, k, &et, &n))) {
            if (strcmp(k, "tokenizer.ggml.tokens") == 0)
                *n_tokens = (int)n;
            if (et == NR_GGUF_STRING) {
                char **strs = calloc(n ? n : 1, sizeof *strs);
                for (uint64_t j = 0; !rc && strs && j < n; j++) {
                    const char *v;
                    size_t len;
                    if (!(rc = nr_gguf_get_arr_str(g, k, j, &v, &len)) &&
                        !(strs[j] = strndup(v, len)))
                        rc = NR_ENOMEM;
                }
                if (!rc)
                    rc = strs ? nr_gguf_writer_add_arr_str(w, k, (const char *const *)strs, n)
                              : NR_ENOMEM;
                for (uint64_t j = 0; strs && j < n; j++)
                    free(strs[j]);
                free(strs);
            } else {
                int32_t *v = malloc(sizeof(int32_t) * (n ? n : 1));
                for (uint64_t j = 0; !rc && v && j < n; j++)
                    rc = nr_gguf_get_arr_i32(g, k, j, &v[j]);
                if (!rc)
                    rc = v ? nr_gguf_writer_add_arr_i32(w, k, v, n) : NR_ENOMEM;
                free(v);
            }
        } else if (!rc) {
            uint32_t v;
            if (!(rc = nr_gguf_get_u32(g, k, &v)))
                rc = nr_gguf_writer_add_u32(w, k, v);
        }
    }
    nr_gguf_close(g);
    return rc;
}

int main(int argc, char **argv)
{
    int E, L, H, KV, D, F = 8192, V = 128256, q4km, rc;
    struct nr_gguf_writer *w = NULL;
    unsigned char *buf[NR_GGML_TYPE_COUNT] = {0};
    size_t cap[NR_GGML_TYPE_COUNT] = {0};
    float *ones = NULL, *ff = NULL;
    char name[96];

    if ((argc != 4 && argc != 5) || (strcmp(argv[1], "1b") && strcmp(argv[1], "3b")) ||
        (strcmp(argv[2], "q4_k_m") && strcmp(argv[2], "q8_0"))) {
        fprintf(stderr, "usage: bench_make_model 1b|3b q4_k_m|q8_0 OUT.gguf [VOCAB.gguf]\n");
        return 2;
    }
    if (strcmp(argv[1], "1b") == 0)
        E = 2048, L = 16, H = 32, KV = 8, D = 64;
    else
        E = 3072, L = 28, H = 24, KV = 8, D = 128;
    q4km = strcmp(argv[2], "q4_k_m") == 0;

    ones = malloc(sizeof(float) * E);
    ff = malloc(sizeof(float) * D / 2);
    if (!ones || !ff)
        return 1;
    for (int i = 0; i < E; i++)
        ones[i] = 1.0f;
    for (int i = 0; i < D / 2; i++)
        ff[i] = 1.0f; /* no scaling: speed does not depend on the factors */

    if ((rc = nr_gguf_writer_new(&w, 0)))
        goto fail;
    if (argc == 5 && (rc = copy_tokenizer(w, argv[4], &V)))
        goto fail;
    /* per-type shared buffers: sized for the largest tensor of each type */
    {
        int types[3] = {NR_GGML_Q8_0, NR_GGML_Q4_K, NR_GGML_Q6_K};
        size_t big = nr_quant_row_bytes(NR_GGML_Q8_0, E) * (size_t)V; /* largest: the vocab */
        for (int i = 0; i < 3; i++) {
            int t = types[i];
            cap[t] = nr_quant_row_bytes(t, E) * (size_t)V;
            if (cap[t] < big / 4)
                cap[t] = big / 4;
            if (!(buf[t] = random_blocks(t, cap[t]))) {
                fprintf(stderr, "out of memory\n");
                goto fail;
            }
        }
    }

    if ((rc = nr_gguf_writer_add_str(w, "general.architecture", "llama")) ||
        (rc = nr_gguf_writer_add_str(w, "general.name",
                                     q4km ? "random llama-3.2 q4_k_m" : "random llama-3.2 q8_0")) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.block_count", L)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.context_length", 131072)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.embedding_length", E)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.feed_forward_length", F)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.attention.head_count", H)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.attention.head_count_kv", KV)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.attention.key_length", D)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.attention.value_length", D)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.rope.dimension_count", D)) ||
        (rc = nr_gguf_writer_add_f32(w, "llama.rope.freq_base", 500000.0f)) ||
        (rc = nr_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (rc = nr_gguf_writer_add_u32(w, "llama.vocab_size", V)))
        goto fail;

#define MAT(nm, type, rows, cols)                                                                  \
    do {                                                                                           \
        int64_t ne_[2] = {(cols), (rows)};                                                         \
        size_t nb_ = nr_quant_row_bytes((type), (cols)) * (size_t)(rows);                          \
        if (nb_ > cap[(type)]) {                                                                   \
            fprintf(stderr, "internal: buffer for %s too small\n", nm);                            \
            return 1;                                                                              \
        }                                                                                          \
        if ((rc = nr_gguf_writer_add_tensor(w, nm, (type), 2, ne_, buf[(type)], nb_)))             \
            goto fail;                                                                             \
    } while (0)
#define VEC(nm, n, data)                                                                           \
    do {                                                                                           \
        int64_t ne_[1] = {(n)};                                                                    \
        if ((rc = nr_gguf_writer_add_tensor(w, nm, NR_GGML_F32, 1, ne_, (data),                    \
                                            sizeof(float) * (size_t)(n))))                         \
            goto fail;                                                                             \
    } while (0)

    MAT("token_embd.weight", q4km ? NR_GGML_Q6_K : NR_GGML_Q8_0, V, E);
    VEC("rope_freqs.weight", D / 2, ff);
    for (int l = 0; l < L; l++) {
        int wt = q4km ? NR_GGML_Q4_K : NR_GGML_Q8_0;
        int vt = q4km && l % 2 == 0 ? NR_GGML_Q6_K : wt;
#define NM(s) (snprintf(name, sizeof name, "blk.%d.%s", l, s), name)
        VEC(NM("attn_norm.weight"), E, ones);
        MAT(NM("attn_q.weight"), wt, H * D, E);
        MAT(NM("attn_k.weight"), wt, KV * D, E);
        MAT(NM("attn_v.weight"), vt, KV * D, E);
        MAT(NM("attn_output.weight"), wt, E, H * D);
        VEC(NM("ffn_norm.weight"), E, ones);
        MAT(NM("ffn_gate.weight"), wt, F, E);
        MAT(NM("ffn_up.weight"), wt, F, E);
        MAT(NM("ffn_down.weight"), vt, E, F);
#undef NM
    }
    VEC("output_norm.weight", E, ones);
    if ((rc = nr_gguf_writer_write(w, argv[3])))
        goto fail;
    printf("wrote %s: %.1f MB\n", argv[3], (double)nr_gguf_writer_size(w) / 1e6);
    nr_gguf_writer_free(w);
    for (int t = 0; t < NR_GGML_TYPE_COUNT; t++)
        free(buf[t]);
    free(ones);
    free(ff);
    return 0;
fail:
    fprintf(stderr, "bench_make_model: %s\n", nr_err_msg());
    nr_gguf_writer_free(w);
    return 1;
}
