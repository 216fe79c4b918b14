/*
 * kern: variant selection, the blocked GEMM driver, threading of linear
 * layers, attention.
 *
 * SELECTION. Each variant (kern_scalar.c, kern_avx2.c, kern_avx512.c,
 * kern_neon.c) exports one const table. nr_kern_get() picks, once, the first
 * of avx512, avx2, neon, scalar that was built and that the CPU supports
 * (cpuid + xgetbv on x86: the OS must also save the registers; getauxval
 * hwcaps on aarch64). A variant is only "supported" if the CPU has every
 * extension its file is compiled with (CMakeLists.txt), so the compiler can
 * never emit an instruction the CPU lacks. NANORAG_KERN=name overrides the
 * choice (unknown or unsupported names log a warning and fall back).
 *
 * GEMM. C[m][n] (+)= act(A[m][k]·W[n][k]ᵀ + b), with W repacked at load time
 * into panels of nr columns: data[p][t][c] = W[p*nr + c][t] (kern_internal.h).
 * The driver below owns every loop; a variant only supplies its
 * register-blocked tile routine (mr rows x nr columns of accumulators held in
 * vector registers, one vector load of W per nr/lanes columns and one
 * broadcast of A per row and k step). Loop nest, outermost first:
 *
 *   i0 in steps of mc   an mc x k block of A (<= tile->a_bytes, half the L2:
 *                       on x86 mc = 256 rows for k = 384, 80 for k = 1536)
 *                       stays in L2 while every panel of the column range
 *                       passes over it;
 *   panels p            W's panel p streams in sequentially, once per mc block;
 *   k0 in steps of kc   (kc = 384 on x86): the panel slice, 48 KiB for
 *                       avx512, is read from L2 by the mc/mr tiles below;
 *   rows i in mr steps  the tile: C[i..i+mr)[p*nr..) over k0..k0+kc.
 *
 * The C slab of one panel (mc x nr) is only a few KiB, so it stays in L1/L2
 * across the k blocks. Between k blocks partial sums live in C (tile flag
 * LOADC), and only the last block applies bias, GELU and the residual add,
 * from registers. A residual GEMM (accumulate) simply starts its first block
 * from C's old contents; accumulate with GELU cannot keep partial sums in C
 * (it holds the residual, which must be added after the activation) and runs
 * with kc = k.
 *
 * Measured on Zen 4 (bench_kern; 1 core, m = 4096): this order beats the
 * BLIS-style "k blocks outermost" order by ~10% (that order streams all of C
 * once per k block), and kc from 128 (L1-resident slice) to 1536 changed
 * throughput by under 3%: Zen 4's L2 feeds these sequential panel reads fast
 * enough, so kc is chosen to keep BERT's k = 384 in one block. A is not
 * repacked: its rows are read in place, which keeps small-m calls (a
 * 12-token query) free of copies; the hardware prefetches the mr row streams
 * well, and the avx512 tile reaches 88-95% of the FMA peak at m = 4096 and
 * 91-98% at m = 12 without it.
 *
 * Every output element sees the same sequence of operations whatever the row
 * and column ranges, so results are bitwise identical for any thread split
 * (tests/test_kern.c checks 1 vs 2 vs 3 threads with memcmp).
 *
 * THREADING. nr_kern_linear cuts C into row blocks (at most 256 rows, so a
 * 4096-row batch gives 16 tasks) and, when rows alone give fewer than
 * 4 tasks per thread, also into column blocks (multiples of nblock), so a
 * 12-row query still keeps every thread busy. Tasks are handed out
 * dynamically by the pool.
 *
 * INT8. nr_kern_pack_i8 quantizes and packs weights (one layout for every
 * variant, kern_internal.h). nr_kern_linear_i8 first quantizes A's rows into
 * the caller's workspace, in parallel over row blocks of 32 (one pass over
 * A: every column panel and every column task then reads the same bytes, so
 * quantizing inside the tile would redo it n/32 times), then splits the GEMM
 * into tasks exactly as nr_kern_linear does. The workspace is the caller's
 * (the model sizes it once for its largest batch) so no call allocates, and a
 * pw8 stays read-only and shareable between threads and embedders. The int8
 * tile covers all of k in registers (int32 sums are exact, so there are no
 * partial sums to store and no k blocks); the driver keeps a block of
 * quantized rows (<= a_bytes: 256 rows of k = 1536 is 384 KiB) in L2 while
 * the panels of the column range pass over it. Results are bitwise identical
 * for any thread split, as for fp32.
 *
 * ATTENTION. The fused path, per head and per block of mr query rows:
 * S = Q·Kᵀ·scale with the same tile routine (K is transposed into panels on
 * the stack once per head, the scale folded in), softmax of each row in
 * place, then O = P·V with the tile reading V's rows directly as a panel
 * (ldw = ld_qkv; needs head_dim % nr == 0). It needs L <= 512 and keeps
 * <= 96 KiB on the stack; other shapes (and the scalar table) use the
 * reference loop over ops->dot / softmax / axpy with the caller's scratch.
 * At L = 128 it runs at ~63% of the FMA peak (avx512): the short k = 32 of
 * Q·Kᵀ, the softmax and the K transpose cost what the GEMMs do not; it is
 * ~5% of the encoder's FLOPs.
 */
