/* See runtime_ref.h. */
#include "runtime_ref.h"
#include "test_util.h"

#include "flock/formats.h"

/* ---- weights ---- */

static float *rnd(tiny_model *m, size_t n, float scale, uint64_t *s)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        float v = flock_test_randf(s) * scale;
        /* round through the storage type so both sides see the same value */
        if (m->c.wdtype == FLOCK_DTYPE_F16)
            v = flock_f16_to_f32(flock_f32_to_f16(v));
        else if (m->c.wdtype == FLOCK_DTYPE_BF16)
            v = flock_bf16_to_f32(flock_f32_to_bf16(v));
        p[i] = v;
    }
    return p;
}

static float *rndvec(size_t n, float base, float scale, uint64_t *s)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = base + flock_test_randf(s) * scale;
    return p;
}

/* ---- program building (plain arrays; the IR library is not needed) ---- */

static int32_t add_value(flock_program *p, const char *name, int32_t width)
{
    flock_value *v = &p->values[p->n_values];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->dtype = FLOCK_DTYPE_F32;
    v->width = width;
    return (int32_t)p->n_values++;
}

/* Registers a tensor: stored in `dt` (vectors always f32), from f32 data. */
static int32_t add_tensor(tiny_model *m, const char *name, const float *data, int64_t rows, int64_t cols, int vec)
{
    flock_program *p = &m->prog;
    int32_t id = (int32_t)p->n_tensors++;
    flock_tensor_ref *r = &p->tensors[id];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    flock_dtype dt = vec ? FLOCK_DTYPE_F32 : m->c.wdtype;
    r->dtype = dt;
    r->n_dims = vec ? 1 : 2;
    r->shape[0] = vec ? (uint64_t)cols : (uint64_t)rows;
    r->shape[1] = (uint64_t)cols;
    size_t n = (size_t)rows * (size_t)cols;
    void *blob = aligned_alloc(64, (n * flock_dtype_size(dt) + 63) & ~(size_t)63);
    flock_convert_from_f32(dt, data, blob, n);
    m->blobs[m->n_blobs++] = blob;
    m->tensors[id] = (flock_wmat){.data = blob};
    flock_wmat_set_shape(&m->tensors[id], dt, rows, cols);
    return id;
}

