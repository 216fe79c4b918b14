/*
 * routes_rag.c — the RAG API: documents (upload, list, get, delete),
 * collections and search. /v1/ask is in routes_gen.c (it needs the
 * generator).
 *
 * POST /v1/documents takes either
 *   multipart/form-data: a "file" field (its file name becomes the source
 *     name, its bytes go through the ingest pipeline from memory: format
 *     detected from the name and the bytes) and optional "collection",
 *     "title", "metadata" (a JSON object) fields; or
 *   JSON: {"text", "source"?, "title"?, "collection"?, "metadata"? (object),
 *     "format"? ("text" | "markdown" | "html")}; without a source the name is
 *     "text:" + the first 16 hex digits of the text's SHA-256.
 * and answers {"id", "status": "added"|"replaced"|"unchanged", "chunks",
 * "collection", "source"} (201 when added). Uploads never name a server
 * path: a source is only a label (a file name's directory part is dropped).
 *
 * Ids in URLs must be decimal 1..2^63-1 without sign or leading zero;
 * collection names follow the store's pattern. Both are checked here so a
 * bad one is a 400 naming it, before any storage is touched.
 */
#include "server_internal.h"

#include "nr_err.h"
#include "nr_ingest.h"
#include "nr_mem.h"
#include "nr_retrieve.h"
#include "nr_sha256.h"
#include "nr_store.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNIPPET_BYTES 300

static int valid_collection(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > NR_STORE_MAX_NAME || !isalnum((unsigned char)c[0]))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)c[i]) && !strchr("_.-", c[i]))
            return 0;
    return 1;
}

/* A document id from a URL or query: 1..INT64_MAX, digits only, no leading 0. */
static int parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v;
    size_t n = strlen(s);
    if (n == 0 || n > 19 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < 1)
        return -1;
    *out = v;
    return 0;
}

static const char *status_name(int st)
{
    return st == NR_INGEST_ADDED ? "added" : st == NR_INGEST_REPLACED ? "replaced" : "unchanged";
}

/* ------------------------------------------------------------ upload */

struct upload {
    char *file;      /* bytes of the "file" field (nr_malloc'd) */
    size_t len, cap; /* bytes used / allocated */
    size_t max;      /* cap on file bytes */
    char name[256];  /* file name, directory part dropped */
    int has_file;
    char collection[NR_STORE_MAX_NAME + 1];
    char *title;    /* nr_malloc'd, <= NR_STORE_MAX_STRING */
    char *metadata; /* nr_malloc'd, <= NR_STORE_MAX_METADATA */
    size_t title_len, meta_len;
};

static int append_field(char **buf, size_t *len, size_t max, const char *what, const char *data,
                        uint64_t off, size_t size)
{
    char *p;
    if (off != *len || *len + size > max)
        return nr_err_set(NR_ELIMIT, "form field '%s' is longer than %zu bytes", what, max);
    p = nr_realloc(*buf, *len + size + 1);
    if (!p)
        return nr_err_set(NR_ENOMEM, "out of memory for form field '%s'", what);
    memcpy(p + *len, data, size);
    *len += size;
    p[*len] = '\0';
    *buf = p;
    return NR_OK;
}

static int on_part(void *ud, const char *name, const char *filename, const char *ctype,
                   const char *data, uint64_t off, size_t size)
{
    struct upload *u = ud;
    (void)ctype;
    if (!strcmp(name, "file")) {
        if (off == 0) {
            const char *base = filename ? filename : "upload";
            const char *sl = strrchr(base, '/'), *bs = strrchr(base, '\\');
            if (u->has_file)
                return nr_err_set(NR_EINVAL, "more than one 'file' field");
            u->has_file = 1;
            if (sl)
                base = sl + 1;
            if (bs && bs + 1 > base)
                base = bs + 1;
            if (!base[0])
                base = "upload";
            snprintf(u->name, sizeof u->name, "%s", base);
        }
        if (off != u->len || u->len + size > u->max)
            return nr_err_set(NR_ELIMIT, "the file is larger than %zu bytes", u->max);
        if (u->len + size > u->cap) {
            size_t ncap = u->cap ? u->cap * 2 : 1 << 16;
            char *p;
            while (ncap < u->len + size)
                ncap *= 2;
            p = nr_realloc(u->file, ncap);
            if (!p)
                return nr_err_set(NR_ENOMEM, "out of memory for the upload");
            u->file = p;
            u->cap = ncap;
        }
        memcpy(u->file + u->len, data, size);
        u->len += size;
        return NR_OK;
    }
    if (!strcmp(name, "collection")) {
        size_t have = strlen(u->collection);
        if (off != have || have + size > NR_STORE_MAX_NAME)
            return nr_err_set(NR_EINVAL, "form field 'collection' is too long");
        memcpy(u->collection + have, data, size);
        u->collection[have + size] = '\0';
        return NR_OK;
    }
    if (!strcmp(name, "title"))
        return append_field(&u->title, &u->title_len, NR_STORE_MAX_STRING, "title", data, off,
                            size);
    if (!strcmp(name, "metadata"))
        return append_field(&u->metadata, &u->meta_len, NR_STORE_MAX_METADATA, "metadata", data,
                            off, size);
    return nr_err_set(NR_EINVAL, "unknown form field '%s' (file, collection, title, metadata)",
                      name);
}

