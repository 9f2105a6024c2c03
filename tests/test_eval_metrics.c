/* The arithmetic of `flock eval` on hand-computed cases. */
#include "test_util.h"

#include "eval_metrics.h"

static void test_log_prob(void **state)
{
    (void)state;
    float l[2] = {0, 0};
    assert_float_equal(flock_log_prob(l, 2, 0), log(0.5), 1e-12);
    /* large logits must not overflow: softmax([1000, 1000 + ln 3]) = [1/4, 3/4] */
    float big[2] = {1000.0f, 1000.0f + (float)log(3.0)};
    assert_float_equal(flock_log_prob(big, 2, 1), log(0.75), 1e-5);
    assert_true(isnan(flock_log_prob(l, 2, 2)));
}

static void test_kl(void **state)
{
    (void)state;
    float p[2] = {(float)log(0.5), (float)log(0.5)};
    float q[2] = {(float)log(0.25), (float)log(0.75)};
    /* 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) */
    assert_float_equal(flock_kl_div(p, q, 2), 0.5 * log(2.0) + 0.5 * log(2.0 / 3.0), 1e-7);
    assert_float_equal(flock_kl_div(q, q, 2), 0.0, 1e-12);
    /* shifting all logits changes nothing */
    float q_shift[2] = {q[0] + 7.0f, q[1] + 7.0f};
    assert_float_equal(flock_kl_div(p, q_shift, 2), flock_kl_div(p, q, 2), 1e-6);
}

static void test_perplexity_and_agreement(void **state)
{
    (void)state;
    flock_ppl_acc acc = {0};
    assert_true(isnan(flock_ppl_value(&acc)));
    float a[2] = {0, 0};                                       /* p(target 0) = 1/2 */
    float b[4] = {0, 0, 0, 0};                                 /* p(target 3) = 1/4 */
    float ref_b[4] = {0, 0, 0, 5};                             /* full model prefers 3 */
    flock_ppl_add(&acc, a, a, 2, 0);
    flock_ppl_add(&acc, b, ref_b, 4, 3);
    /* mean NLL = (ln 2 + ln 4) / 2 = 1.5 ln 2 -> ppl = 2^1.5 */
    assert_float_equal(flock_ppl_value(&acc), pow(2.0, 1.5), 1e-9);
    /* argmax of a == argmax of a (0 == 0); of b (0, ties low) != of ref_b (3) */
    assert_float_equal(flock_ppl_top1(&acc), 0.5, 1e-12);
    assert_true(flock_ppl_mean_kl(&acc) > 0);
    assert_int_equal(flock_argmax(b, 4), 0);
}

static void test_rouge_hand_computed(void **state)
{
    (void)state;
    flock_rouge r;
    /* unigrams: 5 of 6 match; bigrams: the cat, on the, the mat = 3 of 5; LCS = 5 */
    assert_int_equal(flock_rouge_score("the cat sat on the mat", "the cat is on the mat", &r), 0);
    assert_float_equal(r.r1, 5.0 / 6.0, 1e-12);
    assert_float_equal(r.r2, 3.0 / 5.0, 1e-12);
    assert_float_equal(r.rl, 5.0 / 6.0, 1e-12);
    /* precision 1/1, recall 1/4 -> F1 = 2 * 0.25 / 1.25 = 0.4 */
    assert_int_equal(flock_rouge_score("cat", "the cat sat down", &r), 0);
    assert_float_equal(r.r1, 0.4, 1e-12);
    assert_float_equal(r.r2, 0.0, 1e-12);
    assert_float_equal(r.rl, 0.4, 1e-12);
}


static void test_bootstrap(void **state)
{
    (void)state;
    double lo, hi;
    const double same[5] = {0.25, 0.25, 0.25, 0.25, 0.25};
    assert_int_equal(flock_bootstrap_mean_ci(same, 5, 500, 1, 0.95, &lo, &hi), 0);
    assert_true(lo == 0.25 && hi == 0.25); /* every resample has the same mean */
    const double d[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(flock_bootstrap_mean_ci(d, 8, 4000, 7, 0.95, &lo, &hi), 0);
    assert_true(lo < 3.5 && hi > 3.5 && lo >= 0 && hi <= 7);
    /* standard error sqrt(5.25 / 8) = 0.81: the 95% interval is about +-1.6 */
    assert_true(hi - lo > 2.2 && hi - lo < 4.2);
    double lo2, hi2;
    flock_bootstrap_mean_ci(d, 8, 4000, 7, 0.95, &lo2, &hi2);
    assert_true(lo == lo2 && hi == hi2); /* deterministic */
    assert_int_equal(flock_bootstrap_mean_ci(d, 0, 100, 7, 0.95, &lo, &hi), -1);
    assert_true(isnan(lo) && isnan(hi));
    assert_int_equal(flock_bootstrap_mean_ci(d, 8, 1, 7, 0.95, &lo, &hi), -1);
    assert_int_equal(flock_bootstrap_mean_ci(d, 8, 100, 7, 1.0, &lo, &hi), -1);
}

static void test_rouge_tokenization(void **state)
{
    (void)state;
    flock_rouge r;
    assert_int_equal(flock_rouge_score("The CAT, sat!", "the cat sat", &r), 0);
    assert_float_equal(r.r1, 1.0, 1e-12);
    assert_float_equal(r.r2, 1.0, 1e-12);
    assert_float_equal(r.rl, 1.0, 1e-12);
    assert_int_equal(flock_rouge_score("", "the cat", &r), 0);
    assert_float_equal(r.r1, 0.0, 1e-12);
    /* repeated words are clipped: "the the the" vs "the cat": overlap 1, P 1/3, R 1/2 */
    assert_int_equal(flock_rouge_score("the the the", "the cat", &r), 0);
    assert_float_equal(r.r1, 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5), 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_prob),
        cmocka_unit_test(test_kl),
        cmocka_unit_test(test_perplexity_and_agreement),
        cmocka_unit_test(test_rouge_hand_computed),
        cmocka_unit_test(test_rouge_tokenization),
        cmocka_unit_test(test_bootstrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
