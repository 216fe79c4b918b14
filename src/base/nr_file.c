#define _GNU_SOURCE
#include "nr_file.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Only the file's base name goes into messages: errors must not leak paths. */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int nr_file_map(const char *path, struct nr_map *m)
{
    struct stat st;
    int fd;
    void *p;

    m->data = NULL;
    m->size = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nr_err_set(errno == ENOENT ? NR_ENOTFOUND : NR_EIO, "cannot open %s: %s",
                          base_name(path), strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nr_err_set(NR_EIO, "%s is not a regular file", base_name(path));
    }
    if (st.st_size == 0) {
        close(fd);
        return NR_OK;
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return nr_err_set(NR_EIO, "cannot map %s: %s", base_name(path), strerror(errno));
    m->data = p;
    m->size = (size_t)st.st_size;
    return NR_OK;
}

void nr_file_unmap(struct nr_map *m)
{
    if (m->data)
        munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

void nr_file_map_release(struct nr_map *m)
{
    if (m->data)
        madvise((void *)m->data, m->size, MADV_DONTNEED);
}

void nr_file_release_range(const void *p, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(page - 1);
    if (e > b)
        madvise((void *)b, e - b, MADV_DONTNEED);
}

int nr_file_read(const char *path, size_t max_bytes, char **out, size_t *len)
{
    FILE *f;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = NR_OK;

    *out = NULL;
    if (len)
        *len = 0;
    f = fopen(path, "rb");
    if (!f)
        return nr_err_set(errno == ENOENT ? NR_ENOTFOUND : NR_EIO, "cannot open %s: %s",
                          base_name(path), strerror(errno));
    for (;;) {
        size_t got;
        if (n + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;
            if (ncap > max_bytes + 1)
                ncap = max_bytes + 1;
            if (ncap <= n + 1) {
                rc = nr_err_set(NR_ELIMIT, "%s is larger than %zu bytes", base_name(path),
                                max_bytes);
                goto fail;
            }
            nb = nr_realloc(buf, ncap + 1);
            if (!nb) {
                rc = nr_err_set(NR_ENOMEM, "out of memory reading %s", base_name(path));
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        got = fread(buf + n, 1, cap - n, f); /* buf holds cap + 1 bytes */
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = nr_err_set(NR_EIO, "read error on %s", base_name(path));
        goto fail;
    }
    if (n > max_bytes) {
        rc = nr_err_set(NR_ELIMIT, "%s is larger than %zu bytes", base_name(path), max_bytes);
        goto fail;
    }
    if (!buf) {
        buf = nr_malloc(1);
        if (!buf) {
            rc = nr_err_set(NR_ENOMEM, "out of memory reading %s", base_name(path));
            goto fail;
        }
    }
    buf[n] = '\0';
    fclose(f);
    *out = buf;
    if (len)
        *len = n;
    return NR_OK;
fail:
    fclose(f);
    nr_free(buf);
    return rc;
}

int nr_path_join(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return nr_err_set(NR_ELIMIT, "path too long: %s", name);
    return NR_OK;
}

int nr_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int nr_path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int model_at(char *buf, size_t cap, const char *dir, const char *rel, int want_dir)
{
    int n = snprintf(buf, cap, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return want_dir ? nr_path_is_dir(buf) : nr_path_is_file(buf);
}

int nr_path_find_model(const char *env_var, const char *rel, int want_dir, char *buf, size_t cap)
{
    const char *env = getenv(env_var);
    char exe[4096];
    ssize_t n;

    if (env && *env) {
        if (snprintf(buf, cap, "%s", env) >= (int)cap)
            return nr_err_set(NR_ELIMIT, "%s is longer than %zu bytes", env_var, cap - 1);
        return NR_OK;
    }
    env = getenv("NANORAG_MODELS");
    if (env && *env && model_at(buf, cap, env, rel, want_dir))
        return NR_OK;
    if (model_at(buf, cap, "models", rel, want_dir))
        return NR_OK;
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        /* "/../models" and its NUL replace the last component: 11 bytes */
        if (slash && (size_t)(slash - exe) + 11 <= sizeof exe) {
            memcpy(slash, "/../models", 11);
            if (model_at(buf, cap, exe, rel, want_dir))
                return NR_OK;
        }
    }
    return NR_ENOTFOUND;
}
