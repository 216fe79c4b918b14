/*
 * nr_llm: the remote backends' stream parsers (NDJSON and SSE fed split at
 * every byte boundary, error objects, malformed and truncated streams, caps,
 * cancellation), the spec grammar, and the HTTP path end to end against a
 * real HTTP server on loopback (libmicrohttpd in this process) that answers
 * in the Ollama and OpenAI wire formats: status errors, unreachable and
 * silent servers, cancellation, and the slot/queue limits (NR_EBUSY at once).
 *
 * The byte streams in tests/fixtures/llm_* are written in the formats the
 * Ollama and OpenAI API documentation show (not captured from those
 * servers). The same clients then run against a real second nanorag
 * (`nanorag serve`, the binary beside this test) acting as the Ollama and the
 * OpenAI server: greedy chat and completion equal the local backend's.
 */
#include "nr_test.h"

#include "llm_internal.h"
#include "nr_err.h"
#include "nr_file.h"
#include "nr_llm.h"
#include "nr_mem.h"

#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPECTED "The sky is blue — «ciel» 空 [1].\n\"quoted\"\tand\\backslash"

struct sink {
    char text[8192];
    size_t len;
    int calls;
    int stop_at; /* return 1 on this call (1-based); 0: never */
};

static int on_text(void *ud, const char *t, size_t n)
{
    struct sink *s = ud;
    s->calls++;
    if (s->len + n < sizeof s->text) {
        memcpy(s->text + s->len, t, n);
        s->len += n;
        s->text[s->len] = '\0';
    }
    return s->stop_at && s->calls >= s->stop_at;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *fixture(const char *name, size_t *len)
{
    char rel[256], *buf = NULL;
    snprintf(rel, sizeof rel, "tests/fixtures/%s", name);
    if (nr_file_read(nr_test_src_path(rel), 1 << 20, &buf, len) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "fixture %s: %s", name, nr_err_msg());
        return NULL;
    }
    return buf;
}

/* Feed buf in pieces cut at `cuts` (sorted offsets), then end the stream. */
static int feed_cut(struct nr_llm_stream *s, const char *buf, size_t len, const size_t *cuts,
                    int ncut)
{
    size_t at = 0;
    int rc;
    for (int i = 0; i <= ncut; i++) {
        size_t to = i < ncut ? cuts[i] : len;
        if ((rc = nr_llm_stream_feed(s, buf + at, to - at)) != NR_OK)
            return rc;
        at = to;
    }
    return nr_llm_stream_end(s);
}

static void check_stream_file(const char *name, int proto)
{
    size_t len = 0;
    char *buf = fixture(name, &len);
    struct nr_llm_stream s;
    struct sink k;
    int bad = 0;
    unsigned rnd = 12345;

    if (!buf)
        return;
    /* every single cut point, including 0 and len */
    for (size_t cut = 0; cut <= len; cut++) {
        memset(&k, 0, sizeof k);
        nr_llm_stream_init(&s, proto, 1, on_text, &k);
        int rc = feed_cut(&s, buf, len, &cut, 1);
        if (rc != NR_OK || strcmp(k.text, EXPECTED) != 0 || !s.done_reason ||
            strcmp(s.done_reason, "length") != 0 || s.prompt_tokens != 26 || s.gen_tokens != 4)
            bad++;
        nr_llm_stream_free(&s);
    }
    NR_CHECK_INT(bad, 0);
    /* one byte at a time */
    {
        size_t cuts[4096];
        int n = 0;
        for (size_t i = 1; i < len && n < 4096; i++)
            cuts[n++] = i;
        memset(&k, 0, sizeof k);
        nr_llm_stream_init(&s, proto, 1, on_text, &k);
        NR_CHECK_INT(feed_cut(&s, buf, len, cuts, n), NR_OK);
        NR_CHECK(strcmp(k.text, EXPECTED) == 0);
        NR_CHECK_INT(k.calls, 4);
        nr_llm_stream_free(&s);
    }
    /* 200 random chunkings of 1..40 bytes */
    for (int t = 0; t < 200; t++) {
        size_t cuts[4096], at = 0;
        int n = 0;
        for (;;) {
            rnd = rnd * 1103515245u + 12345u;
            at += 1 + (rnd >> 16) % 40;
            if (at >= len || n == 4096)
                break;
            cuts[n++] = at;
        }
        memset(&k, 0, sizeof k);
        nr_llm_stream_init(&s, proto, 1, on_text, &k);
        if (feed_cut(&s, buf, len, cuts, n) != NR_OK || strcmp(k.text, EXPECTED) != 0)
            bad++;
        nr_llm_stream_free(&s);
    }
    NR_CHECK_INT(bad, 0);
    /* the whole stream at once, twice over: bytes after the end are ignored */
    {
        char *two = nr_malloc(2 * len);
        memcpy(two, buf, len);
        memcpy(two + len, buf, len);
        memset(&k, 0, sizeof k);
        nr_llm_stream_init(&s, proto, 1, on_text, &k);
        NR_CHECK_INT(nr_llm_stream_feed(&s, two, 2 * len), NR_OK);
        NR_CHECK_INT(nr_llm_stream_end(&s), NR_OK);
        NR_CHECK(strcmp(k.text, EXPECTED) == 0);
        nr_llm_stream_free(&s);
        nr_free(two);
    }
    nr_free(buf);
}

