/* The helpers shared by the `flock` subcommands (tools/flock_cli.h). */
#include "test_util.h"

#include "flock_cli.h"

/* Runs the JSON string writer into memory. */
static char *json_of(const char *s, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    flock_cli_json_strn(f, s, n);
    fclose(f);
    return buf;
}

static void test_json_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\", 4, "\"q\\\"b\\\\\""},
        {"a\nb\tc\r", 6, "\"a\\nb\\tc\\r\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\""},
        {"nul\0x", 5, "\"nul\\u0000x\""},
        {"\xc3\xa9\xe2\x96\x81\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x96\x81\xf0\x9f\x98\x80\""}, /* é ▁ 😀 */
        {"\xff\xc3", 2, "\"\\ufffd\\ufffd\""},            /* invalid byte, cut sequence */
        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},            /* overlong */
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""}, /* surrogate */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *o = json_of(cases[i].in, cases[i].n);
        assert_string_equal(o, cases[i].out);
        free(o);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    flock_cli_json_str(f, NULL);
    fputc(' ', f);
    flock_cli_json_double(f, 0.25);
    fputc(' ', f);
    flock_cli_json_double(f, 1.0 / 0.0);
    fclose(f);
    assert_string_equal(buf, "\"\" 0.25 null");
    free(buf);
}

static void test_options(void **state)
{
    (void)state;
    char *argv[] = {"cmd", "--level=5", "--out", "dir", "--level", "--outfile", "x", "--threads"};
    int argc = 8, i = 1;
    const char *v = NULL;
    assert_int_equal(flock_cli_opt_value("t", argc, argv, &i, "--level", &v), 1);
    assert_string_equal(v, "5");
    i = 2;
    assert_int_equal(flock_cli_opt_value("t", argc, argv, &i, "--out", &v), 1);
    assert_string_equal(v, "dir");
    assert_int_equal(i, 3);
    i = 5; /* --outfile is not --out */
    assert_int_equal(flock_cli_opt_value("t", argc, argv, &i, "--out", &v), 0);
    i = 7; /* missing value */
    assert_int_equal(flock_cli_opt_value("t", argc, argv, &i, "--threads", &v), -1);
    assert_true(flock_cli_is_help("-h") && flock_cli_is_help("--help") && !flock_cli_is_help("-help"));

    long long n;
    double d;
    assert_true(flock_cli_parse_int("42", 0, 100, &n) && n == 42);
    assert_true(flock_cli_parse_int("0x10", 0, 100, &n) && n == 16);
    assert_false(flock_cli_parse_int("101", 0, 100, &n));
    assert_false(flock_cli_parse_int("4x", 0, 100, &n));
    assert_false(flock_cli_parse_int("", 0, 100, &n));
    assert_false(flock_cli_parse_int("99999999999999999999", 0, INT64_MAX, &n));
    assert_true(flock_cli_parse_double("0.5", 0, 1, &d) && d == 0.5);
    assert_false(flock_cli_parse_double("nan", 0, 1, &d));
    assert_false(flock_cli_parse_double("1.5", 0, 1, &d));
    assert_int_equal(flock_cli_usage_error("t", "bad %d", 1), FLOCK_EXIT_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
