/* Shared frontend machinery: hyper-parameter reading with clear errors and
 * the decoder-block builder every family uses (the families differ in their
 * hyper-parameters and in which optional parts a block has). */
#include "error_impl.h"
#include "frontend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

flock_status fe_int(fe *f, const char *name, bool required, int64_t *out)
{
    flock_error e = {0};
    flock_status st = flock_source_hparam_int(f->src, name, out, &e);
    if (st == FLOCK_E_NOT_FOUND && !required)
        return FLOCK_OK;
    if (st == FLOCK_E_NOT_FOUND)
        return flock_error_set(f->err, st, "%s: missing hyper-parameter %s (%s)", f->family, name, e.msg);
    if (st)
        return flock_error_set(f->err, st, "%s: %s", f->family, e.msg);
    return FLOCK_OK;
}

flock_status fe_float(fe *f, const char *name, bool required, double *out)
{
    flock_error e = {0};
    flock_status st = flock_source_hparam_float(f->src, name, out, &e);
    if (st == FLOCK_E_NOT_FOUND && !required)
        return FLOCK_OK;
    if (st == FLOCK_E_NOT_FOUND)
        return flock_error_set(f->err, st, "%s: missing hyper-parameter %s (%s)", f->family, name, e.msg);
    if (st)
        return flock_error_set(f->err, st, "%s: %s", f->family, e.msg);
    if (!isfinite(*out))
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: hyper-parameter %s is not finite", f->family, name);
    return FLOCK_OK;
}

flock_status fe_check_range(fe *f, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: hyper-parameter %s = %lld out of range [%lld, %lld]",
                               f->family, name, (long long)v, (long long)lo, (long long)hi);
    return FLOCK_OK;
}

flock_status fe_read_shape(fe *f, fe_shape *s, int64_t d_ff_per_d)
{
    memset(s, 0, sizeof *s);
    TRY(fe_int(f, "n_layer", true, &s->n_layer));
    TRY(fe_int(f, "d_model", true, &s->d_model));
    TRY(fe_int(f, "n_head", true, &s->n_head));
    TRY(fe_check_range(f, "d_model", s->d_model, 1, 1 << 20));
    s->d_ff = d_ff_per_d * s->d_model;
    TRY(fe_int(f, "d_ff", d_ff_per_d == 0, &s->d_ff));
    TRY(fe_check_range(f, "n_layer", s->n_layer, 1, 4096));
    TRY(fe_check_range(f, "d_model", s->d_model, 1, 1 << 20));
    TRY(fe_check_range(f, "n_head", s->n_head, 1, 4096));
    TRY(fe_check_range(f, "d_ff", s->d_ff, 1, 1 << 22));
    s->n_kv_head = s->n_head;
    TRY(fe_int(f, "n_kv_head", false, &s->n_kv_head));
    TRY(fe_check_range(f, "n_kv_head", s->n_kv_head, 1, s->n_head));
    if (s->n_head % s->n_kv_head != 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: n_kv_head %lld does not divide n_head %lld", f->family,
                               (long long)s->n_kv_head, (long long)s->n_head);
    s->head_dim = 0;
    TRY(fe_int(f, "head_dim", false, &s->head_dim));
    if (s->head_dim == 0) {
        if (s->d_model % s->n_head != 0)
            return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: n_head %lld does not divide d_model %lld", f->family,
                                   (long long)s->n_head, (long long)s->d_model);
        s->head_dim = s->d_model / s->n_head;
    }
    TRY(fe_check_range(f, "head_dim", s->head_dim, 1, 4096));
    s->n_ctx = 2048;
    TRY(fe_int(f, "n_ctx", false, &s->n_ctx));
    TRY(fe_check_range(f, "n_ctx", s->n_ctx, 1, INT32_MAX / 2));
    uint32_t nd;
    uint64_t shape[4];
    flock_error e = {0};
    if (flock_source_tensor_shape(f->src, "token_embd.weight", &nd, shape, &e))
        return flock_error_set(f->err, FLOCK_E_NOT_FOUND, "%s: %s", f->family, e.msg);
    if (nd != 2 || (int64_t)shape[1] != s->d_model || shape[0] == 0 || shape[0] > INT32_MAX)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: token_embd.weight has shape [%llu, %llu], expected [n_vocab, %lld]",
                               f->family, (unsigned long long)shape[0], (unsigned long long)(nd > 1 ? shape[1] : 0),
                               (long long)s->d_model);
    s->n_vocab = (int64_t)shape[0];
    return FLOCK_OK;
}

