/* LLVM IR for flock's CPU kernels: the GRIFFIN gather FF (gate/up phase and
 * down phase) and the dense matrix-vector product, specialized to a model's
 * shapes and weight dtype, built with the LLVM C API (no C text).
 *
 * Style of the IR: loop counters and accumulators live in allocas that the
 * O3 pipeline (SROA/mem2reg) turns into registers, which keeps the emitters
 * short. Vector values are <vw x float>; weights are loaded as <vw x T> with
 * the element's alignment (the tensors need not be vector-aligned) and
 * widened to f32. Nothing here calls a library: exp, tanh and erf are
 * polynomials, fmuladd never becomes a call, and every function carries
 * "no-builtins" so the optimizer does not turn the zeroing loop into memset. */
#include "llvm_cpu.h"

#include "cpu_kernels_format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lk {
    LLVMContextRef C;
    LLVMModuleRef M;
    LLVMBuilderRef B;
    const lcpu_target_opts *t;
    int vw;
    LLVMTypeRef f32, f16, i16, i32, i64, i8p, voidt;
    LLVMValueRef fn;          /* function being built */
    LLVMBasicBlockRef entry;  /* allocas go here */
} lk;

/* ---- small helpers ------------------------------------------------------ */

static LLVMTypeRef ty_f(lk *k, int w) { return w == 1 ? k->f32 : LLVMVectorType(k->f32, (unsigned)w); }
static LLVMTypeRef ty_i32(lk *k, int w) { return w == 1 ? k->i32 : LLVMVectorType(k->i32, (unsigned)w); }

/* A float constant of width w (scalar or splat). */
static LLVMValueRef cf(lk *k, int w, double v)
{
    LLVMValueRef s = LLVMConstReal(k->f32, v);
    if (w == 1)
        return s;
    LLVMValueRef e[16];
    for (int i = 0; i < w; i++)
        e[i] = s;
    return LLVMConstVector(e, (unsigned)w);
}

static LLVMValueRef ci32(lk *k, int w, int64_t v)
{
    LLVMValueRef s = LLVMConstInt(k->i32, (unsigned long long)v, 1);
    if (w == 1)
        return s;
    LLVMValueRef e[16];
    for (int i = 0; i < w; i++)
        e[i] = s;
    return LLVMConstVector(e, (unsigned)w);
}

static LLVMValueRef ci64(lk *k, int64_t v) { return LLVMConstInt(k->i64, (unsigned long long)v, 1); }

static LLVMValueRef splat(lk *k, LLVMValueRef s, int w)
{
    if (w == 1)
        return s;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)w);
    LLVMValueRef v = LLVMBuildInsertElement(k->B, LLVMGetUndef(vt), s, ci32(k, 1, 0), "");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(k->i32, (unsigned)w));
    return LLVMBuildShuffleVector(k->B, v, LLVMGetUndef(vt), zeros, "splat");
}

