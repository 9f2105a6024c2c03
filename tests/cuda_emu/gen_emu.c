/* Writes the CPU-emulation source of one gpu_check configuration, or of one
 * model the runtime's CUDA backend test compiles (models[] below): the
 * generated CUDA C inside a namespace, a trampoline per entry point that
 * unpacks the launch's argument pointers, the exported kernel table
 * emu_kernels_<ident>[] / emu_n_kernels_<ident>, and emu_source_hash_<ident>
 * (FNV-1a 64 of the generated source: the emulator driver accepts only an
 * image of those very bytes).
 *   gen_emu LABEL IDENT OUT.cpp
 *   gen_emu synth:NAME IDENT OUT.cpp   (a model of synth_models.h: written,
 *                                       compiled as flockc does, its source) */
#include "cuda_private.h"
#include "gpu_check_ref.h"
#include "synth_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "const float *x" -> "const float *" (drops the parameter name). */
static void param_type(const char *p, size_t n, char *out, size_t cap)
{
    while (n && (p[n - 1] == ' '))
        n--;
    size_t e = n;
    while (e && (p[e - 1] == '_' || (p[e - 1] >= 'a' && p[e - 1] <= 'z') || (p[e - 1] >= 'A' && p[e - 1] <= 'Z') ||
                 (p[e - 1] >= '0' && p[e - 1] <= '9')))
        e--;
    while (*p == ' ' && e)
        p++, e--;
    snprintf(out, cap, "%.*s", (int)e, p);
}

/* Models compiled by tests/test_cuda_backend.c, with the facts flockc's
 * CUDA sections get for them (compiler/cuda_sections.c: the --keep ratios,
 * then 1.0; f16 KV cache). The test checks that flockc's source for the
 * model is byte for byte the one generated here. */
static const gpu_check_config models[] = {
    /* tests/data/tiny-llama.gguf (stories260K's shape) compiled with --dtype f16 --keep 0.5 */
    {.label = "stories260k-f16",
     .m = {.d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512, .rope_dim = 8,
           .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .kv_type = FLOCK_DTYPE_F16,
           .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 2, .keep = {0.5f, 1.0f}}},
    /* the same with --dtype q8_0 and --dtype q4_0: every matrix is whole blocks, none stays 16-bit */
    {.label = "stories260k-q8_0",
     .m = {.d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512, .rope_dim = 8,
           .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .qtypes = 1u << FLOCK_DTYPE_Q8_0,
           .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 2, .keep = {0.5f, 1.0f}}},
    {.label = "stories260k-q4_0",
     .m = {.d_model = 64, .d_ff = 172, .n_head = 8, .n_kv_head = 4, .head_dim = 8, .vocab = 512, .rope_dim = 8,
           .rope_style = FLOCK_ROPE_NORMAL, .wtype = FLOCK_DTYPE_F16, .qtypes = 1u << FLOCK_DTYPE_Q4_0,
           .kv_type = FLOCK_DTYPE_F16, .act = FLOCK_ACT_SILU, .gated = 1, .n_keep = 2, .keep = {0.5f, 1.0f}}},
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

/* The codegen model of synthetic model `name`, compiled as flockc does, and
 * checked to give the very source flockc's sections are compiled from. */
static int synth(const char *name, flock_codegen_model *out)
{
    const synth_model *sm = NULL;
    for (size_t i = 0; i < sizeof synth_models / sizeof synth_models[0]; i++)
        if (strcmp(synth_models[i].name, name) == 0)
            sm = &synth_models[i];
    if (!sm) {
        fprintf(stderr, "gen_emu: no synthetic model '%s'\n", name);
        return 2;
    }
    char dir[] = "/tmp/flock_gen_emu_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    hfw w;
    sm->write(dir, &w);
    hfw_free(&w);
    flock_error e = {0};
    flock_source *src = NULL;
    flock_program *p = NULL;
    flock_compile_opts o = synth_opts(sm);
    char *text = NULL, *again = NULL;
    size_t len = 0, again_len = 0;
    int rc = 1;
    if (flock_source_open(dir, &src, &e) || flock_compile_program(src, &o, &p, &e) ||
        flock_compile_cuda_source(p, &o, &text, &len, &e) || synth_cuda_model(p, out, &e) ||
        flock_codegen_cuda_source(out, &again, &again_len, NULL, NULL, &e))
        fprintf(stderr, "gen_emu: %s: %s\n", name, e.msg);
    else if (again_len != len || memcmp(again, text, len) != 0)
        fprintf(stderr, "gen_emu: %s: synth_cuda_model differs from flockc's CUDA model\n", name);
    else
        rc = 0;
    free(text);
    free(again);
    flock_program_free(p);
    flock_source_free(src);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "gen_emu: could not remove %s\n", dir);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: gen_emu LABEL|synth:NAME IDENT OUT.cpp\n");
        return 2;
    }
    gpu_check_config sc = {.label = argv[1]};
    if (strncmp(argv[1], "synth:", 6) == 0) {
        int rc = synth(argv[1] + 6, &sc.m);
        if (rc)
            return rc;
    }
    size_t n = 0;
    const gpu_check_config *cfgs = gpu_check_configs(&n), *c = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(cfgs[i].label, argv[1]) == 0)
            c = &cfgs[i];
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (strcmp(models[i].label, argv[1]) == 0)
            c = &models[i];
    if (strncmp(argv[1], "synth:", 6) == 0)
        c = &sc;
    if (!c) {
        fprintf(stderr, "gen_emu: no configuration '%s'\n", argv[1]);
        return 2;
    }
    flock_cuda_kernel_list list;
    char *src = NULL;
    size_t len = 0;
    flock_error e = {0};
    if (flock_cuda_kernel_list_build(&c->m, &list, &e) || flock_cuda_source_emit(&c->m, &list, &src, &len, &e)) {
        fprintf(stderr, "gen_emu: %s\n", e.msg);
        return 1;
    }
    FILE *f = fopen(argv[3], "w");
    if (!f) {
        perror(argv[3]);
        return 1;
    }
    const char *id = argv[2];
    fprintf(f, "// Generated by tests/cuda_emu/gen_emu for '%s'. Do not edit.\n#include \"cuda_emu.h\"\n", c->label);
    fprintf(f, "namespace emu_%s {\n", id);
    fwrite(src, 1, len, f);
    fprintf(f, "\n// ---- trampolines ----\n");
    for (size_t k = 0; k < list.n; k++) {
        const flock_cuda_kernel_def *d = &list.defs[k];
        fprintf(f, "static void t%zu(void **a)\n{\n    %s(", k, d->name);
        const char *p = d->params;
        int i = 0;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t pl = comma ? (size_t)(comma - p) : strlen(p);
            char type[128];
            param_type(p, pl, type, sizeof type);
            fprintf(f, "%s*(%s *)a[%d]", i ? ", " : "", type, i);
            i++;
            p += pl;
            if (*p == ',')
                p++;
        }
        fprintf(f, ");\n}\n");
    }
    fprintf(f, "} // namespace\n\nextern \"C\" const emu_kernel emu_kernels_%s[] = {\n", id);
    for (size_t k = 0; k < list.n; k++)
        fprintf(f, "    {\"%s\", emu_%s::t%zu},\n", list.defs[k].name, id, k);
    fprintf(f, "};\nextern \"C\" const size_t emu_n_kernels_%s = %zu;\n", id, list.n);
    fprintf(f, "extern \"C\" const unsigned long long emu_source_hash_%s = %lluULL;\n", id,
            (unsigned long long)fnv1a(src, len));
    fclose(f);
    free(src);
    free(list.defs);
    return 0;
}
