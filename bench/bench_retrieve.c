/*
 * bench_retrieve: one search end to end (nr_retrieve: embed the query, scan
 * the vector index, fetch the hits' chunks) with the CPU index and with the
 * GPU mirror, side by side on the same store and queries.
 *
 *   bench_retrieve --model PATH [--vectors N] [--db PATH] [--runs N] [--threads N]
 *
 * Builds the store once if it holds fewer than N vectors of the model
 * (synthetic normalized vectors, bench_store.h), then opens two retrievers
 * on it — device cpu (pool of --threads, default all) and device cuda (the
 * mirror from the first vector) — and prints, for vector and hybrid search
 * with k = 5: p50 / p99 over --runs searches (default 300) of 12 query texts,
 * the query embedding alone, each retriever's load time and memory, and how
 * many top-5 lists differ between the two (0 expected).
 */
#include "bench_store.h"
#include "bench_text.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"
#include "nr_str.h"

#include <string.h>
#include <unistd.h>

static const char *const queries[] = {"how do I reset the router",
                                      "what is a vector index",
                                      "risotto needs warm stock",
                                      "the fourth planet",
                                      "cuda graphs for small batches",
                                      "where are my documents",
                                      "memory bandwidth of the jetson",
                                      "citations in answers",
                                      "token budget per batch",
                                      "bm25 and cosine fusion",
                                      "delete a collection",
                                      "streaming answers over http"};
#define NQ ((int)(sizeof queries / sizeof queries[0]))

static int vec_count(void *ctx, int64_t c, int64_t d, int64_t k, const float *v, int dim)
{
    (void)c, (void)d, (void)k, (void)v, (void)dim;
    (*(long *)ctx)++;
    return 0;
}

