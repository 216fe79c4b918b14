/*
 * The ask pipeline end to end: a real store in a temp directory, the real
 * embedder (all-MiniLM-L6-v2), the real generator (SmolLM2-135M-Instruct,
 * greedy). Also its parts: citation parsing, near-duplicate similarity,
 * multi-turn query construction.
 */
#include "nr_test.h"

#include "nr_ask.h"
#include "nr_embed.h"
#include "nr_err.h"
#include "nr_ingest.h"
#include "nr_llm.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static struct nr_embedder *emb;
static struct nr_store *store;
static struct nr_pool *pool;
static struct nr_retriever *retr;

static const char ROUTER[] =
    "# Routers\n\nTo reset the admin password of a home router, hold the reset button on the "
    "back for ten seconds until the lights blink, then log in with the default credentials "
    "printed on the label under the device.\n";
/* the same paragraph saved again with a one-word change: a near-duplicate */
static const char ROUTER_COPY[] =
    "# Routers\n\nTo reset the admin password of a home router, hold the reset button on "
    "the back for ten seconds until the lights blink, then log in with the default credentials "
    "printed on the sticker under the device.\n";
static const char COOKING[] =
    "A good risotto needs arborio rice, warm stock added one ladle at a time, and constant "
    "stirring for about eighteen minutes. Finish it with butter and parmesan.\n";
static const char MARS[] = "<html><head><title>Mars</title></head><body><h1>Mars</h1><p>Mars is "
                           "the fourth planet from the Sun; its red colour comes from iron oxide "
                           "dust.</p></body></html>";

static void write_file(const char *sub, const char *name, const char *text)
{
    char p[600];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
    f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int ingest_dir(const char *sub, const char *collection)
{
    char p[600];
    const char *paths[] = {p};
    struct nr_ingest_opts o;
    struct nr_ingest_summary sum;
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    nr_ingest_opts_default(&o);
    o.collection = collection;
    if (nr_ingest_paths(store, emb, paths, 1, &o, NULL, NULL, NULL, &sum) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "ingest: %s", nr_err_msg());
        return 0;
    }
    return sum.failed == 0;
}

static int setup(void)
{
    char p[600];
    struct nr_embed_opts eo;
    if (retr)
        return 1;
    snprintf(dir, sizeof dir, "/tmp/nr_test_ask_%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/docs", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/long", dir);
    mkdir(p, 0755);
    write_file("docs", "routers.md", ROUTER);
    write_file("docs", "routers_copy.md", ROUTER_COPY);
    write_file("docs", "cooking.txt", COOKING);
    write_file("docs", "mars.html", MARS);
    /* long documents: 12 files of ~600 words about lighthouses, several chunks each */
    for (int f = 0; f < 12; f++) {
        char name[64], *text = nr_malloc(16384);
        size_t n = 0;
        for (int s = 0; s < 40; s++)
            n += (size_t)snprintf(text + n, 16384 - n,
                                  "Lighthouse %d keeper log entry %d: the lamp of tower %d was "
                                  "cleaned, the lens turned, and the fog signal tested at dusk. ",
                                  f, s, f * 100 + s);
        snprintf(name, sizeof name, "lighthouse_%02d.txt", f);
        write_file("long", name, text);
        nr_free(text);
    }
    nr_embed_opts_default(&eo);
    eo.threads = 2;
    snprintf(p, sizeof p, "%s/store.db", dir);
    if (nr_embedder_open(nr_test_model_path("all-MiniLM-L6-v2"), &eo, &emb) != NR_OK ||
        nr_store_open(p, &store) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "setup: %s", nr_err_msg());
        return 0;
    }
    if (!ingest_dir("docs", "docs") || !ingest_dir("long", "long"))
        return 0;
    pool = nr_pool_new(2);
    if (!pool || nr_retriever_open(store, emb, pool, NULL, &retr) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "retriever: %s", nr_err_msg());
        return 0;
    }
    return 1;
}

static struct nr_llm *local_llm(int n_ctx)
{
    struct nr_llm_opts o;
    struct nr_llm *l = NULL;
    const char *path = nr_test_model_path("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (access(path, R_OK) != 0) {
        NR_SKIP("no SmolLM2 model file");
        return NULL;
    }
    nr_llm_opts_default(&o);
    o.spec = path;
    o.threads = 2;
    o.n_ctx = n_ctx;
    if (nr_llm_open(&o, &l) == NR_EUNSUPPORTED)
        NR_SKIP("local generator: %s", nr_err_msg());
    else if (!l)
        nr_test_fail(__FILE__, __LINE__, "llm: %s", nr_err_msg());
    return l;
}

