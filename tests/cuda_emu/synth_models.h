/* Tests: the synthetic models (compiler_models.h: random weights, d 16,
 * 4 heads) that test_cuda_backend runs through the CUDA backend, and how
 * they are compiled. gen_emu generates their emulated kernels at build time
 * from the same compile, so the emulated kernels are flockc's for them. */
#ifndef FLOCK_TESTS_SYNTH_MODELS_H
#define FLOCK_TESTS_SYNTH_MODELS_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the other families' writers */
#include "compiler_models.h"
#pragma GCC diagnostic pop

#include "flock/codegen.h"
#include "flock/compiler.h"

typedef struct synth_model {
    const char *name;                        /* "gemma3", "opt" */
    void (*write)(const char *dir, hfw *w);  /* the HF folder */
    flock_dtype dtype;                       /* --dtype */
} synth_model;

/* Gemma 3: QK-norm, (1 + w) norms, sliding window 8 on every other layer,
 * local/global RoPE, GELU-tanh gated FF, embedding scale, bf16 weights.
 * OPT: LayerNorm with bias, learned positions (offset 2), biases, plain
 * ReLU FF, f16 weights. */
static const synth_model synth_models[] = {
    {"gemma3", write_gemma3, FLOCK_DTYPE_BF16},
    {"opt", write_opt, FLOCK_DTYPE_F16},
};

/* flockc --keep 0.5 --dtype <dtype> --level 0 for synthetic model sm. */
static inline flock_compile_opts synth_opts(const synth_model *sm)
{
    flock_compile_opts o = flock_compile_default_opts();
    o.keep[0] = 0.5;
    o.n_keep = 1;
    o.dtype = sm->dtype;
    o.level = 0;
    o.threads = 1;
    return o;
}

/* The CUDA model flockc's sections get (compiler/cuda_sections.c): the --keep
 * ratio, then 1.0; an f16 KV cache. */
static inline flock_status synth_cuda_model(const flock_program *p, flock_codegen_model *m, flock_error *err)
{
    const float keep[2] = {0.5f, 1.0f};
    return flock_codegen_model_from_program(p, keep, 2, FLOCK_DTYPE_F16, m, err);
}

#endif
