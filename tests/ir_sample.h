/* Test helper: a small llama-shaped IR program (2 layers, GQA, llama3 RoPE
 * on k, a sliding window on layer 0, gated SiLU FF with a magnitude
 * ranking), built with the public builders. Used by test_ir and the fuzz
 * seed generator. */
#ifndef FLOCK_TEST_IR_SAMPLE_H
#define FLOCK_TEST_IR_SAMPLE_H

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

#endif
