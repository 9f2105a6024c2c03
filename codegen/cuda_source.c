/* CUDA C source generation: the model's constants as #defines, the kernel
 * library (codegen/cuda_*.cu, embedded), then one extern "C" entry point per
 * specialization (dense shapes, each keep ratio's kept-neuron count). */
#include "cuda_private.h"
#include "wbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t cdiv(uint32_t a, uint32_t b)
{
    return (a + b - 1) / b;
}

/* ---- kernel list ------------------------------------------------------------ */

typedef struct kdef_args {
    flock_cuda_kernel_kind kind;
    uint32_t spec, spec2;
    float keep;
    uint32_t block;                /* 1-D blocks */
    uint32_t grid[3];
} kdef_args;

static flock_cuda_kernel_def *list_add(flock_cuda_kernel_list *l, const kdef_args *a, flock_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        flock_cuda_kernel_def *d = realloc(l->defs, cap * sizeof *d);
        if (!d) {
            flock_error_set(err, FLOCK_E_NOMEM, "codegen: out of memory (kernel list)");
            return NULL;
        }
        l->defs = d;
        l->cap = cap;
    }
    flock_cuda_kernel_def *d = &l->defs[l->n++];
    memset(d, 0, sizeof *d);
    d->info.kind = a->kind;
    d->info.spec = a->spec;
    d->info.spec2 = a->spec2;
    d->info.keep = a->keep;
    d->info.block[0] = a->block;
    d->info.block[1] = d->info.block[2] = 1;
    memcpy(d->info.grid, a->grid, sizeof d->info.grid);
    d->max_threads = (int)a->block;
    return d;
}

/* Fills name (printf-style, prefixed "flock_"), params and call. */
static void def_text(flock_cuda_kernel_def *d, const char *params, const char *call, const char *name_fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void def_text(flock_cuda_kernel_def *d, const char *params, const char *call, const char *name_fmt, ...)
{
    va_list ap;
    va_start(ap, name_fmt);
    memcpy(d->name, "flock_", 6);
    vsnprintf(d->name + 6, sizeof d->name - 6, name_fmt, ap);
    va_end(ap);
    d->info.name = d->name;
    snprintf(d->params, sizeof d->params, "%s", params);
    snprintf(d->call, sizeof d->call, "%s", call);
}

#define P_GEMV "const float *x, const u16 *w, const float *bias, const float *resid, float *y"
#define P_GEMM "const float *X, int M, const u16 *W, const float *bias, const float *R, float *Y"

/* The suggested split of the down projection (the host may pick another):
 * about 1024 blocks over the grid, each warp at least 8 neurons. */
static uint32_t down_split(uint32_t keep_n, uint32_t d_model)
{
    uint32_t tiles = cdiv(d_model, 256);
    uint32_t s = 1024 / tiles;
    uint32_t most = keep_n / 64;
    if (s > most)
        s = most;
    return s ? s : 1;
}

static bool have_shape(const flock_cuda_kernel_list *l, flock_cuda_kernel_kind kind, uint32_t spec, uint32_t spec2)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->defs[i].info.kind == kind && l->defs[i].info.spec == spec && l->defs[i].info.spec2 == spec2)
            return true;
    return false;
}

/* The kernels of one quantized weight type qt (codegen/cuda_quant.cu), named
 * with the type ("qgemv_q8_0_n4096_k4096"): the runtime picks them by the
 * dtype of each tensor, so one bundle may mix types (gate_up q4_0 with
 * down_t q8_0, a 16-bit fallback for a shape that is not whole blocks). */
