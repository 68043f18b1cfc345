// Attention for a few query rows over a long key/value cache (decode), split over the key
// axis so that one query row still fills the GPU: each block takes one (split, head,
// query row), walks its share of the keys with an online softmax and writes a partial
// (running max, sum of exponentials, unnormalised output); a combine kernel merges the
// splits. Masking and grouping as in attention_prefill.cu and backend/cpu/attention.rs.
//
// Inside a block, DECODE_WARPS warps take key tiles of 32 in turn (lane j scores key j);
// the key tile passes through shared memory 32 dims at a time, so reads of the cache stay
// coalesced whatever head_dim is. Dynamic shared memory, sized by launch.rs
// `attention_decode`:
//   q      [head_dim]                  the query row of this head
//   k      [DECODE_WARPS][32][33]      per-warp key tile, 32 dims at a time (padded)
//   p      [DECODE_WARPS][32]          per-warp probabilities of the current tile
//   max    [DECODE_WARPS], sum [DECODE_WARPS], acc [DECODE_WARPS][head_dim]: warp results
#include "common.cuh"

#define DECODE_WARPS 4
#define DECODE_KEYS GLIMPSE_WARP
// head_dim ≤ 32 · DECODE_MAX_DIM_CHUNKS (checked by launch.rs).
#define DECODE_MAX_DIM_CHUNKS 8

