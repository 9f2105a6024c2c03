/* Tokenizer data from GGUF's tokenizer.ggml.* keys, with the defaults
 * llama.cpp applies when a key is absent. */
#include "flock/formats.h"
#include "error_impl.h"
#include "tokdata_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- pre-tokenizer patterns ------------------------------------------------
 * tokenizer.ggml.pre names a pre-tokenizer; these are the regexes llama.cpp
 * (and the matching Hugging Face tokenizer.json files) use for them. Several
 * patterns are separated by '\n' and applied in sequence: each one splits the
 * pieces the previous one produced (matches and the gaps between them both
 * become pieces). */
#define PAT_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define PAT_LLAMA3                                                                          \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_QWEN2                                                                           \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const struct {
    const char *name;
    const char *pattern;
} pre_table[] = {
    {"gpt2", PAT_GPT2},
    {"gpt-2", PAT_GPT2},
    {"mpt", PAT_GPT2},
    {"olmo", PAT_GPT2},
    {"jais", PAT_GPT2},
    /* Digits split one by one first (HF: Digits(individual_digits) then ByteLevel). */
    {"smollm", "\\p{N}\n" PAT_GPT2},
    {"starcoder", "\\p{N}\n" PAT_GPT2},
    {"refact", "\\p{N}\n" PAT_GPT2},
    {"codeshell", "\\p{N}\n" PAT_GPT2},
    {"llama3", PAT_LLAMA3},
    {"llama-v3", PAT_LLAMA3},
    {"llama-bpe", PAT_LLAMA3},
    {"falcon3", PAT_LLAMA3},
    {"smaug-bpe", PAT_LLAMA3},
    {"dbrx", PAT_LLAMA3},
    {"qwen2", PAT_QWEN2},
    {"deepseek-r1-qwen", PAT_QWEN2},
    /* llama.cpp's fallback for an empty or "default" name. */
    {"default", "[\\p{P}\\$\\+<=>\\^~\\|]+\n" PAT_GPT2 "\n\\p{N}+\n[0-9][0-9][0-9]"},
};

const char *flock_tokdata_pre_pattern(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof pre_table / sizeof pre_table[0]; i++)
        if (strlen(pre_table[i].name) == len && memcmp(pre_table[i].name, name, len) == 0)
            return pre_table[i].pattern;
    return NULL;
}

/* ---- GGUF --------------------------------------------------------------- */

static bool has_key(const flock_gguf *g, const char *key)
{
    return flock_gguf_find_key(g, key) >= 0;
}

/* Special id: GGUF stores an absent id as 0xFFFFFFFF; out-of-range ids are
 * dropped like llama.cpp does. Keeps *id when the key is absent. */
static flock_status read_id(const flock_gguf *g, const char *key, uint32_t n_vocab, int32_t *id,
                            flock_error *err)
{
    if (!has_key(g, key))
        return FLOCK_OK;
    int64_t v;
    flock_status st = flock_gguf_get_int(g, key, &v, err);
    if (st)
        return st;
    *id = (v >= 0 && v < (int64_t)n_vocab) ? (int32_t)v : -1;
    return FLOCK_OK;
}

static flock_status read_bool(const flock_gguf *g, const char *key, bool *v, flock_error *err)
{
    if (!has_key(g, key))
        return FLOCK_OK;
    return flock_gguf_get_bool(g, key, v, err);
}

static flock_status read_opt_str(const flock_gguf *g, const char *key, char **out, flock_error *err)
{
    if (!has_key(g, key))
        return FLOCK_OK;
    const char *s;
    size_t n;
    flock_status st = flock_gguf_get_str(g, key, &s, &n, err);
    if (st)
        return st;
    if (memchr(s, 0, n))
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s holds a NUL byte", key);
    *out = flock_tokdata_strndup(s, n);
    return *out ? FLOCK_OK : flock_error_set(err, FLOCK_E_NOMEM, "%s: out of memory", key);
}

