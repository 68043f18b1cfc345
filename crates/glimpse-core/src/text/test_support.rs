//! Helpers shared by the text tests: scratch model directories and the golden fixtures.

use std::path::{Path, PathBuf};

/// The golden fixtures, made with the Python reference implementation (transformers).
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures")
}

/// A scratch directory that stands in for a model directory; removed on drop.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `name` must be unique per test, since tests run in parallel.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("glimpse-text-{}-{name}", std::process::id()));
        // Leftovers of an earlier, aborted run with the same pid are harmless to remove.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        ScratchDir(dir)
    }

    pub(crate) fn write(&self, file: &str, contents: &str) -> &Self {
        std::fs::write(self.0.join(file), contents).expect("write scratch file");
        self
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses a JSON file under the fixtures directory (`rel` is relative to it).
pub(crate) fn fixture_json(rel: &str) -> serde_json::Value {
    let path = fixtures_dir().join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden fixture {} is missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// The ids of a JSON array of numbers.
pub(crate) fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an array of token ids")
        .iter()
        .map(|id| id.as_u64().and_then(|id| u32::try_from(id).ok()).expect("a token id"))
        .collect()
}

/// The strings of a JSON array of strings.
pub(crate) fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array of strings")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}
