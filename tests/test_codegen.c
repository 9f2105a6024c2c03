/* codegen's CUDA part without a CUDA toolkit: model checks, reading the
 * model from an IR program, the generated source (determinism, golden file
 * tests/golden/cuda_small.cu), the kernel blob (round trip and a corruption
 * suite). NVRTC and ptxas checks are in test_codegen_nvrtc.c. */
#include "test_util.h"

#include "flock/codegen.h"

#include <sys/stat.h>

/* stories260K's shape (d 64, FF 172, 8/4 heads of 8), f16, three keep ratios. */
static flock_codegen_model small_model(void)
{
    flock_codegen_model m = {
        .d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512, .rope_dim = 8,
        .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16,
        .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3, .keep = {1.0f, 0.75f, 0.5f},
    };
    return m;
}

static void check_model_err(flock_codegen_model m, flock_status want, const char *needle)
{
    flock_error e = {0};
    assert_int_equal(flock_codegen_model_check(&m, &e), want);
    if (needle && !strstr(e.msg, needle)) {
        printf("message '%s' lacks '%s'\n", e.msg, needle);
        fail();
    }
}

static void test_model_check(void **state)
{
    (void)state;
    flock_codegen_model m = small_model();
    check_model_err(m, FLOCK_OK, NULL);
    m.d_model = 60;
    check_model_err(m, FLOCK_E_UNSUPPORTED, "d_model");
    m = small_model();
    m.n_kv_head = 3;
    check_model_err(m, FLOCK_E_UNSUPPORTED, "n_kv_head");
    m = small_model();
    m.wtype = FLOCK_DTYPE_F32;
    check_model_err(m, FLOCK_E_UNSUPPORTED, "weight dtype");
    m = small_model();
    m.kv_type = FLOCK_DTYPE_BF16;
    check_model_err(m, FLOCK_E_UNSUPPORTED, "KV cache");
    m = small_model();
    m.keep[1] = 1.5f;
    check_model_err(m, FLOCK_E_INVALID_ARG, "keep[1]");
    m = small_model();
    m.n_keep = 0;
    check_model_err(m, FLOCK_E_INVALID_ARG, "n_keep");
    m = small_model();
    m.act = FLOCK_ACT_COUNT;
    check_model_err(m, FLOCK_E_INVALID_ARG, "act");
    m = small_model();
    m.rope_dim = 7;
    check_model_err(m, FLOCK_E_UNSUPPORTED, "rope_dim");
    m = small_model();
    m.d_model = 16384; /* x would not fit the kernels' static shared memory */
    check_model_err(m, FLOCK_E_UNSUPPORTED, "d_model");
    m = small_model();
    m.head_dim = 512;
    m.rope_dim = 8;
    check_model_err(m, FLOCK_E_UNSUPPORTED, "head_dim");
    m = small_model();
    m.attn_softcap = -1;
    check_model_err(m, FLOCK_E_INVALID_ARG, "softcap");
    check_model_err(m, FLOCK_E_INVALID_ARG, NULL);
    assert_int_equal(flock_codegen_model_check(NULL, NULL), FLOCK_E_INVALID_ARG);
}

/* ---- from an IR program ------------------------------------------------------ */

enum { PD = 32, PNH = 4, PNKV = 2, PHD = 8, PFF = 48, PV = 40 };

static int32_t ptensor(flock_program *p, const char *name, flock_dtype dt, uint32_t nd, uint64_t a, uint64_t b)
{
    uint64_t s[2] = {a, b};
    int32_t id = flock_program_add_tensor(p, name, dt, nd, s);
    assert_true(id >= 0);
    return id;
}

static flock_op *op1(flock_program *p, flock_op_kind k, int32_t in, const char *name, int32_t width, int32_t *out)
{
    *out = flock_program_add_value(p, name, FLOCK_DTYPE_F32, width);
    assert_true(*out > 0);
    flock_op *op = flock_program_add_op(p, k, 0);
    assert_non_null(op);
    op->n_in = 1;
    op->in[0] = in;
    op->out = *out;
    return op;
}

