//! `ModelConfig`: a model's `config.json`, read by the family it names ([`crate::registry`]),
//! with the file as read kept so that a saved model's `config.json` is its family's own.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ConfigError, EncoderError, Result};
use crate::family::{FamilyConfig, FamilyInfo, HeadConfig};
use crate::labels::LabelSpace;
use crate::registry::{FamilyConfigs, detect, families};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The family `model_type` (or `architectures`) names.
    pub family: FamilyInfo,
    /// The config as its family reads it.
    pub parsed: FamilyConfigs,
    /// The `config.json` as read, written back (updated) when a model is saved.
    pub source: serde_json::Value,
}

impl ModelConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_file_with(path, &serde_json::Map::new())
    }

    /// As [`Self::from_file`], with `overrides` set as `from_pretrained(name, key=value)` sets
    /// config attributes; a key the family's config does not have is refused, naming it.
    pub fn from_file_with(
        path: impl AsRef<Path>,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| EncoderError::Io { path: path.to_path_buf(), source })?;
        let config = |source: ConfigError| EncoderError::Config { path: path.to_path_buf(), source };
        let source: serde_json::Value = serde_json::from_str(&text).map_err(|e| config(e.into()))?;
        let parsed = Self::from_value(source, overrides).map_err(config)?;
        // A key the family's config lacks is the caller's mistake, not the file's: said apart
        // (serde ignores unknown keys, so the parse above kept it out).
        let known = parsed.parsed.to_value();
        let aliases = parsed.family.aliases;
        let has = |k: &str| known.get(k).is_some() || k == "num_labels" || aliases.iter().any(|(a, _)| *a == k);
        if let Some(key) = overrides.keys().find(|k| !has(k)) {
            let mut keys: Vec<String> = known.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            keys.sort();
            return Err(EncoderError::UnknownConfigKey {
                key: key.clone(),
                model_type: parsed.family.model_type.to_string(),
                path: path.to_path_buf(),
                keys,
            });
        }
        Ok(parsed)
    }

    /// From the parsed text of a `config.json`, `overrides` applied (through the family's
    /// aliases); [`Self::from_file_with`] also refuses an override the family has no key for.
    pub fn from_value(
        source: serde_json::Value,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<Self, ConfigError> {
        if !source.is_object() {
            return Err(ConfigError::Invalid("not a JSON object".into()));
        }
        let model_type = detect(&source)?;
        let info = *families()
            .iter()
            .find(|f| f.model_type == model_type)
            .ok_or_else(|| ConfigError::Invalid("no such family".into()))?;
        let mut json = source.clone();
        if let Some(map) = json.as_object_mut() {
            map.extend(overrides.clone());
            for (alias, key) in info.aliases {
                if let Some(value) = map.remove(*alias) {
                    map.insert(key.to_string(), value);
                }
            }
        }
        let parsed = FamilyConfigs::parse(model_type, &json)?;
        Ok(Self { family: parsed.info(), parsed, source })
    }

    pub fn get(&self) -> &dyn FamilyConfig {
        self.parsed.get()
    }

    pub fn labels(&self) -> &HeadConfig {
        self.parsed.get().labels()
    }

    /// Sets the head a task asks for.
    pub fn set_head(&mut self, spec: &LabelSpace) {
        self.parsed.get_mut().labels_mut().set(spec);
    }

    pub fn num_labels(&self) -> usize {
        self.labels().num_labels()
    }

    /// Positions a tokenized text may fill.
    pub fn max_text_positions(&self) -> usize {
        self.get().max_text_positions()
    }

    pub fn vocab_size(&self) -> usize {
        self.get().vocab_size()
    }

    /// The `config.json` of a saved `...ForSequenceClassification`: the file this config was
    /// read from (its family's names, its other keys) with the labels and architecture updated.
    pub fn to_json(&self, num_labels: usize) -> serde_json::Value {
        let mut json = self.source.clone();
        let labels = HeadConfig { num_labels: Some(num_labels), ..self.labels().clone() };
        if let Some(map) = json.as_object_mut() {
            let id2label = labels.id2label();
            let label2id: BTreeMap<String, usize> =
                id2label.iter().filter_map(|(i, name)| Some((name.clone(), i.parse().ok()?))).collect();
            map.insert("id2label".into(), serde_json::json!(id2label));
            map.insert("label2id".into(), serde_json::json!(label2id));
            map.remove("num_labels");
            if let Some(problem_type) = &labels.problem_type {
                map.insert("problem_type".into(), problem_type.clone().into());
            }
            map.insert("architectures".into(), serde_json::json!([self.family.class]));
            map.insert("model_type".into(), self.family.model_type.into());
        }
        json
    }
}
