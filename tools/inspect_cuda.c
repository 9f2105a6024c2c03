/* `flock inspect`: the "cuda:*" kernel sections of a bundle, each parsed with
 * the kernel blob reader (flock/formats.h) and printed with its kernel table. */
#include "inspect_cuda.h"

#include "flock_cli.h"

#include "flock/ir.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool is_cuda_section(const flock_section_info *s)
{
    return s->kind == FLOCK_SECTION_KERNELS && strncmp(s->name, "cuda:", 5) == 0;
}

static const char *image_kind_name(uint32_t k)
{
    return k == FLOCK_CUDA_IMAGE_CUBIN ? "cubin" : k == FLOCK_CUDA_IMAGE_PTX ? "ptx" : "?";
}

/* The act byte names a flock_act (checked < FLOCK_ACT_COUNT by the reader). */
static const char *act_name(uint8_t a)
{
    return a < FLOCK_ACT_COUNT ? flock_act_name((flock_act)a) : "?";
}

/* Reads and parses section i; *data must be freed. The message is in *err. */
static flock_status load(const flock_bundle *b, size_t i, void **data, flock_cuda_blob *blob, flock_error *err)
{
    size_t size = 0;
    *data = NULL;
    flock_status st = flock_bundle_read_section(b, i, data, &size, err);
    if (!st)
        st = flock_cuda_blob_parse(*data, size, blob, err);
    return st;
}

int flock_inspect_cuda_text(const flock_bundle *b, FILE *f)
{
    int bad = 0;
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info s;
        if (flock_bundle_section_info(b, i, &s) || !is_cuda_section(&s))
            continue;
        void *data = NULL;
        flock_cuda_blob blob;
        flock_error e = {0};
        if (load(b, i, &data, &blob, &e)) {
            fprintf(f, "\nkernels %s: unreadable: %s\n", s.name, e.msg);
            free(data);
            bad++;
            continue;
        }
        const flock_cuda_blob_model *m = &blob.model;
        fprintf(f, "\nkernels %s: %s for %s_%u, blob %u.%u, image %zu bytes, %zu kernels (grid *: per launch)\n",
                s.name, image_kind_name(blob.image_kind), blob.image_kind == FLOCK_CUDA_IMAGE_PTX ? "compute" : "sm",
                (unsigned)blob.arch, (unsigned)blob.major, (unsigned)blob.minor, blob.image_size, blob.n_kernels);
        fprintf(f, "  model: d_model %d, d_ff %d, heads %d/%d x %d, vocab %d, rope_dim %d (%s), weights %s, "
                   "KV cache %s, FF %s %s, %u keep ratios\n",
                (int)m->d_model, (int)m->d_ff, (int)m->n_head, (int)m->n_kv_head, (int)m->head_dim, (int)m->vocab,
                (int)m->rope_dim, m->rope_style ? "neox" : "normal", flock_dtype_name(m->wtype),
                flock_dtype_name(m->kv_type), m->gated ? "gated" : "plain", act_name(m->act), (unsigned)m->n_keep);
        fprintf(f, "  %-3s %-32s %-16s %8s %6s %6s %-13s %-17s %5s\n", "#", "name", "kind", "spec", "spec2", "keep",
                "block", "grid", "smem");
        for (size_t k = 0; k < blob.n_kernels; k++) {
            flock_cuda_kernel_info ki;
            flock_cuda_blob_kernel(&blob, k, &ki, NULL); /* cannot fail: parse checked every entry */
            char keep[16] = "-", block[40], grid[48];
            if (ki.keep > 0)
                snprintf(keep, sizeof keep, "%.4g", (double)ki.keep);
            snprintf(block, sizeof block, "%ux%ux%u", (unsigned)ki.block[0], (unsigned)ki.block[1],
                     (unsigned)ki.block[2]);
            /* 0 in a grid slot: set per launch (tokens, splits). */
            size_t n = 0;
            for (int d = 0; d < 3; d++) {
                if (ki.grid[d])
                    n += (size_t)snprintf(grid + n, sizeof grid - n, "%s%u", d ? "x" : "", (unsigned)ki.grid[d]);
                else
                    n += (size_t)snprintf(grid + n, sizeof grid - n, "%s*", d ? "x" : "");
            }
            fprintf(f, "  %-3zu %-32s %-16s %8u %6u %6s %-13s %-17s %5u\n", k, ki.name,
                    flock_cuda_kernel_kind_name(ki.kind), (unsigned)ki.spec, (unsigned)ki.spec2, keep, block, grid,
                    (unsigned)ki.dyn_smem);
        }
        free(data);
    }
    return bad;
}

