/* The CUDA kernel blob reader: the payload of a bundle's "cuda:<target>"
 * kernels section (layout: flock/formats.h, version 1.0). Pure, bounds-checked
 * C so that the runtime can read blobs without codegen; the writer is
 * codegen/cuda_blob.c. */
#include "flock/formats.h"
#include "reader.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t blob_magic[4] = {'F', 'L', 'K', 'C'};

static const char *const kind_names[] = {
    [FLOCK_CUK_EMBED] = "embed",
    [FLOCK_CUK_RMSNORM] = "rmsnorm",
    [FLOCK_CUK_ROPE] = "rope",
    [FLOCK_CUK_KV_STORE] = "kv_store",
    [FLOCK_CUK_ATTN_PARTIAL] = "attn_partial",
    [FLOCK_CUK_ATTN_COMBINE] = "attn_combine",
    [FLOCK_CUK_ADD] = "add",
    [FLOCK_CUK_GEMV] = "gemv",
    [FLOCK_CUK_FFN_GATHER] = "ffn_gather",
    [FLOCK_CUK_FFN_DOWN] = "ffn_down",
    [FLOCK_CUK_FFN_DOWN_REDUCE] = "ffn_down_reduce",
    [FLOCK_CUK_GRIFFIN_ROWNORM] = "griffin_rownorm",
    [FLOCK_CUK_GRIFFIN_COLSUM] = "griffin_colsum",
    [FLOCK_CUK_GRIFFIN_RANK] = "griffin_rank",
    [FLOCK_CUK_GRIFFIN_COMPACT] = "griffin_compact",
    [FLOCK_CUK_GEMM] = "gemm",
    [FLOCK_CUK_FFN_UP_PREFILL] = "ffn_up_prefill",
    [FLOCK_CUK_FFN_DOWN_PREFILL] = "ffn_down_prefill",
    [FLOCK_CUK_LAYERNORM] = "layernorm",
    [FLOCK_CUK_POS_EMBED] = "pos_embed",
    [FLOCK_CUK_ROPE_KV_STORE] = "rope_kv_store",
    [FLOCK_CUK_QGEMV] = "qgemv",
    [FLOCK_CUK_QFFN_GATHER] = "qffn_gather",
    [FLOCK_CUK_QFFN_DOWN] = "qffn_down",
    [FLOCK_CUK_DEQUANT] = "dequant",
    [FLOCK_CUK_QEMBED] = "qembed",
    [FLOCK_CUK_QPOS_EMBED] = "qpos_embed",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == FLOCK_CUK_KIND_COUNT, "kind_names");

const char *flock_cuda_kernel_kind_name(flock_cuda_kernel_kind k)
{
    return (unsigned)k < FLOCK_CUK_KIND_COUNT ? kind_names[k] : "?";
}

/* A section [off, off+len) of a blob of `size` bytes, or false. */
static bool span_ok(uint64_t off, uint64_t len, size_t size)
{
    return off <= size && len <= size - off;
}

