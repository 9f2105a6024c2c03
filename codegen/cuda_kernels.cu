// flock's CUDA kernel library. Not compiled on its own: codegen/cuda_source.c
// embeds this text into every generated source, after the model's #defines
// (D_MODEL, D_FF, N_HEAD, N_KV_HEAD, HEAD_DIM, VOCAB, ROPE_DIM, ROPE_NEOX,
// W_BF16, KV_F32, FF_ACT, FF_GATED, ATTN_SCALE, ATTN_SOFTCAP) and before the
// extern "C" entry points, which instantiate the templates below with every
// size fixed at compile time (loop bounds, unrolling, grid shapes).
//
// Conventions: activations are f32; weights are 16-bit (f16 or bf16, W_BF16)
// stored row-major and accumulated in f32; KV cache entries are f16 or f32
// (KV_F32). No headers: conversions and loads are inline PTX, so NVRTC needs
// no include path.

typedef unsigned short u16;
typedef unsigned int u32;

#define WARP 32
#define NEG_INF __int_as_float(0xff800000)

// ---- primitives: the only inline PTX (tests/cuda_emu supplies CPU versions) ----
#ifndef FLOCK_CUDA_EMU
__device__ __forceinline__ float h2f(u16 h) // f16 -> f32
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f2h(float v) // f32 -> f16, round to nearest even
{
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

// Two floats rounded and packed, a in the low half (cvt puts its first source high).
__device__ __forceinline__ u32 pack_f16x2(float a, float b)
{
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(b), "f"(a));
    return r;
}

__device__ __forceinline__ u32 pack_bf16x2(float a, float b)
{
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(b), "f"(a));
    return r;
}

