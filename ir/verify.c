/* The verifier: every rule the runtime relies on before it sizes buffers and
 * walks the ops. It also runs on every deserialized program, so it must
 * reject anything odd without trusting a single field. */
#include "flock/ir.h"
#include "error_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Context for messages: "op 12 (ffn, layer 3): ...". */
typedef struct vctx {
    const flock_program *p;
    flock_error *err;
    uint32_t op_index;
    const flock_op *op;
} vctx;

__attribute__((format(printf, 2, 3))) static flock_status op_fail(vctx *v, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (v->op->layer >= 0)
        return flock_error_set(v->err, FLOCK_E_CORRUPT, "op %u (%s, layer %d): %s", v->op_index,
                               flock_op_kind_name(v->op->kind), v->op->layer, msg);
    return flock_error_set(v->err, FLOCK_E_CORRUPT, "op %u (%s): %s", v->op_index,
                           flock_op_kind_name(v->op->kind), msg);
}

/* A weight's storage: a float type, or a quantized one (rows of whole blocks, checked below). */
static bool is_float_dtype(flock_dtype t)
{
    return t == FLOCK_DTYPE_F32 || t == FLOCK_DTYPE_F16 || t == FLOCK_DTYPE_BF16 || flock_dtype_is_quantized(t);
}

static bool name_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL && s[0] != '\0';
}

static const char *const w_slot_names[FLOCK_OP_MAX_W] = {"w[0]", "w[1]", "w[2]", "w[3]", "w[4]", "w[5]"};

/* Checks op->w[slot]: present when `required`, float (or I32 when `want_i32`)
 * and with shape [d0] (d1 < 0) or [d0, d1]. Returns the tensor or NULL (absent
 * optional); *st receives an error. */
static const flock_tensor_ref *check_w(vctx *v, int slot, bool required, bool want_i32, int64_t d0, int64_t d1,
                                       flock_status *st)
{
    *st = FLOCK_OK;
    int32_t id = v->op->w[slot];
    if (id == -1) {
        if (required)
            *st = op_fail(v, "%s is required but absent", w_slot_names[slot]);
        return NULL;
    }
    if (id < 0 || (uint32_t)id >= v->p->n_tensors) {
        *st = op_fail(v, "%s: tensor id %d out of range (%u tensors)", w_slot_names[slot], id, v->p->n_tensors);
        return NULL;
    }
    const flock_tensor_ref *t = &v->p->tensors[id];
    bool dtype_ok = want_i32 ? t->dtype == FLOCK_DTYPE_I32 : is_float_dtype(t->dtype);
    if (!dtype_ok) {
        *st = op_fail(v, "%s '%s': dtype %s, expected %s", w_slot_names[slot], t->name, flock_dtype_name(t->dtype),
                      want_i32 ? "i32" : "f32/f16/bf16 or quantized");
        return NULL;
    }
    uint32_t want_dims = d1 < 0 ? 1 : 2;
    bool ok = t->n_dims == want_dims && (int64_t)t->shape[0] == d0 && (want_dims == 1 || (int64_t)t->shape[1] == d1);
    if (!ok) {
        char got[96] = "[";
        for (uint32_t i = 0; i < t->n_dims && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), i ? ", %llu" : "%llu",
                     (unsigned long long)t->shape[i]);
        strcat(got, "]");
        if (want_dims == 1)
            *st = op_fail(v, "%s '%s': shape %s, expected [%lld]", w_slot_names[slot], t->name, got, (long long)d0);
        else
            *st = op_fail(v, "%s '%s': shape %s, expected [%lld, %lld]", w_slot_names[slot], t->name, got,
                          (long long)d0, (long long)d1);
        return NULL;
    }
    return t;
}

#define CHECK_W(slot, req, i32, d0, d1)                                                                         \
    do {                                                                                                       \
        flock_status st_;                                                                                      \
        check_w(v, (slot), (req), (i32), (d0), (d1), &st_);                                                    \
        if (st_)                                                                                               \
            return st_;                                                                                        \
    } while (0)

/* Slots this kind never uses must hold -1. */
static flock_status check_unused_w(vctx *v, unsigned used_mask)
{
    for (int i = 0; i < FLOCK_OP_MAX_W; i++)
        if (!(used_mask & (1u << i)) && v->op->w[i] != -1)
            return op_fail(v, "%s must be absent (-1) for this op, found %d", w_slot_names[i], v->op->w[i]);
    return FLOCK_OK;
}

