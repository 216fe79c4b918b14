/*
 * safetensors.c: reader for Hugging Face safetensors files.
 *
 * ---- Layout ----
 *
 *   off      size
 *   0        8      u64 little-endian N: bytes of the JSON header
 *   8        N      UTF-8 JSON object (writers pad it with spaces):
 *                     "__metadata__": {"key": "value", ...}     optional
 *                     "<tensor name>": {
 *                         "dtype": "F32" | "F16" | "BF16" | ...,
 *                         "shape": [d0, d1, ...],               outermost first
 *                         "data_offsets": [begin, end]          bytes, relative to 8+N
 *                     }, ...
 *   8+N      ...    data: each tensor's bytes, row-major, little-endian
 *
 * ---- Checks, in order (NR_EFORMAT unless noted) ----
 *   1. file >= 8 bytes
 *   2. N <= 100 MiB (NR_ELIMIT) and N <= file size - 8
 *   3. the header parses as strict JSON (jansson: valid UTF-8, no NUL in
 *      strings or keys, no trailing garbage, depth limited by jansson, and
 *      JSON_REJECT_DUPLICATES for duplicate names), and is an object
 *   4. at most 2^20 tensors (NR_ELIMIT)
 *   5. "__metadata__", if present, is an object whose values are strings
 *   6. tensor names are non-empty and have no NUL byte
 *   7. each entry is an object with exactly the fields dtype, shape,
 *      data_offsets (a missing or unknown field is an error: this reader
 *      does not guess what a field it does not know would change)
 *   8. dtype is a string naming a known dtype (others: NR_EUNSUPPORTED)
 *   9. shape is an array of <= 8 integers, each >= 0; the element count
 *      and the byte size do not overflow
 *  10. data_offsets is a pair [begin, end] of integers >= 0, begin <= end,
 *      end <= data size (file size - 8 - N), end - begin == byte size
 *  11. no two tensors overlap (zero-size tensors overlap nothing). Unlike
 *      the reference implementation, gaps between tensors and bytes after
 *      the last one are accepted: they are harmless, and the check that
 *      matters for safety is that every tensor lies inside the file.
 */
#include "nr_safetensors.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct meta_kv {
    const char *key;   /* in arena */
    const char *value; /* in arena */
};

struct st_priv {
    struct nr_st pub; /* first: nr_st * and st_priv * convert */
    struct nr_map map;
    size_t data_start; /* file offset of the data section: 8 + N */
    char *arena;       /* names and metadata strings, NUL-terminated */
    int n_meta;
    struct meta_kv *meta;                /* (n_meta) */
    const struct nr_st_tensor **by_name; /* (n_tensors) sorted by name */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [NR_ST_F32] = {"F32", 4},   [NR_ST_F16] = {"F16", 2}, [NR_ST_BF16] = {"BF16", 2},
    [NR_ST_F64] = {"F64", 8},   [NR_ST_I64] = {"I64", 8}, [NR_ST_I32] = {"I32", 4},
    [NR_ST_I16] = {"I16", 2},   [NR_ST_I8] = {"I8", 1},   [NR_ST_U8] = {"U8", 1},
    [NR_ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char *nr_st_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < N_DTYPES ? dtypes[dtype].name : "invalid";
}

size_t nr_st_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < N_DTYPES ? dtypes[dtype].size : 0;
}

static int dtype_from_name(const char *s)
{
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0)
            return i;
    return -1;
}

/* A non-negative JSON integer, as uint64: NULL, or why not. */
static const char *get_uint(const json_t *j, uint64_t *v)
{
    json_int_t x;
    if (!json_is_integer(j))
        return "is not an integer";
    x = json_integer_value(j);
    if (x < 0)
        return "is negative";
    *v = (uint64_t)x;
    return NULL;
}

/* Per-tensor scratch used while checking: begin offset for sorting. */
struct slot {
    struct nr_st_tensor t;
    uint64_t begin, end; /* data_offsets */
};

