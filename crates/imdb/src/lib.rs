//! The IMDb Large Movie Review Dataset (Maas et al., 2011) from wherever a user has it,
//! seeded subsets, tokenization and batches padded to their own longest review.
//!
//! ```text
//! Source::detect(spec) -> Source::load -> Splits -> subset::draw -> Subsets
//!   -> batching::tokenize -> ReviewDataset (burn Dataset) -> ReviewBatcher (burn Batcher)
//! ```
//! Labels are 0 = negative, 1 = positive; splits are `train` and `test`. The crate knows no
//! model, only the BERT crate's tokenizer.

pub mod acl;
pub mod batching;
pub mod error;
pub mod formats;
pub mod review;
pub mod source;
pub mod subset;

pub use batching::{PaddingStats, ReviewBatch, ReviewBatcher, ReviewDataset, TokenizedReview, epoch_batches, tokenize};
pub use error::{DataError, Result};
pub use review::{Review, Splits};
pub use source::Source;
pub use subset::{SubsetConfig, Subsets, draw, write_jsonl};
