/*
 * retrieve.c — hybrid retrieval (nr_retrieve.h).
 *
 * Fusion is reciprocal rank fusion: each mode ranks its own candidates and a
 * chunk scores Σ 1/(rrf_k + rank) over the modes that found it, so BM25's
 * unbounded scores and cosine similarities never need a common scale. Ties
 * break by chunk id so the order is deterministic.
 *
 * Filters: collection and document go to both the index (as ids) and BM25;
 * a metadata key/value filter is resolved to the set of matching document
 * ids (a walk over the collection's documents) for the index, and passed to
 * BM25 as is. The score threshold applies to cosine similarity: vector hits
 * below it are dropped; in hybrid mode a BM25-only hit is kept (it has no
 * cosine to compare).
 *
 * GPU mirror (nr_retrieve.h). The CPU index is always loaded and always
 * current; the mirror follows it: built from nr_index_foreach_rows (a block
 * of rows per call, no store read) when the count first reaches
 * gpu_min_rows, and then given the same removals and a document's rows
 * after each update. Any CUDA error drops the mirror for good (logged), so a
 * search never fails because of the GPU. A search goes to the mirror when it
 * has no document-id list (document or metadata filter) and needs at most
 * NR_GPU_INDEX_MAX_K candidates; int8 searches go there too (exact is at
 * least as good as int8 + re-score, and faster on a GPU).
 */
#include "nr_retrieve.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_gpu.h"
#include "nr_gpu_index.h"
#include "nr_index.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_store.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DEV_CPU, DEV_AUTO, DEV_CUDA };
static const char *const dev_names[] = {"cpu", "auto", "cuda"};

#define GPU_BATCH 8 /* queries per GEMM the mirror is sized for (we send one) */

struct nr_retriever {
    struct nr_store *store;
    struct nr_embedder *emb;
    struct nr_pool *pool;
    struct nr_index *ix;
    int dim;
    float *qvec; /* [dim] */
    /* GPU mirror */
    struct nr_gpu_index *gx; /* NULL: none (yet, or for good when gpu_off) */
    int dev;                 /* DEV_* asked */
    int gpu_off;             /* 1: never (again): see note */
    int64_t gpu_min_rows;
    uint64_t gpu_searches, cpu_searches;
    float *stage; /* [stage_cap][dim] rows on their way to the mirror */
    int64_t *stage_cid, *stage_did;
    int32_t *stage_coll;
    int nstage, stage_cap; /* rows staged / room */
    char note[192];
};

void nr_search_opts_default(struct nr_search_opts *o)
{
    memset(o, 0, sizeof *o);
    o->k = 5;
    o->mode = NR_SEARCH_HYBRID;
    o->rrf_k = 60;
    o->min_score = -1.0f;
}

void nr_retriever_opts_default(struct nr_retriever_opts *o)
{
    memset(o, 0, sizeof *o);
    o->gpu_min_rows = NR_RETRIEVE_GPU_MIN_ROWS;
}

/* ------------------------------------------------------------ GPU mirror */

/* Stop using the GPU for good: say why once (printf format), free the mirror. */
__attribute__((format(printf, 2, 3))) static void gpu_drop(struct nr_retriever *r, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof r->note, fmt, ap);
    va_end(ap);
    nr_log(r->dev == DEV_CUDA || r->gx ? NR_LOG_WARN : NR_LOG_INFO,
           "retriever: vector search on the CPU: %s", r->note);
    nr_gpu_index_free(r->gx);
    r->gx = NULL;
    r->gpu_off = 1;
}

/* Room for n more staged rows. */
static int stage_reserve(struct nr_retriever *r, int n)
{
    int cap;
    if (r->nstage + n <= r->stage_cap)
        return NR_OK;
    cap = r->stage_cap ? r->stage_cap : 256;
    while (cap < r->nstage + n)
        cap *= 2;
    float *v = nr_realloc(r->stage, (size_t)cap * r->dim * sizeof *v);
    if (v)
        r->stage = v;
    int64_t *c = nr_realloc(r->stage_cid, (size_t)cap * sizeof *c);
    if (c)
        r->stage_cid = c;
    int64_t *d = nr_realloc(r->stage_did, (size_t)cap * sizeof *d);
    if (d)
        r->stage_did = d;
    int32_t *k = nr_realloc(r->stage_coll, (size_t)cap * sizeof *k);
    if (k)
        r->stage_coll = k;
    if (!v || !c || !d || !k)
        return nr_err_set(NR_ENOMEM, "out of memory staging vectors for the GPU");
    r->stage_cap = cap;
    return NR_OK;
}

