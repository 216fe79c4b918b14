/*
 * http.c — libmicrohttpd glue: one request's life, the checks it passes,
 * replies, streams and metrics (the contract is in nr_http.h).
 *
 * A request's life. libmicrohttpd calls the access handler several times
 * per request: first with the headers only (*con_cls == NULL), then with
 * pieces of the body, then once with no body left. We
 *   1. (first call) find the route, run the security checks (Host, Origin,
 *      API key) and compare Content-Length with the route's cap; a request
 *      that fails any of them is answered at once — libmicrohttpd then
 *      closes the connection instead of reading a body nobody wants;
 *   2. append body pieces into a buffer that never grows past the cap (a
 *      chunked body that goes past it is discarded and answered 413 at the
 *      end; past 4x the cap the connection is dropped); *   3. (last call) answer 404 / 405 / 413,
 * or call the route's handler. Slow clients (RELIABILITY F17): a connection has header_timeout_s
 * (10 s) of silence to finish its headers, then idle_timeout_s (60 s) between requests; past
 * max_connections, up to 64 more are answered 503 and closed, beyond that libmicrohttpd refuses
 * them. With one thread per connection a slow client holds only its own thread. No reply is queued
 * on a call that still has body to come: libmicrohttpd allows it only on the first call, and then
 * it must close the connection.
 *
 * Checks, in order (RELIABILITY F15-F16, CVE-2024-28224):
 *   Host    the host part must be a loopback name, the listen address or a
 *           name from allow_hosts; a wildcard listen (0.0.0.0, ::) only
 *           exists with an API key, and then any Host is accepted. 403.
 *   Origin  when present (browsers send it), "http(s)://host[:port]" with
 *           the host passing the Host rule; "null" and other schemes are
 *           refused. 403.
 *   key     with an API key, "Authorization: Bearer <key>" on every route
 *           but the public ones (liveness), compared in constant time. 401.
 *
 * Streams. The producer thread appends to a bounded ring buffer (64 KiB);
 * the connection thread's content reader takes from it. The reader waits at
 * most 250 ms at a time and between waits polls the socket for a peer
 * hang-up (POLLRDHUP), so a client that goes away during a long prefill is
 * noticed without the producer writing anything. When libmicrohttpd drops
 * the response (sent, client gone, error) the stream is marked gone, the
 * producer's next write fails with NR_ECANCELED and *cancel is set. The
 * stream has two references (producer, connection) and is freed by the
 * last to let go.
 *
 * Metrics: per route, requests by status class and a latency histogram
 * (seconds, from the first call to the completion callback, so a stream
 * counts until its last byte), under one mutex: a few hundred nanoseconds
 * per request against tens of microseconds of HTTP parsing.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include "nr_http.h"

#include "nr_err.h"
#include "nr_log.h"
#include "nr_mem.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define STREAM_BUF     (64 << 10) /* bytes buffered between producer and connection */
#define TEXT_MAX       (64 << 20) /* cap of an nr_http_text */
#define MAX_ROUTES     64
#define HEADER_MEM     (64 << 10) /* per-connection memory for headers: larger -> 431 */
#define DISCARD_FACTOR 4          /* drop the connection past this many times the cap */
#define N_BUCKETS      14
#define CONN_HEADROOM  64 /* connections past max_connections answered 503 */

static const double bucket_le[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30};

struct route_stats {
    uint64_t by_class[6];            /* requests by status / 100 (index 1..5) */
    uint64_t buckets[N_BUCKETS + 1]; /* latency histogram, last = +Inf */
    double sum_s;                    /* total latency, seconds */
};

struct nr_http {
    struct MHD_Daemon *d;
    struct nr_http_opts o;
    char host[256];                     /* listen host */
    char *allow[NR_HTTP_MAX_ALLOW];     /* copies of opts.allow_hosts */
    char *api_key;                      /* copy, or NULL */
    int any_host;                       /* wildcard listen (with a key) */
    const struct nr_http_route *routes; /* [n_routes], borrowed */
    int n_routes;
    void *ud;
    int port;
    pthread_mutex_t mu;                       /* guards stats and active */
    struct route_stats stats[MAX_ROUTES + 1]; /* last: unmatched requests */
    int active;                               /* requests in progress */
    int conns;                                /* open connections */
};

