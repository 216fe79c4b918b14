/*
 * The GPU vector index (nr_gpu_index) against the CPU index (nr_index,
 * NR_INDEX_EXACT, with no filter, a collection, a minimum score, after chunk
 * and document removals, and grown from a small first capacity in several
 * adds): same hits in the same order, scores within
 * 1e-5 (fp32 sums in another order). Ranks may differ only between hits
 * whose CPU scores are within 2e-6 of each other (a near tie that summation
 * order can flip); exact ties (identical rows) must come in chunk-id order on
 * both. Skips without a GPU.
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_gpu.h"
#include "nr_gpu_index.h"
#include "nr_index.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIM  384
#define ROWS 20000
#define NQ   64
#define K    10

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void random_unit(float *v)
{
    double ss = 0;
    for (int j = 0; j < DIM; j++) {
        /* Box-Muller: Gaussian entries, so directions are uniform */
        double u = uniform() + 1e-12, w = uniform();
        v[j] = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * w));
        ss += (double)v[j] * v[j];
    }
    for (int j = 0; j < DIM; j++)
        v[j] = (float)(v[j] / sqrt(ss));
}

/* GPU hits equal CPU hits for one query (see the header comment). */
static void same_hits(const struct nr_index_hit *c, int nc, const struct nr_index_hit *g, int ng,
                      const char *what, int qi)
{
    NR_CHECK_MSG(nc == ng, "%s query %d: %d CPU hits, %d GPU hits", what, qi, nc, ng);
    for (int j = 0; j < nc && j < ng; j++) {
        NR_CHECK_MSG(fabsf(c[j].score - g[j].score) <= 1e-5f,
                     "%s query %d rank %d: score %.8f vs %.8f", what, qi, j, c[j].score,
                     g[j].score);
        if (c[j].chunk_id != g[j].chunk_id) {
            int near = (j > 0 && fabsf(c[j].score - c[j - 1].score) <= 2e-6f) ||
                       (j + 1 < nc && fabsf(c[j].score - c[j + 1].score) <= 2e-6f);
            NR_CHECK_MSG(near, "%s query %d rank %d: chunk %lld vs %lld (not a near tie)", what, qi,
                         j, (long long)c[j].chunk_id, (long long)g[j].chunk_id);
        }
        NR_CHECK(g[j].doc_id == g[j].chunk_id / 3);
    }
}

