/* The CUDA backend's device layer (runtime/cuda_driver.h) on the CPU
 * emulator, for tests: "device" memory is host memory (poisoned with 0xff
 * bytes, NaN as f32, so a read of anything never written shows), a module
 * is the emulated kernel table generated at build time from the same CUDA
 * source flockc compiles (tests/cuda_emu/gen_emu.c), and a launch runs the
 * kernel's C++ body through emu_launch with the grid and block it is given.
 * Not a mock: the backend's real op walk runs the real generated kernels. */
#include "emu_driver.h"
#include "flock/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const emu_kernel *g_table;
static size_t g_n;
static unsigned long long g_hash;
static emu_driver_stats g_stats;

void emu_driver_use(const emu_kernel *table, size_t n, unsigned long long source_hash)
{
    g_table = table;
    g_n = n;
    g_hash = source_hash;
}

emu_driver_stats emu_driver_get_stats(void)
{
    return g_stats;
}

static void *host(flock_dptr p)
{
    return (void *)(uintptr_t)p;
}

static uint64_t fnv1a(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
    return h;
}

static flock_status emu_bind(flock_cuda_driver *d, flock_error *err)
{
    (void)d;
    (void)err;
    return FLOCK_OK;
}

static flock_status emu_module_load(flock_cuda_driver *d, const void *image, size_t size, bool ptx,
                                    flock_cuda_module **out, flock_error *err)
{
    (void)d;
    (void)ptx;
    if (!g_table)
        return flock_error_set(err, FLOCK_E_DEVICE, "emulator: no kernel table (emu_driver_use)");
    /* The image is the generated source itself (the test packs it so):
     * the emulated kernels must be built from exactly those bytes. */
    if (fnv1a(image, size) != g_hash)
        return flock_error_set(err, FLOCK_E_DEVICE,
                               "emulator: the section's image (%zu bytes) is not the source the emulated kernels "
                               "were generated from", size);
    *out = (flock_cuda_module *)(uintptr_t)1;
    return FLOCK_OK;
}

static void emu_module_unload(flock_cuda_driver *d, flock_cuda_module *m)
{
    (void)d;
    (void)m;
}

static flock_status emu_get_function(flock_cuda_driver *d, flock_cuda_module *m, const char *name,
                                     flock_cuda_func **out, flock_error *err)
{
    (void)d;
    (void)m;
    for (size_t i = 0; i < g_n; i++)
        if (strcmp(g_table[i].name, name) == 0) {
            *out = (flock_cuda_func *)(uintptr_t)&g_table[i];
            return FLOCK_OK;
        }
    return flock_error_set(err, FLOCK_E_DEVICE, "emulator: no kernel %s (CUDA_ERROR_NOT_FOUND)", name);
}

static flock_status emu_blocks_per_sm(flock_cuda_driver *d, flock_cuda_func *f, unsigned block, size_t smem,
                                      int *out, flock_error *err)
{
    (void)d;
    (void)f;
    (void)block;
    (void)smem;
    (void)err;
    *out = 2; /* with 4 "SMs": a wave of 8 blocks, so grid-stride loops and split-k take several turns */
    return FLOCK_OK;
}

static flock_status emu_alloc(flock_cuda_driver *d, size_t bytes, flock_dptr *out, flock_error *err)
{
    (void)d;
    size_t n = (bytes + 255) & ~(size_t)255;
    void *p = aligned_alloc(256, n ? n : 256); /* cuMemAlloc aligns to at least 256 bytes */
    if (!p)
        return flock_error_set(err, FLOCK_E_NOMEM, "emulator: %zu bytes", bytes);
    memset(p, 0xff, n ? n : 256);
    g_stats.allocs++;
    g_stats.live++;
    *out = (flock_dptr)(uintptr_t)p;
    return FLOCK_OK;
}

static void emu_free(flock_cuda_driver *d, flock_dptr p)
{
    (void)d;
    if (p) {
        g_stats.live--;
        free(host(p));
    }
}

static flock_status emu_memset8(flock_cuda_driver *d, flock_dptr p, uint8_t v, size_t n, flock_error *err)
{
    (void)d;
    (void)err;
    memset(host(p), v, n);
    return FLOCK_OK;
}

static flock_status emu_htod(flock_cuda_driver *d, flock_dptr dst, const void *src, size_t n, flock_error *err)
{
    (void)d;
    (void)err;
    memcpy(host(dst), src, n);
    return FLOCK_OK;
}

static flock_status emu_dtod(flock_cuda_driver *d, flock_dptr dst, flock_dptr src, size_t n, flock_error *err)
{
    (void)d;
    (void)err;
    memmove(host(dst), host(src), n);
    return FLOCK_OK;
}

static flock_status emu_dtoh(flock_cuda_driver *d, void *dst, flock_dptr src, size_t n, flock_error *err)
{
    (void)d;
    (void)err;
    memcpy(dst, host(src), n);
    return FLOCK_OK;
}

static flock_status emu_launch_fn(flock_cuda_driver *d, flock_cuda_func *f, const unsigned grid[3],
                                  const unsigned block[3], unsigned smem, void **args, flock_error *err)
{
    (void)d;
    const emu_kernel *k = (const emu_kernel *)(uintptr_t)f;
    if (smem != 0)
        return flock_error_set(err, FLOCK_E_DEVICE, "emulator: %s asks for %u bytes of dynamic shared memory",
                               k->name, smem);
    if (emu_launch(k->fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], args) != 0)
        return flock_error_set(err, FLOCK_E_DEVICE,
                               "emulator: %s refused grid (%u, %u, %u) block (%u, %u, %u) (CUDA_ERROR_INVALID_VALUE)",
                               k->name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
    g_stats.launches++;
    return FLOCK_OK;
}

static flock_status emu_synchronize(flock_cuda_driver *d, flock_error *err)
{
    (void)d;
    (void)err;
    return FLOCK_OK;
}

static void emu_close(flock_cuda_driver *d)
{
    free(d);
}

flock_status emu_driver_open(flock_cuda_driver **out, flock_error *err)
{
    flock_cuda_driver *d = calloc(1, sizeof *d);
    if (!d)
        return flock_error_set(err, FLOCK_E_NOMEM, "emulator: out of memory");
    d->name = "emulator";
    snprintf(d->info.name, sizeof d->info.name, "CPU emulator");
    d->info.cc_major = EMU_CC_MAJOR;
    d->info.cc_minor = EMU_CC_MINOR;
    d->info.sm_count = 4;
    d->info.total_mem = 1ULL << 30;
    d->bind = emu_bind;
    d->module_load = emu_module_load;
    d->module_unload = emu_module_unload;
    d->get_function = emu_get_function;
    d->blocks_per_sm = emu_blocks_per_sm;
    d->alloc = emu_alloc;
    d->free = emu_free;
    d->memset8 = emu_memset8;
    d->htod = emu_htod;
    d->dtod = emu_dtod;
    d->dtoh = emu_dtoh;
    d->launch = emu_launch_fn;
    d->synchronize = emu_synchronize;
    d->close = emu_close;
    *out = d;
    return FLOCK_OK;
}
