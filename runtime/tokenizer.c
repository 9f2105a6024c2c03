/* Tokenizer tables, creation, accessors and decoding. Encoding is in
 * tokenize.c. */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* GPT-2's pre-tokenizer, used when the data names no pattern. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- GPT-2 byte <-> unicode mapping ----------------------------------------
 * Printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) map to the same
 * code point; the other 68 bytes map to 256, 257, ... in byte order. */
static bool byte_is_printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint32_t byte_to_cp(int b)
{
    if (byte_is_printable(b))
        return (uint32_t)b;
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        n += !byte_is_printable(i);
    return 256 + n;
}

/* Inverse mapping: byte of each GPT-2 code point below 256 + 68, or -1. */
#define GPT2_CP_COUNT (256 + 68)

static void gpt2_cp_table(int16_t tab[GPT2_CP_COUNT])
{
    for (int i = 0; i < GPT2_CP_COUNT; i++)
        tab[i] = -1;
    for (int b = 0; b < 256; b++)
        tab[byte_to_cp(b)] = (int16_t)b;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one UTF-8 character at s (n bytes left); returns its length, or 0
 * when the bytes there are not valid UTF-8. */
static size_t get_utf8(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* ---- hash tables ---------------------------------------------------------- */

static uint64_t table_size(uint64_t n)
{
    uint64_t s = 16;
    while (s < 2 * n + 2)
        s *= 2;
    return s;
}

int32_t flock_tok_lookup(const flock_tokenizer *t, const char *s, size_t n)
{
    uint64_t h = XXH3_64bits(s, n) & t->map.mask;
    for (;;) {
        int32_t id = t->map.slot[h];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->text[id], s, n) == 0)
            return id;
        h = (h + 1) & t->map.mask;
    }
}

static flock_status build_strmap(flock_tokenizer *t, flock_error *err)
{
    uint64_t size = table_size(t->n_vocab);
    t->map.slot = malloc(size * sizeof *t->map.slot);
    if (!t->map.slot)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for the token table");
    memset(t->map.slot, 0xFF, size * sizeof *t->map.slot);
    t->map.mask = size - 1;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        if (flock_tok_lookup(t, t->text[i], t->len[i]) >= 0)
            continue; /* duplicate spelling: the first id wins, as in llama.cpp */
        uint64_t h = XXH3_64bits(t->text[i], t->len[i]) & t->map.mask;
        while (t->map.slot[h] >= 0)
            h = (h + 1) & t->map.mask;
        t->map.slot[h] = (int32_t)i;
    }
    return FLOCK_OK;
}

static uint64_t pair_hash(uint64_t k)
{
    return XXH3_64bits(&k, sizeof k);
}

/* Merge rank table on (left id, right id). Merges naming tokens that are not
 * in the vocabulary, or whose result is not, can never apply and are dropped. */
static flock_status build_merges(flock_tokenizer *t, const flock_tokenizer_data *d, flock_error *err)
{
    uint64_t size = table_size(d->n_merges);
    tok_pairmap *m = &t->merges;
    m->key = calloc(size, sizeof *m->key);
    m->rank = malloc(size * sizeof *m->rank);
    m->result = malloc(size * sizeof *m->result);
    if (!m->key || !m->rank || !m->result)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %u merges", d->n_merges);
    m->mask = size - 1;
    for (uint32_t r = 0; r < d->n_merges; r++) {
        const char *s = d->merges[r];
        const char *sp = s[0] ? strchr(s + 1, ' ') : NULL; /* the split is the first space after char 0 */
        if (!sp)
            continue;
        int32_t a = flock_tok_lookup(t, s, (size_t)(sp - s));
        int32_t b = flock_tok_lookup(t, sp + 1, strlen(sp + 1));
        if (a < 0 || b < 0)
            continue;
        size_t la = t->len[a], lb = t->len[b];
        char stackbuf[256];
        char *joined = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
        if (!joined)
            return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        memcpy(joined, t->text[a], la);
        memcpy(joined + la, t->text[b], lb);
        int32_t res = flock_tok_lookup(t, joined, la + lb);
        if (joined != stackbuf)
            free(joined);
        if (res < 0)
            continue;
        uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
        uint64_t h = pair_hash(key) & m->mask;
        while (m->key[h] && m->key[h] != key)
            h = (h + 1) & m->mask;
        if (m->key[h])
            continue; /* a repeated merge keeps its first (lowest) rank */
        m->key[h] = key;
        m->rank[h] = (int32_t)r;
        m->result[h] = res;
    }
    return FLOCK_OK;
}

