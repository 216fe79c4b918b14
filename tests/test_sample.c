/*
 * Sampling: determinism per seed, greedy = argmax, the draw follows the
 * softmax (chi-square), each filter keeps exactly the right set on
 * hand-checked vectors and on random ones against a plain full-sort
 * reference written here.
 */
#include "nr_err.h"
#include "nr_sample.h"
#include "nr_test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct nr_sample_params params(float t, int k, float top_p, float min_p)
{
    struct nr_sample_params p = {.temperature = t,
                                 .top_k = k,
                                 .top_p = top_p,
                                 .min_p = min_p,
                                 .repeat_penalty = 1.0f,
                                 .repeat_last_n = 64,
                                 .seed = 1234};
    return p;
}

/* A small LCG for test data, independent of the sampler's generator. */
static uint64_t lcg_state = 88172645463325252ull;
static double rnd(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}

static void random_logits(float *l, int n, double scale, int quantize)
{
    for (int i = 0; i < n; i++) {
        double v = (rnd() * 2 - 1) * scale;
        if (quantize) /* create ties */
            v = floor(v * 4) / 4;
        l[i] = (float)v;
    }
}

static void test_invalid_params(void)
{
    struct nr_sampler *s = NULL;
    struct nr_sample_params p = params(1, 0, 1, 0);
    NR_CHECK_INT(nr_sampler_new(0, &p, &s), NR_EINVAL);
    p.top_p = 0;
    NR_CHECK_INT(nr_sampler_new(10, &p, &s), NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "top_p") != NULL);
    p = params(1, -1, 1, 0);
    NR_CHECK_INT(nr_sampler_new(10, &p, &s), NR_EINVAL);
    p = params(NAN, 0, 1, 0);
    NR_CHECK_INT(nr_sampler_new(10, &p, &s), NR_EINVAL);
    p = params(1, 0, 1, 1.5f);
    NR_CHECK_INT(nr_sampler_new(10, &p, &s), NR_EINVAL);
    p = params(1, 0, 1, 0);
    p.repeat_penalty = 0;
    NR_CHECK_INT(nr_sampler_new(10, &p, &s), NR_EINVAL);
    p.repeat_penalty = 1;
    p.repeat_last_n = NR_SAMPLE_MAX_LAST_N + 1;
    NR_CHECK_INT(nr_sampler_new(10, &p, &s), NR_EINVAL);
    NR_CHECK(s == NULL);
}

static void test_greedy_is_argmax(void)
{
    enum { N = 3000 };
    static float l[N], copy[N];
    struct nr_sample_params p = params(0, 40, 0.9f, 0.05f);
    struct nr_sampler *s;
    NR_CHECK_INT(nr_sampler_new(N, &p, &s), NR_OK);
    for (int trial = 0; trial < 50; trial++) {
        int32_t id, best = 0;
        random_logits(l, N, 10, trial & 1);
        for (int i = 1; i < N; i++)
            if (l[i] > l[best])
                best = i;
        memcpy(copy, l, sizeof l);
        NR_CHECK_INT(nr_sampler_sample(s, copy, &id), NR_OK);
        NR_CHECK_INT(id, best);
    }
    /* Ties: the lowest id wins. */
    for (int i = 0; i < N; i++)
        l[i] = 0;
    l[7] = l[9] = l[2000] = 3;
    {
        int32_t id;
        NR_CHECK_INT(nr_sampler_sample(s, l, &id), NR_OK);
        NR_CHECK_INT(id, 7);
    }
    nr_sampler_free(s);
}

