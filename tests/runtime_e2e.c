/* The end-to-end tests on the tiny trained model of test_runtime (see runtime_e2e.h). */
#include "test_util.h"

#include "bundle_copy.h"
#include "flock/bundle.h"
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
/* ---- end to end on the tiny model (public API over a bundle flockc compiles) ---- */

static char e2e_dir[256];

/* Compiles the tiny model (tests/data) with flockc into e2e_dir; returns the bundle path. */
static const char *e2e_bundle(const char *name, const char *flags, char *buf, size_t n)
{
    char gguf[512], cmd[2048];
    flock_test_tiny_model(gguf, sizeof gguf);
    const char *bdir = flock_test_require_env("FLOCK_BUILD_DIR", "locates flockc");
    snprintf(buf, n, "%s/%s", e2e_dir, name);
    snprintf(cmd, sizeof cmd, "%s/tools/flockc %s -o %s %s --quiet", bdir, gguf, buf, flags);
    if (system(cmd) != 0)
        fail_msg("flockc failed: %s", cmd);
    return buf;
}

/* "Alice was", greedy: the 40 tokens the float64 numpy reference
 * (tests/ref_llama.py --greedy 1,344,436,441,407 40) generates on the tiny
 * model: "\nshe went on, `I've getting to herself,' said the King, `and\nthe know, `". */
