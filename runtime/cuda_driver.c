/* The CUDA backend's device layer on libcuda (cuda_driver.h): the driver
 * API loaded with dlopen at run time (never linked), device 0's primary
 * context, one stream. Every call's CUresult is checked; a failure's
 * message names the call and the driver's error name and string. */
#include "cuda_api.h"
#include "cuda_driver.h"
#include "error_impl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cu_lib {
    flock_cuda_driver d; /* first: the driver handle is a cu_lib */
    void *lib;
    cu_device dev;
    cu_context ctx;
    cu_stream stream;
    bool ctx_retained;
    cu_init_t init;
    cu_device_get_t device_get;
    cu_device_get_attribute_t device_get_attribute;
    cu_device_get_name_t device_get_name;
    cu_device_total_mem_t device_total_mem;
    cu_primary_ctx_retain_t primary_ctx_retain;
    cu_primary_ctx_release_t primary_ctx_release;
    cu_ctx_set_current_t ctx_set_current;
    cu_ctx_synchronize_t ctx_synchronize;
    cu_module_load_data_ex_t module_load_data_ex;
    cu_module_unload_t module_unload;
    cu_module_get_function_t module_get_function;
    cu_mem_alloc_t mem_alloc;
    cu_mem_free_t mem_free;
    cu_memset_d8_t memset_d8;
    cu_memcpy_htod_t memcpy_htod;
    cu_memcpy_dtoh_t memcpy_dtoh;
    cu_memcpy_dtod_async_t memcpy_dtod_async;
    cu_stream_create_t stream_create;
    cu_stream_destroy_t stream_destroy;
    cu_stream_synchronize_t stream_synchronize;
    cu_launch_kernel_t launch_kernel;
    cu_occupancy_t occupancy;
    cu_get_error_t get_error_name;
    cu_get_error_t get_error_string;
} cu_lib;

static cu_lib *L(flock_cuda_driver *d)
{
    return (cu_lib *)d;
}

/* FLOCK_E_DEVICE "what: CUDA_ERROR_X (n): the driver's sentence". */
static flock_status cu_fail(const cu_lib *c, cu_result r, const char *what, flock_error *err)
{
    const char *name = NULL, *str = NULL;
    if (c->get_error_name && c->get_error_name(r, &name) != 0)
        name = NULL;
    if (c->get_error_string && c->get_error_string(r, &str) != 0)
        str = NULL;
    return flock_error_set(err, r == 2 ? FLOCK_E_NOMEM : FLOCK_E_DEVICE, "%s: %s (%u): %s", what,
                           name ? name : "CUDA error", r, str ? str : "no description");
}

#define CU_CHECK(c, call, what)                      \
    do {                                             \
        cu_result r_ = (call);                       \
        if (r_ != 0)                                 \
            return cu_fail((c), r_, (what), err);    \
    } while (0)

static flock_status drv_bind(flock_cuda_driver *d, flock_error *err)
{
    cu_lib *c = L(d);
    CU_CHECK(c, c->ctx_set_current(c->ctx), "cuCtxSetCurrent");
    return FLOCK_OK;
}

static flock_status drv_module_load(flock_cuda_driver *d, const void *image, size_t size, bool ptx,
                                    flock_cuda_module **out, flock_error *err)
{
    cu_lib *c = L(d);
    (void)size; /* CUBIN (ELF) and PTX (NUL-terminated text) carry their own length */
    /* The JIT's error log says what ptxas refused in a PTX image. */
    char log[4096] = "";
    unsigned int opts[2] = {CU_JIT_ERROR_LOG_BUF, CU_JIT_ERROR_LOG_BUF_BYTES};
    void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
    cu_module m = NULL;
    cu_result r = c->module_load_data_ex(&m, image, 2, opts, vals);
    if (r != 0) {
        log[sizeof log - 1] = '\0';
        flock_status st = cu_fail(c, r, ptx ? "cuModuleLoadDataEx (PTX)" : "cuModuleLoadDataEx (CUBIN)", err);
        if (err && log[0]) {
            char what[sizeof err->msg];
            snprintf(what, sizeof what, "%s", err->msg);
            flock_error_set(err, st, "%s; JIT log: %s", what, log);
        }
        return st;
    }
    *out = (flock_cuda_module *)m;
    return FLOCK_OK;
}

static void drv_module_unload(flock_cuda_driver *d, flock_cuda_module *m)
{
    if (m)
        L(d)->module_unload((cu_module)m);
}

static flock_status drv_get_function(flock_cuda_driver *d, flock_cuda_module *m, const char *name,
                                     flock_cuda_func **out, flock_error *err)
{
    cu_lib *c = L(d);
    cu_function f = NULL;
    cu_result r = c->module_get_function(&f, (cu_module)m, name);
    if (r != 0) {
        flock_status st = cu_fail(c, r, "cuModuleGetFunction", err);
        flock_error_prefix(err, st, "kernel %s", name);
        return st;
    }
    *out = (flock_cuda_func *)f;
    return FLOCK_OK;
}

