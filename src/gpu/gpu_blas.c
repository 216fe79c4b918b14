/*
 * gpu_blas.c — cuBLASLt through dlopen (see nr_gpu_blas.h for why).
 *
 * Row-major to cuBLAS's column-major: Y[T][N] row-major is Yᵀ column-major
 * (N x T, ld ldy), and Yᵀ = W · Xᵀ where W row-major [N][K] read column-major
 * is K x N (so op(A) = transpose) and X row-major [T][K] is K x T column-major
 * (op(B) = none). The epilogue's bias is per row of the column-major D, i.e.
 * per output feature; a residual is C with beta = 1 (C != D).
 *
 * Only the types of cublasLt.h are used; every function comes from dlsym and
 * is checked at open, so a missing or too old library is an error at open,
 * never a crash later.
 */
#ifdef NR_HAVE_CUDA
#include "nr_gpu_blas.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <cublasLt.h>
#include <dlfcn.h>
#include <string.h>

struct fns {
    cublasStatus_t (*create)(cublasLtHandle_t *);
    cublasStatus_t (*destroy)(cublasLtHandle_t);
    size_t (*version)(void);
    cublasStatus_t (*desc_create)(cublasLtMatmulDesc_t *, cublasComputeType_t, cudaDataType_t);
    cublasStatus_t (*desc_destroy)(cublasLtMatmulDesc_t);
    cublasStatus_t (*desc_set)(cublasLtMatmulDesc_t, cublasLtMatmulDescAttributes_t, const void *,
                               size_t);
    cublasStatus_t (*layout_create)(cublasLtMatrixLayout_t *, cudaDataType, uint64_t, uint64_t,
                                    int64_t);
    cublasStatus_t (*layout_destroy)(cublasLtMatrixLayout_t);
    cublasStatus_t (*pref_create)(cublasLtMatmulPreference_t *);
    cublasStatus_t (*pref_destroy)(cublasLtMatmulPreference_t);
    cublasStatus_t (*pref_set)(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                               const void *, size_t);
    cublasStatus_t (*heuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int,
                                cublasLtMatmulHeuristicResult_t *, int *);
    cublasStatus_t (*matmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void *, const void *,
                             cublasLtMatrixLayout_t, const void *, cublasLtMatrixLayout_t,
                             const void *, const void *, cublasLtMatrixLayout_t, void *,
                             cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t *, void *, size_t,
                             cudaStream_t);
};

struct nr_gpu_blas {
    void *lib; /* dlopen handle */
    struct fns f;
    cublasLtHandle_t h;
    size_t ws_bytes; /* device workspace given to each run */
};

#define CKB(call, what)                                                                            \
    do {                                                                                           \
        cublasStatus_t st_ = (call);                                                               \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                        \
            rc = nr_err_set(NR_EIO, "cublasLt: %s failed (status %d) at %s:%d", what, (int)st_,    \
                            __FILE__, __LINE__);                                                   \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

int nr_gpu_blas_open(size_t ws_bytes, struct nr_gpu_blas **out)
{
    static const char *const names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                                        NULL};
    struct nr_gpu_blas *b;
    int rc = NR_OK;

    *out = NULL;
    b = nr_calloc(1, sizeof *b);
    if (!b)
        return nr_err_set(NR_ENOMEM, "out of memory opening cuBLASLt");
    b->ws_bytes = ws_bytes;
    for (int i = 0; names[i] && !b->lib; i++)
        b->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!b->lib) {
        rc = nr_err_set(NR_EUNSUPPORTED, "cuBLASLt not found (libcublasLt.so.13/.12): %s",
                        dlerror());
        goto fail;
    }
    {
        /* name, slot: every function the encoder calls */
        struct {
            const char *name;
            void **slot;
        } t[] = {
            {"cublasLtCreate", (void **)&b->f.create},
            {"cublasLtDestroy", (void **)&b->f.destroy},
            {"cublasLtGetVersion", (void **)&b->f.version},
            {"cublasLtMatmulDescCreate", (void **)&b->f.desc_create},
            {"cublasLtMatmulDescDestroy", (void **)&b->f.desc_destroy},
            {"cublasLtMatmulDescSetAttribute", (void **)&b->f.desc_set},
            {"cublasLtMatrixLayoutCreate", (void **)&b->f.layout_create},
            {"cublasLtMatrixLayoutDestroy", (void **)&b->f.layout_destroy},
            {"cublasLtMatmulPreferenceCreate", (void **)&b->f.pref_create},
            {"cublasLtMatmulPreferenceDestroy", (void **)&b->f.pref_destroy},
            {"cublasLtMatmulPreferenceSetAttribute", (void **)&b->f.pref_set},
            {"cublasLtMatmulAlgoGetHeuristic", (void **)&b->f.heuristic},
            {"cublasLtMatmul", (void **)&b->f.matmul},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            *t[i].slot = dlsym(b->lib, t[i].name);
            if (!*t[i].slot) {
                rc = nr_err_set(NR_EUNSUPPORTED, "cuBLASLt has no %s", t[i].name);
                goto fail;
            }
        }
    }
    CKB(b->f.create(&b->h), "cublasLtCreate");
    *out = b;
    return NR_OK;
fail:
    nr_gpu_blas_close(b);
    return rc;
}

