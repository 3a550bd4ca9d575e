//! A text longer than the tokenizer's window is tokenized in pieces until `max_length` tokens
//! exist (issue #24: a 1 GB line must cost what a review does). The pieces must give exactly
//! what `tokenizers` gives for the whole text with the same truncation: checked here on IMDb
//! reviews joined into texts of ~200 KB, for every tokenizer kind the families use (WordPiece,
//! byte-level BPE, Unigram, DeBERTa's converted `spm.model`), cut at the end and at the start,
//! alone and in pairs (longest first, with the odd token going to the truly longer text).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use encoders::{EncoderTokenizer, Truncation};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every `tokenizer.json` the fixtures hold, and bert-base-uncased's where the assets are.
fn tokenizer_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["roberta", "xlm-roberta", "electra", "distilbert"]
        .iter()
        .map(|f| fixtures().join("families").join(f).join("model/tokenizer.json"))
        .chain(
            ["modernbert", "deberta-v3", "deberta-v2"]
                .iter()
                .map(|f| fixtures().join("modern").join(f).join("model/tokenizer.json")),
        )
        .collect();
    if let Some(assets) = encoders::assets::require_shared_assets("long_texts") {
        files.push(assets.join("bert-base-uncased/tokenizer.json"));
    }
    for f in &files {
        assert!(f.is_file(), "{} is missing", f.display());
    }
    files
}

