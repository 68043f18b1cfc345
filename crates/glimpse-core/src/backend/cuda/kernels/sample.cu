// Sampling one token from a row of logits on the device, so that only its id crosses to the
// host: temperature, top-k, top-p and the draw, with the rules of the CPU sampler
// (generate/sampler.rs `draw`), which this kernel must pick the same token as.
//
// No sort: a kept set is always "every token above a cut", where the cut is one (logit, id)
// pair and ties at the cut's logit are kept from the lowest id up. The cut's logit is found
// by bisection over the bits of an order-preserving integer key, counting (top-k) or
// weighing (top-p) the tokens at or above each trial key; ties at the cut are resolved by a
// scan in id order. The draw then walks the kept tokens in id order, as the CPU sampler does.
//
// One block for the row, each thread owning a contiguous run of ids so that scans over
// threads are scans in id order. Block-wide sums are folded by thread 0 in thread order, in
// double precision, so every thread sees the same bits.
#include "common.cuh"

// The most threads a launch may use (launch.rs `sample_row` holds to it).
#define SAMPLE_MAX_THREADS 256

// NaN logits count as −∞.
__device__ __forceinline__ float read_logit(const float* row, int c) {
    float v = row[c];
    return v == v ? v : neg_infinity();
}

// An unsigned key with the order of the float: larger float, larger key.
__device__ __forceinline__ unsigned order_key(float v) {
    unsigned bits = __float_as_uint(v);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// A token's unnormalised probability, as the CPU sampler computes it.
__device__ __forceinline__ float token_weight(float logit, float max_logit, float temperature) {
    return expf((logit - max_logit) / temperature);
}

// Kept tokens: logits above the cut key, and at the cut key the ids up to `cut_id`.
__device__ __forceinline__ bool kept(unsigned key, int c, unsigned cut_key, int cut_id) {
    return key > cut_key || (key == cut_key && c <= cut_id);
}

// Sums every thread's `own` in thread order: returns the sum over the threads before this
// one (an exclusive scan in id order) and sets `total` to the whole block's, the same bits in
// every thread.
__device__ double scan_threads(double own, double* scan, double* total) {
    scan[threadIdx.x] = own;
    __syncthreads();
    if (threadIdx.x == 0) {
        double running = 0.0;
        for (unsigned t = 0; t < blockDim.x; ++t) {
            double value = scan[t];
            scan[t] = running;
            running += value;
        }
        scan[blockDim.x] = running;
    }
    __syncthreads();
    double before = scan[threadIdx.x];
    *total = scan[blockDim.x];
    __syncthreads();
    return before;
}

__device__ double block_total(double own, double* scan) {
    double total;
    scan_threads(own, scan, &total);
    return total;
}

__device__ double sum_before(double own, double* scan) {
    double total;
    return scan_threads(own, scan, &total);
}

// The lowest of the threads' `id` (`none` where a thread found nothing).
__device__ int lowest_id(int id, int* ids) {
    ids[threadIdx.x] = id;
    __syncthreads();
    if (threadIdx.x == 0) {
        int best = ids[0];
        for (unsigned t = 1; t < blockDim.x; ++t) best = imin(best, ids[t]);
        ids[0] = best;
    }
    __syncthreads();
    int best = ids[0];
    __syncthreads();
    return best;
}

extern "C" __global__ void sample_row(const float* logits, unsigned* out, const double* uniform, int cols,
                                      float temperature, int top_k, float top_p) {
    __shared__ double scan[SAMPLE_MAX_THREADS + 1];
    __shared__ int ids[SAMPLE_MAX_THREADS];
    __shared__ float partials[GLIMPSE_WARP];
    const int chunk = (cols + (int)blockDim.x - 1) / (int)blockDim.x;
    const int begin = imin((int)threadIdx.x * chunk, cols);
    const int end = imin(begin + chunk, cols);

    float max_logit = neg_infinity();
    for (int c = begin; c < end; ++c) max_logit = fmaxf(max_logit, read_logit(logits, c));
    max_logit = block_max(max_logit, partials);
    if (!(max_logit > neg_infinity() && max_logit < -neg_infinity())) {
        // Every token impossible, or one infinitely likely: the greedy choice (the lowest
        // id holding the largest logit; 0 when nothing is above −∞).
        int first = cols;
        for (int c = begin; c < end && first == cols; ++c)
            if (read_logit(logits, c) == max_logit && max_logit > neg_infinity()) first = c;
        first = lowest_id(first, ids);
        if (threadIdx.x == 0) *out = first < cols ? (unsigned)first : 0u;
        return;
    }

    // Top-k: the k-th largest logit's key, then among the logits equal to it the lowest ids
    // that make up k. Without top-k every token is kept (every key is above 0).
    unsigned cut_key = 0;
    int cut_id = cols;
    if (top_k > 0 && top_k < cols) {
        for (int bit = 31; bit >= 0; --bit) {
            unsigned trial = cut_key | (1u << bit);
            double count = 0.0;
            for (int c = begin; c < end; ++c) count += order_key(read_logit(logits, c)) >= trial ? 1.0 : 0.0;
            if (block_total(count, scan) >= (double)top_k) cut_key = trial;
        }
        double above = 0.0, ties = 0.0;
        for (int c = begin; c < end; ++c) {
            unsigned key = order_key(read_logit(logits, c));
            above += key > cut_key ? 1.0 : 0.0;
            ties += key == cut_key ? 1.0 : 0.0;
        }
        double needed = (double)top_k - block_total(above, scan);
        double tied_before = sum_before(ties, scan);
        int found = cols;
        for (int c = begin; c < end; ++c) {
            if (order_key(read_logit(logits, c)) != cut_key) continue;
            tied_before += 1.0;
            if (tied_before == needed) {
                found = c;
                break;
            }
        }
        cut_id = lowest_id(found, ids);
    }

    // Weights of the kept tokens, as the CPU sampler computes them.
    double kept_weight = 0.0;
    for (int c = begin; c < end; ++c) {
        float logit = read_logit(logits, c);
        if (kept(order_key(logit), c, cut_key, cut_id)) kept_weight += (double)token_weight(logit, max_logit, temperature);
    }
    double total = block_total(kept_weight, scan);

    // Top-p: the largest key whose kept tokens at or above it weigh at least top_p of the
    // total, then at that key the ids, lowest first, until the weight is reached.
    unsigned nucleus_key = 0;
    int nucleus_id = cols;
    if (top_p < 1.0f) {
        const double goal = (double)top_p * total;
        for (int bit = 31; bit >= 0; --bit) {
            unsigned trial = nucleus_key | (1u << bit);
            double mass = 0.0;
            for (int c = begin; c < end; ++c) {
                float logit = read_logit(logits, c);
                unsigned key = order_key(logit);
                if (key >= trial && kept(key, c, cut_key, cut_id))
                    mass += (double)token_weight(logit, max_logit, temperature);
            }
            if (block_total(mass, scan) >= goal) nucleus_key = trial;
        }
        double above = 0.0, ties = 0.0;
        for (int c = begin; c < end; ++c) {
            float logit = read_logit(logits, c);
            unsigned key = order_key(logit);
            if (!kept(key, c, cut_key, cut_id)) continue;
            double weight = (double)token_weight(logit, max_logit, temperature);
            if (key > nucleus_key) above += weight;
            if (key == nucleus_key) ties += weight;
        }
        double reached = block_total(above, scan) + sum_before(ties, scan);
        int found = cols;
        int last_tie = -1;
        for (int c = begin; c < end; ++c) {
            float logit = read_logit(logits, c);
            unsigned key = order_key(logit);
            if (key != nucleus_key || !kept(key, c, cut_key, cut_id)) continue;
            last_tie = c;
            reached += (double)token_weight(logit, max_logit, temperature);
            if (reached >= goal) {
                found = c;
                break;
            }
        }
        nucleus_id = lowest_id(found, ids);
        if (nucleus_id == cols) {
            // Rounding kept the goal out of reach: every tie stays.
            nucleus_id = -lowest_id(-last_tie, ids);
        }
    }

    // The draw: the first token kept by both cuts, in id order, at which the running weight
    // passes u times their total weight.
    double own = 0.0;
    for (int c = begin; c < end; ++c) {
        float logit = read_logit(logits, c);
        unsigned key = order_key(logit);
        if (kept(key, c, cut_key, cut_id) && kept(key, c, nucleus_key, nucleus_id))
            own += (double)token_weight(logit, max_logit, temperature);
    }
    double running = scan_threads(own, scan, &total);
    const double target = *uniform * total;
    int chosen = cols;
    int last_weighted = -1;
    for (int c = begin; c < end; ++c) {
        float logit = read_logit(logits, c);
        unsigned key = order_key(logit);
        if (!kept(key, c, cut_key, cut_id) || !kept(key, c, nucleus_key, nucleus_id)) continue;
        float weight = token_weight(logit, max_logit, temperature);
        if (weight > 0.0f) last_weighted = c;
        double before = running;
        running += (double)weight;
        if (before <= target && target < running) {
            chosen = c;
            break;
        }
    }
    chosen = lowest_id(chosen, ids);
    if (chosen == cols) {
        // Rounding left the target a hair above the last sum: the last token with weight.
        chosen = -lowest_id(-last_weighted, ids);
    }
    if (threadIdx.x == 0) *out = (unsigned)chosen;
}

// Hugging Face's repetition penalty on one row of logits, into `out` (generate/sampler.rs
// `penalize_repeats`, whose f32 operations these are): a token marked in `seen` (nonzero)
// has a positive logit divided by `penalty` and any other multiplied by it; the rest are
// copied. Grid-stride: any grid covers the row.
extern "C" __global__ void penalize_repeats(const float* logits, const float* seen, float* out, int cols,
                                            float penalty) {
    int stride = gridDim.x * blockDim.x;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
        float x = logits[c];
        out[c] = seen[c] != 0.0f ? (x > 0.0f ? x / penalty : x * penalty) : x;
    }
}
