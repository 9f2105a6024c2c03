/* gpu_check: the kernels for quantized weights (codegen/cuda_quant.cu)
 * against double-precision references on the dequantized weights. The
 * blocks are random bytes with random scales (every code point occurs),
 * dequantized on the host by the formats library (flock_dequantize), which
 * is independent of the kernels' decoding. Normalized error bound 2e-5 for
 * the dot products: f32 accumulation of O(K) terms, and for q4_0 the
 * offset term d * (sum q x - 8 sum x) loses a few bits to cancellation.
 * The prefill path (dequant kernel, then the 16-bit GEMM) is checked as one
 * against the GEMM reference on the f16-rounded weights. */
#include "gpu_check.h"
#include "gpu_check_ref.h"

#include "flock/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QTOL 2e-5

static unsigned cdiv(unsigned a, unsigned b)
{
    return (a + b - 1) / b;
}

static uint32_t ggml_type(flock_dtype t)
{
    return t == FLOCK_DTYPE_Q8_0 ? FLOCK_GGML_Q8_0 : t == FLOCK_DTYPE_Q4_0 ? FLOCK_GGML_Q4_0 : FLOCK_GGML_Q4_1;
}

static void put_f16(uint8_t *p, float v)
{
    uint16_t h;
    flock_convert_from_f32(FLOCK_DTYPE_F16, &v, &h, 1);
    memcpy(p, &h, 2);
}

/* A random [rows, cols] matrix of type t (cols % 32 == 0): the bytes on
 * the device (*dev), the dequantized values returned (malloc'd). Scales
 * put the weights near [-1, 1]. */
static float *qrand(flock_dtype t, size_t rows, size_t cols, CUdeviceptr *dev)
{
    const size_t nb = rows * cols / 32, bb = flock_dtype_block_bytes(t);
    uint8_t *q = malloc(nb * bb);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *p = q + b * bb;
        const float d = (0.25f + 0.75f * fabsf(rnd_f())) / (t == FLOCK_DTYPE_Q8_0 ? 127.0f : 8.0f);
        put_f16(p, t == FLOCK_DTYPE_Q4_1 ? d / 2.0f : d);
        size_t o = 2;
        if (t == FLOCK_DTYPE_Q4_1) {
            put_f16(p + 2, -0.5f * fabsf(rnd_f()) - 0.25f);
            o = 4;
        }
        for (size_t i = o; i < bb; i++)
            p[i] = (uint8_t)rnd_u64();
    }
    float *f = malloc(sizeof(float) * rows * cols);
    flock_error e = {0};
    if (flock_dequantize(ggml_type(t), q, nb * bb, f, rows * cols, &e) != FLOCK_OK) {
        fprintf(stderr, "dequantize: %s\n", e.msg);
        exit(2);
    }
    *dev = dput(q, nb * bb);
    free(q);
    return f;
}

/* The kernel `fmt` of the module, or false (prints nothing: callers skip). */
static bool find(const gpu_module *gm, flock_cuda_kernel_info *k, char *name, size_t cap, const char *fmt,
                 const char *tn, int a, int b)
{
    snprintf(name, cap, fmt, tn, a, b);
    int64_t i = flock_cuda_blob_find(&gm->b, name);
    return i >= 0 && flock_cuda_blob_kernel(&gm->b, (size_t)i, k, NULL) == FLOCK_OK;
}

static void check_qgemv(const char *cfg, const gpu_module *gm, flock_dtype t)
{
    const char *tn = flock_dtype_name(t);
    char pre[32], what[128];
    snprintf(pre, sizeof pre, "flock_qgemv_%s_", tn);
    for (size_t i = 0; i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        if (k.kind != FLOCK_CUK_QGEMV || strncmp(k.name, pre, strlen(pre)) != 0)
            continue;
        const int N = (int)k.spec, K = (int)k.spec2;
        CUdeviceptr dw;
        float *w = qrand(t, (size_t)N, (size_t)K, &dw), *x = hrand((size_t)K, 1.0f);
        float *bias = hrand((size_t)N, 1.0f), *res = hrand((size_t)N, 1.0f), *ref = malloc(sizeof(float) * N);
        CUdeviceptr dx = dput(x, sizeof(float) * K), db = dput(bias, sizeof(float) * N);
        CUdeviceptr dr = dput(res, sizeof(float) * N), dy = dalloc(sizeof(float) * N), null = 0;
        ref_gemv(w, x, NULL, NULL, N, K, ref);
        void *a[] = {&dx, &dw, &null, &null, &dy};
        gpu_launch(gm, k.name, k.grid[0], 1, 1, a);
        expect(cfg, k.name, dy, ref, (size_t)N, QTOL);
        ref_gemv(w, x, bias, res, N, K, ref);
        void *b[] = {&dx, &dw, &db, &dr, &dr};
        gpu_launch(gm, k.name, 3, 1, 1, b); /* grid-stride with few blocks; y aliases resid */
        snprintf(what, sizeof what, "%s +bias +resid grid 3", k.name);
        expect(cfg, what, dr, ref, (size_t)N, QTOL);
        dfree(dw), dfree(dx), dfree(db), dfree(dr), dfree(dy);
        free(w), free(x), free(bias), free(res), free(ref);
    }
}

