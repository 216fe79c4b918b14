/*
 * bench_http: a small closed-loop HTTP load generator for the server
 * benchmarks (docs/BENCHMARKS.md): N client threads, each with one
 * keep-alive connection, send the same POST back to back for a fixed time
 * and record every request's latency; the report gives requests/s and
 * latency percentiles per concurrency level.
 *
 *     bench_http --port 8080 [--host 127.0.0.1] [--path /api/embed]
 *                [--body JSON] [--concurrency 1,8,64] [--seconds 10] [--warmup 2]
 *
 * Plain HTTP/1.1 on blocking sockets: a reply is read by its Content-Length
 * (both servers under test send one), so the tool measures the servers and
 * not an HTTP library. Any status but 200, a short read or a closed
 * connection counts as an error (the connection is reopened). Latency is
 * from the first byte written to the last byte read (CLOCK_MONOTONIC).
 */
#define _GNU_SOURCE /* strcasestr */
#include "nr_mem.h"
#include "nr_str.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONC    1024
#define MAX_SAMPLES (1 << 20) /* latencies kept per thread */
#define BUF         (1 << 20) /* bytes of one reply, at most */

struct cfg {
    const char *host;
    int port;
    const char *path, *body;
    char req[8192]; /* the whole request, built once */
    size_t req_len;
};

struct worker {
    const struct cfg *c;
    atomic_int *phase; /* 0 warm-up, 1 measure, 2 stop */
    uint32_t *lat_us;  /* [MAX_SAMPLES] microseconds */
    long n, errors;
    pthread_t t;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int dial(const struct cfg *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    if (inet_pton(AF_INET, c->host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One request/response on fd: 0 ok, -1 transport error, 1 non-200. */
static int roundtrip(int fd, const struct cfg *c, char *buf)
{
    size_t got = 0, off = 0, need = 0, hdr = 0;
    int status = 0;
    while (off < c->req_len) {
        ssize_t w = write(fd, c->req + off, c->req_len - off);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    for (;;) {
        ssize_t r = read(fd, buf + got, BUF - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        if (!hdr) {
            char *end = strstr(buf, "\r\n\r\n"), *cl;
            if (!end) {
                if (got >= BUF - 1)
                    return -1;
                continue;
            }
            hdr = (size_t)(end - buf) + 4;
            if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
                return -1;
            cl = strcasestr(buf, "\r\ncontent-length:");
            if (!cl || cl > end)
                return -1; /* the benchmark needs sized replies */
            need = hdr + strtoul(cl + 17, NULL, 10);
            if (need >= BUF)
                return -1;
        }
        if (got >= need)
            return status == 200 ? 0 : 1;
    }
}

static void *run(void *arg)
{
    struct worker *w = arg;
    char *buf = nr_malloc(BUF);
    int fd = -1;
    if (!buf)
        return NULL;
    while (atomic_load(w->phase) < 2) {
        double t0;
        int rc;
        if (fd < 0 && (fd = dial(w->c)) < 0) {
            w->errors++;
            usleep(1000);
            continue;
        }
        t0 = now_s();
        rc = roundtrip(fd, w->c, buf);
        if (rc < 0) {
            close(fd);
            fd = -1;
        }
        if (atomic_load(w->phase) != 1)
            continue;
        if (rc) {
            w->errors++;
            continue;
        }
        if (w->n < MAX_SAMPLES)
            w->lat_us[w->n] = (uint32_t)((now_s() - t0) * 1e6);
        w->n++;
    }
    if (fd >= 0)
        close(fd);
    nr_free(buf);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int bench(const struct cfg *c, int conc, double warmup, double seconds)
{
    static struct worker w[MAX_CONC];
    atomic_int phase = 0;
    uint32_t *all;
    long total = 0, kept = 0, errors = 0;
    double t0;

    for (int i = 0; i < conc; i++) {
        w[i] = (struct worker){.c = c, .phase = &phase};
        if (!(w[i].lat_us = nr_malloc(MAX_SAMPLES * sizeof(uint32_t)))) {
            fprintf(stderr, "bench_http: out of memory\n");
            return 1;
        }
        pthread_create(&w[i].t, NULL, run, &w[i]);
    }
    usleep((useconds_t)(warmup * 1e6));
    atomic_store(&phase, 1);
    t0 = now_s();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&phase, 2);
    seconds = now_s() - t0;
    for (int i = 0; i < conc; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].n;
        kept += w[i].n < MAX_SAMPLES ? w[i].n : MAX_SAMPLES;
        errors += w[i].errors;
    }
    all = nr_malloc((size_t)(kept ? kept : 1) * sizeof *all);
    kept = 0;
    for (int i = 0; i < conc; i++) {
        long n = w[i].n < MAX_SAMPLES ? w[i].n : MAX_SAMPLES;
        if (all)
            memcpy(all + kept, w[i].lat_us, (size_t)n * sizeof *all);
        kept += n;
        nr_free(w[i].lat_us);
    }
    if (all && kept)
        qsort(all, (size_t)kept, sizeof *all, cmp_u32);
    printf("concurrency %3d: %8.1f req/s  p50 %7.2f ms  p99 %7.2f ms  (%ld requests, %ld "
           "errors, %.1f s)\n",
           conc, (double)total / seconds, kept ? all[kept / 2] / 1e3 : 0.0,
           kept ? all[(long)((double)kept * 0.99)] / 1e3 : 0.0, total, errors, seconds);
    fflush(stdout);
    nr_free(all);
    return 0;
}

int main(int argc, char **argv)
{
    struct cfg c = {.host = "127.0.0.1",
                    .port = 8080,
                    .path = "/api/embed",
                    .body = "{\"model\":\"all-minilm\",\"input\":\"how do i reset the password "
                            "on my home laptop\"}"};
    const char *conc = "1,8,64";
    double seconds = 10, warmup = 2;
    int n;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_http: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--host"))
            c.host = v;
        else if (!strcmp(a, "--port")) {
            if (nr_parse_int(v, 1, 65535, "--port", &c.port))
                return 2;
        } else if (!strcmp(a, "--path"))
            c.path = v;
        else if (!strcmp(a, "--body"))
            c.body = v;
        else if (!strcmp(a, "--concurrency"))
            conc = v;
        else if (!strcmp(a, "--seconds") || !strcmp(a, "--warmup")) {
            int x;
            if (nr_parse_int(v, 0, 3600, a, &x))
                return 2;
            *(!strcmp(a, "--seconds") ? &seconds : &warmup) = x;
        } else {
            fprintf(stderr, "usage: bench_http --port N [--host IP] [--path P] [--body JSON] "
                            "[--concurrency 1,8,64] [--seconds S] [--warmup S]\n");
            return 2;
        }
        i++;
    }
    n = snprintf(c.req, sizeof c.req,
                 "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 c.path, c.host, c.port, strlen(c.body), c.body);
    if (n < 0 || n >= (int)sizeof c.req) {
        fprintf(stderr, "bench_http: the request is too long\n");
        return 2;
    }
    c.req_len = (size_t)n;
    for (const char *p = conc; *p;) {
        char num[16];
        size_t k = strcspn(p, ",");
        int cn;
        if (k == 0 || k >= sizeof num)
            return 2;
        memcpy(num, p, k);
        num[k] = '\0';
        if (nr_parse_int(num, 1, MAX_CONC, "--concurrency", &cn) || bench(&c, cn, warmup, seconds))
            return 1;
        p += k + (p[k] == ',');
    }
    return 0;
}
