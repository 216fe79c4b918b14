/*
 * Inside nr_llm: the backends' contract with llm.c (which owns the slots and
 * the queue) and the incremental stream parsers of the remote backends,
 * exposed so tests and fuzzers can feed them bytes split anywhere.
 */
#ifndef NR_LLM_INTERNAL_H
#define NR_LLM_INTERNAL_H

#include "nr_gen.h"

#include <stddef.h>
#include <stdint.h>

#define NR_LLM_MAX_LINE  (1u << 20)  /* bytes of one NDJSON line or one SSE event */
#define NR_LLM_MAX_ERROR (64u << 10) /* bytes of an error body kept */
#define NR_LLM_MAX_URL   2048
#define NR_LLM_MAX_MODEL 256

/* ---------------------------------------------------------------- local */

struct llm_local;

/* Open the GGUF model at path with `slots` sequences of n_ctx positions. */
struct nr_pool;
int llm_local_open(const char *path, int threads, struct nr_pool *pool, int n_ctx, int slots,
                   struct llm_local **out);
void llm_local_close(struct llm_local *lc);
const char *llm_local_model_name(const struct llm_local *lc);
int llm_local_n_ctx(const struct llm_local *lc);
const struct nr_llama *llm_local_model(const struct llm_local *lc);
size_t llm_local_kv_bytes(const struct llm_local *lc);
int llm_local_chat(struct llm_local *lc, int slot, const struct nr_chat_msg *msgs, int n,
                   const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st);
int llm_local_generate(struct llm_local *lc, int slot, const char *prompt,
                       const struct nr_gen_params *p, nr_gen_cb cb, void *ud,
                       struct nr_gen_stats *st);
int llm_local_count_tokens(const struct llm_local *lc, const char *text, size_t len);

/* ---------------------------------------------------------------- remote */

struct llm_remote {
    int proto;      /* NR_LLM_OLLAMA or NR_LLM_OPENAI */
    char *model;    /* name sent in requests */
    char *url;      /* base URL, no trailing '/', no "/v1" */
    char *api_key;  /* Bearer token or NULL */
    long timeout_s; /* seconds without a byte (and to connect) before giving up */
};

/* One request: chat (msgs) or completion (prompt). */
int llm_remote_run(const struct llm_remote *r, const struct nr_chat_msg *msgs, int n,
                   const char *prompt, const struct nr_gen_params *p, nr_gen_cb cb, void *ud,
                   struct nr_gen_stats *st);

/*
 * The response stream of one request, parsed as bytes arrive.
 *
 * Ollama (NDJSON): one JSON object a line; chat lines carry
 * message.content, completion lines `response`; the last has "done": true,
 * done_reason and the counts and durations (ns); {"error": "..."} ends it.
 *
 * OpenAI (SSE): events separated by a blank line, each "data: <json>" (data
 * lines of one event joined by '\n'; ':' comments, other fields and CRs
 * ignored); chat chunks carry choices[0].delta.content, completions
 * choices[0].text; finish_reason on the last choice; an optional usage
 * object; "data: [DONE]" ends it; {"error": {...}} is an error.
 */
struct nr_llm_stream {
    int proto;    /* NR_LLM_OLLAMA or NR_LLM_OPENAI */
    int chat;     /* 1: chat fields, 0: completion fields */
    nr_gen_cb cb; /* receives each text piece */
    void *ud;
    char *line; /* current line, line_len bytes (cap line_cap, at most NR_LLM_MAX_LINE) */
    size_t line_len, line_cap;
    char *event; /* SSE: data of the current event */
    size_t event_len, event_cap;
    int done;                      /* the terminating object / [DONE] was seen */
    int canceled;                  /* cb returned nonzero */
    int at_end;                    /* nr_llm_stream_end is parsing what was left */
    int pieces;                    /* text pieces delivered */
    int prompt_tokens, gen_tokens; /* from the server, -1 when not told */
    double prompt_s, gen_s;        /* from the server (Ollama), -1 when not told */
    const char *done_reason;       /* "stop", "length" or NULL (static strings) */
    int status;                    /* first error (sticky): NR_EREMOTE, NR_ELIMIT, NR_ENOMEM */
    char err[512];                 /* its message */
};

void nr_llm_stream_init(struct nr_llm_stream *s, int proto, int chat, nr_gen_cb cb, void *ud);
void nr_llm_stream_free(struct nr_llm_stream *s);
/* Feed n bytes. NR_OK; NR_ECANCELED once cb asked to stop; or the sticky
 * error (message in s->err and nr_err). Bytes after the end are ignored. */
int nr_llm_stream_feed(struct nr_llm_stream *s, const char *p, size_t n);
/* End of the body: a last line without a newline is parsed; NR_EREMOTE if
 * the stream ended before its terminating object. */
int nr_llm_stream_end(struct nr_llm_stream *s);

/* The message of an HTTP error body (JSON {"error": "..."} or {"error":
 * {"message": "..."}}, else the text itself, cut to fit) into out. */
void nr_llm_error_message(const char *body, size_t len, long http_status, char *out, size_t cap);

#endif
