/* The .flock bundle reader (docs/bundle-format.md, "Reader checks").
 *
 * open: header, section table and their checksum; the manifest and tensor
 * table sections are verified, decompressed and parsed. Tensor data is
 * verified chunk by chunk when a tensor is read (in parallel) or, for
 * uncompressed bundles, once when it is first mapped in place. */
#include "bundle_internal.h"
#include "error_impl.h"
#include "parallel.h"
#include "reader.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define MAX_SECTIONS 4096u
#define MAX_CHUNK_BYTES (1u << 30)

typedef struct rtensor {
    const char *name;      /* points into the tensor table buffer copy (names) */
    uint8_t dtype, n_dims, compression, layout;
    uint32_t chunk_bytes, chunk_count;
    uint64_t shape[4];
    uint64_t nbytes, stored_bytes;
    uint64_t file_offset;  /* absolute offset of the first chunk */
    const uint8_t *chunks; /* chunk_count x (u64 stored size, u64 xxh64), little-endian */
} rtensor;

struct flock_bundle {
    flock_file_map map;    /* zeroed for open_memory */
    const uint8_t *data;
    size_t size;
    uint16_t major, minor;
    size_t ns;
    flock_section_info *sec;
    char *sec_names;       /* NUL-separated copies of the section names */
    flock_manifest *manifest;
    uint8_t *tt;           /* the tensor table section's raw bytes */
    char *tnames;          /* NUL-terminated tensor names */
    size_t nt;
    rtensor *t;
    uint32_t *tindex;      /* open addressing over tensor names: index + 1 */
    size_t tindex_cap;
    atomic_uchar *verified; /* per tensor: mapped bytes already verified */
};

static uint64_t name_hash(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211ULL;
    return h;
}

/* ---- header and section table ------------------------------------------ */

static flock_status parse_header(flock_bundle *b, flock_reader *tbl, uint32_t *count, uint32_t *entry_size,
                                 flock_error *err)
{
    const uint8_t *d = b->data;
    size_t size = b->size;
    if (size < FLOCK_BUNDLE_HEADER_SIZE)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "file is %zu bytes, a bundle header needs %u",
                               size, FLOCK_BUNDLE_HEADER_SIZE);
    if (memcmp(d, FLOCK_BUNDLE_MAGIC, 8) != 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "not a flock bundle (bad magic at offset 0)");
    flock_reader r = flock_reader_init(d, size);
    r.off = 8;
    uint16_t major = 0, minor = 0;
    uint32_t hsize = 0, flags = 0, nsec = 0, esize = 0, reserved = 0;
    uint64_t toff = 0, tsize = 0, fsize = 0, cksum = 0;
    flock_rd_u16(&r, &major);
    flock_rd_u16(&r, &minor);
    flock_rd_u32(&r, &hsize);
    flock_rd_u32(&r, &flags);
    flock_rd_u32(&r, &nsec);
    flock_rd_u32(&r, &esize);
    flock_rd_u32(&r, &reserved);
    flock_rd_u64(&r, &toff);
    flock_rd_u64(&r, &tsize);
    flock_rd_u64(&r, &fsize);
    flock_rd_u64(&r, &cksum); /* all within the 64 bytes checked above */
    if (major > FLOCK_BUNDLE_MAJOR)
        return flock_error_set(err, FLOCK_E_VERSION, "bundle format %u.%u is newer than this reader "
                               "(%u.%u): upgrade flock", major, minor, FLOCK_BUNDLE_MAJOR, FLOCK_BUNDLE_MINOR);
    if (major != FLOCK_BUNDLE_MAJOR)
        return flock_error_set(err, FLOCK_E_VERSION, "bundle format %u.%u is not supported (this reader "
                               "reads %u.x)", major, minor, FLOCK_BUNDLE_MAJOR);
    if (hsize < FLOCK_BUNDLE_HEADER_SIZE)
        return flock_error_set(err, FLOCK_E_CORRUPT, "header_size %u at offset 12 is below %u", hsize,
                               FLOCK_BUNDLE_HEADER_SIZE);
    if (hsize > size)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "header_size %u at offset 12 exceeds the file "
                               "(%zu bytes)", hsize, size);
    if (esize < FLOCK_BUNDLE_ENTRY_SIZE)
        return flock_error_set(err, FLOCK_E_CORRUPT, "entry_size %u at offset 24 is below %u", esize,
                               FLOCK_BUNDLE_ENTRY_SIZE);
    if (toff < hsize || toff % 8)
        return flock_error_set(err, FLOCK_E_CORRUPT, "table_offset %llu at offset 32 is inside the header "
                               "or not a multiple of 8", (unsigned long long)toff);
    if (toff > size || tsize > size - toff)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "section table [%llu, +%llu) runs past the end of "
                               "the file (%zu bytes)", (unsigned long long)toff, (unsigned long long)tsize,
                               size);
    XXH64_state_t *h = XXH64_createState();
    if (!h)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    XXH64_reset(h, 0);
    XXH64_update(h, d, FLOCK_BUNDLE_CKSUM_OFF);
    XXH64_update(h, d + FLOCK_BUNDLE_HEADER_SIZE, hsize - FLOCK_BUNDLE_HEADER_SIZE);
    XXH64_update(h, d + toff, (size_t)tsize);
    uint64_t got = XXH64_digest(h);
    XXH64_freeState(h);
    if (got != cksum)
        return flock_error_set(err, FLOCK_E_CHECKSUM, "header/section table checksum mismatch: stored "
                               "%016llx, computed %016llx", (unsigned long long)cksum, (unsigned long long)got);
    if (fsize != size)
        return flock_error_set(err, fsize > size ? FLOCK_E_TRUNCATED : FLOCK_E_CORRUPT,
                               "file is %zu bytes, its header (offset 48) says %llu", size,
                               (unsigned long long)fsize);
    if (flags & FLOCK_BUNDLE_MUST_FLAGS)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "header flags 0x%x at offset 16 need features "
                               "this reader lacks", flags & FLOCK_BUNDLE_MUST_FLAGS);
    if (nsec > tsize / esize || nsec > MAX_SECTIONS)
        return flock_error_set(err, FLOCK_E_CORRUPT, "section_count %u at offset 20 does not fit a table "
                               "of %llu bytes with %u-byte entries (or exceeds %u)", nsec,
                               (unsigned long long)tsize, esize, MAX_SECTIONS);
    b->major = major;
    b->minor = minor;
    *tbl = flock_reader_init(d + toff, (size_t)tsize);
    *count = nsec;
    *entry_size = esize;
    return FLOCK_OK;
}