struct nr_http_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* data, space or state changed */
    char buf[STREAM_BUF]; /* ring buffer */
    size_t head, len;     /* first byte, bytes held */
    int ended;            /* producer done */
    int gone;             /* connection side done (sent all, or client gone) */
    int refs;             /* 2 at start: producer + connection */
    int fd;               /* the client socket, for hang-up polls; -1 unknown */
    volatile int *cancel; /* set on gone, if not NULL */
};

struct req_ctx {
    struct nr_http_req req; /* first: handlers get &ctx->req */
    struct MHD_Connection *conn;
    char *body;      /* nr_malloc'd, len + 1 bytes used */
    size_t len, cap; /* bytes used / allocated */
    size_t limit;    /* the route's body cap */
    size_t seen;     /* body bytes received, kept or not */
    int too_large;
    int replied;
    int status;
    int route_idx;    /* -1: none */
    int wrong_method; /* path known, method not */
    char allow[48];   /* methods the path has, for 405's Allow */
    struct timespec t0;
    struct nr_http_stream *pending; /* made but not handed to the connection */
};

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

void nr_http_opts_default(struct nr_http_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_body = 1 << 20;
    o->max_upload = 32 << 20;
    o->max_connections = 256;
    o->idle_timeout_s = 60;
    o->header_timeout_s = 10;
}

int nr_http_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcasecmp(host, "localhost"))
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

static int is_wildcard(const char *host)
{
    return !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "*") || !host[0];
}

/* ------------------------------------------------------------ text buffer */

void nr_http_text_printf(struct nr_http_text *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (t->err)
        return;
    for (;;) {
        size_t room = t->cap - t->len;
        if (t->cap) {
            va_start(ap, fmt);
            n = vsnprintf(t->p + t->len, room, fmt, ap);
            va_end(ap);
            if (n < 0) {
                t->err = NR_EINTERNAL;
                return;
            }
            if ((size_t)n < room) {
                t->len += (size_t)n;
                return;
            }
        }
        {
            size_t ncap = t->cap ? t->cap * 2 : 4096;
            char *np;
            while (ncap < t->len + 4096)
                ncap *= 2;
            if (ncap > TEXT_MAX) {
                t->err = NR_ELIMIT;
                return;
            }
            np = nr_realloc(t->p, ncap);
            if (!np) {
                t->err = NR_ENOMEM;
                return;
            }
            t->p = np;
            t->cap = ncap;
        }
    }
}

/* ------------------------------------------------------------ checks */

static int host_allowed(struct nr_http *h, const char *name, size_t n)
{
    char buf[256];
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, name, n);
    buf[n] = '\0';
    if (h->any_host || nr_http_is_loopback(buf) || !strcasecmp(buf, h->host))
        return 1;
    for (int i = 0; i < NR_HTTP_MAX_ALLOW && h->allow[i]; i++)
        if (!strcasecmp(buf, h->allow[i]))
            return 1;
    return 0;
}

/* The host part of "host", "host:port", "[v6]" or "[v6]:port": start and length. */
static int split_host(const char *s, const char **name, size_t *n)
{
    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e || (e[1] && e[1] != ':'))
            return -1;
        *name = s + 1;
        *n = (size_t)(e - s - 1);
        return 0;
    }
    *name = s;
    *n = strcspn(s, ":");
    return 0;
}

static int ct_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = (unsigned char)(na != nb);
    for (size_t i = 0; i < na; i++)
        d |= (unsigned char)(a[i] ^ b[nb ? i % nb : 0]);
    return d == 0;
}

/* 0 when the request may go on, else the status it was answered with. */
static int check_request(struct nr_http *h, struct req_ctx *c)
{
    struct nr_http_req *r = &c->req;
    const char *v = nr_http_header(r, MHD_HTTP_HEADER_HOST), *name;
    size_t n;

    if (v && (split_host(v, &name, &n) || !host_allowed(h, name, n)))
        return nr_http_error(r, 403,
                             "Host header is not an allowed name (DNS rebinding protection); "
                             "allow it with --allow-host");
    v = nr_http_header(r, "Origin");
    if (v) {
        const char *p = !strncasecmp(v, "http://", 7)    ? v + 7
                        : !strncasecmp(v, "https://", 8) ? v + 8
                                                         : NULL;
        if (!p || split_host(p, &name, &n) || !host_allowed(h, name, n) || strchr(p, '/'))
            return nr_http_error(r, 403, "Origin is not allowed; allow its host with --allow-host");
    }
    if (h->api_key && !(r->route && (r->route->flags & NR_HTTP_PUBLIC))) {
        v = nr_http_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!v || strncasecmp(v, "Bearer ", 7) || !ct_equal(v + 7, h->api_key))
            return nr_http_error(r, 401,
                                 "missing or wrong API key (send Authorization: Bearer KEY)");
    }
    return 0;
}

