/*
 * kern_internal: private to src/kern (and to tests/test_kern.c, which is a
 * white-box test). Declares the variant tables and the contract between the
 * shared blocking drivers in kern.c and each SIMD variant's micro-kernel.
 *
 * A SIMD variant supplies one register-blocked "tile" routine; kern.c owns
 * every loop above it (k blocking, row blocking, the walk over column panels,
 * threading, the fused attention). So the blocking scheme is written once and
 * the per-arch files hold only what differs: the micro-kernel, the epilogue
 * and the vector math.
 *
 * Packed weight layout shared by all tiled variants ("panels of nr"):
 *
 *     data[p][t][c] = W[p*nr + c][t]      p < ceil(n/nr), t < k, c < nr
 *
 * i.e. for each group of nr output features, the k input features in order,
 * each with its nr weights contiguous (one or two vector loads). Columns past
 * n are zero. data is 64-byte aligned; each panel is k*nr floats.
 */
#ifndef NR_KERN_INTERNAL_H
#define NR_KERN_INTERNAL_H

#include "nr_kern.h"

/* Flags of one tile call. */
enum {
    NR_TILE_LOADC = 1, /* start from C's contents instead of 0 (partial sums, residual) */
    NR_TILE_LAST = 2,  /* last k block: add bias, apply the activation, store */
    NR_TILE_ACC = 4,   /* with LAST: C = C_old + act(...) (C_old re-read after the activation) */
    NR_TILE_GELU = 8,  /* with LAST: apply GELU */
};

struct nr_kern_tile {
    int mr;      /* rows per register block (rows argument is 1..mr) */
    int nr;      /* columns per panel (== ops->nblock); cols argument is 1..nr */
    int kc;      /* k block (a kc x nr panel slice is read by every tile of a row block) */
    int a_bytes; /* L2 budget for the mc x k block of A that every panel reuses */
    /*
     * C[r][c] for r < rows, c < cols:
     *   acc = (flags & LOADC ? C[r][c] : 0) + sum_{t<kc} a[r*lda + t] * w[t*ldw + c]
     *   without LAST: C[r][c] = acc
     *   with LAST:    v = act(acc + bias[c]) (bias may be NULL);
     *                 C[r][c] = (flags & ACC ? C[r][c] : 0) + v
     * w must be readable for nr floats at every t (packed panels guarantee it;
     * attention passes V rows with head_dim % nr == 0). Columns >= cols and
     * rows >= rows of C are neither read nor written.
     */
    void (*run)(const float *a, size_t lda, const float *w, size_t ldw, int kc, float *c,
                size_t ldc, int rows, int cols, const float *bias, int flags);
};

/*
 * INT8 GEMM. The arithmetic every variant implements, exactly:
 *
 *   weights (nr_kern_pack_i8, once at load; per output channel j):
 *     sw[j] = max_t |W[j][t]| / 127,  Wq[j][t] = clamp(rint(W[j][t] * (127 / max)), ±127)
 *     (a zero row gets sw = 0, Wq = 0); colsum[j] = sum_t Wq[j][t].
 *   activations (ops->quant_i8, once per nr_kern_linear_i8 call; per row i):
 *     X[i][t] = smooth_inv ? A[i][t] * smooth_inv[t] : A[i][t]   (one float multiply)
 *     sa[i] = max_t |X[i][t]| / 127,  Aq[i][t] = clamp(rint(X[i][t] * (127 / max)), ±127)
 *   (with smoothing, pack_i8 quantized W[j][t]·s[t] and smooth_inv = 1/s)
 *     rint is round-to-nearest-even (the default mode; SIMD converts agree).
 *   accumulator: acc[i][j] = sum_t Aq[i][t] * Wq[j][t], exact in int32
 *     (|term| <= 127², so k up to 2^31 / 127² = 133 000 cannot overflow).
 *   epilogue:  v = fmaf((float)acc * sa[i], sw[j], bias ? bias[j] : 0)
 *              v = act(v);  C = accumulate ? C + v : v.
 * So outputs of two variants differ only by their GELU approximations
 * (kern_avx512.c vs libm erfc in kern_scalar.c); without GELU they are equal
 * bit for bit, which tests/test_kern.c checks with memcmp.
 *
 * Both quantizations are symmetric (zero maps to zero, no zero point) and
 * use ±127 only, never -128: then -Aq is representable and the products stay
 * within 127², which the VNNI trick below needs.
 *
 * vpdpbusd multiplies UNSIGNED bytes by SIGNED bytes (4 pairs per int32
 * lane, summed into the lane, no saturation). The avx512 quant_i8 stores
 * Aq + 128 (0..255) and the tile subtracts 128·colsum[j] once at the end:
 *     sum (Aq + 128)·Wq - 128·sum Wq = sum Aq·Wq,
 * exact in int32. (vpdpbusds would saturate; it is not used.) NEON's sdot
 * multiplies signed by signed, so a NEON variant would store Aq as is and
 * skip the correction; the scalar reference does the same.
 *
 * Packed weight layout, shared by every variant, panels of NR_I8 = 32
 * output channels, k in groups of 4 (one int32 lane of vpdpbusd / sdot):
 *
 *     data[p][g][c][u] = Wq[p*32 + c][4g + u]     g < kp/4, u < 4
 *
 * so one k group of a panel is 128 contiguous bytes: two zmm loads, 32
 * channels. Channels past n and k past k are zero; scale and colsum are
 * padded with zeros to a whole panel so tiles load them without masks.
 * The quantized A rows are padded to kp with the quantized zero.
 */
