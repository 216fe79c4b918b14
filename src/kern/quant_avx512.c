/*
 * quant_avx512: nr_quant's dot kernels for CPUs with AVX-512 VL + VNNI
 * (quant_x86.h with QX_VNNI: vpdpbusd and vpdpwssd fuse the multiply and the
 * int32 accumulation of the integer steps, on 256-bit vectors).
 */
#define QX_VNNI 1
#include "quant_x86.h"

const struct nr_quant_kernels nr_quant_avx512_kernels = QX_KERNELS("avx512");
