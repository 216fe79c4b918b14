/*
 * load_pdf.c: PDF text through the pdftotext program (Debian poppler-utils).
 *
 * Why a child process: poppler is GPL; nanorag is MIT. Running its command-
 * line tool keeps our binary free of GPL code (and a crash or a runaway parse
 * inside poppler takes down a child, not the server). The price is a process
 * start per PDF (a few ms) and a copy of the bytes through a socket.
 *
 * The call, with no shell in between (posix_spawnp: fork + exec with an argv
 * array; glibc implements it with vfork semantics, so a server holding
 * gigabytes of mappings does not pay for copying page tables, and it is safe
 * in a threaded program where fork followed by arbitrary code is not):
 *
 *     pdftotext -enc UTF-8 -eol unix - -
 *
 * The PDF goes in on stdin (poppler reads "-" into memory, which it needs
 * anyway since the cross-reference table sits at the end), so no temporary
 * file and no path from the outside reaches an argv. The text comes back on
 * stdout, diagnostics on stderr.
 *   stdin   one end of a socketpair, written with send(MSG_NOSIGNAL): a
 *           child that stops reading gives EPIPE, never a SIGPIPE that would
 *           kill the caller;
 *   stdout  read up to max_text_bytes; more -> the child is killed, NR_ELIMIT;
 *   stderr  the last 1 KiB is kept to explain a failure (no path is in it:
 *           the input is stdin).
 * All our ends are O_CLOEXEC, so children spawned by other threads at the same
 * moment do not inherit them. One poll() loop serves the three with a
 * deadline (pdf_timeout_ms): past it the child gets SIGKILL and the document
 * NR_ELIMIT. The child's address space is capped (prlimit RLIMIT_AS,
 * pdf_max_memory) right after it starts, and its CPU time to the timeout.
 *
 * Mode: the default (reading order), not -layout: -layout keeps the page's
 * physical arrangement, which puts the lines of two columns side by side into
 * one line; reading order keeps each column's sentences together, which is
 * what chunks need. Tables read worse; that is the trade.
 *
 * Output: pdftotext ends every page with a form feed; each one starts a new
 * page in the document (the final one is dropped), so pages with no text have
 * empty ranges and page numbers match the PDF's. Ligatures U+FB00..U+FB06
 * ("ﬁ") become their letters so that words tokenize as words.
 *
 * Errors: no "%PDF-" in the first 1 KiB -> NR_EFORMAT without starting
 * anything; pdftotext missing -> NR_EUNSUPPORTED; non-zero exit (damaged,
 * encrypted) -> NR_EFORMAT with poppler's last error line; killed by a
 * signal -> NR_EFORMAT; no text -> "empty document" (scanned pages: there is
 * no OCR here).
 *
 * Not handled: a process that has set SIGCHLD to SIG_IGN gets no exit status
 * (waitpid fails with ECHILD); then the text is used if the pipes closed
 * cleanly. Hyphenation at line ends is left as it is.
 */
#define _GNU_SOURCE
#include "load_internal.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define ERR_KEEP 1024
#define IO_CHUNK (64 * 1024)

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The most telling line of poppler's stderr (the last one that says
 * "Error", else the last one), as printable ASCII. */
static void explain(const char *err, size_t n, char *out, size_t cap)
{
    const char *best = NULL, *p = err, *end = err + n;
    int best_err = 0;
    size_t k = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        int is_err = memmem(p, (size_t)(le - p), "Error", 5) != NULL;
        if (le > p && (is_err || !best_err)) {
            best = p;
            best_err = is_err;
        }
        p = le + 1;
    }
    if (best)
        for (const char *q = best; q < end && *q != '\n' && k + 1 < cap; q++)
            out[k++] = *q >= 0x20 && *q < 0x7F ? *q : '?';
    out[k] = '\0';
}

struct child_io {
    char *out;
    size_t out_len, out_cap;
    char err[ERR_KEEP];
    size_t err_len;
};

