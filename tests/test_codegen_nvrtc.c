/* codegen's CUDA kernels through the toolkit, without a GPU: every generated
 * kernel compiles through NVRTC for sm_80, sm_89, sm_90 (CUBIN) and
 * compute_80 (PTX); ptxas -v on the PTX for sm_90, sm_89 and sm_80 reports no
 * spills and no stack frame (local memory) for any kernel. The whole
 * program is skipped (exit 77) when flock is built without FLOCK_CUDA. */
#include "test_util.h"

#include "flock/codegen.h"

#ifndef FLOCK_TEST_HAVE_NVRTC
int main(void)
{
    printf("SKIPPED: flock was built without FLOCK_CUDA (no NVRTC)\n");
    return FLOCK_TEST_SKIP;
}
#else

#include <unistd.h>

#define QALL FLOCK_CODEGEN_QTYPES

typedef struct config {
    const char *label;
    flock_codegen_model m;
} config;

/* The shapes that matter: a tiny one (stories260K: heads of 8, FF 172, not
 * a multiple of anything), a Gemma-like one (bf16, plain FF is covered by
 * OPT-like GELU, f32 KV cache, softcap, neox RoPE, head_dim 256) and the
 * Llama-2-7B / 13B layers the GPU check times. */
static const config configs[] = {
    {"small-f16", {.d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512,
                   .rope_dim = 8, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
                   .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3,
                   .keep = {1.0f, 0.75f, 0.5f}}},
    {"gemma-bf16", {.d_model = 640, .d_ff = 2048, .n_head = 4, .n_kv_head = 1, .head_dim = 256, .vocab = 262144,
                    .rope_dim = 256, .rope_style = FLOCK_ROPE_NEOX, .wtype = FLOCK_DTYPE_BF16,
                    .kv_type = FLOCK_DTYPE_F32, .act = FLOCK_ACT_GELU_TANH, .gated = 1, .attn_softcap = 50.0f,
                    .n_keep = 2, .keep = {1.0f, 0.5f}}},
    {"opt-plain-relu", {.d_model = 768, .d_ff = 3072, .n_head = 12, .n_kv_head = 12, .head_dim = 64,
                        .vocab = 50272, .rope_dim = 0, .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16,
                        .act = FLOCK_ACT_RELU, .gated = 0, .n_keep = 2, .keep = {1.0f, 0.5f}}},
    {"llama2-7b", {.d_model = 4096, .d_ff = 11008, .n_head = 32, .n_kv_head = 32, .head_dim = 128,
                   .vocab = 32000, .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
                   .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3,
                   .keep = {1.0f, 0.75f, 0.5f}}},
    {"llama2-13b", {.d_model = 5120, .d_ff = 13824, .n_head = 40, .n_kv_head = 40, .head_dim = 128,
                    .vocab = 32000, .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
                    .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3,
                    .keep = {1.0f, 0.75f, 0.5f}}},
    /* The quantized kernels (q8_0, q4_0, q4_1 at once) at the tiny shape and the 7B / 13B layers. */
    {"small-q", {.d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512,
                 .rope_dim = 8, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .qtypes = QALL,
                 .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3,
                 .keep = {1.0f, 0.75f, 0.5f}}},
    {"llama2-7b-q", {.d_model = 4096, .d_ff = 11008, .n_head = 32, .n_kv_head = 32, .head_dim = 128,
                     .vocab = 32000, .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
                     .qtypes = QALL, .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3,
                     .keep = {1.0f, 0.75f, 0.5f}}},
    {"llama2-13b-q", {.d_model = 5120, .d_ff = 13824, .n_head = 40, .n_kv_head = 40, .head_dim = 128,
                      .vocab = 32000, .rope_dim = 128, .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16,
                      .qtypes = QALL, .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 3,
                      .keep = {1.0f, 0.75f, 0.5f}}},
};
#define N_CONFIGS (sizeof configs / sizeof configs[0])

static void compile_ok(const config *c, const char *target, uint8_t **blob, size_t *size, flock_cuda_blob *b)
{
    flock_error e = {0};
    if (flock_codegen_cuda(&c->m, target, blob, size, &e) != FLOCK_OK) {
        printf("%s for %s: %s\n", c->label, target, e.msg);
        fail();
    }
    if (flock_cuda_blob_parse(*blob, *size, b, &e) != FLOCK_OK) {
        printf("%s for %s: blob: %s\n", c->label, target, e.msg);
        fail();
    }
}

