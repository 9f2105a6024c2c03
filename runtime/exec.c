/* The executor: program validation, buffer planning and the op walk. The
 * per-op compute lives in exec_ops.c. */
#include "attention.h"
#include "exec_impl.h"
#include "griffin.h"

#include <stdlib.h>
#include <string.h>

void *flock_aligned_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static const flock_wmat *wt(const flock_exec *e, int32_t id)
{
    return id >= 0 && (uint32_t)id < e->prog->n_tensors ? &e->tensors[id] : NULL;
}

/* Checks that tensor w[slot] of op `i` exists, has rows x cols elements
 * (rows = -1: any) and, for vectors, is f32. */
static flock_status need_w(const flock_exec *e, int i, int slot, int64_t rows, int64_t cols, bool vec,
                           flock_error *err)
{
    const flock_op *op = &e->prog->ops[i];
    const flock_wmat *w = wt(e, op->w[slot]);
    const char *kind = flock_op_kind_name(op->kind);
    if (!w || !w->data)
        return flock_error_set(err, FLOCK_E_CORRUPT, "op %d (%s, layer %d): weight %d is missing", i, kind,
                               op->layer, slot);
    const char *name = e->prog->tensors[op->w[slot]].name;
    if (vec) {
        if (w->dtype != FLOCK_DTYPE_F32 || w->rows * w->cols != cols)
            return flock_error_set(err, FLOCK_E_CORRUPT,
                                   "op %d (%s, layer %d): tensor '%s' must be f32 with %lld elements, "
                                   "found %s with %lld",
                                   i, kind, op->layer, name, (long long)cols, flock_dtype_name(w->dtype),
                                   (long long)(w->rows * w->cols));
        return FLOCK_OK;
    }
    if (w->dtype != FLOCK_DTYPE_F32 && w->dtype != FLOCK_DTYPE_F16 && w->dtype != FLOCK_DTYPE_BF16)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "op %d (%s): tensor '%s' has dtype %s", i, kind, name,
                               flock_dtype_name(w->dtype));
    if ((rows >= 0 && w->rows != rows) || w->cols != cols)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "op %d (%s, layer %d): tensor '%s' is [%lld, %lld], expected [%lld, %lld]", i,
                               kind, op->layer, name, (long long)w->rows, (long long)w->cols, (long long)rows,
                               (long long)cols);
    return FLOCK_OK;
}

static int32_t vwidth(const flock_exec *e, int32_t v)
{
    return e->prog->values[v].width;
}

/* Shape checks for every op, so a hostile program cannot make a kernel read
 * or write out of bounds. */
