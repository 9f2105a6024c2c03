/* Plain CPU references for the generated CUDA kernels. */
#include "gpu_check_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double ref_act(int act, double x)
{
    switch (act) {
    case FLOCK_ACT_SILU:
        return x / (1.0 + exp(-x));
    case FLOCK_ACT_GELU:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case FLOCK_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case FLOCK_ACT_RELU:
        return x > 0 ? x : 0;
    default:
        return x;
    }
}

float ref_round(flock_dtype t, float v)
{
    if (t == FLOCK_DTYPE_F16)
        return flock_f16_to_f32(flock_f32_to_f16(v));
    if (t == FLOCK_DTYPE_BF16)
        return flock_bf16_to_f32(flock_f32_to_bf16(v));
    return v;
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

void ref_gemv(const float *w, const float *x, const float *bias, const float *resid, int N, int K, float *y)
{
    for (int n = 0; n < N; n++) {
        double s = dot(w + (size_t)n * K, x, K);
        if (bias)
            s += bias[n];
        if (resid)
            s += resid[n];
        y[n] = (float)s;
    }
}

void ref_ffn_gather(const flock_codegen_model *m, const float *w, const float *b1, const float *x,
                    const int *idx, int keep_n, float *h)
{
    const int D = m->d_model;
    for (int j = 0; j < keep_n; j++) {
        const int n = idx[j];
        if (m->gated) {
            const float *row = w + (size_t)n * 2 * D;
            h[j] = (float)(ref_act(m->act, dot(row, x, D)) * dot(row + D, x, D));
        } else {
            h[j] = (float)ref_act(m->act, dot(w + (size_t)n * D, x, D) + (b1 ? b1[n] : 0.0));
        }
    }
}

void ref_ffn_down(const float *down_t, const float *h, const int *idx, int keep_n, int D, const float *resid,
                  const float *bias, float *y)
{
    for (int c = 0; c < D; c++) {
        double s = (resid ? resid[c] : 0.0) + (bias ? bias[c] : 0.0);
        for (int j = 0; j < keep_n; j++)
            s += (double)h[j] * down_t[(size_t)idx[j] * D + c];
        y[c] = (float)s;
    }
}

void ref_rmsnorm(const float *x, const float *w, int group, int n_groups, float eps, int unit_offset, float *y)
{
    for (int g = 0; g < n_groups; g++) {
        const float *xr = x + (size_t)g * group;
        const double r = 1.0 / sqrt(dot(xr, xr, group) / group + eps);
        for (int i = 0; i < group; i++)
            y[(size_t)g * group + i] = (float)(xr[i] * r * (w[i] + (unit_offset ? 1.0 : 0.0)));
    }
}

void ref_layernorm(const float *x, const float *w, const float *b, int group, int n_rows, float eps, float *y)
{
    for (int g = 0; g < n_rows; g++) {
        const float *xr = x + (size_t)g * group;
        double mean = 0, var = 0;
        for (int i = 0; i < group; i++)
            mean += xr[i];
        mean /= group;
        for (int i = 0; i < group; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        const double r = 1.0 / sqrt(var / group + eps);
        for (int i = 0; i < group; i++)
            y[(size_t)g * group + i] = (float)((xr[i] - mean) * r * w[i] + (b ? b[i] : 0.0));
    }
}

void ref_rope(float *x, int T, int n_heads, int head_dim, int rope_dim, int neox, int pos0, const float *inv_freq)
{
    const int half = rope_dim / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                const double a = (double)(pos0 + t) * inv_freq[i];
                const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                const double x0 = xh[i0], x1 = xh[i1];
                xh[i0] = (float)(x0 * cos(a) - x1 * sin(a));
                xh[i1] = (float)(x0 * sin(a) + x1 * cos(a));
            }
        }
}

void ref_attention(const flock_codegen_model *m, const float *q, const float *kc, const float *vc, int T, int pos0,
                   int window, float scale, float *out)
{
    const int H = m->n_head, HD = m->head_dim, KVD = m->n_kv_head * HD, QD = H * HD;
    const int grp = H / m->n_kv_head;
    double *sc = malloc(sizeof(double) * (size_t)(pos0 + T));
    for (int t = 0; t < T; t++) {
        const int p = pos0 + t;
        const int lo = window > 0 ? (p - window + 1 > 0 ? p - window + 1 : 0) : 0;
        for (int h = 0; h < H; h++) {
            const int g = h / grp;
            const float *qh = q + (size_t)t * QD + h * HD;
            double mx = -INFINITY;
            for (int k = lo; k <= p; k++) {
                double s = dot(qh, kc + (size_t)k * KVD + g * HD, HD) * scale;
                if (m->attn_softcap > 0)
                    s = m->attn_softcap * tanh(s / m->attn_softcap);
                sc[k] = s;
                if (s > mx)
                    mx = s;
            }
            double l = 0;
            for (int k = lo; k <= p; k++) {
                sc[k] = exp(sc[k] - mx);
                l += sc[k];
            }
            for (int d = 0; d < HD; d++) {
                double o = 0;
                for (int k = lo; k <= p; k++)
                    o += sc[k] * vc[(size_t)k * KVD + g * HD + d];
                out[(size_t)t * QD + h * HD + d] = (float)(o / l);
            }
        }
    }
    free(sc);
}

void ref_griffin_stat(const float *z, int T, int F, float *stat)
{
    for (int t = 0; t < T; t++) {
        const float *row = z + (size_t)t * F;
        const double n2 = dot(row, row, F);
        if (n2 == 0)
            continue;
        for (int i = 0; i < F; i++)
            stat[i] += (float)((double)row[i] * row[i] / n2);
    }
}

