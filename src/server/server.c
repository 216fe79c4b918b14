/*
 * server.c — `nanorag serve`: what is loaded once, the route table, and the
 * helpers every route uses (request fields, model names, the embed path).
 *
 * What the server holds, and who may touch it when:
 *   e, batch       the embedder, used through the batcher (nr_batch.h) by the
 *                  embed routes; the retriever and uploads call the embedder
 *                  directly (it serializes calls inside).
 *   store_r, ret   one store handle and the retriever (which owns the vector
 *                  index), under read_mu: searches and document reads. A
 *                  store handle and the retriever are one-thread-at-a-time
 *                  objects; SQLite readers never wait for the writer (WAL).
 *   store_w        a second handle for uploads and deletes, under write_mu,
 *                  so a long upload (load, chunk, embed, one transaction)
 *                  does not block searches. After a write the retriever is
 *                  brought up to date under read_mu.
 *   llm            the generator (nr_llm.h), thread-safe by itself; NULL
 *                  until one is configured: its routes then answer 503.
 *
 * Limits (defaults; RELIABILITY B6): JSON body 1 MiB and upload 32 MiB (413),
 * 256 texts per embed request (413), prompt bytes 256 KiB (413), search k
 * 1..200 (400), header 64 KiB (431, by libmicrohttpd), 256 connections.
 */
#include "server_internal.h"

#include "nr_batch.h"
#include "nr_err.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_sha256.h"
#include "nr_store.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* clang-format off */
static const struct nr_http_route routes[] = {
    {"GET",    "/",                    0, route_root,               NR_HTTP_PUBLIC, "root"},
    {"GET",    "/health",              0, route_health,             NR_HTTP_PUBLIC, "health"},
    {"GET",    "/metrics",             0, route_metrics,            0, "metrics"},
    {"GET",    "/v1/status",           0, route_status,             0, "status"},
    {"GET",    "/api/version",         0, route_version,            0, "api_version"},
    {"GET",    "/api/tags",            0, route_ollama_tags,        0, "api_tags"},
    {"POST",   "/api/show",            0, route_ollama_show,        0, "api_show"},
    {"GET",    "/api/ps",              0, route_ollama_ps,          0, "api_ps"},
    {"POST",   "/api/embed",           0, route_ollama_embed,       0, "api_embed"},
    {"POST",   "/api/embeddings",      0, route_ollama_embeddings,  0, "api_embeddings"},
    {"POST",   "/api/generate",        0, route_ollama_generate,    0, "api_generate"},
    {"POST",   "/api/chat",            0, route_ollama_chat,        0, "api_chat"},
    {"GET",    "/v1/models",           0, route_openai_models,      NR_HTTP_OPENAI_ERR, "v1_models"},
    {"POST",   "/v1/embeddings",       0, route_openai_embeddings,  NR_HTTP_OPENAI_ERR, "v1_embeddings"},
    {"POST",   "/v1/chat/completions", 0, route_openai_chat,        NR_HTTP_OPENAI_ERR, "v1_chat"},
    {"POST",   "/v1/completions",      0, route_openai_completions, NR_HTTP_OPENAI_ERR, "v1_completions"},
    {"POST",   "/v1/tokenize",         0, route_tokenize,           0, "v1_tokenize"},
    {"POST",   "/v1/documents",        0, route_doc_add,            NR_HTTP_UPLOAD, "v1_doc_add"},
    {"GET",    "/v1/documents",        0, route_doc_list,           0, "v1_doc_list"},
    {"GET",    "/v1/documents/",       1, route_doc_get,            0, "v1_doc_get"},
    {"DELETE", "/v1/documents/",       1, route_doc_delete,         0, "v1_doc_delete"},
    {"GET",    "/v1/collections",      0, route_collections,        0, "v1_collections"},
    {"POST",   "/v1/search",           0, route_search,             0, "v1_search"},
    {"POST",   "/v1/ask",              0, route_ask,                0, "v1_ask"},
};
/* clang-format on */

