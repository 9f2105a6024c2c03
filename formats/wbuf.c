/* The growable byte buffer of wbuf.h. */
#include "wbuf.h"

#include "reader.h"

#include <stdlib.h>
#include <string.h>

uint8_t *flock_wbuf_take(flock_wbuf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (n > cap - b->len) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return NULL;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *d = b->p + b->len;
    b->len += n;
    return d;
}

void flock_wbuf_u8(flock_wbuf *b, uint8_t v)
{
    uint8_t *d = flock_wbuf_take(b, 1);
    if (d)
        *d = v;
}

void flock_wbuf_u16(flock_wbuf *b, uint16_t v)
{
    uint8_t *d = flock_wbuf_take(b, 2);
    if (d)
        flock_wr_u16(d, v);
}

void flock_wbuf_u32(flock_wbuf *b, uint32_t v)
{
    uint8_t *d = flock_wbuf_take(b, 4);
    if (d)
        flock_wr_u32(d, v);
}

void flock_wbuf_u64(flock_wbuf *b, uint64_t v)
{
    uint8_t *d = flock_wbuf_take(b, 8);
    if (d)
        flock_wr_u64(d, v);
}

void flock_wbuf_f32(flock_wbuf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    flock_wbuf_u32(b, u);
}

void flock_wbuf_f64(flock_wbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    flock_wbuf_u64(b, u);
}

void flock_wbuf_bytes(flock_wbuf *b, const void *s, size_t n)
{
    uint8_t *d = flock_wbuf_take(b, n);
    if (d && n)
        memcpy(d, s, n);
}

void flock_wbuf_text(flock_wbuf *b, const char *s, size_t n)
{
    if (n == SIZE_MAX) {
        b->oom = true;
        return;
    }
    uint8_t *d = flock_wbuf_take(b, n + 1); /* room for the NUL, then un-count it */
    if (!d)
        return;
    if (n)
        memcpy(d, s, n);
    d[n] = 0;
    b->len--;
}