flock_status fe_begin(fe *f, const fe_shape *s, double norm_eps, double rope_theta)
{
    flock_model_config *c = &f->cm->p->cfg;
    snprintf(c->arch, sizeof c->arch, "%s", flock_source_arch(f->src));
    c->n_layer = (int32_t)s->n_layer;
    c->d_model = (int32_t)s->d_model;
    c->n_vocab = (int32_t)s->n_vocab;
    c->n_ctx = (int32_t)s->n_ctx;
    f->cm->n_head = (int32_t)s->n_head;
    f->cm->n_kv_head = (int32_t)s->n_kv_head;
    f->cm->head_dim = (int32_t)s->head_dim;
    f->cm->norm_eps = norm_eps;
    f->cm->rope_theta = rope_theta;
    const char *name = NULL;
    if (flock_source_hparam_str(f->src, "model_name", &name, NULL) == FLOCK_OK && name)
        snprintf(f->cm->model_name, sizeof f->cm->model_name, "%s", name);
    else
        snprintf(f->cm->model_name, sizeof f->cm->model_name, "%s", c->arch);
    return FLOCK_OK;
}

/* Adds bundle tensor `flock_name` copied from canonical `src_name`. Absent
 * optional tensors give *id = -1. */
static flock_status weight(fe *f, const char *flock_name, const char *src_name, bool required, int32_t *id)
{
    *id = -1;
    uint32_t nd;
    uint64_t shape[4];
    flock_error e = {0};
    flock_status st = flock_source_tensor_shape(f->src, src_name, &nd, shape, &e);
    if (st == FLOCK_E_NOT_FOUND && !required)
        return FLOCK_OK;
    if (st)
        return flock_error_set(f->err, st, "%s: %s", f->family, e.msg);
    *id = cmodel_add_tensor(f->cm, flock_name, FLOCK_DTYPE_F32, nd, shape, PLAN_COPY, src_name, NULL);
    if (*id < 0)
        return flock_error_set(f->err, FLOCK_E_NOMEM, "out of memory adding tensor %s", flock_name);
    return FLOCK_OK;
}

/* blk.N.<base>.weight -> bundle blk.N.<base>, blk.N.<base>.bias -> blk.N.<base>_bias. */
static flock_status block_weight(fe *f, int32_t layer, const char *base, bool bias, bool required, int32_t *id)
{
    char src[96], dst[96];
    if (layer >= 0) {
        snprintf(src, sizeof src, "blk.%d.%s.%s", layer, base, bias ? "bias" : "weight");
        snprintf(dst, sizeof dst, "blk.%d.%s%s", layer, base, bias ? "_bias" : "");
    } else {
        snprintf(src, sizeof src, "%s.%s", base, bias ? "bias" : "weight");
        snprintf(dst, sizeof dst, "%s%s", base, bias ? "_bias" : "");
    }
    return weight(f, dst, src, required, id);
}

static flock_status new_value(fe *f, const char *name, int32_t width, int32_t *id)
{
    *id = flock_program_add_value(f->cm->p, name, FLOCK_DTYPE_F32, width);
    return *id < 0 ? flock_error_set(f->err, FLOCK_E_NOMEM, "out of memory") : FLOCK_OK;
}

static flock_op *new_op(fe *f, flock_op_kind k, int32_t layer, int32_t out, int32_t in0, int32_t in1, int32_t in2)
{
    flock_op *op = flock_program_add_op(f->cm->p, k, layer);
    if (!op) {
        flock_error_set(f->err, FLOCK_E_NOMEM, "out of memory");
        return NULL;
    }
    op->out = out;
    op->in[0] = in0;
    op->in[1] = in1;
    op->in[2] = in2;
    op->n_in = in2 >= 0 ? 3 : in1 >= 0 ? 2 : 1;
    return op;
}

#define NEW_OP(var, ...)                                                                                       \
    flock_op *var = new_op(__VA_ARGS__);                                                                       \
    if (!var)                                                                                                  \
        return FLOCK_E_NOMEM

