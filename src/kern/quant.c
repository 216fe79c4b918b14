/*
 * quant: GGUF weight blocks — layouts, dequantization, reference quantizers,
 * activation quantization, the scalar reference dot products, the threaded
 * matvec / matmul drivers and the choice of SIMD variant.
 *
 * BLOCK LAYOUTS (exactly ggml's; all multi-byte fields little-endian; "f16"
 * is IEEE binary16; blocks follow each other with no padding, so a row of k
 * elements is k / block * bytes bytes and blocks are NOT aligned):
 *
 *   F32   4 bytes/element.  F16  2 bytes (binary16).  BF16  2 bytes (the
 *         upper half of a binary32).
 *
 *   Q4_0  32 elements, 18 bytes:
 *         0..1   f16 d
 *         2..17  qs[16]: byte j holds element j in its low nibble and
 *                element j+16 in its high nibble
 *         x = d * (q - 8),  q in 0..15
 *   Q4_1  32 elements, 20 bytes:
 *         0..1 f16 d, 2..3 f16 m, 4..19 qs[16] as Q4_0
 *         x = d * q + m
 *   Q5_0  32 elements, 22 bytes:
 *         0..1 f16 d, 2..5 uint32 qh (bit j = bit 4 of element j's q),
 *         6..21 qs[16] low 4 bits as Q4_0
 *         x = d * (q - 16),  q in 0..31
 *   Q8_0  32 elements, 34 bytes:
 *         0..1 f16 d, 2..33 int8 q[32]
 *         x = d * q
 *   Q4_K  256 elements (8 sub-blocks of 32), 144 bytes:
 *         0..1    f16 d       (scale of the sub-block scales)
 *         2..3    f16 dmin    (scale of the sub-block mins)
 *         4..15   scales[12]: eight 6-bit scales sc[j] and mins m[j]:
 *                   j < 4:  sc = s[j] & 63,  m = s[j+4] & 63
 *                   j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4
 *                           m  = (s[j+4] >> 4) | (s[j]   >> 6) << 4
 *         16..143 qs[128]: 64-element chunk c (c = 0..3) uses bytes
 *                 32c..32c+31; sub-block 2c is their low nibbles, sub-block
 *                 2c+1 their high nibbles
 *         x = d*sc[j] * q - dmin*m[j],  q in 0..15
 *   Q5_K  256 elements, 176 bytes:
 *         0..1 f16 d, 2..3 f16 dmin, 4..15 scales[12] as Q4_K,
 *         16..47  qh[32]: bit j of qh[l] = bit 4 of element 32j + l
 *         48..175 qs[128] low 4 bits as Q4_K
 *         x = d*sc[j] * q - dmin*m[j],  q in 0..31
 *   Q6_K  256 elements (16 sub-blocks of 16), 210 bytes:
 *         0..127   ql[128], 128..191 qh[64], 192..207 int8 sc[16],
 *         208..209 f16 d.  Element e = 128h + 32s + l (h 0..1, s 0..3,
 *         l 0..31): low 4 bits from ql[64h + l + 32(s&1)] (low nibble for
 *         s < 2, high for s >= 2), high 2 bits (qh[32h + l] >> 2s) & 3
 *         x = d * sc[e/16] * (q - 32),  q in 0..63
 *   Q8_K  256 elements, 292 bytes (ggml's activation format, listed for
 *         reference: not a weight type here): f32 d, int8 q[256],
 *         int16 bsums[16]. The act layout used here is in quant_internal.h.
 *
 * Dequantization evaluates the formulas above in the same float operation
 * order as the gguf Python package ((d*sc)*q - (dmin*m), d*q + m), so the
 * two agree bit for bit; tests/test_quant.c checks that with memcmp.
 *
 * REFERENCE QUANTIZERS. F16/BF16: round to nearest even. Q4_0, Q4_1, Q5_0,
 * Q8_0: ggml's reference rules (Q4_0/Q5_0: d = v / -8 (-16) where v is the
 * first element of largest magnitude, q = min(15 (31), trunc(x/d + 8.5
 * (16.5))); Q4_1: d = (max-min)/15, q = trunc((x-min)/d + 0.5); Q8_0:
 * d = amax/127, q = roundf(x/d)), so their bytes equal gguf.quants.quantize's
 * (tested). The K types use our own one-pass rule, NOT ggml's iterative
 * scale search (the gguf package has no K quantizer to compare with):
 * per sub-block, scale = (max - min(0, min)) / 15 (31) and min = -min(0, min)
 * (Q4_K/Q5_K), or scale = v / -32 (Q6_K); the sub-block scales are then
 * quantized against d = max scale / 63 (127), and the elements re-quantized
 * with the scales as stored. Errors are a little above ggml's; they are for
 * tests, benchmark models and the writer, not for shipping models.
 *
 * ACT AND THE INTEGER DOTS. nr_quant_act quantizes x once per step (layouts
 * in quant_internal.h). Per weight block, with q the weight quants as
 * unsigned numbers above, a the act quants, dx the act scale:
 *   Q4_0  acc += d*dx * (sum q*a - 8*sum a)
 *   Q4_1  acc += d*dx * (sum q*a) + m*dx * (sum a)
 *   Q5_0  acc += d*dx * (sum q*a - 16*sum a)
 *   Q8_0  acc += d*dx * (sum q*a)              (q signed)
 *   Q4_K, Q5_K  acc += dx * (d * sum_j sc[j] * (sum_{32} q*a)
 *                            - dmin * sum_j m[j] * (sum_{32} a))
 *   Q6_K  acc += d*dx * sum_g sc[g] * (sum_{16} q*a - 32 * sum_{16} a)
 * Every bracket is an exact int32 (largest: Q6_K, 16 groups * 127 * 16 *
 * 32 * 127 < 2^28). "sum a" comes precomputed with the act (isum,
 * bsums), so SIMD variants multiply unsigned weight quants by signed
 * activations (the operand order of vpmaddubsw / vpdpbusd) and fix the
 * offset once per block. F32/F16/BF16 weights dot with the fp32 act in
 * fp32 (the scalar reference accumulates in double).
 *
 * Activations that hold NaN or Inf make their block's scale NaN, so the
 * result is NaN, as an fp32 dot would be, instead of an undefined integer
 * conversion. A block whose scale is below 1e-30 quantizes to zeros.
 *
 * VARIANTS. quant_avx2.c and quant_avx512.c compile quant_x86.h (AVX2:
 * vpmaddubsw + vpmaddwd; AVX-512: VNNI vpdpbusd / vpdpwssd, plus a 512-bit
 * Q6_K kernel of its own), quant_neon.c uses sdot. The choice is
 * nr_kern's rule, made once: NANORAG_KERN=scalar|avx2|avx512|neon, else the
 * first of avx512, avx2, neon, scalar that nr_kern_by_name says this CPU
 * runs (the files get the same per-arch flags as nr_kern's, so the same
 * test applies). A NULL entry in a variant's table falls back to scalar.
 * The act is also quantized by the variant (act_block), byte for byte as
 * the reference, so every variant sees the same integers.
 *
 * THREADING. matvec cuts the rows into chunks (a multiple of 16 rows, about
 * 6 chunks per thread) handed out dynamically by the pool; each output is
 * computed by one kernel call, so results do not depend on the split.
 * matmul cuts the rows into 16-row chunks and inside a chunk walks the
 * activations NR_QUANT_MR at a time over the chunk's rows: the chunk (16
 * rows, ~18 KiB of Q4_K at k = 2048) stays in L1/L2 while all m activations
 * pass, and each unpacked weight block serves NR_QUANT_MR activations.
 */
