/* gpu_check: decode-step timing of Llama-2-7B- and 13B-shaped layer stacks
 * (random f16 weights generated on the GPU) at keep 1.0, 0.75 and 0.5:
 * tokens/s, bytes read per token, achieved GB/s against a device-to-device
 * copy measured in the same run, and the speed-up of keep 0.5 over 1.0. */
#include "gpu_check.h"

#include <math.h>
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned cdiv(unsigned a, unsigned b)
{
    return (a + b - 1) / b;
}

static unsigned umin(unsigned a, unsigned b)
{
    return a < b ? a : b;
}

/* Random 16-bit values in [-scale, scale) from a hash of the index. */
static const char fill_src[] =
    "extern \"C\" __global__ void fill16(unsigned short *p, unsigned long long n, unsigned long long seed,\n"
    "                                    float scale, int bf16)\n"
    "{\n"
    "    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;\n"
    "         i += (unsigned long long)gridDim.x * blockDim.x) {\n"
    "        unsigned long long z = (i + seed) * 0x9E3779B97F4A7C15ull;\n"
    "        z ^= z >> 31; z *= 0xBF58476D1CE4E5B9ull; z ^= z >> 29;\n"
    "        float u = ((float)(z >> 40) * (1.0f / 8388608.0f) - 1.0f) * scale;\n"
    "        unsigned short h;\n"
    "        if (bf16) h = (unsigned short)(__float_as_uint(u) >> 16);\n"
    "        else asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(u));\n"
    "        p[i] = h;\n"
    "    }\n"
    "}\n";

static CUmodule fill_mod;
static CUfunction fill_fn;

static void fill_init(void)
{
    nvrtcProgram prog;
    if (nvrtcCreateProgram(&prog, fill_src, "fill.cu", 0, NULL, NULL) != NVRTC_SUCCESS) {
        fprintf(stderr, "nvrtc create failed\n");
        exit(2);
    }
    const char *opt = "--gpu-architecture=compute_80";
    nvrtcResult r = nvrtcCompileProgram(prog, 1, &opt);
    size_t n = 0;
    char *ptx = NULL;
    if (r == NVRTC_SUCCESS && nvrtcGetPTXSize(prog, &n) == NVRTC_SUCCESS && (ptx = malloc(n)))
        r = nvrtcGetPTX(prog, ptx);
    nvrtcDestroyProgram(&prog);
    if (r != NVRTC_SUCCESS || !ptx) {
        fprintf(stderr, "nvrtc: fill kernel failed: %s\n", nvrtcGetErrorString(r));
        exit(2);
    }
    CK(CU.module_load_data(&fill_mod, ptx));
    CK(CU.module_get_function(&fill_fn, fill_mod, "fill16"));
    free(ptx);
}

static CUdeviceptr dfill16(size_t n, float scale)
{
    static unsigned long long seed = 1;
    CUdeviceptr d;
    CK(CU.mem_alloc(&d, 2 * n));
    unsigned long long nn = n, s = (seed += 0x1234567ull * 977);
    int bf16 = 0;
    void *a[] = {&d, &nn, &s, &scale, &bf16};
    CK(CU.launch_kernel(fill_fn, 4096, 1, 1, 256, 1, 1, 0, g_stream, a, NULL));
    return d;
}

static CUdeviceptr dfill_f32(size_t n, float v)
{
    float *h = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        h[i] = v;
    CUdeviceptr d = dput(h, sizeof(float) * n);
    free(h);
    return d;
}

/* Device-to-device copy bandwidth (bytes read + written per second). */
static double copy_bandwidth(void)
{
    const size_t n = (size_t)2 << 30;
    CUdeviceptr a, b;
    CK(CU.mem_alloc(&a, n));
    CK(CU.mem_alloc(&b, n));
    CK(CU.memset_d8(a, 1, n));
    CK(CU.ctx_synchronize());
    CUevent e0, e1;
    CK(CU.event_create(&e0, 0));
    CK(CU.event_create(&e1, 0));
    CK(CU.memcpy_dtod_async(b, a, n, g_stream));
    CK(CU.event_record(e0, g_stream));
    const int reps = 10;
    for (int i = 0; i < reps; i++)
        CK(CU.memcpy_dtod_async(i & 1 ? a : b, i & 1 ? b : a, n, g_stream));
    CK(CU.event_record(e1, g_stream));
    CK(CU.event_synchronize(e1));
    float ms = 0;
    CK(CU.event_elapsed_time(&ms, e0, e1));
    dfree(a), dfree(b);
    return 2.0 * n * reps / (ms * 1e-3);
}

