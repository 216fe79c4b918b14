/*
 * nr_server: `nanorag serve` — the embedder, the store and its index, and
 * the generator, loaded once and served over HTTP with Ollama-, OpenAI- and
 * RAG-compatible routes (the list is in server.c).
 *
 *     struct nr_server_opts o;  nr_server_opts_default(&o);
 *     o.db_path = "data/nanorag.db";  o.embed_model = "models/all-MiniLM-L6-v2";
 *     nr_server_open(&o, &srv);      // listening when it returns
 *     ... wait for a signal ...
 *     nr_server_close(srv);          // stops listening, waits for requests, frees
 *
 * Ownership: the server owns everything it opens; option strings are
 * borrowed until nr_server_open returns (it keeps copies).
 */
#ifndef NR_SERVER_H
#define NR_SERVER_H

#include "nr_http.h"

struct nr_server;

struct nr_server_opts {
    struct nr_http_opts http; /* listen address, key, caps */
    const char *db_path;      /* the store file (created if missing) */
    const char *embed_model;  /* model dir or .gguf */
    const char *llm_spec;     /* nr_llm spec ("": the default local model); NULL: no
                                 generator (503 on those routes) */
    const char *llm_api_key;  /* for an OpenAI-compatible backend */
    int llm_slots;            /* concurrent generations (<= 0: backend default) */
    int llm_queue;            /* requests waiting for a slot (< 0: backend default) */
    int llm_ctx;              /* context positions per slot (<= 0: backend default) */
    int threads;              /* embedder / generator threads (<= 0: one per CPU) */
    int embed_int8;           /* 1: the embedder's int8 path (nr_embed.h NR_PREC_INT8) */
    const char *device;       /* embedder and vector index: "cpu", "cuda", "auto" (NULL:
                                 $NANORAG_DEVICE, else "cpu"); a GPU that cannot be used
                                 means the CPU, with a log line */
    int64_t gpu_index_rows;   /* mirror the vector index on the GPU from this many vectors
                                 (< 0: NR_RETRIEVE_GPU_MIN_ROWS) */
    int max_inputs;           /* texts per embed request (default 256) */
    size_t max_prompt;        /* bytes of a prompt or of all messages (default 256 KiB) */
};

void nr_server_opts_default(struct nr_server_opts *o);
int nr_server_open(const struct nr_server_opts *o, struct nr_server **out);
void nr_server_close(struct nr_server *s);
/* The port it listens on (useful with port 0). */
int nr_server_port(const struct nr_server *s);

#endif
