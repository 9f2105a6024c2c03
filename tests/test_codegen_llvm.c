/* CPU kernels generated through the LLVM C API, loaded through the
 * runtime's loader from the in-memory container, against plain C
 * references on fresh random data; foreign and corrupt containers. */
#include "test_util.h"

#include "flock/codegen.h"
#include "cpu_jit_loader.h"
#include "cpu_kernels_format.h"
#include "reader.h"

#include <pthread.h>


#include <sys/stat.h>

/* Saves a valid container as a fuzzing seed under
 * $FLOCK_BUILD_DIR/seeds/cpu_kernels/ (set by ctest; skipped otherwise). */
static void save_seed(const char *name, const uint8_t *data, size_t n)
{
    const char *b = getenv("FLOCK_BUILD_DIR");
    if (!b || !*b)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/seeds", b);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/seeds/cpu_kernels", b);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/seeds/cpu_kernels/%s", b, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static uint64_t seed = 0x5eed1234abcdULL;

static const flock_dtype dtypes[] = {FLOCK_DTYPE_F32, FLOCK_DTYPE_F16, FLOCK_DTYPE_BF16};
static const flock_act acts[] = {FLOCK_ACT_SILU, FLOCK_ACT_GELU_TANH, FLOCK_ACT_GELU, FLOCK_ACT_RELU};

/* ---- references ---------------------------------------------------------- */

static double ref_act(flock_act a, double g)
{
    switch (a) {
    case FLOCK_ACT_SILU: return g / (1.0 + exp(-g));
    case FLOCK_ACT_GELU_TANH: return 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
    case FLOCK_ACT_GELU: return 0.5 * g * (1.0 + erf(g / sqrt(2.0)));
    case FLOCK_ACT_RELU: return g > 0 ? g : 0;
    default: return g;
    }
}

/* y = sum_j act(gate_i . x) (up_i . x) down_t[i], i = idx[j]; weights in f32
 * (already rounded through the storage dtype), sums in double. */
static void ref_ffn(flock_act act, int d, const float *x, const int32_t *idx, int k, const float *gu,
                    const float *dt, float *y)
{
    double *acc = calloc((size_t)d, sizeof *acc);
    for (int j = 0; j < k; j++) {
        const float *g = gu + (size_t)idx[j] * 2 * d, *u = g + d;
        double sg = 0, su = 0;
        for (int c = 0; c < d; c++) {
            sg += (double)g[c] * x[c];
            su += (double)u[c] * x[c];
        }
        double h = ref_act(act, sg) * su;
        for (int c = 0; c < d; c++)
            acc[c] += h * dt[(size_t)idx[j] * d + c];
    }
    for (int c = 0; c < d; c++)
        y[c] = (float)acc[c];
    free(acc);
}

/* Random weights stored as dt (in *stored) and their f32 values (returned). */
static float *rand_weights(flock_dtype dt, size_t n, void **stored)
{
    float *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++)
        w[i] = flock_test_randf(&seed) * 0.5f;
    *stored = malloc(n * flock_dtype_size(dt));
    assert_int_equal(flock_convert_from_f32(dt, w, *stored, n), FLOCK_OK);
    assert_int_equal(flock_convert_to_f32(dt, *stored, w, n), FLOCK_OK);
    return w;
}

/* k distinct random neuron indices out of n, in random order. */
static int32_t *rand_idx(int n, int k)
{
    int32_t *p = malloc((size_t)n * sizeof *p);
    for (int i = 0; i < n; i++)
        p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(flock_test_rand(&seed) % (uint64_t)(i + 1));
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p; /* the first k are used */
}

static flock_cpu_jit *build_and_load(const flock_cpu_kernel_spec *spec, const char *target)
{
    uint8_t *c = NULL;
    size_t n = 0;
    flock_error err = {0};
    flock_status st = flock_llvm_cpu_kernels(spec, target, &c, &n, &err);
    if (st != FLOCK_OK)
        fail_msg("codegen %s: %s", target, err.msg);
    flock_cpu_jit *j = NULL;
    st = flock_cpu_jit_load(c, n, &j, &err);
    free(c); /* the loader copied the code */
    if (st != FLOCK_OK)
        fail_msg("load %s: %s", target, err.msg);
    return j;
}

static double tol_for(flock_dtype dt) { return dt == FLOCK_DTYPE_F32 ? 1e-5 : 2e-5; }

/* Every keep ratio of one (dtype, act, shape): the one-thread kernel and a
 * split into uneven j ranges and column ranges, against the reference. */