typedef struct layer {
    CUdeviceptr wq, wk, wv, wo, gu, down, norm1, norm2, kc, vc;
} layer;

typedef struct stack {
    const char *label;
    int qt;                /* the matrices' quantized type (flock_dtype), or 0: 16-bit */
    flock_codegen_model m;
    int n_layer, pos;
    gpu_module gm;
    layer *L;
    CUdeviceptr x, h, q, k, v, a, hb, part, po, pml, logits, wlm, norm_out, inv_freq, counters;
    CUdeviceptr idx[FLOCK_CODEGEN_MAX_KEEP];
    /* Grids of one wave at most (no tail): per GEMV shape, per keep. */
    unsigned g_q, g_kv, g_o, g_lm, g_gather[FLOCK_CODEGEN_MAX_KEEP];
    int n_part[FLOCK_CODEGEN_MAX_KEEP];
} stack;

enum { CHUNK = 64 };

/* Bytes per weight of the stack's matrices. */
static double weight_bytes(const stack *s)
{
    return s->qt ? (double)flock_dtype_block_bytes((flock_dtype)s->qt) / 32.0 : 2.0;
}

/* A matrix of n weights: random 16-bit values, or as many random bytes as
 * n quantized weights take (their scales are those values: any finite
 * number does for timing). */
static CUdeviceptr dfill_w(const stack *s, size_t n, float scale)
{
    return s->qt ? dfill16(n / 32 * flock_dtype_block_bytes((flock_dtype)s->qt) / 2, scale) : dfill16(n, scale);
}

/* The decode kernel `kind` ("gemv", "ffn_gather", "ffn_down") with its shape suffix. */
static void kname(const stack *s, char *buf, size_t cap, const char *kind, const char *shape)
{
    if (s->qt)
        snprintf(buf, cap, "flock_q%s_%s_%s", kind, flock_dtype_name((flock_dtype)s->qt), shape);
    else
        snprintf(buf, cap, "flock_%s_%s", kind, shape);
}

/* One decode step: every layer's attention, linears and GRIFFIN FF at keep
 * index ki, then the final norm and the LM head. */
