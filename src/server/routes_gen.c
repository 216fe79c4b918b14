/*
 * routes_gen.c — the generation routes: Ollama /api/generate and /api/chat
 * (NDJSON), OpenAI /v1/chat/completions and /v1/completions (SSE), and
 * /v1/ask (the RAG pipeline, nr_ask.h: NDJSON answer pieces, then the
 * sources), all on the generator behind nr_llm.h.
 *
 * One request = one job. The handler (connection thread) parses and checks
 * everything first, so a bad request is a 4xx before any generation. Then:
 *   not streamed  the handler runs the generation itself, collects the text
 *                 and answers one JSON object.
 *   streamed      a producer thread runs the generation and writes lines to
 *                 an nr_http stream. The handler waits until the producer
 *                 has its first piece, has failed, or 100 ms have passed:
 *                 a failure before any output (the queue is full: NR_EBUSY)
 *                 is answered as a plain error with its status (503 +
 *                 Retry-After at once); otherwise the 200 stream starts and a
 *                 later failure ends it with one error line ({"error": ...}
 *                 for NDJSON, an SSE "data: {"error": {...}}" event).
 * A client that goes away sets the job's cancel flag (nr_http stream) and
 * fails the producer's next write; either stops the generation, and nr_llm
 * frees the slot before returning. Server shutdown cancels every job and
 * waits for the producers (srv_llm_close).
 *
 * Ollama fields: options.num_predict (-1/-2: until the context ends),
 * temperature, top_k, top_p, min_p, seed, stop, repeat_penalty,
 * repeat_last_n, num_ctx (accepted; the window is the server's); "system",
 * "raw" on generate; timings in nanoseconds. Refused with 400 rather than
 * silently ignored: images, tools, format, suffix. OpenAI fields:
 * max_tokens / max_completion_tokens, temperature, top_p, seed, stop, n (1
 * only), stream_options.include_usage; content as a string or text parts.
 */
#include "server_internal.h"

#include "nr_ask.h"
#include "nr_err.h"
#include "nr_llm.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_retrieve.h"
#include "nr_store.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_MESSAGES  512 /* messages per chat request */
#define FIRST_WAIT_MS 100

enum kind { K_GENERATE, K_CHAT, K_OAI_CHAT, K_OAI_COMPLETION, K_ASK };

struct job {
    struct nr_server *s;
    enum kind kind;
    int stream;
    int include_usage;        /* OpenAI stream_options.include_usage */
    int raw;                  /* generate: no template */
    json_t *body;             /* owned; every string below points into it */
    struct nr_chat_msg *msgs; /* [n_msgs] (nr_malloc'd) */
    int n_msgs;
    const char *prompt; /* generate / completion */
    struct nr_gen_params p;
    volatile int cancel;       /* set by the stream when the client goes away */
    struct nr_http_stream *st; /* streamed: the stream; else NULL */
    struct nr_http_text text;  /* not streamed: the answer so far */
    int pieces;                /* pieces emitted */
    double t0;                 /* unix seconds at the request */
    char id[48];               /* OpenAI response id */
    /* ask */
    struct nr_ask_req ask;
    struct nr_ask_result ask_res;
    /* handler <-> producer */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;   /* the producer has output */
    int finished;  /* the producer is done */
    int streaming; /* the handler sent the 200 stream */
    int rc;        /* the generation's status */
    char err[512]; /* its message */
    struct nr_gen_stats stats;
    int refs; /* handler + producer */
};

/* ------------------------------------------------------------ generator */

int srv_llm_open(struct nr_server *s)
{
    struct nr_llm_opts o;
    struct nr_llm_info li;
    int rc;
    pthread_cond_init(&s->jobs_cv, NULL);
    s->jobs_cv_init = 1;
    if (!s->llm_spec)
        return NR_OK;
    nr_llm_opts_default(&o);
    o.spec = s->llm_spec;
    if (!s->llm_spec[0]) {
        /* the default: the local model when it is installed, else none */
        char path[4096];
        if (nr_llm_default_model(path, sizeof path)) {
            nr_log_warn("serve: no default generator model found (%s): generation routes "
                        "answer 503",
                        nr_err_msg());
            return NR_OK;
        }
    }
    o.api_key = s->llm_key;
    o.pool = s->pool; /* one pool for the embedder, the generator and the index */
    if (s->o.llm_ctx > 0)
        o.n_ctx = s->o.llm_ctx;
    if (s->o.llm_slots > 0)
        o.slots = s->o.llm_slots;
    if (s->o.llm_queue >= 0)
        o.queue = s->o.llm_queue;
    if ((rc = nr_llm_open(&o, &s->llm)))
        return rc;
    nr_llm_info(s->llm, &li);
    snprintf(s->llm_name, sizeof s->llm_name, "%s", li.model ? li.model : "llm");
    return NR_OK;
}

