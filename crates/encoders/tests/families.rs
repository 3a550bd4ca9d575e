//! RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA against transformers and PEFT: tiny random models
//! of each family with a tokenizer of the family's kind (`scripts/golden_families.py`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use encoders::{EncoderInput, FamilyInfo, LoadOptions};

type B = Flex;

const FAMILIES: [&str; 4] = ["roberta", "xlm-roberta", "distilbert", "electra"];

fn info(model_type: &str) -> FamilyInfo {
    *encoders::families().iter().find(|f| f.model_type == model_type).unwrap()
}

fn fixture(model_type: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families").join(model_type)
}

struct Golden {
    input: EncoderInput<B>,
    shape: [usize; 2],
    last_hidden_state: Vec<f32>,
    logits: Vec<f32>,
    peft_logits: Vec<f32>,
}

fn golden(dir: &Path) -> Golden {
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = |k: &str| -> (Vec<i64>, Vec<usize>) {
        let t = file.tensor(k).unwrap();
        (t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(), t.shape().to_vec())
    };
    let floats = |k: &str| -> Vec<f32> {
        file.tensor(k).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let device = Default::default();
    let (ids, shape) = ints("input_ids");
    let shape = [shape[0], shape[1]];
    let int = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, shape), &device);
    Golden {
        input: EncoderInput {
            input_ids: int(ids),
            attention_mask: int(ints("attention_mask").0),
            token_type_ids: int(ints("token_type_ids").0),
        },
        shape,
        last_hidden_state: floats("last_hidden_state"),
        logits: floats("logits"),
        peft_logits: floats("peft_logits"),
    }
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

#[track_caller]
fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tol: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    // Relative to the largest value (at least 1): f32 rounding through the encoder is ~1e-6 of
    // the values it passes through, whatever their scale (DeBERTa's hidden states reach ~4); a
    // wrong position term, scale, mask or activation moves outputs by ~1e-2 of them.
    let scale = theirs.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = encoders::testing::max_abs_diff(ours, theirs) / f64::from(scale);
    encoders::testing::within(&format!("{what}, relative to {scale:.2}"), worst, f64::from(tol));
}

fn load(model_type: &str) -> encoders::Pretrained<B> {
    encoders::from_pretrained::<B>(
        fixture(model_type).join("model").to_str().unwrap(),
        &LoadOptions::default(),
        &Default::default(),
    )
    .unwrap()
}

#[test]
fn each_family_is_detected_and_loads_with_its_own_head() {
    for model_type in FAMILIES {
        let pretrained = load(model_type);
        assert_eq!(pretrained.config.family, info(model_type), "{model_type}");
        assert!(pretrained.report.initialized.is_empty(), "{model_type}: the checkpoint has its head");
        assert_eq!(pretrained.model.num_labels(), 3, "{model_type}");
    }
}

/// Token ids equal the fast tokenizer's, for single texts, a pair and a text truncated at the
/// model's positions.
#[test]
fn token_ids_equal_the_family_tokenizers() {
    for model_type in FAMILIES {
        let pretrained = load(model_type);
        let tokenizer = pretrained.tokenizer(512).unwrap();
        let warnings = pretrained.tokenizer_warnings(&tokenizer);
        assert!(warnings.is_empty(), "the family's own tokenizer fits it: {warnings:?}");
        let text = std::fs::read_to_string(fixture(model_type).join("tokens.jsonl")).unwrap();
        let mut lines = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        let positions = lines.next().unwrap()["max_length"].as_u64().unwrap() as usize;
        assert_eq!(tokenizer.max_length(), positions, "{model_type}: truncation at the text positions");
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
        };
        let mut truncated = false;
        for line in lines {
            let expected = ids(&line["input_ids"]);
            let ours = match line.get("text") {
                Some(text) => tokenizer.encode(text.as_str().unwrap()).unwrap(),
                None => tokenizer.encode_pair(line["a"].as_str().unwrap(), line["b"].as_str().unwrap()).unwrap(),
            };
            assert_eq!(ours.input_ids, expected, "{model_type}: {line}");
            if let Some(types) = line.get("token_type_ids") {
                assert_eq!(ours.token_type_ids, ids(types), "{model_type}: token types of {line}");
            }
            truncated |= expected.len() == positions;
        }
        assert!(truncated, "{model_type}: one text fills the positions");
    }
}