static void test_ndjson_any_split(void)
{
    struct nr_llm_stream s;
    size_t len;
    char *buf;
    check_stream_file("llm_ollama_chat.ndjson", NR_LLM_OLLAMA);
    /* Ollama's durations are in ns */
    buf = fixture("llm_ollama_chat.ndjson", &len);
    if (!buf)
        return;
    nr_llm_stream_init(&s, NR_LLM_OLLAMA, 1, NULL, NULL);
    NR_CHECK_INT(nr_llm_stream_feed(&s, buf, len), NR_OK);
    NR_CHECK_INT(nr_llm_stream_end(&s), NR_OK);
    NR_CHECK_NEAR(s.prompt_s, 0.342546, 1e-9);
    NR_CHECK_NEAR(s.gen_s, 4.535599, 1e-9);
    NR_CHECK_INT(s.pieces, 4);
    nr_llm_stream_free(&s);
    nr_free(buf);
}

static void test_sse_any_split(void)
{
    check_stream_file("llm_openai_chat.sse", NR_LLM_OPENAI);
    check_stream_file("llm_openai_chat_crlf.sse", NR_LLM_OPENAI);
}

/* Feed a literal stream whole; return the status of feed, or of end when feed passed. */
static int run_literal(int proto, int chat, const char *text, struct sink *k,
                       struct nr_llm_stream *s)
{
    int rc;
    memset(k, 0, sizeof *k);
    nr_llm_stream_init(s, proto, chat, on_text, k);
    rc = nr_llm_stream_feed(s, text, strlen(text));
    if (rc == NR_OK)
        rc = nr_llm_stream_end(s);
    return rc;
}

static void test_stream_errors(void)
{
    struct nr_llm_stream s;
    struct sink k;

    /* error object, alone and after some text */
    NR_CHECK_INT(run_literal(NR_LLM_OLLAMA, 1,
                             "{\"error\":\"model \\\"nope\\\" not found, try pulling it first\"}\n",
                             &k, &s),
                 NR_EREMOTE);
    NR_CHECK(strstr(s.err, "not found, try pulling") != NULL);
    NR_CHECK(strstr(nr_err_msg(), "not found") != NULL);
    nr_llm_stream_free(&s);
    NR_CHECK_INT(run_literal(NR_LLM_OLLAMA, 1,
                             "{\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":"
                             "false}\n{\"error\":\"out of memory\"}\n",
                             &k, &s),
                 NR_EREMOTE);
    NR_CHECK(strcmp(k.text, "Hel") == 0);
    NR_CHECK(strstr(s.err, "out of memory") != NULL);
    /* sticky: more bytes give the same error and no more text */
    NR_CHECK_INT(nr_llm_stream_feed(&s, "{\"response\":\"x\"}\n", 17), NR_EREMOTE);
    NR_CHECK_INT(k.calls, 1);
    nr_llm_stream_free(&s);
    NR_CHECK_INT(run_literal(NR_LLM_OPENAI, 1,
                             "data: {\"error\":{\"message\":\"Rate limit reached for requests\","
                             "\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
                             &k, &s),
                 NR_EREMOTE);
    NR_CHECK(strstr(s.err, "Rate limit reached") != NULL);
    nr_llm_stream_free(&s);

    /* malformed lines and events */
    NR_CHECK_INT(
        run_literal(NR_LLM_OLLAMA, 1, "{\"message\":{\"content\":\"x\"},\"done\":fal\n", &k, &s),
        NR_EREMOTE);
    NR_CHECK(strstr(s.err, "malformed") != NULL);
    nr_llm_stream_free(&s);
    NR_CHECK_INT(run_literal(NR_LLM_OLLAMA, 1, "[1,2,3]\n", &k, &s), NR_EREMOTE);
    nr_llm_stream_free(&s);
    NR_CHECK_INT(run_literal(NR_LLM_OPENAI, 1, "data: {not json}\n\n", &k, &s), NR_EREMOTE);
    NR_CHECK(strstr(s.err, "malformed") != NULL);
    nr_llm_stream_free(&s);
    /* invalid UTF-8 inside a JSON string is malformed, not passed on */
    NR_CHECK_INT(
        run_literal(NR_LLM_OLLAMA, 0, "{\"response\":\"\xff\xfe\",\"done\":false}\n", &k, &s),
        NR_EREMOTE);
    NR_CHECK_INT(k.calls, 0);
    nr_llm_stream_free(&s);

    /* truncated: no terminating object / event */
    NR_CHECK_INT(run_literal(NR_LLM_OLLAMA, 0, "{\"response\":\"par\",\"done\":false}\n", &k, &s),
                 NR_EREMOTE);
    NR_CHECK(strstr(s.err, "ended before") != NULL);
    NR_CHECK(strcmp(k.text, "par") == 0);
    nr_llm_stream_free(&s);
    NR_CHECK_INT(run_literal(NR_LLM_OPENAI, 1,
                             "data: {\"choices\":[{\"delta\":{\"content\":\"par\"},"
                             "\"finish_reason\":null}]}\n\ndata: {\"choi",
                             &k, &s),
                 NR_EREMOTE);
    nr_llm_stream_free(&s);
    /* a last line without its newline still counts; multi-line SSE data joins with '\n' */
    NR_CHECK_INT(run_literal(NR_LLM_OLLAMA, 0, "{\"response\":\"a\",\"done\":true}", &k, &s),
                 NR_OK);
    NR_CHECK(strcmp(k.text, "a") == 0);
    nr_llm_stream_free(&s);
    NR_CHECK_INT(run_literal(NR_LLM_OPENAI, 0,
                             "event: message\nid: 7\ndata: {\"choices\":\ndata: [{\"text\":\"b\","
                             "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
                             &k, &s),
                 NR_OK);
    NR_CHECK(strcmp(k.text, "b") == 0);
    NR_CHECK(s.done_reason && strcmp(s.done_reason, "stop") == 0);
    NR_CHECK_INT(s.prompt_tokens, -1);
    nr_llm_stream_free(&s);

    /* a line longer than the cap */
    {
        size_t n = NR_LLM_MAX_LINE + 1;
        char *big = nr_malloc(n);
        memset(big, 'x', n);
        memset(&k, 0, sizeof k);
        nr_llm_stream_init(&s, NR_LLM_OLLAMA, 1, on_text, &k);
        NR_CHECK_INT(nr_llm_stream_feed(&s, big, n / 2), NR_OK);
        NR_CHECK_INT(nr_llm_stream_feed(&s, big, n - n / 2), NR_ELIMIT);
        NR_CHECK(s.line_cap <= NR_LLM_MAX_LINE + 1);
        nr_llm_stream_free(&s);
        nr_free(big);
    }
}