static int stage_row(struct nr_retriever *r, int64_t chunk_id, int64_t doc_id, int32_t coll,
                     const float *v)
{
    int rc = stage_reserve(r, 1);
    if (rc)
        return rc;
    memcpy(r->stage + (size_t)r->nstage * r->dim, v, (size_t)r->dim * sizeof *v);
    r->stage_cid[r->nstage] = chunk_id;
    r->stage_did[r->nstage] = doc_id;
    r->stage_coll[r->nstage] = coll;
    r->nstage++;
    return NR_OK;
}

/* Staged rows to the mirror (the stage is emptied either way). */
static int stage_flush(struct nr_retriever *r)
{
    int rc = r->nstage ? nr_gpu_index_add(r->gx, r->stage_cid, r->stage_did, r->stage_coll,
                                          r->stage, r->nstage)
                       : NR_OK;
    r->nstage = 0;
    return rc;
}

/* One block of CPU index rows to the mirror. */
static int mirror_rows(void *ctx, const int64_t *chunk_ids, const int64_t *doc_ids,
                       const int32_t *coll_ids, const float *rows, size_t stride, int n)
{
    struct nr_retriever *r = ctx;
    int rc = NR_OK;
    if (stride == (size_t)r->dim) /* dense already: straight from the index */
        return nr_gpu_index_add(r->gx, chunk_ids, doc_ids, coll_ids, rows, n);
    for (int i = 0; i < n && rc == NR_OK; i++)
        rc = stage_row(r, chunk_ids[i], doc_ids[i], coll_ids[i], rows + (size_t)i * stride);
    return rc ? rc : stage_flush(r);
}

/*
 * Build the mirror if it is asked for, not built, not given up on, and the
 * index has reached the threshold. Never fails: on any problem the reason
 * goes to the log and the note, and the CPU index carries on.
 */
static void gpu_maybe_mirror(struct nr_retriever *r)
{
    struct nr_gpu_device d;
    const char *why = NULL;
    int64_t n = nr_index_count(r->ix);

    if (r->dev == DEV_CPU || r->gx || r->gpu_off || n < r->gpu_min_rows)
        return;
    if (nr_gpu_count(&why) < 1) {
        gpu_drop(r, "no usable GPU (%s)", why ? why : "none found");
        return;
    }
    if (nr_gpu_query(0, &d) != NR_OK) {
        gpu_drop(r, "GPU 0 cannot be queried: %s", nr_err_msg());
        return;
    }
    if (d.integrated && r->dev == DEV_AUTO) {
        gpu_drop(r,
                 "%.64s is integrated (shares the CPU's memory and bandwidth); device cuda "
                 "mirrors anyway",
                 d.name);
        return;
    }
    if (nr_gpu_index_new(r->dim, n + n / 4 + 1024, GPU_BATCH, 0, &r->gx) != NR_OK ||
        nr_index_foreach_rows(r->ix, mirror_rows, r) != NR_OK) {
        r->nstage = 0;
        gpu_drop(r, "GPU index: %s", nr_err_msg());
        return;
    }
    r->note[0] = '\0';
    nr_log_info("retriever: %lld vectors mirrored on %s (%.1f MiB of device memory)", (long long)n,
                d.name, nr_gpu_index_bytes(r->gx) / 1048576.0);
}

/* ------------------------------------------------------------ open, update */

struct load_ctx {
    struct nr_retriever *r;
    int stage; /* 1: stage each row for the GPU mirror too */
};

static int load_vec(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t collection_id,
                    const float *v, int dim)
{
    struct load_ctx *c = ctx;
    int rc = nr_index_add(c->r->ix, chunk_id, doc_id, (int32_t)collection_id, v, dim);
    if (rc == NR_OK && c->stage)
        rc = stage_row(c->r, chunk_id, doc_id, (int32_t)collection_id, v);
    return rc;
}

