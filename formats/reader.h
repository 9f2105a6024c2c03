/* Private: the one bounds-checked little-endian reader every parser uses.
 * Each read checks `off <= size && len <= size - off` before touching bytes;
 * a failed read leaves the reader where it was and returns false. */
#ifndef FLOCK_FORMATS_READER_H
#define FLOCK_FORMATS_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct flock_reader {
    const uint8_t *p;
    size_t size;
    size_t off;
} flock_reader;

static inline flock_reader flock_reader_init(const void *p, size_t size)
{
    flock_reader r = {(const uint8_t *)p, size, 0};
    return r;
}

static inline size_t flock_rd_left(const flock_reader *r)
{
    return r->off <= r->size ? r->size - r->off : 0;
}

static inline bool flock_rd_bytes(flock_reader *r, void *dst, size_t len)
{
    if (r->off > r->size || len > r->size - r->off)
        return false;
    if (len)
        memcpy(dst, r->p + r->off, len);
    r->off += len;
    return true;
}

/* Returns a pointer to `len` bytes in place and advances, or NULL. */
static inline const uint8_t *flock_rd_span(flock_reader *r, size_t len)
{
    if (r->off > r->size || len > r->size - r->off)
        return NULL;
    const uint8_t *s = r->p + r->off;
    r->off += len;
    return s;
}

static inline bool flock_rd_skip(flock_reader *r, size_t len)
{
    return flock_rd_span(r, len) != NULL || len == 0;
}

static inline bool flock_rd_u8(flock_reader *r, uint8_t *v)
{
    return flock_rd_bytes(r, v, 1);
}

static inline bool flock_rd_u16(flock_reader *r, uint16_t *v)
{
    uint8_t b[2];
    if (!flock_rd_bytes(r, b, 2))
        return false;
    *v = (uint16_t)(b[0] | (b[1] << 8));
    return true;
}

static inline bool flock_rd_u32(flock_reader *r, uint32_t *v)
{
    uint8_t b[4];
    if (!flock_rd_bytes(r, b, 4))
        return false;
    *v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    return true;
}

static inline bool flock_rd_u64(flock_reader *r, uint64_t *v)
{
    uint32_t lo, hi;
    size_t save = r->off;
    if (!flock_rd_u32(r, &lo) || !flock_rd_u32(r, &hi)) {
        r->off = save;
        return false;
    }
    *v = (uint64_t)lo | ((uint64_t)hi << 32);
    return true;
}

static inline bool flock_rd_f32(flock_reader *r, float *v)
{
    uint32_t u;
    if (!flock_rd_u32(r, &u))
        return false;
    memcpy(v, &u, 4);
    return true;
}

static inline bool flock_rd_f64(flock_reader *r, double *v)
{
    uint64_t u;
    if (!flock_rd_u64(r, &u))
        return false;
    memcpy(v, &u, 8);
    return true;
}

/* Little-endian stores for writers. */
static inline void flock_wr_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void flock_wr_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void flock_wr_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

#endif
