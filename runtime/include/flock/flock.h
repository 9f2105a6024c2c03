/*
 * flock/flock.h - the flock runtime: load a compiled .flock bundle and
 * generate text with GRIFFIN's per-prompt FF expert selection, on the CPU or a CUDA GPU.
 *
 * Typical use:
 *   flock_model *m;   flock_model_open("m.flock", NULL, &m, &err);
 *   flock_session *s; flock_session_create(m, &opts, &s, &err);
 *   flock_tokenize(m, text, len, true, ids, cap, &n, &err);
 *   flock_session_prefill(s, ids, n);   // full FF; selects each layer's experts
 *   loop: tok = flock_sampler_sample(smp, flock_session_last_logits(s), hist, n_hist);
 *         flock_session_decode(s, &tok, 1);  // only the selected experts
 *   (or flock_generate, which does all of this and streams the text)
 *
 * Conventions: opaque handles with create/free pairs, *_free(NULL) is a
 * no-op, on failure `*out` is untouched. Constructors report errors through
 * a flock_error; functions on a session return a flock_status and keep the
 * message on the session (flock_session_error).
 *
 * Devices: the CPU, or a CUDA GPU (compute capability 8.0+) through the
 * kernels flockc generated into the bundle (flockc --target sm_XY).
 * flock_cuda_probe() reports whether a CUDA driver and GPU are present
 * (libcuda is loaded with dlopen at run time, never linked). A session asked
 * for FLOCK_DEVICE_CUDA fails at create without a device or without kernels
 * for it in the bundle; FLOCK_DEVICE_AUTO takes the GPU when both are there,
 * else the CPU, and says why (flock_session_device_note). Prefill, decode, sampling
 * and flock_generate allocate nothing: every buffer is sized from the
 * program at flock_session_create / flock_sampler_create. Results are the
 * same (bitwise) for any thread count.
 */
#ifndef FLOCK_FLOCK_H
#define FLOCK_FLOCK_H

#include "flock/status.h"
#include "flock/version.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version ------------------------------------------------------------ */

/* The version of the library loaded ("0.1.0"; a static string). Compare
 * with FLOCK_VERSION_STRING (the headers') to detect a program built against
 * other headers than the library it runs with. Thread-safe. */
FLOCK_API const char *flock_version(void);
/* MAJOR * 10000 + MINOR * 100 + PATCH of the library loaded (FLOCK_VERSION_NUMBER
 * is the headers'). Thread-safe. */
FLOCK_API int flock_version_number(void);

/* ---- model ------------------------------------------------------------ */

typedef struct flock_model flock_model;

typedef struct flock_model_opts {
    int load_threads; /* threads used to decompress tensors; 0 = all cores */
} flock_model_opts;

/* Opens a bundle: reads its program and tokenizer, and makes every weight
 * available (in place in the mapping when the bundle is uncompressed, else
 * decompressed into 64-byte aligned memory). `opts` may be NULL. */
FLOCK_API flock_status flock_model_open(const char *path, const flock_model_opts *opts, flock_model **out,
                              flock_error *err);
FLOCK_API void flock_model_free(flock_model *m);

FLOCK_API int32_t flock_model_n_vocab(const flock_model *m);
FLOCK_API int32_t flock_model_n_layer(const flock_model *m);
FLOCK_API int32_t flock_model_n_ctx(const flock_model *m);   /* trained context length */
FLOCK_API const char *flock_model_arch(const flock_model *m);
/* How the bundle stores its weight matrices: "f16", "q4_1", ... or "source"
 * (each matrix as the source model had it; flock inspect lists them), from
 * the manifest's storage_dtype; "?" when it has none. */
FLOCK_API const char *flock_model_storage(const flock_model *m);
/* Bytes of weight data the model holds (all tensors, as stored in memory). */
FLOCK_API uint64_t flock_model_weight_bytes(const flock_model *m);
/* Keep ratios the bundle was compiled for (manifest "keep_ratios"); *n = 0
 * when the bundle names none, in which case any keep in (0, 1] is allowed. */
