/*
 * Each block carries a 16-byte header just below the pointer handed out:
 *
 *     base ... [pad] [size_t size][size_t offset] user bytes ...
 *                                                 ^ returned pointer
 *
 * `offset` is the distance from the malloc'd base to the user pointer, so
 * aligned and plain blocks are freed the same way. The header lets
 * nr_mem_held() count live bytes without a global table.
 */
#include "nr_mem.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16

static atomic_long fail_countdown; /* 0: off; k > 0: k-th allocation fails */
static atomic_size_t held_bytes;

struct hdr {
    size_t size;
    size_t offset;
};

void nr_mem_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

size_t nr_mem_held(void)
{
    return atomic_load(&held_bytes);
}

static int should_fail(void)
{
    long c = atomic_load(&fail_countdown);
    while (c > 0) {
        if (c == 1)
            return 1; /* stay at 1: every later allocation fails too */
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return 0;
    }
    return 0;
}

void *nr_aligned_alloc(size_t align, size_t n)
{
    size_t total;
    unsigned char *base, *user;
    struct hdr h;

    if (align < HDR)
        align = HDR;
    if (align & (align - 1))
        return NULL;
    if (should_fail())
        return NULL;
    if (nr_add_size(n, align + HDR, &total))
        return NULL;
    base = malloc(total);
    if (!base)
        return NULL;
    user = (unsigned char *)(((uintptr_t)base + HDR + align - 1) & ~(uintptr_t)(align - 1));
    h.size = n;
    h.offset = (size_t)(user - base);
    memcpy(user - HDR, &h, sizeof h);
    atomic_fetch_add(&held_bytes, n);
    return user;
}

void *nr_malloc(size_t n)
{
    return nr_aligned_alloc(HDR, n);
}

void *nr_calloc(size_t count, size_t size)
{
    size_t n;
    void *p;
    if (nr_mul_size(count, size, &n))
        return NULL;
    p = nr_malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

void nr_free(void *p)
{
    struct hdr h;
    if (!p)
        return;
    memcpy(&h, (unsigned char *)p - HDR, sizeof h);
    atomic_fetch_sub(&held_bytes, h.size);
    free((unsigned char *)p - h.offset);
}

void *nr_realloc(void *p, size_t n)
{
    struct hdr h;
    void *q;
    if (!p)
        return nr_malloc(n);
    memcpy(&h, (unsigned char *)p - HDR, sizeof h);
    q = nr_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, h.size < n ? h.size : n);
    nr_free(p);
    return q;
}

char *nr_strndup(const char *s, size_t n)
{
    char *d = nr_malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *nr_strdup(const char *s)
{
    return nr_strndup(s, strlen(s));
}
