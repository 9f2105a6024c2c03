/* AVX-512 VNNI kernels: the AVX2 table with the integer dot products
 * (q8_0, q4_0, q4_1, q5_0, and the k-quants q4_k and q6_k) done by vpdpbusd, which sums the
 * 32 u8 x i8 products of a block into 8 int32 lanes in one instruction
 * where AVX2 needs maddubs + madd (and a constant). The rest of the table
 * (float kernels, axpy, prefill micro-kernels, attention) is the AVX2
 * table's. Built with target attributes, as kernels_avx2.c, and only
 * handed out by flock_kernels_avx512() on a CPU (and OS) with AVX-512F,
 * BW, VL and VNNI. The one-row and four-row products run the same steps,
 * so each row's result is bitwise the same whichever computes it; results
 * equal the AVX2 table's within f32 rounding (the integer sums are exact in
 * both; the float steps are the same). */
#include "kernels.h"
#include "kernels_quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "avx2_util.h"
#include "dotq_loops.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define VNNI_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* One q8_0 block of the product: the row's sums advanced by block p
 * against xb. */
VNNI_FN static inline __m256 step_q8_0(const uint8_t *p, const flock_q8x *xb, __m256i qx, __m256 acc)
{
    __m256i qw = _mm256_loadu_si256((const __m256i *)(p + 2));
    /* |qw| (unsigned) times qx with qw's sign, as vpdpbusd takes them */
    __m256i i = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
    return _mm256_fmadd_ps(_mm256_set1_ps(half(p) * xb->d), _mm256_cvtepi32_ps(i), acc);
}

/* The q8_0 row loop of dotq_loops.h over this table's vpdpbusd step:
 * bitwise the AVX2 table's. */
FLOCK_DOTQ_Q8_0(VNNI_FN static, dotq_q8_0, step_q8_0)

/* The sum of the 32 u8 x i8 products of a block as 8 int32 lanes. */
VNNI_FN static inline __m256i dot_vnni(__m256i a, __m256i b)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
}

/* The 4-bit and 5-bit types, one row and four rows (dotq_loops.h). Not
 * q8_0's four-row product, as in the AVX2 table: one row at a time
 * (prefetched) was as fast or faster in the decode (SmolLM2's q8_0 LM head). */
FLOCK_DOTQ_4BIT(static, VNNI_FN, dotq, dot_vnni)

/* q4_k against int8 x (dotq_loops.h), each sub-block's 32 u8 x i8
 * products summed by vpdpbusd: the AVX2 table's int32 lanes and float
 * steps, so its result bit for bit. */
FLOCK_DOTQ_Q4_K(static VNNI_FN, dotq_q4_k, dot_vnni)

/* q6_k against int8 x, as the AVX2 table's: int32 lane j of vpdpbusd sums
 * the products of bytes 4j..4j+3, the lane the AVX2 madd_epi16 forms from
 * its two int16 pair sums, so (q - 32) qx times the sub-block's scale
 * (lanes 0-3 the first 16 elements, 4-7 the second) is the same integer and
 * the result bitwise the AVX2 table's. */
VNNI_FN static inline __m256i q6_scaled(__m256i q, __m256i qx, int8_t s0, int8_t s1)
{
    const __m256i s32 = _mm256_sub_epi32(dot_vnni(q, qx), dot_vnni(_mm256_set1_epi8(32), qx));
    return _mm256_mullo_epi32(s32, _mm256_set_m128i(_mm_set1_epi32(s1), _mm_set1_epi32(s0)));
}

FLOCK_DOTQ_Q6_K(static VNNI_FN, dotq_q6_k, q6_scaled)

/* x into int8 blocks (kernels.h, quant_x), bitwise the scalar
 * flock_q_quant_x: the same amax, d = amax / 127, id = 1 / d and products
 * x id; roundf (half away from zero) as trunc plus one step away from zero
 * where the remainder is at least a half (exact: |x id| <= 127). */
VNNI_FN static void quant_x512(const float *x, flock_q8x *xq, size_t n)
{
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), one = _mm512_castps_si512(_mm512_set1_ps(1.0f));
    for (size_t b = 0; b < n / 32; b++, x += 32) {
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x1), _mm512_abs_ps(x0)));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        __m512i q[2];
        for (int h = 0; h < 2; h++) {
            __m512 t = _mm512_mul_ps(h ? x1 : x0, _mm512_set1_ps(id));
            __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(t, r)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
            /* one step away from zero: copysign(1, t) */
            __m512 step = _mm512_castsi512_ps(_mm512_or_si512(one, _mm512_and_si512(_mm512_castps_si512(t), sign)));
            q[h] = _mm512_cvtps_epi32(_mm512_mask_add_ps(r, up, r, step));
        }
        _mm_storeu_si128((__m128i *)xq[b].q, _mm512_cvtepi32_epi8(q[0]));
        _mm_storeu_si128((__m128i *)(xq[b].q + 16), _mm512_cvtepi32_epi8(q[1]));
        xq[b].d = d;
        xq[b].s = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
    }
}

