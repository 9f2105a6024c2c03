/* Tokenizer data: the bundle's binary encoding and loading from GGUF.
 *
 * Encoding, version 1 (all integers little-endian):
 *   "FLTK" u32 version
 *   u32 kind, u32 n_vocab, u32 n_merges, u32 flags
 *       (bit 0 scores present, 1 add_bos, 2 add_eos, 3 add_space_prefix)
 *   i32 bos, eos, unk, pad, eot            (-1 = absent, else < n_vocab)
 *   str pre_pattern, chat_template, model_name
 *   n_vocab x str token
 *   n_vocab x f32 score                    (when flag bit 0)
 *   n_vocab x u8 token type                (0..6)
 *   n_merges x str merge
 * where str = u32 length (0xFFFFFFFF = NULL) + bytes without a NUL (a NUL
 * inside would silently cut the C string, so it is rejected).
 * The input must be consumed exactly. Later versions may append fields after
 * the merges; a reader refuses versions above its own. */
#include "flock/formats.h"
#include "error_impl.h"
#include "reader.h"
#include "wbuf.h"
#include "tokdata_internal.h"

#include <stdlib.h>
#include <string.h>

#define TOKDATA_MAGIC "FLTK"
#define TOKDATA_VERSION 1u
#define TOKDATA_NULL_STR 0xFFFFFFFFu

enum {
    FLAG_SCORES = 1u << 0,
    FLAG_ADD_BOS = 1u << 1,
    FLAG_ADD_EOS = 1u << 2,
    FLAG_SPACE_PREFIX = 1u << 3,
    FLAG_ALL = (1u << 4) - 1,
};

void flock_tokdata_free(flock_tokenizer_data *t)
{
    if (!t)
        return;
    if (t->tokens)
        for (uint32_t i = 0; i < t->n_vocab; i++)
            free(t->tokens[i]);
    free(t->tokens);
    free(t->scores);
    free(t->token_types);
    if (t->merges)
        for (uint32_t i = 0; i < t->n_merges; i++)
            free(t->merges[i]);
    free(t->merges);
    free(t->pre_pattern);
    free(t->chat_template);
    free(t->model_name);
    free(t);
}

flock_tokenizer_data *flock_tokdata_alloc(flock_tok_kind kind, uint32_t n_vocab, uint32_t n_merges,
                                          bool with_scores)
{
    flock_tokenizer_data *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->kind = kind;
    t->bos_id = t->eos_id = t->unk_id = t->pad_id = t->eot_id = -1;
    t->tokens = calloc(n_vocab ? n_vocab : 1, sizeof *t->tokens);
    t->token_types = calloc(n_vocab ? n_vocab : 1, sizeof *t->token_types);
    t->merges = calloc(n_merges ? n_merges : 1, sizeof *t->merges);
    if (with_scores)
        t->scores = calloc(n_vocab ? n_vocab : 1, sizeof *t->scores);
    /* Counts are set only once the arrays exist, so free() walks valid memory. */
    if (!t->tokens || !t->token_types || !t->merges || (with_scores && !t->scores)) {
        flock_tokdata_free(t);
        return NULL;
    }
    t->n_vocab = n_vocab;
    t->n_merges = n_merges;
    for (uint32_t i = 0; i < n_vocab; i++)
        t->token_types[i] = FLOCK_TOKTYPE_NORMAL;
    return t;
}

char *flock_tokdata_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

