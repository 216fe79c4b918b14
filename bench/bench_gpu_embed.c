/*
 * bench_gpu_embed: the GPU encoder's figures for docs/BENCHMARKS.md and
 * docs/GPU.md (issue 6), on the same inputs as bench/st_bench_gpu.py.
 *
 *   bench_gpu_embed [--model PATH] [--queries N] [--batches N] [--profile]
 *
 * 1. single query of 12 tokens, end to end including tokenization
 *    (nr_embedder_embed): p50/p99 over --queries runs after warm-up, with the
 *    CUDA graph path (default) and with plain launches;
 * 2. throughput in 128-token chunks/s for batches of 64 .. 2048 chunks:
 *    encoder alone (pre-tokenized ids, nr_gpu_bert_submit/wait) and end to
 *    end (nr_embedder_embed of the texts, tokenization overlapped with the
 *    GPU), with achieved TFLOP/s (matrix products and attention, 2 flops per
 *    multiply-add);
 * 3. ingest of 10,000 chunks (128 tokens) end to end: wall time, device
 *    memory held by the encoder and the device's free memory before/after.
 * --profile runs one 128-chunk batch and exits (for ncu's per-kernel view).
 * Texts are made of single-token words, so each is exactly 128 tokens.
 */
#include "nr_bert.h"
#include "nr_embed.h"
#include "nr_err.h"
#include "nr_gpu.h"
#include "nr_gpu_bert.h"
#include "nr_gpu_index.h"
#include "nr_index.h"
#include "nr_str.h"
#include "nr_wordpiece.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_text.h"

/* Flops of one sequence of L tokens: the GEMMs (QKV, output, FFN up and
 * down) and attention's two products, 2 per multiply-add. */
static double seq_flops(const struct nr_bert_config *c, int L)
{
    double H = c->hidden, F = c->ffn;
    double per_tok = 2.0 * (3 * H * H + H * H + 2 * H * F) + 4.0 * L * H;
    return per_tok * L * c->layers;
}

static struct nr_embedder *open_gpu(const char *model, int budget)
{
    struct nr_embed_opts o;
    struct nr_embedder *e;
    struct nr_embedder_info info;
    nr_embed_opts_default(&o);
    o.device = "cuda";
    o.max_seq = 256;
    o.max_batch_tokens = budget;
    if (nr_embedder_open(model, &o, &e)) {
        fprintf(stderr, "bench_gpu_embed: %s\n", nr_err_msg());
        return NULL;
    }
    nr_embedder_info(e, &info);
    if (strcmp(info.device, "cuda") != 0) {
        fprintf(stderr, "bench_gpu_embed: the embedder fell back to the CPU\n");
        nr_embedder_close(e);
        return NULL;
    }
    return e;
}

static void query_latency(const char *model, int queries)
{
    const char *q = "how do i reset the password on my home laptop";
    double *lat = calloc((size_t)queries, sizeof *lat);
    float v[384 * 2];
    struct nr_embedder *e = open_gpu(model, 4096);
    if (!e || !lat)
        goto out;
    if (nr_embedder_count_tokens(e, q, strlen(q)) != 12)
        fprintf(stderr, "bench_gpu_embed: the query is not 12 tokens\n");
    for (int i = 0; i < 200; i++)
        nr_embedder_embed(e, &q, NULL, 1, v);
    for (int i = 0; i < queries; i++) {
        double t0 = now_ms();
        if (nr_embedder_embed(e, &q, NULL, 1, v)) {
            fprintf(stderr, "bench_gpu_embed: %s\n", nr_err_msg());
            goto out;
        }
        lat[i] = now_ms() - t0;
    }
    qsort(lat, (size_t)queries, sizeof *lat, cmp);
    printf("query_12tok_ms (graph, end to end) p50 %.3f p99 %.3f (n=%d)\n", lat[queries / 2],
           lat[(int)(queries * 0.99)], queries);
out:
    free(lat);
    nr_embedder_close(e);
}

