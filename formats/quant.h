/* Private: quantization of f32 rows into GGML's block layouts (quant.c). */
#ifndef FLOCK_FORMATS_QUANT_H
#define FLOCK_FORMATS_QUANT_H

#include "flock/base.h"

/* n floats into blocks of `t`: q8_0, q4_0, q4_1 (n a multiple of 32),
 * rounding as GGML's reference quantizers do (quantize_row_*_ref), so the
 * bytes equal what llama.cpp would write; q4_k, q6_k (n a multiple of 256)
 * by a weighted least-squares scale search (not byte-equal to llama.cpp,
 * of similar error). FLOCK_E_INVALID_ARG for another type or a length that
 * is not a multiple of the block, FLOCK_E_CORRUPT for a non-finite input
 * (it would make a NaN scale). */
flock_status flock_quantize_row(flock_dtype t, const float *x, void *dst, size_t n);

#endif
