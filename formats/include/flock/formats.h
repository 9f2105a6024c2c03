/*
 * flock/formats.h - bytes in and out: status values, numeric types, GGUF,
 * safetensors / Hugging Face folders, tokenizer data and the .flock bundle.
 *
 * Everything here reads input that may be hostile: every read is bounds
 * checked, and a bad file is an error status with a message, never a crash.
 *
 * Conventions for the whole library:
 *  - functions that can fail return flock_status and, when `err` is non-NULL,
 *    fill it with a message naming what is wrong (offset, key, tensor, expected
 *    vs found); `err` may be NULL everywhere, and the status is the same with
 *    or without it;
 *  - on failure `*out` is left untouched;
 *  - every *_free / *_close accepts NULL.
 */
#ifndef FLOCK_FORMATS_H
#define FLOCK_FORMATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Status and errors                                                        */
/* ======================================================================== */

/* Only grows at the end (values are part of the ABI). */
typedef enum flock_status {
    FLOCK_OK = 0,
    FLOCK_E_INVALID_ARG, /* bad argument: NULL, out of range, unknown flag value */
    FLOCK_E_IO,          /* open, read, write or mmap failed */
    FLOCK_E_NOMEM,       /* allocation failed */
    FLOCK_E_TRUNCATED,   /* input ends before a structure it declares */
    FLOCK_E_CORRUPT,     /* a field holds an impossible value */
    FLOCK_E_CHECKSUM,    /* a checksum does not match */
    FLOCK_E_VERSION,     /* a newer, unsupported format version */
    FLOCK_E_UNSUPPORTED, /* well-formed but not supported (architecture, dtype, quant type) */
    FLOCK_E_NOT_FOUND,   /* a key, tensor or section is absent */
    FLOCK_E_TYPE,        /* a key exists but holds another type */
    FLOCK_E_RANGE,       /* beyond a limit, e.g. a prompt longer than the context */
    FLOCK_E_DEVICE,      /* GPU driver or runtime failure */
    FLOCK_E_INTERNAL,    /* a bug in flock */
    FLOCK_STATUS_COUNT
} flock_status;

/* A short constant name for a status ("truncated input", ...). Never NULL. */
const char *flock_status_str(flock_status s);

/* Detailed error, filled by the function that failed. */
typedef struct flock_error {
    flock_status status;
    char msg[512];
} flock_error;

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

typedef enum flock_dtype {
    FLOCK_DTYPE_F32 = 0,
    FLOCK_DTYPE_F16 = 1,
    FLOCK_DTYPE_BF16 = 2,
    FLOCK_DTYPE_I32 = 3,
    FLOCK_DTYPE_U8 = 4,
    FLOCK_DTYPE_COUNT
} flock_dtype;

size_t flock_dtype_size(flock_dtype t);        /* bytes per element; 0 if invalid */
const char *flock_dtype_name(flock_dtype t);   /* "f32", "f16", ...; "?" if invalid */
/* Parses "f32" / "f16" / "bf16" (case-insensitive). */
flock_status flock_dtype_parse(const char *s, flock_dtype *out);

float flock_f16_to_f32(uint16_t h);
uint16_t flock_f32_to_f16(float f);   /* round to nearest even; overflow -> inf */
float flock_bf16_to_f32(uint16_t h);
uint16_t flock_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */

/* Converts n floats to `dst_type` (f32, f16 or bf16) / back to f32. */
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

/* ======================================================================== */
/* Tokenizer data (what the bundle's tokenizer section holds)              */
/* ======================================================================== */

typedef enum flock_tok_kind {
    FLOCK_TOK_SPM = 0, /* SentencePiece-style: scores, U+2581 for spaces, <0xXX> byte fallback */
    FLOCK_TOK_BPE = 1, /* byte-level BPE (GPT-2 byte mapping) with ranked merges */
    FLOCK_TOK_KIND_COUNT
} flock_tok_kind;

/* Token types as in GGUF's tokenizer.ggml.token_type. */
enum {
    FLOCK_TOKTYPE_NORMAL = 1,
    FLOCK_TOKTYPE_UNKNOWN = 2,
    FLOCK_TOKTYPE_CONTROL = 3,
    FLOCK_TOKTYPE_USER_DEFINED = 4,
    FLOCK_TOKTYPE_UNUSED = 5,
    FLOCK_TOKTYPE_BYTE = 6,
};

