/* Devices: the CUDA driver probe (libcuda loaded with dlopen at run time, so
 * a CPU-only host needs no CUDA install and the runtime never links it) and
 * the choice of a session's device. */
#include "cuda_driver.h"
#include "flock/flock.h"
#include "flock/base.h"
#include "names.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const device_names[] = {
    [FLOCK_DEVICE_AUTO] = "auto",
    [FLOCK_DEVICE_CPU] = "cpu",
    [FLOCK_DEVICE_CUDA] = "cuda",
};
_Static_assert(sizeof device_names / sizeof device_names[0] == FLOCK_DEVICE_COUNT, "device_names");

FLOCK_NAME_FUNCS(flock_device, device_names, FLOCK_DEVICE_COUNT, flock_device_name, flock_device_parse)

/* ---- the driver sessions open (tests replace it) ------------------------------ */

static flock_cuda_driver_open_fn driver_open = flock_cuda_driver_open;
static bool have_test_info;
static flock_cuda_info test_info;

void flock_cuda_set_driver(flock_cuda_driver_open_fn open, const flock_cuda_info *info)
{
    driver_open = open ? open : flock_cuda_driver_open;
    have_test_info = open && info;
    if (have_test_info)
        test_info = *info;
}

flock_cuda_driver_open_fn flock_cuda_driver_opener(void)
{
    return driver_open;
}

/* ---- the probe ------------------------------------------------------------ */

/* The few driver API entry points the probe calls (CUresult = int,
 * CUdevice = int; cuda.h is not needed to build the runtime). */
typedef int (*cu_init_fn)(unsigned flags);
typedef int (*cu_int_fn)(int *v);
typedef int (*cu_device_get_fn)(int *dev, int ordinal);
typedef int (*cu_attribute_fn)(int *v, int attribute, int dev);
typedef int (*cu_name_fn)(char *name, int len, int dev);
typedef int (*cu_total_mem_fn)(size_t *bytes, int dev);
typedef int (*cu_error_name_fn)(int result, const char **name);

enum { CU_ATTR_CC_MAJOR = 75, CU_ATTR_CC_MINOR = 76 };

/* Writes "what: CUDA_ERROR_X (n)" into out->reason. */
static void cu_reason(flock_cuda_info *out, void *lib, const char *what, int r)
{
    const char *name = NULL;
    cu_error_name_fn error_name = (cu_error_name_fn)dlsym(lib, "cuGetErrorName");
    if (!error_name || error_name(r, &name) != 0 || !name)
        name = "CUDA error";
    snprintf(out->reason, sizeof out->reason, "%s: %s (%d)", what, name, r);
}

const char *flock_cuda_library_path(void)
{
    const char *path = getenv("FLOCK_CUDA_LIBRARY");
    return path && *path ? path : "libcuda.so.1";
}

void *flock_cuda_dlopen(char *why, size_t n)
{
    const char *path = flock_cuda_library_path();
    dlerror();
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(why, n, "no CUDA driver: %s", e ? e : path);
    }
    return lib;
}

bool flock_cuda_probe(flock_cuda_info *out)
{
    memset(out, 0, sizeof *out);
    void *lib = flock_cuda_dlopen(out->reason, sizeof out->reason);
    if (!lib)
        return false;
    /* dlsym returns void *; the driver's functions are called through these types. */
    cu_init_fn init = (cu_init_fn)dlsym(lib, "cuInit");
    cu_int_fn driver_version = (cu_int_fn)dlsym(lib, "cuDriverGetVersion");
    cu_int_fn device_count = (cu_int_fn)dlsym(lib, "cuDeviceGetCount");
    cu_device_get_fn device_get = (cu_device_get_fn)dlsym(lib, "cuDeviceGet");
    cu_attribute_fn attribute = (cu_attribute_fn)dlsym(lib, "cuDeviceGetAttribute");
    cu_name_fn device_name = (cu_name_fn)dlsym(lib, "cuDeviceGetName");
    cu_total_mem_fn total_mem = (cu_total_mem_fn)dlsym(lib, "cuDeviceTotalMem_v2");
    if (!init || !driver_version || !device_count || !device_get || !attribute || !device_name || !total_mem) {
        snprintf(out->reason, sizeof out->reason, "no CUDA driver: %s lacks the driver API (cuInit, cuDeviceGet, ...)",
                 flock_cuda_library_path());
        dlclose(lib);
        return false;
    }
    /* From here the library stays loaded: unloading a driver after cuInit is not safe. */
    int r = init(0);
    if (r != 0) {
        cu_reason(out, lib, "cuInit", r);
        return false;
    }
    out->driver = true;
    driver_version(&out->driver_version);
    int n = 0, dev = 0;
    if ((r = device_count(&n)) != 0 || n <= 0) {
        if (r)
            cu_reason(out, lib, "cuDeviceGetCount", r);
        else
            snprintf(out->reason, sizeof out->reason, "the CUDA driver reports no device");
        return false;
    }
    if ((r = device_get(&dev, 0)) != 0 || (r = attribute(&out->cc_major, CU_ATTR_CC_MAJOR, dev)) != 0 ||
        (r = attribute(&out->cc_minor, CU_ATTR_CC_MINOR, dev)) != 0) {
        cu_reason(out, lib, "device 0", r);
        out->cc_major = out->cc_minor = 0;
        return false;
    }
    out->n_devices = n;
    if (device_name(out->name, (int)sizeof out->name, dev) != 0)
        out->name[0] = '\0';
    out->name[sizeof out->name - 1] = '\0';
    size_t mem = 0;
    if (total_mem(&mem, dev) == 0)
        out->total_mem = mem;
    return true;
}