flock_status fe_embed(fe *f, float scale, bool positions, int32_t pos_offset, int32_t *x)
{
    int32_t t, out, d = f->cm->p->cfg.d_model;
    TRY(weight(f, "token_embd", "token_embd.weight", true, &t));
    TRY(new_value(f, "x", d, &out));
    NEW_OP(op, f, FLOCK_OP_EMBED, -1, out, 0, -1, -1);
    op->w[0] = t;
    op->scale = scale;
    *x = out;
    if (!positions)
        return FLOCK_OK;
    int32_t pt, out2;
    TRY(weight(f, "position_embd", "position_embd.weight", true, &pt));
    TRY(new_value(f, "x_pos", d, &out2));
    NEW_OP(pop, f, FLOCK_OP_POS_EMBED, -1, out2, out, -1, -1);
    pop->w[0] = pt;
    pop->pos_offset = pos_offset;
    *x = out2;
    return FLOCK_OK;
}

/* norm(in) with the block's norm kind; `base` names the weight. */
static flock_status norm(fe *f, int32_t layer, const fe_block_cfg *b, const char *base, const char *vname, int32_t in,
                         int32_t group, int32_t *out)
{
    int32_t w, bias = -1;
    TRY(block_weight(f, layer, base, false, true, &w));
    if (b->layernorm)
        TRY(block_weight(f, layer, base, true, false, &bias));
    TRY(new_value(f, vname, f->cm->p->values[in].width, out));
    NEW_OP(op, f, b->layernorm ? FLOCK_OP_LAYERNORM : FLOCK_OP_RMSNORM, layer, *out, in, -1, -1);
    op->w[0] = w;
    op->w[1] = bias;
    op->eps = b->eps;
    if (!b->layernorm) {
        op->group = group ? group : f->cm->p->values[in].width;
        op->unit_offset = b->unit_offset;
    }
    return FLOCK_OK;
}

static flock_status linear(fe *f, int32_t layer, const char *base, const char *vname, int32_t in, int32_t *out)
{
    int32_t w, bias;
    TRY(block_weight(f, layer, base, false, true, &w));
    TRY(block_weight(f, layer, base, true, false, &bias));
    const flock_tensor_ref *t = &f->cm->p->tensors[w];
    if (t->n_dims != 2 || t->shape[0] > INT32_MAX)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: tensor %s is not a matrix", f->family, t->name);
    TRY(new_value(f, vname, (int32_t)t->shape[0], out));
    NEW_OP(op, f, FLOCK_OP_LINEAR, layer, *out, in, -1, -1);
    op->w[0] = w;
    op->w[1] = bias;
    return FLOCK_OK;
}

static flock_status rope(fe *f, int32_t layer, const fe_block_cfg *b, int32_t n_head, const char *vname, int32_t in,
                         int32_t *out)
{
    TRY(new_value(f, vname, f->cm->p->values[in].width, out));
    NEW_OP(op, f, FLOCK_OP_ROPE, layer, *out, in, -1, -1);
    op->n_head = n_head;
    op->head_dim = b->head_dim;
    op->rope_dim = b->rope_dim;
    op->rope_style = b->rope_style;
    op->rope_theta = b->rope_theta;
    op->rope_scaling = b->rope_scaling;
    op->rope_factor = b->rope_factor;
    op->rope_low_freq_factor = b->rope_low_freq_factor;
    op->rope_high_freq_factor = b->rope_high_freq_factor;
    op->rope_orig_ctx = b->rope_orig_ctx;
    return FLOCK_OK;
}

static flock_status add(fe *f, int32_t layer, int32_t a, int32_t b, int32_t *out)
{
    TRY(new_value(f, "resid", f->cm->p->values[a].width, out));
    NEW_OP(op, f, FLOCK_OP_ADD, layer, *out, a, b, -1);
    (void)op;
    return FLOCK_OK;
}

