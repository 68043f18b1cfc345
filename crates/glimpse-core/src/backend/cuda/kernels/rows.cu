// Row movement: embedding lookup from a weight table (widened to f32), gathering rows of
// an activation matrix, and compacting a matrix in place (hidden states and caches after
// tokens are dropped).
#include "common.cuh"

// out[r] = table[ids[r]], one block per output row. An id past the table writes NaN so a
// bad id shows in the result instead of reading out of bounds; the host checks ids first.
template <typename W>
__device__ void gather_row(const W* __restrict__ table, const unsigned* __restrict__ ids, float* __restrict__ out,
                           int cols, unsigned table_rows) {
    unsigned id = ids[blockIdx.x];
    float* out_row = out + (long long)blockIdx.x * cols;
    if (id >= table_rows) {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) out_row[c] = __uint_as_float(0x7fc00000u);
        return;
    }
    const W* row = table + (long long)id * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out_row[c] = to_f32(row[c]);
}

extern "C" __global__ void gather_rows_f32(const float* table, const unsigned* ids, float* out, int cols,
                                           unsigned table_rows) {
    gather_row(table, ids, out, cols, table_rows);
}
extern "C" __global__ void gather_rows_f16(const f16_bits* table, const unsigned* ids, float* out, int cols,
                                           unsigned table_rows) {
    gather_row(table, ids, out, cols, table_rows);
}
extern "C" __global__ void gather_rows_bf16(const bf16_bits* table, const unsigned* ids, float* out, int cols,
                                            unsigned table_rows) {
    gather_row(table, ids, out, cols, table_rows);
}

// out[r] = src[rows[r]] for activations (f32), one block per output row.
extern "C" __global__ void select_rows(const float* src, const unsigned* rows, float* out, int cols) {
    const float* row = src + (long long)rows[blockIdx.x] * cols;
    float* out_row = out + (long long)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out_row[c] = row[c];
}

// In place: row r becomes row rows[r], for strictly ascending rows (so rows[r] >= r).
// Different rows cannot run in parallel (a later row's source may be an earlier row's
// destination), but columns can: each thread owns columns and walks the rows in order,
// so every source element is read before its own thread overwrites it. No barriers.
extern "C" __global__ void retain_rows(float* x, const unsigned* rows, int n_rows, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    for (int r = 0; r < n_rows; ++r) {
        unsigned src = rows[r];
        if (src != (unsigned)r) x[(long long)r * cols + c] = x[(long long)src * cols + c];
    }
}
