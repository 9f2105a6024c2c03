/* AVX-512 VNNI kernels: the AVX2 table with the integer dot products of
 * the 32-element types (q8_0, q4_0, q4_1, q5_0) done by vpdpbusd, which sums the
 * 32 u8 x i8 products of a block into 8 int32 lanes in one instruction
 * where AVX2 needs maddubs + madd (and a constant). The rest of the table
 * (float kernels, axpy, prefill micro-kernels, attention) is the AVX2
 * table's. Built with target attributes, as kernels_avx2.c, and only
 * handed out by flock_kernels_avx512() on a CPU (and OS) with AVX-512F,
 * BW, VL and VNNI. The one-row and four-row products run the same steps,
 * so each row's result is bitwise the same whichever computes it; results
 * equal the AVX2 table's within f32 rounding (the integer sums are exact in
 * both; the float steps are the same). */
#include "kernels.h"
#include "kernels_quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "avx2_util.h"
#include "dotq_loops.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define VNNI_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* One block of each product: the row's sums (acc, and off for the 4-bit
 * types' offset term) advanced by block p against xb. */
VNNI_FN static inline __m256 step_q8_0(const uint8_t *p, const flock_q8x *xb, __m256i qx, __m256 acc)
{
    __m256i qw = _mm256_loadu_si256((const __m256i *)(p + 2));
    /* |qw| (unsigned) times qx with qw's sign, as vpdpbusd takes them */
    __m256i i = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
    return _mm256_fmadd_ps(_mm256_set1_ps(half(p) * xb->d), _mm256_cvtepi32_ps(i), acc);
}

VNNI_FN static inline __m256 step_q4_0(const uint8_t *p, const flock_q8x *xb, __m256i qx, __m256 acc, float *off)
{
    __m256i i = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(p + 2), qx);
    float dw = half(p);
    *off = __builtin_fmaf(dw, xb->s, *off);
    return _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d), _mm256_cvtepi32_ps(i), acc);
}

VNNI_FN static inline __m256 step_q4_1(const uint8_t *p, const flock_q8x *xb, __m256i qx, __m256 acc, float *off)
{
    __m256i i = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(p + 4), qx);
    *off = __builtin_fmaf(half(p + 2), xb->s, *off);
    return _mm256_fmadd_ps(_mm256_set1_ps(half(p) * xb->d), _mm256_cvtepi32_ps(i), acc);
}

VNNI_FN static inline __m256 step_q5_0(const uint8_t *p, const flock_q8x *xb, __m256i qx, __m256 acc, float *off)
{
    __m256i i = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q5_u8(p), qx);
    float dw = half(p);
    *off = __builtin_fmaf(dw, xb->s, *off);
    return _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d), _mm256_cvtepi32_ps(i), acc);
}

VNNI_FN static float dotq_q8_0(const void *w, const flock_q8x *xq, size_t n)
{
    const uint8_t *p = w;
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / 32; b++, p += 34)
        acc = step_q8_0(p, &xq[b], load_qx(&xq[b]), acc);
    return hsum8(acc);
}

/* The 4-bit and 5-bit types, one row and four rows (dotq_loops.h). Not
 * q8_0's four-row product, as in the AVX2 table: one row at a time
 * (prefetched) was as fast or faster in the decode (SmolLM2's q8_0 LM head). */
FLOCK_DOTQ_ROWS(static VNNI_FN, dotq_q4_0, dotq4_q4_0, step_q4_0, 18, -8.0f)
FLOCK_DOTQ_ROWS(static VNNI_FN, dotq_q4_1, dotq4_q4_1, step_q4_1, 20, 1.0f)
FLOCK_DOTQ_ROWS(static VNNI_FN, dotq_q5_0, dotq4_q5_0, step_q5_0, 22, -16.0f)

static flock_kernel_table avx512_table;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void build_avx512_table(void)
{
    avx512_table = *flock_kernels_avx2();
    avx512_table.name = "avx512vnni";
    avx512_table.dotq[FLOCK_DTYPE_Q8_0] = dotq_q8_0;
    avx512_table.dotq[FLOCK_DTYPE_Q4_0] = dotq_q4_0;
    avx512_table.dotq[FLOCK_DTYPE_Q4_1] = dotq_q4_1;
    avx512_table.dotq4[FLOCK_DTYPE_Q4_0] = dotq4_q4_0;
    avx512_table.dotq4[FLOCK_DTYPE_Q4_1] = dotq4_q4_1;
    avx512_table.dotq[FLOCK_DTYPE_Q5_0] = dotq_q5_0;
    avx512_table.dotq4[FLOCK_DTYPE_Q5_0] = dotq4_q5_0;
}

/* AVX-512F/BW/VL from CPUID leaf 7 (EBX bits 16, 30, 31), VNNI (ECX bit
 * 11), and the OS saving the opmask and ZMM state (XCR0 bits 5-7, with
 * SSE/AVX's bits 1-2). */
static bool have_avx512vnni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6) != 0xe6 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31)) && (c & (1u << 11));
}

const flock_kernel_table *flock_kernels_avx512(void)
{
    if (!flock_kernels_avx2() || !have_avx512vnni())
        return NULL;
    pthread_once(&avx512_once, build_avx512_table);
    return &avx512_table;
}

#else

const flock_kernel_table *flock_kernels_avx512(void)
{
    return NULL;
}

#endif
