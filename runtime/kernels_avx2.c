/* AVX2 + FMA + F16C kernels. Each function carries a target attribute, so
 * the file builds with the default flags and the library still runs on a
 * CPU without AVX2: flock_kernels_avx2() only hands out this table after
 * __builtin_cpu_supports says the instructions exist. */
#include "kernels.h"
#include "kernels_quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "avx2_util.h"

#include <cpuid.h>
#include <math.h>
#include <stdbool.h>

/* 8 bf16 -> 8 f32: widen to 32 bits and shift into the high half. */
AVX2_FN static inline __m256 load_bf16(const uint16_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_FN static inline __m256 load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline float bf16_1(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* Dot products: 4 independent accumulators (32 elements per step) hide the
 * FMA latency; the weight stream is read exactly once. */
AVX2_FN static float dot_f32(const void *w, const float *x, size_t n)
{
    const float *a = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += a[i] * x[i];
    return s;
}

AVX2_FN static float dot_f16(const void *w, const float *x, size_t n)
{
    const uint16_t *a = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_f16(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(load_f16(a + i), _mm256_loadu_ps(x + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += f16_1(a[i]) * x[i];
    return s;
}

AVX2_FN static float dot_bf16(const void *w, const float *x, size_t n)
{
    const uint16_t *a = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_bf16(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_bf16(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_bf16(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(load_bf16(a + i), _mm256_loadu_ps(x + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += bf16_1(a[i]) * x[i];
    return s;
}

/* hsum of four vectors into out[0..3]. */
AVX2_FN static inline void hsum4(__m256 a, __m256 b, __m256 c, __m256 d, float *out)
{
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    __m256 abcd = _mm256_hadd_ps(ab, cd); /* per 128-bit lane: a, b, c, d partials */
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
    _mm_storeu_ps(out, r);
}

/* LOAD(p) gives 8 floats from element p of a row. The next four rows are
 * prefetched a line at a time: with f16 rows a single thread otherwise
 * reaches only ~70% of the f32 bandwidth from DRAM (measured: 7.4 -> 10.7
 * GB/s per CPU-second on a 256 MiB matrix). Prefetching past the end of a
 * matrix is harmless (prefetches do not fault). */
#define DOT4_BODY(T, LOAD, ONE)                                                               \
    const T *w0 = w, *w1 = w0 + stride, *w2 = w1 + stride, *w3 = w2 + stride;                \
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                              \
    size_t i = 0;                                                                            \
    for (; i + 8 <= n; i += 8) {                                                             \
        __m256 xv = _mm256_loadu_ps(x + i);                                                  \
        if ((i & (32 / sizeof(T) - 1)) == 0) { /* one line of each of the next 4 rows */     \
            _mm_prefetch((const char *)(w3 + stride + i), _MM_HINT_T0);                       \
            _mm_prefetch((const char *)(w3 + 2 * stride + i), _MM_HINT_T0);                   \
            _mm_prefetch((const char *)(w3 + 3 * stride + i), _MM_HINT_T0);                   \
            _mm_prefetch((const char *)(w3 + 4 * stride + i), _MM_HINT_T0);                   \
        }                                                                                    \
        s0 = _mm256_fmadd_ps(LOAD(w0 + i), xv, s0);                                          \
        s1 = _mm256_fmadd_ps(LOAD(w1 + i), xv, s1);                                          \
        s2 = _mm256_fmadd_ps(LOAD(w2 + i), xv, s2);                                          \
        s3 = _mm256_fmadd_ps(LOAD(w3 + i), xv, s3);                                          \
    }                                                                                        \
    hsum4(s0, s1, s2, s3, out);                                                              \
    for (; i < n; i++) {                                                                     \
        out[0] += ONE(w0[i]) * x[i];                                                         \
        out[1] += ONE(w1[i]) * x[i];                                                         \
        out[2] += ONE(w2[i]) * x[i];                                                         \
        out[3] += ONE(w3[i]) * x[i];                                                         \
    }

#define ID(v) (v)
AVX2_FN static void dot4_f32(const void *w, size_t stride, const float *x, size_t n, float *out)
{
    DOT4_BODY(float, _mm256_loadu_ps, ID)
}

AVX2_FN static void dot4_f16(const void *w, size_t stride, const float *x, size_t n, float *out)
{
    DOT4_BODY(uint16_t, load_f16, f16_1)
}

AVX2_FN static void dot4_bf16(const void *w, size_t stride, const float *x, size_t n, float *out)
{
    DOT4_BODY(uint16_t, load_bf16, bf16_1)
}

/* gemm6x16: the AVX2 form of the AVX-512 table's gemm12x32 (kernels.h):
 * y[t * ldy + r] = sum_k w[r * ws + k] * xt[k * tp + t] for rows r < nr <=
 * 6 and tokens t < nt <= 16 over the transposed activations, 12 ymm
 * accumulators, per k one broadcast per row and two x loads for 12 FMAs;
 * the first pf_lines steps prefetch a line of pf each. */
AVX2_FN static void gemm6x16(const float *w, size_t ws, int nr, const float *xt, size_t tp, size_t n, float *y,
                             size_t ldy, int nt, const void *pf, size_t pf_lines)
{
    const char *pfc = pf;
    const float *r[6]; /* rows past nr repeat the last (computed, not stored) */
    for (int j = 0; j < 6; j++)
        r[j] = w + (size_t)(j < nr ? j : nr - 1) * ws;
    const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *r4 = r[4], *r5 = r[5];
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (size_t k = 0; k < n; k++) {
        __m256 x0 = _mm256_loadu_ps(xt + k * tp), x1 = _mm256_loadu_ps(xt + k * tp + 8);
        if (k < pf_lines)
            _mm_prefetch(pfc + 64 * k, _MM_HINT_T1);
        __m256 b = _mm256_broadcast_ss(r0 + k);
        a00 = _mm256_fmadd_ps(b, x0, a00), a01 = _mm256_fmadd_ps(b, x1, a01);
        b = _mm256_broadcast_ss(r1 + k);
        a10 = _mm256_fmadd_ps(b, x0, a10), a11 = _mm256_fmadd_ps(b, x1, a11);
        b = _mm256_broadcast_ss(r2 + k);
        a20 = _mm256_fmadd_ps(b, x0, a20), a21 = _mm256_fmadd_ps(b, x1, a21);
        b = _mm256_broadcast_ss(r3 + k);
        a30 = _mm256_fmadd_ps(b, x0, a30), a31 = _mm256_fmadd_ps(b, x1, a31);
        b = _mm256_broadcast_ss(r4 + k);
        a40 = _mm256_fmadd_ps(b, x0, a40), a41 = _mm256_fmadd_ps(b, x1, a41);
        b = _mm256_broadcast_ss(r5 + k);
        a50 = _mm256_fmadd_ps(b, x0, a50), a51 = _mm256_fmadd_ps(b, x1, a51);
    }
    float o[6][16];
    _mm256_storeu_ps(o[0], a00), _mm256_storeu_ps(o[0] + 8, a01);
    _mm256_storeu_ps(o[1], a10), _mm256_storeu_ps(o[1] + 8, a11);
    _mm256_storeu_ps(o[2], a20), _mm256_storeu_ps(o[2] + 8, a21);
    _mm256_storeu_ps(o[3], a30), _mm256_storeu_ps(o[3] + 8, a31);
    _mm256_storeu_ps(o[4], a40), _mm256_storeu_ps(o[4] + 8, a41);
    _mm256_storeu_ps(o[5], a50), _mm256_storeu_ps(o[5] + 8, a51);
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < nr; j++)
            y[(size_t)t * ldy + (size_t)j] = o[j][t];
}

AVX2_FN static void gemm4x3(const float *w, size_t ws, const float *x, size_t xs, size_t n, float *y, size_t ldy)
{
    const float *w0 = w, *w1 = w + ws, *w2 = w + 2 * ws, *w3 = w + 3 * ws;
    const float *x0 = x, *x1 = x + xs, *x2 = x + 2 * xs;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
        __m256 v2 = _mm256_loadu_ps(w2 + k), v3 = _mm256_loadu_ps(w3 + k);
        __m256 xv = _mm256_loadu_ps(x0 + k);
        a00 = _mm256_fmadd_ps(v0, xv, a00);
        a01 = _mm256_fmadd_ps(v1, xv, a01);
        a02 = _mm256_fmadd_ps(v2, xv, a02);
        a03 = _mm256_fmadd_ps(v3, xv, a03);
        xv = _mm256_loadu_ps(x1 + k);
        a10 = _mm256_fmadd_ps(v0, xv, a10);
        a11 = _mm256_fmadd_ps(v1, xv, a11);
        a12 = _mm256_fmadd_ps(v2, xv, a12);
        a13 = _mm256_fmadd_ps(v3, xv, a13);
        xv = _mm256_loadu_ps(x2 + k);
        a20 = _mm256_fmadd_ps(v0, xv, a20);
        a21 = _mm256_fmadd_ps(v1, xv, a21);
        a22 = _mm256_fmadd_ps(v2, xv, a22);
        a23 = _mm256_fmadd_ps(v3, xv, a23);
    }
    hsum4(a00, a01, a02, a03, y);
    hsum4(a10, a11, a12, a13, y + ldy);
    hsum4(a20, a21, a22, a23, y + 2 * ldy);
    for (; k < n; k++)
        for (size_t t = 0; t < 3; t++)
            for (size_t r = 0; r < 4; r++)
                y[t * ldy + r] += w[r * ws + k] * x[t * xs + k];
}

AVX2_FN static void down4x16(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out,
                             size_t ldo)
{
    __m256 o00 = _mm256_loadu_ps(out), o01 = _mm256_loadu_ps(out + 8);
    __m256 o10 = _mm256_loadu_ps(out + ldo), o11 = _mm256_loadu_ps(out + ldo + 8);
    __m256 o20 = _mm256_loadu_ps(out + 2 * ldo), o21 = _mm256_loadu_ps(out + 2 * ldo + 8);
    __m256 o30 = _mm256_loadu_ps(out + 3 * ldo), o31 = _mm256_loadu_ps(out + 3 * ldo + 8);
    for (size_t i = 0; i < K; i++) {
        __m256 d0 = _mm256_loadu_ps(D + i * ldd), d1 = _mm256_loadu_ps(D + i * ldd + 8);
        __m256 a = _mm256_broadcast_ss(z + i);
        o00 = _mm256_fmadd_ps(a, d0, o00);
        o01 = _mm256_fmadd_ps(a, d1, o01);
        a = _mm256_broadcast_ss(z + ldz + i);
        o10 = _mm256_fmadd_ps(a, d0, o10);
        o11 = _mm256_fmadd_ps(a, d1, o11);
        a = _mm256_broadcast_ss(z + 2 * ldz + i);
        o20 = _mm256_fmadd_ps(a, d0, o20);
        o21 = _mm256_fmadd_ps(a, d1, o21);
        a = _mm256_broadcast_ss(z + 3 * ldz + i);
        o30 = _mm256_fmadd_ps(a, d0, o30);
        o31 = _mm256_fmadd_ps(a, d1, o31);
    }
    _mm256_storeu_ps(out, o00);
    _mm256_storeu_ps(out + 8, o01);
    _mm256_storeu_ps(out + ldo, o10);
    _mm256_storeu_ps(out + ldo + 8, o11);
    _mm256_storeu_ps(out + 2 * ldo, o20);
    _mm256_storeu_ps(out + 2 * ldo + 8, o21);
    _mm256_storeu_ps(out + 3 * ldo, o30);
    _mm256_storeu_ps(out + 3 * ldo + 8, o31);
}

AVX2_FN static void axpy_f32(float a, const void *w, float *y, size_t n)
{
    const float *x = w;
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

AVX2_FN static void axpy_f16(float a, const void *w, float *y, size_t n)
{
    const uint16_t *x = w;
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * f16_1(x[i]);
}

AVX2_FN static void axpy_bf16(float a, const void *w, float *y, size_t n)
{
    const uint16_t *x = w;
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_bf16(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * bf16_1(x[i]);
}

AVX2_FN static void cvt_f32(const void *w, float *dst, size_t n)
{
    const float *x = w;
    for (size_t i = 0; i < n; i++)
        dst[i] = x[i];
}

AVX2_FN static void cvt_f16(const void *w, float *dst, size_t n)
{
    const uint16_t *x = w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, load_f16(x + i));
    for (; i < n; i++)
        dst[i] = f16_1(x[i]);
}

AVX2_FN static void cvt_bf16(const void *w, float *dst, size_t n)
{
    const uint16_t *x = w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, load_bf16(x + i));
    for (; i < n; i++)
        dst[i] = bf16_1(x[i]);
}

AVX2_FN static void f32_to_f16(const float *x, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = flock_f32_to_f16(x[i]);
}

AVX2_FN static void axpy_plain(float a, const float *x, float *y, size_t n)
{
    axpy_f32(a, x, y, n);
}

/* ---- attention ---------------------------------------------------------- */

#define QK_AHEAD 16 /* keys */
#define PV_AHEAD 16
/* The K/V prefetches: measured at a 512-token context (SmolLM2, one
 * thread, the cache's rows then interleaving the KV heads), keep 0.5 110
 * -> 117 tok/s, keep 1.0 within the noise. */

#define ATT_T float
#define ATT_SFX _f32
#define ATT_LD(p) _mm256_loadu_ps(p)
#define ATT_EL(x) (x)
#include "att_avx2.h"
#undef ATT_T
#undef ATT_SFX
#undef ATT_LD
#undef ATT_EL

#define ATT_T uint16_t
#define ATT_SFX _f16
#define ATT_LD(p) load_f16(p)
#define ATT_EL(x) f16_1(x)
#include "att_avx2.h"
#undef ATT_T
#undef ATT_SFX
#undef ATT_LD
#undef ATT_EL

/* exp(x) for 8 lanes: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts,
 * so r is exact to a few ulp), e^r by its degree-7 Taylor polynomial
 * (truncation < 6e-9 relative), times 2^n built in the exponent field.
 * Measured against expf over [-87, 0]: relative error < 4e-7. Lanes below
 * -87 give 0 (expf would give a value below 2e-38). */
AVX2_FN static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.f));
    __m256 fn = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fn), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* The tail goes through a padded vector (the padding is -inf: exp 0), so
 * every element gets the same approximation. */
AVX2_FN static float att_exp(float *s, size_t n, float m)
{
    __m256 vm = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, v);
        sum = _mm256_add_ps(sum, v);
    }
    if (j < n) {
        float buf[8];
        for (size_t c = 0; c < 8; c++)
            buf[c] = j + c < n ? s[j + c] : -INFINITY;
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(buf), vm));
        _mm256_storeu_ps(buf, v);
        sum = _mm256_add_ps(sum, v);
        for (size_t c = 0; j + c < n; c++)
            s[j + c] = buf[c];
    }
    return hsum8(sum);
}

/* z = x sigmoid(c x (1 + b x^2)) y over 8 interleaved (x, y) pairs at h:
 * SiLU is c = 1, b = 0; the tanh GELU c = 2 sqrt(2/pi), b = 0.044715
 * (0.5 x (1 + tanh u) = x sigmoid(2u)). Large |c x| saturate cleanly:
 * exp8 gives 0 below -87 and is clamped at 88. */
AVX2_FN static inline __m256 glu8(const float *h, float c, float b)
{
    __m256 a = _mm256_loadu_ps(h), d = _mm256_loadu_ps(h + 8);
    /* de-interleave: x = even lanes, y = odd lanes, in order */
    __m256 x = _mm256_shuffle_ps(a, d, 0x88), y = _mm256_shuffle_ps(a, d, 0xDD);
    x = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(x), 0xD8));
    y = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(y), 0xD8));
    __m256 t = _mm256_mul_ps(_mm256_set1_ps(c), x);
    if (b != 0)
        t = _mm256_mul_ps(t, _mm256_fmadd_ps(_mm256_mul_ps(x, x), _mm256_set1_ps(b), _mm256_set1_ps(1.f)));
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), t));
    return _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.f), e)), y);
}

