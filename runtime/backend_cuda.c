/* The CUDA backend (backend.h): the driver, the bundle's kernel section for
 * the device, the CUDA executor (cuda_exec.h). GRIFFIN's top-k runs on the
 * device; a host-made selection (magnitude, random) is uploaded. */
#include "backend.h"
#include "cuda_exec.h"
#include "model_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "cuda:sm_80, cuda:compute_80" (the bundle's CUDA sections) or "none". */
static void list_sections(const flock_bundle *b, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info si;
        if (flock_bundle_section_info(b, i, &si) != FLOCK_OK || si.kind != FLOCK_SECTION_KERNELS ||
            strncmp(si.name, "cuda:", 5) != 0)
            continue;
        int w = snprintf(buf + len, n - len, "%s%s", len ? ", " : "", si.name);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
    if (!len)
        snprintf(buf, n, "none");
}

/* The section for the device: cuda:sm_<cc> (CUBIN), else cuda:compute_80
 * (PTX the driver compiles for newer GPUs). */
static flock_status pick_section(const flock_model *m, const flock_cuda_dev_info *in, char *name, size_t n,
                                 int64_t *index, flock_error *err)
{
    snprintf(name, n, "cuda:sm_%d%d", in->cc_major, in->cc_minor);
    *index = flock_bundle_find_section(m->bundle, FLOCK_SECTION_KERNELS, name);
    if (*index >= 0)
        return FLOCK_OK;
    snprintf(name, n, "cuda:compute_80");
    *index = flock_bundle_find_section(m->bundle, FLOCK_SECTION_KERNELS, name);
    if (*index >= 0)
        return FLOCK_OK;
    char have[256];
    list_sections(m->bundle, have, sizeof have);
    return flock_error_set(err, FLOCK_E_NOT_FOUND,
                           "this bundle has no CUDA kernels for %s (sm_%d%d; CUDA sections: %s): compile it with "
                           "flockc --target sm_%d%d (--dtype f16, bf16, q8_0, q4_0 or q4_1)",
                           in->name, in->cc_major, in->cc_minor, have, in->cc_major, in->cc_minor);
}

typedef struct cuda_backend {
    flock_backend b;
    flock_cuda_driver *drv;
    flock_cuda_exec *cu;
    void *blob; /* the kernels section's bytes (the executor reads them in place) */
} cuda_backend;

static cuda_backend *CU(const flock_backend *b)
{
    return (cuda_backend *)b;
}

static void cuda_free(flock_backend *b)
{
    cuda_backend *c = CU(b);
    flock_cuda_exec_free(c->cu);
    free(c->blob);
    if (c->drv)
        c->drv->close(c->drv);
    free(c);
}

static void cuda_reset(flock_backend *b)
{
    flock_cuda_exec_reset(CU(b)->cu);
}

static flock_status cuda_run(flock_backend *b, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                             flock_error *err)
{
    return flock_cuda_exec_run(CU(b)->cu, ids, n, mode, stats, err);
}

static flock_status cuda_select_griffin(flock_backend *b, flock_error *err)
{
    return flock_cuda_exec_select_griffin(CU(b)->cu, err);
}

static flock_status cuda_commit_selection(flock_backend *b, flock_error *err)
{
    return flock_cuda_exec_upload_selection(CU(b)->cu, err);
}

static size_t cuda_n_past(const flock_backend *b)
{
    return flock_cuda_exec_n_past(CU(b)->cu);
}

static int32_t cuda_n_vocab(const flock_backend *b)
{
    return flock_cuda_exec_n_vocab(CU(b)->cu);
}

static const float *cuda_logits(const flock_backend *b)
{
    return flock_cuda_exec_logits(CU(b)->cu);
}

static size_t cuda_n_ffn(const flock_backend *b)
{
    return flock_cuda_exec_n_ffn(CU(b)->cu);
}

static flock_exec_ffn *cuda_ffn_at(const flock_backend *b, size_t i)
{
    return flock_cuda_exec_ffn_at(CU(b)->cu, i);
}

static uint64_t cuda_decode_bytes(const flock_backend *b)
{
    return flock_cuda_exec_decode_bytes(CU(b)->cu);
}

static const flock_backend_iface cuda_iface = {
    .free = cuda_free,
    .reset = cuda_reset,
    .run = cuda_run,
    .run_batch = NULL, /* the session steps CUDA sequences one after another */
    .select_griffin = cuda_select_griffin,
    .commit_selection = cuda_commit_selection,
    .n_past = cuda_n_past,
    .n_vocab = cuda_n_vocab,
    .logits = cuda_logits,
    .n_ffn = cuda_n_ffn,
    .ffn_at = cuda_ffn_at,
    .decode_bytes = cuda_decode_bytes,
};

flock_status flock_backend_cuda_open(flock_model *m, const flock_session_opts *o, flock_backend **out,
                                     flock_error *err)
{
    cuda_backend *c = calloc(1, sizeof *c);
    if (!c)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    /* the KV cache is f16 (compiler/cuda_sections.c, cuda_model) */
    c->b = (flock_backend){.iface = &cuda_iface, .device = FLOCK_DEVICE_CUDA, .kv_elem_bytes = 2};
    char name[64];
    int64_t idx = -1;
    size_t size = 0;
    flock_status st = flock_device_check_cuda(c->b.what, sizeof c->b.what, err);
    if (st == FLOCK_OK)
        st = flock_cuda_driver_opener()(&c->drv, err);
    if (st == FLOCK_OK && (st = pick_section(m, &c->drv->info, name, sizeof name, &idx, err)) == FLOCK_OK &&
        (st = flock_bundle_read_section(m->bundle, (size_t)idx, &c->blob, &size, err)) == FLOCK_OK)
        st = flock_cuda_exec_create(c->drv, name, c->blob, size, m->prog, &m->plan, m->tensors, o->keep, o->n_ctx,
                                    o->all_logits, &c->cu, err);
    if (st != FLOCK_OK) {
        cuda_free(&c->b);
        return st;
    }
    snprintf(c->b.kernels, sizeof c->b.kernels, "%s", name);
    *out = &c->b;
    return FLOCK_OK;
}