/* ------------------------------------------------------------ replies */

static struct req_ctx *ctx_of(struct nr_http_req *r)
{
    return (struct req_ctx *)r;
}

static int queue(struct nr_http_req *r, int status, struct MHD_Response *resp, const char *ctype)
{
    struct req_ctx *c = ctx_of(r);
    if (!resp) {
        nr_log_error("http: cannot create a response (out of memory)");
        c->replied = 1;
        c->status = 500;
        return 500;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 503 || status == 429)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405 && c->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, c->allow);
    if (c->replied)
        nr_log_error("http: %s %s answered twice", r->method, r->path);
    else if (MHD_queue_response(c->conn, (unsigned)status, resp) != MHD_YES)
        nr_log_warn("http: could not queue a %d reply", status);
    MHD_destroy_response(resp);
    c->replied = 1;
    c->status = status;
    return status;
}

static void free_cb(void *p)
{
    nr_free(p);
}

int nr_http_reply_buf(struct nr_http_req *r, int status, const char *ctype, char *buf, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, buf, free_cb);
    if (!resp)
        nr_free(buf);
    return queue(r, status, resp, ctype);
}

int nr_http_reply_text(struct nr_http_req *r, int status, const char *ctype, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    return queue(r, status, resp, ctype);
}

int nr_http_reply_json(struct nr_http_req *r, int status, json_t *obj)
{
    /* json_dumps allocates with malloc: the response frees it with free() */
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    struct MHD_Response *resp;
    json_decref(obj);
    if (!s)
        return queue(r, 500,
                     MHD_create_response_from_buffer(25, "{\"error\":\"out of memory\"}",
                                                     MHD_RESPMEM_PERSISTENT),
                     "application/json");
    resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(s);
    return queue(r, status, resp, "application/json");
}

static const char *openai_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
    case 503:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

int nr_http_error(struct nr_http_req *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    json_t *o;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->route && (r->route->flags & NR_HTTP_OPENAI_ERR))
        o = json_pack("{s:{s:s,s:s,s:n,s:i}}", "error", "message", msg, "type", openai_type(status),
                      "param", "code", status);
    else
        o = json_pack("{s:s,s:i}", "error", msg, "code", status);
    return nr_http_reply_json(r, status, o);
}

int nr_http_error_status(struct nr_http_req *r, int st)
{
    int status;
    switch (st) {
    case NR_EINVAL:
        status = 400;
        break;
    case NR_ENOTFOUND:
        status = 404;
        break;
    case NR_ELIMIT:
        status = 413;
        break;
    case NR_EFORMAT:
    case NR_EUNSUPPORTED:
        status = 422;
        break;
    case NR_EBUSY:
        status = 503;
        break;
    case NR_EREMOTE:
    case NR_EIO:
        status = 502;
        break;
    default:
        status = 500;
    }
    return nr_http_error(r, status, "%s", nr_err_msg()[0] ? nr_err_msg() : nr_err_name(st));
}

const char *nr_http_header(struct nr_http_req *r, const char *name)
{
    return MHD_lookup_connection_value(ctx_of(r)->conn, MHD_HEADER_KIND, name);
}

const char *nr_http_query(struct nr_http_req *r, const char *name)
{
    return MHD_lookup_connection_value(ctx_of(r)->conn, MHD_GET_ARGUMENT_KIND, name);
}

int nr_http_json_body(struct nr_http_req *r, json_t **out)
{
    json_error_t e;
    json_t *j;
    *out = NULL;
    if (r->body_len == 0)
        return nr_http_error(r, 400, "the request needs a JSON body");
    /* integers as doubles: a huge number is then a range error naming its
     * field (srv_int), not a parse error; ids stay exact below 2^53 */
    j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &e);
    if (!j)
        return nr_http_error(r, 400, "malformed JSON at line %d column %d: %s", e.line, e.column,
                             e.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return nr_http_error(r, 400, "the body must be a JSON object");
    }
    *out = j;
    return 0;
}

