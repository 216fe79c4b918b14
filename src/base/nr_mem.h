/*
 * nr_mem: allocation wrappers with overflow-checked sizes and fault injection.
 *
 * Every allocation in the project goes through nr_malloc/nr_calloc/
 * nr_realloc/nr_aligned_alloc and is released with nr_free. They return NULL
 * on failure (never abort); callers turn that into NR_ENOMEM.
 *
 * Fault injection (RELIABILITY D11): nr_mem_fail_after(n) makes the n-th
 * allocation from now on (1-based) and every later one fail, until
 * nr_mem_fail_after(0) turns it off. Tests loop n = 1, 2, ... over a whole
 * operation and check that each failure is a clean error with no leak.
 * The counter is process-wide and atomic.
 *
 * nr_mem_held() reports the bytes currently allocated through these
 * wrappers, for `nanorag status` and leak checks in tests.
 */
#ifndef NR_MEM_H
#define NR_MEM_H

#include <stddef.h>
#include <stdint.h>

void *nr_malloc(size_t n);
void *nr_calloc(size_t count, size_t size);
/* Aligned to `align` (a power of two >= sizeof(void *)); free with nr_free. */
void *nr_aligned_alloc(size_t align, size_t n);
void *nr_realloc(void *p, size_t n);
void nr_free(void *p);
/* nr_malloc + copy of the NUL-terminated string s; NULL on failure. */
char *nr_strdup(const char *s);
char *nr_strndup(const char *s, size_t n);

void nr_mem_fail_after(long n);
size_t nr_mem_held(void);

/* Checked size arithmetic: return 0 and store the result, or -1 on overflow. */
static inline int nr_mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int nr_add_size(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif
