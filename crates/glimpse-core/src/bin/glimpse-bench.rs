//! `glimpse-bench`: prefill/decode throughput and peak memory of one model.
//!
//! Usage:
//!   glimpse-bench --model DIR [--threads N] [--text-tokens N] [--decode-tokens N] [--reduce SPEC]...
//!   glimpse-bench --synthetic-7b TEXT_LAYERS [--vision-layers N] [--workdir DIR] ...
//!
//! `--synthetic-7b` writes a random-weight bf16 checkpoint with llava-1.5-7b's layer
//! shapes (fewer layers) to the work directory first, then measures it. Prints one JSON
//! object per model on stdout, and on stderr a table of each `--reduce` run against the
//! first one (give `--reduce none` first to read the columns as ratios to no reduction).

use std::path::PathBuf;
use std::process::ExitCode;

use glimpse_core::bench::{self, BenchOptions};
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::synthetic::SyntheticSpec;

struct Args {
    model: Option<PathBuf>,
    synthetic_layers: Option<usize>,
    vision_layers: usize,
    workdir: PathBuf,
    options: BenchOptions,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        synthetic_layers: None,
        vision_layers: 24,
        workdir: std::env::temp_dir().join("glimpse-bench-synthetic"),
        options: BenchOptions {
            threads: None,
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
            "--synthetic-7b" => args.synthetic_layers = Some(number(value()?)?),
            "--vision-layers" => args.vision_layers = number(value()?)?,
            "--workdir" => args.workdir = PathBuf::from(value()?),
            "--threads" => args.options.threads = Some(number(value()?)?),
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
    if args.model.is_some() == args.synthetic_layers.is_some() {
        return Err("give exactly one of --model DIR or --synthetic-7b TEXT_LAYERS".into());
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
    let (dir, label) = match (args.model, args.synthetic_layers) {
        (Some(dir), _) => {
            let label = dir.display().to_string();
            (dir, label)
        }
        (None, Some(layers)) => {
            let spec = SyntheticSpec::llava_1_5_7b(layers, args.vision_layers);
            if let Err(e) = spec.write(&args.workdir, 0) {
                eprintln!("glimpse-bench: {e}");
                return ExitCode::from(2);
            }
            let label = format!(
                "synthetic llava-1.5-7b shapes, {layers} LM layers, {} vision layers, bf16",
                args.vision_layers
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("glimpse-bench: {e}");
            ExitCode::from(3)
        }
    }
}
