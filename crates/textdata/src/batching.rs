//! Tokenization once per run, Burn's `Dataset` and `Batcher` over the tokenized examples, and the
//! order of each epoch's batches (seeded shuffle, optionally grouped by length).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use encoders::{Encoded, EncoderInput, EncoderTokenizer};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{DataError, Result};
use crate::example::Example;
use crate::labels::Target;

/// One example as the model reads it: truncated ids with special tokens (a pair joined by
/// the tokenizer's template), unpadded.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedExample {
    pub encoded: Encoded,
    pub label: Target,
}

/// `<br />` (the release's line breaks) as a space. Off by default: the Hub copy keeps them.
pub(crate) fn strip_html_breaks(text: &str) -> String {
    text.replace("<br />", " ").replace("<br/>", " ").replace("<br>", " ")
}

/// Tokenizes every example (or pair) in parallel (rayon, inside `tokenizers`), in input order.
/// `progress` is called with the number of examples done after each chunk.
pub fn tokenize(
    examples: &[Example],
    tokenizer: &EncoderTokenizer,
    strip_breaks: bool,
    mut progress: impl FnMut(usize),
) -> Result<Vec<TokenizedExample>> {
    const CHUNK: usize = 1024;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(CHUNK) {
        let clean = |t: &str| if strip_breaks { strip_html_breaks(t) } else { t.to_string() };
        let texts: Vec<(String, Option<String>)> =
            chunk.iter().map(|r| (clean(&r.text), r.text_pair.as_deref().map(clean))).collect();
        let refs: Vec<(&str, Option<&str>)> = texts.iter().map(|(a, b)| (a.as_str(), b.as_deref())).collect();
        let encoded = tokenizer.encode_batch_pairs(&refs).map_err(DataError::Tokenize)?;
        out.extend(
            encoded.into_iter().zip(chunk).map(|(encoded, r)| TokenizedExample { encoded, label: r.label.clone() }),
        );
        progress(out.len());
    }
    Ok(out)
}

/// Tokenized examples as a Burn dataset.
#[derive(Debug, Clone)]
pub struct TextDataset {
    items: Vec<TokenizedExample>,
}

impl TextDataset {
    pub fn new(items: Vec<TokenizedExample>) -> Self {
        Self { items }
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.items.iter().map(|i| i.encoded.len()).collect()
    }

    pub fn items(&self) -> &[TokenizedExample] {
        &self.items
    }

    /// The items of one batch plan, in order.
    pub fn select(&self, indices: &[usize]) -> Vec<TokenizedExample> {
        indices.iter().filter_map(|&i| self.items.get(i).cloned()).collect()
    }
}

impl Dataset<TokenizedExample> for TextDataset {
    fn get(&self, index: usize) -> Option<TokenizedExample> {
        self.items.get(index).cloned()
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// A padded batch with its labels.
///
/// # Shapes
/// - input fields: `[batch, longest]`; labels: see [`Targets`]
#[derive(Debug, Clone)]
pub struct TextBatch<B: Backend> {
    pub input: EncoderInput<B>,
    pub labels: Targets<B>,
    /// Tokens that are not padding.
    pub real_tokens: usize,
}

/// A batch's labels, as transformers passes them for each `problem_type`.
#[derive(Debug, Clone)]
pub enum Targets<B: Backend> {
    /// Class ids `[batch]` (single-label classification).
    Classes(Tensor<B, 1, Int>),
    /// Multi-hot rows `[batch, labels]` (multi-label classification).
    MultiHot(Tensor<B, 2>),
    /// Values `[batch]` (regression).
    Values(Tensor<B, 1>),
}

impl<B: Backend> Targets<B> {
    /// The labels of `items`, in the kind the first one has (a dataset's are all one kind).
    pub fn of(items: &[TokenizedExample], device: &B::Device) -> Self {
        let n = items.len();
        match items.first().map(|i| &i.label) {
            Some(Target::MultiHot(first)) => {
                let width = first.len();
                let mut rows = Vec::with_capacity(n * width);
                for item in items {
                    let mut row = match &item.label {
                        Target::MultiHot(row) => row.clone(),
                        _ => Vec::new(),
                    };
                    row.resize(width, 0.0);
                    rows.extend(row);
                }
                Self::MultiHot(Tensor::from_data(TensorData::new(rows, [n, width]), device))
            }
            Some(Target::Value(_)) => {
                let values: Vec<f32> = items
                    .iter()
                    .map(|i| match i.label {
                        Target::Value(v) => v,
                        _ => 0.0,
                    })
                    .collect();
                Self::Values(Tensor::from_data(TensorData::new(values, [n]), device))
            }
            _ => {
                let labels: Vec<i64> = items.iter().map(|i| i.label.class() as i64).collect();
                Self::Classes(Tensor::from_data(TensorData::new(labels, [n]), device))
            }
        }
    }
}

/// Pads each batch to its own longest example, rounded up to a multiple of `pad_to_multiple_of`
/// (transformers' `DataCollatorWithPadding`; 1 rounds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextBatcher {
    pub pad_id: u32,
    pub pad_to_multiple_of: usize,
}

impl TextBatcher {
    /// Pads to each batch's longest example, never further.
    pub fn new(pad_id: u32) -> Self {
        Self { pad_id, pad_to_multiple_of: 1 }
    }