AVX2_FN static void silu_mul(const float *h, float *z, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, glu8(h + 2 * i, 1.f, 0.f));
    for (; i < n; i++)
        z[i] = flock_silu(h[2 * i]) * h[2 * i + 1];
}

AVX2_FN static void gelu_tanh_mul(const float *h, float *z, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, glu8(h + 2 * i, 2.f * 0.79788456080286536f, 0.044715f));
    for (; i < n; i++)
        z[i] = flock_gelu_tanh(h[2 * i]) * h[2 * i + 1];
}

/* Table rows by dtype: the three float types, then the quantized ones. */
#define DT3(f) [FLOCK_DTYPE_F32] = f##_f32, [FLOCK_DTYPE_F16] = f##_f16, [FLOCK_DTYPE_BF16] = f##_bf16
#define QK(pre, f)                                                                                          \
    [FLOCK_DTYPE_Q8_0] = pre##_##f##_q8_0, [FLOCK_DTYPE_Q4_0] = pre##_##f##_q4_0,                           \
    [FLOCK_DTYPE_Q4_1] = pre##_##f##_q4_1, [FLOCK_DTYPE_Q4_K] = pre##_##f##_q4_k, [FLOCK_DTYPE_Q6_K] = pre##_##f##_q6_k, \
    [FLOCK_DTYPE_Q5_0] = pre##_##f##_q5_0