/* llvm.fmuladd: fused where the target has FMA, mul+add otherwise; never a call. */
static LLVMValueRef fmuladd(lk *k, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef t = LLVMTypeOf(a);
    unsigned id = LLVMLookupIntrinsicID("llvm.fmuladd", 12);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(k->M, id, &t, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(k->C, id, &t, 1);
    LLVMValueRef args[3] = {a, b, c};
    return LLVMBuildCall2(k->B, ft, f, args, 3, "");
}

static LLVMValueRef fmin_(lk *k, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(k->B, LLVMBuildFCmp(k->B, LLVMRealOLT, a, b, ""), a, b, "");
}

static LLVMValueRef fmax_(lk *k, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(k->B, LLVMBuildFCmp(k->B, LLVMRealOGT, a, b, ""), a, b, "");
}

static LLVMValueRef alloca_init(lk *k, LLVMTypeRef t, LLVMValueRef init)
{
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(k->B);
    LLVMValueRef first = LLVMGetFirstInstruction(k->entry);
    if (first)
        LLVMPositionBuilderBefore(k->B, first);
    else
        LLVMPositionBuilderAtEnd(k->B, k->entry);
    LLVMValueRef a = LLVMBuildAlloca(k->B, t, "");
    LLVMPositionBuilderAtEnd(k->B, cur);
    LLVMBuildStore(k->B, init, a);
    return a;
}

static LLVMValueRef ld(lk *k, LLVMTypeRef t, LLVMValueRef p) { return LLVMBuildLoad2(k->B, t, p, ""); }

static LLVMValueRef gep(lk *k, LLVMTypeRef elem, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildGEP2(k->B, elem, p, &i, 1, "");
}

/* Loads w elements of type elem at p[i] with the element's alignment. */
static LLVMValueRef load_elems(lk *k, LLVMTypeRef elem, LLVMValueRef p, LLVMValueRef i, int w, unsigned align)
{
    LLVMValueRef q = gep(k, elem, p, i);
    LLVMTypeRef t = elem;
    if (w > 1) {
        t = LLVMVectorType(elem, (unsigned)w);
        q = LLVMBuildBitCast(k->B, q, LLVMPointerType(t, 0), "");
    }
    LLVMValueRef v = ld(k, t, q);
    LLVMSetAlignment(v, align);
    return v;
}

static void store_f(lk *k, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, int w)
{
    LLVMValueRef q = gep(k, k->f32, p, i);
    if (w > 1)
        q = LLVMBuildBitCast(k->B, q, LLVMPointerType(ty_f(k, w), 0), "");
    LLVMSetAlignment(LLVMBuildStore(k->B, v, q), 4);
}

static LLVMTypeRef weight_elem(lk *k, flock_dtype dt) { return dt == FLOCK_DTYPE_F32 ? k->f32 : k->i16; }

/* f16 bits (i16 lanes) -> f32 without F16C: the exponent rebias is a multiply
 * by 2^112, which also handles subnormals; inf/NaN keep an all-ones exponent. */
static LLVMValueRef f16_bits_to_f32(lk *k, LLVMValueRef h, int w)
{
    LLVMTypeRef ti = ty_i32(k, w);
    LLVMValueRef u = LLVMBuildZExt(k->B, h, ti, "");
    LLVMValueRef sign = LLVMBuildShl(k->B, LLVMBuildAnd(k->B, u, ci32(k, w, 0x8000), ""), ci32(k, w, 16), "");
    LLVMValueRef mag = LLVMBuildShl(k->B, LLVMBuildAnd(k->B, u, ci32(k, w, 0x7fff), ""), ci32(k, w, 13), "");
    LLVMValueRef scaled = LLVMBuildFMul(k->B, LLVMBuildBitCast(k->B, mag, ty_f(k, w), ""), cf(k, w, 0x1p112), "");
    LLVMValueRef infnan = LLVMBuildICmp(k->B, LLVMIntEQ, LLVMBuildAnd(k->B, u, ci32(k, w, 0x7c00), ""),
                                        ci32(k, w, 0x7c00), "");
    LLVMValueRef bits = LLVMBuildSelect(k->B, infnan, LLVMBuildOr(k->B, mag, ci32(k, w, 0x7f800000), ""),
                                        LLVMBuildBitCast(k->B, scaled, ti, ""), "");
    return LLVMBuildBitCast(k->B, LLVMBuildOr(k->B, bits, sign, ""), ty_f(k, w), "");
}

/* w weights of dtype dt at p[i], widened to f32. */
static LLVMValueRef load_weights(lk *k, flock_dtype dt, LLVMValueRef p, LLVMValueRef i, int w)
{
    if (dt == FLOCK_DTYPE_F32)
        return load_elems(k, k->f32, p, i, w, 4);
    LLVMValueRef h = load_elems(k, k->i16, p, i, w, 2);
    if (dt == FLOCK_DTYPE_BF16) {
        LLVMValueRef u = LLVMBuildShl(k->B, LLVMBuildZExt(k->B, h, ty_i32(k, w), ""), ci32(k, w, 16), "");
        return LLVMBuildBitCast(k->B, u, ty_f(k, w), "");
    }
    if (k->t->native_f16) {
        LLVMTypeRef ht = w == 1 ? k->f16 : LLVMVectorType(k->f16, (unsigned)w);
        return LLVMBuildFPExt(k->B, LLVMBuildBitCast(k->B, h, ht, ""), ty_f(k, w), "");
    }
    return f16_bits_to_f32(k, h, w);
}

/* Prefetches `lines` 64-byte lines from p (an element pointer) into all cache
 * levels: the start of a row the hardware prefetcher has not seen yet. */
static void prefetch_lines(lk *k, LLVMValueRef p, int lines)
{
    if (lines <= 0)
        return;
    LLVMTypeRef i8 = LLVMInt8TypeInContext(k->C);
    LLVMValueRef b = LLVMBuildBitCast(k->B, p, k->i8p, "");
    LLVMTypeRef pt = k->i8p;
    unsigned id = LLVMLookupIntrinsicID("llvm.prefetch", 13);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(k->M, id, &pt, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(k->C, id, &pt, 1);
    for (int i = 0; i < lines; i++) {
        LLVMValueRef a = gep(k, i8, b, ci64(k, 64 * i));
        LLVMValueRef args[4] = {a, ci32(k, 1, 0), ci32(k, 1, 3), ci32(k, 1, 1)};
        LLVMBuildCall2(k->B, ft, f, args, 4, "");
    }
}

/* ---- counted loops over an i64 counter in an alloca --------------------- */

typedef struct lk_loop {
    LLVMValueRef var;
    LLVMBasicBlockRef head, exit;
    int64_t step;
    LLVMValueRef i; /* counter value inside the body */
} lk_loop;

/* Runs the body while var + step <= end (so step 1 is var < end). The
 * counter keeps its value after the loop: the next loop can continue. */
static void loop_begin(lk *k, lk_loop *l, LLVMValueRef var, LLVMValueRef end, int64_t step)
{
    l->var = var;
    l->step = step;
    l->head = LLVMAppendBasicBlockInContext(k->C, k->fn, "head");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(k->C, k->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(k->C, k->fn, "exit");
    LLVMBuildBr(k->B, l->head);
    LLVMPositionBuilderAtEnd(k->B, l->head);
    LLVMValueRef i = ld(k, k->i64, var);
    LLVMValueRef next = LLVMBuildAdd(k->B, i, ci64(k, step), "");
    LLVMBuildCondBr(k->B, LLVMBuildICmp(k->B, LLVMIntSLE, next, end, ""), body, l->exit);
    LLVMPositionBuilderAtEnd(k->B, body);
    l->i = ld(k, k->i64, var);
}

static void loop_end(lk *k, lk_loop *l)
{
    LLVMBuildStore(k->B, LLVMBuildAdd(k->B, l->i, ci64(k, l->step), ""), l->var);
    LLVMBuildBr(k->B, l->head);
    LLVMPositionBuilderAtEnd(k->B, l->exit);
}

/* ---- dot products -------------------------------------------------------- */

/* Horizontal sum of a <w x float>: halves added until one lane is left. */
static LLVMValueRef hsum(lk *k, LLVMValueRef v, int w)
{
    while (w > 1) {
        int h = w / 2;
        LLVMValueRef lo[8], hi[8];
        for (int i = 0; i < h; i++) {
            lo[i] = ci32(k, 1, i);
            hi[i] = ci32(k, 1, h + i);
        }
        LLVMValueRef u = LLVMGetUndef(LLVMTypeOf(v));
        LLVMValueRef a = LLVMBuildShuffleVector(k->B, v, u, LLVMConstVector(lo, (unsigned)h), "");
        LLVMValueRef b = LLVMBuildShuffleVector(k->B, v, u, LLVMConstVector(hi, (unsigned)h), "");
        v = LLVMBuildFAdd(k->B, a, b, "");
        w = h;
    }
    return LLVMBuildExtractElement(k->B, v, ci32(k, 1, 0), "");
}

#define LK_MAX_ROWS 4
#define LK_MAX_ACC 4

/* out[r] = rows[r][0:n] . x[0:n] for R rows of dtype dt (element pointers)
 * sharing the x loads, with U vector accumulators per row. n is a constant:
 * the main loop covers whole steps of U*vw, the rest is straight-line code. */
static void emit_dots(lk *k, flock_dtype dt, LLVMValueRef *rows, int R, LLVMValueRef x, int64_t n, int U,
                      LLVMValueRef *out)
{
    int vw = k->vw;
    LLVMTypeRef vf = ty_f(k, vw);
    LLVMValueRef acc[LK_MAX_ROWS][LK_MAX_ACC];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < U; u++)
            acc[r][u] = alloca_init(k, vf, cf(k, vw, 0));

    int64_t step = (int64_t)U * vw, main_end = n / step * step;
    if (main_end > 0) {
        LLVMValueRef c = alloca_init(k, k->i64, ci64(k, 0));
        lk_loop l;
        loop_begin(k, &l, c, ci64(k, main_end), step);
        for (int u = 0; u < U; u++) {
            LLVMValueRef off = LLVMBuildAdd(k->B, l.i, ci64(k, (int64_t)u * vw), "");
            LLVMValueRef xv = load_elems(k, k->f32, x, off, vw, 4);
            for (int r = 0; r < R; r++) {
                LLVMValueRef wv = load_weights(k, dt, rows[r], off, vw);
                LLVMBuildStore(k->B, fmuladd(k, wv, xv, ld(k, vf, acc[r][u])), acc[r][u]);
            }
        }
        loop_end(k, &l);
    }
    /* Whole vectors left over, then single elements. */
    int64_t c = main_end;
    for (int u = 0; c + vw <= n; c += vw, u++) {
        LLVMValueRef xv = load_elems(k, k->f32, x, ci64(k, c), vw, 4);
        for (int r = 0; r < R; r++) {
            LLVMValueRef wv = load_weights(k, dt, rows[r], ci64(k, c), vw);
            LLVMBuildStore(k->B, fmuladd(k, wv, xv, ld(k, vf, acc[r][u % U])), acc[r][u % U]);
        }
    }
    for (int r = 0; r < R; r++) {
        LLVMValueRef v = ld(k, vf, acc[r][0]);
        for (int u = 1; u < U; u++)
            v = LLVMBuildFAdd(k->B, v, ld(k, vf, acc[r][u]), "");
        LLVMValueRef s = hsum(k, v, vw);
        for (int64_t e = c; e < n; e++) {
            LLVMValueRef xs = load_elems(k, k->f32, x, ci64(k, e), 1, 4);
            s = fmuladd(k, load_weights(k, dt, rows[r], ci64(k, e), 1), xs, s);
        }
        out[r] = s;
    }
}

/* ---- activations (any width; no library calls) --------------------------- */

/* e^x for x clamped to [-87, 88]: x = n ln2 + r, |r| <= ln2/2, a degree-6
 * polynomial for e^r (about 1 ulp) and 2^n built in the exponent bits. */
static LLVMValueRef emit_exp(lk *k, LLVMValueRef x, int w)
{
    x = fmin_(k, fmax_(k, x, cf(k, w, -87.0)), cf(k, w, 88.0));
    /* Adding and subtracting 1.5*2^23 rounds to the nearest integer. */
    LLVMValueRef t = fmuladd(k, x, cf(k, w, 1.44269504088896341), cf(k, w, 12582912.0));
    LLVMValueRef nf = LLVMBuildFSub(k->B, t, cf(k, w, 12582912.0), "");
    LLVMValueRef r = fmuladd(k, nf, cf(k, w, -0.693359375), x);
    r = fmuladd(k, nf, cf(k, w, 2.12194440e-4), r);
    static const double c[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                               4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1};
    LLVMValueRef p = cf(k, w, c[0]);
    for (int i = 1; i < 6; i++)
        p = fmuladd(k, p, r, cf(k, w, c[i]));
    LLVMValueRef r2 = LLVMBuildFMul(k->B, r, r, "");
    LLVMValueRef y = LLVMBuildFAdd(k->B, fmuladd(k, p, r2, r), cf(k, w, 1.0), "");
    LLVMValueRef ni = LLVMBuildFPToSI(k->B, nf, ty_i32(k, w), "");
    LLVMValueRef bits = LLVMBuildShl(k->B, LLVMBuildAdd(k->B, ni, ci32(k, w, 127), ""), ci32(k, w, 23), "");
    return LLVMBuildFMul(k->B, y, LLVMBuildBitCast(k->B, bits, ty_f(k, w), ""), "");
}

/* 1 + erf(x) = erfc(-x), from the Chebyshev fit of erfc in Numerical
 * Recipes (relative error < 1.2e-7 over the whole line). Computing erfc
 * directly keeps the relative precision where 1 + erf(x) is tiny (x << 0),
 * which 1 + erf would lose to cancellation. */
static LLVMValueRef emit_one_plus_erf(lk *k, LLVMValueRef x, int w)
{
    LLVMValueRef neg = LLVMBuildFCmp(k->B, LLVMRealOLT, x, cf(k, w, 0.0), "");
    LLVMValueRef z = LLVMBuildSelect(k->B, neg, LLVMBuildFNeg(k->B, x, ""), x, "");
    LLVMValueRef t = LLVMBuildFDiv(k->B, cf(k, w, 1.0), fmuladd(k, z, cf(k, w, 0.5), cf(k, w, 1.0)), "");
    static const double c[] = {0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                               -0.18628806, 0.09678418,  0.37409196, 1.00002368, -1.26551223};
    LLVMValueRef p = cf(k, w, c[0]);
    for (int i = 1; i < 10; i++)
        p = fmuladd(k, p, t, cf(k, w, c[i]));
    LLVMValueRef arg = LLVMBuildFSub(k->B, p, LLVMBuildFMul(k->B, z, z, ""), "");
    LLVMValueRef erfc_z = LLVMBuildFMul(k->B, t, emit_exp(k, arg, w), ""); /* erfc(|x|) */
    /* x < 0: 1 + erf(x) = erfc(|x|); x >= 0: 2 - erfc(x). */
    return LLVMBuildSelect(k->B, neg, erfc_z, LLVMBuildFSub(k->B, cf(k, w, 2.0), erfc_z, ""), "");
}

/* g / (1 + e^(-s)), i.e. g * sigmoid(s), precise for either sign of s. */
static LLVMValueRef emit_times_sigmoid(lk *k, LLVMValueRef g, LLVMValueRef s, int w)
{
    LLVMValueRef e = emit_exp(k, LLVMBuildFNeg(k->B, s, ""), w);
    return LLVMBuildFDiv(k->B, g, LLVMBuildFAdd(k->B, e, cf(k, w, 1.0), ""), "");
}

static LLVMValueRef emit_act(lk *k, flock_act act, LLVMValueRef g, int w)
{
    switch (act) {
    case FLOCK_ACT_SILU:
        return emit_times_sigmoid(k, g, g, w);
    case FLOCK_ACT_GELU_TANH: {
        /* 0.5 g (1 + tanh(v)) = g * sigmoid(2v): no cancellation for g < 0. */
        LLVMValueRef g3 = LLVMBuildFMul(k->B, LLVMBuildFMul(k->B, g, g, ""), g, "");
        LLVMValueRef v2 = LLVMBuildFMul(k->B, fmuladd(k, g3, cf(k, w, 0.044715), g),
                                        cf(k, w, 2 * 0.7978845608028654), "");
        return emit_times_sigmoid(k, g, v2, w);
    }
    case FLOCK_ACT_GELU: {
        LLVMValueRef ope = emit_one_plus_erf(k, LLVMBuildFMul(k->B, g, cf(k, w, 0.7071067811865476), ""), w);
        return LLVMBuildFMul(k->B, LLVMBuildFMul(k->B, g, cf(k, w, 0.5), ""), ope, "");
    }
    case FLOCK_ACT_RELU:
        return fmax_(k, g, cf(k, w, 0.0));
    default:
        return g;
    }
}

/* ---- functions ----------------------------------------------------------- */

static void add_fn_attr(lk *k, LLVMValueRef fn, const char *key, const char *val)
{
    LLVMAttributeRef a = LLVMCreateStringAttribute(k->C, key, (unsigned)strlen(key), val, (unsigned)strlen(val));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

static void add_enum_attr(lk *k, LLVMValueRef fn, unsigned idx, const char *name)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(k->C, kind, 0));
}

/* Declares an exported kernel; `noalias_mask` marks pointer params (bit i =
 * param i) that never overlap anything else the kernel touches. */
static LLVMValueRef begin_fn(lk *k, const char *name, LLVMTypeRef *params, unsigned np, unsigned noalias_mask)
{
    LLVMTypeRef ft = LLVMFunctionType(k->voidt, params, np, 0);
    LLVMValueRef fn = LLVMAddFunction(k->M, name, ft);
    add_enum_attr(k, fn, LLVMAttributeFunctionIndex, "nounwind");
    add_fn_attr(k, fn, "no-builtins", "");
    add_fn_attr(k, fn, "frame-pointer", "none");
    if (k->t->cpu && *k->t->cpu)
        add_fn_attr(k, fn, "target-cpu", k->t->cpu);
    if (k->t->tune && *k->t->tune)
        add_fn_attr(k, fn, "tune-cpu", k->t->tune);
    if (k->t->features && *k->t->features)
        add_fn_attr(k, fn, "target-features", k->t->features);
    for (unsigned i = 0; i < np; i++)
        if (noalias_mask & (1u << i))
            add_enum_attr(k, fn, i + 1, "noalias");
    k->fn = fn;
    k->entry = LLVMAppendBasicBlockInContext(k->C, fn, "entry");
    LLVMPositionBuilderAtEnd(k->B, k->entry);
    return fn;
}

static LLVMValueRef as_ptr(lk *k, LLVMValueRef p, LLVMTypeRef elem)
{
    return LLVMBuildBitCast(k->B, p, LLVMPointerType(elem, 0), "");
}

/* Clamps the i32 parameter v to [lo, hi] and widens it to i64. */
static LLVMValueRef clamp_i64(lk *k, LLVMValueRef v, int64_t lo, int64_t hi)
{
    LLVMValueRef x = LLVMBuildSExt(k->B, v, k->i64, "");
    x = LLVMBuildSelect(k->B, LLVMBuildICmp(k->B, LLVMIntSLT, x, ci64(k, lo), ""), ci64(k, lo), x, "");
    return LLVMBuildSelect(k->B, LLVMBuildICmp(k->B, LLVMIntSGT, x, ci64(k, hi), ""), ci64(k, hi), x, "");
}

/* Row i = idx[j] of a [n_rows, width] weight tensor. An index outside
 * [0, n_rows) (a caller's bug) is clamped, one unsigned compare per row,
 * so it can never read outside the tensor. */
static LLVMValueRef row_of(lk *k, flock_dtype dt, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef j,
                           int64_t n_rows, int64_t width)
{
    LLVMValueRef i = LLVMBuildSExt(k->B, load_elems(k, k->i32, idx, j, 1, 4), k->i64, "");
    LLVMValueRef ok = LLVMBuildICmp(k->B, LLVMIntULT, i, ci64(k, n_rows), "");
    i = LLVMBuildSelect(k->B, ok, i, ci64(k, n_rows - 1), "");
    return gep(k, weight_elem(k, dt), base, LLVMBuildMul(k->B, i, ci64(k, width), ""));
}

/* FFN_UP: h[j] = act(gate_i . x) * (up_i . x), i = idx[j], j in [j0, j1) & [0, k). */
static void emit_ffn_up(lk *k, const lcpu_kernel *kd)
{
    LLVMTypeRef p[6] = {LLVMPointerType(k->f32, 0), LLVMPointerType(k->i32, 0), k->i32, k->i32, k->i8p,
                        LLVMPointerType(k->f32, 0)};
    LLVMValueRef fn = begin_fn(k, kd->name, p, 6, 1u << 5);
    LLVMValueRef x = LLVMGetParam(fn, 0), idx = LLVMGetParam(fn, 1), h = LLVMGetParam(fn, 5);
    LLVMValueRef gu = as_ptr(k, LLVMGetParam(fn, 4), weight_elem(k, kd->dtype));
    LLVMValueRef j0 = clamp_i64(k, LLVMGetParam(fn, 2), 0, kd->k);
    LLVMValueRef j1 = clamp_i64(k, LLVMGetParam(fn, 3), 0, kd->k);
    int64_t d = kd->d;
    LLVMValueRef j = alloca_init(k, k->i64, j0);

    /* Two neurons per iteration share the x loads (4 rows, 2 accumulators each). */
    lk_loop l;
    loop_begin(k, &l, j, j1, 2);
    LLVMValueRef rows[4], dots[4];
    for (int t = 0; t < 2; t++) {
        LLVMValueRef jt = LLVMBuildAdd(k->B, l.i, ci64(k, t), "");
        rows[2 * t] = row_of(k, kd->dtype, gu, idx, jt, kd->n, 2 * d);
        rows[2 * t + 1] = gep(k, weight_elem(k, kd->dtype), rows[2 * t], ci64(k, d));
    }
    if (k->t->prefetch_lines > 0) {
        /* The next pair's rows, whole up to 4 KiB (gate and up: 2d elements;
         * the last pair prefetches its own again). The first 1 KiB only left
         * the rest to the hardware prefetcher, which picks up a gathered row
         * late; the runtime's built-in gather prefetches whole rows too. */
        int64_t row_lines = (2 * d * (kd->dtype == FLOCK_DTYPE_F32 ? 4 : 2) + 63) / 64;
        int lines = (int)(row_lines < 64 ? row_lines : 64);
        LLVMValueRef last = LLVMBuildSub(k->B, j1, ci64(k, 1), "");
        for (int t = 2; t < 4; t++) {
            LLVMValueRef jn = LLVMBuildAdd(k->B, l.i, ci64(k, t), "");
            jn = LLVMBuildSelect(k->B, LLVMBuildICmp(k->B, LLVMIntSLT, jn, j1, ""), jn, last, "");
            prefetch_lines(k, row_of(k, kd->dtype, gu, idx, jn, kd->n, 2 * d), lines);
        }
    }
    emit_dots(k, kd->dtype, rows, 4, x, d, 2, dots);
    for (int t = 0; t < 2; t++) {
        LLVMValueRef hv = LLVMBuildFMul(k->B, emit_act(k, kd->act, dots[2 * t], 1), dots[2 * t + 1], "");
        store_f(k, hv, h, LLVMBuildAdd(k->B, l.i, ci64(k, t), ""), 1);
    }
    loop_end(k, &l);

    /* An odd last neuron. */
    loop_begin(k, &l, j, j1, 1);
    rows[0] = row_of(k, kd->dtype, gu, idx, l.i, kd->n, 2 * d);
    rows[1] = gep(k, weight_elem(k, kd->dtype), rows[0], ci64(k, d));
    emit_dots(k, kd->dtype, rows, 2, x, d, 4, dots);
    store_f(k, LLVMBuildFMul(k->B, emit_act(k, kd->act, dots[0], 1), dots[1], ""), h, l.i, 1);
    loop_end(k, &l);
    LLVMBuildRetVoid(k->B);
}

/* y[c0:c1) += sum over R rows of hs[r] * rows[r][c0:c1): vectors, then single columns. */
static void emit_axpy_rows(lk *k, flock_dtype dt, LLVMValueRef *rows, LLVMValueRef *hs, int R, LLVMValueRef y,
                           LLVMValueRef c0, LLVMValueRef c1)
{
    int vw = k->vw;
    LLVMValueRef hv[LK_MAX_ROWS];
    for (int r = 0; r < R; r++)
        hv[r] = splat(k, hs[r], vw);
    LLVMValueRef c = alloca_init(k, k->i64, c0);
    lk_loop l;
    loop_begin(k, &l, c, c1, vw);
    LLVMValueRef acc = load_elems(k, k->f32, y, l.i, vw, 4);
    for (int r = 0; r < R; r++)
        acc = fmuladd(k, load_weights(k, dt, rows[r], l.i, vw), hv[r], acc);
    store_f(k, acc, y, l.i, vw);
    loop_end(k, &l);
    loop_begin(k, &l, c, c1, 1);
    LLVMValueRef s = load_elems(k, k->f32, y, l.i, 1, 4);
    for (int r = 0; r < R; r++)
        s = fmuladd(k, load_weights(k, dt, rows[r], l.i, 1), hs[r], s);
    store_f(k, s, y, l.i, 1);
    loop_end(k, &l);
}

/* FFN_DOWN: y[c] = sum_{j<k} h[j] * down_t[idx[j]][c] for c in [c0, c1) & [0, d).
 * Four kept rows per pass over the column range: one y load/store per four
 * weight vectors, and four sequential streams for the prefetcher. */
static void emit_ffn_down(lk *k, const lcpu_kernel *kd)
{
    LLVMTypeRef p[6] = {LLVMPointerType(k->f32, 0), LLVMPointerType(k->i32, 0), k->i32, k->i32, k->i8p,
                        LLVMPointerType(k->f32, 0)};
    LLVMValueRef fn = begin_fn(k, kd->name, p, 6, 1u << 5);
    LLVMValueRef h = LLVMGetParam(fn, 0), idx = LLVMGetParam(fn, 1), y = LLVMGetParam(fn, 5);
    LLVMValueRef dt = as_ptr(k, LLVMGetParam(fn, 4), weight_elem(k, kd->dtype));
    LLVMValueRef c0 = clamp_i64(k, LLVMGetParam(fn, 2), 0, kd->d);
    LLVMValueRef c1 = clamp_i64(k, LLVMGetParam(fn, 3), 0, kd->d);
    int vw = k->vw;

    LLVMValueRef c = alloca_init(k, k->i64, c0);
    lk_loop l;
    loop_begin(k, &l, c, c1, vw);
    store_f(k, cf(k, vw, 0), y, l.i, vw);
    loop_end(k, &l);
    loop_begin(k, &l, c, c1, 1);
    store_f(k, cf(k, 1, 0), y, l.i, 1);
    loop_end(k, &l);

    LLVMValueRef j = alloca_init(k, k->i64, ci64(k, 0));
    for (int R = 4; R >= 1; R -= 3) {
        loop_begin(k, &l, j, ci64(k, kd->k), R);
        LLVMValueRef rows[4], hs[4];
        for (int r = 0; r < R; r++) {
            LLVMValueRef jr = LLVMBuildAdd(k->B, l.i, ci64(k, r), "");
            rows[r] = row_of(k, kd->dtype, dt, idx, jr, kd->n, kd->d);
            hs[r] = load_elems(k, k->f32, h, jr, 1, 4);
        }
        if (R == 4 && k->t->prefetch_lines > 0) {
            /* The next group's rows, at this thread's columns. */
            for (int r = 4; r < 8; r++) {
                LLVMValueRef jn = LLVMBuildAdd(k->B, l.i, ci64(k, r), "");
                jn = LLVMBuildSelect(k->B, LLVMBuildICmp(k->B, LLVMIntSLT, jn, ci64(k, kd->k), ""), jn,
                                     ci64(k, kd->k - 1), "");
                LLVMValueRef row = row_of(k, kd->dtype, dt, idx, jn, kd->n, kd->d);
                prefetch_lines(k, gep(k, weight_elem(k, kd->dtype), row, c0), k->t->prefetch_lines);
            }
        }
        emit_axpy_rows(k, kd->dtype, rows, hs, R, y, c0, c1);
        loop_end(k, &l);
    }
    LLVMBuildRetVoid(k->B);
}

/* FFN: both phases, one thread (calls the two kernels above; O3 inlines them). */
static void emit_ffn(lk *k, const lcpu_kernel *kd, LLVMValueRef up, LLVMValueRef down)
{
    LLVMTypeRef fp = LLVMPointerType(k->f32, 0);
    LLVMTypeRef p[6] = {fp, LLVMPointerType(k->i32, 0), k->i8p, k->i8p, fp, fp};
    LLVMValueRef fn = begin_fn(k, kd->name, p, 6, (1u << 4) | (1u << 5));
    LLVMValueRef a_up[6] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), ci32(k, 1, 0), ci32(k, 1, kd->k),
                            LLVMGetParam(fn, 2), LLVMGetParam(fn, 4)};
    LLVMBuildCall2(k->B, LLVMGlobalGetValueType(up), up, a_up, 6, "");
    LLVMValueRef a_dn[6] = {LLVMGetParam(fn, 4), LLVMGetParam(fn, 1), ci32(k, 1, 0), ci32(k, 1, kd->d),
                            LLVMGetParam(fn, 3), LLVMGetParam(fn, 5)};
    LLVMBuildCall2(k->B, LLVMGlobalGetValueType(down), down, a_dn, 6, "");
    LLVMBuildRetVoid(k->B);
}

