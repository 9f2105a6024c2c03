/* Portable (scalar) kernels and the run-time choice of a kernel table.
 * These are also the reference the SIMD versions are tested against. */
#include "kernels.h"
#include "kernels_quant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* f16 -> f32 via the formats helper is a function call per element; this
 * inline version is the same IEEE conversion, written for the hot loop. */
static inline float h2f(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* All 65536 f16 values as f32 (256 KiB), built once: the portable kernels
 * look values up instead of converting bit by bit. */
static float f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void build_f16_table(void)
{
    for (uint32_t i = 0; i < 65536; i++)
        f16_table[i] = h2f((uint16_t)i);
}

#define H2F(h) f16_table[(h)]

static inline float b2f(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float dot_f32(const void *w, const float *x, size_t n)
{
    const float *a = w;
    /* Four partial sums: same association as a 4-wide vector, fewer rounding steps. */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * x[i];
        s1 += a[i + 1] * x[i + 1];
        s2 += a[i + 2] * x[i + 2];
        s3 += a[i + 3] * x[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * x[i];
    return (s0 + s1) + (s2 + s3);
}

static float dot_f16(const void *w, const float *x, size_t n)
{
    const uint16_t *a = w;
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += H2F(a[i]) * x[i];
        s1 += H2F(a[i + 1]) * x[i + 1];
    }
    for (; i < n; i++)
        s0 += H2F(a[i]) * x[i];
    return s0 + s1;
}

static float dot_bf16(const void *w, const float *x, size_t n)
{
    const uint16_t *a = w;
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += b2f(a[i]) * x[i];
        s1 += b2f(a[i + 1]) * x[i + 1];
    }
    for (; i < n; i++)
        s0 += b2f(a[i]) * x[i];
    return s0 + s1;
}

static void dot4_f32(const void *w, size_t stride, const float *x, size_t n, float *out)
{
    for (int r = 0; r < 4; r++)
        out[r] = dot_f32((const float *)w + r * stride, x, n);
}

static void dot4_f16(const void *w, size_t stride, const float *x, size_t n, float *out)
{
    for (int r = 0; r < 4; r++)
        out[r] = dot_f16((const uint16_t *)w + r * stride, x, n);
}

static void dot4_bf16(const void *w, size_t stride, const float *x, size_t n, float *out)
{
    for (int r = 0; r < 4; r++)
        out[r] = dot_bf16((const uint16_t *)w + r * stride, x, n);
}

static void gemm4x3(const float *w, size_t ws, const float *x, size_t xs, size_t n, float *y, size_t ldy)
{
    for (int t = 0; t < 3; t++)
        for (int r = 0; r < 4; r++)
            y[t * ldy + r] = dot_f32(w + r * ws, x + t * xs, n);
}

static void down4x16(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out, size_t ldo)
{
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < K; i++) {
            float a = z[t * ldz + i];
            for (int c = 0; c < 16; c++)
                out[t * ldo + c] += a * D[i * ldd + c];
        }
}

static void axpy_f32(float a, const void *w, float *y, size_t n)
{
    const float *x = w;
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void axpy_f16(float a, const void *w, float *y, size_t n)
{
    const uint16_t *x = w;
    for (size_t i = 0; i < n; i++)
        y[i] += a * H2F(x[i]);
}

static void axpy_bf16(float a, const void *w, float *y, size_t n)
{
    const uint16_t *x = w;
    for (size_t i = 0; i < n; i++)
        y[i] += a * b2f(x[i]);
}

static void cvt_f32(const void *w, float *dst, size_t n)
{
    memcpy(dst, w, n * sizeof(float));
}

static void cvt_f16(const void *w, float *dst, size_t n)
{
    const uint16_t *x = w;
    for (size_t i = 0; i < n; i++)
        dst[i] = H2F(x[i]);
}

static void cvt_bf16(const void *w, float *dst, size_t n)
{
    const uint16_t *x = w;
    for (size_t i = 0; i < n; i++)
        dst[i] = b2f(x[i]);
}

static void axpy_plain(float a, const float *x, float *y, size_t n)
{
    axpy_f32(a, x, y, n);
}

static void f32_to_f16(const float *x, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = flock_f32_to_f16(x[i]);
}

static void att_qk(const float *q, size_t ldq, size_t nq, const float *k, size_t ldk, size_t n, size_t hd,
                   float scale, float *s, size_t lds)
{
    for (size_t r = 0; r < nq; r++)
        for (size_t j = 0; j < n; j++) {
            const float *kj = k + j * ldk, *qr = q + r * ldq;
            float acc = 0;
            for (size_t i = 0; i < hd; i++)
                acc += qr[i] * kj[i];
            s[r * lds + j] = acc * scale;
        }
}

static void att_qk_h(const float *q, size_t ldq, size_t nq, const uint16_t *k, size_t ldk, size_t n, size_t hd,
                     float scale, float *s, size_t lds)
{
    for (size_t r = 0; r < nq; r++)
        for (size_t j = 0; j < n; j++) {
            const uint16_t *kj = k + j * ldk;
            const float *qr = q + r * ldq;
            float acc = 0;
            for (size_t i = 0; i < hd; i++)
                acc += qr[i] * flock_f16_to_f32(kj[i]);
            s[r * lds + j] = acc * scale;
        }
}

static float att_exp(float *s, size_t n, float m)
{
    float sum = 0;
    for (size_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    return sum;
}

static void att_pv(const float *p, size_t ldp, size_t np, const float *v, size_t ldv, size_t n, size_t hd, float *o,
                   size_t ldo)
{
    for (size_t r = 0; r < np; r++)
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < hd; i++)
                o[r * ldo + i] += p[r * ldp + j] * v[j * ldv + i];
}

static void att_pv_h(const float *p, size_t ldp, size_t np, const uint16_t *v, size_t ldv, size_t n, size_t hd,
                     float *o, size_t ldo)
{
    for (size_t r = 0; r < np; r++)
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < hd; i++)
                o[r * ldo + i] += p[r * ldp + j] * flock_f16_to_f32(v[j * ldv + i]);
}

