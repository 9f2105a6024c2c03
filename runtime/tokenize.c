/* Text -> token ids: special-token partition, then byte-level BPE over the
 * pre-tokenizer's pieces, or SentencePiece-style BPE over each fragment.
 *
 * Both merge loops keep the symbols in a linked list and the candidate pairs
 * in a binary heap (O(n log n) per piece, so long runs of one character are
 * not quadratic); a heap entry remembers the pair's combined length, and an
 * entry whose symbols changed since it was pushed is skipped when popped. */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct sym {
    uint32_t start, len; /* bytes in the piece; len 0 = merged away */
    int32_t prev, next;
    int32_t id;          /* BPE: current token id */
} sym;

typedef struct qent {
    double prio;         /* smaller pops first: BPE rank, SPM -score */
    int32_t left, right;
    uint32_t size;       /* left.len + right.len when pushed */
    int32_t result;      /* BPE: merged token id */
} qent;

typedef struct span {
    size_t off, len;
} span;

typedef struct enc {
    const flock_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    sym *sy;
    size_t cap_sy;
    qent *q;
    size_t n_q, cap_q;
    char *buf; /* SPM escaped text / BPE mapped piece */
    size_t cap_buf;
    span *pa, *pb;
    size_t cap_p;
    pcre2_match_data *md;
    bool oom;
} enc;

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static void push_id(enc *e, int32_t id)
{
    if (id < 0 || e->oom)
        return;
    if (!grow((void **)&e->ids, &e->cap_ids, e->n_ids + 1, sizeof *e->ids)) {
        e->oom = true;
        return;
    }
    e->ids[e->n_ids++] = id;
}

/* ---- heap ----------------------------------------------------------------- */

static bool q_less(const qent *a, const qent *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static void q_push(enc *e, qent v)
{
    if (!grow((void **)&e->q, &e->cap_q, e->n_q + 1, sizeof *e->q)) {
        e->oom = true;
        return;
    }
    size_t i = e->n_q++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!q_less(&v, &e->q[p]))
            break;
        e->q[i] = e->q[p];
        i = p;
    }
    e->q[i] = v;
}

static qent q_pop(enc *e)
{
    qent top = e->q[0], last = e->q[--e->n_q];
    size_t i = 0, n = e->n_q;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && q_less(&e->q[c + 1], &e->q[c]))
            c++;
        if (!q_less(&e->q[c], &last))
            break;
        e->q[i] = e->q[c];
        i = c;
    }
    if (n)
        e->q[i] = last;
    return top;
}

static bool q_valid(const enc *e, const qent *q)
{
    const sym *l = &e->sy[q->left], *r = &e->sy[q->right];
    return l->len && r->len && l->next == q->right && l->len + r->len == q->size;
}

static void merge_syms(enc *e, int32_t l, int32_t r)
{
    sym *sl = &e->sy[l], *sr = &e->sy[r];
    sl->len += sr->len;
    sl->next = sr->next;
    if (sr->next >= 0)
        e->sy[sr->next].prev = l;
    sr->len = 0;
}

/* ---- byte-level BPE ------------------------------------------------------- */

static void bpe_try_pair(enc *e, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const tok_pairmap *m = &e->t->merges;
    int32_t a = e->sy[l].id, b = e->sy[r].id;
    if (a < 0 || b < 0)
        return;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint64_t h = XXH3_64bits(&key, sizeof key) & m->mask;
    while (m->key[h] && m->key[h] != key)
        h = (h + 1) & m->mask;
    if (!m->key[h])
        return;
    qent q = {(double)m->rank[h], l, r, e->sy[l].len + e->sy[r].len, m->result[h]};
    q_push(e, q);
}

