/*
 * bench_ask: the ask pipeline's latency with the default models — time to
 * the first answer token and to the full answer, split into retrieval
 * (query embedding + hybrid search), prompt processing and generation.
 * Models and store are opened once (as in `nanorag serve`); each question
 * runs `rounds` times, greedy, and p50 / p99 are over all runs.
 *
 *     bench_ask --data DIR [--rounds N] [--max-tokens N] [--k N] [--threads N]
 *               [--llm SPEC] [QUESTION...]
 *
 * The store must hold documents (nanorag ingest --data DIR ...). The first
 * run of each process is a warm-up and is not counted.
 */
#include "nr_ask.h"
#include "nr_embed.h"
#include "nr_err.h"
#include "nr_file.h"
#include "nr_llm.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"
#include "nr_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RUNS 1000

static const char *default_questions[] = {
    "How do I run the test suite?",
    "What does nanorag replace?",
    "Where is the store kept?",
    "How are models fetched?",
    "Which embedding model is the default?",
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    int i;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    i = (int)(p * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int find_embedder(char *buf, size_t cap)
{
    const char *env = getenv("NANORAG_EMBED_MODEL");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return NR_OK;
    }
    snprintf(buf, cap, "models/all-MiniLM-L6-v2");
    return nr_path_is_dir(buf) ? NR_OK : nr_err_set(NR_ENOTFOUND, "no models/all-MiniLM-L6-v2");
}

int main(int argc, char **argv)
{
    const char *data = NULL, *spec = NULL;
    const char **qs = default_questions;
    int nq = (int)(sizeof default_questions / sizeof default_questions[0]);
    int rounds = 3, max_tokens = 64, k = 5, threads = 0, n = 0, argi = 1, rc;
    static double ret[MAX_RUNS], pro[MAX_RUNS], gen[MAX_RUNS], ftt[MAX_RUNS], tot[MAX_RUNS];
    double ptok = 0, gtok = 0, gsec = 0, psec = 0;
    char emb_path[4096], db[4200];
    struct nr_store *s = NULL;
    struct nr_embedder *e = NULL;
    struct nr_pool *pool = NULL;
    struct nr_retriever *r = NULL;
    struct nr_llm *l = NULL;
    struct nr_llm_opts lo;
    struct nr_embed_opts eo;
    struct nr_ask_ctx ctx;

    for (; argi < argc && argv[argi][0] == '-'; argi += 2) {
        const char *o = argv[argi], *v = argi + 1 < argc ? argv[argi + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_ask: %s needs a value\n", o);
            return 2;
        }
        if (!strcmp(o, "--data"))
            data = v;
        else if (!strcmp(o, "--llm"))
            spec = v;
        else if ((!strcmp(o, "--rounds") && nr_parse_int(v, 1, 100, o, &rounds)) ||
                 (!strcmp(o, "--max-tokens") && nr_parse_int(v, 1, 4096, o, &max_tokens)) ||
                 (!strcmp(o, "--k") && nr_parse_int(v, 1, NR_ASK_MAX_K, o, &k)) ||
                 (!strcmp(o, "--threads") && nr_parse_int(v, 1, 1024, o, &threads))) {
            fprintf(stderr, "bench_ask: %s\n", nr_err_msg());
            return 2;
        } else if (strcmp(o, "--rounds") && strcmp(o, "--max-tokens") && strcmp(o, "--k") &&
                   strcmp(o, "--threads")) {
            fprintf(stderr, "bench_ask: unknown option %s\n", o);
            return 2;
        }
    }
    if (argi < argc) {
        qs = (const char **)(argv + argi);
        nq = argc - argi;
    }
    if (!data) {
        fprintf(stderr, "usage: bench_ask --data DIR [--rounds N] [--max-tokens N] [--k N] "
                        "[--threads N] [--llm SPEC] [QUESTION...]\n");
        return 2;
    }
    snprintf(db, sizeof db, "%s/nanorag.db", data);
    nr_embed_opts_default(&eo);
    eo.threads = threads;
    nr_llm_opts_default(&lo);
    lo.spec = spec;
    lo.threads = threads;
    if ((rc = find_embedder(emb_path, sizeof emb_path)) || (rc = nr_store_open(db, &s)) ||
        (rc = nr_embedder_open(emb_path, &eo, &e)) || !(pool = nr_pool_new(threads)) ||
        (rc = nr_retriever_open(s, e, pool, NULL, &r)) || (rc = nr_llm_open(&lo, &l))) {
        fprintf(stderr, "bench_ask: %s\n", nr_err_msg());
        goto out;
    }
    ctx.retriever = r;
    ctx.retriever_lock = NULL;
    ctx.llm = l;
    for (int round = -1; round < rounds; round++) {
        for (int q = 0; q < nq; q++) {
            struct nr_ask_req req;
            struct nr_ask_result res;
            nr_ask_req_default(&req);
            req.question = qs[q];
            req.k = k;
            req.gen.max_tokens = max_tokens;
            if ((rc = nr_ask_run(&ctx, &req, &res)) != NR_OK) {
                fprintf(stderr, "bench_ask: \"%s\": %s\n", qs[q], nr_err_msg());
                goto out;
            }
            if (round >= 0 && n < MAX_RUNS && !res.no_answer) {
                ret[n] = res.retrieve_s;
                pro[n] = res.prompt_s;
                gen[n] = res.gen_s;
                ftt[n] = res.first_token_s;
                tot[n] = res.total_s;
                ptok += res.gen.prompt_tokens;
                gtok += res.gen.gen_tokens;
                psec += res.prompt_s;
                gsec += res.gen_s;
                n++;
            }
            if (round == 0)
                printf("  %-40.40s %d sources, prompt %4d tok, answer %3d tok, first token "
                       "%6.0f ms, total %6.0f ms\n",
                       qs[q], res.n_sources, res.gen.prompt_tokens, res.gen.gen_tokens,
                       res.first_token_s * 1e3, res.total_s * 1e3);
            nr_ask_result_free(&res);
        }
    }
    if (n == 0) {
        fprintf(stderr, "bench_ask: no question found an answer in the store\n");
        rc = NR_ENOTFOUND;
        goto out;
    }
    {
        struct nr_llm_info li;
        nr_llm_info(l, &li);
        printf("ask (%s, %d runs, max_tokens %d, k %d, %d threads):\n", li.model, n, max_tokens, k,
               threads > 0 ? threads : nr_cpu_count());
    }
    printf("  mean prompt %.0f tokens at %.0f tok/s, mean answer %.0f tokens at %.1f tok/s\n",
           ptok / n, psec > 0 ? ptok / psec : 0, gtok / n, gsec > 0 ? gtok / gsec : 0);
    printf("  %-13s %9s %9s\n", "", "p50 ms", "p99 ms");
    printf("  %-13s %9.1f %9.1f\n", "retrieval", pct(ret, n, .5) * 1e3, pct(ret, n, .99) * 1e3);
    printf("  %-13s %9.1f %9.1f\n", "prompt", pct(pro, n, .5) * 1e3, pct(pro, n, .99) * 1e3);
    printf("  %-13s %9.1f %9.1f\n", "generation", pct(gen, n, .5) * 1e3, pct(gen, n, .99) * 1e3);
    printf("  %-13s %9.1f %9.1f\n", "first token", pct(ftt, n, .5) * 1e3, pct(ftt, n, .99) * 1e3);
    printf("  %-13s %9.1f %9.1f\n", "full answer", pct(tot, n, .5) * 1e3, pct(tot, n, .99) * 1e3);
out:
    nr_llm_close(l);
    nr_retriever_close(r);
    nr_pool_free(pool);
    nr_embedder_close(e);
    nr_store_close(s);
    return rc ? 1 : 0;
}
