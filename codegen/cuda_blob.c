/* The CUDA kernel blob writer. The layout and the reader are in
 * flock/formats.h and formats/cuda_blob.c (version 1.0). */
#include "cuda_private.h"
#include "reader.h"

#include <stdlib.h>
#include <string.h>

#define HEADER_SIZE FLOCK_CUDA_BLOB_HEADER_SIZE
#define ENTRY_SIZE FLOCK_CUDA_BLOB_ENTRY_SIZE
/* formats/ reads the act and rope_style bytes without seeing flock/ir.h. */
_Static_assert(FLOCK_CUDA_BLOB_ACT_COUNT == FLOCK_ACT_COUNT, "formats.h: FLOCK_CUDA_BLOB_ACT_COUNT");
_Static_assert(FLOCK_CUDA_BLOB_ROPE_STYLE_COUNT == FLOCK_ROPE_STYLE_COUNT,
               "formats.h: FLOCK_CUDA_BLOB_ROPE_STYLE_COUNT");

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
