/* ggml tensor types: sizes, names and dequantization to f32.
 *
 * Block layouts (little-endian, packed, no padding; "half" is IEEE f16):
 *   Q4_0  (32 elems, 18 B): half d; u8 qs[16]           x = (q - 8) * d
 *   Q4_1  (32 elems, 20 B): half d, m; u8 qs[16]        x = q * d + m
 *   Q5_0  (32 elems, 22 B): half d; u8 qh[4]; u8 qs[16] x = (q5 - 16) * d
 *   Q5_1  (32 elems, 24 B): half d, m; u8 qh[4]; u8 qs[16]   x = q5 * d + m
 *   Q8_0  (32 elems, 34 B): half d; i8 qs[32]           x = q * d
 *     In the 4/5-bit blocks, element j < 16 is the low nibble of qs[j] and
 *     element j + 16 its high nibble; the fifth bit of element j is bit j of
 *     the 32-bit little-endian qh.
 *   Q4_K (256 elems, 144 B): half d, dmin; u8 scales[12]; u8 qs[128]
 *   Q5_K (256 elems, 176 B): half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
 *     8 sub-blocks of 32 with 6-bit scale sc and min m packed in `scales`;
 *     x = d * sc * q - dmin * m. Sub-blocks 2i and 2i+1 share qs[32i..32i+31]
 *     (low / high nibble); Q5_K's fifth bit of element l of sub-block s is
 *     bit s of qh[l].
 *   Q6_K (256 elems, 210 B): u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
 *     16 sub-blocks of 16, x = d * scale * (q6 - 32); see dequant_q6_k.
 * The arithmetic order follows ggml's reference code so results match it to
 * the last bit.
 */
#include "flock/formats.h"
#include "kquant.h"

#include <inttypes.h>
#include <string.h>

typedef struct ggml_type_info {
    const char *name;
    uint32_t block_elems;
    uint32_t block_bytes;
} ggml_type_info;

/* Every type ggml numbers below FLOCK_GGML_TYPE_COUNT; gaps (removed types)
 * stay zero and are unknown. Files with any of these parse; only the types
 * flock_ggml_can_dequantize names can be converted. */
static const ggml_type_info ggml_types[FLOCK_GGML_TYPE_COUNT] = {
    [0] = {"f32", 1, 4},         [1] = {"f16", 1, 2},        [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},      [6] = {"q5_0", 32, 22},     [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},      [9] = {"q8_1", 32, 36},     [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},   [12] = {"q4_K", 256, 144},  [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},   [15] = {"q8_K", 256, 292},  [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},  [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},   [21] = {"iq3_s", 256, 110}, [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},        [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},        [27] = {"i64", 1, 8},       [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},   [30] = {"bf16", 1, 2},      [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},   [39] = {"mxfp4", 32, 17},
};

const char *flock_ggml_type_name(uint32_t t)
{
    return t < FLOCK_GGML_TYPE_COUNT && ggml_types[t].name ? ggml_types[t].name : "unknown";
}

uint32_t flock_ggml_block_elems(uint32_t t)
{
    return t < FLOCK_GGML_TYPE_COUNT ? ggml_types[t].block_elems : 0;
}

uint32_t flock_ggml_block_bytes(uint32_t t)
{
    return t < FLOCK_GGML_TYPE_COUNT ? ggml_types[t].block_bytes : 0;
}

bool flock_ggml_can_dequantize(uint32_t t)
{
    switch (t) {
    case FLOCK_GGML_F32: case FLOCK_GGML_F16: case FLOCK_GGML_BF16:
    case FLOCK_GGML_Q8_0: case FLOCK_GGML_Q4_0: case FLOCK_GGML_Q4_1:
    case FLOCK_GGML_Q5_0: case FLOCK_GGML_Q5_1:
    case FLOCK_GGML_Q4_K: case FLOCK_GGML_Q5_K: case FLOCK_GGML_Q6_K:
        return true;
    default:
        return false;
    }
}

/* ---- little-endian field loads (blocks are not aligned) ------------------ */

/* f16 -> f32 without branches, so loops over it vectorize: rebias the
 * exponent in the integer domain (15 -> 127, or to 255 for inf/NaN);
 * subnormals (exponent 0) are mantissa * 2^-24, converted from the integer so
 * no f32 denormal arithmetic (slow on x86) happens. Same results as
 * flock_f16_to_f32 for every input. */
static inline float half_to_f32(uint16_t h)
{
    const uint32_t em = h & 0x7fffu;
    uint32_t bits = (em << 13) + (em >= 0x7c00u ? 0x70000000u : 0x38000000u);
    float f;
    memcpy(&f, &bits, 4);
    f = em < 0x400u ? (float)em * 0x1p-24f : f;
    memcpy(&bits, &f, 4);
    bits |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float ld_half(const uint8_t *p)
{
    return half_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static inline uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- per-type kernels: `nb` blocks from `x` into `y` ------------------------ */

static void dequant_f32(const uint8_t *x, float *y, uint64_t n)
{
    memcpy(y, x, (size_t)n * 4); /* little-endian host */
}

static void dequant_f16(const uint8_t *x, float *y, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        y[i] = ld_half(x + 2 * i);
}

static void dequant_bf16(const uint8_t *x, float *y, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u = ((uint32_t)x[2 * i] | ((uint32_t)x[2 * i + 1] << 8)) << 16;
        memcpy(&y[i], &u, 4);
    }
}

static void dequant_q8_0(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 34, y += 32) {
        const float d = ld_half(x);
        const int8_t *q = (const int8_t *)(x + 2);
        for (int j = 0; j < 32; j++)
            y[j] = q[j] * d;
    }
}