#define _GNU_SOURCE
#include "kern_internal.h"

#include "nr_err.h"
#include "nr_log.h"
#include "nr_mem.h"
#include "nr_pool.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

/* ------------------------------------------------------------ CPU features */

struct cpu_feats {
    int sse2, avx, avx2, fma, f16c, ymm_os;                /* x86 */
    int avx512f, avx512dq, avx512bw, avx512vl, avx512vnni; /* x86 */
    int zmm_os;                                            /* x86 */
    int asimd, fphp, asimdhp, asimddp;                     /* aarch64 */
};

static struct cpu_feats feats;
static char feats_str[160];
static pthread_once_t feats_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static void feats_append(int have, const char *name)
{
    size_t len = strlen(feats_str);
    if (!have)
        return;
    snprintf(feats_str + len, sizeof feats_str - len, "%s%s", len ? " " : "", name);
}

static void feats_detect(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1;
        unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
        feats.sse2 = (d >> 26) & 1;
        feats.fma = (c >> 12) & 1;
        feats.avx = (c >> 28) & 1;
        feats.f16c = (c >> 29) & 1;
        feats.ymm_os = (xcr0 & 0x6) == 0x6;   /* XMM and YMM state */
        feats.zmm_os = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        feats.avx2 = (b >> 5) & 1;
        feats.avx512f = (b >> 16) & 1;
        feats.avx512dq = (b >> 17) & 1;
        feats.avx512bw = (b >> 30) & 1;
        feats.avx512vl = (b >> 31) & 1;
        feats.avx512vnni = (c >> 11) & 1;
    }
#elif defined(__aarch64__)
    unsigned long hw = getauxval(AT_HWCAP);
    feats.asimd = (hw >> 1) & 1;    /* HWCAP_ASIMD */
    feats.fphp = (hw >> 9) & 1;     /* HWCAP_FPHP */
    feats.asimdhp = (hw >> 10) & 1; /* HWCAP_ASIMDHP */
    feats.asimddp = (hw >> 20) & 1; /* HWCAP_ASIMDDP */
