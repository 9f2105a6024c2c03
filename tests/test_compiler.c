/* The compiler: golden IR for small configurations of each family (through
 * `flockc --emit-ir`), the FF packing / ranking / GPT-2 splitting checked
 * against the weights the test wrote, frontend errors, flockc's command line
 * and determinism, and (separate ctest entries, skipped without the files)
 * the tiny trained model (tests/data) and the real models. */
#include "compiler_models.h"

#include "flock/compiler.h"

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- helpers ----------------------------------------------------------------- */

static const char *flockc_path(void)
{
    static char path[512];
    const char *b = getenv("FLOCK_BUILD_DIR");
    snprintf(path, sizeof path, "%s/tools/flockc", b ? b : ".");
    return path;
}

/* Runs flockc with `args`; returns its exit status; stderr to `errfile`. */
static int flockc(const char *args, const char *stdout_file, const char *errfile)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", flockc_path(), args, stdout_file ? stdout_file : "/dev/null",
             errfile ? errfile : "/dev/null");
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Compares `flockc MODEL --emit-ir` with tests/golden/NAME.ir (rewritten
 * instead when FLOCK_UPDATE_GOLDEN is set). */
static void check_golden(const char *model, const char *name)
{
    char args[1024], golden[1024];
    snprintf(args, sizeof args, "'%s' --emit-ir --dtype f16", model);
    const char *out = flock_test_tmp("emit.ir"), *errf = flock_test_tmp("emit.err");
    int rc = flockc(args, out, errf);
    if (rc != 0) {
        char *e = flock_test_slurp(errf, NULL);
        fail_msg("flockc --emit-ir %s: exit %d: %s", model, rc, e ? e : "");
    }
    const char *src = getenv("FLOCK_SOURCE_DIR");
    snprintf(golden, sizeof golden, "%s/tests/golden/%s.ir", src ? src : ".", name);
    char *got = flock_test_slurp(out, NULL);
    if (getenv("FLOCK_UPDATE_GOLDEN")) {
        FILE *f = fopen(golden, "w");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    char *want = flock_test_slurp(golden, NULL);
    if (!want)
        fail_msg("golden file %s is missing (run with FLOCK_UPDATE_GOLDEN=1 to create it)", golden);
    if (strcmp(got, want) != 0)
        fail_msg("%s: --emit-ir output differs from %s (diff %s %s)", model, golden, out, golden);
    free(got);
    free(want);
}

typedef void (*writer_fn)(const char *dir, hfw *w);

static void test_golden_families(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        writer_fn write;
    } fams[] = {
        {"llama_hf", write_llama}, {"qwen2_hf", write_qwen2}, {"gemma2_hf", write_gemma2},
        {"gemma3_hf", write_gemma3}, {"opt_hf", write_opt}, {"gpt2_hf", write_gpt2},
        {"gemma3_hf", write_gemma3_wrapped}, {"mistral_hf", write_mistral},
    };
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        hfw w;
        const char *dir = flock_test_tmp(fams[i].name);
        fams[i].write(dir, &w);
        check_golden(dir, fams[i].name);
        hfw_free(&w);
    }    /* GGUF: Gemma norms used as stored (unit_offset 0), Qwen2 NEOX with biases. */
    char path[512];
    snprintf(path, sizeof path, "%s", flock_test_tmp("gemma2.gguf"));
    write_gemma2_gguf(path);
    check_golden(path, "gemma2_gguf");
    snprintf(path, sizeof path, "%s", flock_test_tmp("qwen2.gguf"));
    write_qwen2_gguf(path, false);
    check_golden(path, "qwen2_gguf");
}

/* ---- bundles: packed layout, ranking, GPT-2 splitting -------------------------- */

static void *read_tensor(const flock_bundle *b, const char *name, size_t *nbytes)
{
    int64_t i = flock_bundle_find_tensor(b, name);
    if (i < 0)
        fail_msg("bundle tensor %s is missing", name);
    flock_bundle_tensor t;
    assert_int_equal(flock_bundle_tensor_info(b, (size_t)i, &t), FLOCK_OK);
    void *p = malloc(t.nbytes);
    assert_non_null(p);
    flock_error e = {0};
    assert_int_equal(flock_bundle_tensor_read(b, (size_t)i, p, t.nbytes, 1, &e), FLOCK_OK);
    *nbytes = t.nbytes;
    return p;
}

