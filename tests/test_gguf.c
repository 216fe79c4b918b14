/*
 * GGUF reader and writer: round trips through the writer, one hand-made bad
 * file per reader rule (each asserting its code and its own message),
 * truncation at every byte, and allocation failure at every allocation.
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Position of the only occurrence of needle; fails the test (returns 0) otherwise. */
static size_t find1(const unsigned char *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle), at = 0;
    int hits = 0;
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(buf + i, needle, n) == 0) {
            at = i;
            hits++;
        }
    }
    NR_CHECK_MSG(hits == 1, "'%s' found %d times", needle, hits);
    return at;
}

/* Fill a buffer with a recognisable pattern. */
static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31u + i * 7u + (i >> 8));
}

static int open_expect(const void *buf, size_t len, int code, const char *substr)
{
    struct nr_gguf *g = NULL;
    int rc = nr_gguf_open_mem(buf, len, &g);
    int ok = rc == code && (!substr || strstr(nr_err_msg(), substr));
    if (!ok)
        nr_test_fail(__FILE__, __LINE__, "want %s '%s', got %s '%s'", nr_err_name(code),
                     substr ? substr : "", nr_err_name(rc), nr_err_msg());
    if (rc == NR_OK)
        nr_gguf_close(g);
    else
        NR_CHECK(g == NULL);
    return ok;
}

/* ------------------------------------------------------------------ round trips */

/* Tensor sample data, sized per type; kept alive for the writer (borrowed). */
static unsigned char d_f32[5 * 3 * 4], d_f16[7 * 2], d_bf16[8 * 2], d_q4_0[2 * 2 * 18],
    d_q8_0[32 / 32 * 34], d_q4_k[2 * 144], d_q6_k[2 * 210], d_q2_k[84], d_q5_1[24], d_i32[3 * 4];

static const char *const words[] = {"alpha", "", "gamma delta", "\xce\xbb"};
static const int32_t ids[] = {0, -1, 2147483647, -2147483647 - 1, 42};
static const float scores[] = {0.5f, -1.25f, 3e38f};
static const uint8_t flags[] = {1, 0, 1};
static const int64_t big[] = {INT64_MIN, -1, 0, INT64_MAX};
static const uint16_t shorts[] = {0, 65535};

static struct nr_gguf_writer *build_full(uint32_t alignment)
{
    struct nr_gguf_writer *w = NULL;
    int rc = nr_gguf_writer_new(&w, alignment);
    NR_CHECK_INT(rc, NR_OK);
    if (rc)
        return NULL;
    fill(d_f32, sizeof d_f32, 1);
    fill(d_f16, sizeof d_f16, 2);
    fill(d_bf16, sizeof d_bf16, 3);
    fill(d_q4_0, sizeof d_q4_0, 4);
    fill(d_q8_0, sizeof d_q8_0, 5);
    fill(d_q4_k, sizeof d_q4_k, 6);
    fill(d_q6_k, sizeof d_q6_k, 7);
    fill(d_q2_k, sizeof d_q2_k, 8);
    fill(d_q5_1, sizeof d_q5_1, 9);
    fill(d_i32, sizeof d_i32, 10);
    NR_CHECK_INT(nr_gguf_writer_add_str(w, "general.architecture", "llama"), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_u8(w, "t.u8", 200), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_i8(w, "t.i8", -100), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_u16(w, "t.u16", 60000), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_i16(w, "t.i16", -30000), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_u32(w, "t.u32", 4000000000u), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_i32(w, "t.i32", -2000000000), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_u64(w, "t.u64", UINT64_MAX), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_i64(w, "t.i64", INT64_MIN), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_f32(w, "t.f32", 1e-5f), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_f64(w, "t.f64", 10000.5), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_f64(w, "t.f64.big", 1e300), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_bool(w, "t.bool", 7), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_bool(w, "t.bool.false", 0), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_strn(w, "t.bytes", "a\0b", 3), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_str(w, "t.empty", ""), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr_str(w, "t.words", words, 4), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr_i32(w, "t.ids", ids, 5), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr_f32(w, "t.scores", scores, 3), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr(w, "t.flags", NR_GGUF_BOOL, flags, 3), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr(w, "t.big", NR_GGUF_I64, big, 4), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr(w, "t.shorts", NR_GGUF_U16, shorts, 2), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_arr_i32(w, "t.none", NULL, 0), NR_OK);

    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.f32", NR_GGML_F32, 2, (int64_t[]){5, 3}, d_f32,
                                           sizeof d_f32),
                 NR_OK);
    NR_CHECK_INT(
        nr_gguf_writer_add_tensor(w, "w.f16", NR_GGML_F16, 1, (int64_t[]){7}, d_f16, sizeof d_f16),
        NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.bf16", NR_GGML_BF16, 3, (int64_t[]){2, 2, 2},
                                           d_bf16, sizeof d_bf16),
                 NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.q4_0", NR_GGML_Q4_0, 2, (int64_t[]){64, 2}, d_q4_0,
                                           sizeof d_q4_0),
                 NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.q8_0", NR_GGML_Q8_0, 1, (int64_t[]){32}, d_q8_0,
                                           sizeof d_q8_0),
                 NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.q4_k", NR_GGML_Q4_K, 2, (int64_t[]){256, 2},
                                           d_q4_k, sizeof d_q4_k),
                 NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.q6_k", NR_GGML_Q6_K, 4, (int64_t[]){512, 1, 1, 1},
                                           d_q6_k, sizeof d_q6_k),
                 NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.q2_k", NR_GGML_Q2_K, 1, (int64_t[]){256}, d_q2_k,
                                           sizeof d_q2_k),
                 NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "w.q5_1", NR_GGML_Q5_1, 1, (int64_t[]){32}, d_q5_1,
                                           sizeof d_q5_1),
                 NR_OK);
    NR_CHECK_INT(
        nr_gguf_writer_add_tensor(w, "w.empty", NR_GGML_F32, 2, (int64_t[]){0, 4}, NULL, 0), NR_OK);
    NR_CHECK_INT(
        nr_gguf_writer_add_tensor(w, "w.i32", NR_GGML_I32, 1, (int64_t[]){3}, d_i32, sizeof d_i32),
        NR_OK);
    return w;
}

static void check_tensor(const struct nr_gguf *g, const char *name, int type, int ndim,
                         const int64_t *ne, const void *data, size_t nbytes)
{
    const struct nr_gguf_tensor *t = nr_gguf_find_tensor(g, name);
    NR_CHECK_MSG(t != NULL, "tensor %s missing", name);
    if (!t)
        return;
    NR_CHECK(strcmp(t->name, name) == 0);
    NR_CHECK_INT(t->type, type);
    NR_CHECK_INT(t->ndim, ndim);
    for (int d = 0; d < 4; d++)
        NR_CHECK_INT(t->ne[d], d < ndim ? ne[d] : 1);
    NR_CHECK_INT(t->nbytes, nbytes);
    NR_CHECK_INT(t->offset % nr_gguf_alignment(g), 0);
    NR_CHECK(nbytes == 0 || memcmp(t->data, data, nbytes) == 0);
}

