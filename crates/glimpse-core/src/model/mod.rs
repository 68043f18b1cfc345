//! The LLaVA model: configuration, weights, preprocessing and the three networks.

pub mod anyres;
pub mod clip;
pub mod config;
pub mod llama;
pub mod llava;
pub mod next_packing;
pub mod predictor;
pub mod preprocess;
pub mod projector;
pub mod weights;

use crate::backend::Backend;
use crate::error::{Error, Result};
use weights::{TensorView, Weights};

/// Loads parameters under a name prefix, mirroring the checkpoint's module tree
/// (`loader.at("encoder").at("layers.3")`), and checks every shape on the way in.
pub(crate) struct Loader<'a, B: Backend> {
    weights: &'a Weights,
    backend: &'a B,
    prefix: String,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub(crate) fn new(weights: &'a Weights, backend: &'a B, prefix: &str) -> Self {
        Loader {
            weights,
            backend,
            prefix: prefix.to_string(),
        }
    }

    pub(crate) fn at(&self, path: &str) -> Self {
        Loader {
            weights: self.weights,
            backend: self.backend,
            prefix: self.name(path),
        }
    }

    fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    pub(crate) fn get(&self, leaf: &str, shape: &[usize]) -> Result<B::Weight> {
        let view = self.weights.get_shaped(&self.name(leaf), shape)?;
        self.backend.load_weight(&view)
    }

    /// A parameter stored as `parts` equal blocks of rows (a fused projection such as
    /// `qkv`), loaded as one weight per block so each can be applied on its own.
    pub(crate) fn get_row_blocks(&self, leaf: &str, shape: &[usize], parts: usize) -> Result<Vec<B::Weight>> {
        let view = self.weights.get_shaped(&self.name(leaf), shape)?;
        let rows = shape.first().copied().unwrap_or(0);
        if rows == 0 || parts == 0 || !rows.is_multiple_of(parts) {
            return Err(Error::internal(format!(
                "tensor '{}' with {rows} rows cannot be split into {parts} blocks",
                view.name
            )));
        }
        let mut block_shape = shape.to_vec();
        block_shape[0] = rows / parts;
        let block_bytes = view.bytes.len() / parts;
        (0..parts)
            .map(|i| {
                let block = TensorView {
                    name: view.name,
                    dtype: view.dtype,
                    shape: &block_shape,
                    bytes: &view.bytes[i * block_bytes..(i + 1) * block_bytes],
                };
                self.backend.load_weight(&block)
            })
            .collect()
    }

    /// For parameters a config flag may leave out (biases).
    pub(crate) fn get_if(&self, present: bool, leaf: &str, shape: &[usize]) -> Result<Option<B::Weight>> {
        if present {
            self.get(leaf, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn contains(&self, leaf: &str) -> bool {
        self.weights.contains(&self.name(leaf))
    }
}

/// A linear layer `y = x·Wᵀ + b`.
pub(crate) struct Linear<B: Backend> {
    pub(crate) weight: B::Weight,
    pub(crate) bias: Option<B::Weight>,
}

impl<B: Backend> Linear<B> {
    pub(crate) fn load(
        l: &Loader<'_, B>,
        name: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self> {
        let l = l.at(name);
        Ok(Linear {
            weight: l.get("weight", &[out_features, in_features])?,
            bias: l.get_if(bias, "bias", &[out_features])?,
        })
    }

    pub(crate) fn forward(&self, b: &B, x: &B::Tensor, out: &mut B::Tensor) {
        b.linear(x, &self.weight, self.bias.as_ref(), out);
    }
}