void nr_server_opts_default(struct nr_server_opts *o)
{
    memset(o, 0, sizeof *o);
    nr_http_opts_default(&o->http);
    o->max_inputs = 256;
    o->max_prompt = 256 << 10;
    o->llm_queue = -1;
    o->gpu_index_rows = -1;
}

double srv_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void srv_time_rfc3339(double t, char *buf, size_t cap)
{
    time_t sec = (time_t)t;
    struct tm tm;
    char base[32];
    gmtime_r(&sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", base, (int)((t - (double)sec) * 1000.0) % 1000);
}

/* ------------------------------------------------------------ fields */

int srv_str(json_t *o, const char *key, int required, const char **out)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return required ? nr_err_set(NR_EINVAL, "field '%s' is required", key) : NR_OK;
    if (!json_is_string(v))
        return nr_err_set(NR_EINVAL, "field '%s' must be a string", key);
    *out = json_string_value(v);
    return NR_OK;
}

int srv_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    json_int_t x;
    if (!v)
        return NR_OK;
    if (json_is_integer(v))
        x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e15)
        x = (json_int_t)json_real_value(v);
    else
        return nr_err_set(NR_EINVAL, "field '%s' must be an integer in [%lld, %lld]", key,
                          (long long)lo, (long long)hi);
    if (x < lo || x > hi)
        return nr_err_set(NR_EINVAL, "field '%s' must be an integer in [%lld, %lld], not %lld", key,
                          (long long)lo, (long long)hi, (long long)x);
    *out = (int64_t)x;
    return NR_OK;
}

int srv_num(json_t *o, const char *key, double lo, double hi, double *out)
{
    json_t *v = json_object_get(o, key);
    double x;
    if (!v)
        return NR_OK;
    if (!json_is_number(v))
        return nr_err_set(NR_EINVAL, "field '%s' must be a number in [%g, %g]", key, lo, hi);
    x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return nr_err_set(NR_EINVAL, "field '%s' must be a number in [%g, %g], not %g", key, lo, hi,
                          x);
    *out = x;
    return NR_OK;
}

int srv_bool(json_t *o, const char *key, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return NR_OK;
    if (!json_is_boolean(v))
        return nr_err_set(NR_EINVAL, "field '%s' must be true or false", key);
    *out = json_is_true(v);
    return NR_OK;
}

int srv_model_is(const char *name, const char *canonical)
{
    const char *slash = strrchr(name, '/');
    size_t n;
    if (slash)
        name = slash + 1;
    n = strlen(name);
    if (n > 7 && !strcasecmp(name + n - 7, ":latest"))
        n -= 7;
    return n == strlen(canonical) && !strncasecmp(name, canonical, n);
}

int srv_is_embed_model(struct nr_server *s, const char *name)
{
    /* Ollama's library calls all-MiniLM-L6-v2 "all-minilm" */
    if (!strncasecmp(s->embed_name, "all-MiniLM-L6", 13) &&
        (srv_model_is(name, "all-minilm") || srv_model_is(name, "all-minilm:l6-v2")))
        return 1;
    return srv_model_is(name, s->embed_name);
}

/* ------------------------------------------------------------ embed */

