/* Runtime: kernels against plain references (each dtype, SIMD and scalar),
 * the thread pool, GRIFFIN selection on hand-computed cases, the sampler,
 * and the executor on tiny random programs against a reference forward. */
#include "test_util.h"

#include <float.h>

#include "cuda_driver.h"
#include "exec.h"
#include "flock/flock.h"
#include "griffin.h"
#include "kernels.h"
#include "runtime_ref.h"
#include "runtime_e2e.h"
#include "threads.h"

static const flock_dtype kdtypes[] = {FLOCK_DTYPE_F32, FLOCK_DTYPE_F16, FLOCK_DTYPE_BF16};

/* Random weights stored as `dt`, plus their exact f32 values. */
static void *rand_weights(flock_dtype dt, size_t n, float *exact, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        exact[i] = flock_test_randf(s) * 2.0f;
    void *w = malloc(n * flock_dtype_size(dt) + 64);
    assert_int_equal(flock_convert_from_f32(dt, exact, w, n), FLOCK_OK);
    assert_int_equal(flock_convert_to_f32(dt, w, exact, n), FLOCK_OK);
    return w;
}

/* `seed` is fixed per table so that a failure reproduces (an address-based
 * seed changed with every run). Dot products are checked against the
 * float-summation bound, relative to sum |w x|, not to the result, which
 * can cancel to near zero. */
static void check_table(const flock_kernel_table *k, uint64_t seed)
{
    static const size_t lens[] = {1, 7, 8, 31, 33, 64, 100, 577};
    uint64_t s = seed;
    for (size_t di = 0; di < 3; di++) {
        flock_dtype dt = kdtypes[di];
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li];
            float *ex = malloc(n * 4), *x = malloc(n * 4), *y = malloc(n * 4), *yr = malloc(n * 4);
            void *w = rand_weights(dt, n, ex, &s);
            double ref = 0, mag = 0;
            for (size_t i = 0; i < n; i++) {
                x[i] = flock_test_randf(&s);
                y[i] = yr[i] = flock_test_randf(&s);
                ref += (double)ex[i] * x[i];
                mag += fabs((double)ex[i] * x[i]);
            }
            float got = k->dot[dt](w, x, n);
            assert_true(fabs(got - ref) <= (double)n * FLT_EPSILON * mag + 1e-30);
            float a = flock_test_randf(&s);
            k->axpy[dt](a, w, y, n);
            for (size_t i = 0; i < n; i++)
                yr[i] += a * ex[i];
            assert_true(flock_test_nrm_err(y, yr, n) < 1e-6);
            k->to_f32[dt](w, y, n);
            assert_true(flock_test_nrm_err(y, ex, n) == 0);
            /* dot4: four rows with a stride */
            size_t stride = n + 3;
            float *ex4 = malloc(4 * stride * 4), o4[4];
            void *w4 = rand_weights(dt, 4 * stride, ex4, &s);
            k->dot4[dt](w4, stride, x, n, o4);
            for (int r = 0; r < 4; r++) {
                double ref4 = 0, mag4 = 0;
                for (size_t i = 0; i < n; i++) {
                    ref4 += (double)ex4[r * stride + i] * x[i];
                    mag4 += fabs((double)ex4[r * stride + i] * x[i]);
                }
                assert_true(fabs(o4[r] - ref4) <= (double)n * FLT_EPSILON * mag4 + 1e-30);
            }
            free(ex4), free(w4);
            for (size_t i = 0; i < n; i++)
                y[i] = yr[i] = flock_test_randf(&s);
            k->axpy_f32(a, x, y, n);
            for (size_t i = 0; i < n; i++)
                yr[i] += a * x[i];
            assert_true(flock_test_nrm_err(y, yr, n) < 1e-6);
            free(ex), free(x), free(y), free(yr), free(w);
        }
    }
}

/* Random quantized rows of type dt: q8_0/q4_0/q4_1 by quantizing random
 * floats; the k-quants (which flock does not make) as random bytes with
 * finite, moderate f16 scales. `exact` gets the reference dequantization. */
static void *rand_qrows(flock_dtype dt, size_t n, float *exact, uint64_t *s)
{
    size_t nb = flock_dtype_row_bytes(dt, n);
    uint8_t *w = malloc(nb + 64);
    if (dt == FLOCK_DTYPE_Q8_0 || dt == FLOCK_DTYPE_Q4_0 || dt == FLOCK_DTYPE_Q4_1) {
        for (size_t i = 0; i < n; i++)
            exact[i] = flock_test_randf(s) * 2.0f;
        assert_int_equal(flock_convert_from_f32(dt, exact, w, n), FLOCK_OK);
    } else {
        for (size_t i = 0; i < nb; i++)
            w[i] = (uint8_t)flock_test_rand(s);
        /* random quants and fifth bits (every qh pattern, not only what a
         * quantizer writes), a finite scale per block */
        for (size_t b = 0; dt == FLOCK_DTYPE_Q5_0 && b < n / 32; b++) {
            uint16_t d = flock_f32_to_f16(0.05f + 0.05f * (float)(flock_test_rand(s) % 100) / 100.0f);
            memcpy(w + 22 * b, &d, 2);
        }
        for (size_t b = 0; dt != FLOCK_DTYPE_Q5_0 && b < n / 256; b++) {
            uint8_t *blk = w + b * flock_dtype_block_bytes(dt);
            uint16_t d = flock_f32_to_f16(0.01f + 0.01f * (float)(flock_test_rand(s) % 100) / 100.0f);
            if (dt == FLOCK_DTYPE_Q4_K) { /* half d, half dmin, then scales and quants */
                uint16_t m = flock_f32_to_f16(0.005f * (float)(flock_test_rand(s) % 100) / 100.0f);
                memcpy(blk, &d, 2);
                memcpy(blk + 2, &m, 2);
            } else { /* q6_k: ql, qh, scales, then half d at 208 */
                memcpy(blk + 208, &d, 2);
            }
        }
    }
    assert_int_equal(flock_convert_to_f32(dt, w, exact, n), FLOCK_OK);
    return w;
}

/* The quantized kernels of table k against the reference dequantization in
 * double: dot and dot4 within the float-summation bound (plus the block
 * scale rounding of q4_1's d (q . x) + m (sum x) form), axpy and to_f32 to
 * float rounding. Odd lengths: 1, 3 and 18 blocks (32-element types), 1 and
 * 3 blocks (k-quants). */
