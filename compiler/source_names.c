/* Tensor name tables: llama.cpp's GGUF names are flock's canonical source
 * names; each HF architecture maps them onto its own checkpoint names. */
#include "source_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tmap {
    const char *canon; /* block tensors without the "blk.N." prefix */
    const char *hf;    /* "%d" = block index */
    uint8_t flags, part;
} tmap;

#define QKVO(prefix, o)                                                                                      \
    {"attn_q.weight", prefix "q_proj.weight", 0, 0}, {"attn_k.weight", prefix "k_proj.weight", 0, 0},        \
        {"attn_v.weight", prefix "v_proj.weight", 0, 0}, {"attn_q.bias", prefix "q_proj.bias", 0, 0},        \
        {"attn_k.bias", prefix "k_proj.bias", 0, 0}, {"attn_v.bias", prefix "v_proj.bias", 0, 0},            \
        {"attn_output.weight", prefix o ".weight", 0, 0}, {"attn_output.bias", prefix o ".bias", 0, 0}

static const tmap llama_global[] = {
    {"token_embd.weight", "model.embed_tokens.weight", 0, 0},
    {"output_norm.weight", "model.norm.weight", 0, 0},
    {"output.weight", "lm_head.weight", 0, 0},
    {NULL, NULL, 0, 0},
};

static const tmap llama_block[] = {
    {"attn_norm.weight", "model.layers.%d.input_layernorm.weight", 0, 0},
    QKVO("model.layers.%d.self_attn.", "o_proj"),
    {"attn_q_norm.weight", "model.layers.%d.self_attn.q_norm.weight", 0, 0},
    {"attn_k_norm.weight", "model.layers.%d.self_attn.k_norm.weight", 0, 0},
    {"ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", 0, 0},
    {"ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", 0, 0},
    {"ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", 0, 0},
    {NULL, NULL, 0, 0},
};

/* Llama, Mistral, Qwen2, Gemma 1: post_attention_layernorm is the FF pre-norm. */
static const tmap llama_norms[] = {
    {"ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", 0, 0},
    {NULL, NULL, 0, 0},
};

/* Gemma 2/3: four norms per block; post_attention_layernorm is a post-norm. */
static const tmap gemma2_norms[] = {
    {"post_attention_norm.weight", "model.layers.%d.post_attention_layernorm.weight", 0, 0},
    {"ffn_norm.weight", "model.layers.%d.pre_feedforward_layernorm.weight", 0, 0},
    {"post_ffw_norm.weight", "model.layers.%d.post_feedforward_layernorm.weight", 0, 0},
    {NULL, NULL, 0, 0},
};

static const tmap opt_global[] = {
    {"token_embd.weight", "model.decoder.embed_tokens.weight", 0, 0},
    {"position_embd.weight", "model.decoder.embed_positions.weight", 0, 0},
    {"output_norm.weight", "model.decoder.final_layer_norm.weight", 0, 0},
    {"output_norm.bias", "model.decoder.final_layer_norm.bias", 0, 0},
    {"output.weight", "lm_head.weight", 0, 0},
    {NULL, NULL, 0, 0},
};

static const tmap opt_block[] = {
    {"attn_norm.weight", "model.decoder.layers.%d.self_attn_layer_norm.weight", 0, 0},
    {"attn_norm.bias", "model.decoder.layers.%d.self_attn_layer_norm.bias", 0, 0},
    QKVO("model.decoder.layers.%d.self_attn.", "out_proj"),
    {"ffn_norm.weight", "model.decoder.layers.%d.final_layer_norm.weight", 0, 0},
    {"ffn_norm.bias", "model.decoder.layers.%d.final_layer_norm.bias", 0, 0},
    {"ffn_up.weight", "model.decoder.layers.%d.fc1.weight", 0, 0},
    {"ffn_up.bias", "model.decoder.layers.%d.fc1.bias", 0, 0},
    {"ffn_down.weight", "model.decoder.layers.%d.fc2.weight", 0, 0},
    {"ffn_down.bias", "model.decoder.layers.%d.fc2.bias", 0, 0},
    {NULL, NULL, 0, 0},
};

