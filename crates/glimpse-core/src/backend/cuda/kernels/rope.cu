// Rotary position embedding, Llama's rotate-half form, in place on the `n_heads` heads of
// each row; row r sits at position `positions[r]` (original positions survive dropping).
// One block per row, one thread per (head, pair). Frequencies and angles in f32, in the
// same operation order as the CPU backend (backend/cpu/ops.rs `rope`).
#include "common.cuh"

extern "C" __global__ void rope(float* x, const unsigned* positions, int n_heads, int head_dim, float theta) {
    int half = head_dim / 2;
    float* row = x + (long long)blockIdx.x * n_heads * head_dim;
    float position = (float)positions[blockIdx.x];
    for (int pair = threadIdx.x; pair < n_heads * half; pair += blockDim.x) {
        int head = pair / half;
        int i = pair % half;
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        float sin_angle, cos_angle;
        sincosf(position * inv_freq, &sin_angle, &cos_angle);
        float* h = row + head * head_dim;
        float a = h[i];
        float b = h[i + half];
        h[i] = a * cos_angle - b * sin_angle;
        h[i + half] = b * cos_angle + a * sin_angle;
    }
}
