/* gpu_check: runs every generated CUDA kernel against the plain CPU
 * references of gpu_check_ref.c on fresh random data (outputs poisoned with
 * NaN before each run), then times decode steps of Llama-2-7B/13B-shaped
 * layer stacks (gpu_check_bench.c). With --blob FILE (a kernels section
 * that flockc wrote, extracted by tools/extract_section.py), also loads that
 * blob's image on the device and resolves every kernel in its table;
 * --no-bench stops after the checks, --bench-only skips them. Needs a
 * GPU; libcuda is loaded with dlopen. Exit status 0 when every check passes.
 * Run by tools/gpu-check.sh. */
#include "gpu_check.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cu_api CU;
CUstream g_stream;

void cu_check(CUresult r, const char *what, const char *file, int line)
{
    if (r == 0)
        return;
    const char *s = NULL;
    if (CU.get_error_string)
        CU.get_error_string(r, &s);
    fprintf(stderr, "%s:%d: %s failed: %d (%s)\n", file, line, what, r, s ? s : "?");
    exit(2);
}

static void *sym(void *lib, const char *a, const char *b, int required)
{
    void *p = dlsym(lib, a);
    if (!p && b)
        p = dlsym(lib, b);
    if (!p && required) {
        fprintf(stderr, "libcuda.so.1 lacks %s\n", a);
        exit(2);
    }
    return p;
}

#define LOAD(field, name, alt) *(void **)&CU.field = sym(lib, name, alt, 1)
#define LOAD_OPT(field, name, alt) *(void **)&CU.field = sym(lib, name, alt, 0)

static void cu_load(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "cannot load libcuda.so.1 (no NVIDIA driver?): %s\n", dlerror());
        exit(2);
    }
    LOAD(init, "cuInit", NULL);
    LOAD(device_get, "cuDeviceGet", NULL);
    LOAD(device_get_attribute, "cuDeviceGetAttribute", NULL);
    LOAD(device_get_name, "cuDeviceGetName", NULL);
    LOAD(primary_ctx_retain, "cuDevicePrimaryCtxRetain", NULL);
    LOAD(ctx_set_current, "cuCtxSetCurrent", NULL);
    LOAD(ctx_synchronize, "cuCtxSynchronize", NULL);
    LOAD(mem_get_info, "cuMemGetInfo_v2", NULL);
    LOAD(module_load_data, "cuModuleLoadData", NULL);
    LOAD(module_unload, "cuModuleUnload", NULL);
    LOAD(module_get_function, "cuModuleGetFunction", NULL);
    LOAD(mem_alloc, "cuMemAlloc_v2", NULL);
    LOAD(mem_free, "cuMemFree_v2", NULL);
    LOAD(memcpy_htod, "cuMemcpyHtoD_v2", NULL);
    LOAD(memcpy_dtoh, "cuMemcpyDtoH_v2", NULL);
    LOAD(memcpy_dtod_async, "cuMemcpyDtoDAsync_v2", NULL);
    LOAD(memset_d8, "cuMemsetD8_v2", NULL);
    LOAD(launch_kernel, "cuLaunchKernel", NULL);
    LOAD(stream_create, "cuStreamCreate", NULL);
    LOAD(stream_synchronize, "cuStreamSynchronize", NULL);
    LOAD(event_create, "cuEventCreate", NULL);
    LOAD(event_record, "cuEventRecord", NULL);
    LOAD(event_synchronize, "cuEventSynchronize", NULL);
    LOAD(event_elapsed_time, "cuEventElapsedTime_v2", "cuEventElapsedTime");
    LOAD(get_error_string, "cuGetErrorString", NULL);
    LOAD(occupancy_max_blocks, "cuOccupancyMaxActiveBlocksPerMultiprocessor", NULL);
    LOAD_OPT(stream_begin_capture, "cuStreamBeginCapture_v2", NULL);
    LOAD_OPT(stream_end_capture, "cuStreamEndCapture", NULL);
    LOAD_OPT(graph_instantiate, "cuGraphInstantiateWithFlags", NULL);
    LOAD_OPT(graph_launch, "cuGraphLaunch", NULL);
    LOAD_OPT(graph_exec_destroy, "cuGraphExecDestroy", NULL);
    LOAD_OPT(graph_destroy, "cuGraphDestroy", NULL);
}

