//! Checkpoint tensors: safetensors files (single or sharded), memory-mapped.
//!
//! Opening a checkpoint maps every file and checks every header up front (offsets inside
//! the file, no overlaps, shape × dtype = byte length), so a damaged or truncated download
//! fails at load time with one line naming the file and tensor, never later with a panic
//! or garbage numbers. Dtypes are only judged when a tensor is requested: checkpoints may
//! carry integer buffers the model never reads.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16, slice::HalfFloatSliceExt};
use memmap2::Mmap;
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Storage type of a checkpoint tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The lowercase name `--dtype` takes and `inspect` shows.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// Parses `--dtype`: `auto` (the checkpoint's own type, `None`), `f32`, `f16` or
    /// `bf16` (also `float32`, `float16`/`fp16`, `bfloat16`).
    pub fn parse_choice(text: &str) -> Result<Option<DType>> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(None),
            "f32" | "float32" | "fp32" => Ok(Some(DType::F32)),
            "f16" | "float16" | "fp16" => Ok(Some(DType::F16)),
            "bf16" | "bfloat16" => Ok(Some(DType::BF16)),
            _ => Err(Error::usage(format!(
                "unknown --dtype '{text}': use auto, f32, f16 or bf16"
            ))),
        }
    }
}

/// A borrowed view of one tensor inside a mapped file. `bytes` is little-endian and may
/// be unaligned.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// The name as stored in the checkpoint (which may differ from the requested name
    /// when the checkpoint uses another layout).
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values widened to f32 (exact for every supported dtype).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.bytes.len() / self.dtype.size()];
        convert_parallel(self.dtype, self.bytes, &mut out, convert_chunk_f32);
        out
    }

    /// The values as f16: a copy for F16 tensors, rounded to nearest-even otherwise.
    pub fn to_f16_vec(&self) -> Vec<f16> {
        let mut out = vec![f16::ZERO; self.bytes.len() / self.dtype.size()];
        convert_parallel(self.dtype, self.bytes, &mut out, convert_chunk_f16);
        out
    }

    /// The values as bf16: a copy for BF16 tensors, rounded to nearest-even otherwise.
    pub fn to_bf16_vec(&self) -> Vec<bf16> {
        let mut out = vec![bf16::ZERO; self.bytes.len() / self.dtype.size()];
        convert_parallel(self.dtype, self.bytes, &mut out, convert_chunk_bf16);
        out
    }

    /// Calls `f` with this tensor stored as `dtype` (`None` or its own type: as it is;
    /// otherwise a converted copy), for backends that keep weights in a chosen type.
    pub fn with_storage<R>(&self, dtype: Option<DType>, f: impl FnOnce(&TensorView<'_>) -> R) -> R {
        let Some(dtype) = dtype.filter(|&d| d != self.dtype) else {
            return f(self);
        };
        let (f32s, f16s, bf16s);
        let bytes: &[u8] = match dtype {
            DType::F32 => {
                f32s = self.to_f32_vec();
                bytemuck::cast_slice(&f32s)
            }
            DType::F16 => {
                f16s = self.to_f16_vec();
                bytemuck::cast_slice(&f16s)
            }
            DType::BF16 => {
                bf16s = self.to_bf16_vec();
                bytemuck::cast_slice(&bf16s)
            }
        };
        f(&TensorView { dtype, bytes, ..*self })
    }
}

/// Totals over every tensor of a checkpoint, for `glimpse inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSummary {
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
    /// The safetensors dtype name ("BF16", "F32", ...) holding the most parameters.
    pub dominant_dtype: String,
}

pub struct Weights {
    /// The checkpoint directory (or the single file) the tensors come from.
    dir: PathBuf,
    files: Vec<MappedFile>,
    tensors: HashMap<String, Entry>,
}

struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