static const flock_kernel_table avx2_table = {
    .name = "avx2",
    .prefetch_float = true,
    .dot = {DT3(dot), QK(flock_qa, dot)},
    .dot4 = {DT3(dot4), QK(flock_qa, dot4)},
    .gemm4x3 = gemm4x3,
    .gemm6x16 = gemm6x16,
    .down4x16 = down4x16,
    .quant_x = flock_qa_quant_x,
    .dotq = {[FLOCK_DTYPE_Q8_0] = flock_qa_dotq_q8_0, [FLOCK_DTYPE_Q4_0] = flock_qa_dotq_q4_0,
             [FLOCK_DTYPE_Q4_1] = flock_qa_dotq_q4_1, [FLOCK_DTYPE_Q5_0] = flock_qa_dotq_q5_0,
             [FLOCK_DTYPE_Q4_K] = flock_qa_dotq_q4_k, [FLOCK_DTYPE_Q6_K] = flock_qa_dotq_q6_k},
    .axpy4 = {[FLOCK_DTYPE_Q8_0] = flock_qa_axpy4_q8_0, [FLOCK_DTYPE_Q4_0] = flock_qa_axpy4_q4_0,
              [FLOCK_DTYPE_Q4_1] = flock_qa_axpy4_q4_1, [FLOCK_DTYPE_Q5_0] = flock_qa_axpy4_q5_0},
    .dotq4 = {[FLOCK_DTYPE_Q4_0] = flock_qa_dotq4_q4_0, [FLOCK_DTYPE_Q4_1] = flock_qa_dotq4_q4_1,
              [FLOCK_DTYPE_Q5_0] = flock_qa_dotq4_q5_0},
    .axpy = {DT3(axpy), QK(flock_qa, axpy)},
    .to_f32 = {DT3(cvt), QK(flock_qa, to_f32)},
    .f32_to_f16 = f32_to_f16,
    .axpy_f32 = axpy_plain,
    .att_qk = att_qk_f32,
    .att_qk_h = att_qk_f16,
    .att_exp = att_exp,
    .silu_mul = silu_mul,
    .gelu_tanh_mul = gelu_tanh_mul,
    .att_pv = att_pv_f32,
    .att_pv_h = att_pv_f16,
};

const flock_kernel_table *flock_kernels_avx2(void)
{
    __builtin_cpu_init();
    /* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports
     * does not know "f16c". AVX2's check covers the OS saving YMM state. */
    unsigned eax, ebx, ecx, edx;
    bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        return &avx2_table;
    return NULL;
}

#else

const flock_kernel_table *flock_kernels_avx2(void)
{
    return NULL;
}

#endif
