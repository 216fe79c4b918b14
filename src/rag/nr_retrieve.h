/*
 * nr_retrieve: hybrid retrieval over the store and the in-memory index.
 *
 *     query ─▶ embed ─▶ index top-N (fp32 exact, or int8 + fp32 re-score) ┐
 *           └────────▶ store BM25 top-N (FTS5)                           ┴▶ reciprocal
 *     rank fusion (score = Σ 1/(rrf_k + rank), rrf_k = 60) ─▶ top k ─▶ chunk text,
 *     source, title, offsets, page, heading and each mode's score and rank.
 *
 * The retriever owns the index, loaded from the store at open (every vector
 * of the embedder's model) and kept in sync by nr_retriever_update_doc /
 * nr_retriever_remove_doc after the store changes. It borrows the store, the
 * embedder and the pool, which must outlive it. One thread at a time.
 *
 * GPU. With device "cuda" or "auto" and at least gpu_min_rows vectors, the
 * index is mirrored on the GPU (nr_gpu_index: one GEMM + top-k on the
 * device) and vector searches without a document or metadata filter, and
 * with at most NR_GPU_INDEX_MAX_K candidates, run there: the same hits as
 * the CPU index (fp32, exact). The CPU index stays the reference and takes
 * every other search. "auto" leaves an integrated GPU (Jetson) alone: it
 * reads the same DRAM at the same bandwidth as the CPU scan, and a mirror
 * would hold the vectors twice in the one memory (docs/DECISIONS.md). Not
 * being able to use the GPU, or a CUDA error later, is never fatal: one log
 * line, and the CPU index answers from then on.
 */
#ifndef NR_RETRIEVE_H
#define NR_RETRIEVE_H

#include <stddef.h>
#include <stdint.h>

struct nr_store;
struct nr_embedder;
struct nr_pool;
struct nr_store_chunk;
struct nr_retriever;

enum nr_search_mode { NR_SEARCH_VECTOR = 0, NR_SEARCH_BM25 = 1, NR_SEARCH_HYBRID = 2 };

#define NR_RETRIEVE_MAX_K 200

struct nr_search_opts {
    int k;                  /* hits wanted, 1..NR_RETRIEVE_MAX_K (default 5) */
    int mode;               /* enum nr_search_mode (default hybrid) */
    int rrf_k;              /* reciprocal rank fusion constant (default 60) */
    int candidates;         /* per-mode candidates before fusion (default max(4k, 40)) */
    int int8;               /* 1: int8 index scan + fp32 re-score (default 0: exact fp32) */
    const char *collection; /* NULL: all */
    int64_t doc_id;         /* 0: all */
    const char *meta_key;   /* metadata filter: key = value (NULL: none) */
    const char *meta_value;
    float min_score; /* vector hits below this cosine are dropped (default -1: none) */
};

struct nr_search_hit {
    int64_t chunk_id, doc_id;
    double score;                 /* fused (hybrid), cosine (vector) or BM25 (bm25) */
    float vec_score;              /* cosine, when the vector search found it */
    int vec_rank;                 /* 1-based, 0 when not among the vector candidates */
    double bm25_score;            /* when BM25 found it */
    int bm25_rank;                /* 1-based, 0 when not among the BM25 candidates */
    struct nr_store_chunk *chunk; /* owned: text, source, title, offsets, page, heading */
};

void nr_search_opts_default(struct nr_search_opts *o);

#define NR_RETRIEVE_GPU_MIN_ROWS 50000

struct nr_retriever_opts {
    int int8;             /* also keep int8 codes (for nr_search_opts.int8; default 0) */
    const char *device;   /* vector search: "cpu", "cuda", "auto"; NULL: $NANORAG_DEVICE,
                             else "cpu" */
    int64_t gpu_min_rows; /* mirror on the GPU once the index holds this many vectors
                             (default NR_RETRIEVE_GPU_MIN_ROWS; 0: from the first) */
};

struct nr_retriever_info {
    int64_t vectors;
    size_t cpu_bytes;      /* the CPU index */
    size_t gpu_bytes;      /* device memory of the GPU mirror (0: none) */
    const char *device;    /* where unfiltered vector searches run now: "cpu" or "cuda" */
    const char *asked;     /* the device asked for: "cpu", "cuda" or "auto" */
    int64_t gpu_min_rows;  /* threshold for the mirror */
    uint64_t gpu_searches; /* vector searches answered by the GPU mirror */
    uint64_t cpu_searches; /* ... by the CPU index */
    char note[192];        /* why the GPU is not used, when it was asked for ("" else) */
};

void nr_retriever_opts_default(struct nr_retriever_opts *o);
/* o NULL: defaults. NR_EINVAL for an unknown device or gpu_min_rows < 0. */
int nr_retriever_open(struct nr_store *s, struct nr_embedder *e, struct nr_pool *pool,
                      const struct nr_retriever_opts *o, struct nr_retriever **out);
void nr_retriever_close(struct nr_retriever *r);
int64_t nr_retriever_count(const struct nr_retriever *r);
size_t nr_retriever_index_bytes(const struct nr_retriever *r);
void nr_retriever_info(const struct nr_retriever *r, struct nr_retriever_info *info);

/* Re-read a document's vectors from the store into the index (after a put). */
int nr_retriever_update_doc(struct nr_retriever *r, int64_t doc_id);
int nr_retriever_remove_doc(struct nr_retriever *r, int64_t doc_id);

/* Search; hits[0..*n) owned by the caller, freed with nr_search_hits_free. */
int nr_retrieve(struct nr_retriever *r, const char *query, const struct nr_search_opts *o,
                struct nr_search_hit *hits, int *n);
void nr_search_hits_free(struct nr_search_hit *hits, int n);

#endif
