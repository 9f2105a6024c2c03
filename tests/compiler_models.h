/* Test helper for test_compiler: small model configurations of every family,
 * written as Hugging Face folders (hf_writer.h) or GGUF files (gguf_writer.h)
 * with random weights. Shapes: d 16, 4 heads, 2 KV heads, d_ff 24, 2 layers,
 * vocabulary 32, context 64. */
#ifndef FLOCK_TEST_COMPILER_MODELS_H
#define FLOCK_TEST_COMPILER_MODELS_H

#include "gguf_writer.h"
#include "hf_writer.h"

#include <stdbool.h>

enum { D = 16, H = 4, KV = 2, FF = 24, L = 2, V = 32, CTX = 64 };

/* ---- model folders ---------------------------------------------------------- */

static void llama_tensors(hfw *w, int head_dim, int kv, bool bias, bool tied)
{
    hfw_add(w, V, D, "model.embed_tokens.weight", 0);
    for (int l = 0; l < L; l++) {
        hfw_add(w, D, 0, "model.layers.%d.input_layernorm.weight", l);
        hfw_add(w, H * head_dim, D, "model.layers.%d.self_attn.q_proj.weight", l);
        hfw_add(w, kv * head_dim, D, "model.layers.%d.self_attn.k_proj.weight", l);
        hfw_add(w, kv * head_dim, D, "model.layers.%d.self_attn.v_proj.weight", l);
        if (bias) {
            hfw_add(w, H * head_dim, 0, "model.layers.%d.self_attn.q_proj.bias", l);
            hfw_add(w, kv * head_dim, 0, "model.layers.%d.self_attn.k_proj.bias", l);
            hfw_add(w, kv * head_dim, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        }
        hfw_add(w, D, H * head_dim, "model.layers.%d.self_attn.o_proj.weight", l);
        hfw_add(w, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        hfw_add(w, FF, D, "model.layers.%d.mlp.gate_proj.weight", l);
        hfw_add(w, FF, D, "model.layers.%d.mlp.up_proj.weight", l);
        hfw_add(w, D, FF, "model.layers.%d.mlp.down_proj.weight", l);
    }
    hfw_add(w, D, 0, "model.norm.weight", 0);
    if (!tied)
        hfw_add(w, V, D, "lm_head.weight", 0);
}

static void write_llama(const char *dir, hfw *w)
{
    hfw_init(w, 1);
    llama_tensors(w, D / H, KV, false, true);
    hfw_write(w, dir,
              "{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\":24,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"max_position_embeddings\":64,"
              "\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"vocab_size\":32,\"hidden_act\":\"silu\","
              "\"tie_word_embeddings\":true,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
              "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":32}}",
              V);
}

static void write_mistral(const char *dir, hfw *w)
{
    hfw_init(w, 9);
    llama_tensors(w, D / H, KV, false, false);
    hfw_write(w, dir,
              "{\"model_type\":\"mistral\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\":24,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"max_position_embeddings\":64,"
              "\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"vocab_size\":32,\"hidden_act\":\"silu\","
              "\"sliding_window\":16,\"tie_word_embeddings\":false}",
              V);
}

static void write_qwen2(const char *dir, hfw *w)
{
    hfw_init(w, 2);
    llama_tensors(w, D / H, KV, true, false);
    hfw_write(w, dir,
              "{\"model_type\":\"qwen2\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\":24,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"max_position_embeddings\":64,"
              "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"vocab_size\":32,\"hidden_act\":\"silu\","
              "\"sliding_window\":64,\"use_sliding_window\":false,\"tie_word_embeddings\":false}",
              V);
}

static void gemma_tensors(hfw *w, bool qk_norm)
{
    llama_tensors(w, 8, KV, false, true);
    for (int l = 0; l < L; l++) {
        hfw_add(w, D, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l);
        hfw_add(w, D, 0, "model.layers.%d.post_feedforward_layernorm.weight", l);
        if (qk_norm) {
            hfw_add(w, 8, 0, "model.layers.%d.self_attn.q_norm.weight", l);
            hfw_add(w, 8, 0, "model.layers.%d.self_attn.k_norm.weight", l);
        }
    }
}

