/* Tokenizer glue: loads the bundle's tokenizer section and precomputes the
 * text (bytes) of every token for streaming output. */
#include "model_impl.h"

#include <stdlib.h>
#include <string.h>

struct flock_model_tok {
    flock_tokenizer_data *td;
    char *blob;     /* all pieces back to back */
    uint32_t *off;  /* [n_vocab + 1] */
};

/* GPT-2's byte-level BPE writes byte b as a printable code point: bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF as themselves, the other 68 as
 * U+0100 + n in increasing byte order. This inverts that map. */
static int gpt2_cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff))
        return (int)cp;
    if (cp < 0x100 || cp >= 0x100 + 68)
        return -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        if (printable)
            continue;
        if ((uint32_t)(0x100 + n) == cp)
            return b;
        n++;
    }
    return -1;
}

/* Decodes one UTF-8 code point at s (length left n); returns its length (1 on a bad byte). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80 || n < 2) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
    if (len > n) {
        *cp = s[0];
        return 1;
    }
    uint32_t v = s[0] & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++)
        v = (v << 6) | (s[i] & 0x3f);
    *cp = v;
    return len;
}

/* Writes token i's text to dst (capacity: 4x the stored string is enough); returns its length. */
static size_t piece_of(const flock_tokenizer_data *td, uint32_t i, char *dst)
{
    const char *t = td->tokens[i];
    size_t n = strlen(t), o = 0;
    int type = td->token_types ? td->token_types[i] : FLOCK_TOKTYPE_NORMAL;
    if (type == FLOCK_TOKTYPE_CONTROL || type == FLOCK_TOKTYPE_UNUSED || type == FLOCK_TOKTYPE_UNKNOWN)
        return 0;
    if (type == FLOCK_TOKTYPE_BYTE || (n == 6 && t[0] == '<' && t[1] == '0' && t[2] == 'x' && t[5] == '>' &&
                                       td->kind == FLOCK_TOK_SPM)) {
        dst[0] = (char)strtol(t + 3, NULL, 16);
        return 1;
    }
    if (td->kind == FLOCK_TOK_BPE && type != FLOCK_TOKTYPE_USER_DEFINED) {
        for (size_t p = 0; p < n;) {
            uint32_t cp;
            size_t l = utf8_next((const unsigned char *)t + p, n - p, &cp);
            int b = gpt2_cp_to_byte(cp);
            if (b < 0) { /* not a byte-level code point: keep the text */
                memcpy(dst + o, t + p, l);
                o += l;
            } else {
                dst[o++] = (char)b;
            }
            p += l;
        }
        return o;
    }
    /* SentencePiece: U+2581 (e2 96 81) is a space */
    for (size_t p = 0; p < n;) {
        if (p + 3 <= n && (unsigned char)t[p] == 0xe2 && (unsigned char)t[p + 1] == 0x96 &&
            (unsigned char)t[p + 2] == 0x81) {
            dst[o++] = ' ';
            p += 3;
        } else {
            dst[o++] = t[p++];
        }
    }
    return o;
}

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
    struct flock_model_tok *t = calloc(1, sizeof *t);
    if (!t) {
        free(data);
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    st = flock_tokdata_deserialize(data, size, &t->td, err);
    free(data);
    if (st != FLOCK_OK) {
        free(t);
        return flock_error_prefix(err, "tokenizer section");
    }
    size_t total = 0;
    for (uint32_t i = 0; i < t->td->n_vocab; i++)
        total += strlen(t->td->tokens[i]);
    t->blob = malloc(total + 1);
    t->off = malloc(((size_t)t->td->n_vocab + 1) * sizeof *t->off);
    if (!t->blob || !t->off) {
        flock_model_tok_free(t);
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    size_t o = 0;
    for (uint32_t i = 0; i < t->td->n_vocab; i++) {
        t->off[i] = (uint32_t)o;
        o += piece_of(t->td, i, t->blob + o); /* a piece is never longer than its stored string */
    }
    t->off[t->td->n_vocab] = (uint32_t)o;
    m->tok = t;
    return FLOCK_OK;
}

void flock_model_tok_free(struct flock_model_tok *t)
{
    if (!t)
        return;
    flock_tokdata_free(t->td);
    free(t->blob);
    free(t->off);
    free(t);
}

const char *flock_token_piece(const flock_model *m, int32_t id, size_t *len)
{
    if (!m->tok || id < 0 || (uint32_t)id >= m->tok->td->n_vocab) {
        *len = 0;
        return "";
    }
    *len = m->tok->off[id + 1] - m->tok->off[id];
    return m->tok->blob + m->tok->off[id];
}

int32_t flock_model_bos(const flock_model *m)
{
    return m->tok ? m->tok->td->bos_id : -1;
}

int32_t flock_model_eos(const flock_model *m)
{
    return m->tok ? m->tok->td->eos_id : -1;
}

int32_t flock_model_eot(const flock_model *m)
{
    return m->tok ? m->tok->td->eot_id : -1;
}

const char *flock_model_chat_template(const flock_model *m)
{
    return m->tok ? m->tok->td->chat_template : NULL;
}

flock_status flock_tokenize(const flock_model *m, const char *text, size_t len, bool add_special, int32_t *ids,
                            size_t cap, size_t *n, flock_error *err)
{
    (void)text, (void)len, (void)add_special, (void)ids, (void)cap, (void)n;
    if (!m->tok)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "the bundle has no tokenizer: pass token ids");
    return flock_error_set(err, FLOCK_E_UNSUPPORTED, "text encoding is not available in this build yet");
}
