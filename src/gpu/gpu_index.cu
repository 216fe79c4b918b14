/*
 * gpu_index.cu — exact vector search on the GPU (see nr_gpu_index.h).
 *
 * Layout on the device: rows [capacity][dim] fp32, chunk ids [capacity]
 * int64 (for the tie order), and, per batch of up to qcap queries, scores
 * [qcap][count] fp32 and results [qcap][k] (row, score). qcap is chosen at
 * creation so the score buffer stays <= 256 MiB; larger batches go through
 * in groups of qcap.
 *
 * Search: scores = Q·Rowsᵀ (one fp32 GEMM per group), then k_topk: one block
 * per query; each of its 256 threads keeps the best k of its strided share
 * of the scores, sorted, in local memory; then k rounds pick the block's
 * best head (score descending, chunk id ascending) and advance that
 * thread's list. Host-side: chunk and doc ids per row (for the hits and for
 * removal by swap-with-last).
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
#define MAX_QCAP     1024

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
    int64_t cap, count;
    float *rows;      /* device [cap][dim] */
    long long *cids;  /* device [cap] chunk ids */
    float *scores;    /* device [qcap][cap] */
    float *queries;   /* device [qcap][dim] */
    int *res_row;     /* device [qcap][NR_GPU_INDEX_MAX_K] */
    float *res_score; /* device [qcap][NR_GPU_INDEX_MAX_K] */
    int64_t *h_cid;   /* host [cap] */
    int64_t *h_did;   /* host [cap] */
    int *h_row;       /* host [qcap][K] staging */
    float *h_score;   /* host [qcap][K] staging */
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

__global__ static void k_topk(const float *__restrict__ scores, int64_t count,
                              const long long *__restrict__ cids, int k, int *res_row,
                              float *res_score)
{
    float ls[NR_GPU_INDEX_MAX_K];
    int lr[NR_GPU_INDEX_MAX_K];
    int n = 0, head = 0, q = blockIdx.x;
    const float *s = scores + (size_t)q * count;
    __shared__ float ws[TOPK_THREADS / 32];
    __shared__ long long wc[TOPK_THREADS / 32];
    __shared__ int wt[TOPK_THREADS / 32];
    __shared__ int winner;

    for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
        float v = s[r];
        int p;
        if (n == k && !before(v, cids[r], ls[k - 1], cids[lr[k - 1]]))
            continue;
        p = n < k ? n++ : k - 1; /* insertion: shift the worse ones down */
        while (p > 0 && before(v, cids[r], ls[p - 1], cids[lr[p - 1]])) {
            ls[p] = ls[p - 1];
            lr[p] = lr[p - 1];
            p--;
        }
        ls[p] = v;
        lr[p] = (int)r;
    }
    for (int out = 0; out < k && out < count; out++) {
        float bs = head < n ? ls[head] : -INFINITY;
        long long bc = head < n ? cids[lr[head]] : LLONG_MAX;
        int bt = head < n ? (int)threadIdx.x : -1;
        for (int o = 16; o > 0; o >>= 1) {
            float os = __shfl_xor_sync(0xffffffffu, bs, o);
            long long oc = __shfl_xor_sync(0xffffffffu, bc, o);
            int ot = __shfl_xor_sync(0xffffffffu, bt, o);
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
            if (w >= 0) {
                res_score[q * NR_GPU_INDEX_MAX_K + out] = ws[w];
            }
        }
        __syncthreads();
        if ((int)threadIdx.x == winner) {
            res_row[q * NR_GPU_INDEX_MAX_K + out] = lr[head];
            head++;
        }
        __syncthreads();
    }
}