void srv_llm_close(struct nr_server *s)
{
    if (s->jobs_cv_init) {
        /* cancel what runs and wait for the producers: they use s->llm */
        pthread_mutex_lock(&s->stat_mu);
        __atomic_store_n(&s->stopping, 1, __ATOMIC_RELAXED);
        while (s->producers > 0)
            pthread_cond_wait(&s->jobs_cv, &s->stat_mu);
        pthread_mutex_unlock(&s->stat_mu);
        pthread_cond_destroy(&s->jobs_cv);
        s->jobs_cv_init = 0;
    }
    nr_llm_close(s->llm);
    s->llm = NULL;
}

void srv_llm_load(struct nr_server *s, struct srv_llm_load *l)
{
    struct nr_llm_info li;
    memset(l, 0, sizeof *l);
    l->backend = "none";
    if (!s->llm)
        return;
    nr_llm_info(s->llm, &li);
    l->backend = li.backend == NR_LLM_LOCAL    ? "local"
                 : li.backend == NR_LLM_OLLAMA ? "ollama"
                                               : "openai";
    l->n_ctx = li.n_ctx;
    l->slots = li.slots;
    l->busy = li.busy;
    l->waiting = li.waiting;
    l->kv_bytes = li.kv_bytes;
}

int srv_llm_count_tokens(struct nr_server *s, const char *text, size_t len)
{
    if (!s->llm)
        return nr_err_set(NR_EUNSUPPORTED, "no generator");
    return nr_llm_count_tokens(s->llm, text, len);
}

/* ------------------------------------------------------------ job */

static void job_unref(struct job *j)
{
    int last;
    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    nr_ask_result_free(&j->ask_res);
    nr_free(j->msgs);
    nr_free(j->text.p);
    json_decref(j->body);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    nr_free(j);
}

static struct job *job_new(struct nr_server *s, enum kind kind, json_t *body)
{
    static atomic_ullong counter;
    struct job *j = nr_calloc(1, sizeof *j);
    unsigned long long x;
    if (!j)
        return NULL;
    j->s = s;
    j->kind = kind;
    j->body = body;
    j->refs = 1;
    j->t0 = srv_now();
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    nr_gen_params_default(&j->p);
    /* ids need only be unique, not secret */
    x = (unsigned long long)(j->t0 * 1e6) ^ (atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull);
    snprintf(j->id, sizeof j->id, "%s-%016llx",
             kind == K_OAI_CHAT         ? "chatcmpl"
             : kind == K_OAI_COMPLETION ? "cmpl"
                                        : "ask",
             x);
    return j;
}

/* ------------------------------------------------------------ output */

static const char *now_rfc3339(char *buf, size_t cap)
{
    srv_time_rfc3339(srv_now(), buf, cap);
    return buf;
}

/* One piece of output as the job's protocol frames it: a line on a stream,
 * appended text otherwise. Returns nonzero to cancel. */
static int emit(struct job *j, const char *text, size_t len)
{
    struct nr_server *s = j->s;
    json_t *o = NULL;
    char when[40];
    int rc = NR_OK;

    if (__atomic_load_n(&s->stopping, __ATOMIC_RELAXED) ||
        __atomic_load_n(&j->cancel, __ATOMIC_RELAXED))
        return 1;
    if (!j->st) {
        nr_http_text_printf(&j->text, "%.*s", (int)len, text);
        return j->text.err ? 1 : 0;
    }
    switch (j->kind) {
    case K_GENERATE:
        o = json_pack("{s:s,s:s,s:s%,s:b}", "model", s->llm_name, "created_at",
                      now_rfc3339(when, sizeof when), "response", text, len, "done", 0);
        break;
    case K_CHAT:
        o = json_pack("{s:s,s:s,s:{s:s,s:s%},s:b}", "model", s->llm_name, "created_at",
                      now_rfc3339(when, sizeof when), "message", "role", "assistant", "content",
                      text, len, "done", 0);
        break;
    case K_ASK:
        o = json_pack("{s:s,s:s%}", "type", "answer", "text", text, len);
        break;
    case K_OAI_CHAT:
        o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:[{s:i,s:{s:s%},s:n}]}", "id", j->id, "object",
                      "chat.completion.chunk", "created", (json_int_t)j->t0, "model", s->llm_name,
                      "system_fingerprint", "nanorag", "choices", "index", 0, "delta", "content",
                      text, len, "finish_reason");
        if (o && j->pieces == 0) /* the first delta names the role */
            json_object_set_new(
                json_object_get(json_array_get(json_object_get(o, "choices"), 0), "delta"), "role",
                json_string("assistant"));
        break;
    case K_OAI_COMPLETION:
        o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:s%,s:i,s:n,s:n}]}", "id", j->id, "object",
                      "text_completion", "created", (json_int_t)j->t0, "model", s->llm_name,
                      "choices", "text", text, len, "index", 0, "logprobs", "finish_reason");
        break;
    }
    if (!o)
        return 1;
    if (j->kind == K_OAI_CHAT || j->kind == K_OAI_COMPLETION)
        rc = nr_http_stream_write_json(j->st, o, "data: ", "\n\n");
    else
        rc = nr_http_stream_write_json(j->st, o, "", "\n");
    json_decref(o);
    return rc ? 1 : 0;
}