/* ---- special tokens ------------------------------------------------------- */


static flock_status build_special(flock_tokenizer *t, flock_error *err)
{
    tok_special *sp = &t->special;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        uint8_t ty = t->type[i];
        if (ty == FLOCK_TOKTYPE_CONTROL || ty == FLOCK_TOKTYPE_USER_DEFINED)
            bytes += t->len[i];
    }
    /* At most one node per byte, plus the root. */
    uint64_t size = table_size(bytes);
    sp->term = malloc((bytes + 1) * sizeof *sp->term);
    sp->ekey = calloc(size, sizeof *sp->ekey);
    sp->echild = malloc(size * sizeof *sp->echild);
    if (!sp->term || !sp->ekey || !sp->echild)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for the special-token trie");
    sp->emask = size - 1;
    sp->n_nodes = 1;
    sp->term[0] = -1;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        uint8_t ty = t->type[i];
        if ((ty != FLOCK_TOKTYPE_CONTROL && ty != FLOCK_TOKTYPE_USER_DEFINED) || t->len[i] == 0)
            continue;
        uint32_t node = 0;
        for (uint32_t k = 0; k < t->len[i]; k++) {
            uint8_t b = (uint8_t)t->text[i][k];
            uint32_t child = flock_tok_trie_child(sp, node, b);
            if (!child) {
                child = sp->n_nodes++;
                sp->term[child] = -1;
                uint64_t key = ((uint64_t)node << 8 | b) + 1;
                uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20 & sp->emask;
                while (sp->ekey[h])
                    h = (h + 1) & sp->emask;
                sp->ekey[h] = key;
                sp->echild[h] = child;
            }
            node = child;
        }
        if (sp->term[node] < 0)
            sp->term[node] = (int32_t)i; /* a repeated spelling keeps the first id */
    }
    return FLOCK_OK;
}

/* ---- decoded bytes of each token ------------------------------------------ */

/* Writes the bytes token i stands for into o (capacity >= len[i]; decoding
 * never grows a token) and returns the count. */
static size_t decode_token_text(const flock_tokenizer *t, uint32_t i, const int16_t *cp2b, char *o)
{
    const char *s = t->text[i];
    size_t n = t->len[i], k = 0;
    uint8_t ty = t->type[i];
    if (ty == FLOCK_TOKTYPE_CONTROL || ty == FLOCK_TOKTYPE_USER_DEFINED || ty == FLOCK_TOKTYPE_UNUSED ||
        ty == FLOCK_TOKTYPE_UNKNOWN) {
        memcpy(o, s, n);
        return n;
    }
    if (t->kind == FLOCK_TOK_SPM) {
        unsigned v;
        char tail;
        if (ty == FLOCK_TOKTYPE_BYTE && n == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>') {
            o[0] = (char)v;
            return 1;
        }
        for (size_t p = 0; p < n;) {
            if (p + 3 <= n && memcmp(s + p, "\xE2\x96\x81", 3) == 0) { /* U+2581 */
                o[k++] = ' ';
                p += 3;
            } else {
                o[k++] = s[p++];
            }
        }
        return k;
    }
    for (size_t p = 0; p < n;) { /* byte-level: each char is one byte */
        uint32_t cp;
        size_t l = get_utf8((const uint8_t *)s + p, n - p, &cp);
        int b = l && cp < GPT2_CP_COUNT ? cp2b[cp] : -1;
        if (b >= 0) {
            o[k++] = (char)b;
            p += l;
        } else { /* not a mapped char: keep the bytes as they are */
            size_t c = l ? l : 1;
            memcpy(o + k, s + p, c);
            k += c;
            p += c;
        }
    }
    return k;
}

