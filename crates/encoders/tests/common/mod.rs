//! Helpers shared by the integration tests: fixtures and golden tensors.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use encoders::EncoderInput;

pub mod fixture;

pub type B = Flex;

pub type Floats = BTreeMap<String, (Vec<usize>, Vec<f32>)>;
pub type Ints = BTreeMap<String, (Vec<usize>, Vec<i64>)>;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The golden file's tensors: floats as f32, integer inputs as i64 (read with the safetensors crate).
pub fn golden(name: &str) -> (Floats, Ints) {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut floats, mut ints) = (BTreeMap::new(), BTreeMap::new());
    for (key, view) in file.tensors() {
        let shape = view.shape().to_vec();
        match view.dtype() {
            safetensors::Dtype::I64 => {
                let v = view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
                ints.insert(key, (shape, v));
            }
            _ => {
                let v = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                floats.insert(key, (shape, v));
            }
        }
    }
    (floats, ints)
}

pub fn input(ints: &Ints) -> EncoderInput<B> {
    let device = Default::default();
    let t = |k: &str| {
        let (shape, v) = &ints[k];
        Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), [shape[0], shape[1]]), &device)
    };
    EncoderInput { input_ids: t("input_ids"), attention_mask: t("attention_mask"), token_type_ids: t("token_type_ids") }
}

#[track_caller]
pub fn assert_close<const D: usize>(name: &str, ours: Tensor<B, D>, expected: &(Vec<usize>, Vec<f32>), tol: f32) {
    assert_eq!(ours.dims().to_vec(), expected.0, "{name}: shape");
    let ours = ours.into_data().into_vec::<f32>().unwrap();
    let (worst, at) = ours
        .iter()
        .zip(&expected.1)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs(), i))
        .fold((0.0f32, 0), |m, x| if x.0 > m.0 { x } else { m });
    encoders::testing::within(&format!("{name} (worst at flat index {at})"), f64::from(worst), f64::from(tol));
}
