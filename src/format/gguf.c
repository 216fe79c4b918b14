/*
 * gguf.c: GGUF reader (v2, v3) and writer (v3).
 *
 * GGUF is ggml's model file: a header, typed key/value metadata, a table of
 * tensor descriptions, then the tensor bytes, aligned so that the file can be
 * mapped and used in place. The reader treats the file as hostile: every
 * length and count is checked against the bytes that remain before it is
 * used to allocate, index or advance, and all size arithmetic is checked for
 * overflow. Nothing is copied except key and tensor names (NUL-terminated,
 * for lookups) and one offset per element of string arrays (for O(1) access
 * to, say, a 150k-token vocabulary).
 *
 * ---- Layout (all integers little-endian, no implicit padding) ----
 *
 *   off  size
 *   0    4     magic "GGUF" (bytes 47 47 55 46)
 *   4    4     u32 version: 2 or 3 (v3 only adds big-endian files, which
 *              show up as a byte-swapped version; v1 had u32 counts and
 *              string lengths and is not read)
 *   8    8     u64 tensor_count
 *   16   8     u64 kv_count
 *   24   ...   kv_count KVs:
 *                string key        u64 len, then len bytes (no NUL)
 *                u32 value_type    0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32,
 *                                  6 f32, 7 bool (1 byte, 0 or 1), 8 string,
 *                                  9 array, 10 u64, 11 i64, 12 f64
 *                value             fixed-size types: their bytes; string: as
 *                                  above; array: u32 element type, u64 count,
 *                                  then count values of that type (arrays
 *                                  may nest)
 *        ...   tensor_count tensor infos:
 *                string name
 *                u32 n_dims        1..4
 *                u64 ne[n_dims]    elements per dim, ne[0] innermost
 *                u32 type          enum nr_ggml_type
 *                u64 offset        bytes from the start of the data section
 *        ...   zero padding up to a multiple of ALIGNMENT
 *              = data section start
 *        ...   tensor data; each tensor's bytes padded to ALIGNMENT
 *
 * ALIGNMENT is the u32 KV general.alignment, 32 when absent. The size of a
 * tensor is ne[0]/block_elems*block_bytes*ne[1]*ne[2]*ne[3] (type table
 * below; quantized types pack block_elems values in block_bytes bytes).
 *
 * ---- Checks (reader), in the order they run ----
 * Codes are NR_EFORMAT unless noted; each has its own message.
 *   1. every read is bounded: "truncated at offset N ... need K bytes, L left"
 *   2. magic is "GGUF"                                   "bad magic"
 *   3. version: 0 invalid; 1 (EUNSUPPORTED, old layout); byte-swapped 2/3
 *      (EUNSUPPORTED, "big-endian"); > 3 (EUNSUPPORTED, "newer")
 *   4. tensor_count <= 2^20 and kv_count <= 2^20 (ELIMIT), and both fit in
 *      the bytes left at their minimum encoded sizes (KV 14 bytes, tensor
 *      info 33 bytes) - before anything is allocated
 *   5. each key: length >= 1 ("empty key"), <= 65535, present, valid UTF-8,
 *      no NUL byte
 *   6. value types are 0..12, also for array elements
 *   7. bool values are 0 or 1
 *   8. value strings <= 1 MiB (ELIMIT) and present
 *   9. arrays: <= 2^24 elements (ELIMIT); count * minimum element size <=
 *      bytes left (before the string-offset table is allocated); nesting
 *      depth <= 4
 *  10. each tensor name: length >= 1, <= 256 (ELIMIT), present, valid UTF-8,
 *      no NUL byte
 *  11. n_dims in 1..4; each ne[d] >= 0 as int64 (zero-size tensors are
 *      allowed, as in ggml)
 *  12. tensor type is a ggml type number (not a removed one); IQ*, TQ*,
 *      MXFP4 are EUNSUPPORTED
 *  13. element count fits int64; byte size fits uint64 and size_t (checked
 *      separately: 2^62+1 f32 elements fit, their bytes do not)
 *  14. ne[0] is a multiple of the type's block size
 *  15. no duplicate keys
 *  16. general.alignment, when present: type u32, non-zero, power of two,
 *      a multiple of 8 (the spec's rule; also keeps every tensor 8-byte
 *      aligned in a mapping), <= 1 MiB (ELIMIT)
 *  17. no duplicate tensor names
 *  18. each offset is a multiple of the alignment, and equals the running
 *      sum of the earlier tensors' padded sizes: tensors are contiguous, in
 *      declaration order. The spec only asks for aligned offsets inside the
 *      data section, but ggml's own reader requires exactly this layout
 *      and every writer produces it, so a file that differs is malformed;
 *      the rule also makes overlap impossible without a separate check.
 *  19. data section start + offset + size <= file size, overflow-checked
 *      (trailing bytes after the last tensor are allowed)
 *
 * Not checked here: what the tensors and hyperparameters mean. That is the
 * architecture loader's job (nr_gguf_expect helps), as is validating UTF-8
 * of value strings (tokenizers do).
 *
 * ---- Lookups ----
 * Keys and tensor names are kept in arrays sorted by name (qsort, then
 * neighbours compared for duplicates; binary search for lookups). Sorting
 * rather than hashing keeps the worst case O(n log n) for any input.
 */
#include "nr_gguf.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIN_KV_BYTES     14 /* key len 8 + key 1 + type 4 + value 1 */
#define MIN_TENSOR_BYTES 33 /* name len 8 + name 1 + n_dims 4 + ne 8 + type 4 + offset 8 */
#define MIN_ARR_BYTES    12 /* nested array element: type 4 + count 8 */
#define ALIGN_KEY        "general.alignment"

/* ------------------------------------------------------------------ types */

struct type_info {
    const char *name; /* NULL: not a type number */
    int blk;          /* elements per block */
    int bytes;        /* bytes per block; 0: recognised but unsupported */
};

static const struct type_info type_table[NR_GGML_TYPE_COUNT] = {
    [NR_GGML_F32] = {"F32", 1, 4},
    [NR_GGML_F16] = {"F16", 1, 2},
    [NR_GGML_Q4_0] = {"Q4_0", 32, 18},
    [NR_GGML_Q4_1] = {"Q4_1", 32, 20},
    [NR_GGML_Q5_0] = {"Q5_0", 32, 22},
    [NR_GGML_Q5_1] = {"Q5_1", 32, 24},
    [NR_GGML_Q8_0] = {"Q8_0", 32, 34},
    [NR_GGML_Q8_1] = {"Q8_1", 32, 36},
    [NR_GGML_Q2_K] = {"Q2_K", 256, 84},
    [NR_GGML_Q3_K] = {"Q3_K", 256, 110},
    [NR_GGML_Q4_K] = {"Q4_K", 256, 144},
    [NR_GGML_Q5_K] = {"Q5_K", 256, 176},
    [NR_GGML_Q6_K] = {"Q6_K", 256, 210},
    [NR_GGML_Q8_K] = {"Q8_K", 256, 292},
    [16] = {"IQ2_XXS", 0, 0},
    [17] = {"IQ2_XS", 0, 0},
    [18] = {"IQ3_XXS", 0, 0},
    [19] = {"IQ1_S", 0, 0},
    [20] = {"IQ4_NL", 0, 0},
    [21] = {"IQ3_S", 0, 0},
    [22] = {"IQ2_S", 0, 0},
    [23] = {"IQ4_XS", 0, 0},
    [NR_GGML_I8] = {"I8", 1, 1},
    [NR_GGML_I16] = {"I16", 1, 2},
    [NR_GGML_I32] = {"I32", 1, 4},
    [NR_GGML_I64] = {"I64", 1, 8},
    [NR_GGML_F64] = {"F64", 1, 8},
    [29] = {"IQ1_M", 0, 0},
    [NR_GGML_BF16] = {"BF16", 1, 2},
    [34] = {"TQ1_0", 0, 0},
    [35] = {"TQ2_0", 0, 0},
    [39] = {"MXFP4", 0, 0},
};

const char *nr_ggml_type_name(int type)
{
    if (type < 0 || type >= NR_GGML_TYPE_COUNT || !type_table[type].name)
        return "invalid";
    return type_table[type].name;
}

int nr_ggml_type_info(int type, int *block_elems, int *block_bytes, const char **name)
{
    if (type < 0 || type >= NR_GGML_TYPE_COUNT || !type_table[type].name)
        return nr_err_set(NR_EUNSUPPORTED, "ggml type %d is not a known type", type);
    if (type_table[type].bytes == 0)
        return nr_err_set(NR_EUNSUPPORTED, "ggml type %s (%d) is not supported",
                          type_table[type].name, type);
    if (block_elems)
        *block_elems = type_table[type].blk;
    if (block_bytes)
        *block_bytes = type_table[type].bytes;
    if (name)
        *name = type_table[type].name;
    return NR_OK;
}

enum size_status { SIZE_OK, SIZE_NEG_DIM, SIZE_BLOCK, SIZE_ELEMS, SIZE_BYTES };

/* Byte size of a tensor of a supported type; a zero dim gives 0 bytes. */
static enum size_status tensor_size(int type, int ndim, const int64_t *ne, size_t *nbytes)
{
    const struct type_info *ti = &type_table[type];
    uint64_t n = 1, rows = 1;
    int zero = 0;

    for (int d = 0; d < ndim; d++) {
        if (ne[d] < 0)
            return SIZE_NEG_DIM;
        if (ne[d] == 0)
            zero = 1;
    }
    if (ne[0] % ti->blk != 0)
        return SIZE_BLOCK;
    if (zero) {
        *nbytes = 0;
        return SIZE_OK;
    }
    /* Element count must fit int64 (ggml's int64 ne arithmetic). */
    for (int d = 0; d < ndim; d++)
        if (__builtin_mul_overflow(n, (uint64_t)ne[d], &n) || n > (uint64_t)INT64_MAX)
            return SIZE_ELEMS;
    for (int d = 1; d < ndim; d++)
        rows *= (uint64_t)ne[d]; /* <= n: cannot overflow */
    /* The byte size can overflow even when the element count fits: 2^62+1
     * f32 values are 2^64+4 bytes. Unchecked, that wrapped to 4 and let a
     * 4-byte tensor claim 2^62+1 elements (regression row "row bytes wrap"). */
    uint64_t row_bytes, total;
    if (__builtin_mul_overflow((uint64_t)(ne[0] / ti->blk), (uint64_t)ti->bytes, &row_bytes) ||
        __builtin_mul_overflow(row_bytes, rows, &total) || total > SIZE_MAX)
        return SIZE_BYTES;
    *nbytes = (size_t)total;
    return SIZE_OK;
}

int nr_ggml_nbytes(int type, int ndim, const int64_t *ne, size_t *nbytes)
{
    int rc = nr_ggml_type_info(type, NULL, NULL, NULL);
    if (rc)
        return rc;
    if (ndim < 1 || ndim > 4)
        return nr_err_set(NR_EFORMAT, "ggml: %d dims, must be 1..4", ndim);
    switch (tensor_size(type, ndim, ne, nbytes)) {
    case SIZE_OK:
        return NR_OK;
    case SIZE_NEG_DIM:
        return nr_err_set(NR_EFORMAT, "ggml: negative dimension");
    case SIZE_BLOCK:
        return nr_err_set(NR_EFORMAT, "ggml: ne[0]=%lld is not a multiple of the %s block size %d",
                          (long long)ne[0], type_table[type].name, type_table[type].blk);
    case SIZE_ELEMS:
        return nr_err_set(NR_EFORMAT, "ggml: element count overflows int64");
    default:
        return nr_err_set(NR_EFORMAT, "ggml: byte size overflows");
    }
}

static const char *const vtype_names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};

const char *nr_gguf_vtype_name(int vtype)
{
    if (vtype < 0 || vtype > NR_GGUF_F64)
        return "invalid";
    return vtype_names[vtype];
}

/* Bytes of a fixed-size value type; 0 for string, array and invalid. */
static size_t vtype_size(int t)
{
    switch (t) {
    case NR_GGUF_U8:
    case NR_GGUF_I8:
    case NR_GGUF_BOOL:
        return 1;
    case NR_GGUF_U16:
    case NR_GGUF_I16:
        return 2;
    case NR_GGUF_U32:
    case NR_GGUF_I32:
    case NR_GGUF_F32:
        return 4;
    case NR_GGUF_U64:
    case NR_GGUF_I64:
    case NR_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------ bytes */

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len > n - i)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* ------------------------------------------------------------------ reader state */

struct kv {
    const char *key;          /* NUL-terminated, in g->arena (set after parsing) */
    size_t key_off;           /* offset of the key in g->arena */
    int type;                 /* enum nr_gguf_vtype */
    int elem_type;            /* arrays: element type */
    uint64_t n;               /* strings: bytes; arrays: elements */
    const unsigned char *val; /* scalar bytes / string bytes / first array element */
    size_t *str_off;          /* string arrays: file offset of element i's length field */
};

struct name_ref {
    const char *s; /* NUL-terminated name */
    int idx;       /* index into kvs / tensors */
};

struct nr_gguf {
    struct nr_map map;         /* the mapping when opened from a path */
    const unsigned char *base; /* file bytes */
    size_t size;               /* bytes */
    uint32_t version;
    uint32_t alignment; /* bytes */
    size_t data_start;  /* file offset of the data section */

    int n_kv;
    struct kv *kvs;            /* (n_kv) file order */
    struct name_ref *kv_index; /* (n_kv) sorted by key */
    int n_tensors;
    struct nr_gguf_tensor *tensors; /* (n_tensors) file order */
    size_t *tensor_name_off;        /* (n_tensors) offsets in arena, while parsing */
    struct name_ref *t_index;       /* (n_tensors) sorted by name */

    char *arena; /* keys and tensor names, each NUL-terminated */
    size_t arena_len, arena_cap;
};

struct rd {
    const unsigned char *base;
    size_t size; /* bytes */
    size_t pos;  /* bytes consumed */
};

static size_t rd_left(const struct rd *r)
{
    return r->size - r->pos;
}

static int rd_need(const struct rd *r, size_t n, const char *what)
{
    if (n > rd_left(r))
        return nr_err_set(NR_EFORMAT,
                          "truncated at offset %zu reading %s (need %zu bytes, %zu left)", r->pos,
                          what, n, rd_left(r));
    return NR_OK;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
    int rc = rd_need(r, 4, what);
    if (rc)
        return rc;
    *v = le32(r->base + r->pos);
    r->pos += 4;
    return NR_OK;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
    int rc = rd_need(r, 8, what);
    if (rc)
        return rc;
    *v = le64(r->base + r->pos);
    r->pos += 8;
    return NR_OK;
}

/* Append n bytes + NUL to the arena; *off gets where. */
static int arena_add(struct nr_gguf *g, const unsigned char *s, size_t n, size_t *off)
{
    size_t need;
    if (nr_add_size(g->arena_len, n + 1, &need))
        return nr_err_set(NR_ENOMEM, "gguf: name storage overflows");
    if (need > g->arena_cap) {
        size_t cap = g->arena_cap ? g->arena_cap : 4096;
        char *p;
        while (cap < need) {
            if (nr_mul_size(cap, 2, &cap))
                return nr_err_set(NR_ENOMEM, "gguf: name storage overflows");
        }
        p = nr_realloc(g->arena, cap);
        if (!p)
            return nr_err_set(NR_ENOMEM, "gguf: out of memory for names");
        g->arena = p;
        g->arena_cap = cap;
    }
    memcpy(g->arena + g->arena_len, s, n);
    g->arena[g->arena_len + n] = '\0';
    *off = g->arena_len;
    g->arena_len = need;
    return NR_OK;
}

/*
 * Read a name (key or tensor name): length in 1..max, valid UTF-8, no NUL.
 * `what` is "key" or "tensor name"; too_long_code distinguishes the spec's
 * key limit (EFORMAT) from our tensor-name cap (ELIMIT).
 */
static int rd_name(struct nr_gguf *g, struct rd *r, const char *what, uint64_t max,
                   int too_long_code, size_t *off)
{
    uint64_t len;
    const unsigned char *s;
    int rc = rd_u64(r, &len, what);
    if (rc)
        return rc;
    if (len == 0)
        return nr_err_set(NR_EFORMAT, "empty %s", what);
    if (len > max)
        return nr_err_set(too_long_code, "%s length %llu exceeds %llu bytes", what,
                          (unsigned long long)len, (unsigned long long)max);
    if ((rc = rd_need(r, (size_t)len, what)))
        return rc;
    s = r->base + r->pos;
    if (memchr(s, 0, (size_t)len))
        return nr_err_set(NR_EFORMAT, "%s contains a NUL byte", what);
    if (!utf8_valid(s, (size_t)len))
        return nr_err_set(NR_EFORMAT, "%s is not valid UTF-8", what);
    r->pos += (size_t)len;
    return arena_add(g, s, (size_t)len, off);
}

static int check_bools(const unsigned char *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return nr_err_set(NR_EFORMAT, "invalid bool value %u (must be 0 or 1)", p[i]);
    return NR_OK;
}

static int rd_string(struct rd *r, uint64_t *len, const unsigned char **s)
{
    int rc = rd_u64(r, len, "string length");
    if (rc)
        return rc;
    if (*len > NR_GGUF_MAX_STR)
        return nr_err_set(NR_ELIMIT, "string length %llu exceeds the %d byte limit",
                          (unsigned long long)*len, NR_GGUF_MAX_STR);
    if ((rc = rd_need(r, (size_t)*len, "string bytes")))
        return rc;
    *s = r->base + r->pos;
    r->pos += (size_t)*len;
    return NR_OK;
}

/*
 * Read an array's header and elements. depth is 1 for a top-level array.
 * With kv != NULL (top level) records the element type, count, first element
 * and, for strings, the offset table; nested arrays are walked and checked
 * but not indexed.
 */
static int rd_array(struct rd *r, int depth, struct kv *kv)
{
    uint32_t et;
    uint64_t n, min;
    const unsigned char *first;
    int rc;

    if (depth > NR_GGUF_MAX_DEPTH)
        return nr_err_set(NR_EFORMAT, "arrays nested deeper than %d", NR_GGUF_MAX_DEPTH);
    if ((rc = rd_u32(r, &et, "array element type")))
        return rc;
    if (et > NR_GGUF_F64)
        return nr_err_set(NR_EFORMAT, "invalid array element type %u", et);
    if ((rc = rd_u64(r, &n, "array length")))
        return rc;
    if (n > NR_GGUF_MAX_ARR)
        return nr_err_set(NR_ELIMIT, "array of %llu elements exceeds the limit of %d",
                          (unsigned long long)n, NR_GGUF_MAX_ARR);
    min = et == NR_GGUF_STRING ? 8 : et == NR_GGUF_ARRAY ? MIN_ARR_BYTES : vtype_size((int)et);
    if (n * min > rd_left(r)) /* n <= 2^24, min <= 12: no overflow */
        return nr_err_set(
            NR_EFORMAT, "array of %llu %s elements cannot fit in the %zu bytes left at offset %zu",
            (unsigned long long)n, nr_gguf_vtype_name((int)et), rd_left(r), r->pos);
    first = r->base + r->pos;
    if (kv) {
        kv->elem_type = (int)et;
        kv->n = n;
        kv->val = first;
    }
    if (et == NR_GGUF_STRING) {
        size_t *offs = NULL;
        if (kv && n > 0) {
            offs = nr_malloc((size_t)n * sizeof *offs);
            if (!offs)
                return nr_err_set(NR_ENOMEM, "out of memory for a %llu-string array",
                                  (unsigned long long)n);
            kv->str_off = offs;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len;
            const unsigned char *s;
            size_t at = r->pos;
            if ((rc = rd_string(r, &len, &s)))
                return nr_err_wrap(rc, "array element %llu", (unsigned long long)i);
            if (offs)
                offs[i] = at;
        }
    } else if (et == NR_GGUF_ARRAY) {
        for (uint64_t i = 0; i < n; i++)
            if ((rc = rd_array(r, depth + 1, NULL)))
                return nr_err_wrap(rc, "array element %llu", (unsigned long long)i);
    } else {
        if (et == NR_GGUF_BOOL && (rc = check_bools(first, n)))
            return rc;
        r->pos += (size_t)(n * min);
    }
    return NR_OK;
}

static int rd_value(struct rd *r, struct kv *kv)
{
    size_t sz;
    int rc;

    if (kv->type == NR_GGUF_STRING)
        return rd_string(r, &kv->n, &kv->val);
    if (kv->type == NR_GGUF_ARRAY)
        return rd_array(r, 1, kv);
    sz = vtype_size(kv->type);
    if ((rc = rd_need(r, sz, "value")))
        return rc;
    kv->val = r->base + r->pos;
    if (kv->type == NR_GGUF_BOOL && (rc = check_bools(kv->val, 1)))
        return rc;
    r->pos += sz;
    return NR_OK;
}

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const struct name_ref *)a)->s, ((const struct name_ref *)b)->s);
}

