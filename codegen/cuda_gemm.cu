// Prefill matrix products on the tensor cores (embedded after cuda_kernels.cu).
//
// Y = epilogue(X . W^T) with X [M, K] f32 activations (M = prompt tokens, a
// run-time value) rounded to the weight type on their way into shared
// memory, W 16-bit, f32 accumulation with mma.sync.m16n8k16 (sm_80+).
// W is [N, K] row-major (WKN = 0: linear layers, gate_up seen as
// [2*D_FF, D_MODEL]) or [K, N] (WKN = 1: down_t [D_FF, D_MODEL]; the tile is
// transposed on its way into shared memory).
// Block tile 64 x 64 x 32, 4 warps in a 2 x 2 layout, each warp 32 x 32 =
// 2 x 4 mma tiles; the next K tile is loaded into registers while the
// current one is multiplied. Grid (ceil(N/64), ceil(M/64)), block 128.
// FLOPs per call: 2*M*N*K.
//
// Epilogues:
//  EPI_LINEAR  Y[m, n] = acc + bias[n] + R[m, n]  (bias, R may be NULL; Y may alias R)
//  EPI_GLU     Y[m, n/2] = act(acc[m, n]) * acc[m, n+1] for even n (gate_up's
//              rows interleave gate and up per neuron, so a thread's two
//              accumulator columns are one neuron's gate and up): Y [M, N/2]
//  EPI_ACT     Y[m, n] = act(acc + bias[n])

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 32
#define GEMM_LD (GEMM_BK + 8) // padded row (80 bytes): conflict-free fragment loads
#define EPI_LINEAR 0
#define EPI_GLU 1
#define EPI_ACT 2

#ifndef FLOCK_CUDA_EMU
// c += a . b for one 16 x 8 x 16 tile; fragments as in the PTX ISA's
// "Matrix Fragments for mma.m16n8k16" (a: 4 regs, b: 2, c: 4 floats per lane).
__device__ __forceinline__ void mma_f16(float *c, const u32 *a, const u32 *b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma_bf16(float *c, const u32 *a, const u32 *b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

__device__ __forceinline__ void mma16816(float *c, const u32 *a, const u32 *b)
{
#if W_BF16
    mma_bf16(c, a, b);
#else
    mma_f16(c, a, b);
#endif
}

// X tile [64 x 32] f32: 512 float4, 4 per thread.
template <int K>
__device__ __forceinline__ void gemm_load_x(const float *__restrict__ X, int M, int m0, int k0, float4 *xa)
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int idx = threadIdx.x + 128 * i, r = idx >> 3, c = (idx & 7) * 4;
        const int m = m0 + r, k = k0 + c;
        if (K % 4 == 0) {
            xa[i] = (m < M && k < K) ? *(const float4 *)(X + (size_t)m * K + k) : make_float4(0.f, 0.f, 0.f, 0.f);
        } else {
            const float *p = X + (size_t)m * K + k;
            const bool ok = m < M;
            xa[i] = make_float4(ok && k < K ? p[0] : 0.f, ok && k + 1 < K ? p[1] : 0.f,
                                ok && k + 2 < K ? p[2] : 0.f, ok && k + 3 < K ? p[3] : 0.f);
        }
    }
}

__device__ __forceinline__ void gemm_store_x(u16 (*As)[GEMM_LD], const float4 *xa)
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int idx = threadIdx.x + 128 * i, r = idx >> 3, c = (idx & 7) * 4;
        *(uint2 *)&As[r][c] = make_uint2(f2w2(xa[i].x, xa[i].y), f2w2(xa[i].z, xa[i].w));
    }
}

// W tile: 64 (n) x 32 (k) weights = 256 16-byte pieces, 2 per thread.
template <int N, int K, int WKN>
__device__ __forceinline__ void gemm_load_w(const u16 *__restrict__ W, int n0, int k0, uint4 *wb)
{
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int idx = threadIdx.x + 128 * i;
        if (WKN == 0) {
            const int r = idx >> 2, c = (idx & 3) * 8, n = n0 + r, k = k0 + c;
            wb[i] = (n < N && k < K) ? ld_stream16(W + (size_t)n * K + k) : make_uint4(0u, 0u, 0u, 0u);
        } else {
            const int kr = idx >> 3, c = (idx & 7) * 8, k = k0 + kr, n = n0 + c;
            wb[i] = (k < K && n < N) ? ld_stream16(W + (size_t)k * N + n) : make_uint4(0u, 0u, 0u, 0u);
        }
    }
}