int srv_embed(struct nr_server *s, struct nr_http_req *r, json_t *input, const char *field,
              int truncate, int dims, float **vecs, int *n_out, int *dim_out, int64_t *tokens)
{
    const char **texts = NULL;
    size_t *lens = NULL;
    float *v = NULL, *packed = NULL;
    int n, dim = s->einfo.dim, rc, status = 0;
    int64_t tok = 0;

    *vecs = NULL;
    if (!input)
        return nr_http_error(r, 400, "field '%s' is required", field);
    if (json_is_string(input))
        n = 1;
    else if (json_is_array(input))
        n = (int)(json_array_size(input) > (size_t)s->o.max_inputs + 1 ? (size_t)s->o.max_inputs + 1
                                                                       : json_array_size(input));
    else
        return nr_http_error(r, 400, "field '%s' must be a string or an array of strings", field);
    if (n == 0)
        return nr_http_error(r, 400, "field '%s' must not be an empty array", field);
    if (n > s->o.max_inputs)
        return nr_http_error(r, 413, "field '%s' has more than %d inputs", field, s->o.max_inputs);
    if (dims < 0 || dims > dim)
        return nr_http_error(r, 400, "field 'dimensions' must be an integer in [1, %d]", dim);
    texts = nr_calloc((size_t)n, sizeof *texts);
    lens = nr_calloc((size_t)n, sizeof *lens);
    v = nr_malloc((size_t)n * (size_t)dim * sizeof *v);
    if (!texts || !lens || !v) {
        status = nr_http_error(r, 500, "out of memory for %d inputs", n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        json_t *t = json_is_string(input) ? input : json_array_get(input, (size_t)i);
        if (!json_is_string(t)) {
            status = nr_http_error(r, 400, "field '%s'[%d] must be a string", field, i);
            goto done;
        }
        texts[i] = json_string_value(t);
        lens[i] = json_string_length(t);
        if (memchr(texts[i], '\0', lens[i])) {
            status = nr_http_error(r, 400, "field '%s'[%d] contains a NUL character", field, i);
            goto done;
        }
        {
            int c = nr_embedder_count_tokens(s->e, texts[i], lens[i]);
            if (c < 0) {
                status = nr_http_error_status(r, c);
                goto done;
            }
            if (!truncate && c > s->einfo.max_seq) {
                status = nr_http_error(r, 400,
                                       "input %d has %d tokens, more than the model's %d "
                                       "(send truncate: true to cut it)",
                                       i, c, s->einfo.max_seq);
                goto done;
            }
            tok += c > s->einfo.max_seq ? s->einfo.max_seq : c;
        }
    }
    if ((rc = nr_batch_embed(s->batch, texts, lens, n, v))) {
        status = nr_http_error_status(r, rc);
        goto done;
    }
    if (dims > 0 && dims < dim) {
        packed = v; /* rows shrink in place: row i moves to i * dims < i * dim */
        for (int i = 0; i < n; i++) {
            float *src = v + (size_t)i * (size_t)dim, *dst = packed + (size_t)i * (size_t)dims;
            double ss = 0;
            for (int k = 0; k < dims; k++)
                ss += (double)src[k] * src[k];
            ss = ss > 0 ? 1.0 / sqrt(ss) : 0;
            for (int k = 0; k < dims; k++)
                dst[k] = (float)(src[k] * ss);
        }
        dim = dims;
    }
    *vecs = v;
    v = NULL;
    *n_out = n;
    *dim_out = dim;
    *tokens = tok;
done:
    nr_free(texts);
    nr_free(lens);
    nr_free(v);
    return status;
}

/* ------------------------------------------------------------ open / close */

static char *dup_opt(const char *s, int *bad)
{
    char *d;
    if (!s)
        return NULL;
    d = nr_strdup(s);
    if (!d)
        *bad = 1;
    return d;
}

int nr_server_open(const struct nr_server_opts *o, struct nr_server **out)
{
    struct nr_server *s;
    struct nr_embed_opts eo;
    struct nr_retriever_opts ro;
    double t0 = srv_now();
    int rc, bad = 0;

    *out = NULL;
    if (!o->db_path || !o->embed_model)
        return nr_err_set(NR_EINVAL, "server: db_path and embed_model are required");
    s = nr_calloc(1, sizeof *s);
    if (!s)
        return nr_err_set(NR_ENOMEM, "server: out of memory");
    pthread_mutex_init(&s->read_mu, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->stat_mu, NULL);
    s->o = *o;
    s->db_path = dup_opt(o->db_path, &bad);
    s->embed_path = dup_opt(o->embed_model, &bad);
    s->llm_spec = dup_opt(o->llm_spec, &bad);
    s->llm_key = dup_opt(o->llm_api_key, &bad);
    if (bad) {
        rc = nr_err_set(NR_ENOMEM, "server: out of memory");
        goto fail;
    }
    if (s->o.max_inputs <= 0)
        s->o.max_inputs = 256;
    if (!s->o.max_prompt)
        s->o.max_prompt = 256 << 10;
    s->started = t0;

    /* One worker pool for everything that computes on the CPU: the embedder,
     * the local generator and the index scan take turns run by run instead
     * of putting 2x or 3x the cores' threads on the cores (measured: 2-thread
     * decode fell to a tenth of 1-thread while an embed batch ran on its own
     * pool of 2 on 2 cores). */
    if (!(s->pool = nr_pool_new(o->threads))) {
        rc = NR_ENOMEM;
        goto fail;
    }
    nr_embed_opts_default(&eo);
    eo.pool = s->pool;
    eo.device = o->device;
    if (o->embed_int8)
        eo.precision = NR_PREC_INT8;
    if ((rc = nr_embedder_open(s->embed_path, &eo, &s->e))) {
        nr_err_wrap(rc, "loading the embedding model");
        goto fail;
    }
    nr_embedder_info(s->e, &s->einfo);
    snprintf(s->embed_name, sizeof s->embed_name, "%s", s->einfo.model);
    if ((rc = nr_batch_new(s->e, 0, &s->batch)))
        goto fail;
    if ((rc = nr_store_open(s->db_path, &s->store_r)) ||
        (rc = nr_store_open(s->db_path, &s->store_w))) {
        nr_err_wrap(rc, "opening the store");
        goto fail;
    }
    nr_retriever_opts_default(&ro);
    ro.device = o->device;
    if (o->gpu_index_rows >= 0)
        ro.gpu_min_rows = o->gpu_index_rows;
    if ((rc = nr_retriever_open(s->store_r, s->e, s->pool, &ro, &s->ret))) {
        nr_err_wrap(rc, "loading the vector index");
        goto fail;
    }
    if ((rc = srv_llm_open(s))) {
        nr_err_wrap(rc, "opening the generator");
        goto fail;
    }
    s->load_s = srv_now() - t0;
    if ((rc = nr_http_start(&s->o.http, routes, (int)(sizeof routes / sizeof routes[0]), s,
                            &s->http)))
        goto fail;
    s->o.http.host = NULL; /* borrowed strings: not kept past open */
    s->o.http.api_key = NULL;
    s->o.db_path = s->o.embed_model = s->o.llm_spec = s->o.llm_api_key = s->o.device = NULL;
    memset(s->o.http.allow_hosts, 0, sizeof s->o.http.allow_hosts);
    *out = s;
    return NR_OK;
fail:
    nr_server_close(s);
    return rc;
}

void nr_server_close(struct nr_server *s)
{
    if (!s)
        return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELAXED); /* generations stop at their next token */
    nr_http_stop(s->http);                               /* then: no handler runs after this */
    srv_llm_close(s);
    nr_retriever_close(s->ret);
    nr_store_close(s->store_r);
    nr_store_close(s->store_w);
    nr_batch_free(s->batch);
    nr_embedder_close(s->e);
    nr_pool_free(s->pool); /* after everything that runs on it */
    nr_free(s->db_path);
    nr_free(s->embed_path);
    nr_free(s->llm_spec);
    nr_free(s->llm_key);
    pthread_mutex_destroy(&s->read_mu);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->stat_mu);
    nr_free(s);
}

