//! The engine's public API: load a model once, run many generations.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::generate::batch;
use crate::generate::session::{self, PreparedPrompt};
use crate::generate::state::{initial_sequence, GenerationState};
use crate::generate::{GenerationStats, SamplingParams};
use crate::model::anyres::{self, AnyresLayout};
use crate::model::config::{CheckpointFormat, LlavaConfig};
use crate::model::llava::{self, Llava};
use crate::model::predictor::DynamicPredictors;
pub use crate::model::preprocess::RgbImage;
use crate::model::preprocess::{ImageProcessorConfig, SquarePad};
use crate::model::weights::{DType, Weights};
pub use crate::placement::DeviceChoice;
use crate::placement::{self, on_device, Loaded, MemoryNeed, OnDevice, Opened};
use crate::reduce::report::TileReport;
use crate::reduce::{ReduceSpec, ReductionPlan, ReductionReport};
use crate::text::{ChatTemplate, TextTokenizer};
pub use crate::text::{ContentPart, Message};

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Worker threads for the CPU backend; `None` = all cores.
    pub threads: Option<usize>,
    /// A CLIP model directory for original-layout LLaVA checkpoints, which are usually
    /// released without their vision tower: the tower's config.json and image processor
    /// come from it, and its weights too unless the checkpoint carries its own (which win,
    /// as in LLaVA's loader, since they may have been fine-tuned).
    pub vision_tower: Option<PathBuf>,
    /// Where the model runs (`--device`).
    pub device: DeviceChoice,
    /// The type weights are stored in (`--dtype`); `None` keeps the checkpoint's.
    pub dtype: Option<DType>,
    /// The most tokens one image may take before any reduction (`--max-image-tokens`): a
    /// tiling model (LLaVA-NeXT) cuts each image into a smaller grid to stay within it.
    pub max_image_tokens: Option<usize>,
}

/// What stands for an image in original-layout prompts (LLaVA's `DEFAULT_IMAGE_TOKEN`).
const IMAGE_PLACEHOLDER: &str = "<image>";

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
    /// Tokens one image takes before reduction; for a tiling model, the most it can take.
    pub image_tokens: usize,
    /// A tiling model's grids of tiles, `[height, width]` in pixels; empty otherwise.
    pub tile_grids: Vec<[usize; 2]>,
    pub context_length: usize,
    /// KV-cache bytes each token of context occupies (f32 keys and values, all layers).
    pub kv_bytes_per_token: u64,
    pub backend: String,
}

