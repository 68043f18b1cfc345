//! LLaVA: CLIP vision tower → projector → Llama, with image features spliced into the
//! token embeddings where the prompt holds image tokens.

use super::anyres::AnyresLayout;
use super::clip::ClipVision;
use super::config::LlavaConfig;
use super::llama::Llama;
use super::next_packing::{self, CropTokens, PackedSource};
use super::predictor::DynamicPredictors;
use super::projector::Projector;
use super::weights::Weights;
use super::Loader;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::reduce::stages::EncoderReducer;
use crate::reduce::{EncodedImage, VisionToken};

/// Checkpoint prefixes (llava-hf on-disk names; `Weights` resolves the other layouts).
const VISION_PREFIX: &str = "vision_tower.vision_model";
/// The tower's prefix in a separate CLIP checkpoint (CLIPModel or CLIPVisionModel).
const CLIP_VISION_PREFIX: &str = "vision_model";
const PROJECTOR_PREFIX: &str = "multi_modal_projector";
const DECODER_PREFIX: &str = "language_model.model";
const LM_HEAD_PREFIX: &str = "language_model.lm_head";
/// LLaVA-NeXT's learned end-of-row embedding, at the checkpoint's top level.
const IMAGE_NEWLINE: &str = "image_newline";

/// Whether a checkpoint carries the vision tower itself (in any layout `Weights` reads).
pub fn has_vision_tower(weights: &Weights) -> bool {
    weights.contains(&format!("{VISION_PREFIX}.embeddings.class_embedding"))
}

pub struct Llava<B: Backend> {
    pub config: LlavaConfig,
    pub vision: ClipVision<B>,
    pub projector: Projector<B>,
    pub language: Llama<B>,
    /// LLaVA-NeXT's end-of-row embedding (`[hidden]`), for a checkpoint with tile grids.
    pub image_newline: Option<B::Weight>,
    /// Dynamic-LLaVA's trained predictors, when the checkpoint (or a side file) has them;
    /// see [`DynamicPredictors::load`].
    pub predictors: Option<DynamicPredictors<B>>,
}

impl<B: Backend> Llava<B> {
    pub fn load(b: &B, weights: &Weights, config: LlavaConfig) -> Result<Self> {
        Self::load_with_vision_tower(b, weights, None, config)
    }

    /// Like [`Llava::load`]; `vision_tower` is a separate CLIP checkpoint that holds the
    /// tower, for original-layout checkpoints released without it.
    pub fn load_with_vision_tower(
        b: &B,
        weights: &Weights,
        vision_tower: Option<&Weights>,
        config: LlavaConfig,
    ) -> Result<Self> {
        let vision_loader = match vision_tower {
            Some(tower) => Loader::new(tower, b, CLIP_VISION_PREFIX),
            None => Loader::new(weights, b, VISION_PREFIX),
        };
        let vision = ClipVision::load(&vision_loader, &config)?;
        let projector = Projector::load(&Loader::new(weights, b, PROJECTOR_PREFIX), &config)?;
        let language = Llama::load(
            &Loader::new(weights, b, DECODER_PREFIX),
            &Loader::new(weights, b, LM_HEAD_PREFIX),
            &config.text,
        )?;
        let image_newline = Loader::new(weights, b, "").get_if(
            config.image_grid_pinpoints.is_some(),
            IMAGE_NEWLINE,
            &[config.text.hidden_size],
        )?;
        Ok(Llava {
            config,
            vision,
            projector,
            language,
            image_newline,
            predictors: None,
        })
    }

    /// One image's pixel values → its language-model embeddings, one row per token, with
    /// what a stage-1 `reducer` merged and chose on the way.
    pub fn encode_image(
        &self,
        b: &B,
        pixels: &[f32],
        reducer: Option<&dyn EncoderReducer<B>>,
    ) -> Result<(EncodedImage<B>, f64)> {
        let mut features = b.new_tensor();
        let output = self.vision.forward(b, pixels, reducer, &mut features)?;
        let mut embeddings = b.new_tensor();
        self.projector.forward(b, &features, &mut embeddings);
        let rows = b.shape(&embeddings).0;
        let (tokens, offsets) = if rows == output.tokens.len() {
            let offsets = output
                .tokens
                .iter()
                .map(|t| t.patches.iter().copied().min().unwrap_or(0))
                .collect();
            (output.tokens, offsets)
        } else {
            // Features that keep the CLS row: the tokens stand for rows in order, CLS first.
            let tokens = std::iter::once(VisionToken { patches: Vec::new() })
                .chain(output.tokens)
                .collect();
            let offsets = (0..rows as u32).collect();
            (tokens, offsets)
        };
        let image = EncodedImage {
            embeddings,
            tokens,
            offsets,
            keys: output.keys,
            grid: self.vision.grid(),
            window_similarity: output.window_similarity,
            slot_len: self.config.image_seq_len(),
        };
        b.check()?;
        Ok((image, output.flops))
    }

