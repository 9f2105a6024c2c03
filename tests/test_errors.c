/* Errors are values (formats/error_impl.h): every public entry point that
 * can fail on bad input is called twice, with an error buffer and without
 * one, and must give the same status both times: the status depends on the
 * input alone. Input that is merely bad (garbage, truncated or empty files,
 * absent keys, values of another type, arguments out of range) is never
 * FLOCK_E_INTERNAL, which means a bug in flock. With a buffer, the message
 * is kept and err->status agrees with the return value.
 *
 * The table at the end is the test: one row per (entry point, bad input).
 * A row's function gets the row's `arg` (a file name, key or option, where
 * rows share a function) and builds any state its call changes, so both
 * calls see the same thing; what is only read comes from errors_fixture.h. */
#include "test_util.h"

#include "errors_fixture.h"

typedef flock_status (*case_fn)(const char *arg, flock_error *err);

/* ---- formats: files, GGUF --------------------------------------------------- */

static flock_status map_file(const char *arg, flock_error *err)
{
    flock_file_map m = {0};
    return flock_map_file(errors_path(arg), &m, err);
}

static flock_status dequant_unknown_type(const char *arg, flock_error *err)
{
    float dst[32];
    static const uint8_t src[64];
    return flock_dequantize(99, src, sizeof src, dst, 32, err);
}

static flock_status dequant_short_source(const char *arg, flock_error *err)
{
    float dst[32];
    static const uint8_t src[4];
    return flock_dequantize(FLOCK_GGML_Q4_0, src, sizeof src, dst, 32, err);
}

static flock_status gguf_open(const char *arg, flock_error *err)
{
    flock_gguf *g = NULL;
    return flock_gguf_open(errors_path(arg), &g, err);
}

static flock_status gguf_memory_truncated(const char *arg, flock_error *err)
{
    flock_gguf *g = NULL;
    return flock_gguf_open_memory(fx.gguf, fx.gguf_size - 3, &g, err);
}

static flock_status gguf_int(const char *arg, flock_error *err)
{
    int64_t v;
    return flock_gguf_get_int(fx.g, arg, &v, err);
}

static flock_status gguf_float(const char *arg, flock_error *err)
{
    double v;
    return flock_gguf_get_float(fx.g, arg, &v, err);
}

static flock_status gguf_bool(const char *arg, flock_error *err)
{
    bool v;
    return flock_gguf_get_bool(fx.g, arg, &v, err);
}

static flock_status gguf_str(const char *arg, flock_error *err)
{
    const char *s;
    size_t len;
    return flock_gguf_get_str(fx.g, arg, &s, &len, err);
}

static flock_status gguf_arr(const char *arg, flock_error *err)
{
    flock_gguf_type t;
    uint64_t n;
    const void *data;
    return flock_gguf_get_arr(fx.g, arg, &t, &n, &data, err);
}

static flock_status gguf_arr_str_past_end(const char *arg, flock_error *err)
{
    const char *s;
    size_t len;
    return flock_gguf_get_arr_str(fx.g, "test.strs", 2, &s, &len, err);
}

static flock_status gguf_tensor_small_dst(const char *arg, flock_error *err)
{
    float dst[2];
    return flock_gguf_tensor_to_f32(fx.g, 0, dst, 2, err);
}

/* ---- formats: safetensors, Hugging Face folders, tokenizer data ---------------- */