struct collect {
    char text[1 << 15];
    size_t len;
    int text_calls, source_calls, n_sources;
};

static int on_text(void *ud, const char *t, size_t n)
{
    struct collect *c = ud;
    c->text_calls++;
    if (c->len + n < sizeof c->text) {
        memcpy(c->text + c->len, t, n);
        c->len += n;
        c->text[c->len] = '\0';
    }
    return 0;
}

static void on_sources(void *ud, const struct nr_ask_source *s, int n)
{
    struct collect *c = ud;
    c->source_calls++;
    c->n_sources = n;
}

static int has_source(const struct nr_ask_result *r, const char *name)
{
    for (int i = 0; i < r->n_sources; i++)
        if (strstr(r->sources[i].source, name))
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- parts */

static void test_citations(void)
{
    static const struct {
        const char *text;
        const char *cited; /* '1' per cited source of 5 */
        int n;
    } cases[] = {
        {"The reset takes ten seconds [1].", "10000", 1},
        {"See [1,2] and [4].", "11010", 3},
        {"Both say so [1][3].", "10100", 2},
        {"Out of range [12] and [0] are ignored, [5] is not.", "00001", 1},
        {"Spaces [ 2 , 3 ] and ranges [2-4]; repeats [2] [2].", "01110", 3},
        {"Not citations: [a], [1a], [], [-], [1.5], array[i], [[x]].", "00000", 0},
        {"Unclosed [2 and text", "00000", 0},
        {"Semicolons [1; 5]", "10001", 2},
        {"A huge one [99999999999999999999] is ignored.", "00000", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char cited[5] = {0};
        char got[6];
        int n = nr_ask_citations(cases[i].text, strlen(cases[i].text), 5, cited);
        for (int j = 0; j < 5; j++)
            got[j] = cited[j] ? '1' : '0';
        got[5] = '\0';
        NR_CHECK_MSG(strcmp(got, cases[i].cited) == 0 && n == cases[i].n,
                     "\"%s\": cited %s (%d), want %s (%d)", cases[i].text, got, n, cases[i].cited,
                     cases[i].n);
    }
    /* a citation at the very end of a length-limited text: the bracket must close inside */
    {
        unsigned char cited[5] = {0};
        const char *t = "answer [3]";
        NR_CHECK_INT(nr_ask_citations(t, strlen(t) - 1, 5, cited), 0);
    }
}

static void test_similarity(void)
{
    double same = nr_ask_similarity(ROUTER, strlen(ROUTER), ROUTER, strlen(ROUTER));
    double near = nr_ask_similarity(ROUTER, strlen(ROUTER), ROUTER_COPY, strlen(ROUTER_COPY));
    double far = nr_ask_similarity(ROUTER, strlen(ROUTER), COOKING, strlen(COOKING));
    double cased = nr_ask_similarity("The Reset Button.", 17, "the reset button", 16);
    NR_CHECK_NEAR(same, 1.0, 1e-12);
    NR_CHECK_MSG(near >= 0.8 && near < 1.0, "near-duplicate similarity %.3f", near);
    NR_CHECK_MSG(far < 0.05, "unrelated similarity %.3f", far);
    NR_CHECK_NEAR(cased, 1.0, 1e-12);
}

static void test_query(void)
{
    struct nr_chat_msg hist[] = {
        {"user", "Tell me about Mars."},
        {"assistant", "Mars is the fourth planet [1]."},
        {"user", "How do I reset my router's admin password?"},
        {"assistant", "Hold the reset button for ten seconds [1]."},
    };
    char *q = nr_ask_query("and where are the default credentials?", NULL, 0);
    NR_CHECK(q && strcmp(q, "and where are the default credentials?") == 0);
    nr_free(q);
    q = nr_ask_query("and where are the default credentials?", hist, 4);
    NR_CHECK(q && strcmp(q, "How do I reset my router's admin password?\n"
                            "and where are the default credentials?") == 0);
    /* the follow-up with its context retrieves the router document first */
    if (q && setup()) {
        struct nr_search_opts o;
        struct nr_search_hit hits[5];
        int n = 0;
        nr_search_opts_default(&o);
        o.k = 3;
        o.collection = "docs";
        NR_CHECK_INT(nr_retrieve(retr, q, &o, hits, &n), NR_OK);
        NR_CHECK(n > 0 && strstr(hits[0].chunk->source, "routers"));
        nr_search_hits_free(hits, n);
    }
    nr_free(q);
    /* long turns are cut on a character boundary */
    {
        char *big = nr_malloc(5000);
        struct nr_chat_msg h = {"user", big};
        for (int i = 0; i < 4998; i += 2)
            memcpy(big + i, "é", 2);
        big[4998] = '\0';
        q = nr_ask_query("why?", &h, 1);
        NR_CHECK(q && strlen(q) <= 1024 + 1 + 4);
        NR_CHECK(q && strcmp(q + strlen(q) - 5, "\nwhy?") == 0);
        NR_CHECK(q && ((unsigned char)q[strlen(q) - 6] == 0xA9));
        nr_free(q);
        nr_free(big);
    }
}

/* Nothing relevant: the fixed answer, no sources, and the generator is never called — here a
 * remote generator nobody listens for, which would fail the call if it were made. */
static void test_no_answer(void)
{
    struct nr_llm_opts o;
    struct nr_llm *l = NULL;
    struct nr_llm_info info;
    struct nr_ask_ctx ctx;
    struct nr_ask_req req;
    struct nr_ask_result res;
    struct collect *c = nr_calloc(1, sizeof *c);
    static const char *questions[] = {"What is the capital of Mongolia?",
                                      "Who won the 1998 football world cup final?"};

    if (!setup())
        goto out;
    nr_llm_opts_default(&o);
    o.spec = "ollama:none@http://127.0.0.1:1";
    NR_CHECK_INT(nr_llm_open(&o, &l), NR_OK);
    if (!l)
        goto out;
    ctx.retriever = retr;
    ctx.retriever_lock = NULL;
    ctx.llm = l;
    for (size_t i = 0; i < sizeof questions / sizeof questions[0]; i++) {
        memset(c, 0, sizeof *c);
        nr_ask_req_default(&req);
        req.question = questions[i];
        req.collection = "docs";
        req.on_text = on_text;
        req.on_sources = on_sources;
        req.ud = c;
        NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_OK);
        NR_CHECK_INT(res.no_answer, 1);
        NR_CHECK(res.answer && strcmp(res.answer, NR_ASK_NO_ANSWER) == 0);
        NR_CHECK(strcmp(c->text, NR_ASK_NO_ANSWER) == 0);
        NR_CHECK_INT(res.n_sources, 0);
        NR_CHECK_INT(c->source_calls, 1);
        NR_CHECK_INT(c->n_sources, 0);
        NR_CHECK(res.hits > 0); /* BM25 matched words; the cosine gate refused them */
        nr_ask_result_free(&res);
    }
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.requests, 0);
    /* the same generator on a relevant question is called (and fails: nobody listens) */
    nr_ask_req_default(&req);
    req.question = "How do I reset my router password?";
    req.collection = "docs";
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_EIO);
    NR_CHECK(res.answer == NULL && res.n_sources == 0);
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.requests, 1);
    /* bad requests */
    req.k = 0;
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_EINVAL);
    req.k = 5;
    req.question = "";
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_EINVAL);
    {
        struct nr_chat_msg h = {"system", "x"};
        req.question = "q";
        req.history = &h;
        req.n_history = 1;
        NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_EINVAL);
    }
