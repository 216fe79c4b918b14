/*
 * bench_kern: GFLOP/s of the linear layers of all-MiniLM-L6-v2 for every
 * kernel variant this CPU runs, on 1 and 2 threads, against the measured
 * FMA peak of one core.
 *
 *   bench_kern [-r reps] [-v variant] [-q]
 *
 * Shapes (m = rows of activations):
 *   m = 4096 (a batch of 32 x 128 tokens):  QKV 1152x384, attention output
 *   384x384 (+residual), FFN1 1536x384 (+GELU), FFN2 384x1536 (+residual);
 *   m = 12 (a 12-token query), the same four layers;
 *   attention for one sequence (12 heads x 32, L = 128 and 12).
 * Each figure is the best of `reps` runs (default 5) after one warm-up: the
 * machine is shared, so the best run is the one least disturbed. FLOPs count
 * 2·m·n·k per linear (epilogue not counted) and 4·L²·hidden for attention.
 *
 * Peak: a loop of independent FMAs (12 accumulators, enough to cover
 * latency x throughput on current cores) on zmm, ymm or NEON q registers.
 */
#define _GNU_SOURCE
#include "nr_err.h"
#include "nr_kern.h"
#include "nr_str.h"
#include "nr_mem.h"
#include "nr_pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float sink;
#define PEAK_ITERS 20000000L

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double peak_avx512(void)
{
    __m512 a[12], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    double t0, t;
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i);
    t0 = now();
    for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm512_fmadd_ps(a[i], x, y);
    }
    t = now() - t0;
    for (int i = 1; i < 12; i++)
        a[0] = _mm512_add_ps(a[0], a[i]);
    sink = _mm512_reduce_add_ps(a[0]);
    return 12.0 * 16 * 2 * PEAK_ITERS / t * 1e-9;
}

__attribute__((target("avx2,fma"))) static double peak_avx2(void)
{
    __m256 a[12], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    double t0, t;
    float out[8];
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    t0 = now();
    for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], x, y);
    }
    t = now() - t0;
    for (int i = 1; i < 12; i++)
        a[0] = _mm256_add_ps(a[0], a[i]);
    _mm256_storeu_ps(out, a[0]);
    sink = out[0];
    return 12.0 * 8 * 2 * PEAK_ITERS / t * 1e-9;
}
#endif

#if defined(__aarch64__)
static double peak_neon(void)
{
    float32x4_t a[12], x = vdupq_n_f32(0.999999f), y = vdupq_n_f32(1e-7f);
    double t0, t;
    for (int i = 0; i < 12; i++)
        a[i] = vdupq_n_f32((float)i);
    t0 = now();
    for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = vfmaq_f32(y, a[i], x);
    }
    t = now() - t0;
    for (int i = 1; i < 12; i++)
        a[0] = vaddq_f32(a[0], a[i]);
    sink = vaddvq_f32(a[0]);
    return 12.0 * 4 * 2 * PEAK_ITERS / t * 1e-9;
}
#endif

struct shape {
    const char *name;
    int m, n, k, act, acc;
};

static const struct shape shapes[] = {
    {"qkv      4096x1152x384", 4096, 1152, 384, NR_ACT_NONE, 0},
    {"attn-out 4096x384x384+r", 4096, 384, 384, NR_ACT_NONE, 1},
    {"ffn1     4096x1536x384+gelu", 4096, 1536, 384, NR_ACT_GELU, 0},
    {"ffn2     4096x384x1536+r", 4096, 384, 1536, NR_ACT_NONE, 1},
    {"qkv      12x1152x384", 12, 1152, 384, NR_ACT_NONE, 0},
    {"attn-out 12x384x384+r", 12, 384, 384, NR_ACT_NONE, 1},
    {"ffn1     12x1536x384+gelu", 12, 1536, 384, NR_ACT_GELU, 0},
    {"ffn2     12x384x1536+r", 12, 384, 1536, NR_ACT_NONE, 1},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static float *randbuf(size_t n, float scale)
{
    float *p = nr_aligned_alloc(64, n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_kern: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = scale * ((float)rand() / (float)RAND_MAX - 0.5f);
    return p;
}

/* Best seconds per call of nr_kern_linear over reps runs. */
static double time_linear(struct nr_pool *pool, const struct shape *s, const struct nr_pw *pw,
                          const float *A, const float *bias, float *C, int reps)
{
    double best = 1e30;
    /* small shapes: many calls per timing so the clock resolution does not matter */
    int inner = s->m < 64 ? 200 : 1;
    nr_kern_linear(pool, A, s->k, pw, bias, C, s->n, s->m, s->act, s->acc);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < inner; i++)
            nr_kern_linear(pool, A, s->k, pw, bias, C, s->n, s->m, s->act, s->acc);
        double t = (now() - t0) / inner;
        if (t < best)
            best = t;
    }
    return best;
}

