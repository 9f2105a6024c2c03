/* Passes over a compiled model (program + per-tensor plans), and the
 * production of each tensor's bytes from the source following its plan. */
#include "frontend.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

int32_t cmodel_add_tensor(cmodel *cm, const char *name, flock_dtype dtype, uint32_t n_dims, const uint64_t *shape,
                          plan_kind kind, const char *src0, const char *src1)
{
    if (cm->p->n_tensors >= cm->cap_plans) {
        uint32_t nc = cm->cap_plans ? cm->cap_plans * 2 : 64;
        tensor_plan *np = realloc(cm->plans, nc * sizeof *np);
        if (!np)
            return -1;
        cm->plans = np;
        cm->cap_plans = nc;
    }
    int32_t id = flock_program_add_tensor(cm->p, name, dtype, n_dims, shape);
    if (id < 0)
        return -1;
    tensor_plan *pl = &cm->plans[id];
    memset(pl, 0, sizeof *pl);
    pl->kind = kind;
    snprintf(pl->src[0], sizeof pl->src[0], "%s", src0 ? src0 : "");
    snprintf(pl->src[1], sizeof pl->src[1], "%s", src1 ? src1 : "");
    return id;
}

void cmodel_free(cmodel *cm)
{
    if (!cm)
        return;
    flock_program_free(cm->p);
    free(cm->plans);
    memset(cm, 0, sizeof *cm);
}

/* Drops the tensors whose keep[i] is 0 and renumbers every op's w[]. */
static flock_status compact_tensors(cmodel *cm, const uint8_t *keep, flock_error *err)
{
    flock_program *p = cm->p;
    int32_t *remap = malloc((size_t)p->n_tensors * sizeof *remap + 1);
    if (!remap)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_tensors; i++) {
        remap[i] = keep[i] ? (int32_t)n : -1;
        if (keep[i]) {
            p->tensors[n] = p->tensors[i];
            cm->plans[n] = cm->plans[i];
            n++;
        }
    }
    for (uint32_t o = 0; o < p->n_ops; o++)
        for (int k = 0; k < FLOCK_OP_MAX_W; k++)
            if (p->ops[o].w[k] >= 0)
                p->ops[o].w[k] = remap[p->ops[o].w[k]];
    p->n_tensors = n;
    free(remap);
    return FLOCK_OK;
}

/* Whether any op other than `self` uses tensor t (e.g. a tied embedding). */
static bool used_elsewhere(const flock_program *p, const flock_op *self, int32_t t)
{
    for (uint32_t o = 0; o < p->n_ops; o++)
        for (int k = 0; k < FLOCK_OP_MAX_W; k++)
            if (&p->ops[o] != self && p->ops[o].w[k] == t)
                return true;
    return false;
}

static void rename_block_tensor(flock_tensor_ref *t, int32_t layer, const char *base)
{
    snprintf(t->name, sizeof t->name, "blk.%d.%s", layer, base);
}

flock_status flock_pass_pack_ffn(cmodel *cm, flock_error *err)
{
    flock_program *p = cm->p;
    uint8_t *keep = malloc(p->n_tensors + 1);
    if (!keep)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    memset(keep, 1, p->n_tensors + 1);
    for (uint32_t o = 0; o < p->n_ops; o++) {
        flock_op *op = &p->ops[o];
        if (op->kind != FLOCK_OP_FFN || op->ffn_layout != FLOCK_FFN_SEPARATE)
            continue;
        int32_t w0 = op->w[0], w1 = op->w[1], w2 = op->w[2];
        if (w0 < 0 || w2 < 0 || (op->gated && w1 < 0) || used_elsewhere(p, op, w0) || used_elsewhere(p, op, w2) ||
            (w1 >= 0 && used_elsewhere(p, op, w1))) {
            free(keep);
            return flock_error_set(err, FLOCK_E_INTERNAL, "pack pass: op %u (ffn, layer %d) has shared or missing "
                                   "weights", o, op->layer);
        }
        int32_t d = p->values[op->in[0]].width;
        if (op->gated) {
            /* gate's slot becomes gate_up [d_ff, 2d]; up's slot goes away. */
            flock_tensor_ref *t = &p->tensors[w0];
            char gate_src[96];
            snprintf(gate_src, sizeof gate_src, "%s", cm->plans[w0].src[0]);
            rename_block_tensor(t, op->layer, "ffn_gate_up");
            t->shape[1] = 2 * (uint64_t)d;
            cm->plans[w0].kind = PLAN_PACK_GATE_UP;
            snprintf(cm->plans[w0].src[0], sizeof cm->plans[w0].src[0], "%s", gate_src);
            snprintf(cm->plans[w0].src[1], sizeof cm->plans[w0].src[1], "%s", cm->plans[w1].src[0]);
            keep[w1] = 0;
            op->w[1] = -1;
        }
        flock_tensor_ref *dt = &p->tensors[w2]; /* down [d, d_ff] -> down_t [d_ff, d] */
        rename_block_tensor(dt, op->layer, "ffn_down_t");
        uint64_t r = dt->shape[0];
        dt->shape[0] = dt->shape[1];
        dt->shape[1] = r;
        cm->plans[w2].kind = PLAN_TRANSPOSE;
        op->ffn_layout = FLOCK_FFN_PACKED;
    }
    flock_status st = compact_tensors(cm, keep, err);
    free(keep);
    return st;
}

