/* gguf_dump IN.gguf OUT.bin: writes every tensor of a GGUF file as f32 (as
 * flock dequantizes it) for check_gguf_dequant.py to compare with an
 * independent implementation.
 *
 * OUT layout, little-endian:
 *   "FLKDUMP1" | u64 n_tensors |
 *   n_tensors x { u32 name_len | name | u32 ggml_type | u32 n_dims | u64 ne[4] |
 *                 u64 count | u8 status | count x f32 (only when status is 0) }
 * status is the flock_status of the dequantization (nonzero: not dequantized,
 * e.g. an unsupported type). */
#include "flock/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int put_u32(FILE *f, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return put(f, b, 4);
}

static int put_u64(FILE *f, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return put(f, b, 8);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.gguf OUT.bin\n", argv[0]);
        return 2;
    }
    flock_gguf *g = NULL;
    flock_error err = {0};
    if (flock_gguf_open(argv[1], &g, &err) != FLOCK_OK) {
        fprintf(stderr, "gguf_dump: %s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f) {
        perror(argv[2]);
        flock_gguf_free(g);
        return 1;
    }
    uint64_t nt = flock_gguf_tensor_count(g), cap = 0;
    float *buf = NULL;
    int rc = put(f, "FLKDUMP1", 8) || put_u64(f, nt);
    for (uint64_t i = 0; i < nt && !rc; i++) {
        flock_gguf_tensor t;
        flock_gguf_tensor_info(g, i, &t);
        uint64_t n = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
        if (n > cap) {
            float *nb = realloc(buf, (size_t)n * sizeof(float));
            if (!nb) {
                fprintf(stderr, "gguf_dump: out of memory for tensor '%s'\n", t.name);
                rc = 1;
                break;
            }
            buf = nb;
            cap = n;
        }
        flock_status st = flock_gguf_tensor_to_f32(g, i, buf, n, &err);
        if (st != FLOCK_OK)
            fprintf(stderr, "gguf_dump: %s\n", err.msg);
        rc = put_u32(f, (uint32_t)strlen(t.name)) || put(f, t.name, strlen(t.name)) ||
             put_u32(f, t.type) || put_u32(f, t.n_dims);
        for (int d = 0; d < FLOCK_GGUF_MAX_DIMS && !rc; d++)
            rc = put_u64(f, t.ne[d]);
        uint8_t st8 = (uint8_t)st;
        rc = rc || put_u64(f, n) || put(f, &st8, 1);
        if (!rc && st == FLOCK_OK)
            rc = put(f, buf, (size_t)n * sizeof(float)); /* little-endian host */
    }
    if (fclose(f) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "gguf_dump: writing %s failed\n", argv[2]);
    free(buf);
    flock_gguf_free(g);
    return rc ? 1 : 0;
}