#include "nr_quant.h"

#include "quant_internal.h"

#include "nr_err.h"
#include "nr_half.h"
#include "nr_kern.h"
#include "nr_log.h"
#include "nr_pool.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ type traits */

struct qtrait {
    const char *name;
    int block; /* elements per block */
    int bytes; /* bytes per block */
    int act;   /* ACT_* */
};

enum { ACT_NONE = 0, ACT_F32, ACT_Q8, ACT_Q8K };

static const struct qtrait *trait(int type)
{
    static const struct qtrait f32 = {"f32", 1, 4, ACT_F32}, f16 = {"f16", 1, 2, ACT_F32},
                               bf16 = {"bf16", 1, 2, ACT_F32}, q4_0 = {"q4_0", 32, 18, ACT_Q8},
                               q4_1 = {"q4_1", 32, 20, ACT_Q8}, q5_0 = {"q5_0", 32, 22, ACT_Q8},
                               q8_0 = {"q8_0", 32, 34, ACT_Q8}, q4_k = {"q4_k", 256, 144, ACT_Q8K},
                               q5_k = {"q5_k", 256, 176, ACT_Q8K},
                               q6_k = {"q6_k", 256, 210, ACT_Q8K};
    switch (type) {
    case NR_GGML_F32:
        return &f32;
    case NR_GGML_F16:
        return &f16;
    case NR_GGML_BF16:
        return &bf16;
    case NR_GGML_Q4_0:
        return &q4_0;
    case NR_GGML_Q4_1:
        return &q4_1;
    case NR_GGML_Q5_0:
        return &q5_0;
    case NR_GGML_Q8_0:
        return &q8_0;
    case NR_GGML_Q4_K:
        return &q4_k;
    case NR_GGML_Q5_K:
        return &q5_k;
    case NR_GGML_Q6_K:
        return &q6_k;
    default:
        return NULL;
    }
}

int nr_quant_supported(int type)
{
    return trait(type) != NULL;
}

int nr_quant_block(int type)
{
    const struct qtrait *t = trait(type);
    return t ? t->block : 0;
}

size_t nr_quant_row_bytes(int type, int64_t k)
{
    const struct qtrait *t = trait(type);
    if (!t || k <= 0 || k % t->block)
        return 0;
    if ((uint64_t)(k / t->block) > SIZE_MAX / (size_t)t->bytes)
        return 0;
    return (size_t)(k / t->block) * (size_t)t->bytes;
}

const char *nr_quant_name(int type)
{
    const struct qtrait *t = trait(type);
    return t ? t->name : "?";
}

