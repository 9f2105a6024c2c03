/* Plain CPU references for the generated CUDA kernels (tools/gpu_check.c).
 * Obviously-correct loops in double precision over f32 inputs; weights are
 * given as f32 arrays holding the already-rounded 16-bit values, so a
 * reference sees exactly what the kernel reads. Shapes as in
 * codegen/cuda_*.cu. */
#ifndef FLOCK_GPU_CHECK_REF_H
#define FLOCK_GPU_CHECK_REF_H

#include "flock/codegen.h"

#include <stdint.h>

/* act by flock_act numbering (none, SiLU, GELU erf, GELU tanh, ReLU). */
double ref_act(int act, double x);

/* y[n] = W[n,:] . x + bias[n] + resid[n] (bias/resid may be NULL). */
void ref_gemv(const float *w, const float *x, const float *bias, const float *resid, int N, int K, float *y);

/* Gated: gu [F, 2D]; plain: w1 [F, D] with b1. h[j] for the kept idx[j]. */
void ref_ffn_gather(const flock_codegen_model *m, const float *w, const float *b1, const float *x,
                    const int *idx, int keep_n, float *h);

/* y[c] = resid[c] + bias[c] + sum_j h[j] down_t[idx[j], c]. */
void ref_ffn_down(const float *down_t, const float *h, const int *idx, int keep_n, int D, const float *resid,
                  const float *bias, float *y);

/* Per group of `group` elements, rows n_groups. */
void ref_rmsnorm(const float *x, const float *w, int group, int n_groups, float eps, int unit_offset, float *y);

/* LayerNorm over rows of `group` (b may be NULL). */
void ref_layernorm(const float *x, const float *w, const float *b, int group, int n_rows, float eps, float *y);

/* x [T, n_heads*head_dim] in place, positions pos0 + t, inv_freq [rope_dim/2]. */
void ref_rope(float *x, int T, int n_heads, int head_dim, int rope_dim, int neox, int pos0,
              const float *inv_freq);

/* One step of T queries at positions pos0 + t over caches [.., kv_dim] (as
 * f32): out [T, n_head*head_dim]. window 0 = full. scale: score scale. */
void ref_attention(const flock_codegen_model *m, const float *q, const float *kc, const float *vc, int T, int pos0,
                   int window, float scale, float *out);

/* GRIFFIN: stat[i] += sum_t (z[t,i]/||z[t]||)^2 (a zero row adds nothing). */
void ref_griffin_stat(const float *z, int T, int F, float *stat);
/* The keep_n neurons with the largest stat (ties to the lower index; NaN
 * as -inf), in ascending index order. */
void ref_griffin_select(const float *stat, int F, int keep_n, int *idx);

/* Y = epilogue(X W^T) with W [N,K] (wkn 0) or [K,N] (wkn 1); X is rounded
 * to the weight type first, as the tensor-core kernel does. epi: 0 linear
 * (+bias, +R), 1 GLU (Y [M, N/2]), 2 act(acc + bias). */
void ref_gemm(const float *X, int M, const float *W, int N, int K, int wkn, int epi, int act, flock_dtype wtype,
              const float *bias, const float *R, float *Y);

/* The model shapes whose kernels are checked: tiny, Gemma-like (bf16, f32
 * KV, softcap, head_dim 256), OPT-like (plain ReLU FF, no RoPE), GELU-erf
 * with odd sizes (f16 KV, head_dim 128, q_dim != d), and a Llama-2-7B layer. M: prompt rows for the GEMMs.
 * `emulate`: small enough for the CPU emulator (tests/cuda_emu). */
typedef struct gpu_check_config {
    const char *label;
    flock_codegen_model m;
    int M;
    int emulate;
} gpu_check_config;
const gpu_check_config *gpu_check_configs(size_t *n);

/* Rounds v to the 16-bit type and back. */
float ref_round(flock_dtype t, float v);

#endif