static flock_status parse_sections(flock_bundle *b, flock_reader tbl, uint32_t count, uint32_t esize,
                                   flock_error *err)
{
    size_t blob_off = (size_t)count * esize;
    const uint8_t *blob = tbl.p + blob_off;
    size_t blob_size = tbl.size - blob_off;
    uint64_t toff = (uint64_t)(tbl.p - b->data);
    b->sec = calloc(count ? count : 1, sizeof *b->sec);
    b->sec_names = malloc((size_t)count * (FLOCK_BUNDLE_MAX_NAME + 1) + 1);
    if (!b->sec || !b->sec_names)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %u sections", count);
    char *np = b->sec_names;
    for (uint32_t i = 0; i < count; i++) {
        flock_reader r = tbl;
        r.off = (size_t)i * esize;
        uint32_t kind = 0, comp = 0, align = 0, res32 = 0, noff = 0, nlen = 0;
        uint64_t off = 0, stored = 0, raw = 0, cksum = 0;
        flock_rd_u32(&r, &kind);
        flock_rd_u32(&r, &comp);
        flock_rd_u64(&r, &off);
        flock_rd_u64(&r, &stored);
        flock_rd_u64(&r, &raw);
        flock_rd_u64(&r, &cksum);
        flock_rd_u32(&r, &align);
        flock_rd_u32(&r, &res32);
        flock_rd_u32(&r, &noff);
        flock_rd_u32(&r, &nlen); /* entry fits: count * esize <= table size was checked */
        uint64_t at = toff + (uint64_t)i * esize;
        if (align == 0 || align > FLOCK_BUNDLE_MAX_ALIGN || (align & (align - 1)) || off % align)
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %u (entry at offset %llu): alignment %u "
                                   "invalid or offset %llu not aligned", i, (unsigned long long)at, align,
                                   (unsigned long long)off);
        if (off > b->size || stored > b->size - off)
            return flock_error_set(err, FLOCK_E_TRUNCATED, "section %u (entry at offset %llu): [%llu, +%llu) "
                                   "runs past the end of the file (%zu bytes)", i, (unsigned long long)at,
                                   (unsigned long long)off, (unsigned long long)stored, b->size);
        if (stored && (off < FLOCK_BUNDLE_HEADER_SIZE || (off < toff + tbl.size && off + stored > toff)))
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %u (entry at offset %llu) overlaps the "
                                   "header or the section table", i, (unsigned long long)at);
        if (nlen > FLOCK_BUNDLE_MAX_NAME || noff > blob_size || nlen > blob_size - noff ||
            memchr(blob + noff, 0, nlen))
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %u (entry at offset %llu): name [%u, +%u) "
                                   "outside the %zu-byte name blob or holding a NUL", i,
                                   (unsigned long long)at, noff, nlen, blob_size);
        if (comp == FLOCK_COMPRESS_NONE && raw != stored)
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %u (entry at offset %llu): uncompressed "
                                   "but raw_size %llu != stored_size %llu", i, (unsigned long long)at,
                                   (unsigned long long)raw, (unsigned long long)stored);
        if (comp == FLOCK_COMPRESS_ZSTD && raw / FLOCK_ZSTD_MAX_RATIO > stored)
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %u (entry at offset %llu): raw_size %llu "
                                   "impossible from %llu zstd bytes", i, (unsigned long long)at,
                                   (unsigned long long)raw, (unsigned long long)stored);
        memcpy(np, blob + noff, nlen);
        np[nlen] = '\0';
        for (uint32_t j = 0; j < i; j++)
            if (b->sec[j].kind == (flock_section_kind)kind && strcmp(b->sec[j].name, np) == 0)
                return flock_error_set(err, FLOCK_E_CORRUPT, "sections %u and %u have the same kind %u "
                                       "and name '%s'", j, i, kind, np);
        flock_section_info *s = &b->sec[i];
        s->kind = (flock_section_kind)kind; /* unknown kinds are kept and skipped */
        s->name = np;
        s->offset = off;
        s->stored_size = stored;
        s->raw_size = raw;
        s->alignment = align;
        s->compression = (flock_compression)comp;
        s->checksum = cksum;
        np += nlen + 1;
        b->ns = i + 1;
    }
    return FLOCK_OK;
}

