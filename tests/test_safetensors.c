/*
 * safetensors reader: hand-made valid files, one bad header per rule (each
 * asserting its code and its own message), truncation at every byte,
 * allocation failure at every allocation, and the real all-MiniLM-L6-v2
 * file (which must be present: a missing model fails the test).
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 8-byte length + json + data_len pattern bytes, in an exact-size malloc'd buffer. */
static unsigned char *make_st(const char *json, size_t data_len, size_t *len)
{
    size_t hl = strlen(json);
    unsigned char *b = malloc(8 + hl + data_len);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hl + i] = (unsigned char)(i * 13 + 1);
    *len = 8 + hl + data_len;
    return b;
}

static int open_expect(const void *buf, size_t len, int code, const char *substr)
{
    struct nr_st *st = NULL;
    int rc = nr_st_open_mem(buf, len, &st);
    int ok = rc == code && (!substr || strstr(nr_err_msg(), substr));
    if (!ok)
        nr_test_fail(__FILE__, __LINE__, "want %s '%s', got %s '%s'", nr_err_name(code),
                     substr ? substr : "", nr_err_name(rc), nr_err_msg());
    if (rc == NR_OK)
        nr_st_close(st);
    else
        NR_CHECK(st == NULL);
    return ok;
}

/* Three tensors out of header order, a scalar, a zero-size one, metadata. */
static const char *valid_json =
    "{\"b\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]},"
    "\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[40,42]},"
    "\"z\":{\"dtype\":\"BOOL\",\"shape\":[0,5],\"data_offsets\":[42,42]},"
    "\"u\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[42,44]}}    ";

static void test_valid(void)
{
    size_t len;
    unsigned char *b = make_st(valid_json, 44, &len);
    size_t data0 = 8 + strlen(valid_json);
    struct nr_st *st = NULL;
    const struct nr_st_tensor *t;
    const char *k, *v;

    NR_CHECK_INT(nr_st_open_mem(b, len, &st), NR_OK);
    if (!st) {
        free(b);
        return;
    }
    NR_CHECK_INT(st->n_tensors, 5);
    /* sorted by data offset: a, b, s, then z and u (both begin at 42; z ends first) */
    NR_CHECK(strcmp(st->tensors[0].name, "a") == 0);
    NR_CHECK(strcmp(st->tensors[1].name, "b") == 0);
    NR_CHECK(strcmp(st->tensors[2].name, "s") == 0);
    NR_CHECK(strcmp(st->tensors[3].name, "z") == 0);
    NR_CHECK(strcmp(st->tensors[4].name, "u") == 0);

    t = nr_st_find(st, "a");
    NR_CHECK(t && t->dtype == NR_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    NR_CHECK(t && t->nbytes == 24 && t->data == b + data0);
    t = nr_st_find(st, "b");
    NR_CHECK(t && t->dtype == NR_ST_I64 && t->nbytes == 16 && t->data == b + data0 + 24);
    NR_CHECK(t && memcmp(t->data, b + data0 + 24, 16) == 0);
    t = nr_st_find(st, "s");
    NR_CHECK(t && t->ndim == 0 && t->nbytes == 2 && t->dtype == NR_ST_F16);
    t = nr_st_find(st, "z");
    NR_CHECK(t && t->ndim == 2 && t->nbytes == 0 && t->dtype == NR_ST_BOOL);
    t = nr_st_find(st, "u");
    NR_CHECK(t && t->ndim == 8 && t->shape[7] == 2 && t->nbytes == 2);
    NR_CHECK(nr_st_find(st, "__metadata__") == NULL);
    NR_CHECK(nr_st_find(st, "c") == NULL);

    NR_CHECK_INT(nr_st_n_meta(st), 2);
    NR_CHECK(nr_st_meta(st, "format") && strcmp(nr_st_meta(st, "format"), "pt") == 0);
    NR_CHECK(nr_st_meta(st, "nope") == NULL);
    NR_CHECK_INT(nr_st_meta_at(st, 1, &k, &v), NR_OK);
    NR_CHECK_INT(nr_st_meta_at(st, 2, &k, &v), NR_EINVAL);

    NR_CHECK_INT(nr_st_expect(st, "a", NR_ST_F32, 2, (int64_t[]){2, 3}, &t), NR_OK);
    NR_CHECK(t == nr_st_find(st, "a"));
    NR_CHECK_INT(nr_st_expect(st, "a", NR_ST_F32, 2, (int64_t[]){-1, 3}, NULL), NR_OK);
    NR_CHECK_INT(nr_st_expect(st, "a", NR_ST_F32, 2, (int64_t[]){3, 2}, NULL), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "tensor 'a' has shape [2, 3], expected [3, 2]"));
    NR_CHECK_INT(nr_st_expect(st, "a", NR_ST_F16, -1, NULL, NULL), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "tensor 'a' has dtype F32, expected F16"));
    NR_CHECK_INT(nr_st_expect(st, "a", NR_ST_F32, 3, NULL, NULL), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "has 2 dims, expected 3"));
    NR_CHECK_INT(nr_st_expect(st, "q", NR_ST_F32, -1, NULL, NULL), NR_ENOTFOUND);
    NR_CHECK(strstr(nr_err_msg(), "tensor 'q' is missing"));

    NR_CHECK(strcmp(nr_st_dtype_name(NR_ST_BF16), "BF16") == 0);
    NR_CHECK(strcmp(nr_st_dtype_name(99), "invalid") == 0);
    NR_CHECK_INT(nr_st_dtype_size(NR_ST_I16), 2);
    NR_CHECK_INT(nr_st_dtype_size(-1), 0);
    nr_st_close(st);
    free(b);

    /* Empty object: no tensors; gaps and trailing bytes are accepted. */
    b = make_st("{}", 0, &len);
    open_expect(b, len, NR_OK, NULL);
    free(b);
    b = make_st("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", 10, &len);
    open_expect(b, len, NR_OK, NULL);
    free(b);
}