/* Read what is there on fd; 1 at EOF, 0 for more later, <0 for an error. */
static int drain(int fd, struct child_io *io, int is_err, size_t max_text)
{
    for (;;) {
        char tmp[IO_CHUNK];
        char *dst;
        size_t room;
        ssize_t got;
        if (is_err) {
            dst = tmp;
            room = sizeof tmp;
        } else {
            if (io->out_cap - io->out_len < IO_CHUNK) {
                size_t ncap = io->out_cap ? io->out_cap * 2 : 4 * IO_CHUNK;
                char *nb;
                if (ncap > max_text + IO_CHUNK + 1)
                    ncap = max_text + IO_CHUNK + 1;
                nb = nr_realloc(io->out, ncap);
                if (!nb)
                    return nr_err_set(NR_ENOMEM, "pdf: out of memory reading pdftotext's output");
                io->out = nb;
                io->out_cap = ncap;
            }
            dst = io->out + io->out_len;
            room = io->out_cap - io->out_len - 1;
            if (room > IO_CHUNK)
                room = IO_CHUNK;
        }
        got = read(fd, dst, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (got < 0)
            return nr_err_set(NR_EIO, "pdf: reading pdftotext's output: %s", strerror(errno));
        if (got == 0)
            return 1;
        if (is_err) { /* keep the last ERR_KEEP - 1 bytes: poppler's verdict comes last */
            size_t g = (size_t)got, keep = ERR_KEEP - 1;
            const char *src = tmp;
            if (g > keep) {
                src += g - keep;
                g = keep;
            }
            if (io->err_len + g > keep) {
                size_t drop = io->err_len + g - keep;
                memmove(io->err, io->err + drop, io->err_len - drop);
                io->err_len -= drop;
            }
            memcpy(io->err + io->err_len, src, g);
            io->err_len += g;
            io->err[io->err_len] = '\0';
        } else {
            io->out_len += (size_t)got;
            if (io->out_len > max_text)
                return nr_err_set(NR_ELIMIT,
                                  "pdf: extracted text is larger than the %.1f MiB limit",
                                  (double)max_text / (1024.0 * 1024.0));
        }
    }
}

static int run_pdftotext(const unsigned char *d, size_t n, const struct nr_load_opts *o,
                         struct child_io *io)
{
    const char *prog = o->pdftotext && *o->pdftotext ? o->pdftotext : "pdftotext";
    char *argv[] = {(char *)prog, "-enc", "UTF-8", "-eol", "unix", "-", "-", NULL};
    int sv[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
    int in_fd, out_fd, err_fd, rc = NR_OK, status = 0, spawned = 0, reaped = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    pid_t pid = -1;
    size_t sent = 0;
    int64_t deadline;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(op, O_CLOEXEC) != 0 ||
        pipe2(ep, O_CLOEXEC) != 0) {
        rc = nr_err_set(NR_EIO, "pdf: cannot create pipes: %s", strerror(errno));
        goto out;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = nr_err_set(NR_ENOMEM, "pdf: cannot set up the child process");
        goto out;
    }
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        rc = nr_err_set(NR_ENOMEM, "pdf: cannot set up the child process");
        goto out;
    }
    /* The child starts with no blocked signals and default dispositions
     * (the caller may ignore SIGPIPE or block signals in this thread). */
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_adddup2(&fa, op[1], 1);
    posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
    rc = posix_spawnp(&pid, prog, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        int e = rc;
        if (e == ENOENT || e == ENOTDIR)
            rc = nr_err_set(NR_EUNSUPPORTED, "reading PDF needs the pdftotext program (Debian "
                                             "package poppler-utils), which is not installed");
        else
            rc = nr_err_set(NR_EIO, "pdf: cannot start pdftotext: %s", strerror(e));
        goto out;
    }
    spawned = 1;
    if (o->pdf_max_memory > 0) {
        struct rlimit rl = {(rlim_t)o->pdf_max_memory, (rlim_t)o->pdf_max_memory};
        prlimit(pid, RLIMIT_AS, &rl, NULL); /* best effort: the child may be gone */
    }
    if (o->pdf_timeout_ms > 0) {
        rlim_t secs = (rlim_t)(o->pdf_timeout_ms / 1000 + 1);
        struct rlimit rl = {secs, secs + 1};
        prlimit(pid, RLIMIT_CPU, &rl, NULL);
    }
    close_fd(&sv[1]);
    close_fd(&op[1]);
    close_fd(&ep[1]);
    in_fd = sv[0];
    out_fd = op[0];
    err_fd = ep[0];
    fcntl(out_fd, F_SETFL, O_NONBLOCK);
    fcntl(err_fd, F_SETFL, O_NONBLOCK);
    deadline = now_ms() + (o->pdf_timeout_ms > 0 ? o->pdf_timeout_ms : 30000);

    while (out_fd >= 0 || err_fd >= 0) {
        struct pollfd p[3];
        int k = 0, iw = -1, io_ = -1, ie = -1, left;
        int64_t t = now_ms();
        if (t >= deadline) {
            rc = nr_err_set(NR_ELIMIT, "pdf: pdftotext took longer than %.1f s; stopped",
                            (o->pdf_timeout_ms > 0 ? o->pdf_timeout_ms : 30000) / 1000.0);
            break;
        }
        left = (int)(deadline - t);
        if (in_fd >= 0) {
            p[k].fd = in_fd;
            p[k].events = POLLOUT;
            iw = k++;
        }
        if (out_fd >= 0) {
            p[k].fd = out_fd;
            p[k].events = POLLIN;
            io_ = k++;
        }
        if (err_fd >= 0) {
            p[k].fd = err_fd;
            p[k].events = POLLIN;
            ie = k++;
        }
        for (int i = 0; i < k; i++)
            p[i].revents = 0;
        if (poll(p, (nfds_t)k, left) < 0) {
            if (errno == EINTR)
                continue;
            rc = nr_err_set(NR_EIO, "pdf: poll: %s", strerror(errno));
            break;
        }
        if (iw >= 0 && p[iw].revents) {
            size_t chunk = n - sent < IO_CHUNK ? n - sent : IO_CHUNK;
            ssize_t w = send(in_fd, d + sent, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                close_fd(&in_fd); /* the child stopped reading: its exit status tells why */
            if (sent == n)
                close_fd(&in_fd); /* EOF for the child */
        }
        if (io_ >= 0 && p[io_].revents) {
            int r = drain(out_fd, io, 0, o->max_text_bytes);
            if (r < 0) {
                rc = r;
                break;
            }
            if (r == 1)
                close_fd(&out_fd);
        }
        if (ie >= 0 && p[ie].revents) {
            int r = drain(err_fd, io, 1, 0);
            if (r < 0) {
                rc = r;
                break;
            }
            if (r == 1)
                close_fd(&err_fd);
        }
    }
    close_fd(&in_fd);
    close_fd(&out_fd);
    close_fd(&err_fd);
    /* Reap: the pipes are closed, so the child is normally exiting already. */
    while (rc == NR_OK) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            reaped = 1;
            break;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) { /* ECHILD: SIGCHLD ignored by the caller; no status to read */
            reaped = 1;
            status = 0;
            break;
        }
        if (now_ms() >= deadline) {
            rc = nr_err_set(NR_ELIMIT, "pdf: pdftotext did not exit in time; stopped");
            break;
        }
        {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (!reaped) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        reaped = 1;
    }
    if (rc != NR_OK)
        goto out;
    if (WIFSIGNALED(status)) {
        rc = nr_err_set(NR_EFORMAT, "pdf: pdftotext was killed by signal %d (memory cap or crash)",
                        WTERMSIG(status));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        char why[160];
        explain(io->err, io->err_len, why, sizeof why);
        if (WEXITSTATUS(status) == 127)
            rc = nr_err_set(NR_EUNSUPPORTED, "reading PDF needs the pdftotext program (Debian "
                                             "package poppler-utils), which could not be run");
        else if (WEXITSTATUS(status) == 3)
            rc = nr_err_set(NR_EFORMAT, "pdf: the file forbids text extraction (%s)",
                            why[0] ? why : "permission error");
        else
            rc = nr_err_set(NR_EFORMAT, "pdf: unreadable PDF (pdftotext: %s)",
                            why[0] ? why : "failed without a message");
    }
out:
    if (spawned && !reaped) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < 2; i++) {
        close_fd(&sv[i]);
        close_fd(&op[i]);
        close_fd(&ep[i]);
    }
    return rc;
}

