/*
 * nr_gpu_blas: the few cuBLASLt calls the GPU encoder needs, resolved with
 * dlopen at run time. cuBLAS is not linked (CMakeLists.txt: linking it costs
 * every process ~170 MiB RSS whether it uses the GPU or not), so a process
 * that never opens a GPU model never loads it.
 *
 * One operation: Y[T][N] = X[T][K] · W[N][K]ᵀ (+ bias[N]) (+ R[T][N]),
 * row-major fp16 operands (W as PyTorch stores a Linear weight), fp32
 * accumulation, fp16 output. A plan fixes the shape and is reused for every
 * layer of that shape; bias and residual pointers are given per run.
 * Built only with CUDA (NR_HAVE_CUDA); callers are CUDA code.
 */
#ifndef NR_GPU_BLAS_H
#define NR_GPU_BLAS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nr_gpu_blas;

/* A planned product. Opaque storage for the cuBLASLt descriptors and algo. */
struct nr_gpu_gemm {
    int T, N, K, ldx, ldy; /* rows, output features, input features, strides (elements) */
    int bias, res;         /* 1 if the plan adds bias / a residual */
    void *desc;            /* cublasLtMatmulDesc_t */
    void *la, *lb, *lc;    /* layouts of W, X, Y (and R) */
    uint64_t algo[8];      /* cublasLtMatmulAlgo_t (64 bytes) */
    int have_algo;
};

/* dlopen libcublasLt and create a handle; ws_bytes of device workspace are
 * given by the caller at each run. NR_EUNSUPPORTED when the library is absent. */
int nr_gpu_blas_open(size_t ws_bytes, struct nr_gpu_blas **out);
void nr_gpu_blas_close(struct nr_gpu_blas *b);
/* cuBLASLt version (e.g. 130100), 0 if unknown. */
int nr_gpu_blas_version(const struct nr_gpu_blas *b);

int nr_gpu_gemm_plan(struct nr_gpu_blas *b, int T, int N, int K, int ldx, int ldy, int bias,
                     int res, struct nr_gpu_gemm *g);
/* The same product in fp32 (operands, output and accumulation; no TF32),
 * without bias or residual: the GPU vector index's scores. */
int nr_gpu_gemm_plan_f32(struct nr_gpu_blas *b, int T, int N, int K, int ldx, int ldy,
                         struct nr_gpu_gemm *g);
void nr_gpu_gemm_free(struct nr_gpu_blas *b, struct nr_gpu_gemm *g);
/* Enqueue on `stream` (a cudaStream_t). R may alias nothing else than itself;
 * Y must not alias X, W or R. ws: ws_bytes of device memory. */
int nr_gpu_gemm_run(struct nr_gpu_blas *b, struct nr_gpu_gemm *g, const void *X, const void *W,
                    const void *bias, const void *R, void *Y, void *ws, void *stream);

#ifdef __cplusplus
}
#endif

#endif
