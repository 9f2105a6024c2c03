/* Private: the row loops of the int8-activation dot products (kernels.h,
 * dotq and dotq4), shared by the AVX2 and AVX-512 VNNI tables. A table
 * defines the per-block step of each type, STEP(p, xds, qx, acc, &off)
 * (the row's float sums advanced by block p against an x block whose scale
 * and sum are xds = [d, s] and whose int8 quants are qx), and gets from
 * these the one-row and the four-row product with the same steps in the
 * same order, so a row's result is bitwise the same whichever computes it.
 * The offset term is summed in lane 1 of off (the steps' fma of the weight
 * block's [d, m] or [d, d] with xds: lane 1 is the scalar fmaf(m, s, off)
 * bit for bit, lane 0 is not used). BS is the block's bytes, K the factor
 * of the offset term (-8 for q4_0, -16 for q5_0, 1 for q4_1's minimum).
 * Include after avx2_util.h and kernels.h. */
#ifndef FLOCK_RUNTIME_DOTQ_LOOPS_H
#define FLOCK_RUNTIME_DOTQ_LOOPS_H

/* The 32 int8 quants of an x block. */
AVX2_FN static inline __m256i load_qx(const flock_q8x *xb)
{
    return _mm256_loadu_si256((const __m256i *)xb->q);
}

/* x block xb's [d, s] in lanes 0 and 1 (one 8-byte load). */
AVX2_FN static inline __m128 load_xds(const flock_q8x *xb)
{
    return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)xb));
}

/* The two f16 at p (a q4_1 block's d and m) as [d, m, 0, 0]: one load and
 * one conversion for both. */
AVX2_FN static inline __m128 f16_pair(const uint8_t *p)
{
    uint32_t h;
    memcpy(&h, p, 4);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)h));
}

/* The f16 at p in every lane. */
AVX2_FN static inline __m128 f16_bcast(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm_cvtph_ps(_mm_set1_epi16((short)h));
}

/* A block's step from its int32 lane sums i and weight scales w = [d, m]
 * (or [d, d]): acc += d dx i (the scalar product d dx, then one FMA per
 * lane), off += w xds (lane 1: m s, or d s). */
AVX2_FN static inline __m256 step_scale(__m256i i, __m128 w, __m128 xds, __m256 acc, __m128 *off)
{
    *off = _mm_fmadd_ps(w, xds, *off);
    return _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_mul_ps(w, xds)), _mm256_cvtepi32_ps(i), acc);
}

/* Lane 1 of v. */
AVX2_FN static inline float lane1(__m128 v)
{
    return _mm_cvtss_f32(_mm_movehdup_ps(v));
}

#define FLOCK_DOTQ_ROWS(ATTR, NAME, NAME4, STEP, BS, K)                                                     \
    ATTR float NAME(const void *w, const flock_q8x *xq, size_t n)                                           \
    {                                                                                                       \
        const uint8_t *p = w;                                                                               \
        __m256 acc = _mm256_setzero_ps();                                                                   \
        __m128 off = _mm_setzero_ps();                                                                      \
        for (size_t b = 0; b < n / 32; b++, p += (BS))                                                      \
            acc = STEP(p, load_xds(&xq[b]), load_qx(&xq[b]), acc, &off);                                    \
        return hsum8(acc) + (K) * lane1(off);                                                               \
    }                                                                                                       \
    ATTR void NAME4(const void *const *w, const flock_q8x *xq, size_t n, float *out)                        \
    {                                                                                                       \
        const uint8_t *p0 = w[0], *p1 = w[1], *p2 = w[2], *p3 = w[3];                                       \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                         \
        __m128 f0 = _mm_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;                                            \
        for (size_t b = 0; b < n / 32; b++) {                                                               \
            __m256i qx = load_qx(&xq[b]);                                                                   \
            __m128 xds = load_xds(&xq[b]);                                                                  \
            size_t o = b * (BS);                                                                            \
            a0 = STEP(p0 + o, xds, qx, a0, &f0);                                                            \
            a1 = STEP(p1 + o, xds, qx, a1, &f1);                                                            \
            a2 = STEP(p2 + o, xds, qx, a2, &f2);                                                            \
            a3 = STEP(p3 + o, xds, qx, a3, &f3);                                                            \
        }                                                                                                   \
        out[0] = hsum8(a0) + (K) * lane1(f0), out[1] = hsum8(a1) + (K) * lane1(f1);                         \
        out[2] = hsum8(a2) + (K) * lane1(f2), out[3] = hsum8(a3) + (K) * lane1(f3);                         \
    }

