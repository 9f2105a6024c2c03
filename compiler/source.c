/* The model-source abstraction: one view over a GGUF file and a Hugging Face
 * folder. Hyper-parameters and tensors are asked for by canonical name
 * (compiler.h); this file maps them to each format's own names. */
#include "flock/compiler.h"
#include "source_names.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

struct flock_source {
    flock_source_kind kind;
    char *path;
    flock_gguf *gguf;
    flock_hf_model *hf;
    char arch[32];       /* canonical */
    char raw_arch[64];   /* as in the file: GGUF key prefix, HF model_type */
    const char *cfg_prefix; /* HF: "text_config." for multimodal wrappers (Gemma 3 4B+), else "" */
    char **owned;        /* strings handed out by hparam_str (GGUF strings are not terminated) */
    size_t n_owned;
};

/* Canonical architecture names from GGUF general.architecture / HF model_type. */
static const struct {
    const char *raw, *canon;
} arch_aliases[] = {
    {"llama", "llama"},   {"mistral", "mistral"}, {"qwen2", "qwen2"},   {"gemma", "gemma"},
    {"gemma2", "gemma2"}, {"gemma3", "gemma3"},   {"gemma3_text", "gemma3"}, {"opt", "opt"},
    {"gpt2", "gpt2"},
};

typedef struct hp_map {
    const char *name;
    const char *gguf[2]; /* "%s" = the GGUF architecture prefix */
    const char *hf[3];
} hp_map;

static const hp_map hparams[] = {
    {"n_layer", {"%s.block_count"}, {"num_hidden_layers", "n_layer"}},
    {"d_model", {"%s.embedding_length"}, {"hidden_size", "n_embd"}},
    {"d_ff", {"%s.feed_forward_length"}, {"intermediate_size", "ffn_dim", "n_inner"}},
    {"n_head", {"%s.attention.head_count"}, {"num_attention_heads", "n_head"}},
    {"n_kv_head", {"%s.attention.head_count_kv"}, {"num_key_value_heads"}},
    {"head_dim", {"%s.attention.key_length"}, {"head_dim"}},
    {"n_ctx", {"%s.context_length"}, {"max_position_embeddings", "n_positions"}},
    {"n_vocab", {"%s.vocab_size"}, {"vocab_size"}},
    {"norm_eps",
     {"%s.attention.layer_norm_rms_epsilon", "%s.attention.layer_norm_epsilon"},
     {"rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"}},
    {"rope_theta", {"%s.rope.freq_base"}, {"rope_theta"}},
    {"rope_dim", {"%s.rope.dimension_count"}, {NULL}},
    {"rope_local_theta", {NULL}, {"rope_local_base_freq"}},
    {"sliding_window", {"%s.attention.sliding_window"}, {"sliding_window"}},
    {"sliding_window_pattern", {NULL}, {"sliding_window_pattern"}},
    {"attn_softcap", {"%s.attn_logit_softcapping"}, {"attn_logit_softcapping"}},
    {"final_softcap", {"%s.final_logit_softcapping"}, {"final_logit_softcapping"}},
    {"query_pre_attn_scalar", {NULL}, {"query_pre_attn_scalar"}},
    {"rope_scaling_type", {"%s.rope.scaling.type"}, {"rope_scaling.rope_type", "rope_scaling.type"}},
    {"rope_scaling_factor", {"%s.rope.scaling.factor"}, {"rope_scaling.factor"}},
    {"rope_low_freq_factor", {NULL}, {"rope_scaling.low_freq_factor"}},
    {"rope_high_freq_factor", {NULL}, {"rope_scaling.high_freq_factor"}},
    {"rope_orig_ctx", {"%s.rope.scaling.original_context_length"},
     {"rope_scaling.original_max_position_embeddings"}},
    {"act", {NULL}, {"hidden_act", "hidden_activation", "activation_function"}},
    {"tie_embeddings", {NULL}, {"tie_word_embeddings"}},
    {"model_name", {"general.name"}, {"_name_or_path"}},
};

