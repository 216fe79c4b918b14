/*
 * server_internal.h — what the route files (routes_*.c) share with server.c:
 * the server's state, the request-field helpers and the shared embed path.
 * Not a public header.
 */
#ifndef NR_SERVER_INTERNAL_H
#define NR_SERVER_INTERNAL_H

#include "nr_embed.h"
#include "nr_http.h"
#include "nr_server.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

struct nr_batch;
struct nr_pool;
struct nr_store;
struct nr_retriever;
struct nr_llm;

struct nr_server {
    struct nr_server_opts o;
    char *db_path, *embed_path, *llm_spec, *llm_key; /* owned copies of the options */
    struct nr_http *http; /* set after listening starts: handlers use req->http */
    struct nr_embedder *e;
    struct nr_embedder_info einfo;
    char embed_name[128]; /* the embedder as clients name it */
    struct nr_batch *batch;
    struct nr_pool *pool;    /* index scans */
    pthread_mutex_t read_mu; /* store_r and ret: one thread at a time */
    struct nr_store *store_r;
    struct nr_retriever *ret;
    pthread_mutex_t write_mu; /* store_w */
    struct nr_store *store_w;
    struct nr_llm *llm;                 /* NULL: no generator */
    char llm_name[128];                 /* as clients name it */
    double started;                     /* unix seconds */
    double load_s;                      /* seconds to load everything */
    pthread_mutex_t stat_mu;            /* guards the generation counters */
    uint64_t gen_tokens, prompt_tokens; /* generated / evaluated, all requests */
    double gen_s, prompt_s;             /* seconds of decode / prefill, all requests */
    uint64_t docs_added;
    volatile int stopping;  /* set at close: generations cancel */
    int producers;          /* streaming generation threads alive (under stat_mu) */
    pthread_cond_t jobs_cv; /* producers reached 0 (with stat_mu) */
    int jobs_cv_init;
};

/*
 * Request fields. Each returns NR_OK, or NR_EINVAL with a message naming
 * the field and what it must be ("field 'k' must be an integer in [1, 200]").
 * Absent fields leave *out unchanged (required ones are an error); a JSON
 * null is an error like any other wrong type.
 */
int srv_str(json_t *o, const char *key, int required, const char **out);
int srv_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out);
int srv_num(json_t *o, const char *key, double lo, double hi, double *out);
int srv_bool(json_t *o, const char *key, int *out);

/* 1 if the name a client sent means the model `canonical` (case-insensitive,
 * ":latest" and an "org/" prefix ignored). */
int srv_model_is(const char *name, const char *canonical);
/* 1 if name is the embedding model (or one of its aliases). */
int srv_is_embed_model(struct nr_server *s, const char *name);

/*
 * The shared embed path of /api/embed, /api/embeddings and /v1/embeddings:
 * input (a string or an array of strings, 1..max_inputs of them) embedded
 * through the batcher; truncate 0 refuses texts longer than the model's
 * window; dims in [1, dim] cuts each vector to its first dims and
 * re-normalizes (0: full). On error the reply is sent and its status
 * returned; on success 0, *vecs (n x *dim_out floats, nr_free) and
 * *tokens (the texts' token count).
 */
int srv_embed(struct nr_server *s, struct nr_http_req *r, json_t *input, const char *field,
              int truncate, int dims, float **vecs, int *n, int *dim_out, int64_t *tokens);

/* The generator's state now (routes_gen.c). */
struct srv_llm_load {
    const char *backend; /* "local", "ollama", "openai" */
    int n_ctx, slots, busy, waiting;
    size_t kv_bytes;
};
void srv_llm_load(struct nr_server *s, struct srv_llm_load *l);
/* Open the generator named by s->llm_spec (routes_gen.c); NR_OK when none. */
int srv_llm_open(struct nr_server *s);
void srv_llm_close(struct nr_server *s);
/* Tokens text costs with the generator, or a negative status. */
int srv_llm_count_tokens(struct nr_server *s, const char *text, size_t len);

/* Append to an nr_http_text: s as a JSON string literal; n floats as a JSON
 * array ("%.9g": each float32 round-trips exactly); n floats as base64 of
 * their little-endian bytes (OpenAI's encoding_format "base64"). */
void srv_text_json_str(struct nr_http_text *t, const char *s);
void srv_text_floats(struct nr_http_text *t, const float *v, int n);
void srv_text_base64_floats(struct nr_http_text *t, const float *v, int n);
/* Reply with t (taken) as JSON, or 500 when building it failed. */
int srv_reply_text_json(struct nr_http_req *r, struct nr_http_text *t);
/* Model description for /api/tags, /api/ps and /api/show: the embedder's or
 * the generator's, depending on which name it is (NULL when neither). */
json_t *srv_model_details(struct nr_server *s, int embed);

/* Unix time now, seconds. */
double srv_now(void);
/* RFC 3339 UTC time of unix seconds t ("2026-11-25T19:43:02.123Z"). */
void srv_time_rfc3339(double t, char *buf, size_t cap);

/* route handlers, by file */
int route_root(void *ud, struct nr_http_req *r);
int route_health(void *ud, struct nr_http_req *r);
int route_metrics(void *ud, struct nr_http_req *r);
int route_version(void *ud, struct nr_http_req *r);
int route_status(void *ud, struct nr_http_req *r);

int route_ollama_tags(void *ud, struct nr_http_req *r);
int route_ollama_show(void *ud, struct nr_http_req *r);
int route_ollama_ps(void *ud, struct nr_http_req *r);
int route_ollama_embed(void *ud, struct nr_http_req *r);
int route_ollama_embeddings(void *ud, struct nr_http_req *r);
int route_ollama_generate(void *ud, struct nr_http_req *r);
int route_ollama_chat(void *ud, struct nr_http_req *r);

int route_openai_models(void *ud, struct nr_http_req *r);
int route_openai_embeddings(void *ud, struct nr_http_req *r);
int route_openai_chat(void *ud, struct nr_http_req *r);
int route_openai_completions(void *ud, struct nr_http_req *r);
int route_tokenize(void *ud, struct nr_http_req *r);

int route_doc_add(void *ud, struct nr_http_req *r);
int route_doc_list(void *ud, struct nr_http_req *r);
int route_doc_get(void *ud, struct nr_http_req *r);
int route_doc_delete(void *ud, struct nr_http_req *r);
int route_collections(void *ud, struct nr_http_req *r);
int route_search(void *ud, struct nr_http_req *r);
int route_ask(void *ud, struct nr_http_req *r);

#endif