static flock_op *add_op(flock_program *p, flock_op_kind kind, int layer, int32_t out, int n_in, int32_t a, int32_t b,
                        int32_t c)
{
    flock_op *op = &p->ops[p->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->layer = layer;
    op->out = out;
    op->n_in = n_in;
    op->in[0] = a;
    op->in[1] = n_in > 1 ? b : -1;
    op->in[2] = n_in > 2 ? c : -1;
    for (int i = 3; i < FLOCK_OP_MAX_IN; i++)
        op->in[i] = -1;
    for (int i = 0; i < FLOCK_OP_MAX_W; i++)
        op->w[i] = -1;
    return op;
}

static int32_t norm_op(tiny_model *m, int layer, const char *nm, int32_t x, const float *w, const float *b)
{
    flock_program *p = &m->prog;
    char name[64];
    int d = m->c.d;
    int32_t out = add_value(p, nm, d);
    flock_op *op = add_op(p, m->c.opt ? FLOCK_OP_LAYERNORM : FLOCK_OP_RMSNORM, layer, out, 1, x, 0, 0);
    snprintf(name, sizeof name, "%s.%d.w", nm, layer);
    op->w[0] = add_tensor(m, name, w, 1, d, 1);
    if (m->c.opt) {
        snprintf(name, sizeof name, "%s.%d.b", nm, layer);
        op->w[1] = add_tensor(m, name, b, 1, d, 1);
    }
    op->group = d;
    op->eps = 1e-5f;
    return out;
}

static int32_t linear_op(tiny_model *m, int layer, const char *nm, int32_t x, const float *w, const float *b,
                         int out_w, int in_w)
{
    flock_program *p = &m->prog;
    char name[64];
    int32_t out = add_value(p, nm, out_w);
    flock_op *op = add_op(p, FLOCK_OP_LINEAR, layer, out, 1, x, 0, 0);
    snprintf(name, sizeof name, "%s.%d.w", nm, layer);
    op->w[0] = add_tensor(m, name, w, out_w, in_w, 0);
    if (b) {
        snprintf(name, sizeof name, "%s.%d.b", nm, layer);
        op->w[1] = add_tensor(m, name, b, 1, out_w, 1);
    }
    return out;
}

static int32_t rope_op(tiny_model *m, int layer, int32_t x, int heads)
{
    flock_program *p = &m->prog;
    int32_t out = add_value(p, "rope", heads * m->c.hd);
    flock_op *op = add_op(p, FLOCK_OP_ROPE, layer, out, 1, x, 0, 0);
    op->n_head = heads;
    op->head_dim = m->c.hd;
    op->rope_dim = m->c.rope_dim;
    op->rope_style = m->c.style;
    op->rope_theta = 10000.0;
    op->rope_scaling = m->c.scaling;
    op->rope_factor = m->c.rope_factor;
    op->rope_low_freq_factor = 1.0f;
    op->rope_high_freq_factor = 4.0f;
    op->rope_orig_ctx = 16;
    return out;
}

static void build_program(tiny_model *m)
{
    const tiny_cfg *c = &m->c;
    flock_program *p = &m->prog;
    int d = c->d, qw = c->n_head * c->hd, kw = c->n_kv * c->hd, L = c->n_layer;
    size_t cap = 64 + 40 * (size_t)L;
    p->values = calloc(cap, sizeof *p->values);
    p->tensors = calloc(cap, sizeof *p->tensors);
    p->ops = calloc(cap, sizeof *p->ops);
    m->tensors = calloc(cap, sizeof *m->tensors);
    m->blobs = calloc(cap, sizeof *m->blobs);
    p->cap_values = p->cap_tensors = p->cap_ops = (uint32_t)cap;
    snprintf(p->values[0].name, sizeof p->values[0].name, "tokens");
    p->values[0].dtype = FLOCK_DTYPE_I32;
    p->values[0].width = 1;
    p->n_values = 1;
    /* OPT's position table holds n_ctx + its offset of 2 rows */
    p->cfg = (flock_model_config){.n_layer = L, .d_model = d, .n_vocab = c->vocab,
                                  .n_ctx = c->opt ? m->n_pos - 2 : m->n_pos, .n_kv_slots = L, .kv_width = kw,
                                  .d_ff = c->d_ff};
    snprintf(p->cfg.arch, sizeof p->cfg.arch, "%s", c->opt ? "opt" : "llama");

    int32_t x = add_value(p, "emb", d);
    flock_op *op = add_op(p, FLOCK_OP_EMBED, -1, x, 1, 0, 0, 0);
    op->w[0] = add_tensor(m, "token_embd", m->emb, c->vocab, d, 0);
    op->scale = c->embed_scale;
    if (c->opt) {
        int32_t y = add_value(p, "pos", d);
        op = add_op(p, FLOCK_OP_POS_EMBED, -1, y, 1, x, 0, 0);
        op->w[0] = add_tensor(m, "pos_embd", m->pos, m->n_pos, d, 0);
        op->pos_offset = 2;
        x = y;
    }
    for (int l = 0; l < L; l++) {
        const tiny_layer *ly = &m->L[l];
        int32_t h = norm_op(m, l, "attn_norm", x, ly->n1, ly->n1b);
        int32_t q = linear_op(m, l, "q", h, ly->wq, ly->bq, qw, d);
        int32_t k = linear_op(m, l, "k", h, ly->wk, ly->bk, kw, d);
        int32_t v = linear_op(m, l, "v", h, ly->wv, ly->bv, kw, d);
        if (!c->opt) {
            q = rope_op(m, l, q, c->n_head);
            k = rope_op(m, l, k, c->n_kv);
        }
        int32_t a = add_value(p, "attn", qw);
        op = add_op(p, FLOCK_OP_ATTENTION, l, a, 3, q, k, v);
        op->n_head = c->n_head;
        op->n_kv_head = c->n_kv;
        op->head_dim = c->hd;
        op->window = c->window;
        op->softcap = c->softcap;
        op->kv_slot = l;
        int32_t o = linear_op(m, l, "o", a, ly->wo, ly->bo, d, qw);
        int32_t r = add_value(p, "res1", d);
        add_op(p, FLOCK_OP_ADD, l, r, 2, x, o, 0);
        h = norm_op(m, l, "ffn_norm", r, ly->n2, ly->n2b);
        int32_t f = add_value(p, "ffn", d);
        op = add_op(p, FLOCK_OP_FFN, l, f, 1, h, 0, 0);
        op->d_ff = c->d_ff;
        op->act = c->act;
        op->gated = !c->opt;
        op->ffn_layout = FLOCK_FFN_PACKED;
        char name[64];
        /* pack: gated gate_up [d_ff, 2d]; down_t [d_ff, d] */
        float *down_t = malloc((size_t)c->d_ff * d * sizeof(float));
        for (int i = 0; i < c->d_ff; i++)
            for (int j = 0; j < d; j++)
                down_t[(size_t)i * d + j] = ly->wd[(size_t)j * c->d_ff + i];
        if (op->gated) {
            float *gu = malloc((size_t)c->d_ff * 2 * d * sizeof(float));
            for (int i = 0; i < c->d_ff; i++) {
                memcpy(gu + (size_t)i * 2 * d, ly->wg + (size_t)i * d, d * sizeof(float));
                memcpy(gu + (size_t)i * 2 * d + d, ly->wu + (size_t)i * d, d * sizeof(float));
            }
            snprintf(name, sizeof name, "blk.%d.ffn_gate_up", l);
            op->w[0] = add_tensor(m, name, gu, c->d_ff, 2 * d, 0);
            free(gu);
        } else {
            snprintf(name, sizeof name, "blk.%d.fc1", l);
            op->w[0] = add_tensor(m, name, ly->wg, c->d_ff, d, 0);
            snprintf(name, sizeof name, "blk.%d.b1", l);
            op->w[3] = add_tensor(m, name, ly->b1, 1, c->d_ff, 1);
            snprintf(name, sizeof name, "blk.%d.b2", l);
            op->w[4] = add_tensor(m, name, ly->b2, 1, d, 1);
        }
        snprintf(name, sizeof name, "blk.%d.ffn_down_t", l);
        op->w[2] = add_tensor(m, name, down_t, c->d_ff, d, 0);
        free(down_t);
        int32_t r2 = add_value(p, "res2", d);
        add_op(p, FLOCK_OP_ADD, l, r2, 2, r, f, 0);
        x = r2;
    }
    int32_t h = norm_op(m, -1, "out_norm", x, m->nf, m->nfb);
    int32_t lo = add_value(p, "logits", c->vocab);
    op = add_op(p, FLOCK_OP_LM_HEAD, -1, lo, 1, h, 0, 0);
    op->w[0] = add_tensor(m, "output", m->head, c->vocab, d, 0);
    op->softcap = c->head_softcap;
}

void tiny_model_init(tiny_model *m, const tiny_cfg *c)
{
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->n_pos = 64;
    uint64_t s = c->seed | 1;
    int d = c->d, qw = c->n_head * c->hd, kw = c->n_kv * c->hd, f = c->d_ff;
    float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)f);
    m->emb = rnd(m, (size_t)c->vocab * d, 1.0f, &s);
    m->pos = rnd(m, (size_t)m->n_pos * d, 0.5f, &s);
    m->head = rnd(m, (size_t)c->vocab * d, sd * 2, &s);
    m->nf = rndvec(d, 1.0f, 0.2f, &s);
    m->nfb = rndvec(d, 0.0f, 0.1f, &s);
    m->L = calloc((size_t)c->n_layer, sizeof *m->L);
    for (int l = 0; l < c->n_layer; l++) {
        tiny_layer *y = &m->L[l];
        y->n1 = rndvec(d, 1.0f, 0.2f, &s);
        y->n1b = rndvec(d, 0.0f, 0.1f, &s);
        y->n2 = rndvec(d, 1.0f, 0.2f, &s);
        y->n2b = rndvec(d, 0.0f, 0.1f, &s);
        y->wq = rnd(m, (size_t)qw * d, sd * 2, &s);
        y->wk = rnd(m, (size_t)kw * d, sd * 2, &s);
        y->wv = rnd(m, (size_t)kw * d, sd, &s);
        y->wo = rnd(m, (size_t)d * qw, sd, &s);
        y->wg = rnd(m, (size_t)f * d, sd, &s);
        y->wu = rnd(m, (size_t)f * d, sd, &s);
        y->wd = rnd(m, (size_t)d * f, sf, &s);
        if (c->opt) {
            y->bq = rndvec(qw, 0, 0.1f, &s);
            y->bk = rndvec(kw, 0, 0.1f, &s);
            y->bv = rndvec(kw, 0, 0.1f, &s);
            y->bo = rndvec(d, 0, 0.1f, &s);
            y->b1 = rndvec(f, 0, 0.1f, &s);
            y->b2 = rndvec(d, 0, 0.1f, &s);
        }
    }
    build_program(m);
}

