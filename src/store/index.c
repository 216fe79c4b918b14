/*
 * index: the in-memory exact vector index (nr_index.h) — storage, id map,
 * kernel selection, the scalar reference kernels, the threaded scan and
 * top-k.
 *
 * STORAGE. Rows live in blocks of BLOCK_ROWS (1024) rows; block b holds
 * rows [b*1024, b*1024 + 1024) in one 64-byte aligned allocation carved into
 * columns:
 *
 *   f32   [1024][dimp]  float, dimp = dim rounded up to 16 (zero padded)
 *   i8    [1024][qdimp] int8 codes, qdimp = dim rounded up to 64 (zero
 *                       padded; only with NR_INDEX_F_INT8)
 *   scale [1024] float  int8 scale of the row (max|v| / 127)
 *   csum  [1024] int32  sum of the row's codes (for the VNNI bias trick)
 *   chunk [1024] int64, doc [1024] int64, coll [1024] int32
 *
 * Blocks rather than one array grown by doubling: growth never copies or
 * briefly doubles a 1.5 GB array (the Orin shares 7.4 GiB between CPU and
 * GPU), a failed allocation only ever concerns one new block, and a block is
 * the natural unit of work for the scan (one task = one block, 1.5 MiB of
 * fp32 at dim 384). Rows [0, count) are dense: removal moves the last row
 * into the hole (swap-with-last, O(1)), so the scan never meets holes. At
 * most one empty block is kept past the last row (hysteresis for add/remove
 * at a block boundary); the rest are freed.
 *
 * ID MAP. chunk_id -> row, open addressing with linear probing over a
 * power-of-two table (load <= 0.7, doubled when needed, never shrunk),
 * splitmix64 hash, backward-shift deletion (no tombstones). Each add that
 * grows anything allocates first and mutates after, so a failed add leaves
 * the index as it was.
 *
 * SEARCH. Tasks (blocks) are handed to the pool; each worker keeps a bounded
 * min-heap (root = worst kept hit) of capacity c = k (exact) or k*R (int8),
 * and a task scores its whole block with one kernel call into the worker's
 * score buffer, then offers each row that beats the heap's root and passes
 * the filter. The heaps are then merged and sorted. The order is total
 * (score descending, chunk id ascending) and a row's score does not depend on
 * which task or thread computed it, so results are identical for any thread
 * count. In int8 mode the approximate score of row i is
 * sq * scale[i] * (int32 dot of codes); the best c candidates are re-scored
 * with the fp32 kernel (the same per-row arithmetic as the exact scan, so a
 * re-scored score equals the exact-mode score bit for bit) and the best k of
 * those returned. min_score applies to fp32 scores only (so after
 * re-scoring in int8 mode). Filters are applied after scoring: the kernel
 * scores a whole block anyway (sequential reads are what the scan is bound
 * by); a very selective filter would be better served by a per-collection
 * index, not handled yet.
 *
 * KERNELS. One table per instruction set (struct nr_index_kern); the index
 * uses the one named like nr_kern_get()'s choice (the per-arch files are
 * compiled with the same flags as src/kern's, so they need the same CPU
 * features; NANORAG_KERN selects both). Every variant computes each row with
 * the same operation sequence wherever it sits, one row at a time (a single
 * sequential stream: see index_avx512.c).
 *
 * LOCKING. A writer-preferring pthread rwlock: searches read, add/remove
 * write. Searches hold it for the whole scan.
 */
#define _GNU_SOURCE
#include "nr_index.h"

#include "nr_err.h"
#include "nr_kern.h"
#include "nr_mem.h"
#include "nr_pool.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_ROWS 1024

struct block {
    void *mem;      /* the one allocation (nr_free) */
    float *f32;     /* [BLOCK_ROWS][dimp] */
    int8_t *i8;     /* [BLOCK_ROWS][qdimp], NULL without NR_INDEX_F_INT8 */
    float *scale;   /* [BLOCK_ROWS] int8 scale */
    int32_t *csum;  /* [BLOCK_ROWS] sum of codes */
    int64_t *chunk; /* [BLOCK_ROWS] */
    int64_t *doc;   /* [BLOCK_ROWS] */
    int32_t *coll;  /* [BLOCK_ROWS] */
};

