/*
 * bench_quant: how close the quantized matvec (decode's hot loop) gets to
 * the machine's memory bandwidth.
 *
 *   bench_quant [-r reps] [-t types] [-q]
 *
 *   1. Streaming read bandwidth: sum a 1 GiB buffer (64-bit adds, 4 vector
 *      accumulators) with 1 and 2 threads, each thread reading one
 *      contiguous part: the best whole pass of `reps`, and the best 64 MiB
 *      window (see bandwidth()).
 *   2. nr_quant_matvec per weight type on 8192 x 2048 (Llama-3.2-1B's FFN
 *      gate/up shape) with 1 and 2 threads: weight GB/s of the best call
 *      and of the best sweep, as fractions of the best window and the best
 *      whole pass of (1) with the same threads. The weights cycle through
 *      enough copies of the matrix to span >= 512 MiB, so every call
 *      streams from DRAM as decode does (a model does not fit in L3).
 *   2b. The kernel's own speed: matvec on 1 thread over a matrix of
 *      <= 512 KiB (k = 2048) that stays in L2, best of 300 calls: the GB/s
 *      the dot kernel could consume if memory were infinitely fast. Short
 *      calls make the best-of figure robust on a shared machine.
 *   3. nr_quant_matmul with m = 64 activation rows (prefill) on 2048 x 2048:
 *      time per activation row against one matvec of the same matrix.
 *   4. A Llama-3.2-1B-shaped decode step (Q4_K_M: Q4_K everywhere except
 *      attn_v and ffn_down in Q6_K; 16 layers of q, k, v, o 2048/512 x 2048,
 *      gate/up 8192 x 2048, down 2048 x 8192, and the 128256 x 2048 Q6_K
 *      output): weight bytes per token / time, tokens/s of the matvecs
 *      alone, and the fraction of (1).
 *
 * Each figure is the best of `reps` runs (default 5) after a warm-up: the
 * machine may be shared, and the best run is the least disturbed.
 * The variant is nr_quant's choice (NANORAG_KERN=avx2|scalar|... forces one).
 */
