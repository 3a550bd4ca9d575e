//! A BERT-family tokenizer (`tokenizers`, from `tokenizer.json`: WordPiece for BERT, DistilBERT
//! and ELECTRA, byte-level BPE for RoBERTa, Unigram for XLM-R; or a bare `vocab.txt`),
//! truncation to `max_length` (`longest_first` for pairs, as transformers) and padding of a
//! batch to its own longest sequence.
//!
//! A text longer than [`EncoderTokenizer::window`] bytes is tokenized in pieces, from the end
//! truncation keeps, until the model's `max_length` is reached: a 1 GB line costs what a
//! short text does, and the tokens are the ones the whole text gives (see [`bounded`]).

use std::sync::Arc;

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{EncoderError, Result};
use crate::input::EncoderInput;

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

/// One token of a text with where it came from, as text-embeddings-inference's `/tokenize`
/// answers it: a special token (`[CLS]`) has its vocabulary text and no place; any other the
/// bytes `start..stop` of the text it came from, and that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
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
    /// `inner` without truncation or special tokens: the pieces of a long text.
    whole: Arc<Tokenizer>,
    truncation: Truncation,
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
            crate::spm::deberta_tokenizer(path).map_err(|e| fail(Box::new(e)))?
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
        let mut whole = inner.clone();
        whole.with_truncation(None).map_err(fail)?;
        // BERT's `[PAD]`, RoBERTa's and XLM-R's `<pad>`.
        let pad_id = ["[PAD]", "<pad>"].iter().find_map(|t| inner.token_to_id(t)).unwrap_or(0);
        Ok(Self { inner, whole: Arc::new(whole), truncation: Truncation::Right, pad_id, max_length })
    }

    /// This tokenizer cutting texts longer than `max_length` at the end (`Right`, the default),
    /// at the start (`Left`), or not at all (`None`: an encoding may be longer than the model).
    pub fn truncating(&self, truncation: Truncation) -> Result<Self> {
        self.truncating_at(truncation, self.max_length)
    }

    /// This tokenizer cutting at `max_length` tokens instead (the special tokens included), in
    /// pieces past [`Self::window`] as always. With one token more than a model takes, it tells
    /// whether a text is too long after reading at most that much of it (the server's check).
    pub fn truncating_at(&self, truncation: Truncation, max_length: usize) -> Result<Self> {
        let mut inner = self.inner.clone();
        let direction = match truncation {
            Truncation::None => {
                inner.with_truncation(None).map_err(EncoderError::Encode)?;
                return Ok(Self { inner, truncation, ..self.clone() });
            }
            Truncation::Right => TruncationDirection::Right,
            Truncation::Left => TruncationDirection::Left,
        };
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction,
            }))
            .map_err(EncoderError::Encode)?;
        Ok(Self { inner, truncation, max_length, ..self.clone() })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The tokenizer's model, as `tokenizer.json`'s `model.type` names it: `WordPiece`, `BPE`,
    /// `Unigram` or `WordLevel`.
    pub fn model_type(&self) -> &'static str {
        use tokenizers::ModelWrapper;
        match self.inner.get_model() {
            ModelWrapper::WordPiece(_) => "WordPiece",
            ModelWrapper::BPE(_) => "BPE",
            ModelWrapper::Unigram(_) => "Unigram",
            ModelWrapper::WordLevel(_) => "WordLevel",
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Texts up to this many bytes are tokenized whole; a longer one (when truncating) in
    /// pieces of at most this many bytes until `max_length` tokens exist.
    pub fn window(&self) -> usize {
        self.max_length.saturating_mul(64).max(64 * 1024)
    }

    pub fn encode(&self, text: &str) -> Result<Encoded> {
        Ok(encoded(&self.encode_one(text, None)?))
    }

    /// A pair of texts as the model's template joins them (`[CLS] a [SEP] b [SEP]`, token
    /// types 0 then 1; RoBERTa's `<s> a </s></s> b </s>`), truncated longest first.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Encoded> {
        Ok(encoded(&self.encode_one(a, Some(b))?))
    }

    /// Tokenizes many texts on all cores (rayon, through `tokenizers`), in input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|&t| (t, None)).collect();
        self.encode_batch_pairs(&inputs)
    }

    /// Tokenizes many texts, each alone or with its pair (as [`Self::encode_pair`]), on all
    /// cores, in input order; long ones in pieces, one after another.
    pub fn encode_batch_pairs(&self, texts: &[(&str, Option<&str>)]) -> Result<Vec<Encoded>> {
        if texts.iter().any(|(_, b)| b.is_some()) {
            self.budget(true)?;
        }
        let (long, short): (Vec<usize>, Vec<usize>) = (0..texts.len()).partition(|&i| self.is_long(texts[i]));
        let inputs: Vec<tokenizers::EncodeInput> = short
            .iter()
            .map(|&i| match texts[i] {
                (a, Some(b)) => (a, b).into(),
                (a, None) => a.into(),
            })
            .collect();
        let encodings = self.inner.encode_batch(inputs, true).map_err(EncoderError::Encode)?;
        let mut out = vec![None; texts.len()];
        for (i, e) in short.into_iter().zip(encodings) {
            out[i] = Some(encoded(&e));
        }
        for i in long {
            out[i] = Some(encoded(&self.encode_one(texts[i].0, texts[i].1)?));
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Whether this text (or pair) is tokenized in pieces: a text over [`Self::window`] bytes,
    /// or a pair with a text over `4 * max_length` bytes. (`tokenizers` pairs every overflowing
    /// part of one text with every part of the other, all of which are dropped here: a pair of
    /// 60 KB texts at `max_length` 9 would make millions of them.)
    fn is_long(&self, (a, b): (&str, Option<&str>)) -> bool {
        match (self.truncation, b) {
            (Truncation::None, _) => false,
            (_, None) => a.len() > self.window(),
            (_, Some(b)) => a.len().max(b.len()) > self.max_length.saturating_mul(4),
        }
    }

    /// The tokens truncation keeps of a text (or a pair's two) besides the special tokens,
    /// which `max_length` must hold (`tokenizers` subtracts them unchecked).
    fn budget(&self, pair: bool) -> Result<usize> {
        let added = self.inner.get_post_processor().map_or(0, |p| p.added_tokens(pair));
        match self.max_length.checked_sub(added) {
            Some(budget) => Ok(budget),
            None if self.truncation == Truncation::None => Ok(0),
            None => Err(EncoderError::Encode(
                format!(
                    "max_length {} leaves no room for the {added} special tokens of a {}",
                    self.max_length,
                    if pair { "pair" } else { "text" }
                )
                .into(),
            )),
        }
    }

    fn encode_one(&self, a: &str, b: Option<&str>) -> Result<Encoding> {
        let budget = self.budget(b.is_some())?;
        if !self.is_long((a, b)) {
            let input: tokenizers::EncodeInput = match b {
                Some(b) => (a, b).into(),
                None => a.into(),
            };
            return self.inner.encode(input, true).map_err(EncoderError::Encode);
        }
        let from_end = self.truncation == Truncation::Left;
        // One token more than truncation could keep (two for a pair: which of two long texts
        // is longer decides which keeps the odd token).
        let need = budget + if b.is_some() { 2 } else { 1 };
        let window = self.window();
        let (mut first, first_all) = bounded(&self.whole, a, need, window, from_end)?;
        let pair = match b {
            None => None,
            Some(b) => {
                let (mut second, second_all) = bounded(&self.whole, b, need, window, from_end)?;
                if first.len() > budget && second.len() > budget {
                    // Both are cut: `tokenizers` gives the longer one budget / 2 + budget % 2.
                    let first_longer = match (first_all, second_all) {
                        _ if budget.is_multiple_of(2) => false,
                        (true, true) => first.len() > second.len(),
                        _ => longer(&self.whole, a, b, need, window)?,
                    };
                    let keep = budget + 1;
                    first.truncate(keep + usize::from(first_longer), 0, direction(from_end));
                    second.truncate(keep, 0, direction(from_end));
                }
                second.set_type_ids(vec![1; second.len()]);
                Some(second)
            }
        };
        self.inner.post_process(no_overflow(first), pair.map(no_overflow), true).map_err(EncoderError::Encode)
    }

    /// Every token of `text`, with the special tokens when `add_special_tokens`, however long
    /// the text (no truncation, whatever this tokenizer's): what TEI's `/tokenize` answers.
    pub fn tokens(&self, text: &str, add_special_tokens: bool) -> Result<Vec<Token>> {
        let untruncated;
        let tokenizer = if self.truncation == Truncation::None {
            &self.inner
        } else {
            // A copy of the vocabulary: call this on a `Truncation::None` tokenizer when it is
            // called often (the server does).
            let mut copy = self.inner.clone();
            copy.with_truncation(None).map_err(EncoderError::Encode)?;
            untruncated = copy;
            &untruncated
        };
        let encoding = tokenizer.encode(text, add_special_tokens).map_err(EncoderError::Encode)?;
        let tokens = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_offsets())
            .zip(encoding.get_special_tokens_mask())
            .zip(encoding.get_tokens())
            .map(|(((&id, &(start, stop)), &special), token)| {
                if special == 1 {
                    return Token { id, text: token.clone(), special: true, start: None, stop: None };
                }
                // Offsets are bytes of the original text (normalisation maps them back).
                let piece = text.as_bytes().get(start..stop).unwrap_or_default();
                Token {
                    id,
                    text: String::from_utf8_lossy(piece).into_owned(),
                    special: false,
                    start: Some(start),
                    stop: Some(stop),
                }
            })
            .collect();
        Ok(tokens)
    }

    /// The text of `ids` (`skip_special_tokens`: without `[CLS]`, `[SEP]`, padding), as the
    /// tokenizer's decoder joins them. An id past the vocabulary is an error naming it, not a
    /// silently shorter text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= size) {
            return Err(EncoderError::UnknownId { id, last: size.saturating_sub(1) });
        }
        self.inner.decode(ids, skip_special_tokens).map_err(EncoderError::Decode)
    }

    /// Pads to the longest item of this batch.
    pub fn pad(&self, items: &[&Encoded]) -> PaddedBatch {
        pad_batch(items, self.pad_id, 1)
    }
}

