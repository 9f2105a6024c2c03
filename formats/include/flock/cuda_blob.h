/* flock/cuda_blob.h - the CUDA kernel blob, payload of a "cuda:<target>"
 * kernels section: its layout, parser and lookup. */
#ifndef FLOCK_CUDA_BLOB_H
#define FLOCK_CUDA_BLOB_H

#include "flock/base.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    FLOCK_CUK_QGEMV,        /* quantized matrices: the dtype is in the name */
    FLOCK_CUK_QFFN_GATHER,
    FLOCK_CUK_QFFN_DOWN,
    FLOCK_CUK_DEQUANT,
    FLOCK_CUK_QEMBED,
    FLOCK_CUK_QPOS_EMBED,
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
#endif /* FLOCK_CUDA_BLOB_H */