static flock_status read_str_array(const flock_gguf *g, const char *key, uint64_t n, char **dst,
                                   flock_error *err)
{
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        flock_status st = flock_gguf_get_arr_str(g, key, i, &s, &len, err);
        if (st)
            return st;
        if (memchr(s, 0, len))
            return flock_error_set(err, FLOCK_E_CORRUPT, "%s[%llu] holds a NUL byte", key,
                                   (unsigned long long)i);
        dst[i] = flock_tokdata_strndup(s, len);
        if (!dst[i])
            return flock_error_set(err, FLOCK_E_NOMEM, "%s: out of memory", key);
    }
    return FLOCK_OK;
}

/* Length of a string array (or 0 when the key is absent). */
static flock_status str_array_len(const flock_gguf *g, const char *key, bool required, uint64_t *n,
                                  flock_error *err)
{
    *n = 0;
    if (!has_key(g, key))
        return required ? flock_error_set(err, FLOCK_E_NOT_FOUND, "key %s is missing", key) : FLOCK_OK;
    flock_gguf_type et;
    const void *data;
    flock_status st = flock_gguf_get_arr(g, key, &et, n, &data, err);
    if (st)
        return st;
    if (et != FLOCK_GGUF_STRING)
        return flock_error_set(err, FLOCK_E_TYPE, "%s: array of type %d, expected strings", key, (int)et);
    if (*n > INT32_MAX)
        return flock_error_set(err, FLOCK_E_RANGE, "%s: %llu entries is more than flock supports", key,
                               (unsigned long long)*n);
    return FLOCK_OK;
}

/* A numeric per-token array with exactly n_vocab elements of `type`. */
static flock_status token_array(const flock_gguf *g, const char *key, flock_gguf_type type,
                                uint32_t n_vocab, const uint8_t **data, flock_error *err)
{
    *data = NULL;
    if (!has_key(g, key))
        return FLOCK_OK;
    flock_gguf_type et;
    uint64_t n;
    const void *p;
    flock_status st = flock_gguf_get_arr(g, key, &et, &n, &p, err);
    if (st)
        return st;
    if (et != type)
        return flock_error_set(err, FLOCK_E_TYPE, "%s: element type %d, expected %d", key, (int)et,
                               (int)type);
    if (n != n_vocab)
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s: %llu entries for %u tokens", key,
                               (unsigned long long)n, n_vocab);
    *data = p;
    return FLOCK_OK;
}

int32_t flock_tokdata_find(const flock_tokenizer_data *t, const char *s)
{
    for (uint32_t i = 0; i < t->n_vocab; i++)
        if (strcmp(t->tokens[i], s) == 0)
            return (int32_t)i;
    return -1;
}

/* End-of-turn token when the file does not name one: the chat end markers
 * llama.cpp looks for, in order of preference. */
int32_t flock_tokdata_guess_eot(const flock_tokenizer_data *t)
{
    static const char *const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<EOT>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = flock_tokdata_find(t, names[i]);
        if (id >= 0 && (t->token_types[id] == FLOCK_TOKTYPE_CONTROL ||
                        t->token_types[id] == FLOCK_TOKTYPE_USER_DEFINED))
            return id;
    }
    return -1;
}

