/*
 * flock/codegen.h - IR + a target -> kernels.
 *
 * Two parts: CUDA C through NVRTC (FLOCK_CUDA) and CPU machine code through
 * the LLVM C API (FLOCK_LLVM).
 *
 * CUDA: CUDA C source specialized at compile time on one model's dimensions,
 * its storage dtype (f16/bf16 weights, f32 accumulation) and each GRIFFIN
 * keep ratio (loop bounds, grid shapes and unrolling are constants), compiled
 * by NVRTC to CUBIN (sm_80, sm_89, sm_90, ...) or PTX (compute_80 for newer
 * GPUs), and packed with a table of its kernels into a "kernel blob": the
 * payload of a bundle's FLOCK_SECTION_KERNELS section named "cuda:<target>".
 *
 * The NVRTC parts exist only when flock is built with FLOCK_CUDA; without it
 * flock_codegen_cuda returns FLOCK_E_UNSUPPORTED, and everything else works.
 *
 * The LLVM functions exist only when flock is built with FLOCK_LLVM.
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
    const double *keep;      /* ratios in (0,1]; k = flock_keep_count(keep, d_ff) (as the
                                runtime's GRIFFIN selection) */
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

/* ======================================================================== */
/* The model facts the kernels are specialized on                           */
/* ======================================================================== */

#define FLOCK_CODEGEN_MAX_KEEP 8
/* The quantized matrix types the CUDA kernels read (flock_codegen_model.qtypes). */
#define FLOCK_CODEGEN_QTYPES ((1u << FLOCK_DTYPE_Q8_0) | (1u << FLOCK_DTYPE_Q4_0) | (1u << FLOCK_DTYPE_Q4_1))

typedef struct flock_codegen_model {
    int32_t d_model;      /* hidden width; % 8 == 0 (16-byte rows) */
    int32_t d_ff;         /* FF width */
    int32_t n_head, n_kv_head, head_dim; /* n_head % n_kv_head == 0; n_head*head_dim % 8 == 0;
                                            head_dim <= 256 */
    int32_t vocab;
    int32_t rope_dim;     /* leading dims of each head rotated; even, <= head_dim */
    flock_rope_style rope_style;
    flock_dtype wtype;    /* F16 or BF16: storage of every 16-bit matrix */
    uint32_t qtypes;      /* bit (1u << dtype) per quantized matrix type present: Q8_0,
                             Q4_0, Q4_1 (FLOCK_CODEGEN_QTYPES); 0 = all 16-bit */
    flock_dtype kv_type;  /* F16 or F32: the KV cache */
    flock_act act;        /* FF activation */
    uint8_t gated;        /* 1: act(x Wg^T) * (x Wu^T); 0: act(x W1^T + b1) */
    float attn_scale;     /* score scale; 0 = 1/sqrt(head_dim) */
    float attn_softcap;   /* c*tanh(s/c) on scores; 0 = none */
    uint32_t n_keep;      /* 1..FLOCK_CODEGEN_MAX_KEEP GRIFFIN keep ratios */
    float keep[FLOCK_CODEGEN_MAX_KEEP]; /* each in (0, 1]; 1.0 = dense FF */
} flock_codegen_model;

/* Checks ranges and the divisibility the kernels rely on; the message names the field. */
flock_status flock_codegen_model_check(const flock_codegen_model *m, flock_error *err);

/* Reads the facts from a verified program: the first ATTENTION/ROPE op,
 * the FFN ops (all FFN ops must agree on d_ff, act and gating), the
 * LM head's vocabulary, and the matrices' storage types: wtype (their one
 * 16-bit type, f16 when none is 16-bit) and qtypes; a matrix of any other
 * type (f32, q5_0, q4_k, q6_k) is FLOCK_E_UNSUPPORTED naming the tensor.
 * `keep` (n_keep ratios) and `kv_type` are the compiler's choices. On
 * failure *out is untouched. */
flock_status flock_codegen_model_from_program(const flock_program *p, const float *keep, uint32_t n_keep,
                                              flock_dtype kv_type, flock_codegen_model *out,
                                              flock_error *err);

/* The kept-neuron count of a keep ratio is flock_keep_count (flock/formats.h),
 * shared with the runtime, which picks the kernels for a ratio by it. */

/* ======================================================================== */
/* CUDA                                                                     */
/* ======================================================================== */