#endif
    feats_append(feats.sse2, "sse2");
    feats_append(feats.avx && feats.ymm_os, "avx");
    feats_append(feats.avx2 && feats.ymm_os, "avx2");
    feats_append(feats.fma && feats.ymm_os, "fma");
    feats_append(feats.f16c && feats.ymm_os, "f16c");
    feats_append(feats.avx512f && feats.zmm_os, "avx512f");
    feats_append(feats.avx512dq && feats.zmm_os, "avx512dq");
    feats_append(feats.avx512bw && feats.zmm_os, "avx512bw");
    feats_append(feats.avx512vl && feats.zmm_os, "avx512vl");
    feats_append(feats.avx512vnni && feats.zmm_os, "avx512vnni");
    feats_append(feats.asimd, "asimd");
    feats_append(feats.fphp, "fphp");
    feats_append(feats.asimdhp, "asimdhp");
    feats_append(feats.asimddp, "asimddp");
}

const char *nr_kern_cpu_features(void)
{
    pthread_once(&feats_once, feats_detect);
    return feats_str;
}

/* ------------------------------------------------------------ selection */

/* Preference order: the first supported one wins. */
static const struct nr_kern_ops *const variants[] = {
#if defined(__x86_64__)
    &nr_kern_avx512_ops,
    &nr_kern_avx2_ops,
#endif
#if defined(__aarch64__)
    &nr_kern_neon_ops,
#endif
    &nr_kern_scalar_ops,
};

/* Every extension the variant's file is compiled with (CMakeLists.txt). */
static int variant_supported(const struct nr_kern_ops *ops)
{
    const struct cpu_feats *f = &feats;
    int avx2;

    pthread_once(&feats_once, feats_detect);
    avx2 = f->avx && f->avx2 && f->fma && f->f16c && f->ymm_os;
    if (!strcmp(ops->name, "avx2"))
        return avx2;
    if (!strcmp(ops->name, "avx512"))
        return avx2 && f->zmm_os && f->avx512f && f->avx512dq && f->avx512bw && f->avx512vl &&
               f->avx512vnni;
    if (!strcmp(ops->name, "neon"))
        return f->asimd && f->fphp && f->asimdhp && f->asimddp;
    return 1;
}

const struct nr_kern_ops *nr_kern_by_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        if (!strcmp(variants[i]->name, name))
            return variant_supported(variants[i]) ? variants[i] : NULL;
    return NULL;
}

const struct nr_kern_ops *nr_kern_scalar(void)
{
    return &nr_kern_scalar_ops;
}

static const struct nr_kern_ops *selected;
static pthread_once_t select_once = PTHREAD_ONCE_INIT;

static void select_variant(void)
{
    const char *env = getenv("NANORAG_KERN");

    if (env && *env) {
        selected = nr_kern_by_name(env);
        if (selected)
            return;
        nr_log_warn("NANORAG_KERN=%s is not built or not supported by this CPU (%s); "
                    "choosing automatically",
                    env, nr_kern_cpu_features());
    }
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        if (variant_supported(variants[i])) {
            selected = variants[i];
            break;
        }
    }
    nr_log_debug("kern: using %s (cpu: %s)", selected->name, nr_kern_cpu_features());
}

const struct nr_kern_ops *nr_kern_get(void)
{
    pthread_once(&select_once, select_variant);
    return selected;
}

/* ------------------------------------------------------------ packing */

int nr_kern_pack(const struct nr_kern_ops *ops, struct nr_pw *pw, const float *w, int n, int k)
{
    int rc;

    if (!ops)
        ops = nr_kern_get();
    memset(pw, 0, sizeof *pw);
    rc = ops->pack(pw, w, n, k);
    if (rc < 0)
        return rc;
    pw->ops = ops;
    return NR_OK;
}

void nr_kern_pw_free(struct nr_pw *pw)
{
    if (!pw)
        return;
    nr_free(pw->data);
    memset(pw, 0, sizeof *pw);
}

