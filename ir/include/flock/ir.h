/*
 * flock/ir.h - flock's small typed graph IR for decoder-only transformers.
 *
 * A program is a straight-line list of ops over values. A value is an
 * activation of shape [T, width] (T = tokens in the current step: the prompt
 * length in prefill, 1 in decode); value 0 is always the input token ids
 * (I32, width 1). Weights are named tensors that the bundle holds.
 * Ops are at the level the runtime executes (a whole gated FF is one op: it
 * is where GRIFFIN selects experts).
 *
 * No I/O and no devices here: building, verifying, printing and
 * (de)serializing to bytes. The runtime links this library to read the
 * program section of a bundle.
 */
#ifndef FLOCK_IR_H
#define FLOCK_IR_H

#include "flock/base.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum flock_op_kind {
    FLOCK_OP_EMBED = 0,   /* in: tokens; w[0] table [vocab, d]; out[T,d] = table[tok] * scale */
    FLOCK_OP_POS_EMBED,   /* in: x; w[0] table [n_pos, d]; out = x + table[pos + offset] */
    FLOCK_OP_RMSNORM,     /* in: x; w[0] [group]; per group of `group` elements; unit_offset: (1+w) */
    FLOCK_OP_LAYERNORM,   /* in: x; w[0] weight, w[1] bias (optional); eps */
    FLOCK_OP_LINEAR,      /* in: x [T,in]; w[0] [out,in]; w[1] bias [out] (optional) */
    FLOCK_OP_ROPE,        /* in: x [T, n_head*head_dim]; rotates the first rope_dim of each head */
    FLOCK_OP_ATTENTION,   /* in: q, k, v; causal, GQA/MQA, window, softcap; KV cache slot `kv_slot` */
    FLOCK_OP_ADD,         /* in: a, b */
    FLOCK_OP_FFN,         /* in: x; the feed-forward block; GRIFFIN's site (see below) */
    FLOCK_OP_LM_HEAD,     /* in: x; w[0] [vocab, d]; logits of the last token(s); softcap */
    FLOCK_OP_COUNT
} flock_op_kind;

typedef enum flock_act {
    FLOCK_ACT_NONE = 0,
    FLOCK_ACT_SILU,
    FLOCK_ACT_GELU,      /* erf form */
    FLOCK_ACT_GELU_TANH, /* tanh approximation */
    FLOCK_ACT_RELU,
    FLOCK_ACT_COUNT
} flock_act;

typedef enum flock_rope_style {
    FLOCK_ROPE_NORMAL = 0, /* rotate pairs (2i, 2i+1): GGUF Llama (weights permuted by the converter) */
    FLOCK_ROPE_NEOX = 1,   /* rotate pairs (i, i + rope_dim/2): HF Llama, Qwen2, Gemma, GPT-NeoX */
    FLOCK_ROPE_STYLE_COUNT
} flock_rope_style;

typedef enum flock_rope_scaling {
    FLOCK_ROPE_SCALING_NONE = 0,
    FLOCK_ROPE_SCALING_LINEAR = 1, /* positions divided by rope_factor */
    FLOCK_ROPE_SCALING_LLAMA3 = 2, /* Llama 3.1 frequency-dependent scaling */
    FLOCK_ROPE_SCALING_COUNT
} flock_rope_scaling;

/* FFN weight layout.
 *  SEPARATE (as read from the model): gated: w[0] gate [d_ff,d], w[1] up [d_ff,d],
 *    w[2] down [d,d_ff]; plain: w[0] fc1 [d_ff,d], w[2] fc2 [d,d_ff], w[3] b1 [d_ff], w[4] b2 [d].
 *  PACKED (after the gather-layout pass; what the runtime executes): gated:
 *    w[0] gate_up [d_ff, 2*d] (row i = gate row i then up row i), w[2] down_t
 *    [d_ff, d] (row i = column i of down); plain: w[0] fc1 [d_ff, d], w[2]
 *    fc2_t [d_ff, d], w[3] b1, w[4] b2. So neuron i's weights are contiguous.
 *  In both layouts and both kinds: w[3] b1 [d_ff] and w[4] b2 [d] are optional
 *  biases; w[5] (optional) is the static magnitude ranking, I32 [d_ff]: neuron
 *  indices by descending score, ties to the lower index (the compiler's
 *  `blk.N.ffn_magnitude_rank`). */
typedef enum flock_ffn_layout {
    FLOCK_FFN_SEPARATE = 0,
    FLOCK_FFN_PACKED = 1,
    FLOCK_FFN_LAYOUT_COUNT
} flock_ffn_layout;

#define FLOCK_OP_MAX_IN 3
#define FLOCK_OP_MAX_W 6

/* One op. Attributes are a flat set of fields; each op kind uses some of
 * them (the printer prints only those). */
