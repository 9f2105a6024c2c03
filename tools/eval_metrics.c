/* Arithmetic of `flock eval` (see eval_metrics.h). */
#include "eval_metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double log_sum_exp(const float *x, size_t n, float *max_out)
{
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > m)
            m = x[i];
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += exp((double)x[i] - m);
    *max_out = m;
    return log(s);
}

double flock_log_prob(const float *logits, size_t n, size_t idx)
{
    if (!logits || idx >= n)
        return NAN;
    float m;
    double lse = log_sum_exp(logits, n, &m);
    return (double)logits[idx] - m - lse;
}

double flock_kl_div(const float *ref_logits, const float *logits, size_t n)
{
    float mp, mq;
    double lp = log_sum_exp(ref_logits, n, &mp);
    double lq = log_sum_exp(logits, n, &mq);
    double kl = 0;
    for (size_t i = 0; i < n; i++) {
        double log_p = (double)ref_logits[i] - mp - lp;
        double log_q = (double)logits[i] - mq - lq;
        double p = exp(log_p);
        if (p > 0)
            kl += p * (log_p - log_q);
    }
    return kl < 0 ? 0 : kl; /* rounding can leave -1e-17 */
}

size_t flock_argmax(const float *logits, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

void flock_ppl_add(flock_ppl_acc *acc, const float *logits, const float *ref_logits, size_t n_vocab,
                   size_t target)
{
    acc->nll_sum -= flock_log_prob(logits, n_vocab, target);
    acc->kl_sum += logits == ref_logits ? 0.0 : flock_kl_div(ref_logits, logits, n_vocab);
    acc->agree += flock_argmax(logits, n_vocab) == flock_argmax(ref_logits, n_vocab);
    acc->count++;
}

double flock_ppl_value(const flock_ppl_acc *acc)
{
    return acc->count ? exp(acc->nll_sum / (double)acc->count) : NAN;
}

double flock_ppl_mean_kl(const flock_ppl_acc *acc)
{
    return acc->count ? acc->kl_sum / (double)acc->count : NAN;
}

double flock_ppl_top1(const flock_ppl_acc *acc)
{
    return acc->count ? (double)acc->agree / (double)acc->count : NAN;
}

/* ---- ROUGE ------------------------------------------------------------- */

typedef struct words {
    char *buf;     /* lowercased copy, separators replaced by NUL */
    char **w;
    size_t n;
} words;

static int tokenize(const char *s, words *out)
{
    size_t len = strlen(s);
    out->buf = malloc(len + 1);
    out->w = malloc((len / 2 + 1) * sizeof *out->w);
    out->n = 0;
    if (!out->buf || !out->w) {
        free(out->buf);
        free(out->w);
        return -1;
    }
    int in_word = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)s[i];
        int keep = c && isascii(c) && isalnum(c);
        out->buf[i] = keep ? (char)tolower(c) : '\0';
        if (keep && !in_word)
            out->w[out->n++] = out->buf + i;
        in_word = keep;
    }
    return 0;
}

static void words_free(words *w)
{
    free(w->buf);
    free(w->w);
}

static double f1(double overlap, double n_cand, double n_ref)
{
    if (overlap <= 0 || n_cand <= 0 || n_ref <= 0)
        return 0;
    double p = overlap / n_cand, r = overlap / n_ref;
    return 2 * p * r / (p + r);
}

static int ngram_eq(char **a, char **b, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(a[k], b[k]) != 0)
            return 0;
    return 1;
}

/* Clipped n-gram overlap: each reference n-gram matches at most once.
 * O(len^2) comparisons, fine for summaries. */
static double ngram_overlap(const words *c, const words *r, size_t n, size_t *n_c, size_t *n_r)
{
    *n_c = c->n >= n ? c->n - n + 1 : 0;
    *n_r = r->n >= n ? r->n - n + 1 : 0;
    if (!*n_c || !*n_r)
        return 0;
    char *used = calloc(*n_r, 1);
    if (!used)
        return -1;
    size_t hits = 0;
    for (size_t i = 0; i < *n_c; i++) {
        for (size_t j = 0; j < *n_r; j++) {
            if (!used[j] && ngram_eq(c->w + i, r->w + j, n)) {
                used[j] = 1;
                hits++;
                break;
            }
        }
    }
    free(used);
    return (double)hits;
}

static double lcs_len(const words *a, const words *b)
{
    size_t *prev = calloc(b->n + 1, sizeof *prev), *cur = calloc(b->n + 1, sizeof *cur);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return -1;
    }
    for (size_t i = 1; i <= a->n; i++) {
        for (size_t j = 1; j <= b->n; j++) {
            if (strcmp(a->w[i - 1], b->w[j - 1]) == 0)
                cur[j] = prev[j - 1] + 1;
            else
                cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    double l = (double)prev[b->n];
    free(prev);
    free(cur);
    return l;
}

int flock_rouge_score(const char *candidate, const char *reference, flock_rouge *out)
{
    words c, r;
    if (tokenize(candidate, &c) != 0)
        return -1;
    if (tokenize(reference, &r) != 0) {
        words_free(&c);
        return -1;
    }
    size_t nc, nr;
    double o1 = ngram_overlap(&c, &r, 1, &nc, &nr);
    out->r1 = f1(o1, (double)nc, (double)nr);
    double o2 = ngram_overlap(&c, &r, 2, &nc, &nr);
    out->r2 = f1(o2, (double)nc, (double)nr);
    double l = lcs_len(&c, &r);
    out->rl = f1(l, (double)c.n, (double)r.n);
    words_free(&c);
    words_free(&r);
    return (o1 < 0 || o2 < 0 || l < 0) ? -1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile_sorted(const double *v, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

int flock_bootstrap_mean_ci(const double *d, size_t n, int B, uint64_t seed, double level, double *lo, double *hi)
{
    *lo = *hi = NAN;
    if (n == 0 || B < 2 || !(level > 0 && level < 1))
        return -1;
    double *means = malloc((size_t)B * sizeof *means);
    if (!means)
        return -1;
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (st == 0)
        st = 1;
    for (int b = 0; b < B; b++) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            st ^= st >> 12;
            st ^= st << 25;
            st ^= st >> 27;
            uint64_t r = st * 2685821657736338717ULL;
            sum += d[(r >> 11) % n];
        }
        means[b] = sum / (double)n;
    }
    qsort(means, (size_t)B, sizeof *means, cmp_double);
    *lo = quantile_sorted(means, (size_t)B, (1 - level) / 2);
    *hi = quantile_sorted(means, (size_t)B, (1 + level) / 2);
    free(means);
    return 0;
}
