//! A golden fixture directory (`tests/fixtures/{families,modern}/<name>/`): its
//! `golden.safetensors` (the padded batch, and transformers' / PEFT's outputs on it), and the
//! comparisons the tests make with it.

use burn::tensor::{Int, Tensor, TensorData};
use encoders::EncoderInput;

use super::B;

/// A directory's `golden.safetensors`: the batch as the model's input, its attention mask, and
/// every f32 tensor by name (`last_hidden_state`, `logits`, `peft_logits`, ...).
pub struct Golden {
    pub input: EncoderInput<B>,
    pub mask: Vec<i64>,
    pub floats: std::collections::BTreeMap<String, Vec<f32>>,
}

pub fn golden(dir: &std::path::Path) -> Golden {
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = |k: &str| -> (Vec<i64>, Vec<usize>) {
        let t = file.tensor(k).unwrap();
        (t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(), t.shape().to_vec())
    };
    let mut floats = std::collections::BTreeMap::new();
    for (key, view) in file.tensors() {
        if view.dtype() == safetensors::Dtype::F32 {
            floats
                .insert(key, view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect());
        }
    }
    let device = Default::default();
    let (ids, shape) = ints("input_ids");
    let shape = [shape[0], shape[1]];
    let int = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, shape), &device);
    let mask = ints("attention_mask").0;
    Golden {
        input: EncoderInput {
            input_ids: int(ids),
            attention_mask: int(mask.clone()),
            token_type_ids: int(ints("token_type_ids").0),
        },
        mask,
        floats,
    }
}

pub fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

#[track_caller]
pub fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tol: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    // Relative to the largest value (at least 1): f32 rounding through the encoder is ~1e-6 of
    // the values it passes through, whatever their scale (DeBERTa's hidden states reach ~4); a
    // wrong position term, scale, mask or activation moves outputs by ~1e-2 of them.
    let scale = theirs.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = encoders::testing::max_abs_diff(ours, theirs) / f64::from(scale);
    encoders::testing::within(&format!("{what}, relative to {scale:.2}"), worst, f64::from(tol));
}

/// The hidden states of real tokens only.
pub fn real_positions(hidden: &[f32], mask: &[i64]) -> Vec<f32> {
    let width = hidden.len() / mask.len();
    mask.iter()
        .enumerate()
        .filter(|(_, m)| **m == 1)
        .flat_map(|(i, _)| hidden[i * width..(i + 1) * width].to_vec())
        .collect()
}