static void check_quant_table(const flock_kernel_table *k, uint64_t seed)
{
    static const flock_dtype qt[] = {FLOCK_DTYPE_Q8_0, FLOCK_DTYPE_Q4_0, FLOCK_DTYPE_Q4_1, FLOCK_DTYPE_Q5_0,
                                     FLOCK_DTYPE_Q4_K, FLOCK_DTYPE_Q6_K};
    uint64_t s = seed;
    for (size_t ti = 0; ti < sizeof qt / sizeof qt[0]; ti++) {
        flock_dtype dt = qt[ti];
        assert_true(flock_kernels_have(k, dt));
        size_t B = flock_dtype_block(dt);
        size_t lens[3] = {B, 3 * B, B == 32 ? 18 * B : 3 * B};
        for (size_t li = 0; li < 3; li++) {
            size_t n = lens[li];
            float *ex = malloc(4 * n * 4), *x = malloc(n * 4), *y = malloc(n * 4), *yr = malloc(n * 4);
            void *w = rand_qrows(dt, 4 * n, ex, &s); /* four rows of n */
            for (size_t i = 0; i < n; i++) {
                x[i] = flock_test_randf(&s);
                y[i] = yr[i] = flock_test_randf(&s);
            }
            size_t rb = flock_dtype_row_bytes(dt, n);
            float o4[4];
            k->dot4[dt](w, n, x, n, o4);
            for (int r = 0; r < 4; r++) {
                double ref = 0, mag = 0;
                for (size_t i = 0; i < n; i++) {
                    ref += (double)ex[r * n + i] * x[i];
                    mag += fabs((double)ex[r * n + i] * x[i]);
                }
                float got = k->dot[dt]((const uint8_t *)w + r * rb, x, n);
                double tol = 2.0 * (double)n * FLT_EPSILON * (mag + 1.0);
                if (fabs(got - ref) > tol || fabs(o4[r] - ref) > tol)
                    fail_msg("%s n %zu row %d: dot %g, dot4 %g, reference %g (bound %g)", flock_dtype_name(dt), n,
                             r, got, o4[r], ref, tol);
            }
            if (k->dotq[dt]) { /* int8 activations: exact against x's own int8 blocks, and near x */
                flock_q8x xq[18 * 8];
                k->quant_x(x, xq, n);
                for (int r = 0; r < 4; r++) {
                    double ref = 0, mag = 0, near = 0, step = 0;
                    for (size_t i = 0; i < n; i++) {
                        double xi = (double)xq[i / 32].d * xq[i / 32].q[i % 32];
                        ref += (double)ex[r * n + i] * xi;
                        mag += fabs((double)ex[r * n + i] * xi);
                        near += (double)ex[r * n + i] * x[i];
                        step += fabs((double)ex[r * n + i]) * xq[i / 32].d * 0.5;
                    }
                    float got = k->dotq[dt]((const uint8_t *)w + r * rb, xq, n);
                    if (fabs(got - ref) > 4.0 * (double)n * FLT_EPSILON * (mag + 1.0) || fabs(got - near) > step + 1e-5)
                        fail_msg("%s n %zu row %d: dotq %g, on the int8 x %g, on x %g (half steps %g)",
                                 flock_dtype_name(dt), n, r, got, ref, near, step);
                }
                if (k->dotq4[dt]) { /* four rows anywhere, in any order: each bitwise its dotq */
                    const uint8_t *wb = w;
                    const void *rows[4] = {wb + 2 * rb, wb, wb + 3 * rb, wb + 2 * rb};
                    float q4[4];
                    k->dotq4[dt](rows, xq, n, q4);
                    for (int r = 0; r < 4; r++) {
                        float one = k->dotq[dt](rows[r], xq, n);
                        if (memcmp(&one, &q4[r], sizeof one) != 0)
                            fail_msg("%s n %zu slot %d: dotq4 %.9g, dotq %.9g", flock_dtype_name(dt), n, r,
                                     (double)q4[r], (double)one);
                    }
                }
            } else {
                fail_msg("%s: no int8-activation dotq in table %s", flock_dtype_name(dt), k->name);
            }
            float a = flock_test_randf(&s);
            k->axpy[dt](a, w, y, n);
            for (size_t i = 0; i < n; i++)
                yr[i] += a * ex[i];
            assert_true(flock_test_nrm_err(y, yr, n) < 1e-6);
            if (k->axpy4[dt]) { /* four rows in any order: bitwise four axpys in that order */
                const uint8_t *wb = w;
                const void *rows[4] = {wb + 3 * rb, wb + rb, wb + rb, wb};
                float a4[4] = {a, -0.5f * a, flock_test_randf(&s), 3.f};
                float *y1 = malloc(n * 4), *y2 = malloc(n * 4);
                for (size_t i = 0; i < n; i++)
                    y1[i] = y2[i] = flock_test_randf(&s);
                for (int r = 0; r < 4; r++)
                    k->axpy[dt](a4[r], rows[r], y1, n);
                k->axpy4[dt](a4, rows, y2, n);
                assert_memory_equal(y1, y2, n * sizeof(float));
                free(y1), free(y2);
            } else {
                assert_true(dt == FLOCK_DTYPE_Q4_K || dt == FLOCK_DTYPE_Q6_K);
            }
            k->to_f32[dt]((const uint8_t *)w + rb, y, n);
            assert_true(flock_test_nrm_err(y, ex + n, n) < 1e-7);
            free(ex), free(x), free(y), free(yr), free(w);
        }
    }
    /* not a quantized type: no kernels */
    assert_false(flock_kernels_have(k, FLOCK_DTYPE_I32));
}

/* The prefill micro-kernels against plain loops in double. */
/* silu_mul and gelu_tanh_mul against the formulas in double, on odd
 * lengths, ordinary and extreme inputs (|x| up to 100: saturated ends). */
static void check_glu(const flock_kernel_table *k, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t n = 1; n <= 37; n += 9) {
        float h[2 * 37], z[37];
        for (size_t i = 0; i < 2 * n; i++)
            h[i] = flock_test_randf(&s) * (i % 5 == 0 ? 100.f : 6.f);
        for (int f = 0; f < 2; f++) {
            (f ? k->gelu_tanh_mul : k->silu_mul)(h, z, n);
            for (size_t i = 0; i < n; i++) {
                double x = h[2 * i], y = h[2 * i + 1];
                double ref = f ? 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * y
                               : x / (1 + exp(-x)) * y;
                if (fabs(z[i] - ref) > 2e-6 * fabs(ref) + 1e-6 * fabs(y))
                    fail_msg("%s n %zu i %zu x %g: %.9g, reference %.9g", f ? "gelu_tanh_mul" : "silu_mul", n, i,
                             x, (double)z[i], ref);
            }
        }
    }
}

typedef void (*dot_gemm_fn)(const float *w, size_t ws, const float *x, size_t xs, size_t n, float *y, size_t ldy);
typedef void (*down_fn)(const float *z, size_t ldz, const float *D, size_t ldd, size_t K, float *out, size_t ldo);

/* A dot-form tile (4 weight rows x TT tokens: gemm4x3, gemm4x6) against
 * double loops. */
static void check_dot_gemm(const char *table, const char *name, dot_gemm_fn fn, int TT, size_t n, uint64_t *s)
{
    size_t ws = n + 5, xs = n + 2, ldy = 9;
    float *w = malloc(4 * ws * 4), *x = malloc((size_t)TT * xs * 4), *y = malloc((size_t)TT * ldy * 4);
    for (size_t i = 0; i < 4 * ws; i++)
        w[i] = flock_test_randf(s);
    for (size_t i = 0; i < (size_t)TT * xs; i++)
        x[i] = flock_test_randf(s);
    fn(w, ws, x, xs, n, y, ldy);
    for (int t = 0; t < TT; t++)
        for (int r = 0; r < 4; r++) {
            double acc = 0;
            for (size_t i = 0; i < n; i++)
                acc += (double)w[r * ws + i] * x[t * xs + i];
            if (fabs(y[t * ldy + r] - acc) > 1e-5 * (fabs(acc) + 1))
                fail_msg("%s %s n %zu t %d r %d: %.9g, reference %.9g", table, name, n, t, r, (double)y[t * ldy + r],
                         acc);
        }
    free(w), free(x), free(y);
}

/* A down-projection tile (TT tokens x CC columns over K = n rows of D,
 * added to out: down4x16, down8x32) against double loops; the 3 columns
 * past CC of each out row are not the kernel's and must stay as they were. */
static void check_down(const char *table, const char *name, down_fn fn, int TT, int CC, size_t n, uint64_t *s)
{
    size_t K = n, ldz = K + 3, ldd = (size_t)CC + 5, ldo = (size_t)CC + 3;
    float *z = malloc((size_t)TT * ldz * 4), *D = malloc(K * ldd * 4);
    float *out = malloc((size_t)TT * ldo * 4), *ref = malloc((size_t)TT * ldo * 4);
    for (size_t i = 0; i < (size_t)TT * ldz; i++)
        z[i] = flock_test_randf(s);
    for (size_t i = 0; i < K * ldd; i++)
        D[i] = flock_test_randf(s);
    for (size_t i = 0; i < (size_t)TT * ldo; i++)
        out[i] = ref[i] = flock_test_randf(s);
    fn(z, ldz, D, ldd, K, out, ldo);
    for (int t = 0; t < TT; t++)
        for (int c = 0; c < CC; c++) {
            double acc = ref[t * ldo + c];
            for (size_t i = 0; i < K; i++)
                acc += (double)z[t * ldz + i] * D[i * ldd + c];
            ref[t * ldo + c] = (float)acc;
        }
    if (!(flock_test_nrm_err(out, ref, (size_t)TT * ldo) < 1e-6))
        fail_msg("%s %s n %zu: normalized error %.3g", table, name, n,
                 flock_test_nrm_err(out, ref, (size_t)TT * ldo));
    free(z), free(D), free(out), free(ref);
}

/* An outer-product tile (R rows x TB tokens over x transposed: gemm12x32,
 * gemm6x16) on full and partial tiles against double loops; y cells
 * outside the tile must keep their sentinel. */
