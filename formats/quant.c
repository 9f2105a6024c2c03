/* Quantization of f32 rows into GGML's blocks (quant.h): the 32-element
 * types as GGML's reference quantizers do it, the k-quants by an
 * error-minimizing scale search of flock's own; the layouts are in dequant.c. */
#include "quant.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static void put_half(uint8_t *p, float f)
{
    uint16_t h = flock_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* d = max|x| / 127, q = round(x / d). */
static void block_q8_0(const float *x, uint8_t *y)
{
    float amax = 0;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put_half(y, d);
    for (int j = 0; j < 32; j++)
        y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* d = (the element of largest magnitude) / -8, q = x / d + 8 in [0, 15];
 * element j < 16 in the low nibble of byte j, j + 16 in its high nibble. */
static void block_q4_0(const float *x, uint8_t *y)
{
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put_half(y, d);
    for (int j = 0; j < 16; j++) {
        int8_t a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + 16] * id + 8.5f);
        uint8_t qa = (uint8_t)(a < 15 ? a : 15), qb = (uint8_t)(b < 15 ? b : 15);
        y[2 + j] = (uint8_t)(qa | (qb << 4));
    }
}

/* As q4_0 with 5 bits: d = max / -16, q = x / d + 16 in [0, 31]; the low
 * 4 bits as q4_0's nibbles, the fifth bit of element j in bit j of qh. */
static void block_q5_0(const float *x, uint8_t *y)
{
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put_half(y, d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int8_t a = (int8_t)(x[j] * id + 16.5f), b = (int8_t)(x[j + 16] * id + 16.5f);
        uint8_t qa = (uint8_t)(a < 31 ? a : 31), qb = (uint8_t)(b < 31 ? b : 31);
        y[6 + j] = (uint8_t)((qa & 0x0F) | ((qb & 0x0F) << 4));
        qh |= (uint32_t)(qa >> 4) << j | (uint32_t)(qb >> 4) << (j + 16);
    }
    for (int i = 0; i < 4; i++)
        y[2 + i] = (uint8_t)(qh >> (8 * i));
}

/* d = (max - min) / 15, m = min, q = (x - min) / d in [0, 15]. */
static void block_q4_1(const float *x, uint8_t *y)
{
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) {
        min = fminf(min, x[j]);
        max = fmaxf(max, x[j]);
    }
    const float d = (max - min) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    put_half(y, d);
    put_half(y + 2, min);
    for (int j = 0; j < 16; j++) {
        int8_t a = (int8_t)((x[j] - min) * id + 0.5f), b = (int8_t)((x[j + 16] - min) * id + 0.5f);
        uint8_t qa = (uint8_t)(a < 15 ? a : 15), qb = (uint8_t)(b < 15 ? b : 15);
        y[4 + j] = (uint8_t)(qa | (qb << 4));
    }
}

/* ---- k-quants: 256-element super-blocks with per-sub-block scales -------- */

/* Weighted least squares of x ~ scale * L + off over n elements, for fixed
 * integer levels L: the scale and offset that minimize sum w (scale L + off - x)^2.
 * With want_off false, off is 0. Returns the weighted squared error, or
 * INFINITY when the system is degenerate (all L equal). */
