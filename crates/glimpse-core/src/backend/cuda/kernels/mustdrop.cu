// MustDrop stage 1 on the device: similarity of each 3×3 window of patches, and the
// merged hidden states. Which windows merge, and in what order the rows come out, is
// decided on the host from the similarities, as reduce/mustdrop/encoder.rs does.
#include "common.cuh"

#define WINDOW 3
#define WINDOW_MEMBERS (WINDOW * WINDOW)
// Unordered member pairs (a ≤ c), the diagonal included for the norms.
#define WINDOW_PAIRS (WINDOW_MEMBERS * (WINDOW_MEMBERS + 1) / 2)

// Patch index of member t (raster order) of window w on a side × side patch grid.
__device__ __forceinline__ int window_member(int w, int t, int side) {
    int per_side = side / WINDOW;
    int gy = w / per_side, gx = w % per_side;
    return (gy * WINDOW + t / WINDOW) * side + gx * WINDOW + t % WINDOW;
}

// Mean cosine similarity over the ordered pairs of distinct members of each window, in
// f64 as the host code: the threshold test `similarity >= tau` must decide the same way.
// Block = one window; warps take pairs of members, lanes split the dims; the Gram matrix
// lands in shared memory and thread 0 forms the mean. `patches` is the first patch row
// (after CLS). A zero row gives NaN, which never passes the threshold, as on the host.
extern "C" __global__ void window_similarity(const float* __restrict__ patches, double* __restrict__ out, int side,
                                             int dim) {
    __shared__ double gram[WINDOW_MEMBERS][WINDOW_MEMBERS];
    const int w = blockIdx.x;
    const int warp = threadIdx.x / GLIMPSE_WARP;
    const int lane = threadIdx.x % GLIMPSE_WARP;
    for (int pair = warp; pair < WINDOW_PAIRS; pair += blockDim.x / GLIMPSE_WARP) {
        // Pair number → (a, c) with a ≤ c, row by row of the upper triangle.
        int a = 0, rest = pair;
        while (rest >= WINDOW_MEMBERS - a) {
            rest -= WINDOW_MEMBERS - a;
            ++a;
        }
        int c = a + rest;
        const float* x = patches + (long long)window_member(w, a, side) * dim;
        const float* y = patches + (long long)window_member(w, c, side) * dim;
        double partial = 0.0;
        for (int d = lane; d < dim; d += GLIMPSE_WARP) partial += (double)x[d] * (double)y[d];
        double total = warp_sum(partial);
        if (lane == 0) {
            gram[a][c] = total;
            gram[c][a] = total;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0.0;
        for (int a = 0; a < WINDOW_MEMBERS; ++a)
            for (int c = a + 1; c < WINDOW_MEMBERS; ++c) sum += gram[a][c] / (sqrt(gram[a][a]) * sqrt(gram[c][c]));
        // Each unordered pair stands for two ordered ones.
        out[w] = 2.0 * sum / (double)(WINDOW_MEMBERS * (WINDOW_MEMBERS - 1));
    }
}

// Builds the merged hidden states, one block per output row: sources[r] >= 0 copies row
// sources[r] of `hidden`; sources[r] = −(w + 1) writes the mean of window w's members,
// whose patch p is row first_patch_row + p. The sum runs over the members in raster order
// and is then divided by 9, as the host code does, so the result is bit-identical.
extern "C" __global__ void window_merge(const float* __restrict__ hidden, float* __restrict__ out,
                                        const int* __restrict__ sources, int dim, int side, int first_patch_row) {
    const int source = sources[blockIdx.x];
    float* out_row = out + (long long)blockIdx.x * dim;
    if (source >= 0) {
        const float* row = hidden + (long long)source * dim;
        for (int d = threadIdx.x; d < dim; d += blockDim.x) out_row[d] = row[d];
        return;
    }
    const int w = -source - 1;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        float sum = 0.0f;
        for (int t = 0; t < WINDOW_MEMBERS; ++t)
            sum += hidden[(long long)(first_patch_row + window_member(w, t, side)) * dim + d];
        out_row[d] = sum / (float)WINDOW_MEMBERS;
    }
}

// MustDrop stage 3 while decoding (reduce/mustdrop/cache.rs): the attention every cached
// row has received from the generated tokens stays on the device, one total per row.

// totals[j] += weight · probs[j] for the rows it already had (j < old_rows); rows the step
// added start from weight · probs[j]. The product is rounded before the sum (no fused
// multiply-add), as the CPU backend computes it. Grid-stride.
extern "C" __global__ void accumulate_attention(float* __restrict__ totals, const float* __restrict__ probs, int rows,
                                                int old_rows, float weight) {
    const int stride = gridDim.x * blockDim.x;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < rows; j += stride) {
        const float add = __fmul_rn(weight, probs[j]);
        totals[j] = j < old_rows ? __fadd_rn(totals[j], add) : add;
    }
}

// The threads of `count_evictable` (launch.rs `count_evictable` holds to it).
#define EVICT_THREADS 256

// Whether any row may be evicted this step: over the rows `role` marks (1: a visual token
// that may go, 2: a key token that stays; rows from `role_rows` on are text), the mean of
// their totals in f64, and how many role-1 rows fall below share · mean. One block; each
// thread sums its rows, thread 0 folds the threads in order. The count is written as a
// float to *count, where it is read back with the next token id.
extern "C" __global__ void count_evictable(const float* __restrict__ totals, const float* __restrict__ role,
                                           int role_rows, float share, float* __restrict__ count) {
    __shared__ double sums[EVICT_THREADS];
    __shared__ int members[EVICT_THREADS];
    __shared__ double threshold;
    const int t = threadIdx.x;
    double sum = 0.0;
    int n = 0;
    for (int j = t; j < role_rows; j += blockDim.x) {
        if (role[j] != 0.0f) {
            sum += (double)totals[j];
            ++n;
        }
    }
    sums[t] = sum;
    members[t] = n;
    __syncthreads();
    if (t == 0) {
        double total = 0.0;
        int all = 0;
        for (int i = 0; i < (int)blockDim.x; ++i) {
            total += sums[i];
            all += members[i];
        }
        threshold = all > 0 ? (double)share * (total / (double)all) : 0.0;
    }
    __syncthreads();
    int below = 0;
    for (int j = t; j < role_rows; j += blockDim.x) {
        if (role[j] == 1.0f && (double)totals[j] < threshold) ++below;
    }
    members[t] = below;
    __syncthreads();
    if (t == 0) {
        int all = 0;
        for (int i = 0; i < (int)blockDim.x; ++i) all += members[i];
        *count = (float)all;
    }
}
