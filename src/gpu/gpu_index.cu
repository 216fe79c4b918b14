/*
 * gpu_index.cu — exact vector search on the GPU (see nr_gpu_index.h).
 *
 * Layout on the device: rows [capacity][dim] fp32, chunk ids [capacity]
 * int64 (for the tie order), collection ids [capacity] int32 (the one filter
 * the GPU applies), and, per batch of up to qcap queries, scores
 * [qcap][count] fp32 and results [qcap][k] (row, score). qcap is chosen so
 * the score buffer stays <= 256 MiB; larger batches go through in groups of
 * qcap. Adding past the capacity doubles it (new arrays, a device-to-device
 * copy, the old ones freed), so a growing store costs O(1) copies per row.
 *
 * Search: scores = Q·Rowsᵀ (one fp32 GEMM per group), then k_topk twice:
 * first up to MAX_PARTS blocks per query each choose the best k of a part of
 * the rows (so one query still spreads over the GPU), then one block per
 * query merges those lists. Within a block each of 256 threads keeps the
 * best k of its strided share, sorted, in local memory; then k rounds pick
 * the block's best head (score descending, chunk id ascending) and advance
 * that thread's list. Rows of another collection and scores below the
 * minimum are skipped in pass 1, so the k are the best k that pass. Host-side:
 * chunk and doc ids per row (for the hits and for removal by swap-with-last).
 */
#include "nr_gpu_index.h"

#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

extern "C" {
#include "nr_err.h"
#include "nr_gpu_blas.h"
#include "nr_index.h"
#include "nr_mem.h"
}

#define TOPK_THREADS 256
#define SCORE_BYTES  ((size_t)256 << 20) /* cap on the score buffer */
#define MAX_QCAP     256
#define MAX_PARTS    64   /* blocks per query in the first top-k pass */
#define PART_ROWS    4096 /* fewest rows per part */
#define GX_MAX_ROWS  ((int64_t)1 << 28)

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            rc = nr_err_set(NR_EIO, "cuda: %s: %s (%s:%d)", #call, cudaGetErrorString(e_),         \
                            __FILE__, __LINE__);                                                   \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

struct nr_gpu_index {
    int dim, device, qcap;
    int max_batch; /* queries per GEMM asked at creation (qcap <= it) */
    int64_t cap, count;
    float *rows;       /* device [cap][dim] */
    long long *cids;   /* device [cap] chunk ids */
    int *colls;        /* device [cap] collection ids */
    float *scores;     /* device [qcap][cap] */
    float *queries;    /* device [qcap][dim] */
    int *res_row;      /* device [qcap][NR_GPU_INDEX_MAX_K] */
    float *res_score;  /* device [qcap][NR_GPU_INDEX_MAX_K] */
    int *cand_row;     /* device [qcap][MAX_PARTS][NR_GPU_INDEX_MAX_K]: pass 1 results */
    float *cand_score; /* device, same shape */
    int64_t *h_cid;    /* host [cap] */
    int64_t *h_did;    /* host [cap] */
    int *h_row;        /* host [qcap][K] staging */
    float *h_score;    /* host [qcap][K] staging */
    size_t dev_bytes;
    struct nr_gpu_blas *blas;
    void *ws; /* cuBLASLt workspace (device) */
};

#define BLAS_WS ((size_t)4 << 20)

/* a ranks before b: higher score, then lower chunk id */
__device__ static bool before(float sa, long long ca, float sb, long long cb)
{
    return sa > sb || (sa == sb && ca < cb);
}

/*
 * Top k of n candidates per query, block (q, p) taking part p of gridDim.y:
 * candidate i has score sc[q*sc_stride + i] and row rin[q*rin_stride + i]
 * (rin NULL: row i; row < 0: padding, skipped). Each thread keeps its
 * strided share's best k sorted in local memory; then k rounds move the
 * block's best head (score descending, chunk id ascending) to the output
 * (q*gridDim.y + p)*ostride, padded with row -1 when fewer than k exist.
 * Rows failing the filter (collection want_coll unless < 0, score >=
 * min_score) are skipped. Pass 1 runs over the scores in parts; pass 2
 * merges the parts' lists.
 */
