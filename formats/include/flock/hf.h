/* flock/hf.h - safetensors files and Hugging Face model folders
 * (config.json, sharded weights, the tokenizer's JSON). */
#ifndef FLOCK_HF_H
#define FLOCK_HF_H

#include "flock/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* safetensors and Hugging Face model folders                               */
/* ======================================================================== */

#define FLOCK_ST_MAX_DIMS 8

typedef struct flock_st_tensor {
    const char *name;  /* owned by the handle */
    flock_dtype dtype; /* F32, F16 or BF16 (other dtypes are FLOCK_E_UNSUPPORTED at open) */
    uint32_t n_dims;
    uint64_t shape[FLOCK_ST_MAX_DIMS]; /* row-major, shape[n_dims-1] contiguous */
    const void *data;  /* points into the mapping */
    uint64_t nbytes;
} flock_st_tensor;

typedef struct flock_safetensors flock_safetensors;

/* One .safetensors image in memory (`data` must outlive the handle). */
flock_status flock_safetensors_open_memory(const void *data, size_t size, flock_safetensors **out,
                                           flock_error *err);
flock_status flock_safetensors_open(const char *path, flock_safetensors **out, flock_error *err);
void flock_safetensors_free(flock_safetensors *st);
uint64_t flock_safetensors_count(const flock_safetensors *st);
flock_status flock_safetensors_tensor(const flock_safetensors *st, uint64_t i, flock_st_tensor *out);

/* A Hugging Face folder: config.json, model.safetensors or the shards named by
 * model.safetensors.index.json, tokenizer.json, tokenizer_config.json. */
typedef struct flock_hf_model flock_hf_model;

flock_status flock_hf_open(const char *dir, flock_hf_model **out, flock_error *err);
void flock_hf_free(flock_hf_model *m);

uint64_t flock_hf_tensor_count(const flock_hf_model *m);
flock_status flock_hf_tensor(const flock_hf_model *m, uint64_t i, flock_st_tensor *out);
/* Index of the tensor named `name`, or -1. */
int64_t flock_hf_find_tensor(const flock_hf_model *m, const char *name);

/* config.json values by dotted path ("rope_scaling.factor"). A JSON null or
 * an absent key is FLOCK_E_NOT_FOUND; a value of another type FLOCK_E_TYPE. */
flock_status flock_hf_config_int(const flock_hf_model *m, const char *path, int64_t *out, flock_error *err);
flock_status flock_hf_config_float(const flock_hf_model *m, const char *path, double *out, flock_error *err);
flock_status flock_hf_config_bool(const flock_hf_model *m, const char *path, bool *out, flock_error *err);
/* The string is owned by the handle. */
flock_status flock_hf_config_str(const flock_hf_model *m, const char *path, const char **out, flock_error *err);
/* Arrays: length, then elements (strings, numbers). */
flock_status flock_hf_config_len(const flock_hf_model *m, const char *path, uint64_t *n, flock_error *err);
flock_status flock_hf_config_str_at(const flock_hf_model *m, const char *path, uint64_t i,
                                    const char **out, flock_error *err);
flock_status flock_hf_config_float_at(const flock_hf_model *m, const char *path, uint64_t i,
                                      double *out, flock_error *err);

/* Raw JSON text of tokenizer.json / tokenizer_config.json (NULL, 0 if absent). */
const char *flock_hf_tokenizer_json(const flock_hf_model *m, size_t *len);
const char *flock_hf_tokenizer_config_json(const flock_hf_model *m, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_HF_H */
