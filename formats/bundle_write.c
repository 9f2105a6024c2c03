/* The .flock bundle writer (docs/bundle-format.md).
 *
 * Tensor data is streamed to a temporary file next to the target as tensors
 * are added (so a converter holds one tensor at a time); the other sections
 * are kept in memory and written by finish, followed by the section table and
 * the header, then the file is renamed into place. Chunks are compressed in
 * parallel but written in order, so the bytes do not depend on the threads. */
#include "bundle_internal.h"
#include "parallel.h"
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#define MAX_CHUNK_BYTES (1u << 30)
#define BATCH_PER_THREAD 2 /* chunks in flight per thread: bounds memory to ~2 x threads x chunk */

typedef struct wtensor {
    char *name;
    uint8_t dtype, n_dims, compression, layout;
    uint32_t chunk_bytes, chunk_count;
    uint64_t shape[4];
    uint64_t nbytes, data_offset, stored_bytes;
    uint64_t *chunks; /* chunk_count pairs: stored size, xxh64 */
} wtensor;

typedef struct wsection {
    uint32_t kind, compression;
    char *name;
    uint8_t *data; /* stored bytes */
    size_t stored, raw;
    uint64_t checksum;
} wsection;

struct flock_bundle_writer {
    flock_bundle_writer_opts o;
    char *path, *tmp_path;
    int fd;
    uint64_t pos;            /* bytes written so far */
    bool failed, finished;
    XXH64_state_t *data_hash; /* running checksum of the tensor data section */
    wtensor *t;
    size_t nt, capt;
    wsection *s;
    size_t ns, caps;
    flock_manifest *manifest;
    ZSTD_CCtx *cctx[FLOCK_MAX_THREADS];
    uint8_t *plane_buf[FLOCK_MAX_THREADS]; /* per thread, chunk_bytes */
    uint8_t *out_buf;        /* n_slots slots of out_slot bytes */
    size_t out_slot, n_slots;
};

flock_bundle_writer_opts flock_bundle_writer_default_opts(void)
{
    flock_bundle_writer_opts o = {0};
    o.zstd_level = 3;
    o.chunk_bytes = 1u << 20;
    o.byte_planes = true;
    o.threads = 0;
    return o;
}

static flock_status write_all(flock_bundle_writer *w, const void *p, size_t n, flock_error *err)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(w->fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            w->failed = true;
            return flock_error_set(err, FLOCK_E_IO, "%s: write failed at offset %llu: %s", w->tmp_path,
                                   (unsigned long long)w->pos, k < 0 ? strerror(errno) : "short write");
        }
        b += k;
        n -= (size_t)k;
        w->pos += (uint64_t)k;
    }
    return FLOCK_OK;
}

/* Writes zeros up to the next multiple of `align`; `hash` (may be NULL) sees them. */
static flock_status pad_to(flock_bundle_writer *w, uint64_t align, XXH64_state_t *hash, flock_error *err)
{
    static const uint8_t zeros[FLOCK_BUNDLE_ALIGN];
    size_t n = (size_t)((align - w->pos % align) % align);
    if (hash && n)
        XXH64_update(hash, zeros, n);
    return write_all(w, zeros, n, err);
}

