/* Blocked causal attention with an online softmax (see attention.h).
 *
 * Cost per query row and key: 2 head_dim multiply-adds (q.k and p v) and
 * one exp; K/V bytes read per decode token: 2 (n_past + 1) kv_width
 * elements (4 or 2 bytes) per layer (each K/V row once per GQA group, not
 * once per query head). */
#include "attention.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define ATT_BLOCK_MAX 128 /* keys per block (bounded so a block stays in L1/L2) */

/* Keys per block: ~16 KB of K (the same again of V) for the block to stay
 * in L1 while every query row of a task reads it. */
static int64_t block_keys(int32_t hd)
{
    int64_t b = 4096 / hd;
    return b < 16 ? 16 : b > ATT_BLOCK_MAX ? ATT_BLOCK_MAX : b;
}

/* Rows of a prefill task (FLOCK_ATT_QTILE tokens x the heads of a group)
 * rounded up to the outer-product tile's 32. */
static size_t tile_rows(int32_t heads)
{
    return ((size_t)FLOCK_ATT_QTILE * (size_t)heads + 31) & ~(size_t)31;
}

/* Per-thread scratch: m, l for every row of a task, a score block per
 * query head of a group; for the prefill tile (att_task_tile) also the
 * task's queries transposed [hd][rows], its scores [rows][ATT_BLOCK_MAX],
 * its outputs [rows][hd] and a block of K and of V as floats. */
static size_t thread_floats(int32_t max_heads, int32_t max_hd)
{
    size_t rows = tile_rows(max_heads), hd = (size_t)max_hd;
    return 2 * (size_t)FLOCK_ATT_QTILE * (size_t)max_heads + (size_t)ATT_BLOCK_MAX * (size_t)max_heads +
           hd * rows + rows * ATT_BLOCK_MAX + rows * hd + 2 * (size_t)block_keys(max_hd) * hd;
}

static size_t n_spans(int32_t n_ctx)
{
    return ((size_t)n_ctx + FLOCK_ATT_SPLIT - 1) / FLOCK_ATT_SPLIT;
}

size_t flock_att_scratch_floats(int n_threads, int32_t n_ctx, int32_t max_heads, int32_t max_hd)
{
    if (n_threads < 1 || n_ctx < 1 || max_heads < 1 || max_hd < 1)
        return 0;
    /* + decode partials: [heads][spans][head_dim + 2] */
    return (size_t)n_threads * thread_floats(max_heads, max_hd) +
           (size_t)max_heads * n_spans(n_ctx) * ((size_t)max_hd + 2);
}

/* First key position token t may see. */
static int64_t first_key(const flock_att_args *a, int64_t pos)
{
    return a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
}

/* max(m, s[0..n)): eight running maxima, so the compare chains run side
 * by side (one chain was 70% of this file's time at a 512-token context). */
static float block_max(const float *s, size_t n, float m)
{
    float mx[8] = {m, m, m, m, m, m, m, m};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int c = 0; c < 8; c++)
            mx[c] = s[j + c] > mx[c] ? s[j + c] : mx[c];
    for (; j < n; j++)
        mx[0] = s[j] > mx[0] ? s[j] : mx[0];
    for (int c = 1; c < 8; c++)
        mx[0] = mx[c] > mx[0] ? mx[c] : mx[0];
    return mx[0];
}

/* Where the rows of one task go: row (t, g) of KV head kvh (query head
 * h = kvh * group + g) accumulates into o0 + t * ld_t + g * ld_h. */
typedef struct att_rows {
    int32_t kvh, t0, t1; /* tokens [t0, t1) */
    int64_t k0, k1;      /* keys limited to [k0, k1) (a decode span) */
    float *o0;
    size_t ld_t, ld_h;
    float *m, *l;        /* [(t1 - t0) * group] running max and sum */
} att_rows;

/* The online softmax over keys [max(k0, first key), min(k1, pos + 1)) of
 * each row: o, l, m left unnormalized (o = sum p v, l = sum p, with p =
 * exp(s - m)). A row with no key in range keeps m = -inf, l = 0, o = 0.
 * An f16 cache goes to the _h kernels, which widen in the load: the
 * result is bitwise that of an f32 cache holding the same (rounded)
 * values. */