static const int32_t e2e_prompt[] = {1, 344, 436, 441, 407};
static const int32_t e2e_expected[40] = {13,  447, 260, 267, 312, 327, 456, 377, 467, 469, 315, 310, 336, 442,
                                         285, 293, 421, 304, 451, 455, 456, 469, 420, 325, 265, 440, 501, 285,
                                         456, 377, 365, 13,  442, 260, 440, 465, 445, 311, 456, 377};

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
    assert_int_equal(flock_tokenize(m, "Alice was", 9, true, ids, 16, &n, &err), FLOCK_OK);
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
        assert_memory_equal(gs.tokens, e2e_expected, sizeof got); /* the ids behind the text */
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
        const char *stops[] = {"King"};
        assert_int_equal(flock_generate(s, smp, e2e_prompt, 5, 40, stops, 1, collect, &tb, &gs), FLOCK_OK);
        const char *at = strstr(expect, "King");
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
static void no_alloc_with(flock_kernel_choice kc)
{
    char path[512];
    e2e_bundle("s32.flock", "--dtype f32", path, sizeof path);
    flock_model *m;
    flock_error err = {0};
    assert_int_equal(flock_model_open(path, NULL, &m, &err), FLOCK_OK);
    flock_session_opts o = flock_session_default_opts();
    o.keep = 0.5;
    o.threads = 2;
    o.n_ctx = 64;
    o.kernels = kc;
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

/* Both kernel paths (the generated one when flockc wrote kernels). */
void test_e2e_stories_no_alloc_in_token_loop(void **state)
{
    (void)state;
    no_alloc_with(FLOCK_KERNELS_PORTABLE);
    no_alloc_with(FLOCK_KERNELS_GENERATED);
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
    int32_t nine[9] = {1, 344, 436, 441, 407, 13, 447, 260, 267};
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
    /* griffin-adaptive: the same total count as uniform keep 0.5 */
    {
        flock_session_opts oa = flock_session_default_opts();
        oa.keep = 0.5;
        oa.select = FLOCK_SELECT_GRIFFIN_ADAPTIVE;
        flock_session *sa;
        assert_int_equal(flock_session_create(m, &oa, &sa, &err), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sa, nine, 6), FLOCK_OK);
        size_t total = 0;
        for (size_t i = 0; i < 5; i++) {
            const int32_t *idx;
            size_t k;
            assert_int_equal(flock_session_experts(sa, i, NULL, &idx, &k), FLOCK_OK);
            assert_true(k >= 43 && k <= 172); /* at least FLOCK_ADAPTIVE_FLOOR of 86 */
            for (size_t j = 1; j < k; j++)
                assert_true(idx[j] > idx[j - 1]);
            total += k;
        }
        assert_int_equal(total, 5 * 86);
        assert_int_equal(flock_session_decode(sa, nine + 6, 2), FLOCK_OK);
        flock_session_free(sa);
        /* glass at weight 1 is GRIFFIN's selection exactly */
        oa.select = FLOCK_SELECT_GLASS;
        oa.glass_weight = 1.0;
        assert_int_equal(flock_session_create(m, &oa, &sa, &err), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sa, nine, 6), FLOCK_OK);
        flock_session *sg;
        flock_session_opts og = flock_session_default_opts();
        og.keep = 0.5;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sg, nine, 6), FLOCK_OK);
        for (size_t i = 0; i < 5; i++) {
            const int32_t *a, *b;
            size_t ka, kb;
            assert_int_equal(flock_session_experts(sa, i, NULL, &a, &ka), FLOCK_OK);
            assert_int_equal(flock_session_experts(sg, i, NULL, &b, &kb), FLOCK_OK);
            assert_int_equal(ka, kb);
            assert_memory_equal(a, b, ka * sizeof *a);
        }
        flock_session_free(sa);
        flock_session_free(sg);
        /* refresh 1: every decoded token runs the full FF, so keep 0.5 gives keep 1.0's logits (to rounding:
         * keep 1.0 decodes through the gather kernel over all neurons, the refresh through the dense one) */
        og.refresh = 1;
        og.n_ctx = 8;
        flock_session_opts of = flock_session_default_opts();
        of.n_ctx = 8;
        flock_session *sf;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_OK);
        assert_int_equal(flock_session_create(m, &of, &sf, &err), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sg, nine, 5), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sf, nine, 5), FLOCK_OK);
        assert_int_equal(flock_session_decode(sg, nine + 5, 3), FLOCK_OK);
        assert_int_equal(flock_session_decode(sf, nine + 5, 3), FLOCK_OK);
        {
            const float *a = flock_session_last_logits(sg), *b = flock_session_last_logits(sf);
            double num = 0, den = 0;
            for (int32_t v = 0; v < flock_model_n_vocab(m); v++) {
                num += ((double)a[v] - b[v]) * ((double)a[v] - b[v]);
                den += (double)b[v] * b[v];
            }
            assert_true(den > 0 && sqrt(num / den) < 1e-5);
        }
        /* without the refresh the same keep 0.5 session does differ from keep 1.0 (so the check above means something) */
        flock_session_free(sg);
        og.refresh = 0;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sg, nine, 5), FLOCK_OK);
        assert_int_equal(flock_session_decode(sg, nine + 5, 3), FLOCK_OK);
        assert_memory_not_equal(flock_session_last_logits(sg), flock_session_last_logits(sf),
                                (size_t)flock_model_n_vocab(m) * sizeof(float));
        /* a refresh split checks every token first: an id out of range runs none */
        flock_session_free(sg);
        og.refresh = 2;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_OK);
        assert_int_equal(flock_session_prefill(sg, nine, 4), FLOCK_OK);
        int32_t badids[3] = {5, 6, 1 << 30};
        assert_int_equal(flock_session_decode(sg, badids, 3), FLOCK_E_INVALID_ARG);
        assert_int_equal(flock_session_n_past(sg), 4);
        assert_int_equal(flock_session_decode(sg, nine + 4, 5), FLOCK_E_RANGE);
        assert_int_equal(flock_session_n_past(sg), 4);
        flock_session_free(sg);
        flock_session_free(sf);
        /* bad options: refresh with a static selection, negative refresh, glass weight outside [0, 1] */
        og = flock_session_default_opts();
        og.keep = 0.5;
        og.select = FLOCK_SELECT_MAGNITUDE;
        og.refresh = 4;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_E_INVALID_ARG);
        assert_non_null(strstr(err.msg, "refresh"));
        og.select = FLOCK_SELECT_GRIFFIN;
        og.refresh = -1;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_E_INVALID_ARG);
        og.refresh = 0;
        og.select = FLOCK_SELECT_GLASS;
        og.glass_weight = 1.5;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_E_INVALID_ARG);
        assert_non_null(strstr(err.msg, "glass weight"));
        /* the CPU-only modes on CUDA: unsupported, named */
        og.glass_weight = 0.9;
        og.device = FLOCK_DEVICE_CUDA;
        assert_int_equal(flock_session_create(m, &og, &sg, &err), FLOCK_E_UNSUPPORTED);
        assert_non_null(strstr(err.msg, "CPU only"));
        assert_string_equal(flock_select_mode_name(FLOCK_SELECT_GRIFFIN_ADAPTIVE), "griffin-adaptive");
        flock_select_mode pm;
        assert_int_equal(flock_select_mode_parse("glass", &pm), FLOCK_OK);
        assert_int_equal(pm, FLOCK_SELECT_GLASS);
    }
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
    /* NULL handles and arguments, and a sampler made for another vocabulary */
    assert_int_equal(flock_session_prefill(NULL, nine, 3), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_session_decode(NULL, nine, 1), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_session_decode(s, NULL, 1), FLOCK_E_INVALID_ARG);
    assert_non_null(strstr(flock_session_error(s), "NULL"));
    flock_session_reset(s);
    flock_sampler_opts so = flock_sampler_default_opts();
    flock_sampler *wrong;
    assert_int_equal(flock_sampler_create(&so, flock_model_n_vocab(m) + 1, &wrong, &err), FLOCK_OK);
    flock_gen *g = NULL;
    assert_int_equal(flock_gen_start(s, wrong, nine, 3, 4, NULL, 0, &g), FLOCK_E_INVALID_ARG);
    assert_null(g);
    assert_non_null(strstr(flock_session_error(s), "513"));
    assert_int_equal(flock_generate(s, wrong, nine, 3, 4, NULL, 0, NULL, NULL, NULL), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_session_n_past(s), 0); /* nothing ran */
    assert_int_equal(flock_generate(NULL, wrong, nine, 3, 4, NULL, 0, NULL, NULL, NULL), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_gen_start(s, NULL, nine, 3, 4, NULL, 0, &g), FLOCK_E_INVALID_ARG);
    flock_sampler_free(wrong);
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
             "%s/tools/flock logits %s --ids 1,344,436,441,407 --keep 0.5 --prompt-len 4 --threads 2 --out %s", bdir,
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
    snprintf(cmd, sizeof cmd, "%s/tools/flock experts %s --ids 1,344,436,441 --keep 0.5 > %s", bdir, path, out);
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
    snprintf(cmd, sizeof cmd, "%s/tools/flock run %s --ctx 3 -p 'Alice was' >/dev/null 2>&1", bdir, path);
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

