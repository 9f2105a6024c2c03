/* libFuzzer target: flock_tokdata_deserialize on arbitrary bytes. Accepted
 * data must re-serialize to the same bytes (the encoding is canonical), and a
 * tokenizer built from it must encode and decode without fault. */
#include "flock/formats.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flock_tokenizer_data *d = NULL;
    flock_error err;
    err.msg[0] = '\0';
    if (flock_tokdata_deserialize(data, size, &d, &err) != FLOCK_OK) {
        if (err.msg[0] == '\0' || d != NULL)
            abort();
        return 0;
    }
    uint8_t *again = NULL;
    size_t n = 0;
    if (flock_tokdata_serialize(d, &again, &n, &err) != FLOCK_OK || n != size || memcmp(again, data, n))
        abort();
    free(again);
    flock_tokenizer *t = NULL;
    if (flock_tokenizer_create(d, &t, &err) == FLOCK_OK) {
        /* The input's own bytes as text: arbitrary, often invalid UTF-8. */
        size_t len = size < 512 ? size : 512;
        for (int flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            size_t n_ids = 0;
            if (flock_tokenizer_encode(t, (const char *)data, len, flags & 1, flags & 2, &ids, &n_ids, &err))
                abort();
            char *text = NULL;
            if (flock_tokenizer_decode_all(t, ids, n_ids, flags & 1, &text, &err))
                abort();
            free(text);
            free(ids);
        }
        flock_tokenizer_free(t);
    }
    flock_tokdata_free(d);
    return 0;
}