static const float *sort_stat;
static int by_stat_then_index(const void *a, const void *b)
{
    const int i = *(const int *)a, j = *(const int *)b;
    float vi = sort_stat[i], vj = sort_stat[j];
    if (isnan(vi))
        vi = -INFINITY;
    if (isnan(vj))
        vj = -INFINITY;
    if (vi != vj)
        return vi > vj ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int by_index(const void *a, const void *b)
{
    const int i = *(const int *)a, j = *(const int *)b;
    return i < j ? -1 : i > j;
}

void ref_griffin_select(const float *stat, int F, int keep_n, int *idx)
{
    int *order = malloc(sizeof(int) * (size_t)F);
    for (int i = 0; i < F; i++)
        order[i] = i;
    sort_stat = stat; /* single-threaded tool */
    qsort(order, (size_t)F, sizeof(int), by_stat_then_index);
    memcpy(idx, order, sizeof(int) * (size_t)keep_n);
    qsort(idx, (size_t)keep_n, sizeof(int), by_index);
    free(order);
}

void ref_gemm(const float *X, int M, const float *W, int N, int K, int wkn, int epi, int act, flock_dtype wtype,
              const float *bias, const float *R, float *Y)
{
    float *xr = malloc(sizeof(float) * (size_t)K);
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++)
            xr[k] = ref_round(wtype, X[(size_t)m * K + k]);
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)xr[k] * (wkn ? W[(size_t)k * N + n] : W[(size_t)n * K + k]);
            if (epi == 1) {
                if (n % 2 == 0) {
                    double u = 0;
                    for (int k = 0; k < K; k++)
                        u += (double)xr[k] * W[(size_t)(n + 1) * K + k];
                    Y[(size_t)m * (N / 2) + n / 2] = (float)(ref_act(act, s) * u);
                }
                continue;
            }
            if (bias)
                s += bias[n];
            if (epi == 2)
                s = ref_act(act, s);
            else if (R)
                s += R[(size_t)m * N + n];
            Y[(size_t)m * N + n] = (float)s;
        }
    }
    free(xr);
}

static const gpu_check_config configs[] = {
    {"small-f16",
     {.d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512, .rope_dim = 8,
      .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU,
      .gated = 1, .n_keep = 3, .keep = {1.0f, 0.75f, 0.5f}},
     70, 1},
    {"gemma-bf16",
     {.d_model = 640, .d_ff = 1024, .n_head = 4, .n_kv_head = 1, .head_dim = 256, .vocab = 2048, .rope_dim = 256,
      .rope_style = FLOCK_ROPE_NEOX, .wtype = FLOCK_DTYPE_BF16, .kv_type = FLOCK_DTYPE_F32,
      .act = FLOCK_ACT_GELU_TANH, .gated = 1, .attn_softcap = 50.0f, .n_keep = 2, .keep = {1.0f, 0.5f}},
     70, 1},
    {"opt-relu",
     {.d_model = 768, .d_ff = 1536, .n_head = 12, .n_kv_head = 12, .head_dim = 64, .vocab = 1024, .rope_dim = 0,
      .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_RELU, .gated = 0, .n_keep = 2,
      .keep = {1.0f, 0.3f}},
     70, 1},
    {"gelu-erf",
     {.d_model = 256, .d_ff = 1000, .n_head = 4, .n_kv_head = 2, .head_dim = 128, .vocab = 1000, .rope_dim = 32,
      .rope_style = FLOCK_ROPE_NEOX, .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_GELU,
      .gated = 1, .attn_scale = 0.1f, .n_keep = 1, .keep = {0.37f}},
     130, 1},
    /* Quantized weights (all three types in one module) at sizes that are
     * whole blocks but nothing rounder: d 96, d_ff 300, vocab 1000. */
    {"small-q",
     {.d_model = 96, .d_ff = 300, .n_head = 12, .n_kv_head = 4, .head_dim = 8, .vocab = 1000, .rope_dim = 8,
      .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .qtypes = FLOCK_CODEGEN_QTYPES,
      .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 4, .keep = {1.0f, 0.75f, 0.5f, 0.3f}},
     70, 1},
    {"llama7b-q",
     {.d_model = 4096, .d_ff = 11008, .n_head = 32, .n_kv_head = 32, .head_dim = 128, .vocab = 4096,
      .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
      .qtypes = (1u << FLOCK_DTYPE_Q8_0) | (1u << FLOCK_DTYPE_Q4_0), .kv_type = FLOCK_DTYPE_F16,
      .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3, .keep = {1.0f, 0.75f, 0.5f}},
     20, 0},
    {"llama13b-q",
     {.d_model = 5120, .d_ff = 13824, .n_head = 40, .n_kv_head = 40, .head_dim = 128, .vocab = 4096,
      .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
      .qtypes = (1u << FLOCK_DTYPE_Q8_0) | (1u << FLOCK_DTYPE_Q4_0), .kv_type = FLOCK_DTYPE_F16,
      .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3, .keep = {1.0f, 0.75f, 0.5f}},
     20, 0},
    {"llama7b-f16",
     {.d_model = 4096, .d_ff = 11008, .n_head = 32, .n_kv_head = 32, .head_dim = 128, .vocab = 4096,
      .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16,
      .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 2, .keep = {1.0f, 0.5f}},
     20, 0},
};

const gpu_check_config *gpu_check_configs(size_t *n)
{
    *n = sizeof configs / sizeof configs[0];
    return configs;
}
