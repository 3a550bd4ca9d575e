//! Reading a Hugging Face checkpoint (`model.safetensors` or `pytorch_model.bin`) into f32
//! tensors under the names this crate's modules use.
//!
//! The one remap table, applied to every key as it is read, most specific first
//! (`PREFIX` is the family's base model attribute: `bert`, `roberta`, `distilbert`, `electra`):
//!
//! | checkpoint key                      | becomes                 | why                               |
//! |-------------------------------------|-------------------------|-----------------------------------|
//! | `*position_ids`                     | dropped                 | a buffer, not a weight            |
//! | `PREFIX.<rest>`                     | `<rest>`                | `*For*` checkpoints nest the base model |
//! | BERT `cls.*`; RoBERTa `lm_head.*`, `pooler.*`; DistilBERT `vocab_transform.*`, `vocab_layer_norm.*`, `vocab_projector.*`; ELECTRA `discriminator_predictions.*`, `generator_predictions.*`, `generator_lm_head.*` | dropped | pre-training heads (and the pooler RoBERTa's classifier does not use) |
//! | `*.LayerNorm.gamma` / `.beta`       | `*.LayerNorm.weight` / `.bias` | TF-era checkpoints        |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use tensor_file::RawTensor;
use tensor_file::TensorFileError;

use crate::error::{BertError, Result};
use crate::family::Family;

/// All tensors of one checkpoint file, keyed by their normalised name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, RawTensor>,
}

impl Checkpoint {
    /// Reads a BERT checkpoint: `model.safetensors` or `pytorch_model.bin`, by extension.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        Self::read_family(path, Family::Bert)
    }

    /// Reads a checkpoint of `family`, its keys normalised by the table above.
    pub fn read_family(path: impl AsRef<Path>, family: Family) -> Result<Self> {
        let path = path.as_ref();
        let skip = |name: &str| normalise_key_for(name, family).is_none();
        let raw = if path.extension().is_some_and(|ext| ext == "safetensors") {
            tensor_file::read_safetensors(path, skip).map_err(checkpoint_error)?
        } else {
            tensor_file::read_pytorch(path, skip).map_err(checkpoint_error)?
        };
        let mut tensors = BTreeMap::new();
        for (key, tensor) in raw {
            if let Some(key) = normalise_key_for(&key, family) {
                tensors.insert(key, tensor);
            }
        }
        Ok(Self { path: path.to_path_buf(), tensors })
    }
}

/// The remap table for BERT; `None` for keys the model ignores.
pub fn normalise_key(key: &str) -> Option<String> {
    normalise_key_for(key, Family::Bert)
}

/// The remap table of this module for `family`; `None` for keys the model ignores.
pub fn normalise_key_for(key: &str, family: Family) -> Option<String> {
    if key.ends_with("position_ids") {
        return None;
    }
    let prefix = format!("{}.", family.base_model_prefix());
    let key = key.strip_prefix(&prefix).unwrap_or(key);
    let dropped: &[&str] = match family {
        Family::Bert => &["cls."],
        Family::Roberta | Family::XlmRoberta => &["lm_head.", "pooler."],
        Family::DistilBert => &["vocab_transform.", "vocab_layer_norm.", "vocab_projector."],
        Family::Electra => &["discriminator_predictions.", "generator_predictions.", "generator_lm_head."],
    };
    if dropped.iter().any(|d| key.starts_with(d)) {
        return None;
    }
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
/// (`position_ids`) are skipped. Keys are the file's own.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, RawTensor>> {
    tensor_file::read_safetensors(path, |name| normalise_key(name).is_none()).map_err(checkpoint_error)
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
    use super::*;

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

    #[test]
    fn each_family_drops_its_pretraining_heads_and_prefix() {
        let n = |key, family| normalise_key_for(key, family);
        assert_eq!(n("roberta.pooler.dense.weight", Family::Roberta), None);
        assert_eq!(n("lm_head.dense.weight", Family::XlmRoberta), None);
        assert_eq!(
            n("roberta.encoder.layer.0.attention.self.query.weight", Family::Roberta).as_deref(),
            Some("encoder.layer.0.attention.self.query.weight")
        );
        assert_eq!(n("vocab_projector.weight", Family::DistilBert), None);
        assert_eq!(
            n("distilbert.transformer.layer.1.ffn.lin1.bias", Family::DistilBert).as_deref(),
            Some("transformer.layer.1.ffn.lin1.bias")
        );
        assert_eq!(n("discriminator_predictions.dense.weight", Family::Electra), None);
        assert_eq!(
            n("electra.embeddings_project.weight", Family::Electra).as_deref(),
            Some("embeddings_project.weight")
        );
        assert_eq!(n("bert.pooler.dense.weight", Family::Bert).as_deref(), Some("pooler.dense.weight"));
    }
}
