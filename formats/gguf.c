/* GGUF reader (versions 2 and 3).
 *
 * File layout (all little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x  { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (default 32)
 *   tensor data; each tensor's offset is relative to the data section start
 *   and a multiple of the alignment.
 * A string is u64 length + bytes (no NUL). An array value is u32 element type
 * + u64 count + the elements.
 *
 * Every read goes through formats/reader.h. Counts are checked against the
 * bytes left before anything is allocated, so a hostile header can make us
 * allocate at most a small multiple of the file size. Strings and numeric
 * array payloads stay in the caller's memory (or our mapping); keys and
 * tensor names are copied so they can be NUL-terminated.
 */
#include "flock/formats.h"

#include "error_impl.h"
#include "reader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_DEFAULT_ALIGNMENT 32
/* Arrays of arrays are parsed and skipped; deeper nesting is refused so a
 * hostile file cannot exhaust the stack. */
#define GGUF_MAX_ARRAY_DEPTH 8

/* Smallest encodings, used to bound counts by the bytes left:
 * kv = key length (8) + type (4) + 1-byte value;
 * tensor = name length (8) + n_dims (4) + type (4) + offset (8). */
#define GGUF_MIN_KV_BYTES 13u
#define GGUF_MIN_TENSOR_BYTES 24u

typedef struct gguf_str {
    const char *s; /* points into the image; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    char *key;             /* owned, NUL-terminated; first member (see name_index) */
    uint64_t off;          /* file offset of the key, for messages */
    flock_gguf_type type;
    uint64_t bits;         /* scalar numeric/bool value, raw little-endian, zero-extended */
    gguf_str str;          /* STRING */
    flock_gguf_type arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data; /* numeric arrays: packed elements in the image */
    gguf_str *arr_strs;      /* string arrays: arr_n entries (owned) */
} gguf_kv;

/* Open-addressing hash from name to index; slot = index + 1, 0 = empty. */
typedef struct name_index {
    uint64_t *slots;
    uint64_t mask;
} name_index;

struct flock_gguf {
    flock_file_map map; /* zeroed for open_memory */
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_off;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    flock_gguf_tensor *tensors;
    name_index kv_index, tensor_index;
};

static const char *const gguf_type_names[] = {
    [FLOCK_GGUF_UINT8] = "uint8",     [FLOCK_GGUF_INT8] = "int8",
    [FLOCK_GGUF_UINT16] = "uint16",   [FLOCK_GGUF_INT16] = "int16",
    [FLOCK_GGUF_UINT32] = "uint32",   [FLOCK_GGUF_INT32] = "int32",
    [FLOCK_GGUF_FLOAT32] = "float32", [FLOCK_GGUF_BOOL] = "bool",
    [FLOCK_GGUF_STRING] = "string",   [FLOCK_GGUF_ARRAY] = "array",
    [FLOCK_GGUF_UINT64] = "uint64",   [FLOCK_GGUF_INT64] = "int64",
    [FLOCK_GGUF_FLOAT64] = "float64",
};
_Static_assert(sizeof gguf_type_names / sizeof gguf_type_names[0] == FLOCK_GGUF_TYPE_COUNT,
               "gguf_type_names must name every flock_gguf_type");

/* Bytes of a scalar value; 0 for STRING and ARRAY. */
static const uint8_t gguf_scalar_size[] = {
    [FLOCK_GGUF_UINT8] = 1,   [FLOCK_GGUF_INT8] = 1,   [FLOCK_GGUF_UINT16] = 2,
    [FLOCK_GGUF_INT16] = 2,   [FLOCK_GGUF_UINT32] = 4, [FLOCK_GGUF_INT32] = 4,
    [FLOCK_GGUF_FLOAT32] = 4, [FLOCK_GGUF_BOOL] = 1,   [FLOCK_GGUF_STRING] = 0,
    [FLOCK_GGUF_ARRAY] = 0,   [FLOCK_GGUF_UINT64] = 8, [FLOCK_GGUF_INT64] = 8,
    [FLOCK_GGUF_FLOAT64] = 8,
};
_Static_assert(sizeof gguf_scalar_size == FLOCK_GGUF_TYPE_COUNT,
               "gguf_scalar_size must cover every flock_gguf_type");

static const char *type_name(flock_gguf_type t)
{
    return (unsigned)t < FLOCK_GGUF_TYPE_COUNT ? gguf_type_names[t] : "?";
}