static flock_bundle *compile_dir(const char *dir, const char *out, const char *extra)
{
    char args[1024];
    snprintf(args, sizeof args, "'%s' -o '%s' --quiet %s", dir, out, extra);
    const char *errf = flock_test_tmp("compile.err");
    int rc = flockc(args, NULL, errf);
    if (rc != 0) {
        char *e = flock_test_slurp(errf, NULL);
        fail_msg("flockc %s: exit %d: %s", args, rc, e ? e : "");
    }
    flock_bundle *b = NULL;
    flock_error e = {0};
    if (flock_bundle_open(out, &b, &e))
        fail_msg("%s: %s", out, e.msg);
    return b;
}

static double norm_row(const float *r, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)r[i] * r[i];
    return sqrt(s);
}

/* Expected ranking by the definition: descending score, ties to the lower index. */
static void expect_rank(const int32_t *got, const double *score, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t a = got[i];
        assert_true(a >= 0 && a < n);
        if (i > 0) {
            int32_t p = got[i - 1];
            assert_true(score[p] > score[a] || (score[p] == score[a] && p < a));
        }
    }
}

static void test_packed_layout_and_rank(void **state)
{
    (void)state;
    hfw w;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", flock_test_tmp("llama_pack"));
    write_llama(dir, &w);
    flock_bundle *b = compile_dir(dir, flock_test_tmp("pack.flock"), "--dtype f32");
    for (int l = 0; l < L; l++) {
        const float *g = hfw_find(&w, "model.layers.%d.mlp.gate_proj.weight", l)->data;
        const float *u = hfw_find(&w, "model.layers.%d.mlp.up_proj.weight", l)->data;
        const float *dn = hfw_find(&w, "model.layers.%d.mlp.down_proj.weight", l)->data; /* [D, FF] */
        char name[64];
        size_t nb;
        snprintf(name, sizeof name, "blk.%d.ffn_gate_up", l);
        float *gu = read_tensor(b, name, &nb);
        assert_int_equal(nb, FF * 2 * D * sizeof(float));
        snprintf(name, sizeof name, "blk.%d.ffn_down_t", l);
        float *dt = read_tensor(b, name, &nb);
        assert_int_equal(nb, FF * D * sizeof(float));
        snprintf(name, sizeof name, "blk.%d.ffn_magnitude_rank", l);
        int32_t *rk = read_tensor(b, name, &nb);
        assert_int_equal(nb, FF * sizeof(int32_t));
        double score[FF];
        for (int i = 0; i < FF; i++) {
            assert_memory_equal(gu + i * 2 * D, g + i * D, D * sizeof(float));
            assert_memory_equal(gu + i * 2 * D + D, u + i * D, D * sizeof(float));
            for (int j = 0; j < D; j++)
                assert_true(dt[i * D + j] == dn[j * FF + i]);
            score[i] = norm_row(g + i * D, D) * norm_row(u + i * D, D);
        }
        expect_rank(rk, score, FF);
        free(gu);
        free(dt);
        free(rk);
    }
    /* Tied embeddings: no output tensor; norms stay f32 whatever the dtype. */
    assert_true(flock_bundle_find_tensor(b, "output") < 0);
    flock_bundle_close(b);
    b = compile_dir(dir, flock_test_tmp("pack16.flock"), "--dtype bf16");
    flock_bundle_tensor t;
    assert_int_equal(flock_bundle_tensor_info(b, (size_t)flock_bundle_find_tensor(b, "blk.0.attn_q"), &t), FLOCK_OK);
    assert_int_equal(t.dtype, FLOCK_DTYPE_BF16);
    assert_int_equal(flock_bundle_tensor_info(b, (size_t)flock_bundle_find_tensor(b, "blk.0.attn_norm"), &t), FLOCK_OK);
    assert_int_equal(t.dtype, FLOCK_DTYPE_F32);
    const char *s = NULL;
    assert_int_equal(flock_manifest_get_str(flock_bundle_manifest(b), "storage_dtype", &s, NULL), FLOCK_OK);
    assert_string_equal(s, "bf16");
    flock_bundle_close(b);
    hfw_free(&w);
}