static void test_stream_cancel(void)
{
    size_t len;
    char *buf = fixture("llm_openai_chat.sse", &len);
    struct nr_llm_stream s;
    struct sink k;
    if (!buf)
        return;
    memset(&k, 0, sizeof k);
    k.stop_at = 2;
    nr_llm_stream_init(&s, NR_LLM_OPENAI, 1, on_text, &k);
    NR_CHECK_INT(nr_llm_stream_feed(&s, buf, len), NR_ECANCELED);
    NR_CHECK_INT(k.calls, 2);
    NR_CHECK(strcmp(k.text, "The sky is") == 0);
    NR_CHECK_INT(nr_llm_stream_feed(&s, buf, len), NR_ECANCELED);
    NR_CHECK_INT(k.calls, 2);
    nr_llm_stream_free(&s);
    nr_free(buf);
}

static void test_error_message(void)
{
    char m[64];
    const char *b1 = "{\"error\":\"model 'x' not found\"}";
    const char *b2 = "{\"error\":{\"message\":\"Invalid API key\",\"type\":\"auth\"}}";
    const char *b3 = "upstream connect error\r\n";
    nr_llm_error_message(b1, strlen(b1), 404, m, sizeof m);
    NR_CHECK(strcmp(m, "model 'x' not found") == 0);
    nr_llm_error_message(b2, strlen(b2), 401, m, sizeof m);
    NR_CHECK(strcmp(m, "Invalid API key") == 0);
    nr_llm_error_message(b3, strlen(b3), 502, m, sizeof m);
    NR_CHECK(strcmp(m, "upstream connect error") == 0);
    nr_llm_error_message("", 0, 503, m, sizeof m);
    NR_CHECK(strcmp(m, "HTTP status 503") == 0);
    /* cut to fit, never inside a UTF-8 character */
    nr_llm_error_message("ééééé", 10, 500, m, 6);
    NR_CHECK(strcmp(m, "éé") == 0);
}

static void test_spec(void)
{
    struct nr_llm_opts o;
    struct nr_llm *l = NULL;
    struct nr_llm_info info;
    static const char *bad[] = {
        "ollama:",          "ollama:x@ftp://h", "ollama:x@http://h h", "openai:@http://h",
        "ollama:x@http://", "openai:m@",        "ollama:a\tb@http://h"};

    nr_llm_opts_default(&o);
    o.spec = "ollama:llama3.2:3b";
    NR_CHECK_INT(nr_llm_open(&o, &l), NR_OK);
    if (l) {
        nr_llm_info(l, &info);
        NR_CHECK_INT(info.backend, NR_LLM_OLLAMA);
        NR_CHECK(strcmp(info.model, "llama3.2:3b") == 0);
        NR_CHECK(strcmp(info.url, "http://127.0.0.1:11434") == 0);
        NR_CHECK_INT(info.slots, 4);
        NR_CHECK_INT(info.queue, 16);
        NR_CHECK(info.local == NULL);
        /* remote: an estimate of bytes / 4 */
        NR_CHECK_INT(nr_llm_count_tokens(l, "abcdefghi", 9), 3);
        nr_llm_close(l);
        l = NULL;
    }
    o.spec = "openai:gpt-4o-mini@http://127.0.0.1:9/v1/";
    o.api_key = "sk-test";
    NR_CHECK_INT(nr_llm_open(&o, &l), NR_OK);
    if (l) {
        nr_llm_info(l, &info);
        NR_CHECK_INT(info.backend, NR_LLM_OPENAI);
        NR_CHECK(strcmp(info.model, "gpt-4o-mini") == 0);
        NR_CHECK(strcmp(info.url, "http://127.0.0.1:9") == 0);
        nr_llm_close(l);
        l = NULL;
    }
    o.api_key = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.spec = bad[i];
        NR_CHECK_MSG(nr_llm_open(&o, &l) == NR_EINVAL, "spec \"%s\" accepted", bad[i]);
        NR_CHECK(l == NULL);
    }
    o.spec = "ollama:x";
    o.slots = -1;
    NR_CHECK_INT(nr_llm_open(&o, &l), NR_EINVAL);
    o.slots = 0;
    o.queue = -1;
    NR_CHECK_INT(nr_llm_open(&o, &l), NR_EINVAL);
    /* a local file that is not there */
    nr_llm_opts_default(&o);
    o.spec = "/nonexistent/model.gguf";
    NR_CHECK(nr_llm_open(&o, &l) < 0);
    NR_CHECK(l == NULL);
}

