/* The CUDA executor's op walk: the program's ops over [T, width] f32 value
 * slots in device memory, each op one to four launches of the section's
 * kernels with the grids of docs/cuda-kernels.md (as tools/gpu_check_kernels.c
 * launches them), GRIFFIN's statistic and top-k on the device, the logits
 * copied back per call. Nothing is allocated here. */
#include "cuda_exec_impl.h"
#include "error_impl.h"

#include <math.h>
#include <string.h>

static unsigned cdiv(uint64_t a, uint64_t b)
{
    return (unsigned)((a + b - 1) / b);
}

static unsigned min_u(unsigned a, unsigned b)
{
    return a < b ? a : b;
}

/* Value v's [chunk, width] buffer. */
static flock_dptr value(const flock_cuda_exec *c, int32_t v)
{
    return c->slots + (flock_dptr)c->plan->value_slot[v] * (flock_dptr)c->chunk * (flock_dptr)c->plan->max_width *
                          sizeof(float);
}

/* Tensor id's device copy, or 0 (NULL) for an absent optional tensor. */
static flock_dptr wptr(const flock_cuda_exec *c, int32_t id)
{
    return id >= 0 && (uint32_t)id < c->prog->n_tensors ? c->w[id] : 0;
}

/* A grid-stride kernel: its table grid (one unit of work per warp), at most one wave. */
static unsigned stride_grid(const cuda_kern *k)
{
    unsigned g = k->info.grid[0] ? k->info.grid[0] : 1;
    return min_u(g, k->wave ? k->wave : g);
}

#define LAUNCH(k, gx, gy, gz, ...)                                              \
    do {                                                                        \
        void *args_[] = {__VA_ARGS__};                                          \
        flock_status st_ = flock_cuda_launch(c, (k), (gx), (gy), (gz), args_, err); \
        if (st_ != FLOCK_OK)                                                    \
            return st_;                                                         \
    } while (0)

/* A quantized matrix (tensor id, dequant kernel dq) for the 16-bit GEMM:
 * expanded into the scratch, *W pointed at it. Prefill only: 2 bytes
 * written per weight, once per chunk. */
static flock_status expand(flock_cuda_exec *c, const cuda_kern *dq, int32_t id, flock_dptr *W, flock_error *err)
{
    if (!dq)
        return FLOCK_OK;
    const flock_wmat *w = &c->tensors[id];
    int n_blocks = (int)((uint64_t)w->rows * (uint64_t)w->cols / 32);
    flock_dptr src = *W;
    LAUNCH(dq, min_u(cdiv((uint64_t)n_blocks * 32, 256), 65535u), 1, 1, &src, &n_blocks, &c->wscratch);
    *W = c->wscratch;
    return FLOCK_OK;
}

/* y = x W^T + bias for T rows: GEMV when T = 1, else the tensor-core GEMM. */
static flock_status linear(flock_cuda_exec *c, const cuda_op *o, int32_t wid, flock_dptr x, int32_t T, flock_dptr W,
                           flock_dptr bias, flock_dptr y, flock_error *err)
{
    flock_dptr null = 0;
    if (T == 1) {
        LAUNCH(o->k[0], stride_grid(o->k[0]), 1, 1, &x, &W, &bias, &null, &y);
        return FLOCK_OK;
    }
    flock_status st = expand(c, o->dq[0], wid, &W, err);
    if (st != FLOCK_OK)
        return st;
    int M = T;
    LAUNCH(o->k[1], o->k[1]->info.grid[0], cdiv((uint64_t)T, 64), 1, &x, &M, &W, &bias, &null, &y);
    return FLOCK_OK;
}

