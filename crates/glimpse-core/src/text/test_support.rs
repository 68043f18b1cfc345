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
