/* The manifest: typed key/value metadata kept in insertion order, with a
 * hash index for lookups, and its serialization for the bundle's manifest
 * section (docs/bundle-format.md, "Manifest section"). */
#include "bundle_internal.h"
#include "reader.h"
#include "wbuf.h"

#include <stdlib.h>
#include <string.h>

typedef struct mentry {
    char *key;
    flock_mval_type type;
    size_t n;          /* array length (1 for scalars) */
    union {
        int64_t i;
        double f;
        char *s;
        int64_t *ia;
        double *fa;
        char **sa;
    } v;
} mentry;

struct flock_manifest {
    mentry *e;
    size_t count, cap;
    uint32_t *index;   /* open addressing: entry index + 1, 0 = empty */
    size_t index_cap;  /* power of two, > 2 * count */
};

/* FNV-1a: keys are short; the index only has to spread them. */
static uint64_t key_hash(const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)k[i]) * 1099511628211ULL;
    return h;
}

static void entry_free_value(mentry *e)
{
    switch (e->type) {
    case FLOCK_MVAL_STR:
        free(e->v.s);
        break;
    case FLOCK_MVAL_INT_ARR:
        free(e->v.ia);
        break;
    case FLOCK_MVAL_FLOAT_ARR:
        free(e->v.fa);
        break;
    case FLOCK_MVAL_STR_ARR:
        for (size_t i = 0; i < e->n; i++)
            free(e->v.sa[i]);
        free(e->v.sa);
        break;
    default:
        break;
    }
}

flock_status flock_manifest_create(flock_manifest **out)
{
    if (!out)
        return FLOCK_E_INVALID_ARG;
    flock_manifest *m = calloc(1, sizeof *m);
    if (!m)
        return FLOCK_E_NOMEM;
    *out = m;
    return FLOCK_OK;
}

void flock_manifest_free(flock_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++) {
        entry_free_value(&m->e[i]);
        free(m->e[i].key);
    }
    free(m->e);
    free(m->index);
    free(m);
}

/* Slot of `key` in the index: either holding it or the empty slot where it goes. */
static size_t index_slot(const flock_manifest *m, const char *key, size_t len)
{
    size_t mask = m->index_cap - 1;
    size_t s = (size_t)key_hash(key, len) & mask;
    for (;;) {
        uint32_t v = m->index[s];
        if (v == 0)
            return s;
        const char *k = m->e[v - 1].key;
        if (strlen(k) == len && memcmp(k, key, len) == 0)
            return s;
        s = (s + 1) & mask;
    }
}

static int64_t find_key(const flock_manifest *m, const char *key)
{
    if (!m || !key || m->index_cap == 0)
        return -1;
    uint32_t v = m->index[index_slot(m, key, strlen(key))];
    return v ? (int64_t)v - 1 : -1;
}

static flock_status index_grow(flock_manifest *m)
{
    size_t cap = m->index_cap ? m->index_cap * 2 : 16;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return FLOCK_E_NOMEM;
    free(m->index);
    m->index = idx;
    m->index_cap = cap;
    for (size_t i = 0; i < m->count; i++) {
        const char *k = m->e[i].key;
        m->index[index_slot(m, k, strlen(k))] = (uint32_t)(i + 1);
    }
    return FLOCK_OK;
}