/* One pre-tokenizer piece: bytes -> GPT-2 chars -> ranked merges -> ids. */
static void bpe_piece(enc *e, const uint8_t *p, size_t n)
{
    const flock_tokenizer *t = e->t;
    if (n == 0)
        return;
    if (t->ignore_merges) { /* Llama 3: a piece spelled by one token is that token */
        if (!grow((void **)&e->buf, &e->cap_buf, 2 * n, 1)) {
            e->oom = true;
            return;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[p[i]];
            if (id < 0)
                break;
            memcpy(e->buf + k, t->text[id], t->len[id]);
            k += t->len[id];
        }
        int32_t whole = flock_tok_lookup(t, e->buf, k);
        if (whole >= 0) {
            push_id(e, whole);
            return;
        }
    }
    if (n > INT32_MAX || !grow((void **)&e->sy, &e->cap_sy, n, sizeof *e->sy)) {
        e->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        e->sy[i] = (sym){(uint32_t)i, 1, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, t->byte_id[p[i]]};
    e->n_q = 0;
    for (size_t i = 0; i + 1 < n; i++)
        bpe_try_pair(e, (int32_t)i, (int32_t)i + 1);
    while (e->n_q && !e->oom) {
        qent q = q_pop(e);
        if (!q_valid(e, &q))
            continue;
        merge_syms(e, q.left, q.right);
        e->sy[q.left].id = q.result;
        bpe_try_pair(e, e->sy[q.left].prev, q.left);
        bpe_try_pair(e, q.left, e->sy[q.left].next);
    }
    for (int32_t i = 0; i >= 0; i = e->sy[i].next)
        push_id(e, e->sy[i].id >= 0 ? e->sy[i].id : t->unk);
}

/* Splits [p, p+n) (valid UTF-8) with each pre-tokenizer pattern in turn and
 * runs BPE on the final pieces. */
static void bpe_run(enc *e, const uint8_t *p, size_t n)
{
    const flock_tokenizer *t = e->t;
    if (!grow((void **)&e->pa, &e->cap_p, n + 1, sizeof *e->pa)) {
        e->oom = true;
        return;
    }
    size_t cap_b = e->cap_p;
    span *nb = realloc(e->pb, cap_b * sizeof *nb);
    if (!nb) {
        e->oom = true;
        return;
    }
    e->pb = nb;
    size_t n_a = 1;
    e->pa[0] = (span){0, n};
    for (int r = 0; r < t->n_re; r++) {
        size_t n_b = 0;
        for (size_t i = 0; i < n_a; i++) {
            const uint8_t *s = p + e->pa[i].off;
            size_t len = e->pa[i].len, last = 0, off = 0;
            while (off < len) {
                int rc = pcre2_match(t->re[r], s, len, off, PCRE2_NO_UTF_CHECK, e->md, NULL);
                if (rc < 0)
                    break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
                size_t ms = ov[0], me = ov[1];
                if (me <= ms) { /* empty match: step over one character */
                    off = ms + 1;
                    while (off < len && (s[off] & 0xC0) == 0x80)
                        off++;
                    continue;
                }
                if (ms > last)
                    e->pb[n_b++] = (span){e->pa[i].off + last, ms - last};
                e->pb[n_b++] = (span){e->pa[i].off + ms, me - ms};
                last = off = me;
            }
            if (last < len)
                e->pb[n_b++] = (span){e->pa[i].off + last, len - last};
        }
        span *tmp = e->pa;
        e->pa = e->pb;
        e->pb = tmp;
        n_a = n_b;
    }
    for (size_t i = 0; i < n_a && !e->oom; i++)
        bpe_piece(e, p + e->pa[i].off, e->pa[i].len);
}

/* Length of the valid UTF-8 character at s, or 0. */
static size_t utf8_char(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* A raw-text fragment for BPE: valid UTF-8 runs go through the regexes; an
 * invalid byte is a piece of its own (its byte token). */
static void bpe_fragment(enc *e, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && !e->oom) {
        size_t j = i, l;
        while (j < n && (l = utf8_char(p + j, n - j)) != 0)
            j += l;
        if (j > i)
            bpe_run(e, p + i, j - i);
        if (j < n)
            bpe_piece(e, p + j, 1);
        i = j + (j < n);
    }
}

/* ---- SentencePiece-style BPE ---------------------------------------------- */

static bool spm_mergeable(uint8_t ty)
{
    return ty == FLOCK_TOKTYPE_NORMAL || ty == FLOCK_TOKTYPE_USER_DEFINED || ty == 0;
}

static void spm_try_pair(enc *e, const char *text, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const sym *sl = &e->sy[l], *sr = &e->sy[r];
    int32_t id = flock_tok_lookup(e->t, text + sl->start, sl->len + sr->len);
    if (id < 0 || !spm_mergeable(e->t->type[id]))
        return;
    qent q = {-(double)e->t->score[id], l, r, sl->len + sr->len, id};
    q_push(e, q);
}

static void spm_fragment(enc *e, const uint8_t *p, size_t n, bool prefix_space)
{
    const flock_tokenizer *t = e->t;
    /* Spaces become U+2581 (3 bytes); the prefix adds one more. */
    if (n > (SIZE_MAX - 3) / 3 || !grow((void **)&e->buf, &e->cap_buf, 3 * n + 3, 1)) {
        e->oom = true;
        return;
    }
    size_t m = 0;
    if (prefix_space) {
        memcpy(e->buf, "\xE2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(e->buf + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            e->buf[m++] = (char)p[i];
        }
    }
    if (m == 0)
        return;
    if (m > INT32_MAX || !grow((void **)&e->sy, &e->cap_sy, m, sizeof *e->sy)) {
        e->oom = true;
        return;
    }
    const char *s = e->buf;
    int32_t ns = 0;
    for (size_t i = 0; i < m;) {
        size_t l = utf8_char((const uint8_t *)s + i, m - i);
        if (!l)
            l = 1; /* an invalid byte is a symbol of its own (byte fallback) */
        e->sy[ns] = (sym){(uint32_t)i, (uint32_t)l, ns - 1, -1, -1};
        if (ns > 0)
            e->sy[ns - 1].next = ns;
        ns++;
        i += l;
    }
    e->n_q = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        spm_try_pair(e, s, i, i + 1);
    while (e->n_q && !e->oom) {
        qent q = q_pop(e);
        if (!q_valid(e, &q))
            continue;
        merge_syms(e, q.left, q.right);
        spm_try_pair(e, s, e->sy[q.left].prev, q.left);
        spm_try_pair(e, s, q.left, e->sy[q.left].next);
    }
    for (int32_t i = 0; i >= 0; i = e->sy[i].next) {
        int32_t id = flock_tok_lookup(t, s + e->sy[i].start, e->sy[i].len);
        if (id >= 0) {
            push_id(e, id);
            continue;
        }
        for (uint32_t k = 0; k < e->sy[i].len; k++) { /* byte fallback */
            int32_t b = t->byte_id[(uint8_t)s[e->sy[i].start + k]];
            push_id(e, b >= 0 ? b : t->unk);
        }
    }
}

/* ---- driver --------------------------------------------------------------- */

/* Control / user-defined token spelled at text[pos], longest first. */
static int32_t match_special(const flock_tokenizer *t, const uint8_t *s, size_t n, bool parse_special)
{
    const tok_special *sp = &t->special;
    uint8_t b = s[0];
    for (uint32_t k = sp->start[b]; k < sp->start[b + 1]; k++) {
        int32_t id = sp->ids[k];
        if (t->type[id] == FLOCK_TOKTYPE_CONTROL && !parse_special)
            continue;
        if (t->len[id] <= n && memcmp(t->text[id], s, t->len[id]) == 0)
            return id;
    }
    return -1;
}

static void raw_fragment(enc *e, const uint8_t *p, size_t n, bool prev_special)
{
    if (e->t->kind == FLOCK_TOK_BPE)
        bpe_fragment(e, p, n);
    else
        spm_fragment(e, p, n, e->t->add_space_prefix && prev_special);
}

flock_status flock_tokenizer_encode(const flock_tokenizer *t, const char *text, size_t len,
                                    bool add_special, bool parse_special, int32_t **ids,
                                    size_t *n_ids, flock_error *err)
{
    if (!t || (!text && len) || !ids || !n_ids)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokenizer_encode: NULL argument");
    enc e = {.t = t};
    if (t->n_re && !(e.md = pcre2_match_data_create(1, NULL)))
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    if (add_special && t->add_bos)
        push_id(&e, t->bos);
    const uint8_t *s = (const uint8_t *)text;
    size_t raw = 0;
    /* llama.cpp: SPM prefixes a space to a fragment at the start and after
     * each special token. */
    bool prev_special = true;
    for (size_t i = 0; i < len && !e.oom;) {
        int32_t id = match_special(t, s + i, len - i, parse_special);
        if (id < 0) {
            i++;
            continue;
        }
        if (i > raw) {
            raw_fragment(&e, s + raw, i - raw, prev_special);
            prev_special = false;
        }
        push_id(&e, id);
        prev_special = true;
        i += t->len[id];
        raw = i;
    }
    if (len > raw)
        raw_fragment(&e, s + raw, len - raw, prev_special);
    if (add_special && t->add_eos)
        push_id(&e, t->eos);
    free(e.sy);
    free(e.q);
    free(e.buf);
    free(e.pa);
    free(e.pb);
    pcre2_match_data_free(e.md);
    if (e.oom) {
        free(e.ids);
        return flock_error_set(err, FLOCK_E_NOMEM, "tokenizer_encode: out of memory for %zu bytes", len);
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return FLOCK_OK;
}
