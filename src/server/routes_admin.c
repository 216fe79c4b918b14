/*
 * routes_admin.c — liveness, version, status and Prometheus metrics.
 *
 * GET / and /health answer without the API key (liveness probes); /metrics
 * and /v1/status need it like every other route. Metrics are plain text in
 * the Prometheus exposition format: HTTP requests and latency histograms
 * per route (nr_http), embedding throughput (batcher counters: texts,
 * passes, busy seconds — rate() of texts gives embeddings/s), generation
 * tokens and seconds (rate() gives tokens/s), queue depths (embed requests
 * waiting, generations running and waiting, requests in progress) and the
 * memory each component holds.
 */
#include "server_internal.h"

#include "nr_batch.h"
#include "nr_mem.h"
#include "nr_retrieve.h"

#include <stdio.h>
#include <string.h>

int route_root(void *ud, struct nr_http_req *r)
{
    (void)ud;
    /* what Ollama answers, so tools that probe for it find one */
    return nr_http_reply_text(r, 200, "text/plain; charset=utf-8", "Ollama is running");
}

int route_health(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    return nr_http_reply_json(r, 200,
                              json_pack("{s:s,s:f,s:b}", "status", "ok", "uptime_s",
                                        srv_now() - s->started, "generator", s->llm != NULL));
}

int route_version(void *ud, struct nr_http_req *r)
{
    (void)ud;
    /* Ollama clients compare this against their minimum; nanorag's own
     * version goes beside it. */
    return nr_http_reply_json(r, 200,
                              json_pack("{s:s,s:s}", "version", "0.12.0", "nanorag", NR_VERSION));
}

int route_status(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_batch_stats bs;
    struct nr_retriever_info ri;
    json_t *o, *llm = json_null(), *index;

    nr_batch_get_stats(s->batch, &bs);
    pthread_mutex_lock(&s->read_mu);
    nr_retriever_info(s->ret, &ri);
    pthread_mutex_unlock(&s->read_mu);
    index = json_pack("{s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "vectors", (json_int_t)ri.vectors,
                      "bytes", (json_int_t)ri.cpu_bytes, "device", ri.device, "device_asked",
                      ri.asked, "gpu_bytes", (json_int_t)ri.gpu_bytes, "gpu_min_vectors",
                      (json_int_t)ri.gpu_min_rows, "gpu_searches", (json_int_t)ri.gpu_searches,
                      "cpu_searches", (json_int_t)ri.cpu_searches, "note", ri.note);
    if (s->llm) {
        struct srv_llm_load l;
        srv_llm_load(s, &l);
        llm = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:I}", "model", s->llm_name, "backend", l.backend,
                        "n_ctx", l.n_ctx, "slots", l.slots, "busy", l.busy, "waiting", l.waiting,
                        "kv_bytes", (json_int_t)l.kv_bytes);
    }
    o = json_pack("{s:s,s:f,s:f,s:{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:I,s:I},s:o,s:o,"
                  "s:{s:I,s:I,s:I,s:f,s:i},s:I}",
                  "version", NR_VERSION, "uptime_s", srv_now() - s->started, "load_s", s->load_s,
                  "embedder", "model", s->embed_name, "device", s->einfo.device, "precision",
                  s->einfo.precision, "kernel", s->einfo.kernel, "dim", s->einfo.dim, "max_seq",
                  s->einfo.max_seq, "threads", s->einfo.threads, "weight_bytes",
                  (json_int_t)s->einfo.weight_bytes, "workspace_bytes",
                  (json_int_t)s->einfo.workspace_bytes, "index", index ? index : json_null(),
                  "generator", llm, "embed_batches", "texts", (json_int_t)bs.texts, "requests",
                  (json_int_t)bs.requests, "passes", (json_int_t)bs.passes, "busy_s", bs.busy_s,
                  "waiting", bs.waiting, "memory_held_bytes", (json_int_t)nr_mem_held());
    return nr_http_reply_json(r, 200, o);
}

