/* The CPU references that tools/gpu_check compares the CUDA kernels with:
 * checked here against hand-computed values and against each other, so that
 * a GPU failure points at the kernel, not at the reference. */
#include "test_util.h"

#include "gpu_check_ref.h"

static void test_act_values(void **state)
{
    (void)state;
    assert_true(fabs(ref_act(FLOCK_ACT_SILU, 0.0)) < 1e-15);
    assert_true(fabs(ref_act(FLOCK_ACT_SILU, 1.0) - 0.7310585786300049) < 1e-12);
    assert_true(fabs(ref_act(FLOCK_ACT_GELU, 1.0) - 0.8413447460685429) < 1e-12);
    assert_true(fabs(ref_act(FLOCK_ACT_GELU_TANH, 1.0) - 0.8411919906082768) < 1e-12);
    assert_true(ref_act(FLOCK_ACT_RELU, -2.0) == 0.0);
    assert_true(ref_act(FLOCK_ACT_NONE, -2.0) == -2.0);
}

static void test_select_ties_and_nan(void **state)
{
    (void)state;
    const float stat[6] = {1, 3, 3, 2, NAN, 3};
    int idx[6];
    ref_griffin_select(stat, 6, 3, idx);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 2);
    assert_int_equal(idx[2], 5);
    ref_griffin_select(stat, 6, 4, idx);
    assert_int_equal(idx[3], 5);
    assert_int_equal(idx[2], 3);
    ref_griffin_select(stat, 6, 6, idx); /* NaN last but kept when all are */
    for (int i = 0; i < 6; i++)
        assert_int_equal(idx[i], i);
    const float ties[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    ref_griffin_select(ties, 4, 2, idx);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
}

/* Each non-zero row adds exactly 1 to the sum of the statistic; a zero row adds nothing. */
static void test_stat_rows_normalized(void **state)
{
    (void)state;
    uint64_t s = 11;
    enum { T = 5, F = 33 };
    float z[T * F], stat[F] = {0};
    for (int i = 0; i < T * F; i++)
        z[i] = flock_test_randf(&s) * 4;
    memset(z + 2 * F, 0, sizeof(float) * F);
    ref_griffin_stat(z, T, F, stat);
    double sum = 0;
    for (int i = 0; i < F; i++) {
        assert_false(isnan(stat[i]));
        sum += stat[i];
    }
    assert_true(fabs(sum - (T - 1)) < 1e-5);
}

static void test_rope_rotation(void **state)
{
    (void)state;
    uint64_t s = 3;
    enum { T = 2, H = 3, HD = 8, RD = 6 };
    float x[T * H * HD], y[T * H * HD], inv[RD / 2];
    for (int i = 0; i < RD / 2; i++)
        inv[i] = powf(10000.0f, -2.0f * i / RD);
    for (int neox = 0; neox < 2; neox++) {
        for (int i = 0; i < T * H * HD; i++)
            x[i] = flock_test_randf(&s);
        memcpy(y, x, sizeof x);
        ref_rope(y, T, H, HD, RD, neox, 0, inv); /* token 0 at position 0: unchanged */
        assert_memory_equal(x, y, sizeof(float) * H * HD);
        for (int h = 0; h < H; h++) { /* token 1: each rotated pair keeps its length; the tail stays */
            const float *a = x + (H + h) * HD, *b = y + (H + h) * HD;
            for (int i = 0; i < RD / 2; i++) {
                const int i0 = neox ? i : 2 * i, i1 = neox ? i + RD / 2 : 2 * i + 1;
                assert_true(fabsf(hypotf(a[i0], a[i1]) - hypotf(b[i0], b[i1])) < 1e-6f);
            }
            for (int i = RD; i < HD; i++)
                assert_true(a[i] == b[i]);
        }
        /* pair 0 turns by exactly 1 radian at position 1 (inv_freq[0] = 1) */
        const int i1 = neox ? RD / 2 : 1;
        const float *a = x + H * HD, *b = y + H * HD;
        assert_true(fabs(b[0] - (a[0] * cos(1.0) - a[i1] * sin(1.0))) < 1e-6);
    }
}