#define _GNU_SOURCE
#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_quant.h"
#include "nr_str.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 42;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float nrand(void)
{
    float s = 0.0f;
    for (int i = 0; i < 4; i++)
        s += (float)((double)(rng_next() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    return s * 0.8660254f;
}

/* ------------------------------------------------------------ bandwidth */

typedef uint64_t v2u64 __attribute__((vector_size(16)));

struct bw_ctx {
    const uint8_t *buf;
    size_t bytes;
    int parts;
    uint64_t sums[64];
};

static void bw_task(void *arg, int task, int worker)
{
    struct bw_ctx *c = arg;
    size_t per = c->bytes / (size_t)c->parts / 64 * 64;
    const v2u64 *p = (const v2u64 *)(c->buf + per * (size_t)task);
    v2u64 a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
    for (size_t i = 0; i < per / 16; i += 4) {
        a0 += p[i];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
    }
    a0 += a1 + a2 + a3;
    c->sums[task] = a0[0] + a0[1];
}

/*
 * Whole passes over the 1 GiB (the mean a long stream gets) and the best
 * 64 MiB window (twice the L3, each window read after the 15 others): on a
 * shared machine a window is short enough to run undisturbed, which is the
 * figure the per-call matvec times below compare with.
 */
static void bandwidth(struct nr_pool *pool, const uint8_t *buf, size_t bytes, int reps,
                      double *whole, double *window)
{
    const size_t win = (size_t)64 << 20;
    struct bw_ctx c = {.buf = buf, .bytes = bytes, .parts = nr_pool_threads(pool)};
    *whole = *window = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        nr_pool_run(pool, c.parts, bw_task, &c);
        double gbs = (double)(bytes / (size_t)c.parts / 64 * 64) * c.parts / (now() - t0) * 1e-9;
        if (r > 0 && gbs > *whole) /* pass 0 is the warm-up */
            *whole = gbs;
    }
    for (int r = 0; r < reps; r++) {
        for (size_t off = 0; off + win <= bytes; off += win) {
            struct bw_ctx w = {.buf = buf + off, .bytes = win, .parts = c.parts};
            double t0 = now();
            nr_pool_run(pool, w.parts, bw_task, &w);
            double gbs = (double)(win / (size_t)w.parts / 64 * 64) * w.parts / (now() - t0) * 1e-9;
            if (gbs > *window)
                *window = gbs;
        }
    }
}

/* ------------------------------------------------------------ weights */

/* n x k of `type`, copies so that the set spans >= span bytes; NULL on OOM. */
struct wset {
    int type, n, k, copies;
    size_t row_bytes, mat_bytes;
    uint8_t *data;
};

static int wset_make(struct wset *s, int type, int n, int k, size_t span)
{
    float *row = nr_malloc((size_t)k * sizeof *row);
    s->type = type;
    s->n = n;
    s->k = k;
    s->row_bytes = nr_quant_row_bytes(type, k);
    s->mat_bytes = s->row_bytes * (size_t)n;
    s->copies = (int)((span + s->mat_bytes - 1) / s->mat_bytes);
    if (s->copies < 1)
        s->copies = 1;
    s->data = nr_aligned_alloc(64, s->mat_bytes * (size_t)s->copies);
    if (!row || !s->data) {
        nr_free(row);
        nr_free(s->data);
        return NR_ENOMEM;
    }
    /* 64 distinct quantized rows, repeated: quantizing 512 MiB would take longer than the bench */
    for (int r = 0; r < n; r++) {
        if (r < 64) {
            for (int i = 0; i < k; i++)
                row[i] = nrand() * 0.05f;
            nr_quant_quantize_row(type, row, s->data + (size_t)r * s->row_bytes, k);
        } else {
            memcpy(s->data + (size_t)r * s->row_bytes, s->data + (size_t)(r % 64) * s->row_bytes,
                   s->row_bytes);
        }
    }
    for (int c = 1; c < s->copies; c++)
        memcpy(s->data + (size_t)c * s->mat_bytes, s->data, s->mat_bytes);
    nr_free(row);
    return NR_OK;
}

static void *act_make(int type, int k, int m)
{
    size_t ab = nr_quant_act_bytes(type, k);
    uint8_t *xq = nr_aligned_alloc(64, ab * (size_t)m);
    float *x = nr_malloc((size_t)k * sizeof *x);
    if (!xq || !x) {
        nr_free(xq);
        nr_free(x);
        return NULL;
    }
    for (int i = 0; i < m; i++) {
        for (int t = 0; t < k; t++)
            x[t] = nrand();
        nr_quant_act(type, x, k, xq + (size_t)i * ab);
    }
    nr_free(x);
    return xq;
}

/*
 * Seconds per matvec: the best sweep's mean over all copies (*mean), and
 * the best single call (returned; comparable with the best bandwidth
 * window on a shared machine). Each call reads a copy last read >= 512 MiB
 * ago, so it streams from DRAM either way.
 */
static double time_matvec(struct nr_pool *pool, const struct wset *s, const void *xq, float *y,
                          int reps, double *mean)
{
    double best = 1e30;
    *mean = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now(), tc = t0;
        for (int c = 0; c < s->copies; c++) {
            struct nr_qmat W = {s->type, s->n, s->k, s->row_bytes,
                                s->data + (size_t)c * s->mat_bytes};
            nr_quant_matvec(pool, &W, xq, y);
            double t1 = now();
            if (r > 0 && t1 - tc < best)
                best = t1 - tc;
            tc = t1;
        }
        double t = (now() - t0) / s->copies;
        if (r > 0 && t < *mean)
            *mean = t;
    }
    return best;
}

/* ------------------------------------------------------------ the 1B-shaped step */

struct layer_shape {
    int n, k, type;
};