/// Where one tensor lives; the byte range is absolute within its file's mapping and was
/// checked against the file length and the shape at open time.
struct Entry {
    file: usize,
    dtype: StoredDtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A header dtype: one safetensors knows, or a string it does not (kept so the error can
/// name it if that tensor is ever requested).
#[derive(Debug, Clone, PartialEq)]
enum StoredDtype {
    Known(safetensors::Dtype),
    Unknown(String),
}

impl StoredDtype {
    fn name(&self) -> String {
        match self {
            StoredDtype::Known(d) => d.to_string(),
            StoredDtype::Unknown(s) => s.clone(),
        }
    }
}

impl Weights {
    /// Opens `model.safetensors` or every shard named by `model.safetensors.index.json`
    /// (or, failing both, every `*.safetensors` file in `dir`).
    pub fn open(dir: &Path) -> Result<Self> {
        let plan = checkpoint_files(dir)?;
        let weights = Self::map_files(dir, plan.files)?;
        if let Some(index) = plan.index {
            weights.check_index(&index)?;
        }
        Ok(weights)
    }

    /// Opens a single safetensors file on its own (a side file kept beside a checkpoint);
    /// error messages name the file.
    pub fn open_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::model(format!("{}: no such file", path.display())));
        }
        Self::map_files(path, vec![path.to_path_buf()])
    }

    /// Maps `files` and indexes their tensors; `origin` names the checkpoint in messages.
    fn map_files(origin: &Path, paths: Vec<PathBuf>) -> Result<Self> {
        let mut files: Vec<MappedFile> = Vec::with_capacity(paths.len());
        let mut tensors: HashMap<String, Entry> = HashMap::new();
        for path in paths {
            let map = map_file(&path)?;
            let index = files.len();
            for (name, mut entry) in parse_header(&path, &map)? {
                entry.file = index;
                if let Some(previous) = tensors.get(&name) {
                    let first = &files[previous.file];
                    return Err(Error::model(format!(
                        "tensor '{name}' appears in both {} and {}",
                        first.path.display(),
                        path.display()
                    )));
                }
                tensors.insert(name, entry);
            }
            files.push(MappedFile { path, map });
        }
        Ok(Weights {
            dir: origin.to_path_buf(),
            files,
            tensors,
        })
    }

    /// Looks a tensor up by its llava-hf on-disk name, also trying the other layouts.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let (stored_name, entry) = self
            .lookup(name)
            .ok_or_else(|| Error::model(format!("checkpoint has no tensor '{name}' (in {})", self.dir.display())))?;
        let dtype = match entry.dtype {
            StoredDtype::Known(safetensors::Dtype::F32) => DType::F32,
            StoredDtype::Known(safetensors::Dtype::F16) => DType::F16,
            StoredDtype::Known(safetensors::Dtype::BF16) => DType::BF16,
            ref other => {
                return Err(Error::model(format!(
                    "{}: tensor '{stored_name}' has dtype {}; glimpse supports F32, F16, BF16",
                    self.files[entry.file].path.display(),
                    other.name()
                )))
            }
        };
        Ok(TensorView {
            name: stored_name,
            dtype,
            shape: &entry.shape,
            bytes: &self.files[entry.file].map[entry.start..entry.end],
        })
    }

    /// Like [`Weights::get`], and checks the shape.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<TensorView<'_>> {
        let view = self.get(name)?;
        if view.shape != shape {
            return Err(Error::model(format!(
                "tensor '{}' has shape {}, expected {}",
                view.name,
                fmt_shape(view.shape),
                fmt_shape(shape)
            )));
        }
        Ok(view)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// Whether any tensor's stored name starts with `prefix` (no layout renaming).
    pub fn has_stored_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|name| name.starts_with(prefix))
    }

    /// The checkpoint's own name for a requested tensor, if it has one.
    pub fn stored_name(&self, name: &str) -> Option<&str> {
        self.lookup(name).map(|(stored, _)| stored)
    }

    /// Every tensor name as stored, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The files that were mapped, in load order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    pub fn summary(&self) -> WeightsSummary {
        let mut parameters = 0u64;
        let mut bytes = 0u64;
        let mut per_dtype: HashMap<String, u64> = HashMap::new();
        for entry in self.tensors.values() {
            // Shapes were checked for overflow at open time.
            let count = entry.shape.iter().product::<usize>() as u64;
            parameters += count;
            bytes += (entry.end - entry.start) as u64;
            *per_dtype.entry(entry.dtype.name()).or_default() += count;
        }
        let dominant_dtype = per_dtype
            .into_iter()
            // Ties go to the alphabetically first name so the answer is stable.
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(name, _)| name)
            .unwrap_or_default();
        WeightsSummary {
            tensors: self.tensors.len(),
            parameters,
            bytes,
            dominant_dtype,
        }
    }

    fn lookup(&self, name: &str) -> Option<(&str, &Entry)> {
        name_candidates(name)
            .into_iter()
            .find_map(|candidate| self.tensors.get_key_value(candidate.as_str()))
            .map(|(stored, entry)| (stored.as_str(), entry))
    }

    /// Every weight_map entry must point at a shard that really holds that tensor;
    /// otherwise the index and the shards come from different downloads.
    fn check_index(&self, index: &ShardIndex) -> Result<()> {
        let mut entries: Vec<(&String, &String)> = index.weight_map.iter().collect();
        entries.sort();
        for (tensor, shard) in entries {
            let holder = self.tensors.get(tensor).map(|e| &self.files[e.file].path);
            if holder.is_none_or(|path| path.file_name() != Some(OsStr::new(shard))) {
                return Err(Error::model(format!(
                    "{}: maps tensor '{tensor}' to {shard}, which does not contain it",
                    index.path.display()
                )));
            }
        }
        Ok(())
    }
}

fn fmt_shape(shape: &[usize]) -> String {
    let mut out = String::from("[");
    for (i, dim) in shape.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{dim}");
    }
    out.push(']');
    out
}

// ---------------------------------------------------------------------------------------
// Name mapping. The model code asks for llava-hf Hub names; other writers put the same
// tensors under other prefixes. Each layout is a list of prefix renames (first match wins;
// names no rename matches are kept as they are).

/// (prefix the model asks for, prefix this layout stores instead).
type Renames = &'static [(&'static str, &'static str)];

