/* safetensors reader and Hugging Face folders: valid files of every supported
 * dtype, single and sharded folders, config getters, hand-made broken files,
 * and a corruption suite (every truncation, every bit flip in the header). */
#include "st_build.h"

/* Checks that `t` matches the spec: name, dtype, shape, and bit-exact values. */
static void expect_tensor(const flock_st_tensor *t, const st_spec *s)
{
    assert_string_equal(t->name, s->name);
    assert_int_equal(t->dtype, s->dtype);
    assert_int_equal(t->n_dims, s->n_dims);
    for (uint32_t d = 0; d < s->n_dims; d++)
        assert_int_equal(t->shape[d], s->shape[d]);
    uint64_t ne = st_spec_elems(s);
    assert_int_equal(t->nbytes, ne * flock_dtype_size(s->dtype));
    float *got = malloc((ne ? ne : 1) * sizeof *got);
    assert_non_null(got);
    assert_int_equal(flock_convert_to_f32(t->dtype, t->data, got, ne), FLOCK_OK);
    if (ne)
        assert_memory_equal(got, s->vals, ne * sizeof *got);
    free(got);
}

/* Three tensors, one per dtype, written in an order that is not sorted. */
static void make_specs(st_spec t[3])
{
    t[0] = (st_spec){"model.layers.0.mlp.up_proj.weight", FLOCK_DTYPE_BF16, 2, {6, 5}, NULL};
    t[1] = (st_spec){"lm_head.weight", FLOCK_DTYPE_F16, 2, {7, 3}, NULL};
    t[2] = (st_spec){"model.norm.weight", FLOCK_DTYPE_F32, 1, {5}, NULL};
}

/* Specs sorted by name, as flock exposes them. */
static const int sorted_order[3] = {1, 0, 2};

static void test_st_memory_all_dtypes(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed0001;
    st_spec t[3];
    make_specs(t);
    size_t len;
    uint8_t *img = st_build_image(t, 3, "{\"format\":\"pt\"}", &seed, &len);
    flock_safetensors *st = NULL;
    flock_error err = {0};
    assert_int_equal(flock_safetensors_open_memory(img, len, &st, &err), FLOCK_OK);
    assert_int_equal(flock_safetensors_count(st), 3);
    for (int i = 0; i < 3; i++) {
        flock_st_tensor x;
        assert_int_equal(flock_safetensors_tensor(st, (uint64_t)i, &x), FLOCK_OK);
        expect_tensor(&x, &t[sorted_order[i]]);
    }
    flock_st_tensor x;
    assert_int_equal(flock_safetensors_tensor(st, 3, &x), FLOCK_E_RANGE);
    flock_safetensors_free(st);
    flock_safetensors_free(NULL);
    /* Scalars and zero-size tensors are legal. */
    st_spec z[2] = {{"empty", FLOCK_DTYPE_F32, 2, {0, 4}, NULL}, {"scalar", FLOCK_DTYPE_F16, 0, {0}, NULL}};
    uint8_t *img2 = st_build_image(z, 2, NULL, &seed, &len);
    assert_int_equal(flock_safetensors_open_memory(img2, len, &st, &err), FLOCK_OK);
    assert_int_equal(flock_safetensors_count(st), 2);
    assert_int_equal(flock_safetensors_tensor(st, 0, &x), FLOCK_OK);
    expect_tensor(&x, &z[0]);
    assert_int_equal(flock_safetensors_tensor(st, 1, &x), FLOCK_OK);
    expect_tensor(&x, &z[1]);
    flock_safetensors_free(st);
    st_free_specs(z, 2);
    st_free_specs(t, 3);
    free(img);
    free(img2);
}

/* Writers need not align the data region: one more byte of header padding
 * shifts every tensor to an odd address, which must read the same values. */
