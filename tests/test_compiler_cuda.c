/* flockc's CUDA kernel sections (--target sm_XY): a small synthetic Llama
 * folder and (a separate ctest entry) the tiny trained model of tests/data
 * compiled with NVRTC; each "cuda:*" section's blob parses with
 * the formats reader, matches the model and lists the decode kernels for
 * every keep ratio (and 1.0); output is byte-identical across runs and
 * thread counts; --emit-cuda; the errors (--dtype f32, a build without
 * CUDA). */
#pragma GCC diagnostic ignored "-Wunused-function" /* compiler_models.h: not every family is used here */
#include "compiler_models.h"

#include "flock/codegen.h"
#include "flock/compiler.h"

#include <math.h>

#include <sys/wait.h>
#include <unistd.h>

/* Runs flockc with `args`; stdout and stderr go to files in flock_test_tmpdir (read
 * back into *out / *errs when not NULL; caller frees). Returns the exit code. */
static int flockc(const char *args, char **out, char **errs)
{
    const char *b = getenv("FLOCK_BUILD_DIR");
    const char *of = flock_test_tmp("flockc.out"), *ef = flock_test_tmp("flockc.err");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/tools/flockc' %s >'%s' 2>'%s'", b ? b : ".", args, of, ef);
    int rc = system(cmd);
    if (out)
        *out = flock_test_slurp(of, NULL);
    if (errs)
        *errs = flock_test_slurp(ef, NULL);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool has_kernel(const flock_cuda_blob *b, const char *name)
{
    return flock_cuda_blob_find(b, name) >= 0;
}

/* What a "cuda:<target>" section must hold for a model with these
 * dimensions compiled with keep ratios `keep` (1.0 is added by flockc). */
typedef struct want_model {
    int32_t d_model, d_ff, n_head, n_kv_head, head_dim, vocab;
    flock_dtype wtype;
    const double *keep;
    size_t n_keep;
} want_model;

static void check_section(const flock_bundle *bd, const char *name, uint32_t arch, uint32_t image_kind,
                          const want_model *w)
{
    int64_t si = flock_bundle_find_section(bd, FLOCK_SECTION_KERNELS, name);
    if (si < 0)
        fail_msg("bundle has no kernels section '%s'", name);
    void *data = NULL;
    size_t size = 0;
    flock_error e = {0};
    assert_int_equal(flock_bundle_read_section(bd, (size_t)si, &data, &size, &e), FLOCK_OK);
    flock_cuda_blob b;
    if (flock_cuda_blob_parse(data, size, &b, &e) != FLOCK_OK)
        fail_msg("%s: %s", name, e.msg);
    assert_int_equal(b.arch, arch);
    assert_int_equal(b.image_kind, image_kind);
    if (image_kind == FLOCK_CUDA_IMAGE_CUBIN) {
        assert_memory_equal(b.image, "\x7f" "ELF", 4);
    } else {
        char want_target[32];
        snprintf(want_target, sizeof want_target, ".target sm_%u", (unsigned)arch);
        assert_non_null(strstr((const char *)b.image, want_target));
    }
    assert_int_equal(b.model.d_model, w->d_model);
    assert_int_equal(b.model.d_ff, w->d_ff);
    assert_int_equal(b.model.n_head, w->n_head);
    assert_int_equal(b.model.n_kv_head, w->n_kv_head);
    assert_int_equal(b.model.head_dim, w->head_dim);
    assert_int_equal(b.model.vocab, w->vocab);
    assert_int_equal(b.model.wtype, w->wtype);
    assert_int_equal(b.model.kv_type, FLOCK_DTYPE_F16);
    assert_int_equal(b.model.n_keep, w->n_keep + 1);
    /* One decode step: the norm, the projections and the LM head, RoPE + KV write, attention. */
    char k[64];
    const char *fixed[] = {"flock_embed", "flock_rope_kv_store", "flock_attn_partial", "flock_attn_combine",
                           "flock_ffn_down_reduce", "flock_griffin_rownorm", "flock_griffin_colsum",
                           "flock_griffin_compact", "flock_ffn_up_prefill", "flock_ffn_down_prefill"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!has_kernel(&b, fixed[i]))
            fail_msg("%s: no kernel %s", name, fixed[i]);
    const int32_t q = w->n_head * w->head_dim, kv = w->n_kv_head * w->head_dim;
    const int32_t gemv[4][2] = {{q, w->d_model}, {kv, w->d_model}, {w->d_model, q}, {w->vocab, w->d_model}};
    snprintf(k, sizeof k, "flock_rmsnorm_g%d", (int)w->d_model);
    assert_true(has_kernel(&b, k));
    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof k, "flock_gemv_n%d_k%d", (int)gemv[i][0], (int)gemv[i][1]);
        if (!has_kernel(&b, k))
            fail_msg("%s: no kernel %s", name, k);
    }
    /* The decode FF for each keep ratio, and 1.0 (the dense FF), with the ratio in the table. */
    for (size_t i = 0; i <= w->n_keep; i++) {
        const double r = i < w->n_keep ? w->keep[i] : 1.0;
        const int32_t kn = flock_keep_count((float)r, w->d_ff);
        assert_true(kn >= 1 && kn <= w->d_ff);
        const char *fmt[3] = {"flock_ffn_gather_k%d", "flock_ffn_down_k%d", "flock_griffin_rank_k%d"};
        for (int f = 0; f < 3; f++) {
            snprintf(k, sizeof k, fmt[f], (int)kn);
            int64_t ki = flock_cuda_blob_find(&b, k);
            if (ki < 0)
                fail_msg("%s: no kernel %s (keep %g)", name, k, r);
            flock_cuda_kernel_info info;
            assert_int_equal(flock_cuda_blob_kernel(&b, (size_t)ki, &info, &e), FLOCK_OK);
            assert_int_equal(info.spec, (uint32_t)kn);
            assert_true(fabs(info.keep - r) < 1e-6);
        }
    }
    free(data);
}