/* ---- name index ---------------------------------------------------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

/* Names are the first member of each element of `base` (stride bytes apart). */
static const char *name_at(const void *base, size_t stride, uint64_t i)
{
    const char *p;
    memcpy(&p, (const char *)base + i * stride, sizeof p);
    return p;
}

/* Builds the index; *dup receives the index of a repeated name, or -1. */
static flock_status name_index_build(name_index *ix, const void *base, size_t stride, uint64_t n,
                                     int64_t *dup)
{
    uint64_t cap = 8;
    while (cap < 2 * n)
        cap <<= 1;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return FLOCK_E_NOMEM;
    ix->mask = cap - 1;
    *dup = -1;
    for (uint64_t i = 0; i < n; i++) {
        const char *name = name_at(base, stride, i);
        uint64_t h = hash_name(name) & ix->mask;
        while (ix->slots[h]) {
            if (strcmp(name_at(base, stride, ix->slots[h] - 1), name) == 0) {
                *dup = (int64_t)i;
                return FLOCK_OK;
            }
            h = (h + 1) & ix->mask;
        }
        ix->slots[h] = i + 1;
    }
    return FLOCK_OK;
}

static int64_t name_index_find(const name_index *ix, const void *base, size_t stride,
                               const char *name)
{
    if (!ix->slots || !name)
        return -1;
    uint64_t h = hash_name(name) & ix->mask;
    while (ix->slots[h]) {
        if (strcmp(name_at(base, stride, ix->slots[h] - 1), name) == 0)
            return (int64_t)(ix->slots[h] - 1);
        h = (h + 1) & ix->mask;
    }
    return -1;
}

/* ---- parsing --------------------------------------------------------------- */

/* Reads a GGUF string in place. `what` says what the string is for messages. */
static flock_status read_str(flock_reader *r, gguf_str *out, const char *what, flock_error *err)
{
    size_t at = r->off;
    uint64_t len;
    if (!flock_rd_u64(r, &len))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: %s: input ends in the string length",
                               at, what);
    if (len > flock_rd_left(r))
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "offset %zu: %s: string of %" PRIu64 " bytes but only %zu bytes left",
                               at, what, len, flock_rd_left(r));
    out->s = (const char *)flock_rd_span(r, (size_t)len);
    out->len = len;
    return FLOCK_OK;
}

/* Copies a name into owned NUL-terminated storage; a NUL inside is corrupt. */
static flock_status dup_name(const gguf_str *s, char **out, size_t at, const char *what,
                             flock_error *err)
{
    if (memchr(s->s, 0, (size_t)s->len))
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: %s contains a NUL byte", at, what);
    char *p = malloc((size_t)s->len + 1);
    if (!p)
        return flock_error_set(err, FLOCK_E_NOMEM, "offset %zu: %s: out of memory", at, what);
    memcpy(p, s->s, (size_t)s->len);
    p[s->len] = '\0';
    *out = p;
    return FLOCK_OK;
}

static flock_status read_type(flock_reader *r, flock_gguf_type *t, const char *key, const char *what,
                              flock_error *err)
{
    size_t at = r->off;
    uint32_t v;
    if (!flock_rd_u32(r, &v))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: key '%s': input ends in the %s",
                               at, key, what);
    if (v >= FLOCK_GGUF_TYPE_COUNT)
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: key '%s': %s %" PRIu32
                               " is not a GGUF value type (0..%d)", at, key, what, v,
                               FLOCK_GGUF_TYPE_COUNT - 1);
    *t = (flock_gguf_type)v;
    return FLOCK_OK;
}

/* Checks that `n` bools at `p` are 0 or 1. */
static flock_status check_bools(const uint8_t *p, uint64_t n, size_t at, const char *key,
                                flock_error *err)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: key '%s': bool value %u is not 0 or 1",
                                   at + (size_t)i, key, p[i]);
    return FLOCK_OK;
}