static const struct name_ref *find_ref(const struct name_ref *index, int n, const char *name)
{
    struct name_ref key = {name, 0};
    if (n == 0 || !name)
        return NULL;
    return bsearch(&key, index, (size_t)n, sizeof *index, cmp_ref);
}

static int parse_header(struct nr_gguf *g, struct rd *r, uint64_t *n_tensors, uint64_t *n_kv)
{
    uint32_t v, swapped;
    int rc;

    if ((rc = rd_need(r, 4, "magic")))
        return rc;
    if (memcmp(r->base, "GGUF", 4) != 0)
        return nr_err_set(NR_EFORMAT, "bad magic (not a GGUF file)");
    r->pos = 4;
    if ((rc = rd_u32(r, &v, "version")))
        return rc;
    swapped = __builtin_bswap32(v);
    if (v == 0)
        return nr_err_set(NR_EFORMAT, "version 0 is invalid");
    if (v == 1)
        return nr_err_set(NR_EUNSUPPORTED, "GGUF v1 (32-bit lengths) is not supported");
    if (v > 3 && swapped >= 1 && swapped <= 3)
        return nr_err_set(NR_EUNSUPPORTED,
                          "version is byte-swapped (%u): big-endian GGUF files are unsupported",
                          swapped);
    if (v > 3)
        return nr_err_set(NR_EUNSUPPORTED, "version %u is newer than the supported 2..3", v);
    g->version = v;
    if ((rc = rd_u64(r, n_tensors, "tensor count")) || (rc = rd_u64(r, n_kv, "KV count")))
        return rc;
    if (*n_tensors > NR_GGUF_MAX_TENSORS)
        return nr_err_set(NR_ELIMIT, "tensor count %llu exceeds the limit of %d",
                          (unsigned long long)*n_tensors, NR_GGUF_MAX_TENSORS);
    if (*n_kv > NR_GGUF_MAX_KV)
        return nr_err_set(NR_ELIMIT, "KV count %llu exceeds the limit of %d",
                          (unsigned long long)*n_kv, NR_GGUF_MAX_KV);
    /* Both counts <= 2^20: no overflow. */
    if (*n_kv * MIN_KV_BYTES + *n_tensors * MIN_TENSOR_BYTES > rd_left(r))
        return nr_err_set(NR_EFORMAT,
                          "%llu KVs and %llu tensors cannot fit in the %zu bytes after the header",
                          (unsigned long long)*n_kv, (unsigned long long)*n_tensors, rd_left(r));
    return NR_OK;
}

static int parse_kvs(struct nr_gguf *g, struct rd *r)
{
    int rc;
    for (int i = 0; i < g->n_kv; i++) {
        struct kv *kv = &g->kvs[i];
        uint32_t t;
        if ((rc = rd_name(g, r, "key", NR_GGUF_MAX_KEY, NR_EFORMAT, &kv->key_off)))
            return nr_err_wrap(rc, "gguf: KV %d", i);
        if ((rc = rd_u32(r, &t, "value type")))
            return nr_err_wrap(rc, "gguf: KV %d ('%.64s')", i, g->arena + kv->key_off);
        if (t > NR_GGUF_F64)
            return nr_err_set(NR_EFORMAT, "gguf: KV %d ('%.64s'): invalid value type %u", i,
                              g->arena + kv->key_off, t);
        kv->type = (int)t;
        if ((rc = rd_value(r, kv)))
            return nr_err_wrap(rc, "gguf: KV %d ('%.64s')", i, g->arena + kv->key_off);
    }
    return NR_OK;
}

static int parse_tensor_infos(struct nr_gguf *g, struct rd *r)
{
    int rc;
    for (int i = 0; i < g->n_tensors; i++) {
        struct nr_gguf_tensor *t = &g->tensors[i];
        const char *name;
        uint32_t nd, type;
        uint64_t d;

        if ((rc =
                 rd_name(g, r, "tensor name", NR_GGUF_MAX_NAME, NR_ELIMIT, &g->tensor_name_off[i])))
            return nr_err_wrap(rc, "gguf: tensor %d", i);
        name = g->arena + g->tensor_name_off[i];
        if ((rc = rd_u32(r, &nd, "n_dims")))
            return nr_err_wrap(rc, "gguf: tensor '%.64s'", name);
        if (nd < 1 || nd > 4)
            return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s': n_dims %u is not in 1..4", name,
                              nd);
        t->ndim = (int)nd;
        for (int k = 0; k < 4; k++)
            t->ne[k] = 1;
        for (uint32_t k = 0; k < nd; k++) {
            if ((rc = rd_u64(r, &d, "dimension")))
                return nr_err_wrap(rc, "gguf: tensor '%.64s'", name);
            if (d > (uint64_t)INT64_MAX)
                return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s': dimension %u is negative",
                                  name, k);
            t->ne[k] = (int64_t)d;
        }
        if ((rc = rd_u32(r, &type, "tensor type")))
            return nr_err_wrap(rc, "gguf: tensor '%.64s'", name);
        if (type >= NR_GGML_TYPE_COUNT || !type_table[type].name)
            return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s': invalid tensor type %u", name,
                              type);
        if (type_table[type].bytes == 0)
            return nr_err_set(NR_EUNSUPPORTED,
                              "gguf: tensor '%.64s' has type %s (%u), which is not supported", name,
                              type_table[type].name, type);
        t->type = (int)type;
        if ((rc = rd_u64(r, &t->offset, "tensor offset")))
            return nr_err_wrap(rc, "gguf: tensor '%.64s'", name);
        switch (tensor_size(t->type, t->ndim, t->ne, &t->nbytes)) {
        case SIZE_OK:
            break;
        case SIZE_BLOCK:
            return nr_err_set(NR_EFORMAT,
                              "gguf: tensor '%.64s': ne[0]=%lld is not a multiple of the %s "
                              "block size %d",
                              name, (long long)t->ne[0], type_table[type].name,
                              type_table[type].blk);
        case SIZE_ELEMS:
            return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s': element count overflows int64",
                              name);
        default: /* SIZE_BYTES; SIZE_NEG_DIM cannot happen: checked above */
            return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s': byte size overflows", name);
        }
    }
    return NR_OK;
}