out:
    nr_llm_close(l);
    nr_free(c);
}

/* Allocation failure at the 1st, 2nd, ... allocation of a query (RELIABILITY D11): a clean
 * error every time and nothing leaked. The generator is one nobody listens for, so a run whose
 * allocations all succeeded ends in NR_EIO at the generation step, after retrieval,
 * duplicates, budget and prompt assembly. */
static void test_alloc_failures(void)
{
    struct nr_llm_opts o;
    struct nr_llm *l = NULL;
    struct nr_ask_ctx ctx;
    struct nr_ask_req req;
    struct nr_ask_result res;
    int n, rc = NR_ENOMEM, bad = 0;
    size_t held;

    if (!setup())
        return;
    nr_llm_opts_default(&o);
    o.spec = "ollama:none@http://127.0.0.1:1";
    if (nr_llm_open(&o, &l) != NR_OK)
        return;
    ctx.retriever = retr;
    ctx.retriever_lock = NULL;
    ctx.llm = l;
    nr_ask_req_default(&req);
    req.question = "How do I reset the admin password of my home router?";
    req.collection = "docs";
    held = nr_mem_held();
    for (n = 1; n < 2000 && rc != NR_EIO; n++) {
        nr_mem_fail_after(n);
        rc = nr_ask_run(&ctx, &req, &res);
        nr_mem_fail_after(0);
        if (rc != NR_EIO && rc >= 0) {
            bad++;
            nr_ask_result_free(&res);
        }
        if (rc != NR_EIO && rc != NR_ENOMEM && rc < 0)
            printf("  allocation %d: %s (%s)\n", n, nr_err_name(rc), nr_err_msg());
        if (nr_mem_held() != held) {
            nr_test_fail(__FILE__, __LINE__, "allocation %d failed: %zu bytes leaked", n,
                         nr_mem_held() - held);
            break;
        }
    }
    NR_CHECK_INT(rc, NR_EIO);
    NR_CHECK_INT(bad, 0);
    printf("  %d allocation failure points, each a clean error\n", n - 1);
    nr_llm_close(l);
}

