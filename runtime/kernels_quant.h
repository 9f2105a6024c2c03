/* Private: the kernels over quantized weight rows (q8_0, q4_0, q4_1, q5_0,
 * q4_k, q6_k: GGML's block layouts, formats/dequant.c) for the kernel tables of
 * kernels.h. Activations stay f32; a row of n elements is n / block blocks.
 * The scalar versions dequantize one block at a time and are the reference
 * the SIMD ones are tested against (tests/test_runtime.c). */
#ifndef FLOCK_RUNTIME_KERNELS_QUANT_H
#define FLOCK_RUNTIME_KERNELS_QUANT_H

#include "flock/base.h"
#include "kquant.h" /* formats/: flock_kquant_scales */

#include <stddef.h>
#include <stdint.h>

/* One table's entries per quantized dtype, as kernels.h's fields. */
#define FLOCK_QUANT_KERNELS(prefix, T)                                                                      \
    float prefix##_dot_##T(const void *w, const float *x, size_t n);                                        \
    void prefix##_dot4_##T(const void *w, size_t stride, const float *x, size_t n, float *out);            \
    void prefix##_axpy_##T(float a, const void *w, float *y, size_t n);                                     \
    void prefix##_to_f32_##T(const void *w, float *dst, size_t n);

FLOCK_QUANT_KERNELS(flock_qs, q8_0)
FLOCK_QUANT_KERNELS(flock_qs, q4_0)
FLOCK_QUANT_KERNELS(flock_qs, q4_1)
FLOCK_QUANT_KERNELS(flock_qs, q4_k)
FLOCK_QUANT_KERNELS(flock_qs, q6_k)
FLOCK_QUANT_KERNELS(flock_qs, q5_0)
/* AVX2: the 32-element types; the k-quants' float-activation kernels use
 * the scalar block decode with an AVX2 dot over each decoded block (their
 * int8-activation dotq below is integer, as the 32-element types'). */
FLOCK_QUANT_KERNELS(flock_qa, q8_0)
FLOCK_QUANT_KERNELS(flock_qa, q4_0)
FLOCK_QUANT_KERNELS(flock_qa, q4_1)
FLOCK_QUANT_KERNELS(flock_qa, q4_k)
FLOCK_QUANT_KERNELS(flock_qa, q6_k)
FLOCK_QUANT_KERNELS(flock_qa, q5_0)

/* int8 activations (kernels.h, flock_q8x): x into blocks (scalar; the SIMD
 * tables have their own, bitwise the same), and the integer dot products of every quantized type (a k-quant
 * block of 256 against eight x blocks of 32: q4_k's sub-blocks of 32 take
 * one x block each, q6_k's pairs of 16-element sub-blocks one). */
struct flock_q8x;
void flock_q_quant_x(const float *x, struct flock_q8x *xq, size_t n);
void flock_qa_quant_x(const float *x, struct flock_q8x *xq, size_t n); /* AVX2, bitwise the scalar one */
float flock_qs_dotq_q8_0(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qs_dotq_q4_0(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qs_dotq_q4_1(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qs_dotq_q5_0(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qs_dotq_q4_k(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qs_dotq_q6_k(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qa_dotq_q8_0(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qa_dotq_q4_0(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qa_dotq_q4_1(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qa_dotq_q5_0(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qa_dotq_q4_k(const void *w, const struct flock_q8x *xq, size_t n);
float flock_qa_dotq_q6_k(const void *w, const struct flock_q8x *xq, size_t n);
/* Four rows into one y (kernels.h, axpy4): bitwise four axpy calls in order. */
void flock_qs_axpy4_q8_0(const float *a, const void *const *w, float *y, size_t n);
void flock_qs_axpy4_q4_0(const float *a, const void *const *w, float *y, size_t n);
void flock_qs_axpy4_q4_1(const float *a, const void *const *w, float *y, size_t n);
void flock_qs_axpy4_q5_0(const float *a, const void *const *w, float *y, size_t n);
void flock_qa_axpy4_q8_0(const float *a, const void *const *w, float *y, size_t n);
void flock_qa_axpy4_q4_0(const float *a, const void *const *w, float *y, size_t n);
void flock_qa_axpy4_q4_1(const float *a, const void *const *w, float *y, size_t n);
void flock_qa_axpy4_q5_0(const float *a, const void *const *w, float *y, size_t n);
/* Four rows (kernels.h, dotq4); each row's result is its dotq's, bitwise. */
void flock_qs_dotq4_q8_0(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qs_dotq4_q4_0(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qs_dotq4_q4_1(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qs_dotq4_q5_0(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qs_dotq4_q4_k(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qs_dotq4_q6_k(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qa_dotq4_q4_0(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qa_dotq4_q4_1(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);
void flock_qa_dotq4_q5_0(const void *const *w, const struct flock_q8x *xq, size_t n, float *out);

/* Decodes block b of a row of type t into y[flock_dtype_block(t)]. */
void flock_q_block_to_f32(flock_dtype t, const void *row, size_t b, float *y);

#endif
