/* Test helper: writes small Hugging Face model folders (config.json,
 * model.safetensors, tokenizer.json) with random f32 weights it keeps in
 * memory, so tests can check what the compiler made of them. */
#ifndef FLOCK_TEST_HF_WRITER_H
#define FLOCK_TEST_HF_WRITER_H

#include "test_util.h"

#include <sys/stat.h>

#define HFW_MAX 256

typedef struct hfw_tensor {
    char name[96];
    uint64_t shape[2];
    int n_dims;
    float *data;
} hfw_tensor;

typedef struct hfw {
    hfw_tensor t[HFW_MAX];
    int n;
    uint64_t seed;
} hfw;

static inline void hfw_init(hfw *w, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
}

static inline void hfw_free(hfw *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->t[i].data);
    w->n = 0;
}

/* Adds a tensor of random values in [-1, 1) (cols = 0 for 1-D). Names may use
 * a %d for the layer. */
static inline void hfw_add(hfw *w, uint64_t rows, uint64_t cols, const char *fmt, int layer)
{
    assert_true(w->n < HFW_MAX);
    hfw_tensor *t = &w->t[w->n++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->n_dims = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    uint64_t n = rows * (cols ? cols : 1);
    t->data = malloc(n * sizeof(float));
    assert_non_null(t->data);
    for (uint64_t i = 0; i < n; i++)
        t->data[i] = flock_test_randf(&w->seed);
}

static inline const hfw_tensor *hfw_find(const hfw *w, const char *fmt, int layer)
{
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return &w->t[i];
    fail_msg("test tensor %s not written", name);
    return NULL;
}

static inline void hfw_write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* model.safetensors: u64 header length, JSON header, f32 data. */
static inline void hfw_write(const hfw *w, const char *dir, const char *config_json, int n_vocab)
{
    mkdir(dir, 0755);
    hfw_write_file(dir, "config.json", config_json);
    size_t cap = 64 + (size_t)w->n * 200, len = 0;
    char *hdr = malloc(cap);
    assert_non_null(hdr);
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const hfw_tensor *t = &w->t[i];
        uint64_t bytes = t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1) * 4;
        if (t->n_dims == 2)
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,%llu],"
                                    "\"data_offsets\":[%llu,%llu]}", t->name, (unsigned long long)t->shape[0],
                                    (unsigned long long)t->shape[1], (unsigned long long)off,
                                    (unsigned long long)(off + bytes));
        else
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu],"
                                    "\"data_offsets\":[%llu,%llu]}", t->name, (unsigned long long)t->shape[0],
                                    (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    assert_true(len < cap);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t l8[8];
    for (int i = 0; i < 8; i++)
        l8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    fwrite(l8, 1, 8, f);
    fwrite(hdr, 1, len, f);
    for (int i = 0; i < w->n; i++) {
        const hfw_tensor *t = &w->t[i];
        fwrite(t->data, 4, t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1), f);
    }
    fclose(f);
    free(hdr);
    /* A byte-level BPE tokenizer.json with n_vocab plain tokens. */
    size_t tcap = 256 + (size_t)n_vocab * 24, tl = 0;
    char *tok = malloc(tcap);
    assert_non_null(tok);
    tl += (size_t)snprintf(tok + tl, tcap - tl, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int i = 0; i < n_vocab; i++)
        tl += (size_t)snprintf(tok + tl, tcap - tl, "%s\"t%d\":%d", i ? "," : "", i, i);
    tl += (size_t)snprintf(tok + tl, tcap - tl, "},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                           "\"use_regex\":true},\"decoder\":{\"type\":\"ByteLevel\"}}");
    assert_true(tl < tcap);
    hfw_write_file(dir, "tokenizer.json", tok);
    free(tok);
}

#endif
