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

/* The quantized types: block sizes and row bytes, GGML's layouts. */
static void test_quant_sizes(void **state)
{
    (void)state;
    static const struct {
        flock_dtype t;
        const char *name;
        size_t block, bytes;
    } q[] = {{FLOCK_DTYPE_Q8_0, "q8_0", 32, 34}, {FLOCK_DTYPE_Q4_0, "q4_0", 32, 18}, {FLOCK_DTYPE_Q4_1, "q4_1", 32, 20},
             {FLOCK_DTYPE_Q4_K, "q4_k", 256, 144}, {FLOCK_DTYPE_Q6_K, "q6_k", 256, 210},
             {FLOCK_DTYPE_Q5_0, "q5_0", 32, 22}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        flock_dtype t;
        assert_int_equal(flock_dtype_parse(q[i].name, &t), FLOCK_OK);
        assert_int_equal(t, q[i].t);
        assert_string_equal(flock_dtype_name(t), q[i].name);
        assert_true(flock_dtype_is_quantized(t));
        assert_int_equal(flock_dtype_size(t), 0); /* no per-element size */
        assert_int_equal(flock_dtype_block(t), q[i].block);
        assert_int_equal(flock_dtype_block_bytes(t), q[i].bytes);
        assert_int_equal(flock_dtype_row_bytes(t, 3 * q[i].block), 3 * q[i].bytes);
        assert_int_equal(flock_dtype_row_bytes(t, q[i].block + 1), 0); /* not whole blocks */
        uint64_t shape[2] = {5, 2 * q[i].block}, bad[2] = {5, q[i].block / 2};
        assert_int_equal(flock_dtype_tensor_bytes(t, 2, shape), 10 * q[i].bytes);
        assert_int_equal(flock_dtype_tensor_bytes(t, 2, bad), 0);
    }
    assert_false(flock_dtype_is_quantized(FLOCK_DTYPE_F16));
    assert_int_equal(flock_dtype_row_bytes(FLOCK_DTYPE_F16, 7), 14);
    assert_int_equal(flock_dtype_ggml(FLOCK_DTYPE_Q4_1), 3);
    assert_int_equal(flock_dtype_ggml(FLOCK_DTYPE_Q6_K), 14);
    assert_int_equal(flock_dtype_ggml(FLOCK_DTYPE_Q5_0), 6);
}

/* Quantizing to q8_0 / q4_0 / q4_1 / q5_0 and back: each element within half a
 * quantization step of its block (d / 2), constant and zero blocks exact,
 * a non-finite input refused. */
static void test_quantize_roundtrip(void **state)
{
    (void)state;
    static const flock_dtype q[] = {FLOCK_DTYPE_Q8_0, FLOCK_DTYPE_Q4_0, FLOCK_DTYPE_Q4_1, FLOCK_DTYPE_Q5_0};
    uint64_t s = 7;
    enum { N = 32 * 9 };
    float x[N], back[N];
    uint8_t buf[9 * 34];
    for (int i = 0; i < N; i++)
        x[i] = flock_test_randf(&s) * (i < 32 ? 0.001f : 3.0f);
    for (int i = 64; i < 96; i++)
        x[i] = 0.0f; /* a zero block */
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
        assert_int_equal(flock_convert_from_f32(q[k], x, buf, N), FLOCK_OK);
        assert_int_equal(flock_convert_to_f32(q[k], buf, back, N), FLOCK_OK);
        for (int b = 0; b < N / 32; b++) {
            float lo = x[32 * b], hi = x[32 * b], amax = 0;
            for (int j = 0; j < 32; j++) {
                lo = fminf(lo, x[32 * b + j]);
                hi = fmaxf(hi, x[32 * b + j]);
                amax = fmaxf(amax, fabsf(x[32 * b + j]));
            }
            /* the step: amax/127 (q8_0), amax/8 (q4_0), amax/16 (q5_0), range/15 (q4_1); an element is
             * within half a step, but q4_0's grid runs -8..7 steps (q5_0's -16..15), so the end opposite
             * the largest magnitude clips by up to one step; the f16 scales add relative 1e-3 */
            float step = q[k] == FLOCK_DTYPE_Q8_0   ? amax / 127
                         : q[k] == FLOCK_DTYPE_Q4_0 ? amax / 8
                         : q[k] == FLOCK_DTYPE_Q5_0 ? amax / 16
                                                    : (hi - lo) / 15;
            float within = q[k] == FLOCK_DTYPE_Q4_0 || q[k] == FLOCK_DTYPE_Q5_0 ? 1.0f : 0.5f;
            for (int j = 0; j < 32; j++) {
                float e = fabsf(back[32 * b + j] - x[32 * b + j]);
                if (e > step * within * 1.01f + 2e-3f * amax + 1e-7f)
                    fail_msg("%s block %d elem %d: %g -> %g (step %g)", flock_dtype_name(q[k]), b, j,
                             x[32 * b + j], back[32 * b + j], step);
            }
        }
        for (int i = 64; i < 96; i++)
            assert_true(back[i] == 0.0f);
        assert_int_equal(flock_convert_from_f32(q[k], x, buf, 31), FLOCK_E_INVALID_ARG);
        float nan_row[32] = {0};
        nan_row[5] = NAN;
        assert_int_equal(flock_convert_from_f32(q[k], nan_row, buf, 32), FLOCK_E_CORRUPT);
    }
    assert_int_equal(flock_convert_to_f32(FLOCK_DTYPE_Q8_0, buf, back, 33), FLOCK_E_INVALID_ARG);
}