/* Index of the only section of `kind`, -1 if none, -2 if several. */
static int64_t only_section(const flock_bundle *b, flock_section_kind kind)
{
    int64_t found = -1;
    for (size_t i = 0; i < b->ns; i++) {
        if (b->sec[i].kind != kind)
            continue;
        if (found >= 0)
            return -2;
        found = (int64_t)i;
    }
    return found;
}

/* ---- tensor table -------------------------------------------------------- */

static bool rd_u64_at(const uint8_t *p, uint64_t *v)
{
    flock_reader r = flock_reader_init(p, 8);
    return flock_rd_u64(&r, v);
}

/* Parses one tensor record at r->off; checks everything that can be checked
 * without touching tensor bytes. `dsec` is the tensor data section or NULL. */
static flock_status parse_tensor(flock_bundle *b, flock_reader *r, size_t i, const flock_section_info *dsec,
                                 char *name_out, flock_error *err)
{
    size_t at = r->off;
    uint32_t rec = 0;
    uint16_t nlen = 0;
    if (!flock_rd_u32(r, &rec) || rec < FLOCK_TT_FIXED + 1 || rec - 4 > flock_rd_left(r))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %zu: record at table offset %zu has size %u "
                               "(at least %u, at most the %zu bytes left)", i, at, rec,
                               FLOCK_TT_FIXED + 1, flock_rd_left(r) + 4);
    flock_reader q = flock_reader_init(r->p + at, rec);
    q.off = 4;
    const uint8_t *nm;
    if (!flock_rd_u16(&q, &nlen) || nlen == 0 || !(nm = flock_rd_span(&q, nlen)) ||
        flock_rd_left(&q) < FLOCK_TT_FIXED - 6 || memchr(nm, 0, nlen))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor %zu: name at table offset %zu is empty, "
                               "holds a NUL or does not fit its %u-byte record", i, at + 4, rec);
    memcpy(name_out, nm, nlen);
    name_out[nlen] = '\0';
    rtensor *t = &b->t[i];
    t->name = name_out;
    flock_rd_u8(&q, &t->dtype);
    flock_rd_u8(&q, &t->n_dims);
    flock_rd_u8(&q, &t->compression);
    flock_rd_u8(&q, &t->layout);
    flock_rd_u32(&q, &t->chunk_bytes);
    for (int d = 0; d < 4; d++)
        flock_rd_u64(&q, &t->shape[d]);
    uint64_t doff = 0;
    flock_rd_u64(&q, &t->nbytes);
    flock_rd_u64(&q, &doff);
    flock_rd_u64(&q, &t->stored_bytes);
    flock_rd_u32(&q, &t->chunk_count); /* FLOCK_TT_FIXED bytes after the name: checked above */
    if (t->dtype >= FLOCK_DTYPE_COUNT)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor '%s': unknown dtype %u", name_out, t->dtype);
    /* the unit the chunks hold whole: an element, or a quantized block */
    size_t esize = flock_dtype_block_bytes((flock_dtype)t->dtype);
    unsigned since = flock_bundle_dtype_minor((flock_dtype)t->dtype);
    if (b->minor < since)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': %s storage in a version 1.%u bundle (it came in 1.%u)",
                               name_out, flock_dtype_name((flock_dtype)t->dtype), b->minor, since);
    if (t->n_dims > 4)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': %u dims (at most 4)", name_out, t->n_dims);
    if (t->compression >= FLOCK_COMPRESS_COUNT || t->layout > FLOCK_LAYOUT_PLANES)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "tensor '%s': unknown compression %u or layout %u",
                               name_out, t->compression, t->layout);
    if (t->layout == FLOCK_LAYOUT_PLANES && (esize != 2 || t->compression != FLOCK_COMPRESS_ZSTD))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': byte planes need a 16-bit dtype and zstd",
                               name_out);
    uint64_t elems = 1;
    for (int d = 0; d < 4; d++) {
        if (d >= t->n_dims && t->shape[d] != 1)
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': unused dim %d is %llu, not 1",
                                   name_out, d, (unsigned long long)t->shape[d]);
        if (t->shape[d] && elems > UINT64_MAX / t->shape[d])
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': shape overflows", name_out);
        elems *= t->shape[d];
    }
    uint64_t need = flock_dtype_tensor_bytes((flock_dtype)t->dtype, t->n_dims, t->shape);
    if (elems && !need)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': a %s row of %llu elements is not whole blocks of %zu",
                               name_out, flock_dtype_name((flock_dtype)t->dtype),
                               (unsigned long long)(t->n_dims ? t->shape[t->n_dims - 1] : 1),
                               flock_dtype_block((flock_dtype)t->dtype));
    if (need != t->nbytes)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': nbytes %llu, shape and dtype need %llu",
                               name_out, (unsigned long long)t->nbytes, (unsigned long long)need);
    if (t->chunk_bytes == 0 || (!flock_dtype_is_quantized((flock_dtype)t->dtype) && t->chunk_bytes % esize) ||
        t->chunk_bytes > MAX_CHUNK_BYTES)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': chunk_bytes %u invalid", name_out,
                               t->chunk_bytes);
    uint64_t want = t->nbytes / t->chunk_bytes + (t->nbytes % t->chunk_bytes != 0);
    if (t->chunk_count != want)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': %u chunks, %llu bytes in chunks of %u "
                               "need %llu", name_out, t->chunk_count, (unsigned long long)t->nbytes,
                               t->chunk_bytes, (unsigned long long)want);
    if ((uint64_t)t->chunk_count * FLOCK_TT_CHUNK > flock_rd_left(&q))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': %u chunks do not fit its %u-byte record",
                               name_out, t->chunk_count, rec);
    t->chunks = flock_rd_span(&q, (size_t)t->chunk_count * FLOCK_TT_CHUNK);
    uint64_t sum = 0;
    for (uint32_t k = 0; k < t->chunk_count; k++) {
        uint64_t cs = 0;
        rd_u64_at(t->chunks + 16 * (size_t)k, &cs);
        uint64_t raw = (k + 1 < t->chunk_count) ? t->chunk_bytes : t->nbytes - (uint64_t)k * t->chunk_bytes;
        bool ok = t->compression == FLOCK_COMPRESS_NONE ? cs == raw
                                                        : cs > 0 && raw / FLOCK_ZSTD_MAX_RATIO <= cs;
        if (!ok || cs > UINT64_MAX - sum)
            return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': chunk %u stored size %llu impossible "
                                   "for %llu raw bytes", name_out, k, (unsigned long long)cs,
                                   (unsigned long long)raw);
        sum += cs;
    }
    if (sum != t->stored_bytes)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': chunks hold %llu bytes, stored_bytes "
                               "says %llu", name_out, (unsigned long long)sum,
                               (unsigned long long)t->stored_bytes);
    if (t->chunk_count && !dsec)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s' has data but there is no tensor data "
                               "section", name_out);
    uint64_t dsize = dsec ? dsec->stored_size : 0;
    if (doff > dsize || t->stored_bytes > dsize - doff)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': data [%llu, +%llu) outside the %llu-byte "
                               "tensor data section", name_out, (unsigned long long)doff,
                               (unsigned long long)t->stored_bytes, (unsigned long long)dsize);
    t->file_offset = (dsec ? dsec->offset : 0) + doff;
    if (t->file_offset % FLOCK_BUNDLE_ALIGN)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s': data at file offset %llu is not %u-byte "
                               "aligned", name_out, (unsigned long long)t->file_offset, FLOCK_BUNDLE_ALIGN);
    r->off = at + rec; /* skip fields a newer minor version may have added */
    return FLOCK_OK;
}