static flock_status add_quant_kernels(const flock_codegen_model *m, flock_dtype qt, flock_cuda_kernel_list *list,
                                      flock_error *err)
{
    const uint32_t D = (uint32_t)m->d_model, H = (uint32_t)m->n_head;
    const uint32_t QD = H * (uint32_t)m->head_dim, KVD = (uint32_t)m->n_kv_head * (uint32_t)m->head_dim;
    const char *tn = flock_dtype_name(qt);
    const int q = (int)qt;
    flock_cuda_kernel_def *d;
    char call[192];
#define QADD(...)                                      \
    do {                                               \
        kdef_args a_ = {__VA_ARGS__};                  \
        if (!(d = list_add(list, &a_, err)))           \
            return FLOCK_E_NOMEM;                      \
    } while (0)
    QADD(FLOCK_CUK_QEMBED, 0, 0, 0, 256, {0, 1, 1});
    snprintf(call, sizeof call, "qembed_body<%d>(tok, table, scale, out)", q);
    def_text(d, "const int *tok, const u8 *table, float scale, float *out", call, "qembed_%s", tn);
    QADD(FLOCK_CUK_QPOS_EMBED, 0, 0, 0, 256, {0, 1, 1});
    snprintf(call, sizeof call, "qpos_embed_body<%d>(x, table, n_pos, pos0, offset, y)", q);
    def_text(d, "const float *x, const u8 *table, int n_pos, int pos0, int offset, float *y", call, "qpos_embed_%s",
             tn);
    QADD(FLOCK_CUK_DEQUANT, 0, 0, 0, 256, {0, 1, 1});
    snprintf(call, sizeof call, "dequant_body<%d>(w, n_blocks, out)", q);
    def_text(d, "const u8 *w, int n_blocks, u16 *out", call, "dequant_%s", tn);
    const uint32_t lin[4][2] = {{QD, D}, {KVD, D}, {D, QD}, {(uint32_t)m->vocab, D}};
    for (int i = 0; i < 4; i++) {
        const uint32_t N = lin[i][0], K = lin[i][1];
        bool seen = K % 32 != 0; /* not whole blocks: flockc stores it 16-bit */
        for (int j = 0; j < i; j++)
            seen |= lin[j][0] == N && lin[j][1] == K;
        if (seen)
            continue;
        QADD(FLOCK_CUK_QGEMV, N, K, 0, 256, {cdiv(N, 16), 1, 1});
        snprintf(call, sizeof call, "qgemv_body<%d, %u, %u>(x, w, bias, resid, y)", q, N, K);
        def_text(d, "const float *x, const u8 *w, const float *bias, const float *resid, float *y", call,
                 "qgemv_%s_n%u_k%u", tn, N, K);
    }
    for (uint32_t i = 0; i < m->n_keep; i++) {
        const uint32_t kn = (uint32_t)flock_keep_count(m->keep[i], m->d_ff);
        bool seen = false;
        for (uint32_t j = 0; j < i; j++)
            seen |= (uint32_t)flock_keep_count(m->keep[j], m->d_ff) == kn;
        if (seen)
            continue;
        const uint32_t split = down_split(kn, D);
        QADD(FLOCK_CUK_QFFN_GATHER, kn, 0, m->keep[i], 256, {cdiv(kn, 8), 1, 1});
        snprintf(call, sizeof call, "qffn_gather_body<%d, %u>(x, idx, w, b1, h)", q, kn);
        def_text(d, "const float *x, const int *idx, const u8 *w, const float *b1, float *h", call,
                 "qffn_gather_%s_k%u", tn, kn);
        QADD(FLOCK_CUK_QFFN_DOWN, kn, split, m->keep[i], 256, {cdiv(D, 256), split, 1});
        snprintf(call, sizeof call, "qffn_down_body<%d, %u>(h, idx, wd, part, counters, resid, bias, y)", q, kn);
        def_text(d,
                 "const float *h, const int *idx, const u8 *wd, float *part, int *counters, const float *resid, "
                 "const float *bias, float *y",
                 call, "qffn_down_%s_k%u", tn, kn);
    }
#undef QADD
    return FLOCK_OK;
}

#define ADD_OR_FAIL(var, ...)                          \
    do {                                               \
        kdef_args a_ = {__VA_ARGS__};                  \
        if (!((var) = list_add(list, &a_, err)))       \
            goto fail;                                 \
    } while (0)

