/*
 * Hugging Face model folders.
 *
 *   config.json                    required; a JSON object (getters below)
 *   model.safetensors              one file with every tensor, or else
 *   model.safetensors.index.json   {"weight_map": {"<tensor>": "<shard file>", ...}}
 *   tokenizer.json                 optional, kept as raw text
 *   tokenizer_config.json          optional, kept as raw text
 *
 * With an index, each shard named in the weight map is opened once; every
 * tensor the map lists must be in the shard it names, and every tensor a
 * shard holds must be listed for that shard (a disagreement means a broken
 * download). Shard names are plain file names inside the folder: '/' and
 * ".." are refused. Tensors are exposed sorted by name.
 */
#include "flock/formats.h"
#include "hf_json.h"
#include "safetensors_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Longest path segment of a config lookup and longest shard file name. */
#define SEGMENT_MAX 256
#define SHARD_NAME_MAX 255

typedef struct hf_ref {
    const char *name; /* owned by the shard's handle */
    uint32_t shard;
    uint64_t index; /* within the shard */
} hf_ref;

struct flock_hf_model {
    struct json_object *config;
    flock_safetensors **shards;
    size_t n_shards;
    hf_ref *refs; /* sorted by name */
    uint64_t n_refs;
    char *tok_json, *tok_cfg; /* NUL-terminated copies, or NULL */
    size_t tok_json_len, tok_cfg_len;
};

/* ---- files ------------------------------------------------------------- */

/* "dir/name" in malloc'd memory, or NULL. */
static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Reads a whole file into a NUL-terminated buffer. A missing file is
 * FLOCK_E_NOT_FOUND; `*out` stays untouched on failure. */
static flock_status read_text(const char *path, char **out, size_t *len, flock_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return flock_error_set(err, errno == ENOENT ? FLOCK_E_NOT_FOUND : FLOCK_E_IO, "%s: %s", path,
                               strerror(errno));
    flock_file_map map = {0};
    flock_status s = flock_map_file(path, &map, err);
    if (s != FLOCK_OK)
        return s;
    char *buf = malloc(map.size + 1);
    if (!buf) {
        flock_unmap_file(&map);
        return flock_error_set(err, FLOCK_E_NOMEM, "%s: cannot allocate %zu bytes", path, map.size + 1);
    }
    if (map.size)
        memcpy(buf, map.data, map.size);
    buf[map.size] = '\0';
    *len = map.size;
    flock_unmap_file(&map);
    *out = buf;
    return FLOCK_OK;
}

/* Reads and parses a JSON file whose top level must be an object. */
static flock_status read_json_object(const char *path, struct json_object **out, flock_error *err)
{
    char *text = NULL;
    size_t len = 0;
    flock_status s = read_text(path, &text, &len, err);
    if (s != FLOCK_OK)
        return s;
    struct json_object *o = NULL;
    s = flock_json_parse(text, len, false, path, &o, err);
    free(text);
    if (s != FLOCK_OK)
        return s;
    if (!json_object_is_type(o, json_type_object)) {
        s = flock_error_set(err, FLOCK_E_CORRUPT, "%s: the top level must be a JSON object, found %s", path,
                            flock_json_type_word(o));
        json_object_put(o);
        return s;
    }
    *out = o;
    return FLOCK_OK;
}