/* dequant_<t> alone (odd block count, a grid smaller than the work); with
 * `gemms`, dequant + each 16-bit GEMM (prefill); the embedding tables. */
static void check_qprefill(const char *cfg, const gpu_module *gm, const flock_codegen_model *m, flock_dtype t, int M,
                           bool gemms)
{
    const char *tn = flock_dtype_name(t);
    char dq[64], what[128];
    flock_cuda_kernel_info kq;
    if (!find(gm, &kq, dq, sizeof dq, "flock_dequant_%s", tn, 0, 0)) {
        expect_true(cfg, "dequant kernel present", false);
        return;
    }
    {
        const int nb = 1001;
        CUdeviceptr dw;
        float *w = qrand(t, 1, (size_t)nb * 32, &dw);
        for (int j = 0; j < nb * 32; j++)
            w[j] = ref_round(m->wtype, w[j]);
        CUdeviceptr w16 = dalloc((size_t)nb * 64);
        int n = nb;
        void *a[] = {&dw, &n, &w16};
        gpu_launch(gm, dq, 7, 1, 1, a);
        uint16_t *h = malloc((size_t)nb * 64);
        float *got = malloc(sizeof(float) * nb * 32);
        dget(h, w16, (size_t)nb * 64);
        flock_convert_to_f32(m->wtype, h, got, (size_t)nb * 32);
        CUdeviceptr dg = dput(got, sizeof(float) * nb * 32);
        snprintf(what, sizeof what, "%s (1001 blocks, grid 7)", dq);
        expect(cfg, what, dg, w, (size_t)nb * 32, 1e-3); /* one rounding to 16 bits either side */
        dfree(dw), dfree(w16), dfree(dg), free(w), free(h), free(got);
    }
    for (size_t i = 0; gemms && i < gm->b.n_kernels; i++) {
        flock_cuda_kernel_info k;
        flock_cuda_blob_kernel(&gm->b, i, &k, NULL);
        if (k.kind != FLOCK_CUK_GEMM && k.kind != FLOCK_CUK_FFN_UP_PREFILL && k.kind != FLOCK_CUK_FFN_DOWN_PREFILL)
            continue;
        const int N = (int)k.spec, K = (int)k.spec2;
        const int up = k.kind == FLOCK_CUK_FFN_UP_PREFILL, wkn = k.kind == FLOCK_CUK_FFN_DOWN_PREFILL;
        /* The stored matrix: [N, K], or down_t [K, N] for the down GEMM. */
        const int rows = wkn ? K : N, cols = wkn ? N : K;
        if (cols % 32)
            continue;
        const int epi = up ? (m->gated ? 1 : 2) : 0, yN = epi == 1 ? N / 2 : N;
        CUdeviceptr dw;
        float *w = qrand(t, (size_t)rows, (size_t)cols, &dw), *x = hrand((size_t)M * K, 1.0f);
        for (size_t j = 0; j < (size_t)N * K; j++)
            w[j] = ref_round(m->wtype, w[j]);
        float *bias = hrand((size_t)N, 1.0f), *r = hrand((size_t)M * N, 1.0f), *ref = malloc(sizeof(float) * M * yN);
        const int use_bias = !up || !m->gated;
        ref_gemm(x, M, w, N, K, wkn, epi, m->act, m->wtype, use_bias ? bias : NULL, epi == 0 ? r : NULL, ref);
        CUdeviceptr dx = dput(x, sizeof(float) * M * K), db = use_bias ? dput(bias, sizeof(float) * N) : 0;
        CUdeviceptr dr = epi == 0 ? dput(r, sizeof(float) * M * N) : 0, dy = dalloc(sizeof(float) * M * yN);
        CUdeviceptr w16 = dalloc((size_t)N * K * 2);
        int nb = N * K / 32, mm = M;
        void *a[] = {&dw, &nb, &w16};
        gpu_launch(gm, dq, cdiv((unsigned)(N * K), 256), 1, 1, a);
        void *g[] = {&dx, &mm, &w16, &db, &dr, &dy};
        gpu_launch(gm, k.name, k.grid[0], cdiv((unsigned)M, 64), 1, g);
        snprintf(what, sizeof what, "%s + %s M=%d", dq + 6, k.name + 6, M);
        expect(cfg, what, dy, ref, (size_t)M * yN, 1e-5);
        dfree(dw), dfree(dx), dfree(db), dfree(dr), dfree(dy), dfree(w16);
        free(w), free(x), free(bias), free(r), free(ref);
    }
    /* embed (two ids out of range: zero rows) and learned positions */
    const int D = m->d_model, V = m->vocab, T = 37;
    char name[64];
    flock_cuda_kernel_info k;
    if (find(gm, &k, name, sizeof name, "flock_qembed_%s", tn, 0, 0)) {
        CUdeviceptr dtab;
        float *tab = qrand(t, (size_t)V, (size_t)D, &dtab), *ref = malloc(sizeof(float) * T * D);
        int tok[37];
        for (int i = 0; i < T; i++)
            tok[i] = i == 3 ? -1 : i == 7 ? V : (int)(rnd_u64() % (uint64_t)V);
        for (int i = 0; i < T; i++)
            for (int c = 0; c < D; c++)
                ref[(size_t)i * D + c] = tok[i] < 0 || tok[i] >= V ? 0.0f : tab[(size_t)tok[i] * D + c] * 0.5f;
        CUdeviceptr dtok = dput(tok, sizeof tok), dout = dalloc(sizeof(float) * T * D);
        float scale = 0.5f;
        void *a[] = {&dtok, &dtab, &scale, &dout};
        gpu_launch(gm, name, T, 1, 1, a);
        expect(cfg, name, dout, ref, (size_t)T * D, 1e-6);
        dfree(dtab), dfree(dtok), dfree(dout), free(tab), free(ref);
    }
    if (find(gm, &k, name, sizeof name, "flock_qpos_embed_%s", tn, 0, 0)) {
        const int n_pos = 40, pos0 = 5, off = 2;
        CUdeviceptr dtab;
        float *tab = qrand(t, (size_t)n_pos, (size_t)D, &dtab), *x = hrand((size_t)T * D, 1.0f);
        float *ref = malloc(sizeof(float) * T * D);
        for (int i = 0; i < T; i++) {
            const int p = pos0 + i + off;
            for (int c = 0; c < D; c++)
                ref[(size_t)i * D + c] = x[(size_t)i * D + c] + (p < n_pos ? tab[(size_t)p * D + c] : 0.0f);
        }
        CUdeviceptr dx = dput(x, sizeof(float) * T * D), dout = dalloc(sizeof(float) * T * D);
        int np = n_pos, p0 = pos0, of = off;
        void *a[] = {&dx, &dtab, &np, &p0, &of, &dout};
        gpu_launch(gm, name, T, 1, 1, a);
        expect(cfg, name, dout, ref, (size_t)T * D, 1e-6);
        dfree(dtab), dfree(dx), dfree(dout), free(tab), free(x), free(ref);
    }
}

