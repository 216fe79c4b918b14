/*
 * Tests of nr_index: every SIMD kernel against the scalar reference, search
 * against brute force in double precision, int8 recall on clustered data
 * built around real MiniLM embeddings, add/replace/remove against a model of
 * the expected contents, filters, limits, allocation failures, thread counts.
 */
#include "nr_index.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_test.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x1234567887654321ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double urand(void) /* (0, 1) */
{
    return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static double grand(void)
{
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

static void normalize(float *v, int dim)
{
    double ss = 0.0;
    for (int t = 0; t < dim; t++)
        ss += (double)v[t] * v[t];
    ss = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (int t = 0; t < dim; t++)
        v[t] = (float)(v[t] * ss);
}

static void rand_unit(float *v, int dim)
{
    for (int t = 0; t < dim; t++)
        v[t] = (float)grand();
    normalize(v, dim);
}

static double dot_d(const float *a, const float *b, int dim)
{
    double s = 0.0;
    for (int t = 0; t < dim; t++)
        s += (double)a[t] * b[t];
    return s;
}

/* Up to max rows of the real embeddings in tests/fixtures/embed_ref.json. */
static int load_real(float *out, int max, int dim)
{
    json_error_t err;
    json_t *root = json_load_file(nr_test_src_path("tests/fixtures/embed_ref.json"), 0, &err);
    json_t *vecs = root ? json_object_get(root, "vectors") : NULL;
    int n = 0;
    for (size_t i = 0; vecs && i < json_array_size(vecs) && n < max; i++) {
        json_t *v = json_array_get(vecs, i);
        if (json_array_size(v) != (size_t)dim)
            continue;
        for (int t = 0; t < dim; t++)
            out[(size_t)n * dim + t] = (float)json_number_value(json_array_get(v, (size_t)t));
        n++;
    }
    json_decref(root);
    return n;
}

/* A row of the expected contents. */
struct ent {
    int64_t chunk, doc;
    int32_t coll;
    int live;
    float *v;
};

struct bf {
    double score;
    int64_t chunk, doc;
};

static int bf_cmp(const void *pa, const void *pb)
{
    const struct bf *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->chunk < b->chunk ? -1 : a->chunk > b->chunk;
}

static int in_list(const int64_t *ids, int n, int64_t x)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == x)
            return 1;
    return 0;
}

/* Brute-force top k in double over the live entries passing f. Returns hits. */
static int brute(const struct ent *e, int n, const float *q, int dim, int k,
                 const struct nr_index_filter *f, struct bf *out, struct bf *tmp)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        double s;
        if (!e[i].live)
            continue;
        if (f && f->collection_id >= 0 && e[i].coll != f->collection_id)
            continue;
        if (f && f->doc_ids && !in_list(f->doc_ids, f->n_doc_ids, e[i].doc))
            continue;
        s = dot_d(q, e[i].v, dim);
        if (f && s < f->min_score)
            continue;
        tmp[m].score = s;
        tmp[m].chunk = e[i].chunk;
        tmp[m].doc = e[i].doc;
        m++;
    }
    qsort(tmp, (size_t)m, sizeof *tmp, bf_cmp);
    if (m > k)
        m = k;
    memcpy(out, tmp, (size_t)m * sizeof *out);
    return m;
}

/*
 * The index's hits equal brute force: same count, each score within 1e-5 of
 * the double score of the same rank, and the same id wherever the rank's
 * score is more than 1e-5 away from its neighbours' (ties within rounding may
 * come in either order). Returns the number of mismatches.
 */
static int same_as_brute(const struct nr_index_hit *h, int nh, const struct bf *b, int nb)
{
    int bad = 0;
    if (nh != nb) {
        nr_test_fail(__FILE__, __LINE__, "hits %d != brute force %d", nh, nb);
        return 1;
    }
    for (int i = 0; i < nh; i++) {
        int sep = (i == 0 || b[i - 1].score - b[i].score > 1e-5) &&
                  (i + 1 >= nb || b[i].score - b[i + 1].score > 1e-5);
        if (fabs(h[i].score - b[i].score) > 1e-5 || (sep && h[i].chunk_id != b[i].chunk) ||
            (sep && h[i].doc_id != b[i].doc)) {
            if (!bad)
                nr_test_fail(__FILE__, __LINE__, "rank %d: %lld (%.7f) vs brute %lld (%.7f)", i,
                             (long long)h[i].chunk_id, h[i].score, (long long)b[i].chunk,
                             b[i].score);
            bad++;
        }
    }
    return bad;
}

/* Field by field: the struct has padding that memcmp would compare. */
static int hits_equal(const struct nr_index_hit *a, const struct nr_index_hit *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i].chunk_id != b[i].chunk_id || a[i].doc_id != b[i].doc_id ||
            memcmp(&a[i].score, &b[i].score, sizeof a[i].score))
            return 0;
    return 1;
}

static const char *const variant_names[] = {"scalar", "avx2", "avx512", "neon"};

/* ------------------------------------------------------------ kernels */

