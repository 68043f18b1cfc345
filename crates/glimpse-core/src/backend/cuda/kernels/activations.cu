// Elementwise activations in place, and the gated form `gate = act(gate) · up` of a
// SwiGLU MLP. Formulas and operation order follow the CPU backend (backend/cpu/ops.rs
// `activation`). Grid-stride loops: any grid covers any length.
#include "common.cuh"

// Codes shared with the Rust side (backend/cuda/abi.rs).
#define ACT_GELU 0
#define ACT_GELU_TANH 1
#define ACT_QUICK_GELU 2
#define ACT_SILU 3

__device__ __forceinline__ float activation(float v, int act) {
    switch (act) {
        case ACT_GELU:
            return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        case ACT_GELU_TANH:
            return 0.5f * v * (1.0f + tanhf(0.7978846f * (v + 0.044715f * v * v * v)));
        case ACT_QUICK_GELU:
            return v / (1.0f + expf(-1.702f * v));
        case ACT_SILU:
        default:  // codes only ever come from abi.rs
            return v / (1.0f + expf(-v));
    }
}

extern "C" __global__ void activate(float* x, long long n, int act) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = activation(x[i], act);
}

extern "C" __global__ void gated_activate(float* gate, const float* up, long long n, int act) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        gate[i] = activation(gate[i], act) * up[i];
}