/* Reads an array header and checks that `n` elements can fit in the bytes left. */
static flock_status read_array_header(flock_reader *r, const char *key, flock_gguf_type *et,
                                      uint64_t *n, flock_error *err)
{
    flock_status st = read_type(r, et, key, "array element type", err);
    if (st)
        return st;
    size_t at = r->off;
    if (!flock_rd_u64(r, n))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: key '%s': input ends in the array count",
                               at, key);
    /* Smallest element: its scalar size, a string's length field, an array's header. */
    uint64_t min = *et == FLOCK_GGUF_STRING ? 8 : *et == FLOCK_GGUF_ARRAY ? 12 : gguf_scalar_size[*et];
    if (*n > flock_rd_left(r) / min)
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "offset %zu: key '%s': array of %" PRIu64 " %s values cannot fit in the %zu bytes left",
                               at, key, *n, type_name(*et), flock_rd_left(r));
    return FLOCK_OK;
}

/* Parses and discards an array nested inside an array. */
static flock_status skip_array(flock_reader *r, const char *key, int depth, flock_error *err)
{
    if (depth > GGUF_MAX_ARRAY_DEPTH)
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: key '%s': arrays nested deeper than %d",
                               r->off, key, GGUF_MAX_ARRAY_DEPTH);
    flock_gguf_type et;
    uint64_t n;
    flock_status st = read_array_header(r, key, &et, &n, err);
    if (st)
        return st;
    if (et != FLOCK_GGUF_STRING && et != FLOCK_GGUF_ARRAY) {
        size_t at = r->off;
        const uint8_t *p = flock_rd_span(r, (size_t)n * gguf_scalar_size[et]);
        if (!p)
            return FLOCK_E_INTERNAL; /* count was checked against the bytes left */
        return et == FLOCK_GGUF_BOOL ? check_bools(p, n, at, key, err) : FLOCK_OK;
    }
    for (uint64_t i = 0; i < n && !st; i++) {
        gguf_str s;
        st = et == FLOCK_GGUF_STRING ? read_str(r, &s, key, err) : skip_array(r, key, depth + 1, err);
    }
    return st;
}

/* Reads the value of `kv` (type already read). */
static flock_status read_value(flock_reader *r, gguf_kv *kv, flock_error *err)
{
    size_t at = r->off;
    flock_status st;
    switch (kv->type) {
    case FLOCK_GGUF_STRING:
        return read_str(r, &kv->str, kv->key, err);
    case FLOCK_GGUF_ARRAY:
        if ((st = read_array_header(r, kv->key, &kv->arr_type, &kv->arr_n, err)))
            return st;
        if (kv->arr_type == FLOCK_GGUF_STRING) {
            /* n <= bytes left / 8, so this allocation is bounded by the file size. */
            kv->arr_strs = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *kv->arr_strs);
            if (!kv->arr_strs)
                return flock_error_set(err, FLOCK_E_NOMEM, "offset %zu: key '%s': out of memory for %" PRIu64
                                       " strings", at, kv->key, kv->arr_n);
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if ((st = read_str(r, &kv->arr_strs[i], kv->key, err)))
                    return st;
            return FLOCK_OK;
        }
        if (kv->arr_type == FLOCK_GGUF_ARRAY) {
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if ((st = skip_array(r, kv->key, 2, err)))
                    return st;
            return FLOCK_OK;
        }
        at = r->off;
        kv->arr_data = flock_rd_span(r, (size_t)kv->arr_n * gguf_scalar_size[kv->arr_type]);
        if (!kv->arr_data)
            return FLOCK_E_INTERNAL; /* count was checked against the bytes left */
        return kv->arr_type == FLOCK_GGUF_BOOL ? check_bools(kv->arr_data, kv->arr_n, at, kv->key, err)
                                               : FLOCK_OK;
    default: {
        uint8_t b[8] = {0};
        size_t sz = gguf_scalar_size[kv->type];
        if (!flock_rd_bytes(r, b, sz))
            return flock_error_set(err, FLOCK_E_TRUNCATED,
                                   "offset %zu: key '%s': input ends in the %s value", at, kv->key,
                                   type_name(kv->type));
        flock_reader br = flock_reader_init(b, sizeof b);
        flock_rd_u64(&br, &kv->bits);
        return kv->type == FLOCK_GGUF_BOOL ? check_bools(b, 1, at, kv->key, err) : FLOCK_OK;
    }
    }
}