typedef struct flock_tokenizer_data {
    flock_tok_kind kind;
    uint32_t n_vocab;
    char **tokens;          /* n_vocab NUL-terminated strings (as stored by the model) */
    float *scores;          /* n_vocab, or NULL */
    int32_t *token_types;   /* n_vocab, FLOCK_TOKTYPE_*; never NULL after load */
    uint32_t n_merges;
    char **merges;          /* "left right", rank = index; BPE only */
    int32_t bos_id, eos_id, unk_id, pad_id, eot_id; /* -1 when absent */
    bool add_bos, add_eos;
    bool add_space_prefix;  /* SPM: prepend a space to the text */
    char *pre_pattern;      /* BPE pre-tokenizer: PCRE2 patterns separated by '\n', applied in
                             * sequence (each splits the previous pieces); NULL for GPT-2's */
    char *chat_template;    /* Jinja source from the model, or NULL */
    char *model_name;       /* tokenizer.ggml.pre or similar, informational; may be NULL */
} flock_tokenizer_data;

/* Binary encoding for the bundle (versioned, bounds-checked on decode). */
flock_status flock_tokdata_serialize(const flock_tokenizer_data *t, uint8_t **out, size_t *out_size,
                                     flock_error *err);
flock_status flock_tokdata_deserialize(const void *data, size_t size, flock_tokenizer_data **out,
                                       flock_error *err);
void flock_tokdata_free(flock_tokenizer_data *t);
/* From GGUF's tokenizer.ggml.* keys. */
flock_status flock_tokdata_from_gguf(const flock_gguf *g, flock_tokenizer_data **out, flock_error *err);
/* From a Hugging Face folder's tokenizer.json and tokenizer_config.json. */
flock_status flock_tokdata_from_hf(const flock_hf_model *m, flock_tokenizer_data **out,
                                   flock_error *err);

/* ======================================================================== */
/* Manifest: typed key/value metadata                                       */
/* ======================================================================== */

typedef enum flock_mval_type {
    FLOCK_MVAL_INT = 0,       /* int64 */
    FLOCK_MVAL_FLOAT = 1,     /* double */
    FLOCK_MVAL_STR = 2,       /* UTF-8 string */
    FLOCK_MVAL_INT_ARR = 3,   /* int64[] */
    FLOCK_MVAL_FLOAT_ARR = 4, /* double[] */
    FLOCK_MVAL_STR_ARR = 5,   /* string[] */
    FLOCK_MVAL_TYPE_COUNT
} flock_mval_type;

typedef struct flock_manifest flock_manifest;

flock_status flock_manifest_create(flock_manifest **out);
void flock_manifest_free(flock_manifest *m);
/* Setters replace an existing key. Keys are copied. */
flock_status flock_manifest_set_int(flock_manifest *m, const char *key, int64_t v);
flock_status flock_manifest_set_float(flock_manifest *m, const char *key, double v);
flock_status flock_manifest_set_str(flock_manifest *m, const char *key, const char *v);
flock_status flock_manifest_set_int_arr(flock_manifest *m, const char *key, const int64_t *v, size_t n);
flock_status flock_manifest_set_float_arr(flock_manifest *m, const char *key, const double *v, size_t n);
flock_status flock_manifest_set_str_arr(flock_manifest *m, const char *key, const char *const *v, size_t n);

size_t flock_manifest_count(const flock_manifest *m);
const char *flock_manifest_key(const flock_manifest *m, size_t i);
flock_mval_type flock_manifest_type(const flock_manifest *m, size_t i);
/* Typed getters by key: FLOCK_E_NOT_FOUND / FLOCK_E_TYPE with a message. */
flock_status flock_manifest_get_int(const flock_manifest *m, const char *key, int64_t *out, flock_error *err);
flock_status flock_manifest_get_float(const flock_manifest *m, const char *key, double *out, flock_error *err);
flock_status flock_manifest_get_str(const flock_manifest *m, const char *key, const char **out, flock_error *err);
/* Arrays: pointer owned by the manifest. */
flock_status flock_manifest_get_int_arr(const flock_manifest *m, const char *key, const int64_t **out,
                                        size_t *n, flock_error *err);
flock_status flock_manifest_get_float_arr(const flock_manifest *m, const char *key, const double **out,
                                          size_t *n, flock_error *err);
flock_status flock_manifest_get_str_arr(const flock_manifest *m, const char *key, const char *const **out,
                                        size_t *n, flock_error *err);

/* ======================================================================== */
/* The .flock bundle (docs/bundle-format.md)                                */
/* ======================================================================== */

