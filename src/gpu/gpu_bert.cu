/*
 * gpu_bert.cu — the BERT encoder of nr_bert on a CUDA GPU.
 *
 * Same computation as bert.c (post-LN BERT, exact-erf GELU, then pooling and
 * optional L2 normalization), over the same packed batches: sequences back
 * to back, no padding, so no work and no memory is spent on pad tokens.
 *
 * Precision. Weights and activations are fp16; every GEMM accumulates in
 * fp32 (cuBLASLt, tensor cores); LayerNorm statistics, softmax, GELU and
 * pooling are computed in fp32 from fp16 inputs. fp16 rather than bf16: the
 * activations of a post-LN encoder are O(1..100), well inside fp16's range,
 * and fp16 keeps 3 more mantissa bits.
 *
 * Per layer, over T tokens (H hidden, F ffn, 3H fused QKV):
 *     big[T][3H] = x·Wqkvᵀ + bqkv                   GEMM, bias epilogue
 *     ctx[T][H]  = softmax(q·kᵀ/√d)·v                k_attention
 *     big[T][H]  = ctx·Woᵀ + bo + x                  GEMM, bias + residual (beta = 1)
 *     x          = LN(big)                          k_layernorm
 *     big[T][F]  = x·W1ᵀ                             GEMM
 *     big        = GELU(big + b1)                   k_bias_gelu (fused bias + GELU)
 *     ctx[T][H]  = big·W2ᵀ + b2 + x                  GEMM, bias + residual
 *     x          = LN(ctx)                          k_layernorm
 * then out[s] = normalize(pool(x rows of s))        k_pool, written into big.
 * So three activation buffers: x and ctx [T][H] and big [T][max(3H, F)], all
 * fp16 and sized at open for max_batch_tokens; pooled fp32 vectors [n][H]
 * fit in big because 3H·2 bytes >= H·4 bytes.
 *
 * Attention: one block of 128 threads per (work item, head); a work item is
 * (sequence start, length, first query row) for up to 128 query rows of one
 * sequence, so any length up to max_pos works. Each thread owns one query
 * row in registers; keys and values stream through shared memory in tiles
 * of 64 rows, converted to fp32 once per tile; softmax is the one-pass
 * (running max, rescaled sum) form, in base 2. head_dim 32 or 64.
 *
 * Metadata. Each batch's token ids, positions, sequence starts/lengths and
 * attention work items go to the device in one copy from a page-locked
 * staging buffer. Kernels read the counts (n_seq, T, n_items) from device
 * memory, not from launch arguments, so a captured graph is valid for any
 * batch that fits its bucket: grids are sized for the bucket and surplus
 * blocks return at once; rows past T are zero-filled by the embedding kernel
 * and are harmless to the GEMMs (each output row depends only on its input
 * row).
 *
 * Graphs. Batches of at most NR_GPU_GRAPH_TOKENS tokens run from a CUDA
 * graph per padded size (16, 32, ..., 256 rows), captured on first use and
 * replayed after: one launch instead of ~50 (a 12-token query is launch-
 * bound, not compute-bound). Larger batches launch kernels directly; their
 * cuBLASLt plans are cached per row count (a small round-robin cache).
 *
 * Memory is fixed at open: one allocation for the weights (carved into
 * slices), one for the activations, one for the metadata; nothing is
 * allocated per batch. Free memory is checked first, with a margin, so a
 * busy GPU is refused at open rather than failing mid-ingest.
 */
#include "nr_gpu_bert.h"

#include <cuda_fp16.h>
#include <mma.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "nr_bert.h"
#include "nr_err.h"
#include "nr_gpu_blas.h"
#include "nr_half.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_str.h"
}

#define BLOCK    128 /* threads per block for row kernels and attention */
#define QCHUNK   128 /* query rows per attention work item (= BLOCK) */
#define KTILE    64  /* key/value rows per shared-memory tile */
#define TC_MAX_L 256 /* longest sequence for the tensor-core attention */
#define TC_WARPS 4   /* warps per tensor-core attention block */
/* K/V/Q row stride in shared memory, halves: 80 bytes, so the 16 rows of a
 * wmma tile do not fall in the same banks */
#define TC_KS      40
#define LN_ROWS    4                  /* rows per k_layernorm block: one warp each */
#define LN_MAXH2   16                 /* half2 per lane in k_layernorm: H <= 32 * 2 * 16 = 1024 */
#define N_BUCKETS  5                  /* graph buckets: 16, 32, 64, 128, 256 rows */
#define N_PLANS    8                  /* cached GEMM plan sets for direct batches */
#define BLAS_WS    ((size_t)4 << 20)  /* cuBLASLt workspace, bytes */
#define MEM_MARGIN ((size_t)64 << 20) /* free memory to leave to others at open */

/* Record a CUDA error with file and line and jump to the function's fail. */
#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            rc = nr_err_set(NR_EIO, "cuda: %s: %s (%s:%d)", #call, cudaGetErrorString(e_),         \
                            __FILE__, __LINE__);                                                   \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
#define CK_LAUNCH() CK(cudaGetLastError())
#define CKR(call)                                                                                  \
    do {                                                                                           \
        if ((rc = (call)) != NR_OK)                                                                \
            goto fail;                                                                             \
    } while (0)

/* ------------------------------------------------------------ layout */

struct glayer {
    __half *wqkv, *bqkv;   /* [3H][H], [3H] */
    __half *wo, *bo;       /* [H][H], [H] */
    float *ln1_g, *ln1_b;  /* [H] */
    __half *wup;           /* [F][H] */
    float *bup;            /* [F] fp32: added by k_bias_gelu */
    __half *wdown, *bdown; /* [H][F], [H] */
    float *ln2_g, *ln2_b;  /* [H] */
};

/* Byte offsets of one metadata block (host staging and device copy alike). */
struct meta_layout {
    int cap_tok, cap_item; /* tokens (= max sequences) and attention items */
    size_t o_start, o_len, o_item, o_ids, o_pos, bytes;
};

struct meta_dev {   /* device pointers into one metadata block */
    const int *hdr; /* [0] n_seq, [1] T, [2] n_items */
    const int *start, *len;
    const int4 *items; /* (start, len, q0, 0) */
    const int *ids, *pos;
};

struct plans {
    int T; /* rows; 0: unused slot */
    struct nr_gpu_gemm qkv, o, up, down;
};

struct nr_gpu_bert {
    struct nr_bert *meta;
    struct nr_bert_config cfg;
    int device, integrated;
    char name[256];
    int max_tokens; /* max_batch_tokens */
    int use_graphs;
    int attn_tc;    /* 1: tensor-core attention (head_dim 32, max_seq <= TC_MAX_L) */
    int ref_gemm;   /* 1: k_gemm_ref instead of cuBLASLt (tests, sanitizers) */
    size_t tc_smem; /* its dynamic shared memory, bytes */
    cudaStream_t stream;
    cudaEvent_t ev0, ev1;
    struct nr_gpu_blas *blas;