static flock_status attention_part(fe *f, int32_t layer, const fe_block_cfg *b, int32_t h, int32_t *out)
{
    int32_t q, k, v;
    TRY(linear(f, layer, "attn_q", "q", h, &q));
    TRY(linear(f, layer, "attn_k", "k", h, &k));
    TRY(linear(f, layer, "attn_v", "v", h, &v));
    if (b->qk_norm) {
        TRY(norm(f, layer, b, "attn_q_norm", "q_normed", q, b->head_dim, &q));
        TRY(norm(f, layer, b, "attn_k_norm", "k_normed", k, b->head_dim, &k));
    }
    if (b->rope) {
        TRY(rope(f, layer, b, b->n_head, "q_rope", q, &q));
        TRY(rope(f, layer, b, b->n_kv_head, "k_rope", k, &k));
    }
    flock_program *p = f->cm->p;
    int32_t a;
    TRY(new_value(f, "attn", b->n_head * b->head_dim, &a));
    NEW_OP(op, f, FLOCK_OP_ATTENTION, layer, a, q, k, v);
    op->n_head = b->n_head;
    op->n_kv_head = b->n_kv_head;
    op->head_dim = b->head_dim;
    op->scale = b->attn_scale;
    op->softcap = b->attn_softcap;
    op->window = b->window;
    op->kv_slot = p->cfg.n_kv_slots++;
    if (b->n_kv_head * b->head_dim > p->cfg.kv_width)
        p->cfg.kv_width = b->n_kv_head * b->head_dim;
    return linear(f, layer, "attn_output", "attn_out", a, out);
}

static flock_status ffn_part(fe *f, int32_t layer, const fe_block_cfg *b, int32_t h, int32_t *out)
{
    int32_t gate = -1, up, down, b1, b2;
    if (b->gated)
        TRY(block_weight(f, layer, "ffn_gate", false, true, &gate));
    TRY(block_weight(f, layer, "ffn_up", false, true, &up));
    TRY(block_weight(f, layer, "ffn_down", false, true, &down));
    TRY(block_weight(f, layer, "ffn_up", true, false, &b1));
    TRY(block_weight(f, layer, "ffn_down", true, false, &b2));
    TRY(new_value(f, "ffn_out", f->cm->p->values[h].width, out));
    NEW_OP(op, f, FLOCK_OP_FFN, layer, *out, h, -1, -1);
    /* SEPARATE layout (ir.h): gated w[0] gate, w[1] up; plain w[0] fc1. */
    op->w[0] = b->gated ? gate : up;
    op->w[1] = b->gated ? up : -1;
    op->w[2] = down;
    op->w[3] = b1;
    op->w[4] = b2;
    op->d_ff = b->d_ff;
    op->act = b->act;
    op->gated = b->gated;
    op->ffn_layout = FLOCK_FFN_SEPARATE;
    if (b->d_ff > f->cm->p->cfg.d_ff)
        f->cm->p->cfg.d_ff = b->d_ff;
    return FLOCK_OK;
}

flock_status fe_block(fe *f, int32_t layer, const fe_block_cfg *b, int32_t *x)
{
    int32_t h, o, r, g;
    TRY(norm(f, layer, b, "attn_norm", "attn_in", *x, 0, &h));
    TRY(attention_part(f, layer, b, h, &o));
    if (b->post_norms)
        TRY(norm(f, layer, b, "post_attention_norm", "attn_post", o, 0, &o));
    TRY(add(f, layer, *x, o, &r));
    TRY(norm(f, layer, b, "ffn_norm", "ffn_in", r, 0, &h));
    TRY(ffn_part(f, layer, b, h, &g));
    if (b->post_norms)
        TRY(norm(f, layer, b, "post_ffw_norm", "ffn_post", g, 0, &g));
    return add(f, layer, r, g, x);
}

flock_status fe_head(fe *f, const fe_block_cfg *b, float final_softcap, int32_t x)
{
    int32_t h, w, bias, logits;
    TRY(norm(f, -1, b, "output_norm", "out_norm", x, 0, &h));
    TRY(weight(f, "output", "output.weight", false, &w));
    if (w < 0) /* tied embeddings */
        w = flock_program_find_tensor(f->cm->p, "token_embd");
    TRY(weight(f, "output_bias", "output.bias", false, &bias));
    TRY(new_value(f, "logits", f->cm->p->cfg.n_vocab, &logits));
    NEW_OP(op, f, FLOCK_OP_LM_HEAD, -1, logits, h, -1, -1);
    op->w[0] = w;
    op->w[1] = bias;
    op->softcap = final_softcap;
    return FLOCK_OK;
}