extern "C" int nr_gpu_index_new(int dim, int64_t capacity, int device, struct nr_gpu_index **out)
{
    struct nr_gpu_index *gx;
    int rc = NR_OK, n = 0;
    size_t b_rows, b_scores;
    *out = NULL;
    if (dim < 1 || dim > 8192 || capacity < 1 || capacity > ((int64_t)1 << 28))
        return nr_err_set(NR_EINVAL, "gpu index: dim %d / capacity %lld out of range", dim,
                          (long long)capacity);
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
    gx->qcap = (int)(SCORE_BYTES / ((size_t)capacity * 4));
    if (gx->qcap > MAX_QCAP)
        gx->qcap = MAX_QCAP;
    if (gx->qcap < 1)
        gx->qcap = 1;
    CK(cudaSetDevice(device));
    if ((rc = nr_gpu_blas_open(BLAS_WS, &gx->blas)))
        goto fail;
    b_rows = (size_t)capacity * dim * 4;
    b_scores = (size_t)gx->qcap * capacity * 4;
    CK(cudaMalloc((void **)&gx->rows, b_rows));
    CK(cudaMalloc((void **)&gx->cids, (size_t)capacity * 8));
    CK(cudaMalloc((void **)&gx->scores, b_scores));
    CK(cudaMalloc((void **)&gx->queries, (size_t)gx->qcap * dim * 4));
    CK(cudaMalloc((void **)&gx->res_row, (size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 4));
    CK(cudaMalloc((void **)&gx->res_score, (size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 4));
    CK(cudaMalloc(&gx->ws, BLAS_WS));
    gx->dev_bytes = b_rows + (size_t)capacity * 8 + b_scores + (size_t)gx->qcap * dim * 4 +
                    (size_t)gx->qcap * NR_GPU_INDEX_MAX_K * 8 + BLAS_WS;
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
    cudaFree(gx->scores);
    cudaFree(gx->queries);
    cudaFree(gx->res_row);
    cudaFree(gx->res_score);
    cudaFree(gx->ws);
    cudaGetLastError();
    nr_gpu_blas_close(gx->blas);
    nr_free(gx->h_cid);
    nr_free(gx->h_did);
    nr_free(gx->h_row);
    nr_free(gx->h_score);
    nr_free(gx);
}

extern "C" int nr_gpu_index_add(struct nr_gpu_index *gx, const int64_t *chunk_ids,
                                const int64_t *doc_ids, const float *v, int n)
{
    int rc = NR_OK;
    if (n < 0 || (n > 0 && (!chunk_ids || !doc_ids || !v)))
        return nr_err_set(NR_EINVAL, "gpu index: bad add arguments");
    if (n > gx->cap - gx->count)
        return nr_err_set(NR_ELIMIT, "gpu index: capacity %lld reached", (long long)gx->cap);
    for (size_t i = 0; i < (size_t)n * gx->dim; i++)
        if (!isfinite(v[i]))
            return nr_err_set(NR_EINVAL, "gpu index: vector %zu is not finite", i / gx->dim);
    if (n == 0)
        return NR_OK;
    CK(cudaSetDevice(gx->device));
    CK(cudaMemcpy(gx->rows + (size_t)gx->count * gx->dim, v, (size_t)n * gx->dim * 4,
                  cudaMemcpyHostToDevice));
    CK(cudaMemcpy(gx->cids + gx->count, chunk_ids, (size_t)n * 8, cudaMemcpyHostToDevice));
    memcpy(gx->h_cid + gx->count, chunk_ids, (size_t)n * 8);
    memcpy(gx->h_did + gx->count, doc_ids, (size_t)n * 8);
    gx->count += n;
fail:
    return rc;
}

extern "C" int nr_gpu_index_remove_chunk(struct nr_gpu_index *gx, int64_t chunk_id)
{
    int rc = NR_OK;
    int64_t last = gx->count - 1;
    for (int64_t r = 0; r < gx->count; r++) {
        if (gx->h_cid[r] != chunk_id)
            continue;
        if (r != last) {
            CK(cudaMemcpy(gx->rows + (size_t)r * gx->dim, gx->rows + (size_t)last * gx->dim,
                          (size_t)gx->dim * 4, cudaMemcpyDeviceToDevice));
            CK(cudaMemcpy(gx->cids + r, gx->cids + last, 8, cudaMemcpyDeviceToDevice));
            gx->h_cid[r] = gx->h_cid[last];
            gx->h_did[r] = gx->h_did[last];
        }
        gx->count--;
        return 1;
    }
    return 0;
fail:
    return rc;
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
                                   struct nr_index_hit *hits, int *n_hits)
{
    struct nr_gpu_gemm plan;
    int rc = NR_OK, have_plan = 0, nplan = 0;
    int64_t cnt = gx->count;
    memset(&plan, 0, sizeof plan);
    if (k < 1 || k > NR_GPU_INDEX_MAX_K || nq < 0)
        return nr_err_set(NR_EINVAL, "gpu index: k %d outside 1..%d", k, NR_GPU_INDEX_MAX_K);
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
        k_topk<<<m, TOPK_THREADS>>>(gx->scores, cnt, gx->cids, kk, gx->res_row, gx->res_score);
        CK(cudaGetLastError());
        CK(cudaMemcpy(gx->h_row, gx->res_row, (size_t)m * NR_GPU_INDEX_MAX_K * 4,
                      cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(gx->h_score, gx->res_score, (size_t)m * NR_GPU_INDEX_MAX_K * 4,
                      cudaMemcpyDeviceToHost));
        for (int i = 0; i < m; i++) {
            struct nr_index_hit *h = hits + (size_t)(q0 + i) * k;
            for (int j = 0; j < kk; j++) {
                int r = gx->h_row[i * NR_GPU_INDEX_MAX_K + j];
                h[j].chunk_id = gx->h_cid[r];
                h[j].doc_id = gx->h_did[r];
                h[j].score = gx->h_score[i * NR_GPU_INDEX_MAX_K + j];
            }
            n_hits[q0 + i] = kk;
        }
    }
fail:
    if (have_plan)
        nr_gpu_gemm_free(gx->blas, &plan);
    return rc;
}
