/* The .flock bundle: manifest, writer and reader round trips, determinism,
 * the corruption suite (truncation, bit flips, absurd values, versions) and
 * `flock inspect`. */
#include "test_util.h"

#include "flock/formats.h"

#include <json-c/json.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

static uint64_t ld(const uint8_t *p, int width)
{
    uint64_t v = 0;
    for (int i = 0; i < width; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void st(uint8_t *p, int width, uint64_t v)
{
    for (int i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- test data ------------------------------------------------------------ */

typedef struct ttensor {
    const char *name;
    flock_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[4];
    uint8_t *data;
    size_t nbytes;
} ttensor;

/* Random blocks with every f16 that is a scale in some layout (offsets 0, 2,
 * 208) made finite: the reader refuses inf/nan scales (test_bad_scales). */
static void finite_scales(flock_dtype t, uint8_t *p, size_t nbytes)
{
    const size_t bb = flock_dtype_block_bytes(t);
    uint64_t blk;
    while (flock_dtype_find_bad_scale(t, p, nbytes, &blk, NULL))
        for (size_t off = 0; off + 1 < bb && off <= 208; off += off == 2 ? 206 : 2)
            if ((p[blk * bb + off + 1] & 0x7c) == 0x7c)
                p[blk * bb + off + 1] &= (uint8_t)~0x40;
}

/* Fresh random contents: f16/bf16 from random floats (realistic byte planes). */
static void fill_tensor(ttensor *t, uint64_t *seed)
{
    size_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        n *= t->shape[d];
    t->nbytes = (size_t)flock_dtype_tensor_bytes(t->dtype, t->n_dims, t->shape);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    assert_non_null(t->data);
    if (flock_dtype_is_quantized(t->dtype)) { /* blocks are bytes to the bundle, with finite scales */
        for (size_t i = 0; i < t->nbytes; i++)
            t->data[i] = (uint8_t)flock_test_rand(seed);
        finite_scales(t->dtype, t->data, t->nbytes);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float f = flock_test_randf(seed) * 0.05f;
        switch (t->dtype) {
        case FLOCK_DTYPE_F32: memcpy(t->data + 4 * i, &f, 4); break;
        case FLOCK_DTYPE_F16: st(t->data + 2 * i, 2, flock_f32_to_f16(f)); break;
        case FLOCK_DTYPE_BF16: st(t->data + 2 * i, 2, flock_f32_to_bf16(f)); break;
        case FLOCK_DTYPE_I32: st(t->data + 4 * i, 4, flock_test_rand(seed) % 1000); break;
        default: t->data[i] = (uint8_t)flock_test_rand(seed); break;
        }
    }
}

#define N_TT 10
static ttensor *make_tensors(uint64_t seed)
{
    static const ttensor proto[N_TT] = {
        {"tok_embd", FLOCK_DTYPE_F16, 2, {300, 64}, NULL, 0},
        {"blk.0.ffn_up", FLOCK_DTYPE_BF16, 2, {96, 64}, NULL, 0},
        {"blk.0.norm", FLOCK_DTYPE_F32, 1, {64}, NULL, 0},
        {"ids", FLOCK_DTYPE_I32, 3, {2, 3, 5}, NULL, 0},
        {"bytes", FLOCK_DTYPE_U8, 4, {3, 1, 7, 2}, NULL, 0},
        {"scalar", FLOCK_DTYPE_F32, 0, {0}, NULL, 0},
        {"empty", FLOCK_DTYPE_F16, 2, {0, 8}, NULL, 0},
        {"blk.0.attn_q", FLOCK_DTYPE_Q4_1, 2, {3, 64}, NULL, 0}, /* 3 rows of 2 blocks of 20 bytes */
        {"blk.0.ffn_down_t", FLOCK_DTYPE_Q6_K, 2, {2, 512}, NULL, 0},
        {"blk.0.ffn_gate_up", FLOCK_DTYPE_Q5_0, 2, {2, 96}, NULL, 0}, /* 2 rows of 3 blocks of 22 bytes */
    };
    ttensor *t = malloc(sizeof proto);
    assert_non_null(t);
    memcpy(t, proto, sizeof proto);
    for (int i = 0; i < N_TT; i++)
        fill_tensor(&t[i], &seed);
    return t;
}

static void free_tensors(ttensor *t)
{
    for (int i = 0; i < N_TT; i++)
        free(t[i].data);
    free(t);
}

static const char tok_blob[] = "tokenizer bytes tokenizer bytes tokenizer bytes tokenizer bytes";
static const char prog_blob[] = "program IR";

static flock_manifest *make_manifest(void)
{
    flock_manifest *m;
    assert_int_equal(flock_manifest_create(&m), FLOCK_OK);
    int64_t ia[3] = {1, -2, INT64_MAX};
    double fa[2] = {0.5, -1e300};
    const char *sa[3] = {"a", "", "ünï"};
    assert_int_equal(flock_manifest_set_int_arr(m, "dims", ia, 3), FLOCK_OK);
    assert_int_equal(flock_manifest_set_str(m, "arch", "llama"), FLOCK_OK);
    assert_int_equal(flock_manifest_set_int(m, "n_layer", 30), FLOCK_OK);
    assert_int_equal(flock_manifest_set_float(m, "griffin.keep", 0.5), FLOCK_OK);
    assert_int_equal(flock_manifest_set_float_arr(m, "scales", fa, 2), FLOCK_OK);
    assert_int_equal(flock_manifest_set_str_arr(m, "names", sa, 3), FLOCK_OK);
    assert_int_equal(flock_manifest_set_int_arr(m, "none", NULL, 0), FLOCK_OK);
    assert_int_equal(flock_manifest_set_int(m, "n_layer", -7), FLOCK_OK); /* replaces in place */
    return m;
}

static void write_bundle(const char *path, const ttensor *t, const flock_bundle_writer_opts *o)
{
    flock_error err = {0};
    flock_bundle_writer *w;
    assert_int_equal(flock_bundle_writer_create(path, o, &w, &err), FLOCK_OK);
    flock_manifest *m = make_manifest();
    assert_int_equal(flock_bundle_writer_set_manifest(w, m, &err), FLOCK_OK);
    flock_manifest_free(m);
    for (int i = 0; i < N_TT; i++) {
        flock_status s = flock_bundle_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].n_dims, t[i].shape,
                                                        t[i].data, t[i].nbytes, &err);
        if (s)
            fail_msg("%s", err.msg);
    }
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_TOKENIZER, "", tok_blob, sizeof tok_blob,
                                                     true, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_PROGRAM, NULL, prog_blob,
                                                     sizeof prog_blob, false, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, "cuda:sm_90", "ptx", 3, true,
                                                     &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, "cpu:x86-64-v3", "elf", 3,
                                                     false, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
    flock_bundle_writer_free(w);
}

static void check_manifest(const flock_manifest *m)
{
    flock_error err;
    int64_t i;
    double f;
    const char *s;
    const int64_t *ia;
    const double *fa;
    const char *const *sa;
    size_t n;
    assert_int_equal(flock_manifest_count(m), 7);
    assert_string_equal(flock_manifest_key(m, 0), "dims");
    assert_string_equal(flock_manifest_key(m, 2), "n_layer");
    assert_int_equal(flock_manifest_type(m, 1), FLOCK_MVAL_STR);
    assert_int_equal(flock_manifest_get_int(m, "n_layer", &i, &err), FLOCK_OK);
    assert_int_equal(i, -7);
    assert_int_equal(flock_manifest_get_float(m, "griffin.keep", &f, &err), FLOCK_OK);
    assert_true(f == 0.5);
    assert_int_equal(flock_manifest_get_str(m, "arch", &s, &err), FLOCK_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(flock_manifest_get_int_arr(m, "dims", &ia, &n, &err), FLOCK_OK);
    assert_int_equal(n, 3);
    assert_true(ia[0] == 1 && ia[1] == -2 && ia[2] == INT64_MAX);
    assert_int_equal(flock_manifest_get_float_arr(m, "scales", &fa, &n, &err), FLOCK_OK);
    assert_true(n == 2 && fa[0] == 0.5 && fa[1] == -1e300);
    assert_int_equal(flock_manifest_get_str_arr(m, "names", &sa, &n, &err), FLOCK_OK);
    assert_int_equal(n, 3);
    assert_string_equal(sa[2], "ünï");
    assert_string_equal(sa[1], "");
    assert_int_equal(flock_manifest_get_int_arr(m, "none", &ia, &n, &err), FLOCK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(flock_manifest_get_int(m, "arch", &i, &err), FLOCK_E_TYPE);
    assert_non_null(strstr(err.msg, "arch"));
    assert_int_equal(flock_manifest_get_int(m, "missing", &i, &err), FLOCK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "missing"));
}

/* Opens `path` and checks everything against `t`; returns the handle. */
static flock_bundle *check_bundle(const char *path, const ttensor *t, int threads)
{
    flock_error err = {0};
    flock_bundle *b;
    if (flock_bundle_open(path, &b, &err))
        fail_msg("%s", err.msg);
    uint32_t major, minor;
    flock_bundle_version(b, &major, &minor);
    assert_int_equal(major, FLOCK_BUNDLE_MAJOR);
    assert_int_equal(minor, FLOCK_BUNDLE_MINOR);
    check_manifest(flock_bundle_manifest(b));
    assert_int_equal(flock_bundle_tensor_count(b), N_TT);
    for (int i = 0; i < N_TT; i++) {
        int64_t k = flock_bundle_find_tensor(b, t[i].name);
        assert_int_equal(k, i);
        flock_bundle_tensor info;
        assert_int_equal(flock_bundle_tensor_info(b, (size_t)k, &info), FLOCK_OK);
        assert_string_equal(info.name, t[i].name);
        assert_int_equal(info.dtype, t[i].dtype);
        assert_int_equal(info.n_dims, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            assert_int_equal(info.shape[d], t[i].shape[d]);
        assert_int_equal(info.nbytes, t[i].nbytes);
        uint8_t *dst = malloc(t[i].nbytes + 1);
        if (flock_bundle_tensor_read(b, (size_t)k, dst, t[i].nbytes, threads, &err))
            fail_msg("%s", err.msg);
        assert_memory_equal(dst, t[i].data, t[i].nbytes);
        free(dst);
    }
    assert_int_equal(flock_bundle_find_tensor(b, "nope"), -1);
    void *p;
    size_t n;
    int64_t s = flock_bundle_find_section(b, FLOCK_SECTION_TOKENIZER, NULL);
    assert_true(s >= 0);
    assert_int_equal(flock_bundle_read_section(b, (size_t)s, &p, &n, &err), FLOCK_OK);
    assert_int_equal(n, sizeof tok_blob);
    assert_memory_equal(p, tok_blob, n);
    free(p);
    s = flock_bundle_find_section(b, FLOCK_SECTION_KERNELS, "cpu:x86-64-v3");
    assert_true(s >= 0);
    assert_int_equal(flock_bundle_read_section(b, (size_t)s, &p, &n, &err), FLOCK_OK);
    assert_true(n == 3 && memcmp(p, "elf", 3) == 0);
    free(p);
    s = flock_bundle_find_section(b, FLOCK_SECTION_KERNELS, "cuda:sm_90");
    assert_int_equal(flock_bundle_read_section(b, (size_t)s, &p, &n, &err), FLOCK_OK);
    assert_true(n == 3 && memcmp(p, "ptx", 3) == 0);
    free(p);
    assert_int_equal(flock_bundle_find_section(b, FLOCK_SECTION_KERNELS, "cuda:sm_80"), -1);
    flock_section_info si;
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        assert_int_equal(flock_bundle_section_info(b, i, &si), FLOCK_OK);
        assert_int_equal(si.offset % 64, 0);
    }
    return b;
}

/* ---- round trips --------------------------------------------------------- */

typedef struct progress_log {
    int calls;
    uint64_t raw;
    char last[64];
} progress_log;

static void on_progress(void *user, const char *name, uint64_t raw, uint64_t stored)
{
    progress_log *p = user;
    p->calls++;
    p->raw += raw;
    snprintf(p->last, sizeof p->last, "%s", name);
    assert_true(stored > 0 || raw == 0);
}

static void test_roundtrip_compressed(void **state)
{
    (void)state;
    ttensor *t = make_tensors(1);
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.chunk_bytes = 4096;
    progress_log pl = {0};
    o.progress = on_progress;
    o.progress_user = &pl;
    write_bundle(flock_test_tmp("c.flock"), t, &o);
    uint64_t raw = 0;
    for (int i = 0; i < N_TT; i++)
        raw += t[i].nbytes;
    assert_int_equal(pl.calls, N_TT);
    assert_int_equal(pl.raw, raw);
    assert_string_equal(pl.last, t[N_TT - 1].name);
    flock_bundle *b = check_bundle(flock_test_tmp("c.flock"), t, 0);
    flock_error err;
    const void *in_place = NULL;
    assert_int_equal(flock_bundle_tensor_mapped(b, 0, &in_place, &err), FLOCK_E_UNSUPPORTED); /* compressed */
    assert_null(in_place);
    uint8_t small[4];
    assert_int_equal(flock_bundle_tensor_read(b, 0, small, sizeof small, 1, &err), FLOCK_E_INVALID_ARG);
    flock_bundle_close(b);
    flock_bundle_close(NULL);
    free_tensors(t);
}

static void test_roundtrip_uncompressed_mmap(void **state)
{
    (void)state;
    ttensor *t = make_tensors(2);
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.zstd_level = 0;
    o.chunk_bytes = 1024;
    write_bundle(flock_test_tmp("u.flock"), t, &o);
    flock_bundle *b = check_bundle(flock_test_tmp("u.flock"), t, 2);
    flock_error err;
    for (int i = 0; i < N_TT; i++) {
        const void *p = NULL, *again = NULL;
        if (flock_bundle_tensor_mapped(b, (size_t)i, &p, &err) != FLOCK_OK)
            fail_msg("%s", err.msg);
        assert_int_equal((uintptr_t)p % 64, 0);
        assert_memory_equal(p, t[i].data, t[i].nbytes);
        assert_int_equal(flock_bundle_tensor_mapped(b, (size_t)i, &again, &err), FLOCK_OK); /* verified once */
        assert_ptr_equal(again, p);
        flock_bundle_tensor info;
        flock_bundle_tensor_info(b, (size_t)i, &info);
        assert_int_equal(info.stored_bytes, info.nbytes);
    }
    flock_bundle_close(b);
    free_tensors(t);
}

/* Byte planes on and off both round-trip; planes store 16-bit data differently. */
static void test_byte_planes(void **state)
{
    (void)state;
    ttensor *t = make_tensors(3);
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.chunk_bytes = 2048;
    o.byte_planes = true;
    write_bundle(flock_test_tmp("p1.flock"), t, &o);
    o.byte_planes = false;
    write_bundle(flock_test_tmp("p0.flock"), t, &o);
    flock_bundle *b1 = check_bundle(flock_test_tmp("p1.flock"), t, 3);
    flock_bundle *b0 = check_bundle(flock_test_tmp("p0.flock"), t, 1);
    flock_bundle_tensor i1, i0;
    flock_bundle_tensor_info(b1, 0, &i1);
    flock_bundle_tensor_info(b0, 0, &i0);
    assert_int_not_equal(i1.stored_bytes, i0.stored_bytes);
    flock_bundle_tensor_info(b1, 2, &i1); /* f32: no planes */
    flock_bundle_tensor_info(b0, 2, &i0);
    assert_int_equal(i1.stored_bytes, i0.stored_bytes);
    flock_bundle_close(b1);
    flock_bundle_close(b0);
    free_tensors(t);
}

/* A 1 MiB tensor in 256 chunks read with 1..8 threads, and the same bytes
 * written with 1, 2, 3 and 8 threads. */
static void test_many_chunks_threads_determinism(void **state)
{
    (void)state;
    uint64_t seed = 4;
    ttensor big = {"big", FLOCK_DTYPE_F16, 2, {512, 1024}, NULL, 0};
    fill_tensor(&big, &seed);
    const int threads[] = {1, 2, 3, 8};
    uint8_t *first = NULL;
    size_t first_size = 0;
    for (int level = 0; level <= 3; level += 3) {
        for (size_t k = 0; k < 4; k++) {
            flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
            o.chunk_bytes = 4096;
            o.threads = threads[k];
            o.zstd_level = level;
            flock_bundle_writer *w;
            flock_error err;
            assert_int_equal(flock_bundle_writer_create(flock_test_tmp("d.flock"), &o, &w, &err), FLOCK_OK);
            assert_int_equal(flock_bundle_writer_add_tensor(w, big.name, big.dtype, 2, big.shape, big.data,
                                                            big.nbytes, &err), FLOCK_OK);
            assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
            flock_bundle_writer_free(w);
            size_t n;
            uint8_t *bytes = flock_test_slurp(flock_test_tmp("d.flock"), &n);
            assert_non_null(bytes);
            if (k == 0) {
                free(first);
                first = bytes;
                first_size = n;
            } else {
                assert_int_equal(n, first_size);
                assert_memory_equal(bytes, first, n);
                free(bytes);
            }
            flock_bundle *b;
            assert_int_equal(flock_bundle_open(flock_test_tmp("d.flock"), &b, &err), FLOCK_OK);
            uint8_t *dst = malloc(big.nbytes);
            for (int th = 1; th <= 8; th *= 2) {
                memset(dst, 0, big.nbytes);
                assert_int_equal(flock_bundle_tensor_read(b, 0, dst, big.nbytes, th, &err), FLOCK_OK);
                assert_memory_equal(dst, big.data, big.nbytes);
            }
            free(dst);
            flock_bundle_close(b);
        }
    }
    printf("determinism: %zu-byte bundles identical across 1, 2, 3, 8 writer threads\n", first_size);
    free(first);
    free(big.data);
}

/* Many keys (index growth), replacement with another type, bad arguments,
 * and a round trip of all of it through a bundle. */
static void test_manifest_many_keys(void **state)
{
    (void)state;
    flock_manifest *m;
    assert_int_equal(flock_manifest_create(&m), FLOCK_OK);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(flock_manifest_set_int(m, key, i), FLOCK_OK);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(flock_manifest_set_str(m, key, key), FLOCK_OK); /* int -> string */
    }
    assert_int_equal(flock_manifest_set_int(m, NULL, 1), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_manifest_set_int(m, "", 1), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_manifest_set_str(m, "x", NULL), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_manifest_set_int_arr(m, "x", NULL, 3), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_manifest_count(m), 1000);
    assert_null(flock_manifest_key(m, 1000));
    assert_int_equal(flock_manifest_type(m, 1000), FLOCK_MVAL_TYPE_COUNT);

    flock_bundle_writer *w;
    flock_error err;
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("m.flock"), NULL, &w, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_set_manifest(w, m, &err), FLOCK_OK);
    flock_manifest_free(m); /* the writer keeps its own copy */
    assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
    flock_bundle_writer_free(w);
    flock_bundle *b;
    assert_int_equal(flock_bundle_open(flock_test_tmp("m.flock"), &b, &err), FLOCK_OK);
    const flock_manifest *r = flock_bundle_manifest(b);
    assert_int_equal(flock_manifest_count(r), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_string_equal(flock_manifest_key(r, (size_t)i), key); /* insertion order kept */
        if (i % 2) {
            int64_t v;
            assert_int_equal(flock_manifest_get_int(r, key, &v, &err), FLOCK_OK);
            assert_int_equal(v, i);
        } else {
            const char *v;
            assert_int_equal(flock_manifest_get_str(r, key, &v, &err), FLOCK_OK);
            assert_string_equal(v, key);
        }
    }
    flock_bundle_close(b);
    flock_manifest_free(NULL);
}

static void test_writer_errors(void **state)
{
    (void)state;
    flock_error err;
    flock_bundle_writer *w;
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.chunk_bytes = 100; /* not a multiple of 64 */
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("e.flock"), &o, &w, &err), FLOCK_E_INVALID_ARG);
    o = flock_bundle_writer_default_opts();
    o.zstd_level = 99;
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("e.flock"), &o, &w, &err), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_bundle_writer_create("/nonexistent/dir/x.flock", NULL, &w, &err), FLOCK_E_IO);
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("e.flock"), NULL, &w, &err), FLOCK_OK);
    float v[6] = {1, 2, 3, 4, 5, 6};
    uint64_t shape[2] = {2, 3};
    assert_int_equal(flock_bundle_writer_add_tensor(w, "a", FLOCK_DTYPE_F32, 2, shape, v, sizeof v, &err),
                     FLOCK_OK);
    assert_int_equal(flock_bundle_writer_add_tensor(w, "a", FLOCK_DTYPE_F32, 2, shape, v, sizeof v, &err),
                     FLOCK_E_INVALID_ARG);
    assert_non_null(strstr(err.msg, "'a'"));
    assert_int_equal(flock_bundle_writer_add_tensor(w, "b", FLOCK_DTYPE_F32, 2, shape, v, 20, &err),
                     FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_bundle_writer_add_tensor(w, "c", (flock_dtype)42, 2, shape, v, 24, &err),
                     FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_bundle_writer_add_tensor(w, "", FLOCK_DTYPE_F32, 2, shape, v, 24, &err),
                     FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_MANIFEST, "", "x", 1, false, &err),
                     FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, "t", "x", 1, false, &err),
                     FLOCK_OK);
    assert_int_equal(flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, "t", "y", 1, true, &err),
                     FLOCK_E_INVALID_ARG);
    /* Freed unfinished: neither the bundle nor a temporary file is left. */
    flock_bundle_writer_free(w);
    flock_bundle_writer_free(NULL);
    struct stat sb;
    assert_int_not_equal(stat(flock_test_tmp("e.flock"), &sb), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q e.flock.tmp", flock_test_tmpdir);
    assert_int_not_equal(system(cmd), 0);
    /* An empty bundle (no tensors, no manifest) is valid. */
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("empty.flock"), NULL, &w, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_E_INVALID_ARG);
    flock_bundle_writer_free(w);
    flock_bundle *b;
    assert_int_equal(flock_bundle_open(flock_test_tmp("empty.flock"), &b, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_tensor_count(b), 0);
    assert_int_equal(flock_manifest_count(flock_bundle_manifest(b)), 0);
    flock_bundle_close(b);
}