static int decode_step(struct nr_pool *const pools[2], const double bw[2], int reps)
{
    /* One layer of Llama-3.2-1B (Q4_K_M mix), then the output matrix. */
    static const struct layer_shape shapes[] = {
        {2048, 2048, NR_GGML_Q4_K}, /* q */
        {512, 2048, NR_GGML_Q4_K},  /* k */
        {512, 2048, NR_GGML_Q6_K},  /* v */
        {2048, 2048, NR_GGML_Q4_K}, /* o */
        {8192, 2048, NR_GGML_Q4_K}, /* gate */
        {8192, 2048, NR_GGML_Q4_K}, /* up */
        {2048, 8192, NR_GGML_Q6_K}, /* down */
    };
    enum { NS = sizeof shapes / sizeof shapes[0], LAYERS = 16, VOCAB = 128256 };
    struct wset ws[NS + 1];
    void *xq[NS + 1];
    float *y = nr_malloc((size_t)VOCAB * sizeof *y);
    size_t bytes = 0;
    int rc = NR_OK;

    memset(ws, 0, sizeof ws);
    memset(xq, 0, sizeof xq);
    for (int i = 0; i <= NS && rc == NR_OK; i++) {
        struct layer_shape sh =
            i < NS ? shapes[i] : (struct layer_shape){VOCAB, 2048, NR_GGML_Q6_K};
        /* every layer has its own weights: LAYERS copies (the output: one) */
        rc = wset_make(&ws[i], sh.type, sh.n, sh.k, 0);
        if (rc == NR_OK && i < NS) {
            uint8_t *more = nr_aligned_alloc(64, ws[i].mat_bytes * LAYERS);
            if (!more) {
                rc = NR_ENOMEM;
                break;
            }
            for (int l = 0; l < LAYERS; l++)
                memcpy(more + (size_t)l * ws[i].mat_bytes, ws[i].data, ws[i].mat_bytes);
            nr_free(ws[i].data);
            ws[i].data = more;
            ws[i].copies = LAYERS;
        }
        if (rc == NR_OK)
            xq[i] = act_make(sh.type, sh.k, 1);
        if (rc == NR_OK && !xq[i])
            rc = NR_ENOMEM;
        if (rc == NR_OK)
            bytes += ws[i].mat_bytes * (size_t)ws[i].copies;
    }
    if (rc != NR_OK || !y) {
        fprintf(stderr, "bench_quant: out of memory for the 1B-shaped model\n");
        rc = NR_ENOMEM;
        goto done;
    }
    printf("\nLlama-3.2-1B-shaped decode step (Q4_K_M mix: Q4_K + Q6_K v/down/output), "
           "%.1f MB of weights per token\n",
           (double)bytes * 1e-6);
    for (int p = 0; p < 2; p++) {
        double best = 1e30;
        for (int r = 0; r <= reps; r++) {
            double t0 = now();
            for (int l = 0; l < LAYERS; l++)
                for (int i = 0; i < NS; i++) {
                    struct nr_qmat W = {ws[i].type, ws[i].n, ws[i].k, ws[i].row_bytes,
                                        ws[i].data + (size_t)l * ws[i].mat_bytes};
                    nr_quant_matvec(pools[p], &W, xq[i], y);
                }
            struct nr_qmat O = {ws[NS].type, ws[NS].n, ws[NS].k, ws[NS].row_bytes, ws[NS].data};
            nr_quant_matvec(pools[p], &O, xq[NS], y);
            double t = now() - t0;
            if (r > 0 && t < best)
                best = t;
        }
        double gbs = (double)bytes / best * 1e-9;
        printf("  %d thread%s: %.2f ms/token (%.1f tok/s of matvecs), %.2f GB/s = %.0f %% of "
               "the best whole-pass bandwidth\n",
               p + 1, p ? "s" : " ", best * 1e3, 1.0 / best, gbs, 100.0 * gbs / bw[p]);
    }
done:
    for (int i = 0; i <= NS; i++) {
        nr_free(ws[i].data);
        nr_free(xq[i]);
    }
    nr_free(y);
    return rc;
}