static void test_st_unaligned(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed0007;
    st_spec t[3];
    make_specs(t);
    size_t len;
    uint8_t *img = st_build_image(t, 3, NULL, &seed, &len);
    size_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (size_t)img[i] << (8 * i);
    char *hdr = malloc(hlen + 2);
    assert_non_null(hdr);
    memcpy(hdr, img + 8, hlen);
    hdr[hlen] = ' ';
    size_t len2;
    uint8_t *img2 = st_raw_image(hdr, hlen + 1, img + 8 + hlen, len - 8 - hlen, &len2);
    flock_safetensors *st = NULL;
    flock_error err = {0};
    assert_int_equal(flock_safetensors_open_memory(img2, len2, &st, &err), FLOCK_OK);
    for (int i = 0; i < 3; i++) {
        flock_st_tensor x;
        assert_int_equal(flock_safetensors_tensor(st, (uint64_t)i, &x), FLOCK_OK);
        assert_true(((uintptr_t)x.data & 1) == 1); /* malloc is aligned; data starts at odd 9 + hlen */
        expect_tensor(&x, &t[sorted_order[i]]);
    }
    flock_safetensors_free(st);
    st_free_specs(t, 3);
    free(hdr);
    free(img);
    free(img2);
}

static void test_hf_single_file(void **state)
{
    (void)state;
    char dir[512];
    st_tmpdir(dir, sizeof dir);
    uint64_t seed = 0x5eed0002;
    st_spec t[3];
    make_specs(t);
    size_t len;
    uint8_t *img = st_build_image(t, 3, NULL, &seed, &len);
    st_write_file(dir, "model.safetensors", img, len);
    st_write_text(dir, "config.json", "{\"model_type\": \"llama\", \"hidden_size\": 5}");
    st_write_text(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}");
    flock_hf_model *m = NULL;
    flock_error err = {0};
    assert_int_equal(flock_hf_open(dir, &m, &err), FLOCK_OK);
    assert_int_equal(flock_hf_tensor_count(m), 3);
    for (int i = 0; i < 3; i++) {
        flock_st_tensor x;
        assert_int_equal(flock_hf_tensor(m, (uint64_t)i, &x), FLOCK_OK);
        expect_tensor(&x, &t[sorted_order[i]]);
        assert_int_equal(flock_hf_find_tensor(m, t[sorted_order[i]].name), i);
    }
    assert_int_equal(flock_hf_find_tensor(m, "nope"), -1);
    size_t tl = 99;
    const char *tj = flock_hf_tokenizer_json(m, &tl);
    assert_non_null(tj);
    assert_int_equal(tl, strlen("{\"model\": {\"type\": \"BPE\"}}"));
    assert_string_equal(tj, "{\"model\": {\"type\": \"BPE\"}}");
    assert_null(flock_hf_tokenizer_config_json(m, &tl));
    assert_int_equal(tl, 0);
    flock_hf_free(m);
    flock_hf_free(NULL);
    st_free_specs(t, 3);
    free(img);
    st_rmtree(dir);
}

static void test_hf_sharded(void **state)
{
    (void)state;
    char dir[512];
    st_tmpdir(dir, sizeof dir);
    uint64_t seed = 0x5eed0003;
    st_spec a[2] = {{"b.weight", FLOCK_DTYPE_F32, 2, {3, 4}, NULL}, {"d.weight", FLOCK_DTYPE_BF16, 1, {9}, NULL}};
    st_spec b[2] = {{"a.weight", FLOCK_DTYPE_F16, 3, {2, 3, 2}, NULL}, {"c.weight", FLOCK_DTYPE_F32, 1, {1}, NULL}};
    size_t la, lb;
    uint8_t *ia = st_build_image(a, 2, NULL, &seed, &la);
    uint8_t *ib = st_build_image(b, 2, NULL, &seed, &lb);
    st_write_file(dir, "model-00001-of-00002.safetensors", ia, la);
    st_write_file(dir, "model-00002-of-00002.safetensors", ib, lb);
    st_write_text(dir, "config.json", "{}");
    st_write_text(dir, "tokenizer_config.json", "{\"add_bos_token\": true}");
    st_write_text(dir, "model.safetensors.index.json",
                  "{\"metadata\": {\"total_size\": 100}, \"weight_map\": {"
                  "\"b.weight\": \"model-00001-of-00002.safetensors\","
                  "\"a.weight\": \"model-00002-of-00002.safetensors\","
                  "\"d.weight\": \"model-00001-of-00002.safetensors\","
                  "\"c.weight\": \"model-00002-of-00002.safetensors\"}}");
    flock_hf_model *m = NULL;
    flock_error err = {0};
    assert_int_equal(flock_hf_open(dir, &m, &err), FLOCK_OK);
    assert_int_equal(flock_hf_tensor_count(m), 4);
    const st_spec *want[4] = {&b[0], &a[0], &b[1], &a[1]}; /* a, b, c, d */
    for (int i = 0; i < 4; i++) {
        flock_st_tensor x;
        assert_int_equal(flock_hf_tensor(m, (uint64_t)i, &x), FLOCK_OK);
        expect_tensor(&x, want[i]);
        assert_int_equal(flock_hf_find_tensor(m, want[i]->name), i);
    }
    size_t tl;
    assert_string_equal(flock_hf_tokenizer_config_json(m, &tl), "{\"add_bos_token\": true}");
    assert_null(flock_hf_tokenizer_json(m, NULL));
    flock_hf_free(m);
    st_free_specs(a, 2);
    st_free_specs(b, 2);
    free(ia);
    free(ib);
    st_rmtree(dir);
}