int route_metrics(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_http_text t = {0};
    struct nr_batch_stats bs;
    struct nr_retriever_info ri;
    uint64_t gen_tok, prompt_tok;
    double gen_s, prompt_s;
    int busy = 0, waiting = 0;
    size_t kv = 0;

    nr_batch_get_stats(s->batch, &bs);
    pthread_mutex_lock(&s->read_mu);
    nr_retriever_info(s->ret, &ri);
    pthread_mutex_unlock(&s->read_mu);
    pthread_mutex_lock(&s->stat_mu);
    gen_tok = s->gen_tokens;
    prompt_tok = s->prompt_tokens;
    gen_s = s->gen_s;
    prompt_s = s->prompt_s;
    pthread_mutex_unlock(&s->stat_mu);
    if (s->llm) {
        struct srv_llm_load l;
        srv_llm_load(s, &l);
        busy = l.busy;
        waiting = l.waiting;
        kv = l.kv_bytes;
    }

    nr_http_metrics(r->http, &t);
    /* speeds while working (counters over the seconds spent): rate() of the
     * counters below gives the load, these give the capacity */
    nr_http_text_printf(
        &t,
        "# HELP nanorag_embed_texts_per_second Texts embedded per second of embedder time.\n"
        "# TYPE nanorag_embed_texts_per_second gauge\nnanorag_embed_texts_per_second %.3f\n"
        "# HELP nanorag_generate_tokens_per_second Tokens generated per second of decoding.\n"
        "# TYPE nanorag_generate_tokens_per_second gauge\n"
        "nanorag_generate_tokens_per_second %.3f\n"
        "# HELP nanorag_prompt_tokens_per_second Prompt tokens evaluated per second of prefill.\n"
        "# TYPE nanorag_prompt_tokens_per_second gauge\nnanorag_prompt_tokens_per_second %.3f\n",
        bs.busy_s > 0 ? (double)bs.texts / bs.busy_s : 0.0,
        gen_s > 0 ? (double)gen_tok / gen_s : 0.0,
        prompt_s > 0 ? (double)prompt_tok / prompt_s : 0.0);
    nr_http_text_printf(
        &t,
        "# HELP nanorag_embed_texts_total Texts embedded by the embed routes.\n"
        "# TYPE nanorag_embed_texts_total counter\nnanorag_embed_texts_total %llu\n"
        "# HELP nanorag_embed_passes_total Embedder calls (coalesced batches).\n"
        "# TYPE nanorag_embed_passes_total counter\nnanorag_embed_passes_total %llu\n"
        "# HELP nanorag_embed_requests_total Embed requests served by the batcher.\n"
        "# TYPE nanorag_embed_requests_total counter\nnanorag_embed_requests_total %llu\n"
        "# HELP nanorag_embed_busy_seconds_total Seconds the embedder spent on batches.\n"
        "# TYPE nanorag_embed_busy_seconds_total counter\n"
        "nanorag_embed_busy_seconds_total %.6f\n"
        "# HELP nanorag_generated_tokens_total Tokens generated.\n"
        "# TYPE nanorag_generated_tokens_total counter\nnanorag_generated_tokens_total %llu\n"
        "# HELP nanorag_generation_seconds_total Seconds of decoding.\n"
        "# TYPE nanorag_generation_seconds_total counter\n"
        "nanorag_generation_seconds_total %.6f\n"
        "# HELP nanorag_prompt_tokens_total Prompt tokens evaluated.\n"
        "# TYPE nanorag_prompt_tokens_total counter\nnanorag_prompt_tokens_total %llu\n"
        "# HELP nanorag_prompt_seconds_total Seconds of prompt evaluation.\n"
        "# TYPE nanorag_prompt_seconds_total counter\nnanorag_prompt_seconds_total %.6f\n"
        "# HELP nanorag_queue_depth Requests waiting or running, by queue.\n"
        "# TYPE nanorag_queue_depth gauge\n"
        "nanorag_queue_depth{queue=\"embed_waiting\"} %d\n"
        "nanorag_queue_depth{queue=\"generate_running\"} %d\n"
        "nanorag_queue_depth{queue=\"generate_waiting\"} %d\n"
        "nanorag_queue_depth{queue=\"http_active\"} %d\n"
        "# HELP nanorag_index_vectors Vectors in the in-memory index.\n"
        "# TYPE nanorag_index_vectors gauge\nnanorag_index_vectors %lld\n"
        "# HELP nanorag_vector_searches_total Vector searches, by the device that ran them.\n"
        "# TYPE nanorag_vector_searches_total counter\n"
        "nanorag_vector_searches_total{device=\"cpu\"} %llu\n"
        "nanorag_vector_searches_total{device=\"cuda\"} %llu\n"
        "# HELP nanorag_memory_bytes Memory held, by component.\n"
        "# TYPE nanorag_memory_bytes gauge\n"
        "nanorag_memory_bytes{component=\"embedder_weights\"} %zu\n"
        "nanorag_memory_bytes{component=\"embedder_workspace\"} %zu\n"
        "nanorag_memory_bytes{component=\"index\"} %zu\n"
        "nanorag_memory_bytes{component=\"index_gpu\"} %zu\n"
        "nanorag_memory_bytes{component=\"llm_kv_cache\"} %zu\n"
        "nanorag_memory_bytes{component=\"all_nr_alloc\"} %zu\n",
        (unsigned long long)bs.texts, (unsigned long long)bs.passes,
        (unsigned long long)bs.requests, bs.busy_s, (unsigned long long)gen_tok, gen_s,
        (unsigned long long)prompt_tok, prompt_s, bs.waiting, busy, waiting,
        nr_http_active(r->http), (long long)ri.vectors, (unsigned long long)ri.cpu_searches,
        (unsigned long long)ri.gpu_searches, s->einfo.weight_bytes, s->einfo.workspace_bytes,
        ri.cpu_bytes, ri.gpu_bytes, kv, nr_mem_held());
    if (t.err) {
        nr_free(t.p);
        return nr_http_error(r, 500, "cannot build the metrics text");
    }
    return nr_http_reply_buf(r, 200, "text/plain; version=0.0.4", t.p, t.len);
}