static int build_index(struct name_ref **out, int n, const char *(*name_of)(void *, int), void *ctx,
                       const char *what)
{
    struct name_ref *ix;
    if (n == 0)
        return NR_OK;
    ix = nr_malloc((size_t)n * sizeof *ix);
    if (!ix)
        return nr_err_set(NR_ENOMEM, "gguf: out of memory for the %s index", what);
    for (int i = 0; i < n; i++) {
        ix[i].s = name_of(ctx, i);
        ix[i].idx = i;
    }
    qsort(ix, (size_t)n, sizeof *ix, cmp_ref);
    *out = ix;
    for (int i = 1; i < n; i++)
        if (strcmp(ix[i - 1].s, ix[i].s) == 0)
            return nr_err_set(NR_EFORMAT, "gguf: duplicate %s '%.64s'", what, ix[i].s);
    return NR_OK;
}

static const char *kv_name_of(void *ctx, int i)
{
    return ((struct nr_gguf *)ctx)->kvs[i].key;
}

static const char *tensor_name_of(void *ctx, int i)
{
    return ((struct nr_gguf *)ctx)->tensors[i].name;
}

static int check_alignment(struct nr_gguf *g)
{
    const struct name_ref *ref = find_ref(g->kv_index, g->n_kv, ALIGN_KEY);
    const struct kv *kv = NULL;
    uint32_t a;

    g->alignment = NR_GGUF_DEFAULT_ALIGNMENT;
    if (!ref)
        return NR_OK;
    kv = &g->kvs[ref->idx];
    if (kv->type != NR_GGUF_U32)
        return nr_err_set(NR_EFORMAT, "gguf: %s has type %s, must be u32", ALIGN_KEY,
                          nr_gguf_vtype_name(kv->type));
    a = le32(kv->val);
    if (a == 0)
        return nr_err_set(NR_EFORMAT, "gguf: %s is 0", ALIGN_KEY);
    if (a & (a - 1))
        return nr_err_set(NR_EFORMAT, "gguf: %s %u is not a power of two", ALIGN_KEY, a);
    if (a < 8)
        return nr_err_set(NR_EFORMAT, "gguf: %s %u is not a multiple of 8", ALIGN_KEY, a);
    if (a > NR_GGUF_MAX_ALIGNMENT)
        return nr_err_set(NR_ELIMIT, "gguf: %s %u exceeds the limit of %d", ALIGN_KEY, a,
                          NR_GGUF_MAX_ALIGNMENT);
    g->alignment = a;
    return NR_OK;
}

/* Round up to a multiple of the power of two a; -1 on overflow. */
static int align_up(uint64_t x, uint64_t a, uint64_t *out)
{
    if (x > UINT64_MAX - (a - 1))
        return -1;
    *out = (x + a - 1) & ~(a - 1);
    return 0;
}

static int check_offsets(struct nr_gguf *g, size_t info_end)
{
    uint64_t a = g->alignment, expect = 0, start;

    if (align_up(info_end, a, &start))
        return nr_err_set(NR_EFORMAT, "gguf: data section start overflows");
    g->data_start = (size_t)start;
    for (int i = 0; i < g->n_tensors; i++) {
        struct nr_gguf_tensor *t = &g->tensors[i];
        uint64_t begin, end;
        if (t->offset % a != 0)
            return nr_err_set(NR_EFORMAT,
                              "gguf: tensor '%.64s': offset %llu is not a multiple of the "
                              "alignment %llu",
                              t->name, (unsigned long long)t->offset, (unsigned long long)a);
        if (t->offset != expect)
            return nr_err_set(NR_EFORMAT,
                              "gguf: tensor '%.64s': offset %llu, expected %llu (tensors must be "
                              "contiguous in declaration order)",
                              t->name, (unsigned long long)t->offset, (unsigned long long)expect);
        if (__builtin_add_overflow(start, t->offset, &begin) ||
            __builtin_add_overflow(begin, (uint64_t)t->nbytes, &end) || end > g->size)
            return nr_err_set(NR_EFORMAT,
                              "gguf: tensor '%.64s': data at file offset %llu + %zu bytes runs "
                              "past the end of the file (%zu bytes)",
                              t->name, (unsigned long long)start + t->offset, t->nbytes, g->size);
        t->data = g->base + begin;
        if (__builtin_add_overflow(expect, (uint64_t)t->nbytes, &expect) ||
            align_up(expect, a, &expect))
            return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s': running offset overflows",
                              t->name);
    }
    return NR_OK;
}

static int parse(struct nr_gguf *g)
{
    struct rd r = {g->base, g->size, 0};
    uint64_t n_tensors, n_kv;
    int rc;

    if ((rc = parse_header(g, &r, &n_tensors, &n_kv)))
        return nr_err_wrap(rc, "gguf: header");
    g->n_kv = (int)n_kv;
    g->n_tensors = (int)n_tensors;
    if (n_kv && !(g->kvs = nr_calloc((size_t)n_kv, sizeof *g->kvs)))
        return nr_err_set(NR_ENOMEM, "gguf: out of memory for %llu KVs", (unsigned long long)n_kv);
    if (n_tensors) {
        g->tensors = nr_calloc((size_t)n_tensors, sizeof *g->tensors);
        g->tensor_name_off = nr_calloc((size_t)n_tensors, sizeof *g->tensor_name_off);
        if (!g->tensors || !g->tensor_name_off)
            return nr_err_set(NR_ENOMEM, "gguf: out of memory for %llu tensors",
                              (unsigned long long)n_tensors);
    }
    if ((rc = parse_kvs(g, &r)) || (rc = parse_tensor_infos(g, &r)))
        return rc;
    /* The arena no longer moves: turn offsets into pointers. */
    for (int i = 0; i < g->n_kv; i++)
        g->kvs[i].key = g->arena + g->kvs[i].key_off;
    for (int i = 0; i < g->n_tensors; i++)
        g->tensors[i].name = g->arena + g->tensor_name_off[i];
    nr_free(g->tensor_name_off);
    g->tensor_name_off = NULL;

    if ((rc = build_index(&g->kv_index, g->n_kv, kv_name_of, g, "key")) ||
        (rc = check_alignment(g)) ||
        (rc = build_index(&g->t_index, g->n_tensors, tensor_name_of, g, "tensor name")))
        return rc;
    return check_offsets(g, r.pos);
}

static int open_common(struct nr_gguf *g, struct nr_gguf **out)
{
    int rc = parse(g);
    if (rc) {
        nr_gguf_close(g);
        return rc;
    }
    *out = g;
    return NR_OK;
}

