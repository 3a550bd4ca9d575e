//! A BERT-family tokenizer (`tokenizers`, from `tokenizer.json`: WordPiece for BERT, DistilBERT
//! and ELECTRA, byte-level BPE for RoBERTa, Unigram for XLM-R; or a bare `vocab.txt`),
//! truncation to `max_length` (`longest_first` for pairs, as transformers) and padding of a
//! batch to its own longest sequence.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{EncoderError, Result};
use crate::model::EncoderInput;

/// One tokenized text, truncated, with its special tokens and without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// Where [`EncoderTokenizer::truncating`] cuts a text longer than the model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    None,
    Right,
    Left,
}

/// The tokenizer of a BERT-family model: its special tokens and pair template are the file's.
#[derive(Clone)]
pub struct EncoderTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_length: usize,
}

impl std::fmt::Debug for EncoderTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderTokenizer").field("max_length", &self.max_length).finish()
    }
}

impl EncoderTokenizer {
    /// From `tokenizer.json`, or from `vocab.txt` (lower-casing unless a
    /// `tokenizer_config.json` beside it says `"do_lower_case": false`), or from DeBERTa's
    /// `spm.model` (converted as transformers converts it: [`crate::spm`]).
    ///
    /// Truncation and padding baked into the file are replaced: truncation at `max_length`,
    /// no padding (batches are padded by [`pad_batch`]), as transformers does when the caller
    /// passes its own settings.
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        let path = path.as_ref();
        let fail = |source: tokenizers::Error| EncoderError::Tokenizer { path: path.to_path_buf(), source };
        if !path.is_file() {
            return Err(EncoderError::NotFound {
                path: path.to_path_buf(),
                what: "a tokenizer.json, vocab.txt or spm.model".into(),
            });
        }
        let mut inner = if path.extension().is_some_and(|e| e == "txt") {
            from_vocab(path).map_err(fail)?
        } else if path.extension().is_some_and(|e| e == "model") {
            crate::spm::deberta_tokenizer(path).map_err(|message| fail(message.into()))?
        } else {
            Tokenizer::from_file(path).map_err(fail)?
        };
        if max_length < 2 {
            return Err(fail(format!("max_length must leave room for [CLS] and [SEP], got {max_length}").into()));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(fail)?;
        inner.with_padding(None);
        // BERT's `[PAD]`, RoBERTa's and XLM-R's `<pad>`.
        let pad_id = ["[PAD]", "<pad>"].iter().find_map(|t| inner.token_to_id(t)).unwrap_or(0);
        Ok(Self { inner, pad_id, max_length })
    }

    /// This tokenizer cutting texts longer than `max_length` at the end (`Right`, the default),
    /// at the start (`Left`), or not at all (`None`: an encoding may be longer than the model).
    pub fn truncating(&self, truncation: Truncation) -> Result<Self> {
        let mut inner = self.inner.clone();
        let direction = match truncation {
            Truncation::None => {
                inner.with_truncation(None).map_err(EncoderError::Encode)?;
                return Ok(Self { inner, ..self.clone() });
            }
            Truncation::Right => TruncationDirection::Right,
            Truncation::Left => TruncationDirection::Left,
        };
        inner
            .with_truncation(Some(TruncationParams {
                max_length: self.max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction,
            }))
            .map_err(EncoderError::Encode)?;
        Ok(Self { inner, ..self.clone() })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let encoding = self.inner.encode(text, true).map_err(EncoderError::Encode)?;
        Ok(Encoded { input_ids: encoding.get_ids().to_vec(), token_type_ids: encoding.get_type_ids().to_vec() })
    }

