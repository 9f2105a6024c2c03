/* Private: causal multi-head attention over an f32 or f16 KV cache, blocked with
 * an online softmax (one pass over the keys, no [n_ctx] score row), split
 * over the thread pool.
 *
 * Work split: prefill tasks are (KV head, tile of query tokens): the query
 * heads of a GQA group and the tokens of the tile all read the same block
 * of K/V rows while it is in L1. Decode (T = 1) tasks are (KV head, span
 * of FLOCK_ATT_SPLIT positions); each span leaves an unnormalized partial
 * (max, sum, sum of p v) and the spans are combined in order with the
 * log-sum-exp rule. The spans are fixed by position, not by the thread
 * count, so the result is bitwise the same for any number of threads. */
#ifndef FLOCK_RUNTIME_ATTENTION_H
#define FLOCK_RUNTIME_ATTENTION_H

#include "kernels.h"
#include "threads.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOCK_ATT_SPLIT 128 /* decode: positions per task (and per partial) */
#define FLOCK_ATT_QTILE 16  /* prefill: query tokens per task */

typedef struct flock_att_args {
    const float *q;          /* [T][ldq]: head h at h * head_dim */
    const void *kc, *vc;     /* caches of float (or uint16_t f16 where kv_f16): position j of KV
                              * head g at g * kv_head_stride + j * ldkv, positions 0..n_past+T-1
                              * filled */
    bool kv_f16;             /* the caches hold IEEE half floats */
    float *out;              /* [T][ldo]: head h at h * head_dim */
    size_t ldq, ldkv, ldo;
    size_t kv_head_stride;   /* elements from one KV head's slice to the next: 0 means head_dim
                              * (the heads side by side in each row, ldkv >= n_kv_head * head_dim);
                              * the runtime's cache is head-major, [n_kv_head][n_ctx][head_dim]
                              * (ldkv = head_dim), so a decode task streams one contiguous run */
    int64_t n_past;          /* token t sits at position n_past + t */
    int32_t T, n_head, n_kv_head, head_dim;
    int32_t window;          /* > 0: token at pos sees keys pos-window+1..pos; 0: all earlier keys */
    float scale;             /* applied to q.k before the soft cap */
    float softcap;           /* > 0: s = softcap * tanh(s / softcap) */
} flock_att_args;

/* Floats of scratch flock_attention needs for up to `n_threads` threads,
 * `n_ctx` positions, `max_heads` query heads and head_dim <= max_hd. */
size_t flock_att_scratch_floats(int n_threads, int32_t n_ctx, int32_t max_heads, int32_t max_hd);

/* out = softmax(mask(cap(scale q K^T))) V for every token and head of `a`.
 * `scratch` holds flock_att_scratch_floats(...) floats sized for at least
 * this call's heads, head_dim, positions and the pool's threads. No
 * allocation. Small problems (below ~256k multiply-adds) run on the
 * calling thread: a pool wake-up costs more than they do. */
void flock_attention(const flock_kernel_table *k, flock_pool *pool, float *scratch, const flock_att_args *a);

#endif