static void write_gemma2(const char *dir, hfw *w)
{
    hfw_init(w, 3);
    gemma_tensors(w, false);
    hfw_write(w, dir,
              "{\"model_type\":\"gemma2\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\":24,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,\"max_position_embeddings\":64,"
              "\"rms_norm_eps\":1e-06,\"rope_theta\":10000.0,\"vocab_size\":32,"
              "\"hidden_activation\":\"gelu_pytorch_tanh\",\"query_pre_attn_scalar\":8,"
              "\"attn_logit_softcapping\":50.0,\"final_logit_softcapping\":30.0,\"sliding_window\":8}",
              V);
}

static void write_gemma3(const char *dir, hfw *w)
{
    hfw_init(w, 4);
    gemma_tensors(w, true);
    hfw_write(w, dir,
              "{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":2,\"hidden_size\":16,\"intermediate_size\":24,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,\"max_position_embeddings\":64,"
              "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"rope_local_base_freq\":10000.0,"
              "\"vocab_size\":32,\"hidden_activation\":\"gelu_pytorch_tanh\",\"query_pre_attn_scalar\":8,"
              "\"attn_logit_softcapping\":null,\"final_logit_softcapping\":null,\"sliding_window\":8,"
              "\"sliding_window_pattern\":2,\"rope_scaling\":null}",
              V);
}

/* Gemma 3 4B+ checkpoints wrap the language model: text_config and
 * "language_model." names; the program must be the same as gemma3_text's. */
static void write_gemma3_wrapped(const char *dir, hfw *w)
{
    hfw_init(w, 4);
    gemma_tensors(w, true);
    for (int i = 0; i < w->n; i++) {
        char n[160];
        snprintf(n, sizeof n, "language_model.%s", w->t[i].name);
        assert_true(strlen(n) < sizeof w->t[i].name);
        memcpy(w->t[i].name, n, strlen(n) + 1);
    }
    hfw_write(w, dir,
              "{\"model_type\":\"gemma3\",\"text_config\":{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":2,"
              "\"hidden_size\":16,\"intermediate_size\":24,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
              "\"head_dim\":8,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
              "\"rope_local_base_freq\":10000.0,\"vocab_size\":32,\"hidden_activation\":\"gelu_pytorch_tanh\","
              "\"query_pre_attn_scalar\":8,\"sliding_window\":8,\"layer_types\":[\"sliding_attention\","
              "\"full_attention\"]},\"vision_config\":{\"hidden_size\":8}}",
              V);
}

static void write_opt(const char *dir, hfw *w)
{
    hfw_init(w, 5);
    hfw_add(w, V, D, "model.decoder.embed_tokens.weight", 0);
    hfw_add(w, CTX + 2, D, "model.decoder.embed_positions.weight", 0);
    for (int l = 0; l < L; l++) {
        hfw_add(w, D, 0, "model.decoder.layers.%d.self_attn_layer_norm.weight", l);
        hfw_add(w, D, 0, "model.decoder.layers.%d.self_attn_layer_norm.bias", l);
        const char *proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            char f[128];
            snprintf(f, sizeof f, "model.decoder.layers.%%d.self_attn.%s.weight", proj[k]);
            hfw_add(w, D, D, f, l);
            snprintf(f, sizeof f, "model.decoder.layers.%%d.self_attn.%s.bias", proj[k]);
            hfw_add(w, D, 0, f, l);
        }
        hfw_add(w, D, 0, "model.decoder.layers.%d.final_layer_norm.weight", l);
        hfw_add(w, D, 0, "model.decoder.layers.%d.final_layer_norm.bias", l);
        hfw_add(w, 2 * D, D, "model.decoder.layers.%d.fc1.weight", l);
        hfw_add(w, 2 * D, 0, "model.decoder.layers.%d.fc1.bias", l);
        hfw_add(w, D, 2 * D, "model.decoder.layers.%d.fc2.weight", l);
        hfw_add(w, D, 0, "model.decoder.layers.%d.fc2.bias", l);
    }
    hfw_add(w, D, 0, "model.decoder.final_layer_norm.weight", 0);
    hfw_add(w, D, 0, "model.decoder.final_layer_norm.bias", 0);
    hfw_write(w, dir,
              "{\"model_type\":\"opt\",\"num_hidden_layers\":2,\"hidden_size\":16,\"ffn_dim\":32,"
              "\"num_attention_heads\":4,\"max_position_embeddings\":64,\"vocab_size\":32,"
              "\"activation_function\":\"relu\",\"do_layer_norm_before\":true,\"word_embed_proj_dim\":16,"
              "\"enable_bias\":true}",
              V);
}