flock_status flock_cuda_kernel_list_build(const flock_codegen_model *m, flock_cuda_kernel_list *list,
                                          flock_error *err)
{
    flock_status st = flock_codegen_model_check(m, err);
    if (st)
        return st;
    memset(list, 0, sizeof *list);
    const uint32_t D = (uint32_t)m->d_model, F = (uint32_t)m->d_ff, H = (uint32_t)m->n_head;
    const uint32_t QD = H * (uint32_t)m->head_dim, KVD = (uint32_t)m->n_kv_head * (uint32_t)m->head_dim;
    flock_cuda_kernel_def *d;
    char call[192];

    ADD_OR_FAIL(d, FLOCK_CUK_EMBED, 0, 0, 0, 256, {0, 1, 1});
    def_text(d, "const int *tok, const u16 *table, float scale, float *out", "embed_body(tok, table, scale, out)", "embed");

    const uint32_t groups[2] = {D, (uint32_t)m->head_dim};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && groups[1] == groups[0])
            break;
        uint32_t blk = groups[i] >= 256 ? 256 : cdiv(groups[i], 32) * 32;
        ADD_OR_FAIL(d, FLOCK_CUK_RMSNORM, groups[i], 0, 0, blk, {0, 1, 1});
        snprintf(call, sizeof call, "rmsnorm_body<%u>(x, w, eps, unit_offset, y)", groups[i]);
        def_text(d, "const float *x, const float *w, float eps, int unit_offset, float *y", call, "rmsnorm_g%u", groups[i]);
    }
    /* LayerNorm and learned positions (OPT-style models; small, so always there). */
    ADD_OR_FAIL(d, FLOCK_CUK_LAYERNORM, D, 0, 0, 256, {0, 1, 1});
    snprintf(call, sizeof call, "layernorm_body<%u>(x, w, b, eps, y)", D);
    def_text(d, "const float *x, const float *w, const float *b, float eps, float *y", call, "layernorm_g%u", D);
    ADD_OR_FAIL(d, FLOCK_CUK_POS_EMBED, 0, 0, 0, 256, {0, 1, 1});
    def_text(d, "const float *x, const u16 *table, int n_pos, int pos0, int offset, float *y",
             "pos_embed_body(x, table, n_pos, pos0, offset, y)", "pos_embed");
    if (m->rope_dim > 0) {
        ADD_OR_FAIL(d, FLOCK_CUK_ROPE, 0, 0, 0, 256, {0, 1, 1});
        def_text(d, "float *x, int n_heads, int pos0, const float *inv_freq", "rope_body(x, n_heads, pos0, inv_freq)", "rope");
        ADD_OR_FAIL(d, FLOCK_CUK_ROPE_KV_STORE, 0, 0, 0, 256, {0, 1, 1});
        def_text(d, "float *q, float *k, const float *v, int pos0, const float *inv_freq, kv_t *kc, kv_t *vc",
                 "rope_kv_store_body(q, k, v, pos0, inv_freq, kc, vc)", "rope_kv_store");
    }
    ADD_OR_FAIL(d, FLOCK_CUK_KV_STORE, 0, 0, 0, 256, {0, 1, 1});
    def_text(d, "const float *k, const float *v, int pos0, kv_t *kc, kv_t *vc", "kv_store_body(k, v, pos0, kc, vc)", "kv_store");
    ADD_OR_FAIL(d, FLOCK_CUK_ATTN_PARTIAL, 0, 0, 0, 128, {H, 0, 0});
    def_text(d, "const float *q, const kv_t *kc, const kv_t *vc, int pos0, int window, int chunk, int n_split, "
             "float *part_o, float2 *part_ml", "attn_partial_body(q, kc, vc, pos0, window, chunk, n_split, part_o, part_ml)", "attn_partial");
    ADD_OR_FAIL(d, FLOCK_CUK_ATTN_COMBINE, 0, 0, 0, 128, {H, 0, 1});
    def_text(d, "const float *part_o, const float2 *part_ml, int n_split, float *out", "attn_combine_body(part_o, part_ml, n_split, out)", "attn_combine");
    ADD_OR_FAIL(d, FLOCK_CUK_ADD, 0, 0, 0, 256, {0, 1, 1});
    def_text(d, "const float *a, const float *b, int n, float *y", "add_body(a, b, n, y)", "add");

    /* Dense GEMV (decode) for each linear shape and the LM head: [N, K]. */
    const uint32_t lin[4][2] = {{QD, D}, {KVD, D}, {D, QD}, {(uint32_t)m->vocab, D}};
    for (int i = 0; i < 4; i++) {
        const uint32_t N = lin[i][0], K = lin[i][1];
        if (have_shape(list, FLOCK_CUK_GEMV, N, K))
            continue;
        ADD_OR_FAIL(d, FLOCK_CUK_GEMV, N, K, 0, 256, {cdiv(N, 16), 1, 1});
        snprintf(call, sizeof call, "gemv_body<%u, %u>(x, w, bias, resid, y)", N, K);
        def_text(d, P_GEMV, call, "gemv_n%u_k%u", N, K);
    }

    /* GRIFFIN: per keep count, the decode FF and the selection. */
    for (uint32_t i = 0; i < m->n_keep; i++) {
        const uint32_t kn = (uint32_t)flock_keep_count(m->keep[i], m->d_ff);
        if (have_shape(list, FLOCK_CUK_FFN_GATHER, kn, 0))
            continue;
        const uint32_t split = down_split(kn, D);
        ADD_OR_FAIL(d, FLOCK_CUK_FFN_GATHER, kn, 0, m->keep[i], 256, {cdiv(kn, 8), 1, 1});
        snprintf(call, sizeof call, "ffn_gather_body<%u>(x, idx, w, b1, h)", kn);
        def_text(d, "const float *x, const int *idx, const u16 *w, const float *b1, float *h", call, "ffn_gather_k%u", kn);
        ADD_OR_FAIL(d, FLOCK_CUK_FFN_DOWN, kn, split, m->keep[i], 256, {cdiv(D, 256), split, 1});
        snprintf(call, sizeof call, "ffn_down_body<%u>(h, idx, wd, part, counters, resid, bias, y)", kn);
        def_text(d,
                 "const float *h, const int *idx, const u16 *wd, float *part, int *counters, const float *resid, "
                 "const float *bias, float *y",
                 call, "ffn_down_k%u", kn);
        ADD_OR_FAIL(d, FLOCK_CUK_GRIFFIN_RANK, kn, 0, m->keep[i], 256, {cdiv(F, 256), 1, 1});
        snprintf(call, sizeof call, "griffin_rank_body<%u>(stat, sel)", kn);
        def_text(d, "const float *stat, int *sel", call, "griffin_rank_k%u", kn);
    }
    ADD_OR_FAIL(d, FLOCK_CUK_FFN_DOWN_REDUCE, 0, 0, 0, 256, {cdiv(D, 256), 1, 1});
    def_text(d, "const float *part, int n_part, const float *resid, const float *bias, float *y",
             "ffn_down_reduce_body(part, n_part, resid, bias, y)", "ffn_down_reduce");
    ADD_OR_FAIL(d, FLOCK_CUK_GRIFFIN_ROWNORM, 0, 0, 0, 256, {0, 1, 1});
    def_text(d, "const float *z, float *inv", "griffin_rownorm_body(z, inv)", "griffin_rownorm");
    ADD_OR_FAIL(d, FLOCK_CUK_GRIFFIN_COLSUM, 0, 0, 0, 256, {cdiv(F, 256), 1, 1});
    def_text(d, "const float *z, const float *inv, int T, float *stat", "griffin_colsum_body(z, inv, T, stat)", "griffin_colsum");
    ADD_OR_FAIL(d, FLOCK_CUK_GRIFFIN_COMPACT, 0, 0, 0, 1024, {1, 1, 1});
    def_text(d, "const int *sel, int *idx", "griffin_compact_body(sel, idx)", "griffin_compact");

    /* Prefill products on the tensor cores. */
    for (int i = 0; i < 3; i++) {
        const uint32_t N = lin[i][0], K = lin[i][1];
        if (have_shape(list, FLOCK_CUK_GEMM, N, K))
            continue;
        ADD_OR_FAIL(d, FLOCK_CUK_GEMM, N, K, 0, 128, {cdiv(N, 64), 0, 1});
        snprintf(call, sizeof call, "gemm_body<%u, %u, 0, EPI_LINEAR>(X, M, W, bias, R, Y)", N, K);
        def_text(d, P_GEMM, call, "gemm_n%u_k%u", N, K);
    }
    const uint32_t upn = m->gated ? 2 * F : F;
    ADD_OR_FAIL(d, FLOCK_CUK_FFN_UP_PREFILL, upn, D, 0, 128, {cdiv(upn, 64), 0, 1});
    snprintf(call, sizeof call, "gemm_body<%u, %u, 0, %s>(X, M, W, bias, R, Y)", upn, D,
             m->gated ? "EPI_GLU" : "EPI_ACT");
    def_text(d, P_GEMM, call, "ffn_up_prefill");
    ADD_OR_FAIL(d, FLOCK_CUK_FFN_DOWN_PREFILL, D, F, 0, 128, {cdiv(D, 64), 0, 1});
    snprintf(call, sizeof call, "gemm_body<%u, %u, 1, EPI_LINEAR>(X, M, W, bias, R, Y)", D, F);
    def_text(d, P_GEMM, call, "ffn_down_prefill");
    for (int t = 0; t < FLOCK_DTYPE_COUNT; t++)
        if (m->qtypes & (1u << t))
            if ((st = add_quant_kernels(m, (flock_dtype)t, list, err)))
                goto fail;
    return FLOCK_OK;