/* Devices: this bundle has no CUDA kernels, so device cuda fails with a
 * message saying why (no GPU; or, on a GPU host, the flockc flag that adds
 * kernels for it) (API and CLI, exit 1, *out untouched) and auto runs on the
 * CPU and says why (stats line, --json, the session's note). The backend
 * itself is tested on the emulator (test_cuda_backend). */
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
    flock_cuda_info ci;
    const bool gpu = flock_cuda_probe(&ci) && ci.cc_major >= 8;
    const char *why = gpu ? "flockc --target sm_" : "device cuda: no CUDA device";
    assert_int_not_equal(flock_session_create(m, &o, &s, &err), FLOCK_OK);
    assert_ptr_equal(s, (flock_session *)0x1);
    if (!strstr(err.msg, why))
        fail_msg("device cuda: '%s' lacks '%s'", err.msg, why);
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
        if (!strstr(e, "device cuda: ") || !strstr(e, why))
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

/* ---- generated CPU kernels (the bundle's cpu:* sections) ------------------- */

/* Like e2e_bundle, but returns false (with flockc's message printed) when
 * flockc refuses the flags, e.g. a named CPU target without LLVM. */
static bool e2e_bundle_try(const char *name, const char *flags, char *buf, size_t n)
{
    char gguf[512], cmd[2048];
    flock_test_tiny_model(gguf, sizeof gguf);
    const char *bdir = flock_test_require_env("FLOCK_BUILD_DIR", "locates flockc");
    snprintf(buf, n, "%s/%s", e2e_dir, name);
    snprintf(cmd, sizeof cmd, "%s/tools/flockc %s -o %s %s --quiet", bdir, gguf, buf, flags);
    return system(cmd) == 0;
}

#define JIT_STEPS 9 /* the prompt's logits, then 8 decode steps */

/* Logits after the prompt and after each of 8 decode steps over fixed
 * tokens, with the given kernels; out[JIT_STEPS][512]. */