    /// A pair of texts as the model's template joins them (`[CLS] a [SEP] b [SEP]`, token
    /// types 0 then 1; RoBERTa's `<s> a </s></s> b </s>`), truncated longest first.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Encoded> {
        let encoding = self.inner.encode((a, b), true).map_err(EncoderError::Encode)?;
        Ok(Encoded { input_ids: encoding.get_ids().to_vec(), token_type_ids: encoding.get_type_ids().to_vec() })
    }

    /// Tokenizes many texts on all cores (rayon, through `tokenizers`), in input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|&t| (t, None)).collect();
        self.encode_batch_pairs(&inputs)
    }

    /// Tokenizes many texts, each alone or with its pair (as [`Self::encode_pair`]), on all
    /// cores, in input order.
    pub fn encode_batch_pairs(&self, texts: &[(&str, Option<&str>)]) -> Result<Vec<Encoded>> {
        let inputs: Vec<tokenizers::EncodeInput> = texts
            .iter()
            .map(|&(a, b)| match b {
                Some(b) => (a, b).into(),
                None => a.into(),
            })
            .collect();
        let encodings = self.inner.encode_batch(inputs, true).map_err(EncoderError::Encode)?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded { input_ids: e.get_ids().to_vec(), token_type_ids: e.get_type_ids().to_vec() })
            .collect())
    }

    /// Pads to the longest item of this batch.
    pub fn pad(&self, items: &[&Encoded]) -> PaddedBatch {
        pad_batch(items, self.pad_id, 1)
    }
}

fn from_vocab(path: &Path) -> std::result::Result<Tokenizer, Box<dyn std::error::Error + Send + Sync>> {
    let lowercase = path
        .parent()
        .map(|dir| dir.join("tokenizer_config.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("do_lower_case").and_then(serde_json::Value::as_bool))
        .unwrap_or(true);
    let wordpiece = WordPiece::from_file(&path.to_string_lossy()).unk_token("[UNK]".into()).build()?;
    let mut tokenizer = Tokenizer::new(wordpiece);
    let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| format!("vocab.txt has no {t} token"));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
    Ok(tokenizer)
}

/// A batch padded to its longest sequence, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

/// Pads `items` with `pad_id` (mask 0, type 0) to the longest of them, rounded up to a multiple
/// of `multiple` (transformers' `pad_to_multiple_of`; 1 or 0 rounds nothing).
pub fn pad_batch(items: &[&Encoded], pad_id: u32, multiple: usize) -> PaddedBatch {
    let batch = items.len();
    let seq = padded_length(items.iter().map(|e| e.len()).max().unwrap_or(0), multiple);
    let mut out = PaddedBatch {
        batch,
        seq,
        input_ids: vec![i64::from(pad_id); batch * seq],
        attention_mask: vec![0; batch * seq],
        token_type_ids: vec![0; batch * seq],
    };
    for (row, item) in items.iter().enumerate() {
        let start = row * seq;
        for (j, (&id, &ty)) in item.input_ids.iter().zip(&item.token_type_ids).enumerate() {
            out.input_ids[start + j] = i64::from(id);
            out.token_type_ids[start + j] = i64::from(ty);
            out.attention_mask[start + j] = 1;
        }
    }
    out
}

/// `longest` rounded up to a multiple of `multiple` (1 or 0: `longest` itself).
pub fn padded_length(longest: usize, multiple: usize) -> usize {
    longest.next_multiple_of(multiple.max(1))
}

impl PaddedBatch {
    /// Real (non-padding) tokens in the batch.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }

    pub fn to_input<B: Backend>(&self, device: &B::Device) -> EncoderInput<B> {
        let shape = [self.batch, self.seq];
        let int = |v: &Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), shape), device);
        EncoderInput {
            input_ids: int(&self.input_ids),
            attention_mask: int(&self.attention_mask),
            token_type_ids: int(&self.token_type_ids),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_the_longest_item_only() {
        let a = Encoded { input_ids: vec![101, 7, 102], token_type_ids: vec![0; 3] };
        let b = Encoded { input_ids: vec![101, 102], token_type_ids: vec![0; 2] };
        let batch = pad_batch(&[&a, &b], 0, 1);
        assert_eq!((batch.batch, batch.seq), (2, 3));
        assert_eq!(batch.input_ids, vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(batch.real_tokens(), 5);
    }

    #[test]
    fn pads_up_to_a_multiple_when_asked() {
        let a = Encoded { input_ids: vec![101, 7, 8, 9, 102], token_type_ids: vec![0; 5] };
        let batch = pad_batch(&[&a], 3, 4);
        assert_eq!((batch.batch, batch.seq), (1, 8));
        assert_eq!(batch.input_ids, vec![101, 7, 8, 9, 102, 3, 3, 3]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(batch.real_tokens(), 5);
        assert_eq!([padded_length(8, 4), padded_length(9, 4), padded_length(9, 0), padded_length(0, 8)], [8, 12, 9, 0]);
    }
}
