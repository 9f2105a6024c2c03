/* Scalar kernels over quantized rows (kernels_quant.h): each block is
 * decoded to f32 by the formats library's GGML-exact dequantizer and used
 * at once; the int8-activation dot products read the blocks directly. */
#include "kernels_quant.h"

#include "kernels.h"

#include <math.h>

#include <string.h>

static inline float half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return flock_f16_to_f32(h);
}

/* The formats library's GGML-exact decoder, one block at a time: the
 * scalar kernels are the reference the SIMD ones are held to. */
void flock_q_block_to_f32(flock_dtype t, const void *row, size_t b, float *y)
{
    flock_convert_to_f32(t, (const uint8_t *)row + b * flock_dtype_block_bytes(t), y, flock_dtype_block(t));
}

static float dot_q(flock_dtype t, const void *w, const float *x, size_t n)
{
    const size_t B = flock_dtype_block(t);
    float tmp[256], s = 0;
    for (size_t b = 0; b < n / B; b++) {
        flock_q_block_to_f32(t, w, b, tmp);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t j = 0; j < B; j += 4) {
            s0 += tmp[j] * x[b * B + j];
            s1 += tmp[j + 1] * x[b * B + j + 1];
            s2 += tmp[j + 2] * x[b * B + j + 2];
            s3 += tmp[j + 3] * x[b * B + j + 3];
        }
        s += (s0 + s1) + (s2 + s3);
    }
    return s;
}

static void axpy_q(flock_dtype t, float a, const void *w, float *y, size_t n)
{
    const size_t B = flock_dtype_block(t);
    float tmp[256];
    for (size_t b = 0; b < n / B; b++) {
        flock_q_block_to_f32(t, w, b, tmp);
        for (size_t j = 0; j < B; j++)
            y[b * B + j] += a * tmp[j];
    }
}

static void to_f32_q(flock_dtype t, const void *w, float *dst, size_t n)
{
    const size_t B = flock_dtype_block(t);
    for (size_t b = 0; b < n / B; b++)
        flock_q_block_to_f32(t, w, b, dst + b * B);
}

#define SCALAR(T, DT)                                                                                       \
    float flock_qs_dot_##T(const void *w, const float *x, size_t n) { return dot_q(DT, w, x, n); }          \
    void flock_qs_dot4_##T(const void *w, size_t stride, const float *x, size_t n, float *out)              \
    {                                                                                                       \
        const size_t rb = flock_dtype_row_bytes(DT, stride);                                                \
        for (int r = 0; r < 4; r++)                                                                         \
            out[r] = dot_q(DT, (const uint8_t *)w + r * rb, x, n);                                          \
    }                                                                                                       \
    void flock_qs_axpy_##T(float a, const void *w, float *y, size_t n) { axpy_q(DT, a, w, y, n); }          \
    void flock_qs_to_f32_##T(const void *w, float *dst, size_t n) { to_f32_q(DT, w, dst, n); }

SCALAR(q8_0, FLOCK_DTYPE_Q8_0)
SCALAR(q4_0, FLOCK_DTYPE_Q4_0)
SCALAR(q4_1, FLOCK_DTYPE_Q4_1)
SCALAR(q4_k, FLOCK_DTYPE_Q4_K)
SCALAR(q6_k, FLOCK_DTYPE_Q6_K)
SCALAR(q5_0, FLOCK_DTYPE_Q5_0)

/* ---- int8 activations ---------------------------------------------------- */

void flock_q_quant_x(const float *x, flock_q8x *xq, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)roundf(x[j] * id);
            xq[b].q[j] = (int8_t)q;
            sum += q;
        }
        xq[b].d = d;
        xq[b].s = d * (float)sum;
    }
}

/* q8_0: dw dx sum(qw qx). */
float flock_qs_dotq_q8_0(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    float s = 0;
    for (size_t b = 0; b < n / 32; b++, p += 34) {
        int acc = 0;
        for (int j = 0; j < 32; j++)
            acc += (int8_t)p[2 + j] * xq[b].q[j];
        s += half(p) * xq[b].d * (float)acc;
    }
    return s;
}

/* Sum over a block of the unsigned 4-bit quants times x's int8 quants. */
static int dot_nibbles(const uint8_t *qs, const int8_t *q)
{
    int acc = 0;
    for (int j = 0; j < 16; j++)
        acc += (qs[j] & 0x0F) * q[j] + (qs[j] >> 4) * q[j + 16];
    return acc;
}

