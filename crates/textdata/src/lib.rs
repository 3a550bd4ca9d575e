//! Text-classification data from wherever a user has it (JSON Lines, CSV, parquet, gzip, a Hub
//! dataset, and the IMDb release's aclImdb tree and tarball, the built-in example): columns
//! by name, labels given a meaning once, seeded subsets, tokenization of texts or pairs, and
//! batches padded to their own longest example.
//!
//! ```text
//! Source::detect(spec) -> Source::load -> RawSplits (labels as written)
//!   -> LabelSpace::infer (or read from an adapter's labels.json) -> RawSplits::resolve -> Splits
//!   -> subset::draw -> Subsets -> batching::tokenize -> TextDataset (burn Dataset)
//!   -> TextBatcher (burn Batcher)
//! ```
//! The crate knows no model, only the encoders crate's tokenizer and the head a task needs
//! (the [`LabelSpace`] the program hands to `from_pretrained` as the head).
#![warn(unreachable_pub)]

mod acl;
mod batching;
mod error;
mod example;
mod formats;
mod labels;
mod records;
mod source;
mod subset;

pub use batching::{
    PaddingStats, Targets, TextBatch, TextBatcher, TextDataset, TokenizedExample, epoch_batches, tokenize,
};
pub use encoders::{LABELS_FILE, LabelSpace, LabelsFile, ProblemType};
pub use error::{DataError, Result};
pub use example::{Example, Splits, class_counts};
pub use formats::read_file;
pub use labels::{InferLabels, LabelError, RawLabel, Target};
pub use records::{Columns, RawSplits};
pub use source::{Labels, Source, SourceOptions, load_labelled};
pub use subset::{SubsetConfig, Subsets, draw, write_jsonl};
