/* A program outside the flock tree, built against an installed flock through
 * pkg-config or find_package(flock) (tests/check_install.py): opens BUNDLE,
 * generates N tokens of PROMPT greedily at keep K and prints the text, as
 * `flock run BUNDLE -p PROMPT -n N --temp 0 --keep K` would. Only the
 * installed headers and libflock are used. */
#include <flock/flock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool print_piece(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: consumer BUNDLE PROMPT N KEEP\n");
        return 2;
    }
    if (strcmp(flock_version(), FLOCK_VERSION_STRING) != 0 || flock_version_number() != FLOCK_VERSION_NUMBER) {
        fprintf(stderr, "consumer: headers %s, library %s\n", FLOCK_VERSION_STRING, flock_version());
        return 1;
    }
    flock_error err = {0};
    flock_model *m = NULL;
    if (flock_model_open(argv[1], NULL, &m, &err) != FLOCK_OK) {
        fprintf(stderr, "consumer: %s: %s\n", flock_status_str(err.status), err.msg);
        return 1;
    }
    flock_session_opts so = flock_session_default_opts();
    so.keep = atof(argv[4]);
    so.threads = 2;
    so.device = FLOCK_DEVICE_CPU;
    flock_session *s = NULL;
    flock_sampler_opts sp = flock_sampler_default_opts();
    sp.temperature = 0;
    flock_sampler *smp = NULL;
    int rc = 1;
    int32_t *ids = NULL;
    if (flock_session_create(m, &so, &s, &err) != FLOCK_OK ||
        flock_sampler_create(&sp, flock_model_n_vocab(m), &smp, &err) != FLOCK_OK) {
        fprintf(stderr, "consumer: %s\n", err.msg);
        goto done;
    }
    size_t n = 0;
    flock_status st = flock_tokenize(m, argv[2], strlen(argv[2]), true, NULL, 0, &n, &err);
    if (st != FLOCK_OK && st != FLOCK_E_RANGE) {
        fprintf(stderr, "consumer: %s\n", err.msg);
        goto done;
    }
    ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids || flock_tokenize(m, argv[2], strlen(argv[2]), true, ids, n, &n, &err) != FLOCK_OK) {
        fprintf(stderr, "consumer: tokenize failed\n");
        goto done;
    }
    flock_gen_stats stats;
    if (flock_generate(s, smp, ids, n, (size_t)atoi(argv[3]), NULL, 0, print_piece, NULL, &stats) != FLOCK_OK) {
        fprintf(stderr, "consumer: %s\n", flock_session_error(s));
        goto done;
    }
    fflush(stdout);
    rc = 0;
done:
    free(ids);
    flock_sampler_free(smp);
    flock_session_free(s);
    flock_model_free(m);
    return rc;
}