static void check_outer_gemm(const char *table, const char *name, flock_outer_gemm_fn fn, int R, int TB, size_t n,
                             uint64_t *s)
{
    const int shapes[][2] = {{R, TB}, {R / 2 + 1, TB}, {R, TB / 2 + 1}, {1, 3}, {R - 1, TB / 2}};
    size_t ws = n + 3, tp = 40, ldy = 14;
    float *w = malloc((size_t)R * ws * 4), *xt = malloc(n * tp * 4), *y = malloc(32 * ldy * 4);
    for (size_t i = 0; i < (size_t)R * ws; i++)
        w[i] = flock_test_randf(s);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int nr = shapes[si][0], nt = shapes[si][1];
        for (size_t i = 0; i < n * tp; i++) /* zero past the last token, as the executor pads */
            xt[i] = (int)(i % tp) < nt ? flock_test_randf(s) : 0.f;
        for (size_t i = 0; i < 32 * ldy; i++)
            y[i] = 1234.5f;
        size_t lines = (size_t)R * ws * 4 / 64;
        fn(w, ws, nr, xt, tp, n, y, ldy, nt, w, lines < n ? lines : n);
        for (int t = 0; t < 32; t++)
            for (int r = 0; r < (int)ldy; r++) {
                double acc = 1234.5;
                if (t < nt && r < nr) {
                    acc = 0;
                    for (size_t i = 0; i < n; i++)
                        acc += (double)w[r * ws + i] * xt[i * tp + t];
                }
                if (fabs(y[t * ldy + r] - acc) > 1e-5 * (fabs(acc) + 1))
                    fail_msg("%s %s n %zu nr %d nt %d: t %d r %d: %.9g, reference %.9g", table, name, n, nr, nt, t,
                             r, (double)y[t * ldy + r], acc);
            }
    }
    free(w), free(xt), free(y);
}

/* Every prefill micro-kernel the table has, on lengths with masked tails
 * (13, 577) and without. */
static void check_microkernels(const flock_kernel_table *k)
{
    uint64_t s = 0x777;
    static const size_t lens[] = {8, 13, 64, 577};
    for (size_t li = 0; li < 4; li++) {
        size_t n = lens[li];
        check_dot_gemm(k->name, "gemm4x3", k->gemm4x3, 3, n, &s);
        check_down(k->name, "down4x16", k->down4x16, 4, 16, n, &s);
        if (k->gemm4x6)
            check_dot_gemm(k->name, "gemm4x6", k->gemm4x6, 6, n, &s);
        if (k->down8x32)
            check_down(k->name, "down8x32", k->down8x32, 8, 32, n, &s);
        if (k->gemm12x32)
            check_outer_gemm(k->name, "gemm12x32", k->gemm12x32, 12, 32, n, &s);
        if (k->gemm6x16)
            check_outer_gemm(k->name, "gemm6x16", k->gemm6x16, 6, 16, n, &s);
    }
}

static void test_kernels_scalar(void **state)
{
    (void)state;
    check_table(flock_kernels_scalar(), 0x1234);
    check_quant_table(flock_kernels_scalar(), 0x4321);
    check_microkernels(flock_kernels_scalar());
    check_glu(flock_kernels_scalar(), 0x1357);
}

/* The VNNI table's int8 dot products sum the same int32 lanes as the AVX2
 * table's and take the same float steps, and its axpys the same FMA per
 * element (kernels_avx512.c), so each result is bitwise the AVX2 one, for
 * every type and length. */
static void check_dotq_same(const flock_kernel_table *a, const flock_kernel_table *v, uint64_t seed)
{
    static const flock_dtype qt[] = {FLOCK_DTYPE_Q8_0, FLOCK_DTYPE_Q4_0, FLOCK_DTYPE_Q4_1, FLOCK_DTYPE_Q5_0,
                                     FLOCK_DTYPE_Q4_K, FLOCK_DTYPE_Q6_K};
    uint64_t s = seed;
    for (size_t ti = 0; ti < sizeof qt / sizeof qt[0]; ti++) {
        flock_dtype dt = qt[ti];
        size_t B = flock_dtype_block(dt);
        for (size_t n = B; n <= 9 * B && n <= 2304; n += (B == 32 ? 4 : 1) * B) {
            float *ex = malloc(4 * n * 4), *x = malloc(n * 4);
            void *w = rand_qrows(dt, 4 * n, ex, &s);
            for (size_t i = 0; i < n; i++)
                x[i] = flock_test_randf(&s);
            flock_q8x *xq = malloc((n / 32) * sizeof *xq);
            a->quant_x(x, xq, n);
            size_t rb = flock_dtype_row_bytes(dt, n);
            for (int r = 0; r < 4; r++) {
                float fa = a->dotq[dt]((const uint8_t *)w + r * rb, xq, n);
                float fv = v->dotq[dt]((const uint8_t *)w + r * rb, xq, n);
                if (memcmp(&fa, &fv, sizeof fa) != 0)
                    fail_msg("%s n %zu row %d: %s dotq %.9g, %s %.9g", flock_dtype_name(dt), n, r, v->name,
                             (double)fv, a->name, (double)fa);
            }
            /* axpy and axpy4 (the down_t rows): the same per-element FMA */
            float *ya = malloc(n * 4), *yv = malloc(n * 4);
            const uint8_t *wb = w;
            const void *rows[4] = {wb + 3 * rb, wb, wb + rb, wb + rb};
            float a4[4] = {flock_test_randf(&s), -0.25f, flock_test_randf(&s), 2.f};
            for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < n; i++)
                    ya[i] = yv[i] = flock_test_randf(&s);
                if (pass == 0) {
                    a->axpy[dt](a4[0], wb + 2 * rb, ya, n);
                    v->axpy[dt](a4[0], wb + 2 * rb, yv, n);
                } else if (a->axpy4[dt] && v->axpy4[dt]) {
                    a->axpy4[dt](a4, rows, ya, n);
                    v->axpy4[dt](a4, rows, yv, n);
                }
                if (memcmp(ya, yv, n * 4) != 0)
                    fail_msg("%s n %zu: %s %s differs from %s's", flock_dtype_name(dt), n, v->name,
                             pass ? "axpy4" : "axpy", a->name);
            }
            free(ya), free(yv);
            free(ex), free(x), free(w), free(xq);
        }
    }
}

/* Table v's quant_x bitwise the scalar one: random blocks of several
 * magnitudes, a zero block, and ties (x id exactly k + 1/2, which roundf
 * takes away from zero). */
static void check_quant_x_same(const flock_kernel_table *v, uint64_t seed)
{
    enum { N = 32 * 40 };
    uint64_t s = seed;
    float *x = malloc(N * 4);
    for (size_t i = 0; i < N; i++) {
        size_t b = i / 32;
        float scale = b == 3 ? 0.f : powf(10.f, (float)(b % 7) - 3.f);
        x[i] = flock_test_randf(&s) * scale;
    }
    for (int j = 0; j < 32; j++) /* block 5: amax 127 (d = 1, id = 1), the rest halves */
        x[5 * 32 + j] = j == 0 ? 127.f : (float)(j - 16) + 0.5f;
    flock_q8x *a = malloc((N / 32) * sizeof *a), *b = malloc((N / 32) * sizeof *b);
    flock_kernels_scalar()->quant_x(x, a, N);
    v->quant_x(x, b, N);
    for (size_t i = 0; i < N / 32; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0)
            fail_msg("block %zu: %s quant_x differs from the scalar one (d %g / %g, s %g / %g)", i, v->name,
                     (double)a[i].d, (double)b[i].d, (double)a[i].s, (double)b[i].s);
    assert_int_equal(a[5].q[1], -15); /* -14.5, away from zero */
    assert_int_equal(a[5].q[20], 5);  /* 4.5 */
    free(x), free(a), free(b);
}

/* The int8 prefill tile (qpack + gemmq, where table v has it) against the
 * double-precision product of the dequantized rows with the tokens' own
 * int8 blocks: 21 rows (a full tile of 16 and a part of 5) by 11 tokens
 * (8 and 3), odd block counts; entries outside the rows and tokens asked
 * for stay untouched. */
