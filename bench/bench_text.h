/*
 * bench_text.h: what the embedding benchmarks (bench_embed, bench_gpu_embed)
 * share — a monotonic clock in ms, a double comparator for percentiles, and
 * synthetic texts of an exact token count. Header-only (static functions):
 * each bench is one executable built from one .c file.
 */
#ifndef BENCH_TEXT_H
#define BENCH_TEXT_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *bench_words[] = {"data",   "model",  "search", "query",  "memory",   "index",
                                    "vector", "store",  "answer", "source", "document", "batch",
                                    "thread", "kernel", "cache",  "engine", "network",  "server"};

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* qsort comparator for doubles, ascending. */
static inline int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* bench_words[(i*7 + j) % n] for j < ntok: each word is one WordPiece token.
 * Caller frees; NULL when out of memory. */
static inline char *make_text(int i, int ntok)
{
    size_t cap = (size_t)ntok * 10 + 1, len = 0;
    char *s = malloc(cap);
    int nw = (int)(sizeof bench_words / sizeof bench_words[0]);
    for (int j = 0; j < ntok && s; j++) {
        int n = snprintf(s + len, cap - len, "%s%s", j ? " " : "", bench_words[(i * 7 + j) % nw]);
        len += (size_t)n;
    }
    return s;
}

#endif
