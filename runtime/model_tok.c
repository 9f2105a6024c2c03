/* The model's tokenizer and chat template: the bundle's tokenizer section
 * through runtime/tokenizer.h, exposed by flock.h. */
#include "model_impl.h"
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

struct flock_model_tok {
    flock_tokenizer *t;
    flock_chat_template chat;
    char *chat_source; /* the model's Jinja text, or NULL */
};

flock_status flock_model_tok_load(flock_model *m, flock_error *err)
{
    int64_t si = flock_bundle_find_section(m->bundle, FLOCK_SECTION_TOKENIZER, NULL);
    if (si < 0)
        return FLOCK_OK; /* a bundle without a tokenizer runs on token ids */
    void *data = NULL;
    size_t size = 0;
    flock_status st = flock_bundle_read_section(m->bundle, (size_t)si, &data, &size, err);
    if (st != FLOCK_OK)
        return st;
    flock_tokenizer_data *td = NULL;
    st = flock_tokdata_deserialize(data, size, &td, err);
    free(data);
    if (st != FLOCK_OK)
        return flock_error_prefix(err, st, "tokenizer section");
    struct flock_model_tok *t = calloc(1, sizeof *t);
    if (!t) {
        flock_tokdata_free(td);
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    m->tok = t;
    if (td->n_vocab < (uint32_t)m->prog->cfg.n_vocab)
        st = flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer has %u tokens, the model %d", td->n_vocab,
                             m->prog->cfg.n_vocab);
    if (st == FLOCK_OK)
        st = flock_tokenizer_create(td, &t->t, err);
    if (st == FLOCK_OK)
        st = flock_chat_init(td->chat_template, m->prog->cfg.arch, &t->chat, err);
    if (st == FLOCK_OK && td->chat_template && !(t->chat_source = strdup(td->chat_template)))
        st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    flock_tokdata_free(td);
    return st;
}

void flock_model_tok_free(struct flock_model_tok *t)
{
    if (!t)
        return;
    flock_tokenizer_free(t->t);
    flock_chat_template_free(&t->chat);
    free(t->chat_source);
    free(t);
}

static flock_status no_tokenizer(flock_error *err)
{
    return flock_error_set(err, FLOCK_E_NOT_FOUND, "the bundle has no tokenizer: pass token ids");
}

flock_status flock_tokenize(const flock_model *m, const char *text, size_t len, bool add_special, int32_t *ids,
                            size_t cap, size_t *n, flock_error *err)
{
    if (!m || !n || (!text && len))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_tokenize: NULL argument");
    if (!m->tok || !m->tok->t)
        return no_tokenizer(err);
    int32_t *out = NULL;
    size_t k = 0;
    /* parse_special: chat markers spelled in the text become their tokens */
    flock_status st = flock_tokenizer_encode(m->tok->t, text, len, add_special, true, &out, &k, err);
    if (st != FLOCK_OK)
        return st;
    *n = k;
    if (k > cap) {
        free(out);
        return flock_error_set(err, FLOCK_E_RANGE, "%zu tokens do not fit in a buffer of %zu", k, cap);
    }
    if (k)
        memcpy(ids, out, k * sizeof *ids);
    free(out);
    return FLOCK_OK;
}

flock_status flock_detokenize(const flock_model *m, const int32_t *ids, size_t n, char **out, flock_error *err)
{
    if (!m || !out || (!ids && n))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_detokenize: NULL argument");
    if (!m->tok || !m->tok->t)
        return no_tokenizer(err);
    return flock_tokenizer_decode_all(m->tok->t, ids, n, false, out, err);
}

const char *flock_token_piece(const flock_model *m, int32_t id, size_t *len)
{
    *len = 0;
    if (!m->tok || !m->tok->t || id < 0 || (uint32_t)id >= m->tok->t->n_vocab)
        return "";
    const flock_tokenizer *t = m->tok->t;
    uint8_t ty = t->type[id];
    if (ty == FLOCK_TOKTYPE_CONTROL || ty == FLOCK_TOKTYPE_UNUSED)
        return "";
    *len = (size_t)(t->dec_off[id + 1] - t->dec_off[id]);
    return t->dec + t->dec_off[id];
}

int32_t flock_model_bos(const flock_model *m)
{
    return m->tok && m->tok->t ? flock_tokenizer_bos(m->tok->t) : -1;
}

int32_t flock_model_eos(const flock_model *m)
{
    return m->tok && m->tok->t ? flock_tokenizer_eos(m->tok->t) : -1;
}

int32_t flock_model_eot(const flock_model *m)
{
    return m->tok && m->tok->t ? flock_tokenizer_eot(m->tok->t) : -1;
}

bool flock_model_is_eog(const flock_model *m, int32_t id)
{
    return m->tok && m->tok->t && flock_tokenizer_is_eog(m->tok->t, id);
}

const char *flock_model_chat_template(const flock_model *m)
{
    return m->tok ? m->tok->chat_source : NULL;
}

flock_status flock_chat_format(const flock_model *m, const flock_chat_message *msgs, size_t n,
                               bool add_generation_prompt, char **out, flock_error *err)
{
    if (!m || !out || (!msgs && n))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_chat_format: NULL argument");
    if (!m->tok)
        return no_tokenizer(err);
    _Static_assert(sizeof(flock_chat_message) == sizeof(flock_chat_msg), "same layout");
    return flock_chat_apply(&m->tok->chat, (const flock_chat_msg *)msgs, n, add_generation_prompt, out, err);
}

size_t flock_model_max_piece_bytes(const flock_model *m)
{
    return m->tok && m->tok->t ? flock_tokenizer_max_token_bytes(m->tok->t) : 0;
}

/* Streaming text of one token (complete UTF-8 only) into out. */
flock_status flock_model_decode_token(const flock_model *m, flock_tok_decoder *d, int32_t id, char *out, size_t cap,
                                      size_t *n)
{
    if (!m->tok || !m->tok->t) {
        *n = 0;
        return FLOCK_OK;
    }
    return flock_tok_decode(m->tok->t, d, id, out, cap, n);
}

size_t flock_model_decode_flush(const flock_model *m, flock_tok_decoder *d, char *out, size_t cap)
{
    (void)m;
    return flock_tok_decoder_flush(d, out, cap);
}
