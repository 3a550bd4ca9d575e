//! The BERT-family encoders this crate builds, told apart as transformers tells them apart: by
//! `model_type` in `config.json`, else by the class named in `architectures`.

use serde::{Deserialize, Serialize};

/// One encoder family: the same attention and feed-forward blocks, different embeddings, names
/// and classification heads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    #[default]
    Bert,
    /// RoBERTa: position ids offset past the padding index, one token type, a two-layer head.
    Roberta,
    /// XLM-RoBERTa: RoBERTa's model (and names) with a multilingual Unigram tokenizer.
    XlmRoberta,
    /// DistilBERT: its own names (`q_lin`, `sa_layer_norm`, `ffn.lin1`), no token types.
    DistilBert,
    /// ELECTRA: BERT's names, embeddings that may be narrower than the encoder.
    Electra,
}

impl Family {
    pub const ALL: [Family; 5] = [Self::Bert, Self::Roberta, Self::XlmRoberta, Self::DistilBert, Self::Electra];

    /// transformers' `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::DistilBert => "distilbert",
            Self::Electra => "electra",
        }
    }

    /// The attribute the `...ForSequenceClassification` class keeps its base model under (the
    /// prefix of its checkpoint keys and of PEFT's module names).
    pub fn base_model_prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta | Self::XlmRoberta => "roberta",
            Self::DistilBert => "distilbert",
            Self::Electra => "electra",
        }
    }

    /// The class transformers loads a merged model as.
    pub fn sequence_classification(self) -> &'static str {
        match self {
            Self::Bert => "BertForSequenceClassification",
            Self::Roberta => "RobertaForSequenceClassification",
            Self::XlmRoberta => "XLMRobertaForSequenceClassification",
            Self::DistilBert => "DistilBertForSequenceClassification",
            Self::Electra => "ElectraForSequenceClassification",
        }
    }

    /// The linear that gives the logits (its rows are the labels), by PEFT's module name.
    pub fn output_layer(self) -> &'static str {
        match self {
            Self::Bert | Self::DistilBert => "classifier",
            Self::Roberta | Self::XlmRoberta | Self::Electra => "classifier.out_proj",
        }
    }

    /// PEFT's default LoRA targets for this `model_type`
    /// (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`); DistilBERT has none.
    pub fn default_lora_targets(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Bert | Self::Roberta | Self::XlmRoberta | Self::Electra => Some(&["query", "value"]),
            Self::DistilBert => None,
        }
    }

    /// From `model_type`, else the first of `architectures` (`RobertaForMaskedLM` -> RoBERTa),
    /// else BERT (old BERT configs name neither). `Err` names what was found.
    pub fn detect(config: &serde_json::Value) -> Result<Self, String> {
        if let Some(model_type) = config.get("model_type").and_then(|v| v.as_str()) {
            return Self::ALL.into_iter().find(|f| f.model_type() == model_type).ok_or_else(|| {
                format!("model_type {model_type:?} is not supported; expected one of {}", Self::list())
            });
        }
        let architecture = config.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str());
        let Some(architecture) = architecture else { return Ok(Self::Bert) };
        // Longest class prefix first: "XLMRoberta..." before "Roberta...", "DistilBert" before "Bert".
        let prefixes = [
            ("XLMRoberta", Self::XlmRoberta),
            ("DistilBert", Self::DistilBert),
            ("Roberta", Self::Roberta),
            ("Electra", Self::Electra),
            ("Bert", Self::Bert),
        ];
        prefixes.iter().find(|(p, _)| architecture.starts_with(p)).map(|(_, f)| *f).ok_or_else(|| {
            format!("architecture {architecture:?} is not a BERT-family model; expected one of {}", Self::list())
        })
    }

    fn list() -> String {
        Self::ALL.map(|f| format!("{:?}", f.model_type())).join(", ")
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_by_model_type_then_architecture() {
        assert_eq!(Family::detect(&json!({"model_type": "xlm-roberta"})), Ok(Family::XlmRoberta));
        assert_eq!(Family::detect(&json!({"architectures": ["DistilBertForMaskedLM"]})), Ok(Family::DistilBert));
        assert_eq!(Family::detect(&json!({"architectures": ["RobertaModel"]})), Ok(Family::Roberta));
        assert_eq!(Family::detect(&json!({"hidden_size": 8})), Ok(Family::Bert));
        let err = Family::detect(&json!({"model_type": "gpt2"})).unwrap_err();
        assert!(err.contains("gpt2") && err.contains("\"distilbert\""), "{err}");
    }
}