struct attn_job {
    const struct nr_kern_ops *ops;
    const float *qkv;
    float *out;
    int L;
};

static void attn_task(void *ctx, int task, int worker)
{
    struct attn_job *j = ctx;
    float scratch[512];
    (void)worker;
    nr_kern_attention(j->ops, j->qkv, 3 * 384, j->L, 12, 32, task * 3, task * 3 + 3,
                      1.0f / sqrtf(32.0f), j->out, 384, scratch);
}

static double time_attention(struct nr_pool *pool, const struct nr_kern_ops *ops, int L, int reps)
{
    float *qkv = randbuf((size_t)L * 3 * 384, 4.0f), *out = randbuf((size_t)L * 384, 1.0f);
    struct attn_job j = {ops, qkv, out, L};
    double best = 1e30;
    int inner = L < 64 ? 200 : 10;
    nr_pool_run(pool, 4, attn_task, &j);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < inner; i++)
            nr_pool_run(pool, 4, attn_task, &j);
        double t = (now() - t0) / inner;
        if (t < best)
            best = t;
    }
    nr_free(qkv);
    nr_free(out);
    return best;
}

/*
 * A 12-token query through 6 encoder layers with their own weights (42 MiB
 * of fp32, more than the 32 MiB L3, so they stream from DRAM as in a real
 * query): QKV, attention, output + residual, layernorm, FFN1 + GELU,
 * FFN2 + residual, layernorm. Embedding lookup and pooling are not included.
 * Returns the best of reps, in seconds.
 */
#define QL 12
static double time_query(struct nr_pool *pool, const struct nr_kern_ops *ops, int reps)
{
    struct nr_pw w[6][4];
    static const int nk[4][2] = {{1152, 384}, {384, 384}, {1536, 384}, {384, 1536}};
    float *b = randbuf(1536, 0.1f), *g = randbuf(384, 0.1f);
    float *x = randbuf(QL * 384, 1.0f), *qkv = randbuf(QL * 1152, 1.0f);
    float *att = randbuf(QL * 384, 1.0f), *h = randbuf(QL * 1536, 1.0f);
    double best = 1e30;

    for (int l = 0; l < 6; l++)
        for (int i = 0; i < 4; i++) {
            float *wt = randbuf((size_t)nk[i][0] * nk[i][1], 0.1f);
            if (nr_kern_pack(ops, &w[l][i], wt, nk[i][0], nk[i][1]) < 0)
                exit(2);
            nr_free(wt);
        }
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        for (int l = 0; l < 6; l++) {
            struct attn_job j = {ops, qkv, att, QL};
            nr_kern_linear(pool, x, 384, &w[l][0], b, qkv, 1152, QL, NR_ACT_NONE, 0);
            nr_pool_run(pool, 4, attn_task, &j);
            nr_kern_linear(pool, att, 384, &w[l][1], b, x, 384, QL, NR_ACT_NONE, 1);
            ops->layernorm(x, QL, 384, g, b, 1e-12f);
            nr_kern_linear(pool, x, 384, &w[l][2], b, h, 1536, QL, NR_ACT_GELU, 0);
            nr_kern_linear(pool, h, 1536, &w[l][3], b, x, 384, QL, NR_ACT_NONE, 1);
            ops->layernorm(x, QL, 384, g, b, 1e-12f);
        }
        double t = now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    for (int l = 0; l < 6; l++)
        for (int i = 0; i < 4; i++)
            nr_kern_pw_free(&w[l][i]);
    nr_free(b), nr_free(g), nr_free(x), nr_free(qkv), nr_free(att), nr_free(h);
    return best;
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int reps = 5, quick = 0;
    static const char *const names[] = {"avx512", "avx2", "neon", "scalar"};
    double peak = 0;
    const char *peak_what = "none";
    struct nr_pool *pool1 = nr_pool_new(1), *pool2 = nr_pool_new(2);

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            if (nr_parse_int(argv[++i], 1, 1000, "-r", &reps)) {
                fprintf(stderr, "bench_kern: %s\n", nr_err_msg());
                return 2;
            }
        } else if (!strcmp(argv[i], "-v") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "-q"))
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [-r reps] [-v variant] [-q]\n", argv[0]);
            return 2;
        }
    }
    if (!pool1 || !pool2 || reps < 1)
        return 2;

    printf("cpu features: %s\n", nr_kern_cpu_features());