flock_status flock_pass_magnitude_rank(cmodel *cm, flock_error *err)
{
    flock_program *p = cm->p;
    for (uint32_t o = 0; o < p->n_ops; o++) {
        flock_op *op = &p->ops[o];
        if (op->kind != FLOCK_OP_FFN || op->w[5] >= 0)
            continue;
        const tensor_plan *pl = &cm->plans[op->w[0]];
        char name[96];
        snprintf(name, sizeof name, "blk.%d.ffn_magnitude_rank", op->layer);
        uint64_t shape[1] = {(uint64_t)op->d_ff};
        /* Packed gated: the plan of gate_up names both sources; otherwise
         * the (separate or plain) w[0] and w[1] plans each name one. */
        const char *a = pl->src[0], *b = NULL;
        if (op->gated)
            b = op->ffn_layout == FLOCK_FFN_PACKED ? pl->src[1] : cm->plans[op->w[1]].src[0];
        int32_t id = cmodel_add_tensor(cm, name, FLOCK_DTYPE_I32, 1, shape,
                                       op->gated ? PLAN_RANK_GATED : PLAN_RANK_PLAIN, a, b);
        if (id < 0)
            return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        p->ops[o].w[5] = id;
    }
    return FLOCK_OK;
}

static bool float_dtype(flock_dtype t)
{
    return t == FLOCK_DTYPE_F32 || t == FLOCK_DTYPE_F16 || t == FLOCK_DTYPE_BF16;
}

/* What --dtype source stores tensor i as, and whether its bytes can be the
 * source's own: a copy keeps its type; gate and up rows packed side by side
 * keep theirs when both have it; down_t (a transpose) keeps a float type
 * and is requantized to down_dtype otherwise; a type flock does not store
 * becomes down_dtype. */
static flock_dtype source_choice(const cmodel *cm, const flock_source *s, uint32_t i, const flock_compile_opts *o,
                                 bool *raw)
{
    const tensor_plan *pl = &cm->plans[i];
    flock_dtype a, b;
    bool ha = flock_source_tensor_dtype(s, pl->src[0], &a, NULL) == FLOCK_OK;
    bool hb = pl->kind == PLAN_PACK_GATE_UP && flock_source_tensor_dtype(s, pl->src[1], &b, NULL) == FLOCK_OK;
    bool gguf = flock_source_kind_of(s) == FLOCK_SOURCE_GGUF;
    *raw = false;
    switch (pl->kind) {
    case PLAN_COPY:
        if (!ha)
            return o->down_dtype;
        *raw = gguf;
        return a;
    case PLAN_PACK_GATE_UP:
        if (ha && hb && a == b) {
            *raw = gguf;
            return a;
        }
        return ha && hb && float_dtype(a) && float_dtype(b) ? FLOCK_DTYPE_F32 : o->down_dtype;
    case PLAN_TRANSPOSE:
        return ha && float_dtype(a) ? a : o->down_dtype;
    default:
        return FLOCK_DTYPE_F32;
    }
}

/* flockc makes these (from f32, formats/quant.c), besides the float types. */
static bool storable_quant(flock_dtype t)
{
    return t == FLOCK_DTYPE_Q8_0 || t == FLOCK_DTYPE_Q4_0 || t == FLOCK_DTYPE_Q4_1 || t == FLOCK_DTYPE_Q5_0 ||
           t == FLOCK_DTYPE_Q4_K || t == FLOCK_DTYPE_Q6_K;
}

