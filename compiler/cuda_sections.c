/* The CUDA kernel sections of a bundle: the codegen model of the compiled
 * program, NVRTC per target, one blob per section (cuda_sections.h). */
#include "cuda_sections.h"
#include "error_impl.h"

#include "flock/codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool flock_compile_cuda_available(void)
{
    return flock_codegen_cuda_available();
}

bool flock_cuda_is_target(const char *target)
{
    return target && strncmp(target, "sm_", 3) == 0;
}

static flock_status no_nvrtc(const char *target, flock_error *err)
{
    return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                           "--target %s: this flockc was built without CUDA/NVRTC (configure with -DFLOCK_CUDA=ON "
                           "and the CUDA Toolkit installed), so it cannot generate CUDA kernels", target);
}

flock_status flock_cuda_check_targets(char items[][32], size_t n, flock_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (flock_cuda_is_target(items[i]) && !flock_codegen_cuda_available())
            return no_nvrtc(items[i], err);
    return FLOCK_OK;
}

/* The model facts the kernels are specialized on. Keep ratios: those of
 * --keep, then 1.0 (the runtime always allows a dense FF), one per distinct
 * kept-neuron count (the kernels are specialized on the count). KV cache:
 * f16 (half the bytes of f32 per decode step; llama.cpp's default too). */
static flock_status cuda_model(const flock_program *p, const flock_compile_opts *o, const char *target,
                               flock_codegen_model *out, flock_error *err)
{
    if (!o->source_dtype && o->dtype == FLOCK_DTYPE_F32)
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "%s%s: CUDA kernels read f16, bf16, q8_0, q4_0 or q4_1 weights: use --dtype f16, bf16, "
                               "q8_0, q4_0, q4_1 or source (got --dtype f32)",
                               target ? "--target " : "", target ? target : "--emit-cuda");
    float keep[FLOCK_CODEGEN_MAX_KEEP];
    int32_t counts[FLOCK_CODEGEN_MAX_KEEP];
    uint32_t n = 0;
    for (size_t i = 0; i <= o->n_keep; i++) {
        const float k = i < o->n_keep ? (float)o->keep[i] : 1.0f;
        const int32_t c = (int32_t)flock_keep_count(k, p->cfg.d_ff);
        bool seen = false;
        for (uint32_t j = 0; j < n; j++)
            seen |= counts[j] == c;
        if (seen)
            continue;
        if (n == FLOCK_CODEGEN_MAX_KEEP)
            return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                   "--keep: CUDA kernels are specialized per kept-neuron count; at most %d "
                                   "distinct counts (1.0 included) with a CUDA target, got more",
                                   FLOCK_CODEGEN_MAX_KEEP);
        counts[n] = c;
        keep[n++] = k;
    }
    /* Each matrix's stored type (with --dtype source, the source's own) must be
     * one the kernels read: model_from_program names the first that is not. */
    FORWARD_IF_ERROR(flock_codegen_model_from_program(p, keep, n, FLOCK_DTYPE_F16, out, err), err,
                     "%s%s: CUDA kernels for this model", target ? "--target " : "", target ? target : "--emit-cuda");
    return FLOCK_OK;
}

flock_status flock_compile_cuda_source(const flock_program *p, const flock_compile_opts *o, char **src,
                                       size_t *len, flock_error *err)
{
    if (!p || !o || !src || !len)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_compile_cuda_source: NULL argument");
    flock_codegen_model m;
    flock_status st = cuda_model(p, o, NULL, &m, err);
    if (st)
        return st;
    return flock_codegen_cuda_source(&m, src, len, NULL, NULL, err);
}

void flock_cuda_sections_free(cuda_sections *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n; i++)
        free(cs->s[i].blob);
    cs->n = 0;
}

flock_status flock_cuda_sections_build(const flock_program *p, const flock_compile_opts *o, cuda_sections *out,
                                       flock_error *err)
{
    memset(out, 0, sizeof *out);
    /* The targets in --target order (repeats once), then the PTX. */
    const char *targets[FLOCK_MAX_TARGETS + 1];
    size_t n = 0;
    for (size_t i = 0; i < o->n_targets; i++) {
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            seen |= strcmp(targets[j], o->targets[i]) == 0;
        if (flock_cuda_is_target(o->targets[i]) && !seen)
            targets[n++] = o->targets[i];
    }
    if (n == 0)
        return FLOCK_OK;
    if (!flock_codegen_cuda_available()) /* opts not made by flock_compile_parse_targets */
        return no_nvrtc(targets[0], err);
    flock_codegen_model m;
    flock_status st = cuda_model(p, o, targets[0], &m, err);
    if (st)
        return st;
    targets[n++] = FLOCK_CUDA_PTX_TARGET;
    for (size_t i = 0; i < n; i++) {
        cuda_section *s = &out->s[i];
        snprintf(s->name, sizeof s->name, "cuda:%s", targets[i]);
        if (o->kernel_progress)
            o->kernel_progress(o->progress_user, s->name, i, n, 0, 0);
        st = flock_codegen_cuda(&m, targets[i], &s->blob, &s->size, err);
        if (st) {
            flock_cuda_sections_free(out);
            return flock_error_prefix(err, st, "kernel section %s", s->name);
        }
        out->n = i + 1;
        if (o->kernel_progress)
            o->kernel_progress(o->progress_user, s->name, i, n, s->size, 1);
    }
    return FLOCK_OK;
}