/* ---- prefill with int8 activations (kernels.h, qpack and gemmq) ---------
 * A weight tile of 16 rows is unpacked once per prompt step into the u8
 * integers of its blocks, laid out so that one 64-byte load holds four
 * consecutive elements of each of the 16 rows; vpdpbusd multiplies it by
 * four int8 elements of one token broadcast to every lane, so the 16 lanes
 * accumulate 16 rows' dot products for that token. Per 32-element block and
 * token: 8 vpdpbusd (512 multiply-adds) and four float steps. */

/* The 16 rows' 32 u8 integers of one block (row r in u[r]) into
 * pack[c][r][0..3] = elements 4c..4c+3 of row r: a 16 x 8 transpose of
 * dwords, the rows r and r + 8 in the two halves of one zmm. */
VNNI_FN static inline void qpack_store(const __m256i u[16], uint8_t *pack)
{
    __m512i z[8], t[8], s[8];
    for (int i = 0; i < 8; i++)
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(u[i]), u[i + 8], 1);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        s[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        s[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        s[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* s[j] (j < 4) holds dwords j (128-bit lanes 0 and 2) and j + 4 (lanes
     * 1 and 3) of rows 0-3 (from s[j]) and 4-7 (from s[j + 4]) per half */
    const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    for (int j = 0; j < 4; j++) {
        _mm512_storeu_si512(pack + 64 * j, _mm512_permutex2var_epi64(s[j], lo, s[j + 4]));
        _mm512_storeu_si512(pack + 64 * (j + 4), _mm512_permutex2var_epi64(s[j], hi, s[j + 4]));
    }
}

/* One 32-element block of a row of each type: its u8 integers q, and dw, c
 * with w = dw q + c (the offset folded into c). */
VNNI_FN static inline __m256i qu_q8_0(const uint8_t *row, size_t b, float *dw, float *c)
{
    const uint8_t *p = row + b * 34;
    *dw = half(p), *c = -128.f * *dw;
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80));
}

VNNI_FN static inline __m256i qu_q4_0(const uint8_t *row, size_t b, float *dw, float *c)
{
    const uint8_t *p = row + b * 18;
    *dw = half(p), *c = -8.f * *dw;
    return nibbles(p + 2);
}

VNNI_FN static inline __m256i qu_q4_1(const uint8_t *row, size_t b, float *dw, float *c)
{
    const uint8_t *p = row + b * 20;
    *dw = half(p), *c = half(p + 2);
    return nibbles(p + 4);
}

VNNI_FN static inline __m256i qu_q5_0(const uint8_t *row, size_t b, float *dw, float *c)
{
    const uint8_t *p = row + b * 22;
    *dw = half(p), *c = -16.f * *dw;
    return q5_u8(p);
}

/* q4_k: block b is sub-block b % 8 of super-block b / 8 (x = d sc q - dmin m;
 * sub-blocks 2i and 2i + 1 are the low and high nibbles of qs[32 i..]). */
VNNI_FN static inline __m256i qu_q4_k(const uint8_t *row, size_t b, float *dw, float *c)
{
    const uint8_t *p = row + (b / 8) * 144;
    uint8_t sc[8], m[8];
    flock_kquant_scales(p + 4, sc, m);
    int j = (int)(b % 8);
    *dw = half(p) * sc[j], *c = -(half(p + 2) * m[j]);
    __m256i q = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * (j / 2)));
    if (j & 1)
        q = _mm256_srli_epi16(q, 4);
    return _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
}

