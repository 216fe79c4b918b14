/*
 * bench_index: search latency of nr_index at 10k, 100k and 1M synthetic
 * vectors of dim 384, fp32 exact and int8 + fp32 re-score, on 1 and 2
 * threads; recall@10 of int8 against exact; memory per vector; achieved scan
 * bandwidth against the machine's measured read bandwidth.
 *
 *   bench_index [max_rows (default 1000000)] [queries (default 100)]
 *
 * Data: clustered like real chunk embeddings (2000 random unit centers, each
 * row a center plus noise of norm 0.5-1.1, normalized), so recall means
 * something (uniform random vectors all score about 0 against a query).
 * The index grows in place from one size to the next.
 */
#include "nr_index.h"

#include "nr_err.h"
#include "nr_kern.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_str.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DIM = 384, K = 10, NCENTERS = 2000 };

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float urand_pm1(void) /* uniform in [-1, 1) */
{
    return (float)((double)(rnd() >> 11) / 4503599627370496.0 - 1.0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void normalize(float *v)
{
    double ss = 0.0;
    for (int t = 0; t < DIM; t++)
        ss += (double)v[t] * v[t];
    ss = 1.0 / sqrt(ss);
    for (int t = 0; t < DIM; t++)
        v[t] = (float)(v[t] * ss);
}

static void make_row(const float *centers, float *v)
{
    const float *c = centers + (size_t)(rnd() % NCENTERS) * DIM;
    /* uniform noise in [-1,1] has norm ~ sqrt(DIM/3); scale it to 0.5-1.1 */
    float scale =
        (float)((0.5 + 0.6 * (double)(rnd() >> 11) / 9007199254740992.0) / sqrt(DIM / 3.0));
    for (int t = 0; t < DIM; t++)
        v[t] = c[t] + scale * urand_pm1();
    normalize(v);
}

/* ---- read bandwidth: a sum over a 1 GiB array, split over the pool */

struct bw {
    const uint64_t *a;
    size_t n_per_task;
    uint64_t sums[64];
};

static void bw_task(void *vctx, int task, int worker)
{
    struct bw *b = vctx;
    const uint64_t *p = b->a + (size_t)task * b->n_per_task;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < b->n_per_task; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    b->sums[worker] += s0 + s1 + s2 + s3;
}

static double read_bandwidth(struct nr_pool *pool)
{
    const size_t bytes = (size_t)1 << 30, ntasks = 256;
    uint64_t *a = nr_aligned_alloc(64, bytes);
    struct bw b;
    double best = 1e9;
    if (!a)
        return 0.0;
    memset(a, 1, bytes);
    memset(&b, 0, sizeof b);
    b.a = a;
    b.n_per_task = bytes / sizeof(uint64_t) / ntasks;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        if (pool)
            nr_pool_run(pool, (int)ntasks, bw_task, &b);
        else
            for (size_t t = 0; t < ntasks; t++)
                bw_task(&b, (int)t, 0);
        t0 = now_s() - t0;
        if (t0 < best)
            best = t0;
    }
    if (b.sums[0] == 42) /* keep the sums alive */
        printf(" ");
    nr_free(a);
    return (double)bytes / best / 1e9;
}

static int dbl_cmp(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* p50 and p99 (ms) of nq searches; hits of each query to out[q * K]. */
static int run_queries(struct nr_index *ix, struct nr_pool *pool, const float *qs, int nq, int mode,
                       struct nr_index_hit *out, double *p50, double *p99)
{
    double *lat = malloc(sizeof(double) * (size_t)nq);
    int nh, rc = 0;
    if (!lat)
        return NR_ENOMEM;
    for (int w = 0; w < 3 && !rc; w++) /* warm up */
        rc = nr_index_search(ix, pool, qs, DIM, K, mode, NULL, out, &nh);
    for (int q = 0; q < nq && !rc; q++) {
        double t0 = now_s();
        rc = nr_index_search(ix, pool, qs + (size_t)q * DIM, DIM, K, mode, NULL, out + q * K, &nh);
        lat[q] = (now_s() - t0) * 1e3;
    }
    qsort(lat, (size_t)nq, sizeof *lat, dbl_cmp);
    *p50 = lat[nq / 2];
    *p99 = lat[(nq * 99 + 99) / 100 - 1];
    free(lat);
    return rc;
}

static double recall(const struct nr_index_hit *ex, const struct nr_index_hit *ap, int nq)
{
    long found = 0;
    for (int q = 0; q < nq; q++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                if (ap[q * K + i].chunk_id == ex[q * K + j].chunk_id) {
                    found++;
                    break;
                }
    return (double)found / (nq * K);
}

int main(int argc, char **argv)
{
    int64_t max_rows = 1000000, nq = 100;
    static const int64_t sizes[] = {10000, 100000, 1000000};
    float *centers = malloc(sizeof(float) * NCENTERS * DIM), *qs, v[DIM];
    struct nr_index_hit *ex, *ap;
    struct nr_index *ix = NULL;
    struct nr_pool *pool2 = nr_pool_new(2);
    double bw1, bw2;
    int64_t have = 0;

    if ((argc > 1 && nr_parse_i64(argv[1], 1000, 100000000, "max_rows", &max_rows)) ||
        (argc > 2 && nr_parse_i64(argv[2], 10, 100000, "queries", &nq))) {
        fprintf(stderr, "bench_index: %s\n", nr_err_msg());
        return 2;
    }
    qs = malloc(sizeof(float) * (size_t)nq * DIM);
    ex = malloc(sizeof *ex * (size_t)nq * K);
    ap = malloc(sizeof *ap * (size_t)nq * K);
    if (!centers || !qs || !ex || !ap || !pool2 || nr_index_new(DIM, NR_INDEX_F_INT8, &ix)) {
        fprintf(stderr, "bench_index: set-up failed: %s\n", nr_err_msg());
        return 1;
    }
    for (int c = 0; c < NCENTERS; c++) {
        for (int t = 0; t < DIM; t++)
            centers[(size_t)c * DIM + t] = urand_pm1();
        normalize(centers + (size_t)c * DIM);
    }
    for (int q = 0; q < nq; q++)
        make_row(centers, qs + (size_t)q * DIM);

    bw1 = read_bandwidth(NULL);
    bw2 = read_bandwidth(pool2);
    printf("nr_index bench: dim %d, top-%d, %lld queries, kernels %s, int8 R = %d\n", DIM, K,
           (long long)nq, nr_index_kern_get()->name, NR_INDEX_DEFAULT_RESCORE);
    printf("read bandwidth (sum over 1 GiB): %.1f GB/s on 1 thread, %.1f GB/s on 2\n\n", bw1, bw2);
    printf("%9s %5s %3s %9s %9s %8s %6s %9s %8s\n", "rows", "mode", "thr", "p50 ms", "p99 ms",
           "GB/s", "of bw", "recall@10", "B/vec");

    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0] && sizes[si] <= max_rows; si++) {
        int64_t n = sizes[si];
        double t0 = now_s();
        for (; have < n; have++) {
            make_row(centers, v);
            if (nr_index_add(ix, have, have / 8, 0, v, DIM)) {
                fprintf(stderr, "bench_index: add: %s\n", nr_err_msg());
                return 1;
            }
        }
        fprintf(stderr, "(%lld rows loaded in %.1f s)\n", (long long)n, now_s() - t0);
        for (int mode = 0; mode < 2; mode++) {
            for (int thr = 1; thr <= 2; thr++) {
                double p50, p99, gbs, rec = -1.0;
                /* bytes one query streams: the fp32 rows, or the int8 codes */
                double bytes = (double)n * (mode == NR_INDEX_EXACT ? DIM * 4 : DIM);
                struct nr_index_hit *out = mode == NR_INDEX_EXACT ? ex : ap;
                if (run_queries(ix, thr == 1 ? NULL : pool2, qs, (int)nq, mode, out, &p50, &p99)) {
                    fprintf(stderr, "bench_index: search: %s\n", nr_err_msg());
                    return 1;
                }
                gbs = bytes / (p50 * 1e-3) / 1e9;
                if (mode == NR_INDEX_INT8)
                    rec = recall(ex, ap, (int)nq);
                printf("%9lld %5s %3d %9.3f %9.3f %8.1f %5.0f%% ", (long long)n,
                       mode ? "int8" : "fp32", thr, p50, p99, gbs,
                       100.0 * gbs / (thr == 1 ? bw1 : bw2));
                if (rec >= 0)
                    printf("%9.4f", rec);
                else
                    printf("%9s", "-");
                printf(" %8.0f\n", (double)nr_index_bytes(ix) / (double)n);
                fflush(stdout);
            }
        }
        /* recall against R, on the 1-thread exact results still in ex */
        if (n == 100000 || n == max_rows) {
            static const int rs[] = {1, 2, 4, 8, 16};
            printf("%9s int8 recall@10 by R:", "");
            for (size_t ri = 0; ri < sizeof rs / sizeof rs[0]; ri++) {
                double p50, p99;
                nr_index_set_rescore(ix, rs[ri]);
                run_queries(ix, pool2, qs, (int)nq, NR_INDEX_INT8, ap, &p50, &p99);
                printf("  R=%d %.4f (%.2f ms)", rs[ri], recall(ex, ap, (int)nq), p50);
            }
            printf("\n");
            fflush(stdout);
            nr_index_set_rescore(ix, NR_INDEX_DEFAULT_RESCORE);
        }
    }
    printf("\nmemory per vector: fp32 %d B + int8 %d B + scale/sum 8 B + ids 20 B + id map\n",
           DIM * 4, DIM);
    nr_index_free(ix);
    nr_pool_free(pool2);
    free(centers), free(qs), free(ex), free(ap);
    return 0;
}