/* MATVEC: y[r] = w[r][0:cols] . x for r in [r0, r1); four rows per pass share x. */
static void emit_matvec(lk *k, const lcpu_kernel *kd)
{
    LLVMTypeRef p[5] = {k->i8p, LLVMPointerType(k->f32, 0), k->i64, k->i64, LLVMPointerType(k->f32, 0)};
    LLVMValueRef fn = begin_fn(k, kd->name, p, 5, 1u << 4);
    LLVMValueRef w = as_ptr(k, LLVMGetParam(fn, 0), weight_elem(k, kd->dtype));
    LLVMValueRef x = LLVMGetParam(fn, 1), y = LLVMGetParam(fn, 4);
    LLVMValueRef r0 = LLVMGetParam(fn, 2), r1 = LLVMGetParam(fn, 3);
    r0 = LLVMBuildSelect(k->B, LLVMBuildICmp(k->B, LLVMIntSLT, r0, ci64(k, 0), ""), ci64(k, 0), r0, "");
    int64_t cols = kd->n;
    LLVMValueRef r = alloca_init(k, k->i64, r0);
    for (int R = 4; R >= 1; R -= 3) {
        lk_loop l;
        loop_begin(k, &l, r, r1, R);
        LLVMValueRef rows[4], dots[4];
        for (int t = 0; t < R; t++) {
            LLVMValueRef rt = LLVMBuildAdd(k->B, l.i, ci64(k, t), "");
            rows[t] = gep(k, weight_elem(k, kd->dtype), w, LLVMBuildMul(k->B, rt, ci64(k, cols), ""));
        }
        if (R == 4 && k->t->prefetch_lines > 0) {
            /* The next four rows, whole (up to 4 KiB each), while these four
             * are computed: as the runtime's built-in dot4 does. Without it a
             * 256 MiB f16 matrix streamed at ~5 GB/s here against 8-11 GB/s
             * for dot4; prefetches past the matrix's end do not fault. */
            int64_t lines = (cols * (kd->dtype == FLOCK_DTYPE_F32 ? 4 : 2) + 63) / 64;
            for (int t = 0; t < 4; t++)
                prefetch_lines(k, gep(k, weight_elem(k, kd->dtype), rows[t], ci64(k, 4 * cols)),
                               (int)(lines < 64 ? lines : 64));
        }
        emit_dots(k, kd->dtype, rows, R, x, cols, R == 4 ? 2 : 4, dots);
        for (int t = 0; t < R; t++)
            store_f(k, dots[t], y, LLVMBuildAdd(k->B, l.i, ci64(k, t), ""), 1);
        loop_end(k, &l);
    }
    LLVMBuildRetVoid(k->B);
}