/* Ingest one document from memory and bring the index up to date. */
static int ingest(struct nr_server *s, struct nr_http_req *r, const char *source, const void *data,
                  size_t len, enum nr_load_type type, const char *collection, const char *title,
                  const char *metadata)
{
    struct nr_ingest_opts o;
    struct nr_ingest_file f = {0};
    int rc;

    nr_ingest_opts_default(&o);
    if (collection)
        o.collection = collection;
    o.title = title;
    o.metadata_json = metadata;
    o.load.max_file_bytes = s->o.http.max_upload;
    pthread_mutex_lock(&s->write_mu);
    rc = nr_ingest_mem(s->store_w, s->e, source, data, len, type, &o, &f, NULL);
    pthread_mutex_unlock(&s->write_mu);
    if (rc)
        return nr_http_error_status(r, rc);
    if (f.status == NR_INGEST_ADDED || f.status == NR_INGEST_REPLACED) {
        pthread_mutex_lock(&s->read_mu);
        rc = nr_retriever_update_doc(s->ret, f.doc_id);
        pthread_mutex_unlock(&s->read_mu);
        if (rc)
            return nr_http_error(r, 500, "document %lld was stored but the index update failed: %s",
                                 (long long)f.doc_id, nr_err_msg());
        pthread_mutex_lock(&s->stat_mu);
        s->docs_added++;
        pthread_mutex_unlock(&s->stat_mu);
    }
    return nr_http_reply_json(r, f.status == NR_INGEST_ADDED ? 201 : 200,
                              json_pack("{s:I,s:s,s:i,s:s,s:s}", "id", (json_int_t)f.doc_id,
                                        "status", status_name(f.status), "chunks", f.n_chunks,
                                        "collection", o.collection, "source", source));
}

/* metadata must be a JSON object: returns its compact text (caller frees) or NULL + message */
static char *metadata_text(json_t *m)
{
    char *t;
    if (!json_is_object(m)) {
        nr_err_set(NR_EINVAL, "field 'metadata' must be a JSON object");
        return NULL;
    }
    t = json_dumps(m, JSON_COMPACT);
    if (!t)
        nr_err_set(NR_ENOMEM, "out of memory");
    else if (strlen(t) > NR_STORE_MAX_METADATA) {
        free(t);
        nr_err_set(NR_EINVAL, "field 'metadata' is longer than %d bytes", NR_STORE_MAX_METADATA);
        return NULL;
    }
    return t;
}

static int doc_add_form(struct nr_server *s, struct nr_http_req *r)
{
    struct upload u = {.max = s->o.http.max_upload};
    char *meta = NULL;
    int st, rc;

    rc = nr_http_form(r, on_part, &u);
    if (rc) {
        st = nr_http_error(r,
                           rc == NR_ELIMIT   ? 413
                           : rc == NR_ENOMEM ? 500
                                             : 400,
                           "%s", nr_err_msg());
        goto done;
    }
    if (!u.has_file) {
        st = nr_http_error(r, 400, "form field 'file' is required");
        goto done;
    }
    if (u.collection[0] && !valid_collection(u.collection)) {
        st = nr_http_error(r, 400,
                           "collection names are 1-64 of [A-Za-z0-9_.-], starting "
                           "with a letter or digit");
        goto done;
    }
    if (u.metadata) {
        json_error_t e;
        json_t *m = json_loads(u.metadata, JSON_REJECT_DUPLICATES, &e);
        if (!m) {
            st = nr_http_error(r, 400, "form field 'metadata' is not valid JSON: %s", e.text);
            goto done;
        }
        meta = metadata_text(m);
        json_decref(m);
        if (!meta) {
            st = nr_http_error_status(r, NR_EINVAL);
            goto done;
        }
    }
    st = ingest(s, r, u.name, u.file ? u.file : "", u.len, NR_LOAD_AUTO,
                u.collection[0] ? u.collection : NULL, u.title, meta);
done:
    free(meta);
    nr_free(u.file);
    nr_free(u.title);
    nr_free(u.metadata);
    return st;
}

