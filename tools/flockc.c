/* flockc: compiles a model (GGUF file or Hugging Face folder) into a .flock
 * bundle. A thin layer over flock/compiler.h. */
#include "flock/compiler.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flockc MODEL -o OUT.flock [options]\n"
            "       flockc MODEL --emit-ir\n"
            "       flockc MODEL --emit-cuda\n"
            "\n"
            "MODEL is a GGUF file or a Hugging Face folder (config.json, *.safetensors,\n"
            "tokenizer.json). Architectures: llama (Llama 2/3, SmolLM, TinyLlama), mistral,\n"
            "qwen2, gemma, gemma2, gemma3, opt, gpt2.\n"
            "\n"
            "options:\n"
            "  -o, --output PATH    the bundle to write\n"
            "  --keep LIST          GRIFFIN keep ratios in (0, 1], comma-separated (default 0.25,0.5,0.75)\n"
            "  --dtype T            storage dtype of the weight matrices: auto (default: source\n"
            "                       for a GGUF with quantized weights, else f16), f16, bf16, f32,\n"
            "                       q8_0, q4_0, q4_1, q5_0, q4_k, q6_k (GGML's block layouts), or source:\n"
            "                       every matrix keeps its source type (a GGUF's q8_0/q4_0/q4_1/q5_0/\n"
            "                       q4_k/q6_k blocks byte for byte), except the transposed down\n"
            "                       projection\n"
            "                       and types flock does not store, which get --down-dtype;\n"
            "                       norms and biases stay f32; a matrix whose rows are not whole\n"
            "                       blocks is stored q4_1 (for q4_k), q8_0 (for q6_k) or f16\n"
            "  --down-dtype T       with --dtype source: the type of what is requantized\n"
            "                       (default q8_0)\n"
            "  --target LIST        cpu, x86-64-v3, x86-64-v4, aarch64, sm_80, sm_86, sm_89, sm_90\n"
            "                       (default cpu); recorded in the manifest. Each CPU target gets\n"
            "                       decode kernels generated through LLVM (gather FF at every keep\n"
            "                       ratio and 1.0, matrix-vector products) as the kernel section\n"
            "                       cpu:<name>; cpu = tuned for this machine's CPU. The runtime\n"
            "                       falls back to its portable kernels where they cannot run.\n"
            "                       %s\n"
            "                       Each sm_XY adds a kernel section cuda:sm_XY (CUBIN compiled\n"
            "                       by NVRTC for this model, its keep ratios and 1.0), and any sm\n"
            "                       target adds cuda:compute_80 (PTX for newer GPUs); needs\n"
            "                       f16, bf16, q8_0, q4_0 or q4_1 matrices (not q5_0, q4_k, q6_k) and\n"
            "                       a flockc built with CUDA%s\n"
            "  --level N            zstd level for the tensor data, 0..19 (default 3); 0 stores\n"
            "                       it uncompressed so the runtime can map it in place\n"
            "  --threads N          compression threads (default: all cores)\n"
            "  --emit-ir            print the compiled program (text IR) to stdout (and write\n"
            "                       the bundle too when -o is given)\n"
            "  --emit-cuda          print the generated CUDA C source to stdout (and write the\n"
            "                       bundle too when -o is given)\n"
            "  --quiet              no progress, no summary\n"
            "  -h, --help           this text\n"
            "\n"
            "The same MODEL and options give a byte-identical bundle (with --target cpu: on the\n"
            "same CPU model).\n",
#ifdef FLOCK_HAVE_LLVM
            "This flockc has LLVM: CPU kernels are generated.",
#else
            "This flockc was built without LLVM: no CPU kernels (x86-64-v3 etc. are errors).",
#endif
            flock_compile_cuda_available() ? "" : " (this one is not)");
}