static void check_ffn(const char *target, flock_dtype dt, flock_act act, int d, int dff, const double *keeps,
                      int nkeep)
{
    flock_cpu_kernel_spec spec = {.d_model = d, .d_ff = dff, .ffn_dtype = dt, .act = act,
                                  .n_keep = (uint32_t)nkeep, .keep = keeps};
    flock_cpu_jit *j = build_and_load(&spec, target);
    void *gu_s, *dt_s;
    float *gu = rand_weights(dt, (size_t)dff * 2 * d, &gu_s);
    float *dn = rand_weights(dt, (size_t)dff * d, &dt_s);
    float *x = malloc((size_t)d * sizeof *x), *y = malloc((size_t)d * sizeof *y);
    float *yr = malloc((size_t)d * sizeof *yr), *h = malloc(((size_t)dff + 1) * sizeof *h);
    for (int c = 0; c < d; c++)
        x[c] = flock_test_randf(&seed);
    for (int i = 0; i < nkeep; i++) {
        int k = (int)floor(keeps[i] * dff);
        int32_t *idx = rand_idx(dff, k);
        flock_cpu_ffn_kernels fk;
        flock_error err = {0};
        assert_int_equal(flock_cpu_jit_find_ffn(j, dt, act, d, dff, k, &fk, &err), FLOCK_OK);
        ref_ffn(act, d, x, idx, k, gu, dn, yr);

        h[k] = 12345.0f; /* sentinel: nothing is written past k */
        fk.both(x, idx, gu_s, dt_s, h, y);
        double e1 = flock_test_nrm_err(y, yr, (size_t)d);
        assert_true(h[k] == 12345.0f);

        /* Split: j ranges [0,a) [a,b) [b,k+5) (clamped); columns [0,17) [17,c) [c,d+3). */
        memset(h, 0, (size_t)k * sizeof *h);
        int a = k / 3, b = 2 * k / 3 + 1;
        fk.up(x, idx, -2, a, gu_s, h);
        fk.up(x, idx, a, b, gu_s, h);
        fk.up(x, idx, b, k + 5, gu_s, h);
        assert_true(h[k] == 12345.0f);
        int c1 = d > 17 ? 17 : d, c2 = (d * 2 / 3) | 1;
        for (int c = 0; c < d; c++)
            y[c] = NAN;
        fk.down(h, idx, 0, c1, dt_s, y);
        fk.down(h, idx, c1, c2, dt_s, y);
        fk.down(h, idx, c2, d + 3, dt_s, y);
        double e2 = flock_test_nrm_err(y, yr, (size_t)d);
        if (!(e1 < tol_for(dt)) || !(e2 < tol_for(dt)))
            fail_msg("%s %s %s d=%d dff=%d k=%d: error %.3g (one call) %.3g (split)", target,
                     flock_dtype_name(dt), act == FLOCK_ACT_SILU ? "silu" : act == FLOCK_ACT_GELU ? "gelu" : act == FLOCK_ACT_GELU_TANH ? "gelu_tanh" : "relu", d, dff, k, e1, e2);
        /* A bad index is clamped to the last row (never an out-of-bounds read). */
        if (i == 0) {
            int32_t save = idx[0];
            idx[0] = -5;
            fk.up(x, idx, 0, 1, gu_s, h);
            float hbad = h[0];
            idx[0] = dff - 1;
            fk.up(x, idx, 0, 1, gu_s, h);
            assert_true(hbad == h[0]);
            idx[0] = dff + 1000;
            fk.up(x, idx, 0, 1, gu_s, h);
            assert_true(hbad == h[0]);
            idx[0] = save;
        }
        free(idx);
    }
    free(gu);
    free(dn);
    free(gu_s);
    free(dt_s);
    free(x);
    free(y);
    free(yr);
    free(h);
    flock_cpu_jit_free(j);
}

static void test_ffn_small_shapes(void **state)
{
    (void)state;
    /* d and d_ff off every vector multiple: exercises the tails; k odd and even. */
    static const double keeps[] = {1.0, 0.5, 0.33, 0.01};
    for (size_t t = 0; t < 3; t++)
        for (size_t a = 0; a < 4; a++)
            check_ffn("cpu", dtypes[t], acts[a], 200, 301, keeps, 4);
    /* Smaller than one vector: scalar code only. */
    static const double tiny_keeps[] = {1.0, 0.5};
    check_ffn("cpu", FLOCK_DTYPE_F16, FLOCK_ACT_SILU, 3, 2, tiny_keeps, 2);
}

