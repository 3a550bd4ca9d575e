//! Mixed-adapter batches (`lora_adapter::with_adapters`): each row's logits equal those of its
//! adapter applied alone to the same batch, for every family, with adapters that differ in
//! rank, targets, `lora_alpha` and number of labels, in any order of rows.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use encoders::{AutoModel, EncoderInput, LoadOptions};
use lora_adapter::peft::Adapter;
use lora_adapter::{AdaptableModel, AdapterWeights, LoraConfig, MixedBatch, with_adapters};
use tensor_file::RawTensor;

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (name, model directory, adapter directory, golden file): BERT's, and every golden fixture
/// directory with a PEFT adapter (each family's, as `tests/families.rs` finds them).
fn cases() -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    let f = fixtures();
    let mut cases =
        vec![("bert".to_string(), f.join("tiny-bert"), f.join("peft/adapter"), f.join("peft/golden.safetensors"))];
    for group in ["families", "modern"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(f.join(group)).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        for dir in dirs.into_iter().filter(|d| d.join("adapter").is_dir() && d.join("golden.safetensors").is_file()) {
            let name = dir.file_name().unwrap().to_str().unwrap().to_string();
            cases.push((name, dir.join("model"), dir.join("adapter"), dir.join("golden.safetensors")));
        }
    }
    assert!(cases.len() >= 11, "{cases:?}");
    cases
}

/// Six rows from the golden batch's `input_ids`/`attention_mask`/`token_type_ids`, its rows repeated.
fn input(golden: &Path) -> EncoderInput<B> {
    let bytes = std::fs::read(golden).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let device = Default::default();
    let ints = |k: &str| {
        let t = file.tensor(k).unwrap();
        let values: Vec<i64> = t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
        let [rows, cols] = [t.shape()[0], t.shape()[1]];
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(values, [rows, cols]), &device);
        let repeats = 6usize.div_ceil(rows);
        t.repeat_dim(0, repeats).narrow(0, 0, 6)
    };
    EncoderInput {
        input_ids: ints("input_ids"),
        attention_mask: ints("attention_mask"),
        token_type_ids: ints("token_type_ids"),
    }
}

/// A deterministic value in [-0.5, 0.5) for index `i` of stream `seed`.
fn noise(seed: u64, i: usize) -> f32 {
    let x = (i as u64).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// The fixture's adapter with every value changed (same shapes).
fn perturbed(adapter: &Adapter, seed: u64) -> Adapter {
    let mut out = adapter.clone();
    for tensor in out.tensors.values_mut() {
        for (i, v) in tensor.data.iter_mut().enumerate() {
            *v = *v * 1.5 + 0.2 * noise(seed, i);
        }
    }
    out
}

/// A new adapter on `model`: rank 2, alpha 3, every linear but the head, and a head of `labels` rows.
fn another(model: &AutoModel<B>, fixture: &Adapter, labels: usize, seed: u64) -> Adapter {
    let mut json = serde_json::to_value(&fixture.config).unwrap();
    json["r"] = 2.into();
    json["lora_alpha"] = 3.0.into();
    json["target_modules"] = "all-linear".into();
    json["rank_pattern"] = serde_json::json!({});
    json["alpha_pattern"] = serde_json::json!({});
    let config: LoraConfig = serde_json::from_value(json).unwrap();
    let config = config.with_task_defaults();
    let mut tensors = std::collections::BTreeMap::new();
    let mut model = model.clone();
    let mut k = 0;
    let mut random = |shape: Vec<usize>| {
        k += 1;
        let n = shape.iter().product();
        RawTensor { data: (0..n).map(|i| 0.3 * noise(seed + k, i)).collect(), shape }
    };
    model.visit_linears(&mut |name, linear| {
        let [d_in, d_out] = linear.dims();
        if config.targets(name, linear.output) && !config.saves_module(name) {
            tensors.insert(format!("{name}.lora_A.weight"), random(vec![2, d_in]));
            tensors.insert(format!("{name}.lora_B.weight"), random(vec![d_out, 2]));
        }
        if config.saves_module(name) {
            let rows = if linear.output { labels } else { d_out };
            tensors.insert(format!("{name}.weight"), random(vec![rows, d_in]));
            if linear.bias.is_some() {
                tensors.insert(format!("{name}.bias"), random(vec![rows]));
            }
        }
    });
    Adapter { config, path: PathBuf::from("generated"), tensors }
}

fn rows(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, width] = t.dims();
    t.into_data().into_vec::<f32>().unwrap().chunks(width).map(<[f32]>::to_vec).collect()
}

#[test]
fn each_row_equals_its_adapter_alone() {
    let device = Default::default();
    for (name, model_dir, adapter_dir, golden) in cases() {
        let options = LoadOptions { ignore_mismatched_sizes: true, ..Default::default() };
        let base = encoders::from_pretrained::<B>(model_dir.to_str().unwrap(), &options, &device).unwrap().model;
        let fixture = Adapter::read(&adapter_dir).unwrap();
        let adapters = [fixture.clone(), perturbed(&fixture, 7), another(&base, &fixture, 5, 11)];
        let input = input(&golden);

        // Each adapter alone, on the whole batch.
        let alone: Vec<Vec<Vec<f32>>> = adapters
            .iter()
            .map(|a| rows(a.clone().apply(base.clone(), &device).unwrap().0.forward(input.clone())))
            .collect();
        let weights: Vec<Arc<AdapterWeights<B>>> =
            adapters.iter().map(|a| Arc::new(AdapterWeights::new(&base, a.clone(), &device).unwrap())).collect();
        assert_eq!(weights[2].num_labels, 5, "{name}");
        assert!(weights[0].bytes > 0 && weights[2].bytes > weights[0].bytes / 100, "{name}");

        // Rows in runs (0 0 1 2 2 1) and interleaved (2 0 1 0 2 1), and all one adapter.
        for order in [[0, 0, 1, 2, 2, 1], [2, 0, 1, 0, 2, 1], [1, 1, 1, 1, 1, 1]] {
            let batch = Arc::new(MixedBatch::new(&order.map(|i| weights[i].clone())));
            let mixed = rows(with_adapters(&batch, || base.forward(input.clone())));
            let width = order.iter().map(|&i| weights[i].num_labels).max().unwrap();
            for (row, &a) in order.iter().enumerate() {
                let labels = weights[a].num_labels;
                assert_eq!(mixed[row].len(), width, "{name} {order:?}");
                assert!(mixed[row][labels..].iter().all(|&v| v == 0.0), "{name}: padding of row {row}");
                encoders::testing::within(
                    &format!("{name} {order:?}: row {row} (adapter {a}) in a mixed batch vs alone"),
                    encoders::testing::max_abs_diff(&mixed[row][..labels], &alone[a][row]),
                    1e-5,
                );
            }
        }
        // The adapters do differ, so the comparison above is not trivially met.
        assert!(alone[0][0].iter().zip(&alone[1][0]).any(|(x, y)| (x - y).abs() > 1e-3), "{name}");
        // Nothing is lent after the forward: the base model answers as itself.
        let plain = rows(base.forward(input.clone()));
        assert_eq!(plain[0].len(), base.num_labels());
    }
}
