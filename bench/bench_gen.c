/*
 * bench_gen — decoder speed: prefill tokens/s of a 512-token prompt and
 * decode tokens/s over 128 tokens, peak RSS, and the memory bandwidth decode
 * reaches (bytes of weights read per token × tokens/s), beside the machine's
 * bandwidth measured by a streaming read on the same threads.
 *
 *     bench_gen [-t THREADS] [-p PROMPT] [-n DECODE] [-r REPEATS] MODEL.gguf
 *
 * Token ids are fixed pseudo-random ids below n_vocab (speed does not depend
 * on them); decode feeds back the argmax. Each figure is the best of
 * REPEATS runs (default 2) on a fresh sequence. Bytes per decode token count
 * every matrix of every layer plus the output projection (the embedding row
 * lookup is negligible); norms are ignored.
 */
#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_llama.h"
#include "nr_pool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Bytes a decode step reads: everything but token_embd, unless it is the (tied) output. */
static double bytes_per_token(const char *path)
{
    struct nr_gguf *g;
    double b = 0;
    int tied;
    if (nr_gguf_open(path, &g))
        return 0;
    tied = nr_gguf_find_tensor(g, "output.weight") == NULL;
    for (int i = 0; i < nr_gguf_n_tensors(g); i++) {
        const struct nr_gguf_tensor *t = nr_gguf_tensor(g, i);
        if (t->ndim < 2 || (!tied && strcmp(t->name, "token_embd.weight") == 0))
            continue;
        b += (double)t->nbytes;
    }
    nr_gguf_close(g);
    return b;
}

/* Streaming read bandwidth: sum of a 1 GiB buffer, split over the pool. */
struct bw_ctx {
    const uint64_t *p;
    size_t n; /* words */
    int tasks;
    uint64_t sum[256];
};

static void bw_task(void *vctx, int task, int worker)
{
    struct bw_ctx *c = vctx;
    size_t lo = c->n * (size_t)task / (size_t)c->tasks, hi = c->n * (size_t)(task + 1) / c->tasks;
    uint64_t a = 0, b = 0, d = 0, e = 0;
    for (size_t i = lo; i + 4 <= hi; i += 4) {
        a += c->p[i];
        b += c->p[i + 1];
        d += c->p[i + 2];
        e += c->p[i + 3];
    }
    c->sum[worker & 255] += a + b + d + e;
}

static double stream_bw(int threads)
{
    size_t bytes = (size_t)1 << 30;
    struct nr_pool *pool = nr_pool_new(threads);
    struct bw_ctx c;
    double best = 0;
    uint64_t *p = malloc(bytes);
    if (!p || !pool) {
        free(p);
        nr_pool_free(pool);
        return 0;
    }
    memset(p, 1, bytes);
    memset(&c, 0, sizeof c);
    c.p = p;
    c.n = bytes / 8;
    c.tasks = nr_pool_threads(pool) * 8;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        nr_pool_run(pool, c.tasks, bw_task, &c);
        double dt = now() - t0;
        if (bytes / dt > best)
            best = (double)bytes / dt;
    }
    if (c.sum[0] == 42)
        printf(" ");
    free(p);
    nr_pool_free(pool);
    return best;
}

int main(int argc, char **argv)
{
    int threads = 2, n_prompt = 512, n_gen = 128, repeats = 2, rc;
    const char *path = NULL;
    struct nr_llama_opts o;
    struct nr_llama *m = NULL;
    const struct nr_llama_info *inf;
    double best_pf = 1e30, best_dec = 1e30, bpt, bw;
    float *logits;
    int32_t *ids;
    struct rusage ru;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            threads = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc)
            n_prompt = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n_gen = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            repeats = (int)strtol(argv[++i], NULL, 10);
        else
            path = argv[i];
    }
    if (!path || threads < 1 || n_prompt < 1 || n_prompt > 65536 || n_gen < 1 || n_gen > 65536 ||
        repeats < 1 || repeats > 100) {
        fprintf(stderr, "usage: bench_gen [-t THREADS] [-p PROMPT] [-n DECODE] [-r REPEATS] "
                        "MODEL.gguf\n");
        return 2;
    }
    nr_llama_opts_default(&o);
    o.threads = threads;
    if ((rc = nr_llama_open(path, &o, &m))) {
        fprintf(stderr, "bench_gen: %s\n", nr_err_msg());
        return 1;
    }
    inf = nr_llama_info(m);
    logits = malloc(sizeof(float) * inf->n_vocab);
    ids = malloc(sizeof(int32_t) * n_prompt);
    if (!logits || !ids)
        return 1;
    {
        uint64_t s = 12345;
        for (int i = 0; i < n_prompt; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((s >> 33) % (uint64_t)inf->n_vocab);
        }
    }
    for (int r = 0; r < repeats; r++) {
        struct nr_llama_seq *s = NULL;
        double t0, t1;
        if ((rc = nr_llama_seq_new(m, n_prompt + n_gen + 1, &s))) {
            fprintf(stderr, "bench_gen: %s\n", nr_err_msg());
            return 1;
        }
        t0 = now();
        rc = nr_llama_eval(m, s, ids, n_prompt, logits);
        t1 = now();
        if (t1 - t0 < best_pf)
            best_pf = t1 - t0;
        for (int i = 0; i < n_gen && rc == NR_OK; i++) {
            int32_t next = 0;
            for (int v = 1; v < inf->n_vocab; v++)
                if (logits[v] > logits[next])
                    next = v;
            rc = nr_llama_eval(m, s, &next, 1, logits);
        }
        if (now() - t1 < best_dec)
            best_dec = now() - t1;
        nr_llama_seq_free(s);
        if (rc) {
            fprintf(stderr, "bench_gen: %s\n", nr_err_msg());
            return 1;
        }
    }
    bpt = bytes_per_token(path);
    getrusage(RUSAGE_SELF, &ru); /* before the 1 GiB bandwidth buffer */
    bw = stream_bw(threads);
    {
        double dec_tps = n_gen / best_dec, gbs = bpt * dec_tps / 1e9;
        printf("%s (%s, %s, %d layers, n_embd %d, vocab %d), %d threads, kernels %s\n", inf->name,
               inf->arch, inf->file_type, inf->n_layer, inf->n_embd, inf->n_vocab, threads,
               inf->kernel);
        printf("  prefill %d tokens: %.1f tokens/s\n", n_prompt, n_prompt / best_pf);
        printf("  decode %d tokens: %.2f tokens/s; %.1f MB weights/token -> %.2f GB/s "
               "= %.0f %% of %.2f GB/s streaming read\n",
               n_gen, dec_tps, bpt / 1e6, gbs, bw > 0 ? 100 * gbs * 1e9 / bw : 0, bw / 1e9);
        printf("  peak RSS %.0f MB\n", (double)ru.ru_maxrss / 1024.0);
    }
    nr_llama_close(m);
    free(logits);
    free(ids);
    return 0;
}