/* The encoder alone, graphs on or off, for a 12-token query (ids ready). */
static void query_encoder(struct nr_bert *meta, struct nr_gpu_bert *g, int graphs, int queries)
{
    const char *q = "how do i reset the password on my home laptop";
    int32_t ids[64];
    int len = 0;
    float v[384 * 2];
    double *lat = calloc((size_t)queries, sizeof *lat);
    if (!lat ||
        nr_wordpiece_encode(nr_bert_tokenizer(meta), q, strlen(q), ids, NULL, NULL, 64, &len, NULL))
        goto out;
    nr_gpu_bert_set_graphs(g, graphs);
    for (int i = 0; i < 200; i++)
        if (nr_gpu_bert_submit(g, ids, &len, 1) || nr_gpu_bert_wait(g, v))
            goto out;
    for (int i = 0; i < queries; i++) {
        double t0 = now_ms();
        nr_gpu_bert_submit(g, ids, &len, 1);
        nr_gpu_bert_wait(g, v);
        lat[i] = now_ms() - t0;
    }
    qsort(lat, (size_t)queries, sizeof *lat, cmp);
    printf("query_12tok_ms (encoder only, %s) p50 %.3f p99 %.3f\n",
           graphs ? "graph" : "plain launches", lat[queries / 2], lat[(int)(queries * 0.99)]);
out:
    nr_gpu_bert_set_graphs(g, 1);
    free(lat);
}

static double encoder_throughput(struct nr_bert *meta, int bs, int batches, int profile,
                                 int attn_tc)
{
    const struct nr_bert_config *c = nr_bert_config(meta);
    struct nr_gpu_bert *g = NULL;
    int32_t *ids = malloc((size_t)bs * 128 * sizeof *ids);
    int *lens = malloc((size_t)bs * sizeof *lens);
    float *out = malloc((size_t)bs * c->hidden * sizeof *out);
    double t0, dt, cps = 0;
    if (!ids || !lens || !out || nr_gpu_bert_open(meta, 0, bs * 128, &g) ||
        nr_gpu_bert_set_attention(g, attn_tc)) {
        fprintf(stderr, "bench_gpu_embed: batch %d: %s\n", bs, nr_err_msg());
        goto out;
    }
    for (int s = 0; s < bs; s++) {
        char *t = make_text(s, 126);
        int got = 0;
        nr_wordpiece_encode(nr_bert_tokenizer(meta), t, strlen(t), ids + (size_t)s * 128, NULL,
                            NULL, 128, &got, NULL);
        lens[s] = got;
        free(t);
        if (got != 128)
            fprintf(stderr, "bench_gpu_embed: text %d is %d tokens\n", s, got);
    }
    if (nr_gpu_bert_submit(g, ids, lens, bs) || nr_gpu_bert_wait(g, out)) {
        fprintf(stderr, "bench_gpu_embed: %s\n", nr_err_msg());
        goto out;
    }
    if (profile)
        goto out;
    t0 = now_ms();
    for (int i = 0; i < batches; i++)
        if (nr_gpu_bert_submit(g, ids, lens, bs) || nr_gpu_bert_wait(g, out))
            goto out;
    dt = (now_ms() - t0) / 1e3;
    cps = (double)bs * batches / dt;
    printf("encoder   batch %5d: %9.0f chunks/s  %7.3f ms/batch  %6.1f TFLOP/s%s\n", bs, cps,
           dt * 1e3 / batches, cps * seq_flops(c, 128) / 1e12,
           attn_tc ? "" : "  (plain fp32 attention)");
out:
    nr_gpu_bert_close(g);
    free(ids);
    free(lens);
    free(out);
    return cps;
}

