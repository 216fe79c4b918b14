/*
 * nr_index: the in-memory exact vector index.
 *
 * Holds one row per stored chunk vector (the retrieval layer loads it from
 * the store at start-up with one nr_index_add per vector and mirrors every
 * insert and delete) and answers top-k by inner product (= cosine for the
 * L2-normalized vectors we store) over all of them: a brute-force scan with
 * SIMD dot products, split over a thread pool, top-k by bounded heaps.
 *
 * Two search modes:
 *   NR_INDEX_EXACT  fp32 dot products over every row; exact up to fp32
 *                   rounding of the sums.
 *   NR_INDEX_INT8   int8 dot products over every row (a quarter of the
 *                   bytes: the scan is memory-bandwidth bound), then the best
 *                   k*R candidates re-scored in fp32; the hits and their
 *                   scores are fp32-exact, only the candidate set is
 *                   approximate (R: nr_index_set_rescore). Needs an index made
 *                   with NR_INDEX_F_INT8.
 *
 * Memory per vector (dim 384): fp32 row 1536 B, int8 code 384 B (with
 * NR_INDEX_F_INT8) + scale and code sum 8 B, ids 20 B, id map ~24-48 B.
 * nr_index_bytes() reports the exact total.
 *
 * THREAD SAFETY. The index holds a reader-writer lock (writer preferring):
 * any number of nr_index_search / _count / _bytes run concurrently; add,
 * remove and the setters take it exclusively. Concurrent searches must not
 * share one nr_pool (nr_pool_run is one at a time per pool): give each its
 * own pool or NULL.
 *
 * OWNERSHIP. The index copies every vector it is given and keeps no pointer
 * to caller memory past a call. Results go to caller-owned arrays.
 */
#ifndef NR_INDEX_H
#define NR_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct nr_index;
struct nr_pool;

enum {
    NR_INDEX_F_INT8 = 1, /* nr_index_new flag: also keep int8 codes (enables NR_INDEX_INT8) */
};

enum nr_index_mode {
    NR_INDEX_EXACT = 0, /* fp32 scan */
    NR_INDEX_INT8 = 1,  /* int8 scan + fp32 re-score of the best k*R */
};

#define NR_INDEX_MAX_DIM     8192
#define NR_INDEX_MAX_K       1000
#define NR_INDEX_MAX_RESCORE 64
#define NR_INDEX_MAX_VECTORS (1L << 30) /* default and highest cap on rows */
#define NR_INDEX_MAX_DOC_IDS (1 << 20)  /* longest doc-id filter list */

/*
 * A new empty index of vectors of `dim` floats (1..NR_INDEX_MAX_DIM).
 * flags: 0 or NR_INDEX_F_INT8. On success *out owns the index (free with
 * nr_index_free). NR_EINVAL or NR_ENOMEM.
 */
int nr_index_new(int dim, int flags, struct nr_index **out);
/* Frees everything (NULL is fine). No search may be running. */
void nr_index_free(struct nr_index *ix);

/*
 * Add v[0..dim) for chunk_id, or replace the vector and ids of an existing
 * chunk_id in place. The vector is copied. dim must be the index's (a vector
 * from another model is an error, not a truncation), v finite with an L2
 * norm <= 1e15 (so no dot product can overflow; ours are normalized) and
 * collection_id >= 0: otherwise NR_EINVAL. NR_ELIMIT at the row cap,
 * NR_ENOMEM if growing failed. On any error the index is unchanged.
 */
int nr_index_add(struct nr_index *ix, int64_t chunk_id, int64_t doc_id, int32_t collection_id,
                 const float *v, int dim);
/* Remove one chunk: 1 if it was there, 0 if not (deletes are idempotent). O(1). */
int nr_index_remove_chunk(struct nr_index *ix, int64_t chunk_id);
/* Remove every chunk of a document: the number removed (>= 0). O(rows): one
 * pass over the doc-id column (~1 ms per million rows). */
int nr_index_remove_doc(struct nr_index *ix, int64_t doc_id);

int64_t nr_index_count(const struct nr_index *ix);
int nr_index_dim(const struct nr_index *ix);
/* Bytes held: rows, codes, ids, id map and the index itself. */
size_t nr_index_bytes(const struct nr_index *ix);

/*
 * Walk every row in row order, a block (up to 1024 rows) per call: cb gets
 * n rows, row i at rows[i*stride .. i*stride + dim) (stride >= dim floats),
 * with its chunk, document and collection ids. Runs under the read lock: cb
 * must not change the index. A non-zero return from cb stops the walk and is
 * returned. (To mirror the index elsewhere, e.g. on a GPU.)
 */