static flock_status attention(flock_cuda_exec *c, const flock_op *op, const cuda_op *o, int32_t T, int pos0,
                              flock_dptr out, flock_error *err)
{
    flock_dptr q = value(c, op->in[0]), k = value(c, op->in[1]), v = value(c, op->in[2]);
    flock_dptr kc = c->kc[op->kv_slot], vc = c->vc[op->kv_slot];
    LAUNCH(o->k[0], (unsigned)T, 1, 1, &k, &v, &pos0, &kc, &vc);
    /* Splits of FLOCK_CUDA_ATTN_KEYS keys covering the longest query's keys:
     * pos0 + T, or the window. */
    int keys = pos0 + T;
    if (op->window > 0 && op->window < keys)
        keys = op->window;
    int chunk = FLOCK_CUDA_ATTN_KEYS, n_split = (int)cdiv((uint64_t)keys, (uint64_t)chunk), window = op->window;
    const unsigned H = (unsigned)op->n_head;
    LAUNCH(o->k[1], H, (unsigned)n_split, (unsigned)T, &q, &kc, &vc, &pos0, &window, &chunk, &n_split, &c->part_o,
           &c->part_ml);
    LAUNCH(o->k[2], H, (unsigned)T, 1, &c->part_o, &c->part_ml, &n_split, &out);
    return FLOCK_OK;
}

static flock_status ffn(flock_cuda_exec *c, const flock_op *op, const cuda_op *o, flock_dptr x, int32_t T,
                        flock_ff_mode mode, bool stats, flock_dptr out, flock_error *err)
{
    cuda_ffn *f = &c->dffn[o->ffn];
    flock_dptr gate_up = wptr(c, op->w[0]), down_t = wptr(c, op->w[2]);
    flock_dptr b1 = op->gated ? 0 : wptr(c, op->w[3]), b2 = wptr(c, op->w[4]), null = 0;
    if (mode == FLOCK_FF_SPARSE) {
        /* T = 1: the kept rows of gate_up (or W1), then of down_t, with the
         * split-k partials summed in order by the last block of each tile. */
        LAUNCH(o->k[2], stride_grid(o->k[2]), 1, 1, &x, &f->idx, &gate_up, &b1, &c->h);
        LAUNCH(o->k[3], o->k[3]->info.grid[0], o->n_part, 1, &c->h, &f->idx, &down_t, &c->part, &c->counters, &null,
               &b2, &out);
        return FLOCK_OK;
    }
    int M = T;
    const unsigned gy = cdiv((uint64_t)T, 64);
    flock_status st = expand(c, o->dq[0], op->w[0], &gate_up, err);
    if (st != FLOCK_OK)
        return st;
    LAUNCH(o->k[0], o->k[0]->info.grid[0], gy, 1, &x, &M, &gate_up, &b1, &null, &c->z);
    if (stats) {
        LAUNCH(c->rownorm, (unsigned)T, 1, 1, &c->z, &c->inv);
        LAUNCH(c->colsum, c->colsum->info.grid[0], 1, 1, &c->z, &c->inv, &M, &f->stat);
    }
    if ((st = expand(c, o->dq[1], op->w[2], &down_t, err)) != FLOCK_OK)
        return st;
    LAUNCH(o->k[1], o->k[1]->info.grid[0], gy, 1, &c->z, &M, &down_t, &b2, &null, &out);
    return FLOCK_OK;
}

/* The logits of this call's tokens: the last token's, or every token's
 * (all_logits) at rows n_past.. of the host array. */
static flock_status lm_head(flock_cuda_exec *c, const flock_op *op, const cuda_op *o, flock_dptr x, int32_t T,
                            flock_error *err)
{
    const int32_t wi = c->prog->values[op->in[0]].width, V = c->plan->n_vocab;
    flock_dptr W = wptr(c, op->w[0]), null = 0;
    const int32_t rows = c->all_logits ? T : 1;
    for (int32_t r = 0; r < rows; r++) {
        int32_t t = c->all_logits ? r : T - 1;
        flock_dptr xr = x + (flock_dptr)t * (flock_dptr)wi * sizeof(float);
        flock_dptr yr = c->dlogits + (flock_dptr)r * (flock_dptr)V * sizeof(float);
        LAUNCH(o->k[0], stride_grid(o->k[0]), 1, 1, &xr, &W, &null, &null, &yr);
    }
    float *host = c->logits + (c->all_logits ? c->n_past * (size_t)V : 0);
    flock_status st = c->drv->dtoh(c->drv, host, c->dlogits, (size_t)rows * (size_t)V * sizeof(float), err);
    if (st != FLOCK_OK)
        return flock_error_prefix(err, st, "logits");
    /* Soft-capping (Gemma 2) is not a kernel: on the host, as the CPU executor does it. */
    if (op->softcap > 0)
        for (size_t j = 0; j < (size_t)rows * (size_t)V; j++)
            host[j] = op->softcap * tanhf(host[j] / op->softcap);
    return FLOCK_OK;
}