static void test_gpt2_split_and_plain_rank(void **state)
{
    (void)state;
    hfw w;
    const char *dir = flock_test_tmp("gpt2_split");
    write_gpt2(dir, &w);
    flock_bundle *b = compile_dir(dir, flock_test_tmp("gpt2.flock"), "--dtype f32");
    const char *parts[3] = {"attn_q", "attn_k", "attn_v"};
    for (int l = 0; l < L; l++) {
        const float *ca = hfw_find(&w, "transformer.h.%d.attn.c_attn.weight", l)->data; /* [D, 3D] */
        const float *cb = hfw_find(&w, "transformer.h.%d.attn.c_attn.bias", l)->data;
        for (int p = 0; p < 3; p++) {
            char name[64];
            size_t nb;
            snprintf(name, sizeof name, "blk.%d.%s", l, parts[p]);
            float *m = read_tensor(b, name, &nb); /* [D out, D in] */
            assert_int_equal(nb, D * D * sizeof(float));
            for (int o = 0; o < D; o++)
                for (int i = 0; i < D; i++)
                    assert_true(m[o * D + i] == ca[i * 3 * D + p * D + o]);
            free(m);
            snprintf(name, sizeof name, "blk.%d.%s_bias", l, parts[p]);
            float *bias = read_tensor(b, name, &nb);
            assert_memory_equal(bias, cb + p * D, D * sizeof(float));
            free(bias);
        }
        /* Plain FF: fc1 = c_fc^T [4D, D]; down_t = (c_proj^T)^T = c_proj [4D, D]. */
        const float *fc = hfw_find(&w, "transformer.h.%d.mlp.c_fc.weight", l)->data;  /* [D, 4D] */
        const float *pr = hfw_find(&w, "transformer.h.%d.mlp.c_proj.weight", l)->data; /* [4D, D] */
        char name[64];
        size_t nb;
        snprintf(name, sizeof name, "blk.%d.ffn_up", l);
        float *up = read_tensor(b, name, &nb);
        snprintf(name, sizeof name, "blk.%d.ffn_down_t", l);
        float *dt = read_tensor(b, name, &nb);
        assert_memory_equal(dt, pr, 4 * D * D * sizeof(float));
        snprintf(name, sizeof name, "blk.%d.ffn_magnitude_rank", l);
        int32_t *rk = read_tensor(b, name, &nb);
        double score[4 * D];
        for (int i = 0; i < 4 * D; i++) {
            for (int j = 0; j < D; j++)
                assert_true(up[i * D + j] == fc[j * 4 * D + i]);
            score[i] = norm_row(up + i * D, D);
        }
        expect_rank(rk, score, 4 * D);
        free(up);
        free(dt);
        free(rk);
    }
    flock_bundle_close(b);
    hfw_free(&w);
}

/* The program section of a bundle deserializes, verifies, and prints as --emit-ir does. */
static void test_bundle_program_section(void **state)
{
    (void)state;
    hfw w;
    const char *dir = flock_test_tmp("gemma2_prog");
    write_gemma2(dir, &w);
    flock_bundle *b = compile_dir(dir, flock_test_tmp("g2.flock"), "--keep 0.5 --target cpu,sm_90");
    int64_t si = flock_bundle_find_section(b, FLOCK_SECTION_PROGRAM, NULL);
    assert_true(si >= 0);
    void *data = NULL;
    size_t size = 0;
    flock_error e = {0};
    assert_int_equal(flock_bundle_read_section(b, (size_t)si, &data, &size, &e), FLOCK_OK);
    flock_program *p = NULL;
    assert_int_equal(flock_program_deserialize(data, size, &p, &e), FLOCK_OK);
    assert_string_equal(p->cfg.arch, "gemma2");
    const flock_op *last = &p->ops[p->n_ops - 1];
    assert_int_equal(last->kind, FLOCK_OP_LM_HEAD);
    assert_float_equal(last->softcap, 30.0, 0);
    const flock_manifest *m = flock_bundle_manifest(b);
    const double *keep;
    size_t nk;
    assert_int_equal(flock_manifest_get_float_arr(m, "keep_ratios", &keep, &nk, NULL), FLOCK_OK);
    assert_int_equal(nk, 1);
    assert_float_equal(keep[0], 0.5, 0);
    const char *const *targets;
    assert_int_equal(flock_manifest_get_str_arr(m, "targets", &targets, &nk, NULL), FLOCK_OK);
    assert_int_equal(nk, 2);
    assert_string_equal(targets[1], "sm_90");
    int64_t v;
    assert_int_equal(flock_manifest_get_int(m, "head_dim", &v, NULL), FLOCK_OK);
    assert_int_equal(v, 8);
    assert_true(flock_bundle_find_section(b, FLOCK_SECTION_TOKENIZER, NULL) >= 0);
    free(data);
    flock_program_free(p);
    flock_bundle_close(b);
    hfw_free(&w);
}