/* ---------------------------------------------------------------- a fake server on loopback */

static struct MHD_Daemon *daemon_;
static int port_;
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static char seen_body[8192], seen_auth[256], seen_url[128];

struct conn {
    char body[8192];
    size_t len;
};

struct reply {
    char *data; /* owned */
    size_t len, at;
    size_t step;    /* bytes per callback */
    int hang_after; /* after this many bytes, stall for hang_s (then end) */
    double hang_s;
};

static ssize_t reply_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct reply *r = cls;
    size_t n;
    if (r->hang_after >= 0 && r->at >= (size_t)r->hang_after) {
        usleep((useconds_t)(r->hang_s * 1e6));
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (r->at >= r->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    n = r->len - r->at;
    if (n > r->step)
        n = r->step;
    if (n > max)
        n = max;
    if (r->hang_after >= 0 && r->at + n > (size_t)r->hang_after)
        n = (size_t)r->hang_after - r->at;
    memcpy(buf, r->data + r->at, n);
    r->at += n;
    return (ssize_t)n;
}

static void reply_free(void *cls)
{
    struct reply *r = cls;
    free(r->data);
    free(r);
}

/* The fixture stream rewritten for a completion route (text fields instead of chat ones). */
static char *completion_stream(int ollama, size_t *len)
{
    char *buf = fixture(ollama ? "llm_ollama_chat.ndjson" : "llm_openai_chat.sse", len);
    char *out;
    size_t o = 0;
    const char *from =
        ollama ? "\"message\":{\"role\":\"assistant\",\"content\":" : "\"delta\":{\"content\":";
    const char *to = ollama ? "\"response\":" : "\"text\":";
    if (!buf)
        return NULL;
    out = malloc(*len + 1);
    for (size_t i = 0; i < *len;) {
        if (!strncmp(buf + i, from, strlen(from))) {
            /* copy the string value, drop the closing '}' of the nested object */
            size_t j = i + strlen(from);
            memcpy(out + o, to, strlen(to));
            o += strlen(to);
            out[o++] = buf[j++];
            while (j < *len && !(buf[j] == '"' && buf[j - 1] != '\\'))
                out[o++] = buf[j++];
            out[o++] = buf[j++];
            if (buf[j] == '}')
                j++;
            i = j;
        } else if (!ollama && !strncmp(buf + i, "\"delta\":{}", 10)) {
            i += 10;
            memcpy(out + o, "\"text\":\"\"", 9);
            o += 9;
        } else {
            out[o++] = buf[i++];
        }
    }
    nr_free(buf);
    *len = o;
    return out;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    struct conn *cn = *con_cls;
    struct MHD_Response *resp;
    struct reply *r;
    json_t *req;
    const char *model = "", *auth;
    int ollama = !strncmp(url, "/api/", 5), chat = strstr(url, "chat") != NULL;
    unsigned status = 200;
    enum MHD_Result ret;

    if (!cn) {
        cn = calloc(1, sizeof *cn);
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        if (cn->len + n < sizeof cn->body) {
            memcpy(cn->body + cn->len, upload, n);
            cn->len += n;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&seen_mu);
    snprintf(seen_body, sizeof seen_body, "%.*s", (int)cn->len, cn->body);
    snprintf(seen_auth, sizeof seen_auth, "%s", auth ? auth : "");
    snprintf(seen_url, sizeof seen_url, "%s", url);
    pthread_mutex_unlock(&seen_mu);
    req = json_loadb(cn->body, cn->len, 0, NULL);
    if (json_is_string(json_object_get(req, "model")))
        model = json_string_value(json_object_get(req, "model"));

    r = calloc(1, sizeof *r);
    r->step = 5;
    r->hang_after = -1;
    if (!strcmp(model, "missing")) {
        status = 404;
        r->data = strdup(ollama ? "{\"error\":\"model \\\"missing\\\" not found, try pulling it "
                                  "first\"}"
                                : "{\"error\":{\"message\":\"The model `missing` does not "
                                  "exist\",\"type\":\"invalid_request_error\"}}");
        r->len = strlen(r->data);
    } else if (!strcmp(model, "broken")) {
        status = 500;
        r->data = strdup("internal oops\n");
        r->len = strlen(r->data);
    } else {
        size_t len = 0;
        if (chat) {
            char *f = fixture(ollama ? "llm_ollama_chat.ndjson" : "llm_openai_chat.sse", &len);
            r->data = f ? strdup(f) : strdup("");
            nr_free(f);
        } else {
            r->data = completion_stream(ollama, &len);
        }
        r->len = len;
        if (!strcmp(model, "slow")) {
            r->hang_after = ollama ? 130 : 300; /* inside the second piece */
            r->hang_s = 3.0;
        } else if (!strcmp(model, "trunc")) {
            r->len = ollama ? 260 : 700;
        }
    }
    json_decref(req);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, reply_read, r, reply_free);
    MHD_add_response_header(resp, "Content-Type",
                            status != 200 ? "application/json"
                            : ollama      ? "application/x-ndjson"
                                          : "text/event-stream");
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    free(*con_cls);
    *con_cls = NULL;
}

static int server_start(void)
{
    const union MHD_DaemonInfo *di;
    if (daemon_)
        return 1;
    daemon_ = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                               NULL, NULL, handler, NULL, MHD_OPTION_NOTIFY_COMPLETED, completed,
                               NULL, MHD_OPTION_END);
    if (!daemon_) {
        nr_test_fail(__FILE__, __LINE__, "cannot start the loopback server");
        return 0;
    }
    di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    port_ = di ? di->port : 0;
    return port_ > 0;
}

