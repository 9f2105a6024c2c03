/* The executor's per-op compute over [T, width] buffers. Costs: LINEAR
 * and LM_HEAD stream each weight row once per call (rows x cols x dtype
 * bytes); the decode FF reads only the kept rows of gate_up and down_t. */
#include "attention.h"
#include "exec_impl.h"
#include "griffin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const flock_wmat *W(const flock_exec *e, int32_t id)
{
    return &e->tensors[id];
}

static const float *vecw(const flock_exec *e, int32_t id)
{
    return id >= 0 ? (const float *)e->tensors[id].data : NULL;
}

/* ---- matrix products ---------------------------------------------------- */

/* y[t, r] = x[t, :] . w[r, :] + bias[r] for t < T, over a range of rows r. */
typedef struct mm_ctx {
    const flock_exec *e;
    const flock_wmat *w;
    const float *x;
    int64_t ldx;
    int32_t T;
    float *y;
    int64_t ldy;
    const float *bias;
    flock_cpu_matvec_fn mv; /* generated y[r] = w[r] . x (T = 1), or NULL */
    const flock_q8x *xq;    /* T = 1: x as int8 blocks when w's dtype has dotq, else NULL */
    const float *xt;        /* T >= FLOCK_EXEC_WIDE_T: x transposed, [cols][tp] (the outer tile), else NULL */
    size_t tp;
    const flock_q8x *xqt;   /* T >= FLOCK_EXEC_INT8_T: x as int8 blocks, token t's at t cols / 32 (gemmq), else NULL */
} mm_ctx;

/* Whether rows of dtype dt, n wide, take an int8 input (dotq). */
static bool takes_q8x(const flock_exec *e, flock_dtype dt, size_t n)
{
    return (unsigned)dt < FLOCK_KDT_COUNT && e->k->dotq[dt] && n % 32 == 0;
}

/* The decode input x (n wide) as int8 blocks in e->xq when the kernels of
 * dtype dt take them (dotq), else NULL: quantized once per product. */
static const flock_q8x *quant_input(flock_exec *e, flock_dtype dt, const float *x, size_t n)
{
    if (!takes_q8x(e, dt, n))
        return NULL;
    e->k->quant_x(x, e->xq, n);
    return e->xq;
}

/* Decode streams each weight row once, so the bytes PREFETCH_BYTES ahead
 * of the rows being computed are fetched in software: the hardware
 * prefetcher alone keeps too few lines in flight. Measured on one Zen 3
 * core, best of 9 over 30 MB of rows of 576 (docs/runtime.md, "Decode
 * kernels"): q8_0 one row at a time 10.7 -> 17.4 GB/s, q4_1 four rows at a
 * time 7.0 -> 10.7 GB/s, with 4-5 KB ahead. */
#define PREFETCH_BYTES 5120

/* Prefetches what lies PREFETCH_BYTES past rows [r0, r1) of w, within w. */
static inline void prefetch_ahead(const flock_wmat *w, int64_t r0, int64_t r1)
{
    size_t rb = w->row_bytes, total = (size_t)w->rows * rb;
    size_t from = (size_t)r0 * rb + PREFETCH_BYTES, to = (size_t)r1 * rb + PREFETCH_BYTES;
    const char *p = w->data;
    for (size_t o = from & ~(size_t)63; o < to && o < total; o += 64)
        __builtin_prefetch(p + o);
}

/* Adds the bias of rows [r, r + nr) to every token's outputs. */
static inline void add_bias(const mm_ctx *c, int64_t r, int64_t nr)
{
    if (c->bias)
        for (int32_t t = 0; t < c->T; t++)
            for (int64_t j = 0; j < nr; j++)
                c->y[t * c->ldy + r + j] += c->bias[r + j];
}

/* The prefill tiles' prefetch of the next tile (rows [rn, rn + nn) of w,
 * within [.., end)) while this one computes: its lines handed out in equal
 * shares, at most cap a share, over the kernel calls of the step. */
typedef struct pf_spread {
    const char *p;
    size_t lines, share;
} pf_spread;

static inline pf_spread pf_spread_init(const flock_wmat *w, int64_t rn, int64_t end, int64_t tile, size_t calls,
                                       size_t cap)
{
    int64_t nn = end - rn < tile ? end - rn : tile;
    pf_spread f = {NULL, 0, 0};
    if (nn > 0) {
        f.p = flock_wmat_row(w, rn);
        f.lines = ((size_t)nn * w->row_bytes + 63) / 64;
        f.share = (f.lines + calls - 1) / calls;
        f.share = f.share < cap ? f.share : cap;
    }
    return f;
}

/* The next call's share: its first line in *p, the count returned. */
static inline size_t pf_spread_take(pf_spread *f, const void **p)
{
    size_t now = f->lines < f->share ? f->lines : f->share;
    *p = f->p;
    f->p = f->p ? f->p + 64 * now : NULL;
    f->lines -= now;
    return now;
}

