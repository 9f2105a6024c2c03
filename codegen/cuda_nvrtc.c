/* Compiling the generated source with NVRTC. Built only with FLOCK_CUDA (the
 * runtime never links this); cuda_source.c has the fallback without it. */
#include "cuda_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nvrtc.h>

/* "sm_90" -> (90, CUBIN), "compute_80" -> (80, PTX). */
static flock_status parse_target(const char *t, uint32_t *arch, uint32_t *kind, flock_error *err)
{
    const char *digits = NULL;
    if (t && strncmp(t, "sm_", 3) == 0) {
        digits = t + 3;
        *kind = FLOCK_CUDA_IMAGE_CUBIN;
    } else if (t && strncmp(t, "compute_", 8) == 0) {
        digits = t + 8;
        *kind = FLOCK_CUDA_IMAGE_PTX;
    }
    unsigned v = 0;
    size_t n = digits ? strspn(digits, "0123456789") : 0;
    if (!digits || n < 2 || n > 3 || digits[n] != 0 || sscanf(digits, "%u", &v) != 1 || v < 80)
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "codegen: CUDA target '%s' (expected sm_XY or compute_XY, XY >= 80)", t ? t : "(null)");
    *arch = v;
    return FLOCK_OK;
}

static flock_status nvrtc_fail(nvrtcProgram prog, nvrtcResult r, const char *what, const char *target,
                               flock_error *err)
{
    char log[384] = "";
    size_t n = 0;
    if (prog && nvrtcGetProgramLogSize(prog, &n) == NVRTC_SUCCESS && n > 1) {
        char *full = malloc(n);
        if (full && nvrtcGetProgramLog(prog, full) == NVRTC_SUCCESS)
            snprintf(log, sizeof log, "%s", full);
        free(full);
    }
    return flock_error_set(err, FLOCK_E_INTERNAL, "codegen: NVRTC %s for %s: %s%s%s", what, target,
                           nvrtcGetErrorString(r), *log ? "; log: " : "", log);
}

flock_status flock_codegen_cuda(const flock_codegen_model *m, const char *target, uint8_t **blob, size_t *size,
                                flock_error *err)
{
    if (!blob || !size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen: NULL output");
    uint32_t arch = 0, kind = 0;
    flock_status st = parse_target(target, &arch, &kind, err);
    if (st)
        return st;
    flock_cuda_kernel_list list;
    if ((st = flock_cuda_kernel_list_build(m, &list, err)))
        return st;
    char *src = NULL, *image = NULL;
    size_t src_len = 0, image_size = 0;
    nvrtcProgram prog = NULL;
    nvrtcResult r;
    if ((st = flock_cuda_source_emit(m, &list, &src, &src_len, err)))
        goto done;
    r = nvrtcCreateProgram(&prog, src, "flock_kernels.cu", 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        prog = NULL;
        st = nvrtc_fail(NULL, r, "create", target, err);
        goto done;
    }
    char arch_opt[48];
    snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=%s", target);
    const char *opts[] = {arch_opt, "--std=c++17", "--fmad=true", "-DNDEBUG"};
    r = nvrtcCompileProgram(prog, (int)(sizeof opts / sizeof opts[0]), opts);
    if (r != NVRTC_SUCCESS) {
        st = nvrtc_fail(prog, r, "compile", target, err);
        goto done;
    }
    if (kind == FLOCK_CUDA_IMAGE_CUBIN)
        r = nvrtcGetCUBINSize(prog, &image_size);
    else
        r = nvrtcGetPTXSize(prog, &image_size); /* includes the NUL */
    if (r != NVRTC_SUCCESS || image_size == 0) {
        st = nvrtc_fail(prog, r, "image size", target, err);
        goto done;
    }
    image = malloc(image_size);
    if (!image) {
        st = flock_error_set(err, FLOCK_E_NOMEM, "codegen: out of memory (%zu-byte image)", image_size);
        goto done;
    }
    r = kind == FLOCK_CUDA_IMAGE_CUBIN ? nvrtcGetCUBIN(prog, image) : nvrtcGetPTX(prog, image);
    if (r != NVRTC_SUCCESS) {
        st = nvrtc_fail(prog, r, "image", target, err);
        goto done;
    }
    st = flock_cuda_blob_pack(m, &list, arch, kind, image, image_size, blob, size, err);
done:
    if (prog)
        nvrtcDestroyProgram(&prog);
    free(image);
    free(src);
    free(list.defs);
    return st;
}