static void att_task_rows(const flock_kernel_table *k, const flock_att_args *a, const att_rows *r, float *s)
{
    int32_t hd = a->head_dim, group = a->n_head / a->n_kv_head;
    int32_t nr = (r->t1 - r->t0) * group;
    for (int32_t i = 0; i < nr; i++) {
        r->m[i] = -INFINITY;
        r->l[i] = 0;
        memset(r->o0 + (size_t)(i / group) * r->ld_t + (size_t)(i % group) * r->ld_h, 0, (size_t)hd * sizeof(float));
    }
    int64_t lo = first_key(a, a->n_past + r->t0), hi = a->n_past + r->t1; /* keys any row sees */
    lo = lo > r->k0 ? lo : r->k0;
    hi = hi < r->k1 ? hi : r->k1;
    int64_t B = block_keys(hd);
    size_t hs = (size_t)r->kvh * (a->kv_head_stride ? a->kv_head_stride : (size_t)hd), ld = a->ldkv;
    for (int64_t b0 = lo; b0 < hi; b0 += B) {
        int64_t b1 = b0 + B < hi ? b0 + B : hi;
        for (int32_t t = r->t0; t < r->t1; t++) {
            int64_t pos = a->n_past + t, j0 = first_key(a, pos), j1 = pos + 1;
            j0 = j0 > b0 ? j0 : b0;
            j1 = j1 < b1 ? j1 : b1;
            if (j0 >= j1)
                continue;
            size_t n = (size_t)(j1 - j0), at = hs + (size_t)j0 * ld;
            const float *qt = a->q + (size_t)t * a->ldq + (size_t)r->kvh * group * hd;
            if (a->kv_f16)
                k->att_qk_h(qt, (size_t)hd, (size_t)group, (const uint16_t *)a->kc + at, ld, n, (size_t)hd, a->scale,
                            s, ATT_BLOCK_MAX);
            else
                k->att_qk(qt, (size_t)hd, (size_t)group, (const float *)a->kc + at, ld, n, (size_t)hd, a->scale, s,
                          ATT_BLOCK_MAX);
            float *ot = r->o0 + (size_t)(t - r->t0) * r->ld_t;
            for (int32_t g = 0; g < group; g++) {
                int32_t i = (t - r->t0) * group + g;
                float *o = ot + (size_t)g * r->ld_h, *sg = s + (size_t)g * ATT_BLOCK_MAX;
                if (a->softcap > 0)
                    for (size_t j = 0; j < n; j++)
                        sg[j] = a->softcap * tanhf(sg[j] / a->softcap);
                float mx = block_max(sg, n, r->m[i]);
                if (mx > r->m[i]) { /* a new maximum: rescale what was summed so far */
                    float alpha = r->m[i] == -INFINITY ? 0.f : expf(r->m[i] - mx);
                    r->l[i] *= alpha;
                    for (int32_t d = 0; d < hd; d++)
                        o[d] *= alpha;
                    r->m[i] = mx;
                }
                r->l[i] += k->att_exp(sg, n, mx);
            }
            /* p V for the whole group */
            if (a->kv_f16)
                k->att_pv_h(s, ATT_BLOCK_MAX, (size_t)group, (const uint16_t *)a->vc + at, ld, n, (size_t)hd, ot,
                            r->ld_h);
            else
                k->att_pv(s, ATT_BLOCK_MAX, (size_t)group, (const float *)a->vc + at, ld, n, (size_t)hd, ot, r->ld_h);
        }
    }
}

/* The prefill tile's kernels (att_task_tile): the table's outer-product
 * tile for the scores (wr keys x tb rows a call) and its down tile for p V
 * (dr rows x dc columns): the AVX-512 table's gemm12x32 and down8x32, else
 * the AVX2 table's gemm6x16 and down4x16. */
typedef struct att_tile {
    flock_outer_gemm_fn outer;
    void (*down)(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out, size_t ldo);
    int wr, tb, dr, dc;
} att_tile;

/* Whether the prefill tasks run att_task_tile (head_dim a multiple of the
 * down tile's columns), and with which kernels. */
static bool use_tile(const flock_kernel_table *k, const flock_att_args *a, att_tile *t)
{
    if (a->T <= 1)
        return false;
    if (k->gemm12x32 && k->down8x32)
        *t = (att_tile){k->gemm12x32, k->down8x32, 12, 32, 8, 32};
    else if (k->gemm6x16 && k->down4x16)
        *t = (att_tile){k->gemm6x16, k->down4x16, 6, 16, 4, 16};
    else
        return false;
    return a->head_dim % t->dc == 0;
}

