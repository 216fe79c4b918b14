/*
 * nr_gpu_index: exact inner-product search on the GPU, the option for large
 * indexes. Same answers as nr_index's NR_INDEX_EXACT mode without filters:
 * the top k rows by fp32 inner product, sorted by score descending, ties by
 * chunk id ascending.
 *
 * Rows live on the device as fp32. A batch of queries against every row is
 * one GEMM (cuBLASLt, fp32 operands and accumulation, no TF32, so scores
 * differ from the CPU's only by the order of the fp32 sums); each query's
 * top k is then chosen on the device (nr_gpu_index.cu) and only k hits per
 * query come back. Capacity is fixed at creation: rows, ids and the score
 * buffer are allocated once.
 *
 * Not thread-safe: one call at a time. Ownership: vectors and ids are
 * copied; results go to caller arrays. Built with CUDA only; without it
 * nr_gpu_index_new says NR_EUNSUPPORTED.
 */
#ifndef NR_GPU_INDEX_H
#define NR_GPU_INDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nr_gpu_index;
struct nr_index_hit;

#define NR_GPU_INDEX_MAX_K 64 /* hits per query */

/* An empty index of up to `capacity` rows of `dim` floats on GPU `device`.
 * NR_EINVAL (dim 1..8192, capacity 1..2^28), NR_EUNSUPPORTED (no GPU,
 * no cuBLASLt), NR_ENOMEM (device memory). */
int nr_gpu_index_new(int dim, int64_t capacity, int device, struct nr_gpu_index **out);
void nr_gpu_index_free(struct nr_gpu_index *gx);

/* Append n rows v[n][dim] for chunk_ids / doc_ids (copied). Every value must
 * be finite; NR_ELIMIT past the capacity. On error the index is unchanged. */
int nr_gpu_index_add(struct nr_gpu_index *gx, const int64_t *chunk_ids, const int64_t *doc_ids,
                     const float *v, int n);
/* Remove a chunk (the last row moves into its place): 1 if found, 0 if not. */
int nr_gpu_index_remove_chunk(struct nr_gpu_index *gx, int64_t chunk_id);
int64_t nr_gpu_index_count(const struct nr_gpu_index *gx);
/* Device bytes held (rows, ids, scores, queries, results). */
size_t nr_gpu_index_bytes(const struct nr_gpu_index *gx);

/* Top k (1..NR_GPU_INDEX_MAX_K) hits for each of nq queries q[nq][dim]:
 * hits[i*k .. i*k + n_hits[i]) for query i, n_hits[i] = min(k, count). */
int nr_gpu_index_search(struct nr_gpu_index *gx, const float *q, int nq, int k,
                        struct nr_index_hit *hits, int *n_hits);

#ifdef __cplusplus
}
#endif

#endif