static void test_nan_and_inf(void)
{
    float l[6] = {NAN, 1.0f, NAN, -INFINITY, 2.0f, NAN};
    struct nr_sample_params p = params(1.0f, 0, 1, 0);
    struct nr_sampler *s;
    NR_CHECK_INT(nr_sampler_new(6, &p, &s), NR_OK);
    for (int i = 0; i < 200; i++) {
        float c[6];
        int32_t id;
        memcpy(c, l, sizeof c);
        NR_CHECK_INT(nr_sampler_sample(s, c, &id), NR_OK);
        NR_CHECK_MSG(id == 1 || id == 4, "drew token %d (NaN or -inf)", (int)id);
    }
    {
        float c[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
        int32_t id = -1;
        NR_CHECK_INT(nr_sampler_sample(s, c, &id), NR_OK);
        NR_CHECK(id >= 0 && id < 6);
    }
    {
        float c[6] = {0, INFINITY, 0, 0, 0, 0};
        int32_t id = -1;
        NR_CHECK_INT(nr_sampler_sample(s, c, &id), NR_OK);
        NR_CHECK_INT(id, 1);
    }
    nr_sampler_free(s);
}

static void test_same_seed_same_sequence(void)
{
    enum { N = 500, STEPS = 300 };
    static float base[N], a[N], b[N];
    int32_t seq1[STEPS], seq2[STEPS], seq3[STEPS];
    struct nr_sample_params p = params(0.9f, 50, 0.95f, 0.01f);
    struct nr_sampler *s1, *s2, *s3;
    int differ = 0;

    random_logits(base, N, 3, 0);
    p.repeat_penalty = 1.2f;
    NR_CHECK_INT(nr_sampler_new(N, &p, &s1), NR_OK);
    NR_CHECK_INT(nr_sampler_new(N, &p, &s2), NR_OK);
    p.seed = 99;
    NR_CHECK_INT(nr_sampler_new(N, &p, &s3), NR_OK);
    for (int t = 0; t < STEPS; t++) {
        memcpy(a, base, sizeof a);
        memcpy(b, base, sizeof b);
        NR_CHECK_INT(nr_sampler_sample(s1, a, &seq1[t]), NR_OK);
        NR_CHECK_INT(nr_sampler_sample(s2, b, &seq2[t]), NR_OK);
        nr_sampler_accept(s1, seq1[t]);
        nr_sampler_accept(s2, seq2[t]);
        memcpy(a, base, sizeof a);
        NR_CHECK_INT(nr_sampler_sample(s3, a, &seq3[t]), NR_OK);
        nr_sampler_accept(s3, seq3[t]);
        differ += seq3[t] != seq1[t];
    }
    NR_CHECK(memcmp(seq1, seq2, sizeof seq1) == 0);
    NR_CHECK_MSG(differ > STEPS / 4, "another seed changed only %d of %d draws", differ, STEPS);
    /* reset restarts the stream */
    nr_sampler_reset(s1);
    for (int t = 0; t < STEPS; t++) {
        int32_t id;
        memcpy(a, base, sizeof a);
        NR_CHECK_INT(nr_sampler_sample(s1, a, &id), NR_OK);
        nr_sampler_accept(s1, id);
        if (id != seq2[t]) {
            NR_CHECK_MSG(0, "after reset, step %d drew %d, first run %d", t, (int)id, (int)seq2[t]);
            break;
        }
    }
    nr_sampler_free(s1);
    nr_sampler_free(s2);
    nr_sampler_free(s3);
}

/*
 * Chi-square goodness of fit of 200000 draws to softmax(l / T), 10 bins
 * (9 degrees of freedom). The 0.999 quantile of chi2(9) is 27.88: a correct
 * sampler with this fixed seed passes; a wrong temperature or an off-by-one
 * in the walk gives statistics in the thousands.
 */
static void chi_square_case(float temperature)
{
    enum { N = 10, DRAWS = 200000 };
    const float l[N] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, -0.5f, 1.5f, 2.2f};
    long count[N] = {0};
    double expect[N], z = 0, chi = 0;
    struct nr_sample_params p = params(temperature, 0, 1, 0);
    struct nr_sampler *s;

    p.seed = 42;
    NR_CHECK_INT(nr_sampler_new(N, &p, &s), NR_OK);
    for (int d = 0; d < DRAWS; d++) {
        float c[N];
        int32_t id;
        memcpy(c, l, sizeof c);
        nr_sampler_sample(s, c, &id);
        count[id]++;
    }
    for (int i = 0; i < N; i++)
        z += exp(l[i] / temperature);
    for (int i = 0; i < N; i++) {
        expect[i] = DRAWS * exp(l[i] / temperature) / z;
        chi += (count[i] - expect[i]) * (count[i] - expect[i]) / expect[i];
    }
    NR_CHECK_MSG(chi < 27.88, "T=%.2f: chi-square %.2f >= 27.88 (9 dof, p=0.001)",
                 (double)temperature, chi);
    nr_sampler_free(s);
}

