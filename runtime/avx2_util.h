/* Private: what the AVX2 kernel files share (kernels_avx2.c,
 * kernels_quant_avx2.c, and kernels_avx512.c, whose functions' wider target
 * takes these in): the target attribute and small inline helpers.
 * Include only inside the files' x86-64 GCC/Clang sections. */
#ifndef FLOCK_RUNTIME_AVX2_UTIL_H
#define FLOCK_RUNTIME_AVX2_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

/* The sum of the 8 lanes. */
AVX2_FN static inline float hsum8(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* One f16 to f32. */
AVX2_FN static inline float f16_1(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* A block's f16 scale at p. */
AVX2_FN static inline float half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_1(h);
}

/* The 16 bytes of 4-bit quants at qs as 32 unsigned bytes in element order:
 * the bytes in both halves (one broadcast load), the upper half's 64-bit
 * lanes shifted right by 4, then the low nibble of every byte. */
AVX2_FN static inline __m256i nibbles(const uint8_t *qs)
{
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
}

/* The fifth bits of a q5_0 block (u32 qh at p: bit j is element j's) as
 * 32 bytes of 0x10 or 0, in element order. */
AVX2_FN static inline __m256i q5_high(const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf); /* byte j = byte j / 8 of h */
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)); /* all ones where bit j % 8 is set */
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

/* The 32 unsigned 5-bit quants of a q5_0 block at p, in element order. */
AVX2_FN static inline __m256i q5_u8(const uint8_t *p)
{
    return _mm256_or_si256(nibbles(p + 6), q5_high(p + 2));
}

#endif
