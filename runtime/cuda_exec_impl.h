/* Private to the CUDA executor: its state, shared by cuda_exec.c (checks,
 * kernel resolution, memory) and cuda_ops.c (the op walk). */
#ifndef FLOCK_RUNTIME_CUDA_EXEC_IMPL_H
#define FLOCK_RUNTIME_CUDA_EXEC_IMPL_H

#include "cuda_exec.h"

#define FLOCK_CUDA_CHUNK 256     /* prompt tokens per step (GEMM rows) */
#define FLOCK_CUDA_ATTN_KEYS 64  /* keys per attention split (docs/cuda-kernels.md: "a fair choice") */

/* A resolved kernel: its table row and, for grid-stride kernels, the
 * blocks that fill the GPU once (SMs x resident blocks). */
typedef struct cuda_kern {
    flock_cuda_kernel_info info;
    flock_cuda_func *fn;
    unsigned wave;
} cuda_kern;

/* Per program op: the kernels it launches and its device constants. */
typedef struct cuda_op {
    const cuda_kern *k[4]; /* by kind: see cuda_exec.c, resolve_op */
    const cuda_kern *dq[2]; /* quantized w[0] / FFN down_t: their dequant kernel for prefill, else NULL */
    flock_dptr inv_freq;   /* ROPE: [rope_dim/2] */
    int32_t ffn;           /* FFN: index into ffn[], else -1 */
    uint32_t n_part;       /* FFN: split of the decode down projection */
} cuda_op;

/* Per FFN op: GRIFFIN's state on the device. */
typedef struct cuda_ffn {
    flock_dptr stat; /* [d_ff] f32: sum over the prompt of (z/||z||)^2 */
    flock_dptr sel;  /* [d_ff] int: 1 = kept */
    flock_dptr idx;  /* [d_ff] int: the kept neurons, ascending (first k used) */
} cuda_ffn;

struct flock_cuda_exec {
    flock_cuda_driver *drv;
    const flock_program *prog;
    const flock_wmat *tensors;
    flock_cuda_blob blob;
    char section[64];
    flock_cuda_module *mod;
    cuda_kern *kerns;        /* [blob.n_kernels]; fn NULL until first resolved */
    const flock_plan *plan;  /* the program's analysis (flock/plan.h), the model's */
    uint64_t *tensor_bytes;  /* [n_tensors] as stored on the host, for the decode bytes */
    int64_t *ffn_k;          /* [n_ffn] scratch for the decode bytes */
    int32_t n_ctx, chunk;
    bool all_logits;
    size_t n_past;
    int64_t keep_k;          /* flock_keep_count(keep, d_ff) */
    uint32_t max_split;      /* attention splits for n_ctx keys */

    cuda_op *ops;            /* [n_ops] */
    flock_dptr *w;           /* [n_tensors]: uploaded weights, 0 where unused */
    flock_dptr tok;          /* [chunk] int */
    flock_dptr slots;        /* [n_slots][chunk][max_width] f32 */
    flock_dptr kc[FLOCK_MAX_KV_SLOTS], vc[FLOCK_MAX_KV_SLOTS]; /* [n_ctx][KV_DIM] kv_t */
    flock_dptr part_o, part_ml; /* attention: [chunk][n_head][max_split][head_dim], float2 [..][max_split] */
    flock_dptr z, inv, h;    /* FF: [chunk][d_ff], [chunk], [d_ff] */
    flock_dptr part, counters; /* decode down projection: [max n_part][d_model], [tiles] (zero) */
    flock_dptr dlogits;      /* [chunk or 1][vocab] */
    flock_dptr wscratch;     /* prefill: one quantized matrix expanded to 16 bits (0 if none) */
    uint64_t wscratch_bytes;
    float *logits;           /* host: [n_ctx or 1][vocab] */
    cuda_ffn *dffn;          /* [n_ffn] */
    flock_exec_ffn *ffn;     /* [n_ffn] host view (idx [d_ff], k) */
    const cuda_kern *rownorm, *colsum, *compact;
    const cuda_kern *rank;   /* griffin_rank_k<keep_k> */
};

/* Launches k on grid (gx, gy, gz) with its table's block shape. */
flock_status flock_cuda_launch(flock_cuda_exec *c, const cuda_kern *k, unsigned gx, unsigned gy, unsigned gz,
                               void **args, flock_error *err);

#endif