static const hp_map *find_hparam(const char *name)
{
    for (size_t i = 0; i < sizeof hparams / sizeof hparams[0]; i++)
        if (strcmp(hparams[i].name, name) == 0)
            return &hparams[i];
    return NULL;
}

/* ---- open / free ---------------------------------------------------------- */

static void canonical_arch(flock_source *s, const char *raw, size_t len)
{
    snprintf(s->raw_arch, sizeof s->raw_arch, "%.*s", (int)len, raw);
    snprintf(s->arch, sizeof s->arch, "%.*s", (int)len, raw);
    for (size_t i = 0; i < sizeof arch_aliases / sizeof arch_aliases[0]; i++)
        if (strcmp(s->raw_arch, arch_aliases[i].raw) == 0)
            snprintf(s->arch, sizeof s->arch, "%s", arch_aliases[i].canon);
}

flock_status flock_source_open(const char *path, flock_source **out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_source_open: NULL argument");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return flock_error_set(err, FLOCK_E_IO, "%s: no such file or folder", path);
    flock_source *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    }
    s->cfg_prefix = "";
    flock_status st;
    if (S_ISDIR(sb.st_mode)) {
        s->kind = FLOCK_SOURCE_HF;
        st = flock_hf_open(path, &s->hf, err);
        const char *mt = NULL;
        if (!st) {
            st = flock_hf_config_str(s->hf, "model_type", &mt, err);
            if (st)
                flock_error_prefix(err, st, "%s/config.json", path);
        }
        /* Multimodal wrappers keep the language model's settings under
         * text_config and its weights under "language_model.". */
        const char *inner = NULL;
        s->cfg_prefix = "";
        if (!st && flock_hf_config_str(s->hf, "text_config.model_type", &inner, NULL) == FLOCK_OK) {
            mt = inner;
            s->cfg_prefix = "text_config.";
        }
        if (!st)
            canonical_arch(s, mt, strlen(mt));
    } else {
        s->kind = FLOCK_SOURCE_GGUF;
        st = flock_gguf_open(path, &s->gguf, err);
        const char *a = NULL;
        size_t len = 0;
        if (!st) {
            st = flock_gguf_get_str(s->gguf, "general.architecture", &a, &len, err);
            if (st)
                flock_error_prefix(err, st, "%s", path);
        }
        if (!st)
            canonical_arch(s, a, len);
    }
    if (st) {
        flock_source_free(s);
        return st;
    }
    *out = s;
    return FLOCK_OK;
}

