/* libFuzzer target: the runtime's loader of generated CPU kernel containers
 * (runtime/cpu_jit_loader.c). Checking and loading must never crash; a
 * container that loads is unmapped again (its code is never run). Seeds:
 * BUILD/seeds/cpu_kernels/, written by test_cpu_jit_loader and
 * test_codegen_llvm. */
#include "cpu_jit_loader.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flock_error err;
    (void)flock_cpu_jit_check(data, size, &err);
    flock_cpu_jit *j = NULL;
    if (flock_cpu_jit_load(data, size, &j, &err) == FLOCK_OK) {
        for (size_t i = 0; i < flock_cpu_jit_count(j); i++)
            (void)flock_cpu_jit_entry_at(j, i)->name[0];
        flock_cpu_jit_free(j);
    }
    return 0;
}
