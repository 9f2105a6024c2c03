/* gpu_check: every generated kernel against its CPU reference, for several
 * model shapes (fresh random inputs; outputs start as NaN). */
#include "gpu_check.h"
#include "gpu_check_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned cdiv(unsigned a, unsigned b)
{
    return (a + b - 1) / b;
}

/* Floats from the device's 16-bit or f32 cache entries. */
static void kv_to_f32(flock_dtype t, const void *src, float *dst, size_t n)
{
    if (t == FLOCK_DTYPE_F32)
        memcpy(dst, src, n * sizeof(float));
    else
        flock_convert_to_f32(t, src, dst, n);
}

/* A random KV cache of `rows` rows: device copy and the f32 values it holds. */
static float *kv_rand(flock_dtype t, size_t n, CUdeviceptr *dev)
{
    float *f = hrand(n, 1.0f);
    if (t == FLOCK_DTYPE_F32) {
        *dev = dput(f, n * sizeof(float));
        return f;
    }
    uint16_t *b = malloc(2 * n);
    flock_convert_from_f32(t, f, b, n);
    flock_convert_to_f32(t, b, f, n);
    *dev = dput(b, 2 * n);
    free(b);
    return f;
}

static void check_small_kernels(const char *cfg, const gpu_module *gm, const flock_codegen_model *m)
{
    const int D = m->d_model, H = m->n_head, HD = m->head_dim, V = m->vocab, T = 37;
    char what[96];
    /* embed, with two ids out of range (zero rows) */
    {
        CUdeviceptr dtab, dout = dalloc(sizeof(float) * T * D), dtok;
        float *tab = wrand(m->wtype, (size_t)V * D, 1.0f, &dtab), *ref = malloc(sizeof(float) * T * D);
        int tok[37];
        for (int t = 0; t < T; t++)
            tok[t] = (int)(rnd_u64() % (uint64_t)V);
        tok[3] = V + 5;
        tok[4] = -1;
        float scale = 1.5f;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < D; i++)
                ref[t * D + i] = (tok[t] >= 0 && tok[t] < V) ? tab[(size_t)tok[t] * D + i] * scale : 0.0f;
        dtok = dput(tok, sizeof tok);
        void *a[] = {&dtok, &dtab, &scale, &dout};
        gpu_launch(gm, "flock_embed", T, 1, 1, a);
        expect(cfg, "embed", dout, ref, (size_t)T * D, 1e-6);
        dfree(dtab), dfree(dout), dfree(dtok), free(tab), free(ref);
    }
    /* rmsnorm for each group width, plain and (1 + w) */
    for (size_t i = 0; i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        if (k.kind != FLOCK_CUK_RMSNORM)
            continue;
        const int g = (int)k.spec, ng = T * (D / g > 0 ? D / g : 1);
        for (int uo = 0; uo < 2; uo++) {
            float *x = hrand((size_t)ng * g, 2.0f), *w = hrand((size_t)g, 1.0f), *ref = malloc(sizeof(float) * ng * g);
            float eps = 1e-5f;
            ref_rmsnorm(x, w, g, ng, eps, uo, ref);
            CUdeviceptr dx = dput(x, sizeof(float) * ng * g), dw = dput(w, sizeof(float) * g);
            CUdeviceptr dy = dalloc(sizeof(float) * ng * g);
            void *a[] = {&dx, &dw, &eps, &uo, &dy};
            gpu_launch(gm, k.name, (unsigned)ng, 1, 1, a);
            snprintf(what, sizeof what, "%s unit_offset=%d", k.name, uo);
            expect(cfg, what, dy, ref, (size_t)ng * g, 1e-5);
            dfree(dx), dfree(dw), dfree(dy), free(x), free(w), free(ref);
        }
    }
    /* layernorm (with and without bias, the output in place) */
    for (int wb = 0; wb < 2; wb++) {
        float *x = hrand((size_t)T * D, 2.0f), *w = hrand((size_t)D, 1.0f), *b = hrand((size_t)D, 1.0f);
        float *ref = malloc(sizeof(float) * T * D);
        for (int i = 0; i < T * D; i++)
            x[i] += 0.5f; /* a mean to remove */
        float eps = 1e-5f;
        ref_layernorm(x, w, wb ? b : NULL, D, T, eps, ref);
        CUdeviceptr dx = dput(x, sizeof(float) * T * D), dw = dput(w, sizeof(float) * D);
        CUdeviceptr db = wb ? dput(b, sizeof(float) * D) : 0;
        char name[64];
        snprintf(name, sizeof name, "flock_layernorm_g%d", D);
        void *a[] = {&dx, &dw, &db, &eps, &dx};
        gpu_launch(gm, name, T, 1, 1, a);
        snprintf(what, sizeof what, "%s%s (in place)", name, wb ? " +bias" : "");
        expect(cfg, what, dx, ref, (size_t)T * D, 1e-5);
        dfree(dx), dfree(dw), dfree(db), free(x), free(w), free(b), free(ref);
    }
    /* learned positions, some past the table */
    {
        const int n_pos = 40;
        CUdeviceptr dtab;
        float *tab = wrand(m->wtype, (size_t)n_pos * D, 1.0f, &dtab), *x = hrand((size_t)T * D, 1.0f);
        float *ref = malloc(sizeof(float) * T * D);
        int np = n_pos, pos0 = 5, off = 2;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < D; i++) {
                const int p = pos0 + t + off;
                ref[t * D + i] = x[t * D + i] + (p < n_pos ? tab[(size_t)p * D + i] : 0.0f);
            }
        CUdeviceptr dx = dput(x, sizeof(float) * T * D), dy = dalloc(sizeof(float) * T * D);
        void *a[] = {&dx, &dtab, &np, &pos0, &off, &dy};
        gpu_launch(gm, "flock_pos_embed", T, 1, 1, a);
        expect(cfg, "pos_embed (offset 2, past n_pos)", dy, ref, (size_t)T * D, 1e-6);
        dfree(dtab), dfree(dx), dfree(dy), free(tab), free(x), free(ref);
    }
    /* rope at a large position (range reduction) */
    if (m->rope_dim > 0) {
        const size_t n = (size_t)T * H * HD;
        float *x = hrand(n, 1.0f), *ref = malloc(sizeof(float) * n), inv[512];
        for (int i = 0; i < m->rope_dim / 2; i++)
            inv[i] = (float)pow(10000.0, -2.0 * i / m->rope_dim);
        memcpy(ref, x, sizeof(float) * n);
        int pos0 = 3000, nh = H;
        ref_rope(ref, T, H, HD, m->rope_dim, m->rope_style == FLOCK_ROPE_NEOX, pos0, inv);
        CUdeviceptr dx = dput(x, sizeof(float) * n), dinv = dput(inv, sizeof(float) * (size_t)(m->rope_dim / 2));
        void *a[] = {&dx, &nh, &pos0, &dinv};
        gpu_launch(gm, "flock_rope", T, 1, 1, a);
        expect(cfg, "rope (pos 3000..)", dx, ref, n, 3e-5);
        dfree(dx), dfree(dinv), free(x), free(ref);
    }
    /* rope on q and k, then k and v into the cache, in one launch */
    if (m->rope_dim > 0) {
        const int KVD = m->n_kv_head * HD, QD = H * HD, T3 = 3, pos0 = 2000, rows = pos0 + T3;
        const size_t kvb = m->kv_type == FLOCK_DTYPE_F32 ? 4 : 2;
        float *q = hrand((size_t)T3 * QD, 1.0f), *k = hrand((size_t)T3 * KVD, 1.0f), *v = hrand((size_t)T3 * KVD, 1.0f);
        float *rq = malloc(sizeof(float) * T3 * QD), *rk = malloc(sizeof(float) * T3 * KVD), inv[512];
        for (int i = 0; i < m->rope_dim / 2; i++)
            inv[i] = (float)pow(10000.0, -2.0 * i / m->rope_dim);
        memcpy(rq, q, sizeof(float) * T3 * QD);
        memcpy(rk, k, sizeof(float) * T3 * KVD);
        const int neox = m->rope_style == FLOCK_ROPE_NEOX;
        ref_rope(rq, T3, H, HD, m->rope_dim, neox, pos0, inv);
        ref_rope(rk, T3, m->n_kv_head, HD, m->rope_dim, neox, pos0, inv);
        CUdeviceptr dq = dput(q, sizeof(float) * T3 * QD), dk = dput(k, sizeof(float) * T3 * KVD);
        CUdeviceptr dv = dput(v, sizeof(float) * T3 * KVD), dinv = dput(inv, sizeof(float) * (size_t)(m->rope_dim / 2));
        CUdeviceptr kc = dalloc(kvb * rows * KVD), vc = dalloc(kvb * rows * KVD);
        int p0 = pos0;
        void *a[] = {&dq, &dk, &dv, &p0, &dinv, &kc, &vc};
        gpu_launch(gm, "flock_rope_kv_store", T3, 1, 1, a);
        expect(cfg, "rope_kv_store: q", dq, rq, (size_t)T3 * QD, 3e-5);
        expect(cfg, "rope_kv_store: k", dk, rk, (size_t)T3 * KVD, 3e-5);
        void *raw = malloc(kvb * T3 * KVD);
        float *got = malloc(sizeof(float) * T3 * KVD), *kin = malloc(sizeof(float) * T3 * KVD);
        for (int which = 0; which < 2; which++) {
            dget(raw, (which ? vc : kc) + kvb * (size_t)pos0 * KVD, kvb * T3 * KVD);
            kv_to_f32(m->kv_type, raw, got, (size_t)T3 * KVD);
            if (which) {
                for (int i = 0; i < T3 * KVD; i++)
                    kin[i] = ref_round(m->kv_type, v[i]);
            } else {
                dget(kin, dk, sizeof(float) * T3 * KVD); /* the cache holds the rotated k, rounded */
                for (int i = 0; i < T3 * KVD; i++)
                    kin[i] = ref_round(m->kv_type, kin[i]);
            }
            CUdeviceptr tmp = dput(got, sizeof(float) * T3 * KVD);
            expect(cfg, which ? "rope_kv_store: v rows" : "rope_kv_store: k rows", tmp, kin, (size_t)T3 * KVD, 0);
            dfree(tmp);
        }
        dfree(dq), dfree(dk), dfree(dv), dfree(dinv), dfree(kc), dfree(vc);
        free(q), free(k), free(v), free(rq), free(rk), free(raw), free(got), free(kin);
    }
    /* add, with the output aliasing an input */
    {
        int n = 1000;
        float *x = hrand((size_t)n, 1.0f), *y = hrand((size_t)n, 1.0f), ref[1000];
        for (int i = 0; i < n; i++)
            ref[i] = x[i] + y[i];
        CUdeviceptr dx = dput(x, sizeof(float) * n), dy = dput(y, sizeof(float) * n);
        void *a[] = {&dx, &dy, &n, &dx};
        gpu_launch(gm, "flock_add", cdiv((unsigned)n, 256), 1, 1, a);
        expect(cfg, "add (in place)", dx, ref, (size_t)n, 1e-7);
        dfree(dx), dfree(dy), free(x), free(y);
    }
}