/// Hidden states and logits within 1e-5 of transformers on a padded batch holding a pair and a
/// truncated text.
#[test]
fn forward_matches_transformers() {
    for model_type in FAMILIES {
        let pretrained = load(model_type);
        let g = golden(&fixture(model_type));
        let hidden = values(pretrained.model.last_hidden_state(g.input.clone()));
        assert_close(&format!("{model_type} last hidden state {:?}", g.shape), &hidden, &g.last_hidden_state, 1e-5);
        assert_close(&format!("{model_type} logits"), &values(pretrained.model.forward(g.input)), &g.logits, 1e-5);
    }
}

/// The base model alone as a `pytorch_model.bin` (keys without the `roberta.`/`distilbert.`/...
/// prefix, no head): the same encoder, and a head initialised as transformers does (normal
/// with `initializer_range`, zero biases) and reported.
#[test]
fn a_base_pytorch_checkpoint_without_prefix_or_head_loads() {
    for model_type in FAMILIES {
        let dir = fixture(model_type).join("base-bin");
        let pretrained =
            encoders::from_pretrained::<B>(dir.to_str().unwrap(), &LoadOptions::num_labels(3), &Default::default())
                .unwrap();
        assert_eq!(pretrained.config.family, info(model_type), "{model_type}");
        assert!(pretrained.files.weights.ends_with("pytorch_model.bin"));
        let head: Vec<&str> = match model_type {
            "distilbert" => {
                vec!["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"]
            }
            _ => vec![
                "classifier.dense.weight",
                "classifier.dense.bias",
                "classifier.out_proj.weight",
                "classifier.out_proj.bias",
            ],
        };
        assert_eq!(pretrained.report.initialized, head, "{model_type}");
        let g = golden(&fixture(model_type));
        let hidden = values(pretrained.model.last_hidden_state(g.input));
        assert_close(&format!("{model_type} base from pytorch_model.bin"), &hidden, &g.last_hidden_state, 1e-5);
    }
}

/// PEFT's adapter, loaded here, gives PEFT's logits; merged into the weights it gives them too;
/// the merged model saved and read back gives them again; and the adapter saved here has PEFT's
/// exact tensor names.
#[test]
fn peft_adapters_load_merge_and_save_under_peft_names() {
    let device = Default::default();
    for model_type in FAMILIES {
        let dir = fixture(model_type);
        let g = golden(&dir);
        let (mut model, lora) =
            lora_adapter::peft::load_adapter(load(model_type).model, &dir.join("adapter"), &device).unwrap();
        assert_close(
            &format!("{model_type} with PEFT's adapter"),
            &values(model.forward(g.input.clone())),
            &g.peft_logits,
            1e-5,
        );

        let out = tempfile::tempdir().unwrap();
        lora_adapter::peft::save_adapter(&mut model, &lora, out.path()).unwrap();
        let names = |path: &Path| -> Vec<String> {
            let bytes = std::fs::read(path.join("adapter_model.safetensors")).unwrap();
            let mut keys: Vec<String> =
                safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
            keys.sort();
            keys
        };
        assert_eq!(names(out.path()), names(&dir.join("adapter")), "{model_type}: PEFT's key names");

        let merged = lora_adapter::merge(model).unwrap();
        let logits = values(merged.forward(g.input.clone()));
        assert_close(&format!("{model_type} merged"), &logits, &g.peft_logits, 1e-5);
        let saved = tempfile::tempdir().unwrap();
        let config = load(model_type).config;
        encoders::save_pretrained(&merged, &config, saved.path()).unwrap();
        let reread =
            encoders::from_pretrained::<B>(saved.path().to_str().unwrap(), &LoadOptions::default(), &device).unwrap();
        assert!(reread.report.initialized.is_empty(), "{model_type}: the merged checkpoint has its head");
        assert_eq!(values(reread.model.forward(g.input)), logits, "{model_type}: merged model read back");
    }
}

/// The default LoRA targets are PEFT's for the family; DistilBERT has none.
#[test]
fn peft_default_targets_per_family() {
    assert_eq!(info("roberta").default_targets, Ok(&["query", "value"][..]));
    assert_eq!(info("electra").default_targets, Ok(&["query", "value"][..]));
    assert!(info("distilbert").default_targets.is_err());
}
