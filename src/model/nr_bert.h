/*
 * nr_bert: a BERT-family encoder (all-MiniLM-L6-v2, bge-small, e5-small,
 * gte-small ...) on the CPU in fp32.
 *
 * Loads from a sentence-transformers / Hugging Face directory (config.json +
 * model.safetensors, tokenizer and pooling files beside them) or from a GGUF
 * file of the `bert` architecture (llama.cpp / Ollama layout). Runs a packed
 * batch of token sequences (no padding) and returns one pooled vector per
 * sequence. Tokenization, batching and the public embedding API live in
 * nr_embed.h; this module is the model alone.
 */
#ifndef NR_BERT_H
#define NR_BERT_H

#include <stddef.h>
#include <stdint.h>

struct nr_pool;
struct nr_wordpiece;

enum nr_pooling { NR_POOL_MEAN = 0, NR_POOL_CLS = 1, NR_POOL_MAX = 2, NR_POOL_MEAN_SQRT = 3 };

struct nr_bert_config {
    int vocab;      /* token embedding rows */
    int hidden;     /* model width (384 for MiniLM) */
    int layers;     /* encoder blocks */
    int heads;      /* attention heads; head_dim = hidden / heads */
    int ffn;        /* intermediate width (1536) */
    int max_pos;    /* position embedding rows (512) */
    int type_vocab; /* token type rows (2) */
    float ln_eps;   /* LayerNorm epsilon */
    int pooling;    /* enum nr_pooling */
    int normalize;  /* L2-normalize the pooled vector */
    int max_seq;    /* tokens per sequence incl. [CLS]/[SEP] (256 for MiniLM) */
    int lowercase;  /* tokenizer options, from tokenizer_config.json / GGUF */
    int strip_accents;
    int chinese_chars;
    char name[128];  /* model name for reports */
    char source[16]; /* "safetensors" or "gguf" */
    char dtype[8];   /* precision of the stored weights: "f32", "f16", "bf16" */
};

struct nr_bert;

/*
 * Open the model at `path` (a directory or a .gguf file). `max_batch_tokens`
 * sizes the forward workspace (the most tokens one nr_bert_forward call may
 * take), allocated here once. `max_seq` > 0 overrides the configured
 * sequence cap (clamped to max_pos). int8 != 0 quantizes the linear layers'
 * weights to int8 (nr_kern_pack_i8; the fp32 copies are not kept) and runs
 * them with int8 activations. On success *out owns the tokenizer too.
 */
int nr_bert_open(const char *path, int max_batch_tokens, int max_seq, int int8,
                 struct nr_bert **out);
void nr_bert_close(struct nr_bert *m);

/*
 * Open for a backend that keeps its own copy of the weights (the GPU
 * encoder): config, tokenizer and the file mapping only; no CPU weights and
 * no workspace (nr_bert_forward fails with NR_EINVAL). The backend reads each
 * tensor once with nr_bert_read_tensor, which also releases the file pages it
 * came from, so no second host copy stays resident.
 */
int nr_bert_open_meta(const char *path, int max_seq, struct nr_bert **out);

/* Weight tensors, in the shapes of PyTorch's BertModel (linear W is [out][in]). */
enum nr_bert_tensor {
    NR_BT_WORD,     /* [vocab][H] */
    NR_BT_POS,      /* [max_pos][H] */
    NR_BT_TYPE,     /* [type_vocab][H] */
    NR_BT_EMB_LN_G, /* [H] */
    NR_BT_EMB_LN_B, /* [H] */
    NR_BT_Q,        /* per layer from here: [H][H] */
    NR_BT_K,
    NR_BT_V,
    NR_BT_Q_B, /* [H] */
    NR_BT_K_B,
    NR_BT_V_B,
    NR_BT_O, /* [H][H] */
    NR_BT_O_B,
    NR_BT_LN1_G,
    NR_BT_LN1_B,
    NR_BT_UP,   /* [F][H] */
    NR_BT_UP_B, /* [F] */
    NR_BT_DOWN, /* [H][F] */
    NR_BT_DOWN_B,
    NR_BT_LN2_G,
    NR_BT_LN2_B,
    NR_BT_COUNT
};
/* rows x cols of a tensor (cols 0 for vectors). */
void nr_bert_tensor_shape(const struct nr_bert *m, int id, int *rows, int *cols);
/* Tensor id (of `layer` for per-layer ones) widened to fp32 into dst
 * [rows * max(cols, 1)], then its file pages released. */
int nr_bert_read_tensor(struct nr_bert *m, int layer, int id, float *dst);

const struct nr_bert_config *nr_bert_config(const struct nr_bert *m);
const struct nr_wordpiece *nr_bert_tokenizer(const struct nr_bert *m);
int nr_bert_max_batch_tokens(const struct nr_bert *m);
/* Bytes held: packed weights + copies of small tensors, and the workspace. */
size_t nr_bert_weight_bytes(const struct nr_bert *m);
size_t nr_bert_workspace_bytes(const struct nr_bert *m);
/* The kernel variant that runs the linear layers ("avx512", "scalar", ...). */
const char *nr_bert_linear_kernel(const struct nr_bert *m);

/*
 * Encode n_seq sequences packed back to back in `ids` (lens[i] tokens each,
 * every length in [1, max_seq], sum <= max_batch_tokens) and write one pooled
 * (and normalized, when configured) vector of `hidden` floats per sequence
 * into out [n_seq][hidden]. Not reentrant: one call at a time per model (the
 * workspace is shared); the pool spreads the work. NR_EINVAL on bad shapes.
 */
int nr_bert_forward(struct nr_bert *m, struct nr_pool *pool, const int32_t *ids, const int *lens,
                    int n_seq, float *out);

#endif
