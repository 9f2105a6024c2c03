/* Private: the executor. Walks a flock_program's ops over [T, width] f32
 * value buffers, keeps the KV caches, and runs the FF either in full (the
 * prompt, optionally accumulating GRIFFIN's statistic) or through the
 * gather kernel over each layer's selected neurons (generation).
 *
 * Memory is sized once at create: value buffers are shared between values
 * whose lifetimes do not overlap (a few slots of [chunk, max width]); the
 * prompt runs in chunks of at most `chunk` tokens (the statistic is a sum
 * over tokens, so chunking does not change it). */
#ifndef FLOCK_RUNTIME_EXEC_H
#define FLOCK_RUNTIME_EXEC_H

#include "cpu_jit_loader.h"
#include "flock/ir.h"
#include "flock/plan.h"
#include "kernels.h"
#include "threads.h"

#include <stdbool.h>

typedef struct flock_exec flock_exec;

#define FLOCK_MAX_KV_SLOTS 256

/* One FFN op's selection state. */
typedef struct flock_exec_ffn {
    int32_t op;      /* op index in the program */
    int32_t layer;   /* op->layer */
    int32_t d_ff;
    int64_t k;       /* selected neurons; -1 = no selection yet */
    int32_t *idx;    /* [d_ff] capacity, first k used, increasing */
    double *sumsq;   /* [d_ff] GRIFFIN statistic: sum over prompt tokens of z^2/||z||^2 */
} flock_exec_ffn;

typedef enum flock_ff_mode {
    FLOCK_FF_FULL = 0,   /* every neuron (prompt) */
    FLOCK_FF_SPARSE = 1, /* the selected neurons only */
} flock_ff_mode;

typedef struct flock_exec_opts {
    int32_t n_ctx;   /* positions of the KV cache, > 0 */
    bool all_logits; /* keep every position's logits, not only the last */
    bool pack_rows;  /* copy each selection's kept rows into one block per
                      * layer for the one-sequence decode (flock_exec_pack) */
    bool kv_f16;     /* the KV cache in IEEE half (else f32): half the
                      * bytes attention streams, K/V rounded to 11 bits */
} flock_exec_opts;

/* `p` must be verified and `plan` its analysis (flock_plan_program);
 * `tensors[i]` is program tensor i (1-D tensors as rows = 1; vectors used by
 * norms and biases must be F32). The executor keeps the pointers: p, plan
 * and tensors must outlive it; `o` is copied. */
flock_status flock_exec_create(const flock_program *p, const flock_plan *plan, const flock_wmat *tensors,
                               const flock_kernel_table *k, flock_pool *pool, const flock_exec_opts *o,
                               flock_exec **out, flock_error *err);
void flock_exec_free(flock_exec *e);
/* Decode (T = 1) through generated kernels from `j` where it has them: the
 * gather FF of each gated FFN op whose (dtype, act, d, d_ff, k = the keep
 * count of `keep`) has a kernel, and the matrix-vector product of LINEAR /
 * LM_HEAD ops by (dtype, cols). j = NULL goes back to the built-in table.
 * Returns how many ops got a generated kernel, or -1 when out of memory
 * (then nothing changed). Call before running, not in the token loop. */
int flock_exec_use_jit(flock_exec *e, const flock_cpu_jit *j, double keep);
/* What both executors need beyond a verified program: the packed FF layout,
 * at most FLOCK_MAX_KV_SLOTS KV caches, and every tensor an op reads as the
 * kernels see it (present, with its reference's shape, vectors f32,
 * matrices f32/f16/bf16, the magnitude ranking i32). */
flock_status flock_program_check_runnable(const flock_program *p, const flock_wmat *tensors, flock_error *err);

/* Empties the KV cache, statistic and selection. */
void flock_exec_reset(flock_exec *e);

/* Appends n tokens. FULL with `stats` accumulates the statistic into each
 * ffn's sumsq. FLOCK_E_RANGE when the context would overflow (nothing
 * runs), FLOCK_E_INVALID_ARG for a token id out of the vocabulary. */
flock_status flock_exec_run(flock_exec *e, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                            flock_error *err);

/* Most sequences one flock_exec_run_batch call steps together. */
#define FLOCK_EXEC_MAX_BATCH 16

/* Appends token ids[b] to executor es[b] for each b < n (1..MAX_BATCH),
 * through the selected neurons (SPARSE): one decode step of n sequences.
 * The step runs op by op across the sequences, and within the matrix
 * products and the gather FF tile by tile (a few KB of weight rows, then
 * every sequence's use of them), so each weight is read from memory once
 * per step for all n and from cache after that. Every sequence computes
 * what it computes alone, with the same kernels over the same rows in the
 * same order: each executor's logits and cache are bitwise those of
 * flock_exec_run(es[b], &ids[b], 1, FLOCK_FF_SPARSE, false). All must run
 * the same program and tensors with the same thread count (the step runs on
 * es[0]'s pool). Every sequence is checked before any runs: on an error
 * (naming the sequence) none has advanced. */
flock_status flock_exec_run_batch(flock_exec *const *es, size_t n, const int32_t *ids, flock_error *err);

/* Tests: run the prompt in chunks of `chunk` tokens (1..the allocated chunk). */
void flock_exec_set_chunk(flock_exec *e, int32_t chunk);

size_t flock_exec_n_past(const flock_exec *e);
int32_t flock_exec_n_ctx(const flock_exec *e);
int32_t flock_exec_n_vocab(const flock_exec *e);
/* Logits: [n_past, vocab] when all_logits, else [1, vocab] (the last token). */
const float *flock_exec_logits(const flock_exec *e);
size_t flock_exec_n_ffn(const flock_exec *e);
flock_exec_ffn *flock_exec_ffn_at(flock_exec *e, size_t i);
/* Weight bytes read by one decode step with the current selection. */
uint64_t flock_exec_decode_bytes(const flock_exec *e);
/* Copies each FF layer's kept rows (its current idx[0..k)) into the
 * executor's packed block (exec_impl.h, flock_exec_pack), allocating it
 * for a first or larger selection: call after a selection, outside the
 * token loop. Layers run by generated kernels, with every neuron kept, or
 * out of memory are left to gather in place. */
void flock_exec_pack_selection(flock_exec *e);
/* Bytes held by the packed copies of the kept FF rows (flock_exec_pack). */
uint64_t flock_exec_packed_bytes(const flock_exec *e);

#endif