static flock_status check_finite_nonneg(vctx *v, const char *what, double x)
{
    if (!isfinite(x) || x < 0)
        return op_fail(v, "%s = %g must be finite and >= 0", what, x);
    return FLOCK_OK;
}

static flock_status check_heads(vctx *v, bool need_kv)
{
    const flock_op *op = v->op;
    if (op->n_head <= 0 || op->head_dim <= 0)
        return op_fail(v, "n_head %d and head_dim %d must be > 0", op->n_head, op->head_dim);
    if ((int64_t)op->n_head * op->head_dim > INT32_MAX)
        return op_fail(v, "n_head * head_dim overflows");
    if (need_kv) {
        if (op->n_kv_head <= 0 || op->n_kv_head > op->n_head || op->n_head % op->n_kv_head != 0)
            return op_fail(v, "n_kv_head %d must divide n_head %d", op->n_kv_head, op->n_head);
    }
    return FLOCK_OK;
}

static flock_status check_rope(vctx *v, int32_t in_w)
{
    const flock_op *op = v->op;
    TRY(check_heads(v, false));
    if ((int64_t)op->n_head * op->head_dim != in_w)
        return op_fail(v, "input width %d != n_head %d * head_dim %d", in_w, op->n_head, op->head_dim);
    if (op->rope_dim <= 0 || op->rope_dim > op->head_dim || op->rope_dim % 2)
        return op_fail(v, "rope_dim %d must be even and in (0, head_dim %d]", op->rope_dim, op->head_dim);
    if ((unsigned)op->rope_style >= FLOCK_ROPE_STYLE_COUNT)
        return op_fail(v, "rope_style %d out of range", (int)op->rope_style);
    if ((unsigned)op->rope_scaling >= FLOCK_ROPE_SCALING_COUNT)
        return op_fail(v, "rope_scaling %d out of range", (int)op->rope_scaling);
    if (!isfinite(op->rope_theta) || op->rope_theta <= 0)
        return op_fail(v, "rope_theta %g must be > 0", op->rope_theta);
    if (op->rope_scaling != FLOCK_ROPE_SCALING_NONE && (!isfinite(op->rope_factor) || op->rope_factor <= 0))
        return op_fail(v, "rope_factor %g must be > 0", op->rope_factor);
    if (op->rope_scaling == FLOCK_ROPE_SCALING_LLAMA3) {
        if (op->rope_orig_ctx <= 0)
            return op_fail(v, "rope_orig_ctx %d must be > 0 for llama3 scaling", op->rope_orig_ctx);
        if (!isfinite(op->rope_low_freq_factor) || !isfinite(op->rope_high_freq_factor) ||
            op->rope_low_freq_factor <= 0 || op->rope_high_freq_factor <= op->rope_low_freq_factor)
            return op_fail(v, "llama3 needs 0 < low_freq_factor %g < high_freq_factor %g", op->rope_low_freq_factor,
                           op->rope_high_freq_factor);
    }
    return FLOCK_OK;
}

static flock_status check_ffn(vctx *v, int32_t d)
{
    const flock_op *op = v->op;
    if (op->d_ff <= 0)
        return op_fail(v, "d_ff %d must be > 0", op->d_ff);
    if ((unsigned)op->act >= FLOCK_ACT_COUNT)
        return op_fail(v, "act %d out of range", (int)op->act);
    if (op->gated > 1)
        return op_fail(v, "gated must be 0 or 1, found %u", op->gated);
    if ((unsigned)op->ffn_layout >= FLOCK_FFN_LAYOUT_COUNT)
        return op_fail(v, "ffn_layout %d out of range", (int)op->ffn_layout);
    int64_t f = op->d_ff;
    if (op->ffn_layout == FLOCK_FFN_SEPARATE) {
        CHECK_W(0, true, false, f, d);
        CHECK_W(1, op->gated, false, f, d);
        CHECK_W(2, true, false, d, f);
    } else {
        CHECK_W(0, true, false, f, op->gated ? 2 * (int64_t)d : d);
        CHECK_W(2, true, false, f, d);
    }
    if (!op->gated && op->w[1] != -1)
        return op_fail(v, "w[1] (up) must be absent for a plain FF");
    if (op->ffn_layout == FLOCK_FFN_PACKED && op->w[1] != -1)
        return op_fail(v, "w[1] must be absent in the packed layout (gate and up share w[0])");
    CHECK_W(3, false, false, f, -1); /* b1 */
    CHECK_W(4, false, false, d, -1); /* b2 */
    CHECK_W(5, false, true, f, -1);  /* static magnitude ranking */
    return FLOCK_OK;
}

