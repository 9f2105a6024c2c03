/* libFuzzer target: flock_safetensors_open_memory on arbitrary bytes.
 * An accepted image must describe tensors that lie inside the input; every
 * tensor's bytes are touched so that ASan sees any pointer outside it. */
#include "flock/formats.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flock_safetensors *st = NULL;
    flock_error err;
    if (flock_safetensors_open_memory(data, size, &st, &err) != FLOCK_OK) {
        if (err.msg[0] == '\0' || st != NULL)
            abort();
        return 0;
    }
    for (uint64_t i = 0; i < flock_safetensors_count(st); i++) {
        flock_st_tensor t;
        if (flock_safetensors_tensor(st, i, &t) != FLOCK_OK)
            abort();
        const uint8_t *p = t.data;
        if (p < data || t.nbytes > size || (size_t)(p - data) > size - t.nbytes)
            abort();
        size_t es = flock_dtype_size(t.dtype);
        if (es == 0 || t.nbytes % es)
            abort();
        /* Convert a bounded prefix: reads the tensor's first and last bytes too. */
        float buf[64];
        size_t n = (size_t)(t.nbytes / es);
        if (flock_convert_to_f32(t.dtype, p, buf, n < 64 ? n : 64) != FLOCK_OK)
            abort();
        volatile uint8_t sink = t.nbytes ? p[t.nbytes - 1] : 0;
        (void)sink;
    }
    flock_safetensors_free(st);
    return 0;
}
