/* The model facts that CUDA kernels are specialized on: checking them and
 * reading them from an IR program. */
#include "flock/codegen.h"

#include <math.h>
#include <string.h>

/* Limits that keep every kernel within its static shared memory (x staged
 * as f32: 48 KiB / 4 bytes) and the int32 index arithmetic in range. */
#define MAX_STAGED_WIDTH 12288
#define MAX_DIM (1 << 24)

static flock_status check_dim(const char *what, int32_t v, int32_t lo, int32_t hi, flock_error *err)
{
    if (v < lo || v > hi)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "codegen model: %s = %d is outside [%d, %d]", what,
                               (int)v, (int)lo, (int)hi);
    return FLOCK_OK;
}

flock_status flock_codegen_model_check(const flock_codegen_model *m, flock_error *err)
{
    if (!m)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: NULL");
    flock_status st;
    if ((st = check_dim("d_model", m->d_model, 8, MAX_STAGED_WIDTH, err)) ||
        (st = check_dim("d_ff", m->d_ff, 1, MAX_DIM, err)) ||
        (st = check_dim("n_head", m->n_head, 1, 1024, err)) ||
        (st = check_dim("n_kv_head", m->n_kv_head, 1, m->n_head, err)) ||
        (st = check_dim("head_dim", m->head_dim, 1, 256, err)) || /* attention keeps 8/lane in registers */
        (st = check_dim("vocab", m->vocab, 1, MAX_DIM, err)) ||
        (st = check_dim("rope_dim", m->rope_dim, 0, m->head_dim, err)))
        return st;
    if (m->d_model % 8)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "codegen model: d_model = %d is not a multiple of 8 (16-byte weight rows)",
                               (int)m->d_model);
    if (m->n_head % m->n_kv_head)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "codegen model: n_head %d is not a multiple of n_kv_head %d",
                               (int)m->n_head, (int)m->n_kv_head);
    const int64_t q_dim = (int64_t)m->n_head * m->head_dim;
    if (q_dim % 8 || q_dim > MAX_STAGED_WIDTH)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "codegen model: n_head*head_dim = %lld must be a multiple of 8 and at most %d",
                               (long long)q_dim, MAX_STAGED_WIDTH);
    if (m->rope_dim % 2)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "codegen model: rope_dim %d is odd", (int)m->rope_dim);
    if ((unsigned)m->rope_style >= FLOCK_ROPE_STYLE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: rope_style %d out of range",
                               (int)m->rope_style);
    if (m->wtype != FLOCK_DTYPE_F16 && m->wtype != FLOCK_DTYPE_BF16)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "codegen model: weight dtype %s (need f16 or bf16)",
                               flock_dtype_name(m->wtype));
    if (m->qtypes & ~FLOCK_CODEGEN_QTYPES)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "codegen model: qtypes 0x%x has a type the CUDA kernels do not read (q8_0, q4_0, "
                               "q4_1)", (unsigned)m->qtypes);
    if (m->qtypes && m->d_model % 32)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "codegen model: d_model = %d is not a multiple of 32 (quantized blocks)",
                               (int)m->d_model);
    if (m->kv_type != FLOCK_DTYPE_F16 && m->kv_type != FLOCK_DTYPE_F32)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "codegen model: KV cache dtype %s (need f16 or f32)",
                               flock_dtype_name(m->kv_type));
    if ((unsigned)m->act >= FLOCK_ACT_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: act %d out of range", (int)m->act);
    if (m->gated > 1)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: gated = %u", (unsigned)m->gated);
    if (!isfinite(m->attn_scale) || m->attn_scale < 0 || !isfinite(m->attn_softcap) || m->attn_softcap < 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: attn_scale %g / attn_softcap %g",
                               (double)m->attn_scale, (double)m->attn_softcap);
    if (m->n_keep < 1 || m->n_keep > FLOCK_CODEGEN_MAX_KEEP)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: n_keep = %u (1..%d)", (unsigned)m->n_keep,
                               FLOCK_CODEGEN_MAX_KEEP);
    for (uint32_t i = 0; i < m->n_keep; i++)
        if (!(m->keep[i] > 0.0f && m->keep[i] <= 1.0f))
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen model: keep[%u] = %g is not in (0, 1]",
                                   (unsigned)i, (double)m->keep[i]);
    return FLOCK_OK;
}

/* The matrices the CUDA kernels read as weights (the others are f32 vectors
 * or the host's magnitude ranks): EMBED, POS_EMBED, LINEAR, LM_HEAD w[0];
 * FFN w[0] (gate_up or w1) and w[2] (down_t). */
static bool is_kernel_matrix(const flock_op *op, int slot)
{
    switch (op->kind) {
    case FLOCK_OP_EMBED:
    case FLOCK_OP_POS_EMBED:
    case FLOCK_OP_LINEAR:
    case FLOCK_OP_LM_HEAD:
        return slot == 0;
    case FLOCK_OP_FFN:
        return slot == 0 || slot == 2;
    default:
        return false;
    }
}

/* The weight types of the program's matrices: one 16-bit type (f16 when
 * none is 16-bit) and the set of quantized ones; any other type is an
 * error that names the tensor. */