static int parse_entry(const char *name, json_t *entry, size_t data_size, struct slot *s)
{
    const char *field;
    size_t field_len;
    json_t *v, *dtype = NULL, *shape = NULL, *offs = NULL;
    uint64_t n = 1, nbytes, dim;
    const char *why;
    int dt;

    if (!json_is_object(entry))
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': entry is not an object", name);
    json_object_keylen_foreach(entry, field, field_len, v)
    {
        if (strcmp(field, "dtype") == 0)
            dtype = v;
        else if (strcmp(field, "shape") == 0)
            shape = v;
        else if (strcmp(field, "data_offsets") == 0)
            offs = v;
        else
            return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': unknown field '%.32s'",
                              name, field);
        (void)field_len;
    }
    if (!dtype || !shape || !offs)
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': missing field '%s'", name,
                          !dtype   ? "dtype"
                          : !shape ? "shape"
                                   : "data_offsets");
    if (!json_is_string(dtype))
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': dtype is not a string", name);
    if ((dt = dtype_from_name(json_string_value(dtype))) < 0)
        return nr_err_set(NR_EUNSUPPORTED, "safetensors: tensor '%.64s': unsupported dtype '%.32s'",
                          name, json_string_value(dtype));
    s->t.dtype = dt;

    if (!json_is_array(shape))
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': shape is not an array", name);
    if (json_array_size(shape) > NR_ST_MAX_DIMS)
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': shape has %zu dims, max %d",
                          name, json_array_size(shape), NR_ST_MAX_DIMS);
    s->t.ndim = (int)json_array_size(shape);
    for (int d = 0; d < s->t.ndim; d++) {
        if ((why = get_uint(json_array_get(shape, (size_t)d), &dim)))
            return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': shape[%d] %s", name, d,
                              why);
        s->t.shape[d] = (int64_t)dim; /* json_int_t: <= INT64_MAX */
        if (__builtin_mul_overflow(n, dim, &n) || n > (uint64_t)INT64_MAX)
            return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': element count overflows",
                              name);
    }
    if (__builtin_mul_overflow(n, (uint64_t)dtypes[dt].size, &nbytes) || nbytes > SIZE_MAX)
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': byte size overflows", name);
    s->t.nbytes = (size_t)nbytes;

    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return nr_err_set(NR_EFORMAT,
                          "safetensors: tensor '%.64s': data_offsets is not a [begin, end] pair",
                          name);
    for (int k = 0; k < 2; k++)
        if ((why = get_uint(json_array_get(offs, (size_t)k), k ? &s->end : &s->begin)))
            return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s': data_offsets[%d] %s", name,
                              k, why);
    if (s->begin > s->end)
        return nr_err_set(NR_EFORMAT,
                          "safetensors: tensor '%.64s': data_offsets begin %llu > end %llu", name,
                          (unsigned long long)s->begin, (unsigned long long)s->end);
    if (s->end > data_size)
        return nr_err_set(NR_EFORMAT,
                          "safetensors: tensor '%.64s': data_offsets end %llu is past the end of "
                          "the data (%zu bytes)",
                          name, (unsigned long long)s->end, data_size);
    if (s->end - s->begin != nbytes)
        return nr_err_set(NR_EFORMAT,
                          "safetensors: tensor '%.64s': data_offsets span %llu bytes, but %s %s "
                          "needs %llu",
                          name, (unsigned long long)(s->end - s->begin), dtypes[dt].name,
                          s->t.ndim ? "of this shape" : "scalar", (unsigned long long)nbytes);
    return NR_OK;
}

static int cmp_slot(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const struct nr_st_tensor *const *)a)->name,
                  (*(const struct nr_st_tensor *const *)b)->name);
}

static char *arena_put(char **cur, const char *s, size_t len)
{
    char *d = *cur;
    memcpy(d, s, len);
    d[len] = '\0';
    *cur += len + 1;
    return d;
}