/* ---- frontend errors ---------------------------------------------------------- */

static void expect_compile_error(const char *config, flock_status want, const char *msg)
{
    hfw w;
    const char *dir = flock_test_tmp("bad");
    write_llama(dir, &w);
    hfw_write_file(dir, "config.json", config);
    flock_source *s = NULL;
    flock_error e = {0};
    flock_status st = flock_source_open(dir, &s, &e);
    flock_program *p = NULL;
    if (!st)
        st = flock_compile_program(s, NULL, &p, &e);
    if (st != want || !strstr(e.msg, msg))
        fail_msg("config %s: status %d '%s', expected %d '%s'", config, st, e.msg, want, msg);
    assert_null(p);
    flock_source_free(s);
    hfw_free(&w);
}

#define CFG(extra)                                                                                             \
    "{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\":24,"           \
    "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-05,\"vocab_size\":32" extra "}"

static void test_frontend_errors(void **state)
{
    (void)state;
    expect_compile_error("{\"model_type\":\"bloom\",\"n_layer\":2}", FLOCK_E_UNSUPPORTED,
                         "unsupported architecture 'bloom'");
    expect_compile_error(CFG(""), FLOCK_E_NOT_FOUND, "llama: missing hyper-parameter n_head");
    expect_compile_error(CFG(",\"num_attention_heads\":4,\"num_key_value_heads\":3"), FLOCK_E_CORRUPT,
                         "llama: n_kv_head 3 does not divide n_head 4");
    expect_compile_error(CFG(",\"num_attention_heads\":4,\"num_key_value_heads\":8"), FLOCK_E_CORRUPT,
                         "hyper-parameter n_kv_head = 8 out of range [1, 4]");
    expect_compile_error(CFG(",\"num_attention_heads\":5,\"num_key_value_heads\":5"), FLOCK_E_CORRUPT,
                         "n_head 5 does not divide d_model 16");
    expect_compile_error(CFG(",\"num_attention_heads\":4,\"num_key_value_heads\":2,\"rope_scaling\":{\"rope_type\":"
                             "\"yarn\",\"factor\":4.0}"),
                         FLOCK_E_UNSUPPORTED, "rope scaling type 'yarn' is not supported");
    expect_compile_error(CFG(",\"num_attention_heads\":4,\"num_key_value_heads\":2,\"hidden_act\":\"tanh\""),
                         FLOCK_E_UNSUPPORTED, "activation 'tanh'");
    expect_compile_error(CFG(",\"num_attention_heads\":\"four\""), FLOCK_E_TYPE, "num_attention_heads");
    expect_compile_error("{\"model_type\":\"llama\",\"num_hidden_layers\":3,\"hidden_size\":16,\"intermediate_size\""
                         ":24,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-05}",
                         FLOCK_E_NOT_FOUND, "blk.2.attn_norm.weight (model.layers.2.input_layernorm.weight) is absent");
    /* A hyper-parameter that disagrees with the weights: the verifier names the op. */
    expect_compile_error("{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\""
                         ":25,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-05}",
                         FLOCK_E_CORRUPT, "(ffn, layer 0): w[0] 'blk.0.ffn_gate': shape [24, 16], expected [25, 16]");
    /* GGUF Llama 3.1's per-dimension RoPE factors are refused by name. */
    char path[512];
    snprintf(path, sizeof path, "%s", flock_test_tmp("llama31.gguf"));
    write_qwen2_gguf(path, true);
    flock_source *s = NULL;
    flock_error e = {0};
    flock_program *p = NULL;
    assert_int_equal(flock_source_open(path, &s, &e), FLOCK_OK);
    assert_int_equal(flock_compile_program(s, NULL, &p, &e), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "rope_freqs.weight"));
    flock_source_free(s);
    s = (flock_source *)0x1;
    assert_int_equal(flock_source_open(flock_test_tmp("no-such-model.gguf"), &s, &e), FLOCK_E_IO);
    assert_ptr_equal(s, (flock_source *)0x1);
    assert_non_null(strstr(e.msg, "no such file"));
}

