#include "nr_test.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"
#include "nr_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_err_messages(void)
{
    int rc = nr_err_set(NR_EFORMAT, "bad thing %d", 7);
    NR_CHECK_INT(rc, NR_EFORMAT);
    NR_CHECK(strcmp(nr_err_msg(), "bad thing 7") == 0);
    rc = nr_err_wrap(rc, "loading %s", "x.gguf");
    NR_CHECK(strcmp(nr_err_msg(), "loading x.gguf: bad thing 7") == 0);
}

static void test_mem_fault_injection(void)
{
    size_t before = nr_mem_held();
    void *a, *b, *c;
    nr_mem_fail_after(2);
    a = nr_malloc(10);
    b = nr_malloc(10);
    c = nr_malloc(10);
    nr_mem_fail_after(0);
    NR_CHECK(a != NULL);
    NR_CHECK(b == NULL);
    NR_CHECK(c == NULL);
    NR_CHECK_INT(nr_mem_held(), before + 10);
    nr_free(a);
    NR_CHECK_INT(nr_mem_held(), before);
}

static void test_mem_aligned_and_overflow(void)
{
    float *p = nr_aligned_alloc(64, 1000);
    NR_CHECK(p != NULL);
    NR_CHECK(((uintptr_t)p & 63) == 0);
    nr_free(p);
    NR_CHECK(nr_calloc(SIZE_MAX / 2, 4) == NULL);
    NR_CHECK(nr_malloc(SIZE_MAX - 8) == NULL);
}

static atomic_int hits[1000];
static void mark(void *ctx, int i, int w)
{
    (void)ctx;
    (void)w;
    atomic_fetch_add(&hits[i], 1);
}

static void test_pool_runs_every_task_once(void)
{
    struct nr_pool *p = nr_pool_new(3);
    NR_CHECK(p != NULL);
    for (int round = 0; round < 200; round++) {
        int n = 1 + (round * 7) % 1000;
        memset(hits, 0, sizeof hits);
        nr_pool_run(p, n, mark, NULL);
        for (int i = 0; i < n; i++)
            NR_CHECK_MSG(hits[i] == 1, "round %d task %d ran %d times", round, i, (int)hits[i]);
    }
    nr_pool_free(p);
}

/* Two callers share one pool: each run's tasks run exactly once, each with
 * its own fn and ctx, and a worker id < the pool's threads. */
struct shared_run {
    struct nr_pool *p;
    atomic_int hits[500];
    atomic_int bad_worker;
    int bad; /* runs that did not see each task exactly once */
};

static void mark_ctx(void *ctx, int i, int w)
{
    struct shared_run *r = ctx;
    if (w < 0 || w >= nr_pool_threads(r->p))
        atomic_fetch_add(&r->bad_worker, 1);
    atomic_fetch_add(&r->hits[i], 1);
}

static void *shared_caller(void *arg)
{
    struct shared_run *r = arg;
    for (int round = 0; round < 300; round++) {
        int n = 2 + (round * 13) % 498;
        for (int i = 0; i < n; i++)
            atomic_store(&r->hits[i], 0);
        nr_pool_run(r->p, n, mark_ctx, r);
        for (int i = 0; i < n; i++)
            if (atomic_load(&r->hits[i]) != 1) {
                r->bad++;
                break;
            }
    }
    return NULL;
}

static void test_pool_shared_by_two_callers(void)
{
    static struct shared_run a, b;
    pthread_t ta, tb;
    struct nr_pool *p = nr_pool_new(3);
    NR_CHECK(p != NULL);
    if (!p)
        return;
    a.p = b.p = p;
    NR_CHECK(pthread_create(&ta, NULL, shared_caller, &a) == 0);
    NR_CHECK(pthread_create(&tb, NULL, shared_caller, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    NR_CHECK_MSG(a.bad == 0 && b.bad == 0, "runs with lost or repeated tasks: %d and %d", a.bad,
                 b.bad);
    NR_CHECK(a.bad_worker == 0 && b.bad_worker == 0);
    nr_pool_free(p);
}

static void test_file_read_limits(void)
{
    char *buf;
    size_t len;
    int rc = nr_file_read(nr_test_src_path("CMakeLists.txt"), 1 << 20, &buf, &len);
    NR_CHECK_INT(rc, NR_OK);
    NR_CHECK(len > 100 && buf[len] == '\0');
    nr_free(buf);
    rc = nr_file_read(nr_test_src_path("CMakeLists.txt"), 10, &buf, &len);
    NR_CHECK_INT(rc, NR_ELIMIT);
    rc = nr_file_read(nr_test_src_path("no/such/file"), 10, &buf, &len);
    NR_CHECK_INT(rc, NR_ENOTFOUND);
    NR_CHECK(strstr(nr_err_msg(), NR_SOURCE_DIR) == NULL); /* no paths in messages */
}

/* Default-model lookup: $VAR wins unchecked, then $NANORAG_MODELS/rel, then
 * ./models/rel; a file is not taken for a directory nor the other way round. */
static void test_find_model(void)
{
    char tmp[] = "/tmp/nr_test_models_XXXXXX", path[512], buf[512];
    FILE *f;
    NR_CHECK(mkdtemp(tmp) != NULL);
    snprintf(path, sizeof path, "%s/dirmodel", tmp);
    NR_CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/filemodel.gguf", tmp);
    f = fopen(path, "w");
    NR_CHECK(f != NULL);
    if (f)
        fclose(f);

    unsetenv("NR_TEST_MODEL_VAR");
    setenv("NANORAG_MODELS", tmp, 1);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "dirmodel", 1, buf, sizeof buf), NR_OK);
    snprintf(path, sizeof path, "%s/dirmodel", tmp);
    NR_CHECK(strcmp(buf, path) == 0);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "filemodel.gguf", 0, buf, sizeof buf),
                 NR_OK);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "dirmodel", 0, buf, sizeof buf),
                 NR_ENOTFOUND);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "filemodel.gguf", 1, buf, sizeof buf),
                 NR_ENOTFOUND);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "filemodel.gguf", 0, buf, 8),
                 NR_ENOTFOUND); /* does not fit: not found, never truncated */

    setenv("NR_TEST_MODEL_VAR", "/somewhere/else.gguf", 1);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "dirmodel", 1, buf, sizeof buf), NR_OK);
    NR_CHECK(strcmp(buf, "/somewhere/else.gguf") == 0);
    NR_CHECK_INT(nr_path_find_model("NR_TEST_MODEL_VAR", "dirmodel", 1, buf, 8), NR_ELIMIT);
    unsetenv("NR_TEST_MODEL_VAR");
    unsetenv("NANORAG_MODELS");

    snprintf(path, sizeof path, "%s/dirmodel", tmp);
    rmdir(path);
    snprintf(path, sizeof path, "%s/filemodel.gguf", tmp);
    unlink(path);
    rmdir(tmp);
}

int main(void)
{
    NR_RUN(test_err_messages);
    NR_RUN(test_mem_fault_injection);
    NR_RUN(test_mem_aligned_and_overflow);
    NR_RUN(test_pool_runs_every_task_once);
    NR_RUN(test_pool_shared_by_two_callers);
    NR_RUN(test_file_read_limits);
    NR_RUN(test_find_model);
    return nr_test_summary();
}
