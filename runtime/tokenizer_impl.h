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

/* Byte trie of the control / user-defined tokens that can appear in text
 * (Gemma has 6,400 of them, most starting with '<'), so finding the longest
 * one at a text position costs one hash probe per matched byte. Node 0 is
 * the root; edges live in an open-addressing table keyed by (node, byte). */
typedef struct tok_special {
    int32_t *term;     /* per node: the token spelled by the path, or -1 */
    uint32_t n_nodes;
    uint64_t *ekey;    /* (node << 8 | byte) + 1; 0 = empty */
    uint32_t *echild;
    uint64_t emask;
} tok_special;

/* Child of `node` along byte b, or 0 (the root is never a child). */
static inline uint32_t flock_tok_trie_child(const tok_special *sp, uint32_t node, uint8_t b)
{
    uint64_t key = ((uint64_t)node << 8 | b) + 1;
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20 & sp->emask;
    while (sp->ekey[h]) {
        if (sp->ekey[h] == key)
            return sp->echild[h];
        h = (h + 1) & sp->emask;
    }
    return 0;
}

struct flock_tokenizer {
    flock_tok_kind kind;
    uint32_t n_vocab;
    char **text;       /* token texts: pointers into text_pool */
    char *text_pool;   /* every token text, NUL-terminated, back to back */
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