int nr_gguf_open_mem(const void *data, size_t size, struct nr_gguf **out)
{
    struct nr_gguf *g;
    *out = NULL;
    if (!data && size)
        return nr_err_set(NR_EINVAL, "gguf: NULL buffer");
    g = nr_calloc(1, sizeof *g);
    if (!g)
        return nr_err_set(NR_ENOMEM, "gguf: out of memory");
    g->base = data;
    g->size = size;
    return open_common(g, out);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int nr_gguf_open(const char *path, struct nr_gguf **out)
{
    struct nr_gguf *g;
    int rc;
    *out = NULL;
    g = nr_calloc(1, sizeof *g);
    if (!g)
        return nr_err_set(NR_ENOMEM, "gguf: out of memory");
    if ((rc = nr_file_map(path, &g->map))) {
        nr_free(g);
        return rc;
    }
    g->base = g->map.data;
    g->size = g->map.size;
    if ((rc = open_common(g, out)))
        return nr_err_wrap(rc, "%s", base_name(path));
    return NR_OK;
}

void nr_gguf_close(struct nr_gguf *g)
{
    if (!g)
        return;
    for (int i = 0; g->kvs && i < g->n_kv; i++)
        nr_free(g->kvs[i].str_off);
    nr_free(g->kvs);
    nr_free(g->kv_index);
    nr_free(g->tensors);
    nr_free(g->tensor_name_off);
    nr_free(g->t_index);
    nr_free(g->arena);
    nr_file_unmap(&g->map);
    nr_free(g);
}

/* ------------------------------------------------------------------ accessors */

uint32_t nr_gguf_version(const struct nr_gguf *g)
{
    return g->version;
}
uint32_t nr_gguf_alignment(const struct nr_gguf *g)
{
    return g->alignment;
}
size_t nr_gguf_data_offset(const struct nr_gguf *g)
{
    return g->data_start;
}
int nr_gguf_n_tensors(const struct nr_gguf *g)
{
    return g->n_tensors;
}
int nr_gguf_n_kv(const struct nr_gguf *g)
{
    return g->n_kv;
}

const struct nr_gguf_tensor *nr_gguf_tensor(const struct nr_gguf *g, int i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct nr_gguf_tensor *nr_gguf_find_tensor(const struct nr_gguf *g, const char *name)
{
    const struct name_ref *r = find_ref(g->t_index, g->n_tensors, name);
    return r ? &g->tensors[r->idx] : NULL;
}

const char *nr_gguf_key(const struct nr_gguf *g, int i)
{
    return i >= 0 && i < g->n_kv ? g->kvs[i].key : NULL;
}

int nr_gguf_kv_type(const struct nr_gguf *g, int i)
{
    return i >= 0 && i < g->n_kv ? g->kvs[i].type : -1;
}

int nr_gguf_find_key(const struct nr_gguf *g, const char *key)
{
    const struct name_ref *r = find_ref(g->kv_index, g->n_kv, key);
    return r ? r->idx : -1;
}

static int get_kv(const struct nr_gguf *g, const char *key, const struct kv **out)
{
    int i = nr_gguf_find_key(g, key);
    if (i < 0)
        return nr_err_set(NR_ENOTFOUND, "gguf: key '%.64s' not found", key ? key : "(null)");
    *out = &g->kvs[i];
    return NR_OK;
}

static int is_int_type(int t)
{
    return t == NR_GGUF_U8 || t == NR_GGUF_I8 || t == NR_GGUF_U16 || t == NR_GGUF_I16 ||
           t == NR_GGUF_U32 || t == NR_GGUF_I32 || t == NR_GGUF_U64 || t == NR_GGUF_I64;
}

/* An integer value: neg ? s (< 0) : u. */
struct ival {
    int neg;
    uint64_t u;
    int64_t s;
};

static struct ival decode_int(int t, const unsigned char *p)
{
    struct ival v = {0, 0, 0};
    int64_t s;
    switch (t) {
    case NR_GGUF_U8:
        v.u = p[0];
        return v;
    case NR_GGUF_U16:
        v.u = le16(p);
        return v;
    case NR_GGUF_U32:
        v.u = le32(p);
        return v;
    case NR_GGUF_U64:
        v.u = le64(p);
        return v;
    case NR_GGUF_I8:
        s = (int8_t)p[0];
        break;
    case NR_GGUF_I16:
        s = (int16_t)le16(p);
        break;
    case NR_GGUF_I32:
        s = (int32_t)le32(p);
        break;
    default:
        s = (int64_t)le64(p);
        break;
    }
    if (s < 0) {
        v.neg = 1;
        v.s = s;
    } else {
        v.u = (uint64_t)s;
    }
    return v;
}

/* Range-check an integer for the wanted C type; what names it in messages. */
static int int_fits(struct ival v, int64_t lo, uint64_t hi, const char *key, const char *want)
{
    if (v.neg ? v.s < lo : v.u > hi) {
        if (v.neg)
            return nr_err_set(NR_EFORMAT, "gguf: key '%.64s' value %lld does not fit in %s", key,
                              (long long)v.s, want);
        return nr_err_set(NR_EFORMAT, "gguf: key '%.64s' value %llu does not fit in %s", key,
                          (unsigned long long)v.u, want);
    }
    return NR_OK;
}

static int type_mismatch(const char *key, int have, const char *want)
{
    return nr_err_set(NR_EFORMAT, "gguf: key '%.64s' has type %s, expected %s", key,
                      nr_gguf_vtype_name(have), want);
}

static int get_int(const struct nr_gguf *g, const char *key, int64_t lo, uint64_t hi,
                   const char *want, struct ival *v)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (!is_int_type(kv->type))
        return type_mismatch(key, kv->type, want);
    *v = decode_int(kv->type, kv->val);
    return int_fits(*v, lo, hi, key, want);
}

int nr_gguf_get_u32(const struct nr_gguf *g, const char *key, uint32_t *v)
{
    struct ival x;
    int rc = get_int(g, key, 0, UINT32_MAX, "u32", &x);
    if (!rc)
        *v = (uint32_t)x.u;
    return rc;
}

int nr_gguf_get_i32(const struct nr_gguf *g, const char *key, int32_t *v)
{
    struct ival x;
    int rc = get_int(g, key, INT32_MIN, INT32_MAX, "i32", &x);
    if (!rc)
        *v = x.neg ? (int32_t)x.s : (int32_t)x.u;
    return rc;
}

int nr_gguf_get_u64(const struct nr_gguf *g, const char *key, uint64_t *v)
{
    struct ival x;
    int rc = get_int(g, key, 0, UINT64_MAX, "u64", &x);
    if (!rc)
        *v = x.u;
    return rc;
}

int nr_gguf_get_i64(const struct nr_gguf *g, const char *key, int64_t *v)
{
    struct ival x;
    int rc = get_int(g, key, INT64_MIN, INT64_MAX, "i64", &x);
    if (!rc)
        *v = x.neg ? x.s : (int64_t)x.u;
    return rc;
}

static float dec_f32(const unsigned char *p)
{
    uint32_t u = le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double dec_f64(const unsigned char *p)
{
    uint64_t u = le64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* f32, or f64 within float range (inf and NaN carry over). */
static int to_f32(int t, const unsigned char *p, const char *key, float *v)
{
    if (t == NR_GGUF_F32) {
        *v = dec_f32(p);
        return NR_OK;
    }
    if (t == NR_GGUF_F64) {
        double d = dec_f64(p);
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return nr_err_set(NR_EFORMAT, "gguf: key '%.64s' value %g does not fit in f32", key, d);
        *v = (float)d;
        return NR_OK;
    }
    return type_mismatch(key, t, "f32");
}

int nr_gguf_get_f32(const struct nr_gguf *g, const char *key, float *v)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    return rc ? rc : to_f32(kv->type, kv->val, key, v);
}

int nr_gguf_get_f64(const struct nr_gguf *g, const char *key, double *v)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type == NR_GGUF_F64)
        *v = dec_f64(kv->val);
    else if (kv->type == NR_GGUF_F32)
        *v = dec_f32(kv->val);
    else
        return type_mismatch(key, kv->type, "f64 or f32");
    return NR_OK;
}

int nr_gguf_get_bool(const struct nr_gguf *g, const char *key, int *v)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != NR_GGUF_BOOL)
        return type_mismatch(key, kv->type, "bool");
    *v = kv->val[0];
    return NR_OK;
}

int nr_gguf_get_str(const struct nr_gguf *g, const char *key, const char **s, size_t *len)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != NR_GGUF_STRING)
        return type_mismatch(key, kv->type, "string");
    *s = (const char *)kv->val;
    *len = (size_t)kv->n;
    return NR_OK;
}

int nr_gguf_get_cstr(const struct nr_gguf *g, const char *key, char *buf, size_t cap)
{
    const char *s = NULL;
    size_t len = 0;
    int rc = nr_gguf_get_str(g, key, &s, &len);
    if (rc)
        return rc;
    if (memchr(s, 0, len))
        return nr_err_set(NR_EFORMAT, "gguf: key '%.64s': string contains a NUL byte", key);
    if (len >= cap)
        return nr_err_set(NR_ELIMIT, "gguf: key '%.64s': string of %zu bytes exceeds %zu", key, len,
                          cap ? cap - 1 : 0);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return NR_OK;
}

int nr_gguf_get_arr(const struct nr_gguf *g, const char *key, int *elem_type, uint64_t *count)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != NR_GGUF_ARRAY)
        return type_mismatch(key, kv->type, "array");
    if (elem_type)
        *elem_type = kv->elem_type;
    if (count)
        *count = kv->n;
    return NR_OK;
}

/* Element i of an array; want_ok says whether the element type suits. */
static int get_elem(const struct nr_gguf *g, const char *key, uint64_t i, int (*want_ok)(int),
                    const char *want, const struct kv **kv_out, const unsigned char **p)
{
    const struct kv *kv = NULL;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != NR_GGUF_ARRAY || !want_ok(kv->elem_type))
        return nr_err_set(NR_EFORMAT, "gguf: key '%.64s' has type %s%s%s, expected array of %s",
                          key, nr_gguf_vtype_name(kv->type),
                          kv->type == NR_GGUF_ARRAY ? " of " : "",
                          kv->type == NR_GGUF_ARRAY ? nr_gguf_vtype_name(kv->elem_type) : "", want);
    if (i >= kv->n)
        return nr_err_set(NR_EINVAL, "gguf: key '%.64s': index %llu out of range (%llu elements)",
                          key, (unsigned long long)i, (unsigned long long)kv->n);
    *kv_out = kv;
    if (kv->elem_type == NR_GGUF_STRING)
        *p = g->base + kv->str_off[i];
    else
        *p = kv->val + i * vtype_size(kv->elem_type);
    return NR_OK;
}

