/*
 * safetensors reader.
 *
 * Layout of a file:
 *   u64 LE   N, the header length in bytes
 *   N bytes  UTF-8 JSON object, possibly padded with spaces:
 *            { "<tensor name>": { "dtype": "F32", "shape": [d0, d1, ...],
 *                                 "data_offsets": [begin, end] },
 *              ...,
 *              "__metadata__": { "<key>": "<string>", ... } }   (optional)
 *   the data region: every offset is relative to its start (byte 8 + N).
 *
 * What is checked (a hostile file is an error status, never a crash):
 *  - N is at most FLOCK_ST_MAX_HEADER and fits in the file;
 *  - the header parses (json-c, strict mode) to an object;
 *  - each dtype is a safetensors dtype; only F32/F16/BF16 are supported;
 *  - shape entries are non-negative integers, the element count and byte
 *    count do not overflow, and end - begin == elements * element size;
 *  - begin <= end <= size of the data region;
 *  - sorted by offset, the tensors tile the data region exactly: no overlap,
 *    no gap, no trailing bytes (the reference implementation requires the
 *    same, and it catches a tensor lost to a duplicated JSON key);
 *  - names are unique.
 * Tensors are kept sorted by name (strcmp), so indices are deterministic.
 * Tensor data is not aligned in general: consumers copy or use memcpy.
 */
#include "flock/formats.h"
#include "hf_json.h"
#include "reader.h"
#include "safetensors_impl.h"

#include <stdlib.h>
#include <string.h>

/* The reference implementation refuses headers over 100 MB; so does flock. */
#define FLOCK_ST_MAX_HEADER 100000000u
/* Tensor names quoted in messages are cut to this many bytes. */
#define NAME_MAX_SHOWN 120

struct flock_safetensors {
    flock_file_map map; /* zeroed when opened over caller memory */
    uint64_t n;
    flock_st_tensor *t; /* sorted by name */
    char *names;        /* storage for every t[i].name */
};

/* Every dtype the safetensors format defines, with its element size in bytes
 * (0: sub-byte packed types, which flock cannot size here). */
static const struct {
    const char *name;
    unsigned size;
    int flock; /* flock_dtype, or -1 when flock does not support it */
} st_dtypes[] = {
    {"F32", 4, FLOCK_DTYPE_F32},   {"F16", 2, FLOCK_DTYPE_F16}, {"BF16", 2, FLOCK_DTYPE_BF16},
    {"F64", 8, -1},  {"I64", 8, -1},  {"U64", 8, -1},  {"I32", 4, -1},     {"U32", 4, -1},
    {"I16", 2, -1},  {"U16", 2, -1},  {"I8", 1, -1},   {"U8", 1, -1},      {"BOOL", 1, -1},
    {"F8_E5M2", 1, -1}, {"F8_E4M3", 1, -1}, {"F8_E8M0", 1, -1}, {"C64", 8, -1},
    {"F4", 0, -1},   {"F6_E2M3", 0, -1}, {"F6_E3M2", 0, -1},
};
#define ST_DTYPE_COUNT (sizeof st_dtypes / sizeof st_dtypes[0])

