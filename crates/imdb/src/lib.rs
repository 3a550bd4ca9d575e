//! Text-classification data from wherever a user has it (JSON Lines, CSV, parquet, gzip, a Hub
//! dataset, and the IMDb release's aclImdb tree and tarball, the built-in example): columns
//! by name, labels given a meaning once, seeded subsets, tokenization of texts or pairs, and
//! batches padded to their own longest example.
//!
//! ```text
//! Source::detect(spec) -> Source::load -> RawSplits (labels as written)
//!   -> LabelSpace::infer (or read from an adapter's labels.json) -> RawSplits::resolve -> Splits
//!   -> subset::draw -> Subsets -> batching::tokenize -> ReviewDataset (burn Dataset)
//!   -> ReviewBatcher (burn Batcher)
//! ```
//! The crate knows no model, only the BERT crate's tokenizer. (It is still named for IMDb,
//! where it began; its types say "review" where they mean "example".)

pub mod acl;
pub mod batching;
pub mod error;
pub mod formats;
pub mod labels;
pub mod records;
pub mod review;
pub mod source;
pub mod subset;

pub use batching::{
    PaddingStats, ReviewBatch, ReviewBatcher, ReviewDataset, Targets, TokenizedReview, epoch_batches, tokenize,
};
pub use error::{DataError, Result};
pub use labels::{LabelSpace, ProblemType, RawLabel, Target};
pub use records::{Columns, RawSplits};
pub use review::{Review, Splits};
pub use source::{Labels, Source, SourceOptions, load_labelled};
pub use subset::{SubsetConfig, Subsets, draw, write_jsonl};
