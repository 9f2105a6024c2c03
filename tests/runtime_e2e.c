/* The stories260K end-to-end tests of test_runtime (see runtime_e2e.h). */
#include "test_util.h"

#include "flock/flock.h"
#include "runtime_e2e.h"

#include <sys/wait.h>

/* Allocation counter: test_runtime links with --wrap for the allocation
 * functions, so every call from the runtime's objects comes here. */
static int alloc_counting;
static long alloc_calls;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

void *__wrap_malloc(size_t n)
{
    alloc_calls += alloc_counting;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    alloc_calls += alloc_counting;
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    alloc_calls += alloc_counting;
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    alloc_calls += alloc_counting;
    return __real_aligned_alloc(a, n);
}
/* ---- end to end on stories260K (public API over a bundle flockc compiles) ---- */

static char e2e_dir[256];

/* Compiles stories260K with flockc into e2e_dir; returns the bundle path. */
static const char *e2e_bundle(const char *name, const char *flags, char *buf, size_t n)
{
    char gguf[512], cmd[2048];
    flock_test_data_path("models/stories260K.gguf", gguf, sizeof gguf);
    const char *bdir = flock_test_require_env("FLOCK_BUILD_DIR", "locates flockc");
    snprintf(buf, n, "%s/%s", e2e_dir, name);
    snprintf(cmd, sizeof cmd, "%s/tools/flockc %s -o %s %s --quiet", bdir, gguf, buf, flags);
    if (system(cmd) != 0)
        fail_msg("flockc failed: %s", cmd);
    return buf;
}

/* "Once upon a time", greedy: the 40 tokens the float64 numpy reference
 * (tests/ref_llama.py --greedy 1,403,407,261,378 40) generates. */
static const int32_t e2e_prompt[] = {1, 403, 407, 261, 378};
static const int32_t e2e_expected[40] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396,
                                         267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385,
                                         328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426};

static void greedy_tokens(flock_session *s, flock_sampler *smp, int32_t *out, int n)
{
    assert_int_equal(flock_session_prefill(s, e2e_prompt, 5), FLOCK_OK);
    for (int i = 0; i < n; i++) {
        out[i] = flock_sampler_sample(smp, flock_session_last_logits(s), NULL, 0);
        if (i + 1 < n)
            assert_int_equal(flock_session_decode(s, &out[i], 1), FLOCK_OK);
    }
}

typedef struct text_buf {
    char s[4096];
    size_t n;
} text_buf;

static bool collect(void *user, const char *text, size_t len)
{
    text_buf *b = user;
    assert_true(b->n + len < sizeof b->s);
    memcpy(b->s + b->n, text, len);
    b->n += len;
    b->s[b->n] = '\0';
    return true;
}

