#include "nr_test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int nr_test_failed_checks;
int nr_test_skipped_flag;
static int n_passed, n_failed, n_skipped;

void nr_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    nr_test_failed_checks++;
    if (nr_test_failed_checks > 50)
        return; /* keep logs readable when a whole table fails */
    fprintf(stdout, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

void nr_test_run(const char *name, void (*fn)(void))
{
    int before = nr_test_failed_checks;
    nr_test_skipped_flag = 0;
    printf("%s\n", name);
    fflush(stdout);
    fn();
    if (nr_test_failed_checks != before) {
        n_failed++;
        printf("  -> FAILED\n");
    } else if (nr_test_skipped_flag) {
        n_skipped++;
    } else {
        n_passed++;
    }
    fflush(stdout);
}

int nr_test_summary(void)
{
    printf("%d passed, %d failed, %d skipped\n", n_passed, n_failed, n_skipped);
    return n_failed ? 1 : 0;
}

static const char *join(const char *dir, const char *rel)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, rel);
    return b;
}

const char *nr_test_src_path(const char *rel)
{
    return join(NR_SOURCE_DIR, rel);
}

const char *nr_test_model_path(const char *rel)
{
    const char *dir = getenv("NANORAG_MODELS");
    return join(dir && *dir ? dir : NR_MODELS_DIR, rel);
}
