//! Adapters written as PEFT writes them, with made-up weights, for tiny-bert.

#![allow(clippy::unwrap_used, dead_code)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// A deterministic value in [-0.5, 0.5).
pub fn noise(seed: u64, i: usize) -> f32 {
    let x = (i as u64).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// An adapter for tiny-bert written as PEFT writes one: rank `r` on `targets`, a classifier of
/// `labels` rows, and a labels.json for `problem_type` with `names`.
pub fn generated_adapter(
    dir: &Path,
    r: usize,
    targets: &[&str],
    problem_type: &str,
    names: &[&str],
    seed: u64,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let h = 32;
    let labels = names.len();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut k = 0;
    let mut add = |name: String, shape: Vec<usize>| {
        k += 1;
        let n = shape.iter().product();
        tensors.push((name, shape, (0..n).map(|i| 0.4 * noise(seed + k, i)).collect()));
    };
    for layer in 0..2 {
        for t in targets {
            let module = format!("base_model.model.bert.encoder.layer.{layer}.attention.self.{t}");
            add(format!("{module}.lora_A.weight"), vec![r, h]);
            add(format!("{module}.lora_B.weight"), vec![h, r]);
        }
    }
    add("base_model.model.classifier.modules_to_save.default.weight".into(), vec![labels, h]);
    add("base_model.model.classifier.modules_to_save.default.bias".into(), vec![labels]);
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(dir.join("adapter_model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    let config = json!({
        "peft_type": "LORA", "task_type": "SEQ_CLS", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0,
        "target_modules": targets, "modules_to_save": ["classifier", "score"], "bias": "none",
        "inference_mode": true, "base_model_name_or_path": "tiny-bert"
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let id2label: serde_json::Map<String, Value> =
        names.iter().enumerate().map(|(i, n)| (i.to_string(), json!(n))).collect();
    let label2id: serde_json::Map<String, Value> =
        names.iter().enumerate().map(|(i, n)| (n.to_string(), json!(i))).collect();
    let file = json!({"num_labels": labels, "problem_type": problem_type, "id2label": id2label, "label2id": label2id});
    std::fs::write(dir.join("labels.json"), file.to_string()).unwrap();
    dir.to_path_buf()
}

/// A yes/no classifier (rank 4 on query/value) in `tmp/name`.
pub fn yes_no(tmp: &Path, name: &str, seed: u64) -> PathBuf {
    generated_adapter(&tmp.join(name), 4, &["query", "value"], "single_label_classification", &["no", "yes"], seed)
}