typedef struct flock_op {
    flock_op_kind kind;
    int32_t layer;                 /* block index, -1 outside blocks */
    int32_t n_in;
    int32_t in[FLOCK_OP_MAX_IN];   /* value ids */
    int32_t out;                   /* value id, defined by this op */
    int32_t w[FLOCK_OP_MAX_W];     /* tensor ids, -1 when absent */

    float eps;          /* norms */
    float scale;        /* EMBED: multiplier; ATTENTION: score scale (0 = 1/sqrt(head_dim)) */
    float softcap;      /* ATTENTION / LM_HEAD: c*tanh(x/c), 0 = none */
    int32_t group;      /* RMSNORM: elements per normalized group (width for a plain norm) */
    uint8_t unit_offset;/* RMSNORM: multiply by (1 + w) (Gemma) */

    int32_t n_head, n_kv_head, head_dim; /* ROPE, ATTENTION */
    int32_t rope_dim;                    /* ROPE: leading dims of each head rotated */
    flock_rope_style rope_style;
    double rope_theta;
    flock_rope_scaling rope_scaling;
    float rope_factor;                   /* scaling factor */
    float rope_low_freq_factor, rope_high_freq_factor; /* LLAMA3 */
    int32_t rope_orig_ctx;               /* LLAMA3: original context */

    int32_t window;     /* ATTENTION: sliding window in tokens, 0 = full: the query at
                         * position i sees keys j with i - window < j <= i */
    int32_t kv_slot;    /* ATTENTION: KV-cache slot (0..n_kv_slots-1) */

    int32_t d_ff;       /* FFN */
    flock_act act;      /* FFN */
    uint8_t gated;      /* FFN: 1 = act(x Wg^T) * (x Wu^T), 0 = act(x W1^T + b1) */
    flock_ffn_layout ffn_layout;
    int32_t pos_offset; /* POS_EMBED: OPT's offset of 2 */
} flock_op;

typedef struct flock_value {
    char name[48];
    flock_dtype dtype;  /* F32 for activations, I32 for token ids */
    int32_t width;      /* elements per token */
} flock_value;

typedef struct flock_tensor_ref {
    char name[96];      /* name of the tensor in the bundle */
    flock_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[4];  /* row-major */
} flock_tensor_ref;

/* Model-level facts the runtime needs before it walks the ops. */
typedef struct flock_model_config {
    char arch[32];       /* "llama", "gemma3", "opt", ... */
    int32_t n_layer;
    int32_t d_model;
    int32_t n_vocab;
    int32_t n_ctx;       /* trained context length */
    int32_t n_kv_slots;  /* attention ops (KV caches) */
    int32_t kv_width;    /* n_kv_head * head_dim, the largest over slots */
    int32_t d_ff;        /* largest FFN width */
} flock_model_config;

typedef struct flock_program {
    flock_model_config cfg;
    uint32_t n_values, cap_values;
    flock_value *values;
    uint32_t n_tensors, cap_tensors;
    flock_tensor_ref *tensors;
    uint32_t n_ops, cap_ops;
    flock_op *ops;
} flock_program;

/* A new empty program with value 0 = "tokens" (I32, width 1). */
flock_status flock_program_create(flock_program **out);
void flock_program_free(flock_program *p);

/* Builders; return the new id (>= 0) or -1 on allocation failure or a name
 * too long for the fixed field (47 / 95 bytes) or n_dims > 4. Values and
 * tensors are not checked here: flock_program_verify does that. */
int32_t flock_program_add_value(flock_program *p, const char *name, flock_dtype dtype, int32_t width);
int32_t flock_program_add_tensor(flock_program *p, const char *name, flock_dtype dtype, uint32_t n_dims,
                                 const uint64_t *shape);
/* Index of the tensor named `name`, or -1. */
int32_t flock_program_find_tensor(const flock_program *p, const char *name);
/* Returns a zero-initialized op (in[], out and w[] = -1) appended to the
 * program, or NULL. The pointer is valid until the next add_op. */
flock_op *flock_program_add_op(flock_program *p, flock_op_kind kind, int32_t layer);

/* Checks shapes, dtypes, that each value is defined once before use and that
 * every tensor id is valid; the message names the op ("op 12 (ffn, layer 3): ...").
 * Also: the config matches the ops (n_kv_slots = attention ops, each slot used
 * once; kv_width and d_ff are the largest over the ops), tensor names are
 * unique, and the program ends with LM_HEAD. Errors are FLOCK_E_CORRUPT. */
flock_status flock_program_verify(const flock_program *p, flock_error *err);

/* Textual form, stable for golden tests (flockc --emit-ir). */
flock_status flock_program_print(const flock_program *p, FILE *f);

/* Binary form for the bundle's program section ("FLIR", major 1, minor 0;
 * layout in ir/serialize.c and docs/bundle-format.md). serialize verifies
 * first and returns a malloc'd buffer (caller frees). deserialize reads
 * untrusted bytes: bounds-checked, enums range-checked, then verified;
 * FLOCK_E_VERSION for another major. */
flock_status flock_program_serialize(const flock_program *p, uint8_t **out, size_t *size, flock_error *err);
flock_status flock_program_deserialize(const void *data, size_t size, flock_program **out, flock_error *err);

const char *flock_op_kind_name(flock_op_kind k);
const char *flock_act_name(flock_act a);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_IR_H */