static flock_status index_tensors(flock_bundle *b, flock_error *err)
{
    size_t cap = 16;
    while (cap < b->nt * 2 + 2)
        cap *= 2;
    b->tindex = calloc(cap, sizeof *b->tindex);
    if (!b->tindex)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory indexing %zu tensors", b->nt);
    b->tindex_cap = cap;
    for (size_t i = 0; i < b->nt; i++) {
        size_t s = (size_t)name_hash(b->t[i].name) & (cap - 1);
        while (b->tindex[s]) {
            if (strcmp(b->t[b->tindex[s] - 1].name, b->t[i].name) == 0)
                return flock_error_set(err, FLOCK_E_CORRUPT, "tensors %u and %zu are both named '%s'",
                                       b->tindex[s] - 1, i, b->t[i].name);
            s = (s + 1) & (cap - 1);
        }
        b->tindex[s] = (uint32_t)(i + 1);
    }
    return FLOCK_OK;
}

static flock_status parse_tensor_table(flock_bundle *b, size_t size, const flock_section_info *dsec,
                                       flock_error *err)
{
    flock_reader r = flock_reader_init(b->tt, size);
    uint32_t count, hsize;
    if (!flock_rd_u32(&r, &count) || !flock_rd_u32(&r, &hsize))
        return flock_error_set(err, FLOCK_E_TRUNCATED, "tensor table: %zu bytes, need 8", size);
    if (hsize < FLOCK_TT_HEADER_SIZE || hsize > size)
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor table: header_size %u invalid (table is %zu "
                               "bytes)", hsize, size);
    r.off = hsize;
    if (count > flock_rd_left(&r) / (FLOCK_TT_FIXED + 1))
        return flock_error_set(err, FLOCK_E_CORRUPT, "tensor table: count %u exceeds what %zu bytes hold",
                               count, flock_rd_left(&r));
    b->t = calloc(count ? count : 1, sizeof *b->t);
    b->tnames = malloc(size + 1); /* names are shorter than their records */
    b->verified = calloc(count ? count : 1, sizeof *b->verified);
    if (!b->t || !b->tnames || !b->verified)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory for %u tensors", count);
    char *np = b->tnames;
    for (uint32_t i = 0; i < count; i++) {
        flock_status st = parse_tensor(b, &r, i, dsec, np, err);
        if (st)
            return st;
        np += strlen(np) + 1;
        b->nt = i + 1;
    }
    return index_tensors(b, err);
}

