#include "nr_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NR_ERR_MSG_MAX 512

static _Thread_local char err_msg[NR_ERR_MSG_MAX];

int nr_err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return code;
}

int nr_err_wrap(int code, const char *fmt, ...)
{
    char prefix[NR_ERR_MSG_MAX];
    char old[NR_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    /* Truncation is fine: the message is for people, the code for programs. */
    if (snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, old[0] ? old : nr_err_name(code)) < 0)
        err_msg[0] = '\0';
    return code;
}

const char *nr_err_msg(void)
{
    return err_msg;
}

void nr_err_clear(void)
{
    err_msg[0] = '\0';
}

const char *nr_err_name(int code)
{
    switch (code) {
    case NR_OK:
        return "OK";
    case NR_ENOMEM:
        return "out of memory";
    case NR_EIO:
        return "I/O error";
    case NR_EFORMAT:
        return "malformed data";
    case NR_EINVAL:
        return "invalid argument";
    case NR_EUNSUPPORTED:
        return "unsupported";
    case NR_ELIMIT:
        return "limit exceeded";
    case NR_ENOTFOUND:
        return "not found";
    case NR_EINTERNAL:
        return "internal error";
    case NR_EBUSY:
        return "busy";
    case NR_ECANCELED:
        return "canceled";
    case NR_EREMOTE:
        return "remote error";
    default:
        return "unknown error";
    }
}
