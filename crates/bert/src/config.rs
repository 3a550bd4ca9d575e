//! `BertConfig`, read straight from a Hugging Face `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BertError, Result};

/// A BERT configuration with Hugging Face's field names and defaults (`BertConfig` in
/// transformers). Unknown fields are ignored, as transformers keeps them as attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
}

impl Default for BertConfig {
    /// bert-base-uncased.
    fn default() -> Self {
        Self {
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
        let config: Self = serde_json::from_str(&text)
            .map_err(|source| BertError::Config { path: path.to_path_buf(), message: source.to_string() })?;
        config.validate().map_err(|message| BertError::Config { path: path.to_path_buf(), message })?;
        Ok(config)
    }

    /// Checks what the model code relies on; the message names the offending key.
    pub fn validate(&self) -> std::result::Result<(), String> {
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

    /// The dropout before the classifier: `classifier_dropout`, else `hidden_dropout_prob`.
    pub fn classifier_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
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