/* ---- flockc -------------------------------------------------------------------- */

static void expect_cli(const char *args, int rc_want, const char *stream_file_text)
{
    const char *out = flock_test_tmp("cli.out"), *errf = flock_test_tmp("cli.err");
    int rc = flockc(args, out, errf);
    char *o = flock_test_slurp(out, NULL), *e = flock_test_slurp(errf, NULL);
    if (rc != rc_want || (stream_file_text && !strstr(o, stream_file_text) && !strstr(e, stream_file_text)))
        fail_msg("flockc %s: exit %d (want %d), stdout '%s', stderr '%s', expected '%s'", args, rc, rc_want, o, e,
                 stream_file_text ? stream_file_text : "");
    free(o);
    free(e);
}

static void test_flockc_cli(void **state)
{
    (void)state;
    hfw w;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", flock_test_tmp("cli_llama"));
    write_llama(dir, &w);
    char a[1024];
    expect_cli("", 2, "no MODEL given");
    expect_cli("--help", 0, "--emit-cuda");
    expect_cli("--help", 0, "cpu:<name>");
#ifdef FLOCK_HAVE_LLVM
    expect_cli("--help", 0, "This flockc has LLVM");
#else
    snprintf(a, sizeof a, "'%s' -o x.flock --target x86-64-v3", dir);
    expect_cli(a, 2, "this flockc was built without LLVM");
    /* plain cpu works, and the summary says that no kernels were generated */
    snprintf(a, sizeof a, "'%s' -o '%s' --target cpu", dir, flock_test_tmp("cli_nollvm.flock"));
    expect_cli(a, 0, "built without LLVM");
#endif
    snprintf(a, sizeof a, "'%s' -o x.flock --target cpu,cpu", dir);
    expect_cli(a, 2, "'cpu' given twice");
    snprintf(a, sizeof a, "'%s' -o x.flock --bogus", dir);
    expect_cli(a, 2, "unknown option '--bogus'");
    snprintf(a, sizeof a, "'%s' -o x.flock --keep 0", dir);
    expect_cli(a, 2, "'0' is not a ratio in (0, 1]");
    snprintf(a, sizeof a, "'%s' -o x.flock --keep 0.5,1.5", dir);
    expect_cli(a, 2, "'1.5' is not a ratio");
    snprintf(a, sizeof a, "'%s' -o x.flock --keep 0.5,,0.2", dir);
    expect_cli(a, 2, "bad item");
    snprintf(a, sizeof a, "'%s' -o x.flock --dtype f8", dir);
    expect_cli(a, 2, "unknown dtype 'f8'");
    snprintf(a, sizeof a, "'%s' -o x.flock --target sm_70", dir);
    expect_cli(a, 2, "unknown target 'sm_70'");
    snprintf(a, sizeof a, "'%s' -o x.flock --level 99", dir);
    expect_cli(a, 2, "--level");
    snprintf(a, sizeof a, "'%s'", dir);
    expect_cli(a, 2, "no output");
    expect_cli("/nonexistent/model.gguf -o x.flock", 1, "no such file");
    /* A successful compile prints a summary (plain lines: stderr is not a terminal). */
    snprintf(a, sizeof a, "'%s' -o '%s'", dir, flock_test_tmp("cli.flock"));
    expect_cli(a, 0, "bundle/source");
    /* --dtype auto (the default) keeps float weights f16 (tests/check_quant.py
     * checks that a quantized GGUF gets its source types) */
    expect_cli(a, 0, "tensors, f16,");
    snprintf(a, sizeof a, "'%s' -o '%s' --dtype auto", dir, flock_test_tmp("cli.flock"));
    expect_cli(a, 0, "tensors, f16,");
    snprintf(a, sizeof a, "'%s' -o '%s' --dtype source", dir, flock_test_tmp("cli.flock"));
    expect_cli(a, 0, "tensors, source types,");
    /* rows of 16 are not whole blocks of q4_k (256) nor of q4_1 (32): f16, named */
    snprintf(a, sizeof a, "'%s' -o '%s' --dtype q4_k", dir, flock_test_tmp("cli.flock"));
    expect_cli(a, 0, "(q4_k -> f16)");
    hfw_free(&w);
}