flock_status flock_bundle_writer_create(const char *path, const flock_bundle_writer_opts *opts,
                                        flock_bundle_writer **out, flock_error *err)
{
    if (!path || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: NULL argument");
    flock_bundle_writer_opts o = opts ? *opts : flock_bundle_writer_default_opts();
    if (o.zstd_level < 0 || o.zstd_level > ZSTD_maxCLevel())
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: zstd_level %d outside 0..%d",
                               o.zstd_level, ZSTD_maxCLevel());
    if (o.chunk_bytes == 0)
        o.chunk_bytes = 1u << 20;
    if (o.chunk_bytes % 64 || o.chunk_bytes > MAX_CHUNK_BYTES)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: chunk_bytes %u must be a "
                               "multiple of 64 and at most %u", o.chunk_bytes, MAX_CHUNK_BYTES);
    if (o.threads < 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: threads %d < 0", o.threads);
    if (o.threads == 0)
        o.threads = flock_cpu_count();
    if (o.threads > FLOCK_MAX_THREADS)
        o.threads = FLOCK_MAX_THREADS;

    flock_bundle_writer *w = calloc(1, sizeof *w);
    if (!w)
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    w->o = o;
    w->fd = -1;
    size_t plen = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(plen + 16);
    w->data_hash = XXH64_createState();
    if (!w->path || !w->tmp_path || !w->data_hash) {
        flock_bundle_writer_free(w);
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    }
    snprintf(w->tmp_path, plen + 16, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp_path);
    if (w->fd < 0) {
        flock_status st = flock_error_set(err, FLOCK_E_IO, "%s: cannot create: %s", w->tmp_path,
                                          strerror(errno));
        w->tmp_path[0] = '\0';
        flock_bundle_writer_free(w);
        return st;
    }
    (void)fchmod(w->fd, 0644);
    XXH64_reset(w->data_hash, 0);
    /* Placeholder header; finish rewrites it. The tensor data section starts right after. */
    uint8_t hdr[FLOCK_BUNDLE_HEADER_SIZE] = {0};
    flock_status st = write_all(w, hdr, sizeof hdr, err);
    if (st) {
        flock_bundle_writer_free(w);
        return st;
    }
    *out = w;
    return FLOCK_OK;
}

flock_status flock_bundle_writer_set_manifest(flock_bundle_writer *w, const flock_manifest *m,
                                              flock_error *err)
{
    if (!w || !m)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: NULL argument");
    flock_manifest *c;
    if (flock_manifest_clone(m, &c))
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory copying the manifest");
    flock_manifest_free(w->manifest);
    w->manifest = c;
    return FLOCK_OK;
}

/* ---- tensors ------------------------------------------------------------ */

typedef struct cjob {
    flock_bundle_writer *w;
    const uint8_t *data;
    uint64_t nbytes;
    size_t first;      /* first chunk of the batch */
    bool planes;
    size_t *out_size;  /* per batch slot; 0 on error */
    const char **zerr; /* per batch slot */
} cjob;

/* Compresses byte planes (n high bytes, then n low bytes) as one frame with
 * a block boundary between the planes: zstd keeps one literal Huffman table
 * per block, so ending the block after the high plane lets each plane get its
 * own table even when a chunk is smaller than a 128 KiB block. Returns the
 * frame size or a zstd error code. */
static size_t compress_planes(ZSTD_CCtx *cc, uint8_t *dst, size_t cap, const uint8_t *src, size_t len)
{
    size_t r = ZSTD_CCtx_reset(cc, ZSTD_reset_session_only);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setPledgedSrcSize(cc, len); /* the frame header then carries the size */
    if (ZSTD_isError(r))
        return r;
    ZSTD_outBuffer out = {dst, cap, 0};
    for (int half = 0; half < 2; half++) {
        ZSTD_inBuffer in = {src + half * (len / 2), len / 2, 0};
        ZSTD_EndDirective mode = half ? ZSTD_e_end : ZSTD_e_flush;
        do {
            size_t before = out.pos;
            r = ZSTD_compressStream2(cc, &out, &in, mode);
            if (!ZSTD_isError(r) && r != 0 && out.pos == before && out.pos == out.size)
                return (size_t)-ZSTD_error_dstSize_tooSmall;
        } while (!ZSTD_isError(r) && r != 0);
        if (ZSTD_isError(r))
            return r;
    }
    return out.pos;
}

static void compress_chunk(void *ctx, size_t slot, int tid)
{
    cjob *j = ctx;
    flock_bundle_writer *w = j->w;
    uint64_t off = (uint64_t)(j->first + slot) * w->o.chunk_bytes;
    size_t len = (size_t)(j->nbytes - off < w->o.chunk_bytes ? j->nbytes - off : w->o.chunk_bytes);
    uint8_t *dst = w->out_buf + slot * w->out_slot;
    size_t r;
    if (j->planes) {
        flock_planes_split(j->data + off, w->plane_buf[tid], len / 2);
        r = compress_planes(w->cctx[tid], dst, w->out_slot, w->plane_buf[tid], len);
    } else {
        r = ZSTD_compress2(w->cctx[tid], dst, w->out_slot, j->data + off, len);
    }
    j->out_size[slot] = ZSTD_isError(r) ? 0 : r;
    j->zerr[slot] = ZSTD_isError(r) ? ZSTD_getErrorName(r) : NULL;
}