struct map_entry {
    int64_t key;  /* chunk id */
    int64_t slot; /* row, or -1 if the entry is empty */
};

struct nr_index {
    int dim;                          /* floats per vector */
    int dimp;                         /* fp32 row stride: dim rounded up to 16 */
    int qdimp;                        /* int8 row stride: dim rounded up to 64 */
    int flags;                        /* NR_INDEX_F_* */
    int rescore;                      /* R of NR_INDEX_INT8 */
    int64_t count;                    /* rows in use: [0, count) */
    int64_t limit;                    /* cap on count */
    struct block *blocks;             /* [cap_blocks], first nblocks allocated */
    int64_t nblocks, cap_blocks;      /* blocks allocated / room in blocks[] */
    size_t block_bytes;               /* size of one block allocation */
    struct map_entry *map;            /* [map_cap] id map */
    size_t map_cap;                   /* power of two (0 before the first add) */
    const struct nr_index_kern *kern; /* dot product kernels */
    pthread_rwlock_t lock;            /* readers: search; writers: add/remove/set */
};

/* ------------------------------------------------------------ kernels */

static void dot_f32_scalar(const float *q, const float *rows, size_t stride, int dimp, int n,
                           float *out)
{
    for (int i = 0; i < n; i++) {
        const float *r = rows + (size_t)i * stride;
        float s = 0.0f;
        for (int t = 0; t < dimp; t++)
            s += q[t] * r[t];
        out[i] = s;
    }
}

static void dot_i8_scalar(const int8_t *q, const int8_t *codes, const int32_t *csum, size_t stride,
                          int dimp, int n, int32_t *out)
{
    for (int i = 0; i < n; i++) {
        const int8_t *r = codes + (size_t)i * stride;
        int32_t s = 0;
        for (int t = 0; t < dimp; t++)
            s += (int32_t)q[t] * (int32_t)r[t];
        out[i] = s;
    }
}

static const struct nr_index_kern kern_scalar = {"scalar", dot_f32_scalar, dot_i8_scalar};

#if defined(__x86_64__)
extern const struct nr_index_kern nr_index_kern_avx2;
extern const struct nr_index_kern nr_index_kern_avx512;
#elif defined(__aarch64__)
extern const struct nr_index_kern nr_index_kern_neon;
#endif

static const struct nr_index_kern *const kerns[] = {
#if defined(__x86_64__)
    &nr_index_kern_avx512,
    &nr_index_kern_avx2,
#elif defined(__aarch64__)
    &nr_index_kern_neon,
#endif
    &kern_scalar,
};

const struct nr_index_kern *nr_index_kern_by_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof kerns / sizeof kerns[0]; i++) {
        if (strcmp(kerns[i]->name, name))
            continue;
        /* Same file flags as src/kern's variant of that name: same CPU needs. */
        return kerns[i] == &kern_scalar || nr_kern_by_name(name) ? kerns[i] : NULL;
    }
    return NULL;
}

const struct nr_index_kern *nr_index_kern_get(void)
{
    const struct nr_index_kern *k = nr_index_kern_by_name(nr_kern_get()->name);
    return k ? k : &kern_scalar;
}

int32_t nr_index_quantize(const float *v, int dim, int dimp, int8_t *q, float *scale)
{
    float m = 0.0f;
    int32_t sum = 0;
    double inv;

    for (int t = 0; t < dim; t++) {
        float a = fabsf(v[t]);
        if (a > m)
            m = a;
    }
    memset(q, 0, (size_t)dimp);
    if (m == 0.0f) {
        *scale = 0.0f;
        return 0;
    }
    inv = 127.0 / (double)m; /* in double: finite even for a subnormal m */
    for (int t = 0; t < dim; t++) {
        double x = round((double)v[t] * inv); /* half away from zero */
        int c = x > 127.0 ? 127 : x < -127.0 ? -127 : (int)x;
        q[t] = (int8_t)c;
        sum += c;
    }
    *scale = m / 127.0f;
    return sum;
}

/* ------------------------------------------------------------ id map */

