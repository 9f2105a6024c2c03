/* Writes a small seed corpus for fuzz_bundle: bundles with every section
 * kind, compressed (plain and byte planes) and uncompressed, small chunks.
 *   gen_bundle_seeds DIR */
#include "flock/formats.h"

#include <stdio.h>
#include <string.h>

static int write_seed(const char *dir, const char *name, int level, bool planes, uint32_t chunk, int nt)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    flock_bundle_writer_opts o = flock_bundle_writer_default_opts();
    o.zstd_level = level;
    o.byte_planes = planes;
    o.chunk_bytes = chunk;
    o.threads = 1;
    flock_error err = {0};
    flock_bundle_writer *w;
    flock_manifest *m;
    if (flock_manifest_create(&m) || flock_bundle_writer_create(path, &o, &w, &err))
        goto fail;
    const int64_t ia[2] = {576, 1536};
    const double fa[1] = {0.5};
    const char *sa[2] = {"<s>", "</s>"};
    flock_manifest_set_str(m, "arch", "llama");
    flock_manifest_set_int(m, "n_layer", 2);
    flock_manifest_set_float(m, "keep", 0.5);
    flock_manifest_set_int_arr(m, "dims", ia, 2);
    flock_manifest_set_float_arr(m, "f", fa, 1);
    flock_manifest_set_str_arr(m, "toks", sa, 2);
    if (flock_bundle_writer_set_manifest(w, m, &err))
        goto fail_w;
    uint16_t h[96];
    float f[24];
    uint8_t u[7];
    for (int i = 0; i < 96; i++)
        h[i] = flock_f32_to_f16((float)(i % 13) * 0.01f - 0.05f);
    for (int i = 0; i < 24; i++)
        f[i] = (float)i * 0.25f;
    for (int i = 0; i < 7; i++)
        u[i] = (uint8_t)(i * 37);
    const uint64_t sh[2] = {8, 12}, sf[1] = {24}, su[1] = {7};
    if ((nt > 0 && flock_bundle_writer_add_tensor(w, "w", FLOCK_DTYPE_F16, 2, sh, h, sizeof h, &err)) ||
        (nt > 1 && flock_bundle_writer_add_tensor(w, "b", FLOCK_DTYPE_F32, 1, sf, f, sizeof f, &err)) ||
        (nt > 2 && flock_bundle_writer_add_tensor(w, "u", FLOCK_DTYPE_U8, 1, su, u, sizeof u, &err)))
        goto fail_w;
    if (flock_bundle_writer_add_section(w, FLOCK_SECTION_TOKENIZER, "", "tokenizer tokenizer", 19, true, &err) ||
        flock_bundle_writer_add_section(w, FLOCK_SECTION_PROGRAM, "", "prog", 4, false, &err) ||
        flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, "cpu:x86-64-v3", "k", 1, true, &err) ||
        flock_bundle_writer_finish(w, &err))
        goto fail_w;
    flock_bundle_writer_free(w);
    flock_manifest_free(m);
    return 0;
fail_w:
    flock_bundle_writer_free(w);
fail:
    flock_manifest_free(m);
    fprintf(stderr, "gen_bundle_seeds: %s: %s\n", path, err.msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_bundle_seeds DIR\n");
        return 2;
    }
    int rc = write_seed(argv[1], "planes.flock", 3, true, 64, 3);
    rc |= write_seed(argv[1], "plain.flock", 1, false, 64, 3);
    rc |= write_seed(argv[1], "raw.flock", 0, false, 128, 3);
    rc |= write_seed(argv[1], "one.flock", 3, true, 1024, 1);
    rc |= write_seed(argv[1], "none.flock", 3, true, 64, 0);
    return rc;
}
