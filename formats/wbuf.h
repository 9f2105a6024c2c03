/* A growable little-endian byte buffer for the writer side of flock's
 * serialized forms (manifest, IR program, tokenizer data). Internal to the
 * libraries, like reader.h.
 *
 * Appends never fail loudly: the first failed allocation (or a length that
 * would overflow) sets `oom`, later appends do nothing, and the writer checks
 * `oom` once at the end. */
#ifndef FLOCK_FORMATS_WBUF_H
#define FLOCK_FORMATS_WBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct flock_wbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} flock_wbuf;

/* Reserves n bytes at the end and returns them, or NULL (and oom) on failure. */
uint8_t *flock_wbuf_take(flock_wbuf *b, size_t n);
void flock_wbuf_u8(flock_wbuf *b, uint8_t v);
void flock_wbuf_u16(flock_wbuf *b, uint16_t v);
void flock_wbuf_u32(flock_wbuf *b, uint32_t v);
void flock_wbuf_u64(flock_wbuf *b, uint64_t v);
/* IEEE bit patterns, little-endian. */
void flock_wbuf_f32(flock_wbuf *b, float v);
void flock_wbuf_f64(flock_wbuf *b, double v);
void flock_wbuf_bytes(flock_wbuf *b, const void *s, size_t n);
/* For text: appends n bytes of s and keeps a NUL after the last byte (not
 * counted in len), so (char *)b->p is always a C string once non-empty. */
void flock_wbuf_text(flock_wbuf *b, const char *s, size_t n);

#endif
