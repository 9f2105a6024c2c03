/* Test helper for test_runtime.c: a tiny transformer built directly as a
 * flock_program (packed FF layout) with random weights, and a plain
 * double-precision reference forward pass over the unpacked weights,
 * written independently of the executor (one loop nest per formula). */
#ifndef FLOCK_TEST_RUNTIME_REF_H
#define FLOCK_TEST_RUNTIME_REF_H

#include "flock/ir.h"
#include "kernels.h"

#include <stdint.h>

typedef struct tiny_cfg {
    int n_layer, d, n_head, n_kv, hd, d_ff, vocab, rope_dim;
    flock_rope_style style;
    flock_rope_scaling scaling;
    float rope_factor;
    int window;
    float softcap, head_softcap;
    int opt;            /* 1: OPT-like (layernorm, biases, learned positions, plain FF) */
    flock_act act;
    float embed_scale;  /* 0 = none */
    flock_dtype wdtype; /* matrices stored as */
    uint64_t seed;
} tiny_cfg;

typedef struct tiny_layer {
    float *n1, *n1b, *n2, *n2b; /* [d] */
    float *wq, *wk, *wv, *wo;   /* [out, in] */
    float *bq, *bk, *bv, *bo;   /* [out] (opt) */
    float *wg, *wu;             /* gate, up (or fc1 in wg) [d_ff, d] */
    float *wd;                  /* down / fc2 [d, d_ff] */
    float *b1, *b2;             /* [d_ff], [d] (opt) */
} tiny_layer;

typedef struct tiny_model {
    tiny_cfg c;
    int n_pos;
    float *emb, *pos, *nf, *nfb, *head;
    tiny_layer *L;
    /* the program and its tensors (packed, stored as wdtype) */
    flock_program prog;
    flock_wmat *tensors;
    void **blobs;
    int n_blobs;
} tiny_model;

void tiny_model_init(tiny_model *m, const tiny_cfg *c);
void tiny_model_free(tiny_model *m);

/* Reference forward over ids[0..T-1] at positions 0..T-1. Tokens at
 * positions >= prompt_len use only the neurons kept[layer][0..k-1] in the
 * FF (kept = NULL: all). logits: [T, vocab]; z (optional): per layer the
 * FF activation [T, d_ff], as z[layer * T * d_ff + t * d_ff + i]. */
void tiny_ref_forward(const tiny_model *m, const int32_t *ids, int T, int prompt_len, int32_t *const *kept,
                      const int64_t *k, double *logits, double *z);

#endif
