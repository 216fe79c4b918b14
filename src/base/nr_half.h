/*
 * nr_half: IEEE binary16 and bfloat16 <-> binary32 conversions (scalar,
 * exact, round-to-nearest-even on the way down). Used when loading weights
 * stored in half precision; hot paths use the SIMD converters in nr_kern.
 */
#ifndef NR_HALF_H
#define NR_HALF_H

#include <stdint.h>
#include <string.h>

static inline float nr_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t nr_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float nr_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (exp == 31) /* inf or NaN */
        return nr_f32_from_bits(sign | 0x7f800000u | (man << 13));
    return nr_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t nr_fp32_to_fp16(float f)
{
    uint32_t u = nr_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf / NaN */
        return (uint16_t)(sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 : 0));
    if (absu >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absu < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        /* add 0.5 (as float) so the FPU rounds the mantissa into place */
        float a = nr_f32_from_bits(absu) + 0.5f;
        return (uint16_t)(sign | (nr_f32_bits(a) - 0x3f000000u));
    }
    {
        uint32_t mant_odd = (absu >> 13) & 1;
        absu += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
        return (uint16_t)(sign | (absu >> 13));
    }
}

static inline float nr_bf16_to_fp32(uint16_t b)
{
    return nr_f32_from_bits((uint32_t)b << 16);
}

#endif
