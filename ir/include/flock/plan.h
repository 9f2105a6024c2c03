/* Program analysis: what every backend needs to know about a verified
 * program before it allocates anything, computed once per program (at
 * model load) instead of once per executor.
 *
 * - widths: the largest activation width, FF width, RoPE dim, head count
 *   and head dim; the vocabulary; the embedding table's rows;
 * - the FF layers: op index of each, and each op's FF layer;
 * - the KV caches: the width of each slot;
 * - buffer slots: each value gets one of n_slots buffers, shared by values
 *   whose lifetimes do not overlap (a slot is reused once the last op that
 *   reads its value has run); the token ids and the logits get none (-1);
 * - RoPE: each ROPE op's frequencies with its scaling applied;
 * - bytes per token: what one decode step reads of the weights.
 * A backend keeps only what is its own (which dtypes its kernels read, the
 * kernels it has). */
#ifndef FLOCK_IR_PLAN_H
#define FLOCK_IR_PLAN_H

#include "flock/ir.h"

typedef struct flock_plan {
    int32_t n_vocab;      /* the lm_head's output width */
    int32_t embed_rows;   /* rows of the token embedding table */
    int32_t head_op;      /* index of the lm_head op */
    int32_t max_width;    /* widest activation (not the logits) */
    int32_t max_dff, max_rope_dim, max_heads, max_head_dim;
    int32_t n_ffn;        /* FF layers */
    int32_t n_kv_slots;
    int32_t n_slots;      /* value buffers */
    int32_t *kv_width;    /* [n_kv_slots] n_kv_head * head_dim of each slot */
    int32_t *value_slot;  /* [n_values] buffer of each value, -1 for the token ids and the logits */
    int32_t *ffn_op;      /* [n_ffn] op index of FF layer i */
    int32_t *op_ffn;      /* [n_ops] FF layer of op i, or -1 */
    int32_t *rope_at;     /* [n_ops] start of op i's frequencies in rope_freq, or -1 */
    double *rope_freq;    /* rope_dim / 2 frequencies per ROPE op */
} flock_plan;

/* Verifies p (flock_program_verify) and analyses it into *out (zeroed
 * first). On failure *out holds nothing to free. */
flock_status flock_plan_program(const flock_program *p, flock_plan *out, flock_error *err);
void flock_plan_free(flock_plan *plan);

/* A tensor as a matrix: rows = shape[0] for 2+ dims, else 1; cols = the
 * rest (the runtime's flock_wmat view). */
static inline void flock_tensor_ref_rows_cols(const flock_tensor_ref *t, int64_t *rows, int64_t *cols)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims && d < 4; d++)
        n *= t->shape[d];
    *rows = t->n_dims >= 2 ? (int64_t)t->shape[0] : 1;
    *cols = *rows > 0 ? (int64_t)(n / (uint64_t)*rows) : 0;
}

/* Frequency of ROPE op's rotation pair i (of rope_dim/2), with its scaling
 * (linear, Llama 3) applied. */
double flock_rope_freq(const flock_op *op, int32_t i);

/* Weight bytes one decode step reads: tensor_bytes[t] is tensor t's size
 * as the backend stores it; ffn_k[i] the kept neurons of FF layer i (< 0:
 * all of them). Embedding tables count one row. */
uint64_t flock_plan_decode_bytes(const flock_program *p, const flock_plan *plan, const uint64_t *tensor_bytes,
                                 const int64_t *ffn_k);

#endif