static flock_status build_decoded(flock_tokenizer *t, flock_error *err)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++)
        total += t->len[i];
    t->dec = malloc(total ? total : 1);
    t->dec_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->dec_off);
    if (!t->dec || !t->dec_off)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    int16_t cp2b[GPT2_CP_COUNT];
    gpt2_cp_table(cp2b);
    uint64_t off = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        t->dec_off[i] = off;
        size_t k = decode_token_text(t, i, cp2b, t->dec + off);
        off += k;
        if (k > t->max_dec)
            t->max_dec = k;
    }
    t->dec_off[t->n_vocab] = off;
    return FLOCK_OK;
}

/* ---- create / free -------------------------------------------------------- */

static flock_status compile_patterns(flock_tokenizer *t, const char *patterns, flock_error *err)
{
    const char *p = patterns ? patterns : gpt2_pattern;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (t->n_re == FLOCK_TOK_MAX_PATTERNS)
            return flock_error_set(err, FLOCK_E_UNSUPPORTED, "more than %d pre-tokenizer patterns",
                                   FLOCK_TOK_MAX_PATTERNS);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, n, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return flock_error_set(err, FLOCK_E_CORRUPT, "pre-tokenizer pattern %d: %s at offset %zu",
                                   t->n_re, (const char *)msg, (size_t)eo);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted when JIT is unavailable */
        t->re[t->n_re++] = re;
        p += n + (e != NULL);
    }
    return FLOCK_OK;
}

static flock_status create(const flock_tokenizer_data *d, flock_tokenizer *t, flock_error *err)
{
    t->kind = d->kind;
    t->n_vocab = d->n_vocab;
    t->bos = d->bos_id;
    t->eos = d->eos_id;
    t->eot = d->eot_id;
    t->unk = d->unk_id;
    t->add_bos = d->add_bos && d->bos_id >= 0;
    t->add_eos = d->add_eos && d->eos_id >= 0;
    t->add_space_prefix = d->add_space_prefix;
    const char *mn = d->model_name ? d->model_name : "";
    t->ignore_merges = strcmp(mn, "llama3") == 0 || strcmp(mn, "llama-bpe") == 0 ||
                       strcmp(mn, "llama-v3") == 0;
    t->text = calloc(d->n_vocab, sizeof *t->text);
    t->len = malloc(d->n_vocab * sizeof *t->len);
    t->type = malloc(d->n_vocab);
    t->score = malloc(d->n_vocab * sizeof *t->score);
    if (!t->text || !t->len || !t->type || !t->score)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %u tokens", d->n_vocab);
    /* One block for every token's text (NUL-terminated, back to back): a
     * malloc per token cost 16+ bytes of heap overhead each (0.8 MB on a
     * 49k vocabulary) and scattered the texts over the heap. */
    size_t total = 0;
    for (uint32_t i = 0; i < d->n_vocab; i++) {
        size_t n = strlen(d->tokens[i]);
        if (n > UINT32_MAX / 4)
            return flock_error_set(err, FLOCK_E_RANGE, "token %u is %zu bytes long", i, n);
        t->len[i] = (uint32_t)n;
        total += n + 1;
    }
    if (!(t->text_pool = malloc(total ? total : 1)))
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %zu bytes of token text", total);
    char *p = t->text_pool;
    for (uint32_t i = 0; i < d->n_vocab; i++) {
        memcpy(p, d->tokens[i], (size_t)t->len[i] + 1);
        t->text[i] = p;
        p += t->len[i] + 1;
        t->type[i] = (uint8_t)d->token_types[i];
        t->score[i] = d->scores ? d->scores[i] : 0.0f;
    }
    flock_status st;
    if ((st = build_strmap(t, err)) || (st = build_special(t, err)) || (st = build_decoded(t, err)))
        return st;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t n;
        if (t->kind == FLOCK_TOK_BPE)
            n = put_utf8(buf, byte_to_cp(b));
        else
            n = (size_t)snprintf(buf, sizeof buf, "<0x%02X>", b);
        t->byte_id[b] = flock_tok_lookup(t, buf, n);
    }
    if (t->kind == FLOCK_TOK_BPE) {
        if ((st = build_merges(t, d, err)) || (st = compile_patterns(t, d->pre_pattern, err)))
            return st;
    }
    return FLOCK_OK;
}

