//! The engine's public API: load a model once, run many generations.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::generate::session::{self, PreparedPrompt};
use crate::generate::state::{initial_sequence, GenerationState};
use crate::generate::{GenerationStats, SamplingParams};
use crate::model::config::LlavaConfig;
use crate::model::llava::Llava;
use crate::model::preprocess::ImageProcessorConfig;
pub use crate::model::preprocess::RgbImage;
use crate::model::weights::Weights;
use crate::reduce::{ReduceSpec, ReductionPlan, ReductionReport};
use crate::text::{ChatTemplate, TextTokenizer};
pub use crate::text::{ContentPart, Message};

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Worker threads for the CPU backend; `None` = all cores.
    pub threads: Option<usize>,
}

/// One generation: a conversation whose `Image` parts are filled, in order, by `images`.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub messages: Vec<Message>,
    pub images: Vec<RgbImage>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Keep generating through end-of-sequence tokens (until `max_tokens` or a stop string).
    pub ignore_eos: bool,
    /// Visual-token reduction (`--reduce`).
    pub reduce: ReduceSpec,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Eos,
    Stop,
    Length,
    Cancelled,
}

/// Streamed to the caller while generating.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text completed by the latest token (may be empty while a character is incomplete).
    Token { id: u32, text: String },
    /// Text held back in case it began a stop string, released when generation ends.
    Flush { text: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateOutput {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
    pub reduction: ReductionReport,
}

/// What `glimpse inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub architecture: String,
    pub parameters: u64,
    pub dtype: String,
    pub weight_bytes: u64,
    pub vision_layers: usize,
    pub text_layers: usize,
    pub hidden_size: usize,
    pub image_tokens: usize,
    pub context_length: usize,
    /// KV-cache bytes each token of context occupies (f32 keys and values, all layers).
    pub kv_bytes_per_token: u64,
    pub backend: String,
}

/// A loaded model with everything needed to turn a conversation into text.
pub struct Engine {
    dir: PathBuf,
    backend: CpuBackend,
    model: Llava<CpuBackend>,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    image_processor: ImageProcessorConfig,
    weight_summary: WeightSummary,
}

/// Totals over the checkpoint's tensors, for `inspect`.
struct WeightSummary {
    parameters: u64,
    bytes: u64,
    dtype: String,
}

impl WeightSummary {
    fn of(weights: &Weights) -> Self {
        let summary = weights.summary();
        WeightSummary {
            parameters: summary.parameters,
            bytes: summary.bytes,
            dtype: summary.dominant_dtype.to_lowercase(),
        }
    }
}

impl Engine {
    pub fn load(dir: &Path, options: LoadOptions) -> Result<Engine> {
        if !dir.is_dir() {
            return Err(Error::model(format!(
                "model directory {} does not exist",
                dir.display()
            )));
        }
        let config = LlavaConfig::from_dir(dir)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let template = ChatTemplate::from_dir(dir)?;
        let image_processor = ImageProcessorConfig::from_dir(dir)?;
        let size = config.vision.image_size;
        if image_processor.output_size() != (size, size) {
            let (h, w) = image_processor.output_size();
            return Err(Error::model(format!(
                "the image processor makes {w}×{h} images but the vision tower takes {size}×{size}"
            )));
        }
        let backend = CpuBackend::new(options.threads)?;
        let weights = Weights::open(dir)?;
        let weight_summary = WeightSummary::of(&weights);
        let model = Llava::load(&backend, &weights, config)?;
        Ok(Engine {
            dir: dir.to_path_buf(),
            backend,
            model,
            tokenizer,
            template,
            image_processor,
            weight_summary,
        })
    }

    pub fn info(&self) -> ModelInfo {
        let cfg = &self.model.config;
        ModelInfo {
            dir: self.dir.clone(),
            architecture: "LlavaForConditionalGeneration".to_string(),
            parameters: self.weight_summary.parameters,
            dtype: self.weight_summary.dtype.clone(),
            weight_bytes: self.weight_summary.bytes,
            vision_layers: cfg.vision.num_hidden_layers,
            text_layers: cfg.text.num_hidden_layers,
            hidden_size: cfg.text.hidden_size,
            image_tokens: cfg.image_seq_len(),
            context_length: cfg.text.max_position_embeddings,
            kv_bytes_per_token: (cfg.text.num_hidden_layers * self.model.language.kv_width() * 2 * size_of::<f32>())
                as u64,
            backend: self.backend.description(),
        }
    }