static int is_string(int t)
{
    return t == NR_GGUF_STRING;
}
static int is_float(int t)
{
    return t == NR_GGUF_F32 || t == NR_GGUF_F64;
}
static int is_bool(int t)
{
    return t == NR_GGUF_BOOL;
}

int nr_gguf_get_arr_str(const struct nr_gguf *g, const char *key, uint64_t i, const char **s,
                        size_t *len)
{
    const struct kv *kv = NULL;
    const unsigned char *p = NULL;
    int rc = get_elem(g, key, i, is_string, "string", &kv, &p);
    if (rc)
        return rc;
    *len = (size_t)le64(p);
    *s = (const char *)p + 8;
    return NR_OK;
}

int nr_gguf_get_arr_i32(const struct nr_gguf *g, const char *key, uint64_t i, int32_t *v)
{
    const struct kv *kv = NULL;
    const unsigned char *p = NULL;
    struct ival x;
    int rc = get_elem(g, key, i, is_int_type, "integers", &kv, &p);
    if (rc)
        return rc;
    x = decode_int(kv->elem_type, p);
    if ((rc = int_fits(x, INT32_MIN, INT32_MAX, key, "i32")))
        return rc;
    *v = x.neg ? (int32_t)x.s : (int32_t)x.u;
    return NR_OK;
}

int nr_gguf_get_arr_i64(const struct nr_gguf *g, const char *key, uint64_t i, int64_t *v)
{
    const struct kv *kv = NULL;
    const unsigned char *p = NULL;
    struct ival x;
    int rc = get_elem(g, key, i, is_int_type, "integers", &kv, &p);
    if (rc)
        return rc;
    x = decode_int(kv->elem_type, p);
    if ((rc = int_fits(x, INT64_MIN, INT64_MAX, key, "i64")))
        return rc;
    *v = x.neg ? x.s : (int64_t)x.u;
    return NR_OK;
}

int nr_gguf_get_arr_f32(const struct nr_gguf *g, const char *key, uint64_t i, float *v)
{
    const struct kv *kv = NULL;
    const unsigned char *p = NULL;
    int rc = get_elem(g, key, i, is_float, "floats", &kv, &p);
    return rc ? rc : to_f32(kv->elem_type, p, key, v);
}

int nr_gguf_get_arr_bool(const struct nr_gguf *g, const char *key, uint64_t i, int *v)
{
    const struct kv *kv = NULL;
    const unsigned char *p = NULL;
    int rc = get_elem(g, key, i, is_bool, "bool", &kv, &p);
    if (!rc)
        *v = p[0];
    return rc;
}

/* ------------------------------------------------------------------ expect */

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *ne)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < ndim && n < cap; d++) {
        int k;
        if (ne[d] < 0)
            k = snprintf(buf + n, cap - n, "%s*", d ? ", " : "");
        else
            k = snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)ne[d]);
        if (k < 0)
            return;
        n += (size_t)k;
    }
}

int nr_gguf_expect(const struct nr_gguf *g, const char *name, uint64_t type_mask, int ndim,
                   const int64_t *ne, const struct nr_gguf_tensor **out)
{
    const struct nr_gguf_tensor *t;
    char have[128], want[128];

    if (out)
        *out = NULL;
    if (ndim < -1 || ndim == 0 || ndim > 4 || (ndim == -1 && ne))
        return nr_err_set(NR_EINVAL, "gguf: expect '%.64s': bad ndim %d", name, ndim);
    t = nr_gguf_find_tensor(g, name);
    if (!t)
        return nr_err_set(NR_ENOTFOUND, "gguf: tensor '%.64s' is missing", name);
    if (!(type_mask & NR_GGML_MASK(t->type))) {
        size_t n = 0;
        want[0] = '\0';
        for (int ty = 0; ty < NR_GGML_TYPE_COUNT && ty < 64 && n < sizeof want; ty++) {
            int k;
            if (!(type_mask & NR_GGML_MASK(ty)))
                continue;
            k = snprintf(want + n, sizeof want - n, "%s%s", n ? "|" : "", nr_ggml_type_name(ty));
            if (k < 0)
                break;
            n += (size_t)k;
        }
        return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s' has type %s, expected %s", name,
                          nr_ggml_type_name(t->type), n ? want : "(none)");
    }
    if (ndim != -1 && ndim != t->ndim)
        return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s' has %d dims, expected %d", name,
                          t->ndim, ndim);
    if (ne) {
        for (int d = 0; d < ndim; d++) {
            if (ne[d] != -1 && ne[d] != t->ne[d]) {
                fmt_shape(have, sizeof have, t->ndim, t->ne);
                fmt_shape(want, sizeof want, ndim, ne);
                return nr_err_set(NR_EFORMAT, "gguf: tensor '%.64s' has shape [%s], expected [%s]",
                                  name, have, want);
            }
        }
    }
    if (out)
        *out = t;
    return NR_OK;
}

/* ------------------------------------------------------------------ writer */

/*
 * The writer serializes KVs into one growing buffer as they are added and
 * keeps a list of tensors; the file is assembled at write time, when the
 * tensor offsets are known. Duplicate keys and names are found with a small
 * open-addressing hash set (trusted input: no need for sort-based worst
 * cases).
 */

#define W_MAX_KV_BYTES ((size_t)1 << 31) /* cap on the serialized KV section */

struct wtensor {
    char *name; /* nr_strdup'd */
    int type;
    int ndim;
    int64_t ne[4];
    const void *data; /* borrowed */
    size_t nbytes;
};

struct strset {
    const char **slot; /* (cap) NULL = empty */
    size_t cap, n;
};

