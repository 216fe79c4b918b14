/*
 * nr_st: safetensors files (Hugging Face): a hardened reader.
 *
 * nr_st_open() maps the file read-only; nr_st_open_mem() reads a caller's
 * buffer without copying it (the buffer must outlive the handle). The header
 * is checked completely before the handle is returned (list in
 * safetensors.c); any problem is an error whose message names the tensor
 * and what was wrong.
 *
 * Lifetimes: the tensor array, names, metadata strings and data pointers
 * are valid until nr_st_close(). Names and metadata are NUL-terminated
 * copies owned by the handle; data points into the mapping / caller buffer.
 * A handle is never modified after open: threads may share it freely.
 *
 * Order: tensors[] is sorted by data offset (file order), not header order
 * (JSON objects have none that the format promises).
 *
 * Alignment: the format does not align tensor data. Writers in practice pad
 * the header so data starts 8-byte aligned and most tensors are aligned to
 * their element size, but nothing guarantees it: check
 * ((uintptr_t)t->data % nr_st_dtype_size(t->dtype)) before casting data to
 * a typed pointer, or memcpy.
 */
#ifndef NR_SAFETENSORS_H
#define NR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define NR_ST_MAX_HEADER  (100u << 20) /* bytes of JSON header */
#define NR_ST_MAX_DIMS    8
#define NR_ST_MAX_TENSORS (1 << 20)

enum nr_st_dtype {
    NR_ST_F32,
    NR_ST_F16,
    NR_ST_BF16,
    NR_ST_F64,
    NR_ST_I64,
    NR_ST_I32,
    NR_ST_I16,
    NR_ST_I8,
    NR_ST_U8,
    NR_ST_BOOL
};

struct nr_st_tensor {
    const char *name; /* NUL-terminated, owned by the handle */
    int dtype;        /* enum nr_st_dtype */
    int ndim;         /* 0..8 (0: a scalar, one element) */
    int64_t shape[8]; /* elements per dim, outermost first (row-major); unused = 0 */
    const void *data; /* into the mapping; see alignment above */
    size_t nbytes;    /* = product(shape) * dtype size */
};

struct nr_st { /* opened file */
    int n_tensors;
    struct nr_st_tensor *tensors; /* (n_tensors) sorted by data offset */
    /* private fields follow in safetensors.c */
};

/* Map `path` read-only and check it. On success *out owns the mapping. */
int nr_st_open(const char *path, struct nr_st **out);
/* Check `size` bytes at `data` without copying; the caller keeps data alive. */
int nr_st_open_mem(const void *data, size_t size, struct nr_st **out);
void nr_st_close(struct nr_st *st);

/* NULL if absent. O(log n). */
const struct nr_st_tensor *nr_st_find(const struct nr_st *st, const char *name);

/* "F32", ...; "invalid" for other numbers. */
const char *nr_st_dtype_name(int dtype);
/* Bytes per element; 0 for invalid numbers. */
size_t nr_st_dtype_size(int dtype);

/* The optional "__metadata__" string map. */
int nr_st_n_meta(const struct nr_st *st);
/* Entry i (0 <= i < n_meta): NR_OK and key/value, or NR_EINVAL. */
int nr_st_meta_at(const struct nr_st *st, int i, const char **key, const char **value);
/* Value for key, or NULL. */
const char *nr_st_meta(const struct nr_st *st, const char *key);

/*
 * Check a tensor against what a model expects: present (else NR_ENOTFOUND),
 * dtype equal, ndim equal unless -1, and shape[d] equal for d < ndim where
 * shape[d] != -1 (shape may be NULL; must be NULL when ndim is -1).
 * NR_EFORMAT messages name the tensor and what differed. *out may be NULL.
 */
int nr_st_expect(const struct nr_st *st, const char *name, int dtype, int ndim,
                 const int64_t *shape, const struct nr_st_tensor **out);

#endif
