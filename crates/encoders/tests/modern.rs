//! ModernBERT and DeBERTa-v3 against transformers 4.57.1 and PEFT 0.17.1: tiny random models
//! (`scripts/golden_families.py`): ModernBERT with a local window shorter than the texts, both
//! poolings, biases off and on; DeBERTa-v3-shaped with both position terms, log buckets,
//! shared keys and LayerNorm-ed relative embeddings, and a DeBERTa-v2-shaped one with the other
//! branches (own position projections, no buckets, absolute positions, token types).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};

use common::B;
use common::fixture::{Golden, assert_close, golden, real_positions, values};
use encoders::LoadOptions;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/modern").join(name)
}

fn load(dir: &Path, options: &LoadOptions) -> encoders::Pretrained<B> {
    encoders::from_pretrained::<B>(dir.to_str().unwrap(), options, &Default::default()).unwrap()
}

/// The fixture `name`'s model gives its golden hidden states (at real tokens) and logits
/// within 1e-5 of the largest value.
#[track_caller]
fn matches_golden(name: &str) {
    let pretrained = load(&fixture(name).join("model"), &LoadOptions::default());
    let g = golden(&fixture(name));
    let hidden = values(pretrained.model.last_hidden_state(g.input.clone()));
    let theirs = &g.floats["last_hidden_state"];
    assert_close(
        &format!("{name} last hidden state"),
        &real_positions(&hidden, &g.mask),
        &real_positions(theirs, &g.mask),
        1e-5,
    );
    assert_close(&format!("{name} logits"), &values(pretrained.model.forward(g.input)), &g.floats["logits"], 1e-5);
}

/// The base model alone as a `pytorch_model.bin` (no `model.` prefix, no head): the same
/// encoder; the head (`head.dense`, `head.norm`, `classifier`) initialised and reported. The
/// masked-LM checkpoint (the Hub's shape): its `head` is read, its `decoder` left, only the
/// classifier initialised.
#[test]
fn base_and_masked_lm_checkpoints_load() {
    let g = golden(&fixture("modernbert"));
    let base = load(&fixture("modernbert").join("base-bin"), &LoadOptions::num_labels(3));
    assert_eq!(
        base.report.initialized,
        ["head.dense.weight", "head.norm.weight", "classifier.weight", "classifier.bias"]
    );
    let hidden = values(base.model.last_hidden_state(g.input.clone()));
    let theirs = &g.floats["last_hidden_state"];
    assert_close("base-bin", &real_positions(&hidden, &g.mask), &real_positions(theirs, &g.mask), 1e-5);

    let mlm = load(&fixture("modernbert").join("mlm"), &LoadOptions::num_labels(3));
    assert_eq!(mlm.report.initialized, ["classifier.weight", "classifier.bias"]);
    let hidden = values(mlm.model.last_hidden_state(g.input));
    let theirs = &g.floats["mlm_last_hidden_state"];
    assert_close("mlm", &real_positions(&hidden, &g.mask), &real_positions(theirs, &g.mask), 1e-5);
}

/// DeBERTa's base model alone (`pytorch_model.bin`, no `deberta.` prefix, no head): the same
/// encoder, the ContextPooler and classifier initialised and reported; its masked-LM checkpoint
/// (as microsoft/deberta-v3-base comes: `lm_predictions.*` and an unused absolute position
/// table): the same encoder.
#[test]
fn deberta_base_and_masked_lm_checkpoints_load() {
    let g = golden(&fixture("deberta-v3"));
    let theirs = &g.floats["last_hidden_state"];
    let base = load(&fixture("deberta-v3").join("base-bin"), &LoadOptions::num_labels(3));
    assert_eq!(
        base.report.initialized,
        ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"]
    );
    let hidden = values(base.model.last_hidden_state(g.input.clone()));
    assert_close("deberta base-bin", &real_positions(&hidden, &g.mask), &real_positions(theirs, &g.mask), 1e-5);
    let mlm = load(&fixture("deberta-v3").join("mlm"), &LoadOptions::num_labels(3));
    let hidden = values(mlm.model.last_hidden_state(g.input));
    let theirs = &g.floats["mlm_last_hidden_state"];
    assert_close("deberta mlm", &real_positions(&hidden, &g.mask), &real_positions(theirs, &g.mask), 1e-5);
}