/* ---- the module ---------------------------------------------------------- */

static const char *act_name(flock_act a)
{
    switch (a) {
    case FLOCK_ACT_SILU: return "silu";
    case FLOCK_ACT_GELU: return "gelu";
    case FLOCK_ACT_GELU_TANH: return "gelutanh";
    case FLOCK_ACT_RELU: return "relu";
    default: return "none";
    }
}

static bool is_weight_dtype(flock_dtype dt)
{
    return dt == FLOCK_DTYPE_F32 || dt == FLOCK_DTYPE_F16 || dt == FLOCK_DTYPE_BF16;
}

static flock_status check_spec(const flock_cpu_kernel_spec *s, flock_error *err)
{
    if (s->n_keep > 0) {
        if (s->d_model <= 0 || s->d_ff <= 0 || s->d_model > (1 << 20) || s->d_ff > (1 << 22))
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: d_model %d / d_ff %d out of range",
                                   s->d_model, s->d_ff);
        if (!is_weight_dtype(s->ffn_dtype))
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: FF dtype %s is not f32/f16/bf16",
                                   flock_dtype_name(s->ffn_dtype));
        if (s->act != FLOCK_ACT_SILU && s->act != FLOCK_ACT_GELU && s->act != FLOCK_ACT_GELU_TANH &&
            s->act != FLOCK_ACT_RELU)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: activation %d is not a gated-FF one",
                                   (int)s->act);
        if (!s->keep || s->n_keep > 64)
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: %u keep ratios", s->n_keep);
        for (uint32_t i = 0; i < s->n_keep; i++) {
            double kr = s->keep[i];
            if (!(kr > 0 && kr <= 1)) /* flock_keep_count keeps at least one neuron */
                return flock_error_set(err, FLOCK_E_INVALID_ARG,
                                       "cpu kernels: keep ratio %g is outside (0, 1] (d_ff %d)", kr, s->d_ff);
        }
    }
    if (s->n_matvec > 0 && !s->matvec)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: matvec list is NULL");
    if (s->n_matvec > 64)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: %u matvec shapes", s->n_matvec);
    for (uint32_t i = 0; i < s->n_matvec; i++) {
        if (s->matvec[i].cols <= 0 || s->matvec[i].cols > (1 << 22) || !is_weight_dtype(s->matvec[i].dtype))
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: matvec %u: cols %d dtype %s", i,
                                   s->matvec[i].cols, flock_dtype_name(s->matvec[i].dtype));
    }
    if (s->n_keep == 0 && s->n_matvec == 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "cpu kernels: nothing to generate");
    return FLOCK_OK;
}