// Partial results are laid out [query row][head][split] (× head_dim for the output).
extern "C" __global__ void attention_decode_split(const float* __restrict__ q, const float* __restrict__ k,
                                                  const float* __restrict__ v, float* __restrict__ part_out,
                                                  float* __restrict__ part_max, float* __restrict__ part_sum,
                                                  int n_queries, int n_keys, int n_heads, int n_kv_heads, int head_dim,
                                                  int causal, float scale, int keys_per_split) {
    const int dim = head_dim;
    const int split = blockIdx.x, head = blockIdx.y, row = blockIdx.z;
    const int n_splits = gridDim.x;
    const int kv_head = head / (n_heads / n_kv_heads);
    const long long kv_cols = (long long)n_kv_heads * dim;
    const int warp = threadIdx.x / GLIMPSE_WARP;
    const int lane = threadIdx.x % GLIMPSE_WARP;

    float* q_s = dynamic_shared_floats();
    float* k_tile = q_s + dim + warp * DECODE_KEYS * (GLIMPSE_WARP + 1);
    float* p_tile = q_s + dim + DECODE_WARPS * DECODE_KEYS * (GLIMPSE_WARP + 1) + warp * DECODE_KEYS;
    float* warp_maxes = q_s + dim + DECODE_WARPS * DECODE_KEYS * (GLIMPSE_WARP + 2);
    float* warp_sums = warp_maxes + DECODE_WARPS;
    float* warp_out = warp_sums + DECODE_WARPS;

    const int visible = causal ? n_keys - n_queries + row + 1 : n_keys;
    const int begin = split * keys_per_split;
    const int end = imin(begin + keys_per_split, visible);

    for (int d = threadIdx.x; d < dim; d += blockDim.x) q_s[d] = q[((long long)row * n_heads + head) * dim + d];
    __syncthreads();

    float run_max = neg_infinity();
    float run_sum = 0.0f;
    float acc[DECODE_MAX_DIM_CHUNKS];
    for (int c = 0; c < DECODE_MAX_DIM_CHUNKS; ++c) acc[c] = 0.0f;

    for (int tile0 = begin + warp * DECODE_KEYS; tile0 < end; tile0 += DECODE_WARPS * DECODE_KEYS) {
        const int tile_keys = imin(DECODE_KEYS, end - tile0);
        const float* k_base = k + (long long)tile0 * kv_cols + (long long)kv_head * dim;
        float dot = 0.0f;
        for (int d0 = 0; d0 < dim; d0 += GLIMPSE_WARP) {
            // Row j of the tile, dims d0 + lane: one coalesced read per key.
            for (int j = 0; j < DECODE_KEYS; ++j) {
                bool exists = j < tile_keys && d0 + lane < dim;
                k_tile[j * (GLIMPSE_WARP + 1) + lane] = exists ? k_base[j * kv_cols + d0 + lane] : 0.0f;
            }
            __syncwarp();
            int chunk = imin(GLIMPSE_WARP, dim - d0);
            for (int i = 0; i < chunk; ++i) dot += q_s[d0 + i] * k_tile[lane * (GLIMPSE_WARP + 1) + i];
            // The tile is rewritten by the next chunk.
            __syncwarp();
        }
        const bool live = lane < tile_keys;
        float score = live ? dot * scale : neg_infinity();
        float new_max = fmaxf(run_max, warp_max(score));
        float p = live ? expf(score - new_max) : 0.0f;
        float rescale = run_max == neg_infinity() ? 0.0f : expf(run_max - new_max);
        run_sum = run_sum * rescale + warp_sum(p);
        run_max = new_max;

        p_tile[lane] = p;
        __syncwarp();
        const float* v_base = v + (long long)tile0 * kv_cols + (long long)kv_head * dim;
        for (int c = 0; c < DECODE_MAX_DIM_CHUNKS; ++c) {
            int d = lane + GLIMPSE_WARP * c;
            if (d < dim) {
                float o = acc[c] * rescale;
                for (int j = 0; j < tile_keys; ++j) o += p_tile[j] * v_base[j * kv_cols + d];
                acc[c] = o;
            }
        }
        // p_tile is rewritten by the next tile.
        __syncwarp();
    }

    // Merge the warps' states into the split's partial.
    if (lane == 0) {
        warp_maxes[warp] = run_max;
        warp_sums[warp] = run_sum;
    }
    for (int c = 0; c < DECODE_MAX_DIM_CHUNKS; ++c) {
        int d = lane + GLIMPSE_WARP * c;
        if (d < dim) warp_out[warp * dim + d] = acc[c];
    }
    __syncthreads();

    float split_max = neg_infinity();
    for (int w = 0; w < DECODE_WARPS; ++w) split_max = fmaxf(split_max, warp_maxes[w]);
    const long long part = ((long long)row * n_heads + head) * n_splits + split;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < DECODE_WARPS; ++w)
            if (warp_maxes[w] != neg_infinity()) o += warp_out[w * dim + d] * expf(warp_maxes[w] - split_max);
        part_out[part * dim + d] = o;
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < DECODE_WARPS; ++w)
            if (warp_maxes[w] != neg_infinity()) sum += warp_sums[w] * expf(warp_maxes[w] - split_max);
        part_max[part] = split_max;
        part_sum[part] = sum;
    }
}

// out[row, head] = Σ_s part_out[s] · e^(max_s − M) / Σ_s part_sum[s] · e^(max_s − M), with
// M the largest split max. A split that saw no key (max −inf) adds nothing. Block =
// (head, query row); threads over the head's dims.
extern "C" __global__ void attention_decode_combine(const float* __restrict__ part_out,
                                                    const float* __restrict__ part_max,
                                                    const float* __restrict__ part_sum, float* __restrict__ out,
                                                    int n_heads, int head_dim, int n_splits) {
    const int head = blockIdx.x, row = blockIdx.y;
    const long long first = ((long long)row * n_heads + head) * n_splits;
    float max = neg_infinity();
    for (int s = 0; s < n_splits; ++s) max = fmaxf(max, part_max[first + s]);
    float sum = 0.0f;
    for (int s = 0; s < n_splits; ++s)
        if (part_max[first + s] != neg_infinity()) sum += part_sum[first + s] * expf(part_max[first + s] - max);
    const float inv = 1.0f / sum;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_splits; ++s)
            if (part_max[first + s] != neg_infinity())
                o += part_out[(first + s) * head_dim + d] * expf(part_max[first + s] - max);
        out[((long long)row * n_heads + head) * head_dim + d] = o * inv;
    }
}
