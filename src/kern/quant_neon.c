/*
 * quant_neon: neon dot products for nr_quant (see quant.c for the arithmetic).
 * Kernels not filled in here fall back to the scalar reference.
 */
#include "quant_internal.h"

const struct nr_quant_kernels nr_quant_neon_kernels = {
    .name = "neon",
};
