/*
 * flock/compiler.h - from a model (GGUF file or Hugging Face folder) to a
 * .flock bundle: a model-source abstraction, architecture frontends that
 * build IR, passes, and the bundle emitter behind `flockc`.
 *
 * Pipeline: flock_source_open -> flock_compile_program (frontend + passes:
 * packed FF layout, magnitude ranking, storage dtype) -> flock_compile_bundle
 * (manifest, tensors, tokenizer section, program section, kernel sections).
 *
 * CUDA targets (sm_80, sm_86, sm_89, sm_90; need FLOCK_CUDA and --dtype
 * f16/bf16): one FLOCK_SECTION_KERNELS section "cuda:sm_XY" per target
 * holding the kernel blob (CUBIN; layout in flock/formats.h) that codegen
 * generated for this model, its keep ratios (plus 1.0: a dense FF) and an
 * f16 KV cache, and one "cuda:compute_80" section (PTX, for GPUs newer than
 * the CUBINs) whenever any sm target is given.
 *
 * Supported architectures (flock_source_arch):
 *   llama   (GGUF "llama"; HF "llama": Llama 2/3, SmolLM, TinyLlama), mistral
 *   (HF; GGUF mistral models say "llama"), qwen2 (QKV bias), gemma, gemma2,
 *   gemma3 (HF "gemma3_text"), opt, gpt2.
 *
 * Canonical hyper-parameter names (flock_source_hparam_*), each looked up
 * under the format's own key ("llama.block_count" / "num_hidden_layers"):
 *   n_layer, d_model, d_ff, n_head, n_kv_head, head_dim, n_ctx, n_vocab,
 *   norm_eps (RMS or LayerNorm epsilon), rope_theta, rope_dim,
 *   rope_local_theta, sliding_window, sliding_window_pattern, attn_softcap,
 *   final_softcap, query_pre_attn_scalar, rope_scaling_type (string),
 *   rope_scaling_factor, rope_low_freq_factor, rope_high_freq_factor,
 *   rope_orig_ctx, act (string), tie_embeddings (int 0/1), model_name (string).
 *
 * Canonical source tensor names are llama.cpp's GGUF names
 * ("blk.3.ffn_gate.weight"); for HF folders they map per architecture
 * ("model.layers.3.mlp.gate_proj.weight"), with GPT-2's fused c_attn split
 * and its Conv1D weights transposed, so every 2-D tensor is [out, in].
 *
 * Bundle tensor names (what the IR refers to; matrices [out, in] row-major):
 *   token_embd [vocab, d], position_embd [n_pos, d] (OPT, GPT-2),
 *   blk.N.attn_norm [d] (+ blk.N.attn_norm_bias for LayerNorm),
 *   blk.N.attn_q / attn_k / attn_v [heads*head_dim, d] (+ _bias),
 *   blk.N.attn_q_norm / attn_k_norm [head_dim] (Gemma 3 QK-norm),
 *   blk.N.attn_output [d, n_head*head_dim] (+ _bias),
 *   blk.N.post_attention_norm [d], blk.N.post_ffw_norm [d] (Gemma 2/3),
 *   blk.N.ffn_norm [d] (+ _bias),
 *   blk.N.ffn_gate_up [d_ff, 2d] (gated) or blk.N.ffn_up [d_ff, d] (plain),
 *   blk.N.ffn_up_bias [d_ff], blk.N.ffn_down_t [d_ff, d], blk.N.ffn_down_bias [d],
 *   blk.N.ffn_magnitude_rank i32 [d_ff] (neurons by descending
 *   ||Wg_i||*||Wu_i|| (gated) or ||W1_i|| (plain), ties to the lower index),
 *   output_norm [d] (+ output_norm_bias), output [vocab, d] (absent when tied:
 *   the lm_head op then refers to token_embd).
 *   2-D matrices are stored in the storage dtype; 1-D tensors stay f32.
 *
 * Manifest keys (flock_compile_bundle), plain names:
 *   arch (str: canonical architecture), model_name (str),
 *   n_layer, d_model, n_vocab, n_ctx, d_ff, n_head, n_kv_head, head_dim (int),
 *   norm_eps, rope_theta (float; rope_theta is the global/base one),
 *   keep_ratios (float array, each in (0, 1]),
 *   storage_dtype (str: "f32", "f16" or "bf16"),
 *   compiler_version (str, FLOCK_COMPILER_VERSION),
 *   source_kind (str: "gguf" or "hf"),
 *   source_hash (str, 16 lowercase hex digits: xxh64 of the GGUF file, or of
 *     the HF folder's config.json, tokenizer.json and
 *     tokenizer_config.json (when present), then its *.safetensors files in name order),
 *   targets (str array, e.g. ["cpu", "x86-64-v3", "sm_90"]; with LLVM, each CPU
 *     target gets a kernel section "cpu:<canonical name>": docs/cpu-codegen.md),
 *   bos_id, eos_id, eot_id, pad_id, unk_id (int, -1 when absent),
 *   add_bos (int 0/1).
 */