/* ---- corruption suite ------------------------------------------------------ */

/* A small bundle (every section kind, 64-byte chunks) as bytes. */
static uint8_t *small_bundle(size_t *n, int level)
{
    uint64_t seed = 9;
    ttensor t[N_TT] = {
        {"w", FLOCK_DTYPE_F16, 2, {8, 12}, NULL, 0},   {"b", FLOCK_DTYPE_F32, 1, {20}, NULL, 0},
        {"ids", FLOCK_DTYPE_U8, 1, {5}, NULL, 0},      {"s", FLOCK_DTYPE_F32, 0, {0}, NULL, 0},
        {"e", FLOCK_DTYPE_BF16, 1, {0}, NULL, 0},      {"i", FLOCK_DTYPE_I32, 1, {3}, NULL, 0},
        {"h", FLOCK_DTYPE_BF16, 1, {40}, NULL, 0},     {"q", FLOCK_DTYPE_Q4_1, 2, {2, 32}, NULL, 0},
        {"k", FLOCK_DTYPE_Q4_K, 2, {1, 256}, NULL, 0}, {"f", FLOCK_DTYPE_Q5_0, 2, {2, 32}, NULL, 0},
    };
    for (int i = 0; i < N_TT; i++)
        fill_tensor(&t[i], &seed);
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.chunk_bytes = 64;
    o.zstd_level = level;
    write_bundle(flock_test_tmp("small.flock"), t, &o);
    for (int i = 0; i < N_TT; i++)
        free(t[i].data);
    uint8_t *b = flock_test_slurp(flock_test_tmp("small.flock"), n);
    assert_non_null(b);
    return b;
}