static int on_text(void *ud, const char *text, size_t len)
{
    struct job *j = ud;
    if (!j->started) {
        pthread_mutex_lock(&j->mu);
        j->started = 1;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    if (emit(j, text, len))
        return 1;
    j->pieces++;
    return 0;
}

static const char *finish_reason(const struct job *j)
{
    const char *r = j->stats.done_reason ? j->stats.done_reason : "stop";
    return !strcmp(r, "length") ? "length" : "stop";
}

static json_t *ollama_final(struct job *j, const char *content)
{
    struct nr_server *s = j->s;
    char when[40];
    json_t *o;
    if (j->kind == K_CHAT)
        o = json_pack("{s:s,s:s,s:{s:s,s:s}}", "model", s->llm_name, "created_at",
                      now_rfc3339(when, sizeof when), "message", "role", "assistant", "content",
                      content);
    else
        o = json_pack("{s:s,s:s,s:s}", "model", s->llm_name, "created_at",
                      now_rfc3339(when, sizeof when), "response", content);
    if (!o)
        return NULL;
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason",
                        json_string(j->stats.done_reason ? j->stats.done_reason : "stop"));
    json_object_set_new(o, "total_duration", json_integer((json_int_t)((srv_now() - j->t0) * 1e9)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(j->stats.prompt_tokens));
    json_object_set_new(o, "prompt_eval_duration",
                        json_integer((json_int_t)(j->stats.prompt_s * 1e9)));
    json_object_set_new(o, "eval_count", json_integer(j->stats.gen_tokens));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)(j->stats.gen_s * 1e9)));
    return o;
}

static json_t *usage(const struct job *j)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", j->stats.prompt_tokens, "completion_tokens",
                     j->stats.gen_tokens, "total_tokens",
                     j->stats.prompt_tokens + j->stats.gen_tokens);
}

static json_t *ask_sources(const struct nr_ask_result *res)
{
    json_t *arr = json_array();
    for (int i = 0; i < res->n_sources; i++) {
        const struct nr_ask_source *x = &res->sources[i];
        json_array_append_new(
            arr,
            json_pack("{s:i,s:b,s:I,s:I,s:s,s:s?,s:s?,s:i,s:I,s:I,s:s,s:f,s:{s:i,s:f},"
                      "s:{s:i,s:f}}",
                      "number", x->number, "cited", x->cited, "doc_id", (json_int_t)x->doc_id,
                      "chunk_id", (json_int_t)x->chunk_id, "source", x->source, "title", x->title,
                      "heading", x->heading, "page", x->page, "start", (json_int_t)x->start, "end",
                      (json_int_t)x->end, "snippet", x->snippet ? x->snippet : "", "score",
                      x->score, "vector", "rank", x->vec_rank, "score", (double)x->vec_score,
                      "bm25", "rank", x->bm25_rank, "score", x->bm25_score));
    }
    return arr;
}

static json_t *ask_final(struct job *j)
{
    const struct nr_ask_result *r = &j->ask_res;
    return json_pack("{s:s,s:s,s:o,s:b,s:i,s:{s:f,s:f,s:f,s:f,s:f},s:i,s:i}", "type", "sources",
                     "answer", r->answer ? r->answer : "", "sources", ask_sources(r), "no_answer",
                     r->no_answer, "cited", r->n_cited, "timings", "retrieve_s", r->retrieve_s,
                     "prompt_s", r->prompt_s, "generate_s", r->gen_s, "first_token_s",
                     r->first_token_s, "total_s", r->total_s, "prompt_tokens", r->gen.prompt_tokens,
                     "eval_count", r->gen.gen_tokens);
}

/* The closing lines of a stream that ran to the end. */
static void stream_finish(struct job *j)
{
    json_t *o = NULL;
    switch (j->kind) {
    case K_GENERATE:
    case K_CHAT:
        if ((o = ollama_final(j, "")))
            nr_http_stream_write_json(j->st, o, "", "\n");
        break;
    case K_ASK:
        if ((o = ask_final(j))) {
            json_object_del(o, "answer"); /* it was streamed */
            nr_http_stream_write_json(j->st, o, "", "\n");
        }
        break;
    case K_OAI_CHAT:
    case K_OAI_COMPLETION:
        if (j->kind == K_OAI_CHAT)
            o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:[{s:i,s:{},s:s}]}", "id", j->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)j->t0, "model",
                          j->s->llm_name, "system_fingerprint", "nanorag", "choices", "index", 0,
                          "delta", "finish_reason", finish_reason(j));
        else
            o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:s}]}", "id", j->id, "object",
                          "text_completion", "created", (json_int_t)j->t0, "model", j->s->llm_name,
                          "choices", "text", "", "index", 0, "logprobs", "finish_reason",
                          finish_reason(j));
        if (o && nr_http_stream_write_json(j->st, o, "data: ", "\n\n") == NR_OK &&
            j->include_usage) {
            json_decref(o);
            o = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", j->id, "object",
                          j->kind == K_OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)j->t0, "model", j->s->llm_name, "choices", "usage",
                          usage(j));
            if (o)
                nr_http_stream_write_json(j->st, o, "data: ", "\n\n");
        }
        nr_http_stream_write(j->st, "data: [DONE]\n\n", 14);
        break;
    }
    json_decref(o);
}

