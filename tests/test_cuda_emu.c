/* The generated CUDA kernels run on the CPU emulator (tests/cuda_emu)
 * through the same checks as on a GPU (tools/gpu_check_kernels.c): every
 * kernel against its plain reference on fresh random data, outputs poisoned
 * with NaN first. This stands in for the device layer of tools/gpu_check.c:
 * "device" memory is host memory and a launch runs the emulated kernel.
 * It needs no CUDA toolkit (the source is generated, not compiled by NVRTC). */
#include "gpu_check.h"
#include "gpu_check_ref.h"
#include "cuda_emu/cuda_emu_launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const emu_kernel emu_kernels_small[], emu_kernels_gemma[], emu_kernels_opt[], emu_kernels_gelu[],
    emu_kernels_smallq[];
extern const size_t emu_n_kernels_small, emu_n_kernels_gemma, emu_n_kernels_opt, emu_n_kernels_gelu,
    emu_n_kernels_smallq;

static const struct {
    const char *label;
    const emu_kernel *k;
    const size_t *n;
} tables[] = {
    {"small-f16", emu_kernels_small, &emu_n_kernels_small},
    {"gemma-bf16", emu_kernels_gemma, &emu_n_kernels_gemma},
    {"opt-relu", emu_kernels_opt, &emu_n_kernels_opt},
    {"gelu-erf", emu_kernels_gelu, &emu_n_kernels_gelu},
    {"small-q", emu_kernels_smallq, &emu_n_kernels_smallq},
};

cu_api CU;
CUstream g_stream;
static const emu_kernel *cur_table;
static size_t cur_n;

void cu_check(CUresult r, const char *what, const char *file, int line)
{
    if (r == 0)
        return;
    fprintf(stderr, "%s:%d: %s failed: %d\n", file, line, what, r);
    exit(2);
}

static void *ptr(CUdeviceptr d)
{
    return (void *)(uintptr_t)d;
}

static CUresult emu_sync(void)
{
    return 0;
}

static CUresult emu_htod(CUdeviceptr d, const void *h, size_t n)
{
    memcpy(ptr(d), h, n);
    return 0;
}

static CUresult emu_dtoh(void *h, CUdeviceptr d, size_t n)
{
    memcpy(h, ptr(d), n);
    return 0;
}

static CUresult emu_stream_sync(CUstream s)
{
    (void)s;
    return 0;
}

void gpu_module_load(gpu_module *gm, const flock_codegen_model *m, int cc)
{
    (void)cc;
    memset(gm, 0, sizeof *gm);
    size_t n = 0;
    const gpu_check_config *cfgs = gpu_check_configs(&n);
    const char *label = NULL;
    for (size_t i = 0; i < n; i++)
        if (&cfgs[i].m == m || memcmp(&cfgs[i].m, m, sizeof *m) == 0)
            label = cfgs[i].label;
    cur_table = NULL;
    for (size_t i = 0; label && i < sizeof tables / sizeof tables[0]; i++)
        if (strcmp(tables[i].label, label) == 0) {
            cur_table = tables[i].k;
            cur_n = *tables[i].n;
        }
    if (!cur_table) {
        fprintf(stderr, "no emulated kernels for this model\n");
        exit(2);
    }
    size_t size = 0;
    flock_error e = {0};
    if (flock_codegen_cuda_pack(m, 0, FLOCK_CUDA_IMAGE_PTX, "", 1, &gm->blob, &size, &e) != FLOCK_OK ||
        flock_cuda_blob_parse(gm->blob, size, &gm->b, &e) != FLOCK_OK) {
        fprintf(stderr, "blob: %s\n", e.msg);
        exit(2);
    }
    if (gm->b.n_kernels != cur_n) {
        fprintf(stderr, "emulated table has %zu kernels, the model %zu\n", cur_n, gm->b.n_kernels);
        exit(2);
    }
}

void gpu_module_free(gpu_module *gm)
{
    free(gm->blob);
    memset(gm, 0, sizeof *gm);
}

void gpu_launch(const gpu_module *gm, const char *name, unsigned gx, unsigned gy, unsigned gz, void **args)
{
    int64_t i = flock_cuda_blob_find(&gm->b, name);
    flock_cuda_kernel_info k;
    if (i < 0 || flock_cuda_blob_kernel(&gm->b, (size_t)i, &k, NULL) != FLOCK_OK ||
        strcmp(cur_table[i].name, name) != 0) {
        fprintf(stderr, "no kernel %s\n", name);
        exit(2);
    }
    if (emu_launch(cur_table[i].fn, gx, gy, gz, k.block[0], k.block[1], k.block[2], args) != 0) {
        fprintf(stderr, "emulator refused %s grid (%u, %u, %u) block %u\n", name, gx, gy, gz, k.block[0]);
        exit(2);
    }
}

CUdeviceptr dalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 16);
    memset(p, 0xff, bytes ? bytes : 16); /* NaN as f32 */
    return (CUdeviceptr)(uintptr_t)p;
}

CUdeviceptr dput(const void *h, size_t bytes)
{
    CUdeviceptr d = dalloc(bytes);
    memcpy(ptr(d), h, bytes);
    return d;
}

void dget(void *h, CUdeviceptr d, size_t bytes)
{
    memcpy(h, ptr(d), bytes);
}

void dfree(CUdeviceptr d)
{
    free(ptr(d));
}

int main(void)
{
    CU.ctx_synchronize = emu_sync;
    CU.memcpy_htod = emu_htod;
    CU.memcpy_dtoh = emu_dtoh;
    CU.stream_synchronize = emu_stream_sync;
    size_t n = 0;
    const gpu_check_config *cfgs = gpu_check_configs(&n);
    for (size_t i = 0; i < n; i++)
        if (cfgs[i].emulate)
            check_config(cfgs[i].label, &cfgs[i].m, 0, cfgs[i].M);
    printf("emulated kernel checks: %d passed, %d failed\n", gpu_check_passed, gpu_check_failed);
    return gpu_check_failed ? 1 : 0;
}