/* ---- open / close ------------------------------------------------------- */

static flock_status load_section(const flock_bundle *b, flock_section_kind kind, const char *what,
                                 void **out, size_t *size, flock_error *err)
{
    int64_t i = only_section(b, kind);
    if (i < 0)
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s %s section", i == -1 ? "no" : "more than one", what);
    FORWARD_IF_ERROR(flock_bundle_read_section(b, (size_t)i, out, size, err), err, "%s section", what);
    return FLOCK_OK;
}

static flock_status parse_bundle(flock_bundle *b, flock_error *err)
{
    flock_reader tbl = {0};
    uint32_t count = 0, esize = 0;
    flock_status st = parse_header(b, &tbl, &count, &esize, err);
    if (st == FLOCK_OK)
        st = parse_sections(b, tbl, count, esize, err);
    void *mbytes = NULL, *tbytes = NULL;
    size_t msize = 0, tsize = 0;
    if (st == FLOCK_OK)
        st = load_section(b, FLOCK_SECTION_MANIFEST, "manifest", &mbytes, &msize, err);
    if (st == FLOCK_OK) {
        st = flock_manifest_deserialize(mbytes, msize, &b->manifest, err);
        free(mbytes);
    }
    if (st == FLOCK_OK)
        st = load_section(b, FLOCK_SECTION_TENSOR_TABLE, "tensor table", &tbytes, &tsize, err);
    if (st == FLOCK_OK) {
        b->tt = tbytes;
        int64_t d = only_section(b, FLOCK_SECTION_TENSOR_DATA);
        if (d == -2)
            st = flock_error_set(err, FLOCK_E_CORRUPT, "more than one tensor data section");
        else if (d >= 0 && b->sec[d].compression != FLOCK_COMPRESS_NONE)
            st = flock_error_set(err, FLOCK_E_CORRUPT, "the tensor data section must not be compressed as "
                                 "a whole (its chunks are)");
        else
            st = parse_tensor_table(b, tsize, d >= 0 ? &b->sec[d] : NULL, err);
    }
    return st;
}