/* Opens an exact-size copy (so ASan sees any overread), then reads every
 * tensor and section. Returns the open status; *read_st the first read error. */
static flock_status try_open(const uint8_t *buf, size_t n, flock_status *read_st)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, buf, n);
    flock_bundle *b = NULL;
    flock_error err = {0};
    flock_status s = flock_bundle_open_memory(copy, n, &b, &err);
    if (s != FLOCK_OK)
        assert_true(strlen(err.msg) > 0);
    flock_status rs = FLOCK_OK;
    for (size_t i = 0; b && i < flock_bundle_tensor_count(b); i++) {
        flock_bundle_tensor t;
        assert_int_equal(flock_bundle_tensor_info(b, i, &t), FLOCK_OK);
        void *dst = malloc(t.nbytes + 1);
        flock_status r = flock_bundle_tensor_read(b, i, dst, t.nbytes, 2, &err);
        rs = rs ? rs : r;
        free(dst);
    }
    for (size_t i = 0; b && i < flock_bundle_section_count(b); i++) {
        void *p = NULL;
        size_t sz;
        flock_status r = flock_bundle_read_section(b, i, &p, &sz, &err);
        rs = rs ? rs : r;
        free(p);
    }
    flock_bundle_close(b);
    free(copy);
    if (read_st)
        *read_st = rs;
    return s;
}

