//! Adapters on disk in Hugging Face PEFT's format: `adapter_config.json` and
//! `adapter_model.safetensors` (or an older PEFT's `adapter_model.bin`).
//!
//! Saved tensor names are PEFT's for the wrapped model: `base_model.model.{module}.lora_A.weight`
//! (`[r, in]`), `...lora_B.weight` (`[out, r]`), DoRA's `...lora_magnitude_vector` (`[out]`),
//! and the modules to save in full under
//! `base_model.model.{module}.weight` / `.bias`; f32, header metadata `{"format": "pt"}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::config::LoraConfig;
use crate::error::{LoraError, Result};
use crate::inject::inject;
use crate::linear::AdaptableModel;
use tensor_file::{RawTensor, read_pytorch, read_safetensors, write_atomic, write_safetensors};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
pub const LEGACY_WEIGHTS_FILE: &str = "adapter_model.bin";
const PREFIX: &str = "base_model.model.";

/// What [`save_adapter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedAdapter {
    pub weights: PathBuf,
    pub config: PathBuf,
    /// Size of `adapter_model.safetensors` in bytes.
    pub bytes: u64,
    pub tensors: usize,
}

/// The adapter tensors of `model`, under PEFT's saved names.
pub fn adapter_tensors<B: Backend, M: AdaptableModel<B>>(
    model: &mut M,
    config: &LoraConfig,
) -> Result<BTreeMap<String, RawTensor>> {
    let mut tensors = BTreeMap::new();
    let mut failure = None;
    model.visit_linears(&mut |name, linear| {
        let mut read = || -> Result<()> {
            if let Some(adapter) = &linear.adapter {
                tensors.insert(format!("{PREFIX}{name}.lora_A.weight"), transposed(adapter.lora_A.val())?);
                tensors.insert(format!("{PREFIX}{name}.lora_B.weight"), transposed(adapter.lora_B.val())?);
                if let Some(m) = &adapter.lora_magnitude_vector {
                    // PEFT's name: its `lora_magnitude_vector.default.weight` less the adapter
                    // name and `.weight` (`get_peft_model_state_dict`).
                    let data = kernels::read::f32s(m.val())?;
                    tensors.insert(
                        format!("{PREFIX}{name}.lora_magnitude_vector"),
                        RawTensor { shape: vec![data.len()], data },
                    );
                }
            }
            if config.saves_module(name) {
                tensors.insert(format!("{PREFIX}{name}.weight"), transposed(linear.base_weight())?);
                if let Some(bias) = &linear.bias {
                    let data = kernels::read::f32s(bias.val())?;
                    tensors.insert(format!("{PREFIX}{name}.bias"), RawTensor { shape: vec![data.len()], data });
                }
            }
            Ok(())
        };
        if failure.is_none()
            && let Err(e) = read()
        {
            failure = Some(e);
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(tensors),
    }
}

/// `[a, b]` in Burn's layout to `[b, a]` in PyTorch's.
fn transposed<B: Backend>(t: Tensor<B, 2>) -> Result<RawTensor> {
    let [rows, cols] = t.dims();
    let data = kernels::read::f32s(t.transpose())?;
    Ok(RawTensor { shape: vec![cols, rows], data })
}

/// The first tensor (by name) holding a NaN or an infinity, if any.
pub fn first_non_finite(tensors: &BTreeMap<String, RawTensor>) -> Option<&str> {
    tensors.iter().find(|(_, t)| !t.data.iter().all(|v| v.is_finite())).map(|(k, _)| k.as_str())
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created if needed).
///
/// Each file is written to a temporary name beside it, synced, then renamed over the old one,
/// weights first: an interrupted save leaves the previous adapter readable, never a torn file.
pub fn save_adapter<B: Backend, M: AdaptableModel<B>>(
    model: &mut M,
    config: &LoraConfig,
    dir: &Path,
) -> Result<SavedAdapter> {
    let tensors = adapter_tensors(model, config)?;
    // PEFT's `safe_merge` refuses such an adapter; it is never written.
    if let Some(key) = first_non_finite(&tensors) {
        return Err(LoraError::NonFinite { key: key.to_string(), path: dir.join(WEIGHTS_FILE) });
    }
    std::fs::create_dir_all(dir).map_err(|source| LoraError::Write { path: dir.to_path_buf(), source })?;
    // PEFT writes the config of a saved adapter in inference mode.
    let saved_config = LoraConfig { inference_mode: true, ..config.clone() };
    let json = serde_json::to_string_pretty(&saved_config)
        .map_err(|e| LoraError::Write { path: dir.join(CONFIG_FILE), source: e.into() })?;

    let weights = dir.join(WEIGHTS_FILE);
    let bytes = write_safetensors(&weights, &tensors, &[("format", "pt")])?;
    let config_path = dir.join(CONFIG_FILE);
    write_atomic(&config_path, json.as_bytes())?;
    Ok(SavedAdapter { weights, config: config_path, bytes, tensors: tensors.len() })
}

/// Reads an adapter directory's config.
pub fn read_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = tensor_file::read_small_text(&path, tensor_file::SMALL_FILE_LIMIT)
        .map_err(|source| LoraError::Io { path: path.clone(), source })?;
    let config: LoraConfig =
        serde_json::from_str(&text).map_err(|source| LoraError::ConfigJson { path: path.clone(), source })?;
    config.validate().map_err(|source| LoraError::Config { path: Some(path), source })?;
    Ok(config)
}

/// Reads an adapter directory's tensors with PEFT's names normalised: no `base_model.model.`
/// prefix and no adapter name (`.default`), e.g. `bert.encoder.layer.0.attention.self.query.lora_A.weight`.
pub fn read_tensors(dir: &Path) -> Result<(PathBuf, BTreeMap<String, RawTensor>)> {
    let safetensors = dir.join(WEIGHTS_FILE);
    let legacy = dir.join(LEGACY_WEIGHTS_FILE);
    let (path, raw) = if safetensors.is_file() {
        (safetensors.clone(), read_safetensors(&safetensors, |_| false)?)
    } else if legacy.is_file() {
        (legacy.clone(), read_pytorch(&legacy, |_| false)?)
    } else {
        return Err(LoraError::Io {
            path: safetensors,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {WEIGHTS_FILE} or {LEGACY_WEIGHTS_FILE} in the adapter directory"),
            ),
        });
    };
    let tensors = raw.into_iter().map(|(k, t)| (normalise_key(&k), t)).collect();
    Ok((path, tensors))
}