template <int WKN>
__device__ __forceinline__ void gemm_store_w(u16 (*Bs)[GEMM_LD], const uint4 *wb)
{
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int idx = threadIdx.x + 128 * i;
        if (WKN == 0) {
            *(uint4 *)&Bs[idx >> 2][(idx & 3) * 8] = wb[i];
        } else {
            const int kr = idx >> 3, c = (idx & 7) * 8;
            const u32 q[4] = {wb[i].x, wb[i].y, wb[i].z, wb[i].w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                Bs[c + 2 * e][kr] = (u16)(q[e] & 0xffffu);
                Bs[c + 2 * e + 1][kr] = (u16)(q[e] >> 16);
            }
        }
    }
}

template <int N, int K, int WKN, int EPI>
__device__ __forceinline__ void gemm_body(const float *__restrict__ X, int M, const u16 *__restrict__ W,
                                          const float *bias, const float *R, float *Y)
{
    static_assert(WKN == 1 || K % 8 == 0, "[N,K] weights need K % 8 == 0 (16-byte rows)");
    static_assert(WKN == 0 || N % 8 == 0, "[K,N] weights need N % 8 == 0 (16-byte rows)");
    static_assert(EPI != EPI_GLU || N % 2 == 0, "GLU needs gate/up pairs");
    __shared__ __align__(16) u16 As[GEMM_BM][GEMM_LD];
    __shared__ __align__(16) u16 Bs[GEMM_BN][GEMM_LD];
    constexpr int KT = (K + GEMM_BK - 1) / GEMM_BK;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = warp >> 1, wn = warp & 1, g = lane >> 2, tq = lane & 3;
    const int m0 = blockIdx.y * GEMM_BM, n0 = blockIdx.x * GEMM_BN;

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[i][j][e] = 0.0f;

    float4 xa[4];
    uint4 wb[2];
    gemm_load_x<K>(X, M, m0, 0, xa);
    gemm_load_w<N, K, WKN>(W, n0, 0, wb);
    for (int kt = 0; kt < KT; kt++) {
        __syncthreads(); // the previous tile is no longer read
        gemm_store_x(As, xa);
        gemm_store_w<WKN>(Bs, wb);
        __syncthreads();
        if (kt + 1 < KT) { // next tile in flight during the products
            gemm_load_x<K>(X, M, m0, (kt + 1) * GEMM_BK, xa);
            gemm_load_w<N, K, WKN>(W, n0, (kt + 1) * GEMM_BK, wb);
        }
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; kk += 16) {
            u32 a[2][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = wm * 32 + i * 16 + g;
                a[i][0] = *(const u32 *)&As[r][kk + tq * 2];
                a[i][1] = *(const u32 *)&As[r + 8][kk + tq * 2];
                a[i][2] = *(const u32 *)&As[r][kk + tq * 2 + 8];
                a[i][3] = *(const u32 *)&As[r + 8][kk + tq * 2 + 8];
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int c = wn * 32 + j * 8 + g;
                b[j][0] = *(const u32 *)&Bs[c][kk + tq * 2];
                b[j][1] = *(const u32 *)&Bs[c][kk + tq * 2 + 8];
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    mma16816(acc[i][j], a[i], b[j]);
        }
    }

    // Accumulator layout: acc[i][j][0..1] at (row g, cols 2tq, 2tq+1),
    // acc[i][j][2..3] at row g + 8, of mma tile (i, j).
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int c = n0 + wn * 32 + j * 8 + tq * 2;
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int r = m0 + wm * 32 + i * 16 + g + hh * 8;
                if (r >= M)
                    continue;
                const float v0 = acc[i][j][2 * hh], v1 = acc[i][j][2 * hh + 1];
                if (EPI == EPI_GLU) {
                    if (c < N)
                        Y[(size_t)r * (N / 2) + c / 2] = act_fn(v0) * v1;
                } else {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int n = c + e;
                        if (n >= N)
                            continue;
                        float v = e ? v1 : v0;
                        if (bias)
                            v += bias[n];
                        if (EPI == EPI_ACT)
                            v = act_fn(v);
                        else if (R)
                            v += R[(size_t)r * N + n];
                        Y[(size_t)r * N + n] = v;
                    }
                }
            }
        }
    }
}
