//! A SentencePiece model (`spm.model`) as a `tokenizers` pipeline, built as transformers'
//! `DebertaV2Converter` builds DeBERTa-v2/v3's fast tokenizer: the Hub's DeBERTa-v3
//! repositories ship `spm.model` and no `tokenizer.json`.
//!
//! `spm.model` is a protobuf `ModelProto`; the few fields the converter reads are decoded here
//! by hand (pieces with their scores and types, the trainer's model type and unknown id, the
//! normalizer's precompiled character map) rather than through a protobuf crate and a schema.

use std::path::Path;

use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Sequence as NormalizerSequence, Strip};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Why an `spm.model` cannot be converted (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpmError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The protobuf does not decode as a `ModelProto`: what was wrong, where it was found.
    #[error("{0}")]
    Malformed(String),
    #[error("its model type is {0} (not Unigram, 1): only Unigram models are converted")]
    NotUnigram(u64),
    #[error("it has no {0} piece")]
    MissingPiece(&'static str),
    /// `tokenizers` refused a part of the pipeline built from the model.
    #[error(transparent)]
    Pipeline(tokenizers::Error),
}

fn malformed(message: impl Into<String>) -> SpmError {
    SpmError::Malformed(message.into())
}

/// What the converter reads of a `ModelProto`.
#[derive(Debug, Default)]
struct SpmModel {
    /// `(piece, score, type)`; type 1 normal, 2 unknown, 3 control, 4 user-defined.
    pieces: Vec<(String, f32, u64)>,
    /// 1 Unigram, 2 BPE, 3 word, 4 char.
    model_type: u64,
    unk_id: u64,
    precompiled_charsmap: Vec<u8>,
}

/// A protobuf message's fields, one at a time: `(field number, value)`.
struct Fields<'a> {
    bytes: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, SpmError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or_else(|| malformed("a varint runs past the end"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("a varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SpmError> {
        if n > self.bytes.len() {
            return Err(malformed("a field runs past the end"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn next(&mut self) -> Option<Result<(u64, Value<'a>), SpmError>> {
        if self.bytes.is_empty() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed64
                }
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| malformed("a field longer than memory"))?;
                    Value::Bytes(self.take(n)?)
                }
                5 => {
                    let b = self.take(4)?;
                    Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                }
                other => return Err(malformed(format!("wire type {other} is not one a SentencePiece model uses"))),
            };
            Ok((key >> 3, value))
        })())
    }
}

fn parse(bytes: &[u8]) -> Result<SpmModel, SpmError> {
    let mut model = SpmModel { model_type: 1, ..Default::default() };
    let mut fields = Fields { bytes };
    while let Some(field) = fields.next() {
        match field? {
            (1, Value::Bytes(piece)) => {
                let (mut text, mut score, mut kind) = (String::new(), 0.0f32, 1u64);
                let mut inner = Fields { bytes: piece };
                while let Some(field) = inner.next() {
                    match field? {
                        (1, Value::Bytes(b)) => {
                            text = String::from_utf8(b.to_vec())
                                .map_err(|e| malformed(format!("a piece is not UTF-8: {e}")))?
                        }
                        (2, Value::Fixed32(bits)) => score = f32::from_bits(bits),
                        (3, Value::Varint(v)) => kind = v,
                        _ => {}
                    }
                }
                model.pieces.push((text, score, kind));
            }
            (2, Value::Bytes(trainer)) => {
                let mut inner = Fields { bytes: trainer };
                while let Some(field) = inner.next() {
                    match field? {
                        (3, Value::Varint(v)) => model.model_type = v,
                        (40, Value::Varint(v)) => model.unk_id = v,
                        _ => {}
                    }
                }
            }
            (3, Value::Bytes(normalizer)) => {
                let mut inner = Fields { bytes: normalizer };
                while let Some(field) = inner.next() {
                    if let (2, Value::Bytes(map)) = field? {
                        model.precompiled_charsmap = map.to_vec();
                    }
                }
            }
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err(malformed("no pieces: not a SentencePiece model"));
    }
    Ok(model)
}

/// DeBERTa-v2/v3's fast tokenizer from its `spm.model` (and the `do_lower_case` /
/// `split_by_punct` of a `tokenizer_config.json` beside it), as `DebertaV2TokenizerFast`
/// converts it: a Unigram over the pieces, [lower-casing,] strip, the precompiled character
/// map, runs of spaces to one, [punctuation split,] Metaspace; control and user-defined pieces
/// as added tokens; `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B:1 [SEP]:1`.
pub(crate) fn deberta_tokenizer(path: &Path) -> Result<Tokenizer, SpmError> {
    let bytes = std::fs::read(path)?;
    let spm = parse(&bytes)?;
    if spm.model_type != 1 {
        return Err(SpmError::NotUnigram(spm.model_type));
    }
    let config = path
        .parent()
        .map(|dir| dir.join("tokenizer_config.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .unwrap_or_default();
    let flag = |key: &str| config.get(key).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let vocab: Vec<(String, f64)> = spm.pieces.iter().map(|(p, s, _)| (p.clone(), f64::from(*s))).collect();
    let unk = usize::try_from(spm.unk_id).map_err(|_| malformed(format!("unk_id {} is out of range", spm.unk_id)))?;
    let unigram = Unigram::from(vocab, Some(unk), false).map_err(SpmError::Pipeline)?;
    let mut tokenizer = Tokenizer::new(unigram);

    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if flag("do_lower_case") {
        normalizers.push(Lowercase.into());
    }
    normalizers.push(Strip::new(true, true).into());
    if !spm.precompiled_charsmap.is_empty() {
        normalizers
            .push(Precompiled::from(&spm.precompiled_charsmap).map_err(|e| SpmError::Pipeline(e.into()))?.into());
    }
    let spaces = Replace::new(ReplacePattern::Regex(" {2,}".into()), " ").map_err(SpmError::Pipeline)?;
    normalizers.push(spaces.into());
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));

    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
    if flag("split_by_punct") {
        pre.push(Punctuation::new(SplitDelimiterBehavior::Isolated).into());
    }
    pre.push(metaspace.clone().into());
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(pre)));
    tokenizer.with_decoder(Some(metaspace));

    // Control and user-defined pieces are added tokens (control ones special), in id order.
    let added: Vec<AddedToken> = spm
        .pieces
        .iter()
        .filter(|(_, _, kind)| *kind == 3 || *kind == 4)
        .map(|(piece, _, kind)| AddedToken::from(piece.clone(), *kind == 3).normalized(false))
        .collect();
    tokenizer.add_tokens(&added);
    // The fast tokenizer's special tokens (bos/eos are [CLS]/[SEP]); one the pieces lack
    // ([MASK] in DeBERTa-v3) is appended after them.
    let specials: Vec<AddedToken> =
        ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"].iter().map(|t| AddedToken::from(*t, true)).collect();
    tokenizer.add_special_tokens(&specials);
    let id = |t: &'static str| tokenizer.token_to_id(t).ok_or(SpmError::MissingPiece(t));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let template = TemplateProcessing::builder()
        .try_single("[CLS]:0 $A:0 [SEP]:0")
        .and_then(|b| b.try_pair("[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"))
        .map_err(|e| SpmError::Pipeline(e.into()))?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| SpmError::Pipeline(e.into()))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}
