/*
 * test_quant: GGUF quant blocks and the quantized dot products.
 *
 *   - dequantization equals the gguf Python package's numpy code bit for
 *     bit, on random blocks of every type and on real rows of the two model
 *     files (tests/fixtures/quant_ref.bin, scripts/fixtures/make_quant_fixtures.py),
 *     and every variant's dot on those real rows matches gguf's values;
 *   - the reference quantizers produce gguf.quants.quantize's bytes (F16,
 *     BF16, Q4_0, Q4_1, Q5_0, Q8_0) and, for the K types that gguf cannot
 *     quantize, a dequantized error under the bound of each format;
 *   - the act quantization's contract (scales, sums, NaN);
 *   - every dot (scalar reference) equals the double-precision dot of the
 *     dequantized row with the dequantized act, and stays within the
 *     act-rounding bound of the fp32 dot;
 *   - every SIMD variant against the scalar reference: bit for bit on
 *     inputs whose products are exact in fp32 (unit scales, integer
 *     activations), within a relative bound on random data;
 *   - matvec (1, 2, 3 threads) and matmul (m = 1..9) equal the dot_row loop
 *     bit for bit; the f16 KV-cache helpers against scalar.
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_gguf.h"
#include "nr_half.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_quant.h"
#include "quant_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x5eed1234u;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float urand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rng_next() >> 11) * (1.0 / 9007199254740992.0));
}

static float nrand(void)
{
    float s = 0.0f;
    for (int i = 0; i < 4; i++)
        s += urand(-1.0f, 1.0f);
    return s * 0.8660254f; /* variance 1 */
}

static const int all_types[] = {NR_GGML_F32,  NR_GGML_F16,  NR_GGML_BF16, NR_GGML_Q4_0,
                                NR_GGML_Q4_1, NR_GGML_Q5_0, NR_GGML_Q8_0, NR_GGML_Q4_K,
                                NR_GGML_Q5_K, NR_GGML_Q6_K};
#define NTYPES (int)(sizeof all_types / sizeof all_types[0])

static const char *variant_names[] = {"scalar", "avx2", "avx512", "neon"};
static char tested_names[64];

static void note_tested(const char *name)
{
    if (strstr(tested_names, name))
        return;
    size_t len = strlen(tested_names);
    snprintf(tested_names + len, sizeof tested_names - len, "%s%s", len ? " " : "", name);
}

/* Byte offsets of the f16 scale fields of a block (-1 terminated). */
static const int *f16_fields(int type, int *bytes)
{
    static const int q4_0[] = {0, -1}, q4_1[] = {0, 2, -1}, q6_k[] = {208, -1};
    switch (type) {
    case NR_GGML_Q4_0:
        *bytes = 18;
        return q4_0;
    case NR_GGML_Q4_1:
        *bytes = 20;
        return q4_1;
    case NR_GGML_Q5_0:
        *bytes = 22;
        return q4_0;
    case NR_GGML_Q8_0:
        *bytes = 34;
        return q4_0;
    case NR_GGML_Q4_K:
        *bytes = 144;
        return q4_1;
    case NR_GGML_Q5_K:
        *bytes = 176;
        return q4_1;
    case NR_GGML_Q6_K:
        *bytes = 210;
        return q6_k;
    }
    return NULL;
}

/*
 * A random weight row: random bytes with finite f16 scales of either sign
 * (every quant pattern and packed scale occurs), or, for F32/F16/BF16,
 * the reference quantizer applied to Gaussian values. unit != 0 sets every
 * f16 scale to 1.0 (for the exact tests).
 */
static void random_row(int type, uint8_t *w, int k, int unit)
{
    int bytes;
    const int *f = f16_fields(type, &bytes);
    size_t rb = nr_quant_row_bytes(type, k);

    if (!f) {
        float *x = nr_malloc((size_t)k * sizeof *x);
        for (int i = 0; i < k; i++)
            x[i] = unit ? (float)(int)urand(-8.0f, 8.0f) : nrand();
        NR_CHECK_INT(nr_quant_quantize_row(type, x, w, k), NR_OK);
        nr_free(x);
        return;
    }
    for (size_t i = 0; i < rb; i++)
        w[i] = (uint8_t)rng_next();
    for (size_t b = 0; b < rb / (size_t)bytes; b++) {
        for (const int *o = f; *o >= 0; o++) {
            float v = unit ? 1.0f : urand(0.01f, 1.0f) * (rng_next() & 1 ? -1.0f : 1.0f);
            uint16_t h = nr_fp32_to_fp16(v);
            memcpy(w + b * (size_t)bytes + (size_t)*o, &h, 2);
        }
    }
}

/* The act's values as the kernels see them: q * d (or the fp32 copy). */
static void act_dequant(int wtype, const void *xq, int k, float *out)
{
    int block = nr_quant_block(wtype);
    if (block == 1) {
        memcpy(out, xq, (size_t)k * 4);
        return;
    }
    int per = wtype == NR_GGML_Q4_K || wtype == NR_GGML_Q5_K || wtype == NR_GGML_Q6_K ? 256 : 32;
    const int8_t *q = xq;
    const float *d = nr_qa_d(xq, k);
    for (int i = 0; i < k; i++)
        out[i] = (float)q[i] * d[i / per];
}

/* ------------------------------------------------------------ traits */