static void check_gemmq(const flock_kernel_table *v, uint64_t seed)
{
    static const flock_dtype qt[] = {FLOCK_DTYPE_Q8_0, FLOCK_DTYPE_Q4_0, FLOCK_DTYPE_Q4_1, FLOCK_DTYPE_Q5_0,
                                     FLOCK_DTYPE_Q4_K};
    assert_non_null(v->gemmq);
    uint64_t s = seed;
    enum { ROWS = 21, T = 11, LDY = ROWS + 3 };
    for (size_t ti = 0; ti < sizeof qt / sizeof qt[0]; ti++) {
        flock_dtype dt = qt[ti];
        assert_non_null(v->qpack[dt]);
        size_t B = flock_dtype_block(dt);
        size_t lens[2] = {B == 32 ? 3 * B : B, B == 32 ? 19 * B : 3 * B};
        for (int li = 0; li < 2; li++) {
            size_t n = lens[li], nb = n / 32, rb = flock_dtype_row_bytes(dt, n);
            float *ex = malloc(ROWS * n * 4), *x = malloc(T * n * 4), *y = malloc(T * LDY * 4);
            void *w = rand_qrows(dt, ROWS * n, ex, &s);
            flock_q8x *xq = malloc(T * nb * sizeof *xq);
            void *pack = flock_aligned_alloc(nb * FLOCK_QPACK_BLOCK);
            for (size_t i = 0; i < T * n; i++)
                x[i] = flock_test_randf(&s);
            for (int t = 0; t < T; t++)
                v->quant_x(x + t * n, xq + t * nb, n);
            for (int i = 0; i < T * LDY; i++)
                y[i] = 12345.f;
            for (int r = 0; r < ROWS; r += 16) {
                int nr = ROWS - r < 16 ? ROWS - r : 16;
                v->qpack[dt]((const uint8_t *)w + r * rb, rb, nr, n, pack);
                for (int t = 0; t < T; t += 8)
                    v->gemmq(pack, nb, xq + t * nb, nb, T - t < 8 ? T - t : 8, y + t * LDY + r, LDY, nr, w, 2);
            }
            for (int t = 0; t < T; t++)
                for (int r = 0; r < LDY; r++) {
                    float got = y[t * LDY + r];
                    if (r >= ROWS) {
                        if (got != 12345.f)
                            fail_msg("%s n %zu: y[%d][%d] outside the rows written (%g)", flock_dtype_name(dt), n,
                                     t, r, (double)got);
                        continue;
                    }
                    double ref = 0, mag = 0;
                    for (size_t i = 0; i < n; i++) {
                        const flock_q8x *xb = &xq[t * nb + i / 32];
                        double xi = (double)xb->d * xb->q[i % 32];
                        ref += (double)ex[r * n + i] * xi;
                        mag += fabs((double)ex[r * n + i] * xi);
                    }
                    if (fabs(got - ref) > 4.0 * (double)n * FLT_EPSILON * (mag + 1.0))
                        fail_msg("%s n %zu row %d token %d: gemmq %.9g, reference %.9g", flock_dtype_name(dt), n, r,
                                 t, (double)got, ref);
                }
            free(ex), free(x), free(y), free(w), free(xq), free(pack);
        }
    }
}

static void test_kernels_simd(void **state)
{
    (void)state;
    const flock_kernel_table *k = flock_kernels_avx2();
    if (!k) {
        print_message("no AVX2/FMA/F16C here: SIMD kernels not tested\n");
        skip();
    }
    check_table(k, 0x5678);
    check_quant_table(k, 0x8765);
    check_microkernels(k);
    check_glu(k, 0x2468);
    check_quant_x_same(k, 0x2469);
    /* The AVX-512 VNNI table runs only where the CPU has it; elsewhere the
     * AVX2 table above is what runs, and this says so rather than skip. */
    const flock_kernel_table *v = flock_kernels_avx512();
    if (v) {
        check_table(v, 0x5679);
        check_quant_table(v, 0x8766);
        check_dotq_same(k, v, 0x8767);
        check_gemmq(v, 0x8768);
        check_quant_x_same(v, 0x8769);
        check_microkernels(v);
        if (!getenv("FLOCK_KERNELS"))
            assert_ptr_equal(flock_kernels_best(), v);
    } else {
        print_message("this CPU has no AVX-512 VNNI: its table is not tested here (the AVX2 one runs)\n");
        if (!getenv("FLOCK_KERNELS"))
            assert_ptr_equal(flock_kernels_best(), k);
    }
}

/* ---- thread pool ---- */

typedef struct pool_ctx {
    int *hits;
    _Atomic int calls;
} pool_ctx;

static void pool_task(void *arg, int64_t b, int64_t e, int thread)
{
    pool_ctx *c = arg;
    assert_true(thread >= 0 && thread < 3);
    for (int64_t i = b; i < e; i++)
        c->hits[i]++; /* ranges are disjoint: no race */
    c->calls++;
}

static void test_pool(void **state)
{
    (void)state;
    for (int nt = 1; nt <= 3; nt++) {
        flock_pool *p;
        assert_int_equal(flock_pool_create(nt, &p), FLOCK_OK);
        for (int rep = 0; rep < 50; rep++) {
            int n = 1 + rep * 37;
            int *hits = calloc((size_t)n, sizeof *hits);
            pool_ctx c = {hits, 0};
            flock_pool_run(p, n, 1 + rep % 7, pool_task, &c);
            for (int i = 0; i < n; i++)
                assert_int_equal(hits[i], 1);
            free(hits);
        }
        flock_pool_free(p);
    }
    flock_pool_free(NULL);
}

/* ---- GRIFFIN selection ---- */

static void test_keep_count(void **state)
{
    (void)state;
    assert_int_equal(flock_keep_count(0.5, 1536), 768);
    assert_int_equal(flock_keep_count(1.0, 172), 172);
    assert_int_equal(flock_keep_count(0.3, 172), 51); /* 51.6 -> 51 */
    assert_int_equal(flock_keep_count(0.0, 10), 0);
    assert_int_equal(flock_keep_count(0.99, 1), 1); /* at least one neuron (a kernel needs k >= 1) */
}

static void test_griffin_hand(void **state)
{
    (void)state;
    /* 3 tokens x 4 neurons. Row norms: 5, 0 (zero row), 2.
     * Normalized rows: [0.6, 0.8, 0, 0], (skipped), [0, 0, -1, 0]... row 2 is [0,0,-2,0]/2.
     * Scores^2: [0.36, 0.64, 1, 0] -> order 2, 1, 0, 3. */
    const float z[] = {3, 4, 0, 0, 0, 0, 0, 0, 0, 0, -2, 0};
    double ss[4] = {0};
    flock_griffin_accumulate(z, 3, 4, 4, ss);
    for (int i = 0; i < 4; i++)
        assert_false(isnan(ss[i]));
    assert_true(fabs(ss[0] - 0.36) < 1e-12 && fabs(ss[1] - 0.64) < 1e-12 && fabs(ss[2] - 1.0) < 1e-12 &&
                ss[3] == 0);
    flock_rank_pair scratch[4];
    int32_t idx[4];
    flock_select_topk(ss, 4, 2, idx, scratch);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 2);
    flock_select_topk(ss, 4, 3, idx, scratch);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
    /* chunked accumulation gives the same sums */
    double ss2[4] = {0};
    flock_griffin_accumulate(z, 1, 4, 4, ss2);
    flock_griffin_accumulate(z + 4, 2, 4, 4, ss2);
    for (int i = 0; i < 4; i++)
        assert_true(ss2[i] == ss[i]);
}

static void test_griffin_ties(void **state)
{
    (void)state;
    /* All equal: the lowest indices win. Two rows with equal columns 1, 3, 5. */
    const double eq[6] = {1, 1, 1, 1, 1, 1};
    flock_rank_pair scratch[6];
    int32_t idx[6];
    flock_select_topk(eq, 6, 3, idx, scratch);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
    const double sc[6] = {0.5, 2, 0.5, 2, 0.5, 1};
    flock_select_topk(sc, 6, 4, idx, scratch); /* 1, 3 (2), 5 (1), then tie 0.5 -> 0 */
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 3);
    assert_int_equal(idx[3], 5);
    /* all-zero activations: no NaN, selection is 0..k-1 */
    const float z[8] = {0};
    double ss[4] = {0};
    flock_griffin_accumulate(z, 2, 4, 4, ss);
    flock_select_topk(ss, 4, 2, idx, scratch);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
}


static int cmp_pair_ref(const void *a, const void *b)
{
    const flock_rank_pair *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index - y->index;
}

/* flock_select_topk's quickselect on long lists (past its insertion-sort
 * cut-off) against a full sort: random scores with many ties, NaN, +-inf,
 * already sorted and reversed inputs (the median-of-three pivot's bad
 * cases for a naive pivot), every k at the edges and a few between. */
