/* Private: the CPU kernel container, the payload of a bundle's
 * `cpu:<target>` kernel section (spec: docs/cpu-kernels-format.md): its
 * constants and its reader (formats/cpu_kernels.c).
 *
 * Shared by its one writer (codegen/llvm_link.c, at compile time, with LLVM)
 * and the runtime's loader (runtime/cpu_jit_loader.c, at run time, without
 * LLVM), so both sides agree on every number. Values never change meaning
 * (new ones are added at the end). */
#ifndef FLOCK_FORMATS_CPU_KERNELS_FORMAT_H
#define FLOCK_FORMATS_CPU_KERNELS_FORMAT_H

#include "flock/base.h"

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#define FLOCK_CPUK_MAGIC "FLOCKCPU"     /* 8 bytes, no NUL */
#define FLOCK_CPUK_MAJOR 1
#define FLOCK_CPUK_MINOR 0
#define FLOCK_CPUK_HEADER_SIZE 48       /* fixed part, before the target name */
#define FLOCK_CPUK_CHECKSUM_AT 24       /* u64 xxh64 of everything but itself */
#define FLOCK_CPUK_MAX_NAME 127         /* target and kernel names, bytes */
#define FLOCK_CPUK_MAX_KERNELS 4096
#define FLOCK_CPUK_ENTRY_FIXED 40       /* per kernel entry, after its name */

/* Instruction set of the machine code. */
enum {
    FLOCK_CPUK_ARCH_X86_64 = 1,
    FLOCK_CPUK_ARCH_AARCH64 = 2,
    FLOCK_CPUK_ARCH_END
};

/* CPU features the code may use; the loader refuses a container whose
 * required set is not a subset of what the host CPU (and OS) provides. */
enum {
    FLOCK_CPUF_SSE3 = 1u << 0,
    FLOCK_CPUF_SSSE3 = 1u << 1,
    FLOCK_CPUF_SSE41 = 1u << 2,
    FLOCK_CPUF_SSE42 = 1u << 3,
    FLOCK_CPUF_POPCNT = 1u << 4,
    FLOCK_CPUF_AVX = 1u << 5,      /* includes OS support of the YMM state */
    FLOCK_CPUF_AVX2 = 1u << 6,
    FLOCK_CPUF_FMA = 1u << 7,
    FLOCK_CPUF_F16C = 1u << 8,
    FLOCK_CPUF_BMI1 = 1u << 9,
    FLOCK_CPUF_BMI2 = 1u << 10,
    FLOCK_CPUF_LZCNT = 1u << 11,
    FLOCK_CPUF_MOVBE = 1u << 12,
    FLOCK_CPUF_AVX512F = 1u << 13, /* includes OS support of the ZMM/opmask state */
    FLOCK_CPUF_AVX512BW = 1u << 14,
    FLOCK_CPUF_AVX512CD = 1u << 15,
    FLOCK_CPUF_AVX512DQ = 1u << 16,
    FLOCK_CPUF_AVX512VL = 1u << 17,
    FLOCK_CPUF_NEON = 1u << 18,    /* AArch64 Advanced SIMD */
    FLOCK_CPUF_END = 1u << 19
};
#define FLOCK_CPUF_ALL (FLOCK_CPUF_END - 1u)

/* What a kernel computes; its C ABI is documented in flock/codegen.h. */
enum {
    FLOCK_CPUK_FFN_UP = 1,   /* gated FF, gate/up phase over kept rows [j0, j1) */
    FLOCK_CPUK_FFN_DOWN = 2, /* gated FF, down phase over output columns [c0, c1) */
    FLOCK_CPUK_FFN = 3,      /* both phases, one thread */
    FLOCK_CPUK_MATVEC = 4,   /* y[r0..r1) = W x */
    FLOCK_CPUK_KIND_END
};

/* Activation values a kernel entry may carry: flock_act's (flock/ir.h, which
 * formats does not see; the runtime's loader asserts that they agree). */
#define FLOCK_CPUK_ACT_COUNT 5

/* One kernel entry, as read (the name points into the caller's names). */
typedef struct flock_cpuk_entry {
    const char *name;
    uint32_t kind;        /* FLOCK_CPUK_FFN_UP ... */
    flock_dtype dtype;    /* weight storage */
    uint32_t act;         /* a flock_act */
    int32_t d, n, k;      /* see the format spec */
    uint64_t offset, size;/* in the code blob */
} flock_cpuk_entry;

/* The container's header, as read. */
typedef struct flock_cpuk_header {
    uint32_t arch;
    uint64_t features;
    char target[FLOCK_CPUK_MAX_NAME + 1];
    uint32_t n;          /* kernels */
    size_t table_off;    /* first entry */
    const uint8_t *text; /* the code blob, in the caller's data */
    uint64_t text_size;
} flock_cpuk_header;

/* Checks a whole container (header, checksum, every entry, the code blob's
 * bounds, known feature bits) and fills *hdr; with entries [hdr->n] and
 * names [hdr->n * (FLOCK_CPUK_MAX_NAME + 1)] non-NULL, the entries too.
 * FLOCK_E_TRUNCATED / E_CORRUPT / E_CHECKSUM / E_VERSION, or E_UNSUPPORTED
 * for a feature bit this build does not know. */
flock_status flock_cpuk_parse(const void *data, size_t size, flock_cpuk_header *hdr, flock_cpuk_entry *entries,
                              char *names, flock_error *err);

/* "avx2,fma,..." for a feature set, into buf (always NUL-terminated). */
const char *flock_cpu_feature_list(uint64_t bits, char *buf, size_t n);

/* The container's checksum covers every byte but itself: xxh64 of bytes
 * [32, end) seeded with the xxh64 (seed 0) of bytes [0, 24). size >= 32. */
static inline uint64_t flock_cpuk_checksum(const uint8_t *p, size_t size)
{
    uint64_t head = XXH64(p, FLOCK_CPUK_CHECKSUM_AT, 0);
    return XXH64(p + FLOCK_CPUK_CHECKSUM_AT + 8, size - FLOCK_CPUK_CHECKSUM_AT - 8, head);
}

#endif