/* A prefill task as matrix products: row i of the task is token t0 + i /
 * group, head g = i % group. Per block of keys, the scores of all rows at
 * once (gemm12x32: 12 keys x 32 rows a call, over the queries transposed
 * once per task), masked per row to the keys it sees, then the online
 * softmax per row (as att_task_rows), then p V for all rows (down8x32: 8
 * rows x 32 columns, masked keys' p zero) into the task's outputs O; an f16
 * cache's block widened once into floats first, so its result is bitwise
 * the f32 cache's on the same values. Each score sums over head_dim in
 * order and each output over the block's keys in order, whatever the
 * task's rows, so the result does not depend on the thread count. It
 * replaced per token calls of the AVX2 att_qk / att_pv kernels, which
 * widened every K and V row again for each token and reduced each score
 * horizontally (Zen 5, SmolLM2 f16, 512-token prompt: 21% of prefill).
 * Writes the normalized outputs of the task's rows from o0 (token stride
 * ldo, heads hd apart), as prefill_task does after att_task_rows. */
static void att_task_tile(const flock_kernel_table *k, const att_tile *tl, const flock_att_args *a, int32_t kvh,
                          int32_t t0, int32_t t1, float *m, float *l, float *ws, float *o0)
{
    int32_t hd = a->head_dim, group = a->n_head / a->n_kv_head;
    int32_t nr = (t1 - t0) * group, nr8 = (nr + tl->dr - 1) / tl->dr * tl->dr;
    size_t rows = tile_rows(a->n_head), tp = ((size_t)nr + (size_t)tl->tb - 1) / (size_t)tl->tb * (size_t)tl->tb;
    int64_t B = block_keys(hd);
    float *qt = ws, *S = qt + (size_t)hd * rows, *O = S + rows * ATT_BLOCK_MAX, *kf = O + rows * (size_t)hd,
          *vf = kf + (size_t)B * hd;
    for (int32_t i = 0; i < nr; i++) {
        const float *q = a->q + (size_t)(t0 + i / group) * a->ldq + ((size_t)kvh * group + (size_t)(i % group)) * hd;
        for (int32_t d = 0; d < hd; d++)
            qt[(size_t)d * tp + i] = q[d];
        m[i] = -INFINITY;
        l[i] = 0;
    }
    for (int32_t d = 0; d < hd; d++)
        for (size_t i = (size_t)nr; i < tp; i++)
            qt[(size_t)d * tp + i] = 0.f;
    memset(O, 0, (size_t)nr8 * hd * sizeof *O);
    memset(S, 0, (size_t)nr8 * ATT_BLOCK_MAX * sizeof *S); /* rows past nr stay zero */
    int64_t lo = first_key(a, a->n_past + t0), hi = a->n_past + t1;
    size_t hs = (size_t)kvh * (a->kv_head_stride ? a->kv_head_stride : (size_t)hd), ld = a->ldkv;
    for (int64_t b0 = lo; b0 < hi; b0 += B) {
        int64_t b1 = b0 + B < hi ? b0 + B : hi;
        size_t nb = (size_t)(b1 - b0), at = hs + (size_t)b0 * ld;
        const float *K, *V;
        size_t ldk;
        if (a->kv_f16) {
            for (size_t j = 0; j < nb; j++) {
                k->to_f32[FLOCK_DTYPE_F16]((const uint16_t *)a->kc + at + j * ld, kf + j * hd, (size_t)hd);
                k->to_f32[FLOCK_DTYPE_F16]((const uint16_t *)a->vc + at + j * ld, vf + j * hd, (size_t)hd);
            }
            K = kf, V = vf, ldk = (size_t)hd;
        } else {
            K = (const float *)a->kc + at, V = (const float *)a->vc + at, ldk = ld;
        }
        /* S[i][j] = q_i . k_j */
        for (size_t j = 0; j < nb; j += (size_t)tl->wr)
            for (int32_t r = 0; r < nr; r += tl->tb)
                tl->outer(K + j * ldk, ldk, nb - j < (size_t)tl->wr ? (int)(nb - j) : tl->wr, qt + r, tp, (size_t)hd,
                          S + (size_t)r * ATT_BLOCK_MAX + j, ATT_BLOCK_MAX, nr - r < tl->tb ? nr - r : tl->tb, NULL, 0);
        for (int32_t i = 0; i < nr; i++) {
            int64_t pos = a->n_past + t0 + i / group, j0 = first_key(a, pos), j1 = pos + 1;
            j0 = j0 > b0 ? j0 : b0;
            j1 = j1 < b1 ? j1 : b1;
            float *si = S + (size_t)i * ATT_BLOCK_MAX;
            if (j0 >= j1) { /* no key of this block */
                memset(si, 0, nb * sizeof *si);
                continue;
            }
            size_t f = (size_t)(j0 - b0), n = (size_t)(j1 - j0);
            float *sg = si + f;
            for (size_t j = 0; j < n; j++)
                sg[j] *= a->scale;
            if (a->softcap > 0)
                for (size_t j = 0; j < n; j++)
                    sg[j] = a->softcap * tanhf(sg[j] / a->softcap);
            float mx = block_max(sg, n, m[i]);
            if (mx > m[i]) { /* a new maximum: rescale what was summed so far */
                float alpha = m[i] == -INFINITY ? 0.f : expf(m[i] - mx);
                l[i] *= alpha;
                float *o = O + (size_t)i * hd;
                for (int32_t d = 0; d < hd; d++)
                    o[d] *= alpha;
                m[i] = mx;
            }
            l[i] += k->att_exp(sg, n, mx);
            memset(si, 0, f * sizeof *si);
            memset(sg + n, 0, (nb - f - n) * sizeof *si);
        }
        /* O += P V */
        for (int32_t r = 0; r < nr8; r += tl->dr)
            for (int32_t c = 0; c < hd; c += tl->dc)
                tl->down(S + (size_t)r * ATT_BLOCK_MAX, ATT_BLOCK_MAX, V + c, ldk, nb, O + (size_t)r * hd + c,
                         (size_t)hd);
    }
    for (int32_t i = 0; i < nr; i++) {
        float inv = l[i] > 0 ? 1.f / l[i] : 0.f, *oi = O + (size_t)i * hd;
        float *o = o0 + (size_t)(i / group) * a->ldo + (size_t)(i % group) * hd;
        for (int32_t d = 0; d < hd; d++)
            o[d] = oi[d] * inv;
    }
}