/// A loaded model with everything needed to turn a conversation into text.
pub struct Engine {
    dir: PathBuf,
    loaded: Loaded,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    image_processor: ImageProcessorConfig,
    weight_summary: WeightSummary,
    max_image_tokens: Option<usize>,
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
        let tower_dir = options.vision_tower.as_deref();
        if let Some(tower) = tower_dir {
            if !tower.is_dir() {
                return Err(Error::usage(format!(
                    "vision tower directory {} does not exist",
                    tower.display()
                )));
            }
        }
        let config = LlavaConfig::from_dirs(dir, tower_dir)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let template = match config.format {
            CheckpointFormat::LlavaHf => ChatTemplate::from_dir(dir)?,
            CheckpointFormat::Original(_) => ChatTemplate::from_dir_or_vicuna_v1(dir)?,
        };
        let image_processor = image_processor(dir, tower_dir, &config)?;
        let size = config.vision.image_size;
        if image_processor.output_size() != (size, size) {
            let (h, w) = image_processor.output_size();
            return Err(Error::model(format!(
                "the image processor makes {w}×{h} images but the vision tower takes {size}×{size}"
            )));
        }
        check_image_budget(&config, options.max_image_tokens)?;
        let weights = Weights::open(dir)?;
        let weight_summary = WeightSummary::of(&weights);
        let tower_weights = vision_tower_weights(dir, tower_dir, &config, &weights)?;
        let checkpoint = Checkpoint {
            dir,
            config,
            weights: &weights,
            tower_weights: tower_weights.as_ref(),
        };
        let loaded = match placement::open(options.device, options.threads, options.dtype)? {
            Opened::Cpu(backend) => Loaded::Cpu(Box::new(checkpoint.load(backend, options.dtype)?)),
            #[cfg(feature = "cuda")]
            Opened::Cuda(backend) => Loaded::Cuda(Box::new(checkpoint.load(*backend, options.dtype)?)),
        };
        Ok(Engine {
            dir: dir.to_path_buf(),
            loaded,
            tokenizer,
            template,
            image_processor,
            weight_summary,
            max_image_tokens: options.max_image_tokens,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlavaConfig {
        on_device!(&self.loaded, d => &d.model.config)
    }

    /// The backend the model runs on, as `--stats` and `inspect` show it.
    pub fn backend(&self) -> String {
        on_device!(&self.loaded, d => d.backend.description())
    }

    pub fn info(&self) -> ModelInfo {
        let cfg = self.config();
        ModelInfo {
            dir: self.dir.clone(),
            architecture: match (&cfg.format, &cfg.image_grid_pinpoints) {
                (CheckpointFormat::LlavaHf, None) => "LlavaForConditionalGeneration",
                (CheckpointFormat::LlavaHf, Some(_)) => "LlavaNextForConditionalGeneration",
                (CheckpointFormat::Original(_), _) => "LlavaLlamaForCausalLM",
            }
            .to_string(),
            parameters: self.weight_summary.parameters,
            dtype: self.weight_summary.dtype.clone(),
            weight_bytes: self.weight_summary.bytes,
            vision_layers: cfg.vision.num_hidden_layers,
            text_layers: cfg.text.num_hidden_layers,
            hidden_size: cfg.text.hidden_size,
            image_tokens: cfg.max_image_seq_len(),
            tile_grids: cfg
                .image_grid_pinpoints
                .iter()
                .flatten()
                .map(|grid| [grid.height, grid.width])
                .collect(),
            context_length: cfg.text.max_position_embeddings,
            kv_bytes_per_token: placement::kv_bytes_per_token(cfg),
            backend: self.backend(),
        }
    }

    /// How a LLaVA-NeXT checkpoint cuts `image` into tiles (within `--max-image-tokens`);
    /// `None` for a model that takes every image whole.
    pub fn tile_layout(&self, image: &RgbImage) -> Result<Option<AnyresLayout>> {
        let cfg = self.config();
        let Some(grids) = cfg.image_grid_pinpoints.as_deref() else {
            return Ok(None);
        };
        let size = anyres::Size::new(image.height as usize, image.width as usize);
        let (tile, patch) = (cfg.vision.image_size, cfg.vision.patch_size);
        let Some(max) = self.max_image_tokens else {
            return Ok(AnyresLayout::new(size, grids, tile, patch));
        };
        match AnyresLayout::within(size, grids, tile, patch, max) {
            Some(layout) => Ok(Some(layout)),
            None => {
                let fewest = grids
                    .iter()
                    .filter_map(|&grid| AnyresLayout::new(size, &[grid], tile, patch))
                    .map(|layout| layout.image_tokens())
                    .min()
                    .unwrap_or_default();
                Err(Error::usage(format!(
                    "--max-image-tokens {max} is too few for a {}×{} image: its smallest tile grid gives it {fewest} tokens",
                    image.width, image.height
                )))
            }
        }
    }

    /// Tokens `image` takes in the prompt before any reduction.
    pub fn image_tokens(&self, image: &RgbImage) -> Result<usize> {
        Ok(self
            .tile_layout(image)?
            .map_or_else(|| self.config().image_seq_len(), |layout| layout.image_tokens()))
    }

    /// Token ids of the rendered conversation, each image slot expanded to one id
    /// (`config.image_token_index`) per token of its image. Fails when image parts,
    /// `<image>` slots and images do not line up.
    pub fn prompt_ids(&self, messages: &[Message], images: &[RgbImage]) -> Result<Vec<u32>> {
        let n_images = images.len();
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
        let image_token = self.config().image_token_index;
        let ids = match self.config().format {
            CheckpointFormat::LlavaHf => self.tokenizer.encode(&text, true)?,
            CheckpointFormat::Original(_) => encode_with_spliced_images(&self.tokenizer, &text, image_token)?,
        };
        let slots = ids.iter().filter(|&&t| t == image_token).count();
        if slots != n_images {
            return Err(Error::usage(format!(
                "the rendered prompt has {slots} <image> slot(s) but {n_images} image(s) were given"
            )));
        }
        let slots: Vec<usize> = images
            .iter()
            .map(|image| self.image_tokens(image))
            .collect::<Result<_>>()?;
        let mut slots = slots.into_iter();
        let mut expanded = Vec::with_capacity(ids.len() + n_images * self.config().image_seq_len());
        for id in ids {
            if id == image_token {
                // As many slots as images: counted just above.
                expanded.extend(std::iter::repeat_n(image_token, slots.next().unwrap_or_default()));
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
        on_device!(&self.loaded, d => self.generate_on(d, request, cancel, on_event))
    }

    /// Logits for the token that would follow the prompt (no sampling, nothing streamed),
    /// with the request's reduction applied: what parity checks against reference
    /// implementations and answer scoring need.
    pub fn next_token_logits(&self, request: &GenerateRequest) -> Result<Vec<f32>> {
        on_device!(&self.loaded, d => self.next_token_logits_on(d, request))
    }

    /// [`Engine::generate`] with the model on `d` (the engine's own, or in tests the same
    /// checkpoint loaded on another backend).
    pub(crate) fn generate_on<B: Backend>(
        &self,
        d: &OnDevice<B>,
        request: &GenerateRequest,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<GenerateOutput> {
        let plan = request.reduce.plan(&d.model)?;
        let (prompt, mut stats) = self.prepare(d, request, &plan)?;
        stats.backend = d.backend.description();
        let context = d.model.config.text.max_position_embeddings;
        let output = session::run(
            &d.backend,
            &d.model,
            plan,
            &self.tokenizer,
            prompt,
            request,
            context,
            cancel,
            on_event,
            stats,
        )?;
        self.complete_report(request, output)
    }

    /// Runs several generations together on the calling thread (see `generate::batch`):
    /// each gets the output it would get from [`Engine::generate`], in request order, or
    /// its own error. `cancel` is polled once per step and ends every unfinished one.
    pub fn generate_batch(&self, requests: &[GenerateRequest], cancel: &AtomicBool) -> Vec<Result<GenerateOutput>> {
        on_device!(&self.loaded, d => self.generate_batch_on(d, requests, cancel))
    }

    /// [`Engine::generate_batch`] with the model on `d`.
    fn generate_batch_on<B: Backend>(
        &self,
        d: &OnDevice<B>,
        requests: &[GenerateRequest],
        cancel: &AtomicBool,
    ) -> Vec<Result<GenerateOutput>> {
        let context = d.model.config.text.max_position_embeddings;
        let outputs = batch::run(
            &d.backend,
            &d.model,
            &self.tokenizer,
            requests,
            context,
            cancel,
            |request| {
                let plan = request.reduce.plan(&d.model)?;
                let (prompt, mut stats) = self.prepare(d, request, &plan)?;
                stats.backend = d.backend.description();
                Ok(batch::Prepared { plan, prompt, stats })
            },
        );
        outputs
            .into_iter()
            .zip(requests)
            .map(|(output, request)| output.and_then(|output| self.complete_report(request, output)))
            .collect()
    }

    /// Adds what only the engine knows to a reduction report: the spec as given, where each
    /// image's canvas (and a tiled image's tiles) lies on it, and the tokens per crop.
    fn complete_report(&self, request: &GenerateRequest, mut output: GenerateOutput) -> Result<GenerateOutput> {
        output.reduction.spec = request.reduce.text.clone();
        for (report, image) in output.reduction.images.iter_mut().zip(&request.images) {
            match self.tile_layout(image)? {
                Some(layout) => {
                    let (base, tiles) = self.image_processor.tiled_geometry(image, &layout);
                    report.geometry = Some(base);
                    report.tiles = Some(TileReport::new(&layout, tiles));
                }
                None => report.geometry = Some(self.image_processor.geometry(image)?),
            }
        }
        output.stats.crops = output.reduction.images.iter().map(|r| r.crop_counts()).collect();
        Ok(output)
    }

    pub(crate) fn next_token_logits_on<B: Backend>(
        &self,
        d: &OnDevice<B>,
        request: &GenerateRequest,
    ) -> Result<Vec<f32>> {
        let plan = request.reduce.plan(&d.model)?;
        let (prompt, _) = self.prepare(d, request, &plan)?;
        session::ensure_kv_fits(&d.backend, &d.model, prompt.ids.len(), 0)?;
        let mut state = GenerationState::new(&d.backend, &d.model, plan, prompt.ids.len());
        state.prefill(&d.backend, &d.model, &prompt)?;
        Ok(state.download_logits(&d.backend))
    }

    /// Tokenizes the conversation, checks it fits the context and encodes its images
    /// (with the plan's stage 1).
    fn prepare<B: Backend>(
        &self,
        d: &OnDevice<B>,
        request: &GenerateRequest,
        plan: &ReductionPlan<'_, B>,
    ) -> Result<(PreparedPrompt<B>, GenerationStats)> {
        let model = &d.model;
        let unreduced = self.prompt_ids(&request.messages, &request.images)?;
        let context = model.config.text.max_position_embeddings;
        if unreduced.len() >= context {
            return Err(Error::input(format!(
                "the prompt is {} tokens but the model's context window is {context}",
                unreduced.len()
            )));
        }
        let mut stats = GenerationStats {
            reduce: request.reduce.text.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let mut images = Vec::with_capacity(request.images.len());
        for image in &request.images {
            let encoder = plan.encoder.as_deref();
            let (encoded, flops) = match self.tile_layout(image)? {
                Some(layout) => {
                    let crops = self.image_processor.preprocess_tiles(image, &layout)?;
                    model.encode_tiled_image(&d.backend, &crops, &layout, encoder)?
                }
                None => {
                    let pixels = self.image_processor.preprocess(image)?;
                    model.encode_image(&d.backend, &pixels, encoder)?
                }
            };
            stats.flops_vision += flops;
            images.push(encoded);
        }
        stats.ms_encode = started.elapsed().as_secs_f64() * 1e3;
        stats.vision_tokens_in = images.iter().map(|i| i.slot_len).sum();
        stats.after_encoder = images.iter().map(|i| i.tokens.len()).sum();

        let image_token = model.config.image_token_index;
        let ids = resize_image_slots(&unreduced, image_token, &images);
        let sequence = initial_sequence(&ids, image_token, &images, plan.positions);
        let prompt = PreparedPrompt {
            ids,
            images,
            sequence,
            unreduced_len: unreduced.len(),
        };
        Ok((prompt, stats))
    }
}

/// A checkpoint opened for loading: its config and weights (and a separate vision tower's).
pub(crate) struct Checkpoint<'a> {
    pub dir: &'a Path,
    pub config: LlavaConfig,
    pub weights: &'a Weights,
    pub tower_weights: Option<&'a Weights>,
}

impl Checkpoint<'_> {
    /// Loads the model onto `backend`, after checking that a device with memory of its
    /// own has room for it.
    pub(crate) fn load<B: Backend>(self, backend: B, dtype: Option<DType>) -> Result<OnDevice<B>> {
        if let Some(free) = backend.free_memory() {
            let mut summary = self.weights.summary();
            if let Some(tower) = self.tower_weights {
                let t = tower.summary();
                summary.parameters += t.parameters;
                summary.bytes += t.bytes;
            }
            MemoryNeed::for_model(&self.config, summary.parameters, summary.bytes, dtype).check(free as u64)?;
        }
        let mut model = Llava::load_with_vision_tower(&backend, self.weights, self.tower_weights, self.config)?;
        model.predictors = DynamicPredictors::load(&backend, self.weights, self.dir, &model.config)?;
        backend.check()?;
        Ok(OnDevice { backend, model })
    }
}

/// Shrinks each image's slot of image tokens to the tokens its image has left after
/// stage 1.
fn resize_image_slots<B: crate::backend::Backend>(
    ids: &[u32],
    image_token: u32,
    images: &[crate::reduce::EncodedImage<B>],
) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len());
    let mut images = images.iter();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == image_token {
            let image = images.next().expect("prompt_ids gave every image slot an image");
            out.extend(std::iter::repeat_n(image_token, image.tokens.len()));
            i += image.slot_len;
        } else {
            out.push(ids[i]);
            i += 1;
        }
    }
    out
}

/// The image processor a checkpoint's images go through. Original LLaVA uses its CLIP
/// tower's processor (from the tower directory, else one kept in the model directory, else
/// the built-in towers' CLIPImageProcessor settings), padded to a square first when
/// `image_aspect_ratio` is "pad".
fn image_processor(dir: &Path, tower_dir: Option<&Path>, config: &LlavaConfig) -> Result<ImageProcessorConfig> {
    let CheckpointFormat::Original(layout) = &config.format else {
        return match &config.image_grid_pinpoints {
            Some(grids) => tiling_processor(dir, grids),
            None => ImageProcessorConfig::from_dir(dir),
        };
    };
    let pad = if layout.pad_to_square {
        SquarePad::MeanColour
    } else {
        SquarePad::AsConfigured
    };
    if let Some(tower) = tower_dir {
        return ImageProcessorConfig::from_dir_with(tower, pad);
    }
    if dir.join("preprocessor_config.json").is_file() || dir.join("processor_config.json").is_file() {
        return ImageProcessorConfig::from_dir_with(dir, pad);
    }
    // Without a tower directory the config only resolved for a built-in OpenAI CLIP tower,
    // whose processor is CLIPImageProcessor's defaults at the tower's image size.
    let size = config.vision.image_size;
    let settings = format!(
        r#"{{"image_processor_type": "CLIPImageProcessor", "size": {{"shortest_edge": {size}}}, "crop_size": {{"height": {size}, "width": {size}}}}}"#
    );
    ImageProcessorConfig::from_json_str_with(&settings, "the built-in CLIP image processor", pad)
}

/// Refuses a `--max-image-tokens` no image can meet: below the fixed count of a model that
/// takes images whole, or below a tiling model's base image and one row of one tile.
fn check_image_budget(config: &LlavaConfig, max_image_tokens: Option<usize>) -> Result<()> {
    let Some(max) = max_image_tokens else {
        return Ok(());
    };
    let fixed = config.image_seq_len();
    match config.image_grid_pinpoints {
        None if max < fixed => Err(Error::usage(format!(
            "--max-image-tokens {max} is below the {fixed} tokens this model gives every image (it does not cut images into tiles); use --reduce to keep fewer"
        ))),
        Some(_) if max <= fixed => Err(Error::usage(format!(
            "--max-image-tokens {max} leaves no room for tiles: this model gives the whole image {fixed} tokens before its tiles' rows"
        ))),
        _ => Ok(()),
    }
}

/// A LLaVA-NeXT checkpoint's image processor. The model's tile grids (config.json) decide
/// how an image is cut; a processor that lists other grids would cut the image into tiles
/// the model does not expect, so that is refused.
fn tiling_processor(dir: &Path, grids: &[anyres::Size]) -> Result<ImageProcessorConfig> {
    let processor = ImageProcessorConfig::from_dir_tiled(dir)?;
    if let Some(own) = processor.pinpoints() {
        if own != grids {
            let list = |sizes: &[anyres::Size]| {
                sizes
                    .iter()
                    .map(|s| format!("[{}, {}]", s.height, s.width))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::model(format!(
                "{}: the image processor's image_grid_pinpoints [{}] differ from config.json's [{}]",
                dir.display(),
                list(own),
                list(grids)
            )));
        }
    }
    Ok(processor)
}

/// The separate checkpoint an original-layout tower is loaded from, or `None` when the
/// tower is in the model's own checkpoint.
fn vision_tower_weights(
    dir: &Path,
    tower_dir: Option<&Path>,
    config: &LlavaConfig,
    weights: &Weights,
) -> Result<Option<Weights>> {
    let CheckpointFormat::Original(layout) = &config.format else {
        return Ok(None);
    };
    if llava::has_vision_tower(weights) {
        return Ok(None);
    }
    match tower_dir {
        Some(tower) => Weights::open(tower).map(Some),
        None => Err(Error::model(format!(
            "{}: the checkpoint has no vision tower{}; pass --vision-tower DIR with a local copy of it",
            dir.display(),
            layout
                .vision_tower
                .as_deref()
                .map_or_else(String::new, |name| format!(" (config.json names '{name}')"))
        ))),
    }
}

/// Tokenizes an original-layout prompt as LLaVA's `tokenizer_image_token` does: the text
/// between `<image>` placeholders is tokenized piece by piece (each piece starts like a
/// fresh text), the BOS the tokenizer puts on every piece is kept on the first only, and
/// one `image_slot` id stands where each placeholder was.
fn encode_with_spliced_images(tokenizer: &TextTokenizer, text: &str, image_slot: u32) -> Result<Vec<u32>> {
    let mut pieces = text.split(IMAGE_PLACEHOLDER);
    let mut ids = tokenizer.encode(pieces.next().unwrap_or_default(), true)?;
    let bos = tokenizer.bos_token().and_then(|token| tokenizer.token_id(token));
    let skip = usize::from(bos.is_some() && ids.first().copied() == bos);
    for piece in pieces {
        ids.push(image_slot);
        let piece_ids = tokenizer.encode(piece, true)?;
        ids.extend_from_slice(piece_ids.get(skip..).unwrap_or_default());
    }
    Ok(ids)
}
