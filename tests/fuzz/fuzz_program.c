/* libFuzzer target: the IR program section reader (flock_program_deserialize,
 * which also runs the verifier). Whatever it accepts must verify, print and
 * serialize back to the same bytes. */
#include "flock/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flock_program *p = NULL;
    flock_error e = {0};
    if (flock_program_deserialize(data, size, &p, &e) != FLOCK_OK)
        return 0;
    if (flock_program_verify(p, NULL) != FLOCK_OK)
        abort();
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        flock_program_print(p, f);
        fclose(f);
    }
    uint8_t *out = NULL;
    size_t n = 0;
    if (flock_program_serialize(p, &out, &n, NULL) != FLOCK_OK)
        abort();
    /* Minor-0 input is re-encoded exactly (a later minor may carry extra bytes). */
    if (size >= 8 && data[6] == 0 && data[7] == 0 && (n != size || memcmp(out, data, n) != 0))
        abort();
    free(out);
    flock_program_free(p);
    return 0;
}