/* Recomputes every section checksum it can, then the header checksum. */
static void fix_checksums(uint8_t *b, size_t n)
{
    uint64_t hsz = ld(b + 12, 4), cnt = ld(b + 20, 4), esz = ld(b + 24, 4);
    uint64_t toff = ld(b + 32, 8), tsz = ld(b + 40, 8);
    if (hsz < 64 || hsz > n || toff > n || tsz > n - toff)
        return;
    for (uint64_t i = 0; esz && i < cnt && i < tsz / esz; i++) {
        uint8_t *e = b + toff + i * esz;
        uint64_t off = ld(e + 8, 8), stored = ld(e + 16, 8);
        if (ld(e, 4) != FLOCK_SECTION_TENSOR_DATA && off <= n && stored <= n - off)
            st(e + 32, 8, XXH64(b + off, stored, 0));
    }
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    XXH64_update(h, b, 56);
    XXH64_update(h, b + 64, hsz - 64);
    XXH64_update(h, b + toff, tsz);
    st(b + 56, 8, XXH64_digest(h));
    XXH64_freeState(h);
}

/* The section table entry of the first section of `kind`. */
static uint8_t *entry_of(uint8_t *b, uint32_t kind)
{
    uint64_t toff = ld(b + 32, 8);
    for (uint64_t i = 0; i < ld(b + 20, 4); i++)
        if (ld(b + toff + i * 64, 4) == kind)
            return b + toff + i * 64;
    fail_msg("no section of kind %u", kind);
    return NULL;
}

