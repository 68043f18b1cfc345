//! `glimpse-bench`: prefill/decode throughput and peak memory of one model.
//!
//! Usage:
//!   glimpse-bench --model DIR [--device auto|cuda|cpu] [--dtype auto|f32|f16|bf16] [--threads N]
//!                 [--text-tokens N] [--decode-tokens N] [--reduce SPEC]...
//!   glimpse-bench --synthetic-7b TEXT_LAYERS [--vision-layers N] [--workdir DIR] ...
//!   glimpse-bench --synthetic-next-7b TEXT_LAYERS [--vision-layers N] [--workdir DIR] ...
//!
//! `--synthetic-7b` writes a random-weight bf16 checkpoint with llava-1.5-7b's layer
//! shapes (fewer layers) to the work directory first, then measures it;
//! `--synthetic-next-7b` does the same with llava-v1.6-vicuna-7b's (LLaVA-NeXT: the image
//! cut into 2×2 tiles plus the whole, 2,928 image tokens). Prints one JSON
//! object per model on stdout, and on stderr a table of each `--reduce` run against the
//! first one (give `--reduce none` first to read the columns as ratios to no reduction),
//! and the decode speed against the bound set by reading the weights once per token at
//! the measured copy bandwidth.

use std::path::PathBuf;
use std::process::ExitCode;

use glimpse_core::bench::{self, BenchOptions, BenchReport};
use glimpse_core::model::weights::DType;
use glimpse_core::placement::DeviceChoice;
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::synthetic::SyntheticSpec;

/// Which synthetic checkpoint to write: LLaVA-1.5-7B's or LLaVA-NeXT-7B's shapes.
#[derive(Clone, Copy)]
enum Synthetic {
    Llava15,
    Next,
}

struct Args {
    model: Option<PathBuf>,
    synthetic: Option<(Synthetic, usize)>,
    vision_layers: usize,
    workdir: PathBuf,
    options: BenchOptions,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        synthetic: None,
        vision_layers: 24,
        workdir: std::env::temp_dir().join("glimpse-bench-synthetic"),
        options: BenchOptions {
            threads: None,
            device: DeviceChoice::Auto,
            dtype: None,
            text_tokens: 32,
            decode_tokens: 32,
            reduce: Vec::new(),
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("{flag}: '{v}' is not a number"));
        match flag.as_str() {
            "--model" => args.model = Some(PathBuf::from(value()?)),
            "--synthetic-7b" => args.synthetic = Some((Synthetic::Llava15, number(value()?)?)),
            "--synthetic-next-7b" => args.synthetic = Some((Synthetic::Next, number(value()?)?)),
            "--vision-layers" => args.vision_layers = number(value()?)?,
            "--workdir" => args.workdir = PathBuf::from(value()?),
            "--threads" => args.options.threads = Some(number(value()?)?),
            "--device" => args.options.device = DeviceChoice::parse(&value()?).map_err(|e| e.message)?,
            "--dtype" => args.options.dtype = DType::parse_choice(&value()?).map_err(|e| e.message)?,
            "--text-tokens" => args.options.text_tokens = number(value()?)?,
            "--decode-tokens" => args.options.decode_tokens = number(value()?)?,
            "--reduce" => args
                .options
                .reduce
                .push(ReduceSpec::parse(&value()?).map_err(|e| e.message)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.options.reduce.is_empty() {
        args.options.reduce.push(ReduceSpec::default());
    }
    if args.model.is_some() == args.synthetic.is_some() {
        return Err(
            "give exactly one of --model DIR, --synthetic-7b TEXT_LAYERS or --synthetic-next-7b TEXT_LAYERS".into(),
        );
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("glimpse-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let (dir, label) = match (args.model, args.synthetic) {
        (Some(dir), _) => {
            let label = dir.display().to_string();
            (dir, label)
        }
        (None, Some((family, layers))) => {
            let (spec, name) = match family {
                Synthetic::Llava15 => (SyntheticSpec::llava_1_5_7b(layers, args.vision_layers), "llava-1.5-7b"),
                Synthetic::Next => (
                    SyntheticSpec::llava_next_7b(layers, args.vision_layers),
                    "llava-v1.6-vicuna-7b",
                ),
            };
            if let Err(e) = spec.write(&args.workdir, 0) {
                eprintln!("glimpse-bench: {e}");
                return ExitCode::from(2);
            }
            let label = format!(
                "synthetic {name} shapes, {layers} LM layers, {} vision layers, {} weights",
                args.vision_layers,
                args.options.dtype.map_or("bf16", DType::name)
            );
            (args.workdir, label)
        }
        (None, None) => unreachable!("parse() requires one source"),
    };
    match bench::run(&dir, &args.options) {
        Ok(report) => {
            let mut json = serde_json::to_value(&report).unwrap_or_default();
            json["model"] = serde_json::Value::String(label);
            println!("{json}");
            eprint!("{}", bench::ratio_table(&report));
            eprintln!("{}", bandwidth_line(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("glimpse-bench: {e}");
            ExitCode::from(3)
        }
    }
}

/// Decode speed against reading the weights once per token at the copy bandwidth.
fn bandwidth_line(report: &BenchReport) -> String {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let best = report.runs.iter().map(|r| r.decode_tokens_per_s).fold(0.0, f64::max);
    format!(
        "decode reads {:.2} GiB of weights per token; copy bandwidth {:.0} GiB/s (read + write) bounds decode at \
         {:.1} tokens/s; best measured {best:.1} tokens/s ({:.0}% of the bound) on {}",
        gib(report.decode_weight_bytes as f64),
        gib(report.copy_bandwidth_bytes_per_s),
        report.decode_tokens_per_s_bound,
        100.0 * best / report.decode_tokens_per_s_bound.max(1e-9),
        report.backend
    )
}
