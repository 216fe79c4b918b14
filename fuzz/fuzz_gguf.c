/*
 * Fuzz entry point for the GGUF reader: open the input, then walk every KV
 * through every getter and every tensor through the lookups, touching each
 * tensor's bytes so ASan sees any pointer outside the input. Invariants the
 * reader promises are checked with abort() so that libFuzzer reports them.
 */
#include "nr_err.h"
#include "nr_gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static volatile unsigned sink;

static void touch(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned acc = 0;
    /* first, last and a stride: enough for ASan to see an out-of-range span */
    for (size_t i = 0; i < n; i += 61)
        acc += b[i];
    if (n)
        acc += b[n - 1];
    sink += acc;
}

static void walk_kv(const struct nr_gguf *g, const uint8_t *data, size_t size, int i)
{
    const char *key = nr_gguf_key(g, i);
    int type = nr_gguf_kv_type(g, i), et = -1;
    uint32_t u32;
    int32_t i32;
    uint64_t u64, n = 0;
    int64_t i64;
    float f;
    double d;
    int b;
    const char *s;
    size_t len;
    char buf[64];

    MUST(key && *key);
    MUST(nr_gguf_find_key(g, key) == i); /* keys are unique */
    /* Every getter on every KV: right type or a clean error. */
    (void)nr_gguf_get_u32(g, key, &u32);
    (void)nr_gguf_get_i32(g, key, &i32);
    (void)nr_gguf_get_u64(g, key, &u64);
    (void)nr_gguf_get_i64(g, key, &i64);
    (void)nr_gguf_get_f32(g, key, &f);
    (void)nr_gguf_get_f64(g, key, &d);
    if (nr_gguf_get_bool(g, key, &b) == NR_OK)
        MUST(b == 0 || b == 1);
    if (nr_gguf_get_str(g, key, &s, &len) == NR_OK) {
        MUST((const uint8_t *)s >= data && len <= size && (const uint8_t *)s + len <= data + size);
        touch(s, len);
    }
    (void)nr_gguf_get_cstr(g, key, buf, sizeof buf);
    if (nr_gguf_get_arr(g, key, &et, &n) != NR_OK) {
        MUST(type != NR_GGUF_ARRAY);
        return;
    }
    MUST(type == NR_GGUF_ARRAY && n <= NR_GGUF_MAX_ARR);
    for (uint64_t k = 0; k <= n; k++) { /* one past the end must be refused */
        int rs = nr_gguf_get_arr_str(g, key, k, &s, &len);
        int ri = nr_gguf_get_arr_i32(g, key, k, &i32);
        int rl = nr_gguf_get_arr_i64(g, key, k, &i64);
        int rf = nr_gguf_get_arr_f32(g, key, k, &f);
        int rb = nr_gguf_get_arr_bool(g, key, k, &b);
        if (k == n) {
            MUST(rs != NR_OK && ri != NR_OK && rl != NR_OK && rf != NR_OK && rb != NR_OK);
            break;
        }
        if (rs == NR_OK) {
            MUST(et == NR_GGUF_STRING);
            MUST((const uint8_t *)s >= data && len <= size &&
                 (const uint8_t *)s + len <= data + size);
            touch(s, len);
        }
        if (rb == NR_OK)
            MUST(b == 0 || b == 1);
        (void)ri, (void)rl, (void)rf;
    }
}

static void walk_tensor(const struct nr_gguf *g, const uint8_t *data, size_t size, int i)
{
    const struct nr_gguf_tensor *t = nr_gguf_tensor(g, i), *t2 = NULL;
    const uint8_t *p;
    size_t nb = 0;
    int64_t ne[4];
    int blk = 0, bytes = 0;

    MUST(t && t->name && *t->name);
    MUST(nr_gguf_find_tensor(g, t->name) == t); /* names are unique */
    MUST(t->ndim >= 1 && t->ndim <= 4);
    for (int k = 0; k < 4; k++)
        MUST(t->ne[k] >= 0 && (k < t->ndim || t->ne[k] == 1));
    MUST(nr_ggml_type_info(t->type, &blk, &bytes, NULL) == NR_OK);
    MUST(nr_ggml_nbytes(t->type, t->ndim, t->ne, &nb) == NR_OK && nb == t->nbytes);
    /* The size again, independently, in 128 bits: a reader that let a size
     * wrap would disagree here. Past 2^64 the size is too big whatever
     * follows, so stop multiplying there to stay within 128 bits. */
    MUST(t->ne[0] % blk == 0);
    {
        const unsigned __int128 big = (unsigned __int128)1 << 64;
        unsigned __int128 want = (unsigned __int128)(uint64_t)(t->ne[0] / blk) * (unsigned)bytes;
        int zero = 0;
        for (int k = 0; k < 4; k++)
            zero |= t->ne[k] == 0;
        for (int k = 1; k < 4; k++)
            if (want < big)
                want *= (uint64_t)t->ne[k];
        MUST(zero ? t->nbytes == 0 : want == t->nbytes);
    }
    MUST(t->offset % nr_gguf_alignment(g) == 0);
    p = t->data;
    MUST(p >= data && p - data == (ptrdiff_t)(nr_gguf_data_offset(g) + t->offset));
    MUST(t->nbytes <= size && p + t->nbytes <= data + size);
    touch(p, t->nbytes);
    /* expect() with the tensor's own description passes; a wrong type mask fails */
    memcpy(ne, t->ne, sizeof ne);
    MUST(nr_gguf_expect(g, t->name, NR_GGML_MASK(t->type), t->ndim, ne, &t2) == NR_OK && t2 == t);
    MUST(nr_gguf_expect(g, t->name, ~NR_GGML_MASK(t->type), -1, NULL, NULL) == NR_EFORMAT);
    ne[t->ndim - 1] = ne[t->ndim - 1] == INT64_MAX ? 0 : ne[t->ndim - 1] + 1;
    MUST(nr_gguf_expect(g, t->name, NR_GGML_MASK(t->type), t->ndim, ne, &t2) == NR_EFORMAT &&
         t2 == NULL);
    if (i > 0) { /* contiguous, in order */
        const struct nr_gguf_tensor *prev = nr_gguf_tensor(g, i - 1);
        MUST(prev->offset + prev->nbytes <= t->offset);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nr_gguf *g = NULL;
    int rc = nr_gguf_open_mem(data, size, &g);
    if (rc != NR_OK) {
        MUST(g == NULL && rc < 0 && nr_err_msg()[0] != '\0');
        return 0;
    }
    MUST(nr_gguf_version(g) == 2 || nr_gguf_version(g) == 3);
    MUST(nr_gguf_data_offset(g) % nr_gguf_alignment(g) == 0);
    for (int i = 0; i < nr_gguf_n_kv(g); i++)
        walk_kv(g, data, size, i);
    for (int i = 0; i < nr_gguf_n_tensors(g); i++)
        walk_tensor(g, data, size, i);
    MUST(nr_gguf_tensor(g, nr_gguf_n_tensors(g)) == NULL);
    MUST(nr_gguf_key(g, -1) == NULL);
    nr_gguf_close(g);
    return 0;
}
