/* The runtime's CUDA backend (runtime/cuda_*.c) against the CPU executor,
 * without a GPU: sessions open their device through the CPU emulator's
 * driver (tests/cuda_emu/emu_driver.c), which runs the kernels generated
 * at build time from the same CUDA source flockc puts into the bundle for
 * the tiny model (tests/data/tiny-llama.gguf; checked byte for byte below). Everything above the driver
 * (section choice, checks, kernel resolution, uploads, the op walk, launch
 * shapes, GRIFFIN on the device, logits back) is the code a GPU runs.
 *
 * Also two synthetic models with random weights (cuda_emu/synth_models.h:
 * Gemma 3 in bf16 with QK-norm and a sliding window, OPT in f16 with
 * LayerNorm, learned positions, biases and a plain ReLU FF), whose emulated
 * kernels gen_emu generates at build time from the same compile.
 *
 * The tiny model compiled with --dtype q8_0 and q4_0 runs the quantized
 * kernels (codegen/cuda_quant.cu) through the same comparison.
 *
 * Needs tests/data/tiny-llama.gguf; fails without it. */
#include "test_util.h"

#include "bundle_copy.h"

#include "cuda_emu/emu_driver.h"
#include "cuda_emu/synth_models.h"
#include "flock/codegen.h"
#include "flock/compiler.h"
#include "flock/flock.h"
#include "model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const emu_kernel emu_kernels_stories[];
extern const size_t emu_n_kernels_stories;
extern const unsigned long long emu_source_hash_stories;
extern const emu_kernel emu_kernels_stories_q8_0[], emu_kernels_stories_q4_0[];
extern const size_t emu_n_kernels_stories_q8_0, emu_n_kernels_stories_q4_0;
extern const unsigned long long emu_source_hash_stories_q8_0, emu_source_hash_stories_q4_0;
extern const emu_kernel emu_kernels_synth_gemma3[], emu_kernels_synth_opt[];
extern const size_t emu_n_kernels_synth_gemma3, emu_n_kernels_synth_opt;
extern const unsigned long long emu_source_hash_synth_gemma3, emu_source_hash_synth_opt;

/* The emulated kernels of each synthetic model, as synth_models[] orders them. */
static const struct {
    const emu_kernel *k;
    const size_t *n;
    const unsigned long long *hash;
} synth_tables[] = {
    {emu_kernels_synth_gemma3, &emu_n_kernels_synth_gemma3, &emu_source_hash_synth_gemma3},
    {emu_kernels_synth_opt, &emu_n_kernels_synth_opt, &emu_source_hash_synth_opt},
};
_Static_assert(sizeof synth_tables / sizeof synth_tables[0] == sizeof synth_models / sizeof synth_models[0],
               "a table per synthetic model");

#define N_GEN 16
static const char *const PROMPT = "Alice was beginning to get very tired of sitting by her sister on the bank";

static char g_cuda[512], g_plain[512], g_other[512], g_missing[512];
static const char *g_bundle = g_cuda; /* what compare() opens */
static double g_tol = 2e-2;           /* compare()'s logits bound */
static bool g_forced;                 /* compare(): both sides decode the CPU's token, and the
                                         greedy choices are counted, not required equal */

static uint64_t fnv1a(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
    return h;
}

/* Copies bundle `from` to `to` with one more kernels section (name, data). */
static void copy_with_section(const char *from, const char *to, const char *name, const void *data, size_t size)
{
    flock_test_bundle_copy(from, to, NULL, NULL, name, data, size);
}

/* Compiles the tiny model (f16, keep 0.5) and writes the test's bundles: with
 * the CUDA section for sm_90 (its image is the generated source, which the
 * emulator driver checks against the source it was built from), without
 * any, with only sm_80, and with a kernel renamed away. */
