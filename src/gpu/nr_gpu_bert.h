/*
 * nr_gpu_bert: the BERT encoder on a CUDA GPU (fp16 weights and activations,
 * fp32 accumulation and normalization statistics).
 *
 * Opened from a model opened with nr_bert_open_meta (config + tokenizer):
 * each weight is read once, converted to fp16 and uploaded; the file pages
 * are released, so no host copy stays (on an integrated GPU such as the
 * Jetson's this is what keeps the model to one copy in the shared memory).
 * The workspace is sized at open for max_batch_tokens and never grows.
 *
 * One batch in flight: nr_gpu_bert_submit enqueues a packed batch (same
 * contract as nr_bert_forward) and returns at once, so the caller can
 * tokenize the next batch while the GPU works; nr_gpu_bert_wait copies the
 * vectors out. Batches of at most NR_GPU_GRAPH_TOKENS tokens replay a CUDA
 * graph captured once per size bucket (a short query is one graph launch,
 * not ~50 kernel launches). Not reentrant: the caller serializes.
 *
 * Built with CUDA only; without it nr_gpu_bert_open says NR_EUNSUPPORTED.
 */
#ifndef NR_GPU_BERT_H
#define NR_GPU_BERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nr_bert;
struct nr_gpu_bert;

#define NR_GPU_GRAPH_TOKENS 256 /* largest batch run from a captured graph */

struct nr_gpu_bert_info {
    char device[256];       /* GPU name */
    int integrated;         /* 1: memory shared with the CPU (Jetson) */
    const char *precision;  /* "fp16" */
    size_t weight_bytes;    /* device memory held by weights */
    size_t workspace_bytes; /* device memory held by activations, cuBLASLt workspace, metadata */
    size_t pinned_bytes;    /* page-locked host staging */
    int graphs;             /* graphs captured so far */
    double tokens;          /* tokens encoded since open */
    double gpu_seconds;     /* GPU time of those batches (events) */
};

/*
 * Upload the weights of `meta` (which stays owned by the caller and must
 * outlive the encoder: its config is read at every batch) to GPU `device`.
 * Fails cleanly (NR_EUNSUPPORTED / NR_EIO / NR_ENOMEM with a message) when
 * there is no usable GPU, cuBLASLt is missing, the model's shape is not
 * handled (head_dim must be 32 or 64), free device memory is short, or the
 * encoder would need more than NANORAG_GPU_MAX_MIB (if set: a cap for a GPU
 * shared with other work, or a Jetson's shared DRAM).
 */
int nr_gpu_bert_open(struct nr_bert *meta, int device, int max_batch_tokens,
                     struct nr_gpu_bert **out);
void nr_gpu_bert_close(struct nr_gpu_bert *g);
void nr_gpu_bert_info(const struct nr_gpu_bert *g, struct nr_gpu_bert_info *info);

/* Enqueue n_seq sequences packed in ids (lens[i] each, 1..max_seq, total <=
 * max_batch_tokens). Inputs are copied before return. At most one batch may
 * be pending: submit after wait. */
int nr_gpu_bert_submit(struct nr_gpu_bert *g, const int32_t *ids, const int *lens, int n_seq);
/* Wait for the pending batch and write its vectors to out[n_seq][hidden]. */
int nr_gpu_bert_wait(struct nr_gpu_bert *g, float *out);
/* Drop any pending batch (after an error elsewhere). */
void nr_gpu_bert_cancel(struct nr_gpu_bert *g);

/* Use graphs for small batches (default on); for tests comparing both paths. */
void nr_gpu_bert_set_graphs(struct nr_gpu_bert *g, int on);
/* Attention kernel: 1 = tensor cores (the default where head_dim is 32 and
 * max_seq <= 256), 0 = the plain fp32 kernel (any length, head_dim 32/64).
 * NR_EUNSUPPORTED if tensor cores do not apply. For tests and benchmarks. */
int nr_gpu_bert_set_attention(struct nr_gpu_bert *g, int tensor_cores);
/* 1: the products by a plain reference kernel instead of cuBLASLt (also at
 * open with NANORAG_GPU_GEMM=reference): to check cuBLASLt's results, and for
 * racecheck, which cannot follow cuBLASLt's Hopper kernels. Slow. */
int nr_gpu_bert_set_reference_gemm(struct nr_gpu_bert *g, int on);

#ifdef __cplusplus
}
#endif

#endif