    /// One LLaVA-NeXT image's crops (the base image, then the tiles of `layout` row by row,
    /// each the pixel values of one tower input) → its language-model embeddings packed as
    /// transformers packs them (see `next_packing`), with a stage-1 `reducer` run on every
    /// crop.
    pub fn encode_tiled_image(
        &self,
        b: &B,
        crops: &[Vec<f32>],
        layout: &AnyresLayout,
        reducer: Option<&dyn EncoderReducer<B>>,
    ) -> Result<(EncodedImage<B>, f64)> {
        let newline = self
            .image_newline
            .as_ref()
            .ok_or_else(|| Error::internal("a tiled image needs a model with an image_newline embedding"))?;
        // Every crop's features, one after another; then the newline as one more row.
        let mut features = b.new_tensor();
        let mut crop_features = b.new_tensor();
        let mut crop_tokens = Vec::with_capacity(crops.len());
        let mut crop_starts = Vec::with_capacity(crops.len());
        let mut window_similarity = Vec::new();
        let mut flops = 0.0;
        for pixels in crops {
            let output = self.vision.forward(b, pixels, reducer, &mut crop_features)?;
            let (rows, cols) = b.shape(&crop_features);
            let start = b.shape(&features).0;
            b.reserve_rows(&mut features, start + rows, cols);
            b.copy_rows(&crop_features, 0, &mut features, start, rows);
            crop_starts.push(start);
            crop_tokens.push(CropTokens {
                tokens: output.tokens,
                keys: output.keys,
            });
            window_similarity.extend(output.window_similarity);
            flops += output.flops;
        }
        let mut projected = b.new_tensor();
        self.projector.forward(b, &features, &mut projected);
        let (rows, hidden) = b.shape(&projected);
        let mut newline_row = b.new_tensor();
        b.gather_rows(newline, &[0], &mut newline_row);
        b.reserve_rows(&mut projected, rows + 1, hidden);
        b.copy_rows(&newline_row, 0, &mut projected, rows, 1);

        let packing = next_packing::pack(layout, &crop_tokens);
        let sources: Vec<usize> = packing
            .sources
            .iter()
            .map(|source| match *source {
                PackedSource::Crop { crop, token } => crop_starts[crop] + token,
                PackedSource::Newline => rows,
            })
            .collect();
        let mut embeddings = b.new_tensor();
        b.select_rows(&projected, &sources, &mut embeddings);
        let image = EncodedImage {
            embeddings,
            tokens: packing.tokens,
            offsets: packing.offsets,
            keys: packing.keys,
            grid: layout.tile_side,
            window_similarity,
            slot_len: packing.slot_len,
        };
        b.check()?;
        Ok((image, flops))
    }

    /// Embeds `ids` into `out` [n, H], replacing each run of image tokens by the next
    /// image's embeddings. The run lengths must match the images' token counts.
    pub fn embed_prompt(&self, b: &B, ids: &[u32], images: &[&B::Tensor], out: &mut B::Tensor) -> Result<()> {
        let image_token = self.config.image_token_index;
        // Image tokens may sit outside the embedding table; their rows are overwritten anyway.
        let text_ids: Vec<u32> = ids.iter().map(|&t| if t == image_token { 0 } else { t }).collect();
        self.language.embed(b, &text_ids, out);

        let mut images = images.iter();
        let mut i = 0;
        while i < ids.len() {
            if ids[i] != image_token {
                i += 1;
                continue;
            }
            let run = ids[i..].iter().take_while(|&&t| t == image_token).count();
            let image = images
                .next()
                .ok_or_else(|| Error::usage("the prompt has more image slots than images were given"))?;
            let rows = b.shape(image).0;
            if run != rows {
                return Err(Error::internal(format!(
                    "an image slot of {run} tokens cannot hold {rows} image embeddings"
                )));
            }
            b.copy_rows(image, 0, out, i, rows);
            i += run;
        }
        if images.next().is_some() {
            return Err(Error::usage("more images were given than the prompt has image slots"));
        }
        Ok(())
    }
}