/* The type of a matrix whose rows are not whole blocks of `want`: a k-quant
 * (256-element blocks) becomes the 32-element type of at least its bits
 * (q4_k -> q4_1, q6_k -> q8_0; llama.cpp does the same with q5_0 / q8_0,
 * e.g. Gemma 3's d_model 640), and that or any other type f16 when the rows
 * are not whole 32-element blocks either. */
static flock_dtype block_fallback(flock_dtype want, uint64_t cols, bool halves)
{
    flock_dtype f = want == FLOCK_DTYPE_Q4_K ? FLOCK_DTYPE_Q4_1 : want == FLOCK_DTYPE_Q6_K ? FLOCK_DTYPE_Q8_0 : FLOCK_DTYPE_F16;
    uint64_t blk = flock_dtype_block(f);
    return cols % blk || (halves && (cols / 2) % blk) ? FLOCK_DTYPE_F16 : f;
}

flock_status flock_pass_storage_dtype(cmodel *cm, const flock_source *s, const flock_compile_opts *o,
                                      uint32_t *n_fallback, flock_error *err)
{
    flock_dtype dtype = o->dtype;
    if (!o->source_dtype && !float_dtype(dtype) && !storable_quant(dtype))
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "storage dtype %s: flockc stores f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q4_k, q6_k (or source)",
                               flock_dtype_name(dtype));
    if (o->source_dtype && !storable_quant(o->down_dtype) && !float_dtype(o->down_dtype))
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "down dtype %s: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q4_k or q6_k",
                               flock_dtype_name(o->down_dtype));
    *n_fallback = 0;
    for (uint32_t i = 0; i < cm->p->n_tensors; i++) {
        flock_tensor_ref *t = &cm->p->tensors[i];
        tensor_plan *pl = &cm->plans[i];
        pl->raw = false;
        if (t->dtype == FLOCK_DTYPE_I32)
            continue;
        if (t->n_dims < 2) {
            t->dtype = FLOCK_DTYPE_F32;
            continue;
        }
        flock_dtype want = o->source_dtype ? source_choice(cm, s, i, o, &pl->raw) : dtype;
        /* rows of whole blocks, and a gate_up row cut at its middle on a block boundary */
        uint64_t cols = t->shape[t->n_dims - 1], blk = flock_dtype_block(want);
        if (cols % blk || (pl->kind == PLAN_PACK_GATE_UP && (cols / 2) % blk)) {
            flock_dtype asked = want;
            want = block_fallback(want, cols, pl->kind == PLAN_PACK_GATE_UP);
            pl->raw = false;
            if (++*n_fallback == 1)
                cm->fallback_note[0] = 0;
            size_t used = strlen(cm->fallback_note);
            if (used + 4 < sizeof cm->fallback_note && !strstr(cm->fallback_note, "...")) {
                int w = snprintf(cm->fallback_note + used, sizeof cm->fallback_note - used, "%s%s (%s -> %s)",
                                 used ? ", " : "", t->name, flock_dtype_name(asked), flock_dtype_name(want));
                if (w < 0 || (size_t)w >= sizeof cm->fallback_note - used) /* cut: say so */
                    snprintf(cm->fallback_note + used, sizeof cm->fallback_note - used, "%s...", used ? ", " : "");
            }
        }
        t->dtype = want;
    }
    return FLOCK_OK;
}

/* ---- producing the bytes ---------------------------------------------------- */

static flock_status load(const flock_source *s, const char *name, uint64_t want, float **out, flock_error *err)
{
    size_t n = 0;
    flock_status st = flock_source_tensor_f32(s, name, out, &n, err);
    if (st)
        return st;
    if (n != want) {
        free(*out);
        *out = NULL;
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s: %zu elements, expected %llu", name, n,
                               (unsigned long long)want);
    }
    return FLOCK_OK;
}

typedef struct scored {
    double score;
    int32_t index;
} scored;

/* Descending score, ties to the lower index; NaN sorts last. */
static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    double sx = isnan(x->score) ? -INFINITY : x->score, sy = isnan(y->score) ? -INFINITY : y->score;
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static double row_norm(const float *r, uint64_t n)
{
    double s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += (double)r[i] * r[i];
    return sqrt(s);
}