static void silu_mul(const float *h, float *z, size_t n)
{
    for (size_t i = 0; i < n; i++)
        z[i] = flock_silu(h[2 * i]) * h[2 * i + 1];
}

static void gelu_tanh_mul(const float *h, float *z, size_t n)
{
    for (size_t i = 0; i < n; i++)
        z[i] = flock_gelu_tanh(h[2 * i]) * h[2 * i + 1];
}

/* Table rows by dtype: the three float types, then the quantized ones. */
#define DT3(f) [FLOCK_DTYPE_F32] = f##_f32, [FLOCK_DTYPE_F16] = f##_f16, [FLOCK_DTYPE_BF16] = f##_bf16
#define QK(pre, f)                                                                                          \
    [FLOCK_DTYPE_Q8_0] = pre##_##f##_q8_0, [FLOCK_DTYPE_Q4_0] = pre##_##f##_q4_0,                           \
    [FLOCK_DTYPE_Q4_1] = pre##_##f##_q4_1, [FLOCK_DTYPE_Q4_K] = pre##_##f##_q4_k, [FLOCK_DTYPE_Q6_K] = pre##_##f##_q6_k, \
    [FLOCK_DTYPE_Q5_0] = pre##_##f##_q5_0

static const flock_kernel_table scalar_table = {
    .name = "scalar",
    .prefetch_float = true,
    .dot = {DT3(dot), QK(flock_qs, dot)},
    .dot4 = {DT3(dot4), QK(flock_qs, dot4)},
    .gemm4x3 = gemm4x3,
    .down4x16 = down4x16,
    .quant_x = flock_q_quant_x,
    .dotq = {[FLOCK_DTYPE_Q8_0] = flock_qs_dotq_q8_0, [FLOCK_DTYPE_Q4_0] = flock_qs_dotq_q4_0,
             [FLOCK_DTYPE_Q4_1] = flock_qs_dotq_q4_1, [FLOCK_DTYPE_Q5_0] = flock_qs_dotq_q5_0,
             [FLOCK_DTYPE_Q4_K] = flock_qs_dotq_q4_k, [FLOCK_DTYPE_Q6_K] = flock_qs_dotq_q6_k},
    .axpy4 = {[FLOCK_DTYPE_Q8_0] = flock_qs_axpy4_q8_0, [FLOCK_DTYPE_Q4_0] = flock_qs_axpy4_q4_0,
              [FLOCK_DTYPE_Q4_1] = flock_qs_axpy4_q4_1, [FLOCK_DTYPE_Q5_0] = flock_qs_axpy4_q5_0},
    .dotq4 = {[FLOCK_DTYPE_Q8_0] = flock_qs_dotq4_q8_0, [FLOCK_DTYPE_Q4_0] = flock_qs_dotq4_q4_0,
              [FLOCK_DTYPE_Q4_1] = flock_qs_dotq4_q4_1, [FLOCK_DTYPE_Q5_0] = flock_qs_dotq4_q5_0,
              [FLOCK_DTYPE_Q4_K] = flock_qs_dotq4_q4_k, [FLOCK_DTYPE_Q6_K] = flock_qs_dotq4_q6_k},
    .axpy = {DT3(axpy), QK(flock_qs, axpy)},
    .to_f32 = {DT3(cvt), QK(flock_qs, to_f32)},
    .f32_to_f16 = f32_to_f16,
    .axpy_f32 = axpy_plain,
    .att_qk = att_qk,
    .att_qk_h = att_qk_h,
    .att_exp = att_exp,
    .silu_mul = silu_mul,
    .gelu_tanh_mul = gelu_tanh_mul,
    .att_pv = att_pv,
    .att_pv_h = att_pv_h,
};

const flock_kernel_table *flock_kernels_scalar(void)
{
    pthread_once(&f16_once, build_f16_table);
    return &scalar_table;
}

const flock_kernel_table *flock_kernels_best(void)
{
    const char *force = getenv("FLOCK_KERNELS");
    if (force && strcmp(force, "scalar") == 0)
        return flock_kernels_scalar();
    const flock_kernel_table *t = force && strcmp(force, "avx2") == 0 ? NULL : flock_kernels_avx512();
    if (!t)
        t = flock_kernels_avx2();
    return t ? t : flock_kernels_scalar();
}
