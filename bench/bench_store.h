/*
 * bench_store.h: a store of n synthetic vectors for the benchmarks that need
 * one (bench_store_load, bench_retrieve): normalized pseudo-random vectors
 * of `dim` floats under model_id, PER_DOC chunks per document, FTS rows
 * included, a progress line on stderr. Header-only (static functions).
 */
#ifndef BENCH_STORE_H
#define BENCH_STORE_H

#include "nr_err.h"
#include "nr_store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_PER_DOC 100

static int bench_store_build(struct nr_store *s, long n, const char *model_id, int dim)
{
    char text[BENCH_PER_DOC * 8 + 1];
    struct nr_chunk_in ch[BENCH_PER_DOC];
    float *vec = malloc(sizeof(float) * BENCH_PER_DOC * (size_t)dim);
    unsigned seed = 12345;
    if (!vec)
        return nr_err_set(NR_ENOMEM, "out of memory building the store");
    for (int i = 0; i < BENCH_PER_DOC; i++) {
        memcpy(text + i * 8, "chunkxx ", 8);
        ch[i].start = i * 8;
        ch[i].end = i * 8 + 7;
        ch[i].page = 0;
        ch[i].n_tokens = 3;
        ch[i].heading = NULL;
    }
    text[BENCH_PER_DOC * 8] = '\0';
    for (long d = 0; d * BENCH_PER_DOC < n; d++) {
        char src[64];
        struct nr_doc_in doc = {
            .collection = "bench", .source = src, .text = text, .text_len = BENCH_PER_DOC * 8};
        int rc;
        snprintf(src, sizeof src, "doc%06ld", d);
        for (int i = 0; i < BENCH_PER_DOC; i++) {
            double ss = 0;
            float *v = vec + (size_t)i * dim;
            for (int j = 0; j < dim; j++) {
                seed = seed * 1103515245u + 12345u;
                v[j] = (float)((int)(seed >> 8 & 0xffff) - 32768);
                ss += (double)v[j] * v[j];
            }
            for (int j = 0; j < dim; j++)
                v[j] = (float)(v[j] / sqrt(ss));
        }
        if ((rc = nr_store_put(s, &doc, ch, BENCH_PER_DOC, vec, dim, model_id, NULL, NULL))) {
            free(vec);
            return rc;
        }
        if (d % 100 == 99)
            fprintf(stderr, "\rbuilding: %ld vectors", (d + 1) * BENCH_PER_DOC);
    }
    fprintf(stderr, "\n");
    free(vec);
    return NR_OK;
}

#endif
