// Greedy decoding: index of the largest logit of each row, the lowest index on a tie
// (as the CPU sampler, generate/sampler.rs). One block per row; NaN never wins.
#include "common.cuh"

extern "C" __global__ void argmax_rows(const float* logits, unsigned* out, int cols) {
    __shared__ float best_values[GLIMPSE_WARP];
    __shared__ int best_indices[GLIMPSE_WARP];
    const float* row = logits + (long long)blockIdx.x * cols;
    // Each thread scans its columns in increasing order, so a strict `>` keeps the
    // lowest index among its equal maxima.
    float best = neg_infinity();
    int index = cols;  // "none yet": loses every comparison below
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        if (row[c] > best) {
            best = row[c];
            index = c;
        }
    }
    // Merge (value, index) pairs: larger value wins, the lower index on equal values.
    for (int offset = GLIMPSE_WARP / 2; offset > 0; offset /= 2) {
        float other = __shfl_xor_sync(GLIMPSE_FULL_MASK, best, offset);
        int other_index = __shfl_xor_sync(GLIMPSE_FULL_MASK, index, offset);
        if (other > best || (other == best && other_index < index)) {
            best = other;
            index = other_index;
        }
    }
    int warp = threadIdx.x / GLIMPSE_WARP;
    if (threadIdx.x % GLIMPSE_WARP == 0) {
        best_values[warp] = best;
        best_indices[warp] = index;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (unsigned w = 1; w < blockDim.x / GLIMPSE_WARP; ++w) {
            if (best_values[w] > best || (best_values[w] == best && best_indices[w] < index)) {
                best = best_values[w];
                index = best_indices[w];
            }
        }
        // A row of −inf / NaN only: 0, as the CPU sampler (which reads NaN as −inf).
        out[blockIdx.x] = index < cols ? (unsigned)index : 0u;
    }
}