static void test_attention_edges(void **state)
{
    (void)state;
    flock_codegen_model m = {.n_head = 4, .n_kv_head = 2, .head_dim = 4};
    uint64_t s = 5;
    enum { KVD = 8, QD = 16, ROWS = 6 };
    float q[2 * QD], kc[ROWS * KVD], vc[ROWS * KVD], out[2 * QD];
    for (int i = 0; i < 2 * QD; i++)
        q[i] = flock_test_randf(&s);
    for (int i = 0; i < ROWS * KVD; i++) {
        kc[i] = flock_test_randf(&s);
        vc[i] = flock_test_randf(&s);
    }
    /* One key: the output is that key's value row (per KV group). */
    ref_attention(&m, q, kc, vc, 1, 0, 0, 0.5f, out);
    for (int h = 0; h < 4; h++)
        for (int d = 0; d < 4; d++)
            assert_true(fabsf(out[h * 4 + d] - vc[(h / 2) * 4 + d]) < 1e-6f);
    /* Window 1 at positions 4 and 5: each query sees only its own row. */
    ref_attention(&m, q, kc, vc, 2, 4, 1, 0.5f, out);
    for (int t = 0; t < 2; t++)
        for (int h = 0; h < 4; h++)
            for (int d = 0; d < 4; d++)
                assert_true(fabsf(out[t * QD + h * 4 + d] - vc[(4 + t) * KVD + (h / 2) * 4 + d]) < 1e-6f);
    /* Equal keys: the mean of the values. */
    for (int i = 0; i < ROWS * KVD; i++)
        kc[i] = 1.0f;
    ref_attention(&m, q, kc, vc, 1, 2, 0, 0.5f, out);
    for (int d = 0; d < 4; d++)
        assert_true(fabsf(out[d] - (vc[d] + vc[KVD + d] + vc[2 * KVD + d]) / 3) < 1e-6f);
}

/* Keeping every neuron through gather + down equals the dense gated FF, and
 * the tensor-core reference's linear epilogue equals the GEMV on rounded inputs. */
static void test_gather_equals_dense(void **state)
{
    (void)state;
    enum { D = 16, F = 24 };
    flock_codegen_model m = {.d_model = D, .d_ff = F, .act = FLOCK_ACT_SILU, .gated = 1};
    uint64_t s = 9;
    float gu[F * 2 * D], down_t[F * D], x[D], h[F], y[D], dense[D];
    int idx[F];
    for (int i = 0; i < F * 2 * D; i++)
        gu[i] = flock_test_randf(&s);
    for (int i = 0; i < F * D; i++)
        down_t[i] = flock_test_randf(&s);
    for (int i = 0; i < D; i++)
        x[i] = flock_test_randf(&s);
    for (int i = 0; i < F; i++)
        idx[i] = i;
    ref_ffn_gather(&m, gu, NULL, x, idx, F, h);
    ref_ffn_down(down_t, h, idx, F, D, NULL, NULL, y);
    for (int c = 0; c < D; c++) {
        double acc = 0;
        for (int n = 0; n < F; n++) {
            double g = 0, u = 0;
            for (int k = 0; k < D; k++) {
                g += (double)gu[n * 2 * D + k] * x[k];
                u += (double)gu[n * 2 * D + D + k] * x[k];
            }
            acc += g / (1 + exp(-g)) * u * down_t[n * D + c];
        }
        dense[c] = (float)acc;
    }
    assert_true(flock_test_nrm_err(y, dense, D) < 1e-6);

    /* GEMM (linear, M = 1) on an input already in f16 = GEMV. */
    float xr[D], w[F * D], g1[F], g2[F];
    for (int i = 0; i < D; i++)
        xr[i] = ref_round(FLOCK_DTYPE_F16, x[i]);
    for (int i = 0; i < F * D; i++)
        w[i] = ref_round(FLOCK_DTYPE_F16, down_t[i]);
    ref_gemm(xr, 1, w, F, D, 0, 0, 0, FLOCK_DTYPE_F16, NULL, NULL, g1);
    ref_gemv(w, xr, NULL, NULL, F, D, g2);
    assert_true(flock_test_nrm_err(g1, g2, F) < 1e-7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_values),
        cmocka_unit_test(test_select_ties_and_nan),
        cmocka_unit_test(test_stat_rows_normalized),
        cmocka_unit_test(test_rope_rotation),
        cmocka_unit_test(test_attention_edges),
        cmocka_unit_test(test_gather_equals_dense),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
