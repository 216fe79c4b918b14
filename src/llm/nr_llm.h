/*
 * nr_llm: the generator behind one interface — the local engine (nr_gen on
 * an nr_llama model, the default), an Ollama server (/api/chat, streaming)
 * or any OpenAI-compatible server (/v1/chat/completions, streaming).
 * Chosen once by a spec string:
 *
 *     NULL or ""                          the default local model (nr_llm_default_model)
 *     "models/x.gguf", "local:x.gguf"     local GGUF file
 *     "ollama:llama3.2:3b"                Ollama at http://127.0.0.1:11434
 *     "ollama:llama3.2:3b@http://h:11434" Ollama elsewhere
 *     "openai:gpt-4o-mini@http://h:8000"  OpenAI-compatible (base URL; a trailing /v1 is
 *                                         dropped; default https://api.openai.com;
 *                                         opts.api_key sent as Bearer)
 *
 * Concurrency: the local backend has `slots` sequences (each with its own KV
 * cache of n_ctx positions) and a bounded wait queue of `queue` requests.
 * A request takes a free slot or waits in the queue; when the queue is full
 * the call returns NR_EBUSY at once (the server answers 503 + Retry-After).
 * Remote backends bound in-flight requests the same way. Cancellation as in
 * nr_gen.h (callback returns nonzero or *p->cancel): the slot is freed
 * before the call returns; a generation cancelled while running returns NR_OK
 * with st->done_reason "cancel", one cancelled while still queued returns
 * NR_ECANCELED.
 *
 * Errors of remote servers: NR_EREMOTE with the server's message; a remote
 * that cannot be reached: NR_EIO naming the URL.
 *
 * Thread safety: every function may be called from any thread at once.
 */
#ifndef NR_LLM_H
#define NR_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "nr_gen.h"

struct nr_llm;
struct nr_llama;

struct nr_pool;

enum nr_llm_backend { NR_LLM_LOCAL = 1, NR_LLM_OLLAMA = 2, NR_LLM_OPENAI = 3 };

struct nr_llm_opts {
    const char *spec;     /* see above */
    const char *api_key;  /* OpenAI-compatible backend: Bearer token, or NULL */
    int threads;          /* local: worker threads (<= 0: one per CPU; ignored with pool) */
    struct nr_pool *pool; /* local: borrowed pool to run on (nr_pool.h); NULL: an own one */
    int n_ctx;            /* local: positions per slot (<= 0: min(trained, 4096)) */
    int slots;            /* concurrent generations (default 1 local, 4 remote) */
    int queue;            /* requests that may wait for a slot (default 16) */
    int timeout_s;        /* remote: seconds without a byte before giving up (default 120) */
};

struct nr_llm_info {
    int backend;       /* enum nr_llm_backend */
    const char *model; /* model name as clients see it ("smollm2-135m-instruct", "llama3.2:3b") */
    const char *url;   /* remote base URL, or NULL */
    int n_ctx;         /* context window of one request */
    int slots, queue;
    int busy, waiting;            /* slots in use and requests queued now */
    const struct nr_llama *local; /* the local model (info, tokenizer), or NULL */
    size_t kv_bytes;              /* KV cache memory held for all slots (local) */
    uint64_t requests;            /* requests that got a slot since open (for metrics and tests) */
};

void nr_llm_opts_default(struct nr_llm_opts *o);

/* Path of the default local model, first match: $NANORAG_GEN_MODEL,
 * $NANORAG_MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf,
 * ./models/..., <binary's dir>/../models/...; NR_ENOTFOUND when none. */
int nr_llm_default_model(char *buf, size_t cap);

int nr_llm_open(const struct nr_llm_opts *opts, struct nr_llm **out);
void nr_llm_close(struct nr_llm *l);
void nr_llm_info(struct nr_llm *l, struct nr_llm_info *info);

/* The assistant's reply to msgs[0..n); see nr_gen_chat. */
int nr_llm_chat(struct nr_llm *l, const struct nr_chat_msg *msgs, int n,
                const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st);

/* Completion of a raw prompt (no template); see nr_gen_text. */
int nr_llm_generate(struct nr_llm *l, const char *prompt, const struct nr_gen_params *p,
                    nr_gen_cb cb, void *ud, struct nr_gen_stats *st);

/* Tokens text costs with this generator: exact locally, an estimate
 * (bytes / 4, rounded up) for remote backends. */
int nr_llm_count_tokens(struct nr_llm *l, const char *text, size_t len);

#endif