static void stream_fail(struct job *j)
{
    json_t *o;
    if (j->kind == K_OAI_CHAT || j->kind == K_OAI_COMPLETION) {
        o = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", j->err, "type", "server_error",
                      "param", "code");
        if (o)
            nr_http_stream_write_json(j->st, o, "data: ", "\n\n");
    } else {
        o = json_pack("{s:s}", "error", j->err);
        if (o)
            nr_http_stream_write_json(j->st, o, "", "\n");
    }
    json_decref(o);
}

/* ------------------------------------------------------------ run */

static int run(struct job *j)
{
    struct nr_server *s = j->s;
    int rc;
    j->p.cancel = &j->cancel;
    switch (j->kind) {
    case K_GENERATE:
    case K_OAI_COMPLETION:
        if (j->raw || j->kind == K_OAI_COMPLETION)
            rc = nr_llm_generate(s->llm, j->prompt, &j->p, on_text, j, &j->stats);
        else
            rc = nr_llm_chat(s->llm, j->msgs, j->n_msgs, &j->p, on_text, j, &j->stats);
        break;
    case K_CHAT:
    case K_OAI_CHAT:
        rc = nr_llm_chat(s->llm, j->msgs, j->n_msgs, &j->p, on_text, j, &j->stats);
        break;
    case K_ASK: {
        struct nr_ask_ctx ctx = {s->ret, &s->read_mu, s->llm};
        j->ask.gen.cancel = &j->cancel;
        j->ask.on_text = on_text;
        j->ask.on_sources = NULL; /* the sources go out with the final line */
        j->ask.ud = j;
        rc = nr_ask_run(&ctx, &j->ask, &j->ask_res);
        if (rc == NR_OK)
            j->stats = j->ask_res.gen;
        break;
    }
    default:
        rc = nr_err_set(NR_EINTERNAL, "unknown job");
    }
    if (rc)
        snprintf(j->err, sizeof j->err, "%s", nr_err_msg()[0] ? nr_err_msg() : nr_err_name(rc));
    pthread_mutex_lock(&s->stat_mu);
    if (rc == NR_OK) {
        s->gen_tokens += (uint64_t)(j->stats.gen_tokens > 0 ? j->stats.gen_tokens : 0);
        s->prompt_tokens +=
            (uint64_t)(j->stats.prompt_evaluated > 0 ? j->stats.prompt_evaluated : 0);
        s->gen_s += j->stats.gen_s;
        s->prompt_s += j->stats.prompt_s;
    }
    pthread_mutex_unlock(&s->stat_mu);
    return rc;
}

static void *producer(void *arg)
{
    struct job *j = arg;
    struct nr_server *s = j->s;
    int rc = run(j), streaming;

    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->finished = 1;
    streaming = j->streaming;
    pthread_cond_broadcast(&j->cv);
    /* once finished is set the handler either streams (and waits for
     * nothing more) or answers the error itself */
    if (!streaming && !(rc && !j->started)) {
        while (!j->streaming)
            pthread_cond_wait(&j->cv, &j->mu);
        streaming = 1;
    }
    pthread_mutex_unlock(&j->mu);
    if (streaming) {
        if (rc == NR_OK)
            stream_finish(j);
        else if (rc != NR_ECANCELED && !__atomic_load_n(&j->cancel, __ATOMIC_RELAXED))
            stream_fail(j);
    }
    nr_http_stream_end(j->st);
    job_unref(j);
    pthread_mutex_lock(&s->stat_mu);
    if (--s->producers == 0)
        pthread_cond_broadcast(&s->jobs_cv);
    pthread_mutex_unlock(&s->stat_mu);
    return NULL;
}

static int error_of(struct nr_http_req *r, int rc, const char *msg)
{
    nr_err_set(rc, "%s", msg);
    return nr_http_error_status(r, rc);
}