/* Allocates the per-thread compression state on first use. */
static flock_status ensure_compressor(flock_bundle_writer *w, flock_error *err)
{
    if (w->out_buf)
        return FLOCK_OK;
    w->n_slots = (size_t)w->o.threads * BATCH_PER_THREAD;
    /* compressBound covers one frame; the extra block of the planes needs a few bytes more. */
    w->out_slot = ZSTD_compressBound(w->o.chunk_bytes) + 64;
    w->out_buf = malloc(w->n_slots * w->out_slot);
    if (!w->out_buf)
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory for %zu chunk buffers",
                               w->n_slots);
    for (int t = 0; t < w->o.threads; t++) {
        w->cctx[t] = ZSTD_createCCtx();
        w->plane_buf[t] = malloc(w->o.chunk_bytes);
        if (!w->cctx[t] || !w->plane_buf[t])
            return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory for compressors");
        /* One frame per chunk with its content size; no zstd checksum (xxh64 covers it);
         * no zstd worker threads, which keeps the output independent of our threads. */
        ZSTD_CCtx_setParameter(w->cctx[t], ZSTD_c_compressionLevel, w->o.zstd_level);
        ZSTD_CCtx_setParameter(w->cctx[t], ZSTD_c_contentSizeFlag, 1);
        ZSTD_CCtx_setParameter(w->cctx[t], ZSTD_c_checksumFlag, 0);
    }
    return FLOCK_OK;
}

/* Writes one stored chunk and records its size and checksum. */
static flock_status put_chunk(flock_bundle_writer *w, wtensor *t, size_t k, const void *p, size_t n,
                              flock_error *err)
{
    t->chunks[2 * k] = n;
    t->chunks[2 * k + 1] = XXH64(p, n, 0);
    t->stored_bytes += n;
    XXH64_update(w->data_hash, p, n);
    return write_all(w, p, n, err);
}

static flock_status write_tensor_chunks(flock_bundle_writer *w, wtensor *t, const uint8_t *data,
                                        flock_error *err)
{
    uint64_t cb = t->chunk_bytes;
    if (t->compression == FLOCK_COMPRESS_NONE) {
        for (size_t k = 0; k < t->chunk_count; k++) {
            uint64_t off = k * cb;
            size_t len = (size_t)(t->nbytes - off < cb ? t->nbytes - off : cb);
            flock_status st = put_chunk(w, t, k, data + off, len, err);
            if (st)
                return st;
        }
        return FLOCK_OK;
    }
    flock_status st = ensure_compressor(w, err);
    if (st)
        return st;
    size_t sizes[FLOCK_MAX_THREADS * BATCH_PER_THREAD];
    const char *zerrs[FLOCK_MAX_THREADS * BATCH_PER_THREAD];
    for (size_t first = 0; first < t->chunk_count; first += w->n_slots) {
        size_t n = t->chunk_count - first < w->n_slots ? t->chunk_count - first : w->n_slots;
        cjob j = {w, data, t->nbytes, first, t->layout == FLOCK_LAYOUT_PLANES, sizes, zerrs};
        flock_parallel_for(w->o.threads, n, compress_chunk, &j);
        for (size_t s = 0; s < n; s++) {
            if (zerrs[s])
                return flock_error_set(err, FLOCK_E_INTERNAL, "tensor '%s': zstd failed on chunk %zu: %s",
                                       t->name, first + s, zerrs[s]);
            if ((st = put_chunk(w, t, first + s, w->out_buf + s * w->out_slot, sizes[s], err)))
                return st;
        }
    }
    return FLOCK_OK;
}