static void test_kernels(void)
{
    const struct nr_index_kern *ref = nr_index_kern_by_name("scalar");
    char tested[64] = "";
    static const int dims[] = {16, 48, 64, 128, 384, 400, 1024};
    static const int ns[] = {1, 3, 4, 5, 9, 33};

    NR_CHECK(ref != NULL);
    for (size_t vi = 0; vi < sizeof variant_names / sizeof variant_names[0]; vi++) {
        const struct nr_index_kern *kn = nr_index_kern_by_name(variant_names[vi]);
        if (!kn)
            continue;
        snprintf(tested + strlen(tested), sizeof tested - strlen(tested), "%s%s",
                 tested[0] ? " " : "", kn->name);
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                int dimp = dims[di], n = ns[ni], dq = (dimp + 63) & ~63;
                size_t stride = (size_t)dimp + 16, qstride = (size_t)dq + 64;
                float *q = nr_aligned_alloc(64, (size_t)dimp * 4);
                float *rows = nr_aligned_alloc(64, stride * (size_t)n * 4);
                int8_t *q8 = nr_aligned_alloc(64, (size_t)dq);
                int8_t *c8 = nr_aligned_alloc(64, qstride * (size_t)n);
                int32_t *cs = nr_malloc((size_t)n * 4), *o1 = nr_malloc((size_t)n * 4),
                        *o2 = nr_malloc((size_t)n * 4);
                float *f1 = nr_malloc((size_t)n * 4), *f2 = nr_malloc((size_t)n * 4);
                int extreme = (int)(ni % 2); /* all +-127: the worst case for overflow */
                for (int t = 0; t < dimp; t++)
                    q[t] = (float)grand();
                for (size_t t = 0; t < stride * (size_t)n; t++)
                    rows[t] = (float)grand();
                for (int t = 0; t < dq; t++)
                    q8[t] =
                        (int8_t)(extreme ? ((rnd() & 1) ? 127 : -127) : (int)(rnd() % 255) - 127);
                for (int i = 0; i < n; i++) {
                    cs[i] = 0;
                    for (int t = 0; t < dq; t++) {
                        int8_t c = (int8_t)(extreme ? q8[t] : (int)(rnd() % 255) - 127);
                        c8[(size_t)i * qstride + (size_t)t] = c;
                        cs[i] += c;
                    }
                }
                ref->dot_f32(q, rows, stride, dimp, n, f1);
                kn->dot_f32(q, rows, stride, dimp, n, f2);
                ref->dot_i8(q8, c8, cs, qstride, dq, n, o1);
                kn->dot_i8(q8, c8, cs, qstride, dq, n, o2);
                for (int i = 0; i < n; i++) {
                    double mag = 0.0;
                    for (int t = 0; t < dimp; t++)
                        mag += fabs((double)q[t] * rows[(size_t)i * stride + (size_t)t]);
                    /* fp32: |simd - scalar| <= 1e-5 * sum |q_t r_t| (order of summation only) */
                    NR_CHECK_MSG(fabs((double)f1[i] - f2[i]) <= 1e-5 * mag,
                                 "%s dot_f32 dim %d n %d row %d: %.9g vs %.9g", kn->name, dimp, n,
                                 i, f2[i], f1[i]);
                    /* int8: exact */
                    NR_CHECK_MSG(o1[i] == o2[i], "%s dot_i8 dim %d n %d row %d: %d vs %d", kn->name,
                                 dq, n, i, (int)o2[i], (int)o1[i]);
                }
                if (extreme) /* all products +-127*127 with the same sign pattern: the max */
                    NR_CHECK_INT(o1[0], 127 * 127 * dq);
                nr_free(q), nr_free(rows), nr_free(q8), nr_free(c8), nr_free(cs), nr_free(o1);
                nr_free(o2), nr_free(f1), nr_free(f2);
            }
        }
    }
    printf("variants tested: %s\n", tested);
}

static void test_quantize(void)
{
    float v[70], s;
    int8_t q[128];
    int32_t sum, ref = 0;
    for (int t = 0; t < 70; t++)
        v[t] = (float)grand();
    v[5] = -4.0f; /* the max magnitude: must become -127 exactly */
    sum = nr_index_quantize(v, 70, 128, q, &s);
    NR_CHECK_NEAR(s, 4.0 / 127.0, 1e-9);
    NR_CHECK_INT(q[5], -127);
    for (int t = 0; t < 70; t++) {
        NR_CHECK(q[t] >= -127 && q[t] <= 127);
        NR_CHECK(fabs(q[t] * (double)s - v[t]) <= 0.5 * s + 1e-7);
        ref += q[t];
    }
    for (int t = 70; t < 128; t++)
        NR_CHECK_INT(q[t], 0);
    NR_CHECK_INT(sum, ref);
    /* zero vector: zero codes, zero scale */
    memset(v, 0, sizeof v);
    NR_CHECK_INT(nr_index_quantize(v, 70, 128, q, &s), 0);
    NR_CHECK(s == 0.0f);
    /* subnormal maximum: codes still in range, no inf/NaN */
    v[3] = 1e-40f;
    nr_index_quantize(v, 70, 128, q, &s);
    NR_CHECK_INT(q[3], 127);
}

