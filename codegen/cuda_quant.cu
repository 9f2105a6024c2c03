// flock's CUDA kernels for GGML-quantized weights (q8_0, q4_0, q4_1). Embedded
// by codegen/cuda_source.c after cuda_kernels.cu, only into the source of a
// model whose matrices use one of these types (flock_codegen_model.qtypes),
// so that the source of a 16-bit model is unchanged.
//
// The weights stay in GGML's blocks on the device (no f16 copy): 32 weights
// per block, f16 scale d first. q8_0: 34 bytes, x = d q (int8). q4_0: 18
// bytes, x = d (q - 8); q4_1: 20 bytes, f16 m after d, x = d q + m; in both
// 4-bit types byte j holds weight j (low nibble) and j + 16 (high nibble).
// Decode dequantizes in registers and accumulates in f32 (activations stay
// f32: no int8/dp4a path yet). Blocks are 2-byte aligned only (34 and 18
// bytes), so every load is a 16-bit one. QT is the flock_dtype number.

typedef unsigned char u8;

template <int QT> struct qblk;
template <> struct qblk<5> { static constexpr int BYTES = 34; }; // q8_0
template <> struct qblk<6> { static constexpr int BYTES = 18; }; // q4_0
template <> struct qblk<7> { static constexpr int BYTES = 20; }; // q4_1

// Weight i (0..31) of the block at b.
template <int QT>
__device__ __forceinline__ float qget(const u8 *b, int i)
{
    const u16 *p = (const u16 *)b;
    const float d = h2f(p[0]);
    if (QT == 5)
        return d * (float)(signed char)b[2 + i];
    const int q = (b[(QT == 6 ? 2 : 4) + (i & 15)] >> ((i >> 4) * 4)) & 15;
    if (QT == 6)
        return d * (float)(q - 8);
    return fmaf(d, (float)q, h2f(p[1]));
}

// dot(block at b, x[0..31]).
template <int QT>
__device__ __forceinline__ float qblock_dot(const u8 *b, const float *x)
{
    const u16 *p = (const u16 *)b;
    const float d = h2f(p[0]);
    float s = 0.0f;
    if (QT == 5) {
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const u32 v = p[1 + i];
            s = fmaf((float)(signed char)(v & 0xffu), x[2 * i], s);
            s = fmaf((float)(signed char)(v >> 8), x[2 * i + 1], s);
        }
        return d * s;
    }
    constexpr int Q0 = QT == 6 ? 1 : 2; // the nibbles, in 16-bit words
    float sx = 0.0f;                    // sum of x: the offset term (-8 d or m)
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const u32 v = p[Q0 + i]; // bytes 2i, 2i+1: weights 2i, 2i+1 (low), 2i+16, 2i+17 (high)
        const float a0 = x[2 * i], a1 = x[2 * i + 1], b0 = x[2 * i + 16], b1 = x[2 * i + 17];
        s = fmaf((float)(v & 15u), a0, s);
        s = fmaf((float)((v >> 8) & 15u), a1, s);
        s = fmaf((float)((v >> 4) & 15u), b0, s);
        s = fmaf((float)((v >> 12) & 15u), b1, s);
        sx += (a0 + a1) + (b0 + b1);
    }
    if (QT == 6)
        return d * fmaf(-8.0f, sx, s);
    return fmaf(d, s, h2f(p[1]) * sx);
}

// Weights 8*part .. 8*part+7 (part 0..3) of the block at b into w[8].
template <int QT>
__device__ __forceinline__ void qget8(const u8 *b, int part, float *w)
{
    const u16 *p = (const u16 *)b;
    const float d = h2f(p[0]);
    if (QT == 5) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const u32 v = p[1 + 4 * part + i];
            w[2 * i] = d * (float)(signed char)(v & 0xffu);
            w[2 * i + 1] = d * (float)(signed char)(v >> 8);
        }
        return;
    }
    // parts 0, 1: low nibbles of bytes 0..7, 8..15; parts 2, 3: their high nibbles
    const int o = (QT == 6 ? 1 : 2) + 4 * (part & 1), sh = (part >> 1) * 4;
    const float m = QT == 6 ? -8.0f * d : h2f(p[1]);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const u32 v = p[o + i];
        w[2 * i] = fmaf(d, (float)((v >> sh) & 15u), m);
        w[2 * i + 1] = fmaf(d, (float)((v >> (8 + sh)) & 15u), m);
    }
}

