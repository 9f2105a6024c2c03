/* Quantization of f32 rows into GGML's 32-element blocks (quant.h), as
 * GGML's reference quantizers do it; the layouts are in dequant.c. */
#include "quant.h"

#include <math.h>
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

flock_status flock_quantize_row(flock_dtype t, const float *x, void *dst, size_t n)
{
    void (*block)(const float *, uint8_t *) = t == FLOCK_DTYPE_Q8_0   ? block_q8_0
                                              : t == FLOCK_DTYPE_Q4_0 ? block_q4_0
                                              : t == FLOCK_DTYPE_Q4_1 ? block_q4_1
                                                                      : NULL;
    if (!block || n % 32 || (!x && n) || (!dst && n))
        return FLOCK_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return FLOCK_E_CORRUPT;
    const size_t bb = flock_dtype_block_bytes(t);
    for (size_t b = 0; b < n / 32; b++)
        block(x + 32 * b, (uint8_t *)dst + b * bb);
    return FLOCK_OK;
}