    void *wbuf; /* one allocation: every weight */
    size_t wbytes;
    __half *word, *posw; /* [vocab][H], [max_pos][H] */
    float *type0;        /* [H] token type 0 row */
    float *eln_g, *eln_b;
    struct glayer *L; /* [layers] host array of device pointers */

    void *abuf; /* one allocation: activations, cuBLASLt workspace, metadata */
    size_t abytes;
    __half *x, *ctx, *big;                /* [T][H], [T][H], [T][max(3H,F)] */
    void *blas_ws;                        /* BLAS_WS bytes */
    unsigned char *meta_big, *meta_small; /* device metadata blocks */
    struct meta_layout lay_big, lay_small;
    unsigned char *staging; /* page-locked host, lay_big.bytes */

    struct plans plan[N_PLANS];
    int plan_next;
    cudaGraphExec_t graph[N_BUCKETS];
    int n_graphs;

    int pending; /* a submitted batch not yet waited for */
    int pending_nseq;
    double tokens, gpu_s;
};

static size_t align_up(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

static void meta_layout_init(struct meta_layout *m, int cap_tok)
{
    size_t o = 16; /* header: 4 ints */
    m->cap_tok = cap_tok;
    m->cap_item = cap_tok + cap_tok / QCHUNK + 1;
    m->o_start = o = align_up(o);
    m->o_len = o = align_up(o + (size_t)cap_tok * 4);
    m->o_item = o = align_up(o + (size_t)cap_tok * 4);
    m->o_ids = o = align_up(o + (size_t)m->cap_item * 16);
    m->o_pos = o = align_up(o + (size_t)cap_tok * 4);
    m->bytes = align_up(o + (size_t)cap_tok * 4);
}

static struct meta_dev meta_ptrs(const unsigned char *base, const struct meta_layout *m)
{
    struct meta_dev d;
    d.hdr = (const int *)base;
    d.start = (const int *)(base + m->o_start);
    d.len = (const int *)(base + m->o_len);
    d.items = (const int4 *)(base + m->o_item);
    d.ids = (const int *)(base + m->o_ids);
    d.pos = (const int *)(base + m->o_pos);
    return d;
}

/* ------------------------------------------------------------ kernels */

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the total. red: 32 floats of shared memory. */
__device__ static float block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0)
        red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* LayerNorm of buf[0..H) in place semantics, written to out as fp16. */
__device__ static void ln_row(float *buf, float s, int H, const float *g, const float *b, float eps,
                              __half *out, float *red)
{
    float mean = block_sum(s, red) / (float)H, s2 = 0.0f, rstd;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        float d = buf[j] - mean;
        s2 += d * d;
    }
    rstd = rsqrtf(block_sum(s2, red) / (float)H + eps);
    for (int j = threadIdx.x; j < H; j += blockDim.x)
        out[j] = __float2half((buf[j] - mean) * rstd * g[j] + b[j]);
}

/* x[r] = LN(word[id] + pos[p] + type0) for r < T; rows T..gridDim.x zeroed. */
__global__ static void k_embed_ln(struct meta_dev md, const __half *__restrict__ word,
                                  const __half *__restrict__ posw, const float *__restrict__ type0,
                                  const float *__restrict__ g, const float *__restrict__ b,
                                  float eps, int H, __half *__restrict__ x)
{
    extern __shared__ float buf[];
    __shared__ float red[32];
    int r = blockIdx.x;
    __half *xr = x + (size_t)r * H;
    float s = 0.0f;
    if (r >= md.hdr[1]) { /* uniform over the block */
        for (int j = threadIdx.x; j < H; j += blockDim.x)
            xr[j] = __float2half(0.0f);
        return;
    }
    {
        const __half *we = word + (size_t)md.ids[r] * H;
        const __half *pe = posw + (size_t)md.pos[r] * H;
        for (int j = threadIdx.x; j < H; j += blockDim.x) {
            float v = __half2float(we[j]) + __half2float(pe[j]) + type0[j];
            buf[j] = v;
            s += v;
        }
    }
    ln_row(buf, s, H, g, b, eps, xr, red);
}

/* x[r] = LN(y[r]) for rows r < rows: one warp per row, the row in
 * registers (H even, H <= 2 * 32 * LN_MAXH2), warp shuffles only. */
__global__ static void k_layernorm(const __half *__restrict__ y, const float *__restrict__ g,
                                   const float *__restrict__ b, float eps, int H, int rows,
                                   __half *__restrict__ x)
{
    int r = blockIdx.x * LN_ROWS + (threadIdx.x >> 5), lane = threadIdx.x & 31, n2 = H / 2;
    float2 v[LN_MAXH2];
    float s = 0.0f, s2 = 0.0f, mean, rstd;
    const __half2 *yr;
    __half2 *xr;
    if (r >= rows)
        return; /* whole warps only: no block-wide barrier below */
    yr = (const __half2 *)(y + (size_t)r * H);
    xr = (__half2 *)(x + (size_t)r * H);
#pragma unroll
    for (int k = 0; k < LN_MAXH2; k++) {
        int i = lane + 32 * k;
        v[k] = i < n2 ? __half22float2(yr[i]) : make_float2(0.0f, 0.0f);
        s += v[k].x + v[k].y;
    }
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    mean = s / (float)H;
#pragma unroll
    for (int k = 0; k < LN_MAXH2; k++)
        if (lane + 32 * k < n2)
            s2 += (v[k].x - mean) * (v[k].x - mean) + (v[k].y - mean) * (v[k].y - mean);
    for (int o = 16; o > 0; o >>= 1)
        s2 += __shfl_xor_sync(0xffffffffu, s2, o);
    rstd = rsqrtf(s2 / (float)H + eps);
#pragma unroll
    for (int k = 0; k < LN_MAXH2; k++) {
        int i = lane + 32 * k;
        if (i < n2)
            xr[i] = __floats2half2_rn((v[k].x - mean) * rstd * g[2 * i] + b[2 * i],
                                      (v[k].y - mean) * rstd * g[2 * i + 1] + b[2 * i + 1]);
    }
}

/* v = GELU(v + bias) in place, one block per row of F (F a multiple of 8),
 * 16-byte loads and stores. */
__global__ static void k_bias_gelu(__half *v, const float *__restrict__ bias, int F)
{
    int4 *row = (int4 *)(v + (size_t)blockIdx.x * F);
    for (int c = threadIdx.x; c < F / 8; c += blockDim.x) {
        int4 raw = row[c];
        __half2 *h = (__half2 *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __half22float2(h[k]);
            float a = f.x + bias[8 * c + 2 * k], e = f.y + bias[8 * c + 2 * k + 1];
            /* exact GELU, as torch.nn.GELU(): x·Φ(x) = 0.5·x·(1 + erf(x/√2)) */
            a = 0.5f * a * (1.0f + erff(a * 0.70710678118654752f));
            e = 0.5f * e * (1.0f + erff(e * 0.70710678118654752f));
            h[k] = __floats2half2_rn(a, e);
        }
        row[c] = raw;
    }
}

