//! `lora train` on each BERT-family model: RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA, CamemBERT
//! and MPNet (tiny random models from `scripts/golden_families.py`, their
//! heads removed as a base checkpoint comes), trained, resumed bit for bit, and their adapters in
//! PEFT's names for the family.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

mod common;

use common::*;

/// The family's fixture model without its classification head (`classifier.*`, and DistilBERT's
/// `pre_classifier.*`), as `roberta-base` or `distilbert-base-uncased` come from the Hub.
fn base_model(tmp: &Path, model_type: &str) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../encoders/tests/fixtures");
    let group = if fixtures.join("families").join(model_type).is_dir() { "families" } else { "modern" };
    let fixture = fixtures.join(group).join(model_type).join("model");
    let out = tmp.join(model_type);
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    let bytes = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("classifier") && !k.starts_with("pre_classifier"))
        .collect();
    std::fs::write(out.join("model.safetensors"), safetensors::serialize(kept, None).unwrap()).unwrap();
    out
}

fn tensor_names(adapter: &Path) -> Vec<String> {
    let bytes = read(&adapter.join("adapter_model.safetensors"));
    let mut names: Vec<String> =
        safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
    names.sort();
    names
}

#[test]
fn each_family_trains_resumes_bit_for_bit_and_saves_peft_names() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let d = data.to_str().unwrap();
    for (model_type, targets, expected) in [
        (
            "roberta",
            "[\"query\", \"value\"]",
            [
                "base_model.model.roberta.encoder.layer.1.attention.self.value.lora_B.weight",
                "base_model.model.classifier.out_proj.weight",
            ],
        ),
        (
            "xlm-roberta",
            "[\"query\", \"value\"]",
            [
                "base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight",
                "base_model.model.classifier.dense.bias",
            ],
        ),
        (
            "distilbert",
            "[\"q_lin\", \"v_lin\"]",
            [
                "base_model.model.distilbert.transformer.layer.1.attention.v_lin.lora_A.weight",
                "base_model.model.pre_classifier.weight",
            ],
        ),
        (
            "electra",
            "[\"query\", \"value\"]",
            [
                "base_model.model.electra.encoder.layer.0.attention.self.value.lora_B.weight",
                "base_model.model.classifier.out_proj.bias",
            ],
        ),
        (
            "camembert",
            "[\"query\", \"value\"]",
            [
                "base_model.model.roberta.encoder.layer.1.attention.self.query.lora_B.weight",
                "base_model.model.classifier.dense.weight",
            ],
        ),
        (
            "mpnet",
            "[\"q\", \"v\"]",
            [
                "base_model.model.mpnet.encoder.layer.1.attention.attn.v.lora_B.weight",
                "base_model.model.classifier.out_proj.weight",
            ],
        ),
    ] {
        let model = base_model(tmp.path(), model_type);
        let set = format!("lora.target_modules={targets}");
        let extra = ["--set", set.as_str(), "--set", "model.hidden_dropout_prob=0.2"];
        train_resume_eval_merge(tmp.path(), &model, d, model_type, &extra, &expected);
    }
}

/// Trains on `model` twice (once straight through, once stopped after its first epoch and
/// resumed) and checks the two adapters are the same bytes and hold the `expected` PEFT names;
/// then evaluates and merges with the adapter.
fn train_resume_eval_merge(tmp: &Path, model: &Path, d: &str, model_type: &str, extra: &[&str], expected: &[&str]) {
    let m = model.to_str().unwrap();
    let (a, b) = (tmp.join(format!("{model_type}-a")), tmp.join(format!("{model_type}-b")));
    let stderr = String::from_utf8(lora(&train_args(m, d, a.to_str().unwrap(), extra)).stderr).unwrap();
    assert!(a.join("adapter/adapter_model.safetensors").is_file(), "{model_type}: {stderr}");
    let names = tensor_names(&a.join("adapter"));
    for name in expected {
        assert!(names.iter().any(|n| n == name), "{model_type}: {name} not in {names:?}");
    }
    // Stopped after its first epoch, then resumed: the same adapter, bit for bit.
    ok(lora(&train_args(m, d, b.to_str().unwrap(), extra)));
    for gone in ["checkpoints/epoch-2", "adapter"] {
        std::fs::remove_dir_all(b.join(gone)).unwrap();
    }
    std::fs::remove_file(b.join("summary.json")).unwrap();
    ok(lora(&["train", "--resume", "--output-dir", b.to_str().unwrap(), "--quiet"]));
    assert_eq!(
        read(&a.join("adapter/adapter_model.safetensors")),
        read(&b.join("adapter/adapter_model.safetensors")),
        "{model_type}: resumed"
    );
    // eval, predict and merge take the family's adapter.
    let adapter = a.join("adapter");
    ok(lora(&["eval", "--model", m, "--adapter", adapter.to_str().unwrap(), "--data", d, "--eval-size", "8"]));
    let predicted =
        ok(lora(&["predict", "--model", m, "--adapter", adapter.to_str().unwrap(), "--text", "the film was good"]));
    assert!(predicted.contains("\"label\""), "{model_type}: {predicted}");
    let merged = tmp.join(format!("{model_type}-merged"));
    ok(lora(&["merge", "--model", m, "--adapter", adapter.to_str().unwrap(), "--output", merged.to_str().unwrap()]));
    let config: serde_json::Value = serde_json::from_slice(&read(&merged.join("config.json"))).unwrap();
    assert_eq!(config["model_type"], model_type);
    assert!(merged.join("tokenizer.json").is_file());
}

