/* Private to the runtime: loads the generated CPU kernels of a bundle's
 * `cpu:<target>` kernel section (docs/cpu-kernels-format.md) without LLVM.
 *
 * The container is checked completely (bounds, names, kinds, checksum);
 * then the host CPU is checked for the architecture and every feature the
 * code needs. A container the host cannot run is FLOCK_E_UNSUPPORTED: the
 * executor then uses its portable kernels. Code is copied into fresh pages
 * which are made read+execute (never writable and executable at once).
 *
 * The C ABI of each kernel kind is documented in flock/codegen.h. */
#ifndef FLOCK_RUNTIME_CPU_JIT_LOADER_H
#define FLOCK_RUNTIME_CPU_JIT_LOADER_H

#include "cpu_kernels_format.h"
#include "flock/formats.h"
#include "flock/ir.h"

#include <stddef.h>
#include <stdint.h>

typedef void (*flock_cpu_ffn_up_fn)(const float *x, const int32_t *idx, int32_t j0, int32_t j1,
                                    const void *gate_up, float *h);
typedef void (*flock_cpu_ffn_down_fn)(const float *h, const int32_t *idx, int32_t c0, int32_t c1,
                                      const void *down_t, float *y);
typedef void (*flock_cpu_ffn_fn)(const float *x, const int32_t *idx, const void *gate_up, const void *down_t,
                                 float *h, float *y);
typedef void (*flock_cpu_matvec_fn)(const void *w, const float *x, int64_t r0, int64_t r1, float *y);

/* One kernel of a loaded container (strings owned by the handle). */
typedef flock_cpuk_entry flock_cpu_jit_entry;

typedef struct flock_cpu_jit flock_cpu_jit;

/* The gated-FF kernels for one keep ratio. */
typedef struct flock_cpu_ffn_kernels {
    flock_cpu_ffn_up_fn up;
    flock_cpu_ffn_down_fn down;
    flock_cpu_ffn_fn both;
} flock_cpu_ffn_kernels;

/* Feature bits (FLOCK_CPUF_*) of this CPU and OS; detected once. */
uint64_t flock_cpu_host_features(void);

/* Checks a container without running anything: structure, ranges, names,
 * checksum. FLOCK_E_TRUNCATED / E_CORRUPT / E_CHECKSUM / E_VERSION, or
 * E_UNSUPPORTED for an unknown feature bit. */
flock_status flock_cpu_jit_check(const void *data, size_t size, flock_error *err);

/* Checks the container (as above), then that this CPU can run it, then
 * copies the code into executable memory. `data` may be freed afterwards.
 * FLOCK_E_UNSUPPORTED when the code is for another architecture or needs a
 * feature the CPU lacks (the message names it): use the portable kernels.
 * FLOCK_E_IO when the pages cannot be mapped or made executable. */
flock_status flock_cpu_jit_load(const void *data, size_t size, flock_cpu_jit **out, flock_error *err);

/* Same, against the given feature set instead of the host's (tests, and a
 * runtime option to turn features off); never accepts more than the host has. */
flock_status flock_cpu_jit_load_for(const void *data, size_t size, uint64_t features, flock_cpu_jit **out,
                                    flock_error *err);

/* Unmaps the code; function pointers from the handle become invalid. */
void flock_cpu_jit_free(flock_cpu_jit *j);

const char *flock_cpu_jit_target(const flock_cpu_jit *j);   /* e.g. "x86-64-v3" */
uint64_t flock_cpu_jit_features(const flock_cpu_jit *j);    /* what the code needs */
size_t flock_cpu_jit_count(const flock_cpu_jit *j);
const flock_cpu_jit_entry *flock_cpu_jit_entry_at(const flock_cpu_jit *j, size_t i);

/* The FF kernels for (dtype, act, d_model, d_ff, k), or FLOCK_E_NOT_FOUND. */
flock_status flock_cpu_jit_find_ffn(const flock_cpu_jit *j, flock_dtype dtype, flock_act act, int32_t d,
                                    int32_t d_ff, int32_t k, flock_cpu_ffn_kernels *out, flock_error *err);

/* The matrix-vector kernel for (dtype, cols), or FLOCK_E_NOT_FOUND. */
flock_status flock_cpu_jit_find_matvec(const flock_cpu_jit *j, flock_dtype dtype, int32_t cols,
                                       flock_cpu_matvec_fn *out, flock_error *err);

#endif