/* One llama block with a packed, gated GELU-tanh FF in bf16. */
static flock_program *build_program(flock_ffn_layout layout)
{
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    p->cfg = (flock_model_config){.n_layer = 1, .d_model = PD, .n_vocab = PV, .n_ctx = 64, .n_kv_slots = 1,
                                  .kv_width = PNKV * PHD, .d_ff = PFF};
    snprintf(p->cfg.arch, sizeof p->cfg.arch, "llama");
    const flock_dtype W = FLOCK_DTYPE_BF16;
    int32_t emb = ptensor(p, "token_embd", W, 2, PV, PD);
    int32_t x, h, q, k, v, qr, kr, a, o, r, h2, f, x2, hn;
    flock_op *op = op1(p, FLOCK_OP_EMBED, 0, "x", PD, &x);
    op->w[0] = emb;
    op->scale = 1.0f;
    op = op1(p, FLOCK_OP_RMSNORM, x, "h", PD, &h);
    op->w[0] = ptensor(p, "attn_norm", FLOCK_DTYPE_F32, 1, PD, 0);
    op->eps = 1e-5f;
    op->group = PD;
    op1(p, FLOCK_OP_LINEAR, h, "q", PNH * PHD, &q)->w[0] = ptensor(p, "wq", W, 2, PNH * PHD, PD);
    op1(p, FLOCK_OP_LINEAR, h, "k", PNKV * PHD, &k)->w[0] = ptensor(p, "wk", W, 2, PNKV * PHD, PD);
    op1(p, FLOCK_OP_LINEAR, h, "v", PNKV * PHD, &v)->w[0] = ptensor(p, "wv", W, 2, PNKV * PHD, PD);
    const int32_t nh[2] = {PNH, PNKV};
    const int32_t in[2] = {q, k};
    int32_t *outs[2] = {&qr, &kr};
    for (int i = 0; i < 2; i++) {
        op = op1(p, FLOCK_OP_ROPE, in[i], i ? "kr" : "qr", nh[i] * PHD, outs[i]);
        op->n_head = nh[i];
        op->head_dim = PHD;
        op->rope_dim = PHD;
        op->rope_style = FLOCK_ROPE_NEOX;
        op->rope_theta = 10000.0;
    }
    a = flock_program_add_value(p, "attn", FLOCK_DTYPE_F32, PNH * PHD);
    op = flock_program_add_op(p, FLOCK_OP_ATTENTION, 0);
    op->n_in = 3;
    op->in[0] = qr;
    op->in[1] = kr;
    op->in[2] = v;
    op->out = a;
    op->n_head = PNH;
    op->n_kv_head = PNKV;
    op->head_dim = PHD;
    op->softcap = 50.0f;
    op1(p, FLOCK_OP_LINEAR, a, "o", PD, &o)->w[0] = ptensor(p, "wo", W, 2, PD, PNH * PHD);
    r = flock_program_add_value(p, "r", FLOCK_DTYPE_F32, PD);
    op = flock_program_add_op(p, FLOCK_OP_ADD, 0);
    op->n_in = 2;
    op->in[0] = x;
    op->in[1] = o;
    op->out = r;
    op = op1(p, FLOCK_OP_RMSNORM, r, "h2", PD, &h2);
    op->w[0] = ptensor(p, "ffn_norm", FLOCK_DTYPE_F32, 1, PD, 0);
    op->eps = 1e-5f;
    op->group = PD;
    op = op1(p, FLOCK_OP_FFN, h2, "f", PD, &f);
    if (layout == FLOCK_FFN_PACKED) {
        op->w[0] = ptensor(p, "gate_up", W, 2, PFF, 2 * PD);
        op->w[2] = ptensor(p, "down_t", W, 2, PFF, PD);
    } else {
        op->w[0] = ptensor(p, "gate", W, 2, PFF, PD);
        op->w[1] = ptensor(p, "up", W, 2, PFF, PD);
        op->w[2] = ptensor(p, "down", W, 2, PD, PFF);
    }
    op->d_ff = PFF;
    op->act = FLOCK_ACT_GELU_TANH;
    op->gated = 1;
    op->ffn_layout = layout;
    x2 = flock_program_add_value(p, "x2", FLOCK_DTYPE_F32, PD);
    op = flock_program_add_op(p, FLOCK_OP_ADD, 0);
    op->n_in = 2;
    op->in[0] = r;
    op->in[1] = f;
    op->out = x2;
    op = op1(p, FLOCK_OP_RMSNORM, x2, "hn", PD, &hn);
    op->w[0] = ptensor(p, "out_norm", FLOCK_DTYPE_F32, 1, PD, 0);
    op->eps = 1e-5f;
    op->group = PD;
    int32_t logits;
    op1(p, FLOCK_OP_LM_HEAD, hn, "logits", PV, &logits)->w[0] = emb;
    return p;
}