static void jit_logits(flock_model *m, flock_kernel_choice kc, double keep, int threads, float *out, char *kname,
                       size_t kn)
{
    flock_session_opts o = flock_session_default_opts();
    o.threads = threads;
    o.n_ctx = 64;
    o.keep = keep;
    o.kernels = kc;
    /* the kernels' f32 rounding, not the f16 cache's: an f16 K/V rounds
     * differently where the FF outputs differ in their last bits */
    o.kv_type = FLOCK_KV_F32;
    flock_session *s;
    flock_error err = {0};
    if (flock_session_create(m, &o, &s, &err) != FLOCK_OK)
        fail_msg("session: %s", err.msg);
    snprintf(kname, kn, "%s", flock_session_kernels(s));
    assert_int_equal(flock_session_prefill(s, e2e_prompt, 5), FLOCK_OK);
    memcpy(out, flock_session_last_logits(s), 512 * sizeof(float));
    for (int i = 0; i + 1 < JIT_STEPS; i++) {
        assert_int_equal(flock_session_decode(s, &e2e_expected[i], 1), FLOCK_OK);
        memcpy(out + (size_t)(i + 1) * 512, flock_session_last_logits(s), 512 * sizeof(float));
    }
    flock_session_free(s);
}

/* A bundle compiled with --target cpu decodes through the generated kernels
 * (f32 and f16 weights, keep 1.0 and 0.5): logits within f32 rounding of the
 * portable kernels (normalized error < 1e-5; the generated code sums in
 * another order), and bitwise the same for 1 and 2 threads. */
void test_e2e_stories_generated_kernels(void **state)
{
    (void)state;
    const char *flags[] = {"--dtype f32 --keep 0.5 --target cpu", "--dtype f16 --keep 0.5 --target cpu"};
    static float ref[JIT_STEPS * 512], g1[JIT_STEPS * 512], g2[JIT_STEPS * 512];
    for (int b = 0; b < 2; b++) {
        char path[512], kname[160];
        e2e_bundle(b ? "sgen16.flock" : "sgen32.flock", flags[b], path, sizeof path);
        flock_model *m;
        flock_error err = {0};
        if (flock_model_open(path, NULL, &m, &err) != FLOCK_OK)
            fail_msg("open: %s", err.msg);
        const char *why = NULL, *target = flock_model_cpu_kernels(m, &why);
        if (!target) { /* a flockc without LLVM writes no kernel section */
            print_message("no generated kernels (%s): only the fallback is checked\n", why);
            assert_non_null(strstr(why, "no cpu:* kernel section"));
            jit_logits(m, FLOCK_KERNELS_GENERATED, 0.5, 1, g1, kname, sizeof kname);
            assert_null(strstr(kname, "llvm:"));
            flock_model_free(m);
            continue;
        }
        assert_string_equal(why, "");
        assert_non_null(strstr(target, "host-"));
        for (int kk = 0; kk < 2; kk++) {
            double keep = kk ? 0.5 : 1.0;
            jit_logits(m, FLOCK_KERNELS_PORTABLE, keep, 1, ref, kname, sizeof kname);
            assert_null(strstr(kname, "llvm:"));
            jit_logits(m, FLOCK_KERNELS_GENERATED, keep, 1, g1, kname, sizeof kname);
            char want[160];
            snprintf(want, sizeof want, "llvm:%s", target);
            assert_string_equal(kname, want);
            jit_logits(m, FLOCK_KERNELS_GENERATED, keep, 2, g2, kname, sizeof kname);
            assert_memory_equal(g1, g2, sizeof g1);
            /* the prompt runs the same kernels except the last LM head row */
            double worst = 0;
            for (int st = 0; st < JIT_STEPS; st++) {
                double e = flock_test_nrm_err(g1 + st * 512, ref + st * 512, 512);
                if (e >= 1e-5)
                    fail_msg("%s keep %g step %d: normalized error %g", flags[b], keep, st, e);
                worst = e > worst ? e : worst;
            }
            print_message("%s, keep %g: %s vs portable, worst normalized logit error %.2e\n", flags[b], keep,
                          kname, worst);
        }
        flock_model_free(m);
    }
}

/* Whether this CPU has AVX-512F (from /proc/cpuinfo, independently of the
 * runtime's own detection). */
static bool host_has_avx512f(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    bool yes = false;
    while (f && !yes && fgets(line, sizeof line, f))
        yes = strncmp(line, "flags", 5) == 0 && strstr(line, " avx512f") != NULL;
    if (f)
        fclose(f);
    return yes;
}

