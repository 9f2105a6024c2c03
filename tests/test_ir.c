/* The IR: builders, verifier rules, printer, serialization round trip and a
 * corruption suite over the serialized form. */
#include "test_util.h"

#include "flock/ir.h"

enum { D = 16, NH = 4, NKV = 2, HD = 4, FF = 24, VOCAB = 32, NL = 2 };

static int32_t tensor(flock_program *p, const char *name, uint32_t nd, uint64_t a, uint64_t b)
{
    uint64_t s[2] = {a, b};
    int32_t id = flock_program_add_tensor(p, name, FLOCK_DTYPE_F32, nd, s);
    assert_true(id >= 0);
    return id;
}

static int32_t unary(flock_program *p, flock_op_kind k, int32_t layer, int32_t in, const char *name, int32_t width)
{
    int32_t out = flock_program_add_value(p, name, FLOCK_DTYPE_F32, width);
    assert_true(out > 0);
    flock_op *op = flock_program_add_op(p, k, layer);
    assert_non_null(op);
    op->n_in = 1;
    op->in[0] = in;
    op->out = out;
    return out;
}

static flock_op *last_op(flock_program *p)
{
    return &p->ops[p->n_ops - 1];
}

/* A small llama-shaped program: 2 layers, GQA, gated SiLU FF. */
static flock_program *build_llama(flock_ffn_layout layout)
{
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    snprintf(p->cfg.arch, sizeof p->cfg.arch, "llama");
    p->cfg = (flock_model_config){.n_layer = NL, .d_model = D, .n_vocab = VOCAB, .n_ctx = 64,
                                  .n_kv_slots = NL, .kv_width = NKV * HD, .d_ff = FF};
    snprintf(p->cfg.arch, sizeof p->cfg.arch, "llama");
    int32_t emb = tensor(p, "token_embd", 2, VOCAB, D);
    int32_t x = unary(p, FLOCK_OP_EMBED, -1, 0, "x", D);
    last_op(p)->w[0] = emb;
    last_op(p)->scale = 1.0f;
    char n[96];
    for (int l = 0; l < NL; l++) {
#define T(suffix, nd, a, b) (snprintf(n, sizeof n, "blk.%d." suffix, l), tensor(p, n, nd, a, b))
        int32_t h = unary(p, FLOCK_OP_RMSNORM, l, x, "attn_in", D);
        last_op(p)->w[0] = T("attn_norm", 1, D, 0);
        last_op(p)->eps = 1e-5f;
        last_op(p)->group = D;
        int32_t q = unary(p, FLOCK_OP_LINEAR, l, h, "q", NH * HD);
        last_op(p)->w[0] = T("attn_q", 2, NH * HD, D);
        int32_t k = unary(p, FLOCK_OP_LINEAR, l, h, "k", NKV * HD);
        last_op(p)->w[0] = T("attn_k", 2, NKV * HD, D);
        int32_t v = unary(p, FLOCK_OP_LINEAR, l, h, "v", NKV * HD);
        last_op(p)->w[0] = T("attn_v", 2, NKV * HD, D);
        last_op(p)->w[1] = T("attn_v_bias", 1, NKV * HD, 0);
        int32_t qr = unary(p, FLOCK_OP_ROPE, l, q, "q_rope", NH * HD);
        *last_op(p) = (flock_op){.kind = FLOCK_OP_ROPE, .layer = l, .n_in = 1, .in = {q, -1, -1}, .out = qr,
                                 .w = {-1, -1, -1, -1, -1, -1}, .n_head = NH, .head_dim = HD, .rope_dim = HD,
                                 .rope_theta = 10000.0, .rope_style = FLOCK_ROPE_NEOX};
        int32_t kr = unary(p, FLOCK_OP_ROPE, l, k, "k_rope", NKV * HD);
        flock_op *ro = last_op(p);
        ro->n_head = NKV;
        ro->head_dim = HD;
        ro->rope_dim = HD;
        ro->rope_theta = 10000.0;
        ro->rope_scaling = FLOCK_ROPE_SCALING_LLAMA3;
        ro->rope_factor = 8;
        ro->rope_low_freq_factor = 1;
        ro->rope_high_freq_factor = 4;
        ro->rope_orig_ctx = 8192;
        int32_t a = flock_program_add_value(p, "attn", FLOCK_DTYPE_F32, NH * HD);
        flock_op *at = flock_program_add_op(p, FLOCK_OP_ATTENTION, l);
        at->n_in = 3;
        at->in[0] = qr;
        at->in[1] = kr;
        at->in[2] = v;
        at->out = a;
        at->n_head = NH;
        at->n_kv_head = NKV;
        at->head_dim = HD;
        at->kv_slot = l;
        at->window = l == 0 ? 8 : 0;
        int32_t o = unary(p, FLOCK_OP_LINEAR, l, a, "attn_out", D);
        last_op(p)->w[0] = T("attn_output", 2, D, NH * HD);
        int32_t r = flock_program_add_value(p, "resid", FLOCK_DTYPE_F32, D);
        flock_op *add = flock_program_add_op(p, FLOCK_OP_ADD, l);
        add->n_in = 2;
        add->in[0] = x;
        add->in[1] = o;
        add->out = r;
        int32_t h2 = unary(p, FLOCK_OP_RMSNORM, l, r, "ffn_in", D);
        last_op(p)->w[0] = T("ffn_norm", 1, D, 0);
        last_op(p)->eps = 1e-5f;
        last_op(p)->group = D;
        int32_t f = unary(p, FLOCK_OP_FFN, l, h2, "ffn_out", D);
        int32_t gu, gate, up, down, rank;
        if (layout == FLOCK_FFN_PACKED) {
            gu = T("ffn_gate_up", 2, FF, 2 * D);
            down = T("ffn_down_t", 2, FF, D);
            gate = gu;
            up = -1;
        } else {
            gate = T("ffn_gate", 2, FF, D);
            up = T("ffn_up", 2, FF, D);
            down = T("ffn_down", 2, D, FF);
        }
        snprintf(n, sizeof n, "blk.%d.ffn_magnitude_rank", l);
        uint64_t rs[1] = {FF};
        rank = flock_program_add_tensor(p, n, FLOCK_DTYPE_I32, 1, rs);
        flock_op *fo = last_op(p);
        fo->w[0] = gate;
        fo->w[1] = up;
        fo->w[2] = down;
        fo->w[5] = rank;
        fo->d_ff = FF;
        fo->act = FLOCK_ACT_SILU;
        fo->gated = 1;
        fo->ffn_layout = layout;
        int32_t x2 = flock_program_add_value(p, "resid", FLOCK_DTYPE_F32, D);
        add = flock_program_add_op(p, FLOCK_OP_ADD, l);
        add->n_in = 2;
        add->in[0] = r;
        add->in[1] = f;
        add->out = x2;
        x = x2;
#undef T
    }
    int32_t h = unary(p, FLOCK_OP_RMSNORM, -1, x, "out_norm", D);
    last_op(p)->w[0] = tensor(p, "output_norm", 1, D, 0);
    last_op(p)->eps = 1e-5f;
    last_op(p)->group = D;
    unary(p, FLOCK_OP_LM_HEAD, -1, h, "logits", VOCAB);
    last_op(p)->w[0] = emb; /* tied */
    return p;
}