static void test_from_program(void **state)
{
    (void)state;
    flock_program *p = build_program(FLOCK_FFN_PACKED);
    flock_error e = {0};
    if (flock_program_verify(p, &e) != FLOCK_OK) {
        printf("verify: %s\n", e.msg);
        fail();
    }
    const float keep[2] = {1.0f, 0.5f};
    flock_codegen_model m;
    memset(&m, 0x5a, sizeof m);
    assert_int_equal(flock_codegen_model_from_program(p, keep, 2, FLOCK_DTYPE_F32, &m, &e), FLOCK_OK);
    assert_int_equal(m.d_model, PD);
    assert_int_equal(m.d_ff, PFF);
    assert_int_equal(m.n_head, PNH);
    assert_int_equal(m.n_kv_head, PNKV);
    assert_int_equal(m.head_dim, PHD);
    assert_int_equal(m.vocab, PV);
    assert_int_equal(m.rope_dim, PHD);
    assert_int_equal(m.rope_style, FLOCK_ROPE_NEOX);
    assert_int_equal(m.wtype, FLOCK_DTYPE_BF16);
    assert_int_equal(m.kv_type, FLOCK_DTYPE_F32);
    assert_int_equal(m.act, FLOCK_ACT_GELU_TANH);
    assert_int_equal(m.gated, 1);
    assert_true(m.attn_softcap == 50.0f);
    assert_int_equal(m.n_keep, 2);
    assert_true(m.keep[1] == 0.5f);

    /* A second FFN op that disagrees is refused, and *out stays untouched. */
    flock_program_free(p);
    p = build_program(FLOCK_FFN_SEPARATE);
    flock_codegen_model before;
    memset(&before, 0x33, sizeof before);
    m = before;
    assert_int_equal(flock_codegen_model_from_program(p, keep, 2, FLOCK_DTYPE_F16, &m, &e), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "gather layout"));
    assert_memory_equal(&m, &before, sizeof m);
    assert_int_equal(flock_codegen_model_from_program(p, keep, 99, FLOCK_DTYPE_F16, &m, &e), FLOCK_E_INVALID_ARG);
    flock_program_free(p);
}

/* ---- source ------------------------------------------------------------------ */

