/* `flock inspect BUNDLE [--json]`: header, sections, manifest and tensors. */
#include "flock_cli.h"
#include "inspect_cuda.h"

#include "flock/formats.h"

#include <inttypes.h>
#include <string.h>

static const char *const kind_names[] = {
    [0] = "?",
    [FLOCK_SECTION_MANIFEST] = "manifest",
    [FLOCK_SECTION_TENSOR_TABLE] = "tensor_table",
    [FLOCK_SECTION_TENSOR_DATA] = "tensor_data",
    [FLOCK_SECTION_TOKENIZER] = "tokenizer",
    [FLOCK_SECTION_PROGRAM] = "program",
    [FLOCK_SECTION_KERNELS] = "kernels",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == FLOCK_SECTION_KIND_COUNT,
               "kind_names must name every flock_section_kind");

static const char *kind_name(flock_section_kind k)
{
    return (unsigned)k < FLOCK_SECTION_KIND_COUNT && k ? kind_names[k] : "unknown";
}

static const char *comp_name(flock_compression c)
{
    return c == FLOCK_COMPRESS_NONE ? "none" : c == FLOCK_COMPRESS_ZSTD ? "zstd" : "unknown";
}

/* raw / stored, 0 when nothing is stored. */
static double ratio(uint64_t raw, uint64_t stored)
{
    return stored ? (double)raw / (double)stored : 0.0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: flock inspect BUNDLE [--json]\n\n"
               "Prints a .flock bundle's header (format version, size), its sections (kind,\n"
               "name, offset, stored and raw bytes, compression ratio), the manifest and the\n"
               "tensor list (name, dtype, shape, raw and stored bytes, ratio), then each CUDA\n"
               "kernels section (cuda:sm_XY, cuda:compute_80) with its kernel table (name, kind,\n"
               "spec, keep ratio, launch block and grid, shared memory). Opening verifies the\n"
               "header, section table, manifest and tensor table checksums; tensor data is not\n"
               "read; a kernels section that does not parse is reported in its place.\n\n"
               "  --json     one JSON object instead of text\n"
               "  -h, --help this help\n");
}

/* ---- text --------------------------------------------------------------- */

static void print_manifest_value(const flock_manifest *m, size_t i, FILE *f, bool json)
{
    const char *key = flock_manifest_key(m, i);
    size_t n = 0;
    switch (flock_manifest_type(m, i)) {
    case FLOCK_MVAL_INT: {
        int64_t v = 0;
        flock_manifest_get_int(m, key, &v, NULL);
        fprintf(f, "%" PRId64, v);
        break;
    }
    case FLOCK_MVAL_FLOAT: {
        double v = 0;
        flock_manifest_get_float(m, key, &v, NULL);
        if (json)
            flock_cli_json_double(f, v);
        else
            fprintf(f, "%.9g", v);
        break;
    }
    case FLOCK_MVAL_STR: {
        const char *s = "";
        flock_manifest_get_str(m, key, &s, NULL);
        if (json) {
            flock_cli_json_str(f, s);
        } else {
            /* Long strings (chat templates) are cut for the terminal. */
            size_t len = strlen(s);
            flock_cli_json_strn(f, s, len > 120 ? 120 : len);
            if (len > 120)
                fprintf(f, "... (%zu bytes)", len);
        }
        break;
    }
    case FLOCK_MVAL_INT_ARR: {
        const int64_t *a = NULL;
        flock_manifest_get_int_arr(m, key, &a, &n, NULL);
        fputc('[', f);
        for (size_t j = 0; j < n; j++) {
            if (!json && j == 16) {
                fprintf(f, ", ... (%zu)", n);
                break;
            }
            fprintf(f, "%s%" PRId64, j ? ", " : "", a[j]);
        }
        fputc(']', f);
        break;
    }
    case FLOCK_MVAL_FLOAT_ARR: {
        const double *a = NULL;
        flock_manifest_get_float_arr(m, key, &a, &n, NULL);
        fputc('[', f);
        for (size_t j = 0; j < n; j++) {
            if (!json && j == 16) {
                fprintf(f, ", ... (%zu)", n);
                break;
            }
            fputs(j ? ", " : "", f);
            flock_cli_json_double(f, a[j]);
        }
        fputc(']', f);
        break;
    }
    case FLOCK_MVAL_STR_ARR: {
        const char *const *a = NULL;
        flock_manifest_get_str_arr(m, key, &a, &n, NULL);
        fputc('[', f);
        for (size_t j = 0; j < n; j++) {
            if (!json && j == 16) {
                fprintf(f, ", ... (%zu)", n);
                break;
            }
            fputs(j ? ", " : "", f);
            flock_cli_json_str(f, a[j]);
        }
        fputc(']', f);
        break;
    }
    default:
        fputs("null", f);
        break;
    }
}

