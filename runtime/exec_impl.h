/* Private to the executor: its state, shared by exec.c (planning) and
 * exec_ops.c (the per-op compute). */
#ifndef FLOCK_RUNTIME_EXEC_IMPL_H
#define FLOCK_RUNTIME_EXEC_IMPL_H

#include "exec.h"

#define FLOCK_EXEC_CHUNK 128 /* prompt tokens per step: each weight is streamed once per chunk */
#define FLOCK_GATHER_SLICES 16 /* fixed split of the decode FF (deterministic sums) */
#define FLOCK_EXEC_TILE 4   /* weight rows converted to f32 at a time in prefill (= dot4) */
#define FLOCK_EXEC_WTILE 12 /* ... with gemm12x32 (the tile buffer holds this many rows) */
#define FLOCK_STAT_SLICES 8 /* fixed token slices of the FF activation and GRIFFIN's statistic */
#define FLOCK_EXEC_WIDE_T 16 /* prompt steps of at least this many tokens use the outer-product tile */
#define FLOCK_EXEC_INT8_T 2 /* ... of at least this many, the int8 tile (gemmq) where the table and dtype have it */

struct flock_exec {
    const flock_program *prog;
    const flock_plan *plan;
    const flock_wmat *tensors;
    const flock_kernel_table *k;
    flock_pool *pool;
    int n_threads;
    int32_t n_ctx, chunk;
    bool all_logits;
    size_t n_past;

    /* from the plan */
    int32_t n_vocab, embed_rows, head_op;
    int32_t max_width, max_dff, max_rope_dim;
    int32_t max_heads, max_head_dim; /* over ATTENTION ops */
    int32_t n_ffn;
    int32_t kv_width[FLOCK_MAX_KV_SLOTS];

    /* buffers */
    const int32_t *value_slot; /* [n_values]; -1 for token ids and logits (the plan's) */
    int32_t n_slots;
    float *slot_mem;     /* [n_slots][chunk][max_width] */
    void *kcache[FLOCK_MAX_KV_SLOTS], *vcache[FLOCK_MAX_KV_SLOTS]; /* [n_kv_head][n_ctx][head_dim] f32, or f16 where kv_f16 */
    bool kv_f16;
    float *ffn_h;        /* [chunk][2 * max_dff]: gate/up (interleaved) or fc1 output */
    float *ffn_z;        /* [chunk][max_dff]: the FF intermediate activation */
    float *part;         /* [GATHER_SLICES][max_width]: partial sums of the gather FF */
    flock_q8x *xq;       /* [max_width / 32]: the decode input as int8 blocks (kernels.h, dotq) */
    float *att_scratch;  /* flock_att_scratch_floats(threads, n_ctx, max_heads, max_head_dim) */
    float *tile;         /* [threads][WTILE][max row]: weight rows converted to f32 */
    float *xt;           /* [max_width][xt_tp]: a prompt step's input transposed (outer tile), or NULL */
    flock_q8x *xqt;      /* [chunk][max_width / 32]: a prompt step's input as int8 blocks (gemmq), or NULL */
    size_t xt_tp;
    float *dscratch;     /* [threads][max_dff][64]: a column block of down_t as f32 (prefill) */
    double *stat_part;   /* [STAT_SLICES][max_dff]: GRIFFIN's statistic per token slice (prefill) */
    float *rope_cs;      /* [max_rope_dim]: cos, sin pairs of one position */
    float *logits;       /* [n_ctx or 1][n_vocab] */
    flock_exec_ffn *ffn; /* [n_ffn] */
    /* generated kernels (flock_exec_use_jit), NULL when unused */
    flock_cpu_ffn_kernels *gen_ffn; /* [n_ffn]: up/down NULL where none */
    int64_t *gen_k;                 /* [n_ffn]: the k the kernel was generated for */
    flock_cpu_matvec_fn *gen_mv;    /* [n_ops]: LINEAR / LM_HEAD, NULL where none */
    const int32_t *op_ffn; /* [n_ops]: index into ffn, or -1 (the plan's) */
    uint64_t *tensor_bytes; /* [n_tensors]: as stored, for the decode bytes */
    int64_t *ffn_k;         /* [n_ffn]: scratch for the decode bytes */
    /* GRIFFIN's kept rows packed (exec_ops.c, pack_layer): NULL when off
     * (flock_session_opts.pack_rows false) */
    struct flock_exec_pack *pack; /* [n_ffn] */
};

/* The kept neurons' gate_up (or fc1) rows, then their down_t rows, copied
 * byte for byte in kept order: a one-sequence decode then streams them
 * contiguously instead of gathering scattered rows. Valid while k and idx
 * equal the layer's selection (checked every step); allocated when a
 * selection is first packed, grown only for a larger k. */
typedef struct flock_exec_pack {
    uint8_t *rows;   /* [cap][bytes1], then [cap][bytes2] */
    int32_t *idx;    /* [d_ff]: the kept list packed */
    int64_t k, cap;  /* k = 0: nothing packed (pack_layer runs for k > 0 only) */
    bool failed;     /* out of memory once: this layer gathers in place */
} flock_exec_pack;

/* The table's outer-product prefill tile: gemm12x32 (12 rows x 32 tokens)
 * where it has it, else gemm6x16 (6 x 16), else NULL (the dot kernels). */
static inline flock_outer_gemm_fn flock_exec_outer_gemm(const flock_kernel_table *k, int *rows, int *tokens)
{
    if (k->gemm12x32) {
        *rows = FLOCK_EXEC_WTILE, *tokens = 32;
        return k->gemm12x32;
    }
    *rows = 6, *tokens = 16;
    return k->gemm6x16;
}

/* The [chunk, width] buffer of value v (inline, so that the op compute in
 * exec_ops.c calls nothing of exec.c: the walk calls the ops, not back). */
static inline float *flock_exec_value(flock_exec *e, int32_t v)
{
    return e->slot_mem + (size_t)e->value_slot[v] * (size_t)e->chunk * (size_t)e->max_width;
}
/* FLOCK_E_RANGE when positions n_past..n_past+n-1 exceed a position table. */
flock_status flock_exec_check_positions(const flock_exec *e, size_t n, flock_error *err);
/* Decode (T = 1): runs op i and the LINEAR ops right after it that read the
 * same input as one job; returns how many ops ran (>= 1; op i is LINEAR). */
int32_t flock_exec_linear_group(flock_exec *e, int32_t i);
/* The batched decode step's pieces (flock_exec_run_batch): each runs its
 * op for every executor es[0..n) on es[b]'s own buffers, tile by tile
 * across the executors, bitwise as flock_exec_linear_group / flock_exec_op
 * per executor. */
int32_t flock_exec_linear_group_batch(flock_exec *const *es, size_t n, int32_t i);
void flock_exec_lm_head_batch(flock_exec *const *es, size_t n, const flock_op *op, int32_t i);
void flock_exec_ffn_sparse_batch(flock_exec *const *es, size_t n, const flock_op *op, int32_t i);
/* Runs op `op` (index i) over T tokens at positions n_past... */
flock_status flock_exec_op(flock_exec *e, const flock_op *op, int32_t i, const int32_t *ids, int32_t T,
                           flock_ff_mode mode, bool stats, flock_error *err);

#endif