static void check_full(const struct nr_gguf *g, const unsigned char *file, size_t len)
{
    uint32_t u32;
    int32_t i32;
    int64_t i64;
    uint64_t u64, n;
    float f;
    double d;
    int b, et;
    const char *s;
    size_t sl;
    char buf[16];

    NR_CHECK_INT(nr_gguf_version(g), 3);
    NR_CHECK_INT(nr_gguf_n_tensors(g), 11);
    NR_CHECK_INT(nr_gguf_data_offset(g) % nr_gguf_alignment(g), 0);

    /* Every type through its natural getter. */
    NR_CHECK_INT(nr_gguf_get_str(g, "general.architecture", &s, &sl), NR_OK);
    NR_CHECK(sl == 5 && memcmp(s, "llama", 5) == 0);
    NR_CHECK_INT(nr_gguf_get_cstr(g, "general.architecture", buf, sizeof buf), NR_OK);
    NR_CHECK(strcmp(buf, "llama") == 0);
    NR_CHECK_INT(nr_gguf_get_u32(g, "t.u8", &u32), NR_OK);
    NR_CHECK_INT(u32, 200);
    NR_CHECK_INT(nr_gguf_get_i32(g, "t.i8", &i32), NR_OK);
    NR_CHECK_INT(i32, -100);
    NR_CHECK_INT(nr_gguf_get_u32(g, "t.u16", &u32), NR_OK);
    NR_CHECK_INT(u32, 60000);
    NR_CHECK_INT(nr_gguf_get_i64(g, "t.i16", &i64), NR_OK);
    NR_CHECK_INT(i64, -30000);
    NR_CHECK_INT(nr_gguf_get_u32(g, "t.u32", &u32), NR_OK);
    NR_CHECK(u32 == 4000000000u);
    NR_CHECK_INT(nr_gguf_get_i32(g, "t.i32", &i32), NR_OK);
    NR_CHECK_INT(i32, -2000000000);
    NR_CHECK_INT(nr_gguf_get_u64(g, "t.u64", &u64), NR_OK);
    NR_CHECK(u64 == UINT64_MAX);
    NR_CHECK_INT(nr_gguf_get_i64(g, "t.i64", &i64), NR_OK);
    NR_CHECK(i64 == INT64_MIN);
    NR_CHECK_INT(nr_gguf_get_f32(g, "t.f32", &f), NR_OK);
    NR_CHECK(f == 1e-5f);
    NR_CHECK_INT(nr_gguf_get_f64(g, "t.f64", &d), NR_OK);
    NR_CHECK(d == 10000.5);
    NR_CHECK_INT(nr_gguf_get_f32(g, "t.f64", &f), NR_OK); /* f64 narrowed */
    NR_CHECK(f == 10000.5f);
    NR_CHECK_INT(nr_gguf_get_bool(g, "t.bool", &b), NR_OK);
    NR_CHECK_INT(b, 1);
    NR_CHECK_INT(nr_gguf_get_bool(g, "t.bool.false", &b), NR_OK);
    NR_CHECK_INT(b, 0);
    NR_CHECK_INT(nr_gguf_get_str(g, "t.bytes", &s, &sl), NR_OK);
    NR_CHECK(sl == 3 && memcmp(s, "a\0b", 3) == 0);
    NR_CHECK_INT(nr_gguf_get_str(g, "t.empty", &s, &sl), NR_OK);
    NR_CHECK_INT(sl, 0);

    /* Integer getters: any integer type whose value fits; others refused. */
    NR_CHECK_INT(nr_gguf_get_i64(g, "t.u32", &i64), NR_OK);
    NR_CHECK_INT(i64, 4000000000LL);
    NR_CHECK_INT(nr_gguf_get_i32(g, "t.u32", &i32), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "'t.u32' value 4000000000 does not fit in i32"));
    NR_CHECK_INT(nr_gguf_get_u32(g, "t.i8", &u32), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "value -100 does not fit in u32"));
    NR_CHECK_INT(nr_gguf_get_i64(g, "t.u64", &i64), NR_EFORMAT);
    NR_CHECK_INT(nr_gguf_get_u64(g, "t.i64", &u64), NR_EFORMAT);
    NR_CHECK_INT(nr_gguf_get_u32(g, "t.bool", &u32), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "key 't.bool' has type bool, expected u32"));
    NR_CHECK_INT(nr_gguf_get_f32(g, "t.u32", &f), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "key 't.u32' has type u32, expected f32"));
    NR_CHECK_INT(nr_gguf_get_f32(g, "t.f64.big", &f), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "does not fit in f32"));
    NR_CHECK_INT(nr_gguf_get_str(g, "t.u8", &s, &sl), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "has type u8, expected string"));
    NR_CHECK_INT(nr_gguf_get_bool(g, "t.u8", &b), NR_EFORMAT);
    NR_CHECK_INT(nr_gguf_get_u32(g, "no.such.key", &u32), NR_ENOTFOUND);
    NR_CHECK(strstr(nr_err_msg(), "'no.such.key' not found"));
    NR_CHECK_INT(nr_gguf_get_cstr(g, "t.bytes", buf, sizeof buf), NR_EFORMAT);
    NR_CHECK_INT(nr_gguf_get_cstr(g, "general.architecture", buf, 5), NR_ELIMIT);
    NR_CHECK_INT(nr_gguf_get_cstr(g, "general.architecture", buf, 6), NR_OK);

    /* Arrays. */
    NR_CHECK_INT(nr_gguf_get_arr(g, "t.words", &et, &n), NR_OK);
    NR_CHECK_INT(et, NR_GGUF_STRING);
    NR_CHECK_INT(n, 4);
    for (uint64_t i = 0; i < 4; i++) {
        NR_CHECK_INT(nr_gguf_get_arr_str(g, "t.words", i, &s, &sl), NR_OK);
        NR_CHECK(sl == strlen(words[i]) && memcmp(s, words[i], sl) == 0);
    }
    NR_CHECK_INT(nr_gguf_get_arr_str(g, "t.words", 4, &s, &sl), NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "index 4 out of range (4 elements)"));
    NR_CHECK_INT(nr_gguf_get_arr_i32(g, "t.words", 0, &i32), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "has type array of string, expected array of integers"));
    NR_CHECK_INT(nr_gguf_get_arr(g, "t.ids", &et, &n), NR_OK);
    NR_CHECK(et == NR_GGUF_I32 && n == 5);
    for (uint64_t i = 0; i < 5; i++) {
        NR_CHECK_INT(nr_gguf_get_arr_i32(g, "t.ids", i, &i32), NR_OK);
        NR_CHECK_INT(i32, ids[i]);
    }
    for (uint64_t i = 0; i < 3; i++) {
        NR_CHECK_INT(nr_gguf_get_arr_f32(g, "t.scores", i, &f), NR_OK);
        NR_CHECK(f == scores[i]);
        NR_CHECK_INT(nr_gguf_get_arr_bool(g, "t.flags", i, &b), NR_OK);
        NR_CHECK_INT(b, flags[i]);
    }
    for (uint64_t i = 0; i < 4; i++) {
        NR_CHECK_INT(nr_gguf_get_arr_i64(g, "t.big", i, &i64), NR_OK);
        NR_CHECK(i64 == big[i]);
    }
    NR_CHECK_INT(nr_gguf_get_arr_i32(g, "t.big", 0, &i32), NR_EFORMAT);
    NR_CHECK_INT(nr_gguf_get_arr_i32(g, "t.shorts", 1, &i32), NR_OK);
    NR_CHECK_INT(i32, 65535);
    NR_CHECK_INT(nr_gguf_get_arr(g, "t.none", &et, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    NR_CHECK_INT(nr_gguf_get_arr_i32(g, "t.none", 0, &i32), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_get_arr(g, "t.u8", &et, &n), NR_EFORMAT);

    /* KV enumeration in file order. */
    NR_CHECK(nr_gguf_find_key(g, "t.ids") >= 0);
    NR_CHECK_INT(nr_gguf_kv_type(g, nr_gguf_find_key(g, "t.ids")), NR_GGUF_ARRAY);
    NR_CHECK(strcmp(nr_gguf_key(g, nr_gguf_find_key(g, "t.u16")), "t.u16") == 0);
    NR_CHECK_INT(nr_gguf_find_key(g, "t.u1"), -1);
    NR_CHECK(nr_gguf_key(g, nr_gguf_n_kv(g)) == NULL);
    NR_CHECK_INT(nr_gguf_kv_type(g, -1), -1);

    /* Tensors, with data that must match byte for byte. */
    check_tensor(g, "w.f32", NR_GGML_F32, 2, (int64_t[]){5, 3}, d_f32, sizeof d_f32);
    check_tensor(g, "w.f16", NR_GGML_F16, 1, (int64_t[]){7}, d_f16, sizeof d_f16);
    check_tensor(g, "w.bf16", NR_GGML_BF16, 3, (int64_t[]){2, 2, 2}, d_bf16, sizeof d_bf16);
    check_tensor(g, "w.q4_0", NR_GGML_Q4_0, 2, (int64_t[]){64, 2}, d_q4_0, 72);
    check_tensor(g, "w.q8_0", NR_GGML_Q8_0, 1, (int64_t[]){32}, d_q8_0, 34);
    check_tensor(g, "w.q4_k", NR_GGML_Q4_K, 2, (int64_t[]){256, 2}, d_q4_k, 288);
    check_tensor(g, "w.q6_k", NR_GGML_Q6_K, 4, (int64_t[]){512, 1, 1, 1}, d_q6_k, 420);
    check_tensor(g, "w.q2_k", NR_GGML_Q2_K, 1, (int64_t[]){256}, d_q2_k, 84);
    check_tensor(g, "w.q5_1", NR_GGML_Q5_1, 1, (int64_t[]){32}, d_q5_1, 24);
    check_tensor(g, "w.empty", NR_GGML_F32, 2, (int64_t[]){0, 4}, NULL, 0);
    check_tensor(g, "w.i32", NR_GGML_I32, 1, (int64_t[]){3}, d_i32, 12);
    NR_CHECK(nr_gguf_find_tensor(g, "w.nope") == NULL);
    NR_CHECK(nr_gguf_tensor(g, 11) == NULL);
    NR_CHECK(strcmp(nr_gguf_tensor(g, 0)->name, "w.f32") == 0); /* file order */
    for (int i = 0; i < nr_gguf_n_tensors(g); i++) {
        const struct nr_gguf_tensor *t = nr_gguf_tensor(g, i);
        const unsigned char *p = t->data;
        NR_CHECK(p >= file + nr_gguf_data_offset(g) && p + t->nbytes <= file + len);
        NR_CHECK_INT((size_t)(p - file), nr_gguf_data_offset(g) + t->offset);
    }
}

static void test_roundtrip_default_alignment(void)
{
    struct nr_gguf_writer *w = build_full(0);
    struct nr_gguf *g = NULL;
    void *buf = NULL;
    size_t len = 0;
    uint32_t a;
    if (!w)
        return;
    NR_CHECK_INT(nr_gguf_writer_write_to_mem(w, &buf, &len), NR_OK);
    NR_CHECK_INT(len, nr_gguf_writer_size(w));
    NR_CHECK_INT(len % 32, 0);
    NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
    if (g) {
        NR_CHECK_INT(nr_gguf_alignment(g), 32);
        NR_CHECK_INT(nr_gguf_get_u32(g, "general.alignment", &a), NR_ENOTFOUND);
        NR_CHECK_INT(nr_gguf_n_kv(g), 23);
        check_full(g, buf, len);
        nr_gguf_close(g);
    }
    nr_free(buf);
    nr_gguf_writer_free(w);
}

static void test_roundtrip_custom_alignment_file(void)
{
    char path[256];
    struct nr_gguf_writer *w = build_full(256);
    struct nr_gguf *g = NULL;
    void *buf = NULL;
    size_t len = 0;
    uint32_t a = 0;
    if (!w)
        return;
    snprintf(path, sizeof path, "/tmp/nr_test_gguf_%d.gguf", (int)getpid());
    NR_CHECK_INT(nr_gguf_writer_write(w, path), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_write_to_mem(w, &buf, &len), NR_OK);
    NR_CHECK_INT(nr_gguf_open(path, &g), NR_OK);
    if (g) {
        NR_CHECK_INT(nr_gguf_alignment(g), 256);
        NR_CHECK_INT(nr_gguf_get_u32(g, "general.alignment", &a), NR_OK);
        NR_CHECK_INT(a, 256);
        NR_CHECK(strcmp(nr_gguf_key(g, 0), "general.alignment") == 0);
        NR_CHECK_INT(nr_gguf_n_kv(g), 24);
        /* The mapping is page aligned, so tensor data is 256-byte aligned. */
        for (int i = 0; i < nr_gguf_n_tensors(g); i++)
            NR_CHECK_INT((uintptr_t)nr_gguf_tensor(g, i)->data % 256, 0);
        nr_gguf_close(g);
    }
    /* Same bytes through memory; file and buffer are identical. */
    NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
    if (g) {
        check_full(g, buf, len);
        nr_gguf_close(g);
    }
    unlink(path);
    NR_CHECK_INT(nr_gguf_open(path, &g), NR_ENOTFOUND);
    nr_free(buf);
    nr_gguf_writer_free(w);
}

static void test_version2_reads_like_version3(void)
{
    struct nr_gguf_writer *w = build_full(0);
    struct nr_gguf *g = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    if (!w)
        return;
    NR_CHECK_INT(nr_gguf_writer_write_to_mem(w, (void **)&buf, &len), NR_OK);
    put_le(buf + 4, 2, 4);
    NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
    if (g) {
        NR_CHECK_INT(nr_gguf_version(g), 2);
        NR_CHECK_INT(nr_gguf_n_tensors(g), 11);
        nr_gguf_close(g);
    }
    nr_free(buf);
    nr_gguf_writer_free(w);
}

static void test_empty_file_and_zero_counts(void)
{
    unsigned char b[24] = "GGUF";
    struct nr_gguf *g = NULL;
    put_le(b + 4, 3, 4);
    NR_CHECK_INT(nr_gguf_open_mem(b, sizeof b, &g), NR_OK); /* no KVs, no tensors */
    if (g) {
        NR_CHECK_INT(nr_gguf_n_kv(g), 0);
        NR_CHECK_INT(nr_gguf_n_tensors(g), 0);
        NR_CHECK(nr_gguf_find_tensor(g, "x") == NULL);
        NR_CHECK_INT(nr_gguf_find_key(g, "x"), -1);
        nr_gguf_close(g);
    }
    open_expect(NULL, 0, NR_EFORMAT, "reading magic");
}

static void test_type_traits(void)
{
    static const struct {
        int type, blk, bytes;
        const char *name;
    } want[] = {
        {NR_GGML_F32, 1, 4, "F32"},       {NR_GGML_F16, 1, 2, "F16"},
        {NR_GGML_BF16, 1, 2, "BF16"},     {NR_GGML_Q4_0, 32, 18, "Q4_0"},
        {NR_GGML_Q4_1, 32, 20, "Q4_1"},   {NR_GGML_Q5_0, 32, 22, "Q5_0"},
        {NR_GGML_Q5_1, 32, 24, "Q5_1"},   {NR_GGML_Q8_0, 32, 34, "Q8_0"},
        {NR_GGML_Q8_1, 32, 36, "Q8_1"},   {NR_GGML_Q2_K, 256, 84, "Q2_K"},
        {NR_GGML_Q3_K, 256, 110, "Q3_K"}, {NR_GGML_Q4_K, 256, 144, "Q4_K"},
        {NR_GGML_Q5_K, 256, 176, "Q5_K"}, {NR_GGML_Q6_K, 256, 210, "Q6_K"},
        {NR_GGML_Q8_K, 256, 292, "Q8_K"}, {NR_GGML_I8, 1, 1, "I8"},
        {NR_GGML_I16, 1, 2, "I16"},       {NR_GGML_I32, 1, 4, "I32"},
        {NR_GGML_I64, 1, 8, "I64"},       {NR_GGML_F64, 1, 8, "F64"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int blk = 0, bytes = 0;
        const char *name = NULL;
        NR_CHECK_INT(nr_ggml_type_info(want[i].type, &blk, &bytes, &name), NR_OK);
        NR_CHECK_INT(blk, want[i].blk);
        NR_CHECK_INT(bytes, want[i].bytes);
        NR_CHECK(name && strcmp(name, want[i].name) == 0);
    }
    NR_CHECK_INT(nr_ggml_type_info(16, NULL, NULL, NULL), NR_EUNSUPPORTED);
    NR_CHECK(strstr(nr_err_msg(), "IQ2_XXS (16) is not supported"));
    NR_CHECK_INT(nr_ggml_type_info(4, NULL, NULL, NULL), NR_EUNSUPPORTED);
    NR_CHECK_INT(nr_ggml_type_info(-1, NULL, NULL, NULL), NR_EUNSUPPORTED);
    NR_CHECK_INT(nr_ggml_type_info(NR_GGML_TYPE_COUNT, NULL, NULL, NULL), NR_EUNSUPPORTED);
    NR_CHECK(strcmp(nr_ggml_type_name(39), "MXFP4") == 0);
    NR_CHECK(strcmp(nr_ggml_type_name(5), "invalid") == 0);
    size_t nb = 0;
    NR_CHECK_INT(nr_ggml_nbytes(NR_GGML_Q4_K, 2, (int64_t[]){4096, 11008}, &nb), NR_OK);
    NR_CHECK_INT(nb, (size_t)16 * 144 * 11008);
    NR_CHECK_INT(nr_ggml_nbytes(NR_GGML_Q4_K, 2, (int64_t[]){4000, 2}, &nb), NR_EFORMAT);
    NR_CHECK_INT(nr_ggml_nbytes(NR_GGML_F32, 3, (int64_t[]){INT64_MAX, 2, 1}, &nb), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "element count overflows int64"));
    /* element count fits, bytes do not (the "row bytes wrap" bug) */
    NR_CHECK_INT(nr_ggml_nbytes(NR_GGML_F32, 1, (int64_t[]){(1ll << 62) + 1}, &nb), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "byte size overflows"));
    NR_CHECK_INT(nr_ggml_nbytes(NR_GGML_Q8_0, 2, (int64_t[]){32ll << 40, 1ll << 20}, &nb),
                 NR_EFORMAT);
}

