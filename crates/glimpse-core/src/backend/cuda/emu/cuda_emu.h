// Just enough CUDA for our kernels to compile as C++ and run on the CPU, so that every
// kernel is executed and checked in CI, where there is no GPU.
//
// Execution model (emu_runtime.cpp): the blocks of a launch run one after another; the
// threads of a block run as cooperative fibers on the launching OS thread. A fiber runs
// until it reaches a synchronisation point (__syncthreads, __syncwarp, a shuffle), then
// the next fiber runs; when every thread of a warp has reached its warp operation, or
// every thread of the block its barrier, they are released together. The run order of
// the fibers flips direction at every such round (and odd blocks start backwards), so a
// kernel that reads shared memory written by another thread without a barrier in between
// reads stale data in one of the two orders, and the comparison against the CPU backend
// fails; dynamic shared memory starts as NaN for the same reason. A barrier or warp
// operation that not every thread reaches is reported as an error, as are shuffles from
// partial warps, instead of hanging.
//
// __shared__ variables become thread_local statics: one copy per launching OS thread,
// which is all a block needs since the block's fibers share that thread and blocks run
// one at a time, while tests launching on other threads keep their own copies. Unlike
// dynamic shared memory they are not reset between blocks, so a kernel that reads a
// static __shared__ array before writing it is not caught: kernels write every element
// of theirs before a barrier and a read.
#ifndef GLIMPSE_CUDA_EMU_H
#define GLIMPSE_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define GLIMPSE_CUDA_EMU 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local

struct dim3 {
    unsigned x, y, z;
};

namespace emu {

const dim3& thread_index();
const dim3& block_index();
const dim3& block_dim();
const dim3& grid_dim();
float* dynamic_shared();
void sync_threads();
// Exchanges `value` within the calling thread's warp and returns the value offered by
// lane `source` (or the caller's own when `source` is outside the warp). Lanes taking no
// value (__syncwarp) pass source = own lane.
std::uint64_t warp_exchange(unsigned mask, std::uint64_t value, int source);
int lane();

template <typename T>
T exchange_as(unsigned mask, T value, int source) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= sizeof(std::uint64_t),
                  "shuffles move 4- and 8-byte values");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = warp_exchange(mask, bits, source);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

// One kernel of the registry: its name, its address, and a caller that unpacks a CUDA
// style argument array (one pointer per parameter) into a typed call.
struct KernelEntry {
    const char* name;
    void (*kernel)();
    void (*invoke)(void (*kernel)(), void** args);
};

template <typename... A, std::size_t... I>
void invoke_unpacked(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
void invoke(void (*kernel)(), void** args) {
    invoke_unpacked(reinterpret_cast<void (*)(A...)>(kernel), args, std::index_sequence_for<A...>{});
}

template <typename... A>
KernelEntry entry(const char* name, void (*kernel)(A...)) {
    return KernelEntry{name, reinterpret_cast<void (*)()>(kernel), &invoke<A...>};
}

}  // namespace emu

#define threadIdx (::emu::thread_index())
#define blockIdx (::emu::block_index())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())

inline void __syncthreads() { emu::sync_threads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_exchange(mask, 0, emu::lane()); }

template <typename T>
T __shfl_sync(unsigned mask, T value, int source, int width = 32) {
    (void)width;
    return emu::exchange_as(mask, value, source & 31);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    (void)width;
    return emu::exchange_as(mask, value, emu::lane() ^ lane_mask);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    (void)width;
    return emu::exchange_as(mask, value, emu::lane() + (int)delta);
}

inline float __uint_as_float(unsigned bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// Rounded separately, never fused into a multiply-add: exactly what the intrinsics promise.
inline float __fmul_rn(float a, float b) {
    volatile float product = a * b;
    return product;
}
inline float __fadd_rn(float a, float b) {
    volatile float sum = a + b;
    return sum;
}
inline float __expf(float x) { return std::exp(x); }

inline float* dynamic_shared_floats() { return emu::dynamic_shared(); }

#endif  // GLIMPSE_CUDA_EMU_H
