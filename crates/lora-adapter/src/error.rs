//! Errors of the adapter crate: each names the file, tensor or module, and what was expected.

use std::path::PathBuf;

pub type Result<T, E = LoraError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("invalid LoRA config{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Config {
        path: Option<PathBuf>,
        #[source]
        source: crate::config::LoraConfigError,
    },
    #[error("invalid LoRA config {}: {source}", path.display())]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("target_modules {targets} matched no linear of the model{why} (its linears end in: {available})")]
    NoTarget { targets: String, available: String, why: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] tensor_file::TensorFileError),
    #[error(transparent)]
    Read(#[from] kernels::ReadError),
    #[error("adapter tensor `{key}` is missing from {}: expected shape {expected:?}", path.display())]
    MissingTensor { key: String, path: PathBuf, expected: Vec<usize> },
    #[error("adapter tensor `{key}` in {} has shape {found:?}, but the config and model expect {expected:?}", path.display())]
    ShapeMismatch { key: String, path: PathBuf, expected: Vec<usize>, found: Vec<usize> },
    #[error("{} holds tensor(s) for modules this model or config has no adapter for: {}", path.display(), keys.join(", "))]
    UnexpectedTensors { path: PathBuf, keys: Vec<String> },
    #[error("adapter tensor `{key}` in {} holds NaN or infinite values (a diverged run?); refusing it", path.display())]
    NonFinite { key: String, path: PathBuf },
    #[error("merging the adapter into `{module}` gives non-finite weights; refusing to merge")]
    NonFiniteMerge { module: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
