/* libFuzzer target for the .flock bundle reader.
 *
 * Each input is opened twice: as given (so the header and section checksums
 * reject almost everything, which is itself a path to cover), and after the
 * harness has recomputed every checksum it can find (chunk, section, header),
 * so mutations reach the parsers and the decompression behind the checks.
 * On success every getter is touched and every section and tensor is read. */
#include "flock/formats.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MAX_READ (16u << 20) /* stay under libFuzzer's malloc limit */

static volatile uint8_t sink;

static uint64_t ld(const uint8_t *p, int width)
{
    uint64_t v = 0;
    for (int i = 0; i < width; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void st64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* [off, off+len) inside n bytes, without overflow. */
static bool inside(uint64_t off, uint64_t len, size_t n)
{
    return off <= n && len <= n - off;
}

/* Rewrites the chunk checksums of the tensor table at b[tt, tt+tsz), given
 * the tensor data section at `data_off`. Walks the records as the format
 * says, stopping at the first one that does not fit. */
static void fix_chunks(uint8_t *b, size_t n, uint64_t tt, uint64_t tsz, uint64_t data_off)
{
    if (tsz < 8)
        return;
    uint64_t count = ld(b + tt, 4), pos = ld(b + tt + 4, 4);
    for (uint64_t i = 0; i < count && pos <= tsz; i++) {
        if (!inside(pos, 6, tsz))
            return;
        uint64_t rec = ld(b + tt + pos, 4), nlen = ld(b + tt + pos + 4, 2);
        if (rec < 74 + nlen || !inside(pos, rec, tsz))
            return;
        const uint8_t *q = b + tt + pos + 6 + nlen;
        uint64_t doff = ld(q + 48, 8), cc = ld(q + 64, 4);
        if ((cc * 16) > rec - 74 - nlen)
            return;
        uint64_t at = data_off + doff;
        for (uint64_t k = 0; k < cc; k++) {
            uint8_t *c = (uint8_t *)q + 68 + 16 * k;
            uint64_t cs = ld(c, 8);
            if (at < data_off || !inside(at, cs, n))
                break;
            st64(c + 8, XXH64(b + at, (size_t)cs, 0));
            at += cs;
        }
        pos += rec;
    }
}

static void fix_checksums(uint8_t *b, size_t n)
{
    uint64_t hsz = ld(b + 12, 4), cnt = ld(b + 20, 4), esz = ld(b + 24, 4);
    uint64_t toff = ld(b + 32, 8), tsz = ld(b + 40, 8);
    if (hsz < 64 || hsz > n || !inside(toff, tsz, n) || esz < 64 || cnt > tsz / esz)
        return;
    uint64_t data_off = 0;
    for (uint64_t i = 0; i < cnt; i++)
        if (ld(b + toff + i * esz, 4) == FLOCK_SECTION_TENSOR_DATA)
            data_off = ld(b + toff + i * esz + 8, 8);
    for (uint64_t i = 0; i < cnt; i++) {
        uint8_t *e = b + toff + i * esz;
        uint64_t off = ld(e + 8, 8), stored = ld(e + 16, 8);
        if (ld(e, 4) == FLOCK_SECTION_TENSOR_TABLE && ld(e + 4, 4) == FLOCK_COMPRESS_NONE &&
            inside(off, stored, n) && !(off < toff + tsz && off + stored > toff))
            fix_chunks(b, n, off, stored, data_off);
    }
    for (uint64_t i = 0; i < cnt; i++) {
        uint8_t *e = b + toff + i * esz;
        uint64_t off = ld(e + 8, 8), stored = ld(e + 16, 8);
        if (inside(off, stored, n) && !(off < toff + tsz && off + stored > toff))
            st64(e + 32, XXH64(b + off, (size_t)stored, 0));
    }
    XXH64_state_t *h = XXH64_createState();
    if (!h)
        return;
    XXH64_reset(h, 0);
    XXH64_update(h, b, 56);
    XXH64_update(h, b + 64, (size_t)(hsz - 64));
    XXH64_update(h, b + toff, (size_t)tsz);
    st64(b + 56, XXH64_digest(h));
    XXH64_freeState(h);
}

static void exercise(const flock_bundle *b)
{
    const flock_manifest *m = flock_bundle_manifest(b);
    for (size_t i = 0; i < flock_manifest_count(m); i++) {
        const char *key = flock_manifest_key(m, i), *s;
        int64_t iv;
        double f;
        size_t n;
        const int64_t *ia;
        const double *fa;
        const char *const *sa;
        flock_manifest_get_int(m, key, &iv, NULL);
        flock_manifest_get_float(m, key, &f, NULL);
        if (flock_manifest_get_str(m, key, &s, NULL) == FLOCK_OK)
            sink = (uint8_t)s[0];
        if (flock_manifest_get_int_arr(m, key, &ia, &n, NULL) == FLOCK_OK && n)
            sink = (uint8_t)ia[n - 1];
        if (flock_manifest_get_float_arr(m, key, &fa, &n, NULL) == FLOCK_OK && n)
            sink = (uint8_t)(fa[n - 1] > 0);
        if (flock_manifest_get_str_arr(m, key, &sa, &n, NULL) == FLOCK_OK && n)
            sink = (uint8_t)sa[n - 1][0];
    }
    for (size_t i = 0; i < flock_bundle_section_count(b); i++) {
        flock_section_info si;
        if (flock_bundle_section_info(b, i, &si) != FLOCK_OK || si.raw_size > MAX_READ)
            continue;
        if (flock_bundle_find_section(b, si.kind, si.name) < 0)
            abort(); /* a section's own (kind, name) must be found */
        void *p = NULL;
        size_t n;
        if (flock_bundle_read_section(b, i, &p, &n, NULL) == FLOCK_OK && n)
            sink = ((uint8_t *)p)[n - 1];
        free(p);
    }
    for (size_t i = 0; i < flock_bundle_tensor_count(b); i++) {
        flock_bundle_tensor t;
        if (flock_bundle_tensor_info(b, i, &t) != FLOCK_OK)
            abort();
        if (flock_bundle_find_tensor(b, t.name) != (int64_t)i)
            abort(); /* names are unique */
        if (t.nbytes > MAX_READ)
            continue;
        uint8_t *dst = malloc(t.nbytes + 1);
        if (dst && flock_bundle_tensor_read(b, i, dst, t.nbytes, 1 + (int)(i & 1), NULL) == FLOCK_OK &&
            t.nbytes)
            sink = dst[t.nbytes - 1];
        free(dst);
        const void *p = NULL;
        if (flock_bundle_tensor_mapped(b, i, &p, NULL) == FLOCK_OK && t.nbytes)
            sink = ((const uint8_t *)p)[t.nbytes - 1];
    }
}

static void try_bytes(const uint8_t *data, size_t size)
{
    flock_bundle *b = NULL;
    flock_error err;
    if (flock_bundle_open_memory(data, size, &b, &err) == FLOCK_OK) {
        exercise(b);
        flock_bundle_close(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_bytes(data, size);
    if (size < 64)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    fix_checksums(copy, size);
    try_bytes(copy, size);
    free(copy);
    return 0;
}