/* One tensor while the header is validated. */
typedef struct st_entry {
    const char *name; /* points into the json-c object */
    size_t dt;        /* index into st_dtypes */
    uint32_t n_dims;
    uint64_t shape[FLOCK_ST_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A JSON integer as a non-negative uint64; false for other types and negatives. */
static bool json_u64(struct json_object *o, uint64_t *v)
{
    if (!json_object_is_type(o, json_type_int))
        return false;
    int64_t s = json_object_get_int64(o);
    if (s < 0)
        return false;
    /* json-c keeps integers above INT64_MAX as uint64 (get_int64 saturates). */
    *v = s == INT64_MAX ? json_object_get_uint64(o) : (uint64_t)s;
    return true;
}

/* Fills `e` from the JSON object describing tensor `name`. */
static flock_status parse_entry(const char *name, struct json_object *v, st_entry *e, flock_error *err)
{
    e->name = name;
    if (!json_object_is_type(v, json_type_object))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': expected an object, found %s",
                               NAME_MAX_SHOWN, name, flock_json_type_word(v));
    struct json_object *dtype, *shape, *offs;
    if (!json_object_object_get_ex(v, "dtype", &dtype) || !json_object_is_type(dtype, json_type_string))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': \"dtype\" is missing or not a string",
                               NAME_MAX_SHOWN, name);
    if (!json_object_object_get_ex(v, "shape", &shape) || !json_object_is_type(shape, json_type_array))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': \"shape\" is missing or not an array",
                               NAME_MAX_SHOWN, name);
    if (!json_object_object_get_ex(v, "data_offsets", &offs) || !json_object_is_type(offs, json_type_array))
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "tensor '%.*s': \"data_offsets\" is missing or not an array", NAME_MAX_SHOWN,
                               name);

    const char *ds = json_object_get_string(dtype);
    e->dt = ST_DTYPE_COUNT;
    for (size_t i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(ds, st_dtypes[i].name) == 0)
            e->dt = i;
    if (e->dt == ST_DTYPE_COUNT || st_dtypes[e->dt].size == 0)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor '%.*s': %s dtype '%.32s'", NAME_MAX_SHOWN,
                               name, e->dt == ST_DTYPE_COUNT ? "unknown" : "unsupported sub-byte", ds);

    size_t nd = json_object_array_length(shape);
    if (nd > FLOCK_ST_MAX_DIMS)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor '%.*s': %zu dimensions, at most %d supported",
                               NAME_MAX_SHOWN, name, nd, FLOCK_ST_MAX_DIMS);
    e->n_dims = (uint32_t)nd;
    uint64_t elems = 1;
    for (size_t i = 0; i < nd; i++) {
        struct json_object *d = json_object_array_get_idx(shape, i);
        if (!json_u64(d, &e->shape[i]))
            return flock_error_set(err, FLOCK_E_CORRUPT,
                                   "tensor '%.*s': shape[%zu] must be a non-negative integer, found %s",
                                   NAME_MAX_SHOWN, name, i, json_object_to_json_string(d));
        if (__builtin_mul_overflow(elems, e->shape[i], &elems))
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': the element count of the shape overflows 64 bits",
                                   NAME_MAX_SHOWN, name);
    }
    uint64_t bytes;
    if (__builtin_mul_overflow(elems, (uint64_t)st_dtypes[e->dt].size, &bytes))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': %llu %s elements overflow 64 bits of bytes",
                               NAME_MAX_SHOWN, name, (unsigned long long)elems, st_dtypes[e->dt].name);

    if (json_object_array_length(offs) != 2)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': \"data_offsets\" has %zu entries, expected 2",
                               NAME_MAX_SHOWN, name, json_object_array_length(offs));
    if (!json_u64(json_object_array_get_idx(offs, 0), &e->begin) ||
        !json_u64(json_object_array_get_idx(offs, 1), &e->end))
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "tensor '%.*s': \"data_offsets\" must hold two non-negative integers, found %s",
                               NAME_MAX_SHOWN, name, json_object_to_json_string(offs));
    if (e->end < e->begin)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s': data_offsets [%llu, %llu] end before they begin",
                               NAME_MAX_SHOWN, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != bytes)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "tensor '%.*s': data_offsets [%llu, %llu] span %llu bytes, but %llu %s elements need %llu",
                               NAME_MAX_SHOWN, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                               (unsigned long long)(e->end - e->begin), (unsigned long long)elems,
                               st_dtypes[e->dt].name, (unsigned long long)bytes);
    return FLOCK_OK;
}