static void mm_task(void *arg, int64_t b, int64_t end, int thread)
{
    const mm_ctx *c = arg;
    const flock_kernel_table *k = c->e->k;
    const flock_wmat *w = c->w;
    size_t n = (size_t)w->cols;
    int dt = (int)w->dtype;
    if (c->T == 1 && c->mv) {
        /* generated: rows [b, end) (b a multiple of 4, like the kernel's
         * own 4-row passes, so the split does not change any row's sum) */
        c->mv(w->data, c->x, b, end, c->y);
        if (c->bias)
            for (int64_t r = b; r < end; r++)
                c->y[r] += c->bias[r];
        return;
    }
    if (c->T == 1 && c->xq) { /* decode with int8 activations */
        int64_t r = b;
        if (k->dotq4[dt]) /* four rows at a time where the table has it (the 4-bit types) */
            for (; r + 4 <= end; r += 4) {
                prefetch_ahead(w, r, r + 4);
                const void *rows[4] = {flock_wmat_row(w, r), flock_wmat_row(w, r + 1), flock_wmat_row(w, r + 2),
                                       flock_wmat_row(w, r + 3)};
                k->dotq4[dt](rows, c->xq, n, c->y + r);
            }
        for (; r < end; r++) {
            prefetch_ahead(w, r, r + 1);
            c->y[r] = k->dotq[dt](flock_wmat_row(w, r), c->xq, n);
        }
        if (c->bias)
            for (r = b; r < end; r++)
                c->y[r] += c->bias[r];
        return;
    }
    if (c->T == 1) {
        /* decode: bandwidth-bound, each row read once straight from memory,
         * one row at a time, the bytes PREFETCH_BYTES ahead fetched where
         * the table says so (kernels.h, prefetch_float): the four-row dot4
         * (four interleaved row streams, each prefetching its own next
         * row) was slower on Zen 3, Gemma 3
         * 270M f16 one-thread decode 15.1-16.3 -> 18.9-20.0 tok/s (its
         * 335 MB f16 LM head, rows of 1280 bytes; three alternating runs
         * each) */
        for (int64_t r = b; r < end; r++) {
            if (k->prefetch_float)
                prefetch_ahead(w, r, r + 1);
            c->y[r] = k->dot[dt](flock_wmat_row(w, r), c->x, n) + (c->bias ? c->bias[r] : 0.f);
        }
        return;
    }
    /* prefill: convert rows to f32 once, then reuse them for every token */
    float *tile = c->e->tile + (size_t)thread * FLOCK_EXEC_WTILE * (size_t)(c->e->max_width * 2 > c->e->max_dff
                                                                                ? c->e->max_width * 2
                                                                                : c->e->max_dff);
    if (c->xqt) { /* int8: 16 rows unpacked once, then 8 tokens at a time (kernels.h, gemmq) */
        uint8_t *pack = (uint8_t *)tile;
        size_t nb = n / 32;
        for (int64_t r = b; r < end; r += 16) {
            int nr = (int)(end - r < 16 ? end - r : 16);
            k->qpack[dt](flock_wmat_row(w, r), w->row_bytes, nr, n, pack);
            /* the next tile's rows come in while this one computes, spread
             * over the groups of tokens */
            pf_spread f = pf_spread_init(w, r + 16, end, 16, ((size_t)c->T + 7) / 8, SIZE_MAX);
            for (int32_t t = 0; t < c->T; t += 8) {
                const void *pf;
                size_t now = pf_spread_take(&f, &pf);
                k->gemmq(pack, nb, c->xqt + (size_t)t * nb, nb, c->T - t < 8 ? c->T - t : 8, c->y + t * c->ldy + r,
                         (size_t)c->ldy, nr, pf, now);
            }
            add_bias(c, r, nr);
        }
        return;
    }
    if (c->xt) { /* over x transposed: wt rows x tb tokens at a time */
        int wt, tb;
        flock_outer_gemm_fn outer = flock_exec_outer_gemm(k, &wt, &tb);
        for (int64_t r = b; r < end; r += wt) {
            int nr = (int)(end - r < wt ? end - r : wt);
            for (int j = 0; j < nr; j++)
                k->to_f32[dt](flock_wmat_row(w, r + j), tile + (size_t)j * n, n);
            /* the next tile's rows come in (to L2) while this one
             * computes, spread over the blocks of tokens (at most one line
             * per k step of the kernel) */
            pf_spread f = pf_spread_init(w, r + wt, end, wt, ((size_t)c->T + tb - 1) / tb, n);
            for (int32_t t = 0; t < c->T; t += tb) {
                const void *pf;
                size_t now = pf_spread_take(&f, &pf);
                int nt = c->T - t < tb ? c->T - t : tb;
                outer(tile, n, nr, c->xt + t, c->tp, n, c->y + t * c->ldy + r, (size_t)c->ldy, nt, pf, now);
            }
            add_bias(c, r, nr);
        }
        return;
    }
    for (int64_t r = b; r < end; r += FLOCK_EXEC_TILE) {
        int64_t nr = end - r < FLOCK_EXEC_TILE ? end - r : FLOCK_EXEC_TILE;
        for (int64_t j = 0; j < nr; j++)
            k->to_f32[dt](flock_wmat_row(w, r + j), tile + j * n, n);
        int32_t t = 0;
        if (nr == FLOCK_EXEC_TILE && k->gemm4x6) /* 4 rows x 6 tokens in registers */
            for (; t + 6 <= c->T; t += 6)
                k->gemm4x6(tile, n, c->x + t * c->ldx, (size_t)c->ldx, n, c->y + t * c->ldy + r, (size_t)c->ldy);
        if (nr == FLOCK_EXEC_TILE) /* 4 rows x 3 tokens in registers */
            for (; t + 3 <= c->T; t += 3)
                k->gemm4x3(tile, n, c->x + t * c->ldx, (size_t)c->ldx, n, c->y + t * c->ldy + r, (size_t)c->ldy);
        for (; t < c->T; t++) {
            const float *xt = c->x + t * c->ldx;
            float *yt = c->y + t * c->ldy + r;
            if (nr == FLOCK_EXEC_TILE) {
                k->dot4[FLOCK_DTYPE_F32](tile, n, xt, n, yt);
            } else {
                for (int64_t j = 0; j < nr; j++)
                    yt[j] = k->dot[FLOCK_DTYPE_F32](tile + j * n, xt, n);
            }
        }
        add_bias(c, r, nr);
    }
}

typedef struct xt_ctx {
    const float *x;
    int64_t ldx;
    int32_t T;
    size_t n, tp;
    float *xt;
} xt_ctx;

/* Columns [8 b, 8 end) of the transpose, in blocks of 8 x 8 (both sides'
 * lines stay in L1), and their zero padding. */
static void xt_task(void *arg, int64_t b, int64_t end, int thread)
{
    (void)thread;
    const xt_ctx *c = arg;
    size_t T = (size_t)c->T, tp = c->tp;
    for (size_t k0 = (size_t)b * 8; k0 < (size_t)end * 8 && k0 < c->n; k0 += 8) {
        size_t k1 = k0 + 8 < c->n ? k0 + 8 : c->n;
        for (size_t t0 = 0; t0 < T; t0 += 8) {
            size_t t1 = t0 + 8 < T ? t0 + 8 : T;
            for (size_t k = k0; k < k1; k++)
                for (size_t t = t0; t < t1; t++)
                    c->xt[k * tp + t] = c->x[t * (size_t)c->ldx + k];
        }
        for (size_t k = k0; k < k1; k++)
            for (size_t t = T; t < tp; t++)
                c->xt[k * tp + t] = 0.f;
    }
}

/* x [T][ldx] (n columns) transposed into e->xt as [n][tp], tp = T rounded
 * up to 32 and the padding zero, for the outer-product tile (on the pool);
 * NULL where n is wider than the buffer (the dot kernels run instead). */
static const float *exec_xt(flock_exec *e, const float *x, int64_t ldx, int32_t T, size_t n, size_t *tp_out)
{
    size_t tp = ((size_t)T + 31) & ~(size_t)31;
    if (!e->xt || n > (size_t)e->max_width || tp > e->xt_tp)
        return NULL;
    xt_ctx c = {x, ldx, T, n, tp, e->xt};
    int64_t blocks = (int64_t)((n + 7) / 8);
    flock_pool_run(e->pool, blocks, blocks / ((int64_t)e->n_threads * 2) + 1, xt_task, &c);
    *tp_out = tp;
    return e->xt;
}

typedef struct xq_ctx {
    const flock_kernel_table *k;
    const float *x;
    int64_t ldx;
    size_t n;
    flock_q8x *xq;
} xq_ctx;

static void xq_task(void *arg, int64_t b, int64_t end, int thread)
{
    (void)thread;
    const xq_ctx *c = arg;
    for (int64_t t = b; t < end; t++)
        c->k->quant_x(c->x + t * c->ldx, c->xq + (size_t)t * (c->n / 32), c->n);
}

/* x [T][ldx] (n columns) as int8 blocks in e->xqt (token t's n / 32
 * blocks at t n / 32) when the table has an int8 prefill tile for w's
 * dtype; else NULL. */
static const flock_q8x *exec_quant_xt(flock_exec *e, const flock_wmat *w, const float *x, int64_t ldx, int32_t T)
{
    size_t n = (size_t)w->cols;
    if (!e->k->gemmq || (unsigned)w->dtype >= FLOCK_KDT_COUNT || !e->k->qpack[w->dtype] || !e->xqt || n % 32 ||
        n > (size_t)e->max_width || T > e->chunk)
        return NULL;
    xq_ctx c = {e->k, x, ldx, n, e->xqt};
    flock_pool_run(e->pool, T, T / ((int64_t)e->n_threads * 4) + 1, xq_task, &c);
    return c.xq;
}

/* y[T, rows] = x[T, cols] W^T (+ bias). Weight rows may be wider than the
 * tile only for LM heads over d_model, which fits: tile rows hold max(2 *
 * max_width, max_dff) floats. */