/* ---- config getters ---------------------------------------------------- */

static const char config_text[] =
    "{\n"
    "  \"hidden_size\": 576, \"rms_norm_eps\": 1e-05, \"rope_theta\": 100000,\n"
    "  \"tie_word_embeddings\": true, \"model_type\": \"llama\", \"pad_token_id\": null,\n"
    "  \"negative\": -7, \"huge\": 18446744073709551615,\n"
    "  \"architectures\": [\"LlamaForCausalLM\", 3, null],\n"
    "  \"factors\": [1, 2.5, -0.25, \"x\"],\n"
    "  \"rope_scaling\": {\"factor\": 8.0, \"type\": \"llama3\", \"original\": 8192, \"inner\": {\"deep\": false}},\n"
    "  \"nothing\": null\n"
    "}\n";

static flock_hf_model *open_config_model(char *dir, size_t n, const char *config)
{
    st_tmpdir(dir, n);
    uint64_t seed = 0x5eed0004;
    st_spec t[1] = {{"w", FLOCK_DTYPE_F32, 1, {2}, NULL}};
    size_t len;
    uint8_t *img = st_build_image(t, 1, NULL, &seed, &len);
    st_write_file(dir, "model.safetensors", img, len);
    st_write_text(dir, "config.json", config);
    flock_hf_model *m = NULL;
    flock_error err = {0};
    assert_int_equal(flock_hf_open(dir, &m, &err), FLOCK_OK);
    st_free_specs(t, 1);
    free(img);
    return m;
}