fn normalise_key(key: &str) -> String {
    let key = key.strip_prefix(PREFIX).unwrap_or(key);
    key.replace(".modules_to_save.default.", ".").replace(".default.", ".")
}

/// Loads an adapter written here or by Python PEFT onto `model`: adapters on the modules its
/// config targets, the saved modules replaced, everything else frozen.
///
/// A config and weights that disagree (rank, shapes, a target the model lacks, a missing
/// tensor, a tensor for no known module) are an error naming the tensor and both shapes; so is
/// a tensor holding a NaN or an infinity (a diverged run's), as PEFT's `safe_merge` refuses it.
pub fn load_adapter<B: Backend, M: Module<B> + AdaptableModel<B>>(
    model: M,
    dir: &Path,
    device: &B::Device,
) -> Result<(M, LoraConfig)> {
    Adapter::read(dir)?.apply(model, device)
}

/// An adapter directory read whole: its config (with the task's defaults) and its tensors, so
/// that a caller can look at it (the head's rows) before putting it on a model, and read it once.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub config: LoraConfig,
    /// The weights file the tensors came from.
    pub path: PathBuf,
    /// As [`read_tensors`] names them.
    pub tensors: BTreeMap<String, RawTensor>,
}

impl Adapter {
    pub fn read(dir: &Path) -> Result<Self> {
        let config = read_config(dir)?.with_task_defaults();
        let (path, tensors) = read_tensors(dir)?;
        Ok(Self { config, path, tensors })
    }

    /// `model` with this adapter: adapters injected where the config targets, then filled.
    pub fn apply<B: Backend, M: Module<B> + AdaptableModel<B>>(
        self,
        model: M,
        device: &B::Device,
    ) -> Result<(M, LoraConfig)> {
        let (mut model, _) = inject(model, &self.config, device)?;
        load_weights(&mut model, &self.config, &self.path, self.tensors, device)?;
        Ok((model, self.config))
    }
}