void nr_gpu_blas_close(struct nr_gpu_blas *b)
{
    if (!b)
        return;
    if (b->h)
        b->f.destroy(b->h);
    if (b->lib)
        dlclose(b->lib);
    nr_free(b);
}

int nr_gpu_blas_version(const struct nr_gpu_blas *b)
{
    return b && b->f.version ? (int)b->f.version() : 0;
}

void nr_gpu_gemm_free(struct nr_gpu_blas *b, struct nr_gpu_gemm *g)
{
    if (g->desc)
        b->f.desc_destroy((cublasLtMatmulDesc_t)g->desc);
    if (g->la)
        b->f.layout_destroy((cublasLtMatrixLayout_t)g->la);
    if (g->lb)
        b->f.layout_destroy((cublasLtMatrixLayout_t)g->lb);
    if (g->lc)
        b->f.layout_destroy((cublasLtMatrixLayout_t)g->lc);
    memset(g, 0, sizeof *g);
}

static int plan(struct nr_gpu_blas *b, int T, int N, int K, int ldx, int ldy, int bias, int res,
                cudaDataType_t dt, struct nr_gpu_gemm *g)
{
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t hr;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    int found = 0, rc = NR_OK;

    memset(g, 0, sizeof *g);
    if (T < 1 || N < 1 || K < 1 || ldx < K || ldy < N)
        return nr_err_set(NR_EINVAL, "gemm plan: bad shape T %d N %d K %d", T, N, K);
    CKB(b->f.desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    g->desc = desc;
    CKB(b->f.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set TRANSA");
    CKB(b->f.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set TRANSB");
    CKB(b->f.desc_set(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "set EPILOGUE");
    if (bias) {
        cudaDataType_t bt = CUDA_R_16F; /* bias vectors are stored fp16, as D */
        CKB(b->f.desc_set(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt),
            "set BIAS_DATA_TYPE");
    }
    CKB(b->f.layout_create(&la, dt, (uint64_t)K, (uint64_t)N, K), "layout W");
    g->la = la;
    CKB(b->f.layout_create(&lb, dt, (uint64_t)K, (uint64_t)T, ldx), "layout X");
    g->lb = lb;
    CKB(b->f.layout_create(&lc, dt, (uint64_t)N, (uint64_t)T, ldy), "layout Y");
    g->lc = lc;
    CKB(b->f.pref_create(&pref), "PreferenceCreate");
    CKB(b->f.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &b->ws_bytes,
                      sizeof b->ws_bytes),
        "set MAX_WORKSPACE_BYTES");
    CKB(b->f.heuristic(b->h, desc, la, lb, lc, lc, pref, 1, &hr, &found), "AlgoGetHeuristic");
    if (found < 1) {
        rc = nr_err_set(NR_EUNSUPPORTED, "cublasLt: no algorithm for T %d N %d K %d", T, N, K);
        goto fail;
    }
    memcpy(g->algo, &hr.algo, sizeof hr.algo < sizeof g->algo ? sizeof hr.algo : sizeof g->algo);
    g->have_algo = 1;
    g->T = T;
    g->N = N;
    g->K = K;
    g->ldx = ldx;
    g->ldy = ldy;
    g->bias = bias;
    g->res = res;
    b->f.pref_destroy(pref);
    return NR_OK;
fail:
    if (pref)
        b->f.pref_destroy(pref);
    nr_gpu_gemm_free(b, g);
    return rc;
}

int nr_gpu_gemm_plan(struct nr_gpu_blas *b, int T, int N, int K, int ldx, int ldy, int bias,
                     int res, struct nr_gpu_gemm *g)
{
    return plan(b, T, N, K, ldx, ldy, bias, res, CUDA_R_16F, g);
}

int nr_gpu_gemm_plan_f32(struct nr_gpu_blas *b, int T, int N, int K, int ldx, int ldy,
                         struct nr_gpu_gemm *g)
{
    /* fp32 operands with CUBLAS_COMPUTE_32F: plain fp32 FMA, no TF32 */
    return plan(b, T, N, K, ldx, ldy, 0, 0, CUDA_R_32F, g);
}

int nr_gpu_gemm_run(struct nr_gpu_blas *b, struct nr_gpu_gemm *g, const void *X, const void *W,
                    const void *bias, const void *R, void *Y, void *ws, void *stream)
{
    const float one = 1.0f, zero = 0.0f;
    int rc = NR_OK;
    cublasLtMatmulDesc_t desc = (cublasLtMatmulDesc_t)g->desc;
    if (g->bias)
        CKB(b->f.desc_set(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
            "set BIAS_POINTER");
    CKB(b->f.matmul(b->h, desc, &one, W, (cublasLtMatrixLayout_t)g->la, X,
                    (cublasLtMatrixLayout_t)g->lb, g->res ? &one : &zero, g->res ? R : Y,
                    (cublasLtMatrixLayout_t)g->lc, Y, (cublasLtMatrixLayout_t)g->lc,
                    (const cublasLtMatmulAlgo_t *)(const void *)g->algo, ws, b->ws_bytes,
                    (cudaStream_t)stream),
        "Matmul");
fail:
    return rc;
}
#else
typedef int nr_gpu_blas_unused; /* ISO C forbids an empty translation unit */
#endif
