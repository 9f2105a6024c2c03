/* Private: GRIFFIN expert selection and the other selection modes, kept
 * apart from the executor so each piece is unit-tested on hand-computed
 * cases.
 *
 * GRIFFIN (as in the reference implementation): z is the FF intermediate
 * activation [T, d_ff] of the prompt; each token's row is divided by its L2
 * norm; neuron i's score is the L2 norm of column i over all prompt tokens;
 * the top k = floor(keep * d_ff) neurons are kept, ties to the lower index. */
#ifndef FLOCK_RUNTIME_GRIFFIN_H
#define FLOCK_RUNTIME_GRIFFIN_H

#include "flock/formats.h"

#include <stdint.h>

/* The kept count is flock_keep_count (flock/formats.h), shared with codegen. */

/* Adds to sumsq[d_ff] the squares of the row-normalized z over T tokens
 * (z rows `ld` floats apart). A row of zeros adds nothing (no NaN). The
 * score of neuron i is sqrt(sumsq[i]); sumsq can accumulate over several
 * chunks of the same prompt. */
void flock_griffin_accumulate(const float *z, int64_t T, int64_t d_ff, int64_t ld, double *sumsq);
/* The same for one row (what the executor's prefill calls per token, while
 * the row it has just computed is in cache). */
void flock_griffin_accumulate_row(const float *z, int64_t d_ff, double *sumsq);

/* A (score, index) pair: scratch for the top-k sort. */
typedef struct flock_rank_pair {
    double score;
    int32_t index;
} flock_rank_pair;

/* Writes the k indices with the largest scores, in increasing index order,
 * to idx[k]; ties go to the lower index. `scratch` holds d_ff pairs. */
void flock_select_topk(const double *score, int64_t d_ff, int64_t k, int32_t *idx,
                       flock_rank_pair *scratch);

/* Magnitude mode from a static ranking: rank[j] is the j-th most important
 * neuron (a permutation of 0..d_ff-1). Takes rank[0..k-1], sorted. Fails
 * with FLOCK_E_CORRUPT when an entry is out of range or repeated. */
flock_status flock_select_from_rank(const int32_t *rank, int64_t d_ff, int64_t k, int32_t *idx,
                                    uint8_t *seen_scratch, flock_error *err);

/* k distinct neurons drawn uniformly with the generator state *rng,
 * sorted. `perm_scratch` holds d_ff ints. */
void flock_select_random(uint64_t *rng, int64_t d_ff, int64_t k, int32_t *idx, int32_t *perm_scratch);

/* ---- selection beyond the paper (docs/runtime.md, "Selection modes") ---- */

/* glass's default weight of the prompt's rank (docs/results.md, "Selection
 * beyond the paper", measured) and griffin-adaptive's floor: no layer keeps
 * fewer than this fraction of the uniform count. */
#define FLOCK_GLASS_WEIGHT_DEFAULT 0.9
#define FLOCK_ADAPTIVE_FLOOR 0.5

/* Share of layer mass: p[i] = w[i] / sum(w) over the d entries; a NaN,
 * infinite or negative w[i] counts as 0, and a layer whose sum is 0 gets
 * p[i] = 1/d (an all-zero layer is spread evenly, never NaN). */
void flock_share_normalize(const double *w, int64_t d, double *p);

/* One allocation candidate: the share of a layer's rank-th neuron. */
typedef struct flock_alloc_cand {
    double share;
    int32_t layer, rank;
} flock_alloc_cand;

/* Splits `total` kept neurons over n layers under one global budget.
 * share[l] holds layer l's d[l] shares (flock_share_normalize), lo[l] the
 * floor of layer l's count (0 <= lo[l] <= d[l]). Greedy on the concave
 * curves "share of the layer's mass kept by its top j": each layer starts
 * at lo[l], then the remaining total - sum(lo) go to the largest shares
 * left anywhere, ties to the lower layer and rank, which is the allocation
 * that keeps the most summed share. Writes k[l]; sum(k) == total when
 * sum(lo) <= total <= sum(d) (otherwise total is clamped to that range).
 * `scratch` holds sum(d) candidates, `sorted` max(d) doubles.
 * Deterministic. Returns sum(k). */
int64_t flock_allocate_budget(const double *const *share, const int64_t *d, size_t n, const int64_t *lo,
                              int64_t total, int64_t *k, flock_alloc_cand *scratch, double *sorted);

/* GLASS-style rank aggregation: neuron i's local position (0 = best by
 * `score`, ties to the lower index) and its global position pos_global[i]
 * (0 = first in a static ranking) are blended as
 * w * local + (1 - w) * global, and the k smallest blends are kept
 * (ties to the lower index), sorted into idx[k]. w in [0, 1]: w = 1 is
 * GRIFFIN's top-k exactly. `scratch` holds d pairs, `blend` d doubles. */
void flock_select_blend(const double *score, const int32_t *pos_global, int64_t d, int64_t k, double w,
                        int32_t *idx, flock_rank_pair *scratch, double *blend);

/* Inverse of a ranking (rank[j] = the j-th neuron): pos[rank[j]] = j.
 * rank must be a permutation (flock_select_from_rank checks it). */
void flock_rank_positions(const int32_t *rank, int64_t d, int32_t *pos);

/* The runtime's random generator (xorshift64*): a value in [0, 2^64). */
uint64_t flock_rng_next(uint64_t *state);
/* Uniform float in [0, 1). */
double flock_rng_uniform(uint64_t *state);
/* A non-zero state from a seed. */
uint64_t flock_rng_seed(uint64_t seed);

#endif
