/* Private helpers shared by the tokenizer-data loaders (tokdata*.c). */
#ifndef FLOCK_FORMATS_TOKDATA_INTERNAL_H
#define FLOCK_FORMATS_TOKDATA_INTERNAL_H

#include "flock/formats.h"

/* A zeroed data set with arrays for n_vocab tokens (types NORMAL) and
 * n_merges merges, special ids -1. NULL when out of memory. */
flock_tokenizer_data *flock_tokdata_alloc(flock_tok_kind kind, uint32_t n_vocab, uint32_t n_merges,
                                          bool with_scores);
/* malloc'd copy of n bytes plus a NUL; NULL when out of memory. */
char *flock_tokdata_strndup(const char *s, size_t n);
/* Checks kind, ids in range, token types 0..6, no missing strings. */
flock_status flock_tokdata_check(const flock_tokenizer_data *t, flock_error *err);

/* Id of the token spelled `s` (linear search), or -1. */
int32_t flock_tokdata_find(const flock_tokenizer_data *t, const char *s);
/* The end-of-turn token llama.cpp would guess from the vocabulary, or -1. */
int32_t flock_tokdata_guess_eot(const flock_tokenizer_data *t);

/* The pre-tokenizer patterns llama.cpp uses for a tokenizer.ggml.pre name
 * ('\n'-separated, applied in sequence), or NULL for GPT-2's. */
const char *flock_tokdata_pre_pattern(const char *pre_name, size_t len);

/* The work of flock_tokdata_from_hf on raw JSON text (tokenizer_config may
 * be NULL). Exposed for tests that have no model folder. */
flock_status flock_tokdata_from_hf_json(const char *tokenizer_json, size_t tj_len,
                                        const char *config_json, size_t cj_len,
                                        flock_tokenizer_data **out, flock_error *err);

#endif