const LAYOUTS: &[Renames] = &[
    // llava-hf on the Hub (transformers < 4.52 save_pretrained): the requested names.
    &[],
    // transformers 5.x save_pretrained: llava-hf names, but the CLIP tower is saved without
    // its `vision_model.` level.
    &[("vision_tower.vision_model.", "vision_tower.")],
    // transformers 4.52+ module names (a 4.x model's state_dict; found in re-uploaded
    // checkpoints): a `model.` root, lm_head at the top, NeXT's newline under the root.
    &[
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("image_newline", "model.image_newline"),
    ],
    // transformers 5.x state_dict (saved directly from a loaded model): as above, and the
    // CLIP tower without `vision_model.`.
    &[
        ("vision_tower.vision_model.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("image_newline", "model.image_newline"),
    ],
    // Original LLaVA (LlavaLlamaForCausalLM): Llama at the root, the projector as an
    // nn.Sequential (Linear, GELU, Linear), the CLIP tower wrapped in a second vision_tower.
    &[
        ("vision_tower.", "model.vision_tower.vision_tower."),
        ("multi_modal_projector.linear_1.", "model.mm_projector.0."),
        ("multi_modal_projector.linear_2.", "model.mm_projector.2."),
        ("language_model.model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ],
];

/// The names a requested llava-hf tensor name may have on disk, most likely first.
fn name_candidates(name: &str) -> Vec<String> {
    let mut candidates: Vec<String> = Vec::with_capacity(LAYOUTS.len());
    for renames in LAYOUTS {
        let renamed = renames
            .iter()
            .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
            .unwrap_or_else(|| name.to_string());
        if !candidates.contains(&renamed) {
            candidates.push(renamed);
        }
    }
    candidates
}

// ---------------------------------------------------------------------------------------
// Finding and mapping the files.

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

struct CheckpointFiles {
    files: Vec<PathBuf>,
    index: Option<ShardIndex>,
}

struct ShardIndex {
    path: PathBuf,
    weight_map: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: HashMap<String, String>,
}

fn checkpoint_files(dir: &Path) -> Result<CheckpointFiles> {
    if !dir.is_dir() {
        return Err(Error::model(format!("{}: not a directory", dir.display())));
    }
    // Same preference as transformers: the single file wins over an index.
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(CheckpointFiles {
            files: vec![single],
            index: None,
        });
    }
    let index_path = dir.join(INDEX_FILE);
    if index_path.is_file() {
        return read_index(dir, index_path);
    }
    let listing =
        std::fs::read_dir(dir).map_err(|e| Error::model(format!("{}: cannot list directory: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = listing
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    if files.is_empty() {
        return Err(Error::model(format!(
            "{}: no {SINGLE_FILE}, {INDEX_FILE} or other *.safetensors file",
            dir.display()
        )));
    }
    files.sort();
    Ok(CheckpointFiles { files, index: None })
}

fn read_index(dir: &Path, path: PathBuf) -> Result<CheckpointFiles> {
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::model(format!("{}: cannot read: {e}", path.display())))?;
    let raw: RawIndex =
        serde_json::from_str(&text).map_err(|e| Error::model(format!("{}: invalid index: {e}", path.display())))?;
    let shards: BTreeSet<&String> = raw.weight_map.values().collect();
    if shards.is_empty() {
        return Err(Error::model(format!("{}: weight_map names no shards", path.display())));
    }
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        let shard_path = dir.join(shard);
        // A bare file name only: the index must not send us outside the checkpoint.
        let plain_name = Path::new(shard).file_name() == Some(OsStr::new(shard));
        if !plain_name || !shard_path.is_file() {
            return Err(Error::model(format!(
                "{}: names shard '{shard}', which is missing from {}",
                path.display(),
                dir.display()
            )));
        }
        files.push(shard_path);
    }
    Ok(CheckpointFiles {
        files,
        index: Some(ShardIndex {
            path,
            weight_map: raw.weight_map,
        }),
    })
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| Error::model(format!("{}: cannot open: {e}", path.display())))?;
    // SAFETY: the mapping is read-only. Like every mmap-based loader we rely on nobody
    // truncating or rewriting the checkpoint while it is in use.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::model(format!("{}: cannot map: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------
// Header parsing and validation. Layout: u64 little-endian header length N, N bytes of
// JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then
// the data section, which the offsets index.

const LENGTH_PREFIX: usize = 8;
/// The limit the safetensors crate itself enforces; a larger "length" means the file is
/// not safetensors at all.
const MAX_HEADER_BYTES: u64 = 100_000_000;

#[derive(Deserialize)]
struct RawTensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Parses and checks one file's header; returns entries with `file` left at 0.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Entry)>> {
    let file = path.display();
    let bad = |message: String| Error::model(format!("{file}: {message}"));

    let Some(prefix) = bytes.first_chunk::<LENGTH_PREFIX>() else {
        return Err(bad(format!(
            "too short to be a safetensors file ({} bytes)",
            bytes.len()
        )));
    };
    let header_len = u64::from_le_bytes(*prefix);
    let available = (bytes.len() - LENGTH_PREFIX) as u64;
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {header_len} is implausible; not a safetensors file?"
        )));
    }
    if header_len > available {
        return Err(bad(format!(
            "truncated: header length {header_len} exceeds the {available} bytes after the length prefix"
        )));
    }
    let data_start = LENGTH_PREFIX + header_len as usize;
    let data_len = bytes.len() - data_start;
    let header: HashMap<String, Value> = serde_json::from_slice(&bytes[LENGTH_PREFIX..data_start])
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;

    let mut entries = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let info = RawTensorInfo::deserialize(value)
            .map_err(|e| bad(format!("tensor '{name}' has a malformed header entry: {e}")))?;
        let [begin, end] = info.data_offsets;
        if end < begin {
            return Err(bad(format!(
                "tensor '{name}' has data_offsets [{begin}, {end}] that run backwards"
            )));
        }
        if end > data_len {
            return Err(bad(format!(
                "truncated: tensor '{name}' needs bytes up to {end} of the data section but the file holds only {data_len}"
            )));
        }
        let dtype = match serde_json::from_value::<safetensors::Dtype>(Value::String(info.dtype.clone())) {
            Ok(known) => StoredDtype::Known(known),
            Err(_) => StoredDtype::Unknown(info.dtype),
        };
        let elements = info.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let Some(elements) = elements else {
            return Err(bad(format!(
                "tensor '{name}' has an impossibly large shape {}",
                fmt_shape(&info.shape)
            )));
        };
        // An unknown dtype has no known width; its range is still checked above and below.
        if let StoredDtype::Known(known) = &dtype {
            let expected_bytes = elements
                .checked_mul(known.bitsize())
                .filter(|bits| bits.is_multiple_of(8))
                .map(|bits| bits / 8);
            if expected_bytes != Some(end - begin) {
                let expected = expected_bytes.map_or_else(|| "a fractional number of".to_string(), |b| b.to_string());
                return Err(bad(format!(
                    "tensor '{name}' has shape {} and dtype {known} ({expected} bytes) but data_offsets [{begin}, {end}] span {} bytes",
                    fmt_shape(&info.shape),
                    end - begin
                )));
            }
        }
        entries.push((
            name,
            Entry {
                file: 0,
                dtype,
                shape: info.shape,
                start: data_start + begin,
                end: data_start + end,
            },
        ));
    }
    check_overlaps(&entries).map_err(bad)?;
    Ok(entries)
}