FLOCK_API const double *flock_model_keep_ratios(const flock_model *m, size_t *n);
/* The generated CPU kernels in use: the bundle's kernel sections
 * "cpu:<target>" are tried in order at open and the first one this CPU can
 * run is kept. Returns its target ("x86-64-v3", "host-icelake-client"), or
 * NULL when none loaded; then *why (when not NULL) says why (no section,
 * another architecture, a missing CPU feature, a corrupt section), and
 * sessions use the portable kernels. *why is "" when one loaded. Owned by
 * the model. */
FLOCK_API const char *flock_model_cpu_kernels(const flock_model *m, const char **why);
/* Special tokens: -1 when the model has none. */
FLOCK_API int32_t flock_model_bos(const flock_model *m);
FLOCK_API int32_t flock_model_eos(const flock_model *m);
FLOCK_API int32_t flock_model_eot(const flock_model *m); /* end of turn (chat), or -1 */
/* Whether generation ends at `id` (EOS, end of turn). */
FLOCK_API bool flock_model_is_eog(const flock_model *m, int32_t id);
/* The model's chat template (Jinja source), or NULL. */
FLOCK_API const char *flock_model_chat_template(const flock_model *m);

/* One chat message: role "system", "user" or "assistant". */
typedef struct flock_chat_message {
    const char *role;
    const char *content;
} flock_chat_message;

/* Formats a conversation with the model's chat template (ChatML, Gemma or
 * Llama 3 turns, recognized from the template). With add_generation_prompt
 * the text ends with the assistant's turn header. *out is malloc'd (caller
 * frees). Tokenize the result with flock_tokenize (markers become their
 * control tokens). */
FLOCK_API flock_status flock_chat_format(const flock_model *m, const flock_chat_message *msgs, size_t n,
                               bool add_generation_prompt, char **out, flock_error *err);

/* ---- tokenizer ---------------------------------------------------------- */

/* Encodes UTF-8 text; `add_special` adds BOS/EOS as the model asks;
 * control tokens spelled in the text (chat markers) become their ids.
 * Writes up to `cap` ids and sets *n to the count needed; FLOCK_E_RANGE
 * when cap is too small (*n still says how many are needed). */
FLOCK_API flock_status flock_tokenize(const flock_model *m, const char *text, size_t len, bool add_special,
                            int32_t *ids, size_t cap, size_t *n, flock_error *err);
/* Decodes token ids to UTF-8 text (control tokens omitted; SentencePiece's
 * leading space dropped; invalid UTF-8 as U+FFFD). *out is malloc'd and
 * NUL-terminated (caller frees). */
FLOCK_API flock_status flock_detokenize(const flock_model *m, const int32_t *ids, size_t n, char **out, flock_error *err);
/* The bytes of one token as text (control tokens give ""); the string is
 * owned by the model. A piece may end inside a multi-byte character
 * (byte-level BPE, byte fallback): concatenate the bytes; flock_generate
 * streams only complete characters. *len = byte count. */
FLOCK_API const char *flock_token_piece(const flock_model *m, int32_t id, size_t *len);

/* ---- devices ------------------------------------------------------------ */

typedef enum flock_device {
    FLOCK_DEVICE_AUTO = 0, /* a GPU when one is present and this runtime can use it, else the CPU */
    FLOCK_DEVICE_CPU = 1,
    FLOCK_DEVICE_CUDA = 2,
    FLOCK_DEVICE_COUNT
} flock_device;

/* "auto", "cpu", "cuda" <-> device. */
FLOCK_API const char *flock_device_name(flock_device d);
FLOCK_API flock_status flock_device_parse(const char *s, flock_device *out);

/* What the CUDA driver reports (flock_cuda_probe). */
typedef struct flock_cuda_info {
    bool driver;            /* libcuda.so.1 loaded and cuInit(0) succeeded */
    int driver_version;     /* cuDriverGetVersion, e.g. 12040 = 12.4; 0 without a driver */
    int n_devices;          /* cuDeviceGetCount; 0 without a driver */
    int cc_major, cc_minor; /* compute capability of device 0 (9, 0 = sm_90); 0 without a device */
    char name[128];         /* device 0's name; "" without a device */
    uint64_t total_mem;     /* device 0's memory in bytes; 0 without a device */
    char reason[256];       /* without a device: why ("libcuda.so.1: cannot open shared object file ...",
                               "cuInit: CUDA_ERROR_NO_DEVICE (100)"); "" when there is one */
} flock_cuda_info;