/* ------------------------------------------------------------ helpers */

static inline float h2f(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return nr_fp16_to_fp32(h);
}

static inline void f2h(uint8_t *p, float f)
{
    uint16_t h = nr_fp32_to_fp16(f);
    memcpy(p, &h, 2);
}

/* trunc(v) clamped to [lo, hi]; NaN gives lo (never an undefined cast). */
static inline int trunc_clamp(float v, int lo, int hi)
{
    if (!(v >= (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

/* roundf(v) (half away from zero) clamped to [lo, hi]; NaN gives 0. */
static inline int round_clamp(float v, int lo, int hi)
{
    float r = roundf(v);
    if (r != r)
        return 0;
    if (r < (float)lo)
        return lo;
    if (r > (float)hi)
        return hi;
    return (int)r;
}

/* The element of largest magnitude (the first one on ties), as ggml picks it. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, v = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            v = x[i];
        }
    }
    return v;
}

/* ------------------------------------------------------------ dequantization */

static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0xF) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = h2f(b), m = h2f(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 0xF) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    for (int j = 0; j < 16; j++) {
        int q0 = (b[6 + j] & 0xF) | (int)((qh >> j) & 1) << 4;
        int q1 = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)(q0 - 16);
        y[j + 16] = d * (float)(q1 - 16);
    }
}

static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(int8_t)b[2 + j];
}

static void deq_q4_k(const uint8_t *b, float *y)
{
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qs = b + 16;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        nr_q4k_scale_min(b + 4, j, &sc, &m);
        float ds = d * (float)sc, dm = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int sh = 4 * (j & 1);
        for (int l = 0; l < 32; l++)
            y[32 * j + l] = ds * (float)((q[l] >> sh) & 0xF) - dm;
    }
}

static void deq_q5_k(const uint8_t *b, float *y)
{
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        nr_q4k_scale_min(b + 4, j, &sc, &m);
        float ds = d * (float)sc, dm = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int sh = 4 * (j & 1);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> sh) & 0xF) | ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = ds * (float)v - dm;
        }
    }
}

/* The 6-bit quant of element e of a Q6_K block (layout above). */
static inline int q6k_get(const uint8_t *b, int e)
{
    int h = e / 128, s = (e % 128) / 32, l = e % 32;
    int lo = (b[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0xF;
    int hi = (b[128 + 32 * h + l] >> (2 * s)) & 3;
    return lo | hi << 4;
}

static void deq_q6_k(const uint8_t *b, float *y)
{
    float d = h2f(b + 208);
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int e = 0; e < 256; e++)
        y[e] = d * (float)sc[e / 16] * (float)(q6k_get(b, e) - 32);
}

void nr_quant_dequant_row(int type, const void *src, float *dst, int64_t k)
{
    const struct qtrait *t = trait(type);
    const uint8_t *s = src;

    if (!t || k <= 0 || k % t->block)
        return;
    switch (type) {
    case NR_GGML_F32:
        memcpy(dst, src, (size_t)k * 4);
        return;
    case NR_GGML_F16:
        for (int64_t i = 0; i < k; i++)
            dst[i] = h2f(s + 2 * i);
        return;
    case NR_GGML_BF16:
        for (int64_t i = 0; i < k; i++) {
            uint16_t v;
            memcpy(&v, s + 2 * i, 2);
            dst[i] = nr_bf16_to_fp32(v);
        }
        return;
    default:
        break;
    }
    for (int64_t b = 0; b < k / t->block; b++) {
        const uint8_t *blk = s + b * t->bytes;
        float *y = dst + b * t->block;
        switch (type) {
        case NR_GGML_Q4_0:
            deq_q4_0(blk, y);
            break;
        case NR_GGML_Q4_1:
            deq_q4_1(blk, y);
            break;
        case NR_GGML_Q5_0:
            deq_q5_0(blk, y);
            break;
        case NR_GGML_Q8_0:
            deq_q8_0(blk, y);
            break;
        case NR_GGML_Q4_K:
            deq_q4_k(blk, y);
            break;
        case NR_GGML_Q5_K:
            deq_q5_k(blk, y);
            break;
        case NR_GGML_Q6_K:
            deq_q6_k(blk, y);
            break;
        }
    }
}

/* ------------------------------------------------------------ reference quantizers */

static void quant_q4_0(const float *x, uint8_t *b)
{
    float d = signed_absmax(x, 32) / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    f2h(b, d);
    for (int j = 0; j < 16; j++) {
        int q0 = trunc_clamp(x[j] * id + 8.5f, 0, 15);
        int q1 = trunc_clamp(x[j + 16] * id + 8.5f, 0, 15);
        b[2 + j] = (uint8_t)(q0 | q1 << 4);
    }
}

static void quant_q4_1(const float *x, uint8_t *b)
{
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    float d = (mx - mn) / 15.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    f2h(b, d);
    f2h(b + 2, mn);
    for (int j = 0; j < 16; j++) {
        int q0 = trunc_clamp((x[j] - mn) * id + 0.5f, 0, 15);
        int q1 = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 0, 15);
        b[4 + j] = (uint8_t)(q0 | q1 << 4);
    }
}