typedef struct progress {
    bool tty, quiet;
    double t0, t_last, t_kernel;
    uint64_t bytes;
} progress;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_progress(void *user, const char *tensor, size_t index, size_t count, uint64_t bytes, int done)
{
    progress *pr = user;
    if (pr->quiet || (!done && !pr->tty))
        return;
    pr->bytes += bytes;
    double t = now(), el = t - pr->t0;
    if (!done) { /* name the tensor being produced (the large ones take seconds) */
        if (t - pr->t_last >= 0.05)
            fprintf(stderr, "\r\033[K%zu/%zu %s ...", index + 1, count, tensor);
        return;
    }
    double mbs = el > 0 ? pr->bytes / 1e6 / el : 0;
    if (!pr->tty) {
        fprintf(stderr, "flockc: [%zu/%zu] %s %.2f MB\n", index + 1, count, tensor, bytes / 1e6);
        return;
    }
    if (t - pr->t_last < 0.05 && index + 1 < count)
        return;
    pr->t_last = t;
    int width = 30, filled = (int)((index + 1) * (size_t)width / count);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[K[%s] %zu/%zu %-32.32s %8.1f MB %7.1f MB/s", bar, index + 1, count, tensor,
            pr->bytes / 1e6, mbs);
    if (index + 1 == count)
        fputc('\n', stderr);
}

/* NVRTC takes seconds per target: say which one is being compiled. */
static void on_kernel_progress(void *user, const char *section, size_t index, size_t count, uint64_t bytes,
                               int done)
{
    progress *pr = user;
    if (pr->quiet)
        return;
    if (!done) {
        pr->t_kernel = now();
        fprintf(stderr, "flockc: [%zu/%zu] %s: generating and compiling (NVRTC) ...%s", index + 1, count, section,
                pr->tty ? "" : "\n");
        return;
    }
    fprintf(stderr, "%sflockc: [%zu/%zu] %s: %.2f MB in %.1f s\n", pr->tty ? "\r\033[K" : "", index + 1, count,
            section, bytes / 1e6, now() - pr->t_kernel);
}

/* Bytes of a file, or of the regular files directly inside a folder. */
static uint64_t path_bytes(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    if (!S_ISDIR(sb.st_mode))
        return (uint64_t)sb.st_size;
    uint64_t total = 0;
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (uint64_t)sb.st_size;
    }
    if (d)
        closedir(d);
    return total;
}

static int fail(const char *what, const flock_error *e)
{
    fprintf(stderr, "flockc: %s: %s\n", what, e->msg[0] ? e->msg : flock_status_str(e->status));
    return 1;
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "flockc: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(try flockc --help)\n");
    return 2;
}

