/* A session's GPU side: the driver, the bundle's kernel section for the
 * device, the CUDA executor (cuda_exec.h). */
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
                           "flockc --target sm_%d%d --dtype f16 (or --dtype bf16)",
                           in->name, in->cc_major, in->cc_minor, have, in->cc_major, in->cc_minor);
}

flock_status flock_session_open_cuda(flock_session *s, flock_error *err)
{
    flock_status st = flock_cuda_driver_opener()(&s->drv, err);
    if (st != FLOCK_OK)
        return st;
    char name[64];
    int64_t idx = -1;
    size_t size = 0;
    if ((st = pick_section(s->m, &s->drv->info, name, sizeof name, &idx, err)) == FLOCK_OK &&
        (st = flock_bundle_read_section(s->m->bundle, (size_t)idx, &s->cu_blob, &size, err)) == FLOCK_OK)
        st = flock_cuda_exec_create(s->drv, name, s->cu_blob, size, s->m->prog, s->m->tensors, s->o.keep, s->o.n_ctx,
                                    s->o.all_logits, &s->cu, err);
    if (st != FLOCK_OK) {
        flock_session_close_cuda(s);
        return st;
    }
    snprintf(s->kname, sizeof s->kname, "%s", name);
    return FLOCK_OK;
}

void flock_session_close_cuda(flock_session *s)
{
    flock_cuda_exec_free(s->cu);
    s->cu = NULL;
    free(s->cu_blob);
    s->cu_blob = NULL;
    if (s->drv)
        s->drv->close(s->drv);
    s->drv = NULL;
}
