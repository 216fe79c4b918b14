/*
 * embed.c — texts in, vectors out: tokenization, batching by token budget,
 * and the model forward (nr_bert) on the CPU worker pool.
 *
 * A request of n texts is tokenized text by text straight into the batch's
 * id buffer; when the next text might not fit the budget (max_seq tokens of
 * room left), the batch so far is encoded and its vectors written out. So a
 * request of any size runs in fixed memory: the id buffer, the lengths and
 * the model workspace, all sized at open.
 *
 * Device. opts.device (or NANORAG_DEVICE) picks "cpu", "cuda" or "auto" once,
 * at open. On the GPU (nr_gpu_bert) the model is opened without CPU weights
 * and each batch is submitted asynchronously: the next batch is tokenized
 * while the GPU encodes the previous one. Any GPU failure at open (none
 * built, no device, CUDA init, cuBLASLt missing, too little memory) falls
 * back to the CPU with one log line saying why.
 */
#include "nr_embed.h"

#include "nr_bert.h"
#include "nr_err.h"
#include "nr_gpu_bert.h"
#include "nr_kern.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_wordpiece.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nr_embedder {
    struct nr_bert *model;
    struct nr_pool *pool;
    int own_pool;         /* 1: pool is ours to free (not lent by opts.pool) */
    pthread_mutex_t mu;   /* one embed call at a time */
    int max_batch_tokens; /* ids capacity */
    int max_seq;
    int dim;
    int precision;           /* enum nr_precision */
    int32_t *ids;            /* [max_batch_tokens] */
    int *lens;               /* [max_batch_tokens] one per sequence */
    char model_id[160];      /* "<model name>:<dim>" */
    struct nr_gpu_bert *gpu; /* non-NULL: the model runs on the GPU (model has no CPU weights) */
    float *gpu_dst;          /* where the pending GPU batch's vectors go */
};

void nr_embed_opts_default(struct nr_embed_opts *o)
{
    memset(o, 0, sizeof *o); /* every field, present and future, starts at 0 / NULL */
    o->threads = 0;
    o->max_batch_tokens = 8192;
    o->max_seq = 0;
    o->precision = NR_PREC_FP32;
    o->device = NULL;
}

/* Try the GPU; on failure leave e->model/e->gpu NULL and log why. */
static void open_gpu(struct nr_embedder *e, const char *model_path,
                     const struct nr_embed_opts *opts, int budget, int asked)
{
    int rc, lvl = asked ? NR_LOG_WARN : NR_LOG_INFO;
    struct nr_gpu_bert_info gi;
    if ((rc = nr_bert_open_meta(model_path, opts->max_seq, &e->model)) == NR_OK &&
        (rc = nr_gpu_bert_open(e->model, 0, budget, &e->gpu)) == NR_OK) {
        nr_gpu_bert_info(e->gpu, &gi);
        nr_log_info("embedder: on %s (fp16), %zu MiB weights + %zu MiB workspace", gi.device,
                    gi.weight_bytes >> 20, gi.workspace_bytes >> 20);
        return;
    }
    /* Not being able to use the GPU is never fatal: say why and use the CPU. */
    nr_log(lvl, "embedder: device %s: %s; using the CPU", asked ? "cuda" : "auto", nr_err_msg());
    nr_bert_close(e->model);
    e->model = NULL;
}

int nr_embedder_open(const char *model_path, const struct nr_embed_opts *opts,
                     struct nr_embedder **out)
{
    struct nr_embed_opts def;
    struct nr_embedder *e;
    int rc, budget;
    const char *dev;

