/* Private: the CPU kernels the executor calls, with one table per
 * instruction set (scalar, AVX2+FMA+F16C, AVX-512 VNNI) chosen at run time.
 *
 * Weights are row-major [rows, cols] in f32, f16, bf16 or a quantized type
 * (q8_0, q4_0, q4_1, q4_k, q6_k: cols a multiple of the block, see
 * kernels_quant.h); activations are always f32. A "row" of a weight is
 * contiguous (cols elements, flock_dtype_row_bytes(dtype, cols) bytes). */
#ifndef FLOCK_RUNTIME_KERNELS_H
#define FLOCK_RUNTIME_KERNELS_H

#include "flock/formats.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* The per-dtype entries are indexed by flock_dtype; I32 and U8 are NULL
 * (flock_kernels_have says whether a dtype has kernels). */
#define FLOCK_KDT_COUNT FLOCK_DTYPE_COUNT

/* An activation block quantized to int8 for the integer dot products
 * (llama.cpp's q8_1, with float scales): x[j] ~ d q[j], s = d sum(q). */
typedef struct flock_q8x {
    float d, s;
    int8_t q[32];
} flock_q8x;

/* An outer-product prefill tile over transposed activations (the table's
 * gemm12x32 and gemm6x16 below). */
/* The bytes of one 32-element block of a packed 16-row tile (qpack). */
#define FLOCK_QPACK_BLOCK 640

typedef void (*flock_outer_gemm_fn)(const float *w, size_t ws, int nr, const float *xt, size_t tp, size_t n, float *y,
                                    size_t ldy, int nt, const void *pf, size_t pf_lines);