static char *print_to_string(const flock_program *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(flock_program_print(p, f), FLOCK_OK);
    fclose(f);
    return buf;
}

static void test_build_verify_print(void **state)
{
    (void)state;
    for (int layout = 0; layout < FLOCK_FFN_LAYOUT_COUNT; layout++) {
        flock_program *p = build_llama((flock_ffn_layout)layout);
        flock_error e = {0};
        assert_int_equal(flock_program_verify(p, &e), FLOCK_OK);
        char *txt = print_to_string(p);
        assert_non_null(strstr(txt, "flock-ir 1\nconfig arch=llama n_layer=2 d_model=16"));
        assert_non_null(strstr(txt, "= linear(%2) w=[blk.0.attn_q]"));
        assert_non_null(strstr(txt, "op 9 (layer 0): %10 f32[16] \"resid\" = add(%1, %9)"));
        assert_non_null(strstr(txt, "scaling=llama3 factor=8 low_freq_factor=1 high_freq_factor=4 orig_ctx=8192"));
        assert_non_null(strstr(txt, layout ? "layout=packed" : "layout=separate"));
        free(txt);
        flock_program_free(p);
    }
    flock_program_free(NULL);
}

static void test_builders(void **state)
{
    (void)state;
    flock_program *p = NULL;
    assert_int_equal(flock_program_create(&p), FLOCK_OK);
    assert_int_equal(p->n_values, 1);
    assert_string_equal(p->values[0].name, "tokens");
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(flock_program_add_value(p, longname, FLOCK_DTYPE_F32, 4), -1);
    assert_int_equal(flock_program_add_tensor(p, longname, FLOCK_DTYPE_F32, 1, (uint64_t[]){4}), -1);
    assert_int_equal(flock_program_add_tensor(p, "t", FLOCK_DTYPE_F32, 5, (uint64_t[]){1, 1, 1, 1, 1}), -1);
    for (int i = 0; i < 100; i++) { /* past the first growth */
        char n[16];
        snprintf(n, sizeof n, "t%d", i);
        assert_int_equal(flock_program_add_tensor(p, n, FLOCK_DTYPE_F32, 1, (uint64_t[]){4}), i);
    }
    assert_int_equal(flock_program_find_tensor(p, "t57"), 57);
    assert_int_equal(flock_program_find_tensor(p, "nope"), -1);
    flock_op *op = flock_program_add_op(p, FLOCK_OP_FFN, 3);
    assert_int_equal(op->w[5], -1);
    assert_int_equal(op->in[0], -1);
    assert_int_equal(op->layer, 3);
    assert_string_equal(flock_op_kind_name(FLOCK_OP_LM_HEAD), "lm_head");
    assert_string_equal(flock_op_kind_name((flock_op_kind)77), "?");
    assert_string_equal(flock_act_name(FLOCK_ACT_GELU_TANH), "gelu_tanh");
    flock_program_free(p);
}

