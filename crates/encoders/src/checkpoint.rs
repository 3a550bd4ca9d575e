//! Reading a Hugging Face checkpoint (`model.safetensors` or `pytorch_model.bin`) into f32
//! tensors under the names the model's modules ask for: PEFT's module names, which are the keys
//! of a `...ForSequenceClassification` checkpoint.
//!
//! The one remap, applied to every key as it is read (`PREFIX` is the family's base-model
//! attribute, [`FamilyInfo::base_model_prefix`]: `bert`, `roberta`, `model`, ...):
//!
//! | checkpoint key                      | becomes                 | why                               |
//! |-------------------------------------|-------------------------|-----------------------------------|
//! | `*position_ids`                     | dropped                 | a buffer, not a weight            |
//! | [`FamilyInfo::unused_keys`] (below `PREFIX.`) | dropped       | pre-training heads (BERT's `cls.*`, RoBERTa's `lm_head.*`, ...) |
//! | `<key>`, when no key starts with `PREFIX.` | `PREFIX.<key>`   | a base model's checkpoint: transformers' rule for loading it into a task model |
//! | `*.LayerNorm.gamma` / `.beta`       | `*.LayerNorm.weight` / `.bias` | TF-era checkpoints        |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) use tensor_file::RawTensor;
use tensor_file::TensorFileError;

use crate::error::{EncoderError, Result};
use crate::info::FamilyInfo;

/// All tensors of one checkpoint file, keyed by their normalised name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, RawTensor>,
}

impl Checkpoint {
    /// Reads a checkpoint of a family: `model.safetensors` or `pytorch_model.bin`, by
    /// extension, its keys normalised by the table above. `others` are the families it could
    /// have been saved by instead (the loader's list): a base model's keys under one of their
    /// prefixes is an error naming it.
    pub fn read(path: impl AsRef<Path>, family: &FamilyInfo, others: &[FamilyInfo]) -> Result<Self> {
        let path = path.as_ref();
        let skip = |name: &str| is_dropped(name, family);
        let raw = if path.extension().is_some_and(|ext| ext == "safetensors") {
            tensor_file::read_safetensors(path, skip).map_err(checkpoint_error)?
        } else {
            tensor_file::read_pytorch(path, skip).map_err(checkpoint_error)?
        };
        let prefix = format!("{}.", family.base_model_prefix);
        // transformers: a checkpoint with no key under the base-model prefix is a base model's,
        // and every key of it belongs under the prefix.
        let base_only = !raw.keys().any(|k| k.starts_with(&prefix));
        // ... unless its keys are under another family's prefix: `bert.` weights under a
        // RoBERTa config would otherwise be "missing `roberta.embeddings...`".
        if base_only
            && let Some(other) = others.iter().find(|f| {
                f.base_model_prefix != family.base_model_prefix
                    && raw.keys().any(|k| k.starts_with(&format!("{}.", f.base_model_prefix)))
            })
        {
            return Err(EncoderError::OtherFamily {
                path: path.to_path_buf(),
                found: other.model_type.to_string(),
                prefix: other.base_model_prefix.to_string(),
                model_type: family.model_type.to_string(),
            });
        }
        let tensors = raw
            .into_iter()
            .filter(|(key, _)| !is_dropped(key, family))
            .map(|(key, tensor)| {
                let key = if base_only { format!("{prefix}{key}") } else { key };
                (normalise_key(&key), tensor)
            })
            .collect();
        Ok(Self { path: path.to_path_buf(), tensors })
    }
}

/// Whether a checkpoint key is one the classifier has no place for.
fn is_dropped(key: &str, family: &FamilyInfo) -> bool {
    let stem = key.strip_prefix(&format!("{}.", family.base_model_prefix)).unwrap_or(key);
    key.ends_with("position_ids") || family.unused_keys.iter().any(|d| stem.starts_with(d))
}

/// TF-era `LayerNorm.gamma` / `.beta` to `.weight` / `.bias`; every other key as it is.
pub(crate) fn normalise_key(key: &str) -> String {
    if let Some(stem) = key.strip_suffix("LayerNorm.gamma") {
        format!("{stem}LayerNorm.weight")
    } else if let Some(stem) = key.strip_suffix("LayerNorm.beta") {
        format!("{stem}LayerNorm.bias")
    } else {
        key.to_string()
    }
}

/// Reads every tensor of a safetensors file as f32; integer buffers (`position_ids`) are
/// skipped. Keys are the file's own. (The loader reads through [`Checkpoint::read`]; tests read saved files.)
#[cfg(test)]
pub(crate) fn read_safetensors(path: &Path) -> Result<BTreeMap<String, RawTensor>> {
    tensor_file::read_safetensors(path, |name| name.ends_with("position_ids")).map_err(checkpoint_error)
}

fn checkpoint_error(e: TensorFileError) -> EncoderError {
    match e {
        TensorFileError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            EncoderError::NotFound { path, what: "a checkpoint file".into() }
        }
        TensorFileError::Read { path, source } | TensorFileError::Write { path, source } => {
            EncoderError::Io { path, source }
        }
        e @ (TensorFileError::Format { .. } | TensorFileError::Safetensors { .. }) => EncoderError::Checkpoint(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::registry::families;

    #[test]
    fn read_safetensors_drops_integer_buffers() {
        let Some(assets) = crate::assets::require_shared_assets("minilm buffers") else { return };
        let tensors = read_safetensors(&assets.join("all-MiniLM-L6-v2/model.safetensors")).unwrap();
        assert!(!tensors.keys().any(|k| k.ends_with("position_ids")));
        assert!(tensors.contains_key("embeddings.word_embeddings.weight"));
    }

    #[test]
    fn layer_norm_names_of_tf_checkpoints() {
        assert_eq!(
            normalise_key("bert.encoder.layer.0.output.LayerNorm.gamma"),
            "bert.encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(normalise_key("embeddings.LayerNorm.beta"), "embeddings.LayerNorm.bias");
        assert_eq!(normalise_key("classifier.weight"), "classifier.weight");
    }

    #[test]
    fn each_family_drops_its_pretraining_heads() {
        let info = |model_type: &str| *families().iter().find(|f| f.model_type == model_type).unwrap();
        let dropped = |key, model_type| is_dropped(key, &info(model_type));
        assert!(dropped("cls.predictions.bias", "bert"));
        assert!(dropped("bert.embeddings.position_ids", "bert"));
        assert!(!dropped("bert.pooler.dense.weight", "bert"));
        assert!(dropped("roberta.pooler.dense.weight", "roberta"));
        assert!(dropped("lm_head.dense.weight", "xlm-roberta"));
        assert!(!dropped("roberta.encoder.layer.0.attention.self.query.weight", "roberta"));
        assert!(dropped("vocab_projector.weight", "distilbert"));
        assert!(!dropped("distilbert.transformer.layer.1.ffn.lin1.bias", "distilbert"));
        assert!(dropped("discriminator_predictions.dense.weight", "electra"));
        assert!(!dropped("electra.embeddings_project.weight", "electra"));
    }
}