static void test_expect(void)
{
    struct nr_gguf_writer *w = build_full(0);
    struct nr_gguf *g = NULL;
    const struct nr_gguf_tensor *t = NULL;
    void *buf = NULL;
    size_t len = 0;
    const uint64_t f = NR_GGML_MASK(NR_GGML_F32) | NR_GGML_MASK(NR_GGML_F16);
    if (!w)
        return;
    NR_CHECK_INT(nr_gguf_writer_write_to_mem(w, &buf, &len), NR_OK);
    NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
    if (g) {
        NR_CHECK_INT(nr_gguf_expect(g, "w.f32", f, 2, (int64_t[]){5, 3}, &t), NR_OK);
        NR_CHECK(t == nr_gguf_find_tensor(g, "w.f32"));
        NR_CHECK_INT(nr_gguf_expect(g, "w.f32", f, 2, (int64_t[]){-1, 3}, NULL), NR_OK);
        NR_CHECK_INT(nr_gguf_expect(g, "w.f32", f, -1, NULL, NULL), NR_OK);
        NR_CHECK_INT(nr_gguf_expect(g, "w.f32", f, 2, (int64_t[]){5, 4}, &t), NR_EFORMAT);
        NR_CHECK(t == NULL);
        NR_CHECK(strstr(nr_err_msg(), "tensor 'w.f32' has shape [5, 3], expected [5, 4]"));
        NR_CHECK_INT(nr_gguf_expect(g, "w.f32", f, 3, NULL, NULL), NR_EFORMAT);
        NR_CHECK(strstr(nr_err_msg(), "tensor 'w.f32' has 2 dims, expected 3"));
        NR_CHECK_INT(nr_gguf_expect(g, "w.q4_k", f, 2, NULL, NULL), NR_EFORMAT);
        NR_CHECK(strstr(nr_err_msg(), "tensor 'w.q4_k' has type Q4_K, expected F32|F16"));
        NR_CHECK_INT(nr_gguf_expect(g, "w.gone", f, 2, NULL, NULL), NR_ENOTFOUND);
        NR_CHECK(strstr(nr_err_msg(), "tensor 'w.gone' is missing"));
        NR_CHECK_INT(nr_gguf_expect(g, "w.f32", f, -1, (int64_t[]){5}, NULL), NR_EINVAL);
        nr_gguf_close(g);
    }
    nr_free(buf);
    nr_gguf_writer_free(w);
}