int nr_kern_pack_panels(struct nr_pw *pw, const float *w, int n, int k, int nr)
{
    size_t np, count, bytes;

    if (n <= 0 || k <= 0)
        return nr_err_set(NR_EINVAL, "kern: cannot pack a %d x %d weight", n, k);
    np = ((size_t)n + (size_t)nr - 1) / (size_t)nr;
    if (nr_mul_size(np * (size_t)nr, (size_t)k, &count) ||
        nr_mul_size(count, sizeof(float), &bytes))
        return nr_err_set(NR_ELIMIT, "kern: weight %d x %d too large", n, k);
    pw->data = nr_aligned_alloc(64, bytes);
    if (!pw->data)
        return nr_err_set(NR_ENOMEM, "kern: out of memory packing a %d x %d weight", n, k);
    for (size_t p = 0; p < np; p++) {
        float *dst = pw->data + p * (size_t)k * (size_t)nr;
        for (int c = 0; c < nr; c++) {
            size_t j = p * (size_t)nr + (size_t)c;
            const float *src = w + j * (size_t)k;
            for (int t = 0; t < k; t++)
                dst[(size_t)t * nr + c] = j < (size_t)n ? src[t] : 0.0f;
        }
    }
    pw->n = n;
    pw->k = k;
    pw->bytes = bytes;
    return NR_OK;
}

/* ------------------------------------------------------------ int8 packing */

/* Symmetric int8 of x[0..k) with inv = 127 / max|x| (the rule of kern_internal.h). */
static int8_t quant1(float x, float inv)
{
    long v = lrintf(x * inv);
    return (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
}

int nr_kern_pack_i8(const struct nr_kern_ops *ops, struct nr_pw8 *pw, const float *w, int n, int k,
                    const float *smooth)
{
    size_t np, kp, dbytes, vbytes, bytes;
    unsigned char *base;

    if (!ops)
        ops = nr_kern_get();
    if (!ops->gemm_i8)
        ops = nr_kern_scalar();
    memset(pw, 0, sizeof *pw);
    if (n <= 0 || k <= 0 || k > (1 << 24))
        return nr_err_set(NR_EINVAL, "kern: cannot pack a %d x %d weight as int8", n, k);
    np = ((size_t)n + NR_I8 - 1) / NR_I8;
    kp = ((size_t)k + 3) / 4 * 4;
    if (nr_mul_size(np * NR_I8, kp, &dbytes) || dbytes > SIZE_MAX / 2)
        return nr_err_set(NR_ELIMIT, "kern: weight %d x %d too large", n, k);
    dbytes = (dbytes + 63) / 64 * 64;
    vbytes = np * NR_I8 * sizeof(float); /* scale; colsum is as large */
    bytes = dbytes + 2 * vbytes + (smooth ? (size_t)k * sizeof(float) : 0);
    base = nr_aligned_alloc(64, bytes);
    if (!base)
        return nr_err_set(NR_ENOMEM, "kern: out of memory packing a %d x %d weight", n, k);
    memset(base, 0, bytes);
    pw->data = (int8_t *)base;
    pw->scale = (float *)(base + dbytes);
    pw->colsum = (int32_t *)(base + dbytes + vbytes);
    if (smooth) {
        pw->smooth_inv = (float *)(base + dbytes + 2 * vbytes);
        for (int t = 0; t < k; t++)
            pw->smooth_inv[t] = 1.0f / smooth[t];
    }
    for (int j = 0; j < n; j++) {
        const float *src = w + (size_t)j * k;
        int8_t *dst = pw->data + (size_t)(j / NR_I8) * kp * NR_I8 + (size_t)(j % NR_I8) * 4;
        float amax = 0.0f, inv;
        int32_t sum = 0;
        for (int t = 0; t < k; t++) {
            float x = smooth ? src[t] * smooth[t] : src[t];
            amax = fabsf(x) > amax ? fabsf(x) : amax;
        }
        inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int t = 0; t < k; t++) {
            int8_t q = quant1(smooth ? src[t] * smooth[t] : src[t], inv);
            dst[(size_t)(t / 4) * 4 * NR_I8 + t % 4] = q;
            sum += q;
        }
        pw->scale[j] = amax / 127.0f;
        pw->colsum[j] = sum;
    }
    pw->n = n;
    pw->k = k;
    pw->kp = (int)kp;
    pw->bytes = bytes;
    pw->ops = ops;
    return NR_OK;
}

