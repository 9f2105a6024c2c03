/* The CUDA executor's setup: the program checked against the model facts
 * the kernels were specialized on, every kernel an op needs resolved by
 * name, the weights uploaded once, every buffer allocated (cuda_exec.h).
 * The op walk is in cuda_ops.c. */
#include "cuda_exec_impl.h"
#include "error_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned cdiv(uint64_t a, uint64_t b)
{
    return (unsigned)((a + b - 1) / b);
}

flock_status flock_cuda_launch(flock_cuda_exec *c, const cuda_kern *k, unsigned gx, unsigned gy, unsigned gz,
                               void **args, flock_error *err)
{
    const unsigned grid[3] = {gx, gy, gz};
    FORWARD_IF_ERROR(c->drv->launch(c->drv, k->fn, grid, k->info.block, k->info.dyn_smem, args, err), err,
                     "%s grid (%u, %u, %u)", k->info.name, gx, gy, gz);
    return FLOCK_OK;
}

/* ---- kernels by name -------------------------------------------------------- */

/* The kernel `name` of the section, resolved once; FLOCK_E_NOT_FOUND naming
 * it and the op that needs it when the section lacks it. */
static flock_status kernel(flock_cuda_exec *c, int32_t op, const cuda_kern **out, flock_error *err,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static flock_status kernel(flock_cuda_exec *c, int32_t op, const cuda_kern **out, flock_error *err,
                           const char *fmt, ...)
{
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t i = flock_cuda_blob_find(&c->blob, name);
    if (i < 0) {
        const flock_op *o = op >= 0 ? &c->prog->ops[op] : NULL;
        return flock_error_set(err, FLOCK_E_NOT_FOUND,
                               "kernel section %s has no kernel %s (needed by %s%s%d%s): it was generated for "
                               "another model, dtype or keep ratio; recompile the bundle with flockc --target",
                               c->section, name, o ? flock_op_kind_name(o->kind) : "GRIFFIN's selection",
                               o ? " op " : "", o ? op : 0, o ? "" : "");
    }
    cuda_kern *k = &c->kerns[i];
    if (!k->fn) {
        flock_status st = flock_cuda_blob_kernel(&c->blob, (size_t)i, &k->info, err);
        if (st == FLOCK_OK)
            st = c->drv->get_function(c->drv, c->mod, name, &k->fn, err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "kernel section %s", c->section);
        if (k->info.block[0] * k->info.block[1] * k->info.block[2] == 0 || k->info.block[0] > 1024)
            return flock_error_set(err, FLOCK_E_CORRUPT, "kernel section %s: %s has block (%u, %u, %u)", c->section,
                                   name, k->info.block[0], k->info.block[1], k->info.block[2]);
        /* One wave of resident blocks (grid-stride kernels use no more). */
        int per_sm = 0;
        st = c->drv->blocks_per_sm(c->drv, k->fn, k->info.block[0] * k->info.block[1] * k->info.block[2],
                                   k->info.dyn_smem, &per_sm, err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "kernel %s", name);
        int sms = c->drv->info.sm_count > 0 ? c->drv->info.sm_count : 1;
        k->wave = (unsigned)(per_sm > 0 ? per_sm : 1) * (unsigned)sms;
    }
    *out = k;
    return FLOCK_OK;
}

/* ---- the program against the kernels' model facts ---------------------------- */

#define MISMATCH(...) flock_error_set(err, FLOCK_E_UNSUPPORTED, __VA_ARGS__)

static bool is_qtype(flock_dtype t)
{
    return t == FLOCK_DTYPE_Q8_0 || t == FLOCK_DTYPE_Q4_0 || t == FLOCK_DTYPE_Q4_1;
}

/* A matrix must be stored in the kernels' 16-bit weight type or in a
 * quantized type they read; *q says which kernels: NULL for the 16-bit
 * ones, else the type's name (the quantized kernels carry it: "flock_qgemv_q8_0_..."). */
static flock_status weight_type(flock_cuda_exec *c, int32_t i, int slot, const char **q, flock_error *err)
{
    const flock_op *op = &c->prog->ops[i];
    const flock_wmat *w = &c->tensors[op->w[slot]];
    *q = NULL;
    if (is_qtype(w->dtype)) {
        *q = flock_dtype_name(w->dtype);
        /* The dequantized copy for prefill's GEMM (LINEAR, FFN): the largest sizes the scratch. */
        uint64_t b16 = (uint64_t)w->rows * (uint64_t)w->cols * 2;
        if (op->kind != FLOCK_OP_EMBED && op->kind != FLOCK_OP_POS_EMBED && op->kind != FLOCK_OP_LM_HEAD &&
            b16 > c->wscratch_bytes)
            c->wscratch_bytes = b16;
        return FLOCK_OK;
    }
    if (w->dtype != c->blob.model.wtype)
        return MISMATCH("op %d (%s, layer %d): tensor '%s' is %s; the CUDA kernels of %s read %s, q8_0, q4_0 and "
                        "q4_1 weights (compile the bundle with --dtype %s)",
                        i, flock_op_kind_name(op->kind), op->layer, c->prog->tensors[op->w[slot]].name,
                        flock_dtype_name(w->dtype), c->section, flock_dtype_name(c->blob.model.wtype),
                        flock_dtype_name(c->blob.model.wtype));
    return FLOCK_OK;
}

/* The kernels each op launches (cuda_op.k by kind):
 *   EMBED k0 embed; POS_EMBED k0 pos_embed; RMSNORM k0 rmsnorm_g<group>;
 *   LAYERNORM k0 layernorm_g<width>; LINEAR k0 gemv, k1 gemm; ROPE k0 rope;
 *   ATTENTION k0 kv_store, k1 attn_partial, k2 attn_combine; ADD k0 add;
 *   FFN k0 ffn_up_prefill, k1 ffn_down_prefill, k2 ffn_gather_k<K>,
 *   k3 ffn_down_k<K>; LM_HEAD k0 gemv.
 * A quantized matrix (type q) takes qembed_<q>, qpos_embed_<q>,
 * qgemv_<q>_n<N>_k<K>, qffn_gather_<q>_k<K>, qffn_down_<q>_k<K> instead, and
 * dq[0] (w[0]) / dq[1] (FFN down_t) = dequant_<q>: prefill expands the
 * matrix into wscratch and runs the same 16-bit GEMM. */
static flock_status resolve_op(flock_cuda_exec *c, int32_t i, flock_error *err)
{
    const flock_op *op = &c->prog->ops[i];
    const flock_cuda_blob_model *m = &c->blob.model;
    cuda_op *o = &c->ops[i];
    const int32_t wi = c->prog->values[op->in[0]].width, wo = c->prog->values[op->out].width;
    const char *kind = flock_op_kind_name(op->kind);
    flock_status st = FLOCK_OK;
    o->ffn = -1;
    switch (op->kind) {
    case FLOCK_OP_EMBED: {
        const flock_wmat *t = &c->tensors[op->w[0]];
        if (wo != m->d_model || t->rows != m->vocab)
            return MISMATCH("op %d (embed): table [%lld, %d]; the kernels of %s take [%d, %d]", i,
                            (long long)t->rows, wo, c->section, m->vocab, m->d_model);
        const char *q;
        if ((st = weight_type(c, i, 0, &q, err)))
            return st;
        return q ? kernel(c, i, &o->k[0], err, "flock_qembed_%s", q) : kernel(c, i, &o->k[0], err, "flock_embed");
    }
    case FLOCK_OP_POS_EMBED: {
        if (wo != m->d_model)
            return MISMATCH("op %d (pos_embed): width %d, kernels' d_model %d", i, wo, m->d_model);
        const char *q;
        if ((st = weight_type(c, i, 0, &q, err)))
            return st;
        return q ? kernel(c, i, &o->k[0], err, "flock_qpos_embed_%s", q)
                 : kernel(c, i, &o->k[0], err, "flock_pos_embed");
    }
    case FLOCK_OP_RMSNORM:
        return kernel(c, i, &o->k[0], err, "flock_rmsnorm_g%d", op->group);
    case FLOCK_OP_LAYERNORM:
        return kernel(c, i, &o->k[0], err, "flock_layernorm_g%d", wo);
    case FLOCK_OP_LINEAR: {
        const char *q;
        if ((st = weight_type(c, i, 0, &q, err)))
            return st;
        if (q && ((st = kernel(c, i, &o->k[0], err, "flock_qgemv_%s_n%d_k%d", q, wo, wi)) ||
                  (st = kernel(c, i, &o->dq[0], err, "flock_dequant_%s", q))))
            return st;
        if (!q && (st = kernel(c, i, &o->k[0], err, "flock_gemv_n%d_k%d", wo, wi)))
            return st;
        return kernel(c, i, &o->k[1], err, "flock_gemm_n%d_k%d", wo, wi);
    }
    case FLOCK_OP_LM_HEAD: {
        const char *q;
        if ((st = weight_type(c, i, 0, &q, err)))
            return st;
        return q ? kernel(c, i, &o->k[0], err, "flock_qgemv_%s_n%d_k%d", q, wo, wi)
                 : kernel(c, i, &o->k[0], err, "flock_gemv_n%d_k%d", wo, wi);
    }
    case FLOCK_OP_ROPE: {
        if (op->head_dim != m->head_dim || op->rope_dim != m->rope_dim || (int)op->rope_style != m->rope_style)
            return MISMATCH("op %d (rope, layer %d): head_dim %d, rope_dim %d, style %d; the kernels of %s: %d, %d, %d",
                            i, op->layer, op->head_dim, op->rope_dim, (int)op->rope_style, c->section, m->head_dim,
                            m->rope_dim, m->rope_style);
        if ((st = kernel(c, i, &o->k[0], err, "flock_rope")))
            return st;
        /* The frequencies with the op's scaling, computed once (as the CPU executor does). */
        float inv[512];
        int32_t half = op->rope_dim / 2;
        if (half > (int32_t)(sizeof inv / sizeof inv[0]))
            return MISMATCH("op %d (rope): rope_dim %d", i, op->rope_dim);
        for (int32_t j = 0; j < half; j++)
            inv[j] = (float)c->plan->rope_freq[c->plan->rope_at[i] + j];
        if ((st = c->drv->alloc(c->drv, (size_t)(half > 0 ? half : 1) * sizeof(float), &o->inv_freq, err)))
            return st;
        return half > 0 ? c->drv->htod(c->drv, o->inv_freq, inv, (size_t)half * sizeof(float), err) : FLOCK_OK;
    }
    case FLOCK_OP_ATTENTION:
        if (op->n_head != m->n_head || op->n_kv_head != m->n_kv_head || op->head_dim != m->head_dim ||
            op->scale != m->attn_scale || op->softcap != m->attn_softcap)
            return MISMATCH("op %d (attention, layer %d): %d/%d heads of %d, scale %g, softcap %g; the kernels of "
                            "%s: %d/%d of %d, %g, %g",
                            i, op->layer, op->n_head, op->n_kv_head, op->head_dim, (double)op->scale,
                            (double)op->softcap, c->section, m->n_head, m->n_kv_head, m->head_dim,
                            (double)m->attn_scale, (double)m->attn_softcap);
        if ((st = kernel(c, i, &o->k[0], err, "flock_kv_store")) ||
            (st = kernel(c, i, &o->k[1], err, "flock_attn_partial")))
            return st;
        return kernel(c, i, &o->k[2], err, "flock_attn_combine");
    case FLOCK_OP_ADD:
        return kernel(c, i, &o->k[0], err, "flock_add");
    case FLOCK_OP_FFN:
        if (op->d_ff != m->d_ff || wo != m->d_model || (int)op->act != m->act || (int)op->gated != m->gated)
            return MISMATCH("op %d (ffn, layer %d): d %d, d_ff %d, act %d, gated %d; the kernels of %s: %d, %d, %d, %d",
                            i, op->layer, wo, op->d_ff, (int)op->act, (int)op->gated, c->section, m->d_model, m->d_ff,
                            m->act, m->gated);
        {
            const char *qu, *qd;
            const long long kk = (long long)c->keep_k;
            if ((st = weight_type(c, i, 0, &qu, err)) || (st = weight_type(c, i, 2, &qd, err)) ||
                (st = kernel(c, i, &o->k[0], err, "flock_ffn_up_prefill")) ||
                (st = kernel(c, i, &o->k[1], err, "flock_ffn_down_prefill")))
                return st;
            if ((st = qu ? kernel(c, i, &o->k[2], err, "flock_qffn_gather_%s_k%lld", qu, kk)
                         : kernel(c, i, &o->k[2], err, "flock_ffn_gather_k%lld", kk)) ||
                (st = qd ? kernel(c, i, &o->k[3], err, "flock_qffn_down_%s_k%lld", qd, kk)
                         : kernel(c, i, &o->k[3], err, "flock_ffn_down_k%lld", kk)))
                return st;
            if ((qu && (st = kernel(c, i, &o->dq[0], err, "flock_dequant_%s", qu))) ||
                (qd && (st = kernel(c, i, &o->dq[1], err, "flock_dequant_%s", qd))))
                return st;
        }
        {
            /* Split the down projection so that tiles x splits is about one
             * wave, each split at least 8 neurons (docs/cuda-kernels.md). */
            unsigned tiles = o->k[3]->info.grid[0] ? o->k[3]->info.grid[0] : cdiv((uint64_t)m->d_model, 256);
            unsigned n = o->k[3]->wave / tiles, most = cdiv((uint64_t)c->keep_k, 8);
            o->n_part = n < 1 ? 1 : n > most ? most : n;
        }
        return FLOCK_OK;
    default:
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "op %d: kind %s has no CUDA kernel", i, kind);
    }
}