    /// The length a batch whose longest example has `longest` tokens is padded to.
    pub fn padded_length(&self, longest: usize) -> usize {
        encoders::padded_length(longest, self.pad_to_multiple_of)
    }
}

impl<B: Backend> Batcher<B, TokenizedExample, TextBatch<B>> for TextBatcher {
    fn batch(&self, items: Vec<TokenizedExample>, device: &B::Device) -> TextBatch<B> {
        let encoded: Vec<&Encoded> = items.iter().map(|i| &i.encoded).collect();
        let padded = encoders::pad_batch(&encoded, self.pad_id, self.pad_to_multiple_of);
        TextBatch {
            input: padded.to_input(device),
            labels: Targets::of(&items, device),
            real_tokens: padded.real_tokens(),
        }
    }
}

/// A seeded permutation of `0..n`: the same for the same `(seed, epoch)` on every machine.
pub(crate) fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let salt = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_cached_key(|&i| (xxh3_64_with_seed(&(i as u64).to_le_bytes(), salt), i));
    order
}

/// The batches of one epoch, as indices into the dataset.
///
/// Without grouping: a seeded shuffle cut into batches. With `group_by_length`, as transformers'
/// `LengthGroupedSampler`: the shuffle is cut into mega-batches of 50 batches, each sorted by
/// length (longest first) and cut into batches, and the batch with the longest example goes first
/// (a run that will run out of memory does so at once).
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
    group_by_length: bool,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut order = permutation(lengths.len(), seed, epoch);
    if group_by_length {
        for mega in order.chunks_mut(batch_size * 50) {
            mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        }
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    if group_by_length
        && let Some(longest) = (0..batches.len()).max_by_key(|&b| (lengths[batches[b][0]], std::cmp::Reverse(b)))
    {
        batches.swap(0, longest);
    }
    batches
}

/// Padding of a batch plan: tokens `batcher` adds to the examples of each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaddingStats {
    pub real_tokens: usize,
    pub padded_tokens: usize,
}

impl PaddingStats {
    pub fn of(lengths: &[usize], batches: &[Vec<usize>], batcher: &TextBatcher) -> Self {
        let mut stats = Self::default();
        for batch in batches {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            let real: usize = batch.iter().map(|&i| lengths[i]).sum();
            stats.real_tokens += real;
            stats.padded_tokens += batcher.padded_length(longest) * batch.len() - real;
        }
        stats
    }

    /// Padded tokens per real token (0.25 = a quarter of the compute is padding).
    pub fn waste(&self) -> f64 {
        self.padded_tokens as f64 / self.real_tokens.max(1) as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_index_once_and_repeat_for_a_seed() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 500 + 5).collect();
        for group in [false, true] {
            let batches = epoch_batches(&lengths, 16, 3, 1, group);
            let mut all: Vec<usize> = batches.concat();
            all.sort_unstable();
            assert_eq!(all, (0..1000).collect::<Vec<_>>());
            assert_eq!(batches, epoch_batches(&lengths, 16, 3, 1, group));
            assert_ne!(batches, epoch_batches(&lengths, 16, 3, 2, group), "each epoch its own order");
        }
    }

    #[test]
    fn grouping_by_length_cuts_padding_and_puts_the_longest_first() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 500 + 5).collect();
        let plain = PaddingStats::of(&lengths, &epoch_batches(&lengths, 16, 3, 0, false), &TextBatcher::new(0));
        let grouped_batches = epoch_batches(&lengths, 16, 3, 0, true);
        let grouped = PaddingStats::of(&lengths, &grouped_batches, &TextBatcher::new(0));
        assert_eq!(plain.real_tokens, grouped.real_tokens);
        assert!(grouped.waste() < plain.waste() / 5.0, "{} vs {}", grouped.waste(), plain.waste());
        assert_eq!(lengths[grouped_batches[0][0]], *lengths.iter().max().unwrap());
    }
}