void nr_kern_pw8_free(struct nr_pw8 *pw)
{
    if (!pw)
        return;
    nr_free(pw->data);
    memset(pw, 0, sizeof *pw);
}

/* Row stride of the quantized A: kp rounded up to a cache line. */
static size_t i8_ldq(int k)
{
    return ((size_t)k + 63) / 64 * 64;
}

size_t nr_kern_i8_ws_bytes(int m, int k)
{
    if (m <= 0 || k <= 0)
        return 0;
    return (size_t)m * i8_ldq(k) + (size_t)m * sizeof(float);
}

/* ------------------------------------------------------------ GEMM driver */

#define MC_MAX_ROWS 256

void nr_kern_gemm_tiled(const struct nr_kern_tile *tl, const float *A, int lda,
                        const struct nr_pw *W, const float *bias, float *C, int ldc, int m, int j0,
                        int j1, int act, int accumulate)
{
    const int mr = tl->mr, nr = tl->nr, k = W->k;
    const size_t panel = (size_t)k * (size_t)nr;
    const int gelu = act == NR_ACT_GELU ? NR_TILE_GELU : 0;
    int kc = tl->kc, nkb, mc;

    if (m <= 0 || j0 >= j1)
        return;
    if (kc > k || (accumulate && gelu))
        kc = k;
    /* Even k blocks: k = 385 with kc = 384 runs as 2 x 193, not 384 + 1. */
    nkb = (k + kc - 1) / kc;
    kc = (k + nkb - 1) / nkb;
    mc = (int)((size_t)tl->a_bytes / ((size_t)k * sizeof(float)));
    mc = mc > MC_MAX_ROWS ? MC_MAX_ROWS : mc < mr ? mr : mc / mr * mr;

    for (int i0 = 0; i0 < m; i0 += mc) {
        const int ie = m - i0 < mc ? m : i0 + mc;
        for (int c0 = j0; c0 < j1; c0 += nr) {
            const int cols = j1 - c0 < nr ? j1 - c0 : nr;
            const float *b = bias ? bias + c0 : NULL;
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = kb * kc, kl = k - k0 < kc ? k - k0 : kc;
                const float *wp = W->data + (size_t)(c0 / nr) * panel + (size_t)k0 * nr;
                int flags;
                if (nkb == 1)
                    flags = NR_TILE_LAST | gelu | (accumulate ? NR_TILE_ACC : 0);
                else
                    flags = (kb > 0 || accumulate ? NR_TILE_LOADC : 0) |
                            (kb == nkb - 1 ? NR_TILE_LAST | gelu : 0);
                for (int i = i0; i < ie; i += mr)
                    tl->run(A + (size_t)i * lda + k0, (size_t)lda, wp, (size_t)nr, kl,
                            C + (size_t)i * ldc + c0, (size_t)ldc, ie - i < mr ? ie - i : mr, cols,
                            b, flags);
            }
        }
    }
}

#define MC_I8_MAX_ROWS 256

