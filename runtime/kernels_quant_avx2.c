/* AVX2 + FMA + F16C kernels over quantized rows (kernels_quant.h). The
 * 32-element types are decoded in registers: 16 or 32 bytes of quants
 * widened to 4 x 8 floats, one FMA chain per block, then scaled by the
 * block's d (and q4_1's m times the block's sum of x). The k-quants'
 * float-activation kernels decode each 256-element block with the scalar
 * decoder, then run an AVX2 dot; their int8-activation dotq (the decode
 * matvec) unpacks the quants in registers, as the 32-element types'.
 * Built with target attributes, as kernels_avx2.c, and only handed out by
 * flock_kernels_avx2() on a CPU that has the instructions. */
#include "kernels_quant.h"

#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "avx2_util.h"
#include "dotq_loops.h"

#include <string.h>

/* x into int8 blocks (kernels.h, quant_x), bitwise the scalar
 * flock_q_quant_x: the same amax, d = amax / 127, id = 1 / d and products
 * x id; roundf (half away from zero) as trunc plus one step away from zero
 * where the remainder is at least a half (exact: |x id| <= 127). */
AVX2_FN void flock_qa_quant_x(const float *x, flock_q8x *xq, size_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), half_ = _mm256_set1_ps(0.5f);
    for (size_t b = 0; b < n / 32; b++, x += 32) {
        __m256 v[4];
        __m256 a = _mm256_setzero_ps();
        for (int h = 0; h < 4; h++) {
            v[h] = _mm256_loadu_ps(x + 8 * h);
            a = _mm256_max_ps(_mm256_andnot_ps(sign, v[h]), a);
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        __m256i q[4];
        for (int h = 0; h < 4; h++) {
            __m256 t = _mm256_mul_ps(v[h], _mm256_set1_ps(id));
            __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(t, r)), half_, _CMP_GE_OQ);
            __m256 step = _mm256_or_ps(one, _mm256_and_ps(t, sign)); /* copysign(1, t) */
            q[h] = _mm256_cvtps_epi32(_mm256_add_ps(r, _mm256_and_ps(up, step)));
        }
        /* 32 int32 in [-127, 127] to int8 in order: the packs work per
         * 128-bit lane, the permute puts the dwords back in order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)xq[b].q, p);
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        xq[b].d = d;
        xq[b].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

/* The 32 values of a block as four vectors of 8 (elements 0-7, 8-15, 16-23, 24-31). */
typedef struct q32 {
    __m256 v[4];
} q32;

AVX2_FN static inline q32 q8_0_vals(const uint8_t *p)
{
    __m128i a = _mm_loadu_si128((const __m128i *)(p + 2)), b = _mm_loadu_si128((const __m128i *)(p + 18));
    return (q32){{_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a)),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8))),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)))}};
}

/* The 4-bit quants of 16 bytes at qs: element j < 16 in the low nibble of
 * byte j, j + 16 in its high nibble; minus `off` (8 for q4_0, 0 for q4_1). */
AVX2_FN static inline q32 q4_vals(const uint8_t *qs, int off)
{
    const __m128i m = _mm_set1_epi8(0x0F), o = _mm_set1_epi8((char)off);
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(b, m), o), hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m), o);
    return (q32){{_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))}};
}

/* The 32 values of a q5_0 block, q - 16, as four vectors of 8. */
AVX2_FN static inline q32 q5_vals(const uint8_t *p)
{
    __m256i v = _mm256_sub_epi8(q5_u8(p), _mm256_set1_epi8(16));
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    return (q32){{_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)),
                  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))}};
}