static void check_attention(const char *cfg, const gpu_module *gm, const flock_codegen_model *m)
{
    const int H = m->n_head, HD = m->head_dim, QD = H * HD, KVD = m->n_kv_head * HD;
    const int T = 3, pos0 = 50, rows = pos0 + T, chunk = 16, n_split = (rows + chunk - 1) / chunk;
    const size_t kvb = m->kv_type == FLOCK_DTYPE_F32 ? 4 : 2;
    /* kv_store: rows pos0.. of poisoned caches */
    {
        float *k = hrand((size_t)T * KVD, 1.0f), *v = hrand((size_t)T * KVD, 1.0f);
        CUdeviceptr dk = dput(k, sizeof(float) * T * KVD), dv = dput(v, sizeof(float) * T * KVD);
        CUdeviceptr kc = dalloc(kvb * rows * KVD), vc = dalloc(kvb * rows * KVD);
        int p0 = pos0;
        void *a[] = {&dk, &dv, &p0, &kc, &vc};
        gpu_launch(gm, "flock_kv_store", T, 1, 1, a);
        void *raw = malloc(kvb * T * KVD);
        float *got = malloc(sizeof(float) * T * KVD), *ref = malloc(sizeof(float) * T * KVD);
        for (int which = 0; which < 2; which++) {
            const float *src = which ? v : k;
            for (int i = 0; i < T * KVD; i++)
                ref[i] = ref_round(m->kv_type, src[i]);
            dget(raw, (which ? vc : kc) + kvb * (size_t)pos0 * KVD, kvb * T * KVD);
            kv_to_f32(m->kv_type, raw, got, (size_t)T * KVD);
            CUdeviceptr tmp = dput(got, sizeof(float) * T * KVD);
            expect(cfg, which ? "kv_store (v rows)" : "kv_store (k rows)", tmp, ref, (size_t)T * KVD, 0);
            dfree(tmp);
        }
        dfree(dk), dfree(dv), dfree(kc), dfree(vc), free(k), free(v), free(raw), free(got), free(ref);
    }
    /* attention: full and windowed, T queries, split over n_split chunks */
    CUdeviceptr kc, vc;
    float *kf = kv_rand(m->kv_type, (size_t)rows * KVD, &kc), *vf = kv_rand(m->kv_type, (size_t)rows * KVD, &vc);
    float *q = hrand((size_t)T * QD, 2.0f), *ref = malloc(sizeof(float) * T * QD);
    CUdeviceptr dq = dput(q, sizeof(float) * T * QD);
    const float scale = m->attn_scale > 0 ? m->attn_scale : (float)(1.0 / sqrt((double)HD));
    const int windows[2] = {0, 20};
    for (int wi = 0; wi < 2; wi++) {
        CUdeviceptr po = dalloc(sizeof(float) * T * H * n_split * HD), pml = dalloc(sizeof(float) * 2 * T * H * n_split);
        CUdeviceptr out = dalloc(sizeof(float) * T * QD);
        int p0 = pos0, win = windows[wi], ch = chunk, ns = n_split;
        void *a[] = {&dq, &kc, &vc, &p0, &win, &ch, &ns, &po, &pml};
        gpu_launch(gm, "flock_attn_partial", (unsigned)H, (unsigned)n_split, T, a);
        void *b[] = {&po, &pml, &ns, &out};
        gpu_launch(gm, "flock_attn_combine", (unsigned)H, T, 1, b);
        ref_attention(m, q, kf, vf, T, pos0, win, scale, ref);
        char what[64];
        snprintf(what, sizeof what, "attention window=%d, %d splits", win, n_split);
        expect(cfg, what, out, ref, (size_t)T * QD, 2e-5);
        dfree(po), dfree(pml), dfree(out);
    }
    dfree(kc), dfree(vc), dfree(dq), free(kf), free(vf), free(q), free(ref);
}