    *out = NULL;
    if (!opts) {
        nr_embed_opts_default(&def);
        opts = &def;
    }
    if (opts->precision != NR_PREC_FP32 && opts->precision != NR_PREC_INT8)
        return nr_err_set(NR_EINVAL, "unknown embedder precision %d", opts->precision);
    dev = opts->device ? opts->device : getenv("NANORAG_DEVICE");
    if (!dev || !*dev)
        dev = "cpu";
    if (strcmp(dev, "cpu") != 0 && strcmp(dev, "cuda") != 0 && strcmp(dev, "auto") != 0)
        return nr_err_set(NR_EINVAL, "unknown embedder device \"%.32s\" (cpu, cuda, auto)", dev);
    budget = opts->max_batch_tokens > 0 ? opts->max_batch_tokens : 8192;
    e = nr_calloc(1, sizeof *e);
    if (!e)
        return nr_err_set(NR_ENOMEM, "out of memory opening embedder");
    pthread_mutex_init(&e->mu, NULL);
    e->precision = opts->precision;
    if (strcmp(dev, "cpu") != 0)
        open_gpu(e, model_path, opts, budget < 512 ? 512 : budget, strcmp(dev, "cuda") == 0);
    if (!e->gpu && (rc = nr_bert_open(model_path, budget < 512 ? 512 : budget, opts->max_seq,
                                      opts->precision == NR_PREC_INT8, &e->model)))
        goto fail;
    e->max_seq = nr_bert_config(e->model)->max_seq;
    e->dim = nr_bert_config(e->model)->hidden;
    snprintf(e->model_id, sizeof e->model_id, "%s:%d", nr_bert_config(e->model)->name, e->dim);
    e->max_batch_tokens =
        e->gpu ? (budget < 512 ? 512 : budget) : nr_bert_max_batch_tokens(e->model);
    if (e->max_batch_tokens < e->max_seq) {
        rc = nr_err_set(NR_EINVAL, "max_batch_tokens %d is below the model's %d-token cap",
                        e->max_batch_tokens, e->max_seq);
        goto fail;
    }
    e->own_pool = !opts->pool;
    e->pool = opts->pool ? opts->pool : nr_pool_new(opts->threads);
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
    nr_gpu_bert_close(e->gpu);
    nr_bert_close(e->model);
    if (e->own_pool)
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
    info->device = e->gpu ? "cuda" : "cpu";
    info->precision = e->gpu ? "fp16" : e->precision == NR_PREC_INT8 ? "int8" : "fp32";
    info->stored = c->dtype;
    info->kernel = nr_bert_linear_kernel(e->model);
    info->dim = e->dim;
    info->max_seq = e->max_seq;
    info->threads = nr_pool_threads(e->pool);
    info->normalize = c->normalize;
    info->weight_bytes = nr_bert_weight_bytes(e->model);
    info->workspace_bytes = nr_bert_workspace_bytes(e->model) +
                            (size_t)e->max_batch_tokens * (sizeof *e->ids + sizeof *e->lens);
    if (e->gpu) {
        struct nr_gpu_bert_info gi;
        nr_gpu_bert_info(e->gpu, &gi);
        snprintf(info->gpu_name, sizeof info->gpu_name, "%s", gi.device);
        info->kernel = "cuda";
        info->weight_bytes = gi.weight_bytes;
        info->gpu_bytes = gi.weight_bytes + gi.workspace_bytes;
        info->workspace_bytes += gi.workspace_bytes + gi.pinned_bytes;
        info->tokens_per_s = gi.gpu_seconds > 0 ? gi.tokens / gi.gpu_seconds : 0.0;
    }
}

/* Encode the batch in e->ids/e->lens into dst: at once on the CPU; on the
 * GPU, first collect the previous batch, then submit this one. */
static int run_batch(struct nr_embedder *e, int nseq, float *dst)
{
    int rc;
    if (!e->gpu)
        return nr_bert_forward(e->model, e->pool, e->ids, e->lens, nseq, dst);
    if (e->gpu_dst) {
        float *prev = e->gpu_dst;
        e->gpu_dst = NULL;
        if ((rc = nr_gpu_bert_wait(e->gpu, prev)))
            return rc;
    }
    if ((rc = nr_gpu_bert_submit(e->gpu, e->ids, e->lens, nseq)))
        return rc;
    e->gpu_dst = dst;
    return NR_OK;
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
            rc = run_batch(e, nseq, out + (size_t)first * e->dim);
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
        rc = run_batch(e, nseq, out + (size_t)first * e->dim);
    if (rc == NR_OK && e->gpu_dst) {
        float *last = e->gpu_dst;
        e->gpu_dst = NULL;
        rc = nr_gpu_bert_wait(e->gpu, last);
    }
done:
    if (e->gpu_dst) { /* an error after a submit: drop the batch in flight */
        nr_gpu_bert_cancel(e->gpu);
        e->gpu_dst = NULL;
    }
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