static flock_status parse_kvs(flock_gguf *g, flock_reader *r, flock_error *err)
{
    if (g->n_kv > flock_rd_left(r) / GGUF_MIN_KV_BYTES)
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "offset 16: %" PRIu64 " metadata entries cannot fit in the %zu bytes left",
                               g->n_kv, flock_rd_left(r));
    g->kv = calloc((size_t)(g->n_kv ? g->n_kv : 1), sizeof *g->kv);
    if (!g->kv)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %" PRIu64 " metadata entries",
                               g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        kv->off = r->off;
        char what[48];
        snprintf(what, sizeof what, "key of metadata entry %" PRIu64, i);
        gguf_str key;
        flock_status st = read_str(r, &key, what, err);
        if (!st)
            st = dup_name(&key, &kv->key, (size_t)kv->off, what, err);
        if (!st)
            st = read_type(r, &kv->type, kv->key, "value type", err);
        if (!st)
            st = read_value(r, kv, err);
        if (st)
            return st;
    }
    int64_t dup;
    if (name_index_build(&g->kv_index, g->kv, sizeof *g->kv, g->n_kv, &dup))
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for the key index");
    if (dup >= 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %" PRIu64 ": key '%s' appears twice",
                               g->kv[dup].off, g->kv[dup].key);
    return FLOCK_OK;
}

/* general.alignment: any non-negative integer type holding a power of two. */
static flock_status read_alignment(flock_gguf *g, flock_error *err)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = flock_gguf_find_key(g, "general.alignment");
    if (i < 0)
        return FLOCK_OK;
    int64_t a;
    flock_error e2;
    if (flock_gguf_get_int(g, "general.alignment", &a, &e2) != FLOCK_OK)
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %" PRIu64 ": key 'general.alignment': %s",
                               g->kv[i].off, e2.msg);
    if (a <= 0 || (a & (a - 1)) != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "offset %" PRIu64 ": key 'general.alignment' is %" PRId64 ", not a power of two",
                               g->kv[i].off, a);
    g->alignment = (uint64_t)a;
    return FLOCK_OK;
}

static flock_status parse_tensor_info(flock_reader *r, flock_gguf_tensor *t, uint64_t idx,
                                      size_t *name_off, flock_error *err)
{
    size_t at = r->off;
    *name_off = at;
    char what[48];
    snprintf(what, sizeof what, "name of tensor %" PRIu64, idx);
    gguf_str name;
    char *owned = NULL;
    flock_status st = read_str(r, &name, what, err);
    if (!st)
        st = dup_name(&name, &owned, at, what, err);
    if (st)
        return st;
    t->name = owned;
    at = r->off;
    if (!flock_rd_u32(r, &t->n_dims))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: tensor '%s': input ends in n_dims",
                               at, owned);
    if (t->n_dims > FLOCK_GGUF_MAX_DIMS)
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: tensor '%s': n_dims %" PRIu32 " > %d",
                               at, owned, t->n_dims, FLOCK_GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < FLOCK_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims)
            continue;
        at = r->off;
        if (!flock_rd_u64(r, &t->ne[d]))
            return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: tensor '%s': input ends in ne[%u]",
                                   at, owned, d);
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX / nel)
            return flock_error_set(err, FLOCK_E_CORRUPT,
                                   "offset %zu: tensor '%s': ne[%u] = %" PRIu64 " is zero or makes the element count overflow",
                                   at, owned, d, t->ne[d]);
        nel *= t->ne[d];
    }
    at = r->off;
    if (!flock_rd_u32(r, &t->type))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: tensor '%s': input ends in the type",
                               at, owned);
    uint32_t be = flock_ggml_block_elems(t->type), bb = flock_ggml_block_bytes(t->type);
    if (be == 0)
        return flock_error_set(err, t->type < FLOCK_GGML_TYPE_COUNT ? FLOCK_E_UNSUPPORTED : FLOCK_E_CORRUPT,
                               "offset %zu: tensor '%s': unknown ggml type %" PRIu32, at, owned, t->type);
    if (t->ne[0] % be != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "offset %zu: tensor '%s': row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                               at, owned, t->ne[0], flock_ggml_type_name(t->type), be);
    uint64_t blocks = nel / be;
    if (blocks > (uint64_t)SIZE_MAX / bb)
        return flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: tensor '%s': byte size overflows",
                               at, owned);
    t->nbytes = blocks * bb;
    at = r->off;
    if (!flock_rd_u64(r, &t->offset))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: tensor '%s': input ends in the data offset",
                               at, owned);
    return FLOCK_OK;
}

