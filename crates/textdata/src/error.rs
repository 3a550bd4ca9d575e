//! Errors of the data crate: each names the file and the line or entry, and what was expected.

use std::path::PathBuf;

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what} is missing", path.display())]
    Missing { path: PathBuf, what: String },
    #[error("{}:{line}: {message}", path.display())]
    Line { path: PathBuf, line: usize, message: String },
    #[error("{} entry `{entry}`: {message}", path.display())]
    Entry { path: PathBuf, entry: String, message: String },
    #[error("{}: no column for the {role}; expected one of {expected:?}, found {found:?}", path.display())]
    MissingColumn { path: PathBuf, role: String, expected: Vec<String>, found: Vec<String> },
    #[error("{}: the {split} split is empty", path.display())]
    EmptySplit { path: PathBuf, split: String },
    #[error("cannot draw {requested} {what} from the {split} split, which has {available}")]
    TooLarge { split: String, what: String, requested: usize, available: usize },
    #[error("{}: not a recognised data source ({hint})", path.display())]
    Unrecognised { path: PathBuf, hint: String },
    /// Data that could be read more than one way (two files for one split, ...).
    #[error("{}: {message}", path.display())]
    Ambiguous { path: PathBuf, message: String },
    #[error("dataset `{dataset}` on the Hub: {message}")]
    Hub { dataset: String, message: String },
    #[error(
        "dataset `{dataset}` on the Hub (data.hub_config, data.train_split and data.eval_split name the file {file}): {source}"
    )]
    HubFile {
        dataset: String,
        file: String,
        #[source]
        source: encoders::FetchError,
    },
    #[error("{0}")]
    Config(String),
    #[error("{}: {what}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        what: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{}: {what}: {source}", path.display())]
    Archive {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The training split's labels give no task (no labels, one class, names twice, ...).
    #[error("{}: {source}", path.display())]
    Labels { path: PathBuf, source: crate::labels::LabelError },
    /// The tokenizer's error, which says "tokenization failed" itself.
    #[error(transparent)]
    Tokenize(encoders::EncoderError),
}