void test_e2e_stories_greedy(void **state)
{
    (void)state;
    char path[512];
    e2e_bundle("s32.flock", "--dtype f32", path, sizeof path);
    flock_model *m;
    flock_error err = {0};
    if (flock_model_open(path, NULL, &m, &err) != FLOCK_OK)
        fail_msg("open: %s", err.msg);
    assert_int_equal(flock_model_n_vocab(m), 512);
    int32_t ids[16];
    size_t n = 0;
    assert_int_equal(flock_tokenize(m, "Once upon a time", 16, true, ids, 16, &n, &err), FLOCK_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(ids, e2e_prompt, sizeof e2e_prompt);
    flock_sampler_opts so = flock_sampler_default_opts();
    so.temperature = 0;
    flock_sampler *smp;
    assert_int_equal(flock_sampler_create(&so, 512, &smp, NULL), FLOCK_OK);
    for (int threads = 1; threads <= 2; threads++) {
        flock_session_opts o = flock_session_default_opts();
        o.threads = threads;
        o.n_ctx = 64;
        flock_session *s;
        assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
        int32_t got[40];
        greedy_tokens(s, smp, got, 40);
        assert_memory_equal(got, e2e_expected, sizeof got);
        /* reset gives the same again */
        flock_session_reset(s);
        greedy_tokens(s, smp, got, 40);
        assert_memory_equal(got, e2e_expected, sizeof got);
        /* flock_generate streams the text of the same tokens */
        flock_session_reset(s);
        text_buf tb = {.n = 0};
        flock_gen_stats gs;
        assert_int_equal(flock_generate(s, smp, e2e_prompt, 5, 40, NULL, 0, collect, &tb, &gs), FLOCK_OK);
        assert_int_equal(gs.generated_tokens, 40);
        char expect[4096] = "";
        size_t en = 0;
        for (int i = 0; i < 40; i++) {
            size_t len;
            const char *p = flock_token_piece(m, e2e_expected[i], &len);
            memcpy(expect + en, p, len);
            en += len;
        }
        expect[en] = '\0';
        assert_string_equal(tb.s, expect);
        char *whole = NULL;
        assert_int_equal(flock_detokenize(m, e2e_expected, 40, &whole, &err), FLOCK_OK);
        assert_string_equal(whole + (whole[0] == ' '), expect + (expect[0] == ' '));
        free(whole);
        /* a stop string ends the text before it */
        flock_session_reset(s);
        tb.n = 0;
        tb.s[0] = '\0';
        const char *stops[] = {"Lily"};
        assert_int_equal(flock_generate(s, smp, e2e_prompt, 5, 40, stops, 1, collect, &tb, &gs), FLOCK_OK);
        const char *at = strstr(expect, "Lily");
        assert_non_null(at);
        assert_true(gs.stopped_string);
        assert_int_equal(tb.n, (size_t)(at - expect));
        flock_session_free(s);
    }
    flock_sampler_free(smp);
    flock_model_free(m);
}

/* The token loop (sample, decode with the experts, stream the text)
 * allocates nothing, with a sampler that sorts the whole vocabulary. */
void test_e2e_stories_no_alloc_in_token_loop(void **state)
{
    (void)state;
    char path[512];
    e2e_bundle("s32.flock", "--dtype f32", path, sizeof path);
    flock_model *m;
    flock_error err = {0};
    assert_int_equal(flock_model_open(path, NULL, &m, &err), FLOCK_OK);
    flock_session_opts o = flock_session_default_opts();
    o.keep = 0.5;
    o.threads = 2;
    o.n_ctx = 64;
    flock_session *s;
    assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    flock_sampler_opts so = {.temperature = 0.9f, .top_k = 0, .top_p = 0.9f, .min_p = 0.02f, .repeat_penalty = 1.1f,
                             .repeat_last_n = 16, .seed = 5};
    flock_sampler *smp;
    assert_int_equal(flock_sampler_create(&so, 512, &smp, NULL), FLOCK_OK);
    assert_int_equal(flock_session_prefill(s, e2e_prompt, 5), FLOCK_OK);
    int32_t hist[64];
    memcpy(hist, e2e_prompt, sizeof e2e_prompt);
    alloc_calls = 0;
    alloc_counting = 1;
    for (int i = 0; i < 30; i++) {
        int32_t tok = flock_sampler_sample(smp, flock_session_last_logits(s), hist, (size_t)(5 + i));
        size_t len;
        flock_token_piece(m, tok, &len);
        hist[5 + i] = tok;
        if (flock_session_decode(s, &tok, 1) != FLOCK_OK)
            break;
    }
    alloc_counting = 0;
    assert_int_equal(alloc_calls, 0);
    /* flock_generate as a whole (prefill, selection, the loop, stop strings) */
    flock_session_reset(s);
    const char *stops[] = {"zebra"};
    alloc_counting = 1;
    assert_int_equal(flock_generate(s, smp, e2e_prompt, 5, 30, stops, 1, NULL, NULL, NULL), FLOCK_OK);
    alloc_counting = 0;
    assert_int_equal(alloc_calls, 0);
    /* the counter does see the runtime's allocations */
    flock_sampler *other;
    alloc_counting = 1;
    assert_int_equal(flock_sampler_create(&so, 512, &other, NULL), FLOCK_OK);
    alloc_counting = 0;
    assert_true(alloc_calls > 0);
    flock_sampler_free(other);
    flock_sampler_free(smp);
    flock_session_free(s);
    flock_model_free(m);
}

void test_e2e_stories_errors_and_keep(void **state)
{
    (void)state;
    char path[512];
    e2e_bundle("s32.flock", "--dtype f32", path, sizeof path);
    flock_model *m;
    flock_error err = {0};
    assert_int_equal(flock_model_open(path, NULL, &m, &err), FLOCK_OK);
    flock_session_opts o = flock_session_default_opts();
    o.n_ctx = 8;
    o.keep = 0.5;
    flock_session *s;
    assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    int32_t nine[9] = {1, 403, 407, 261, 378, 432, 383, 286, 261};
    assert_int_equal(flock_session_decode(s, nine, 1), FLOCK_E_INVALID_ARG); /* no experts yet */
    assert_int_equal(flock_session_prefill(s, nine, 9), FLOCK_E_RANGE);
    assert_non_null(strstr(flock_session_error(s), "9"));
    assert_non_null(strstr(flock_session_error(s), "8"));
    assert_int_equal(flock_session_prefill(s, nine, 6), FLOCK_OK);
    assert_int_equal(flock_session_n_ffn(s), 5);
    for (size_t i = 0; i < 5; i++) {
        int32_t layer;
        const int32_t *idx;
        size_t k;
        assert_int_equal(flock_session_experts(s, i, &layer, &idx, &k), FLOCK_OK);
        assert_int_equal(layer, (int32_t)i);
        assert_int_equal(k, 86); /* floor(0.5 * 172) */
        for (size_t j = 1; j < k; j++)
            assert_true(idx[j] > idx[j - 1]);
    }
    assert_int_equal(flock_session_decode(s, nine + 6, 2), FLOCK_OK);
    assert_int_equal(flock_session_decode(s, nine + 8, 1), FLOCK_E_RANGE); /* the context is full */
    /* fewer bytes per token than at keep 1 */
    flock_session *full;
    o.keep = 1.0;
    assert_int_equal(flock_session_create(m, &o, &full, &err), FLOCK_OK);
    assert_true(flock_session_decode_bytes(s) < flock_session_decode_bytes(full));
    flock_session_free(full);
    /* a keep ratio the bundle was not compiled for */
    o.keep = 0.3;
    assert_int_equal(flock_session_create(m, &o, &full, &err), FLOCK_E_INVALID_ARG);
    assert_non_null(strstr(err.msg, "0.3"));
    /* magnitude mode reads the bundle's ranking */
    o.keep = 0.25;
    o.select = FLOCK_SELECT_MAGNITUDE;
    assert_int_equal(flock_session_create(m, &o, &full, &err), FLOCK_OK);
    assert_int_equal(flock_session_prefill(full, nine, 3), FLOCK_OK);
    flock_session_free(full);
    flock_session_free(s);
    flock_model_free(m);
}

/* A zstd-compressed f16 bundle: decompressed at open; close to f32. */
void test_e2e_stories_f16_compressed(void **state)
{
    (void)state;
    char p32[512], p16[512];
    e2e_bundle("s32.flock", "--dtype f32", p32, sizeof p32);
    e2e_bundle("s16z.flock", "--dtype f16 --level 3", p16, sizeof p16);
    flock_model *m32, *m16;
    flock_error err = {0};
    assert_int_equal(flock_model_open(p32, NULL, &m32, &err), FLOCK_OK);
    if (flock_model_open(p16, NULL, &m16, &err) != FLOCK_OK)
        fail_msg("open f16: %s", err.msg);
    flock_session *a, *b;
    assert_int_equal(flock_session_create(m32, NULL, &a, &err), FLOCK_OK);
    assert_int_equal(flock_session_create(m16, NULL, &b, &err), FLOCK_OK);
    assert_int_equal(flock_session_prefill(a, e2e_prompt, 5), FLOCK_OK);
    assert_int_equal(flock_session_prefill(b, e2e_prompt, 5), FLOCK_OK);
    double ne = flock_test_nrm_err(flock_session_last_logits(b), flock_session_last_logits(a), 512);
    assert_true(ne < 1e-2 && ne > 0);
    flock_session_free(a);
    flock_session_free(b);
    flock_model_free(m32);
    flock_model_free(m16);
}

int flock_e2e_setup(void **state)
{
    (void)state;
    snprintf(e2e_dir, sizeof e2e_dir, "/tmp/flock_test_runtime_XXXXXX");
    return mkdtemp(e2e_dir) ? 0 : -1;
}

int flock_e2e_teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e2e_dir);
    return system(cmd) == 0 ? 0 : -1;
}