static bool has_kernel(const lcpu_kernel *ks, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ks[i].name, name) == 0)
            return true;
    return false;
}

flock_status lcpu_emit_module(LLVMContextRef C, LLVMModuleRef M, const flock_cpu_kernel_spec *spec,
                              const lcpu_target_opts *t, lcpu_kernel **kernels, size_t *n, flock_error *err)
{
    flock_status st = check_spec(spec, err);
    if (st != FLOCK_OK)
        return st;
    size_t cap = (size_t)spec->n_keep * 3 + spec->n_matvec;
    lcpu_kernel *ks = calloc(cap, sizeof *ks);
    if (!ks)
        return flock_error_set(err, FLOCK_E_NOMEM, "cpu kernels: out of memory");
    lk k = {.C = C, .M = M, .B = LLVMCreateBuilderInContext(C), .t = t, .vw = t->vw};
    k.f32 = LLVMFloatTypeInContext(C);
    k.f16 = LLVMHalfTypeInContext(C);
    k.i16 = LLVMInt16TypeInContext(C);
    k.i32 = LLVMInt32TypeInContext(C);
    k.i64 = LLVMInt64TypeInContext(C);
    k.i8p = LLVMPointerType(LLVMInt8TypeInContext(C), 0);
    k.voidt = LLVMVoidTypeInContext(C);

    size_t nk = 0;
    const char *dtn = flock_dtype_name(spec->ffn_dtype), *actn = act_name(spec->act);
    for (uint32_t i = 0; i < spec->n_keep; i++) {
        int32_t kk = (int32_t)flock_keep_count(spec->keep[i], spec->d_ff);
        char base[96];
        snprintf(base, sizeof base, "%s_%s_d%d_f%d_k%d", dtn, actn, spec->d_model, spec->d_ff, kk);
        char probe[128];
        snprintf(probe, sizeof probe, "flock_ffn_%s", base);
        if (has_kernel(ks, nk, probe))
            continue; /* two ratios that round to the same k */
        lcpu_kernel *up = &ks[nk++], *down = &ks[nk++], *both = &ks[nk++];
        lcpu_kernel proto = {.dtype = spec->ffn_dtype, .act = spec->act, .d = spec->d_model,
                             .n = spec->d_ff, .k = kk};
        *up = *down = *both = proto;
        up->kind = FLOCK_CPUK_FFN_UP;
        snprintf(up->name, sizeof up->name, "flock_ffn_up_%s", base);
        down->kind = FLOCK_CPUK_FFN_DOWN;
        down->act = FLOCK_ACT_NONE;
        snprintf(down->name, sizeof down->name, "flock_ffn_down_%s_d%d_f%d_k%d", dtn, spec->d_model, spec->d_ff,
                 kk);
        both->kind = FLOCK_CPUK_FFN;
        snprintf(both->name, sizeof both->name, "%s", probe);
        emit_ffn_up(&k, up);
        LLVMValueRef fup = k.fn;
        emit_ffn_down(&k, down);
        emit_ffn(&k, both, fup, k.fn);
    }
    for (uint32_t i = 0; i < spec->n_matvec; i++) {
        lcpu_kernel mv = {.kind = FLOCK_CPUK_MATVEC, .dtype = spec->matvec[i].dtype, .act = FLOCK_ACT_NONE,
                          .n = spec->matvec[i].cols};
        snprintf(mv.name, sizeof mv.name, "flock_matvec_%s_c%d", flock_dtype_name(mv.dtype), mv.n);
        if (has_kernel(ks, nk, mv.name))
            continue;
        ks[nk++] = mv;
        emit_matvec(&k, &ks[nk - 1]);
    }
    LLVMDisposeBuilder(k.B);
    *kernels = ks;
    *n = nk;
    return FLOCK_OK;
}