static flock_status validate(flock_exec *e, flock_error *err)
{
    const flock_program *p = e->prog;
    if (p->n_values == 0 || p->values[0].dtype != FLOCK_DTYPE_I32 || p->values[0].width != 1)
        return flock_error_set(err, FLOCK_E_CORRUPT, "program: value 0 must be the token ids (i32, width 1)");
    int n_head_ops = 0;
    uint8_t *defined = calloc(p->n_values, 1);
    if (!defined)
        return flock_error_set(err, FLOCK_E_NOMEM, "program: out of memory");
    defined[0] = 1;
    flock_status st = FLOCK_OK;
#define FAIL(...) do { st = flock_error_set(err, FLOCK_E_CORRUPT, __VA_ARGS__); goto done; } while (0)
#define CHECK(x) do { if ((st = (x)) != FLOCK_OK) goto done; } while (0)
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        const char *kind = flock_op_kind_name(op->kind);
        if ((unsigned)op->kind >= FLOCK_OP_COUNT)
            FAIL("op %u: unknown kind %d", i, (int)op->kind);
        if (op->n_in < 1 || op->n_in > FLOCK_OP_MAX_IN)
            FAIL("op %u (%s): %d inputs", i, kind, op->n_in);
        for (int j = 0; j < op->n_in; j++)
            if (op->in[j] < 0 || (uint32_t)op->in[j] >= p->n_values || !defined[op->in[j]])
                FAIL("op %u (%s): input %d is value %d, not defined before", i, kind, j, op->in[j]);
        if (op->out <= 0 || (uint32_t)op->out >= p->n_values || defined[op->out])
            FAIL("op %u (%s): output value %d is invalid or defined twice", i, kind, op->out);
        if (p->values[op->out].width <= 0 || p->values[op->out].dtype != FLOCK_DTYPE_F32)
            FAIL("op %u (%s): output value must be f32 with a positive width", i, kind);
        for (int j = 0; j < op->n_in; j++)
            if (op->kind != FLOCK_OP_EMBED && op->in[j] == 0)
                FAIL("op %u (%s): the token ids are not an activation", i, kind);
        defined[op->out] = 1;
        int32_t wi = vwidth(e, op->in[0]), wo = vwidth(e, op->out);
        switch (op->kind) {
        case FLOCK_OP_EMBED:
            if (op->in[0] != 0)
                FAIL("op %u (embed): input must be the token ids", i);
            CHECK(need_w(e, (int)i, 0, -1, wo, false, err));
            if (e->n_vocab == 0)
                e->n_vocab = (int32_t)wt(e, op->w[0])->rows;
            e->embed_rows = (int32_t)wt(e, op->w[0])->rows;
            break;
        case FLOCK_OP_POS_EMBED:
            if (wi != wo)
                FAIL("op %u (pos_embed): width %d -> %d", i, wi, wo);
            CHECK(need_w(e, (int)i, 0, -1, wo, false, err));
            if (op->pos_offset < 0)
                FAIL("op %u (pos_embed): negative offset", i);
            break;
        case FLOCK_OP_RMSNORM:
            if (wi != wo || op->group <= 0 || wi % op->group != 0)
                FAIL("op %u (rmsnorm, layer %d): width %d, group %d", i, op->layer, wi, op->group);
            CHECK(need_w(e, (int)i, 0, 1, op->group, true, err));
            break;
        case FLOCK_OP_LAYERNORM:
            if (wi != wo)
                FAIL("op %u (layernorm): width %d -> %d", i, wi, wo);
            CHECK(need_w(e, (int)i, 0, 1, wo, true, err));
            if (op->w[1] >= 0)
                CHECK(need_w(e, (int)i, 1, 1, wo, true, err));
            break;
        case FLOCK_OP_LINEAR:
            CHECK(need_w(e, (int)i, 0, wo, wi, false, err));
            if (op->w[1] >= 0)
                CHECK(need_w(e, (int)i, 1, 1, wo, true, err));
            break;
        case FLOCK_OP_ROPE:
            if (wi != wo || op->n_head <= 0 || op->head_dim <= 0 || (int64_t)op->n_head * op->head_dim != wi ||
                op->rope_dim <= 0 || op->rope_dim > op->head_dim || op->rope_dim % 2 ||
                (unsigned)op->rope_style >= FLOCK_ROPE_STYLE_COUNT ||
                (unsigned)op->rope_scaling >= FLOCK_ROPE_SCALING_COUNT || !(op->rope_theta > 0))
                FAIL("op %u (rope, layer %d): width %d, %d heads x %d, rope_dim %d", i, op->layer, wi,
                     op->n_head, op->head_dim, op->rope_dim);
            if (op->rope_scaling != FLOCK_ROPE_SCALING_NONE && !(op->rope_factor > 0))
                FAIL("op %u (rope): scaling factor %g", i, op->rope_factor);
            if (op->rope_dim > e->max_rope_dim)
                e->max_rope_dim = op->rope_dim;
            break;
        case FLOCK_OP_ATTENTION: {
            if (op->n_in != 3 || op->n_head <= 0 || op->n_kv_head <= 0 || op->head_dim <= 0 ||
                op->n_head % op->n_kv_head != 0)
                FAIL("op %u (attention, layer %d): %d heads, %d kv heads", i, op->layer, op->n_head,
                     op->n_kv_head);
            int64_t qw = (int64_t)op->n_head * op->head_dim, kw = (int64_t)op->n_kv_head * op->head_dim;
            if (wi != qw || vwidth(e, op->in[1]) != kw || vwidth(e, op->in[2]) != kw || wo != qw)
                FAIL("op %u (attention, layer %d): widths q %d k %d v %d out %d, expected %lld/%lld", i,
                     op->layer, wi, vwidth(e, op->in[1]), vwidth(e, op->in[2]), wo, (long long)qw,
                     (long long)kw);
            if (op->kv_slot < 0 || op->kv_slot >= p->cfg.n_kv_slots || op->kv_slot >= FLOCK_MAX_KV_SLOTS)
                FAIL("op %u (attention): kv slot %d of %d", i, op->kv_slot, p->cfg.n_kv_slots);
            if (e->kv_width[op->kv_slot] && e->kv_width[op->kv_slot] != kw)
                FAIL("op %u (attention): kv slot %d used with two widths", i, op->kv_slot);
            e->kv_width[op->kv_slot] = (int32_t)kw;
            e->max_heads = op->n_head > e->max_heads ? op->n_head : e->max_heads;
            e->max_head_dim = op->head_dim > e->max_head_dim ? op->head_dim : e->max_head_dim;
            if (op->window < 0)
                FAIL("op %u (attention): window %d", i, op->window);
            break;
        }
        case FLOCK_OP_ADD:
            if (op->n_in != 2 || wi != wo || vwidth(e, op->in[1]) != wo)
                FAIL("op %u (add): widths %d + %d -> %d", i, wi, vwidth(e, op->in[1]), wo);
            break;
        case FLOCK_OP_FFN: {
            if (wi != wo || op->d_ff <= 0 || (unsigned)op->act >= FLOCK_ACT_COUNT)
                FAIL("op %u (ffn, layer %d): width %d -> %d, d_ff %d", i, op->layer, wi, wo, op->d_ff);
            if (op->ffn_layout != FLOCK_FFN_PACKED)
                FAIL("op %u (ffn, layer %d): the runtime executes the packed FF layout only "
                     "(compile with the gather-layout pass)", i, op->layer);
            CHECK(need_w(e, (int)i, 0, op->d_ff, op->gated ? 2 * (int64_t)wo : wo, false, err));
            CHECK(need_w(e, (int)i, 2, op->d_ff, wo, false, err));
            if (!op->gated && op->w[3] >= 0)
                CHECK(need_w(e, (int)i, 3, 1, op->d_ff, true, err));
            if (op->w[4] >= 0)
                CHECK(need_w(e, (int)i, 4, 1, wo, true, err));
            e->n_ffn++;
            if (op->d_ff > e->max_dff)
                e->max_dff = op->d_ff;
            break;
        }
        case FLOCK_OP_LM_HEAD:
            CHECK(need_w(e, (int)i, 0, -1, wi, false, err));
            if (wo != wt(e, op->w[0])->rows)
                FAIL("op %u (lm_head): output width %d, weight has %lld rows", i, wo,
                     (long long)wt(e, op->w[0])->rows);
            e->n_vocab = wo;
            e->head_op = (int32_t)i;
            n_head_ops++;
            break;
        default:
            FAIL("op %u: unknown kind %d", i, (int)op->kind);
        }
        if (op->kind != FLOCK_OP_LM_HEAD && wo > e->max_width)
            e->max_width = wo;
        if (op->kind != FLOCK_OP_LM_HEAD && wi > e->max_width)
            e->max_width = wi;
    }
    if (n_head_ops != 1)
        FAIL("program: %d lm_head ops, expected 1", n_head_ops);
