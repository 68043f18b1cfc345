//! Launch shapes of every kernel in `kernels/`: grid, block and dynamic shared memory as
//! pure functions of the tensor shapes, used by the device backend and by the emulation
//! tests alike, so the tests exercise exactly the launches the GPU gets.
//!
//! Constants named after a kernel mirror that kernel's `#define`s; the emulation tests
//! fail if the two disagree (a wrong tile size leaves rows unwritten).

use crate::backend::AttentionParams;
use crate::error::{Error, Result};

pub const WARP: u32 = 32;
/// Threads of a one-block-per-row kernel, at most: enough to stream a 4096-wide row in a
/// few coalesced passes while many rows keep every SM busy.
const ROW_MAX_THREADS: u32 = 256;
const ELEMENTWISE_THREADS: u32 = 256;
/// Grid-stride kernels stop growing the grid here: 1024 blocks of 256 threads fill any
/// current GPU (an H100 holds 132 SMs × 8 such blocks); more only adds scheduling.
const ELEMENTWISE_MAX_BLOCKS: u32 = 1024;
/// The attention kernels keep a row's output in registers, 32 dims per lane chunk
/// (`*_MAX_DIM_CHUNKS` = 8 in the kernels).
pub const MAX_HEAD_DIM: usize = 256;
/// Dynamic shared memory a kernel may use without opting in through
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
pub const SHARED_BYTES_WITHOUT_OPT_IN: u32 = 48 * 1024;

/// Keys per attention tile: one per lane.
const KEY_TILE: usize = WARP as usize;
/// attention_prefill.cu: PREFILL_WARPS warps of PREFILL_ROWS_PER_WARP query rows.
const PREFILL_WARPS: u32 = 4;
const PREFILL_ROWS: usize = 16;
/// attention_decode.cu: DECODE_WARPS warps take key tiles in turn.
const DECODE_WARPS: u32 = 4;
/// A decode split gives each warp at least one key tile.
const DECODE_MIN_KEYS_PER_SPLIT: usize = DECODE_WARPS as usize * KEY_TILE;
/// Decode splits aim at this many blocks per SM; the combine kernel reads every split of
/// a row, so more only adds work.
const DECODE_BLOCKS_PER_SM: usize = 2;
const DECODE_MAX_SPLITS: usize = 64;
/// Query rows up to which attention splits the keys (decode) rather than tiling the
/// queries (prefill): a prefill tile holds 16 rows, so a handful of rows would leave the
/// GPU idle while one block per row and key split fills it.
const DECODE_MAX_QUERIES: usize = 4;
const PROBS_THREADS: u32 = 256;
/// mustdrop.cu: 8 warps share a window's 45 member pairs.
const SIMILARITY_THREADS: u32 = 256;
const WINDOW: usize = 3;
const MAX_GRID_YZ: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

impl LaunchConfig {
    fn new(grid: [usize; 3], block: u32, shared_bytes: usize) -> Self {
        // CUDA's limits: 2³¹ − 1 blocks along x, 65535 along y and z.
        let limits = [i32::MAX as usize, MAX_GRID_YZ, MAX_GRID_YZ];
        for (axis, (&n, limit)) in grid.iter().zip(limits).enumerate() {
            assert!(n <= limit, "grid dimension {axis} of {n} blocks exceeds CUDA's {limit}");
        }
        let dim = |n: usize| n as u32;
        LaunchConfig {
            grid: [dim(grid[0]), dim(grid[1]), dim(grid[2])],
            block: [block, 1, 1],
            shared_bytes: u32::try_from(shared_bytes).expect("shared memory beyond u32"),
        }
    }

    /// A launch with no block (zero rows, say): the caller skips it, since CUDA rejects
    /// an empty grid.
    pub fn is_empty(&self) -> bool {
        self.grid.contains(&0)
    }
}

/// `n` rounded up to whole warps, between one warp and `max` threads.
fn warps_for(n: usize, max: u32) -> u32 {
    let rounded = n.div_ceil(WARP as usize).max(1) * WARP as usize;
    rounded.min(max as usize) as u32
}

/// One block per row, threads striding over the columns: rms_norm, layer_norm,
/// softmax_rows, gather_rows_*, select_rows, window_merge, argmax_rows.
pub fn per_row(rows: usize, cols: usize) -> LaunchConfig {
    LaunchConfig::new([rows, 1, 1], warps_for(cols, ROW_MAX_THREADS), 0)
}

