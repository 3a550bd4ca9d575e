//! Every family against transformers and PEFT, one harness driven by the fixture directories:
//! each directory under `tests/fixtures/families/` and `tests/fixtures/modern/` that holds a
//! `model/` and a `golden.safetensors` (made by the one script `scripts/golden_families.py`:
//! tiny random models with a tokenizer of the family's kind) is
//! checked the same way, whatever its family. A family added to the registry without a fixture
//! fails [`every_family_has_a_golden_fixture`].
//!
//! What each directory may hold, and what is checked with it:
//! - `model/`, `golden.safetensors`: the family is detected from `config.json`, the checkpoint
//!   has its head, every linear is reached by the adapter walk, and hidden states and logits are
//!   within 1e-5 of transformers' on a padded batch holding a pair and a truncated text;
//! - `tokens.jsonl`: the fast tokenizer's ids (and token types) for texts, a pair and a text
//!   that fills the positions;
//! - `adapter/`: PEFT's adapter gives PEFT's logits, merged and saved it gives them again, and an
//!   adapter saved here has PEFT's tensor names;
//! - `base-bin/`: the base model alone as `pytorch_model.bin` (no prefix, no head) gives the
//!   same hidden states, and only the head's tensors are initialised.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor};
use common::B;
use common::fixture::{assert_close, golden, real_positions, values};
use encoders::{FamilyInfo, LoadOptions};
use lora_adapter::AdaptableModel;

/// Every fixture directory with a model and its goldens, by name (`families/roberta`).
fn fixtures() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut found = Vec::new();
    for group in ["families", "modern"] {
        for entry in std::fs::read_dir(root.join(group)).unwrap() {
            let dir = entry.unwrap().path();
            if dir.join("model").is_dir() && dir.join("golden.safetensors").is_file() {
                let name = format!("{group}/{}", dir.file_name().unwrap().to_str().unwrap());
                found.push((name, dir));
            }
        }
    }
    found.sort();
    assert!(found.len() >= 10, "fixture directories: {found:?}");
    found
}

fn info(model_type: &str) -> FamilyInfo {
    *encoders::families().iter().find(|f| f.model_type == model_type).unwrap()
}

/// The `model_type` a fixture's `config.json` names.
fn model_type(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("model/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["model_type"].as_str().unwrap().to_string()
}

/// The hidden states to compare: every position, except for the families whose padded rows
/// transformers computes from rows where every key is masked (ModernBERT's unpadded attention,
/// DeBERTa's masked relative attention), which no output reads: there, real tokens only.
fn compared(model_type: &str, hidden: &[f32], mask: &[i64]) -> Vec<f32> {
    if !["modernbert", "deberta-v2"].contains(&model_type) {
        return hidden.to_vec();
    }
    real_positions(hidden, mask)
}

fn load(dir: &Path, options: &LoadOptions) -> encoders::Pretrained<B> {
    encoders::from_pretrained::<B>(dir.to_str().unwrap(), options, &Default::default()).unwrap()
}

/// Counts the `LoraLinear` modules in a model's tree, whatever reaches them: Burn enters each
/// field of a module with the module's type as the container, so one `weight` per linear.
struct CountLinears(usize);

impl ModuleVisitor<B> for CountLinears {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if container_type == "Struct:LoraLinear" && name == "weight" {
            self.0 += 1;
        }
    }
}

#[test]
fn every_family_has_a_golden_fixture() {
    let covered: Vec<String> = fixtures().iter().map(|(_, dir)| model_type(dir)).collect();
    for family in encoders::families() {
        assert!(covered.iter().any(|t| t == family.model_type), "no golden fixture for {}", family.model_type);
    }
}

/// Each fixture is detected as the family its config names, has its head, and every linear in
/// the model's tree is reached by the adapter walk (what LoRA targets and saves).
#[test]
fn each_is_detected_loads_with_its_head_and_every_linear_is_walked() {
    for (name, dir) in fixtures() {
        let model_type = model_type(&dir);
        let mut pretrained = load(&dir.join("model"), &LoadOptions::default());
        assert_eq!(pretrained.config.family, info(&model_type), "{name}");
        assert!(pretrained.report.initialized.is_empty(), "{name}: {:?}", pretrained.report.initialized);
        assert_eq!(pretrained.model.num_labels(), 3, "{name}");
        let mut tree = CountLinears(0);
        pretrained.model.visit(&mut tree);
        let mut walked = 0;
        pretrained.model.each_linear(&mut |_| walked += 1);
        assert!(walked > 0 && walked == tree.0, "{name}: {walked} linears walked of {} in the model", tree.0);
    }
}

/// Token ids (and token types) equal the fast tokenizer's, for single texts, a pair and a long
/// text: truncated at the model's positions, or, where those exceed 512 (ModernBERT's 1024),
/// running past 512 tokens.
#[test]
fn token_ids_equal_the_family_tokenizers() {
    for (name, dir) in fixtures() {
        let Ok(text) = std::fs::read_to_string(dir.join("tokens.jsonl")) else { continue };
        let pretrained = load(&dir.join("model"), &LoadOptions::default());
        let tokenizer = pretrained.tokenizer(8192).unwrap();
        let warnings = pretrained.tokenizer_warnings(&tokenizer);
        assert!(warnings.is_empty(), "{name}: the family's own tokenizer fits it: {warnings:?}");
        let mut lines = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        let positions = lines.next().unwrap()["max_length"].as_u64().unwrap() as usize;
        assert_eq!(tokenizer.max_length(), positions, "{name}: truncation at the text positions");
        assert_eq!(pretrained.config.max_text_positions(), positions, "{name}");
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
        };
        let mut longest = 0;
        for line in lines {
            let expected = ids(&line["input_ids"]);
            let ours = match line.get("text") {
                Some(text) => tokenizer.encode(text.as_str().unwrap()).unwrap(),
                None => tokenizer.encode_pair(line["a"].as_str().unwrap(), line["b"].as_str().unwrap()).unwrap(),
            };
            assert_eq!(ours.input_ids, expected, "{name}: {line}");
            if let Some(types) = line.get("token_type_ids") {
                assert_eq!(ours.token_type_ids, ids(types), "{name}: token types of {line}");
            }
            longest = longest.max(expected.len());
        }
        assert!(longest == positions || longest > 512, "{name}: the long text has {longest} of {positions} positions");
    }
}