static void decode_step(stack *s, int ki)
{
    const flock_codegen_model *m = &s->m;
    const int D = m->d_model, QD = m->n_head * m->head_dim, KVD = m->n_kv_head * m->head_dim;
    const int K = flock_keep_count(m->keep[ki], m->d_ff);
    int pos = s->pos, zero = 0, chunk = CHUNK, n_split = (int)cdiv((unsigned)pos + 1, CHUNK);
    float eps = 1e-5f;
    CUdeviceptr null = 0;
    char gq[64], gk[64], go[64], gl[64], norm[64], gat[64], dn[64], sh[32];
    snprintf(sh, sizeof sh, "n%d_k%d", QD, D);
    kname(s, gq, sizeof gq, "gemv", sh);
    snprintf(sh, sizeof sh, "n%d_k%d", KVD, D);
    kname(s, gk, sizeof gk, "gemv", sh);
    snprintf(sh, sizeof sh, "n%d_k%d", D, QD);
    kname(s, go, sizeof go, "gemv", sh);
    snprintf(sh, sizeof sh, "n%d_k%d", m->vocab, D);
    kname(s, gl, sizeof gl, "gemv", sh);
    snprintf(norm, sizeof norm, "flock_rmsnorm_g%d", D);
    snprintf(sh, sizeof sh, "k%d", K);
    kname(s, gat, sizeof gat, "ffn_gather", sh);
    kname(s, dn, sizeof dn, "ffn_down", sh);
    int n_part = s->n_part[ki];
    const unsigned tiles = cdiv((unsigned)D, 256);
    for (int l = 0; l < s->n_layer; l++) {
        layer *L = &s->L[l];
        void *a1[] = {&s->x, &L->norm1, &eps, &zero, &s->h};
        gpu_launch(&s->gm, norm, 1, 1, 1, a1);
        void *aq[] = {&s->h, &L->wq, &null, &null, &s->q};
        gpu_launch(&s->gm, gq, s->g_q, 1, 1, aq);
        void *ak[] = {&s->h, &L->wk, &null, &null, &s->k};
        gpu_launch(&s->gm, gk, s->g_kv, 1, 1, ak);
        void *av[] = {&s->h, &L->wv, &null, &null, &s->v};
        gpu_launch(&s->gm, gk, s->g_kv, 1, 1, av);
        void *kv[] = {&s->q, &s->k, &s->v, &pos, &s->inv_freq, &L->kc, &L->vc};
        gpu_launch(&s->gm, "flock_rope_kv_store", 1, 1, 1, kv); /* rope q, k; store k, v */
        void *ap[] = {&s->q, &L->kc, &L->vc, &pos, &zero, &chunk, &n_split, &s->po, &s->pml};
        gpu_launch(&s->gm, "flock_attn_partial", (unsigned)m->n_head, (unsigned)n_split, 1, ap);
        void *ac[] = {&s->po, &s->pml, &n_split, &s->a};
        gpu_launch(&s->gm, "flock_attn_combine", (unsigned)m->n_head, 1, 1, ac);
        void *ao[] = {&s->a, &L->wo, &null, &s->x, &s->x};
        gpu_launch(&s->gm, go, s->g_o, 1, 1, ao);
        void *a2[] = {&s->x, &L->norm2, &eps, &zero, &s->h};
        gpu_launch(&s->gm, norm, 1, 1, 1, a2);
        void *fg[] = {&s->h, &s->idx[ki], &L->gu, &null, &s->hb};
        gpu_launch(&s->gm, gat, s->g_gather[ki], 1, 1, fg);
        void *fd[] = {&s->hb, &s->idx[ki], &L->down, &s->part, &s->counters, &s->x, &null, &s->x};
        gpu_launch(&s->gm, dn, tiles, (unsigned)n_part, 1, fd); /* fused reduction */
    }
    void *an[] = {&s->x, &s->norm_out, &eps, &zero, &s->h};
    gpu_launch(&s->gm, norm, 1, 1, 1, an);
    void *lm[] = {&s->h, &s->wlm, &null, &null, &s->logits};
    gpu_launch(&s->gm, gl, s->g_lm, 1, 1, lm);
}

/* Weight and cache bytes one decode step reads at keep index ki. */
static double step_bytes(const stack *s, int ki)
{
    const flock_codegen_model *m = &s->m;
    const double D = m->d_model, QD = m->n_head * m->head_dim, KVD = m->n_kv_head * m->head_dim;
    const double K = flock_keep_count(m->keep[ki], m->d_ff);
    const double wb = weight_bytes(s);
    const double per_layer = wb * (QD * D + 2 * KVD * D + D * QD) + wb * (2 * K * D + K * D) +
                             2.0 * 2 * (s->pos + 1) * KVD;
    return s->n_layer * per_layer + wb * m->vocab * D;
}

