/* GGUF parsing, getters, dequantization against a scalar reference, a
 * corruption suite and the real stories260K file. */
#include "test_util.h"

#include "flock/formats.h"
#include "gguf_writer.h"

#include <unistd.h>

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };

/* ---- scalar reference dequantization (one element at a time) --------------- */

static double half_at(const uint8_t *p)
{
    return flock_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* 6-bit scale (want_min = 0) or min (1) of sub-block s of a Q4_K/Q5_K block. */
static int k4_scale(const uint8_t *sc, int s, int want_min)
{
    if (s < 4)
        return sc[s + 4 * want_min] & 63;
    int low4 = want_min ? sc[s + 4] >> 4 : sc[s + 4] & 15;
    int high2 = (want_min ? sc[s] : sc[s - 4]) >> 6;
    return low4 | (high2 << 4);
}

/* Element i of the block at `b`, straight from the format definition. */
static double ref_elem(uint32_t type, const uint8_t *b, int i)
{
    int nib32 = i < 16 ? 0 : 4; /* 32-element blocks: low nibbles then high nibbles */
    switch (type) {
    case FLOCK_GGML_Q8_0:
        return half_at(b) * (int8_t)b[2 + i];
    case FLOCK_GGML_Q4_0:
        return half_at(b) * (((b[2 + i % 16] >> nib32) & 15) - 8);
    case FLOCK_GGML_Q4_1:
        return half_at(b) * ((b[4 + i % 16] >> nib32) & 15) + half_at(b + 2);
    case FLOCK_GGML_Q5_0: {
        uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
        int q = ((b[6 + i % 16] >> nib32) & 15) | (int)(((qh >> i) & 1) << 4);
        return half_at(b) * (q - 16);
    }
    case FLOCK_GGML_Q5_1: {
        uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        int q = ((b[8 + i % 16] >> nib32) & 15) | (int)(((qh >> i) & 1) << 4);
        return half_at(b) * q + half_at(b + 2);
    }
    case FLOCK_GGML_Q4_K:
    case FLOCK_GGML_Q5_K: {
        int s = i / 32, l = i % 32;
        const uint8_t *qs = b + (type == FLOCK_GGML_Q4_K ? 16 : 48);
        int q = (qs[(s / 2) * 32 + l] >> (4 * (s % 2))) & 15;
        if (type == FLOCK_GGML_Q5_K)
            q |= ((b[16 + l] >> s) & 1) << 4;
        return half_at(b) * k4_scale(b + 4, s, 0) * q - half_at(b + 2) * k4_scale(b + 4, s, 1);
    }
    case FLOCK_GGML_Q6_K: {
        int h = i / 128, k = (i % 128) / 32, l = i % 32;
        int lo = (b[h * 64 + (k & 1) * 32 + l] >> (k >= 2 ? 4 : 0)) & 15;
        int hi = (b[128 + h * 32 + l] >> (2 * k)) & 3;
        return half_at(b + 208) * (int8_t)b[192 + i / 16] * ((lo | hi << 4) - 32);
    }
    default:
        return NAN;
    }
}

/* Random block bytes with finite, moderate scale fields (f16 d / m / dmin). */
static void random_blocks(uint32_t type, uint8_t *p, size_t nblocks, uint64_t *rng)
{
    uint32_t bb = flock_ggml_block_bytes(type);
    for (size_t i = 0; i < nblocks * bb; i++)
        p[i] = (uint8_t)flock_test_rand(rng);
    for (size_t k = 0; k < nblocks; k++) {
        uint8_t *b = p + k * bb;
        int offs[2] = {0, -1};
        if (type == FLOCK_GGML_Q4_1 || type == FLOCK_GGML_Q5_1 || type == FLOCK_GGML_Q4_K ||
            type == FLOCK_GGML_Q5_K)
            offs[1] = 2;
        if (type == FLOCK_GGML_Q6_K)
            offs[0] = 208;
        for (int j = 0; j < 2; j++) {
            if (offs[j] < 0)
                continue;
            uint16_t h = flock_f32_to_f16(flock_test_randf(rng) * 0.05f + 0.001f);
            b[offs[j]] = (uint8_t)h;
            b[offs[j] + 1] = (uint8_t)(h >> 8);
        }
    }
}

static const uint32_t quant_types[] = {FLOCK_GGML_Q8_0, FLOCK_GGML_Q4_0, FLOCK_GGML_Q4_1,
                                       FLOCK_GGML_Q5_0, FLOCK_GGML_Q5_1, FLOCK_GGML_Q4_K,
                                       FLOCK_GGML_Q5_K, FLOCK_GGML_Q6_K};

static void test_dequant_quant_types(void **state)
{
    (void)state;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (size_t t = 0; t < sizeof quant_types / sizeof quant_types[0]; t++) {
        uint32_t type = quant_types[t];
        uint32_t be = flock_ggml_block_elems(type), bb = flock_ggml_block_bytes(type);
        size_t nb = 37;
        uint8_t *src = malloc(nb * bb);
        float *out = malloc(nb * be * sizeof(float)), *ref = malloc(nb * be * sizeof(float));
        assert_true(src && out && ref);
        random_blocks(type, src, nb, &rng);
        for (size_t k = 0; k < nb; k++)
            for (uint32_t i = 0; i < be; i++)
                ref[k * be + i] = (float)ref_elem(type, src + k * bb, (int)i);
        flock_error e = {0};
        assert_int_equal(flock_dequantize(type, src, nb * bb, out, nb * be, &e), FLOCK_OK);
        double err = flock_test_nrm_err(out, ref, nb * be);
        printf("  dequant %-5s: %zu blocks, normalized error %.3g\n", flock_ggml_type_name(type), nb, err);
        assert_true(err < 1e-6);
        /* Error paths: too few bytes, a count that is not whole blocks. */
        assert_int_equal(flock_dequantize(type, src, nb * bb - 1, out, nb * be, &e), FLOCK_E_TRUNCATED);
        if (be > 1)
            assert_int_equal(flock_dequantize(type, src, nb * bb, out, be + 1, &e), FLOCK_E_INVALID_ARG);
        free(src);
        free(out);
        free(ref);
    }
}

static void test_dequant_float_types(void **state)
{
    (void)state;
    uint64_t rng = 12345;
    enum { N = 1000 };
    float x[N], out[N], ref[N];
    uint16_t h[N], bf[N];
    for (int i = 0; i < N; i++) {
        x[i] = flock_test_randf(&rng) * 100.0f;
        h[i] = flock_f32_to_f16(x[i]);
        bf[i] = flock_f32_to_bf16(x[i]);
    }
    assert_int_equal(flock_dequantize(FLOCK_GGML_F32, x, sizeof x, out, N, NULL), FLOCK_OK);
    assert_memory_equal(out, x, sizeof x);
    for (int i = 0; i < N; i++)
        ref[i] = flock_f16_to_f32(h[i]);
    assert_int_equal(flock_dequantize(FLOCK_GGML_F16, h, sizeof h, out, N, NULL), FLOCK_OK);
    assert_memory_equal(out, ref, sizeof ref);
    for (int i = 0; i < N; i++)
        ref[i] = flock_bf16_to_f32(bf[i]);
    assert_int_equal(flock_dequantize(FLOCK_GGML_BF16, bf, sizeof bf, out, N, NULL), FLOCK_OK);
    assert_memory_equal(out, ref, sizeof ref);
    assert_true(flock_test_nrm_err(out, x, N) < 1e-2); /* bf16 keeps ~3 significant digits */

    /* The kernel's branch-free f16 conversion matches the library's on every
     * f16 bit pattern (subnormals, inf and NaN included), bit for bit. */
    uint16_t *all = malloc(65536 * sizeof *all);
    float *all_out = malloc(65536 * sizeof *all_out);
    assert_true(all && all_out);
    for (uint32_t i = 0; i < 65536; i++)
        all[i] = (uint16_t)i;
    assert_int_equal(flock_dequantize(FLOCK_GGML_F16, all, 65536 * 2, all_out, 65536, NULL), FLOCK_OK);
    for (uint32_t i = 0; i < 65536; i++) {
        float r = flock_f16_to_f32(all[i]);
        assert_memory_equal(&r, &all_out[i], 4);
    }
    free(all);
    free(all_out);

    flock_error e = {0};
    assert_int_equal(flock_dequantize(FLOCK_GGML_Q2_K, h, sizeof h, out, 256, &e), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "q2_K"));
    assert_int_equal(flock_dequantize(77, h, sizeof h, out, 1, &e), FLOCK_E_UNSUPPORTED);
    assert_false(flock_ggml_can_dequantize(FLOCK_GGML_Q8_1));
    assert_string_equal(flock_ggml_type_name(5), "unknown");
    assert_int_equal(flock_ggml_block_bytes(FLOCK_GGML_Q6_K), 210);
}