/* Mutations of the valid program, each breaking one rule. */
typedef struct mutation {
    const char *name;
    void (*apply)(flock_program *p);
    const char *expect; /* substring of the message */
} mutation;

static flock_op *find_op(flock_program *p, flock_op_kind k, int layer)
{
    for (uint32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == k && p->ops[i].layer == layer)
            return &p->ops[i];
    fail_msg("no op of kind %d in layer %d", k, layer);
    return NULL;
}

static void m_use_before_def(flock_program *p) { p->ops[1].in[0] = (int32_t)p->n_values - 1; }
static void m_define_twice(flock_program *p) { p->ops[2].out = p->ops[1].out; }
static void m_tensor_range(flock_program *p) { find_op(p, FLOCK_OP_LINEAR, 1)->w[0] = 9999; }
static void m_linear_in(flock_program *p) { p->tensors[flock_program_find_tensor(p, "blk.1.attn_q")].shape[1] = D + 1; }
static void m_out_width(flock_program *p) { p->values[find_op(p, FLOCK_OP_LINEAR, 0)->out].width = 7; }
static void m_input_dtype(flock_program *p) { find_op(p, FLOCK_OP_RMSNORM, 0)->in[0] = 0; }
static void m_group(flock_program *p) { find_op(p, FLOCK_OP_RMSNORM, 1)->group = 5; }
static void m_rope_dim(flock_program *p) { find_op(p, FLOCK_OP_ROPE, 0)->rope_dim = 3; }
static void m_rope_style(flock_program *p) { find_op(p, FLOCK_OP_ROPE, 0)->rope_style = (flock_rope_style)9; }
static void m_kv_heads(flock_program *p) { find_op(p, FLOCK_OP_ATTENTION, 1)->n_kv_head = 3; }
static void m_kv_slot(flock_program *p) { find_op(p, FLOCK_OP_ATTENTION, 1)->kv_slot = 0; }
static void m_ffn_shape(flock_program *p) { find_op(p, FLOCK_OP_FFN, 1)->d_ff = FF - 1; }
static void m_ffn_act(flock_program *p) { find_op(p, FLOCK_OP_FFN, 0)->act = (flock_act)42; }
static void m_rank_dtype(flock_program *p) { p->tensors[find_op(p, FLOCK_OP_FFN, 0)->w[5]].dtype = FLOCK_DTYPE_F32; }
static void m_dup_tensor(flock_program *p) { strcpy(p->tensors[3].name, p->tensors[1].name); }
static void m_kv_slots_cfg(flock_program *p) { p->cfg.n_kv_slots = 1; }
static void m_d_ff_cfg(flock_program *p) { p->cfg.d_ff = FF + 8; }
static void m_last_op(flock_program *p) { p->n_ops--; }
static void m_lm_vocab(flock_program *p) { p->values[p->ops[p->n_ops - 1].out].width = VOCAB + 1; }
static void m_unused_w(flock_program *p) { find_op(p, FLOCK_OP_ADD, 0)->w[2] = 0; }
static void m_nan_eps(flock_program *p) { find_op(p, FLOCK_OP_RMSNORM, 0)->eps = NAN; }
static void m_layer(flock_program *p) { find_op(p, FLOCK_OP_ADD, 1)->layer = NL; }
static void m_n_in(flock_program *p) { find_op(p, FLOCK_OP_ADD, 0)->n_in = 1; find_op(p, FLOCK_OP_ADD, 0)->in[1] = -1; }
static void m_add_width(flock_program *p) { find_op(p, FLOCK_OP_ADD, 0)->in[1] = p->ops[3].out; /* k: width 8 */ }
static void m_value0(flock_program *p) { p->values[0].width = 2; }
static void m_embed_shape(flock_program *p) { p->tensors[0].shape[0] = VOCAB + 1; }
static void m_llama3(flock_program *p) { p->ops[6].rope_orig_ctx = 0; /* the k rope (llama3) */ }
static void m_tensor_dims(flock_program *p) { p->tensors[2].n_dims = 0; }
static void m_arch(flock_program *p) { memset(p->cfg.arch, 'x', sizeof p->cfg.arch); }
static void m_softcap(flock_program *p) { p->ops[p->n_ops - 1].softcap = -1; }