static void test_flockc_deterministic(void **state)
{
    (void)state;
    hfw w;
    const char *dir = flock_test_tmp("det_llama");
    write_qwen2(dir, &w);
    char a[1024];
    const char *o1 = flock_test_tmp("det1.flock"), *o2 = flock_test_tmp("det2.flock");
    snprintf(a, sizeof a, "'%s' -o '%s' --quiet --threads 1 --level 3", dir, o1);
    assert_int_equal(flockc(a, NULL, NULL), 0);
    snprintf(a, sizeof a, "'%s' -o '%s' --quiet --threads 2 --level 3", dir, o2);
    assert_int_equal(flockc(a, NULL, NULL), 0);
    size_t n1, n2;
    char *b1 = flock_test_slurp(o1, &n1), *b2 = flock_test_slurp(o2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    hfw_free(&w);
}

/* The kernel sections: one "cpu:<name>" per CPU target (LLVM builds), none
 * for GPU targets, none without LLVM; and the bundle stays deterministic
 * with generated code in it. */
static void test_flockc_cpu_kernels(void **state)
{
    (void)state;
    hfw w;
    const char *dir = flock_test_tmp("cpuk_llama");
    write_llama(dir, &w);
#ifdef FLOCK_HAVE_LLVM
    const char *names[] = {"cpu:x86-64-v3", "cpu:x86-64-v4"};
    flock_bundle *b = compile_dir(dir, flock_test_tmp("cpuk1.flock"), "--keep 0.5 --target x86-64-v3,sm_90,x86-64-v4");
    size_t n_kernel_sections = 0;
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info si;
        assert_int_equal(flock_bundle_section_info(b, i, &si), FLOCK_OK);
        if (si.kind == FLOCK_SECTION_KERNELS && strncmp(si.name, "cpu:", 4) == 0) { /* cuda:* are checked in test_compiler_cuda */
            assert_true(n_kernel_sections < 2);
            assert_string_equal(si.name, names[n_kernel_sections]); /* --target order */
            n_kernel_sections++;
            void *data = NULL;
            size_t size = 0;
            assert_int_equal(flock_bundle_read_section(b, i, &data, &size, NULL), FLOCK_OK);
            assert_true(size > 48);
            assert_memory_equal(data, "FLOCKCPU", 8);
            free(data);
        }
    }
    assert_int_equal(n_kernel_sections, 2);
    flock_bundle_close(b);
    /* byte-identical again (LLVM's output included), also for the host target */
    char a[1024];
    const char *o[2] = {flock_test_tmp("cpuk2.flock"), flock_test_tmp("cpuk3.flock")};
    for (int r = 0; r < 2; r++) {
        snprintf(a, sizeof a, "'%s' -o '%s' --quiet --keep 0.25,0.5 --target cpu,x86-64-v3", dir, o[r]);
        assert_int_equal(flockc(a, NULL, NULL), 0);
    }
    size_t n1, n2;
    char *b1 = flock_test_slurp(o[0], &n1), *b2 = flock_test_slurp(o[1], &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    b = compile_dir(dir, flock_test_tmp("cpuk4.flock"), "--target sm_90"); /* GPU targets: no cpu:* section */
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info si;
        assert_int_equal(flock_bundle_section_info(b, i, &si), FLOCK_OK);
        assert_false(si.kind == FLOCK_SECTION_KERNELS && strncmp(si.name, "cpu:", 4) == 0);
    }
    flock_bundle_close(b);
#else
    flock_bundle *b = compile_dir(dir, flock_test_tmp("cpuk1.flock"), "--target cpu");
    assert_int_equal(flock_bundle_find_section(b, FLOCK_SECTION_KERNELS, NULL), -1);
    flock_bundle_close(b);
#endif
    hfw_free(&w);
}

/* ---- the tiny trained model (tests/data) ------------------------------------------------ */