/* ---- tensors ----------------------------------------------------------- */

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const hf_ref *)a)->name, ((const hf_ref *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name must be a plain file name in the model folder. */
static flock_status check_shard_name(const char *index_path, const char *tensor, struct json_object *v,
                                     flock_error *err)
{
    if (!json_object_is_type(v, json_type_string))
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s: weight_map[\"%.120s\"]: expected a file name, found %s",
                               index_path, tensor, flock_json_type_word(v));
    const char *s = json_object_get_string(v);
    size_t len = strlen(s);
    if (len == 0 || len > SHARD_NAME_MAX || (size_t)json_object_get_string_len(v) != len)
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "%s: weight_map[\"%.120s\"]: shard name is empty, longer than %d bytes or holds a NUL",
                               index_path, tensor, SHARD_NAME_MAX);
    if (strchr(s, '/') || strstr(s, ".."))
        return flock_error_set(err, FLOCK_E_CORRUPT,
                               "%s: weight_map[\"%.120s\"]: shard name '%.120s' must be a file in the model folder "
                               "(no '/' or '..')",
                               index_path, tensor, s);
    return FLOCK_OK;
}

/* Opens the single model.safetensors: every tensor it holds. */
static flock_status open_single(flock_hf_model *m, const char *path, flock_error *err)
{
    m->shards = calloc(1, sizeof *m->shards);
    if (!m->shards)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate the shard table");
    flock_status s = flock_safetensors_open(path, &m->shards[0], err);
    if (s != FLOCK_OK)
        return s;
    m->n_shards = 1;
    uint64_t n = flock_safetensors_count(m->shards[0]);
    m->refs = calloc(n ? n : 1, sizeof *m->refs);
    if (!m->refs)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate the table of %llu tensors",
                               (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        flock_st_tensor t;
        flock_safetensors_tensor(m->shards[0], i, &t);
        m->refs[i] = (hf_ref){t.name, 0, i};
    }
    m->n_refs = n; /* already sorted by name */
    return FLOCK_OK;
}

/* Opens the shards named by the index's weight map, each once. */
static flock_status open_sharded(flock_hf_model *m, const char *dir, const char *index_path,
                                 struct json_object *wmap, flock_error *err)
{
    size_t n = (size_t)json_object_object_length(wmap);
    const char **names = calloc(n ? n : 1, sizeof *names);
    flock_status s = FLOCK_OK;
    if (!names)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate %zu shard names", n);
    size_t k = 0;
    json_object_object_foreach(wmap, tname, v) {
        s = check_shard_name(index_path, tname, v, err);
        if (s != FLOCK_OK)
            goto done;
        names[k++] = json_object_get_string(v);
    }
    /* Unique shard names, sorted so that shard numbering is deterministic. */
    qsort(names, k, sizeof *names, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
            names[u++] = names[i];
    m->shards = calloc(u ? u : 1, sizeof *m->shards);
    m->refs = calloc(n ? n : 1, sizeof *m->refs);
    if (!m->shards || !m->refs) {
        s = flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate the tables of %zu shards", u);
        goto done;
    }
    for (size_t i = 0; i < u; i++) {
        char *p = join_path(dir, names[i]);
        if (!p) {
            s = flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate a path");
            goto done;
        }
        if (!file_exists(p)) {
            s = flock_error_set(err, FLOCK_E_NOT_FOUND, "%s: shard '%.120s' named by the weight map is missing (%s)",
                                index_path, names[i], p);
            free(p);
            goto done;
        }
        s = flock_safetensors_open(p, &m->shards[i], err);
        free(p);
        if (s != FLOCK_OK)
            goto done;
        m->n_shards = i + 1;
    }
    /* Every listed tensor is in its shard. */
    uint64_t total = 0;
    json_object_object_foreach(wmap, tname2, v2) {
        const char *sname = json_object_get_string(v2);
        const char **hit = bsearch(&sname, names, u, sizeof *names, cmp_str);
        if (!hit) {
            s = flock_error_set(err, FLOCK_E_INTERNAL, "%s: shard '%.120s' lost from the shard table", index_path,
                                sname);
            goto done;
        }
        size_t si = (size_t)(hit - names);
        int64_t ti = flock_safetensors_find(m->shards[si], tname2);
        if (ti < 0) {
            s = flock_error_set(err, FLOCK_E_NOT_FOUND,
                                "%s: tensor '%.120s' is mapped to shard '%.120s', which does not hold it",
                                index_path, tname2, sname);
            goto done;
        }
        flock_st_tensor t;
        flock_safetensors_tensor(m->shards[si], (uint64_t)ti, &t);
        m->refs[m->n_refs++] = (hf_ref){t.name, (uint32_t)si, (uint64_t)ti};
    }
    /* ... and every tensor of a shard is listed for that shard. */
    for (size_t si = 0; si < u; si++)
        total += flock_safetensors_count(m->shards[si]);
    if (total != m->n_refs) {
        for (size_t si = 0; si < u; si++) {
            for (uint64_t i = 0; i < flock_safetensors_count(m->shards[si]); i++) {
                flock_st_tensor t;
                flock_safetensors_tensor(m->shards[si], i, &t);
                struct json_object *mapped;
                if (!json_object_object_get_ex(wmap, t.name, &mapped) ||
                    strcmp(json_object_get_string(mapped), names[si]) != 0) {
                    s = flock_error_set(err, FLOCK_E_CORRUPT,
                                        "%s: shard '%.120s' holds tensor '%.120s', which the weight map does not "
                                        "assign to it",
                                        index_path, names[si], t.name);
                    goto done;
                }
            }
        }
        s = flock_error_set(err, FLOCK_E_INTERNAL, "%s: tensor count mismatch", index_path);
        goto done;
    }
    qsort(m->refs, m->n_refs, sizeof *m->refs, cmp_ref);
done:
    free(names);
    return s;
}

/* Picks model.safetensors, else the index; fills m->shards and m->refs. */
static flock_status open_tensors(flock_hf_model *m, const char *dir, flock_error *err)
{
    char *single = join_path(dir, "model.safetensors");
    char *index = join_path(dir, "model.safetensors.index.json");
    flock_status s;
    struct json_object *idx = NULL, *wmap = NULL;
    if (!single || !index) {
        s = flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate a path");
    } else if (file_exists(single)) {
        s = open_single(m, single, err);
    } else if (!file_exists(index)) {
        s = flock_error_set(err, FLOCK_E_NOT_FOUND, "%s: neither model.safetensors nor model.safetensors.index.json",
                            dir);
    } else if ((s = read_json_object(index, &idx, err)) == FLOCK_OK) {
        if (!json_object_object_get_ex(idx, "weight_map", &wmap) || !json_object_is_type(wmap, json_type_object))
            s = flock_error_set(err, FLOCK_E_CORRUPT, "%s: \"weight_map\" is missing or not an object", index);
        else
            s = open_sharded(m, dir, index, wmap, err);
    }
    json_object_put(idx);
    free(single);
    free(index);
    return s;
}

/* ---- open / free ------------------------------------------------------- */

/* Optional raw text file: absent is fine, unreadable is an error. */
static flock_status read_optional(const char *dir, const char *name, char **out, size_t *len, flock_error *err)
{
    char *p = join_path(dir, name);
    if (!p)
        return flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate a path");
    flock_status s = read_text(p, out, len, err);
    free(p);
    return s == FLOCK_E_NOT_FOUND ? FLOCK_OK : s;
}

flock_status flock_hf_open(const char *dir, flock_hf_model **out, flock_error *err)
{
    if (!dir || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_open: NULL argument");
    flock_hf_model *m = calloc(1, sizeof *m);
    char *cfg = join_path(dir, "config.json");
    flock_status s;
    if (!m || !cfg) {
        s = flock_error_set(err, FLOCK_E_NOMEM, "cannot allocate a model handle");
        goto fail;
    }
    s = read_json_object(cfg, &m->config, err);
    if (s == FLOCK_E_NOT_FOUND)
        flock_error_set(err, s, "%s: config.json is missing (a Hugging Face model folder needs one)", cfg);
    if (s == FLOCK_OK)
        s = open_tensors(m, dir, err);
    if (s == FLOCK_OK)
        s = read_optional(dir, "tokenizer.json", &m->tok_json, &m->tok_json_len, err);
    if (s == FLOCK_OK)
        s = read_optional(dir, "tokenizer_config.json", &m->tok_cfg, &m->tok_cfg_len, err);
    if (s != FLOCK_OK)
        goto fail;
    free(cfg);
    *out = m;
    return FLOCK_OK;
fail:
    free(cfg);
    flock_hf_free(m);
    return s;
}

void flock_hf_free(flock_hf_model *m)
{
    if (!m)
        return;
    json_object_put(m->config);
    for (size_t i = 0; i < m->n_shards; i++)
        flock_safetensors_free(m->shards[i]);
    free(m->shards);
    free(m->refs);
    free(m->tok_json);
    free(m->tok_cfg);
    free(m);
}

uint64_t flock_hf_tensor_count(const flock_hf_model *m)
{
    return m ? m->n_refs : 0;
}

flock_status flock_hf_tensor(const flock_hf_model *m, uint64_t i, flock_st_tensor *out)
{
    if (!m || !out)
        return FLOCK_E_INVALID_ARG;
    if (i >= m->n_refs)
        return FLOCK_E_RANGE;
    return flock_safetensors_tensor(m->shards[m->refs[i].shard], m->refs[i].index, out);
}

int64_t flock_hf_find_tensor(const flock_hf_model *m, const char *name)
{
    if (!m || !name)
        return -1;
    hf_ref key = {name, 0, 0};
    const hf_ref *hit = bsearch(&key, m->refs, m->n_refs, sizeof *m->refs, cmp_ref);
    return hit ? (int64_t)(hit - m->refs) : -1;
}

const char *flock_hf_tokenizer_json(const flock_hf_model *m, size_t *len)
{
    if (len)
        *len = m && m->tok_json ? m->tok_json_len : 0;
    return m ? m->tok_json : NULL;
}

const char *flock_hf_tokenizer_config_json(const flock_hf_model *m, size_t *len)
{
    if (len)
        *len = m && m->tok_cfg ? m->tok_cfg_len : 0;
    return m ? m->tok_cfg : NULL;
}

/* ---- config.json ------------------------------------------------------- */

/* Walks the dotted `path` from the top of config.json. An absent key or a
 * null anywhere on the way is FLOCK_E_NOT_FOUND; stepping into a value that
 * is not an object is FLOCK_E_TYPE. */
static flock_status config_lookup(const flock_hf_model *m, const char *path, struct json_object **out,
                                  flock_error *err)
{
    if (!m || !path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "config lookup: NULL argument");
    struct json_object *cur = m->config;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len >= SEGMENT_MAX)
            return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                   "config.json: path '%.200s' has an empty or over-long segment", path);
        char seg[SEGMENT_MAX];
        memcpy(seg, p, len);
        seg[len] = '\0';
        if (!json_object_is_type(cur, json_type_object))
            return flock_error_set(err, FLOCK_E_TYPE,
                                   "config.json: '%.*s' is %s, not an object, so '%.200s' cannot be looked up",
                                   (int)(p - path - 1), path, flock_json_type_word(cur), path);
        struct json_object *next = NULL;
        if (!json_object_object_get_ex(cur, seg, &next) || !next)
            return flock_error_set(err, FLOCK_E_NOT_FOUND, "config.json: '%.200s' is %s", path,
                                   next || dot ? "absent" : "absent or null");
        cur = next;
        if (!dot)
            break;
        p = dot + 1;
    }
    *out = cur;
    return FLOCK_OK;
}

