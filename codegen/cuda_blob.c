/* The CUDA kernel blob: writer and bounds-checked reader. The layout is
 * documented in flock/codegen.h (version 1.0). */
#include "cuda_private.h"
#include "reader.h"

#include <stdlib.h>
#include <string.h>

#define HEADER_SIZE 128
#define ENTRY_SIZE 64
static const uint8_t blob_magic[4] = {'F', 'L', 'K', 'C'};

static size_t align16(size_t v)
{
    return (v + 15) & ~(size_t)15;
}

static void wr_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    flock_wr_u32(p, u);
}

flock_status flock_cuda_blob_pack(const flock_codegen_model *m, const flock_cuda_kernel_list *list,
                                  uint32_t arch, uint32_t image_kind, const void *image, size_t image_size,
                                  uint8_t **blob, size_t *size, flock_error *err)
{
    if (image_kind != FLOCK_CUDA_IMAGE_CUBIN && image_kind != FLOCK_CUDA_IMAGE_PTX)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "kernel blob: image kind %u", (unsigned)image_kind);
    if (!image || !image_size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "kernel blob: empty image");
    size_t strings_size = 0;
    for (size_t i = 0; i < list->n; i++)
        strings_size += strlen(list->defs[i].name) + 1;
    const size_t table_off = HEADER_SIZE;
    const size_t strings_off = table_off + list->n * ENTRY_SIZE;
    const size_t image_off = align16(strings_off + strings_size);
    const size_t total = image_off + image_size;
    uint8_t *b = calloc(1, total);
    if (!b)
        return flock_error_set(err, FLOCK_E_NOMEM, "kernel blob: out of memory (%zu bytes)", total);

    memcpy(b, blob_magic, 4);
    flock_wr_u16(b + 4, FLOCK_CUDA_BLOB_MAJOR);
    flock_wr_u16(b + 6, FLOCK_CUDA_BLOB_MINOR);
    flock_wr_u32(b + 8, HEADER_SIZE);
    flock_wr_u32(b + 12, image_kind);
    flock_wr_u32(b + 16, arch);
    flock_wr_u32(b + 20, (uint32_t)list->n);
    flock_wr_u32(b + 24, ENTRY_SIZE);
    flock_wr_u64(b + 32, table_off);
    flock_wr_u64(b + 40, strings_off);
    flock_wr_u64(b + 48, strings_size);
    flock_wr_u64(b + 56, image_off);
    flock_wr_u64(b + 64, image_size);
    const int32_t dims[7] = {m->d_model, m->d_ff, m->n_head, m->n_kv_head, m->head_dim, m->vocab, m->rope_dim};
    for (int i = 0; i < 7; i++)
        flock_wr_u32(b + 72 + 4 * i, (uint32_t)dims[i]);
    b[100] = (uint8_t)m->wtype;
    b[101] = (uint8_t)m->kv_type;
    b[102] = (uint8_t)m->act;
    b[103] = m->gated;
    b[104] = (uint8_t)m->rope_style;
    wr_f32(b + 108, m->attn_scale);
    wr_f32(b + 112, m->attn_softcap);
    flock_wr_u32(b + 116, m->n_keep);

    size_t soff = 0;
    for (size_t i = 0; i < list->n; i++) {
        const flock_cuda_kernel_info *k = &list->defs[i].info;
        uint8_t *e = b + table_off + i * ENTRY_SIZE;
        const size_t nl = strlen(list->defs[i].name);
        flock_wr_u32(e + 0, (uint32_t)soff);
        flock_wr_u32(e + 4, (uint32_t)nl);
        flock_wr_u32(e + 8, (uint32_t)k->kind);
        flock_wr_u32(e + 12, k->spec);
        flock_wr_u32(e + 16, k->spec2);
        wr_f32(e + 20, k->keep);
        for (int j = 0; j < 3; j++) {
            flock_wr_u32(e + 24 + 4 * j, k->block[j]);
            flock_wr_u32(e + 36 + 4 * j, k->grid[j]);
        }
        flock_wr_u32(e + 48, k->dyn_smem);
        memcpy(b + strings_off + soff, list->defs[i].name, nl + 1);
        soff += nl + 1;
    }
    memcpy(b + image_off, image, image_size);
    *blob = b;
    *size = total;
    return FLOCK_OK;
}

flock_status flock_codegen_cuda_pack(const flock_codegen_model *m, uint32_t arch, uint32_t image_kind,
                                     const void *image, size_t image_size, uint8_t **blob, size_t *size,
                                     flock_error *err)
{
    if (!blob || !size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "kernel blob: NULL output");
    flock_cuda_kernel_list list;
    flock_status st = flock_cuda_kernel_list_build(m, &list, err);
    if (st)
        return st;
    st = flock_cuda_blob_pack(m, &list, arch, image_kind, image, image_size, blob, size, err);
    free(list.defs);
    return st;
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
    if (header_size < HEADER_SIZE || header_size > size)
        return flock_error_set(err, header_size > size ? FLOCK_E_TRUNCATED : FLOCK_E_CORRUPT,
                               "kernel blob: header_size %u (blob %zu bytes, minimum %d)", (unsigned)header_size,
                               size, HEADER_SIZE);
    if (image_kind != FLOCK_CUDA_IMAGE_CUBIN && image_kind != FLOCK_CUDA_IMAGE_PTX)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: image_kind %u at offset 12", (unsigned)image_kind);
    if (entry_size < ENTRY_SIZE || entry_size > 4096)
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
    if (b[100] >= FLOCK_DTYPE_COUNT || b[101] >= FLOCK_DTYPE_COUNT || b[102] >= FLOCK_ACT_COUNT || b[103] > 1 ||
        b[104] >= FLOCK_ROPE_STYLE_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel blob: model enum out of range at offsets 100..104");
    o.model.wtype = (flock_dtype)b[100];
    o.model.kv_type = (flock_dtype)b[101];
    o.model.act = (flock_act)b[102];
    o.model.gated = b[103];
    o.model.rope_style = (flock_rope_style)b[104];
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
    flock_reader r = flock_reader_init(b->table + i * b->entry_size, ENTRY_SIZE);
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