/* ------------------------------------------------------------ search */

/* n random unit vectors (ids chunk = 1000 + i, doc = i / 3, coll = i % 4). */
static struct ent *make_ents(int n, int dim, float **store)
{
    struct ent *e = calloc((size_t)n, sizeof *e);
    *store = malloc((size_t)n * (size_t)dim * sizeof(float));
    for (int i = 0; i < n; i++) {
        e[i].v = *store + (size_t)i * dim;
        rand_unit(e[i].v, dim);
        e[i].chunk = 1000 + i;
        e[i].doc = i / 3;
        e[i].coll = i % 4;
        e[i].live = 1;
    }
    return e;
}

static void check_against_brute(struct nr_index *ix, const struct ent *e, int n, int dim, int k,
                                int mode, const struct nr_index_filter *f, int nq)
{
    struct nr_index_hit *h = malloc(sizeof *h * (size_t)k);
    struct bf *b = malloc(sizeof *b * (size_t)k), *tmp = malloc(sizeof *tmp * (size_t)n);
    float *q = malloc(sizeof *q * (size_t)dim);
    for (int i = 0; i < nq; i++) {
        int nh = -1, nb;
        rand_unit(q, dim);
        NR_CHECK_INT(nr_index_search(ix, NULL, q, dim, k, mode, f, h, &nh), NR_OK);
        nb = brute(e, n, q, dim, k, f, b, tmp);
        same_as_brute(h, nh, b, nb);
    }
    free(h), free(b), free(tmp), free(q);
}

static void test_exact_vs_brute(void)
{
    static const int dims[] = {384, 37, 1, 130};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di], n = dim == 1 ? 50 : 2500;
        float *store;
        struct ent *e = make_ents(n, dim, &store);
        struct nr_index *ix;
        NR_CHECK_INT(nr_index_new(dim, NR_INDEX_F_INT8, &ix), NR_OK);
        for (int i = 0; i < n; i++)
            NR_CHECK_INT(nr_index_add(ix, e[i].chunk, e[i].doc, e[i].coll, e[i].v, dim), NR_OK);
        NR_CHECK_INT(nr_index_count(ix), n);
        for (size_t vi = 0; vi < sizeof variant_names / sizeof variant_names[0]; vi++) {
            const struct nr_index_kern *kn = nr_index_kern_by_name(variant_names[vi]);
            if (!kn)
                continue;
            nr_index_set_kern(ix, kn);
            check_against_brute(ix, e, n, dim, 10, NR_INDEX_EXACT, NULL, 10);
            check_against_brute(ix, e, n, dim, 1, NR_INDEX_EXACT, NULL, 5);
            check_against_brute(ix, e, n, dim, 100, NR_INDEX_EXACT, NULL, 3);
            /* with R large enough to cover every row, int8 mode is exact too */
            if (n <= 50 * NR_INDEX_MAX_RESCORE) {
                NR_CHECK_INT(nr_index_set_rescore(ix, NR_INDEX_MAX_RESCORE), NR_OK);
                check_against_brute(ix, e, n, dim, 50, NR_INDEX_INT8, NULL, 3);
                NR_CHECK_INT(nr_index_set_rescore(ix, NR_INDEX_DEFAULT_RESCORE), NR_OK);
            }
        }
        nr_index_free(ix);
        free(e), free(store);
    }
}

/*
 * Clustered data like real chunk embeddings: centers are the real MiniLM
 * vectors of the fixture (and random mixtures of them), rows are a center
 * plus noise (cosine to the center 0.6-0.9), queries likewise. Recall@10 of
 * the int8 path against the exact path on 20k rows.
 */
static void make_clustered(float *rows, int n, const float *centers, int nc, int dim, float *tmp)
{
    for (int i = 0; i < n; i++) {
        const float *c = centers + (size_t)(rnd() % (uint64_t)nc) * dim;
        double noise = 0.5 + 0.6 * urand(); /* noise norm relative to the unit center */
        rand_unit(tmp, dim);
        for (int t = 0; t < dim; t++)
            rows[(size_t)i * dim + t] = (float)(c[t] + noise * tmp[t]);
        normalize(rows + (size_t)i * dim, dim);
    }
}