typedef struct att_job {
    const flock_kernel_table *k;
    const flock_att_args *a;
    float *scratch;    /* per-thread regions of thread_floats(n_head) */
    size_t per_thread;
    float *part;       /* decode: [n_head][spans][hd + 2] */
    int64_t span0, nspan; /* decode: spans [span0, span0 + nspan) hold keys */
    int32_t ntile;     /* prefill: query tiles */
} att_job;

static void prefill_task(void *arg, int64_t b, int64_t end, int thread)
{
    const att_job *j = arg;
    const flock_att_args *a = j->a;
    int32_t group = a->n_head / a->n_kv_head, hd = a->head_dim;
    float *m = j->scratch + (size_t)thread * j->per_thread, *l = m + FLOCK_ATT_QTILE * a->n_head,
          *s = l + FLOCK_ATT_QTILE * a->n_head;
    for (int64_t task = b; task < end; task++) {
        /* the last tiles see the most keys: hand them out first */
        int32_t tile = j->ntile - 1 - (int32_t)(task / a->n_kv_head), kvh = (int32_t)(task % a->n_kv_head);
        int32_t t0 = tile * FLOCK_ATT_QTILE, t1 = t0 + FLOCK_ATT_QTILE < a->T ? t0 + FLOCK_ATT_QTILE : a->T;
        float *o0 = a->out + (size_t)t0 * a->ldo + (size_t)kvh * group * hd;
        att_tile tl;
        if (use_tile(j->k, a, &tl)) {
            att_task_tile(j->k, &tl, a, kvh, t0, t1, m, l, s + ATT_BLOCK_MAX * (size_t)a->n_head, o0);
            continue;
        }
        att_rows r = {kvh, t0, t1, 0, INT64_MAX, o0, a->ldo, (size_t)hd, m, l};
        att_task_rows(j->k, a, &r, s);
        for (int32_t i = 0; i < (t1 - t0) * group; i++) {
            float inv = l[i] > 0 ? 1.f / l[i] : 0.f;
            float *o = r.o0 + (size_t)(i / group) * r.ld_t + (size_t)(i % group) * r.ld_h;
            for (int32_t d = 0; d < hd; d++)
                o[d] *= inv;
        }
    }
}