static void quant_q5_0(const float *x, uint8_t *b)
{
    float d = signed_absmax(x, 32) / -16.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    f2h(b, d);
    for (int j = 0; j < 16; j++) {
        int q0 = trunc_clamp(x[j] * id + 16.5f, 0, 31);
        int q1 = trunc_clamp(x[j + 16] * id + 16.5f, 0, 31);
        b[6 + j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
        qh |= (uint32_t)(q0 >> 4) << j;
        qh |= (uint32_t)(q1 >> 4) << (j + 16);
    }
    memcpy(b + 2, &qh, 4);
}

static void quant_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    f2h(b, d);
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)(int8_t)round_clamp(x[j] * id, -127, 127);
}

/* Pack Q4_K/Q5_K's eight 6-bit scales and mins (inverse of nr_q4k_scale_min). */
static void pack_scale_min(uint8_t *s, const uint8_t *sc, const uint8_t *m)
{
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] |= sc[j];
            s[j + 4] |= m[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0xF) | (m[j] & 0xF) << 4);
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): one super-block; q[256] gets the quants. */
static void quant_kmin(const float *x, uint8_t *b, int nmax, uint8_t *q)
{
    float scale[8], mins[8], smax = 0.0f, mmax = 0.0f;
    uint8_t sc[8], m[8];

    for (int j = 0; j < 8; j++) {
        float mn = 0.0f, mx = x[32 * j];
        for (int l = 0; l < 32; l++) {
            float v = x[32 * j + l];
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        scale[j] = (mx - mn) / (float)nmax;
        mins[j] = -mn;
        smax = scale[j] > smax ? scale[j] : smax;
        mmax = mins[j] > mmax ? mins[j] : mmax;
    }
    float d = smax / 63.0f, dmin = mmax / 63.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f, idmin = dmin != 0.0f ? 1.0f / dmin : 0.0f;
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)round_clamp(scale[j] * id, 0, 63);
        m[j] = (uint8_t)round_clamp(mins[j] * idmin, 0, 63);
    }
    f2h(b, d);
    f2h(b + 2, dmin);
    pack_scale_min(b + 4, sc, m);
    /* Re-quantize the elements with the scales as the reader will see them. */
    d = h2f(b);
    dmin = h2f(b + 2);
    for (int j = 0; j < 8; j++) {
        float ds = d * (float)sc[j], dm = dmin * (float)m[j];
        float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
        for (int l = 0; l < 32; l++)
            q[32 * j + l] = (uint8_t)round_clamp((x[32 * j + l] + dm) * ids, 0, nmax);
    }
}

static void quant_q4_k(const float *x, uint8_t *b)
{
    uint8_t q[256];
    quant_kmin(x, b, 15, q);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b[16 + 32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
}

static void quant_q5_k(const float *x, uint8_t *b)
{
    uint8_t q[256];
    quant_kmin(x, b, 31, q);
    memset(b + 16, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b[48 + 32 * c + l] = (uint8_t)((q[64 * c + l] & 0xF) | (q[64 * c + 32 + l] & 0xF) << 4);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++)
            b[16 + l] |= (uint8_t)((q[32 * j + l] >> 4) << j);
}

static void quant_q6_k(const float *x, uint8_t *b)
{
    float scale[16], amax = 0.0f;
    int8_t sc[16];
    uint8_t q[256];

    for (int g = 0; g < 16; g++) {
        scale[g] = signed_absmax(x + 16 * g, 16) / -32.0f;
        amax = fabsf(scale[g]) > amax ? fabsf(scale[g]) : amax;
    }
    float d = amax / 127.0f; /* the largest scale gets sc = ±127 */
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int g = 0; g < 16; g++)
        sc[g] = (int8_t)round_clamp(scale[g] * id, -127, 127);
    f2h(b + 208, d);
    memcpy(b + 192, sc, 16);
    d = h2f(b + 208);
    for (int g = 0; g < 16; g++) {
        float ds = d * (float)sc[g];
        float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
        for (int l = 0; l < 16; l++)
            q[16 * g + l] = (uint8_t)(round_clamp(x[16 * g + l] * ids, -32, 31) + 32);
    }
    memset(b, 0, 192);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, s = (e % 128) / 32, l = e % 32;
        b[64 * h + l + 32 * (s & 1)] |= (uint8_t)((q[e] & 0xF) << (4 * (s >> 1)));
        b[128 + 32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * s));
    }
}