static int setup(void **state)
{
    char gguf[512];
    flock_test_tiny_model(gguf, sizeof gguf);
    if (flock_test_tmpdir_make(state) != 0)
        return -1;
    snprintf(g_plain, sizeof g_plain, "%s", flock_test_tmp("plain.flock"));
    snprintf(g_cuda, sizeof g_cuda, "%s", flock_test_tmp("cuda.flock"));
    snprintf(g_other, sizeof g_other, "%s", flock_test_tmp("other.flock"));
    snprintf(g_missing, sizeof g_missing, "%s", flock_test_tmp("missing.flock"));
    flock_error err = {0};
    flock_source *src = NULL;
    if (flock_source_open(gguf, &src, &err) != FLOCK_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    flock_compile_opts o = flock_compile_default_opts();
    o.keep[0] = 0.5;
    o.n_keep = 1;
    o.dtype = FLOCK_DTYPE_F16;
    o.level = 0;
    o.threads = 1;
    flock_program *p = NULL;
    char *cu_src = NULL;
    size_t cu_len = 0;
    if (flock_compile_bundle(src, &o, g_plain, NULL, &err) != FLOCK_OK ||
        flock_compile_program(src, &o, &p, &err) != FLOCK_OK ||
        flock_compile_cuda_source(p, &o, &cu_src, &cu_len, &err) != FLOCK_OK) {
        fprintf(stderr, "compile: %s\n", err.msg);
        return -1;
    }
    /* The kernels flockc would compile for this bundle are the emulated ones. */
    if (fnv1a(cu_src, cu_len) != emu_source_hash_stories) {
        fprintf(stderr, "flockc's CUDA source for the tiny model differs from the emulated one: update models[] in "
                        "tests/cuda_emu/gen_emu.c\n");
        return -1;
    }
    const float keep[2] = {0.5f, 1.0f}; /* compiler/cuda_sections.c: the --keep ratios, then 1.0 */
    flock_codegen_model m;
    char *again = NULL;
    size_t again_len = 0;
    uint8_t *blob = NULL;
    size_t blob_size = 0;
    if (flock_codegen_model_from_program(p, keep, 2, FLOCK_DTYPE_F16, &m, &err) != FLOCK_OK ||
        flock_codegen_cuda_source(&m, &again, &again_len, NULL, NULL, &err) != FLOCK_OK ||
        again_len != cu_len || memcmp(again, cu_src, cu_len) != 0 ||
        flock_codegen_cuda_pack(&m, 90, FLOCK_CUDA_IMAGE_CUBIN, cu_src, cu_len, &blob, &blob_size, &err) != FLOCK_OK) {
        fprintf(stderr, "blob: %s\n", err.msg);
        return -1;
    }
    copy_with_section(g_plain, g_cuda, "cuda:sm_90", blob, blob_size);
    copy_with_section(g_plain, g_other, "cuda:sm_80", blob, blob_size);
    /* The same blob with the decode kernel of keep 0.5 renamed (same length). */
    const char *gone = "flock_ffn_gather_k86";
    uint8_t *hit = memmem(blob, blob_size, gone, strlen(gone) + 1);
    if (!hit)
        return -1;
    hit[strlen(gone) - 2] = '9';
    hit[strlen(gone) - 1] = '9';
    copy_with_section(g_plain, g_missing, "cuda:sm_90", blob, blob_size);
    free(blob);
    free(again);
    free(cu_src);
    flock_program_free(p);
    flock_source_free(src);

    emu_driver_use(emu_kernels_stories, emu_n_kernels_stories, emu_source_hash_stories);
    flock_cuda_info info = {.driver = true, .driver_version = 12040, .n_devices = 1, .cc_major = EMU_CC_MAJOR,
                            .cc_minor = EMU_CC_MINOR, .total_mem = 1ULL << 30};
    snprintf(info.name, sizeof info.name, "CPU emulator");
    flock_cuda_set_driver(emu_driver_open, &info);
    return 0;
}

static int teardown(void **state)
{
    flock_cuda_set_driver(NULL, NULL);
    return flock_test_tmpdir_remove(state);
}

static flock_model *open_model(const char *path)
{
    flock_error err = {0};
    flock_model *m = NULL;
    if (flock_model_open(path, NULL, &m, &err) != FLOCK_OK)
        fail_msg("open %s: %s", path, err.msg);
    return m;
}

static int32_t g_n_ctx = 128; /* the synthetic models are trained for 64 */

static flock_session *session(flock_model *m, flock_device dev, double keep, flock_select_mode sel, bool all)
{
    flock_session_opts o = flock_session_default_opts();
    o.device = dev;
    o.keep = keep;
    o.select = sel;
    o.all_logits = all;
    o.threads = 1;
    o.n_ctx = g_n_ctx;
    o.seed = 7;
    o.kernels = FLOCK_KERNELS_PORTABLE;
    /* the CPU side is the reference: K/V as computed (the device caches f16) */
    if (dev == FLOCK_DEVICE_CPU)
        o.kv_type = FLOCK_KV_F32;
    flock_error err = {0};
    flock_session *s = NULL;
    if (flock_session_create(m, &o, &s, &err) != FLOCK_OK)
        fail_msg("session (%s): %s", flock_device_name(dev), err.msg);
    return s;
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static size_t prompt_ids(const flock_model *m, int32_t *ids, size_t cap)
{
    size_t n = 0;
    flock_error err = {0};
    assert_int_equal(flock_tokenize(m, PROMPT, strlen(PROMPT), true, ids, cap, &n, &err), FLOCK_OK);
    return n;
}

/* GPU (emulated) vs CPU: every prompt position's logits by normalized
 * error, the selected experts, then N_GEN greedy tokens (each side feeds its
 * own choice) and each step's logits. */
static void compare(double keep, flock_select_mode sel)
{
    flock_model *m = open_model(g_bundle);
    const int32_t nv = flock_model_n_vocab(m);
    flock_session *cpu = session(m, FLOCK_DEVICE_CPU, keep, sel, true);
    flock_session *gpu = session(m, FLOCK_DEVICE_CUDA, keep, sel, true);
    assert_int_equal(flock_session_device(gpu), FLOCK_DEVICE_CUDA);
    assert_string_equal(flock_session_kernels(gpu), "cuda:sm_90");
    int32_t ids[64];
    size_t n = prompt_ids(m, ids, 64);
    assert_true(n > 8);
    assert_int_equal(flock_session_prefill(cpu, ids, n), FLOCK_OK);
    assert_int_equal(flock_session_prefill(gpu, ids, n), FLOCK_OK);
    size_t np_c = 0, np_g = 0;
    const float *lc = flock_session_logits(cpu, &np_c), *lg = flock_session_logits(gpu, &np_g);
    assert_int_equal(np_c, n);
    assert_int_equal(np_g, n);
    double worst = 0;
    for (size_t t = 0; t < n; t++) {
        double e = flock_test_nrm_err(lg + t * (size_t)nv, lc + t * (size_t)nv, (size_t)nv);
        worst = e > worst ? e : worst;
    }
    /* Expected differences: f16 KV cache and f16-rounded GEMM inputs on the
     * device (the CPU keeps f32 activations), f32 vs double statistics. */
    printf("keep %.2f %s: prompt of %zu tokens, worst per-position logits normalized error %.3e\n", keep,
           flock_select_mode_name(sel), n, worst);
    assert_true(worst < g_tol);
    /* Experts: the same sets (GRIFFIN: the device sums the statistic in f32,
     * the CPU in double; a near-tie could swap a neuron, so >= 99%). */
    size_t same = 0, total = 0;
    for (size_t i = 0; i < flock_session_n_ffn(cpu); i++) {
        const int32_t *ic, *ig;
        size_t kc, kg;
        int32_t layer = -1;
        assert_int_equal(flock_session_experts(cpu, i, &layer, &ic, &kc), FLOCK_OK);
        assert_int_equal(flock_session_experts(gpu, i, NULL, &ig, &kg), FLOCK_OK);
        assert_int_equal(kc, kg);
        assert_int_equal((int64_t)kc, flock_keep_count(keep, 172));
        for (size_t j = 0; j < kg; j++) {
            assert_true(j == 0 || ig[j] > ig[j - 1]); /* ascending, distinct */
            assert_true(ig[j] >= 0 && ig[j] < 172);
        }
        size_t a = 0, b = 0;
        while (a < kc && b < kg) { /* both ascending: count the common indices */
            if (ic[a] == ig[b])
                same++, a++, b++;
            else if (ic[a] < ig[b])
                a++;
            else
                b++;
        }
        total += kc;
    }
    printf("  experts: %zu of %zu equal (%.2f%%)\n", same, total, 100.0 * (double)same / (double)total);
    if (sel == FLOCK_SELECT_GRIFFIN)
        assert_true((double)same >= 0.99 * (double)total);
    else
        assert_int_equal(same, total); /* chosen on the host, uploaded */
    /* Greedy decoding; the emulator's allocation count must not move. */
    emu_driver_stats before = emu_driver_get_stats();
    int32_t tc[N_GEN], tg[N_GEN];
    double worst_dec = 0;
    for (int i = 0; i < N_GEN; i++) {
        tc[i] = argmax(flock_session_last_logits(cpu), nv);
        tg[i] = argmax(flock_session_last_logits(gpu), nv);
        assert_int_equal(flock_session_decode(cpu, &tc[i], 1), FLOCK_OK);
        assert_int_equal(flock_session_decode(gpu, g_forced ? &tc[i] : &tg[i], 1), FLOCK_OK);
        double e = flock_test_nrm_err(flock_session_last_logits(gpu), flock_session_last_logits(cpu), (size_t)nv);
        worst_dec = e > worst_dec ? e : worst_dec;
    }
    emu_driver_stats after = emu_driver_get_stats();
    printf("  %d greedy tokens, decode logits worst normalized error %.3e, %llu launches per step\n", N_GEN,
           worst_dec, (after.launches - before.launches) / N_GEN);
    assert_int_equal(after.allocs, before.allocs); /* nothing allocated in the token loop */
    int agree = 0;
    for (int i = 0; i < N_GEN; i++)
        agree += tc[i] == tg[i];
    if (g_forced)
        printf("  same tokens fed to both: %d of %d greedy choices equal\n", agree, N_GEN);
    else
        assert_memory_equal(tc, tg, sizeof tc);
    assert_true(worst_dec < g_tol);
    assert_true(flock_session_decode_bytes(gpu) == flock_session_decode_bytes(cpu));
    flock_session_free(cpu);
    flock_session_free(gpu);
    flock_model_free(m);
}

static void test_griffin_keep_1(void **state)
{
    (void)state;
    compare(1.0, FLOCK_SELECT_GRIFFIN);
}

static void test_griffin_keep_half(void **state)
{
    (void)state;
    compare(0.5, FLOCK_SELECT_GRIFFIN);
}

static void test_random_keep_half(void **state)
{
    (void)state;
    compare(0.5, FLOCK_SELECT_RANDOM);
}

/* Reset, then the same prompt again: bitwise the same logits (the
 * reductions are deterministic), last-token logits only. */
static void test_reset_repeat(void **state)
{
    (void)state;
    flock_model *m = open_model(g_cuda);
    const int32_t nv = flock_model_n_vocab(m);
    flock_session *s = session(m, FLOCK_DEVICE_CUDA, 0.5, FLOCK_SELECT_GRIFFIN, false);
    int32_t ids[64];
    size_t n = prompt_ids(m, ids, 64);
    float *first = malloc(sizeof(float) * (size_t)nv);
    assert_non_null(first);
    assert_int_equal(flock_session_prefill(s, ids, n), FLOCK_OK);
    size_t np = 0;
    flock_session_logits(s, &np);
    assert_int_equal(np, 1);
    memcpy(first, flock_session_last_logits(s), sizeof(float) * (size_t)nv);
    int32_t t = argmax(first, nv);
    assert_int_equal(flock_session_decode(s, &t, 1), FLOCK_OK);
    assert_int_equal(flock_session_prefill(s, ids, n), FLOCK_E_INVALID_ARG); /* not fresh */
    flock_session_reset(s);
    assert_int_equal(flock_session_n_past(s), 0);
    assert_int_equal(flock_session_decode(s, &t, 1), FLOCK_E_INVALID_ARG); /* no experts yet */
    assert_int_equal(flock_session_prefill(s, ids, n), FLOCK_OK);
    assert_memory_equal(first, flock_session_last_logits(s), sizeof(float) * (size_t)nv);
    int32_t bad = nv + 3;
    assert_int_equal(flock_session_decode(s, &bad, 1), FLOCK_E_INVALID_ARG);
    free(first);
    flock_session_free(s);
    flock_model_free(m);
    assert_int_equal(emu_driver_get_stats().live, 0); /* every device buffer freed */
}

/* The synthetic models (random weights) through both executors: every
 * position's logits, then 16 decode steps fed the CPU's greedy choice (the
 * random models' top logits are close, so each side's own greedy choice
 * would test the noise, not the backend), and the experts. */
static void test_synthetic(void **state)
{
    (void)state;
    for (size_t mi = 0; mi < sizeof synth_models / sizeof synth_models[0]; mi++) {
        const synth_model *sm = &synth_models[mi];
        char dir[512], plain[512], cuda[512], name[64];
        snprintf(dir, sizeof dir, "%s", flock_test_tmp(sm->name));
        snprintf(name, sizeof name, "%s.plain.flock", sm->name);
        snprintf(plain, sizeof plain, "%s", flock_test_tmp(name));
        snprintf(name, sizeof name, "%s.cuda.flock", sm->name);
        snprintf(cuda, sizeof cuda, "%s", flock_test_tmp(name));
        hfw w;
        sm->write(dir, &w);
        hfw_free(&w);
        flock_error err = {0};
        flock_source *src = NULL;
        flock_program *p = NULL;
        flock_compile_opts o = synth_opts(sm);
        char *cu_src = NULL;
        size_t cu_len = 0;
        flock_codegen_model cm;
        uint8_t *blob = NULL;
        size_t blob_size = 0;
        if (flock_source_open(dir, &src, &err) || flock_compile_bundle(src, &o, plain, NULL, &err) ||
            flock_compile_program(src, &o, &p, &err) || flock_compile_cuda_source(p, &o, &cu_src, &cu_len, &err) ||
            synth_cuda_model(p, &cm, &err) ||
            flock_codegen_cuda_pack(&cm, 90, FLOCK_CUDA_IMAGE_CUBIN, cu_src, cu_len, &blob, &blob_size, &err))
            fail_msg("%s: %s", sm->name, err.msg);
        assert_true(fnv1a(cu_src, cu_len) == *synth_tables[mi].hash); /* the emulated kernels are these */
        copy_with_section(plain, cuda, "cuda:sm_90", blob, blob_size);
        free(blob);
        free(cu_src);
        flock_program_free(p);
        flock_source_free(src);
        emu_driver_use(synth_tables[mi].k, *synth_tables[mi].n, *synth_tables[mi].hash);

        flock_model *m = open_model(cuda);
        const int32_t nv = flock_model_n_vocab(m);
        g_n_ctx = 64;
        flock_session *c = session(m, FLOCK_DEVICE_CPU, 0.5, FLOCK_SELECT_GRIFFIN, true);
        flock_session *g = session(m, FLOCK_DEVICE_CUDA, 0.5, FLOCK_SELECT_GRIFFIN, true);
        g_n_ctx = 128;
        assert_int_equal(flock_session_device(g), FLOCK_DEVICE_CUDA);
        int32_t ids[12];
        uint64_t rng = 12345;
        for (int i = 0; i < 12; i++)
            ids[i] = (int32_t)(flock_test_rand(&rng) % (uint64_t)nv);
        assert_int_equal(flock_session_prefill(c, ids, 12), FLOCK_OK);
        assert_int_equal(flock_session_prefill(g, ids, 12), FLOCK_OK);
        const float *lc = flock_session_logits(c, NULL), *lg = flock_session_logits(g, NULL);
        double worst = 0, worst_dec = 0;
        for (size_t t = 0; t < 12; t++) {
            double e = flock_test_nrm_err(lg + t * (size_t)nv, lc + t * (size_t)nv, (size_t)nv);
            worst = e > worst ? e : worst;
        }
        size_t same = 0, total = 0;
        for (size_t i = 0; i < flock_session_n_ffn(c); i++) {
            const int32_t *ic, *ig;
            size_t kc, kg;
            assert_int_equal(flock_session_experts(c, i, NULL, &ic, &kc), FLOCK_OK);
            assert_int_equal(flock_session_experts(g, i, NULL, &ig, &kg), FLOCK_OK);
            assert_int_equal(kc, kg);
            for (size_t a = 0; a < kc; a++)
                for (size_t b = 0; b < kg; b++)
                    same += ic[a] == ig[b];
            total += kc;
        }
        for (int i = 0; i < 16; i++) {
            int32_t t = argmax(flock_session_last_logits(c), nv);
            assert_int_equal(flock_session_decode(c, &t, 1), FLOCK_OK);
            assert_int_equal(flock_session_decode(g, &t, 1), FLOCK_OK);
            double e = flock_test_nrm_err(flock_session_last_logits(g), flock_session_last_logits(c), (size_t)nv);
            worst_dec = e > worst_dec ? e : worst_dec;
        }
        printf("%s (%s): prompt logits worst normalized error %.3e, experts %zu of %zu equal, 16 decode "
               "steps (to 28 positions) %.3e\n",
               sm->name, flock_dtype_name(sm->dtype), worst, same, total, worst_dec);
        /* bf16 / f16 rounding of the GEMM inputs on the device; the CPU keeps f32 activations */
        assert_true(worst < 3e-2);
        assert_true(worst_dec < 5e-2);
        assert_true((double)same >= 0.9 * (double)total);
        flock_session_free(c);
        flock_session_free(g);
        flock_model_free(m);
    }
    assert_int_equal(emu_driver_get_stats().live, 0);
    emu_driver_use(emu_kernels_stories, emu_n_kernels_stories, emu_source_hash_stories);
}

/* The tiny model stored as q8_0 / q4_0: flockc's CUDA source for it is
 * the emulated one, and the quantized kernels (blocks uploaded as stored)
 * give the CPU executor's greedy tokens and experts. The CPU's quantized
 * kernels round the activations to int8 blocks (llama.cpp's q8_0 x), the
 * device keeps them f32 and dequantizes the weights in registers: the
 * logits differ by more than in f16. q8_0: the same 16 greedy tokens.
 * q4_0: a near tie at step 10 of 16 goes the other way, so both sides are
 * fed the CPU's tokens and the logits compared at every step. */
static void test_quantized(void **state)
{
    (void)state;
    const struct {
        flock_dtype t;
        const emu_kernel *k;
        const size_t *n;
        const unsigned long long *hash;
    } qs[] = {
        {FLOCK_DTYPE_Q8_0, emu_kernels_stories_q8_0, &emu_n_kernels_stories_q8_0, &emu_source_hash_stories_q8_0},
        {FLOCK_DTYPE_Q4_0, emu_kernels_stories_q4_0, &emu_n_kernels_stories_q4_0, &emu_source_hash_stories_q4_0},
    };
    char gguf[512];
    flock_test_tiny_model(gguf, sizeof gguf);
    /* The CPU side runs the AVX2 table (or scalar), whose prefill takes the
     * activations in float as the device kernels do: the VNNI table's int8
     * prefill (docs/runtime.md, "Prefill"; held to double references in
     * test_runtime) rounds them to 8 bits, which on this 260K-parameter
     * model moved one of 430 GRIFFIN experts at keep 0.5 and the decode
     * logits by 0.22 after it. */
    const char *kernels_env = getenv("FLOCK_KERNELS");
    char kernels_was[32] = "";
    if (kernels_env)
        snprintf(kernels_was, sizeof kernels_was, "%s", kernels_env);
    if (!kernels_env || strcmp(kernels_env, "scalar") != 0)
        setenv("FLOCK_KERNELS", "avx2", 1);
    for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
        char plain[512], cuda[512], name[64];
        snprintf(name, sizeof name, "%s.plain.flock", flock_dtype_name(qs[qi].t));
        snprintf(plain, sizeof plain, "%s", flock_test_tmp(name));
        snprintf(name, sizeof name, "%s.cuda.flock", flock_dtype_name(qs[qi].t));
        snprintf(cuda, sizeof cuda, "%s", flock_test_tmp(name));
        flock_error err = {0};
        flock_source *src = NULL;
        flock_program *p = NULL;
        flock_compile_opts o = flock_compile_default_opts();
        o.keep[0] = 0.5;
        o.n_keep = 1;
        o.dtype = qs[qi].t;
        o.level = 0;
        o.threads = 1;
        char *cu_src = NULL;
        size_t cu_len = 0;
        flock_codegen_model cm;
        const float keep[2] = {0.5f, 1.0f};
        uint8_t *blob = NULL;
        size_t blob_size = 0;
        if (flock_source_open(gguf, &src, &err) || flock_compile_bundle(src, &o, plain, NULL, &err) ||
            flock_compile_program(src, &o, &p, &err) || flock_compile_cuda_source(p, &o, &cu_src, &cu_len, &err) ||
            flock_codegen_model_from_program(p, keep, 2, FLOCK_DTYPE_F16, &cm, &err) ||
            flock_codegen_cuda_pack(&cm, 90, FLOCK_CUDA_IMAGE_CUBIN, cu_src, cu_len, &blob, &blob_size, &err))
            fail_msg("%s: %s", flock_dtype_name(qs[qi].t), err.msg);
        assert_int_equal(cm.qtypes, 1u << qs[qi].t);
        if (fnv1a(cu_src, cu_len) != *qs[qi].hash)
            fail_msg("flockc's CUDA source for the tiny model at %s differs from the emulated one: update models[] "
                     "in tests/cuda_emu/gen_emu.c", flock_dtype_name(qs[qi].t));
        copy_with_section(plain, cuda, "cuda:sm_90", blob, blob_size);
        free(blob);
        free(cu_src);
        flock_program_free(p);
        flock_source_free(src);
        emu_driver_use(qs[qi].k, *qs[qi].n, *qs[qi].hash);
        g_bundle = cuda;
        g_tol = 5e-2;
        g_forced = qs[qi].t == FLOCK_DTYPE_Q4_0;
        printf("%s:\n", flock_dtype_name(qs[qi].t));
        compare(1.0, FLOCK_SELECT_GRIFFIN);
        compare(0.5, FLOCK_SELECT_GRIFFIN);
        g_bundle = g_cuda;
        g_tol = 2e-2;
        g_forced = false;
    }
    if (kernels_env)
        setenv("FLOCK_KERNELS", kernels_was, 1);
    else
        unsetenv("FLOCK_KERNELS");
    assert_int_equal(emu_driver_get_stats().live, 0);
    emu_driver_use(emu_kernels_stories, emu_n_kernels_stories, emu_source_hash_stories);
}

static void expect_create_error(const char *path, flock_device dev, const char *needle)
{
    flock_model *m = open_model(path);
    flock_session_opts o = flock_session_default_opts();
    o.device = dev;
    o.keep = 0.5;
    o.n_ctx = 64;
    flock_error err = {0};
    flock_session *s = NULL;
    assert_int_not_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    assert_null(s);
    printf("  %s: %s\n", strrchr(path, '/') + 1, err.msg);
    assert_non_null(strstr(err.msg, needle));
    flock_model_free(m);
}

static void test_errors_and_auto(void **state)
{
    (void)state;
    /* No CUDA section: the error names the flockc flag. */
    expect_create_error(g_plain, FLOCK_DEVICE_CUDA, "flockc --target sm_90");
    /* Only another GPU's CUBIN (and no PTX): named. */
    expect_create_error(g_other, FLOCK_DEVICE_CUDA, "cuda:sm_80");
    /* A kernel the program needs is missing from the table: named. */
    expect_create_error(g_missing, FLOCK_DEVICE_CUDA, "flock_ffn_gather_k86");
    assert_int_equal(emu_driver_get_stats().live, 0);
    /* AUTO: the GPU when the bundle has kernels for it, else the CPU, saying why. */
    flock_model *m = open_model(g_cuda);
    flock_session *s = session(m, FLOCK_DEVICE_AUTO, 1.0, FLOCK_SELECT_GRIFFIN, false);
    assert_int_equal(flock_session_device(s), FLOCK_DEVICE_CUDA);
    assert_string_equal(flock_session_kernels(s), "cuda:sm_90");
    assert_non_null(strstr(flock_session_device_note(s), "auto: cuda"));
    flock_session_free(s);
    flock_model_free(m);
    m = open_model(g_plain);
    s = session(m, FLOCK_DEVICE_AUTO, 1.0, FLOCK_SELECT_GRIFFIN, false);
    assert_int_equal(flock_session_device(s), FLOCK_DEVICE_CPU);
    printf("  auto without kernels: %s\n", flock_session_device_note(s));
    assert_non_null(strstr(flock_session_device_note(s), "no CUDA kernels"));
    flock_session_free(s);
    flock_model_free(m);
}

int main(void)
{
    char buf[512];
    flock_test_tiny_model(buf, sizeof buf); /* fails without the file */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_griffin_keep_1),  cmocka_unit_test(test_griffin_keep_half),
        cmocka_unit_test(test_random_keep_half), cmocka_unit_test(test_reset_repeat),
        cmocka_unit_test(test_errors_and_auto), cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_quantized),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