/// The most threads `sample_row` may use: its per-thread scratch is sized for them
/// (`SAMPLE_MAX_THREADS` in kernels/sample.cu).
const SAMPLE_MAX_THREADS: u32 = 256;

/// `sample_row`: one block for the row, each thread owning a contiguous run of ids.
pub fn sample_row(cols: usize) -> LaunchConfig {
    LaunchConfig::new([1, 1, 1], warps_for(cols, ROW_MAX_THREADS.min(SAMPLE_MAX_THREADS)), 0)
}

/// The threads of `count_evictable` (`EVICT_THREADS` in kernels/mustdrop.cu).
const EVICT_THREADS: u32 = 256;

/// `count_evictable`: one block that folds every row.
pub fn count_evictable() -> LaunchConfig {
    LaunchConfig::new([1, 1, 1], EVICT_THREADS, 0)
}

/// `rope`: one block per row, one thread per (head, rotated pair).
pub fn rope(rows: usize, n_heads: usize, head_dim: usize) -> LaunchConfig {
    assert!(head_dim.is_multiple_of(2), "rope: odd head_dim {head_dim}");
    LaunchConfig::new([rows, 1, 1], warps_for(n_heads * head_dim / 2, ROW_MAX_THREADS), 0)
}

/// Grid-stride kernels over `n` elements: activate, gated_activate,
/// attention_probs_reduce, penalize_repeats, accumulate_attention.
pub fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n
        .div_ceil(ELEMENTWISE_THREADS as usize)
        .min(ELEMENTWISE_MAX_BLOCKS as usize);
    LaunchConfig::new([blocks, 1, 1], ELEMENTWISE_THREADS, 0)
}

/// `retain_rows`: one thread per column (it walks the rows in order).
pub fn retain_rows(cols: usize) -> LaunchConfig {
    let threads = warps_for(cols, ROW_MAX_THREADS);
    LaunchConfig::new([cols.div_ceil(threads as usize), 1, 1], threads, 0)
}

/// Refuses head sizes the attention kernels cannot hold; the backend calls it when a
/// model is loaded, so every later launch may assume it.
pub fn check_head_dim(head_dim: usize) -> Result<()> {
    if head_dim == 0 || head_dim > MAX_HEAD_DIM {
        return Err(Error::model(format!(
            "the CUDA backend supports attention heads of 1 to {MAX_HEAD_DIM} dims, this model's have {head_dim}"
        )));
    }
    Ok(())
}

fn check_attention(p: &AttentionParams) {
    assert!(
        (1..=MAX_HEAD_DIM).contains(&p.head_dim),
        "attention: head_dim {} (see check_head_dim)",
        p.head_dim
    );
    assert!(
        p.n_kv_heads > 0 && p.n_heads.is_multiple_of(p.n_kv_heads),
        "attention: {} heads over {} key/value heads",
        p.n_heads,
        p.n_kv_heads
    );
}

/// Whether `n_queries` rows attend through the split-key decode kernels rather than
/// attention_prefill.
pub fn splits_keys(n_queries: usize) -> bool {
    n_queries <= DECODE_MAX_QUERIES
}

/// `attention_prefill`: one block per (16 query rows, head). Above
/// [`SHARED_BYTES_WITHOUT_OPT_IN`] (head_dim > 128) the function must opt in to the
/// larger shared memory before launching.
pub fn attention_prefill(n_queries: usize, p: &AttentionParams) -> LaunchConfig {
    check_attention(p);
    let d = p.head_dim;
    let floats = PREFILL_ROWS * d + KEY_TILE * (d + 1) + KEY_TILE * d + PREFILL_ROWS * KEY_TILE;
    LaunchConfig::new(
        [n_queries.div_ceil(PREFILL_ROWS), p.n_heads, 1],
        PREFILL_WARPS * WARP,
        floats * 4,
    )
}

/// The two launches of split-key attention and the partial buffers between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePlan {
    /// `attention_decode_split`: blocks (split, head, query row).
    pub split: LaunchConfig,
    /// `attention_decode_combine`: blocks (head, query row).
    pub combine: LaunchConfig,
    pub n_splits: usize,
    pub keys_per_split: usize,
    /// Floats of `part_out`; `part_max` and `part_sum` hold `partial_rows` each.
    pub partial_out_floats: usize,
    pub partial_rows: usize,
}