static struct nr_llm *open_remote(const char *proto, const char *model, int slots, int queue,
                                  int timeout_s)
{
    struct nr_llm_opts o;
    struct nr_llm *l = NULL;
    char spec[256];
    snprintf(spec, sizeof spec, "%s:%s@http://127.0.0.1:%d%s", proto, model, port_,
             !strcmp(proto, "openai") ? "/v1" : "");
    nr_llm_opts_default(&o);
    o.spec = spec;
    o.slots = slots;
    o.queue = queue;
    o.timeout_s = timeout_s;
    o.api_key = !strcmp(proto, "openai") ? "sk-local-test" : NULL;
    if (nr_llm_open(&o, &l) != NR_OK)
        nr_test_fail(__FILE__, __LINE__, "open %s: %s", spec, nr_err_msg());
    return l;
}

static void test_remote_ok(void)
{
    static const char *protos[] = {"ollama", "openai"};
    struct nr_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "Why is the sky blue? «é»"}};
    if (!server_start())
        return;
    for (int i = 0; i < 2; i++) {
        struct nr_llm *l = open_remote(protos[i], "ok", 0, 16, 10);
        struct nr_gen_params p;
        struct nr_gen_stats st;
        struct sink k;
        json_t *req;
        if (!l)
            continue;
        nr_gen_params_default(&p);
        p.temperature = 0;
        p.max_tokens = 4;
        p.stop[0] = "\n\n";
        memset(&k, 0, sizeof k);
        NR_CHECK_INT(nr_llm_chat(l, msgs, 2, &p, on_text, &k, &st), NR_OK);
        NR_CHECK_MSG(strcmp(k.text, EXPECTED) == 0, "%s: got \"%s\"", protos[i], k.text);
        NR_CHECK(strcmp(st.done_reason, "length") == 0);
        NR_CHECK_INT(st.prompt_tokens, 26);
        NR_CHECK_INT(st.gen_tokens, 4);
        NR_CHECK(st.prompt_s >= 0 && st.gen_s >= 0);
        pthread_mutex_lock(&seen_mu);
        req = json_loads(seen_body, 0, NULL);
        NR_CHECK(strcmp(seen_url, i == 0 ? "/api/chat" : "/v1/chat/completions") == 0);
        NR_CHECK(strcmp(seen_auth, i == 0 ? "" : "Bearer sk-local-test") == 0);
        pthread_mutex_unlock(&seen_mu);
        NR_CHECK(json_is_true(json_object_get(req, "stream")));
        NR_CHECK(strcmp(json_string_value(json_object_get(req, "model")), "ok") == 0);
        {
            json_t *m = json_array_get(json_object_get(req, "messages"), 1);
            json_t *opts = i == 0 ? json_object_get(req, "options") : req;
            NR_CHECK(json_is_string(json_object_get(m, "content")) &&
                     !strcmp(json_string_value(json_object_get(m, "content")),
                             "Why is the sky blue? «é»"));
            NR_CHECK(json_is_number(json_object_get(opts, "temperature")) &&
                     json_number_value(json_object_get(opts, "temperature")) == 0);
            NR_CHECK_INT(
                json_integer_value(json_object_get(opts, i == 0 ? "num_predict" : "max_tokens")),
                4);
            NR_CHECK(!strcmp(json_string_value(json_array_get(json_object_get(opts, "stop"), 0)),
                             "\n\n"));
        }
        json_decref(req);

        /* completion of a raw prompt */
        memset(&k, 0, sizeof k);
        NR_CHECK_INT(nr_llm_generate(l, "The sky", &p, on_text, &k, &st), NR_OK);
        NR_CHECK_MSG(strcmp(k.text, EXPECTED) == 0, "%s generate: got \"%s\"", protos[i], k.text);
        pthread_mutex_lock(&seen_mu);
        NR_CHECK(strcmp(seen_url, i == 0 ? "/api/generate" : "/v1/completions") == 0);
        req = json_loads(seen_body, 0, NULL);
        pthread_mutex_unlock(&seen_mu);
        NR_CHECK(strcmp(json_string_value(json_object_get(req, "prompt")), "The sky") == 0);
        json_decref(req);
        nr_llm_close(l);
    }
}