    /// Token ids of the rendered conversation, image slots expanded to one id per image
    /// token. Fails when image parts, `<image>` slots and images do not line up.
    pub fn prompt_ids(&self, messages: &[Message], n_images: usize) -> Result<Vec<u32>> {
        let image_parts = messages
            .iter()
            .flat_map(|m| &m.content)
            .filter(|p| matches!(p, ContentPart::Image))
            .count();
        if image_parts != n_images {
            return Err(Error::usage(format!(
                "the prompt has {image_parts} image slot(s) but {n_images} image(s) were given"
            )));
        }
        let text = self.template.render(messages, true)?;
        let ids = self.tokenizer.encode(&text, true)?;
        let image_token = self.model.config.image_token_index;
        let slots = ids.iter().filter(|&&t| t == image_token).count();
        if slots != n_images {
            return Err(Error::usage(format!(
                "the rendered prompt has {slots} <image> slot(s) but {n_images} image(s) were given"
            )));
        }
        let per_image = self.model.config.image_seq_len();
        let mut expanded = Vec::with_capacity(ids.len() + n_images * per_image);
        for id in ids {
            if id == image_token {
                expanded.extend(std::iter::repeat_n(image_token, per_image));
            } else {
                expanded.push(id);
            }
        }
        Ok(expanded)
    }

    /// Runs one generation on the calling thread. `cancel` is polled once per token;
    /// `on_event` sees each token as it is produced.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<GenerateOutput> {
        let plan = request.reduce.plan(&self.model)?;
        let (prompt, stats) = self.prepare(request, &plan)?;
        let context = self.model.config.text.max_position_embeddings;
        let mut output = session::run(
            &self.backend,
            &self.model,
            plan,
            &self.tokenizer,
            prompt,
            request,
            context,
            cancel,
            on_event,
            stats,
        )?;
        output.reduction.spec = request.reduce.text.clone();
        for (report, image) in output.reduction.images.iter_mut().zip(&request.images) {
            report.geometry = Some(self.image_processor.geometry(image)?);
        }
        Ok(output)
    }

    /// Logits for the token that would follow the prompt (no sampling, nothing streamed),
    /// with the request's reduction applied: what parity checks against reference
    /// implementations and answer scoring need.
    pub fn next_token_logits(&self, request: &GenerateRequest) -> Result<Vec<f32>> {
        let plan = request.reduce.plan(&self.model)?;
        let (prompt, _) = self.prepare(request, &plan)?;
        let mut state = GenerationState::new(&self.backend, &self.model, plan, prompt.ids.len());
        state.prefill(&self.backend, &self.model, &prompt)
    }

    /// Tokenizes the conversation, checks it fits the context and encodes its images
    /// (with the plan's stage 1).
    fn prepare(
        &self,
        request: &GenerateRequest,
        plan: &ReductionPlan<'_, CpuBackend>,
    ) -> Result<(PreparedPrompt<CpuBackend>, GenerationStats)> {
        let unreduced = self.prompt_ids(&request.messages, request.images.len())?;
        let context = self.model.config.text.max_position_embeddings;
        if unreduced.len() >= context {
            return Err(Error::input(format!(
                "the prompt is {} tokens but the model's context window is {context}",
                unreduced.len()
            )));
        }
        let per_image = self.model.config.image_seq_len();
        let mut stats = GenerationStats {
            reduce: request.reduce.text.clone(),
            vision_tokens_in: request.images.len() * per_image,
            ..Default::default()
        };
        let started = Instant::now();
        let mut images = Vec::with_capacity(request.images.len());
        for image in &request.images {
            let pixels = self.image_processor.preprocess(image)?;
            let (encoded, flops) = self
                .model
                .encode_image(&self.backend, &pixels, plan.encoder.as_deref())?;
            stats.flops_vision += flops;
            images.push(encoded);
        }
        stats.ms_encode = started.elapsed().as_secs_f64() * 1e3;
        stats.after_encoder = images.iter().map(|i| i.tokens.len()).sum();

        let image_token = self.model.config.image_token_index;
        let ids = resize_image_slots(&unreduced, image_token, per_image, &images);
        let sequence = initial_sequence(&ids, image_token, &images, per_image, plan.positions);
        let prompt = PreparedPrompt {
            ids,
            images,
            sequence,
            unreduced_len: unreduced.len(),
        };
        Ok((prompt, stats))
    }
}

/// Shrinks each image's slot of `per_image` image tokens to the tokens its image has left
/// after stage 1.
fn resize_image_slots<B: crate::backend::Backend>(
    ids: &[u32],
    image_token: u32,
    per_image: usize,
    images: &[crate::reduce::EncodedImage<B>],
) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len());
    let mut images = images.iter();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == image_token {
            let count = images.next().map_or(per_image, |image| image.tokens.len());
            out.extend(std::iter::repeat_n(image_token, count));
            i += per_image;
        } else {
            out.push(ids[i]);
            i += 1;
        }
    }
    out
}