/* Run j (validated) to a reply; takes the handler's reference. */
static int start(struct job *j, struct nr_http_req *r)
{
    struct nr_server *s = j->s;
    int st, rc;

    if (!j->stream) {
        rc = run(j);
        if (rc)
            st = error_of(r, rc, j->err);
        else if (j->kind == K_GENERATE || j->kind == K_CHAT)
            st = nr_http_reply_json(r, 200, ollama_final(j, j->text.p ? j->text.p : ""));
        else if (j->kind == K_ASK)
            st = nr_http_reply_json(r, 200, ask_final(j));
        else if (j->kind == K_OAI_CHAT)
            st = nr_http_reply_json(
                r, 200,
                json_pack("{s:s,s:s,s:I,s:s,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:o}", "id", j->id,
                          "object", "chat.completion", "created", (json_int_t)j->t0, "model",
                          s->llm_name, "system_fingerprint", "nanorag", "choices", "index", 0,
                          "message", "role", "assistant", "content", j->text.p ? j->text.p : "",
                          "finish_reason", finish_reason(j), "usage", usage(j)));
        else
            st = nr_http_reply_json(
                r, 200,
                json_pack("{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:s}],s:o}", "id", j->id, "object",
                          "text_completion", "created", (json_int_t)j->t0, "model", s->llm_name,
                          "choices", "text", j->text.p ? j->text.p : "", "index", 0, "logprobs",
                          "finish_reason", finish_reason(j), "usage", usage(j)));
        job_unref(j);
        return st;
    }

    if ((rc = nr_http_stream_new(r, &j->cancel, &j->st))) {
        job_unref(j);
        return nr_http_error_status(r, rc);
    }
    pthread_mutex_lock(&s->stat_mu);
    if (__atomic_load_n(&s->stopping, __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&s->stat_mu);
        nr_http_stream_end(j->st);
        job_unref(j);
        return nr_http_error(r, 503, "the server is stopping");
    }
    s->producers++;
    pthread_mutex_unlock(&s->stat_mu);
    j->refs = 2;
    {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&t, &a, producer, j);
        pthread_attr_destroy(&a);
        if (rc) {
            pthread_mutex_lock(&s->stat_mu);
            s->producers--;
            pthread_mutex_unlock(&s->stat_mu);
            j->refs = 1;
            nr_http_stream_end(j->st);
            job_unref(j);
            return nr_http_error(r, 503, "cannot start a generation thread");
        }
    }
    pthread_mutex_lock(&j->mu);
    {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += FIRST_WAIT_MS * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        while (!j->started && !j->finished)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &dl) == ETIMEDOUT)
                break;
    }
    if (j->finished && j->rc && !j->started) {
        char msg[sizeof j->err];
        rc = j->rc;
        snprintf(msg, sizeof msg, "%s", j->err);
        pthread_mutex_unlock(&j->mu);
        st = error_of(r, rc, msg);
    } else {
        j->streaming = 1;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        st = nr_http_stream_reply(r, j->st,
                                  (j->kind == K_OAI_CHAT || j->kind == K_OAI_COMPLETION)
                                      ? "text/event-stream"
                                      : "application/x-ndjson");
    }
    job_unref(j);
    return st;
}

/* ------------------------------------------------------------ parsing */

/* Common checks: a JSON body naming the generator. 0 with *body, or the reply's status. */
static int gen_request(struct nr_server *s, struct nr_http_req *r, json_t **body, int require)
{
    const char *name = NULL;
    int st;
    if ((st = nr_http_json_body(r, body)))
        return st;
    if (srv_str(*body, "model", require, &name))
        st = nr_http_error_status(r, NR_EINVAL);
    else if (!s->llm)
        st = nr_http_error(r, 503, "no generator: start the server with --llm MODEL");
    else if (name && srv_is_embed_model(s, name))
        st = nr_http_error(r, 400, "\"%s\" does not support generation", name);
    else if (name && !srv_model_is(name, s->llm_name))
        st = nr_http_error(r, 404, "model \"%s\" not found", name);
    if (st) {
        json_decref(*body);
        *body = NULL;
    }
    return st;
}

static int parse_stop(json_t *v, struct nr_gen_params *p, const char *field)
{
    int n = 0;
    if (!v || json_is_null(v))
        return NR_OK;
    if (json_is_string(v)) {
        p->stop[0] = json_string_value(v);
        p->stop[1] = NULL;
        return NR_OK;
    }
    if (!json_is_array(v) || json_array_size(v) >= NR_GEN_MAX_STOP)
        return nr_err_set(NR_EINVAL,
                          "field '%s' must be a string or an array of at most %d strings", field,
                          NR_GEN_MAX_STOP - 1);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 256)
            return nr_err_set(NR_EINVAL, "field '%s'[%zu] must be a string of 1-256 bytes", field,
                              i);
        p->stop[n++] = json_string_value(e);
    }
    p->stop[n] = NULL;
    return NR_OK;
}