/* ---- modules, launches, buffers ------------------------------------------- */

void gpu_module_load(gpu_module *gm, const flock_codegen_model *m, int cc)
{
    memset(gm, 0, sizeof *gm);
    char target[32];
    snprintf(target, sizeof target, "sm_%d", cc);
    size_t size = 0;
    flock_error e = {0};
    if (flock_codegen_cuda(m, target, &gm->blob, &size, &e) != FLOCK_OK) {
        fprintf(stderr, "NVRTC for %s failed (%s); using compute_80 PTX\n", target, e.msg);
        if (flock_codegen_cuda(m, "compute_80", &gm->blob, &size, &e) != FLOCK_OK) {
            fprintf(stderr, "codegen: %s\n", e.msg);
            exit(2);
        }
    }
    if (flock_cuda_blob_parse(gm->blob, size, &gm->b, &e) != FLOCK_OK) {
        fprintf(stderr, "blob: %s\n", e.msg);
        exit(2);
    }
    CK(CU.module_load_data(&gm->mod, gm->b.image));
    gm->fns = calloc(gm->b.n_kernels, sizeof *gm->fns);
    for (size_t i = 0; i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        CK(CU.module_get_function(&gm->fns[i], gm->mod, k.name));
    }
}

void gpu_module_free(gpu_module *gm)
{
    if (gm->mod)
        CK(CU.module_unload(gm->mod));
    free(gm->blob);
    free(gm->fns);
    memset(gm, 0, sizeof *gm);
}

void gpu_launch(const gpu_module *gm, const char *name, unsigned gx, unsigned gy, unsigned gz, void **args)
{
    int64_t i = flock_cuda_blob_find(&gm->b, name);
    if (i < 0) {
        fprintf(stderr, "no kernel %s in the blob\n", name);
        exit(2);
    }
    flock_cuda_kernel_info k;
    flock_cuda_blob_kernel(&gm->b, (size_t)i, &k, NULL);
    CK(CU.launch_kernel(gm->fns[i], gx, gy, gz, k.block[0], k.block[1], k.block[2], k.dyn_smem, g_stream, args, NULL));
}

int g_sms = 1;

unsigned gpu_wave(const gpu_module *gm, const char *name)
{
    int64_t i = flock_cuda_blob_find(&gm->b, name);
    if (i < 0) {
        fprintf(stderr, "no kernel %s in the blob\n", name);
        exit(2);
    }
    flock_cuda_kernel_info k;
    flock_cuda_blob_kernel(&gm->b, (size_t)i, &k, NULL);
    int per_sm = 0;
    CK(CU.occupancy_max_blocks(&per_sm, gm->fns[i], (int)(k.block[0] * k.block[1] * k.block[2]), k.dyn_smem));
    return (unsigned)(per_sm > 0 ? per_sm : 1) * (unsigned)g_sms;
}

CUdeviceptr dalloc(size_t bytes)
{
    CUdeviceptr d;
    CK(CU.mem_alloc(&d, bytes ? bytes : 16));
    CK(CU.memset_d8(d, 0xff, bytes ? bytes : 16));
    /* g_stream does not wait for the legacy stream's memset and copies. */
    CK(CU.ctx_synchronize());
    return d;
}

CUdeviceptr dput(const void *h, size_t bytes)
{
    CUdeviceptr d = dalloc(bytes);
    CK(CU.memcpy_htod(d, h, bytes));
    CK(CU.ctx_synchronize());
    return d;
}

void dget(void *h, CUdeviceptr d, size_t bytes)
{
    CK(CU.stream_synchronize(g_stream));
    CK(CU.memcpy_dtoh(h, d, bytes));
}

void dfree(CUdeviceptr d)
{
    if (d)
        CK(CU.mem_free(d));
}

/* Loads a kernel blob file on the device (CUBIN for this device's
 * architecture, or PTX, which the driver compiles) and resolves each kernel
 * of its table: a check that flockc's section works on this GPU. A CUBIN for
 * another architecture is skipped. */