static void test_remote_errors(void)
{
    static const char *protos[] = {"ollama", "openai"};
    struct nr_chat_msg msg = {"user", "hi"};
    if (!server_start())
        return;
    for (int i = 0; i < 2; i++) {
        struct nr_llm *l;
        struct sink k;
        int rc;

        l = open_remote(protos[i], "missing", 0, 16, 10);
        if (l) {
            rc = nr_llm_chat(l, &msg, 1, NULL, on_text, &k, NULL);
            NR_CHECK_INT(rc, NR_EREMOTE);
            NR_CHECK_MSG(
                strstr(nr_err_msg(), "HTTP 404") &&
                    (strstr(nr_err_msg(), "not found") || strstr(nr_err_msg(), "does not exist")),
                "%s", nr_err_msg());
            nr_llm_close(l);
        }
        l = open_remote(protos[i], "broken", 0, 16, 10);
        if (l) {
            NR_CHECK_INT(nr_llm_chat(l, &msg, 1, NULL, on_text, &k, NULL), NR_EREMOTE);
            NR_CHECK_MSG(strstr(nr_err_msg(), "HTTP 500") && strstr(nr_err_msg(), "internal oops"),
                         "%s", nr_err_msg());
            nr_llm_close(l);
        }
        l = open_remote(protos[i], "trunc", 0, 16, 10);
        if (l) {
            memset(&k, 0, sizeof k);
            NR_CHECK_INT(nr_llm_chat(l, &msg, 1, NULL, on_text, &k, NULL), NR_EREMOTE);
            NR_CHECK_MSG(strstr(nr_err_msg(), "ended before"), "%s", nr_err_msg());
            NR_CHECK(k.len > 0);
            nr_llm_close(l);
        }
        /* silent after the first piece: given up after timeout_s */
        l = open_remote(protos[i], "slow", 0, 16, 1);
        if (l) {
            double t0 = now_s();
            NR_CHECK_INT(nr_llm_chat(l, &msg, 1, NULL, on_text, &k, NULL), NR_EIO);
            NR_CHECK_MSG(strstr(nr_err_msg(), "no answer"), "%s", nr_err_msg());
            NR_CHECK(now_s() - t0 < 2.9);
            nr_llm_close(l);
        }
    }
    /* nothing listens there: a free port found by binding and closing */
    {
        struct nr_llm_opts o;
        struct nr_llm *l = NULL;
        nr_llm_opts_default(&o);
        o.spec = "ollama:x@http://127.0.0.1:1";
        NR_CHECK_INT(nr_llm_open(&o, &l), NR_OK);
        if (l) {
            NR_CHECK_INT(nr_llm_chat(l, &msg, 1, NULL, on_text, NULL, NULL), NR_EIO);
            NR_CHECK_MSG(strstr(nr_err_msg(), "cannot reach http://127.0.0.1:1/api/chat"), "%s",
                         nr_err_msg());
            nr_llm_close(l);
        }
    }
}

struct bg {
    struct nr_llm *l;
    volatile int cancel;
    int rc;
    double seconds;
    const char *reason;
};

static void *bg_chat(void *arg)
{
    struct bg *b = arg;
    struct nr_chat_msg msg = {"user", "hi"};
    struct nr_gen_params p;
    struct nr_gen_stats st;
    double t0 = now_s();
    nr_gen_params_default(&p);
    p.cancel = &b->cancel;
    b->rc = nr_llm_chat(b->l, &msg, 1, &p, NULL, NULL, &st);
    b->reason = st.done_reason;
    b->seconds = now_s() - t0;
    return NULL;
}

static int wait_busy(struct nr_llm *l, int busy, int waiting)
{
    struct nr_llm_info info;
    for (int i = 0; i < 500; i++) {
        nr_llm_info(l, &info);
        if (info.busy == busy && info.waiting == waiting)
            return 1;
        usleep(2000);
    }
    return 0;
}