/// DeBERTa-v2-xlarge's ConvLayer is refused, naming the key.
#[test]
fn a_deberta_conv_layer_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("deberta-v3").join("model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let config = dir.path().join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["conv_kernel_size"] = 3.into();
    std::fs::write(&config, json.to_string()).unwrap();
    let err = match encoders::from_pretrained::<B>(
        dir.path().to_str().unwrap(),
        &LoadOptions::default(),
        &Default::default(),
    ) {
        Ok(_) => panic!("a ConvLayer config loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("conv_kernel_size") && err.contains("config.json"), "{err}");
}

/// DeBERTa-v3's Hub repositories ship `spm.model` and no `tokenizer.json`: converted here as
/// transformers' `DebertaV2Converter` converts it, the ids and token types equal
/// `DebertaV2TokenizerFast`'s (capitals, runs of spaces, NFKC-normalised characters, a
/// user-defined piece, a pair, truncation).
#[test]
fn a_deberta_spm_model_tokenizes_as_the_converted_fast_tokenizer() {
    let dir = fixture("deberta-spm");
    let text = std::fs::read_to_string(dir.join("tokens.jsonl")).unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let max_length = lines.next().unwrap()["max_length"].as_u64().unwrap() as usize;
    let tokenizer = encoders::EncoderTokenizer::from_file(dir.join("spm.model"), max_length).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let mut seen = 0;
    for line in lines {
        let ours = match line.get("text") {
            Some(text) => tokenizer.encode(text.as_str().unwrap()).unwrap(),
            None => tokenizer.encode_pair(line["a"].as_str().unwrap(), line["b"].as_str().unwrap()).unwrap(),
        };
        assert_eq!(ours.input_ids, ids(&line["input_ids"]), "{line}");
        assert_eq!(ours.token_type_ids, ids(&line["token_type_ids"]), "token types of {line}");
        seen += 1;
    }
    assert!(seen >= 7, "{seen} lines");
    assert_eq!(tokenizer.pad_id(), 0, "[PAD] is the model's padding");
}

/// PEFT has no default targets for ModernBERT: the family says which linears it has.
#[test]
fn no_default_targets_but_the_linears_are_named() {
    let info = encoders::families().into_iter().find(|f| f.model_type == "modernbert").unwrap();
    let hint = info.default_targets.unwrap_err();
    assert!(hint.contains("Wqkv") && hint.contains("attn.Wo") && hint.contains("mlp.Wi"), "{hint}");
}

/// The ModernBERT fixture's model in a temporary directory, its config.json changed by `edit`,
/// its query/key/value weights multiplied by `sharpen`: the random model's attention is nearly
/// uniform (weights of std 0.02), so that positions, and the rotary settings, barely matter
/// until it is sharpened.
fn modernbert_with(sharpen: f32, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("modernbert").join("model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut data = view.data().to_vec();
            if name.ends_with("Wqkv.weight") {
                for b in data.chunks_exact_mut(4) {
                    let x = f32::from_le_bytes(b.try_into().unwrap()) * sharpen;
                    b.copy_from_slice(&x.to_le_bytes());
                }
            }
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            (n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap())
        })
        .collect();
    std::fs::write(&weights, safetensors::serialize(views, None).unwrap()).unwrap();
    let config = dir.path().join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&config, json.to_string()).unwrap();
    dir
}

/// How much `modernbert_with` sharpens the attention where the rotary settings must show.
const SHARP: f32 = 40.0;

