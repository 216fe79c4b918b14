/*
 * nr_gguf: GGUF (v2, v3) model files: a hardened reader and a small writer.
 *
 * Reader. nr_gguf_open() maps the file read-only; nr_gguf_open_mem() reads a
 * caller's buffer without copying it (the buffer must outlive the handle).
 * Every field is checked before use (the list of checks and the byte layout
 * are in the design comment at the top of gguf.c); a file that fails any
 * check gives an error whose message names what was wrong, never a crash.
 *
 * Lifetimes: every pointer handed out (tensor structs, tensor names, key
 * names, string values, tensor data) points into the handle or into the
 * mapping / caller buffer, and is valid until nr_gguf_close(). Nothing needs
 * freeing by the caller. A handle is never modified after open, so any
 * number of threads may read it at once.
 *
 * Strings in values (nr_gguf_get_str, nr_gguf_get_arr_str) are returned as a
 * pointer and a length into the file bytes: they are NOT NUL-terminated and
 * may contain any bytes (value strings are not UTF-8 checked; a tokenizer
 * that needs valid UTF-8 checks it itself). nr_gguf_get_cstr copies one into
 * a caller buffer with a NUL. Keys and tensor names ARE NUL-terminated copies
 * owned by the handle, checked to be valid UTF-8 without NUL bytes.
 *
 * Tensor data pointers are aligned to the file's alignment (>= 8) relative to
 * the start of the mapping; nr_gguf_open() mappings are page aligned, so
 * data is at least 8-byte aligned. With nr_gguf_open_mem() the alignment is
 * that of the caller's buffer plus the file's.
 *
 * Writer. Builds a file in memory order: KVs as they are added, tensors in
 * the order added, each tensor's data padded to the alignment. Tensor data
 * is BORROWED: the pointer given to nr_gguf_writer_add_tensor must stay
 * valid until nr_gguf_writer_write / _write_to_mem returns. The writer runs
 * the same checks as the reader on what it is given (duplicate keys, shapes,
 * sizes), so it cannot produce a file the reader rejects.
 */
#ifndef NR_GGUF_H
#define NR_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits (see gguf.c for why). */
#define NR_GGUF_MAX_TENSORS       (1 << 20)
#define NR_GGUF_MAX_KV            (1 << 20)
#define NR_GGUF_MAX_KEY           65535     /* bytes, as the spec says */
#define NR_GGUF_MAX_NAME          256       /* tensor name bytes (ggml itself: 63) */
#define NR_GGUF_MAX_STR           (1 << 20) /* value string bytes */
#define NR_GGUF_MAX_ARR           (1 << 24) /* elements in one array */
#define NR_GGUF_MAX_DEPTH         4         /* array nesting: array of array of ... */
#define NR_GGUF_MAX_ALIGNMENT     (1 << 20)
#define NR_GGUF_DEFAULT_ALIGNMENT 32

enum nr_gguf_vtype {
    NR_GGUF_U8 = 0,
    NR_GGUF_I8 = 1,
    NR_GGUF_U16 = 2,
    NR_GGUF_I16 = 3,
    NR_GGUF_U32 = 4,
    NR_GGUF_I32 = 5,
    NR_GGUF_F32 = 6,
    NR_GGUF_BOOL = 7,
    NR_GGUF_STRING = 8,
    NR_GGUF_ARRAY = 9,
    NR_GGUF_U64 = 10,
    NR_GGUF_I64 = 11,
    NR_GGUF_F64 = 12,
};

/*
 * Tensor types (numbers as in ggml's ggml_type). The IQ*, TQ* and MXFP4
 * types (16..23, 29, 34, 35, 39) are recognised by name but rejected as
 * NR_EUNSUPPORTED; 4, 5 and 31..33, 36..38 were removed from ggml and are
 * invalid in a file.
 */
enum nr_ggml_type {
    NR_GGML_F32 = 0,
    NR_GGML_F16 = 1,
    NR_GGML_Q4_0 = 2,
    NR_GGML_Q4_1 = 3,
    NR_GGML_Q5_0 = 6,
    NR_GGML_Q5_1 = 7,
    NR_GGML_Q8_0 = 8,
    NR_GGML_Q8_1 = 9,
    NR_GGML_Q2_K = 10,
    NR_GGML_Q3_K = 11,
    NR_GGML_Q4_K = 12,
    NR_GGML_Q5_K = 13,
    NR_GGML_Q6_K = 14,
    NR_GGML_Q8_K = 15,
    NR_GGML_I8 = 24,
    NR_GGML_I16 = 25,
    NR_GGML_I32 = 26,
    NR_GGML_I64 = 27,
    NR_GGML_F64 = 28,
    NR_GGML_BF16 = 30,
    NR_GGML_TYPE_COUNT = 40, /* one past the largest number ggml defines */
};

/* Bit for nr_gguf_expect's type_mask: NR_GGML_MASK(NR_GGML_F32) | ... */
#define NR_GGML_MASK(t) (UINT64_C(1) << (t))

