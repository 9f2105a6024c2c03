/* cpu_kernel_bench: the LLVM-generated GRIFFIN gather FF against a portable
 * reference loop, one thread, in GB/s of weights read.
 *
 * Per call at keep ratio r (k = floor(r * d_ff) kept neurons) the FF reads
 * k rows of gate_up (2*d elements) and k rows of down_t (d elements):
 * 3*k*d*sizeof(T) bytes, and does 6*k*d FLOPs. The weights of one layer are
 * used once per call, as in decoding; several layers' copies are cycled so
 * the reads come from memory rather than a warm cache. */
#include "flock/codegen.h"
#include "cpu_jit_loader.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cpu_kernel_bench [options]\n"
            "Times the generated gather FF (LLVM, loaded through the runtime's loader)\n"
            "against a portable C loop, one thread, on one model shape.\n"
            "  --target T     cpu (default), x86-64-v3, x86-64-v4\n"
            "  --d N          d_model (default 576, SmolLM2-135M)\n"
            "  --dff N        d_ff (default 1536)\n"
            "  --layers N     weight copies cycled through (default 30)\n"
            "  --seconds S    time per measurement, all rounds (default 0.5)\n"
            "  --help         this text\n"
            "Reports ms per FF call and GB/s of weights read (best of 5 rounds) for f32 and\n"
            "f16 at keep 1.0 and 0.5.\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The portable reference: the obvious loops, f32 accumulation, weights
 * widened one element at a time (what a runtime without generated code
 * would run if its compiler does not vectorize the conversion). */
static void ref_ffn(flock_dtype dt, int d, const float *x, const int32_t *idx, int k, const void *gu,
                    const void *dn, float *h, float *y)
{
    for (int j = 0; j < k; j++) {
        size_t row = (size_t)idx[j] * 2 * d;
        float sg = 0, su = 0;
        for (int c = 0; c < d; c++) {
            float g, u;
            if (dt == FLOCK_DTYPE_F32) {
                g = ((const float *)gu)[row + c];
                u = ((const float *)gu)[row + d + c];
            } else {
                g = flock_f16_to_f32(((const uint16_t *)gu)[row + c]);
                u = flock_f16_to_f32(((const uint16_t *)gu)[row + d + c]);
            }
            sg += g * x[c];
            su += u * x[c];
        }
        h[j] = sg / (1.0f + expf(-sg)) * su;
    }
    for (int c = 0; c < d; c++)
        y[c] = 0;
    for (int j = 0; j < k; j++) {
        size_t row = (size_t)idx[j] * d;
        for (int c = 0; c < d; c++) {
            float w = dt == FLOCK_DTYPE_F32 ? ((const float *)dn)[row + c]
                                            : flock_f16_to_f32(((const uint16_t *)dn)[row + c]);
            y[c] += h[j] * w;
        }
    }
}