/* The tensors, sorted by offset, must tile [0, data_size) exactly. */
static flock_status check_tiling(st_entry *e, size_t n, uint64_t data_size, flock_error *err)
{
    st_entry **by_off = malloc((n ? n : 1) * sizeof *by_off);
    if (!by_off)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate %zu tensor entries", n);
    for (size_t i = 0; i < n; i++)
        by_off[i] = &e[i];
    qsort(by_off, n, sizeof *by_off, cmp_entry_offset);
    flock_status st = FLOCK_OK;
    uint64_t pos = 0;
    const st_entry *prev = NULL;
    for (size_t i = 0; i < n && st == FLOCK_OK; i++) {
        const st_entry *t = by_off[i];
        if (t->end > data_size)
            st = flock_error_set(err, FLOCK_E_TRUNCATED,
                                 "tensor '%.*s': data_offsets [%llu, %llu] end beyond the data region of %llu bytes",
                                 NAME_MAX_SHOWN, t->name, (unsigned long long)t->begin,
                                 (unsigned long long)t->end, (unsigned long long)data_size);
        else if (t->begin < pos)
            st = flock_error_set(err, FLOCK_E_CORRUPT,
                                 "tensor '%.*s': data_offsets [%llu, %llu] overlap tensor '%.*s' [%llu, %llu]",
                                 NAME_MAX_SHOWN, t->name, (unsigned long long)t->begin,
                                 (unsigned long long)t->end, NAME_MAX_SHOWN, prev->name,
                                 (unsigned long long)prev->begin, (unsigned long long)prev->end);
        else if (t->begin > pos)
            st = flock_error_set(err, FLOCK_E_CORRUPT,
                                 "tensor '%.*s': data begins at %llu, expected %llu (%llu unused bytes before it)",
                                 NAME_MAX_SHOWN, t->name, (unsigned long long)t->begin,
                                 (unsigned long long)pos, (unsigned long long)(t->begin - pos));
        pos = t->end;
        prev = t;
    }
    if (st == FLOCK_OK && pos != data_size)
        st = flock_error_set(err, FLOCK_E_CORRUPT,
                             "the tensors' data ends at offset %llu, but the data region holds %llu bytes",
                             (unsigned long long)pos, (unsigned long long)data_size);
    free(by_off);
    return st;
}

/* Validates the parsed header and builds the handle's tensor table. */
static flock_status build_table(flock_safetensors *st, struct json_object *root, const uint8_t *data,
                                uint64_t data_size, flock_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return flock_error_set(err, FLOCK_E_CORRUPT, "header: expected a JSON object, found %s",
                               flock_json_type_word(root));
    size_t n_keys = (size_t)json_object_object_length(root);
    st_entry *e = calloc(n_keys ? n_keys : 1, sizeof *e);
    if (!e)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate %zu tensor entries", n_keys);
    size_t n = 0, names_bytes = 0;
    flock_status s = FLOCK_OK;
    json_object_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                s = flock_error_set(err, FLOCK_E_CORRUPT, "\"__metadata__\": expected an object, found %s",
                                    flock_json_type_word(val));
                break;
            }
            json_object_object_foreach(val, mkey, mval) {
                if (!json_object_is_type(mval, json_type_string)) {
                    s = flock_error_set(err, FLOCK_E_CORRUPT,
                                        "\"__metadata__\".\"%.*s\": expected a string, found %s",
                                        NAME_MAX_SHOWN, mkey, flock_json_type_word(mval));
                    break;
                }
            }
            if (s != FLOCK_OK)
                break;
            continue;
        }
        s = parse_entry(key, val, &e[n], err);
        if (s != FLOCK_OK)
            break;
        names_bytes += strlen(key) + 1;
        n++;
    }
    if (s == FLOCK_OK) {
        /* json-c merges duplicate keys, so this only guards the invariant. */
        qsort(e, n, sizeof *e, cmp_entry_name);
        for (size_t i = 1; i < n && s == FLOCK_OK; i++)
            if (strcmp(e[i - 1].name, e[i].name) == 0)
                s = flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%.*s' appears twice", NAME_MAX_SHOWN,
                                    e[i].name);
    }
    if (s == FLOCK_OK)
        s = check_tiling(e, n, data_size, err);
    for (size_t i = 0; i < n && s == FLOCK_OK; i++)
        if (st_dtypes[e[i].dt].flock < 0)
            s = flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                "tensor '%.*s': dtype %s is not supported (flock reads F32, F16 and BF16)",
                                NAME_MAX_SHOWN, e[i].name, st_dtypes[e[i].dt].name);
    if (s == FLOCK_OK) {
        st->t = calloc(n ? n : 1, sizeof *st->t);
        st->names = malloc(names_bytes ? names_bytes : 1);
        if (!st->t || !st->names)
            s = flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate the table of %zu tensors", n);
    }
    if (s == FLOCK_OK) {
        char *p = st->names;
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(e[i].name) + 1;
            memcpy(p, e[i].name, len);
            flock_st_tensor *t = &st->t[i];
            t->name = p;
            p += len;
            t->dtype = (flock_dtype)st_dtypes[e[i].dt].flock;
            t->n_dims = e[i].n_dims;
            memcpy(t->shape, e[i].shape, sizeof t->shape);
            t->data = data + e[i].begin;
            t->nbytes = e[i].end - e[i].begin;
        }
        st->n = n;
    }
    free(e);
    return s;
}