static void test_source_shape(void **state)
{
    (void)state;
    flock_codegen_model m = small_model();
    m.qtypes = FLOCK_CODEGEN_QTYPES; /* every kind, the quantized ones included */
    char *src = NULL, *src2 = NULL;
    size_t len = 0, len2 = 0, nk = 0;
    flock_cuda_kernel_info *ks = NULL;
    flock_error e = {0};
    assert_int_equal(flock_codegen_cuda_source(&m, &src, &len, &ks, &nk, &e), FLOCK_OK);
    assert_int_equal(strlen(src), len);
    assert_non_null(strstr(src, "#define D_MODEL 64\n"));
    assert_non_null(strstr(src, "#define D_FF 172\n"));
    assert_non_null(strstr(src, "#define W_BF16 0\n"));
    /* Every kind except none appears, and every entry point is defined once. */
    int seen[FLOCK_CUK_KIND_COUNT] = {0};
    for (size_t i = 0; i < nk; i++) {
        seen[ks[i].kind]++;
        char def[128];
        snprintf(def, sizeof def, " %s(", ks[i].name);
        const char *at = strstr(src, def);
        assert_non_null(at);
        assert_null(strstr(at + 1, def));
        assert_true(ks[i].block[0] >= 32 && ks[i].block[0] <= 1024);
    }
    for (int k = 0; k < FLOCK_CUK_KIND_COUNT; k++)
        assert_true(seen[k] > 0);
    /* Three keep ratios: 172, 129, 86 kept neurons, one gather kernel each. */
    assert_int_equal(seen[FLOCK_CUK_FFN_GATHER], 3);
    assert_int_equal(seen[FLOCK_CUK_QFFN_GATHER], 9); /* per quantized type */
    assert_non_null(strstr(src, "flock_qffn_down_q4_1_k86("));
    const uint32_t want[3] = {172, 129, 86};
    size_t g = 0;
    for (size_t i = 0; i < nk; i++)
        if (ks[i].kind == FLOCK_CUK_FFN_GATHER) {
            assert_int_equal(ks[i].spec, want[g]);
            assert_int_equal(ks[i].grid[0], (want[g] + 7) / 8);
            g++;
        }
    /* Deterministic. */
    assert_int_equal(flock_codegen_cuda_source(&m, &src2, &len2, NULL, NULL, &e), FLOCK_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(src, src2, len);
    free(src2);
    /* Another dtype changes the source. */
    m.wtype = FLOCK_DTYPE_BF16;
    assert_int_equal(flock_codegen_cuda_source(&m, &src2, &len2, NULL, NULL, &e), FLOCK_OK);
    assert_non_null(strstr(src2, "#define W_BF16 1\n"));
    free(src2);
    free(src);
    free(ks);
    m.d_model = 3;
    src = (char *)&m; /* untouched on failure */
    assert_int_equal(flock_codegen_cuda_source(&m, &src, &len, NULL, NULL, &e), FLOCK_E_UNSUPPORTED);
    assert_ptr_equal(src, (char *)&m);
    /* Quantized types the kernels do not read, and rows that are not whole blocks. */
    m = small_model();
    m.qtypes = 1u << FLOCK_DTYPE_Q4_K;
    assert_int_equal(flock_codegen_cuda_source(&m, &src, &len, NULL, NULL, &e), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "qtypes"));
    m.qtypes = 1u << FLOCK_DTYPE_Q8_0;
    m.d_model = 72;
    assert_int_equal(flock_codegen_cuda_source(&m, &src, &len, NULL, NULL, &e), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "multiple of 32"));
}

/* The generated source for the small model is committed: a change to the
 * kernels or the generator shows up as a diff. FLOCK_UPDATE_GOLDEN=1 rewrites it. */
static void test_golden(void **state)
{
    (void)state;
    const char *root = getenv("FLOCK_SOURCE_DIR");
    if (!root) {
        skip();
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/cuda_small.cu", root);
    flock_codegen_model m = small_model();
    char *src = NULL;
    size_t len = 0;
    assert_int_equal(flock_codegen_cuda_source(&m, &src, &len, NULL, NULL, NULL), FLOCK_OK);
    const char *upd = getenv("FLOCK_UPDATE_GOLDEN");
    if (upd && *upd == '1') {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(src, 1, len, f), len);
        fclose(f);
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("missing %s (run with FLOCK_UPDATE_GOLDEN=1 to create it)\n", path);
        fail();
    }
    char *want = malloc(len + 2);
    size_t got = fread(want, 1, len + 1, f);
    fclose(f);
    if (got != len || memcmp(want, src, len) != 0) {
        printf("generated source differs from %s (%zu vs %zu bytes); if intended, rerun with "
               "FLOCK_UPDATE_GOLDEN=1\n", path, len, got);
        fail();
    }
    free(want);
    free(src);
}