static void check_dense(const char *cfg, const gpu_module *gm, const flock_codegen_model *m, int M)
{
    for (size_t i = 0; i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        const int N = (int)k.spec, K = (int)k.spec2;
        char what[96];
        if (k.kind == FLOCK_CUK_GEMV) {
            CUdeviceptr dw;
            float *w = wrand(m->wtype, (size_t)N * K, 1.0f, &dw), *x = hrand((size_t)K, 1.0f);
            float *bias = hrand((size_t)N, 1.0f), *res = hrand((size_t)N, 1.0f), *ref = malloc(sizeof(float) * N);
            CUdeviceptr dx = dput(x, sizeof(float) * K), db = dput(bias, sizeof(float) * N);
            CUdeviceptr dr = dput(res, sizeof(float) * N), dy = dalloc(sizeof(float) * N), null = 0;
            ref_gemv(w, x, NULL, NULL, N, K, ref);
            void *a[] = {&dx, &dw, &null, &null, &dy};
            gpu_launch(gm, k.name, k.grid[0], 1, 1, a);
            snprintf(what, sizeof what, "%s", k.name);
            expect(cfg, what, dy, ref, (size_t)N, 1e-5);
            ref_gemv(w, x, bias, res, N, K, ref);
            void *b[] = {&dx, &dw, &db, &dr, &dr}; /* y aliases resid */
            gpu_launch(gm, k.name, k.grid[0], 1, 1, b);
            snprintf(what, sizeof what, "%s +bias +resid", k.name);
            expect(cfg, what, dr, ref, (size_t)N, 1e-5);
            ref_gemv(w, x, bias, NULL, N, K, ref);
            void *c[] = {&dx, &dw, &db, &null, &dy};
            gpu_launch(gm, k.name, 3, 1, 1, c); /* grid-stride with few blocks */
            snprintf(what, sizeof what, "%s grid 3", k.name);
            expect(cfg, what, dy, ref, (size_t)N, 1e-5);
            dfree(dw), dfree(dx), dfree(db), dfree(dr), dfree(dy);
            free(w), free(x), free(bias), free(res), free(ref);
        } else if (k.kind == FLOCK_CUK_GEMM || k.kind == FLOCK_CUK_FFN_UP_PREFILL ||
                   k.kind == FLOCK_CUK_FFN_DOWN_PREFILL) {
            const int up = k.kind == FLOCK_CUK_FFN_UP_PREFILL, wkn = k.kind == FLOCK_CUK_FFN_DOWN_PREFILL;
            const int epi = up ? (m->gated ? 1 : 2) : 0;
            const int yN = epi == 1 ? N / 2 : N;
            CUdeviceptr dw;
            float *w = wrand(m->wtype, (size_t)N * K, 0.5f, &dw), *x = hrand((size_t)M * K, 1.0f);
            float *bias = hrand((size_t)N, 1.0f), *r = hrand((size_t)M * N, 1.0f);
            float *ref = malloc(sizeof(float) * M * yN);
            const int use_bias = !up || !m->gated;
            ref_gemm(x, M, w, N, K, wkn, epi, m->act, m->wtype, use_bias ? bias : NULL, epi == 0 ? r : NULL, ref);
            CUdeviceptr dx = dput(x, sizeof(float) * M * K), db = use_bias ? dput(bias, sizeof(float) * N) : 0;
            CUdeviceptr dr = epi == 0 ? dput(r, sizeof(float) * M * N) : 0, dy = dalloc(sizeof(float) * M * yN);
            int mm = M;
            void *a[] = {&dx, &mm, &dw, &db, &dr, &dy};
            gpu_launch(gm, k.name, k.grid[0], cdiv((unsigned)M, 64), 1, a);
            snprintf(what, sizeof what, "%s M=%d", k.name, M);
            expect(cfg, what, dy, ref, (size_t)M * yN, 1e-5);
            dfree(dw), dfree(dx), dfree(db), dfree(dr), dfree(dy);
            free(w), free(x), free(bias), free(r), free(ref);
        }
    }
}