static int parse(struct st_priv *p, const unsigned char *base, size_t size)
{
    json_error_t jerr;
    json_t *root = NULL, *v, *meta = NULL;
    const char *key;
    size_t key_len, arena_bytes = 0, data_size;
    uint64_t hlen;
    struct slot *slots = NULL;
    char *cur;
    int n = 0, rc = NR_OK;

    if (size < 8)
        return nr_err_set(
            NR_EFORMAT, "safetensors: file of %zu bytes is too small for the header length", size);
    hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | base[i];
    if (hlen > NR_ST_MAX_HEADER)
        return nr_err_set(NR_ELIMIT, "safetensors: header length %llu exceeds the %u byte limit",
                          (unsigned long long)hlen, NR_ST_MAX_HEADER);
    if (hlen > size - 8)
        return nr_err_set(NR_EFORMAT,
                          "safetensors: header length %llu runs past the end of the file (%zu "
                          "bytes)",
                          (unsigned long long)hlen, size);
    p->data_start = 8 + (size_t)hlen;
    data_size = size - p->data_start;

    root = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return nr_err_set(NR_ENOMEM, "safetensors: out of memory parsing the header");
        return nr_err_set(NR_EFORMAT, "safetensors: header is not valid JSON: %s (at byte %d)",
                          jerr.text, jerr.position);
    }
    if (!json_is_object(root)) {
        rc = nr_err_set(NR_EFORMAT, "safetensors: header is not a JSON object");
        goto done;
    }

    /* Pass 1: count and size the strings, check metadata and names. */
    json_object_keylen_foreach(root, key, key_len, v)
    {
        if (strlen(key) != key_len) {
            rc = nr_err_set(NR_EFORMAT, "safetensors: a tensor name contains a NUL byte");
            goto done;
        }
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            size_t mk_len;
            json_t *mv;
            if (!json_is_object(v)) {
                rc = nr_err_set(NR_EFORMAT, "safetensors: __metadata__ is not an object");
                goto done;
            }
            json_object_keylen_foreach(v, mk, mk_len, mv)
            {
                if (!json_is_string(mv) || strlen(mk) != mk_len ||
                    strlen(json_string_value(mv)) != json_string_length(mv)) {
                    rc = nr_err_set(NR_EFORMAT,
                                    "safetensors: __metadata__ value of '%.64s' is not a string",
                                    mk);
                    goto done;
                }
                arena_bytes += mk_len + 1 + json_string_length(mv) + 1;
            }
            meta = v;
            continue;
        }
        if (key_len == 0) {
            rc = nr_err_set(NR_EFORMAT, "safetensors: empty tensor name");
            goto done;
        }
        if (n >= NR_ST_MAX_TENSORS) {
            rc = nr_err_set(NR_ELIMIT, "safetensors: more than %d tensors", NR_ST_MAX_TENSORS);
            goto done;
        }
        n++;
        arena_bytes += key_len + 1;
    }

    /* Sizes are bounded by the 100 MiB header: no overflow. */
    p->arena = nr_malloc(arena_bytes ? arena_bytes : 1);
    slots = n ? nr_calloc((size_t)n, sizeof *slots) : NULL;
    p->n_meta = meta ? (int)json_object_size(meta) : 0;
    p->meta = p->n_meta ? nr_calloc((size_t)p->n_meta, sizeof *p->meta) : NULL;
    if (!p->arena || (n && !slots) || (p->n_meta && !p->meta)) {
        rc = nr_err_set(NR_ENOMEM, "safetensors: out of memory for %d tensors", n);
        goto done;
    }
    cur = p->arena;
    if (meta) {
        const char *mk;
        size_t mk_len;
        json_t *mv;
        int i = 0;
        json_object_keylen_foreach(meta, mk, mk_len, mv)
        {
            p->meta[i].key = arena_put(&cur, mk, mk_len);
            p->meta[i].value = arena_put(&cur, json_string_value(mv), json_string_length(mv));
            i++;
        }
    }

    /* Pass 2: check each tensor entry. */
    {
        int i = 0;
        json_object_keylen_foreach(root, key, key_len, v)
        {
            if (v == meta)
                continue;
            slots[i].t.name = arena_put(&cur, key, key_len);
            if ((rc = parse_entry(slots[i].t.name, v, data_size, &slots[i])))
                goto done;
            i++;
        }
    }

    /* Overlap: in offset order, each non-empty tensor starts at or after
     * the furthest end of the non-empty tensors before it. */
    if (n)
        qsort(slots, (size_t)n, sizeof *slots, cmp_slot);
    {
        int far = -1; /* index of the non-empty tensor with the largest end so far */
        for (int i = 0; i < n; i++) {
            if (slots[i].begin == slots[i].end)
                continue;
            if (far >= 0 && slots[i].begin < slots[far].end) {
                rc = nr_err_set(NR_EFORMAT, "safetensors: tensors '%.64s' and '%.64s' overlap",
                                slots[far].t.name, slots[i].t.name);
                goto done;
            }
            if (far < 0 || slots[i].end > slots[far].end)
                far = i;
        }
    }

    if (n) {
        p->pub.tensors = nr_calloc((size_t)n, sizeof *p->pub.tensors);
        p->by_name = nr_calloc((size_t)n, sizeof *p->by_name);
        if (!p->pub.tensors || !p->by_name) {
            rc = nr_err_set(NR_ENOMEM, "safetensors: out of memory for %d tensors", n);
            goto done;
        }
    }
    for (int i = 0; i < n; i++) {
        p->pub.tensors[i] = slots[i].t;
        p->pub.tensors[i].data = base + p->data_start + slots[i].begin;
        p->by_name[i] = &p->pub.tensors[i];
    }
    p->pub.n_tensors = n;
    if (n)
        qsort(p->by_name, (size_t)n, sizeof *p->by_name, cmp_by_name);
done:
    nr_free(slots);
    json_decref(root);
    return rc;
}