__global__ static void k_topk(const float *__restrict__ sc, int64_t sc_stride,
                              const int *__restrict__ rin, int64_t rin_stride, int64_t n,
                              const long long *__restrict__ cids, const int *__restrict__ colls,
                              int want_coll, float min_score, int k, int *orow, float *osc,
                              int ostride)
{
    float ls[NR_GPU_INDEX_MAX_K];
    int lr[NR_GPU_INDEX_MAX_K];
    int nl = 0, head = 0, q = blockIdx.x, p = blockIdx.y;
    int64_t part = (n + gridDim.y - 1) / gridDim.y, lo = (int64_t)p * part,
            hi = lo + part < n ? lo + part : n;
    size_t o = ((size_t)q * gridDim.y + p) * ostride;
    __shared__ float ws[TOPK_THREADS / 32];
    __shared__ long long wc[TOPK_THREADS / 32];
    __shared__ int wt[TOPK_THREADS / 32];
    __shared__ int winner;

    sc += q * sc_stride;
    if (rin)
        rin += q * rin_stride;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        float v = sc[i];
        int r = rin ? rin[i] : (int)i, at;
        if (r < 0 || !(v >= min_score) || (want_coll >= 0 && colls[r] != want_coll) ||
            (nl == k && !before(v, cids[r], ls[k - 1], cids[lr[k - 1]])))
            continue;
        at = nl < k ? nl++ : k - 1; /* insertion: shift the worse ones down */
        while (at > 0 && before(v, cids[r], ls[at - 1], cids[lr[at - 1]])) {
            ls[at] = ls[at - 1];
            lr[at] = lr[at - 1];
            at--;
        }
        ls[at] = v;
        lr[at] = r;
    }
    for (int out = 0; out < k; out++) {
        float bs = head < nl ? ls[head] : -INFINITY;
        long long bc = head < nl ? cids[lr[head]] : LLONG_MAX;
        int bt = head < nl ? (int)threadIdx.x : -1;
        for (int off = 16; off > 0; off >>= 1) {
            float os = __shfl_xor_sync(0xffffffffu, bs, off);
            long long oc = __shfl_xor_sync(0xffffffffu, bc, off);
            int ot = __shfl_xor_sync(0xffffffffu, bt, off);
            if (ot >= 0 && (bt < 0 || before(os, oc, bs, bc))) {
                bs = os;
                bc = oc;
                bt = ot;
            }
        }
        if ((threadIdx.x & 31) == 0) {
            ws[threadIdx.x >> 5] = bs;
            wc[threadIdx.x >> 5] = bc;
            wt[threadIdx.x >> 5] = bt;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int w = -1;
            for (int i = 0; i < (int)(blockDim.x >> 5); i++)
                if (wt[i] >= 0 && (w < 0 || before(ws[i], wc[i], ws[w], wc[w])))
                    w = i;
            winner = w < 0 ? -1 : wt[w];
            osc[o + out] = w < 0 ? -INFINITY : ws[w];
            if (w < 0)
                orow[o + out] = -1;
        }
        __syncthreads();
        if ((int)threadIdx.x == winner) {
            orow[o + out] = lr[head];
            head++;
        }
        __syncthreads();
    }
}

/* Queries per GEMM for `cap` rows: at most max_batch, and the score buffer
 * [qcap][cap] stays <= SCORE_BYTES. */
static int qcap_for(int64_t cap, int max_batch)
{
    size_t q = SCORE_BYTES / ((size_t)cap * 4);
    return q > (size_t)max_batch ? max_batch : q < 1 ? 1 : (int)q;
}