int main(int argc, char **argv)
{
    const char *target = "cpu";
    int d = 576, dff = 1536, layers = 30;
    double secs = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (i + 1 < argc && strcmp(a, "--target") == 0) {
            target = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--d") == 0) {
            d = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--dff") == 0) {
            dff = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--layers") == 0) {
            layers = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--seconds") == 0) {
            secs = atof(argv[++i]);
        } else {
            fprintf(stderr, "cpu_kernel_bench: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (d <= 0 || dff <= 0 || layers <= 0 || layers > 1000 || !(secs > 0 && secs <= 5)) {
        fprintf(stderr, "cpu_kernel_bench: --d, --dff, --layers (1..1000) and --seconds (0..5] must be positive\n");
        return 2;
    }
    static const double keeps[] = {1.0, 0.5};
    static const flock_dtype dts[] = {FLOCK_DTYPE_F32, FLOCK_DTYPE_F16};
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    float *x = malloc((size_t)d * sizeof *x), *y = malloc((size_t)d * sizeof *y);
    float *h = malloc((size_t)dff * sizeof *h);
    int32_t *idx = malloc((size_t)dff * sizeof *idx);
    for (int c = 0; c < d; c++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        x[c] = (float)((rng >> 40) * (1.0 / 16777216.0) - 0.5);
    }
    printf("target %s, d=%d, d_ff=%d, %d weight copies, 1 thread\n", target, d, dff, layers);
    printf("%-5s %-5s %-10s %10s %10s\n", "dtype", "keep", "kernel", "ms/call", "GB/s");
    for (size_t t = 0; t < 2; t++) {
        flock_dtype dt = dts[t];
        flock_cpu_kernel_spec spec = {.d_model = d, .d_ff = dff, .ffn_dtype = dt, .act = FLOCK_ACT_SILU,
                                      .n_keep = 2, .keep = keeps};
        uint8_t *cont = NULL;
        size_t cn = 0;
        flock_error err = {0};
        double t0 = now_s();
        if (flock_llvm_cpu_kernels(&spec, target, &cont, &cn, &err) != FLOCK_OK) {
            fprintf(stderr, "cpu_kernel_bench: codegen: %s\n", err.msg);
            return 1;
        }
        double tgen = now_s() - t0;
        flock_cpu_jit *jit = NULL;
        if (flock_cpu_jit_load(cont, cn, &jit, &err) != FLOCK_OK) {
            fprintf(stderr, "cpu_kernel_bench: %s\n", err.msg);
            free(cont);
            return 1;
        }
        printf("# %s: generated %zu bytes of container in %.2f s\n", flock_dtype_name(dt), cn, tgen);
        free(cont);
        size_t es = flock_dtype_size(dt), gu_n = (size_t)dff * 2 * d, dn_n = (size_t)dff * d;
        uint8_t *w = malloc((gu_n + dn_n) * es * (size_t)layers);
        if (!w) {
            fprintf(stderr, "cpu_kernel_bench: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < (gu_n + dn_n) * (size_t)layers; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            float v = (float)((rng >> 40) * (1.0 / 16777216.0) - 0.5) * 0.1f;
            if (dt == FLOCK_DTYPE_F32)
                memcpy(w + i * 4, &v, 4);
            else {
                uint16_t hb = flock_f32_to_f16(v);
                memcpy(w + i * 2, &hb, 2);
            }
        }
        for (size_t kr = 0; kr < 2; kr++) {
            int k = (int)floor(keeps[kr] * dff);
            for (int i = 0; i < dff; i++)
                idx[i] = i;
            for (int i = dff - 1; i > 0; i--) { /* a random subset, sorted as GRIFFIN's selection is */
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                int j2 = (int)((rng >> 33) % (uint64_t)(i + 1));
                int32_t tmp = idx[i];
                idx[i] = idx[j2];
                idx[j2] = tmp;
            }
            for (int i = 1; i < k; i++) /* insertion sort of the first k */
                for (int j2 = i; j2 > 0 && idx[j2 - 1] > idx[j2]; j2--) {
                    int32_t tmp = idx[j2];
                    idx[j2] = idx[j2 - 1];
                    idx[j2 - 1] = tmp;
                }
            flock_cpu_ffn_kernels fk;
            if (flock_cpu_jit_find_ffn(jit, dt, FLOCK_ACT_SILU, d, dff, k, &fk, &err) != FLOCK_OK) {
                fprintf(stderr, "cpu_kernel_bench: %s\n", err.msg);
                return 1;
            }
            double bytes = 3.0 * k * d * (double)es;
            for (int which = 0; which < 2; which++) {
                /* Best of 5 rounds: the machine may be shared, and the
                 * fastest round is the one least disturbed. */
                double best = 1e30;
                long calls = 0;
                for (int round = 0; round < 5; round++) {
                    long n = 0;
                    double start = now_s(), el;
                    do {
                        const uint8_t *gu = w + (size_t)(calls++ % layers) * (gu_n + dn_n) * es;
                        const uint8_t *dn = gu + gu_n * es;
                        if (which == 0)
                            fk.both(x, idx, gu, dn, h, y);
                        else
                            ref_ffn(dt, d, x, idx, k, gu, dn, h, y);
                        n++;
                        el = now_s() - start;
                    } while (el < secs / 5);
                    if (el / n < best)
                        best = el / n;
                }
                printf("%-5s %-5.2f %-10s %10.4f %10.2f\n", flock_dtype_name(dt), keeps[kr],
                       which == 0 ? "generated" : "portable", best * 1e3, bytes / best / 1e9);
            }
        }
        free(w);
        flock_cpu_jit_free(jit);
    }
    free(x);
    free(y);
    free(h);
    free(idx);
    return 0;
}
