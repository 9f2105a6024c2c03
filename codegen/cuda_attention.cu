// Attention over the KV cache (embedded after cuda_kernels.cu; see there).
//
// Split-K ("flash decoding"): query t of the step sits at position
// p = pos0 + t and attends to keys lo..p, lo = window > 0 ? max(0, p-window+1) : 0.
// attn_partial runs on the grid (N_HEAD, n_split, T); split s covers keys
// lo + s*chunk .. min(p, lo + (s+1)*chunk - 1) with an online softmax per warp,
// and writes its partial result; attn_combine merges the n_split partials.
// The host picks chunk and n_split so that n_split*chunk covers the longest
// query (pos0 + T keys); splits past a query's keys write an empty partial.
// GQA: head h reads KV head h / (N_HEAD / N_KV_HEAD).
//
// Scratch: part_ml [T][N_HEAD][n_split] float2 (max score, sum of exp),
// part_o [T][N_HEAD][n_split][HEAD_DIM] (sum of exp(score - max) * v).
// Bytes read per query: (keys) * 2 * HEAD_DIM * sizeof(kv_t) per head.

#define ATTN_WARPS 4
#define ATTN_EPL ((HEAD_DIM + WARP - 1) / WARP) // head elements per lane
// Whole 8- or 16-byte loads of a lane's ATTN_EPL cache elements: every lane
// has a full, 4-element-aligned slice (HEAD_DIM = 32 * ATTN_EPL, EPL % 4 == 0).
#define ATTN_VEC (HEAD_DIM == WARP * ATTN_EPL && ATTN_EPL % 4 == 0)

// out[e] = cache row slice p[0 .. ATTN_EPL) as f32 (lane-local, d < HEAD_DIM).
__device__ __forceinline__ void attn_load(const kv_t *__restrict__ p, int lane, float *out)
{
#if ATTN_VEC
#if KV_F32
#pragma unroll
    for (int q = 0; q < ATTN_EPL / 4; q++) {
        const float4 v = ((const float4 *)(p + lane * ATTN_EPL))[q];
        out[4 * q] = v.x, out[4 * q + 1] = v.y, out[4 * q + 2] = v.z, out[4 * q + 3] = v.w;
    }
#else
#pragma unroll
    for (int q = 0; q < ATTN_EPL / 4; q++) {
        const uint2 v = ((const uint2 *)(p + lane * ATTN_EPL))[q];
        out[4 * q] = h2f((u16)(v.x & 0xffffu)), out[4 * q + 1] = h2f((u16)(v.x >> 16));
        out[4 * q + 2] = h2f((u16)(v.y & 0xffffu)), out[4 * q + 3] = h2f((u16)(v.y >> 16));
    }
#endif
#else
#pragma unroll
    for (int e = 0; e < ATTN_EPL; e++) {
        const int d = lane * ATTN_EPL + e;
        out[e] = d < HEAD_DIM ? kv2f(p[d]) : 0.0f;
    }
#endif
}

__device__ __forceinline__ void attn_partial_body(const float *__restrict__ q, const kv_t *__restrict__ kc,
                                                  const kv_t *__restrict__ vc, int pos0, int window, int chunk,
                                                  int n_split, float *__restrict__ part_o,
                                                  float2 *__restrict__ part_ml)
{
    __shared__ float sm_m[ATTN_WARPS], sm_l[ATTN_WARPS];
    __shared__ float sm_acc[ATTN_WARPS][ATTN_EPL * WARP];
    const int h = blockIdx.x, s = blockIdx.y, t = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = h / (N_HEAD / N_KV_HEAD);
    const int p = pos0 + t;
    const int lo = window > 0 ? max(0, p - window + 1) : 0;
    const int k0 = lo + s * chunk, k1 = min(p + 1, k0 + chunk);

    float qr[ATTN_EPL], acc[ATTN_EPL];
    const float scale = ATTN_SCALE;
#pragma unroll
    for (int e = 0; e < ATTN_EPL; e++) {
        const int d = lane * ATTN_EPL + e;
        qr[e] = d < HEAD_DIM ? q[(size_t)t * Q_DIM + h * HEAD_DIM + d] * scale : 0.0f;
        acc[e] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int k = k0 + warp; k < k1; k += ATTN_WARPS) { // warp-uniform loop
        const kv_t *kr = kc + (size_t)k * KV_DIM + g * HEAD_DIM;
        const kv_t *vr = vc + (size_t)k * KV_DIM + g * HEAD_DIM;
        float kf[ATTN_EPL], vf[ATTN_EPL];
        attn_load(kr, lane, kf);
        attn_load(vr, lane, vf); // issued before the reduction: both loads in flight
        float sc = 0.0f;
#pragma unroll
        for (int e = 0; e < ATTN_EPL; e++)
            sc = fmaf(qr[e], kf[e], sc); // qr is 0 past HEAD_DIM
        sc = warp_sum(sc);
#if ATTN_HAS_SOFTCAP
        sc = ATTN_SOFTCAP * tanhf(sc * (1.0f / ATTN_SOFTCAP));
#endif
        const float mn = fmaxf(m, sc);
        const float corr = expf(m - mn); // m = -inf on the first key: 0
        const float pe = expf(sc - mn);
        l = l * corr + pe;
#pragma unroll
        for (int e = 0; e < ATTN_EPL; e++)
            acc[e] = fmaf(pe, vf[e], acc[e] * corr);
        m = mn;
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int e = 0; e < ATTN_EPL; e++)
        sm_acc[warp][lane * ATTN_EPL + e] = acc[e];
    __syncthreads();

    float M = NEG_INF;
#pragma unroll
    for (int w = 0; w < ATTN_WARPS; w++)
        M = fmaxf(M, sm_m[w]);
    const size_t slot = ((size_t)t * N_HEAD + h) * n_split + s;
    for (int d = threadIdx.x; d < HEAD_DIM; d += blockDim.x) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++)
            if (sm_m[w] != NEG_INF)
                o = fmaf(sm_acc[w][d], expf(sm_m[w] - M), o);
        part_o[slot * HEAD_DIM + d] = o;
    }
    if (threadIdx.x == 0) {
        float L = 0.0f;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++)
            if (sm_m[w] != NEG_INF)
                L = fmaf(sm_l[w], expf(sm_m[w] - M), L);
        part_ml[slot] = make_float2(M, L);
    }
}

// out[t, h*HEAD_DIM + d] = sum_s o_s[d] e^(m_s - M) / sum_s l_s e^(m_s - M).
// Grid (N_HEAD, T), block 128. A query with no keys (impossible: p itself is
// always a key) would give zeros, not NaN.
__device__ __forceinline__ void attn_combine_body(const float *__restrict__ part_o,
                                                  const float2 *__restrict__ part_ml, int n_split,
                                                  float *__restrict__ out)
{
    const int h = blockIdx.x, t = blockIdx.y;
    const size_t base = ((size_t)t * N_HEAD + h) * n_split;
    float M = NEG_INF;
    for (int s = 0; s < n_split; s++)
        M = fmaxf(M, part_ml[base + s].x);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float2 ml = part_ml[base + s];
        if (ml.x != NEG_INF)
            L = fmaf(ml.y, expf(ml.x - M), L);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = threadIdx.x; d < HEAD_DIM; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float mx = part_ml[base + s].x;
            if (mx != NEG_INF)
                o = fmaf(part_o[(base + s) * HEAD_DIM + d], expf(mx - M), o);
        }
        out[(size_t)t * Q_DIM + h * HEAD_DIM + d] = o * inv;
    }
}