static const mutation mutations[] = {
    {"use before definition", m_use_before_def, "used before it is defined"},
    {"defined twice", m_define_twice, "is defined twice"},
    {"tensor id range", m_tensor_range, "(linear, layer 1): w[0] must be a 2-D matrix"},
    {"linear in width", m_linear_in, "(linear, layer 1): w[0] 'blk.1.attn_q': shape [16, 17], expected [16, 16]"},
    {"output width", m_out_width, "has width 7, expected 16"},
    {"input dtype", m_input_dtype, "(rmsnorm, layer 0): input 0 (%0) is i32, expected f32"},
    {"rmsnorm group", m_group, "group 5 must be > 0 and divide the width 16"},
    {"rope dim", m_rope_dim, "(rope, layer 0): rope_dim 3 must be even"},
    {"rope style enum", m_rope_style, "rope_style 9 out of range"},
    {"kv heads", m_kv_heads, "(attention, layer 1): n_kv_head 3 must divide n_head 4"},
    {"kv slot reuse", m_kv_slot, "kv_slot 0 is used by an earlier attention op"},
    {"ffn shape", m_ffn_shape, "(ffn, layer 1): w[0]"},
    {"ffn act enum", m_ffn_act, "act 42 out of range"},
    {"rank dtype", m_rank_dtype, "w[5] 'blk.0.ffn_magnitude_rank': dtype f32, expected i32"},
    {"duplicate tensor", m_dup_tensor, "appears twice"},
    {"config n_kv_slots", m_kv_slots_cfg, "kv_slot 1 out of range (n_kv_slots 1)"},
    {"config d_ff", m_d_ff_cfg, "d_ff 32 differ"},
    {"ends with lm_head", m_last_op, "must end with an lm_head op"},
    {"lm_head vocab", m_lm_vocab, "(lm_head): output"},
    {"unused weight slot", m_unused_w, "w[2] must be absent"},
    {"nan eps", m_nan_eps, "eps nan must be > 0"},
    {"layer range", m_layer, "layer 2 out of range"},
    {"input count", m_n_in, "takes 2 inputs, found 1"},
    {"add widths", m_add_width, "widths differ"},
    {"value 0", m_value0, "value 0 must be the token ids"},
    {"embed table", m_embed_shape, "(embed): w[0] 'token_embd': shape [33, 16], expected [n_vocab 32, d_model 16]"},
    {"llama3 params", m_llama3, "rope_orig_ctx 0 must be > 0"},
    {"tensor dims", m_tensor_dims, "n_dims 0, expected 1..4"},
    {"arch terminated", m_arch, "arch is empty or not terminated"},
    {"softcap", m_softcap, "softcap = -1 must be finite"},
};

