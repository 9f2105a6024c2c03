// A small CPU emulation of the CUDA features flock's generated kernels use,
// so that those kernels run here (no GPU) against the same checks as on a
// GPU (tools/gpu_check_kernels.c). C++, test-only.
//
// Model: a launch runs its blocks one after another; each block's threads
// are fibers (ucontext) on one OS thread, each run until it waits at a
// barrier or ends; __syncthreads is a barrier over the block, and warp operations
// (__shfl_xor_sync, __ballot_sync, mma.sync) exchange values through a
// per-warp scratch area between two warp barriers. __shared__ variables
// become function statics: one copy, shared by the threads of the block
// that is running. Every lane of a warp must reach each warp operation, and
// no thread may leave before a __syncthreads that others still reach; the
// kernels keep to that (so does CUDA's convergence rule for *_sync with a
// full mask).
#ifndef FLOCK_CUDA_EMU_H
#define FLOCK_CUDA_EMU_H

#define FLOCK_CUDA_EMU 1

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "cuda_emu_launch.h"

#define __global__
#define __device__ static
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define FLOCK_ENTRY static

struct dim3_emu {
    unsigned x, y, z;
};
extern dim3_emu threadIdx, blockIdx, blockDim, gridDim;

struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct uint2 {
    unsigned x, y;
};
struct uint4 {
    unsigned x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
#define __sincosf emu_sincosf
static inline void emu_sincosf(float a, float *s, float *c)
{
    *s = sinf(a);
    *c = cosf(a);
}
using std::max;
using std::min;

// One OS thread runs every fiber: atomics need no locking, fences nothing.
static inline int atomicAdd(int *p, int v)
{
    const int old = *p;
    *p = old + v;
    return old;
}
static inline void __threadfence() {}

// Barriers and warp exchange (cuda_emu.cpp).
void __syncthreads();
void emu_warp_sync();
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
unsigned __ballot_sync(unsigned mask, int pred);

// The five primitives that are inline PTX on a GPU (cuda_kernels.cu / cuda_gemm.cu).
float h2f(uint16_t h);
uint16_t f2h(float v);
uint32_t pack_f16x2(float a, float b);
uint32_t pack_bf16x2(float a, float b);
static inline uint4 ld_stream16(const void *p)
{
    uint4 r;
    memcpy(&r, p, 16);
    return r;
}
void mma_f16(float *c, const uint32_t *a, const uint32_t *b);
void mma_bf16(float *c, const uint32_t *a, const uint32_t *b);


#endif