/* Returns the entry for `key` with its old value freed, or a new one. */
static flock_status entry_for(flock_manifest *m, const char *key, mentry **out)
{
    if (!m || !key || !*key || strlen(key) > UINT16_MAX)
        return FLOCK_E_INVALID_ARG;
    int64_t i = find_key(m, key);
    if (i >= 0) {
        entry_free_value(&m->e[i]);
        m->e[i].type = FLOCK_MVAL_INT;
        m->e[i].n = 1;
        *out = &m->e[i];
        return FLOCK_OK;
    }
    if (m->count >= UINT32_MAX - 1)
        return FLOCK_E_RANGE;
    if ((m->count + 1) * 2 >= m->index_cap && index_grow(m) != FLOCK_OK)
        return FLOCK_E_NOMEM;
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        mentry *e = realloc(m->e, cap * sizeof *e);
        if (!e)
            return FLOCK_E_NOMEM;
        m->e = e;
        m->cap = cap;
    }
    char *k = strdup(key);
    if (!k)
        return FLOCK_E_NOMEM;
    mentry *e = &m->e[m->count];
    memset(e, 0, sizeof *e);
    e->key = k;
    e->type = FLOCK_MVAL_INT;
    e->n = 1;
    m->index[index_slot(m, key, strlen(key))] = (uint32_t)(m->count + 1);
    m->count++;
    *out = e;
    return FLOCK_OK;
}

flock_status flock_manifest_set_int(flock_manifest *m, const char *key, int64_t v)
{
    mentry *e;
    flock_status st = entry_for(m, key, &e);
    if (st)
        return st;
    e->type = FLOCK_MVAL_INT;
    e->v.i = v;
    return FLOCK_OK;
}

flock_status flock_manifest_set_float(flock_manifest *m, const char *key, double v)
{
    mentry *e;
    flock_status st = entry_for(m, key, &e);
    if (st)
        return st;
    e->type = FLOCK_MVAL_FLOAT;
    e->v.f = v;
    return FLOCK_OK;
}

/* Copies the value first so a failed allocation leaves the manifest as it was. */
flock_status flock_manifest_set_str(flock_manifest *m, const char *key, const char *v)
{
    if (!v || strlen(v) > UINT32_MAX)
        return FLOCK_E_INVALID_ARG;
    char *s = strdup(v);
    if (!s)
        return FLOCK_E_NOMEM;
    mentry *e;
    flock_status st = entry_for(m, key, &e);
    if (st) {
        free(s);
        return st;
    }
    e->type = FLOCK_MVAL_STR;
    e->v.s = s;
    return FLOCK_OK;
}

static void *dup_bytes(const void *p, size_t n, size_t elem)
{
    void *d = malloc(n ? n * elem : 1);
    if (d && n)
        memcpy(d, p, n * elem);
    return d;
}

_Static_assert(sizeof(int64_t) == 8 && sizeof(double) == 8, "manifest arrays hold 8-byte elements");

/* The numeric array setters: copy n 8-byte elements, then store them under
 * `key` with `type` (the entry frees whatever it held before). */
static flock_status set_num_arr(flock_manifest *m, const char *key, flock_mval_type type, const void *v, size_t n)
{
    if ((!v && n) || n > SIZE_MAX / 8)
        return FLOCK_E_INVALID_ARG;
    void *a = dup_bytes(v, n, 8);
    if (!a)
        return FLOCK_E_NOMEM;
    mentry *e;
    flock_status st = entry_for(m, key, &e);
    if (st) {
        free(a);
        return st;
    }
    e->type = type;
    if (type == FLOCK_MVAL_INT_ARR)
        e->v.ia = a;
    else
        e->v.fa = a;
    e->n = n;
    return FLOCK_OK;
}

flock_status flock_manifest_set_int_arr(flock_manifest *m, const char *key, const int64_t *v, size_t n)
{
    return set_num_arr(m, key, FLOCK_MVAL_INT_ARR, v, n);
}

flock_status flock_manifest_set_float_arr(flock_manifest *m, const char *key, const double *v, size_t n)
{
    return set_num_arr(m, key, FLOCK_MVAL_FLOAT_ARR, v, n);
}