static void stack_init(stack *s, int cc)
{
    const flock_codegen_model *m = &s->m;
    const size_t D = (size_t)m->d_model, F = (size_t)m->d_ff, QD = (size_t)m->n_head * m->head_dim;
    const size_t KVD = (size_t)m->n_kv_head * m->head_dim, ctx = (size_t)s->pos + 1;
    gpu_module_load(&s->gm, m, cc);
    s->L = calloc((size_t)s->n_layer, sizeof *s->L);
    const float ws = 1.0f / sqrtf((float)D);
    for (int l = 0; l < s->n_layer; l++) {
        layer *L = &s->L[l];
        L->wq = dfill_w(s, QD * D, ws);
        L->wk = dfill_w(s, KVD * D, ws);
        L->wv = dfill_w(s, KVD * D, ws);
        L->wo = dfill_w(s, D * QD, 1.0f / sqrtf((float)QD));
        L->gu = dfill_w(s, F * 2 * D, ws);
        L->down = dfill_w(s, F * D, 1.0f / sqrtf((float)F));
        L->kc = dfill16(ctx * KVD, 1.0f);
        L->vc = dfill16(ctx * KVD, 1.0f);
        L->norm1 = dfill_f32(D, 1.0f);
        L->norm2 = dfill_f32(D, 1.0f);
    }
    s->wlm = dfill_w(s, (size_t)m->vocab * D, ws);
    s->norm_out = dfill_f32(D, 1.0f);
    float *x = hrand(D, 1.0f);
    s->x = dput(x, sizeof(float) * D);
    free(x);
    s->h = dalloc(4 * D), s->q = dalloc(4 * QD), s->k = dalloc(4 * KVD), s->v = dalloc(4 * KVD);
    s->a = dalloc(4 * QD), s->hb = dalloc(4 * F), s->part = dalloc(4 * D * 1024);
    int zeros[64] = {0}; /* ceil(d/256) <= 48 tiles */
    s->counters = dput(zeros, sizeof zeros);
    const size_t ns = cdiv((unsigned)ctx, CHUNK);
    s->po = dalloc(4 * ns * QD), s->pml = dalloc(8 * ns * m->n_head), s->logits = dalloc(4 * (size_t)m->vocab);
    float inv[256];
    for (int i = 0; i < m->rope_dim / 2; i++)
        inv[i] = (float)pow(10000.0, -2.0 * i / m->rope_dim);
    s->inv_freq = dput(inv, sizeof(float) * (size_t)(m->rope_dim / 2));
    char nm[96], sh[32];
    unsigned *g[4] = {&s->g_q, &s->g_kv, &s->g_o, &s->g_lm};
    const size_t shapes[4][2] = {{QD, D}, {KVD, D}, {D, QD}, {(size_t)m->vocab, D}};
    for (int i = 0; i < 4; i++) {
        snprintf(sh, sizeof sh, "n%zu_k%zu", shapes[i][0], shapes[i][1]);
        kname(s, nm, sizeof nm, "gemv", sh);
        *g[i] = umin(cdiv((unsigned)shapes[i][0], 16), gpu_wave(&s->gm, nm));
    }
    for (uint32_t ki = 0; ki < m->n_keep; ki++) {
        const int K = flock_keep_count(m->keep[ki], m->d_ff);
        snprintf(sh, sizeof sh, "k%d", K);
        kname(s, nm, sizeof nm, "ffn_gather", sh);
        s->g_gather[ki] = umin(cdiv((unsigned)K, 8), gpu_wave(&s->gm, nm));
        kname(s, nm, sizeof nm, "ffn_down", sh);
        /* one wave of (tiles x n_part) blocks, each warp at least 4 neurons */
        unsigned np = gpu_wave(&s->gm, nm) / cdiv((unsigned)D, 256);
        np = umin(umin(np ? np : 1, (unsigned)K / 32 ? (unsigned)K / 32 : 1), 1024);
        s->n_part[ki] = (int)np;
        printf("%s keep %.2f: grids gemv q %u, gather %u, down %u x %u\n", s->label, (double)m->keep[ki], s->g_q,
               s->g_gather[ki], cdiv((unsigned)D, 256), np);
        int *idx = rand_subset(m->d_ff, K);
        s->idx[ki] = dput(idx, sizeof(int) * (size_t)K);
        free(idx);
    }
    CK(CU.ctx_synchronize());
}

static void stack_free(stack *s)
{
    for (int l = 0; l < s->n_layer; l++) {
        layer *L = &s->L[l];
        CUdeviceptr p[] = {L->wq, L->wk, L->wv, L->wo, L->gu, L->down, L->norm1, L->norm2, L->kc, L->vc};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
            dfree(p[i]);
    }
    CUdeviceptr p[] = {s->x, s->h, s->q, s->k, s->v, s->a, s->hb, s->part, s->po, s->pml, s->logits, s->wlm,
                       s->norm_out, s->inv_freq, s->counters};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        dfree(p[i]);
    for (uint32_t ki = 0; ki < s->m.n_keep; ki++)
        dfree(s->idx[ki]);
    free(s->L);
    gpu_module_free(&s->gm);
}