int nr_server_port(const struct nr_server *s)
{
    return nr_http_port(s->http);
}

/* ------------------------------------------------------------ JSON text */

void srv_text_json_str(struct nr_http_text *t, const char *s)
{
    char buf[512];
    size_t k = 0;
    buf[k++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (k > sizeof buf - 8) {
            buf[k] = '\0';
            nr_http_text_printf(t, "%s", buf);
            k = 0;
        }
        if (*p == '"' || *p == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)*p;
        } else if (*p < 0x20) {
            k += (size_t)snprintf(buf + k, sizeof buf - k, "\\u%04x", *p);
        } else {
            buf[k++] = (char)*p;
        }
    }
    buf[k++] = '"';
    buf[k] = '\0';
    nr_http_text_printf(t, "%s", buf);
}

void srv_text_floats(struct nr_http_text *t, const float *v, int n)
{
    char buf[4096];
    size_t k = 0;
    buf[k++] = '[';
    for (int i = 0; i < n; i++) {
        if (k > sizeof buf - 32) {
            buf[k] = '\0';
            nr_http_text_printf(t, "%s", buf);
            k = 0;
        }
        k += (size_t)snprintf(buf + k, sizeof buf - k, i ? ",%.9g" : "%.9g",
                              isfinite(v[i]) ? (double)v[i] : 0.0);
    }
    buf[k++] = ']';
    buf[k] = '\0';
    nr_http_text_printf(t, "%s", buf);
}

