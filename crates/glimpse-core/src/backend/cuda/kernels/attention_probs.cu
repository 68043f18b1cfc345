// The attention side pass of the token filters (`Backend::attention_probs`): for a few
// query rows, the attention probabilities over the keys each row sees, averaged over the
// query heads. Two kernels so that every (row, head) gets its own block:
//   attention_probs_heads   softmax of one (row, head) over its visible keys, divided by
//                           n_heads, into scratch [row][head][n_keys] (zero past visible)
//   attention_probs_reduce  out[row][key] = Σ over heads in head order
// Summing heads in order from zero is the CPU backend's accumulation exactly
// (backend/cpu/attention.rs `attention_probs`); only the dot products and the softmax
// sums run in a different order.
#include "common.cuh"

// head_dim ≤ 32 · PROBS_MAX_DIM_CHUNKS (checked by launch.rs).
#define PROBS_MAX_DIM_CHUNKS 8

// Block = (head, query row); each warp scores keys warp, warp + n_warps, ... with the
// lanes splitting the head's dims, so every key row is read coalesced.
extern "C" __global__ void attention_probs_heads(const float* __restrict__ q, const float* __restrict__ k,
                                                 const unsigned* __restrict__ visible, float* __restrict__ scratch,
                                                 int n_keys, int n_heads, int n_kv_heads, int head_dim, float scale) {
    __shared__ float partials[GLIMPSE_WARP];
    const int head = blockIdx.x, row = blockIdx.y;
    const int dim = head_dim;
    const int kv_head = head / (n_heads / n_kv_heads);
    const long long kv_cols = (long long)n_kv_heads * dim;
    const int warp = threadIdx.x / GLIMPSE_WARP;
    const int lane = threadIdx.x % GLIMPSE_WARP;
    const int n_warps = blockDim.x / GLIMPSE_WARP;
    const int seen = imin((int)visible[row], n_keys);
    float* scores = scratch + ((long long)row * n_heads + head) * n_keys;

    float q_own[PROBS_MAX_DIM_CHUNKS];
    for (int c = 0; c < PROBS_MAX_DIM_CHUNKS; ++c) {
        int d = lane + GLIMPSE_WARP * c;
        q_own[c] = d < dim ? q[((long long)row * n_heads + head) * dim + d] : 0.0f;
    }

    float max = neg_infinity();
    for (int j = warp; j < seen; j += n_warps) {
        const float* key = k + j * kv_cols + (long long)kv_head * dim;
        float partial = 0.0f;
        for (int c = 0; c < PROBS_MAX_DIM_CHUNKS; ++c) {
            int d = lane + GLIMPSE_WARP * c;
            if (d < dim) partial += q_own[c] * key[d];
        }
        // The xor reduction leaves the total in every lane.
        float score = warp_sum(partial) * scale;
        if (lane == 0) scores[j] = score;
        max = fmaxf(max, score);
    }
    // block_max's barrier also publishes the scores written above to every thread.
    max = block_max(max, partials);

    float sum = 0.0f;
    for (int j = threadIdx.x; j < seen; j += blockDim.x) {
        float e = expf(scores[j] - max);
        scores[j] = e;
        sum += e;
    }
    const float inv = 1.0f / block_sum(sum, partials) / (float)n_heads;
    // Same key-to-thread mapping as the loop above: each thread rescales what it wrote.
    for (int j = threadIdx.x; j < n_keys; j += blockDim.x) scores[j] = j < seen ? scores[j] * inv : 0.0f;
}

// Grid-stride over the rows × n_keys outputs.
extern "C" __global__ void attention_probs_reduce(const float* __restrict__ scratch, float* __restrict__ out,
                                                  int n_rows, int n_keys, int n_heads) {
    const long long total = (long long)n_rows * n_keys;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        long long row = i / n_keys, key = i % n_keys;
        const float* column = scratch + row * n_heads * n_keys + key;
        float acc = 0.0f;
        for (int h = 0; h < n_heads; ++h) acc += column[(long long)h * n_keys];
        out[i] = acc;
    }
}
