//! What the `lora` binary's tests share: a tiny model and tiny data in a temporary directory,
//! and running the binary.

#![allow(clippy::unwrap_used, dead_code)] // tests: a failed unwrap is a failed test; not every test file uses every helper

pub mod adapters;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const WORDS: [&str; 10] = ["good", "great", "fine", "superb", "lovely", "bad", "awful", "dull", "poor", "boring"];

/// tiny-bert (vocab 128) with a 128-token vocab.txt, in a fresh directory.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-model");
    std::fs::create_dir_all(&model).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../encoders/tests/fixtures/tiny-bert");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), model.join(f)).unwrap();
    }
    let mut vocab: Vec<String> =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "film", "was", "a", "plot"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    vocab.extend(WORDS.iter().map(|s| s.to_string()));
    while vocab.len() < 128 {
        vocab.push(format!("w{}", vocab.len()));
    }
    std::fs::write(model.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    model
}

/// tiny-bert without its classifier, as a base checkpoint comes from the Hub.
pub fn tiny_base_model(dir: &Path) -> PathBuf {
    let model = tiny_model(dir);
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().filter(|(k, _)| !k.starts_with("classifier")).collect();
    std::fs::write(model.join("model.safetensors"), safetensors::serialize(kept, None).unwrap()).unwrap();
    model
}

/// 40 train and 20 test reviews whose label follows their words.
pub fn tiny_data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (split, n) in [("train", 40), ("test", 20)] {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                let label = i % 2;
                let word = WORDS[(i * 7 + 3) % 5 + 5 * (1 - label)];
                let text = format!("the film was {word} , a {word} plot w{} .", 20 + (i * 13) % 90);
                serde_json::json!({ "text": text, "label": label }).to_string()
            })
            .collect();
        std::fs::write(data.join(format!("{split}.jsonl")), lines.join("\n") + "\n").unwrap();
    }
    data
}

pub fn lora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lora")).args(args).output().unwrap()
}

pub fn ok(output: Output) -> String {
    assert!(output.status.success(), "lora failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

pub fn failure(output: Output) -> String {
    assert!(!output.status.success(), "lora should have failed");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    stderr
}

pub fn train_args<'a>(model: &'a str, data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/imdb-minilm-lora.toml"),
        "--model",
        model,
        "--data",
        data,
        "--output-dir",
        out,
        "--quiet",
        "--set",
        "data.train_size=16",
        "--set",
        "data.eval_size=8",
        "--set",
        "data.max_length=32",
        "--set",
        "training.num_train_epochs=2",
        "--set",
        "training.per_device_train_batch_size=4",
        "--set",
        "training.learning_rate=1e-2",
        "--set",
        "training.logging_steps=2",
    ];
    args.extend_from_slice(extra);
    args
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
