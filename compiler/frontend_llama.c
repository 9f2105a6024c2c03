/* The llama family: Llama 2/3 (llama3 RoPE scaling), SmolLM/SmolLM2,
 * TinyLlama, Mistral (sliding window) and Qwen2/2.5 (QKV biases, found by the
 * block builder when present). Pre-norm RMSNorm blocks, SwiGLU FF. */
#include "error_impl.h"
#include "frontend.h"

#include <string.h>

static flock_status rope_scaling(fe *f, fe_block_cfg *b)
{
    const char *type = NULL;
    flock_error e = {0};
    flock_status st = flock_source_hparam_str(f->src, "rope_scaling_type", &type, &e);
    if (st == FLOCK_E_NOT_FOUND || (!st && (!strcmp(type, "none") || !strcmp(type, "default"))))
        return FLOCK_OK;
    if (st)
        return flock_error_set(f->err, st, "%s: %s", f->family, e.msg);
    double factor = 0;
    TRY(fe_float(f, "rope_scaling_factor", true, &factor));
    if (factor <= 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: rope scaling factor %g must be > 0", f->family, factor);
    b->rope_factor = (float)factor;
    if (!strcmp(type, "linear")) {
        b->rope_scaling = FLOCK_ROPE_SCALING_LINEAR;
        return FLOCK_OK;
    }
    if (!strcmp(type, "llama3")) {
        double lo = 1.0, hi = 4.0;
        int64_t orig = 8192;
        TRY(fe_float(f, "rope_low_freq_factor", false, &lo));
        TRY(fe_float(f, "rope_high_freq_factor", false, &hi));
        TRY(fe_int(f, "rope_orig_ctx", false, &orig));
        TRY(fe_check_range(f, "rope_orig_ctx", orig, 1, INT32_MAX));
        if (lo <= 0 || hi <= lo)
            return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: llama3 rope needs 0 < low_freq_factor %g < "
                                   "high_freq_factor %g", f->family, lo, hi);
        b->rope_scaling = FLOCK_ROPE_SCALING_LLAMA3;
        b->rope_low_freq_factor = (float)lo;
        b->rope_high_freq_factor = (float)hi;
        b->rope_orig_ctx = (int32_t)orig;
        return FLOCK_OK;
    }
    return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: rope scaling type '%s' is not supported "
                           "(supported: linear, llama3)", f->family, type);
}

flock_status flock_frontend_llama(fe *f)
{
    const char *arch = flock_source_arch(f->src);
    bool gguf = flock_source_kind_of(f->src) == FLOCK_SOURCE_GGUF;
    fe_shape s;
    TRY(fe_read_shape(f, &s, 0));
    double eps = 0, theta = 10000.0;
    TRY(fe_float(f, "norm_eps", true, &eps));
    TRY(fe_float(f, "rope_theta", false, &theta));
    if (eps <= 0 || theta <= 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: norm_eps %g and rope_theta %g must be > 0", f->family,
                               eps, theta);
    const char *act = NULL;
    if (flock_source_hparam_str(f->src, "act", &act, NULL) == FLOCK_OK && strcmp(act, "silu") != 0)
        return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: activation '%s' is not supported (expected silu)",
                               f->family, act);
    /* llama.cpp stores Llama 3.1's scaling as per-dimension factors, which
     * the IR's ROPE op does not carry. */
    if (gguf && flock_source_has_tensor(f->src, "rope_freqs.weight"))
        return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: GGUF rope_freqs.weight (per-dimension RoPE "
                               "factors) is not supported; compile the Hugging Face folder instead", f->family);
    fe_block_cfg b = {
        .eps = (float)eps, .n_head = (int32_t)s.n_head, .n_kv_head = (int32_t)s.n_kv_head,
        .head_dim = (int32_t)s.head_dim, .rope = true, .rope_dim = (int32_t)s.head_dim,
        /* llama.cpp's converter permuted Llama's Q/K rows for interleaved-pair
         * RoPE; Qwen2 GGUF and every HF checkpoint keep the NEOX halves. */
        .rope_style = gguf && !strcmp(arch, "llama") ? FLOCK_ROPE_NORMAL : FLOCK_ROPE_NEOX,
        .rope_theta = theta, .gated = true, .act = FLOCK_ACT_SILU, .d_ff = (int32_t)s.d_ff,
    };
    int64_t rope_dim = s.head_dim;
    TRY(fe_int(f, "rope_dim", false, &rope_dim));
    TRY(fe_check_range(f, "rope_dim", rope_dim, 2, s.head_dim));
    b.rope_dim = (int32_t)rope_dim;
    TRY(rope_scaling(f, &b));
    /* Mistral's sliding window; Qwen2 lists one but applies it only with
     * use_sliding_window, which flock does not support (so: full attention). */
    if (!strcmp(arch, "mistral")) {
        int64_t w = 0;
        TRY(fe_int(f, "sliding_window", false, &w));
        TRY(fe_check_range(f, "sliding_window", w, 0, INT32_MAX));
        b.window = (int32_t)w;
    }
    if (!strcmp(arch, "qwen2") && !gguf) {
        bool use = false;
        if (flock_hf_config_bool(flock_source_hf(f->src), "use_sliding_window", &use, NULL) == FLOCK_OK && use)
            return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: use_sliding_window with max_window_layers is "
                                   "not supported", f->family);
    }
    TRY(fe_begin(f, &s, eps, theta));
    int32_t x;
    TRY(fe_embed(f, 1.0f, false, 0, &x));
    for (int32_t l = 0; l < (int32_t)s.n_layer; l++)
        TRY(fe_block(f, l, &b, &x));
    return fe_head(f, &b, 0.0f, x);
}
