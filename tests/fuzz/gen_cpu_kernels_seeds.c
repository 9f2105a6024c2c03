/* Writes the seed corpus of fuzz_cpu_kernels into DIR: hand-made containers
 * (a valid one for this machine, one for AArch64, one needing AVX-512).
 *   gen_cpu_kernels_seeds DIR */
#include <stdio.h>
#include <stdlib.h>

#define CPUK_HANDMADE_ASSERT(c)                                                                               \
    do {                                                                                                      \
        if (!(c)) {                                                                                           \
            fprintf(stderr, "gen_cpu_kernels_seeds: %s\n", #c);                                              \
            exit(1);                                                                                          \
        }                                                                                                     \
    } while (0)
#include "cpu_kernels_handmade.h"

static int write_seed(const char *dir, const char *name, const uint8_t *b, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "gen_cpu_kernels_seeds: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_cpu_kernels_seeds DIR\n");
        return 2;
    }
    static uint8_t b[512];
    int bad = 0;
    size_t n = make_container(b, sizeof b, FLOCK_CPUK_ARCH_X86_64, 0, "x86-64", "mv1", matvec1_code,
                              sizeof matvec1_code);
    bad |= write_seed(argv[1], "x86_64.bin", b, n);
    n = make_container(b, sizeof b, FLOCK_CPUK_ARCH_AARCH64, FLOCK_CPUF_NEON, "aarch64", "mv1", matvec1_code,
                       sizeof matvec1_code);
    bad |= write_seed(argv[1], "aarch64.bin", b, n);
    n = make_container(b, sizeof b, FLOCK_CPUK_ARCH_X86_64, FLOCK_CPUF_AVX512F, "x86-64-v4", "mv1", matvec1_code,
                       sizeof matvec1_code);
    bad |= write_seed(argv[1], "avx512.bin", b, n);
    return bad;
}