static double end_to_end_throughput(const char *model, char **texts, int n, int bs, int batches,
                                    const struct nr_bert_config *c)
{
    struct nr_embedder *e = open_gpu(model, bs * 128);
    float *out = malloc((size_t)n * c->hidden * sizeof *out);
    double t0, dt, cps = 0;
    if (!e || !out)
        goto out;
    nr_embedder_embed(e, (const char *const *)texts, NULL, bs, out);
    t0 = now_ms();
    for (int i = 0; i < batches; i++)
        nr_embedder_embed(e, (const char *const *)texts, NULL, n, out);
    dt = (now_ms() - t0) / 1e3;
    cps = (double)n * batches / dt;
    printf("end2end   batch %5d: %9.0f chunks/s  (%d texts per call, tokenization included)\n", bs,
           cps, n);
out:
    free(out);
    nr_embedder_close(e);
    return cps;
}

static void ingest(const char *model, char **texts, int n)
{
    struct nr_gpu_device d0, d1;
    struct nr_embedder_info info;
    struct nr_embedder *e;
    float *out = malloc((size_t)n * 384 * sizeof *out);
    double t0, dt;
    nr_gpu_query(0, &d0);
    e = open_gpu(model, 16384);
    if (!e || !out)
        goto out;
    nr_gpu_query(0, &d1);
    t0 = now_ms();
    if (nr_embedder_embed(e, (const char *const *)texts, NULL, n, out))
        fprintf(stderr, "bench_gpu_embed: %s\n", nr_err_msg());
    dt = now_ms() - t0;
    nr_embedder_info(e, &info);
    printf("ingest %d chunks x 128 tokens (budget 16384): %.1f ms wall, %.0f chunks/s; "
           "encoder holds %.1f MiB on the GPU (weights %.1f); device free memory fell by "
           "%.1f MiB at open (CUDA context + cuBLASLt included)\n",
           n, dt, n / (dt / 1e3), info.gpu_bytes / 1048576.0, info.weight_bytes / 1048576.0,
           ((double)d0.free_mem - (double)d1.free_mem) / 1048576.0);
out:
    free(out);
    nr_embedder_close(e);
}

/* Exact search on the GPU over n random unit rows of 384: latency of one
 * query and per query in a batch of 64 (k = 10). */
static void index_search(int64_t n)
{
    struct nr_gpu_index *gx = NULL;
    const int dim = 384, chunk = 65536, nq = 64, k = 10;
    float *v = malloc((size_t)chunk * dim * sizeof *v), *q = malloc((size_t)nq * dim * sizeof *q);
    int64_t *ids = malloc(chunk * sizeof *ids);
    struct nr_index_hit *hits = malloc((size_t)nq * k * sizeof *hits);
    int nh[64];
    double lat[50], t0;
    uint64_t x = 88172645463325252ull;
    if (!v || !q || !ids || !hits || nr_gpu_index_new(dim, n, 0, 0, &gx)) {
        fprintf(stderr, "bench_gpu_embed: index: %s\n", nr_err_msg());
        goto out;
    }
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        int m = n - r0 < chunk ? (int)(n - r0) : chunk;
        for (size_t i = 0; i < (size_t)m * dim; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
        }
        for (int i = 0; i < m; i++)
            ids[i] = r0 + i;
        if (nr_gpu_index_add(gx, ids, ids, NULL, v, m))
            goto out;
    }
    memcpy(q, v, (size_t)nq * dim * sizeof *q);
    for (int rep = 0; rep < 2; rep++) {
        int b = rep ? nq : 1, runs = 50;
        nr_gpu_index_search(gx, q, b, k, NULL, hits, nh);
        for (int i = 0; i < runs; i++) {
            t0 = now_ms();
            nr_gpu_index_search(gx, q, b, k, NULL, hits, nh);
            lat[i] = now_ms() - t0;
        }
        qsort(lat, (size_t)runs, sizeof lat[0], cmp);
        printf("gpu index %lld rows x %d: %d quer%s, k %d: p50 %.3f ms (%.1f GB/s of rows)\n",
               (long long)n, dim, b, b > 1 ? "ies" : "y", k, lat[runs / 2],
               (double)n * dim * 4 / (lat[runs / 2] * 1e6));
    }