typedef struct flock_kernel_table {
    const char *name; /* "scalar", "avx2", "avx512vnni" */
    /* Whether the one-token decode prefetches float (f16, bf16, f32) weight
     * rows by software ahead of the dot and gather kernels (exec_ops.c).
     * A property of the cores the table is chosen for: the AVX-512 table
     * no on Zen 4 (AMD family 19h; SmolLM2 f16 decode, alternating runs
     * without and with it: one thread 87-89 against 64-75 tok/s, two
     * threads 106-111 against 101-104; docs/runtime.md) and yes elsewhere
     * (Zen 5: faster with it, kernels_avx512.c), the AVX2 table yes (the Zen 3 decode
     * figures were measured with it; not measured there without it). The
     * int8 path prefetches either way (on Zen 4 the same with or without). */
    bool prefetch_float;
    /* sum_i w[i] * x[i], w in the table's dtype, n elements. */
    float (*dot[FLOCK_KDT_COUNT])(const void *w, const float *x, size_t n);
    /* Four dot products at once: rows w, w + stride, w + 2 stride, w + 3
     * stride (stride in elements, a multiple of the block) against the
     * same x; out[0..3]. Prefill's
     * f32 tiles use it; the decode matrix-vector product goes one row at a
     * time with `dot` and a prefetch ahead (exec_ops.c, mm_task), which ran
     * faster than four interleaved row streams (docs/runtime.md). */
    void (*dot4[FLOCK_KDT_COUNT])(const void *w, size_t stride, const float *x, size_t n, float *out);
    /* Prefill micro-kernels over f32 operands (weights converted first):
     * gemm4x3: y[t * ldy + r] = sum_k w[r * ws + k] * x[t * xs + k] for
     * rows r < 4 and tokens t < 3 (12 accumulators in registers; each w and
     * x load feeds 3 or 4 FMAs).
     * down4x16: out[t * ldo + c] += sum_{i < K} z[t * ldz + i] * D[i * ldd + c]
     * for tokens t < 4 and columns c < 16 (the FF down projection over the
     * packed down_t rows). */
    void (*gemm4x3)(const float *w, size_t ws, const float *x, size_t xs, size_t n, float *y, size_t ldy);
    void (*down4x16)(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out, size_t ldo);
    /* The same products over wider tiles, where the table has them (the
     * AVX-512 table; NULL elsewhere): gemm4x6 is gemm4x3 for tokens t < 6,
     * down8x32 is down4x16 for tokens t < 8 and columns c < 32. The executor
     * runs them first and the narrower ones on what is left. */
    void (*gemm4x6)(const float *w, size_t ws, const float *x, size_t xs, size_t n, float *y, size_t ldy);
    void (*down8x32)(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out, size_t ldo);
    /* Prompts of 16 tokens or more (AVX-512 table; NULL elsewhere): an
     * outer-product tile over the transposed activations,
     * y[t * ldy + r] = sum_k w[r * ws + k] * xt[k * tp + t] for rows r < nr
     * <= 12 and tokens t < nt <= 32; xt holds 32 readable floats per k
     * (zeros past the last token). The first pf_lines <= n steps each
     * prefetch one 64-byte line from pf (the next weight rows). */
    flock_outer_gemm_fn gemm12x32;
    /* The same over rows r < nr <= 6 and tokens t < nt <= 16 (AVX2 table;
     * the AVX-512 table runs gemm12x32 instead): xt holds 16 readable
     * floats per k. */
    flock_outer_gemm_fn gemm6x16;
    /* Prefill with int8 activations (the AVX-512 VNNI table; NULL
     * elsewhere). qpack[dt] (q8_0, q4_0, q4_1, q5_0, q4_k) unpacks rows
     * w, w + row_bytes, ... (nr <= 16 of them, n elements, n % 32 == 0)
     * into n / 32 blocks of FLOCK_QPACK_BLOCK bytes: u8 q[8][16][4]
     * (elements 4c..4c+3 of row r at [c][r]), float dw[16], float c[16],
     * the weight being dw q + c (rows past nr zero). gemmq takes such a
     * tile and nt <= 8 tokens' int8 blocks (token t's nb blocks at
     * xq + t ldx): y[t * ldy + r] = sum over blocks of dw[r] dx isum +
     * c[r] s for r < nr (isum: the block's integer dot product; dx, s:
     * the token block's scale and scaled sum, flock_q8x). It prefetches
     * the first pf_lines 64-byte lines at pf (the next tile's rows). */
    void (*qpack[FLOCK_KDT_COUNT])(const void *w, size_t row_bytes, int nr, size_t n, void *pack);
    void (*gemmq)(const void *pack, size_t nb, const flock_q8x *xq, size_t ldx, int nt, float *y, size_t ldy, int nr,
                  const void *pf, size_t pf_lines);
    /* Decode with int8 activations, as llama.cpp does it: quant_x turns x
     * (n a multiple of 32) into n / 32 blocks once per product, then dotq
     * is an integer dot product of a quantized row with them (q8_0, q4_0,
     * q4_1; NULL for the other dtypes, which use dot). The result differs
     * from dot by x's rounding to 8 bits (half a step of each block). */
    void (*quant_x)(const float *x, flock_q8x *xq, size_t n);
    float (*dotq[FLOCK_KDT_COUNT])(const void *w, const flock_q8x *xq, size_t n);
    /* dotq of four rows at w[0..3] against the same xq, out[0..3]: each
     * result bitwise the row's dotq (the x loads shared, four chains in
     * flight). The SIMD tables have it only where measured faster than four
     * dotq calls (AVX2: q4_0 and q4_1, not q8_0; kernels_quant_avx2.c); the
     * scalar table has it for every type with dotq, as four dotq calls. */
    void (*dotq4[FLOCK_KDT_COUNT])(const void *const *w, const flock_q8x *xq, size_t n, float *out);
    /* y[i] += a * w[i]. */
    void (*axpy[FLOCK_KDT_COUNT])(float a, const void *w, float *y, size_t n);
    /* y += a[0] w[0] + ... + a[3] w[3], bitwise four axpy calls in that
     * order (y read and written once): the gather FF's down rows. The
     * 32-element quantized types (both tables); NULL elsewhere. */
    void (*axpy4[FLOCK_KDT_COUNT])(const float *a, const void *const *w, float *y, size_t n);
    /* dst[i] = (float)w[i]. */
    void (*to_f32[FLOCK_KDT_COUNT])(const void *w, float *dst, size_t n);
    /* dst[i] = x[i] rounded to IEEE half (nearest even; beyond 65504 inf):
     * the f16 KV cache's writes. Every table rounds bitwise alike. */
    void (*f32_to_f16)(const float *x, uint16_t *dst, size_t n);
    /* y[i] += a * x[i] (f32 only; used by attention and reductions). */
    void (*axpy_f32)(float a, const float *x, float *y, size_t n);
    /* Attention over K/V rows ld elements apart, f32 or (the _h forms)
     * IEEE half widened in the load, bitwise the f32 form on the widened
     * values:
     * att_qk: s[r * lds + j] = scale * (q[r * ldq + 0..hd) . k[j * ldk + 0..hd))
     *   for query rows r < nq and keys j < n (the query heads of a GQA
     *   group share each K load).
     * att_exp: s[j] = exp(s[j] - m) for j < n (s[j] <= m); returns the sum.
     *   The SIMD version uses a polynomial exp (relative error < 4e-7, i.e.
     *   a few ulp; inputs below -87 give 0 where expf gives < 2e-38).
     * att_pv: o[r * ldo + i] += sum_{j < n} p[r * ldp + j] * v[j * ldv + i]
     *   for rows r < np and i < hd (the rows of a GQA group in one call);
     *   a row's result does not depend on np. */
    void (*att_qk)(const float *q, size_t ldq, size_t nq, const float *k, size_t ldk, size_t n, size_t hd,
                   float scale, float *s, size_t lds);
    void (*att_qk_h)(const float *q, size_t ldq, size_t nq, const uint16_t *k, size_t ldk, size_t n, size_t hd,
                     float scale, float *s, size_t lds);
    float (*att_exp)(float *s, size_t n, float m);
    /* The gated FF's activation over the prefill's interleaved gate/up
     * products: z[i] = f(h[2i]) h[2i+1] for i < n, f = SiLU (silu_mul) or
     * the tanh-approximated GELU (gelu_tanh_mul, as x sigmoid(2u), u =
     * sqrt(2/pi) (x + 0.044715 x^3)). The SIMD versions use att_exp's
     * polynomial exp: within a few ulp of the libm formulas. */
    void (*silu_mul)(const float *h, float *z, size_t n);
    void (*gelu_tanh_mul)(const float *h, float *z, size_t n);
    void (*att_pv)(const float *p, size_t ldp, size_t np, const float *v, size_t ldv, size_t n, size_t hd, float *o,
                   size_t ldo);
    void (*att_pv_h)(const float *p, size_t ldp, size_t np, const uint16_t *v, size_t ldv, size_t n, size_t hd,
                     float *o, size_t ldo);
} flock_kernel_table;