/// Splits the `n_keys` keys so that `n_queries × n_heads × splits` blocks fill
/// `sm_count` SMs, each split a whole number of key tiles per warp.
pub fn attention_decode(n_queries: usize, n_keys: usize, p: &AttentionParams, sm_count: usize) -> DecodePlan {
    check_attention(p);
    assert!(n_keys > 0, "attention: no keys");
    let d = p.head_dim;
    let blocks_without_split = n_queries * p.n_heads;
    let wanted = (sm_count * DECODE_BLOCKS_PER_SM).div_ceil(blocks_without_split.max(1));
    let splits = wanted
        .clamp(1, DECODE_MAX_SPLITS)
        .min(n_keys.div_ceil(DECODE_MIN_KEYS_PER_SPLIT));
    let keys_per_split = n_keys.div_ceil(splits).next_multiple_of(DECODE_MIN_KEYS_PER_SPLIT);
    // Rounding up may leave the last split empty: drop it.
    let n_splits = n_keys.div_ceil(keys_per_split);
    let warps = DECODE_WARPS as usize;
    let shared_floats = (1 + warps) * d + warps * KEY_TILE * (WARP as usize + 2) + 2 * warps;
    let partial_rows = n_queries * p.n_heads * n_splits;
    DecodePlan {
        split: LaunchConfig::new([n_splits, p.n_heads, n_queries], DECODE_WARPS * WARP, shared_floats * 4),
        combine: LaunchConfig::new([p.n_heads, n_queries, 1], warps_for(d, ROW_MAX_THREADS), 0),
        n_splits,
        keys_per_split,
        partial_out_floats: partial_rows * d,
        partial_rows,
    }
}

/// The two launches of the attention-probabilities side pass and their scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbsPlan {
    /// `attention_probs_heads`: blocks (head, query row).
    pub heads: LaunchConfig,
    /// `attention_probs_reduce` over the `n_rows × n_keys` outputs.
    pub reduce: LaunchConfig,
    /// Floats of the per-head probabilities, `[row][head][key]`.
    pub scratch_floats: usize,
}

pub fn attention_probs(n_rows: usize, n_keys: usize, p: &AttentionParams) -> ProbsPlan {
    check_attention(p);
    ProbsPlan {
        heads: LaunchConfig::new([p.n_heads, n_rows, 1], PROBS_THREADS, 0),
        reduce: elementwise(n_rows * n_keys),
        scratch_floats: n_rows * p.n_heads * n_keys,
    }
}

