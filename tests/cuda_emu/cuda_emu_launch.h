/* The CPU emulator's C interface (tests/cuda_emu): the kernel tables the
 * generated emulation sources export, and the launch call. */
#ifndef FLOCK_CUDA_EMU_LAUNCH_H
#define FLOCK_CUDA_EMU_LAUNCH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A kernel as the emulator calls it: the launch's argument pointers. */
typedef void (*emu_entry)(void **args);
typedef struct emu_kernel {
    const char *name;
    emu_entry fn;
} emu_kernel;

/* Runs fn over the grid, block after block, each block's threads as real
 * threads. Returns non-zero for a shape the emulator does not take. */
int emu_launch(emu_entry fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
               void **args);

#ifdef __cplusplus
}
#endif
#endif