#define QPACK_FN(T)                                                                                                    \
    VNNI_FN static void qpack_##T(const void *w, size_t row_bytes, int nr, size_t n, void *pack)                      \
    {                                                                                                                  \
        uint8_t *pk = pack;                                                                                            \
        for (size_t b = 0; b < n / 32; b++, pk += FLOCK_QPACK_BLOCK) {                                                 \
            __m256i u[16];                                                                                             \
            float *dw = (float *)(pk + 512), *c = dw + 16;                                                             \
            for (int r = 0; r < 16; r++)                                                                               \
                if (r < nr) {                                                                                          \
                    u[r] = qu_##T((const uint8_t *)w + (size_t)r * row_bytes, b, &dw[r], &c[r]);                       \
                } else {                                                                                               \
                    u[r] = _mm256_setzero_si256();                                                                     \
                    dw[r] = c[r] = 0.f;                                                                                \
                }                                                                                                      \
            qpack_store(u, pk);                                                                                        \
        }                                                                                                              \
    }

QPACK_FN(q8_0)
QPACK_FN(q4_0)
QPACK_FN(q4_1)
QPACK_FN(q5_0)
QPACK_FN(q4_k)

/* y[t * ldy + r] for rows r < nr of the tile and tokens t < nt <= 8: the
 * integer sums of each block (8 vpdpbusd per token), then
 * acc += (isum dx) dw + c s. Tokens past nt repeat the last one (not stored).
 * The first pf_lines 64-byte lines at pf (the next tile's rows) are
 * prefetched, spread over the blocks. */
VNNI_FN static void gemmq16x8(const void *pack, size_t nb, const flock_q8x *xq, size_t ldx, int nt, float *y,
                              size_t ldy, int nr, const void *pf, size_t pf_lines)
{
    const char *pfc = pf;
    const size_t per = (pf_lines + nb - 1) / (nb ? nb : 1); /* lines prefetched per block */
    const flock_q8x *x[8];
    for (int t = 0; t < 8; t++)
        x[t] = xq + (size_t)(t < nt ? t : nt - 1) * ldx;
    __m512 acc[8];
    for (int t = 0; t < 8; t++)
        acc[t] = _mm512_setzero_ps();
    const uint8_t *pk = pack;
    for (size_t b = 0; b < nb; b++, pk += FLOCK_QPACK_BLOCK) {
        for (size_t l = 0; l < per && pf_lines; l++, pf_lines--, pfc += 64)
            __builtin_prefetch(pfc);
        __m512i is[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++)
            is[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            const __m512i wv = _mm512_loadu_si512(pk + 64 * c);
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) {
                int32_t q4;
                memcpy(&q4, x[t][b].q + 4 * c, 4);
                is[t] = _mm512_dpbusd_epi32(is[t], wv, _mm512_set1_epi32(q4));
            }
        }
        const __m512 dw = _mm512_loadu_ps(pk + 512), cc = _mm512_loadu_ps(pk + 576);
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(is[t]), _mm512_set1_ps(x[t][b].d));
            acc[t] = _mm512_fmadd_ps(cc, _mm512_set1_ps(x[t][b].s), _mm512_fmadd_ps(v, dw, acc[t]));
        }
    }
    const __mmask16 m = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

/* ---- q8_0 axpy (the decode's down_t rows) in 512-bit registers ----------
 * y += a d q: each block's 32 int8 quants widened to two vectors of 16
 * floats and one FMA per element, the AVX2 table's operations per element
 * (s = a * d, then fma(s, q, y)), so bitwise its result in half the
 * instructions. axpy4 applies four rows to each 32-element stretch of y in
 * registers, in order: bitwise four axpy calls. */
#define Q512_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

Q512_FN static inline __m512 q8_16(const uint8_t *q)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

Q512_FN static void axpy_q8_0(float a, const void *w, float *y, size_t n)
{
    const uint8_t *p = w;
    for (size_t b = 0; b < n / 32; b++, p += 34, y += 32) {
        __m512 s = _mm512_set1_ps(a * half(p));
        _mm512_storeu_ps(y, _mm512_fmadd_ps(s, q8_16(p + 2), _mm512_loadu_ps(y)));
        _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(s, q8_16(p + 18), _mm512_loadu_ps(y + 16)));
    }
}

Q512_FN static void axpy4_q8_0(const float *a, const void *const *w, float *y, size_t n)
{
    const uint8_t *p[4] = {w[0], w[1], w[2], w[3]};
    for (size_t b = 0; b < n / 32; b++, y += 32) {
        __m512 y0 = _mm512_loadu_ps(y), y1 = _mm512_loadu_ps(y + 16);
        for (int r = 0; r < 4; r++) {
            const uint8_t *blk = p[r] + b * 34;
            __m512 s = _mm512_set1_ps(a[r] * half(blk));
            y0 = _mm512_fmadd_ps(s, q8_16(blk + 2), y0);
            y1 = _mm512_fmadd_ps(s, q8_16(blk + 18), y1);
        }
        _mm512_storeu_ps(y, y0);
        _mm512_storeu_ps(y + 16, y1);
    }
}