flock_status flock_bundle_open_memory(const void *data, size_t size, flock_bundle **out, flock_error *err)
{
    if ((!data && size) || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_bundle_open_memory: NULL argument");
    flock_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return flock_error_set(err, FLOCK_E_NOMEM, "out of memory");
    b->data = data;
    b->size = size;
    flock_status st = parse_bundle(b, err);
    if (st) {
        flock_bundle_close(b);
        return st;
    }
    *out = b;
    return FLOCK_OK;
}

flock_status flock_bundle_open(const char *path, flock_bundle **out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_bundle_open: NULL argument");
    flock_file_map map = {0};
    flock_status st = flock_map_file(path, &map, err);
    if (st)
        return st;
    flock_bundle *b;
    st = flock_bundle_open_memory(map.data, map.size, &b, err);
    if (st) {
        flock_unmap_file(&map);
        return flock_error_prefix(err, st, "%s", path);
    }
    b->map = map;
    *out = b;
    return FLOCK_OK;
}

void flock_bundle_close(flock_bundle *b)
{
    if (!b)
        return;
    flock_manifest_free(b->manifest);
    free(b->sec);
    free(b->sec_names);
    free(b->tt);
    free(b->tnames);
    free(b->t);
    free(b->tindex);
    free((void *)b->verified);
    flock_unmap_file(&b->map);
    free(b);
}

/* ---- queries ------------------------------------------------------------ */

void flock_bundle_version(const flock_bundle *b, uint32_t *major, uint32_t *minor)
{
    if (major)
        *major = b ? b->major : 0;
    if (minor)
        *minor = b ? b->minor : 0;
}

uint64_t flock_bundle_file_size(const flock_bundle *b)
{
    return b ? b->size : 0;
}

const flock_manifest *flock_bundle_manifest(const flock_bundle *b)
{
    return b ? b->manifest : NULL;
}

size_t flock_bundle_section_count(const flock_bundle *b)
{
    return b ? b->ns : 0;
}

flock_status flock_bundle_section_info(const flock_bundle *b, size_t i, flock_section_info *out)
{
    if (!b || !out || i >= b->ns)
        return FLOCK_E_INVALID_ARG;
    *out = b->sec[i];
    return FLOCK_OK;
}

int64_t flock_bundle_find_section(const flock_bundle *b, flock_section_kind kind, const char *name)
{
    if (!b)
        return -1;
    for (size_t i = 0; i < b->ns; i++)
        if (b->sec[i].kind == kind && (!name || strcmp(b->sec[i].name, name) == 0))
            return (int64_t)i;
    return -1;
}

static void release_pages(const flock_bundle *b, uint64_t off, uint64_t len);

flock_status flock_bundle_read_section(const flock_bundle *b, size_t i, void **out, size_t *size,
                                       flock_error *err)
{
    if (!b || !out || !size || i >= b->ns)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_bundle_read_section: bad argument");
    const flock_section_info *s = &b->sec[i];
    if (s->compression >= FLOCK_COMPRESS_COUNT)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "section %zu: unknown compression %u", i,
                               (unsigned)s->compression);
    if (s->raw_size > SIZE_MAX - 1)
        return flock_error_set(err, FLOCK_E_RANGE, "section %zu: %llu bytes do not fit in memory", i,
                               (unsigned long long)s->raw_size);
    const uint8_t *src = b->data + s->offset;
    uint64_t got = XXH64(src, (size_t)s->stored_size, 0);
    if (got != s->checksum)
        return flock_error_set(err, FLOCK_E_CHECKSUM, "section %zu at offset %llu: checksum mismatch "
                               "(stored %016llx, computed %016llx)", i, (unsigned long long)s->offset,
                               (unsigned long long)s->checksum, (unsigned long long)got);
    if (s->compression == FLOCK_COMPRESS_ZSTD) {
        unsigned long long fcs = ZSTD_getFrameContentSize(src, (size_t)s->stored_size);
        if (fcs != s->raw_size)
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %zu at offset %llu: zstd frame declares "
                                   "%lld bytes, the table %llu", i, (unsigned long long)s->offset,
                                   (long long)fcs, (unsigned long long)s->raw_size);
    }
    uint8_t *buf = malloc((size_t)s->raw_size + 1);
    if (!buf)
        return flock_error_set(err, FLOCK_E_NOMEM, "section %zu: cannot allocate %llu bytes", i,
                               (unsigned long long)s->raw_size);
    if (s->compression == FLOCK_COMPRESS_NONE) {
        memcpy(buf, src, (size_t)s->stored_size);
    } else {
        size_t r = ZSTD_decompress(buf, (size_t)s->raw_size, src, (size_t)s->stored_size);
        if (ZSTD_isError(r) || r != s->raw_size) {
            free(buf);
            return flock_error_set(err, FLOCK_E_CORRUPT, "section %zu at offset %llu: zstd: %s (got %zu of "
                                   "%llu bytes)", i, (unsigned long long)s->offset,
                                   ZSTD_isError(r) ? ZSTD_getErrorName(r) : "size mismatch",
                                   ZSTD_isError(r) ? 0 : r, (unsigned long long)s->raw_size);
        }
    }
    buf[s->raw_size] = 0; /* convenience for text sections; not counted in *size */
    /* the caller holds a copy: the stored bytes need not stay resident */
    release_pages(b, s->offset, s->stored_size);
    *out = buf;
    *size = (size_t)s->raw_size;
    return FLOCK_OK;
}

size_t flock_bundle_tensor_count(const flock_bundle *b)
{
    return b ? b->nt : 0;
}

flock_status flock_bundle_tensor_info(const flock_bundle *b, size_t i, flock_bundle_tensor *out)
{
    if (!b || !out || i >= b->nt)
        return FLOCK_E_INVALID_ARG;
    const rtensor *t = &b->t[i];
    flock_bundle_tensor o = {0};
    o.name = t->name;
    o.dtype = (flock_dtype)t->dtype;
    o.n_dims = t->n_dims;
    for (int d = 0; d < 4; d++)
        o.shape[d] = t->shape[d];
    o.nbytes = t->nbytes;
    o.stored_bytes = t->stored_bytes;
    *out = o;
    return FLOCK_OK;
}