/* ---- a file with every KV type --------------------------------------------- */

typedef struct sample {
    uint8_t *img;
    size_t size;
    float f32_data[8 * 3];
    uint16_t f16_data[32];
    uint8_t q8_data[2 * 34];
    uint8_t q4k_data[144];
    uint8_t q6k_data[210];
} sample;

static void build_sample(sample *s, uint32_t version, uint64_t align)
{
    gw_buf kv = {0};
    gw_kv_str(&kv, "general.architecture", "llama");
    gw_kv_scalar(&kv, "u8", T_U8, 200, 1);
    gw_kv_scalar(&kv, "i8", T_I8, (uint8_t)-100, 1);
    gw_kv_scalar(&kv, "u16", T_U16, 60000, 2);
    gw_kv_scalar(&kv, "i16", T_I16, (uint16_t)-30000, 2);
    gw_kv_scalar(&kv, "u32", T_U32, 4000000000u, 4);
    gw_kv_scalar(&kv, "i32", T_I32, (uint32_t)-2000000000, 4);
    gw_kv_scalar(&kv, "u64", T_U64, 0xfedcba9876543210ULL, 8);
    gw_kv_scalar(&kv, "i64", T_I64, (uint64_t)-5000000000LL, 8);
    gw_kv(&kv, "f32", T_F32);
    gw_f32(&kv, 1.5e-5f);
    gw_kv(&kv, "f64", T_F64);
    gw_f64(&kv, -2.25);
    gw_kv_scalar(&kv, "bool", T_BOOL, 1, 1);
    gw_kv_str(&kv, "empty", "");
    gw_kv_arr(&kv, "arr.i32", T_I32, 3);
    gw_u32(&kv, 1);
    gw_u32(&kv, (uint32_t)-2);
    gw_u32(&kv, 3);
    gw_kv_arr(&kv, "arr.f32", T_F32, 2);
    gw_f32(&kv, 0.5f);
    gw_f32(&kv, -4.0f);
    gw_kv_arr(&kv, "arr.bool", T_BOOL, 2);
    gw_u8(&kv, 0);
    gw_u8(&kv, 1);
    gw_kv_arr(&kv, "arr.str", T_STR, 3);
    gw_str(&kv, "<s>");
    gw_str(&kv, "");
    gw_str(&kv, "h\xc3\xa9llo");
    gw_kv_arr(&kv, "arr.empty", T_U64, 0);
    gw_kv_arr(&kv, "arr.nested", T_ARR, 2); /* [[1, 2], ["x"]] */
    gw_u32(&kv, T_U16);
    gw_u64(&kv, 2);
    gw_le(&kv, 1, 2);
    gw_le(&kv, 2, 2);
    gw_u32(&kv, T_STR);
    gw_u64(&kv, 1);
    gw_str(&kv, "x");
    if (align != 32)
        gw_kv_scalar(&kv, "general.alignment", T_U32, align, 4);

    uint64_t rng = 777;
    for (int i = 0; i < 24; i++)
        s->f32_data[i] = flock_test_randf(&rng);
    for (int i = 0; i < 32; i++)
        s->f16_data[i] = flock_f32_to_f16(flock_test_randf(&rng));
    random_blocks(FLOCK_GGML_Q8_0, s->q8_data, 2, &rng);
    random_blocks(FLOCK_GGML_Q4_K, s->q4k_data, 1, &rng);
    random_blocks(FLOCK_GGML_Q6_K, s->q6k_data, 1, &rng);
    gw_tensor ts[] = {
        {"w.f32", 2, {8, 3, 1, 1}, FLOCK_GGML_F32, s->f32_data, sizeof s->f32_data},
        {"w.f16", 3, {4, 4, 2, 1}, FLOCK_GGML_F16, s->f16_data, sizeof s->f16_data},
        {"w.q8_0", 2, {32, 2, 1, 1}, FLOCK_GGML_Q8_0, s->q8_data, sizeof s->q8_data},
        {"w.q4_K", 4, {256, 1, 1, 1}, FLOCK_GGML_Q4_K, s->q4k_data, sizeof s->q4k_data},
        {"w.q6_K", 1, {256, 1, 1, 1}, FLOCK_GGML_Q6_K, s->q6k_data, sizeof s->q6k_data},
    };
    s->img = gw_build(version, &kv, ts, sizeof ts / sizeof ts[0], align, &s->size);
    free(kv.p);
}