static void test_truncation(void **state)
{
    (void)state;
    size_t cases = 0;
    for (int level = 0; level <= 3; level += 3) {
        size_t n;
        uint8_t *b = small_bundle(&n, level);
        flock_status rs;
        assert_int_equal(try_open(b, n, &rs), FLOCK_OK);
        assert_int_equal(rs, FLOCK_OK);
        for (size_t len = 0; len < n; len++, cases++)
            assert_int_not_equal(try_open(b, len, NULL), FLOCK_OK);
        free(b);
    }
    printf("truncation: %zu cases, every one an error\n", cases);
}

/* Every single-bit flip in the header, the section table, the manifest and
 * the tensor table is an error at open. */
static void test_bit_flips(void **state)
{
    (void)state;
    size_t n, cases = 0, by_status[FLOCK_STATUS_COUNT] = {0};
    uint8_t *b = small_bundle(&n, 3);
    struct { uint64_t off, len; } regions[4] = {{0, 64}, {ld(b + 32, 8), ld(b + 40, 8)}};
    for (int k = 0; k < 2; k++) {
        uint8_t *e = entry_of(b, k == 0 ? FLOCK_SECTION_MANIFEST : FLOCK_SECTION_TENSOR_TABLE);
        regions[2 + k].off = ld(e + 8, 8);
        regions[2 + k].len = ld(e + 16, 8);
    }
    for (int r = 0; r < 4; r++) {
        for (uint64_t i = regions[r].off; i < regions[r].off + regions[r].len; i++) {
            for (int bit = 0; bit < 8; bit++, cases++) {
                b[i] ^= (uint8_t)(1u << bit);
                flock_status s = try_open(b, n, NULL);
                b[i] ^= (uint8_t)(1u << bit);
                if (s == FLOCK_OK)
                    fail_msg("flip of bit %d at offset %llu went unnoticed", bit, (unsigned long long)i);
                by_status[s]++;
            }
        }
    }
    printf("bit flips: %zu cases, every one an error (", cases);
    for (int s = 1; s < FLOCK_STATUS_COUNT; s++)
        if (by_status[s])
            printf("%s %zu; ", flock_status_str((flock_status)s), by_status[s]);
    printf(")\n");
    free(b);
}

/* A flipped byte inside a tensor's data: open succeeds (data is verified when
 * read), reading that tensor is FLOCK_E_CHECKSUM naming it, others still read. */
static void test_tensor_data_flip(void **state)
{
    (void)state;
    for (int level = 0; level <= 3; level += 3) {
        size_t n;
        uint8_t *b = small_bundle(&n, level);
        b[64 + 5] ^= 0x10; /* tensor "w" starts the tensor data section at offset 64 */
        flock_bundle *h;
        flock_error err;
        assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_OK);
        uint8_t dst[256];
        assert_int_equal(flock_bundle_tensor_read(h, 0, dst, sizeof dst, 1, &err), FLOCK_E_CHECKSUM);
        assert_non_null(strstr(err.msg, "'w'"));
        assert_int_equal(flock_bundle_tensor_read(h, 1, dst, sizeof dst, 1, &err), FLOCK_OK);
        if (level == 0) {
            const void *in_place = NULL;
            assert_int_equal(flock_bundle_tensor_mapped(h, 0, &in_place, &err), FLOCK_E_CHECKSUM);
            assert_null(in_place);
            assert_int_equal(flock_bundle_tensor_mapped(h, 1, &in_place, &err), FLOCK_OK);
            assert_non_null(in_place);
        }
        void *p = NULL;
        size_t sz;
        int64_t d = flock_bundle_find_section(h, FLOCK_SECTION_TENSOR_DATA, NULL);
        assert_int_equal(flock_bundle_read_section(h, (size_t)d, &p, &sz, &err), FLOCK_E_CHECKSUM);
        flock_bundle_close(h);
        free(b);
    }
}

enum { AT_HEADER = 0, AT_ENTRY = 1, AT_SECTION = 2 };
typedef struct mod {
    const char *what;
    int at;          /* header, the entry of `kind`, or inside the section of `kind` */
    uint32_t kind;
    uint32_t off;
    int width;
    uint64_t value;
    bool read_fails; /* opens, but reading fails */
} mod;