/* ---- memory ---------------------------------------------------------------- */

static flock_status dalloc(flock_cuda_exec *c, size_t bytes, flock_dptr *out, const char *what, flock_error *err)
{
    FORWARD_IF_ERROR(c->drv->alloc(c->drv, bytes, out, err), err, "%s", what);
    return FLOCK_OK;
}

/* Each tensor an op reads (not the magnitude ranks: selection runs on the host), once. */
static flock_status upload_weights(flock_cuda_exec *c, flock_error *err)
{
    const flock_program *p = c->prog;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        for (int j = 0; j < FLOCK_OP_MAX_W; j++) {
            int32_t t = op->w[j];
            if (t < 0 || (uint32_t)t >= p->n_tensors || c->w[t] || (op->kind == FLOCK_OP_FFN && j == 5))
                continue;
            const flock_wmat *w = &c->tensors[t];
            size_t bytes = (size_t)flock_wmat_bytes(w);
            flock_status st = c->drv->alloc(c->drv, bytes, &c->w[t], err);
            if (st == FLOCK_OK)
                st = c->drv->htod(c->drv, c->w[t], w->data, bytes, err);
            if (st != FLOCK_OK)
                return flock_error_prefix(err, st, "uploading tensor '%s'", p->tensors[t].name);
        }
    }
    return FLOCK_OK;
}