/* ---------------------------------------------------------------- with the real generator */

static void test_answer_with_sources(void)
{
    struct nr_llm *l;
    struct nr_ask_ctx ctx;
    struct nr_ask_req req;
    struct nr_ask_result res;
    struct collect *c;

    if (!setup() || !(l = local_llm(2048)))
        return;
    c = nr_calloc(1, sizeof *c);
    ctx.retriever = retr;
    ctx.retriever_lock = NULL;
    ctx.llm = l;
    nr_ask_req_default(&req);
    req.question = "How long do I stir a risotto?";
    req.collection = "docs";
    req.gen.max_tokens = 48;
    req.on_text = on_text;
    req.on_sources = on_sources;
    req.ud = c;
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_OK);
    NR_CHECK_INT(res.no_answer, 0);
    NR_CHECK(has_source(&res, "cooking.txt"));
    NR_CHECK(res.n_sources >= 1 && strstr(res.sources[0].source, "cooking.txt"));
    NR_CHECK(res.system && strstr(res.system, "[1] cooking.txt: A good risotto needs arborio"));
    NR_CHECK(res.system && strstr(res.system, "Cite the sources") != NULL);
    /* streamed pieces make up the answer */
    NR_CHECK(res.answer_len > 0 && c->len == res.answer_len &&
             memcmp(c->text, res.answer, res.answer_len) == 0);
    NR_CHECK_INT(c->source_calls, 1);
    NR_CHECK_INT(c->n_sources, res.n_sources);
    NR_CHECK(res.gen.prompt_tokens > 0 && res.gen.gen_tokens > 0);
    NR_CHECK(res.gen.prompt_tokens + req.gen.max_tokens <= 2048);
    NR_CHECK(res.prompt_tokens_est >= res.gen.prompt_tokens);
    NR_CHECK(res.retrieve_s > 0 && res.prompt_s > 0 && res.gen_s > 0);
    NR_CHECK(res.first_token_s >= res.retrieve_s && res.total_s >= res.first_token_s);
    for (int i = 0; i < res.n_sources; i++) {
        const struct nr_ask_source *s = &res.sources[i];
        NR_CHECK_INT(s->number, i + 1);
        NR_CHECK(s->doc_id > 0 && s->chunk_id > 0 && s->end > s->start);
        NR_CHECK((int64_t)strlen(s->text) == s->end - s->start);
        NR_CHECK(s->snippet && strlen(s->snippet) <= 240 + 8);
        NR_CHECK(s->vec_rank > 0 ? s->vec_score >= req.threshold : 1);
    }
    printf("  answer: %s\n  cited %d of %d; retrieval %.1f ms, prompt %d tok %.1f ms, "
           "generation %d tok %.1f ms\n",
           res.answer, res.n_cited, res.n_sources, res.retrieve_s * 1e3, res.gen.prompt_tokens,
           res.prompt_s * 1e3, res.gen.gen_tokens, res.gen_s * 1e3);
    {
        /* the citations reported are those in the answer */
        unsigned char cited[NR_ASK_MAX_K] = {0};
        NR_CHECK_INT(nr_ask_citations(res.answer, res.answer_len, res.n_sources, cited),
                     res.n_cited);
        for (int i = 0; i < res.n_sources; i++)
            NR_CHECK_INT(res.sources[i].cited, cited[i]);
    }
    nr_ask_result_free(&res);

    /* the router question: the near-duplicate copy is dropped, one of the two is kept */
    nr_ask_req_default(&req);
    req.question = "How do I reset the admin password of my home router?";
    req.collection = "docs";
    req.gen.max_tokens = 16;
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_OK);
    NR_CHECK(has_source(&res, "routers"));
    NR_CHECK_MSG(!(has_source(&res, "routers.md") && has_source(&res, "routers_copy.md")),
                 "both near-duplicates among the sources");
    NR_CHECK(res.dropped_duplicate >= 1);
    nr_ask_result_free(&res);
    nr_llm_close(l);
    nr_free(c);
}