static void free_strs(char **a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

flock_status flock_manifest_set_str_arr(flock_manifest *m, const char *key, const char *const *v, size_t n)
{
    if ((!v && n) || n > SIZE_MAX / sizeof(char *))
        return FLOCK_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (!v[i] || strlen(v[i]) > UINT32_MAX)
            return FLOCK_E_INVALID_ARG;
    char **a = calloc(n ? n : 1, sizeof *a);
    if (!a)
        return FLOCK_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(a[i] = strdup(v[i]))) {
            free_strs(a, i);
            return FLOCK_E_NOMEM;
        }
    }
    mentry *e;
    flock_status st = entry_for(m, key, &e);
    if (st) {
        free_strs(a, n);
        return st;
    }
    e->type = FLOCK_MVAL_STR_ARR;
    e->v.sa = a;
    e->n = n;
    return FLOCK_OK;
}

size_t flock_manifest_count(const flock_manifest *m)
{
    return m ? m->count : 0;
}

const char *flock_manifest_key(const flock_manifest *m, size_t i)
{
    return m && i < m->count ? m->e[i].key : NULL;
}

flock_mval_type flock_manifest_type(const flock_manifest *m, size_t i)
{
    return m && i < m->count ? m->e[i].type : FLOCK_MVAL_TYPE_COUNT;
}

static const char *const mval_names[] = {
    [FLOCK_MVAL_INT] = "int", [FLOCK_MVAL_FLOAT] = "float", [FLOCK_MVAL_STR] = "string",
    [FLOCK_MVAL_INT_ARR] = "int[]", [FLOCK_MVAL_FLOAT_ARR] = "float[]", [FLOCK_MVAL_STR_ARR] = "string[]",
};
_Static_assert(sizeof mval_names / sizeof mval_names[0] == FLOCK_MVAL_TYPE_COUNT,
               "mval_names must name every flock_mval_type");

/* Finds `key` holding `type`, or fills err with NOT_FOUND / TYPE. */
static flock_status get_typed(const flock_manifest *m, const char *key, flock_mval_type type,
                              const mentry **out, flock_error *err)
{
    if (!m || !key)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "manifest get: NULL argument");
    int64_t i = find_key(m, key);
    if (i < 0)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "manifest key '%s' not found", key);
    if (m->e[i].type != type)
        return flock_error_set(err, FLOCK_E_TYPE, "manifest key '%s' holds %s, expected %s", key,
                               mval_names[m->e[i].type], mval_names[type]);
    *out = &m->e[i];
    return FLOCK_OK;
}

flock_status flock_manifest_get_int(const flock_manifest *m, const char *key, int64_t *out, flock_error *err)
{
    const mentry *e;
    flock_status st = get_typed(m, key, FLOCK_MVAL_INT, &e, err);
    if (st == FLOCK_OK && out)
        *out = e->v.i;
    return st;
}

flock_status flock_manifest_get_float(const flock_manifest *m, const char *key, double *out, flock_error *err)
{
    const mentry *e;
    flock_status st = get_typed(m, key, FLOCK_MVAL_FLOAT, &e, err);
    if (st == FLOCK_OK && out)
        *out = e->v.f;
    return st;
}

flock_status flock_manifest_get_str(const flock_manifest *m, const char *key, const char **out, flock_error *err)
{
    const mentry *e;
    flock_status st = get_typed(m, key, FLOCK_MVAL_STR, &e, err);
    if (st == FLOCK_OK && out)
        *out = e->v.s;
    return st;
}

flock_status flock_manifest_get_int_arr(const flock_manifest *m, const char *key, const int64_t **out,
                                        size_t *n, flock_error *err)
{
    const mentry *e;
    flock_status st = get_typed(m, key, FLOCK_MVAL_INT_ARR, &e, err);
    if (st == FLOCK_OK && out && n) {
        *out = e->v.ia;
        *n = e->n;
    }
    return st;
}

flock_status flock_manifest_get_float_arr(const flock_manifest *m, const char *key, const double **out,
                                          size_t *n, flock_error *err)
{
    const mentry *e;
    flock_status st = get_typed(m, key, FLOCK_MVAL_FLOAT_ARR, &e, err);
    if (st == FLOCK_OK && out && n) {
        *out = e->v.fa;
        *n = e->n;
    }
    return st;
}

