/* bundle_bench: compression ratio and decompression speed of the bundle's
 * tensor layouts on real weights (docs/bundle-format.md, "Figures").
 *
 * Input: a raw dump of tensors (tools/dump_gguf_f16.py writes one) given as
 * an index file (one tensor per line: "name dtype offset nbytes dim0 ...")
 * and the binary it points into. For each layout (plain zstd, byte planes) it
 * writes a bundle with the flock writer, reports tensor bytes raw/stored, then
 * reads every tensor back (best of --reps) with 1 and 2 threads and reports
 * raw GB/s. It also reports the ratio of byte planes compressed as two frames
 * per chunk ("apart"), which the format does not use, to justify one frame. */
#include "flock/formats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

typedef struct btensor {
    char name[256];
    flock_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[4];
    uint64_t offset, nbytes;
} btensor;

static void usage(FILE *f)
{
    fprintf(f, "usage: bundle_bench INDEX BIN [--level N] [--chunk BYTES] [--reps N] [--out DIR]\n\n"
               "Measures the .flock tensor layouts on a raw tensor dump (INDEX: one line per\n"
               "tensor 'name dtype offset nbytes dim0 [dim1 ...]' into BIN; tools/dump_gguf_f16.py\n"
               "writes both). Prints, for plain zstd and byte planes: raw and stored tensor bytes,\n"
               "ratio, and decompression speed (raw GB/s, best of --reps) with 1 and 2 threads;\n"
               "plus the ratio of byte planes compressed as separate frames, and the read speed\n"
               "of an uncompressed bundle (checksum + copy).\n\n"
               "  --level N      zstd level (default: the writer's default, 3)\n"
               "  --chunk BYTES  chunk size (default: the writer's default, 1 MiB)\n"
               "  --reps N       timing repetitions, best kept (default 3)\n"
               "  --out DIR      where the bundles are written (default /tmp)\n"
               "  --keep         keep the bundles (bundle_bench_{plain,planes,raw}.flock)\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int load_index(const char *path, btensor **out, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bundle_bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    btensor *t = NULL;
    size_t cnt = 0, cap = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 256;
            btensor *nt = realloc(t, cap * sizeof *t);
            if (!nt) {
                free(t);
                fclose(f);
                return 1;
            }
            t = nt;
        }
        btensor *b = &t[cnt];
        memset(b, 0, sizeof *b);
        char dtype[16];
        unsigned long long off, nb, d[4] = {1, 1, 1, 1};
        int k = sscanf(line, "%255s %15s %llu %llu %llu %llu %llu %llu", b->name, dtype, &off, &nb, &d[0],
                       &d[1], &d[2], &d[3]);
        if (k < 4 || flock_dtype_parse(dtype, &b->dtype) != FLOCK_OK) {
            fprintf(stderr, "bundle_bench: %s: bad line %zu\n", path, cnt + 1);
            free(t);
            fclose(f);
            return 1;
        }
        b->n_dims = (uint32_t)(k - 4);
        for (int j = 0; j < 4; j++)
            b->shape[j] = d[j];
        b->offset = off;
        b->nbytes = nb;
        cnt++;
    }
    fclose(f);
    *out = t;
    *n = cnt;
    return 0;
}

/* Bytes of the 16-bit tensors compressed as byte planes in two frames per chunk. */
static uint64_t planes_apart_size(const btensor *t, size_t n, const uint8_t *bin, int level, uint32_t chunk)
{
    size_t cap = ZSTD_compressBound(chunk);
    uint8_t *plane = malloc(chunk), *out = malloc(cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    uint64_t total = 0;
    for (size_t i = 0; i < n && plane && out && cc; i++) {
        const uint8_t *p = bin + t[i].offset;
        bool two = flock_dtype_size(t[i].dtype) == 2;
        for (uint64_t off = 0; off < t[i].nbytes; off += chunk) {
            size_t len = (size_t)(t[i].nbytes - off < chunk ? t[i].nbytes - off : chunk);
            if (!two) {
                total += ZSTD_compressCCtx(cc, out, cap, p + off, len, level);
                continue;
            }
            size_t m = len / 2;
            for (size_t k = 0; k < m; k++) {
                plane[k] = p[off + 2 * k + 1];
                plane[m + k] = p[off + 2 * k];
            }
            total += ZSTD_compressCCtx(cc, out, cap, plane, m, level);
            total += ZSTD_compressCCtx(cc, out, cap, plane + m, m, level);
        }
    }
    ZSTD_freeCCtx(cc);
    free(plane);
    free(out);
    return total;
}

static int write_bundle(const char *path, const btensor *t, size_t n, const uint8_t *bin,
                        const flock_bundle_writer_opts *o)
{
    flock_error err = {0};
    flock_bundle_writer *w;
    if (flock_bundle_writer_create(path, o, &w, &err))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (flock_bundle_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].n_dims, t[i].shape,
                                           bin + t[i].offset, t[i].nbytes, &err))
            goto fail_w;
    if (flock_bundle_writer_finish(w, &err))
        goto fail_w;
    flock_bundle_writer_free(w);
    return 0;
fail_w:
    flock_bundle_writer_free(w);
