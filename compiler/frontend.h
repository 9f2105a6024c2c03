/* Private: what frontends build (a program plus, for each of its tensors, a
 * plan saying how to produce the bytes from the source), the block builder
 * the families share, and the passes. */
#ifndef FLOCK_COMPILER_FRONTEND_H
#define FLOCK_COMPILER_FRONTEND_H

#include "flock/compiler.h"

typedef enum plan_kind {
    PLAN_COPY = 0,      /* src[0] as is */
    PLAN_PACK_GATE_UP,  /* [d_ff, 2d]: row i = src[0] row i, then src[1] row i */
    PLAN_TRANSPOSE,     /* src[0] [r, c] -> [c, r] */
    PLAN_RANK_GATED,    /* i32 [d_ff]: order of ||src[0]_i|| * ||src[1]_i||, descending */
    PLAN_RANK_PLAIN,    /* i32 [d_ff]: order of ||src[0]_i||, descending */
} plan_kind;

typedef struct tensor_plan {
    plan_kind kind;
    char src[2][96]; /* canonical source tensor names */
    bool raw;        /* COPY / PACK_GATE_UP of the source's own bytes (same storage type), not through f32 */
} tensor_plan;

/* A compiled model before it is written: the program and one plan per tensor. */
typedef struct cmodel {
    flock_program *p;
    tensor_plan *plans; /* parallel to p->tensors */
    uint32_t cap_plans;
    char model_name[128];
    int32_t n_head, n_kv_head, head_dim;
    double norm_eps, rope_theta;
    uint32_t n_dtype_fallback; /* matrices stored in another type: rows not whole blocks of the asked one */
    char fallback_note[256];   /* the first of them: "name (q4_k -> q4_1), ..." */
} cmodel;

/* Frontend state while building. */
typedef struct fe {
    const flock_source *src;
    cmodel *cm;
    flock_error *err;
    const char *family; /* for messages: "llama", "gemma", "opt" */
} fe;

/* Per-block description the families fill in (fe_block builds the ops). */
typedef struct fe_block_cfg {
    bool layernorm;         /* LayerNorm with biases (OPT, GPT-2); else RMSNorm */
    uint8_t unit_offset;    /* RMSNorm (1 + w) */
    float eps;
    int32_t n_head, n_kv_head, head_dim;
    bool qk_norm;           /* Gemma 3: RMSNorm over each head of q and k */
    bool post_norms;        /* Gemma 2/3: x = x + post_norm(f(pre_norm(x))) */
    bool rope;              /* false: learned positions (OPT, GPT-2) */
    int32_t rope_dim;
    flock_rope_style rope_style;
    double rope_theta;
    flock_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
    float attn_scale;       /* 0 = 1/sqrt(head_dim) */
    float attn_softcap;
    int32_t window;         /* 0 = full attention */
    bool gated;
    flock_act act;
    int32_t d_ff;
} fe_block_cfg;

/* Family entry points (frontend_*.c). */
flock_status flock_frontend_llama(fe *f);
flock_status flock_frontend_gemma(fe *f);
flock_status flock_frontend_opt(fe *f);

/* ---- helpers (frontend_common.c) ---- */

/* Integer / float hyper-parameter: required ones fail with a message naming
 * the family and the key; optional ones leave *out as the default. */
flock_status fe_int(fe *f, const char *name, bool required, int64_t *out);
flock_status fe_float(fe *f, const char *name, bool required, double *out);
/* Checks lo <= v <= hi with a message naming the parameter. */
flock_status fe_check_range(fe *f, const char *name, int64_t v, int64_t lo, int64_t hi);
/* Standard model shape: n_layer, d_model, n_head, n_kv_head (default n_head),
 * head_dim (default d/n_head, which must divide), d_ff (required when
 * d_ff_per_d is 0, else default d_ff_per_d * d), n_ctx (default 2048);
 * n_vocab from token_embd. */
typedef struct fe_shape {
    int64_t n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, n_ctx, n_vocab;
} fe_shape;
flock_status fe_read_shape(fe *f, fe_shape *s, int64_t d_ff_per_d);

/* Sets the config and the model-level manifest facts. */
flock_status fe_begin(fe *f, const fe_shape *s, double norm_eps, double rope_theta);
/* x = embed(tokens) * scale (+ position_embd[pos + pos_offset] when `positions`). */
flock_status fe_embed(fe *f, float scale, bool positions, int32_t pos_offset, int32_t *x);
/* One decoder block over residual *x. */
flock_status fe_block(fe *f, int32_t layer, const fe_block_cfg *b, int32_t *x);
/* Final norm and LM head (tied to token_embd when output.weight is absent). */
flock_status fe_head(fe *f, const fe_block_cfg *b, float final_softcap, int32_t x);

/* ---- passes (passes.c) ---- */

/* SEPARATE -> PACKED FF weights (ir.h): gate_up [d_ff, 2d], down_t [d_ff, d]. */
flock_status flock_pass_pack_ffn(cmodel *cm, flock_error *err);
/* Adds blk.N.ffn_magnitude_rank (i32 [d_ff]) to each FF op as w[5]. */
flock_status flock_pass_magnitude_rank(cmodel *cm, flock_error *err);
/* The storage type of every 2-D float tensor: o->dtype, or with
 * o->source_dtype the source's own (see flock_compile_opts); 1-D stay f32.
 * A quantized type needs rows of whole blocks: a tensor whose rows are not
 * (e.g. d_ff = 172 as columns) is stored f16 instead, and counted in
 * *n_fallback. */
flock_status flock_pass_storage_dtype(cmodel *cm, const flock_source *s, const flock_compile_opts *o,
                                      uint32_t *n_fallback, flock_error *err);

/* Adds a tensor with its plan; returns its id or -1 (NOMEM). */
int32_t cmodel_add_tensor(cmodel *cm, const char *name, flock_dtype dtype, uint32_t n_dims, const uint64_t *shape,
                          plan_kind kind, const char *src0, const char *src1);
void cmodel_free(cmodel *cm);

/* Produces tensor i's bytes in its program dtype (malloc'd, caller frees). */
flock_status cmodel_tensor_bytes(const cmodel *cm, const flock_source *s, uint32_t i, void **out, size_t *size,
                                 flock_error *err);

/* CPU kernel targets (cpu_kernels.c): whether `t` is one ("cpu",
 * "x86-64-v3", "x86-64-v4", "aarch64"), and whether this build can
 * generate for it (without LLVM only "cpu", which then gets no kernels). */
bool flock_compile_is_cpu_target(const char *t);
flock_status flock_compile_check_cpu_target(const char *t, flock_error *err);
/* Adds one "cpu:<name>" kernel section per CPU target of `o` (LLVM builds),
 * and describes what it did in stats->cpu_kernels. */
flock_status flock_compile_cpu_kernels(const cmodel *cm, const flock_compile_opts *o, flock_bundle_writer *w,
                                       flock_compile_stats *stats, flock_error *err);

#endif