static uint16_t f2bf(float f)
{
    uint32_t u = nr_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet */
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

int nr_quant_quantize_row(int type, const float *src, void *dst, int64_t k)
{
    const struct qtrait *t = trait(type);
    uint8_t *d = dst;

    if (!t || k <= 0 || k % t->block)
        return nr_err_set(NR_EINVAL, "quant: cannot quantize %lld elements to %s", (long long)k,
                          nr_ggml_type_name(type));
    for (int64_t i = 0; i < k / t->block; i++) {
        const float *x = src + i * t->block;
        uint8_t *b = d + i * t->bytes;
        switch (type) {
        case NR_GGML_F32:
            memcpy(b, x, 4);
            break;
        case NR_GGML_F16:
            f2h(b, *x);
            break;
        case NR_GGML_BF16: {
            uint16_t v = f2bf(*x);
            memcpy(b, &v, 2);
            break;
        }
        case NR_GGML_Q4_0:
            quant_q4_0(x, b);
            break;
        case NR_GGML_Q4_1:
            quant_q4_1(x, b);
            break;
        case NR_GGML_Q5_0:
            quant_q5_0(x, b);
            break;
        case NR_GGML_Q8_0:
            quant_q8_0(x, b);
            break;
        case NR_GGML_Q4_K:
            quant_q4_k(x, b);
            break;
        case NR_GGML_Q5_K:
            quant_q5_k(x, b);
            break;
        case NR_GGML_Q6_K:
            quant_q6_k(x, b);
            break;
        }
    }
    return NR_OK;
}

/* ------------------------------------------------------------ activations */

size_t nr_quant_act_bytes(int wtype, int k)
{
    const struct qtrait *t = trait(wtype);
    if (!t || k <= 0 || k % t->block)
        return 0;
    switch (t->act) {
    case ACT_F32:
        return nr_qa_up64((size_t)k * 4);
    case ACT_Q8:
        return nr_qa_up64((size_t)k) + nr_qa_up64((size_t)(k / 32) * 8);
    case ACT_Q8K:
        return nr_qa_up64((size_t)k) + nr_qa_up64((size_t)(k / 256) * (4 + 32));
    }
    return 0;
}

/*
 * One act block (the reference; SIMD variants must give the same bytes):
 * d = amax / 127, q = roundf(x / d) (half away from zero) clamped to
 * ±127, and gsum[g] = the sum of q over elements 16g .. 16g+15. A block
 * holding NaN or Inf gets d = NaN and q = 0; a block with d < 1e-30 gets
 * q = 0.
 */
float nr_quant_act_block_ref(const float *x, int n, int8_t *q, int32_t *gsum)
{
    float amax = 0.0f;
    int finite = 1;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (!(a <= 3.4028235e38f))
            finite = 0;
        else if (a > amax)
            amax = a;
    }
    float d = amax / 127.0f;
    /* below 1e-30 the block is zeros (1/d could overflow and make 0 * inf) */
    float id = d >= 1e-30f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++)
        q[i] = finite ? (int8_t)round_clamp(x[i] * id, -127, 127) : 0;
    for (int g = 0; g < n / 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++)
            s += q[16 * g + i];
        gsum[g] = s;
    }
    return finite ? d : NAN;
}

void nr_quant_act(int wtype, const float *x, int k, void *xq)
{
    const struct qtrait *t = trait(wtype);
    const struct nr_quant_kernels *K = nr_quant_kernels_get();
    float (*blk)(const float *, int, int8_t *, int32_t *) =
        K->act_block ? K->act_block : nr_quant_act_block_ref;
    int8_t *qs = xq;
    int32_t gsum[16];

    if (!t || k <= 0 || k % t->block)
        return;
    if (t->act == ACT_F32) {
        memcpy(xq, x, (size_t)k * 4);
        return;
    }
    float *d = (float *)nr_qa_d(xq, k);
    if (t->act == ACT_Q8) {
        int32_t *isum = (int32_t *)nr_qa_isum(xq, k);
        for (int b = 0; b < k / 32; b++) {
            d[b] = blk(x + 32 * b, 32, qs + 32 * b, gsum);
            isum[b] = gsum[0] + gsum[1];
        }
    } else {
        int16_t *bs = (int16_t *)nr_qa_bsums(xq, k);
        for (int b = 0; b < k / 256; b++) {
            d[b] = blk(x + 256 * b, 256, qs + 256 * b, gsum);
            for (int g = 0; g < 16; g++)
                bs[16 * b + g] = (int16_t)gsum[g];
        }
    }
}

/* ------------------------------------------------------------ scalar dots */

static float sdot_q4_0(const uint8_t *w, const void *xq, int k)
{
    const int8_t *a = xq;
    const float *dx = nr_qa_d(xq, k);
    const int32_t *is = nr_qa_isum(xq, k);
    float acc = 0.0f;
    for (int b = 0; b < k / 32; b++, w += 18, a += 32) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (w[2 + j] & 0xF) * a[j] + (w[2 + j] >> 4) * a[j + 16];
        acc += h2f(w) * dx[b] * (float)(s - 8 * is[b]);
    }
    return acc;
}

static float sdot_q4_1(const uint8_t *w, const void *xq, int k)
{
    const int8_t *a = xq;
    const float *dx = nr_qa_d(xq, k);
    const int32_t *is = nr_qa_isum(xq, k);
    float acc = 0.0f;
    for (int b = 0; b < k / 32; b++, w += 20, a += 32) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += (w[4 + j] & 0xF) * a[j] + (w[4 + j] >> 4) * a[j + 16];
        acc += h2f(w) * dx[b] * (float)s + h2f(w + 2) * dx[b] * (float)is[b];
    }
    return acc;
}