static void test_verifier_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        flock_program *p = build_llama(FLOCK_FFN_SEPARATE);
        mutations[i].apply(p);
        flock_error e = {0};
        flock_status st = flock_program_verify(p, &e);
        if (st == FLOCK_OK || !strstr(e.msg, mutations[i].expect))
            fail_msg("mutation '%s': status %d, message '%s', expected '%s'", mutations[i].name, st, e.msg,
                     mutations[i].expect);
        /* The serializer refuses what the verifier refuses. */
        uint8_t *buf = NULL;
        size_t n = 0;
        assert_int_not_equal(flock_program_serialize(p, &buf, &n, NULL), FLOCK_OK);
        assert_null(buf);
        flock_program_free(p);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    for (int layout = 0; layout < FLOCK_FFN_LAYOUT_COUNT; layout++) {
        flock_program *p = build_llama((flock_ffn_layout)layout);
        uint8_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        flock_error e = {0};
        assert_int_equal(flock_program_serialize(p, &a, &na, &e), FLOCK_OK);
        flock_program *q = NULL;
        assert_int_equal(flock_program_deserialize(a, na, &q, &e), FLOCK_OK);
        assert_int_equal(flock_program_serialize(q, &b, &nb, &e), FLOCK_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
        char *ta = print_to_string(p), *tb = print_to_string(q);
        assert_string_equal(ta, tb);
        assert_int_equal(q->n_ops, p->n_ops);
        assert_memory_equal(&q->cfg, &p->cfg, sizeof p->cfg);
        assert_float_equal(q->ops[5].rope_theta, 10000.0, 0);
        free(ta);
        free(tb);
        free(a);
        free(b);
        flock_program_free(p);
        flock_program_free(q);
    }
}

static void serialize_llama(uint8_t **buf, size_t *n)
{
    flock_program *p = build_llama(FLOCK_FFN_PACKED);
    assert_int_equal(flock_program_serialize(p, buf, n, NULL), FLOCK_OK);
    flock_program_free(p);
}