static flock_status alloc_buffers(flock_cuda_exec *c, flock_error *err)
{
    const flock_cuda_blob_model *m = &c->blob.model;
    const flock_plan *pl = c->plan;
    size_t chunk = (size_t)c->chunk, kvb = m->kv_type == FLOCK_DTYPE_F32 ? 4 : 2;
    size_t kv_dim = (size_t)m->n_kv_head * (size_t)m->head_dim, dff = (size_t)m->d_ff;
    flock_status st;
#define ALLOC(ptr, bytes, what)                                     \
    if ((st = dalloc(c, (bytes), &(ptr), (what), err)) != FLOCK_OK) \
        return st;
    ALLOC(c->tok, chunk * sizeof(int32_t), "token ids");
    ALLOC(c->slots, (size_t)(pl->n_slots > 0 ? pl->n_slots : 1) * chunk * (size_t)pl->max_width * sizeof(float),
          "activations");
    for (int s = 0; s < c->prog->cfg.n_kv_slots; s++) {
        if (pl->kv_width[s] == 0)
            continue;
        if ((size_t)pl->kv_width[s] != kv_dim)
            return MISMATCH("KV slot %d is %d wide; the kernels of %s keep %zu", s, pl->kv_width[s], c->section,
                            kv_dim);
        ALLOC(c->kc[s], (size_t)c->n_ctx * kv_dim * kvb, "KV cache");
        ALLOC(c->vc[s], (size_t)c->n_ctx * kv_dim * kvb, "KV cache");
    }
    size_t heads = (size_t)m->n_head * c->max_split;
    ALLOC(c->part_o, chunk * heads * (size_t)m->head_dim * sizeof(float), "attention partials");
    ALLOC(c->part_ml, chunk * heads * 2 * sizeof(float), "attention partials");
    ALLOC(c->z, chunk * dff * sizeof(float), "FF activations");
    ALLOC(c->inv, chunk * sizeof(float), "FF row norms");
    ALLOC(c->h, dff * sizeof(float), "FF gather");
    uint32_t max_part = 1;
    for (uint32_t i = 0; i < c->prog->n_ops; i++)
        max_part = c->ops[i].n_part > max_part ? c->ops[i].n_part : max_part;
    size_t tiles = cdiv((uint64_t)m->d_model, 256);
    ALLOC(c->part, (size_t)max_part * (size_t)m->d_model * sizeof(float), "FF partials");
    ALLOC(c->counters, tiles * sizeof(int32_t), "FF counters");
    if ((st = c->drv->memset8(c->drv, c->counters, 0, tiles * sizeof(int32_t), err)))
        return st; /* zero once: each fused launch leaves them zero */
    if (c->wscratch_bytes)
        ALLOC(c->wscratch, (size_t)c->wscratch_bytes, "dequantized weights (prefill)");
    ALLOC(c->dlogits, (c->all_logits ? chunk : 1) * (size_t)pl->n_vocab * sizeof(float), "logits");
    for (int32_t f = 0; f < pl->n_ffn; f++) {
        ALLOC(c->dffn[f].stat, dff * sizeof(float), "GRIFFIN statistic");
        ALLOC(c->dffn[f].sel, dff * sizeof(int32_t), "GRIFFIN selection");
        ALLOC(c->dffn[f].idx, dff * sizeof(int32_t), "GRIFFIN selection");
    }
#undef ALLOC
    return FLOCK_OK;
}