static void test_absurd_values(void **state)
{
    (void)state;
    const uint64_t big = UINT64_MAX;
    /* Tensor record 0 ("w", name_len 1) starts at 8; its fields after the name at 15. */
    static const mod mods[] = {
        {"section_count", AT_HEADER, 0, 20, 4, 0xffffffff, 0},
        {"entry_size 0", AT_HEADER, 0, 24, 4, 0, 0},
        {"entry_size huge", AT_HEADER, 0, 24, 4, 0xffffffff, 0},
        {"header_size huge", AT_HEADER, 0, 12, 4, 0xffffffff, 0},
        {"header_size small", AT_HEADER, 0, 12, 4, 8, 0},
        {"table_offset huge", AT_HEADER, 0, 32, 8, 0xfffffffffffffff8ULL, 0},
        {"table_offset 0", AT_HEADER, 0, 32, 8, 0, 0},
        {"table_size huge", AT_HEADER, 0, 40, 8, UINT64_MAX, 0},
        {"file_size", AT_HEADER, 0, 48, 8, 1, 0},
        {"must-understand flag", AT_HEADER, 0, 16, 4, 1, 0},
        {"section offset huge", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 8, 8, UINT64_MAX - 63, 0},
        {"section offset in header", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 8, 8, 0, 0},
        {"stored_size huge", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 16, 8, UINT64_MAX, 0},
        {"raw_size huge", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 24, 8, UINT64_MAX, 0},
        {"raw_size wrong", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 24, 8, 7, 1},
        {"alignment 3", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 40, 4, 3, 0},
        {"alignment 0", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 40, 4, 0, 0},
        {"alignment 2^31", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 40, 4, 0x80000000u, 0},
        {"name_offset huge", AT_ENTRY, FLOCK_SECTION_KERNELS, 48, 4, 0xffffffff, 0},
        {"name_len huge", AT_ENTRY, FLOCK_SECTION_KERNELS, 52, 4, 0xffffffff, 0},
        {"unknown compression", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 4, 4, 7, 1},
        {"manifest compression unknown", AT_ENTRY, FLOCK_SECTION_MANIFEST, 4, 4, 7, 0},
        {"manifest claims zstd", AT_ENTRY, FLOCK_SECTION_MANIFEST, 4, 4, 1, 0},
        {"no manifest", AT_ENTRY, FLOCK_SECTION_MANIFEST, 0, 4, 99, 0},
        {"two manifests", AT_ENTRY, FLOCK_SECTION_TOKENIZER, 0, 4, FLOCK_SECTION_MANIFEST, 0},
        {"no tensor table", AT_ENTRY, FLOCK_SECTION_TENSOR_TABLE, 0, 4, 99, 0},
        {"tensor data shrunk", AT_ENTRY, FLOCK_SECTION_TENSOR_DATA, 16, 8, 0, 0},
        {"tensor data compressed", AT_ENTRY, FLOCK_SECTION_TENSOR_DATA, 4, 4, 1, 0},
        {"tensor count", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 0, 4, 0xffffffff, 0},
        {"tensor table header_size", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 4, 4, 0xffffffff, 0},
        {"record_size huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 8, 4, 0xffffffff, 0},
        {"record_size 0", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 8, 4, 0, 0},
        {"name_len huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 12, 2, 0xffff, 0},
        {"name_len 0", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 12, 2, 0, 0},
        {"dtype", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 15, 1, 200, 0},
        {"n_dims", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 16, 1, 200, 0},
        {"compression", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 17, 1, 9, 0},
        {"layout", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 18, 1, 9, 0},
        {"chunk_bytes 0", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 19, 4, 0, 0},
        {"chunk_bytes odd", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 19, 4, 3, 0},
        {"chunk_bytes huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 19, 4, 0xfffffffe, 0},
        {"shape huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 23, 8, UINT64_MAX, 0},
        {"unused dim", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 47, 8, 5, 0},
        {"nbytes huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 55, 8, UINT64_MAX, 0},
        {"data_offset huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 63, 8, UINT64_MAX, 0},
        {"data_offset unaligned", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 63, 8, 8, 0},
        {"stored_bytes huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 71, 8, UINT64_MAX, 0},
        {"chunk_count huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 79, 4, 0xffffffff, 0},
        {"chunk size huge", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 83, 8, UINT64_MAX, 0},
        {"chunk size 0", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 83, 8, 0, 0},
        {"chunk checksum", AT_SECTION, FLOCK_SECTION_TENSOR_TABLE, 91, 8, 12345, 1},
        {"manifest version", AT_SECTION, FLOCK_SECTION_MANIFEST, 0, 4, 2, 0},
        {"manifest count", AT_SECTION, FLOCK_SECTION_MANIFEST, 4, 4, 0xffffffff, 0},
        {"manifest key_len", AT_SECTION, FLOCK_SECTION_MANIFEST, 8, 2, 0xffff, 0},
        {"manifest value type", AT_SECTION, FLOCK_SECTION_MANIFEST, 14, 1, 77, 0},
        {"manifest array count", AT_SECTION, FLOCK_SECTION_MANIFEST, 15, 8, UINT64_MAX, 0},
        {"manifest key NUL", AT_SECTION, FLOCK_SECTION_MANIFEST, 11, 1, 0, 0},
    };
    (void)big;
    size_t n, cases = 0;
    uint8_t *orig = small_bundle(&n, 3);
    uint8_t *b = malloc(n);
    memcpy(b, orig, n);
    fix_checksums(b, n);
    assert_memory_equal(b, orig, n); /* the fixer reproduces the writer's checksums */
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++, cases++) {
        const mod *m = &mods[i];
        memcpy(b, orig, n);
        uint8_t *p = b + m->off;
        if (m->at == AT_ENTRY)
            p = entry_of(b, m->kind) + m->off;
        else if (m->at == AT_SECTION)
            p = b + ld(entry_of(b, m->kind) + 8, 8) + m->off;
        st(p, m->width, m->value);
        fix_checksums(b, n);
        flock_status rs = FLOCK_OK, s = try_open(b, n, &rs);
        if (getenv("FLOCK_TEST_VERBOSE"))
            printf("  %-28s open: %s, read: %s\n", m->what, flock_status_str(s), flock_status_str(rs));
        /* The checksums were fixed: each case must be caught by the check it aims at. */
        assert_int_not_equal(s, FLOCK_E_CHECKSUM);
        if (m->read_fails) {
            if (s != FLOCK_OK || rs == FLOCK_OK)
                fail_msg("%s: open %s, read %s", m->what, flock_status_str(s), flock_status_str(rs));
        } else if (s == FLOCK_OK) {
            fail_msg("%s: opened", m->what);
        }
    }
    printf("absurd values: %zu cases, every one an error\n", cases);
    free(b);
    free(orig);
}

/* Rewrites a bundle as a newer minor version would: a 128-byte header and
 * 96-byte section entries, with unknown bytes in the new fields. */
static uint8_t *grow_layout(const uint8_t *b, size_t n, size_t *out_n)
{
    uint64_t cnt = ld(b + 20, 4), toff = ld(b + 32, 8), tsz = ld(b + 40, 8);
    uint64_t names = tsz - cnt * 64;
    size_t nn = (size_t)(toff + 64 + cnt * 96 + names);
    uint8_t *o = calloc(1, nn);
    memcpy(o, b, 64);
    memset(o + 64, 0xAB, 64);                          /* new header fields */
    memcpy(o + 128, b + 64, (size_t)(toff - 64));      /* sections shift by 64 */
    uint8_t *t = o + toff + 64;
    for (uint64_t i = 0; i < cnt; i++) {
        memcpy(t + i * 96, b + toff + i * 64, 64);
        memset(t + i * 96 + 64, 0xCD, 32);             /* new entry fields */
        st(t + i * 96 + 8, 8, ld(b + toff + i * 64 + 8, 8) + 64);
    }
    memcpy(t + cnt * 96, b + toff + cnt * 64, (size_t)names);
    st(o + 12, 4, 128);
    st(o + 24, 4, 96);
    st(o + 32, 8, toff + 64);
    st(o + 40, 8, cnt * 96 + names);
    st(o + 48, 8, nn);
    st(o + 10, 2, FLOCK_BUNDLE_MINOR + 3);
    fix_checksums(o, nn);
    (void)n;
    *out_n = nn;
    return o;
}

static void test_versions_and_compat(void **state)
{
    (void)state;
    size_t n;
    uint8_t *orig = small_bundle(&n, 3);
    uint8_t *b = malloc(n);
    flock_bundle *h;
    flock_error err;
    flock_status rs;

    memcpy(b, orig, n);
    b[1] = 'X';
    assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "magic"));

    memcpy(b, orig, n);
    st(b + 8, 2, FLOCK_BUNDLE_MAJOR + 1);
    fix_checksums(b, n);
    assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_E_VERSION);
    assert_non_null(strstr(err.msg, "newer"));
    printf("newer major: %s\n", err.msg);
    st(b + 8, 2, 0);
    fix_checksums(b, n);
    assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_E_VERSION);

    /* Quantized tensors came in 1.1: a 1.0 bundle that has one is refused, naming it. */
    memcpy(b, orig, n);
    st(b + 10, 2, 0);
    fix_checksums(b, n);
    assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "q4_1 storage in a version 1.0 bundle"));
    /* q5_0 came in 1.2 */
    memcpy(b, orig, n);
    st(b + 10, 2, 1);
    fix_checksums(b, n);
    assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "q5_0 storage in a version 1.1 bundle (it came in 1.2)"));

    /* Newer minor, informational flags and unknown section kinds are accepted. */
    memcpy(b, orig, n);
    st(b + 10, 2, FLOCK_BUNDLE_MINOR + 5);
    st(b + 16, 4, 0x10000);
    st(entry_of(b, FLOCK_SECTION_KERNELS), 4, 99);
    fix_checksums(b, n);
    assert_int_equal(try_open(b, n, &rs), FLOCK_OK);
    assert_int_equal(rs, FLOCK_OK);
    assert_int_equal(flock_bundle_open_memory(b, n, &h, &err), FLOCK_OK);
    assert_true(flock_bundle_find_section(h, (flock_section_kind)99, NULL) >= 0);
    flock_bundle_close(h);

    /* A larger header and larger entries (fields added by a later minor version). */
    size_t gn;
    uint8_t *g = grow_layout(orig, n, &gn);
    assert_int_equal(try_open(g, gn, &rs), FLOCK_OK);
    assert_int_equal(rs, FLOCK_OK);
    assert_int_equal(flock_bundle_open_memory(g, gn, &h, &err), FLOCK_OK);
    uint32_t major, minor;
    flock_bundle_version(h, &major, &minor);
    assert_int_equal(minor, FLOCK_BUNDLE_MINOR + 3);
    assert_int_equal(flock_bundle_tensor_count(h), N_TT);
    flock_bundle_close(h);
    free(g);
    free(b);
    free(orig);
}