/* ---- kernel blob ------------------------------------------------------------- */

static uint8_t *make_blob(size_t *size, uint32_t kind)
{
    flock_codegen_model m = small_model();
    uint8_t image[100];
    uint64_t s = 7;
    for (size_t i = 0; i < sizeof image; i++)
        image[i] = (uint8_t)flock_test_rand(&s);
    image[sizeof image - 1] = 0; /* PTX must be NUL-terminated */
    uint8_t *blob = NULL;
    assert_int_equal(flock_codegen_cuda_pack(&m, 90, kind, image, sizeof image, &blob, size, NULL), FLOCK_OK);
    return blob;
}

/* A seed for the blob fuzzer (tests/fuzz/fuzz_cuda_blob.c), when the build dir is known. */
static void write_fuzz_seed(const uint8_t *blob, size_t size)
{
    const char *bd = getenv("FLOCK_BUILD_DIR");
    if (!bd)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/seeds", bd);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/seeds/cuda_blob", bd);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/seeds/cuda_blob/small.bin", bd);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(blob, 1, size, f);
        fclose(f);
    }
}

static void test_blob_roundtrip(void **state)
{
    (void)state;
    size_t size = 0, nk = 0, len = 0;
    uint8_t *blob = make_blob(&size, FLOCK_CUDA_IMAGE_CUBIN);
    write_fuzz_seed(blob, size);
    flock_cuda_blob b;
    flock_error e = {0};
    assert_int_equal(flock_cuda_blob_parse(blob, size, &b, &e), FLOCK_OK);
    assert_int_equal(b.major, FLOCK_CUDA_BLOB_MAJOR);
    assert_int_equal(b.arch, 90);
    assert_int_equal(b.image_kind, FLOCK_CUDA_IMAGE_CUBIN);
    assert_int_equal(b.image_size, 100);
    assert_int_equal(((uintptr_t)b.image - (uintptr_t)blob) % 16, 0);
    flock_codegen_model m = small_model();
    assert_int_equal(b.model.d_model, m.d_model);
    assert_int_equal(b.model.d_ff, m.d_ff);
    assert_int_equal(b.model.n_kv_head, m.n_kv_head);
    assert_int_equal(b.model.wtype, m.wtype);
    assert_int_equal(b.model.n_keep, 3);
    char *src = NULL;
    flock_cuda_kernel_info *ks = NULL;
    assert_int_equal(flock_codegen_cuda_source(&m, &src, &len, &ks, &nk, NULL), FLOCK_OK);
    assert_int_equal(b.n_kernels, nk);
    for (size_t i = 0; i < nk; i++) {
        flock_cuda_kernel_info k;
        assert_int_equal(flock_cuda_blob_kernel(&b, i, &k, &e), FLOCK_OK);
        assert_string_equal(k.name, ks[i].name);
        assert_int_equal(k.kind, ks[i].kind);
        assert_int_equal(k.spec, ks[i].spec);
        assert_int_equal(k.spec2, ks[i].spec2);
        assert_true(k.keep == ks[i].keep);
        assert_memory_equal(k.block, ks[i].block, sizeof k.block);
        assert_memory_equal(k.grid, ks[i].grid, sizeof k.grid);
        assert_int_equal(flock_cuda_blob_find(&b, k.name), (int64_t)i);
    }
    assert_int_equal(flock_cuda_blob_find(&b, "flock_nothing"), -1);
    flock_cuda_kernel_info k;
    assert_int_equal(flock_cuda_blob_kernel(&b, nk, &k, &e), FLOCK_E_INVALID_ARG);
    free(src);
    free(ks);
    free(blob);
}

