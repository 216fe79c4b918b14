#include "nr_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_level = -1;

static int level_from_env(void)
{
    const char *s = getenv("NANORAG_LOG");
    if (!s)
        return NR_LOG_WARN;
    if (!strcmp(s, "error"))
        return NR_LOG_ERROR;
    if (!strcmp(s, "info"))
        return NR_LOG_INFO;
    if (!strcmp(s, "debug"))
        return NR_LOG_DEBUG;
    return NR_LOG_WARN;
}

void nr_log_set_level(int level)
{
    log_level = level;
}

int nr_log_level(void)
{
    if (log_level < 0)
        log_level = level_from_env();
    return log_level;
}

void nr_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    va_list ap;
    if (level > nr_log_level())
        return;
    fprintf(stderr, "nanorag: %s: ", names[level & 3]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
