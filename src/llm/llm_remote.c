/*
 * llm_remote.c — the remote generator backends of nr_llm: an Ollama server
 * (POST /api/chat, /api/generate; NDJSON) and any OpenAI-compatible server
 * (POST /v1/chat/completions, /v1/completions; server-sent events).
 *
 * One request = one libcurl easy handle on the calling thread (no shared
 * handle state, so any number of threads may run requests at once; llm.c
 * bounds how many). The body is parsed as it arrives by nr_llm_stream: the
 * write callback feeds it whatever chunk curl hands over, and it cuts lines
 * itself, so a JSON object or an SSE event split across reads, or many in
 * one read, parse the same.
 *
 * Wire formats handled (see llm_internal.h for the fields read):
 *   Ollama   {"message":{"role":"assistant","content":"Hi"},"done":false}\n
 *            ... {"done":true,"done_reason":"stop","prompt_eval_count":9,
 *                 "prompt_eval_duration":1200000,"eval_count":2,...}\n
 *   OpenAI   data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\n\n
 *            ... data: [DONE]\n\n
 *
 * Failures: a server that cannot be reached, or goes silent for timeout_s
 * seconds, is NR_EIO naming the URL; an HTTP error status, an error object
 * in the stream, a malformed line or a stream that stops before its end is
 * NR_EREMOTE with the server's message. Limits: a line or event above
 * NR_LLM_MAX_LINE bytes is refused (NR_ELIMIT), an error body is read up to
 * NR_LLM_MAX_ERROR bytes; redirects are not followed and only http/https
 * URLs are used.
 *
 * Cancellation: *p->cancel is polled from curl's transfer-info callback
 * (several times a second even while no byte arrives) and the callback's
 * nonzero return stops the write callback; either aborts the transfer,
 * which closes the connection — that is how the remote server learns the
 * client is gone and frees its own slot.
 *
 * Trade-off: the OpenAI request carries only the standard sampling fields
 * (temperature, top_p, max_tokens, seed, stop); top_k, min_p and the
 * repeat penalty are not part of that API and strict servers reject unknown
 * fields, so they stay at the server's defaults.
 */
#include "llm_internal.h"
#include "nr_llm.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- stream parser */

void nr_llm_stream_init(struct nr_llm_stream *s, int proto, int chat, nr_gen_cb cb, void *ud)
{
    memset(s, 0, sizeof *s);
    s->proto = proto;
    s->chat = chat;
    s->cb = cb;
    s->ud = ud;
    s->prompt_tokens = s->gen_tokens = -1;
    s->prompt_s = s->gen_s = -1;
}

void nr_llm_stream_free(struct nr_llm_stream *s)
{
    nr_free(s->line);
    nr_free(s->event);
    s->line = s->event = NULL;
    s->line_len = s->line_cap = s->event_len = s->event_cap = 0;
}

static const char *proto_name(int proto)
{
    return proto == NR_LLM_OLLAMA ? "ollama" : "openai";
}

static int stream_fail(struct nr_llm_stream *s, int code, const char *fmt, const char *arg,
                       size_t arg_len)
{
    char shown[161];
    size_t n = arg_len < sizeof shown - 1 ? arg_len : sizeof shown - 1;
    /* cut on a character boundary and drop control bytes so the message stays one line */
    while (n > 0 && n < arg_len && ((unsigned char)arg[n] & 0xC0) == 0x80)
        n--;
    for (size_t i = 0; i < n; i++)
        shown[i] = (unsigned char)arg[i] < 0x20 ? ' ' : arg[i];
    shown[n] = '\0';
    if (!s->status) {
        char msg[400];
        snprintf(msg, sizeof msg, fmt, shown);
        snprintf(s->err, sizeof s->err, "%s: %s", proto_name(s->proto), msg);
        s->status = code;
    }
    return nr_err_set(s->status, "%s", s->err);
}