static int parse_ollama_options(json_t *body, struct nr_gen_params *p)
{
    json_t *o = json_object_get(body, "options");
    int64_t i;
    double d;
    if (!o)
        return NR_OK;
    if (!json_is_object(o))
        return nr_err_set(NR_EINVAL, "field 'options' must be an object");
    i = p->max_tokens;
    if (srv_int(o, "num_predict", -2, 1 << 20, &i))
        return NR_EINVAL;
    p->max_tokens = i < 0 ? 0 : (int)i;
    i = 0;
    if (srv_int(o, "num_ctx", 1, 1 << 24, &i))
        return NR_EINVAL;
    d = p->temperature;
    if (srv_num(o, "temperature", 0, 100, &d))
        return NR_EINVAL;
    p->temperature = (float)d;
    i = p->top_k;
    if (srv_int(o, "top_k", 0, 1 << 20, &i))
        return NR_EINVAL;
    p->top_k = (int)i;
    d = p->top_p;
    if (srv_num(o, "top_p", 0, 1, &d))
        return NR_EINVAL;
    p->top_p = (float)d;
    d = p->min_p;
    if (srv_num(o, "min_p", 0, 1, &d))
        return NR_EINVAL;
    p->min_p = (float)d;
    d = p->repeat_penalty;
    if (srv_num(o, "repeat_penalty", 0, 100, &d))
        return NR_EINVAL;
    p->repeat_penalty = (float)d;
    i = p->repeat_last_n;
    if (srv_int(o, "repeat_last_n", -1, 1 << 20, &i))
        return NR_EINVAL;
    p->repeat_last_n = (int)i;
    i = (int64_t)p->seed;
    if (srv_int(o, "seed", -1, INT64_MAX, &i))
        return NR_EINVAL;
    p->seed = (uint64_t)i;
    return parse_stop(json_object_get(o, "stop"), p, "options.stop");
}

/* A field that must be absent, null, false, empty string or empty array: we
 * do not implement it and will not pretend to. */
static int refuse(json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v) || json_is_false(v) ||
        (json_is_string(v) && json_string_length(v) == 0) ||
        (json_is_array(v) && json_array_size(v) == 0))
        return NR_OK;
    return nr_err_set(NR_EUNSUPPORTED, "field '%s' is not supported by this server", key);
}

/* messages[] -> j->msgs. openai: content may be text parts; "developer" = system. */
static int parse_messages(struct job *j, int openai)
{
    json_t *m = json_object_get(j->body, "messages");
    size_t n, total = 0;
    if (!m)
        return nr_err_set(NR_EINVAL, "field 'messages' is required");
    if (!json_is_array(m))
        return nr_err_set(NR_EINVAL, "field 'messages' must be an array");
    n = json_array_size(m);
    if (n == 0)
        return nr_err_set(NR_EINVAL, "field 'messages' must not be empty");
    if (n > MAX_MESSAGES)
        return nr_err_set(NR_ELIMIT, "field 'messages' has more than %d messages", MAX_MESSAGES);
    if (!(j->msgs = nr_calloc(n, sizeof *j->msgs)))
        return nr_err_set(NR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(m, i), *c;
        const char *role = NULL;
        if (!json_is_object(e))
            return nr_err_set(NR_EINVAL, "messages[%zu] must be an object", i);
        if (srv_str(e, "role", 1, &role))
            return nr_err_wrap(NR_EINVAL, "messages[%zu]", i);
        if (openai && !strcmp(role, "developer"))
            role = "system";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
            return nr_err_set(
                NR_EINVAL, "messages[%zu]: role must be \"system\", \"user\" or \"assistant\"", i);
        if ((!openai && (refuse(e, "images") || refuse(e, "tool_calls"))) ||
            (openai && refuse(e, "tool_calls")))
            return nr_err_wrap(NR_EUNSUPPORTED, "messages[%zu]", i);
        c = json_object_get(e, "content");
        if (openai && json_is_array(c)) {
            /* text parts, joined with newlines into one string kept in the body */
            struct nr_http_text t = {0};
            for (size_t k = 0; k < json_array_size(c); k++) {
                json_t *part = json_array_get(c, k);
                const char *type = NULL, *text = NULL;
                if (!json_is_object(part) || srv_str(part, "type", 1, &type) ||
                    strcmp(type, "text") || srv_str(part, "text", 1, &text)) {
                    nr_free(t.p);
                    return nr_err_set(NR_EINVAL, "messages[%zu].content[%zu] must be a text part",
                                      i, k);
                }
                nr_http_text_printf(&t, "%s%s", k ? "\n" : "", text);
            }
            if (t.err) {
                nr_free(t.p);
                return nr_err_set(NR_ENOMEM, "out of memory");
            }
            json_object_set_new(e, "content", json_string(t.p ? t.p : ""));
            nr_free(t.p);
            c = json_object_get(e, "content");
        }
        if (!c || !json_is_string(c))
            return nr_err_set(NR_EINVAL, "messages[%zu]: field 'content' must be a string", i);
        total += json_string_length(c);
        if (total > j->s->o.max_prompt)
            return nr_err_set(NR_ELIMIT, "the messages are longer than %zu bytes",
                              j->s->o.max_prompt);
        j->msgs[i].role = role;
        j->msgs[i].content = json_string_value(c);
    }
    j->n_msgs = (int)n;
    return NR_OK;
}