void nr_kern_gemm_i8_tiled(const struct nr_kern_tile_i8 *tl, const uint8_t *q, int ldq,
                           const float *sa, const struct nr_pw8 *W, const float *bias, float *C,
                           int ldc, int m, int j0, int j1, int act, int accumulate)
{
    const int mr = tl->mr, kg = W->kp / 4;
    const size_t panel = (size_t)W->kp * NR_I8;
    const int flags = (act == NR_ACT_GELU ? NR_TILE8_GELU : 0) | (accumulate ? NR_TILE8_ACC : 0);
    int mc;

    if (m <= 0 || j0 >= j1)
        return;
    mc = (int)((size_t)tl->a_bytes / (size_t)ldq);
    mc = mc > MC_I8_MAX_ROWS ? MC_I8_MAX_ROWS : mc < mr ? mr : mc / mr * mr;
    for (int i0 = 0; i0 < m; i0 += mc) {
        const int ie = m - i0 < mc ? m : i0 + mc;
        for (int c0 = j0; c0 < j1; c0 += NR_I8) {
            const int cols = j1 - c0 < NR_I8 ? j1 - c0 : NR_I8;
            const int8_t *wp = W->data + (size_t)(c0 / NR_I8) * panel;
            for (int i = i0; i < ie; i += mr)
                tl->run(q + (size_t)i * ldq, (size_t)ldq, sa + i, wp, kg, W->colsum + c0,
                        W->scale + c0, bias ? bias + c0 : NULL, C + (size_t)i * ldc + c0,
                        (size_t)ldc, ie - i < mr ? ie - i : mr, cols, flags);
        }
    }
}

/* ------------------------------------------------------------ threading */

#define TASK_MAX_ROWS    256
#define TASKS_PER_THREAD 4

struct linear_job {
    const float *A;
    int lda;
    const struct nr_pw *W;   /* fp32, or NULL for int8: */
    const struct nr_pw8 *W8; /* int8 weights */
    uint8_t *q;              /* [m][ldq] quantized A (int8 only) */
    float *sa;               /* [m] row scales (int8 only) */
    int ldq;
    const float *bias;
    float *C;
    int ldc;
    int m, act, accumulate;
    int rows_per_task; /* multiple of the tile's mr (or m) */
    int cols_per_task; /* multiple of nblock (or n) */
    int col_tasks;
};

static void linear_task(void *ctx, int task, int worker)
{
    const struct linear_job *jb = ctx;
    int i0 = task / jb->col_tasks * jb->rows_per_task;
    int j0 = task % jb->col_tasks * jb->cols_per_task;
    int rows = jb->m - i0 < jb->rows_per_task ? jb->m - i0 : jb->rows_per_task;
    int n = jb->W8 ? jb->W8->n : jb->W->n;
    int j1 = n - j0 < jb->cols_per_task ? n : j0 + jb->cols_per_task;

    (void)worker;
    if (jb->W8) {
        jb->W8->ops->gemm_i8(jb->q + (size_t)i0 * jb->ldq, jb->ldq, jb->sa + i0, jb->W8, jb->bias,
                             jb->C + (size_t)i0 * jb->ldc, jb->ldc, rows, j0, j1, jb->act,
                             jb->accumulate);
        return;
    }
    jb->W->ops->gemm(jb->A + (size_t)i0 * jb->lda, jb->lda, jb->W, jb->bias,
                     jb->C + (size_t)i0 * jb->ldc, jb->ldc, rows, j0, j1, jb->act, jb->accumulate);
}

/* Cut m x n into tasks (see THREADING); sets rows/cols_per_task and col_tasks,
 * returns the task count. */
static int linear_split(struct linear_job *jb, int m, int n, int mr, int nb, int nth)
{
    int target = TASKS_PER_THREAD * nth;
    int rblocks = (m + mr - 1) / mr, cblocks = (n + nb - 1) / nb;
    /* Rows first (each row task reads all of W once), at most 256 per task. */
    int rt = (m + TASK_MAX_ROWS - 1) / TASK_MAX_ROWS, ct = 1;

    if (rt < target) {
        /* Too few rows: split columns too (each column task reads its part of W only). */
        ct = (target + rt - 1) / rt;
        if (ct > cblocks)
            ct = cblocks;
        if (rt * ct < target) {
            rt = (target + ct - 1) / ct;
            if (rt > rblocks)
                rt = rblocks;
        }
    }
    jb->rows_per_task = (rblocks + rt - 1) / rt * mr;
    jb->cols_per_task = (cblocks + ct - 1) / ct * nb;
    rt = (m + jb->rows_per_task - 1) / jb->rows_per_task;
    jb->col_tasks = (n + jb->cols_per_task - 1) / jb->cols_per_task;
    return rt * jb->col_tasks;
}