/* ---- prefill micro-kernels (512-bit FMA) ---------------------------------
 * The AVX2 table's 4 x 3 and 4 x 16 tiles keep 12 and 8 ymm accumulators;
 * with 32 zmm registers these keep 24 and 16, twice the lanes each, so a
 * core with two 512-bit FMA ports does four times the work per load of the
 * tile. The tails (n or K not a multiple of 16) are masked loads, so every
 * element goes through the same FMA chains. */
#define F512_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512dq")))

/* The four sums of a0..a3 (16 lanes each) as one xmm: pairwise unpacks and
 * adds, then the four 128-bit lanes added. */
F512_FN static inline __m128 hsum4x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23));
    __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23));
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

#define G6_STEP(t, xt)                                                                                                 \
    do {                                                                                                               \
        __m512 xv = _mm512_maskz_loadu_ps(m, (xt) + k);                                                                \
        a##t##0 = _mm512_fmadd_ps(v0, xv, a##t##0);                                                                    \
        a##t##1 = _mm512_fmadd_ps(v1, xv, a##t##1);                                                                    \
        a##t##2 = _mm512_fmadd_ps(v2, xv, a##t##2);                                                                    \
        a##t##3 = _mm512_fmadd_ps(v3, xv, a##t##3);                                                                    \
    } while (0)

/* gemm4x6: y[t * ldy + r] = sum_k w[r * ws + k] * x[t * xs + k], rows r < 4,
 * tokens t < 6: 24 accumulators, each w load feeding 6 FMAs and each x load
 * 4. */
F512_FN static void gemm4x6(const float *w, size_t ws, const float *x, size_t xs, size_t n, float *y, size_t ldy)
{
    const float *w0 = w, *w1 = w + ws, *w2 = w + 2 * ws, *w3 = w + 3 * ws;
    const float *x0 = x, *x1 = x + xs, *x2 = x + 2 * xs, *x3 = x + 3 * xs, *x4 = x + 4 * xs, *x5 = x + 5 * xs;
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    __m512 a40 = a00, a41 = a00, a42 = a00, a43 = a00, a50 = a00, a51 = a00, a52 = a00, a53 = a00;
    for (size_t k = 0; k < n; k += 16) {
        __mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
        __m512 v0 = _mm512_maskz_loadu_ps(m, w0 + k), v1 = _mm512_maskz_loadu_ps(m, w1 + k);
        __m512 v2 = _mm512_maskz_loadu_ps(m, w2 + k), v3 = _mm512_maskz_loadu_ps(m, w3 + k);
        G6_STEP(0, x0);
        G6_STEP(1, x1);
        G6_STEP(2, x2);
        G6_STEP(3, x3);
        G6_STEP(4, x4);
        G6_STEP(5, x5);
    }
    _mm_storeu_ps(y, hsum4x16(a00, a01, a02, a03));
    _mm_storeu_ps(y + ldy, hsum4x16(a10, a11, a12, a13));
    _mm_storeu_ps(y + 2 * ldy, hsum4x16(a20, a21, a22, a23));
    _mm_storeu_ps(y + 3 * ldy, hsum4x16(a30, a31, a32, a33));
    _mm_storeu_ps(y + 4 * ldy, hsum4x16(a40, a41, a42, a43));
    _mm_storeu_ps(y + 5 * ldy, hsum4x16(a50, a51, a52, a53));
}

#define D8_STEP(t)                                                                                                     \
    do {                                                                                                               \
        __m512 a = _mm512_set1_ps(z[(t) * ldz + i]);                                                                   \
        o##t##0 = _mm512_fmadd_ps(a, d0, o##t##0);                                                                     \
        o##t##1 = _mm512_fmadd_ps(a, d1, o##t##1);                                                                     \
    } while (0)

#define D8_LOAD(t) __m512 o##t##0 = _mm512_loadu_ps(out + (t) * ldo), o##t##1 = _mm512_loadu_ps(out + (t) * ldo + 16)
#define D8_STORE(t) (_mm512_storeu_ps(out + (t) * ldo, o##t##0), _mm512_storeu_ps(out + (t) * ldo + 16, o##t##1))

/* down8x32: out[t * ldo + c] += sum_{i < K} z[t * ldz + i] * D[i * ldd + c],
 * tokens t < 8, columns c < 32: 16 accumulators, each D load feeding 8 FMAs. */