/* Probes for a CUDA driver and device without linking libcuda: dlopen of
 * libcuda.so.1 (or the library named by $FLOCK_CUDA_LIBRARY), cuInit,
 * then device 0's compute capability, name and memory. Creates no CUDA
 * context. Never fails: a host without a driver or GPU is reported in
 * out->reason. Returns true when a device is present. */
FLOCK_API bool flock_cuda_probe(flock_cuda_info *out);

/* The device a session asked for `want` runs on, judged from the probe
 * alone: *got (never AUTO) and a note saying why, written to note[note_n]
 * ("cpu: asked for", "auto: cuda (CUDA device 0 ...)", "auto: cpu (no GPU:
 * ...)"). CPU: no probe. CUDA: FLOCK_E_UNSUPPORTED when the probe finds no
 * device of compute capability 8.0+ (the message holds the probe's result).
 * AUTO: probes (once per process); CUDA when such a device is present.
 * flock_session_create calls this, then checks the bundle's kernels (AUTO
 * falls back to the CPU when it has none for the device); a tool may call
 * it first to fail before loading a model. */
FLOCK_API flock_status flock_device_resolve(flock_device want, flock_device *got, char *note, size_t note_n,
                                  flock_error *err);

/* ---- session ------------------------------------------------------------ */

typedef enum flock_select_mode {
    FLOCK_SELECT_GRIFFIN = 0,   /* per prompt, from the FF activations (the paper) */
    FLOCK_SELECT_MAGNITUDE = 1, /* static ranking tensor blk.N.ffn_magnitude_rank */
    FLOCK_SELECT_RANDOM = 2,    /* k neurons drawn with the session seed */
    FLOCK_SELECT_COUNT
} flock_select_mode;

/* "griffin", "magnitude", "random" <-> mode. */
FLOCK_API const char *flock_select_mode_name(flock_select_mode m);
FLOCK_API flock_status flock_select_mode_parse(const char *s, flock_select_mode *out);

/* Which kernels a session's decode runs (flock_session_kernels says which
 * it got). */
typedef enum flock_kernel_choice {
    FLOCK_KERNELS_AUTO = 0,      /* FLOCK_KERNELS=generated|portable|avx2|scalar in the environment
                                    decides; unset: generated for f32 bundles, built-in for f16
                                    and bf16, as measured (docs/cpu-codegen.md, "Figures") */
    FLOCK_KERNELS_GENERATED = 1, /* the bundle's generated kernels when they loaded, else portable */
    FLOCK_KERNELS_PORTABLE = 2,  /* the runtime's own (AVX-512 VNNI, AVX2 or scalar) kernels only */
    FLOCK_KERNELS_CHOICE_COUNT
} flock_kernel_choice;

/* "auto", "generated", "portable" <-> choice. */
FLOCK_API const char *flock_kernel_choice_name(flock_kernel_choice k);
FLOCK_API flock_status flock_kernel_choice_parse(const char *s, flock_kernel_choice *out);

typedef struct flock_session_opts {
    double keep;              /* fraction of FF neurons kept in generation, (0, 1]; default 1 */
    int32_t n_ctx;            /* context length in tokens; 0 = min(trained, 4096) */
    int threads;              /* 0 = all cores */
    uint64_t seed;            /* random selection mode */
    flock_select_mode select; /* default GRIFFIN */
    bool all_logits;          /* keep the logits of every position, not only the last */
    flock_device device;      /* default AUTO; CUDA fails without a GPU or without kernels for it */
    flock_kernel_choice kernels; /* default AUTO */
} flock_session_opts;

FLOCK_API flock_session_opts flock_session_default_opts(void);

typedef struct flock_session flock_session;

/* A session: KV cache, activations, selected experts. Allocates all
 * buffers now. `opts` may be NULL (defaults). The keep ratio must be one the
 * bundle was compiled for, or 1.0. */