/* The q8_0 row product over a table's STEP(p, xb, qx, acc) (its 34-byte
 * block against x block xb): block b into acc[b % 4], then (a0 + a1) +
 * (a2 + a3), so both tables sum in the same order. Four chains: with one,
 * each block's FMA waited for the last (its 4-cycle latency per 34 bytes
 * capped one core at about 25 GB/s: Zen 5, Gemma 3's q8_0 LM head, `perf
 * annotate` stalled on the FMA and the vpdpbusd feeding it). */
#define FLOCK_DOTQ_Q8_0(ATTR, NAME, STEP)                                                                   \
    ATTR float NAME(const void *w, const flock_q8x *xq, size_t n)                                           \
    {                                                                                                       \
        const uint8_t *p = w;                                                                               \
        size_t nb = n / 32, b = 0;                                                                          \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                         \
        for (; b + 4 <= nb; b += 4, p += 136) {                                                             \
            a0 = STEP(p, &xq[b], load_qx(&xq[b]), a0);                                                      \
            a1 = STEP(p + 34, &xq[b + 1], load_qx(&xq[b + 1]), a1);                                         \
            a2 = STEP(p + 68, &xq[b + 2], load_qx(&xq[b + 2]), a2);                                         \
            a3 = STEP(p + 102, &xq[b + 3], load_qx(&xq[b + 3]), a3);                                        \
        }                                                                                                   \
        for (; b < nb; b++, p += 34)                                                                        \
            a0 = STEP(p, &xq[b], load_qx(&xq[b]), a0);                                                      \
        return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));                          \
    }

/* The 4-bit and 5-bit types' steps and their one-row and four-row products
 * (PFX_q4_0 and PFX4_q4_0, ... q4_1, q5_0), DOT(u8, i8) giving the 8 int32
 * lane sums of a block's 32 products: q4_0 and q5_0 take the unsigned
 * quants and subtract 8 (16) d s once per row, q4_1 adds its minimum m s.
 * LINK is the products' linkage (static or empty), FN the target
 * attribute. */