static float gauss(uint64_t *s) /* Box-Muller on two uniforms */
{
    const float u = 0.5f * (flock_test_randf(s) + 1.0f) + 1e-7f, v = flock_test_randf(s);
    return sqrtf(-2.0f * logf(u)) * cosf(3.14159265f * v);
}

/* Quantizing to q4_k / q6_k and back, on Gaussian rows of 5 super-blocks
 * whose scale varies by 20x between them (so the f16 scales and the 6-bit /
 * int8 sub-block scales are all exercised) plus an outlier: the normalized
 * error ||back - x|| / ||x|| of each super-block under 8e-2 (q4_k) and
 * 2.2e-2 (q6_k), twice that for the one with the outlier (a 30-sigma element
 * sets the super-block scale, so the int8 sub-block scales of the others are
 * coarse: 3.4e-2 was seen for q6_k). Plain min/max
 * rounding would give about range / levels / sqrt(12): 4.1 sigma / 15 /
 * 3.46 = 7.9e-2 for 32 Gaussian samples on 16 levels, and 3.6 sigma / 63 /
 * 3.46 = 1.7e-2 for 16 samples on 64; the search measures 6.7e-2..7.3e-2
 * and 1.7e-2..1.9e-2 (1.0e-1 and 1.9e-2 with the outlier). A zero super-block is
 * exact, a length not a multiple of 256 and a non-finite input refused. */
static void test_quantize_kquant_roundtrip(void **state)
{
    (void)state;
    static const struct { flock_dtype t; double bound; } q[] = {{FLOCK_DTYPE_Q4_K, 8e-2}, {FLOCK_DTYPE_Q6_K, 2.2e-2}};
    enum { N = 256 * 6 };
    static float x[N], back[N];
    static uint8_t buf[6 * 210];
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
        uint64_t s = 11 + k;
        for (int r = 0; r < 3; r++) { /* three fresh rows */
            for (int i = 0; i < N; i++)
                x[i] = gauss(&s) * (i < 256 ? 0.05f : i < 512 ? 1.0f : i < 1024 ? 0.3f : 0.0f);
            for (int i = 1280; i < N; i++)
                x[i] = gauss(&s) * 2.0f;
            x[700] = 9.0f; /* an outlier in a sub-block */
            assert_int_equal(flock_convert_from_f32(q[k].t, x, buf, N), FLOCK_OK);
            assert_int_equal(flock_convert_to_f32(q[k].t, buf, back, N), FLOCK_OK);
            for (int b = 0; b < N / 256; b++) {
                double e = 0, n = 0;
                for (int i = 256 * b; i < 256 * (b + 1); i++) {
                    e += (double)(back[i] - x[i]) * (back[i] - x[i]);
                    n += (double)x[i] * x[i];
                }
                if (n == 0)
                    assert_true(e == 0);
                else if (sqrt(e / n) > q[k].bound * (b == 700 / 256 ? 2.0 : 1.0))
                    fail_msg("%s row %d super-block %d: normalized error %g > %g", flock_dtype_name(q[k].t), r, b,
                             sqrt(e / n), q[k].bound);
                if (r == 0 && n > 0)
                    print_message("%s super-block %d: normalized error %.4g\n", flock_dtype_name(q[k].t), b, sqrt(e / n));
            }
        }
        assert_int_equal(flock_convert_from_f32(q[k].t, x, buf, 128), FLOCK_E_INVALID_ARG);
        assert_int_equal(flock_convert_from_f32(q[k].t, x, buf, 640), FLOCK_E_INVALID_ARG); /* Gemma's d_model */
        x[300] = INFINITY;
        assert_int_equal(flock_convert_from_f32(q[k].t, x, buf, 512), FLOCK_E_CORRUPT);
    }
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
        cmocka_unit_test(test_quant_sizes),      cmocka_unit_test(test_quantize_roundtrip),
        cmocka_unit_test(test_quantize_kquant_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