/* Append n bytes to a buffer capped at NR_LLM_MAX_LINE (+ NUL). */
static int buf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    size_t need;
    if (nr_add_size(*len, n, &need) || need > NR_LLM_MAX_LINE)
        return NR_ELIMIT;
    if (need + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        char *nb;
        while (c < need + 1)
            c *= 2;
        if (c > NR_LLM_MAX_LINE + 1)
            c = NR_LLM_MAX_LINE + 1;
        nb = nr_realloc(*buf, c);
        if (!nb)
            return NR_ENOMEM;
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len = need;
    (*buf)[need] = '\0';
    return NR_OK;
}

static int deliver(struct nr_llm_stream *s, json_t *text)
{
    const char *t;
    size_t n;
    if (!json_is_string(text))
        return NR_OK;
    t = json_string_value(text);
    n = json_string_length(text);
    if (n == 0)
        return NR_OK;
    s->pieces++;
    if (s->cb && s->cb(s->ud, t, n)) {
        s->canceled = 1;
        return NR_ECANCELED;
    }
    return NR_OK;
}

static int json_count(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return -1;
    return (int)json_integer_value(v);
}

static double json_ns_to_s(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    return (double)json_integer_value(v) * 1e-9;
}

static const char *map_reason(const char *r)
{
    return r && !strcmp(r, "length") ? "length" : "stop";
}

/* The message of an "error" member: a string, or an object with "message". */
static const char *error_text(json_t *err)
{
    if (json_is_string(err))
        return json_string_value(err);
    if (json_is_object(err) && json_is_string(json_object_get(err, "message")))
        return json_string_value(json_object_get(err, "message"));
    return NULL;
}

static int ollama_line(struct nr_llm_stream *s, const char *line, size_t len)
{
    json_t *o, *err, *done;
    int rc = NR_OK;

    o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        if (s->at_end)
            return stream_fail(s, NR_EREMOTE,
                               "the stream ended before the answer was done, inside: %s", line,
                               len);
        return stream_fail(s, NR_EREMOTE, "malformed stream line: %s", line, len);
    }
    err = json_object_get(o, "error");
    if (err) {
        const char *m = error_text(err);
        rc = stream_fail(s, NR_EREMOTE, "%s", m ? m : "error", strlen(m ? m : "error"));
        json_decref(o);
        return rc;
    }
    if (s->chat) {
        json_t *msg = json_object_get(o, "message");
        if (json_is_object(msg))
            rc = deliver(s, json_object_get(msg, "content"));
    } else {
        rc = deliver(s, json_object_get(o, "response"));
    }
    done = json_object_get(o, "done");
    if (rc == NR_OK && json_is_true(done)) {
        json_t *r = json_object_get(o, "done_reason");
        s->done = 1;
        s->done_reason = map_reason(json_is_string(r) ? json_string_value(r) : NULL);
        s->prompt_tokens = json_count(o, "prompt_eval_count");
        s->gen_tokens = json_count(o, "eval_count");
        s->prompt_s = json_ns_to_s(o, "prompt_eval_duration");
        s->gen_s = json_ns_to_s(o, "eval_duration");
    }
    json_decref(o);
    return rc;
}