static void test_writer_rejects(void)
{
    struct nr_gguf_writer *w = NULL;
    unsigned char d[64] = {0};
    NR_CHECK_INT(nr_gguf_writer_new(&w, 3), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_new(&w, 4), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_new(&w, 1u << 21), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_new(&w, 0), NR_OK);
    if (!w)
        return;
    NR_CHECK_INT(nr_gguf_writer_add_u32(w, "a", 1), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_u32(w, "a", 2), NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "duplicate key 'a'"));
    NR_CHECK_INT(nr_gguf_writer_add_str(w, "", "x"), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_str(w, "bad\xff", "x"), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_u32(w, "general.alignment", 64), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_arr(w, "arr", NR_GGUF_STRING, d, 1), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_arr(w, "arr", NR_GGUF_BOOL, (uint8_t[]){0, 2}, 2), NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "t", NR_GGML_F32, 1, (int64_t[]){4}, d, 15),
                 NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "15 bytes given, shape needs 16"));
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "t", NR_GGML_Q8_0, 1, (int64_t[]){16}, d, 17),
                 NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "not a multiple of the Q8_0 block size 32"));
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "t", 16, 1, (int64_t[]){256}, d, 66), NR_EINVAL);
    NR_CHECK_INT(
        nr_gguf_writer_add_tensor(w, "t", NR_GGML_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, d, 4),
        NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "t", NR_GGML_F32, 1, (int64_t[]){-4}, d, 16),
                 NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "", NR_GGML_F32, 1, (int64_t[]){4}, d, 16),
                 NR_EINVAL);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "t", NR_GGML_F32, 1, (int64_t[]){4}, d, 16), NR_OK);
    NR_CHECK_INT(nr_gguf_writer_add_tensor(w, "t", NR_GGML_F32, 1, (int64_t[]){4}, d, 16),
                 NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "duplicate tensor 't'"));
    /* A refused add leaves nothing behind: the file still reads back. */
    {
        void *buf = NULL;
        size_t len = 0;
        struct nr_gguf *g = NULL;
        NR_CHECK_INT(nr_gguf_writer_write_to_mem(w, &buf, &len), NR_OK);
        NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
        if (g) {
            NR_CHECK_INT(nr_gguf_n_kv(g), 1);
            NR_CHECK_INT(nr_gguf_n_tensors(g), 1);
            nr_gguf_close(g);
        }
        nr_free(buf);
    }
    nr_gguf_writer_free(w);
}