/* A quantized tensor must be rows of whole blocks, with the bytes its blocks need. */
static void test_writer_quantized_errors(void **state)
{
    (void)state;
    flock_error err = {0};
    flock_bundle_writer *w;
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("q.flock"), &o, &w, &err), FLOCK_OK);
    uint8_t buf[1024] = {0};
    uint64_t half_block[2] = {2, 16}, ok[2] = {2, 32};
    assert_int_equal(flock_bundle_writer_add_tensor(w, "a", FLOCK_DTYPE_Q8_0, 2, half_block, buf, 34, &err),
                     FLOCK_E_INVALID_ARG);
    assert_non_null(strstr(err.msg, "not whole blocks of 32"));
    assert_int_equal(flock_bundle_writer_add_tensor(w, "b", FLOCK_DTYPE_Q8_0, 2, ok, buf, 2 * 34 - 1, &err),
                     FLOCK_E_INVALID_ARG);
    assert_non_null(strstr(err.msg, "need 68"));
    assert_int_equal(flock_bundle_writer_add_tensor(w, "c", FLOCK_DTYPE_Q8_0, 2, ok, buf, 2 * 34, &err), FLOCK_OK);
    flock_bundle_writer_free(w);
}

/* A block scale that is inf or nan (written by a writer that checks
 * nothing, with valid checksums): the reader names the tensor and block,
 * compressed (read) and stored (mapped). */
static void test_bad_scales(void **state)
{
    (void)state;
    static const struct {
        flock_dtype t;
        size_t off; /* a scale's offset in the block */
        uint16_t h;
    } cases[] = {
        {FLOCK_DTYPE_Q8_0, 0, 0x7e00}, {FLOCK_DTYPE_Q4_0, 0, 0x7c00}, {FLOCK_DTYPE_Q4_1, 2, 0xfc00},
        {FLOCK_DTYPE_Q4_K, 2, 0x7e01}, {FLOCK_DTYPE_Q6_K, 208, 0x7c00}, {FLOCK_DTYPE_Q5_0, 0, 0xfc00},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int level = 0; level <= 3; level += 3) {
            const flock_dtype t = cases[c].t;
            const size_t blk = flock_dtype_block(t), bb = flock_dtype_block_bytes(t);
            uint64_t shape[2] = {3, 2 * blk}; /* 3 rows of 2 blocks */
            uint64_t seed = 7 + c;
            size_t n = 6 * bb;
            uint8_t *data = malloc(n);
            assert_non_null(data);
            for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t)flock_test_rand(&seed);
            finite_scales(t, data, n);
            assert_false(flock_dtype_find_bad_scale(t, data, n, NULL, NULL));
            data[3 * bb + cases[c].off] = (uint8_t)cases[c].h; /* block 3 = row 1 */
            data[3 * bb + cases[c].off + 1] = (uint8_t)(cases[c].h >> 8);
            uint64_t got = 0;
            assert_true(flock_dtype_find_bad_scale(t, data, n, &got, NULL));
            assert_int_equal(got, 3);
            const char *path = flock_test_tmp("badscale.flock");
            flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
            o.zstd_level = level;
            flock_bundle_writer *w = NULL;
            flock_error err = {0};
            assert_int_equal(flock_bundle_writer_create(path, &o, &w, &err), FLOCK_OK);
            assert_int_equal(flock_bundle_writer_add_tensor(w, "blk.1.attn_q", t, 2, shape, data, n, &err), FLOCK_OK);
            assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
            flock_bundle_writer_free(w);
            flock_bundle *b = NULL;
            assert_int_equal(flock_bundle_open(path, &b, &err), FLOCK_OK);
            flock_status st;
            if (level == 0) {
                const void *p = NULL;
                st = flock_bundle_tensor_mapped(b, 0, &p, &err);
            } else {
                st = flock_bundle_tensor_read(b, 0, data, n, 1, &err);
            }
            assert_int_equal(st, FLOCK_E_CORRUPT);
            if (!strstr(err.msg, "tensor 'blk.1.attn_q'") || !strstr(err.msg, "block 3 (row 1) has a non-finite scale"))
                fail_msg("%s level %d: %s", flock_dtype_name(t), level, err.msg);
            flock_bundle_close(b);
            free(data);
        }
}