/* Milliseconds per step: plain stream launches, and a captured graph when
 * the driver can (the graph removes the CPU launch cost from the figure). */
static void time_steps(stack *s, int ki, double *ms_stream, double *ms_graph)
{
    const int warm = 3, reps = 20;
    CUevent e0, e1;
    CK(CU.event_create(&e0, 0));
    CK(CU.event_create(&e1, 0));
    for (int i = 0; i < warm; i++)
        decode_step(s, ki);
    CK(CU.event_record(e0, g_stream));
    for (int i = 0; i < reps; i++)
        decode_step(s, ki);
    CK(CU.event_record(e1, g_stream));
    CK(CU.event_synchronize(e1));
    float ms = 0;
    CK(CU.event_elapsed_time(&ms, e0, e1));
    *ms_stream = ms / reps;
    *ms_graph = NAN;
    if (!CU.stream_begin_capture || !CU.graph_instantiate)
        return;
    CUgraph g = NULL;
    CUgraphExec ge = NULL;
    if (CU.stream_begin_capture(g_stream, 0) != 0)
        return;
    decode_step(s, ki);
    if (CU.stream_end_capture(g_stream, &g) != 0 || CU.graph_instantiate(&ge, g, 0) != 0) {
        if (g)
            CU.graph_destroy(g);
        return;
    }
    for (int i = 0; i < warm; i++)
        CK(CU.graph_launch(ge, g_stream));
    CK(CU.event_record(e0, g_stream));
    for (int i = 0; i < reps; i++)
        CK(CU.graph_launch(ge, g_stream));
    CK(CU.event_record(e1, g_stream));
    CK(CU.event_synchronize(e1));
    CK(CU.event_elapsed_time(&ms, e0, e1));
    *ms_graph = ms / reps;
    CU.graph_exec_destroy(ge);
    CU.graph_destroy(g);
}

/* Tensor-core prefill products for M = 512 prompt rows: TFLOP/s of the
 * attention projection shape and both FF products (layer 0's weights). */
static void time_prefill(stack *s, char *line, size_t cap)
{
    const flock_codegen_model *m = &s->m;
    const int M = 512, D = m->d_model, F = m->d_ff, QD = m->n_head * m->head_dim;
    float *hx = hrand((size_t)M * F, 1.0f);
    CUdeviceptr X = dput(hx, sizeof(float) * (size_t)M * F), Y = dalloc(sizeof(float) * (size_t)M * 2 * F), null = 0;
    free(hx);
    struct {
        const char *what;
        char name[64];
        int N, K;
        CUdeviceptr W;
    } g[3] = {{"attn proj", "", QD, D, s->L[0].wq}, {"ffn up", "flock_ffn_up_prefill", 2 * F, D, s->L[0].gu},
              {"ffn down", "flock_ffn_down_prefill", D, F, s->L[0].down}};
    snprintf(g[0].name, sizeof g[0].name, "flock_gemm_n%d_k%d", QD, D);
    CUevent e0, e1;
    CK(CU.event_create(&e0, 0));
    CK(CU.event_create(&e1, 0));
    size_t n = (size_t)snprintf(line, cap, "%-11s prefill M=%d:", s->label, M);
    for (int i = 0; i < 3; i++) {
        int mm = M;
        void *a[] = {&X, &mm, &g[i].W, &null, &null, &Y};
        const unsigned gx = cdiv((unsigned)g[i].N, 64), gy = cdiv((unsigned)M, 64);
        gpu_launch(&s->gm, g[i].name, gx, gy, 1, a);
        CK(CU.event_record(e0, g_stream));
        const int reps = 10;
        for (int r = 0; r < reps; r++)
            gpu_launch(&s->gm, g[i].name, gx, gy, 1, a);
        CK(CU.event_record(e1, g_stream));
        CK(CU.event_synchronize(e1));
        float ms = 0;
        CK(CU.event_elapsed_time(&ms, e0, e1));
        const double tflops = 2.0 * M * g[i].N * (double)g[i].K * reps / (ms * 1e-3) / 1e12;
        if (n < cap)
            n += (size_t)snprintf(line + n, cap - n, "  %s %dx%d %.0f TFLOP/s", g[i].what, g[i].N, g[i].K, tflops);
    }
    if (n < cap)
        snprintf(line + n, cap - n, "\n");
    dfree(X), dfree(Y);
}