#undef FAIL
#undef CHECK
done:
    free(defined);
    return st;
}

/* Assigns each value a buffer slot: a slot is reused once the last op that
 * reads its value has run. The lm_head output is the logits array. */
static flock_status plan_buffers(flock_exec *e, flock_error *err)
{
    const flock_program *p = e->prog;
    int32_t *last_use = malloc(p->n_values * sizeof *last_use);
    int32_t *slot_owner = malloc((p->n_values + 1) * sizeof *slot_owner);
    e->value_slot = malloc(p->n_values * sizeof *e->value_slot);
    if (!last_use || !slot_owner || !e->value_slot) {
        free(last_use);
        free(slot_owner);
        return flock_error_set(err, FLOCK_E_NOMEM, "executor: out of memory");
    }
    for (uint32_t v = 0; v < p->n_values; v++) {
        last_use[v] = -1;
        e->value_slot[v] = -1;
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
            e->value_slot[op->out] = s;
        }
        /* Free the inputs read for the last time, and a value nobody reads. */
        for (int j = 0; j < op->n_in; j++) {
            int32_t v = op->in[j];
            if (v > 0 && e->value_slot[v] < 0) {
                free(last_use);
                free(slot_owner);
                return flock_error_set(err, FLOCK_E_CORRUPT, "op %u (%s): reads the logits value %d", i,
                                       flock_op_kind_name(op->kind), v);
            }
            if (v > 0 && last_use[v] == (int32_t)i && e->value_slot[v] >= 0)
                slot_owner[e->value_slot[v]] = -1;
        }
        if (op->kind != FLOCK_OP_LM_HEAD && last_use[op->out] < 0)
            slot_owner[e->value_slot[op->out]] = -1;
    }
    free(last_use);
    free(slot_owner);
    e->n_slots = n_slots;
    return FLOCK_OK;
}

