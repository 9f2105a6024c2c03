/* Private to tokenizer.c / tokenize.c: the tokenizer's lookup tables. */
#ifndef FLOCK_RUNTIME_TOKENIZER_IMPL_H
#define FLOCK_RUNTIME_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

#define FLOCK_TOK_MAX_PATTERNS 8

/* Open-addressing table (linear probing, power-of-two size, load <= 1/2). */
typedef struct tok_strmap {
    int32_t *slot; /* token id, -1 = empty */
    uint64_t mask;
} tok_strmap;

typedef struct tok_pairmap {
    uint64_t *key;   /* (left id << 32 | right id) + 1; 0 = empty */
    int32_t *rank;
    int32_t *result; /* id of the merged token */
    uint64_t mask;
} tok_pairmap;

/* Control / user-defined tokens that can appear in text, bucketed by first
 * byte, longest first within a bucket. */
typedef struct tok_special {
    int32_t *ids;
    uint32_t start[257]; /* bucket b is ids[start[b] .. start[b+1]) */
} tok_special;

struct flock_tokenizer {
    flock_tok_kind kind;
    uint32_t n_vocab;
    char **text;       /* token texts (copies) */
    uint32_t *len;     /* strlen(text[i]) */
    float *score;      /* SPM */
    uint8_t *type;     /* FLOCK_TOKTYPE_* */
    int32_t bos, eos, eot, unk;
    bool add_bos, add_eos, add_space_prefix;
    bool ignore_merges; /* Llama 3: a piece that is a whole token is not merged */
    tok_strmap map;
    tok_pairmap merges;
    tok_special special;
    int32_t byte_id[256]; /* BPE: token of each byte's GPT-2 char; SPM: <0xXX> */
    /* Decoded bytes of every token (see flock_tokenizer_token_bytes). */
    char *dec;
    uint64_t *dec_off; /* n_vocab + 1 */
    size_t max_dec;
    pcre2_code *re[FLOCK_TOK_MAX_PATTERNS];
    int n_re;
};

/* Id of the token spelled by (s, n), or -1. */
int32_t flock_tok_lookup(const flock_tokenizer *t, const char *s, size_t n);

#endif