static int open_common(struct st_priv *p, const unsigned char *base, size_t size,
                       struct nr_st **out)
{
    int rc = parse(p, base, size);
    if (rc) {
        nr_st_close(&p->pub);
        return rc;
    }
    *out = &p->pub;
    return NR_OK;
}

int nr_st_open_mem(const void *data, size_t size, struct nr_st **out)
{
    struct st_priv *p;
    *out = NULL;
    if (!data && size)
        return nr_err_set(NR_EINVAL, "safetensors: NULL buffer");
    p = nr_calloc(1, sizeof *p);
    if (!p)
        return nr_err_set(NR_ENOMEM, "safetensors: out of memory");
    return open_common(p, data, size, out);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int nr_st_open(const char *path, struct nr_st **out)
{
    struct st_priv *p;
    int rc;
    *out = NULL;
    p = nr_calloc(1, sizeof *p);
    if (!p)
        return nr_err_set(NR_ENOMEM, "safetensors: out of memory");
    if ((rc = nr_file_map(path, &p->map))) {
        nr_free(p);
        return rc;
    }
    if ((rc = open_common(p, p->map.data, p->map.size, out)))
        return nr_err_wrap(rc, "%s", base_name(path));
    return NR_OK;
}

void nr_st_close(struct nr_st *st)
{
    struct st_priv *p = (struct st_priv *)st;
    if (!p)
        return;
    nr_free(p->pub.tensors);
    nr_free(p->by_name);
    nr_free(p->meta);
    nr_free(p->arena);
    nr_file_unmap(&p->map);
    nr_free(p);
}

const struct nr_st_tensor *nr_st_find(const struct nr_st *st, const char *name)
{
    const struct st_priv *p = (const struct st_priv *)st;
    struct nr_st_tensor key;
    const struct nr_st_tensor *kp = &key, *const * hit;
    if (!name || st->n_tensors == 0)
        return NULL;
    key.name = name;
    hit = bsearch(&kp, p->by_name, (size_t)st->n_tensors, sizeof *p->by_name, cmp_by_name);
    return hit ? *hit : NULL;
}

int nr_st_n_meta(const struct nr_st *st)
{
    return ((const struct st_priv *)st)->n_meta;
}

int nr_st_meta_at(const struct nr_st *st, int i, const char **key, const char **value)
{
    const struct st_priv *p = (const struct st_priv *)st;
    if (i < 0 || i >= p->n_meta)
        return nr_err_set(NR_EINVAL, "safetensors: metadata index %d out of range", i);
    *key = p->meta[i].key;
    *value = p->meta[i].value;
    return NR_OK;
}

const char *nr_st_meta(const struct nr_st *st, const char *key)
{
    const struct st_priv *p = (const struct st_priv *)st;
    for (int i = 0; key && i < p->n_meta; i++) /* a handful of entries: linear is fine */
        if (strcmp(p->meta[i].key, key) == 0)
            return p->meta[i].value;
    return NULL;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < ndim && n < cap; d++) {
        int k = shape[d] < 0
                    ? snprintf(buf + n, cap - n, "%s*", d ? ", " : "")
                    : snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (k < 0)
            return;
        n += (size_t)k;
    }
}

int nr_st_expect(const struct nr_st *st, const char *name, int dtype, int ndim,
                 const int64_t *shape, const struct nr_st_tensor **out)
{
    const struct nr_st_tensor *t;
    char have[160], want[160];

    if (out)
        *out = NULL;
    if (ndim < -1 || ndim > NR_ST_MAX_DIMS || (ndim == -1 && shape))
        return nr_err_set(NR_EINVAL, "safetensors: expect '%.64s': bad ndim %d", name, ndim);
    if (!(t = nr_st_find(st, name)))
        return nr_err_set(NR_ENOTFOUND, "safetensors: tensor '%.64s' is missing", name);
    if (t->dtype != dtype)
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s' has dtype %s, expected %s", name,
                          nr_st_dtype_name(t->dtype), nr_st_dtype_name(dtype));
    if (ndim != -1 && ndim != t->ndim)
        return nr_err_set(NR_EFORMAT, "safetensors: tensor '%.64s' has %d dims, expected %d", name,
                          t->ndim, ndim);
    for (int d = 0; shape && d < ndim; d++) {
        if (shape[d] != -1 && shape[d] != t->shape[d]) {
            fmt_shape(have, sizeof have, t->ndim, t->shape);
            fmt_shape(want, sizeof want, ndim, shape);
            return nr_err_set(NR_EFORMAT,
                              "safetensors: tensor '%.64s' has shape [%s], expected [%s]", name,
                              have, want);
        }
    }
    if (out)
        *out = t;
    return NR_OK;
}