/* ------------------------------------------------------------ main */

/* 1 if `name` is one of the comma-separated names in list (NULL: all). */
static int wanted(const char *list, const char *name)
{
    size_t n = strlen(name);
    if (!list)
        return 1;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const int all[] = {NR_GGML_Q4_0, NR_GGML_Q4_1, NR_GGML_Q5_0, NR_GGML_Q8_0, NR_GGML_Q4_K,
                              NR_GGML_Q5_K, NR_GGML_Q6_K, NR_GGML_F16,  NR_GGML_BF16, NR_GGML_F32};
    int reps = 5, quick = 0;
    const char *only = NULL;
    struct nr_pool *pools[2] = {NULL, NULL};
    double bw[2], bw_whole[2], mv_sec[10][2] = {{0}}; /* section 2's seconds per matvec */
    size_t gib = (size_t)1 << 30;
    uint8_t *buf = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            if (nr_parse_int(argv[++i], 1, 1000, "-r", &reps)) {
                fprintf(stderr, "%s\n", nr_err_msg());
                return 2;
            }
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "-q")) {
            quick = 1;
        } else {
            fprintf(stderr,
                    "usage: %s [-r reps] [-t q4_k,q6_k,...] [-q]\n"
                    "  -q  skip the 1B-shaped decode step\n",
                    argv[0]);
            return 2;
        }
    }
    pools[0] = nr_pool_new(1);
    pools[1] = nr_pool_new(2);
    buf = nr_aligned_alloc(64, gib);
    if (!pools[0] || !pools[1] || !buf) {
        fprintf(stderr, "bench_quant: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < gib; i += 8)
        *(uint64_t *)(buf + i) = i;
    printf("quant variant: %s\n", nr_quant_variant());
    printf("streaming read bandwidth (sum of 1 GiB):\n");
    for (int p = 0; p < 2; p++) {
        bandwidth(pools[p], buf, gib, reps, &bw_whole[p], &bw[p]);
        printf("  %d thread%s: %.2f GB/s best 64 MiB window, %.2f GB/s best whole pass\n", p + 1,
               p ? "s" : " ", bw[p], bw_whole[p]);
    }
    nr_free(buf);
    buf = NULL;

    printf("\nmatvec 8192 x 2048, weights streamed from DRAM (>= 512 MiB of copies):\n");
    printf("  best call (bw%%: of the best window) and best sweep mean (of the best whole pass)\n");
    printf("  %-5s %7s | %8s %5s %8s %5s | %8s %5s %8s %5s\n", "type", "MB", "1t best", "bw%",
           "mean", "bw%", "2t best", "bw%", "mean", "bw%");
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        struct wset s;
        void *xq;
        float *y;
        if (!wanted(only, nr_quant_name(all[t])))
            continue;
        if (wset_make(&s, all[t], 8192, 2048, (size_t)512 << 20) != NR_OK) {
            fprintf(stderr, "bench_quant: out of memory\n");
            goto done;
        }
        xq = act_make(all[t], 2048, 1);
        y = nr_malloc(8192 * sizeof *y);
        if (!xq || !y) {
            nr_free(s.data);
            nr_free(xq);
            nr_free(y);
            goto done;
        }
        printf("  %-5s %7.2f |", nr_quant_name(all[t]), (double)s.mat_bytes * 1e-6);
        for (int p = 0; p < 2; p++) {
            double mean, sec = time_matvec(pools[p], &s, xq, y, reps, &mean);
            mv_sec[t][p] = mean;
            double gbs = (double)s.mat_bytes / sec * 1e-9, gbm = (double)s.mat_bytes / mean * 1e-9;
            printf(" %8.2f %4.0f%% %8.2f %4.0f%% %s", gbs, 100.0 * gbs / bw[p], gbm,
                   100.0 * gbm / bw_whole[p], p ? "" : "|");
        }
        printf("\n");
        fflush(stdout);
        nr_free(s.data);
        nr_free(xq);
        nr_free(y);
    }

    printf("\nkernel speed from L2 (1 thread, matrix <= 512 KiB, k = 2048, best of 300):\n");
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        struct wset s;
        int n;
        if (!wanted(only, nr_quant_name(all[t])))
            continue;
        n = (int)(((size_t)512 << 10) / nr_quant_row_bytes(all[t], 2048)) & ~15;
        if (wset_make(&s, all[t], n, 2048, 0) != NR_OK)
            goto done;
        void *xq = act_make(all[t], 2048, 1);
        float *y = nr_malloc((size_t)n * sizeof *y);
        struct nr_qmat W = {s.type, s.n, s.k, s.row_bytes, s.data};
        double best = 1e30;
        if (!xq || !y) {
            nr_free(s.data);
            nr_free(xq);
            nr_free(y);
            goto done;
        }
        for (int r = 0; r < 300; r++) {
            double t0 = now();
            nr_quant_matvec(NULL, &W, xq, y);
            double t1 = now() - t0;
            best = t1 < best ? t1 : best;
        }
        printf("  %-5s %7.2f GB/s  %6.2f Gelem/s\n", nr_quant_name(all[t]),
               (double)s.mat_bytes / best * 1e-9, (double)n * 2048 / best * 1e-9);
        nr_free(s.data);
        nr_free(xq);
        nr_free(y);
    }

    printf("\nmatmul (prefill) 2048 x 2048, m = 64 activation rows: GOP/s, and the time per\n"
           "activation row against matvecs from cache and streamed from DRAM (section 2):\n");
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        struct wset s;
        const int m = 64;
        if (!wanted(only, nr_quant_name(all[t])))
            continue;
        if (wset_make(&s, all[t], 2048, 2048, 0) != NR_OK)
            goto done;
        uint8_t *xq = act_make(all[t], 2048, m);
        float *C = nr_malloc((size_t)m * 2048 * sizeof *C);
        size_t ab = nr_quant_act_bytes(all[t], 2048);
        struct nr_qmat W = {s.type, s.n, s.k, s.row_bytes, s.data};
        if (!xq || !C) {
            nr_free(s.data);
            nr_free(xq);
            nr_free(C);
            goto done;
        }
        printf("  %-5s", nr_quant_name(all[t]));
        for (int p = 0; p < 2; p++) {
            double bmm = 1e30, bmv = 1e30;
            for (int r = 0; r <= reps; r++) {
                double t0 = now();
                nr_quant_matmul(pools[p], &W, xq, m, C, 2048);
                double t1 = now();
                for (int i = 0; i < m; i++)
                    nr_quant_matvec(pools[p], &W, xq + (size_t)i * ab, C + (size_t)i * 2048);
                double t2 = now();
                if (r > 0) {
                    bmm = t1 - t0 < bmm ? t1 - t0 : bmm;
                    bmv = t2 - t1 < bmv ? t2 - t1 : bmv;
                }
            }
            double gops = 2.0 * m * 2048.0 * 2048.0 / bmm * 1e-9;
            printf("  %dt: %6.1f GOP/s, %5.2fx cached", p + 1, gops, bmv / bmm);
            if (mv_sec[t][p] > 0)
                printf(" %5.1fx DRAM", mv_sec[t][p] * (2048.0 / 8192.0) / (bmm / m));
        }
        printf("\n");
        nr_free(s.data);
        nr_free(xq);
        nr_free(C);
    }
    if (!quick && decode_step(pools, bw_whole, reps) != NR_OK)
        goto done;
    rc = 0;
done:
    nr_free(buf);
    nr_pool_free(pools[0]);
    nr_pool_free(pools[1]);
    return rc;
}