void flock_source_free(flock_source *s)
{
    if (!s)
        return;
    flock_gguf_free(s->gguf);
    flock_hf_free(s->hf);
    for (size_t i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
    free(s->owned);
    free(s->path);
    free(s);
}

flock_source_kind flock_source_kind_of(const flock_source *s) { return s->kind; }
const char *flock_source_arch(const flock_source *s) { return s->arch; }
const flock_gguf *flock_source_gguf(const flock_source *s) { return s->gguf; }
const flock_hf_model *flock_source_hf(const flock_source *s) { return s->hf; }

/* ---- hyper-parameters ---------------------------------------------------- */

typedef enum { HP_INT, HP_FLOAT, HP_STR } hp_type;

/* Tries each of the format's keys; the first present one answers. */
static flock_status hparam_get(const flock_source *s, const char *name, hp_type type, void *out, flock_error *err)
{
    const hp_map *m = find_hparam(name);
    if (!m)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "unknown hyper-parameter name '%s'", name);
    flock_error e2 = {0};
    if (s->kind == FLOCK_SOURCE_GGUF) {
        for (int i = 0; i < 2 && m->gguf[i]; i++) {
            char key[160];
            snprintf(key, sizeof key, m->gguf[i], s->raw_arch);
            if (flock_gguf_find_key(s->gguf, key) < 0)
                continue;
            flock_status st;
            if (type == HP_INT) {
                st = flock_gguf_get_int(s->gguf, key, out, &e2);
            } else if (type == HP_FLOAT) {
                st = flock_gguf_get_float(s->gguf, key, out, &e2);
            } else {
                const char *str;
                size_t len;
                st = flock_gguf_get_str(s->gguf, key, &str, &len, &e2);
                if (!st) {
                    char *copy = strndup(str, len);
                    char **no = copy ? realloc(((flock_source *)s)->owned, (s->n_owned + 1) * sizeof *no) : NULL;
                    if (!no) {
                        free(copy);
                        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
                    }
                    ((flock_source *)s)->owned = no;
                    no[((flock_source *)s)->n_owned++] = copy;
                    *(const char **)out = copy;
                }
            }
            if (st)
                return flock_error_set(err, st, "hyper-parameter %s (GGUF key %s): %s", name, key, e2.msg);
            return FLOCK_OK;
        }
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "hyper-parameter %s: GGUF key %s is absent", name,
                               m->gguf[0] ? m->gguf[0] : "(none for this format)");
    }
    /* With a text_config, its keys first, then the top level's. */
    for (int pass = s->cfg_prefix[0] ? 0 : 1; pass < 2; pass++) {
        for (int i = 0; i < 3 && m->hf[i]; i++) {
            char key[160];
            snprintf(key, sizeof key, "%s%s", pass == 0 ? s->cfg_prefix : "", m->hf[i]);
            flock_status st;
            if (type == HP_INT) {
                st = flock_hf_config_int(s->hf, key, out, &e2);
                if (st == FLOCK_E_TYPE) { /* booleans answer as 0/1 (tie_word_embeddings) */
                    bool b;
                    if (!flock_hf_config_bool(s->hf, key, &b, NULL)) {
                        *(int64_t *)out = b;
                        st = FLOCK_OK;
                    }
                }
            } else if (type == HP_FLOAT) {
                st = flock_hf_config_float(s->hf, key, out, &e2);
            } else {
                st = flock_hf_config_str(s->hf, key, out, &e2);
            }
            if (st == FLOCK_E_NOT_FOUND)
                continue;
            if (st)
                return flock_error_set(err, st, "hyper-parameter %s (config.json %s): %s", name, key, e2.msg);
            return FLOCK_OK;
        }
    }
    return flock_error_set(err, FLOCK_E_NOT_FOUND, "hyper-parameter %s: config.json has no %s", name,
                           m->hf[0] ? m->hf[0] : "key for it");
}

flock_status flock_source_hparam_int(const flock_source *s, const char *name, int64_t *out, flock_error *err)
{
    return hparam_get(s, name, HP_INT, out, err);
}

flock_status flock_source_hparam_float(const flock_source *s, const char *name, double *out, flock_error *err)
{
    return hparam_get(s, name, HP_FLOAT, out, err);
}

flock_status flock_source_hparam_str(const flock_source *s, const char *name, const char **out, flock_error *err)
{
    return hparam_get(s, name, HP_STR, out, err);
}

/* ---- tensors --------------------------------------------------------------- */

/* Resolves a canonical name to where it lives in the file. */
typedef struct located {
    int64_t index;       /* GGUF tensor index or HF tensor index */
    uint8_t flags;       /* FLOCK_TMAP_* (HF only) */
    uint8_t part;        /* slice index for FLOCK_TMAP_SPLIT3 */
    uint32_t n_dims;     /* of the stored tensor (row-major) */
    uint64_t shape[4];
} located;

