// Elementwise arithmetic around the matrix products: residual adds, bias rows, and the
// rounding of f32 activations to the 16-bit type of the weights they are multiplied with
// (cuBLAS multiplies two operands of one type; the products still accumulate in f32).
// Grid-stride loops: any grid covers any length.
#include "common.cuh"

// x += y, elementwise (same shapes).
extern "C" __global__ void add(float* x, const float* y, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] += y[i];
}

// x[r][c] += bias[c] for every row of a rows × cols matrix (n = rows · cols).
extern "C" __global__ void add_bias(float* x, const float* bias, long long n, int cols) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] += bias[i % cols];
}

// f32 → IEEE half, round to nearest even, as the `half` crate's f16::from_f32: overflow
// gives infinity, tiny values round into the subnormals or to signed zero, NaN stays NaN.
__device__ __forceinline__ unsigned short f32_to_f16_bits(float value) {
    unsigned x = __float_as_uint(value);
    unsigned sign = (x >> 16) & 0x8000u;
    unsigned exponent = x & 0x7f800000u;
    unsigned mantissa = x & 0x007fffffu;
    if (exponent == 0x7f800000u) {
        // Infinity keeps a zero mantissa; NaN gets the quiet bit and its top payload bits.
        unsigned nan_bit = mantissa == 0 ? 0u : 0x0200u;
        return (unsigned short)(sign | 0x7c00u | nan_bit | (mantissa >> 13));
    }
    int half_exponent = (int)(exponent >> 23) - 127 + 15;
    if (half_exponent >= 0x1f) return (unsigned short)(sign | 0x7c00u);
    if (half_exponent <= 0) {
        // Subnormal half (or zero): shift the mantissa with its implicit bit into place.
        if (14 - half_exponent > 24) return (unsigned short)sign;
        unsigned full = mantissa | 0x00800000u;
        unsigned shift = (unsigned)(14 - half_exponent);
        unsigned half_mantissa = full >> shift;
        unsigned round_bit = 1u << (shift - 1);
        // Round up when the dropped bits exceed half, or equal half with an odd result.
        if ((full & round_bit) != 0 && (full & (3u * round_bit - 1u)) != 0) ++half_mantissa;
        return (unsigned short)(sign | half_mantissa);
    }
    unsigned bits = sign | ((unsigned)half_exponent << 10) | (mantissa >> 13);
    const unsigned round_bit = 0x00001000u;
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    if ((mantissa & round_bit) != 0 && (mantissa & (3u * round_bit - 1u)) != 0) ++bits;
    return (unsigned short)bits;
}

// f32 → bfloat16 (the top half of the f32), round to nearest even, as the `half` crate's
// bf16::from_f32; NaN stays NaN.
__device__ __forceinline__ unsigned short f32_to_bf16_bits(float value) {
    unsigned x = __float_as_uint(value);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x0040u);
    const unsigned round_bit = 0x00008000u;
    unsigned bits = x >> 16;
    if ((x & round_bit) != 0 && (x & (3u * round_bit - 1u)) != 0) ++bits;
    return (unsigned short)bits;
}

extern "C" __global__ void round_to_f16(const float* x, f16_bits* out, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i].bits = f32_to_f16_bits(x[i]);
}

extern "C" __global__ void round_to_bf16(const float* x, bf16_bits* out, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i].bits = f32_to_bf16_bits(x[i]);
}