/* ------------------------------------------------------------------ bad files */

/*
 * The base file for patching: known keys and tensor names that occur once
 * each, so a patch finds its field by searching for the name.
 */
static unsigned char base_q8[34];
static float base_f32[8] = {1, 2, 3, 4, 5, 6, 7, 8};

static int make_base(uint32_t alignment, unsigned char **buf, size_t *len)
{
    struct nr_gguf_writer *w = NULL;
    const char *const strs[] = {"x", "yy"};
    int rc = nr_gguf_writer_new(&w, alignment);
    if (rc)
        return rc;
    if ((rc = nr_gguf_writer_add_u32(w, "k.count", 7)) ||
        (rc = nr_gguf_writer_add_str(w, "k.name", "hello")) ||
        (rc = nr_gguf_writer_add_bool(w, "k.flag", 1)) ||
        (rc = nr_gguf_writer_add_arr_str(w, "k.words", strs, 2)) ||
        (rc = nr_gguf_writer_add_arr_i32(w, "k.ids", (int32_t[]){1, 2, 3}, 3)) ||
        (rc = nr_gguf_writer_add_u32(w, "k.one", 1)) ||
        (rc = nr_gguf_writer_add_u32(w, "k.two", 2)) ||
        (rc = nr_gguf_writer_add_tensor(w, "tensor.aa", NR_GGML_F32, 2, (int64_t[]){4, 2}, base_f32,
                                        sizeof base_f32)) ||
        (rc = nr_gguf_writer_add_tensor(w, "tensor.bb", NR_GGML_Q8_0, 1, (int64_t[]){32}, base_q8,
                                        sizeof base_q8)) ||
        (rc = nr_gguf_writer_write_to_mem(w, (void **)buf, len))) {
        nr_gguf_writer_free(w);
        return rc;
    }
    nr_gguf_writer_free(w);
    return NR_OK;
}

/* Byte positions in the base file. */
static size_t key_at(unsigned char *b, size_t n, const char *k)
{
    return find1(b, n, k);
}
static size_t type_at(unsigned char *b, size_t n, const char *k)
{
    return find1(b, n, k) + strlen(k);
}
static size_t val_at(unsigned char *b, size_t n, const char *k)
{
    return type_at(b, n, k) + 4;
}
static size_t tname_at(unsigned char *b, size_t n, const char *t)
{
    return find1(b, n, t);
}
/* tensor.bb has 1 dim, tensor.aa 2: fields after the name. */
static size_t ndim_at(unsigned char *b, size_t n, const char *t)
{
    return tname_at(b, n, t) + strlen(t);
}
static size_t ne_at(unsigned char *b, size_t n, const char *t)
{
    return ndim_at(b, n, t) + 4;
}
static size_t ttype_at(unsigned char *b, size_t n, const char *t)
{
    return ne_at(b, n, t) + 8 * get_le(b + ndim_at(b, n, t), 4);
}
static size_t toff_at(unsigned char *b, size_t n, const char *t)
{
    return ttype_at(b, n, t) + 4;
}