static void check_ffn_decode(const char *cfg, const gpu_module *gm, const flock_codegen_model *m)
{
    const int D = m->d_model, F = m->d_ff;
    CUdeviceptr dw, dd;
    float *w = wrand(m->wtype, (size_t)F * D * (m->gated ? 2 : 1), 1.0f, &dw);
    float *down = wrand(m->wtype, (size_t)F * D, 1.0f, &dd);
    float *b1 = hrand((size_t)F, 1.0f), *b2 = hrand((size_t)D, 1.0f), *x = hrand((size_t)D, 1.0f);
    CUdeviceptr db1 = m->gated ? 0 : dput(b1, sizeof(float) * F), db2 = m->gated ? 0 : dput(b2, sizeof(float) * D);
    CUdeviceptr dx = dput(x, sizeof(float) * D);
    for (size_t i = 0; i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k, kd, kr;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        if (k.kind != FLOCK_CUK_FFN_GATHER)
            continue;
        const int K = (int)k.spec;
        char what[96], name[96];
        int *idx = rand_subset(F, K);
        float *h = malloc(sizeof(float) * K), *res = hrand((size_t)D, 1.0f), *ref = malloc(sizeof(float) * D);
        CUdeviceptr didx = dput(idx, sizeof(int) * K), dh = dalloc(sizeof(float) * K);
        ref_ffn_gather(m, w, m->gated ? NULL : b1, x, idx, K, h);
        void *a[] = {&dx, &didx, &dw, &db1, &dh};
        gpu_launch(gm, k.name, k.grid[0], 1, 1, a);
        snprintf(what, sizeof what, "%s (keep %.2f)", k.name, (double)k.keep);
        expect(cfg, what, dh, h, (size_t)K, 1e-5);
        /* The grid-stride loop with a grid smaller than one warp per neuron. */
        CUdeviceptr dh3 = dalloc(sizeof(float) * K);
        void *a3[] = {&dx, &didx, &dw, &db1, &dh3};
        gpu_launch(gm, k.name, 3, 1, 1, a3);
        snprintf(what, sizeof what, "%s grid 3", k.name);
        expect(cfg, what, dh3, h, (size_t)K, 1e-5);
        dfree(dh3);
        /* down + reduce from the reference h into the residual in place, with
         * the suggested split and with 3 splits */
        snprintf(name, sizeof name, "flock_ffn_down_k%d", K);
        flock_cuda_blob_kernel(&gm->b, (size_t)flock_cuda_blob_find(&gm->b, name), &kd, NULL);
        flock_cuda_blob_kernel(&gm->b, (size_t)flock_cuda_blob_find(&gm->b, "flock_ffn_down_reduce"), &kr, NULL);
        ref_ffn_down(down, h, idx, K, D, res, m->gated ? NULL : b2, ref);
        CUdeviceptr dhr = dput(h, sizeof(float) * K), part = dalloc(sizeof(float) * (kd.spec2 + 3) * D), dres = 0;
        const int splits[2] = {(int)kd.spec2, 3};
        int *zeros = calloc(kd.grid[0], sizeof(int));
        CUdeviceptr counters = dput(zeros, sizeof(int) * kd.grid[0]), null = 0;
        for (int si = 0; si < 2; si++) {
            int np = splits[si];
            /* unfused: partials, then the reduce kernel */
            dres = dput(res, sizeof(float) * D);
            void *b[] = {&dhr, &didx, &dd, &part, &null, &null, &null, &null};
            gpu_launch(gm, kd.name, kd.grid[0], (unsigned)np, 1, b);
            void *c[] = {&part, &np, &dres, &db2, &dres};
            gpu_launch(gm, kr.name, kr.grid[0], 1, 1, c);
            snprintf(what, sizeof what, "%s + reduce (split %d)", kd.name, np);
            expect(cfg, what, dres, ref, (size_t)D, 1e-5);
            dfree(dres);
            /* fused, twice: the counters must come back to zero */
            for (int rep = 0; rep < 2; rep++) {
                dres = dput(res, sizeof(float) * D);
                void *f[] = {&dhr, &didx, &dd, &part, &counters, &dres, &db2, &dres};
                gpu_launch(gm, kd.name, kd.grid[0], (unsigned)np, 1, f);
                snprintf(what, sizeof what, "%s fused (split %d, run %d)", kd.name, np, rep + 1);
                expect(cfg, what, dres, ref, (size_t)D, 1e-5);
                if (si + rep < 2)
                    dfree(dres);
            }
        }
        int *back = malloc(sizeof(int) * kd.grid[0]);
        dget(back, counters, sizeof(int) * kd.grid[0]);
        expect_true(cfg, "ffn_down counters back to zero", memcmp(back, zeros, sizeof(int) * kd.grid[0]) == 0);
        dfree(counters), free(zeros), free(back);
        dfree(didx), dfree(dh), dfree(dhr), dfree(part), dfree(dres);
        free(idx), free(h), free(res), free(ref);
    }
    dfree(dw), dfree(dd), dfree(db1), dfree(db2), dfree(dx);
    free(w), free(down), free(b1), free(b2), free(x);
}