fail:
    fprintf(stderr, "bundle_bench: %s: %s\n", path, err.msg);
    return 1;
}

/* Reads every tensor `reps` times with `threads`; returns the best raw GB/s, or -1. */
static double read_speed(const char *path, int threads, int reps, uint64_t *raw_out, uint64_t *stored_out)
{
    flock_error err = {0};
    flock_bundle *b;
    if (flock_bundle_open(path, &b, &err)) {
        fprintf(stderr, "bundle_bench: %s: %s\n", path, err.msg);
        return -1;
    }
    uint64_t raw = 0, stored = 0, maxb = 0;
    for (size_t i = 0; i < flock_bundle_tensor_count(b); i++) {
        flock_bundle_tensor ti;
        flock_bundle_tensor_info(b, i, &ti);
        raw += ti.nbytes;
        stored += ti.stored_bytes;
        maxb = ti.nbytes > maxb ? ti.nbytes : maxb;
    }
    uint8_t *dst = malloc(maxb ? maxb : 1);
    double best = 1e30;
    for (int r = 0; r < reps && dst; r++) {
        double t0 = now_s();
        for (size_t i = 0; i < flock_bundle_tensor_count(b); i++) {
            if (flock_bundle_tensor_read(b, i, dst, maxb, threads, &err)) {
                fprintf(stderr, "bundle_bench: %s\n", err.msg);
                free(dst);
                flock_bundle_close(b);
                return -1;
            }
        }
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    free(dst);
    flock_bundle_close(b);
    *raw_out = raw;
    *stored_out = stored;
    return (double)raw / best / 1e9;
}

int main(int argc, char **argv)
{
    const char *idx = NULL, *binp = NULL, *dir = "/tmp";
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    int reps = 3;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--level") == 0 && i + 1 < argc) {
            o.zstd_level = atoi(argv[++i]);
        } else if (strcmp(a, "--chunk") == 0 && i + 1 < argc) {
            o.chunk_bytes = (uint32_t)strtoul(argv[++i], NULL, 0);
        } else if (strcmp(a, "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(a, "--keep") == 0) {
            keep = true;
        } else if (strcmp(a, "--out") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "bundle_bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!idx) {
            idx = a;
        } else if (!binp) {
            binp = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!idx || !binp || reps < 1 || o.zstd_level < 1) {
        usage(stderr);
        return 2;
    }
    btensor *t;
    size_t n;
    if (load_index(idx, &t, &n))
        return 1;
    flock_file_map bin = {0};
    flock_error err = {0};
    if (flock_map_file(binp, &bin, &err)) {
        fprintf(stderr, "bundle_bench: %s\n", err.msg);
        free(t);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].offset > bin.size || t[i].nbytes > bin.size - t[i].offset) {
            fprintf(stderr, "bundle_bench: tensor %s lies outside %s\n", t[i].name, binp);
            return 1;
        }
    }
    printf("%zu tensors, zstd level %d, chunk %u bytes\n", n, o.zstd_level, o.chunk_bytes);
    printf("%-12s %14s %14s %8s %12s %12s\n", "layout", "raw", "stored", "ratio", "GB/s 1 thr", "GB/s 2 thr");
    int rc = 0;
    uint64_t raw = 0, stored = 0;
    for (int planes = 0; planes <= 1 && !rc; planes++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bundle_bench_%s.flock", dir, planes ? "planes" : "plain");
        o.byte_planes = planes;
        o.threads = 0;
        double t0 = now_s();
        if (write_bundle(path, t, n, bin.data, &o)) {
            rc = 1;
            break;
        }
        double wt = now_s() - t0;
        double s1 = read_speed(path, 1, reps, &raw, &stored);
        double s2 = read_speed(path, 2, reps, &raw, &stored);
        if (s1 < 0 || s2 < 0) {
            rc = 1;
            break;
        }
        printf("%-12s %14llu %14llu %8.3f %12.2f %12.2f   (write %.1f s)\n", planes ? "byte planes" : "plain zstd",
               (unsigned long long)raw, (unsigned long long)stored, (double)raw / stored, s1, s2, wt);
        if (!keep)
            remove(path);
    }
    if (!rc) {
        uint64_t apart = planes_apart_size(t, n, bin.data, o.zstd_level, o.chunk_bytes);
        printf("%-12s %14llu %14llu %8.3f   (two frames per chunk; not used by the format)\n", "planes apart",
               (unsigned long long)raw, (unsigned long long)apart, (double)raw / apart);
        char path[4096];
        snprintf(path, sizeof path, "%s/bundle_bench_raw.flock", dir);
        o.zstd_level = 0;
        if (write_bundle(path, t, n, bin.data, &o) == 0) {
            double s1 = read_speed(path, 1, reps, &raw, &stored);
            double s2 = read_speed(path, 2, reps, &raw, &stored);
            printf("%-12s %14llu %14llu %8.3f %12.2f %12.2f   (checksum + copy)\n", "uncompressed",
                   (unsigned long long)raw, (unsigned long long)stored, (double)raw / stored, s1, s2);
            if (!keep)
                remove(path);
        }
    }
    flock_unmap_file(&bin);
    free(t);
    return rc;
}
