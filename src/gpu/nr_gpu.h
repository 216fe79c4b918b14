/*
 * nr_gpu: what the CUDA runtime can tell about the machine's GPUs.
 * Built from gpu_info.cu when CUDA is on; gpu_none.c answers "no GPU"
 * otherwise, so callers never need #ifdefs.
 */
#ifndef NR_GPU_H
#define NR_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nr_gpu_device {
    char name[256];
    int cc_major, cc_minor; /* compute capability */
    int integrated;         /* 1: shares memory with the CPU (Jetson) */
    int multiprocessors;
    size_t total_mem; /* bytes */
    size_t free_mem;  /* bytes, at query time */
};

/* 1 if this binary was built with CUDA. */
int nr_gpu_built(void);
/* Number of usable devices (0 when none, or the driver is missing: *why gets a reason). */
int nr_gpu_count(const char **why);
int nr_gpu_query(int index, struct nr_gpu_device *d);
/* CUDA driver / runtime / cuBLAS versions as integers (e.g. 12060), 0 if unknown. */
void nr_gpu_versions(int *driver, int *runtime, int *cublas);

#ifdef __cplusplus
}
#endif

#endif
