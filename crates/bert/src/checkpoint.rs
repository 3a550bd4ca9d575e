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

pub use tensor_file::RawTensor;
use tensor_file::TensorFileError;

use crate::error::{BertError, Result};

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

/// Reads every tensor of a safetensors file as f32; integer buffers the remap table drops
/// (`position_ids`) are skipped.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, RawTensor>> {
    tensor_file::read_safetensors(path, |name| normalise_key(name).is_none()).map_err(checkpoint_error)
}

/// Reads a PyTorch pickle checkpoint (`pytorch_model.bin`).
pub fn read_pytorch(path: &Path) -> Result<BTreeMap<String, RawTensor>> {
    tensor_file::read_pytorch(path, |name| normalise_key(name).is_none()).map_err(checkpoint_error)
}

fn checkpoint_error(e: TensorFileError) -> BertError {
    match e {
        TensorFileError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            BertError::NotFound { path, what: "a checkpoint file".into() }
        }
        TensorFileError::Read { path, source } | TensorFileError::Write { path, source } => {
            BertError::Io { path, source }
        }
        TensorFileError::Format { path, message } => BertError::Checkpoint { path, message },
    }
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
        assert_eq!(normalise_key("embeddings.LayerNorm.beta").as_deref(), Some("embeddings.LayerNorm.bias"));
        assert_eq!(normalise_key("classifier.weight").as_deref(), Some("classifier.weight"));
    }
}
