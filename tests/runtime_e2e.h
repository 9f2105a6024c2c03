/* The end-to-end part (the tiny trained model) of test_runtime (runtime_e2e.c): the
 * public API and the flock CLI over bundles flockc compiles. */
#ifndef FLOCK_TEST_RUNTIME_E2E_H
#define FLOCK_TEST_RUNTIME_E2E_H

void test_e2e_stories_greedy(void **state);
void test_e2e_stories_errors_and_keep(void **state);
void test_e2e_stories_f16_compressed(void **state);
void test_e2e_stories_cli(void **state);
void test_e2e_stories_no_alloc_in_token_loop(void **state);
void test_e2e_stories_device(void **state);
void test_e2e_stories_generated_kernels(void **state);
void test_e2e_stories_foreign_kernels(void **state);
void test_e2e_stories_corrupt_kernels(void **state);
void test_e2e_stories_batched_decode(void **state);
void test_e2e_stories_packed_rows(void **state);
int flock_e2e_setup(void **state);
int flock_e2e_teardown(void **state);

#endif