/* Each mutator patches the base file in place (it may shorten *n). */
typedef void (*mutate_fn)(unsigned char *b, size_t *n);

static void m_magic(unsigned char *b, size_t *n)
{
    b[0] = 'X';
}
static void m_version0(unsigned char *b, size_t *n)
{
    put_le(b + 4, 0, 4);
}
static void m_version1(unsigned char *b, size_t *n)
{
    put_le(b + 4, 1, 4);
}
static void m_version4(unsigned char *b, size_t *n)
{
    put_le(b + 4, 4, 4);
}
static void m_bigendian(unsigned char *b, size_t *n)
{
    put_le(b + 4, 0x03000000u, 4);
}
static void m_tensor_count_cap(unsigned char *b, size_t *n)
{
    put_le(b + 8, (1u << 20) + 1, 8);
}
static void m_kv_count_cap(unsigned char *b, size_t *n)
{
    put_le(b + 16, 1ull << 40, 8);
}
static void m_counts_dont_fit(unsigned char *b, size_t *n)
{
    put_le(b + 16, 100000, 8);
}
static void m_empty_key(unsigned char *b, size_t *n)
{
    put_le(b + key_at(b, *n, "k.count") - 8, 0, 8);
}
static void m_key_too_long(unsigned char *b, size_t *n)
{
    put_le(b + key_at(b, *n, "k.count") - 8, 70000, 8);
}
static void m_key_truncated(unsigned char *b, size_t *n)
{
    put_le(b + key_at(b, *n, "k.count") - 8, 60000, 8);
}
static void m_key_utf8(unsigned char *b, size_t *n)
{
    b[key_at(b, *n, "k.count") + 1] = 0xC0;
}
static void m_key_nul(unsigned char *b, size_t *n)
{
    b[key_at(b, *n, "k.count") + 1] = 0;
}
static void m_dup_key(unsigned char *b, size_t *n)
{
    memcpy(b + key_at(b, *n, "k.two"), "k.one", 5);
}
static void m_value_type(unsigned char *b, size_t *n)
{
    put_le(b + type_at(b, *n, "k.count"), 13, 4);
}
static void m_bool(unsigned char *b, size_t *n)
{
    b[val_at(b, *n, "k.flag")] = 2;
}
static void m_str_truncated(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "k.name"), 1000000, 8);
}
static void m_str_cap(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "k.name"), (1u << 20) + 1, 8);
}
static void m_arr_type(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "k.ids"), 99, 4);
}
static void m_arr_fit(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "k.words") + 4, 1000000, 8);
}
static void m_arr_cap(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "k.ids") + 4, 1ull << 32, 8);
}
static void m_arr_str_elem(unsigned char *b, size_t *n)
{
    /* second element "yy": its length field lies after "x" */
    put_le(b + find1(b, *n, "yy") - 8, 1u << 21, 8);
}
static void m_empty_tname(unsigned char *b, size_t *n)
{
    put_le(b + tname_at(b, *n, "tensor.aa") - 8, 0, 8);
}
static void m_tname_cap(unsigned char *b, size_t *n)
{
    put_le(b + tname_at(b, *n, "tensor.aa") - 8, 300, 8);
}
static void m_tname_utf8(unsigned char *b, size_t *n)
{
    b[tname_at(b, *n, "tensor.aa")] = 0xFF;
}
static void m_tname_nul(unsigned char *b, size_t *n)
{
    b[tname_at(b, *n, "tensor.aa") + 3] = 0;
}
static void m_dup_tname(unsigned char *b, size_t *n)
{
    memcpy(b + tname_at(b, *n, "tensor.bb"), "tensor.aa", 9);
}
static void m_ndim0(unsigned char *b, size_t *n)
{
    put_le(b + ndim_at(b, *n, "tensor.aa"), 0, 4);
}
static void m_ndim5(unsigned char *b, size_t *n)
{
    put_le(b + ndim_at(b, *n, "tensor.aa"), 5, 4);
}
static void m_neg_dim(unsigned char *b, size_t *n)
{
    put_le(b + ne_at(b, *n, "tensor.aa") + 8, (uint64_t)-2, 8);
}
static void m_removed_type(unsigned char *b, size_t *n)
{
    put_le(b + ttype_at(b, *n, "tensor.aa"), 4, 4);
}
static void m_type_range(unsigned char *b, size_t *n)
{
    put_le(b + ttype_at(b, *n, "tensor.aa"), 1000, 4);
}
static void m_iq_type(unsigned char *b, size_t *n)
{
    put_le(b + ttype_at(b, *n, "tensor.aa"), 16, 4);
}
static void m_block(unsigned char *b, size_t *n)
{
    put_le(b + ne_at(b, *n, "tensor.bb"), 33, 8);
}
static void m_elem_overflow(unsigned char *b, size_t *n)
{
    put_le(b + ne_at(b, *n, "tensor.aa"), 1ull << 62, 8);
    put_le(b + ne_at(b, *n, "tensor.aa") + 8, 1ull << 62, 8);
}
static void m_row_bytes_wrap(unsigned char *b, size_t *n)
{
    /* 2^62+1 f32 elements fit int64, but their 2^64+4 bytes wrap a u64 to 4:
     * the file would pass with 4 bytes of data for 2^62+1 floats. */
    put_le(b + ne_at(b, *n, "tensor.aa"), (1ull << 62) + 1, 8);
    put_le(b + ne_at(b, *n, "tensor.aa") + 8, 1, 8);
}
static void m_offset_unaligned(unsigned char *b, size_t *n)
{
    put_le(b + toff_at(b, *n, "tensor.bb"), 33, 8);
}
static void m_offset_order(unsigned char *b, size_t *n)
{
    put_le(b + toff_at(b, *n, "tensor.bb"), 64, 8);
}
static void m_offset_first(unsigned char *b, size_t *n)
{
    put_le(b + toff_at(b, *n, "tensor.aa"), 32, 8);
    put_le(b + toff_at(b, *n, "tensor.bb"), 0, 8); /* swapped: not declaration order */
}
static void m_data_short(unsigned char *b, size_t *n)
{
    *n -= 40;
} /* cuts tensor.bb's data */
static void m_huge_tensor(unsigned char *b, size_t *n)
{
    /* 2^61 f32 elements: 2^63 bytes, no overflow, far past the end */
    put_le(b + ne_at(b, *n, "tensor.aa"), 1ull << 60, 8);
}
static void m_align_type(unsigned char *b, size_t *n)
{
    b[find1(b, *n, "general.alignmenX") + 16] = 't';
}
static void m_align_zero(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "general.alignment"), 0, 4);
}
static void m_align_pow2(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "general.alignment"), 48, 4);
}
static void m_align_small(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "general.alignment"), 4, 4);
}
static void m_align_big(unsigned char *b, size_t *n)
{
    put_le(b + val_at(b, *n, "general.alignment"), 1u << 21, 4);
}