/* A 7B-class shape generates and loads (numbers are checked on the smaller shapes). */
static void test_large_shape(void **state)
{
    (void)state;
    static const double keeps[] = {1.0, 0.5};
    flock_cpu_matvec_spec mv[] = {{4096, FLOCK_DTYPE_BF16}, {14336, FLOCK_DTYPE_BF16}};
    flock_cpu_kernel_spec spec = {.d_model = 4096, .d_ff = 14336, .ffn_dtype = FLOCK_DTYPE_BF16,
                                  .act = FLOCK_ACT_SILU, .n_keep = 2, .keep = keeps, .n_matvec = 2, .matvec = mv};
    flock_cpu_jit *j = build_and_load(&spec, "cpu");
    flock_cpu_ffn_kernels fk;
    flock_error err = {0};
    assert_int_equal(flock_cpu_jit_find_ffn(j, FLOCK_DTYPE_BF16, FLOCK_ACT_SILU, 4096, 14336, 7168, &fk, &err),
                     FLOCK_OK);
    assert_int_equal(flock_cpu_jit_count(j), 8);
    flock_cpu_jit_free(j);
}

static void test_ffn_smollm_shape(void **state)
{
    (void)state;
    static const double keeps[] = {1.0, 0.75, 0.5, 0.25};
    for (size_t t = 0; t < 3; t++)
        check_ffn("cpu", dtypes[t], FLOCK_ACT_SILU, 576, 1536, keeps, 4);
    check_ffn("cpu", FLOCK_DTYPE_F16, FLOCK_ACT_GELU_TANH, 640, 2048, keeps + 2, 1);
}

static void check_matvec(const char *target, flock_dtype dt, int cols)
{
    flock_cpu_matvec_spec mv = {cols, dt};
    flock_cpu_kernel_spec spec = {.n_matvec = 1, .matvec = &mv};
    flock_cpu_jit *j = build_and_load(&spec, target);
    flock_cpu_matvec_fn fn;
    flock_error err = {0};
    assert_int_equal(flock_cpu_jit_find_matvec(j, dt, cols, &fn, &err), FLOCK_OK);
    const int rows = 39;
    void *ws;
    float *w = rand_weights(dt, (size_t)rows * cols, &ws);
    float *x = malloc((size_t)cols * sizeof *x), y[39], yr[39];
    for (int c = 0; c < cols; c++)
        x[c] = flock_test_randf(&seed);
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++)
            s += (double)w[(size_t)r * cols + c] * x[c];
        yr[r] = (float)s;
        y[r] = NAN;
    }
    fn(ws, x, 0, 5, y);
    fn(ws, x, 5, 22, y);
    fn(ws, x, 22, rows, y);
    double e = flock_test_nrm_err(y, yr, rows);
    if (!(e < tol_for(dt)))
        fail_msg("matvec %s %s cols=%d: error %.3g", target, flock_dtype_name(dt), cols, e);
    /* Rows outside [r0, r1) are untouched. */
    y[9] = -7.0f;
    y[13] = -7.0f;
    fn(ws, x, 10, 13, y);
    assert_true(y[9] == -7.0f && y[13] == -7.0f);
    free(w);
    free(ws);
    free(x);
    flock_cpu_jit_free(j);
}

static void test_matvec(void **state)
{
    (void)state;
    static const int cols[] = {576, 1536, 200, 13, 1};
    for (size_t t = 0; t < 3; t++)
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
            check_matvec("cpu", dtypes[t], cols[c]);
}

/* Named targets: run them when this CPU can, otherwise the loader must refuse. */
static bool cpuinfo_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        char *tok = strtok(strchr(line, ':') ? strchr(line, ':') + 1 : line, " \t\n");
        for (; tok; tok = strtok(NULL, " \t\n"))
            if (strcmp(tok, flag) == 0)
                found = true;
        break;
    }
    fclose(f);
    return found;
}