/* softmax(q·kᵀ·scale)·v for one work item and head (see the design block). */
template <int HD>
__global__ static void __launch_bounds__(BLOCK)
    k_attention(const __half *__restrict__ qkv, __half *__restrict__ ctx, struct meta_dev md, int H,
                float qscale)
{
    __shared__ float4 ks[KTILE][HD / 4];
    __shared__ float4 vs[KTILE][HD / 4];
    float q[HD], acc[HD];
    float m = -INFINITY, l = 0.0f;
    int ld = 3 * H, h = blockIdx.y, start, L, row, act;
    int4 it;

    if ((int)blockIdx.x >= md.hdr[2])
        return; /* uniform: a surplus block of a graph bucket */
    it = md.items[blockIdx.x];
    start = it.x;
    L = it.y;
    row = it.z + (int)threadIdx.x;
    act = row < L;
#pragma unroll
    for (int d = 0; d < HD; d++)
        q[d] = acc[d] = 0.0f;
    if (act) {
        const __half2 *qp = (const __half2 *)(qkv + (size_t)(start + row) * ld + h * HD);
#pragma unroll
        for (int d = 0; d < HD / 2; d++) {
            float2 f = __half22float2(qp[d]);
            q[2 * d] = f.x * qscale;
            q[2 * d + 1] = f.y * qscale;
        }
    }
    for (int k0 = 0; k0 < L; k0 += KTILE) {
        int n = L - k0 < KTILE ? L - k0 : KTILE;
        for (int i = threadIdx.x; i < n * (HD / 2); i += blockDim.x) {
            int j = i / (HD / 2), d2 = i % (HD / 2);
            const __half *base = qkv + (size_t)(start + k0 + j) * ld + h * HD;
            ((float2 *)&ks[j][0])[d2] = __half22float2(((const __half2 *)(base + H))[d2]);
            ((float2 *)&vs[j][0])[d2] = __half22float2(((const __half2 *)(base + 2 * H))[d2]);
        }
        __syncthreads();
        if (act) {
            for (int j = 0; j < n; j++) {
                float s = 0.0f, p;
#pragma unroll
                for (int d = 0; d < HD / 4; d++) {
                    float4 k = ks[j][d];
                    s += q[4 * d] * k.x + q[4 * d + 1] * k.y + q[4 * d + 2] * k.z +
                         q[4 * d + 3] * k.w;
                }
                if (s > m) { /* new running max: rescale what was summed so far */
                    float c = exp2f(m - s);
                    l *= c;
#pragma unroll
                    for (int d = 0; d < HD; d++)
                        acc[d] *= c;
                    m = s;
                }
                p = exp2f(s - m);
                l += p;
#pragma unroll
                for (int d = 0; d < HD / 4; d++) {
                    float4 v = vs[j][d];
                    acc[4 * d] += p * v.x;
                    acc[4 * d + 1] += p * v.y;
                    acc[4 * d + 2] += p * v.z;
                    acc[4 * d + 3] += p * v.w;
                }
            }
        }
        __syncthreads();
    }
    if (act) {
        __half2 *o = (__half2 *)(ctx + (size_t)(start + row) * H + h * HD);
        float inv = 1.0f / l;
#pragma unroll
        for (int d = 0; d < HD / 2; d++)
            o[d] = __floats2half2_rn(acc[2 * d] * inv, acc[2 * d + 1] * inv);
    }
}

/*
 * The same attention on tensor cores (wmma 16x16x16, fp16 in, fp32
 * accumulate), for head_dim 32 and sequences of at most TC_MAX_L tokens.
 * One block of TC_WARPS warps per (work item, head): the sequence's K and V
 * (zero-padded to LP = L rounded up to 16 rows) go to shared memory once;
 * each warp takes 16 query rows at a time:
 *     S[16][LP] = Q·Kᵀ           (fp32, the warp's shared-memory strip)
 *     P = softmax(S·scale) per row, written as fp16 over the same strip
 *     O[16][32] = P·V            (fp32), scaled by 1/rowsum, stored fp16.
 * Padded keys get -inf scores, so P is 0 there; padded query rows are
 * computed from zeros and not stored.
 */