static void check_sample(const flock_gguf *g, const sample *s, uint64_t align)
{
    flock_error e = {0};
    int64_t i64;
    double f;
    bool b;
    const char *str;
    size_t len;
    assert_int_equal(flock_gguf_alignment(g), align);
    assert_int_equal(flock_gguf_kv_count(g), align != 32 ? 20 : 19);
    assert_string_equal(flock_gguf_kv_key(g, 1), "u8");
    assert_int_equal(flock_gguf_kv_type(g, 1), FLOCK_GGUF_UINT8);
    assert_null(flock_gguf_kv_key(g, 999));

    /* Integers of every width, with sign extension and range checks. */
    const struct { const char *key; int64_t v; } ints[] = {
        {"u8", 200}, {"i8", -100}, {"u16", 60000}, {"i16", -30000}, {"u32", 4000000000LL},
        {"i32", -2000000000}, {"i64", -5000000000LL}, {"bool", 1},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        assert_int_equal(flock_gguf_get_int(g, ints[k].key, &i64, &e), FLOCK_OK);
        assert_true(i64 == ints[k].v);
        if (strcmp(ints[k].key, "bool") != 0) {
            assert_int_equal(flock_gguf_get_float(g, ints[k].key, &f, &e), FLOCK_OK);
            assert_true(f == (double)ints[k].v);
        }
    }
    assert_int_equal(flock_gguf_get_int(g, "u64", &i64, &e), FLOCK_E_RANGE);
    assert_int_equal(flock_gguf_get_float(g, "u64", &f, &e), FLOCK_OK);
    assert_true(f == (double)0xfedcba9876543210ULL);
    assert_int_equal(flock_gguf_get_float(g, "f32", &f, &e), FLOCK_OK);
    assert_true(f == (double)1.5e-5f);
    assert_int_equal(flock_gguf_get_float(g, "f64", &f, &e), FLOCK_OK);
    assert_true(f == -2.25);
    assert_int_equal(flock_gguf_get_bool(g, "bool", &b, &e), FLOCK_OK);
    assert_true(b);

    /* Wrong types and absent keys. */
    assert_int_equal(flock_gguf_get_int(g, "f32", &i64, &e), FLOCK_E_TYPE);
    assert_non_null(strstr(e.msg, "f32"));
    assert_int_equal(flock_gguf_get_float(g, "bool", &f, &e), FLOCK_E_TYPE);
    assert_int_equal(flock_gguf_get_bool(g, "u8", &b, &e), FLOCK_E_TYPE);
    assert_int_equal(flock_gguf_get_str(g, "u8", &str, &len, &e), FLOCK_E_TYPE);
    assert_int_equal(flock_gguf_get_int(g, "general.architecture", &i64, &e), FLOCK_E_TYPE);
    assert_int_equal(flock_gguf_get_int(g, "arr.i32", &i64, &e), FLOCK_E_TYPE);
    assert_int_equal(flock_gguf_get_int(g, "nope", &i64, &e), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(e.msg, "nope"));
    assert_int_equal(flock_gguf_get_str(g, "nope", &str, &len, &e), FLOCK_E_NOT_FOUND);
    assert_int_equal(flock_gguf_find_key(g, "nope"), -1);

    assert_int_equal(flock_gguf_get_str(g, "general.architecture", &str, &len, &e), FLOCK_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(str, "llama", 5);
    assert_int_equal(flock_gguf_get_str(g, "empty", &str, &len, &e), FLOCK_OK);
    assert_int_equal(len, 0);

    /* Arrays. */
    flock_gguf_type et;
    uint64_t n;
    const void *data;
    assert_int_equal(flock_gguf_get_arr(g, "arr.i32", &et, &n, &data, &e), FLOCK_OK);
    assert_int_equal(et, FLOCK_GGUF_INT32);
    assert_int_equal(n, 3);
    int32_t iv[3];
    memcpy(iv, data, sizeof iv);
    assert_true(iv[0] == 1 && iv[1] == -2 && iv[2] == 3);
    assert_int_equal(flock_gguf_get_arr(g, "arr.f32", &et, &n, &data, &e), FLOCK_OK);
    float fv[2];
    memcpy(fv, data, sizeof fv);
    assert_true(et == FLOCK_GGUF_FLOAT32 && n == 2 && fv[0] == 0.5f && fv[1] == -4.0f);
    assert_int_equal(flock_gguf_get_arr(g, "arr.bool", &et, &n, &data, &e), FLOCK_OK);
    assert_true(et == FLOCK_GGUF_BOOL && n == 2 && ((const uint8_t *)data)[1] == 1);
    assert_int_equal(flock_gguf_get_arr(g, "arr.empty", &et, &n, &data, &e), FLOCK_OK);
    assert_true(et == FLOCK_GGUF_UINT64 && n == 0);
    assert_int_equal(flock_gguf_get_arr(g, "arr.nested", &et, &n, &data, &e), FLOCK_OK);
    assert_true(et == FLOCK_GGUF_ARRAY && n == 2 && data == NULL);
    assert_int_equal(flock_gguf_get_arr(g, "arr.str", &et, &n, &data, &e), FLOCK_OK);
    assert_true(et == FLOCK_GGUF_STRING && n == 3 && data == NULL);
    assert_int_equal(flock_gguf_get_arr_str(g, "arr.str", 0, &str, &len, &e), FLOCK_OK);
    assert_true(len == 3 && memcmp(str, "<s>", 3) == 0);
    assert_int_equal(flock_gguf_get_arr_str(g, "arr.str", 1, &str, &len, &e), FLOCK_OK);
    assert_int_equal(len, 0);
    assert_int_equal(flock_gguf_get_arr_str(g, "arr.str", 2, &str, &len, &e), FLOCK_OK);
    assert_true(len == 6 && memcmp(str, "h\xc3\xa9llo", 6) == 0);
    assert_int_equal(flock_gguf_get_arr_str(g, "arr.str", 3, &str, &len, &e), FLOCK_E_RANGE);
    assert_int_equal(flock_gguf_get_arr_str(g, "arr.i32", 0, &str, &len, &e), FLOCK_E_TYPE);
    assert_int_equal(flock_gguf_get_arr(g, "u8", &et, &n, &data, &e), FLOCK_E_TYPE);

    /* Tensors: infos, alignment of the data, and f32 values. */
    assert_int_equal(flock_gguf_tensor_count(g), 5);
    assert_int_equal(flock_gguf_find_tensor(g, "w.q4_K"), 3);
    assert_int_equal(flock_gguf_find_tensor(g, "w.q4"), -1);
    flock_gguf_tensor t;
    assert_int_equal(flock_gguf_tensor_info(g, 99, &t), FLOCK_E_INVALID_ARG);
    float out[256], ref[256];
    for (uint64_t k = 0; k < 5; k++) {
        assert_int_equal(flock_gguf_tensor_info(g, k, &t), FLOCK_OK);
        assert_int_equal(t.offset % align, 0);
        assert_int_equal(((const uint8_t *)t.data - s->img) % align, 0);
        uint64_t ne = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
        assert_int_equal(t.nbytes, ne / flock_ggml_block_elems(t.type) * flock_ggml_block_bytes(t.type));
        assert_int_equal(flock_gguf_tensor_to_f32(g, k, out, ne - 1, &e), FLOCK_E_RANGE);
        assert_int_equal(flock_gguf_tensor_to_f32(g, k, out, 256, &e), FLOCK_OK);
        for (uint64_t j = 0; j < ne; j++) {
            const uint8_t *d = t.data;
            uint32_t be = flock_ggml_block_elems(t.type), bb = flock_ggml_block_bytes(t.type);
            if (t.type == FLOCK_GGML_F32)
                memcpy(&ref[j], d + 4 * j, 4);
            else if (t.type == FLOCK_GGML_F16)
                ref[j] = (float)half_at(d + 2 * j);
            else
                ref[j] = (float)ref_elem(t.type, d + j / be * bb, (int)(j % be));
        }
        assert_true(flock_test_nrm_err(out, ref, ne) < 1e-6);
    }
    assert_int_equal(flock_gguf_tensor_info(g, 1, &t), FLOCK_OK);
    assert_true(t.n_dims == 3 && t.ne[0] == 4 && t.ne[1] == 4 && t.ne[2] == 2 && t.ne[3] == 1);
    assert_memory_equal(t.data, s->f16_data, sizeof s->f16_data);
    assert_string_equal(t.name, "w.f16");
}

static void test_every_kv_type(void **state)
{
    (void)state;
    const uint64_t aligns[] = {32, 64, 1, 256};
    for (uint32_t version = 2; version <= 3; version++) {
        for (size_t a = 0; a < 4; a++) {
            sample s;
            build_sample(&s, version, aligns[a]);
            flock_gguf *g = NULL;
            flock_error e = {0};
            assert_int_equal(flock_gguf_open_memory(s.img, s.size, &g, &e), FLOCK_OK);
            assert_int_equal(flock_gguf_version(g), version);
            check_sample(g, &s, aligns[a]);
            flock_gguf_free(g);
            free(s.img);
        }
    }
    flock_gguf_free(NULL);
}

static void test_open_file(void **state)
{
    (void)state;
    sample s;
    build_sample(&s, 3, 32);
    char path[] = "/tmp/flock_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s.img, s.size), (ssize_t)s.size);
    close(fd);
    flock_gguf *g = NULL;
    flock_error e = {0};
    assert_int_equal(flock_gguf_open(path, &g, &e), FLOCK_OK);
    flock_gguf_tensor t;
    assert_int_equal(flock_gguf_tensor_info(g, 0, &t), FLOCK_OK);
    assert_memory_equal(t.data, s.f32_data, sizeof s.f32_data);
    flock_gguf_free(g);
    /* A truncated file on disk: the error names the path; *out stays untouched. */
    assert_int_equal(truncate(path, (off_t)s.size - 1), 0);
    g = (flock_gguf *)&e;
    assert_int_equal(flock_gguf_open(path, &g, &e), FLOCK_E_TRUNCATED);
    assert_ptr_equal(g, (flock_gguf *)&e);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "w.q6_K"));
    unlink(path);
    assert_int_equal(flock_gguf_open(path, &g, &e), FLOCK_E_IO);
    free(s.img);
}

