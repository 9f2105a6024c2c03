/* Private to the LLVM CPU code generator: the IR emitters (llvm_kernels.c),
 * the target driver (llvm_target.c) and the object linker / container writer
 * (llvm_link.c). */
#ifndef FLOCK_CODEGEN_LLVM_CPU_H
#define FLOCK_CODEGEN_LLVM_CPU_H

#include "flock/codegen.h"

#include <llvm-c/Core.h>

/* One kernel to export from the module, with the metadata the container
 * records for it. */
typedef struct lcpu_kernel {
    char name[128];
    uint32_t kind;   /* FLOCK_CPUK_* */
    flock_dtype dtype;
    flock_act act;
    int32_t d, n, k;
} lcpu_kernel;

/* How the IR emitters should shape code for the chosen target. */
typedef struct lcpu_target_opts {
    int vw;              /* f32 lanes per vector value (4, 8 or 16) */
    bool native_f16;     /* fpext <N x half> is a native instruction (F16C, AArch64) */
    const char *cpu;     /* "target-cpu" attribute */
    const char *tune;    /* "tune-cpu" attribute, or "" */
    const char *features;/* "target-features" attribute */
    int prefetch_lines;  /* lines prefetched at the start of upcoming gathered rows; 0 = none */
} lcpu_target_opts;

/* Adds every kernel of `spec` to module M (fresh, in context C) and lists
 * them in *kernels (malloc'd, *n entries). Returns FLOCK_E_INVALID_ARG for a
 * bad spec, FLOCK_E_NOMEM. */
flock_status lcpu_emit_module(LLVMContextRef C, LLVMModuleRef M, const flock_cpu_kernel_spec *spec,
                              const lcpu_target_opts *t, lcpu_kernel **kernels, size_t *n,
                              flock_error *err);

/* Links the ELF relocatable object `obj` (x86-64 or AArch64, little-endian)
 * into one position-independent blob and writes the container for the
 * listed kernels. *out is malloc'd. */
flock_status lcpu_link_container(const uint8_t *obj, size_t obj_size, uint32_t arch, uint64_t features,
                                 const char *target_name, const lcpu_kernel *kernels, size_t n_kernels,
                                 uint8_t **out, size_t *out_size, flock_error *err);

#endif
