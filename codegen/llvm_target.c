/* The LLVM CPU code generator's driver: resolves a target name to a triple,
 * CPU and feature set (and the feature bits the loader must check), builds
 * the module (llvm_kernels.c), runs the O3 pipeline, emits an object file
 * into memory and links it into a kernel container (llvm_link.c). */
#include "llvm_cpu.h"

#include "cpu_kernels_format.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* x86 features the code may use, with the bit the loader checks. A feature
 * LLVM knows but this table does not is switched off for the "cpu" target,
 * so the container never needs something the loader cannot test. */
static const struct {
    const char *name;
    uint64_t bit;
} x86_feats[] = {
    {"sse3", FLOCK_CPUF_SSE3},     {"ssse3", FLOCK_CPUF_SSSE3},       {"sse4.1", FLOCK_CPUF_SSE41},
    {"sse4.2", FLOCK_CPUF_SSE42},  {"popcnt", FLOCK_CPUF_POPCNT},     {"avx", FLOCK_CPUF_AVX},
    {"avx2", FLOCK_CPUF_AVX2},     {"fma", FLOCK_CPUF_FMA},           {"f16c", FLOCK_CPUF_F16C},
    {"bmi", FLOCK_CPUF_BMI1},      {"bmi2", FLOCK_CPUF_BMI2},         {"lzcnt", FLOCK_CPUF_LZCNT},
    {"movbe", FLOCK_CPUF_MOVBE},   {"avx512f", FLOCK_CPUF_AVX512F},   {"avx512bw", FLOCK_CPUF_AVX512BW},
    {"avx512cd", FLOCK_CPUF_AVX512CD}, {"avx512dq", FLOCK_CPUF_AVX512DQ}, {"avx512vl", FLOCK_CPUF_AVX512VL},
};

/* Features every x86-64 CPU has (or that do not change the instructions
 * this code uses). */
static const char *const x86_baseline[] = {"64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2", "x87"};

#define V3_FEATS                                                                                          \
    (FLOCK_CPUF_SSE3 | FLOCK_CPUF_SSSE3 | FLOCK_CPUF_SSE41 | FLOCK_CPUF_SSE42 | FLOCK_CPUF_POPCNT |        \
     FLOCK_CPUF_AVX | FLOCK_CPUF_AVX2 | FLOCK_CPUF_FMA | FLOCK_CPUF_F16C | FLOCK_CPUF_BMI1 |                \
     FLOCK_CPUF_BMI2 | FLOCK_CPUF_LZCNT | FLOCK_CPUF_MOVBE)
#define V4_FEATS                                                                                          \
    (V3_FEATS | FLOCK_CPUF_AVX512F | FLOCK_CPUF_AVX512BW | FLOCK_CPUF_AVX512CD | FLOCK_CPUF_AVX512DQ |    \
     FLOCK_CPUF_AVX512VL)

typedef struct resolved_target {
    char name[80];    /* canonical: "x86-64-v3", "aarch64", "host-<cpu>" */
    char triple[64];
    char cpu[64];
    char tune[64];    /* scheduling model only ("cpu": the host's) */
    char *features;   /* malloc'd "+a,-b,..." */
    uint32_t arch;    /* FLOCK_CPUK_ARCH_* */
    uint64_t required;
    lcpu_target_opts opts;
} resolved_target;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool have_x86, have_aarch64;

static void init_targets(void)
{
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
    have_x86 = true;
#ifdef FLOCK_LLVM_HAVE_AARCH64
    LLVMInitializeAArch64TargetInfo();
    LLVMInitializeAArch64Target();
    LLVMInitializeAArch64TargetMC();
    LLVMInitializeAArch64AsmPrinter();
    have_aarch64 = true;
#endif
}