/* Decode: task = kvh * nspan + span (one KV head's spans in a row: in
 * the head-major cache they are one contiguous run for the prefetchers);
 * the partial of head h and span s is part[(h * nspan + s) * (hd + 2)]:
 * o[hd], m, l. */
static void decode_task(void *arg, int64_t b, int64_t end, int thread)
{
    const att_job *j = arg;
    const flock_att_args *a = j->a;
    int32_t group = a->n_head / a->n_kv_head, hd = a->head_dim;
    float *s = j->scratch + (size_t)thread * j->per_thread + 2 * FLOCK_ATT_QTILE * a->n_head;
    size_t stride = (size_t)hd + 2;
    for (int64_t task = b; task < end; task++) {
        int64_t sp = task % j->nspan;
        int32_t kvh = (int32_t)(task / j->nspan);
        float *p0 = j->part + ((size_t)kvh * group * j->nspan + (size_t)sp) * stride;
        float m[ATT_BLOCK_MAX], l[ATT_BLOCK_MAX]; /* group <= n_head, checked by the caller */
        int64_t k0 = (j->span0 + sp) * FLOCK_ATT_SPLIT;
        att_rows r = {kvh, 0, 1, k0, k0 + FLOCK_ATT_SPLIT, p0, 0, (size_t)j->nspan * stride, m, l};
        att_task_rows(j->k, a, &r, s);
        for (int32_t g = 0; g < group; g++) {
            p0[(size_t)g * r.ld_h + (size_t)hd] = m[g];
            p0[(size_t)g * r.ld_h + (size_t)hd + 1] = l[g];
        }
    }
}

/* out[h] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s, spans in order. */
static void decode_combine(const att_job *j)
{
    const flock_att_args *a = j->a;
    int32_t hd = a->head_dim;
    size_t stride = (size_t)hd + 2;
    for (int32_t h = 0; h < a->n_head; h++) {
        const float *p = j->part + (size_t)h * j->nspan * stride;
        float *o = a->out + (size_t)h * hd;
        float M = -INFINITY, L = 0;
        for (int64_t sp = 0; sp < j->nspan; sp++)
            M = p[sp * stride + hd] > M ? p[sp * stride + hd] : M;
        memset(o, 0, (size_t)hd * sizeof(float));
        for (int64_t sp = 0; sp < j->nspan; sp++) {
            float ms = p[sp * stride + hd];
            if (ms == -INFINITY)
                continue;
            float w = expf(ms - M);
            L += w * p[sp * stride + hd + 1];
            j->k->axpy_f32(w, p + sp * stride, o, (size_t)hd);
        }
        float inv = L > 0 ? 1.f / L : 0.f;
        for (int32_t d = 0; d < hd; d++)
            o[d] *= inv;
    }
}

void flock_attention(const flock_kernel_table *k, flock_pool *pool, float *scratch, const flock_att_args *a)
{
    int32_t nt = flock_pool_threads(pool);
    att_job j = {k, a, scratch, thread_floats(a->n_head, a->head_dim), NULL, 0, 0, 0};
    j.part = scratch + (size_t)nt * j.per_thread;
    int64_t last = a->n_past + a->T - 1;
    /* multiply-adds of the whole call, ignoring the window: small ones stay inline */
    int64_t macs = (int64_t)a->T * a->n_head * (last + 1) * a->head_dim * 2;
    if (a->T == 1 && a->n_head / a->n_kv_head <= ATT_BLOCK_MAX) {
        j.span0 = first_key(a, last) / FLOCK_ATT_SPLIT;
        j.nspan = last / FLOCK_ATT_SPLIT - j.span0 + 1;
        int64_t tasks = j.nspan * a->n_kv_head;
        flock_pool_run(pool, tasks, macs < (1 << 18) ? tasks : 1, decode_task, &j);
        decode_combine(&j);
        return;
    }
    j.ntile = (a->T + FLOCK_ATT_QTILE - 1) / FLOCK_ATT_QTILE;
    int64_t tasks = (int64_t)j.ntile * a->n_kv_head;
    flock_pool_run(pool, tasks, macs < (1 << 18) ? tasks : 1, prefill_task, &j);
}
