/* libFuzzer target: the runtime's loader of generated CPU kernel containers
 * (runtime/cpu_jit_loader.c). Checking and loading must never crash; a
 * container that loads is unmapped again (its code is never run).
 *
 * Each input is tried as is, and again with its checksum field recomputed,
 * so that mutations reach the kernel table behind the checksum. Seeds:
 * BUILD/seeds/cpu_kernels/, written by test_cpu_jit_loader and
 * test_codegen_llvm. */
#include "cpu_jit_loader.h"
#include "cpu_kernels_format.h"
#include "reader.h"

#include <stdlib.h>
#include <string.h>

static void try_one(const uint8_t *data, size_t size)
{
    flock_error err;
    (void)flock_cpu_jit_check(data, size, &err);
    flock_cpu_jit *j = NULL;
    if (flock_cpu_jit_load(data, size, &j, &err) == FLOCK_OK) {
        for (size_t i = 0; i < flock_cpu_jit_count(j); i++)
            (void)flock_cpu_jit_entry_at(j, i)->name[0];
        flock_cpu_jit_free(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_one(data, size);
    if (size >= FLOCK_CPUK_CHECKSUM_AT + 8) {
        uint8_t *copy = malloc(size);
        if (!copy)
            return 0;
        memcpy(copy, data, size);
        flock_wr_u64(copy + FLOCK_CPUK_CHECKSUM_AT, flock_cpuk_checksum(copy, size));
        try_one(copy, size);
        free(copy);
    }
    return 0;
}