static void test_remote_cancel_and_slots(void)
{
    struct nr_chat_msg msg = {"user", "hi"};
    struct nr_llm *l;
    struct nr_llm_info info;
    struct bg a = {0}, b = {0};
    pthread_t ta, tb;
    if (!server_start())
        return;

    /* slots = 1, queue = 0: a second request is refused at once */
    l = open_remote("ollama", "slow", 1, 0, 30);
    if (!l)
        return;
    a.l = l;
    pthread_create(&ta, NULL, bg_chat, &a);
    NR_CHECK(wait_busy(l, 1, 0));
    {
        double t0 = now_s();
        int rc = nr_llm_chat(l, &msg, 1, NULL, NULL, NULL, NULL);
        double dt = now_s() - t0;
        NR_CHECK_INT(rc, NR_EBUSY);
        NR_CHECK_MSG(dt < 0.05, "NR_EBUSY took %.3f s", dt);
    }
    /* the cancel flag stops the running request well before the server's 3 s stall ends */
    usleep(200 * 1000);
    __atomic_store_n(&a.cancel, 1, __ATOMIC_RELAXED);
    pthread_join(ta, NULL);
    NR_CHECK_INT(a.rc, NR_OK);
    NR_CHECK(a.reason && strcmp(a.reason, "cancel") == 0);
    NR_CHECK_MSG(a.seconds < 1.5, "cancel took %.3f s", a.seconds);
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.busy, 0);
    NR_CHECK_INT(info.requests, 1);
    nr_llm_close(l);

    /* queue = 1: the second waits; canceled while queued it returns NR_ECANCELED without
     * running; a third is refused while the second waits */
    l = open_remote("openai", "slow", 1, 1, 30);
    if (!l)
        return;
    memset(&a, 0, sizeof a);
    a.l = b.l = l;
    pthread_create(&ta, NULL, bg_chat, &a);
    NR_CHECK(wait_busy(l, 1, 0));
    pthread_create(&tb, NULL, bg_chat, &b);
    NR_CHECK(wait_busy(l, 1, 1));
    NR_CHECK_INT(nr_llm_chat(l, &msg, 1, NULL, NULL, NULL, NULL), NR_EBUSY);
    __atomic_store_n(&b.cancel, 1, __ATOMIC_RELAXED);
    pthread_join(tb, NULL);
    NR_CHECK_INT(b.rc, NR_ECANCELED);
    __atomic_store_n(&a.cancel, 1, __ATOMIC_RELAXED);
    pthread_join(ta, NULL);
    NR_CHECK_INT(a.rc, NR_OK);
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.busy, 0);
    NR_CHECK_INT(info.waiting, 0);
    NR_CHECK_INT(info.requests, 1);
    nr_llm_close(l);

    /* queue = 1, not canceled: the waiter runs once the slot frees */
    l = open_remote("ollama", "ok", 1, 1, 30);
    if (l) {
        struct bg c[3];
        pthread_t tc[3];
        int ok = 0, busy = 0;
        memset(c, 0, sizeof c);
        for (int i = 0; i < 3; i++) {
            c[i].l = l;
            pthread_create(&tc[i], NULL, bg_chat, &c[i]);
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(tc[i], NULL);
            ok += c[i].rc == NR_OK;
            busy += c[i].rc == NR_EBUSY;
        }
        NR_CHECK_INT(ok + busy, 3);
        NR_CHECK(ok >= 2);
        nr_llm_close(l);
    }
}

/* The local backend with the real SmolLM2 model: slots = 1, queue = 0 refuses a second
 * concurrent request at once; cancel frees the slot; the same greedy chat twice (the second
 * reusing the slot's KV prefix) gives the same text. */
static void test_local_slots(void)
{
    const char *path = nr_test_model_path("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    struct nr_chat_msg msg = {"user", "Name three colours."};
    struct nr_llm_opts o;
    struct nr_llm *l = NULL;
    struct nr_llm_info info;
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink k1, k2;
    struct bg a = {0};
    pthread_t ta;
    int rc;

    if (access(path, R_OK) != 0) {
        NR_SKIP("no SmolLM2 model file");
        return;
    }
    nr_llm_opts_default(&o);
    o.spec = path;
    o.threads = 2;
    o.n_ctx = 1024;
    o.slots = 1;
    o.queue = 0;
    rc = nr_llm_open(&o, &l);
    if (rc == NR_EUNSUPPORTED) {
        NR_SKIP("local generator: %s", nr_err_msg());
        return;
    }
    NR_CHECK_INT(rc, NR_OK);
    if (!l)
        return;
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.backend, NR_LLM_LOCAL);
    NR_CHECK(strcmp(info.model, "smollm2-135m-instruct") == 0);
    NR_CHECK_INT(info.n_ctx, 1024);
    NR_CHECK(info.local != NULL && info.kv_bytes > 0 && info.url == NULL);
    rc = nr_llm_count_tokens(l, "Hello world, how are you?", 25);
    NR_CHECK_MSG(rc > 2 && rc < 25, "count %d", rc);

    a.l = l;
    pthread_create(&ta, NULL, bg_chat, &a);
    NR_CHECK(wait_busy(l, 1, 0));
    {
        double t0 = now_s();
        rc = nr_llm_chat(l, &msg, 1, NULL, NULL, NULL, NULL);
        NR_CHECK_INT(rc, NR_EBUSY);
        NR_CHECK_MSG(now_s() - t0 < 0.05, "NR_EBUSY took %.3f s", now_s() - t0);
    }
    __atomic_store_n(&a.cancel, 1, __ATOMIC_RELAXED);
    pthread_join(ta, NULL);
    NR_CHECK_INT(a.rc, NR_OK);
    nr_llm_info(l, &info);
    NR_CHECK_INT(info.busy, 0);

    nr_gen_params_default(&p);
    p.temperature = 0;
    p.max_tokens = 24;
    memset(&k1, 0, sizeof k1);
    memset(&k2, 0, sizeof k2);
    NR_CHECK_INT(nr_llm_chat(l, &msg, 1, &p, on_text, &k1, &st), NR_OK);
    NR_CHECK(st.gen_tokens > 0 && st.gen_tokens <= 24 && k1.len > 0);
    NR_CHECK_INT(nr_llm_chat(l, &msg, 1, &p, on_text, &k2, &st), NR_OK);
    NR_CHECK(strcmp(k1.text, k2.text) == 0);
    NR_CHECK(st.prompt_evaluated < st.prompt_tokens); /* the slot kept the prompt's prefix */
    memset(&k1, 0, sizeof k1);
    NR_CHECK_INT(nr_llm_generate(l, "The capital of France is", &p, on_text, &k1, &st), NR_OK);
    NR_CHECK(k1.len > 0);
    printf("  chat: %s\n  generate: %s\n", k2.text, k1.text);
    nr_llm_close(l);
}

/* Start `nanorag serve` (the binary next to this test) on a kernel-chosen loopback port with
 * the local model; its base URL into url. Returns the pid, or -1 (and a skip) when absent. */
