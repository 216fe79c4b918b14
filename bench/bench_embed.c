/*
 * bench_embed: CPU embedding speed, the figures docs/BENCHMARKS.md records.
 *
 *   bench_embed [--model PATH] [--threads N] [--queries N] [--batches N] [--batch N]
 *               [--int8 | --both]
 *
 * --int8 measures the int8 linear layers (NR_PREC_INT8) instead of fp32;
 * --both measures fp32 then int8 in one run, same inputs, and prints the
 * throughput ratio. Every figure is printed with its precision.
 *
 * 1. single query of 12 tokens ("how do i reset the admin password on my
 *    router", with [CLS]/[SEP]), end to end including tokenization:
 *    p50/p99 over --queries runs after warm-up;
 * 2. throughput in 128-token chunks/s at batch --batch (32): texts built from
 *    single-token words so each is exactly 128 tokens (checked);
 * 3. peak RSS (ru_maxrss) with the model loaded and after the runs.
 * bench/st_bench.py measures sentence-transformers on the same inputs.
 */
#include "nr_embed.h"
#include "nr_err.h"
#include "nr_mem.h"
#include "nr_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_text.h"

static int run(const char *model, int threads, int queries, int batches, int batch, int precision,
               double *chunks_per_s)
{
    struct nr_embed_opts o;
    struct nr_embedder *e;
    struct nr_embedder_info info;
    const char *q = "how do i reset the password on my home laptop";
    char **texts;
    float *out;
    double *lat, t0, dt;
    struct rusage ru;
    long rss_loaded;
    const char *pr = precision == NR_PREC_INT8 ? "int8" : "fp32";

    nr_embed_opts_default(&o);
    o.threads = threads;
    o.precision = precision;
    if (nr_embedder_open(model, &o, &e)) {
        fprintf(stderr, "bench_embed: %s\n", nr_err_msg());
        return 1;
    }
    nr_embedder_info(e, &info);
    getrusage(RUSAGE_SELF, &ru);
    rss_loaded = ru.ru_maxrss;
    printf("[%s] model %s (%s), precision %s, kernel %s, threads %d, weights %.1f MiB\n", pr,
           info.model, info.source, info.precision, info.kernel, info.threads,
           info.weight_bytes / 1048576.0);
    if (nr_embedder_count_tokens(e, q, strlen(q)) != 12) {
        fprintf(stderr, "bench_embed: query is %d tokens, expected 12\n",
                nr_embedder_count_tokens(e, q, strlen(q)));
        return 1;
    }

    out = malloc(sizeof(float) * (size_t)info.dim * (size_t)batch);
    lat = malloc(sizeof(double) * (size_t)queries);
    texts = malloc(sizeof(char *) * (size_t)batch);
    for (int i = 0; i < 20; i++)
        nr_embedder_embed(e, &q, NULL, 1, out);
    for (int i = 0; i < queries; i++) {
        t0 = now_ms();
        if (nr_embedder_embed(e, &q, NULL, 1, out)) {
            fprintf(stderr, "bench_embed: %s\n", nr_err_msg());
            return 1;
        }
        lat[i] = now_ms() - t0;
    }
    qsort(lat, (size_t)queries, sizeof lat[0], cmp);
    {
        /* tokenization alone (nr_embedder_count_tokens runs the full encoder
         * pipeline of the tokenizer), best of 20 x 1000 */
        double best = 1e9;
        for (int r = 0; r < 20; r++) {
            t0 = now_ms();
            for (int i = 0; i < 1000; i++)
                nr_embedder_count_tokens(e, q, strlen(q));
            dt = now_ms() - t0; /* ms per 1000 calls = us per call */
            if (dt < best)
                best = dt;
        }
        printf("[%s] tokenize_12tok_us %.3f\n", pr, best);
    }
    printf("[%s] query_12tok_ms p50 %.3f p99 %.3f (n=%d)\n", pr, lat[queries / 2],
           lat[(int)(queries * 0.99)], queries);

    for (int i = 0; i < batch; i++) {
        texts[i] = make_text(i, 126);
        if (nr_embedder_count_tokens(e, texts[i], strlen(texts[i])) != 128) {
            fprintf(stderr, "bench_embed: chunk %d is not 128 tokens\n", i);
            return 1;
        }
    }
    nr_embedder_embed(e, (const char *const *)texts, NULL, batch, out); /* warm-up */
    t0 = now_ms();
    for (int b = 0; b < batches; b++)
        if (nr_embedder_embed(e, (const char *const *)texts, NULL, batch, out)) {
            fprintf(stderr, "bench_embed: %s\n", nr_err_msg());
            return 1;
        }
    dt = now_ms() - t0;
    *chunks_per_s = batch * batches / (dt / 1e3);
    printf("[%s] chunks_128tok_per_s %.1f (batch %d, %d batches, %.1f ms/batch)\n", pr,
           *chunks_per_s, batch, batches, dt / batches);
    getrusage(RUSAGE_SELF, &ru);
    printf("[%s] peak_rss_mib loaded %.1f after_runs %.1f\n", pr, rss_loaded / 1024.0,
           ru.ru_maxrss / 1024.0);
    for (int i = 0; i < batch; i++)
        free(texts[i]);
    free(texts);
    free(lat);
    free(out);
    nr_embedder_close(e);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = "models/all-MiniLM-L6-v2";
    int threads = 0, queries = 200, batches = 8, batch = 32, int8 = 0, both = 0, rc;
    double cps32 = 0, cps8 = 0;

    for (int i = 1; i < argc; i++) {
        int bad = 0;
        if (!strcmp(argv[i], "--int8")) {
            int8 = 1;
            continue;
        }
        if (!strcmp(argv[i], "--both")) {
            both = 1;
            continue;
        }
        if (i + 1 >= argc)
            bad = nr_err_set(NR_EINVAL, "option %s needs a value", argv[i]);
        else if (!strcmp(argv[i], "--model"))
            model = argv[++i];
        else if (!strcmp(argv[i], "--threads"))
            bad = nr_parse_int(argv[++i], 1, 256, "--threads", &threads);
        else if (!strcmp(argv[i], "--queries"))
            bad = nr_parse_int(argv[++i], 10, 1000000, "--queries", &queries);
        else if (!strcmp(argv[i], "--batches"))
            bad = nr_parse_int(argv[++i], 1, 100000, "--batches", &batches);
        else if (!strcmp(argv[i], "--batch"))
            bad = nr_parse_int(argv[++i], 1, 4096, "--batch", &batch);
        else
            bad = nr_err_set(NR_EINVAL, "unknown option %s", argv[i]);
        if (bad) {
            fprintf(stderr, "bench_embed: %s\n", nr_err_msg());
            return 2;
        }
    }
    if (both || !int8)
        if ((rc = run(model, threads, queries, batches, batch, NR_PREC_FP32, &cps32)))
            return rc;
    if (both || int8)
        if ((rc = run(model, threads, queries, batches, batch, NR_PREC_INT8, &cps8)))
            return rc;
    if (both)
        printf("int8/fp32 throughput ratio %.2f\n", cps8 / cps32);
    return 0;
}