static flock_status setup(flock_cuda_exec *c, const void *blob, size_t blob_size, double keep, flock_error *err)
{
    const flock_program *p = c->prog;
    flock_status st = flock_cuda_blob_parse(blob, blob_size, &c->blob, err);
    if (st != FLOCK_OK)
        return flock_error_prefix(err, st, "kernel section %s", c->section);
    /* The driver reads a PTX image up to its NUL: it must have one. */
    if (c->blob.image_kind == FLOCK_CUDA_IMAGE_PTX &&
        (c->blob.image_size == 0 || ((const char *)c->blob.image)[c->blob.image_size - 1] != '\0'))
        return flock_error_set(err, FLOCK_E_CORRUPT, "kernel section %s: the PTX image is not NUL-terminated",
                               c->section);
    if ((st = c->drv->bind(c->drv, err)))
        return st;
    if ((st = flock_program_check_runnable(p, c->tensors, err)))
        return st;
    const flock_cuda_blob_model *m = &c->blob.model;
    c->keep_k = flock_keep_count(keep, m->d_ff);
    c->max_split = cdiv((uint64_t)c->n_ctx, FLOCK_CUDA_ATTN_KEYS);
    c->kerns = calloc(c->blob.n_kernels ? c->blob.n_kernels : 1, sizeof *c->kerns);
    c->ops = calloc(p->n_ops ? p->n_ops : 1, sizeof *c->ops);
    c->w = calloc(p->n_tensors ? p->n_tensors : 1, sizeof *c->w);
    size_t nf = (size_t)(c->plan->n_ffn > 0 ? c->plan->n_ffn : 1);
    c->dffn = calloc(nf, sizeof *c->dffn);
    c->ffn = calloc(nf, sizeof *c->ffn);
    c->logits = calloc((c->all_logits ? (size_t)c->n_ctx : 1) * (size_t)c->plan->n_vocab, sizeof(float));
    c->ffn_k = calloc(nf, sizeof *c->ffn_k);
    c->tensor_bytes = calloc(p->n_tensors ? p->n_tensors : 1, sizeof *c->tensor_bytes);
    if (!c->kerns || !c->ops || !c->w || !c->dffn || !c->ffn || !c->logits || !c->ffn_k || !c->tensor_bytes)
        return flock_error_set(err, FLOCK_E_NOMEM, "CUDA executor: out of memory");
    for (uint32_t t = 0; t < p->n_tensors; t++)
        c->tensor_bytes[t] = flock_wmat_bytes(&c->tensors[t]);
    for (int32_t fi = 0; fi < c->plan->n_ffn; fi++) {
        flock_exec_ffn *f = &c->ffn[fi];
        const flock_op *op = &p->ops[c->plan->ffn_op[fi]];
        f->op = c->plan->ffn_op[fi];
        f->layer = op->layer;
        f->d_ff = op->d_ff;
        f->k = -1;
        if (!(f->idx = calloc((size_t)f->d_ff, sizeof *f->idx)))
            return flock_error_set(err, FLOCK_E_NOMEM, "CUDA executor: out of memory");
    }
    if ((st = c->drv->module_load(c->drv, c->blob.image, c->blob.image_size,
                                  c->blob.image_kind == FLOCK_CUDA_IMAGE_PTX, &c->mod, err)))
        return flock_error_prefix(err, st, "kernel section %s", c->section);
    for (uint32_t i = 0; i < p->n_ops; i++)
        if ((st = resolve_op(c, (int32_t)i, err)))
            return st;
    for (uint32_t i = 0; i < p->n_ops; i++)
        c->ops[i].ffn = c->plan->op_ffn[i];
    if (c->plan->n_ffn > 0 &&
        ((st = kernel(c, -1, &c->rownorm, err, "flock_griffin_rownorm")) ||
         (st = kernel(c, -1, &c->colsum, err, "flock_griffin_colsum")) ||
         (st = kernel(c, -1, &c->compact, err, "flock_griffin_compact")) ||
         (st = kernel(c, -1, &c->rank, err, "flock_griffin_rank_k%lld", (long long)c->keep_k))))
        return st;
    if ((st = alloc_buffers(c, err)) || (st = upload_weights(c, err)))
        return st;
    return c->drv->synchronize(c->drv, err);
}