// 16 bytes (8 weights) that are read once per token: skip L1, keep L2's
// default policy. The address must be 16-byte aligned.
__device__ __forceinline__ uint4 ld_stream16(const void *p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
#endif

// ---- conversions -------------------------------------------------------------
__device__ __forceinline__ float w2f(u16 h)
{
#if W_BF16
    return __uint_as_float(((u32)h) << 16);
#else
    return h2f(h);
#endif
}

// Two 16-bit weights packed in one word (element 0 in the low half).
__device__ __forceinline__ float2 w2f2(u32 v)
{
#if W_BF16
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
#else
    return make_float2(h2f((u16)(v & 0xffffu)), h2f((u16)(v >> 16)));
#endif
}

// Two floats to the weight type, packed (a in the low half): tensor-core operands.
__device__ __forceinline__ u32 f2w2(float a, float b)
{
#if W_BF16
    return pack_bf16x2(a, b);
#else
    return pack_f16x2(a, b);
#endif
}

#if KV_F32
typedef float kv_t;
__device__ __forceinline__ float kv2f(kv_t v) { return v; }
__device__ __forceinline__ kv_t f2kv(float v) { return v; }
#else
typedef u16 kv_t;
__device__ __forceinline__ float kv2f(kv_t v) { return h2f(v); }
__device__ __forceinline__ kv_t f2kv(float v) { return f2h(v); }
#endif

// acc + dot(8 weights in w, x[0..7] given as two float4)
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b, float acc)
{
    float2 p = w2f2(w.x);
    acc = fmaf(p.x, a.x, acc);
    acc = fmaf(p.y, a.y, acc);
    p = w2f2(w.y);
    acc = fmaf(p.x, a.z, acc);
    acc = fmaf(p.y, a.w, acc);
    p = w2f2(w.z);
    acc = fmaf(p.x, b.x, acc);
    acc = fmaf(p.y, b.y, acc);
    p = w2f2(w.w);
    acc = fmaf(p.x, b.z, acc);
    acc = fmaf(p.y, b.w, acc);
    return acc;
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float block_sum(float v)
{
    __shared__ float red[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // red[] may still be read by a previous call
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    const int nw = blockDim.x >> 5;
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

// FF activation, numbered as flock_act: 0 none, 1 SiLU, 2 GELU (erf), 3 GELU (tanh), 4 ReLU.
__device__ __forceinline__ float act_fn(float x)
{
#if FF_ACT == 1
    return x / (1.0f + expf(-x));
#elif FF_ACT == 2
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
#elif FF_ACT == 3
    return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
#elif FF_ACT == 4
    return fmaxf(x, 0.0f);
#else
    return x;
#endif
}

// ---- one warp, R consecutive rows of K weights, x in shared memory -----------
// out[r] = dot(W[r, 0:K], xs[0:K]) for r < nrows (the rest stay 0), summed
// over the warp (every lane gets the sums). K % 8 == 0 and the rows 16-byte
// aligned. Each lane keeps U 16-byte loads per row in flight (2*U*16 bytes
// for R = 2) before the first use: enough to cover DRAM latency at full
// occupancy without spilling.
template <int K, int R>
__device__ __forceinline__ void warp_rows_dot(const u16 *__restrict__ w, int nrows,
                                              const float *__restrict__ xs, int lane, float *out)
{
    constexpr int CH = K / 8;                // 16-byte chunks per row
    constexpr int PER = (CH + WARP - 1) / WARP; // chunks per lane
    constexpr int U = PER < 4 ? PER : 4;
    float acc[R][2];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = 0.0f;
#pragma unroll
    for (int base = 0; base < PER; base += U) {
        uint4 v[R][U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = (base + u) * WARP + lane;
#pragma unroll
            for (int r = 0; r < R; r++)
                v[r][u] = (c < CH && r < nrows) ? ld_stream16(w + (size_t)r * K + (size_t)c * 8)
                                                : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = (base + u) * WARP + lane;
            if (c < CH) {
                const float4 xa = *(const float4 *)(xs + c * 8);
                const float4 xb = *(const float4 *)(xs + c * 8 + 4);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][u & 1] = dot8(v[r][u], xa, xb, acc[r][u & 1]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        out[r] = warp_sum(acc[r][0] + acc[r][1]);
}

// Copies n floats (n % 4 == 0, 16-byte aligned) into shared memory.
__device__ __forceinline__ void stage_f32(float *__restrict__ dst, const float *__restrict__ src, int n)
{
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x)
        ((float4 *)dst)[i] = ((const float4 *)src)[i];
    __syncthreads();
}

// ---- decode: dense GEMV ------------------------------------------------------
// y[N] = W[N,K] x[K] (+ bias[N]) (+ resid[N]); bias/resid may be NULL; y may
// alias resid. Block GEMV_WARPS warps, 2 rows per warp, grid-stride over the
// row pairs: any grid works; ceil(N / (2*GEMV_WARPS)) blocks give each warp
// one pair, and a grid of one wave (SMs x resident blocks) avoids a tail.
// Reads 2*N*K bytes of weights.
#define GEMV_WARPS 8
template <int N, int K>
__device__ __forceinline__ void gemv_body(const float *__restrict__ x, const u16 *__restrict__ w,
                                          const float *bias, const float *resid, float *y)
{
    __shared__ __align__(16) float xs[K];
    stage_f32(xs, x, K);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int row = (blockIdx.x * GEMV_WARPS + warp) * 2; row < N; row += gridDim.x * GEMV_WARPS * 2) {
        float s[2];
        warp_rows_dot<K, 2>(w + (size_t)row * K, N - row, xs, lane, s);
        if (lane < 2 && row + lane < N) {
            float v = s[lane];
            if (bias)
                v += bias[row + lane];
            if (resid)
                v += resid[row + lane];
            y[row + lane] = v;
        }
    }
}

// ---- decode: GRIFFIN's gather FF --------------------------------------------
// Gated: gate_up [D_FF, 2*D_MODEL] (row i = gate row i, then up row i).
// h[j] = act(gate[idx[j]] . x) * (up[idx[j]] . x) for j < KEEP.
// Plain: w1 [D_FF, D_MODEL], h[j] = act(w1[idx[j]] . x + b1[idx[j]]).
// One warp per kept neuron at a time, GATHER_WARPS per block, grid-stride
// over the neurons: any grid works (ceil(KEEP / GATHER_WARPS) blocks give
// each warp one neuron; one wave of resident blocks avoids a tail).
// Reads only the kept rows: KEEP * 2 * D_MODEL * 2 bytes (gated).
#define GATHER_WARPS 8
template <int KEEP>
__device__ __forceinline__ void ffn_gather_body(const float *__restrict__ x, const int *__restrict__ idx,
                                                const u16 *__restrict__ w, const float *__restrict__ b1,
                                                float *__restrict__ h)
{
    __shared__ __align__(16) float xs[D_MODEL];
    stage_f32(xs, x, D_MODEL);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int j = blockIdx.x * GATHER_WARPS + warp; j < KEEP; j += gridDim.x * GATHER_WARPS) {
        const int n = idx[j];
        if ((unsigned)n >= (unsigned)D_FF) { // a corrupt selection must not read out of bounds
            if (lane == 0)
                h[j] = 0.0f;
            continue;
        }
#if FF_GATED
        float gu[2];
        warp_rows_dot<D_MODEL, 2>(w + (size_t)n * (2 * D_MODEL), 2, xs, lane, gu);
        if (lane == 0)
            h[j] = act_fn(gu[0]) * gu[1];
#else
        float a[1];
        warp_rows_dot<D_MODEL, 1>(w + (size_t)n * D_MODEL, 1, xs, lane, a);
        if (lane == 0)
            h[j] = act_fn(a[0] + (b1 ? b1[n] : 0.0f));
#endif
    }
}

// ---- decode: GRIFFIN's down projection over the kept neurons -----------------
// part[s][c] = sum over kept j in split s of h[j] * down_t[idx[j], c], with
// down_t [D_FF, D_MODEL] (row i = column i of W_down). Split-k with a
// DETERMINISTIC reduction (no atomics): grid (ceil(D_MODEL/256), n_split),
// block 256 threads = 8 warps. n_split = gridDim.y is the host's choice (the
// table suggests one; a grid of one wave avoids a tail): split s takes
// neurons [s*per, (s+1)*per), per = ceil(KEEP / n_split). Lane l of a warp
// owns columns tile*256 + 8l .. +7 (one 16-byte load per kept neuron), warp
// w takes every 8th neuron of the split, the 8 warps are summed in shared
// memory in a fixed order, and the n_split partials are summed in order:
// by the last block of each column tile when `counters` (ceil(D_MODEL/256)
// ints, zero before the first launch) is given, y = resid + bias + sum
// (resid/bias may be NULL, y may alias resid); else by ffn_down_reduce.
// Reads KEEP * D_MODEL * 2 bytes; writes n_split * D_MODEL floats.
#define DOWN_WARPS 8
template <int KEEP>
__device__ __forceinline__ void ffn_down_body(const float *__restrict__ h, const int *__restrict__ idx,
                                              const u16 *__restrict__ wd, float *part, int *counters,
                                              const float *resid, const float *bias, float *y)
{
    constexpr int U = 4; // rows in flight per lane
    __shared__ __align__(16) float red[DOWN_WARPS][256];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int c0 = blockIdx.x * 256 + lane * 8;
    const int per = (KEEP + (int)gridDim.y - 1) / (int)gridDim.y;
    const int j0 = blockIdx.y * per;
    const int j1 = min(KEEP, j0 + per);
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++)
        acc[e] = 0.0f;
    if (c0 < D_MODEL) {
        for (int j = j0 + warp; j < j1; j += DOWN_WARPS * U) {
            uint4 v[U];
            float hv[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int jj = j + u * DOWN_WARPS;
                int n = jj < j1 ? idx[jj] : -1;
                if ((unsigned)n >= (unsigned)D_FF)
                    n = -1;
                hv[u] = n >= 0 ? h[jj] : 0.0f;
                v[u] = n >= 0 ? ld_stream16(wd + (size_t)n * D_MODEL + c0) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const u32 q[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 p = w2f2(q[e]);
                    acc[2 * e] = fmaf(hv[u], p.x, acc[2 * e]);
                    acc[2 * e + 1] = fmaf(hv[u], p.y, acc[2 * e + 1]);
                }
            }
        }
    }
    *(float4 *)&red[warp][lane * 8] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    *(float4 *)&red[warp][lane * 8 + 4] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    __syncthreads();
    const int c = blockIdx.x * 256 + threadIdx.x;
    if (c < D_MODEL) {
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < DOWN_WARPS; w++)
            s += red[w][threadIdx.x];
        part[(size_t)blockIdx.y * D_MODEL + c] = s;
    }
    if (!counters)
        return; // unfused: ffn_down_reduce sums the partials
    // Fused reduction: the last block of this column tile to finish sums the
    // n_split partials in order (deterministic) into y, then resets the
    // tile's counter for the next launch (the host zeroes counters once).
    __shared__ int last;
    __threadfence(); // this block's partials are visible before it is counted
    __syncthreads();
    if (threadIdx.x == 0)
        last = atomicAdd(&counters[blockIdx.x], 1) == (int)gridDim.y - 1;
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    if (c < D_MODEL) {
        const volatile float *pv = part; // written by other SMs: not through L1
        float s = 0.0f;
        for (int i = 0; i < (int)gridDim.y; i++)
            s += pv[(size_t)i * D_MODEL + c];
        if (bias)
            s += bias[c];
        if (resid)
            s += resid[c];
        y[c] = s;
    }
    if (threadIdx.x == 0)
        counters[blockIdx.x] = 0;
}

// y[c] = resid[c] + bias[c] + sum_{s < n_part} part[s][c] (in order s = 0, 1, ...).
// resid/bias may be NULL; y may alias resid. Grid ceil(D_MODEL/256), block 256.
__device__ __forceinline__ void ffn_down_reduce_body(const float *__restrict__ part, int n_part, const float *resid,
                                                     const float *bias, float *y)
{
    const int c = blockIdx.x * 256 + threadIdx.x;
    if (c >= D_MODEL)
        return;
    float s = 0.0f;
#pragma unroll 8
    for (int i = 0; i < n_part; i++)
        s += part[(size_t)i * D_MODEL + c];
    if (bias)
        s += bias[c];
    if (resid)
        s += resid[c];
    y[c] = s;
}

// ---- GRIFFIN's statistic and selection (after prefill) -----------------------
// z [T, D_FF] f32 (the FF intermediate of the prompt). inv[t] = 1/||z[t]||,
// 0 for a zero row (no NaN). Grid T, block 256.
__device__ __forceinline__ void griffin_rownorm_body(const float *__restrict__ z, float *__restrict__ inv)
{
    const float *row = z + (size_t)blockIdx.x * D_FF;
    float s = 0.0f;
    for (int i = threadIdx.x; i < D_FF; i += blockDim.x)
        s = fmaf(row[i], row[i], s);
    s = block_sum(s);
    if (threadIdx.x == 0)
        inv[blockIdx.x] = s > 0.0f ? rsqrtf(s) : 0.0f;
}

// stat[i] += sum_t (z[t,i] * inv[t])^2 (accumulates over prompt chunks; the
// runtime zeroes stat before the first). Grid ceil(D_FF/256), block 256.
__device__ __forceinline__ void griffin_colsum_body(const float *__restrict__ z, const float *__restrict__ inv,
                                                    int T, float *__restrict__ stat)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D_FF)
        return;
    float s = 0.0f;
    for (int t = 0; t < T; t++) {
        const float v = z[(size_t)t * D_FF + i] * inv[t];
        s = fmaf(v, v, s);
    }
    stat[i] += s;
}

