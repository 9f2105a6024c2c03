/* flock/gguf.h - the GGUF reader (versions 2 and 3): metadata of every type,
 * tensors, dequantization to f32. Hostile input is an error, never a crash. */
#ifndef FLOCK_GGUF_H
#define FLOCK_GGUF_H

#include "flock/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* GGUF (versions 2 and 3)                                                  */
/* ======================================================================== */

typedef enum flock_gguf_type {
    FLOCK_GGUF_UINT8 = 0,
    FLOCK_GGUF_INT8 = 1,
    FLOCK_GGUF_UINT16 = 2,
    FLOCK_GGUF_INT16 = 3,
    FLOCK_GGUF_UINT32 = 4,
    FLOCK_GGUF_INT32 = 5,
    FLOCK_GGUF_FLOAT32 = 6,
    FLOCK_GGUF_BOOL = 7,
    FLOCK_GGUF_STRING = 8,
    FLOCK_GGUF_ARRAY = 9,
    FLOCK_GGUF_UINT64 = 10,
    FLOCK_GGUF_INT64 = 11,
    FLOCK_GGUF_FLOAT64 = 12,
    FLOCK_GGUF_TYPE_COUNT
} flock_gguf_type;

/* ggml tensor types, numbered as in ggml. */
typedef enum flock_ggml_type {
    FLOCK_GGML_F32 = 0,
    FLOCK_GGML_F16 = 1,
    FLOCK_GGML_Q4_0 = 2,
    FLOCK_GGML_Q4_1 = 3,
    FLOCK_GGML_Q5_0 = 6,
    FLOCK_GGML_Q5_1 = 7,
    FLOCK_GGML_Q8_0 = 8,
    FLOCK_GGML_Q8_1 = 9,
    FLOCK_GGML_Q2_K = 10,
    FLOCK_GGML_Q3_K = 11,
    FLOCK_GGML_Q4_K = 12,
    FLOCK_GGML_Q5_K = 13,
    FLOCK_GGML_Q6_K = 14,
    FLOCK_GGML_Q8_K = 15,
    FLOCK_GGML_BF16 = 30,
    FLOCK_GGML_TYPE_COUNT = 40
} flock_ggml_type;

/* "q4_K", "f16", ...; "unknown" for types flock does not know. */
const char *flock_ggml_type_name(uint32_t t);
/* Elements per block and bytes per block; both 0 for unknown types. */
uint32_t flock_ggml_block_elems(uint32_t t);
uint32_t flock_ggml_block_bytes(uint32_t t);
/* Whether flock_dequantize supports the type. */
bool flock_ggml_can_dequantize(uint32_t t);

/* Dequantizes n elements (a multiple of the block size) from `src`
 * (`src_size` bytes available) into `dst`. */
flock_status flock_dequantize(uint32_t type, const void *src, size_t src_size, float *dst,
                              uint64_t n, flock_error *err);

typedef struct flock_gguf flock_gguf;

#define FLOCK_GGUF_MAX_DIMS 4

typedef struct flock_gguf_tensor {
    const char *name;      /* NUL-terminated, owned by the file handle */
    uint32_t n_dims;
    uint64_t ne[FLOCK_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused = 1 */
    uint32_t type;         /* flock_ggml_type */
    uint64_t offset;       /* from the start of the data section */
    uint64_t nbytes;
    const void *data;      /* points into the mapping */
} flock_gguf_tensor;

/* Maps and parses a GGUF file. */
flock_status flock_gguf_open(const char *path, flock_gguf **out, flock_error *err);
/* Parses a GGUF image in memory; `data` must outlive the handle (not copied). */
flock_status flock_gguf_open_memory(const void *data, size_t size, flock_gguf **out,
                                    flock_error *err);
void flock_gguf_free(flock_gguf *g);

uint32_t flock_gguf_version(const flock_gguf *g);
uint64_t flock_gguf_alignment(const flock_gguf *g);

/* Metadata. Index-based access and typed getters by key. */
uint64_t flock_gguf_kv_count(const flock_gguf *g);
const char *flock_gguf_kv_key(const flock_gguf *g, uint64_t i);
flock_gguf_type flock_gguf_kv_type(const flock_gguf *g, uint64_t i);
/* Index of `key`, or -1. */
int64_t flock_gguf_find_key(const flock_gguf *g, const char *key);

/* Any integer type (and bool) converts to int64 when it fits. */
flock_status flock_gguf_get_int(const flock_gguf *g, const char *key, int64_t *out, flock_error *err);
/* FLOAT32/FLOAT64 and integers. */
flock_status flock_gguf_get_float(const flock_gguf *g, const char *key, double *out, flock_error *err);
flock_status flock_gguf_get_bool(const flock_gguf *g, const char *key, bool *out, flock_error *err);
/* String value (not NUL-terminated in the file: use *len). */
flock_status flock_gguf_get_str(const flock_gguf *g, const char *key, const char **s, size_t *len,
                                flock_error *err);
/* Array: element type and count. For numeric arrays *data points at the
 * packed little-endian elements; for string arrays *data is NULL (use
 * flock_gguf_get_arr_str). */
flock_status flock_gguf_get_arr(const flock_gguf *g, const char *key, flock_gguf_type *elem_type,
                                uint64_t *n, const void **data, flock_error *err);
flock_status flock_gguf_get_arr_str(const flock_gguf *g, const char *key, uint64_t i,
                                    const char **s, size_t *len, flock_error *err);

uint64_t flock_gguf_tensor_count(const flock_gguf *g);
flock_status flock_gguf_tensor_info(const flock_gguf *g, uint64_t i, flock_gguf_tensor *out);
/* Index of the tensor named `name`, or -1. */
int64_t flock_gguf_find_tensor(const flock_gguf *g, const char *name);
/* Dequantizes a whole tensor to f32 into `dst` (capacity `dst_count` floats). */
flock_status flock_gguf_tensor_to_f32(const flock_gguf *g, uint64_t i, float *dst,
                                      uint64_t dst_count, flock_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_GGUF_H */