static void test_chi_square_softmax(void)
{
    chi_square_case(1.0f);
    chi_square_case(0.7f);
    chi_square_case(1.6f);
}

/* The kept set of one sample call, as a sorted-by-rank id list. */
static int kept(struct nr_sampler *s, const float *l, int n, int32_t *ids, float *probs)
{
    float *c = malloc((size_t)n * sizeof *c);
    const int32_t *oi;
    const float *op;
    int32_t id;
    int k;
    memcpy(c, l, (size_t)n * sizeof *c);
    nr_sampler_sample(s, c, &id);
    k = nr_sampler_last(s, &oi, &op);
    memcpy(ids, oi, (size_t)k * sizeof *ids);
    if (probs)
        memcpy(probs, op, (size_t)k * sizeof *probs);
    free(c);
    return k;
}

static void test_filters_hand_checked(void)
{
    /* softmax([1..5]) = .0117 .0317 .0861 .2341 .6364 */
    const float l[5] = {1, 2, 3, 4, 5};
    struct {
        int k;
        float top_p, min_p;
        int n;
        int32_t ids[5];
    } cases[] = {
        {2, 1, 0, 2, {4, 3}},        {1, 1, 0, 1, {4}},          {0, 0.6f, 0, 1, {4}},
        {0, 0.7f, 0, 2, {4, 3}},     {0, 0.9f, 0, 3, {4, 3, 2}}, {0, 0.99f, 0, 5, {4, 3, 2, 1, 0}},
        {0, 1, 0.1f, 3, {4, 3, 2}},  {0, 1, 0.2f, 2, {4, 3}},    {0, 1, 0.01f, 5, {4, 3, 2, 1, 0}},
        {3, 0.99f, 0, 3, {4, 3, 2}}, {0, 0.9f, 0.2f, 2, {4, 3}}, {4, 1, 0.1f, 3, {4, 3, 2}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct nr_sample_params p = params(1.0f, cases[c].k, cases[c].top_p, cases[c].min_p);
        struct nr_sampler *s;
        int32_t ids[5];
        float probs[5];
        int n;
        NR_CHECK_INT(nr_sampler_new(5, &p, &s), NR_OK);
        n = kept(s, l, 5, ids, probs);
        NR_CHECK_MSG(n == cases[c].n, "case %zu: kept %d, expected %d", c, n, cases[c].n);
        for (int i = 0; i < n && i < cases[c].n; i++)
            NR_CHECK_MSG(ids[i] == cases[c].ids[i], "case %zu: rank %d is %d, expected %d", c, i,
                         (int)ids[i], (int)cases[c].ids[i]);
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
                sum += probs[i];
            NR_CHECK_NEAR(sum, 1.0, 1e-6);
        }
        nr_sampler_free(s);
    }
    /* top-k 2 renormalises: e^5 / (e^5 + e^4) */
    {
        struct nr_sample_params p = params(1.0f, 2, 1, 0);
        struct nr_sampler *s;
        int32_t ids[5];
        float probs[5];
        NR_CHECK_INT(nr_sampler_new(5, &p, &s), NR_OK);
        kept(s, l, 5, ids, probs);
        NR_CHECK_NEAR(probs[0], exp(5.0) / (exp(5.0) + exp(4.0)), 1e-6);
        nr_sampler_free(s);
    }
}

