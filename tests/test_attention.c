/* The runtime's attention (runtime/attention.c and the att_* kernels of
 * each kernel table) against a plain double-precision reference, by
 * normalized error on fresh random inputs: odd lengths and head sizes,
 * sliding windows, GQA, soft-capping, 1 and 2 threads, prefill and decode. */
#include "test_util.h"

#include "attention.h"
#include "kernels.h"
#include "threads.h"

typedef struct att_case {
    int32_t T, n_head, n_kv_head, head_dim, window;
    int64_t n_past;
    float scale, softcap;
} att_case;

/* softmax(cap(scale q.k)) V for every token and head, in double. */
static void reference(const att_case *c, const float *q, const float *kc, const float *vc, float *out)
{
    int32_t hd = c->head_dim, group = c->n_head / c->n_kv_head, kvw = c->n_kv_head * hd;
    int64_t npos = c->n_past + c->T;
    double *s = malloc((size_t)npos * sizeof *s), *o = malloc((size_t)hd * sizeof *o);
    assert_non_null(s);
    assert_non_null(o);
    for (int32_t t = 0; t < c->T; t++)
        for (int32_t h = 0; h < c->n_head; h++) {
            int64_t pos = c->n_past + t, j0 = c->window > 0 ? pos - c->window + 1 : 0;
            j0 = j0 < 0 ? 0 : j0;
            const float *qv = q + ((size_t)t * c->n_head + (size_t)h) * hd;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = j0; j <= pos; j++) {
                double d = 0;
                for (int32_t i = 0; i < hd; i++)
                    d += (double)qv[i] * kc[(size_t)j * kvw + (size_t)(h / group) * hd + i];
                d *= c->scale;
                if (c->softcap > 0)
                    d = c->softcap * tanh(d / c->softcap);
                s[j] = d;
                mx = d > mx ? d : mx;
            }
            for (int32_t i = 0; i < hd; i++)
                o[i] = 0;
            for (int64_t j = j0; j <= pos; j++) {
                double p = exp(s[j] - mx);
                sum += p;
                for (int32_t i = 0; i < hd; i++)
                    o[i] += p * vc[(size_t)j * kvw + (size_t)(h / group) * hd + i];
            }
            for (int32_t i = 0; i < hd; i++)
                out[((size_t)t * c->n_head + (size_t)h) * hd + i] = (float)(o[i] / sum);
        }
    free(s);
    free(o);
}

/* Runs one case with table k on pools of 1 and 2 threads; the two results
 * must be bitwise equal (the split does not depend on the thread count)
 * and close to the reference. Then the same caches rounded to f16, once as
 * floats and once as an f16 cache: the f16 cache's result must be bitwise
 * the f32 one on the rounded values (attention.c widens the f16 rows
 * exactly and runs the same kernels). Both again in the runtime's
 * head-major cache layout: bitwise the same. */
