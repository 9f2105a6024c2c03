// The CPU emulator's run time: launches, barriers, warp exchange, the PTX
// primitives. See cuda_emu.h for the model.
#include "cuda_emu.h"
#include "cuda_emu_launch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "flock/formats.h"
}

thread_local dim3_emu threadIdx, blockIdx, blockDim, gridDim;

namespace {

struct warp_state {
    pthread_barrier_t bar;
    float f[32];
    unsigned u[32];
    uint32_t a[32][4], b[32][2];
};

struct launch_state {
    emu_entry fn;
    void **args;
    dim3_emu grid, block;
    unsigned n_threads;
    pthread_barrier_t block_bar;
    warp_state *warps;
};

thread_local launch_state *cur;
thread_local unsigned my_tid;

void *thread_main(void *p)
{
    launch_state *L = cur = (launch_state *)((void **)p)[0];
    my_tid = (unsigned)(uintptr_t)((void **)p)[1];
    blockDim = L->block;
    gridDim = L->grid;
    threadIdx = {my_tid % L->block.x, (my_tid / L->block.x) % L->block.y, my_tid / (L->block.x * L->block.y)};
    for (unsigned z = 0; z < L->grid.z; z++)
        for (unsigned y = 0; y < L->grid.y; y++)
            for (unsigned x = 0; x < L->grid.x; x++) {
                blockIdx = {x, y, z};
                L->fn(L->args);
                pthread_barrier_wait(&L->block_bar); // the next block reuses the statics
            }
    return NULL;
}

warp_state &my_warp()
{
    return cur->warps[my_tid / 32];
}

} // namespace

int emu_launch(emu_entry fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
               void **args)
{
    launch_state L;
    L.fn = fn;
    L.args = args;
    L.grid = {gx, gy, gz};
    L.block = {bx, by, bz};
    L.n_threads = bx * by * bz;
    if (L.n_threads == 0 || L.n_threads > 1024 || L.n_threads % 32 || gx * gy * gz == 0)
        return 1;
    const unsigned nw = L.n_threads / 32;
    L.warps = new warp_state[nw];
    for (unsigned w = 0; w < nw; w++)
        pthread_barrier_init(&L.warps[w].bar, NULL, 32);
    pthread_barrier_init(&L.block_bar, NULL, L.n_threads);
    pthread_t *th = new pthread_t[L.n_threads];
    void *(*argv)[2] = new void *[L.n_threads][2];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = 0;
    for (unsigned t = 0; t < L.n_threads; t++) {
        argv[t][0] = &L;
        argv[t][1] = (void *)(uintptr_t)t;
        if (pthread_create(&th[t], &attr, thread_main, argv[t]) != 0) {
            fprintf(stderr, "emu: pthread_create failed at thread %u\n", t);
            abort(); // a half-started block would deadlock
        }
    }
    for (unsigned t = 0; t < L.n_threads; t++)
        pthread_join(th[t], NULL);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&L.block_bar);
    for (unsigned w = 0; w < nw; w++)
        pthread_barrier_destroy(&L.warps[w].bar);
    delete[] L.warps;
    delete[] th;
    delete[] argv;
    return rc;
}

void __syncthreads()
{
    pthread_barrier_wait(&cur->block_bar);
}

void emu_warp_sync()
{
    pthread_barrier_wait(&my_warp().bar);
}

float __shfl_xor_sync(unsigned, float v, int lane_mask)
{
    warp_state &w = my_warp();
    const unsigned lane = my_tid % 32;
    w.f[lane] = v;
    emu_warp_sync();
    const float r = w.f[(lane ^ (unsigned)lane_mask) & 31];
    emu_warp_sync();
    return r;
}

unsigned __ballot_sync(unsigned, int pred)
{
    warp_state &w = my_warp();
    const unsigned lane = my_tid % 32;
    w.u[lane] = pred != 0;
    emu_warp_sync();
    unsigned m = 0;
    for (int i = 0; i < 32; i++)
        m |= w.u[i] << i;
    emu_warp_sync();
    return m;
}

float h2f(uint16_t h)
{
    return flock_f16_to_f32(h);
}

uint16_t f2h(float v)
{
    return flock_f32_to_f16(v);
}

uint32_t pack_f16x2(float a, float b)
{
    return (uint32_t)flock_f32_to_f16(a) | ((uint32_t)flock_f32_to_f16(b) << 16);
}

uint32_t pack_bf16x2(float a, float b)
{
    return (uint32_t)flock_f32_to_bf16(a) | ((uint32_t)flock_f32_to_bf16(b) << 16);
}

// mma.m16n8k16 with the fragment layout of the PTX ISA: lane = 4*g + t;
// A[r][k] is in lane 4*(r%8) + (k%8)/2, register (r >= 8) + 2*(k >= 8),
// half k%2; B[k][n] in lane 4*n + (k%8)/2, register (k >= 8), half k%2;
// the lane's C elements are (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
static void mma_emu(float *c, const uint32_t *a, const uint32_t *b, bool bf16)
{
    warp_state &w = my_warp();
    const unsigned lane = my_tid % 32;
    memcpy(w.a[lane], a, sizeof w.a[lane]);
    memcpy(w.b[lane], b, sizeof w.b[lane]);
    emu_warp_sync();
    auto half = [&](uint32_t reg, int k) {
        const uint16_t h = (uint16_t)(k % 2 ? reg >> 16 : reg & 0xffff);
        return bf16 ? flock_bf16_to_f32(h) : flock_f16_to_f32(h);
    };
    auto A = [&](int r, int k) { return half(w.a[4 * (r % 8) + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)], k); };
    auto B = [&](int k, int n) { return half(w.b[4 * n + (k % 8) / 2][k >= 8], k); };
    const int g = (int)lane / 4, t = (int)lane % 4;
    float out[4];
    for (int e = 0; e < 4; e++) {
        const int r = g + 8 * (e / 2), n = 2 * t + e % 2;
        float s = c[e];
        for (int k = 0; k < 16; k++)
            s = fmaf(A(r, k), B(k, n), s);
        out[e] = s;
    }
    emu_warp_sync();
    memcpy(c, out, sizeof out);
}

void mma_f16(float *c, const uint32_t *a, const uint32_t *b)
{
    mma_emu(c, a, b, false);
}

void mma_bf16(float *c, const uint32_t *a, const uint32_t *b)
{
    mma_emu(c, a, b, true);
}