static int bad(struct nr_http_req *r, struct job *j, int rc)
{
    int st = nr_http_error(r, rc == NR_ELIMIT ? 413 : 400, "%s", nr_err_msg());
    job_unref(j);
    return st;
}

/* ------------------------------------------------------------ Ollama */

int route_ollama_generate(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body;
    struct job *j;
    const char *system = NULL;
    int st, rc, stream = 1;

    if ((st = gen_request(s, r, &body, 1)))
        return st;
    if (!(j = job_new(s, K_GENERATE, body))) {
        json_decref(body);
        return nr_http_error(r, 500, "out of memory");
    }
    j->prompt = "";
    if ((rc = srv_str(body, "prompt", 0, &j->prompt)) ||
        (rc = srv_str(body, "system", 0, &system)) || (rc = srv_bool(body, "stream", &stream)) ||
        (rc = srv_bool(body, "raw", &j->raw)) || (rc = refuse(body, "images")) ||
        (rc = refuse(body, "format")) || (rc = refuse(body, "suffix")) ||
        (rc = parse_ollama_options(body, &j->p)))
        return bad(r, j, rc);
    if (strlen(j->prompt) + (system ? strlen(system) : 0) > s->o.max_prompt)
        return bad(r, j,
                   nr_err_set(NR_ELIMIT, "the prompt is longer than %zu bytes", s->o.max_prompt));
    j->stream = stream;
    if (!j->prompt[0] && !system) {
        /* Ollama answers an empty prompt by loading the model: done at once */
        char when[40];
        st = nr_http_reply_json(r, 200,
                                json_pack("{s:s,s:s,s:s,s:b,s:s}", "model", s->llm_name,
                                          "created_at", now_rfc3339(when, sizeof when), "response",
                                          "", "done", 1, "done_reason", "load"));
        job_unref(j);
        return st;
    }
    if (!j->raw) {
        if (!(j->msgs = nr_calloc(2, sizeof *j->msgs)))
            return bad(r, j, nr_err_set(NR_ENOMEM, "out of memory"));
        if (system)
            j->msgs[j->n_msgs++] = (struct nr_chat_msg){"system", system};
        j->msgs[j->n_msgs++] = (struct nr_chat_msg){"user", j->prompt};
    }
    return start(j, r);
}

int route_ollama_chat(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body;
    struct job *j;
    int st, rc, stream = 1;

    if ((st = gen_request(s, r, &body, 1)))
        return st;
    if (!(j = job_new(s, K_CHAT, body))) {
        json_decref(body);
        return nr_http_error(r, 500, "out of memory");
    }
    if ((rc = srv_bool(body, "stream", &stream)) || (rc = refuse(body, "tools")) ||
        (rc = refuse(body, "format")) || (rc = parse_ollama_options(body, &j->p)) ||
        (rc = parse_messages(j, 0)))
        return bad(r, j, rc);
    j->stream = stream;
    return start(j, r);
}

/* ------------------------------------------------------------ OpenAI */

static int parse_openai_params(struct job *j, int default_max)
{
    json_t *b = j->body, *so;
    int64_t n = 1, mt = default_max;
    double d;
    /* fields the request leaves out keep the server's defaults
     * (nr_gen_params_default), as Ollama's and llama.cpp's OpenAI layers do:
     * top_k, min_p and the repeat penalty are not in OpenAI's API at all */
    if (srv_int(b, "max_tokens", 1, 1 << 20, &mt) ||
        srv_int(b, "max_completion_tokens", 1, 1 << 20, &mt) || srv_int(b, "n", 1, 1, &n) ||
        srv_bool(b, "stream", &j->stream))
        return NR_EINVAL;
    j->p.max_tokens = (int)mt;
    d = j->p.temperature;
    if (srv_num(b, "temperature", 0, 2, &d))
        return NR_EINVAL;
    j->p.temperature = (float)d;
    d = j->p.top_p;
    if (srv_num(b, "top_p", 0, 1, &d))
        return NR_EINVAL;
    j->p.top_p = (float)d;
    d = 0;
    if (srv_num(b, "frequency_penalty", -2, 2, &d) || srv_num(b, "presence_penalty", -2, 2, &d))
        return NR_EINVAL;
    {
        int64_t seed = (int64_t)j->p.seed;
        if (srv_int(b, "seed", INT64_MIN, INT64_MAX, &seed))
            return NR_EINVAL;
        j->p.seed = (uint64_t)seed;
    }
    if ((so = json_object_get(b, "stream_options")) && !json_is_null(so)) {
        if (!json_is_object(so) || srv_bool(so, "include_usage", &j->include_usage))
            return nr_err_set(NR_EINVAL,
                              "field 'stream_options' must be {\"include_usage\": bool}");
    }
    if (refuse(b, "tools") || refuse(b, "logprobs") || refuse(b, "echo") || refuse(b, "suffix"))
        return NR_EUNSUPPORTED;
    {
        json_t *rf = json_object_get(b, "response_format");
        const char *t = NULL;
        if (rf && !json_is_null(rf) &&
            (!json_is_object(rf) || srv_str(rf, "type", 1, &t) || strcmp(t, "text")))
            return nr_err_set(NR_EUNSUPPORTED,
                              "field 'response_format' must be {\"type\": \"text\"}");
    }
    return parse_stop(json_object_get(b, "stop"), &j->p, "stop");
}