/* A zeroed executor over program p (head_op -1), its KV slot count checked. */
static flock_status exec_new(const flock_program *p, const flock_wmat *tensors, flock_exec **out, flock_error *err)
{
    if (p->cfg.n_kv_slots < 0 || p->cfg.n_kv_slots > FLOCK_MAX_KV_SLOTS)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "program: %d kv slots (at most %d)",
                               p->cfg.n_kv_slots, FLOCK_MAX_KV_SLOTS);
    flock_exec *e = calloc(1, sizeof *e);
    if (!e)
        return flock_error_set(err, FLOCK_E_NOMEM, "executor: out of memory");
    e->prog = p;
    e->tensors = tensors;
    e->head_op = -1;
    *out = e;
    return FLOCK_OK;
}

flock_status flock_exec_create(const flock_program *p, const flock_wmat *tensors,
                               const flock_kernel_table *k, flock_pool *pool, int32_t n_ctx,
                               bool all_logits, flock_exec **out, flock_error *err)
{
    if (!p || !tensors || !k || !pool || !out || n_ctx <= 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_exec_create: bad argument");
    flock_exec *e = NULL;
    flock_status st = exec_new(p, tensors, &e, err);
    if (st != FLOCK_OK)
        return st;
    e->k = k;
    e->pool = pool;
    e->n_ctx = n_ctx;
    e->all_logits = all_logits;
    e->chunk = n_ctx < FLOCK_EXEC_CHUNK ? n_ctx : FLOCK_EXEC_CHUNK;
    e->n_threads = flock_pool_threads(pool);
    st = validate(e, err);
    if (st == FLOCK_OK)
        st = plan_buffers(e, err);
    if (st != FLOCK_OK) {
        flock_exec_free(e);
        return st;
    }
    size_t chunk = (size_t)e->chunk, nt = (size_t)e->n_threads;
    size_t maxw = (size_t)e->max_width, dff = (size_t)(e->max_dff > 0 ? e->max_dff : 1);
    size_t max_cols = maxw * 2 > dff ? maxw * 2 : dff; /* widest weight row (gate_up: 2d) */
    bool ok = true;
    e->slot_mem = flock_aligned_alloc((size_t)e->n_slots * chunk * maxw * sizeof(float));
    ok = ok && e->slot_mem;
    for (int s = 0; s < p->cfg.n_kv_slots; s++) {
        size_t bytes = (size_t)n_ctx * (size_t)(e->kv_width[s] > 0 ? e->kv_width[s] : 1) * sizeof(float);
        e->kcache[s] = flock_aligned_alloc(bytes);
        e->vcache[s] = flock_aligned_alloc(bytes);
        ok = ok && e->kcache[s] && e->vcache[s];
    }
    e->ffn_h = flock_aligned_alloc(chunk * 2 * dff * sizeof(float));
    e->ffn_z = flock_aligned_alloc(chunk * dff * sizeof(float));
    e->part = flock_aligned_alloc((size_t)FLOCK_GATHER_SLICES * maxw * sizeof(float));
    e->att_scratch = flock_aligned_alloc(
        flock_att_scratch_floats((int)nt, n_ctx, e->max_heads > 0 ? e->max_heads : 1,
                                 e->max_head_dim > 0 ? e->max_head_dim : 1) * sizeof(float));
    e->tile = flock_aligned_alloc(nt * max_cols * FLOCK_EXEC_TILE * sizeof(float));
    e->dscratch = flock_aligned_alloc(nt * dff * 64 * sizeof(float));
    e->rope_cs = flock_aligned_alloc((size_t)(e->max_rope_dim + 2) * sizeof(float));
    e->logits = flock_aligned_alloc((all_logits ? (size_t)n_ctx : 1) * (size_t)e->n_vocab * sizeof(float));
    e->ffn = calloc((size_t)(e->n_ffn > 0 ? e->n_ffn : 1), sizeof *e->ffn);
    e->op_ffn = malloc(p->n_ops * sizeof *e->op_ffn);
    ok = ok && e->ffn_h && e->ffn_z && e->part && e->att_scratch && e->tile && e->dscratch && e->rope_cs && e->logits && e->ffn &&
         e->op_ffn;
    int32_t fi = 0;
    for (uint32_t i = 0; ok && i < p->n_ops; i++) {
        e->op_ffn[i] = -1;
        if (p->ops[i].kind != FLOCK_OP_FFN)
            continue;
        flock_exec_ffn *f = &e->ffn[fi];
        f->op = (int32_t)i;
        f->layer = p->ops[i].layer;
        f->d_ff = p->ops[i].d_ff;
        f->k = -1;
        f->idx = malloc((size_t)f->d_ff * sizeof *f->idx);
        f->sumsq = calloc((size_t)f->d_ff, sizeof *f->sumsq);
        ok = f->idx && f->sumsq;
        e->op_ffn[i] = fi++;
    }
    if (!ok) {
        flock_exec_free(e);
        return flock_error_set(err, FLOCK_E_NOMEM, "executor: out of memory for buffers (context %d)", n_ctx);
    }
    *out = e;
    return FLOCK_OK;
}

flock_status flock_exec_plan_program(const flock_program *p, const flock_wmat *tensors, flock_exec_plan *out,
                                     flock_error *err)
{
    if (!p || !tensors || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_exec_plan_program: NULL argument");
    flock_exec *e = NULL;
    flock_status st = exec_new(p, tensors, &e, err);
    if (st != FLOCK_OK)
        return st;
    st = validate(e, err);
    if (st == FLOCK_OK)
        st = plan_buffers(e, err);
    if (st == FLOCK_OK) {
        memset(out, 0, sizeof *out);
        out->n_vocab = e->n_vocab;
        out->embed_rows = e->embed_rows;
        out->head_op = e->head_op;
        out->max_width = e->max_width;
        out->max_dff = e->max_dff;
        out->n_ffn = e->n_ffn;
        out->n_slots = e->n_slots;
        memcpy(out->kv_width, e->kv_width, sizeof out->kv_width);
        out->value_slot = e->value_slot;
        e->value_slot = NULL;
    }
    flock_exec_free(e);
    return st;
}

void flock_exec_plan_free(flock_exec_plan *plan)
{
    if (plan) {
        free(plan->value_slot);
        plan->value_slot = NULL;
    }
}

void flock_exec_free(flock_exec *e)
{
    if (!e)
        return;
    free(e->value_slot);
    free(e->slot_mem);
    for (int s = 0; s < FLOCK_MAX_KV_SLOTS; s++) {
        free(e->kcache[s]);
        free(e->vcache[s]);
    }
    free(e->ffn_h);
    free(e->ffn_z);
    free(e->part);
    free(e->att_scratch);
    free(e->tile);
    free(e->rope_cs);
    free(e->dscratch);
    free(e->logits);
    if (e->ffn)
        for (int32_t i = 0; i < e->n_ffn; i++) {
            free(e->ffn[i].idx);
            free(e->ffn[i].sumsq);
        }
    free(e->ffn);
    free(e->op_ffn);
    free(e->gen_ffn);
    free(e->gen_k);
    free(e->gen_mv);
    free(e);
}

int flock_exec_use_jit(flock_exec *e, const flock_cpu_jit *j, double keep)
{
    const flock_program *p = e->prog;
    free(e->gen_ffn);
    free(e->gen_k);
    free(e->gen_mv);
    e->gen_ffn = NULL;
    e->gen_k = NULL;
    e->gen_mv = NULL;
    if (!j)
        return 0;
    size_t nf = (size_t)(e->n_ffn > 0 ? e->n_ffn : 1);
    flock_cpu_ffn_kernels *gf = calloc(nf, sizeof *gf);
    int64_t *gk = calloc(nf, sizeof *gk);
    flock_cpu_matvec_fn *gm = calloc(p->n_ops ? p->n_ops : 1, sizeof *gm);
    if (!gf || !gk || !gm) {
        free(gf);
        free(gk);
        free(gm);
        return -1;
    }
    int used = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        const flock_wmat *w = wt(e, op->w[0]);
        int32_t wi = p->values[op->in[0]].width;
        if (op->kind == FLOCK_OP_FFN && op->gated) {
            int32_t fi = e->op_ffn[i];
            int64_t k = flock_keep_count(keep, op->d_ff);
            /* the kernels are generated for the packed tensors: both in one dtype */
            if (wt(e, op->w[2])->dtype != w->dtype ||
                flock_cpu_jit_find_ffn(j, w->dtype, op->act, wi, op->d_ff, (int32_t)k, &gf[fi], NULL) != FLOCK_OK ||
                !gf[fi].up || !gf[fi].down) {
                memset(&gf[fi], 0, sizeof gf[fi]);
                continue;
            }
            gk[fi] = k;
            used++;
        } else if (op->kind == FLOCK_OP_LINEAR || op->kind == FLOCK_OP_LM_HEAD) {
            if (flock_cpu_jit_find_matvec(j, w->dtype, wi, &gm[i], NULL) == FLOCK_OK && gm[i])
                used++;
            else
                gm[i] = NULL;
        }
    }
    e->gen_ffn = gf;
    e->gen_k = gk;
    e->gen_mv = gm;
    return used;
}

void flock_exec_reset(flock_exec *e)
{
    e->n_past = 0;
    for (int32_t i = 0; i < e->n_ffn; i++) {
        e->ffn[i].k = -1;
        memset(e->ffn[i].sumsq, 0, (size_t)e->ffn[i].d_ff * sizeof(double));
    }
}

float *flock_exec_value(flock_exec *e, int32_t v)
{
    return e->slot_mem + (size_t)e->value_slot[v] * (size_t)e->chunk * (size_t)e->max_width;
}

/* One chunk of T <= chunk tokens at positions n_past.. */
static flock_status run_chunk(flock_exec *e, const int32_t *ids, int32_t T, flock_ff_mode mode, bool stats,
                              flock_error *err)
{
    const flock_program *p = e->prog;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        if (T == 1 && p->ops[i].kind == FLOCK_OP_LINEAR) {
            i += (uint32_t)flock_exec_linear_group(e, (int32_t)i) - 1;
            continue;
        }
        flock_status st = flock_exec_op(e, &p->ops[i], (int32_t)i, ids, T, mode, stats, err);
        if (st != FLOCK_OK)
            return st;
    }
    e->n_past += (size_t)T;
    return FLOCK_OK;
}

