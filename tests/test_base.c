#include "nr_test.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"
#include "nr_pool.h"

#include <stdatomic.h>
#include <string.h>

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

int main(void)
{
    NR_RUN(test_err_messages);
    NR_RUN(test_mem_fault_injection);
    NR_RUN(test_mem_aligned_and_overflow);
    NR_RUN(test_pool_runs_every_task_once);
    NR_RUN(test_file_read_limits);
    return nr_test_summary();
}