static flock_status run_op(flock_cuda_exec *c, int32_t i, int32_t T, flock_ff_mode mode, bool stats,
                           flock_error *err)
{
    const flock_op *op = &c->prog->ops[i];
    cuda_op *o = &c->ops[i];
    const int32_t wo = c->prog->values[op->out].width;
    flock_dptr x = op->kind == FLOCK_OP_EMBED ? 0 : value(c, op->in[0]);
    flock_dptr out = op->kind == FLOCK_OP_LM_HEAD ? 0 : value(c, op->out);
    int pos0 = (int)c->n_past;
    flock_dptr w0 = wptr(c, op->w[0]), w1 = wptr(c, op->w[1]);
    switch (op->kind) {
    case FLOCK_OP_EMBED: {
        float scale = op->scale != 0 ? op->scale : 1.0f;
        LAUNCH(o->k[0], (unsigned)T, 1, 1, &c->tok, &w0, &scale, &out);
        return FLOCK_OK;
    }
    case FLOCK_OP_POS_EMBED: {
        int n_pos = (int)c->tensors[op->w[0]].rows, offset = op->pos_offset;
        LAUNCH(o->k[0], (unsigned)T, 1, 1, &x, &w0, &n_pos, &pos0, &offset, &out);
        return FLOCK_OK;
    }
    case FLOCK_OP_RMSNORM: {
        float eps = op->eps;
        int unit = op->unit_offset ? 1 : 0;
        LAUNCH(o->k[0], (unsigned)((int64_t)T * wo / op->group), 1, 1, &x, &w0, &eps, &unit, &out);
        return FLOCK_OK;
    }
    case FLOCK_OP_LAYERNORM: {
        float eps = op->eps;
        LAUNCH(o->k[0], (unsigned)T, 1, 1, &x, &w0, &w1, &eps, &out);
        return FLOCK_OK;
    }
    case FLOCK_OP_LINEAR:
        return linear(c, o, op->w[0], x, T, w0, w1, out, err);
    case FLOCK_OP_ROPE: {
        /* The kernel rotates in place: copy x to the output value first. */
        flock_status st = c->drv->dtod(c->drv, out, x, (size_t)T * (size_t)wo * sizeof(float), err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "op %d (rope)", i);
        int n_heads = op->n_head;
        LAUNCH(o->k[0], (unsigned)T, 1, 1, &out, &n_heads, &pos0, &o->inv_freq);
        return FLOCK_OK;
    }
    case FLOCK_OP_ATTENTION:
        return attention(c, op, o, T, pos0, out, err);
    case FLOCK_OP_ADD: {
        flock_dptr y = value(c, op->in[1]);
        int n = T * wo;
        LAUNCH(o->k[0], cdiv((uint64_t)n, 256), 1, 1, &x, &y, &n, &out);
        return FLOCK_OK;
    }
    case FLOCK_OP_FFN:
        return ffn(c, op, o, x, T, mode, stats, out, err);
    case FLOCK_OP_LM_HEAD:
        return lm_head(c, op, o, x, T, err);
    default:
        return flock_error_set(err, FLOCK_E_INTERNAL, "op %d: kind %d", i, (int)op->kind);
    }
}

static flock_status run_chunk(flock_cuda_exec *c, const int32_t *ids, int32_t T, flock_ff_mode mode, bool stats,
                              flock_error *err)
{
    FORWARD_IF_ERROR(c->drv->htod(c->drv, c->tok, ids, (size_t)T * sizeof(int32_t), err), err, "token ids");
    for (uint32_t i = 0; i < c->prog->n_ops; i++)
        FORWARD_IF_ERROR(run_op(c, (int32_t)i, T, mode, stats, err), err, "op %u (%s, layer %d)", i,
                         flock_op_kind_name(c->prog->ops[i].kind), c->prog->ops[i].layer);
    c->n_past += (size_t)T;
    return FLOCK_OK;
}