__global__ static void __launch_bounds__(TC_WARPS * 32)
    k_attention_tc(const __half *__restrict__ qkv, __half *__restrict__ ctx, struct meta_dev md,
                   int H, float qscale, int LPmax)
{
    using namespace nvcuda;
    extern __shared__ __align__(128) unsigned char smem[];
    __half *Ks = (__half *)smem;                       /* [LPmax][TC_KS] */
    __half *Vs = Ks + (size_t)LPmax * TC_KS;           /* [LPmax][TC_KS] */
    __half *Qs = Vs + (size_t)LPmax * TC_KS;           /* [TC_WARPS][16][TC_KS] */
    float *Ss = (float *)(Qs + TC_WARPS * 16 * TC_KS); /* [TC_WARPS][16][LPmax + 8] */
    __shared__ float rinv[TC_WARPS][16];
    int ld = 3 * H, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int start, L, q0, LP, SS, rows;
    int4 it;
    __half *Qw = Qs + warp * 16 * TC_KS;
    float *Sw = Ss + (size_t)warp * 16 * (LPmax + 8);

    if ((int)blockIdx.x >= md.hdr[2])
        return;
    it = md.items[blockIdx.x];
    start = it.x;
    L = it.y;
    q0 = it.z;
    LP = (L + 15) & ~15;
    SS = LP + 8; /* S row stride, floats: off a multiple of 32 banks */
    rows = L - q0 < QCHUNK ? L - q0 : QCHUNK;
    /* K and V rows of this head: 32 halves = 4 x 16 bytes each */
    for (int i = threadIdx.x; i < LP * 4; i += blockDim.x) {
        int j = i >> 2, c = i & 3;
        int4 kz = make_int4(0, 0, 0, 0), vz = kz;
        if (j < L) {
            const __half *base = qkv + (size_t)(start + j) * ld + h * 32;
            kz = ((const int4 *)(base + H))[c];
            vz = ((const int4 *)(base + 2 * H))[c];
        }
        ((int4 *)(Ks + j * TC_KS))[c] = kz;
        ((int4 *)(Vs + j * TC_KS))[c] = vz;
    }
    __syncthreads();
    for (int t = warp; t * 16 < rows; t += TC_WARPS) {
        int r0 = q0 + t * 16;
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fk;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fv;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc, o0, o1;
        /* this warp's 16 query rows, zero past L */
        for (int i = lane; i < 16 * 4; i += 32) {
            int rr = i >> 2, c = i & 3;
            int4 qz = make_int4(0, 0, 0, 0);
            if (r0 + rr < L)
                qz = ((const int4 *)(qkv + (size_t)(start + r0 + rr) * ld + h * 32))[c];
            ((int4 *)(Qw + rr * TC_KS))[c] = qz;
        }
        __syncwarp();
        for (int n0 = 0; n0 < LP; n0 += 16) {
            wmma::fill_fragment(acc, 0.0f);
            for (int k0 = 0; k0 < 32; k0 += 16) {
                wmma::load_matrix_sync(fa, Qw + k0, TC_KS);
                wmma::load_matrix_sync(fk, Ks + n0 * TC_KS + k0, TC_KS);
                wmma::mma_sync(acc, fa, fk, acc);
            }
            wmma::store_matrix_sync(Sw + n0, acc, SS, wmma::mem_row_major);
        }
        __syncwarp();
        /* softmax per row; P (fp16) overwrites the row's first 2*LP bytes
         * only after the whole row is in registers */
        for (int rr = 0; rr < 16; rr++) {
            float sv[TC_MAX_L / 32], m = -INFINITY, sum = 0.0f;
            float *srow = Sw + (size_t)rr * SS;
#pragma unroll
            for (int k = 0; k < TC_MAX_L / 32; k++) {
                int j = lane + 32 * k;
                sv[k] = j < L ? srow[j] * qscale : -INFINITY;
                m = fmaxf(m, sv[k]);
            }
            for (int o = 16; o > 0; o >>= 1)
                m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
#pragma unroll
            for (int k = 0; k < TC_MAX_L / 32; k++) {
                sv[k] = exp2f(sv[k] - m);
                sum += sv[k];
            }
            for (int o = 16; o > 0; o >>= 1)
                sum += __shfl_xor_sync(0xffffffffu, sum, o);
            __syncwarp();
#pragma unroll
            for (int k = 0; k < TC_MAX_L / 32; k++) {
                int j = lane + 32 * k;
                if (j < LP)
                    ((__half *)srow)[j] = __float2half(sv[k]);
            }
            if (lane == 0)
                rinv[warp][rr] = 1.0f / sum;
        }
        __syncwarp();
        wmma::fill_fragment(o0, 0.0f);
        wmma::fill_fragment(o1, 0.0f);
        for (int k0 = 0; k0 < LP; k0 += 16) {
            wmma::load_matrix_sync(fa, (const __half *)Sw + k0, 2 * SS);
            wmma::load_matrix_sync(fv, Vs + k0 * TC_KS, TC_KS);
            wmma::mma_sync(o0, fa, fv, o0);
            wmma::load_matrix_sync(fv, Vs + k0 * TC_KS + 16, TC_KS);
            wmma::mma_sync(o1, fa, fv, o1);
        }
        __syncwarp();
        wmma::store_matrix_sync(Sw, o0, TC_KS, wmma::mem_row_major);
        wmma::store_matrix_sync(Sw + 16, o1, TC_KS, wmma::mem_row_major);
        __syncwarp();
        for (int i = lane; i < 16 * 16; i += 32) {
            int rr = i >> 4, d2 = i & 15;
            if (r0 + rr < L) {
                float inv = rinv[warp][rr];
                ((__half2 *)(ctx + (size_t)(start + r0 + rr) * H + h * 32))[d2] = __floats2half2_rn(
                    Sw[rr * TC_KS + 2 * d2] * inv, Sw[rr * TC_KS + 2 * d2 + 1] * inv);
            }
        }
        __syncwarp();
    }
}

/* The reference product, one thread per output: Y[t][n] = Σ_k X[t][k]·W[n][k]
 * (+ bias[n]) (+ R[t][n]), fp32 sums. Slow; it checks cuBLASLt's results and
 * lets racecheck run over our kernels alone (it cannot follow cuBLASLt's
 * Hopper GEMMs). */
__global__ static void k_gemm_ref(const __half *__restrict__ X, int ldx,
                                  const __half *__restrict__ W, int K,
                                  const __half *__restrict__ bias, const __half *__restrict__ R,
                                  __half *__restrict__ Y, int ldy, int T, int N)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y * blockDim.y + threadIdx.y;
    float acc = 0.0f;
    if (n >= N || t >= T)
        return;
    for (int k = 0; k < K; k++)
        acc += __half2float(X[(size_t)t * ldx + k]) * __half2float(W[(size_t)n * K + k]);
    if (bias)
        acc += __half2float(bias[n]);
    if (R)
        acc += __half2float(R[(size_t)t * ldy + n]);
    Y[(size_t)t * ldy + n] = __float2half(acc);
}

/* out[s] = pool(x rows of sequence s), L2-normalized when asked. */
__global__ static void k_pool(const __half *__restrict__ x, struct meta_dev md, int H, int mode,
                              int normalize, float *__restrict__ out)
{
    extern __shared__ float buf[];
    __shared__ float red[32];
    int s = blockIdx.x, st, L;
    float ss = 0.0f, inv = 1.0f;
    if (s >= md.hdr[0])
        return;
    st = md.start[s];
    L = md.len[s];
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        const __half *c = x + (size_t)st * H + j;
        float v;
        if (mode == NR_POOL_CLS) {
            v = __half2float(c[0]);
        } else if (mode == NR_POOL_MAX) {
            v = -INFINITY;
            for (int t = 0; t < L; t++)
                v = fmaxf(v, __half2float(c[(size_t)t * H]));
        } else {
            v = 0.0f;
            for (int t = 0; t < L; t++)
                v += __half2float(c[(size_t)t * H]);
            v *= mode == NR_POOL_MEAN ? 1.0f / (float)L : rsqrtf((float)L);
        }
        buf[j] = v;
        ss += v * v;
    }
    if (normalize) /* as torch.nn.functional.normalize: v / max(||v||, 1e-12) */
        inv = 1.0f / fmaxf(sqrtf(block_sum(ss, red)), 1e-12f);
    for (int j = threadIdx.x; j < H; j += blockDim.x)
        out[(size_t)s * H + j] = buf[j] * inv;
}

/* ------------------------------------------------------------ forward */

static int get_plans(struct nr_gpu_bert *g, int T, struct plans **out)
{
    const struct nr_bert_config *c = &g->cfg;
    int H = c->hidden, F = c->ffn, rc = NR_OK;
    struct plans *p;
    for (int i = 0; i < N_PLANS; i++)
        if (g->plan[i].T == T) {
            *out = &g->plan[i];
            return NR_OK;
        }
    p = &g->plan[g->plan_next];
    g->plan_next = (g->plan_next + 1) % N_PLANS;
    if (p->T) {
        nr_gpu_gemm_free(g->blas, &p->qkv);
        nr_gpu_gemm_free(g->blas, &p->o);
        nr_gpu_gemm_free(g->blas, &p->up);
        nr_gpu_gemm_free(g->blas, &p->down);
        p->T = 0;
    }
    CKR(nr_gpu_gemm_plan(g->blas, T, 3 * H, H, H, 3 * H, 1, 0, &p->qkv));
    CKR(nr_gpu_gemm_plan(g->blas, T, H, H, H, H, 1, 1, &p->o));
    CKR(nr_gpu_gemm_plan(g->blas, T, F, H, H, F, 0, 0, &p->up));
    CKR(nr_gpu_gemm_plan(g->blas, T, H, F, F, H, 1, 1, &p->down));
    p->T = T;
    *out = p;
    return NR_OK;
fail:
    nr_gpu_gemm_free(g->blas, &p->qkv);
    nr_gpu_gemm_free(g->blas, &p->o);
    nr_gpu_gemm_free(g->blas, &p->up);
    nr_gpu_gemm_free(g->blas, &p->down);
    return rc;
}