static void test_hf_config_getters(void **state)
{
    (void)state;
    char dir[512];
    flock_hf_model *m = open_config_model(dir, sizeof dir, config_text);
    flock_error err = {0};
    int64_t i = 0;
    double f = 0;
    bool b = false;
    const char *s = NULL;
    uint64_t n = 0;

    assert_int_equal(flock_hf_config_int(m, "hidden_size", &i, &err), FLOCK_OK);
    assert_int_equal(i, 576);
    assert_int_equal(flock_hf_config_int(m, "negative", &i, &err), FLOCK_OK);
    assert_int_equal(i, -7);
    assert_int_equal(flock_hf_config_int(m, "rope_scaling.original", &i, &err), FLOCK_OK);
    assert_int_equal(i, 8192);
    assert_int_equal(flock_hf_config_float(m, "rms_norm_eps", &f, &err), FLOCK_OK);
    assert_true(f == 1e-05);
    assert_int_equal(flock_hf_config_float(m, "rope_theta", &f, &err), FLOCK_OK); /* int accepted */
    assert_true(f == 100000.0);
    assert_int_equal(flock_hf_config_float(m, "rope_scaling.factor", &f, &err), FLOCK_OK);
    assert_true(f == 8.0);
    assert_int_equal(flock_hf_config_bool(m, "tie_word_embeddings", &b, &err), FLOCK_OK);
    assert_true(b);
    assert_int_equal(flock_hf_config_bool(m, "rope_scaling.inner.deep", &b, &err), FLOCK_OK);
    assert_false(b);
    assert_int_equal(flock_hf_config_str(m, "model_type", &s, &err), FLOCK_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(flock_hf_config_str(m, "rope_scaling.type", &s, &err), FLOCK_OK);
    assert_string_equal(s, "llama3");

    /* Arrays. */
    assert_int_equal(flock_hf_config_len(m, "architectures", &n, &err), FLOCK_OK);
    assert_int_equal(n, 3);
    assert_int_equal(flock_hf_config_str_at(m, "architectures", 0, &s, &err), FLOCK_OK);
    assert_string_equal(s, "LlamaForCausalLM");
    assert_int_equal(flock_hf_config_str_at(m, "architectures", 1, &s, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_str_at(m, "architectures", 2, &s, &err), FLOCK_E_NOT_FOUND);
    assert_int_equal(flock_hf_config_str_at(m, "architectures", 3, &s, &err), FLOCK_E_RANGE);
    assert_int_equal(flock_hf_config_len(m, "factors", &n, &err), FLOCK_OK);
    assert_int_equal(n, 4);
    const double fw[3] = {1, 2.5, -0.25};
    for (uint64_t k = 0; k < 3; k++) {
        assert_int_equal(flock_hf_config_float_at(m, "factors", k, &f, &err), FLOCK_OK);
        assert_true(f == fw[k]);
    }
    assert_int_equal(flock_hf_config_float_at(m, "factors", 3, &f, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_len(m, "hidden_size", &n, &err), FLOCK_E_TYPE);

    /* Absent and null are NOT_FOUND, other types TYPE; *out stays untouched. */
    i = 42;
    assert_int_equal(flock_hf_config_int(m, "missing", &i, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "missing"));
    assert_int_equal(flock_hf_config_int(m, "pad_token_id", &i, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "null"));
    assert_int_equal(flock_hf_config_int(m, "nothing.below", &i, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "'nothing' is null"));
    assert_int_equal(flock_hf_config_int(m, "rope_scaling.missing", &i, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "'rope_scaling.missing' is absent"));
    assert_int_equal(flock_hf_config_int(m, "rms_norm_eps", &i, &err), FLOCK_E_TYPE);
    assert_non_null(strstr(err.msg, "rms_norm_eps"));
    assert_int_equal(flock_hf_config_int(m, "model_type", &i, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_int(m, "hidden_size.x", &i, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_int(m, "huge", &i, &err), FLOCK_E_RANGE);
    assert_int_equal(i, 42);
    assert_int_equal(flock_hf_config_float(m, "model_type", &f, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_bool(m, "hidden_size", &b, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_str(m, "hidden_size", &s, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_str(m, "rope_scaling", &s, &err), FLOCK_E_TYPE);
    assert_int_equal(flock_hf_config_int(m, "", &i, &err), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_hf_config_int(m, "rope_scaling..factor", &i, &err), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_hf_config_int(m, "rope_scaling.", &i, &err), FLOCK_E_INVALID_ARG);
    assert_int_equal(i, 42);
    flock_hf_free(m);
    st_rmtree(dir);
}

/* ---- broken safetensors files ------------------------------------------ */

/* Opens header+data and expects status `want` with every `needle` in the message. */
static void expect_st_error(const char *header, const void *data, size_t dlen, flock_status want,
                            const char *needle1, const char *needle2)
{
    size_t len;
    uint8_t *img = st_raw_image(header, strlen(header), data, dlen, &len);
    flock_safetensors *st = (flock_safetensors *)(uintptr_t)0x1; /* must stay untouched */
    flock_error err = {0};
    flock_status s = flock_safetensors_open_memory(img, len, &st, &err);
    if (s != want || (needle1 && !strstr(err.msg, needle1)) || (needle2 && !strstr(err.msg, needle2)))
        print_error("header %s\n  got %s: %s\n", header, flock_status_str(s), err.msg);
    assert_int_equal(s, want);
    assert_int_equal(err.status, want);
    if (needle1)
        assert_non_null(strstr(err.msg, needle1));
    if (needle2)
        assert_non_null(strstr(err.msg, needle2));
    assert_true(st == (flock_safetensors *)(uintptr_t)0x1);
    free(img);
}

static void test_st_broken(void **state)
{
    (void)state;
    uint8_t d[64] = {0};
    flock_safetensors *st = NULL;
    flock_error err = {0};

    /* Header length: truncated, larger than the file, beyond the limit. */
    const uint8_t four[4] = {1, 0, 0, 0};
    assert_int_equal(flock_safetensors_open_memory(four, 4, &st, &err), FLOCK_E_TRUNCATED);
    assert_int_equal(flock_safetensors_open_memory(NULL, 0, &st, &err), FLOCK_E_TRUNCATED);
    uint8_t big[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(flock_safetensors_open_memory(big, sizeof big, &st, &err), FLOCK_E_TRUNCATED);
    assert_non_null(strstr(err.msg, "100"));
    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    assert_int_equal(flock_safetensors_open_memory(huge, sizeof huge, &st, &err), FLOCK_E_CORRUPT);
    assert_null(st);

    /* JSON. */
    expect_st_error("{\"a\": {\"dtype\": \"F32\",", NULL, 0, FLOCK_E_TRUNCATED, "offset", NULL);
    expect_st_error("{\"a\" {}}", NULL, 0, FLOCK_E_CORRUPT, "offset 5", "line 1");
    expect_st_error("[1, 2]", NULL, 0, FLOCK_E_CORRUPT, "object", NULL);
    expect_st_error("{} x", NULL, 0, FLOCK_E_CORRUPT, "offset 3", NULL);
    /* Whitespace padding after the object is what writers emit: valid, no tensors. */
    size_t plen;
    uint8_t *pad = st_raw_image("{}      ", 8, NULL, 0, &plen);
    assert_int_equal(flock_safetensors_open_memory(pad, plen, &st, &err), FLOCK_OK);
    assert_int_equal(flock_safetensors_count(st), 0);
    flock_safetensors_free(st);
    st = NULL;
    free(pad);
    /* json-c accepts NaN even in strict mode; the entry is then not an object. */
    expect_st_error("{\"a\": NaN}", NULL, 0, FLOCK_E_CORRUPT, "'a'", "expected an object");
    expect_st_error("{\"__metadata__\": 3}", NULL, 0, FLOCK_E_CORRUPT, "__metadata__", NULL);
    expect_st_error("{\"__metadata__\": {\"k\": 1}}", NULL, 0, FLOCK_E_CORRUPT, "__metadata__", "\"k\"");
    char with_nul[] = "{}  ";
    with_nul[2] = '\0';
    size_t len;
    uint8_t *img = st_raw_image(with_nul, 4, NULL, 0, &len);
    assert_int_equal(flock_safetensors_open_memory(img, len, &st, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "NUL"));
    free(img);

    /* dtypes. */
    expect_st_error("{\"x\": {\"dtype\": \"Q9\", \"shape\": [1], \"data_offsets\": [0, 1]}}", d, 1,
                    FLOCK_E_UNSUPPORTED, "'x'", "Q9");
    expect_st_error("{\"pos\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}", d, 16,
                    FLOCK_E_UNSUPPORTED, "'pos'", "I64");
    expect_st_error("{\"f8\": {\"dtype\": \"F8_E4M3\", \"shape\": [3], \"data_offsets\": [0, 3]}}", d, 3,
                    FLOCK_E_UNSUPPORTED, "'f8'", "F8_E4M3");
    expect_st_error("{\"x\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}", d, 4, FLOCK_E_CORRUPT,
                    "'x'", "dtype");

    /* Shapes and sizes. */
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", d, 20,
                    FLOCK_E_CORRUPT, "'w'", "need 24");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", d, 8,
                    FLOCK_E_CORRUPT, "'w'", "shape[0]");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", d, 8,
                    FLOCK_E_CORRUPT, "'w'", "shape[0]");
    expect_st_error("{\"w\": {\"dtype\": \"F16\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}",
                    d, 8, FLOCK_E_CORRUPT, "'w'", "overflow");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 8]}}",
                    d, 8, FLOCK_E_CORRUPT, "'w'", "overflow");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", d,
                    4, FLOCK_E_UNSUPPORTED, "'w'", "9 dimensions");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", d, 4, FLOCK_E_CORRUPT, "'w'",
                    "shape");
    expect_st_error("{\"w\": [1]}", d, 4, FLOCK_E_CORRUPT, "'w'", "object");

    /* Offsets. */
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", d, 12,
                    FLOCK_E_TRUNCATED, "'w'", "12 bytes");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8]}}", d, 16,
                    FLOCK_E_CORRUPT, "'w'", "expected 2");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", d, 4,
                    FLOCK_E_CORRUPT, "'w'", "end before");
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                    " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                    d, 12, FLOCK_E_CORRUPT, "overlap", "'a'");
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                    " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                    d, 8, FLOCK_E_CORRUPT, "overlap", NULL);
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                    " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
                    d, 12, FLOCK_E_CORRUPT, "'b'", "expected 4");
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", d, 8,
                    FLOCK_E_CORRUPT, "ends at offset 4", "8 bytes");
    /* A duplicated key: json-c keeps the last one, which leaves a hole. */
    expect_st_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                    " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                    d, 8, FLOCK_E_CORRUPT, "'a'", "expected 0");
    /* Unsupported dtype is reported only after the structure checks pass. */
    expect_st_error("{\"i\": {\"dtype\": \"I32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", d, 8,
                    FLOCK_E_CORRUPT, "'i'", "need 12");
}

