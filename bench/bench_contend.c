/*
 * bench_contend — the embedder and the generator working at the same time in
 * one process (what `nanorag serve` does under mixed load), with a worker
 * pool each (how the server ran before) and with one shared pool (how it runs
 * now), side by side in one run.
 *
 *     bench_contend [-t THREADS] [-n DECODE] [-r REPEATS] EMBED_MODEL LLM.gguf
 *
 * For each configuration: decode tokens/s alone, embed texts/s alone
 * (batches of 16 texts of ~60 tokens), then both at once — one thread
 * decodes DECODE tokens (default 128, after a 32-token prompt) while another
 * embeds batches until the decode ends. Each figure is the best of REPEATS
 * (default 3). THREADS (default: one per CPU) is the size of every pool.
 */
#include "bench_text.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_llama.h"
#include "nr_pool.h"
#include "nr_str.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 16

struct run {
    struct nr_llama *m;
    struct nr_embedder *e;
    const char *texts[BATCH];
    float *vec;   /* [BATCH][dim] */
    float *logit; /* [n_vocab] */
    int decode;
    atomic_int stop; /* the decoder is done: the embed loop ends */
    double dec_s, emb_s;
    long embedded;
    int rc;
};

static int decode(struct run *r)
{
    struct nr_llama_seq *s = NULL;
    int32_t ids[32], next;
    int V = nr_llama_info(r->m)->n_vocab, rc;
    double t0;
    for (int i = 0; i < 32; i++)
        ids[i] = (int32_t)((i * 2654435761u) % (unsigned)V);
    if ((rc = nr_llama_seq_new(r->m, 256, &s)) || (rc = nr_llama_eval(r->m, s, ids, 32, r->logit)))
        goto out;
    t0 = now_ms();
    for (int i = 0; i < r->decode && rc == NR_OK; i++) {
        next = 0;
        for (int j = 1; j < V; j++)
            if (r->logit[j] > r->logit[next])
                next = j;
        rc = nr_llama_eval(r->m, s, &next, 1, r->logit);
    }
    r->dec_s = (now_ms() - t0) / 1e3;
out:
    nr_llama_seq_free(s);
    return rc;
}

/* Embed batches until stop (or `batches` batches when stop is never set). */
static int embed(struct run *r, int batches)
{
    double t0 = now_ms();
    int rc = NR_OK;
    r->embedded = 0;
    for (int b = 0; rc == NR_OK && (batches ? b < batches : !atomic_load(&r->stop)); b++) {
        rc = nr_embedder_embed(r->e, r->texts, NULL, BATCH, r->vec);
        r->embedded += BATCH;
    }
    r->emb_s = (now_ms() - t0) / 1e3;
    return rc;
}

static void *embed_thread(void *arg)
{
    struct run *r = arg;
    int rc = embed(r, 0);
    if (rc)
        r->rc = rc;
    return NULL;
}

/* Alone and together for one configuration: tok/s and texts/s. */
static int measure(struct run *r, int repeats, double out[4])
{
    memset(out, 0, 4 * sizeof *out);
    for (int k = 0; k < repeats; k++) {
        pthread_t th;
        int rc;
        if ((rc = decode(r)))
            return rc;
        if (r->decode / r->dec_s > out[0])
            out[0] = r->decode / r->dec_s;
        if ((rc = embed(r, 24)))
            return rc;
        if (r->embedded / r->emb_s > out[1])
            out[1] = r->embedded / r->emb_s;
        atomic_store(&r->stop, 0);
        r->rc = NR_OK;
        if (pthread_create(&th, NULL, embed_thread, r))
            return nr_err_set(NR_EINTERNAL, "cannot start the embed thread");
        usleep(20000); /* the embedder is busy before the decode starts */
        rc = decode(r);
        atomic_store(&r->stop, 1);
        pthread_join(th, NULL);
        if (rc || (rc = r->rc))
            return rc;
        if (r->decode / r->dec_s > out[2])
            out[2] = r->decode / r->dec_s;
        if (r->embedded / r->emb_s > out[3])
            out[3] = r->embedded / r->emb_s;
    }
    return NR_OK;
}

int main(int argc, char **argv)
{
    int threads = 0, repeats = 3, c, rc = NR_OK;
    struct run r;
    double res[2][4];
    struct nr_pool *shared = NULL;

    memset(&r, 0, sizeof r);
    r.decode = 128;
    while ((c = getopt(argc, argv, "t:n:r:")) != -1) {
        if ((c == 't' && nr_parse_int(optarg, 1, 256, "-t", &threads)) ||
            (c == 'n' && nr_parse_int(optarg, 1, 200, "-n", &r.decode)) ||
            (c == 'r' && nr_parse_int(optarg, 1, 100, "-r", &repeats)) || c == '?') {
            fprintf(stderr, "usage: bench_contend [-t THREADS] [-n DECODE] [-r REPEATS] "
                            "EMBED_MODEL LLM.gguf\n");
            return 2;
        }
    }
    if (optind + 2 != argc) {
        fprintf(stderr, "usage: bench_contend [-t THREADS] [-n DECODE] [-r REPEATS] "
                        "EMBED_MODEL LLM.gguf\n");
        return 2;
    }
    for (int i = 0; i < BATCH; i++)
        r.texts[i] = make_text(i, 60);
    for (int cfg = 0; cfg < 2 && rc == NR_OK; cfg++) {
        struct nr_embed_opts eo;
        struct nr_llama_opts lo;
        if (cfg == 1 && !(shared = nr_pool_new(threads))) {
            rc = NR_ENOMEM;
            break;
        }
        nr_embed_opts_default(&eo);
        nr_llama_opts_default(&lo);
        eo.threads = lo.threads = threads;
        eo.pool = lo.pool = shared;
        if ((rc = nr_embedder_open(argv[optind], &eo, &r.e)) ||
            (rc = nr_llama_open(argv[optind + 1], &lo, &r.m)))
            break;
        r.vec = malloc((size_t)BATCH * nr_embedder_dim(r.e) * sizeof *r.vec);
        r.logit = malloc((size_t)nr_llama_info(r.m)->n_vocab * sizeof *r.logit);
        if (!r.vec || !r.logit)
            rc = nr_err_set(NR_ENOMEM, "out of memory");
        if (rc == NR_OK)
            rc = measure(&r, repeats, res[cfg]);
        nr_llama_close(r.m);
        nr_embedder_close(r.e);
        free(r.vec);
        free(r.logit);
        r.m = NULL;
        r.e = NULL;
        r.vec = r.logit = NULL;
    }
    nr_pool_free(shared);
    for (int i = 0; i < BATCH; i++)
        free((void *)r.texts[i]);
    if (rc) {
        fprintf(stderr, "bench_contend: %s\n", nr_err_msg());
        return 1;
    }
    printf("bench_contend: %d threads per pool, decode %d tokens, embed batches of %d texts "
           "(60 tokens), best of %d\n",
           threads ? threads : nr_cpu_count(), r.decode, BATCH, repeats);
    printf("%-22s %14s %14s %16s %16s\n", "pools", "decode alone", "embed alone", "decode together",
           "embed together");
    for (int cfg = 0; cfg < 2; cfg++)
        printf("%-22s %10.1f t/s %10.0f /s %12.1f t/s %12.0f /s\n",
               cfg ? "one shared pool" : "a pool each (before)", res[cfg][0], res[cfg][1],
               res[cfg][2], res[cfg][3]);
    return 0;
}