// ---- one warp, R consecutive quantized rows of K weights, x in shared memory
// As warp_rows_dot: out[r] = dot(W[r, 0:K], xs[0:K]) for r < nrows, every
// lane gets the sums. K % 32 == 0; lane l takes blocks l, l+32, ... of each
// row (a warp reads 32 consecutive blocks: 1088 bytes for q8_0).
template <int QT, int K, int R>
__device__ __forceinline__ void qwarp_rows_dot(const u8 *__restrict__ w, int nrows, const float *__restrict__ xs,
                                               int lane, float *out)
{
    constexpr int NB = K / 32, RB = NB * qblk<QT>::BYTES;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.0f;
    for (int b = lane; b < NB; b += WARP) {
#pragma unroll
        for (int r = 0; r < R; r++)
            if (r < nrows)
                acc[r] += qblock_dot<QT>(w + (size_t)r * RB + (size_t)b * qblk<QT>::BYTES, xs + b * 32);
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        out[r] = warp_sum(acc[r]);
}

// ---- decode: dense GEMV, quantized W [N, K] ------------------------------------
// As gemv_body (same block, grid and outputs). Reads N * K / 32 * BYTES bytes.
template <int QT, int N, int K>
__device__ __forceinline__ void qgemv_body(const float *__restrict__ x, const u8 *__restrict__ w, const float *bias,
                                           const float *resid, float *y)
{
    constexpr int RB = K / 32 * qblk<QT>::BYTES;
    __shared__ __align__(16) float xs[K];
    stage_f32(xs, x, K);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int row = (blockIdx.x * GEMV_WARPS + warp) * 2; row < N; row += gridDim.x * GEMV_WARPS * 2) {
        float s[2];
        qwarp_rows_dot<QT, K, 2>(w + (size_t)row * RB, N - row, xs, lane, s);
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

// ---- decode: GRIFFIN's gather FF, quantized gate_up [D_FF, 2*D_MODEL] or w1 ----
// As ffn_gather_body. A gate_up row is the gate row's blocks, then the up row's.
template <int QT, int KEEP>
__device__ __forceinline__ void qffn_gather_body(const float *__restrict__ x, const int *__restrict__ idx,
                                                 const u8 *__restrict__ w, const float *__restrict__ b1,
                                                 float *__restrict__ h)
{
    constexpr int RB = D_MODEL / 32 * qblk<QT>::BYTES;
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
        qwarp_rows_dot<QT, D_MODEL, 2>(w + (size_t)n * (2 * RB), 2, xs, lane, gu);
        if (lane == 0)
            h[j] = act_fn(gu[0]) * gu[1];
#else
        float a[1];
        qwarp_rows_dot<QT, D_MODEL, 1>(w + (size_t)n * RB, 1, xs, lane, a);
        if (lane == 0)
            h[j] = act_fn(a[0] + (b1 ? b1[n] : 0.0f));
#endif
    }
}

// ---- decode: GRIFFIN's down projection, quantized down_t [D_FF, D_MODEL] -------
// As ffn_down_body: the same grid, split and DETERMINISTIC reduction (warp w
// sums neurons j0+w, j0+w+8, ... in order; the 8 warps, then the splits,
// are summed in a fixed order). Lane l owns columns tile*256 + 8l .. +7:
// a quarter (l & 3) of one block of each kept row. Reads KEEP * D_MODEL /
// 32 * BYTES bytes.
template <int QT, int KEEP>
__device__ __forceinline__ void qffn_down_body(const float *__restrict__ h, const int *__restrict__ idx,
                                               const u8 *__restrict__ wd, float *part, int *counters,
                                               const float *resid, const float *bias, float *y)
{
    constexpr int RB = D_MODEL / 32 * qblk<QT>::BYTES;
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
        const u8 *col = wd + (size_t)(c0 / 32) * qblk<QT>::BYTES;
#pragma unroll 2
        for (int j = j0 + warp; j < j1; j += DOWN_WARPS) {
            const int n = idx[j];
            if ((unsigned)n >= (unsigned)D_FF)
                continue;
            const float hv = h[j];
            float wv[8];
            qget8<QT>(col + (size_t)n * RB, lane & 3, wv);
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[e] = fmaf(hv, wv[e], acc[e]);
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
    // Fused reduction, exactly as ffn_down_body's (see there).
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        last = atomicAdd(&counters[blockIdx.x], 1) == (int)gridDim.y - 1;
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    if (c < D_MODEL) {
        const volatile float *pv = part;
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

// ---- prefill: quantized rows -> 16-bit weights for the tensor-core GEMM -------
// out[i] = weight i of w (n_blocks blocks, row-major: the same layout as a
// 16-bit matrix of the same shape), in the 16-bit weight type. Grid-stride:
// any grid; block 256. The runtime expands one matrix into a scratch buffer
// right before its GEMM (prefill only): 2 bytes written per weight.
template <int QT>
__device__ __forceinline__ void dequant_body(const u8 *__restrict__ w, int n_blocks, u16 *__restrict__ out)
{
    const size_t n = (size_t)n_blocks * 32;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = qget<QT>(w + (i / 32) * qblk<QT>::BYTES, (int)(i & 31));
        out[i] = (u16)(f2w2(v, 0.0f) & 0xffffu);
    }
}

// As embed_body, table [VOCAB, D_MODEL] quantized (D_MODEL % 32 == 0).
template <int QT>
__device__ __forceinline__ void qembed_body(const int *__restrict__ tok, const u8 *__restrict__ table, float scale,
                                            float *__restrict__ out)
{
    constexpr int RB = D_MODEL / 32 * qblk<QT>::BYTES;
    const int id = tok[blockIdx.x];
    float *o = out + (size_t)blockIdx.x * D_MODEL;
    const bool ok = (unsigned)id < (unsigned)VOCAB;
    const u8 *row = table + (size_t)(ok ? id : 0) * RB;
    for (int i = threadIdx.x; i < D_MODEL; i += blockDim.x)
        o[i] = ok ? qget<QT>(row + (i / 32) * qblk<QT>::BYTES, i & 31) * scale : 0.0f;
}

// As pos_embed_body, table [n_pos, D_MODEL] quantized.
template <int QT>
__device__ __forceinline__ void qpos_embed_body(const float *x, const u8 *__restrict__ table, int n_pos, int pos0,
                                                int offset, float *y)
{
    constexpr int RB = D_MODEL / 32 * qblk<QT>::BYTES;
    const int p = pos0 + (int)blockIdx.x + offset;
    const bool ok = p >= 0 && p < n_pos;
    const size_t r = (size_t)blockIdx.x * D_MODEL;
    const u8 *row = table + (size_t)(ok ? p : 0) * RB;
    for (int i = threadIdx.x; i < D_MODEL; i += blockDim.x)
        y[r + i] = x[r + i] + (ok ? qget<QT>(row + (i / 32) * qblk<QT>::BYTES, i & 31) : 0.0f);
}
