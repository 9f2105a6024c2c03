/*
 * flock/codegen.h - IR + a target -> kernels.
 *
 * Sections: CUDA C through NVRTC (FLOCK_CUDA) and CPU machine code through
 * the LLVM C API (FLOCK_LLVM). Each section's functions exist only when its
 * option is on.
 */
#ifndef FLOCK_CODEGEN_H
#define FLOCK_CODEGEN_H

#include "flock/formats.h"
#include "flock/ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* CPU kernels through the LLVM C API (FLOCK_LLVM)                          */
/* ======================================================================== */
/*
 * flock_llvm_cpu_kernels() builds LLVM IR for kernels specialized to one
 * model's shapes, optimizes it (O3), emits an object file for the target
 * CPU and links it into a self-contained container (docs/cpu-kernels-format.md)
 * that the runtime loads without LLVM (runtime/cpu_jit_loader.h). The bundle
 * stores it as the kernel section "cpu:<target>".
 *
 * Generated code calls nothing (no libm: exp and erfc are polynomials in
 * the IR) and references no data outside its blob. All loads are unaligned-safe;
 * pointers need only their element alignment.
 *
 * C ABI of the generated kernels (T = the weight storage type: float,
 * uint16_t holding f16 bits, or uint16_t holding bf16 bits; d = d_model,
 * F = d_ff, k = kept neurons, compile-time constants of each kernel):
 *
 *  FFN_UP   flock_ffn_up_<dt>_<act>_d<d>_f<F>_k<k>
 *    void (const float *x, const int32_t *idx, int32_t j0, int32_t j1,
 *          const void *gate_up, float *h);
 *    for j in [max(j0,0), min(j1,k)): i = idx[j] (0 <= i < F; an index out
 *      of range is clamped to F-1, never read outside the tensor);
 *      h[j] = act(gate_up[i][0:d] . x) * (gate_up[i][d:2d] . x)
 *    gate_up is the packed [F, 2d] tensor. Threads split [0,k) by j.
 *    Cost: 2*d*sizeof(T) bytes of weights and 4*d FLOPs per kept row.
 *
 *  FFN_DOWN flock_ffn_down_<dt>_d<d>_f<F>_k<k>
 *    void (const float *h, const int32_t *idx, int32_t c0, int32_t c1,
 *          const void *down_t, float *y);
 *    for c in [max(c0,0), min(c1,d)): y[c] = sum_{j<k} h[j] * down_t[idx[j]][c]
 *    (y[c] is overwritten). down_t is the packed [F, d] tensor (row i =
 *    column i of W_down). Threads split [0,d) by columns, after every
 *    thread's FFN_UP part is done (a barrier: each y needs all of h).
 *    Column ranges that are multiples of 16 keep the vector loop full.
 *
 *  FFN      flock_ffn_<dt>_<act>_d<d>_f<F>_k<k>
 *    void (const float *x, const int32_t *idx, const void *gate_up,
 *          const void *down_t, float *h, float *y);
 *    FFN_UP over [0,k) then FFN_DOWN over [0,d): the one-thread path.
 *
 *  MATVEC   flock_matvec_<dt>_c<cols>
 *    void (const void *w, const float *x, int64_t r0, int64_t r1, float *y);
 *    for r in [r0, r1): y[r] = w[r][0:cols] . x  (y indexed by absolute row;
 *    w is row-major [rows, cols]). For linear layers and the LM head.
 *
 * x, h and y are f32. h holds k floats. Accumulation is in f32 with
 * several partial sums, so results differ from a sequential sum by rounding.
 */

/* One dense matrix-vector shape to generate (input width and weight dtype). */
typedef struct flock_cpu_matvec_spec {
    int32_t cols;
    flock_dtype dtype;  /* F32, F16 or BF16 */
} flock_cpu_matvec_spec;

/* What to generate for one model. */
typedef struct flock_cpu_kernel_spec {
    int32_t d_model;
    int32_t d_ff;
    flock_dtype ffn_dtype;   /* F32, F16 or BF16: storage of gate_up and down_t */
    flock_act act;           /* SILU, GELU, GELU_TANH or RELU (gated FF) */
    uint32_t n_keep;         /* 0: no FF kernels */
    const double *keep;      /* ratios in (0,1]; k = floor(keep * d_ff) in double (as the
                                runtime's GRIFFIN selection), must be >= 1 */
    uint32_t n_matvec;
    const flock_cpu_matvec_spec *matvec;
} flock_cpu_kernel_spec;

/* Fills `spec` for a verified program: the gated FFN ops over the packed
 * layout (all must share d_model, d_ff, act and the gate_up dtype, else
 * FLOCK_E_UNSUPPORTED) at the `n_keep` ratios `keep`, and one matvec per
 * distinct (input width, dtype) of the LINEAR and LM_HEAD ops whose matrix
 * is f32/f16/bf16, stored in mv[0..mv_cap). spec->keep and spec->matvec
 * point into `keep` and `mv`. FLOCK_E_NOT_FOUND when nothing applies. */
flock_status flock_llvm_cpu_spec_from_program(const flock_program *p, const double *keep, uint32_t n_keep,
                                              flock_cpu_kernel_spec *spec, flock_cpu_matvec_spec *mv,
                                              uint32_t mv_cap, flock_error *err);

/* Whether `target` names a CPU target this build of LLVM can generate for:
 * "cpu" (the compiling host: tuned for its CPU, using the host features the
 * loader can check), "x86-64-v3"
 * (AVX2/FMA/F16C/BMI2), "x86-64-v4" (AVX-512 F/BW/CD/DQ/VL), "aarch64"
 * (ARMv8-A with NEON; only when LLVM was built with the AArch64 target). */
bool flock_llvm_cpu_target_supported(const char *target);

/* The canonical name of `target`, which the container records and the
 * bundle's section is named after ("cpu:<name>"): "x86-64-v3",
 * "x86-64-v4", "aarch64", or "host-<LLVM CPU name>" for "cpu" (e.g.
 * "host-sapphirerapids"). FLOCK_E_UNSUPPORTED for an unknown target. */
flock_status flock_llvm_cpu_target_name(const char *target, char *buf, size_t n, flock_error *err);

/* Builds the kernel container for `spec` and `target` (see above). On
 * success *out is a malloc'd buffer (caller frees) of *size bytes.
 * FLOCK_E_INVALID_ARG for a bad spec, FLOCK_E_UNSUPPORTED for an unknown
 * target, FLOCK_E_INTERNAL when LLVM fails or its output needs something
 * the container cannot hold (an external call, a writable section, an
 * unknown relocation); the message says what. */
flock_status flock_llvm_cpu_kernels(const flock_cpu_kernel_spec *spec, const char *target,
                                    uint8_t **out, size_t *size, flock_error *err);

/* Same kernels as textual assembly (NUL-terminated, malloc'd; caller frees),
 * for inspection (flockc --emit-asm, tests). */
flock_status flock_llvm_cpu_asm(const flock_cpu_kernel_spec *spec, const char *target, char **out,
                                flock_error *err);

/* The relocatable ELF object LLVM emitted, before flock links it into the
 * container (malloc'd; caller frees): for inspection with binutils/LLVM
 * tools and for checking flock's linker against a system linker. */
flock_status flock_llvm_cpu_object(const flock_cpu_kernel_spec *spec, const char *target, uint8_t **out,
                                   size_t *size, flock_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_CODEGEN_H */
