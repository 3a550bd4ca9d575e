//! Loading checkpoints from every place and in every layout a user has them, and the errors
//! for the ones that cannot load.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use encoders::testing::FakeHub;
use encoders::{EncoderError, HubOptions, LoadOptions, ModelFiles, Pretrained};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The tiny BERT's checkpoint loaded by a config that says it has `layers` layers.
fn tiny_bert_with_layers(layers: usize) -> encoders::Result<Pretrained<B>> {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-bert"), dir.path());
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["num_hidden_layers"] = layers.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    encoders::from_pretrained::<B>(dir.path().to_str().unwrap(), &LoadOptions::default(), &Default::default())
}

fn offline(cache: &Path) -> HubOptions {
    HubOptions { offline: true, ..HubOptions::at(cache, "http://127.0.0.1:9") }
}

fn load_err(dir: &Path) -> String {
    match encoders::from_pretrained::<B>(dir.to_str().unwrap(), &LoadOptions::default(), &Default::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            message
        }
    }
}

#[test]
fn legacy_pytorch_bin_loads_and_gets_a_fresh_classifier() {
    let device = Default::default();
    let legacy =
        encoders::from_pretrained::<B>(fixture("tiny-bert-legacy").to_str().unwrap(), &LoadOptions::default(), &device)
            .unwrap();
    assert!(legacy.files.weights.ends_with("pytorch_model.bin"));
    assert_eq!(legacy.report.initialized, ["classifier.weight", "classifier.bias"]);

    // The encoder is the safetensors model's, tensor for tensor.
    let modern =
        encoders::from_pretrained::<B>(fixture("tiny-bert").to_str().unwrap(), &LoadOptions::default(), &device)
            .unwrap();
    assert!(modern.report.initialized.is_empty());
    let ids = burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data([[5, 9, 17, 3]], &device);
    let input = encoders::EncoderInput {
        input_ids: ids.clone(),
        attention_mask: ids.clone().ones_like(),
        token_type_ids: ids.zeros_like(),
    };
    let (legacy_bert, modern_bert) = (legacy.model.as_bert().unwrap(), modern.model.as_bert().unwrap());
    let a = legacy_bert.bert.forward(input.clone()).last_hidden_state.into_data();
    let b = modern_bert.bert.forward(input).last_hidden_state.into_data();
    assert_eq!(a, b);

    // The fresh classifier is drawn as transformers draws it: N(0, initializer_range), zero bias.
    let weight = legacy_bert.classifier.weight.val().into_data().into_vec::<f32>().unwrap();
    let std = (weight.iter().map(|w| w * w).sum::<f32>() / weight.len() as f32).sqrt();
    assert!(std > 0.01 && std < 0.03, "std {std}");
    let bias = legacy_bert.classifier.bias.as_ref().unwrap().val().into_data().into_vec::<f32>().unwrap();
    assert!(bias.iter().all(|&b| b == 0.0));
}

#[test]
fn missing_config_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("tiny-bert/model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let message = load_err(dir.path());
    assert!(message.contains("config.json"), "{message}");
}

#[test]
fn missing_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("tiny-bert/config.json"), dir.path().join("config.json")).unwrap();
    let message = load_err(dir.path());
    assert!(message.contains("model.safetensors") && message.contains("pytorch_model.bin"), "{message}");
}

#[test]
fn truncated_safetensors_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-bert"), dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let message = load_err(dir.path());
    assert!(message.contains(&weights.display().to_string()) && message.contains("safetensors"), "{message}");

    std::fs::write(&weights, b"not a checkpoint at all").unwrap();
    let message = load_err(dir.path());
    assert!(message.contains("not a valid safetensors file"), "{message}");
}

#[test]
fn config_that_disagrees_with_the_weights_names_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-bert"), dir.path());
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["hidden_size"] = 64.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let message = load_err(dir.path());
    assert!(message.contains("embeddings.word_embeddings.weight"), "{message}");
    assert!(message.contains("[128, 32]") && message.contains("[128, 64]"), "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn tensors_the_model_has_no_place_for_are_an_error() {
    let Err(err) = tiny_bert_with_layers(1) else { panic!("a 1-layer config loaded 2 layers' weights") };
    assert!(
        matches!(&err, EncoderError::UnexpectedTensors { keys, .. } if keys.iter().all(|k| k.starts_with("bert.encoder.layer.1."))),
        "{err}"
    );
}

#[test]
fn missing_tensor_names_tensor_file_and_shape() {
    let Err(err) = tiny_bert_with_layers(3) else { panic!("a 3-layer config loaded 2 layers' weights") };
    let message = err.to_string();
    assert!(
        message.contains("encoder.layer.2.attention.self.query.weight") && message.contains("[32, 32]"),
        "{message}"
    );
}

#[test]
fn unknown_model_id_offline_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let err = ModelFiles::resolve_with("no-such-owner/no-such-model", &offline(cache.path())).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no-such-owner/no-such-model") && message.contains("HF_HUB_OFFLINE"), "{message}");
}

#[test]
fn a_path_that_does_not_exist_is_not_taken_for_a_hub_id() {
    let err = ModelFiles::resolve_with("./no/such/dir", &offline(Path::new("/nonexistent"))).unwrap_err();
    assert!(err.to_string().contains("./no/such/dir"), "{err}");
}

#[test]
fn downloads_from_the_hub_then_works_offline_from_the_cache() {
    // The fake Hub serves `tiny-org/tiny-bert` (config, weights) with the Hub's URL layout.
    let served = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-bert"), &served.path().join("tiny-org/tiny-bert"));
    let hub = FakeHub::serve(served.path()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let online = HubOptions::at(cache.path(), hub.endpoint.clone());

    let files = ModelFiles::resolve_with("tiny-org/tiny-bert", &online).unwrap();
    assert!(files.weights.starts_with(cache.path()), "{}", files.weights.display());
    assert_eq!(std::fs::read(&files.weights).unwrap(), std::fs::read(fixture("tiny-bert/model.safetensors")).unwrap());
    let options = LoadOptions { hub: online.clone(), ..LoadOptions::default() };
    let model = encoders::from_pretrained::<B>("tiny-org/tiny-bert", &options, &Default::default()).unwrap();
    assert_eq!(model.config.source["hidden_size"], 32);

    // Offline, from the cache alone; the server is not asked again.
    let asked = hub.requests();
    let cached = ModelFiles::resolve_with("tiny-org/tiny-bert", &offline(cache.path())).unwrap();
    assert_eq!(cached.weights, files.weights);
    assert_eq!(hub.requests(), asked);

    // A model the Hub does not have.
    let err = ModelFiles::resolve_with("tiny-org/absent", &online).unwrap_err();
    assert!(err.to_string().contains("tiny-org/absent") && err.to_string().contains("config.json"), "{err}");
}

#[test]
fn a_tokenizer_larger_than_the_model_vocabulary_is_refused() {
    let Some(assets) = encoders::assets::require_shared_assets("tokenizer/model mismatch") else { return };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-bert"), dir.path());
    std::fs::copy(assets.join("bert-base-uncased/tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let model =
        encoders::from_pretrained::<B>(dir.path().to_str().unwrap(), &LoadOptions::default(), &Default::default())
            .unwrap();
    let message = model.tokenizer(512).unwrap_err().to_string();
    assert!(message.contains("30522") && message.contains("128") && message.contains("tokenizer.json"), "{message}");
}