/* Kernel kinds; the blob's table stores these numbers (only grows at the end).
 * Entry-point parameters (all pointers are device pointers; f32 unless said;
 * "w16" = 16-bit weights; kv_t = the KV cache type):
 *  EMBED            (const int *tok, const w16 *table, float scale, float *out)        grid T
 *  RMSNORM spec=group (const float *x, const float *w, float eps, int unit_offset, float *y)
 *                                                                  grid T*width/group
 *  ROPE             (float *x, int n_heads, int pos0, const float *inv_freq[rope_dim/2])  grid T
 *  KV_STORE         (const float *k, const float *v, int pos0, kv_t *kcache, kv_t *vcache)  grid T
 *  ATTN_PARTIAL     (const float *q, const kv_t *kc, const kv_t *vc, int pos0, int window,
 *                    int chunk, int n_split, float *part_o, float2 *part_ml)  grid (n_head, n_split, T)
 *  ATTN_COMBINE     (const float *part_o, const float2 *part_ml, int n_split, float *out)  grid (n_head, T)
 *  ADD              (const float *a, const float *b, int n, float *y)        grid ceil(n/256)
 *  GEMV spec=N spec2=K (const float *x, const w16 *W, const float *bias, const float *resid, float *y)
 *                    grid: any (grid-stride); the table's grid gives every warp one row pair
 *  FFN_GATHER spec=keep count (const float *x, const int *idx, const w16 *gate_up_or_w1,
 *                    const float *b1, float *h)   grid: any (grid-stride), as GEMV
 *  FFN_DOWN spec=keep count spec2=suggested split (const float *h, const int *idx,
 *                    const w16 *down_t, float *part[n_split*d_model], int *counters[tiles],
 *                    const float *resid, const float *bias, float *y)  grid (tiles, n_split)
 *                    tiles = ceil(d_model/256); with counters (zeroed once; each launch
 *                    leaves them zero) the last block of a tile writes y = resid + bias +
 *                    sum of the partials in order; counters NULL: only the partials, then
 *  FFN_DOWN_REDUCE  (const float *part, int n_part, const float *resid, const float *bias, float *y)
 *  (a grid of one wave, SMs x resident blocks from the driver's occupancy
 *  query, avoids a tail for GEMV, FFN_GATHER and FFN_DOWN's n_split)
 *  GRIFFIN_ROWNORM  (const float *z[T*d_ff], float *inv[T])                   grid T
 *  GRIFFIN_COLSUM   (const float *z, const float *inv, int T, float *stat[d_ff])
 *  GRIFFIN_RANK spec=keep count (const float *stat, int *sel[d_ff])
 *  GRIFFIN_COMPACT  (const int *sel, int *idx[keep count])
 *  GEMM spec=N spec2=K  (const float *X, int M, const w16 *W, const float *bias, const float *R,
 *                    float *Y)                                               grid (ceil(N/64), ceil(M/64))
 *  FFN_UP_PREFILL   same parameters as GEMM; gated: Y = z [M, d_ff] = act(gate)*up from
 *                    gate_up; plain: Y = act(X W1^T + b1)
 *  FFN_DOWN_PREFILL same parameters as GEMM, W = down_t [d_ff, d_model]: Y = R + X down + bias
 *  LAYERNORM spec=group (const float *x, const float *w, const float *b, float eps, float *y)
 *                                                                  grid T*width/group
 *  POS_EMBED        (const float *x, const w16 *table, int n_pos, int pos0, int offset, float *y)  grid T
 *  ROPE_KV_STORE    (float *q, float *k, const float *v, int pos0, const float *inv_freq,
 *                    kv_t *kcache, kv_t *vcache)   grid T: ROPE on q and k, then KV_STORE
 *  QGEMV, QFFN_GATHER, QFFN_DOWN, QEMBED, QPOS_EMBED: as GEMV, FFN_GATHER, FFN_DOWN,
 *                    EMBED, POS_EMBED with the matrix in GGML blocks (const u8 *) of the type
 *                    the name carries ("flock_qgemv_q8_0_n<N>_k<K>"); one set per qtypes bit
 *  DEQUANT          (const u8 *w, int n_blocks, u16 *out)  grid: any (grid-stride): the
 *                    blocks' weights as 16-bit wtype values, for the prefill GEMMs
 * bias/resid/R may be NULL; outputs may alias resid/R. Shapes, layouts and
 * the deterministic split-k reduction are documented in codegen/cuda_*.cu. */
/* The kinds themselves (enum flock_cuda_kernel_kind), the kernel table row
 * (flock_cuda_kernel_info) and the blob reader are in flock/formats.h. */

/* The generated CUDA C source (NUL-terminated, malloc'd: caller frees) and
 * the kernel table it defines (*kernels malloc'd with the names in the same
 * allocation: one free; pass NULL to skip). Deterministic: the same model
 * gives the same bytes (golden tests, flockc --emit-cuda). */
flock_status flock_codegen_cuda_source(const flock_codegen_model *m, char **src, size_t *len,
                                       flock_cuda_kernel_info **kernels, size_t *n_kernels,
                                       flock_error *err);

/* Generates and compiles the kernels for `target`: "sm_80", "sm_89", "sm_90"
 * (any sm_XY >= 80) gives CUBIN; "compute_80" (any compute_XY >= 80) gives
 * PTX for GPUs newer than the CUBINs. *blob is malloc'd (caller frees). On
 * an NVRTC failure the message holds the start of NVRTC's log.
 * FLOCK_E_UNSUPPORTED when flock was built without FLOCK_CUDA. */
flock_status flock_codegen_cuda(const flock_codegen_model *m, const char *target, uint8_t **blob,
                                size_t *size, flock_error *err);

/* Whether this build can compile CUDA (built with FLOCK_CUDA: NVRTC linked). */
bool flock_codegen_cuda_available(void);

/* Packs the kernel table of `m` with an already compiled image (used by
 * flock_codegen_cuda; also by tests and tools). `arch` e.g. 90; image_kind
 * FLOCK_CUDA_IMAGE_CUBIN or _PTX. */
flock_status flock_codegen_cuda_pack(const flock_codegen_model *m, uint32_t arch, uint32_t image_kind,
                                     const void *image, size_t image_size, uint8_t **blob, size_t *size,
                                     flock_error *err);

/* The kernel blob's layout and its reader (flock_cuda_blob_parse, _kernel,
 * _find) are in flock/formats.h: the runtime reads blobs without codegen. */

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_CODEGEN_H */