/* Opens a folder whose files are given as (name, text) pairs. */
static flock_status open_folder(const char *const *files, size_t n, const uint8_t *img, size_t len,
                                flock_error *err)
{
    char dir[512];
    st_tmpdir(dir, sizeof dir);
    for (size_t i = 0; i + 1 < n; i += 2) {
        if (files[i + 1])
            st_write_text(dir, files[i], files[i + 1]);
        else
            st_write_file(dir, files[i], img, len);
    }
    flock_hf_model *m = (flock_hf_model *)(uintptr_t)0x1;
    flock_status s = flock_hf_open(dir, &m, err);
    if (s == FLOCK_OK)
        print_error("folder with %s = %s opened, expected an error\n", files[n - 2], files[n - 1] ? files[n - 1] : "(image)");
    assert_true(m == (flock_hf_model *)(uintptr_t)0x1);
    st_rmtree(dir);
    return s;
}

static void test_hf_broken(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed0005;
    st_spec t[1] = {{"w", FLOCK_DTYPE_F32, 1, {2}, NULL}};
    size_t len;
    uint8_t *img = st_build_image(t, 1, NULL, &seed, &len);
    flock_error err = {0};

    const char *no_config[] = {"model.safetensors", NULL};
    assert_int_equal(open_folder(no_config, 2, img, len, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "config.json"));

    const char *bad_config[] = {"config.json", "{\n  \"a\": 1,\n  \"b\" 2\n}", "model.safetensors", NULL};
    assert_int_equal(open_folder(bad_config, 4, img, len, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "config.json"));
    assert_non_null(strstr(err.msg, "line 3"));
    assert_non_null(strstr(err.msg, "separator")); /* json-c's own description */

    const char *array_config[] = {"config.json", "[]", "model.safetensors", NULL};
    assert_int_equal(open_folder(array_config, 4, img, len, &err), FLOCK_E_CORRUPT);

    const char *no_model[] = {"config.json", "{}"};
    assert_int_equal(open_folder(no_model, 2, img, len, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "model.safetensors"));

    const char *bad_model[] = {"config.json", "{}", "model.safetensors", "{\"x\":1}"}; /* 7 bytes */
    assert_int_equal(open_folder(bad_model, 4, img, len, &err), FLOCK_E_TRUNCATED);
    assert_non_null(strstr(err.msg, "model.safetensors"));

    const char *missing_shard[] = {"config.json", "{}", "s1.safetensors", NULL, "model.safetensors.index.json",
                                   "{\"weight_map\": {\"w\": \"s1.safetensors\", \"v\": \"s2.safetensors\"}}"};
    assert_int_equal(open_folder(missing_shard, 6, img, len, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "s2.safetensors"));

    const char *traversal[] = {"config.json", "{}", "model.safetensors.index.json",
                               "{\"weight_map\": {\"w\": \"../model.safetensors\"}}"};
    assert_int_equal(open_folder(traversal, 4, img, len, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "../model.safetensors"));
    const char *absolute[] = {"config.json", "{}", "model.safetensors.index.json",
                              "{\"weight_map\": {\"w\": \"/etc/passwd\"}}"};
    assert_int_equal(open_folder(absolute, 4, img, len, &err), FLOCK_E_CORRUPT);
    const char *not_str[] = {"config.json", "{}", "model.safetensors.index.json", "{\"weight_map\": {\"w\": 1}}"};
    assert_int_equal(open_folder(not_str, 4, img, len, &err), FLOCK_E_CORRUPT);

    const char *not_in_shard[] = {"config.json", "{}", "s1.safetensors", NULL, "model.safetensors.index.json",
                                  "{\"weight_map\": {\"w\": \"s1.safetensors\", \"v\": \"s1.safetensors\"}}"};
    assert_int_equal(open_folder(not_in_shard, 6, img, len, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "'v'"));

    st_spec t2[2] = {{"w", FLOCK_DTYPE_F32, 1, {2}, NULL}, {"v", FLOCK_DTYPE_F16, 1, {3}, NULL}};
    size_t len2;
    uint8_t *img2 = st_build_image(t2, 2, NULL, &seed, &len2);
    const char *unlisted[] = {"config.json", "{}", "s1.safetensors", NULL, "model.safetensors.index.json",
                              "{\"weight_map\": {\"w\": \"s1.safetensors\"}}"};
    assert_int_equal(open_folder(unlisted, 6, img2, len2, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "'v'"));
    st_free_specs(t2, 2);
    free(img2);

    const char *no_wmap[] = {"config.json", "{}", "model.safetensors.index.json", "{\"metadata\": {}}"};
    assert_int_equal(open_folder(no_wmap, 4, img, len, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "weight_map"));

    assert_int_equal(flock_hf_open("/nonexistent/flock/dir", &(flock_hf_model *){NULL}, &err), FLOCK_E_NOT_FOUND);
    /* Without an error record the status is still the real one. */
    const char *trunc[] = {"config.json", "{}", "model.safetensors", "{}"};
    char dir[512];
    st_tmpdir(dir, sizeof dir);
    for (size_t i = 0; i < 4; i += 2)
        st_write_text(dir, trunc[i], trunc[i + 1]);
    flock_hf_model *m = NULL;
    assert_int_equal(flock_hf_open(dir, &m, NULL), FLOCK_E_TRUNCATED);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    flock_safetensors *st = NULL;
    assert_int_equal(flock_safetensors_open(path, &st, NULL), FLOCK_E_TRUNCATED);
    assert_null(m);
    assert_null(st);
    st_rmtree(dir);
    assert_int_equal(flock_hf_open(NULL, &(flock_hf_model *){NULL}, &err), FLOCK_E_INVALID_ARG);
    st_free_specs(t, 1);
    free(img);
}

