/*
 * nr_llama: decoder-only transformers from GGUF files on the CPU — the
 * `llama` architecture (Llama 2, Llama 3.x with its RoPE frequency scaling,
 * SmolLM2, TinyLlama, Mistral), `qwen2` (QKV biases) and `gemma3`.
 *
 *     struct nr_llama *m;  struct nr_llama_seq *s;
 *     nr_llama_open("model.gguf", NULL, &m);
 *     nr_llama_seq_new(m, 2048, &s);
 *     nr_llama_eval(m, s, prompt_ids, n, logits);   // prefill; logits of the last token
 *     nr_llama_eval(m, s, &next, 1, logits);        // one decode step
 *
 * Weights stay in the read-only mapping of the file (never copied), except
 * small fp32 tensors (norms, biases). Every tensor's name, shape and type is
 * checked against the architecture at open; a missing or misshapen tensor is
 * an NR_EFORMAT naming it.
 *
 * A sequence (nr_llama_seq) is one conversation's state: its KV cache (f16,
 * [layer][pos][kv_dim]) and its position. A model serves any number of
 * sequences; nr_llama_eval calls on one model are serialized inside (they
 * share the model's worker pool and scratch), so several threads may each
 * drive their own sequence, interleaving per call.
 *
 * Ownership: the model owns the mapping, tokenizer, scratch and its pool
 * (unless opts.pool lends one); a sequence owns its KV cache. Free sequences
 * before their model.
 */
#ifndef NR_LLAMA_H
#define NR_LLAMA_H

#include <stddef.h>
#include <stdint.h>

struct nr_tok;
struct nr_gguf;
struct nr_llama;
struct nr_llama_seq;

struct nr_pool;

struct nr_llama_opts {
    int threads;          /* worker threads; <= 0: one per CPU (ignored with pool) */
    struct nr_pool *pool; /* borrowed: run on this pool (shared with other components,
                             nr_pool.h), which must outlive the model; NULL: an own pool */
    int max_batch;        /* tokens per forward pass in prefill (scratch size); default 512 */
    int exact;            /* 1: fp32 activations against dequantized weight rows instead of
                           * llama.cpp-style quantized activations (slower; for reference
                           * tests). NANORAG_LLAMA_EXACT=1 in the environment sets it too. */
};

struct nr_llama_info {
    const char *arch;      /* "llama", "qwen2", "gemma3" */
    const char *name;      /* general.name or the file's base name */
    const char *file_type; /* dominant weight type, e.g. "q4_k", "q4_1" */
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    int n_ctx_train;      /* context length the model was trained for */
    int64_t n_params;     /* parameters */
    size_t weight_bytes;  /* bytes of weights mapped from the file */
    size_t scratch_bytes; /* bytes of activations / scratch held by the model */
    int threads;
    const char *kernel; /* nr_quant_variant() */
};

void nr_llama_opts_default(struct nr_llama_opts *o);

int nr_llama_open(const char *path, const struct nr_llama_opts *opts, struct nr_llama **out);
void nr_llama_close(struct nr_llama *m);

const struct nr_llama_info *nr_llama_info(const struct nr_llama *m);
/* NULL when the file carries no tokenizer.ggml.* metadata (test models). */
const struct nr_tok *nr_llama_tok(const struct nr_llama *m);
/* tokenizer.chat_template (NUL-terminated copy) or NULL when the file has none. */
const char *nr_llama_chat_template(const struct nr_llama *m);

/* KV cache bytes a sequence of n_ctx positions holds. */
size_t nr_llama_kv_bytes(const struct nr_llama *m, int n_ctx);

/* A new sequence with room for n_ctx positions (<= 0: min(n_ctx_train, 4096);
 * capped at n_ctx_train). NR_ENOMEM when the cache cannot be allocated. */
int nr_llama_seq_new(struct nr_llama *m, int n_ctx, struct nr_llama_seq **out);
void nr_llama_seq_free(struct nr_llama_seq *s);
int nr_llama_seq_pos(const struct nr_llama_seq *s); /* positions filled */
int nr_llama_seq_n_ctx(const struct nr_llama_seq *s);
/* The token ids at positions [0, pos) (what eval was given): for prefix reuse. */
const int32_t *nr_llama_seq_ids(const struct nr_llama_seq *s);
/* Forget positions >= pos (0 <= pos <= current): reuse a shared prefix. */
void nr_llama_seq_truncate(struct nr_llama_seq *s, int pos);

/*
 * Run n tokens at the sequence's next positions (prefill in batches of
 * max_batch; n == 1 is a decode step). logits: NULL or n_vocab floats, set
 * to the last token's logits. NR_EINVAL (token id out of range, n < 1),
 * NR_ELIMIT (pos + n > n_ctx; nothing is evaluated). On error the sequence
 * is left at its old position.
 */
int nr_llama_eval(struct nr_llama *m, struct nr_llama_seq *s, const int32_t *ids, int n,
                  float *logits);

#endif