static void test_int8_recall(void)
{
    enum { DIM = 384, N = 20000, NQ = 200, K = 10, NC = 400 };
    float *real = malloc(sizeof(float) * 200 * DIM), *centers = malloc(sizeof(float) * NC * DIM);
    float *rows = malloc(sizeof(float) * (size_t)N * DIM), *qs = malloc(sizeof(float) * NQ * DIM);
    float tmp[DIM];
    int nreal = load_real(real, 200, DIM);
    struct nr_index *ix;
    struct nr_index_hit ex[K], ap[K];
    static const int rs[] = {1, 2, 4, 8, 16};
    double recall_default = 0.0;

    if (nreal < 10) {
        NR_SKIP("tests/fixtures/embed_ref.json has no %d-dim vectors", DIM);
        goto out;
    }
    /* the real vectors, then mixtures of two real vectors */
    for (int c = 0; c < NC; c++) {
        const float *a = real + (size_t)(c % nreal) * DIM;
        const float *b = real + (size_t)(rnd() % (uint64_t)nreal) * DIM;
        double w = c < nreal ? 0.0 : urand();
        for (int t = 0; t < DIM; t++)
            centers[(size_t)c * DIM + t] = (float)((1 - w) * a[t] + w * b[t]);
        normalize(centers + (size_t)c * DIM, DIM);
    }
    make_clustered(rows, N, centers, NC, DIM, tmp);
    make_clustered(qs, NQ, centers, NC, DIM, tmp);
    NR_CHECK_INT(nr_index_new(DIM, NR_INDEX_F_INT8, &ix), NR_OK);
    for (int i = 0; i < N; i++)
        NR_CHECK_INT(nr_index_add(ix, i, i / 8, 0, rows + (size_t)i * DIM, DIM), NR_OK);
    for (size_t ri = 0; ri < sizeof rs / sizeof rs[0]; ri++) {
        long found = 0;
        NR_CHECK_INT(nr_index_set_rescore(ix, rs[ri]), NR_OK);
        for (int qi = 0; qi < NQ; qi++) {
            int ne, na;
            const float *q = qs + (size_t)qi * DIM;
            NR_CHECK_INT(nr_index_search(ix, NULL, q, DIM, K, NR_INDEX_EXACT, NULL, ex, &ne), 0);
            NR_CHECK_INT(nr_index_search(ix, NULL, q, DIM, K, NR_INDEX_INT8, NULL, ap, &na), 0);
            NR_CHECK_INT(na, K);
            for (int i = 0; i < na; i++)
                for (int j = 0; j < ne; j++)
                    if (ap[i].chunk_id == ex[j].chunk_id) {
                        /* re-scored: the very same fp32 score as the exact path */
                        NR_CHECK(ap[i].score == ex[j].score);
                        found++;
                        break;
                    }
        }
        printf("  int8 recall@10 (20k clustered rows, R = %d): %.4f\n", rs[ri],
               (double)found / (NQ * K));
        if (rs[ri] == NR_INDEX_DEFAULT_RESCORE)
            recall_default = (double)found / (NQ * K);
    }
    NR_CHECK_MSG(recall_default >= 0.99, "int8 recall@10 %.4f < 0.99 at the default R = %d",
                 recall_default, NR_INDEX_DEFAULT_RESCORE);
    nr_index_free(ix);
out:
    free(real), free(centers), free(rows), free(qs);
}

/* Random adds, replacements and removals, checked against a model after each round. */
/* nr_index_foreach_rows: every live row once, with its ids and vector bit for bit. */
struct walk {
    struct ent *e;
    int n, dim, rows, calls, bad;
    char *seen;
};

static int walk_rows(void *ctx, const int64_t *chunk, const int64_t *doc, const int32_t *coll,
                     const float *rows, size_t stride, int n)
{
    struct walk *w = ctx;
    w->calls++;
    w->bad += n < 1 || n > 1024 || stride < (size_t)w->dim;
    for (int i = 0; i < n; i++) {
        int64_t idx = chunk[i] - 1000;
        if (idx < 0 || idx >= w->n || !w->e[idx].live || w->seen[idx] || w->e[idx].doc != doc[i] ||
            w->e[idx].coll != coll[i] ||
            memcmp(w->e[idx].v, rows + (size_t)i * stride, (size_t)w->dim * sizeof(float))) {
            w->bad++;
            continue;
        }
        w->seen[idx] = 1;
        w->rows++;
    }
    return 0;
}

static int stop_walk(void *ctx, const int64_t *chunk, const int64_t *doc, const int32_t *coll,
                     const float *rows, size_t stride, int n)
{
    (void)chunk, (void)doc, (void)coll, (void)rows, (void)stride, (void)n;
    return ++*(int *)ctx == 2 ? 77 : 0;
}

static void check_walk(struct nr_index *ix, struct ent *e, int n, int dim, int live)
{
    struct walk w = {e, n, dim, 0, 0, 0, calloc((size_t)n, 1)};
    int stops = 0;
    if (!w.seen)
        return;
    NR_CHECK_INT(nr_index_foreach_rows(ix, walk_rows, &w), NR_OK);
    NR_CHECK_INT(w.bad, 0);
    NR_CHECK_INT(w.rows, live);
    NR_CHECK_INT(w.calls, (live + 1023) / 1024);
    if (live > 1024)
        NR_CHECK_INT(nr_index_foreach_rows(ix, stop_walk, &stops), 77);
    NR_CHECK_INT(nr_index_foreach_rows(ix, NULL, NULL), NR_EINVAL);
    free(w.seen);
}