static void test_griffin_select_long(void **state)
{
    (void)state;
    uint64_t s = 0x5e1ec7;
    enum { N = 1537 };
    double *sc = malloc(N * sizeof *sc);
    flock_rank_pair *scratch = malloc(N * sizeof *scratch), *ref = malloc(N * sizeof *ref);
    int32_t *idx = malloc(N * sizeof *idx);
    uint8_t *want = malloc(N);
    const int64_t ns[] = {17, 100, 1024, N};
    for (int kind = 0; kind < 5; kind++)
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            int64_t n = ns[ni];
            for (int64_t i = 0; i < n; i++) {
                double r = flock_test_randf(&s);
                sc[i] = kind == 0   ? r
                        : kind == 1 ? (double)(int)(r * 8) /* heavy ties */
                        : kind == 2 ? (double)i             /* ascending */
                        : kind == 3 ? (double)(n - i)       /* descending */
                                    : (i % 97 == 0 ? NAN : i % 89 == 0 ? INFINITY : i % 83 == 0 ? -INFINITY : r);
            }
            const int64_t ks[] = {1, 2, n / 3, n / 2, n - 2, n - 1, n};
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                int64_t k = ks[ki];
                for (int64_t i = 0; i < n; i++)
                    ref[i] = (flock_rank_pair){isnan(sc[i]) ? -INFINITY : sc[i], (int32_t)i};
                qsort(ref, (size_t)n, sizeof *ref, cmp_pair_ref);
                memset(want, 0, N);
                for (int64_t j = 0; j < k; j++)
                    want[ref[j].index] = 1;
                for (int64_t i = 0; i < n; i++)
                    idx[i] = -7;
                flock_select_topk(sc, n, k, idx, scratch);
                for (int64_t i = 0, j = 0; i < n; i++)
                    if (want[i]) {
                        if (idx[j] != i)
                            fail_msg("kind %d n %lld k %lld: idx[%lld] = %d, expected %lld", kind, (long long)n,
                                     (long long)k, (long long)j, idx[j], (long long)i);
                        j++;
                    }
                for (int64_t j = k; j < n; j++)
                    assert_int_equal(idx[j], -7); /* nothing written past k */
            }
        }
    free(sc), free(scratch), free(ref), free(idx), free(want);
}

static void test_allocate_budget(void **state)
{
    (void)state;
    /* Layer 0 concentrated, layer 1 spread, layer 2 all zero. */
    double w0[4] = {8, 1, 0.5, 0.5}, w1[4] = {1, 1, 1, 1}, w2[4] = {0, 0, 0, 0};
    double p0[4], p1[4], p2[4];
    flock_share_normalize(w0, 4, p0);
    flock_share_normalize(w1, 4, p1);
    flock_share_normalize(w2, 4, p2);
    for (int i = 0; i < 4; i++) {
        assert_false(isnan(p2[i]));
        assert_true(fabs(p2[i] - 0.25) < 1e-15); /* all-zero layer: spread evenly, no NaN */
    }
    assert_true(fabs(p0[0] - 0.8) < 1e-15 && fabs(p1[3] - 0.25) < 1e-15);
    const double *sh[3] = {p0, p1, p2};
    const int64_t d[3] = {4, 4, 4};
    int64_t lo[3] = {1, 1, 1}, k[3];
    flock_alloc_cand cand[12];
    double sorted[4];
    /* total 6: floors 1+1+1, then the largest shares left: p1 0.25 x3 (layer 1), ties to the lower layer
     * before layer 2's 0.25s. */
    assert_int_equal(flock_allocate_budget(sh, d, 3, lo, 6, k, cand, sorted), 6);
    assert_int_equal(k[0], 1);
    assert_int_equal(k[1], 4);
    assert_int_equal(k[2], 1);
    /* the sum is the budget for every total between the floors and the sizes; deterministic */
    for (int64_t t = 3; t <= 12; t++) {
        int64_t k2[3];
        assert_int_equal(flock_allocate_budget(sh, d, 3, lo, t, k, cand, sorted), t);
        flock_allocate_budget(sh, d, 3, lo, t, k2, cand, sorted);
        assert_int_equal(k[0] + k[1] + k[2], t);
        for (int l = 0; l < 3; l++) {
            assert_int_equal(k[l], k2[l]);
            assert_true(k[l] >= lo[l] && k[l] <= d[l]);
        }
    }
    /* below the floors / above the sizes: clamped */
    assert_int_equal(flock_allocate_budget(sh, d, 3, lo, 1, k, cand, sorted), 3);
    assert_int_equal(flock_allocate_budget(sh, d, 3, lo, 99, k, cand, sorted), 12);
    /* NaN or infinite scores count as 0 */
    double bad[4] = {NAN, INFINITY, -1, 2}, pb[4];
    flock_share_normalize(bad, 4, pb);
    assert_true(pb[0] == 0 && pb[1] == 0 && pb[2] == 0 && pb[3] == 1);
}

static void test_select_blend(void **state)
{
    (void)state;
    const double score[5] = {5, 4, 3, 2, 1};   /* local order 0, 1, 2, 3, 4 */
    const int32_t rank[5] = {4, 3, 2, 1, 0};   /* static order: the reverse */
    int32_t pos[5], idx[5];
    flock_rank_positions(rank, 5, pos);
    assert_int_equal(pos[4], 0);
    assert_int_equal(pos[0], 4);
    flock_rank_pair scratch[5];
    double blend[5];
    flock_select_blend(score, pos, 5, 2, 1.0, idx, scratch, blend); /* w = 1: GRIFFIN's top-k */
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    flock_select_blend(score, pos, 5, 2, 0.0, idx, scratch, blend); /* w = 0: the static ranking */
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[1], 4);
    /* w = 0.75: blends 0, 1.5, 2, 2.5, 3 (neuron i: 0.75 i + 0.25 (4 - i)) -> 0 and 1 */
    flock_select_blend(score, pos, 5, 2, 0.75, idx, scratch, blend);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    /* w = 0.5: all blends 2, ties to the lower index */
    flock_select_blend(score, pos, 5, 3, 0.5, idx, scratch, blend);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
}

static void test_select_rank_random(void **state)
{
    (void)state;
    const int32_t rank[5] = {3, 0, 4, 1, 2};
    int32_t idx[5];
    uint8_t seen[5];
    flock_error err = {0};
    assert_int_equal(flock_select_from_rank(rank, 5, 3, idx, seen, &err), FLOCK_OK);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 3);
    assert_int_equal(idx[2], 4);
    const int32_t bad[5] = {3, 0, 3, 1, 2};
    assert_int_equal(flock_select_from_rank(bad, 5, 3, idx, seen, &err), FLOCK_E_CORRUPT);
    assert_non_null(strstr(err.msg, "permutation"));
    /* random: k distinct sorted, reproducible from the seed, not always the same */
    int32_t perm[100], a[30], b[30], c[30];
    uint64_t r1 = flock_rng_seed(7), r2 = flock_rng_seed(7), r3 = flock_rng_seed(8);
    flock_select_random(&r1, 100, 30, a, perm);
    flock_select_random(&r2, 100, 30, b, perm);
    flock_select_random(&r3, 100, 30, c, perm);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    for (int i = 1; i < 30; i++)
        assert_true(a[i] > a[i - 1] && a[i] < 100);
}

/* ---- sampler ---- */

static void test_sampler_greedy_penalty(void **state)
{
    (void)state;
    flock_sampler_opts o = flock_sampler_default_opts();
    o.temperature = 0;
    flock_sampler *s;
    assert_int_equal(flock_sampler_create(&o, 5, &s, NULL), FLOCK_OK);
    const float l[5] = {1, 3, 3, -2, 2.9f};
    assert_int_equal(flock_sampler_sample(s, l, NULL, 0), 1); /* tie -> lower id */
    flock_sampler_free(s);
    /* penalty 2: token 1 -> 1.5, token 2 -> 1.5, token 4 stays 2.9 */
    o.repeat_penalty = 2;
    assert_int_equal(flock_sampler_create(&o, 5, &s, NULL), FLOCK_OK);
    const int32_t hist[3] = {1, 2, 1};
    assert_int_equal(flock_sampler_sample(s, l, hist, 3), 4);
    /* negative logits are multiplied: 3 becomes -4 < 0 = ... check with all negative */
    const float ln[3] = {-1, -0.6f, -3};
    flock_sampler_free(s);
    assert_int_equal(flock_sampler_create(&o, 3, &s, NULL), FLOCK_OK);
    const int32_t h2[1] = {1};
    assert_int_equal(flock_sampler_sample(s, ln, h2, 1), 0); /* -0.6*2 = -1.2 < -1 */
    flock_sampler_free(s);
    o.top_p = 0;
    assert_int_equal(flock_sampler_create(&o, 3, &s, NULL), FLOCK_E_INVALID_ARG);
}

