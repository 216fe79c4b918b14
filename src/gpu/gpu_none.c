/* The GPU interface when the binary is built without CUDA. */
#ifndef NR_HAVE_CUDA
#include "nr_gpu.h"
#include "nr_gpu_bert.h"
#include "nr_gpu_index.h"

#include "nr_err.h"

int nr_gpu_built(void)
{
    return 0;
}

int nr_gpu_count(const char **why)
{
    if (why)
        *why = "built without CUDA";
    return 0;
}

int nr_gpu_query(int index, struct nr_gpu_device *d)
{
    (void)index;
    (void)d;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

void nr_gpu_versions(int *driver, int *runtime, int *cublas)
{
    *driver = *runtime = *cublas = 0;
}

/* The GPU encoder: never opens, so nothing else is ever called. */
int nr_gpu_bert_open(struct nr_bert *meta, int device, int max_batch_tokens,
                     struct nr_gpu_bert **out)
{
    (void)meta;
    (void)device;
    (void)max_batch_tokens;
    *out = NULL;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

void nr_gpu_bert_close(struct nr_gpu_bert *g)
{
    (void)g;
}

void nr_gpu_bert_info(const struct nr_gpu_bert *g, struct nr_gpu_bert_info *info)
{
    (void)g;
    (void)info;
}

int nr_gpu_bert_submit(struct nr_gpu_bert *g, const int32_t *ids, const int *lens, int n_seq)
{
    (void)g;
    (void)ids;
    (void)lens;
    (void)n_seq;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

int nr_gpu_bert_wait(struct nr_gpu_bert *g, float *out)
{
    (void)g;
    (void)out;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

void nr_gpu_bert_cancel(struct nr_gpu_bert *g)
{
    (void)g;
}

void nr_gpu_bert_set_graphs(struct nr_gpu_bert *g, int on)
{
    (void)g;
    (void)on;
}

int nr_gpu_bert_set_attention(struct nr_gpu_bert *g, int tensor_cores)
{
    (void)g;
    (void)tensor_cores;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

int nr_gpu_bert_set_reference_gemm(struct nr_gpu_bert *g, int on)
{
    (void)g;
    (void)on;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}
/* The GPU vector index: never created. */
int nr_gpu_index_new(int dim, int64_t capacity, int max_batch, int device,
                     struct nr_gpu_index **out)
{
    (void)dim;
    (void)capacity;
    (void)max_batch;
    (void)device;
    *out = NULL;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

void nr_gpu_index_free(struct nr_gpu_index *gx)
{
    (void)gx;
}

int nr_gpu_index_add(struct nr_gpu_index *gx, const int64_t *chunk_ids, const int64_t *doc_ids,
                     const int32_t *coll_ids, const float *v, int n)
{
    (void)gx;
    (void)chunk_ids;
    (void)doc_ids;
    (void)coll_ids;
    (void)v;
    (void)n;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

int nr_gpu_index_remove_chunk(struct nr_gpu_index *gx, int64_t chunk_id)
{
    (void)gx;
    (void)chunk_id;
    return 0;
}

int nr_gpu_index_remove_doc(struct nr_gpu_index *gx, int64_t doc_id)
{
    (void)gx;
    (void)doc_id;
    return 0;
}

int64_t nr_gpu_index_count(const struct nr_gpu_index *gx)
{
    (void)gx;
    return 0;
}

size_t nr_gpu_index_bytes(const struct nr_gpu_index *gx)
{
    (void)gx;
    return 0;
}

int nr_gpu_index_search(struct nr_gpu_index *gx, const float *q, int nq, int k,
                        const struct nr_index_filter *f, struct nr_index_hit *hits, int *n_hits)
{
    (void)gx;
    (void)q;
    (void)nq;
    (void)k;
    (void)f;
    (void)hits;
    (void)n_hits;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}
#else
typedef int nr_gpu_none_unused; /* ISO C forbids an empty translation unit */
#endif
