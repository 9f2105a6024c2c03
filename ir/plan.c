/* Program analysis (flock/plan.h): widths, FF layers, KV slots, buffer
 * slots by lifetime, RoPE frequencies, decode bytes. */
#include "flock/plan.h"
#include "error_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double flock_rope_freq(const flock_op *op, int32_t i)
{
    double f = pow(op->rope_theta, -2.0 * i / op->rope_dim);
    if (op->rope_scaling == FLOCK_ROPE_SCALING_LLAMA3) {
        double lo = op->rope_low_freq_factor, hi = op->rope_high_freq_factor, orig = op->rope_orig_ctx;
        double wavelen = 2 * M_PI / f;
        if (orig <= 0 || lo <= 0 || hi <= lo)
            return f / op->rope_factor;
        if (wavelen < orig / hi)
            return f;
        if (wavelen > orig / lo)
            return f / op->rope_factor;
        double smooth = (orig / wavelen - lo) / (hi - lo);
        return (1 - smooth) * f / op->rope_factor + smooth * f;
    }
    if (op->rope_scaling == FLOCK_ROPE_SCALING_LINEAR)
        return f / op->rope_factor;
    return f;
}

static int32_t max32(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

/* Widths, FF layers, KV slots and RoPE tables; the verifier has checked
 * every op's shapes, so this only reads them. */
static flock_status analyse_ops(const flock_program *p, flock_plan *pl, flock_error *err)
{
    int32_t n_head_ops = 0;
    size_t n_freq = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        pl->n_ffn += op->kind == FLOCK_OP_FFN;
        n_freq += op->kind == FLOCK_OP_ROPE ? (size_t)op->rope_dim / 2 : 0;
    }
    pl->n_kv_slots = p->cfg.n_kv_slots;
    pl->kv_width = calloc((size_t)max32(pl->n_kv_slots, 1), sizeof *pl->kv_width);
    pl->ffn_op = malloc((size_t)max32(pl->n_ffn, 1) * sizeof *pl->ffn_op);
    pl->op_ffn = malloc((size_t)(p->n_ops ? p->n_ops : 1) * sizeof *pl->op_ffn);
    pl->rope_at = malloc((size_t)(p->n_ops ? p->n_ops : 1) * sizeof *pl->rope_at);
    pl->rope_freq = malloc((n_freq ? n_freq : 1) * sizeof *pl->rope_freq);
    RETURN_ERROR_IF(!pl->kv_width || !pl->ffn_op || !pl->op_ffn || !pl->rope_at || !pl->rope_freq, FLOCK_E_NOMEM,
                    err, "plan: out of memory");
    int32_t fi = 0;
    size_t at = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        int32_t wi = p->values[op->in[0]].width, wo = p->values[op->out].width;
        pl->op_ffn[i] = -1;
        pl->rope_at[i] = -1;
        switch (op->kind) {
        case FLOCK_OP_EMBED:
            pl->embed_rows = (int32_t)p->tensors[op->w[0]].shape[0];
            break;
        case FLOCK_OP_ROPE:
            pl->max_rope_dim = max32(pl->max_rope_dim, op->rope_dim);
            pl->rope_at[i] = (int32_t)at;
            for (int32_t j = 0; j < op->rope_dim / 2; j++)
                pl->rope_freq[at++] = flock_rope_freq(op, j);
            break;
        case FLOCK_OP_ATTENTION:
            pl->kv_width[op->kv_slot] = op->n_kv_head * op->head_dim;
            pl->max_heads = max32(pl->max_heads, op->n_head);
            pl->max_head_dim = max32(pl->max_head_dim, op->head_dim);
            break;
        case FLOCK_OP_FFN:
            pl->max_dff = max32(pl->max_dff, op->d_ff);
            pl->ffn_op[fi] = (int32_t)i;
            pl->op_ffn[i] = fi++;
            break;
        case FLOCK_OP_LM_HEAD:
            pl->n_vocab = wo;
            pl->head_op = (int32_t)i;
            n_head_ops++;
            break;
        default:
            break;
        }
        if (op->kind != FLOCK_OP_LM_HEAD)
            pl->max_width = max32(pl->max_width, max32(wi, wo));
    }
    RETURN_ERROR_IF(n_head_ops != 1, FLOCK_E_CORRUPT, err, "program: %d lm_head ops, expected 1", n_head_ops);
    return FLOCK_OK;
}