static int openai_event(struct nr_llm_stream *s, const char *data, size_t len)
{
    json_t *o, *err, *choices, *usage;
    int rc = NR_OK;

    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        s->done = 1;
        if (!s->done_reason)
            s->done_reason = "stop";
        return NR_OK;
    }
    o = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        if (s->at_end)
            return stream_fail(s, NR_EREMOTE,
                               "the stream ended before the answer was done, inside: %s", data,
                               len);
        return stream_fail(s, NR_EREMOTE, "malformed stream event: %s", data, len);
    }
    err = json_object_get(o, "error");
    if (err && !json_is_null(err)) {
        const char *m = error_text(err);
        rc = stream_fail(s, NR_EREMOTE, "%s", m ? m : "error", strlen(m ? m : "error"));
        json_decref(o);
        return rc;
    }
    choices = json_object_get(o, "choices");
    if (json_is_array(choices) && json_array_size(choices) > 0) {
        json_t *c = json_array_get(choices, 0), *fr;
        if (s->chat) {
            json_t *delta = json_object_get(c, "delta");
            if (json_is_object(delta))
                rc = deliver(s, json_object_get(delta, "content"));
        } else {
            rc = deliver(s, json_object_get(c, "text"));
        }
        fr = json_object_get(c, "finish_reason");
        if (json_is_string(fr))
            s->done_reason = map_reason(json_string_value(fr));
    }
    usage = json_object_get(o, "usage");
    if (json_is_object(usage)) {
        s->prompt_tokens = json_count(usage, "prompt_tokens");
        s->gen_tokens = json_count(usage, "completion_tokens");
    }
    json_decref(o);
    return rc;
}

static int sse_dispatch(struct nr_llm_stream *s)
{
    int rc;
    if (s->event_len == 0)
        return NR_OK;
    rc = openai_event(s, s->event, s->event_len);
    s->event_len = 0;
    return rc;
}

static int sse_line(struct nr_llm_stream *s, const char *line, size_t len)
{
    int rc;
    if (len == 0)
        return sse_dispatch(s);
    if (line[0] == ':')
        return NR_OK;
    if (len < 5 || memcmp(line, "data:", 5) != 0)
        return NR_OK; /* event:, id:, retry: — nothing we use */
    line += 5;
    len -= 5;
    if (len > 0 && line[0] == ' ') {
        line++;
        len--;
    }
    if (s->event_len > 0 &&
        (rc = buf_append(&s->event, &s->event_len, &s->event_cap, "\n", 1)) != NR_OK)
        goto fail;
    if ((rc = buf_append(&s->event, &s->event_len, &s->event_cap, line, len)) != NR_OK)
        goto fail;
    return NR_OK;
fail:
    return stream_fail(s, rc, "%s", rc == NR_ELIMIT ? "stream event too long" : "out of memory",
                       rc == NR_ELIMIT ? 21 : 13);
}

static int handle_line(struct nr_llm_stream *s, char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if (s->proto == NR_LLM_OLLAMA) {
        size_t i = 0;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == len)
            return NR_OK;
        return ollama_line(s, line, len);
    }
    return sse_line(s, line, len);
}

int nr_llm_stream_feed(struct nr_llm_stream *s, const char *p, size_t n)
{
    if (s->status)
        return nr_err_set(s->status, "%s", s->err);
    if (s->canceled)
        return NR_ECANCELED;
    while (n > 0 && !s->done) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        int rc = buf_append(&s->line, &s->line_len, &s->line_cap, p, take);
        if (rc != NR_OK)
            return stream_fail(s, rc, "%s",
                               rc == NR_ELIMIT ? "stream line too long" : "out of memory",
                               rc == NR_ELIMIT ? 20 : 13);
        p += take;
        n -= take;
        if (!nl)
            break;
        p++; /* the newline */
        n--;
        rc = handle_line(s, s->line ? s->line : (char *)"", s->line_len);
        s->line_len = 0;
        if (rc != NR_OK)
            return rc;
    }
    return NR_OK;
}

int nr_llm_stream_end(struct nr_llm_stream *s)
{
    int rc;
    if (s->status)
        return nr_err_set(s->status, "%s", s->err);
    if (s->canceled)
        return NR_ECANCELED;
    s->at_end = 1;
    if (!s->done && s->line_len > 0) {
        rc = handle_line(s, s->line, s->line_len);
        s->line_len = 0;
        if (rc != NR_OK)
            return rc;
    }
    if (!s->done && s->proto == NR_LLM_OPENAI && (rc = sse_dispatch(s)) != NR_OK)
        return rc;
    /* An OpenAI stream that gave its finish_reason but no [DONE] is complete in all but form. */
    if (!s->done && !(s->proto == NR_LLM_OPENAI && s->done_reason))
        return stream_fail(s, NR_EREMOTE, "%s", "the stream ended before the answer was done", 43);
    return NR_OK;
}