static int32_t value_width(const flock_program *p, int32_t id)
{
    return p->values[id].width;
}

/* Kind-specific rules: input count and dtypes, weight shapes, output width. */
static flock_status check_kind(vctx *v, int32_t *want_out_width)
{
    const flock_program *p = v->p;
    const flock_op *op = v->op;
    static const int n_in_of[FLOCK_OP_COUNT] = {
        [FLOCK_OP_EMBED] = 1, [FLOCK_OP_POS_EMBED] = 1, [FLOCK_OP_RMSNORM] = 1, [FLOCK_OP_LAYERNORM] = 1,
        [FLOCK_OP_LINEAR] = 1, [FLOCK_OP_ROPE] = 1, [FLOCK_OP_ATTENTION] = 3, [FLOCK_OP_ADD] = 2,
        [FLOCK_OP_FFN] = 1, [FLOCK_OP_LM_HEAD] = 1,
    };
    if (op->n_in != n_in_of[op->kind])
        return op_fail(v, "takes %d inputs, found %d", n_in_of[op->kind], op->n_in);
    for (int i = 0; i < op->n_in; i++) {
        flock_dtype want = op->kind == FLOCK_OP_EMBED ? FLOCK_DTYPE_I32 : FLOCK_DTYPE_F32;
        if (p->values[op->in[i]].dtype != want)
            return op_fail(v, "input %d (%%%d) is %s, expected %s", i, op->in[i],
                           flock_dtype_name(p->values[op->in[i]].dtype), flock_dtype_name(want));
    }
    int32_t x = value_width(p, op->in[0]);
    int64_t d = x;
    switch (op->kind) {
    case FLOCK_OP_EMBED: {
        if (x != 1)
            return op_fail(v, "token input width %d, expected 1", x);
        int32_t id = op->w[0];
        if (id < 0 || (uint32_t)id >= p->n_tensors || p->tensors[id].n_dims != 2)
            return op_fail(v, "w[0] must be a 2-D table [vocab, d]");
        const flock_tensor_ref *t = &p->tensors[id];
        if ((int64_t)t->shape[0] != p->cfg.n_vocab || (int64_t)t->shape[1] != p->cfg.d_model)
            return op_fail(v, "w[0] '%s': shape [%llu, %llu], expected [n_vocab %d, d_model %d]", t->name,
                           (unsigned long long)t->shape[0], (unsigned long long)t->shape[1], p->cfg.n_vocab,
                           p->cfg.d_model);
        CHECK_W(0, true, false, p->cfg.n_vocab, p->cfg.d_model);
        TRY(check_finite_nonneg(v, "scale", op->scale));
        *want_out_width = p->cfg.d_model;
        return check_unused_w(v, 1u);
    }
    case FLOCK_OP_POS_EMBED: {
        int32_t id = op->w[0];
        if (id < 0 || (uint32_t)id >= p->n_tensors || p->tensors[id].n_dims != 2 || p->tensors[id].shape[0] == 0)
            return op_fail(v, "w[0] must be a 2-D table [n_pos, d]");
        CHECK_W(0, true, false, (int64_t)p->tensors[id].shape[0], d);
        if (op->pos_offset < 0)
            return op_fail(v, "pos_offset %d must be >= 0", op->pos_offset);
        if ((int64_t)p->tensors[id].shape[0] < (int64_t)p->cfg.n_ctx + op->pos_offset)
            return op_fail(v, "w[0] has %llu positions, needs n_ctx %d + pos_offset %d",
                           (unsigned long long)p->tensors[id].shape[0], p->cfg.n_ctx, op->pos_offset);
        *want_out_width = x;
        return check_unused_w(v, 1u);
    }
    case FLOCK_OP_RMSNORM:
        if (op->group <= 0 || x % op->group != 0)
            return op_fail(v, "group %d must be > 0 and divide the width %d", op->group, x);
        if (op->unit_offset > 1)
            return op_fail(v, "unit_offset must be 0 or 1, found %u", op->unit_offset);
        if (!isfinite(op->eps) || op->eps <= 0)
            return op_fail(v, "eps %g must be > 0", op->eps);
        CHECK_W(0, true, false, op->group, -1);
        *want_out_width = x;
        return check_unused_w(v, 1u);
    case FLOCK_OP_LAYERNORM:
        if (!isfinite(op->eps) || op->eps <= 0)
            return op_fail(v, "eps %g must be > 0", op->eps);
        CHECK_W(0, true, false, d, -1);
        CHECK_W(1, false, false, d, -1);
        *want_out_width = x;
        return check_unused_w(v, 3u);
    case FLOCK_OP_LINEAR: {
        int32_t id = op->w[0];
        if (id < 0 || (uint32_t)id >= p->n_tensors || p->tensors[id].n_dims != 2)
            return op_fail(v, "w[0] must be a 2-D matrix [out, in]");
        uint64_t o = p->tensors[id].shape[0];
        if (o == 0 || o > INT32_MAX)
            return op_fail(v, "w[0] '%s': out dimension %llu out of range", p->tensors[id].name,
                           (unsigned long long)o);
        CHECK_W(0, true, false, (int64_t)o, d);
        CHECK_W(1, false, false, (int64_t)o, -1);
        *want_out_width = (int32_t)o;
        return check_unused_w(v, 3u);
    }
    case FLOCK_OP_ROPE:
        TRY(check_rope(v, x));
        *want_out_width = x;
        return check_unused_w(v, 0);
    case FLOCK_OP_ATTENTION: {
        TRY(check_heads(v, true));
        int64_t qw = (int64_t)op->n_head * op->head_dim, kvw = (int64_t)op->n_kv_head * op->head_dim;
        int32_t kw = value_width(p, op->in[1]), vw = value_width(p, op->in[2]);
        if (x != qw || kw != kvw || vw != kvw)
            return op_fail(v, "q/k/v widths %d/%d/%d, expected %lld/%lld/%lld", x, kw, vw, (long long)qw,
                           (long long)kvw, (long long)kvw);
        TRY(check_finite_nonneg(v, "scale", op->scale));
        TRY(check_finite_nonneg(v, "softcap", op->softcap));
        if (op->window < 0)
            return op_fail(v, "window %d must be >= 0", op->window);
        if (op->kv_slot < 0 || op->kv_slot >= p->cfg.n_kv_slots)
            return op_fail(v, "kv_slot %d out of range (n_kv_slots %d)", op->kv_slot, p->cfg.n_kv_slots);
        if (kvw > p->cfg.kv_width)
            return op_fail(v, "kv width %lld exceeds config kv_width %d", (long long)kvw, p->cfg.kv_width);
        *want_out_width = (int32_t)qw;
        return check_unused_w(v, 0);
    }
    case FLOCK_OP_ADD:
        if (value_width(p, op->in[1]) != x)
            return op_fail(v, "widths differ: %d and %d", x, value_width(p, op->in[1]));
        *want_out_width = x;
        return check_unused_w(v, 0);
    case FLOCK_OP_FFN:
        TRY(check_ffn(v, x));
        if (op->d_ff > p->cfg.d_ff)
            return op_fail(v, "d_ff %d exceeds config d_ff %d", op->d_ff, p->cfg.d_ff);
        *want_out_width = x;
        return FLOCK_OK;
    case FLOCK_OP_LM_HEAD:
        CHECK_W(0, true, false, p->cfg.n_vocab, d);
        CHECK_W(1, false, false, p->cfg.n_vocab, -1);
        TRY(check_finite_nonneg(v, "softcap", op->softcap));
        *want_out_width = p->cfg.n_vocab;
        return check_unused_w(v, 3u);
    default:
        return op_fail(v, "unknown kind");
    }
}

