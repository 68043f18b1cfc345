//! What the language model's rows stand for while tokens are being removed: each row's
//! RoPE position, its identity, and for visual rows which image token it is.

use crate::backend::Backend;

/// The patches one visual token stands for (raster indices into its image's patch grid):
/// one patch, a merged window, or a recycled cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionToken {
    pub patches: Vec<u32>,
}

/// One image after the vision tower and stage 1: projected embeddings, one row per token.
pub struct EncodedImage<B: Backend> {
    pub embeddings: B::Tensor,
    pub tokens: Vec<VisionToken>,
    /// Each token's position within the image's slot of the prompt (its first patch).
    pub offsets: Vec<u32>,
    /// Tokens that later stages must never drop (MustDrop's key set), ascending.
    pub keys: Vec<u32>,
    /// Patches per side of the grid the tokens refer to.
    pub grid: usize,
    /// Stage-1 merge similarity of every window, when a merge ran (for reports and tests).
    pub window_similarity: Vec<f32>,
    /// Tokens the image takes in the unreduced prompt (its slot, whatever stage 1 left).
    pub slot_len: usize,
}

/// Which image token a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionRef {
    pub image: u32,
    /// Index into that image's token list (recycled tokens are appended to it).
    pub token: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// RoPE position the row's query and key are rotated with.
    pub position: u32,
    /// Stable identity of the token, used to find its cached keys/values: the row's index
    /// in the unreduced prompt (a visual token: the slot of its first patch), decode token
    /// `t` has `unreduced prompt length + t`, recycled rows count down from `u32::MAX`.
    pub origin: u32,
    pub vision: Option<VisionRef>,
}

/// The rows currently flowing through the language model, in order.
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    pub rows: Vec<Row>,
}

impl Sequence {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn positions(&self) -> Vec<u32> {
        self.rows.iter().map(|r| r.position).collect()
    }

    pub fn origins(&self) -> Vec<u32> {
        self.rows.iter().map(|r| r.origin).collect()
    }

    /// Rows holding tokens of `image`, in order.
    pub fn vision_rows(&self, image: u32) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.rows[i].vision.is_some_and(|v| v.image == image))
            .collect()
    }

    pub fn vision_count(&self) -> usize {
        self.rows.iter().filter(|r| r.vision.is_some()).count()
    }

    /// Every text row after the first visual row: the text that asks about the image(s),
    /// whose attention the text-guided filters read.
    pub fn text_after_images(&self) -> Vec<usize> {
        let Some(first) = self.rows.iter().position(|r| r.vision.is_some()) else {
            return Vec::new();
        };
        (first..self.rows.len())
            .filter(|&i| self.rows[i].vision.is_none())
            .collect()
    }

    /// Renumbers positions 0..n (the reference codes' compacted positions).
    pub fn compact_positions(&mut self) {
        for (i, row) in self.rows.iter_mut().enumerate() {
            row.position = i as u32;
        }
    }
}

/// Rows kept by a filter: every text row plus the chosen visual rows, ascending.
pub fn keep_text_and(seq: &Sequence, vision_kept: &[usize]) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..seq.len()).filter(|&i| seq.rows[i].vision.is_none()).collect();
    keep.extend_from_slice(vision_kept);
    keep.sort_unstable();
    keep.dedup();
    keep
}
