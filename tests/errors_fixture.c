/* The inputs of test_errors (errors_fixture.h): bad files with fixed names,
 * and valid handles over a small Llama folder compiled into a bundle. */
#include "errors_fixture.h"

#include "test_util.h"

#include "gguf_writer.h"
#include "hf_writer.h"

#include <sys/stat.h>
#include <unistd.h>

errors_fixture fx;

const char *errors_path(const char *name)
{
    return flock_test_tmp(name);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void check(flock_status st, const flock_error *err)
{
    if (st != FLOCK_OK)
        fail_msg("fixture: %s (%s)", err->msg, flock_status_str(st));
}

/* hfw's vocabulary ("t0", "t1", ... without merges) spells no text; one of
 * single letters lets tokenize give ids. */
static void write_letter_tokenizer(const char *dir)
{
    char json[1024] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{";
    for (int i = 0; i < E_V; i++)
        snprintf(json + strlen(json), sizeof json - strlen(json), "%s\"%c\":%d", i ? "," : "",
                 i < 26 ? 'a' + i : 'A' + i - 26, i);
    snprintf(json + strlen(json), sizeof json - strlen(json),
             "},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":true},"
             "\"decoder\":{\"type\":\"ByteLevel\"}}");
    hfw_write_file(dir, "tokenizer.json", json);
}

static void write_llama_dir(const char *dir, const char *model_type, bool tokenizer)
{
    hfw w;
    hfw_init(&w, 3);
    hfw_add(&w, E_V, E_D, "model.embed_tokens.weight", 0);
    for (int l = 0; l < E_L; l++) {
        hfw_add(&w, E_D, 0, "model.layers.%d.input_layernorm.weight", l);
        hfw_add(&w, E_H * E_HD, E_D, "model.layers.%d.self_attn.q_proj.weight", l);
        hfw_add(&w, E_KV * E_HD, E_D, "model.layers.%d.self_attn.k_proj.weight", l);
        hfw_add(&w, E_KV * E_HD, E_D, "model.layers.%d.self_attn.v_proj.weight", l);
        hfw_add(&w, E_D, E_H * E_HD, "model.layers.%d.self_attn.o_proj.weight", l);
        hfw_add(&w, E_D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        hfw_add(&w, E_FF, E_D, "model.layers.%d.mlp.gate_proj.weight", l);
        hfw_add(&w, E_FF, E_D, "model.layers.%d.mlp.up_proj.weight", l);
        hfw_add(&w, E_D, E_FF, "model.layers.%d.mlp.down_proj.weight", l);
    }
    hfw_add(&w, E_D, 0, "model.norm.weight", 0);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"%s\",\"num_hidden_layers\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"max_position_embeddings\":64,"
             "\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"vocab_size\":%d,\"hidden_act\":\"silu\","
             "\"tie_word_embeddings\":true,\"layer_types\":[\"full_attention\"]}",
             model_type, E_L, E_D, E_FF, E_H, E_KV, E_V);
    hfw_write(&w, dir, cfg, E_V);
    hfw_free(&w);
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (tokenizer)
        write_letter_tokenizer(dir);
    else
        assert_int_equal(unlink(path), 0);
}

static uint8_t *build_gguf(size_t *size)
{
    gw_buf kv = {0};
    gw_kv_str(&kv, "general.architecture", "llama");
    gw_kv_scalar(&kv, "test.int", 4 /* UINT32 */, 7, 4);
    gw_kv(&kv, "test.float", 6 /* FLOAT32 */);
    gw_f32(&kv, 0.5f);
    gw_kv_arr(&kv, "test.strs", 8 /* STRING */, 2);
    gw_str(&kv, "a");
    gw_str(&kv, "b");
    static const float t0[4] = {1, 2, 3, 4};
    const gw_tensor t = {"t0", 1, {4, 1, 1, 1}, 0 /* F32 */, t0, sizeof t0};
    uint8_t *img = gw_build(3, &kv, &t, 1, 32, size);
    free(kv.p);
    return img;
}

static void write_no_program_bundle(const char *path)
{
    flock_bundle_writer *w = NULL;
    flock_manifest *m = NULL;
    flock_error err;
    assert_int_equal(flock_manifest_create(&m), FLOCK_OK);
    check(flock_bundle_writer_create(path, NULL, &w, &err), &err);
    check(flock_bundle_writer_set_manifest(w, m, &err), &err);
    check(flock_bundle_writer_finish(w, &err), &err);
    flock_bundle_writer_free(w);
    flock_manifest_free(m);
}

static void build_blob(void)
{
    flock_error err;
    flock_codegen_model cm;
    const float keep = 0.5f;
    check(flock_codegen_model_from_program(fx.prog, &keep, 1, FLOCK_DTYPE_F16, &cm, &err), &err);
    static const uint8_t image[64] = {0x7f, 'E', 'L', 'F'}; /* the blob reader does not look inside */
    check(flock_codegen_cuda_pack(&cm, 90, FLOCK_CUDA_IMAGE_CUBIN, image, sizeof image, &fx.blob, &fx.blob_size,
                                  &err),
          &err);
    check(flock_cuda_blob_parse(fx.blob, fx.blob_size, &fx.parsed, &err), &err);
}

static void write_bad_files(void)
{
    uint8_t noise[4096];
    uint64_t seed = 42;
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)(flock_test_rand(&seed) >> 56);
    write_bytes(errors_path(ERRORS_FILE_GARBAGE), noise, sizeof noise);
    write_bytes(errors_path(ERRORS_FILE_EMPTY), "", 0);
    mkdir(errors_path(ERRORS_DIR_EMPTY), 0755);
    mkdir(errors_path(ERRORS_DIR_BAD_CONFIG), 0755);
    hfw_write_file(errors_path(ERRORS_DIR_BAD_CONFIG), "config.json", "{\"model_type\": \"llama\", ");
    write_no_program_bundle(errors_path(ERRORS_FILE_NO_PROGRAM));
}