/* Replace the ligatures U+FB00..U+FB06 (EF AC 80..86) in place; returns the
 * new length. Each is 3 bytes and becomes 2 or 3 letters, so it never grows. */
static size_t unligature(char *s, size_t n)
{
    static const char *const lig[7] = {"ff", "fi", "fl", "ffi", "ffl", "st", "st"};
    size_t r = 0, w = 0;
    while (r < n) {
        if (r + 2 < n && (unsigned char)s[r] == 0xEF && (unsigned char)s[r + 1] == 0xAC &&
            (unsigned char)s[r + 2] >= 0x80 && (unsigned char)s[r + 2] <= 0x86) {
            const char *l = lig[(unsigned char)s[r + 2] - 0x80];
            size_t k = strlen(l);
            memcpy(s + w, l, k);
            w += k;
            r += 3;
            continue;
        }
        s[w++] = s[r++];
    }
    return w;
}

int nr_load_pdf(const unsigned char *d, size_t n, const struct nr_load_opts *o,
                struct nr_load_doc **out)
{
    struct child_io io;
    struct nr_tb b;
    size_t lim = n < 1024 + 5 ? n : 1024 + 5, end, p;
    int rc;

    *out = NULL;
    if (n < 5 || !memmem(d, lim, "%PDF-", 5))
        return nr_err_set(NR_EFORMAT, "pdf: not a PDF (no %%PDF- signature in the first 1 KiB)");
    memset(&io, 0, sizeof io);
    rc = run_pdftotext(d, n, o, &io);
    if (rc != NR_OK) {
        nr_free(io.out);
        return rc;
    }
    end = unligature(io.out, io.out_len);
    /* pdftotext ends each page with a form feed: the last one closes the last page. */
    while (end > 0 && (io.out[end - 1] == '\n' || io.out[end - 1] == ' '))
        end--;
    if (end > 0 && io.out[end - 1] == '\f')
        end--;
    nr_tb_init(&b, o->max_text_bytes);
    nr_tb_paged(&b);
    p = 0;
    while (p < end) {
        const char *ff = memchr(io.out + p, '\f', end - p);
        size_t q = ff ? (size_t)(ff - io.out) : end;
        nr_tb_put(&b, io.out + p, q - p, 1);
        if (ff)
            nr_tb_page(&b);
        p = q + (ff ? 1 : 0);
    }
    nr_free(io.out);
    return nr_tb_finish(&b, NR_LOAD_PDF, "pdf",
                        "the PDF has no text layer; scanned pages would need OCR", out);
}