F512_FN static void down8x32(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out,
                             size_t ldo)
{
    D8_LOAD(0);
    D8_LOAD(1);
    D8_LOAD(2);
    D8_LOAD(3);
    D8_LOAD(4);
    D8_LOAD(5);
    D8_LOAD(6);
    D8_LOAD(7);
    for (size_t i = 0; i < K; i++) {
        __m512 d0 = _mm512_loadu_ps(D + i * ldd), d1 = _mm512_loadu_ps(D + i * ldd + 16);
        D8_STEP(0);
        D8_STEP(1);
        D8_STEP(2);
        D8_STEP(3);
        D8_STEP(4);
        D8_STEP(5);
        D8_STEP(6);
        D8_STEP(7);
    }
    D8_STORE(0);
    D8_STORE(1);
    D8_STORE(2);
    D8_STORE(3);
    D8_STORE(4);
    D8_STORE(5);
    D8_STORE(6);
    D8_STORE(7);
}

#define G12_ROW(j)                                                                                                     \
    do {                                                                                                               \
        __m512 b = _mm512_set1_ps(w##j[k]);                                                                            \
        a##j##0 = _mm512_fmadd_ps(b, x0, a##j##0);                                                                     \
        a##j##1 = _mm512_fmadd_ps(b, x1, a##j##1);                                                                     \
    } while (0)

/* Sixteen vectors r[j] (row j's values for 16 tokens) transposed in
 * registers: y[t * ldy + j] = r[j][t] for rows j < nr and tokens t < nt,
 * each token's nr values one masked store (nothing past row nr or token
 * nt is written). It replaced 24 scatters per tile, whose single-element
 * stores into the 32 tokens' lines of y took about half of gemm12x32's
 * time in prefill (Zen 5, SmolLM2 f16, 32-token prompts). */
F512_FN static inline void store_t16(const __m512 r[16], float *y, size_t ldy, int nr, int nt)
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4 g + c], 128-bit lane L: rows 4 g .. 4 g + 3 of token 4 L + c */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
    }
    /* t[c] (c < 4): tokens c, 8 + c of rows 0-7; t[4 + c]: tokens 4 + c,
     * 12 + c; t[8 ..]: the same for rows 8-15 */
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
    }
    __mmask16 m = (__mmask16)((1u << nr) - 1);
    for (int c = 0; c < 8; c++) { /* tokens c and 8 + c */
        if (c < nt)
            _mm512_mask_storeu_ps(y + (size_t)c * ldy, m, _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88));
        if (8 + c < nt)
            _mm512_mask_storeu_ps(y + (size_t)(8 + c) * ldy, m, _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd));
    }
}

/* gemm12x32: y[t * ldy + r] = sum_k w[r * ws + k] * xt[k * tp + t] for rows
 * r < nr <= 12 and tokens t < nt <= 32, over the transposed activations
 * (tp >= 32 floats per k, zero past the last token): an outer product,
 * 24 accumulators of 16 tokens, each k one broadcast per row and two x
 * loads for 24 FMAs. Every sum runs over k in order in one lane. The
 * first pf_lines steps each prefetch a line of pf (the next tile's weight
 * rows) into L2. */
F512_FN static void gemm12x32(const float *w, size_t ws, int nr, const float *xt, size_t tp, size_t n, float *y,
                              size_t ldy, int nt, const void *pf, size_t pf_lines)
{
    const char *pfc = pf;
    const float *r[12];
    for (int j = 0; j < 12; j++)
        r[j] = w + (size_t)(j < nr ? j : nr - 1) * ws;
    const float *w0 = r[0], *w1 = r[1], *w2 = r[2], *w3 = r[3], *w4 = r[4], *w5 = r[5];
    const float *w6 = r[6], *w7 = r[7], *w8 = r[8], *w9 = r[9], *w10 = r[10], *w11 = r[11];
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    __m512 a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
    __m512 a80 = a00, a81 = a00, a90 = a00, a91 = a00, a100 = a00, a101 = a00, a110 = a00, a111 = a00;
    for (size_t k = 0; k < n; k++) {
        __m512 x0 = _mm512_loadu_ps(xt + k * tp), x1 = _mm512_loadu_ps(xt + k * tp + 16);
        if (k < pf_lines) /* one line of what comes next per step: never a burst */
            _mm_prefetch(pfc + 64 * k, _MM_HINT_T1);
        G12_ROW(0);
        G12_ROW(1);
        G12_ROW(2);
        G12_ROW(3);
        G12_ROW(4);
        G12_ROW(5);
        G12_ROW(6);
        G12_ROW(7);
        G12_ROW(8);
        G12_ROW(9);
        G12_ROW(10);
        G12_ROW(11);
    }
    __m512 z = _mm512_setzero_ps();
    __m512 lo[16] = {a00, a10, a20, a30, a40, a50, a60, a70, a80, a90, a100, a110, z, z, z, z};
    store_t16(lo, y, ldy, nr, nt);
    if (nt > 16) {
        __m512 hi[16] = {a01, a11, a21, a31, a41, a51, a61, a71, a81, a91, a101, a111, z, z, z, z};
        store_t16(hi, y + 16 * ldy, ldy, nr, nt - 16);
    }
}