static void test_traits(void)
{
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_0, 64), 36);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_1, 32), 20);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q5_0, 32), 22);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q8_0, 32), 34);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_K, 512), 288);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q5_K, 256), 176);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q6_K, 256), 210);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_F16, 3), 6);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_BF16, 3), 6);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_F32, 3), 12);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_0, 33), 0);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_K, 128), 0);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q5_1, 32), 0);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_0, 0), 0);
    NR_CHECK_INT(nr_quant_row_bytes(NR_GGML_Q4_0, -32), 0);
    NR_CHECK(!nr_quant_supported(NR_GGML_Q2_K));
    NR_CHECK(!nr_quant_supported(-1));
    NR_CHECK(!nr_quant_supported(999));
    NR_CHECK_INT(nr_quant_block(NR_GGML_Q6_K), 256);
    NR_CHECK_INT(nr_quant_block(NR_GGML_Q8_K), 0);
    NR_CHECK(!strcmp(nr_quant_name(NR_GGML_Q4_K), "q4_k"));
    NR_CHECK(!strcmp(nr_quant_name(NR_GGML_Q2_K), "?"));
    /* block sizes agree with the GGUF reader's table */
    for (int i = 0; i < NTYPES; i++) {
        int be = 0, bb = 0;
        NR_CHECK_INT(nr_ggml_type_info(all_types[i], &be, &bb, NULL), NR_OK);
        NR_CHECK_INT(nr_quant_block(all_types[i]), be);
        NR_CHECK_INT(nr_quant_row_bytes(all_types[i], be), bb);
        NR_CHECK(nr_quant_act_bytes(all_types[i], 256) % 64 == 0);
    }
    NR_CHECK_INT(nr_quant_act_bytes(NR_GGML_Q4_K, 100), 0);
    float x[32] = {0};
    uint8_t buf[64];
    NR_CHECK_INT(nr_quant_quantize_row(NR_GGML_Q4_0, x, buf, 31), NR_EINVAL);
    NR_CHECK_INT(nr_quant_quantize_row(NR_GGML_Q2_K, x, buf, 256), NR_EINVAL);
    /* a matrix whose k is not a multiple of the block is refused, not read */
    {
        uint8_t wbuf[64] = {0};
        uint8_t *xq = nr_aligned_alloc(64, 4096);
        float y[2] = {-7.0f, -7.0f};
        struct nr_qmat bad = {NR_GGML_Q4_0, 2, 33, 18, wbuf};
        memset(xq, 0, 4096);
        nr_quant_matvec(NULL, &bad, xq, y);
        nr_quant_matmul(NULL, &bad, xq, 1, y, 2);
        NR_CHECK(y[0] == -7.0f && y[1] == -7.0f);
        NR_CHECK(nr_quant_dot_row(&bad, 0, xq) == 0.0f);
        bad.type = NR_GGML_Q2_K;
        bad.k = 256;
        nr_quant_matvec(NULL, &bad, xq, y);
        NR_CHECK(y[0] == -7.0f);
        nr_free(xq);
    }
    NR_CHECK(nr_quant_variant() != NULL);
    printf("  variant in use: %s\n", nr_quant_variant());
}

/* ------------------------------------------------------------ fixtures */

struct fx {
    char *buf;
    size_t len, pos;
    uint32_t count;
};

struct fx_rec {
    uint32_t kind, type, k, nbytes, row;
    char name[128];
    const uint8_t *payload; /* unaligned: copy before reading floats */
};

static int fx_open(struct fx *f)
{
    memset(f, 0, sizeof *f);
    if (nr_file_read(nr_test_src_path("tests/fixtures/quant_ref.bin"), 8u << 20, &f->buf,
                     &f->len) != NR_OK)
        return -1;
    if (f->len < 8 || memcmp(f->buf, "NRQF", 4)) {
        nr_free(f->buf);
        return -1;
    }
    memcpy(&f->count, f->buf + 4, 4);
    f->pos = 8;
    return 0;
}

/* 1 and the next record, 0 at the end, -1 if the file is malformed. */
static int fx_next(struct fx *f, struct fx_rec *r)
{
    uint32_t h[6];
    size_t need;

    if (f->pos == f->len)
        return 0;
    if (f->len - f->pos < sizeof h)
        return -1;
    memcpy(h, f->buf + f->pos, sizeof h);
    f->pos += sizeof h;
    r->kind = h[0];
    r->type = h[1];
    r->k = h[2];
    r->nbytes = h[3];
    r->row = h[5];
    if (h[4] >= sizeof r->name || f->len - f->pos < h[4])
        return -1;
    memcpy(r->name, f->buf + f->pos, h[4]);
    r->name[h[4]] = 0;
    f->pos += h[4];
    need = (size_t)r->nbytes + (size_t)r->k * 4;
    if (f->len - f->pos < need)
        return -1;
    r->payload = (const uint8_t *)f->buf + f->pos;
    f->pos += need;
    return 1;
}