fail:
    free(list->defs);
    memset(list, 0, sizeof *list);
    return FLOCK_E_NOMEM; /* list_add's one failure; its message is in err */
}

/* ---- source text ------------------------------------------------------------ */

typedef flock_wbuf sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) { flock_wbuf_text(b, s, n); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true; /* never happens with the fixed formats below */
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

/* A float as a C++ float literal that reads back to the same value. */
static void float_lit(char *buf, size_t n, float v)
{
    snprintf(buf, n, "%.9ef", (double)v);
}

flock_status flock_cuda_source_emit(const flock_codegen_model *m, const flock_cuda_kernel_list *list,
                                    char **src, size_t *len, flock_error *err)
{
    sbuf b = {0};
    char scale[32], cap[32];
    const float sc = m->attn_scale > 0 ? m->attn_scale : (float)(1.0 / sqrt((double)m->head_dim));
    float_lit(scale, sizeof scale, sc);
    float_lit(cap, sizeof cap, m->attn_softcap);
    sb_printf(&b, "// Generated by flock's CUDA code generator. Do not edit.\n");
    sb_printf(&b, "// d_model %d, d_ff %d, heads %d/%d x %d, vocab %d, weights %s, KV cache %s, FF %s %s\n",
              (int)m->d_model, (int)m->d_ff, (int)m->n_head, (int)m->n_kv_head, (int)m->head_dim, (int)m->vocab,
              flock_dtype_name(m->wtype), flock_dtype_name(m->kv_type), m->gated ? "gated" : "plain",
              flock_act_name(m->act));
    sb_printf(&b, "#define D_MODEL %d\n#define D_FF %d\n#define N_HEAD %d\n#define N_KV_HEAD %d\n"
                  "#define HEAD_DIM %d\n#define Q_DIM %d\n#define KV_DIM %d\n#define VOCAB %d\n"
                  "#define ROPE_DIM %d\n#define ROPE_NEOX %d\n",
              (int)m->d_model, (int)m->d_ff, (int)m->n_head, (int)m->n_kv_head, (int)m->head_dim,
              (int)(m->n_head * m->head_dim), (int)(m->n_kv_head * m->head_dim), (int)m->vocab, (int)m->rope_dim,
              m->rope_style == FLOCK_ROPE_NEOX);
    sb_printf(&b, "#define W_BF16 %d\n#define KV_F32 %d\n#define FF_ACT %d\n#define FF_GATED %d\n"
                  "#define ATTN_SCALE %s\n#define ATTN_HAS_SOFTCAP %d\n#define ATTN_SOFTCAP %s\n\n",
              m->wtype == FLOCK_DTYPE_BF16, m->kv_type == FLOCK_DTYPE_F32, (int)m->act, (int)m->gated, scale,
              m->attn_softcap > 0, cap);
    /* The quantized kernels only where used: a 16-bit model's source is unchanged. */
    const char *lib[4] = {flock_cuda_src_kernels, flock_cuda_src_attention, flock_cuda_src_gemm, flock_cuda_src_quant};
    for (int i = 0; i < (m->qtypes ? 4 : 3); i++) {
        sb_put(&b, lib[i], strlen(lib[i]));
        sb_put(&b, "\n", 1);
    }
    sb_printf(&b, "// ---- entry points: %zu kernels ----\n", list->n);
    sb_printf(&b, "#ifndef FLOCK_ENTRY\n#define FLOCK_ENTRY extern \"C\" __global__\n#endif\n");
    for (size_t i = 0; i < list->n; i++) {
        const flock_cuda_kernel_def *d = &list->defs[i];
        char keep[32] = "";
        if (d->info.keep > 0)
            snprintf(keep, sizeof keep, ", keep %.4g", (double)d->info.keep);
        sb_printf(&b, "// %s: block %u, grid (%u, %u, %u)%s\n", flock_cuda_kernel_kind_name(d->info.kind),
                  d->info.block[0], d->info.grid[0], d->info.grid[1], d->info.grid[2], keep);
        sb_printf(&b, "FLOCK_ENTRY void __launch_bounds__(%d) %s(%s)\n{\n    %s;\n}\n", d->max_threads, d->name,
                  d->params, d->call);
    }
    if (b.oom) {
        free(b.p);
        return flock_error_set(err, FLOCK_E_NOMEM, "codegen: out of memory (CUDA source)");
    }
    *src = (char *)b.p;
    *len = b.len;
    return FLOCK_OK;
}

flock_status flock_codegen_cuda_source(const flock_codegen_model *m, char **src, size_t *len,
                                       flock_cuda_kernel_info **kernels, size_t *n_kernels, flock_error *err)
{
    if (!src || !len || (kernels && !n_kernels))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "codegen: NULL output");
    flock_cuda_kernel_list list;
    flock_status st = flock_cuda_kernel_list_build(m, &list, err);
    if (st)
        return st;
    char *text = NULL;
    size_t text_len = 0;
    flock_cuda_kernel_info *infos = NULL;
    st = flock_cuda_source_emit(m, &list, &text, &text_len, err);
    if (!st && kernels) {
        /* One allocation: the infos, then the names. */
        infos = malloc(list.n * (sizeof *infos + FLOCK_CUDA_NAME_MAX) + 1);
        if (!infos) {
            st = flock_error_set(err, FLOCK_E_NOMEM, "codegen: out of memory (kernel table)");
        } else {
            char *names = (char *)(infos + list.n);
            for (size_t i = 0; i < list.n; i++) {
                infos[i] = list.defs[i].info;
                memcpy(names + i * FLOCK_CUDA_NAME_MAX, list.defs[i].name, FLOCK_CUDA_NAME_MAX);
                infos[i].name = names + i * FLOCK_CUDA_NAME_MAX;
            }
        }
    }
    if (st) {
        free(text);
        free(list.defs);
        return st;
    }
    *src = text;
    *len = text_len;
    if (kernels) {
        *kernels = infos;
        *n_kernels = list.n;
    }
    free(list.defs);
    return FLOCK_OK;
}

bool flock_codegen_cuda_available(void)
{
#ifdef FLOCK_HAVE_NVRTC
    return true;
#else
    return false;
#endif
}

#ifndef FLOCK_HAVE_NVRTC
/* Without FLOCK_CUDA there is no NVRTC: the source can still be generated. */
flock_status flock_codegen_cuda(const flock_codegen_model *m, const char *target, uint8_t **blob, size_t *size,
                                flock_error *err)
{
    (void)m;
    (void)blob;
    (void)size;
    return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                           "codegen: flock was built without FLOCK_CUDA; cannot compile kernels for %s",
                           target ? target : "(null)");
}
#endif
