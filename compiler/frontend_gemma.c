/* The Gemma family.
 *  Gemma:   GeGLU (gelu-tanh) FF, embeddings scaled by sqrt(d), RMSNorm with
 *           (1 + w), NEOX RoPE.
 *  Gemma 2: + attention and final logit soft-capping, post-attention and
 *           post-FF norms, query_pre_attn_scalar, sliding window on even layers.
 *  Gemma 3: + QK-norm, no soft-capping, local/global layers (every 6th global
 *           unless the config's layer_types / sliding_window_pattern says
 *           otherwise), local RoPE base 10000, global base from the model.
 * llama.cpp's GGUF converter already added 1 to every Gemma norm weight (in
 * gemma-3-270m-q4_k_m.gguf a quarter of the norm values are not bf16
 * numbers, which only an f32 addition makes), so GGUF uses unit_offset 0 and
 * HF folders unit_offset 1. */
#include "error_impl.h"
#include "frontend.h"

#include <math.h>
#include <string.h>

/* Whether layer l is a global (full attention) layer of Gemma 3. */
static flock_status gemma3_is_global(fe *f, int32_t l, int64_t pattern, bool *global)
{
    const flock_hf_model *hf = flock_source_hf(f->src);
    uint64_t n = 0;
    const char *key = "layer_types";
    if (hf && flock_hf_config_len(hf, key, &n, NULL) != FLOCK_OK)
        key = "text_config.layer_types"; /* multimodal wrapper */
    if (hf && flock_hf_config_len(hf, key, &n, NULL) == FLOCK_OK) {
        const char *t = NULL;
        flock_error e = {0};
        if ((uint64_t)l >= n || flock_hf_config_str_at(hf, key, (uint64_t)l, &t, &e))
            return flock_error_set(f->err, FLOCK_E_CORRUPT, "gemma: layer_types has %llu entries, needs layer %d",
                                   (unsigned long long)n, l);
        if (strcmp(t, "full_attention") && strcmp(t, "sliding_attention"))
            return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "gemma: layer_types[%d] = '%s'", l, t);
        *global = !strcmp(t, "full_attention");
        return FLOCK_OK;
    }
    *global = (l % pattern) == pattern - 1;
    return FLOCK_OK;
}

flock_status flock_frontend_gemma(fe *f)
{
    const char *arch = flock_source_arch(f->src);
    int version = !strcmp(arch, "gemma3") ? 3 : !strcmp(arch, "gemma2") ? 2 : 1;
    bool gguf = flock_source_kind_of(f->src) == FLOCK_SOURCE_GGUF;
    fe_shape s;
    TRY(fe_read_shape(f, &s, 0));
    double eps = 0, theta = version == 3 ? 1e6 : 10000.0, local_theta = 10000.0;
    TRY(fe_float(f, "norm_eps", true, &eps));
    TRY(fe_float(f, "rope_theta", false, &theta));
    TRY(fe_float(f, "rope_local_theta", false, &local_theta));
    if (eps <= 0 || theta <= 0 || local_theta <= 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: norm_eps, rope_theta and rope_local_theta must be > 0",
                               f->family);
    const char *act = NULL;
    if (flock_source_hparam_str(f->src, "act", &act, NULL) == FLOCK_OK && strcmp(act, "gelu_pytorch_tanh") &&
        strcmp(act, "gelu"))
        return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: activation '%s' is not supported "
                               "(expected gelu_pytorch_tanh)", f->family, act);
    double qpas = (double)s.head_dim, attn_cap = 0, final_cap = 0, factor = 0;
    /* GGUF does not store query_pre_attn_scalar; the 27B models use d / n_head
     * instead of head_dim (llama.cpp recognizes them by their layer count). */
    if (gguf && ((version == 2 && s.n_layer == 46) || (version == 3 && s.n_layer == 62)))
        qpas = (double)s.d_model / (double)s.n_head;
    TRY(fe_float(f, "query_pre_attn_scalar", false, &qpas));
    if (qpas <= 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: query_pre_attn_scalar %g must be > 0", f->family, qpas);
    if (version == 2) {
        attn_cap = 50.0;
        final_cap = 30.0;
    }
    TRY(fe_float(f, "attn_softcap", false, &attn_cap));
    TRY(fe_float(f, "final_softcap", false, &final_cap));
    if (attn_cap < 0 || final_cap < 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: soft-caps must be >= 0", f->family);
    int64_t window = 0, pattern = 6;
    if (version >= 2) {
        window = version == 2 ? 4096 : 512;
        TRY(fe_int(f, "sliding_window", false, &window));
        TRY(fe_check_range(f, "sliding_window", window, 1, INT32_MAX));
        TRY(fe_int(f, "sliding_window_pattern", false, &pattern));
        TRY(fe_check_range(f, "sliding_window_pattern", pattern, 1, 1 << 20));
    }
    /* Gemma 3's linear RoPE scaling (larger models) applies to global layers. */
    const char *scaling = NULL;
    if (flock_source_hparam_str(f->src, "rope_scaling_type", &scaling, NULL) == FLOCK_OK) {
        if (strcmp(scaling, "linear") && strcmp(scaling, "default") && strcmp(scaling, "none"))
            return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: rope scaling type '%s' is not supported",
                                   f->family, scaling);
        if (!strcmp(scaling, "linear"))
            TRY(fe_float(f, "rope_scaling_factor", true, &factor));
    }
    fe_block_cfg base = {
        .eps = (float)eps, .unit_offset = gguf ? 0 : 1, .n_head = (int32_t)s.n_head,
        .n_kv_head = (int32_t)s.n_kv_head, .head_dim = (int32_t)s.head_dim, .qk_norm = version == 3,
        .post_norms = version >= 2, .rope = true, .rope_dim = (int32_t)s.head_dim, .rope_style = FLOCK_ROPE_NEOX,
        .rope_theta = theta, .attn_scale = (float)(1.0 / sqrt(qpas)), .attn_softcap = (float)attn_cap,
        .gated = true, .act = FLOCK_ACT_GELU_TANH, .d_ff = (int32_t)s.d_ff,
    };
    TRY(fe_begin(f, &s, eps, theta));
    int32_t x;
    TRY(fe_embed(f, sqrtf((float)s.d_model), false, 0, &x));
    for (int32_t l = 0; l < (int32_t)s.n_layer; l++) {
        fe_block_cfg b = base;
        if (version == 2) {
            b.window = l % 2 == 0 ? (int32_t)window : 0; /* even layers are local */
        } else if (version == 3) {
            bool global = false;
            TRY(gemma3_is_global(f, l, pattern, &global));
            b.window = global ? 0 : (int32_t)window;
            b.rope_theta = global ? theta : local_theta;
            if (global && factor > 0) {
                b.rope_scaling = FLOCK_ROPE_SCALING_LINEAR;
                b.rope_factor = (float)factor;
            }
        }
        TRY(fe_block(f, l, &b, &x));
    }
    return fe_head(f, &base, (float)final_cap, x);
}
