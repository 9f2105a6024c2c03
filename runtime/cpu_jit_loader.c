/* Loader of generated CPU kernels (see cpu_jit_loader.h and
 * docs/cpu-kernels-format.md): the container is parsed by formats/
 * (flock_cpuk_parse), then checked against this CPU and its code mapped.
 * Needs no LLVM: the code is already linked and position independent. */
#include "cpu_jit_loader.h"

#include "cpu_kernels_format.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

_Static_assert(FLOCK_ACT_COUNT == FLOCK_CPUK_ACT_COUNT, "cpu_kernels_format.h's act count is flock_act's");

struct flock_cpu_jit {
    char target[FLOCK_CPUK_MAX_NAME + 1];
    uint32_t arch;
    uint64_t features;
    size_t n;
    flock_cpu_jit_entry *entries;
    char *names;        /* all entry names, NUL-separated */
    uint8_t *code;      /* mapping, read+execute */
    size_t code_map_size;
};

/* ---- host CPU ------------------------------------------------------------ */

#if defined(__x86_64__)
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

static uint64_t detect_features(void)
{
    unsigned a, b, c, d;
    uint64_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    unsigned c1 = c;
    if (c1 & (1u << 0)) f |= FLOCK_CPUF_SSE3;
    if (c1 & (1u << 9)) f |= FLOCK_CPUF_SSSE3;
    if (c1 & (1u << 19)) f |= FLOCK_CPUF_SSE41;
    if (c1 & (1u << 20)) f |= FLOCK_CPUF_SSE42;
    if (c1 & (1u << 22)) f |= FLOCK_CPUF_MOVBE;
    if (c1 & (1u << 23)) f |= FLOCK_CPUF_POPCNT;
    /* AVX state must be enabled by the OS (OSXSAVE, XCR0 bits 1-2), and
     * AVX-512 state too (XCR0 bits 5-7), or the instructions fault. */
    uint64_t xcr0 = (c1 & (1u << 27)) ? xgetbv0() : 0;
    bool avx_os = (xcr0 & 0x6) == 0x6, avx512_os = (xcr0 & 0xe6) == 0xe6;
    if (avx_os && (c1 & (1u << 28))) {
        f |= FLOCK_CPUF_AVX;
        if (c1 & (1u << 12)) f |= FLOCK_CPUF_FMA;
        if (c1 & (1u << 29)) f |= FLOCK_CPUF_F16C;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (b & (1u << 3)) f |= FLOCK_CPUF_BMI1;
        if (b & (1u << 8)) f |= FLOCK_CPUF_BMI2;
        if ((f & FLOCK_CPUF_AVX) && (b & (1u << 5))) f |= FLOCK_CPUF_AVX2;
        if (avx512_os && (f & FLOCK_CPUF_AVX) && (b & (1u << 16))) {
            f |= FLOCK_CPUF_AVX512F;
            if (b & (1u << 17)) f |= FLOCK_CPUF_AVX512DQ;
            if (b & (1u << 28)) f |= FLOCK_CPUF_AVX512CD;
            if (b & (1u << 30)) f |= FLOCK_CPUF_AVX512BW;
            if (b & (1u << 31)) f |= FLOCK_CPUF_AVX512VL;
        }
    }
    if (__get_cpuid(0x80000001, &a, &b, &c, &d) && (c & (1u << 5)))
        f |= FLOCK_CPUF_LZCNT;
    return f;
}
#define HOST_ARCH FLOCK_CPUK_ARCH_X86_64
#elif defined(__aarch64__)
static uint64_t detect_features(void)
{
    return (getauxval(AT_HWCAP) & (1ul << 1)) ? FLOCK_CPUF_NEON : 0; /* HWCAP_ASIMD */
}
#define HOST_ARCH FLOCK_CPUK_ARCH_AARCH64
#else
static uint64_t detect_features(void) { return 0; }
#define HOST_ARCH 0
#endif

static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static uint64_t host_features;
static void detect_once(void) { host_features = detect_features(); }

uint64_t flock_cpu_host_features(void)
{
    pthread_once(&host_once, detect_once);
    return host_features;
}

static const char *arch_name(uint32_t a)
{
    return a == FLOCK_CPUK_ARCH_X86_64 ? "x86-64" : a == FLOCK_CPUK_ARCH_AARCH64 ? "aarch64" : "unknown";
}

flock_status flock_cpu_jit_check(const void *data, size_t size, flock_error *err)
{
    flock_cpuk_header ps;
    return flock_cpuk_parse(data, size, &ps, NULL, NULL, err);
}

/* ---- loading ------------------------------------------------------------- */

static flock_status map_code(flock_cpu_jit *j, const uint8_t *text, uint64_t text_size, flock_error *err)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    size_t len = ((size_t)text_size + page - 1) / page * page;
    if (len == 0)
        len = page;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return flock_error_set(err, FLOCK_E_IO, "cpu kernels: mmap of %zu bytes: %s", len, strerror(errno));
    memcpy(m, text, (size_t)text_size);
#if defined(__aarch64__)
    __builtin___clear_cache((char *)m, (char *)m + text_size);
#endif
    if (mprotect(m, len, PROT_READ | PROT_EXEC) != 0) {
        int e = errno;
        munmap(m, len);
        return flock_error_set(err, FLOCK_E_IO, "cpu kernels: making code executable: %s", strerror(e));
    }
    j->code = m;
    j->code_map_size = len;
    return FLOCK_OK;
}