/* Every kernel of the table is an entry point of the image. */
static void test_compile_all_targets(void **state)
{
    (void)state;
    const char *targets[] = {"sm_80", "sm_89", "sm_90", "compute_80"};
    for (size_t ci = 0; ci < N_CONFIGS; ci++) {
        for (size_t ti = 0; ti < 4; ti++) {
            uint8_t *blob = NULL;
            size_t size = 0;
            flock_cuda_blob b;
            compile_ok(&configs[ci], targets[ti], &blob, &size, &b);
            assert_int_equal(b.image_kind, ti == 3 ? FLOCK_CUDA_IMAGE_PTX : FLOCK_CUDA_IMAGE_CUBIN);
            assert_int_equal(b.arch, ti == 0 || ti == 3 ? 80 : ti == 1 ? 89 : 90);
            if (b.image_kind == FLOCK_CUDA_IMAGE_CUBIN)
                assert_memory_equal(b.image, "\x7f" "ELF", 4);
            for (size_t k = 0; k < b.n_kernels; k++) {
                flock_cuda_kernel_info ki;
                assert_int_equal(flock_cuda_blob_kernel(&b, k, &ki, NULL), FLOCK_OK);
                char pat[96];
                /* PTX declares ".entry name("; the CUBIN's symbol table holds "name\0". */
                if (b.image_kind == FLOCK_CUDA_IMAGE_PTX)
                    snprintf(pat, sizeof pat, ".entry %s(", ki.name);
                else
                    snprintf(pat, sizeof pat, "%s", ki.name);
                size_t pl = strlen(pat) + (b.image_kind == FLOCK_CUDA_IMAGE_CUBIN);
                if (!memmem(b.image, b.image_size, pat, pl)) {
                    printf("%s/%s: kernel %s not in the image\n", configs[ci].label, targets[ti], ki.name);
                    fail();
                }
            }
            printf("  %-15s %-11s %3zu kernels, %8zu-byte blob\n", configs[ci].label, targets[ti], b.n_kernels,
                   size);
            free(blob);
        }
    }
}

static void test_bad_target(void **state)
{
    (void)state;
    uint8_t *blob = NULL;
    size_t size = 0;
    flock_error e = {0};
    const char *bad[] = {"sm_75", "sm_", "compute_9", "sm_90x", "gfx90a", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(flock_codegen_cuda(&configs[0].m, bad[i], &blob, &size, &e), FLOCK_E_INVALID_ARG);
        assert_null(blob);
        assert_non_null(strstr(e.msg, "target"));
    }
}

/* ---- ptxas ------------------------------------------------------------------- */

typedef struct ptxas_fn {
    char name[96];
    int regs, stack, spill_st, spill_ld;
} ptxas_fn;

/* Runs `ptxas -arch=<arch> -v` on the PTX and parses the per-function report:
 *   ptxas info    : Function properties for NAME
 *       S bytes stack frame, A bytes spill stores, B bytes spill loads
 *   ptxas info    : Used R registers, ... */
static size_t run_ptxas(const void *ptx, size_t ptx_len, const char *arch, ptxas_fn *fns, size_t cap)
{
    char path[] = "/tmp/flock_ptxas_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, ptx, ptx_len), (ssize_t)ptx_len);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' -arch=%s -v '%s' -o /dev/null 2>&1", FLOCK_TEST_PTXAS, arch, path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[1024];
    size_t n = 0;
    ptxas_fn *cur = NULL;
    int failed = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p;
        if ((p = strstr(line, "Function properties for "))) {
            assert_true(n < cap);
            cur = &fns[n++];
            memset(cur, 0, sizeof *cur);
            cur->regs = -1;
            sscanf(p + strlen("Function properties for "), "%95s", cur->name);
        } else if (cur && strstr(line, "bytes stack frame")) {
            assert_int_equal(sscanf(line, " %d bytes stack frame, %d bytes spill stores, %d bytes spill loads",
                                    &cur->stack, &cur->spill_st, &cur->spill_ld), 3);
        } else if (cur && (p = strstr(line, "Used "))) {
            assert_int_equal(sscanf(p, "Used %d registers", &cur->regs), 1);
        } else if (strstr(line, "error")) {
            printf("ptxas: %s", line);
            failed = 1;
        }
    }
    int rc = pclose(f);
    unlink(path);
    assert_int_equal(failed, 0);
    assert_int_equal(rc, 0);
    return n;
}

static void test_ptxas_no_spills(void **state)
{
    (void)state;
    if (access(FLOCK_TEST_PTXAS, X_OK) != 0) {
        printf("ptxas not found at %s\n", FLOCK_TEST_PTXAS);
        skip();
        return;
    }
    const char *pairs[3][2] = {{"compute_90", "sm_90"}, {"compute_89", "sm_89"}, {"compute_80", "sm_80"}};
    int bad = 0;
    for (size_t ci = 0; ci < N_CONFIGS; ci++) {
        for (int pi = 0; pi < 3; pi++) {
            uint8_t *blob = NULL;
            size_t size = 0;
            flock_cuda_blob b;
            compile_ok(&configs[ci], pairs[pi][0], &blob, &size, &b);
            ptxas_fn fns[256];
            size_t n = run_ptxas(b.image, b.image_size - 1, pairs[pi][1], fns, 256);
            assert_int_equal(n, b.n_kernels);
            printf("  %s, %s: kernel registers / stack / spill st / spill ld\n", configs[ci].label, pairs[pi][1]);
            for (size_t i = 0; i < n; i++) {
                assert_true(flock_cuda_blob_find(&b, fns[i].name) >= 0);
                const bool ok = fns[i].regs > 0 && fns[i].stack == 0 && fns[i].spill_st == 0 && fns[i].spill_ld == 0;
                printf("    %-32s %4d %4d %4d %4d%s\n", fns[i].name, fns[i].regs, fns[i].stack, fns[i].spill_st,
                       fns[i].spill_ld, ok ? "" : "   <-- local memory");
                bad += !ok;
            }
            free(blob);
        }
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_target),
        cmocka_unit_test(test_compile_all_targets),
        cmocka_unit_test(test_ptxas_no_spills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