static void test_bad_headers_table(void)
{
#define T(body)               "{\"t\":{" body "}}"
#define OK_T(dt, shape, offs) T("\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs)
    static const struct {
        const char *what;
        const char *json; /* NULL: the row builds raw bytes below */
        size_t data;
        int code;
        const char *msg;
    } rows[] = {
        {"not JSON", "{\"t\":", 0, NR_EFORMAT, "header is not valid JSON"},
        {"not an object", "[1,2]", 0, NR_EFORMAT, "header is not a JSON object"},
        {"duplicate name", "{\"a\":{},\"a\":{}}", 0, NR_EFORMAT, "duplicate object key"},
        {"trailing garbage", "{} x", 0, NR_EFORMAT, "end of file expected"},
        {"NUL in name", "{\"a\\u0000b\":{}}", 0, NR_EFORMAT, "NUL byte in object key"},
        {"NUL in string", "{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, NR_EFORMAT,
         "\\u0000 is not allowed"},
        {"bad UTF-8", "{\"\xff\":{}}", 0, NR_EFORMAT, "unable to decode byte 0xff"},
        {"metadata type", "{\"__metadata__\":[]}", 0, NR_EFORMAT, "__metadata__ is not an object"},
        {"metadata value", "{\"__metadata__\":{\"k\":1}}", 0, NR_EFORMAT,
         "__metadata__ value of 'k' is not a string"},
        {"empty name", "{\"\":{}}", 0, NR_EFORMAT, "empty tensor name"},
        {"entry type", "{\"t\":[]}", 0, NR_EFORMAT, "tensor 't': entry is not an object"},
        {"unknown field", T("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":0"), 1,
         NR_EFORMAT, "unknown field 'extra'"},
        {"missing dtype", T("\"shape\":[1],\"data_offsets\":[0,1]"), 1, NR_EFORMAT,
         "missing field 'dtype'"},
        {"missing shape", T("\"dtype\":\"U8\",\"data_offsets\":[0,1]"), 1, NR_EFORMAT,
         "missing field 'shape'"},
        {"missing offsets", T("\"dtype\":\"U8\",\"shape\":[1]"), 1, NR_EFORMAT,
         "missing field 'data_offsets'"},
        {"dtype type", T("\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,1]"), 1, NR_EFORMAT,
         "dtype is not a string"},
        {"unknown dtype", OK_T("F8_E4M3", "[1]", "[0,1]"), 1, NR_EUNSUPPORTED,
         "unsupported dtype 'F8_E4M3'"},
        {"shape type", OK_T("U8", "{}", "[0,1]"), 1, NR_EFORMAT, "shape is not an array"},
        {"too many dims", OK_T("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1, NR_EFORMAT,
         "shape has 9 dims, max 8"},
        {"negative dim", OK_T("U8", "[1,-1]", "[0,1]"), 1, NR_EFORMAT, "shape[1] is negative"},
        {"float dim", OK_T("U8", "[1.0]", "[0,1]"), 1, NR_EFORMAT, "shape[0] is not an integer"},
        {"element overflow", OK_T("U8", "[4294967296,4294967296,4]", "[0,1]"), 1, NR_EFORMAT,
         "element count overflows"},
        {"byte overflow", OK_T("F64", "[4611686018427387904]", "[0,1]"), 1, NR_EFORMAT,
         "byte size overflows"},
        {"offsets arity", OK_T("U8", "[1]", "[0]"), 1, NR_EFORMAT,
         "data_offsets is not a [begin, end] pair"},
        {"offsets negative", OK_T("U8", "[1]", "[-1,0]"), 1, NR_EFORMAT,
         "data_offsets[0] is negative"},
        {"begin > end", OK_T("U8", "[0]", "[8,4]"), 8, NR_EFORMAT, "begin 8 > end 4"},
        {"end past data", OK_T("U8", "[4]", "[0,4]"), 3, NR_EFORMAT,
         "end 4 is past the end of the data (3 bytes)"},
        {"size mismatch", OK_T("F32", "[2]", "[0,4]"), 8, NR_EFORMAT,
         "span 4 bytes, but F32 of this shape needs 8"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, NR_EFORMAT, "tensors 'a' and 'b' overlap"},
        {"overlap past a gap",
         "{\"big\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[0,10]},"
         "\"mid\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
         "\"late\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}",
         10, NR_EFORMAT, "tensors 'big' and 'mid' overlap"},
        {"short file", NULL, 0, NR_EFORMAT, "too small for the header length"},
        {"header cap", NULL, 1, NR_ELIMIT, "header length 104857601 exceeds"},
        {"header past end", NULL, 2, NR_EFORMAT, "header length 100 runs past the end"},
    };
#undef T
#undef OK_T
    int n_rows = (int)(sizeof rows / sizeof rows[0]);

    for (int i = 0; i < n_rows; i++)
        for (int j = 0; j < n_rows; j++)
            NR_CHECK_MSG(i == j || !strstr(rows[j].msg, rows[i].msg), "rows %s and %s share '%s'",
                         rows[i].what, rows[j].what, rows[i].msg);

    for (int i = 0; i < n_rows; i++) {
        unsigned char *b;
        size_t len;
        if (rows[i].json) {
            b = make_st(rows[i].json, rows[i].data, &len);
        } else {
            /* raw: 5 bytes; an 8-byte length of 100 MiB + 1; a length of 100 over 4 bytes */
            static const uint64_t lens[] = {0, (100u << 20) + 1, 100};
            len = rows[i].data == 0 ? 5 : 12;
            b = malloc(len);
            memset(b, ' ', len);
            for (int k = 0; k < 8 && (size_t)k < len; k++)
                b[k] = (unsigned char)(lens[rows[i].data] >> (8 * k));
        }
        if (!open_expect(b, len, rows[i].code, rows[i].msg))
            printf("    row '%s' failed\n", rows[i].what);
        else
            printf("    %-20s %s\n", rows[i].what, nr_err_msg());
        free(b);
    }
}

static void test_truncation_every_byte(void)
{
    size_t len;
    unsigned char *full = make_st(valid_json, 44, &len);
    for (size_t k = 0; k <= len; k++) {
        unsigned char *b = malloc(k ? k : 1);
        struct nr_st *st = NULL;
        int rc;
        memcpy(b, full, k);
        rc = nr_st_open_mem(b, k, &st);
        if (k < len)
            NR_CHECK_MSG(rc == NR_EFORMAT, "prefix %zu: %s", k, nr_err_msg());
        else
            NR_CHECK_MSG(rc == NR_OK, "full file: %s", nr_err_msg());
        nr_st_close(st);
        free(b);
    }
    /* The header shortened consistently (length field updated): still an error, no crash. */
    for (size_t k = 0; k <= (size_t)(strrchr(valid_json, '}') - valid_json); k++) {
        char *json = malloc(k + 1);
        size_t n;
        unsigned char *b;
        memcpy(json, valid_json, k);
        json[k] = '\0';
        b = make_st(json, 44, &n);
        NR_CHECK_MSG(nr_st_open_mem(b, n, &(struct nr_st *){NULL}) != NR_OK, "header cut at %zu",
                     k);
        free(b);
        free(json);
    }
    free(full);
}

static void test_alloc_failures(void)
{
    size_t len, before = nr_mem_held();
    unsigned char *b = make_st(valid_json, 44, &len);
    int ok_at = 0;
    for (long k = 1; k < 100 && !ok_at; k++) {
        struct nr_st *st = NULL;
        int rc;
        nr_mem_fail_after(k);
        rc = nr_st_open_mem(b, len, &st);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            ok_at = (int)k;
            nr_st_close(st);
        } else {
            NR_CHECK_MSG(rc == NR_ENOMEM, "alloc %ld: %s", k, nr_err_msg());
        }
        NR_CHECK_INT(nr_mem_held(), before);
    }
    NR_CHECK(ok_at > 1);
    free(b);
}

/* The real embedding model: must be present (scripts/fetch_models.sh). */
static void test_minilm_file(void)
{
    const char *path = nr_test_model_path("all-MiniLM-L6-v2/model.safetensors");
    struct nr_st *st = NULL;
    const struct nr_st_tensor *t = NULL;
    int rc = nr_st_open(path, &st);
    NR_CHECK_MSG(rc == NR_OK, "cannot open %s: %s (run scripts/fetch_models.sh)", path,
                 nr_err_msg());
    if (rc)
        return;
    rc = nr_st_expect(st, "embeddings.word_embeddings.weight", NR_ST_F32, 2,
                      (int64_t[]){30522, 384}, &t);
    NR_CHECK_MSG(rc == NR_OK, "%s", nr_err_msg());
    if (rc) {
        for (int i = 0; i < st->n_tensors; i++)
            printf("    %s %s\n", st->tensors[i].name, nr_st_dtype_name(st->tensors[i].dtype));
    } else {
        NR_CHECK_INT(t->nbytes, (size_t)30522 * 384 * 4);
        NR_CHECK_INT((uintptr_t)t->data % 4, 0);
    }
    /* 6 BERT layers of 16 tensors + 5 embedding + 2 pooler + position_ids */
    NR_CHECK_INT(st->n_tensors, 104);
    NR_CHECK(nr_st_meta(st, "format") && strcmp(nr_st_meta(st, "format"), "pt") == 0);
    NR_CHECK_INT(nr_st_expect(st, "encoder.layer.5.attention.self.query.weight", NR_ST_F32, 2,
                              (int64_t[]){384, 384}, NULL),
                 NR_OK);
    NR_CHECK_INT(nr_st_expect(st, "encoder.layer.0.intermediate.dense.weight", NR_ST_F32, 2,
                              (int64_t[]){1536, 384}, NULL),
                 NR_OK);
    /* Real data through the mapping: position_ids holds 0..511. */
    rc = nr_st_expect(st, "embeddings.position_ids", NR_ST_I64, 2, (int64_t[]){1, 512}, &t);
    NR_CHECK_MSG(rc == NR_OK, "%s", nr_err_msg());
    if (!rc) {
        int bad = 0;
        for (int i = 0; i < 512; i++) {
            int64_t v;
            memcpy(&v, (const unsigned char *)t->data + 8 * i, 8);
            bad += v != i;
        }
        NR_CHECK_INT(bad, 0);
    }
    /* Every tensor lies inside the file and ends where the next begins or earlier. */
    for (int i = 1; i < st->n_tensors; i++)
        NR_CHECK((const unsigned char *)st->tensors[i - 1].data + st->tensors[i - 1].nbytes <=
                 (const unsigned char *)st->tensors[i].data);
    nr_st_close(st);
    NR_CHECK_INT(nr_st_open(nr_test_model_path("all-MiniLM-L6-v2/missing.safetensors"), &st),
                 NR_ENOTFOUND);
    NR_CHECK(strstr(nr_err_msg(), "/") == NULL); /* no path in messages */
}

int main(void)
{
    NR_RUN(test_valid);
    NR_RUN(test_bad_headers_table);
    NR_RUN(test_truncation_every_byte);
    NR_RUN(test_alloc_failures);
    NR_RUN(test_minilm_file);
    return nr_test_summary();
}
