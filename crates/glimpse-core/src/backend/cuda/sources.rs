//! The kernel files, embedded in the binary, and the program text NVRTC compiles.

/// One `.cu` file of `kernels/`: compiled as one NVRTC program, holding `kernels`.
#[derive(Debug)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    /// Its `extern "C" __global__` entry points (checked against the source by a test).
    pub kernels: &'static [&'static str],
}

const COMMON_NAME: &str = "common.cuh";
const COMMON: &str = include_str!("kernels/common.cuh");

pub const FILES: &[KernelFile] = &[
    KernelFile {
        name: "activations.cu",
        source: include_str!("kernels/activations.cu"),
        kernels: &["activate", "gated_activate"],
    },
    KernelFile {
        name: "argmax.cu",
        source: include_str!("kernels/argmax.cu"),
        kernels: &["argmax_rows"],
    },
    KernelFile {
        name: "attention_decode.cu",
        source: include_str!("kernels/attention_decode.cu"),
        kernels: &["attention_decode_split", "attention_decode_combine"],
    },
    KernelFile {
        name: "attention_prefill.cu",
        source: include_str!("kernels/attention_prefill.cu"),
        kernels: &["attention_prefill"],
    },
    KernelFile {
        name: "attention_probs.cu",
        source: include_str!("kernels/attention_probs.cu"),
        kernels: &["attention_probs_heads", "attention_probs_reduce"],
    },
    KernelFile {
        name: "elementwise.cu",
        source: include_str!("kernels/elementwise.cu"),
        kernels: &["add", "add_bias", "round_to_f16", "round_to_bf16"],
    },
    KernelFile {
        name: "mustdrop.cu",
        source: include_str!("kernels/mustdrop.cu"),
        kernels: &[
            "window_similarity",
            "window_merge",
            "accumulate_attention",
            "count_evictable",
        ],
    },
    KernelFile {
        name: "norms.cu",
        source: include_str!("kernels/norms.cu"),
        kernels: &[
            "rms_norm_f32",
            "rms_norm_f16",
            "rms_norm_bf16",
            "layer_norm_f32",
            "layer_norm_f16",
            "layer_norm_bf16",
        ],
    },
    KernelFile {
        name: "rope.cu",
        source: include_str!("kernels/rope.cu"),
        kernels: &["rope"],
    },
    KernelFile {
        name: "rows.cu",
        source: include_str!("kernels/rows.cu"),
        kernels: &[
            "gather_rows_f32",
            "gather_rows_f16",
            "gather_rows_bf16",
            "select_rows",
            "retain_rows",
        ],
    },
    KernelFile {
        name: "sample.cu",
        source: include_str!("kernels/sample.cu"),
        kernels: &["sample_row", "penalize_repeats"],
    },
    KernelFile {
        name: "softmax.cu",
        source: include_str!("kernels/softmax.cu"),
        kernels: &["softmax_rows"],
    },
];

/// The file's text with `#include "common.cuh"` replaced by that header's text: the
/// kernels are embedded strings at run time, with no directory for NVRTC to search.
/// `#line` directives keep compiler messages pointing at the original files and lines.
pub fn program_source(file: &KernelFile) -> String {
    let include = format!("#include \"{COMMON_NAME}\"");
    let mut out = String::with_capacity(COMMON.len() + file.source.len() + 100);
    for (n, line) in file.source.lines().enumerate() {
        if line.trim() == include {
            out.push_str(&format!("#line 1 \"{COMMON_NAME}\"\n"));
            out.push_str(COMMON);
            out.push_str(&format!("\n#line {} \"{}\"\n", n + 2, file.name));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry points named in a source (`extern "C" __global__ void NAME(`).
    fn declared_kernels(source: &str) -> Vec<&str> {
        const MARK: &str = "extern \"C\" __global__ void ";
        source
            .match_indices(MARK)
            .map(|(at, _)| {
                let rest = &source[at + MARK.len()..];
                rest[..rest.find('(').unwrap()].trim()
            })
            .collect()
    }

    #[test]
    fn every_kernel_file_is_listed_with_its_entry_points() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/cuda/kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cu"))
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = FILES.iter().map(|f| f.name).collect();
        assert_eq!(on_disk, listed);
        for f in FILES {
            assert_eq!(declared_kernels(f.source), f.kernels, "{}", f.name);
        }
    }

    #[test]
    fn program_source_inlines_the_common_header_once() {
        for f in FILES {
            let text = program_source(f);
            assert!(!text.contains("#include \""), "{} still includes a file", f.name);
            assert_eq!(text.matches("#define GLIMPSE_COMMON_CUH").count(), 1, "{}", f.name);
        }
        // After the header, line numbers resume at the line after the include.
        let norms = FILES.iter().find(|f| f.name == "norms.cu").unwrap();
        let include_line = norms.source.lines().position(|l| l.starts_with("#include")).unwrap();
        assert!(program_source(norms).contains(&format!("#line {} \"norms.cu\"", include_line + 2)));
    }
}
