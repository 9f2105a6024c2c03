/* Private: the packed scales of GGML's Q4_K and Q5_K blocks, shared by
 * the block decoder (dequant.c) and the runtime's integer q4_k kernels
 * (runtime/kernels_quant.c, kernels_quant_avx2.c). */
#ifndef FLOCK_FORMATS_KQUANT_H
#define FLOCK_FORMATS_KQUANT_H

#include <stdint.h>

/* The 12 scale bytes q of a Q4_K/Q5_K block hold 8 six-bit scales and 8
 * six-bit mins (GGML's get_scale_min_k4): sub-blocks 0..3 use the low 6
 * bits of bytes j (scale) and j+4 (min); sub-blocks 4..7 take 4 low bits
 * from byte j+4 (low nibble scale, high nibble min) and their top 2 bits
 * from the top bits of bytes j-4 and j. */
static inline void flock_kquant_scales(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0x0F) | ((q[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

#endif