static void test_gpu_index_equals_cpu_index(void)
{
    const char *why = NULL;
    struct nr_index *ix = NULL;
    struct nr_gpu_index *gx = NULL;
    float *rows = NULL, *q = NULL;
    int64_t *cid = NULL, *did = NULL;
    int32_t *coll = NULL;
    struct nr_index_hit *hc = NULL, *hg = NULL, one[NR_GPU_INDEX_MAX_K];
    int nc, ng[NQ], n1;
    if (nr_gpu_count(&why) < 1) {
        NR_SKIP("no CUDA device (%s)", why ? why : "unknown");
        return;
    }
    rows = malloc((size_t)ROWS * DIM * sizeof *rows);
    q = malloc((size_t)NQ * DIM * sizeof *q);
    cid = malloc(ROWS * sizeof *cid);
    did = malloc(ROWS * sizeof *did);
    coll = malloc(ROWS * sizeof *coll);
    hc = calloc(NQ * NR_GPU_INDEX_MAX_K, sizeof *hc);
    hg = calloc(NQ * NR_GPU_INDEX_MAX_K, sizeof *hg);
    if (!rows || !q || !cid || !did || !coll || !hc || !hg)
        goto out;
    for (int i = 0; i < ROWS; i++) {
        random_unit(rows + (size_t)i * DIM);
        cid[i] = 1000 + (int64_t)(i * 7919L % ROWS); /* ids not in row order */
        did[i] = cid[i] / 3;
        coll[i] = (int32_t)(did[i] % 3);
    }
    /* 8 identical rows (an exact tie for any query), ids out of order */
    for (int i = 0; i < 8; i++)
        memcpy(rows + (size_t)(100 + i * 997) * DIM, rows + (size_t)100 * DIM, DIM * sizeof(float));
    for (int i = 0; i < NQ; i++) { /* queries near rows, so top hits are close calls */
        float *v = q + (size_t)i * DIM;
        random_unit(v);
        for (int j = 0; j < DIM; j++)
            v[j] = 0.3f * v[j] + rows[(size_t)(i * 311 % ROWS) * DIM + j];
    }
    memcpy(q, rows + (size_t)100 * DIM, DIM * sizeof(float)); /* query 0 hits the tie */
    /* a first capacity of 1000 (the adds below grow it 5 times), 16 queries
     * per GEMM (the batch of 64 goes in 4 groups) */
    if (nr_index_new(DIM, 0, &ix) || nr_gpu_index_new(DIM, 1000, 16, 0, &gx)) {
        nr_test_fail(__FILE__, __LINE__, "new: %s", nr_err_msg());
        goto out;
    }
    for (int i = 0; i < ROWS; i++)
        if (nr_index_add(ix, cid[i], did[i], coll[i], rows + (size_t)i * DIM, DIM))
            break;
    for (int i = 0; i < ROWS; i += 4999) {
        int n = ROWS - i < 4999 ? ROWS - i : 4999;
        NR_CHECK_INT(nr_gpu_index_add(gx, cid + i, did + i, coll + i, rows + (size_t)i * DIM, n),
                     NR_OK);
    }
    NR_CHECK_INT(nr_gpu_index_count(gx), ROWS);
    printf("  %d rows, %.1f MiB on the GPU\n", ROWS, nr_gpu_index_bytes(gx) / 1048576.0);

    for (int round = 0; round < 2; round++) {
        /* filters: collection 1; a minimum score only near rows pass (query
         * 0: the 8-way tie); both; a collection no row has */
        struct nr_index_filter fs[4] = {{.collection_id = 1, .min_score = -INFINITY},
                                        {.collection_id = -1, .min_score = 0.5f},
                                        {.collection_id = 2, .min_score = 0.05f},
                                        {.collection_id = 7, .min_score = -INFINITY}};
        NR_CHECK_INT(nr_gpu_index_search(gx, q, NQ, K, NULL, hg, ng), NR_OK);
        for (int i = 0; i < NQ; i++) {
            NR_CHECK_INT(nr_index_search(ix, NULL, q + (size_t)i * DIM, DIM, K, NR_INDEX_EXACT,
                                         NULL, hc, &nc),
                         NR_OK);
            same_hits(hc, nc, hg + (size_t)i * K, ng[i], round ? "after removals" : "batch", i);
            /* one query at a time = the batch */
            NR_CHECK_INT(nr_gpu_index_search(gx, q + (size_t)i * DIM, 1, K, NULL, one, &n1), NR_OK);
            same_hits(hc, nc, one, n1, "single", i);
            for (int fi = 0; fi < 4; fi++) {
                NR_CHECK_INT(nr_index_search(ix, NULL, q + (size_t)i * DIM, DIM, K, NR_INDEX_EXACT,
                                             &fs[fi], hc, &nc),
                             NR_OK);
                NR_CHECK_INT(nr_gpu_index_search(gx, q + (size_t)i * DIM, 1, K, &fs[fi], one, &n1),
                             NR_OK);
                same_hits(hc, nc, one, n1, "filtered", i * 10 + fi);
                /* before the removals each query's near row passes, most rows
                 * do not (after them every third query has lost its near row) */
                if (fi == 1 && !round)
                    NR_CHECK_MSG(n1 >= 1 && n1 < K, "query %d: %d hits over 0.5", i, n1);
                if (fi == 3)
                    NR_CHECK_INT(n1, 0);
            }
        }
        /* the exact tie (8 rows, 7 after the removals) in chunk-id order */
        for (int j = 1; j < 8 - round; j++)
            NR_CHECK(hg[j].score == hg[0].score && hg[j].chunk_id > hg[j - 1].chunk_id);
        NR_CHECK(hg[8 - round].score < hg[0].score);
        NR_CHECK_MSG(nr_index_count(ix) < ROWS || !round, "removals removed nothing");
        /* remove one of the top 3 hits of every query (query 0: a tie row) */
        for (int i = 0; i < NQ && !round; i++) {
            int64_t c = hg[(size_t)i * K + (i % 3)].chunk_id;
            NR_CHECK_INT(nr_gpu_index_remove_chunk(gx, c), nr_index_remove_chunk(ix, c));
        }
        NR_CHECK_INT(nr_gpu_index_remove_chunk(gx, -5), 0);
        /* and whole documents: the second hit's document of every 4th query
         * (not query 0's: that would take more rows out of the tie) */
        for (int i = 4; i < NQ && !round; i += 4) {
            int64_t d = hg[(size_t)i * K + 1].doc_id;
            NR_CHECK_INT(nr_gpu_index_remove_doc(gx, d), nr_index_remove_doc(ix, d));
        }
        NR_CHECK_INT(nr_gpu_index_remove_doc(gx, -5), 0);
        NR_CHECK_INT(nr_gpu_index_count(gx), nr_index_count(ix));
    }
    /* the largest k, and more than the rows there are */
    NR_CHECK_INT(nr_gpu_index_search(gx, q, 1, NR_GPU_INDEX_MAX_K, NULL, hg, ng), NR_OK);
    NR_CHECK_INT(
        nr_index_search(ix, NULL, q, DIM, NR_GPU_INDEX_MAX_K, NR_INDEX_EXACT, NULL, hc, &nc),
        NR_OK);
    same_hits(hc, nc, hg, ng[0], "k=64", 0);
    NR_CHECK_INT(nr_gpu_index_search(gx, q, 1, NR_GPU_INDEX_MAX_K + 1, NULL, hg, ng), NR_EINVAL);
    NR_CHECK_INT(nr_gpu_index_search(gx, q, 1, 0, NULL, hg, ng), NR_EINVAL);
    {
        float bad[DIM];
        int64_t one_id = 5;
        int32_t neg = -1;
        struct nr_index_filter docs = {.collection_id = -1, .doc_ids = &one_id, .n_doc_ids = 1},
                               nan_min = {.collection_id = -1, .min_score = NAN};
        int64_t before = nr_gpu_index_count(gx);
        memcpy(bad, q, sizeof bad);
        bad[7] = NAN;
        NR_CHECK_INT(nr_gpu_index_search(gx, bad, 1, K, NULL, hg, ng), NR_EINVAL);
        NR_CHECK_INT(nr_gpu_index_add(gx, &one_id, &one_id, NULL, bad, 1), NR_EINVAL);
        NR_CHECK_INT(nr_gpu_index_add(gx, &one_id, &one_id, &neg, q, 1), NR_EINVAL);
        NR_CHECK_INT(nr_gpu_index_count(gx), before); /* refused adds left it unchanged */
        NR_CHECK_INT(nr_gpu_index_search(gx, q, 1, K, &docs, hg, ng), NR_EUNSUPPORTED);
        NR_CHECK_INT(nr_gpu_index_search(gx, q, 1, K, &nan_min, hg, ng), NR_EINVAL);
        nan_min.min_score = 0.0f;
        nan_min.collection_id = -2; /* nr_index refuses it too */
        NR_CHECK_INT(nr_gpu_index_search(gx, q, 1, K, &nan_min, hg, ng), NR_EINVAL);
        NR_CHECK_INT(nr_index_search(ix, NULL, q, DIM, K, NR_INDEX_EXACT, &nan_min, hc, &nc),
                     NR_EINVAL);
    }
    {
        /* a small index: k larger than its rows */
        struct nr_gpu_index *small = NULL;
        NR_CHECK_INT(nr_gpu_index_new(DIM, 4, 1, 0, &small), NR_OK);
        if (small) {
            NR_CHECK_INT(nr_gpu_index_add(small, cid, did, NULL, rows, 3), NR_OK);
            NR_CHECK_INT(nr_gpu_index_search(small, q, 1, K, NULL, hg, ng), NR_OK);
            NR_CHECK_INT(ng[0], 3);
            nr_gpu_index_free(small);
        }
    }
out:
    free(rows);
    free(q);
    free(cid);
    free(did);
    free(coll);
    free(hc);
    free(hg);
    nr_index_free(ix);
    nr_gpu_index_free(gx);
}

int main(void)
{
    NR_RUN(test_gpu_index_equals_cpu_index);
    return nr_test_summary();
}