static float fit_levels(int n, const float *x, const float *w, const int8_t *L, bool want_off,
                        float *scale, float *off)
{
    double sw = 0, sl = 0, sx = 0, sll = 0, slx = 0;
    for (int i = 0; i < n; i++) {
        sw += w[i];
        sl += w[i] * L[i];
        sx += w[i] * x[i];
        sll += (double)w[i] * L[i] * L[i];
        slx += (double)w[i] * L[i] * x[i];
    }
    double a, b = 0;
    if (want_off) {
        const double det = sw * sll - sl * sl;
        if (det <= 0)
            return INFINITY;
        a = (sw * slx - sl * sx) / det;
        b = (sll * sx - sl * slx) / det;
        if (b > 0) { /* Q4_K's offset is -dmin * m with m >= 0: refit with off = 0 */
            b = 0;
            if (sll <= 0)
                return INFINITY;
            a = slx / sll;
        }
    } else {
        if (sll <= 0)
            return INFINITY;
        a = slx / sll;
    }
    double e = 0;
    for (int i = 0; i < n; i++) {
        const double r = a * L[i] + b - x[i];
        e += w[i] * r * r;
    }
    *scale = (float)a;
    *off = (float)b;
    return (float)e;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* One Q4_K sub-block (32 elements, levels 0..15, x ~ scale * L + off with
 * off <= 0): tries 21 grids, iscale = (15 + 0.1 t) / (max - min) for t in
 * -10..10 with min = min(0, min x), rounds x onto each, refits scale and
 * offset by weighted least squares and keeps the fit of least error. The
 * weights |x| + rms(x) favour the large elements, which matter most in a dot
 * product, without ignoring the small ones. */
static void search_q4k_sub(const float *x, const float *w, float *scale, float *off)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < 32; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    lo = fminf(lo, 0.0f);
    *scale = 0;
    *off = lo;
    if (hi <= lo)
        return; /* constant (non-positive) sub-block: off alone is exact */
    float best = INFINITY;
    int8_t L[32];
    for (int t = -10; t <= 10; t++) {
        const float is = (15.0f + 0.1f * t) / (hi - lo);
        for (int i = 0; i < 32; i++)
            L[i] = (int8_t)clampi((int)lrintf(is * (x[i] - lo)), 0, 15);
        float a = 0, b = 0;
        const float e = fit_levels(32, x, w, L, true, &a, &b);
        if (e < best && a > 0) {
            best = e;
            *scale = a;
            *off = b;
        }
    }
}

/* Q4_K: f16 d, dmin; 12 bytes of 6-bit scales sc[8] and mins m[8] (packing:
 * kquant.h's flock_kquant_scales); 128 bytes of nibbles, sub-blocks 2i / 2i+1 in
 * the low / high nibbles of qs[32i..32i+31]; x = d sc q - dmin m. The
 * sub-block fits (search_q4k_sub) are rounded to 6 bits against the largest
 * scale and min, then each element is rounded again on the final grid. */
static void block_q4_k(const float *x, uint8_t *y)
{
    float w[32], scale[8], mn[8], max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; s++) {
        const float *xs = x + 32 * s;
        float ss = 0;
        for (int i = 0; i < 32; i++)
            ss += xs[i] * xs[i];
        const float rms = sqrtf(ss / 32);
        for (int i = 0; i < 32; i++)
            w[i] = rms + fabsf(xs[i]);
        float off = 0;
        search_q4k_sub(xs, w, &scale[s], &off);
        mn[s] = -off;
        max_scale = fmaxf(max_scale, scale[s]);
        max_min = fmaxf(max_min, mn[s]);
    }
    const float isc = max_scale > 0 ? 63.0f / max_scale : 0, imn = max_min > 0 ? 63.0f / max_min : 0;
    uint8_t ls[8], lm[8];
    for (int s = 0; s < 8; s++) {
        ls[s] = (uint8_t)clampi((int)lrintf(isc * scale[s]), 0, 63);
        lm[s] = (uint8_t)clampi((int)lrintf(imn * mn[s]), 0, 63);
    }
    put_half(y, max_scale / 63.0f);
    put_half(y + 2, max_min / 63.0f);
    const float d = flock_f16_to_f32(flock_f32_to_f16(max_scale / 63.0f));
    const float dmin = flock_f16_to_f32(flock_f32_to_f16(max_min / 63.0f));
    uint8_t *sc = y + 4, *qs = y + 16;
    for (int j = 0; j < 4; j++) {
        sc[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
        sc[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
        sc[j + 8] = (uint8_t)((ls[j + 4] & 15) | ((lm[j + 4] & 15) << 4));
    }
    uint8_t L[256];
    for (int s = 0; s < 8; s++) {
        const float ds = d * ls[s], ms = dmin * lm[s];
        for (int i = 0; i < 32; i++)
            L[32 * s + i] = (uint8_t)(ds > 0 ? clampi((int)lrintf((x[32 * s + i] + ms) / ds), 0, 15) : 0);
    }
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++)
            qs[32 * p + l] = (uint8_t)(L[64 * p + l] | (L[64 * p + 32 + l] << 4));
}