static flock_status rank(const tensor_plan *pl, const flock_source *s, uint64_t d_ff, int32_t *dst, flock_error *err)
{
    uint32_t nd;
    uint64_t shape[4];
    flock_status st = flock_source_tensor_shape(s, pl->src[0], &nd, shape, err);
    if (st)
        return st;
    if (nd != 2 || shape[0] != d_ff)
        return flock_error_set(err, FLOCK_E_CORRUPT, "rank: tensor %s is not [%llu, d]", pl->src[0],
                               (unsigned long long)d_ff);
    uint64_t d = shape[1];
    float *a = NULL, *b = NULL;
    st = load(s, pl->src[0], d_ff * d, &a, err);
    if (!st && pl->kind == PLAN_RANK_GATED)
        st = load(s, pl->src[1], d_ff * d, &b, err);
    scored *sc = st ? NULL : malloc(d_ff * sizeof *sc);
    if (!st && !sc)
        st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    if (!st) {
        for (uint64_t i = 0; i < d_ff; i++) {
            sc[i].index = (int32_t)i;
            sc[i].score = row_norm(a + i * d, d) * (b ? row_norm(b + i * d, d) : 1.0);
        }
        qsort(sc, d_ff, sizeof *sc, cmp_scored);
        for (uint64_t i = 0; i < d_ff; i++)
            dst[i] = sc[i].index;
    }
    free(sc);
    free(a);
    free(b);
    return st;
}

/* f32 -> storage dtype over threads: the conversion is most of a compile's
 * CPU time (f16 rounding is per element). Each thread converts one range. */
typedef struct conv_job {
    flock_dtype dtype;
    const float *src;
    uint8_t *dst;
    size_t n;
    flock_status st;
} conv_job;

static void *conv_worker(void *arg)
{
    conv_job *j = arg;
    j->st = flock_convert_from_f32(j->dtype, j->src, j->dst, j->n);
    return NULL;
}

static flock_status convert_parallel(flock_dtype dtype, const float *src, void *dst, size_t n, uint64_t row)
{
    enum { MAX_THREADS = 16, MIN_PER_THREAD = 1 << 18 };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nt = cpus > 1 ? (size_t)cpus : 1;
    nt = nt > MAX_THREADS ? MAX_THREADS : nt;
    if (n / MIN_PER_THREAD < nt)
        nt = n / MIN_PER_THREAD ? n / MIN_PER_THREAD : 1;
    conv_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    /* each thread a whole number of blocks (of rows, for the quantized types) */
    size_t unit = flock_dtype_is_quantized(dtype) ? (size_t)row : 1;
    size_t per = ((n / unit + nt - 1) / nt) * unit;
    size_t started = 0;
    for (size_t t = 0; t < nt; t++) {
        size_t a = t * per < n ? t * per : n, b = a + per < n ? a + per : n;
        jobs[t] = (conv_job){dtype, src + a, (uint8_t *)dst + flock_dtype_row_bytes(dtype, a), b - a, FLOCK_OK};
        if (t == 0 || pthread_create(&tid[t], NULL, conv_worker, &jobs[t]) != 0)
            conv_worker(&jobs[t]); /* the caller's share, or no thread to be had */
        else
            started |= (size_t)1 << t;
    }
    flock_status st = FLOCK_OK;
    for (size_t t = 0; t < nt; t++) {
        if (started & ((size_t)1 << t))
            pthread_join(tid[t], NULL);
        if (jobs[t].st)
            st = jobs[t].st;
    }
    return st;
}

/* A raw plan's bytes: the source tensor's own (COPY), or row r of src[0]
 * then row r of src[1] (PACK_GATE_UP), both in t's storage type. */
static flock_status raw_bytes(const flock_tensor_ref *t, const tensor_plan *pl, const flock_source *s, uint8_t *dst,
                              size_t nbytes, flock_error *err)
{
    const void *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    flock_status st = flock_source_tensor_raw(s, pl->src[0], &a, &na, err);
    if (st)
        return st;
    if (pl->kind == PLAN_COPY) {
        if (na != nbytes)
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s: %zu source bytes, %zu expected", t->name, na,
                                   nbytes);
        memcpy(dst, a, nbytes);
        return FLOCK_OK;
    }
    if ((st = flock_source_tensor_raw(s, pl->src[1], &b, &nb, err)))
        return st;
    uint64_t rows = t->shape[0];
    size_t half = flock_dtype_row_bytes(t->dtype, t->shape[1] / 2);
    if (na != rows * half || nb != rows * half || nbytes != 2 * rows * half)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s: gate and up hold %zu and %zu bytes, %zu expected",
                               t->name, na, nb, (size_t)(rows * half));
    for (uint64_t r = 0; r < rows; r++) {
        memcpy(dst + r * 2 * half, (const uint8_t *)a + r * half, half);
        memcpy(dst + r * 2 * half + half, (const uint8_t *)b + r * half, half);
    }
    return FLOCK_OK;
}