int errors_fixture_make(void **state)
{
    if (flock_test_tmpdir_make(state) != 0)
        return -1;
    write_bad_files();
    char llama[512], mamba[512], bundle[512];
    snprintf(llama, sizeof llama, "%s", errors_path("llama"));
    snprintf(mamba, sizeof mamba, "%s", errors_path("mamba"));
    snprintf(bundle, sizeof bundle, "%s", errors_path("llama.flock"));
    write_llama_dir(llama, "llama", true);
    write_llama_dir(mamba, "mamba", false);

    flock_error err;
    fx.gguf = build_gguf(&fx.gguf_size);
    check(flock_gguf_open_memory(fx.gguf, fx.gguf_size, &fx.g, &err), &err);
    check(flock_hf_open(llama, &fx.hf, &err), &err);
    check(flock_source_open(llama, &fx.src, &err), &err);
    check(flock_source_open(mamba, &fx.mamba, &err), &err);
    fx.opts = flock_compile_default_opts();
    fx.opts.keep[0] = 0.5;
    fx.opts.n_keep = 1;
    check(flock_compile_program(fx.src, &fx.opts, &fx.prog, &err), &err);
    check(flock_compile_bundle(fx.src, &fx.opts, bundle, NULL, &err), &err);
    fx.bundle_bytes = flock_test_slurp(bundle, &fx.bundle_size);
    assert_non_null(fx.bundle_bytes);
    write_bytes(errors_path(ERRORS_FILE_TRUNCATED), fx.bundle_bytes, fx.bundle_size / 2);
    check(flock_bundle_open(bundle, &fx.b, &err), &err);
    check(flock_model_open(bundle, NULL, &fx.model, &err), &err);
    assert_int_equal(flock_manifest_create(&fx.man), FLOCK_OK);
    assert_int_equal(flock_manifest_set_int(fx.man, "i", 7), FLOCK_OK);
    assert_int_equal(flock_manifest_set_str(fx.man, "s", "x"), FLOCK_OK);
    build_blob();
    return 0;
}

int errors_fixture_free(void **state)
{
    flock_model_free(fx.model);
    flock_bundle_close(fx.b);
    flock_program_free(fx.prog);
    flock_source_free(fx.mamba);
    flock_source_free(fx.src);
    flock_hf_free(fx.hf);
    flock_gguf_free(fx.g);
    flock_manifest_free(fx.man);
    free(fx.gguf);
    free(fx.bundle_bytes);
    free(fx.blob);
    return flock_test_tmpdir_remove(state);
}
