/* The executor: its own checks, buffers sized from the program's plan
 * (flock/plan.h), the op walk. The per-op compute lives in exec_ops.c. */
#include "attention.h"
#include "error_impl.h"
#include "exec_impl.h"
#include "griffin.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* The mapping's length sits in the first 64 bytes, before the buffer. */
#define LAZY_HEAD 64

void *flock_lazy_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - 2 * LAZY_HEAD)
        return NULL;
    size_t len = LAZY_HEAD + ((bytes + 63) & ~(size_t)63);
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    *(size_t *)base = len;
    return (char *)base + LAZY_HEAD;
}

void flock_lazy_free(void *p)
{
    if (!p)
        return;
    char *base = (char *)p - LAZY_HEAD;
    munmap(base, *(size_t *)base);
}

static const flock_wmat *wt(const flock_exec *e, int32_t id)
{
    return id >= 0 && (uint32_t)id < e->prog->n_tensors ? &e->tensors[id] : NULL;
}

/* What the CPU kernels need of the tensors beyond the verified program:
 * every tensor an op reads is there, has its reference's shape (rows x
 * cols), and is a dtype the kernels read (matrices f32/f16/bf16 or
 * quantized, vectors f32; the magnitude ranking i32). The shapes against the ops are the
 * verifier's; the bundle against the program, the loader's. */
static flock_status tensors_check(const flock_program *p, const flock_wmat *tensors, flock_error *err)
{
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        for (int j = 0; j < FLOCK_OP_MAX_W; j++) {
            if (op->w[j] < 0)
                continue;
            const flock_tensor_ref *r = &p->tensors[op->w[j]];
            const flock_wmat *w = &tensors[op->w[j]];
            const char *kind = flock_op_kind_name(op->kind);
            int64_t rows, cols;
            flock_tensor_ref_rows_cols(r, &rows, &cols);
            RETURN_ERROR_IF(!w->data, FLOCK_E_CORRUPT, err, "op %u (%s, layer %d): tensor '%s' is missing", i,
                            kind, op->layer, r->name);
            RETURN_ERROR_IF(w->rows != rows || w->cols != cols, FLOCK_E_CORRUPT, err,
                            "op %u (%s, layer %d): tensor '%s' is [%lld, %lld], expected [%lld, %lld]", i, kind,
                            op->layer, r->name, (long long)w->rows, (long long)w->cols, (long long)rows,
                            (long long)cols);
            bool matrix = w->dtype == FLOCK_DTYPE_F32 || w->dtype == FLOCK_DTYPE_F16 ||
                          w->dtype == FLOCK_DTYPE_BF16 || flock_dtype_is_quantized(w->dtype);
            bool ok = op->kind == FLOCK_OP_FFN && j == 5 ? w->dtype == FLOCK_DTYPE_I32
                      : r->n_dims == 1                  ? w->dtype == FLOCK_DTYPE_F32
                                                        : matrix;
            RETURN_ERROR_IF(!ok, FLOCK_E_UNSUPPORTED, err, "op %u (%s, layer %d): tensor '%s' is %s, which %s", i,
                            kind, op->layer, r->name, flock_dtype_name(w->dtype),
                            r->n_dims == 1 ? "must be f32 as a vector" : "the CPU kernels do not read");
            /* Quantized rows are cut where the kernels cut them: a gate_up row
             * at its middle (the up half), down_t rows in 64-column blocks
             * in prefill. Each cut must fall on a block boundary. */
            size_t blk = flock_dtype_block(w->dtype);
            bool cut_ok = !(op->kind == FLOCK_OP_FFN && j == 0 && op->gated && (cols / 2) % (int64_t)blk) &&
                          !(op->kind == FLOCK_OP_FFN && j == 2 && 64 % blk);
            RETURN_ERROR_IF(!cut_ok, FLOCK_E_UNSUPPORTED, err,
                            "op %u (ffn, layer %d): tensor '%s' is %s, whose %zu-element blocks do not divide the "
                            "%s (store it as q8_0, q4_0, q4_1 or q5_0)",
                            i, op->layer, r->name, flock_dtype_name(w->dtype), blk,
                            j == 0 ? "gate and up halves of its rows" : "64-column blocks of the down projection");
        }
    }
    return FLOCK_OK;
}