/* One planned product, by cuBLASLt or (ref_gemm) by k_gemm_ref. */
static int gemm(struct nr_gpu_bert *g, struct nr_gpu_gemm *p, const __half *X, const __half *W,
                const __half *bias, const __half *R, __half *Y)
{
    int rc = NR_OK;
    if (!g->ref_gemm)
        return nr_gpu_gemm_run(g->blas, p, X, W, bias, R, Y, g->blas_ws, g->stream);
    k_gemm_ref<<<dim3((p->N + 31) / 32, (p->T + 7) / 8), dim3(32, 8), 0, g->stream>>>(
        X, p->ldx, W, p->K, p->bias ? bias : NULL, p->res ? R : NULL, Y, p->ldy, p->T, p->N);
    CK_LAUNCH();
fail:
    return rc;
}

/*
 * Enqueue the whole forward for `rows` rows (T, or a graph bucket's padded
 * size), `items` attention blocks and `seqs` pooling blocks (exact counts, or
 * a bucket's upper bounds), reading metadata from md.
 */
static size_t tc_smem_bytes(int lp)
{
    return (size_t)lp * TC_KS * 2 * 2 + (size_t)TC_WARPS * 16 * TC_KS * 2 +
           (size_t)TC_WARPS * 16 * (lp + 8) * 4;
}

static int enqueue_forward(struct nr_gpu_bert *g, struct meta_dev md, int rows, int items, int seqs,
                           int maxlen)
{
    const struct nr_bert_config *c = &g->cfg;
    int H = c->hidden, F = c->ffn, hd = H / c->heads, rc = NR_OK;
    size_t smem = (size_t)H * sizeof(float);
    float qscale = 1.4426950408889634f / sqrtf((float)hd); /* log2(e)/√d: softmax in base 2 */
    struct plans *p;
    cudaStream_t s = g->stream;
    int gelu_threads = F / 8 < 1024 ? (F / 8 + 31) / 32 * 32 : 1024; /* one 16-byte chunk each */

    CKR(get_plans(g, rows, &p));
    k_embed_ln<<<rows, BLOCK, smem, s>>>(md, g->word, g->posw, g->type0, g->eln_g, g->eln_b,
                                         c->ln_eps, H, g->x);
    CK_LAUNCH();
    for (int l = 0; l < c->layers; l++) {
        const struct glayer *w = &g->L[l];
        CKR(gemm(g, &p->qkv, g->x, w->wqkv, w->bqkv, NULL, g->big));
        if (g->attn_tc)
            /* shared memory for the longest sequence of this batch, not
             * max_seq: more blocks per SM for short texts */
            k_attention_tc<<<dim3(items, c->heads), TC_WARPS * 32,
                             tc_smem_bytes((maxlen + 15) & ~15), s>>>(g->big, g->ctx, md, H, qscale,
                                                                      (maxlen + 15) & ~15);
        else if (hd == 32)
            k_attention<32><<<dim3(items, c->heads), BLOCK, 0, s>>>(g->big, g->ctx, md, H, qscale);
        else
            k_attention<64><<<dim3(items, c->heads), BLOCK, 0, s>>>(g->big, g->ctx, md, H, qscale);
        CK_LAUNCH();
        CKR(gemm(g, &p->o, g->ctx, w->wo, w->bo, g->x, g->big));
        k_layernorm<<<(rows + LN_ROWS - 1) / LN_ROWS, LN_ROWS * 32, 0, s>>>(
            g->big, w->ln1_g, w->ln1_b, c->ln_eps, H, rows, g->x);
        CK_LAUNCH();
        CKR(gemm(g, &p->up, g->x, w->wup, NULL, NULL, g->big));
        k_bias_gelu<<<rows, gelu_threads, 0, s>>>(g->big, w->bup, F);
        CK_LAUNCH();
        CKR(gemm(g, &p->down, g->big, w->wdown, w->bdown, g->x, g->ctx));
        k_layernorm<<<(rows + LN_ROWS - 1) / LN_ROWS, LN_ROWS * 32, 0, s>>>(
            g->ctx, w->ln2_g, w->ln2_b, c->ln_eps, H, rows, g->x);
        CK_LAUNCH();
    }
    k_pool<<<seqs, BLOCK, smem, s>>>(g->x, md, H, c->pooling, c->normalize, (float *)g->big);
    CK_LAUNCH();
fail:
    return rc;
}

static int bucket_of(int T)
{
    int b = 0, rows = 16;
    while (rows < T) {
        rows *= 2;
        b++;
    }
    return b;
}

/* The graph of bucket b (captured on first use). */
static int get_graph(struct nr_gpu_bert *g, int b, cudaGraphExec_t *out)
{
    int rows = 16 << b, rc = NR_OK, capturing = 0;
    cudaGraph_t graph = NULL;
    if (g->graph[b]) {
        *out = g->graph[b];
        return NR_OK;
    }
    /* One plain run first, with an empty batch (header zeroed: no attention
     * or pooling block does anything): the plans are made and every kernel,
     * ours and cuBLASLt's, is loaded before capture, where neither may be. */
    CK(cudaMemsetAsync(g->meta_small, 0, 16, g->stream));
    CKR(enqueue_forward(g, meta_ptrs(g->meta_small, &g->lay_small), rows, rows + rows / QCHUNK + 1,
                        rows, g->cfg.max_seq));
    CK(cudaStreamSynchronize(g->stream));
    CK(cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal));
    capturing = 1;
    CKR(enqueue_forward(g, meta_ptrs(g->meta_small, &g->lay_small), rows, rows + rows / QCHUNK + 1,
                        rows, g->cfg.max_seq));
    capturing = 0;
    CK(cudaStreamEndCapture(g->stream, &graph));
    CK(cudaGraphInstantiate(&g->graph[b], graph, 0));
    cudaGraphDestroy(graph);
    g->n_graphs++;
    *out = g->graph[b];
    return NR_OK;
fail:
    if (capturing) {
        cudaStreamEndCapture(g->stream, &graph);
        cudaGetLastError();
    }
    if (graph)
        cudaGraphDestroy(graph);
    return rc;
}

/* ------------------------------------------------------------ open/close */