/* `flock inspect` (text and --json) shows the kernels section `name` with
 * `kernel` in its table. */
static void check_inspect(const char *bundle, const char *name, const char *kernel)
{
    const char *b = getenv("FLOCK_BUILD_DIR");
    char cmd[1536];
    for (int json = 0; json < 2; json++) {
        const char *of = flock_test_tmp("inspect.out");
        snprintf(cmd, sizeof cmd, "'%s/tools/flock' inspect %s '%s' >'%s'", b ? b : ".", json ? "--json" : "",
                 bundle, of);
        assert_int_equal(system(cmd), 0);
        char *out = flock_test_slurp(of, NULL), want[256];
        if (json)
            snprintf(want, sizeof want, "{\"section\": \"%s\", \"image_kind\":", name);
        else
            snprintf(want, sizeof want, "\nkernels %s: ", name);
        if (!strstr(out, want) || !strstr(out, kernel))
            fail_msg("flock inspect %s: no '%s' or '%s' in:\n%s", json ? "--json" : "", want, kernel, out);
        free(out);
    }
}

/* tools/extract_section.py (what tools/gpu-check.sh uses on a GPU machine
 * without the full build) writes each cuda:* section's bytes exactly as the
 * bundle reader returns them. Skipped without python3. */
static void check_extract_script(const char *bundle, const flock_bundle *bd)
{
    if (system("python3 -c 'import struct' >/dev/null 2>&1") != 0) {
        print_message("(no python3: tools/extract_section.py not checked)\n");
        return;
    }
    const char *src = getenv("FLOCK_SOURCE_DIR");
    char outdir[512], cmd[2048];
    snprintf(outdir, sizeof outdir, "%s", flock_test_tmp("sections"));
    snprintf(cmd, sizeof cmd, "python3 '%s/tools/extract_section.py' '%s' '%s' >'%s'", src ? src : ".", bundle,
             outdir, flock_test_tmp("extract.out"));
    assert_int_equal(system(cmd), 0);
    size_t n_checked = 0;
    for (size_t i = 0; i < flock_bundle_section_count(bd); i++) {
        flock_section_info si;
        assert_int_equal(flock_bundle_section_info(bd, i, &si), FLOCK_OK);
        if (si.kind != FLOCK_SECTION_KERNELS || strncmp(si.name, "cuda:", 5) != 0)
            continue;
        char path[700];
        snprintf(path, sizeof path, "%s/cuda_%s.blob", outdir, si.name + 5);
        void *want = NULL;
        size_t want_n = 0, got_n = 0;
        assert_int_equal(flock_bundle_read_section(bd, i, &want, &want_n, NULL), FLOCK_OK);
        char *got = flock_test_slurp(path, &got_n);
        if (!got)
            fail_msg("extract_section.py wrote no %s", path);
        assert_int_equal(got_n, want_n);
        assert_memory_equal(got, want, want_n);
        free(got);
        free(want);
        n_checked++;
    }
    assert_true(n_checked >= 2);
}