int main(int argc, char **argv)
{
    flock_compile_opts o = flock_compile_default_opts();
    o.auto_dtype = true;
    const char *model = NULL, *out = NULL;
    bool emit_ir = false, emit_cuda = false, quiet = false;
    flock_error e = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--emit-ir")) {
            emit_ir = true;
        } else if (!strcmp(a, "--emit-cuda")) {
            emit_cuda = true;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = true;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--keep") || !strcmp(a, "--dtype") ||
                   !strcmp(a, "--down-dtype") || !strcmp(a, "--target") || !strcmp(a, "--level") || !strcmp(a, "--threads")) {
            if (!has_next)
                return bad_usage("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
                out = v;
            } else if (!strcmp(a, "--keep")) {
                if (flock_compile_parse_keep(&o, v, &e))
                    return bad_usage("%s", e.msg);
            } else if (!strcmp(a, "--dtype")) {
                o.auto_dtype = !strcmp(v, "auto");
                o.source_dtype = !strcmp(v, "source");
                if (!o.auto_dtype && !o.source_dtype && (flock_dtype_parse(v, &o.dtype) || o.dtype == FLOCK_DTYPE_I32 ||
                                                         o.dtype == FLOCK_DTYPE_U8))
                    return bad_usage("--dtype: unknown dtype '%s' (auto, source, f16, bf16, f32, q8_0, q4_0, q4_1, "
                                     "q5_0, q4_k or q6_k)", v);
            } else if (!strcmp(a, "--down-dtype")) {
                if (flock_dtype_parse(v, &o.down_dtype) || o.down_dtype == FLOCK_DTYPE_I32 ||
                    o.down_dtype == FLOCK_DTYPE_U8)
                    return bad_usage("--down-dtype: unknown dtype '%s' (f16, bf16, f32, q8_0, q4_0, q4_1, q5_0, "
                                     "q4_k or q6_k)", v);
            } else if (!strcmp(a, "--target")) {
                if (flock_compile_parse_targets(&o, v, &e))
                    return bad_usage("%s", e.msg);
            } else {
                char *end;
                long n = strtol(v, &end, 10);
                bool level = !strcmp(a, "--level");
                if (*end || end == v || n < 0 || n > (level ? 19 : 1024))
                    return bad_usage(level ? "--level: '%s' is not in 0..19" : "--threads: '%s' is not in 0..1024",
                                     v);
                if (level)
                    o.level = (int)n;
                else
                    o.threads = (int)n;
            }
        } else if (a[0] == '-' && a[1]) {
            return bad_usage("unknown option '%s'", a);
        } else if (!model) {
            model = a;
        } else {
            return bad_usage("more than one MODEL given ('%s')", a);
        }
    }
    if (!model)
        return bad_usage("%s", "no MODEL given");
    if (!out && !emit_ir && !emit_cuda)
        return bad_usage("%s", "no output: give -o OUT.flock (or --emit-ir, --emit-cuda)");

    double t0 = now();
    flock_source *src = NULL;
    if (flock_source_open(model, &src, &e))
        return fail(model, &e);
    o = flock_compile_resolve_opts(src, &o); /* so --emit-cuda and the summary see it */
    if (emit_ir || emit_cuda) {
        flock_program *p = NULL;
        if (flock_compile_program(src, &o, &p, &e)) {
            flock_source_free(src);
            return fail(model, &e);
        }
        if (emit_ir)
            flock_program_print(p, stdout);
        if (emit_cuda) {
            char *cu = NULL;
            size_t cu_len = 0;
            if (flock_compile_cuda_source(p, &o, &cu, &cu_len, &e)) {
                flock_program_free(p);
                flock_source_free(src);
                return fail(model, &e);
            }
            fwrite(cu, 1, cu_len, stdout);
            free(cu);
        }
        flock_program_free(p);
        if (fflush(stdout) != 0 || !out) {
            flock_source_free(src);
            return out ? 1 : 0;
        }
    }
    progress pr = {isatty(STDERR_FILENO) != 0, quiet, t0, 0, 0, 0};
    o.progress = on_progress;
    o.kernel_progress = on_kernel_progress;
    o.progress_user = &pr;
    flock_compile_stats stats = {0};
    flock_status st = flock_compile_bundle(src, &o, out, &stats, &e);
    const char *arch = flock_source_arch(src);
    char arch_copy[32];
    snprintf(arch_copy, sizeof arch_copy, "%s", arch);
    flock_source_free(src);
    if (st) {
        if (pr.tty && !quiet)
            fputc('\n', stderr);
        return fail(model, &e);
    }
    if (!quiet) {
        double el = now() - t0;
        uint64_t in_bytes = path_bytes(model);
        fprintf(stderr, "flockc: %s (%s) -> %s: %zu tensors, %s, %.1f MB (tensors %.1f MB raw) from %.1f MB "
                "in %.2f s; bundle/source %.2f\n",
                model, arch_copy, out, stats.n_tensors, o.source_dtype ? "source types" : flock_dtype_name(o.dtype),
                stats.bundle_bytes / 1e6,
                stats.tensor_bytes / 1e6, in_bytes / 1e6, el, in_bytes ? (double)stats.bundle_bytes / in_bytes : 0.0);
        if (stats.cpu_kernels[0])
            fprintf(stderr, "flockc: cpu kernels: %s\n", stats.cpu_kernels);
        if (stats.n_dtype_fallback)
            fprintf(stderr, "flockc: %u matrices are not rows of whole blocks of their type and are stored in "
                    "another: %s\n", stats.n_dtype_fallback, stats.dtype_fallback);
    }
    return 0;
}
