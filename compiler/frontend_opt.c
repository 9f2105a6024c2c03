/* OPT and GPT-2: pre-LayerNorm blocks with biases everywhere, learned
 * positions (OPT's table is offset by 2), a plain FF (ReLU for OPT, GELU for
 * GPT-2), no RoPE, LM head tied to the embeddings. GPT-2's fused c_attn and
 * Conv1D layouts are undone by the source's name table. */
#include "error_impl.h"
#include "frontend.h"

#include <string.h>

flock_status flock_frontend_opt(fe *f)
{
    bool gpt2 = !strcmp(flock_source_arch(f->src), "gpt2");
    const flock_hf_model *hf = flock_source_hf(f->src);
    fe_shape s;
    TRY(fe_read_shape(f, &s, gpt2 ? 4 : 0)); /* GPT-2's n_inner: null means 4 * d */
    double eps = 1e-5;
    TRY(fe_float(f, "norm_eps", false, &eps));
    if (eps <= 0)
        return flock_error_set(f->err, FLOCK_E_CORRUPT, "%s: norm_eps %g must be > 0", f->family, eps);
    flock_act act = gpt2 ? FLOCK_ACT_GELU_TANH : FLOCK_ACT_RELU;
    const char *a = NULL;
    if (flock_source_hparam_str(f->src, "act", &a, NULL) == FLOCK_OK) {
        if (!strcmp(a, "relu"))
            act = FLOCK_ACT_RELU;
        else if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh"))
            act = FLOCK_ACT_GELU_TANH;
        else if (!strcmp(a, "gelu"))
            act = FLOCK_ACT_GELU;
        else
            return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: activation '%s' is not supported", f->family, a);
    }
    if (!gpt2 && hf) {
        bool before = true;
        int64_t proj = s.d_model;
        flock_hf_config_bool(hf, "do_layer_norm_before", &before, NULL);
        if (!before)
            return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: do_layer_norm_before = false (post-norm OPT, "
                                   "e.g. opt-350m) is not supported", f->family);
        flock_hf_config_int(hf, "word_embed_proj_dim", &proj, NULL);
        if (proj != s.d_model)
            return flock_error_set(f->err, FLOCK_E_UNSUPPORTED, "%s: word_embed_proj_dim %lld != hidden_size %lld "
                                   "(project_in/out) is not supported", f->family, (long long)proj,
                                   (long long)s.d_model);
    }
    fe_block_cfg b = {
        .layernorm = true, .eps = (float)eps, .n_head = (int32_t)s.n_head, .n_kv_head = (int32_t)s.n_kv_head,
        .head_dim = (int32_t)s.head_dim, .gated = false, .act = act, .d_ff = (int32_t)s.d_ff,
    };
    TRY(fe_begin(f, &s, eps, 0.0));
    int32_t x;
    TRY(fe_embed(f, 1.0f, true, gpt2 ? 0 : 2, &x));
    for (int32_t l = 0; l < (int32_t)s.n_layer; l++)
        TRY(fe_block(f, l, &b, &x));
    return fe_head(f, &b, 0.0f, x);
}
