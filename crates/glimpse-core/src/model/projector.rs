//! The multimodal projector: vision features → language-model embeddings
//! (`linear_1 → activation → linear_2`, LLaVA-1.5's "mlp2x_gelu").

use super::config::{Activation, LlavaConfig};
use super::{Linear, Loader};
use crate::backend::Backend;
use crate::error::Result;

pub struct Projector<B: Backend> {
    linear_1: Linear<B>,
    linear_2: Linear<B>,
    act: Activation,
}

impl<B: Backend> Projector<B> {
    pub(crate) fn load(l: &Loader<'_, B>, cfg: &LlavaConfig) -> Result<Self> {
        let (vision, text) = (cfg.vision.hidden_size, cfg.text.hidden_size);
        let bias = cfg.multimodal_projector_bias;
        Ok(Projector {
            linear_1: Linear::load(l, "linear_1", vision, text, bias)?,
            linear_2: Linear::load(l, "linear_2", text, text, bias)?,
            act: cfg.projector_hidden_act,
        })
    }

    /// `features` [n, vision_hidden] → `out` [n, text_hidden].
    pub fn forward(&self, b: &B, features: &B::Tensor, out: &mut B::Tensor) {
        let mut hidden = b.new_tensor();
        self.linear_1.forward(b, features, &mut hidden);
        b.activate(&mut hidden, self.act);
        self.linear_2.forward(b, &hidden, out);
    }
}
