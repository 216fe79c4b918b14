/*
 * nr_http: the HTTP layer of `nanorag serve` — a libmicrohttpd wrapper that
 * knows nothing of RAG: listening, routing, request bodies with hard caps,
 * the security checks every request passes (Host, Origin, Bearer key),
 * JSON and error replies, streamed replies (NDJSON / SSE) fed by a
 * producer thread through a bounded buffer, an access log and per-route
 * request counters and latency histograms.
 *
 *     static const struct nr_http_route routes[] = {
 *         {"GET", "/health", 0, on_health, NR_HTTP_PUBLIC},
 *         {"GET", "/v1/documents/", 1, on_doc_get, 0},   // "/v1/documents/{id}"
 *     };
 *     struct nr_http_opts o;  nr_http_opts_default(&o);
 *     nr_http_start(&o, routes, 2, server, &h);
 *
 * Threads: one thread per connection (libmicrohttpd's thread-per-connection
 * mode, up to opts.max_connections); a handler runs on its connection's
 * thread and may block (an embed pass, a search). A streamed reply is written
 * from another thread (nr_http_stream_*), which blocks when the client reads
 * slower than it writes (the buffer is bounded) and learns through a failed
 * write, or the cancel flag, that the client went away.
 *
 * Ownership: a request and everything it points to live until its handler
 * returns; a reply takes ownership of the json_t or buffer given to it.
 */
#ifndef NR_HTTP_H
#define NR_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct nr_http;
struct nr_http_req;
struct nr_http_stream;

/* A handler replies through nr_http_reply_* / nr_http_error (exactly once)
 * or starts a stream, and returns the HTTP status it answered. */
typedef int (*nr_http_handler)(void *ud, struct nr_http_req *req);

enum nr_http_route_flags {
    NR_HTTP_PUBLIC = 1,     /* answered without the API key (liveness) */
    NR_HTTP_UPLOAD = 2,     /* body cap opts.max_upload instead of opts.max_body */
    NR_HTTP_OPENAI_ERR = 4, /* errors as {"error": {"message", "type", "code"}} (OpenAI) */
};

struct nr_http_route {
    const char *method; /* "GET" (also answers HEAD), "POST", "DELETE" */
    const char *path;   /* exact path, or a prefix ending in '/' when param */
    int param;          /* 1: path is a prefix and the rest of the URL is req->param */
    nr_http_handler handler;
    int flags;        /* enum nr_http_route_flags */
    const char *name; /* label in metrics and the access log */
};

#define NR_HTTP_MAX_ALLOW 16 /* extra allowed Host / Origin names */

struct nr_http_opts {
    const char *host;    /* listen address, numeric or "localhost" (default "127.0.0.1") */
    int port;            /* 0: any free port (see nr_http_port); default 8080 */
    const char *api_key; /* NULL: no key (only allowed on a loopback address) */
    const char *allow_hosts[NR_HTTP_MAX_ALLOW]; /* extra Host/Origin host names, NULL-ended */
    size_t max_body;                            /* bytes of a JSON body (default 1 MiB) -> 413 */
    size_t max_upload;    /* bytes of an upload body (default 32 MiB) -> 413 */
    int max_connections;  /* open connections (default 256) */
    int idle_timeout_s;   /* a connection idle this long is closed (default 60) */
    int header_timeout_s; /* silence allowed before the headers are complete (default 10) */
    int access_log;       /* 1: one info line per request */
};

void nr_http_opts_default(struct nr_http_opts *o);

/* 1 if host is a loopback address or "localhost". */
int nr_http_is_loopback(const char *host);

/*
 * Start serving. Refuses (NR_EINVAL) a non-loopback host without an api_key.
 * routes[] and ud are borrowed until nr_http_stop. NR_EIO if the address
 * cannot be bound.
 */
int nr_http_start(const struct nr_http_opts *o, const struct nr_http_route *routes, int n_routes,
                  void *ud, struct nr_http **out);
/* Stop listening, wait for the connection threads, free. */
void nr_http_stop(struct nr_http *h);
int nr_http_port(const struct nr_http *h);

/* ---- the request ---- */