/* One Q6_K sub-block (16 elements, signed levels -32..31, x ~ scale * L):
 * the grids iscale = -(32 + 0.1 t) / xmax (xmax the element of largest
 * magnitude, so it lands on -32, the end with room) for t in -9..9, each
 * refit by least squares weighted by x^2, the least error kept. */
static float search_q6k_sub(const float *x)
{
    float amax = 0, max = 0, w[16];
    for (int i = 0; i < 16; i++) {
        w[i] = x[i] * x[i];
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0)
        return 0;
    float best = INFINITY, scale = max / -32.0f;
    int8_t L[16];
    for (int t = -9; t <= 9; t++) {
        const float is = -(32.0f + 0.1f * t) / max;
        for (int i = 0; i < 16; i++)
            L[i] = (int8_t)clampi((int)lrintf(is * x[i]), -32, 31);
        float a = 0, b = 0;
        const float e = fit_levels(16, x, w, L, false, &a, &b);
        if (e < best) {
            best = e;
            scale = a;
        }
    }
    return scale;
}

/* Q6_K: ql[128] low nibbles, qh[64] high 2 bits, i8 scales[16], f16 d;
 * x = d sc (q - 32) (layout: dequant.c's dequant_q6_k). The 16 sub-block
 * scales are rounded to int8 against the one of largest magnitude (which
 * becomes -128, the end with room), then each element is rounded again on
 * the final grid. */
static void block_q6_k(const float *x, uint8_t *y)
{
    float scale[16], amax = 0, max = 0;
    for (int s = 0; s < 16; s++) {
        scale[s] = search_q6k_sub(x + 16 * s);
        if (fabsf(scale[s]) > amax) {
            amax = fabsf(scale[s]);
            max = scale[s];
        }
    }
    const float is = amax > 0 ? -128.0f / max : 0;
    int8_t *sc = (int8_t *)(y + 192);
    for (int s = 0; s < 16; s++)
        sc[s] = (int8_t)clampi((int)lrintf(is * scale[s]), -128, 127);
    put_half(y + 208, amax > 0 ? 1.0f / is : 0.0f);
    const float d = amax > 0 ? flock_f16_to_f32(flock_f32_to_f16(1.0f / is)) : 0.0f;
    uint8_t L[256];
    for (int s = 0; s < 16; s++) {
        const float ds = d * sc[s];
        for (int i = 0; i < 16; i++)
            L[16 * s + i] = (uint8_t)(ds != 0 ? clampi((int)lrintf(x[16 * s + i] / ds), -32, 31) + 32 : 32);
    }
    uint8_t *ql = y, *qh = y + 128;
    for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
        const uint8_t *q = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((q[l] & 15) | ((q[l + 64] & 15) << 4));
            ql[l + 32] = (uint8_t)((q[l + 32] & 15) | ((q[l + 96] & 15) << 4));
            qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                              ((q[l + 96] >> 4) << 6));
        }
    }
}

flock_status flock_quantize_row(flock_dtype t, const float *x, void *dst, size_t n)
{
    void (*block)(const float *, uint8_t *) = t == FLOCK_DTYPE_Q8_0   ? block_q8_0
                                              : t == FLOCK_DTYPE_Q4_0 ? block_q4_0
                                              : t == FLOCK_DTYPE_Q4_1 ? block_q4_1
                                              : t == FLOCK_DTYPE_Q4_K ? block_q4_k
                                              : t == FLOCK_DTYPE_Q6_K ? block_q6_k
                                              : t == FLOCK_DTYPE_Q5_0 ? block_q5_0
                                                                      : NULL;
    const size_t be = flock_dtype_block(t);
    if (!block || n % be || (!x && n) || (!dst && n))
        return FLOCK_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return FLOCK_E_CORRUPT;
    const size_t bb = flock_dtype_block_bytes(t);
    for (size_t b = 0; b < n / be; b++)
        block(x + be * b, (uint8_t *)dst + b * bb);
    return FLOCK_OK;
}
