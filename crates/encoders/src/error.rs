//! Errors of the encoders crate: each names the file, key or tensor, and what was expected.

use std::path::PathBuf;

pub type Result<T, E = EncoderError> = std::result::Result<T, E>;

/// What is wrong with a model config's text: its JSON (serde's error, kept as the source), or a
/// value its family cannot take (the family's check names the key and what it takes).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        Self::Invalid(message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model config {}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error(
        "`{key}` is not a key of a {model_type} config ({}), so it cannot be set; its keys are {}",
        path.display(),
        keys.join(", ")
    )]
    UnknownConfigKey { key: String, model_type: String, path: PathBuf, keys: Vec<String> },
    #[error("{} is missing: expected {what}", path.display())]
    NotFound { path: PathBuf, what: String },
    /// A checkpoint file whose contents cannot be read (its path is in the source's message).
    #[error("cannot read checkpoint {0}")]
    Checkpoint(#[source] tensor_file::TensorFileError),
    #[error(
        "{} holds a {found} checkpoint (its tensors are under `{prefix}.`), but config.json is a {model_type} model's: the config and the weights do not belong together",
        path.display()
    )]
    OtherFamily { path: PathBuf, found: String, prefix: String, model_type: String },
    #[error("tensor `{key}` is missing from {}: expected shape {expected:?}", path.display())]
    MissingTensor { key: String, path: PathBuf, expected: Vec<usize> },
    #[error(
        "tensor `{key}` in {} has shape {found:?}, but the model config expects {expected:?}",
        path.display()
    )]
    ShapeMismatch { key: String, path: PathBuf, expected: Vec<usize>, found: Vec<usize> },
    #[error(
        "{}: its classifier ({module}) has {rows} labels, but this run asks for {asked}; to train a new classifier in its place, ignore the mismatch (transformers' ignore_mismatched_sizes=True; lora: model.ignore_mismatched_sizes = true)",
        path.display()
    )]
    HeadSize { path: PathBuf, module: String, rows: usize, asked: usize },
    #[error("{} holds {} tensor(s) this BERT model has no place for: {}", path.display(), keys.len(), keys.join(", "))]
    UnexpectedTensors { path: PathBuf, keys: Vec<String> },
    #[error("cannot load tokenizer {}: {source}", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    #[error("tokenization failed: {0}")]
    Encode(#[source] tokenizers::Error),
    #[error("token id {id} is not in the vocabulary (ids 0 to {last})")]
    UnknownId { id: u32, last: usize },
    #[error("decoding failed: {0}")]
    Decode(#[source] tokenizers::Error),
    #[error("model `{model_id}`: {source}")]
    Hub {
        model_id: String,
        #[source]
        source: crate::hub::FetchError,
    },
    #[error(transparent)]
    Read(#[from] kernels::ReadError),
    #[error(transparent)]
    File(#[from] tensor_file::TensorFileError),
}

impl EncoderError {
    /// A value of the model's `config.json` that its family cannot build, found while loading.
    pub(crate) fn invalid_config(message: String) -> Self {
        Self::Config { path: "config.json".into(), source: ConfigError::Invalid(message) }
    }
}