/// Puts an adapter's `tensors` (as [`read_tensors`] gives them, read from `path`) into a model
/// that already has the adapters and modules to save of `config` ([`inject`]): every tensor
/// must find its place, with the right shape and finite values.
pub fn load_weights<B: Backend, M: AdaptableModel<B>>(
    model: &mut M,
    config: &LoraConfig,
    path: &Path,
    mut tensors: BTreeMap<String, RawTensor>,
    device: &B::Device,
) -> Result<()> {
    let mut failure = None;
    model.visit_linears(&mut |name, linear| {
        if failure.is_some() {
            return;
        }
        let [d_in, d_out] = linear.dims();
        // PyTorch's `[rows, cols]` to Burn's `[cols, rows]`.
        // Transposed on the host: a contiguous tensor multiplies exactly as the saved one did.
        let matrix = |raw: RawTensor| {
            let (rows, cols) = (raw.shape[0], raw.shape[1]);
            let mut data = vec![0.0; raw.data.len()];
            for r in 0..rows {
                for c in 0..cols {
                    data[c * rows + r] = raw.data[r * cols + c];
                }
            }
            Tensor::<B, 2>::from_data(TensorData::new(data, [cols, rows]), device)
        };
        let result = (|| -> Result<()> {
            if let Some(adapter) = linear.adapter.as_mut() {
                let r = adapter.rank();
                let a = take(&mut tensors, path, &format!("{name}.lora_A.weight"), &[r, d_in])?;
                let b = take(&mut tensors, path, &format!("{name}.lora_B.weight"), &[d_out, r])?;
                adapter.lora_A = Param::initialized(adapter.lora_A.id, matrix(a).require_grad());
                adapter.lora_B = Param::initialized(adapter.lora_B.id, matrix(b).require_grad());
                if let Some(m) = adapter.lora_magnitude_vector.as_mut() {
                    let raw = take(&mut tensors, path, &format!("{name}.lora_magnitude_vector"), &[d_out])?;
                    let values = Tensor::from_data(TensorData::new(raw.data, [d_out]), device);
                    *m = Param::initialized(m.id, values.require_grad());
                }
            }
            if config.saves_module(name) {
                let key = format!("{name}.weight");
                // The output layer's rows are the adapter's labels, whatever the base model's
                // head had: its trained head replaces the base's (as `from_pretrained(base,
                // num_labels=N)` before `PeftModel.from_pretrained`).
                let rows = match tensors.get(&key) {
                    Some(t) if linear.output && t.shape.len() == 2 && t.shape[1] == d_in => t.shape[0],
                    _ => d_out,
                };
                let weight = take(&mut tensors, path, &key, &[rows, d_in])?;
                linear.weight = Param::initialized(linear.weight.id, matrix(weight).require_grad());
                if let Some(bias) = linear.bias.as_mut() {
                    let raw = take(&mut tensors, path, &format!("{name}.bias"), &[rows])?;
                    let values = Tensor::from_data(TensorData::new(raw.data, [rows]), device);
                    *bias = Param::initialized(bias.id, values.require_grad());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if !tensors.is_empty() {
        return Err(LoraError::UnexpectedTensors { path: path.to_path_buf(), keys: tensors.into_keys().collect() });
    }
    Ok(())
}

/// Removes `key` from `tensors`, checking its shape.
fn take(tensors: &mut BTreeMap<String, RawTensor>, path: &Path, key: &str, expected: &[usize]) -> Result<RawTensor> {
    let raw = tensors.remove(key).ok_or_else(|| LoraError::MissingTensor {
        key: key.to_string(),
        path: path.to_path_buf(),
        expected: expected.to_vec(),
    })?;
    if raw.shape != expected {
        return Err(LoraError::ShapeMismatch {
            key: key.to_string(),
            path: path.to_path_buf(),
            expected: expected.to_vec(),
            found: raw.shape,
        });
    }
    if !raw.data.iter().all(|v| v.is_finite()) {
        return Err(LoraError::NonFinite { key: key.to_string(), path: path.to_path_buf() });
    }
    Ok(raw)
}