/* ---- corruption suite --------------------------------------------------------- */

static long corruption_cases;

/* Reads both ends of a string so the sanitizers check its bounds. */
static void touch(const char *s, size_t len)
{
    volatile char sink = s[0];
    sink = s[len - 1];
    (void)sink;
}

/* Parses a private exact-size copy (so sanitizers see any overread) and, when
 * the parse succeeds, exercises every getter and dequantizes every tensor. */
static flock_status parse_copy(const uint8_t *img, size_t size, flock_error *e)
{
    corruption_cases++;
    uint8_t *copy = malloc(size ? size : 1);
    assert_non_null(copy);
    memcpy(copy, img, size);
    flock_gguf *g = NULL;
    flock_status st = flock_gguf_open_memory(copy, size, &g, e);
    assert_true((unsigned)st < FLOCK_STATUS_COUNT);
    if (st == FLOCK_OK) {
        for (uint64_t i = 0; i < flock_gguf_kv_count(g); i++) {
            const char *key = flock_gguf_kv_key(g, i), *s;
            int64_t iv;
            double f;
            bool b;
            size_t len;
            flock_gguf_type et;
            uint64_t n;
            const void *d;
            assert_int_equal(flock_gguf_find_key(g, key), (int64_t)i);
            flock_gguf_get_int(g, key, &iv, NULL);
            flock_gguf_get_float(g, key, &f, NULL);
            flock_gguf_get_bool(g, key, &b, NULL);
            if (flock_gguf_get_str(g, key, &s, &len, NULL) == FLOCK_OK && len)
                touch(s, len);
            if (flock_gguf_get_arr(g, key, &et, &n, &d, NULL) == FLOCK_OK && et == FLOCK_GGUF_STRING)
                for (uint64_t k = 0; k < n; k++)
                    assert_int_equal(flock_gguf_get_arr_str(g, key, k, &s, &len, NULL), FLOCK_OK);
        }
        for (uint64_t i = 0; i < flock_gguf_tensor_count(g); i++) {
            flock_gguf_tensor t;
            assert_int_equal(flock_gguf_tensor_info(g, i, &t), FLOCK_OK);
            uint64_t ne = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
            float *out = malloc(ne * sizeof(float));
            assert_non_null(out);
            flock_status ds = flock_gguf_tensor_to_f32(g, i, out, ne, NULL);
            assert_true(ds == FLOCK_OK || ds == FLOCK_E_UNSUPPORTED);
            free(out);
        }
        flock_gguf_free(g);
    } else {
        assert_int_equal(e->status, st);
        assert_true(strlen(e->msg) > 0);
    }
    free(copy);
    return st;
}

