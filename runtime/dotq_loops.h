/* Private: the row loops of the int8-activation dot products (kernels.h,
 * dotq and dotq4), shared by the AVX2 and AVX-512 VNNI tables. A table
 * defines the per-block step of each type, STEP(p, xb, qx, acc, &off)
 * (the row's float sums advanced by block p against x block xb, whose int8
 * quants are qx), and gets from these the one-row and the four-row product
 * with the same steps in the same order, so a row's result is bitwise the
 * same whichever computes it. BS is the block's bytes, K the factor of the
 * offset term (-8 for q4_0, -16 for q5_0, 1 for q4_1's minimum). Include
 * after avx2_util.h and kernels.h. */
#ifndef FLOCK_RUNTIME_DOTQ_LOOPS_H
#define FLOCK_RUNTIME_DOTQ_LOOPS_H

/* The 32 int8 quants of an x block. */
AVX2_FN static inline __m256i load_qx(const flock_q8x *xb)
{
    return _mm256_loadu_si256((const __m256i *)xb->q);
}

#define FLOCK_DOTQ_ROWS(ATTR, NAME, NAME4, STEP, BS, K)                                                     \
    ATTR float NAME(const void *w, const flock_q8x *xq, size_t n)                                           \
    {                                                                                                       \
        const uint8_t *p = w;                                                                               \
        __m256 acc = _mm256_setzero_ps();                                                                   \
        float off = 0;                                                                                      \
        for (size_t b = 0; b < n / 32; b++, p += (BS))                                                      \
            acc = STEP(p, &xq[b], load_qx(&xq[b]), acc, &off);                                              \
        return hsum8(acc) + (K) * off;                                                                      \
    }                                                                                                       \
    ATTR void NAME4(const void *const *w, const flock_q8x *xq, size_t n, float *out)                        \
    {                                                                                                       \
        const uint8_t *p0 = w[0], *p1 = w[1], *p2 = w[2], *p3 = w[3];                                       \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                         \
        float f0 = 0, f1 = 0, f2 = 0, f3 = 0;                                                               \
        for (size_t b = 0; b < n / 32; b++) {                                                               \
            __m256i qx = load_qx(&xq[b]);                                                                   \
            size_t o = b * (BS);                                                                            \
            a0 = STEP(p0 + o, &xq[b], qx, a0, &f0);                                                         \
            a1 = STEP(p1 + o, &xq[b], qx, a1, &f1);                                                         \
            a2 = STEP(p2 + o, &xq[b], qx, a2, &f2);                                                         \
            a3 = STEP(p3 + o, &xq[b], qx, a3, &f3);                                                         \
        }                                                                                                   \
        out[0] = hsum8(a0) + (K) * f0, out[1] = hsum8(a1) + (K) * f1;                                       \
        out[2] = hsum8(a2) + (K) * f2, out[3] = hsum8(a3) + (K) * f3;                                       \
    }

#endif