FLOCK_API flock_status flock_session_create(flock_model *m, const flock_session_opts *opts, flock_session **out,
                                  flock_error *err);
FLOCK_API void flock_session_free(flock_session *s);
/* The message of the last failure on this session ("" when none). */
FLOCK_API const char *flock_session_error(const flock_session *s);

/* Runs the prompt with the full FF, accumulating GRIFFIN's statistic, and
 * then selects each layer's experts (for the session's mode). Can be called
 * on a fresh or reset session only. n_tokens > n_ctx is FLOCK_E_RANGE. */
FLOCK_API flock_status flock_session_prefill(flock_session *s, const int32_t *ids, size_t n);
/* Appends tokens that run with the selected experts only (generation; or
 * the rest of a sequence after a prompt, as in the paper's classification
 * setting). Before any prefill, no experts are selected: FLOCK_E_INVALID_ARG. */
FLOCK_API flock_status flock_session_decode(flock_session *s, const int32_t *ids, size_t n);
/* One decode step of n sequences: appends ids[i] to sessions s[i] (each
 * once in the list, each with experts selected, all on the same model),
 * every session's logits and cache bit for bit what
 * flock_session_decode(s[i], &ids[i], 1) gives it. On the CPU, sessions
 * with the same thread count run the step together, reading each weight
 * from memory once for all of them (docs/runtime.md, "Serving"); elsewhere
 * one after another. Every session is checked before any token runs: on
 * FLOCK_E_INVALID_ARG or FLOCK_E_RANGE none has advanced, and each session
 * at fault carries the message (flock_session_error). */
FLOCK_API flock_status flock_session_decode_batch(flock_session *const *s, const int32_t *ids, size_t n);
/* Forgets the context and the selection. */
FLOCK_API void flock_session_reset(flock_session *s);

/* Tokens in the context so far, and the context length. */
FLOCK_API size_t flock_session_n_past(const flock_session *s);
FLOCK_API size_t flock_session_n_ctx(const flock_session *s);

/* Logits of the last token, [n_vocab]. With all_logits, *n_pos (if not
 * NULL) is set to n_past and the return value points at [n_past, n_vocab]
 * (row p = the logits after token p); otherwise *n_pos = 1. Owned by the
 * session, valid until the next call that runs the model. */
FLOCK_API const float *flock_session_logits(const flock_session *s, size_t *n_pos);
/* Pointer to the last token's logits row. */
FLOCK_API const float *flock_session_last_logits(const flock_session *s);

/* Number of FF layers, and the experts (sorted neuron indices) selected for
 * FF layer `i` (in program order). FLOCK_E_INVALID_ARG before a prefill. */
FLOCK_API size_t flock_session_n_ffn(const flock_session *s);
FLOCK_API flock_status flock_session_experts(const flock_session *s, size_t i, int32_t *layer,
                                   const int32_t **idx, size_t *k);

/* Bytes of weights read per generated token with the current selection
 * (matrices of every op, counting only the kept FF rows). */
FLOCK_API uint64_t flock_session_decode_bytes(const flock_session *s);
/* Bytes the KV cache holds for n_tokens tokens (K and V of every attention
 * layer, in the backend's cache type); 0 for s NULL. */
FLOCK_API uint64_t flock_session_kv_bytes(const flock_session *s, size_t n_tokens);
/* The device the session runs on (never AUTO: what AUTO resolved to), and
 * a note on why ("cpu: asked for", "auto: no CUDA driver (...)", ...);
 * owned by the session. */
FLOCK_API flock_device flock_session_device(const flock_session *s);
FLOCK_API const char *flock_session_device_note(const flock_session *s);
/* The kernel set in use: on a GPU the bundle's section ("cuda:sm_90",
 * "cuda:compute_80"); on the CPU "llvm:<target>" when decode runs the
 * bundle's generated kernels (gather FF, matrix-vector products; the other
 * ops use the built-in table), else the built-in table ("avx512vnni",
 * "avx2" or "scalar"); and the thread count (CPU). */
FLOCK_API const char *flock_session_kernels(const flock_session *s);
FLOCK_API int flock_session_threads(const flock_session *s);