/* A base file whose general.alignment is a u64 under a near-miss name. */
static int make_align_u64(unsigned char **buf, size_t *len)
{
    struct nr_gguf_writer *w = NULL;
    int rc = nr_gguf_writer_new(&w, 0);
    if (rc)
        return rc;
    if (!(rc = nr_gguf_writer_add_u64(w, "general.alignmenX", 64)))
        rc = nr_gguf_writer_write_to_mem(w, (void **)buf, len);
    nr_gguf_writer_free(w);
    return rc;
}

/* Hand-built: one KV "n" holding `depth` nested arrays around an empty u8 array. */
static size_t make_nested(unsigned char *b, int depth)
{
    size_t n = 0;
    memcpy(b, "GGUF", 4);
    put_le(b + 4, 3, 4);
    put_le(b + 8, 0, 8);
    put_le(b + 16, 1, 8);
    n = 24;
    put_le(b + n, 1, 8);
    b[n + 8] = 'n';
    put_le(b + n + 9, NR_GGUF_ARRAY, 4);
    n += 13;
    for (int d = 1; d < depth; d++) {
        put_le(b + n, NR_GGUF_ARRAY, 4);
        put_le(b + n + 4, 1, 8);
        n += 12;
    }
    put_le(b + n, NR_GGUF_U8, 4);
    put_le(b + n + 4, 0, 8);
    return n + 12;
}

static void test_bad_files_table(void)
{
    static const struct {
        const char *what;
        int base; /* 0: default base, 1: alignment 64 base, 2: near-miss alignment key */
        mutate_fn fn;
        int code;
        const char *msg;
    } rows[] = {
        {"magic", 0, m_magic, NR_EFORMAT, "bad magic"},
        {"version 0", 0, m_version0, NR_EFORMAT, "version 0 is invalid"},
        {"version 1", 0, m_version1, NR_EUNSUPPORTED, "GGUF v1 (32-bit lengths)"},
        {"future version", 0, m_version4, NR_EUNSUPPORTED, "newer than the supported"},
        {"byte-swapped version", 0, m_bigendian, NR_EUNSUPPORTED, "big-endian GGUF files"},
        {"tensor count cap", 0, m_tensor_count_cap, NR_ELIMIT, "tensor count 1048577 exceeds"},
        {"KV count cap", 0, m_kv_count_cap, NR_ELIMIT, "KV count 1099511627776 exceeds"},
        {"counts vs bytes", 0, m_counts_dont_fit, NR_EFORMAT, "tensors cannot fit in the"},
        {"empty key", 0, m_empty_key, NR_EFORMAT, "KV 0: empty key"},
        {"key too long", 0, m_key_too_long, NR_EFORMAT, "key length 70000 exceeds 65535"},
        {"key past end", 0, m_key_truncated, NR_EFORMAT, "reading key (need 60000 bytes"},
        {"key UTF-8", 0, m_key_utf8, NR_EFORMAT, "key is not valid UTF-8"},
        {"key NUL", 0, m_key_nul, NR_EFORMAT, "key contains a NUL byte"},
        {"duplicate key", 0, m_dup_key, NR_EFORMAT, "duplicate key 'k.one'"},
        {"value type", 0, m_value_type, NR_EFORMAT, "('k.count'): invalid value type 13"},
        {"bool value", 0, m_bool, NR_EFORMAT, "invalid bool value 2"},
        {"string past end", 0, m_str_truncated, NR_EFORMAT, "reading string bytes"},
        {"string cap", 0, m_str_cap, NR_ELIMIT, "string length 1048577 exceeds"},
        {"array element type", 0, m_arr_type, NR_EFORMAT, "invalid array element type 99"},
        {"array vs bytes", 0, m_arr_fit, NR_EFORMAT, "1000000 string elements cannot fit"},
        {"array cap", 0, m_arr_cap, NR_ELIMIT, "array of 4294967296 elements exceeds"},
        {"array string cap", 0, m_arr_str_elem, NR_ELIMIT, "array element 1: string length"},
        {"empty tensor name", 0, m_empty_tname, NR_EFORMAT, "tensor 0: empty tensor name"},
        {"tensor name cap", 0, m_tname_cap, NR_ELIMIT, "tensor name length 300 exceeds 256"},
        {"tensor name UTF-8", 0, m_tname_utf8, NR_EFORMAT, "tensor name is not valid UTF-8"},
        {"tensor name NUL", 0, m_tname_nul, NR_EFORMAT, "tensor name contains a NUL"},
        {"duplicate tensor", 0, m_dup_tname, NR_EFORMAT, "duplicate tensor name 'tensor.aa'"},
        {"n_dims 0", 0, m_ndim0, NR_EFORMAT, "n_dims 0 is not in 1..4"},
        {"n_dims 5", 0, m_ndim5, NR_EFORMAT, "n_dims 5 is not in 1..4"},
        {"negative dim", 0, m_neg_dim, NR_EFORMAT, "dimension 1 is negative"},
        {"removed type", 0, m_removed_type, NR_EFORMAT, "invalid tensor type 4"},
        {"type out of range", 0, m_type_range, NR_EFORMAT, "invalid tensor type 1000"},
        {"IQ type", 0, m_iq_type, NR_EUNSUPPORTED, "type IQ2_XXS (16), which is not supported"},
        {"block size", 0, m_block, NR_EFORMAT, "ne[0]=33 is not a multiple of the Q8_0 block"},
        {"element overflow", 0, m_elem_overflow, NR_EFORMAT, "element count overflows int64"},
        {"row bytes wrap", 0, m_row_bytes_wrap, NR_EFORMAT, "'tensor.aa': byte size overflows"},
        {"offset alignment", 0, m_offset_unaligned, NR_EFORMAT,
         "offset 33 is not a multiple of the alignment 32"},
        {"offset running sum", 0, m_offset_order, NR_EFORMAT,
         "offset 64, expected 32 (tensors must be contiguous"},
        {"offsets swapped", 0, m_offset_first, NR_EFORMAT, "'tensor.aa': offset 32, expected 0"},
        {"data past end", 0, m_data_short, NR_EFORMAT, "'tensor.bb': data at file offset"},
        {"huge tensor past end", 0, m_huge_tensor, NR_EFORMAT,
         "9223372036854775808 bytes runs past the end"},
        {"alignment type", 2, m_align_type, NR_EFORMAT, "general.alignment has type u64"},
        {"alignment 0", 1, m_align_zero, NR_EFORMAT, "general.alignment is 0"},
        {"alignment pow2", 1, m_align_pow2, NR_EFORMAT, "general.alignment 48 is not a power"},
        {"alignment < 8", 1, m_align_small, NR_EFORMAT, "general.alignment 4 is not a multiple"},
        {"alignment cap", 1, m_align_big, NR_ELIMIT, "general.alignment 2097152 exceeds"},
    };
    int n_rows = (int)(sizeof rows / sizeof rows[0]);

    /* Each row's message must be its own: no row's substring matches another's. */
    for (int i = 0; i < n_rows; i++)
        for (int j = 0; j < n_rows; j++)
            NR_CHECK_MSG(i == j || !strstr(rows[j].msg, rows[i].msg), "rows %s and %s share '%s'",
                         rows[i].what, rows[j].what, rows[i].msg);

    for (int i = 0; i < n_rows; i++) {
        unsigned char *buf = NULL, *copy;
        size_t len = 0;
        int rc = rows[i].base == 2 ? make_align_u64(&buf, &len)
                                   : make_base(rows[i].base ? 64 : 0, &buf, &len);
        NR_CHECK_INT(rc, NR_OK);
        if (rc)
            continue;
        /* The unpatched base opens (but the near-miss key file has nothing to patch yet). */
        open_expect(buf, len, NR_OK, NULL);
        rows[i].fn(buf, &len);
        /* An exact-size copy so that any read past the end is an ASan error. */
        copy = malloc(len);
        memcpy(copy, buf, len);
        if (!open_expect(copy, len, rows[i].code, rows[i].msg))
            printf("    row '%s' failed\n", rows[i].what);
        else
            printf("    %-22s %s\n", rows[i].what, nr_err_msg());
        free(copy);
        nr_free(buf);
    }

    /* Nesting: 4 levels read (elements not accessible), 5 are refused. */
    {
        unsigned char b[256];
        struct nr_gguf *g = NULL;
        int et = -1;
        uint64_t cnt = 0;
        size_t n = make_nested(b, 4);
        NR_CHECK_INT(nr_gguf_open_mem(b, n, &g), NR_OK);
        if (g) {
            NR_CHECK_INT(nr_gguf_get_arr(g, "n", &et, &cnt), NR_OK);
            NR_CHECK(et == NR_GGUF_ARRAY && cnt == 1);
            NR_CHECK_INT(nr_gguf_get_arr_i32(g, "n", 0, &(int32_t){0}), NR_EFORMAT);
            nr_gguf_close(g);
        }
        n = make_nested(b, 5);
        open_expect(b, n, NR_EFORMAT, "arrays nested deeper than 4");
        /* truncate the nest: every prefix fails */
        for (size_t k = 0; k < n; k++) {
            struct nr_gguf *g2 = NULL;
            NR_CHECK(nr_gguf_open_mem(b, k, &g2) != NR_OK);
        }
    }
}

