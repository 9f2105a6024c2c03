/* Writes a seed corpus for fuzz_program: the sample program in both FF
 * layouts, serialized.   gen_program_seeds DIR */
#include "ir_sample.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_program_seeds DIR\n");
        return 2;
    }
    for (int layout = 0; layout < FLOCK_FFN_LAYOUT_COUNT; layout++) {
        flock_program *p = build_llama((flock_ffn_layout)layout);
        uint8_t *buf = NULL;
        size_t n = 0;
        flock_error e = {0};
        if (flock_program_serialize(p, &buf, &n, &e)) {
            fprintf(stderr, "gen_program_seeds: %s\n", e.msg);
            return 1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/program_%s.bin", argv[1], layout ? "packed" : "separate");
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, n, f) != n || fclose(f)) {
            fprintf(stderr, "gen_program_seeds: cannot write %s\n", path);
            return 1;
        }
        free(buf);
        flock_program_free(p);
    }
    return 0;
}