int64_t flock_bundle_find_tensor(const flock_bundle *b, const char *name)
{
    if (!b || !name || !b->tindex_cap)
        return -1;
    size_t s = (size_t)name_hash(name) & (b->tindex_cap - 1);
    while (b->tindex[s]) {
        if (strcmp(b->t[b->tindex[s] - 1].name, name) == 0)
            return (int64_t)b->tindex[s] - 1;
        s = (s + 1) & (b->tindex_cap - 1);
    }
    return -1;
}

/* ---- tensor data -------------------------------------------------------- */

typedef struct tjob {
    const flock_bundle *b;
    const rtensor *t;
    uint8_t *dst;
    const uint64_t *chunk_off;  /* absolute file offset of each chunk */
    flock_status *st;           /* per chunk */
    ZSTD_DCtx **dctx;           /* per thread */
    uint8_t **scratch;          /* per thread, planes only */
} tjob;

/* Verifies chunk k, then decompresses (or copies) it into place. */
static void read_chunk(void *ctx, size_t k, int tid)
{
    tjob *j = ctx;
    const rtensor *t = j->t;
    uint64_t cs = 0, ck = 0;
    rd_u64_at(t->chunks + 16 * k, &cs);
    rd_u64_at(t->chunks + 16 * k + 8, &ck);
    uint64_t off = (uint64_t)k * t->chunk_bytes;
    size_t len = (size_t)(t->nbytes - off < t->chunk_bytes ? t->nbytes - off : t->chunk_bytes);
    const uint8_t *src = j->b->data + j->chunk_off[k];
    if (XXH64(src, (size_t)cs, 0) != ck) {
        j->st[k] = FLOCK_E_CHECKSUM;
        return;
    }
    if (t->compression == FLOCK_COMPRESS_NONE) {
        memcpy(j->dst + off, src, len);
        return;
    }
    uint8_t *out = t->layout == FLOCK_LAYOUT_PLANES ? j->scratch[tid] : j->dst + off;
    if (ZSTD_getFrameContentSize(src, (size_t)cs) != len) {
        j->st[k] = FLOCK_E_CORRUPT;
        return;
    }
    size_t r = ZSTD_decompressDCtx(j->dctx[tid], out, len, src, (size_t)cs);
    if (ZSTD_isError(r) || r != len) {
        j->st[k] = FLOCK_E_CORRUPT;
        return;
    }
    if (t->layout == FLOCK_LAYOUT_PLANES)
        flock_planes_join(out, j->dst + off, len / 2);
}

/* Drops the file pages of [off, off + len) from the process (the mapping is
 * read-only and private, so a later read faults them back in from the file):
 * once a compressed tensor is decompressed its stored bytes are dead, and
 * left resident they would count twice in the RSS (about 2x the weights for
 * a zstd bundle). Only for a mapping the bundle made itself: memory a caller
 * gave flock_bundle_open_memory is never touched. */
static void release_pages(const flock_bundle *b, uint64_t off, uint64_t len)
{
    if (!b->map.data || !len)
        return;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    const uint64_t lo = (off + page - 1) / page * page, hi = (off + len) / page * page;
    if (hi > lo)
        (void)madvise((void *)(b->data + lo), (size_t)(hi - lo), MADV_DONTNEED); /* advice: failure is harmless */
}