static flock_status locate(const flock_source *s, const char *name, located *loc, flock_error *err)
{
    memset(loc, 0, sizeof *loc);
    if (s->kind == FLOCK_SOURCE_GGUF) {
        loc->index = flock_gguf_find_tensor(s->gguf, name);
        if (loc->index < 0)
            return flock_error_set(err, FLOCK_E_NOT_FOUND, "tensor %s is absent from the GGUF file", name);
        flock_gguf_tensor t;
        flock_status st = flock_gguf_tensor_info(s->gguf, (uint64_t)loc->index, &t);
        if (st)
            return flock_error_set(err, st, "tensor %s: cannot read its info", name);
        if (t.n_dims < 1 || t.n_dims > 4)
            return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor %s has %u dims", name, t.n_dims);
        loc->n_dims = t.n_dims;
        for (uint32_t i = 0; i < t.n_dims; i++) /* ne[0] is contiguous: reverse into row-major */
            loc->shape[i] = t.ne[t.n_dims - 1 - i];
        return FLOCK_OK;
    }
    char hf_name[256];
    if (!flock_hf_name_for(s->arch, name, hf_name, sizeof hf_name, &loc->flags, &loc->part))
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "tensor %s has no Hugging Face name for arch %s", name, s->arch);
    loc->index = flock_hf_find_tensor(s->hf, hf_name);
    /* Some checkpoints drop the leading "model." / "transformer." prefix;
     * multimodal wrappers add "language_model.". */
    const char *dot = strchr(hf_name, '.');
    if (loc->index < 0 && dot && (strncmp(hf_name, "model.", 6) == 0 || strncmp(hf_name, "transformer.", 12) == 0))
        loc->index = flock_hf_find_tensor(s->hf, dot + 1);
    if (loc->index < 0 && s->cfg_prefix[0]) {
        char wrapped[300];
        snprintf(wrapped, sizeof wrapped, "language_model.%s", hf_name);
        loc->index = flock_hf_find_tensor(s->hf, wrapped);
    }
    if (loc->index < 0)
        return flock_error_set(err, FLOCK_E_NOT_FOUND, "tensor %s (%s) is absent from the safetensors files", name,
                               hf_name);
    flock_st_tensor t;
    flock_status st = flock_hf_tensor(s->hf, (uint64_t)loc->index, &t);
    if (st)
        return flock_error_set(err, st, "tensor %s: cannot read its info", hf_name);
    if (t.n_dims < 1 || t.n_dims > 2)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor %s has %u dims, expected 1 or 2", hf_name, t.n_dims);
    loc->n_dims = t.n_dims;
    for (uint32_t i = 0; i < t.n_dims; i++)
        loc->shape[i] = t.shape[i];
    return FLOCK_OK;
}

/* Shape after the HF transforms: transpose (Conv1D), then a third of dim 0. */
static flock_status final_shape(const char *name, const located *loc, uint32_t *n_dims, uint64_t shape[4],
                                flock_error *err)
{
    *n_dims = loc->n_dims;
    memcpy(shape, loc->shape, sizeof loc->shape);
    if ((loc->flags & FLOCK_TMAP_TRANSPOSE) && loc->n_dims == 2) {
        shape[0] = loc->shape[1];
        shape[1] = loc->shape[0];
    }
    if (loc->flags & FLOCK_TMAP_SPLIT3) {
        if (shape[0] % 3 != 0)
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s: fused dimension %llu is not a multiple of 3",
                                   name, (unsigned long long)shape[0]);
        shape[0] /= 3;
    }
    return FLOCK_OK;
}

bool flock_source_has_tensor(const flock_source *s, const char *name)
{
    located loc;
    return s && name && locate(s, name, &loc, NULL) == FLOCK_OK;
}

flock_status flock_source_tensor_shape(const flock_source *s, const char *name, uint32_t *n_dims,
                                       uint64_t shape[4], flock_error *err)
{
    located loc;
    flock_status st = locate(s, name, &loc, err);
    return st ? st : final_shape(name, &loc, n_dims, shape, err);
}

static uint64_t elems(uint32_t n_dims, const uint64_t *shape)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++)
        n *= shape[i];
    return n;
}