static void test_named_targets(void **state)
{
    (void)state;
#if !defined(__x86_64__)
    skip();
#endif
    static const double keeps[] = {0.5};
    flock_cpu_kernel_spec spec = {.d_model = 96, .d_ff = 130, .ffn_dtype = FLOCK_DTYPE_F16,
                                  .act = FLOCK_ACT_SILU, .n_keep = 1, .keep = keeps};
    const char *targets[] = {"x86-64-v3", "x86-64-v4"};
    const bool runs[] = {cpuinfo_has("avx2") && cpuinfo_has("fma") && cpuinfo_has("f16c"),
                         cpuinfo_has("avx512f") && cpuinfo_has("avx512bw") && cpuinfo_has("avx512vl")};
    for (int t = 0; t < 2; t++) {
        assert_true(flock_llvm_cpu_target_supported(targets[t]));
        uint8_t *c = NULL;
        size_t n = 0;
        flock_error err = {0};
        assert_int_equal(flock_llvm_cpu_kernels(&spec, targets[t], &c, &n, &err), FLOCK_OK);
        flock_cpu_jit *j = NULL;
        flock_status st = flock_cpu_jit_load(c, n, &j, &err);
        if (runs[t]) {
            assert_int_equal(st, FLOCK_OK);
            assert_string_equal(flock_cpu_jit_target(j), targets[t]);
            flock_cpu_jit_free(j);
            check_ffn(targets[t], FLOCK_DTYPE_F16, FLOCK_ACT_SILU, 96, 130, keeps, 1);
            check_matvec(targets[t], FLOCK_DTYPE_BF16, 200);
        } else {
            assert_int_equal(st, FLOCK_E_UNSUPPORTED);
            assert_null(j);
        }
        /* A CPU without AVX-512 (features masked) refuses v4 and still runs v3. */
        j = NULL;
        uint64_t no512 = ~(uint64_t)(FLOCK_CPUF_AVX512F | FLOCK_CPUF_AVX512BW | FLOCK_CPUF_AVX512CD |
                                     FLOCK_CPUF_AVX512DQ | FLOCK_CPUF_AVX512VL);
        st = flock_cpu_jit_load_for(c, n, no512, &j, &err);
        if (t == 1) {
            assert_int_equal(st, FLOCK_E_UNSUPPORTED);
            assert_non_null(strstr(err.msg, "avx512f"));
            assert_null(j);
        } else {
            assert_int_equal(st, runs[0] ? FLOCK_OK : FLOCK_E_UNSUPPORTED);
            flock_cpu_jit_free(j);
        }
        free(c);
    }
}

static void test_foreign_arch(void **state)
{
    (void)state;
    if (!flock_llvm_cpu_target_supported("aarch64"))
        skip(); /* LLVM built without AArch64 */
    static const double keeps[] = {1.0, 0.5};
    flock_cpu_matvec_spec mv = {576, FLOCK_DTYPE_F16};
    flock_cpu_kernel_spec spec = {.d_model = 576, .d_ff = 1536, .ffn_dtype = FLOCK_DTYPE_BF16,
                                  .act = FLOCK_ACT_GELU, .n_keep = 2, .keep = keeps, .n_matvec = 1, .matvec = &mv};
    uint8_t *c = NULL;
    size_t n = 0;
    flock_error err = {0};
    flock_status st = flock_llvm_cpu_kernels(&spec, "aarch64", &c, &n, &err);
    if (st != FLOCK_OK)
        fail_msg("aarch64 codegen: %s", err.msg);
    assert_int_equal(flock_cpu_jit_check(c, n, &err), FLOCK_OK);
    save_seed("generated.bin", c, n);
    flock_cpu_jit *j = NULL;
    st = flock_cpu_jit_load(c, n, &j, &err);
#if defined(__aarch64__)
    assert_int_equal(st, FLOCK_OK);
    flock_cpu_jit_free(j);
#else
    assert_int_equal(st, FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "aarch64"));
    assert_null(j);
#endif
    free(c);
}

/* ---- corrupt containers -------------------------------------------------- */

static uint8_t *small_container(size_t *n)
{
    static const double keeps[] = {0.5};
    flock_cpu_matvec_spec mv = {24, FLOCK_DTYPE_F32};
    flock_cpu_kernel_spec spec = {.d_model = 16, .d_ff = 8, .ffn_dtype = FLOCK_DTYPE_F32, .act = FLOCK_ACT_RELU,
                                  .n_keep = 1, .keep = keeps, .n_matvec = 1, .matvec = &mv};
    uint8_t *c = NULL;
    flock_error err = {0};
    if (flock_llvm_cpu_kernels(&spec, "cpu", &c, n, &err) != FLOCK_OK)
        fail_msg("codegen: %s", err.msg);
    return c;
}

static void refix_checksum(uint8_t *c, size_t n)
{
    flock_wr_u64(c + FLOCK_CPUK_CHECKSUM_AT, flock_cpuk_checksum(c, n));
}