static void json_u32x3(FILE *f, const uint32_t v[3])
{
    fprintf(f, "[%u, %u, %u]", (unsigned)v[0], (unsigned)v[1], (unsigned)v[2]);
}

int flock_inspect_cuda_json(const flock_bundle *b, FILE *f)
{
    int bad = 0;
    size_t shown = 0;
    fputs("[", f);
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info s;
        if (flock_bundle_section_info(b, i, &s) || !is_cuda_section(&s))
            continue;
        fputs(shown++ ? ",\n  {\"section\": " : "\n  {\"section\": ", f);
        flock_cli_json_str(f, s.name);
        void *data = NULL;
        flock_cuda_blob blob;
        flock_error e = {0};
        if (load(b, i, &data, &blob, &e)) {
            fputs(", \"error\": ", f);
            flock_cli_json_str(f, e.msg);
            fputc('}', f);
            free(data);
            bad++;
            continue;
        }
        const flock_cuda_blob_model *m = &blob.model;
        fprintf(f, ", \"image_kind\": \"%s\", \"arch\": %u, \"version\": {\"major\": %u, \"minor\": %u}, "
                   "\"image_size\": %zu,\n   \"model\": {\"d_model\": %d, \"d_ff\": %d, \"n_head\": %d, "
                   "\"n_kv_head\": %d, \"head_dim\": %d, \"vocab\": %d, \"rope_dim\": %d, \"rope_style\": \"%s\", "
                   "\"wtype\": \"%s\", \"kv_type\": \"%s\", \"act\": \"%s\", \"gated\": %s, \"attn_scale\": ",
                image_kind_name(blob.image_kind), (unsigned)blob.arch, (unsigned)blob.major, (unsigned)blob.minor,
                blob.image_size, (int)m->d_model, (int)m->d_ff, (int)m->n_head, (int)m->n_kv_head,
                (int)m->head_dim, (int)m->vocab, (int)m->rope_dim, m->rope_style ? "neox" : "normal",
                flock_dtype_name(m->wtype), flock_dtype_name(m->kv_type), act_name(m->act),
                m->gated ? "true" : "false");
        flock_cli_json_double(f, m->attn_scale);
        fputs(", \"attn_softcap\": ", f);
        flock_cli_json_double(f, m->attn_softcap);
        fprintf(f, ", \"n_keep\": %u},\n   \"kernels\": [", (unsigned)m->n_keep);
        for (size_t k = 0; k < blob.n_kernels; k++) {
            flock_cuda_kernel_info ki;
            flock_cuda_blob_kernel(&blob, k, &ki, NULL);
            fputs(k ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
            flock_cli_json_str(f, ki.name);
            fprintf(f, ", \"kind\": \"%s\", \"spec\": %u, \"spec2\": %u, \"keep\": ",
                    flock_cuda_kernel_kind_name(ki.kind), (unsigned)ki.spec, (unsigned)ki.spec2);
            flock_cli_json_double(f, ki.keep);
            fputs(", \"block\": ", f);
            json_u32x3(f, ki.block);
            fputs(", \"grid\": ", f);
            json_u32x3(f, ki.grid);
            fprintf(f, ", \"dyn_smem\": %u}", (unsigned)ki.dyn_smem);
        }
        fputs("]}", f);
        free(data);
    }
    fputs("]", f);
    return bad;
}
