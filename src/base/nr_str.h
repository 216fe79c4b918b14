/*
 * nr_str: bounded number parsing (no atoi: every number read from a user or
 * a file is checked for syntax, range and trailing junk).
 */
#ifndef NR_STR_H
#define NR_STR_H

#include <stdint.h>

/* Parse a whole decimal integer in [lo, hi]; NR_EINVAL (message names `what`) otherwise. */
int nr_parse_i64(const char *s, int64_t lo, int64_t hi, const char *what, int64_t *out);
int nr_parse_int(const char *s, int lo, int hi, const char *what, int *out);

#endif