static void check_griffin(const char *cfg, const gpu_module *gm, const flock_codegen_model *m)
{
    const int F = m->d_ff, T = 19;
    float *z = hrand((size_t)T * F, 3.0f), *stat = hrand((size_t)F, 0.5f);
    memset(z + 5 * F, 0, sizeof(float) * F); /* a zero row must not give NaN */
    for (int i = 0; i < F; i++)
        stat[i] = fabsf(stat[i]);
    CUdeviceptr dz = dput(z, sizeof(float) * T * F), dinv = dalloc(sizeof(float) * T);
    CUdeviceptr dstat = dput(stat, sizeof(float) * F);
    int tt = T;
    void *a[] = {&dz, &dinv};
    gpu_launch(gm, "flock_griffin_rownorm", T, 1, 1, a);
    void *b[] = {&dz, &dinv, &tt, &dstat};
    gpu_launch(gm, "flock_griffin_colsum", cdiv((unsigned)F, 256), 1, 1, b);
    ref_griffin_stat(z, T, F, stat);
    expect(cfg, "griffin rownorm+colsum (+=)", dstat, stat, (size_t)F, 1e-5);
    /* Selection on a statistic with many ties and a NaN. */
    for (int i = 0; i < F; i++)
        stat[i] = floorf((rnd_f() + 1.0f) * 4.0f) / 4.0f;
    stat[F / 3] = NAN;
    CK(CU.memcpy_htod(dstat, stat, sizeof(float) * F));
    CK(CU.ctx_synchronize());
    CUdeviceptr dsel = dalloc(sizeof(int) * F);
    for (size_t i = 0; i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        if (k.kind != FLOCK_CUK_GRIFFIN_RANK)
            continue;
        const int K = (int)k.spec;
        int *want = malloc(sizeof(int) * K), *got = malloc(sizeof(int) * K);
        ref_griffin_select(stat, F, K, want);
        CUdeviceptr didx = dalloc(sizeof(int) * K);
        void *c[] = {&dstat, &dsel};
        gpu_launch(gm, k.name, k.grid[0], 1, 1, c);
        void *d[] = {&dsel, &didx};
        gpu_launch(gm, "flock_griffin_compact", 1, 1, 1, d);
        dget(got, didx, sizeof(int) * K);
        char what[96];
        snprintf(what, sizeof what, "%s + compact (ties, NaN)", k.name);
        expect_true(cfg, what, memcmp(got, want, sizeof(int) * K) == 0);
        dfree(didx), free(want), free(got);
    }
    dfree(dz), dfree(dinv), dfree(dstat), dfree(dsel), free(z), free(stat);
}

void check_config(const char *cfg, const flock_codegen_model *m, int cc, int M)
{
    gpu_module gm;
    gpu_module_load(&gm, m, cc);
    printf("%s: %zu kernels (%s for arch %u)\n", cfg, gm.b.n_kernels,
           gm.b.image_kind == FLOCK_CUDA_IMAGE_CUBIN ? "CUBIN" : "PTX", gm.b.arch);
    check_small_kernels(cfg, &gm, m);
    check_attention(cfg, &gm, m);
    check_dense(cfg, &gm, m, M);
    check_ffn_decode(cfg, &gm, m);
    check_griffin(cfg, &gm, m);
    if (m->qtypes)
        check_quant(cfg, &gm, m, M);
    CK(CU.ctx_synchronize());
    gpu_module_free(&gm);
}

void check_all_configs(int cc)
{
    size_t n = 0;
    const gpu_check_config *c = gpu_check_configs(&n);
    for (size_t i = 0; i < n; i++)
        check_config(c[i].label, &c[i].m, cc, c[i].M);
}
