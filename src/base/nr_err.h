/*
 * nr_err: the project-wide status codes and the last error message.
 *
 * Functions that can fail return an int: NR_OK (0) or a negative nr_status.
 * The function that detects a failure records a human-readable message with
 * nr_err_set(), which returns the code so it can be written as
 *
 *     return nr_err_set(NR_EFORMAT, "gguf: tensor '%s' offset past end", name);
 *
 * The message lives in thread-local storage: it is valid until the next
 * nr_err_set() on the same thread. Callers that add context use
 * nr_err_wrap(), which prefixes the existing message. Messages name what was
 * wrong with the input; they never carry pointers.
 */
#ifndef NR_ERR_H
#define NR_ERR_H

#include <stddef.h>

enum nr_status {
    NR_OK = 0,
    NR_ENOMEM = -1,       /* allocation failed */
    NR_EIO = -2,          /* read/write/open failed */
    NR_EFORMAT = -3,      /* malformed file or data */
    NR_EINVAL = -4,       /* bad argument or request */
    NR_EUNSUPPORTED = -5, /* valid but not handled (arch, dtype, ...) */
    NR_ELIMIT = -6,       /* a hard cap was reached */
    NR_ENOTFOUND = -7,    /* missing file, key, tensor */
    NR_EINTERNAL = -8,    /* our own invariant broke */
    NR_EBUSY = -9,        /* all slots taken and the queue full: retry later */
    NR_ECANCELED = -10,   /* stopped on request (client gone, cancel flag) */
    NR_EREMOTE = -11,     /* a remote server failed or answered with an error */
};

/* Record a printf-style message for `code` and return `code`. */
int nr_err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with "<context>: " and return `code`. */
int nr_err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" if none). */
const char *nr_err_msg(void);

/* Short name of a status code ("ENOMEM", ...). */
const char *nr_err_name(int code);

/* Forget the last message. */
void nr_err_clear(void);

#endif
