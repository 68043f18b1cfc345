//! Argument values whose meaning is fixed in the kernel sources.

use crate::backend::MergeSource;
use crate::model::config::Activation;

/// The `act` argument of `activate` / `gated_activate` (the `ACT_*` codes of
/// kernels/activations.cu).
pub fn activation_code(act: Activation) -> i32 {
    match act {
        Activation::Gelu => 0,
        Activation::GeluTanh => 1,
        Activation::QuickGelu => 2,
        Activation::Silu => 3,
    }
}

/// A `window_merge` source (kernels/mustdrop.cu) that copies row `row` of the hidden states.
pub fn merge_copy_row(row: usize) -> i32 {
    i32::try_from(row).expect("window_merge: row index beyond i32")
}

/// A `window_merge` source that writes the mean of window `window`'s members.
pub fn merge_window_mean(window: usize) -> i32 {
    -1 - i32::try_from(window).expect("window_merge: window index beyond i32")
}

/// A `window_merge` source as the kernel reads it.
pub fn merge_source(source: MergeSource) -> i32 {
    match source {
        MergeSource::Row(row) => merge_copy_row(row),
        MergeSource::Window(window) => merge_window_mean(window),
    }
}