#ifndef FLOCK_COMPILER_H
#define FLOCK_COMPILER_H

#include "flock/formats.h"
#include "flock/ir.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLOCK_COMPILER_VERSION "0.1.0"

/* ======================================================================== */
/* Model sources                                                            */
/* ======================================================================== */

typedef enum flock_source_kind {
    FLOCK_SOURCE_GGUF = 0,
    FLOCK_SOURCE_HF = 1,
    FLOCK_SOURCE_KIND_COUNT
} flock_source_kind;

typedef struct flock_source flock_source;

/* Opens `path`: a directory is a Hugging Face folder, a file a GGUF file. */
flock_status flock_source_open(const char *path, flock_source **out, flock_error *err);
void flock_source_free(flock_source *s);

flock_source_kind flock_source_kind_of(const flock_source *s);
/* Canonical architecture name (see above), or the raw name from the file
 * when flock does not know it. Owned by the source. */
const char *flock_source_arch(const flock_source *s);
/* The underlying reader (NULL for the other kind), e.g. for the tokenizer. */
const flock_gguf *flock_source_gguf(const flock_source *s);
const flock_hf_model *flock_source_hf(const flock_source *s);

/* Hyper-parameters by canonical name. FLOCK_E_NOT_FOUND when the model does
 * not set it (frontends apply their documented defaults), FLOCK_E_TYPE when
 * it holds another type; the message names the format's key. */
flock_status flock_source_hparam_int(const flock_source *s, const char *name, int64_t *out, flock_error *err);
flock_status flock_source_hparam_float(const flock_source *s, const char *name, double *out, flock_error *err);
/* The string is owned by the source (valid until it is freed). */
flock_status flock_source_hparam_str(const flock_source *s, const char *name, const char **out, flock_error *err);

/* Tensors by canonical name ("blk.0.attn_q.weight"). Shapes are row-major
 * ([out, in] for matrices). */
bool flock_source_has_tensor(const flock_source *s, const char *name);
flock_status flock_source_tensor_shape(const flock_source *s, const char *name, uint32_t *n_dims,
                                       uint64_t shape[4], flock_error *err);
/* Dequantizes/converts the tensor to f32 in a malloc'd buffer of *n floats
 * (caller frees). */
flock_status flock_source_tensor_f32(const flock_source *s, const char *name, float **out, size_t *n,
                                     flock_error *err);
/* The storage type the tensor has in the source, as a flock dtype: a
 * GGUF's f32/f16/bf16/q8_0/q4_0/q4_1/q5_0/q4_k/q6_k, or a safetensors
 * file's float type; FLOCK_E_UNSUPPORTED (naming the type) for one flock
 * does not store, such as q5_1 or q3_k. */
flock_status flock_source_tensor_dtype(const flock_source *s, const char *name, flock_dtype *out,
                                       flock_error *err);
/* The tensor's bytes exactly as the source stores them (GGUF only; they
 * point into the mapped file and live as long as s), in the layout of
 * flock_source_tensor_dtype: rows of shape[n_dims - 1] elements. */
flock_status flock_source_tensor_raw(const flock_source *s, const char *name, const void **data, size_t *size,
                                     flock_error *err);
/* Whether s is a GGUF with quantized matrices (a block type, not f32, f16
 * or bf16): what --dtype auto keeps as source types. */
bool flock_source_is_quantized(const flock_source *s);
/* xxh64 of the source bytes (see "source.hash" above). */
flock_status flock_source_hash(const flock_source *s, uint64_t *out, flock_error *err);

/* ======================================================================== */
/* Compiling                                                                */
/* ======================================================================== */

#define FLOCK_MAX_KEEP 16
#define FLOCK_MAX_TARGETS 8

