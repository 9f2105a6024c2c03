/* gpu_check: runs every generated CUDA kernel against the plain CPU
 * references of gpu_check_ref.c on fresh random data (outputs poisoned with
 * NaN before each run), then times decode steps of Llama-2-7B/13B-shaped
 * layer stacks (gpu_check_bench.c). Needs a GPU; libcuda is loaded with
 * dlopen. Exit status 0 when every check passes. Run by tools/gpu-check.sh. */
#include "gpu_check.h"
#include "gpu_check_ref.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cu_api CU;
CUstream g_stream;
static int n_fail, n_pass;
static uint64_t rng = 0x5eed1234abcdULL;

uint64_t rnd_u64(void) /* xorshift64* */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

float rnd_f(void) /* uniform in [-1, 1) */
{
    return (float)((rnd_u64() >> 40) * (1.0 / 8388608.0) - 1.0);
}

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

/* ---- host data ------------------------------------------------------------ */

float *hrand(size_t n, float scale)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = rnd_f() * scale;
    return p;
}

/* Random 16-bit weights: the rounded values as floats, and the device copy. */
float *wrand(flock_dtype t, size_t n, float scale, CUdeviceptr *dev)
{
    float *f = hrand(n, scale);
    uint16_t *bits = malloc(2 * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        bits[i] = t == FLOCK_DTYPE_BF16 ? flock_f32_to_bf16(f[i]) : flock_f32_to_f16(f[i]);
        f[i] = t == FLOCK_DTYPE_BF16 ? flock_bf16_to_f32(bits[i]) : flock_f16_to_f32(bits[i]);
    }
    *dev = dput(bits, 2 * n);
    free(bits);
    return f;
}

/* A sorted random subset of k of [0, n). */
int *rand_subset(int n, int k)
{
    int *all = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        all[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)(rnd_u64() % (uint64_t)(n - i));
        int t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    int *s = malloc(sizeof(int) * (size_t)(k ? k : 1));
    memcpy(s, all, sizeof(int) * (size_t)k);
    free(all);
    for (int i = 1; i < k; i++) /* insertion sort: small k in checks */
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            int t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    return s;
}

static double nrm_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den == 0 ? (num == 0 ? 0 : INFINITY) : sqrt(num / den);
}

/* Compares a device result with the reference; NaN anywhere fails. */
void expect(const char *cfg, const char *what, CUdeviceptr d, const float *ref, size_t n, double tol)
{
    float *got = malloc(sizeof(float) * (n ? n : 1));
    dget(got, d, sizeof(float) * n);
    double e = nrm_err(got, ref, n);
    bool ok = e <= tol; /* false for NaN */
    printf("  %-14s %-34s err %.2e (tol %.0e)  %s\n", cfg, what, e, tol, ok ? "ok" : "FAIL");
    ok ? n_pass++ : n_fail++;
    free(got);
}

void expect_true(const char *cfg, const char *what, bool ok)
{
    printf("  %-14s %-34s %s\n", cfg, what, ok ? "ok" : "FAIL");
    ok ? n_pass++ : n_fail++;
}

int main(int argc, char **argv)
{
    int bench = 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--no-bench") == 0)
            bench = 0;
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
    const int cc = major * 10 + minor;

    printf("== kernels against the CPU reference ==\n");
    check_all_configs(cc);
    printf("kernel checks: %d passed, %d failed\n", n_pass, n_fail);
    if (bench)
        bench_run(cc);
    printf("kernel checks: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