fn encoded(e: &Encoding) -> Encoded {
    Encoded { input_ids: e.get_ids().to_vec(), token_type_ids: e.get_type_ids().to_vec() }
}

fn direction(from_end: bool) -> TruncationDirection {
    if from_end { TruncationDirection::Left } else { TruncationDirection::Right }
}

fn no_overflow(mut e: Encoding) -> Encoding {
    e.set_overflowing(Vec::new());
    e
}

/// At least `need` tokens of `text` from its start (or its end), and whether they are all of
/// them: the text is cut into [`Pieces`], each tokenized alone (by a tokenizer that truncates
/// nothing and adds no special tokens), until `need` tokens exist.
fn bounded(whole: &Tokenizer, text: &str, need: usize, window: usize, from_end: bool) -> Result<(Encoding, bool)> {
    let mut pieces = Pieces::new(text, need, window, from_end);
    let mut parts = Vec::new();
    let mut tokens = 0;
    while tokens < need {
        let Some(piece) = pieces.next() else { break };
        let encoding = whole.encode(piece, false).map_err(EncoderError::Encode)?;
        tokens += encoding.len();
        parts.push(no_overflow(encoding));
    }
    if from_end {
        parts.reverse();
    }
    Ok((Encoding::merge(parts, true), pieces.done()))
}