/* Read tensor (layer, id) as fp32 into tmp, upload as fp16 (half16 != 0)
 * or fp32 to dst. */
static int upload(struct nr_gpu_bert *g, int layer, int id, float *tmp, uint16_t *tmp16, void *dst,
                  int half16)
{
    int rows, cols, rc = NR_OK;
    size_t n;
    nr_bert_tensor_shape(g->meta, id, &rows, &cols);
    n = (size_t)rows * (size_t)(cols ? cols : 1);
    CKR(nr_bert_read_tensor(g->meta, layer, id, tmp));
    if (half16) {
        for (size_t i = 0; i < n; i++)
            tmp16[i] = nr_fp32_to_fp16(tmp[i]);
        CK(cudaMemcpy(dst, tmp16, n * 2, cudaMemcpyHostToDevice));
    } else {
        CK(cudaMemcpy(dst, tmp, n * 4, cudaMemcpyHostToDevice));
    }
fail:
    return rc;
}

extern "C" int nr_gpu_bert_open(struct nr_bert *meta, int device, int max_batch_tokens,
                                struct nr_gpu_bert **out)
{
    struct nr_gpu_bert *g;
    const struct nr_bert_config *c = nr_bert_config(meta);
    int H = c->hidden, F = c->ffn, hd = c->hidden / c->heads, rc = NR_OK, n = 0;
    size_t wide, off, need, fr = 0, tot = 0, maxel;
    float *tmp = NULL;
    uint16_t *tmp16 = NULL;
    cudaDeviceProp prop;