#if defined(__x86_64__)
    if (nr_kern_by_name("avx512")) {
        double p512 = 0, p256 = 0;
        for (int r = 0; r < 3; r++) {
            double a = peak_avx512(), b = peak_avx2();
            p512 = a > p512 ? a : p512;
            p256 = b > p256 ? b : p256;
        }
        printf("FMA peak, 1 core: zmm %.1f GFLOP/s, ymm %.1f GFLOP/s\n", p512, p256);
        peak = p512 > p256 ? p512 : p256;
        peak_what = p512 > p256 ? "zmm" : "ymm";
    } else if (nr_kern_by_name("avx2")) {
        peak = peak_avx2();
        peak_what = "ymm";
        printf("FMA peak, 1 core: ymm %.1f GFLOP/s\n", peak);
    }
#elif defined(__aarch64__)
    peak = peak_neon();
    peak_what = "neon";
    printf("FMA peak, 1 core: neon %.1f GFLOP/s\n", peak);
#endif
    printf("%% of peak: 1 thread vs one core's %s peak, 2 threads vs twice it. best of %d runs\n\n",
           peak_what, reps);
    printf("%-8s %-28s %10s %7s %10s %7s %10s\n", "variant", "shape", "1T GF/s", "%peak", "2T GF/s",
           "%peak", "2T us/call");

    for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
        const struct nr_kern_ops *ops = nr_kern_by_name(names[v]);
        double query_us = 0;
        if (!ops || (only && strcmp(only, names[v])))
            continue;
        for (int s = 0; s < NSHAPES; s++) {
            const struct shape *sh = &shapes[s];
            struct nr_pw pw;
            float *W = randbuf((size_t)sh->n * sh->k, 0.1f),
                  *A = randbuf((size_t)sh->m * sh->k, 2.0f);
            float *bias = randbuf((size_t)sh->n, 0.2f), *C = randbuf((size_t)sh->m * sh->n, 1.0f);
            double flop = 2.0 * sh->m * sh->n * sh->k, t1, t2;
            int r = !strcmp(ops->name, "scalar") && sh->m > 64 ? 1 : reps;

            if (quick && sh->m > 64 && !strcmp(ops->name, "scalar")) {
                nr_free(W), nr_free(A), nr_free(bias), nr_free(C);
                continue;
            }
            if (nr_kern_pack(ops, &pw, W, sh->n, sh->k) < 0)
                return 2;
            t1 = time_linear(pool1, sh, &pw, A, bias, C, r);
            t2 = time_linear(pool2, sh, &pw, A, bias, C, r);
            printf("%-8s %-28s %10.1f %6.0f%% %10.1f %6.0f%% %10.1f\n", ops->name, sh->name,
                   flop / t1 * 1e-9, 100.0 * flop / t1 * 1e-9 / peak, flop / t2 * 1e-9,
                   100.0 * flop / t2 * 1e-9 / (2 * peak), t2 * 1e6);
            if (sh->m == 12)
                query_us += t2 * 1e6;
            nr_kern_pw_free(&pw);
            nr_free(W), nr_free(A), nr_free(bias), nr_free(C);
        }
        for (int L = 128; L >= 12; L = L == 128 ? 12 : 0) {
            double fl = 4.0 * L * L * 384, t1 = time_attention(pool1, ops, L, reps),
                   t2 = time_attention(pool2, ops, L, reps);
            printf("%-8s attention L=%-3d 12x32 heads    %10.1f %6.0f%% %10.1f %6.0f%% %10.1f\n",
                   ops->name, L, fl / t1 * 1e-9, 100.0 * fl / t1 * 1e-9 / peak, fl / t2 * 1e-9,
                   100.0 * fl / t2 * 1e-9 / (2 * peak), t2 * 1e6);
            if (L == 12)
                query_us += t2 * 1e6;
        }
        printf("%-8s 12-token query, 6 layers, weights hot in cache (sum of the rows above): "
               "%.2f ms\n",
               ops->name, 6 * query_us * 1e-3);
        printf("%-8s 12-token query, 6 layers, 42 MiB of weights from DRAM: 1T %.2f ms, "
               "2T %.2f ms\n\n",
               ops->name, time_query(pool1, ops, reps) * 1e3, time_query(pool2, ops, reps) * 1e3);
    }
    nr_pool_free(pool1);
    nr_pool_free(pool2);
    return 0;
}