static void dequant_q4_0(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 18, y += 32) {
        const float d = ld_half(x);
        const uint8_t *q = x + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = ((q[j] & 0x0F) - 8) * d;
            y[j + 16] = ((q[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 20, y += 32) {
        const float d = ld_half(x), m = ld_half(x + 2);
        const uint8_t *q = x + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = (q[j] & 0x0F) * d + m;
            y[j + 16] = (q[j] >> 4) * d + m;
        }
    }
}

static void dequant_q5_0(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 22, y += 32) {
        const float d = ld_half(x);
        const uint32_t qh = ld_u32(x + 2);
        const uint8_t *q = x + 6;
        for (int j = 0; j < 16; j++) {
            const int lo = (q[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            const int hi = (q[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[j] = (lo - 16) * d;
            y[j + 16] = (hi - 16) * d;
        }
    }
}

static void dequant_q5_1(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 24, y += 32) {
        const float d = ld_half(x), m = ld_half(x + 2);
        const uint32_t qh = ld_u32(x + 4);
        const uint8_t *q = x + 8;
        for (int j = 0; j < 16; j++) {
            const int lo = (q[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            const int hi = (q[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[j] = lo * d + m;
            y[j + 16] = hi * d + m;
        }
    }
}

static void dequant_q4_k(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 144) {
        const float d = ld_half(x), dmin = ld_half(x + 2);
        const uint8_t *q = x + 16;
        uint8_t sc[8], m[8];
        flock_kquant_scales(x + 4, sc, m);
        for (int is = 0; is < 8; is += 2, q += 32, y += 64) {
            const float d1 = d * sc[is], m1 = dmin * m[is];
            const float d2 = d * sc[is + 1], m2 = dmin * m[is + 1];
            for (int l = 0; l < 32; l++)
                y[l] = d1 * (q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++)
                y[l + 32] = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_k(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 176) {
        const float d = ld_half(x), dmin = ld_half(x + 2);
        const uint8_t *qh = x + 16, *ql = x + 48;
        uint8_t sc[8], m[8];
        flock_kquant_scales(x + 4, sc, m);
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, y += 64, u1 <<= 2, u2 <<= 2) {
            const float d1 = d * sc[is], m1 = dmin * m[is];
            const float d2 = d * sc[is + 1], m2 = dmin * m[is + 1];
            for (int l = 0; l < 32; l++)
                y[l] = d1 * ((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                y[l + 32] = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: each half (128 elements) uses 64 bytes of ql, 32 of qh and 8 scales.
 * Element l + 32k (k = 0..3, l < 32) has low 4 bits from ql[l] (k = 0, 2:
 * low / high nibble) or ql[l + 32] (k = 1, 3), high 2 bits from bits 2k..2k+1
 * of qh[l], and scale sc[l / 16 + 2k]. */
static void dequant_q6_k(const uint8_t *x, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 210) {
        const float d = ld_half(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
            /* l0 picks the sub-block pair, so each inner loop has fixed scales. */
            for (int l0 = 0; l0 < 32; l0 += 16) {
                const int is = l0 / 16;
                const float s1 = d * sc[is + 0], s2 = d * sc[is + 2];
                const float s3 = d * sc[is + 4], s4 = d * sc[is + 6];
                for (int l = l0; l < l0 + 16; l++) {
                    const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = s1 * q1;
                    y[l + 32] = s2 * q2;
                    y[l + 64] = s3 * q3;
                    y[l + 96] = s4 * q4;
                }
            }
        }
    }
}

flock_status flock_dequantize(uint32_t type, const void *src, size_t src_size, float *dst,
                              uint64_t n, flock_error *err)
{
    if ((!src && src_size) || (!dst && n))
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_dequantize: NULL buffer");
    if (!flock_ggml_can_dequantize(type))
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "cannot dequantize ggml type %" PRIu32 " (%s)",
                               type, flock_ggml_type_name(type));
    const uint32_t be = ggml_types[type].block_elems, bb = ggml_types[type].block_bytes;
    if (n % be != 0)
        return flock_error_set(err, FLOCK_E_INVALID_ARG,
                               "%" PRIu64 " elements is not a multiple of the %s block size %" PRIu32,
                               n, ggml_types[type].name, be);
    const uint64_t nb = n / be;
    if (nb > src_size / bb)
        return flock_error_set(err, FLOCK_E_TRUNCATED, "%" PRIu64 " %s elements need %" PRIu64
                               " bytes but only %zu are given", n, ggml_types[type].name,
                               nb > UINT64_MAX / bb ? UINT64_MAX : nb * bb, src_size);
    const uint8_t *x = src;
    switch (type) {
    case FLOCK_GGML_F32: dequant_f32(x, dst, nb); break;
    case FLOCK_GGML_F16: dequant_f16(x, dst, nb); break;
    case FLOCK_GGML_BF16: dequant_bf16(x, dst, nb); break;
    case FLOCK_GGML_Q8_0: dequant_q8_0(x, dst, nb); break;
    case FLOCK_GGML_Q4_0: dequant_q4_0(x, dst, nb); break;
    case FLOCK_GGML_Q4_1: dequant_q4_1(x, dst, nb); break;
    case FLOCK_GGML_Q5_0: dequant_q5_0(x, dst, nb); break;
    case FLOCK_GGML_Q5_1: dequant_q5_1(x, dst, nb); break;
    case FLOCK_GGML_Q4_K: dequant_q4_k(x, dst, nb); break;
    case FLOCK_GGML_Q5_K: dequant_q5_k(x, dst, nb); break;
    case FLOCK_GGML_Q6_K: dequant_q6_k(x, dst, nb); break;
    default: return flock_error_set(err, FLOCK_E_INTERNAL, "no kernel for ggml type %" PRIu32, type);
    }
    return FLOCK_OK;
}