flock_status flock_manifest_get_str_arr(const flock_manifest *m, const char *key, const char *const **out,
                                        size_t *n, flock_error *err)
{
    const mentry *e;
    flock_status st = get_typed(m, key, FLOCK_MVAL_STR_ARR, &e, err);
    if (st == FLOCK_OK && out && n) {
        *out = (const char *const *)e->v.sa;
        *n = e->n;
    }
    return st;
}

flock_status flock_manifest_clone(const flock_manifest *m, flock_manifest **out)
{
    if (!m || !out)
        return FLOCK_E_INVALID_ARG;
    flock_manifest *c = NULL;
    flock_status st = flock_manifest_create(&c);
    for (size_t i = 0; st == FLOCK_OK && i < m->count; i++) {
        const mentry *e = &m->e[i];
        switch (e->type) {
        case FLOCK_MVAL_INT: st = flock_manifest_set_int(c, e->key, e->v.i); break;
        case FLOCK_MVAL_FLOAT: st = flock_manifest_set_float(c, e->key, e->v.f); break;
        case FLOCK_MVAL_STR: st = flock_manifest_set_str(c, e->key, e->v.s); break;
        case FLOCK_MVAL_INT_ARR: st = flock_manifest_set_int_arr(c, e->key, e->v.ia, e->n); break;
        case FLOCK_MVAL_FLOAT_ARR: st = flock_manifest_set_float_arr(c, e->key, e->v.fa, e->n); break;
        case FLOCK_MVAL_STR_ARR:
            st = flock_manifest_set_str_arr(c, e->key, (const char *const *)e->v.sa, e->n);
            break;
        default: st = FLOCK_E_INTERNAL; break;
        }
    }
    if (st) {
        flock_manifest_free(c);
        return st;
    }
    *out = c;
    return FLOCK_OK;
}

/* ---- serialization ------------------------------------------------------ */

static void ob_str32(flock_wbuf *b, const char *s)
{
    size_t len = strlen(s);
    flock_wbuf_u32(b, (uint32_t)len);
    flock_wbuf_bytes(b, s, len);
}

flock_status flock_manifest_serialize(const flock_manifest *m, uint8_t **out, size_t *out_size,
                                      flock_error *err)
{
    if (!m || !out || !out_size)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "manifest serialize: NULL argument");
    flock_wbuf b = {0};
    flock_wbuf_u32(&b, FLOCK_MANIFEST_VERSION);
    flock_wbuf_u32(&b, (uint32_t)m->count);
    for (size_t i = 0; i < m->count; i++) {
        const mentry *e = &m->e[i];
        size_t klen = strlen(e->key);
        flock_wbuf_u16(&b, (uint16_t)klen);
        flock_wbuf_bytes(&b, e->key, klen);
        flock_wbuf_u8(&b, (uint8_t)e->type);
        switch (e->type) {
        case FLOCK_MVAL_INT: flock_wbuf_u64(&b, (uint64_t)e->v.i); break;
        case FLOCK_MVAL_FLOAT: flock_wbuf_f64(&b, e->v.f); break;
        case FLOCK_MVAL_STR: ob_str32(&b, e->v.s); break;
        case FLOCK_MVAL_INT_ARR:
            flock_wbuf_u64(&b, e->n);
            for (size_t j = 0; j < e->n; j++)
                flock_wbuf_u64(&b, (uint64_t)e->v.ia[j]);
            break;
        case FLOCK_MVAL_FLOAT_ARR:
            flock_wbuf_u64(&b, e->n);
            for (size_t j = 0; j < e->n; j++)
                flock_wbuf_f64(&b, e->v.fa[j]);
            break;
        case FLOCK_MVAL_STR_ARR:
            flock_wbuf_u64(&b, e->n);
            for (size_t j = 0; j < e->n; j++)
                ob_str32(&b, e->v.sa[j]);
            break;
        default: break;
        }
    }
    if (b.oom) {
        free(b.p);
        return flock_error_set(err, FLOCK_E_NOMEM, "manifest serialize: out of memory");
    }
    *out = b.p;
    *out_size = b.len;
    return FLOCK_OK;
}