#define FLOCK_BUNDLE_MAJOR 1
#define FLOCK_BUNDLE_MINOR 0

typedef enum flock_section_kind {
    FLOCK_SECTION_MANIFEST = 1,
    FLOCK_SECTION_TENSOR_TABLE = 2,
    FLOCK_SECTION_TENSOR_DATA = 3,
    FLOCK_SECTION_TOKENIZER = 4,
    FLOCK_SECTION_PROGRAM = 5,
    FLOCK_SECTION_KERNELS = 6, /* name = target, e.g. "cuda:sm_90", "cpu:x86-64-v3" */
    FLOCK_SECTION_KIND_COUNT
} flock_section_kind;

typedef enum flock_compression {
    FLOCK_COMPRESS_NONE = 0,
    FLOCK_COMPRESS_ZSTD = 1,
    FLOCK_COMPRESS_COUNT
} flock_compression;

typedef struct flock_section_info {
    flock_section_kind kind;
    const char *name;       /* owned by the bundle */
    uint64_t offset;        /* from the start of the file */
    uint64_t stored_size;   /* bytes in the file */
    uint64_t raw_size;      /* bytes after decompression */
    uint32_t alignment;
    flock_compression compression;
    uint64_t checksum;      /* xxh64 of the stored bytes */
} flock_section_info;

typedef struct flock_bundle_tensor {
    const char *name;       /* owned by the bundle */
    flock_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[4];      /* row-major, shape[n_dims-1] contiguous */
    uint64_t nbytes;        /* raw bytes */
    uint64_t stored_bytes;  /* bytes in the file (compressed) */
} flock_bundle_tensor;

typedef struct flock_bundle_writer_opts {
    int zstd_level;          /* 0: tensor data stored uncompressed (mmap-able); default 3 */
    uint32_t chunk_bytes;    /* raw bytes per independently compressed chunk; default 1 MiB */
    bool byte_planes;        /* split 16-bit tensors into high/low byte planes before zstd */
    int threads;             /* compression threads; 0 = all cores */
    /* Called after each tensor is written (may be NULL). */
    void (*progress)(void *user, const char *tensor_name, uint64_t raw_bytes, uint64_t stored_bytes);
    void *progress_user;
} flock_bundle_writer_opts;

/* Defaults as documented in flock_bundle_writer_opts. */
flock_bundle_writer_opts flock_bundle_writer_default_opts(void);

typedef struct flock_bundle_writer flock_bundle_writer;

/* Starts writing `path` (written to a temporary name and renamed by finish). */
flock_status flock_bundle_writer_create(const char *path, const flock_bundle_writer_opts *opts,
                                        flock_bundle_writer **out, flock_error *err);
/* Copies the manifest; it is written by finish. */
flock_status flock_bundle_writer_set_manifest(flock_bundle_writer *w, const flock_manifest *m,
                                              flock_error *err);
/* Streams one tensor's raw bytes (row-major) to the file. Names are unique. */
flock_status flock_bundle_writer_add_tensor(flock_bundle_writer *w, const char *name, flock_dtype dtype,
                                            uint32_t n_dims, const uint64_t *shape, const void *data,
                                            size_t nbytes, flock_error *err);
/* Adds a whole section (tokenizer, program, kernels). (kind, name) is unique. */
flock_status flock_bundle_writer_add_section(flock_bundle_writer *w, flock_section_kind kind,
                                             const char *name, const void *data, size_t size,
                                             bool compress, flock_error *err);
/* Writes the tables and header and renames the file into place. */
flock_status flock_bundle_writer_finish(flock_bundle_writer *w, flock_error *err);
/* Frees; an unfinished file is removed. */
void flock_bundle_writer_free(flock_bundle_writer *w);

typedef struct flock_bundle flock_bundle;

/* Maps a bundle, verifies the header and table checksums, parses the
 * manifest and tensor table. Tensor data is verified when read. */
flock_status flock_bundle_open(const char *path, flock_bundle **out, flock_error *err);
/* Same over memory that outlives the handle. */
flock_status flock_bundle_open_memory(const void *data, size_t size, flock_bundle **out, flock_error *err);
void flock_bundle_close(flock_bundle *b);

void flock_bundle_version(const flock_bundle *b, uint32_t *major, uint32_t *minor);
uint64_t flock_bundle_file_size(const flock_bundle *b);
const flock_manifest *flock_bundle_manifest(const flock_bundle *b);