static int doc_add_json(struct nr_server *s, struct nr_http_req *r)
{
    json_t *body, *m;
    const char *text = NULL, *source = NULL, *title = NULL, *collection = NULL, *format = "text";
    char name[64], *meta = NULL;
    enum nr_load_type type = NR_LOAD_TEXT;
    size_t len;
    int st;

    if ((st = nr_http_json_body(r, &body)))
        return st;
    if (srv_str(body, "text", 1, &text) || srv_str(body, "source", 0, &source) ||
        srv_str(body, "title", 0, &title) || srv_str(body, "collection", 0, &collection) ||
        srv_str(body, "format", 0, &format)) {
        st = nr_http_error_status(r, NR_EINVAL);
        goto done;
    }
    len = json_string_length(json_object_get(body, "text"));
    if (!strcmp(format, "markdown"))
        type = NR_LOAD_MARKDOWN;
    else if (!strcmp(format, "html"))
        type = NR_LOAD_HTML;
    else if (strcmp(format, "text")) {
        st = nr_http_error(r, 400, "field 'format' must be \"text\", \"markdown\" or \"html\"");
        goto done;
    }
    if (collection && !valid_collection(collection)) {
        st = nr_http_error(r, 400,
                           "field 'collection': names are 1-64 of [A-Za-z0-9_.-], "
                           "starting with a letter or digit");
        goto done;
    }
    if (source && (!source[0] || strlen(source) > 1024)) {
        st = nr_http_error(r, 400, "field 'source' must be 1-1024 bytes");
        goto done;
    }
    if (title && strlen(title) > NR_STORE_MAX_STRING) {
        st = nr_http_error(r, 400, "field 'title' is longer than %d bytes", NR_STORE_MAX_STRING);
        goto done;
    }
    if ((m = json_object_get(body, "metadata")) && !(meta = metadata_text(m))) {
        st = nr_http_error_status(r, NR_EINVAL);
        goto done;
    }
    if (!source) {
        char hex[NR_SHA256_HEX];
        nr_sha256_hex(text, len, hex);
        snprintf(name, sizeof name, "text:%.16s", hex);
        source = name;
    }
    st = ingest(s, r, source, text, len, type, collection, title, meta);
done:
    free(meta);
    json_decref(body);
    return st;
}

int route_doc_add(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    const char *ct = nr_http_header(r, "Content-Type");
    if (ct && !strncasecmp(ct, "multipart/form-data", 19))
        return doc_add_form(s, r);
    if (r->body_len > s->o.http.max_body)
        return nr_http_error(r, 413,
                             "a JSON body is limited to %zu bytes (upload larger "
                             "files as multipart/form-data)",
                             s->o.http.max_body);
    return doc_add_json(s, r);
}

/* ------------------------------------------------------------ read */

static json_t *doc_json(const struct nr_store_doc *d)
{
    json_t *meta = NULL, *o;
    if (d->metadata_json)
        meta = json_loads(d->metadata_json, 0, NULL);
    o = json_pack("{s:I,s:s,s:s,s:s?,s:s?,s:s,s:i,s:I,s:I,s:I,s:o}", "id", (json_int_t)d->id,
                  "collection", d->collection, "source", d->source, "title", d->title, "media_type",
                  d->media_type, "content_hash", d->content_hash, "chunks", d->n_chunks,
                  "text_bytes", (json_int_t)d->text_len, "created_at", (json_int_t)d->created_at,
                  "updated_at", (json_int_t)d->updated_at, "metadata", meta ? meta : json_null());
    return o;
}