/* Reads a u32-length string into a new NUL-terminated copy. */
static flock_status rd_str32(flock_reader *r, char **out, const char *key, flock_error *err)
{
    size_t at = r->off;
    uint32_t len;
    if (!flock_rd_u32(r, &len))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "manifest key '%s': string length at offset %zu "
                               "past the end", key, at);
    const uint8_t *s = flock_rd_span(r, len);
    if (!s)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "manifest key '%s': string of %u bytes at offset "
                               "%zu runs past the end (%zu left)", key, len, at + 4, flock_rd_left(r));
    if (memchr(s, 0, len))
        return flock_error_set(err, FLOCK_E_CORRUPT, "manifest key '%s': string at offset %zu contains "
                               "a NUL byte", key, at + 4);
    char *c = malloc((size_t)len + 1);
    if (!c)
        return flock_error_set(err, FLOCK_E_NOMEM, "manifest key '%s': out of memory", key);
    memcpy(c, s, len);
    c[len] = '\0';
    *out = c;
    return FLOCK_OK;
}

/* Reads an array count, limited by the bytes left at `min_elem` bytes each. */
static flock_status rd_count(flock_reader *r, size_t min_elem, size_t *n, const char *key, flock_error *err)
{
    size_t at = r->off;
    uint64_t v;
    if (!flock_rd_u64(r, &v))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "manifest key '%s': array count at offset %zu "
                               "past the end", key, at);
    if (v > flock_rd_left(r) / min_elem)
        return flock_error_set(err, FLOCK_E_CORRUPT, "manifest key '%s': array count %llu at offset %zu "
                               "exceeds the %zu bytes left", key, (unsigned long long)v, at,
                               flock_rd_left(r));
    *n = (size_t)v;
    return FLOCK_OK;
}

/* Parses one entry's value into `m` under `key`. */
static flock_status rd_value(flock_reader *r, flock_manifest *m, const char *key, uint8_t type,
                             flock_error *err)
{
    flock_status st = FLOCK_OK;
    size_t at = r->off, n = 0;
    uint64_t u;
    switch (type) {
    case FLOCK_MVAL_INT:
    case FLOCK_MVAL_FLOAT:
        if (!flock_rd_u64(r, &u))
            return flock_error_set(err, FLOCK_E_TRUNCATED, "manifest key '%s': value at offset %zu "
                                   "past the end", key, at);
        if (type == FLOCK_MVAL_INT) {
            st = flock_manifest_set_int(m, key, (int64_t)u);
        } else {
            double d;
            memcpy(&d, &u, 8);
            st = flock_manifest_set_float(m, key, d);
        }
        break;
    case FLOCK_MVAL_STR: {
        char *s;
        if ((st = rd_str32(r, &s, key, err)))
            return st;
        st = flock_manifest_set_str(m, key, s);
        free(s);
        break;
    }
    case FLOCK_MVAL_INT_ARR:
    case FLOCK_MVAL_FLOAT_ARR: {
        if ((st = rd_count(r, 8, &n, key, err)))
            return st;
        uint64_t *a = malloc(n ? n * 8 : 1);
        if (!a)
            return flock_error_set(err, FLOCK_E_NOMEM, "manifest key '%s': out of memory", key);
        for (size_t j = 0; j < n; j++)
            flock_rd_u64(r, &a[j]); /* cannot fail: count checked against bytes left */
        if (type == FLOCK_MVAL_INT_ARR)
            st = flock_manifest_set_int_arr(m, key, (const int64_t *)a, n);
        else
            st = flock_manifest_set_float_arr(m, key, (const double *)a, n);
        free(a);
        break;
    }
    case FLOCK_MVAL_STR_ARR: {
        if ((st = rd_count(r, 4, &n, key, err)))
            return st;
        char **a = calloc(n ? n : 1, sizeof *a);
        if (!a)
            return flock_error_set(err, FLOCK_E_NOMEM, "manifest key '%s': out of memory", key);
        for (size_t j = 0; j < n && st == FLOCK_OK; j++)
            st = rd_str32(r, &a[j], key, err);
        if (st == FLOCK_OK)
            st = flock_manifest_set_str_arr(m, key, (const char *const *)a, n);
        for (size_t j = 0; j < n; j++)
            free(a[j]);
        free(a);
        if (st && err && err->status == st)
            return st;
        break;
    }
    default:
        return flock_error_set(err, FLOCK_E_CORRUPT, "manifest key '%s': unknown value type %u at "
                               "offset %zu", key, type, at - 1);
    }
    if (st)
        return flock_error_set(err, st, "manifest key '%s': %s", key, flock_status_str(st));
    return FLOCK_OK;
}