struct form_ctx {
    nr_http_part_fn fn;
    void *ud;
    int rc;
};

static enum MHD_Result form_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *ctype, const char *enc,
                                 const char *data, uint64_t off, size_t size)
{
    struct form_ctx *f = cls;
    (void)kind;
    (void)enc;
    f->rc = f->fn(f->ud, key ? key : "", filename, ctype, data ? data : "", off, size);
    return f->rc ? MHD_NO : MHD_YES;
}

int nr_http_form(struct nr_http_req *r, nr_http_part_fn fn, void *ud)
{
    struct form_ctx f = {fn, ud, 0};
    struct MHD_PostProcessor *pp =
        MHD_create_post_processor(ctx_of(r)->conn, 64 << 10, form_iter, &f);
    enum MHD_Result ok;
    if (!pp)
        return nr_err_set(NR_EINVAL, "the body is not multipart/form-data");
    ok = MHD_post_process(pp, r->body, r->body_len);
    if (MHD_destroy_post_processor(pp) != MHD_YES && ok == MHD_YES && !f.rc)
        ok = MHD_NO;
    if (f.rc)
        return f.rc;
    if (ok != MHD_YES)
        return nr_err_set(NR_EINVAL, "malformed multipart/form-data body");
    return NR_OK;
}

/* ------------------------------------------------------------ streams */

static void stream_unref(struct nr_http_stream *s)
{
    int last;
    pthread_mutex_lock(&s->mu);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        nr_free(s);
    }
}

static void stream_gone(struct nr_http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->gone = 1;
    if (s->cancel)
        __atomic_store_n(s->cancel, 1, __ATOMIC_RELAXED); /* read by the generating thread */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int nr_http_stream_new(struct nr_http_req *r, volatile int *cancel, struct nr_http_stream **out)
{
    struct req_ctx *c = ctx_of(r);
    struct nr_http_stream *s;
    const union MHD_ConnectionInfo *ci;

    *out = NULL;
    if (c->pending)
        return nr_err_set(NR_EINTERNAL, "http: a second stream for one request");
    s = nr_calloc(1, sizeof *s);
    if (!s)
        return nr_err_set(NR_ENOMEM, "http: out of memory for a stream");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->refs = 2;
    s->cancel = cancel;
    s->fd = -1;
    ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        s->fd = ci->connect_fd;
    c->pending = s;
    *out = s;
    return NR_OK;
}

static int peer_hung_up(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct nr_http_stream *s = cls;
    size_t n = 0;
    (void)pos;
    if (peer_hung_up(s->fd)) { /* one poll per chunk: a closed client stops at once */
        stream_gone(s);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    pthread_mutex_lock(&s->mu);
    while (s->len == 0 && !s->ended && !s->gone) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 250 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&s->cv, &s->mu, &t) == ETIMEDOUT && s->len == 0 &&
            peer_hung_up(s->fd)) {
            pthread_mutex_unlock(&s->mu);
            stream_gone(s);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    while (n < max && s->len > 0) {
        size_t take = STREAM_BUF - s->head;
        if (take > s->len)
            take = s->len;
        if (take > max - n)
            take = max - n;
        memcpy(buf + n, s->buf + s->head, take);
        s->head = (s->head + take) % STREAM_BUF;
        s->len -= take;
        n += take;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)n;
}

static void stream_free_cb(void *cls)
{
    struct nr_http_stream *s = cls;
    stream_gone(s);
    stream_unref(s);
}

int nr_http_stream_reply(struct nr_http_req *r, struct nr_http_stream *s, const char *ctype)
{
    struct req_ctx *c = ctx_of(r);
    struct MHD_Response *resp;
    if (c->pending != s)
        return nr_http_error(r, 500, "internal error: unknown stream");
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, stream_read, s,
                                             stream_free_cb);
    if (!resp)
        return nr_http_error(r, 500, "out of memory for a stream");
    c->pending = NULL; /* the response owns the connection's reference now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (s->fd >= 0) {
        int one = 1; /* tokens go out as they come, not after Nagle's delay */
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return queue(r, 200, resp, ctype);
}