static pid_t serve_start(const char *model, const char *data, char *url, size_t cap)
{
    char exe[4096], bin[4200], line[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int fd[2];
    pid_t pid;
    FILE *f;
    char *slash;

    if (n <= 0)
        return -1;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    snprintf(bin, sizeof bin, "%s/nanorag", exe);
    if (access(bin, X_OK) != 0 || pipe(fd) != 0) {
        NR_SKIP("no nanorag binary beside the test");
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl(bin, bin, "serve", "--listen", "127.0.0.1:0", "--data", data, "--llm", model,
              (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    f = fdopen(fd[0], "r");
    url[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char *h = strstr(line, "listening on http://");
        if (h) {
            snprintf(url, cap, "%s", h + strlen("listening on "));
            url[strcspn(url, " \r\n")] = '\0';
            break;
        }
    }
    /* keep the pipe open (the server may write more); it closes when the test exits */
    if (!url[0]) {
        nr_test_fail(__FILE__, __LINE__, "nanorag serve did not start");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

/* The remote backends against a second nanorag acting as the Ollama and OpenAI server:
 * greedy chat and raw completions equal the local backend's, token for token. */
static void test_serve_backends(void)
{
    const char *path = nr_test_model_path("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    struct nr_chat_msg msgs[] = {{"system", "You are a terse assistant."},
                                 {"user", "Name two planets and one moon."}};
    char data[] = "/tmp/nr_test_llm_serve_XXXXXX", url[256], spec[400];
    struct nr_llm_opts o;
    struct nr_llm *local = NULL;
    struct nr_llm_info info;
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink chat_ref, gen_ref;
    pid_t pid;

    if (access(path, R_OK) != 0) {
        NR_SKIP("no SmolLM2 model file");
        return;
    }
    nr_llm_opts_default(&o);
    o.spec = path;
    o.threads = 2;
    if (nr_llm_open(&o, &local) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "local: %s", nr_err_msg());
        return;
    }
    nr_llm_info(local, &info);
    nr_gen_params_default(&p);
    p.temperature = 0;
    p.max_tokens = 32;
    memset(&chat_ref, 0, sizeof chat_ref);
    memset(&gen_ref, 0, sizeof gen_ref);
    NR_CHECK_INT(nr_llm_chat(local, msgs, 2, &p, on_text, &chat_ref, &st), NR_OK);
    NR_CHECK_INT(nr_llm_generate(local, "The capital of France is", &p, on_text, &gen_ref, &st),
                 NR_OK);
    if (!mkdtemp(data) || (pid = serve_start(path, data, url, sizeof url)) < 0) {
        nr_llm_close(local);
        return;
    }
    for (int i = 0; i < 2; i++) {
        struct nr_llm *l = NULL;
        struct sink k;
        nr_llm_opts_default(&o);
        snprintf(spec, sizeof spec, "%s:%s@%s%s", i ? "openai" : "ollama", info.model, url,
                 i ? "/v1" : "");
        o.spec = spec;
        NR_CHECK_INT(nr_llm_open(&o, &l), NR_OK);
        if (!l)
            continue;
        memset(&k, 0, sizeof k);
        NR_CHECK_INT(nr_llm_chat(l, msgs, 2, &p, on_text, &k, &st), NR_OK);
        NR_CHECK_MSG(strcmp(k.text, chat_ref.text) == 0, "%s chat: \"%s\" vs local \"%s\"", spec,
                     k.text, chat_ref.text);
        NR_CHECK(st.gen_tokens > 0 && st.prompt_tokens > 0);
        memset(&k, 0, sizeof k);
        NR_CHECK_INT(nr_llm_generate(l, "The capital of France is", &p, on_text, &k, &st), NR_OK);
        NR_CHECK_MSG(strcmp(k.text, gen_ref.text) == 0, "%s generate: \"%s\" vs local \"%s\"", spec,
                     k.text, gen_ref.text);
        nr_llm_close(l);
        /* an unknown model: the server's own 404 message comes through */
        snprintf(spec, sizeof spec, "%s:no-such-model@%s", i ? "openai" : "ollama", url);
        o.spec = spec;
        if (nr_llm_open(&o, &l) == NR_OK) {
            NR_CHECK_INT(nr_llm_chat(l, msgs, 2, &p, on_text, &k, &st), NR_EREMOTE);
            NR_CHECK_MSG(strstr(nr_err_msg(), "HTTP 404"), "%s", nr_err_msg());
            nr_llm_close(l);
        }
    }
    printf("  via %s: \"%s\"\n", url, chat_ref.text);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", data);
        if (system(cmd) != 0)
            printf("  could not remove %s\n", data);
    }
    nr_llm_close(local);
}

int main(void)
{
    NR_RUN(test_ndjson_any_split);
    NR_RUN(test_sse_any_split);
    NR_RUN(test_stream_errors);
    NR_RUN(test_stream_cancel);
    NR_RUN(test_error_message);
    NR_RUN(test_spec);
    NR_RUN(test_remote_ok);
    NR_RUN(test_remote_errors);
    NR_RUN(test_remote_cancel_and_slots);
    NR_RUN(test_local_slots);
    NR_RUN(test_serve_backends);
    if (daemon_)
        MHD_stop_daemon(daemon_);
    return nr_test_summary();
}