size_t flock_bundle_section_count(const flock_bundle *b);
flock_status flock_bundle_section_info(const flock_bundle *b, size_t i, flock_section_info *out);
/* Index of the section (kind, name); name NULL matches any name. -1 if absent. */
int64_t flock_bundle_find_section(const flock_bundle *b, flock_section_kind kind, const char *name);
/* Verifies and decompresses a section into malloc'd memory (caller frees). */
flock_status flock_bundle_read_section(const flock_bundle *b, size_t i, void **out, size_t *size,
                                       flock_error *err);

size_t flock_bundle_tensor_count(const flock_bundle *b);
flock_status flock_bundle_tensor_info(const flock_bundle *b, size_t i, flock_bundle_tensor *out);
/* Index of the tensor named `name`, or -1. */
int64_t flock_bundle_find_tensor(const flock_bundle *b, const char *name);
/* Verifies each chunk and decompresses the tensor into `dst` (`dst_size`
 * must be at least nbytes), with up to `threads` threads (0 = all cores). */
flock_status flock_bundle_tensor_read(const flock_bundle *b, size_t i, void *dst, size_t dst_size,
                                      int threads, flock_error *err);
/* Uncompressed bundles: *out = the tensor's bytes in place in the mapping
 * (64-byte aligned), after verifying its checksum once. FLOCK_E_UNSUPPORTED
 * when the tensor is compressed (flock_bundle_tensor_read decompresses it),
 * FLOCK_E_CHECKSUM when its bytes are damaged. */
flock_status flock_bundle_tensor_mapped(const flock_bundle *b, size_t i, const void **out, flock_error *err);

/* ======================================================================== */
/* The CUDA kernel blob: payload of a "cuda:<target>" kernels section       */
/* ======================================================================== */
/*
 * codegen writes it (flock_codegen_cuda, flock/codegen.h, which documents
 * each kernel's parameters); the runtime reads it without codegen, so the
 * reader lives here (formats/cuda_blob.c).
 *
 * Layout (little-endian; version 1.0):
 * header, 128 bytes at offset 0:
 *    0  u8[4] magic "FLKC"
 *    4  u16 major = 1 (a reader rejects another major), u16 minor = 0 (newer minors
 *       only add fields in reserved space or past the sizes below: readers accept them)
 *    8  u32 header_size (>= 128)        12 u32 image_kind (1 = CUBIN, 2 = PTX)
 *   16  u32 arch (80 = sm_80 / compute_80, 89, 90, ...)
 *   20  u32 n_kernels                   24 u32 entry_size (>= 64)
 *   28  u32 flags (0)
 *   32  u64 table_offset                40 u64 strings_offset
 *   48  u64 strings_size                56 u64 image_offset
 *   64  u64 image_size
 *   72  i32 d_model, d_ff, n_head, n_kv_head, head_dim, vocab, rope_dim  (72..99)
 *  100  u8 wtype (flock_dtype), u8 kv_type, u8 act (flock_act), u8 gated
 *  104  u8 rope_style, u8[3] zero
 *  108  f32 attn_scale (as given: 0 = default), 112 f32 attn_softcap
 *  116  u32 n_keep, 120 u64 reserved (0)
 * kernel table: n_kernels entries of entry_size bytes at table_offset:
 *    0  u32 name_offset (into the strings), 4 u32 name_len (bytes, without the NUL
 *       that must follow), 8 u32 kind, 12 u32 spec, 16 u32 spec2, 20 f32 keep,
 *   24  u32 block[3], 36 u32 grid[3], 48 u32 dyn_smem, 52..63 zero
 * strings: NUL-terminated names. image: the CUBIN (ELF) or the PTX text
 * (NUL-terminated), 16-byte aligned in the blob.
 * Every offset and size is checked against the blob's size before use;
 * a reader rejects a name without its NUL, an unknown kernel kind or an
 * enum out of range.
 */
#define FLOCK_CUDA_BLOB_MAJOR 1
#define FLOCK_CUDA_BLOB_MINOR 0
#define FLOCK_CUDA_BLOB_HEADER_SIZE 128
#define FLOCK_CUDA_BLOB_ENTRY_SIZE 64
#define FLOCK_CUDA_IMAGE_CUBIN 1
#define FLOCK_CUDA_IMAGE_PTX 2
/* Limits of the act and rope_style bytes: flock_act and flock_rope_style
 * (flock/ir.h, which formats does not see) have this many values; codegen
 * asserts that they agree (codegen/cuda_blob.c). */