static void test_add_replace_remove(void)
{
    enum { DIM = 40, N = 3000 };
    float *store;
    struct ent *e = make_ents(N, DIM, &store);
    struct nr_index *ix;
    struct nr_index_hit h[N];
    int live = 0, nh;

    for (int i = 0; i < N; i++)
        e[i].live = 0;
    NR_CHECK_INT(nr_index_new(DIM, NR_INDEX_F_INT8, &ix), NR_OK);
    for (int round = 0; round < 8; round++) {
        for (int op = 0; op < 1500; op++) {
            int i = (int)(rnd() % N), what = (int)(rnd() % 10);
            if (what < 6) { /* add or replace (new vector, maybe new doc/collection) */
                if (e[i].live)
                    rand_unit(e[i].v, DIM), e[i].coll = (int32_t)(rnd() % 4);
                NR_CHECK_INT(nr_index_add(ix, e[i].chunk, e[i].doc, e[i].coll, e[i].v, DIM), 0);
                live += !e[i].live;
                e[i].live = 1;
            } else if (what < 9) {
                NR_CHECK_INT(nr_index_remove_chunk(ix, e[i].chunk), e[i].live);
                live -= e[i].live;
                e[i].live = 0;
            } else {
                int expect = 0;
                for (int j = 0; j < N; j++)
                    if (e[j].live && e[j].doc == e[i].doc)
                        expect++, e[j].live = 0;
                NR_CHECK_INT(nr_index_remove_doc(ix, e[i].doc), expect);
                live -= expect;
            }
        }
        NR_CHECK_INT(nr_index_count(ix), live);
        check_against_brute(ix, e, N, DIM, 20, NR_INDEX_EXACT, NULL, 5);
        check_walk(ix, e, N, DIM, live);
        /* every live row exactly once, no removed row ever */
        {
            float q[DIM];
            int k = live < NR_INDEX_MAX_K ? live : NR_INDEX_MAX_K, ok = 1;
            rand_unit(q, DIM);
            if (k == 0)
                continue;
            NR_CHECK_INT(nr_index_search(ix, NULL, q, DIM, k, NR_INDEX_EXACT, NULL, h, &nh), 0);
            NR_CHECK_INT(nh, k);
            for (int i = 0; i < nh; i++) {
                int64_t idx = h[i].chunk_id - 1000;
                ok &= idx >= 0 && idx < N && e[idx].live && e[idx].doc == h[i].doc_id;
                ok &= i == 0 || h[i].chunk_id != h[i - 1].chunk_id;
            }
            NR_CHECK(ok);
        }
        /* a live vector finds itself first; a removed one is not returned */
        for (int i = 0; i < N; i += 97) {
            NR_CHECK_INT(nr_index_search(ix, NULL, e[i].v, DIM, 3, NR_INDEX_INT8, NULL, h, &nh), 0);
            if (e[i].live)
                NR_CHECK(nh >= 1 && h[0].chunk_id == e[i].chunk && fabsf(h[0].score - 1) < 1e-5f);
            for (int j = 0; j < nh; j++)
                NR_CHECK(h[j].chunk_id != e[i].chunk || e[i].live);
        }
    }
    /* remove everything: empty again, blocks freed down to the spare */
    for (int i = 0; i < N; i++)
        nr_index_remove_chunk(ix, e[i].chunk);
    NR_CHECK_INT(nr_index_count(ix), 0);
    NR_CHECK(nr_index_bytes(ix) < (size_t)3 * 1024 * (DIM * 5 + 64));
    nr_index_free(ix);
    free(e), free(store);
}

static void test_filters(void)
{
    enum { DIM = 64, N = 3000 };
    float *store;
    struct ent *e = make_ents(N, DIM, &store);
    struct nr_index *ix;
    int64_t docs[] = {5, 17, 400, 999, 3, 123456 /* absent */};
    struct nr_index_filter f;

    NR_CHECK_INT(nr_index_new(DIM, NR_INDEX_F_INT8, &ix), NR_OK);
    for (int i = 0; i < N; i++)
        NR_CHECK_INT(nr_index_add(ix, e[i].chunk, e[i].doc, e[i].coll, e[i].v, DIM), NR_OK);
    NR_CHECK_INT(nr_index_set_rescore(ix, NR_INDEX_MAX_RESCORE), NR_OK);
    for (int mode = 0; mode < 2; mode++) {
        memset(&f, 0, sizeof f);
        f.collection_id = 2, f.min_score = -INFINITY;
        check_against_brute(ix, e, N, DIM, 10, mode, &f, 5);
        f.doc_ids = docs, f.n_doc_ids = 6;
        check_against_brute(ix, e, N, DIM, 10, mode, &f, 5); /* docs x collection */
        f.collection_id = -1;
        check_against_brute(ix, e, N, DIM, 30, mode, &f, 5); /* 15 rows: k > matches */
        f.doc_ids = NULL, f.n_doc_ids = 0, f.min_score = 0.2f;
        check_against_brute(ix, e, N, DIM, 40, mode, &f, 5);
        f.min_score = 2.0f; /* nothing reaches it */
        check_against_brute(ix, e, N, DIM, 5, mode, &f, 2);
        f.min_score = -INFINITY, f.collection_id = 77; /* no such collection */
        check_against_brute(ix, e, N, DIM, 5, mode, &f, 2);
    }
    /* bad filters */
    {
        struct nr_index_hit h[4];
        int nh;
        memset(&f, 0, sizeof f);
        f.collection_id = -2;
        NR_CHECK_INT(nr_index_search(ix, NULL, e[0].v, DIM, 4, 0, &f, h, &nh), NR_EINVAL);
        f.collection_id = -1, f.n_doc_ids = 3; /* no list */
        NR_CHECK_INT(nr_index_search(ix, NULL, e[0].v, DIM, 4, 0, &f, h, &nh), NR_EINVAL);
        f.n_doc_ids = 0, f.min_score = NAN;
        NR_CHECK_INT(nr_index_search(ix, NULL, e[0].v, DIM, 4, 0, &f, h, &nh), NR_EINVAL);
    }
    nr_index_free(ix);
    free(e), free(store);
}

