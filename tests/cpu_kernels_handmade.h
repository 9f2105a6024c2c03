/* A CPU kernel container written by hand (docs/cpu-kernels-format.md)
 * around a hand-assembled x86-64 kernel, for the loader's tests and the
 * fuzzer's seeds; needs no LLVM. Include after cmocka (uses assert_true) or
 * define CPUK_HANDMADE_ASSERT. */
#ifndef FLOCK_TESTS_CPU_KERNELS_HANDMADE_H
#define FLOCK_TESTS_CPU_KERNELS_HANDMADE_H

#include "flock/formats.h"
#include "cpu_kernels_format.h"
#include "reader.h"

#include <string.h>

#ifndef CPUK_HANDMADE_ASSERT
#define CPUK_HANDMADE_ASSERT(c) assert_true(c)
#endif

/* A matvec kernel for cols = 1 in the MATVEC ABI (System V):
 * void (const void *w, const float *x, int64_t r0, int64_t r1, float *y):
 *   for (r = r0; r < r1; r++) y[r] = w[r] * x[0];  (SSE only) */
static const uint8_t matvec1_code[] = {
    0x48, 0x39, 0xca,                   /*  0: cmp   rdx, rcx            */
    0x7d, 0x14,                         /*  3: jge   25                  */
    0xf3, 0x0f, 0x10, 0x04, 0x97,       /*  5: movss xmm0, [rdi+rdx*4]   */
    0xf3, 0x0f, 0x59, 0x06,             /* 10: mulss xmm0, [rsi]         */
    0xf3, 0x41, 0x0f, 0x11, 0x04, 0x90, /* 14: movss [r8+rdx*4], xmm0    */
    0x48, 0xff, 0xc2,                   /* 20: inc   rdx                 */
    0xeb, 0xe7,                         /* 23: jmp   0                   */
    0xc3,                               /* 25: ret                       */
};

/* Writes a one-kernel container; returns its size. */
static inline size_t make_container(uint8_t *b, size_t cap, uint32_t arch, uint64_t features, const char *target,
                             const char *name, const uint8_t *code, size_t code_size)
{
    size_t tl = strlen(target), nl = strlen(name);
    size_t size = FLOCK_CPUK_HEADER_SIZE + 1 + tl + 1 + nl + FLOCK_CPUK_ENTRY_FIXED + code_size;
    CPUK_HANDMADE_ASSERT(size <= cap);
    memset(b, 0, size);
    memcpy(b, FLOCK_CPUK_MAGIC, 8);
    flock_wr_u16(b + 8, FLOCK_CPUK_MAJOR);
    flock_wr_u16(b + 10, FLOCK_CPUK_MINOR);
    flock_wr_u32(b + 12, arch);
    flock_wr_u64(b + 16, features);
    flock_wr_u32(b + 32, 1);
    flock_wr_u64(b + 40, code_size);
    size_t o = FLOCK_CPUK_HEADER_SIZE;
    b[o++] = (uint8_t)tl;
    memcpy(b + o, target, tl);
    o += tl;
    b[o++] = (uint8_t)nl;
    memcpy(b + o, name, nl);
    o += nl;
    flock_wr_u32(b + o, FLOCK_CPUK_MATVEC);
    flock_wr_u32(b + o + 4, FLOCK_DTYPE_F32);
    flock_wr_u32(b + o + 16, 1);            /* cols */
    flock_wr_u64(b + o + 24, 0);            /* offset */
    flock_wr_u64(b + o + 32, code_size);
    o += FLOCK_CPUK_ENTRY_FIXED;
    memcpy(b + o, code, code_size);
    flock_wr_u64(b + FLOCK_CPUK_CHECKSUM_AT, flock_cpuk_checksum(b, size));
    return size;
}

#endif