static void shape_str(const flock_bundle_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    k += (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

static void print_text(const char *path, const flock_bundle *b, FILE *f)
{
    uint32_t major, minor;
    flock_bundle_version(b, &major, &minor);
    fprintf(f, "bundle  %s\nformat  %u.%u\nsize    %" PRIu64 " bytes\n\n", path, major, minor,
            flock_bundle_file_size(b));
    size_t ns = flock_bundle_section_count(b);
    fprintf(f, "sections (%zu)\n  %-3s %-13s %-16s %12s %14s %14s %7s %-5s\n", ns, "#", "kind", "name",
            "offset", "stored", "raw", "ratio", "comp");
    for (size_t i = 0; i < ns; i++) {
        flock_section_info s;
        flock_bundle_section_info(b, i, &s);
        fprintf(f, "  %-3zu %-13s %-16s %12" PRIu64 " %14" PRIu64 " %14" PRIu64 " %7.3f %-5s\n", i,
                kind_name(s.kind), s.name[0] ? s.name : "-", s.offset, s.stored_size, s.raw_size,
                ratio(s.raw_size, s.stored_size), comp_name(s.compression));
    }
    const flock_manifest *m = flock_bundle_manifest(b);
    size_t nm = flock_manifest_count(m);
    fprintf(f, "\nmanifest (%zu keys)\n", nm);
    for (size_t i = 0; i < nm; i++) {
        fprintf(f, "  %s = ", flock_manifest_key(m, i));
        print_manifest_value(m, i, f, false);
        fputc('\n', f);
    }
    size_t nt = flock_bundle_tensor_count(b);
    uint64_t raw = 0, stored = 0;
    fprintf(f, "\ntensors (%zu)\n  %-40s %-5s %-18s %14s %14s %7s\n", nt, "name", "dtype", "shape", "raw",
            "stored", "ratio");
    for (size_t i = 0; i < nt; i++) {
        flock_bundle_tensor t;
        flock_bundle_tensor_info(b, i, &t);
        char shape[128];
        shape_str(&t, shape, sizeof shape);
        fprintf(f, "  %-40s %-5s %-18s %14" PRIu64 " %14" PRIu64 " %7.3f\n", t.name, flock_dtype_name(t.dtype),
                shape, t.nbytes, t.stored_bytes, ratio(t.nbytes, t.stored_bytes));
        raw += t.nbytes;
        stored += t.stored_bytes;
    }
    fprintf(f, "  total: %" PRIu64 " raw bytes, %" PRIu64 " stored, ratio %.3f\n", raw, stored,
            ratio(raw, stored));
    flock_inspect_cuda_text(b, f);
}

/* ---- JSON --------------------------------------------------------------- */

static void print_json(const char *path, const flock_bundle *b, FILE *f)
{
    uint32_t major, minor;
    flock_bundle_version(b, &major, &minor);
    fputs("{\"file\": ", f);
    flock_cli_json_str(f, path);
    fprintf(f, ", \"format\": {\"major\": %u, \"minor\": %u}, \"file_size\": %" PRIu64 ",\n \"sections\": [",
            major, minor, flock_bundle_file_size(b));
    size_t ns = flock_bundle_section_count(b);
    for (size_t i = 0; i < ns; i++) {
        flock_section_info s;
        flock_bundle_section_info(b, i, &s);
        fprintf(f, "%s\n  {\"kind\": \"%s\", \"kind_id\": %u, \"name\": ", i ? "," : "", kind_name(s.kind),
                (unsigned)s.kind);
        flock_cli_json_str(f, s.name);
        fprintf(f, ", \"offset\": %" PRIu64 ", \"stored_size\": %" PRIu64 ", \"raw_size\": %" PRIu64
                   ", \"alignment\": %u, \"compression\": \"%s\", \"checksum\": \"%016" PRIx64 "\"}",
                s.offset, s.stored_size, s.raw_size, s.alignment, comp_name(s.compression), s.checksum);
    }
    fputs("],\n \"manifest\": {", f);
    const flock_manifest *m = flock_bundle_manifest(b);
    size_t nm = flock_manifest_count(m);
    for (size_t i = 0; i < nm; i++) {
        fputs(i ? ",\n  " : "\n  ", f);
        flock_cli_json_str(f, flock_manifest_key(m, i));
        fputs(": ", f);
        print_manifest_value(m, i, f, true);
    }
    fputs("},\n \"tensors\": [", f);
    size_t nt = flock_bundle_tensor_count(b);
    for (size_t i = 0; i < nt; i++) {
        flock_bundle_tensor t;
        flock_bundle_tensor_info(b, i, &t);
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
        flock_cli_json_str(f, t.name);
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": [", flock_dtype_name(t.dtype));
        for (uint32_t d = 0; d < t.n_dims; d++)
            fprintf(f, "%s%" PRIu64, d ? ", " : "", t.shape[d]);
        fprintf(f, "], \"nbytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64 ", \"ratio\": ", t.nbytes,
                t.stored_bytes);
        flock_cli_json_double(f, ratio(t.nbytes, t.stored_bytes));
        fputc('}', f);
    }
    fputs("],\n \"cuda_kernels\": ", f);
    flock_inspect_cuda_json(b, f);
    fputs("}\n", f);
}

int flock_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flock_cli_is_help(a)) {
            usage(stdout);
            return FLOCK_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (a[0] == '-' && a[1]) {
            return flock_cli_usage_error("inspect", "unknown option '%s'", a);
        } else if (!path) {
            path = a;
        } else {
            return flock_cli_usage_error("inspect", "more than one bundle given ('%s')", a);
        }
    }
    if (!path)
        return flock_cli_usage_error("inspect", "no bundle given");
    flock_bundle *b;
    flock_error err = {0};
    if (flock_bundle_open(path, &b, &err) != FLOCK_OK) {
        fprintf(stderr, "flock inspect: %s (%s)\n", err.msg, flock_status_str(err.status));
        return FLOCK_EXIT_FAIL;
    }
    if (json)
        print_json(path, b, stdout);
    else
        print_text(path, b, stdout);
    flock_bundle_close(b);
    return fflush(stdout) == 0 ? FLOCK_EXIT_OK : FLOCK_EXIT_FAIL;
}