/* Empirical frequencies match the truncated, renormalized softmax. */
static void test_sampler_distribution(void **state)
{
    (void)state;
    const float l[6] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
    double p[6], sum = 0;
    float temp = 0.7f;
    for (int i = 0; i < 6; i++)
        sum += (p[i] = exp(l[i] / temp));
    for (int i = 0; i < 6; i++)
        p[i] /= sum;
    /* top-k 4, then top-p 0.9: cumulative over the 4 (renormalized) */
    double s4 = p[0] + p[1] + p[2] + p[3], q[6] = {0}, cum = 0;
    int keep = 4;
    for (int i = 0; i < 4; i++) {
        cum += p[i] / s4;
        if (cum >= 0.9) {
            keep = i + 1;
            break;
        }
    }
    double sk = 0;
    for (int i = 0; i < keep; i++)
        sk += p[i];
    for (int i = 0; i < keep; i++)
        q[i] = p[i] / sk;
    flock_sampler_opts o = {.temperature = temp, .top_k = 4, .top_p = 0.9f, .min_p = 0, .repeat_penalty = 1,
                            .repeat_last_n = 64, .seed = 42};
    flock_sampler *s;
    assert_int_equal(flock_sampler_create(&o, 6, &s, NULL), FLOCK_OK);
    int counts[6] = {0}, N = 200000;
    for (int i = 0; i < N; i++)
        counts[flock_sampler_sample(s, l, NULL, 0)]++;
    for (int i = 0; i < 6; i++) {
        if (!(fabs(counts[i] / (double)N - q[i]) < 0.005))
            fail_msg("token %d: frequency %g, expected %g", i, counts[i] / (double)N, q[i]);
    }
    flock_sampler_free(s);
    /* min-p 0.3: tokens with p < 0.3 p_max never come out */
    o = (flock_sampler_opts){.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0.3f, .repeat_penalty = 1,
                             .repeat_last_n = 64, .seed = 1};
    assert_int_equal(flock_sampler_create(&o, 6, &s, NULL), FLOCK_OK);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < 20000; i++)
        counts[flock_sampler_sample(s, l, NULL, 0)]++;
    /* exp(l - 2) >= 0.3 <=> l >= 2 + ln 0.3 = 0.796: tokens 0 and 1 */
    assert_true(counts[0] > 0 && counts[1] > 0);
    for (int i = 2; i < 6; i++)
        assert_int_equal(counts[i], 0);
    flock_sampler_free(s);
}

/* top-p without top-k sorts the whole vocabulary: only the nucleus comes out. */
static void test_sampler_top_p_full_sort(void **state)
{
    (void)state;
    enum { V = 300 };
    float l[V];
    uint64_t r = 99;
    for (int i = 0; i < V; i++)
        l[i] = flock_test_randf(&r) * 4;
    /* reference nucleus: sort probabilities by value, smallest prefix with mass >= 0.5 */
    double p[V], sum = 0;
    int order[V];
    for (int i = 0; i < V; i++) {
        p[i] = exp(l[i]);
        sum += p[i];
        order[i] = i;
    }
    for (int i = 0; i < V; i++) /* selection sort, descending */
        for (int j = i + 1; j < V; j++)
            if (p[order[j]] > p[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    char in[V] = {0};
    double cum = 0;
    for (int i = 0; i < V && cum < 0.5; i++) {
        cum += p[order[i]] / sum;
        in[order[i]] = 1;
    }
    flock_sampler_opts o = {.temperature = 1, .top_k = 0, .top_p = 0.5f, .min_p = 0, .repeat_penalty = 1,
                            .repeat_last_n = 64, .seed = 3};
    flock_sampler *s;
    assert_int_equal(flock_sampler_create(&o, V, &s, NULL), FLOCK_OK);
    int seen_any[V] = {0};
    for (int i = 0; i < 20000; i++) {
        int32_t t = flock_sampler_sample(s, l, NULL, 0);
        assert_true(t >= 0 && t < V && in[t]);
        seen_any[t] = 1;
    }
    for (int i = 0; i < V; i++)
        if (in[i])
            assert_true(seen_any[i]);
    flock_sampler_free(s);
}

/* ---- executor ---- */


/* Naive top-k (O(k n)), ties to the lower index: the test's own reference. */
static void naive_topk(const double *sc, int n, int k, int32_t *idx)
{
    char *taken = calloc((size_t)n, 1);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || sc[i] > sc[best]))
                best = i;
        taken[best] = 1;
    }
    for (int i = 0, j = 0; i < n; i++)
        if (taken[i])
            idx[j++] = i;
    free(taken);
}

static double nrm_err_d(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

/* Prompt of P tokens with the full FF (chunked), GRIFFIN selection, then
 * the rest one by one with the selected experts; every position's logits
 * against the reference (normalized error 2e-5 with an f32 KV cache; 1e-3
 * with f16, whose K/V carry 11-bit mantissas: 2^-12 relative each). */
static void run_exec_case(const tiny_cfg *cfg, const flock_kernel_table *k, int threads, double keep, int chunk,
                          bool kv_f16)
{
    tiny_model m;
    tiny_model_init(&m, cfg);
    enum { T = 20, P = 12 };
    int32_t ids[T];
    uint64_t s = cfg->seed * 31 + 5;
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(flock_test_rand(&s) % (uint64_t)cfg->vocab);
    flock_pool *pool;
    assert_int_equal(flock_pool_create(threads, &pool), FLOCK_OK);
    flock_exec *e;
    flock_error err = {0};
    flock_plan plan;
    flock_status st = flock_plan_program(&m.prog, &plan, &err);
    if (st != FLOCK_OK)
        fail_msg("plan: %s", err.msg);
    flock_exec_opts eo = {.n_ctx = 24, .all_logits = true, .pack_rows = true, .kv_f16 = kv_f16};
    st = flock_exec_create(&m.prog, &plan, m.tensors, k, pool, &eo, &e, &err);
    if (st != FLOCK_OK)
        fail_msg("exec_create: %s", err.msg);
    flock_exec_set_chunk(e, chunk);
    assert_int_equal(flock_exec_run(e, ids, P, FLOCK_FF_FULL, true, &err), FLOCK_OK);

    /* reference statistic and selection from the reference z */
    int L = cfg->n_layer, f = cfg->d_ff;
    int64_t kk[8];
    int32_t *kept[8];
    double *z = malloc((size_t)L * T * f * sizeof *z), *logits = malloc((size_t)T * cfg->vocab * sizeof *logits);
    double *logits_full = malloc((size_t)T * cfg->vocab * sizeof *logits_full);
    tiny_ref_forward(&m, ids, T, T, NULL, NULL, logits_full, z);
    assert_int_equal(flock_exec_n_ffn(e), (size_t)L);
    for (int l = 0; l < L; l++) {
        double *ss = calloc((size_t)f, sizeof *ss);
        for (int t = 0; t < P; t++) {
            double n2 = 0;
            for (int i = 0; i < f; i++)
                n2 += z[((size_t)l * T + t) * f + i] * z[((size_t)l * T + t) * f + i];
            for (int i = 0; i < f && n2 > 0; i++)
                ss[i] += z[((size_t)l * T + t) * f + i] * z[((size_t)l * T + t) * f + i] / n2;
        }
        kk[l] = flock_keep_count(keep, f);
        kept[l] = malloc((size_t)f * sizeof(int32_t));
        naive_topk(ss, f, (int)kk[l], kept[l]);
        flock_exec_ffn *ef = flock_exec_ffn_at(e, (size_t)l);
        double se = 0, sr = 0;
        for (int i = 0; i < f; i++) {
            se += ef->sumsq[i];
            sr += ss[i];
        }
        assert_true(fabs(se - sr) < 1e-4 * sr); /* each token adds 1 (or 0 for a zero row) */
        int32_t *mine = malloc((size_t)f * sizeof(int32_t));
        flock_rank_pair *scr = malloc((size_t)f * sizeof *scr);
        flock_select_topk(ef->sumsq, f, kk[l], mine, scr);
        int same = 0;
        for (int64_t j = 0, i2 = 0; j < kk[l]; j++) {
            while (i2 < kk[l] && mine[i2] < kept[l][j])
                i2++;
            same += i2 < kk[l] && mine[i2] == kept[l][j];
        }
        assert_true(same >= kk[l] - 1); /* f32 vs double may swap one near-tie */
        memcpy(ef->idx, kept[l], (size_t)kk[l] * sizeof(int32_t));
        ef->k = kk[l];
        free(ss), free(mine), free(scr);
    }
    assert_int_equal(flock_exec_run(e, ids + P, T - P, FLOCK_FF_SPARSE, false, &err), FLOCK_OK);
    assert_int_equal(flock_exec_n_past(e), T);
    tiny_ref_forward(&m, ids, T, P, kept, kk, logits, NULL);
    const float *got = flock_exec_logits(e);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double ne = nrm_err_d(got + (size_t)t * cfg->vocab, logits + (size_t)t * cfg->vocab, (size_t)cfg->vocab);
        if (ne > (kv_f16 ? 1e-3 : 2e-5))
            fail_msg("cfg seed %llu, %s, %d threads, keep %.2f, kv %s: position %d: normalized error %g",
                     (unsigned long long)cfg->seed, k->name, threads, keep, kv_f16 ? "f16" : "f32", t, ne);
        worst = ne > worst ? ne : worst;
    }
    if (kv_f16 && threads == 1)
        print_message("kv f16, cfg seed %llu, %s, keep %.2f: worst normalized error %.2e\n",
                      (unsigned long long)cfg->seed, k->name, keep, worst);
    if (keep < 1) { /* the experts change the later logits */
        double diff = nrm_err_d(got + (size_t)(T - 1) * cfg->vocab, logits_full + (size_t)(T - 1) * cfg->vocab,
                                (size_t)cfg->vocab);
        assert_true(diff > 1e-4);
    }
    /* errors: context overflow names both numbers; bad token; reset */
    st = flock_exec_run(e, ids, 5, FLOCK_FF_SPARSE, false, &err);
    assert_int_equal(st, FLOCK_E_RANGE);
    assert_non_null(strstr(err.msg, "24"));
    assert_non_null(strstr(err.msg, "25"));
    flock_exec_reset(e);
    int32_t bad = cfg->vocab;
    assert_int_equal(flock_exec_run(e, &bad, 1, FLOCK_FF_FULL, false, &err), FLOCK_E_INVALID_ARG);
    assert_int_equal(flock_exec_run(e, ids, 1, FLOCK_FF_SPARSE, false, &err), FLOCK_E_INVALID_ARG);
    for (int l = 0; l < L; l++)
        free(kept[l]);
    free(z), free(logits), free(logits_full);
    flock_exec_free(e);
    flock_plan_free(&plan);
    flock_pool_free(pool);
    tiny_model_free(&m);
}

