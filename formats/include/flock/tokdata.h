/* flock/tokdata.h - tokenizer data: what a bundle's tokenizer section holds,
 * read from GGUF metadata or a Hugging Face folder. */
#ifndef FLOCK_TOKDATA_H
#define FLOCK_TOKDATA_H

#include "flock/gguf.h"
#include "flock/hf.h"
#include "flock/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Tokenizer data (what the bundle's tokenizer section holds)              */
/* ======================================================================== */

typedef enum flock_tok_kind {
    FLOCK_TOK_SPM = 0, /* SentencePiece-style: scores, U+2581 for spaces, <0xXX> byte fallback */
    FLOCK_TOK_BPE = 1, /* byte-level BPE (GPT-2 byte mapping) with ranked merges */
    FLOCK_TOK_KIND_COUNT
} flock_tok_kind;

/* Token types as in GGUF's tokenizer.ggml.token_type. */
enum {
    FLOCK_TOKTYPE_NORMAL = 1,
    FLOCK_TOKTYPE_UNKNOWN = 2,
    FLOCK_TOKTYPE_CONTROL = 3,
    FLOCK_TOKTYPE_USER_DEFINED = 4,
    FLOCK_TOKTYPE_UNUSED = 5,
    FLOCK_TOKTYPE_BYTE = 6,
};

typedef struct flock_tokenizer_data {
    flock_tok_kind kind;
    uint32_t n_vocab;
    char **tokens;          /* n_vocab NUL-terminated strings (as stored by the model) */
    float *scores;          /* n_vocab, or NULL */
    int32_t *token_types;   /* n_vocab, FLOCK_TOKTYPE_*; never NULL after load */
    uint32_t n_merges;
    char **merges;          /* "left right", rank = index; BPE only */
    int32_t bos_id, eos_id, unk_id, pad_id, eot_id; /* -1 when absent */
    bool add_bos, add_eos;
    bool add_space_prefix;  /* SPM: prepend a space to the text */
    char *pre_pattern;      /* BPE pre-tokenizer: PCRE2 patterns separated by '\n', applied in
                             * sequence (each splits the previous pieces); NULL for GPT-2's */
    char *chat_template;    /* Jinja source from the model, or NULL */
    char *model_name;       /* tokenizer.ggml.pre or similar, informational; may be NULL */
} flock_tokenizer_data;

/* Binary encoding for the bundle (versioned, bounds-checked on decode). */
flock_status flock_tokdata_serialize(const flock_tokenizer_data *t, uint8_t **out, size_t *out_size,
                                     flock_error *err);
flock_status flock_tokdata_deserialize(const void *data, size_t size, flock_tokenizer_data **out,
                                       flock_error *err);
void flock_tokdata_free(flock_tokenizer_data *t);
/* From GGUF's tokenizer.ggml.* keys. */
flock_status flock_tokdata_from_gguf(const flock_gguf *g, flock_tokenizer_data **out, flock_error *err);
/* From a Hugging Face folder's tokenizer.json and tokenizer_config.json. */
flock_status flock_tokdata_from_hf(const flock_hf_model *m, flock_tokenizer_data **out,
                                   flock_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_TOKDATA_H */