    *out = NULL;
    if (hd != 32 && hd != 64)
        return nr_err_set(NR_EUNSUPPORTED, "gpu: head_dim %d (the kernel handles 32 and 64)", hd);
    if (H % 8 || F % 8 || H > 2 * 32 * LN_MAXH2)
        return nr_err_set(NR_EUNSUPPORTED,
                          "gpu: hidden %d / ffn %d (multiples of 8, hidden <= %d handled)", H, F,
                          2 * 32 * LN_MAXH2);
    if (max_batch_tokens < c->max_seq || max_batch_tokens > (1 << 20))
        return nr_err_set(NR_EINVAL, "gpu: max_batch_tokens %d outside [%d, 1048576]",
                          max_batch_tokens, c->max_seq);
    {
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess || n <= device || device < 0) {
            cudaGetLastError();
            return nr_err_set(NR_EUNSUPPORTED, "gpu: no CUDA device %d (%s)", device,
                              e != cudaSuccess ? cudaGetErrorString(e) : "not present");
        }
    }
    g = (struct nr_gpu_bert *)nr_calloc(1, sizeof *g);
    if (!g)
        return nr_err_set(NR_ENOMEM, "out of memory opening the GPU encoder");
    g->meta = meta;
    g->cfg = *c;
    g->device = device;
    g->max_tokens = max_batch_tokens;
    g->use_graphs = 1;
    CK(cudaSetDevice(device));
    CK(cudaGetDeviceProperties(&prop, device));
    snprintf(g->name, sizeof g->name, "%s", prop.name);
    g->integrated = prop.integrated;
    CK(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
    {
        /* tensor-core attention where it applies; NANORAG_GPU_ATTN=simple
         * forces the plain kernel (for comparisons) */
        const char *env = getenv("NANORAG_GPU_ATTN");
        int lp = (c->max_seq + 15) & ~15;
        g->tc_smem = tc_smem_bytes(lp); /* the most any batch needs */
        g->attn_tc = hd == 32 && c->max_seq <= TC_MAX_L && !(env && !strcmp(env, "simple"));
        env = getenv("NANORAG_GPU_GEMM"); /* "reference": k_gemm_ref (sanitizer runs) */
        g->ref_gemm = env && !strcmp(env, "reference");
        if (g->attn_tc)
            CK(cudaFuncSetAttribute(k_attention_tc, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)g->tc_smem));
    }
    CK(cudaEventCreate(&g->ev0));
    CK(cudaEventCreate(&g->ev1));
    CKR(nr_gpu_blas_open(BLAS_WS, &g->blas));

    /* Weights: sizes of every slice, then one allocation. */
    {
        size_t L = (size_t)c->layers, h2 = 2, f4 = 4;
        size_t per = align_up(3 * (size_t)H * H * h2) + align_up(3 * (size_t)H * h2) +
                     align_up((size_t)H * H * h2) + align_up((size_t)H * h2) +
                     4 * align_up((size_t)H * f4) + align_up((size_t)F * H * h2) +
                     align_up((size_t)F * f4) + align_up((size_t)H * F * h2) +
                     align_up((size_t)H * h2);
        g->wbytes = align_up((size_t)c->vocab * H * h2) + align_up((size_t)c->max_pos * H * h2) +
                    3 * align_up((size_t)H * f4) + L * per;
    }
    wide = (size_t)(3 * H > F ? 3 * H : F);
    meta_layout_init(&g->lay_big, max_batch_tokens);
    meta_layout_init(&g->lay_small, NR_GPU_GRAPH_TOKENS);
    g->abytes = 2 * align_up((size_t)max_batch_tokens * H * 2) +
                align_up((size_t)max_batch_tokens * wide * 2) + BLAS_WS + g->lay_big.bytes +
                g->lay_small.bytes;
    need = g->wbytes + g->abytes;
    {
        /* NANORAG_GPU_MAX_MIB: the most device memory the encoder may take
         * (a GPU shared with other work, or the Jetson's shared DRAM) */
        const char *cap = getenv("NANORAG_GPU_MAX_MIB");
        int mib = 0;
        if (cap && *cap && (rc = nr_parse_int(cap, 1, 1 << 30, "NANORAG_GPU_MAX_MIB", &mib)))
            goto fail;
        if (mib && need > ((size_t)mib << 20)) {
            rc = nr_err_set(NR_ENOMEM,
                            "gpu: the encoder needs %zu MiB for %d tokens, NANORAG_GPU_MAX_MIB "
                            "allows %d",
                            (need + (1u << 20) - 1) >> 20, max_batch_tokens, mib);
            goto fail;
        }
    }
    CK(cudaMemGetInfo(&fr, &tot));
    if (fr < need + MEM_MARGIN) {
        rc = nr_err_set(NR_ENOMEM,
                        "gpu: %s has %zu MiB free, the encoder needs %zu MiB (+%zu MiB margin)",
                        g->name, fr >> 20, need >> 20, MEM_MARGIN >> 20);
        goto fail;
    }
    CK(cudaMalloc(&g->wbuf, g->wbytes));
    CK(cudaMalloc(&g->abuf, g->abytes));
    CK(cudaMemset(g->abuf, 0, g->abytes)); /* no batch ever reads bytes nothing wrote */
    CK(cudaMallocHost((void **)&g->staging, g->lay_big.bytes));
    {
        unsigned char *a = (unsigned char *)g->abuf;
        off = 0;
        g->x = (__half *)(a + off);
        off += align_up((size_t)max_batch_tokens * H * 2);
        g->ctx = (__half *)(a + off);
        off += align_up((size_t)max_batch_tokens * H * 2);
        g->big = (__half *)(a + off);
        off += align_up((size_t)max_batch_tokens * wide * 2);
        g->blas_ws = a + off;
        off += BLAS_WS;
        g->meta_big = a + off;
        off += g->lay_big.bytes;
        g->meta_small = a + off;
    }

    /* Carve and fill the weight slices. The staging buffers hold the
     * largest tensor (the token table) once, fp32 and fp16. */
    maxel = (size_t)c->vocab * H;
    if ((size_t)F * H > maxel)
        maxel = (size_t)F * H;
    if ((size_t)c->max_pos * H > maxel)
        maxel = (size_t)c->max_pos * H;
    tmp = (float *)nr_malloc(maxel * 4);
    tmp16 = (uint16_t *)nr_malloc(maxel * 2);
    g->L = (struct glayer *)nr_calloc((size_t)c->layers, sizeof *g->L);
    if (!tmp || !tmp16 || !g->L) {
        rc = nr_err_set(NR_ENOMEM, "out of memory staging weights for the GPU");
        goto fail;
    }
    {
        unsigned char *w = (unsigned char *)g->wbuf;
        off = 0;
#define SLICE(ptr, type, count)                                                                    \
    ((ptr) = (type *)(w + off), off += align_up((size_t)(count) * sizeof(type)))
        SLICE(g->word, __half, (size_t)c->vocab * H);
        SLICE(g->posw, __half, (size_t)c->max_pos * H);
        SLICE(g->type0, float, H);
        SLICE(g->eln_g, float, H);
        SLICE(g->eln_b, float, H);
        CKR(upload(g, 0, NR_BT_WORD, tmp, tmp16, g->word, 1));
        CKR(upload(g, 0, NR_BT_POS, tmp, tmp16, g->posw, 1));
        /* only row 0 of the token-type table is used (single-segment input) */
        CKR(nr_bert_read_tensor(g->meta, 0, NR_BT_TYPE, tmp));
        CK(cudaMemcpy(g->type0, tmp, (size_t)H * 4, cudaMemcpyHostToDevice));
        CKR(upload(g, 0, NR_BT_EMB_LN_G, tmp, tmp16, g->eln_g, 0));
        CKR(upload(g, 0, NR_BT_EMB_LN_B, tmp, tmp16, g->eln_b, 0));
        for (int l = 0; l < c->layers; l++) {
            struct glayer *L = &g->L[l];
            size_t HH = (size_t)H * H;
            SLICE(L->wqkv, __half, 3 * HH);
            SLICE(L->bqkv, __half, 3 * H);
            SLICE(L->wo, __half, HH);
            SLICE(L->bo, __half, H);
            SLICE(L->ln1_g, float, H);
            SLICE(L->ln1_b, float, H);
            SLICE(L->wup, __half, (size_t)F * H);
            SLICE(L->bup, float, F);
            SLICE(L->wdown, __half, (size_t)H * F);
            SLICE(L->bdown, __half, H);
            SLICE(L->ln2_g, float, H);
            SLICE(L->ln2_b, float, H);
            /* Q, K, V stacked: one [3H][H] weight, one GEMM */
            CKR(upload(g, l, NR_BT_Q, tmp, tmp16, L->wqkv, 1));
            CKR(upload(g, l, NR_BT_K, tmp, tmp16, L->wqkv + HH, 1));
            CKR(upload(g, l, NR_BT_V, tmp, tmp16, L->wqkv + 2 * HH, 1));
            CKR(upload(g, l, NR_BT_Q_B, tmp, tmp16, L->bqkv, 1));
            CKR(upload(g, l, NR_BT_K_B, tmp, tmp16, L->bqkv + H, 1));
            CKR(upload(g, l, NR_BT_V_B, tmp, tmp16, L->bqkv + 2 * H, 1));
            CKR(upload(g, l, NR_BT_O, tmp, tmp16, L->wo, 1));
            CKR(upload(g, l, NR_BT_O_B, tmp, tmp16, L->bo, 1));
            CKR(upload(g, l, NR_BT_LN1_G, tmp, tmp16, L->ln1_g, 0));
            CKR(upload(g, l, NR_BT_LN1_B, tmp, tmp16, L->ln1_b, 0));
            CKR(upload(g, l, NR_BT_UP, tmp, tmp16, L->wup, 1));
            CKR(upload(g, l, NR_BT_UP_B, tmp, tmp16, L->bup, 0));
            CKR(upload(g, l, NR_BT_DOWN, tmp, tmp16, L->wdown, 1));
            CKR(upload(g, l, NR_BT_DOWN_B, tmp, tmp16, L->bdown, 1));
            CKR(upload(g, l, NR_BT_LN2_G, tmp, tmp16, L->ln2_g, 0));
            CKR(upload(g, l, NR_BT_LN2_B, tmp, tmp16, L->ln2_b, 0));
        }
#undef SLICE
        if (off > g->wbytes) {
            rc = nr_err_set(NR_EINTERNAL, "gpu: weight slices overran their allocation");
            goto fail;
        }
    }
    nr_free(tmp);
    nr_free(tmp16);
    tmp = NULL;
    tmp16 = NULL;
    /* A first graph now, so the first query does not pay for its capture. */
    {
        cudaGraphExec_t ge;
        CKR(get_graph(g, 0, &ge));
    }
    CK(cudaStreamSynchronize(g->stream));
    nr_log_info("gpu: %s, %s weights %zu MiB, workspace %zu MiB for %d tokens", g->name, "fp16",
                g->wbytes >> 20, g->abytes >> 20, max_batch_tokens);
    *out = g;
    return NR_OK;
fail:
    nr_free(tmp);
    nr_free(tmp16);
    nr_gpu_bert_close(g);
    return rc;
}

extern "C" void nr_gpu_bert_close(struct nr_gpu_bert *g)
{
    if (!g)
        return;
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    for (int b = 0; b < N_BUCKETS; b++)
        if (g->graph[b])
            cudaGraphExecDestroy(g->graph[b]);
    for (int i = 0; i < N_PLANS; i++) {
        if (!g->plan[i].T)
            continue;
        nr_gpu_gemm_free(g->blas, &g->plan[i].qkv);
        nr_gpu_gemm_free(g->blas, &g->plan[i].o);
        nr_gpu_gemm_free(g->blas, &g->plan[i].up);
        nr_gpu_gemm_free(g->blas, &g->plan[i].down);
    }
    nr_gpu_blas_close(g->blas);
    if (g->staging)
        cudaFreeHost(g->staging);
    if (g->abuf)
        cudaFree(g->abuf);
    if (g->wbuf)
        cudaFree(g->wbuf);
    if (g->ev0)
        cudaEventDestroy(g->ev0);
    if (g->ev1)
        cudaEventDestroy(g->ev1);
    if (g->stream)
        cudaStreamDestroy(g->stream);
    cudaGetLastError();
    nr_free(g->L);
    nr_free(g);
}