/* Many long chunks and a small context: sources stop at the budget and the prompt the
 * generator evaluated fits in n_ctx - max_tokens without nr_gen dropping anything. */
static void test_budget(void)
{
    struct nr_llm *l;
    struct nr_llm_info info;
    struct nr_ask_ctx ctx;
    struct nr_ask_req req;
    struct nr_ask_result res;
    struct nr_chat_msg hist[8];
    char turn[8][400];

    if (!setup() || !(l = local_llm(640)))
        return;
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.n_ctx, 640);
    ctx.retriever = retr;
    ctx.retriever_lock = NULL;
    ctx.llm = l;
    nr_ask_req_default(&req);
    req.question = "What did the lighthouse keeper log about the fog signal of tower 305?";
    req.collection = "long";
    req.k = 10;
    req.threshold = 0.1f;
    req.gen.max_tokens = 64;
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_OK);
    NR_CHECK_INT(res.budget_tokens, 640 - 64);
    NR_CHECK(res.n_sources >= 1 && res.n_sources < 10);
    NR_CHECK(res.dropped_budget >= 1);
    NR_CHECK_MSG(res.gen.prompt_tokens <= res.budget_tokens, "prompt %d tokens > budget %d",
                 res.gen.prompt_tokens, res.budget_tokens);
    NR_CHECK_MSG(res.prompt_tokens_est >= res.gen.prompt_tokens, "estimate %d < real %d",
                 res.prompt_tokens_est, res.gen.prompt_tokens);
    /* nothing was dropped by the generation loop: every source is in the evaluated prompt */
    NR_CHECK(nr_llm_count_tokens(l, res.system, strlen(res.system)) < res.gen.prompt_tokens);
    printf("  budget %d: %d sources, %d dropped for size, prompt %d tokens (estimate %d)\n",
           res.budget_tokens, res.n_sources, res.dropped_budget, res.gen.prompt_tokens,
           res.prompt_tokens_est);
    nr_ask_result_free(&res);

    /* a long history: the oldest turns go, the kept part starts with a user turn */
    for (int i = 0; i < 8; i++) {
        int n = snprintf(turn[i], sizeof turn[i], "%s turn %d:", i % 2 ? "Answer" : "Question", i);
        while (n < 150)
            n += snprintf(turn[i] + n, sizeof turn[i] - (size_t)n, " lamp lens fog");
        hist[i].role = i % 2 ? "assistant" : "user";
        hist[i].content = turn[i];
    }
    req.history = hist;
    req.n_history = 8;
    req.k = 3;
    NR_CHECK_INT(nr_ask_run(&ctx, &req, &res), NR_OK);
    NR_CHECK_MSG(res.history_used >= 2 && res.history_used < 8, "history kept: %d",
                 res.history_used);
    NR_CHECK(res.history_used % 2 == 0);
    NR_CHECK(res.gen.prompt_tokens <= res.budget_tokens);
    printf("  history: %d of 8 messages kept, prompt %d tokens\n", res.history_used,
           res.gen.prompt_tokens);
    nr_ask_result_free(&res);
    nr_llm_close(l);
}

int main(void)
{
    NR_RUN(test_citations);
    NR_RUN(test_similarity);
    NR_RUN(test_query);
    NR_RUN(test_no_answer);
    NR_RUN(test_alloc_failures);
    NR_RUN(test_answer_with_sources);
    NR_RUN(test_budget);
    nr_retriever_close(retr);
    nr_pool_free(pool);
    nr_store_close(store);
    nr_embedder_close(emb);
    if (dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            printf("  could not remove %s\n", dir);
    }
    return nr_test_summary();
}