flock_status flock_manifest_deserialize(const void *data, size_t size, flock_manifest **out,
                                        flock_error *err)
{
    if ((!data && size) || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "manifest deserialize: NULL argument");
    flock_reader r = flock_reader_init(data, size);
    uint32_t version, count;
    if (!flock_rd_u32(&r, &version) || !flock_rd_u32(&r, &count))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "manifest: %zu bytes, need 8 for its header", size);
    if (version != FLOCK_MANIFEST_VERSION)
        return flock_error_set(err, FLOCK_E_VERSION, "manifest version %u, this reader knows %u",
                               version, FLOCK_MANIFEST_VERSION);
    /* Smallest entry: key length (2), one key byte, type (1), and an empty
     * string value (4): 8 bytes. */
    if (count > flock_rd_left(&r) / 8)
        return flock_error_set(err, FLOCK_E_CORRUPT, "manifest: count %u exceeds the %zu bytes left",
                               count, flock_rd_left(&r));
    flock_manifest *m;
    if (flock_manifest_create(&m))
        return flock_error_set(err, FLOCK_E_NOMEM, "manifest: out of memory");
    flock_status st = FLOCK_OK;
    char key[UINT16_MAX + 1];
    for (uint32_t i = 0; i < count && st == FLOCK_OK; i++) {
        size_t at = r.off;
        uint16_t klen;
        const uint8_t *k;
        uint8_t type;
        if (!flock_rd_u16(&r, &klen) || !(k = flock_rd_span(&r, klen)) || !flock_rd_u8(&r, &type)) {
            st = flock_error_set(err, FLOCK_E_TRUNCATED, "manifest entry %u at offset %zu runs past the "
                                 "end (%zu bytes)", i, at, size);
            break;
        }
        if (klen == 0 || memchr(k, 0, klen)) {
            st = flock_error_set(err, FLOCK_E_CORRUPT, "manifest entry %u at offset %zu: empty key or "
                                 "key with a NUL byte", i, at);
            break;
        }
        memcpy(key, k, klen);
        key[klen] = '\0';
        if (find_key(m, key) >= 0) {
            st = flock_error_set(err, FLOCK_E_CORRUPT, "manifest entry %u at offset %zu: duplicate key "
                                 "'%s'", i, at, key);
            break;
        }
        st = rd_value(&r, m, key, type, err);
    }
    if (st == FLOCK_OK && flock_rd_left(&r) != 0)
        st = flock_error_set(err, FLOCK_E_CORRUPT, "manifest: %zu bytes left after the last of %u "
                             "entries", flock_rd_left(&r), count);
    if (st) {
        flock_manifest_free(m);
        return st;
    }
    *out = m;
    return FLOCK_OK;
}