int nr_retriever_open(struct nr_store *s, struct nr_embedder *e, struct nr_pool *pool,
                      const struct nr_retriever_opts *o, struct nr_retriever **out)
{
    struct nr_retriever_opts def;
    struct nr_retriever *r;
    struct load_ctx lc;
    const char *dev;
    int rc, d;

    *out = NULL;
    if (!o) {
        nr_retriever_opts_default(&def);
        o = &def;
    }
    dev = o->device ? o->device : getenv("NANORAG_DEVICE");
    if (!dev || !*dev)
        dev = "cpu";
    for (d = 0; d < 3 && strcmp(dev, dev_names[d]) != 0; d++)
        ;
    if (d == 3)
        return nr_err_set(NR_EINVAL, "unknown retriever device \"%.32s\" (cpu, cuda, auto)", dev);
    if (o->gpu_min_rows < 0)
        return nr_err_set(NR_EINVAL, "the GPU index threshold %lld is negative",
                          (long long)o->gpu_min_rows);
    r = nr_calloc(1, sizeof *r);
    if (!r)
        return nr_err_set(NR_ENOMEM, "out of memory opening retriever");
    r->store = s;
    r->emb = e;
    r->pool = pool;
    r->dev = d;
    r->gpu_min_rows = o->gpu_min_rows;
    r->dim = nr_embedder_dim(e);
    r->qvec = nr_malloc((size_t)r->dim * sizeof *r->qvec);
    if (!r->qvec) {
        rc = nr_err_set(NR_ENOMEM, "out of memory opening retriever");
        goto fail;
    }
    if ((rc = nr_index_new(r->dim, o->int8 ? NR_INDEX_F_INT8 : 0, &r->ix)))
        goto fail;
    lc.r = r;
    lc.stage = 0;
    if ((rc = nr_store_foreach_vector(s, nr_embedder_model_id(e), load_vec, &lc)))
        goto fail;
    gpu_maybe_mirror(r);
    *out = r;
    return NR_OK;
fail:
    nr_retriever_close(r);
    return rc;
}

void nr_retriever_close(struct nr_retriever *r)
{
    if (!r)
        return;
    nr_gpu_index_free(r->gx);
    nr_index_free(r->ix);
    nr_free(r->qvec);
    nr_free(r->stage);
    nr_free(r->stage_cid);
    nr_free(r->stage_did);
    nr_free(r->stage_coll);
    nr_free(r);
}

int64_t nr_retriever_count(const struct nr_retriever *r)
{
    return nr_index_count(r->ix);
}
size_t nr_retriever_index_bytes(const struct nr_retriever *r)
{
    return nr_index_bytes(r->ix);
}

void nr_retriever_info(const struct nr_retriever *r, struct nr_retriever_info *in)
{
    memset(in, 0, sizeof *in);
    in->vectors = nr_index_count(r->ix);
    in->cpu_bytes = nr_index_bytes(r->ix);
    in->gpu_bytes = r->gx ? nr_gpu_index_bytes(r->gx) : 0;
    in->device = r->gx ? "cuda" : "cpu";
    in->asked = dev_names[r->dev];
    in->gpu_min_rows = r->gpu_min_rows;
    in->gpu_searches = r->gpu_searches;
    in->cpu_searches = r->cpu_searches;
    if (r->note[0])
        snprintf(in->note, sizeof in->note, "%s", r->note);
    else if (r->dev != DEV_CPU && !r->gx)
        snprintf(in->note, sizeof in->note, "fewer than %lld vectors", (long long)r->gpu_min_rows);
}

int nr_retriever_remove_doc(struct nr_retriever *r, int64_t doc_id)
{
    int rc = nr_index_remove_doc(r->ix, doc_id); /* count removed, or < 0 */
    if (rc < 0)
        return rc;
    if (r->gx && nr_gpu_index_remove_doc(r->gx, doc_id) < 0) {
        gpu_drop(r, "GPU index: %s", nr_err_msg());
    }
    return NR_OK;
}

/* O(the document's chunks): its rows are read from the store, added to the
 * CPU index and, staged, to the mirror in one copy. */
int nr_retriever_update_doc(struct nr_retriever *r, int64_t doc_id)
{
    struct load_ctx lc = {r, r->gx != NULL};
    int rc = nr_retriever_remove_doc(r, doc_id);
    if (rc)
        return rc;
    lc.stage = r->gx != NULL; /* the removal may have dropped the mirror */
    r->nstage = 0;
    rc = nr_store_foreach_doc_vector(r->store, nr_embedder_model_id(r->emb), doc_id, load_vec, &lc);
    if (rc) {
        /* the CPU index holds a part of the document: the mirror must too,
         * or be dropped; the caller sees the error either way */
        if (lc.stage && stage_flush(r) != NR_OK)
            gpu_drop(r, "GPU index: could not follow a failed update");
        r->nstage = 0;
        return rc;
    }
    if (lc.stage && stage_flush(r) != NR_OK) {
        gpu_drop(r, "GPU index: %s", nr_err_msg());
    }
    gpu_maybe_mirror(r);
    return NR_OK;
}

/* ------------------------------------------------------------ filters */

