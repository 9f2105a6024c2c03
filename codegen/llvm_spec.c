/* The CPU kernel spec of a compiled program: what flockc asks the LLVM code
 * generator for (see flock_llvm_cpu_spec_from_program in codegen.h). Reads
 * the program's structs only (no LLVM, no flock_ir functions). */
#include "flock/codegen.h"

#include <string.h>

static bool weight_dtype(flock_dtype t)
{
    return t == FLOCK_DTYPE_F32 || t == FLOCK_DTYPE_F16 || t == FLOCK_DTYPE_BF16;
}

static flock_status add_matvec(flock_cpu_matvec_spec *mv, uint32_t cap, uint32_t *n, int32_t cols,
                               flock_dtype dt, uint32_t op_index, flock_error *err)
{
    for (uint32_t i = 0; i < *n; i++)
        if (mv[i].cols == cols && mv[i].dtype == dt)
            return FLOCK_OK;
    if (*n >= cap)
        return flock_error_set(err, FLOCK_E_RANGE, "cpu kernels: op %u: more than %u matvec shapes", op_index, cap);
    mv[*n].cols = cols;
    mv[*n].dtype = dt;
    (*n)++;
    return FLOCK_OK;
}

flock_status flock_llvm_cpu_spec_from_program(const flock_program *p, const double *keep, uint32_t n_keep,
                                              flock_cpu_kernel_spec *spec, flock_cpu_matvec_spec *mv,
                                              uint32_t mv_cap, flock_error *err)
{
    if (!p || !spec || (n_keep && !keep) || (mv_cap && !mv))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: NULL argument");
    flock_cpu_kernel_spec s = {0};
    uint32_t n_mv = 0;
    bool have_ffn = false;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const flock_op *op = &p->ops[i];
        if (op->kind != FLOCK_OP_FFN && op->kind != FLOCK_OP_LINEAR && op->kind != FLOCK_OP_LM_HEAD)
            continue;
        if (op->n_in < 1 || op->in[0] < 0 || (uint32_t)op->in[0] >= p->n_values || op->w[0] < 0 ||
            (uint32_t)op->w[0] >= p->n_tensors)
            return flock_error_set(err, FLOCK_E_CORRUPT, "cpu kernels: op %u: input or weight id out of range", i);
        const flock_tensor_ref *w = &p->tensors[op->w[0]];
        int32_t width = p->values[op->in[0]].width;
        if (op->kind != FLOCK_OP_FFN) {
            if (!weight_dtype(w->dtype))
                continue; /* not a float matrix: the runtime's own kernels */
            flock_status st = add_matvec(mv, mv_cap, &n_mv, width, w->dtype, i, err);
            if (st != FLOCK_OK)
                return st;
            continue;
        }
        /* The generated FF is the gated one over the packed layout. */
        if (!op->gated || op->ffn_layout != FLOCK_FFN_PACKED || !weight_dtype(w->dtype) || n_keep == 0)
            continue;
        if (!have_ffn) {
            s.d_model = width;
            s.d_ff = op->d_ff;
            s.act = op->act;
            s.ffn_dtype = w->dtype;
            have_ffn = true;
        } else if (s.d_model != width || s.d_ff != op->d_ff || s.act != op->act || s.ffn_dtype != w->dtype) {
            return flock_error_set(err, FLOCK_E_UNSUPPORTED,
                                   "cpu kernels: op %u (ffn, layer %d): d=%d d_ff=%d %s differs from the first FFN "
                                   "(d=%d d_ff=%d %s); one FF shape per program",
                                   i, op->layer, width, op->d_ff, flock_dtype_name(w->dtype), s.d_model, s.d_ff,
                                   flock_dtype_name(s.ffn_dtype));
        }
    }
    if (have_ffn) {
        s.n_keep = n_keep;
        s.keep = keep;
    }
    s.n_matvec = n_mv;
    s.matvec = n_mv ? mv : NULL;
    if (!have_ffn && n_mv == 0)
        return flock_error_set(err, FLOCK_E_NOT_FOUND,
                               "cpu kernels: the program has no gated packed FFN and no f32/f16/bf16 matrix");
    *spec = s;
    return FLOCK_OK;
}
