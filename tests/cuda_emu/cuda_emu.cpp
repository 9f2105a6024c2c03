// The CPU emulator's run time: launches, barriers, warp exchange, the PTX
// primitives. See cuda_emu.h for the model.
#include "cuda_emu.h"
#include "cuda_emu_launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

extern "C" {
#include "flock/formats.h"
}

// Block and thread indices of the fiber that is running.
dim3_emu threadIdx, blockIdx, blockDim, gridDim;

namespace {

// The threads of a block are fibers on one OS thread, run in order until
// each blocks at a barrier or ends; a barrier opens when every live thread
// of its scope (block, or warp) waits at it. Deterministic and cheap.
enum fiber_state { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

// Exchange areas come in two copies used alternately, so that one barrier
// per warp operation suffices: a lane cannot reach operation n+2 (and
// overwrite copy n%2) before every lane has passed the barrier of n+1.
struct warp_state {
    float f[2][32];
    unsigned u[2][32];
    float A[2][16][16], B[2][16][8];
    unsigned seq[32]; // per lane: warp operations done
};

struct fiber {
    ucontext_t ctx;
    fiber_state st;
};

const size_t STACK = 64 * 1024;

struct launch_state {
    emu_entry fn;
    void **args;
    unsigned n;
    fiber *f;
    char *stacks;
    warp_state *warps;
    ucontext_t sched;
    unsigned cur;
} L;

void fiber_main()
{
    L.fn(L.args);
    L.f[L.cur].st = DONE;
    // returning switches to uc_link (the scheduler)
}

void yield(fiber_state st)
{
    L.f[L.cur].st = st;
    swapcontext(&L.f[L.cur].ctx, &L.sched);
}

warp_state &my_warp()
{
    return L.warps[L.cur / 32];
}

void run_block()
{
    for (unsigned t = 0; t < L.n; t++) {
        fiber &f = L.f[t];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = L.stacks + (size_t)t * STACK;
        f.ctx.uc_stack.ss_size = STACK;
        f.ctx.uc_link = &L.sched;
        makecontext(&f.ctx, fiber_main, 0);
        f.st = RUNNABLE;
    }
    for (;;) {
        bool ran = false;
        for (unsigned t = 0; t < L.n; t++) {
            if (L.f[t].st != RUNNABLE)
                continue;
            L.cur = t;
            threadIdx = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
            swapcontext(&L.sched, &L.f[t].ctx);
            ran = true;
        }
        if (ran)
            continue;
        // Nothing runnable: open the barriers whose scope is complete.
        unsigned live = 0, at_block = 0;
        for (unsigned t = 0; t < L.n; t++) {
            live += L.f[t].st != DONE;
            at_block += L.f[t].st == AT_BLOCK_BARRIER;
        }
        if (live == 0)
            return;
        bool opened = false;
        if (at_block == live) {
            for (unsigned t = 0; t < L.n; t++)
                if (L.f[t].st == AT_BLOCK_BARRIER)
                    L.f[t].st = RUNNABLE;
            opened = true;
        }
        for (unsigned w = 0; w < L.n / 32; w++) {
            unsigned wl = 0, at = 0;
            for (unsigned t = w * 32; t < w * 32 + 32; t++) {
                wl += L.f[t].st != DONE;
                at += L.f[t].st == AT_WARP_BARRIER;
            }
            if (at && at == wl) {
                for (unsigned t = w * 32; t < w * 32 + 32; t++)
                    if (L.f[t].st == AT_WARP_BARRIER)
                        L.f[t].st = RUNNABLE;
                opened = true;
            }
        }
        if (!opened) {
            fprintf(stderr, "emu: deadlock in block (%u, %u, %u): threads wait at barriers others never reach\n",
                    blockIdx.x, blockIdx.y, blockIdx.z);
            abort();
        }
    }
}

} // namespace

int emu_launch(emu_entry fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
               void **args)
{
    const unsigned n = bx * by * bz;
    if (n == 0 || n > 1024 || n % 32 || gx * gy * gz == 0)
        return 1;
    L.fn = fn;
    L.args = args;
    L.n = n;
    L.f = new fiber[n];
    L.stacks = new char[(size_t)n * STACK];
    L.warps = new warp_state[n / 32]();
    blockDim = {bx, by, bz};
    gridDim = {gx, gy, gz};
    for (unsigned z = 0; z < gz; z++)
        for (unsigned y = 0; y < gy; y++)
            for (unsigned x = 0; x < gx; x++) {
                blockIdx = {x, y, z};
                run_block();
            }
    delete[] L.f;
    delete[] L.stacks;
    delete[] L.warps;
    return 0;
}

void __syncthreads()
{
    yield(AT_BLOCK_BARRIER);
}

void emu_warp_sync()
{
    yield(AT_WARP_BARRIER);
}

// This lane's copy of the exchange area for its next warp operation.
static unsigned next_copy(warp_state &w, unsigned lane)
{
    return w.seq[lane]++ & 1;
}

float __shfl_xor_sync(unsigned, float v, int lane_mask)
{
    warp_state &w = my_warp();
    const unsigned lane = L.cur % 32, p = next_copy(w, lane);
    w.f[p][lane] = v;
    emu_warp_sync();
    return w.f[p][(lane ^ (unsigned)lane_mask) & 31];
}

unsigned __ballot_sync(unsigned, int pred)
{
    warp_state &w = my_warp();
    const unsigned lane = L.cur % 32, p = next_copy(w, lane);
    w.u[p][lane] = pred != 0;
    emu_warp_sync();
    unsigned m = 0;
    for (int i = 0; i < 32; i++)
        m |= w.u[p][i] << i;
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
// register j of A holds A[g + 8*(j%2)][2t + 8*(j/2) + {0,1}] (low half first),
// register j of B holds B[2t + 8*j + {0,1}][g]; the lane's C elements are
// (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1). Each lane scatters its
// fragments into the warp's A and B, then computes its own C.
static void mma_emu(float *c, const uint32_t *a, const uint32_t *b, bool bf16)
{
    warp_state &w = my_warp();
    const int lane = (int)(L.cur % 32), g = lane / 4, t = lane % 4;
    const unsigned p = next_copy(w, (unsigned)lane);
    auto cvt = [&](uint16_t h) { return bf16 ? flock_bf16_to_f32(h) : flock_f16_to_f32(h); };
    for (int j = 0; j < 4; j++)
        for (int e = 0; e < 2; e++)
            w.A[p][g + 8 * (j % 2)][2 * t + 8 * (j / 2) + e] = cvt((uint16_t)(e ? a[j] >> 16 : a[j] & 0xffff));
    for (int j = 0; j < 2; j++)
        for (int e = 0; e < 2; e++)
            w.B[p][2 * t + 8 * j + e][g] = cvt((uint16_t)(e ? b[j] >> 16 : b[j] & 0xffff));
    emu_warp_sync();
    float out[4];
    for (int e = 0; e < 4; e++) {
        const int r = g + 8 * (e / 2), n = 2 * t + e % 2;
        float s = c[e];
        for (int k = 0; k < 16; k++)
            s = fmaf(w.A[p][r][k], w.B[p][k][n], s);
        out[e] = s;
    }
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