static void test_corrupt_containers(void **state)
{
    (void)state;
    size_t n;
    uint8_t *c = small_container(&n);
    flock_error err = {0};
    assert_int_equal(flock_cpu_jit_check(c, n, &err), FLOCK_OK);
    uint8_t *buf = malloc(n);
    size_t fails = 0;
    /* Truncation at every byte: an exact-size copy so ASan sees any over-read. */
    for (size_t len = 0; len < n; len++) {
        uint8_t *t = malloc(len ? len : 1);
        memcpy(t, c, len);
        flock_cpu_jit *j = NULL;
        flock_status st = flock_cpu_jit_load(t, len, &j, &err);
        fails += st != FLOCK_OK;
        assert_null(j);
        free(t);
    }
    assert_int_equal(fails, n);
    /* One flipped bit in every byte (bit position varies): always refused. */
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, c, n);
        buf[i] ^= (uint8_t)(1u << (i % 8));
        flock_cpu_jit *j = NULL;
        flock_status st = flock_cpu_jit_load(buf, n, &j, &err);
        if (st == FLOCK_OK)
            fail_msg("flipped bit in byte %zu accepted", i);
        assert_null(j);
    }
    /* Semantic damage with a valid checksum: each field is checked. */
    struct {
        size_t off;
        uint8_t val;
        flock_status want;
    } cases[] = {
        {8, 2, FLOCK_E_VERSION},       /* major 2 */
        {12, 9, FLOCK_E_CORRUPT},      /* architecture */
        {16 + 7, 0x80, FLOCK_E_UNSUPPORTED}, /* an unknown feature bit */
        {32, 0, FLOCK_E_CORRUPT},      /* zero kernels (n < 256 here) */
        {36, 1, FLOCK_E_CORRUPT},      /* flags */
        {48, 0, FLOCK_E_CORRUPT},      /* empty target name */
        {49, ' ', FLOCK_E_CORRUPT},    /* space in the target name */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, c, n);
        if (cases[i].off == 32)
            memset(buf + 32, 0, 4);
        else
            buf[cases[i].off] = cases[i].val;
        refix_checksum(buf, n);
        flock_status st = flock_cpu_jit_check(buf, n, &err);
        if (st != cases[i].want)
            fail_msg("case %zu: got %s (%s)", i, flock_status_str(st), err.msg);
    }
    /* First entry: kind, dtype, code offset. */
    size_t e = FLOCK_CPUK_HEADER_SIZE + 1 + c[FLOCK_CPUK_HEADER_SIZE];
    size_t fixed = e + 1 + c[e];
    const size_t field_offs[] = {fixed, fixed + 4, fixed + 24 + 7};
    for (size_t i = 0; i < 3; i++) {
        memcpy(buf, c, n);
        buf[field_offs[i]] = 0x7f;
        refix_checksum(buf, n);
        assert_int_equal(flock_cpu_jit_check(buf, n, &err), FLOCK_E_CORRUPT);
    }
    /* A byte appended after the blob. */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, c, n);
    longer[n] = 0;
    refix_checksum(longer, n + 1);
    assert_int_equal(flock_cpu_jit_check(longer, n + 1, &err), FLOCK_E_CORRUPT);
    free(longer);
    free(buf);
    free(c);
}

/* ---- the linker, against a system linker --------------------------------- */

/* flock's linker (llvm_link.c) must produce the very bytes ld.lld produces
 * for the same object with .text then .rodata at address 0 (constant merging
 * off): this checks every relocation it resolves, for x86-64 and AArch64
 * alike, without running foreign code. */