#define FLOCK_CUDA_BLOB_ACT_COUNT 5
#define FLOCK_CUDA_BLOB_ROPE_STYLE_COUNT 2

/* Kernel kinds; the blob's table stores these numbers (only grows at the
 * end). Parameters and grids of each kind: flock/codegen.h. */
typedef enum flock_cuda_kernel_kind {
    FLOCK_CUK_EMBED = 0,
    FLOCK_CUK_RMSNORM,
    FLOCK_CUK_ROPE,
    FLOCK_CUK_KV_STORE,
    FLOCK_CUK_ATTN_PARTIAL,
    FLOCK_CUK_ATTN_COMBINE,
    FLOCK_CUK_ADD,
    FLOCK_CUK_GEMV,
    FLOCK_CUK_FFN_GATHER,
    FLOCK_CUK_FFN_DOWN,
    FLOCK_CUK_FFN_DOWN_REDUCE,
    FLOCK_CUK_GRIFFIN_ROWNORM,
    FLOCK_CUK_GRIFFIN_COLSUM,
    FLOCK_CUK_GRIFFIN_RANK,
    FLOCK_CUK_GRIFFIN_COMPACT,
    FLOCK_CUK_GEMM,
    FLOCK_CUK_FFN_UP_PREFILL,
    FLOCK_CUK_FFN_DOWN_PREFILL,
    FLOCK_CUK_LAYERNORM,
    FLOCK_CUK_POS_EMBED,
    FLOCK_CUK_ROPE_KV_STORE,
    FLOCK_CUK_KIND_COUNT
} flock_cuda_kernel_kind;

/* "ffn_gather", ...; "?" if out of range. */
const char *flock_cuda_kernel_kind_name(flock_cuda_kernel_kind k);

/* One row of the kernel table. */
typedef struct flock_cuda_kernel_info {
    const char *name;     /* entry point (extern "C"); owned by the blob / list */
    flock_cuda_kernel_kind kind;
    uint32_t spec;        /* per kind (keep count, N, group); 0 if none */
    uint32_t spec2;       /* per kind (K, split); 0 if none */
    float keep;           /* keep ratio of FF/GRIFFIN kernels specialized on one; 0 otherwise */
    uint32_t block[3];    /* launch block dims */
    uint32_t grid[3];     /* grid dims fixed at compile time; 0 in a slot that depends on the
                             step (T, tokens, n_split) */
    uint32_t dyn_smem;    /* dynamic shared memory bytes (the kernels use static shared memory: 0) */
} flock_cuda_kernel_info;

/* The model facts a blob was specialized on (header bytes 72..119). */
typedef struct flock_cuda_blob_model {
    int32_t d_model, d_ff, n_head, n_kv_head, head_dim, vocab, rope_dim;
    flock_dtype wtype;    /* F16 or BF16 for a blob codegen wrote (the reader checks the range only) */
    flock_dtype kv_type;
    uint8_t act;          /* flock_act (flock/ir.h) */
    uint8_t gated;        /* 0 or 1 */
    uint8_t rope_style;   /* flock_rope_style (flock/ir.h) */
    float attn_scale;     /* 0 = 1/sqrt(head_dim) */
    float attn_softcap;   /* 0 = none */
    uint32_t n_keep;      /* keep ratios: in the kernel table's keep column */
} flock_cuda_blob_model;

typedef struct flock_cuda_blob {
    uint16_t major, minor;
    uint32_t image_kind, arch;
    flock_cuda_blob_model model;
    size_t n_kernels;
    const uint8_t *table;           /* points into the blob */
    size_t entry_size;
    const char *strings;
    size_t strings_size;
    const void *image;              /* points into the blob */
    size_t image_size;
} flock_cuda_blob;

/* Parses and validates a blob in place (`data` must outlive *out); every
 * table entry is checked now, so flock_cuda_blob_kernel cannot fail later
 * for i < n_kernels. On failure *out is untouched. */
flock_status flock_cuda_blob_parse(const void *data, size_t size, flock_cuda_blob *out, flock_error *err);
/* Kernel i of a parsed blob (i < n_kernels); the name points into the blob. */
flock_status flock_cuda_blob_kernel(const flock_cuda_blob *b, size_t i, flock_cuda_kernel_info *out,
                                    flock_error *err);
/* Index of the kernel named `name`, or -1. */
int64_t flock_cuda_blob_find(const flock_cuda_blob *b, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_FORMATS_H */