void bench_run(int cc)
{
    fill_init();
    printf("== decode-step timing ==\n");
    const double copy_bw = copy_bandwidth();
    printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_bw / 1e9);
#define L7B(lbl, t)                                                                                            \
    {.label = lbl, .qt = t, .n_layer = 32, .pos = 511,                                                          \
     .m = {.d_model = 4096, .d_ff = 11008, .n_head = 32, .n_kv_head = 32, .head_dim = 128, .vocab = 32000,      \
           .rope_dim = 128, .wtype = FLOCK_DTYPE_F16, .qtypes = (t) ? 1u << (t) : 0, .kv_type = FLOCK_DTYPE_F16, \
           .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3, .keep = {1.0f, 0.75f, 0.5f}}}
#define L13B(lbl, t)                                                                                           \
    {.label = lbl, .qt = t, .n_layer = 40, .pos = 511,                                                          \
     .m = {.d_model = 5120, .d_ff = 13824, .n_head = 40, .n_kv_head = 40, .head_dim = 128, .vocab = 32000,      \
           .rope_dim = 128, .wtype = FLOCK_DTYPE_F16, .qtypes = (t) ? 1u << (t) : 0, .kv_type = FLOCK_DTYPE_F16, \
           .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3, .keep = {1.0f, 0.75f, 0.5f}}}
    /* 16-bit, then every matrix q8_0, then q4_0 (the quantized decode kernels;
     * their prefill is the 16-bit GEMM after a dequant, not timed here). */
    stack stacks[6] = {
        L7B("llama2-7b", 0), L13B("llama2-13b", 0),
        L7B("llama2-7b-q8_0", FLOCK_DTYPE_Q8_0), L13B("llama2-13b-q8_0", FLOCK_DTYPE_Q8_0),
        L7B("llama2-7b-q4_0", FLOCK_DTYPE_Q4_0), L13B("llama2-13b-q4_0", FLOCK_DTYPE_Q4_0),
    };
#undef L7B
#undef L13B
    char table[4096] = "", prefill[2][256];
    size_t tl = 0;
    tl += (size_t)snprintf(table + tl, sizeof table - tl,
                           "model            keep  ms/token  tokens/s  GB/token   GB/s  %%copy  speed-up  (stream ms)\n");
    for (int si = 0; si < 6; si++) {
        stack *s = &stacks[si];
        stack_init(s, cc);
        double base = 0;
        for (uint32_t ki = 0; ki < s->m.n_keep; ki++) {
            double ms_s, ms_g;
            time_steps(s, (int)ki, &ms_s, &ms_g);
            const double ms = isnan(ms_g) ? ms_s : ms_g;
            if (ki == 0)
                base = ms;
            const double gb = step_bytes(s, (int)ki) / 1e9, bw = gb / (ms * 1e-3);
            printf("%s keep %.2f: %.3f ms/token (graph), %.3f ms (stream), %.2f GB/token, %.0f GB/s\n", s->label,
                   (double)s->m.keep[ki], ms_g, ms_s, gb, bw);
            tl += (size_t)snprintf(table + tl, sizeof table - tl,
                                   "%-16s %4.2f  %8.3f  %8.1f  %8.2f  %5.0f  %4.0f%%  %7.2fx  (%.3f)\n", s->label,
                                   (double)s->m.keep[ki], ms, 1e3 / ms, gb, bw, 100.0 * bw / (copy_bw / 1e9),
                                   base / ms, ms_s);
        }
        if (!s->qt) {
            time_prefill(s, prefill[si], sizeof prefill[si]);
            printf("%s", prefill[si]);
        }
        stack_free(s);
    }
    printf("\n%s%s%s", table, prefill[0], prefill[1]);
    printf("(GB/s counts weight and KV bytes read per token; %%copy against the copy's read+write rate; "
           "speed-up against keep 1.0 of the same model)\n");
}