static flock_status st_memory_absurd_header(const char *arg, flock_error *err)
{
    static const uint8_t bad[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{'};
    flock_safetensors *st = NULL;
    return flock_safetensors_open_memory(bad, sizeof bad, &st, err);
}

static flock_status st_open(const char *arg, flock_error *err)
{
    flock_safetensors *st = NULL;
    return flock_safetensors_open(errors_path(arg), &st, err);
}

static flock_status hf_open(const char *arg, flock_error *err)
{
    flock_hf_model *m = NULL;
    return flock_hf_open(errors_path(arg), &m, err);
}

static flock_status hf_int(const char *arg, flock_error *err)
{
    int64_t v;
    return flock_hf_config_int(fx.hf, arg, &v, err);
}

static flock_status hf_float(const char *arg, flock_error *err)
{
    double v;
    return flock_hf_config_float(fx.hf, arg, &v, err);
}

static flock_status hf_bool(const char *arg, flock_error *err)
{
    bool v;
    return flock_hf_config_bool(fx.hf, arg, &v, err);
}

static flock_status hf_str(const char *arg, flock_error *err)
{
    const char *s;
    return flock_hf_config_str(fx.hf, arg, &s, err);
}

static flock_status hf_len(const char *arg, flock_error *err)
{
    uint64_t n;
    return flock_hf_config_len(fx.hf, arg, &n, err);
}

static flock_status hf_str_at_past_end(const char *arg, flock_error *err)
{
    const char *s;
    return flock_hf_config_str_at(fx.hf, "layer_types", 5, &s, err);
}

static flock_status hf_float_at_of_string(const char *arg, flock_error *err)
{
    double v;
    return flock_hf_config_float_at(fx.hf, "layer_types", 0, &v, err);
}

static flock_status tokdata_serialize_no_arrays(const char *arg, flock_error *err)
{
    flock_tokenizer_data t = {.kind = FLOCK_TOK_BPE, .n_vocab = 4};
    uint8_t *out = NULL;
    size_t size = 0;
    return flock_tokdata_serialize(&t, &out, &size, err);
}

static flock_status tokdata_deserialize_cut(const char *arg, flock_error *err)
{
    static const uint8_t bad[] = "FLTK\x01\x00\x00\x00\xff\xff\xff\xff";
    flock_tokenizer_data *t = NULL;
    return flock_tokdata_deserialize(bad, sizeof bad, &t, err);
}

static flock_status tokdata_gguf_without_tokenizer(const char *arg, flock_error *err)
{
    flock_tokenizer_data *t = NULL;
    return flock_tokdata_from_gguf(fx.g, &t, err);
}

static flock_status tokdata_hf_without_tokenizer(const char *arg, flock_error *err)
{
    flock_tokenizer_data *t = NULL;
    return flock_tokdata_from_hf(flock_source_hf(fx.mamba), &t, err);
}

/* ---- formats: manifest ------------------------------------------------------- */

static flock_status manifest_int(const char *arg, flock_error *err)
{
    int64_t v;
    return flock_manifest_get_int(fx.man, arg, &v, err);
}

static flock_status manifest_float(const char *arg, flock_error *err)
{
    double v;
    return flock_manifest_get_float(fx.man, arg, &v, err);
}

static flock_status manifest_str(const char *arg, flock_error *err)
{
    const char *s;
    return flock_manifest_get_str(fx.man, arg, &s, err);
}

static flock_status manifest_int_arr(const char *arg, flock_error *err)
{
    const int64_t *v;
    size_t n;
    return flock_manifest_get_int_arr(fx.man, arg, &v, &n, err);
}

static flock_status manifest_float_arr(const char *arg, flock_error *err)
{
    const double *v;
    size_t n;
    return flock_manifest_get_float_arr(fx.man, arg, &v, &n, err);
}

static flock_status manifest_str_arr(const char *arg, flock_error *err)
{
    const char *const *v;
    size_t n;
    return flock_manifest_get_str_arr(fx.man, arg, &v, &n, err);
}

/* ---- formats: the bundle ------------------------------------------------------ */

static flock_status writer_no_dir(const char *arg, flock_error *err)
{
    flock_bundle_writer *w = NULL;
    return flock_bundle_writer_create("/nonexistent-flock-dir/x.flock", NULL, &w, err);
}

static flock_status writer_bad_level(const char *arg, flock_error *err)
{
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.zstd_level = 1000;
    flock_bundle_writer *w = NULL;
    return flock_bundle_writer_create(errors_path("w.flock"), &o, &w, err);
}

/* A fresh writer for one bad call (a failed call poisons a writer); free
 * removes the unfinished file. */
static flock_bundle_writer *writer(void)
{
    flock_bundle_writer *w = NULL;
    flock_error e;
    if (flock_bundle_writer_create(errors_path("w.flock"), NULL, &w, &e) != FLOCK_OK)
        fail_msg("%s", e.msg);
    return w;
}

static flock_status writer_null_manifest(const char *arg, flock_error *err)
{
    flock_bundle_writer *w = writer();
    flock_status st = flock_bundle_writer_set_manifest(w, NULL, err);
    flock_bundle_writer_free(w);
    return st;
}

static flock_status writer_tensor_size_mismatch(const char *arg, flock_error *err)
{
    flock_bundle_writer *w = writer();
    const uint64_t shape[2] = {4, 4};
    const float data[4] = {0};
    flock_status st = flock_bundle_writer_add_tensor(w, "t", FLOCK_DTYPE_F32, 2, shape, data, sizeof data, err);
    flock_bundle_writer_free(w);
    return st;
}

static flock_status writer_bad_section_kind(const char *arg, flock_error *err)
{
    flock_bundle_writer *w = writer();
    flock_status st = flock_bundle_writer_add_section(w, (flock_section_kind)99, "", "x", 1, false, err);
    flock_bundle_writer_free(w);
    return st;
}

static flock_status writer_finish_twice(const char *arg, flock_error *err)
{
    flock_bundle_writer *w = writer();
    assert_int_equal(flock_bundle_writer_set_manifest(w, fx.man, NULL), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_finish(w, NULL), FLOCK_OK);
    flock_status st = flock_bundle_writer_finish(w, err);
    flock_bundle_writer_free(w);
    return st;
}

static flock_status bundle_open(const char *arg, flock_error *err)
{
    flock_bundle *b = NULL;
    return flock_bundle_open(errors_path(arg), &b, err);
}

/* A copy of the compiled bundle with one byte flipped; NULL to free it. */
static uint8_t *damaged_copy(size_t at)
{
    uint8_t *copy = malloc(fx.bundle_size);
    assert_non_null(copy);
    memcpy(copy, fx.bundle_bytes, fx.bundle_size);
    assert_true(at < fx.bundle_size);
    copy[at] ^= 0x40;
    return copy;
}

static flock_status bundle_memory_header_flip(const char *arg, flock_error *err)
{
    uint8_t *copy = damaged_copy(20); /* covered by the header checksum */
    flock_bundle *b = NULL;
    flock_status st = flock_bundle_open_memory(copy, fx.bundle_size, &b, err);
    flock_bundle_close(b);
    free(copy);
    return st;
}

static flock_status bundle_section_past_end(const char *arg, flock_error *err)
{
    void *data = NULL;
    size_t size = 0;
    return flock_bundle_read_section(fx.b, flock_bundle_section_count(fx.b), &data, &size, err);
}

static flock_status bundle_tensor_small_dst(const char *arg, flock_error *err)
{
    uint8_t dst[1];
    return flock_bundle_tensor_read(fx.b, 0, dst, sizeof dst, 1, err);
}

/* Tensor 0's first stored chunk starts the tensor data section: one flipped
 * byte there fails its checksum. */
static flock_status bundle_tensor_damaged(const char *arg, flock_error *err)
{
    int64_t d = flock_bundle_find_section(fx.b, FLOCK_SECTION_TENSOR_DATA, NULL);
    flock_section_info si;
    assert_true(d >= 0);
    assert_int_equal(flock_bundle_section_info(fx.b, (size_t)d, &si), FLOCK_OK);
    uint8_t *copy = damaged_copy((size_t)si.offset + 1);
    flock_bundle *b = NULL;
    assert_int_equal(flock_bundle_open_memory(copy, fx.bundle_size, &b, NULL), FLOCK_OK);
    flock_bundle_tensor info;
    assert_int_equal(flock_bundle_tensor_info(b, 0, &info), FLOCK_OK);
    uint8_t *dst = malloc(info.nbytes);
    assert_non_null(dst);
    flock_status st = flock_bundle_tensor_read(b, 0, dst, info.nbytes, 1, err);
    free(dst);
    flock_bundle_close(b);
    free(copy);
    return st;
}

static flock_status bundle_tensor_mapped_compressed(const char *arg, flock_error *err)
{
    const void *p = NULL;
    return flock_bundle_tensor_mapped(fx.b, 0, &p, err);
}

static flock_status cuda_blob_garbage(const char *arg, flock_error *err)
{
    uint8_t bad[FLOCK_CUDA_BLOB_HEADER_SIZE];
    memset(bad, 0xa5, sizeof bad);
    memcpy(bad, "FLKC", 4);
    flock_cuda_blob b;
    return flock_cuda_blob_parse(bad, sizeof bad, &b, err);
}

static flock_status cuda_blob_kernel_past_end(const char *arg, flock_error *err)
{
    flock_cuda_kernel_info info;
    return flock_cuda_blob_kernel(&fx.parsed, fx.parsed.n_kernels, &info, err);
}

/* ---- ir ---------------------------------------------------------------------------- */

static flock_status program_verify_empty(const char *arg, flock_error *err)
{
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    flock_status st = flock_program_verify(p, err);
    flock_program_free(p);
    return st;
}

static flock_status program_serialize_undefined_value(const char *arg, flock_error *err)
{
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    flock_op *op = flock_program_add_op(p, FLOCK_OP_LM_HEAD, -1);
    assert_non_null(op);
    op->n_in = 1;
    op->in[0] = 5;
    uint8_t *out = NULL;
    size_t size = 0;
    flock_status st = flock_program_serialize(p, &out, &size, err);
    flock_program_free(p);
    return st;
}

/* arg: the 5 bytes after the magic: u16 major, u16 minor, the arch name's length. */
static flock_status program_deserialize(const char *arg, flock_error *err)
{
    uint8_t bad[16] = "FLIR";
    memcpy(bad + 4, arg, 5);
    flock_program *p = NULL;
    return flock_program_deserialize(bad, sizeof bad, &p, err);
}

/* ---- compiler ---------------------------------------------------------------------- */

static flock_status source_open(const char *arg, flock_error *err)
{
    flock_source *s = NULL;
    return flock_source_open(errors_path(arg), &s, err);
}

static flock_status hparam_int(const char *arg, flock_error *err)
{
    int64_t v;
    return flock_source_hparam_int(fx.src, arg, &v, err);
}

static flock_status hparam_float(const char *arg, flock_error *err)
{
    double v;
    return flock_source_hparam_float(fx.src, arg, &v, err);
}

static flock_status hparam_str(const char *arg, flock_error *err)
{
    const char *s;
    return flock_source_hparam_str(fx.src, arg, &s, err);
}

static flock_status source_shape(const char *arg, flock_error *err)
{
    uint32_t nd;
    uint64_t shape[4];
    return flock_source_tensor_shape(fx.src, arg, &nd, shape, err);
}

static flock_status source_f32(const char *arg, flock_error *err)
{
    float *data = NULL;
    size_t n = 0;
    return flock_source_tensor_f32(fx.src, arg, &data, &n, err);
}

static flock_status parse_keep(const char *arg, flock_error *err)
{
    flock_compile_opts o = flock_compile_default_opts();
    return flock_compile_parse_keep(&o, arg, err);
}

static flock_status parse_targets(const char *arg, flock_error *err)
{
    flock_compile_opts o = flock_compile_default_opts();
    return flock_compile_parse_targets(&o, arg, err);
}

static flock_status compile_unknown_arch(const char *arg, flock_error *err)
{
    flock_program *p = NULL;
    return flock_compile_program(fx.mamba, &fx.opts, &p, err);
}

static flock_status compile_cuda_source_f32(const char *arg, flock_error *err)
{
    flock_compile_opts o = fx.opts;
    o.dtype = FLOCK_DTYPE_F32;
    char *src = NULL;
    size_t len = 0;
    return flock_compile_cuda_source(fx.prog, &o, &src, &len, err);
}

static flock_status compile_bundle_unknown_arch(const char *arg, flock_error *err)
{
    return flock_compile_bundle(fx.mamba, &fx.opts, errors_path("mamba.flock"), NULL, err);
}

static flock_status compile_bundle_no_keep(const char *arg, flock_error *err)
{
    flock_compile_opts o = fx.opts;
    o.n_keep = 0;
    return flock_compile_bundle(fx.src, &o, errors_path("no-keep.flock"), NULL, err);
}

/* ---- codegen ----------------------------------------------------------------------- */

#ifdef FLOCK_HAVE_LLVM
static flock_status llvm_spec_empty_program(const char *arg, flock_error *err)
{
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    const double keep = 0.5;
    flock_cpu_kernel_spec spec;
    flock_cpu_matvec_spec mv[4];
    flock_status st = flock_llvm_cpu_spec_from_program(p, &keep, 1, &spec, mv, 4, err);
    flock_program_free(p);
    return st;
}

static flock_status llvm_target_unknown(const char *arg, flock_error *err)
{
    char name[64];
    return flock_llvm_cpu_target_name("pdp-11", name, sizeof name, err);
}

/* arg: which of the three generators, given a spec with nothing to generate. */
static flock_status llvm_empty_spec(const char *arg, flock_error *err)
{
    const flock_cpu_kernel_spec spec = {0};
    uint8_t *bytes = NULL;
    char *text = NULL;
    size_t size = 0;
    if (!strcmp(arg, "asm"))
        return flock_llvm_cpu_asm(&spec, "x86-64-v3", &text, err);
    if (!strcmp(arg, "object"))
        return flock_llvm_cpu_object(&spec, "x86-64-v3", &bytes, &size, err);
    return flock_llvm_cpu_kernels(&spec, "x86-64-v3", &bytes, &size, err);
}
#endif

static flock_status codegen_from_empty_program(const char *arg, flock_error *err)
{
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    const float keep = 0.5f;
    flock_codegen_model m;
    flock_status st = flock_codegen_model_from_program(p, &keep, 1, FLOCK_DTYPE_F16, &m, err);
    flock_program_free(p);
    return st;
}

/* arg: which entry point, given a model of all zeros (d_model 0, no keep ratio). */
static flock_status codegen_zero_model(const char *arg, flock_error *err)
{
    const flock_codegen_model m = {0};
    uint8_t *blob = NULL;
    char *src = NULL;
    size_t size = 0;
    if (!strcmp(arg, "check"))
        return flock_codegen_model_check(&m, err);
    if (!strcmp(arg, "source"))
        return flock_codegen_cuda_source(&m, &src, &size, NULL, NULL, err);
    if (!strcmp(arg, "cuda"))
        return flock_codegen_cuda(&m, "sm_90", &blob, &size, err);
    return flock_codegen_cuda_pack(&m, 90, FLOCK_CUDA_IMAGE_CUBIN, "x", 1, &blob, &size, err);
}

/* ---- runtime ----------------------------------------------------------------------- */

static flock_status model_open(const char *arg, flock_error *err)
{
    flock_model *m = NULL;
    return flock_model_open(errors_path(arg), NULL, &m, err);
}

static flock_status chat_no_messages(const char *arg, flock_error *err)
{
    char *out = NULL;
    return flock_chat_format(fx.model, NULL, 1, true, &out, err);
}

static flock_status tokenize_no_room(const char *arg, flock_error *err)
{
    size_t n = 0;
    return flock_tokenize(fx.model, "abc", 3, true, NULL, 0, &n, err);
}

static flock_status detokenize_no_ids(const char *arg, flock_error *err)
{
    char *out = NULL;
    return flock_detokenize(fx.model, NULL, 3, &out, err);
}

static flock_status device_out_of_range(const char *arg, flock_error *err)
{
    flock_device got;
    char note[256];
    return flock_device_resolve((flock_device)7, &got, note, sizeof note, err);
}

/* arg: the one option set wrong. "device": CUDA, which fails for want of a
 * GPU or, on a GPU host, of kernels for it in the bundle. */
static flock_status session_create(const char *arg, flock_error *err)
{
    flock_session_opts o = flock_session_default_opts();
    if (!strcmp(arg, "keep"))
        o.keep = 0.3; /* the bundle has 0.5 */
    else if (!strcmp(arg, "n_ctx"))
        o.n_ctx = 1 << 20;
    else if (!strcmp(arg, "select"))
        o.select = (flock_select_mode)9;
    else if (!strcmp(arg, "threads"))
        o.threads = -2;
    else if (!strcmp(arg, "device"))
        o.device = FLOCK_DEVICE_CUDA;
    flock_session *s = NULL;
    flock_status st = flock_session_create(fx.model, &o, &s, err);
    flock_session_free(s);
    return st;
}

/* arg: "vocab" (an empty vocabulary) or "top_p" (2). */
static flock_status sampler_create(const char *arg, flock_error *err)
{
    flock_sampler_opts o = flock_sampler_default_opts();
    if (!strcmp(arg, "top_p"))
        o.top_p = 2;
    flock_sampler *s = NULL;
    return flock_sampler_create(&o, strcmp(arg, "vocab") ? E_V : 0, &s, err);
}

/* ---- the table ---------------------------------------------------------------------- */

typedef struct error_case {
    const char *entry; /* the public function */
    const char *input; /* what is wrong with its input */
    case_fn fn;
    const char *arg;
} error_case;

#define GARBAGE ERRORS_FILE_GARBAGE
#define EMPTY ERRORS_FILE_EMPTY
#define MISSING ERRORS_FILE_MISSING

static const error_case cases[] = {
    {"flock_map_file", "missing file", map_file, MISSING},
    {"flock_dequantize", "unknown type", dequant_unknown_type, ""},
    {"flock_dequantize", "source shorter than its blocks", dequant_short_source, ""},
    {"flock_gguf_open", "garbage file", gguf_open, GARBAGE},
    {"flock_gguf_open", "empty file", gguf_open, EMPTY},
    {"flock_gguf_open", "missing file", gguf_open, MISSING},
    {"flock_gguf_open_memory", "truncated image", gguf_memory_truncated, ""},
    {"flock_gguf_get_int", "absent key", gguf_int, "no.such.key"},
    {"flock_gguf_get_float", "string value", gguf_float, "general.architecture"},
    {"flock_gguf_get_bool", "float value", gguf_bool, "test.float"},
    {"flock_gguf_get_str", "integer value", gguf_str, "test.int"},
    {"flock_gguf_get_arr", "integer value", gguf_arr, "test.int"},
    {"flock_gguf_get_arr_str", "index past the end", gguf_arr_str_past_end, ""},
    {"flock_gguf_tensor_to_f32", "destination too small", gguf_tensor_small_dst, ""},
    {"flock_safetensors_open_memory", "absurd header length", st_memory_absurd_header, ""},
    {"flock_safetensors_open", "empty file", st_open, EMPTY},
    {"flock_safetensors_open", "garbage file", st_open, GARBAGE},
    {"flock_safetensors_open", "missing file", st_open, MISSING},
    {"flock_hf_open", "folder without config.json", hf_open, ERRORS_DIR_EMPTY},
    {"flock_hf_open", "config.json cut short", hf_open, ERRORS_DIR_BAD_CONFIG},
    {"flock_hf_open", "missing folder", hf_open, MISSING},
    {"flock_hf_config_int", "string value", hf_int, "model_type"},
    {"flock_hf_config_float", "absent key", hf_float, "rope_scaling.factor"},
    {"flock_hf_config_bool", "integer value", hf_bool, "hidden_size"},
    {"flock_hf_config_str", "integer value", hf_str, "hidden_size"},
    {"flock_hf_config_len", "not an array", hf_len, "hidden_size"},
    {"flock_hf_config_str_at", "index past the end", hf_str_at_past_end, ""},
    {"flock_hf_config_float_at", "string element", hf_float_at_of_string, ""},
    {"flock_tokdata_serialize", "no token arrays", tokdata_serialize_no_arrays, ""},
    {"flock_tokdata_deserialize", "header cut off", tokdata_deserialize_cut, ""},
    {"flock_tokdata_from_gguf", "no tokenizer keys", tokdata_gguf_without_tokenizer, ""},
    {"flock_tokdata_from_hf", "no tokenizer.json", tokdata_hf_without_tokenizer, ""},
    {"flock_manifest_get_int", "string value", manifest_int, "s"},
    {"flock_manifest_get_float", "absent key", manifest_float, "none"},
    {"flock_manifest_get_str", "integer value", manifest_str, "i"},
    {"flock_manifest_get_int_arr", "integer value", manifest_int_arr, "i"},
    {"flock_manifest_get_float_arr", "absent key", manifest_float_arr, "none"},
    {"flock_manifest_get_str_arr", "string value", manifest_str_arr, "s"},
    {"flock_bundle_writer_create", "folder does not exist", writer_no_dir, ""},
    {"flock_bundle_writer_create", "zstd level 1000", writer_bad_level, ""},
    {"flock_bundle_writer_set_manifest", "NULL manifest", writer_null_manifest, ""},
    {"flock_bundle_writer_add_tensor", "bytes do not match the shape", writer_tensor_size_mismatch, ""},
    {"flock_bundle_writer_add_section", "unknown kind", writer_bad_section_kind, ""},
    {"flock_bundle_writer_finish", "finished twice", writer_finish_twice, ""},
    {"flock_bundle_open", "garbage file", bundle_open, GARBAGE},
    {"flock_bundle_open", "empty file", bundle_open, EMPTY},
    {"flock_bundle_open", "truncated bundle", bundle_open, ERRORS_FILE_TRUNCATED},
    {"flock_bundle_open", "missing file", bundle_open, MISSING},
    {"flock_bundle_open_memory", "header byte flipped", bundle_memory_header_flip, ""},
    {"flock_bundle_read_section", "index past the end", bundle_section_past_end, ""},
    {"flock_bundle_tensor_read", "destination too small", bundle_tensor_small_dst, ""},
    {"flock_bundle_tensor_read", "damaged chunk", bundle_tensor_damaged, ""},
    {"flock_bundle_tensor_mapped", "compressed tensor", bundle_tensor_mapped_compressed, ""},
    {"flock_cuda_blob_parse", "garbage header", cuda_blob_garbage, ""},
    {"flock_cuda_blob_kernel", "index past the end", cuda_blob_kernel_past_end, ""},
    {"flock_program_verify", "empty program", program_verify_empty, ""},
    {"flock_program_serialize", "undefined value", program_serialize_undefined_value, ""},
    {"flock_program_deserialize", "arch length 255", program_deserialize, "\x01\x00\x00\x00\xff"},
    {"flock_program_deserialize", "major version 9", program_deserialize, "\x09\x00\x00\x00"},
    {"flock_source_open", "garbage file", source_open, GARBAGE},
    {"flock_source_open", "missing file", source_open, MISSING},
    {"flock_source_open", "folder without config.json", source_open, ERRORS_DIR_EMPTY},
    {"flock_source_hparam_int", "unknown name", hparam_int, "no_such_hparam"},
    {"flock_source_hparam_float", "absent", hparam_float, "rope_scaling_factor"},
    {"flock_source_hparam_str", "absent", hparam_str, "rope_scaling_type"},
    {"flock_source_tensor_shape", "absent tensor", source_shape, "blk.9.attn_q.weight"},
    {"flock_source_tensor_f32", "absent tensor", source_f32, "blk.9.attn_q.weight"},
    {"flock_compile_parse_keep", "not a number", parse_keep, "0.5,abc"},
    {"flock_compile_parse_keep", "ratio above 1", parse_keep, "1.5"},
    {"flock_compile_parse_targets", "unknown target", parse_targets, "cpu,sm_12"},
    {"flock_compile_program", "unsupported architecture", compile_unknown_arch, ""},
    {"flock_compile_cuda_source", "f32 storage", compile_cuda_source_f32, ""},
    {"flock_compile_bundle", "unsupported architecture", compile_bundle_unknown_arch, ""},
    {"flock_compile_bundle", "no keep ratio", compile_bundle_no_keep, ""},
#ifdef FLOCK_HAVE_LLVM
    {"flock_llvm_cpu_spec_from_program", "no FF ops", llvm_spec_empty_program, ""},
    {"flock_llvm_cpu_target_name", "unknown target", llvm_target_unknown, ""},
    {"flock_llvm_cpu_kernels", "nothing to generate", llvm_empty_spec, "kernels"},
    {"flock_llvm_cpu_asm", "nothing to generate", llvm_empty_spec, "asm"},
    {"flock_llvm_cpu_object", "nothing to generate", llvm_empty_spec, "object"},
#endif
    {"flock_codegen_model_check", "all zero", codegen_zero_model, "check"},
    {"flock_codegen_model_from_program", "empty program", codegen_from_empty_program, ""},
    {"flock_codegen_cuda_source", "all-zero model", codegen_zero_model, "source"},
    {"flock_codegen_cuda", "all-zero model", codegen_zero_model, "cuda"},
    {"flock_codegen_cuda_pack", "all-zero model", codegen_zero_model, "pack"},
    {"flock_model_open", "garbage file", model_open, GARBAGE},
    {"flock_model_open", "empty file", model_open, EMPTY},
    {"flock_model_open", "truncated bundle", model_open, ERRORS_FILE_TRUNCATED},
    {"flock_model_open", "missing file", model_open, MISSING},
    {"flock_model_open", "bundle without a program", model_open, ERRORS_FILE_NO_PROGRAM},
    {"flock_chat_format", "NULL messages", chat_no_messages, ""},
    {"flock_tokenize", "no room for the ids", tokenize_no_room, ""},
    {"flock_detokenize", "NULL ids", detokenize_no_ids, ""},
    {"flock_device_resolve", "device out of range", device_out_of_range, ""},
    {"flock_session_create", "keep ratio not compiled", session_create, "keep"},
    {"flock_session_create", "context beyond the model's", session_create, "n_ctx"},
    {"flock_session_create", "selection mode out of range", session_create, "select"},
    {"flock_session_create", "negative threads", session_create, "threads"},
    {"flock_session_create", "CUDA without a GPU or kernels", session_create, "device"},
    {"flock_sampler_create", "empty vocabulary", sampler_create, "vocab"},
    {"flock_sampler_create", "top_p 2", sampler_create, "top_p"},
};

/* Why a row fails, or NULL. */
static const char *judge(flock_status with, flock_status without, const flock_error *err)
{
    if (with != without)
        return "the status depends on the error buffer";
    if (with == FLOCK_OK)
        return "bad input accepted";
    if (with == FLOCK_E_INTERNAL)
        return "bad input reported as an internal error";
    if (!flock_status_str(with)[0])
        return "empty status name";
    if (err->status != with)
        return "err->status differs from the return value";
    if (!err->msg[0])
        return "no message";
    return NULL;
}

static void test_status_independent_of_buffer(void **state)
{
    (void)state;
    const size_t n = sizeof cases / sizeof cases[0];
    size_t entries = 0, failures = 0;
    for (size_t i = 0; i < n; i++) {
        const error_case *c = &cases[i];
        entries += i == 0 || strcmp(cases[i - 1].entry, c->entry) != 0; /* an entry point's rows are adjacent */
        flock_error err = {FLOCK_OK, ""};
        const flock_status with = c->fn(c->arg, &err);
        const flock_status without = c->fn(c->arg, NULL);
        const char *why = judge(with, without, &err);
        print_message("%-34s %-32s %-18s %s\n", c->entry, c->input, flock_status_str(with), why ? "" : err.msg);
        if (why) {
            print_error("  FAILED: %s (with a buffer: %s, without: %s)\n", why, flock_status_str(with),
                        flock_status_str(without));
            failures++;
        }
    }
    print_message("%zu public entry points, %zu bad inputs, each called with and without an error buffer\n",
                  entries, n);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_independent_of_buffer),
    };
    return cmocka_run_group_tests(tests, errors_fixture_make, errors_fixture_free);
}