/* The CLI over the same bundle: `flock logits` equals the API's logits;
 * `flock experts` prints the API's selection; `flock run --json` the greedy text. */
void test_e2e_stories_cli(void **state)
{
    (void)state;
    char path[512], cmd[2048], out[600];
    e2e_bundle("s32.flock", "--dtype f32", path, sizeof path);
    const char *bdir = flock_test_require_env("FLOCK_BUILD_DIR", "locates flock");
    snprintf(out, sizeof out, "%s/logits.bin", e2e_dir);
    snprintf(cmd, sizeof cmd,
             "%s/tools/flock logits %s --ids 1,403,407,261,378 --keep 0.5 --prompt-len 4 --threads 2 --out %s", bdir,
             path, out);
    assert_int_equal(system(cmd), 0);
    flock_model *m;
    flock_error err = {0};
    assert_int_equal(flock_model_open(path, NULL, &m, &err), FLOCK_OK);
    flock_session_opts o = flock_session_default_opts();
    o.all_logits = true;
    o.keep = 0.5;
    o.threads = 1; /* the CLI runs 2 threads: the results must be bitwise the same */
    flock_session *s;
    assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    assert_int_equal(flock_session_prefill(s, e2e_prompt, 4), FLOCK_OK);
    assert_int_equal(flock_session_decode(s, e2e_prompt + 4, 1), FLOCK_OK);
    size_t n_pos;
    const float *l = flock_session_logits(s, &n_pos);
    assert_int_equal(n_pos, 5);
    float *file = malloc(5 * 512 * sizeof(float));
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    assert_int_equal(fread(file, sizeof(float), 5 * 512 + 1, f), 5 * 512);
    fclose(f);
    assert_memory_equal(file, l, 5 * 512 * sizeof(float));
    free(file);
    /* experts: the JSON the API's selection gives */
    snprintf(out, sizeof out, "%s/experts.json", e2e_dir);
    snprintf(cmd, sizeof cmd, "%s/tools/flock experts %s --ids 1,403,407,261 --keep 0.5 > %s", bdir, path, out);
    assert_int_equal(system(cmd), 0);
    char *json = calloc(1, 1 << 16), *expect = calloc(1, 1 << 16);
    f = fopen(out, "rb");
    assert_non_null(f);
    assert_true(fread(json, 1, (1 << 16) - 1, f) > 0);
    fclose(f);
    size_t e = (size_t)snprintf(expect, 1 << 16, "{\"keep\":0.5,\"select\":\"griffin\",\"prompt_tokens\":4,\"layers\":[");
    for (size_t i = 0; i < flock_session_n_ffn(s); i++) {
        int32_t layer;
        const int32_t *idx;
        size_t k;
        assert_int_equal(flock_session_experts(s, i, &layer, &idx, &k), FLOCK_OK);
        e += (size_t)snprintf(expect + e, (1 << 16) - e, "%s{\"layer\":%d,\"experts\":[", i ? "," : "", layer);
        for (size_t j = 0; j < k; j++)
            e += (size_t)snprintf(expect + e, (1 << 16) - e, "%s%d", j ? "," : "", idx[j]);
        e += (size_t)snprintf(expect + e, (1 << 16) - e, "]}");
    }
    snprintf(expect + e, (1 << 16) - e, "]}\n");
    assert_string_equal(json, expect);
    free(json);
    free(expect);
    /* usage errors exit 2; a prompt longer than the context fails with 1 */
    snprintf(cmd, sizeof cmd, "%s/tools/flock run %s --keep 2 -p x >/dev/null 2>&1", bdir, path);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s/tools/flock run %s --ctx 3 -p 'Once upon a time' >/dev/null 2>&1", bdir, path);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    flock_session_free(s);
    flock_model_free(m);
}

