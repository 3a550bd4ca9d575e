//! Writing a model in Hugging Face's layout (`config.json` + `model.safetensors`), readable by
//! transformers' `from_pretrained` and by this crate.
//!
//! The tensor names come from Burn's module walk, with the remap table of
//! [`crate::checkpoint`] run backwards: `self_attention` → `self`, `layer_norm` → `LayerNorm`,
//! LayerNorm `gamma`/`beta` → `weight`/`bias`; linear weights go back to PyTorch's `[out, in]`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use tensor_file::{write_atomic, write_safetensors};

use crate::checkpoint::RawTensor;
use crate::error::{EncoderError, Result};
use crate::family::Classifier;
use crate::model_config::ModelConfig;

struct Collector {
    path: Vec<(String, String)>,
    tensors: BTreeMap<String, RawTensor>,
    /// The first tensor that could not be read.
    failure: Option<kernels::ReadError>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some((leaf, container)) = self.path.last() else { return };
        let in_linear = container == "Struct:LoraLinear";
        let in_norm = container == "Struct:LayerNorm";
        let key: Vec<String> = self
            .path
            .iter()
            // An enum's variant (`AutoModel::Bert`) is not part of the name.
            .filter(|(_, container)| !container.starts_with("Enum:"))
            .map(|(name, _)| match name.as_str() {
                "self_attention" => "self".to_string(),
                "layer_norm" => "LayerNorm".to_string(),
                "gamma" if in_norm => "weight".to_string(),
                "beta" if in_norm => "bias".to_string(),
                other => other.to_string(),
            })
            .collect();
        let tensor = param.val();
        let dims = tensor.dims().to_vec();
        let (shape, data) = if in_linear && leaf == "weight" && D == 2 {
            // Burn's [in, out] to PyTorch's [out, in].
            (vec![dims[1], dims[0]], kernels::read::f32s(tensor.reshape([dims[0], dims[1]]).transpose()))
        } else {
            (dims, kernels::read::f32s(tensor))
        };
        match data {
            Ok(data) => {
                self.tensors.insert(key.join("."), RawTensor { shape, data });
            }
            Err(e) => {
                self.failure.get_or_insert(e);
            }
        }
    }
}

/// The model's tensors under transformers' names for it (`bert.encoder...`, `classifier.out_proj...`).
/// Linears must be plain (no adapter): merge first.
pub(crate) fn state_dict<B: Backend, M: Module<B>>(model: &M) -> Result<BTreeMap<String, RawTensor>> {
    let mut collector = Collector { path: Vec::new(), tensors: BTreeMap::new(), failure: None };
    model.visit(&mut collector);
    match collector.failure {
        Some(e) => Err(e.into()),
        None => Ok(collector.tensors),
    }
}

/// Writes `config.json` and `model.safetensors` into `dir`.
pub fn save_pretrained<B: Backend, M: Classifier<B>>(model: &M, config: &ModelConfig, dir: &Path) -> Result<()> {
    let fail =
        |path: &Path, e: String| EncoderError::Write { path: path.to_path_buf(), source: std::io::Error::other(e) };
    let tensors = state_dict(model)?;
    if let Some(key) = tensors.keys().find(|k| k.contains("lora_")) {
        return Err(fail(dir, format!("`{key}` is an adapter tensor: merge the adapter before saving a full model")));
    }
    std::fs::create_dir_all(dir).map_err(|source| EncoderError::Write { path: dir.to_path_buf(), source })?;
    let json =
        serde_json::to_string_pretty(&config.to_json(model.num_labels())).map_err(|e| fail(dir, e.to_string()))?;
    write_safetensors(&dir.join("model.safetensors"), &tensors, &[("format", "pt")])?;
    Ok(write_atomic(&dir.join("config.json"), json.as_bytes())?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::{Path, PathBuf};

    use burn::backend::Flex;

    use crate::bert::Bert;
    use crate::checkpoint::{Checkpoint, normalise_key, read_safetensors};
    use crate::family::Family;
    use crate::hub::{LoadOptions, from_pretrained};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    #[test]
    fn save_pretrained_round_trips_with_transformers_names() {
        let tiny = fixture("tiny-bert");
        let loaded =
            from_pretrained::<Flex>(tiny.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap();
        let original = Checkpoint::read(tiny.join("model.safetensors"), &Bert::INFO, &[]).unwrap();
        let saved = super::state_dict(&loaded.model).unwrap();
        // Same names (after the loader's normalisation) and bit-identical values.
        let renamed: std::collections::BTreeMap<String, _> =
            saved.into_iter().map(|(k, v)| (normalise_key(&k), v)).collect();
        assert_eq!(renamed, original.tensors);

        let out = tempfile::tempdir().unwrap();
        super::save_pretrained(&loaded.model, &loaded.config, out.path()).unwrap();
        let reread =
            from_pretrained::<Flex>(out.path().to_str().unwrap(), &LoadOptions::default(), &Default::default())
                .unwrap();
        assert!(reread.report.initialized.is_empty());
        let names = read_safetensors(&out.path().join("model.safetensors")).unwrap();
        assert!(names.contains_key("bert.encoder.layer.1.attention.self.query.weight"));
        assert!(names.contains_key("bert.embeddings.LayerNorm.weight"));
        assert!(names.contains_key("classifier.bias"));
    }
}
