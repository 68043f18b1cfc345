// RMSNorm (Llama) and LayerNorm (CLIP), one block per row, f32 math as the CPU backend
// (backend/cpu/ops.rs): `w · (x · 1/sqrt(mean(x²) + eps))` and
// `(x − mean) · 1/sqrt(var + eps) · w + b` with the biased variance.
// Weights come in the checkpoint's type; only the row sums differ in order from the CPU.
#include "common.cuh"

template <typename W>
__device__ void rms_norm_row(const float* __restrict__ x, const W* __restrict__ w, float* __restrict__ out, int cols,
                             float eps) {
    __shared__ float partials[GLIMPSE_WARP];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out_row = out + (long long)blockIdx.x * cols;
    float sum_sq = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum_sq += row[c] * row[c];
    float mean_sq = block_sum(sum_sq, partials) / (float)cols;
    float inv = 1.0f / sqrtf(mean_sq + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out_row[c] = to_f32(w[c]) * (row[c] * inv);
}

template <typename W>
__device__ void layer_norm_row(const float* __restrict__ x, const W* __restrict__ w, const W* __restrict__ b,
                               float* __restrict__ out, int cols, float eps) {
    __shared__ float partials[GLIMPSE_WARP];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out_row = out + (long long)blockIdx.x * cols;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
    float mean = block_sum(sum, partials) / (float)cols;
    // Two passes over the row (it stays in cache) rather than E[x²] − mean², which
    // cancels badly when the mean is large.
    float sum_dev = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum_dev += (row[c] - mean) * (row[c] - mean);
    float var = block_sum(sum_dev, partials) / (float)cols;
    float inv = 1.0f / sqrtf(var + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out_row[c] = (row[c] - mean) * inv * to_f32(w[c]) + to_f32(b[c]);
}

extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* out, int cols, float eps) {
    rms_norm_row(x, w, out, cols, eps);
}
extern "C" __global__ void rms_norm_f16(const float* x, const f16_bits* w, float* out, int cols, float eps) {
    rms_norm_row(x, w, out, cols, eps);
}
extern "C" __global__ void rms_norm_bf16(const float* x, const bf16_bits* w, float* out, int cols, float eps) {
    rms_norm_row(x, w, out, cols, eps);
}

extern "C" __global__ void layer_norm_f32(const float* x, const float* w, const float* b, float* out, int cols,
                                          float eps) {
    layer_norm_row(x, w, b, out, cols, eps);
}
extern "C" __global__ void layer_norm_f16(const float* x, const f16_bits* w, const f16_bits* b, float* out, int cols,
                                          float eps) {
    layer_norm_row(x, w, b, out, cols, eps);
}
extern "C" __global__ void layer_norm_bf16(const float* x, const bf16_bits* w, const bf16_bits* b, float* out,
                                           int cols, float eps) {
    layer_norm_row(x, w, b, out, cols, eps);
}