static flock_status parse_tensors(flock_gguf *g, flock_reader *r, flock_error *err)
{
    if (g->n_tensors > flock_rd_left(r) / GGUF_MIN_TENSOR_BYTES)
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "offset %zu: %" PRIu64 " tensor infos cannot fit in the %zu bytes left",
                               r->off, g->n_tensors, flock_rd_left(r));
    g->tensors = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *g->tensors);
    size_t *info_off = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *info_off);
    flock_status st = FLOCK_OK;
    if (!g->tensors || !info_off) {
        st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %" PRIu64 " tensor infos",
                             g->n_tensors);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors && !st; i++)
        st = parse_tensor_info(r, &g->tensors[i], i, &info_off[i], err);
    if (st)
        goto done;

    /* The data section starts at the next multiple of the alignment. */
    uint64_t pad = (g->alignment - r->off % g->alignment) % g->alignment;
    g->data_off = (uint64_t)r->off + pad;
    uint64_t data_size = g->data_off <= g->size ? g->size - g->data_off : 0;
    if (g->n_tensors && g->data_off > g->size) {
        st = flock_error_set(err, FLOCK_E_TRUNCATED,
                             "offset %zu: the data section (at %" PRIu64 ") starts past the end of the input (%zu bytes)",
                             r->off, g->data_off, g->size);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        flock_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0) {
            st = flock_error_set(err, FLOCK_E_CORRUPT,
                                 "offset %zu: tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                                 info_off[i], t->name, t->offset, g->alignment);
            goto done;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            st = flock_error_set(err, FLOCK_E_TRUNCATED,
                                 "offset %zu: tensor '%s': %" PRIu64 " bytes at data offset %" PRIu64
                                 " run past the end of the data section (%" PRIu64 " bytes)",
                                 info_off[i], t->name, t->nbytes, t->offset, data_size);
            goto done;
        }
        t->data = g->base + g->data_off + t->offset;
    }
    int64_t dup;
    if (name_index_build(&g->tensor_index, g->tensors, sizeof *g->tensors, g->n_tensors, &dup)) {
        st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory for the tensor index");
        goto done;
    }
    if (dup >= 0)
        st = flock_error_set(err, FLOCK_E_CORRUPT, "offset %zu: tensor '%s' appears twice",
                             info_off[dup], g->tensors[dup].name);
done:
    free(info_off);
    return st;
}

static flock_status parse(flock_gguf *g, flock_error *err)
{
    flock_reader r = flock_reader_init(g->base, g->size);
    uint8_t magic[4];
    if (!flock_rd_bytes(&r, magic, 4))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset 0: input of %zu bytes is too short for a GGUF header",
                               g->size);
    if (memcmp(magic, "GGUF", 4) != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "offset 0: bad magic %02x %02x %02x %02x (expected \"GGUF\")", magic[0],
                               magic[1], magic[2], magic[3]);
    if (!flock_rd_u32(&r, &g->version))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset 4: input ends in the version");
    if (g->version != 2 && g->version != 3) {
        /* A big-endian file shows its version byte-swapped. */
        const char *hint = (g->version & 0xffffu) == 0 && g->version ? " (a big-endian file?)" : "";
        return flock_error_set(err, FLOCK_E_VERSION,
                               "offset 4: GGUF version %" PRIu32 " is not supported (only 2 and 3)%s",
                               g->version, hint);
    }
    if (!flock_rd_u64(&r, &g->n_tensors) || !flock_rd_u64(&r, &g->n_kv))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "offset %zu: input ends in the header counts", r.off);
    flock_status st = parse_kvs(g, &r, err);
    if (!st)
        st = read_alignment(g, err);
    if (!st)
        st = parse_tensors(g, &r, err);
    return st;
}

/* ---- open / free ------------------------------------------------------------ */

static flock_status open_image(const uint8_t *data, size_t size, flock_file_map map,
                               flock_gguf **out, flock_error *err)
{
    flock_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    g->base = data;
    g->size = size;
    flock_status st = parse(g, err);
    if (st) {
        flock_gguf_free(g); /* does not unmap: map is only attached on success */
        return st;
    }
    g->map = map;
    *out = g;
    return FLOCK_OK;
}