static bool tensor_name_taken(const flock_bundle_writer *w, const char *name)
{
    for (size_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return true;
    return false;
}

flock_status flock_bundle_writer_add_tensor(flock_bundle_writer *w, const char *name, flock_dtype dtype,
                                            uint32_t n_dims, const uint64_t *shape, const void *data,
                                            size_t nbytes, flock_error *err)
{
    if (!w || !name || (!shape && n_dims) || (!data && nbytes))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: NULL argument");
    if (w->failed || w->finished)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: add_tensor after %s",
                               w->finished ? "finish" : "an earlier failure");
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > UINT16_MAX)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor name of %zu bytes (1..65535)", nlen);
    if ((unsigned)dtype >= FLOCK_DTYPE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': invalid dtype %d", name, (int)dtype);
    if (n_dims > 4)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': %u dims (at most 4)", name, n_dims);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (shape[d] && elems > UINT64_MAX / shape[d])
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': shape overflows", name);
        elems *= shape[d];
    }
    uint64_t need = flock_dtype_tensor_bytes(dtype, n_dims, shape);
    if (elems && !need)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': a %s row of %llu elements is not whole "
                               "blocks of %zu", name, flock_dtype_name(dtype),
                               (unsigned long long)(n_dims ? shape[n_dims - 1] : 1), flock_dtype_block(dtype));
    if (need != nbytes)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': %zu bytes given, shape and dtype "
                               "%s need %llu", name, nbytes, flock_dtype_name(dtype), (unsigned long long)need);
    if (tensor_name_taken(w, name))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s' added twice", name);
    if (w->nt == w->capt) {
        size_t cap = w->capt ? w->capt * 2 : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
        w->t = t;
        w->capt = cap;
    }
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->dtype = (uint8_t)dtype;
    t->n_dims = (uint8_t)n_dims;
    for (int d = 0; d < 4; d++)
        t->shape[d] = (uint32_t)d < n_dims ? shape[d] : 1;
    t->nbytes = nbytes;
    t->chunk_bytes = w->o.chunk_bytes;
    t->chunk_count = (uint32_t)((nbytes + t->chunk_bytes - 1) / t->chunk_bytes);
    if ((nbytes + t->chunk_bytes - 1) / t->chunk_bytes > UINT32_MAX)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "tensor '%s': too many chunks", name);
    t->compression = w->o.zstd_level > 0 ? FLOCK_COMPRESS_ZSTD : FLOCK_COMPRESS_NONE;
    t->layout = (t->compression == FLOCK_COMPRESS_ZSTD && w->o.byte_planes && flock_dtype_size(dtype) == 2)
                    ? FLOCK_LAYOUT_PLANES : FLOCK_LAYOUT_PLAIN;
    t->name = strdup(name);
    t->chunks = malloc(t->chunk_count ? (size_t)t->chunk_count * 16 : 1);
    if (!t->name || !t->chunks) {
        free(t->name);
        free(t->chunks);
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    }
    w->nt++; /* owned by the writer from here; on failure the writer is marked failed */
    flock_status st = pad_to(w, FLOCK_BUNDLE_ALIGN, w->data_hash, err);
    if (st == FLOCK_OK) {
        t->data_offset = w->pos - FLOCK_BUNDLE_HEADER_SIZE;
        st = write_tensor_chunks(w, t, data, err);
    }
    if (st) {
        w->failed = true;
        return flock_error_prefix(err, st, "tensor '%s'", name);
    }
    if (w->o.progress)
        w->o.progress(w->o.progress_user, t->name, t->nbytes, t->stored_bytes);
    return FLOCK_OK;
}

/* ---- other sections ----------------------------------------------------- */