/* The gather FF and the down projection at every keep count; gate_up of
 * type tu, down_t of type td (a bundle may mix them). */
static void check_qffn(const char *cfg, const gpu_module *gm, const flock_codegen_model *m, flock_dtype tu,
                       flock_dtype td)
{
    const int D = m->d_model, F = m->d_ff;
    CUdeviceptr dw, dd;
    float *w = qrand(tu, (size_t)F, (size_t)D * (m->gated ? 2 : 1), &dw);
    float *down = qrand(td, (size_t)F, (size_t)D, &dd);
    float *b1 = hrand((size_t)F, 1.0f), *b2 = hrand((size_t)D, 1.0f), *x = hrand((size_t)D, 1.0f);
    CUdeviceptr db1 = m->gated ? 0 : dput(b1, sizeof(float) * F), db2 = m->gated ? 0 : dput(b2, sizeof(float) * D);
    CUdeviceptr dx = dput(x, sizeof(float) * D), null = 0;
    flock_cuda_kernel_info kr;
    flock_cuda_blob_kernel(&gm->b, (size_t)flock_cuda_blob_find(&gm->b, "flock_ffn_down_reduce"), &kr, NULL);
    for (uint32_t ki = 0; ki < m->n_keep; ki++) {
        const int K = (int)flock_keep_count(m->keep[ki], m->d_ff);
        char ng[64], nd[64], what[128];
        flock_cuda_kernel_info kg, kd;
        if (!find(gm, &kg, ng, sizeof ng, "flock_qffn_gather_%s_k%d", flock_dtype_name(tu), K, 0) ||
            !find(gm, &kd, nd, sizeof nd, "flock_qffn_down_%s_k%d", flock_dtype_name(td), K, 0)) {
            expect_true(cfg, "quantized FF kernels present", false);
            continue;
        }
        int *idx = rand_subset(F, K);
        float *h = malloc(sizeof(float) * K), *res = hrand((size_t)D, 1.0f), *ref = malloc(sizeof(float) * D);
        CUdeviceptr didx = dput(idx, sizeof(int) * K), dh = dalloc(sizeof(float) * K);
        ref_ffn_gather(m, w, m->gated ? NULL : b1, x, idx, K, h);
        const unsigned grids[2] = {kg.grid[0], 3};
        for (int gi = 0; gi < 2; gi++) {
            void *a[] = {&dx, &didx, &dw, &db1, &dh};
            gpu_launch(gm, ng, grids[gi], 1, 1, a);
            snprintf(what, sizeof what, "%s (keep %.2f) grid %u", ng, (double)kg.keep, grids[gi]);
            expect(cfg, what, dh, h, (size_t)K, QTOL);
        }
        ref_ffn_down(down, h, idx, K, D, res, m->gated ? NULL : b2, ref);
        CUdeviceptr dhr = dput(h, sizeof(float) * K), part = dalloc(sizeof(float) * (kd.spec2 + 3) * D);
        int *zeros = calloc(kd.grid[0], sizeof(int));
        CUdeviceptr counters = dput(zeros, sizeof(int) * kd.grid[0]);
        const int splits[2] = {(int)kd.spec2, 3};
        for (int si = 0; si < 2; si++) {
            int np = splits[si];
            CUdeviceptr dres = dput(res, sizeof(float) * D);
            void *b[] = {&dhr, &didx, &dd, &part, &null, &null, &null, &null};
            gpu_launch(gm, nd, kd.grid[0], (unsigned)np, 1, b);
            void *c[] = {&part, &np, &dres, &db2, &dres};
            gpu_launch(gm, kr.name, kr.grid[0], 1, 1, c);
            snprintf(what, sizeof what, "%s + reduce (split %d)", nd, np);
            expect(cfg, what, dres, ref, (size_t)D, QTOL);
            dfree(dres);
            for (int rep = 0; rep < 2; rep++) {
                dres = dput(res, sizeof(float) * D);
                void *f[] = {&dhr, &didx, &dd, &part, &counters, &dres, &db2, &dres};
                gpu_launch(gm, nd, kd.grid[0], (unsigned)np, 1, f);
                snprintf(what, sizeof what, "%s fused (split %d, run %d)", nd, np, rep + 1);
                expect(cfg, what, dres, ref, (size_t)D, QTOL);
                dfree(dres);
            }
        }
        int *back = malloc(sizeof(int) * kd.grid[0]);
        dget(back, counters, sizeof(int) * kd.grid[0]);
        expect_true(cfg, "qffn_down counters back to zero", memcmp(back, zeros, sizeof(int) * kd.grid[0]) == 0);
        dfree(counters), free(zeros), free(back);
        dfree(didx), dfree(dh), dfree(dhr), dfree(part);
        free(idx), free(h), free(res), free(ref);
    }
    dfree(dw), dfree(dd), dfree(db1), dfree(db2), dfree(dx);
    free(w), free(down), free(b1), free(b2), free(x);
}

void check_quant(const char *cfg, const gpu_module *gm, const flock_codegen_model *m, int M)
{
    flock_dtype types[3];
    int n = 0;
    for (int t = 0; t < FLOCK_DTYPE_COUNT; t++)
        if (m->qtypes & (1u << t))
            types[n++] = (flock_dtype)t;
    /* The dequant + GEMM composition is the same code for every type: the
     * GEMMs once; mixed gate_up/down_t types at the small shapes only (the
     * 7B/13B references take seconds each on the host). */
    const bool small = m->d_model <= 1024;
    for (int i = 0; i < n; i++) {
        check_qgemv(cfg, gm, types[i]);
        check_qprefill(cfg, gm, m, types[i], M, i == 0);
        check_qffn(cfg, gm, m, types[i], types[i]);
        if (n > 1 && small)
            check_qffn(cfg, gm, m, types[i], types[(i + 1) % n]);
    }
}