flock_status flock_exec_run(flock_exec *e, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                            flock_error *err)
{
    if (n == 0)
        return FLOCK_OK;
    if (!ids)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "no token ids");
    if (n > (size_t)e->n_ctx - e->n_past)
        return flock_error_set(err, FLOCK_E_RANGE,
                               "%zu tokens do not fit in the context: %zu already used of %d (needs %zu)", n,
                               e->n_past, e->n_ctx, e->n_past + n);
    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= e->embed_rows)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "token %zu is id %d, outside the vocabulary [0, %d)",
                                   t, ids[t], e->embed_rows);
    if (mode == FLOCK_FF_SPARSE)
        for (int32_t i = 0; i < e->n_ffn; i++)
            if (e->ffn[i].k < 0)
                return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                       "no experts are selected for layer %d: run a prompt first",
                                       e->ffn[i].layer);
    flock_status st = flock_exec_check_positions(e, n, err);
    if (st != FLOCK_OK)
        return st;
    /* Sparse steps run one token at a time (the gather kernel is a
     * matrix-vector product); the full FF takes whole chunks. */
    size_t step = mode == FLOCK_FF_SPARSE ? 1 : (size_t)e->chunk;
    for (size_t t = 0; t < n; t += step) {
        int32_t T = (int32_t)(n - t < step ? n - t : step);
        if ((st = run_chunk(e, ids + t, T, mode, stats, err)) != FLOCK_OK)
            return st;
    }
    return FLOCK_OK;
}