/* Runs read_chunk over every chunk of tensor i into dst; reports the first bad chunk. */
static flock_status read_chunks(const flock_bundle *b, size_t i, uint8_t *dst, int threads, flock_error *err)
{
    const rtensor *t = &b->t[i];
    if (t->chunk_count == 0)
        return FLOCK_OK;
    if (threads <= 0)
        threads = flock_cpu_count();
    if (threads > FLOCK_MAX_THREADS)
        threads = FLOCK_MAX_THREADS;
    if ((uint32_t)threads > t->chunk_count)
        threads = (int)t->chunk_count;
    flock_status st = FLOCK_OK;
    uint64_t *coff = malloc((size_t)t->chunk_count * sizeof *coff);
    flock_status *cst = calloc(t->chunk_count, sizeof *cst);
    ZSTD_DCtx *dctx[FLOCK_MAX_THREADS] = {0};
    uint8_t *scratch[FLOCK_MAX_THREADS] = {0};
    if (!coff || !cst)
        st = flock_error_set(err, FLOCK_E_NOMEM, "tensor '%s': out of memory", t->name);
    bool zstd = t->compression == FLOCK_COMPRESS_ZSTD;
    size_t scratch_size = t->nbytes < t->chunk_bytes ? (size_t)t->nbytes : t->chunk_bytes;
    for (int k = 0; st == FLOCK_OK && k < threads; k++) {
        if (zstd && !(dctx[k] = ZSTD_createDCtx()))
            st = flock_error_set(err, FLOCK_E_NOMEM, "tensor '%s': out of memory", t->name);
        if (st == FLOCK_OK && t->layout == FLOCK_LAYOUT_PLANES && !(scratch[k] = malloc(scratch_size)))
            st = flock_error_set(err, FLOCK_E_NOMEM, "tensor '%s': out of memory", t->name);
    }
    if (st == FLOCK_OK) {
        uint64_t pos = t->file_offset;
        for (uint32_t k = 0; k < t->chunk_count; k++) {
            uint64_t cs = 0;
            rd_u64_at(t->chunks + 16 * (size_t)k, &cs);
            coff[k] = pos;
            pos += cs; /* stays inside the data section: the sizes sum to stored_bytes */
        }
        tjob j = {b, t, dst, coff, cst, dctx, scratch};
        flock_parallel_for(threads, t->chunk_count, read_chunk, &j);
        for (uint32_t k = 0; k < t->chunk_count; k++) {
            if (cst[k] == FLOCK_OK)
                continue;
            st = flock_error_set(err, cst[k], "tensor '%s': chunk %u at offset %llu: %s", t->name, k,
                                 (unsigned long long)coff[k],
                                 cst[k] == FLOCK_E_CHECKSUM ? "checksum mismatch"
                                                            : "zstd frame does not decompress to its size");
            break;
        }
    }
    for (int k = 0; k < FLOCK_MAX_THREADS; k++) {
        ZSTD_freeDCtx(dctx[k]);
        free(scratch[k]);
    }
    free(coff);
    free(cst);
    if (st == FLOCK_OK)
        release_pages(b, t->file_offset, t->stored_bytes);
    return st;
}

/* A quantized tensor's block scales must be finite: a nan or inf one makes
 * its whole block (and every dot product through it) nan, which a checksum
 * does not catch when the writer wrote it so. */
static flock_status check_scales(const rtensor *t, const void *data, flock_error *err)
{
    uint64_t blk = 0;
    float v = 0;
    if (!flock_dtype_find_bad_scale((flock_dtype)t->dtype, data, t->nbytes, &blk, &v))
        return FLOCK_OK;
    const uint64_t per_row = (t->n_dims ? t->shape[t->n_dims - 1] : 1) / flock_dtype_block((flock_dtype)t->dtype);
    return flock_error_set(err, FLOCK_E_CORRUPT, "tensor '%s' (%s): block %llu (row %llu) has a non-finite scale (%g)",
                           t->name, flock_dtype_name((flock_dtype)t->dtype), (unsigned long long)blk,
                           (unsigned long long)(per_row ? blk / per_row : 0), (double)v);
}

flock_status flock_bundle_tensor_read(const flock_bundle *b, size_t i, void *dst, size_t dst_size,
                                      int threads, flock_error *err)
{
    if (!b || i >= b->nt || (!dst && b->t[i].nbytes))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_bundle_tensor_read: bad argument");
    if (dst_size < b->t[i].nbytes)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': destination holds %zu bytes, the "
                               "tensor %llu", b->t[i].name, dst_size, (unsigned long long)b->t[i].nbytes);
    TRY(read_chunks(b, i, dst, threads, err));
    return check_scales(&b->t[i], dst, err);
}

flock_status flock_bundle_tensor_mapped(const flock_bundle *b, size_t i, const void **out, flock_error *err)
{
    RETURN_ERROR_IF(!b || i >= b->nt || !out, FLOCK_E_INVALID_ARG, err, "flock_bundle_tensor_mapped: bad argument");
    const rtensor *t = &b->t[i];
    RETURN_ERROR_IF(t->compression != FLOCK_COMPRESS_NONE, FLOCK_E_UNSUPPORTED, err,
                    "tensor '%s' is compressed: use flock_bundle_tensor_read", t->name);
    const uint8_t *p = b->data + t->file_offset;
    if (!atomic_load(&b->verified[i])) {
        for (uint32_t k = 0; k < t->chunk_count; k++) {
            uint64_t ck = 0;
            rd_u64_at(t->chunks + 16 * (size_t)k + 8, &ck);
            uint64_t off = (uint64_t)k * t->chunk_bytes;
            size_t len = (size_t)(t->nbytes - off < t->chunk_bytes ? t->nbytes - off : t->chunk_bytes);
            uint64_t got = XXH64(p + off, len, 0);
            RETURN_ERROR_IF(got != ck, FLOCK_E_CHECKSUM, err, "tensor '%s': chunk %u at offset %llu: checksum mismatch",
                            t->name, k, (unsigned long long)(t->file_offset + off));
        }
        TRY(check_scales(t, p, err));
        atomic_store(&b->verified[i], 1);
    }
    *out = p;
    return FLOCK_OK;
}
