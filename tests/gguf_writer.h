/* A tiny GGUF writer for tests and fuzz seeds: builds images in memory with
 * any metadata (including malformed values, which is the point) and tensors. */
#ifndef FLOCK_TEST_GGUF_WRITER_H
#define FLOCK_TEST_GGUF_WRITER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct gw_buf {
    uint8_t *p;
    size_t n, cap;
    uint64_t count; /* entries written (KV buffers) */
} gw_buf;

static inline void gw_put(gw_buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            abort(); /* test helper: out of memory is fatal */
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static inline void gw_u8(gw_buf *b, uint8_t v) { gw_put(b, &v, 1); }

static inline void gw_le(gw_buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        gw_u8(b, (uint8_t)(v >> (8 * i)));
}

static inline void gw_u32(gw_buf *b, uint32_t v) { gw_le(b, v, 4); }
static inline void gw_u64(gw_buf *b, uint64_t v) { gw_le(b, v, 8); }

static inline void gw_f32(gw_buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    gw_u32(b, u);
}

static inline void gw_f64(gw_buf *b, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    gw_u64(b, u);
}

static inline void gw_str(gw_buf *b, const char *s)
{
    gw_u64(b, strlen(s));
    gw_put(b, s, strlen(s));
}

/* Overwrites a little-endian field in place (to corrupt built images). */
static inline void gw_set_le4(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void gw_set_le8(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Starts a KV entry: key and value type; the caller writes the value. */
static inline void gw_kv(gw_buf *b, const char *key, uint32_t type)
{
    gw_str(b, key);
    gw_u32(b, type);
    b->count++;
}

/* Scalar KV with a little-endian value of `bytes` bytes. */
static inline void gw_kv_scalar(gw_buf *b, const char *key, uint32_t type, uint64_t v, int bytes)
{
    gw_kv(b, key, type);
    gw_le(b, v, bytes);
}

static inline void gw_kv_str(gw_buf *b, const char *key, const char *v)
{
    gw_kv(b, key, 8 /* STRING */);
    gw_str(b, v);
}

/* Array KV header; the caller writes `n` elements of `elem_type`. */
static inline void gw_kv_arr(gw_buf *b, const char *key, uint32_t elem_type, uint64_t n)
{
    gw_kv(b, key, 9 /* ARRAY */);
    gw_u32(b, elem_type);
    gw_u64(b, n);
}

typedef struct gw_tensor {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    const void *data;
    size_t nbytes;
} gw_tensor;

/* Assembles a whole image: header, the KV entries in `kvs`, tensor infos,
 * padding to `align` and the tensors' data, each padded to `align` except the
 * last, so the image ends exactly at the end of the last tensor. The caller
 * frees the result. */
static inline uint8_t *gw_build(uint32_t version, const gw_buf *kvs, const gw_tensor *ts, size_t nt,
                                uint64_t align, size_t *size)
{
    gw_buf b = {0};
    gw_put(&b, "GGUF", 4);
    gw_u32(&b, version);
    gw_u64(&b, nt);
    gw_u64(&b, kvs ? kvs->count : 0);
    if (kvs)
        gw_put(&b, kvs->p, kvs->n);
    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        gw_str(&b, ts[i].name);
        gw_u32(&b, ts[i].n_dims);
        for (uint32_t d = 0; d < ts[i].n_dims; d++)
            gw_u64(&b, d < 4 ? ts[i].ne[d] : 1); /* n_dims > 4 only in corrupt tests */
        gw_u32(&b, ts[i].type);
        gw_u64(&b, off);
        off += (ts[i].nbytes + align - 1) / align * align;
    }
    while (nt && b.n % align)
        gw_u8(&b, 0);
    for (size_t i = 0; i < nt; i++) {
        gw_put(&b, ts[i].data, ts[i].nbytes);
        while (i + 1 < nt && b.n % align)
            gw_u8(&b, 0);
    }
    *size = b.n;
    return b.p;
}

#endif