typedef struct flock_compile_opts {
    double keep[FLOCK_MAX_KEEP]; /* GRIFFIN keep ratios, each in (0, 1] */
    size_t n_keep;
    flock_dtype dtype;           /* storage dtype of the big matrices: f32, f16, bf16, q8_0, q4_0, q4_1 */
    /* Keep each matrix's source storage type (--dtype source): a GGUF's
     * quantized blocks are stored byte for byte; gate and up rows are packed
     * as they are; what cannot keep its type (down_t, which is transposed;
     * a type flock does not store) becomes down_dtype. dtype is then unused. */
    bool source_dtype;
    /* Choose for the source (flockc's default, --dtype auto): source types
     * for a GGUF with quantized matrices (flock_source_is_quantized), dtype
     * for float weights. Overrides source_dtype; resolved by the compile
     * functions, and recorded in the manifest as what it resolved to. */
    bool auto_dtype;
    flock_dtype down_dtype;      /* with source_dtype and quantized sources: default q8_0 */
    char targets[FLOCK_MAX_TARGETS][16]; /* "cpu", "x86-64-v3", "x86-64-v4", "aarch64", "sm_80", ... */
    size_t n_targets;
    int level;                   /* zstd level for the tensor data; 0 = stored (mmap-able) */
    int threads;                 /* compression threads; 0 = all cores */
    /* Called before (done = 0) and after (done = 1) each tensor is written;
     * `bytes` is the raw size in the bundle. May be NULL. */
    void (*progress)(void *user, const char *tensor, size_t index, size_t count, uint64_t bytes, int done);
    void *progress_user;
    /* Called before (done = 0) and after (done = 1) each kernel section is
     * generated (`section` e.g. "cuda:sm_80"; NVRTC takes seconds), with
     * its index among `count` sections and, when done, its size in bytes.
     * Gets progress_user. May be NULL. */
    void (*kernel_progress)(void *user, const char *section, size_t index, size_t count, uint64_t bytes,
                            int done);
} flock_compile_opts;

/* keep = {0.25, 0.5, 0.75}, dtype f16, targets {"cpu"}, level 3. */
flock_compile_opts flock_compile_default_opts(void);

/* Parses "0.25,0.5" / "f16" / "cpu,sm_90" into `o`; the message names the bad item.
 * CPU targets other than "cpu" need a flockc built with LLVM (else an error
 * saying so). */
flock_status flock_compile_parse_keep(flock_compile_opts *o, const char *list, flock_error *err);
flock_status flock_compile_parse_targets(flock_compile_opts *o, const char *list, flock_error *err);

/* *o with auto_dtype resolved for s: source_dtype set as it says, and
 * auto_dtype cleared. The compile functions do this themselves; a caller
 * that also calls flock_compile_cuda_source (which sees no source) or shows
 * the storage type resolves first. o NULL: the default options. */
flock_compile_opts flock_compile_resolve_opts(const flock_source *s, const flock_compile_opts *o);

/* Runs the frontend for the source's architecture and the passes; the
 * result verifies. Tensor refs name bundle tensors (see above). */
flock_status flock_compile_program(const flock_source *s, const flock_compile_opts *o, flock_program **out,
                                   flock_error *err);

/* Whether this build can generate CUDA kernel sections (FLOCK_CUDA: NVRTC). */
bool flock_compile_cuda_available(void);

/* The CUDA C source that the "cuda:*" kernel sections of `p` (a program
 * flock_compile_program built with `o`) are compiled from: what
 * `flockc --emit-cuda` prints. Needs o->dtype f16 or bf16. *src is
 * malloc'd and NUL-terminated (caller frees); *len excludes the NUL. Works
 * without FLOCK_CUDA (only compiling needs NVRTC). */
flock_status flock_compile_cuda_source(const flock_program *p, const flock_compile_opts *o, char **src,
                                       size_t *len, flock_error *err);

typedef struct flock_compile_stats {
    uint64_t source_bytes;  /* size of the source file(s) */
    uint64_t bundle_bytes;  /* size of the written bundle */
    uint64_t tensor_bytes;  /* raw tensor bytes in the bundle */
    size_t n_tensors;
    size_t n_cpu_kernel_sections; /* "cpu:<target>" kernel sections written */
    char cpu_kernels[256];  /* what was generated, or why nothing ("" without CPU targets) */
    /* Matrices whose rows are not whole blocks of the asked type, stored in
     * another (docs/bundle-format.md, "Quantized tensors"), and the first of
     * them by name: "blk.0.attn_q (q4_k -> q4_1), ..." ("" when none). */
    uint32_t n_dtype_fallback;
    char dtype_fallback[256];
} flock_compile_stats;

/* Compiles `s` into the bundle at `out_path`, with the generated CPU kernels
 * of each CPU target (LLVM builds; "cpu" = this host's CPU, so the bundle
 * then depends on the compiling machine's CPU model). Deterministic: the
 * same source, options and compiling CPU give byte-identical files.
 * `stats` may be NULL. */
flock_status flock_compile_bundle(const flock_source *s, const flock_compile_opts *o, const char *out_path,
                                  flock_compile_stats *stats, flock_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_COMPILER_H */
