//! Throughput benchmark of the engine's model path: image encode, prefill and decode
//! speed, FLOPs, KV-cache bytes and peak memory for one model directory (a fixture or a
//! synthetic checkpoint), once per reduction spec on the same loaded model. Only
//! config.json and the weights are read; the prompt is made of token ids directly, and the
//! image of synthetic pixel values (for a tiling model, as many crops as its largest grid).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend::Backend;
use crate::error::Result;
use crate::generate::session::PreparedPrompt;
use crate::generate::state::{initial_sequence, GenerationState};
use crate::generate::GenerationStats;
use crate::model::anyres::AnyresLayout;
use crate::model::config::LlavaConfig;
use crate::model::llava::Llava;
use crate::model::predictor::DynamicPredictors;
use crate::model::preprocess::ImageGeometry;
use crate::model::weights::{DType, Weights};
use crate::placement::{self, DeviceChoice, Opened};
use crate::reduce::report::TileReport;
use crate::reduce::ReduceSpec;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub threads: Option<usize>,
    pub device: DeviceChoice,
    /// Storage type of the weights; `None` keeps the checkpoint's.
    pub dtype: Option<DType>,
    /// Text tokens after the image in the prompt.
    pub text_tokens: usize,
    /// Tokens generated after prefill.
    pub decode_tokens: usize,
    /// Reductions to measure, each on the same model and prompt.
    pub reduce: Vec<ReduceSpec>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub ms_load: f64,
    /// What decoding one token must read at least: every language-model weight except
    /// the embedding table (of which it reads one row).
    pub decode_weight_bytes: usize,
    /// Read + write traffic per second of a large device-to-device copy: the memory
    /// bandwidth decoding can hope for (host memory on the CPU backend).
    pub copy_bandwidth_bytes_per_s: f64,
    /// `copy_bandwidth_bytes_per_s / decode_weight_bytes`: decode speed if reading the
    /// weights were all it cost.
    pub decode_tokens_per_s_bound: f64,
    pub runs: Vec<BenchRun>,
    /// Peak resident memory of the process (VmHWM), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRun {
    pub reduce: String,
    pub vision_tokens: usize,
    pub prompt_tokens: usize,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens: usize,
    pub decode_tokens_per_s: f64,
    /// Time to first token: image encoding plus prefill.
    pub ttft_ms: f64,
    pub stats: GenerationStats,
}

pub fn run(dir: &Path, options: &BenchOptions) -> Result<BenchReport> {
    match placement::open(options.device, options.threads, options.dtype)? {
        Opened::Cpu(backend) => run_on(backend, dir, options),
        #[cfg(feature = "cuda")]
        Opened::Cuda(backend) => run_on(*backend, dir, options),
    }
}

