/*
 * nr_gpu_index: exact inner-product search on the GPU, the option for large
 * indexes. Same answers as nr_index's NR_INDEX_EXACT mode without filters:
 * the top k rows by fp32 inner product, sorted by score descending, ties by
 * chunk id ascending.
 *
 * Rows live on the device as fp32. A batch of queries against every row is
 * one GEMM (cuBLASLt, fp32 operands and accumulation, no TF32, so scores
 * differ from the CPU's only by the order of the fp32 sums); each query's
 * top k is then chosen on the device (gpu_index.cu) and only k hits per
 * query come back. Filters: a collection and a minimum score, applied on the
 * device; a document-id list is the CPU index's (NR_EUNSUPPORTED here).
 * The capacity given at creation is the first allocation; adding past it
 * doubles it (one device-to-device copy).
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
struct nr_index_filter;

#define NR_GPU_INDEX_MAX_K 64 /* hits per query */

/* An empty index with room for `capacity` rows of `dim` floats on GPU
 * `device`, searching up to max_batch queries per GEMM (1..256, 0: 256;
 * larger batches go in groups; the score buffer is max_batch x capacity
 * floats, capped at 256 MiB). NR_EINVAL (dim 1..8192, capacity 1..2^28),
 * NR_EUNSUPPORTED (no GPU, no cuBLASLt), NR_ENOMEM (device memory). */
int nr_gpu_index_new(int dim, int64_t capacity, int max_batch, int device,
                     struct nr_gpu_index **out);
void nr_gpu_index_free(struct nr_gpu_index *gx);

/* Append n rows v[n][dim] for chunk_ids / doc_ids / coll_ids (copied;
 * coll_ids NULL: collection 0). Every value must be finite and collection
 * ids >= 0 (NR_EINVAL); growing may fail with NR_ENOMEM, and past 2^28 rows
 * it is NR_ELIMIT. On error the index is unchanged. */
int nr_gpu_index_add(struct nr_gpu_index *gx, const int64_t *chunk_ids, const int64_t *doc_ids,
                     const int32_t *coll_ids, const float *v, int n);
/* Remove a chunk (the last row moves into its place): 1 if found, 0 if not. */
int nr_gpu_index_remove_chunk(struct nr_gpu_index *gx, int64_t chunk_id);
/* Remove every row of a document: the number removed (>= 0), or < 0 on a
 * CUDA error. O(rows) on the host plus one row copy per removal. */
int nr_gpu_index_remove_doc(struct nr_gpu_index *gx, int64_t doc_id);
int64_t nr_gpu_index_count(const struct nr_gpu_index *gx);
/* Device bytes held (rows, ids, scores, queries, results). */
size_t nr_gpu_index_bytes(const struct nr_gpu_index *gx);

/* Top k (1..NR_GPU_INDEX_MAX_K) hits for each of nq queries q[nq][dim]
 * among the rows that pass f (NULL: all; collection_id and min_score as in
 * nr_index; doc_ids must be NULL): hits[i*k .. i*k + n_hits[i]) for query i,
 * n_hits[i] = min(k, rows passing). */
int nr_gpu_index_search(struct nr_gpu_index *gx, const float *q, int nq, int k,
                        const struct nr_index_filter *f, struct nr_index_hit *hits, int *n_hits);

#ifdef __cplusplus
}
#endif

#endif