static void write_gpt2(const char *dir, hfw *w)
{
    hfw_init(w, 6);
    hfw_add(w, V, D, "transformer.wte.weight", 0);
    hfw_add(w, CTX, D, "transformer.wpe.weight", 0);
    for (int l = 0; l < L; l++) {
        hfw_add(w, D, 0, "transformer.h.%d.ln_1.weight", l);
        hfw_add(w, D, 0, "transformer.h.%d.ln_1.bias", l);
        hfw_add(w, D, 3 * D, "transformer.h.%d.attn.c_attn.weight", l); /* Conv1D: [in, out] */
        hfw_add(w, 3 * D, 0, "transformer.h.%d.attn.c_attn.bias", l);
        hfw_add(w, D, D, "transformer.h.%d.attn.c_proj.weight", l);
        hfw_add(w, D, 0, "transformer.h.%d.attn.c_proj.bias", l);
        hfw_add(w, D, 0, "transformer.h.%d.ln_2.weight", l);
        hfw_add(w, D, 0, "transformer.h.%d.ln_2.bias", l);
        hfw_add(w, D, 4 * D, "transformer.h.%d.mlp.c_fc.weight", l);
        hfw_add(w, 4 * D, 0, "transformer.h.%d.mlp.c_fc.bias", l);
        hfw_add(w, 4 * D, D, "transformer.h.%d.mlp.c_proj.weight", l);
        hfw_add(w, D, 0, "transformer.h.%d.mlp.c_proj.bias", l);
    }
    hfw_add(w, D, 0, "transformer.ln_f.weight", 0);
    hfw_add(w, D, 0, "transformer.ln_f.bias", 0);
    hfw_write(w, dir,
              "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":16,\"n_head\":4,\"n_positions\":64,"
              "\"vocab_size\":32,\"n_inner\":null,\"activation_function\":\"gelu_new\","
              "\"layer_norm_epsilon\":1e-05}",
              V);
}

/* ---- small GGUF files (F32 tensors, llama.cpp names and keys) ------------------------ */

typedef struct gguf_model {
    gw_buf kv;
    gw_tensor t[64];
    float *data[64];
    char names[64][64];
    int n;
    uint64_t seed;
} gguf_model;

static void gm_u32(gguf_model *g, const char *key, uint32_t v) { gw_kv_scalar(&g->kv, key, 4 /* UINT32 */, v, 4); }

static void gm_f32(gguf_model *g, const char *key, float v)
{
    gw_kv(&g->kv, key, 6 /* FLOAT32 */);
    gw_f32(&g->kv, v);
}

/* A row-major [rows, cols] tensor (cols = 0: 1-D); GGUF's ne[0] is the row length. */
static void gm_tensor(gguf_model *g, const char *fmt, int layer, uint64_t rows, uint64_t cols)
{
    assert_true(g->n < 64);
    int i = g->n++;
    snprintf(g->names[i], sizeof g->names[i], fmt, layer);
    uint64_t n = rows * (cols ? cols : 1);
    g->data[i] = malloc(n * 4);
    for (uint64_t k = 0; k < n; k++)
        g->data[i][k] = flock_test_randf(&g->seed);
    g->t[i] = (gw_tensor){g->names[i], cols ? 2u : 1u, {cols ? cols : rows, cols ? rows : 1, 1, 1}, 0 /* F32 */,
                          g->data[i], n * 4};
}