/* ---- corruption suite -------------------------------------------------- */

/* Opens a copy of `img` in an exact-size buffer (so that any over-read is
 * caught by ASan) and checks the result is a clean error or a sane table. */
static int open_mutant(const uint8_t *img, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, img, len);
    flock_safetensors *st = NULL;
    flock_error err = {0};
    flock_status s = flock_safetensors_open_memory(copy, len, &st, &err);
    if (s == FLOCK_OK) {
        for (uint64_t i = 0; i < flock_safetensors_count(st); i++) {
            flock_st_tensor t;
            assert_int_equal(flock_safetensors_tensor(st, i, &t), FLOCK_OK);
            const uint8_t *p = t.data;
            assert_true(p >= copy && t.nbytes <= len && (size_t)(p - copy) <= len - t.nbytes);
            assert_true(t.dtype == FLOCK_DTYPE_F32 || t.dtype == FLOCK_DTYPE_F16 || t.dtype == FLOCK_DTYPE_BF16);
        }
        flock_safetensors_free(st);
    } else {
        assert_true(s > FLOCK_OK && s < FLOCK_STATUS_COUNT);
        assert_int_equal(err.status, s);
        assert_true(err.msg[0] != '\0');
        assert_null(st);
    }
    free(copy);
    return s == FLOCK_OK;
}

