/* Private to kernels_avx2.c, included once per K/V element type: the
 * attention micro-kernels over K/V rows of ATT_T (float, or uint16_t IEEE
 * half widened in the load), named with ATT_SFX. The includer defines
 *   ATT_T          the element type
 *   ATT_SFX        the name suffix (_f32, _f16)
 *   ATT_LD(p)      8 elements at p as an __m256
 *   ATT_EL(x)      one element as a float
 * Both types run the same steps in the same order, so an f16 cache gives
 * bitwise the result of an f32 cache holding the same (widened) values. */

#define ATT_CAT_(a, b) a##b
#define ATT_CAT(a, b) ATT_CAT_(a, b)
#define ATT_NAME(f) ATT_CAT(f, ATT_SFX)
#define ATT_LINE (64 / sizeof(ATT_T)) /* elements per cache line */

/* Scores of one query against 4 keys: 4 accumulators over head_dim, one
 * horizontal reduction for all four (hsum4). */
AVX2_FN static void ATT_NAME(qk_1x4)(const float *q, const ATT_T *k, size_t ldk, size_t hd, float scale, float *s)
{
    size_t h8 = hd & ~(size_t)7;
    const ATT_T *k0 = k, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < h8; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        a0 = _mm256_fmadd_ps(ATT_LD(k0 + i), qv, a0);
        a1 = _mm256_fmadd_ps(ATT_LD(k1 + i), qv, a1);
        a2 = _mm256_fmadd_ps(ATT_LD(k2 + i), qv, a2);
        a3 = _mm256_fmadd_ps(ATT_LD(k3 + i), qv, a3);
    }
    float out[4];
    hsum4(a0, a1, a2, a3, out);
    for (size_t i = h8; i < hd; i++) {
        out[0] += q[i] * ATT_EL(k0[i]);
        out[1] += q[i] * ATT_EL(k1[i]);
        out[2] += q[i] * ATT_EL(k2[i]);
        out[3] += q[i] * ATT_EL(k3[i]);
    }
    for (int c = 0; c < 4; c++)
        s[c] = out[c] * scale;
}

/* Two queries against 4 keys: 8 accumulators, 6 loads per 8 FMAs (one
 * query alone needs 5 per 4). Each score is summed exactly as in qk_1x4,
 * so a row's scores do not depend on whether it was paired. */
AVX2_FN static void ATT_NAME(qk_2x4)(const float *q, size_t ldq, const ATT_T *k, size_t ldk, size_t hd, float scale,
                                     float *s, size_t lds)
{
    size_t h8 = hd & ~(size_t)7;
    const float *q1 = q + ldq;
    const ATT_T *k0 = k, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (size_t i = 0; i < h8; i += 8) {
        __m256 qa = _mm256_loadu_ps(q + i), qb = _mm256_loadu_ps(q1 + i), kv;
        kv = ATT_LD(k0 + i);
        a0 = _mm256_fmadd_ps(kv, qa, a0);
        b0 = _mm256_fmadd_ps(kv, qb, b0);
        kv = ATT_LD(k1 + i);
        a1 = _mm256_fmadd_ps(kv, qa, a1);
        b1 = _mm256_fmadd_ps(kv, qb, b1);
        kv = ATT_LD(k2 + i);
        a2 = _mm256_fmadd_ps(kv, qa, a2);
        b2 = _mm256_fmadd_ps(kv, qb, b2);
        kv = ATT_LD(k3 + i);
        a3 = _mm256_fmadd_ps(kv, qa, a3);
        b3 = _mm256_fmadd_ps(kv, qb, b3);
    }
    float oa[4], ob[4];
    hsum4(a0, a1, a2, a3, oa);
    hsum4(b0, b1, b2, b3, ob);
    for (size_t i = h8; i < hd; i++)
        for (int c = 0; c < 4; c++) {
            float kc = ATT_EL(k[c * ldk + i]);
            oa[c] += q[i] * kc;
            ob[c] += q1[i] * kc;
        }
    for (int c = 0; c < 4; c++) {
        s[c] = oa[c] * scale;
        s[lds + c] = ob[c] * scale;
    }
}