int route_doc_list(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    const char *col = nr_http_query(r, "collection"), *v;
    int64_t after = 0;
    int limit = 100, n = 0, rc;
    struct nr_store_doc *docs = NULL;
    json_t *arr;

    if (col && !valid_collection(col))
        return nr_http_error(r, 400, "query 'collection' is not a valid collection name");
    if ((v = nr_http_query(r, "after")) && strcmp(v, "0") && parse_id(v, &after))
        return nr_http_error(r, 400, "query 'after' must be a document id");
    if ((v = nr_http_query(r, "limit"))) {
        int64_t l;
        if (parse_id(v, &l) || l > 1000)
            return nr_http_error(r, 400, "query 'limit' must be an integer in [1, 1000]");
        limit = (int)l;
    }
    pthread_mutex_lock(&s->read_mu);
    rc = nr_store_doc_list(s->store_r, col, after, limit, &docs, &n);
    pthread_mutex_unlock(&s->read_mu);
    if (rc)
        return nr_http_error_status(r, rc);
    arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, doc_json(&docs[i]));
    rc = nr_http_reply_json(r, 200,
                            json_pack("{s:o,s:o}", "documents", arr, "next_after",
                                      n == limit ? json_integer(docs[n - 1].id) : json_null()));
    nr_store_doc_list_free(docs, n);
    return rc;
}

int route_doc_get(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_store_doc *d = NULL;
    const char *want_text = nr_http_query(r, "text");
    char *text = NULL;
    size_t len = 0;
    int64_t id;
    int rc;
    json_t *o, *ids;

    if (parse_id(r->param, &id))
        return nr_http_error(r, 400, "a document id is a positive decimal integer");
    pthread_mutex_lock(&s->read_mu);
    rc = nr_store_doc_get(s->store_r, id, &d);
    if (rc == NR_OK && want_text && !strcmp(want_text, "1"))
        rc = nr_store_doc_text(s->store_r, id, &text, &len);
    pthread_mutex_unlock(&s->read_mu);
    if (rc) {
        nr_store_doc_free(d);
        if (rc == NR_ENOTFOUND)
            return nr_http_error(r, 404, "no document %lld", (long long)id);
        return nr_http_error_status(r, rc);
    }
    o = doc_json(d);
    ids = json_array();
    for (int i = 0; i < d->n_chunks; i++)
        json_array_append_new(ids, json_integer(d->chunk_ids[i]));
    json_object_set_new(o, "chunk_ids", ids);
    if (text)
        json_object_set_new(o, "text", json_stringn(text, len));
    nr_free(text);
    nr_store_doc_free(d);
    return nr_http_reply_json(r, 200, o);
}

int route_doc_delete(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    int64_t id;
    int rc;
    if (parse_id(r->param, &id))
        return nr_http_error(r, 400, "a document id is a positive decimal integer");
    pthread_mutex_lock(&s->write_mu);
    rc = nr_store_remove(s->store_w, id);
    pthread_mutex_unlock(&s->write_mu);
    if (rc == NR_ENOTFOUND)
        return nr_http_error(r, 404, "no document %lld", (long long)id);
    if (rc)
        return nr_http_error_status(r, rc);
    pthread_mutex_lock(&s->read_mu);
    rc = nr_retriever_remove_doc(s->ret, id);
    pthread_mutex_unlock(&s->read_mu);
    if (rc)
        return nr_http_error_status(r, rc);
    return nr_http_reply_json(r, 200, json_pack("{s:I}", "deleted", (json_int_t)id));
}

int route_collections(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_store_collection *cols = NULL;
    int n = 0, rc;
    json_t *arr;
    pthread_mutex_lock(&s->read_mu);
    rc = nr_store_collections(s->store_r, &cols, &n);
    pthread_mutex_unlock(&s->read_mu);
    if (rc)
        return nr_http_error_status(r, rc);
    arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:I}", "name", cols[i].name, "documents",
                                             (json_int_t)cols[i].n_docs, "chunks",
                                             (json_int_t)cols[i].n_chunks, "created_at",
                                             (json_int_t)cols[i].created_at));
    nr_free(cols);
    return nr_http_reply_json(r, 200, json_pack("{s:o}", "collections", arr));
}

/* ------------------------------------------------------------ search */

/* The first SNIPPET_BYTES of text, cut on a character boundary. */
static json_t *snippet(const char *text)
{
    size_t n = strlen(text);
    if (n <= SNIPPET_BYTES)
        return json_string(text);
    n = SNIPPET_BYTES;
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--;
    return json_stringn(text, n);
}

