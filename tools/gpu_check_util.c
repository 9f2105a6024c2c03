/* gpu_check's host-side helpers: random data and result checks. Shared by
 * the GPU program and the CPU emulator test (tests/test_cuda_emu.c). */
#include "gpu_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gpu_check_failed, gpu_check_passed;
static uint64_t rng = 0x5eed1234abcdULL;

uint64_t rnd_u64(void) /* xorshift64* */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

float rnd_f(void) /* uniform in [-1, 1) */
{
    return (float)((rnd_u64() >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* ---- host data ------------------------------------------------------------ */

float *hrand(size_t n, float scale)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = rnd_f() * scale;
    return p;
}

/* Random 16-bit weights: the rounded values as floats, and the device copy. */
float *wrand(flock_dtype t, size_t n, float scale, CUdeviceptr *dev)
{
    float *f = hrand(n, scale);
    uint16_t *bits = malloc(2 * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        bits[i] = t == FLOCK_DTYPE_BF16 ? flock_f32_to_bf16(f[i]) : flock_f32_to_f16(f[i]);
        f[i] = t == FLOCK_DTYPE_BF16 ? flock_bf16_to_f32(bits[i]) : flock_f16_to_f32(bits[i]);
    }
    *dev = dput(bits, 2 * n);
    free(bits);
    return f;
}

/* A sorted random subset of k of [0, n). */
int *rand_subset(int n, int k)
{
    int *all = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        all[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)(rnd_u64() % (uint64_t)(n - i));
        int t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    int *s = malloc(sizeof(int) * (size_t)(k ? k : 1));
    memcpy(s, all, sizeof(int) * (size_t)k);
    free(all);
    for (int i = 1; i < k; i++) /* insertion sort: small k in checks */
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            int t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    return s;
}

static double nrm_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den == 0 ? (num == 0 ? 0 : INFINITY) : sqrt(num / den);
}

/* Compares a device result with the reference; NaN anywhere fails. */
void expect(const char *cfg, const char *what, CUdeviceptr d, const float *ref, size_t n, double tol)
{
    float *got = malloc(sizeof(float) * (n ? n : 1));
    dget(got, d, sizeof(float) * n);
    double e = nrm_err(got, ref, n);
    bool ok = e <= tol; /* false for NaN */
    printf("  %-14s %-34s err %.2e (tol %.0e)  %s\n", cfg, what, e, tol, ok ? "ok" : "FAIL");
    ok ? gpu_check_passed++ : gpu_check_failed++;
    free(got);
}

void expect_true(const char *cfg, const char *what, bool ok)
{
    printf("  %-14s %-34s %s\n", cfg, what, ok ? "ok" : "FAIL");
    ok ? gpu_check_passed++ : gpu_check_failed++;
}