static void test_repetition_penalty(void)
{
    float l[4] = {2.0f, -2.0f, 1.0f, 0.5f};
    struct nr_sample_params p = params(0, 0, 1, 0);
    struct nr_sampler *s;
    int32_t id;
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    NR_CHECK_INT(nr_sampler_new(4, &p, &s), NR_OK);
    /* 3 is pushed out of the 3-token window; 0 appears twice but counts once. */
    nr_sampler_accept(s, 3);
    nr_sampler_accept(s, 0);
    nr_sampler_accept(s, 1);
    nr_sampler_accept(s, 0);
    NR_CHECK_INT(nr_sampler_sample(s, l, &id), NR_OK);
    NR_CHECK_NEAR(l[0], 1.0, 0);
    NR_CHECK_NEAR(l[1], -4.0, 0);
    NR_CHECK_NEAR(l[2], 1.0, 0);
    NR_CHECK_NEAR(l[3], 0.5, 0);
    NR_CHECK_INT(id, 0); /* tie 0 / 2: lowest id */
    nr_sampler_free(s);
}

/* Reference: full sort by (logit desc, id asc), then the steps in double. */
struct rc {
    float v;
    int32_t id;
};
static int rc_cmp(const void *pa, const void *pb)
{
    const struct rc *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int reference(const float *l, int n, const struct nr_sample_params *p, int32_t *ids,
                     double *probs)
{
    struct rc *c = malloc((size_t)n * sizeof *c);
    double *w = malloc((size_t)n * sizeof *w);
    double sum = 0, cum = 0, total = 0;
    int m = n, k = 0;
    for (int i = 0; i < n; i++) {
        c[i].v = l[i];
        c[i].id = i;
    }
    qsort(c, (size_t)n, sizeof *c, rc_cmp);
    if (p->top_k > 0 && p->top_k < m)
        m = p->top_k;
    for (int i = 0; i < m; i++) {
        w[i] = exp(((double)c[i].v - c[0].v) / p->temperature);
        sum += w[i];
    }
    if (p->top_p < 1) {
        for (int i = 0; i < m; i++) {
            cum += w[i] / sum;
            if (cum >= p->top_p) {
                m = i + 1;
                break;
            }
        }
    }
    for (int i = 0; i < m; i++) {
        if (p->min_p > 0 && w[i] / sum < p->min_p * (w[0] / sum))
            continue;
        ids[k] = c[i].id;
        probs[k] = w[i];
        total += w[i];
        k++;
    }
    for (int i = 0; i < k; i++)
        probs[i] /= total;
    free(c);
    free(w);
    return k;
}

static void test_filters_vs_reference(void)
{
    enum { N = 4000 };
    static float l[N];
    static int32_t got[N], want[N];
    static float gp[N];
    static double wp[N];
    int trials = 0, mismatches = 0;
    const int ks[] = {0, 1, 5, 40, 100, 3999, 4000, 5000};
    const float tps[] = {1.0f, 0.95f, 0.5f, 0.9999f, 0.1f};
    const float mps[] = {0.0f, 0.05f, 0.3f};
    const float ts[] = {1.0f, 0.5f, 2.5f};

    for (int trial = 0; trial < 120; trial++) {
        struct nr_sample_params p =
            params(ts[trial % 3], ks[trial % 8], tps[(trial / 3) % 5], mps[(trial / 7) % 3]);
        struct nr_sampler *s;
        int ng, nw;
        random_logits(l, N, trial % 2 ? 8.0 : 1.5, trial % 4 == 0);
        if (nr_sampler_new(N, &p, &s) != NR_OK) {
            NR_CHECK(0);
            continue;
        }
        ng = kept(s, l, N, got, gp);
        nw = reference(l, N, &p, want, wp);
        if (p.top_k == 0 && p.top_p >= 1 && p.min_p <= 0) {
            /* No filter: the sampler walks the vocabulary in id order (documented). */
            static double byid[N];
            for (int i = 0; i < nw; i++)
                byid[want[i]] = wp[i];
            for (int i = 0; i < nw; i++) {
                want[i] = i;
                wp[i] = byid[i];
            }
        }
        trials++;
        if (ng != nw || memcmp(got, want, (size_t)ng * sizeof *got) != 0) {
            mismatches++;
            NR_CHECK_MSG(0, "trial %d (T %g k %d top_p %g min_p %g): kept %d, reference %d", trial,
                         (double)p.temperature, p.top_k, (double)p.top_p, (double)p.min_p, ng, nw);
        } else {
            double worst = 0;
            for (int i = 0; i < ng; i++)
                worst = fmax(worst, fabs(gp[i] - wp[i]));
            NR_CHECK_MSG(worst < 1e-5, "trial %d: probability off by %g", trial, worst);
        }
        nr_sampler_free(s);
    }
    NR_CHECK_INT(mismatches, 0);
    NR_CHECK_INT(trials, 120);
}

/* A 262144-token vocabulary with the default filters: the kept set equals the reference. */
static void test_large_vocab(void)
{
    enum { N = 262144 };
    float *l = malloc(N * sizeof *l);
    int32_t *got = malloc(N * sizeof *got), *want = malloc(N * sizeof *want);
    double *wp = malloc(N * sizeof *wp);
    struct nr_sample_params p = params(0.8f, 40, 0.95f, 0.05f);
    struct nr_sampler *s;
    int ng, nw;
    random_logits(l, N, 12, 0);
    NR_CHECK_INT(nr_sampler_new(N, &p, &s), NR_OK);
    ng = kept(s, l, N, got, NULL);
    nw = reference(l, N, &p, want, wp);
    NR_CHECK_INT(ng, nw);
    NR_CHECK(ng == nw && memcmp(got, want, (size_t)ng * sizeof *got) == 0);
    nr_sampler_free(s);
    /* top-p alone (peaked: the 64-best shortcut; flat: the full incremental path),
     * min-p alone (the logit bound), both together */
    {
        const struct nr_sample_params cases[] = {
            params(1.0f, 0, 0.9f, 0), params(40.0f, 0, 0.9f, 0), params(0.8f, 0, 1, 0.05f),
            params(3.0f, 0, 0.7f, 0.01f)};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            p = cases[c];
            if (c == 2) /* back to the flat vector: no peak */
                random_logits(l, N, 12, 0);
            else if (c == 0) /* peaked: 30 tokens far above the rest */
                for (int i = 0; i < 30; i++)
                    l[(i * 7919) % N] = 25.0f + (float)i * 0.1f;
            NR_CHECK_INT(nr_sampler_new(N, &p, &s), NR_OK);
            ng = kept(s, l, N, got, NULL);
            nw = reference(l, N, &p, want, wp);
            NR_CHECK_MSG(ng == nw && memcmp(got, want, (size_t)ng * sizeof *got) == 0,
                         "case %zu: kept %d, reference %d", c, ng, nw);
            nr_sampler_free(s);
        }
    }
    free(l);
    free(got);
    free(want);
    free(wp);
}

int main(void)
{
    NR_RUN(test_invalid_params);
    NR_RUN(test_greedy_is_argmax);
    NR_RUN(test_nan_and_inf);
    NR_RUN(test_same_seed_same_sequence);
    NR_RUN(test_chi_square_softmax);
    NR_RUN(test_filters_hand_checked);
    NR_RUN(test_repetition_penalty);
    NR_RUN(test_filters_vs_reference);
    NR_RUN(test_large_vocab);
    return nr_test_summary();
}