static void test_truncation_every_byte(void)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    size_t data_end;
    struct nr_gguf *g = NULL;
    int rc = make_base(0, &buf, &len);
    NR_CHECK_INT(rc, NR_OK);
    if (rc)
        return;
    NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
    if (!g) {
        nr_free(buf);
        return;
    }
    {
        const struct nr_gguf_tensor *last = nr_gguf_tensor(g, nr_gguf_n_tensors(g) - 1);
        data_end = nr_gguf_data_offset(g) + last->offset + last->nbytes;
    }
    nr_gguf_close(g);
    NR_CHECK(data_end < len); /* the writer pads the last tensor too */
    for (size_t k = 0; k <= len; k++) {
        unsigned char *copy = malloc(k ? k : 1);
        memcpy(copy, buf, k);
        g = NULL;
        rc = nr_gguf_open_mem(copy, k, &g);
        /* Only the padding after the last tensor may go. */
        if (k < data_end) {
            NR_CHECK_MSG(rc != NR_OK, "prefix of %zu bytes opened", k);
            NR_CHECK_MSG(rc == NR_EFORMAT, "prefix %zu: %s", k, nr_err_msg());
        } else {
            NR_CHECK_MSG(rc == NR_OK, "prefix %zu: %s", k, nr_err_msg());
        }
        nr_gguf_close(g);
        free(copy);
    }
    nr_free(buf);
}

static void test_alloc_failures(void)
{
    struct nr_gguf_writer *w = build_full(64);
    void *buf = NULL;
    size_t len = 0;
    size_t before;
    int ok_at = 0;
    if (!w)
        return;
    NR_CHECK_INT(nr_gguf_writer_write_to_mem(w, &buf, &len), NR_OK);
    nr_gguf_writer_free(w);
    before = nr_mem_held();
    for (long k = 1; k < 200 && !ok_at; k++) {
        struct nr_gguf *g = NULL;
        int rc;
        nr_mem_fail_after(k);
        rc = nr_gguf_open_mem(buf, len, &g);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            ok_at = (int)k;
            nr_gguf_close(g);
        } else {
            NR_CHECK_MSG(rc == NR_ENOMEM, "alloc %ld: %s", k, nr_err_msg());
            NR_CHECK(g == NULL);
        }
        NR_CHECK_INT(nr_mem_held(), before);
    }
    NR_CHECK(ok_at > 1);
    nr_free(buf);

    /* The writer too: every failing allocation is a clean error, no leak. */
    before = nr_mem_held();
    ok_at = 0;
    for (long k = 1; k < 200 && !ok_at; k++) {
        unsigned char *out = NULL;
        size_t n = 0;
        int rc;
        nr_mem_fail_after(k);
        rc = make_base(64, &out, &n);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            ok_at = (int)k;
            nr_free(out);
        } else {
            NR_CHECK_MSG(rc == NR_ENOMEM, "writer alloc %ld: %s", k, nr_err_msg());
        }
        NR_CHECK_INT(nr_mem_held(), before);
    }
    NR_CHECK(ok_at > 1);
}

int main(void)
{
    NR_RUN(test_type_traits);
    NR_RUN(test_roundtrip_default_alignment);
    NR_RUN(test_roundtrip_custom_alignment_file);
    NR_RUN(test_version2_reads_like_version3);
    NR_RUN(test_empty_file_and_zero_counts);
    NR_RUN(test_expect);
    NR_RUN(test_writer_rejects);
    NR_RUN(test_bad_files_table);
    NR_RUN(test_truncation_every_byte);
    NR_RUN(test_alloc_failures);
    return nr_test_summary();
}