/// ModernBERT from a masked-LM checkpoint (the Hub's shape: its `head` is the classifier's, its
/// `decoder` is left), LoRA on `Wqkv` and `attn.Wo` (PEFT has no default for it): trained,
/// resumed bit for bit, evaluated, predicted, merged.
#[test]
fn modernbert_trains_resumes_bit_for_bit_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../encoders/tests/fixtures/modern/modernbert/mlm");
    // Past BERT's 512: ModernBERT reads 1,024 positions here (8,192 in ModernBERT-base).
    let extra = ["--set", "lora.target_modules=[\"Wqkv\", \"attn.Wo\"]", "--set", "data.max_length=1024"];
    let expected = [
        "base_model.model.model.layers.1.attn.Wqkv.lora_A.weight",
        "base_model.model.model.layers.2.attn.Wo.lora_B.weight",
        "base_model.model.classifier.weight",
        "base_model.model.classifier.bias",
    ];
    train_resume_eval_merge(tmp.path(), &model, data.to_str().unwrap(), "modernbert", &extra, &expected);
    let names = tensor_names(&tmp.path().join("modernbert-a/adapter"));
    assert!(!names.iter().any(|n| n.contains("mlp.Wo")), "attn.Wo only: {names:?}");

    // Without target_modules: PEFT has no default for ModernBERT; the error names its linears.
    let out = tmp.path().join("no-targets");
    let (m, d, o) = (model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let err = failure(lora(&["train", "--model", m, "--data", d, "--output-dir", o, "--quiet"]));
    assert!(err.contains("modernbert") && err.contains("Wqkv") && err.contains("attn.Wo"), "{err}");

    // BERT's dropout key is not ModernBERT's: the error names the setting, not the model's file.
    let set = ["--set", "model.hidden_dropout_prob=0.2", "--set", "lora.target_modules=[\"Wqkv\"]"];
    let err =
        failure(lora(&[&["train", "--model", m, "--data", d, "--output-dir", o, "--quiet"][..], &set[..]].concat()));
    assert!(err.contains("model.hidden_dropout_prob") && err.contains("attention_dropout"), "{err}");
}

#[test]
fn distilbert_without_target_modules_says_what_to_set() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (base_model(tmp.path(), "distilbert"), tiny_data(tmp.path()));
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, "[lora]\nr = 4\n[data]\ntrain_size = 16\neval_size = 8\n").unwrap();
    let out = tmp.path().join("run");
    let (c, m, d, o) =
        (config.to_str().unwrap(), model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let train = |extra: &[&str]| {
        let args = ["train", "--config", c, "--model", m, "--data", d, "--output-dir", o];
        lora(&[&args[..], extra].concat())
    };
    let err = failure(train(&[]));
    assert!(err.contains("distilbert") && err.contains("target_modules") && err.contains("q_lin"), "{err}");
    // A BERT name on DistilBERT: the error lists the family's linears.
    let err = failure(train(&["--set", "lora.target_modules=[\"query\"]"]));
    assert!(err.contains("q_lin") && err.contains("lin1"), "{err}");
}

/// DeBERTa-v3 from its base model (no head: the ContextPooler and classifier are drawn at
/// random), LoRA on PEFT's default targets (`query_proj`, `value_proj`): the random pooler is
/// trained and saved with the adapter rather than left to be drawn again at every load; trained,
/// resumed bit for bit, evaluated, predicted, merged.
#[test]
fn deberta_trains_saves_its_fresh_pooler_resumes_bit_for_bit_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../encoders/tests/fixtures/modern/deberta-v3");
    // The base model with the tokenizer beside it, as a Hub repository has both.
    let model = tmp.path().join("deberta-base");
    std::fs::create_dir_all(&model).unwrap();
    for dir in ["model", "base-bin"] {
        for entry in std::fs::read_dir(fixture.join(dir)).unwrap() {
            let entry = entry.unwrap();
            if dir == "base-bin"
                || entry.file_name().to_string_lossy().starts_with("tok")
                || entry.file_name() == "special_tokens_map.json"
            {
                std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
            }
        }
    }
    let extra = ["--set", "lora.target_modules=[\"query_proj\", \"value_proj\"]", "--set", "data.max_length=64"];
    let expected = [
        "base_model.model.deberta.encoder.layer.1.attention.self.value_proj.lora_B.weight",
        "base_model.model.pooler.dense.weight",
        "base_model.model.classifier.bias",
    ];
    train_resume_eval_merge(tmp.path(), &model, data.to_str().unwrap(), "deberta-v2", &extra, &expected);
    let config: serde_json::Value =
        serde_json::from_slice(&read(&tmp.path().join("deberta-v2-a/adapter/adapter_config.json"))).unwrap();
    let saved: Vec<&str> = config["modules_to_save"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(saved.contains(&"pooler.dense") && saved.contains(&"classifier"), "{saved:?}");
}