int nr_http_stream_write(struct nr_http_stream *s, const char *data, size_t len)
{
    int rc = NR_OK;
    pthread_mutex_lock(&s->mu);
    while (len > 0) {
        size_t room, tail, take;
        while (!s->gone && s->len == STREAM_BUF)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->gone) {
            rc = nr_err_set(NR_ECANCELED, "http: the client went away");
            break;
        }
        room = STREAM_BUF - s->len;
        tail = (s->head + s->len) % STREAM_BUF;
        take = STREAM_BUF - tail < room ? STREAM_BUF - tail : room;
        if (take > len)
            take = len;
        memcpy(s->buf + tail, data, take);
        s->len += take;
        data += take;
        len -= take;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int nr_http_stream_write_json(struct nr_http_stream *s, json_t *obj, const char *prefix,
                              const char *suffix)
{
    char *txt = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9));
    int rc;
    if (!txt)
        return nr_err_set(NR_ENOMEM, "http: out of memory for a stream line");
    rc = nr_http_stream_write(s, prefix, strlen(prefix));
    if (rc == NR_OK)
        rc = nr_http_stream_write(s, txt, strlen(txt));
    if (rc == NR_OK)
        rc = nr_http_stream_write(s, suffix, strlen(suffix));
    free(txt);
    return rc;
}

