/* Status strings, dtype helpers and f16/bf16 conversions. */
#include "test_util.h"

#include "flock/formats.h"

#include <math.h>

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = 0; s < FLOCK_STATUS_COUNT; s++) {
        const char *str = flock_status_str((flock_status)s);
        assert_non_null(str);
        assert_true(strlen(str) > 0);
    }
    assert_string_equal(flock_status_str((flock_status)999), "unknown status");
}

static void test_error_set_and_prefix(void **state)
{
    (void)state;
    flock_error e = {0};
    assert_int_equal(flock_error_set(&e, FLOCK_E_CORRUPT, "bad count %d", 7), FLOCK_E_CORRUPT);
    assert_int_equal(e.status, FLOCK_E_CORRUPT);
    assert_string_equal(e.msg, "bad count 7");
    assert_int_equal(flock_error_prefix(&e, FLOCK_E_TRUNCATED, "tensor '%s'", "w"), FLOCK_E_TRUNCATED);
    assert_string_equal(e.msg, "tensor 'w': bad count 7");
    assert_int_equal(e.status, FLOCK_E_TRUNCATED);
    /* Without a buffer the message is dropped, never the status. */
    assert_int_equal(flock_error_set(NULL, FLOCK_E_IO, "x"), FLOCK_E_IO);
    assert_int_equal(flock_error_prefix(NULL, FLOCK_E_CORRUPT, "x"), FLOCK_E_CORRUPT);
}

static void test_dtype_parse(void **state)
{
    (void)state;
    flock_dtype t;
    assert_int_equal(flock_dtype_parse("BF16", &t), FLOCK_OK);
    assert_int_equal(t, FLOCK_DTYPE_BF16);
    assert_int_equal(flock_dtype_parse("f8", &t), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_dtype_size(FLOCK_DTYPE_F16), 2);
    assert_int_equal(flock_dtype_size((flock_dtype)99), 0);
}

/* Every f16 value survives f16 -> f32 -> f16 (NaNs stay NaN). */
static void test_f16_roundtrip_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = flock_f16_to_f32((uint16_t)h);
        uint16_t back = flock_f32_to_f16(f);
        if (isnan(f))
            assert_true(isnan(flock_f16_to_f32(back)));
        else
            assert_int_equal(back, h);
    }
}

static void test_f16_rounding(void **state)
{
    (void)state;
    assert_int_equal(flock_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(flock_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(flock_f32_to_f16(1e6f), 0x7c00);           /* overflow -> inf */
    assert_int_equal(flock_f32_to_f16(5.96046448e-8f), 0x0001); /* smallest subnormal */
    /* 1 + 2^-11 is halfway between 1 and the next f16: ties to even -> 1.0 */
    assert_int_equal(flock_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(flock_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    assert_int_equal(flock_f32_to_f16(-2.0f), 0xc000);
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(flock_f32_to_bf16(1.0f), 0x3f80);
    assert_true(flock_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is halfway: ties to even -> 1.0; a bit more rounds up */
    assert_int_equal(flock_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(flock_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-15f), 0x3f81);
    assert_true(isnan(flock_bf16_to_f32(flock_f32_to_bf16(NAN))));
}

/* The kept-neuron count shared by the runtime and the code generators: the
 * same for a ratio given as a double or rounded to float. */
static void test_keep_count(void **state)
{
    (void)state;
    const struct {
        double keep;
        int64_t d_ff, want;
    } c[] = {
        {0.29, 100, 29},   /* 0.29 * 100 = 28.999999999999996 in double (floor alone gave 28) */
        {0.7, 1000, 700},  /* 0.7f * 1000 = 699.99998 in float (codegen's +1e-6 gave 699) */
        {0.3, 10, 3},      /* 0.3f is 0.30000001 */
        {0.7, 10, 7},      /* 0.7f is 0.69999999 */
        {0.5, 11008, 5504},
        {0.75, 11008, 8256},
        {0.5, 172, 86},
        {0.3, 172, 51},    /* 51.6 -> 51 */
        {0.29, 172, 49},   /* 49.88 -> 49 */
        {0.5, 1536, 768},
        {1.0, 172, 172},
        {0.001, 100, 1},   /* at least one neuron */
        {0.99, 1, 1},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        assert_int_equal(flock_keep_count(c[i].keep, c[i].d_ff), c[i].want);
        assert_int_equal(flock_keep_count((float)c[i].keep, c[i].d_ff), c[i].want);
    }
    assert_int_equal(flock_keep_count(0.0, 100), 0);
    assert_int_equal(flock_keep_count(-0.5, 100), 0);
    assert_int_equal(flock_keep_count(NAN, 100), 0);
    assert_int_equal(flock_keep_count(0.5, 0), 0);
    assert_int_equal(flock_keep_count(2.0, 100), 100);
}

static void test_convert_arrays(void **state)
{
    (void)state;
    uint64_t s = 42;
    float src[257], back[257];
    uint16_t half[257];
    for (int i = 0; i < 257; i++)
        src[i] = flock_test_randf(&s) * 100.0f;
    assert_int_equal(flock_convert_from_f32(FLOCK_DTYPE_F16, src, half, 257), FLOCK_OK);
    assert_int_equal(flock_convert_to_f32(FLOCK_DTYPE_F16, half, back, 257), FLOCK_OK);
    assert_true(flock_test_nrm_err(back, src, 257) < 1e-3);
    assert_int_equal(flock_convert_from_f32(FLOCK_DTYPE_BF16, src, half, 257), FLOCK_OK);
    assert_int_equal(flock_convert_to_f32(FLOCK_DTYPE_BF16, half, back, 257), FLOCK_OK);
    assert_true(flock_test_nrm_err(back, src, 257) < 1e-2);
    assert_int_equal(flock_convert_from_f32(FLOCK_DTYPE_I32, src, half, 1), FLOCK_E_UNSUPPORTED);
}

static void test_map_missing_file(void **state)
{
    (void)state;
    flock_file_map m = {0};
    flock_error e = {0};
    assert_int_equal(flock_map_file("/nonexistent/flock/x.gguf", &m, &e), FLOCK_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/flock/x.gguf"));
    assert_null(m.data);
    flock_unmap_file(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),   cmocka_unit_test(test_error_set_and_prefix),
        cmocka_unit_test(test_dtype_parse),      cmocka_unit_test(test_f16_roundtrip_exhaustive),
        cmocka_unit_test(test_f16_rounding),     cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_keep_count),
        cmocka_unit_test(test_convert_arrays),   cmocka_unit_test(test_map_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
