/*
 * flock/base.h - the base of every flock library beside the public status
 * values (flock/status.h): building error messages, the numeric storage
 * types, the kept-neuron count, file mappings. Internal: not installed.
 */
#ifndef FLOCK_BASE_H
#define FLOCK_BASE_H

#include "flock/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* printf-style: fills `err` (when non-NULL) with `st` and the message.
 * Returns `st`, with or without `err`. */
flock_status flock_error_set(flock_error *err, flock_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in `err` with more context ("tensor 'x': ...")
 * and sets err->status to `st` (when `err` is non-NULL). Returns `st`, with
 * or without `err`: a caller forwards the failing callee's status. */
flock_status flock_error_prefix(flock_error *err, flock_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ======================================================================== */
/* Numeric storage types                                                    */
/* ======================================================================== */

/* Storage types. The quantized ones are GGML's block layouts, byte for
 * byte (formats/dequant.c documents them), so a GGUF's blocks are stored
 * as they are and the gguf package reads them: a row of n elements is
 * n / block blocks of block_bytes each, n a multiple of the block. Only
 * grows at the end (the values are stored in bundles). */
typedef enum flock_dtype {
    FLOCK_DTYPE_F32 = 0,
    FLOCK_DTYPE_F16 = 1,
    FLOCK_DTYPE_BF16 = 2,
    FLOCK_DTYPE_I32 = 3,
    FLOCK_DTYPE_U8 = 4,
    FLOCK_DTYPE_Q8_0 = 5, /* 32 elements, 34 bytes: f16 d, i8 q[32]; x = d q */
    FLOCK_DTYPE_Q4_0 = 6, /* 32 elements, 18 bytes: f16 d, 4-bit q; x = d (q - 8) */
    FLOCK_DTYPE_Q4_1 = 7, /* 32 elements, 20 bytes: f16 d, m, 4-bit q; x = d q + m */
    FLOCK_DTYPE_Q4_K = 8, /* 256 elements, 144 bytes: 8 x 32 with 6-bit scales and mins */
    FLOCK_DTYPE_Q6_K = 9, /* 256 elements, 210 bytes: 16 x 16 with 8-bit scales */
    FLOCK_DTYPE_Q5_0 = 10, /* 32 elements, 22 bytes: f16 d, 32 fifth bits, 4-bit q; x = d (q - 16) */
    FLOCK_DTYPE_COUNT
} flock_dtype;

size_t flock_dtype_size(flock_dtype t);        /* bytes per element; 0 if invalid or quantized */
const char *flock_dtype_name(flock_dtype t);   /* "f32", "f16", "q4_1", ...; "?" if invalid */
/* Parses a name of flock_dtype_name (case-insensitive). */
flock_status flock_dtype_parse(const char *s, flock_dtype *out);
bool flock_dtype_is_quantized(flock_dtype t);
/* Elements per block (1 for the plain types) and bytes per block; 0 if invalid. */
size_t flock_dtype_block(flock_dtype t);
size_t flock_dtype_block_bytes(flock_dtype t);
/* Bytes of n consecutive elements (a row, or the start of one): 0 when the
 * type is invalid or n is not a multiple of its block. */
size_t flock_dtype_row_bytes(flock_dtype t, uint64_t n);
/* Bytes of a row-major tensor (shape[n_dims - 1] contiguous, a multiple of
 * the block): 0 when invalid, when the last dimension is not a multiple of
 * the block, or on overflow. n_dims 0 is a scalar (one element). */
uint64_t flock_dtype_tensor_bytes(flock_dtype t, uint32_t n_dims, const uint64_t *shape);
/* Whether quantized data (nbytes of whole blocks of type t) holds a block
 * whose f16 scale (d, or q4_1's m / q4_k's dmin) is inf or nan: every value
 * of such a block would be wrong. Sets *block (its index) and *value (the
 * scale) when given. False for the plain types. Reads every block's scales:
 * about 2/34 of q8_0's bytes. */
bool flock_dtype_find_bad_scale(flock_dtype t, const void *data, uint64_t nbytes, uint64_t *block, float *value);
/* The GGML type number of a storage type (flock/gguf.h), or UINT32_MAX. */
uint32_t flock_dtype_ggml(flock_dtype t);

float flock_f16_to_f32(uint16_t h);
uint16_t flock_f32_to_f16(float f);   /* round to nearest even; overflow -> inf */
float flock_bf16_to_f32(uint16_t h);
uint16_t flock_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */

/* Converts n floats to `dst_type` / back to f32. From f32: f32, f16, bf16,
 * q8_0, q4_0, q4_1, q5_0 with GGML's reference rounding (n a multiple of 32), and
 * q4_k, q6_k by flock's scale search (n a multiple of 256; formats/quant.c).
 * To f32: every float and quantized type (n a multiple of
 * the block; FLOCK_E_INVALID_ARG otherwise). */
flock_status flock_convert_from_f32(flock_dtype dst_type, const float *src, void *dst, size_t n);
flock_status flock_convert_to_f32(flock_dtype src_type, const void *src, float *dst, size_t n);

/* GRIFFIN's kept-neuron count for a keep ratio: floor(keep * d_ff), at
 * least 1 and at most d_ff; 0 when keep is not > 0 (or NaN) or d_ff <= 0.
 * Computed in double with an allowance of 1e-7 * d_ff, which absorbs the
 * binary representation of decimal ratios (0.29 * 100 is 28.999999999999996
 * in double; 0.7f * 1000 is 699.99998 in float: both must give 29 and 700),
 * so that a ratio given as a float (the CUDA kernel table) or a double (the
 * runtime's options) gives the same count. A product whose true fractional
 * part exceeds 1 - 1e-7 * d_ff rounds up (for d_ff = 11008: above .9989). The one function the compiler, the code generators and
 * the runtime use (kernels are specialized on the count). */
int64_t flock_keep_count(double keep, int64_t d_ff);

/* ======================================================================== */
/* Files                                                                    */
/* ======================================================================== */

/* A read-only memory mapping of a whole file. */
typedef struct flock_file_map {
    const uint8_t *data;
    size_t size;
} flock_file_map;

flock_status flock_map_file(const char *path, flock_file_map *out, flock_error *err);
void flock_unmap_file(flock_file_map *m); /* accepts a zeroed map */

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_BASE_H */