static flock_status matrix_types(const flock_program *p, flock_dtype *wtype, uint32_t *qtypes, flock_error *err)
{
    flock_dtype w16 = FLOCK_DTYPE_COUNT;
    const char *w16_name = NULL;
    uint32_t q = 0;
    for (uint32_t i = 0; i < p->n_ops; i++)
        for (int j = 0; j < FLOCK_OP_MAX_W; j++) {
            const int32_t t = p->ops[i].w[j];
            if (t < 0 || (uint32_t)t >= p->n_tensors || !is_kernel_matrix(&p->ops[i], j))
                continue;
            const flock_tensor_ref *tr = &p->tensors[t];
            if (tr->dtype == FLOCK_DTYPE_F16 || tr->dtype == FLOCK_DTYPE_BF16) {
                if (w16 != FLOCK_DTYPE_COUNT && w16 != tr->dtype)
                    return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                           "codegen: tensor '%s' is %s but '%s' is %s: the CUDA kernels read one "
                                           "16-bit type per model",
                                           tr->name, flock_dtype_name(tr->dtype), w16_name, flock_dtype_name(w16));
                w16 = tr->dtype;
                w16_name = tr->name;
            } else if ((unsigned)tr->dtype < 32 && (FLOCK_CODEGEN_QTYPES & (1u << tr->dtype))) {
                q |= 1u << tr->dtype;
            } else {
                return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                       "codegen: tensor '%s' (op %u, %s) is %s: the CUDA kernels read f16, bf16, "
                                       "q8_0, q4_0 and q4_1 matrices",
                                       tr->name, (unsigned)i, flock_op_kind_name(p->ops[i].kind),
                                       flock_dtype_name(tr->dtype));
            }
        }
    *wtype = w16 == FLOCK_DTYPE_COUNT ? FLOCK_DTYPE_F16 : w16;
    *qtypes = q;
    return FLOCK_OK;
}

flock_status flock_codegen_model_from_program(const flock_program *p, const float *keep, uint32_t n_keep,
                                              flock_dtype kv_type, flock_codegen_model *out,
                                              flock_error *err)
{
    if (!p || !out || (n_keep && !keep) || n_keep > FLOCK_CODEGEN_MAX_KEEP)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen: bad arguments (n_keep %u)", (unsigned)n_keep);
    flock_codegen_model m;
    memset(&m, 0, sizeof m);
    m.d_model = p->cfg.d_model;
    m.vocab = p->cfg.n_vocab;
    m.kv_type = kv_type;
    m.n_keep = n_keep;
    for (uint32_t i = 0; i < n_keep; i++)
        m.keep[i] = keep[i];
    bool have_attn = false, have_ffn = false, have_rope = false;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        if (op->kind == FLOCK_OP_ATTENTION) {
            if (have_attn && (op->n_head != m.n_head || op->n_kv_head != m.n_kv_head ||
                              op->head_dim != m.head_dim || op->scale != m.attn_scale ||
                              op->softcap != m.attn_softcap))
                return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                       "codegen: op %u (attention, layer %d) differs from the first attention op",
                                       (unsigned)i, (int)op->layer);
            m.n_head = op->n_head;
            m.n_kv_head = op->n_kv_head;
            m.head_dim = op->head_dim;
            m.attn_scale = op->scale;
            m.attn_softcap = op->softcap;
            have_attn = true;
        } else if (op->kind == FLOCK_OP_ROPE) {
            if (have_rope && (op->rope_dim != m.rope_dim || op->rope_style != m.rope_style))
                return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                       "codegen: op %u (rope, layer %d) differs from the first rope op",
                                       (unsigned)i, (int)op->layer);
            m.rope_dim = op->rope_dim;
            m.rope_style = op->rope_style;
            have_rope = true;
        } else if (op->kind == FLOCK_OP_FFN) {
            if (op->w[0] < 0 || (uint32_t)op->w[0] >= p->n_tensors)
                return flock_error_set(err, FLOCK_E_CORRUPT, "codegen: op %u (ffn) has no weight 0", (unsigned)i);
            if (have_ffn && (op->d_ff != m.d_ff || op->act != m.act || op->gated != m.gated))
                return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                       "codegen: op %u (ffn, layer %d) differs from the first ffn op "
                                       "(d_ff, act or gating)", (unsigned)i, (int)op->layer);
            if (op->ffn_layout != FLOCK_FFN_PACKED)
                return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                       "codegen: op %u (ffn, layer %d) is not in the packed gather layout "
                                       "(run the gather-layout pass first)", (unsigned)i, (int)op->layer);
            m.d_ff = op->d_ff;
            m.act = op->act;
            m.gated = op->gated;
            have_ffn = true;
        } else if (op->kind == FLOCK_OP_LM_HEAD && op->w[0] >= 0 && (uint32_t)op->w[0] < p->n_tensors) {
            const flock_tensor_ref *t = &p->tensors[op->w[0]];
            if (t->n_dims == 2 && t->shape[0] <= (uint64_t)MAX_DIM)
                m.vocab = (int32_t)t->shape[0];
        }
    }
    if (!have_attn || !have_ffn)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "codegen: the program has no %s op",
                               have_attn ? "ffn" : "attention");
    flock_status st = matrix_types(p, &m.wtype, &m.qtypes, err);
    if (st || (st = flock_codegen_model_check(&m, err)))
        return st;
    *out = m;
    return FLOCK_OK;
}