/* HF data may sit at any byte offset: read 16-bit values with memcpy. */
static void hf_to_f32(const flock_st_tensor *t, float *dst, uint64_t n)
{
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < n; i++) {
        if (t->dtype == FLOCK_DTYPE_F32) {
            memcpy(&dst[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = t->dtype == FLOCK_DTYPE_F16 ? flock_f16_to_f32(h) : flock_bf16_to_f32(h);
        }
    }
}

static flock_status dtype_of_ggml(uint32_t type, const char *name, flock_dtype *out, flock_error *err)
{
    for (int t = 0; t < FLOCK_DTYPE_COUNT; t++)
        if (t != FLOCK_DTYPE_I32 && t != FLOCK_DTYPE_U8 && flock_dtype_ggml((flock_dtype)t) == type) {
            *out = (flock_dtype)t;
            return FLOCK_OK;
        }
    return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor %s is %s, which flock does not store", name,
                           flock_ggml_type_name(type));
}

flock_status flock_source_tensor_dtype(const flock_source *s, const char *name, flock_dtype *out, flock_error *err)
{
    located loc;
    flock_status st = locate(s, name, &loc, err);
    if (st)
        return st;
    if (s->kind == FLOCK_SOURCE_GGUF) {
        flock_gguf_tensor t;
        if ((st = flock_gguf_tensor_info(s->gguf, (uint64_t)loc.index, &t)))
            return flock_error_set(err, st, "tensor %s: cannot read its info", name);
        return dtype_of_ggml(t.type, name, out, err);
    }
    flock_st_tensor t;
    if ((st = flock_hf_tensor(s->hf, (uint64_t)loc.index, &t)))
        return flock_error_set(err, st, "tensor %s: cannot read its info", name);
    if (t.dtype != FLOCK_DTYPE_F32 && t.dtype != FLOCK_DTYPE_F16 && t.dtype != FLOCK_DTYPE_BF16)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor %s is %s, which flock does not store", name,
                               flock_dtype_name(t.dtype));
    *out = t.dtype;
    return FLOCK_OK;
}

bool flock_source_is_quantized(const flock_source *s)
{
    if (!s || s->kind != FLOCK_SOURCE_GGUF)
        return false;
    for (uint64_t i = 0; i < flock_gguf_tensor_count(s->gguf); i++) {
        flock_gguf_tensor t;
        if (flock_gguf_tensor_info(s->gguf, i, &t) == FLOCK_OK && t.n_dims >= 2 && t.type != FLOCK_GGML_F32 &&
            t.type != FLOCK_GGML_F16 && t.type != FLOCK_GGML_BF16)
            return true;
    }
    return false;
}

flock_status flock_source_tensor_raw(const flock_source *s, const char *name, const void **data, size_t *size,
                                     flock_error *err)
{
    if (s->kind != FLOCK_SOURCE_GGUF)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor %s: raw bytes come from GGUF files only", name);
    located loc;
    flock_status st = locate(s, name, &loc, err);
    flock_gguf_tensor t;
    if (!st && (st = flock_gguf_tensor_info(s->gguf, (uint64_t)loc.index, &t)))
        flock_error_set(err, st, "tensor %s: cannot read its info", name);
    flock_dtype dt = FLOCK_DTYPE_F32;
    if (!st)
        st = dtype_of_ggml(t.type, name, &dt, err);
    if (st)
        return st;
    uint64_t want = flock_dtype_tensor_bytes(dt, loc.n_dims, loc.shape);
    if (!want || t.nbytes < want)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s: %llu bytes of %s, its shape needs %llu", name,
                               (unsigned long long)t.nbytes, flock_dtype_name(dt), (unsigned long long)want);
    *data = t.data;
    *size = (size_t)want;
    return FLOCK_OK;
}