static flock_status push_section(flock_bundle_writer *w, uint32_t kind, const char *name, const void *data,
                                 size_t size, bool compress, flock_error *err)
{
    if (w->ns == w->caps) {
        size_t cap = w->caps ? w->caps * 2 : 8;
        wsection *s = realloc(w->s, cap * sizeof *s);
        if (!s)
            return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
        w->s = s;
        w->caps = cap;
    }
    wsection s = {kind, FLOCK_COMPRESS_NONE, strdup(name), NULL, size, size, 0};
    if (!s.name)
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    if (compress) {
        size_t cap = ZSTD_compressBound(size);
        s.data = malloc(cap ? cap : 1);
        int level = w->o.zstd_level > 0 ? w->o.zstd_level : ZSTD_CLEVEL_DEFAULT;
        size_t r = s.data ? ZSTD_compress(s.data, cap, data, size, level) : 0;
        if (!s.data || ZSTD_isError(r)) {
            free(s.data);
            free(s.name);
            return flock_error_set(err, s.data ? FLOCK_E_INTERNAL : FLOCK_E_NOMEM, "section '%s': %s",
                                   name, s.data ? ZSTD_getErrorName(r) : "out of memory");
        }
        s.stored = r;
        s.compression = FLOCK_COMPRESS_ZSTD;
    } else {
        s.data = malloc(size ? size : 1);
        if (!s.data) {
            free(s.name);
            return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
        }
        if (size)
            memcpy(s.data, data, size);
    }
    s.checksum = XXH64(s.data, s.stored, 0);
    w->s[w->ns++] = s;
    return FLOCK_OK;
}

flock_status flock_bundle_writer_add_section(flock_bundle_writer *w, flock_section_kind kind,
                                             const char *name, const void *data, size_t size,
                                             bool compress, flock_error *err)
{
    if (!w || (!data && size))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: NULL argument");
    if (w->failed || w->finished)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: add_section after %s",
                               w->finished ? "finish" : "an earlier failure");
    if (kind != FLOCK_SECTION_TOKENIZER && kind != FLOCK_SECTION_PROGRAM && kind != FLOCK_SECTION_KERNELS)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: section kind %d cannot be "
                               "added (manifest and tensors have their own calls)", (int)kind);
    if (!name)
        name = "";
    if (strlen(name) > FLOCK_BUNDLE_MAX_NAME)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "section name of %zu bytes (at most %u)",
                               strlen(name), FLOCK_BUNDLE_MAX_NAME);
    for (size_t i = 0; i < w->ns; i++)
        if (w->s[i].kind == (uint32_t)kind && strcmp(w->s[i].name, name) == 0)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "section kind %d name '%s' added twice",
                                   (int)kind, name);
    return push_section(w, (uint32_t)kind, name, data, size, compress, err);
}

/* ---- finish ------------------------------------------------------------- */

static flock_status build_tensor_table(const flock_bundle_writer *w, uint8_t **out, size_t *size,
                                       flock_error *err)
{
    size_t total = FLOCK_TT_HEADER_SIZE;
    for (size_t i = 0; i < w->nt; i++)
        total += FLOCK_TT_FIXED + strlen(w->t[i].name) + (size_t)w->t[i].chunk_count * FLOCK_TT_CHUNK;
    uint8_t *b = calloc(1, total);
    if (!b)
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory for the tensor table");
    flock_wr_u32(b, (uint32_t)w->nt);
    flock_wr_u32(b + 4, FLOCK_TT_HEADER_SIZE);
    uint8_t *p = b + FLOCK_TT_HEADER_SIZE;
    for (size_t i = 0; i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        size_t nlen = strlen(t->name);
        size_t rec = FLOCK_TT_FIXED + nlen + (size_t)t->chunk_count * FLOCK_TT_CHUNK;
        flock_wr_u32(p, (uint32_t)rec);
        flock_wr_u16(p + 4, (uint16_t)nlen);
        memcpy(p + 6, t->name, nlen);
        uint8_t *q = p + 6 + nlen;
        q[0] = t->dtype;
        q[1] = t->n_dims;
        q[2] = t->compression;
        q[3] = t->layout;
        flock_wr_u32(q + 4, t->chunk_bytes);
        for (int d = 0; d < 4; d++)
            flock_wr_u64(q + 8 + 8 * d, t->shape[d]);
        flock_wr_u64(q + 40, t->nbytes);
        flock_wr_u64(q + 48, t->data_offset);
        flock_wr_u64(q + 56, t->stored_bytes);
        flock_wr_u32(q + 64, t->chunk_count);
        for (uint32_t k = 0; k < t->chunk_count; k++) {
            flock_wr_u64(q + 68 + 16 * k, t->chunks[2 * k]);
            flock_wr_u64(q + 76 + 16 * k, t->chunks[2 * k + 1]);
        }
        p += rec;
    }
    *out = b;
    *size = total;
    return FLOCK_OK;
}