flock_status flock_tokenizer_create(const flock_tokenizer_data *d, flock_tokenizer **out, flock_error *err)
{
    if (!d || !out || !d->tokens || !d->token_types || d->n_vocab == 0 || d->n_vocab > INT32_MAX ||
        (unsigned)d->kind >= FLOCK_TOK_KIND_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokenizer_create: bad tokenizer data");
    for (uint32_t i = 0; i < d->n_vocab; i++)
        if (!d->tokens[i] || d->token_types[i] < 0 || d->token_types[i] > FLOCK_TOKTYPE_BYTE)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokenizer_create: token %u is bad", i);
    flock_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    flock_status st = create(d, t, err);
    if (st) {
        flock_tokenizer_free(t);
        return st;
    }
    *out = t;
    return FLOCK_OK;
}

void flock_tokenizer_free(flock_tokenizer *t)
{
    if (!t)
        return;
    free(t->text_pool);
    free(t->text);
    free(t->len);
    free(t->type);
    free(t->score);
    free(t->map.slot);
    free(t->merges.key);
    free(t->merges.rank);
    free(t->merges.result);
    free(t->special.term);
    free(t->special.ekey);
    free(t->special.echild);
    free(t->dec);
    free(t->dec_off);
    for (int i = 0; i < t->n_re; i++)
        pcre2_code_free(t->re[i]);
    free(t);
}

uint32_t flock_tokenizer_n_vocab(const flock_tokenizer *t) { return t->n_vocab; }
int32_t flock_tokenizer_bos(const flock_tokenizer *t) { return t->bos; }
int32_t flock_tokenizer_eos(const flock_tokenizer *t) { return t->eos; }
int32_t flock_tokenizer_eot(const flock_tokenizer *t) { return t->eot; }

bool flock_tokenizer_is_eog(const flock_tokenizer *t, int32_t id)
{
    return id >= 0 && (id == t->eos || id == t->eot);
}

const char *flock_tokenizer_token_text(const flock_tokenizer *t, int32_t id)
{
    return id >= 0 && (uint32_t)id < t->n_vocab ? t->text[id] : NULL;
}

int32_t flock_tokenizer_find(const flock_tokenizer *t, const char *s, size_t len)
{
    return flock_tok_lookup(t, s, len);
}

/* ---- decoding ------------------------------------------------------------- */

static bool emits(const flock_tokenizer *t, int32_t id, bool special)
{
    uint8_t ty = t->type[id];
    return special || (ty != FLOCK_TOKTYPE_CONTROL && ty != FLOCK_TOKTYPE_UNUSED);
}

size_t flock_tokenizer_token_bytes(const flock_tokenizer *t, int32_t id, bool special, char *out, size_t cap)
{
    if (id < 0 || (uint32_t)id >= t->n_vocab || !emits(t, id, special))
        return 0;
    size_t n = (size_t)(t->dec_off[id + 1] - t->dec_off[id]);
    if (n <= cap)
        memcpy(out, t->dec + t->dec_off[id], n);
    return n;
}

size_t flock_tokenizer_max_token_bytes(const flock_tokenizer *t) { return t->max_dec; }

void flock_tok_decoder_init(flock_tok_decoder *d, bool special)
{
    memset(d, 0, sizeof *d);
    d->special = special;
}

static const char repl[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* Expected length of a UTF-8 sequence from its lead byte; 0 if not a lead. */
static uint32_t utf8_need(uint8_t c)
{
    return c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

/* Whether byte c may follow the pending bytes (second-byte limits rule out
 * overlong forms, surrogates and code points above U+10FFFF). */
static bool utf8_continues(const flock_tok_decoder *d, uint8_t c)
{
    if ((c & 0xC0) != 0x80)
        return false;
    if (d->n_pend == 1) {
        uint8_t l = d->pend[0];
        if (l == 0xE0)
            return c >= 0xA0;
        if (l == 0xED)
            return c <= 0x9F;
        if (l == 0xF0)
            return c >= 0x90;
        if (l == 0xF4)
            return c <= 0x8F;
    }
    return true;
}

static size_t feed_byte(flock_tok_decoder *d, uint8_t c, char *o)
{
    size_t k = 0;
    if (d->n_pend) {
        if (utf8_continues(d, c)) {
            d->pend[d->n_pend++] = c;
            if (d->n_pend == utf8_need(d->pend[0])) {
                memcpy(o, d->pend, d->n_pend);
                k = d->n_pend;
                d->n_pend = 0;
            }
            return k;
        }
        memcpy(o, repl, 3); /* the incomplete sequence */
        k = 3;
        d->n_pend = 0;
    }
    uint32_t need = utf8_need(c);
    if (need == 1) {
        o[k++] = (char)c;
    } else if (need == 0) {
        memcpy(o + k, repl, 3);
        k += 3;
    } else {
        d->pend[0] = c;
        d->n_pend = 1;
    }
    return k;
}

flock_status flock_tok_decode(const flock_tokenizer *t, flock_tok_decoder *d, int32_t id, char *out,
                              size_t cap, size_t *n)
{
    if (id < 0 || (uint32_t)id >= t->n_vocab)
        return FLOCK_E_INVALID_ARG;
    *n = 0;
    if (!emits(t, id, d->special))
        return FLOCK_OK;
    const uint8_t *s = (const uint8_t *)t->dec + t->dec_off[id];
    size_t len = (size_t)(t->dec_off[id + 1] - t->dec_off[id]);
    if (cap < 3 * len + 8)
        return FLOCK_E_RANGE;
    uint8_t ty = t->type[id];
    if (!d->started && len > 0 && ty != FLOCK_TOKTYPE_CONTROL) {
        /* SPM: the space added in front of the text is not part of it. */
        if (t->kind == FLOCK_TOK_SPM && t->add_space_prefix && s[0] == ' ') {
            s++;
            len--;
        }
        d->started = true;
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        k += feed_byte(d, s[i], out + k);
    *n = k;
    return FLOCK_OK;
}

size_t flock_tok_decoder_flush(flock_tok_decoder *d, char *out, size_t cap)
{
    if (!d->n_pend || cap < 3)
        return 0;
    d->n_pend = 0;
    memcpy(out, repl, 3);
    return 3;
}

flock_status flock_tokenizer_decode_all(const flock_tokenizer *t, const int32_t *ids, size_t n,
                                        bool special, char **out, flock_error *err)
{
    size_t cap = 64, len = 0, chunk = 3 * t->max_dec + 8;
    char *buf = malloc(cap);
    if (!buf)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    flock_tok_decoder d;
    flock_tok_decoder_init(&d, special);
    for (size_t i = 0; i <= n; i++) {
        if (cap - len < chunk + 1) {
            size_t nc = (cap + chunk) * 2;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
            }
            buf = nb;
            cap = nc;
        }
        if (i == n) {
            len += flock_tok_decoder_flush(&d, buf + len, cap - len);
            break;
        }
        size_t k;
        flock_status st = flock_tok_decode(t, &d, ids[i], buf + len, cap - len, &k);
        if (st) {
            free(buf);
            return flock_error_set(err, st, "decode: token %zu (id %d) is not in the vocabulary of %u",
                                   i, (int)ids[i], t->n_vocab);
        }
        len += k;
    }
    buf[len] = '\0';
    *out = buf;
    return FLOCK_OK;
}