/* Every prefix is an error (the section must end exactly after the last op). */
static void test_truncation(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t n;
    serialize_llama(&buf, &n);
    for (size_t len = 0; len < n; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* a fresh allocation so ASan sees overreads */
        memcpy(copy, buf, len);
        flock_program *q = (flock_program *)0x1;
        flock_error e = {0};
        flock_status st = flock_program_deserialize(copy, len, &q, &e);
        if (st == FLOCK_OK)
            fail_msg("prefix of %zu/%zu bytes accepted", len, n);
        assert_ptr_equal(q, (flock_program *)0x1); /* *out untouched */
        assert_true(strlen(e.msg) > 0);
        free(copy);
    }
    /* Trailing garbage is refused too. */
    uint8_t *big = malloc(n + 1);
    memcpy(big, buf, n);
    big[n] = 0;
    flock_program *q = NULL;
    assert_int_equal(flock_program_deserialize(big, n + 1, &q, NULL), FLOCK_E_CORRUPT);
    free(big);
    free(buf);
}

/* Each single-bit flip: an error or a program that verifies and re-serializes. */
static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t n;
    serialize_llama(&buf, &n);
    size_t accepted = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            flock_program *q = NULL;
            flock_error e = {0};
            if (flock_program_deserialize(buf, n, &q, &e) == FLOCK_OK) {
                accepted++;
                assert_int_equal(flock_program_verify(q, NULL), FLOCK_OK);
                uint8_t *b2 = NULL;
                size_t n2 = 0;
                assert_int_equal(flock_program_serialize(q, &b2, &n2, NULL), FLOCK_OK);
                char *txt = print_to_string(q);
                free(txt);
                free(b2);
                flock_program_free(q);
            } else {
                refused++;
                assert_true(strlen(e.msg) > 0);
            }
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    print_message("bit flips over %zu bytes: %zu refused, %zu accepted (still valid)\n", n, refused, accepted);
    assert_true(refused > 0);
    free(buf);
}

/* Random multi-byte garbage in random places, fresh each run of the seed. */
static void test_random_corruption(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t n;
    serialize_llama(&buf, &n);
    uint8_t *copy = malloc(n);
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, buf, n);
        int k = 1 + (int)(flock_test_rand(&s) % 8);
        for (int j = 0; j < k; j++)
            copy[flock_test_rand(&s) % n] = (uint8_t)flock_test_rand(&s);
        flock_program *q = NULL;
        if (flock_program_deserialize(copy, n, &q, NULL) == FLOCK_OK) {
            assert_int_equal(flock_program_verify(q, NULL), FLOCK_OK);
            flock_program_free(q);
        }
    }
    free(copy);
    free(buf);
}

static void test_version_and_counts(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t n;
    serialize_llama(&buf, &n);
    flock_program *q = NULL;
    flock_error e = {0};
    buf[4] = 2; /* major 2 */
    assert_int_equal(flock_program_deserialize(buf, n, &q, &e), FLOCK_E_VERSION);
    assert_non_null(strstr(e.msg, "version 2.0"));
    buf[4] = 1;
    /* A later minor may append fields: trailing bytes are then ignored. */
    uint8_t *big = malloc(n + 16);
    memcpy(big, buf, n);
    memset(big + n, 0xab, 16);
    big[6] = 1;
    assert_int_equal(flock_program_deserialize(big, n + 16, &q, &e), FLOCK_OK);
    flock_program_free(q);
    free(big);
    /* Absurd value count right after the config. */
    size_t off = 4 + 4 + 1 + strlen("llama") + 7 * 4;
    buf[off] = 0xf0;
    buf[off + 1] = buf[off + 2] = buf[off + 3] = 0xff;
    assert_int_equal(flock_program_deserialize(buf, n, &q, &e), FLOCK_E_CORRUPT);
    assert_non_null(strstr(e.msg, "value count"));
    buf[0] = 'X';
    assert_int_equal(flock_program_deserialize(buf, n, &q, &e), FLOCK_E_CORRUPT);
    assert_non_null(strstr(e.msg, "magic"));
    assert_int_equal(flock_program_deserialize(NULL, 0, &q, &e), FLOCK_E_INVALID_ARG);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_verify_print),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_verifier_rules),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_version_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
