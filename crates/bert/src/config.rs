//! `BertConfig`: a BERT-family model's `config.json`, read straight from Hugging Face's file.
//!
//! BERT, RoBERTa, XLM-RoBERTa and ELECTRA use BERT's key names; DistilBERT's own names
//! (`dim`, `n_heads`, `n_layers`, `hidden_dim`, `dropout`, `attention_dropout`, `activation`) are
//! read into them, as transformers' `DistilBertConfig.attribute_map` does for some of them. The
//! file as read is kept, so that a saved model's `config.json` is its family's, not BERT's.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BertError, Result};
use crate::family::Family;

/// A BERT-family configuration with Hugging Face's field names and defaults (`BertConfig` in
/// transformers). Unknown fields are ignored, as transformers keeps them as attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// From `model_type` / `architectures` ([`Family::detect`]).
    #[serde(skip)]
    pub family: Family,
    /// ELECTRA: the width of the embeddings, projected to `hidden_size` when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<usize>,
    /// DistilBERT: the dropout before the classifier (`seq_classif_dropout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_classif_dropout: Option<f64>,
    /// DistilBERT: fixed sinusoidal position embeddings when freshly initialised.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sinusoidal_pos_embds: bool,
    /// The `config.json` this was read from, written back (updated) when a model is saved.
    #[serde(skip)]
    pub source: Option<serde_json::Value>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    pub position_embedding_type: String,
    pub classifier_dropout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, usize>>,
    /// transformers' `problem_type` (`single_label_classification`, `multi_label_classification`,
    /// `regression`); written to a saved model's `config.json` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
}

impl Default for BertConfig {
    /// bert-base-uncased.
    fn default() -> Self {
        Self {
            family: Family::Bert,
            embedding_size: None,
            seq_classif_dropout: None,
            sinusoidal_pos_embds: false,
            source: None,
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
            classifier_dropout: None,
            num_labels: None,
            id2label: None,
            label2id: None,
            problem_type: None,
            model_type: None,
            architectures: None,
        }
    }
}

/// The activation of the intermediate (feed-forward) layer, by transformers' `ACT2FN` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)` with erf (transformers' `"gelu"`).
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    Relu,
    Silu,
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| BertError::Io { path: path.to_path_buf(), source })?;
        let config =
            Self::from_json(&text).map_err(|message| BertError::Config { path: path.to_path_buf(), message })?;
        config.validate().map_err(|message| BertError::Config { path: path.to_path_buf(), message })?;
        Ok(config)
    }

    /// A config from the text of a `config.json` of any supported family.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let source: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !source.is_object() {
            return Err("not a JSON object".into());
        }
        let family = Family::detect(&source)?;
        let mut value = source.clone();
        if let Some(map) = value.as_object_mut() {
            if family == Family::DistilBert {
                for (theirs, ours) in DISTILBERT_NAMES {
                    if let Some(v) = map.remove(theirs) {
                        map.insert(ours.to_string(), v);
                    }
                }
                // DistilBERT has no token types; its LayerNorms use 1e-12 whatever the file says.
                map.insert("type_vocab_size".into(), 0.into());
                map.insert("layer_norm_eps".into(), 1e-12.into());
            }
            for (key, default) in family_defaults(family) {
                map.entry(key.to_string()).or_insert(default);
            }
        }
        let mut config: Self = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.family = family;
        config.source = Some(source);
        Ok(config)
    }

    /// The `config.json` of a saved `...ForSequenceClassification`: the file this config was
    /// read from (its family's names, its other keys) with the labels and architecture updated.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = match &self.source {
            Some(source) => source.clone(),
            None => serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({})),
        };
        if let Some(map) = json.as_object_mut() {
            let n = self.num_labels();
            let id2label: BTreeMap<String, String> = match &self.id2label {
                Some(names) if names.len() == n => names.clone(),
                _ => (0..n).map(|i| (i.to_string(), format!("LABEL_{i}"))).collect(),
            };
            let label2id: BTreeMap<String, usize> =
                id2label.iter().filter_map(|(i, name)| Some((name.clone(), i.parse().ok()?))).collect();
            map.insert("id2label".into(), serde_json::json!(id2label));
            map.insert("label2id".into(), serde_json::json!(label2id));
            map.remove("num_labels");
            if let Some(problem_type) = &self.problem_type {
                map.insert("problem_type".into(), problem_type.clone().into());
            }
            map.insert("architectures".into(), serde_json::json!([self.family.sequence_classification()]));
            map.insert("model_type".into(), self.family.model_type().into());
        }
        json
    }

    /// Positions a tokenized text may fill: RoBERTa's position ids start after its padding
    /// index (`padding_idx + 1`), so two of its 514 embeddings are never a text's.
    pub fn max_text_positions(&self) -> usize {
        match self.family {
            Family::Roberta | Family::XlmRoberta => self.max_position_embeddings.saturating_sub(self.pad_token_id + 1),
            _ => self.max_position_embeddings,
        }
    }

    /// The width of the embeddings (ELECTRA's `embedding_size`, else `hidden_size`).
    pub fn embedding_width(&self) -> usize {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    /// Checks what the model code relies on; the message names the offending key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.family == Family::DistilBert && self.position_embedding_type != "absolute" {
            return Err("DistilBERT has absolute position embeddings only".into());
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size ({}) must be a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported; expected \"absolute\"",
                self.position_embedding_type
            ));
        }
        self.activation()?;
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
            ("classifier_dropout", self.classifier_dropout.unwrap_or(0.0)),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{key} must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    pub fn activation(&self) -> std::result::Result<Activation, String> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(format!(
                "hidden_act {other:?} is not supported; expected one of \"gelu\", \"gelu_new\", \"relu\", \"silu\""
            )),
        }
    }

    /// Labels of the classification head: `num_labels`, else the size of `id2label`, else 2
    /// (transformers' default).
    pub fn num_labels(&self) -> usize {
        self.num_labels.or_else(|| self.id2label.as_ref().map(BTreeMap::len)).unwrap_or(2)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The dropout before the classifier: `classifier_dropout`, else `hidden_dropout_prob`
    /// (DistilBERT: `seq_classif_dropout`).
    pub fn classifier_dropout(&self) -> f64 {
        match self.family {
            Family::DistilBert => self.seq_classif_dropout.unwrap_or(0.2),
            _ => self.classifier_dropout.unwrap_or(self.hidden_dropout_prob),
        }
    }
}