static void test_linker_matches_lld(void **state)
{
    (void)state;
    const char *lld = getenv("FLOCK_LLD"), *objcopy = getenv("FLOCK_OBJCOPY");
    if (!lld || !*lld || !objcopy || !*objcopy) {
        printf("skipped: ld.lld or llvm-objcopy not found at configure time\n");
        skip();
    }
    char dir[] = "/tmp/flock_lld_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/link.ld", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("SECTIONS {\n . = 0;\n .text : { *(.text .text.*) }\n .rodata : { *(.rodata .rodata.*) }\n"
          " /DISCARD/ : { *(.eh_frame) *(.note.*) *(.comment) }\n}\n", f);
    fclose(f);
    static const double keeps[] = {1.0, 0.5};
    flock_cpu_matvec_spec mv[] = {{576, FLOCK_DTYPE_F16}, {200, FLOCK_DTYPE_BF16}, {1536, FLOCK_DTYPE_F32}};
    const char *targets[] = {"cpu", "x86-64-v3", "x86-64-v4", "aarch64"};
    const flock_act tacts[] = {FLOCK_ACT_GELU, FLOCK_ACT_SILU, FLOCK_ACT_GELU_TANH, FLOCK_ACT_RELU};
    int compared = 0;
    for (int t = 0; t < 4; t++) {
        if (!flock_llvm_cpu_target_supported(targets[t]))
            continue;
        flock_cpu_kernel_spec spec = {.d_model = 576, .d_ff = 1536, .ffn_dtype = dtypes[t % 3], .act = tacts[t],
                                      .n_keep = 2, .keep = keeps, .n_matvec = 3, .matvec = mv};
        uint8_t *obj = NULL, *cont = NULL;
        size_t on = 0, cn = 0;
        flock_error err = {0};
        assert_int_equal(flock_llvm_cpu_object(&spec, targets[t], &obj, &on, &err), FLOCK_OK);
        assert_int_equal(flock_llvm_cpu_kernels(&spec, targets[t], &cont, &cn, &err), FLOCK_OK);
        snprintf(path, sizeof path, "%s/k.o", dir);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(obj, 1, on, f), on);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "'%s' -O0 -static -T '%s/link.ld' -e 0 '%s/k.o' -o '%s/k.elf' && '%s' -O binary '%s/k.elf' '%s/k.bin'",
                 lld, dir, dir, dir, objcopy, dir, dir);
        assert_int_equal(system(cmd), 0);
        snprintf(path, sizeof path, "%s/k.bin", dir);
        size_t bn = 0;
        uint8_t *bin = flock_test_slurp(path, &bn);
        assert_non_null(bin);
        flock_reader r = flock_reader_init(cont, cn);
        r.off = 40;
        uint64_t ts = 0;
        assert_true(flock_rd_u64(&r, &ts) && ts <= cn);
        if (bn != ts || memcmp(bin, cont + cn - ts, ts) != 0)
            fail_msg("%s: flock's blob (%llu bytes) differs from ld.lld's (%zu bytes)", targets[t],
                     (unsigned long long)ts, bn);
        printf("%s: %llu bytes identical to ld.lld's\n", targets[t], (unsigned long long)ts);
        compared++;
        free(bin);
        free(obj);
        free(cont);
    }
    assert_true(compared >= 1);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- the generated code itself ------------------------------------------- */

static void test_asm_no_calls(void **state)
{
    (void)state;
    static const double keeps[] = {0.5};
    flock_cpu_matvec_spec mv = {576, FLOCK_DTYPE_F16};
    flock_cpu_kernel_spec spec = {.d_model = 576, .d_ff = 1536, .ffn_dtype = FLOCK_DTYPE_F16,
                                  .act = FLOCK_ACT_GELU, .n_keep = 1, .keep = keeps, .n_matvec = 1, .matvec = &mv};
    char *s = NULL;
    flock_error err = {0};
    if (flock_llvm_cpu_asm(&spec, "x86-64-v3", &s, &err) != FLOCK_OK)
        fail_msg("asm: %s", err.msg);
    assert_non_null(strstr(s, "vcvtph2ps")); /* f16 widened by F16C */
    assert_non_null(strstr(s, "vfmadd"));    /* fused multiply-add */
    assert_non_null(strstr(s, "ymm"));
    /* No calls out of the blob (a libm call or memset would be one). */
    for (const char *p = s; (p = strstr(p, "call")) != NULL; p += 4) {
        const char *q = p + 4;
        while (*q == 'q' || *q == ' ' || *q == '\t')
            q++;
        if (strncmp(q, "flock_", 6) != 0)
            fail_msg("external call: %.60s", p);
    }
    free(s);
}

static void test_target_names(void **state)
{
    (void)state;
    char name[128];
    flock_error err = {0};
    assert_int_equal(flock_llvm_cpu_target_name("x86-64-v4", name, sizeof name, &err), FLOCK_OK);
    assert_string_equal(name, "x86-64-v4");
    assert_int_equal(flock_llvm_cpu_target_name("cpu", name, sizeof name, &err), FLOCK_OK);
    assert_memory_equal(name, "host-", 5);
    assert_true(strlen(name) > 5);
    assert_int_equal(flock_llvm_cpu_target_name("cpu", name, 4, &err), FLOCK_E_RANGE);
    assert_int_equal(flock_llvm_cpu_target_name("z80", name, sizeof name, &err), FLOCK_E_UNSUPPORTED);
    /* The container records the canonical name; the loader reports it. */
    flock_cpu_matvec_spec mv = {8, FLOCK_DTYPE_F32};
    flock_cpu_kernel_spec spec = {.n_matvec = 1, .matvec = &mv};
    assert_int_equal(flock_llvm_cpu_target_name("cpu", name, sizeof name, &err), FLOCK_OK);
    flock_cpu_jit *j = build_and_load(&spec, "cpu");
    assert_string_equal(flock_cpu_jit_target(j), name);
    flock_cpu_jit_free(j);
}

