/* Test helper for check_compiler.py: writes the raw bytes of the named
 * tensors of a bundle to DIR/NAME.bin (all tensors with --all).
 *   bundle_dump BUNDLE DIR (--all | NAME...) */
#include "flock/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dump(const flock_bundle *b, size_t i, const char *dir)
{
    flock_bundle_tensor t;
    flock_error e = {0};
    if (flock_bundle_tensor_info(b, i, &t))
        return 1;
    void *p = malloc(t.nbytes ? t.nbytes : 1);
    if (!p || flock_bundle_tensor_read(b, i, p, t.nbytes, 0, &e)) {
        fprintf(stderr, "bundle_dump: %s: %s\n", t.name, e.msg);
        free(p);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, t.name);
    FILE *f = fopen(path, "wb");
    int rc = !f || fwrite(p, 1, t.nbytes, f) != t.nbytes;
    if (f)
        rc |= fclose(f) != 0;
    free(p);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bundle_dump BUNDLE DIR (--all | NAME...)\n");
        return 2;
    }
    flock_bundle *b = NULL;
    flock_error e = {0};
    if (flock_bundle_open(argv[1], &b, &e)) {
        fprintf(stderr, "bundle_dump: %s: %s\n", argv[1], e.msg);
        return 1;
    }
    int rc = 0;
    if (!strcmp(argv[3], "--all")) {
        for (size_t i = 0; i < flock_bundle_tensor_count(b); i++)
            rc |= dump(b, i, argv[2]);
    } else {
        for (int a = 3; a < argc; a++) {
            int64_t i = flock_bundle_find_tensor(b, argv[a]);
            if (i < 0) {
                fprintf(stderr, "bundle_dump: no tensor %s\n", argv[a]);
                rc = 1;
                continue;
            }
            rc |= dump(b, (size_t)i, argv[2]);
        }
    }
    flock_bundle_close(b);
    return rc;
}
