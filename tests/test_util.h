/* Helpers shared by the cmocka tests. */
#ifndef FLOCK_TEST_UTIL_H
#define FLOCK_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

/* Exit code ctest counts as "skipped". */
#define FLOCK_TEST_SKIP 77

/* Returns getenv(var), or prints why the whole program is skipped and exits 77. */
static inline const char *flock_test_require_env(const char *var, const char *why)
{
    const char *v = getenv(var);
    if (!v || !*v) {
        printf("SKIPPED: %s is not set (%s)\n", var, why);
        exit(FLOCK_TEST_SKIP);
    }
    return v;
}

/* Path under $FLOCK_TEST_DATA, or skip the program when it is unset or missing. */
static inline const char *flock_test_data_path(const char *rel, char *buf, size_t n)
{
    const char *root = flock_test_require_env("FLOCK_TEST_DATA", "points at the shared test models and data");
    snprintf(buf, n, "%s/%s", root, rel);
    FILE *f = fopen(buf, "rb");
    if (!f) {
        printf("SKIPPED: %s not found\n", buf);
        exit(FLOCK_TEST_SKIP);
    }
    fclose(f);
    return buf;
}

/* A small deterministic generator for fresh random inputs (xorshift64*). */
static inline uint64_t flock_test_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static inline float flock_test_randf(uint64_t *s) /* uniform in [-1, 1) */
{
    return (float)((flock_test_rand(s) >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* ||a - b|| / ||b||; 0 when both are zero. */
static inline double flock_test_nrm_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0)
        return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}

#endif
