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
 */
#include "nr_retrieve.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_index.h"
#include "nr_mem.h"
#include "nr_store.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct nr_retriever {
    struct nr_store *store;
    struct nr_embedder *emb;
    struct nr_pool *pool;
    struct nr_index *ix;
    int dim;
    float *qvec; /* [dim] */
};

void nr_search_opts_default(struct nr_search_opts *o)
{
    memset(o, 0, sizeof *o);
    o->k = 5;
    o->mode = NR_SEARCH_HYBRID;
    o->rrf_k = 60;
    o->min_score = -1.0f;
}

struct load_ctx {
    struct nr_index *ix;
    int64_t only_doc; /* 0: all */
};

static int load_vec(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t collection_id,
                    const float *v, int dim)
{
    struct load_ctx *c = ctx;
    if (c->only_doc && doc_id != c->only_doc)
        return 0;
    return nr_index_add(c->ix, chunk_id, doc_id, (int32_t)collection_id, v, dim);
}

int nr_retriever_open(struct nr_store *s, struct nr_embedder *e, struct nr_pool *pool, int int8,
                      struct nr_retriever **out)
{
    struct nr_retriever *r;
    struct load_ctx lc;
    int rc;

    *out = NULL;
    r = nr_calloc(1, sizeof *r);
    if (!r)
        return nr_err_set(NR_ENOMEM, "out of memory opening retriever");
    r->store = s;
    r->emb = e;
    r->pool = pool;
    r->dim = nr_embedder_dim(e);
    r->qvec = nr_malloc((size_t)r->dim * sizeof *r->qvec);
    if (!r->qvec) {
        rc = nr_err_set(NR_ENOMEM, "out of memory opening retriever");
        goto fail;
    }
    if ((rc = nr_index_new(r->dim, int8 ? NR_INDEX_F_INT8 : 0, &r->ix)))
        goto fail;
    lc.ix = r->ix;
    lc.only_doc = 0;
    if ((rc = nr_store_foreach_vector(s, nr_embedder_model_id(e), load_vec, &lc)))
        goto fail;
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
    nr_index_free(r->ix);
    nr_free(r->qvec);
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

int nr_retriever_remove_doc(struct nr_retriever *r, int64_t doc_id)
{
    int rc = nr_index_remove_doc(r->ix, doc_id); /* count removed, or < 0 */
    return rc < 0 ? rc : NR_OK;
}

/* O(vectors in the store): a per-document read is for the server's issue. */
int nr_retriever_update_doc(struct nr_retriever *r, int64_t doc_id)
{
    struct load_ctx lc = {r->ix, doc_id};
    int rc = nr_retriever_remove_doc(r, doc_id);
    if (rc)
        return rc;
    return nr_store_foreach_vector(r->store, nr_embedder_model_id(r->emb), load_vec, &lc);
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
        if (!(o->meta_key && n_meta == 0) && f.collection_id != -2 &&
            (rc = nr_index_search(r->ix, r->pool, r->qvec, r->dim, ncand,
                                  o->int8 ? NR_INDEX_INT8 : NR_INDEX_EXACT, &f, vh, &nv)))
            goto done;
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