static uint64_t mix64(int64_t key)
{
    uint64_t z = (uint64_t)key + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Position of key in the map, or -1. */
static int64_t map_find(const struct nr_index *ix, int64_t key)
{
    size_t mask = ix->map_cap - 1;
    if (!ix->map_cap)
        return -1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (ix->map[i].slot < 0)
            return -1;
        if (ix->map[i].key == key)
            return (int64_t)i;
    }
}

static void map_put(struct map_entry *map, size_t cap, int64_t key, int64_t slot)
{
    size_t mask = cap - 1, i = mix64(key) & mask;
    while (map[i].slot >= 0)
        i = (i + 1) & mask;
    map[i].key = key;
    map[i].slot = slot;
}

/* Room for one more key (count + 1 <= 0.7 * cap). NR_ENOMEM leaves the map as it was. */
static int map_reserve(struct nr_index *ix)
{
    size_t cap = ix->map_cap ? ix->map_cap : 64, bytes;
    struct map_entry *m;

    while ((size_t)(ix->count + 1) * 10 > cap * 7)
        cap *= 2;
    if (cap == ix->map_cap)
        return NR_OK;
    if (nr_mul_size(cap, sizeof *m, &bytes) || !(m = nr_malloc(bytes)))
        return nr_err_set(NR_ENOMEM, "index: no memory for an id map of %zu entries", cap);
    for (size_t i = 0; i < cap; i++)
        m[i].slot = -1;
    for (size_t i = 0; i < ix->map_cap; i++)
        if (ix->map[i].slot >= 0)
            map_put(m, cap, ix->map[i].key, ix->map[i].slot);
    nr_free(ix->map);
    ix->map = m;
    ix->map_cap = cap;
    return NR_OK;
}