#define FLOCK_DOTQ_4BIT(LINK, FN, PFX, DOT)                                                                 \
    FN static inline __m256 PFX##_step_q4_0(const uint8_t *p, __m128 xds, __m256i qx, __m256 acc, __m128 *off) \
    {                                                                                                       \
        return step_scale(DOT(nibbles(p + 2), qx), f16_bcast(p), xds, acc, off);                            \
    }                                                                                                       \
    FN static inline __m256 PFX##_step_q4_1(const uint8_t *p, __m128 xds, __m256i qx, __m256 acc, __m128 *off) \
    {                                                                                                       \
        return step_scale(DOT(nibbles(p + 4), qx), f16_pair(p), xds, acc, off);                             \
    }                                                                                                       \
    FN static inline __m256 PFX##_step_q5_0(const uint8_t *p, __m128 xds, __m256i qx, __m256 acc, __m128 *off) \
    {                                                                                                       \
        return step_scale(DOT(q5_u8(p), qx), f16_bcast(p), xds, acc, off);                                  \
    }                                                                                                       \
    FLOCK_DOTQ_ROWS(LINK FN, PFX##_q4_0, PFX##4_q4_0, PFX##_step_q4_0, 18, -8.0f)                           \
    FLOCK_DOTQ_ROWS(LINK FN, PFX##_q4_1, PFX##4_q4_1, PFX##_step_q4_1, 20, 1.0f)                            \
    FLOCK_DOTQ_ROWS(LINK FN, PFX##_q5_0, PFX##4_q5_0, PFX##_step_q5_0, 22, -16.0f)

/* The q4_k product against int8 x: a 256-element block's 32 bytes of
 * quants per pair of sub-blocks, low nibbles sub-block i, high nibbles
 * i + 1 (dequant_q4_k's order), each an integer dot with its x block
 * (DOT(u8, i8): the 8 int32 lane sums of 32 products) scaled by d sc dx;
 * the minimums' term dmin m s summed apart and subtracted once. */
#define FLOCK_DOTQ_Q4_K(ATTR, NAME, DOT)                                                                    \
    ATTR float NAME(const void *w, const flock_q8x *xq, size_t n)                                           \
    {                                                                                                       \
        const uint8_t *p = w;                                                                               \
        const __m256i m4 = _mm256_set1_epi8(0x0F);                                                          \
        __m256 acc = _mm256_setzero_ps();                                                                   \
        float off = 0;                                                                                      \
        for (size_t b = 0; b < n / 256; b++, p += 144, xq += 8) {                                           \
            uint8_t sc[8], m[8];                                                                            \
            flock_kquant_scales(p + 4, sc, m);                                                              \
            const float d = half(p), dmin = half(p + 2);                                                    \
            const uint8_t *qs = p + 16;                                                                     \
            float o = 0;                                                                                    \
            for (int i = 0; i < 8; i += 2, qs += 32) {                                                      \
                __m256i q = _mm256_loadu_si256((const __m256i *)qs);                                        \
                __m256i lo = DOT(_mm256_and_si256(q, m4), load_qx(&xq[i]));                                 \
                __m256i hi = DOT(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), load_qx(&xq[i + 1]));       \
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[i] * xq[i].d), _mm256_cvtepi32_ps(lo), acc); \
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[i + 1] * xq[i + 1].d), _mm256_cvtepi32_ps(hi), \
                                      acc);                                                                 \
                o = __builtin_fmaf((float)m[i], xq[i].s, o);                                                \
                o = __builtin_fmaf((float)m[i + 1], xq[i + 1].s, o);                                        \
            }                                                                                               \
            off = __builtin_fmaf(dmin, o, off);                                                             \
        }                                                                                                   \
        return hsum8(acc) - off;                                                                            \
    }

/* The q6_k quants of one 128-element half (ql: 64 bytes, qh: 32) as four
 * vectors of 32 unsigned bytes 0..63, q[k] the elements l + 32k
 * (dequant_q6_k's order): 4 bits from ql (low or high nibble of byte l or
 * l + 32), 2 from qh. */
AVX2_FN static inline void q6_k_half(const uint8_t *ql, const uint8_t *qhp, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
}

/* The q6_k product against int8 x: per 128-element half, the four x blocks
 * against q6_k_half's quants, SCALED(q, qx, s0, s1) giving the 8 int32
 * lanes of (q - 32) qx weighted by the sub-block scales (lanes 0-3 the
 * first 16 elements by s0, 4-7 the second by s1), each scaled by d dx. */
#define FLOCK_DOTQ_Q6_K(ATTR, NAME, SCALED)                                                                 \
    ATTR float NAME(const void *w, const flock_q8x *xq, size_t n)                                           \
    {                                                                                                       \
        const uint8_t *p = w;                                                                               \
        __m256 acc = _mm256_setzero_ps();                                                                   \
        for (size_t b = 0; b < n / 256; b++, p += 210) {                                                    \
            const float d = half(p + 208);                                                                  \
            const uint8_t *ql = p, *qhp = p + 128;                                                          \
            const int8_t *sc = (const int8_t *)(p + 192);                                                   \
            for (int h = 0; h < 2; h++, ql += 64, qhp += 32, sc += 8, xq += 4) {                            \
                __m256i q[4];                                                                               \
                q6_k_half(ql, qhp, q);                                                                      \
                for (int k = 0; k < 4; k++) {                                                               \
                    __m256i s = SCALED(q[k], load_qx(&xq[k]), sc[2 * k], sc[2 * k + 1]);                    \
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xq[k].d), _mm256_cvtepi32_ps(s), acc);         \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        return hsum8(acc);                                                                                  \
    }

#endif