flock_status flock_program_check_runnable(const flock_program *p, const flock_wmat *tensors, flock_error *err)
{
    RETURN_ERROR_IF(p->cfg.n_kv_slots > FLOCK_MAX_KV_SLOTS, FLOCK_E_UNSUPPORTED, err,
                    "program: %d kv slots (at most %d)", p->cfg.n_kv_slots, FLOCK_MAX_KV_SLOTS);
    for (uint32_t i = 0; i < p->n_ops; i++)
        RETURN_ERROR_IF(p->ops[i].kind == FLOCK_OP_FFN && p->ops[i].ffn_layout != FLOCK_FFN_PACKED,
                        FLOCK_E_UNSUPPORTED, err,
                        "op %u (ffn, layer %d): the runtime executes the packed FF layout only "
                        "(compile with the gather-layout pass)",
                        i, p->ops[i].layer);
    return tensors_check(p, tensors, err);
}

flock_status flock_exec_create(const flock_program *p, const flock_plan *plan, const flock_wmat *tensors,
                               const flock_kernel_table *k, flock_pool *pool, const flock_exec_opts *o,
                               flock_exec **out, flock_error *err)
{
    if (!p || !plan || !tensors || !k || !pool || !o || !out || o->n_ctx <= 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_exec_create: bad argument");
    int32_t n_ctx = o->n_ctx;
    flock_status st = flock_program_check_runnable(p, tensors, err);
    if (st != FLOCK_OK)
        return st;
    flock_exec *e = calloc(1, sizeof *e);
    if (!e)
        return flock_error_set(err, FLOCK_E_NOMEM, "executor: out of memory");
    e->prog = p;
    e->plan = plan;
    e->tensors = tensors;
    e->n_vocab = plan->n_vocab;
    e->embed_rows = plan->embed_rows;
    e->head_op = plan->head_op;
    e->max_width = plan->max_width;
    e->max_dff = plan->max_dff;
    e->max_rope_dim = plan->max_rope_dim;
    e->max_heads = plan->max_heads;
    e->max_head_dim = plan->max_head_dim;
    e->n_ffn = plan->n_ffn;
    e->n_slots = plan->n_slots;
    e->value_slot = plan->value_slot;
    e->op_ffn = plan->op_ffn;
    memcpy(e->kv_width, plan->kv_width, (size_t)plan->n_kv_slots * sizeof *e->kv_width);
    e->k = k;
    e->pool = pool;
    e->n_ctx = n_ctx;
    e->all_logits = o->all_logits;
    e->kv_f16 = o->kv_f16;
    e->chunk = n_ctx < FLOCK_EXEC_CHUNK ? n_ctx : FLOCK_EXEC_CHUNK;
    e->n_threads = flock_pool_threads(pool);
    size_t chunk = (size_t)e->chunk, nt = (size_t)e->n_threads;
    size_t maxw = (size_t)e->max_width, dff = (size_t)(e->max_dff > 0 ? e->max_dff : 1);
    size_t max_cols = maxw * 2 > dff ? maxw * 2 : dff; /* widest weight row (gate_up: 2d) */
    bool ok = true;
    e->slot_mem = flock_aligned_alloc((size_t)e->n_slots * chunk * maxw * sizeof(float));
    ok = ok && e->slot_mem;
    for (int s = 0; s < p->cfg.n_kv_slots; s++) {
        size_t bytes = (size_t)n_ctx * (size_t)(e->kv_width[s] > 0 ? e->kv_width[s] : 1) * (e->kv_f16 ? 2 : 4);
        e->kcache[s] = flock_lazy_alloc(bytes);
        e->vcache[s] = flock_lazy_alloc(bytes);
        ok = ok && e->kcache[s] && e->vcache[s];
    }
    e->ffn_h = flock_aligned_alloc(chunk * 2 * dff * sizeof(float));
    e->ffn_z = flock_aligned_alloc(chunk * dff * sizeof(float));
    e->part = flock_aligned_alloc((size_t)FLOCK_GATHER_SLICES * maxw * sizeof(float));
    e->xq = flock_aligned_alloc((maxw / 32 + 1) * sizeof(flock_q8x));
    e->att_scratch = flock_lazy_alloc(
        flock_att_scratch_floats((int)nt, n_ctx, e->max_heads > 0 ? e->max_heads : 1,
                                 e->max_head_dim > 0 ? e->max_head_dim : 1) * sizeof(float));
    e->tile = flock_aligned_alloc(nt * max_cols * FLOCK_EXEC_WTILE * sizeof(float));
    int wt_rows, wt_tokens; /* (tokens <= 32, the padding of xt_tp) */
    if (flock_exec_outer_gemm(k, &wt_rows, &wt_tokens) && chunk >= FLOCK_EXEC_WIDE_T) {
        e->xt_tp = (chunk + 31) & ~(size_t)31;
        e->xt = flock_lazy_alloc(maxw * e->xt_tp * sizeof(float));
        ok = ok && e->xt;
    }
    if (k->gemmq) { /* whatever the chunk: the int8 tile's results do not depend on the step's size */
        e->xqt = flock_lazy_alloc(chunk * (maxw / 32 + 1) * sizeof(flock_q8x));
        ok = ok && e->xqt;
    }
    e->dscratch = flock_aligned_alloc(nt * dff * 64 * sizeof(float));
    e->stat_part = flock_aligned_alloc((size_t)FLOCK_STAT_SLICES * dff * sizeof(double));
    e->rope_cs = flock_aligned_alloc((size_t)(e->max_rope_dim + 2) * sizeof(float));
    e->logits = flock_lazy_alloc((o->all_logits ? (size_t)n_ctx : 1) * (size_t)e->n_vocab * sizeof(float));
    e->ffn = calloc((size_t)(e->n_ffn > 0 ? e->n_ffn : 1), sizeof *e->ffn);
    e->ffn_k = malloc((size_t)(e->n_ffn > 0 ? e->n_ffn : 1) * sizeof *e->ffn_k);
    e->tensor_bytes = malloc((size_t)(p->n_tensors ? p->n_tensors : 1) * sizeof *e->tensor_bytes);
    ok = ok && e->ffn_h && e->ffn_z && e->part && e->xq && e->att_scratch && e->tile && e->dscratch && e->stat_part &&
         e->rope_cs && e->logits && e->ffn && e->ffn_k && e->tensor_bytes;
    for (int32_t fi = 0; ok && fi < e->n_ffn; fi++) {
        flock_exec_ffn *f = &e->ffn[fi];
        const flock_op *op = &p->ops[plan->ffn_op[fi]];
        f->op = plan->ffn_op[fi];
        f->layer = op->layer;
        f->d_ff = op->d_ff;
        f->k = -1;
        f->idx = malloc((size_t)f->d_ff * sizeof *f->idx);
        f->sumsq = calloc((size_t)f->d_ff, sizeof *f->sumsq);
        ok = f->idx && f->sumsq;
    }
    /* packing the kept rows (flock_session_opts.pack_rows, docs/runtime.md) */
    if (ok && o->pack_rows) {
        e->pack = calloc((size_t)(e->n_ffn > 0 ? e->n_ffn : 1), sizeof *e->pack); /* k = 0: nothing packed */
        ok = e->pack != NULL;
    }
    for (uint32_t t = 0; ok && t < p->n_tensors; t++)
        e->tensor_bytes[t] = flock_wmat_bytes(&tensors[t]);
    if (!ok) {
        flock_exec_free(e);
        return flock_error_set(err, FLOCK_E_NOMEM, "executor: out of memory for buffers (context %d)", n_ctx);
    }
    *out = e;
    return FLOCK_OK;
}

void flock_exec_free(flock_exec *e)
{
    if (!e)
        return;
    free(e->slot_mem);
    for (int s = 0; s < FLOCK_MAX_KV_SLOTS; s++) {
        flock_lazy_free(e->kcache[s]);
        flock_lazy_free(e->vcache[s]);
    }
    free(e->ffn_h);
    free(e->ffn_z);
    free(e->part);
    free(e->xq);
    flock_lazy_free(e->att_scratch);
    free(e->tile);
    flock_lazy_free(e->xt);
    flock_lazy_free(e->xqt);
    free(e->rope_cs);
    free(e->dscratch);
    free(e->stat_part);
    flock_lazy_free(e->logits);
    if (e->ffn)
        for (int32_t i = 0; i < e->n_ffn; i++) {
            free(e->ffn[i].idx);
            free(e->ffn[i].sumsq);
        }
    if (e->pack)
        for (int32_t i = 0; i < e->n_ffn; i++) {
            free(e->pack[i].rows);
            free(e->pack[i].idx);
        }
    free(e->pack);
    free(e->ffn);
    free(e->ffn_k);
    free(e->tensor_bytes);
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

/* What must hold before n tokens run: room in the context, ids in the
 * vocabulary, experts selected (SPARSE), positions within the tables. */
static flock_status check_run(const flock_exec *e, const int32_t *ids, size_t n, flock_ff_mode mode,
                              flock_error *err)
{
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
    return flock_exec_check_positions(e, n, err);
}

flock_status flock_exec_run(flock_exec *e, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                            flock_error *err)
{
    if (n == 0)
        return FLOCK_OK;
    if (!ids)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "no token ids");
    flock_status st = check_run(e, ids, n, mode, err);
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

flock_status flock_exec_run_batch(flock_exec *const *es, size_t n, const int32_t *ids, flock_error *err)
{
    if (n == 0)
        return FLOCK_OK;
    if (!es || !ids)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "no executors or token ids");
    if (n > FLOCK_EXEC_MAX_BATCH)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "%zu sequences in one step: at most %d", n,
                               FLOCK_EXEC_MAX_BATCH);
    for (size_t b = 0; b < n; b++) {
        const flock_exec *e = es[b];
        if (e->prog != es[0]->prog || e->tensors != es[0]->tensors || e->n_threads != es[0]->n_threads)
            return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                   "sequence %zu runs another model or thread count than sequence 0", b);
        for (size_t c = 0; c < b; c++)
            if (es[c] == e)
                return flock_error_set(err, FLOCK_E_INVALID_ARG, "sequences %zu and %zu are the same executor", c, b);
        flock_error e1 = {0};
        flock_status st = check_run(e, ids + b, 1, FLOCK_FF_SPARSE, &e1);
        if (st != FLOCK_OK)
            return flock_error_set(err, st, "sequence %zu: %s", b, e1.msg);
    }
    /* One pool for the step: es[0]'s (the others' threads sleep). */
    flock_pool *own[FLOCK_EXEC_MAX_BATCH];
    for (size_t b = 0; b < n; b++) {
        own[b] = es[b]->pool;
        es[b]->pool = es[0]->pool;
    }
    const flock_program *p = es[0]->prog;
    flock_status st = FLOCK_OK;
    for (uint32_t i = 0; i < p->n_ops && st == FLOCK_OK; i++) {
        const flock_op *op = &p->ops[i];
        if (op->kind == FLOCK_OP_LINEAR) {
            i += (uint32_t)flock_exec_linear_group_batch(es, n, (int32_t)i) - 1;
        } else if (op->kind == FLOCK_OP_LM_HEAD) {
            flock_exec_lm_head_batch(es, n, op, (int32_t)i);
        } else if (op->kind == FLOCK_OP_FFN) {
            flock_exec_ffn_sparse_batch(es, n, op, (int32_t)i);
        } else {
            for (size_t b = 0; b < n && st == FLOCK_OK; b++)
                st = flock_exec_op(es[b], op, (int32_t)i, ids + b, 1, FLOCK_FF_SPARSE, false, err);
        }
    }
    for (size_t b = 0; b < n; b++) {
        es[b]->pool = own[b];
        if (st == FLOCK_OK)
            es[b]->n_past++;
    }
    return st;
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

uint64_t flock_exec_packed_bytes(const flock_exec *e)
{
    uint64_t n = 0;
    for (int32_t i = 0; e->pack && i < e->n_ffn; i++)
        if (e->pack[i].rows) {
            const flock_op *op = &e->prog->ops[e->ffn[i].op];
            n += (uint64_t)e->pack[i].cap *
                 (e->tensors[op->w[0]].row_bytes + e->tensors[op->w[2]].row_bytes);
        }
    return n;
}

uint64_t flock_exec_decode_bytes(const flock_exec *e)
{
    for (int32_t i = 0; i < e->n_ffn; i++)
        e->ffn_k[i] = e->ffn[i].k;
    return flock_plan_decode_bytes(e->prog, e->plan, e->tensor_bytes, e->ffn_k);
}