/* The spec of a small hand-built program (the structs only; no IR library). */
static void test_spec_from_program(void **state)
{
    (void)state;
    flock_value values[5] = {{"tokens", FLOCK_DTYPE_I32, 1}, {"x", FLOCK_DTYPE_F32, 64},
                             {"attn", FLOCK_DTYPE_F32, 96}, {"y", FLOCK_DTYPE_F32, 64},
                             {"z", FLOCK_DTYPE_F32, 64}};
    flock_tensor_ref tensors[5] = {
        {"wq", FLOCK_DTYPE_F16, 2, {96, 64}},      {"wo", FLOCK_DTYPE_F16, 2, {64, 96}},
        {"gate_up", FLOCK_DTYPE_BF16, 2, {172, 128}}, {"down_t", FLOCK_DTYPE_BF16, 2, {172, 64}},
        {"q8", FLOCK_DTYPE_U8, 2, {512, 64}},
    };
    flock_op ops[6];
    memset(ops, 0, sizeof ops);
    for (int i = 0; i < 6; i++) {
        for (int w = 0; w < FLOCK_OP_MAX_W; w++)
            ops[i].w[w] = -1;
        ops[i].n_in = 1;
        ops[i].layer = i / 3;
    }
    ops[0].kind = FLOCK_OP_LINEAR, ops[0].in[0] = 1, ops[0].w[0] = 0, ops[0].out = 2;
    ops[1].kind = FLOCK_OP_LINEAR, ops[1].in[0] = 2, ops[1].w[0] = 1, ops[1].out = 3;
    for (int i = 2; i < 4; i++) {
        ops[i].kind = FLOCK_OP_FFN, ops[i].in[0] = 3, ops[i].w[0] = 2, ops[i].w[2] = 3, ops[i].out = 4;
        ops[i].d_ff = 172, ops[i].act = FLOCK_ACT_GELU_TANH, ops[i].gated = 1;
        ops[i].ffn_layout = FLOCK_FFN_PACKED;
    }
    ops[4].kind = FLOCK_OP_LINEAR, ops[4].in[0] = 4, ops[4].w[0] = 4; /* u8 matrix: not ours */
    /* Input width 96 and f16, as op 1: one matvec serves both. */
    ops[5].kind = FLOCK_OP_LM_HEAD, ops[5].in[0] = 2, ops[5].w[0] = 1;
    flock_program p = {.n_values = 5, .values = values, .n_tensors = 5, .tensors = tensors, .n_ops = 6,
                       .ops = ops};
    static const double keeps[] = {1.0, 0.5};
    flock_cpu_matvec_spec mv[4];
    flock_cpu_kernel_spec spec;
    flock_error err = {0};
    assert_int_equal(flock_llvm_cpu_spec_from_program(&p, keeps, 2, &spec, mv, 4, &err), FLOCK_OK);
    assert_int_equal(spec.d_model, 64);
    assert_int_equal(spec.d_ff, 172);
    assert_int_equal(spec.ffn_dtype, FLOCK_DTYPE_BF16);
    assert_int_equal(spec.act, FLOCK_ACT_GELU_TANH);
    assert_int_equal(spec.n_keep, 2);
    assert_int_equal(spec.n_matvec, 2);
    assert_int_equal(mv[0].cols, 64);
    assert_int_equal(mv[1].cols, 96);
    /* What it describes can be generated, and found again by the runtime's lookups. */
    flock_cpu_jit *j = build_and_load(&spec, "cpu");
    flock_cpu_ffn_kernels fk;
    flock_cpu_matvec_fn fn;
    assert_int_equal(flock_cpu_jit_find_ffn(j, FLOCK_DTYPE_BF16, FLOCK_ACT_GELU_TANH, 64, 172, 86, &fk, &err),
                     FLOCK_OK);
    assert_int_equal(flock_cpu_jit_find_ffn(j, FLOCK_DTYPE_BF16, FLOCK_ACT_GELU_TANH, 64, 172, 172, &fk, &err),
                     FLOCK_OK);
    assert_int_equal(flock_cpu_jit_find_ffn(j, FLOCK_DTYPE_BF16, FLOCK_ACT_SILU, 64, 172, 86, &fk, &err),
                     FLOCK_E_NOT_FOUND);
    assert_int_equal(flock_cpu_jit_find_matvec(j, FLOCK_DTYPE_F16, 96, &fn, &err), FLOCK_OK);
    assert_int_equal(flock_cpu_jit_find_matvec(j, FLOCK_DTYPE_F16, 64, &fn, &err), FLOCK_OK);
    flock_cpu_jit_free(j);
    /* Too little room for the matvec shapes; FFN layers that disagree. */
    assert_int_equal(flock_llvm_cpu_spec_from_program(&p, keeps, 2, &spec, mv, 1, &err), FLOCK_E_RANGE);
    ops[3].d_ff = 100;
    assert_int_equal(flock_llvm_cpu_spec_from_program(&p, keeps, 2, &spec, mv, 4, &err), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "layer 1"));
    ops[3].d_ff = 172;
    ops[0].w[0] = 9; /* a tensor id out of range */
    assert_int_equal(flock_llvm_cpu_spec_from_program(&p, keeps, 2, &spec, mv, 4, &err), FLOCK_E_CORRUPT);
}