static void check_case(const flock_kernel_table *k, const att_case *c, uint64_t *rng)
{
    int32_t hd = c->head_dim, kvw = c->n_kv_head * hd, qw = c->n_head * hd;
    int32_t n_ctx = (int32_t)(c->n_past + c->T) + 3; /* a little unused room */
    float *q = malloc((size_t)c->T * qw * sizeof *q), *kc = malloc((size_t)n_ctx * kvw * sizeof *kc),
          *vc = malloc((size_t)n_ctx * kvw * sizeof *vc), *ref = malloc((size_t)c->T * qw * sizeof *ref),
          *out[2];
    assert_true(q && kc && vc && ref);
    for (size_t i = 0; i < (size_t)c->T * qw; i++)
        q[i] = flock_test_randf(rng);
    for (size_t i = 0; i < (size_t)n_ctx * kvw; i++) {
        kc[i] = flock_test_randf(rng);
        vc[i] = flock_test_randf(rng);
    }
    reference(c, q, kc, vc, ref);
    size_t ncache = (size_t)n_ctx * kvw;
    float *kr = malloc(ncache * sizeof *kr), *vr = malloc(ncache * sizeof *vr);
    uint16_t *kh = malloc(ncache * sizeof *kh), *vh = malloc(ncache * sizeof *vh);
    assert_true(kr && vr && kh && vh);
    k->f32_to_f16(kc, kh, ncache);
    k->f32_to_f16(vc, vh, ncache);
    for (size_t i = 0; i < ncache; i++)
        kr[i] = flock_f16_to_f32(kh[i]), vr[i] = flock_f16_to_f32(vh[i]);
    for (int nt = 1; nt <= 2; nt++) {
        flock_pool *pool;
        assert_int_equal(flock_pool_create(nt, &pool), FLOCK_OK);
        size_t nf = flock_att_scratch_floats(nt, n_ctx, c->n_head, hd);
        assert_true(nf > 0);
        float *scratch = malloc(nf * sizeof *scratch);
        out[nt - 1] = malloc((size_t)c->T * qw * sizeof(float));
        assert_true(scratch && out[nt - 1]);
        for (size_t i = 0; i < nf; i++) /* stale scratch must not matter */
            scratch[i] = NAN;
        for (size_t i = 0; i < (size_t)c->T * qw; i++)
            out[nt - 1][i] = NAN;
        flock_att_args a = {.q = q, .kc = kc, .vc = vc, .out = out[nt - 1], .ldq = (size_t)qw,
                            .ldkv = (size_t)kvw, .ldo = (size_t)qw, .n_past = c->n_past, .T = c->T,
                            .n_head = c->n_head, .n_kv_head = c->n_kv_head, .head_dim = hd, .window = c->window,
                            .scale = c->scale, .softcap = c->softcap};
        flock_attention(k, pool, scratch, &a);
        double err = flock_test_nrm_err(out[nt - 1], ref, (size_t)c->T * qw);
        if (!(err < 2e-6))
            print_error("%s, %d threads: T %d past %lld heads %d/%d hd %d window %d cap %g: err %g\n", k->name, nt,
                        c->T, (long long)c->n_past, c->n_head, c->n_kv_head, hd, c->window, c->softcap, err);
        assert_true(err < 2e-6);
        /* f16 */
        float *o32 = malloc((size_t)c->T * qw * sizeof(float)), *o16 = malloc((size_t)c->T * qw * sizeof(float));
        assert_true(o32 && o16);
        a.kc = kr, a.vc = vr, a.out = o32;
        flock_attention(k, pool, scratch, &a);
        for (size_t i = 0; i < nf; i++)
            scratch[i] = NAN;
        a.kc = kh, a.vc = vh, a.kv_f16 = true, a.out = o16;
        flock_attention(k, pool, scratch, &a);
        assert_memory_equal(o32, o16, (size_t)c->T * qw * sizeof(float));
        /* the runtime's head-major layout ([kv head][n_ctx][hd], ldkv = hd):
         * bitwise the row-interleaved result, f32 and f16 */
        float *hk = malloc(ncache * sizeof *hk), *hv = malloc(ncache * sizeof *hv), *oh = malloc((size_t)c->T * qw * sizeof *oh);
        uint16_t *hkh = malloc(ncache * sizeof *hkh), *hvh = malloc(ncache * sizeof *hvh);
        assert_true(hk && hv && oh && hkh && hvh);
        for (int32_t g = 0; g < c->n_kv_head; g++)
            for (int32_t j = 0; j < n_ctx; j++)
                for (int32_t i = 0; i < hd; i++) {
                    size_t from = (size_t)j * kvw + (size_t)g * hd + i, to = ((size_t)g * n_ctx + j) * hd + i;
                    hk[to] = kc[from], hv[to] = vc[from], hkh[to] = kh[from], hvh[to] = vh[from];
                }
        a.kc = hk, a.vc = hv, a.kv_f16 = false, a.out = oh, a.ldkv = (size_t)hd, a.kv_head_stride = (size_t)n_ctx * hd;
        flock_attention(k, pool, scratch, &a);
        assert_memory_equal(out[nt - 1], oh, (size_t)c->T * qw * sizeof(float));
        a.kc = hkh, a.vc = hvh, a.kv_f16 = true;
        flock_attention(k, pool, scratch, &a);
        assert_memory_equal(o16, oh, (size_t)c->T * qw * sizeof(float));
        free(hk), free(hv), free(oh), free(hkh), free(hvh);
        free(o32), free(o16);
        free(scratch);
        flock_pool_free(pool);
    }
    assert_memory_equal(out[0], out[1], (size_t)c->T * qw * sizeof(float));
    free(out[0]), free(out[1]), free(q), free(kc), free(vc), free(ref), free(kr), free(vr), free(kh), free(vh);
}

