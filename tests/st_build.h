/* Test helper: builds safetensors images and model folders in a temp dir. */
#ifndef FLOCK_TESTS_ST_BUILD_H
#define FLOCK_TESTS_ST_BUILD_H

#include "flock/formats.h"
#include "test_util.h"

#include <ftw.h>
#include <unistd.h>

/* One tensor to write: values are fresh random floats, stored as `dtype`. */
typedef struct st_spec {
    const char *name;
    flock_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[4];
    float *vals; /* filled by st_build_image: the values as stored, read back to f32 */
} st_spec;

static inline uint64_t st_spec_elems(const st_spec *s)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < s->n_dims; i++)
        n *= s->shape[i];
    return n;
}

static inline const char *st_dtype_tag(flock_dtype t)
{
    return t == FLOCK_DTYPE_F32 ? "F32" : t == FLOCK_DTYPE_F16 ? "F16" : "BF16";
}

/* Appends to a growing string. */
static inline void st_cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void st_cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (*len + (size_t)need + 1 > *cap) {
        *cap = (*len + (size_t)need + 1) * 2;
        *buf = realloc(*buf, *cap);
        assert_non_null(*buf);
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)need;
}

/* 8-byte length + header text + data, in one malloc'd buffer. */
static inline uint8_t *st_raw_image(const char *header, size_t hlen, const void *data, size_t dlen, size_t *out_len)
{
    uint8_t *img = malloc(8 + hlen + dlen + 1);
    assert_non_null(img);
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(img + 8, header, hlen);
    if (dlen)
        memcpy(img + 8 + hlen, data, dlen);
    *out_len = 8 + hlen + dlen;
    return img;
}

/* A valid image holding the tensors in the given order (data laid out in that
 * order), with the header padded with spaces to a multiple of 8 as the
 * reference writer does. Fills each spec's `vals`. */
static inline uint8_t *st_build_image(st_spec *t, size_t n, const char *metadata_json, uint64_t *seed, size_t *out_len)
{
    char *h = NULL, *data = NULL;
    size_t hl = 0, hc = 0, dl = 0;
    st_cat(&h, &hl, &hc, "{");
    if (metadata_json)
        st_cat(&h, &hl, &hc, "\"__metadata__\":%s%s", metadata_json, n ? "," : "");
    for (size_t i = 0; i < n; i++) {
        uint64_t ne = st_spec_elems(&t[i]);
        size_t es = flock_dtype_size(t[i].dtype);
        t[i].vals = malloc((ne ? ne : 1) * sizeof(float));
        data = realloc(data, dl + ne * es + 1);
        assert_true(t[i].vals && data);
        for (uint64_t k = 0; k < ne; k++)
            t[i].vals[k] = flock_test_randf(seed) * 4.0f;
        assert_int_equal(flock_convert_from_f32(t[i].dtype, t[i].vals, data + dl, ne), FLOCK_OK);
        assert_int_equal(flock_convert_to_f32(t[i].dtype, data + dl, t[i].vals, ne), FLOCK_OK);
        st_cat(&h, &hl, &hc, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t[i].name,
               st_dtype_tag(t[i].dtype));
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            st_cat(&h, &hl, &hc, "%s%llu", d ? "," : "", (unsigned long long)t[i].shape[d]);
        st_cat(&h, &hl, &hc, "],\"data_offsets\":[%zu,%zu]}", dl, dl + ne * es);
        dl += ne * es;
    }
    st_cat(&h, &hl, &hc, "}");
    while (hl % 8)
        st_cat(&h, &hl, &hc, " ");
    uint8_t *img = st_raw_image(h, hl, data, dl, out_len);
    free(h);
    free(data);
    return img;
}

static inline void st_free_specs(st_spec *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].vals);
        t[i].vals = NULL;
    }
}

static inline void st_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static inline void st_write_text(const char *dir, const char *name, const char *text)
{
    st_write_file(dir, name, text, strlen(text));
}

/* A fresh empty directory under $TMPDIR (or /tmp); `buf` holds its path. */
static inline const char *st_tmpdir(char *buf, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/flock_hf_XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
    return buf;
}

static inline int st_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void st_rmtree(const char *dir)
{
    nftw(dir, st_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