/* Compiles `model` with `args` twice (--threads 1 and 2) and checks that
 * the bundles are identical; returns the first one's path. */
static const char *compile_twice(const char *model, const char *args)
{
    static char path[2][512];
    for (int t = 0; t < 2; t++) {
        snprintf(path[t], sizeof path[t], "%s/det%d.flock", flock_test_tmpdir, t);
        char a[1536], *errs = NULL;
        snprintf(a, sizeof a, "'%s' -o '%s' %s --threads %d", model, path[t], args, t + 1);
        int rc = flockc(a, NULL, &errs);
        if (rc != 0)
            fail_msg("flockc %s: exit %d: %s", a, rc, errs ? errs : "");
        if (t == 0) { /* progress lines name each NVRTC compile (stderr is not a terminal) */
            assert_non_null(strstr(errs, "cuda:compute_80: generating and compiling (NVRTC)"));
        }
        free(errs);
    }
    size_t n0, n1;
    char *b0 = flock_test_slurp(path[0], &n0), *b1 = flock_test_slurp(path[1], &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(b0, b1, n0);
    free(b0);
    free(b1);
    return path[0];
}

static void test_synthetic_llama(void **state)
{
    (void)state;
    hfw w;
    const char *dir = flock_test_tmp("llama");
    char dir_copy[512];
    snprintf(dir_copy, sizeof dir_copy, "%s", dir);
    write_llama(dir_copy, &w);
    char a[1024], *out = NULL, *errs = NULL;
    if (!flock_compile_cuda_available()) {
        snprintf(a, sizeof a, "'%s' -o '%s' --target sm_80", dir_copy, flock_test_tmp("x.flock"));
        assert_int_equal(flockc(a, NULL, &errs), 2);
        assert_non_null(strstr(errs, "built without CUDA/NVRTC"));
        free(errs);
        hfw_free(&w);
        return;
    }
    /* f32 weights: the flag is named. */
    snprintf(a, sizeof a, "'%s' -o '%s' --target cpu,sm_80 --dtype f32", dir_copy, flock_test_tmp("x.flock"));
    assert_int_equal(flockc(a, NULL, &errs), 1);
    assert_non_null(strstr(errs, "--target sm_80"));
    assert_non_null(strstr(errs, "use --dtype f16, bf16, q8_0, q4_0, q4_1 or source (got --dtype f32)"));
    free(errs);
    /* --dtype source on f32 safetensors: the first f32 matrix is named. */
    snprintf(a, sizeof a, "'%s' -o '%s' --target sm_80 --dtype source", dir_copy, flock_test_tmp("x.flock"));
    assert_int_equal(flockc(a, NULL, &errs), 1);
    assert_non_null(strstr(errs, "--target sm_80"));
    assert_non_null(strstr(errs, "is f32: the CUDA kernels read f16, bf16, q8_0, q4_0 and q4_1 matrices"));
    free(errs);
    /* --emit-cuda: the source, specialized on this model (needs no NVRTC). */
    snprintf(a, sizeof a, "'%s' --emit-cuda --keep 0.5", dir_copy);
    assert_int_equal(flockc(a, &out, &errs), 0);
    assert_non_null(strstr(out, "#define D_MODEL 16\n"));
    assert_non_null(strstr(out, "#define D_FF 24\n"));
    assert_non_null(strstr(out, "flock_ffn_gather_k12"));
    assert_non_null(strstr(out, "flock_ffn_gather_k24"));
    free(out);
    free(errs);
    /* Too many distinct kept counts for the kernels' table. */
    snprintf(a, sizeof a, "'%s' -o '%s' --target sm_80 --keep 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8", dir_copy,
             flock_test_tmp("x.flock"));
    assert_int_equal(flockc(a, NULL, &errs), 1);
    assert_non_null(strstr(errs, "at most 8 distinct counts"));
    free(errs);

    const double keep[] = {0.25, 0.5};
    const char *path = compile_twice(dir_copy, "--keep 0.25,0.5 --target sm_86,cpu --dtype bf16 --level 0");
    flock_bundle *bd = NULL;
    flock_error e = {0};
    assert_int_equal(flock_bundle_open(path, &bd, &e), FLOCK_OK);
    const want_model wm = {D, FF, H, KV, D / H, V, FLOCK_DTYPE_BF16, keep, 2};
    check_section(bd, "cuda:sm_86", 86, FLOCK_CUDA_IMAGE_CUBIN, &wm);
    check_section(bd, "cuda:compute_80", 80, FLOCK_CUDA_IMAGE_PTX, &wm);
    check_extract_script(path, bd); /* stored sections (--level 0) */
    /* Exactly two CUDA kernel sections, in --target order then the PTX
     * (cpu:* sections, from an LLVM build, are test_compiler's). */
    size_t nk = 0;
    for (size_t i = 0; i < flock_bundle_section_count(bd); i++) {
        flock_section_info s;
        flock_bundle_section_info(bd, i, &s);
        if (s.kind == FLOCK_SECTION_KERNELS && strncmp(s.name, "cuda:", 5) == 0)
            assert_string_equal(s.name, nk++ == 0 ? "cuda:sm_86" : "cuda:compute_80");
    }
    assert_int_equal(nk, 2);
    flock_bundle_close(bd);
    hfw_free(&w);
}

/* ---- the tiny trained model (tests/data) ------------------------------------------------ */

static char stories[512];

static void test_stories(void **state)
{
    (void)state;
    /* head_dim 8, d_model 64, d_ff 172: shapes the codegen accepts. */
    const char *path = compile_twice(stories, "--target sm_80");
    flock_bundle *bd = NULL;
    flock_error e = {0};
    assert_int_equal(flock_bundle_open(path, &bd, &e), FLOCK_OK);
    const double keep[] = {0.25, 0.5, 0.75}; /* flockc's default */
    const want_model wm = {64, 172, 8, 4, 8, 512, FLOCK_DTYPE_F16, keep, 3};
    check_section(bd, "cuda:sm_80", 80, FLOCK_CUDA_IMAGE_CUBIN, &wm);
    check_section(bd, "cuda:compute_80", 80, FLOCK_CUDA_IMAGE_PTX, &wm);
    check_extract_script(path, bd); /* compressed sections (--level 3) */
    check_inspect(path, "cuda:sm_80", "flock_ffn_gather_k43");
    check_inspect(path, "cuda:compute_80", "flock_gemv_n512_k64");
    const char *const *targets = NULL;
    size_t nt = 0;
    assert_int_equal(flock_manifest_get_str_arr(flock_bundle_manifest(bd), "targets", &targets, &nt, &e), FLOCK_OK);
    assert_int_equal(nt, 1);
    assert_string_equal(targets[0], "sm_80");
    flock_bundle_close(bd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "tiny")) {
        flock_test_tiny_model(stories, sizeof stories);
        if (!flock_compile_cuda_available()) {
            printf("SKIPPED: this flockc has no NVRTC (FLOCK_CUDA=OFF)\n");
            return FLOCK_TEST_SKIP;
        }
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_stories)};
        return cmocka_run_group_tests(tests, flock_test_tmpdir_make, flock_test_tmpdir_remove);
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_synthetic_llama)};
    return cmocka_run_group_tests(tests, flock_test_tmpdir_make, flock_test_tmpdir_remove);
}