/* ---- a session's device ------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static flock_cuda_info probe_info;
static bool probe_present;

static void probe_cached(void)
{
    probe_present = flock_cuda_probe(&probe_info);
}

/* "NVIDIA H200 (sm_90, 139.8 GiB), driver 12.4" or the reason there is none. */
static void describe(const flock_cuda_info *ci, bool present, char *buf, size_t n)
{
    if (present)
        snprintf(buf, n, "CUDA device 0 %s (sm_%d%d, %.1f GiB), driver %d.%d", ci->name[0] ? ci->name : "?",
                 ci->cc_major, ci->cc_minor, (double)ci->total_mem / (1024.0 * 1024.0 * 1024.0),
                 ci->driver_version / 1000, ci->driver_version % 1000 / 10);
    else
        snprintf(buf, n, "%s", ci->reason);
}

/* The probe, once per process: cuInit can take a good fraction of a second
 * on a GPU host, and sessions are created often (flock eval). */
static bool probe(flock_cuda_info *ci)
{
    if (have_test_info) {
        *ci = test_info;
        return ci->n_devices > 0;
    }
    pthread_once(&probe_once, probe_cached);
    *ci = probe_info;
    return probe_present;
}

flock_status flock_device_check_cuda(char *what, size_t what_n, flock_error *err)
{
    flock_cuda_info ci;
    bool present = probe(&ci);
    char d[384];
    describe(&ci, present, d, sizeof d);
    if (!present)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "no CUDA device (%s)", d);
    /* The kernels use sm_80 features (mma.sync bf16, cvt.rn.bf16x2). */
    if (ci.cc_major < 8)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "%s; flock's CUDA kernels need compute capability 8.0 or newer", d);
    snprintf(what, what_n, "%s", d);
    return FLOCK_OK;
}

flock_status flock_device_resolve(flock_device want, flock_device *got, char *note, size_t note_n,
                                  flock_error *err)
{
    if ((unsigned)want >= FLOCK_DEVICE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "device %d out of range", (int)want);
    if (want == FLOCK_DEVICE_CPU) {
        snprintf(note, note_n, "cpu: asked for");
        *got = FLOCK_DEVICE_CPU;
        return FLOCK_OK;
    }
    char what[384];
    flock_error ce = {0};
    flock_status st = flock_device_check_cuda(what, sizeof what, &ce);
    if (want == FLOCK_DEVICE_CUDA) {
        if (st != FLOCK_OK)
            return flock_error_set(err, st, "device cuda: %s", ce.msg);
        snprintf(note, note_n, "cuda: asked for (%s)", what);
        *got = FLOCK_DEVICE_CUDA;
        return FLOCK_OK;
    }
    if (st == FLOCK_OK)
        snprintf(note, note_n, "auto: cuda (%s)", what);
    else
        snprintf(note, note_n, "auto: cpu (cuda passed over: %.480s)", ce.msg);
    *got = st == FLOCK_OK ? FLOCK_DEVICE_CUDA : FLOCK_DEVICE_CPU;
    return FLOCK_OK;
}