flock_status flock_cpu_jit_load_for(const void *data, size_t size, uint64_t features, flock_cpu_jit **out,
                                    flock_error *err)
{
    if (!out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL out");
    flock_cpuk_header ps;
    flock_status st = flock_cpuk_parse(data, size, &ps, NULL, NULL, err);
    if (st != FLOCK_OK)
        return st;
    if (ps.arch != HOST_ARCH)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "cpu kernels for '%s' are %s code, this CPU is %s: using the portable kernels",
                               ps.target, arch_name(ps.arch), arch_name(HOST_ARCH));
    uint64_t have = features & flock_cpu_host_features();
    if (ps.features & ~have) {
        char buf[160];
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "cpu kernels for '%s' need %s, which this CPU lacks: using the portable kernels",
                               ps.target, flock_cpu_feature_list(ps.features & ~have, buf, sizeof buf));
    }
    flock_cpu_jit *j = calloc(1, sizeof *j);
    if (!j)
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    j->entries = calloc(ps.n, sizeof *j->entries);
    j->names = malloc((size_t)ps.n * (FLOCK_CPUK_MAX_NAME + 1));
    if (!j->entries || !j->names) {
        flock_cpu_jit_free(j);
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    }
    st = flock_cpuk_parse(data, size, &ps, j->entries, j->names, err);
    if (st == FLOCK_OK)
        st = map_code(j, ps.text, ps.text_size, err);
    if (st != FLOCK_OK) {
        flock_cpu_jit_free(j);
        return st;
    }
    j->n = ps.n;
    j->arch = ps.arch;
    j->features = ps.features;
    memcpy(j->target, ps.target, sizeof j->target);
    *out = j;
    return FLOCK_OK;
}

flock_status flock_cpu_jit_load(const void *data, size_t size, flock_cpu_jit **out, flock_error *err)
{
    return flock_cpu_jit_load_for(data, size, UINT64_MAX, out, err);
}

void flock_cpu_jit_free(flock_cpu_jit *j)
{
    if (!j)
        return;
    if (j->code)
        munmap(j->code, j->code_map_size);
    free(j->entries);
    free(j->names);
    free(j);
}

const char *flock_cpu_jit_target(const flock_cpu_jit *j) { return j ? j->target : ""; }
uint64_t flock_cpu_jit_features(const flock_cpu_jit *j) { return j ? j->features : 0; }
size_t flock_cpu_jit_count(const flock_cpu_jit *j) { return j ? j->n : 0; }

const flock_cpu_jit_entry *flock_cpu_jit_entry_at(const flock_cpu_jit *j, size_t i)
{
    return j && i < j->n ? &j->entries[i] : NULL;
}

/* Code address -> function pointer (object and function pointers have the
 * same representation on the platforms this runs on). */
static void *code_at(const flock_cpu_jit *j, const flock_cpu_jit_entry *e) { return j->code + e->offset; }

static const flock_cpu_jit_entry *find(const flock_cpu_jit *j, uint32_t kind, flock_dtype dt, flock_act act,
                                       int32_t d, int32_t n, int32_t k)
{
    for (size_t i = 0; i < j->n; i++) {
        const flock_cpu_jit_entry *e = &j->entries[i];
        if (e->kind == kind && e->dtype == dt && e->d == d && e->n == n && e->k == k &&
            (kind == FLOCK_CPUK_FFN_DOWN || kind == FLOCK_CPUK_MATVEC || e->act == act))
            return e;
    }
    return NULL;
}

flock_status flock_cpu_jit_find_ffn(const flock_cpu_jit *j, flock_dtype dtype, flock_act act, int32_t d,
                                    int32_t d_ff, int32_t k, flock_cpu_ffn_kernels *out, flock_error *err)
{
    if (!j || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL argument");
    const flock_cpu_jit_entry *up = find(j, FLOCK_CPUK_FFN_UP, dtype, act, d, d_ff, k);
    const flock_cpu_jit_entry *dn = find(j, FLOCK_CPUK_FFN_DOWN, dtype, act, d, d_ff, k);
    const flock_cpu_jit_entry *both = find(j, FLOCK_CPUK_FFN, dtype, act, d, d_ff, k);
    if (!up || !dn || !both)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "cpu kernels '%s': no %s FF kernels for d=%d d_ff=%d k=%d",
                               j->target, flock_dtype_name(dtype), d, d_ff, k);
    void *p[3] = {code_at(j, up), code_at(j, dn), code_at(j, both)};
    memcpy(&out->up, &p[0], sizeof out->up);
    memcpy(&out->down, &p[1], sizeof out->down);
    memcpy(&out->both, &p[2], sizeof out->both);
    return FLOCK_OK;
}

flock_status flock_cpu_jit_find_matvec(const flock_cpu_jit *j, flock_dtype dtype, int32_t cols,
                                       flock_cpu_matvec_fn *out, flock_error *err)
{
    if (!j || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL argument");
    const flock_cpu_jit_entry *e = find(j, FLOCK_CPUK_MATVEC, dtype, FLOCK_ACT_NONE, 0, cols, 0);
    if (!e)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "cpu kernels '%s': no %s matvec for %d columns", j->target,
                               flock_dtype_name(dtype), cols);
    void *p = code_at(j, e);
    memcpy(out, &p, sizeof *out);
    return FLOCK_OK;
}
