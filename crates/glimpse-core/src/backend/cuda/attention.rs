//! Attention launches: the fused kernels of the main path (tiled over queries for prefill,
//! split over keys for decode) and the probabilities side pass of the token filters.

use super::device::Device;
use super::kernels::{self, Args};
use super::launch;
use super::ops::Workspace;
use super::tensor::GpuTensor;
use crate::backend::AttentionParams;
use crate::error::Result;

/// Writes `softmax(q·kᵀ·scale)·v` per head into `out` (already `q.rows × q.cols`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention<D: Device>(
    device: &D,
    work: &mut Workspace<D>,
    q: &GpuTensor<D>,
    k: &GpuTensor<D>,
    v: &GpuTensor<D>,
    n_keys: usize,
    p: AttentionParams,
    out: &GpuTensor<D>,
) -> Result<()> {
    let n_queries = q.rows;
    if n_queries == 0 {
        return Ok(());
    }
    let shape = |args: Args| {
        args.i32(n_queries)
            .i32(n_keys)
            .i32(p.n_heads)
            .i32(p.n_kv_heads)
            .i32(p.head_dim)
            .i32(usize::from(p.causal))
            .f32(p.scale)
    };
    let (q, k, v, out) = (
        q.address(device),
        k.address(device),
        v.address(device),
        out.address(device),
    );
    if !launch::splits_keys(n_queries) {
        let args = shape(Args::new(kernels::ATTENTION_PREFILL).ptr(q).ptr(k).ptr(v).ptr(out));
        return args.launch(device, launch::attention_prefill(n_queries, &p));
    }
    let plan = launch::attention_decode(n_queries, n_keys, &p, device.sm_count());
    let part_out = work.partial_out.reserve(device, plan.partial_out_floats * 4)?;
    let part_max = work.partial_max.reserve(device, plan.partial_rows * 4)?;
    let part_sum = work.partial_sum.reserve(device, plan.partial_rows * 4)?;
    let split = Args::new(kernels::ATTENTION_DECODE_SPLIT)
        .ptr(q)
        .ptr(k)
        .ptr(v)
        .ptr(part_out)
        .ptr(part_max)
        .ptr(part_sum);
    shape(split).i32(plan.keys_per_split).launch(device, plan.split)?;
    Args::new(kernels::ATTENTION_DECODE_COMBINE)
        .ptr(part_out)
        .ptr(part_max)
        .ptr(part_sum)
        .ptr(out)
        .i32(p.n_heads)
        .i32(p.head_dim)
        .i32(plan.n_splits)
        .launch(device, plan.combine)
}

/// Head-averaged probabilities of each row of `q` over the first `visible[row]` of
/// `n_keys` keys, read back into `out` (`q.rows × n_keys`, already sized).
#[allow(clippy::too_many_arguments)]
pub(crate) fn probabilities<D: Device>(
    device: &D,
    work: &mut Workspace<D>,
    q: &GpuTensor<D>,
    k: &GpuTensor<D>,
    n_keys: usize,
    visible: &[usize],
    p: AttentionParams,
    out: &mut [f32],
) -> Result<()> {
    if q.rows == 0 || n_keys == 0 {
        return Ok(());
    }
    let result = probabilities_on_device(device, work, q, k, n_keys, visible, p)?;
    device.read(result, bytemuck::cast_slice_mut(out))
}

/// [`probabilities`] left on the device: the address of the `q.rows × n_keys` result in
/// the workspace (valid until the next op that uses `probs_out`).
pub(crate) fn probabilities_on_device<D: Device>(
    device: &D,
    work: &mut Workspace<D>,
    q: &GpuTensor<D>,
    k: &GpuTensor<D>,
    n_keys: usize,
    visible: &[usize],
    p: AttentionParams,
) -> Result<u64> {
    let rows = q.rows;
    let plan = launch::attention_probs(rows, n_keys, &p);
    let visible: Vec<u32> = visible
        .iter()
        .map(|&v| u32::try_from(v.min(n_keys)).expect("key count beyond u32"))
        .collect();
    let visible = work.indices.upload(device, bytemuck::cast_slice(&visible))?;
    let scratch = work.probs_heads.reserve(device, plan.scratch_floats * 4)?;
    let result = work.probs_out.reserve(device, rows * n_keys * 4)?;
    Args::new(kernels::ATTENTION_PROBS_HEADS)
        .ptr(q.address(device))
        .ptr(k.address(device))
        .ptr(visible)
        .ptr(scratch)
        .i32(n_keys)
        .i32(p.n_heads)
        .i32(p.n_kv_heads)
        .i32(p.head_dim)
        .f32(p.scale)
        .launch(device, plan.heads)?;
    Args::new(kernels::ATTENTION_PROBS_REDUCE)
        .ptr(scratch)
        .ptr(result)
        .i32(rows)
        .i32(n_keys)
        .i32(p.n_heads)
        .launch(device, plan.reduce)?;
    Ok(result)
}
