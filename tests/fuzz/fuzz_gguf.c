/* libFuzzer target for the GGUF reader and the dequantization kernels.
 * Parses the input as a GGUF image; on success touches every getter and
 * dequantizes every tensor. The same bytes also go to flock_dequantize with a
 * type taken from the first byte, so the kernels see arbitrary blocks. */
#include "flock/formats.h"

#include <stdlib.h>
#include <string.h>

static volatile uint8_t sink;

static void exercise(const flock_gguf *g)
{
    for (uint64_t i = 0; i < flock_gguf_kv_count(g); i++) {
        const char *key = flock_gguf_kv_key(g, i), *s;
        int64_t iv;
        double f;
        bool b;
        size_t len;
        flock_gguf_type et;
        uint64_t n;
        const void *d;
        if (flock_gguf_find_key(g, key) != (int64_t)i)
            abort(); /* keys are unique, so lookup must find this entry */
        flock_gguf_get_int(g, key, &iv, NULL);
        flock_gguf_get_float(g, key, &f, NULL);
        flock_gguf_get_bool(g, key, &b, NULL);
        if (flock_gguf_get_str(g, key, &s, &len, NULL) == FLOCK_OK && len)
            sink = (uint8_t)(s[0] ^ s[len - 1]);
        if (flock_gguf_get_arr(g, key, &et, &n, &d, NULL) != FLOCK_OK)
            continue;
        if (et == FLOCK_GGUF_STRING) {
            for (uint64_t k = 0; k < n; k++)
                if (flock_gguf_get_arr_str(g, key, k, &s, &len, NULL) == FLOCK_OK && len)
                    sink = (uint8_t)(s[0] ^ s[len - 1]);
        } else if (d && n) {
            sink = ((const uint8_t *)d)[0];
        }
    }
    for (uint64_t i = 0; i < flock_gguf_tensor_count(g); i++) {
        flock_gguf_tensor t;
        flock_gguf_tensor_info(g, i, &t);
        if (flock_gguf_find_tensor(g, t.name) != (int64_t)i)
            abort();
        uint64_t n = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
        float *out = malloc((size_t)n * sizeof(float) + 1);
        if (!out)
            continue;
        flock_gguf_tensor_to_f32(g, i, out, n, NULL);
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flock_gguf *g = NULL;
    if (flock_gguf_open_memory(data, size, &g, NULL) == FLOCK_OK) {
        exercise(g);
        flock_gguf_free(g);
    }
    if (size > 1) {
        uint32_t type = data[0] % FLOCK_GGML_TYPE_COUNT;
        uint32_t be = flock_ggml_block_elems(type), bb = flock_ggml_block_bytes(type);
        if (be && bb) {
            uint64_t n = (uint64_t)((size - 1) / bb) * be;
            float *out = malloc((size_t)n * sizeof(float) + 1);
            if (out) {
                flock_dequantize(type, data + 1, size - 1, out, n, NULL);
                free(out);
            }
        }
    }
    return 0;
}
