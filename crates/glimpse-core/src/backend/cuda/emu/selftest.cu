// Kernels that test the emulator itself (compiled for the emulation only): shuffle
// semantics, and that the synchronisation mistakes it promises to expose do show.
#include "../kernels/common.cuh"

// Per thread t: the xor, down and indexed shuffles of values derived from t.
extern "C" __global__ void selftest_shuffles(int* out) {
    int t = threadIdx.x;
    out[3 * t] = __shfl_xor_sync(GLIMPSE_FULL_MASK, t, 5);
    out[3 * t + 1] = __shfl_down_sync(GLIMPSE_FULL_MASK, t, 3);
    out[3 * t + 2] = __shfl_sync(GLIMPSE_FULL_MASK, 10 * t, 7);
}

// Each thread writes its index to shared memory and reads its right neighbour's, with or
// without the barrier in between that makes this correct.
extern "C" __global__ void selftest_neighbour(float* out, int with_barrier) {
    float* slots = dynamic_shared_floats();
    int t = threadIdx.x;
    slots[t] = (float)t;
    if (with_barrier) __syncthreads();
    out[blockIdx.x * blockDim.x + t] = slots[(t + 1) % blockDim.x];
}

// Only some threads reach the barrier.
extern "C" __global__ void selftest_divergent_barrier(int* out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1;
}

// Launched with a block that is not a whole number of warps.
extern "C" __global__ void selftest_partial_warp(float* out) { out[threadIdx.x] = warp_sum(1.0f); }