void tiny_model_free(tiny_model *m)
{
    free(m->emb);
    free(m->pos);
    free(m->head);
    free(m->nf);
    free(m->nfb);
    for (int l = 0; l < m->c.n_layer; l++) {
        tiny_layer *y = &m->L[l];
        float *all[] = {y->n1, y->n1b, y->n2, y->n2b, y->wq, y->wk, y->wv, y->wo, y->bq, y->bk,
                        y->bv, y->bo, y->wg, y->wu, y->wd, y->b1, y->b2};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]);
    }
    free(m->L);
    for (int i = 0; i < m->n_blobs; i++)
        free(m->blobs[i]);
    free(m->blobs);
    free(m->tensors);
    free(m->prog.values);
    free(m->prog.tensors);
    free(m->prog.ops);
}

/* ---- reference forward ---- */

static double actd(flock_act a, double x)
{
    switch (a) {
    case FLOCK_ACT_SILU:
        return x / (1 + exp(-x));
    case FLOCK_ACT_GELU:
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case FLOCK_ACT_GELU_TANH:
        return 0.5 * x * (1 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case FLOCK_ACT_RELU:
        return x > 0 ? x : 0;
    default:
        return x;
    }
}

static void norm(const tiny_model *m, const double *x, double *y, const float *w, const float *b)
{
    int d = m->c.d;
    double mean = 0, var = 0;
    if (m->c.opt) {
        for (int j = 0; j < d; j++)
            mean += x[j];
        mean /= d;
    }
    for (int j = 0; j < d; j++)
        var += (x[j] - mean) * (x[j] - mean);
    var /= d;
    for (int j = 0; j < d; j++)
        y[j] = (x[j] - mean) / sqrt(var + 1e-5) * w[j] + (m->c.opt ? b[j] : 0);
}

/* y[o] = sum_i W[o, i] x[i] + b[o] */
static void lin(const float *W, const float *b, const double *x, double *y, int out, int in)
{
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++)
            s += (double)W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void rope(const tiny_model *m, double *v, int heads, int pos)
{
    const tiny_cfg *c = &m->c;
    int half = c->rope_dim / 2;
    double p = c->scaling == FLOCK_ROPE_SCALING_LINEAR ? pos / (double)c->rope_factor : pos;
    for (int h = 0; h < heads; h++) {
        double *x = v + h * c->hd;
        for (int i = 0; i < half; i++) {
            double f = pow(10000.0, -2.0 * i / c->rope_dim);
            if (c->scaling == FLOCK_ROPE_SCALING_LLAMA3) {
                /* Llama 3.1: long wavelengths slowed by the factor, short ones
                 * kept, a linear blend in between (orig ctx 16, factors 1 and 4) */
                double wl = 2 * M_PI / f, lo_wl = 16.0 / 1.0, hi_wl = 16.0 / 4.0;
                if (wl > lo_wl) {
                    f /= c->rope_factor;
                } else if (wl >= hi_wl) {
                    double sm = (16.0 / wl - 1.0) / (4.0 - 1.0);
                    f = (1 - sm) * f / c->rope_factor + sm * f;
                }
            }
            double th = p * f;
            int a = c->style == FLOCK_ROPE_NORMAL ? 2 * i : i;
            int b = c->style == FLOCK_ROPE_NORMAL ? 2 * i + 1 : i + half;
            double x0 = x[a], x1 = x[b];
            x[a] = x0 * cos(th) - x1 * sin(th);
            x[b] = x0 * sin(th) + x1 * cos(th);
        }
    }
}

void tiny_ref_forward(const tiny_model *m, const int32_t *ids, int T, int prompt_len, int32_t *const *kept,
                      const int64_t *kk, double *logits, double *zout)
{
    const tiny_cfg *c = &m->c;
    int d = c->d, qw = c->n_head * c->hd, kw = c->n_kv * c->hd, f = c->d_ff;
    double *x = calloc((size_t)T * d, sizeof *x), *h = calloc((size_t)d, sizeof *h);
    double *q = calloc((size_t)T * qw, sizeof *q), *k = calloc((size_t)T * kw, sizeof *k);
    double *v = calloc((size_t)T * kw, sizeof *v), *att = calloc((size_t)qw, sizeof *att);
    double *o = calloc((size_t)d, sizeof *o), *z = calloc((size_t)f, sizeof *z), *sc = calloc((size_t)T, sizeof *sc);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < d; j++)
            x[(size_t)t * d + j] = (double)m->emb[(size_t)ids[t] * d + j] * (c->embed_scale ? c->embed_scale : 1) +
                                   (c->opt ? m->pos[(size_t)(t + 2) * d + j] : 0);
    for (int l = 0; l < c->n_layer; l++) {
        const tiny_layer *y = &m->L[l];
        for (int t = 0; t < T; t++) {
            norm(m, x + (size_t)t * d, h, y->n1, y->n1b);
            lin(y->wq, y->bq, h, q + (size_t)t * qw, qw, d);
            lin(y->wk, y->bk, h, k + (size_t)t * kw, kw, d);
            lin(y->wv, y->bv, h, v + (size_t)t * kw, kw, d);
            if (!c->opt) {
                rope(m, q + (size_t)t * qw, c->n_head, t);
                rope(m, k + (size_t)t * kw, c->n_kv, t);
            }
        }
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < c->n_head; hh++) {
                int kh = hh / (c->n_head / c->n_kv);
                int j0 = c->window > 0 && t - c->window + 1 > 0 ? t - c->window + 1 : 0;
                double mx = -1e300, sum = 0;
                for (int j = j0; j <= t; j++) {
                    double s = 0;
                    for (int e = 0; e < c->hd; e++)
                        s += q[(size_t)t * qw + hh * c->hd + e] * k[(size_t)j * kw + kh * c->hd + e];
                    s /= sqrt((double)c->hd);
                    if (c->softcap > 0)
                        s = c->softcap * tanh(s / c->softcap);
                    sc[j] = s;
                    mx = s > mx ? s : mx;
                }
                for (int j = j0; j <= t; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < c->hd; e++) {
                    double a = 0;
                    for (int j = j0; j <= t; j++)
                        a += sc[j] / sum * v[(size_t)j * kw + kh * c->hd + e];
                    att[hh * c->hd + e] = a;
                }
            }
            lin(y->wo, y->bo, att, o, d, qw);
            for (int j = 0; j < d; j++)
                x[(size_t)t * d + j] += o[j];
        }
        for (int t = 0; t < T; t++) {
            norm(m, x + (size_t)t * d, h, y->n2, y->n2b);
            for (int i = 0; i < f; i++) {
                double g = 0, u = 0;
                for (int j = 0; j < d; j++) {
                    g += (double)y->wg[(size_t)i * d + j] * h[j];
                    u += (double)y->wu[(size_t)i * d + j] * h[j];
                }
                z[i] = c->opt ? actd(c->act, g + y->b1[i]) : actd(c->act, g) * u;
                if (zout)
                    zout[((size_t)l * T + t) * f + i] = z[i];
            }
            if (kept && t >= prompt_len) { /* generation: only the kept neurons */
                double *zz = calloc((size_t)f, sizeof *zz);
                for (int64_t j = 0; j < kk[l]; j++)
                    zz[kept[l][j]] = z[kept[l][j]];
                memcpy(z, zz, (size_t)f * sizeof *z);
                free(zz);
            }
            for (int j = 0; j < d; j++) {
                double s = c->opt ? y->b2[j] : 0;
                for (int i = 0; i < f; i++)
                    s += (double)y->wd[(size_t)j * f + i] * z[i];
                x[(size_t)t * d + j] += s;
            }
        }
    }
    for (int t = 0; t < T; t++) {
        norm(m, x + (size_t)t * d, h, m->nf, m->nfb);
        lin(m->head, NULL, h, logits + (size_t)t * c->vocab, c->vocab, d);
        if (c->head_softcap > 0)
            for (int j = 0; j < c->vocab; j++)
                logits[(size_t)t * c->vocab + j] =
                    c->head_softcap * tanh(logits[(size_t)t * c->vocab + j] / c->head_softcap);
    }
    free(x), free(h), free(q), free(k), free(v), free(att), free(o), free(z), free(sc);
}