static int collection_id(struct nr_store *s, const char *name, int32_t *id)
{
    struct nr_store_collection *cols = NULL;
    int n = 0, rc = nr_store_collections(s, &cols, &n);
    *id = -2; /* no such collection: matches nothing */
    for (int i = 0; rc == NR_OK && i < n; i++)
        if (strcmp(cols[i].name, name) == 0)
            *id = (int32_t)cols[i].id;
    nr_free(cols);
    return rc;
}

static int meta_matches(const char *json, const char *key, const char *value)
{
    json_t *o, *v;
    int ok = 0;
    if (!json)
        return 0;
    o = json_loads(json, 0, NULL);
    v = json_object_get(o, key);
    if (json_is_string(v)) {
        ok = strcmp(json_string_value(v), value) == 0;
    } else if (v) {
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        ok = t && strcmp(t, value) == 0;
        free(t);
    }
    json_decref(o);
    return ok;
}

/* Document ids whose metadata has key = value (in the collection, if given). */
static int meta_doc_ids(struct nr_store *s, const struct nr_search_opts *o, int64_t **ids, int *n)
{
    int64_t after = 0;
    int cap = 0, rc = NR_OK;
    *ids = NULL;
    *n = 0;
    for (;;) {
        struct nr_store_doc *docs = NULL;
        int got = 0;
        if ((rc = nr_store_doc_list(s, o->collection, after, NR_STORE_MAX_LIST, &docs, &got)))
            break;
        for (int i = 0; i < got && rc == NR_OK; i++) {
            if (!meta_matches(docs[i].metadata_json, o->meta_key, o->meta_value))
                continue;
            if (*n == cap) {
                int ncap = cap ? cap * 2 : 64;
                int64_t *p = nr_realloc(*ids, (size_t)ncap * sizeof *p);
                if (!p) {
                    rc = nr_err_set(NR_ENOMEM, "out of memory filtering by metadata");
                    break;
                }
                *ids = p;
                cap = ncap;
            }
            (*ids)[(*n)++] = docs[i].id;
        }
        if (got > 0)
            after = docs[got - 1].id;
        nr_store_doc_list_free(docs, got);
        if (rc || got < NR_STORE_MAX_LIST)
            break;
        if (*n > NR_INDEX_MAX_DOC_IDS) {
            rc = nr_err_set(NR_ELIMIT, "metadata filter matches more than %d documents",
                            NR_INDEX_MAX_DOC_IDS);
            break;
        }
    }
    if (rc) {
        nr_free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

/* ------------------------------------------------------------ search */

struct cand {
    int64_t chunk_id, doc_id;
    double fused;
    float vec_score;
    int vec_rank;
    double bm25_score;
    int bm25_rank;
};

static struct cand *find_or_add(struct cand *c, int *n, int64_t chunk_id, int64_t doc_id)
{
    for (int i = 0; i < *n; i++)
        if (c[i].chunk_id == chunk_id)
            return &c[i];
    memset(&c[*n], 0, sizeof c[*n]);
    c[*n].chunk_id = chunk_id;
    c[*n].doc_id = doc_id;
    return &c[(*n)++];
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->fused != y->fused)
        return x->fused > y->fused ? -1 : 1;
    return (x->chunk_id > y->chunk_id) - (x->chunk_id < y->chunk_id);
}

int nr_retrieve(struct nr_retriever *r, const char *query, const struct nr_search_opts *o,
                struct nr_search_hit *hits, int *n_hits)
{
    struct nr_search_opts def;
    int ncand, n = 0, rc = NR_OK;
    struct cand *c = NULL;
    struct nr_index_hit *vh = NULL;
    struct nr_store_hit *bh = NULL;
    int64_t *meta_ids = NULL;
    int n_meta = 0;

    *n_hits = 0;
    if (!o) {
        nr_search_opts_default(&def);
        o = &def;
    }
    if (o->k < 1 || o->k > NR_RETRIEVE_MAX_K)
        return nr_err_set(NR_EINVAL, "k must be 1..%d", NR_RETRIEVE_MAX_K);
    if (o->mode < NR_SEARCH_VECTOR || o->mode > NR_SEARCH_HYBRID)
        return nr_err_set(NR_EINVAL, "unknown search mode %d", o->mode);
    if ((o->meta_key == NULL) != (o->meta_value == NULL))
        return nr_err_set(NR_EINVAL, "a metadata filter needs both a key and a value");
    if (!query)
        return nr_err_set(NR_EINVAL, "no query");
    ncand = o->candidates > 0 ? o->candidates : (o->k * 4 > 40 ? o->k * 4 : 40);
    if (ncand > NR_INDEX_MAX_K)
        ncand = NR_INDEX_MAX_K;
    if (ncand < o->k)
        ncand = o->k;
    c = nr_calloc((size_t)ncand * 2, sizeof *c);
    vh = nr_calloc((size_t)ncand, sizeof *vh);
    bh = nr_calloc((size_t)ncand, sizeof *bh);
    if (!c || !vh || !bh) {
        rc = nr_err_set(NR_ENOMEM, "out of memory searching");
        goto done;
    }

    if (o->mode != NR_SEARCH_BM25) {
        struct nr_index_filter f = {.collection_id = -1, .min_score = o->min_score};
        int nv = 0;
        if (o->collection && (rc = collection_id(r->store, o->collection, &f.collection_id)))
            goto done;
        if (o->meta_key) {
            if ((rc = meta_doc_ids(r->store, o, &meta_ids, &n_meta)))
                goto done;
            f.doc_ids = meta_ids;
            f.n_doc_ids = n_meta;
        } else if (o->doc_id) {
            f.doc_ids = &o->doc_id;
            f.n_doc_ids = 1;
        }
        if (o->min_score <= -1.0f)
            f.min_score = -INFINITY;
        if ((rc = nr_embedder_embed(r->emb, &query, NULL, 1, r->qvec)))
            goto done;
        if (!(o->meta_key && n_meta == 0) && f.collection_id != -2) {
            int on_gpu = r->gx && !f.doc_ids && ncand <= NR_GPU_INDEX_MAX_K;
            if (on_gpu && nr_gpu_index_search(r->gx, r->qvec, 1, ncand, &f, vh, &nv) != NR_OK) {
                gpu_drop(r, "GPU index: %s", nr_err_msg());
                on_gpu = 0;
            }
            if (on_gpu) {
                r->gpu_searches++;
            } else {
                r->cpu_searches++;
                if ((rc = nr_index_search(r->ix, r->pool, r->qvec, r->dim, ncand,
                                          o->int8 ? NR_INDEX_INT8 : NR_INDEX_EXACT, &f, vh, &nv)))
                    goto done;
            }
        }
        for (int i = 0; i < nv; i++) {
            struct cand *x = find_or_add(c, &n, vh[i].chunk_id, vh[i].doc_id);
            x->vec_score = vh[i].score;
            x->vec_rank = i + 1;
            x->fused += o->mode == NR_SEARCH_HYBRID ? 1.0 / (o->rrf_k + i + 1) : vh[i].score;
        }
    }
    if (o->mode != NR_SEARCH_VECTOR) {
        struct nr_store_filter f = {.collection = o->collection,
                                    .doc_id = o->doc_id,
                                    .meta_key = o->meta_key,
                                    .meta_value = o->meta_value};
        int nb = 0;
        if ((rc = nr_store_bm25(r->store, query, ncand, &f, bh, &nb)))
            goto done;
        for (int i = 0; i < nb; i++) {
            struct cand *x = find_or_add(c, &n, bh[i].chunk_id, bh[i].doc_id);
            x->bm25_score = bh[i].score;
            x->bm25_rank = i + 1;
            x->fused += o->mode == NR_SEARCH_HYBRID ? 1.0 / (o->rrf_k + i + 1) : bh[i].score;
        }
    }
    qsort(c, (size_t)n, sizeof *c, cmp_cand);
    if (n > o->k)
        n = o->k;
    for (int i = 0; i < n; i++) {
        struct nr_search_hit *h = &hits[i];
        memset(h, 0, sizeof *h);
        h->chunk_id = c[i].chunk_id;
        h->doc_id = c[i].doc_id;
        h->score = c[i].fused;
        h->vec_score = c[i].vec_score;
        h->vec_rank = c[i].vec_rank;
        h->bm25_score = c[i].bm25_score;
        h->bm25_rank = c[i].bm25_rank;
        if ((rc = nr_store_chunk_get(r->store, h->chunk_id, &h->chunk))) {
            nr_search_hits_free(hits, i);
            goto done;
        }
    }
    *n_hits = n;
done:
    nr_free(c);
    nr_free(vh);
    nr_free(bh);
    nr_free(meta_ids);
    return rc;
}

void nr_search_hits_free(struct nr_search_hit *hits, int n)
{
    for (int i = 0; i < n; i++) {
        nr_store_chunk_free(hits[i].chunk);
        hits[i].chunk = NULL;
    }
}
