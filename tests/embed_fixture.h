/*
 * embed_fixture.h — shared by the embedding tests: the sentence-transformers
 * reference set (tests/fixtures/embed_ref.json, made by
 * scripts/fixtures/make_embed_fixtures.py) and vector comparisons.
 * Header-only (static functions): each test is its own executable.
 */
#ifndef NR_EMBED_FIXTURE_H
#define NR_EMBED_FIXTURE_H

#include "nr_test.h"

#include "nr_embed.h"
#include "nr_err.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#ifndef DIM
#define DIM 384
#endif

static json_t *fixture;
static int n_texts;
static const char **texts;
static float *ref; /* [n_texts][DIM] sentence-transformers */

static int load_fixture(void)
{
    json_error_t err;
    json_t *jt, *jv;
    if (fixture)
        return 1;
    fixture = json_load_file(nr_test_src_path("tests/fixtures/embed_ref.json"), 0, &err);
    if (!fixture) {
        nr_test_fail(__FILE__, __LINE__, "cannot load embed_ref.json: %s", err.text);
        return 0;
    }
    jt = json_object_get(fixture, "texts");
    jv = json_object_get(fixture, "vectors");
    n_texts = (int)json_array_size(jt);
    texts = calloc((size_t)n_texts, sizeof *texts);
    ref = calloc((size_t)n_texts * DIM, sizeof *ref);
    for (int i = 0; i < n_texts; i++) {
        json_t *v = json_array_get(jv, (size_t)i);
        texts[i] = json_string_value(json_array_get(jt, (size_t)i));
        for (int j = 0; j < DIM; j++)
            ref[(size_t)i * DIM + j] = (float)json_number_value(json_array_get(v, (size_t)j));
    }
    return n_texts >= 100;
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > m || a[i] != a[i] || b[i] != b[i])
            m = a[i] != a[i] || b[i] != b[i] ? INFINITY : fabs((double)a[i] - b[i]);
    return m;
}

/* Each text alone; returns the vectors (caller frees). */
static float *embed_one_by_one(struct nr_embedder *e)
{
    float *v = calloc((size_t)n_texts * DIM, sizeof *v);
    for (int i = 0; i < n_texts; i++) {
        int rc = nr_embedder_embed(e, &texts[i], NULL, 1, v + (size_t)i * DIM);
        NR_CHECK_MSG(rc == NR_OK, "text %d: %s", i, nr_err_msg());
    }
    return v;
}

#endif