static void test_st_corruption(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed0006;
    st_spec t[3];
    make_specs(t);
    size_t len;
    uint8_t *img = st_build_image(t, 3, "{\"format\":\"pt\"}", &seed, &len);
    size_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (size_t)img[i] << (8 * i);

    size_t cases = 0, valid = 0;
    for (size_t cut = 0; cut < len; cut++, cases++)
        valid += (size_t)open_mutant(img, cut);
    /* No truncation is valid: the tensors must tile the whole data region. */
    assert_int_equal(valid, 0);
    size_t trunc_cases = cases;
    for (size_t byte = 0; byte < 8 + hlen; byte++) {
        for (int bit = 0; bit < 8; bit++, cases++) {
            img[byte] ^= (uint8_t)(1u << bit);
            valid += (size_t)open_mutant(img, len);
            img[byte] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(open_mutant(img, len), 1);
    printf("safetensors corruption: %zu cases (%zu truncations, %zu bit flips over the %zu-byte length+header), "
           "%zu still parse\n",
           cases, trunc_cases, cases - trunc_cases, 8 + hlen, valid);
    assert_true(valid < cases);
    st_free_specs(t, 3);
    free(img);
}

/* Every truncation and bit flip of a sharded folder's index: a clean error or
 * a consistent model, never a crash, never a tensor outside its shard. */
static void test_hf_index_corruption(void **state)
{
    (void)state;
    char dir[512];
    st_tmpdir(dir, sizeof dir);
    uint64_t seed = 0x5eed0008;
    st_spec a[2] = {{"x", FLOCK_DTYPE_F32, 1, {3}, NULL}, {"y", FLOCK_DTYPE_F16, 1, {2}, NULL}};
    st_spec b[1] = {{"z", FLOCK_DTYPE_BF16, 2, {2, 2}, NULL}};
    size_t la, lb;
    uint8_t *ia = st_build_image(a, 2, NULL, &seed, &la);
    uint8_t *ib = st_build_image(b, 1, NULL, &seed, &lb);
    st_write_file(dir, "s1.safetensors", ia, la);
    st_write_file(dir, "s2.safetensors", ib, lb);
    st_write_text(dir, "config.json", "{\"hidden_size\": 4}");
    char index[] = "{\"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"s1.safetensors\", "
                   "\"z\": \"s2.safetensors\"}}";
    size_t n = strlen(index), cases = 0, opened = 0, opened_cut = 0;
    for (size_t k = 0; k <= n + 8 * n; k++, cases++) {
        size_t cut = k <= n ? k : n;
        size_t flip = k <= n ? SIZE_MAX : k - n - 1; /* byte flip / 8, bit flip % 8 */
        if (flip != SIZE_MAX)
            index[flip / 8] ^= (char)(1u << (flip % 8));
        st_write_file(dir, "model.safetensors.index.json", index, cut);
        flock_hf_model *m = NULL;
        flock_error err = {0};
        flock_status s = flock_hf_open(dir, &m, &err);
        if (flip != SIZE_MAX)
            index[flip / 8] ^= (char)(1u << (flip % 8));
        if (s != FLOCK_OK) {
            assert_true(s > FLOCK_OK && s < FLOCK_STATUS_COUNT && err.msg[0]);
            assert_null(m);
            continue;
        }
        opened++;
        opened_cut += flip == SIZE_MAX;
        for (uint64_t i = 0; i < flock_hf_tensor_count(m); i++) {
            flock_st_tensor t;
            assert_int_equal(flock_hf_tensor(m, i, &t), FLOCK_OK);
            assert_int_equal(flock_hf_find_tensor(m, t.name), (int64_t)i);
        }
        flock_hf_free(m);
    }
    /* The intact index opens; no strict prefix of it does. */
    assert_int_equal(opened_cut, 1);
    printf("hf index corruption: %zu cases (%zu truncations, %zu bit flips), %zu open\n", cases, n + 1, 8 * n,
           opened);
    st_free_specs(a, 2);
    st_free_specs(b, 1);
    free(ia);
    free(ib);
    st_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_memory_all_dtypes),
        cmocka_unit_test(test_st_unaligned),
        cmocka_unit_test(test_hf_single_file),
        cmocka_unit_test(test_hf_sharded),
        cmocka_unit_test(test_hf_config_getters),
        cmocka_unit_test(test_st_broken),
        cmocka_unit_test(test_hf_broken),
        cmocka_unit_test(test_st_corruption),
        cmocka_unit_test(test_hf_index_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