struct nr_gguf_writer {
    uint32_t alignment;
    unsigned char *kv; /* serialized KVs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys; /* (n_kv) owned copies, for the set */
    size_t keys_cap;
    struct strset key_set, name_set;
    struct wtensor *t; /* (n_t) */
    size_t n_t, t_cap;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int strset_has(const struct strset *set, const char *s)
{
    if (!set->cap)
        return 0;
    for (size_t i = fnv1a(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slot[i])
            return 0;
        if (strcmp(set->slot[i], s) == 0)
            return 1;
    }
}

/* Insert s (not present; pointer kept). */
static int strset_add(struct strset *set, const char *s)
{
    if ((set->n + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        const char **slot = nr_calloc(cap, sizeof *slot);
        if (!slot)
            return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->slot[i])
                continue;
            size_t j = fnv1a(set->slot[i]) & (cap - 1);
            while (slot[j])
                j = (j + 1) & (cap - 1);
            slot[j] = set->slot[i];
        }
        nr_free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    size_t i = fnv1a(s) & (set->cap - 1);
    while (set->slot[i])
        i = (i + 1) & (set->cap - 1);
    set->slot[i] = s;
    set->n++;
    return NR_OK;
}

static int valid_alignment(uint32_t a)
{
    return a >= 8 && a <= NR_GGUF_MAX_ALIGNMENT && !(a & (a - 1));
}

/* Make room for n more bytes of KV data (so that the writes after it cannot fail). */
static int w_reserve(struct nr_gguf_writer *w, size_t n)
{
    size_t need;
    if (nr_add_size(w->kv_len, n, &need) || need > W_MAX_KV_BYTES)
        return nr_err_set(NR_ELIMIT, "gguf writer: metadata exceeds %zu bytes", W_MAX_KV_BYTES);
    if (need > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 1024;
        unsigned char *b;
        while (cap < need)
            cap *= 2; /* need <= 2^31: no overflow */
        b = nr_realloc(w->kv, cap);
        if (!b)
            return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
        w->kv = b;
        w->kv_cap = cap;
    }
    return NR_OK;
}

/* Append within reserved space. */
static void w_raw(struct nr_gguf_writer *w, const void *p, size_t n)
{
    if (n)
        memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_le(unsigned char *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static void w_le(struct nr_gguf_writer *w, uint64_t v, int n)
{
    unsigned char b[8];
    put_le(b, v, n);
    w_raw(w, b, (size_t)n);
}

static void w_str(struct nr_gguf_writer *w, const char *s, size_t len)
{
    w_le(w, len, 8);
    w_raw(w, s, len);
}

/*
 * Start a KV: check the key, reserve room for the whole KV (key, type and
 * value_bytes of value), record the key, write key and type. After it
 * returns NR_OK the caller writes exactly value_bytes with w_raw/w_le/w_str,
 * which cannot fail, so a KV is either complete or absent.
 */
static int w_begin(struct nr_gguf_writer *w, const char *key, int type, size_t value_bytes,
                   int internal)
{
    size_t len, total;
    char *copy;
    int rc;
    if (!key || !*key)
        return nr_err_set(NR_EINVAL, "gguf writer: empty key");
    len = strlen(key);
    if (len > NR_GGUF_MAX_KEY)
        return nr_err_set(NR_EINVAL, "gguf writer: key of %zu bytes exceeds %d", len,
                          NR_GGUF_MAX_KEY);
    if (!utf8_valid((const unsigned char *)key, len))
        return nr_err_set(NR_EINVAL, "gguf writer: key is not valid UTF-8");
    if (!internal && strcmp(key, ALIGN_KEY) == 0)
        return nr_err_set(NR_EINVAL, "gguf writer: set %s through nr_gguf_writer_new", ALIGN_KEY);
    if (strset_has(&w->key_set, key))
        return nr_err_set(NR_EINVAL, "gguf writer: duplicate key '%.64s'", key);
    if (w->n_kv >= NR_GGUF_MAX_KV)
        return nr_err_set(NR_ELIMIT, "gguf writer: more than %d KVs", NR_GGUF_MAX_KV);
    if (nr_add_size(12 + len, value_bytes, &total))
        return nr_err_set(NR_ELIMIT, "gguf writer: value of '%.64s' too large", key);
    if ((rc = w_reserve(w, total)))
        return rc;
    if (w->n_kv == w->keys_cap) {
        size_t cap = w->keys_cap ? w->keys_cap * 2 : 16;
        char **k = nr_realloc(w->keys, cap * sizeof *k);
        if (!k)
            return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
        w->keys = k;
        w->keys_cap = cap;
    }
    if (!(copy = nr_strdup(key)))
        return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
    if ((rc = strset_add(&w->key_set, copy))) {
        nr_free(copy);
        return rc;
    }
    w->keys[w->n_kv++] = copy;
    w_str(w, key, len);
    w_le(w, (uint64_t)type, 4);
    return NR_OK;
}

int nr_gguf_writer_new(struct nr_gguf_writer **out, uint32_t alignment)
{
    struct nr_gguf_writer *w;
    int rc;
    *out = NULL;
    if (alignment == 0)
        alignment = NR_GGUF_DEFAULT_ALIGNMENT;
    if (!valid_alignment(alignment))
        return nr_err_set(NR_EINVAL, "gguf writer: alignment %u is not a power of two in [8, %d]",
                          alignment, NR_GGUF_MAX_ALIGNMENT);
    w = nr_calloc(1, sizeof *w);
    if (!w)
        return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
    w->alignment = alignment;
    if (alignment != NR_GGUF_DEFAULT_ALIGNMENT) {
        if ((rc = w_begin(w, ALIGN_KEY, NR_GGUF_U32, 4, 1))) {
            nr_gguf_writer_free(w);
            return rc;
        }
        w_le(w, alignment, 4);
    }
    *out = w;
    return NR_OK;
}

void nr_gguf_writer_free(struct nr_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        nr_free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++)
        nr_free(w->t[i].name);
    nr_free(w->keys);
    nr_free(w->t);
    nr_free(w->kv);
    nr_free(w->key_set.slot);
    nr_free(w->name_set.slot);
    nr_free(w);
}

static int w_scalar(struct nr_gguf_writer *w, const char *key, int type, uint64_t bits)
{
    int rc = w_begin(w, key, type, vtype_size(type), 0);
    if (!rc)
        w_le(w, bits, (int)vtype_size(type));
    return rc;
}

int nr_gguf_writer_add_u8(struct nr_gguf_writer *w, const char *key, uint8_t v)
{
    return w_scalar(w, key, NR_GGUF_U8, v);
}
int nr_gguf_writer_add_i8(struct nr_gguf_writer *w, const char *key, int8_t v)
{
    return w_scalar(w, key, NR_GGUF_I8, (uint64_t)(int64_t)v);
}
int nr_gguf_writer_add_u16(struct nr_gguf_writer *w, const char *key, uint16_t v)
{
    return w_scalar(w, key, NR_GGUF_U16, v);
}
int nr_gguf_writer_add_i16(struct nr_gguf_writer *w, const char *key, int16_t v)
{
    return w_scalar(w, key, NR_GGUF_I16, (uint64_t)(int64_t)v);
}
int nr_gguf_writer_add_u32(struct nr_gguf_writer *w, const char *key, uint32_t v)
{
    return w_scalar(w, key, NR_GGUF_U32, v);
}
int nr_gguf_writer_add_i32(struct nr_gguf_writer *w, const char *key, int32_t v)
{
    return w_scalar(w, key, NR_GGUF_I32, (uint64_t)(int64_t)v);
}
int nr_gguf_writer_add_u64(struct nr_gguf_writer *w, const char *key, uint64_t v)
{
    return w_scalar(w, key, NR_GGUF_U64, v);
}
int nr_gguf_writer_add_i64(struct nr_gguf_writer *w, const char *key, int64_t v)
{
    return w_scalar(w, key, NR_GGUF_I64, (uint64_t)v);
}
int nr_gguf_writer_add_f32(struct nr_gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return w_scalar(w, key, NR_GGUF_F32, u);
}
int nr_gguf_writer_add_f64(struct nr_gguf_writer *w, const char *key, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return w_scalar(w, key, NR_GGUF_F64, u);
}
int nr_gguf_writer_add_bool(struct nr_gguf_writer *w, const char *key, int v)
{
    return w_scalar(w, key, NR_GGUF_BOOL, v ? 1 : 0);
}

int nr_gguf_writer_add_strn(struct nr_gguf_writer *w, const char *key, const char *v, size_t len)
{
    int rc;
    if (!v && len)
        return nr_err_set(NR_EINVAL, "gguf writer: NULL string for '%.64s'", key ? key : "");
    if (len > NR_GGUF_MAX_STR)
        return nr_err_set(NR_ELIMIT, "gguf writer: string of %zu bytes exceeds %d", len,
                          NR_GGUF_MAX_STR);
    if ((rc = w_begin(w, key, NR_GGUF_STRING, 8 + len, 0)))
        return rc;
    w_str(w, v ? v : "", len);
    return NR_OK;
}

int nr_gguf_writer_add_str(struct nr_gguf_writer *w, const char *key, const char *v)
{
    return nr_gguf_writer_add_strn(w, key, v ? v : "", v ? strlen(v) : 0);
}

int nr_gguf_writer_add_arr_str(struct nr_gguf_writer *w, const char *key, const char *const *strs,
                               uint64_t n)
{
    size_t bytes = 12; /* element type + count */
    int rc;
    if (n > NR_GGUF_MAX_ARR)
        return nr_err_set(NR_ELIMIT, "gguf writer: array of %llu exceeds %d", (unsigned long long)n,
                          NR_GGUF_MAX_ARR);
    if (n && !strs)
        return nr_err_set(NR_EINVAL, "gguf writer: NULL array for '%.64s'", key ? key : "");
    for (uint64_t i = 0; i < n; i++) {
        size_t len = strs[i] ? strlen(strs[i]) : 0;
        if (len > NR_GGUF_MAX_STR)
            return nr_err_set(NR_ELIMIT, "gguf writer: string %llu of %zu bytes exceeds %d",
                              (unsigned long long)i, len, NR_GGUF_MAX_STR);
        if (nr_add_size(bytes, 8 + len, &bytes))
            return nr_err_set(NR_ELIMIT, "gguf writer: array too large");
    }
    if ((rc = w_begin(w, key, NR_GGUF_ARRAY, bytes, 0)))
        return rc;
    w_le(w, NR_GGUF_STRING, 4);
    w_le(w, n, 8);
    for (uint64_t i = 0; i < n; i++)
        w_str(w, strs[i] ? strs[i] : "", strs[i] ? strlen(strs[i]) : 0);
    return NR_OK;
}

int nr_gguf_writer_add_arr(struct nr_gguf_writer *w, const char *key, int elem_type,
                           const void *elems, uint64_t n)
{
    size_t sz = vtype_size(elem_type);
    const unsigned char *src = elems;
    int rc;
    if (sz == 0)
        return nr_err_set(NR_EINVAL, "gguf writer: array element type %d is not fixed-size",
                          elem_type);
    if (n > NR_GGUF_MAX_ARR)
        return nr_err_set(NR_ELIMIT, "gguf writer: array of %llu exceeds %d", (unsigned long long)n,
                          NR_GGUF_MAX_ARR);
    if (n && !elems)
        return nr_err_set(NR_EINVAL, "gguf writer: NULL array for '%.64s'", key ? key : "");
    if (elem_type == NR_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (src[i] > 1)
                return nr_err_set(NR_EINVAL, "gguf writer: bool array element %llu is %u",
                                  (unsigned long long)i, src[i]);
    /* n <= 2^24, sz <= 8: no overflow. */
    if ((rc = w_begin(w, key, NR_GGUF_ARRAY, 12 + (size_t)n * sz, 0)))
        return rc;
    w_le(w, (uint64_t)elem_type, 4);
    w_le(w, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *e = src + i * sz;
        uint64_t v;
        if (sz == 1) {
            v = e[0];
        } else if (sz == 2) {
            uint16_t x;
            memcpy(&x, e, 2);
            v = x;
        } else if (sz == 4) {
            uint32_t x;
            memcpy(&x, e, 4);
            v = x;
        } else {
            memcpy(&v, e, 8);
        }
        w_le(w, v, (int)sz);
    }
    return NR_OK;
}

int nr_gguf_writer_add_arr_i32(struct nr_gguf_writer *w, const char *key, const int32_t *v,
                               uint64_t n)
{
    return nr_gguf_writer_add_arr(w, key, NR_GGUF_I32, v, n);
}

int nr_gguf_writer_add_arr_f32(struct nr_gguf_writer *w, const char *key, const float *v,
                               uint64_t n)
{
    return nr_gguf_writer_add_arr(w, key, NR_GGUF_F32, v, n);
}

int nr_gguf_writer_add_tensor(struct nr_gguf_writer *w, const char *name, int type, int ndim,
                              const int64_t *ne, const void *data, size_t nbytes)
{
    struct wtensor *t;
    size_t len, want;
    int rc;

    if (!name || !*name)
        return nr_err_set(NR_EINVAL, "gguf writer: empty tensor name");
    len = strlen(name);
    if (len > NR_GGUF_MAX_NAME)
        return nr_err_set(NR_EINVAL, "gguf writer: tensor name of %zu bytes exceeds %d", len,
                          NR_GGUF_MAX_NAME);
    if (!utf8_valid((const unsigned char *)name, len))
        return nr_err_set(NR_EINVAL, "gguf writer: tensor name is not valid UTF-8");
    if (strset_has(&w->name_set, name))
        return nr_err_set(NR_EINVAL, "gguf writer: duplicate tensor '%.64s'", name);
    if (w->n_t >= NR_GGUF_MAX_TENSORS)
        return nr_err_set(NR_ELIMIT, "gguf writer: more than %d tensors", NR_GGUF_MAX_TENSORS);
    if (!ne)
        return nr_err_set(NR_EINVAL, "gguf writer: tensor '%.64s': no shape", name);
    if ((rc = nr_ggml_nbytes(type, ndim, ne, &want)))
        return nr_err_wrap(NR_EINVAL, "gguf writer: tensor '%.64s'", name);
    if (want != nbytes)
        return nr_err_set(NR_EINVAL,
                          "gguf writer: tensor '%.64s': %zu bytes given, shape needs %zu", name,
                          nbytes, want);
    if (nbytes && !data)
        return nr_err_set(NR_EINVAL, "gguf writer: tensor '%.64s': NULL data", name);
    if (w->n_t == w->t_cap) {
        size_t cap = w->t_cap ? w->t_cap * 2 : 16;
        struct wtensor *p = nr_realloc(w->t, cap * sizeof *p);
        if (!p)
            return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
        w->t = p;
        w->t_cap = cap;
    }
    t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = nr_strdup(name)))
        return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
    if ((rc = strset_add(&w->name_set, t->name))) {
        nr_free(t->name);
        return rc;
    }
    t->type = type;
    t->ndim = ndim;
    for (int d = 0; d < 4; d++)
        t->ne[d] = d < ndim ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
    return NR_OK;
}

static size_t pad_to(size_t x, size_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* Layout sizes; the totals are bounded by the caps, checked anyway. */
static int w_layout(const struct nr_gguf_writer *w, size_t *data_start, size_t *total)
{
    size_t n = 24, d = 0;
    if (nr_add_size(n, w->kv_len, &n))
        return nr_err_set(NR_ELIMIT, "gguf writer: file size overflows");
    for (size_t i = 0; i < w->n_t; i++) {
        size_t info = 8 + strlen(w->t[i].name) + 4 + 8 * (size_t)w->t[i].ndim + 4 + 8;
        if (nr_add_size(n, info, &n) || nr_add_size(d, w->t[i].nbytes, &d) ||
            d > SIZE_MAX - w->alignment)
            return nr_err_set(NR_ELIMIT, "gguf writer: file size overflows");
        d = pad_to(d, w->alignment);
    }
    if (n > SIZE_MAX - w->alignment)
        return nr_err_set(NR_ELIMIT, "gguf writer: file size overflows");
    n = pad_to(n, w->alignment);
    *data_start = n;
    if (nr_add_size(n, d, total))
        return nr_err_set(NR_ELIMIT, "gguf writer: file size overflows");
    return NR_OK;
}

size_t nr_gguf_writer_size(const struct nr_gguf_writer *w)
{
    size_t ds, total;
    return w_layout(w, &ds, &total) ? 0 : total;
}

/* Output: into a buffer (buf != NULL) or a FILE. */
struct sink {
    unsigned char *buf;
    size_t len, cap;
    FILE *f;
};

static int sink_put(struct sink *s, const void *p, size_t n)
{
    if (n == 0)
        return NR_OK;
    if (s->buf) {
        if (n > s->cap - s->len)
            return nr_err_set(NR_EINTERNAL, "gguf writer: layout size mismatch");
        memcpy(s->buf + s->len, p, n);
    } else if (fwrite(p, 1, n, s->f) != n) {
        return nr_err_set(NR_EIO, "gguf writer: write failed: %s", strerror(errno));
    }
    s->len += n;
    return NR_OK;
}

static int sink_zeros(struct sink *s, size_t n)
{
    static const unsigned char zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        int rc = sink_put(s, zeros, k);
        if (rc)
            return rc;
        n -= k;
    }
    return NR_OK;
}

static int w_emit(const struct nr_gguf_writer *w, struct sink *s)
{
    unsigned char b[24];
    size_t off = 0;
    int rc;

    memcpy(b, "GGUF", 4);
    put_le(b + 4, 3, 4);
    put_le(b + 8, w->n_t, 8);
    put_le(b + 16, w->n_kv, 8);
    if ((rc = sink_put(s, b, 24)) || (rc = sink_put(s, w->kv, w->kv_len)))
        return rc;
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        size_t len = strlen(t->name);
        put_le(b, len, 8);
        if ((rc = sink_put(s, b, 8)) || (rc = sink_put(s, t->name, len)))
            return rc;
        put_le(b, (uint64_t)t->ndim, 4);
        if ((rc = sink_put(s, b, 4)))
            return rc;
        for (int d = 0; d < t->ndim; d++) {
            put_le(b, (uint64_t)t->ne[d], 8);
            if ((rc = sink_put(s, b, 8)))
                return rc;
        }
        put_le(b, (uint64_t)t->type, 4);
        put_le(b + 4, off, 8);
        if ((rc = sink_put(s, b, 12)))
            return rc;
        off = pad_to(off + t->nbytes, w->alignment);
    }
    if ((rc = sink_zeros(s, pad_to(s->len, w->alignment) - s->len)))
        return rc;
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        if ((rc = sink_put(s, t->data, t->nbytes)) ||
            (rc = sink_zeros(s, pad_to(t->nbytes, w->alignment) - t->nbytes)))
            return rc;
    }
    return NR_OK;
}