static const tmap gpt2_global[] = {
    {"token_embd.weight", "transformer.wte.weight", 0, 0},
    {"position_embd.weight", "transformer.wpe.weight", 0, 0},
    {"output_norm.weight", "transformer.ln_f.weight", 0, 0},
    {"output_norm.bias", "transformer.ln_f.bias", 0, 0},
    {"output.weight", "lm_head.weight", 0, 0},
    {NULL, NULL, 0, 0},
};

enum { T = FLOCK_TMAP_TRANSPOSE, S = FLOCK_TMAP_SPLIT3 };

static const tmap gpt2_block[] = {
    {"attn_norm.weight", "transformer.h.%d.ln_1.weight", 0, 0},
    {"attn_norm.bias", "transformer.h.%d.ln_1.bias", 0, 0},
    {"attn_q.weight", "transformer.h.%d.attn.c_attn.weight", T | S, 0},
    {"attn_k.weight", "transformer.h.%d.attn.c_attn.weight", T | S, 1},
    {"attn_v.weight", "transformer.h.%d.attn.c_attn.weight", T | S, 2},
    {"attn_q.bias", "transformer.h.%d.attn.c_attn.bias", S, 0},
    {"attn_k.bias", "transformer.h.%d.attn.c_attn.bias", S, 1},
    {"attn_v.bias", "transformer.h.%d.attn.c_attn.bias", S, 2},
    {"attn_output.weight", "transformer.h.%d.attn.c_proj.weight", T, 0},
    {"attn_output.bias", "transformer.h.%d.attn.c_proj.bias", 0, 0},
    {"ffn_norm.weight", "transformer.h.%d.ln_2.weight", 0, 0},
    {"ffn_norm.bias", "transformer.h.%d.ln_2.bias", 0, 0},
    {"ffn_up.weight", "transformer.h.%d.mlp.c_fc.weight", T, 0},
    {"ffn_up.bias", "transformer.h.%d.mlp.c_fc.bias", 0, 0},
    {"ffn_down.weight", "transformer.h.%d.mlp.c_proj.weight", T, 0},
    {"ffn_down.bias", "transformer.h.%d.mlp.c_proj.bias", 0, 0},
    {NULL, NULL, 0, 0},
};

static bool search(const tmap *t, const char *key, int layer, char *buf, size_t n, uint8_t *flags, uint8_t *part)
{
    for (; t && t->canon; t++) {
        if (strcmp(t->canon, key) != 0)
            continue;
        if (layer >= 0)
            snprintf(buf, n, t->hf, layer);
        else
            snprintf(buf, n, "%s", t->hf);
        *flags = t->flags;
        *part = t->part;
        return true;
    }
    return false;
}

bool flock_hf_name_for(const char *arch, const char *canon, char *buf, size_t n, uint8_t *flags, uint8_t *part)
{
    const tmap *global = NULL, *block[2] = {NULL, NULL};
    if (!strcmp(arch, "llama") || !strcmp(arch, "mistral") || !strcmp(arch, "qwen2") || !strcmp(arch, "gemma")) {
        global = llama_global;
        block[0] = llama_block;
        block[1] = llama_norms;
    } else if (!strcmp(arch, "gemma2") || !strcmp(arch, "gemma3")) {
        global = llama_global;
        block[0] = llama_block;
        block[1] = gemma2_norms;
    } else if (!strcmp(arch, "opt")) {
        global = opt_global;
        block[0] = opt_block;
    } else if (!strcmp(arch, "gpt2")) {
        global = gpt2_global;
        block[0] = gpt2_block;
    } else {
        return false;
    }
    if (strncmp(canon, "blk.", 4) == 0) {
        char *end;
        long layer = strtol(canon + 4, &end, 10);
        if (end == canon + 4 || *end != '.' || layer < 0 || layer > 100000)
            return false;
        return search(block[0], end + 1, (int)layer, buf, n, flags, part) ||
               search(block[1], end + 1, (int)layer, buf, n, flags, part);
    }
    return search(global, canon, -1, buf, n, flags, part);
}
