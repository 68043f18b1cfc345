// Multi-head attention for many query rows (prefill, the vision tower), flash style: the
// full score matrix never exists; each block walks the keys in tiles and keeps a running
// max, sum and output per query row (online softmax).
//
// Masking and grouping follow the CPU backend (backend/cpu/attention.rs): query row i of
// n_queries sees keys [0, n_keys − n_queries + i] when causal, all n_keys otherwise; query
// head h reads key/value head h / (n_heads / n_kv_heads).
//
// Block = (tile of PREFILL_ROWS query rows, one head), PREFILL_WARPS warps, each warp owning
// PREFILL_ROWS_PER_WARP rows. Per key tile of 32 keys (one per lane): lane j scores key j
// for a row, the warp reduces max and sum, and each lane then updates the output dims it
// owns (lane + 32·c). Dynamic shared memory, sized by launch.rs `attention_prefill`:
//   q  [PREFILL_ROWS][head_dim]      the block's query rows
//   k  [32][head_dim + 1]            key tile; the pad makes lane j's row reads conflict-free
//   v  [32][head_dim]                value tile
//   p  [PREFILL_ROWS][32]            probabilities of the current tile, per row
#include "common.cuh"

#define PREFILL_WARPS 4
#define PREFILL_ROWS_PER_WARP 4
#define PREFILL_ROWS (PREFILL_WARPS * PREFILL_ROWS_PER_WARP)
#define PREFILL_KEYS GLIMPSE_WARP
// head_dim ≤ 32 · PREFILL_MAX_DIM_CHUNKS (checked by launch.rs).
#define PREFILL_MAX_DIM_CHUNKS 8

extern "C" __global__ void attention_prefill(const float* __restrict__ q, const float* __restrict__ k,
                                             const float* __restrict__ v, float* __restrict__ out, int n_queries,
                                             int n_keys, int n_heads, int n_kv_heads, int head_dim, int causal,
                                             float scale) {
    const int dim = head_dim;
    const int head = blockIdx.y;
    const int kv_head = head / (n_heads / n_kv_heads);
    const long long q_cols = (long long)n_heads * dim;
    const long long kv_cols = (long long)n_kv_heads * dim;
    const int row0 = blockIdx.x * PREFILL_ROWS;
    const int warp = threadIdx.x / GLIMPSE_WARP;
    const int lane = threadIdx.x % GLIMPSE_WARP;

    float* q_tile = dynamic_shared_floats();
    float* k_tile = q_tile + PREFILL_ROWS * dim;
    float* v_tile = k_tile + PREFILL_KEYS * (dim + 1);
    float* p_tile = v_tile + PREFILL_KEYS * dim;

    // Keys any row of this block may see: those of its last existing row.
    const int last_row = imin(row0 + PREFILL_ROWS, n_queries) - 1;
    const int block_keys = causal ? n_keys - n_queries + last_row + 1 : n_keys;

    for (int i = threadIdx.x; i < PREFILL_ROWS * dim; i += blockDim.x) {
        int row = row0 + i / dim;
        q_tile[i] = row < n_queries ? q[row * q_cols + (long long)head * dim + i % dim] : 0.0f;
    }

    float row_max[PREFILL_ROWS_PER_WARP];
    float row_sum[PREFILL_ROWS_PER_WARP];
    float acc[PREFILL_ROWS_PER_WARP][PREFILL_MAX_DIM_CHUNKS];
    // Unrolled loops over rr and c keep row_max, row_sum and acc in registers.
#pragma unroll
    for (int rr = 0; rr < PREFILL_ROWS_PER_WARP; ++rr) {
        row_max[rr] = neg_infinity();
        row_sum[rr] = 0.0f;
#pragma unroll
        for (int c = 0; c < PREFILL_MAX_DIM_CHUNKS; ++c) acc[rr][c] = 0.0f;
    }

    for (int tile0 = 0; tile0 < block_keys; tile0 += PREFILL_KEYS) {
        // The query tile is written / the previous key tile is no longer read.
        __syncthreads();
        for (int i = threadIdx.x; i < PREFILL_KEYS * dim; i += blockDim.x) {
            int j = i / dim, d = i % dim, key = tile0 + j;
            bool exists = key < block_keys;
            long long at = key * kv_cols + (long long)kv_head * dim + d;
            k_tile[j * (dim + 1) + d] = exists ? k[at] : 0.0f;
            v_tile[j * dim + d] = exists ? v[at] : 0.0f;
        }
        __syncthreads();

#pragma unroll
        for (int rr = 0; rr < PREFILL_ROWS_PER_WARP; ++rr) {
            const int r = warp * PREFILL_ROWS_PER_WARP + rr;
            const int row = row0 + r;
            const int visible = row >= n_queries ? 0 : causal ? n_keys - n_queries + row + 1 : n_keys;
            const bool live = tile0 + lane < visible;

            const float* q_row = q_tile + r * dim;
            const float* k_row = k_tile + lane * (dim + 1);
            float dot = 0.0f;
            for (int d = 0; d < dim; ++d) dot += q_row[d] * k_row[d];
            float score = live ? dot * scale : neg_infinity();

            float new_max = fmaxf(row_max[rr], warp_max(score));
            float p = live ? expf(score - new_max) : 0.0f;
            // A row that has seen no key keeps its zero state (and avoids −inf − −inf).
            float rescale = row_max[rr] == neg_infinity() ? 0.0f : expf(row_max[rr] - new_max);
            row_sum[rr] = row_sum[rr] * rescale + warp_sum(p);
            row_max[rr] = new_max;

            p_tile[r * PREFILL_KEYS + lane] = p;
            __syncwarp();
#pragma unroll
            for (int c = 0; c < PREFILL_MAX_DIM_CHUNKS; ++c) {
                int d = lane + GLIMPSE_WARP * c;
                if (d < dim) {
                    float o = acc[rr][c] * rescale;
                    for (int j = 0; j < PREFILL_KEYS; ++j) o += p_tile[r * PREFILL_KEYS + j] * v_tile[j * dim + d];
                    acc[rr][c] = o;
                }
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < PREFILL_ROWS_PER_WARP; ++rr) {
        int row = row0 + warp * PREFILL_ROWS_PER_WARP + rr;
        if (row >= n_queries) continue;
        float inv = 1.0f / row_sum[rr];
#pragma unroll
        for (int c = 0; c < PREFILL_MAX_DIM_CHUNKS; ++c) {
            int d = lane + GLIMPSE_WARP * c;
            if (d < dim) out[row * q_cols + (long long)head * dim + d] = acc[rr][c] * inv;
        }
    }
}