void nr_llm_error_message(const char *body, size_t len, long http_status, char *out, size_t cap)
{
    json_t *o = len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *m = json_is_object(o) ? error_text(json_object_get(o, "error")) : NULL;
    size_t n, i;
    if (cap == 0)
        return;
    if (!m) {
        m = body;
    } else {
        len = strlen(m);
    }
    while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == '\r' || m[len - 1] == ' '))
        len--;
    if (len == 0) {
        snprintf(out, cap, "HTTP status %ld", http_status);
        json_decref(o);
        return;
    }
    n = len < cap - 1 ? len : cap - 1;
    while (n > 0 && n < len && ((unsigned char)m[n] & 0xC0) == 0x80)
        n--;
    for (i = 0; i < n; i++)
        out[i] = (unsigned char)m[i] < 0x20 ? ' ' : m[i];
    out[n] = '\0';
    json_decref(o);
}

/* ---------------------------------------------------------------- requests */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct xfer {
    CURL *h;
    struct nr_llm_stream stream;
    const volatile int *cancel;
    long http_status; /* 0 until the first body byte */
    char *errbody;    /* body of an HTTP error answer (bounded) */
    size_t err_len, err_cap;
    int rc; /* first error of the stream, NR_ECANCELED, or NR_OK */
    nr_gen_cb user_cb;
    void *user_ud;
    double t0, t_first; /* request start, first text piece (0: none yet) */
    double t_last;      /* last body byte (or the start) */
    double timeout_s;   /* idle limit */
    int timed_out;
};

static int piece_cb(void *ud, const char *text, size_t len)
{
    struct xfer *x = ud;
    if (x->t_first == 0)
        x->t_first = now_s();
    return x->user_cb ? x->user_cb(x->user_ud, text, len) : 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    x->t_last = now_s();
    if (x->http_status == 0)
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->http_status);
    if (x->http_status >= 300) {
        size_t room = NR_LLM_MAX_ERROR - x->err_len;
        size_t take = n < room ? n : room;
        if (take > 0 && buf_append(&x->errbody, &x->err_len, &x->err_cap, p, take) != NR_OK)
            return 0;
        return n;
    }
    x->rc = nr_llm_stream_feed(&x->stream, p, n);
    return x->rc == NR_OK ? n : 0;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct xfer *x = ud;
    if (x->cancel && __atomic_load_n(x->cancel, __ATOMIC_RELAXED))
        return 1;
    /* curl's own low-speed check averages over seconds, so a server that sent a burst and then
     * went silent would be waited on far longer than timeout_s: track silence here instead */
    if (now_s() - x->t_last > x->timeout_s) {
        x->timed_out = 1;
        return 1;
    }
    return 0;
}

static int set_options(json_t *req, const struct llm_remote *r, const struct nr_gen_params *p)
{
    json_t *stop = json_array(), *opts = r->proto == NR_LLM_OLLAMA ? json_object() : req;
    int rc = 0;
    if (!stop || !opts) {
        json_decref(stop);
        if (opts != req)
            json_decref(opts);
        return -1;
    }
    for (int i = 0; i < NR_GEN_MAX_STOP && p->stop[i]; i++)
        rc |= json_array_append_new(stop, json_string(p->stop[i]));
    rc |= json_object_set_new(opts, "temperature", json_real(p->temperature));
    rc |= json_object_set_new(opts, "top_p", json_real(p->top_p));
    rc |= json_object_set_new(opts, "seed", json_integer((json_int_t)(p->seed & INT64_MAX)));
    if (r->proto == NR_LLM_OLLAMA) {
        rc |= json_object_set_new(opts, "top_k", json_integer(p->top_k));
        rc |= json_object_set_new(opts, "min_p", json_real(p->min_p));
        rc |= json_object_set_new(opts, "repeat_penalty", json_real(p->repeat_penalty));
        rc |= json_object_set_new(opts, "repeat_last_n", json_integer(p->repeat_last_n));
        if (p->max_tokens > 0)
            rc |= json_object_set_new(opts, "num_predict", json_integer(p->max_tokens));
    } else if (p->max_tokens > 0) {
        rc |= json_object_set_new(opts, "max_tokens", json_integer(p->max_tokens));
    }
    if (json_array_size(stop) > 0)
        rc |= json_object_set_new(opts, "stop", stop);
    else
        json_decref(stop);
    if (opts != req)
        rc |= json_object_set_new(req, "options", opts);
    return rc ? -1 : 0;
}