static int x86_feat_index(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof x86_feats / sizeof x86_feats[0]; i++)
        if (strlen(x86_feats[i].name) == len && memcmp(x86_feats[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static bool is_x86_baseline(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof x86_baseline / sizeof x86_baseline[0]; i++)
        if (strlen(x86_baseline[i]) == len && memcmp(x86_baseline[i], name, len) == 0)
            return true;
    return false;
}

/* The host's feature string with every feature outside the two tables
 * turned off; *required gets the bits of those left on. */
static char *host_x86_features(uint64_t *required)
{
    char *host = LLVMGetHostCPUFeatures();
    size_t cap = strlen(host) + 2;
    char *out = malloc(cap);
    if (!out) {
        LLVMDisposeMessage(host);
        return NULL;
    }
    size_t o = 0;
    uint64_t req = 0;
    for (const char *p = host; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 1) {
            char sign = p[0];
            const char *name = p + 1;
            int fi = x86_feat_index(name, len - 1);
            if (sign == '+' && fi < 0 && !is_x86_baseline(name, len - 1))
                sign = '-';
            if (sign == '+' && fi >= 0)
                req |= x86_feats[fi].bit;
            o += (size_t)snprintf(out + o, cap - o, "%s%c%.*s", o ? "," : "", sign, (int)(len - 1), name);
        }
        p += len + (e != NULL);
    }
    LLVMDisposeMessage(host);
    *required = req;
    return out;
}

static flock_status resolve_target(const char *target, resolved_target *rt, flock_error *err)
{
    pthread_once(&init_once, init_targets);
    memset(rt, 0, sizeof *rt);
    if (!target)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: no target");
    if (strcmp(target, "x86-64-v3") == 0 || strcmp(target, "x86-64-v4") == 0) {
        bool v4 = target[8] == '4';
        snprintf(rt->triple, sizeof rt->triple, "x86_64-unknown-linux-gnu");
        snprintf(rt->cpu, sizeof rt->cpu, "%s", target);
        rt->features = strdup("");
        snprintf(rt->name, sizeof rt->name, "%s", target);
        rt->arch = FLOCK_CPUK_ARCH_X86_64;
        rt->required = v4 ? V4_FEATS : V3_FEATS;
        rt->opts.vw = v4 ? 16 : 8;
        rt->opts.native_f16 = true;
    } else if (strcmp(target, "cpu") == 0) {
#if defined(__x86_64__)
        snprintf(rt->triple, sizeof rt->triple, "x86_64-unknown-linux-gnu");
        /* The host CPU only tunes scheduling; the instruction set is the
         * baseline plus exactly the features listed (and checked by the
         * loader), so nothing a CPU name implies slips in unrecorded. */
        char *name = LLVMGetHostCPUName();
        snprintf(rt->tune, sizeof rt->tune, "%s", name);
        LLVMDisposeMessage(name);
        snprintf(rt->cpu, sizeof rt->cpu, "x86-64");
        snprintf(rt->name, sizeof rt->name, "host-%s", rt->tune);
        rt->features = host_x86_features(&rt->required);
        rt->arch = FLOCK_CPUK_ARCH_X86_64;
        rt->opts.vw = (rt->required & FLOCK_CPUF_AVX512F) ? 16 : (rt->required & FLOCK_CPUF_AVX) ? 8 : 4;
        rt->opts.native_f16 = (rt->required & FLOCK_CPUF_F16C) != 0;
#elif defined(__aarch64__) && defined(FLOCK_LLVM_HAVE_AARCH64)
        snprintf(rt->triple, sizeof rt->triple, "aarch64-unknown-linux-gnu");
        snprintf(rt->cpu, sizeof rt->cpu, "generic");
        snprintf(rt->name, sizeof rt->name, "aarch64");
        rt->features = strdup("+neon");
        rt->arch = FLOCK_CPUK_ARCH_AARCH64;
        rt->required = FLOCK_CPUF_NEON;
        rt->opts.vw = 8;
        rt->opts.native_f16 = true;
#else
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "cpu kernels: target 'cpu' is not supported on this host");
#endif
    } else if (strcmp(target, "aarch64") == 0) {
        if (!have_aarch64)
            return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                   "cpu kernels: this LLVM was built without the AArch64 target");
        snprintf(rt->triple, sizeof rt->triple, "aarch64-unknown-linux-gnu");
        snprintf(rt->cpu, sizeof rt->cpu, "generic");
        snprintf(rt->name, sizeof rt->name, "aarch64");
        rt->features = strdup("+neon");
        rt->arch = FLOCK_CPUK_ARCH_AARCH64;
        rt->required = FLOCK_CPUF_NEON;
        rt->opts.vw = 8; /* two q registers per value: two accumulators for free */
        rt->opts.native_f16 = true;
    } else {
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "cpu kernels: unknown target '%s' (cpu, x86-64-v3, x86-64-v4, aarch64)", target);
    }
    if (!rt->features)
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    rt->opts.cpu = rt->cpu;
    rt->opts.tune = rt->tune;
    /* 1 KiB of each upcoming gathered row: the start of a stream the hardware
     * prefetcher has not seen. Measured on the SmolLM2 shape (A/B, same
     * process): f16 about +15-30% GB/s, f32 unchanged within the noise. */
    rt->opts.prefetch_lines = 16;
    rt->opts.features = rt->features;
    return FLOCK_OK;
}