#define NR_I8 32

/* Flags of one int8 tile call (the tile always covers all of k). */
enum { NR_TILE8_GELU = 1, NR_TILE8_ACC = 2 };

struct nr_kern_tile_i8 {
    int mr;      /* rows per register block (rows argument is 1..mr) */
    int a_bytes; /* L2 budget for the block of quantized A rows every panel reuses */
    /*
     * For r < rows, c < cols: acc = sum_{g<kg} sum_u q[r*ldq + 4g+u] (decoded) *
     * w[g*128 + c*4 + u] (w: one panel), then the epilogue above with
     * sa[r], sw[c], colsum[c], bias[c] (bias may be NULL) into C[r*ldc + c].
     */
    void (*run)(const uint8_t *q, size_t ldq, const float *sa, const int8_t *w, int kg,
                const int32_t *colsum, const float *sw, const float *bias, float *c, size_t ldc,
                int rows, int cols, int flags);
};

/* The blocked int8 GEMM driver behind a tiled variant's ops->gemm_i8. */
void nr_kern_gemm_i8_tiled(const struct nr_kern_tile_i8 *tile, const uint8_t *q, int ldq,
                           const float *sa, const struct nr_pw8 *W, const float *bias, float *C,
                           int ldc, int m, int j0, int j1, int act, int accumulate);

extern const struct nr_kern_ops nr_kern_scalar_ops;
#if defined(__x86_64__)
extern const struct nr_kern_ops nr_kern_avx2_ops;
extern const struct nr_kern_ops nr_kern_avx512_ops;
#endif
#if defined(__aarch64__)
extern const struct nr_kern_ops nr_kern_neon_ops;
#endif

/* Pack W [n][k] into panels of nr (layout above). 0, NR_EINVAL or NR_ENOMEM. */
int nr_kern_pack_panels(struct nr_pw *pw, const float *w, int n, int k, int nr);

/* The blocked GEMM driver behind every tiled variant's ops->gemm. */
void nr_kern_gemm_tiled(const struct nr_kern_tile *tile, const float *A, int lda,
                        const struct nr_pw *W, const float *bias, float *C, int ldc, int m, int j0,
                        int j1, int act, int accumulate);

/*
 * erfc(x) * exp(x*x) ~= P(t), t = 1 / (1 + NR_ERFC_P * x), for x >= 0: a
 * degree-8 polynomial fitted (relative-error minimax by Lawson iterations on
 * x in [0, 7], then rounded to float) by us for this file; its own relative
 * error is 4.1e-8 with the float coefficients, far below the float rounding
 * of its evaluation. All SIMD variants share these constants so they agree.
 */
#define NR_ERFC_P  0.42f
#define NR_ERFC_C0 1.313871417e-05f
#define NR_ERFC_C1 2.365281135e-01f
#define NR_ERFC_C2 2.422324270e-01f
#define NR_ERFC_C3 1.822293997e-01f
#define NR_ERFC_C4 3.032464683e-01f
#define NR_ERFC_C5 -1.880507171e-01f
#define NR_ERFC_C6 4.976009130e-01f
#define NR_ERFC_C7 -3.510024846e-01f
#define NR_ERFC_C8 7.720277458e-02f

/*
 * erf(x) for |x| < 0.5: its Maclaurin series 2/√π sum (-1)^n x^(2n+1) /
 * (n! (2n+1)) to x^13 (truncation < 1e-9 relative). Used by ops->erf only, so
 * that erf keeps its relative precision near 0, where 1 - erfc(|x|) would
 * leave only an absolute ~3e-7; GELU needs 1 + erf and does not use it.
 */
#define NR_ERF_T0   1.1283791671e+00f
#define NR_ERF_T1   -3.7612638903e-01f
#define NR_ERF_T2   1.1283791671e-01f
#define NR_ERF_T3   -2.6866170645e-02f
#define NR_ERF_T4   5.2239776254e-03f
#define NR_ERF_T5   -8.5483270235e-04f
#define NR_ERF_T6   1.2055332982e-04f
#define NR_ERF_TMAX 0.5f

/*
 * exp(x): x = n*ln2 + r with n = round(x*log2(e)), |r| <= ln2/2, r found with
 * a two-constant Cody-Waite split (ln2 = LN2_HI + LN2_LO, LN2_HI exact in
 * in float with 9 trailing zero bits, so n*LN2_HI is exact for |n| < 512), then
 * exp(r) by its Taylor series to r^7 (truncation error |r|^8/8! < 5.2e-9
 * relative), then a multiplication by 2^n.
 */
#define NR_EXP_LOG2E  1.44269504088896341f
#define NR_EXP_LN2_HI 0.693145751953125f
#define NR_EXP_LN2_LO 1.42860682030941723212e-6f
#define NR_EXP_MIN    -87.33654475f /* exp(NR_EXP_MIN) = FLT_MIN; below: 0 */
#define NR_EXP_MAX    88.0f         /* above: clamped (callers pass x <= 0) */

#endif