// sel[i] = 1 when fewer than KEEP neurons beat i (a beats b: larger
// statistic, or equal and a lower index; NaN counts as -inf), else 0: the
// order is total, so exactly KEEP are selected. O(D_FF^2) comparisons spread
// over the grid ceil(D_FF/256), block 256.
template <int KEEP>
__device__ __forceinline__ void griffin_rank_body(const float *__restrict__ stat, int *__restrict__ sel)
{
    __shared__ float tile[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < D_FF ? stat[i] : NEG_INF;
    if (v != v)
        v = NEG_INF;
    int rank = 0;
    for (int base = 0; base < D_FF; base += 256) {
        __syncthreads();
        float t = base + (int)threadIdx.x < D_FF ? stat[base + threadIdx.x] : NEG_INF;
        tile[threadIdx.x] = t != t ? NEG_INF : t;
        __syncthreads();
        const int n = min(256, D_FF - base);
        for (int k = 0; k < n; k++) {
            const float o = tile[k];
            rank += (o > v) || (o == v && base + k < i);
        }
    }
    if (i < D_FF)
        sel[i] = rank < KEEP;
}

// idx[0..KEEP) = the selected neurons in ascending order (stream compaction
// of sel). One block of 1024 threads.
__device__ __forceinline__ void griffin_compact_body(const int *__restrict__ sel, int *__restrict__ idx)
{
    __shared__ int wsum[32];
    __shared__ int base_s;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (threadIdx.x == 0)
        base_s = 0;
    __syncthreads();
    for (int c = 0; c < D_FF; c += 1024) {
        const int i = c + threadIdx.x;
        const int f = i < D_FF ? sel[i] != 0 : 0;
        const u32 m = __ballot_sync(0xffffffffu, f);
        const int before = __popc(m & ((1u << lane) - 1u));
        if (lane == 0)
            wsum[warp] = __popc(m);
        __syncthreads();
        int off = base_s;
        for (int w = 0; w < warp; w++)
            off += wsum[w];
        if (f)
            idx[off + before] = i;
        __syncthreads();
        if (threadIdx.x == 0) {
            int tot = 0;
            for (int w = 0; w < 32; w++)
                tot += wsum[w];
            base_s += tot;
        }
        __syncthreads();
    }
}

// ---- small per-token kernels ---------------------------------------------------
// Grid n_groups (T * width / GROUP), block 256. y = x * rsqrt(mean(x^2) + eps) * w
// (or * (1 + w) when unit_offset); w [GROUP] f32. y may alias x.
template <int GROUP>
__device__ __forceinline__ void rmsnorm_body(const float *x, const float *__restrict__ w, float eps,
                                             int unit_offset, float *y)
{
    const float *xr = x + (size_t)blockIdx.x * GROUP;
    float *yr = y + (size_t)blockIdx.x * GROUP;
    float s = 0.0f;
    for (int i = threadIdx.x; i < GROUP; i += blockDim.x)
        s = fmaf(xr[i], xr[i], s);
    s = block_sum(s);
    const float r = rsqrtf(s / (float)GROUP + eps);
    const float off = unit_offset ? 1.0f : 0.0f;
    for (int i = threadIdx.x; i < GROUP; i += blockDim.x)
        yr[i] = xr[i] * r * (w[i] + off);
}

// Grid n_rows, block 256. y = (x - mean) / sqrt(var + eps) * w + b over
// rows of GROUP; w, b [GROUP] f32 (b may be NULL). y may alias x.
template <int GROUP>
__device__ __forceinline__ void layernorm_body(const float *x, const float *__restrict__ w,
                                               const float *__restrict__ b, float eps, float *y)
{
    const float *xr = x + (size_t)blockIdx.x * GROUP;
    float *yr = y + (size_t)blockIdx.x * GROUP;
    float s = 0.0f;
    for (int i = threadIdx.x; i < GROUP; i += blockDim.x)
        s += xr[i];
    const float mean = block_sum(s) / (float)GROUP;
    float v = 0.0f;
    for (int i = threadIdx.x; i < GROUP; i += blockDim.x)
        v = fmaf(xr[i] - mean, xr[i] - mean, v);
    const float r = rsqrtf(block_sum(v) / (float)GROUP + eps);
    for (int i = threadIdx.x; i < GROUP; i += blockDim.x)
        yr[i] = (xr[i] - mean) * r * w[i] + (b ? b[i] : 0.0f);
}

// Learned positions (OPT): y[t, :] = x[t, :] + table[pos0 + t + offset, :],
// table [n_pos, D_MODEL] 16-bit; a position past n_pos adds nothing. y may
// alias x. Grid T, block 256.
__device__ __forceinline__ void pos_embed_body(const float *x, const u16 *__restrict__ table, int n_pos, int pos0,
                                               int offset, float *y)
{
    const int p = pos0 + (int)blockIdx.x + offset;
    const bool ok = p >= 0 && p < n_pos;
    const size_t r = (size_t)blockIdx.x * D_MODEL;
    for (int i = threadIdx.x; i < D_MODEL; i += blockDim.x)
        y[r + i] = x[r + i] + (ok ? w2f(table[(size_t)p * D_MODEL + i]) : 0.0f);
}

#if ROPE_DIM > 0 // models without RoPE get no rope kernels
// Rotates one token's heads xt [n_heads * HEAD_DIM] in place at position pos;
// inv_freq [ROPE_DIM/2] (theta^(-2i/ROPE_DIM) with any scaling applied by
// the host). Normal style rotates (2i, 2i+1), neox (i, i + ROPE_DIM/2).
// The threads of the block share the pairs.
__device__ __forceinline__ void rope_token(float *xt, int n_heads, int pos, const float *__restrict__ inv_freq)
{
    constexpr int HALF = ROPE_DIM / 2;
    for (int p = threadIdx.x; p < n_heads * HALF; p += blockDim.x) {
        const int hd = p / HALF, i = p % HALF;
        // Range-reduce in double, then the fast sine/cosine on [-pi, pi]:
        // sincosf's slow path for large angles needs a local-memory frame.
        double ang = (double)pos * (double)inv_freq[i];
        ang -= rint(ang * 0.15915494309189535) * 6.283185307179586;
        float sn, cs;
        __sincosf((float)ang, &sn, &cs);
#if ROPE_NEOX
        float *a = xt + hd * HEAD_DIM + i, *b = a + HALF;
#else
        float *a = xt + hd * HEAD_DIM + 2 * i, *b = a + 1;
#endif
        const float x0 = *a, x1 = *b;
        *a = x0 * cs - x1 * sn;
        *b = x0 * sn + x1 * cs;
    }
}

// x [T, n_heads * HEAD_DIM] in place; token t is at position pos0 + t.
// Grid T, block 256.
__device__ __forceinline__ void rope_body(float *x, int n_heads, int pos0, const float *__restrict__ inv_freq)
{
    rope_token(x + (size_t)blockIdx.x * n_heads * HEAD_DIM, n_heads, pos0 + (int)blockIdx.x, inv_freq);
}

// Decode's three small steps in one launch: RoPE on q [T, Q_DIM] and
// k [T, KV_DIM] in place, then k and v [T, KV_DIM] into cache rows pos0 + t.
// Grid T, block 256. (Gemma's QK-norm comes before: run rope + kv_store then.)
__device__ __forceinline__ void rope_kv_store_body(float *q, float *k, const float *__restrict__ v, int pos0,
                                                   const float *__restrict__ inv_freq, kv_t *__restrict__ kc,
                                                   kv_t *__restrict__ vc)
{
    const int t = blockIdx.x;
    rope_token(q + (size_t)t * Q_DIM, N_HEAD, pos0 + t, inv_freq);
    rope_token(k + (size_t)t * KV_DIM, N_KV_HEAD, pos0 + t, inv_freq);
    __syncthreads(); // k is rotated before it is stored
    const size_t src = (size_t)t * KV_DIM, dst = (size_t)(pos0 + t) * KV_DIM;
    for (int i = threadIdx.x; i < KV_DIM; i += blockDim.x) {
        kc[dst + i] = f2kv(k[src + i]);
        vc[dst + i] = f2kv(v[src + i]);
    }
}
#endif

// Caches [n_ctx, KV_DIM] (kv_t): row pos0 + t = k[t], v[t]. Grid T, block 256.
__device__ __forceinline__ void kv_store_body(const float *__restrict__ k, const float *__restrict__ v,
                                              int pos0, kv_t *__restrict__ kc, kv_t *__restrict__ vc)
{
    const size_t src = (size_t)blockIdx.x * KV_DIM, dst = (size_t)(pos0 + blockIdx.x) * KV_DIM;
    for (int i = threadIdx.x; i < KV_DIM; i += blockDim.x) {
        kc[dst + i] = f2kv(k[src + i]);
        vc[dst + i] = f2kv(v[src + i]);
    }
}

// out[t, :] = table[tok[t], :] * scale (table [VOCAB, D_MODEL]); an id out of
// range gives a zero row. Grid T, block 256.
__device__ __forceinline__ void embed_body(const int *__restrict__ tok, const u16 *__restrict__ table,
                                           float scale, float *__restrict__ out)
{
    const int id = tok[blockIdx.x];
    float *o = out + (size_t)blockIdx.x * D_MODEL;
    const bool ok = (unsigned)id < (unsigned)VOCAB;
    for (int i = threadIdx.x; i < D_MODEL; i += blockDim.x)
        o[i] = ok ? w2f(table[(size_t)id * D_MODEL + i]) * scale : 0.0f;
}

// y[i] = a[i] + b[i]; y may alias a or b. Grid ceil(n/256), block 256.
__device__ __forceinline__ void add_body(const float *a, const float *b, int n, float *y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a[i] + b[i];
}
