/* Arithmetic of `flock eval`: perplexity, KL divergence, top-1 agreement and
 * ROUGE-1/2/L, kept apart from the CLI so the tests can check it on
 * hand-computed cases. */
#ifndef FLOCK_EVAL_METRICS_H
#define FLOCK_EVAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* log softmax(logits)[idx], computed stably (max subtracted, sums in double). */
double flock_log_prob(const float *logits, size_t n, size_t idx);

/* KL(P || Q) = sum_i p_i (log p_i - log q_i), P = softmax(ref_logits) (the
 * full model), Q = softmax(logits) (the pruned one). In nats, >= 0. */
double flock_kl_div(const float *ref_logits, const float *logits, size_t n);

/* Index of the largest logit (the lowest index on ties). */
size_t flock_argmax(const float *logits, size_t n);

/* Running totals over scored tokens. */
typedef struct flock_ppl_acc {
    double nll_sum;   /* sum of -log p(target) */
    double kl_sum;    /* sum of KL(full || this) */
    uint64_t agree;   /* argmax equal to the full model's */
    uint64_t count;   /* tokens scored */
} flock_ppl_acc;

/* Adds one position: `logits` of the model under test, `ref_logits` of the
 * full model (may equal `logits`), the true next token. */
void flock_ppl_add(flock_ppl_acc *acc, const float *logits, const float *ref_logits, size_t n_vocab,
                   size_t target);
double flock_ppl_value(const flock_ppl_acc *acc);     /* exp(mean NLL); NAN if empty */
double flock_ppl_mean_kl(const flock_ppl_acc *acc);   /* NAN if empty */
double flock_ppl_top1(const flock_ppl_acc *acc);      /* fraction in [0,1]; NAN if empty */

/* Percentile bootstrap of the mean of d[0..n-1] (one value per unit: a
 * text window or a prompt): B resamples of n units drawn with replacement
 * (xorshift64* from `seed`, so the same call gives the same interval), and
 * the (1 - level) / 2 and (1 + level) / 2 quantiles of their means
 * (linear interpolation) into *lo and *hi. Returns 0, or -1 for n == 0,
 * B < 2, level outside (0, 1) or no memory (then *lo, *hi are NAN). */
int flock_bootstrap_mean_ci(const double *d, size_t n, int B, uint64_t seed, double level, double *lo, double *hi);

/* ROUGE F1 scores of `candidate` against `reference`, tokenized as the
 * rouge_score package does without stemming: lowercase, every character
 * outside [a-z0-9] is a separator. */
typedef struct flock_rouge {
    double r1, r2, rl; /* F1 of unigrams, bigrams, longest common subsequence */
} flock_rouge;

/* Returns 0, or -1 when memory runs out. */
int flock_rouge_score(const char *candidate, const char *reference, flock_rouge *out);

#endif