/// IMDb reviews (the assets' draw, or the fixtures' token texts without them) joined by
/// varied whitespace into texts of at least `bytes` bytes each.
fn long_texts(bytes: usize) -> Vec<String> {
    let reviews: Vec<String> = match encoders::assets::shared_assets() {
        Some(assets) => std::fs::read_to_string(assets.join("imdb/test_500.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .collect(),
        None => std::fs::read_to_string(fixtures().join("families/roberta/tokens.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .collect(),
    };
    let joins = [" ", "\n", "  ", "\t", "\n\n", " \n", "\r\n"];
    let mut texts = Vec::new();
    let mut text = String::new();
    for (i, review) in reviews.iter().cycle().take(reviews.len() * 20).enumerate() {
        text.push_str(review);
        text.push_str(joins[i % joins.len()]);
        if text.len() >= bytes {
            texts.push(std::mem::take(&mut text));
            if texts.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(texts.len(), 3);
    texts
}

/// The reference: `tokenizers` itself on the whole text (each text tokenized once), truncated
/// and joined by its template as `Tokenizer::encode` does, less the overflowing parts (which it
/// crosses, every part of one text with every part of the other: too many to hold for these).
struct Reference {
    whole: Tokenizer,
    encoded: std::collections::HashMap<String, tokenizers::Encoding>,
}

impl Reference {
    fn new(path: &Path, texts: &[&str]) -> Self {
        let mut whole = Tokenizer::from_file(path).unwrap();
        whole.with_padding(None);
        whole.with_truncation(None).unwrap();
        let encoded = texts.iter().map(|t| (t.to_string(), whole.encode(*t, false).unwrap())).collect();
        Self { whole, encoded }
    }

    fn encode(
        &self,
        a: &str,
        b: Option<&str>,
        max_length: usize,
        direction: TruncationDirection,
    ) -> tokenizers::Encoding {
        use tokenizers::PostProcessor;
        let first = self.encoded[a].clone();
        let second = b.map(|b| {
            let mut e = self.encoded[b].clone();
            e.set_type_ids(vec![1; e.len()]);
            e
        });
        let added = self.whole.get_post_processor().map_or(0, |p| p.added_tokens(b.is_some()));
        let params = TruncationParams {
            max_length: max_length - added,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction,
        };
        let (mut first, second) = tokenizers::utils::truncation::truncate_encodings(first, second, &params).unwrap();
        first.set_overflowing(Vec::new());
        let second = second.map(|mut e| {
            e.set_overflowing(Vec::new());
            e
        });
        self.whole.post_process(first, second, true).unwrap()
    }
}

#[test]
fn long_texts_tokenize_in_pieces_exactly_as_whole() {
    let texts = long_texts(150_000);
    let short = "A short second text, as a pair's hypothesis is.";
    let all: Vec<&str> = texts.iter().map(String::as_str).chain([short]).collect();
    for (k, path) in tokenizer_files().into_iter().enumerate() {
        let reference = Reference::new(&path, &all);
        // 2048 (a window of 128 KiB, these texts in two pieces or one) for the first only: time.
        for max_length in [512, 9, 2048].into_iter().take(if k == 0 { 3 } else { 2 }) {
            let ours = EncoderTokenizer::from_file(&path, max_length).unwrap();
            assert!(max_length == 2048 || texts.iter().all(|t| t.len() > 2 * ours.window()));
            for (truncation, direction) in
                [(Truncation::Right, TruncationDirection::Right), (Truncation::Left, TruncationDirection::Left)]
            {
                let ours = ours.truncating(truncation).unwrap();
                let at = |what: &str| format!("{} max_length {max_length} {truncation:?}: {what}", path.display());
                for (i, text) in texts.iter().enumerate() {
                    let expected = reference.encode(text, None, max_length, direction);
                    let got = ours.encode(text).unwrap();
                    assert_eq!(got.input_ids, expected.get_ids(), "{}", at(&format!("text {i}")));
                    assert_eq!(got.token_type_ids, expected.get_type_ids(), "{}", at(&format!("text {i} types")));
                }
                // Pairs: long with short (both orders), two long ones of different lengths,
                // a long one with itself (equal lengths: the second keeps the odd token).
                let pairs: Vec<(&str, &str)> = vec![
                    (&texts[0], short),
                    (short, &texts[1]),
                    (&texts[0], &texts[1]),
                    (&texts[2], &texts[0]),
                    (&texts[1], &texts[1]),
                ];
                for (a, b) in &pairs {
                    let expected = reference.encode(a, Some(b), max_length, direction);
                    let got = ours.encode_pair(a, b).unwrap();
                    let what = at(&format!("pair of {} and {} bytes", a.len(), b.len()));
                    assert_eq!(got.input_ids, expected.get_ids(), "{what}");
                    assert_eq!(got.token_type_ids, expected.get_type_ids(), "{what} types");
                }
                // A batch mixing long and short texts keeps its order.
                let batch: Vec<(&str, Option<&str>)> =
                    vec![(short, None), (&texts[0], Some(short)), (short, Some(short)), (&texts[2], None)];
                let got = ours.encode_batch_pairs(&batch).unwrap();
                for ((a, b), got) in batch.iter().zip(&got) {
                    let expected = reference.encode(a, *b, max_length, direction);
                    assert_eq!(got.input_ids, expected.get_ids(), "{}", at("batch"));
                }
            }
        }
    }
}

/// DeBERTa-v3's `spm.model` (converted by the crate, no `tokenizer.json` to compare with): the
/// pieces give the whole text's tokens, cut as the template cuts (`[CLS] ... [SEP]`).
#[test]
fn a_converted_spm_model_tokenizes_long_texts_in_pieces_exactly_as_whole() {
    let spm = fixtures().join("modern/deberta-spm/spm.model");
    let texts = long_texts(200_000);
    for max_length in [512, 9] {
        let ours = EncoderTokenizer::from_file(&spm, max_length).unwrap();
        let untruncated = ours.truncating(Truncation::None).unwrap();
        for text in &texts {
            let all = untruncated.encode(text).unwrap().input_ids;
            let content = &all[1..all.len() - 1];
            let keep = max_length - 2;
            let right: Vec<u32> =
                [&all[..1], &content[..keep], &all[all.len() - 1..]].into_iter().flatten().copied().collect();
            let left: Vec<u32> = [&all[..1], &content[content.len() - keep..], &all[all.len() - 1..]]
                .into_iter()
                .flatten()
                .copied()
                .collect();
            assert_eq!(ours.encode(text).unwrap().input_ids, right, "max_length {max_length}, from the end");
            assert_eq!(
                ours.truncating(Truncation::Left).unwrap().encode(text).unwrap().input_ids,
                left,
                "max_length {max_length}, from the start"
            );
        }
    }
}

/// A 64 MB text gives the tokens its first (or last) 200 KB give: what truncation keeps. (Its
/// cost, a review's, is measured in docs/guarantees.md, not timed here.)
#[test]
fn a_huge_text_gives_what_its_kept_end_gives() {
    let path = fixtures().join("families/roberta/model/tokenizer.json");
    let ours = EncoderTokenizer::from_file(&path, 512).unwrap();
    let piece = long_texts(200_000).swap_remove(0);
    let huge = piece.repeat(64_000_000 / piece.len());
    assert_eq!(ours.encode(&huge).unwrap(), ours.encode(&piece).unwrap(), "the first 512 tokens");
    let left = ours.truncating(Truncation::Left).unwrap();
    assert_eq!(left.encode(&huge).unwrap(), left.encode(&piece).unwrap(), "the last 512 tokens");
}

/// `max_length` 2 holds a text's `[CLS] [SEP]` but not a pair's three special tokens: an
/// error, where `tokenizers` would subtract past zero (a panic, or no truncation at all).
#[test]
fn a_max_length_without_room_for_a_pairs_special_tokens_is_an_error() {
    let path = fixtures().join("families/electra/model/tokenizer.json");
    let ours = EncoderTokenizer::from_file(&path, 2).unwrap();
    assert_eq!(ours.encode("the film was good").unwrap().len(), 2);
    let err = ours.encode_pair("the film", "was good").unwrap_err().to_string();
    assert!(err.contains("max_length 2 leaves no room for the 3 special tokens of a pair"), "{err}");
    let err = ours.encode_batch_pairs(&[("a", None), ("the film", Some("was good"))]).unwrap_err().to_string();
    assert!(err.contains("no room"), "{err}");
}