/* Parses the image at (data, size) into `st` (tensor pointers refer to data). */
static flock_status parse_image(flock_safetensors *st, const uint8_t *data, size_t size, flock_error *err)
{
    flock_reader r = flock_reader_init(data, size);
    uint64_t hlen;
    if (!flock_rd_u64(&r, &hlen))
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "the file is %zu bytes, too short for the 8-byte header length", size);
    if (hlen > FLOCK_ST_MAX_HEADER)
        return flock_error_set(err, FLOCK_E_CORRUPT, "header length %llu at offset 0 exceeds the limit of %u bytes",
                               (unsigned long long)hlen, FLOCK_ST_MAX_HEADER);
    if (hlen > flock_rd_left(&r))
        return flock_error_set(err, FLOCK_E_TRUNCATED,
                               "header length %llu at offset 0 exceeds the %zu bytes after it",
                               (unsigned long long)hlen, flock_rd_left(&r));
    const uint8_t *hdr = flock_rd_span(&r, (size_t)hlen);
    if (!hdr)
        return flock_error_set(err, FLOCK_E_INTERNAL, "header span check failed");
    struct json_object *root = NULL;
    flock_status s = flock_json_parse((const char *)hdr, (size_t)hlen, true, "safetensors header", &root, err);
    if (s != FLOCK_OK)
        return s;
    s = build_table(st, root, data + r.off, flock_rd_left(&r), err);
    json_object_put(root);
    return s;
}

flock_status flock_safetensors_open_memory(const void *data, size_t size, flock_safetensors **out,
                                           flock_error *err)
{
    if (!out || (!data && size))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_safetensors_open_memory: NULL argument");
    flock_safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate a safetensors handle");
    flock_status s = parse_image(st, data, size, err);
    if (s != FLOCK_OK) {
        flock_safetensors_free(st);
        return s;
    }
    *out = st;
    return FLOCK_OK;
}

flock_status flock_safetensors_open(const char *path, flock_safetensors **out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_safetensors_open: NULL argument");
    flock_file_map map = {0};
    flock_status s = flock_map_file(path, &map, err);
    if (s != FLOCK_OK)
        return s;
    flock_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        flock_unmap_file(&map);
        return flock_error_set(err, FLOCK_E_NOMEM, "%s: cannot allocate a safetensors handle", path);
    }
    st->map = map;
    s = parse_image(st, map.data, map.size, err);
    if (s != FLOCK_OK) {
        flock_safetensors_free(st);
        return flock_error_prefix(err, s, "%s", path);
    }
    *out = st;
    return FLOCK_OK;
}

void flock_safetensors_free(flock_safetensors *st)
{
    if (!st)
        return;
    flock_unmap_file(&st->map);
    free(st->t);
    free(st->names);
    free(st);
}

uint64_t flock_safetensors_count(const flock_safetensors *st)
{
    return st ? st->n : 0;
}

flock_status flock_safetensors_tensor(const flock_safetensors *st, uint64_t i, flock_st_tensor *out)
{
    if (!st || !out)
        return FLOCK_E_INVALID_ARG;
    if (i >= st->n)
        return FLOCK_E_RANGE;
    *out = st->t[i];
    return FLOCK_OK;
}

int64_t flock_safetensors_find(const flock_safetensors *st, const char *name)
{
    if (!st || !name)
        return -1;
    uint64_t lo = 0, hi = st->n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[mid].name, name);
        if (c == 0)
            return (int64_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}
