/*
 * quant_avx512: nr_quant's dot kernels for CPUs with AVX-512 VL + VNNI.
 *
 * The kernels are quant_x86.h's with QX_VNNI (vpdpbusd and vpdpwssd fuse
 * the multiply and the int32 accumulation, 256-bit vectors), except Q6_K:
 * its 128-element halves line up with two zmm of act bytes, so one 64-byte
 * load of ql, one broadcast of qh and variable shifts (vpsllvw/vpsrlvw)
 * unpack 64 elements per step, with the sub-block scales spread over the
 * int16 lanes by one vpermw. Measured with bench_quant (kernel speed from
 * L2, 1 thread, Zen 4): q6_k 27 GB/s with 256-bit vectors, 33.5 with these.
 * A 512-bit Q4_K built the same way was slower than the 256-bit one (21.6
 * against 22.4-25 GB/s, matmul 130 against 144 GOP/s): on Zen 4 a 512-bit
 * op costs two 256-bit ones, and Q4_K's unpacking is already cheap.
 * Same exact int32 sums as the scalar reference; only the fp32 order differs.
 */
#define QX_VNNI 1
#include "quant_x86.h"

/*
 * vpermw indices: int16 lane i takes scale first + i / per. Q6_K half h,
 * part p: sub-blocks 8h + 4p .. 8h + 4p + 3 (8 lanes each, see qz_dotq6k).
 */
#define QZ_I16(f, per)                                                                             \
    {                                                                                              \
        (f), (f), (f), (f), (f), (f), (f), (f), (f) + 8 / (per), (f) + 8 / (per), (f) + 8 / (per), \
            (f) + 8 / (per), (f) + 8 / (per), (f) + 8 / (per), (f) + 8 / (per), (f) + 8 / (per),   \
            (f) + 16 / (per), (f) + 16 / (per), (f) + 16 / (per), (f) + 16 / (per),                \
            (f) + 16 / (per), (f) + 16 / (per), (f) + 16 / (per), (f) + 16 / (per),                \
            (f) + 24 / (per), (f) + 24 / (per), (f) + 24 / (per), (f) + 24 / (per),                \
            (f) + 24 / (per), (f) + 24 / (per), (f) + 24 / (per), (f) + 24 / (per)                 \
    }
static const int16_t qz_idx_q6k[4][32]
    __attribute__((aligned(64))) = {QZ_I16(0, 8), QZ_I16(4, 8), QZ_I16(8, 8), QZ_I16(12, 8)};

QX_INLINE __m256 qz_fold(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

QX_INLINE void qz_dotq6k(const uint8_t *w, const uint8_t *xq, size_t xs, int k, float *out,
                         const int nx)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* qh bits for the two 32-element parts of a 64-element zmm: <<4 / <<2
     * (elements s = 0, 1) and >>0 / >>2 (s = 2, 3), per int16 lane */
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512 acc[NR_QUANT_MR];
    const float *dx[NR_QUANT_MR];
    const int16_t *bs[NR_QUANT_MR];
    QX_UNROLL
    for (int j = 0; j < nx; j++) {
        acc[j] = _mm512_setzero_ps();
        dx[j] = nr_qa_d(xq + (size_t)j * xs, k);
        bs[j] = nr_qa_bsums(xq + (size_t)j * xs, k);
    }
    for (int b = 0; b < k / 256; b++, w += 210) {
        const __m256i sc16y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
        const __m512i sc16 = _mm512_castsi256_si512(sc16y);
        __m512i sumi[NR_QUANT_MR], sumi1[NR_QUANT_MR];
        float d = qx_h(w + 208);

        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            sumi[j] = _mm512_setzero_si512();
            sumi1[j] = _mm512_setzero_si512();
        }
        QX_UNROLL
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(w + 64 * h);
            __m512i qh =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h)));
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                          _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                          _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30));
            __m512i s01 = _mm512_permutexvar_epi16(_mm512_load_si512(qz_idx_q6k[2 * h]), sc16);
            __m512i s23 = _mm512_permutexvar_epi16(_mm512_load_si512(qz_idx_q6k[2 * h + 1]), sc16);
            QX_UNROLL
            for (int j = 0; j < nx; j++) {
                const uint8_t *a = xq + (size_t)j * xs + 256 * (size_t)b + 128 * (size_t)h;
                __m512i p0 = _mm512_maddubs_epi16(q01, _mm512_load_si512(a));
                __m512i p1 = _mm512_maddubs_epi16(q23, _mm512_load_si512(a + 64));
                sumi[j] = _mm512_dpwssd_epi32(sumi[j], p0, s01);
                sumi1[j] = _mm512_dpwssd_epi32(sumi1[j], p1, s23);
            }
        }
        QX_UNROLL
        for (int j = 0; j < nx; j++) {
            /* - 32 * sum_g sc[g] * bsums[g] */
            __m256i corr =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[j] + 16 * b)), sc16y);
            __m512i tot = _mm512_add_epi32(sumi[j], sumi1[j]);
            tot = _mm512_sub_epi32(tot, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(d * dx[j][b]), _mm512_cvtepi32_ps(tot), acc[j]);
        }
    }
    QX_UNROLL
    for (int j = 0; j < nx; j++)
        out[j] = qx_hsum(qz_fold(acc[j]));
}

#define QZ_Q6_K(w, x, xs, k, o, n) qz_dotq6k(w, x, xs, k, o, n)
QX_ENTRY(qz_q6_k, QZ_Q6_K)

const struct nr_quant_kernels nr_quant_avx512_kernels = QX_KERNELS("avx512", qx_q4_k, qz_q6_k);