/* Checks that `path` falls back to the portable kernels, naming `section`
 * in the reason, and decodes exactly as the portable path. */
static void expect_fallback(const char *path, const char *section, const char *reason)
{
    static float ref[JIT_STEPS * 512], got[JIT_STEPS * 512];
    flock_model *m;
    flock_error err = {0};
    if (flock_model_open(path, NULL, &m, &err) != FLOCK_OK)
        fail_msg("open %s: %s", path, err.msg);
    const char *why = NULL;
    assert_null(flock_model_cpu_kernels(m, &why));
    if (!strstr(why, section) || (reason && !strstr(why, reason)))
        fail_msg("%s: fallback reason '%s' does not name '%s' / '%s'", path, why, section, reason ? reason : "");
    char kname[160];
    jit_logits(m, FLOCK_KERNELS_PORTABLE, 0.5, 1, ref, kname, sizeof kname);
    jit_logits(m, FLOCK_KERNELS_GENERATED, 0.5, 2, got, kname, sizeof kname);
    assert_null(strstr(kname, "llvm:"));
    assert_memory_equal(got, ref, sizeof ref);
    flock_model_free(m);
}

/* Kernels for another CPU: the bundle still runs, on the portable kernels,
 * and says why. */
void test_e2e_stories_foreign_kernels(void **state)
{
    (void)state;
    char path[512];
    if (!e2e_bundle_try("sarm.flock", "--dtype f32 --keep 0.5 --target aarch64", path, sizeof path)) {
        print_message("flockc cannot generate for aarch64 here: foreign-target check skipped\n");
        return;
    }
#if defined(__x86_64__)
    expect_fallback(path, "cpu:aarch64", "aarch64 code");
    if (!host_has_avx512f()) {
        assert_true(e2e_bundle_try("sv4.flock", "--dtype f32 --keep 0.5 --target x86-64-v4", path, sizeof path));
        expect_fallback(path, "cpu:x86-64-v4", "avx512f");
    } else {
        print_message("this CPU has AVX-512: the x86-64-v4 fallback is not checked here\n");
    }
#else
    print_message("aarch64 host: the foreign-target check needs an x86-64 host\n");
#endif
}

/* The bundle's kernel sections through the mutation `user` points to (the bundle's
 * own checksums stay right: only the container is damaged). */
static bool mutate_kernels(const flock_section_info *si, uint8_t *data, size_t *size, void *user)
{
    if (si->kind == FLOCK_SECTION_KERNELS)
        (*(void (**)(uint8_t *, size_t *))user)(data, size);
    return true;
}

static void flip_entry_byte(uint8_t *d, size_t *n)
{
    d[*n / 3] ^= 0x10; /* inside the entries or the code: the container checksum no longer matches */
}

static void truncate_half(uint8_t *d, size_t *n)
{
    (void)d;
    *n /= 2;
}

static void future_major(uint8_t *d, size_t *n)
{
    (void)n;
    d[8] = 9; /* major version 9 (the checksum then fails too: either refusal is fine) */
}

/* A damaged kernel section never crashes: the model opens, runs on the
 * portable kernels and says what was wrong; a section whose stored bytes are
 * damaged (the bundle's checksum) likewise. */
void test_e2e_stories_corrupt_kernels(void **state)
{
    (void)state;
    char good[512], bad[512];
    e2e_bundle("sgen32.flock", "--dtype f32 --keep 0.5 --target cpu", good, sizeof good);
    flock_bundle *b;
    flock_error err = {0};
    assert_int_equal(flock_bundle_open(good, &b, &err), FLOCK_OK);
    int64_t ki = -1;
    flock_section_info si = {0};
    char section[160] = "";
    for (size_t i = 0; i < flock_bundle_section_count(b) && ki < 0; i++) {
        assert_int_equal(flock_bundle_section_info(b, i, &si), FLOCK_OK);
        if (si.kind == FLOCK_SECTION_KERNELS) {
            ki = (int64_t)i;
            snprintf(section, sizeof section, "%s", si.name); /* owned by the bundle */
        }
    }
    flock_bundle_close(b);
    if (ki < 0) {
        print_message("flockc wrote no kernel section (built without LLVM): corruption check skipped\n");
        return;
    }
    void (*mutations[])(uint8_t *, size_t *) = {flip_entry_byte, truncate_half, future_major};
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        snprintf(bad, sizeof bad, "%s/sbad%zu.flock", e2e_dir, i);
        flock_test_bundle_copy(good, bad, mutate_kernels, &mutations[i], NULL, NULL, 0);
        expect_fallback(bad, section, NULL);
    }
    /* the stored bytes of the section itself */
    snprintf(bad, sizeof bad, "%s/sbadfile.flock", e2e_dir);
    FILE *in = fopen(good, "rb"), *out = fopen(bad, "wb");
    assert_non_null(in);
    assert_non_null(out);
    int c;
    for (uint64_t off = 0; (c = fgetc(in)) != EOF; off++)
        fputc(off == si.offset + si.stored_size / 2 ? c ^ 0x01 : c, out);
    fclose(in);
    fclose(out);
    expect_fallback(bad, section, NULL);
}