typedef struct gen_job {
    const char *target;
    uint8_t *out;
    size_t n;
    flock_status st;
} gen_job;

static void *gen_thread(void *arg)
{
    gen_job *g = arg;
    static const double keeps[] = {0.5, 0.25};
    flock_cpu_matvec_spec mv = {72, FLOCK_DTYPE_BF16};
    flock_cpu_kernel_spec spec = {.d_model = 72, .d_ff = 100, .ffn_dtype = FLOCK_DTYPE_F16,
                                  .act = FLOCK_ACT_GELU, .n_keep = 2, .keep = keeps, .n_matvec = 1, .matvec = &mv};
    g->st = flock_llvm_cpu_kernels(&spec, g->target, &g->out, &g->n, NULL);
    return NULL;
}

/* Generation is deterministic (reproducible bundles) and safe from several
 * threads at once (flockc may build targets in parallel). */
static void test_deterministic_and_threads(void **state)
{
    (void)state;
    gen_job jobs[3] = {{"x86-64-v3", NULL, 0, FLOCK_OK}, {"x86-64-v3", NULL, 0, FLOCK_OK},
                       {"x86-64-v4", NULL, 0, FLOCK_OK}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gen_thread, &jobs[i]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(jobs[i].st, FLOCK_OK);
    assert_int_equal(jobs[0].n, jobs[1].n);
    assert_memory_equal(jobs[0].out, jobs[1].out, jobs[0].n);
    gen_job again = {"x86-64-v4", NULL, 0, FLOCK_OK};
    gen_thread(&again);
    assert_int_equal(again.st, FLOCK_OK);
    assert_int_equal(again.n, jobs[2].n);
    assert_memory_equal(again.out, jobs[2].out, again.n);
    for (int i = 0; i < 3; i++)
        free(jobs[i].out);
    free(again.out);
}

static void test_bad_specs(void **state)
{
    (void)state;
    uint8_t *c = NULL;
    size_t n = 0;
    flock_error err = {0};
    static const double bad_keep[] = {0.0}; /* 0.001 is fine: at least one neuron is kept */
    flock_cpu_kernel_spec s1 = {.d_model = 64, .d_ff = 100, .ffn_dtype = FLOCK_DTYPE_F32,
                                .act = FLOCK_ACT_SILU, .n_keep = 1, .keep = bad_keep};
    assert_int_equal(flock_llvm_cpu_kernels(&s1, "cpu", &c, &n, &err), FLOCK_E_INVALID_ARG);
    flock_cpu_kernel_spec s2 = s1;
    static const double ok_keep[] = {0.5};
    s2.keep = ok_keep;
    s2.ffn_dtype = FLOCK_DTYPE_I32;
    assert_int_equal(flock_llvm_cpu_kernels(&s2, "cpu", &c, &n, &err), FLOCK_E_INVALID_ARG);
    s2.ffn_dtype = FLOCK_DTYPE_F32;
    s2.act = FLOCK_ACT_NONE;
    assert_int_equal(flock_llvm_cpu_kernels(&s2, "cpu", &c, &n, &err), FLOCK_E_INVALID_ARG);
    s2.act = FLOCK_ACT_SILU;
    assert_int_equal(flock_llvm_cpu_kernels(&s2, "sparc-v9000", &c, &n, &err), FLOCK_E_UNSUPPORTED);
    assert_false(flock_llvm_cpu_target_supported("sparc-v9000"));
    flock_cpu_kernel_spec empty = {0};
    assert_int_equal(flock_llvm_cpu_kernels(&empty, "cpu", &c, &n, &err), FLOCK_E_INVALID_ARG);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_target_names),
        cmocka_unit_test(test_spec_from_program),
        cmocka_unit_test(test_deterministic_and_threads),
        cmocka_unit_test(test_asm_no_calls),
        cmocka_unit_test(test_matvec),
        cmocka_unit_test(test_ffn_small_shapes),
        cmocka_unit_test(test_ffn_smollm_shape),
        cmocka_unit_test(test_large_shape),
        cmocka_unit_test(test_named_targets),
        cmocka_unit_test(test_foreign_arch),
        cmocka_unit_test(test_corrupt_containers),
        cmocka_unit_test(test_linker_matches_lld),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
