/*
 * nanorag ask "question": retrieval-augmented answer from the store —
 * the answer streamed to stdout, then the sources it cited ("[n] title p.X —
 * snippet"; when it cited none, the sources it was given, so the reader can
 * still check), and the timing split on stderr. --json prints one object
 * (answer, sources with ids, offsets and scores, timings) instead.
 */
#include "nr_cli.h"

#include "nr_ask.h"
#include "nr_embed.h"
#include "nr_err.h"
#include "nr_llm.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"
#include "nr_str.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int print_piece(void *ud, const char *t, size_t n)
{
    fwrite(t, 1, n, stdout);
    if (ud)
        fflush(stdout);
    return 0;
}

static int parse_float(const char *s, double lo, double hi, const char *what, float *out)
{
    char *end;
    double d = strtod(s, &end);
    if (*end || end == s || !(d >= lo && d <= hi))
        return nr_err_set(NR_EINVAL, "%s takes a number in [%g, %g]", what, lo, hi);
    *out = (float)d;
    return NR_OK;
}

static void print_source(const struct nr_ask_source *s)
{
    const char *title = s->title && s->title[0] ? s->title : s->source;
    const char *slash = s->title && s->title[0] ? NULL : strrchr(title, '/');
    printf("[%d] %s", s->number, slash && slash[1] ? slash + 1 : title);
    if (s->page > 0)
        printf(" p.%d", s->page);
    printf(" — %s\n", s->snippet);
}

static void print_json(const struct nr_ask_result *r, const char *question)
{
    printf("{\"question\":");
    cli_json_string(stdout, question);
    printf(",\"answer\":");
    cli_json_string(stdout, r->answer ? r->answer : "");
    printf(",\"no_answer\":%s,\"sources\":[", r->no_answer ? "true" : "false");
    for (int i = 0; i < r->n_sources; i++) {
        const struct nr_ask_source *s = &r->sources[i];
        printf(
            "%s{\"n\":%d,\"cited\":%s,\"doc_id\":%lld,\"chunk_id\":%lld,\"source\":", i ? "," : "",
            s->number, s->cited ? "true" : "false", (long long)s->doc_id, (long long)s->chunk_id);
        cli_json_string(stdout, s->source);
        printf(",\"title\":");
        if (s->title)
            cli_json_string(stdout, s->title);
        else
            fputs("null", stdout);
        printf(",\"page\":%d,\"start\":%lld,\"end\":%lld,\"score\":%.6g,\"vector\":{\"rank\":%d,"
               "\"score\":%.6g},\"bm25\":{\"rank\":%d,\"score\":%.6g},\"snippet\":",
               s->page, (long long)s->start, (long long)s->end, s->score, s->vec_rank,
               (double)s->vec_score, s->bm25_rank, s->bm25_score);
        cli_json_string(stdout, s->snippet);
        printf("}");
    }
    printf("],\"timings\":{\"retrieval_s\":%.6f,\"prompt_s\":%.6f,\"generation_s\":%.6f,"
           "\"first_token_s\":%.6f,\"total_s\":%.6f},\"prompt_tokens\":%d,\"gen_tokens\":%d}\n",
           r->retrieve_s, r->prompt_s, r->gen_s, r->first_token_s, r->total_s, r->gen.prompt_tokens,
           r->gen.gen_tokens);
}

