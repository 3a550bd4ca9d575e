//! Adapters written by Python PEFT 0.13.2 load here with PEFT's logits; adapters written here
//! carry PEFT's names, shapes and config keys (fixtures: `scripts/golden_peft.py`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;

use common::{B, assert_close, fixtures, golden, input};
use encoders::{AutoModel, LoadOptions};
use lora_adapter::peft::{CONFIG_FILE, WEIGHTS_FILE, load_adapter, read_tensors, save_adapter};
use lora_adapter::{LoraConfig, ParameterCount, inject};

fn tiny_base() -> AutoModel<B> {
    let dir = fixtures().join("tiny-bert");
    encoders::from_pretrained(dir.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap().model
}

#[test]
fn adapters_trained_by_peft_give_peft_logits() {
    let (floats, ints) = golden("peft/golden.safetensors");
    let device = Default::default();
    let base_logits = tiny_base().forward(input(&ints));
    assert_close("base", base_logits, &floats["logits_base"], 1e-5);
    for (dir, key) in [
        ("adapter", "logits_adapter"),
        ("adapter-bin", "logits_adapter_bin"),
        ("adapter-rslora", "logits_adapter_rslora"),
    ] {
        let (model, config) = load_adapter(tiny_base(), &fixtures().join("peft").join(dir), &device).unwrap();
        assert!(config.modules_to_save.iter().flatten().any(|m| m == "classifier"));
        assert_close(key, model.forward(input(&ints)), &floats[key], 1e-5);
    }
}

#[test]
fn rank_and_alpha_patterns_and_layers_to_transform_shape_the_adapters_as_peft_did() {
    let (mut model, _) =
        load_adapter(tiny_base(), &fixtures().join("peft/adapter-rslora"), &Default::default()).unwrap();
    let mut adapted = Vec::new();
    lora_adapter::AdaptableModel::visit_linears(&mut model, &mut |name, linear| {
        if let Some(a) = &linear.adapter {
            adapted.push((name.to_string(), a.rank(), a.scaling));
        }
    });
    let by_name = |n: &str| adapted.iter().find(|(name, ..)| name.ends_with(n)).cloned().unwrap();
    assert_eq!(adapted.len(), 6, "{adapted:?}");
    assert!(adapted.iter().all(|(name, ..)| name.contains("layer.1.")));
    assert_eq!(by_name("self.value"), ("bert.encoder.layer.1.attention.self.value".into(), 2, 8.0 / 2f64.sqrt()));
    assert_eq!(by_name("self.key").2, 2.0 / 2.0, "alpha 2 over sqrt(4)");
    assert_eq!(by_name("self.query").2, 8.0 / 2.0);
}

#[test]
fn adapters_written_here_have_peft_names_shapes_and_config_keys() {
    let device = Default::default();
    let lora = LoraConfig { lora_alpha: 16.0, ..Default::default() }.with_task_defaults();
    let (mut model, _) = inject(tiny_base(), &lora, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&mut model, &lora, dir.path()).unwrap();

    let peft_dir = fixtures().join("peft/adapter");
    let names = |d: &std::path::Path| -> BTreeSet<String> {
        let bytes = std::fs::read(d.join(WEIGHTS_FILE)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        file.tensors().into_iter().map(|(k, v)| format!("{k} {:?} {:?}", v.shape(), v.dtype())).collect()
    };
    assert_eq!(names(dir.path()), names(&peft_dir));
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap()).unwrap();
    assert_eq!(metadata.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));

    let keys = |d: &std::path::Path| -> BTreeSet<String> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(CONFIG_FILE)).unwrap()).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(dir.path()), keys(&peft_dir), "exactly the keys PEFT 0.13.2 writes");
    assert_eq!(read_tensors(dir.path()).unwrap().1.len(), 10);
}

#[test]
fn adapter_and_config_that_disagree_name_the_tensor() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let peft_dir = fixtures().join("peft/adapter");
    std::fs::copy(peft_dir.join(CONFIG_FILE), dir.path().join(CONFIG_FILE)).unwrap();

    // Weights without the classifier tensors.
    let bytes = std::fs::read(peft_dir.join(WEIGHTS_FILE)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = file.tensors().into_iter().filter(|(k, _)| !k.contains("classifier")).collect();
    std::fs::write(dir.path().join(WEIGHTS_FILE), safetensors::serialize(kept, None).unwrap()).unwrap();
    let err = load_adapter(tiny_base(), dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("classifier.weight") && err.contains("[2, 32]"), "{err}");

    // A config that targets a module this model does not have.
    let text = std::fs::read_to_string(peft_dir.join(CONFIG_FILE))
        .unwrap()
        .replace("\"query\"", "\"q_proj\"")
        .replace("\"value\"", "\"v_proj\"");
    std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
    std::fs::copy(peft_dir.join(WEIGHTS_FILE), dir.path().join(WEIGHTS_FILE)).unwrap();
    let err = load_adapter(tiny_base(), dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("q_proj") && err.contains("query"), "{err}");
}

#[test]
fn bert_base_defaults_train_296450_parameters_in_a_50_tensor_adapter() {
    let Some(assets) = encoders::assets::require_shared_assets("bert-base adapter size") else { return };
    let config = encoders::ModelConfig::from_file(assets.join("bert-base-uncased/config.json")).unwrap();
    let device = Default::default();
    let model = encoders::random::<B>(&config, &device);
    let lora = LoraConfig { base_model_name_or_path: Some("bert-base-uncased".into()), ..Default::default() }
        .with_task_defaults();
    let (mut model, injected) = inject(model, &lora, &device).unwrap();
    assert_eq!(injected.adapted.len(), 24);
    let count = ParameterCount::of(&mut model, &lora);
    assert_eq!(count.trainable, 296_450);
    assert!(count.to_string().starts_with("trainable params: 296,450 || all params: "), "{count}");

    let dir = tempfile::tempdir().unwrap();
    let saved = save_adapter(&mut model, &lora, dir.path()).unwrap();
    assert_eq!(saved.tensors, 50);
    assert!((1_180_000..1_200_000).contains(&saved.bytes), "{} bytes", saved.bytes);
}
