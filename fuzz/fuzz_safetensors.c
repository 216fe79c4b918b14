/*
 * Fuzz entry point for the safetensors reader: open the input, then walk
 * every tensor and metadata entry, touching each tensor's bytes so ASan sees
 * any pointer outside the input. The reader's promises (in range, sizes
 * consistent, sorted, no overlap) are checked with abort().
 */
#include "nr_err.h"
#include "nr_safetensors.h"

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
    for (size_t i = 0; i < n; i += 61)
        acc += b[i];
    if (n)
        acc += b[n - 1];
    sink += acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nr_st *st = NULL;
    const uint8_t *prev_end = NULL;
    int rc = nr_st_open_mem(data, size, &st);
    if (rc != NR_OK) {
        MUST(st == NULL && rc < 0 && nr_err_msg()[0] != '\0');
        return 0;
    }
    for (int i = 0; i < st->n_tensors; i++) {
        const struct nr_st_tensor *t = &st->tensors[i], *t2 = NULL;
        const uint8_t *p = t->data;
        unsigned __int128 n = 1; /* independent of the reader's arithmetic */
        MUST(t->name && *t->name && nr_st_find(st, t->name) == t);
        MUST(t->ndim >= 0 && t->ndim <= NR_ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) {
            MUST(t->shape[d] >= 0);
            if (n <= ((unsigned __int128)1 << 64))
                n *= (uint64_t)t->shape[d];
        }
        MUST(nr_st_dtype_size(t->dtype) > 0 && n * nr_st_dtype_size(t->dtype) == t->nbytes);
        MUST(p >= data && t->nbytes <= size && p + t->nbytes <= data + size);
        touch(p, t->nbytes);
        if (t->nbytes) { /* sorted by offset, non-empty ones do not overlap */
            MUST(!prev_end || p >= prev_end);
            prev_end = p + t->nbytes;
        }
        MUST(nr_st_expect(st, t->name, t->dtype, t->ndim, t->ndim ? t->shape : NULL, &t2) ==
                 NR_OK &&
             t2 == t);
    }
    for (int i = 0; i < nr_st_n_meta(st); i++) {
        const char *k = NULL, *v = NULL;
        MUST(nr_st_meta_at(st, i, &k, &v) == NR_OK && k && v);
        MUST(nr_st_meta(st, k) != NULL);
        sink += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    MUST(nr_st_meta_at(st, nr_st_n_meta(st), &(const char *){NULL}, &(const char *){NULL}) ==
         NR_EINVAL);
    nr_st_close(st);
    return 0;
}
