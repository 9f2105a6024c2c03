/* Tokenizer data from a Hugging Face tokenizer.json (+ tokenizer_config.json).
 *
 * Supported: model.type "BPE" either byte-level (a ByteLevel pre-tokenizer or
 * decoder: GPT-2 / SmolLM / Qwen / Llama 3 style, kind BPE) or SentencePiece-
 * like (byte_fallback, "▁" for spaces: Llama 2 / Gemma style, kind SPM, with
 * scores derived from the merge ranks: the token made by merge r gets -r). */
#include "flock/formats.h"
#include "error_impl.h"
#include "tokdata_internal.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jstr {
    char *p;
    size_t len, cap;
    bool oom;
} jstr;

static void js_add(jstr *s, const char *p, size_t n)
{
    if (s->oom || n > SIZE_MAX / 4 - s->len) {
        s->oom = true;
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = true;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v))
        return v;
    return NULL;
}

static const char *jget_str(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool jget_bool(json_object *o, const char *key, bool dflt)
{
    json_object *v = jget(o, key);
    return v && json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : dflt;
}

/* Appends one regex to the '\n'-separated pattern list; literal CR/LF in
 * the JSON pattern become the escapes \r / \n so the separator stays free. */
static void add_pattern(jstr *pat, const char *re)
{
    if (pat->len)
        js_add(pat, "\n", 1);
    for (const char *c = re; *c; c++) {
        if (*c == '\n')
            js_add(pat, "\\n", 2);
        else if (*c == '\r')
            js_add(pat, "\\r", 2);
        else
            js_add(pat, c, 1);
    }
}

typedef struct pre_info {
    jstr pat;
    bool byte_level;   /* ByteLevel seen (pre-tokenizer or decoder) */
    bool gpt2_regex;   /* ByteLevel(use_regex) is the only splitter */
    int n_split;
    bool metaspace_prefix;
    bool unsupported;
    char what[64];
} pre_info;

static void walk_pre(json_object *pt, pre_info *pi)
{
    const char *type = jget_str(pt, "type");
    if (!type)
        return;
    if (strcmp(type, "Sequence") == 0) {
        json_object *arr = jget(pt, "pretokenizers");
        size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
        for (size_t i = 0; i < n; i++)
            walk_pre(json_object_array_get_idx(arr, i), pi);
    } else if (strcmp(type, "Split") == 0) {
        const char *re = jget_str(jget(pt, "pattern"), "Regex");
        const char *lit = jget_str(jget(pt, "pattern"), "String");
        if (re) {
            add_pattern(&pi->pat, re);
            pi->n_split++;
        } else if (!(lit && strcmp(lit, " ") == 0)) { /* Gemma splits on " " after "▁" */
            pi->unsupported = true;
            snprintf(pi->what, sizeof pi->what, "Split without a regex");
        }
    } else if (strcmp(type, "Digits") == 0) {
        add_pattern(&pi->pat, jget_bool(pt, "individual_digits", false) ? "\\p{N}" : "\\p{N}+");
        pi->n_split++;
    } else if (strcmp(type, "ByteLevel") == 0) {
        pi->byte_level = true;
        if (jget_bool(pt, "use_regex", true)) {
            const char *g = flock_tokdata_pre_pattern("gpt2", 4);
            add_pattern(&pi->pat, g);
            pi->n_split++;
            pi->gpt2_regex = pi->n_split == 1;
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = jget_str(pt, "prepend_scheme");
        pi->metaspace_prefix = scheme ? strcmp(scheme, "never") != 0 : jget_bool(pt, "add_prefix_space", true);
    } else {
        pi->unsupported = true;
        snprintf(pi->what, sizeof pi->what, "pre-tokenizer %.40s", type);
    }
}

/* Whether the normalizer prepends "▁" (SentencePiece's dummy prefix). */
static bool normalizer_prepends(json_object *n)
{
    const char *type = jget_str(n, "type");
    if (!type)
        return false;
    if (strcmp(type, "Prepend") == 0)
        return true;
    if (strcmp(type, "Sequence") == 0) {
        json_object *arr = jget(n, "normalizers");
        size_t cnt = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
        for (size_t i = 0; i < cnt; i++)
            if (normalizer_prepends(json_object_array_get_idx(arr, i)))
                return true;
    }
    return false;
}

/* *out: the parsed document (the caller puts it); untouched on failure. */
static flock_status parse_json(const char *s, size_t len, const char *what, json_object **out, flock_error *err)
{
    RETURN_ERROR_IF(len > INT32_MAX, FLOCK_E_RANGE, err, "%s is larger than 2 GiB", what);
    json_tokener *tk = json_tokener_new_ex(64);
    RETURN_ERROR_IF(!tk, FLOCK_E_NOMEM, err, "out of memory");
    json_object *o = json_tokener_parse_ex(tk, s, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tk);
    flock_status st = FLOCK_OK;
    if (!o || je != json_tokener_success) {
        st = flock_error_set(err, FLOCK_E_CORRUPT, "%s: JSON error '%s' near offset %zu", what,
                             json_tokener_error_desc(je), json_tokener_get_parse_end(tk));
        json_object_put(o);
    } else {
        *out = o;
    }
    json_tokener_free(tk);
    return st;
}

/* A special token named by tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token(const flock_tokenizer_data *t, json_object *cfg, const char *key)
{
    json_object *v = jget(cfg, key);
    const char *s = NULL;
    if (v && json_object_is_type(v, json_type_string))
        s = json_object_get_string(v);
    else if (v)
        s = jget_str(v, "content");
    return s ? flock_tokdata_find(t, s) : -1;
}

static flock_status set_token(flock_tokenizer_data *t, int64_t id, const char *s, size_t len,
                              const char *what, flock_error *err)
{
    if (id < 0 || id >= (int64_t)t->n_vocab)
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s: id %lld out of range", what, (long long)id);
    if (memchr(s, 0, len))
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s: token %lld holds a NUL byte", what, (long long)id);
    char *d = flock_tokdata_strndup(s, len);
    if (!d)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    free(t->tokens[id]);
    t->tokens[id] = d;
    return FLOCK_OK;
}

/* Sorted (text, id) index for the merge-score lookups: the vocabulary can
 * hold 256k tokens and the merges as many, so a linear search is too slow. */
static int cmp_ids(const void *a, const void *b, void *user)
{
    const flock_tokenizer_data *t = user;
    return strcmp(t->tokens[*(const int32_t *)a], t->tokens[*(const int32_t *)b]);
}

static int32_t index_find(const flock_tokenizer_data *t, const int32_t *order, const char *s)
{
    uint32_t lo = 0, hi = t->n_vocab;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->tokens[order[mid]], s);
        if (c == 0)
            return order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static flock_status build(json_object *tj, json_object *cfg, flock_tokenizer_data **out, flock_error *err)
{
    json_object *model = jget(tj, "model");
    const char *mtype = jget_str(model, "type");
    if (!mtype || strcmp(mtype, "BPE") != 0)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "model.type '%.40s' (flock supports BPE)",
                               mtype ? mtype : "(none)");
    json_object *vocab = jget(model, "vocab");
    json_object *merges = jget(model, "merges");
    json_object *added = jget(tj, "added_tokens");
    if (!vocab || !json_object_is_type(vocab, json_type_object))
        return flock_error_set(err, FLOCK_E_CORRUPT, "model.vocab is missing or not an object");
    size_t n_merges = merges && json_object_is_type(merges, json_type_array) ? json_object_array_length(merges) : 0;
    size_t n_added = added && json_object_is_type(added, json_type_array) ? json_object_array_length(added) : 0;
    size_t n_entries = (size_t)json_object_object_length(vocab) + n_added;

    /* n_vocab = largest id + 1; ids may leave holes, but not absurd ones. */
    int64_t max_id = -1;
    struct json_object_iterator it = json_object_iter_begin(vocab), end = json_object_iter_end(vocab);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        json_object *v = json_object_iter_peek_value(&it);
        if (!json_object_is_type(v, json_type_int))
            return flock_error_set(err, FLOCK_E_TYPE, "model.vocab['%.40s'] is not an integer",
                                   json_object_iter_peek_name(&it));
        int64_t id = json_object_get_int64(v);
        max_id = id > max_id ? id : max_id;
    }
    for (size_t i = 0; i < n_added; i++) {
        int64_t id = json_object_get_int64(jget(json_object_array_get_idx(added, i), "id"));
        max_id = id > max_id ? id : max_id;
    }
    if (max_id < 0 || (uint64_t)max_id >= 2 * (uint64_t)n_entries + 1024 || max_id >= INT32_MAX)
        return flock_error_set(err, FLOCK_E_CORRUPT, "largest token id %lld for %zu entries",
                               (long long)max_id, n_entries);

    pre_info pi = {0};
    walk_pre(jget(tj, "pre_tokenizer"), &pi);
    const char *dec = jget_str(jget(tj, "decoder"), "type");
    if (dec && strcmp(dec, "ByteLevel") == 0)
        pi.byte_level = true;
    bool byte_fallback = jget_bool(model, "byte_fallback", false);
    flock_tok_kind kind = pi.byte_level ? FLOCK_TOK_BPE : FLOCK_TOK_SPM;
    flock_status st = FLOCK_OK;
    if (pi.unsupported && kind == FLOCK_TOK_BPE)
        st = flock_error_set(err, FLOCK_E_UNSUPPORTED, "%s", pi.what);
    else if (!pi.byte_level && !byte_fallback)
        st = flock_error_set(err, FLOCK_E_UNSUPPORTED, "BPE that is neither byte-level nor byte_fallback");
    if (st || pi.pat.oom) {
        free(pi.pat.p);
        return st ? st : flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }

    flock_tokenizer_data *t = flock_tokdata_alloc(kind, (uint32_t)max_id + 1, (uint32_t)n_merges,
                                                  kind == FLOCK_TOK_SPM);
    if (!t) {
        free(pi.pat.p);
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    if (kind == FLOCK_TOK_BPE && !pi.gpt2_regex && pi.pat.len) {
        t->pre_pattern = pi.pat.p;
        pi.pat.p = NULL;
    }
    free(pi.pat.p);

    it = json_object_iter_begin(vocab);
    for (; !st && !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *name = json_object_iter_peek_name(&it);
        st = set_token(t, json_object_get_int64(json_object_iter_peek_value(&it)), name, strlen(name),
                       "model.vocab", err);
    }
    for (size_t i = 0; !st && i < n_added; i++) {
        json_object *a = json_object_array_get_idx(added, i);
        json_object *c = jget(a, "content");
        if (!c || !json_object_is_type(c, json_type_string)) {
            st = flock_error_set(err, FLOCK_E_CORRUPT, "added_tokens[%zu] has no content", i);
            break;
        }
        int64_t id = json_object_get_int64(jget(a, "id"));
        st = set_token(t, id, json_object_get_string(c), (size_t)json_object_get_string_len(c),
                       "added_tokens", err);
        if (!st)
            t->token_types[id] = jget_bool(a, "special", false) ? FLOCK_TOKTYPE_CONTROL
                                                               : FLOCK_TOKTYPE_USER_DEFINED;
    }
    for (uint32_t i = 0; !st && i < t->n_vocab; i++) {
        if (!t->tokens[i]) { /* a hole in the ids */
            char buf[32];
            int n = snprintf(buf, sizeof buf, "[HOLE%u]", i);
            st = set_token(t, i, buf, (size_t)n, "vocab", err);
            t->token_types[i] = FLOCK_TOKTYPE_UNUSED;
        } else if (kind == FLOCK_TOK_SPM && t->token_types[i] == FLOCK_TOKTYPE_NORMAL) {
            unsigned b;
            char tail;
            if (strlen(t->tokens[i]) == 6 && sscanf(t->tokens[i], "<0x%2X%c", &b, &tail) == 2 && tail == '>')
                t->token_types[i] = FLOCK_TOKTYPE_BYTE;
        }
        if (t->scores)
            t->scores[i] = -1e9f; /* not made by any merge: never preferred */
    }
    int32_t *order = NULL;
    if (!st && t->scores) {
        order = malloc(sizeof *order * t->n_vocab);
        if (!order) {
            st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
            goto fail;
        }
        for (uint32_t i = 0; i < t->n_vocab; i++)
            order[i] = (int32_t)i;
        qsort_r(order, t->n_vocab, sizeof *order, cmp_ids, t); /* GNU: _GNU_SOURCE */
    }
    /* Merges: "a b" strings or ["a", "b"] pairs, both stored as "a b". */
    for (size_t i = 0; !st && i < n_merges; i++) {
        json_object *m = json_object_array_get_idx(merges, i);
        jstr s = {0};
        if (json_object_is_type(m, json_type_string)) {
            js_add(&s, json_object_get_string(m), (size_t)json_object_get_string_len(m));
        } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2 &&
                   json_object_is_type(json_object_array_get_idx(m, 0), json_type_string) &&
                   json_object_is_type(json_object_array_get_idx(m, 1), json_type_string)) {
            json_object *a = json_object_array_get_idx(m, 0), *b = json_object_array_get_idx(m, 1);
            js_add(&s, json_object_get_string(a), (size_t)json_object_get_string_len(a));
            js_add(&s, " ", 1);
            js_add(&s, json_object_get_string(b), (size_t)json_object_get_string_len(b));
        } else {
            st = flock_error_set(err, FLOCK_E_CORRUPT, "model.merges[%zu] is neither \"a b\" nor [a, b]", i);
            break;
        }
        if (s.oom || !s.p || memchr(s.p, 0, s.len)) {
            free(s.p);
            st = flock_error_set(err, s.oom ? FLOCK_E_NOMEM : FLOCK_E_CORRUPT, "model.merges[%zu] is bad", i);
            break;
        }
        t->merges[i] = s.p;
        if (t->scores) { /* SPM scores: earlier merges win */
            char *sp = strchr(s.p + (s.len ? 1 : 0), ' ');
            if (sp) {
                *sp = '\0';
                jstr joined = {0};
                js_add(&joined, s.p, strlen(s.p));
                js_add(&joined, sp + 1, strlen(sp + 1));
                *sp = ' ';
                int32_t id = joined.p ? index_find(t, order, joined.p) : -1;
                if (id >= 0 && t->scores[id] < -(float)i)
                    t->scores[id] = -(float)i;
                free(joined.p);
            }
        }
    }
    free(order);
    if (st)
        goto fail;

    t->add_space_prefix = kind == FLOCK_TOK_SPM &&
                          (pi.metaspace_prefix || normalizer_prepends(jget(tj, "normalizer")));
    t->model_name = flock_tokdata_strndup("hf", 2);
    if (!t->model_name) {
        st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
        goto fail;
    }
    /* BOS: the post-processor's template starts with a special token. */
    json_object *single = jget(jget(tj, "post_processor"), "single");
    if (single && json_object_is_type(single, json_type_array) && json_object_array_length(single) > 0) {
        const char *sid = jget_str(jget(json_object_array_get_idx(single, 0), "SpecialToken"), "id");
        if (sid) {
            t->bos_id = flock_tokdata_find(t, sid);
            t->add_bos = t->bos_id >= 0;
        }
    }
    const char *unk = jget_str(model, "unk_token");
    if (unk)
        t->unk_id = flock_tokdata_find(t, unk);
    if (cfg) {
        int32_t id;
        if ((id = config_token(t, cfg, "bos_token")) >= 0)
            t->bos_id = id;
        if ((id = config_token(t, cfg, "eos_token")) >= 0)
            t->eos_id = id;
        if ((id = config_token(t, cfg, "unk_token")) >= 0)
            t->unk_id = id;
        if ((id = config_token(t, cfg, "pad_token")) >= 0)
            t->pad_id = id;
        t->add_bos = jget_bool(cfg, "add_bos_token", t->add_bos);
        t->add_eos = jget_bool(cfg, "add_eos_token", t->add_eos);
        json_object *ct = jget(cfg, "chat_template");
        const char *tmpl = NULL;
        if (ct && json_object_is_type(ct, json_type_string)) {
            tmpl = json_object_get_string(ct);
        } else if (ct && json_object_is_type(ct, json_type_array)) { /* [{name, template}] */
            for (size_t i = 0; i < json_object_array_length(ct); i++) {
                json_object *e = json_object_array_get_idx(ct, i);
                const char *nm = jget_str(e, "name");
                if (!tmpl || (nm && strcmp(nm, "default") == 0))
                    tmpl = jget_str(e, "template");
            }
        }
        if (tmpl && !(t->chat_template = flock_tokdata_strndup(tmpl, strlen(tmpl)))) {
            st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (t->add_bos && t->bos_id < 0)
        t->add_bos = false;
    t->eot_id = flock_tokdata_guess_eot(t);
    if ((st = flock_tokdata_check(t, err)))
        goto fail;
    *out = t;
    return FLOCK_OK;
fail:
    flock_tokdata_free(t);
    return st;
}

flock_status flock_tokdata_from_hf_json(const char *tokenizer_json, size_t tj_len,
                                        const char *config_json, size_t cj_len,
                                        flock_tokenizer_data **out, flock_error *err)
{
    if (!tokenizer_json || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokdata_from_hf: no tokenizer.json");
    json_object *tj = NULL, *cfg = NULL;
    TRY(parse_json(tokenizer_json, tj_len, "tokenizer.json", &tj, err));
    flock_status st = config_json ? parse_json(config_json, cj_len, "tokenizer_config.json", &cfg, err) : FLOCK_OK;
    if (st) {
        json_object_put(tj);
        return st;
    }
    st = build(tj, cfg, out, err);
    json_object_put(tj);
    json_object_put(cfg);
    if (st)
        flock_error_prefix(err, st, "Hugging Face tokenizer");
    return st;
}

flock_status flock_tokdata_from_hf(const flock_hf_model *m, flock_tokenizer_data **out, flock_error *err)
{
    if (!m || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tokdata_from_hf: NULL argument");
    size_t tl = 0, cl = 0;
    const char *tj = flock_hf_tokenizer_json(m, &tl);
    const char *cj = flock_hf_tokenizer_config_json(m, &cl);
    if (!tj)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "the model folder has no tokenizer.json");
    return flock_tokdata_from_hf_json(tj, tl, cj, cl, out, err);
}