out:
    nr_gpu_index_free(gx);
    free(v);
    free(q);
    free(ids);
    free(hits);
}

int main(int argc, char **argv)
{
    const char *model = "models/all-MiniLM-L6-v2/model-f16.gguf";
    int queries = 2000, batches = 20, profile = 0;
    static const int sizes[] = {64, 128, 256, 512, 1024, 2048};
    struct nr_bert *meta = NULL;
    struct nr_gpu_bert *g = NULL;
    struct nr_gpu_device dev;
    int drv, rt, cub, n_ing = 10000;
    char **texts;
    double best = 0;
    int best_bs = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc) {
            if (nr_parse_int(argv[++i], 10, 1000000, "--queries", &queries))
                return 2;
        } else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            if (nr_parse_int(argv[++i], 1, 100000, "--batches", &batches))
                return 2;
        } else if (!strcmp(argv[i], "--profile"))
            profile = 1;
        else {
            fprintf(stderr, "usage: bench_gpu_embed [--model PATH] [--queries N] [--batches N] "
                            "[--profile]\n");
            return 2;
        }
    }
    if (nr_gpu_count(NULL) < 1 || nr_gpu_query(0, &dev)) {
        fprintf(stderr, "bench_gpu_embed: no CUDA device\n");
        return 1;
    }
    if (nr_bert_open_meta(model, 256, &meta)) {
        fprintf(stderr, "bench_gpu_embed: %s\n", nr_err_msg());
        return 1;
    }
    if (profile) {
        encoder_throughput(meta, 128, 1, 1, 1);
        nr_bert_close(meta);
        return 0;
    }
    nr_gpu_versions(&drv, &rt, &cub);
    printf("== %s (sm_%d%d, %d SMs, %zu MiB), CUDA driver %d runtime %d, cuBLAS %d\n", dev.name,
           dev.cc_major, dev.cc_minor, dev.multiprocessors, dev.total_mem >> 20, drv, rt, cub);
    printf("   model %s, %.2f GFLOP per 128-token chunk\n", model,
           seq_flops(nr_bert_config(meta), 128) / 1e9);

    query_latency(model, queries);
    if (nr_gpu_bert_open(meta, 0, 4096, &g) == NR_OK) {
        query_encoder(meta, g, 1, queries);
        query_encoder(meta, g, 0, queries);
        nr_gpu_bert_close(g);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        double c = encoder_throughput(meta, sizes[i], batches, 0, 1);
        if (c > best) {
            best = c;
            best_bs = sizes[i];
        }
    }
    encoder_throughput(meta, 1024, batches, 0, 0); /* the plain attention kernel, for scale */
    texts = calloc((size_t)n_ing, sizeof *texts);
    for (int i = 0; i < n_ing && texts; i++)
        texts[i] = make_text(i, 126);
    if (texts) {
        double best_e2e = 0;
        int best_e2e_bs = 0;
        for (size_t i = 2; i < sizeof sizes / sizeof sizes[0]; i++) {
            double c = end_to_end_throughput(model, texts, 8192, sizes[i], 3, nr_bert_config(meta));
            if (c > best_e2e) {
                best_e2e = c;
                best_e2e_bs = sizes[i];
            }
        }
        printf("best end to end: %.0f chunks/s at %d chunks per batch\n", best_e2e, best_e2e_bs);
        ingest(model, texts, n_ing);
        for (int i = 0; i < n_ing; i++)
            free(texts[i]);
        free(texts);
    }
    index_search(100000);
    index_search(1000000);
    printf("best encoder: %.0f chunks/s at batch %d = %.1f TFLOP/s (%.1f %% of 989 dense fp16)\n",
           best, best_bs, best * seq_flops(nr_bert_config(meta), 128) / 1e12,
           100.0 * best * seq_flops(nr_bert_config(meta), 128) / 989e12);
    nr_bert_close(meta);
    return 0;
}