static size_t header_end(const uint8_t *img, size_t size)
{
    flock_gguf *g = NULL;
    assert_int_equal(flock_gguf_open_memory(img, size, &g, NULL), FLOCK_OK);
    flock_gguf_tensor t;
    assert_int_equal(flock_gguf_tensor_info(g, 0, &t), FLOCK_OK);
    size_t end = (size_t)((const uint8_t *)t.data - img - t.offset);
    flock_gguf_free(g);
    return end;
}

static void test_truncation_and_bit_flips(void **state)
{
    (void)state;
    sample s;
    build_sample(&s, 3, 32);
    flock_error e;
    long before = corruption_cases;
    for (size_t n = 0; n < s.size; n++)
        assert_int_not_equal(parse_copy(s.img, n, &e), FLOCK_OK);
    assert_int_equal(parse_copy(s.img, s.size, &e), FLOCK_OK);
    printf("  truncation: %ld cases\n", corruption_cases - before);

    before = corruption_cases;
    long ok = 0;
    size_t end = header_end(s.img, s.size);
    for (size_t i = 0; i < end; i++) {
        for (int bit = 0; bit < 8; bit++) {
            s.img[i] ^= (uint8_t)(1u << bit);
            ok += parse_copy(s.img, s.size, &e) == FLOCK_OK;
            s.img[i] ^= (uint8_t)(1u << bit);
        }
    }
    printf("  bit flips in the first %zu bytes: %ld cases, %ld still parse\n", end,
           corruption_cases - before, ok);
    free(s.img);
}

