//! The three places a reduction method can act, as interfaces the model code calls
//! without knowing which method sits behind them.

use super::sequence::{EncodedImage, Row, Sequence, VisionToken};
use crate::backend::Backend;
use crate::error::Result;
use crate::generate::kv_cache::KvCache;

/// Stage 1, inside the vision tower, once per image.
pub trait EncoderReducer<B: Backend>: Send + Sync {
    /// Vision-tower layer after whose output `merge` runs, if the method merges.
    fn merge_after(&self) -> Option<usize>;
    /// Merges rows of one image's hidden states (`[1 + n, D]`, CLS first) in place and
    /// updates the tokens' patch lists to match; returns a score per merge candidate
    /// (reported, not used further).
    fn merge(&self, b: &B, grid: usize, hidden: &mut B::Tensor, tokens: &mut Vec<VisionToken>) -> Result<Vec<f32>>;
    /// Whether the method wants key tokens (the tower then computes the CLS attention row
    /// of its key layer, see `ClipVision`).
    fn wants_keys(&self) -> bool;
    /// Key tokens (indices into `tokens`, ascending) from the CLS row's head-averaged
    /// attention onto each token.
    fn keys(&self, cls_attention: &[f32]) -> Result<Vec<u32>>;
}

/// What a prefill filter sees right after a language-model layer has processed the
/// current rows.
pub struct FilterInput<'a, B: Backend> {
    pub b: &'a B,
    pub layer: usize,
    pub seq: &'a Sequence,
    /// The rows `query_rows` asked for.
    pub queries: &'a [usize],
    /// `queries.len() × seq.len()` head-averaged attention probabilities of those rows at
    /// this layer (causal: zero beyond the query's own row).
    pub attention: &'a [f32],
    /// The layer's output, one row per sequence row.
    pub hidden: &'a B::Tensor,
    pub images: &'a [EncodedImage<B>],
}

/// A row a filter adds (SparseVLM's recycled clusters).
pub struct AddedRow {
    /// Index of the kept row it is inserted after.
    pub after: usize,
    pub row: Row,
    pub token: VisionToken,
}

pub struct FilterOutput<B: Backend> {
    /// Rows that go on to the next layer, ascending (text rows included).
    pub keep: Vec<usize>,
    pub added: Vec<AddedRow>,
    /// Hidden states of the added rows, one row each, in `added` order.
    pub added_hidden: Option<B::Tensor>,
}

impl<B: Backend> FilterOutput<B> {
    pub fn keep(keep: Vec<usize>) -> Self {
        FilterOutput {
            keep,
            added: Vec::new(),
            added_hidden: None,
        }
    }
}

/// Stage 2, during prefill, after given language-model layers.
pub trait PrefillFilter<B: Backend>: Send {
    /// Layers after which `select` runs, ascending.
    fn layers(&self) -> &[usize];
    /// Sees the language model's input embeddings once, before layer 0.
    fn prepare(&mut self, _b: &B, _seq: &Sequence, _embeddings: &B::Tensor) -> Result<()> {
        Ok(())
    }
    /// Rows whose attention the filter needs at `layer` (empty: none is computed).
    fn query_rows(&self, layer: usize, seq: &Sequence) -> Vec<usize>;
    fn select(&mut self, input: FilterInput<'_, B>) -> Result<FilterOutput<B>>;
}

/// What prefill did, for the cache policy.
pub struct PrefillTrace {
    /// The rows that left the last layer.
    pub final_rows: Sequence,
    /// Layers the filter ran after.
    pub filter_layers: Vec<usize>,
    /// Origins of key tokens (never evicted).
    pub key_origins: Vec<u32>,
}

/// Stage 3, around each decoding step.
pub trait CachePolicy<B: Backend>: Send {
    /// Adjusts the caches once prefill is done.
    fn after_prefill(&mut self, _b: &B, _trace: &PrefillTrace, _cache: &mut KvCache<B>) -> Result<()> {
        Ok(())
    }
    /// Layer at whose input the new token's admission is decided, if the policy decides.
    fn admission_layer(&self) -> Option<usize> {
        None
    }
    /// Scores whether the new token (its hidden row at the admission layer's input) keeps
    /// its keys/values in the caches of the admission layer and after, into `verdict`: a
    /// small tensor left on the backend and read back with the next token id, where
    /// [`CachePolicy::admits`] decides from it. The token attends with its keys and values
    /// in this step either way.
    fn score_admission(&mut self, _b: &B, _hidden: &B::Tensor, _verdict: &mut B::Tensor) -> Result<()> {
        Ok(())
    }
    /// Whether the token scored into `verdict` (its values) stays in the caches.
    fn admits(&self, _verdict: &[f32]) -> bool {
        true
    }
    /// Layers whose attention from each new token the policy watches.
    fn watched_layers(&self) -> &[usize] {
        &[]
    }
    /// Where the new token's head-averaged attention over each watched layer's cache is
    /// added, weighted 1 / (watched layers), on the backend: one total per cache row (the
    /// watched layers hold the same rows).
    fn attention_totals(&mut self) -> Option<&mut B::Tensor> {
        None
    }
    /// After each step: queues into `verdict` what the host needs to decide on evictions,
    /// and says whether it did (the verdict is read back with the next token id).
    fn after_step(&mut self, _b: &B, _verdict: &mut B::Tensor) -> bool {
        false
    }
    /// With the verdict's values back on the host, evicts what it calls for from the
    /// caches; returns the evicted origins, ascending.
    fn evict(&mut self, _b: &B, _verdict: &[f32], _cache: &mut KvCache<B>) -> Vec<u32> {
        Vec::new()
    }
}