static char *request_body(const struct llm_remote *r, const struct nr_chat_msg *msgs, int n,
                          const char *prompt, const struct nr_gen_params *p)
{
    json_t *req = json_object();
    char *out = NULL, *s;
    int rc = req ? 0 : -1;

    if (rc == 0) {
        rc |= json_object_set_new(req, "model", json_string(r->model));
        rc |= json_object_set_new(req, "stream", json_true());
    }
    if (rc == 0 && msgs) {
        json_t *arr = json_array();
        rc |= arr ? 0 : -1;
        for (int i = 0; rc == 0 && i < n; i++) {
            json_t *m = json_pack("{s:s, s:s}", "role", msgs[i].role, "content", msgs[i].content);
            rc |= m ? json_array_append_new(arr, m) : -1;
        }
        rc |= json_object_set_new(req, "messages", arr);
    } else if (rc == 0) {
        json_t *ps = json_string(prompt);
        rc |= ps ? json_object_set_new(req, "prompt", ps) : -1;
        if (r->proto == NR_LLM_OLLAMA)
            rc |= json_object_set_new(req, "raw", json_true());
    }
    if (rc == 0 && r->proto == NR_LLM_OPENAI)
        rc |= json_object_set_new(req, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (rc == 0)
        rc = set_options(req, r, p);
    if (rc == 0 && (s = json_dumps(req, JSON_COMPACT)) != NULL) {
        out = nr_strdup(s);
        free(s);
    }
    json_decref(req);
    return out;
}

int llm_remote_run(const struct llm_remote *r, const struct nr_chat_msg *msgs, int n,
                   const char *prompt, const struct nr_gen_params *p, nr_gen_cb cb, void *ud,
                   struct nr_gen_stats *st)
{
    const char *name = proto_name(r->proto);
    const char *path = r->proto == NR_LLM_OLLAMA
                           ? (msgs ? "/api/chat" : "/api/generate")
                           : (msgs ? "/v1/chat/completions" : "/v1/completions");
    char url[NR_LLM_MAX_URL + 32], auth[600];
    struct curl_slist *hdr = NULL, *h2;
    struct xfer x;
    char *body = NULL;
    CURLcode cc;
    int rc = NR_OK;
    double t_end;

    memset(&x, 0, sizeof x);
    memset(st, 0, sizeof *st);
    st->done_reason = "stop";
    for (int i = 0; msgs && i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return nr_err_set(NR_EINVAL, "%s: message %d has no role or content", name, i);
    if (!msgs && !prompt)
        return nr_err_set(NR_EINVAL, "%s: no prompt", name);
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return nr_err_set(NR_EINTERNAL, "%s: libcurl failed to initialise", name);
    snprintf(url, sizeof url, "%s%s", r->url, path);
    body = request_body(r, msgs, n, prompt, p);
    if (!body)
        return nr_err_set(NR_ENOMEM, "%s: cannot build the request", name);

    nr_llm_stream_init(&x.stream, r->proto, msgs != NULL, piece_cb, &x);
    x.user_cb = cb;
    x.user_ud = ud;
    x.cancel = p->cancel;
    x.h = curl_easy_init();
    if (!x.h) {
        rc = nr_err_set(NR_ENOMEM, "%s: cannot create a transfer", name);
        goto fail;
    }
    h2 = curl_slist_append(hdr, "Content-Type: application/json");
    if (h2)
        hdr = h2;
    h2 = h2 ? curl_slist_append(hdr, r->proto == NR_LLM_OLLAMA ? "Accept: application/x-ndjson"
                                                               : "Accept: text/event-stream")
            : NULL;
    if (h2)
        hdr = h2;
    if (h2 && r->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->api_key);
        h2 = curl_slist_append(hdr, auth);
        if (h2)
            hdr = h2;
    }
    if (!h2) {
        rc = nr_err_set(NR_ENOMEM, "%s: cannot build the request headers", name);
        goto fail;
    }
    curl_easy_setopt(x.h, CURLOPT_URL, url);
    curl_easy_setopt(x.h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x.h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(x.h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(x.h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(x.h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x.h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(x.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(x.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(x.h, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(x.h, CURLOPT_CONNECTTIMEOUT, r->timeout_s);
    curl_easy_setopt(x.h, CURLOPT_USERAGENT, "nanorag");

    x.t0 = x.t_last = now_s();
    x.timeout_s = (double)r->timeout_s;
    cc = curl_easy_perform(x.h);
    t_end = now_s();
    if (x.http_status == 0)
        curl_easy_getinfo(x.h, CURLINFO_RESPONSE_CODE, &x.http_status);

    if (x.timed_out) {
        rc = nr_err_set(NR_EIO, "%s: no answer from %s for %ld s", name, url, r->timeout_s);
        goto fail;
    } else if (x.stream.canceled || cc == CURLE_ABORTED_BY_CALLBACK) {
        st->done_reason = "cancel";
    } else if (x.rc != NR_OK) {
        rc = nr_err_set(x.rc, "%s (%s)", x.stream.err, url);
        goto fail;
    } else if (cc != CURLE_OK) {
        if (cc == CURLE_OPERATION_TIMEDOUT)
            rc = nr_err_set(NR_EIO, "%s: no answer from %s for %ld s", name, url, r->timeout_s);
        else
            rc = nr_err_set(NR_EIO, "%s: cannot reach %s: %s", name, url, curl_easy_strerror(cc));
        goto fail;
    } else if (x.http_status >= 300 || x.http_status < 200) {
        char msg[512];
        nr_llm_error_message(x.errbody ? x.errbody : "", x.err_len, x.http_status, msg, sizeof msg);
        rc = nr_err_set(NR_EREMOTE, "%s: HTTP %ld from %s: %s", name, x.http_status, url, msg);
        goto fail;
    } else if ((rc = nr_llm_stream_end(&x.stream)) != NR_OK) {
        rc = nr_err_set(rc, "%s (%s)", x.stream.err, url);
        goto fail;
    } else {
        st->done_reason = x.stream.done_reason ? x.stream.done_reason : "stop";
    }
    st->prompt_tokens = x.stream.prompt_tokens > 0 ? x.stream.prompt_tokens : 0;
    st->prompt_evaluated = st->prompt_tokens;
    st->gen_tokens = x.stream.gen_tokens >= 0 ? x.stream.gen_tokens : x.stream.pieces;
    /* the server's own timings when it gives them (Ollama); else the wire's: time to the
     * first piece stands for prompt processing, the rest for generation */
    if (x.stream.prompt_s >= 0 && x.stream.gen_s >= 0) {
        st->prompt_s = x.stream.prompt_s;
        st->gen_s = x.stream.gen_s;
    } else {
        double first = x.t_first > 0 ? x.t_first : t_end;
        st->prompt_s = first - x.t0;
        st->gen_s = t_end - first;
    }
fail:
    curl_slist_free_all(hdr);
    if (x.h)
        curl_easy_cleanup(x.h);
    nr_llm_stream_free(&x.stream);
    nr_free(x.errbody);
    nr_free(body);
    return rc;
}