typedef int (*nr_index_rows_fn)(void *ctx, const int64_t *chunk_ids, const int64_t *doc_ids,
                                const int32_t *coll_ids, const float *rows, size_t stride, int n);
int nr_index_foreach_rows(const struct nr_index *ix, nr_index_rows_fn cb, void *ctx);

/* Re-score factor R of NR_INDEX_INT8 (1..NR_INDEX_MAX_RESCORE, else
 * NR_EINVAL). The default was chosen by measuring recall@10 against exact
 * (clustered data: 20k rows around real MiniLM vectors in test_index, 100k
 * and 1M synthetic rows in bench_index): R = 1 gives 0.987-0.993, R = 2
 * already 1.000; 4 keeps a 2x margin for denser real data at ~40 re-scored
 * rows (tens of microseconds). */
#define NR_INDEX_DEFAULT_RESCORE 4
int nr_index_set_rescore(struct nr_index *ix, int r);
/* Refuse adds of new rows once the index holds `max_rows` (1..NR_INDEX_MAX_VECTORS;
 * NR_EINVAL else); replacing an existing chunk stays allowed. */
int nr_index_set_limit(struct nr_index *ix, int64_t max_rows);

struct nr_index_filter {
    int32_t collection_id;  /* only this collection; -1: any */
    const int64_t *doc_ids; /* only these documents (any order, copied per call); NULL: any */
    int n_doc_ids;          /* entries in doc_ids, 0..NR_INDEX_MAX_DOC_IDS */
    float min_score;        /* drop hits scoring below this (fp32 score); -INFINITY: none */
};

struct nr_index_hit {
    int64_t chunk_id;
    int64_t doc_id;
    float score; /* inner product in fp32 (both modes) */
};

/*
 * The top k (1..NR_INDEX_MAX_K) rows by inner product with query[0..dim)
 * (dim must be the index's)
 * that pass filter f (NULL: none), written to hits[0..*n_hits) (hits has
 * room for k), sorted by score descending, ties by chunk id ascending.
 * *n_hits < k when fewer rows pass. mode: NR_INDEX_EXACT or NR_INDEX_INT8.
 * The scan is split over pool's threads plus the calling thread (pool NULL:
 * calling thread only); results do not depend on the thread count.
 * Allocates one workspace per call (heaps and the quantized query, about
 * threads * k * R * 24 bytes). NR_EINVAL (k, mode, a query as nr_index_add
 * rejects, filter), NR_ENOMEM.
 */
int nr_index_search(const struct nr_index *ix, struct nr_pool *pool, const float *query, int dim,
                    int k, int mode, const struct nr_index_filter *f, struct nr_index_hit *hits,
                    int *n_hits);

/*
 * ---- kernels (exposed for tests and benchmarks) ----
 *
 * One table per instruction set, in index.c (scalar reference),
 * index_avx2.c, index_avx512.c, index_neon.c. The index uses the variant of
 * the same name as the one nr_kern_get() selected (so NANORAG_KERN picks it
 * too). Rows are padded with zeros to a multiple of 16 floats / 64 bytes,
 * 64-byte aligned; the kernels rely on that.
 */
struct nr_index_kern {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */
    /* out[i] = sum_t q[t] * rows[i*stride + t], t < dimp (dimp % 16 == 0), i < n. */
    void (*dot_f32)(const float *q, const float *rows, size_t stride, int dimp, int n, float *out);
    /* out[i] = sum_t q[t] * codes[i*stride + t] exactly, t < dimp (dimp % 64 == 0).
     * Codes and q lie in [-127, 127] (never -128); csum[i] = sum_t codes[i*stride + t]
     * (the avx512 variant needs it for its unsigned x signed products). */
    void (*dot_i8)(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                   int dimp, int n, int32_t *out);
};

/* The table named `name` if built and supported by this CPU, else NULL. */
const struct nr_index_kern *nr_index_kern_by_name(const char *name);
/* The one the index uses by default. */
const struct nr_index_kern *nr_index_kern_get(void);
/* Make ix use kern (tests, benchmarks). */
void nr_index_set_kern(struct nr_index *ix, const struct nr_index_kern *kern);

/*
 * Symmetric int8 quantization as the index does it: scale = max|v| / 127,
 * q[t] = round-half-away(v[t] / scale) in [-127, 127] (all zero and scale 0
 * for a zero vector); q[dim..dimp) zeroed. Returns sum_t q[t].
 */
int32_t nr_index_quantize(const float *v, int dim, int dimp, int8_t *q, float *scale);

#endif