int cli_ask(int argc, char **argv)
{
    static const struct option longopts[] = {{"data", required_argument, NULL, 'd'},
                                             {"k", required_argument, NULL, 'k'},
                                             {"collection", required_argument, NULL, 'c'},
                                             {"llm", required_argument, NULL, 'L'},
                                             {"api-key", required_argument, NULL, 'A'},
                                             {"model", required_argument, NULL, 'm'},
                                             {"threshold", required_argument, NULL, 'T'},
                                             {"max-tokens", required_argument, NULL, 'n'},
                                             {"temperature", required_argument, NULL, 't'},
                                             {"top-k", required_argument, NULL, 'K'},
                                             {"top-p", required_argument, NULL, 'P'},
                                             {"min-p", required_argument, NULL, 'p'},
                                             {"repeat-penalty", required_argument, NULL, 'r'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"ctx", required_argument, NULL, 'x'},
                                             {"threads", required_argument, NULL, 'j'},
                                             {"json", no_argument, NULL, 'J'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    char model[4096] = "", data[4096] = "";
    struct nr_ask_req req;
    struct nr_ask_result res;
    struct nr_llm_opts lo;
    struct nr_embedder *e = NULL;
    struct nr_store *s = NULL;
    struct nr_pool *pool = NULL;
    struct nr_retriever *r = NULL;
    struct nr_llm *llm = NULL;
    struct nr_ask_ctx ctx;
    int c, rc, as_json = 0, tty = isatty(STDOUT_FILENO);
    int64_t v;

    memset(&res, 0, sizeof res);
    nr_ask_req_default(&req);
    nr_llm_opts_default(&lo);
    while ((c = getopt_long(argc, argv, "d:k:c:L:A:m:T:n:t:K:P:p:r:s:x:j:Jh", longopts, NULL)) !=
           -1) {
        rc = NR_OK;
        switch (c) {
        case 'd':
            snprintf(data, sizeof data, "%s", optarg);
            break;
        case 'k':
            rc = nr_parse_int(optarg, 1, NR_ASK_MAX_K, "--k", &req.k);
            break;
        case 'c':
            req.collection = optarg;
            break;
        case 'L':
            lo.spec = optarg;
            break;
        case 'A':
            lo.api_key = optarg;
            break;
        case 'm':
            snprintf(model, sizeof model, "%s", optarg);
            break;
        case 'T':
            rc = parse_float(optarg, -1, 1, "--threshold", &req.threshold);
            break;
        case 'n':
            rc = nr_parse_int(optarg, 1, 1 << 20, "--max-tokens", &req.gen.max_tokens);
            break;
        case 't':
            rc = parse_float(optarg, 0, 100, "--temperature", &req.gen.temperature);
            break;
        case 'K':
            rc = nr_parse_int(optarg, 0, 1 << 20, "--top-k", &req.gen.top_k);
            break;
        case 'P':
            rc = parse_float(optarg, 0, 1, "--top-p", &req.gen.top_p);
            break;
        case 'p':
            rc = parse_float(optarg, 0, 1, "--min-p", &req.gen.min_p);
            break;
        case 'r':
            rc = parse_float(optarg, 0.01, 100, "--repeat-penalty", &req.gen.repeat_penalty);
            break;
        case 's':
            rc = nr_parse_i64(optarg, 0, INT64_MAX, "--seed", &v);
            req.gen.seed = (uint64_t)v;
            break;
        case 'x':
            rc = nr_parse_int(optarg, 64, 1 << 20, "--ctx", &lo.n_ctx);
            break;
        case 'j':
            rc = nr_parse_int(optarg, 1, 1024, "--threads", &lo.threads);
            break;
        case 'J':
            as_json = 1;
            break;
        case 'h':
            printf(
                "usage: nanorag ask [--data DIR] [--k N] [--collection NAME] [--threshold COS]\n"
                "       [--llm FILE.gguf|ollama:NAME[@URL]|openai:MODEL[@URL]] [--api-key KEY]\n"
                "       (openai: the key may come from $NANORAG_LLM_API_KEY or $OPENAI_API_KEY)\n"
                "       [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
                "       [--repeat-penalty R] [--seed S] [--ctx N] [--threads N] [--model EMBED]\n"
                "       [--json] \"question\"\n");
            return 0;
        default:
            return 2;
        }
        if (rc != NR_OK)
            return cli_fail("ask");
    }
    if (optind != argc - 1) {
        fprintf(stderr, "nanorag: ask: give exactly one question\n");
        return 2;
    }
    req.question = argv[optind];
    /* a key in the environment keeps it out of the process list */
    if (!lo.api_key && lo.spec && !strncmp(lo.spec, "openai:", 7)) {
        const char *env = getenv("NANORAG_LLM_API_KEY");
        if (!env || !*env)
            env = getenv("OPENAI_API_KEY");
        if (env && *env)
            lo.api_key = env;
    }
    if (!model[0] && cli_default_embed_model(model, sizeof model))
        return cli_fail("ask");
    if (cli_open_store(data, sizeof data, &s))
        return cli_fail("ask: opening the store");
    rc = nr_embedder_open(model, NULL, &e);
    if (rc == NR_OK && !(pool = nr_pool_new(0)))
        rc = NR_ENOMEM;
    if (rc == NR_OK)
        rc = nr_retriever_open(s, e, pool, NULL, &r);
    if (rc == NR_OK && (rc = nr_llm_open(&lo, &llm)) != NR_OK)
        nr_err_wrap(rc, "opening the generator");
    if (rc == NR_OK) {
        ctx.retriever = r;
        ctx.retriever_lock = NULL;
        ctx.llm = llm;
        if (!as_json) {
            req.on_text = print_piece;
            req.ud = tty ? stdout : NULL;
        }
        rc = nr_ask_run(&ctx, &req, &res);
    }
    if (rc == NR_OK && as_json) {
        print_json(&res, req.question);
    } else if (rc == NR_OK) {
        int any = 0;
        printf("\n");
        if (res.n_cited > 0) {
            printf("\nsources:\n");
            for (int i = 0; i < res.n_sources; i++)
                if (res.sources[i].cited)
                    print_source(&res.sources[i]);
            any = 1;
        }
        if (!any && res.n_sources > 0) {
            printf("\nsources given (the answer cited none):\n");
            for (int i = 0; i < res.n_sources; i++)
                print_source(&res.sources[i]);
        }
    }
    fflush(stdout);
    if (rc == NR_OK) {
        fprintf(stderr,
                "retrieval %.0f ms (%d hits, %d sources) | prompt %d tokens %.0f ms | "
                "generation %d tokens %.0f ms (%.1f tok/s) | first token %.0f ms | total %.0f ms\n",
                res.retrieve_s * 1e3, res.hits, res.n_sources, res.gen.prompt_tokens,
                res.prompt_s * 1e3, res.gen.gen_tokens, res.gen_s * 1e3,
                res.gen_s > 0 ? res.gen.gen_tokens / res.gen_s : 0.0, res.first_token_s * 1e3,
                res.total_s * 1e3);
    }
    fflush(stdout);
    nr_ask_result_free(&res);
    nr_llm_close(llm);
    nr_retriever_close(r);
    nr_pool_free(pool);
    nr_embedder_close(e);
    nr_store_close(s);
    return rc ? cli_fail("ask") : 0;
}