static void test_edges(void)
{
    struct nr_index *ix, *plain;
    struct nr_index_hit h[8];
    float v[8] = {1, 0, 0, 0, 0, 0, 0, 0}, w[8] = {0.6f, 0.8f, 0, 0, 0, 0, 0, 0};
    int nh = -1;

    NR_CHECK_INT(nr_index_new(0, 0, &ix), NR_EINVAL);
    NR_CHECK_INT(nr_index_new(NR_INDEX_MAX_DIM + 1, 0, &ix), NR_EINVAL);
    NR_CHECK_INT(nr_index_new(8, 0x10, &ix), NR_EINVAL);
    NR_CHECK_INT(nr_index_new(8, NR_INDEX_F_INT8, &ix), NR_OK);
    /* empty index: no hits, not an error */
    NR_CHECK_INT(nr_index_search(ix, NULL, v, 8, 5, NR_INDEX_EXACT, NULL, h, &nh), NR_OK);
    NR_CHECK_INT(nh, 0);
    NR_CHECK_INT(nr_index_search(ix, NULL, v, 8, 5, NR_INDEX_INT8, NULL, h, &nh), NR_OK);
    NR_CHECK_INT(nh, 0);
    NR_CHECK_INT(nr_index_remove_chunk(ix, 1), 0);
    NR_CHECK_INT(nr_index_remove_doc(ix, 1), 0);
    /* bad vectors */
    NR_CHECK_INT(nr_index_add(ix, 1, 1, 0, v, 7), NR_EINVAL); /* dim mismatch */
    NR_CHECK_INT(nr_index_add(ix, 1, 1, 0, NULL, 8), NR_EINVAL);
    NR_CHECK_INT(nr_index_add(ix, 1, 1, -1, v, 8), NR_EINVAL);
    v[3] = NAN;
    NR_CHECK_INT(nr_index_add(ix, 1, 1, 0, v, 8), NR_EINVAL);
    v[3] = INFINITY;
    NR_CHECK_INT(nr_index_add(ix, 1, 1, 0, v, 8), NR_EINVAL);
    v[3] = 1e20f; /* finite but the norm could overflow a dot product */
    NR_CHECK_INT(nr_index_add(ix, 1, 1, 0, v, 8), NR_EINVAL);
    v[3] = 0;
    NR_CHECK_INT(nr_index_count(ix), 0);
    /* k > count; ties broken by chunk id */
    NR_CHECK_INT(nr_index_add(ix, 7, 1, 0, v, 8), NR_OK);
    NR_CHECK_INT(nr_index_add(ix, 3, 1, 0, v, 8), NR_OK);
    NR_CHECK_INT(nr_index_add(ix, 5, 2, 0, w, 8), NR_OK);
    for (int mode = 0; mode < 2; mode++) {
        NR_CHECK_INT(nr_index_search(ix, NULL, v, 8, 8, mode, NULL, h, &nh), NR_OK);
        NR_CHECK_INT(nh, 3);
        NR_CHECK_INT(h[0].chunk_id, 3);
        NR_CHECK_INT(h[1].chunk_id, 7);
        NR_CHECK_INT(h[2].chunk_id, 5);
        NR_CHECK(h[0].score == 1.0f && h[1].score == 1.0f);
        NR_CHECK_NEAR(h[2].score, 0.6, 1e-6);
        NR_CHECK_INT(h[2].doc_id, 2);
    }
    /* bad queries and arguments */
    NR_CHECK_INT(nr_index_search(ix, NULL, v, 9, 3, 0, NULL, h, &nh), NR_EINVAL);
    NR_CHECK_INT(nr_index_search(ix, NULL, v, 8, 0, 0, NULL, h, &nh), NR_EINVAL);
    NR_CHECK_INT(nr_index_search(ix, NULL, v, 8, NR_INDEX_MAX_K + 1, 0, NULL, h, &nh), NR_EINVAL);
    NR_CHECK_INT(nr_index_search(ix, NULL, v, 8, 3, 2, NULL, h, &nh), NR_EINVAL);
    w[2] = NAN;
    NR_CHECK_INT(nr_index_search(ix, NULL, w, 8, 3, 0, NULL, h, &nh), NR_EINVAL);
    w[2] = 0;
    NR_CHECK_INT(nr_index_set_rescore(ix, 0), NR_EINVAL);
    NR_CHECK_INT(nr_index_set_rescore(ix, NR_INDEX_MAX_RESCORE + 1), NR_EINVAL);
    /* a zero vector is allowed (scale 0) and scores 0 */
    {
        float z[8] = {0};
        NR_CHECK_INT(nr_index_add(ix, 9, 3, 0, z, 8), NR_OK);
        NR_CHECK_INT(nr_index_search(ix, NULL, z, 8, 4, NR_INDEX_INT8, NULL, h, &nh), NR_OK);
        NR_CHECK_INT(nh, 4);
        NR_CHECK(h[0].score == 0.0f && h[3].score == 0.0f);
    }
    /* the row limit */
    NR_CHECK_INT(nr_index_set_limit(ix, 0), NR_EINVAL);
    NR_CHECK_INT(nr_index_set_limit(ix, 4), NR_OK);
    NR_CHECK_INT(nr_index_add(ix, 10, 3, 0, w, 8), NR_ELIMIT);
    NR_CHECK_INT(nr_index_add(ix, 9, 3, 1, w, 8), NR_OK); /* replacing is still fine */
    NR_CHECK_INT(nr_index_count(ix), 4);
    nr_index_free(ix);
    /* int8 search needs int8 codes */
    NR_CHECK_INT(nr_index_new(8, 0, &plain), NR_OK);
    NR_CHECK_INT(nr_index_add(plain, 1, 1, 0, v, 8), NR_OK);
    NR_CHECK_INT(nr_index_search(plain, NULL, v, 8, 1, NR_INDEX_INT8, NULL, h, &nh), NR_EINVAL);
    NR_CHECK_INT(nr_index_search(plain, NULL, v, 8, 1, NR_INDEX_EXACT, NULL, h, &nh), NR_OK);
    NR_CHECK_INT(nh, 1);
    nr_index_free(plain);
    nr_index_free(NULL);
}