/// The fixture's config as transformers 5 writes it: `layer_types` and `rope_parameters` in
/// place of `global_attn_every_n_layers`, `global_rope_theta` and `local_rope_theta`.
fn as_transformers_5(json: &mut serde_json::Value) {
    let o = json.as_object_mut().unwrap();
    for key in ["global_attn_every_n_layers", "global_rope_theta", "local_rope_theta"] {
        assert!(o.remove(key).is_some(), "{key}");
    }
    o.insert("layer_types".into(), serde_json::json!(["full_attention", "sliding_attention", "full_attention"]));
    o.insert(
        "rope_parameters".into(),
        serde_json::json!({
            "full_attention": {"rope_type": "default", "rope_theta": 160000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}
        }),
    );
    o.insert("transformers_version".into(), "5.25.0".into());
}

/// The last hidden state at real tokens, then the logits.
fn modernbert_logits(dir: &Path, g: &Golden) -> Vec<f32> {
    let model = load(dir, &LoadOptions::default()).model;
    let mut out = real_positions(&values(model.last_hidden_state(g.input.clone())), &g.mask);
    out.extend(values(model.forward(g.input.clone())));
    out
}

fn modernbert_error(dir: &Path, what: &str) -> String {
    match encoders::from_pretrained::<B>(dir.to_str().unwrap(), &LoadOptions::default(), &Default::default()) {
        Ok(_) => panic!("{what}: the config loaded"),
        Err(e) => e.to_string(),
    }
}