void nr_kern_linear(struct nr_pool *pool, const float *A, int lda, const struct nr_pw *W,
                    const float *bias, float *C, int ldc, int m, int act, int accumulate)
{
    const struct nr_kern_ops *ops = W->ops;
    int nth = nr_pool_threads(pool), ntask;
    struct linear_job jb;

    if (m <= 0)
        return;
    if (nth <= 1) {
        ops->gemm(A, lda, W, bias, C, ldc, m, 0, W->n, act, accumulate);
        return;
    }
    memset(&jb, 0, sizeof jb);
    ntask = linear_split(&jb, m, W->n, ops->tile ? ops->tile->mr : 1, ops->nblock, nth);
    jb.A = A;
    jb.lda = lda;
    jb.W = W;
    jb.bias = bias;
    jb.C = C;
    jb.ldc = ldc;
    jb.m = m;
    jb.act = act;
    jb.accumulate = accumulate;
    nr_pool_run(pool, ntask, linear_task, &jb);
}

#define QUANT_ROWS 32

static void quant_task(void *ctx, int task, int worker)
{
    const struct linear_job *jb = ctx;
    int i0 = task * QUANT_ROWS, rows = jb->m - i0 < QUANT_ROWS ? jb->m - i0 : QUANT_ROWS;

    (void)worker;
    jb->W8->ops->quant_i8(jb->A + (size_t)i0 * jb->lda, jb->lda, rows, jb->W8->k,
                          jb->W8->smooth_inv, jb->q + (size_t)i0 * jb->ldq, jb->ldq, jb->sa + i0);
}

void nr_kern_linear_i8(struct nr_pool *pool, const float *A, int lda, const struct nr_pw8 *W,
                       const float *bias, float *C, int ldc, int m, int act, int accumulate,
                       void *ws, size_t ws_bytes)
{
    const struct nr_kern_ops *ops = W->ops;
    int nth = nr_pool_threads(pool), ntask;
    struct linear_job jb;

    if (m <= 0)
        return;
    assert(ws && ws_bytes >= nr_kern_i8_ws_bytes(m, W->k) && ((uintptr_t)ws & 63) == 0);
    (void)ws_bytes;
    memset(&jb, 0, sizeof jb);
    jb.A = A;
    jb.lda = lda;
    jb.W8 = W;
    jb.ldq = (int)i8_ldq(W->k);
    jb.q = ws;
    jb.sa = (float *)((uint8_t *)ws + (size_t)m * (size_t)jb.ldq);
    jb.bias = bias;
    jb.C = C;
    jb.ldc = ldc;
    jb.m = m;
    jb.act = act;
    jb.accumulate = accumulate;
    if (nth <= 1) {
        ops->quant_i8(A, lda, m, W->k, W->smooth_inv, jb.q, jb.ldq, jb.sa);
        ops->gemm_i8(jb.q, jb.ldq, jb.sa, W, bias, C, ldc, m, 0, W->n, act, accumulate);
        return;
    }
    nr_pool_run(pool, (m + QUANT_ROWS - 1) / QUANT_ROWS, quant_task, &jb);
    ntask = linear_split(&jb, m, W->n, ops->tile ? ops->tile->mr : 1, NR_I8, nth);
    nr_pool_run(pool, ntask, linear_task, &jb);
}

/* ------------------------------------------------------------ attention */

#define ATTN_MAX_L  512
#define ATTN_MAX_KP (512 * 32) /* floats of transposed K per head: 64 KiB */
#define ATTN_MAX_MR 16