extern "C" int nr_gpu_index_new(int dim, int64_t capacity, int max_batch, int device,
                                struct nr_gpu_index **out)
{
    struct nr_gpu_index *gx;
    int rc = NR_OK, n = 0;
    size_t b_rows, b_scores;
    *out = NULL;
    if (dim < 1 || dim > 8192 || capacity < 1 || capacity > GX_MAX_ROWS || max_batch < 0 ||
        max_batch > MAX_QCAP)
        return nr_err_set(NR_EINVAL, "gpu index: dim %d / capacity %lld / batch %d out of range",
                          dim, (long long)capacity, max_batch);
    if (cudaGetDeviceCount(&n) != cudaSuccess || device < 0 || device >= n) {
        cudaGetLastError();
        return nr_err_set(NR_EUNSUPPORTED, "gpu index: no CUDA device %d", device);
    }
    gx = (struct nr_gpu_index *)nr_calloc(1, sizeof *gx);
    if (!gx)
        return nr_err_set(NR_ENOMEM, "out of memory for the GPU index");
    gx->dim = dim;
    gx->device = device;
    gx->cap = capacity;
    gx->max_batch = max_batch ? max_batch : MAX_QCAP;
    gx->qcap = qcap_for(capacity, gx->max_batch);
    CK(cudaSetDevice(device));
    if ((rc = nr_gpu_blas_open(BLAS_WS, &gx->blas)))
        goto fail;
    b_rows = (size_t)capacity * dim * 4;
    b_scores = (size_t)gx->qcap * capacity * 4;
    CK(cudaMalloc((void **)&gx->rows, b_rows));
    CK(cudaMalloc((void **)&gx->cids, (size_t)capacity * 8));
    CK(cudaMalloc((void **)&gx->colls, (size_t)capacity * 4));
    CK(cudaMalloc((void **)&gx->scores, b_scores));
    CK(cudaMalloc((void **)&gx->queries, (size_t)gx->qcap * dim * 4));
    CK(cudaMalloc((void **)&gx->res_row, (size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 4));
    CK(cudaMalloc((void **)&gx->res_score, (size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 4));
    CK(cudaMalloc(&gx->ws, BLAS_WS));
    CK(cudaMalloc((void **)&gx->cand_row, (size_t)gx->qcap * MAX_PARTS * NR_GPU_INDEX_MAX_K * 4));
    CK(cudaMalloc((void **)&gx->cand_score, (size_t)gx->qcap * MAX_PARTS * NR_GPU_INDEX_MAX_K * 4));
    gx->dev_bytes = b_rows + (size_t)capacity * 12 + b_scores + (size_t)gx->qcap * dim * 4 +
                    (size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 8 + BLAS_WS +
                    (size_t)gx->qcap * MAX_PARTS * NR_GPU_INDEX_MAX_K * 8;
    gx->h_cid = (int64_t *)nr_malloc((size_t)capacity * 8);
    gx->h_did = (int64_t *)nr_malloc((size_t)capacity * 8);
    gx->h_row = (int *)nr_malloc((size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 4);
    gx->h_score = (float *)nr_malloc((size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 4);
    if (!gx->h_cid || !gx->h_did || !gx->h_row || !gx->h_score) {
        rc = nr_err_set(NR_ENOMEM, "out of memory for the GPU index");
        goto fail;
    }
    *out = gx;
    return NR_OK;
fail:
    nr_gpu_index_free(gx);
    return rc;
}

extern "C" void nr_gpu_index_free(struct nr_gpu_index *gx)
{
    if (!gx)
        return;
    cudaFree(gx->rows);
    cudaFree(gx->cids);
    cudaFree(gx->colls);
    cudaFree(gx->scores);
    cudaFree(gx->queries);
    cudaFree(gx->res_row);
    cudaFree(gx->res_score);
    cudaFree(gx->ws);
    cudaFree(gx->cand_row);
    cudaFree(gx->cand_score);
    cudaGetLastError();
    nr_gpu_blas_close(gx->blas);
    nr_free(gx->h_cid);
    nr_free(gx->h_did);
    nr_free(gx->h_row);
    nr_free(gx->h_score);
    nr_free(gx);
}

/*
 * Room for `need` rows: the capacity doubles (at least to need, at most
 * GX_MAX_ROWS). The rows, ids and collections move to new device arrays;
 * the score buffer is re-sized for the new qcap (never more queries than
 * before, so the query and result buffers still fit). On failure nothing
 * changed.
 */
static int grow(struct nr_gpu_index *gx, int64_t need)
{
    int64_t cap = gx->cap * 2 > need ? gx->cap * 2 : need;
    float *rows = NULL, *scores = NULL;
    long long *cids = NULL;
    int *colls = NULL, qcap, rc = NR_OK;
    int64_t *hc = NULL, *hd = NULL;

    if (need > GX_MAX_ROWS)
        return nr_err_set(NR_ELIMIT, "gpu index: more than %lld rows", (long long)GX_MAX_ROWS);
    if (cap > GX_MAX_ROWS)
        cap = GX_MAX_ROWS;
    qcap = qcap_for(cap, gx->max_batch);
    CK(cudaSetDevice(gx->device));
    if (cudaMalloc((void **)&rows, (size_t)cap * gx->dim * 4) != cudaSuccess ||
        cudaMalloc((void **)&cids, (size_t)cap * 8) != cudaSuccess ||
        cudaMalloc((void **)&colls, (size_t)cap * 4) != cudaSuccess ||
        cudaMalloc((void **)&scores, (size_t)qcap * cap * 4) != cudaSuccess) {
        cudaGetLastError();
        rc = nr_err_set(NR_ENOMEM, "gpu index: no device memory for %lld rows", (long long)cap);
        goto fail;
    }
    hc = (int64_t *)nr_malloc((size_t)cap * 8);
    hd = (int64_t *)nr_malloc((size_t)cap * 8);
    if (!hc || !hd) {
        rc = nr_err_set(NR_ENOMEM, "out of memory growing the GPU index");
        goto fail;
    }
    CK(cudaMemcpy(rows, gx->rows, (size_t)gx->count * gx->dim * 4, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy(cids, gx->cids, (size_t)gx->count * 8, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy(colls, gx->colls, (size_t)gx->count * 4, cudaMemcpyDeviceToDevice));
    memcpy(hc, gx->h_cid, (size_t)gx->count * 8);
    memcpy(hd, gx->h_did, (size_t)gx->count * 8);
    cudaFree(gx->rows);
    cudaFree(gx->cids);
    cudaFree(gx->colls);
    cudaFree(gx->scores);
    nr_free(gx->h_cid);
    nr_free(gx->h_did);
    gx->dev_bytes += (size_t)(cap - gx->cap) * ((size_t)gx->dim * 4 + 12) + (size_t)qcap * cap * 4 -
                     (size_t)gx->qcap * gx->cap * 4;
    gx->rows = rows;
    gx->cids = cids;
    gx->colls = colls;
    gx->scores = scores;
    gx->h_cid = hc;
    gx->h_did = hd;
    gx->cap = cap;
    gx->qcap = qcap;
    return NR_OK;
fail:
    cudaFree(rows);
    cudaFree(cids);
    cudaFree(colls);
    cudaFree(scores);
    nr_free(hc);
    nr_free(hd);
    return rc;
}

extern "C" int nr_gpu_index_add(struct nr_gpu_index *gx, const int64_t *chunk_ids,
                                const int64_t *doc_ids, const int32_t *coll_ids, const float *v,
                                int n)
{
    int rc = NR_OK;
    if (n < 0 || (n > 0 && (!chunk_ids || !doc_ids || !v)))
        return nr_err_set(NR_EINVAL, "gpu index: bad add arguments");
    for (size_t i = 0; i < (size_t)n * gx->dim; i++)
        if (!isfinite(v[i]))
            return nr_err_set(NR_EINVAL, "gpu index: vector %zu is not finite", i / gx->dim);
    for (int i = 0; coll_ids && i < n; i++)
        if (coll_ids[i] < 0)
            return nr_err_set(NR_EINVAL, "gpu index: collection id %d is negative",
                              (int)coll_ids[i]);
    if (n == 0)
        return NR_OK;
    if (n > gx->cap - gx->count && (rc = grow(gx, gx->count + n)))
        return rc;
    CK(cudaSetDevice(gx->device));
    CK(cudaMemcpy(gx->rows + (size_t)gx->count * gx->dim, v, (size_t)n * gx->dim * 4,
                  cudaMemcpyHostToDevice));
    CK(cudaMemcpy(gx->cids + gx->count, chunk_ids, (size_t)n * 8, cudaMemcpyHostToDevice));
    if (coll_ids)
        CK(cudaMemcpy(gx->colls + gx->count, coll_ids, (size_t)n * 4, cudaMemcpyHostToDevice));
    else
        CK(cudaMemset(gx->colls + gx->count, 0, (size_t)n * 4));
    memcpy(gx->h_cid + gx->count, chunk_ids, (size_t)n * 8);
    memcpy(gx->h_did + gx->count, doc_ids, (size_t)n * 8);
    gx->count += n;
fail:
    return rc;
}

/* Row r takes the last row's place (rows, ids, collection). */
static int remove_row(struct nr_gpu_index *gx, int64_t r)
{
    int rc = NR_OK;
    int64_t last = gx->count - 1;
    if (r != last) {
        CK(cudaSetDevice(gx->device));
        CK(cudaMemcpy(gx->rows + (size_t)r * gx->dim, gx->rows + (size_t)last * gx->dim,
                      (size_t)gx->dim * 4, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(gx->cids + r, gx->cids + last, 8, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(gx->colls + r, gx->colls + last, 4, cudaMemcpyDeviceToDevice));
        gx->h_cid[r] = gx->h_cid[last];
        gx->h_did[r] = gx->h_did[last];
    }
    gx->count--;
fail:
    return rc;
}

extern "C" int nr_gpu_index_remove_chunk(struct nr_gpu_index *gx, int64_t chunk_id)
{
    for (int64_t r = 0; r < gx->count; r++)
        if (gx->h_cid[r] == chunk_id) {
            int rc = remove_row(gx, r);
            return rc ? rc : 1;
        }
    return 0;
}

extern "C" int nr_gpu_index_remove_doc(struct nr_gpu_index *gx, int64_t doc_id)
{
    int n = 0;
    for (int64_t r = 0; r < gx->count;) {
        int rc;
        if (gx->h_did[r] != doc_id) {
            r++;
            continue;
        }
        if ((rc = remove_row(gx, r))) /* the last row is now at r: look at it again */
            return rc;
        n++;
    }
    return n;
}

extern "C" int64_t nr_gpu_index_count(const struct nr_gpu_index *gx)
{
    return gx->count;
}

extern "C" size_t nr_gpu_index_bytes(const struct nr_gpu_index *gx)
{
    return gx->dev_bytes;
}

extern "C" int nr_gpu_index_search(struct nr_gpu_index *gx, const float *q, int nq, int k,
                                   const struct nr_index_filter *f, struct nr_index_hit *hits,
                                   int *n_hits)
{
    struct nr_gpu_gemm plan;
    int rc = NR_OK, have_plan = 0, nplan = 0, want = f ? f->collection_id : -1;
    float min_score = f ? f->min_score : -INFINITY;
    int64_t cnt = gx->count;
    memset(&plan, 0, sizeof plan);
    if (k < 1 || k > NR_GPU_INDEX_MAX_K || nq < 0)
        return nr_err_set(NR_EINVAL, "gpu index: k %d outside 1..%d", k, NR_GPU_INDEX_MAX_K);
    if (f && (f->doc_ids || f->n_doc_ids))
        return nr_err_set(NR_EUNSUPPORTED, "gpu index: no document filter (the CPU index has it)");
    if (isnan(min_score))
        return nr_err_set(NR_EINVAL, "gpu index: the minimum score is NaN");
    if (want < -1) /* as nr_index: -1 is any collection, other negatives are errors */
        return nr_err_set(NR_EINVAL, "gpu index: collection filter %d", want);
    for (size_t i = 0; i < (size_t)nq * gx->dim; i++)
        if (!isfinite(q[i]))
            return nr_err_set(NR_EINVAL, "gpu index: query %zu is not finite", i / gx->dim);
    if (cnt == 0 || nq == 0) {
        for (int i = 0; i < nq; i++)
            n_hits[i] = 0;
        return NR_OK;
    }
    if (cnt > 0x7fffffff)
        return nr_err_set(NR_ELIMIT, "gpu index: more rows than one GEMM takes");
    CK(cudaSetDevice(gx->device));
    for (int q0 = 0; q0 < nq; q0 += gx->qcap) {
        int m = nq - q0 < gx->qcap ? nq - q0 : gx->qcap, kk = (int)(k < cnt ? k : cnt);
        if (!have_plan || m != nplan) {
            if (have_plan)
                nr_gpu_gemm_free(gx->blas, &plan);
            have_plan = 0;
            if ((rc = nr_gpu_gemm_plan_f32(gx->blas, m, (int)cnt, gx->dim, gx->dim, (int)cnt,
                                           &plan)))
                goto fail;
            have_plan = 1;
            nplan = m;
        }
        CK(cudaMemcpy(gx->queries, q + (size_t)q0 * gx->dim, (size_t)m * gx->dim * 4,
                      cudaMemcpyHostToDevice));
        if ((rc = nr_gpu_gemm_run(gx->blas, &plan, gx->queries, gx->rows, NULL, NULL, gx->scores,
                                  gx->ws, NULL)))
            goto fail;
        {
            /* pass 1: each query's rows in parts of >= PART_ROWS, one block
             * each; pass 2: one block per query merges the parts' lists */
            int parts = (int)((cnt + PART_ROWS - 1) / PART_ROWS);
            if (parts > MAX_PARTS)
                parts = MAX_PARTS;
            k_topk<<<dim3(m, parts), TOPK_THREADS>>>(gx->scores, cnt, NULL, 0, cnt, gx->cids,
                                                     gx->colls, want, min_score, kk, gx->cand_row,
                                                     gx->cand_score, kk);
            CK(cudaGetLastError());
            k_topk<<<dim3(m, 1), TOPK_THREADS>>>(gx->cand_score, (int64_t)parts * kk, gx->cand_row,
                                                 (int64_t)parts * kk, (int64_t)parts * kk, gx->cids,
                                                 gx->colls, want, min_score, kk, gx->res_row,
                                                 gx->res_score, NR_GPU_INDEX_MAX_K);
            CK(cudaGetLastError());
        }
        CK(cudaMemcpy(gx->h_row, gx->res_row, (size_t)m * NR_GPU_INDEX_MAX_K * 4,
                      cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(gx->h_score, gx->res_score, (size_t)m * NR_GPU_INDEX_MAX_K * 4,
                      cudaMemcpyDeviceToHost));
        for (int i = 0; i < m; i++) {
            struct nr_index_hit *h = hits + (size_t)(q0 + i) * k;
            int j = 0;
            for (; j < kk; j++) {
                int r = gx->h_row[i * NR_GPU_INDEX_MAX_K + j];
                if (r < 0) /* fewer than kk rows passed the filter */
                    break;
                h[j].chunk_id = gx->h_cid[r];
                h[j].doc_id = gx->h_did[r];
                h[j].score = gx->h_score[i * NR_GPU_INDEX_MAX_K + j];
            }
            n_hits[q0 + i] = j;
        }
    }
fail:
    if (have_plan)
        nr_gpu_gemm_free(gx->blas, &plan);
    return rc;
}