void flock_exec_set_chunk(flock_exec *e, int32_t chunk)
{
    int32_t cap = e->n_ctx < FLOCK_EXEC_CHUNK ? e->n_ctx : FLOCK_EXEC_CHUNK;
    e->chunk = chunk < 1 ? 1 : chunk > cap ? cap : chunk;
}

size_t flock_exec_n_past(const flock_exec *e)
{
    return e->n_past;
}

int32_t flock_exec_n_ctx(const flock_exec *e)
{
    return e->n_ctx;
}

int32_t flock_exec_n_vocab(const flock_exec *e)
{
    return e->n_vocab;
}

const float *flock_exec_logits(const flock_exec *e)
{
    return e->logits;
}

size_t flock_exec_n_ffn(const flock_exec *e)
{
    return (size_t)e->n_ffn;
}

flock_exec_ffn *flock_exec_ffn_at(flock_exec *e, size_t i)
{
    return i < (size_t)e->n_ffn ? &e->ffn[i] : NULL;
}

static uint64_t wbytes(const flock_wmat *w)
{
    return (uint64_t)w->rows * (uint64_t)w->cols * flock_dtype_size(w->dtype);
}

uint64_t flock_program_decode_bytes(const flock_program *p, const flock_wmat *tensors, const flock_exec_ffn *ffn)
{
    uint64_t total = 0;
    int32_t fi = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        switch (op->kind) {
        case FLOCK_OP_EMBED: /* one row */
        case FLOCK_OP_POS_EMBED:
            total += wbytes(&tensors[op->w[0]]) / (uint64_t)tensors[op->w[0]].rows;
            break;
        case FLOCK_OP_FFN: {
            int64_t k = ffn[fi].k < 0 ? op->d_ff : ffn[fi].k;
            fi++;
            total += (wbytes(&tensors[op->w[0]]) + wbytes(&tensors[op->w[2]])) / (uint64_t)op->d_ff * (uint64_t)k;
            break;
        }
        case FLOCK_OP_ATTENTION:
        case FLOCK_OP_ADD:
        case FLOCK_OP_ROPE:
            break;
        default:
            for (int j = 0; j < FLOCK_OP_MAX_W; j++)
                if (op->w[j] >= 0 && (uint32_t)op->w[j] < p->n_tensors)
                    total += wbytes(&tensors[op->w[j]]);
        }
    }
    return total;
}

uint64_t flock_exec_decode_bytes(const flock_exec *e)
{
    return flock_program_decode_bytes(e->prog, e->tensors, e->ffn);
}