struct nr_gguf_tensor {
    const char *name; /* NUL-terminated, owned by the handle */
    int type;         /* enum nr_ggml_type */
    int ndim;         /* 1..4 */
    int64_t ne[4];    /* elements per dim, ne[0] innermost (contiguous); unused = 1 */
    uint64_t offset;  /* bytes, relative to the data section */
    const void *data; /* into the mapping */
    size_t nbytes;    /* bytes of data (unpadded) */
};

struct nr_gguf; /* opaque */

/* ---- reader ---- */

/* Map `path` read-only and parse it. On success *out owns the mapping. */
int nr_gguf_open(const char *path, struct nr_gguf **out);
/* Parse `size` bytes at `data` without copying; caller keeps data alive. */
int nr_gguf_open_mem(const void *data, size_t size, struct nr_gguf **out);
void nr_gguf_close(struct nr_gguf *g);

uint32_t nr_gguf_version(const struct nr_gguf *g);
uint32_t nr_gguf_alignment(const struct nr_gguf *g);
/* Byte offset of the data section from the start of the file. */
size_t nr_gguf_data_offset(const struct nr_gguf *g);

int nr_gguf_n_tensors(const struct nr_gguf *g);
/* i in [0, n_tensors), in file order; NULL if out of range. */
const struct nr_gguf_tensor *nr_gguf_tensor(const struct nr_gguf *g, int i);
/* NULL if absent. O(log n). */
const struct nr_gguf_tensor *nr_gguf_find_tensor(const struct nr_gguf *g, const char *name);

/* KVs in file order. */
int nr_gguf_n_kv(const struct nr_gguf *g);
const char *nr_gguf_key(const struct nr_gguf *g, int i); /* NULL if out of range */
int nr_gguf_kv_type(const struct nr_gguf *g, int i); /* enum nr_gguf_vtype, -1 if out of range */
int nr_gguf_find_key(const struct nr_gguf *g, const char *key); /* index or -1; O(log n) */

/*
 * Typed getters. NR_ENOTFOUND if the key is absent; NR_EFORMAT (message
 * names the key, the stored type and the wanted type) if the stored type
 * does not match. Integer getters accept any integer type whose value fits
 * (else NR_EFORMAT naming the value); nr_gguf_get_f32 accepts f32, and f64
 * when the value is within float range. Bool is not an integer here.
 */
int nr_gguf_get_u32(const struct nr_gguf *g, const char *key, uint32_t *v);
int nr_gguf_get_i32(const struct nr_gguf *g, const char *key, int32_t *v);
int nr_gguf_get_u64(const struct nr_gguf *g, const char *key, uint64_t *v);
int nr_gguf_get_i64(const struct nr_gguf *g, const char *key, int64_t *v);
int nr_gguf_get_f32(const struct nr_gguf *g, const char *key, float *v);
int nr_gguf_get_f64(const struct nr_gguf *g, const char *key, double *v);
int nr_gguf_get_bool(const struct nr_gguf *g, const char *key, int *v);
/* Pointer + length into the file bytes; NOT NUL-terminated (see top). */
int nr_gguf_get_str(const struct nr_gguf *g, const char *key, const char **s, size_t *len);
/*
 * Copy a string value into buf with a terminating NUL. NR_ELIMIT if it does
 * not fit in cap bytes, NR_EFORMAT if it contains a NUL byte.
 */
int nr_gguf_get_cstr(const struct nr_gguf *g, const char *key, char *buf, size_t cap);

/*
 * Arrays. nr_gguf_get_arr gives the element type (NR_GGUF_ARRAY for nested
 * arrays, whose elements have no accessor) and count. Element getters:
 * NR_EFORMAT if the key is not an array of a matching element type (same
 * rules as the scalar getters), NR_EINVAL if i >= count. O(log n_kv) each.
 */
int nr_gguf_get_arr(const struct nr_gguf *g, const char *key, int *elem_type, uint64_t *count);
int nr_gguf_get_arr_str(const struct nr_gguf *g, const char *key, uint64_t i, const char **s,
                        size_t *len);
int nr_gguf_get_arr_i32(const struct nr_gguf *g, const char *key, uint64_t i, int32_t *v);
int nr_gguf_get_arr_i64(const struct nr_gguf *g, const char *key, uint64_t i, int64_t *v);
int nr_gguf_get_arr_f32(const struct nr_gguf *g, const char *key, uint64_t i, float *v);
int nr_gguf_get_arr_bool(const struct nr_gguf *g, const char *key, uint64_t i, int *v);

/* Name of a KV value type ("u32", "string", ...; "invalid" otherwise). */
const char *nr_gguf_vtype_name(int vtype);

/*
 * Type traits: elements per block and bytes per block (1 and the element
 * size for plain types), and the ggml name ("Q4_K"). Any out pointer may be
 * NULL. NR_EUNSUPPORTED (message names the type) for IQ/TQ/MXFP4 and for
 * numbers that are not types.
 */