/* The first, second, ... allocation of an add (new block, block table, id map) and of a
 * search fails: a clean NR_ENOMEM, the index as it was, nothing leaked. */
static void test_alloc_failure(void)
{
    enum { DIM = 24, N = 1024 * 2 + 5 };
    float *store;
    struct ent *e = make_ents(N + 1, DIM, &store);
    struct nr_index *ix;
    struct nr_index_hit before[5], after[5];
    int nb, na, failures = 0;
    size_t held0 = nr_mem_held();

    for (int i = 0; i <= N; i++)
        e[i].live = 0;
    NR_CHECK_INT(nr_index_new(DIM, NR_INDEX_F_INT8, &ix), NR_OK);
    /* every add of a filling index, with failures injected at its 1st, 2nd ... allocation */
    for (int i = 0; i < N; i++) {
        for (long fail = 1;; fail++) {
            int rc;
            nr_mem_fail_after(fail);
            rc = nr_index_add(ix, e[i].chunk, e[i].doc, e[i].coll, e[i].v, DIM);
            nr_mem_fail_after(0);
            if (rc == NR_OK)
                break;
            failures++;
            NR_CHECK_INT(rc, NR_ENOMEM);
            NR_CHECK_INT(nr_index_count(ix), i);
            if (i > 0 && (i & (i - 1)) == 0) { /* now and then: contents unchanged */
                NR_CHECK_INT(nr_index_search(ix, NULL, e[0].v, DIM, 5, 0, NULL, after, &na), 0);
                NR_CHECK(na >= 1 && after[0].chunk_id == e[0].chunk);
            }
        }
        e[i].live = 1;
    }
    NR_CHECK(failures > 3); /* blocks, block table and map growth were all hit */
    NR_CHECK_INT(nr_index_search(ix, NULL, e[1].v, DIM, 5, 1, NULL, before, &nb), 0);
    nr_mem_fail_after(1);
    NR_CHECK_INT(nr_index_search(ix, NULL, e[1].v, DIM, 5, 1, NULL, after, &na), NR_ENOMEM);
    nr_mem_fail_after(0);
    NR_CHECK_INT(nr_index_search(ix, NULL, e[1].v, DIM, 5, 1, NULL, after, &na), 0);
    NR_CHECK(na == nb && hits_equal(before, after, na));
    check_against_brute(ix, e, N, DIM, 10, NR_INDEX_EXACT, NULL, 3);
    nr_index_free(ix);
    NR_CHECK_INT(nr_mem_held(), held0);
    free(e), free(store);
}