flock_status flock_tokdata_check(const flock_tokenizer_data *t, flock_error *err)
{
    if ((unsigned)t->kind >= FLOCK_TOK_KIND_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer kind %d is not a known kind", (int)t->kind);
    if (t->n_vocab == 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer has an empty vocabulary");
    const int32_t ids[5] = {t->bos_id, t->eos_id, t->unk_id, t->pad_id, t->eot_id};
    static const char *const names[5] = {"bos", "eos", "unk", "pad", "eot"};
    for (int i = 0; i < 5; i++)
        if (ids[i] < -1 || (ids[i] >= 0 && (uint32_t)ids[i] >= t->n_vocab))
            return flock_error_set(err, FLOCK_E_CORRUPT, "%s id %d is outside the vocabulary of %u",
                                   names[i], (int)ids[i], t->n_vocab);
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        if (!t->tokens[i])
            return flock_error_set(err, FLOCK_E_CORRUPT, "token %u is missing", i);
        if (t->token_types[i] < 0 || t->token_types[i] > FLOCK_TOKTYPE_BYTE)
            return flock_error_set(err, FLOCK_E_CORRUPT, "token %u has type %d (expected 0..6)", i,
                                   (int)t->token_types[i]);
    }
    for (uint32_t i = 0; i < t->n_merges; i++)
        if (!t->merges[i])
            return flock_error_set(err, FLOCK_E_CORRUPT, "merge %u is missing", i);
    return FLOCK_OK;
}

/* ---- serialize ------------------------------------------------------------ */

typedef flock_wbuf wbuf;

static void wb_str(wbuf *w, const char *s)
{
    if (!s) {
        flock_wbuf_u32(w, TOKDATA_NULL_STR);
        return;
    }
    size_t n = strlen(s);
    if (n >= TOKDATA_NULL_STR) {
        w->oom = true; /* cannot be represented; reported as an argument error */
        return;
    }
    flock_wbuf_u32(w, (uint32_t)n);
    uint8_t *d = flock_wbuf_take(w, n);
    if (d && n)
        memcpy(d, s, n);
}

flock_status flock_tokdata_serialize(const flock_tokenizer_data *t, uint8_t **out, size_t *out_size,
                                     flock_error *err)
{
    if (!t || !out || !out_size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokdata_serialize: NULL argument");
    if (!t->tokens || !t->token_types || (t->n_merges && !t->merges))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokdata_serialize: missing arrays");
    FORWARD_IF_ERROR(flock_tokdata_check(t, err), err, "tokdata_serialize");

    wbuf w = {0};
    uint8_t *m = flock_wbuf_take(&w, 4);
    if (m)
        memcpy(m, TOKDATA_MAGIC, 4);
    flock_wbuf_u32(&w, TOKDATA_VERSION);
    flock_wbuf_u32(&w, (uint32_t)t->kind);
    flock_wbuf_u32(&w, t->n_vocab);
    flock_wbuf_u32(&w, t->n_merges);
    uint32_t flags = (t->scores ? FLAG_SCORES : 0) | (t->add_bos ? FLAG_ADD_BOS : 0) |
                     (t->add_eos ? FLAG_ADD_EOS : 0) | (t->add_space_prefix ? FLAG_SPACE_PREFIX : 0);
    flock_wbuf_u32(&w, flags);
    const int32_t ids[5] = {t->bos_id, t->eos_id, t->unk_id, t->pad_id, t->eot_id};
    for (int i = 0; i < 5; i++)
        flock_wbuf_u32(&w, (uint32_t)ids[i]);
    wb_str(&w, t->pre_pattern);
    wb_str(&w, t->chat_template);
    wb_str(&w, t->model_name);
    for (uint32_t i = 0; i < t->n_vocab; i++)
        wb_str(&w, t->tokens[i]);
    if (t->scores) {
        for (uint32_t i = 0; i < t->n_vocab; i++) {
            uint32_t u;
            memcpy(&u, &t->scores[i], 4);
            flock_wbuf_u32(&w, u);
        }
    }
    uint8_t *ty = flock_wbuf_take(&w, t->n_vocab);
    if (ty)
        for (uint32_t i = 0; i < t->n_vocab; i++)
            ty[i] = (uint8_t)t->token_types[i];
    for (uint32_t i = 0; i < t->n_merges; i++)
        wb_str(&w, t->merges[i]);
    if (w.oom) {
        free(w.p);
        return flock_error_set(err, FLOCK_E_NOMEM, "tokdata_serialize: out of memory");
    }
    *out = w.p;
    *out_size = w.len;
    return FLOCK_OK;
}

/* ---- deserialize ---------------------------------------------------------- */

/* Reads a length-prefixed string into a fresh C string (*s = NULL for the
 * NULL marker unless `allow_null` is false). */
static flock_status rd_str(flock_reader *r, char **s, bool allow_null, const char *what,
                           flock_error *err)
{
    size_t at = r->off;
    uint32_t n;
    if (!flock_rd_u32(r, &n))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "%s: length at offset %zu is cut off", what, at);
    if (n == TOKDATA_NULL_STR) {
        if (!allow_null)
            return flock_error_set(err, FLOCK_E_CORRUPT, "%s at offset %zu may not be absent", what, at);
        *s = NULL;
        return FLOCK_OK;
    }
    const uint8_t *p = flock_rd_span(r, n);
    if (!p)
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "%s at offset %zu: length %u but only %zu bytes left", what, at, n,
                               flock_rd_left(r));
    if (memchr(p, 0, n))
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s at offset %zu holds a NUL byte", what, at);
    *s = flock_tokdata_strndup((const char *)p, n);
    if (!*s)
        return flock_error_set(err, FLOCK_E_NOMEM, "%s: out of memory", what);
    return FLOCK_OK;
}