/* Remove the entry at position p (backward-shift deletion). */
static void map_erase(struct nr_index *ix, size_t p)
{
    size_t mask = ix->map_cap - 1, hole = p;
    for (size_t j = (p + 1) & mask; ix->map[j].slot >= 0; j = (j + 1) & mask) {
        size_t home = mix64(ix->map[j].key) & mask;
        /* The entry may fill the hole if the hole lies on its probe path. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            ix->map[hole] = ix->map[j];
            hole = j;
        }
    }
    ix->map[hole].slot = -1;
}

/* ------------------------------------------------------------ blocks */

static struct block *block_of(const struct nr_index *ix, int64_t slot, int64_t *row)
{
    *row = slot % BLOCK_ROWS;
    return &ix->blocks[slot / BLOCK_ROWS];
}

static size_t round_up64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* Room for row `count`: a new block when needed. NR_ENOMEM leaves things as they were. */
static int blocks_reserve(struct nr_index *ix)
{
    struct block *b;
    unsigned char *p;

    if (ix->count < ix->nblocks * BLOCK_ROWS)
        return NR_OK;
    if (ix->nblocks == ix->cap_blocks) {
        int64_t cap = ix->cap_blocks ? ix->cap_blocks * 2 : 8;
        struct block *nb = nr_realloc(ix->blocks, (size_t)cap * sizeof *nb);
        if (!nb)
            return nr_err_set(NR_ENOMEM, "index: no memory for the block table");
        ix->blocks = nb;
        ix->cap_blocks = cap;
    }
    p = nr_aligned_alloc(64, ix->block_bytes);
    if (!p)
        return nr_err_set(NR_ENOMEM, "index: no memory for %d more rows (%zu bytes)", BLOCK_ROWS,
                          ix->block_bytes);
    b = &ix->blocks[ix->nblocks++];
    memset(b, 0, sizeof *b);
    b->mem = p;
    b->f32 = (float *)p;
    p += round_up64((size_t)BLOCK_ROWS * (size_t)ix->dimp * sizeof(float));
    if (ix->flags & NR_INDEX_F_INT8) {
        b->i8 = (int8_t *)p;
        p += (size_t)BLOCK_ROWS * (size_t)ix->qdimp;
    }
    b->scale = (float *)p;
    p += BLOCK_ROWS * sizeof(float);
    b->csum = (int32_t *)p;
    p += BLOCK_ROWS * sizeof(int32_t);
    b->chunk = (int64_t *)p;
    p += BLOCK_ROWS * sizeof(int64_t);
    b->doc = (int64_t *)p;
    p += BLOCK_ROWS * sizeof(int64_t);
    b->coll = (int32_t *)p;
    return NR_OK;
}

/* Free blocks past the one spare after the last row. */
static void blocks_trim(struct nr_index *ix)
{
    int64_t needed = (ix->count + BLOCK_ROWS - 1) / BLOCK_ROWS;
    while (ix->nblocks > needed + 1)
        nr_free(ix->blocks[--ix->nblocks].mem);
}

static void row_write(struct nr_index *ix, int64_t slot, int64_t chunk_id, int64_t doc_id,
                      int32_t coll, const float *v)
{
    int64_t r;
    struct block *b = block_of(ix, slot, &r);
    float *dst = b->f32 + r * ix->dimp;

    memcpy(dst, v, (size_t)ix->dim * sizeof(float));
    memset(dst + ix->dim, 0, (size_t)(ix->dimp - ix->dim) * sizeof(float));
    if (b->i8)
        b->csum[r] = nr_index_quantize(v, ix->dim, ix->qdimp, b->i8 + r * ix->qdimp, &b->scale[r]);
    else
        b->csum[r] = 0, b->scale[r] = 0.0f;
    b->chunk[r] = chunk_id;
    b->doc[r] = doc_id;
    b->coll[r] = coll;
}

static void row_move(struct nr_index *ix, int64_t to, int64_t from)
{
    int64_t rt, rf;
    struct block *bt = block_of(ix, to, &rt), *bf = block_of(ix, from, &rf);

    memcpy(bt->f32 + rt * ix->dimp, bf->f32 + rf * ix->dimp, (size_t)ix->dimp * sizeof(float));
    if (bt->i8)
        memcpy(bt->i8 + rt * ix->qdimp, bf->i8 + rf * ix->qdimp, (size_t)ix->qdimp);
    bt->scale[rt] = bf->scale[rf];
    bt->csum[rt] = bf->csum[rf];
    bt->chunk[rt] = bf->chunk[rf];
    bt->doc[rt] = bf->doc[rf];
    bt->coll[rt] = bf->coll[rf];
}

/* Remove row `slot` whose id map entry is at position p. */
static void row_remove(struct nr_index *ix, int64_t slot, size_t p)
{
    int64_t last = ix->count - 1;

    map_erase(ix, p);
    if (slot != last) {
        int64_t r, q;
        struct block *b = block_of(ix, last, &r);
        row_move(ix, slot, last);
        q = map_find(ix, b->chunk[r]);
        ix->map[q].slot = slot;
    }
    ix->count--;
}

/* ------------------------------------------------------------ public: writers */

static int vec_check(const float *v, int n, int dim, const char *what)
{
    double ss = 0.0;
    if (!v)
        return nr_err_set(NR_EINVAL, "index: %s is NULL", what);
    if (n != dim)
        return nr_err_set(NR_EINVAL, "index: %s has %d dimensions, the index %d", what, n, dim);
    for (int t = 0; t < dim; t++)
        ss += (double)v[t] * (double)v[t];
    /* Also catches NaN and infinities (ss is then NaN or inf). */
    if (!(ss <= 1e30))
        return nr_err_set(NR_EINVAL, "index: %s has a non-finite value or a norm above 1e15", what);
    return NR_OK;
}

int nr_index_new(int dim, int flags, struct nr_index **out)
{
    struct nr_index *ix;
    size_t f32_bytes, i8_bytes;

    *out = NULL;
    if (dim < 1 || dim > NR_INDEX_MAX_DIM)
        return nr_err_set(NR_EINVAL, "index: dim %d outside 1..%d", dim, NR_INDEX_MAX_DIM);
    if (flags & ~NR_INDEX_F_INT8)
        return nr_err_set(NR_EINVAL, "index: unknown flags 0x%x", (unsigned)flags);
    ix = nr_calloc(1, sizeof *ix);
    if (!ix)
        return nr_err_set(NR_ENOMEM, "index: no memory");
    ix->dim = dim;
    ix->dimp = (dim + 15) & ~15;
    ix->qdimp = (dim + 63) & ~63;
    ix->flags = flags;
    ix->rescore = NR_INDEX_DEFAULT_RESCORE;
    ix->limit = NR_INDEX_MAX_VECTORS;
    ix->kern = nr_index_kern_get();
    f32_bytes = round_up64((size_t)BLOCK_ROWS * (size_t)ix->dimp * sizeof(float));
    i8_bytes = (flags & NR_INDEX_F_INT8) ? (size_t)BLOCK_ROWS * (size_t)ix->qdimp : 0;
    ix->block_bytes = f32_bytes + i8_bytes + (size_t)BLOCK_ROWS * (4 + 4 + 8 + 8 + 4);
    {
        pthread_rwlockattr_t attr;
        int rc = pthread_rwlockattr_init(&attr);
        if (!rc) {
            pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
            rc = pthread_rwlock_init(&ix->lock, &attr);
            pthread_rwlockattr_destroy(&attr);
        }
        if (rc) {
            nr_free(ix);
            return nr_err_set(NR_ENOMEM, "index: cannot create its lock");
        }
    }
    *out = ix;
    return NR_OK;
}

void nr_index_free(struct nr_index *ix)
{
    if (!ix)
        return;
    for (int64_t b = 0; b < ix->nblocks; b++)
        nr_free(ix->blocks[b].mem);
    nr_free(ix->blocks);
    nr_free(ix->map);
    pthread_rwlock_destroy(&ix->lock);
    nr_free(ix);
}

int nr_index_add(struct nr_index *ix, int64_t chunk_id, int64_t doc_id, int32_t collection_id,
                 const float *v, int dim)
{
    int64_t p;
    int rc;

    rc = vec_check(v, dim, ix->dim, "vector");
    if (rc)
        return rc;
    if (collection_id < 0)
        return nr_err_set(NR_EINVAL, "index: collection id %d is negative", (int)collection_id);
    pthread_rwlock_wrlock(&ix->lock);
    p = map_find(ix, chunk_id);
    if (p >= 0) { /* replace in place: nothing to allocate */
        row_write(ix, ix->map[p].slot, chunk_id, doc_id, collection_id, v);
        goto done;
    }
    if (ix->count >= ix->limit) {
        rc = nr_err_set(NR_ELIMIT, "index: full (%lld rows)", (long long)ix->limit);
        goto done;
    }
    /* Allocate everything first: a failure leaves the rows and ids as they were
     * (at worst a spare empty block or a bigger id map). */
    if ((rc = blocks_reserve(ix)) || (rc = map_reserve(ix)))
        goto done;
    row_write(ix, ix->count, chunk_id, doc_id, collection_id, v);
    map_put(ix->map, ix->map_cap, chunk_id, ix->count);
    ix->count++;
done:
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

int nr_index_remove_chunk(struct nr_index *ix, int64_t chunk_id)
{
    int64_t p;
    int removed = 0;

    pthread_rwlock_wrlock(&ix->lock);
    p = map_find(ix, chunk_id);
    if (p >= 0) {
        row_remove(ix, ix->map[p].slot, (size_t)p);
        blocks_trim(ix);
        removed = 1;
    }
    pthread_rwlock_unlock(&ix->lock);
    return removed;
}

int nr_index_remove_doc(struct nr_index *ix, int64_t doc_id)
{
    int removed = 0;

    pthread_rwlock_wrlock(&ix->lock);
    /* Backwards: the row moved into a hole comes from the end, already checked. */
    for (int64_t s = ix->count - 1; s >= 0; s--) {
        int64_t r;
        struct block *b = block_of(ix, s, &r);
        if (b->doc[r] != doc_id)
            continue;
        row_remove(ix, s, (size_t)map_find(ix, b->chunk[r]));
        removed++;
    }
    blocks_trim(ix);
    pthread_rwlock_unlock(&ix->lock);
    return removed;
}

int64_t nr_index_count(const struct nr_index *ix)
{
    struct nr_index *m = (struct nr_index *)ix; /* the lock is the only mutable part */
    int64_t n;
    pthread_rwlock_rdlock(&m->lock);
    n = ix->count;
    pthread_rwlock_unlock(&m->lock);
    return n;
}

int nr_index_dim(const struct nr_index *ix)
{
    return ix->dim;
}

size_t nr_index_bytes(const struct nr_index *ix)
{
    struct nr_index *m = (struct nr_index *)ix;
    size_t n;
    pthread_rwlock_rdlock(&m->lock);
    n = sizeof *ix + (size_t)ix->nblocks * ix->block_bytes +
        (size_t)ix->cap_blocks * sizeof(struct block) + ix->map_cap * sizeof(struct map_entry);
    pthread_rwlock_unlock(&m->lock);
    return n;
}

int nr_index_foreach_rows(const struct nr_index *ix, nr_index_rows_fn cb, void *ctx)
{
    struct nr_index *m = (struct nr_index *)ix;
    int rc = NR_OK;
    if (!cb)
        return nr_err_set(NR_EINVAL, "index: rows: no callback");
    pthread_rwlock_rdlock(&m->lock);
    for (int64_t b = 0; rc == NR_OK && b * BLOCK_ROWS < ix->count; b++) {
        const struct block *k = &ix->blocks[b];
        int64_t left = ix->count - b * BLOCK_ROWS;
        rc = cb(ctx, k->chunk, k->doc, k->coll, k->f32, (size_t)ix->dimp,
                left < BLOCK_ROWS ? (int)left : BLOCK_ROWS);
    }
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

int nr_index_set_rescore(struct nr_index *ix, int r)
{
    if (r < 1 || r > NR_INDEX_MAX_RESCORE)
        return nr_err_set(NR_EINVAL, "index: rescore factor %d outside 1..%d", r,
                          NR_INDEX_MAX_RESCORE);
    pthread_rwlock_wrlock(&ix->lock);
    ix->rescore = r;
    pthread_rwlock_unlock(&ix->lock);
    return NR_OK;
}

int nr_index_set_limit(struct nr_index *ix, int64_t max_rows)
{
    if (max_rows < 1 || max_rows > NR_INDEX_MAX_VECTORS)
        return nr_err_set(NR_EINVAL, "index: row limit %lld outside 1..%ld", (long long)max_rows,
                          NR_INDEX_MAX_VECTORS);
    pthread_rwlock_wrlock(&ix->lock);
    ix->limit = max_rows;
    pthread_rwlock_unlock(&ix->lock);
    return NR_OK;
}

void nr_index_set_kern(struct nr_index *ix, const struct nr_index_kern *kern)
{
    pthread_rwlock_wrlock(&ix->lock);
    ix->kern = kern ? kern : nr_index_kern_get();
    pthread_rwlock_unlock(&ix->lock);
}

/* ------------------------------------------------------------ search */

struct cand {
    float score;   /* fp32, or the int8 approximation before re-scoring */
    int64_t chunk; /* chunk id */
    int64_t slot;  /* row */
};

struct heap {
    struct cand *e; /* [cap], e[0] the worst kept */
    int n, cap;
};

/* a ranks below b: lower score, or the same score and a larger chunk id. */
static int worse(const struct cand *a, const struct cand *b)
{
    return a->score < b->score || (a->score == b->score && a->chunk > b->chunk);
}

static void heap_offer(struct heap *h, const struct cand *c)
{
    int i;
    if (h->n < h->cap) { /* sift up */
        i = h->n++;
        while (i > 0) {
            int parent = (i - 1) / 2;
            if (!worse(c, &h->e[parent]))
                break;
            h->e[i] = h->e[parent];
            i = parent;
        }
        h->e[i] = *c;
        return;
    }
    if (!worse(&h->e[0], c))
        return;
    i = 0; /* replace the root, sift down */
    for (;;) {
        int l = 2 * i + 1, m = l;
        if (l >= h->n)
            break;
        if (l + 1 < h->n && worse(&h->e[l + 1], &h->e[l]))
            m = l + 1;
        if (!worse(&h->e[m], c))
            break;
        h->e[i] = h->e[m];
        i = m;
    }
    h->e[i] = *c;
}

static int cand_cmp(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return worse(b, a) ? -1 : worse(a, b) ? 1 : 0;
}

static int i64_cmp(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return a < b ? -1 : a > b;
}

struct scan {
    const struct nr_index *ix;
    int mode;
    const float *qf;     /* [dimp] padded query */
    const int8_t *q8;    /* [qdimp] quantized query (int8 mode) */
    float sq;            /* query scale (int8 mode) */
    int32_t coll;        /* collection filter, -1 any */
    const int64_t *docs; /* sorted doc filter, NULL any */
    int ndocs;           /* entries in docs */
    float min_score;     /* exact mode: applied in the scan */
    struct heap *heaps;  /* [threads] */
    float *scores;       /* [threads][BLOCK_ROWS] */
    int32_t *acc;        /* [threads][BLOCK_ROWS] */
};

static int doc_allowed(const struct scan *s, int64_t doc)
{
    int lo = 0, hi = s->ndocs;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (s->docs[mid] < doc)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->ndocs && s->docs[lo] == doc;
}

static void scan_task(void *vctx, int task, int worker)
{
    const struct scan *s = vctx;
    const struct nr_index *ix = s->ix;
    const struct block *b = &ix->blocks[task];
    int64_t base = (int64_t)task * BLOCK_ROWS;
    int n = (int)(ix->count - base < BLOCK_ROWS ? ix->count - base : BLOCK_ROWS);
    struct heap *h = &s->heaps[worker];
    float *sc = s->scores + (size_t)worker * BLOCK_ROWS;
    float floor = s->mode == NR_INDEX_EXACT ? s->min_score : -INFINITY;

    if (s->mode == NR_INDEX_EXACT) {
        ix->kern->dot_f32(s->qf, b->f32, (size_t)ix->dimp, ix->dimp, n, sc);
    } else {
        int32_t *acc = s->acc + (size_t)worker * BLOCK_ROWS;
        ix->kern->dot_i8(s->q8, b->i8, b->csum, (size_t)ix->qdimp, ix->qdimp, n, acc);
        for (int i = 0; i < n; i++)
            sc[i] = s->sq * b->scale[i] * (float)acc[i];
    }
    for (int i = 0; i < n; i++) {
        struct cand c;
        if (sc[i] < floor || (h->n == h->cap && sc[i] < h->e[0].score))
            continue;
        if (s->coll >= 0 && b->coll[i] != s->coll)
            continue;
        if (s->docs && !doc_allowed(s, b->doc[i]))
            continue;
        c.score = sc[i];
        c.chunk = b->chunk[i];
        c.slot = base + i;
        heap_offer(h, &c);
    }
}

int nr_index_search(const struct nr_index *ix, struct nr_pool *pool, const float *query, int dim,
                    int k, int mode, const struct nr_index_filter *f, struct nr_index_hit *hits,
                    int *n_hits)
{
    struct nr_index *mix = (struct nr_index *)ix; /* the lock is the only mutable part */
    struct scan s;
    int threads = pool ? nr_pool_threads(pool) : 1, cap, total = 0, nc, rc;
    size_t bytes = 0, off_q8, off_heaps, off_scores, off_acc, off_docs, sz;
    unsigned char *ws = NULL;
    int64_t ntasks;

    *n_hits = 0;
    if (k < 1 || k > NR_INDEX_MAX_K)
        return nr_err_set(NR_EINVAL, "index: k = %d outside 1..%d", k, NR_INDEX_MAX_K);
    if (mode != NR_INDEX_EXACT && mode != NR_INDEX_INT8)
        return nr_err_set(NR_EINVAL, "index: unknown search mode %d", mode);
    if (mode == NR_INDEX_INT8 && !(ix->flags & NR_INDEX_F_INT8))
        return nr_err_set(NR_EINVAL, "index: int8 search on an index made without int8 codes");
    if ((rc = vec_check(query, dim, ix->dim, "query")))
        return rc;
    memset(&s, 0, sizeof s);
    s.coll = -1;
    s.min_score = -INFINITY;
    if (f) {
        if (f->collection_id < -1)
            return nr_err_set(NR_EINVAL, "index: collection filter %d", (int)f->collection_id);
        if (f->n_doc_ids < 0 || f->n_doc_ids > NR_INDEX_MAX_DOC_IDS ||
            (f->n_doc_ids > 0 && !f->doc_ids))
            return nr_err_set(NR_EINVAL, "index: doc filter of %d ids", f->n_doc_ids);
        if (isnan(f->min_score))
            return nr_err_set(NR_EINVAL, "index: min_score is NaN");
        s.coll = f->collection_id;
        s.min_score = f->min_score;
    }

    pthread_rwlock_rdlock(&mix->lock);
    cap = mode == NR_INDEX_EXACT ? k : k * ix->rescore;
    /* Workspace, one allocation: qf | q8 | heaps | scores | acc | docs. */
    off_q8 = round_up64((size_t)ix->dimp * sizeof(float));
    off_heaps = off_q8 + round_up64((size_t)ix->qdimp);
    off_scores = off_heaps + round_up64((size_t)threads *
                                        ((size_t)cap * sizeof(struct cand) + sizeof(struct heap)));
    off_acc = off_scores + (size_t)threads * BLOCK_ROWS * sizeof(float);
    off_docs = off_acc + (size_t)threads * BLOCK_ROWS * sizeof(int32_t);
    sz = f && f->doc_ids ? (size_t)f->n_doc_ids * sizeof(int64_t) : 0;
    bytes = off_docs + sz;
    if (ix->count == 0) {
        rc = NR_OK;
        goto done;
    }
    ws = nr_aligned_alloc(64, bytes);
    if (!ws) {
        rc = nr_err_set(NR_ENOMEM, "index: no memory for a search workspace of %zu bytes", bytes);
        goto done;
    }
    s.ix = ix;
    s.mode = mode;
    s.qf = (const float *)ws;
    memcpy(ws, query, (size_t)ix->dim * sizeof(float));
    memset(ws + (size_t)ix->dim * sizeof(float), 0, (size_t)(ix->dimp - ix->dim) * sizeof(float));
    if (mode == NR_INDEX_INT8) {
        nr_index_quantize(query, ix->dim, ix->qdimp, (int8_t *)(ws + off_q8), &s.sq);
        s.q8 = (const int8_t *)(ws + off_q8);
    }
    s.heaps = (struct heap *)(ws + off_heaps);
    for (int w = 0; w < threads; w++) {
        s.heaps[w].e = (struct cand *)(ws + off_heaps + (size_t)threads * sizeof(struct heap)) +
                       (size_t)w * cap;
        s.heaps[w].n = 0;
        s.heaps[w].cap = cap;
    }
    s.scores = (float *)(ws + off_scores);
    s.acc = (int32_t *)(ws + off_acc);
    if (f && f->doc_ids) {
        int64_t *docs = (int64_t *)(ws + off_docs);
        memcpy(docs, f->doc_ids, sz);
        qsort(docs, (size_t)f->n_doc_ids, sizeof *docs, i64_cmp);
        s.docs = docs;
        s.ndocs = f->n_doc_ids;
    }

    ntasks = (ix->count + BLOCK_ROWS - 1) / BLOCK_ROWS;
    if (pool)
        nr_pool_run(pool, (int)ntasks, scan_task, &s);
    else
        for (int64_t t = 0; t < ntasks; t++)
            scan_task(&s, (int)t, 0);

    /* Merge: the heaps are contiguous; pack them to the front and sort. */
    {
        struct cand *all = s.heaps[0].e;
        for (int w = 0; w < threads; w++) {
            memmove(all + total, s.heaps[w].e, (size_t)s.heaps[w].n * sizeof *all);
            total += s.heaps[w].n;
        }
        qsort(all, (size_t)total, sizeof *all, cand_cmp);
        nc = total < cap ? total : cap;
        if (mode == NR_INDEX_INT8) {
            /* Re-score the best cap candidates in fp32 (the exact scan's arithmetic). */
            int kept = 0;
            for (int i = 0; i < nc; i++) {
                int64_t r;
                const struct block *b = block_of(ix, all[i].slot, &r);
                float sc;
                ix->kern->dot_f32(s.qf, b->f32 + r * ix->dimp, 0, ix->dimp, 1, &sc);
                if (sc < s.min_score)
                    continue;
                all[kept] = all[i];
                all[kept++].score = sc;
            }
            nc = kept;
            qsort(all, (size_t)nc, sizeof *all, cand_cmp);
        }
        if (nc > k)
            nc = k;
        for (int i = 0; i < nc; i++) {
            int64_t r;
            const struct block *b = block_of(ix, all[i].slot, &r);
            hits[i].chunk_id = all[i].chunk;
            hits[i].doc_id = b->doc[r];
            hits[i].score = all[i].score;
        }
        *n_hits = nc;
    }
    rc = NR_OK;
done:
    pthread_rwlock_unlock(&mix->lock);
    nr_free(ws);
    return rc;
}
