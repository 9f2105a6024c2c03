/* Prints what flock reads from a .safetensors file or a Hugging Face folder,
 * for tests/check_safetensors.py to compare with the reference library:
 *
 *   st_dump FILE.safetensors | st_dump --hf DIR
 *
 * One line per tensor: "name dtype d0,d1,... nbytes v0 v1 ...", each value as
 * the hex bits of its f32 conversion. On error: "error <status>: <message>"
 * on stdout and exit status 1. */
#include "flock/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dump(const flock_st_tensor *t)
{
    uint64_t ne = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        ne *= t->shape[d];
    float *v = malloc((ne ? ne : 1) * sizeof *v);
    if (!v || flock_convert_to_f32(t->dtype, t->data, v, ne) != FLOCK_OK) {
        free(v);
        printf("error: cannot convert '%s'\n", t->name);
        return 1;
    }
    printf("%s %s ", t->name, flock_dtype_name(t->dtype));
    for (uint32_t d = 0; d < t->n_dims; d++)
        printf("%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
    printf("%s %llu", t->n_dims ? "" : "-", (unsigned long long)t->nbytes);
    for (uint64_t i = 0; i < ne; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        printf(" %08x", bits);
    }
    printf("\n");
    free(v);
    return 0;
}

int main(int argc, char **argv)
{
    flock_error err = {0};
    int rc = 0;
    if (argc == 3 && strcmp(argv[1], "--hf") == 0) {
        flock_hf_model *m = NULL;
        if (flock_hf_open(argv[2], &m, &err) != FLOCK_OK) {
            printf("error %s: %s\n", flock_status_str(err.status), err.msg);
            return 1;
        }
        for (uint64_t i = 0; i < flock_hf_tensor_count(m) && rc == 0; i++) {
            flock_st_tensor t;
            rc = flock_hf_tensor(m, i, &t) == FLOCK_OK ? dump(&t) : 1;
        }
        flock_hf_free(m);
    } else if (argc == 2) {
        flock_safetensors *st = NULL;
        if (flock_safetensors_open(argv[1], &st, &err) != FLOCK_OK) {
            printf("error %s: %s\n", flock_status_str(err.status), err.msg);
            return 1;
        }
        for (uint64_t i = 0; i < flock_safetensors_count(st) && rc == 0; i++) {
            flock_st_tensor t;
            rc = flock_safetensors_tensor(st, i, &t) == FLOCK_OK ? dump(&t) : 1;
        }
        flock_safetensors_free(st);
    } else {
        fprintf(stderr, "usage: %s FILE.safetensors | %s --hf DIR\n", argv[0], argv[0]);
        return 2;
    }
    return rc;
}
