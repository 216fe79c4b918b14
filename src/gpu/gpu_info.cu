/* Device queries through the CUDA runtime; every call is checked. */
#include "nr_gpu.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "nr_err.h"
}

extern "C" int nr_gpu_built(void)
{
    return 1;
}

extern "C" int nr_gpu_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why)
            *why = cudaGetErrorString(e);
        cudaGetLastError(); /* clear the sticky-free error */
        return 0;
    }
    if (n == 0 && why)
        *why = "no CUDA device";
    return n;
}

extern "C" int nr_gpu_query(int index, struct nr_gpu_device *d)
{
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, index);
    memset(d, 0, sizeof *d);
    if (e != cudaSuccess)
        return nr_err_set(NR_EIO, "cudaGetDeviceProperties(%d): %s", index, cudaGetErrorString(e));
    snprintf(d->name, sizeof d->name, "%s", p.name);
    d->cc_major = p.major;
    d->cc_minor = p.minor;
    d->integrated = p.integrated;
    d->multiprocessors = p.multiProcessorCount;
    d->total_mem = p.totalGlobalMem;
    {
        int prev = 0;
        size_t fr = 0, tot = 0;
        if (cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(index) == cudaSuccess &&
            cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
            d->free_mem = fr;
            d->total_mem = tot;
        }
        cudaGetLastError();
        cudaSetDevice(prev);
    }
    return NR_OK;
}

extern "C" void nr_gpu_versions(int *driver, int *runtime, int *cublas)
{
    *driver = *runtime = *cublas = 0;
    if (cudaDriverGetVersion(driver) != cudaSuccess)
        *driver = 0;
    if (cudaRuntimeGetVersion(runtime) != cudaSuccess)
        *runtime = 0;
    {
        /* cuBLAS is not linked (see CMakeLists.txt): ask the library itself,
         * if it is installed, through cublasGetProperty. */
        static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                            NULL};
        for (int i = 0; names[i] && !*cublas; i++) {
            void *h = dlopen(names[i], RTLD_LAZY | RTLD_LOCAL);
            typedef int (*getprop_fn)(int, int *);
            getprop_fn getprop;
            int ma = 0, mi = 0, pa = 0;
            if (!h)
                continue;
            getprop = (getprop_fn)dlsym(h, "cublasGetProperty");
            /* libraryPropertyType: MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2 */
            if (getprop && getprop(0, &ma) == 0 && getprop(1, &mi) == 0 && getprop(2, &pa) == 0)
                *cublas = ma * 10000 + mi * 100 + pa;
            dlclose(h);
        }
    }
    cudaGetLastError();
}