static flock_status drv_blocks_per_sm(flock_cuda_driver *d, flock_cuda_func *f, unsigned block, size_t smem,
                                      int *out, flock_error *err)
{
    cu_lib *c = L(d);
    CU_CHECK(c, c->occupancy(out, (cu_function)f, (int)block, smem), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    return FLOCK_OK;
}

static flock_status drv_alloc(flock_cuda_driver *d, size_t bytes, flock_dptr *out, flock_error *err)
{
    cu_lib *c = L(d);
    cu_deviceptr p = 0;
    cu_result r = c->mem_alloc(&p, bytes ? bytes : 16);
    if (r != 0) {
        flock_status st = cu_fail(c, r, "cuMemAlloc", err);
        flock_error_prefix(err, st, "%zu bytes on the GPU", bytes);
        return st;
    }
    *out = (flock_dptr)p;
    return FLOCK_OK;
}

static void drv_free(flock_cuda_driver *d, flock_dptr p)
{
    if (p)
        L(d)->mem_free((cu_deviceptr)p);
}

static flock_status drv_memset8(flock_cuda_driver *d, flock_dptr p, uint8_t v, size_t n, flock_error *err)
{
    cu_lib *c = L(d);
    /* cuMemsetD8 runs on the legacy stream, which our (blocking) stream is ordered with. */
    CU_CHECK(c, c->memset_d8((cu_deviceptr)p, v, n), "cuMemsetD8");
    return FLOCK_OK;
}

static flock_status drv_htod(flock_cuda_driver *d, flock_dptr dst, const void *src, size_t n, flock_error *err)
{
    cu_lib *c = L(d);
    /* Synchronous copy on the legacy stream: ordered after the launches
     * already queued on our blocking stream, and src is free on return. */
    CU_CHECK(c, c->memcpy_htod((cu_deviceptr)dst, src, n), "cuMemcpyHtoD");
    return FLOCK_OK;
}

static flock_status drv_dtod(flock_cuda_driver *d, flock_dptr dst, flock_dptr src, size_t n, flock_error *err)
{
    cu_lib *c = L(d);
    CU_CHECK(c, c->memcpy_dtod_async((cu_deviceptr)dst, (cu_deviceptr)src, n, c->stream), "cuMemcpyDtoDAsync");
    return FLOCK_OK;
}

static flock_status drv_dtoh(flock_cuda_driver *d, void *dst, flock_dptr src, size_t n, flock_error *err)
{
    cu_lib *c = L(d);
    CU_CHECK(c, c->memcpy_dtoh(dst, (cu_deviceptr)src, n), "cuMemcpyDtoH");
    return FLOCK_OK;
}

static flock_status drv_launch(flock_cuda_driver *d, flock_cuda_func *f, const unsigned grid[3],
                               const unsigned block[3], unsigned smem, void **args, flock_error *err)
{
    cu_lib *c = L(d);
    CU_CHECK(c, c->launch_kernel((cu_function)f, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem,
                                 c->stream, args, NULL),
             "cuLaunchKernel");
    return FLOCK_OK;
}

static flock_status drv_synchronize(flock_cuda_driver *d, flock_error *err)
{
    cu_lib *c = L(d);
    /* A kernel's fault surfaces here (CUDA_ERROR_ILLEGAL_ADDRESS, ...). */
    CU_CHECK(c, c->stream_synchronize(c->stream), "cuStreamSynchronize");
    return FLOCK_OK;
}

static void drv_close(flock_cuda_driver *d)
{
    if (!d)
        return;
    cu_lib *c = L(d);
    if (c->ctx_retained)
        c->ctx_set_current(c->ctx);
    if (c->stream)
        c->stream_destroy(c->stream);
    if (c->ctx_retained)
        c->primary_ctx_release(c->dev);
    /* libcuda stays loaded: unloading a driver after cuInit is not safe. */
    free(c);
}

/* dlsym into *slot; FLOCK_E_UNSUPPORTED when the symbol is missing. */
static flock_status load_sym(void *lib, const char *name, void *slot, const char *path, flock_error *err)
{
    void *p = dlsym(lib, name);
    RETURN_ERROR_IF(!p, FLOCK_E_UNSUPPORTED, err, "CUDA driver %s lacks %s (driver too old?)", path, name);
    memcpy(slot, &p, sizeof p); /* a data pointer to a function pointer, as dlsym is meant to be used */
    return FLOCK_OK;
}

static flock_status open_device(cu_lib *c, flock_error *err)
{
    CU_CHECK(c, c->init(0), "cuInit");
    CU_CHECK(c, c->device_get(&c->dev, 0), "cuDeviceGet(0)");
    CU_CHECK(c, c->primary_ctx_retain(&c->ctx, c->dev), "cuDevicePrimaryCtxRetain");
    c->ctx_retained = true;
    CU_CHECK(c, c->ctx_set_current(c->ctx), "cuCtxSetCurrent");
    flock_cuda_dev_info *in = &c->d.info;
    CU_CHECK(c, c->device_get_attribute(&in->cc_major, CU_ATTR_CC_MAJOR, c->dev), "cuDeviceGetAttribute(cc major)");
    CU_CHECK(c, c->device_get_attribute(&in->cc_minor, CU_ATTR_CC_MINOR, c->dev), "cuDeviceGetAttribute(cc minor)");
    CU_CHECK(c, c->device_get_attribute(&in->sm_count, CU_ATTR_MULTIPROCESSOR_COUNT, c->dev),
             "cuDeviceGetAttribute(multiprocessors)");
    CU_CHECK(c, c->device_get_name(in->name, (int)sizeof in->name, c->dev), "cuDeviceGetName");
    in->name[sizeof in->name - 1] = '\0';
    size_t mem = 0;
    CU_CHECK(c, c->device_total_mem(&mem, c->dev), "cuDeviceTotalMem");
    in->total_mem = mem;
    CU_CHECK(c, c->stream_create(&c->stream, CU_STREAM_FLAGS_DEFAULT), "cuStreamCreate");
    return FLOCK_OK;
}

flock_status flock_cuda_driver_open(flock_cuda_driver **out, flock_error *err)
{
    char why[256];
    void *lib = flock_cuda_dlopen(why, sizeof why);
    if (!lib)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "%s", why);
    cu_lib *c = calloc(1, sizeof *c);
    if (!c)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    c->lib = lib;
    const struct {
        const char *name;
        void *slot;
    } syms[] = {
        {"cuInit", &c->init},
        {"cuDeviceGet", &c->device_get},
        {"cuDeviceGetAttribute", &c->device_get_attribute},
        {"cuDeviceGetName", &c->device_get_name},
        {"cuDeviceTotalMem_v2", &c->device_total_mem},
        {"cuDevicePrimaryCtxRetain", &c->primary_ctx_retain},
        {"cuDevicePrimaryCtxRelease_v2", &c->primary_ctx_release},
        {"cuCtxSetCurrent", &c->ctx_set_current},
        {"cuCtxSynchronize", &c->ctx_synchronize},
        {"cuModuleLoadDataEx", &c->module_load_data_ex},
        {"cuModuleUnload", &c->module_unload},
        {"cuModuleGetFunction", &c->module_get_function},
        {"cuMemAlloc_v2", &c->mem_alloc},
        {"cuMemFree_v2", &c->mem_free},
        {"cuMemsetD8_v2", &c->memset_d8},
        {"cuMemcpyHtoD_v2", &c->memcpy_htod},
        {"cuMemcpyDtoH_v2", &c->memcpy_dtoh},
        {"cuMemcpyDtoDAsync_v2", &c->memcpy_dtod_async},
        {"cuStreamCreate", &c->stream_create},
        {"cuStreamDestroy_v2", &c->stream_destroy},
        {"cuStreamSynchronize", &c->stream_synchronize},
        {"cuLaunchKernel", &c->launch_kernel},
        {"cuOccupancyMaxActiveBlocksPerMultiprocessor", &c->occupancy},
        {"cuGetErrorName", &c->get_error_name},
        {"cuGetErrorString", &c->get_error_string},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        flock_status st = load_sym(lib, syms[i].name, syms[i].slot, flock_cuda_library_path(), err);
        if (st != FLOCK_OK) {
            free(c);
            dlclose(lib); /* nothing was initialized yet */
            return st;
        }
    }
    c->d.name = "libcuda";
    c->d.bind = drv_bind;
    c->d.module_load = drv_module_load;
    c->d.module_unload = drv_module_unload;
    c->d.get_function = drv_get_function;
    c->d.blocks_per_sm = drv_blocks_per_sm;
    c->d.alloc = drv_alloc;
    c->d.free = drv_free;
    c->d.memset8 = drv_memset8;
    c->d.htod = drv_htod;
    c->d.dtod = drv_dtod;
    c->d.dtoh = drv_dtoh;
    c->d.launch = drv_launch;
    c->d.synchronize = drv_synchronize;
    c->d.close = drv_close;
    flock_status st = open_device(c, err);
    if (st != FLOCK_OK) {
        drv_close(&c->d);
        return st;
    }
    *out = &c->d;
    return FLOCK_OK;
}