flock_status flock_gguf_open_memory(const void *data, size_t size, flock_gguf **out, flock_error *err)
{
    if ((!data && size) || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_gguf_open_memory: NULL argument");
    flock_file_map none = {0};
    return open_image(data ? data : (const void *)"", size, none, out, err);
}

flock_status flock_gguf_open(const char *path, flock_gguf **out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_gguf_open: NULL argument");
    flock_file_map map;
    flock_status st = flock_map_file(path, &map, err);
    if (st)
        return st;
    st = open_image(map.data ? map.data : (const uint8_t *)"", map.size, map, out, err);
    if (st) {
        flock_unmap_file(&map);
        return flock_error_prefix(err, st, "%s", path);
    }
    return FLOCK_OK;
}

void flock_gguf_free(flock_gguf *g)
{
    if (!g)
        return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].arr_strs);
        }
    }
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    flock_unmap_file(&g->map);
    free(g);
}

uint32_t flock_gguf_version(const flock_gguf *g)
{
    return g ? g->version : 0;
}

uint64_t flock_gguf_alignment(const flock_gguf *g)
{
    return g ? g->alignment : 0;
}

/* ---- metadata getters ------------------------------------------------------- */

uint64_t flock_gguf_kv_count(const flock_gguf *g)
{
    return g ? g->n_kv : 0;
}

const char *flock_gguf_kv_key(const flock_gguf *g, uint64_t i)
{
    return g && i < g->n_kv ? g->kv[i].key : NULL;
}

flock_gguf_type flock_gguf_kv_type(const flock_gguf *g, uint64_t i)
{
    return g && i < g->n_kv ? g->kv[i].type : FLOCK_GGUF_TYPE_COUNT;
}

int64_t flock_gguf_find_key(const flock_gguf *g, const char *key)
{
    return g ? name_index_find(&g->kv_index, g->kv, sizeof *g->kv, key) : -1;
}

/* Finds `key` or fails with FLOCK_E_NOT_FOUND. */
static flock_status lookup(const flock_gguf *g, const char *key, const gguf_kv **kv, flock_error *err)
{
    if (!g || !key)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "NULL GGUF handle or key");
    int64_t i = flock_gguf_find_key(g, key);
    if (i < 0)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "GGUF key '%s' not found", key);
    *kv = &g->kv[i];
    return FLOCK_OK;
}

static flock_status wrong_type(const gguf_kv *kv, const char *wanted, flock_error *err)
{
    return flock_error_set(err, FLOCK_E_TYPE, "GGUF key '%s' holds a %s, not %s", kv->key,
                           type_name(kv->type), wanted);
}

static bool is_signed_int(flock_gguf_type t)
{
    return t == FLOCK_GGUF_INT8 || t == FLOCK_GGUF_INT16 || t == FLOCK_GGUF_INT32 || t == FLOCK_GGUF_INT64;
}

static bool is_unsigned_int(flock_gguf_type t)
{
    return t == FLOCK_GGUF_UINT8 || t == FLOCK_GGUF_UINT16 || t == FLOCK_GGUF_UINT32 ||
           t == FLOCK_GGUF_UINT64 || t == FLOCK_GGUF_BOOL;
}

/* Sign-extends a signed scalar held in the low bytes of `bits`. */
static int64_t signed_value(const gguf_kv *kv)
{
    unsigned shift = 64 - 8 * gguf_scalar_size[kv->type];
    return (int64_t)(kv->bits << shift) >> shift;
}

flock_status flock_gguf_get_int(const flock_gguf *g, const char *key, int64_t *out, flock_error *err)
{
    const gguf_kv *kv = NULL;
    flock_status st = lookup(g, key, &kv, err);
    if (st)
        return st;
    if (is_signed_int(kv->type)) {
        *out = signed_value(kv);
        return FLOCK_OK;
    }
    if (!is_unsigned_int(kv->type))
        return wrong_type(kv, "an integer", err);
    if (kv->bits > (uint64_t)INT64_MAX)
        return flock_error_set(err, FLOCK_E_RANGE, "GGUF key '%s': %" PRIu64 " does not fit in int64",
                               key, kv->bits);
    *out = (int64_t)kv->bits;
    return FLOCK_OK;
}