static void attention_ref(const struct nr_kern_ops *ops, const float *qkv, int ld, int L,
                          int hidden, int d, int h0, int h1, float scale, float *out, int ld_out,
                          float *p)
{
    for (int h = h0; h < h1; h++) {
        for (int i = 0; i < L; i++) {
            const float *q = qkv + (size_t)i * ld + (size_t)h * d;
            float *o = out + (size_t)i * ld_out + (size_t)h * d;
            for (int j = 0; j < L; j++)
                p[j] = ops->dot(q, qkv + (size_t)j * ld + hidden + (size_t)h * d, d) * scale;
            ops->softmax(p, L);
            memset(o, 0, (size_t)d * sizeof *o);
            for (int j = 0; j < L; j++)
                ops->axpy(o, p[j], qkv + (size_t)j * ld + 2 * (size_t)hidden + (size_t)h * d, d);
        }
    }
}

/* 0 when done, -1 when the shape is not one this path handles. */
static int attention_tiled(const struct nr_kern_ops *ops, const float *qkv, int ld, int L,
                           int hidden, int d, int h0, int h1, float scale, float *out, int ld_out)
{
    const struct nr_kern_tile *tl = ops->tile;
    const int nr = tl->nr, mr = tl->mr;
    const int Lp = (L + nr - 1) / nr * nr;
    float kp[ATTN_MAX_KP] __attribute__((aligned(64)));
    float s[ATTN_MAX_MR * ATTN_MAX_L] __attribute__((aligned(64)));

    if (L > ATTN_MAX_L || d % nr != 0 || (size_t)Lp * d > ATTN_MAX_KP || mr > ATTN_MAX_MR ||
        Lp > ATTN_MAX_L)
        return -1;
    for (int h = h0; h < h1; h++) {
        const float *q = qkv + (size_t)h * d;
        const float *v = qkv + 2 * (size_t)hidden + (size_t)h * d;

        /* kp[p][t][c] = K[p*nr + c][t] * scale: K_h as packed panels. */
        for (int j = 0; j < Lp; j++) {
            float *dst = kp + (size_t)(j / nr) * d * nr + j % nr;
            if (j < L) {
                const float *src = qkv + (size_t)j * ld + hidden + (size_t)h * d;
                for (int t = 0; t < d; t++)
                    dst[(size_t)t * nr] = src[t] * scale;
            } else {
                for (int t = 0; t < d; t++)
                    dst[(size_t)t * nr] = 0.0f;
            }
        }
        for (int i0 = 0; i0 < L; i0 += mr) {
            const int rows = L - i0 < mr ? L - i0 : mr;
            for (int c0 = 0; c0 < L; c0 += nr)
                tl->run(q + (size_t)i0 * ld, (size_t)ld, kp + (size_t)c0 * d, (size_t)nr, d, s + c0,
                        (size_t)Lp, rows, L - c0 < nr ? L - c0 : nr, NULL, NR_TILE_LAST);
            for (int r = 0; r < rows; r++)
                ops->softmax(s + (size_t)r * Lp, L);
            for (int c0 = 0; c0 < d; c0 += nr)
                tl->run(s, (size_t)Lp, v + c0, (size_t)ld, L,
                        out + (size_t)i0 * ld_out + (size_t)h * d + c0, (size_t)ld_out, rows, nr,
                        NULL, NR_TILE_LAST);
        }
    }
    return 0;
}

void nr_kern_attention(const struct nr_kern_ops *ops, const float *qkv, int ld_qkv, int L,
                       int heads, int head_dim, int h0, int h1, float scale, float *out, int ld_out,
                       float *scratch)
{
    const int hidden = heads * head_dim;

    if (!ops)
        ops = nr_kern_get();
    if (L <= 0 || h0 >= h1 || head_dim <= 0)
        return;
    if (ops->tile &&
        attention_tiled(ops, qkv, ld_qkv, L, hidden, head_dim, h0, h1, scale, out, ld_out) == 0)
        return;
    attention_ref(ops, qkv, ld_qkv, L, hidden, head_dim, h0, h1, scale, out, ld_out, scratch);
}
