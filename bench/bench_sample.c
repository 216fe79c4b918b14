/*
 * bench_sample: time of one nr_sampler_sample call (what sampling adds to each
 * decoded token) for the vocabularies of SmolLM2 (49152) and Gemma 3
 * (262144), on logits shaped like a model's: a few strong candidates over a
 * Gaussian-ish body (the sum of three uniforms), scaled as real logits are.
 *
 *   bench_sample [ITERATIONS]     (default 200 per configuration)
 *
 * Configurations: greedy; the defaults (top-k 40, top-p 0.95, min-p 0.05,
 * repetition penalty 1.1 over 64 tokens); top-p 0.9 alone (no top-k: the
 * incremental partial sort); min-p 0.05 alone; no filter at all.
 * Prints the median in microseconds.
 */
#include "nr_err.h"
#include "nr_sample.h"
#include "nr_str.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t state = 0x2545F4914F6CDD1Dull;
static double rnd(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) * 0x1.0p-53;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench(const char *name, int n_vocab, struct nr_sample_params p, int iters,
                  const float *base, float *work)
{
    struct nr_sampler *s;
    double *t = malloc((size_t)iters * sizeof *t);
    if (nr_sampler_new(n_vocab, &p, &s) != 0) {
        printf("%-28s cannot create the sampler\n", name);
        free(t);
        return;
    }
    for (int i = 0; i < 64; i++)
        nr_sampler_accept(s, (int32_t)(rnd() * n_vocab));
    for (int i = 0; i < iters; i++) {
        int32_t id;
        double t0;
        memcpy(work, base, (size_t)n_vocab * sizeof *work);
        t0 = now_us();
        nr_sampler_sample(s, work, &id);
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_d);
    printf("%-7d %-28s median %8.1f us   p90 %8.1f us\n", n_vocab, name, t[iters / 2],
           t[iters * 9 / 10]);
    nr_sampler_free(s);
    free(t);
}

int main(int argc, char **argv)
{
    const int vocabs[] = {49152, 262144};
    int iters = 200;
    if (argc > 1 && nr_parse_int(argv[1], 10, 100000, "iterations", &iters)) {
        fprintf(stderr, "bench_sample: %s\n", nr_err_msg());
        return 2;
    }
    for (size_t v = 0; v < 2; v++) {
        int n = vocabs[v];
        float *base = malloc((size_t)n * sizeof *base), *work = malloc((size_t)n * sizeof *work);
        struct nr_sample_params def = {0.8f, 40, 0.95f, 0.05f, 1.1f, 64, 1};
        struct nr_sample_params greedy = def, top_p = def, min_p = def, none = def;
        for (int i = 0; i < n; i++)
            base[i] = (float)((rnd() + rnd() + rnd() - 1.5) * 4.0);
        for (int i = 0; i < 20; i++)
            base[(int)(rnd() * n)] = (float)(10 + rnd() * 6);
        greedy.temperature = 0;
        top_p.top_k = 0;
        top_p.min_p = 0;
        top_p.top_p = 0.9f;
        min_p.top_k = 0;
        min_p.top_p = 1;
        none.top_k = 0;
        none.top_p = 1;
        none.min_p = 0;
        none.repeat_penalty = 1;
        bench("greedy", n, greedy, iters, base, work);
        bench("defaults (k40 p.95 min.05)", n, def, iters, base, work);
        bench("top-p 0.9 only", n, top_p, iters, base, work);
        bench("min-p 0.05 only", n, min_p, iters, base, work);
        bench("no filter", n, none, iters, base, work);
        free(base);
        free(work);
    }
    return 0;
}