/* Builds an image holding the KV entries in `kv` and parses it. */
static flock_status parse_kv(const gw_buf *kv, flock_error *e)
{
    size_t size;
    uint8_t *img = gw_build(3, kv, NULL, 0, 32, &size);
    flock_status st = parse_copy(img, size, e);
    free(img);
    return st;
}

static void test_absurd_values(void **state)
{
    (void)state;
    flock_error e;
    long before = corruption_cases;
    uint8_t hdr[24];
    memcpy(hdr, "GGUF", 4);
    gw_set_le4(hdr + 4, 3);
    gw_set_le8(hdr + 8, 0);
    gw_set_le8(hdr + 16, 0);
    assert_int_equal(parse_copy(hdr, 24, &e), FLOCK_OK); /* empty file: valid */

    gw_set_le8(hdr + 16, UINT64_MAX); /* n_kv */
    assert_int_equal(parse_copy(hdr, 24, &e), FLOCK_E_TRUNCATED);
    gw_set_le8(hdr + 16, 0);
    gw_set_le8(hdr + 8, 1ULL << 62); /* n_tensors */
    assert_int_equal(parse_copy(hdr, 24, &e), FLOCK_E_TRUNCATED);
    gw_set_le8(hdr + 8, 0);
    const uint32_t bad_versions[] = {0, 1, 4, 99, 0x03000000};
    for (size_t i = 0; i < 5; i++) {
        gw_set_le4(hdr + 4, bad_versions[i]);
        assert_int_equal(parse_copy(hdr, 24, &e), FLOCK_E_VERSION);
        char want[32];
        snprintf(want, sizeof want, "version %u", bad_versions[i]);
        assert_non_null(strstr(e.msg, want));
    }
    gw_set_le4(hdr + 4, 3);
    hdr[0] = 'g';
    assert_int_equal(parse_copy(hdr, 24, &e), FLOCK_E_CORRUPT);
    assert_non_null(strstr(e.msg, "magic"));

    /* KV values. */
    struct kv_case { const char *what; flock_status want; } cases[16];
    gw_buf kv[16] = {{0}};
    int n = 0;
    cases[n] = (struct kv_case){"huge key length", FLOCK_E_TRUNCATED};
    gw_u64(&kv[n], UINT64_MAX); gw_u32(&kv[n], 0); kv[n++].count = 1;
    cases[n] = (struct kv_case){"value type 13", FLOCK_E_CORRUPT};
    gw_kv_scalar(&kv[n++], "k", 13, 0, 4);
    cases[n] = (struct kv_case){"huge string", FLOCK_E_TRUNCATED};
    gw_kv(&kv[n], "k", T_STR); gw_u64(&kv[n++], 1ULL << 60);
    cases[n] = (struct kv_case){"huge array", FLOCK_E_TRUNCATED};
    gw_kv_arr(&kv[n++], "k", T_U64, UINT64_MAX / 4);
    cases[n] = (struct kv_case){"huge string array", FLOCK_E_TRUNCATED};
    gw_kv_arr(&kv[n], "k", T_STR, 1ULL << 40); gw_u64(&kv[n++], 0);
    cases[n] = (struct kv_case){"array element type 77", FLOCK_E_CORRUPT};
    gw_kv_arr(&kv[n], "k", 77, 1); gw_u64(&kv[n++], 0);
    cases[n] = (struct kv_case){"bool 2", FLOCK_E_CORRUPT};
    gw_kv_scalar(&kv[n++], "k", T_BOOL, 2, 1);
    cases[n] = (struct kv_case){"key with NUL", FLOCK_E_CORRUPT};
    gw_u64(&kv[n], 3); gw_put(&kv[n], "a\0b", 3); gw_u32(&kv[n], T_U8); gw_u8(&kv[n], 0); kv[n++].count = 1;
    cases[n] = (struct kv_case){"duplicate key", FLOCK_E_CORRUPT};
    gw_kv_scalar(&kv[n], "k", T_U8, 1, 1); gw_kv_scalar(&kv[n++], "k", T_U8, 1, 1);
    cases[n] = (struct kv_case){"alignment 48", FLOCK_E_CORRUPT};
    gw_kv_scalar(&kv[n++], "general.alignment", T_U32, 48, 4);
    cases[n] = (struct kv_case){"alignment 0", FLOCK_E_CORRUPT};
    gw_kv_scalar(&kv[n++], "general.alignment", T_U32, 0, 4);
    cases[n] = (struct kv_case){"alignment string", FLOCK_E_CORRUPT};
    gw_kv_str(&kv[n++], "general.alignment", "32");
    cases[n] = (struct kv_case){"arrays nested 100 deep", FLOCK_E_CORRUPT};
    gw_kv_arr(&kv[n], "k", T_ARR, 1);
    for (int d = 0; d < 99; d++) { gw_u32(&kv[n], T_ARR); gw_u64(&kv[n], 1); }
    gw_u32(&kv[n], T_U8); gw_u64(&kv[n++], 0);
    for (int i = 0; i < n; i++) {
        flock_status st = parse_kv(&kv[i], &e);
        if (st != cases[i].want)
            fail_msg("%s: got %s (%s), want %s", cases[i].what, flock_status_str(st), e.msg,
                     flock_status_str(cases[i].want));
        free(kv[i].p);
    }

    /* Tensor infos. */
    uint8_t data[4096] = {0};
    const struct { gw_tensor t; flock_status want; } tc[] = {
        {{"n_dims 5", 5, {1, 1, 1, 1}, 0, data, 4}, FLOCK_E_CORRUPT},
        {{"ne 0", 2, {4, 0, 1, 1}, 0, data, 0}, FLOCK_E_CORRUPT},
        {{"ne overflow", 4, {1ULL << 20, 1ULL << 20, 1ULL << 20, 1ULL << 20}, 0, data, 4}, FLOCK_E_CORRUPT},
        {{"bytes overflow", 2, {1ULL << 32, 1ULL << 30, 1, 1}, 0, data, 4}, FLOCK_E_CORRUPT},
        {{"type 99", 1, {4, 1, 1, 1}, 99, data, 16}, FLOCK_E_CORRUPT},
        {{"removed type 4", 1, {32, 1, 1, 1}, 4, data, 20}, FLOCK_E_UNSUPPORTED},
        {{"row not whole blocks", 1, {48, 1, 1, 1}, FLOCK_GGML_Q8_0, data, 68}, FLOCK_E_CORRUPT},
        {{"past the end", 1, {1024, 1, 1, 1}, 0, data, 4000}, FLOCK_E_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        size_t size;
        uint8_t *img = gw_build(3, NULL, &tc[i].t, 1, 32, &size);
        flock_status st = parse_copy(img, size, &e);
        if (st != tc[i].want)
            fail_msg("%s: got %s (%s)", tc[i].t.name, flock_status_str(st), e.msg);
        assert_non_null(strstr(e.msg, tc[i].t.name));
        free(img);
    }
    /* Data offsets: misaligned, huge, and a duplicate name. */
    gw_tensor two[2] = {{"a", 1, {8, 1, 1, 1}, 0, data, 32}, {"a", 1, {8, 1, 1, 1}, 0, data, 32}};
    size_t size;
    uint8_t *img = gw_build(3, NULL, two, 2, 32, &size);
    assert_int_equal(parse_copy(img, size, &e), FLOCK_E_CORRUPT);
    assert_non_null(strstr(e.msg, "twice"));
    size_t off_at = 24 + 8 + 1 + 4 + 8 + 4; /* first tensor's offset field */
    gw_set_le8(img + off_at, 4);
    assert_int_equal(parse_copy(img, size, &e), FLOCK_E_CORRUPT);
    assert_non_null(strstr(e.msg, "alignment"));
    gw_set_le8(img + off_at, UINT64_MAX - 31);
    assert_int_equal(parse_copy(img, size, &e), FLOCK_E_TRUNCATED);
    free(img);
    printf("  absurd values: %ld cases\n", corruption_cases - before);
}

static void test_corruption_total(void **state)
{
    (void)state;
    printf("  corruption suite: %ld cases in all\n", corruption_cases);
    assert_true(corruption_cases > 1000);
}

/* ---- the tiny trained model (tests/data) ----------------------------------------------- */

static void test_tiny_model_file(void **state)
{
    (void)state;
    char path[4096];
    flock_test_tiny_model(path, sizeof path);
    flock_gguf *g = NULL;
    flock_error e = {0};
    assert_int_equal(flock_gguf_open(path, &g, &e), FLOCK_OK);
    int64_t v;
    const char *s;
    size_t len;
    assert_int_equal(flock_gguf_get_str(g, "general.architecture", &s, &len, &e), FLOCK_OK);
    assert_true(len == 5 && memcmp(s, "llama", 5) == 0);
    assert_int_equal(flock_gguf_get_int(g, "llama.block_count", &v, &e), FLOCK_OK);
    assert_int_equal(v, 5);
    assert_int_equal(flock_gguf_get_int(g, "llama.embedding_length", &v, &e), FLOCK_OK);
    assert_int_equal(v, 64);
    assert_int_equal(flock_gguf_get_int(g, "llama.feed_forward_length", &v, &e), FLOCK_OK);
    assert_int_equal(v, 172);
    assert_int_equal(flock_gguf_tensor_count(g), 48);
    flock_gguf_type et;
    uint64_t n;
    const void *d;
    assert_int_equal(flock_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &d, &e), FLOCK_OK);
    assert_true(et == FLOCK_GGUF_STRING && n == 512);
    assert_int_equal(flock_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &len, &e), FLOCK_OK);
    assert_true(len == 5 && memcmp(s, "<unk>", 5) == 0);
    int64_t ti = flock_gguf_find_tensor(g, "token_embd.weight");
    assert_true(ti >= 0);
    flock_gguf_tensor t;
    assert_int_equal(flock_gguf_tensor_info(g, (uint64_t)ti, &t), FLOCK_OK);
    assert_true(t.type == FLOCK_GGML_F32 && t.n_dims == 2 && t.ne[0] == 64 && t.ne[1] == 512);
    float *w = malloc(64 * 512 * sizeof(float));
    assert_int_equal(flock_gguf_tensor_to_f32(g, (uint64_t)ti, w, 64 * 512, &e), FLOCK_OK);
    assert_memory_equal(w, t.data, 64 * 512 * sizeof(float));
    free(w);
    flock_gguf_free(g);
}

/* With the argument "tiny" only the real-file test runs (a separate ctest
 * entry). */
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "tiny") == 0) {
        const struct CMUnitTest data_tests[] = {cmocka_unit_test(test_tiny_model_file)};
        return cmocka_run_group_tests(data_tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_quant_types),
        cmocka_unit_test(test_dequant_float_types),
        cmocka_unit_test(test_every_kv_type),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_truncation_and_bit_flips),
        cmocka_unit_test(test_absurd_values),
        cmocka_unit_test(test_corruption_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