/// Whether `a` makes more tokens than `b`: both counted a piece at a time, the one behind
/// first, until the shorter one ends (no more of the longer is read than that).
fn longer(whole: &Tokenizer, a: &str, b: &str, need: usize, window: usize) -> Result<bool> {
    let count = |piece: &str| whole.encode(piece, false).map(|e| e.len()).map_err(EncoderError::Encode);
    let (mut pa, mut pb) = (Pieces::new(a, need, window, false), Pieces::new(b, need, window, false));
    let (mut na, mut nb) = (0, 0);
    loop {
        match (pa.done(), pb.done()) {
            (true, true) => return Ok(na > nb),
            (true, false) if nb >= na => return Ok(false),
            (false, true) if na > nb => return Ok(true),
            _ => {}
        }
        if !pa.done() && (na <= nb || pb.done()) {
            na += pa.next().map_or(Ok(0), count)?;
        } else {
            nb += pb.next().map_or(Ok(0), count)?;
        }
    }
}

/// `text` in pieces from its start (or its end), cut by [`cut_in`]: the first of about `8 *
/// need` bytes (enough for `need` tokens in any prose), each next one twice as long, up to
/// `window` bytes.
///
/// A piece ends where a whitespace character (space, tab, newline) follows a letter or digit:
/// no tokenizer here joins those two into one token (WordPiece and Unigram split at
/// whitespace; byte-level BPE's pattern ends a word before it), so each piece's tokens are
/// the whole text's there. A run of more than `window` bytes with no such place is cut at a
/// character: the one case where pieces may differ from the whole (a 64 KiB "word" that
/// WordPiece would make one `[UNK]` may become two).
struct Pieces<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    size: usize,
    window: usize,
    from_end: bool,
}

impl<'a> Pieces<'a> {
    fn new(text: &'a str, need: usize, window: usize, from_end: bool) -> Self {
        let size = need.saturating_mul(8).clamp(4096, window.max(4096));
        Self { text, start: 0, end: text.len(), size, window: window.max(4096), from_end }
    }