static void check_attention(const flock_kernel_table *k)
{
    uint64_t rng = 0x5eedf00d1234ULL;
    /* (heads, kv heads, head_dim): SmolLM2, Gemma 3, stories260K, odd sizes */
    static const int32_t shapes[][3] = {{9, 3, 64}, {4, 1, 256}, {8, 4, 8}, {3, 3, 13}, {6, 2, 72}, {2, 1, 5}};
    static const int32_t Ts[] = {1, 1, 3, 17, 40};
    static const int64_t pasts[] = {0, 1, 6, 129, 300};
    static const int32_t windows[] = {0, 7, 100};
    int n = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
            for (size_t pi = 0; pi < sizeof pasts / sizeof pasts[0]; pi++) {
                att_case c = {Ts[ti], shapes[si][0], shapes[si][1], shapes[si][2], 0, pasts[pi], 0, 0};
                c.window = windows[(si + ti + pi) % 3];
                /* a larger scale makes the softmax peaky (the online max matters) */
                c.scale = (float)((1 + (pi + si) % 4) / sqrt((double)c.head_dim));
                c.softcap = (ti + pi) % 3 == 0 ? 1.5f : 0.f;
                if (shapes[si][2] == 256 && Ts[ti] * (pasts[pi] + Ts[ti]) > 4000)
                    continue; /* keeps the double reference quick */
                check_case(k, &c, &rng);
                n++;
            }
    /* decode over many spans, with a window that starts inside one */
    att_case longc = {1, 9, 3, 64, 0, 1000, 0.125f, 0};
    check_case(k, &longc, &rng);
    longc.window = 512;
    check_case(k, &longc, &rng);
    assert_true(n > 100);
}

