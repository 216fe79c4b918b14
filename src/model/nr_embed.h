/*
 * nr_embed: the sentence-embedding API the rest of nanorag uses.
 *
 *     struct nr_embedder *e;
 *     struct nr_embed_opts o;
 *     nr_embed_opts_default(&o);
 *     if (nr_embedder_open("models/all-MiniLM-L6-v2", &o, &e)) fail(nr_err_msg());
 *     float v[2 * 384];
 *     const char *texts[] = {"hello", "world"};
 *     nr_embedder_embed(e, texts, NULL, 2, v);   // v[i*dim .. ) = vector of texts[i]
 *     nr_embedder_close(e);
 *
 * Texts are UTF-8 (invalid bytes are dropped, never fatal) and may be any
 * length: each is tokenized and cut at the model's max_seq tokens, as
 * sentence-transformers does. Large requests are split into batches of at
 * most max_batch_tokens tokens; sequences are packed, so a batch of mixed
 * lengths costs what its tokens cost and gives the same vectors as one text
 * at a time.
 *
 * Threads: nr_embedder_embed may be called from several threads; calls are
 * serialized inside (the workspace is shared) and each one uses the
 * embedder's worker pool (its own, or one lent by opts.pool). Ownership: the
 * embedder owns its model, workspace and own pool; callers own texts and
 * output buffers.
 */
#ifndef NR_EMBED_H
#define NR_EMBED_H

#include <stddef.h>
#include <stdint.h>

enum nr_precision {
    NR_PREC_FP32 = 0, /* fp32 everywhere (the reference path) */
    /* linear layers in int8: weights per output channel, activations per
     * token, quantized on the fly; ~2x the throughput on CPUs with VNNI
     * (avx512vnni), cosine >= 0.995 to fp32 (tests/test_embed_int8.c). Without
     * an int8 SIMD kernel (AVX2-only x86) it runs the scalar one: slow. */
    NR_PREC_INT8 = 1,
};

struct nr_pool;

struct nr_embed_opts {
    int threads;          /* worker threads; <= 0: one per CPU (ignored with pool) */
    struct nr_pool *pool; /* borrowed: run on this pool (shared with other components,
                             nr_pool.h), which must outlive the embedder; NULL: an own pool */
    int max_batch_tokens; /* tokens per forward pass (workspace size); default 8192 */
    int max_seq;          /* override the model's token cap; <= 0: from the model files */
    int precision;        /* NR_PREC_FP32 (default) or NR_PREC_INT8 (CPU only) */
    /* "cpu", "cuda" or "auto"; NULL: $NANORAG_DEVICE, else "cpu". "cuda" and
     * "auto" run the encoder on GPU 0 in fp16 (precision is then ignored)
     * and fall back to the CPU, with a log line, when it cannot be used. */
    const char *device;
};

struct nr_embedder_info {
    const char *model;     /* model name */
    const char *source;    /* "safetensors" or "gguf" */
    const char *device;    /* "cpu" or "cuda" */
    const char *precision; /* compute precision of the linear layers: "fp32", "int8", "fp16" */
    const char *stored;    /* weight precision in the file: "f32", "f16", "bf16" */
    const char *kernel;    /* CPU kernel variant of the linear layers: "avx512", "avx2", "neon",
                              "scalar" */
    int dim;               /* output vector size */
    int max_seq;           /* tokens per text incl. [CLS]/[SEP] */
    int threads;
    int normalize;       /* 1 if vectors are L2-normalized */
    size_t weight_bytes; /* memory held by weights (packed copies, widened tensors) */
    size_t workspace_bytes;
    char gpu_name[256];  /* device name when device is "cuda" */
    size_t gpu_bytes;    /* device memory held (weights + workspace), bytes */
    double tokens_per_s; /* GPU: tokens encoded / GPU time since open; 0 before any */
};

struct nr_embedder;
struct nr_wordpiece;

void nr_embed_opts_default(struct nr_embed_opts *o);

/* Open a model directory or .gguf file. */
int nr_embedder_open(const char *model_path, const struct nr_embed_opts *opts,
                     struct nr_embedder **out);
void nr_embedder_close(struct nr_embedder *e);

int nr_embedder_dim(const struct nr_embedder *e);
void nr_embedder_info(const struct nr_embedder *e, struct nr_embedder_info *info);

/*
 * Embed n texts into out[n][dim]. lens may be NULL (texts NUL-terminated).
 * Returns NR_OK or an error (NR_EINVAL for n < 0 or a NULL text).
 */
int nr_embedder_embed(struct nr_embedder *e, const char *const *texts, const size_t *lens, int n,
                      float *out);

/*
 * Token count of a text as the embedder sees it (with [CLS]/[SEP], before
 * truncation) — used to size chunks.
 */
int nr_embedder_count_tokens(const struct nr_embedder *e, const char *text, size_t len);

/* The embedder's tokenizer (owned by the embedder), for chunking by tokens. */
const struct nr_wordpiece *nr_embedder_tokenizer(const struct nr_embedder *e);

/*
 * A stable name for the vector space, stored beside every vector so vectors
 * of different models are never mixed: "<model name>:<dim>". Owned by e.
 */
const char *nr_embedder_model_id(const struct nr_embedder *e);

#endif