/* ---- the batched decode step (flock_session_decode_batch) ---------------- */

#define BATCH_SEQS 18  /* more than one step takes (FLOCK_EXEC_MAX_BATCH = 16): two runs */
#define BATCH_STEPS 6

/* Sequence q's prompt (its own length and tokens, so its own experts) and
 * its decode tokens. */
static size_t batch_prompt(int q, int32_t *ids)
{
    size_t n = 3 + (size_t)(q % 5);
    ids[0] = 1;
    for (size_t i = 1; i < n; i++)
        ids[i] = (int32_t)(3 + (q * 37 + (int)i * 101) % 500);
    return n;
}

static int32_t batch_token(int q, int step)
{
    return (int32_t)(5 + (q * 53 + step * 29) % 500);
}

static flock_session *batch_session(flock_model *m, double keep, int threads, int n_ctx)
{
    flock_session_opts o = flock_session_default_opts();
    o.threads = threads;
    o.n_ctx = n_ctx;
    o.keep = keep;
    flock_session *s;
    flock_error err = {0};
    if (flock_session_create(m, &o, &s, &err) != FLOCK_OK)
        fail_msg("session: %s", err.msg);
    return s;
}

/* Bundle batch<f>.flock of the stories model compiled with `flags` (its
 * path into path), opened. */
static flock_model *batch_model(size_t f, const char *flags, char *path, size_t cap)
{
    char name[64];
    snprintf(name, sizeof name, "batch%zu.flock", f);
    e2e_bundle(name, flags, path, cap);
    flock_model *m;
    flock_error err = {0};
    if (flock_model_open(path, NULL, &m, &err) != FLOCK_OK)
        fail_msg("open %s: %s", path, err.msg);
    return m;
}

/* 18 sequences (keep 0.5 and 1.0 mixed, different prompts) stepped together
 * give every sequence bitwise the logits it gets stepped alone, for each
 * storage type's kernels (f32, f16, q8_0, q4_1, q4_k) and the generated
 * ones; a step with a sequence at fault runs for none and says which. */