/* p50 / p99 of `runs` searches in `mode`; the top-5 chunk ids of each query into top[NQ][5]. */
static int time_search(struct nr_retriever *r, int mode, int runs, double *p50, double *p99,
                       int64_t *top)
{
    double *t = malloc((size_t)runs * sizeof *t);
    struct nr_search_opts o;
    struct nr_search_hit h[5];
    int n, rc = NR_OK;
    if (!t)
        return NR_ENOMEM;
    nr_search_opts_default(&o);
    o.mode = mode;
    for (int i = -NQ; i < runs && rc == NR_OK; i++) { /* NQ warm-up runs */
        const char *q = queries[(i + NQ) % NQ];
        double t0 = now_ms();
        if ((rc = nr_retrieve(r, q, &o, h, &n)))
            break;
        if (i >= 0)
            t[i] = now_ms() - t0;
        else
            for (int j = 0; j < 5; j++)
                top[(i + NQ) * 5 + j] = j < n ? h[j].chunk_id : 0;
        nr_search_hits_free(h, n);
    }
    if (rc == NR_OK) {
        qsort(t, (size_t)runs, sizeof *t, cmp);
        *p50 = t[runs / 2];
        *p99 = t[runs * 99 / 100];
    }
    free(t);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *db = "/var/tmp/nanorag-bench-retrieve.db";
    long n = 100000, have = 0;
    int runs = 300, threads = 0, rc;
    struct nr_embed_opts eo;
    struct nr_embedder *e = NULL;
    struct nr_store *s = NULL;
    struct nr_pool *pool = NULL;
    struct nr_retriever *r[2] = {NULL, NULL};
    static const char *const dev[2] = {"cpu", "cuda"};
    int64_t top[2][2][NQ * 5];
    double load[2];
    float qv[4096];

    for (int i = 1; i < argc; i++) {
        int64_t v;
        if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(argv[i], "--db") && i + 1 < argc) {
            db = argv[++i];
        } else if (!strcmp(argv[i], "--vectors") && i + 1 < argc) {
            if (nr_parse_i64(argv[++i], 100, 100000000, "--vectors", &v))
                goto usage;
            n = (long)v;
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            if (nr_parse_int(argv[++i], 10, 1000000, "--runs", &runs))
                goto usage;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if (nr_parse_int(argv[++i], 1, 1024, "--threads", &threads))
                goto usage;
        } else {
            goto usage;
        }
    }
    if (!model)
        goto usage;
    nr_embed_opts_default(&eo);
    eo.device = "auto";
    if ((rc = nr_embedder_open(model, &eo, &e)) || (rc = nr_store_open(db, &s)) ||
        (rc = nr_store_foreach_vector(s, nr_embedder_model_id(e), vec_count, &have)))
        goto fail;
    if (have < n) {
        double t0 = now_ms();
        nr_store_close(s);
        remove(db);
        if ((rc = nr_store_open(db, &s)) ||
            (rc = bench_store_build(s, n, nr_embedder_model_id(e), nr_embedder_dim(e))))
            goto fail;
        fprintf(stderr, "built %ld vectors in %.1f s\n", n, (now_ms() - t0) / 1e3);
        have = n;
    }
    if (!(pool = nr_pool_new(threads))) {
        rc = nr_err_set(NR_ENOMEM, "no thread pool");
        goto fail;
    }
    {
        struct nr_embedder_info ei;
        nr_embedder_info(e, &ei);
        printf("bench_retrieve: %ld vectors x %d, embedder on %s, CPU index on %d threads, "
               "%d runs of %d queries, k 5\n",
               have, nr_embedder_dim(e), ei.device, nr_pool_threads(pool), runs, NQ);
    }
    for (int d = 0; d < 2; d++) {
        struct nr_retriever_opts ro;
        struct nr_retriever_info in;
        double t0 = now_ms();
        nr_retriever_opts_default(&ro);
        ro.device = dev[d];
        ro.gpu_min_rows = 0;
        if ((rc = nr_retriever_open(s, e, d ? NULL : pool, &ro, &r[d])))
            goto fail;
        load[d] = now_ms() - t0;
        nr_retriever_info(r[d], &in);
        printf("retriever %-4s: runs on %s, load %.0f ms, CPU index %.1f MiB, GPU %.1f MiB%s%s\n",
               dev[d], in.device, load[d], in.cpu_bytes / 1048576.0, in.gpu_bytes / 1048576.0,
               in.note[0] ? ": " : "", in.note);
    }
    {
        double t[200];
        for (int i = -10; i < 200; i++) {
            double t0 = now_ms();
            const char *q = queries[(i + 10) % NQ];
            if ((rc = nr_embedder_embed(e, &q, NULL, 1, qv)))
                goto fail;
            if (i >= 0)
                t[i] = now_ms() - t0;
        }
        qsort(t, 200, sizeof t[0], cmp);
        printf("query embedding alone: p50 %.3f ms, p99 %.3f ms\n", t[100], t[198]);
    }
    for (int mode = NR_SEARCH_VECTOR; mode <= NR_SEARCH_HYBRID; mode += 2) {
        double p50[2], p99[2];
        int differ = 0;
        for (int d = 0; d < 2; d++)
            if ((rc = time_search(r[d], mode, runs, &p50[d], &p99[d], top[d][mode / 2])))
                goto fail;
        for (int q = 0; q < NQ; q++)
            differ += memcmp(top[0][mode / 2] + q * 5, top[1][mode / 2] + q * 5,
                             5 * sizeof(int64_t)) != 0;
        printf("%-6s search: cpu index p50 %.3f / p99 %.3f ms, gpu mirror p50 %.3f / p99 %.3f "
               "ms (%.1fx at p50); top-5 lists differing: %d of %d\n",
               mode == NR_SEARCH_VECTOR ? "vector" : "hybrid", p50[0], p99[0], p50[1], p99[1],
               p50[0] / p50[1], differ, NQ);
    }
    nr_retriever_close(r[0]);
    nr_retriever_close(r[1]);
    nr_pool_free(pool);
    nr_store_close(s);
    nr_embedder_close(e);
    return 0;
usage:
    fprintf(stderr, "usage: bench_retrieve --model PATH [--vectors N] [--db PATH] [--runs N] "
                    "[--threads N]\n");
    return 2;
fail:
    fprintf(stderr, "bench_retrieve: %s\n", nr_err_msg());
    nr_retriever_close(r[0]);
    nr_retriever_close(r[1]);
    nr_pool_free(pool);
    nr_store_close(s);
    nr_embedder_close(e);
    return 1;
}
