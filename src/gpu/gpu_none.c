/* The GPU interface when the binary is built without CUDA. */
#ifndef NR_HAVE_CUDA
#include "nr_gpu.h"

#include "nr_err.h"

int nr_gpu_built(void)
{
    return 0;
}

int nr_gpu_count(const char **why)
{
    if (why)
        *why = "built without CUDA";
    return 0;
}

int nr_gpu_query(int index, struct nr_gpu_device *d)
{
    (void)index;
    (void)d;
    return nr_err_set(NR_EUNSUPPORTED, "built without CUDA");
}

void nr_gpu_versions(int *driver, int *runtime, int *cublas)
{
    *driver = *runtime = *cublas = 0;
}
#else
typedef int nr_gpu_none_unused; /* ISO C forbids an empty translation unit */
#endif