/// Two tensors sharing bytes means the header lies about at least one of them.
fn check_overlaps(entries: &[(String, Entry)]) -> std::result::Result<(), String> {
    let mut ranges: Vec<(usize, usize, &str)> = entries
        .iter()
        .filter(|(_, e)| e.end > e.start)
        .map(|(name, e)| (e.start, e.end, name.as_str()))
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.0 < a.1 {
            return Err(format!("tensors '{}' and '{}' overlap in the data section", a.2, b.2));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Dtype conversion. Source bytes are little-endian and possibly unaligned, so each chunk
// is first copied into an aligned stack buffer (a memcpy), then converted with `half`'s
// slice routines (F16C / NEON when the CPU has them).

/// Elements per stack buffer.
const CHUNK: usize = 1024;
/// Tensors at least this large are converted on all cores.
const PARALLEL_MIN: usize = 1 << 20;
const PARALLEL_BLOCK: usize = 1 << 16;

fn convert_parallel<T: Send>(dtype: DType, bytes: &[u8], out: &mut [T], chunk_fn: fn(DType, &[u8], &mut [T])) {
    let convert = |bytes: &[u8], out: &mut [T]| {
        for (src, dst) in bytes.chunks(CHUNK * dtype.size()).zip(out.chunks_mut(CHUNK)) {
            chunk_fn(dtype, src, dst);
        }
    };
    if out.len() >= PARALLEL_MIN {
        bytes
            .par_chunks(PARALLEL_BLOCK * dtype.size())
            .zip(out.par_chunks_mut(PARALLEL_BLOCK))
            .for_each(|(src, dst)| convert(src, dst));
    } else {
        convert(bytes, out);
    }
}

/// Copies little-endian source values into an aligned buffer in native order; returns
/// how many were copied.
fn load_le<T: bytemuck::Pod>(src: &[u8], buf: &mut [T]) -> usize {
    let n = src.len() / std::mem::size_of::<T>();
    bytemuck::cast_slice_mut::<T, u8>(&mut buf[..n]).copy_from_slice(src);
    #[cfg(target_endian = "big")]
    for v in &mut buf[..n] {
        bytemuck::bytes_of_mut(v).reverse();
    }
    n
}

fn convert_chunk_f32(dtype: DType, src: &[u8], dst: &mut [f32]) {
    match dtype {
        DType::F32 => {
            load_le(src, dst);
        }
        DType::F16 => {
            let mut buf = [f16::ZERO; CHUNK];
            let n = load_le(src, &mut buf);
            buf[..n].convert_to_f32_slice(dst);
        }
        DType::BF16 => {
            // bf16 is the top half of an f32: a shift is exact for every pattern (half's
            // converter would quiet signalling NaNs) and vectorises well.
            let mut buf = [0u16; CHUNK];
            let n = load_le(src, &mut buf);
            for (out, bits) in dst.iter_mut().zip(&buf[..n]) {
                *out = f32::from_bits(u32::from(*bits) << 16);
            }
        }
    }
}

fn convert_chunk_f16(dtype: DType, src: &[u8], dst: &mut [f16]) {
    if dtype == DType::F16 {
        load_le(src, dst);
    } else {
        // BF16 → f32 is exact, so going through f32 rounds only once.
        let mut wide = [0f32; CHUNK];
        convert_chunk_f32(dtype, src, &mut wide[..dst.len()]);
        dst.convert_from_f32_slice(&wide[..dst.len()]);
    }
}

fn convert_chunk_bf16(dtype: DType, src: &[u8], dst: &mut [bf16]) {
    if dtype == DType::BF16 {
        load_le(src, dst);
    } else {
        let mut wide = [0f32; CHUNK];
        convert_chunk_f32(dtype, src, &mut wide[..dst.len()]);
        dst.convert_from_f32_slice(&wide[..dst.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use safetensors::Dtype as St;

    /// One tensor to write: name, dtype, shape, raw little-endian bytes.
    type Spec<'a> = (&'a str, St, Vec<usize>, Vec<u8>);

    fn serialize(tensors: &[Spec<'_>]) -> Vec<u8> {
        let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).expect("valid view");
                (*name, view)
            })
            .collect();
        safetensors::serialize(views, None).expect("serialize")
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A hand-made file: length prefix, header text, data bytes.
    fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn dir_with(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        dir
    }

    fn open_err(dir: &tempfile::TempDir) -> Error {
        match Weights::open(dir.path()) {
            Ok(_) => panic!("expected open to fail"),
            Err(e) => e,
        }
    }

    fn file_in(dir: &tempfile::TempDir, name: &str) -> String {
        dir.path().join(name).display().to_string()
    }

    #[test]
    fn single_file_round_trip() {
        let values = [1.5f32, -2.0, 0.25, 1e-3, 7.0, -0.0];
        let bytes = serialize(&[
            (
                "language_model.model.norm.weight",
                St::F32,
                vec![2, 3],
                f32_bytes(&values),
            ),
            (
                "vision_tower.vision_model.pre_layrnorm.bias",
                St::F16,
                vec![2],
                vec![0x00, 0x3c, 0x00, 0xc0],
            ),
        ]);
        let dir = dir_with(&[("model.safetensors", bytes)]);
        let weights = Weights::open(dir.path()).expect("open");

        let norm = weights
            .get_shaped("language_model.model.norm.weight", &[2, 3])
            .expect("norm");
        assert_eq!(norm.name, "language_model.model.norm.weight");
        assert_eq!(norm.dtype, DType::F32);
        assert_eq!(norm.num_elements(), 6);
        assert_eq!(norm.to_f32_vec(), values);
        let bias = weights
            .get("vision_tower.vision_model.pre_layrnorm.bias")
            .expect("bias");
        assert_eq!((bias.dtype, bias.shape), (DType::F16, &[2usize][..]));
        assert_eq!(bias.to_f32_vec(), [1.0, -2.0]);
        assert!(weights.contains("language_model.model.norm.weight"));
        assert!(!weights.contains("language_model.lm_head.weight"));
        assert_eq!(
            weights.tensor_names(),
            [
                "language_model.model.norm.weight",
                "vision_tower.vision_model.pre_layrnorm.bias"
            ]
        );
        assert_eq!(
            weights.summary(),
            WeightsSummary {
                tensors: 2,
                parameters: 8,
                bytes: 28,
                dominant_dtype: "F32".into()
            }
        );
    }

    /// Every layout spells the same eight tensors differently; each must answer to the
    /// llava-hf names.
    #[test]
    fn every_layout_resolves_to_llava_hf_names() {
        const REQUESTED: [&str; 8] = [
            "vision_tower.vision_model.embeddings.patch_embedding.weight",
            "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
            "multi_modal_projector.linear_1.weight",
            "multi_modal_projector.linear_2.bias",
            "language_model.model.embed_tokens.weight",
            "language_model.model.layers.1.mlp.down_proj.weight",
            "language_model.model.norm.weight",
            "language_model.lm_head.weight",
        ];
        let layouts: [(&str, [&str; 8]); 5] = [
            ("llava-hf", REQUESTED),
            (
                "transformers 5 save_pretrained",
                [
                    "vision_tower.embeddings.patch_embedding.weight",
                    "vision_tower.encoder.layers.0.self_attn.q_proj.weight",
                    "multi_modal_projector.linear_1.weight",
                    "multi_modal_projector.linear_2.bias",
                    "language_model.model.embed_tokens.weight",
                    "language_model.model.layers.1.mlp.down_proj.weight",
                    "language_model.model.norm.weight",
                    "language_model.lm_head.weight",
                ],
            ),
            (
                "transformers 4.52+ module names",
                [
                    "model.vision_tower.vision_model.embeddings.patch_embedding.weight",
                    "model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
                    "model.multi_modal_projector.linear_1.weight",
                    "model.multi_modal_projector.linear_2.bias",
                    "model.language_model.embed_tokens.weight",
                    "model.language_model.layers.1.mlp.down_proj.weight",
                    "model.language_model.norm.weight",
                    "lm_head.weight",
                ],
            ),
            (
                "transformers 5 state_dict",
                [
                    "model.vision_tower.embeddings.patch_embedding.weight",
                    "model.vision_tower.encoder.layers.0.self_attn.q_proj.weight",
                    "model.multi_modal_projector.linear_1.weight",
                    "model.multi_modal_projector.linear_2.bias",
                    "model.language_model.embed_tokens.weight",
                    "model.language_model.layers.1.mlp.down_proj.weight",
                    "model.language_model.norm.weight",
                    "lm_head.weight",
                ],
            ),
            (
                "original LLaVA",
                [
                    "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
                    "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
                    "model.mm_projector.0.weight",
                    "model.mm_projector.2.bias",
                    "model.embed_tokens.weight",
                    "model.layers.1.mlp.down_proj.weight",
                    "model.norm.weight",
                    "lm_head.weight",
                ],
            ),
        ];
        for (layout, stored) in layouts {
            // Tensor i holds the single value i, so a wrong match shows up as a wrong value.
            let specs: Vec<Spec<'_>> = stored
                .iter()
                .enumerate()
                .map(|(i, name)| (*name, St::F32, vec![1], f32_bytes(&[i as f32])))
                .collect();
            let dir = dir_with(&[("model.safetensors", serialize(&specs))]);
            let weights = Weights::open(dir.path()).expect("open");
            for (i, requested) in REQUESTED.iter().enumerate() {
                let view = weights.get(requested).unwrap_or_else(|e| panic!("{layout}: {e}"));
                assert_eq!(view.name, stored[i], "{layout}");
                assert_eq!(view.to_f32_vec(), [i as f32], "{layout}: {requested}");
                assert_eq!(weights.stored_name(requested), Some(stored[i]), "{layout}");
            }
        }
    }

    #[test]
    fn sharded_index_opens_every_shard() {
        let shard1 = serialize(&[("a.weight", St::F32, vec![2], f32_bytes(&[1.0, 2.0]))]);
        let shard2 = serialize(&[
            ("b.weight", St::BF16, vec![1], vec![0x80, 0x3f]),
            ("c.weight", St::F32, vec![1], f32_bytes(&[3.0])),
        ]);
        let index = r#"{"metadata": {"total_size": 14}, "weight_map": {
            "a.weight": "model-00001-of-00002.safetensors",
            "b.weight": "model-00002-of-00002.safetensors",
            "c.weight": "model-00002-of-00002.safetensors"}}"#;
        let dir = dir_with(&[
            ("model-00001-of-00002.safetensors", shard1),
            ("model-00002-of-00002.safetensors", shard2),
            ("model.safetensors.index.json", index.as_bytes().to_vec()),
        ]);
        let weights = Weights::open(dir.path()).expect("open");
        assert_eq!(weights.get("a.weight").expect("a").to_f32_vec(), [1.0, 2.0]);
        assert_eq!(weights.get("b.weight").expect("b").to_f32_vec(), [1.0]);
        assert_eq!(weights.get("c.weight").expect("c").to_f32_vec(), [3.0]);
        assert_eq!(weights.files().count(), 2);
        // Two F32 parameters plus one F32 and one BF16.
        assert_eq!(
            weights.summary(),
            WeightsSummary {
                tensors: 3,
                parameters: 4,
                bytes: 14,
                dominant_dtype: "F32".into()
            }
        );
    }

    #[test]
    fn without_single_file_or_index_every_safetensors_file_is_opened() {
        let dir = dir_with(&[
            (
                "part-a.safetensors",
                serialize(&[("x", St::F32, vec![1], f32_bytes(&[4.0]))]),
            ),
            (
                "part-b.safetensors",
                serialize(&[("y", St::F32, vec![1], f32_bytes(&[5.0]))]),
            ),
            ("notes.txt", b"not a checkpoint".to_vec()),
        ]);
        let weights = Weights::open(dir.path()).expect("open");
        assert_eq!(weights.get("x").expect("x").to_f32_vec(), [4.0]);
        assert_eq!(weights.get("y").expect("y").to_f32_vec(), [5.0]);
    }

    #[test]
    fn f16_and_bf16_bit_patterns_widen_exactly() {
        // (f16 bits, expected f32 bits): one, -two, max, min normal, min subnormal, -0, ±inf.
        let f16_cases: [(u16, u32); 8] = [
            (0x3c00, 0x3f80_0000),
            (0xc000, 0xc000_0000),
            (0x7bff, 0x477f_e000), // 65504
            (0x0400, 0x3880_0000), // 2^-14
            (0x0001, 0x3380_0000), // 2^-24
            (0x8000, 0x8000_0000),
            (0x7c00, 0x7f80_0000),
            (0xfc00, 0xff80_0000),
        ];
        // bf16 is the top half of an f32, subnormals included.
        let bf16_cases: [(u16, u32); 6] = [
            (0x3f80, 0x3f80_0000),
            (0xc2f7, 0xc2f7_0000), // -123.5
            (0x0001, 0x0001_0000),
            (0x7f7f, 0x7f7f_0000),
            (0xff80, 0xff80_0000),
            (0x8000, 0x8000_0000),
        ];
        for (dtype, cases) in [(DType::F16, &f16_cases[..]), (DType::BF16, &bf16_cases[..])] {
            // A leading pad byte makes the tensor bytes start at an odd address.
            let mut storage = vec![0xAAu8];
            storage.extend(cases.iter().flat_map(|(bits, _)| bits.to_le_bytes()));
            let shape = [cases.len()];
            let view = TensorView {
                name: "t",
                dtype,
                shape: &shape,
                bytes: &storage[1..],
            };
            let got: Vec<u32> = view.to_f32_vec().iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = cases.iter().map(|(_, f32_bits)| *f32_bits).collect();
            assert_eq!(got, want, "{dtype:?}");
        }
        // NaN stays NaN.
        let nan = [0x00u8, 0x7e];
        let view = TensorView {
            name: "n",
            dtype: DType::F16,
            shape: &[1],
            bytes: &nan,
        };
        assert!(view.to_f32_vec()[0].is_nan());
    }

    #[test]
    fn narrowing_rounds_to_nearest_even_and_same_dtype_copies_bits() {
        // 1 + 2^-11 lies exactly between two f16 values: ties to even → 1.0.
        // 1 + 3·2^-11 ties between 1+2^-10 and 1+2^-9: even mantissa → 1 + 2^-9.
        let values = [1.0f32 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 65520.0, -3.0];
        let bytes = f32_bytes(&values);
        let view = TensorView {
            name: "w",
            dtype: DType::F32,
            shape: &[4],
            bytes: &bytes,
        };
        let f16_bits: Vec<u16> = view.to_f16_vec().iter().map(|v| v.to_bits()).collect();
        assert_eq!(f16_bits, [0x3c00, 0x3c02, 0x7c00, 0xc200]);
        // bf16 keeps 7 mantissa bits: 1 + 2^-8 ties to 1.0, 1 + 3·2^-8 to 1 + 2^-6.
        let values = [1.0f32 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), -3.0];
        let bytes = f32_bytes(&values);
        let view = TensorView {
            name: "w",
            dtype: DType::F32,
            shape: &[3],
            bytes: &bytes,
        };
        let bf16_bits: Vec<u16> = view.to_bf16_vec().iter().map(|v| v.to_bits()).collect();
        assert_eq!(bf16_bits, [0x3f80, 0x3f82, 0xc040]);

        let raw = [0x01u8, 0x00, 0xff, 0x7b, 0x00, 0x80];
        let view = TensorView {
            name: "h",
            dtype: DType::F16,
            shape: &[3],
            bytes: &raw,
        };
        let copied: Vec<u16> = view.to_f16_vec().iter().map(|v| v.to_bits()).collect();
        assert_eq!(copied, [0x0001, 0x7bff, 0x8000]);
        let view = TensorView {
            name: "b",
            dtype: DType::BF16,
            shape: &[3],
            bytes: &raw,
        };
        let copied: Vec<u16> = view.to_bf16_vec().iter().map(|v| v.to_bits()).collect();
        assert_eq!(copied, [0x0001, 0x7bff, 0x8000]);
        // Across 16-bit types the value goes through f32: bf16 1.5 → f16 1.5.
        let view = TensorView {
            name: "b",
            dtype: DType::BF16,
            shape: &[1],
            bytes: &[0xc0, 0x3f],
        };
        assert_eq!(view.to_f16_vec()[0].to_bits(), 0x3e00);
    }

    #[test]
    fn large_tensors_convert_in_parallel_blocks_in_order() {
        // Every 16-bit pattern, over the parallel threshold, from an odd address.
        let n = PARALLEL_MIN + 3 * CHUNK + 7;
        let mut storage = vec![0u8];
        storage.extend((0..n).flat_map(|i| (i as u16).to_le_bytes()));
        let shape = [n];
        let view = TensorView {
            name: "big",
            dtype: DType::BF16,
            shape: &shape,
            bytes: &storage[1..],
        };
        let widened = view.to_f32_vec();
        assert_eq!(widened.len(), n);
        assert!(widened
            .iter()
            .enumerate()
            .all(|(i, v)| v.to_bits() == ((i as u16 as u32) << 16)));
        let copied = view.to_bf16_vec();
        assert!(copied.iter().enumerate().all(|(i, v)| v.to_bits() == i as u16));
    }

    #[test]
    fn missing_tensor_and_wrong_shape_messages() {
        let dir = dir_with(&[(
            "model.safetensors",
            serialize(&[("w", St::F32, vec![2, 3], f32_bytes(&[0.0; 6]))]),
        )]);
        let weights = Weights::open(dir.path()).expect("open");
        let err = weights.get("language_model.lm_head.weight").expect_err("missing");
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            format!(
                "checkpoint has no tensor 'language_model.lm_head.weight' (in {})",
                dir.path().display()
            )
        );
        let err = weights.get_shaped("w", &[3, 2]).expect_err("shape");
        assert_eq!(err.message, "tensor 'w' has shape [2,3], expected [3,2]");
    }

    #[test]
    fn unsupported_dtypes_fail_only_when_requested() {
        let bytes = serialize(&[
            ("position_ids", St::I64, vec![2], vec![0; 16]),
            ("scale", St::F8_E4M3, vec![4], vec![0; 4]),
            ("w", St::F32, vec![1], f32_bytes(&[1.0])),
        ]);
        let dir = dir_with(&[("model.safetensors", bytes)]);
        let weights = Weights::open(dir.path()).expect("int buffers must not block loading");
        assert_eq!(weights.get("w").expect("w").to_f32_vec(), [1.0]);
        let file = file_in(&dir, "model.safetensors");
        let err = weights.get("position_ids").expect_err("i64");
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            format!("{file}: tensor 'position_ids' has dtype I64; glimpse supports F32, F16, BF16")
        );
        let err = weights.get("scale").expect_err("f8");
        assert_eq!(
            err.message,
            format!("{file}: tensor 'scale' has dtype F8_E4M3; glimpse supports F32, F16, BF16")
        );
        assert!(weights.contains("position_ids"));

        // A dtype the safetensors crate does not know either is reported the same way.
        let dir = dir_with(&[(
            "model.safetensors",
            raw_file(r#"{"q":{"dtype":"Q4_K","shape":[32],"data_offsets":[0,18]}}"#, &[0; 18]),
        )]);
        let weights = Weights::open(dir.path()).expect("open");
        let err = weights.get("q").expect_err("q4");
        assert_eq!(
            err.message,
            format!(
                "{}: tensor 'q' has dtype Q4_K; glimpse supports F32, F16, BF16",
                file_in(&dir, "model.safetensors")
            )
        );
    }

    /// Each damaged file must fail at open with one line naming the file and the problem.
    #[test]
    fn corrupt_files_are_reported_precisely() {
        let good = serialize(&[("w", St::F32, vec![4], f32_bytes(&[1.0, 2.0, 3.0, 4.0]))]);
        let mut huge_header = good.clone();
        huge_header[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>, String)> = vec![
            (
                "tiny file",
                vec![1, 2, 3],
                "too short to be a safetensors file (3 bytes)".into(),
            ),
            (
                "header longer than the file",
                200u64.to_le_bytes().into_iter().chain(*b"{\"w\"").collect(),
                "truncated: header length 200 exceeds the 4 bytes after the length prefix".into(),
            ),
            (
                "absurd header length",
                huge_header,
                format!("header length {} is implausible; not a safetensors file?", u64::MAX),
            ),
            (
                "data cut short",
                good[..good.len() - 3].to_vec(),
                "truncated: tensor 'w' needs bytes up to 16 of the data section but the file holds only 13".into(),
            ),
            (
                "non-JSON header",
                raw_file("{\"w\": }", &[]),
                "header is not valid JSON: expected value at line 1 column 7".into(),
            ),
            (
                "malformed entry",
                raw_file(r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
                "tensor 'w' has a malformed header entry: missing field `dtype`".into(),
            ),
            (
                "offsets backwards",
                raw_file(r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, &[0; 8]),
                "tensor 'w' has data_offsets [8, 4] that run backwards".into(),
            ),
            (
                "offsets past the end",
                raw_file(r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 8]),
                "truncated: tensor 'w' needs bytes up to 16 of the data section but the file holds only 8".into(),
            ),
            (
                "shape disagrees with byte length",
                raw_file(r#"{"w":{"dtype":"F16","shape":[3,2],"data_offsets":[0,8]}}"#, &[0; 8]),
                "tensor 'w' has shape [3,2] and dtype F16 (12 bytes) but data_offsets [0, 8] span 8 bytes".into(),
            ),
            (
                "shape overflows",
                raw_file(
                    r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#,
                    &[0; 4],
                ),
                "tensor 'w' has an impossibly large shape [4294967296,4294967296,4294967296]".into(),
            ),
            (
                "overlapping tensors",
                raw_file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                    &[0; 12],
                ),
                "tensors 'a' and 'b' overlap in the data section".into(),
            ),
        ];
        for (what, bytes, expected) in cases {
            let dir = dir_with(&[("model.safetensors", bytes)]);
            let err = open_err(&dir);
            assert_eq!(err.kind, ErrorKind::Model, "{what}");
            assert_eq!(
                err.message,
                format!("{}: {expected}", file_in(&dir, "model.safetensors")),
                "{what}"
            );
            assert!(!err.message.contains('\n'), "{what}");
        }
    }

    #[test]
    fn checkpoint_level_errors() {
        let dir = dir_with(&[("config.json", b"{}".to_vec())]);
        let err = open_err(&dir);
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            format!(
                "{}: no model.safetensors, model.safetensors.index.json or other *.safetensors file",
                dir.path().display()
            )
        );

        let shard = serialize(&[("a", St::F32, vec![1], f32_bytes(&[1.0]))]);
        let index =
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
        let dir = dir_with(&[
            ("model-00001-of-00002.safetensors", shard.clone()),
            ("model.safetensors.index.json", index.as_bytes().to_vec()),
        ]);
        assert_eq!(
            open_err(&dir).message,
            format!(
                "{}: names shard 'model-00002-of-00002.safetensors', which is missing from {}",
                file_in(&dir, "model.safetensors.index.json"),
                dir.path().display()
            )
        );

        let index = r#"{"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}"#;
        let dir = dir_with(&[
            ("s1.safetensors", shard.clone()),
            ("model.safetensors.index.json", index.as_bytes().to_vec()),
        ]);
        assert_eq!(
            open_err(&dir).message,
            format!(
                "{}: maps tensor 'b' to s1.safetensors, which does not contain it",
                file_in(&dir, "model.safetensors.index.json")
            )
        );

        let index = r#"{"weight_map": {"a": "../elsewhere.safetensors"}}"#;
        let dir = dir_with(&[("model.safetensors.index.json", index.as_bytes().to_vec())]);
        assert!(open_err(&dir)
            .message
            .contains("names shard '../elsewhere.safetensors', which is missing"));

        let dir = dir_with(&[("model.safetensors.index.json", b"{\"weight_map\": }".to_vec())]);
        assert_eq!(
            open_err(&dir).message,
            format!(
                "{}: invalid index: expected value at line 1 column 16",
                file_in(&dir, "model.safetensors.index.json")
            )
        );

        let dir = dir_with(&[("a.safetensors", shard.clone()), ("b.safetensors", shard)]);
        assert_eq!(
            open_err(&dir).message,
            format!(
                "tensor 'a' appears in both {} and {}",
                file_in(&dir, "a.safetensors"),
                file_in(&dir, "b.safetensors")
            )
        );

        let missing = Path::new("/nonexistent/glimpse-model");
        let err = Weights::open(missing).err().expect("missing dir");
        assert_eq!(err.message, "/nonexistent/glimpse-model: not a directory");
    }
}