static void test_dequant_gguf(void)
{
    struct fx f;
    struct fx_rec r;
    int n = 0, rc;

    if (fx_open(&f)) {
        NR_CHECK_MSG(0, "cannot read tests/fixtures/quant_ref.bin");
        return;
    }
    while ((rc = fx_next(&f, &r)) == 1) {
        if (r.kind != 1)
            continue;
        float *want = nr_malloc((size_t)r.k * 4), *got = nr_malloc((size_t)r.k * 4);
        NR_CHECK_INT(nr_quant_row_bytes((int)r.type, r.k), r.nbytes);
        memcpy(want, r.payload + r.nbytes, (size_t)r.k * 4);
        nr_quant_dequant_row((int)r.type, r.payload, got, r.k);
        NR_CHECK_MSG(!memcmp(want, got, (size_t)r.k * 4), "dequant %s differs from gguf's",
                     nr_quant_name((int)r.type));
        nr_free(want);
        nr_free(got);
        n++;
    }
    NR_CHECK_INT(rc, 0);
    NR_CHECK_INT(n, 9); /* 7 block types + f16 + bf16 */
    nr_free(f.buf);
}

static void test_quantize_gguf(void)
{
    struct fx f;
    struct fx_rec r;
    int n = 0, rc;

    if (fx_open(&f)) {
        NR_CHECK_MSG(0, "cannot read tests/fixtures/quant_ref.bin");
        return;
    }
    while ((rc = fx_next(&f, &r)) == 1) {
        if (r.kind != 2)
            continue;
        float *x = nr_malloc((size_t)r.k * 4);
        uint8_t *got = nr_malloc(r.nbytes);
        memcpy(x, r.payload, (size_t)r.k * 4);
        NR_CHECK_INT(nr_quant_row_bytes((int)r.type, r.k), r.nbytes);
        NR_CHECK_INT(nr_quant_quantize_row((int)r.type, x, got, r.k), NR_OK);
        NR_CHECK_MSG(!memcmp(got, r.payload + (size_t)r.k * 4, r.nbytes),
                     "quantize %s (input %d) differs from gguf's", nr_quant_name((int)r.type),
                     n % 4);
        nr_free(x);
        nr_free(got);
        n++;
    }
    NR_CHECK_INT(rc, 0);
    NR_CHECK_INT(n, 24); /* 6 types x 4 inputs */
    nr_free(f.buf);
}

static void test_real_rows(void)
{
    static const struct {
        const char *prefix, *path;
    } models[] = {
        {"smollm2:", "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"},
        {"gemma3:", "gemma-3-270m/gemma-3-270m-q4_k_m.gguf"},
    };
    struct nr_gguf *g[2] = {NULL, NULL};
    struct fx f;
    struct fx_rec r;
    int n = 0, rc, seen_types = 0;

    for (int m = 0; m < 2; m++)
        if (nr_gguf_open(nr_test_model_path(models[m].path), &g[m]) != NR_OK)
            g[m] = NULL;
    if (!g[0] && !g[1]) {
        NR_SKIP("no model files under %s", NR_MODELS_DIR);
        return;
    }
    if (fx_open(&f)) {
        NR_CHECK_MSG(0, "cannot read tests/fixtures/quant_ref.bin");
        goto done;
    }
    while ((rc = fx_next(&f, &r)) == 1) {
        int m = strncmp(r.name, models[0].prefix, strlen(models[0].prefix)) ? 1 : 0;
        if (r.kind != 3 || !g[m])
            continue;
        const struct nr_gguf_tensor *t =
            nr_gguf_find_tensor(g[m], r.name + strlen(models[m].prefix));
        NR_CHECK_MSG(t != NULL, "tensor %s not in the model", r.name);
        if (!t)
            continue;
        NR_CHECK_INT(t->type, r.type);
        NR_CHECK_INT(t->ne[0], r.k);
        size_t rb = nr_quant_row_bytes(t->type, t->ne[0]);
        NR_CHECK(rb > 0 && (size_t)(r.row + 1) * rb <= t->nbytes);
        float *want = nr_malloc((size_t)r.k * 4), *got = nr_malloc((size_t)r.k * 4);
        memcpy(want, r.payload, (size_t)r.k * 4);
        nr_quant_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r.row * rb, got, r.k);
        NR_CHECK_MSG(!memcmp(want, got, (size_t)r.k * 4), "%s row %u differs from gguf's", r.name,
                     r.row);
        /* every variant's dot of the real row with an act = the double dot of
         * gguf's dequantized row with the dequantized act, within 1e-5 * sum|w a| */
        {
            uint8_t *xq = nr_aligned_alloc(64, nr_quant_act_bytes(NR_GGML_F32, (int)r.k));
            float *x = nr_malloc((size_t)r.k * 4), *ad = nr_malloc((size_t)r.k * 4);
            struct nr_qmat W = {t->type, (int)t->ne[1], (int)r.k, rb, t->data};
            for (uint32_t i = 0; i < r.k; i++)
                x[i] = nrand();
            for (size_t v = 0; v < sizeof variant_names / sizeof variant_names[0]; v++) {
                const struct nr_quant_kernels *K = nr_quant_kernels_by_name(variant_names[v]);
                double ref = 0, mag = 0;
                if (!K)
                    continue;
                nr_quant_kernels_force(K);
                nr_quant_act(t->type, x, (int)r.k, xq);
                act_dequant(t->type, xq, (int)r.k, ad);
                for (uint32_t i = 0; i < r.k; i++) {
                    ref += (double)want[i] * ad[i];
                    mag += fabs((double)want[i] * ad[i]);
                }
                float d = nr_quant_dot_row(&W, (int)r.row, xq);
                NR_CHECK_MSG(fabs(d - ref) <= 1e-5 * mag, "%s %s row %u: dot %.9g vs %.9g", K->name,
                             r.name, r.row, d, ref);
            }
            nr_quant_kernels_force(NULL);
            nr_free(xq);
            nr_free(x);
            nr_free(ad);
        }
        seen_types |= 1 << t->type;
        nr_free(want);
        nr_free(got);
        n++;
    }
    NR_CHECK_INT(rc, 0);
    if (g[0] && g[1]) {
        NR_CHECK_INT(n, 24);
        /* Q4_1, Q8_0, Q5_0, Q4_K, Q6_K all met in real files */
        NR_CHECK_INT(seen_types, (1 << NR_GGML_Q4_1) | (1 << NR_GGML_Q8_0) | (1 << NR_GGML_Q5_0) |
                                     (1 << NR_GGML_Q4_K) | (1 << NR_GGML_Q6_K));
    }
    printf("  %d real rows equal gguf's dequantization\n", n);
    nr_free(f.buf);