/* Reads a small file into a NUL-terminated malloc'd string. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Devices: there is no CUDA execution backend, so device cuda fails with a
 * message saying exactly that (API and CLI, exit 1, *out untouched) and auto
 * runs on the CPU and says why (stats line, --json, the session's note). */
void test_e2e_stories_device(void **state)
{
    (void)state;
    char path[512], cmd[2048], out[600], errf[600];
    e2e_bundle("s16.flock", "--dtype f16", path, sizeof path);
    const char *bdir = flock_test_require_env("FLOCK_BUILD_DIR", "locates flock");
    flock_model *m;
    flock_error err = {0};
    assert_int_equal(flock_model_open(path, NULL, &m, &err), FLOCK_OK);
    flock_session_opts o = flock_session_default_opts();
    assert_int_equal(o.device, FLOCK_DEVICE_AUTO);
    o.device = FLOCK_DEVICE_CUDA;
    flock_session *s = (flock_session *)0x1;
    assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_E_UNSUPPORTED);
    assert_ptr_equal(s, (flock_session *)0x1);
    assert_non_null(strstr(err.msg, "no CUDA execution backend"));
    o.device = FLOCK_DEVICE_AUTO;
    assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    assert_int_equal(flock_session_device(s), FLOCK_DEVICE_CPU);
    assert_true(strncmp(flock_session_device_note(s), "auto: cpu (", 11) == 0);
    /* and it runs */
    assert_int_equal(flock_session_prefill(s, e2e_prompt, 5), FLOCK_OK);
    flock_session_free(s);
    o.device = FLOCK_DEVICE_CPU;
    assert_int_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    assert_string_equal(flock_session_device_note(s), "cpu: asked for");
    flock_session_free(s);
    flock_model_free(m);

    snprintf(out, sizeof out, "%s/device.out", e2e_dir);
    snprintf(errf, sizeof errf, "%s/device.err", e2e_dir);
    const char *cmds[] = {"run %s --ids 1,403 -n 2 --device cuda", "bench %s --device cuda --repeats 1"};
    for (int i = 0; i < 2; i++) {
        char sub[600];
        snprintf(sub, sizeof sub, cmds[i], path);
        snprintf(cmd, sizeof cmd, "%s/tools/flock %s >%s 2>%s", bdir, sub, out, errf);
        int rc = system(cmd);
        assert_true(WIFEXITED(rc));
        assert_int_equal(WEXITSTATUS(rc), 1);
        char *e = read_text(errf);
        if (!strstr(e, "device cuda: this flock runtime has no CUDA execution backend yet"))
            fail_msg("flock %s: stderr '%s'", sub, e);
        free(e);
    }
    snprintf(cmd, sizeof cmd, "%s/tools/flock run %s --ids 1,403 -n 2 --temp 0 --device auto --json >%s 2>%s", bdir,
             path, out, errf);
    assert_int_equal(system(cmd), 0);
    char *j = read_text(out);
    if (!strstr(j, "\"device\":\"cpu\",\"device_note\":\"auto: cpu ("))
        fail_msg("flock run --json: '%s'", j);
    free(j);
    snprintf(cmd, sizeof cmd, "%s/tools/flock run %s --ids 1,403 -n 2 --temp 0 >%s 2>%s", bdir, path, out, errf);
    assert_int_equal(system(cmd), 0);
    j = read_text(errf);
    if (!strstr(j, "| auto: cpu ("))
        fail_msg("flock run stats: '%s'", j);
    free(j);
}