AVX2_FN static inline __m256 dot32(const q32 *q, const float *x)
{
    __m256 s = _mm256_mul_ps(q->v[0], _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(q->v[1], _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(q->v[2], _mm256_loadu_ps(x + 16), s);
    return _mm256_fmadd_ps(q->v[3], _mm256_loadu_ps(x + 24), s);
}

AVX2_FN static inline __m256 sum32(const float *x)
{
    return _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                         _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
}

/* The 32-element types: a block's bytes and its 32 values as decoded in
 * registers (q4_1: d q without its m). With t a constant the compiler
 * folds the choice away, so one loop serves every type. */
AVX2_FN static inline size_t block_bytes32(flock_dtype t)
{
    return t == FLOCK_DTYPE_Q8_0 ? 34 : t == FLOCK_DTYPE_Q4_0 ? 18 : t == FLOCK_DTYPE_Q5_0 ? 22 : 20;
}

AVX2_FN static inline q32 block_vals(flock_dtype t, const uint8_t *blk)
{
    return t == FLOCK_DTYPE_Q8_0   ? q8_0_vals(blk)
           : t == FLOCK_DTYPE_Q4_0 ? q4_vals(blk + 2, 8)
           : t == FLOCK_DTYPE_Q5_0 ? q5_vals(blk)
                                   : q4_vals(blk + 4, 0);
}

/* The types whose value is d times the quant (q8_0 d q, q4_0 d (q - 8),
 * q5_0 d (q - 16)): two accumulators over alternate blocks. */
AVX2_FN static inline float dot_d(flock_dtype t, const void *w, const float *x, size_t n)
{
    const uint8_t *p = w;
    const size_t bs = block_bytes32(t);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    size_t nb = n / 32, b = 0;
    for (; b + 2 <= nb; b += 2, p += 2 * bs, x += 64) {
        q32 q = block_vals(t, p), r = block_vals(t, p + bs);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(half(p)), dot32(&q, x), a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(half(p + bs)), dot32(&r, x + 32), a1);
    }
    if (b < nb) {
        q32 q = block_vals(t, p);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(half(p)), dot32(&q, x), a0);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

AVX2_FN float flock_qa_dot_q8_0(const void *w, const float *x, size_t n)
{
    return dot_d(FLOCK_DTYPE_Q8_0, w, x, n);
}

AVX2_FN float flock_qa_dot_q4_0(const void *w, const float *x, size_t n)
{
    return dot_d(FLOCK_DTYPE_Q4_0, w, x, n);
}

AVX2_FN float flock_qa_dot_q5_0(const void *w, const float *x, size_t n)
{
    return dot_d(FLOCK_DTYPE_Q5_0, w, x, n);
}

/* x = d q + m: d (q . x) + m (sum of x) per block. */
AVX2_FN float flock_qa_dot_q4_1(const void *w, const float *x, size_t n)
{
    const uint8_t *p = w;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (size_t b = 0; b < n / 32; b++, p += 20, x += 32) {
        q32 q = q4_vals(p + 4, 0);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(half(p)), dot32(&q, x), a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(half(p + 2)), sum32(x), a1);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

/* k-quants: each 256-element block decoded by the scalar decoder. */
AVX2_FN static float dot_k(flock_dtype t, const void *w, const float *x, size_t n)
{
    float tmp[256];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (size_t b = 0; b < n / 256; b++, x += 256) {
        flock_q_block_to_f32(t, w, b, tmp);
        for (int j = 0; j < 256; j += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(tmp + j), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(tmp + j + 8), _mm256_loadu_ps(x + j + 8), a1);
        }
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

AVX2_FN float flock_qa_dot_q4_k(const void *w, const float *x, size_t n)
{
    return dot_k(FLOCK_DTYPE_Q4_K, w, x, n);
}

AVX2_FN float flock_qa_dot_q6_k(const void *w, const float *x, size_t n)
{
    return dot_k(FLOCK_DTYPE_Q6_K, w, x, n);
}

/* y += a d q (q8_0, q4_0) or a (d q + m) (q4_1), one block at a time. */
AVX2_FN static inline void axpy32(__m256 s, __m256 c, const q32 *q, float *y)
{
    for (int i = 0; i < 4; i++)
        _mm256_storeu_ps(y + 8 * i, _mm256_add_ps(_mm256_fmadd_ps(s, q->v[i], _mm256_loadu_ps(y + 8 * i)), c));
}

/* y += a d q for the types of dot_d, one block at a time: one FMA per
 * element (no offset term to add). */
AVX2_FN static inline void axpy_d(flock_dtype t, float a, const void *w, float *y, size_t n)
{
    const uint8_t *p = w;
    const size_t bs = block_bytes32(t);
    for (size_t b = 0; b < n / 32; b++, p += bs, y += 32) {
        q32 q = block_vals(t, p);
        __m256 s = _mm256_set1_ps(a * half(p));
        for (int i = 0; i < 4; i++)
            _mm256_storeu_ps(y + 8 * i, _mm256_fmadd_ps(s, q.v[i], _mm256_loadu_ps(y + 8 * i)));
    }
}

AVX2_FN void flock_qa_axpy_q8_0(float a, const void *w, float *y, size_t n)
{
    axpy_d(FLOCK_DTYPE_Q8_0, a, w, y, n);
}

AVX2_FN void flock_qa_axpy_q4_0(float a, const void *w, float *y, size_t n)
{
    axpy_d(FLOCK_DTYPE_Q4_0, a, w, y, n);
}

AVX2_FN void flock_qa_axpy_q5_0(float a, const void *w, float *y, size_t n)
{
    axpy_d(FLOCK_DTYPE_Q5_0, a, w, y, n);
}

AVX2_FN void flock_qa_axpy_q4_1(float a, const void *w, float *y, size_t n)
{
    const uint8_t *p = w;
    for (size_t b = 0; b < n / 32; b++, p += 20, y += 32) {
        q32 q = q4_vals(p + 4, 0);
        axpy32(_mm256_set1_ps(a * half(p)), _mm256_set1_ps(a * half(p + 2)), &q, y);
    }
}

/* axpy of four rows into one y (kernels.h, axpy4): each 32-element stretch
 * of y stays in registers while the four rows are applied in turn, each by
 * the one-row axpy's own operations, so the result is bitwise four axpy calls in
 * order; y is loaded and stored once instead of four times. */
AVX2_FN static inline void axpy4_blocks(flock_dtype t, const float *a, const void *const *w, float *y, size_t n)
{
    const uint8_t *p[4] = {w[0], w[1], w[2], w[3]};
    const size_t bs = block_bytes32(t);
    for (size_t b = 0; b < n / 32; b++, y += 32) {
        __m256 acc[4];
        for (int i = 0; i < 4; i++)
            acc[i] = _mm256_loadu_ps(y + 8 * i);
        for (int r = 0; r < 4; r++) {
            const uint8_t *blk = p[r] + b * bs;
            q32 q = block_vals(t, blk);
            __m256 sc = _mm256_set1_ps(a[r] * half(blk));
            if (t == FLOCK_DTYPE_Q4_1) {
                __m256 c = _mm256_set1_ps(a[r] * half(blk + 2));
                for (int i = 0; i < 4; i++)
                    acc[i] = _mm256_add_ps(_mm256_fmadd_ps(sc, q.v[i], acc[i]), c);
            } else {
                for (int i = 0; i < 4; i++)
                    acc[i] = _mm256_fmadd_ps(sc, q.v[i], acc[i]);
            }
        }
        for (int i = 0; i < 4; i++)
            _mm256_storeu_ps(y + 8 * i, acc[i]);
    }
}

AVX2_FN void flock_qa_axpy4_q8_0(const float *a, const void *const *w, float *y, size_t n)
{
    axpy4_blocks(FLOCK_DTYPE_Q8_0, a, w, y, n);
}

AVX2_FN void flock_qa_axpy4_q4_0(const float *a, const void *const *w, float *y, size_t n)
{
    axpy4_blocks(FLOCK_DTYPE_Q4_0, a, w, y, n);
}

AVX2_FN void flock_qa_axpy4_q4_1(const float *a, const void *const *w, float *y, size_t n)
{
    axpy4_blocks(FLOCK_DTYPE_Q4_1, a, w, y, n);
}

AVX2_FN void flock_qa_axpy4_q5_0(const float *a, const void *const *w, float *y, size_t n)
{
    axpy4_blocks(FLOCK_DTYPE_Q5_0, a, w, y, n);
}

AVX2_FN static void axpy_k(flock_dtype t, float a, const void *w, float *y, size_t n)
{
    float tmp[256];
    const __m256 s = _mm256_set1_ps(a);
    for (size_t b = 0; b < n / 256; b++, y += 256) {
        flock_q_block_to_f32(t, w, b, tmp);
        for (int j = 0; j < 256; j += 8)
            _mm256_storeu_ps(y + j, _mm256_fmadd_ps(s, _mm256_loadu_ps(tmp + j), _mm256_loadu_ps(y + j)));
    }
}

AVX2_FN void flock_qa_axpy_q4_k(float a, const void *w, float *y, size_t n)
{
    axpy_k(FLOCK_DTYPE_Q4_K, a, w, y, n);
}

AVX2_FN void flock_qa_axpy_q6_k(float a, const void *w, float *y, size_t n)
{
    axpy_k(FLOCK_DTYPE_Q6_K, a, w, y, n);
}

/* Decoding rows: d q (+ m) stored. */
AVX2_FN static inline void store32(__m256 d, __m256 m, const q32 *q, float *y)
{
    for (int i = 0; i < 4; i++)
        _mm256_storeu_ps(y + 8 * i, _mm256_fmadd_ps(d, q->v[i], m));
}

/* x = d q for the types of dot_d. */
AVX2_FN static inline void to_f32_d(flock_dtype t, const void *w, float *dst, size_t n)
{
    const uint8_t *p = w;
    const size_t bs = block_bytes32(t);
    const __m256 z = _mm256_setzero_ps();
    for (size_t b = 0; b < n / 32; b++, p += bs, dst += 32) {
        q32 q = block_vals(t, p);
        store32(_mm256_set1_ps(half(p)), z, &q, dst);
    }
}

AVX2_FN void flock_qa_to_f32_q8_0(const void *w, float *dst, size_t n)
{
    to_f32_d(FLOCK_DTYPE_Q8_0, w, dst, n);
}

AVX2_FN void flock_qa_to_f32_q4_0(const void *w, float *dst, size_t n)
{
    to_f32_d(FLOCK_DTYPE_Q4_0, w, dst, n);
}

AVX2_FN void flock_qa_to_f32_q5_0(const void *w, float *dst, size_t n)
{
    to_f32_d(FLOCK_DTYPE_Q5_0, w, dst, n);
}

AVX2_FN void flock_qa_to_f32_q4_1(const void *w, float *dst, size_t n)
{
    const uint8_t *p = w;
    for (size_t b = 0; b < n / 32; b++, p += 20, dst += 32) {
        q32 q = q4_vals(p + 4, 0);
        store32(_mm256_set1_ps(half(p)), _mm256_set1_ps(half(p + 2)), &q, dst);
    }
}

void flock_qa_to_f32_q4_k(const void *w, float *dst, size_t n)
{
    flock_qs_to_f32_q4_k(w, dst, n);
}

void flock_qa_to_f32_q6_k(const void *w, float *dst, size_t n)
{
    flock_qs_to_f32_q6_k(w, dst, n);
}

/* ---- int8 activations: 32 products per maddubs ------------------------------ */

/* sum of the 32 products of unsigned u8 a and signed i8 b, as 8 int32 lanes */
AVX2_FN static inline __m256i dot_u8i8(__m256i a, __m256i b)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}

/* One q8_0 block of the integer dot product: the row's running sums
 * advanced by block p against xb (the 4-bit and 5-bit types' steps are
 * FLOCK_DOTQ_4BIT's, dotq_loops.h). */
AVX2_FN static inline __m256 step_q8_0(const uint8_t *p, const flock_q8x *xb, __m256i qx, __m256 acc)
{
    __m256i qw = _mm256_loadu_si256((const __m256i *)(p + 2));
    /* |qw| times qx with qw's sign: unsigned x signed, as maddubs takes them */
    __m256i i = dot_u8i8(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
    return _mm256_fmadd_ps(_mm256_set1_ps(half(p) * xb->d), _mm256_cvtepi32_ps(i), acc);
}

/* q4_k against int8 x (dotq_loops.h), each sub-block's products by
 * maddubs + madd. */
FLOCK_DOTQ_Q4_K(AVX2_FN, flock_qa_dotq_q4_k, dot_u8i8)

/* q6_k against int8 x: x block k of a 128-element half is the half's
 * elements l + 32k (dequant_q6_k's order): 4 bits from ql (low or high
 * nibble of byte l or l + 32), 2 from qh, as unsigned 0..63; the products
 * with qx less 32 qx (maddubs of 32) give the signed quants' sums in int16
 * pairs, which madd_epi16 weights by the two 16-element sub-blocks' int8
 * scales (lanes 0-7 the first, 8-15 the second) into int32. */
AVX2_FN static inline __m256i q6_scaled(__m256i q, __m256i qx, int8_t s0, int8_t s1)
{
    const __m256i s16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, qx), _mm256_maddubs_epi16(_mm256_set1_epi8(32), qx));
    return _mm256_madd_epi16(s16, _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0)));
}