flock_status flock_llvm_cpu_target_name(const char *target, char *buf, size_t n, flock_error *err)
{
    if (!buf || n == 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: no buffer for the target name");
    resolved_target rt;
    flock_status st = resolve_target(target, &rt, err);
    free(rt.features);
    if (st != FLOCK_OK)
        return st;
    if (strlen(rt.name) >= n)
        return flock_error_set(err, FLOCK_E_RANGE, "cpu kernels: target name '%s' needs %zu bytes", rt.name,
                               strlen(rt.name) + 1);
    memcpy(buf, rt.name, strlen(rt.name) + 1);
    return FLOCK_OK;
}

bool flock_llvm_cpu_target_supported(const char *target)
{
    resolved_target rt;
    flock_status st = resolve_target(target, &rt, NULL);
    free(rt.features);
    return st == FLOCK_OK;
}

/* Builds, verifies and optimizes the module, then emits it as `ft`. */
static flock_status generate(const flock_cpu_kernel_spec *spec, const resolved_target *rt, LLVMCodeGenFileType ft,
                             LLVMMemoryBufferRef *out_buf, lcpu_kernel **kernels, size_t *n_kernels,
                             flock_error *err)
{
    char *msg = NULL;
    LLVMTargetRef tgt;
    if (LLVMGetTargetFromTriple(rt->triple, &tgt, &msg)) {
        flock_status st = flock_error_set(err, FLOCK_E_UNSUPPORTED, "cpu kernels: %s: %s", rt->triple,
                                          msg ? msg : "no target");
        LLVMDisposeMessage(msg);
        return st;
    }
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(tgt, rt->triple, rt->cpu, rt->features,
                                                      LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                                      LLVMCodeModelDefault);
    if (!tm)
        return flock_error_set(err, FLOCK_E_INTERNAL, "cpu kernels: no target machine for %s/%s", rt->triple,
                               rt->cpu);
    LLVMContextRef C = LLVMContextCreate();
    LLVMModuleRef M = LLVMModuleCreateWithNameInContext("flock_cpu_kernels", C);
    LLVMSetTarget(M, rt->triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(M, td);
    LLVMDisposeTargetData(td);

    lcpu_kernel *ks = NULL;
    size_t nk = 0;
    flock_status st = lcpu_emit_module(C, M, spec, &rt->opts, &ks, &nk, err);
    if (st == FLOCK_OK && LLVMVerifyModule(M, LLVMReturnStatusAction, &msg)) {
        st = flock_error_set(err, FLOCK_E_INTERNAL, "cpu kernels: invalid IR: %.400s", msg ? msg : "");
    }
    LLVMDisposeMessage(msg);
    msg = NULL;
    if (st == FLOCK_OK) {
        LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
        LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
        LLVMErrorRef e = LLVMRunPasses(M, "default<O3>", tm, po);
        LLVMDisposePassBuilderOptions(po);
        if (e) {
            char *em = LLVMGetErrorMessage(e);
            st = flock_error_set(err, FLOCK_E_INTERNAL, "cpu kernels: optimization failed: %s", em);
            LLVMDisposeErrorMessage(em);
        }
    }
    if (st == FLOCK_OK && LLVMTargetMachineEmitToMemoryBuffer(tm, M, ft, &msg, out_buf)) {
        st = flock_error_set(err, FLOCK_E_INTERNAL, "cpu kernels: code emission failed: %s", msg ? msg : "");
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(M);
    LLVMContextDispose(C);
    LLVMDisposeTargetMachine(tm);
    if (st != FLOCK_OK) {
        free(ks);
        return st;
    }
    *kernels = ks;
    *n_kernels = nk;
    return FLOCK_OK;
}

/* Resolves `target` and generates the module as `ft`. On success the caller
 * owns *buf, *ks and rt->features; on failure nothing is left to free. */
static flock_status resolve_and_generate(const flock_cpu_kernel_spec *spec, const char *target,
                                         LLVMCodeGenFileType ft, resolved_target *rt, LLVMMemoryBufferRef *buf,
                                         lcpu_kernel **ks, size_t *nk, flock_error *err)
{
    flock_status st = resolve_target(target, rt, err);
    if (st == FLOCK_OK)
        st = generate(spec, rt, ft, buf, ks, nk, err);
    if (st != FLOCK_OK) {
        free(rt->features);
        rt->features = NULL;
    }
    return st;
}

/* Moves an emitted buffer into malloc'd memory with a NUL after the last byte
 * (not counted in *size), and disposes the buffer. */
static flock_status take_buffer(LLVMMemoryBufferRef buf, uint8_t **out, size_t *size, flock_error *err)
{
    size_t n = LLVMGetBufferSize(buf);
    uint8_t *o = malloc(n + 1);
    if (!o) {
        LLVMDisposeMemoryBuffer(buf);
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    }
    memcpy(o, LLVMGetBufferStart(buf), n);
    o[n] = 0;
    LLVMDisposeMemoryBuffer(buf);
    *out = o;
    *size = n;
    return FLOCK_OK;
}

flock_status flock_llvm_cpu_kernels(const flock_cpu_kernel_spec *spec, const char *target, uint8_t **out,
                                    size_t *size, flock_error *err)
{
    if (!spec || !out || !size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL argument");
    resolved_target rt;
    LLVMMemoryBufferRef buf = NULL;
    lcpu_kernel *ks = NULL;
    size_t nk = 0;
    flock_status st = resolve_and_generate(spec, target, LLVMObjectFile, &rt, &buf, &ks, &nk, err);
    if (st != FLOCK_OK)
        return st;
    const uint8_t *obj = (const uint8_t *)LLVMGetBufferStart(buf);
    st = lcpu_link_container(obj, LLVMGetBufferSize(buf), rt.arch, rt.required, rt.name, ks, nk, out, size, err);
    LLVMDisposeMemoryBuffer(buf);
    free(ks);
    free(rt.features);
    return st;
}

/* The module as an object file or assembly text, unlinked. */
static flock_status emit_plain(const flock_cpu_kernel_spec *spec, const char *target, LLVMCodeGenFileType ft,
                               uint8_t **out, size_t *size, flock_error *err)
{
    resolved_target rt;
    LLVMMemoryBufferRef buf = NULL;
    lcpu_kernel *ks = NULL;
    size_t nk = 0;
    flock_status st = resolve_and_generate(spec, target, ft, &rt, &buf, &ks, &nk, err);
    if (st != FLOCK_OK)
        return st;
    free(ks);
    free(rt.features);
    return take_buffer(buf, out, size, err);
}

flock_status flock_llvm_cpu_object(const flock_cpu_kernel_spec *spec, const char *target, uint8_t **out,
                                   size_t *size, flock_error *err)
{
    if (!spec || !out || !size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL argument");
    return emit_plain(spec, target, LLVMObjectFile, out, size, err);
}

flock_status flock_llvm_cpu_asm(const flock_cpu_kernel_spec *spec, const char *target, char **out,
                                flock_error *err)
{
    if (!spec || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL argument");
    uint8_t *text = NULL;
    size_t n = 0;
    flock_status st = emit_plain(spec, target, LLVMAssemblyFile, &text, &n, err);
    if (st == FLOCK_OK)
        *out = (char *)text;
    return st;
}