int route_openai_chat(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body;
    struct job *j;
    int st, rc;

    if ((st = gen_request(s, r, &body, 1)))
        return st;
    if (!(j = job_new(s, K_OAI_CHAT, body))) {
        json_decref(body);
        return nr_http_error(r, 500, "out of memory");
    }
    if ((rc = parse_openai_params(j, 0)) || (rc = parse_messages(j, 1)))
        return bad(r, j, rc);
    return start(j, r);
}

int route_openai_completions(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body, *pr;
    struct job *j;
    int st, rc;

    if ((st = gen_request(s, r, &body, 1)))
        return st;
    if (!(j = job_new(s, K_OAI_COMPLETION, body))) {
        json_decref(body);
        return nr_http_error(r, 500, "out of memory");
    }
    if ((rc = parse_openai_params(j, 16))) /* OpenAI's default max_tokens for completions */
        return bad(r, j, rc);
    pr = json_object_get(body, "prompt");
    if (json_is_array(pr) && json_array_size(pr) == 1)
        pr = json_array_get(pr, 0);
    if (!pr || !json_is_string(pr))
        return bad(r, j,
                   nr_err_set(NR_EINVAL, pr ? "field 'prompt' must be a string (or an array "
                                              "of one string)"
                                            : "field 'prompt' is required"));
    j->prompt = json_string_value(pr);
    if (json_string_length(pr) > s->o.max_prompt)
        return bad(r, j,
                   nr_err_set(NR_ELIMIT, "the prompt is longer than %zu bytes", s->o.max_prompt));
    return start(j, r);
}

/* ------------------------------------------------------------ ask */

/*
 * POST /v1/ask {"question", "history"?: [{role, content}], "k"?, "threshold"?,
 * "collection"?, "stream"? (default true), "options"? (Ollama's)} ->
 * NDJSON {"type":"answer","text":...} pieces, then one
 * {"type":"sources","sources":[...],"no_answer","cited","timings"} line; with
 * stream false one object with "answer" too.
 */
int route_ask(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body, *h;
    struct job *j;
    const char *col = NULL;
    int64_t k = 5;
    double thr;
    int st, rc, stream = 1;

    if ((st = gen_request(s, r, &body, 0)))
        return st;
    if (!(j = job_new(s, K_ASK, body))) {
        json_decref(body);
        return nr_http_error(r, 500, "out of memory");
    }
    nr_ask_req_default(&j->ask);
    thr = j->ask.threshold;
    k = j->ask.k;
    j->p = j->ask.gen;
    if ((rc = srv_str(body, "question", 1, &j->ask.question)) ||
        (rc = srv_int(body, "k", 1, NR_ASK_MAX_K, &k)) ||
        (rc = srv_num(body, "threshold", -1, 1, &thr)) ||
        (rc = srv_str(body, "collection", 0, &col)) || (rc = srv_bool(body, "stream", &stream)) ||
        (rc = parse_ollama_options(body, &j->p)))
        return bad(r, j, rc);
    if (!j->ask.question[0] || strlen(j->ask.question) > NR_ASK_MAX_QUESTION)
        return bad(
            r, j,
            nr_err_set(NR_EINVAL, "field 'question' must be 1-%d bytes", NR_ASK_MAX_QUESTION));
    if ((h = json_object_get(body, "history"))) {
        json_t *saved = json_incref(json_object_get(body, "messages"));
        if (!json_is_array(h) || json_array_size(h) > NR_ASK_MAX_HISTORY) {
            json_decref(saved);
            return bad(r, j,
                       nr_err_set(NR_EINVAL,
                                  "field 'history' must be an array of at most "
                                  "%d messages",
                                  NR_ASK_MAX_HISTORY));
        }
        /* parse_messages reads "messages": point it at the history */
        json_object_set(body, "messages", h);
        rc = json_array_size(h) ? parse_messages(j, 0) : NR_OK;
        if (saved)
            json_object_set_new(body, "messages", saved);
        else
            json_object_del(body, "messages");
        if (rc)
            return bad(r, j, rc);
        for (int i = 0; i < j->n_msgs; i++)
            if (!strcmp(j->msgs[i].role, "system"))
                return bad(r, j,
                           nr_err_set(NR_EINVAL,
                                      "history[%d]: only user and assistant "
                                      "turns",
                                      i));
    }
    j->ask.history = j->msgs;
    j->ask.n_history = j->n_msgs;
    j->ask.k = (int)k;
    j->ask.threshold = (float)thr;
    j->ask.collection = col;
    j->ask.gen = j->p;
    j->stream = stream;
    return start(j, r);
}
