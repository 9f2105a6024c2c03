/* The bundle's generated CPU kernels: for each CPU target of --target
 * ("cpu" = the compiling host, "x86-64-v3", "x86-64-v4", "aarch64"), one
 * kernel container (codegen, through the LLVM C API) stored as the kernel
 * section "cpu:<canonical target name>". Without FLOCK_LLVM only "cpu" is
 * accepted and no section is written (the runtime then uses its portable
 * kernels); the compile summary says so. */
#include "frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FLOCK_HAVE_LLVM
#include "flock/codegen.h"
#endif

/* CPU targets flockc knows; "cpu" is the only one that needs no LLVM. */
static const char *const cpu_targets[] = {"cpu", "x86-64-v3", "x86-64-v4", "aarch64"};

bool flock_compile_is_cpu_target(const char *t)
{
    for (size_t i = 0; i < sizeof cpu_targets / sizeof cpu_targets[0]; i++)
        if (!strcmp(t, cpu_targets[i]))
            return true;
    return false;
}

flock_status flock_compile_check_cpu_target(const char *t, flock_error *err)
{
#ifdef FLOCK_HAVE_LLVM
    if (!flock_llvm_cpu_target_supported(t))
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "--target: '%s' is not supported by this flockc's LLVM", t);
    return FLOCK_OK;
#else
    if (strcmp(t, "cpu") != 0)
        return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                               "--target %s: this flockc was built without LLVM (configure with -DFLOCK_LLVM=ON "
                               "to generate CPU kernels; plain 'cpu' works without)", t);
    return FLOCK_OK;
#endif
}

static void note(flock_compile_stats *st, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(st->cpu_kernels);
    if (len + 3 >= sizeof st->cpu_kernels)
        return;
    if (len)
        len += (size_t)snprintf(st->cpu_kernels + len, sizeof st->cpu_kernels - len, "; ");
    snprintf(st->cpu_kernels + len, sizeof st->cpu_kernels - len, fmt, a, b);
}

#ifdef FLOCK_HAVE_LLVM
#define MAX_MATVEC 64

flock_status flock_compile_cpu_kernels(const cmodel *cm, const flock_compile_opts *o, flock_bundle_writer *w,
                                       flock_compile_stats *stats, flock_error *err)
{
    /* The compiled keep ratios, and 1.0 (k = d_ff) so that a session
     * without GRIFFIN selection uses the generated FF too. */
    double keep[FLOCK_MAX_KEEP + 1];
    uint32_t n_keep = 0;
    bool have_one = false;
    for (size_t i = 0; i < o->n_keep; i++) {
        keep[n_keep++] = o->keep[i];
        have_one = have_one || o->keep[i] >= 1.0;
    }
    if (!have_one)
        keep[n_keep++] = 1.0;
    bool any_cpu = false;
    for (size_t t = 0; t < o->n_targets; t++)
        any_cpu = any_cpu || flock_compile_is_cpu_target(o->targets[t]);
    if (!any_cpu)
        return FLOCK_OK;
    flock_cpu_kernel_spec spec;
    flock_cpu_matvec_spec mv[MAX_MATVEC];
    flock_error e2 = {0};
    flock_status st = flock_llvm_cpu_spec_from_program(cm->p, keep, n_keep, &spec, mv, MAX_MATVEC, &e2);
    if (st == FLOCK_E_NOT_FOUND || st == FLOCK_E_UNSUPPORTED || st == FLOCK_E_RANGE) {
        /* nothing this generator can specialize: the portable kernels run it */
        note(stats, "none (%.160s)%s", e2.msg, "");
        return FLOCK_OK;
    }
    if (st != FLOCK_OK) {
        if (err) /* err may be NULL: the status alone goes back then */
            *err = e2;
        return st;
    }
    for (size_t t = 0; t < o->n_targets; t++) {
        const char *target = o->targets[t];
        if (!flock_compile_is_cpu_target(target))
            continue;
        char name[96] = "cpu:";
        st = flock_llvm_cpu_target_name(target, name + 4, sizeof name - 4, err);
        if (st != FLOCK_OK)
            return st;
        uint8_t *cont = NULL;
        size_t size = 0;
        st = flock_llvm_cpu_kernels(&spec, target, &cont, &size, err);
        if (st != FLOCK_OK)
            return flock_error_prefix(err, st, "--target %s", target);
        st = flock_bundle_writer_add_section(w, FLOCK_SECTION_KERNELS, name, cont, size, o->level > 0, err);
        free(cont);
        if (st != FLOCK_OK)
            return st;
        char kb[32];
        snprintf(kb, sizeof kb, "%.1f KB", (double)size / 1e3);
        note(stats, "%s (%s)", name, kb);
        stats->n_cpu_kernel_sections++;
    }
    return FLOCK_OK;
}
#else
flock_status flock_compile_cpu_kernels(const cmodel *cm, const flock_compile_opts *o, flock_bundle_writer *w,
                                       flock_compile_stats *stats, flock_error *err)
{
    (void)cm;
    (void)w;
    for (size_t t = 0; t < o->n_targets; t++)
        if (flock_compile_is_cpu_target(o->targets[t])) {
            flock_status st = flock_compile_check_cpu_target(o->targets[t], err);
            if (st != FLOCK_OK)
                return st;
            note(stats, "none (%s%s)", "this flockc was built without LLVM: the runtime uses its portable kernels",
                 "");
            break;
        }
    return FLOCK_OK;
}
#endif