/* 1, 2 and 3 threads: bitwise identical hits, both modes, with and without filters. */
static void test_threads(void)
{
    enum { DIM = 384, N = 9 * 1024 + 77, K = 50 };
    float *store;
    struct ent *e = make_ents(N, DIM, &store);
    struct nr_index *ix;
    struct nr_pool *pools[3];
    struct nr_index_hit ref[K], h[K];
    struct nr_index_filter f = {1, NULL, 0, 0.05f};

    NR_CHECK_INT(nr_index_new(DIM, NR_INDEX_F_INT8, &ix), NR_OK);
    for (int i = 0; i < N; i++)
        NR_CHECK_INT(nr_index_add(ix, e[i].chunk, e[i].doc, e[i].coll, e[i].v, DIM), NR_OK);
    for (int t = 0; t < 3; t++)
        NR_CHECK((pools[t] = nr_pool_new(t + 1)) != NULL);
    for (int qi = 0; qi < 6; qi++) {
        int mode = qi % 2, nref, nh;
        const struct nr_index_filter *fp = qi >= 4 ? &f : NULL;
        NR_CHECK_INT(nr_index_search(ix, NULL, e[qi * 7].v, DIM, K, mode, fp, ref, &nref), 0);
        for (int t = 0; t < 3; t++) {
            NR_CHECK_INT(nr_index_search(ix, pools[t], e[qi * 7].v, DIM, K, mode, fp, h, &nh), 0);
            NR_CHECK_INT(nh, nref);
            NR_CHECK_MSG(hits_equal(h, ref, nh), "%d threads, mode %d: hits differ", t + 1, mode);
        }
    }
    for (int t = 0; t < 3; t++)
        nr_pool_free(pools[t]);
    nr_index_free(ix);
    free(e), free(store);
}

/* Searches on two threads while the main thread adds and removes: the lock
 * keeps every search consistent (run it under -DNR_SANITIZE=ON or TSan). */
struct conc {
    struct nr_index *ix;
    const float *q;
    int bad, done;
};

static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    struct nr_index_hit h[20];
    int nh;
    for (int i = 0; i < 200; i++) {
        if (nr_index_search(c->ix, NULL, c->q, 32, 20, i % 2, NULL, h, &nh))
            c->bad++;
        for (int j = 0; j < nh; j++) /* chunks are added with doc = chunk / 2 */
            if (h[j].doc_id != h[j].chunk_id / 2 || (j && h[j].score > h[j - 1].score))
                c->bad++;
    }
    return NULL;
}

static void test_concurrent(void)
{
    enum { DIM = 32 };
    struct nr_index *ix;
    struct conc c[2];
    pthread_t th[2];
    float v[DIM];
    NR_CHECK_INT(nr_index_new(DIM, NR_INDEX_F_INT8, &ix), NR_OK);
    rand_unit(v, DIM);
    for (int t = 0; t < 2; t++) {
        c[t].ix = ix, c[t].q = v, c[t].bad = 0;
        NR_CHECK_INT(pthread_create(&th[t], NULL, conc_reader, &c[t]), 0);
    }
    for (int i = 0; i < 6000; i++) {
        float w[DIM];
        rand_unit(w, DIM);
        NR_CHECK_INT(nr_index_add(ix, i % 2500, (i % 2500) / 2, 0, w, DIM), NR_OK);
        if (i % 3 == 0)
            nr_index_remove_chunk(ix, (int64_t)(rnd() % 2500));
        if (i % 101 == 0)
            nr_index_remove_doc(ix, (int64_t)(rnd() % 1250));
    }
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        NR_CHECK_INT(c[t].bad, 0);
    }
    nr_index_free(ix);
}

static void test_bytes(void)
{
    struct nr_index *ix;
    float v[384];
    size_t b;
    NR_CHECK_INT(nr_index_new(384, NR_INDEX_F_INT8, &ix), NR_OK);
    for (int i = 0; i < 4096; i++) {
        rand_unit(v, 384);
        NR_CHECK_INT(nr_index_add(ix, i, i, 0, v, 384), NR_OK);
    }
    b = nr_index_bytes(ix);
    /* 1536 + 384 + 28 bytes of row data + id map (<= 32 B/row at this count) */
    NR_CHECK_MSG(b >= (size_t)4096 * 1948 && b <= (size_t)4096 * 1996 + 4096,
                 "%zu bytes for 4096 rows", b);
    printf("  memory: %.1f bytes per vector (dim 384, int8 on)\n", (double)b / 4096);
    nr_index_free(ix);
}

int main(void)
{
    NR_RUN(test_kernels);
    NR_RUN(test_quantize);
    NR_RUN(test_exact_vs_brute);
    NR_RUN(test_int8_recall);
    NR_RUN(test_add_replace_remove);
    NR_RUN(test_filters);
    NR_RUN(test_edges);
    NR_RUN(test_alloc_failure);
    NR_RUN(test_threads);
    NR_RUN(test_concurrent);
    NR_RUN(test_bytes);
    return nr_test_summary();
}