flock_status flock_source_tensor_f32(const flock_source *s, const char *name, float **out, size_t *n_out,
                                     flock_error *err)
{
    located loc;
    flock_status st = locate(s, name, &loc, err);
    if (st)
        return st;
    uint64_t n = elems(loc.n_dims, loc.shape);
    if (n == 0 || n > SIZE_MAX / sizeof(float) / 2)
        return flock_error_set(err, FLOCK_E_RANGE, "tensor %s: %llu elements", name, (unsigned long long)n);
    float *buf = malloc(n * sizeof *buf);
    if (!buf)
        return flock_error_set(err, FLOCK_E_NOMEM, "tensor %s: cannot allocate %llu floats", name,
                               (unsigned long long)n);
    if (s->kind == FLOCK_SOURCE_GGUF) {
        st = flock_gguf_tensor_to_f32(s->gguf, (uint64_t)loc.index, buf, n, err);
        if (st) {
            free(buf);
            return st;
        }
        *out = buf;
        *n_out = n;
        return FLOCK_OK;
    }
    flock_st_tensor t;
    st = flock_hf_tensor(s->hf, (uint64_t)loc.index, &t);
    if (!st && t.nbytes < n * flock_dtype_size(t.dtype))
        st = flock_error_set(err, FLOCK_E_CORRUPT, "tensor %s: %llu bytes for %llu elements", name,
                             (unsigned long long)t.nbytes, (unsigned long long)n);
    if (st) {
        free(buf);
        return st;
    }
    hf_to_f32(&t, buf, n);
    if ((loc.flags & FLOCK_TMAP_TRANSPOSE) && loc.n_dims == 2) {
        float *tb = malloc(n * sizeof *tb);
        if (!tb) {
            free(buf);
            return flock_error_set(err, FLOCK_E_NOMEM, "tensor %s: out of memory", name);
        }
        uint64_t r = loc.shape[0], c = loc.shape[1];
        for (uint64_t i = 0; i < r; i++)
            for (uint64_t j = 0; j < c; j++)
                tb[j * r + i] = buf[i * c + j];
        free(buf);
        buf = tb;
    }
    uint32_t nd;
    uint64_t shape[4];
    st = final_shape(name, &loc, &nd, shape, err);
    if (st) {
        free(buf);
        return st;
    }
    uint64_t fn = elems(nd, shape);
    if (loc.flags & FLOCK_TMAP_SPLIT3) /* rows part*rows .. : contiguous in row-major */
        memmove(buf, buf + (uint64_t)loc.part * fn, fn * sizeof *buf);
    *out = buf;
    *n_out = fn;
    return FLOCK_OK;
}

/* ---- hashing ---------------------------------------------------------------- */

static flock_status hash_file(XXH64_state_t *h, const char *path, flock_error *err)
{
    flock_file_map m = {0};
    flock_status st = flock_map_file(path, &m, err);
    if (st)
        return st;
    XXH64_update(h, m.data, m.size);
    flock_unmap_file(&m);
    return FLOCK_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

flock_status flock_source_hash(const flock_source *s, uint64_t *out, flock_error *err)
{
    XXH64_state_t *h = XXH64_createState();
    if (!h)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    XXH64_reset(h, 0);
    flock_status st = FLOCK_OK;
    if (s->kind == FLOCK_SOURCE_GGUF) {
        st = hash_file(h, s->path, err);
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", s->path);
        st = hash_file(h, path, err);
        static const char *const optional[] = {"tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 2 && !st; i++) {
            snprintf(path, sizeof path, "%s/%s", s->path, optional[i]);
            if (access(path, F_OK) == 0)
                st = hash_file(h, path, err);
        }
        DIR *d = st ? NULL : opendir(s->path);
        char **names = NULL;
        size_t n = 0;
        if (!st && !d)
            st = flock_error_set(err, FLOCK_E_IO, "%s: cannot list the folder", s->path);
        for (struct dirent *e; d && !st && (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0)
                continue;
            char **nn = realloc(names, (n + 1) * sizeof *nn);
            if (!nn || !(nn[n] = strdup(e->d_name))) {
                if (nn)
                    names = nn;
                st = flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
                break;
            }
            names = nn;
            n++;
        }
        if (d)
            closedir(d);
        if (!st)
            qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            if (!st) {
                snprintf(path, sizeof path, "%s/%s", s->path, names[i]);
                st = hash_file(h, path, err);
            }
            free(names[i]);
        }
        free(names);
    }
    if (!st)
        *out = XXH64_digest(h);
    XXH64_freeState(h);
    return st;
}
