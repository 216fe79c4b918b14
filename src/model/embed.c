/*
 * embed.c — texts in, vectors out: tokenization, batching by token budget,
 * and the model forward (nr_bert) on the CPU worker pool.
 *
 * A request of n texts is tokenized text by text straight into the batch's
 * id buffer; when the next text might not fit the budget (max_seq tokens of
 * room left), the batch so far is encoded and its vectors written out. So a
 * request of any size runs in fixed memory: the id buffer, the lengths and
 * the model workspace, all sized at open.
 */
#include "nr_embed.h"

#include "nr_bert.h"
#include "nr_err.h"
#include "nr_kern.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_wordpiece.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct nr_embedder {
    struct nr_bert *model;
    struct nr_pool *pool;
    pthread_mutex_t mu;   /* one embed call at a time */
    int max_batch_tokens; /* ids capacity */
    int max_seq;
    int dim;
    int precision;      /* enum nr_precision */
    int32_t *ids;       /* [max_batch_tokens] */
    int *lens;          /* [max_batch_tokens] one per sequence */
    char model_id[160]; /* "<model name>:<dim>" */
};

void nr_embed_opts_default(struct nr_embed_opts *o)
{
    o->threads = 0;
    o->max_batch_tokens = 8192;
    o->max_seq = 0;
    o->precision = NR_PREC_FP32;
}

int nr_embedder_open(const char *model_path, const struct nr_embed_opts *opts,
                     struct nr_embedder **out)
{
    struct nr_embed_opts def;
    struct nr_embedder *e;
    int rc, budget;

    *out = NULL;
    if (!opts) {
        nr_embed_opts_default(&def);
        opts = &def;
    }
    if (opts->precision != NR_PREC_FP32 && opts->precision != NR_PREC_INT8)
        return nr_err_set(NR_EINVAL, "unknown embedder precision %d", opts->precision);
    budget = opts->max_batch_tokens > 0 ? opts->max_batch_tokens : 8192;
    e = nr_calloc(1, sizeof *e);
    if (!e)
        return nr_err_set(NR_ENOMEM, "out of memory opening embedder");
    pthread_mutex_init(&e->mu, NULL);
    e->precision = opts->precision;
    if ((rc = nr_bert_open(model_path, budget < 512 ? 512 : budget, opts->max_seq,
                           opts->precision == NR_PREC_INT8, &e->model)))
        goto fail;
    e->max_seq = nr_bert_config(e->model)->max_seq;
    e->dim = nr_bert_config(e->model)->hidden;
    snprintf(e->model_id, sizeof e->model_id, "%s:%d", nr_bert_config(e->model)->name, e->dim);
    e->max_batch_tokens = nr_bert_max_batch_tokens(e->model);
    if (e->max_batch_tokens < e->max_seq) {
        rc = nr_err_set(NR_EINVAL, "max_batch_tokens %d is below the model's %d-token cap",
                        e->max_batch_tokens, e->max_seq);
        goto fail;
    }
    e->pool = nr_pool_new(opts->threads);
    e->ids = nr_malloc((size_t)e->max_batch_tokens * sizeof *e->ids);
    e->lens = nr_malloc((size_t)e->max_batch_tokens * sizeof *e->lens);
    if (!e->pool || !e->ids || !e->lens) {
        rc = nr_err_set(NR_ENOMEM, "out of memory opening embedder");
        goto fail;
    }
    *out = e;
    return NR_OK;
fail:
    nr_embedder_close(e);
    return rc;
}

void nr_embedder_close(struct nr_embedder *e)
{
    if (!e)
        return;
    nr_bert_close(e->model);
    nr_pool_free(e->pool);
    nr_free(e->ids);
    nr_free(e->lens);
    pthread_mutex_destroy(&e->mu);
    nr_free(e);
}

int nr_embedder_dim(const struct nr_embedder *e)
{
    return e->dim;
}

void nr_embedder_info(const struct nr_embedder *e, struct nr_embedder_info *info)
{
    const struct nr_bert_config *c = nr_bert_config(e->model);
    memset(info, 0, sizeof *info);
    info->model = c->name;
    info->source = c->source;
    info->device = "cpu";
    info->precision = e->precision == NR_PREC_INT8 ? "int8" : "fp32";
    info->stored = c->dtype;
    info->kernel = nr_bert_linear_kernel(e->model);
    info->dim = e->dim;
    info->max_seq = e->max_seq;
    info->threads = nr_pool_threads(e->pool);
    info->normalize = c->normalize;
    info->weight_bytes = nr_bert_weight_bytes(e->model);
    info->workspace_bytes = nr_bert_workspace_bytes(e->model) +
                            (size_t)e->max_batch_tokens * (sizeof *e->ids + sizeof *e->lens);
}

int nr_embedder_embed(struct nr_embedder *e, const char *const *texts, const size_t *lens, int n,
                      float *out)
{
    const struct nr_wordpiece *tok = nr_bert_tokenizer(e->model);
    int rc = NR_OK, T = 0, nseq = 0, first = 0;

    if (n < 0)
        return nr_err_set(NR_EINVAL, "negative text count");
    for (int i = 0; i < n; i++)
        if (!texts[i])
            return nr_err_set(NR_EINVAL, "text %d is NULL", i);
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < n; i++) {
        int got;
        size_t len = lens ? lens[i] : strlen(texts[i]);
        if (T + e->max_seq > e->max_batch_tokens) {
            rc = nr_bert_forward(e->model, e->pool, e->ids, e->lens, nseq,
                                 out + (size_t)first * e->dim);
            if (rc)
                goto done;
            first = i;
            T = nseq = 0;
        }
        rc =
            nr_wordpiece_encode(tok, texts[i], len, e->ids + T, NULL, NULL, e->max_seq, &got, NULL);
        if (rc)
            goto done;
        e->lens[nseq++] = got;
        T += got;
    }
    if (nseq > 0)
        rc =
            nr_bert_forward(e->model, e->pool, e->ids, e->lens, nseq, out + (size_t)first * e->dim);
done:
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int nr_embedder_count_tokens(const struct nr_embedder *e, const char *text, size_t len)
{
    int32_t ids[2];
    int got = 0, total = 0;
    if (nr_wordpiece_encode(nr_bert_tokenizer(e->model), text, len, ids, NULL, NULL, 2, &got,
                            &total))
        return -1;
    return total;
}

const struct nr_wordpiece *nr_embedder_tokenizer(const struct nr_embedder *e)
{
    return nr_bert_tokenizer(e->model);
}

const char *nr_embedder_model_id(const struct nr_embedder *e)
{
    return e->model_id;
}