done:
    for (int m = 0; m < 2; m++)
        nr_gguf_close(g[m]);
}

/* ------------------------------------------------------------ quantizers */

/*
 * quantize -> dequantize on Gaussian rows: RMS error / RMS(x) under each
 * format's bound. The bounds are 1.3-2x what the formats give here (uniform
 * rounding error of step/√12 with the step of each format's scale rule),
 * so a broken packing (errors of whole steps, relative error ~1) fails.
 */
static void test_quantize_roundtrip(void)
{
    static const struct {
        int type;
        double bound;
    } b[] = {
        {NR_GGML_F32, 0.0},   {NR_GGML_F16, 4e-4},  {NR_GGML_BF16, 3e-3}, {NR_GGML_Q8_0, 0.012},
        {NR_GGML_Q6_K, 0.04}, {NR_GGML_Q5_0, 0.06}, {NR_GGML_Q5_K, 0.06}, {NR_GGML_Q4_0, 0.12},
        {NR_GGML_Q4_1, 0.11}, {NR_GGML_Q4_K, 0.12},
    };
    const int k = 4096;
    float *x = nr_malloc(k * 4), *y = nr_malloc(k * 4);
    uint8_t *q = nr_malloc(nr_quant_row_bytes(NR_GGML_F32, k));

    for (size_t t = 0; t < sizeof b / sizeof b[0]; t++) {
        double se = 0, sx = 0;
        for (int i = 0; i < k; i++)
            x[i] = nrand() * (i % 97 == 0 ? 4.0f : 1.0f);
        NR_CHECK_INT(nr_quant_quantize_row(b[t].type, x, q, k), NR_OK);
        nr_quant_dequant_row(b[t].type, q, y, k);
        for (int i = 0; i < k; i++) {
            se += (double)(x[i] - y[i]) * (x[i] - y[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        printf("  %-5s rms error %.4f (bound %.4f)\n", nr_quant_name(b[t].type), rel, b[t].bound);
        NR_CHECK_MSG(rel <= b[t].bound, "%s round trip error %g > %g", nr_quant_name(b[t].type),
                     rel, b[t].bound);
        /* an all-zero row comes back as zeros in every format (scale 0, no
         * division by it; Q4_0/Q5_0 give -0.0 as ggml does: d = 0 / -8) */
        memset(x, 0, (size_t)k * 4);
        NR_CHECK_INT(nr_quant_quantize_row(b[t].type, x, q, k), NR_OK);
        nr_quant_dequant_row(b[t].type, q, y, k);
        for (int i = 0; i < k; i++)
            NR_CHECK_MSG(y[i] == 0.0f, "%s: zero row gave %g", nr_quant_name(b[t].type), y[i]);
    }
    /* NaN input never crashes or leaves UB; result is just garbage */
    for (int i = 0; i < k; i++)
        x[i] = i % 5 ? 1.0f : NAN;
    for (size_t t = 0; t < sizeof b / sizeof b[0]; t++)
        NR_CHECK_INT(nr_quant_quantize_row(b[t].type, x, q, k), NR_OK);
    nr_free(x);
    nr_free(y);
    nr_free(q);
}

/* ------------------------------------------------------------ act */

static void test_act(void)
{
    const int k = 512;
    float x[512];
    uint8_t *xq = nr_aligned_alloc(64, nr_quant_act_bytes(NR_GGML_Q4_K, k) + 4096);

    for (int i = 0; i < k; i++)
        x[i] = nrand() * (i < 32 ? 100.0f : 1.0f);
    x[5] = 0.0f;
    for (int pass = 0; pass < 2; pass++) {
        int wt = pass ? NR_GGML_Q6_K : NR_GGML_Q8_0, per = pass ? 256 : 32;
        nr_quant_act(wt, x, k, xq);
        const int8_t *q = (const int8_t *)xq;
        const float *d = nr_qa_d(xq, k);
        for (int b = 0; b < k / per; b++) {
            float amax = 0;
            int sum = 0;
            for (int i = 0; i < per; i++) {
                float a = fabsf(x[b * per + i]);
                amax = a > amax ? a : amax;
                NR_CHECK(q[b * per + i] >= -127 && q[b * per + i] <= 127);
                /* within half a step */
                NR_CHECK(fabsf((float)q[b * per + i] * d[b] - x[b * per + i]) <=
                         0.5001f * d[b] + 1e-30f);
                sum += q[b * per + i];
            }
            NR_CHECK(d[b] == amax / 127.0f);
            if (!pass)
                NR_CHECK_INT(nr_qa_isum(xq, k)[b], sum);
        }
        if (pass)
            for (int g = 0; g < k / 16; g++) {
                int s = 0;
                for (int i = 0; i < 16; i++)
                    s += q[16 * g + i];
                NR_CHECK_INT(nr_qa_bsums(xq, k)[g], s);
            }
    }
    /* NaN / Inf in the activation: the dot is NaN, never an undefined cast */
    x[40] = NAN;
    x[300] = INFINITY;
    for (int t = 0; t < NTYPES; t++) {
        int wt = all_types[t];
        uint8_t w[2048];
        struct nr_qmat W = {wt, 1, k, nr_quant_row_bytes(wt, k), w};
        random_row(wt, w, k, 0);
        nr_quant_act(wt, x, k, xq);
        float v = nr_quant_dot_row(&W, 0, xq);
        NR_CHECK_MSG(v != v, "%s: NaN activation gave %g", nr_quant_name(wt), v);
    }
    nr_free(xq);
}

/*
 * Every variant's act block gives the reference's bytes: quants, scales and
 * sums, on Gaussian rows, exact ties (x / d = n + 0.5 when amax = 127),
 * zeros, subnormals, huge values and blocks with NaN / Inf.
 */
static void test_act_variants(void)
{
    const int k = 1024;
    float *x = nr_malloc((size_t)k * 4);
    size_t ab = nr_quant_act_bytes(NR_GGML_Q4_0, k) > nr_quant_act_bytes(NR_GGML_Q4_K, k)
                    ? nr_quant_act_bytes(NR_GGML_Q4_0, k)
                    : nr_quant_act_bytes(NR_GGML_Q4_K, k);
    uint8_t *ref = nr_aligned_alloc(64, ab), *got = nr_aligned_alloc(64, ab);

    for (int pass = 0; pass < 6; pass++) {
        for (int i = 0; i < k; i++) {
            switch (pass) {
            case 0:
                x[i] = nrand();
                break;
            case 1: /* amax 127 -> d = 1: halves are exact ties */
                x[i] = i % 32 == 0 ? 127.0f : (float)((int)(rng_next() % 41) - 20) * 0.5f;
                break;
            case 2:
                x[i] = i < 300 ? 0.0f : nrand() * 1e-38f; /* zeros, subnormals */
                break;
            case 3:
                x[i] = nrand() * 1e37f;
                break;
            case 4:
                x[i] = nrand();
                if (i == 40)
                    x[i] = NAN;
                if (i == 700)
                    x[i] = -INFINITY;
                break;
            default:
                x[i] = nrand() * (float)(1 << (i % 20)) * 1e-3f;
                break;
            }
        }
        for (int q8k = 0; q8k < 2; q8k++) {
            int wt = q8k ? NR_GGML_Q4_K : NR_GGML_Q4_0;
            size_t sums = q8k ? (size_t)k / 256 * 4 + (size_t)k / 16 * 2 : (size_t)k / 32 * 8;
            nr_quant_kernels_force(&nr_quant_scalar_kernels);
            memset(ref, 0, ab);
            nr_quant_act(wt, x, k, ref);
            for (size_t v = 0; v < sizeof variant_names / sizeof variant_names[0]; v++) {
                const struct nr_quant_kernels *K = nr_quant_kernels_by_name(variant_names[v]);
                if (!K)
                    continue;
                nr_quant_kernels_force(K);
                memset(got, 0, ab);
                nr_quant_act(wt, x, k, got);
                NR_CHECK_MSG(!memcmp(got, ref, (size_t)k), "%s act %s pass %d: quants differ",
                             K->name, q8k ? "q8k" : "q8", pass);
                /* scales (NaN == NaN bitwise) and sums */
                NR_CHECK_MSG(
                    !memcmp(got + nr_qa_up64((size_t)k), ref + nr_qa_up64((size_t)k), sums),
                    "%s act %s pass %d: scales or sums differ", K->name, q8k ? "q8k" : "q8", pass);
            }
        }
    }
    nr_quant_kernels_force(NULL);
    nr_free(x);
    nr_free(ref);
    nr_free(got);
}

/* ------------------------------------------------------------ dots (scalar) */

/*
 * The quantized dot equals the double dot of dequantized weights with the
 * dequantized act (the integer formulas are right) within fp32 accumulation
 * error: |v - ref| <= 1e-5 * sum |w a|. And it is within the act's rounding
 * of the true dot: |v - w.x| <= sum_i |w_i| * d(i) / 2 + 1e-5 * sum |w x|.
 */
static void test_dot_vs_dequant(void)
{
    const int k = 2048;
    float *x = nr_malloc(k * 4), *wd = nr_malloc(k * 4), *ad = nr_malloc(k * 4);
    uint8_t *w = nr_malloc(nr_quant_row_bytes(NR_GGML_F32, k));
    uint8_t *xq = nr_aligned_alloc(64, nr_quant_act_bytes(NR_GGML_F32, k));

    nr_quant_kernels_force(&nr_quant_scalar_kernels);
    for (int t = 0; t < NTYPES; t++) {
        int wt = all_types[t];
        int per = nr_quant_block(wt) == 256 ? 256 : 32;
        struct nr_qmat W = {wt, 1, k, nr_quant_row_bytes(wt, k), w};
        for (int rep = 0; rep < 4; rep++) {
            double ref = 0, mag = 0, exact = 0, emag = 0, abound = 0;
            random_row(wt, w, k, 0);
            for (int i = 0; i < k; i++)
                x[i] = nrand() * (rep == 3 && i % 64 == 0 ? 20.0f : 1.0f);
            nr_quant_act(wt, x, k, xq);
            nr_quant_dequant_row(wt, w, wd, k);
            act_dequant(wt, xq, k, ad);
            for (int i = 0; i < k; i++) {
                ref += (double)wd[i] * ad[i];
                mag += fabs((double)wd[i] * ad[i]);
                exact += (double)wd[i] * x[i];
                emag += fabs((double)wd[i] * x[i]);
                if (nr_quant_block(wt) > 1)
                    abound += fabs(wd[i]) * nr_qa_d(xq, k)[i / per] * 0.5;
            }
            float v = nr_quant_dot_row(&W, 0, xq);
            NR_CHECK_MSG(fabs(v - ref) <= 1e-5 * mag, "%s: dot %.9g vs dequantized %.9g (mag %g)",
                         nr_quant_name(wt), v, ref, mag);
            NR_CHECK_MSG(fabs(v - exact) <= abound + 1e-5 * emag,
                         "%s: dot %.9g vs fp32 %.9g beyond the act rounding bound %g",
                         nr_quant_name(wt), v, exact, abound);
        }
    }
    nr_quant_kernels_force(NULL);
    nr_free(x);
    nr_free(wd);
    nr_free(ad);
    nr_free(w);
    nr_free(xq);
}

/* ------------------------------------------------------------ SIMD vs scalar */

/*
 * Activations whose act is exact: integers in [-2, 2] with one ±127 per
 * 256 (so every block scale is exactly 1), for the exact tests.
 */
static void integer_act(float *x, int k)
{
    for (int i = 0; i < k; i++)
        x[i] = (float)((int)(rng_next() % 5) - 2);
    for (int i = 0; i < k; i += 32)
        x[i + (int)(rng_next() % 32)] = rng_next() & 1 ? 127.0f : -127.0f;
}

static void test_simd_vs_scalar(void)
{
    /* odd shapes: one block, a few, a long row (k up to 4096 + a block) */
    static const int kblocks[] = {1, 3, 7, 16, 17};
    const int kmax = 17 * 256;
    const size_t abytes = nr_quant_act_bytes(NR_GGML_F32, kmax);
    float *x = nr_malloc((size_t)kmax * 4);
    uint8_t *w = nr_malloc(nr_quant_row_bytes(NR_GGML_F32, kmax) + 64);
    uint8_t *xq = nr_aligned_alloc(64, abytes * NR_QUANT_MR);
    int any = 0;

    for (size_t v = 0; v < sizeof variant_names / sizeof variant_names[0]; v++) {
        const struct nr_quant_kernels *K = nr_quant_kernels_by_name(variant_names[v]);
        if (!K)
            continue;
        note_tested(K->name);
        for (int t = 0; t < NTYPES; t++) {
            int wt = all_types[t];
            nr_qdot_fn fs = nr_quant_scalar_kernels.dot[wt], fv = K->dot[wt] ? K->dot[wt] : fs;
            int block = nr_quant_block(wt) == 1 ? 32 : nr_quant_block(wt);
            for (size_t kb = 0; kb < sizeof kblocks / sizeof kblocks[0]; kb++) {
                int k = kblocks[kb] * block;
                size_t xs = nr_quant_act_bytes(wt, k);
                for (int exact = 0; exact < 2; exact++) {
                    float vs[NR_QUANT_MR], vv[NR_QUANT_MR];
                    /* the weight row at an odd address: blocks are unaligned in files */
                    uint8_t *wr = w + 1 + (int)(rng_next() % 7);
                    random_row(wt, wr, k, exact);
                    for (int j = 0; j < NR_QUANT_MR; j++) {
                        if (exact)
                            integer_act(x, k);
                        else
                            for (int i = 0; i < k; i++)
                                x[i] = nrand();
                        nr_quant_act(wt, x, k, xq + (size_t)j * xs);
                    }
                    for (int nx = 1; nx <= NR_QUANT_MR; nx++) {
                        fs(wr, xq, xs, nx, k, vs);
                        fv(wr, xq, xs, nx, k, vv);
                        for (int j = 0; j < nx; j++) {
                            /* magnitude: sum |w a| in double, for the relative bound */
                            float *wd = nr_malloc((size_t)k * 4), *ad = nr_malloc((size_t)k * 4);
                            double mag = 0;
                            nr_quant_dequant_row(wt, wr, wd, k);
                            act_dequant(wt, xq + (size_t)j * xs, k, ad);
                            for (int i = 0; i < k; i++)
                                mag += fabs((double)wd[i] * ad[i]);
                            nr_free(wd);
                            nr_free(ad);
                            if (exact && nr_quant_block(wt) > 1)
                                NR_CHECK_MSG(vv[j] == vs[j],
                                             "%s %s k=%d nx=%d row %d: %.9g != scalar %.9g",
                                             K->name, nr_quant_name(wt), k, nx, j, vv[j], vs[j]);
                            else
                                NR_CHECK_MSG(fabs(vv[j] - vs[j]) <= 2e-6 * mag + 1e-30,
                                             "%s %s k=%d nx=%d row %d: %.9g vs scalar %.9g "
                                             "(bound 2e-6 * %g)",
                                             K->name, nr_quant_name(wt), k, nx, j, vv[j], vs[j],
                                             mag);
                        }
                    }
                    any++;
                }
            }
        }
    }
    NR_CHECK(any > 0);
    nr_free(x);
    nr_free(w);
    nr_free(xq);
}

/* ------------------------------------------------------------ matvec / matmul */

static void test_matvec_matmul(void)
{
    const int n = 77, k = 768, mmax = 9; /* n: not a multiple of 16 */
    struct nr_pool *pools[3] = {nr_pool_new(1), nr_pool_new(2), nr_pool_new(3)};
    float *x = nr_malloc((size_t)k * 4);
    float *ref = nr_malloc((size_t)n * mmax * 4), *y = nr_malloc((size_t)(n + 3) * mmax * 4);
    uint8_t *w = nr_malloc(nr_quant_row_bytes(NR_GGML_F32, k) * n);
    uint8_t *xq = nr_aligned_alloc(64, nr_quant_act_bytes(NR_GGML_F32, k) * mmax);

    NR_CHECK(pools[0] && pools[1] && pools[2]);
    for (size_t v = 0; v < sizeof variant_names / sizeof variant_names[0]; v++) {
        const struct nr_quant_kernels *K = nr_quant_kernels_by_name(variant_names[v]);
        if (!K)
            continue;
        nr_quant_kernels_force(K);
        for (int t = 0; t < NTYPES; t++) {
            int wt = all_types[t];
            size_t rb = nr_quant_row_bytes(wt, k), xs = nr_quant_act_bytes(wt, k);
            struct nr_qmat W = {wt, n, k, rb, w};
            for (int r = 0; r < n; r++)
                random_row(wt, w + (size_t)r * rb, k, 0);
            for (int i = 0; i < mmax; i++) {
                for (int j = 0; j < k; j++)
                    x[j] = nrand();
                nr_quant_act(wt, x, k, xq + (size_t)i * xs);
            }
            for (int i = 0; i < mmax; i++)
                for (int r = 0; r < n; r++)
                    ref[(size_t)i * n + r] = nr_quant_dot_row(&W, r, xq + (size_t)i * xs);
            for (int p = -1; p < 3; p++) {
                memset(y, 0, (size_t)n * 4);
                nr_quant_matvec(p < 0 ? NULL : pools[p], &W, xq, y);
                NR_CHECK_MSG(!memcmp(y, ref, (size_t)n * 4), "%s %s matvec (pool %d) != dot_row",
                             K->name, nr_quant_name(wt), p + 1);
            }
            for (int m = 1; m <= mmax; m++) {
                int ldc = n + 3;
                for (int p = -1; p < 3; p += 2) {
                    for (size_t i = 0; i < (size_t)ldc * m; i++)
                        y[i] = -7.0f;
                    nr_quant_matmul(p < 0 ? NULL : pools[p], &W, xq, m, y, ldc);
                    for (int i = 0; i < m; i++) {
                        NR_CHECK_MSG(
                            !memcmp(y + (size_t)i * ldc, ref + (size_t)i * n, (size_t)n * 4),
                            "%s %s matmul m=%d row %d (pool %d) != dot_row", K->name,
                            nr_quant_name(wt), m, i, p + 1);
                        /* the padding between rows of C is not touched */
                        NR_CHECK(y[(size_t)i * ldc + n] == -7.0f);
                    }
                }
            }
        }
    }
    nr_quant_kernels_force(NULL);
    for (int p = 0; p < 3; p++)
        nr_pool_free(pools[p]);
    nr_free(x);
    nr_free(ref);
    nr_free(y);
    nr_free(w);
    nr_free(xq);
}

/* nr_quant_matvec_n: a group of matrices of mixed types and sizes, each with
 * its own activation, equals dot_row per row bitwise for every thread count;
 * nm outside 1..NR_QUANT_MAX_GROUP touches nothing. */
static void test_matvec_group(void)
{
    enum { K = 768, G = 3 };
    static const int ns[G] = {77, 16, 300};
    struct nr_pool *pools[3] = {nr_pool_new(1), nr_pool_new(2), nr_pool_new(3)};
    uint8_t *w[G], *xq[G];
    float *ref[G], *y[G], x[K];

    NR_CHECK(pools[0] && pools[1] && pools[2]);
    for (int i = 0; i < G; i++) {
        w[i] = nr_malloc(nr_quant_row_bytes(NR_GGML_F32, K) * ns[i]);
        xq[i] = nr_aligned_alloc(64, nr_quant_act_bytes(NR_GGML_F32, K));
        ref[i] = nr_malloc((size_t)ns[i] * 4);
        y[i] = nr_malloc((size_t)ns[i] * 4);
    }
    for (int t = 0; t < NTYPES; t++) {
        struct nr_qmat W[G];
        const struct nr_qmat *Wp[G] = {&W[0], &W[1], &W[2]};
        const void *xp[G] = {xq[0], xq[1], xq[2]};
        for (int i = 0; i < G; i++) {
            int wt = all_types[(t + 3 * i) % NTYPES];
            size_t rb = nr_quant_row_bytes(wt, K);
            W[i] = (struct nr_qmat){wt, ns[i], K, rb, w[i]};
            for (int r = 0; r < ns[i]; r++)
                random_row(wt, w[i] + (size_t)r * rb, K, 0);
            for (int j = 0; j < K; j++)
                x[j] = nrand();
            nr_quant_act(wt, x, K, xq[i]);
            for (int r = 0; r < ns[i]; r++)
                ref[i][r] = nr_quant_dot_row(&W[i], r, xq[i]);
        }
        for (int p = -1; p < 3; p++) {
            for (int i = 0; i < G; i++)
                memset(y[i], 0, (size_t)ns[i] * 4);
            nr_quant_matvec_n(p < 0 ? NULL : pools[p], G, Wp, xp, y);
            for (int i = 0; i < G; i++)
                NR_CHECK_MSG(!memcmp(y[i], ref[i], (size_t)ns[i] * 4),
                             "group matrix %d (%s, %d rows, pool %d) != dot_row", i,
                             nr_quant_name(W[i].type), ns[i], p + 1);
        }
        for (int i = 0; i < G; i++)
            y[i][0] = -7.0f;
        nr_quant_matvec_n(pools[2], 0, Wp, xp, y);
        nr_quant_matvec_n(pools[2], NR_QUANT_MAX_GROUP + 1, Wp, xp, y);
        NR_CHECK(y[0][0] == -7.0f && y[1][0] == -7.0f && y[2][0] == -7.0f);
    }
    for (int p = 0; p < 3; p++)
        nr_pool_free(pools[p]);
    for (int i = 0; i < G; i++) {
        nr_free(w[i]);
        nr_free(xq[i]);
        nr_free(ref[i]);
        nr_free(y[i]);
    }
}

/* ------------------------------------------------------------ f16 helpers */

static void test_f16_helpers(void)
{
    static const int sizes[] = {1, 7, 16, 33, 64, 100, 1000};
    float a[1000], y0[1000], y1[1000], b[1000];
    uint16_t h[1000], h1[1000];

    for (size_t v = 0; v < sizeof variant_names / sizeof variant_names[0]; v++) {
        const struct nr_quant_kernels *K = nr_quant_kernels_by_name(variant_names[v]);
        if (!K)
            continue;
        nr_quant_kernels_force(K);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            for (int i = 0; i < n; i++) {
                /* normal, subnormal, overflowing and exact-tie values */
                a[i] = nrand() * (i % 11 == 0 ? 1e-6f : 1.0f) * (i % 13 == 0 ? 1e5f : 1.0f);
                if (i % 17 == 3)
                    a[i] = 1.0f + 1.0f / 2048.0f; /* a tie: rounds to even (1.0) */
                b[i] = nrand();
            }
            nr_quant_f32_to_f16(a, h, n);
            nr_quant_scalar_kernels.f32_to_f16(a, h1, n);
            NR_CHECK_MSG(!memcmp(h, h1, (size_t)n * 2), "%s f32_to_f16 n=%d differs", K->name, n);
            /* dot and axpy on finite halves (the overflowed ones become 1.0) */
            for (int i = 0; i < n; i++)
                if ((h[i] & 0x7c00) == 0x7c00)
                    h[i] = 0x3c00;
            double ref = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                ref += (double)nr_fp16_to_fp32(h[i]) * b[i];
                mag += fabs((double)nr_fp16_to_fp32(h[i]) * b[i]);
            }
            float d = nr_quant_dot_f16(h, b, n);
            NR_CHECK_MSG(fabs(d - ref) <= 1e-6 * mag + 1e-30, "%s dot_f16 n=%d: %.9g vs %.9g",
                         K->name, n, d, ref);
            for (int i = 0; i < n; i++)
                y0[i] = y1[i] = b[i];
            nr_quant_axpy_f16(y0, 0.37f, h, n);
            nr_quant_scalar_kernels.axpy_f16(y1, 0.37f, h, n);
            for (int i = 0; i < n; i++) {
                /* one fused or two rounded operations: within 1 ulp of each term */
                double bound = 1.2e-7 * (fabs(b[i]) + fabs(0.37 * nr_fp16_to_fp32(h[i])));
                NR_CHECK_MSG(fabs(y0[i] - y1[i]) <= bound, "%s axpy_f16 n=%d i=%d", K->name, n, i);
            }
        }
    }
    nr_quant_kernels_force(NULL);
}

int main(void)
{
    NR_RUN(test_traits);
    NR_RUN(test_dequant_gguf);
    NR_RUN(test_quantize_gguf);
    NR_RUN(test_real_rows);
    NR_RUN(test_quantize_roundtrip);
    NR_RUN(test_act);
    NR_RUN(test_act_variants);
    NR_RUN(test_dot_vs_dequant);
    NR_RUN(test_simd_vs_scalar);
    NR_RUN(test_matvec_matmul);
    NR_RUN(test_matvec_group);
    NR_RUN(test_f16_helpers);
    printf("variants tested: %s\n", tested_names);
    return nr_test_summary();
}
