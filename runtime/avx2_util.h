/* Private: what the AVX2 kernel files share (kernels_avx2.c,
 * kernels_quant_avx2.c): the target attribute and small inline helpers.
 * Include only inside the files' x86-64 GCC/Clang sections. */
#ifndef FLOCK_RUNTIME_AVX2_UTIL_H
#define FLOCK_RUNTIME_AVX2_UTIL_H

#include <immintrin.h>
#include <stdint.h>

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

#endif