static float sdot_q5_0(const uint8_t *w, const void *xq, int k)
{
    const int8_t *a = xq;
    const float *dx = nr_qa_d(xq, k);
    const int32_t *is = nr_qa_isum(xq, k);
    float acc = 0.0f;
    for (int b = 0; b < k / 32; b++, w += 22, a += 32) {
        uint32_t qh;
        int s = 0;
        memcpy(&qh, w + 2, 4);
        for (int j = 0; j < 16; j++) {
            int q0 = (w[6 + j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (w[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += q0 * a[j] + q1 * a[j + 16];
        }
        acc += h2f(w) * dx[b] * (float)(s - 16 * is[b]);
    }
    return acc;
}

static float sdot_q8_0(const uint8_t *w, const void *xq, int k)
{
    const int8_t *a = xq;
    const float *dx = nr_qa_d(xq, k);
    float acc = 0.0f;
    for (int b = 0; b < k / 32; b++, w += 34, a += 32) {
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += (int8_t)w[2 + j] * a[j];
        acc += h2f(w) * dx[b] * (float)s;
    }
    return acc;
}

/* Q4_K and Q5_K (q5: 1 for Q5_K's high bits). */
static float sdot_kmin(const uint8_t *w, const void *xq, int k, int q5)
{
    const int8_t *a = xq;
    const float *dx = nr_qa_d(xq, k);
    const int16_t *bs = nr_qa_bsums(xq, k);
    const int bytes = q5 ? 176 : 144;
    float acc = 0.0f;
    for (int b = 0; b < k / 256; b++, w += bytes, a += 256, bs += 16) {
        const uint8_t *qh = w + 16, *qs = w + (q5 ? 48 : 16);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            int s = 0;
            nr_q4k_scale_min(w + 4, j, &sc, &m);
            for (int l = 0; l < 32; l++) {
                int q = (qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0xF;
                if (q5)
                    q |= ((qh[l] >> j) & 1) << 4;
                s += q * a[32 * j + l];
            }
            sumi += sc * s;
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        acc += dx[b] * (h2f(w) * (float)sumi - h2f(w + 2) * (float)summ);
    }
    return acc;
}

static float sdot_q6_k(const uint8_t *w, const void *xq, int k)
{
    const int8_t *a = xq;
    const float *dx = nr_qa_d(xq, k);
    const int16_t *bs = nr_qa_bsums(xq, k);
    float acc = 0.0f;
    for (int b = 0; b < k / 256; b++, w += 210, a += 256, bs += 16) {
        const int8_t *sc = (const int8_t *)(w + 192);
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += q6k_get(w, 16 * g + l) * a[16 * g + l];
            sumi += sc[g] * (s - 32 * bs[g]);
        }
        acc += h2f(w + 208) * dx[b] * (float)sumi;
    }
    return acc;
}

static float sdot_f32(const uint8_t *w, const void *xq, int k)
{
    const float *x = xq;
    double acc = 0.0;
    for (int i = 0; i < k; i++) {
        float v;
        memcpy(&v, w + 4 * i, 4);
        acc += (double)v * x[i];
    }
    return (float)acc;
}

static float sdot_f16(const uint8_t *w, const void *xq, int k)
{
    const float *x = xq;
    double acc = 0.0;
    for (int i = 0; i < k; i++)
        acc += (double)h2f(w + 2 * i) * x[i];
    return (float)acc;
}

static float sdot_bf16(const uint8_t *w, const void *xq, int k)
{
    const float *x = xq;
    double acc = 0.0;
    for (int i = 0; i < k; i++) {
        uint16_t v;
        memcpy(&v, w + 2 * i, 2);
        acc += (double)nr_bf16_to_fp32(v) * x[i];
    }
    return (float)acc;
}

#define SCALAR_DOT(name, expr)                                                                     \
    static void name(const void *w, const void *xq, size_t xstride, int nx, int k, float *out)     \
    {                                                                                              \
        for (int j = 0; j < nx; j++) {                                                             \
            const void *x = (const char *)xq + (size_t)j * xstride;                                \
            out[j] = (expr);                                                                       \
        }                                                                                          \
    }

SCALAR_DOT(sk_f32, sdot_f32(w, x, k))
SCALAR_DOT(sk_f16, sdot_f16(w, x, k))
SCALAR_DOT(sk_bf16, sdot_bf16(w, x, k))
SCALAR_DOT(sk_q4_0, sdot_q4_0(w, x, k))
SCALAR_DOT(sk_q4_1, sdot_q4_1(w, x, k))
SCALAR_DOT(sk_q5_0, sdot_q5_0(w, x, k))
SCALAR_DOT(sk_q8_0, sdot_q8_0(w, x, k))
SCALAR_DOT(sk_q4_k, sdot_kmin(w, x, k, 0))
SCALAR_DOT(sk_q5_k, sdot_kmin(w, x, k, 1))
SCALAR_DOT(sk_q6_k, sdot_q6_k(w, x, k))

static float s_dot_f16(const uint16_t *a, const float *b, int n)
{
    double acc = 0.0;
    for (int i = 0; i < n; i++)
        acc += (double)nr_fp16_to_fp32(a[i]) * b[i];
    return (float)acc;
}

static void s_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * nr_fp16_to_fp32(x[i]);
}

static void s_f32_to_f16(const float *x, uint16_t *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = nr_fp32_to_fp16(x[i]);
}

const struct nr_quant_kernels nr_quant_scalar_kernels = {
    .name = "scalar",
    .dot =
        {
            [NR_GGML_F32] = sk_f32,
            [NR_GGML_F16] = sk_f16,
            [NR_GGML_BF16] = sk_bf16,
            [NR_GGML_Q4_0] = sk_q4_0,
            [NR_GGML_Q4_1] = sk_q4_1,
            [NR_GGML_Q5_0] = sk_q5_0,
            [NR_GGML_Q8_0] = sk_q8_0,
            [NR_GGML_Q4_K] = sk_q4_k,
            [NR_GGML_Q5_K] = sk_q5_k,
            [NR_GGML_Q6_K] = sk_q6_k,
        },
    .dot_f16 = s_dot_f16,
    .axpy_f16 = s_axpy_f16,
    .f32_to_f16 = s_f32_to_f16,
};

/* ------------------------------------------------------------ selection */

static const struct nr_quant_kernels *const variants[] = {
#if defined(__x86_64__)
    &nr_quant_avx512_kernels,
    &nr_quant_avx2_kernels,
#endif
#if defined(__aarch64__)
    &nr_quant_neon_kernels,
#endif
    &nr_quant_scalar_kernels,
};

/* A variant runs where nr_kern's variant of the same name does: both files
 * are compiled with the same per-arch flags (CMakeLists.txt). */
const struct nr_quant_kernels *nr_quant_kernels_by_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        if (!strcmp(variants[i]->name, name))
            return nr_kern_by_name(name) ? variants[i] : NULL;
    return NULL;
}

static const struct nr_quant_kernels *selected, *forced;
static pthread_once_t select_once = PTHREAD_ONCE_INIT;

static void select_variant(void)
{
    const char *env = getenv("NANORAG_KERN");

    if (env && *env) {
        selected = nr_quant_kernels_by_name(env);
        if (selected)
            return;
        nr_log_warn("NANORAG_KERN=%s: no such quant variant on this CPU; choosing automatically",
                    env);
    }
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        if (nr_quant_kernels_by_name(variants[i]->name)) {
            selected = variants[i];
            break;
        }
    }
}

const struct nr_quant_kernels *nr_quant_kernels_get(void)
{
    pthread_once(&select_once, select_variant);
    return forced ? forced : selected;
}

void nr_quant_kernels_force(const struct nr_quant_kernels *k)
{
    forced = k;
}

const char *nr_quant_variant(void)
{
    return nr_quant_kernels_get()->name;
}

/* The kernel for W, or NULL if W's type or k is not one the kernels take
 * (then the drivers below do nothing: shapes are the caller's to check). */
static nr_qdot_fn dot_fn(const struct nr_qmat *W)
{
    const struct nr_quant_kernels *K = nr_quant_kernels_get();
    int type = W->type;
    if (type < 0 || type >= NR_GGML_TYPE_COUNT || !trait(type) || W->k <= 0 ||
        nr_quant_row_bytes(type, W->k) == 0)
        return NULL;
    return K->dot[type] ? K->dot[type] : nr_quant_scalar_kernels.dot[type];
}

/* ------------------------------------------------------------ drivers */

float nr_quant_dot_row(const struct nr_qmat *W, int r, const void *xq)
{
    nr_qdot_fn fn = dot_fn(W);
    float out = 0.0f;
    if (fn && r >= 0 && r < W->n)
        fn((const char *)W->data + (size_t)r * W->row_bytes, xq, 0, 1, W->k, &out);
    return out;
}

struct mv_ctx {
    const struct nr_qmat *W;
    const void *xq;
    nr_qdot_fn fn;
    float *y;       /* matvec: [n]; matmul: C */
    int chunk;      /* rows per task */
    int m;          /* matmul: act rows */
    int ldc;        /* matmul: row stride of C */
    size_t xstride; /* matmul: bytes per act row */
};

static void matvec_task(void *arg, int task, int worker)
{
    const struct mv_ctx *c = arg;
    const struct nr_qmat *W = c->W;
    int r0 = task * c->chunk, r1 = r0 + c->chunk < W->n ? r0 + c->chunk : W->n;
    const char *w = (const char *)W->data + (size_t)r0 * W->row_bytes;

    for (int r = r0; r < r1; r++, w += W->row_bytes)
        c->fn(w, c->xq, 0, 1, W->k, &c->y[r]);
}

static int threads_of(struct nr_pool *pool)
{
    return pool ? nr_pool_threads(pool) : 1;
}

void nr_quant_matvec(struct nr_pool *pool, const struct nr_qmat *W, const void *xq, float *y)
{
    struct mv_ctx c = {.W = W, .xq = xq, .y = y};
    int nt = threads_of(pool), ntasks;

    c.fn = dot_fn(W);
    if (!c.fn || W->n <= 0)
        return;
    /* ~6 tasks per thread, chunks a multiple of 16 rows. */
    c.chunk = (W->n + nt * 6 - 1) / (nt * 6);
    c.chunk = (c.chunk + 15) & ~15;
    ntasks = (W->n + c.chunk - 1) / c.chunk;
    if (!pool || nt == 1 || ntasks == 1) {
        for (int t = 0; t < ntasks; t++)
            matvec_task(&c, t, 0);
        return;
    }
    nr_pool_run(pool, ntasks, matvec_task, &c);
}

struct mvn_ctx {
    int nm;
    struct mv_ctx c[NR_QUANT_MAX_GROUP];
    int first[NR_QUANT_MAX_GROUP + 1]; /* task range of matrix i: [first[i], first[i+1]) */
};

static void matvec_n_task(void *arg, int task, int worker)
{
    const struct mvn_ctx *g = arg;
    int i = 0;
    while (task >= g->first[i + 1])
        i++;
    matvec_task((void *)&g->c[i], task - g->first[i], worker);
}

void nr_quant_matvec_n(struct nr_pool *pool, int nm, const struct nr_qmat *const *W,
                       const void *const *xq, float *const *y)
{
    struct mvn_ctx g;
    int nt = threads_of(pool), rows = 0, chunk;

    if (nm < 1 || nm > NR_QUANT_MAX_GROUP)
        return;
    for (int i = 0; i < nm; i++)
        rows += W[i]->n > 0 ? W[i]->n : 0;
    /* ~6 tasks per thread over all the rows, chunks a multiple of 16 rows */
    chunk = (rows + nt * 6 - 1) / (nt * 6);
    chunk = (chunk + 15) & ~15;
    if (chunk < 16)
        chunk = 16;
    g.nm = nm;
    g.first[0] = 0;
    for (int i = 0; i < nm; i++) {
        struct mv_ctx c = {.W = W[i], .xq = xq[i], .y = y[i], .chunk = chunk};
        c.fn = dot_fn(W[i]);
        g.c[i] = c;
        g.first[i + 1] = g.first[i] + (c.fn && W[i]->n > 0 ? (W[i]->n + chunk - 1) / chunk : 0);
    }
    if (g.first[nm] == 0)
        return;
    if (!pool || nt == 1) {
        for (int t = 0; t < g.first[nm]; t++)
            matvec_n_task(&g, t, 0);
        return;
    }
    nr_pool_run(pool, g.first[nm], matvec_n_task, &g);
}

static void matmul_task(void *arg, int task, int worker)
{
    const struct mv_ctx *c = arg;
    const struct nr_qmat *W = c->W;
    int r0 = task * c->chunk, r1 = r0 + c->chunk < W->n ? r0 + c->chunk : W->n;
    float out[NR_QUANT_MR];

    for (int i0 = 0; i0 < c->m; i0 += NR_QUANT_MR) {
        int nx = c->m - i0 < NR_QUANT_MR ? c->m - i0 : NR_QUANT_MR;
        const char *x = (const char *)c->xq + (size_t)i0 * c->xstride;
        const char *w = (const char *)W->data + (size_t)r0 * W->row_bytes;
        for (int r = r0; r < r1; r++, w += W->row_bytes) {
            c->fn(w, x, c->xstride, nx, W->k, out);
            for (int j = 0; j < nx; j++)
                c->y[(size_t)(i0 + j) * (size_t)c->ldc + (size_t)r] = out[j];
        }
    }
}

void nr_quant_matmul(struct nr_pool *pool, const struct nr_qmat *W, const void *xq, int m, float *C,
                     int ldc)
{
    struct mv_ctx c = {.W = W, .xq = xq, .y = C, .m = m, .ldc = ldc};
    int ntasks;

    c.fn = dot_fn(W);
    if (!c.fn || W->n <= 0 || m <= 0)
        return;
    c.xstride = nr_quant_act_bytes(W->type, W->k);
    c.chunk = 16;
    ntasks = (W->n + c.chunk - 1) / c.chunk;
    if (!pool || threads_of(pool) == 1) {
        for (int t = 0; t < ntasks; t++)
            matmul_task(&c, t, 0);
        return;
    }
    nr_pool_run(pool, ntasks, matmul_task, &c);
}

/* ------------------------------------------------------------ f16 helpers */

float nr_quant_dot_f16(const uint16_t *a, const float *b, int n)
{
    const struct nr_quant_kernels *K = nr_quant_kernels_get();
    return (K->dot_f16 ? K->dot_f16 : s_dot_f16)(a, b, n);
}

void nr_quant_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    const struct nr_quant_kernels *K = nr_quant_kernels_get();
    (K->axpy_f16 ? K->axpy_f16 : s_axpy_f16)(y, a, x, n);
}

void nr_quant_f32_to_f16(const float *x, uint16_t *y, int n)
{
    const struct nr_quant_kernels *K = nr_quant_kernels_get();
    (K->f32_to_f16 ? K->f32_to_f16 : s_f32_to_f16)(x, y, n);
}