static void test_blob_corruption(void **state)
{
    (void)state;
    size_t size = 0;
    uint8_t *blob = make_blob(&size, FLOCK_CUDA_IMAGE_PTX);
    flock_cuda_blob b;
    flock_error e = {0};
    /* Every truncation fails (the image is the last thing in the blob). */
    for (size_t n = 0; n < size; n++) {
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, blob, n);
        assert_int_not_equal(flock_cuda_blob_parse(t, n, &b, &e), FLOCK_OK);
        free(t);
    }
    /* Bit flips anywhere in the header, table and strings: an error or a blob
     * whose every entry reads back in bounds (ASan checks the reads). */
    flock_cuda_blob good;
    assert_int_equal(flock_cuda_blob_parse(blob, size, &good, &e), FLOCK_OK);
    const size_t meta = (size_t)((const uint8_t *)good.image - blob);
    uint8_t *c = malloc(size);
    for (size_t i = 0; i < meta; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(c, blob, size);
            c[i] ^= (uint8_t)(1u << bit);
            if (flock_cuda_blob_parse(c, size, &b, &e) == FLOCK_OK) {
                for (size_t k = 0; k < b.n_kernels; k++) {
                    flock_cuda_kernel_info ki;
                    assert_int_equal(flock_cuda_blob_kernel(&b, k, &ki, &e), FLOCK_OK);
                    assert_true(strlen(ki.name) > 0);
                }
            }
        }
    }
    /* Future major: a version error; a newer minor is accepted. */
    memcpy(c, blob, size);
    c[4] = 2;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_VERSION);
    memcpy(c, blob, size);
    c[6] = 7;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_OK);
    assert_int_equal(b.minor, 7);
    /* Absurd kernel count. */
    memcpy(c, blob, size);
    c[20] = c[21] = c[22] = c[23] = 0xff;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_TRUNCATED);
    assert_non_null(strstr(e.msg, "table"));
    /* Unknown kernel kind in entry 0. */
    memcpy(c, blob, size);
    c[128 + 8] = 0xee;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_CORRUPT);
    assert_non_null(strstr(e.msg, "kind"));
    /* A name without its NUL. */
    memcpy(c, blob, size);
    c[128 + 4] += 1;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_CORRUPT);
    /* PTX without its NUL. */
    memcpy(c, blob, size);
    c[size - 1] = 'x';
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_CORRUPT);
    /* The act byte one past flock_act's last value (formats/ checks it without ir.h). */
    memcpy(c, blob, size);
    c[102] = FLOCK_ACT_COUNT;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_CORRUPT);
    c[102] = FLOCK_ACT_COUNT - 1;
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_OK);
    assert_int_equal(b.model.act, FLOCK_ACT_COUNT - 1);
    /* Bad magic. */
    memcpy(c, blob, size);
    c[0] = 'X';
    assert_int_equal(flock_cuda_blob_parse(c, size, &b, &e), FLOCK_E_CORRUPT);
    free(c);
    free(blob);
}

static void test_nvrtc_off_or_bad_target(void **state)
{
    (void)state;
    flock_codegen_model m = small_model();
    uint8_t *blob = NULL;
    size_t size = 0;
    flock_error e = {0};
    flock_status st = flock_codegen_cuda(&m, "sm_7x", &blob, &size, &e);
    /* Without NVRTC: unsupported; with it: the target is refused. Never a blob. */
    assert_true(st == FLOCK_E_UNSUPPORTED || st == FLOCK_E_INVALID_ARG);
    assert_null(blob);
    assert_true(strlen(e.msg) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_check),
        cmocka_unit_test(test_from_program),
        cmocka_unit_test(test_source_shape),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_blob_roundtrip),
        cmocka_unit_test(test_blob_corruption),
        cmocka_unit_test(test_nvrtc_off_or_bad_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