void nr_http_stream_end(struct nr_http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->ended = 1;
    s->cancel = NULL; /* the producer's flag may be freed from here on */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

/* ------------------------------------------------------------ routing */

static int find_route(struct nr_http *h, const char *method, const char *url, int *wrong_method,
                      const char **param, char *allow, size_t allow_cap)
{
    int path_known = 0;
    if (!strcmp(method, "HEAD"))
        method = "GET";
    *param = "";
    for (int i = 0; i < h->n_routes; i++) {
        const struct nr_http_route *rt = &h->routes[i];
        size_t n = strlen(rt->path);
        int match;
        if (rt->param)
            match = !strncmp(url, rt->path, n) && url[n] && !strchr(url + n, '/');
        else
            match = !strcmp(url, rt->path);
        if (!match)
            continue;
        path_known = 1;
        {
            size_t used = strlen(allow); /* bounded append; a full list is just cut */
            snprintf(allow + used, allow_cap - used, "%s%s%s", used ? ", " : "", rt->method,
                     strcmp(rt->method, "GET") ? "" : ", HEAD");
        }
        if (!strcmp(rt->method, method)) {
            if (rt->param)
                *param = url + n;
            return i;
        }
    }
    *wrong_method = path_known;
    return -1;
}

static void record(struct nr_http *h, struct req_ctx *c)
{
    double s = since(&c->t0);
    int idx = c->route_idx >= 0 ? c->route_idx : h->n_routes, b = 0, cls = c->status / 100;
    struct route_stats *st = &h->stats[idx];
    while (b < N_BUCKETS && s > bucket_le[b])
        b++;
    pthread_mutex_lock(&h->mu);
    if (cls >= 1 && cls <= 5)
        st->by_class[cls]++;
    st->buckets[b]++;
    st->sum_s += s;
    h->active--;
    pthread_mutex_unlock(&h->mu);
    if (h->o.access_log)
        nr_log_info("http: %s %s %d %.2f ms", c->req.method, c->req.path, c->status, s * 1e3);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct nr_http *h = cls;
    struct req_ctx *c = *con_cls;
    (void)conn;
    (void)toe;
    if (!c)
        return;
    record(h, c);
    if (c->pending) { /* a stream the handler made but did not send */
        stream_gone(c->pending);
        stream_unref(c->pending);
    }
    nr_free(c->body);
    nr_free(c);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct nr_http *h = cls;
    (void)conn;
    (void)socket_ctx;
    pthread_mutex_lock(&h->mu);
    h->conns += code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
    pthread_mutex_unlock(&h->mu);
}

static int append_body(struct req_ctx *c, const char *data, size_t n)
{
    size_t need;
    c->seen += n;
    if (c->too_large || c->len + n > c->limit) {
        c->too_large = 1;
        return c->seen / DISCARD_FACTOR > c->limit ? -1 : 0;
    }
    need = c->len + n + 1;
    if (need > c->cap) {
        size_t ncap = c->cap ? c->cap : 4096;
        char *p;
        while (ncap < need)
            ncap *= 2;
        if (ncap > c->limit + 1)
            ncap = c->limit + 1;
        p = nr_realloc(c->body, ncap);
        if (!p)
            return -1;
        c->body = p;
        c->cap = ncap;
    }
    memcpy(c->body + c->len, data, n);
    c->len += n;
    c->body[c->len] = '\0';
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct nr_http *h = cls;
    struct req_ctx *c = *con_cls;
    (void)version;
    if (!c) {
        const char *cl;
        int over;
        c = nr_calloc(1, sizeof *c);
        if (!c)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &c->t0);
        c->conn = conn;
        c->req.method = method;
        c->req.path = url;
        c->req.body = "";
        c->req.http = h;
        c->route_idx =
            find_route(h, method, url, &c->wrong_method, &c->req.param, c->allow, sizeof c->allow);
        c->req.route = c->route_idx >= 0 ? &h->routes[c->route_idx] : NULL;
        c->limit = c->req.route && (c->req.route->flags & NR_HTTP_UPLOAD) ? h->o.max_upload
                                                                          : h->o.max_body;
        *con_cls = c;
        pthread_mutex_lock(&h->mu);
        h->active++;
        over = h->conns > h->o.max_connections;
        pthread_mutex_unlock(&h->mu);
        /* headers are in: from now on the connection may idle as long as
         * keep-alive allows (until here the short header timeout applied) */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned)h->o.idle_timeout_s);
        if (over) {
            nr_http_error(&c->req, 503, "too many connections (%d); retry later",
                          h->o.max_connections);
            return MHD_YES;
        }
        if (check_request(h, c))
            return MHD_YES;
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            unsigned long long v;
            errno = 0;
            v = strtoull(cl, &end, 10);
            if (errno || *end || v > c->limit) {
                nr_http_error(&c->req, 413, "the body is larger than the %zu-byte limit", c->limit);
                return MHD_YES;
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->replied)
            return MHD_YES;
        return append_body(c, upload_data, n) ? MHD_NO : MHD_YES;
    }
    if (c->replied)
        return MHD_YES;
    c->req.body = c->body ? c->body : "";
    c->req.body_len = c->len;
    if (c->too_large)
        nr_http_error(&c->req, 413, "the body is larger than the %zu-byte limit", c->limit);
    else if (c->wrong_method)
        nr_http_error(&c->req, 405, "method %s is not allowed on %s", method, url);
    else if (!c->req.route)
        nr_http_error(&c->req, 404, "no route %s %s", method, url);
    else {
        nr_err_clear();
        c->req.route->handler(h->ud, &c->req);
        if (!c->replied)
            nr_http_error(&c->req, 500, "internal error: the handler gave no reply");
    }
    return MHD_YES;
}

/* ------------------------------------------------------------ start / stop */