/* ---- sampler ------------------------------------------------------------ */

typedef struct flock_sampler_opts {
    float temperature;    /* 0 = greedy (argmax, lowest id on ties) */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off: drop tokens with p < min_p * p_max */
    float repeat_penalty; /* 1 = off: logits of recent tokens: >0 divided, <0 multiplied */
    int32_t repeat_last_n;/* tokens of history the penalty looks at; default 64 */
    uint64_t seed;
} flock_sampler_opts;

FLOCK_API flock_sampler_opts flock_sampler_default_opts(void);

typedef struct flock_sampler flock_sampler;

/* A sampler for a vocabulary of n_vocab tokens (scratch allocated here). */
FLOCK_API flock_status flock_sampler_create(const flock_sampler_opts *opts, int32_t n_vocab, flock_sampler **out,
                                  flock_error *err);
FLOCK_API void flock_sampler_free(flock_sampler *s);
/* Picks the next token from logits[n_vocab] (not modified), given the
 * `history` of tokens so far (for the repetition penalty). Order: penalty,
 * temperature, top-k, softmax, top-p, min-p, draw. No allocation. */
FLOCK_API int32_t flock_sampler_sample(flock_sampler *s, const float *logits, const int32_t *history,
                             size_t n_history);

/* ---- generation ---------------------------------------------------------- */

/* Called with each piece of generated text; return false to stop. */
typedef bool (*flock_text_fn)(void *user, const char *text, size_t len);

typedef struct flock_gen_stats {
    size_t prompt_tokens, generated_tokens;
    double prefill_s, decode_s;
    bool stopped_eos, stopped_string;
    /* The generated ids [generated_tokens] (EOS not included), owned by the
     * session: valid until its next call. */
    const int32_t *tokens;
} flock_gen_stats;

/* Prefills `prompt` (already tokenized), then generates up to max_tokens
 * tokens, streaming their text through `fn`; stops at EOS / end-of-turn or
 * when the text ends with one of `stops` (the stop string is not emitted).
 * The session must be fresh or reset. */
FLOCK_API flock_status flock_generate(flock_session *s, flock_sampler *smp, const int32_t *prompt, size_t n_prompt,
                            size_t max_tokens, const char *const *stops, size_t n_stops,
                            flock_text_fn fn, void *user, flock_gen_stats *stats);

/* ---- generation, a token at a time --------------------------------------- */

/* The same loop as flock_generate, driven by the caller: a server steps many
 * sessions in turn, or decodes their tokens together. Each call of
 * flock_gen_next samples a token and returns the text it completes; the
 * caller then decodes that token (flock_session_decode) before the next
 * call. The output is exactly flock_generate's. */
typedef struct flock_gen flock_gen;

/* Prefills `prompt` on a fresh or reset session and prepares to generate up
 * to max_tokens tokens. `smp` and `stops` are borrowed: they must outlive the
 * generation. On failure *out is untouched and the session says why. */
FLOCK_API flock_status flock_gen_start(flock_session *s, flock_sampler *smp, const int32_t *prompt, size_t n_prompt,
                             size_t max_tokens, const char *const *stops, size_t n_stops, flock_gen **out);
/* Samples the next token. *text / *len: the text to emit now (maybe empty;
 * valid until the next call on this generation). *tok: the token to decode
 * before the next call, or -1 when nothing is to be decoded: generation has
 * ended (flock_gen_done) at EOS / end of turn, a stop string, max_tokens or
 * a full context, and *text is its last piece. */
FLOCK_API flock_status flock_gen_next(flock_gen *g, int32_t *tok, const char **text, size_t *len);
/* True once generation has ended. */
FLOCK_API bool flock_gen_done(const flock_gen *g);
/* Counts and times so far (tokens: the session's generated ids). */
FLOCK_API const flock_gen_stats *flock_gen_get_stats(const flock_gen *g);
/* Frees the state (not the session); NULL is a no-op. Generation may be
 * abandoned at any point: reset the session before its next prompt. */
FLOCK_API void flock_gen_free(flock_gen *g);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_FLOCK_H */
