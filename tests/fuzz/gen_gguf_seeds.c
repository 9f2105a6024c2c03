/* gen_gguf_seeds DIR: writes a small seed corpus for fuzz_gguf (GGUF images
 * with every value type, nested arrays, tensors of every dequantizable type,
 * both versions and a few alignments). */
#include "flock/formats.h"
#include "gguf_writer.h"

#include <stdio.h>

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        if (f)
            fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

static void all_kv_types(gw_buf *kv)
{
    gw_kv_str(kv, "general.architecture", "llama");
    for (uint32_t t = 0; t <= 12; t++) {
        char key[32];
        snprintf(key, sizeof key, "scalar.%u", t);
        if (t == 8 || t == 9)
            continue;
        static const int bytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        gw_kv_scalar(kv, key, t, t == 7 ? 1 : 0x40 + t, bytes[t]);
    }
    gw_kv_arr(kv, "arr.u16", 2, 3);
    for (int i = 0; i < 3; i++)
        gw_le(kv, (uint64_t)i * 1000, 2);
    gw_kv_arr(kv, "arr.str", 8, 2);
    gw_str(kv, "<s>");
    gw_str(kv, "</s>");
    gw_kv_arr(kv, "arr.nested", 9, 1);
    gw_u32(kv, 8);
    gw_u64(kv, 1);
    gw_str(kv, "x");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static uint8_t blob[8192];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 2654435761u >> 13);
    const uint32_t types[] = {FLOCK_GGML_F32, FLOCK_GGML_F16, FLOCK_GGML_BF16, FLOCK_GGML_Q8_0,
                              FLOCK_GGML_Q4_0, FLOCK_GGML_Q4_1, FLOCK_GGML_Q5_0, FLOCK_GGML_Q5_1,
                              FLOCK_GGML_Q4_K, FLOCK_GGML_Q5_K, FLOCK_GGML_Q6_K};
    int rc = 0;
    for (uint32_t version = 2; version <= 3; version++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            gw_buf kv = {0};
            all_kv_types(&kv);
            uint64_t align = k % 3 == 0 ? 32 : k % 3 == 1 ? 64 : 8;
            if (align != 32)
                gw_kv_scalar(&kv, "general.alignment", 4, align, 4);
            uint32_t be = flock_ggml_block_elems(types[k]), bb = flock_ggml_block_bytes(types[k]);
            gw_tensor ts[2] = {
                {"a.weight", 2, {be == 1 ? 8 : be, 2, 1, 1}, types[k], blob, 2 * bb * (be == 1 ? 8 : 1)},
                {"b.weight", 1, {4, 1, 1, 1}, FLOCK_GGML_F32, blob + 4096, 16},
            };
            size_t size;
            uint8_t *img = gw_build(version, &kv, ts, 2, align, &size);
            char name[64];
            snprintf(name, sizeof name, "v%u_%s.gguf", version, flock_ggml_type_name(types[k]));
            rc |= write_file(argv[1], name, img, size);
            free(img);
            free(kv.p);
        }
    }
    size_t size;
    uint8_t *img = gw_build(3, NULL, NULL, 0, 32, &size);
    rc |= write_file(argv[1], "empty.gguf", img, size);
    free(img);
    return rc;
}