/* Assigns each value a buffer slot: a slot is reused once the last op that
 * reads its value has run. The lm_head output is the logits array. */
static flock_status plan_slots(const flock_program *p, flock_plan *pl, flock_error *err)
{
    int32_t *last_use = malloc(p->n_values * sizeof *last_use);
    int32_t *slot_owner = malloc((p->n_values + 1) * sizeof *slot_owner);
    pl->value_slot = malloc(p->n_values * sizeof *pl->value_slot);
    flock_status st = FLOCK_OK;
    if (!last_use || !slot_owner || !pl->value_slot) {
        st = flock_error_set(err, FLOCK_E_NOMEM, "plan: out of memory");
        goto done;
    }
    for (uint32_t v = 0; v < p->n_values; v++) {
        last_use[v] = -1;
        pl->value_slot[v] = -1;
    }
    for (uint32_t i = 0; i < p->n_ops; i++)
        for (int j = 0; j < p->ops[i].n_in; j++)
            last_use[p->ops[i].in[j]] = (int32_t)i;
    int32_t n_slots = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        if (op->kind != FLOCK_OP_LM_HEAD) {
            int32_t s = 0;
            while (s < n_slots && slot_owner[s] >= 0)
                s++;
            if (s == n_slots)
                n_slots++;
            slot_owner[s] = op->out;
            pl->value_slot[op->out] = s;
        }
        /* Free the inputs read for the last time, and a value nobody reads. */
        for (int j = 0; j < op->n_in; j++) {
            int32_t v = op->in[j];
            if (v > 0 && pl->value_slot[v] < 0) {
                st = flock_error_set(err, FLOCK_E_CORRUPT, "op %u (%s): reads the logits value %d", i,
                                     flock_op_kind_name(op->kind), v);
                goto done;
            }
            if (v > 0 && last_use[v] == (int32_t)i)
                slot_owner[pl->value_slot[v]] = -1;
        }
        if (op->kind != FLOCK_OP_LM_HEAD && last_use[op->out] < 0)
            slot_owner[pl->value_slot[op->out]] = -1;
    }
    pl->n_slots = n_slots;
done:
    free(last_use);
    free(slot_owner);
    return st;
}

flock_status flock_plan_program(const flock_program *p, flock_plan *out, flock_error *err)
{
    RETURN_ERROR_IF(!p || !out, FLOCK_E_INVALID_ARG, err, "flock_plan_program: NULL argument");
    memset(out, 0, sizeof *out);
    flock_plan pl = {.head_op = -1};
    flock_status st = flock_program_verify(p, err);
    if (st == FLOCK_OK)
        st = analyse_ops(p, &pl, err);
    if (st == FLOCK_OK)
        st = plan_slots(p, &pl, err);
    if (st != FLOCK_OK) {
        flock_plan_free(&pl);
        return st;
    }
    *out = pl;
    return FLOCK_OK;
}

void flock_plan_free(flock_plan *pl)
{
    if (!pl)
        return;
    free(pl->kv_width);
    free(pl->value_slot);
    free(pl->ffn_op);
    free(pl->op_ffn);
    free(pl->rope_at);
    free(pl->rope_freq);
    memset(pl, 0, sizeof *pl);
}

uint64_t flock_plan_decode_bytes(const flock_program *p, const flock_plan *plan, const uint64_t *tensor_bytes,
                                 const int64_t *ffn_k)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        switch (op->kind) {
        case FLOCK_OP_EMBED: /* one row */
        case FLOCK_OP_POS_EMBED:
            total += tensor_bytes[op->w[0]] / p->tensors[op->w[0]].shape[0];
            break;
        case FLOCK_OP_FFN: {
            int64_t k = ffn_k[plan->op_ffn[i]];
            if (k < 0)
                k = op->d_ff;
            total += (tensor_bytes[op->w[0]] + tensor_bytes[op->w[2]]) / (uint64_t)op->d_ff * (uint64_t)k;
            break;
        }
        case FLOCK_OP_ATTENTION:
        case FLOCK_OP_ADD:
        case FLOCK_OP_ROPE:
            break;
        default:
            for (int j = 0; j < FLOCK_OP_MAX_W; j++)
                if (op->w[j] >= 0 && (uint32_t)op->w[j] < p->n_tensors)
                    total += tensor_bytes[op->w[j]];
        }
    }
    return total;
}
