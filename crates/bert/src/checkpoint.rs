//! Reading a Hugging Face checkpoint (`model.safetensors` or `pytorch_model.bin`) into f32
//! tensors under the names this crate's modules use.
//!
//! The one remap table, applied to every key as it is read, most specific first:
//!
//! | checkpoint key                      | becomes                 | why                               |
//! |-------------------------------------|-------------------------|-----------------------------------|
//! | `cls.*`                             | dropped                 | pre-training heads                |
//! | `*position_ids`                     | dropped                 | a buffer, not a weight            |
//! | `bert.<rest>`                       | `<rest>`                | `BertFor*` checkpoints nest the encoder |
//! | `*.LayerNorm.gamma` / `.beta`       | `*.LayerNorm.weight` / `.bias` | TF-era checkpoints        |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{BertError, Result};

/// One tensor of a checkpoint, converted to f32, in the checkpoint's own layout.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All tensors of one checkpoint file, keyed by their normalised name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, RawTensor>,
}

impl Checkpoint {
    /// Reads `model.safetensors` or `pytorch_model.bin`, by extension.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let raw = if path.extension().is_some_and(|ext| ext == "safetensors") {
            read_safetensors(path)?
        } else {
            read_pytorch(path)?
        };
        let mut tensors = BTreeMap::new();
        for (key, tensor) in raw {
            if let Some(key) = normalise_key(&key) {
                tensors.insert(key, tensor);
            }
        }
        Ok(Self { path: path.to_path_buf(), tensors })
    }
}

/// Applies the remap table of this module; `None` for keys the model ignores.
pub fn normalise_key(key: &str) -> Option<String> {
    if key.starts_with("cls.") || key.ends_with("position_ids") {
        return None;
    }
    let key = key.strip_prefix("bert.").unwrap_or(key);
    let key = if let Some(stem) = key.strip_suffix("LayerNorm.gamma") {
        format!("{stem}LayerNorm.weight")
    } else if let Some(stem) = key.strip_suffix("LayerNorm.beta") {
        format!("{stem}LayerNorm.bias")
    } else {
        key.to_string()
    };
    Some(key)
}

/// Reads every tensor of a safetensors file as f32 (F32, F16, BF16 and F64 are accepted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, RawTensor>> {
    let bytes = std::fs::read(path).map_err(|source| BertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |message: String| BertError::Checkpoint { path: path.to_path_buf(), message };
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            // Integer buffers (`position_ids`) are dropped by the remap table; keep them out of
            // the way here so that they never reach the model.
            Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::BOOL if normalise_key(&name).is_none() => {
                continue;
            }
            other => {
                return Err(corrupt(format!(
                    "tensor `{name}` has dtype {other:?}; expected F32, F16, BF16 or F64"
                )));
            }
        };
        tensors.insert(name, RawTensor { shape: view.shape().to_vec(), data: values });
    }
    Ok(tensors)
}

/// Reads a PyTorch pickle checkpoint (`pytorch_model.bin`) through burn-store's reader.
pub fn read_pytorch(path: &Path) -> Result<BTreeMap<String, RawTensor>> {
    if !path.exists() {
        return Err(BertError::NotFound {
            path: path.to_path_buf(),
            what: "a PyTorch checkpoint".into(),
        });
    }
    let corrupt = |message: String| BertError::Checkpoint { path: path.to_path_buf(), message };
    let reader = burn_store::pytorch::PytorchReader::new(path)
        .map_err(|e| corrupt(format!("not a readable PyTorch checkpoint ({e})")))?;
    let mut tensors = BTreeMap::new();
    for (name, snapshot) in reader.into_tensors() {
        if normalise_key(&name).is_none() {
            continue;
        }
        if !snapshot.dtype.is_float() {
            return Err(corrupt(format!(
                "tensor `{name}` has dtype {:?}; expected a float dtype",
                snapshot.dtype
            )));
        }
        let shape = snapshot.shape.to_vec();
        let data = snapshot
            .to_data()
            .map_err(|e| corrupt(format!("tensor `{name}`: {e:?}")))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| corrupt(format!("tensor `{name}`: {e:?}")))?;
        tensors.insert(name, RawTensor { shape, data });
    }
    Ok(tensors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::normalise_key;

    #[test]
    fn remap_table() {
        assert_eq!(normalise_key("cls.predictions.bias"), None);
        assert_eq!(normalise_key("bert.embeddings.position_ids"), None);
        assert_eq!(normalise_key("embeddings.position_ids"), None);
        assert_eq!(
            normalise_key("bert.encoder.layer.0.output.LayerNorm.gamma").as_deref(),
            Some("encoder.layer.0.output.LayerNorm.weight")
        );
        assert_eq!(
            normalise_key("embeddings.LayerNorm.beta").as_deref(),
            Some("embeddings.LayerNorm.bias")
        );
        assert_eq!(normalise_key("classifier.weight").as_deref(), Some("classifier.weight"));
    }
}