fn run_on<B: Backend>(backend: B, dir: &Path, options: &BenchOptions) -> Result<BenchReport> {
    let config = LlavaConfig::from_dir(dir)?;
    let started = Instant::now();
    let model = {
        let weights = Weights::open(dir)?;
        let mut model = Llava::load(&backend, &weights, config)?;
        model.predictors = DynamicPredictors::load(&backend, &weights, dir, &model.config)?;
        backend.check()?;
        model
    };
    let ms_load = ms_since(started);
    let decode_weight_bytes = model.language.decode_weight_bytes(&backend);
    let copy_bandwidth_bytes_per_s = copy_bandwidth(&backend)?;
    let runs = options
        .reduce
        .iter()
        .map(|spec| run_one(&backend, &model, spec, options))
        .collect::<Result<Vec<_>>>()?;
    Ok(BenchReport {
        backend: backend.description(),
        ms_load,
        decode_weight_bytes,
        copy_bandwidth_bytes_per_s,
        decode_tokens_per_s_bound: copy_bandwidth_bytes_per_s / decode_weight_bytes.max(1) as f64,
        runs,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Bytes of each copy in the bandwidth measurement: far beyond any cache.
const COPY_BYTES: usize = 512 << 20;
const COPY_REPEATS: usize = 5;

/// Memory traffic (bytes read plus bytes written) per second of copying a large tensor,
/// the best of a few runs after a warm-up; reading one element back waits for the copy.
fn copy_bandwidth<B: Backend>(b: &B) -> Result<f64> {
    let cols = 4096;
    let rows = COPY_BYTES / 4 / cols;
    let (mut src, mut dst) = (b.new_tensor(), b.new_tensor());
    b.reserve_rows(&mut src, rows, cols);
    b.reserve_rows(&mut dst, rows, cols);
    let mut probe = vec![0f32; cols];
    let mut best = f64::INFINITY;
    for repeat in 0..=COPY_REPEATS {
        let started = Instant::now();
        b.copy_rows(&src, 0, &mut dst, 0, rows);
        b.download_row(&dst, rows - 1, &mut probe);
        if repeat > 0 {
            best = best.min(started.elapsed().as_secs_f64());
        }
    }
    b.check()?;
    Ok(2.0 * (rows * cols * 4) as f64 / best)
}

fn run_one<B: Backend>(backend: &B, model: &Llava<B>, spec: &ReduceSpec, options: &BenchOptions) -> Result<BenchRun> {
    let cfg = &model.config;
    let plan = spec.plan(model)?;
    let mut stats = GenerationStats {
        backend: backend.description(),
        reduce: spec.text.clone(),
        ..Default::default()
    };
    let size = cfg.vision.image_size;
    let pixels = |crop: usize| -> Vec<f32> {
        (0..3 * size * size)
            .map(|i| ((i * 7919 + crop * 104_729) % 255) as f32 / 64.0 - 2.0)
            .collect()
    };
    let started = Instant::now();
    let encoder = plan.encoder.as_deref();
    let tiling = largest_tiling(cfg);
    let (image, flops_vision) = match &tiling {
        Some(layout) => {
            let crops: Vec<Vec<f32>> = (0..1 + layout.tiles.height * layout.tiles.width).map(pixels).collect();
            model.encode_tiled_image(backend, &crops, layout, encoder)?
        }
        None => model.encode_image(backend, &pixels(0), encoder)?,
    };
    stats.ms_encode = ms_since(started);
    stats.flops_vision = flops_vision;

    let slot = image.slot_len;
    let vision_tokens = image.tokens.len();
    stats.vision_tokens_in = slot;
    stats.after_encoder = vision_tokens;
    let vocab = cfg.text.vocab_size as u32;
    let mut ids = vec![1u32];
    ids.extend(std::iter::repeat_n(cfg.image_token_index, vision_tokens));
    ids.extend((0..options.text_tokens as u32).map(|i| (100 + i * 37) % vocab));
    let images = vec![image];
    let sequence = initial_sequence(&ids, cfg.image_token_index, &images, plan.positions);
    let unreduced_len = ids.len() - vision_tokens + slot;
    let prompt = PreparedPrompt {
        ids,
        images,
        sequence,
        unreduced_len,
    };

    crate::generate::session::ensure_kv_fits(backend, model, prompt.ids.len(), options.decode_tokens)?;
    let mut state = GenerationState::new(backend, model, plan, prompt.ids.len() + options.decode_tokens);
    let started = Instant::now();
    state.prefill(backend, model, &prompt)?;
    stats.ms_prefill = ms_since(started);

    // Greedy, as a user's default run: on a device only the chosen id leaves it.
    let started = Instant::now();
    for _ in 0..options.decode_tokens {
        let (logits, rider) = state.logits_and_rider();
        let id = backend.argmax_row(logits, 0, rider);
        state.settle(backend);
        state.step(backend, &model.language, id)?;
    }
    state.settle(backend);
    stats.ms_decode = ms_since(started);
    stats.prompt_tokens = unreduced_len;
    stats.generated_tokens = options.decode_tokens;
    let mut reduction = state.finish(&mut stats);
    if let (Some(layout), Some(report)) = (&tiling, reduction.images.first_mut()) {
        let canvas = ImageGeometry::unscaled(layout.best.width, layout.best.height);
        report.tiles = Some(TileReport::new(layout, canvas));
        stats.crops = vec![report.crop_counts()];
    }
    Ok(BenchRun {
        reduce: spec.text.clone(),
        vision_tokens,
        prompt_tokens: unreduced_len,
        prefill_tokens_per_s: unreduced_len as f64 / (stats.ms_prefill / 1e3),
        decode_tokens: options.decode_tokens,
        decode_tokens_per_s: options.decode_tokens as f64 / (stats.ms_decode / 1e3),
        ttft_ms: stats.ms_encode + stats.ms_prefill,
        stats,
    })
}

/// For a tiling model (LLaVA-NeXT), the layout of an image exactly the size of its largest
/// tile grid: every tile whole, nothing unpadded, the most tokens an image can bring.
fn largest_tiling(cfg: &LlavaConfig) -> Option<AnyresLayout> {
    let grids = cfg.image_grid_pinpoints.as_deref()?;
    let largest = *grids.iter().max_by_key(|grid| grid.height * grid.width)?;
    AnyresLayout::new(largest, grids, cfg.vision.image_size, cfg.vision.patch_size)
}

/// A Markdown table of the runs, each with its prefill time, FLOPs and KV bytes as a ratio
/// to the first run's.
pub fn ratio_table(report: &BenchReport) -> String {
    let Some(base) = report.runs.first() else {
        return String::new();
    };
    let ratio = |x: f64, b: f64| if b > 0.0 { x / b } else { 0.0 };
    let mut out = String::from(
        "| reduce | tokens after encoder / prefill | equal tokens | prefill ms (×) | prefill GFLOPs (×) | \
         KV MiB after prefill (×) | KV MiB final (×) | TTFT ms | decode tok/s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in &report.runs {
        let s = &run.stats;
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        out.push_str(&format!(
            "| {} | {} / {} | {:.1} | {:.0} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.0} | {:.2} |\n",
            run.reduce,
            s.after_encoder,
            s.after_prefill,
            s.equal_tokens,
            s.ms_prefill,
            ratio(s.ms_prefill, base.stats.ms_prefill),
            s.flops_prefill / 1e9,
            ratio(s.flops_prefill, base.stats.flops_prefill),
            mib(s.kv_bytes_after_prefill),
            ratio(
                s.kv_bytes_after_prefill as f64,
                base.stats.kv_bytes_after_prefill as f64
            ),
            mib(s.kv_bytes_final),
            ratio(s.kv_bytes_final as f64, base.stats.kv_bytes_final as f64),
            run.ttft_ms,
            run.decode_tokens_per_s,
        ));
    }
    out
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// High-water mark of resident memory from /proc (Linux); 0 elsewhere.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SyntheticSpec;

    /// A tiny tiling model through the benchmark: the image fills the largest grid (2×2
    /// tiles of 2×2 patches: 4 base tokens, 4 rows of 4 + newline), and a budget counts over
    /// all of it.
    #[test]
    fn a_tiling_model_is_measured_on_its_largest_grid() {
        let spec = SyntheticSpec {
            vision_hidden: 32,
            vision_intermediate: 64,
            vision_layers: 2,
            vision_heads: 2,
            image_size: 28,
            patch_size: 14,
            text_hidden: 64,
            text_intermediate: 128,
            text_layers: 2,
            text_heads: 4,
            text_kv_heads: 4,
            vocab_size: 300,
            grid_pinpoints: Some(vec![[28, 56], [56, 28], [56, 56]]),
        };
        let dir = std::env::temp_dir().join(format!("glimpse-bench-next-{}", std::process::id()));
        spec.write(&dir, 7).unwrap();
        let options = BenchOptions {
            threads: Some(1),
            device: DeviceChoice::Cpu,
            dtype: None,
            text_tokens: 5,
            decode_tokens: 2,
            reduce: ["none", "fastv:k=1,keep=10"]
                .map(|s| ReduceSpec::parse(s).unwrap())
                .to_vec(),
        };
        let report = run(&dir, &options).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (none, fastv) = (&report.runs[0], &report.runs[1]);
        assert_eq!(none.vision_tokens, 4 + 4 * 5);
        assert_eq!(none.stats.after_prefill, 24);
        assert_eq!(fastv.stats.after_prefill, 10);
        assert!(fastv.stats.flops_prefill < none.stats.flops_prefill);
        assert!(fastv.stats.kv_bytes_after_prefill < none.stats.kv_bytes_after_prefill);

        let crops = &none.stats.crops[0];
        let names: Vec<&str> = crops.iter().map(|c| c.crop.as_str()).collect();
        assert_eq!(
            names,
            ["base", "tile 1,1", "tile 1,2", "tile 2,1", "tile 2,2", "newlines"]
        );
        assert!(crops.iter().all(|c| c.tokens_in == 4 && c.kept == 4));
        let kept: usize = fastv.stats.crops[0].iter().map(|c| c.kept).sum();
        assert_eq!(kept, 10);
    }
}