static flock_status type_error(const char *path, const char *want, struct json_object *v, flock_error *err)
{
    return flock_error_set(err, FLOCK_E_TYPE, "config.json: '%.200s' is %s, expected %s", path,
                           flock_json_type_word(v), want);
}

/* A JSON integer as int64; values above INT64_MAX are FLOCK_E_RANGE. */
static flock_status json_to_int(const char *path, struct json_object *v, int64_t *out, flock_error *err)
{
    if (!json_object_is_type(v, json_type_int))
        return type_error(path, "an integer", v, err);
    int64_t x = json_object_get_int64(v);
    if (x == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
        return flock_error_set(err, FLOCK_E_RANGE, "config.json: '%.200s' = %llu does not fit in int64", path,
                               (unsigned long long)json_object_get_uint64(v));
    *out = x;
    return FLOCK_OK;
}

static flock_status json_to_float(const char *path, struct json_object *v, double *out, flock_error *err)
{
    if (json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        return FLOCK_OK;
    }
    if (!json_object_is_type(v, json_type_int))
        return type_error(path, "a number", v, err);
    int64_t x = json_object_get_int64(v);
    *out = x == INT64_MAX ? (double)json_object_get_uint64(v) : (double)x;
    return FLOCK_OK;
}

flock_status flock_hf_config_int(const flock_hf_model *m, const char *path, int64_t *out, flock_error *err)
{
    struct json_object *v = NULL;
    flock_status s = config_lookup(m, path, &v, err);
    if (s == FLOCK_OK && !out)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_int: NULL out");
    return s == FLOCK_OK ? json_to_int(path, v, out, err) : s;
}

flock_status flock_hf_config_float(const flock_hf_model *m, const char *path, double *out, flock_error *err)
{
    struct json_object *v = NULL;
    flock_status s = config_lookup(m, path, &v, err);
    if (s == FLOCK_OK && !out)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_float: NULL out");
    return s == FLOCK_OK ? json_to_float(path, v, out, err) : s;
}

flock_status flock_hf_config_bool(const flock_hf_model *m, const char *path, bool *out, flock_error *err)
{
    struct json_object *v = NULL;
    flock_status s = config_lookup(m, path, &v, err);
    if (s == FLOCK_OK && !out)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_bool: NULL out");
    if (s != FLOCK_OK)
        return s;
    if (!json_object_is_type(v, json_type_boolean))
        return type_error(path, "a boolean", v, err);
    *out = json_object_get_boolean(v) != 0;
    return FLOCK_OK;
}

flock_status flock_hf_config_str(const flock_hf_model *m, const char *path, const char **out, flock_error *err)
{
    struct json_object *v = NULL;
    flock_status s = config_lookup(m, path, &v, err);
    if (s == FLOCK_OK && !out)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_str: NULL out");
    if (s != FLOCK_OK)
        return s;
    if (!json_object_is_type(v, json_type_string))
        return type_error(path, "a string", v, err);
    *out = json_object_get_string(v);
    return FLOCK_OK;
}

/* The array at `path`, for the *_len and *_at getters. */
static flock_status config_array(const flock_hf_model *m, const char *path, struct json_object **out,
                                 flock_error *err)
{
    struct json_object *v = NULL;
    flock_status s = config_lookup(m, path, &v, err);
    if (s != FLOCK_OK)
        return s;
    if (!json_object_is_type(v, json_type_array))
        return type_error(path, "an array", v, err);
    *out = v;
    return FLOCK_OK;
}

/* Element i of the array at `path`: out of range is FLOCK_E_RANGE, a null FLOCK_E_NOT_FOUND. */
static flock_status config_elem(const flock_hf_model *m, const char *path, uint64_t i, struct json_object **out,
                                flock_error *err)
{
    struct json_object *a = NULL;
    flock_status s = config_array(m, path, &a, err);
    if (s != FLOCK_OK)
        return s;
    size_t n = json_object_array_length(a);
    if (i >= n)
        return flock_error_set(err, FLOCK_E_RANGE, "config.json: '%.200s'[%llu] is beyond its %zu elements", path,
                               (unsigned long long)i, n);
    struct json_object *e = json_object_array_get_idx(a, (size_t)i);
    if (!e)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "config.json: '%.200s'[%llu] is null", path,
                               (unsigned long long)i);
    *out = e;
    return FLOCK_OK;
}