/// Hidden states and logits within 1e-5 of transformers on a padded batch holding a pair and a
/// long text.
#[test]
fn forward_matches_transformers() {
    for (name, dir) in fixtures() {
        let model_type = model_type(&dir);
        let pretrained = load(&dir.join("model"), &LoadOptions::default());
        let g = golden(&dir);
        let hidden = values(pretrained.model.last_hidden_state(g.input.clone()));
        let theirs = &g.floats["last_hidden_state"];
        assert_close(
            &format!("{name} last hidden state"),
            &compared(&model_type, &hidden, &g.mask),
            &compared(&model_type, theirs, &g.mask),
            1e-5,
        );
        assert_close(&format!("{name} logits"), &values(pretrained.model.forward(g.input)), &g.floats["logits"], 1e-5);
    }
}

/// The base model alone as a `pytorch_model.bin` (keys without the `roberta.`/`distilbert.`/...
/// prefix, no head): the same encoder, and only the head's tensors initialised (as transformers
/// does) and reported.
#[test]
fn a_base_pytorch_checkpoint_without_prefix_or_head_loads() {
    for (name, dir) in fixtures() {
        if !dir.join("base-bin").is_dir() {
            continue;
        }
        let model_type = model_type(&dir);
        let pretrained = load(&dir.join("base-bin"), &LoadOptions::num_labels(3));
        assert_eq!(pretrained.config.family, info(&model_type), "{name}");
        assert!(pretrained.files.weights.ends_with("pytorch_model.bin"));
        // Exactly the head's tensors of the full checkpoint, in the model's order.
        let full = std::fs::read(dir.join("model/model.safetensors")).unwrap();
        let head = info(&model_type).head;
        let mut expected: Vec<String> = safetensors::SafeTensors::deserialize(&full)
            .unwrap()
            .names()
            .into_iter()
            .filter(|k| head.iter().any(|h| k.starts_with(h)))
            .map(String::from)
            .collect();
        let mut initialized = pretrained.report.initialized.clone();
        assert!(initialized.len() >= 2, "{name}: {initialized:?}");
        expected.sort();
        initialized.sort();
        assert_eq!(initialized, expected, "{name}: initialised tensors against the head's");
        let g = golden(&dir);
        let hidden = values(pretrained.model.last_hidden_state(g.input));
        assert_close(
            &format!("{name} base from pytorch_model.bin"),
            &compared(&model_type, &hidden, &g.mask),
            &compared(&model_type, &g.floats["last_hidden_state"], &g.mask),
            1e-5,
        );
    }
}

/// PEFT's adapter, loaded here, gives PEFT's logits; merged into the weights it gives PEFT's
/// merged logits; the merged model saved and read back gives them again; and the adapter saved
/// here has PEFT's exact tensor names.
#[test]
fn peft_adapters_load_merge_and_save_under_peft_names() {
    let device = Default::default();
    for (name, dir) in fixtures() {
        if !dir.join("adapter").is_dir() {
            continue;
        }
        let g = golden(&dir);
        let pretrained = load(&dir.join("model"), &LoadOptions::default());
        let (mut model, lora) =
            lora_adapter::peft::load_adapter(pretrained.model, &dir.join("adapter"), &device).unwrap();
        assert_close(
            &format!("{name} with PEFT's adapter"),
            &values(model.forward(g.input.clone())),
            &g.floats["peft_logits"],
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
        assert_eq!(names(out.path()), names(&dir.join("adapter")), "{name}: PEFT's key names");

        let merged = lora_adapter::merge(model).unwrap();
        let logits = values(merged.forward(g.input.clone()));
        // PEFT's merged logits where the script saved them, else its unmerged ones.
        let theirs = g.floats.get("merged_logits").unwrap_or(&g.floats["peft_logits"]);
        assert_close(&format!("{name} merged"), &logits, theirs, 1e-5);
        let saved = tempfile::tempdir().unwrap();
        encoders::save_pretrained(&merged, &pretrained.config, saved.path()).unwrap();
        let reread = load(saved.path(), &LoadOptions::default());
        assert!(reread.report.initialized.is_empty(), "{name}: the merged checkpoint has its head");
        assert_eq!(values(reread.model.forward(g.input)), logits, "{name}: merged model read back");
    }
}

/// The default LoRA targets are PEFT's for the family; DistilBERT and ModernBERT have none.
#[test]
fn peft_default_targets_per_family() {
    assert_eq!(info("roberta").default_targets, Ok(&["query", "value"][..]));
    assert_eq!(info("electra").default_targets, Ok(&["query", "value"][..]));
    assert!(info("distilbert").default_targets.is_err());
}
