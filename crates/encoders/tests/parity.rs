//! Parity with transformers 4.46.3 on golden fixtures made by `scripts/golden_bert.py`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{B, assert_close, fixtures, golden, input};
use encoders::LoadOptions;

#[test]
fn tiny_bert_matches_transformers() {
    let dir = fixtures().join("tiny-bert");
    let loaded =
        encoders::from_pretrained::<B>(dir.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap();
    let report = &loaded.report;
    assert!(report.initialized.is_empty(), "the fixture has a classifier: {:?}", report.initialized);
    let model = loaded.model.as_bert().unwrap();

    let (floats, ints) = golden("tiny_golden.safetensors");
    let (out, logits) = model.forward_all(input(&ints));
    assert_close("embedding_output", out.embedding_output, &floats["embedding_output"], 1e-5);
    assert_close("last_hidden_state", out.last_hidden_state, &floats["last_hidden_state"], 1e-5);
    assert_close("pooler_output", out.pooler_output, &floats["pooler_output"], 1e-5);
    assert_close("logits", logits, &floats["logits"], 1e-5);
}

#[test]
fn minilm_real_weights_match_transformers_on_real_reviews() {
    let Some(assets) = encoders::assets::require_shared_assets("minilm parity") else { return };
    let dir = assets.join("all-MiniLM-L6-v2");
    // A base model's checkpoint (no `bert.` prefix): its keys are read under the prefix, and
    // only the head is new.
    let loaded =
        encoders::from_pretrained::<B>(dir.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap();
    assert_eq!(loaded.report.initialized, ["classifier.weight", "classifier.bias"]);
    let model = &loaded.model.as_bert().unwrap().bert;

    let (floats, ints) = golden("minilm_golden.safetensors");
    let lengths: Vec<i64> =
        ints["attention_mask"].1.chunks(ints["attention_mask"].0[1]).map(|r| r.iter().sum()).collect();
    assert!(
        lengths.len() >= 4 && lengths.windows(2).all(|w| w[0] != w[1]),
        "reviews of different lengths: {lengths:?}"
    );

    let out = model.forward(input(&ints));
    assert_close("last_hidden_state", out.last_hidden_state, &floats["last_hidden_state"], 1e-4);
    assert_close("pooler_output", out.pooler_output, &floats["pooler_output"], 1e-4);
}

#[test]
fn tokenizer_ids_match_bert_tokenizer_fast() {
    let Some(assets) = encoders::assets::require_shared_assets("tokenizer parity") else { return };
    let tokenizer =
        encoders::EncoderTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 512).unwrap();
    let expected: Vec<Vec<u32>> = std::fs::read_to_string(fixtures().join("tokenizer_ids.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<String> = std::fs::read_to_string(assets.join("imdb/test_500.jsonl"))
        .unwrap()
        .lines()
        .take(expected.len())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected.len(), 200);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = tokenizer.encode_batch(&refs).unwrap();
    for (i, (ours, theirs)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(&ours.input_ids, theirs, "review {i}");
    }
    assert!(expected.iter().any(|ids| ids.len() == 512), "some review is truncated at 512");
}

#[test]
fn vocab_txt_alone_tokenizes_as_tokenizer_json() {
    let Some(assets) = encoders::assets::require_shared_assets("vocab.txt tokenizer") else { return };
    let dir = assets.join("bert-base-uncased");
    let from_json = encoders::EncoderTokenizer::from_file(dir.join("tokenizer.json"), 512).unwrap();
    let from_vocab = encoders::EncoderTokenizer::from_file(dir.join("vocab.txt"), 512).unwrap();
    let text = "Hello, WORLD! Ça va? This film's <br />plot was un-be-lievable.";
    assert_eq!(from_json.encode(text).unwrap(), from_vocab.encode(text).unwrap());
}

#[test]
fn minilm_tokenizer_settings_are_replaced_by_the_callers() {
    // all-MiniLM-L6-v2's tokenizer.json truncates and pads to 128; ours truncate at max_length
    // and never pad single texts.
    let Some(assets) = encoders::assets::require_shared_assets("minilm tokenizer") else { return };
    let tokenizer = encoders::EncoderTokenizer::from_file(assets.join("all-MiniLM-L6-v2/tokenizer.json"), 300).unwrap();
    assert_eq!(tokenizer.encode("short").unwrap().len(), 3);
    let long = "word ".repeat(1000);
    assert_eq!(tokenizer.encode(&long).unwrap().len(), 300);
}