static int cmp_tensor_name(const void *a, const void *b, void *ctx)
{
    const flock_tensor_ref *t = ctx;
    return strcmp(t[*(const uint32_t *)a].name, t[*(const uint32_t *)b].name);
}

static flock_status check_config(const flock_program *p, flock_error *err)
{
    const flock_model_config *c = &p->cfg;
    if (!name_terminated(c->arch, sizeof c->arch))
        return flock_error_set(err, FLOCK_E_CORRUPT, "config: arch is empty or not terminated");
    if (c->n_layer < 0 || c->d_model <= 0 || c->n_vocab <= 0 || c->n_ctx <= 0 || c->n_kv_slots < 0 ||
        c->kv_width < 0 || c->d_ff < 0)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "config: n_layer %d d_model %d n_vocab %d n_ctx %d n_kv_slots %d kv_width %d "
                               "d_ff %d out of range",
                               c->n_layer, c->d_model, c->n_vocab, c->n_ctx, c->n_kv_slots, c->kv_width, c->d_ff);
    return FLOCK_OK;
}

static flock_status check_tables(const flock_program *p, flock_error *err)
{
    if (p->n_values == 0 || p->values[0].dtype != FLOCK_DTYPE_I32 || p->values[0].width != 1)
        return flock_error_set(err, FLOCK_E_CORRUPT, "value 0 must be the token ids (i32, width 1)");
    for (uint32_t i = 0; i < p->n_values; i++) {
        const flock_value *v = &p->values[i];
        if (!name_terminated(v->name, sizeof v->name))
            return flock_error_set(err, FLOCK_E_CORRUPT, "value %u: name empty or not terminated", i);
        if (v->dtype != FLOCK_DTYPE_F32 && v->dtype != FLOCK_DTYPE_I32)
            return flock_error_set(err, FLOCK_E_CORRUPT, "value %u '%s': dtype %d, expected f32 or i32", i,
                                   v->name, (int)v->dtype);
        if (v->width <= 0)
            return flock_error_set(err, FLOCK_E_CORRUPT, "value %u '%s': width %d must be > 0", i, v->name,
                                   v->width);
    }
    for (uint32_t i = 0; i < p->n_tensors; i++) {
        const flock_tensor_ref *t = &p->tensors[i];
        if (!name_terminated(t->name, sizeof t->name))
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %u: name empty or not terminated", i);
        if ((unsigned)t->dtype >= FLOCK_DTYPE_COUNT)
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': dtype %d out of range", t->name,
                                   (int)t->dtype);
        if (t->n_dims < 1 || t->n_dims > 4)
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': n_dims %u, expected 1..4", t->name, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (t->shape[d] == 0 || t->shape[d] > INT32_MAX)
                return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': dimension %u = %llu out of range",
                                       t->name, d, (unsigned long long)t->shape[d]);
        if (flock_dtype_is_quantized(t->dtype) && (t->n_dims < 2 || t->shape[t->n_dims - 1] % flock_dtype_block(t->dtype)))
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': %s needs a matrix whose rows are whole "
                                   "blocks of %zu, found rows of %llu", t->name, flock_dtype_name(t->dtype),
                                   flock_dtype_block(t->dtype), (unsigned long long)t->shape[t->n_dims - 1]);
    }
    /* Unique tensor names: sort indices by name (n log n; the table may be hostile). */
    if (p->n_tensors > 1) {
        uint32_t *idx = malloc((size_t)p->n_tensors * sizeof *idx);
        if (!idx)
            return flock_error_set(err, FLOCK_E_NOMEM, "verify: out of memory");
        for (uint32_t i = 0; i < p->n_tensors; i++)
            idx[i] = i;
        qsort_r(idx, p->n_tensors, sizeof *idx, cmp_tensor_name, p->tensors);
        for (uint32_t i = 1; i < p->n_tensors; i++) {
            if (strcmp(p->tensors[idx[i - 1]].name, p->tensors[idx[i]].name) == 0) {
                flock_status st = flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s' appears twice (#%u and #%u)",
                                                  p->tensors[idx[i]].name, idx[i - 1], idx[i]);
                free(idx);
                return st;
            }
        }
        free(idx);
    }
    return FLOCK_OK;
}