int route_search(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_search_opts so;
    struct nr_search_hit hits[NR_RETRIEVE_MAX_K];
    json_t *body, *f, *arr;
    const char *query = NULL, *mode = "hybrid", *col = NULL;
    char meta_val[256];
    int64_t k = 5, doc = 0;
    double min_score = -1;
    int st, rc, n = 0, int8 = 0;

    if ((st = nr_http_json_body(r, &body)))
        return st;
    nr_search_opts_default(&so);
    if (srv_str(body, "query", 1, &query) || srv_int(body, "k", 1, NR_RETRIEVE_MAX_K, &k) ||
        srv_str(body, "mode", 0, &mode) || srv_str(body, "collection", 0, &col) ||
        srv_int(body, "doc_id", 1, INT64_MAX, &doc) ||
        srv_num(body, "min_score", -1, 1, &min_score) || srv_bool(body, "int8", &int8)) {
        st = nr_http_error_status(r, NR_EINVAL);
        goto done;
    }
    if (!query[0] || strlen(query) > NR_STORE_MAX_QUERY) {
        st = nr_http_error(r, 400, "field 'query' must be 1-%d bytes", NR_STORE_MAX_QUERY);
        goto done;
    }
    if (!strcmp(mode, "vector"))
        so.mode = NR_SEARCH_VECTOR;
    else if (!strcmp(mode, "bm25"))
        so.mode = NR_SEARCH_BM25;
    else if (!strcmp(mode, "hybrid"))
        so.mode = NR_SEARCH_HYBRID;
    else {
        st = nr_http_error(r, 400, "field 'mode' must be \"vector\", \"bm25\" or \"hybrid\"");
        goto done;
    }
    if (col && !valid_collection(col)) {
        st = nr_http_error(r, 400, "field 'collection' is not a valid collection name");
        goto done;
    }
    if ((f = json_object_get(body, "filters"))) {
        const char *key;
        json_t *val;
        if (!json_is_object(f) || json_object_size(f) > 1) {
            st = nr_http_error(r, 400, "field 'filters' must be an object with one metadata key");
            goto done;
        }
        json_object_foreach(f, key, val)
        {
            if (json_is_string(val))
                snprintf(meta_val, sizeof meta_val, "%s", json_string_value(val));
            else if (json_is_number(val)) {
                double d = json_number_value(val);
                if (d == floor(d) && fabs(d) < 1e15)
                    snprintf(meta_val, sizeof meta_val, "%lld", (long long)d);
                else
                    snprintf(meta_val, sizeof meta_val, "%.17g", d);
            } else if (json_is_boolean(val) || json_is_null(val))
                snprintf(meta_val, sizeof meta_val, "%s",
                         json_is_null(val)   ? "null"
                         : json_is_true(val) ? "true"
                                             : "false");
            else {
                st = nr_http_error(r, 400,
                                   "filter '%s' must be a string, integer, boolean or "
                                   "null",
                                   key);
                goto done;
            }
            so.meta_key = key;
            so.meta_value = meta_val;
        }
    }
    so.k = (int)k;
    so.collection = col;
    so.doc_id = doc;
    so.min_score = (float)min_score;
    so.int8 = int8;
    pthread_mutex_lock(&s->read_mu);
    rc = nr_retrieve(s->ret, query, &so, hits, &n);
    pthread_mutex_unlock(&s->read_mu);
    if (rc) {
        st = nr_http_error_status(r, rc);
        goto done;
    }
    arr = json_array();
    for (int i = 0; i < n; i++) {
        const struct nr_store_chunk *c = hits[i].chunk;
        json_array_append_new(
            arr, json_pack("{s:i,s:f,s:I,s:I,s:s,s:s?,s:i,s:I,s:I,s:s?,s:o,s:s,s:{s:i,s:f},"
                           "s:{s:i,s:f}}",
                           "rank", i + 1, "score", hits[i].score, "chunk_id",
                           (json_int_t)hits[i].chunk_id, "doc_id", (json_int_t)hits[i].doc_id,
                           "source", c->source, "title", c->title, "page", c->page, "start",
                           (json_int_t)c->start, "end", (json_int_t)c->end, "heading", c->heading,
                           "snippet", snippet(c->text), "text", c->text, "vector", "rank",
                           hits[i].vec_rank, "score", (double)hits[i].vec_score, "bm25", "rank",
                           hits[i].bm25_rank, "score", hits[i].bm25_score));
    }
    nr_search_hits_free(hits, n);
    st = nr_http_reply_json(r, 200,
                            json_pack("{s:s,s:s,s:o}", "query", query, "mode", mode, "hits", arr));
done:
    json_decref(body);
    return st;
}