    fn done(&self) -> bool {
        self.start >= self.end
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done() {
            return None;
        }
        let piece = if self.from_end {
            let cut = cut_in(self.text, self.end.saturating_sub(self.size).max(self.start), self.end, true);
            let piece = &self.text[cut..self.end];
            self.end = cut;
            piece
        } else {
            let cut = cut_in(self.text, self.start, (self.start + self.size).min(self.end), false);
            let piece = &self.text[self.start..cut];
            self.start = cut;
            piece
        };
        self.size = self.size.saturating_mul(2).min(self.window);
        Some(piece)
    }
}

/// Where to cut `text` between `lo` and `hi`: `hi` itself when it is the text's end (or `lo`
/// its start, `from_end`); else the place nearest `hi` (`lo`, from the end) where whitespace
/// follows a letter or digit; else a character boundary there. Never `lo` (`hi`, from the end),
/// so every piece holds something.
fn cut_in(text: &str, lo: usize, hi: usize, from_end: bool) -> usize {
    let bytes = text.as_bytes();
    let is_cut = |p: usize| {
        matches!(bytes[p], b' ' | b'\t' | b'\n' | b'\r')
            && text[..p].chars().next_back().is_some_and(char::is_alphanumeric)
    };
    if from_end {
        if lo == 0 {
            return 0;
        }
        let mut cut = (lo..hi).find(|&p| text.is_char_boundary(p) && p > 0 && is_cut(p));
        if cut.is_none() {
            cut = (lo..hi).find(|&p| text.is_char_boundary(p));
        }
        cut.unwrap_or(lo)
    } else {
        if hi == text.len() {
            return hi;
        }
        let mut cut = (lo + 1..=hi).rev().find(|&p| text.is_char_boundary(p) && is_cut(p));
        if cut.is_none() {
            cut = (lo + 1..=hi).rev().find(|&p| text.is_char_boundary(p));
        }
        cut.unwrap_or(hi)
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
        .with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))))
        // `##` pieces joined back, as transformers' converted BertTokenizerFast decodes.
        .with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    // The special tokens the vocabulary has, as the converted tokenizer.json marks them: kept
    // whole in a text, and left out by `decode(.., skip_special_tokens)`.
    let special: Vec<tokenizers::AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .filter(|t| tokenizer.token_to_id(t).is_some())
        .map(|t| tokenizers::AddedToken::from(*t, true))
        .collect();
    tokenizer.add_special_tokens(&special);
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

    /// A WordPiece tokenizer over a small vocabulary, cutting at `max_length`.
    fn small(max_length: usize) -> (EncoderTokenizer, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("encoders-tokens-{}-{max_length}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "wor", "##ld", "!", "é"];
        std::fs::write(dir.join("vocab.txt"), vocab.join("\n")).unwrap();
        (EncoderTokenizer::from_file(dir.join("vocab.txt"), max_length).unwrap(), dir)
    }

    #[test]
    fn tokens_keep_their_place_in_the_text_and_are_never_cut() {
        let (tokenizer, dir) = small(4);
        let text = "Hello  WORLD! hello world";
        let tokens = tokenizer.tokens(text, true).unwrap();
        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, [2, 5, 6, 9, 5, 6, 3], "every token, past max_length 4");
        assert_eq!(tokens[0], Token { id: 2, text: "[CLS]".into(), special: true, start: None, stop: None });
        assert_eq!(tokens[2], Token { id: 6, text: "WORLD".into(), special: false, start: Some(7), stop: Some(12) });
        assert_eq!(tokens[3].text, "!");
        assert!(tokens[6].special && tokens[6].text == "[SEP]");
        let plain = tokenizer.tokens(text, false).unwrap();
        assert_eq!(plain.len(), 5);
        assert!(plain.iter().all(|t| !t.special));
        // Offsets are bytes of the text as sent, accents and all.
        let accented = tokenizer.tokens("é hello", false).unwrap();
        assert_eq!((accented[1].start, accented[1].stop, accented[1].text.as_str()), (Some(3), Some(8), "hello"));
        // The truncating tokenizer answers the same, through a copy.
        let cut = tokenizer.truncating(Truncation::Right).unwrap();
        assert_eq!(cut.tokens(text, true).unwrap(), tokens);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn decoding_joins_pieces_and_refuses_ids_past_the_vocabulary() {
        let (tokenizer, dir) = small(16);
        assert_eq!(tokenizer.decode(&[2, 5, 7, 8, 3], true).unwrap(), "hello world");
        assert_eq!(tokenizer.decode(&[2, 5, 3], false).unwrap(), "[CLS] hello [SEP]");
        let e = tokenizer.decode(&[5, 11], true).unwrap_err().to_string();
        assert!(e.contains("token id 11") && e.contains("0 to 10"), "{e}");
        assert_eq!(tokenizer.decode(&[], true).unwrap(), "");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