/* The three micro-kernels alone, odd n and head sizes. */
static void check_kernels(const flock_kernel_table *k)
{
    uint64_t rng = 0xabcdef987ULL;
    const size_t hds[] = {1, 5, 8, 13, 64, 72, 130, 256};
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (size_t n = 1; n <= 19; n += 3) {
            size_t hd = hds[hi], ld = hd + 3;
            float *q = malloc(hd * sizeof *q), *kv = malloc(n * ld * sizeof *kv), *s = malloc(n * sizeof *s),
                  *q3 = malloc(3 * (hd + 1) * sizeof *q3),
                  *s3 = malloc(60 * sizeof *s3), *o = malloc(hd * sizeof *o), *or = malloc(hd * sizeof *or);
            assert_true(q && kv && s && o && or && q3 && s3);
            for (size_t i = 0; i < 3 * (hd + 1); i++)
                q3[i] = flock_test_randf(&rng);
            for (size_t i = 0; i < hd; i++)
                q[i] = flock_test_randf(&rng), o[i] = or[i] = flock_test_randf(&rng);
            for (size_t i = 0; i < n * ld; i++)
                kv[i] = flock_test_randf(&rng);
            for (size_t nq = 1; nq <= 3; nq++) { /* rows of q3 are hd + 1 floats apart */
                k->att_qk(q3, hd + 1, nq, kv, ld, n, hd, 0.7f, s3, 20);
                /* each score against its exact value, relative to sum |q_i k_i| (a
                 * single dot of random terms may cancel almost to zero) */
                for (size_t r = 0; r < nq; r++)
                    for (size_t j = 0; j < n; j++) {
                        double d = 0, mag = 0;
                        for (size_t i = 0; i < hd; i++) {
                            d += (double)q3[r * (hd + 1) + i] * kv[j * ld + i];
                            mag += fabs((double)q3[r * (hd + 1) + i] * kv[j * ld + i]);
                        }
                        assert_true(fabs(s3[r * 20 + j] - 0.7 * d) <= 1e-6 * 0.7 * mag);
                    }
            }
            memcpy(s, s3, n * sizeof *s);
            k->att_pv(s, n, 1, kv, ld, n, hd, o, hd);
            for (size_t i = 0; i < hd; i++) {
                double acc = or[i];
                for (size_t j = 0; j < n; j++)
                    acc += (double)s[j] * kv[j * ld + i];
                or[i] = (float)acc;
            }
            assert_true(flock_test_nrm_err(o, or, hd) < 1e-6);
            /* f16 K/V (the _h forms) bitwise the f32 forms on the widened
             * values; p V over 1..6 rows at once, each row bitwise its
             * one-row result */
            uint16_t *kh = malloc(n * ld * sizeof *kh);
            float *kw = malloc(n * ld * sizeof *kw), *p6 = malloc(6 * 20 * sizeof *p6),
                  *o6 = malloc(6 * (hd + 2) * sizeof *o6), *o1 = malloc(6 * (hd + 2) * sizeof *o1),
                  *s3h = malloc(60 * sizeof *s3h);
            assert_true(kh && kw && p6 && o6 && o1 && s3h);
            k->f32_to_f16(kv, kh, n * ld);
            for (size_t i = 0; i < n * ld; i++)
                kw[i] = flock_f16_to_f32(kh[i]);
            for (size_t nq = 1; nq <= 3; nq++) {
                k->att_qk(q3, hd + 1, nq, kw, ld, n, hd, 0.7f, s3, 20);
                k->att_qk_h(q3, hd + 1, nq, kh, ld, n, hd, 0.7f, s3h, 20);
                for (size_t r = 0; r < nq; r++)
                    assert_memory_equal(s3 + r * 20, s3h + r * 20, n * sizeof *s3);
            }
            for (size_t i = 0; i < 6 * 20; i++)
                p6[i] = flock_test_randf(&rng);
            for (size_t np = 1; np <= 6; np++)
                for (int h = 0; h < 2; h++) {
                    for (size_t i = 0; i < 6 * (hd + 2); i++)
                        o6[i] = o1[i] = flock_test_randf(&rng);
                    if (h)
                        k->att_pv_h(p6, 20, np, kh, ld, n, hd, o6, hd + 2);
                    else
                        k->att_pv(p6, 20, np, kw, ld, n, hd, o6, hd + 2);
                    for (size_t r = 0; r < np; r++) /* one row at a time, the f32 form */
                        k->att_pv(p6 + r * 20, 20, 1, kw, ld, n, hd, o1 + r * (hd + 2), hd + 2);
                    assert_memory_equal(o6, o1, 6 * (hd + 2) * sizeof *o6);
                }
            free(kh), free(kw), free(p6), free(o6), free(o1), free(s3h);
            free(q), free(kv), free(s), free(o), free(or), free(q3), free(s3);
        }
    /* f32 -> f16: bitwise the format library's rounding, over normal,
     * subnormal, overflowing and tie values, both signs, odd lengths */
    enum { NH = 1037 };
    float *xf = malloc(NH * sizeof *xf);
    uint16_t *hk = malloc(NH * sizeof *hk);
    assert_true(xf && hk);
    for (int i = 0; i < NH; i++) {
        float mag = ldexpf(1.f, (int)(flock_test_rand(&rng) % 48) - 30); /* 2^-30 .. 2^17 */
        xf[i] = flock_test_randf(&rng) * mag;
        if (i % 7 == 0) /* a tie: exactly half an f16 step above a representable value */
            xf[i] = flock_f16_to_f32((uint16_t)(flock_test_rand(&rng) % 0x7b00)) * (1.f + 1.f / 2048);
    }
    xf[1] = INFINITY, xf[2] = -INFINITY, xf[3] = 65520.f, xf[4] = -1e-8f, xf[5] = 0.f, xf[6] = -0.f;
    for (size_t n = 1; n <= NH; n += n < 40 ? 1 : 333) {
        k->f32_to_f16(xf, hk, n);
        for (size_t i = 0; i < n; i++)
            if (hk[i] != flock_f32_to_f16(xf[i]))
                fail_msg("%s f32_to_f16(%a) = %#x, expected %#x", k->name, (double)xf[i], hk[i],
                         flock_f32_to_f16(xf[i]));
    }
    free(xf), free(hk);
    /* exp: relative error per element over the range the softmax feeds it */
    enum { N = 4099 };
    float *x = malloc(N * sizeof *x);
    assert_non_null(x);
    double maxrel = 0, sum = 0;
    for (int i = 0; i < N; i++)
        x[i] = -90.f * (float)(flock_test_rand(&rng) >> 40) / 16777216.f + 0.5f;
    float m = 0.5f;
    float *y = malloc(N * sizeof *y);
    assert_non_null(y);
    memcpy(y, x, N * sizeof *x);
    float got = k->att_exp(y, N, m);
    for (int i = 0; i < N; i++) {
        double e = exp((double)x[i] - m);
        sum += (double)y[i];
        if (x[i] - m >= -87.f)
            maxrel = fmax(maxrel, fabs(y[i] - e) / e);
        else
            assert_true(y[i] < 2e-38);
    }
    assert_true(maxrel < 4e-7);
    assert_true(fabs(got - sum) <= 1e-6 * sum);
    free(x), free(y);
}

static void test_attention_scalar(void **state)
{
    (void)state;
    check_kernels(flock_kernels_scalar());
    check_attention(flock_kernels_scalar());
}

/* Table k's kernels and attention, or a skip naming the CPU feature the
 * table needs (`missing`) where this machine lacks it. */
static void check_table(const flock_kernel_table *k, const char *missing)
{
    if (!k) {
        print_message("no %s here: its attention not tested\n", missing);
        skip();
    }
    check_kernels(k);
    check_attention(k);
}

static void test_attention_simd(void **state)
{
    (void)state;
    check_table(flock_kernels_avx2(), "AVX2/FMA/F16C");
}

/* The AVX-512 table: its prefill tasks run as matrix products
 * (attention.c, att_task_tile) where head_dim is a multiple of 32. */
static void test_attention_avx512(void **state)
{
    (void)state;
    check_table(flock_kernels_avx512(), "AVX-512 VNNI");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_scalar),
        cmocka_unit_test(test_attention_simd),
        cmocka_unit_test(test_attention_avx512),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