/// `window_similarity`: one block per 3×3 window of a `side × side` patch grid.
pub fn window_similarity(side: usize) -> LaunchConfig {
    assert!(side.is_multiple_of(WINDOW), "window_similarity: grid side {side}");
    let per_side = side / WINDOW;
    LaunchConfig::new([per_side * per_side, 1, 1], SIMILARITY_THREADS, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> AttentionParams {
        AttentionParams {
            n_heads,
            n_kv_heads,
            head_dim,
            causal: true,
            scale: 1.0,
        }
    }

    #[test]
    fn row_kernels_use_whole_warps_up_to_the_cap() {
        assert_eq!(per_row(5, 1).block, [32, 1, 1]);
        assert_eq!(per_row(5, 33).block, [64, 1, 1]);
        assert_eq!(per_row(5, 4096).block, [256, 1, 1]);
        assert_eq!(per_row(5, 4096).grid, [5, 1, 1]);
        assert!(per_row(0, 8).is_empty());
        // 32 heads × 64 pairs = 2048 pairs, 256 threads.
        assert_eq!(rope(3, 32, 128).block, [256, 1, 1]);
        assert_eq!(rope(3, 2, 8).block, [32, 1, 1]);
        // A 32,000-token vocabulary: 256 threads of 125 ids each; never more threads
        // than the kernel has scratch for.
        assert_eq!(sample_row(32_000).block, [256, 1, 1]);
        assert_eq!(sample_row(32_000).grid, [1, 1, 1]);
        assert_eq!(sample_row(40).block, [64, 1, 1]);
        assert!(sample_row(1 << 20).block[0] <= SAMPLE_MAX_THREADS);
    }

    #[test]
    fn elementwise_grid_covers_the_length_then_strides() {
        assert_eq!(elementwise(1).grid, [1, 1, 1]);
        assert_eq!(elementwise(257).grid, [2, 1, 1]);
        assert_eq!(elementwise(256 * 1024).grid, [1024, 1, 1]);
        assert_eq!(elementwise(10_000_000).grid, [1024, 1, 1]);
        assert!(elementwise(0).is_empty());
        assert_eq!(retain_rows(300).grid, [2, 1, 1]);
    }

    /// Llama-7B heads (128 dims) fit the default 48 KiB; 256-dim heads need the opt-in.
    #[test]
    fn prefill_tiles_and_shared_memory() {
        let c = attention_prefill(100, &params(32, 32, 128));
        assert_eq!(c.grid, [7, 32, 1]);
        assert_eq!(c.block, [128, 1, 1]);
        assert_eq!(c.shared_bytes, (16 * 128 + 32 * 129 + 32 * 128 + 16 * 32) * 4);
        assert!(c.shared_bytes <= SHARED_BYTES_WITHOUT_OPT_IN);
        assert!(attention_prefill(100, &params(8, 8, 256)).shared_bytes > SHARED_BYTES_WITHOUT_OPT_IN);
    }

    #[test]
    fn decode_splits_fill_the_gpu_in_whole_tiles() {
        // One row, 32 heads, 4096 keys on 132 SMs: 264 blocks wanted → 9 splits of 456
        // keys, rounded to 512 → 8 splits.
        let d = attention_decode(1, 4096, &params(32, 8, 128), 132);
        assert_eq!((d.n_splits, d.keys_per_split), (8, 512));
        assert_eq!(d.split.grid, [8, 32, 1]);
        assert_eq!(d.combine.grid, [32, 1, 1]);
        assert_eq!(d.partial_rows, 32 * 8);
        assert_eq!(d.partial_out_floats, 32 * 8 * 128);
        assert!(d.split.shared_bytes <= SHARED_BYTES_WITHOUT_OPT_IN);
        // Few keys: never a split without a full tile per warp.
        let small = attention_decode(1, 130, &params(2, 1, 16), 132);
        assert_eq!((small.n_splits, small.keys_per_split), (2, 128));
        // Many heads already fill the GPU: no split.
        assert_eq!(attention_decode(4, 4096, &params(64, 8, 128), 100).n_splits, 1);
        // Very long caches stop at the split cap.
        assert_eq!(attention_decode(1, 1 << 20, &params(1, 1, 64), 132).n_splits, 64);
        for n_keys in [1, 127, 128, 129, 1000, 4097] {
            let d = attention_decode(1, n_keys, &params(4, 4, 64), 16);
            assert!(d.n_splits * d.keys_per_split >= n_keys);
            assert!((d.n_splits - 1) * d.keys_per_split < n_keys, "no empty split");
            assert!(d.keys_per_split.is_multiple_of(128));
        }
    }

    #[test]
    fn probs_scratch_holds_every_head() {
        let plan = attention_probs(3, 70, &params(4, 2, 16));
        assert_eq!(plan.heads.grid, [4, 3, 1]);
        assert_eq!(plan.scratch_floats, 3 * 4 * 70);
        assert_eq!(plan.reduce, elementwise(210));
    }

    #[test]
    #[should_panic(expected = "grid dimension 1 of 70000 blocks exceeds CUDA's 65535")]
    fn grid_limits_are_enforced() {
        attention_probs(70_000, 10, &params(1, 1, 8));
    }

    /// `count_evictable` folds every row in one block whose per-thread slots are sized by
    /// the kernel's `EVICT_THREADS`.
    #[test]
    fn eviction_count_is_one_block_of_the_kernels_threads() {
        let config = count_evictable();
        assert_eq!((config.grid, config.block), ([1, 1, 1], [EVICT_THREADS, 1, 1]));
        let source = include_str!("kernels/mustdrop.cu");
        assert!(source.contains(&format!("#define EVICT_THREADS {EVICT_THREADS}\n")));
    }

    #[test]
    fn similarity_one_block_per_window() {
        assert_eq!(window_similarity(24).grid, [64, 1, 1]);
    }

    #[test]
    fn head_dim_limit_is_a_model_error() {
        assert!(check_head_dim(128).is_ok());
        let e = check_head_dim(512).unwrap_err();
        assert!(e.message.contains("512"), "{}", e.message);
        assert!(splits_keys(1) && !splits_keys(16));
    }
}