struct nr_http_req {
    const char *method; /* as sent; HEAD is routed as GET */
    const char *path;   /* URL path, percent-decoded, without the query */
    const char *param;  /* the {id} part for param routes, else "" */
    const char *body;   /* body_len bytes + NUL (never NULL) */
    size_t body_len;
    const struct nr_http_route *route;
    struct nr_http *http;
};

/* A request header or query argument, or NULL. */
const char *nr_http_header(struct nr_http_req *r, const char *name);
const char *nr_http_query(struct nr_http_req *r, const char *name);

/*
 * Parse the body as a JSON object. On failure the 400 reply is already sent
 * ("malformed JSON at line 1 column 7: ...", "the body must be a JSON
 * object") and the status is returned; on success 0 and *out (caller decrefs).
 */
int nr_http_json_body(struct nr_http_req *r, json_t **out);

/*
 * Parse a multipart/form-data (or urlencoded) body: fn is called for each
 * piece of each field, in order (off = bytes of the field before this
 * piece; filename and ctype NULL when absent). fn returns 0 to go on.
 * NR_EINVAL when the body is not a form or is malformed, or fn's nonzero.
 */
typedef int (*nr_http_part_fn)(void *ud, const char *name, const char *filename, const char *ctype,
                               const char *data, uint64_t off, size_t size);
int nr_http_form(struct nr_http_req *r, nr_http_part_fn fn, void *ud);

/* Reply with obj (reference stolen) as JSON; returns status. */
int nr_http_reply_json(struct nr_http_req *r, int status, json_t *obj);
/* Reply with len bytes of buf (ownership taken: freed with nr_free). */
int nr_http_reply_buf(struct nr_http_req *r, int status, const char *ctype, char *buf, size_t len);
/* Reply with a copy of a static/borrowed text. */
int nr_http_reply_text(struct nr_http_req *r, int status, const char *ctype, const char *text);
/* A JSON error naming the problem ({"error": msg}, or OpenAI's shape on
 * NR_HTTP_OPENAI_ERR routes); returns status. 503 and 429 carry Retry-After. */
int nr_http_error(struct nr_http_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Map an nr_status (and nr_err_msg()) to an error reply: EINVAL 400,
 * ENOTFOUND 404, ELIMIT 413, EBUSY 503, EFORMAT 422, others 500. */
int nr_http_error_status(struct nr_http_req *r, int nr_status);

/* ---- streamed replies ---- */

/*
 * A stream: the producer (any thread) writes bytes, the connection sends
 * them as they come (chunked transfer encoding). nr_http_stream_new makes
 * one for request r; nr_http_stream_reply sends the 200 with content type
 * ctype and hands the stream to the connection; if the handler decides
 * instead to answer with an error it replies as usual and the stream is
 * just ended. The producer ends its part with nr_http_stream_end (always
 * exactly once); the stream is freed when both sides are done.
 * `cancel`, if not NULL, is set to 1 when the client goes away; it must
 * stay valid until nr_http_stream_end, after which it is not touched.
 */
int nr_http_stream_new(struct nr_http_req *r, volatile int *cancel, struct nr_http_stream **out);
int nr_http_stream_reply(struct nr_http_req *r, struct nr_http_stream *s, const char *ctype);
/* NR_OK, or NR_ECANCELED once the client is gone (stop producing). */
int nr_http_stream_write(struct nr_http_stream *s, const char *data, size_t len);
int nr_http_stream_write_json(struct nr_http_stream *s, json_t *obj, const char *prefix,
                              const char *suffix); /* obj borrowed */
void nr_http_stream_end(struct nr_http_stream *s);

/* ---- metrics ---- */

/* Append Prometheus text for the request counters and latency histograms of
 * every route to a jansson-free growable text (see nr_http_metrics). */
struct nr_http_text {
    char *p;    /* NUL-terminated, nr_malloc'd */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    int err;    /* sticky NR_ENOMEM / NR_ELIMIT */
};
void nr_http_text_printf(struct nr_http_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void nr_http_metrics(struct nr_http *h, struct nr_http_text *t);
/* Requests being handled now (connections with a request in progress). */
int nr_http_active(struct nr_http *h);

#endif