static char stories[512];

static void test_stories(void **state)
{
    (void)state;
    check_golden(stories, "tiny-llama");
    const char *o1 = flock_test_tmp("st1.flock"), *o2 = flock_test_tmp("st2.flock");
    char a[1024];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(a, sizeof a, "'%s' -o '%s' --quiet", stories, o1);
    assert_int_equal(flockc(a, NULL, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    snprintf(a, sizeof a, "'%s' -o '%s' --quiet", stories, o2);
    assert_int_equal(flockc(a, NULL, NULL), 0);
    size_t n1, n2;
    char *b1 = flock_test_slurp(o1, &n1), *b2 = flock_test_slurp(o2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    print_message("tiny-llama: f16 bundle %zu bytes in %.3f s\n", n1,
                  (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    free(b1);
    free(b2);
    flock_bundle *b = NULL;
    assert_int_equal(flock_bundle_open(o1, &b, NULL), FLOCK_OK);
    const flock_manifest *m = flock_bundle_manifest(b);
    static const struct {
        const char *key;
        int64_t v;
    } want[] = {{"n_layer", 5}, {"d_model", 64}, {"d_ff", 172}, {"n_head", 8}, {"n_kv_head", 4},
                {"head_dim", 8}, {"n_vocab", 512}, {"bos_id", 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t v = -99;
        assert_int_equal(flock_manifest_get_int(m, want[i].key, &v, NULL), FLOCK_OK);
        if (v != want[i].v)
            fail_msg("manifest %s = %lld, expected %lld", want[i].key, (long long)v, (long long)want[i].v);
    }
    assert_true(flock_bundle_find_tensor(b, "output") >= 0); /* its output.weight is untied */
    /* source_hash is xxh64 of the GGUF file, computed here independently. */
    size_t sn;
    char *src = flock_test_slurp(stories, &sn), hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH64(src, sn, 0));
    const char *h = NULL;
    assert_int_equal(flock_manifest_get_str(m, "source_hash", &h, NULL), FLOCK_OK);
    assert_string_equal(h, hex);
    free(src);
    flock_bundle_close(b);
}

/* ---- the real models (FLOCK_MODEL_DIR) ------------------------------------------------ */

/* Compiles `path` with --dtype dtype, checks the manifest and returns the program. */
static flock_program *compile_real(const char *path, const char *dtype, const char *label)
{
    char a[1024];
    const char *out = flock_test_tmp("real.flock");
    snprintf(a, sizeof a, "'%s' -o '%s' --quiet --dtype %s", path, out, dtype);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = flockc(a, NULL, flock_test_tmp("real.err"));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != 0) {
        char *e = flock_test_slurp(flock_test_tmp("real.err"), NULL);
        fail_msg("flockc %s: exit %d: %s", a, rc, e ? e : "");
    }
    flock_bundle *b = NULL;
    flock_error e = {0};
    assert_int_equal(flock_bundle_open(out, &b, &e), FLOCK_OK);
    print_message("%s %s: bundle %.1f MB in %.2f s\n", label, dtype, flock_bundle_file_size(b) / 1e6,
                  (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    int64_t si = flock_bundle_find_section(b, FLOCK_SECTION_PROGRAM, NULL);
    void *data = NULL;
    size_t size = 0;
    assert_int_equal(flock_bundle_read_section(b, (size_t)si, &data, &size, &e), FLOCK_OK);
    flock_program *p = NULL;
    assert_int_equal(flock_program_deserialize(data, size, &p, &e), FLOCK_OK);
    free(data);
    /* Every FF ranking is a permutation of 0..d_ff-1. */
    for (uint32_t i = 0; i < p->n_ops; i++) {
        if (p->ops[i].kind != FLOCK_OP_FFN)
            continue;
        const flock_tensor_ref *t = &p->tensors[p->ops[i].w[5]];
        int64_t ti = flock_bundle_find_tensor(b, t->name);
        assert_true(ti >= 0);
        int32_t *rk = malloc(t->shape[0] * 4);
        uint8_t *seen = calloc(t->shape[0], 1);
        assert_int_equal(flock_bundle_tensor_read(b, (size_t)ti, rk, t->shape[0] * 4, 0, &e), FLOCK_OK);
        for (uint64_t k = 0; k < t->shape[0]; k++) {
            assert_true(rk[k] >= 0 && (uint64_t)rk[k] < t->shape[0] && !seen[rk[k]]);
            seen[rk[k]] = 1;
        }
        free(rk);
        free(seen);
    }
    flock_bundle_close(b);
    return p;
}

static const flock_op *find_op(const flock_program *p, flock_op_kind k, int layer, int nth)
{
    for (uint32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == k && p->ops[i].layer == layer && nth-- == 0)
            return &p->ops[i];
    fail_msg("no op of kind %d in layer %d", k, layer);
    return NULL;
}

static void test_smollm2(void **state)
{
    (void)state;
    char path[600];
    flock_test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path);
    flock_program *p = compile_real(path, "f16", "SmolLM2-135M");
    assert_int_equal(p->cfg.n_layer, 30);
    assert_int_equal(p->cfg.d_model, 576);
    assert_int_equal(p->cfg.d_ff, 1536);
    assert_int_equal(p->cfg.n_vocab, 49152);
    const flock_op *rope = find_op(p, FLOCK_OP_ROPE, 0, 0);
    assert_int_equal(rope->rope_style, FLOCK_ROPE_NORMAL);
    assert_float_equal(rope->rope_theta, 100000.0, 0);
    const flock_op *att = find_op(p, FLOCK_OP_ATTENTION, 29, 0);
    assert_int_equal(att->n_head, 9);
    assert_int_equal(att->n_kv_head, 3);
    assert_int_equal(att->head_dim, 64);
    const flock_op *head = &p->ops[p->n_ops - 1];
    assert_string_equal(p->tensors[head->w[0]].name, "token_embd"); /* tied */
    flock_program_free(p);
}

static void test_gemma3(void **state)
{
    (void)state;
    char path[600];
    flock_test_model_path("gemma-3-270m-q4_k_m.gguf", path, sizeof path);
    flock_program *p = compile_real(path, "f16", "Gemma-3-270M");
    assert_int_equal(p->cfg.n_layer, 18);
    assert_int_equal(p->cfg.d_model, 640);
    assert_int_equal(p->cfg.n_vocab, 262144);
    for (int l = 0; l < 18; l++) {
        const flock_op *att = find_op(p, FLOCK_OP_ATTENTION, l, 0);
        const flock_op *rope = find_op(p, FLOCK_OP_ROPE, l, 0);
        bool global = l % 6 == 5;
        assert_int_equal(att->window, global ? 0 : 512);
        assert_float_equal(rope->rope_theta, global ? 1e6 : 1e4, 0);
        assert_int_equal(rope->rope_style, FLOCK_ROPE_NEOX);
        assert_int_equal(find_op(p, FLOCK_OP_RMSNORM, l, 0)->unit_offset, 0); /* GGUF: 1 already added */
        assert_int_equal(find_op(p, FLOCK_OP_RMSNORM, l, 1)->group, 256);    /* QK-norm per head */
    }
    assert_float_equal(p->ops[0].scale, sqrtf(640.0f), 0);
    assert_int_equal(find_op(p, FLOCK_OP_FFN, 0, 0)->act, FLOCK_ACT_GELU_TANH);
    flock_program_free(p);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "tiny")) {
        flock_test_tiny_model(stories, sizeof stories);
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_stories)};
        return cmocka_run_group_tests(tests, flock_test_tmpdir_make, flock_test_tmpdir_remove);
    }
    if (argc > 1 && !strcmp(argv[1], "models")) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_smollm2), cmocka_unit_test(test_gemma3)};
        return cmocka_run_group_tests(tests, flock_test_tmpdir_make, flock_test_tmpdir_remove);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_families),
        cmocka_unit_test(test_packed_layout_and_rank),
        cmocka_unit_test(test_gpt2_split_and_plain_rank),
        cmocka_unit_test(test_bundle_program_section),
        cmocka_unit_test(test_frontend_errors),
        cmocka_unit_test(test_flockc_cli),
        cmocka_unit_test(test_flockc_deterministic),
        cmocka_unit_test(test_flockc_cpu_kernels),
    };
    return cmocka_run_group_tests(tests, flock_test_tmpdir_make, flock_test_tmpdir_remove);
}