flock_status cmodel_tensor_bytes(const cmodel *cm, const flock_source *s, uint32_t i, void **out, size_t *size,
                                 flock_error *err)
{
    const flock_tensor_ref *t = &cm->p->tensors[i];
    const tensor_plan *pl = &cm->plans[i];
    uint64_t n = 1;
    for (uint32_t k = 0; k < t->n_dims; k++)
        n *= t->shape[k];
    size_t nbytes = (size_t)flock_dtype_tensor_bytes(t->dtype, t->n_dims, t->shape);
    void *bytes = nbytes ? malloc(nbytes) : NULL;
    if (!bytes)
        return flock_error_set(err, nbytes ? FLOCK_E_NOMEM : FLOCK_E_INTERNAL, "tensor %s: %s", t->name,
                               nbytes ? "out of memory" : "no byte size for its shape and dtype");
    flock_status st = FLOCK_OK;
    float *f = NULL;
    if (pl->raw) { /* the source's own blocks: a copy, or gate and up rows side by side */
        st = raw_bytes(t, pl, s, bytes, nbytes, err);
    } else if (pl->kind == PLAN_RANK_GATED || pl->kind == PLAN_RANK_PLAIN) {
        st = rank(pl, s, n, bytes, err);
    } else if (pl->kind == PLAN_COPY) {
        st = load(s, pl->src[0], n, &f, err);
    } else if (pl->kind == PLAN_TRANSPOSE) { /* t is [r, c] = source [c, r] transposed */
        float *src = NULL;
        uint64_t r = t->shape[0], c = t->shape[1];
        st = load(s, pl->src[0], n, &src, err);
        if (!st && !(f = malloc(n * sizeof *f)))
            st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        for (uint64_t a = 0; !st && a < c; a++) /* source row a (length r) -> column a */
            for (uint64_t b = 0; b < r; b++)
                f[b * c + a] = src[a * r + b];
        free(src);
    } else { /* PACK_GATE_UP: t is [d_ff, 2d] */
        float *g = NULL, *u = NULL;
        uint64_t rows = t->shape[0], d = t->shape[1] / 2;
        st = load(s, pl->src[0], rows * d, &g, err);
        if (!st)
            st = load(s, pl->src[1], rows * d, &u, err);
        if (!st && !(f = malloc(n * sizeof *f)))
            st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        for (uint64_t r = 0; !st && r < rows; r++) {
            memcpy(f + r * 2 * d, g + r * d, d * sizeof *f);
            memcpy(f + r * 2 * d + d, u + r * d, d * sizeof *f);
        }
        free(g);
        free(u);
    }
    for (size_t k = 0; !st && f && k < n; k++) /* a nan/inf weight (a damaged source block): named, not stored */
        if (!isfinite(f[k]))
            st = flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s (from %s%s%s): element %zu (row %llu) is not "
                                 "finite (%g): the source's weights are damaged", t->name, pl->src[0],
                                 pl->src[1][0] ? " and " : "", pl->src[1], k,
                                 (unsigned long long)(k / t->shape[t->n_dims - 1]), (double)f[k]);
    if (!st && f)
        st = convert_parallel(t->dtype, f, bytes, n, t->shape[t->n_dims - 1]);
    free(f);
    if (st) {
        free(bytes);
        if (err && err->status != st)
            flock_error_set(err, st, "tensor %s: conversion to %s failed", t->name, flock_dtype_name(t->dtype));
        return st;
    }
    /* a source block with a nan/inf scale (a damaged GGUF), or weights whose
     * requantized scale overflows f16: refused here, not nan logits later */
    uint64_t blk = 0;
    float v = 0;
    if (flock_dtype_find_bad_scale(t->dtype, bytes, nbytes, &blk, &v)) {
        free(bytes);
        const uint64_t per_row = t->shape[t->n_dims - 1] / flock_dtype_block(t->dtype);
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s (from %s%s%s): %s block %llu (row %llu) has a "
                               "non-finite scale (%g)%s", t->name, pl->src[0], pl->src[1][0] ? " and " : "",
                               pl->src[1], flock_dtype_name(t->dtype), (unsigned long long)blk,
                               (unsigned long long)(per_row ? blk / per_row : 0), (double)v,
                               pl->raw ? ": the source's own block is damaged" : "");
    }
    *out = bytes;
    *size = nbytes;
    return FLOCK_OK;
}
