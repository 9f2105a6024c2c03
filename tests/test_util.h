/* Helpers shared by the cmocka tests. */
#ifndef FLOCK_TEST_UTIL_H
#define FLOCK_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h> /* program_invocation_short_name */
#include <string.h>
#include <math.h>
#include <cmocka.h>

/* Exit code ctest counts as "skipped". */
#define FLOCK_TEST_SKIP 77

/* Exit code of a program whose input is missing: a failure. The set-up
 * (tools/setup.sh --test, which `make test` runs) provides every model and
 * text the tests read, so a test that skipped without one would be a hole
 * that reports as a pass. */
#define FLOCK_TEST_MISSING 1

/* Returns getenv(var), or prints why the whole program cannot run and fails. */
static inline const char *flock_test_require_env(const char *var, const char *why)
{
    const char *v = getenv(var);
    if (!v || !*v) {
        printf("MISSING: %s is not set (%s)\n", var, why);
        exit(FLOCK_TEST_MISSING);
    }
    return v;
}

/* buf, or fails the program naming the file and what provides it. */
static inline const char *flock_test_need_file(char *buf, const char *what)
{
    FILE *f = fopen(buf, "rb");
    if (!f) {
        printf("MISSING: %s: %s not found (%s)\n", what, buf, "run tools/setup.sh --test; make test does");
        exit(FLOCK_TEST_MISSING);
    }
    fclose(f);
    return buf;
}

/* The repository's source folder: $FLOCK_SOURCE_DIR (ctest sets it), else
 * the one the test was built from. */
static inline const char *flock_test_source_dir(void)
{
    const char *v = getenv("FLOCK_SOURCE_DIR");
#ifdef FLOCK_TEST_SOURCE_DIR
    if (!v || !*v)
        v = FLOCK_TEST_SOURCE_DIR;
#endif
    return v && *v ? v : ".";
}

/* tests/data/REL of this repository (the tiny trained model, the
 * summarization prompts; tests/data/README.md), or fail. */
static inline const char *flock_test_repo_path(const char *rel, char *buf, size_t n)
{
    snprintf(buf, n, "%s/tests/data/%s", flock_test_source_dir(), rel);
    return flock_test_need_file(buf, rel);
}

/* The repository's own small trained Llama (stories260K's shape: d 64,
 * 5 layers, FF 172, 8/4 heads, vocab 512; tests/data/README.md). */
static inline const char *flock_test_tiny_model(char *buf, size_t n)
{
    return flock_test_repo_path("tiny-llama.gguf", buf, n);
}

/* REL under the set-up's cache folder: $VAR when set, else
 * ~/.cache/flock/SUB; fails when the file is not there. */
static inline const char *flock_test_cache_path(const char *var, const char *sub, const char *rel, char *buf,
                                                size_t n)
{
    const char *dir = getenv(var), *home = getenv("HOME");
    if (dir && *dir)
        snprintf(buf, n, "%s/%s", dir, rel);
    else
        snprintf(buf, n, "%s/.cache/flock/%s/%s", home ? home : "", sub, rel);
    return flock_test_need_file(buf, rel);
}

/* REL under $FLOCK_DATA_DIR (default ~/.cache/flock/data: the test text the
 * set-up fetches), or fail. */
static inline const char *flock_test_data_path(const char *rel, char *buf, size_t n)
{
    return flock_test_cache_path("FLOCK_DATA_DIR", "data", rel, buf, n);
}

/* NAME under $FLOCK_MODEL_DIR (default ~/.cache/flock/models: the real
 * models the set-up fetches), or fail. */
static inline const char *flock_test_model_path(const char *name, char *buf, size_t n)
{
    return flock_test_cache_path("FLOCK_MODEL_DIR", "models", name, buf, n);
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


/* ---- a per-program temporary folder ----------------------------------------
 * flock_test_tmpdir_make / _remove are cmocka group setup and teardown;
 * flock_test_tmp(name) is a path inside the folder (a ring of 8 buffers, so a
 * caller keeping a path across many calls copies it). */
static char flock_test_tmpdir[256];

static inline int flock_test_tmpdir_make(void **state)
{
    (void)state;
    snprintf(flock_test_tmpdir, sizeof flock_test_tmpdir, "/tmp/flock_%s_XXXXXX", program_invocation_short_name);
    return mkdtemp(flock_test_tmpdir) ? 0 : -1;
}

static inline int flock_test_tmpdir_remove(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", flock_test_tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static inline const char *flock_test_tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", flock_test_tmpdir, name);
    return buf[k];
}

/* A whole file, malloc'd with a NUL after its last byte (not counted in
 * *size, which may be NULL); NULL when it cannot be opened. */
static inline void *flock_test_slurp(const char *path, size_t *size)
{
    if (size)
        *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc(n > 0 ? (size_t)n + 1 : 1);
    assert_non_null(p);
    size_t got = n > 0 ? fread(p, 1, (size_t)n, f) : 0;
    fclose(f);
    assert_int_equal(got, n > 0 ? (size_t)n : 0);
    p[got] = 0;
    if (size)
        *size = got;
    return p;
}

#endif
