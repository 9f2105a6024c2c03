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

/* The runtime's random generator (xorshift64*): a value in [0, 2^64). */
uint64_t flock_rng_next(uint64_t *state);
/* Uniform float in [0, 1). */
double flock_rng_uniform(uint64_t *state);
/* A non-zero state from a seed. */
uint64_t flock_rng_seed(uint64_t seed);

#endif
