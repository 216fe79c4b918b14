/*
 * nr_batch: embed coalescing. Concurrent embed requests (HTTP handlers on
 * their connection threads) are merged into one nr_embedder_embed call, so
 * N clients cost about one forward pass of their texts together instead of
 * N passes, each with its own thread-pool start-up and short-matrix
 * inefficiency.
 *
 * One worker thread takes every waiting request, up to a token budget
 * (estimated from bytes: the real count would cost a second tokenization),
 * embeds them in one call and wakes their callers. Nothing waits for more
 * requests to arrive: while one pass runs the next batch accumulates, so a
 * lone request pays no delay and a crowd forms batches by itself.
 *
 * Threads: nr_batch_embed may be called from any number of threads.
 * Ownership: callers own texts and out; the batcher borrows the embedder.
 */
#ifndef NR_BATCH_H
#define NR_BATCH_H

#include <stddef.h>
#include <stdint.h>

struct nr_batch;
struct nr_embedder;

struct nr_batch_stats {
    uint64_t texts;    /* texts embedded */
    uint64_t requests; /* nr_batch_embed calls served */
    uint64_t passes;   /* nr_embedder_embed calls made */
    uint64_t tokens;   /* estimated tokens embedded */
    double busy_s;     /* seconds spent in nr_embedder_embed */
    int waiting;       /* requests queued now */
};

/* max_tokens: budget of one pass (<= 0: 8192). */
int nr_batch_new(struct nr_embedder *e, int max_tokens, struct nr_batch **out);
/* Stops the worker; no nr_batch_embed may be running. NULL is fine. */
void nr_batch_free(struct nr_batch *b);

/* Embed texts[0..n) into out[n][dim], like nr_embedder_embed. On error the
 * message is the embedder's (copied to this thread). */
int nr_batch_embed(struct nr_batch *b, const char *const *texts, const size_t *lens, int n,
                   float *out);

void nr_batch_get_stats(struct nr_batch *b, struct nr_batch_stats *st);

#endif
