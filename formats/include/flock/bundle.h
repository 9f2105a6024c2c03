/* flock/bundle.h - the .flock bundle (docs/bundle-format.md): its typed
 * manifest, the writer and the reader (sections, tensors, checksums). */
#ifndef FLOCK_BUNDLE_H
#define FLOCK_BUNDLE_H

#include "flock/base.h"

#ifdef __cplusplus
extern "C" {
#endif

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
#define FLOCK_BUNDLE_MINOR 2 /* 1.1: quantized tensor dtypes (q8_0, q4_0, q4_1, q4_k, q6_k); 1.2: q5_0 */

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

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_BUNDLE_H */
