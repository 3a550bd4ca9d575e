//! Errors of the encoders crate: each names the file, key or tensor, and what was expected.

use std::path::PathBuf;

use hf_hub::api::sync::ApiError;

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
    #[error("{} holds {} tensor(s) the model has no place for: {}", path.display(), keys.len(), keys.join(", "))]
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
        source: FetchError,
    },
    #[error(transparent)]
    Read(#[from] kernels::ReadError),
    #[error(transparent)]
    File(#[from] tensor_file::TensorFileError),
}

impl EncoderError {
    /// A value of the model's `config.json` that its family cannot build, found while loading.
    pub(crate) fn invalid_config(source: impl Into<ConfigError>) -> Self {
        Self::Config { path: "config.json".into(), source: source.into() }
    }
}

/// Why a file could not be fetched from the Hub or its cache.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{file} is not in the local Hugging Face cache ({}) and HF_HUB_OFFLINE is set", cache.display())]
    NotCached { file: String, cache: PathBuf },
    #[error("cannot fetch {file} from {endpoint}: not found (HTTP 404)")]
    NotOnHub { file: String, endpoint: String },
    #[error("cannot fetch {file} from {endpoint}: {source}")]
    Api {
        file: String,
        endpoint: String,
        #[source]
        source: ApiError,
    },
    #[error("cannot fetch {file} from {endpoint}: no answer for {seconds:.0} s (HF_HUB_DOWNLOAD_TIMEOUT)")]
    Stalled { file: String, endpoint: String, seconds: f64 },
    #[error("cannot fetch {file} from {endpoint}: the download stopped without a result")]
    Stopped { file: String, endpoint: String },
    /// The last attempt's error is said in the message (not as a source, which would say it twice).
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp { last: Box<FetchError>, attempts: usize },
}