flock_status flock_cuda_blob_parse(const void *data, size_t size, flock_cuda_blob *out, flock_error *err)
{
    if (!data || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "kernel blob: NULL argument");
    flock_reader r = flock_reader_init(data, size);
    uint8_t magic[4];
    uint16_t major, minor;
    uint32_t header_size, image_kind, arch, n_kernels, entry_size, flags;
    uint64_t table_off, strings_off, strings_size, image_off, image_size;
    if (!flock_rd_bytes(&r, magic, 4) || !flock_rd_u16(&r, &major) || !flock_rd_u16(&r, &minor))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "kernel blob: %zu bytes, too short for the header", size);
    if (memcmp(magic, blob_magic, 4))
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: bad magic at offset 0");
    if (major != FLOCK_CUDA_BLOB_MAJOR)
        return flock_error_set(err, FLOCK_E_VERSION, "kernel blob: version %u.%u, this reader knows %d.x",
                               (unsigned)major, (unsigned)minor, FLOCK_CUDA_BLOB_MAJOR);
    if (!flock_rd_u32(&r, &header_size) || !flock_rd_u32(&r, &image_kind) || !flock_rd_u32(&r, &arch) ||
        !flock_rd_u32(&r, &n_kernels) || !flock_rd_u32(&r, &entry_size) || !flock_rd_u32(&r, &flags) ||
        !flock_rd_u64(&r, &table_off) || !flock_rd_u64(&r, &strings_off) || !flock_rd_u64(&r, &strings_size) ||
        !flock_rd_u64(&r, &image_off) || !flock_rd_u64(&r, &image_size))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "kernel blob: header truncated at offset %zu", r.off);
    if (header_size < FLOCK_CUDA_BLOB_HEADER_SIZE || header_size > size)
        return flock_error_set(err, header_size > size ? FLOCK_E_TRUNCATED : FLOCK_E_CORRUPT,
                               "kernel blob: header_size %u (blob %zu bytes, minimum %d)", (unsigned)header_size,
                               size, FLOCK_CUDA_BLOB_HEADER_SIZE);
    if (image_kind != FLOCK_CUDA_IMAGE_CUBIN && image_kind != FLOCK_CUDA_IMAGE_PTX)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: image_kind %u at offset 12", (unsigned)image_kind);
    if (entry_size < FLOCK_CUDA_BLOB_ENTRY_SIZE || entry_size > 4096)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: entry_size %u at offset 24", (unsigned)entry_size);
    /* Counts are limited by the bytes present. */
    if (!span_ok(table_off, (uint64_t)n_kernels * entry_size, size))
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "kernel blob: table of %u entries at offset %llu overruns %zu bytes",
                               (unsigned)n_kernels, (unsigned long long)table_off, size);
    if (!span_ok(strings_off, strings_size, size))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "kernel blob: strings [%llu, +%llu) overrun %zu bytes",
                               (unsigned long long)strings_off, (unsigned long long)strings_size, size);
    if (!span_ok(image_off, image_size, size) || image_size == 0)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "kernel blob: image [%llu, +%llu) overruns %zu bytes",
                               (unsigned long long)image_off, (unsigned long long)image_size, size);
    const uint8_t *b = data;
    if (image_kind == FLOCK_CUDA_IMAGE_PTX && b[image_off + image_size - 1] != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: PTX image is not NUL-terminated");

    flock_cuda_blob o;
    memset(&o, 0, sizeof o);
    o.major = major;
    o.minor = minor;
    o.image_kind = image_kind;
    o.arch = arch;
    flock_reader mr = flock_reader_init(b + 72, 48);
    uint32_t dims[7];
    for (int i = 0; i < 7; i++)
        flock_rd_u32(&mr, &dims[i]); /* within the 128 checked header bytes */
    o.model.d_model = (int32_t)dims[0];
    o.model.d_ff = (int32_t)dims[1];
    o.model.n_head = (int32_t)dims[2];
    o.model.n_kv_head = (int32_t)dims[3];
    o.model.head_dim = (int32_t)dims[4];
    o.model.vocab = (int32_t)dims[5];
    o.model.rope_dim = (int32_t)dims[6];
    if (b[100] >= FLOCK_DTYPE_COUNT || b[101] >= FLOCK_DTYPE_COUNT || b[102] >= FLOCK_CUDA_BLOB_ACT_COUNT ||
        b[103] > 1 || b[104] >= FLOCK_CUDA_BLOB_ROPE_STYLE_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: model enum out of range at offsets 100..104");
    o.model.wtype = (flock_dtype)b[100];
    o.model.kv_type = (flock_dtype)b[101];
    o.model.act = b[102];
    o.model.gated = b[103];
    o.model.rope_style = b[104];
    flock_reader fr = flock_reader_init(b + 108, 12);
    flock_rd_f32(&fr, &o.model.attn_scale);
    flock_rd_f32(&fr, &o.model.attn_softcap);
    flock_rd_u32(&fr, &o.model.n_keep);
    o.n_kernels = n_kernels;
    o.table = b + table_off;
    o.entry_size = entry_size;
    o.strings = (const char *)b + strings_off;
    o.strings_size = (size_t)strings_size;
    o.image = b + image_off;
    o.image_size = (size_t)image_size;
    /* Validate every entry now, so that flock_cuda_blob_kernel cannot fail later on good input. */
    for (size_t i = 0; i < o.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_status st = flock_cuda_blob_kernel(&o, i, &k, err);
        if (st)
            return st;
    }
    *out = o;
    return FLOCK_OK;
}

flock_status flock_cuda_blob_kernel(const flock_cuda_blob *b, size_t i, flock_cuda_kernel_info *out,
                                    flock_error *err)
{
    if (!b || !out || i >= b->n_kernels)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "kernel blob: no kernel %zu", i);
    flock_reader r = flock_reader_init(b->table + i * b->entry_size, FLOCK_CUDA_BLOB_ENTRY_SIZE);
    uint32_t name_off = 0, name_len = 0, kind = 0, spec = 0, spec2 = 0, block[3] = {0}, grid[3] = {0}, smem = 0;
    float keep = 0;
    /* The entry lies within the table span that parse checked. */
    bool ok = flock_rd_u32(&r, &name_off) && flock_rd_u32(&r, &name_len) && flock_rd_u32(&r, &kind) &&
              flock_rd_u32(&r, &spec) && flock_rd_u32(&r, &spec2) && flock_rd_f32(&r, &keep);
    for (int j = 0; j < 3; j++)
        ok = ok && flock_rd_u32(&r, &block[j]);
    for (int j = 0; j < 3; j++)
        ok = ok && flock_rd_u32(&r, &grid[j]);
    ok = ok && flock_rd_u32(&r, &smem);
    if (!ok)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "kernel blob: entry %zu truncated", i);
    if (!span_ok(name_off, (uint64_t)name_len + 1, b->strings_size) || b->strings[name_off + name_len] != 0 ||
        name_len == 0 || memchr(b->strings + name_off, 0, name_len))
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: entry %zu: name [%u, +%u] is not a string in "
                               "the %zu-byte string table", i, (unsigned)name_off, (unsigned)name_len,
                               b->strings_size);
    if (kind >= FLOCK_CUK_KIND_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: entry %zu ('%s'): kind %u out of range", i,
                               b->strings + name_off, (unsigned)kind);
    if (block[0] == 0 || block[1] == 0 || block[2] == 0 || (uint64_t)block[0] * block[1] * block[2] > 1024 ||
        !(keep >= 0.0f && keep <= 1.0f))
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: entry %zu ('%s'): block %ux%ux%u keep %g", i,
                               b->strings + name_off, (unsigned)block[0], (unsigned)block[1], (unsigned)block[2],
                               (double)keep);
    out->name = b->strings + name_off;
    out->kind = (flock_cuda_kernel_kind)kind;
    out->spec = spec;
    out->spec2 = spec2;
    out->keep = keep;
    memcpy(out->block, block, sizeof block);
    memcpy(out->grid, grid, sizeof grid);
    out->dyn_smem = smem;
    return FLOCK_OK;
}

int64_t flock_cuda_blob_find(const flock_cuda_blob *b, const char *name)
{
    if (!b || !name)
        return -1;
    for (size_t i = 0; i < b->n_kernels; i++) {
        flock_cuda_kernel_info k;
        if (flock_cuda_blob_kernel(b, i, &k, NULL) == FLOCK_OK && strcmp(k.name, name) == 0)
            return (int64_t)i;
    }
    return -1;
}