int nr_http_start(const struct nr_http_opts *o, const struct nr_http_route *routes, int n_routes,
                  void *ud, struct nr_http **out)
{
    struct nr_http *h = NULL;
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16];
    const union MHD_DaemonInfo *di;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD;
    int rc;

    *out = NULL;
    if (n_routes > MAX_ROUTES)
        return nr_err_set(NR_ELIMIT, "http: more than %d routes", MAX_ROUTES);
    if (o->port < 0 || o->port > 65535)
        return nr_err_set(NR_EINVAL, "http: port %d is out of range", o->port);
    if (strlen(o->host) >= sizeof h->host)
        return nr_err_set(NR_EINVAL, "http: the listen host is too long");
    if (!nr_http_is_loopback(o->host) && !(o->api_key && o->api_key[0]))
        return nr_err_set(NR_EINVAL,
                          "refusing to listen on %s (not loopback) without an API key: "
                          "pass --api-key KEY (or NANORAG_API_KEY)",
                          o->host);
    h = nr_calloc(1, sizeof *h);
    if (!h)
        return nr_err_set(NR_ENOMEM, "http: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    h->o = *o;
    h->routes = routes;
    h->n_routes = n_routes;
    h->ud = ud;
    snprintf(h->host, sizeof h->host, "%s", o->host);
    h->any_host = is_wildcard(o->host);
    if (o->api_key && o->api_key[0] && !(h->api_key = nr_strdup(o->api_key))) {
        rc = nr_err_set(NR_ENOMEM, "http: out of memory");
        goto fail;
    }
    for (int i = 0; i < NR_HTTP_MAX_ALLOW && o->allow_hosts[i]; i++)
        if (!(h->allow[i] = nr_strdup(o->allow_hosts[i]))) {
            rc = nr_err_set(NR_ENOMEM, "http: out of memory");
            goto fail;
        }
    snprintf(port, sizeof port, "%d", o->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(!strcmp(o->host, "*") || !o->host[0] ? "0.0.0.0" : o->host, port, &hints,
                    &ai) ||
        !ai) {
        rc = nr_err_set(NR_EINVAL, "http: cannot resolve the listen address %s", o->host);
        goto fail;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* the hard cap sits above max_connections so the excess gets a 503
     * instead of a silent close */
    h->d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections + CONN_HEADROOM,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(o->header_timeout_s > 0 ? o->header_timeout_s : 10),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_MEM, MHD_OPTION_NOTIFY_COMPLETED,
        completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        rc = nr_err_set(NR_EIO,
                        "http: cannot listen on %s port %d (in use, or not an address "
                        "of this machine)",
                        o->host, o->port);
        goto fail;
    }
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    *out = h;
    return NR_OK;
fail:
    nr_http_stop(h);
    return rc;
}

void nr_http_stop(struct nr_http *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    nr_free(h->api_key);
    for (int i = 0; i < NR_HTTP_MAX_ALLOW; i++)
        nr_free(h->allow[i]);
    pthread_mutex_destroy(&h->mu);
    nr_free(h);
}

int nr_http_port(const struct nr_http *h)
{
    return h->port;
}

int nr_http_active(struct nr_http *h)
{
    int n;
    pthread_mutex_lock(&h->mu);
    n = h->active;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void nr_http_metrics(struct nr_http *h, struct nr_http_text *t)
{
    static struct route_stats snap[MAX_ROUTES + 1];
    static pthread_mutex_t snap_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&snap_mu);
    pthread_mutex_lock(&h->mu);
    memcpy(snap, h->stats, sizeof snap);
    pthread_mutex_unlock(&h->mu);
    nr_http_text_printf(t, "# HELP nanorag_http_requests_total HTTP requests by route and "
                           "status class.\n# TYPE nanorag_http_requests_total counter\n");
    for (int i = 0; i <= h->n_routes; i++) {
        const char *name = i < h->n_routes ? h->routes[i].name : "unmatched";
        for (int k = 1; k <= 5; k++)
            if (snap[i].by_class[k])
                nr_http_text_printf(t,
                                    "nanorag_http_requests_total{route=\"%s\",code=\"%dxx\"} "
                                    "%llu\n",
                                    name, k, (unsigned long long)snap[i].by_class[k]);
    }
    nr_http_text_printf(t, "# HELP nanorag_http_request_seconds Time from the request's "
                           "headers to its last byte.\n# TYPE nanorag_http_request_seconds "
                           "histogram\n");
    for (int i = 0; i <= h->n_routes; i++) {
        const char *name = i < h->n_routes ? h->routes[i].name : "unmatched";
        unsigned long long cum = 0;
        for (int b = 0; b <= N_BUCKETS; b++)
            cum += snap[i].buckets[b];
        if (!cum)
            continue;
        cum = 0;
        for (int b = 0; b < N_BUCKETS; b++) {
            cum += snap[i].buckets[b];
            nr_http_text_printf(t,
                                "nanorag_http_request_seconds_bucket{route=\"%s\",le=\"%g\"} "
                                "%llu\n",
                                name, bucket_le[b], cum);
        }
        cum += snap[i].buckets[N_BUCKETS];
        nr_http_text_printf(t,
                            "nanorag_http_request_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                            "nanorag_http_request_seconds_sum{route=\"%s\"} %.6f\n"
                            "nanorag_http_request_seconds_count{route=\"%s\"} %llu\n",
                            name, cum, name, snap[i].sum_s, name, cum);
    }
    pthread_mutex_unlock(&snap_mu);
}