/* Ops in order: inputs defined before use, each value defined once,
 * kind-specific rules, then the program-wide totals in the config. */
static flock_status check_ops(const flock_program *p, uint8_t *defined, uint8_t *slot_used, flock_error *err)
{
    const flock_model_config *c = &p->cfg;
    int32_t n_attn = 0, max_kv = 0, max_ff = 0;
    defined[0] = 1;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        vctx v = {p, err, i, op};
        if ((unsigned)op->kind >= FLOCK_OP_COUNT)
            return flock_error_set(err, FLOCK_E_CORRUPT, "op %u: kind %d out of range", i, (int)op->kind);
        if (op->layer < -1 || op->layer >= c->n_layer)
            return op_fail(&v, "layer %d out of range (n_layer %d)", op->layer, c->n_layer);
        if (op->n_in < 1 || op->n_in > FLOCK_OP_MAX_IN)
            return op_fail(&v, "n_in %d out of range", op->n_in);
        for (int j = 0; j < FLOCK_OP_MAX_IN; j++) {
            int32_t id = op->in[j];
            if (j >= op->n_in) {
                if (id != -1)
                    return op_fail(&v, "unused input slot %d must be -1, found %d", j, id);
                continue;
            }
            if (id < 0 || (uint32_t)id >= p->n_values)
                return op_fail(&v, "input %d: value id %d out of range (%u values)", j, id, p->n_values);
            if (!defined[id])
                return op_fail(&v, "input %d: value %%%d '%s' used before it is defined", j, id, p->values[id].name);
        }
        if (op->out <= 0 || (uint32_t)op->out >= p->n_values)
            return op_fail(&v, "output value id %d out of range (1..%u)", op->out, p->n_values - 1);
        if (defined[op->out])
            return op_fail(&v, "value %%%d '%s' is defined twice", op->out, p->values[op->out].name);
        int32_t want = 0;
        flock_status st = check_kind(&v, &want);
        if (st)
            return st;
        const flock_value *ov = &p->values[op->out];
        if (ov->dtype != FLOCK_DTYPE_F32)
            return op_fail(&v, "output %%%d is %s, expected f32", op->out, flock_dtype_name(ov->dtype));
        if (ov->width != want)
            return op_fail(&v, "output %%%d '%s' has width %d, expected %d", op->out, ov->name, ov->width, want);
        defined[op->out] = 1;
        if (op->kind == FLOCK_OP_ATTENTION) {
            if (slot_used[op->kv_slot])
                return op_fail(&v, "kv_slot %d is used by an earlier attention op", op->kv_slot);
            slot_used[op->kv_slot] = 1;
            n_attn++;
            int32_t kvw = op->n_kv_head * op->head_dim;
            max_kv = kvw > max_kv ? kvw : max_kv;
        }
        if (op->kind == FLOCK_OP_FFN && op->d_ff > max_ff)
            max_ff = op->d_ff;
    }
    if (n_attn != c->n_kv_slots)
        return flock_error_set(err, FLOCK_E_CORRUPT, "config: n_kv_slots %d but the program has %d attention ops",
                               c->n_kv_slots, n_attn);
    if (max_kv != c->kv_width || max_ff != c->d_ff)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "config: kv_width %d / d_ff %d differ from the ops' largest (%d / %d)", c->kv_width,
                               c->d_ff, max_kv, max_ff);
    if (p->n_ops == 0 || p->ops[p->n_ops - 1].kind != FLOCK_OP_LM_HEAD)
        return flock_error_set(err, FLOCK_E_CORRUPT, "the program must end with an lm_head op");
    return FLOCK_OK;
}

flock_status flock_program_verify(const flock_program *p, flock_error *err)
{
    if (!p)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "verify: NULL program");
    flock_status st = check_config(p, err);
    if (!st)
        st = check_tables(p, err);
    if (st)
        return st;
    /* One attention op per slot, so n_kv_slots <= n_ops bounds the slot table. */
    if ((uint32_t)p->cfg.n_kv_slots > p->n_ops)
        return flock_error_set(err, FLOCK_E_CORRUPT, "config: n_kv_slots %d exceeds the %u ops", p->cfg.n_kv_slots,
                               p->n_ops);
    uint8_t *defined = calloc(p->n_values, 1);
    uint8_t *slot_used = calloc((size_t)p->cfg.n_kv_slots + 1, 1);
    if (!defined || !slot_used)
        st = flock_error_set(err, FLOCK_E_NOMEM, "verify: out of memory");
    else
        st = check_ops(p, defined, slot_used, err);
    free(defined);
    free(slot_used);
    return st;
}