/// DistilBERT's key names and the BERT names this config reads them into.
const DISTILBERT_NAMES: [(&str, &str); 7] = [
    ("dim", "hidden_size"),
    ("n_heads", "num_attention_heads"),
    ("n_layers", "num_hidden_layers"),
    ("hidden_dim", "intermediate_size"),
    ("dropout", "hidden_dropout_prob"),
    ("attention_dropout", "attention_probs_dropout_prob"),
    ("activation", "hidden_act"),
];

/// Each family's transformers defaults where they differ from BERT's, for keys a file leaves out.
fn family_defaults(family: Family) -> Vec<(&'static str, serde_json::Value)> {
    match family {
        Family::Bert => vec![],
        Family::Roberta | Family::XlmRoberta => vec![("pad_token_id", 1.into())],
        Family::DistilBert => vec![
            ("hidden_size", 768.into()),
            ("num_attention_heads", 12.into()),
            ("num_hidden_layers", 6.into()),
            ("intermediate_size", 3072.into()),
        ],
        Family::Electra => vec![
            ("embedding_size", 128.into()),
            ("hidden_size", 256.into()),
            ("num_attention_heads", 4.into()),
            ("intermediate_size", 1024.into()),
        ],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_hugging_face_names_and_ignores_unknown_fields() {
        let json = r#"{"hidden_size": 64, "num_attention_heads": 4, "layer_norm_eps": 1e-7,
            "hidden_act": "gelu", "id2label": {"0": "NEG", "1": "POS", "2": "MIX"},
            "transformers_version": "4.46.3", "gradient_checkpointing": false}"#;
        let config: BertConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.hidden_size, 64);
        assert_eq!(config.layer_norm_eps, 1e-7);
        assert_eq!(config.num_labels(), 3);
        assert_eq!(config.vocab_size, 30522, "missing fields take transformers' defaults");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let config = BertConfig { hidden_size: 30, num_attention_heads: 4, ..Default::default() };
        assert!(config.validate().unwrap_err().contains("num_attention_heads"));
    }

    #[test]
    fn rejects_unknown_activation() {
        let config = BertConfig { hidden_act: "mish".into(), ..Default::default() };
        assert!(config.validate().unwrap_err().contains("hidden_act"));
    }
}