AVX2_FN static void ATT_NAME(att_qk)(const float *q, size_t ldq, size_t nq, const ATT_T *k, size_t ldk, size_t n,
                                     size_t hd, float scale, float *s, size_t lds)
{
    size_t h8 = hd & ~(size_t)7, j = 0;
    for (; j + 4 <= n; j += 4) {
        /* K rows come from L3 or memory at long contexts: fetch those
         * QK_AHEAD keys on (prefetches never fault, so reading past the
         * cache's end is harmless) */
        for (size_t c = 0; c < 4; c++)
            for (size_t o = 0; o < hd; o += ATT_LINE)
                __builtin_prefetch(k + (j + QK_AHEAD + c) * ldk + o);
        size_t r = 0;
        for (; r + 2 <= nq; r += 2)
            ATT_NAME(qk_2x4)(q + r * ldq, ldq, k + j * ldk, ldk, hd, scale, s + r * lds + j, lds);
        if (r < nq)
            ATT_NAME(qk_1x4)(q + r * ldq, k + j * ldk, ldk, hd, scale, s + r * lds + j);
    }
    for (; j < n; j++) {
        const ATT_T *kj = k + j * ldk;
        for (size_t r = 0; r < nq; r++) {
            const float *qr = q + r * ldq;
            __m256 a0 = _mm256_setzero_ps();
            for (size_t i = 0; i < h8; i += 8)
                a0 = _mm256_fmadd_ps(ATT_LD(kj + i), _mm256_loadu_ps(qr + i), a0);
            float acc = hsum8(a0);
            for (size_t i = h8; i < hd; i++)
                acc += qr[i] * ATT_EL(kj[i]);
            s[r * lds + j] = acc * scale;
        }
    }
}

/* o += p v over 8 nv columns at i (nv 1 or 8, constant once inlined, so
 * the accumulators stay in registers): each output lane is one FMA chain
 * over j in order, whatever the column split. fetch > 0: prefetch that
 * many elements of each V row PV_AHEAD keys on. (Tried: a pass of 16
 * columns for up to 4 rows of a GQA group at once, so each V load and
 * widening serves the whole group: f32 V 2.1 -> 2.8 ms per token of
 * attention at 576 positions, SmolLM2, the later column passes missing
 * L1; f16 within the noise.) */
__attribute__((always_inline)) AVX2_FN static inline void ATT_NAME(pv_cols)(const float *p, const ATT_T *v,
                                                                            size_t ldv, size_t n, size_t i,
                                                                            size_t nv, float *o, size_t fetch)
{
    __m256 acc[8];
    for (size_t c = 0; c < nv; c++)
        acc[c] = _mm256_loadu_ps(o + i + 8 * c);
    for (size_t j = 0; j < n; j++) {
        const ATT_T *vj = v + j * ldv + i;
        for (size_t f = 0; f < fetch; f += ATT_LINE) /* rows from L3 or memory */
            __builtin_prefetch(vj + PV_AHEAD * ldv + f);
        __m256 pj = _mm256_set1_ps(p[j]);
        for (size_t c = 0; c < nv; c++)
            acc[c] = _mm256_fmadd_ps(pj, ATT_LD(vj + 8 * c), acc[c]);
    }
    for (size_t c = 0; c < nv; c++)
        _mm256_storeu_ps(o + i + 8 * c, acc[c]);
}

/* o[r * ldo + i] += sum_j p[r * ldp + j] v[j * ldv + i] for rows r < np:
 * one row at a time, 64 columns held in 8 registers while the keys stream
 * by, then 8 at a time, then the odd end. */
AVX2_FN static void ATT_NAME(att_pv)(const float *p, size_t ldp, size_t np, const ATT_T *v, size_t ldv, size_t n,
                                     size_t hd, float *o, size_t ldo)
{
    for (size_t r = 0; r < np; r++) {
        const float *pr = p + r * ldp;
        float *or = o + r * ldo;
        size_t i = 0;
        for (; i + 64 <= hd; i += 64)
            ATT_NAME(pv_cols)(pr, v, ldv, n, i, 8, or, 64);
        for (; i + 8 <= hd; i += 8)
            ATT_NAME(pv_cols)(pr, v, ldv, n, i, 1, or, 0);
        for (; i < hd; i++) {
            float acc = or[i];
            for (size_t j = 0; j < n; j++)
                acc += pr[j] * ATT_EL(v[j * ldv + i]);
            or[i] = acc;
        }
    }
}

#undef ATT_CAT_
#undef ATT_CAT
#undef ATT_NAME
#undef ATT_LINE