static void matmul_mv(flock_exec *e, const flock_wmat *w, const float *x, int64_t ldx, int32_t T, float *y,
                      int64_t ldy, const float *bias, flock_cpu_matvec_fn mv)
{
    mm_ctx c = {e, w, x, ldx, T, y, ldy, bias, T == 1 ? mv : NULL, NULL, NULL, 0, NULL};
    if (T == 1 && !c.mv)
        c.xq = quant_input(e, w->dtype, x, (size_t)w->cols);
    if (T >= FLOCK_EXEC_INT8_T && (c.xqt = exec_quant_xt(e, w, x, ldx, T))) {
        /* rows handed out in multiples of the int8 tile's 16, ~8 chunks per thread */
        int64_t grain = (w->rows / ((int64_t)e->n_threads * 8) + 15) / 16 * 16;
        flock_pool_run(e->pool, w->rows, grain < 16 ? 16 : grain, mm_task, &c);
        return;
    }
    int wt_rows, wt_tokens; /* the tile's rows and tokens */
    if (T >= FLOCK_EXEC_WIDE_T && flock_exec_outer_gemm(e->k, &wt_rows, &wt_tokens) &&
        (c.xt = exec_xt(e, x, ldx, T, (size_t)w->cols, &c.tp))) {
        /* rows handed out in multiples of the tile's height, ~8 chunks per thread */
        int64_t grain = (w->rows / ((int64_t)e->n_threads * 8) + wt_rows - 1) / wt_rows * wt_rows;
        flock_pool_run(e->pool, w->rows, grain < wt_rows ? wt_rows : grain, mm_task, &c);
        return;
    }
    /* rows handed out in multiples of 4 (the dot4 kernel), ~8 chunks per thread */
    int64_t grain = (w->rows / ((int64_t)e->n_threads * 8) + 3) & ~(int64_t)3;
    flock_pool_run(e->pool, w->rows, grain < 4 ? 4 : grain, mm_task, &c);
}

static void matmul(flock_exec *e, const flock_wmat *w, const float *x, int64_t ldx, int32_t T, float *y,
                   int64_t ldy, const float *bias)
{
    matmul_mv(e, w, x, ldx, T, y, ldy, bias, NULL);
}

/* The generated kernel of op i, or NULL. */
static flock_cpu_matvec_fn gen_mv(const flock_exec *e, int32_t i)
{
    return e->gen_mv ? e->gen_mv[i] : NULL;
}

/* Decode: up to 4 consecutive LINEAR ops that read the same input (q, k, v)
 * as one pool job, saving the wake-ups. Tasks are groups of 4 rows of one
 * matrix, so every row is computed by the same kernel as in a lone matmul
 * (the results are bitwise those of separate calls). */
typedef struct mm_group {
    int n;
    mm_ctx m[4];
    int64_t g0[5]; /* first row group of each matrix */
} mm_group;

static void group_task(void *arg, int64_t b, int64_t end, int thread)
{
    const mm_group *g = arg;
    int j = 0;
    for (int64_t t = b; t < end; t++) {
        while (t >= g->g0[j + 1])
            j++;
        int64_t r = (t - g->g0[j]) * 4, rows = g->m[j].w->rows;
        mm_task((void *)&g->m[j], r, r + 4 < rows ? r + 4 : rows, thread);
    }
}

/* The group of LINEAR ops from op i (see flock_exec_linear_group), with
 * their shared input quantized into e->xq where they take int8. */
static void linear_group_build(flock_exec *e, int32_t i, mm_group *gp)
{
    const flock_program *p = e->prog;
    const flock_op *first = &p->ops[i];
    mm_group g = {.n = 0};
    g.g0[0] = 0;
    for (int32_t j = i; j < (int32_t)p->n_ops && g.n < 4; j++) {
        const flock_op *op = &p->ops[j];
        if (op->kind != FLOCK_OP_LINEAR || op->in[0] != first->in[0])
            break;
        bool clash = false; /* a dead output may share a slot with another: keep them apart */
        for (int k = 0; k < g.n; k++)
            clash = clash || e->value_slot[p->ops[i + k].out] == e->value_slot[op->out];
        if (clash)
            break;
        int32_t wi = p->values[op->in[0]].width, wo = p->values[op->out].width;
        g.m[g.n] = (mm_ctx){e, W(e, op->w[0]), flock_exec_value(e, op->in[0]), wi, 1, flock_exec_value(e, op->out), wo,
                            vecw(e, op->w[1]), gen_mv(e, j), NULL, NULL, 0, NULL};
        /* one quantization of the shared input serves every matrix that takes it */
        const flock_wmat *wj = W(e, op->w[0]);
        if (!g.m[g.n].mv && takes_q8x(e, wj->dtype, (size_t)wi))
            g.m[g.n].xq = e->xq;
        g.g0[g.n + 1] = g.g0[g.n] + (W(e, op->w[0])->rows + 3) / 4;
        g.n++;
    }
    for (int k = 0; k < g.n; k++)
        if (g.m[k].xq) {
            e->k->quant_x(g.m[k].x, e->xq, (size_t)g.m[k].w->cols);
            break;
        }
    *gp = g;
}

int32_t flock_exec_linear_group(flock_exec *e, int32_t i)
{
    mm_group g;
    linear_group_build(e, i, &g);
    int64_t groups = g.g0[g.n], grain = groups / ((int64_t)e->n_threads * 8);
    flock_pool_run(e->pool, groups, grain < 1 ? 1 : grain, group_task, &g);
    return g.n;
}

/* ---- the batched decode step (flock_exec_run_batch) ---------------------- */

/* A task's rows, then the next sequence over the same rows: the first
 * sequence brings them in from memory, the others find them in cache. */
typedef struct group_batch {
    const mm_group *g;
    size_t n;
} group_batch;

static void group_batch_task(void *arg, int64_t b, int64_t end, int thread)
{
    const group_batch *c = arg;
    for (size_t s = 0; s < c->n; s++)
        group_task((void *)&c->g[s], b, end, thread);
}

int32_t flock_exec_linear_group_batch(flock_exec *const *es, size_t n, int32_t i)
{
    mm_group g[FLOCK_EXEC_MAX_BATCH];
    for (size_t s = 0; s < n; s++)
        linear_group_build(es[s], i, &g[s]);
    /* same program: the same ops and rows in every group */
    int64_t groups = g[0].g0[g[0].n], grain = groups / ((int64_t)es[0]->n_threads * 8);
    group_batch c = {g, n};
    flock_pool_run(es[0]->pool, groups, grain < 1 ? 1 : grain, group_batch_task, &c);
    return g[0].n;
}

typedef struct mm_batch {
    const mm_ctx *c;
    size_t n;
} mm_batch;

static void mm_batch_task(void *arg, int64_t b, int64_t end, int thread)
{
    const mm_batch *c = arg;
    for (size_t s = 0; s < c->n; s++)
        mm_task((void *)&c->c[s], b, end, thread);
}

/* Rows per task of a batched matrix-vector product: about 32 KB of rows
 * (the first sequence's pass leaves them in L1/L2 for the others), a
 * multiple of 4 (the 4-row kernels), so every row is computed as alone. */
static int64_t batch_grain(const flock_wmat *w)
{
    int64_t g = (int64_t)(32768 / (w->row_bytes ? w->row_bytes : 1)) & ~(int64_t)3;
    return g < 4 ? 4 : g;
}