/* An AMD CPU of family 19h (Zen 3 and Zen 4; of them only Zen 4 has
 * AVX-512): the float decode's software prefetch is off there (kernels.h,
 * prefetch_float) and on elsewhere. Zen 5 (family 1Ah), one thread,
 * medians of 4 alternating rounds without and with it: SmolLM2 f16 decode
 * 85.7 -> 94.4 tok/s keep 1.0, 114.3 -> 136.6 keep 0.5; Gemma 3 f16 42.7 ->
 * 46.4 and 50.2 -> 52.0. */
static bool amd_family_19h(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541u || d != 0x69746e65u || c != 0x444d4163u) /* AuthenticAMD */
        return false;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf)
        family += (a >> 20) & 0xff;
    return family == 0x19;
}

static flock_kernel_table avx512_table;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void build_avx512_table(void)
{
    avx512_table = *flock_kernels_avx2();
    avx512_table.name = "avx512vnni";
    avx512_table.prefetch_float = !amd_family_19h(); /* kernels.h: slower with it on Zen 4, faster on Zen 5 */
    avx512_table.dotq[FLOCK_DTYPE_Q8_0] = dotq_q8_0;
    avx512_table.dotq[FLOCK_DTYPE_Q4_0] = dotq_q4_0;
    avx512_table.dotq[FLOCK_DTYPE_Q4_1] = dotq_q4_1;
    avx512_table.dotq4[FLOCK_DTYPE_Q4_0] = dotq4_q4_0;
    avx512_table.dotq4[FLOCK_DTYPE_Q4_1] = dotq4_q4_1;
    avx512_table.dotq[FLOCK_DTYPE_Q5_0] = dotq_q5_0;
    avx512_table.dotq4[FLOCK_DTYPE_Q5_0] = dotq4_q5_0;
    avx512_table.axpy[FLOCK_DTYPE_Q8_0] = axpy_q8_0;
    avx512_table.axpy4[FLOCK_DTYPE_Q8_0] = axpy4_q8_0;
    avx512_table.dotq[FLOCK_DTYPE_Q4_K] = dotq_q4_k;
    avx512_table.dotq[FLOCK_DTYPE_Q6_K] = dotq_q6_k;
    avx512_table.gemm4x6 = gemm4x6;
    avx512_table.down8x32 = down8x32;
    avx512_table.gemm12x32 = gemm12x32;
    avx512_table.gemmq = gemmq16x8;
    avx512_table.quant_x = quant_x512;
    avx512_table.qpack[FLOCK_DTYPE_Q8_0] = qpack_q8_0;
    avx512_table.qpack[FLOCK_DTYPE_Q4_0] = qpack_q4_0;
    avx512_table.qpack[FLOCK_DTYPE_Q4_1] = qpack_q4_1;
    avx512_table.qpack[FLOCK_DTYPE_Q5_0] = qpack_q5_0;
    avx512_table.qpack[FLOCK_DTYPE_Q4_K] = qpack_q4_k;
}

/* AVX-512F/DQ/BW/VL from CPUID leaf 7 (EBX bits 16, 17, 30, 31; DQ for the
 * prefill tiles' 256-bit extracts), VNNI (ECX bit 11), and the OS saving
 * the opmask and ZMM state (XCR0 bits 5-7, with SSE/AVX's bits 1-2). */
static bool have_avx512vnni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6) != 0xe6 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31)) && (c & (1u << 11));
}

const flock_kernel_table *flock_kernels_avx512(void)
{
    if (!flock_kernels_avx2() || !have_avx512vnni())
        return NULL;
    pthread_once(&avx512_once, build_avx512_table);
    return &avx512_table;
}

#else

const flock_kernel_table *flock_kernels_avx512(void)
{
    return NULL;
}

#endif
