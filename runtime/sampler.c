/* The sampler: repetition penalty, temperature, top-k, top-p, min-p and the
 * draw. All scratch is allocated at create (n_vocab entries). */
#include "flock/flock.h"
#include "griffin.h"
#include "model_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float v;
    int32_t id;
} cand;

struct flock_sampler {
    flock_sampler_opts o;
    int32_t n_vocab;
    cand *c;        /* [n_vocab] */
    float *l;       /* [n_vocab] working logits */
    uint8_t *seen;  /* [n_vocab] penalty marks */
    uint64_t rng;
};

flock_sampler_opts flock_sampler_default_opts(void)
{
    return (flock_sampler_opts){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

int32_t flock_sampler_n_vocab(const flock_sampler *s)
{
    return s ? s->n_vocab : 0;
}

flock_status flock_sampler_create(const flock_sampler_opts *opts, int32_t n_vocab, flock_sampler **out,
                                  flock_error *err)
{
    flock_sampler_opts o = opts ? *opts : flock_sampler_default_opts();
    if (!out || n_vocab <= 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "sampler: vocabulary of %d tokens", n_vocab);
    if (!(o.temperature >= 0) || o.top_k < 0 || !(o.top_p > 0 && o.top_p <= 1) || !(o.min_p >= 0 && o.min_p <= 1) ||
        !(o.repeat_penalty > 0) || o.repeat_last_n < 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "sampler: temperature %g, top_k %d, top_p %g, min_p %g, repeat penalty %g "
                               "(need temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, penalty > 0)",
                               o.temperature, o.top_k, o.top_p, o.min_p, o.repeat_penalty);
    flock_sampler *s = calloc(1, sizeof *s);
    if (!s || !(s->c = malloc((size_t)n_vocab * sizeof *s->c)) || !(s->l = malloc((size_t)n_vocab * sizeof *s->l)) ||
        !(s->seen = calloc((size_t)n_vocab, 1))) {
        flock_sampler_free(s);
        return flock_error_set(err, FLOCK_E_NOMEM, "sampler: out of memory");
    }
    s->o = o;
    s->n_vocab = n_vocab;
    s->rng = flock_rng_seed(o.seed);
    *out = s;
    return FLOCK_OK;
}

void flock_sampler_free(flock_sampler *s)
{
    if (!s)
        return;
    free(s->c);
    free(s->l);
    free(s->seen);
    free(s);
}

/* Larger value first; equal values: lower id first. */
static int cand_before(const cand *a, const cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

/* In-place heapsort, best candidate first (qsort may allocate, and this
 * runs once per generated token). */
static void sift_down(cand *c, int32_t i, int32_t n)
{
    for (;;) {
        int32_t worst = i, l = 2 * i + 1, r = l + 1;
        /* a min-heap in "before" order: the root is the candidate that sorts last */
        if (l < n && cand_before(&c[worst], &c[l]))
            worst = l;
        if (r < n && cand_before(&c[worst], &c[r]))
            worst = r;
        if (worst == i)
            return;
        cand t = c[i];
        c[i] = c[worst];
        c[worst] = t;
        i = worst;
    }
}

static void sort_cands(cand *c, int32_t n)
{
    for (int32_t i = n / 2 - 1; i >= 0; i--)
        sift_down(c, i, n);
    for (int32_t end = n - 1; end > 0; end--) {
        cand t = c[0];
        c[0] = c[end];
        c[end] = t;
        sift_down(c, 0, end);
    }
}

/* Moves the k best candidates to c[0..k-1] (any order): quickselect. */
static void select_k(cand *c, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot))
                i++;
            while (cand_before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

int32_t flock_sampler_sample(flock_sampler *s, const float *logits, const int32_t *history, size_t n_history)
{
    int32_t n = s->n_vocab;
    float *l = s->l;
    memcpy(l, logits, (size_t)n * sizeof *l);
    if (s->o.repeat_penalty != 1.0f && history) {
        size_t from = n_history > (size_t)s->o.repeat_last_n ? n_history - (size_t)s->o.repeat_last_n : 0;
        for (size_t i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= n || s->seen[t])
                continue;
            s->seen[t] = 1;
            l[t] = l[t] > 0 ? l[t] / s->o.repeat_penalty : l[t] * s->o.repeat_penalty;
        }
        for (size_t i = from; i < n_history; i++)
            if (history[i] >= 0 && history[i] < n)
                s->seen[history[i]] = 0;
    }
    if (s->o.temperature <= 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (l[i] > l[best])
                best = i;
        return best;
    }
    cand *c = s->c;
    for (int32_t i = 0; i < n; i++)
        c[i] = (cand){l[i] / s->o.temperature, i};
    int32_t m = n;
    if (s->o.top_k > 0 && s->o.top_k < n) {
        select_k(c, n, s->o.top_k);
        m = s->o.top_k;
    }
    sort_cands(c, m);
    /* softmax over the m candidates (c[0] is the largest) */
    double sum = 0;
    float mx = c[0].v;
    for (int32_t i = 0; i < m; i++) {
        c[i].v = expf(c[i].v - mx);
        sum += c[i].v;
    }
    if (s->o.top_p < 1.0f) {
        double cum = 0;
        int32_t keep = m;
        for (int32_t i = 0; i < m; i++) {
            cum += c[i].v / sum;
            if (cum >= s->o.top_p) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
    }
    if (s->o.min_p > 0) {
        /* p_i >= min_p * p_max  <=>  c_i >= min_p (since c[0] = 1) */
        int32_t keep = 1;
        while (keep < m && c[keep].v >= s->o.min_p)
            keep++;
        m = keep;
    }
    sum = 0;
    for (int32_t i = 0; i < m; i++)
        sum += c[i].v;
    double u = flock_rng_uniform(&s->rng) * sum, acc = 0;
    for (int32_t i = 0; i < m; i++) {
        acc += c[i].v;
        if (u < acc)
            return c[i].id;
    }
    return c[m - 1].id;
}
