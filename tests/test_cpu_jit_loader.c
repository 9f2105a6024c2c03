/* The runtime's loader of generated CPU kernels, without LLVM: containers
 * written here by hand (following docs/cpu-kernels-format.md) around a
 * hand-assembled x86-64 kernel; host feature detection; refusal of foreign
 * or too-demanding code; truncation and bit flips. */
#include "test_util.h"

#include "cpu_jit_loader.h"
#include "cpu_kernels_format.h"
#include "reader.h"
#include "cpu_kernels_handmade.h"

static uint8_t buf[512];

static void test_run_hand_made(void **state)
{
    (void)state;
#if !defined(__x86_64__)
    skip();
#else
    size_t n = make_container(buf, sizeof buf, FLOCK_CPUK_ARCH_X86_64, 0, "x86-64", "mv1", matvec1_code,
                              sizeof matvec1_code);
    flock_error err = {0};
    flock_cpu_jit *j = NULL;
    assert_int_equal(flock_cpu_jit_load(buf, n, &j, &err), FLOCK_OK);
    memset(buf, 0xcc, n); /* the loader copied what it needs */
    assert_string_equal(flock_cpu_jit_target(j), "x86-64");
    assert_int_equal(flock_cpu_jit_count(j), 1);
    assert_string_equal(flock_cpu_jit_entry_at(j, 0)->name, "mv1");
    assert_null(flock_cpu_jit_entry_at(j, 1));
    flock_cpu_matvec_fn fn = NULL;
    assert_int_equal(flock_cpu_jit_find_matvec(j, FLOCK_DTYPE_F16, 1, &fn, &err), FLOCK_E_NOT_FOUND);
    assert_int_equal(flock_cpu_jit_find_matvec(j, FLOCK_DTYPE_F32, 1, &fn, &err), FLOCK_OK);
    flock_cpu_ffn_kernels fk;
    assert_int_equal(flock_cpu_jit_find_ffn(j, FLOCK_DTYPE_F32, FLOCK_ACT_SILU, 1, 1, 1, &fk, &err),
                     FLOCK_E_NOT_FOUND);
    uint64_t s = 42;
    float w[10], x = flock_test_randf(&s) + 2.0f, y[10];
    for (int i = 0; i < 10; i++) {
        w[i] = flock_test_randf(&s);
        y[i] = -1.0f;
    }
    fn(w, &x, 2, 7, y);
    for (int i = 0; i < 10; i++) {
        if (i >= 2 && i < 7)
            assert_true(y[i] == w[i] * x);
        else
            assert_true(y[i] == -1.0f);
    }
    flock_cpu_jit_free(j);
    flock_cpu_jit_free(NULL);
#endif
}

/* The detected features agree with the kernel's view in /proc/cpuinfo. */
static void test_host_features(void **state)
{
    (void)state;
    uint64_t f = flock_cpu_host_features();
    char list[256];
    printf("host features: %s\n", flock_cpu_feature_list(f, list, sizeof list));
    assert_int_equal(f & ~(uint64_t)FLOCK_CPUF_ALL, 0);
#if defined(__x86_64__)
    FILE *pf = fopen("/proc/cpuinfo", "r");
    if (!pf)
        skip();
    static char line[16384];
    char *flags = NULL;
    while (fgets(line, sizeof line, pf))
        if (strncmp(line, "flags", 5) == 0) {
            flags = line;
            break;
        }
    fclose(pf);
    if (!flags)
        skip();
    static const struct {
        const char *proc;
        uint64_t bit;
    } pairs[] = {{" avx2", FLOCK_CPUF_AVX2},       {" fma", FLOCK_CPUF_FMA},         {" f16c", FLOCK_CPUF_F16C},
                 {" avx512f", FLOCK_CPUF_AVX512F}, {" avx512bw", FLOCK_CPUF_AVX512BW}, {" bmi2", FLOCK_CPUF_BMI2},
                 {" sse4_2", FLOCK_CPUF_SSE42},    {" movbe", FLOCK_CPUF_MOVBE}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char pat[32];
        snprintf(pat, sizeof pat, "%s ", pairs[i].proc);
        bool in_proc = strstr(flags, pat) != NULL;
        snprintf(pat, sizeof pat, "%s\n", pairs[i].proc);
        in_proc = in_proc || strstr(flags, pat) != NULL;
        if (in_proc != ((f & pairs[i].bit) != 0))
            fail_msg("%s: /proc/cpuinfo %d, detected %d", pairs[i].proc + 1, in_proc, (f & pairs[i].bit) != 0);
    }
#endif
}