/* q4_0: dw (dx sum(qw qx) - 8 s). */
float flock_qs_dotq_q4_0(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    float s = 0;
    for (size_t b = 0; b < n / 32; b++, p += 18)
        s += half(p) * (xq[b].d * (float)dot_nibbles(p + 2, xq[b].q) - 8.0f * xq[b].s);
    return s;
}

/* q5_0: the 5-bit unsigned quants (nibble, fifth bit from qh) of a block
 * times x's int8 quants: dw (dx sum(qw qx) - 16 s). */
static int dot_q5(const uint8_t *p, const int8_t *q)
{
    uint32_t qh = (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
    int acc = 0;
    for (int j = 0; j < 16; j++)
        acc += ((p[6 + j] & 0x0F) | (int)((qh >> j) & 1) << 4) * q[j] +
               ((p[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) * q[j + 16];
    return acc;
}

float flock_qs_dotq_q5_0(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    float s = 0;
    for (size_t b = 0; b < n / 32; b++, p += 22)
        s += half(p) * (xq[b].d * (float)dot_q5(p, xq[b].q) - 16.0f * xq[b].s);
    return s;
}

/* q4_1: dw dx sum(qw qx) + m s. */
float flock_qs_dotq_q4_1(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    float s = 0;
    for (size_t b = 0; b < n / 32; b++, p += 20)
        s += half(p) * xq[b].d * (float)dot_nibbles(p + 4, xq[b].q) + half(p + 2) * xq[b].s;
    return s;
}

/* q4_k: per 32-element sub-block i of a 256-element block, the weights
 * are d sc_i q - dmin m_i, so the product with x block i is
 * d sc_i dx sum(q qx) - dmin m_i s. */
float flock_qs_dotq_q4_k(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    float s = 0;
    for (size_t b = 0; b < n / 256; b++, p += 144, xq += 8) {
        uint8_t sc[8], m[8];
        flock_kquant_scales(p + 4, sc, m);
        const float d = half(p), dmin = half(p + 2);
        const uint8_t *qs = p + 16;
        for (int i = 0; i < 8; i += 2, qs += 32) {
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += (qs[l] & 0x0F) * xq[i].q[l];
                hi += (qs[l] >> 4) * xq[i + 1].q[l];
            }
            s += d * sc[i] * xq[i].d * (float)lo - dmin * m[i] * xq[i].s;
            s += d * sc[i + 1] * xq[i + 1].d * (float)hi - dmin * m[i + 1] * xq[i + 1].s;
        }
    }
    return s;
}

/* q6_k: x block k of a 128-element half is the half's 32 elements l + 32k
 * (dequant_q6_k's order), two 16-element sub-blocks with int8 scales
 * sc[2k], sc[2k + 1] (after the half's offset): d dx (sc_a sum_a + sc_b
 * sum_b) over the signed quants q - 32, summed exactly in int. */
float flock_qs_dotq_q6_k(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    float s = 0;
    for (size_t b = 0; b < n / 256; b++, p += 210) {
        const float d = half(p + 208);
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *sc = (const int8_t *)(p + 192);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, xq += 4) {
            for (int k = 0; k < 4; k++) {
                const uint8_t *lo = ql + (k & 1) * 32;
                const int shift = (k >> 1) * 4;
                int sum[2] = {0, 0};
                for (int l = 0; l < 32; l++) {
                    int q = (((lo[l] >> shift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                    sum[l / 16] += q * xq[k].q[l];
                }
                s += d * xq[k].d * (float)(sc[2 * k] * sum[0] + sc[2 * k + 1] * sum[1]);
            }
        }
    }
    return s;
}

/* Four rows: four one-row products (the reference the SIMD ones match). */
#define DOTQ4(T)                                                                                            \
    void flock_qs_dotq4_##T(const void *const *w, const flock_q8x *xq, size_t n, float *out)               \
    {                                                                                                       \
        for (int r = 0; r < 4; r++)                                                                         \
            out[r] = flock_qs_dotq_##T(w[r], xq, n);                                                        \
    }
DOTQ4(q8_0)
DOTQ4(q4_0)
DOTQ4(q4_1)
DOTQ4(q5_0)
DOTQ4(q4_k)
DOTQ4(q6_k)

/* Four axpys in order. */
#define AXPY4(T)                                                                                            \
    void flock_qs_axpy4_##T(const float *a, const void *const *w, float *y, size_t n)                       \
    {                                                                                                       \
        for (int r = 0; r < 4; r++)                                                                         \
            flock_qs_axpy_##T(a[r], w[r], y, n);                                                            \
    }
AXPY4(q8_0)
AXPY4(q4_0)
AXPY4(q4_1)
AXPY4(q5_0)