flock_status flock_cuda_exec_run(flock_cuda_exec *c, const int32_t *ids, size_t n, flock_ff_mode mode, bool stats,
                                 flock_error *err)
{
    if (n == 0)
        return FLOCK_OK;
    if (!ids)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "no token ids");
    if (n > (size_t)c->n_ctx - c->n_past)
        return flock_error_set(err, FLOCK_E_RANGE,
                               "%zu tokens do not fit in the context: %zu already used of %d (needs %zu)", n,
                               c->n_past, c->n_ctx, c->n_past + n);
    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= c->plan->embed_rows)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "token %zu is id %d, outside the vocabulary [0, %d)",
                                   t, ids[t], c->plan->embed_rows);
    for (uint32_t i = 0; i < c->prog->n_ops; i++) {
        const flock_op *op = &c->prog->ops[i];
        if (op->kind == FLOCK_OP_POS_EMBED &&
            (int64_t)(c->n_past + n) + op->pos_offset > c->tensors[op->w[0]].rows)
            return flock_error_set(err, FLOCK_E_RANGE, "position %zu is beyond the model's %lld learned positions",
                                   c->n_past + n - 1, (long long)(c->tensors[op->w[0]].rows - op->pos_offset));
    }
    if (mode == FLOCK_FF_SPARSE)
        for (int32_t i = 0; i < c->plan->n_ffn; i++)
            if (c->ffn[i].k != c->keep_k)
                return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                       "no experts are selected for layer %d: run a prompt first", c->ffn[i].layer);
    flock_status st = c->drv->bind(c->drv, err);
    if (st != FLOCK_OK)
        return st;
    if (stats && c->n_past == 0) /* a new prompt: its statistic starts at zero */
        for (int32_t i = 0; i < c->plan->n_ffn; i++)
            if ((st = c->drv->memset8(c->drv, c->dffn[i].stat, 0, (size_t)c->ffn[i].d_ff * sizeof(float), err)))
                return st;
    size_t step = mode == FLOCK_FF_SPARSE ? 1 : (size_t)c->chunk;
    for (size_t t = 0; t < n; t += step) {
        int32_t T = (int32_t)(n - t < step ? n - t : step);
        if ((st = run_chunk(c, ids + t, T, mode, stats, err)) != FLOCK_OK)
            return st;
    }
    /* The logits copy already waited; this reports a fault of any launch. */
    return c->drv->synchronize(c->drv, err);
}

flock_status flock_cuda_exec_select_griffin(flock_cuda_exec *c, flock_error *err)
{
    flock_status st0 = c->drv->bind(c->drv, err);
    if (st0 != FLOCK_OK)
        return st0;
    for (int32_t i = 0; i < c->plan->n_ffn; i++) {
        cuda_ffn *f = &c->dffn[i];
        LAUNCH(c->rank, c->rank->info.grid[0], 1, 1, &f->stat, &f->sel);
        LAUNCH(c->compact, 1, 1, 1, &f->sel, &f->idx);
        /* Once per prompt, for flock_session_experts. */
        flock_status st = c->drv->dtoh(c->drv, c->ffn[i].idx, f->idx, (size_t)c->keep_k * sizeof(int32_t), err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "layer %d: selected experts", c->ffn[i].layer);
        c->ffn[i].k = c->keep_k;
    }
    return FLOCK_OK;
}

flock_status flock_cuda_exec_upload_selection(flock_cuda_exec *c, flock_error *err)
{
    flock_status st0 = c->drv->bind(c->drv, err);
    if (st0 != FLOCK_OK)
        return st0;
    for (int32_t i = 0; i < c->plan->n_ffn; i++) {
        const flock_exec_ffn *f = &c->ffn[i];
        if (f->k != c->keep_k)
            return flock_error_set(err, FLOCK_E_INTERNAL, "layer %d: %lld experts selected, the kernels take %lld",
                                   f->layer, (long long)f->k, (long long)c->keep_k);
        flock_status st = c->drv->htod(c->drv, c->dffn[i].idx, f->idx, (size_t)f->k * sizeof(int32_t), err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "layer %d: selected experts", f->layer);
    }
    return FLOCK_OK;
}
