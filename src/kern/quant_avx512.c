/*
 * quant_avx512: avx512 dot products for nr_quant (see quant.c for the arithmetic).
 * Kernels not filled in here fall back to the scalar reference.
 */
#include "quant_internal.h"

const struct nr_quant_kernels nr_quant_avx512_kernels = {
    .name = "avx512",
};
