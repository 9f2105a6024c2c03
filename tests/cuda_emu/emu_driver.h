/* Tests: the CUDA backend's device layer on the CPU emulator (emu_driver.c). */
#ifndef FLOCK_TESTS_EMU_DRIVER_H
#define FLOCK_TESTS_EMU_DRIVER_H

#include "cuda_driver.h"
#include "cuda_emu_launch.h"

/* The emulated device reports compute capability 9.0 (takes "cuda:sm_90"). */
#define EMU_CC_MAJOR 9
#define EMU_CC_MINOR 0

/* The kernel table modules resolve names in, and the FNV-1a 64 hash of the
 * source it was generated from (a module's image must hash the same). */
void emu_driver_use(const emu_kernel *table, size_t n, unsigned long long source_hash);
/* A flock_cuda_driver_open_fn (flock_cuda_set_driver). */
flock_status emu_driver_open(flock_cuda_driver **out, flock_error *err);

typedef struct emu_driver_stats {
    unsigned long long launches, allocs;
    long long live; /* allocations not yet freed */
} emu_driver_stats;
emu_driver_stats emu_driver_get_stats(void);

#endif
