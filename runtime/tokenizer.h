/* Private to the runtime: text <-> token ids from flock_tokenizer_data.
 *
 * Two algorithms, as in llama.cpp:
 *  - BPE: byte-level BPE (GPT-2 byte-to-unicode mapping) over the pieces of a
 *    PCRE2 pre-tokenizer, merging the lowest-ranked adjacent pair first;
 *  - SPM: SentencePiece-style BPE over UTF-8 characters ("▁" for spaces),
 *    merging the adjacent pair whose concatenation scores highest, with
 *    <0xXX> byte fallback for text no token covers.
 * In both, control / user-defined tokens found in the text are cut out first
 * (leftmost, longest). A tokenizer is immutable after create and may be used
 * from several threads at once. */
#ifndef FLOCK_RUNTIME_TOKENIZER_H
#define FLOCK_RUNTIME_TOKENIZER_H

#include "flock/formats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct flock_tokenizer flock_tokenizer;

/* Builds the lookup tables (copies what it needs from `d`, which may be
 * freed afterwards). Compiles the pre-tokenizer regex (JIT when available). */
flock_status flock_tokenizer_create(const flock_tokenizer_data *d, flock_tokenizer **out, flock_error *err);
void flock_tokenizer_free(flock_tokenizer *t);

uint32_t flock_tokenizer_n_vocab(const flock_tokenizer *t);
int32_t flock_tokenizer_bos(const flock_tokenizer *t); /* -1 when absent */
int32_t flock_tokenizer_eos(const flock_tokenizer *t);
int32_t flock_tokenizer_eot(const flock_tokenizer *t);
/* Whether generation should stop at `id` (EOS, EOT). */
bool flock_tokenizer_is_eog(const flock_tokenizer *t, int32_t id);
/* The token's text as the model stores it (NULL when out of range). */
const char *flock_tokenizer_token_text(const flock_tokenizer *t, int32_t id);
/* Id of the token spelled exactly `s`, or -1. */
int32_t flock_tokenizer_find(const flock_tokenizer *t, const char *s, size_t len);

/* Encodes `len` bytes of `text` (any bytes; invalid UTF-8 goes through byte
 * fallback / byte-level pieces). add_special: BOS / EOS as the model asks;
 * parse_special: control tokens spelled in the text become their ids
 * (user-defined tokens always do). *ids is malloc'd (caller frees), *n_ids
 * its length; on failure both are untouched. */
flock_status flock_tokenizer_encode(const flock_tokenizer *t, const char *text, size_t len,
                                    bool add_special, bool parse_special, int32_t **ids,
                                    size_t *n_ids, flock_error *err);

/* Raw bytes of one token: byte-level pieces mapped back to bytes, "▁" to a
 * space, <0xXX> to its byte. Control tokens give their text only when
 * `special` is true, else nothing. Writes at most `cap` bytes and returns the
 * full length (call again with a larger buffer when it exceeds cap). */
size_t flock_tokenizer_token_bytes(const flock_tokenizer *t, int32_t id, bool special, char *out,
                                   size_t cap);
/* Longest flock_tokenizer_token_bytes result over the vocabulary. */
size_t flock_tokenizer_max_token_bytes(const flock_tokenizer *t);

/* Streaming decoder: a token's bytes may end inside a UTF-8 character (byte
 * fallback, byte-level pieces), so bytes are held back until the character is
 * complete. Invalid sequences come out as U+FFFD. No allocation. */
typedef struct flock_tok_decoder {
    uint8_t pend[4];
    uint32_t n_pend;
    bool started;   /* a token was emitted: SPM drops the prefix space before that */
    bool special;   /* print control tokens */
} flock_tok_decoder;

void flock_tok_decoder_init(flock_tok_decoder *d, bool special);
/* Appends the complete UTF-8 produced by token `id` to out (capacity cap;
 * cap >= 3 * flock_tokenizer_max_token_bytes(t) + 8 is always enough) and stores
 * the byte count in *n. FLOCK_E_RANGE when cap is too small (nothing written,
 * decoder unchanged); FLOCK_E_INVALID_ARG for an id outside the vocabulary. */
flock_status flock_tok_decode(const flock_tokenizer *t, flock_tok_decoder *d, int32_t id, char *out,
                              size_t cap, size_t *n);
/* Emits what is still held back (as U+FFFD per byte); cap >= 12 is enough. */
size_t flock_tok_decoder_flush(flock_tok_decoder *d, char *out, size_t cap);

/* Whole-sequence decode into a malloc'd NUL-terminated string (tests, tools). */
flock_status flock_tokenizer_decode_all(const flock_tokenizer *t, const int32_t *ids, size_t n,
                                        bool special, char **out, flock_error *err);

/* ---- chat templates (chat.c) ---- */

typedef enum flock_chat_style {
    FLOCK_CHAT_CHATML = 0, /* <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen) */
    FLOCK_CHAT_GEMMA = 1,  /* <start_of_turn>user\n...<end_of_turn>\n, "assistant" -> "model" */
    FLOCK_CHAT_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    FLOCK_CHAT_STYLE_COUNT
} flock_chat_style;

typedef struct flock_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} flock_chat_msg;

typedef struct flock_chat_template {
    flock_chat_style style;
    char *default_system; /* system text the template adds when none is given, or NULL */
} flock_chat_template;

/* Picks the style from the model's Jinja template text by its markers, or,
 * when there is none, from the architecture name ("gemma*" -> Gemma, else
 * ChatML); a ChatML template's built-in system prompt (SmolLM2's "You are a
 * helpful AI assistant named SmolLM...") is kept as default_system. */
flock_status flock_chat_init(const char *chat_template, const char *arch, flock_chat_template *out,
                             flock_error *err);
void flock_chat_template_free(flock_chat_template *ct); /* frees the contents; NULL is a no-op */
const char *flock_chat_style_name(flock_chat_style s);

/* Formats the conversation as text (malloc'd, caller frees). With
 * add_generation_prompt the text ends with the assistant turn's header.
 * BOS is not part of the text: encode with add_special (and parse_special,
 * so the markers become their control tokens). Roles other than system /
 * user / assistant are FLOCK_E_INVALID_ARG. */
flock_status flock_chat_apply(const flock_chat_template *ct, const flock_chat_msg *msgs, size_t n,
                              bool add_generation_prompt, char **out, flock_error *err);

#endif