FLOCK_DOTQ_Q6_K(AVX2_FN, flock_qa_dotq_q6_k, q6_scaled)

FLOCK_DOTQ_Q8_0(AVX2_FN, flock_qa_dotq_q8_0, step_q8_0)

/* Four rows against the same int8 x: one load of each x block serves the
 * four rows, and their four independent chains hide the FMA latency that
 * bounds a lone row (q4_1 out of cache: 8.9 GB/s one row at a time, 10.7
 * four at a time). Not for q8_0: there four interleaved row streams ran at
 * 10 GB/s against 17 GB/s one row at a time (both prefetched; 30 MB of
 * rows, one Zen 3 core), so q8_0 has no dotq4. */
FLOCK_DOTQ_4BIT(, AVX2_FN, flock_qa_dotq, dot_u8i8)

#define DOT4(T, DT)                                                                                         \
    AVX2_FN void flock_qa_dot4_##T(const void *w, size_t stride, const float *x, size_t n, float *out)      \
    {                                                                                                       \
        const size_t rb = flock_dtype_row_bytes(DT, stride);                                                \
        for (int r = 0; r < 4; r++)                                                                         \
            out[r] = flock_qa_dot_##T((const uint8_t *)w + r * rb, x, n);                                   \
    }
DOT4(q8_0, FLOCK_DTYPE_Q8_0)
DOT4(q4_0, FLOCK_DTYPE_Q4_0)
DOT4(q4_1, FLOCK_DTYPE_Q4_1)
DOT4(q4_k, FLOCK_DTYPE_Q4_K)
DOT4(q6_k, FLOCK_DTYPE_Q6_K)
DOT4(q5_0, FLOCK_DTYPE_Q5_0)

#endif
