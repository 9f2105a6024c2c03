/* Private: the device layer under the CUDA backend (cuda_exec.c). A small
 * table of functions, so that the backend runs unchanged on a GPU (libcuda,
 * loaded with dlopen: cuda_driver.c) and on the CPU emulator of the tests
 * (tests/cuda_emu_driver.c: device memory is host memory, a launch runs the
 * generated kernel's C++ body).
 *
 * Every call reports failure as a flock_status with a message naming the
 * call and, for libcuda, the driver's error name and string. Device
 * addresses are 64-bit (CUdeviceptr). */
#ifndef FLOCK_RUNTIME_CUDA_DRIVER_H
#define FLOCK_RUNTIME_CUDA_DRIVER_H

#include "flock/flock.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t flock_dptr;                 /* a device address; 0 = NULL */
typedef struct flock_cuda_module flock_cuda_module; /* CUmodule (opaque) */
typedef struct flock_cuda_func flock_cuda_func;     /* CUfunction (opaque) */

/* Device 0, as the driver reports it. */
typedef struct flock_cuda_dev_info {
    char name[128];
    int cc_major, cc_minor;
    int sm_count;       /* multiprocessors */
    uint64_t total_mem; /* bytes */
} flock_cuda_dev_info;

typedef struct flock_cuda_driver flock_cuda_driver;
struct flock_cuda_driver {
    const char *name; /* "libcuda", "emulator": for messages */
    flock_cuda_dev_info info;
    /* Makes the device's context current on the calling thread (a session
     * may be used from another thread than the one that created it). */
    flock_status (*bind)(flock_cuda_driver *d, flock_error *err);
    /* Loads a kernel image (CUBIN, or PTX that the driver compiles; PTX
     * errors carry the JIT log). */
    flock_status (*module_load)(flock_cuda_driver *d, const void *image, size_t size, bool ptx,
                                flock_cuda_module **out, flock_error *err);
    void (*module_unload)(flock_cuda_driver *d, flock_cuda_module *m);
    flock_status (*get_function)(flock_cuda_driver *d, flock_cuda_module *m, const char *name,
                                 flock_cuda_func **out, flock_error *err);
    /* Resident blocks of f per multiprocessor at this block size. */
    flock_status (*blocks_per_sm)(flock_cuda_driver *d, flock_cuda_func *f, unsigned block, size_t smem, int *out,
                                  flock_error *err);
    flock_status (*alloc)(flock_cuda_driver *d, size_t bytes, flock_dptr *out, flock_error *err);
    void (*free)(flock_cuda_driver *d, flock_dptr p); /* 0: no-op */
    flock_status (*memset8)(flock_cuda_driver *d, flock_dptr p, uint8_t v, size_t n, flock_error *err);
    /* Copies, ordered with the launches (the host buffer is free on return). */
    flock_status (*htod)(flock_cuda_driver *d, flock_dptr dst, const void *src, size_t n, flock_error *err);
    /* Device to device, ordered with the launches. */
    flock_status (*dtod)(flock_cuda_driver *d, flock_dptr dst, flock_dptr src, size_t n, flock_error *err);
    /* Waits for the launches before it, then copies. */
    flock_status (*dtoh)(flock_cuda_driver *d, void *dst, flock_dptr src, size_t n, flock_error *err);
    /* args[i] points at argument i's value (a flock_dptr for a pointer
     * parameter, an int or a float), as cuLaunchKernel's kernelParams. */
    flock_status (*launch)(flock_cuda_driver *d, flock_cuda_func *f, const unsigned grid[3], const unsigned block[3],
                           unsigned smem, void **args, flock_error *err);
    flock_status (*synchronize)(flock_cuda_driver *d, flock_error *err);
    /* Frees the driver (its context reference, stream and state). */
    void (*close)(flock_cuda_driver *d);
};

/* Opens device 0 through libcuda.so.1 ($FLOCK_CUDA_LIBRARY names another
 * file): cuInit, cuDevicePrimaryCtxRetain + cuCtxSetCurrent, one stream.
 * FLOCK_E_UNSUPPORTED without a driver or device (the message says why). */
flock_status flock_cuda_driver_open(flock_cuda_driver **out, flock_error *err);
/* The driver library: $FLOCK_CUDA_LIBRARY, else libcuda.so.1. */
const char *flock_cuda_library_path(void);
/* dlopens that library; NULL with "no CUDA driver: <dlerror>" in why[n] when
 * it cannot be loaded. */
void *flock_cuda_dlopen(char *why, size_t n);

/* Tests: sessions open their device through `open` instead of libcuda, and
 * device resolution takes `info` as the probe's answer. NULL restores the
 * real driver and probe. Not thread-safe: set it before creating sessions. */
typedef flock_status (*flock_cuda_driver_open_fn)(flock_cuda_driver **out, flock_error *err);
void flock_cuda_set_driver(flock_cuda_driver_open_fn open, const flock_cuda_info *info);
/* The opener sessions use now (the real one, or the test's). */
flock_cuda_driver_open_fn flock_cuda_driver_opener(void);
/* Whether device 0 can run flock's CUDA kernels (probed once per process,
 * or the test's info): FLOCK_OK with its description in what[what_n]
 * ("CUDA device 0 NVIDIA H200 (sm_90, 139.8 GiB), driver 12.4"), else
 * FLOCK_E_UNSUPPORTED saying why not ("no CUDA device (...)"). */
flock_status flock_device_check_cuda(char *what, size_t what_n, flock_error *err);

#endif
