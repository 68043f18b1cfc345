// Row softmax `out = exp(x − max) / Σ exp(x − max)`, one block per row (sampling
// probabilities over the vocabulary, attention side passes).
#include "common.cuh"

extern "C" __global__ void softmax_rows(const float* x, float* out, int cols) {
    __shared__ float partials[GLIMPSE_WARP];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out_row = out + (long long)blockIdx.x * cols;
    float max = neg_infinity();
    for (int c = threadIdx.x; c < cols; c += blockDim.x) max = fmaxf(max, row[c]);
    max = block_max(max, partials);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float e = expf(row[c] - max);
        out_row[c] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum, partials);
    // Each thread rescales exactly the elements it wrote, so no barrier is needed.
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out_row[c] *= inv;
}