static flock_status deserialize_body(flock_reader *r, flock_tokenizer_data **out, flock_error *err)
{
    uint8_t magic[4];
    if (!flock_rd_bytes(r, magic, 4))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "tokenizer data shorter than its magic");
    if (memcmp(magic, TOKDATA_MAGIC, 4) != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "bad magic (expected \"FLTK\")");
    uint32_t hdr[9];
    for (int i = 0; i < 9; i++)
        if (!flock_rd_u32(r, &hdr[i]))
            return flock_error_set(err, FLOCK_E_TRUNCATED, "header cut off at offset %zu", r->off);
    uint32_t version = hdr[0], kind = hdr[1], n_vocab = hdr[2], n_merges = hdr[3], flags = hdr[4];
    if (version > TOKDATA_VERSION || version == 0)
        return flock_error_set(err, version ? FLOCK_E_VERSION : FLOCK_E_CORRUPT,
                               "tokenizer data version %u (this reader knows 1)", version);
    if (kind >= FLOCK_TOK_KIND_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tokenizer kind %u (expected < %d)", kind,
                               FLOCK_TOK_KIND_COUNT);
    if (flags & ~(uint32_t)FLAG_ALL)
        return flock_error_set(err, FLOCK_E_CORRUPT, "unknown flags 0x%x", flags);
    /* Every token takes at least 4 (length) + 1 (type) bytes, every merge 4. */
    size_t left = flock_rd_left(r);
    if (n_vocab == 0 || n_vocab > left / 5)
        return flock_error_set(err, FLOCK_E_CORRUPT, "n_vocab %u impossible with %zu bytes left",
                               n_vocab, left);
    if (n_merges > (left - (size_t)n_vocab * 5) / 4)
        return flock_error_set(err, FLOCK_E_CORRUPT, "n_merges %u impossible with %zu bytes left",
                               n_merges, left);

    flock_tokenizer_data *t = flock_tokdata_alloc((flock_tok_kind)kind, n_vocab, n_merges,
                                                  flags & FLAG_SCORES);
    if (!t)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %u tokens", n_vocab);
    t->add_bos = flags & FLAG_ADD_BOS;
    t->add_eos = flags & FLAG_ADD_EOS;
    t->add_space_prefix = flags & FLAG_SPACE_PREFIX;
    t->bos_id = (int32_t)hdr[5];
    t->eos_id = (int32_t)hdr[6];
    t->unk_id = (int32_t)hdr[7];
    t->pad_id = (int32_t)hdr[8];
    flock_status st = FLOCK_OK;
    uint32_t eot = TOKDATA_NULL_STR;
    if (!flock_rd_u32(r, &eot))
        st = flock_error_set(err, FLOCK_E_TRUNCATED, "header cut off at offset %zu", r->off);
    t->eot_id = (int32_t)eot;
    if (!st)
        st = rd_str(r, &t->pre_pattern, true, "pre_pattern", err);
    if (!st)
        st = rd_str(r, &t->chat_template, true, "chat_template", err);
    if (!st)
        st = rd_str(r, &t->model_name, true, "model_name", err);
    for (uint32_t i = 0; !st && i < n_vocab; i++) {
        st = rd_str(r, &t->tokens[i], false, "token", err);
        if (st)
            flock_error_prefix(err, st, "token %u", i);
    }
    if (!st && t->scores) {
        for (uint32_t i = 0; i < n_vocab; i++)
            if (!flock_rd_f32(r, &t->scores[i])) {
                st = flock_error_set(err, FLOCK_E_TRUNCATED, "scores cut off at token %u", i);
                break;
            }
    }
    if (!st) {
        const uint8_t *ty = flock_rd_span(r, n_vocab);
        if (!ty)
            st = flock_error_set(err, FLOCK_E_TRUNCATED, "token types cut off at offset %zu", r->off);
        for (uint32_t i = 0; !st && i < n_vocab; i++)
            t->token_types[i] = ty[i];
    }
    for (uint32_t i = 0; !st && i < n_merges; i++) {
        st = rd_str(r, &t->merges[i], false, "merge", err);
        if (st)
            flock_error_prefix(err, st, "merge %u", i);
    }
    if (!st && flock_rd_left(r) != 0)
        st = flock_error_set(err, FLOCK_E_CORRUPT, "%zu trailing bytes after the merges",
                             flock_rd_left(r));
    if (!st)
        st = flock_tokdata_check(t, err);
    if (st) {
        flock_tokdata_free(t);
        return st;
    }
    *out = t;
    return FLOCK_OK;
}

flock_status flock_tokdata_deserialize(const void *data, size_t size, flock_tokenizer_data **out,
                                       flock_error *err)
{
    if ((!data && size) || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokdata_deserialize: NULL argument");
    flock_reader r = flock_reader_init(data, size);
    FORWARD_IF_ERROR(deserialize_body(&r, out, err), err, "tokenizer data");
    return FLOCK_OK;
}
