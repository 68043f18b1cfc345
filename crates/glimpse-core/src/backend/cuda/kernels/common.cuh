// Helpers shared by every kernel file: 16-bit weight widening, warp and block reductions.
//
// Kernels include no CUDA header at all, so NVRTC needs no include path: 16-bit values are
// widened by bit manipulation instead of through cuda_fp16.h / cuda_bf16.h. The Rust side
// pastes this file in place of its #include line before handing a kernel file to NVRTC;
// the CPU emulation compiles the same text as C++ (see emu/cuda_emu.h).
#ifndef GLIMPSE_COMMON_CUH
#define GLIMPSE_COMMON_CUH

// Threads per warp; every launch uses whole warps (see launch.rs).
#define GLIMPSE_WARP 32
#define GLIMPSE_FULL_MASK 0xffffffffu

// A bf16 or f16 element as stored in a checkpoint. Distinct types so a kernel template
// picks the right widening from its parameter type.
struct bf16_bits {
    unsigned short bits;
};
struct f16_bits {
    unsigned short bits;
};

__device__ __forceinline__ float to_f32(float v) { return v; }

// bf16 is the top half of an f32.
__device__ __forceinline__ float to_f32(bf16_bits v) { return __uint_as_float((unsigned)v.bits << 16); }

// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every half is exactly
// representable in f32, so this is exact, subnormals, infinities and NaN included.
__device__ __forceinline__ float to_f32(f16_bits v) {
    unsigned sign = (unsigned)(v.bits & 0x8000u) << 16;
    unsigned exponent = (v.bits >> 10) & 0x1fu;
    unsigned mantissa = v.bits & 0x3ffu;
    if (exponent == 0) {
        // Zero or subnormal: mantissa · 2^-24, exact in f32.
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
    return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

__device__ __forceinline__ float neg_infinity() { return __uint_as_float(0xff800000u); }

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = GLIMPSE_WARP / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(GLIMPSE_FULL_MASK, v, offset);
    return v;
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int offset = GLIMPSE_WARP / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(GLIMPSE_FULL_MASK, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = GLIMPSE_WARP / 2; offset > 0; offset /= 2)
        v = fmaxf(v, __shfl_xor_sync(GLIMPSE_FULL_MASK, v, offset));
    return v;
}

// Block-wide sum or max, returned to every thread. `partials` is shared scratch of one
// float per warp. Each thread folds the per-warp partials itself in warp order, so all
// threads get the same bits without a second broadcast step. The trailing barrier lets
// the caller reuse `partials` right away.
__device__ __forceinline__ float block_sum(float v, float* partials) {
    v = warp_sum(v);
    if (threadIdx.x % GLIMPSE_WARP == 0) partials[threadIdx.x / GLIMPSE_WARP] = v;
    __syncthreads();
    float total = 0.0f;
    for (unsigned w = 0; w < blockDim.x / GLIMPSE_WARP; ++w) total += partials[w];
    __syncthreads();
    return total;
}

__device__ __forceinline__ float block_max(float v, float* partials) {
    v = warp_max(v);
    if (threadIdx.x % GLIMPSE_WARP == 0) partials[threadIdx.x / GLIMPSE_WARP] = v;
    __syncthreads();
    float best = neg_infinity();
    for (unsigned w = 0; w < blockDim.x / GLIMPSE_WARP; ++w) best = fmaxf(best, partials[w]);
    __syncthreads();
    return best;
}

// The launch's dynamic shared memory (size from launch.rs), 16-byte aligned.
#ifndef GLIMPSE_CUDA_EMU
__device__ __forceinline__ float* dynamic_shared_floats() {
    extern __shared__ float4 glimpse_dynamic_shared[];
    return reinterpret_cast<float*>(glimpse_dynamic_shared);
}
#endif

#endif  // GLIMPSE_COMMON_CUH
