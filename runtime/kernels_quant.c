/* Scalar kernels over quantized rows (kernels_quant.h): each block is
 * decoded to f32 (the formats library's GGML-exact dequantizer for the
 * k-quants, inline code for the 32-element types) and used at once. */
#include "kernels_quant.h"

#include <string.h>

static inline float half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return flock_f16_to_f32(h);
}

void flock_q_block_to_f32(flock_dtype t, const void *row, size_t b, float *y)
{
    const uint8_t *x = (const uint8_t *)row + b * flock_dtype_block_bytes(t);
    switch (t) {
    case FLOCK_DTYPE_Q8_0: {
        const float d = half(x);
        for (int j = 0; j < 32; j++)
            y[j] = (int8_t)x[2 + j] * d;
        break;
    }
    case FLOCK_DTYPE_Q4_0: {
        const float d = half(x);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[2 + j] & 0x0F) - 8) * d;
            y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
        }
        break;
    }
    case FLOCK_DTYPE_Q4_1: {
        const float d = half(x), m = half(x + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (x[4 + j] & 0x0F) * d + m;
            y[j + 16] = (x[4 + j] >> 4) * d + m;
        }
        break;
    }
    default: /* k-quants: one 256-element block through the reference decoder */
        flock_convert_to_f32(t, x, y, flock_dtype_block(t));
    }
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