extern "C" void nr_gpu_bert_info(const struct nr_gpu_bert *g, struct nr_gpu_bert_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->device, sizeof info->device, "%s", g->name);
    info->integrated = g->integrated;
    info->precision = "fp16";
    info->weight_bytes = g->wbytes;
    info->workspace_bytes = g->abytes;
    info->pinned_bytes = g->lay_big.bytes;
    info->graphs = g->n_graphs;
    info->tokens = g->tokens;
    info->gpu_seconds = g->gpu_s;
}

extern "C" void nr_gpu_bert_set_graphs(struct nr_gpu_bert *g, int on)
{
    g->use_graphs = on != 0;
}

/* Forget the captured graphs (after a kernel choice changed). */
static int drop_graphs(struct nr_gpu_bert *g)
{
    int rc = NR_OK;
    CK(cudaStreamSynchronize(g->stream));
    for (int b = 0; b < N_BUCKETS; b++)
        if (g->graph[b]) {
            cudaGraphExecDestroy(g->graph[b]);
            g->graph[b] = NULL;
        }
fail:
    return rc;
}

extern "C" int nr_gpu_bert_set_attention(struct nr_gpu_bert *g, int tensor_cores)
{
    const struct nr_bert_config *c = &g->cfg;
    int rc = NR_OK;
    if (tensor_cores && (c->hidden / c->heads != 32 || c->max_seq > TC_MAX_L))
        return nr_err_set(NR_EUNSUPPORTED,
                          "gpu: tensor-core attention needs head_dim 32 and max_seq <= %d",
                          TC_MAX_L);
    if (tensor_cores)
        CK(cudaFuncSetAttribute(k_attention_tc, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)g->tc_smem));
    CKR(drop_graphs(g)); /* they hold the old kernel */
    g->attn_tc = tensor_cores != 0;
fail:
    return rc;
}

extern "C" int nr_gpu_bert_set_reference_gemm(struct nr_gpu_bert *g, int on)
{
    int rc = drop_graphs(g);
    if (rc == NR_OK)
        g->ref_gemm = on != 0;
    return rc;
}

/* ------------------------------------------------------------ batches */

extern "C" int nr_gpu_bert_submit(struct nr_gpu_bert *g, const int32_t *ids, const int *lens,
                                  int n_seq)
{
    const struct nr_bert_config *c = &g->cfg;
    const struct meta_layout *lay;
    int T = 0, n_items = 0, small, rc = NR_OK, maxlen = 1;
    int *hdr, *st, *ln, *id, *ps;
    int4 *it;

    if (g->pending)
        return nr_err_set(NR_EINVAL, "gpu: a batch is already pending");
    if (n_seq < 1)
        return nr_err_set(NR_EINVAL, "no sequences to encode");
    for (int s = 0; s < n_seq; s++) {
        if (lens[s] < 1 || lens[s] > c->max_seq)
            return nr_err_set(NR_EINVAL, "sequence %d has %d tokens (allowed 1..%d)", s, lens[s],
                              c->max_seq);
        if (T > g->max_tokens - lens[s])
            return nr_err_set(NR_EINVAL, "batch exceeds %d tokens", g->max_tokens);
        T += lens[s];
        if (lens[s] > maxlen)
            maxlen = lens[s];
    }
    for (int r = 0; r < T; r++)
        if (ids[r] < 0 || ids[r] >= c->vocab)
            return nr_err_set(NR_EINVAL, "token id %d outside the vocabulary", (int)ids[r]);
    small = g->use_graphs && T <= NR_GPU_GRAPH_TOKENS;
    lay = small ? &g->lay_small : &g->lay_big;
    CK(cudaSetDevice(g->device));

    /* Fill the staging block with this layout's offsets. */
    hdr = (int *)g->staging;
    st = (int *)(g->staging + lay->o_start);
    ln = (int *)(g->staging + lay->o_len);
    it = (int4 *)(g->staging + lay->o_item);
    id = (int *)(g->staging + lay->o_ids);
    ps = (int *)(g->staging + lay->o_pos);
    for (int s = 0, off = 0; s < n_seq; off += lens[s], s++) {
        st[s] = off;
        ln[s] = lens[s];
        for (int q0 = 0; q0 < lens[s]; q0 += QCHUNK)
            it[n_items++] = make_int4(off, lens[s], q0, 0);
        for (int p = 0; p < lens[s]; p++) {
            id[off + p] = ids[off + p];
            ps[off + p] = p;
        }
    }
    hdr[0] = n_seq;
    hdr[1] = T;
    hdr[2] = n_items;
    hdr[3] = 0;

    if (small) {
        cudaGraphExec_t ge;
        int b = bucket_of(T);
        CKR(get_graph(g, b, &ge)); /* before the copy: capture must not see it */
        CK(cudaEventRecord(g->ev0, g->stream));
        CK(cudaMemcpyAsync(g->meta_small, g->staging, lay->o_pos + (size_t)T * 4,
                           cudaMemcpyHostToDevice, g->stream));
        CK(cudaGraphLaunch(ge, g->stream));
    } else {
        CK(cudaEventRecord(g->ev0, g->stream));
        CK(cudaMemcpyAsync(g->meta_big, g->staging, lay->o_pos + (size_t)T * 4,
                           cudaMemcpyHostToDevice, g->stream));
        CKR(enqueue_forward(g, meta_ptrs(g->meta_big, lay), T, n_items, n_seq, maxlen));
    }
    CK(cudaEventRecord(g->ev1, g->stream));
    g->pending = 1;
    g->pending_nseq = n_seq;
    g->tokens += T;
    return NR_OK;
fail:
    cudaStreamSynchronize(g->stream);
    cudaGetLastError();
    return rc;
}

extern "C" int nr_gpu_bert_wait(struct nr_gpu_bert *g, float *out)
{
    int rc = NR_OK;
    float ms = 0.0f;
    if (!g->pending)
        return nr_err_set(NR_EINVAL, "gpu: no batch pending");
    g->pending = 0;
    CK(cudaMemcpyAsync(out, g->big, (size_t)g->pending_nseq * g->cfg.hidden * sizeof(float),
                       cudaMemcpyDeviceToHost, g->stream));
    CK(cudaStreamSynchronize(g->stream));
    CK(cudaEventElapsedTime(&ms, g->ev0, g->ev1));
    g->gpu_s += ms * 1e-3;
    return NR_OK;
fail:
    cudaGetLastError();
    return rc;
}

extern "C" void nr_gpu_bert_cancel(struct nr_gpu_bert *g)
{
    if (g->pending) {
        cudaStreamSynchronize(g->stream);
        cudaGetLastError();
        g->pending = 0;
    }
}