/* Writes a section table entry for `s` stored at `off` into `e` (64 bytes). */
static void put_entry(uint8_t *e, const wsection *s, uint64_t off, uint32_t name_off)
{
    memset(e, 0, FLOCK_BUNDLE_ENTRY_SIZE);
    flock_wr_u32(e, s->kind);
    flock_wr_u32(e + 4, s->compression);
    flock_wr_u64(e + 8, off);
    flock_wr_u64(e + 16, s->stored);
    flock_wr_u64(e + 24, s->raw);
    flock_wr_u64(e + 32, s->checksum);
    flock_wr_u32(e + 40, FLOCK_BUNDLE_ALIGN);
    flock_wr_u32(e + 48, name_off);
    flock_wr_u32(e + 52, (uint32_t)strlen(s->name));
}

static flock_status write_tail(flock_bundle_writer *w, flock_error *err)
{
    flock_status st = pad_to(w, FLOCK_BUNDLE_ALIGN, w->data_hash, err);
    if (st)
        return st;
    /* The tensor data section goes first in the table, then manifest and tensor table. */
    wsection data_sec = {FLOCK_SECTION_TENSOR_DATA, FLOCK_COMPRESS_NONE, "", NULL,
                         w->pos - FLOCK_BUNDLE_HEADER_SIZE, w->pos - FLOCK_BUNDLE_HEADER_SIZE,
                         XXH64_digest(w->data_hash)};
    uint8_t *mbytes = NULL, *tbytes = NULL;
    size_t msize = 0, tsize = 0;
    flock_manifest *empty = NULL;
    const flock_manifest *m = w->manifest;
    if (!m && flock_manifest_create(&empty))
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    st = flock_manifest_serialize(m ? m : empty, &mbytes, &msize, err);
    flock_manifest_free(empty);
    if (st == FLOCK_OK)
        st = build_tensor_table(w, &tbytes, &tsize, err);
    if (st == FLOCK_OK)
        st = push_section(w, FLOCK_SECTION_MANIFEST, "", mbytes, msize, false, err);
    if (st == FLOCK_OK)
        st = push_section(w, FLOCK_SECTION_TENSOR_TABLE, "", tbytes, tsize, false, err);
    free(mbytes);
    free(tbytes);
    if (st)
        return st;
    /* Order in the file and table: data, manifest, tensor table, then added sections. */
    size_t n = w->ns + 1;
    size_t names = 0;
    for (size_t i = 0; i < w->ns; i++)
        names += strlen(w->s[i].name);
    size_t tsz = n * FLOCK_BUNDLE_ENTRY_SIZE + names;
    uint8_t *table = calloc(1, tsz);
    if (!table)
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    uint32_t name_off = 0;
    put_entry(table, &data_sec, FLOCK_BUNDLE_HEADER_SIZE, 0);
    size_t order[2] = {w->ns - 2, w->ns - 1};
    for (size_t k = 0; k < w->ns && st == FLOCK_OK; k++) {
        size_t i = k < 2 ? order[k] : k - 2;
        const wsection *s = &w->s[i];
        if ((st = pad_to(w, FLOCK_BUNDLE_ALIGN, NULL, err)))
            break;
        put_entry(table + (k + 1) * FLOCK_BUNDLE_ENTRY_SIZE, s, w->pos, name_off);
        memcpy(table + n * FLOCK_BUNDLE_ENTRY_SIZE + name_off, s->name, strlen(s->name));
        name_off += (uint32_t)strlen(s->name);
        st = write_all(w, s->data, s->stored, err);
    }
    uint64_t table_off = 0;
    if (st == FLOCK_OK && (st = pad_to(w, FLOCK_BUNDLE_ALIGN, NULL, err)) == FLOCK_OK) {
        table_off = w->pos;
        st = write_all(w, table, tsz, err);
    }
    if (st) {
        free(table);
        return st;
    }
    uint8_t hdr[FLOCK_BUNDLE_HEADER_SIZE] = {0};
    memcpy(hdr, FLOCK_BUNDLE_MAGIC, 8);
    flock_wr_u16(hdr + 8, FLOCK_BUNDLE_MAJOR);
    /* the lowest minor version whose features the file uses */
    uint16_t minor = 0;
    for (size_t i = 0; i < w->nt; i++) {
        uint16_t need = (uint16_t)flock_bundle_dtype_minor((flock_dtype)w->t[i].dtype);
        minor = need > minor ? need : minor;
    }
    flock_wr_u16(hdr + 10, minor);
    flock_wr_u32(hdr + 12, FLOCK_BUNDLE_HEADER_SIZE);
    flock_wr_u32(hdr + 16, 0);
    flock_wr_u32(hdr + 20, (uint32_t)n);
    flock_wr_u32(hdr + 24, FLOCK_BUNDLE_ENTRY_SIZE);
    flock_wr_u64(hdr + 32, table_off);
    flock_wr_u64(hdr + 40, tsz);
    flock_wr_u64(hdr + 48, w->pos);
    XXH64_state_t *h = XXH64_createState();
    if (!h) {
        free(table);
        return flock_error_set(err, FLOCK_E_NOMEM, "bundle writer: out of memory");
    }
    XXH64_reset(h, 0);
    XXH64_update(h, hdr, FLOCK_BUNDLE_CKSUM_OFF);
    XXH64_update(h, table, tsz);
    flock_wr_u64(hdr + FLOCK_BUNDLE_CKSUM_OFF, XXH64_digest(h));
    XXH64_freeState(h);
    free(table);
    if (pwrite(w->fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
        return flock_error_set(err, FLOCK_E_IO, "%s: cannot write the header: %s", w->tmp_path,
                               strerror(errno));
    return FLOCK_OK;
}

flock_status flock_bundle_writer_finish(flock_bundle_writer *w, flock_error *err)
{
    if (!w)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: NULL argument");
    if (w->failed || w->finished)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "bundle writer: finish after %s",
                               w->finished ? "finish" : "an earlier failure");
    flock_status st = write_tail(w, err);
    if (st == FLOCK_OK && fsync(w->fd) != 0)
        st = flock_error_set(err, FLOCK_E_IO, "%s: fsync failed: %s", w->tmp_path, strerror(errno));
    if (st == FLOCK_OK) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc != 0)
            st = flock_error_set(err, FLOCK_E_IO, "%s: close failed: %s", w->tmp_path, strerror(errno));
    }
    if (st == FLOCK_OK && rename(w->tmp_path, w->path) != 0)
        st = flock_error_set(err, FLOCK_E_IO, "cannot rename %s to %s: %s", w->tmp_path, w->path,
                             strerror(errno));
    if (st) {
        w->failed = true;
        return st;
    }
    w->finished = true;
    return FLOCK_OK;
}

void flock_bundle_writer_free(flock_bundle_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (!w->finished && w->tmp_path && w->tmp_path[0])
        unlink(w->tmp_path);
    for (size_t i = 0; i < w->nt; i++) {
        free(w->t[i].name);
        free(w->t[i].chunks);
    }
    free(w->t);
    for (size_t i = 0; i < w->ns; i++) {
        free(w->s[i].name);
        free(w->s[i].data);
    }
    free(w->s);
    for (int t = 0; t < FLOCK_MAX_THREADS; t++) {
        ZSTD_freeCCtx(w->cctx[t]);
        free(w->plane_buf[t]);
    }
    free(w->out_buf);
    XXH64_freeState(w->data_hash);
    flock_manifest_free(w->manifest);
    free(w->path);
    free(w->tmp_path);
    free(w);
}