flock_status flock_hf_config_len(const flock_hf_model *m, const char *path, uint64_t *n, flock_error *err)
{
    struct json_object *a = NULL;
    flock_status s = config_array(m, path, &a, err);
    if (s == FLOCK_OK && !n)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_len: NULL out");
    if (s == FLOCK_OK)
        *n = json_object_array_length(a);
    return s;
}

flock_status flock_hf_config_str_at(const flock_hf_model *m, const char *path, uint64_t i, const char **out,
                                    flock_error *err)
{
    struct json_object *e = NULL;
    flock_status s = config_elem(m, path, i, &e, err);
    if (s == FLOCK_OK && !out)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_str_at: NULL out");
    if (s != FLOCK_OK)
        return s;
    if (!json_object_is_type(e, json_type_string))
        return flock_error_set(err, FLOCK_E_TYPE, "config.json: '%.200s'[%llu] is %s, expected a string", path,
                               (unsigned long long)i, flock_json_type_word(e));
    *out = json_object_get_string(e);
    return FLOCK_OK;
}

flock_status flock_hf_config_float_at(const flock_hf_model *m, const char *path, uint64_t i, double *out,
                                      flock_error *err)
{
    struct json_object *e = NULL;
    flock_status s = config_elem(m, path, i, &e, err);
    if (s == FLOCK_OK && !out)
        s = flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_hf_config_float_at: NULL out");
    return s == FLOCK_OK ? json_to_float(path, e, out, err) : s;
}
