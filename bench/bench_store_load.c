/*
 * bench_store_load: start-up cost of the in-memory index — read every
 * vector of a model from the store and add it to the index.
 *
 *   bench_store_load [--vectors N] [--db PATH] [--int8]
 *
 * Builds the store once if it has fewer than N vectors (synthetic normalized
 * 384-dim vectors, 100 chunks per document, FTS rows included), then opens
 * it and times nr_store_foreach_vector -> nr_index_add over all of them,
 * five times, and prints the best and the median. Issue 3's target: 100k
 * vectors in <= 1 s.
 */
#include "bench_store.h"
#include "nr_err.h"
#include "nr_index.h"
#include "nr_mem.h"
#include "nr_store.h"
#include "nr_str.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIM      384
#define MODEL_ID "bench:384"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int add_vec(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t collection_id,
                   const float *v, int dim)
{
    return nr_index_add(ctx, chunk_id, doc_id, (int32_t)collection_id, v, dim);
}

static int count_vec(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t collection_id,
                     const float *v, int dim)
{
    (*(long *)ctx)++;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long n = 100000;
    const char *db = "/var/tmp/nanorag-bench-load.db";
    int int8 = 0, rc;
    struct nr_store *s = NULL;
    long have = 0;
    double t[5];

    for (int i = 1; i < argc; i++) {
        int64_t v;
        if (!strcmp(argv[i], "--vectors") && i + 1 < argc) {
            if (nr_parse_i64(argv[++i], 100, 100000000, "--vectors", &v)) {
                fprintf(stderr, "bench_store_load: %s\n", nr_err_msg());
                return 2;
            }
            n = (long)v;
        } else if (!strcmp(argv[i], "--db") && i + 1 < argc) {
            db = argv[++i];
        } else if (!strcmp(argv[i], "--int8")) {
            int8 = 1;
        } else {
            fprintf(stderr, "usage: bench_store_load [--vectors N] [--db PATH] [--int8]\n");
            return 2;
        }
    }
    if ((rc = nr_store_open(db, &s)))
        goto fail;
    if ((rc = nr_store_foreach_vector(s, MODEL_ID, count_vec, &have)))
        goto fail;
    if (have < n) {
        double t0 = now_s();
        nr_store_close(s);
        remove(db);
        if ((rc = nr_store_open(db, &s)) || (rc = bench_store_build(s, n, MODEL_ID, DIM)))
            goto fail;
        fprintf(stderr, "built %ld vectors in %.1f s\n", n, now_s() - t0);
        have = n;
    }
    for (int r = 0; r < 5; r++) {
        struct nr_index *ix = NULL;
        double t0 = now_s();
        if ((rc = nr_index_new(DIM, int8 ? NR_INDEX_F_INT8 : 0, &ix)))
            goto fail;
        rc = nr_store_foreach_vector(s, MODEL_ID, add_vec, ix);
        t[r] = now_s() - t0;
        if (!rc && nr_index_count(ix) != have)
            rc = nr_err_set(NR_EINTERNAL, "index holds %lld of %ld vectors",
                            (long long)nr_index_count(ix), have);
        nr_index_free(ix);
        if (rc)
            goto fail;
    }
    qsort(t, 5, sizeof t[0], cmp);
    printf("index load from store: %ld vectors (%s), best %.3f s, median %.3f s "
           "(%.0f vectors/s)\n",
           have, int8 ? "fp32 + int8 codes" : "fp32", t[0], t[2], have / t[2]);
    nr_store_close(s);
    return 0;
fail:
    fprintf(stderr, "bench_store_load: %s\n", nr_err_msg());
    nr_store_close(s);
    return 1;
}