/* Where a step's logits go: row n_past of all of them, else the one row. */
static float *lm_head_out(const flock_exec *e)
{
    return e->all_logits ? e->logits + e->n_past * (size_t)e->n_vocab : e->logits;
}

static void lm_softcap(const flock_op *op, float *y, int64_t n)
{
    if (op->softcap > 0)
        for (int64_t j = 0; j < n; j++)
            y[j] = op->softcap * tanhf(y[j] / op->softcap);
}

void flock_exec_lm_head_batch(flock_exec *const *es, size_t n, const flock_op *op, int32_t i)
{
    mm_ctx c[FLOCK_EXEC_MAX_BATCH];
    const flock_program *p = es[0]->prog;
    int32_t wi = p->values[op->in[0]].width;
    for (size_t s = 0; s < n; s++) {
        flock_exec *e = es[s];
        const flock_wmat *w = W(e, op->w[0]);
        const float *x = flock_exec_value(e, op->in[0]);
        c[s] = (mm_ctx){e, w, x, wi, 1, lm_head_out(e), e->n_vocab, NULL, gen_mv(e, i), NULL, NULL, 0, NULL};
        if (!c[s].mv)
            c[s].xq = quant_input(e, w->dtype, x, (size_t)w->cols);
    }
    const flock_wmat *w = W(es[0], op->w[0]);
    mm_batch b = {c, n};
    flock_pool_run(es[0]->pool, w->rows, batch_grain(w), mm_batch_task, &b);
    for (size_t s = 0; s < n; s++)
        lm_softcap(op, c[s].y, es[s]->n_vocab);
}

/* ---- small ops ----------------------------------------------------------- */

static float act(flock_act a, float x)
{
    switch (a) {
    case FLOCK_ACT_SILU:
        return flock_silu(x);
    case FLOCK_ACT_GELU:
        return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case FLOCK_ACT_GELU_TANH:
        return flock_gelu_tanh(x);
    case FLOCK_ACT_RELU:
        return x > 0 ? x : 0.f;
    default:
        return x;
    }
}

static void op_embed(flock_exec *e, const flock_op *op, const int32_t *ids, int32_t T, float *out, int32_t d)
{
    const flock_wmat *w = W(e, op->w[0]);
    float scale = op->scale != 0 ? op->scale : 1.f; /* 0 = unscaled */
    for (int32_t t = 0; t < T; t++) {
        float *o = out + (size_t)t * d;
        e->k->to_f32[w->dtype](flock_wmat_row(w, ids[t]), o, (size_t)d);
        if (scale != 1.f)
            for (int32_t j = 0; j < d; j++)
                o[j] *= scale;
    }
}

static void op_pos_embed(flock_exec *e, const flock_op *op, const float *x, int32_t T, float *out, int32_t d)
{
    const flock_wmat *w = W(e, op->w[0]);
    for (int32_t t = 0; t < T; t++) {
        int64_t pos = (int64_t)e->n_past + t + op->pos_offset;
        float *o = out + (size_t)t * d;
        e->k->to_f32[w->dtype](flock_wmat_row(w, pos), o, (size_t)d);
        for (int32_t j = 0; j < d; j++)
            o[j] += x[(size_t)t * d + j];
    }
}

typedef struct rmsnorm_ctx {
    const flock_op *op;
    const float *x, *w;
    float *out;
} rmsnorm_ctx;

/* Rows [b, end) of op_rmsnorm (each row as alone: the split changes nothing). */
static void rmsnorm_task(void *arg, int64_t b, int64_t end, int thread)
{
    (void)thread;
    const rmsnorm_ctx *c = arg;
    int32_t g = c->op->group;
    float off = c->op->unit_offset ? 1.f : 0.f;
    for (int64_t r = b; r < end; r++) {
        const float *xi = c->x + r * g;
        float *o = c->out + r * g;
        double ss = 0;
        for (int32_t j = 0; j < g; j++)
            ss += (double)xi[j] * xi[j];
        float inv = (float)(1.0 / sqrt(ss / g + c->op->eps));
        for (int32_t j = 0; j < g; j++)
            o[j] = xi[j] * inv * (c->w[j] + off);
    }
}

/* On the pool for prompt steps (a serial pass of ~1 us per row of 576,
 * 3% of a two-thread prefill); in place for decode, where waking the pool
 * would cost more than the row. */
static void op_rmsnorm(flock_exec *e, const flock_op *op, const float *x, int32_t T, float *out, int32_t width,
                       const float *w)
{
    rmsnorm_ctx c = {op, x, w, out};
    int64_t rows = (int64_t)T * (width / op->group);
    if (T >= FLOCK_EXEC_WIDE_T)
        flock_pool_run(e->pool, rows, rows / ((int64_t)e->n_threads * 4) + 1, rmsnorm_task, &c);
    else
        rmsnorm_task(&c, 0, rows, 0);
}

static void op_layernorm(const flock_op *op, const float *x, int32_t T, float *out, int32_t d, const float *w,
                         const float *b)
{
    for (int32_t t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * d;
        float *o = out + (size_t)t * d;
        double mean = 0, var = 0;
        for (int32_t j = 0; j < d; j++)
            mean += xi[j];
        mean /= d;
        for (int32_t j = 0; j < d; j++)
            var += ((double)xi[j] - mean) * ((double)xi[j] - mean);
        float inv = (float)(1.0 / sqrt(var / d + op->eps));
        for (int32_t j = 0; j < d; j++)
            o[j] = (float)((xi[j] - mean) * inv) * w[j] + (b ? b[j] : 0.f);
    }
}

