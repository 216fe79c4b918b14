/*
 * quant_avx2: nr_quant's dot kernels for AVX2 + FMA + F16C (quant_x86.h,
 * compiled without VNNI: vpmaddubsw + vpmaddwd for the integer steps).
 */
#include "quant_x86.h"

const struct nr_quant_kernels nr_quant_avx2_kernels = QX_KERNELS("avx2", qx_q4_k, qx_q6_k);