void test_e2e_stories_batched_decode(void **state)
{
    (void)state;
    const char *flags[] = {"--dtype f32 --keep 0.5", "--dtype f16 --keep 0.5", "--dtype q8_0 --keep 0.5",
                           "--dtype q4_1 --keep 0.5", "--dtype q4_k --keep 0.5", "--dtype f32 --keep 0.5 --target cpu"};
    static float alone[BATCH_SEQS][BATCH_STEPS][512];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        char path[512];
        flock_model *m = batch_model(f, flags[f], path, sizeof path);
        int32_t ids[16];
        for (int q = 0; q < BATCH_SEQS; q++) {
            flock_session *s = batch_session(m, q % 3 == 2 ? 1.0 : 0.5, 2, 32);
            assert_int_equal(flock_session_prefill(s, ids, batch_prompt(q, ids)), FLOCK_OK);
            for (int st = 0; st < BATCH_STEPS; st++) {
                int32_t t = batch_token(q, st);
                assert_int_equal(flock_session_decode(s, &t, 1), FLOCK_OK);
                memcpy(alone[q][st], flock_session_last_logits(s), sizeof alone[q][st]);
            }
            flock_session_free(s);
        }
        flock_session *ss[BATCH_SEQS];
        for (int q = 0; q < BATCH_SEQS; q++) {
            ss[q] = batch_session(m, q % 3 == 2 ? 1.0 : 0.5, 2, 32);
            assert_int_equal(flock_session_prefill(ss[q], ids, batch_prompt(q, ids)), FLOCK_OK);
        }
        for (int st = 0; st < BATCH_STEPS; st++) {
            int32_t toks[BATCH_SEQS];
            for (int q = 0; q < BATCH_SEQS; q++)
                toks[q] = batch_token(q, st);
            assert_int_equal(flock_session_decode_batch(ss, toks, BATCH_SEQS), FLOCK_OK);
            for (int q = 0; q < BATCH_SEQS; q++)
                if (memcmp(flock_session_last_logits(ss[q]), alone[q][st], sizeof alone[q][st]) != 0)
                    fail_msg("%s: sequence %d, step %d: batched logits differ from alone (normalized error %g)",
                             flags[f], q, st, flock_test_nrm_err(flock_session_last_logits(ss[q]), alone[q][st], 512));
        }
        if (f == 0) {
            print_message("kernels: %s\n", flock_session_kernels(ss[0]));
            /* at fault: a session with no experts, a duplicate, a token outside the vocabulary */
            size_t past[4];
            for (int q = 0; q < 4; q++)
                past[q] = flock_session_n_past(ss[q]);
            flock_session_reset(ss[2]);
            past[2] = 0;
            int32_t toks[4] = {7, 8, 9, 10};
            assert_int_equal(flock_session_decode_batch(ss, toks, 4), FLOCK_E_INVALID_ARG);
            assert_non_null(strstr(flock_session_error(ss[2]), "no experts are selected"));
            flock_session *dup[3] = {ss[0], ss[1], ss[0]};
            assert_int_equal(flock_session_decode_batch(dup, toks, 3), FLOCK_E_INVALID_ARG);
            assert_non_null(strstr(flock_session_error(ss[0]), "in the batch twice"));
            int32_t bad[2] = {7, 100000};
            assert_int_equal(flock_session_decode_batch(ss, bad, 2), FLOCK_E_INVALID_ARG);
            assert_non_null(strstr(flock_session_error(ss[1]), "outside the vocabulary"));
            for (int q = 0; q < 4; q++)
                assert_int_equal(flock_session_n_past(ss[q]), past[q]); /* none advanced */
            /* a full context: FLOCK_E_RANGE naming the numbers, nothing runs */
            flock_session *full = batch_session(m, 0.5, 2, 8);
            assert_int_equal(flock_session_prefill(full, ids, batch_prompt(4, ids)), FLOCK_OK); /* 7 tokens */
            flock_session *two[2] = {ss[0], full};
            int32_t t2[2] = {7, 8};
            assert_int_equal(flock_session_decode_batch(two, t2, 2), FLOCK_OK); /* 8 of 8 */
            assert_int_equal(flock_session_decode_batch(two, t2, 2), FLOCK_E_RANGE);
            assert_non_null(strstr(flock_session_error(full), "8 already used of 8"));
            assert_int_equal(flock_session_n_past(ss[0]), past[0] + 1);
            /* another thread count is stepped on its own, still equal */
            flock_session_free(full);
        }
        for (int q = 0; q < BATCH_SEQS; q++)
            flock_session_free(ss[q]);
        flock_model_free(m);
    }
}

/* A session of model m at `keep` (select griffin-adaptive when `adaptive`,
 * refresh every `refresh` tokens) with the kept rows packed or not
 * (flock_session_opts.pack_rows): its logits over 12
 * decoded tokens into out[12][vocab], and the packed bytes after each step. */
static void packed_run(flock_model *m, double keep, int refresh, bool adaptive, bool pack, float *out,
                       uint64_t *packed)
{
    flock_session_opts o = flock_session_default_opts();
    assert_true(o.pack_rows); /* the default */
    o.pack_rows = pack;
    o.keep = keep;
    o.refresh = refresh;
    o.threads = 2;
    o.n_ctx = 32;
    o.kernels = FLOCK_KERNELS_PORTABLE; /* the generated gather reads its rows in place (not packed) */
    if (adaptive)
        o.select = FLOCK_SELECT_GRIFFIN_ADAPTIVE;
    flock_session *s;
    flock_error err = {0};
    if (flock_session_create(m, &o, &s, &err) != FLOCK_OK)
        fail_msg("session: %s", err.msg);
    int32_t ids[16];
    assert_int_equal(flock_session_prefill(s, ids, batch_prompt(3, ids)), FLOCK_OK);
    int32_t nv = flock_model_n_vocab(m);
    for (int st = 0; st < 12; st++) {
        int32_t t = batch_token(3, st);
        assert_int_equal(flock_session_decode(s, &t, 1), FLOCK_OK);
        memcpy(out + (size_t)st * (size_t)nv, flock_session_last_logits(s), (size_t)nv * sizeof(float));
        packed[st] = flock_session_packed_bytes(s);
        /* the packed rows are a part of what a step reads, never more */
        assert_true(packed[st] < flock_session_decode_bytes(s));
    }
    flock_session_free(s);
}