static void op_rope(flock_exec *e, const flock_op *op, int32_t i_op, const float *x, int32_t T, float *out,
                    int32_t width)
{
    int32_t half = op->rope_dim / 2, hd = op->head_dim;
    const double *freq = e->plan->rope_freq + e->plan->rope_at[i_op]; /* with the op's scaling */
    float *cs = e->rope_cs;
    memcpy(out, x, (size_t)T * width * sizeof(float));
    for (int32_t t = 0; t < T; t++) {
        double pos = (double)(e->n_past + (size_t)t);
        for (int32_t i = 0; i < half; i++) {
            double a = pos * freq[i];
            cs[2 * i] = (float)cos(a);
            cs[2 * i + 1] = (float)sin(a);
        }
        for (int32_t h = 0; h < op->n_head; h++) {
            float *v = out + (size_t)t * width + (size_t)h * hd;
            for (int32_t i = 0; i < half; i++) {
                int32_t a = op->rope_style == FLOCK_ROPE_NORMAL ? 2 * i : i;
                int32_t b = op->rope_style == FLOCK_ROPE_NORMAL ? 2 * i + 1 : i + half;
                float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

/* ---- attention ----------------------------------------------------------- */

/* The chunk's K/V rows go into the cache first; then every token attends
 * to positions up to its own (attention.c). */
static void op_attention(flock_exec *e, const flock_op *op, const float *q, const float *k, const float *v,
                         int32_t T, float *out)
{
    /* head-major cache: [n_kv_head][n_ctx][head_dim], so each decode task
     * (one KV head, one span of positions) reads one contiguous run; with
     * the heads side by side in each row it read 1 of every n_kv_head
     * runs: 2.9 against 2.1 ms per token of f32 attention (SmolLM2, 576
     * positions, docs/runtime.md) */
    size_t kvw = (size_t)e->kv_width[op->kv_slot], hd = (size_t)op->head_dim, hs = (size_t)e->n_ctx * hd;
    for (int32_t t = 0; t < T; t++)
        for (int32_t g = 0; g < op->n_kv_head; g++) {
            size_t src = (size_t)t * kvw + (size_t)g * hd, at = (size_t)g * hs + (e->n_past + (size_t)t) * hd;
            if (e->kv_f16) {
                e->k->f32_to_f16(k + src, (uint16_t *)e->kcache[op->kv_slot] + at, hd);
                e->k->f32_to_f16(v + src, (uint16_t *)e->vcache[op->kv_slot] + at, hd);
            } else {
                memcpy((float *)e->kcache[op->kv_slot] + at, k + src, hd * sizeof(float));
                memcpy((float *)e->vcache[op->kv_slot] + at, v + src, hd * sizeof(float));
            }
        }
    int32_t qw = op->n_head * op->head_dim;
    flock_att_args a = {
        .q = q, .kc = e->kcache[op->kv_slot], .vc = e->vcache[op->kv_slot], .kv_f16 = e->kv_f16, .out = out,
        .ldq = (size_t)qw, .ldkv = hd, .ldo = (size_t)qw, .kv_head_stride = hs,
        .n_past = (int64_t)e->n_past, .T = T, .n_head = op->n_head, .n_kv_head = op->n_kv_head,
        .head_dim = op->head_dim, .window = op->window,
        .scale = op->scale != 0 ? op->scale : 1.f / sqrtf((float)op->head_dim), .softcap = op->softcap,
    };
    flock_attention(e->k, e->pool, e->att_scratch, &a);
}

/* ---- feed-forward -------------------------------------------------------- */

/* out[t, c0:c1] = sum_i z[t, i] * down_t[i, c0:c1], over column blocks. */
typedef struct down_ctx {
    flock_exec *e;
    const flock_wmat *w; /* down_t [d_ff, d] */
    const float *z;      /* [T, d_ff] */
    float *out;          /* [T, d], already holding the bias or zeros */
    int32_t T, d_ff, d;
} down_ctx;

#define DOWN_COLS 64
#define DOWN_PF 16

static void down_task(void *arg, int64_t b, int64_t end, int thread)
{
    const down_ctx *c = arg;
    const flock_kernel_table *k = c->e->k;
    float *blk = c->e->dscratch + (size_t)thread * (size_t)c->e->max_dff * DOWN_COLS;
    for (int64_t bi = b; bi < end; bi++) {
        int32_t c0 = (int32_t)bi * DOWN_COLS, cn = c->d - c0 < DOWN_COLS ? c->d - c0 : DOWN_COLS;
        /* the block D[:, c0:c0+cn] as f32 rows of ldd floats (in place for f32) */
        const float *D;
        size_t ldd;
        if (c->w->dtype == FLOCK_DTYPE_F32) {
            D = (const float *)c->w->data + c0;
            ldd = (size_t)c->d;
        } else {
            size_t off = flock_dtype_row_bytes(c->w->dtype, (uint64_t)c0),
                   len = flock_dtype_row_bytes(c->w->dtype, (uint64_t)cn);
            for (int32_t i = 0; i < c->d_ff; i++) {
                /* the rows' slices are row_bytes apart: fetched DOWN_PF rows ahead */
                if (i + DOWN_PF < c->d_ff) {
                    const char *pf = (const char *)flock_wmat_row(c->w, i + DOWN_PF) + off;
                    __builtin_prefetch(pf);
                    __builtin_prefetch(pf + len - 1);
                }
                k->to_f32[c->w->dtype]((const uint8_t *)flock_wmat_row(c->w, i) + off, blk + (size_t)i * DOWN_COLS,
                                       (size_t)cn);
            }
            D = blk;
            ldd = DOWN_COLS;
        }
        int32_t t = 0, c16 = cn & ~15, c32 = cn & ~31;
        if (k->down8x32 && c32 > 0)
            for (; t + 8 <= c->T; t += 8) { /* 8 tokens x 32 columns in registers */
                const float *zt = c->z + (size_t)t * c->d_ff;
                float *ot = c->out + (size_t)t * c->d + c0;
                for (int32_t cc = 0; cc < c32; cc += 32)
                    k->down8x32(zt, (size_t)c->d_ff, D + cc, ldd, (size_t)c->d_ff, ot + cc, (size_t)c->d);
                for (int32_t cc = c32; cc < c16; cc += 16)
                    for (int32_t h = 0; h < 8; h += 4)
                        k->down4x16(zt + (size_t)h * c->d_ff, (size_t)c->d_ff, D + cc, ldd, (size_t)c->d_ff,
                                    ot + (size_t)h * c->d + cc, (size_t)c->d);
            }
        for (; t + 4 <= c->T; t += 4) /* 4 tokens x 16 columns in registers */
            for (int32_t cc = 0; cc < c16; cc += 16)
                k->down4x16(c->z + (size_t)t * c->d_ff, (size_t)c->d_ff, D + cc, ldd, (size_t)c->d_ff,
                            c->out + (size_t)t * c->d + c0 + cc, (size_t)c->d);
        /* leftover tokens (all columns) and leftover columns (the 4-token groups) */
        for (int32_t tt = 0; tt < c->T; tt++) {
            int32_t from = tt < t ? c16 : 0;
            if (from == cn)
                continue;
            float *o = c->out + (size_t)tt * c->d + c0 + from;
            for (int32_t i = 0; i < c->d_ff; i++) {
                float a = c->z[(size_t)tt * c->d_ff + i];
                if (a != 0)
                    k->axpy_f32(a, D + (size_t)i * ldd + from, o, (size_t)(cn - from));
            }
        }
    }
}

/* The FF activation z[T, d_ff] from the first product h (gate/up pairs
 * when gated, else with fc1's bias), in fixed token slices: slice s takes
 * tokens [s T / S, (s + 1) T / S) and, where part is set, adds its rows'
 * normalized squares (flock_griffin_accumulate_row) into part[s] while each
 * row is still in L1, so the statistic costs no second pass over z. */
typedef struct act_ctx {
    flock_exec *e;
    const flock_op *op;
    const float *h;
    float *z;
    int32_t T, d_ff;
    double *part; /* [S][d_ff], or NULL */
    int64_t slices;
} act_ctx;

static void act_task(void *arg, int64_t b, int64_t end, int thread)
{
    (void)thread;
    const act_ctx *c = arg;
    const flock_kernel_table *k = c->e->k;
    size_t n = (size_t)c->d_ff;
    for (int64_t sl = b; sl < end; sl++) {
        int64_t t0 = sl * c->T / c->slices, t1 = (sl + 1) * c->T / c->slices;
        double *p = c->part ? c->part + (size_t)sl * n : NULL;
        if (p)
            memset(p, 0, n * sizeof *p);
        for (int64_t t = t0; t < t1; t++) {
            float *z = c->z + (size_t)t * n;
            if (c->op->gated) {
                const float *h = c->h + (size_t)t * 2 * n;
                if (c->op->act == FLOCK_ACT_SILU)
                    k->silu_mul(h, z, n);
                else if (c->op->act == FLOCK_ACT_GELU_TANH)
                    k->gelu_tanh_mul(h, z, n);
                else
                    for (size_t r = 0; r < n; r++)
                        z[r] = act(c->op->act, h[2 * r]) * h[2 * r + 1];
            } else {
                const float *h = c->h + (size_t)t * n;
                for (size_t r = 0; r < n; r++)
                    z[r] = act(c->op->act, h[r]);
            }
            if (p)
                flock_griffin_accumulate_row(z, c->d_ff, p);
        }
    }
}

static void ffn_full(flock_exec *e, const flock_op *op, int32_t fi, const float *x, int32_t T, float *out,
                     int32_t d, bool stats)
{
    int32_t dff = op->d_ff;
    const flock_wmat *w1 = W(e, op->w[0]);
    float *h = e->ffn_h, *z = e->ffn_z;
    if (op->gated) {
        /* gate_up [d_ff, 2d] is, byte for byte, a [2 d_ff, d] matrix whose
         * rows alternate gate_i, up_i: one product gives both. */
        flock_wmat gu = {.data = w1->data};
        flock_wmat_set_shape(&gu, w1->dtype, 2 * (int64_t)dff, d);
        matmul(e, &gu, x, d, T, h, 2 * (int64_t)dff, NULL);
    } else {
        matmul(e, w1, x, d, T, h, dff, vecw(e, op->w[3]));
    }
    /* the activation and GRIFFIN's statistic, token slices in parallel */
    act_ctx ac = {e, op, h, z, T, dff, stats ? e->stat_part : NULL, T < FLOCK_STAT_SLICES ? T : FLOCK_STAT_SLICES};
    flock_pool_run(e->pool, ac.slices, 1, act_task, &ac);
    if (stats) /* the slices' sums, in slice order: the thread count changes nothing */
        for (int64_t sl = 0; sl < ac.slices; sl++) {
            const double *p = e->stat_part + sl * dff;
            double *ss = e->ffn[fi].sumsq;
            for (int32_t i = 0; i < dff; i++)
                ss[i] += p[i];
        }
    const float *b2 = vecw(e, op->w[4]);
    for (int32_t t = 0; t < T; t++) {
        if (b2)
            memcpy(out + (size_t)t * d, b2, (size_t)d * sizeof(float));
        else
            memset(out + (size_t)t * d, 0, (size_t)d * sizeof(float));
    }
    down_ctx c = {e, W(e, op->w[2]), z, out, T, dff, d};
    flock_pool_run(e->pool, (d + DOWN_COLS - 1) / DOWN_COLS, 1, down_task, &c);
}

/* The gather FF for one token: for each kept neuron i, z_i from row i of
 * gate_up (or fc1), then out += z_i * down_t[i]. Reads k * (3 d) weights
 * (gated) instead of d_ff * 3d. The kept list is cut into a fixed number of
 * slices, each summed into its own partial and the partials added in slice
 * order, so the result does not depend on the thread count or scheduling. */
typedef struct gather_ctx {
    flock_exec *e;
    const flock_op *op;
    const int32_t *idx;
    int64_t k;
    const float *x;
    int32_t d;
    const flock_q8x *xq; /* x as int8 blocks when gate_up's dtype has dotq, else NULL */
    const uint8_t *p1, *p2; /* the kept rows packed (flock_exec_pack), or NULL: rows by idx */
} gather_ctx;

/* Kept neuron j's gate_up (or fc1) row and down_t row. */
static inline const void *row1(const gather_ctx *c, const flock_wmat *w1, int64_t j)
{
    return c->p1 ? c->p1 + (size_t)j * w1->row_bytes : flock_wmat_row(w1, c->idx[j]);
}

static inline const void *row2(const gather_ctx *c, const flock_wmat *w2, int64_t j)
{
    return c->p2 ? c->p2 + (size_t)j * w2->row_bytes : flock_wmat_row(w2, c->idx[j]);
}

/* Prefetches `bytes` of the rows of w of kept neurons [j0, min(j1, end)):
 * at packed + j row_bytes where the rows are packed (c->p1, c->p2), else
 * row idx[j] of w. */
static inline void prefetch_rows(const gather_ctx *c, const flock_wmat *w, const uint8_t *packed, size_t bytes,
                                 int64_t j0, int64_t j1, int64_t end)
{
    for (int64_t j = j0; j < j1 && j < end; j++) {
        const char *r = packed ? (const char *)packed + (size_t)j * w->row_bytes : flock_wmat_row(w, c->idx[j]);
        for (size_t o = 0; o < bytes; o += 64)
            __builtin_prefetch(r + o);
    }
}

/* z of kept neuron j (one row of gate_up, or fc1 plus its bias). */
static inline float neuron_z(const gather_ctx *c, const flock_wmat *w1, size_t up_off, const float *b1, int64_t j)
{
    const flock_kernel_table *k = c->e->k;
    const flock_op *op = c->op;
    int dt1 = (int)w1->dtype;
    size_t d = (size_t)c->d;
    const int32_t i = c->idx[j];
    const void *r1 = row1(c, w1, j);
    if (op->gated && c->xq)
        return act(op->act, k->dotq[dt1](r1, c->xq, d)) * k->dotq[dt1]((const uint8_t *)r1 + up_off, c->xq, d);
    if (op->gated)
        return act(op->act, k->dot[dt1](r1, c->x, d)) * k->dot[dt1]((const uint8_t *)r1 + up_off, c->x, d);
    return act(op->act, k->dot[dt1](r1, c->x, d) + (b1 ? b1[i] : 0.f));
}

/* Kept neurons [b, end) in order into part. Four at a time where the
 * kernels allow (dotq4 over {gate, up} of two neurons, twice; axpy4 over
 * the four down_t rows), each bitwise what one neuron at a time gives, so
 * the grouping never changes a result. The rows are scattered: the next
 * group's are prefetched while this one computes. */
static void gather_task(const gather_ctx *c, int64_t b, int64_t end, float *part)
{
    const flock_kernel_table *k = c->e->k;
    const flock_op *op = c->op;
    const flock_wmat *w1 = W(c->e, op->w[0]), *w2 = W(c->e, op->w[2]);
    const float *b1 = op->gated ? NULL : vecw(c->e, op->w[3]);
    size_t d = (size_t)c->d;
    int dt1 = (int)w1->dtype, dt2 = (int)w2->dtype;
    size_t bytes1 = w1->row_bytes, bytes2 = w2->row_bytes; /* down_t rows are d wide */
    size_t up_off = flock_dtype_row_bytes(w1->dtype, d); /* the up half of a gate_up row */
    bool pair_up = op->gated && c->xq && k->dotq4[dt1];
    int64_t j = b;
    if (pair_up || k->axpy4[dt2]) {
        prefetch_rows(c, w1, c->p1, bytes1, j, j + 4, end);
        prefetch_rows(c, w2, c->p2, bytes2, j, j + 4, end);
        for (; j + 4 <= end; j += 4) {
            /* the next group's rows, a few at a time between the products:
             * issued all at once they stalled the core (they outnumber the
             * line-fill buffers; measured slower) */
            float z[4];
            if (pair_up)
                for (int h = 0; h < 4; h += 2) {
                    prefetch_rows(c, w1, c->p1, bytes1, j + 4 + h, j + 6 + h, end);
                    const uint8_t *ra = row1(c, w1, j + h), *rb = row1(c, w1, j + h + 1);
                    const void *rows[4] = {ra, ra + up_off, rb, rb + up_off};
                    float o[4];
                    k->dotq4[dt1](rows, c->xq, d, o);
                    z[h] = act(op->act, o[0]) * o[1];
                    z[h + 1] = act(op->act, o[2]) * o[3];
                }
            else
                for (int h = 0; h < 4; h++) {
                    prefetch_rows(c, w1, c->p1, bytes1, j + 4 + h, j + 5 + h, end);
                    z[h] = neuron_z(c, w1, up_off, b1, j + h);
                }
            prefetch_rows(c, w2, c->p2, bytes2, j + 4, j + 8, end);
            if (k->axpy4[dt2] && z[0] != 0 && z[1] != 0 && z[2] != 0 && z[3] != 0) {
                const void *rows[4] = {row2(c, w2, j), row2(c, w2, j + 1), row2(c, w2, j + 2), row2(c, w2, j + 3)};
                k->axpy4[dt2](z, rows, part, d);
            } else {
                for (int h = 0; h < 4; h++)
                    if (z[h] != 0)
                        k->axpy[dt2](z[h], row2(c, w2, j + h), part, d);
            }
        }
    }
    /* One neuron at a time: float rows are prefetched only where the table
     * says so (kernels.h, prefetch_float): on Zen 4 each burst of the next
     * neuron's rows (54 lines at SmolLM2's f16 width) stalled the core on
     * full line-fill buffers (SmolLM2 f16, one thread: keep 1.0 decode
     * 60-66 -> 75-78 tok/s without it, keep 0.5 packed 88-91 -> 100-101,
     * unpacked 55-56 either way). The int8 path (types without dotq4)
     * always prefetches. */
    const bool tail_pf = c->xq != NULL || k->prefetch_float;
    for (; j < end; j++) {
        if (tail_pf) {
            prefetch_rows(c, w1, c->p1, bytes1, j + 1, j + 2, end);
            prefetch_rows(c, w2, c->p2, bytes2, j + 1, j + 2, end);
        }
        float z = neuron_z(c, w1, up_off, b1, j);
        if (z != 0)
            k->axpy[dt2](z, row2(c, w2, j), part, d);
    }
}

/* Slice s covers kept neurons [s k / S, (s + 1) k / S). */
static void gather_slices(void *arg, int64_t b, int64_t end, int thread)
{
    const gather_ctx *c = arg;
    int64_t k = c->k;
    for (int64_t s = b; s < end; s++) {
        float *part = c->e->part + (size_t)s * c->e->max_width;
        memset(part, 0, (size_t)c->d * sizeof(float));
        gather_task(c, s * k / FLOCK_GATHER_SLICES, (s + 1) * k / FLOCK_GATHER_SLICES, part);
    }
}

/* The generated gather FF: phase 1 (ffn_up) splits the kept rows j into
 * tasks of `jb` (even, so every pair of neurons the kernel computes
 * together is the same whatever the split), phase 2 (ffn_down) splits the
 * output columns into one block per thread (a multiple of 16 columns): each
 * call then streams whole stretches of the gathered rows, where small
 * blocks would revisit every row once per block (measured: 64-column blocks
 * made the one-thread f16 decode slower than the built-in kernels).
 * flock_pool_run returning between the phases is the barrier (each column
 * needs all of h). Each h[j] and y[c] is computed by one thread in a fixed
 * order: the result is bitwise the same for any thread count. */

typedef struct gen_ctx {
    const flock_cpu_ffn_kernels *g;
    const float *x;
    const int32_t *idx;
    int64_t k, jb, cb;
    int32_t d;
    const void *gate_up, *down_t;
    float *h, *y;
} gen_ctx;

static void gen_up_task(void *arg, int64_t b, int64_t end, int thread)
{
    const gen_ctx *c = arg;
    int64_t j1 = end * c->jb < c->k ? end * c->jb : c->k;
    c->g->up(c->x, c->idx, (int32_t)(b * c->jb), (int32_t)j1, c->gate_up, c->h);
}

static void gen_down_task(void *arg, int64_t b, int64_t end, int thread)
{
    const gen_ctx *c = arg;
    int64_t c1 = end * c->cb < c->d ? end * c->cb : c->d;
    c->g->down(c->h, c->idx, (int32_t)(b * c->cb), (int32_t)c1, c->down_t, c->y);
}

static void ffn_generated(flock_exec *e, const flock_op *op, int32_t fi, const float *x, int32_t T, float *out,
                          int32_t d)
{
    const flock_exec_ffn *f = &e->ffn[fi];
    const float *b2 = vecw(e, op->w[4]);
    /* ~4 tasks per thread for load balance on a shared machine */
    int64_t jb = (f->k / ((int64_t)e->n_threads * 4) + 1) & ~(int64_t)1;
    if (jb < 2)
        jb = 2;
    int64_t cb = ((d + e->n_threads - 1) / e->n_threads + 15) & ~(int64_t)15;
    for (int32_t t = 0; t < T; t++) {
        gen_ctx c = {&e->gen_ffn[fi], x + (size_t)t * d, f->idx, f->k, jb, cb, d, W(e, op->w[0])->data,
                     W(e, op->w[2])->data, e->ffn_h, out + (size_t)t * d};
        flock_pool_run(e->pool, (f->k + jb - 1) / jb, 1, gen_up_task, &c);
        flock_pool_run(e->pool, (d + cb - 1) / cb, 1, gen_down_task, &c);
        if (b2)
            for (int32_t j = 0; j < d; j++)
                c.y[j] += b2[j];
    }
}

/* Whether FF layer fi decodes through its generated kernel (one made for
 * the current k). */
static bool uses_generated_ffn(const flock_exec *e, int32_t fi)
{
    const flock_exec_ffn *f = &e->ffn[fi];
    return e->gen_ffn && e->gen_ffn[fi].up && e->gen_k[fi] == f->k && f->k > 0;
}

/* The gather of FF layer fi over one token x (its int8 blocks in e->xq). */
static gather_ctx gather_setup(flock_exec *e, const flock_op *op, int32_t fi, const float *x, int32_t d)
{
    const flock_exec_ffn *f = &e->ffn[fi];
    gather_ctx c = {e, op, f->idx, f->k, x, d, NULL, NULL, NULL};
    if (op->gated)
        c.xq = quant_input(e, W(e, op->w[0])->dtype, x, (size_t)d);
    return c;
}

/* o = b2 + the slices' partials, in slice order. */
static void gather_sum(flock_exec *e, const flock_op *op, float *o, int32_t d)
{
    const float *b2 = vecw(e, op->w[4]);
    for (int32_t j = 0; j < d; j++)
        o[j] = b2 ? b2[j] : 0.f;
    for (int sl = 0; sl < FLOCK_GATHER_SLICES; sl++)
        e->k->axpy_f32(1.f, e->part + (size_t)sl * e->max_width, o, (size_t)d);
}

/* Packs layer fi's kept rows (flock_exec_pack) unless they are packed
 * already or are all the rows; returns the packed rows or NULL (packing
 * off, nothing to gain, out of memory, or a buffer too small where `grow`
 * is false: the gather then reads the rows in place). One copy of k (3d)
 * weights per selection, where every decode step reads them once. */
static const uint8_t *pack_layer(flock_exec *e, int32_t fi, bool grow, size_t *off2)
{
    const flock_exec_ffn *f = &e->ffn[fi];
    if (!e->pack || e->pack[fi].failed || f->k <= 0 || f->k >= f->d_ff)
        return NULL;
    flock_exec_pack *pk = &e->pack[fi];
    const flock_op *op = &e->prog->ops[f->op];
    const flock_wmat *w1 = W(e, op->w[0]), *w2 = W(e, op->w[2]);
    size_t b1 = w1->row_bytes, b2 = w2->row_bytes, k = (size_t)f->k;
    if (pk->k != f->k || memcmp(pk->idx, f->idx, k * sizeof *f->idx) != 0) {
        if (pk->cap < f->k) { /* the first selection, or a larger k (adaptive budgets) */
            if (!grow)
                return NULL;
            free(pk->rows);
            pk->rows = malloc(k * (b1 + b2));
            if (!pk->idx)
                pk->idx = malloc((size_t)f->d_ff * sizeof *pk->idx);
            if (!pk->rows || !pk->idx) {
                free(pk->rows), free(pk->idx);
                *pk = (flock_exec_pack){.failed = true};
                return NULL;
            }
            pk->cap = f->k;
        }
        uint8_t *p1 = pk->rows, *p2 = pk->rows + (size_t)pk->cap * b1;
        for (size_t j = 0; j < k; j++) {
            memcpy(p1 + j * b1, flock_wmat_row(w1, f->idx[j]), b1);
            memcpy(p2 + j * b2, flock_wmat_row(w2, f->idx[j]), b2);
        }
        memcpy(pk->idx, f->idx, k * sizeof *f->idx);
        pk->k = f->k;
    }
    *off2 = (size_t)pk->cap * b1;
    return pk->rows;
}

void flock_exec_pack_selection(flock_exec *e)
{
    size_t off2;
    for (int32_t fi = 0; fi < e->n_ffn; fi++)
        if (e->ffn[fi].k > 0 && !uses_generated_ffn(e, fi))
            (void)pack_layer(e, fi, true, &off2);
}

static void ffn_sparse(flock_exec *e, const flock_op *op, int32_t fi, const float *x, int32_t T, float *out,
                       int32_t d)
{
    if (uses_generated_ffn(e, fi)) {
        ffn_generated(e, op, fi, x, T, out, d);
        return;
    }
    size_t off2 = 0; /* packed at the selection (flock_exec_pack_selection); no allocation here */
    const uint8_t *packed = pack_layer(e, fi, false, &off2);
    for (int32_t t = 0; t < T; t++) {
        gather_ctx c = gather_setup(e, op, fi, x + (size_t)t * d, d);
        if (packed)
            c.p1 = packed, c.p2 = packed + off2;
        flock_pool_run(e->pool, FLOCK_GATHER_SLICES, 1, gather_slices, &c);
        gather_sum(e, op, out + (size_t)t * d, d);
    }
}

/* The gather FF of n sequences, slice by slice: slice s of every sequence
 * covers about the same stretch of neurons (the kept lists are sorted), so
 * the rows the first sequence reads are in cache for the others where their
 * kept sets overlap. Each sequence's partials and their sum are what
 * ffn_sparse computes for it alone. */
typedef struct gather_batch {
    const gather_ctx *c;
    size_t n;
} gather_batch;

static void gather_batch_slices(void *arg, int64_t b, int64_t end, int thread)
{
    const gather_batch *g = arg;
    for (int64_t s = b; s < end; s++)
        for (size_t q = 0; q < g->n; q++)
            gather_slices((void *)&g->c[q], s, s + 1, thread);
}

void flock_exec_ffn_sparse_batch(flock_exec *const *es, size_t n, const flock_op *op, int32_t i)
{
    gather_ctx c[FLOCK_EXEC_MAX_BATCH];
    flock_exec *who[FLOCK_EXEC_MAX_BATCH];
    size_t m = 0;
    int32_t d = es[0]->prog->values[op->out].width;
    for (size_t s = 0; s < n; s++) {
        flock_exec *e = es[s];
        int32_t fi = e->op_ffn[i];
        const float *x = flock_exec_value(e, op->in[0]);
        if (uses_generated_ffn(e, fi)) {
            ffn_generated(e, op, fi, x, 1, flock_exec_value(e, op->out), d); /* its own two-phase job */
            continue;
        }
        c[m] = gather_setup(e, op, fi, x, d);
        who[m++] = e;
    }
    if (m == 0)
        return;
    gather_batch g = {c, m};
    flock_pool_run(es[0]->pool, FLOCK_GATHER_SLICES, 1, gather_batch_slices, &g);
    for (size_t q = 0; q < m; q++)
        gather_sum(who[q], op, flock_exec_value(who[q], op->out), d);
}

/* ---- the op switch ------------------------------------------------------- */

flock_status flock_exec_check_positions(const flock_exec *e, size_t n, flock_error *err)
{
    const flock_program *p = e->prog;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        if (op->kind != FLOCK_OP_POS_EMBED)
            continue;
        int64_t rows = e->tensors[op->w[0]].rows;
        if ((int64_t)(e->n_past + n) + op->pos_offset > rows)
            return flock_error_set(err, FLOCK_E_RANGE,
                                   "position %zu is beyond the model's %lld learned positions",
                                   e->n_past + n - 1, (long long)(rows - op->pos_offset));
    }
    return FLOCK_OK;
}

flock_status flock_exec_op(flock_exec *e, const flock_op *op, int32_t i, const int32_t *ids, int32_t T,
                           flock_ff_mode mode, bool stats, flock_error *err)
{
    const flock_program *p = e->prog;
    int32_t wo = p->values[op->out].width;
    const float *x = op->kind == FLOCK_OP_EMBED ? NULL : flock_exec_value(e, op->in[0]);
    float *out = op->kind == FLOCK_OP_LM_HEAD ? NULL : flock_exec_value(e, op->out);
    switch (op->kind) {
    case FLOCK_OP_EMBED:
        op_embed(e, op, ids, T, out, wo);
        break;
    case FLOCK_OP_POS_EMBED:
        op_pos_embed(e, op, x, T, out, wo);
        break;
    case FLOCK_OP_RMSNORM:
        op_rmsnorm(e, op, x, T, out, wo, vecw(e, op->w[0]));
        break;
    case FLOCK_OP_LAYERNORM:
        op_layernorm(op, x, T, out, wo, vecw(e, op->w[0]), vecw(e, op->w[1]));
        break;
    case FLOCK_OP_LINEAR: {
        int32_t wi = p->values[op->in[0]].width;
        matmul_mv(e, W(e, op->w[0]), x, wi, T, out, wo, vecw(e, op->w[1]), gen_mv(e, i));
        break;
    }
    case FLOCK_OP_ROPE:
        op_rope(e, op, i, x, T, out, wo);
        break;
    case FLOCK_OP_ATTENTION:
        op_attention(e, op, x, flock_exec_value(e, op->in[1]), flock_exec_value(e, op->in[2]), T, out);
        break;
    case FLOCK_OP_ADD: {
        const float *y = flock_exec_value(e, op->in[1]);
        for (int64_t j = 0; j < (int64_t)T * wo; j++)
            out[j] = x[j] + y[j];
        break;
    }
    case FLOCK_OP_FFN:
        if (mode == FLOCK_FF_FULL)
            ffn_full(e, op, e->op_ffn[i], x, T, out, wo, stats);
        else
            ffn_sparse(e, op, e->op_ffn[i], x, T, out, wo);
        break;
    case FLOCK_OP_LM_HEAD: {
        int32_t wi = p->values[op->in[0]].width;
        const flock_wmat *w = W(e, op->w[0]);
        float *y = lm_head_out(e);
        int32_t rows = T;
        if (!e->all_logits) {
            x += (size_t)(T - 1) * wi; /* only the last token's logits are kept */
            rows = 1;
        }
        matmul_mv(e, w, x, wi, rows, y, e->n_vocab, NULL, gen_mv(e, i));
        lm_softcap(op, y, (int64_t)rows * e->n_vocab);
        break;
    }
    default:
        return flock_error_set(err, FLOCK_E_INTERNAL, "op %d: kind %d", i, (int)op->kind);
    }
    return FLOCK_OK;
}