static const tiny_cfg exec_cfgs[] = {
    /* Llama-like: GQA, interleaved RoPE over the whole head, SiLU gated FF, f32 */
    {.n_layer = 2, .d = 32, .n_head = 4, .n_kv = 2, .hd = 8, .d_ff = 48, .vocab = 50, .rope_dim = 8,
     .style = FLOCK_ROPE_NORMAL, .act = FLOCK_ACT_SILU, .wdtype = FLOCK_DTYPE_F32, .seed = 11},
    /* Gemma-like: MQA, NEOX RoPE on half the head with linear scaling, window,
     * soft-caps, GELU-tanh, embedding scale, f16 */
    {.n_layer = 2, .d = 40, .n_head = 2, .n_kv = 1, .hd = 16, .d_ff = 72, .vocab = 61, .rope_dim = 8,
     .style = FLOCK_ROPE_NEOX, .scaling = FLOCK_ROPE_SCALING_LINEAR, .rope_factor = 2, .window = 5,
     .softcap = 3, .head_softcap = 4, .act = FLOCK_ACT_GELU_TANH, .embed_scale = 2,
     .wdtype = FLOCK_DTYPE_F16, .seed = 12},
    /* OPT-like: layernorm, biases, learned positions, plain ReLU FF, bf16 */
    {.n_layer = 3, .d = 24, .n_head = 3, .n_kv = 3, .hd = 8, .d_ff = 64, .vocab = 40, .opt = 1,
     .act = FLOCK_ACT_RELU, .wdtype = FLOCK_DTYPE_BF16, .seed = 13},
    /* Llama 3.1 RoPE scaling (factor 8, original context 16), bf16 */
    {.n_layer = 1, .d = 32, .n_head = 2, .n_kv = 1, .hd = 16, .d_ff = 40, .vocab = 30, .rope_dim = 16,
     .style = FLOCK_ROPE_NORMAL, .scaling = FLOCK_ROPE_SCALING_LLAMA3, .rope_factor = 8, .act = FLOCK_ACT_SILU,
     .wdtype = FLOCK_DTYPE_BF16, .seed = 15},
    /* plain GELU (erf) FF with biases */
    {.n_layer = 1, .d = 16, .n_head = 2, .n_kv = 2, .hd = 8, .d_ff = 40, .vocab = 30, .opt = 1,
     .act = FLOCK_ACT_GELU, .wdtype = FLOCK_DTYPE_F32, .seed = 14},
};

static void test_exec_vs_reference(void **state)
{
    (void)state;
    const flock_kernel_table *tables[2] = {flock_kernels_scalar(), flock_kernels_best()};
    for (size_t c = 0; c < sizeof exec_cfgs / sizeof exec_cfgs[0]; c++)
        for (int ti = 0; ti < 2; ti++)
            for (int threads = 1; threads <= 2; threads++) {
                run_exec_case(&exec_cfgs[c], tables[ti], threads, 1.0, 5, false);
                run_exec_case(&exec_cfgs[c], tables[ti], threads, 0.5, 24, false);
                run_exec_case(&exec_cfgs[c], tables[ti], threads, 0.3, 1, false);
                run_exec_case(&exec_cfgs[c], tables[ti], threads, 0.5, 24, true);
                run_exec_case(&exec_cfgs[c], tables[ti], threads, 1.0, 1, true);
            }
}

/* Corruption suite for the executor's validation: random fields of random
 * ops (ids, widths, heads, dims, slots, enums) set to odd values. Each
 * program is either refused with a message or runs a prompt and a decode
 * step without touching memory out of bounds (run under ASan in the
 * sanitizer build). */
static void test_exec_corrupt_programs(void **state)
{
    (void)state;
    tiny_model m;
    tiny_model_init(&m, &exec_cfgs[1]);
    flock_pool *pool;
    assert_int_equal(flock_pool_create(2, &pool), FLOCK_OK);
    flock_op *orig = malloc(m.prog.n_ops * sizeof *orig);
    flock_value *vorig = malloc(m.prog.n_values * sizeof *vorig);
    memcpy(orig, m.prog.ops, m.prog.n_ops * sizeof *orig);
    memcpy(vorig, m.prog.values, m.prog.n_values * sizeof *vorig);
    static const int32_t odd[] = {-1, 0, 1, 2, 3, 7, 8, 16, 40, 41, 72, 1 << 20, -(1 << 30), 0x7fffffff};
    uint64_t r = 42;
    int refused = 0, ran = 0;
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    for (int it = 0; it < 3000; it++) {
        memcpy(m.prog.ops, orig, m.prog.n_ops * sizeof *orig);
        memcpy(m.prog.values, vorig, m.prog.n_values * sizeof *vorig);
        for (int j = 0; j < 1 + (int)(flock_test_rand(&r) % 2); j++) {
            flock_op *op = &m.prog.ops[flock_test_rand(&r) % m.prog.n_ops];
            int32_t v = odd[flock_test_rand(&r) % (sizeof odd / sizeof odd[0])];
            switch (flock_test_rand(&r) % 14) {
            case 0: op->in[flock_test_rand(&r) % 3] = v; break;
            case 1: op->out = v; break;
            case 2: op->w[flock_test_rand(&r) % FLOCK_OP_MAX_W] = v; break;
            case 3: op->n_head = v; break;
            case 4: op->n_kv_head = v; break;
            case 5: op->head_dim = v; break;
            case 6: op->rope_dim = v; break;
            case 7: op->group = v; break;
            case 8: op->kv_slot = v; break;
            case 9: op->d_ff = v; break;
            case 10: op->window = v; break;
            case 11: op->kind = (flock_op_kind)v; break;
            case 12: op->n_in = v; break;
            default: m.prog.values[flock_test_rand(&r) % m.prog.n_values].width = v; break;
            }
        }
        flock_exec *e;
        flock_error err = {0};
        flock_plan plan;
        const flock_exec_opts eo16 = {.n_ctx = 16, .pack_rows = true, .kv_f16 = true};
        /* the load path: verify and plan the program, then the executor */
        if (flock_plan_program(&m.prog, &plan, &err) != FLOCK_OK) {
            assert_true(strlen(err.msg) > 0);
            refused++;
            continue;
        }
        if (flock_exec_create(&m.prog, &plan, m.tensors, flock_kernels_best(), pool, &eo16, &e, &err) != FLOCK_OK) {
            assert_true(strlen(err.msg) > 0);
            flock_plan_free(&plan);
            refused++;
            continue;
        }
        ran++;
        if (flock_exec_run(e, ids, 5, FLOCK_FF_FULL, true, &err) == FLOCK_OK) {
            for (size_t i = 0; i < flock_exec_n_ffn(e); i++) {
                flock_exec_ffn *f = flock_exec_ffn_at(e, i);
                f->k = f->d_ff / 2;
                for (int64_t j = 0; j < f->k; j++)
                    f->idx[j] = (int32_t)(2 * j);
            }
            flock_exec_run(e, ids + 5, 1, FLOCK_FF_SPARSE, false, &err);
        }
        flock_exec_free(e);
        flock_plan_free(&plan);
    }
    print_message("corrupted programs: %d refused, %d ran\n", refused, ran);
    assert_true(refused > 0 && ran > 0);
    free(orig);
    free(vorig);
    flock_pool_free(pool);
    tiny_model_free(&m);
}