flock_status flock_cuda_exec_create(flock_cuda_driver *drv, const char *section, const void *blob, size_t blob_size,
                                    const flock_program *p, const flock_plan *plan, const flock_wmat *tensors,
                                    double keep, int32_t n_ctx, bool all_logits, flock_cuda_exec **out,
                                    flock_error *err)
{
    if (!drv || !section || !blob || !p || !plan || !tensors || !out || n_ctx <= 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_cuda_exec_create: bad argument");
    flock_cuda_exec *c = calloc(1, sizeof *c);
    if (!c)
        return flock_error_set(err, FLOCK_E_NOMEM, "CUDA executor: out of memory");
    c->drv = drv;
    c->prog = p;
    c->plan = plan;
    c->tensors = tensors;
    snprintf(c->section, sizeof c->section, "%s", section);
    c->n_ctx = n_ctx;
    c->chunk = n_ctx < FLOCK_CUDA_CHUNK ? n_ctx : FLOCK_CUDA_CHUNK;
    c->all_logits = all_logits;
    flock_status st = setup(c, blob, blob_size, keep, err);
    if (st != FLOCK_OK) {
        flock_cuda_exec_free(c);
        return st;
    }
    *out = c;
    return FLOCK_OK;
}

void flock_cuda_exec_free(flock_cuda_exec *c)
{
    if (!c)
        return;
    flock_cuda_driver *d = c->drv;
    d->bind(d, NULL); /* frees below go to this device's context */
    if (c->w)
        for (uint32_t t = 0; t < c->prog->n_tensors; t++)
            d->free(d, c->w[t]);
    if (c->ops)
        for (uint32_t i = 0; i < c->prog->n_ops; i++)
            d->free(d, c->ops[i].inv_freq);
    flock_dptr bufs[] = {c->tok, c->slots, c->part_o, c->part_ml, c->z, c->inv, c->h, c->part, c->counters,
                         c->dlogits, c->wscratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        d->free(d, bufs[i]);
    for (int s = 0; s < FLOCK_MAX_KV_SLOTS; s++) {
        d->free(d, c->kc[s]);
        d->free(d, c->vc[s]);
    }
    if (c->dffn)
        for (int32_t f = 0; f < c->plan->n_ffn; f++) {
            d->free(d, c->dffn[f].stat);
            d->free(d, c->dffn[f].sel);
            d->free(d, c->dffn[f].idx);
        }
    if (c->ffn)
        for (int32_t f = 0; f < c->plan->n_ffn; f++)
            free(c->ffn[f].idx);
    if (c->mod)
        d->module_unload(d, c->mod);
    free(c->ffn_k);
    free(c->tensor_bytes);
    free(c->kerns);
    free(c->ops);
    free(c->w);
    free(c->dffn);
    free(c->ffn);
    free(c->logits);
    free(c);
}

void flock_cuda_exec_reset(flock_cuda_exec *c)
{
    /* The statistic is zeroed when the next prompt starts (cuda_ops.c). */
    c->n_past = 0;
    for (int32_t i = 0; i < c->plan->n_ffn; i++)
        c->ffn[i].k = -1;
}

size_t flock_cuda_exec_n_past(const flock_cuda_exec *c)
{
    return c->n_past;
}

int32_t flock_cuda_exec_n_vocab(const flock_cuda_exec *c)
{
    return c->plan->n_vocab;
}

const float *flock_cuda_exec_logits(const flock_cuda_exec *c)
{
    return c->logits;
}

size_t flock_cuda_exec_n_ffn(const flock_cuda_exec *c)
{
    return (size_t)c->plan->n_ffn;
}

flock_exec_ffn *flock_cuda_exec_ffn_at(flock_cuda_exec *c, size_t i)
{
    return i < (size_t)c->plan->n_ffn ? &c->ffn[i] : NULL;
}

int64_t flock_cuda_exec_keep_count(const flock_cuda_exec *c)
{
    return c->keep_k;
}

uint64_t flock_cuda_exec_decode_bytes(const flock_cuda_exec *c)
{
    for (int32_t i = 0; i < c->plan->n_ffn; i++)
        c->ffn_k[i] = c->ffn[i].k;
    return flock_plan_decode_bytes(c->prog, c->plan, c->tensor_bytes, c->ffn_k);
}