/* The portable table (always available). */
const flock_kernel_table *flock_kernels_scalar(void);
/* The AVX2/FMA/F16C table, or NULL when the CPU (or compiler) lacks it. */
const flock_kernel_table *flock_kernels_avx2(void);
/* The AVX2 table with AVX-512 VNNI integer dot products (kernels_avx512.c),
 * or NULL when the CPU, the OS or the compiler lacks them. */
const flock_kernel_table *flock_kernels_avx512(void);
/* The best table for this CPU (AVX-512 VNNI, else AVX2, else scalar);
 * FLOCK_KERNELS=avx2 or FLOCK_KERNELS=scalar in the environment caps the
 * choice there (for comparisons). */
const flock_kernel_table *flock_kernels_best(void);

/* The gated FF's activations, one element (the executor's decode and the
 * scalar kernels; the SIMD silu_mul / gelu_tanh_mul are held to these). */
static inline float flock_silu(float x)
{
    return x / (1.f + expf(-x));
}

/* 0.5 x (1 + tanh u) as x sigmoid(2 u), u = sqrt(2/pi) (x + 0.044715 x^3):
 * the SIMD glu8's form, one expf where libm's tanhf (through expm1f) was
 * 5% of Gemma 3's one-thread decode (the gather FF calls this per neuron).
 * Large |x| saturate: expf overflows to inf (x / inf = -0) or gives 1. */
static inline float flock_gelu_tanh(float x)
{
    float t = 2.f * 0.79788456080286536f * x * (1.f + 0.044715f * x * x);
    return x / (1.f + expf(-t));
}

/* Zeroed, 64-byte aligned memory (size rounded up to 64); free() releases it. */
void *flock_aligned_alloc(size_t bytes);

/* Zeroed, 64-byte aligned memory whose pages become resident only when first
 * written (an anonymous mapping): for buffers sized for the whole context (KV
 * cache, attention scores, per-position logits), of which a sequence uses the
 * part it reaches. flock_lazy_free() releases it (NULL is fine). */
void *flock_lazy_alloc(size_t bytes);
void flock_lazy_free(void *p);

/* A weight matrix as the executor sees it. */
typedef struct flock_wmat {
    flock_dtype dtype; /* a float or quantized type (kernels_quant.h) */
    int64_t rows, cols;
    const void *data;  /* rows*cols elements, row-major */
    size_t row_bytes;  /* flock_dtype_row_bytes(dtype, cols), set with dtype and cols
                          (flock_wmat_set_shape): the hot loops address rows by it */
} flock_wmat;

/* Sets w's dtype and shape, and the row stride that goes with them. */
static inline void flock_wmat_set_shape(flock_wmat *w, flock_dtype dt, int64_t rows, int64_t cols)
{
    w->dtype = dt, w->rows = rows, w->cols = cols;
    w->row_bytes = flock_dtype_row_bytes(dt, (uint64_t)cols);
}

static inline uint64_t flock_wmat_bytes(const flock_wmat *w)
{
    return (uint64_t)w->rows * w->row_bytes;
}

static inline const void *flock_wmat_row(const flock_wmat *w, int64_t r)
{
    return (const uint8_t *)w->data + (size_t)r * w->row_bytes;
}

/* Whether table k has the dot, dot4, axpy and to_f32 kernels of dtype t. */
static inline int flock_kernels_have(const flock_kernel_table *k, flock_dtype t)
{
    return (unsigned)t < FLOCK_KDT_COUNT && k->dot[t] && k->dot4[t] && k->axpy[t] && k->to_f32[t];
}

#endif