/// Issue 40: a ModernBERT config written by transformers 5 (`layer_types`, `rope_parameters`)
/// gives exactly the numbers of the same model's transformers 4 config, and its keys are read,
/// not ignored (other thetas or layer types give other logits; before, they were ignored and
/// the logits were off by up to 1.6 with exit 0). `rope_type: "linear"` is implemented (a
/// factor of 1 is the default rope, 2 another model); every other rope type, a
/// `partial_rotary_factor`, and a malformed `layer_types` or `rope_parameters` is an error
/// naming the key.
#[test]
fn modernbert_configs_of_transformers_5_are_read_as_transformers_5_reads_them() {
    let g = golden(&fixture("modernbert"));
    let v4 = modernbert_logits(&fixture("modernbert").join("model"), &g);
    let v5 = modernbert_with(1.0, as_transformers_5);
    assert_eq!(modernbert_logits(v5.path(), &g), v4, "the same model in transformers 5's spelling");
    let logits = &v4[v4.len() - g.floats["logits"].len()..];
    assert_close("transformers 5 config", logits, &g.floats["logits"], 1e-5);
    // The rest on a sharpened copy, where the rotary settings matter.
    let v4 = modernbert_logits(modernbert_with(SHARP, |_| {}).path(), &g);
    assert_eq!(modernbert_logits(modernbert_with(SHARP, as_transformers_5).path(), &g), v4, "sharpened");

    let differs = |what: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = modernbert_with(SHARP, |j| {
            as_transformers_5(j);
            edit(j);
        });
        let logits = modernbert_logits(dir.path(), &g);
        let worst = encoders::testing::max_abs_diff(&logits, &v4);
        eprintln!("{what}: hidden states and logits moved by {worst:e}");
        assert!(worst > 1e-3, "{what}: the hidden states moved by only {worst:e}, so the key was ignored");
        logits
    };
    differs("thetas swapped", &|j| {
        j["rope_parameters"]["full_attention"]["rope_theta"] = 10000.0.into();
        j["rope_parameters"]["sliding_attention"]["rope_theta"] = 160000.0.into();
    });
    differs("all layers sliding", &|j| {
        j["layer_types"] = serde_json::json!(["sliding_attention", "sliding_attention", "sliding_attention"]);
    });
    let linear = |factor: f64| {
        move |j: &mut serde_json::Value| {
            j["rope_parameters"]["full_attention"] =
                serde_json::json!({"rope_type": "linear", "factor": factor, "rope_theta": 160000.0});
        }
    };
    let one = modernbert_with(SHARP, |j| {
        as_transformers_5(j);
        linear(1.0)(j);
    });
    assert_eq!(modernbert_logits(one.path(), &g), v4, "linear scaling by 1 is the default rope");
    differs("linear scaling by 2", &linear(2.0));
    // A legacy rope_scaling applies to both layer types, as transformers 5 applies it.
    let scaled = differs("rope_scaling linear 2", &|j| {
        j["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 2.0});
    });
    let both = modernbert_with(SHARP, |j| {
        as_transformers_5(j);
        for kind in ["full_attention", "sliding_attention"] {
            j["rope_parameters"][kind]["rope_type"] = "linear".into();
            j["rope_parameters"][kind]["factor"] = 2.0.into();
        }
    });
    assert_eq!(modernbert_logits(both.path(), &g), scaled, "rope_scaling is linear scaling of both types");

    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let refused: [(&str, Edit, &str); 8] = [
        (
            "yarn",
            &|j| j["rope_parameters"]["full_attention"]["rope_type"] = "yarn".into(),
            "rope_parameters.full_attention.rope_type \"yarn\" is not supported",
        ),
        (
            "dynamic",
            &|j| j["rope_parameters"]["sliding_attention"]["rope_type"] = "dynamic".into(),
            "rope_parameters.sliding_attention.rope_type \"dynamic\"",
        ),
        (
            "legacy llama3",
            &|j| j["rope_scaling"] = serde_json::json!({"type": "llama3", "factor": 8.0}),
            "rope_type \"default\" and type \"llama3\" disagree",
        ),
        (
            "linear without factor",
            &|j| j["rope_parameters"]["full_attention"]["rope_type"] = "linear".into(),
            "rope_type \"linear\" needs a factor",
        ),
        (
            "partial rotary",
            &|j| j["rope_parameters"]["full_attention"]["partial_rotary_factor"] = 0.5.into(),
            "partial_rotary_factor 0.5 is not supported",
        ),
        (
            "flat rope_parameters",
            &|j| j["rope_parameters"] = serde_json::json!({"rope_type": "linear", "factor": 2.0}),
            "rope_parameters.factor",
        ),
        (
            "short layer_types",
            &|j| j["layer_types"] = serde_json::json!(["full_attention"]),
            "layer_types has 1 entries for num_hidden_layers 3",
        ),
        (
            "unknown layer type",
            &|j| j["layer_types"][1] = "chunked_attention".into(),
            "layer_types[1] is \"chunked_attention\"",
        ),
    ];
    // transformers 4's spelling with a legacy rope_scaling: no rope_parameters to disagree with.
    let dir = modernbert_with(1.0, |j| j["rope_scaling"] = serde_json::json!({"type": "llama3", "factor": 8.0}));
    let err = modernbert_error(dir.path(), "legacy llama3 in transformers 4's spelling");
    assert!(err.contains("(with rope_scaling).rope_type \"llama3\" is not supported"), "{err}");
    for (what, edit, says) in refused {
        let dir = modernbert_with(1.0, |j| {
            as_transformers_5(j);
            edit(j);
        });
        let err = modernbert_error(dir.path(), what);
        assert!(err.contains(says) && err.contains("config.json"), "{what}: {err}");
    }
}

/// ModernBERT configs saved by transformers 5.25.0 itself (`layer_types`, `rope_parameters`;
/// `scripts/golden_modernbert_v5.py`), plain and with linear rope scaling (factors 2 and 4), on
/// the sharpened fixture model: hidden states and logits within 1e-5 of transformers 5's.
#[test]
fn modernbert_configs_saved_by_transformers_5_match_it() {
    for name in ["modernbert-v5", "modernbert-v5-linear"] {
        let config = std::fs::read_to_string(fixture(name).join("model/config.json")).unwrap();
        assert!(config.contains("layer_types") && config.contains("rope_parameters"), "{name}: {config}");
        assert!(!config.contains("global_rope_theta"), "{name}: a transformers 5 config");
        matches_golden(name);
    }
}