static void check_blob_file(const char *path, int cc)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    uint8_t *data = n > 0 ? malloc((size_t)n) : NULL;
    if (!f || !data || fseek(f, 0, SEEK_SET) != 0 || fread(data, 1, (size_t)n, f) != (size_t)n) {
        printf("FAIL blob %s: cannot read it\n", path);
        gpu_check_failed++;
        if (f)
            fclose(f);
        free(data);
        return;
    }
    fclose(f);
    flock_cuda_blob b;
    flock_error e = {0};
    CUmodule mod = NULL;
    if (flock_cuda_blob_parse(data, (size_t)n, &b, &e) != FLOCK_OK) {
        printf("FAIL blob %s: %s\n", path, e.msg);
        gpu_check_failed++;
    } else if (b.image_kind == FLOCK_CUDA_IMAGE_CUBIN && (int)b.arch != cc) {
        printf("skip blob %s: CUBIN for sm_%u, the device is sm_%d\n", path, (unsigned)b.arch, cc);
    } else {
        CUresult r = CU.module_load_data(&mod, b.image);
        size_t found = 0;
        for (size_t i = 0; r == 0 && i < b.n_kernels; i++) {
            flock_cuda_kernel_info k;
            CUfunction fn;
            flock_cuda_blob_kernel(&b, i, &k, NULL);
            if (CU.module_get_function(&fn, mod, k.name) == 0)
                found++;
            else
                printf("  %s: kernel %s is not in the image\n", path, k.name);
        }
        const bool ok = r == 0 && found == b.n_kernels;
        printf("%s blob %s: %s %u, %zu of %zu kernels resolved%s\n", ok ? "ok  " : "FAIL", path,
               b.image_kind == FLOCK_CUDA_IMAGE_PTX ? "PTX compute" : "CUBIN sm", (unsigned)b.arch, found,
               b.n_kernels, r ? " (cuModuleLoadData failed)" : "");
        if (ok)
            gpu_check_passed++;
        else
            gpu_check_failed++;
        if (mod)
            CK(CU.module_unload(mod));
    }
    free(data);
}

int main(int argc, char **argv)
{
    int bench = 1, checks = 1;
    const char *blobs[16];
    int n_blobs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-bench") == 0) {
            bench = 0;
        } else if (strcmp(argv[i], "--bench-only") == 0) {
            checks = 0;
        } else if (strcmp(argv[i], "--blob") == 0 && i + 1 < argc && n_blobs < 16) {
            blobs[n_blobs++] = argv[++i];
        } else {
            fprintf(stderr, "usage: gpu_check [--no-bench | --bench-only] [--blob FILE]...\n");
            return 2;
        }
    }
    cu_load();
    CK(CU.init(0));
    CUdevice dev;
    CK(CU.device_get(&dev, 0));
    char name[256];
    int major = 0, minor = 0, sms = 0;
    CK(CU.device_get_name(name, sizeof name, dev));
    CK(CU.device_get_attribute(&major, 75, dev)); /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
    CK(CU.device_get_attribute(&minor, 76, dev));
    CK(CU.device_get_attribute(&sms, 16, dev));   /* MULTIPROCESSOR_COUNT */
    CUcontext ctx;
    CK(CU.primary_ctx_retain(&ctx, dev));
    CK(CU.ctx_set_current(ctx));
    CK(CU.stream_create(&g_stream, 1)); /* non-blocking: capturable */
    printf("device: %s, compute capability %d.%d, %d SMs\n", name, major, minor, sms);
    g_sms = sms > 0 ? sms : 1;
    const int cc = major * 10 + minor;

    if (n_blobs)
        printf("== kernel blobs from a bundle ==\n");
    for (int i = 0; i < n_blobs; i++)
        check_blob_file(blobs[i], cc);
    if (checks) {
        printf("== kernels against the CPU reference ==\n");
        check_all_configs(cc);
        printf("kernel checks: %d passed, %d failed\n", gpu_check_passed, gpu_check_failed);
    }
    if (bench)
        bench_run(cc);
    if (checks)
        printf("kernel checks: %d passed, %d failed\n", gpu_check_passed, gpu_check_failed);
    return gpu_check_failed ? 1 : 0;
}
