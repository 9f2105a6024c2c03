/* GRIFFIN's statistic and the top-k selection (see griffin.h). */
#include "griffin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void flock_griffin_accumulate_row(const float *z, int64_t d_ff, double *sumsq)
{
    double nrm2 = 0;
    for (int64_t i = 0; i < d_ff; i++)
        nrm2 += (double)z[i] * z[i];
    if (!(nrm2 > 0))
        return; /* zero row: 0/0 in the reference; contributes nothing here */
    double inv = 1.0 / nrm2; /* (z/||z||)^2 = z^2 / ||z||^2 */
    for (int64_t i = 0; i < d_ff; i++)
        sumsq[i] += (double)z[i] * z[i] * inv;
}

void flock_griffin_accumulate(const float *z, int64_t T, int64_t d_ff, int64_t ld, double *sumsq)
{
    for (int64_t t = 0; t < T; t++)
        flock_griffin_accumulate_row(z + t * ld, d_ff, sumsq);
}

static int cmp_rank(const void *a, const void *b)
{
    const flock_rank_pair *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* a ranks before b: the larger score, ties to the lower index (a total
 * order: indices are distinct) */
static inline int rank_before(const flock_rank_pair *a, const flock_rank_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

static inline void swap_pair(flock_rank_pair *a, flock_rank_pair *b)
{
    flock_rank_pair t = *a;
    *a = *b;
    *b = t;
}

/* Reorders a[0..n) so that a[0..k) are its first k in rank order (in no
 * particular order among themselves): quickselect with a median-of-three
 * pivot, falling back to a full sort after 64 rounds (a pathological
 * input), insertion-sorting short ranges. Expected O(n); qsort with its
 * comparison callback was 12% of a 32-token prefill (SmolLM2, d_ff 1536,
 * 30 layers). */
static void select_first_k(flock_rank_pair *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n;
    for (int round = 0; hi - lo > 16; round++) {
        if (round == 64) {
            qsort(a + lo, (size_t)(hi - lo), sizeof *a, cmp_rank);
            return;
        }
        int64_t mid = lo + (hi - lo) / 2;
        flock_rank_pair *x = &a[lo], *y = &a[mid], *z = &a[hi - 1], *m;
        if (rank_before(x, y))
            m = rank_before(y, z) ? y : rank_before(x, z) ? z : x;
        else
            m = rank_before(x, z) ? x : rank_before(y, z) ? z : y;
        swap_pair(m, &a[hi - 1]);
        flock_rank_pair p = a[hi - 1];
        int64_t i = lo;
        for (int64_t j = lo; j < hi - 1; j++)
            if (rank_before(&a[j], &p))
                swap_pair(&a[i++], &a[j]);
        swap_pair(&a[i], &a[hi - 1]); /* [lo, i) rank before the pivot, a[i] = pivot, (i, hi) after */
        if (k < i)
            hi = i;
        else if (k > i + 1)
            lo = i + 1;
        else
            return;
    }
    for (int64_t i = lo + 1; i < hi; i++) {
        flock_rank_pair v = a[i];
        int64_t j = i;
        for (; j > lo && rank_before(&v, &a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

void flock_select_topk(const double *score, int64_t d_ff, int64_t k, int32_t *idx,
                       flock_rank_pair *scratch)
{
    if (k >= d_ff) { /* every neuron */
        for (int64_t i = 0; i < d_ff; i++)
            idx[i] = (int32_t)i;
        return;
    }
    if (k <= 0)
        return;
    for (int64_t i = 0; i < d_ff; i++) {
        /* NaN ranks last rather than poisoning the order. */
        scratch[i].score = isnan(score[i]) ? -INFINITY : score[i];
        scratch[i].index = (int32_t)i;
    }
    select_first_k(scratch, d_ff, k);
    for (int64_t j = 0; j < k; j++)
        idx[j] = scratch[j].index;
    /* in increasing index order: marks in the scratch's first d_ff bytes */
    uint8_t *mark = (uint8_t *)scratch;
    memset(mark, 0, (size_t)d_ff);
    for (int64_t j = 0; j < k; j++)
        mark[idx[j]] = 1;
    for (int64_t i = 0, j = 0; i < d_ff; i++)
        if (mark[i])
            idx[j++] = (int32_t)i;
}

flock_status flock_select_from_rank(const int32_t *rank, int64_t d_ff, int64_t k, int32_t *idx,
                                    uint8_t *seen, flock_error *err)
{
    memset(seen, 0, (size_t)d_ff);
    for (int64_t j = 0; j < d_ff; j++) {
        if (rank[j] < 0 || rank[j] >= d_ff || seen[rank[j]])
            return flock_error_set(err, FLOCK_E_CORRUPT,
                                   "magnitude ranking entry %lld is %d: not a permutation of 0..%lld",
                                   (long long)j, rank[j], (long long)d_ff - 1);
        seen[rank[j]] = 1;
    }
    memcpy(idx, rank, (size_t)k * sizeof *idx);
    qsort(idx, (size_t)k, sizeof *idx, cmp_i32);
    return FLOCK_OK;
}

uint64_t flock_rng_seed(uint64_t seed)
{
    /* splitmix64 of the seed, never 0 (xorshift's fixed point). */
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 0x2545F4914F6CDD1DULL;
}

uint64_t flock_rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

double flock_rng_uniform(uint64_t *s)
{
    return (double)(flock_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

void flock_select_random(uint64_t *rng, int64_t d_ff, int64_t k, int32_t *idx, int32_t *perm)
{
    for (int64_t i = 0; i < d_ff; i++)
        perm[i] = (int32_t)i;
    /* Partial Fisher-Yates: the first k slots become a uniform k-subset. */
    for (int64_t j = 0; j < k; j++) {
        int64_t r = j + (int64_t)(flock_rng_next(rng) % (uint64_t)(d_ff - j));
        int32_t tmp = perm[j];
        perm[j] = perm[r];
        perm[r] = tmp;
    }
    memcpy(idx, perm, (size_t)k * sizeof *idx);
    qsort(idx, (size_t)k, sizeof *idx, cmp_i32);
}

void flock_share_normalize(const double *w, int64_t d, double *p)
{
    double sum = 0;
    for (int64_t i = 0; i < d; i++) {
        double v = isfinite(w[i]) && w[i] > 0 ? w[i] : 0;
        p[i] = v;
        sum += v;
    }
    if (!(sum > 0) || !isfinite(sum)) {
        for (int64_t i = 0; i < d; i++)
            p[i] = 1.0 / (double)d;
        return;
    }
    for (int64_t i = 0; i < d; i++)
        p[i] /= sum;
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static int cmp_cand(const void *a, const void *b)
{
    const flock_alloc_cand *x = a, *y = b;
    if (x->share != y->share)
        return x->share > y->share ? -1 : 1;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

int64_t flock_allocate_budget(const double *const *share, const int64_t *d, size_t n, const int64_t *lo,
                              int64_t total, int64_t *k, flock_alloc_cand *scratch, double *sorted)
{
    int64_t sum_lo = 0, sum_d = 0;
    for (size_t l = 0; l < n; l++) {
        k[l] = lo[l] < 0 ? 0 : lo[l] > d[l] ? d[l] : lo[l];
        sum_lo += k[l];
        sum_d += d[l];
    }
    if (total > sum_d)
        total = sum_d;
    if (total <= sum_lo)
        return sum_lo;
    /* Each layer's shares sorted (its marginal gains, decreasing); the
     * candidates are the entries past the layer's floor. */
    size_t nc = 0;
    for (size_t l = 0; l < n; l++) {
        for (int64_t i = 0; i < d[l]; i++)
            sorted[i] = isfinite(share[l][i]) ? share[l][i] : 0;
        qsort(sorted, (size_t)d[l], sizeof *sorted, cmp_desc);
        for (int64_t r = k[l]; r < d[l]; r++)
            scratch[nc++] = (flock_alloc_cand){sorted[r], (int32_t)l, (int32_t)r};
    }
    qsort(scratch, nc, sizeof *scratch, cmp_cand);
    for (int64_t j = 0; j < total - sum_lo; j++)
        k[scratch[j].layer]++;
    return total;
}

void flock_rank_positions(const int32_t *rank, int64_t d, int32_t *pos)
{
    for (int64_t j = 0; j < d; j++)
        pos[rank[j]] = (int32_t)j;
}

void flock_select_blend(const double *score, const int32_t *pos_global, int64_t d, int64_t k, double w,
                        int32_t *idx, flock_rank_pair *scratch, double *blend)
{
    for (int64_t i = 0; i < d; i++) {
        scratch[i].score = isnan(score[i]) ? -INFINITY : score[i];
        scratch[i].index = (int32_t)i;
    }
    qsort(scratch, (size_t)d, sizeof *scratch, cmp_rank);
    for (int64_t j = 0; j < d; j++) /* local position j; smaller blends rank higher, so negate */
        blend[scratch[j].index] = -(w * (double)j + (1 - w) * (double)pos_global[scratch[j].index]);
    flock_select_topk(blend, d, k, idx, scratch);
}