/* ---- flock inspect ------------------------------------------------------- */

static int run_capture(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int status = pclose(p);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_inspect_cli(void **state)
{
    (void)state;
    const char *bdir = getenv("FLOCK_BUILD_DIR");
    if (!bdir) {
        printf("SKIPPED: FLOCK_BUILD_DIR is not set (ctest sets it)\n");
        skip();
    }
    ttensor *t = make_tensors(5);
    write_bundle(flock_test_tmp("i.flock"), t, NULL);
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' inspect '%s'", bdir, flock_test_tmp("i.flock"));
    assert_int_equal(run_capture(cmd, &out), 0);
    for (int i = 0; i < N_TT; i++)
        assert_non_null(strstr(out, t[i].name));
    assert_non_null(strstr(out, "griffin.keep"));
    assert_non_null(strstr(out, "cuda:sm_90"));
    /* Its payload ("ptx") is no kernel blob: reported in place, not fatal. */
    assert_non_null(strstr(out, "kernels cuda:sm_90: unreadable: kernel blob: 3 bytes"));
    free(out);

    snprintf(cmd, sizeof cmd, "'%s/tools/flock' inspect --json '%s'", bdir, flock_test_tmp("i.flock"));
    assert_int_equal(run_capture(cmd, &out), 0);
    json_object *j = json_tokener_parse(out);
    if (!j)
        fail_msg("inspect --json is not JSON:\n%s", out);
    json_object *tensors, *manifest, *v;
    assert_true(json_object_object_get_ex(j, "tensors", &tensors));
    assert_int_equal(json_object_array_length(tensors), N_TT);
    for (int i = 0; i < N_TT; i++) {
        json_object *ti = json_object_array_get_idx(tensors, (size_t)i);
        assert_true(json_object_object_get_ex(ti, "name", &v));
        assert_string_equal(json_object_get_string(v), t[i].name);
        assert_true(json_object_object_get_ex(ti, "nbytes", &v));
        assert_int_equal(json_object_get_int64(v), (int64_t)t[i].nbytes);
    }
    assert_true(json_object_object_get_ex(j, "manifest", &manifest));
    assert_true(json_object_object_get_ex(manifest, "names", &v));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 2)), "ünï");
    assert_true(json_object_object_get_ex(j, "cuda_kernels", &v));
    assert_int_equal(json_object_array_length(v), 1);
    assert_true(json_object_object_get_ex(json_object_array_get_idx(v, 0), "error", &v));
    json_object_put(j);
    free(out);

    /* Names and strings that need escaping still give valid JSON. */
    flock_bundle_writer *w;
    flock_manifest *m;
    flock_error err;
    assert_int_equal(flock_manifest_create(&m), FLOCK_OK);
    assert_int_equal(flock_manifest_set_str(m, "q\"uote\\", "tab\there\nnew \x01 \xff bad utf8"), FLOCK_OK);
    assert_int_equal(flock_manifest_set_float(m, "inf", 1.0 / 0.0), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_create(flock_test_tmp("esc.flock"), NULL, &w, &err), FLOCK_OK);
    assert_int_equal(flock_bundle_writer_set_manifest(w, m, &err), FLOCK_OK);
    uint64_t one = 1;
    assert_int_equal(flock_bundle_writer_add_tensor(w, "a\"b\nc", FLOCK_DTYPE_U8, 1, &one, "x", 1, &err),
                     FLOCK_OK);
    assert_int_equal(flock_bundle_writer_finish(w, &err), FLOCK_OK);
    flock_bundle_writer_free(w);
    flock_manifest_free(m);
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' inspect --json '%s'", bdir, flock_test_tmp("esc.flock"));
    assert_int_equal(run_capture(cmd, &out), 0);
    j = json_tokener_parse(out);
    if (!j)
        fail_msg("inspect --json is not JSON:\n%s", out);
    assert_true(json_object_object_get_ex(j, "tensors", &tensors));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(tensors, 0), "name", &v));
    assert_string_equal(json_object_get_string(v), "a\"b\nc");
    json_object_put(j);
    free(out);

    snprintf(cmd, sizeof cmd, "'%s/tools/flock' --help", bdir);
    assert_int_equal(run_capture(cmd, &out), 0);
    assert_non_null(strstr(out, "inspect"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' help inspect", bdir);
    assert_int_equal(run_capture(cmd, &out), 0);
    assert_non_null(strstr(out, "--json"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' --version", bdir);
    assert_int_equal(run_capture(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' frobnicate 2>&1", bdir);
    assert_int_equal(run_capture(cmd, &out), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' inspect '%s/none.flock' 2>&1", bdir, flock_test_tmpdir);
    assert_int_equal(run_capture(cmd, &out), 1);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tools/flock' inspect --bogus 2>&1", bdir);
    assert_int_equal(run_capture(cmd, &out), 2);
    free(out);
    free_tensors(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_compressed),
        cmocka_unit_test(test_roundtrip_uncompressed_mmap),
        cmocka_unit_test(test_byte_planes),
        cmocka_unit_test(test_many_chunks_threads_determinism),
        cmocka_unit_test(test_manifest_many_keys),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_tensor_data_flip),
        cmocka_unit_test(test_absurd_values),
        cmocka_unit_test(test_versions_and_compat),
        cmocka_unit_test(test_writer_quantized_errors),
        cmocka_unit_test(test_bad_scales),
        cmocka_unit_test(test_inspect_cli),
    };
    return cmocka_run_group_tests(tests, flock_test_tmpdir_make, flock_test_tmpdir_remove);
}