static void test_refusals(void **state)
{
    (void)state;
    flock_error err = {0};
    flock_cpu_jit *j = NULL;
    /* Code for another architecture. */
#if defined(__x86_64__)
    uint32_t foreign = FLOCK_CPUK_ARCH_AARCH64;
#else
    uint32_t foreign = FLOCK_CPUK_ARCH_X86_64;
#endif
    size_t n = make_container(buf, sizeof buf, foreign, 0, "elsewhere", "mv1", matvec1_code, sizeof matvec1_code);
    assert_int_equal(flock_cpu_jit_check(buf, n, &err), FLOCK_OK);
    assert_int_equal(flock_cpu_jit_load(buf, n, &j, &err), FLOCK_E_UNSUPPORTED);
    assert_null(j);
#if defined(__x86_64__)
    /* Features the (masked) CPU lacks: refused, and the message names them. */
    n = make_container(buf, sizeof buf, FLOCK_CPUK_ARCH_X86_64, FLOCK_CPUF_AVX512F | FLOCK_CPUF_AVX2, "x86-64-v4",
                       "mv1", matvec1_code, sizeof matvec1_code);
    assert_int_equal(flock_cpu_jit_load_for(buf, n, ~(uint64_t)FLOCK_CPUF_AVX512F, &j, &err), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "avx512f"));
    assert_null(strstr(err.msg, "avx2"));
    assert_null(j);
    /* Masking never grants a feature the host lacks. */
    uint64_t missing = ~flock_cpu_host_features() & FLOCK_CPUF_ALL & ~(uint64_t)FLOCK_CPUF_NEON;
    if (missing) {
        uint64_t bit = missing & (~missing + 1);
        n = make_container(buf, sizeof buf, FLOCK_CPUK_ARCH_X86_64, bit, "x", "mv1", matvec1_code,
                           sizeof matvec1_code);
        assert_int_equal(flock_cpu_jit_load_for(buf, n, UINT64_MAX, &j, &err), FLOCK_E_UNSUPPORTED);
    }
#endif
    /* A feature bit this runtime does not know. */
    n = make_container(buf, sizeof buf, FLOCK_CPUK_ARCH_X86_64, 1ull << 40, "x", "mv1", matvec1_code,
                       sizeof matvec1_code);
    assert_int_equal(flock_cpu_jit_check(buf, n, &err), FLOCK_E_UNSUPPORTED);
    assert_int_equal(flock_cpu_jit_load(NULL, 0, &j, &err), FLOCK_E_INVALID_ARG);
}

static void test_corruption(void **state)
{
    (void)state;
    uint8_t good[512];
    size_t n = make_container(good, sizeof good, FLOCK_CPUK_ARCH_X86_64, 0, "x86-64", "mv1", matvec1_code,
                              sizeof matvec1_code);
    flock_error err = {0};
    assert_int_equal(flock_cpu_jit_check(good, n, &err), FLOCK_OK);
    for (size_t len = 0; len < n; len++) {
        uint8_t *t = malloc(len ? len : 1); /* exact size: ASan catches over-reads */
        memcpy(t, good, len);
        flock_cpu_jit *j = NULL;
        flock_status st = flock_cpu_jit_load(t, len, &j, &err);
        if (st == FLOCK_OK)
            fail_msg("truncated to %zu bytes: accepted", len);
        assert_null(j);
        free(t);
    }
    for (size_t bit = 0; bit < n * 8; bit++) {
        memcpy(buf, good, n);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        flock_cpu_jit *j = NULL;
        if (flock_cpu_jit_load(buf, n, &j, &err) == FLOCK_OK)
            fail_msg("bit %zu flipped: accepted", bit);
        assert_null(j);
    }
    /* Absurd counts and sizes with a valid checksum. */
    const struct {
        size_t off;
        uint32_t v;
        flock_status want;
    } cases[] = {
        {32, 0xffffffffu, FLOCK_E_CORRUPT},   /* kernel count beyond the limit */
        {32, 4000, FLOCK_E_TRUNCATED},        /* count larger than the bytes left */
        {40, 0xfffffff0u, FLOCK_E_TRUNCATED}, /* text size beyond the file */
        {44, 1, FLOCK_E_TRUNCATED},           /* text size >= 2^32 */
        {40, 3, FLOCK_E_CORRUPT},             /* bytes after the blob */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, good, n);
        flock_wr_u32(buf + cases[i].off, cases[i].v);
        flock_wr_u64(buf + FLOCK_CPUK_CHECKSUM_AT, flock_cpuk_checksum(buf, n));
        flock_status st = flock_cpu_jit_check(buf, n, &err);
        if (st != cases[i].want)
            fail_msg("case %zu: %s (%s)", i, flock_status_str(st), err.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_features),
        cmocka_unit_test(test_run_hand_made),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