int nr_ggml_type_info(int type, int *block_elems, int *block_bytes, const char **name);
/* Name for any number, including unsupported types ("IQ2_XXS"), "invalid" else. */
const char *nr_ggml_type_name(int type);
/*
 * Bytes of a tensor of `type` with ne[0..ndim-1]: NR_EFORMAT if ne[0] is not
 * a multiple of the block size, a dim is negative or the size overflows.
 */
int nr_ggml_nbytes(int type, int ndim, const int64_t *ne, size_t *nbytes);

/*
 * Check a tensor against what an architecture expects: present (else
 * NR_ENOTFOUND), type in type_mask (bits NR_GGML_MASK(t)), ndim equal unless
 * ndim == -1, and ne[d] equal for d < ndim where ne[d] != -1 (ne may be NULL
 * for any shape; when ndim == -1 it must be NULL). NR_EFORMAT messages name
 * the tensor and what differed. *out (may be NULL) gets the tensor.
 */
int nr_gguf_expect(const struct nr_gguf *g, const char *name, uint64_t type_mask, int ndim,
                   const int64_t *ne, const struct nr_gguf_tensor **out);

/* ---- writer ---- */

struct nr_gguf_writer;

/*
 * alignment: 0 for the default (32), else a power of two in [8, 1 MiB]; a
 * non-default alignment is recorded as the u32 KV general.alignment, written
 * first. Writes GGUF v3.
 */
int nr_gguf_writer_new(struct nr_gguf_writer **out, uint32_t alignment);
void nr_gguf_writer_free(struct nr_gguf_writer *w);

/* Keys: non-empty, <= 65535 bytes, UTF-8, unique (NR_EINVAL otherwise). */
int nr_gguf_writer_add_u8(struct nr_gguf_writer *w, const char *key, uint8_t v);
int nr_gguf_writer_add_i8(struct nr_gguf_writer *w, const char *key, int8_t v);
int nr_gguf_writer_add_u16(struct nr_gguf_writer *w, const char *key, uint16_t v);
int nr_gguf_writer_add_i16(struct nr_gguf_writer *w, const char *key, int16_t v);
int nr_gguf_writer_add_u32(struct nr_gguf_writer *w, const char *key, uint32_t v);
int nr_gguf_writer_add_i32(struct nr_gguf_writer *w, const char *key, int32_t v);
int nr_gguf_writer_add_u64(struct nr_gguf_writer *w, const char *key, uint64_t v);
int nr_gguf_writer_add_i64(struct nr_gguf_writer *w, const char *key, int64_t v);
int nr_gguf_writer_add_f32(struct nr_gguf_writer *w, const char *key, float v);
int nr_gguf_writer_add_f64(struct nr_gguf_writer *w, const char *key, double v);
int nr_gguf_writer_add_bool(struct nr_gguf_writer *w, const char *key, int v);
/* NUL-terminated value; _strn takes an explicit length (any bytes). */
int nr_gguf_writer_add_str(struct nr_gguf_writer *w, const char *key, const char *v);
int nr_gguf_writer_add_strn(struct nr_gguf_writer *w, const char *key, const char *v, size_t len);
int nr_gguf_writer_add_arr_str(struct nr_gguf_writer *w, const char *key, const char *const *strs,
                               uint64_t n);
int nr_gguf_writer_add_arr_i32(struct nr_gguf_writer *w, const char *key, const int32_t *v,
                               uint64_t n);
int nr_gguf_writer_add_arr_f32(struct nr_gguf_writer *w, const char *key, const float *v,
                               uint64_t n);
/*
 * Array of any fixed-size element type (not string, not array): `elems`
 * holds n values in host order of that type's C size (bool: one byte, 0/1).
 */
int nr_gguf_writer_add_arr(struct nr_gguf_writer *w, const char *key, int elem_type,
                           const void *elems, uint64_t n);

/*
 * Add a tensor: name 1..256 bytes, unique; supported type; ndim 1..4; ne[d]
 * >= 0 with ne[0] a multiple of the block size; nbytes must equal the size
 * those imply. `data` is borrowed (see top); it may be NULL only if nbytes
 * is 0.
 */
int nr_gguf_writer_add_tensor(struct nr_gguf_writer *w, const char *name, int type, int ndim,
                              const int64_t *ne, const void *data, size_t nbytes);

/* Bytes the file will have (0 if that would overflow size_t). */
size_t nr_gguf_writer_size(const struct nr_gguf_writer *w);
/* Write to `path` via a temporary file renamed into place. */
int nr_gguf_writer_write(struct nr_gguf_writer *w, const char *path);
/* Write into a new buffer (*buf: caller frees with nr_free). */
int nr_gguf_writer_write_to_mem(struct nr_gguf_writer *w, void **buf, size_t *len);

#endif