/* A program the executor must refuse, with a message naming the op. */
static void test_exec_rejects_bad_program(void **state)
{
    (void)state;
    tiny_model m;
    tiny_model_init(&m, &exec_cfgs[0]);
    flock_pool *pool;
    assert_int_equal(flock_pool_create(1, &pool), FLOCK_OK);
    flock_exec *e = (flock_exec *)0x1;
    flock_error err = {0};
    const flock_exec_opts eo16 = {.n_ctx = 16, .pack_rows = true, .kv_f16 = true};
    /* the q projection's weight gets the wrong shape */
    for (uint32_t i = 0; i < m.prog.n_ops; i++)
        if (m.prog.ops[i].kind == FLOCK_OP_LINEAR) {
            m.tensors[m.prog.ops[i].w[0]].cols += 1;
            break;
        }
    flock_plan plan;
    assert_int_equal(flock_plan_program(&m.prog, &plan, &err), FLOCK_OK);
    assert_int_equal(
        flock_exec_create(&m.prog, &plan, m.tensors, flock_kernels_scalar(), pool, &eo16, &e, &err),
        FLOCK_E_CORRUPT);
    assert_ptr_equal(e, (flock_exec *)0x1);
    assert_non_null(strstr(err.msg, "linear"));
    flock_plan_free(&plan);
    flock_pool_free(pool);
    tiny_model_free(&m);
}

/* The CUDA probe never fails and says why there is no device; the device
 * names; resolving each device without a model. */
static void test_cuda_probe_and_devices(void **state)
{
    (void)state;
    flock_cuda_info ci;
    const char *old = getenv("FLOCK_CUDA_LIBRARY");
    char saved[512] = "";
    if (old)
        snprintf(saved, sizeof saved, "%s", old);
    unsetenv("FLOCK_CUDA_LIBRARY");
    bool present = flock_cuda_probe(&ci);
    if (present) { /* a GPU host */
        assert_true(ci.driver && ci.n_devices >= 1 && ci.cc_major >= 1);
        assert_string_equal(ci.reason, "");
    } else {
        assert_true(ci.n_devices == 0 && ci.cc_major == 0 && ci.reason[0] != '\0');
        print_message("probe: %s\n", ci.reason);
    }
    /* A library that is not there, and one that is not a CUDA driver. */
    setenv("FLOCK_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", 1);
    assert_false(flock_cuda_probe(&ci));
    assert_false(ci.driver);
    assert_non_null(strstr(ci.reason, "no CUDA driver: /nonexistent/libcuda.so.1"));
    setenv("FLOCK_CUDA_LIBRARY", "libm.so.6", 1);
    assert_false(flock_cuda_probe(&ci));
    assert_non_null(strstr(ci.reason, "libm.so.6 lacks the driver API"));
    /* The backend's driver: the same reasons, as errors. */
    flock_cuda_driver *drv = NULL;
    flock_error derr = {0};
    setenv("FLOCK_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", 1);
    assert_int_equal(flock_cuda_driver_open(&drv, &derr), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(derr.msg, "no CUDA driver: /nonexistent/libcuda.so.1"));
    setenv("FLOCK_CUDA_LIBRARY", "libm.so.6", 1);
    assert_int_equal(flock_cuda_driver_open(&drv, &derr), FLOCK_E_UNSUPPORTED);
    assert_non_null(strstr(derr.msg, "lacks cuInit"));
#ifdef FLOCK_TEST_CUDA_STUB
    /* The toolkit's stub libcuda exports the real driver's symbols: every
     * entry point the backend loads (the _v2 names) resolves, and cuInit
     * fails (CUDA_ERROR_STUB_LIBRARY, 34; the stub names no errors). */
    setenv("FLOCK_CUDA_LIBRARY", FLOCK_TEST_CUDA_STUB, 1);
    assert_int_not_equal(flock_cuda_driver_open(&drv, &derr), FLOCK_OK);
    print_message("stub driver: %s\n", derr.msg);
    assert_non_null(strstr(derr.msg, "cuInit: "));
#endif
    assert_null(drv);
    if (saved[0])
        setenv("FLOCK_CUDA_LIBRARY", saved, 1);
    else
        unsetenv("FLOCK_CUDA_LIBRARY");

    for (int d = 0; d < FLOCK_DEVICE_COUNT; d++) {
        flock_device back;
        assert_int_equal(flock_device_parse(flock_device_name((flock_device)d), &back), FLOCK_OK);
        assert_int_equal(back, d);
    }
    flock_device dev = FLOCK_DEVICE_COUNT;
    assert_int_equal(flock_device_parse("gpu", &dev), FLOCK_E_INVALID_ARG);
    assert_int_equal(dev, FLOCK_DEVICE_COUNT);
    assert_string_equal(flock_device_name((flock_device)7), "?");
    char note[512];
    flock_error err = {0};
    assert_int_equal(flock_device_resolve(FLOCK_DEVICE_CPU, &dev, note, sizeof note, &err), FLOCK_OK);
    assert_int_equal(dev, FLOCK_DEVICE_CPU);
    dev = FLOCK_DEVICE_COUNT;
    const bool usable = present && ci.cc_major >= 8;
    if (usable) {
        assert_int_equal(flock_device_resolve(FLOCK_DEVICE_CUDA, &dev, note, sizeof note, &err), FLOCK_OK);
        assert_int_equal(dev, FLOCK_DEVICE_CUDA);
        assert_non_null(strstr(note, "cuda: asked for (CUDA device 0"));
    } else {
        assert_int_equal(flock_device_resolve(FLOCK_DEVICE_CUDA, &dev, note, sizeof note, &err),
                         FLOCK_E_UNSUPPORTED);
        assert_int_equal(dev, FLOCK_DEVICE_COUNT);
        assert_non_null(strstr(err.msg, present ? "compute capability 8.0" : "device cuda: no CUDA device ("));
    }
    assert_int_equal(flock_device_resolve(FLOCK_DEVICE_AUTO, &dev, note, sizeof note, &err), FLOCK_OK);
    assert_int_equal(dev, usable ? FLOCK_DEVICE_CUDA : FLOCK_DEVICE_CPU);
    assert_non_null(strstr(note, usable ? "auto: cuda (CUDA device 0" : "auto: cpu ("));
    assert_int_equal(flock_device_resolve((flock_device)9, &dev, note, sizeof note, &err), FLOCK_E_INVALID_ARG);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "tiny") == 0) {
        char buf[512];
        flock_test_tiny_model(buf, sizeof buf); /* or fail */
        const struct CMUnitTest e2e[] = {
            cmocka_unit_test(test_e2e_stories_greedy),
            cmocka_unit_test(test_e2e_stories_errors_and_keep),
            cmocka_unit_test(test_e2e_stories_f16_compressed),
            cmocka_unit_test(test_e2e_stories_cli),
            cmocka_unit_test(test_e2e_stories_no_alloc_in_token_loop),
            cmocka_unit_test(test_e2e_stories_device),
            cmocka_unit_test(test_e2e_stories_generated_kernels),
            cmocka_unit_test(test_e2e_stories_foreign_kernels),
            cmocka_unit_test(test_e2e_stories_corrupt_kernels),
            cmocka_unit_test(test_e2e_stories_batched_decode),
            cmocka_unit_test(test_e2e_stories_packed_rows),
        };
        return cmocka_run_group_tests(e2e, flock_e2e_setup, flock_e2e_teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_scalar),
        cmocka_unit_test(test_kernels_simd),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_keep_count),
        cmocka_unit_test(test_griffin_hand),
        cmocka_unit_test(test_griffin_ties),
        cmocka_unit_test(test_griffin_select_long),
        cmocka_unit_test(test_select_rank_random),
        cmocka_unit_test(test_allocate_budget),
        cmocka_unit_test(test_select_blend),
        cmocka_unit_test(test_sampler_greedy_penalty),
        cmocka_unit_test(test_sampler_distribution),
        cmocka_unit_test(test_sampler_top_p_full_sort),
        cmocka_unit_test(test_exec_vs_reference),
        cmocka_unit_test(test_exec_rejects_bad_program),
        cmocka_unit_test(test_exec_corrupt_programs),
        cmocka_unit_test(test_cuda_probe_and_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