flock_status flock_gguf_get_float(const flock_gguf *g, const char *key, double *out, flock_error *err)
{
    const gguf_kv *kv = NULL;
    flock_status st = lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type == FLOCK_GGUF_FLOAT32) {
        float f;
        uint32_t u = (uint32_t)kv->bits;
        memcpy(&f, &u, 4);
        *out = f;
    } else if (kv->type == FLOCK_GGUF_FLOAT64) {
        memcpy(out, &kv->bits, 8);
    } else if (is_signed_int(kv->type)) {
        *out = (double)signed_value(kv);
    } else if (is_unsigned_int(kv->type) && kv->type != FLOCK_GGUF_BOOL) {
        *out = (double)kv->bits;
    } else {
        return wrong_type(kv, "a number", err);
    }
    return FLOCK_OK;
}

flock_status flock_gguf_get_bool(const flock_gguf *g, const char *key, bool *out, flock_error *err)
{
    const gguf_kv *kv = NULL;
    flock_status st = lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != FLOCK_GGUF_BOOL)
        return wrong_type(kv, "a bool", err);
    *out = kv->bits != 0;
    return FLOCK_OK;
}

flock_status flock_gguf_get_str(const flock_gguf *g, const char *key, const char **s, size_t *len,
                                flock_error *err)
{
    const gguf_kv *kv = NULL;
    flock_status st = lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != FLOCK_GGUF_STRING)
        return wrong_type(kv, "a string", err);
    *s = kv->str.s;
    *len = (size_t)kv->str.len;
    return FLOCK_OK;
}

flock_status flock_gguf_get_arr(const flock_gguf *g, const char *key, flock_gguf_type *elem_type,
                                uint64_t *n, const void **data, flock_error *err)
{
    const gguf_kv *kv = NULL;
    flock_status st = lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != FLOCK_GGUF_ARRAY)
        return wrong_type(kv, "an array", err);
    *elem_type = kv->arr_type;
    *n = kv->arr_n;
    *data = kv->arr_data; /* NULL for arrays of strings or of arrays */
    return FLOCK_OK;
}

flock_status flock_gguf_get_arr_str(const flock_gguf *g, const char *key, uint64_t i,
                                    const char **s, size_t *len, flock_error *err)
{
    const gguf_kv *kv = NULL;
    flock_status st = lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != FLOCK_GGUF_ARRAY || kv->arr_type != FLOCK_GGUF_STRING)
        return flock_error_set(err, FLOCK_E_TYPE, "GGUF key '%s' holds a %s%s%s, not an array of strings",
                               key, type_name(kv->type), kv->type == FLOCK_GGUF_ARRAY ? " of " : "",
                               kv->type == FLOCK_GGUF_ARRAY ? type_name(kv->arr_type) : "");
    if (i >= kv->arr_n)
        return flock_error_set(err, FLOCK_E_RANGE, "GGUF key '%s': index %" PRIu64 " >= %" PRIu64,
                               key, i, kv->arr_n);
    *s = kv->arr_strs[i].s;
    *len = (size_t)kv->arr_strs[i].len;
    return FLOCK_OK;
}

/* ---- tensors ------------------------------------------------------------------ */

uint64_t flock_gguf_tensor_count(const flock_gguf *g)
{
    return g ? g->n_tensors : 0;
}

flock_status flock_gguf_tensor_info(const flock_gguf *g, uint64_t i, flock_gguf_tensor *out)
{
    if (!g || !out || i >= g->n_tensors)
        return FLOCK_E_INVALID_ARG;
    *out = g->tensors[i];
    return FLOCK_OK;
}

int64_t flock_gguf_find_tensor(const flock_gguf *g, const char *name)
{
    return g ? name_index_find(&g->tensor_index, g->tensors, sizeof *g->tensors, name) : -1;
}

flock_status flock_gguf_tensor_to_f32(const flock_gguf *g, uint64_t i, float *dst,
                                      uint64_t dst_count, flock_error *err)
{
    if (!g || !dst || i >= g->n_tensors)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_gguf_tensor_to_f32: bad handle, index or buffer");
    const flock_gguf_tensor *t = &g->tensors[i];
    uint64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (dst_count < n)
        return flock_error_set(err, FLOCK_E_RANGE, "tensor '%s': %" PRIu64 " elements but room for %" PRIu64,
                               t->name, n, dst_count);
    FORWARD_IF_ERROR(flock_dequantize(t->type, t->data, (size_t)t->nbytes, dst, n, err), err, "tensor '%s'",
                     t->name);
    return FLOCK_OK;
}
