//! `BertConfig`: the `config.json` of BERT and of the families that use BERT's keys (RoBERTa,
//! XLM-RoBERTa, ELECTRA, CamemBERT, and MPNet's flattened keys), read straight from Hugging
//! Face's file; the shared blocks' specs it gives; and the checks every family's config uses.

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::embeddings::{EmbeddingSpec, Positions};
use crate::error::ConfigError;
use crate::family::{FamilyConfig, HeadConfig};
use crate::spec::EncoderSpec;

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
    #[serde(flatten)]
    pub head: HeadConfig,
    /// How position ids are numbered: from 0 (BERT, ELECTRA), or after the padding index
    /// (RoBERTa's family sets it when it reads its config).
    #[serde(skip)]
    pub positions: Positions,
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
            head: HeadConfig::default(),
            positions: Positions::FromZero,
        }
    }
}

impl BertConfig {
    /// Reads and validates a BERT `config.json`.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        let fail = |source: ConfigError| crate::EncoderError::Config { path: path.to_path_buf(), source };
        let text = std::fs::read_to_string(path)
            .map_err(|source| crate::EncoderError::Io { path: path.to_path_buf(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.into()))?;
        Self::from_json(&json).map_err(fail)
    }

    /// A config from the text of a `config.json` with BERT's keys.
    pub fn from_json(json: &serde_json::Value) -> std::result::Result<Self, ConfigError> {
        let config: Self = serde_json::from_value(json.clone())?;
        config.validate()?;
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The dropout before the classifier: `classifier_dropout`, else `hidden_dropout_prob`.
    pub fn classifier_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    pub fn num_labels(&self) -> usize {
        self.head.num_labels()
    }

    pub fn activation(&self) -> std::result::Result<Activation, ConfigError> {
        Activation::named("hidden_act", &self.hidden_act)
    }
}

impl FamilyConfig for BertConfig {
    fn labels(&self) -> &HeadConfig {
        &self.head
    }

    fn labels_mut(&mut self) -> &mut HeadConfig {
        &mut self.head
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn initializer_range(&self) -> f64 {
        self.initializer_range
    }

    fn padding_idx(&self) -> Option<usize> {
        match self.positions {
            Positions::AfterPadding { padding_idx } => Some(padding_idx),
            Positions::FromZero => None,
        }
    }

    /// RoBERTa's position ids start after its padding index (`padding_idx + 1`), so two of its
    /// 514 embeddings are never a text's.
    fn max_text_positions(&self) -> usize {
        match self.positions {
            Positions::AfterPadding { padding_idx } => self.max_position_embeddings.saturating_sub(padding_idx + 1),
            Positions::FromZero => self.max_position_embeddings,
        }
    }

    fn validate(&self) -> std::result::Result<(), crate::error::ConfigError> {
        check_heads(self.hidden_size, self.num_attention_heads, "hidden_size", "num_attention_heads")?;
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported; expected \"absolute\"",
                self.position_embedding_type
            )
            .into());
        }
        self.activation()?;
        check_dropouts(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
            ("classifier_dropout", self.classifier_dropout.unwrap_or(0.0)),
        ])
    }
}

/// `width` must split into `heads` heads.
pub(crate) fn check_heads(
    width: usize,
    heads: usize,
    width_key: &str,
    heads_key: &str,
) -> std::result::Result<(), ConfigError> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(format!("{width_key} ({width}) must be a multiple of {heads_key} ({heads})").into());
    }
    Ok(())
}

/// Each dropout probability must be in [0, 1).
pub(crate) fn check_dropouts(dropouts: &[(&str, f64)]) -> std::result::Result<(), ConfigError> {
    for &(key, p) in dropouts {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("{key} must be in [0, 1), got {p}").into());
        }
    }
    Ok(())
}

impl BertConfig {
    /// The embeddings of BERT, RoBERTa and ELECTRA, `width` wide (ELECTRA's `embedding_size`).
    pub fn embedding_spec(&self, width: usize) -> EmbeddingSpec {
        EmbeddingSpec {
            vocab_size: self.vocab_size,
            width,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            pad_token_id: self.pad_token_id,
            positions: self.positions,
            sinusoidal: false,
            layer_norm_eps: self.layer_norm_eps,
            dropout: self.hidden_dropout_prob,
        }
    }

    /// The sizes and rates of BERT's layers under these keys (an unknown `hidden_act` refused).
    pub fn encoder_spec(&self) -> crate::Result<EncoderSpec> {
        Ok(EncoderSpec {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            num_hidden_layers: self.num_hidden_layers,
            layer_norm_eps: self.layer_norm_eps,
            hidden_dropout: self.hidden_dropout_prob,
            attention_dropout: self.attention_probs_dropout_prob,
            activation: self.activation().map_err(crate::EncoderError::invalid_config)?,
        })
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
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let config = BertConfig { hidden_size: 30, num_attention_heads: 4, ..Default::default() };
        assert!(config.validate().unwrap_err().to_string().contains("num_attention_heads"));
    }

    #[test]
    fn rejects_unknown_activation() {
        let config = BertConfig { hidden_act: "mish".into(), ..Default::default() };
        assert!(config.validate().unwrap_err().to_string().contains("hidden_act"));
    }
}