int nr_gguf_writer_write_to_mem(struct nr_gguf_writer *w, void **buf, size_t *len)
{
    struct sink s = {0};
    size_t ds, total;
    int rc;
    *buf = NULL;
    *len = 0;
    if ((rc = w_layout(w, &ds, &total)))
        return rc;
    s.buf = nr_malloc(total ? total : 1);
    if (!s.buf)
        return nr_err_set(NR_ENOMEM, "gguf writer: out of memory for %zu bytes", total);
    s.cap = total;
    if ((rc = w_emit(w, &s)) == NR_OK && s.len != total)
        rc =
            nr_err_set(NR_EINTERNAL, "gguf writer: wrote %zu bytes, layout says %zu", s.len, total);
    if (rc) {
        nr_free(s.buf);
        return rc;
    }
    *buf = s.buf;
    *len = total;
    return NR_OK;
}

int nr_gguf_writer_write(struct nr_gguf_writer *w, const char *path)
{
    struct sink s = {0};
    size_t n = strlen(path) + 5;
    char *tmp = nr_malloc(n);
    int rc;

    if (!tmp)
        return nr_err_set(NR_ENOMEM, "gguf writer: out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    s.f = fopen(tmp, "wb");
    if (!s.f) {
        rc = nr_err_set(NR_EIO, "gguf writer: cannot create %s.tmp: %s", base_name(path),
                        strerror(errno));
        nr_free(tmp);
        return rc;
    }
    rc = w_emit(w, &s);
    if (!rc && (fflush(s.f) != 0 || fsync(fileno(s.f)) != 0))
        rc = nr_err_set(NR_EIO, "gguf writer: flushing %s: %s", base_name(path), strerror(errno));
    if (fclose(s.f) != 0 && !rc)
        rc = nr_err_set(NR_EIO, "gguf writer: closing %s: %s", base_name(path), strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc =
            nr_err_set(NR_EIO, "gguf writer: renaming to %s: %s", base_name(path), strerror(errno));
    if (rc)
        unlink(tmp);
    nr_free(tmp);
    return rc;
}
