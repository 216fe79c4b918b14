#include "nr_str.h"

#include "nr_err.h"

#include <errno.h>
#include <stdlib.h>

int nr_parse_i64(const char *s, int64_t lo, int64_t hi, const char *what, int64_t *out)
{
    char *end;
    long long v;
    if (!s || !*s)
        return nr_err_set(NR_EINVAL, "%s: empty number", what);
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0' || end == s)
        return nr_err_set(NR_EINVAL, "%s: \"%.40s\" is not a whole number", what, s);
    if (v < lo || v > hi)
        return nr_err_set(NR_EINVAL, "%s: %lld is outside [%lld, %lld]", what, v, (long long)lo,
                          (long long)hi);
    *out = v;
    return NR_OK;
}

int nr_parse_int(const char *s, int lo, int hi, const char *what, int *out)
{
    int64_t v;
    int rc = nr_parse_i64(s, lo, hi, what, &v);
    if (rc == NR_OK)
        *out = (int)v;
    return rc;
}