static void gm_write(gguf_model *g, const char *path)
{
    size_t size;
    uint8_t *img = gw_build(3, &g->kv, g->t, (size_t)g->n, 32, &size);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(img, 1, size, f), size);
    fclose(f);
    free(img);
    for (int i = 0; i < g->n; i++)
        free(g->data[i]);
    free(g->kv.p);
}

static void gm_blocks(gguf_model *g, int head_dim, bool bias, bool post_norms)
{
    gm_tensor(g, "token_embd.weight", 0, V, D);
    for (int l = 0; l < L; l++) {
        gm_tensor(g, "blk.%d.attn_norm.weight", l, D, 0);
        gm_tensor(g, "blk.%d.attn_q.weight", l, H * head_dim, D);
        gm_tensor(g, "blk.%d.attn_k.weight", l, KV * head_dim, D);
        gm_tensor(g, "blk.%d.attn_v.weight", l, KV * head_dim, D);
        if (bias) {
            gm_tensor(g, "blk.%d.attn_q.bias", l, H * head_dim, 0);
            gm_tensor(g, "blk.%d.attn_k.bias", l, KV * head_dim, 0);
            gm_tensor(g, "blk.%d.attn_v.bias", l, KV * head_dim, 0);
        }
        gm_tensor(g, "blk.%d.attn_output.weight", l, D, H * head_dim);
        gm_tensor(g, "blk.%d.ffn_norm.weight", l, D, 0);
        gm_tensor(g, "blk.%d.ffn_gate.weight", l, FF, D);
        gm_tensor(g, "blk.%d.ffn_up.weight", l, FF, D);
        gm_tensor(g, "blk.%d.ffn_down.weight", l, D, FF);
        if (post_norms) {
            gm_tensor(g, "blk.%d.post_attention_norm.weight", l, D, 0);
            gm_tensor(g, "blk.%d.post_ffw_norm.weight", l, D, 0);
        }
    }
    gm_tensor(g, "output_norm.weight", 0, D, 0);
}

static void gm_common(gguf_model *g, const char *arch, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->seed = seed;
    char k[128];
    gw_kv_str(&g->kv, "general.architecture", arch);
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, arch), k)
    gm_u32(g, KEY("block_count"), L);
    gm_u32(g, KEY("embedding_length"), D);
    gm_u32(g, KEY("feed_forward_length"), FF);
    gm_u32(g, KEY("attention.head_count"), H);
    gm_u32(g, KEY("attention.head_count_kv"), KV);
    gm_u32(g, KEY("context_length"), CTX);
    gm_f32(g, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
}

static void write_gemma2_gguf(const char *path)
{
    gguf_model g;
    gm_common(&g, "gemma2", 7);
    char k[128];
    const char *arch = "gemma2";
    gm_u32(&g, KEY("attention.key_length"), 8);
    gm_u32(&g, KEY("attention.sliding_window"), 8);
    gm_f32(&g, KEY("attn_logit_softcapping"), 50.0f);
    gm_f32(&g, KEY("final_logit_softcapping"), 30.0f);
    gm_blocks(&g, 8, false, true);
    gm_write(&g, path);
}

static void write_qwen2_gguf(const char *path, bool rope_freqs)
{
    gguf_model g;
    gm_common(&g, rope_freqs ? "llama" : "qwen2", 8);
    char k[128];
    const char *arch = rope_freqs ? "llama" : "qwen2";
    gm_f32(&g, KEY("rope.freq_base"), 1000000.0f);
#undef KEY
    gm_blocks(&g, D / H, !rope_freqs, false);
    gm_tensor(&g, "output.weight", 0, V, D);
    if (rope_freqs)
        gm_tensor(&g, "rope_freqs.weight", 0, D / H / 2, 0);
    gm_write(&g, path);
}

#endif