void srv_text_base64_floats(struct nr_http_text *t, const float *v, int n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char buf[4096];
    size_t k = 0, nbytes = (size_t)n * 4;
    unsigned char tri[3];
    buf[k++] = '"';
    for (size_t i = 0; i < nbytes; i += 3) {
        size_t got = 0;
        for (; got < 3 && i + got < nbytes; got++) {
            size_t b = i + got;
            uint32_t u;
            memcpy(&u, &v[b / 4], 4);
            tri[got] = (unsigned char)(u >> (8 * (b % 4))); /* little-endian byte order */
        }
        for (size_t g = got; g < 3; g++)
            tri[g] = 0;
        if (k > sizeof buf - 8) {
            buf[k] = '\0';
            nr_http_text_printf(t, "%s", buf);
            k = 0;
        }
        buf[k++] = tab[tri[0] >> 2];
        buf[k++] = tab[((tri[0] & 3) << 4) | (tri[1] >> 4)];
        buf[k++] = got > 1 ? tab[((tri[1] & 15) << 2) | (tri[2] >> 6)] : '=';
        buf[k++] = got > 2 ? tab[tri[2] & 63] : '=';
    }
    buf[k++] = '"';
    buf[k] = '\0';
    nr_http_text_printf(t, "%s", buf);
}

int srv_reply_text_json(struct nr_http_req *r, struct nr_http_text *t)
{
    if (t->err) {
        nr_free(t->p);
        return nr_http_error(r, t->err == NR_ELIMIT ? 413 : 500,
                             t->err == NR_ELIMIT ? "the reply would be too large"
                                                 : "out of memory building the reply");
    }
    return nr_http_reply_buf(r, 200, "application/json", t->p, t->len);
}

json_t *srv_model_details(struct nr_server *s, int embed)
{
    char digest[NR_SHA256_HEX], when[40];
    const char *name = embed ? s->embed_name : s->llm_name;
    /* a stable identifier of what is loaded (not a file digest) */
    nr_sha256_hex(embed ? nr_embedder_model_id(s->e) : s->llm_name,
                  strlen(embed ? nr_embedder_model_id(s->e) : s->llm_name), digest);
    srv_time_rfc3339(s->started, when, sizeof when);
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:{s:s,s:s,s:s,s:[s],s:s,s:s}}", "name", name, "model",
                     name, "modified_at", when, "size",
                     (json_int_t)(embed ? s->einfo.weight_bytes : 0), "digest", digest, "details",
                     "parent_model", "", "format", embed ? s->einfo.source : "gguf", "family",
                     embed ? "bert" : "llama", "families", embed ? "bert" : "llama",
                     "parameter_size", "", "quantization_level", embed ? s->einfo.stored : "");
}
