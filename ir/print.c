/* The textual form of a program: stable, one op per line, for golden tests
 * and `flockc --emit-ir`. Floats print with %.9g (round-trips a float),
 * doubles with %.17g, so the text changes only when the program does. */
#include "flock/ir.h"

#include <inttypes.h>

static const char *rope_style_name(flock_rope_style s)
{
    switch (s) {
    case FLOCK_ROPE_NORMAL: return "normal";
    case FLOCK_ROPE_NEOX: return "neox";
    default: return "?";
    }
}

static const char *rope_scaling_name(flock_rope_scaling s)
{
    switch (s) {
    case FLOCK_ROPE_SCALING_NONE: return "none";
    case FLOCK_ROPE_SCALING_LINEAR: return "linear";
    case FLOCK_ROPE_SCALING_LLAMA3: return "llama3";
    default: return "?";
    }
}

static const char *ffn_layout_name(flock_ffn_layout l)
{
    switch (l) {
    case FLOCK_FFN_SEPARATE: return "separate";
    case FLOCK_FFN_PACKED: return "packed";
    default: return "?";
    }
}

static void print_value(const flock_program *p, int32_t id, FILE *f)
{
    if (id >= 0 && (uint32_t)id < p->n_values)
        fprintf(f, "%%%d", id);
    else
        fprintf(f, "%%?%d", id);
}

static void print_value_def(const flock_program *p, int32_t id, FILE *f)
{
    print_value(p, id, f);
    if (id >= 0 && (uint32_t)id < p->n_values) {
        const flock_value *v = &p->values[id];
        fprintf(f, " %s[%d] \"%.*s\"", flock_dtype_name(v->dtype), v->width, (int)sizeof v->name, v->name);
    }
}

static void print_weights(const flock_program *p, const flock_op *op, FILE *f)
{
    int last = -1;
    for (int i = 0; i < FLOCK_OP_MAX_W; i++)
        if (op->w[i] != -1)
            last = i;
    if (last < 0)
        return;
    fputs(" w=[", f);
    for (int i = 0; i <= last; i++) {
        if (i)
            fputs(", ", f);
        int32_t t = op->w[i];
        if (t == -1)
            fputs("-", f);
        else if (t >= 0 && (uint32_t)t < p->n_tensors)
            fprintf(f, "%.*s", (int)sizeof p->tensors[t].name, p->tensors[t].name);
        else
            fprintf(f, "#?%d", t);
    }
    fputs("]", f);
}

static void print_attrs(const flock_op *op, FILE *f)
{
    switch (op->kind) {
    case FLOCK_OP_EMBED:
        fprintf(f, " scale=%.9g", op->scale);
        break;
    case FLOCK_OP_POS_EMBED:
        fprintf(f, " pos_offset=%d", op->pos_offset);
        break;
    case FLOCK_OP_RMSNORM:
        fprintf(f, " eps=%.9g group=%d unit_offset=%u", op->eps, op->group, op->unit_offset);
        break;
    case FLOCK_OP_LAYERNORM:
        fprintf(f, " eps=%.9g", op->eps);
        break;
    case FLOCK_OP_ROPE:
        fprintf(f, " n_head=%d head_dim=%d rope_dim=%d style=%s theta=%.17g scaling=%s", op->n_head,
                op->head_dim, op->rope_dim, rope_style_name(op->rope_style), op->rope_theta,
                rope_scaling_name(op->rope_scaling));
        if (op->rope_scaling != FLOCK_ROPE_SCALING_NONE)
            fprintf(f, " factor=%.9g", op->rope_factor);
        if (op->rope_scaling == FLOCK_ROPE_SCALING_LLAMA3)
            fprintf(f, " low_freq_factor=%.9g high_freq_factor=%.9g orig_ctx=%d", op->rope_low_freq_factor,
                    op->rope_high_freq_factor, op->rope_orig_ctx);
        break;
    case FLOCK_OP_ATTENTION:
        fprintf(f, " n_head=%d n_kv_head=%d head_dim=%d scale=%.9g softcap=%.9g window=%d kv_slot=%d",
                op->n_head, op->n_kv_head, op->head_dim, op->scale, op->softcap, op->window, op->kv_slot);
        break;
    case FLOCK_OP_FFN:
        fprintf(f, " d_ff=%d act=%s gated=%u layout=%s", op->d_ff, flock_act_name(op->act), op->gated,
                ffn_layout_name(op->ffn_layout));
        break;
    case FLOCK_OP_LM_HEAD:
        fprintf(f, " softcap=%.9g", op->softcap);
        break;
    default:
        break;
    }
}

flock_status flock_program_print(const flock_program *p, FILE *f)
{
    if (!p || !f)
        return FLOCK_E_INVALID_ARG;
    const flock_model_config *c = &p->cfg;
    fprintf(f, "flock-ir 1\n");
    fprintf(f, "config arch=%.*s n_layer=%d d_model=%d n_vocab=%d n_ctx=%d n_kv_slots=%d kv_width=%d d_ff=%d\n",
            (int)sizeof c->arch, c->arch, c->n_layer, c->d_model, c->n_vocab, c->n_ctx, c->n_kv_slots,
            c->kv_width, c->d_ff);
    fprintf(f, "tensors %u\n", p->n_tensors);
    for (uint32_t i = 0; i < p->n_tensors; i++) {
        const flock_tensor_ref *t = &p->tensors[i];
        fprintf(f, "  #%u %.*s %s [", i, (int)sizeof t->name, t->name, flock_dtype_name(t->dtype));
        for (uint32_t d = 0; d < t->n_dims && d < 4; d++)
            fprintf(f, d ? ", %" PRIu64 : "%" PRIu64, t->shape[d]);
        fputs("]\n", f);
    }
    fprintf(f, "values %u\n  ", p->n_values);
    print_value_def(p, 0, f);
    fprintf(f, "\nops %u\n", p->n_ops);
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        if (op->layer >= 0)
            fprintf(f, "  op %u (layer %d): ", i, op->layer);
        else
            fprintf(f, "  op %u: ", i);
        print_value_def(p, op->out, f);
        fprintf(f, " = %s(", flock_op_kind_name(op->kind));
        for (int j = 0; j < op->n_in && j < FLOCK_OP_MAX_IN; j++) {
            if (j)
                fputs(", ", f);
            print_value(p, op->in[j], f);
        }
        fputs(")", f);
        print_weights(p, op, f);
        print_attrs(op, f);
        fputs("\n", f);
    }
    return ferror(f) ? FLOCK_E_IO : FLOCK_OK;
}