static flock_status from_gguf(const flock_gguf *g, flock_tokenizer_data **out, flock_error *err)
{
    const char *model;
    size_t model_len;
    flock_status st = flock_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len, err);
    if (st)
        return st;
    flock_tok_kind kind;
    if (model_len == 5 && memcmp(model, "llama", 5) == 0)
        kind = FLOCK_TOK_SPM;
    else if (model_len == 4 && memcmp(model, "gpt2", 4) == 0)
        kind = FLOCK_TOK_BPE;
    else
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tokenizer.ggml.model '%.*s' (flock knows "
                               "'llama' and 'gpt2')", (int)(model_len > 64 ? 64 : model_len), model);

    uint64_t n_vocab, n_merges;
    if ((st = str_array_len(g, "tokenizer.ggml.tokens", true, &n_vocab, err)))
        return st;
    if (n_vocab == 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer.ggml.tokens is empty");
    if ((st = str_array_len(g, "tokenizer.ggml.merges", kind == FLOCK_TOK_BPE, &n_merges, err)))
        return st;
    const uint8_t *scores, *types;
    if ((st = token_array(g, "tokenizer.ggml.scores", FLOCK_GGUF_FLOAT32, (uint32_t)n_vocab, &scores, err)))
        return st;
    if ((st = token_array(g, "tokenizer.ggml.token_type", FLOCK_GGUF_INT32, (uint32_t)n_vocab, &types, err)))
        return st;

    flock_tokenizer_data *t = flock_tokdata_alloc(kind, (uint32_t)n_vocab, (uint32_t)n_merges, scores != NULL);
    if (!t)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %llu tokens",
                               (unsigned long long)n_vocab);
    st = read_str_array(g, "tokenizer.ggml.tokens", n_vocab, t->tokens, err);
    if (!st)
        st = read_str_array(g, "tokenizer.ggml.merges", n_merges, t->merges, err);
    for (uint32_t i = 0; !st && i < t->n_vocab; i++) {
        if (scores)
            memcpy(&t->scores[i], scores + 4 * (size_t)i, 4); /* little-endian host */
        if (types) {
            int32_t ty;
            memcpy(&ty, types + 4 * (size_t)i, 4);
            if (ty < 0 || ty > FLOCK_TOKTYPE_BYTE)
                st = flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer.ggml.token_type[%u] = %d "
                                     "(expected 0..6)", i, (int)ty);
            t->token_types[i] = ty;
        }
    }
    if (st)
        goto fail;

    /* llama.cpp's defaults: SPM files are Llama-style (BOS 1, EOS 2, UNK 0,
     * BOS added, a space prefixed); BPE files add nothing unless they say so. */
    bool spm = kind == FLOCK_TOK_SPM;
    if (spm) {
        t->bos_id = t->n_vocab > 1 ? 1 : -1;
        t->eos_id = t->n_vocab > 2 ? 2 : -1;
        t->unk_id = 0;
    }
    t->add_bos = spm;
    t->add_space_prefix = spm;
    if ((st = read_opt_str(g, "tokenizer.ggml.pre", &t->model_name, err)))
        goto fail;
    if (kind == FLOCK_TOK_BPE) {
        const char *name = t->model_name ? t->model_name : "gpt2";
        const char *pat = flock_tokdata_pre_pattern(name, strlen(name));
        if (!pat) {
            st = flock_error_set(err, FLOCK_E_UNSUPPORTED, "tokenizer.ggml.pre '%.64s' is not a "
                                 "pre-tokenizer flock knows", name);
            goto fail;
        }
        if (strcmp(name, "gpt2") != 0 && !(t->pre_pattern = flock_tokdata_strndup(pat, strlen(pat)))) {
            st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
            goto fail;
        }
        if (strncmp(name, "llama", 5) == 0 || strcmp(name, "falcon3") == 0)
            t->add_bos = true; /* llama.cpp: the Llama 3 family adds BOS */
    }
    if ((st = read_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos_id, err)) ||
        (st = read_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos_id, err)) ||
        (st = read_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk_id, err)) ||
        (st = read_id(g, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad_id, err)) ||
        (st = read_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot_id, err)) ||
        (st = read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (st = read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) ||
        (st = read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)) ||
        (st = read_opt_str(g, "tokenizer.chat_template", &t->chat_template, err)))
        goto fail;
    if (t->eot_id < 0)
        t->eot_id = flock_tokdata_guess_eot(t);
    if ((st = flock_tokdata_check(t, err)))
        goto fail;
    *out = t;
    return FLOCK_OK;
fail:
    flock_tokdata_free(t);
    return st;
}

flock_status flock_tokdata_from_gguf(const flock_gguf *g, flock_tokenizer_data **out, flock_error *err)
{
    if (!g || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokdata_from_gguf: NULL argument");
    FORWARD_IF_ERROR(from_gguf(g, out, err), err, "GGUF tokenizer");
    return FLOCK_OK;
}