/* flock bench --pack-rows on|off: the JSON says which and the packed MB
 * (more than 0 only when on); another value is a usage error (exit 2). */
static void packed_cli(const char *path)
{
    const char *bdir = flock_test_require_env("FLOCK_BUILD_DIR", "locates flock");
    char cmd[2048], out[8192];
    for (int on = 0; on < 2; on++) {
        snprintf(cmd, sizeof cmd, "%s/tools/flock bench %s --prompt-len 8 --gen-len 4 --repeats 1 --keep 0.5 "
                 "--threads 1 --json --pack-rows %s", bdir, path, on ? "on" : "off");
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        assert_int_equal(pclose(p), 0);
        const char *pr = strstr(out, "\"pack_rows\":"), *mb = strstr(out, "\"packed_mb\":");
        if (!pr || !mb)
            fail_msg("flock bench --json lacks pack_rows or packed_mb: %s", out);
        assert_true(strncmp(pr + 12, on ? "true" : "false", on ? 4 : 5) == 0);
        double v = strtod(mb + 12, NULL);
        if (on ? !(v > 0) : v != 0)
            fail_msg("--pack-rows %s: packed_mb %g", on ? "on" : "off", v);
    }
    snprintf(cmd, sizeof cmd, "%s/tools/flock bench %s --pack-rows maybe >/dev/null 2>&1", bdir, path);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

/* The kept rows packed for the decode (exec_impl.h, flock_exec_pack) give
 * bitwise the logits of the gather in place, for each storage type, with
 * a refresh (a new selection every 4 tokens, packed again) and with
 * griffin-adaptive's per-layer budgets; at keep 1.0 and with pack_rows
 * false nothing is packed. */
void test_e2e_stories_packed_rows(void **state)
{
    (void)state;
    const char *flags[] = {"--dtype f32 --keep 0.5", "--dtype f16 --keep 0.5", "--dtype q8_0 --keep 0.5",
                           "--dtype q4_1 --keep 0.5", "--dtype q4_k --keep 0.5"};
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        char path[512];
        flock_model *m = batch_model(f, flags[f], path, sizeof path);
        size_t nv = (size_t)flock_model_n_vocab(m);
        float *a = malloc(12 * nv * sizeof(float)), *b = malloc(12 * nv * sizeof(float));
        uint64_t pa[12], pb[12];
        assert_non_null(a);
        assert_non_null(b);
        for (int mode = 0; mode < 3; mode++) {
            int refresh = mode == 1 ? 4 : 0;
            bool adaptive = mode == 2;
            packed_run(m, 0.5, refresh, adaptive, true, a, pa);
            packed_run(m, 0.5, refresh, adaptive, false, b, pb);
            for (int st = 0; st < 12; st++) {
                if (memcmp(a + st * nv, b + st * nv, nv * sizeof(float)) != 0)
                    fail_msg("%s mode %d step %d: packed logits differ from in place (normalized error %g)", flags[f],
                             mode, st, flock_test_nrm_err(a + st * nv, b + st * nv, nv));
                if (pa[st] == 0 || pb[st] != 0)
                    fail_msg("%s mode %d step %d: packed bytes %llu (on), %llu (off)", flags[f], mode, st,
                             (unsigned long long)pa[st], (unsigned long long)pb[st]);
            }
        }
        packed_run(m, 1.0, 0, false, true, a, pa);
        for (int st = 0; st < 12; st++)
            assert_int_equal(pa[st], 0); /* every row kept, in order: nothing to pack */
        free(a), free(b);
        flock_model_free(m);
        if (f == 1)
            packed_cli(path);
    }
}
