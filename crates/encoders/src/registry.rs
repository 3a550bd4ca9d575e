//! The one list of families, keyed by `model_type` as transformers' Auto mappings are: a
//! family's config ([`ModelConfig`]) and its model ([`AutoModel`]), whichever `config.json`
//! names. Adding a family is a file of its own and one line in each `match` here; no other
//! file names a family.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::bert::{Bert, BertForSequenceClassification};
use crate::config::BertConfig;
use crate::deberta::{DebertaV2, DebertaV2Config, DebertaV2ForSequenceClassification};
use crate::distilbert::{DistilBert, DistilBertConfig, DistilBertForSequenceClassification};
use crate::electra::{Electra, ElectraConfig, ElectraForSequenceClassification};
use crate::error::{ConfigError, Result};
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo};
use crate::input::EncoderInput;
use crate::modernbert::{ModernBert, ModernBertConfig, ModernBertForSequenceClassification};
use crate::roberta::{Roberta, RobertaForSequenceClassification, XlmRoberta};
use crate::weights::Weights;

/// Every family. Their order does not matter: a config without `model_type` is detected by the
/// longest `architectures` prefix that matches.
pub fn families() -> [FamilyInfo; 7] {
    [XlmRoberta::INFO, DistilBert::INFO, Roberta::INFO, Electra::INFO, ModernBert::INFO, DebertaV2::INFO, Bert::INFO]
}

/// A family's parsed config, as the family reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum FamilyConfigs {
    Bert(BertConfig),
    Roberta(BertConfig),
    XlmRoberta(BertConfig),
    DistilBert(DistilBertConfig),
    Electra(ElectraConfig),
    ModernBert(ModernBertConfig),
    DebertaV2(DebertaV2Config),
}

impl FamilyConfigs {
    /// The config of the family `model_type` names, from the text of its `config.json`.
    pub fn parse(model_type: &str, json: &serde_json::Value) -> std::result::Result<Self, ConfigError> {
        // Each `model_type` is written once, in its family's `FamilyInfo`.
        let is = |info: FamilyInfo| info.model_type == model_type;
        Ok(match () {
            () if is(Bert::INFO) => Self::Bert(Bert::config(json)?),
            () if is(Roberta::INFO) => Self::Roberta(Roberta::config(json)?),
            () if is(XlmRoberta::INFO) => Self::XlmRoberta(XlmRoberta::config(json)?),
            () if is(DistilBert::INFO) => Self::DistilBert(DistilBert::config(json)?),
            () if is(Electra::INFO) => Self::Electra(Electra::config(json)?),
            () if is(ModernBert::INFO) => Self::ModernBert(ModernBert::config(json)?),
            () if is(DebertaV2::INFO) => Self::DebertaV2(DebertaV2::config(json)?),
            () => return Err(unsupported(model_type).into()),
        })
    }

    pub fn info(&self) -> FamilyInfo {
        match self {
            Self::Bert(_) => Bert::INFO,
            Self::Roberta(_) => Roberta::INFO,
            Self::XlmRoberta(_) => XlmRoberta::INFO,
            Self::DistilBert(_) => DistilBert::INFO,
            Self::Electra(_) => Electra::INFO,
            Self::ModernBert(_) => ModernBert::INFO,
            Self::DebertaV2(_) => DebertaV2::INFO,
        }
    }

    /// What every family's config answers.
    pub fn get(&self) -> &dyn FamilyConfig {
        match self {
            Self::Bert(c) | Self::Roberta(c) | Self::XlmRoberta(c) => c,
            Self::DistilBert(c) => c,
            Self::Electra(c) => c,
            Self::ModernBert(c) => c,
            Self::DebertaV2(c) => c,
        }
    }

    pub fn get_mut(&mut self) -> &mut dyn FamilyConfig {
        match self {
            Self::Bert(c) | Self::Roberta(c) | Self::XlmRoberta(c) => c,
            Self::DistilBert(c) => c,
            Self::Electra(c) => c,
            Self::ModernBert(c) => c,
            Self::DebertaV2(c) => c,
        }
    }

    /// The config as JSON with the family's own key names (what a change made to it shows).
    pub fn to_value(&self) -> serde_json::Value {
        let value = match self {
            Self::Bert(c) | Self::Roberta(c) | Self::XlmRoberta(c) => serde_json::to_value(c),
            Self::DistilBert(c) => serde_json::to_value(c),
            Self::Electra(c) => serde_json::to_value(c),
            Self::ModernBert(c) => serde_json::to_value(c),
            Self::DebertaV2(c) => serde_json::to_value(c),
        };
        value.unwrap_or_default()
    }
}

/// The family's `model_type`: from `model_type`, else the first of `architectures`
/// (`RobertaForMaskedLM` -> `roberta`), else BERT (old BERT configs name neither).
pub fn detect(config: &serde_json::Value) -> std::result::Result<&'static str, String> {
    if let Some(model_type) = config.get("model_type").and_then(|v| v.as_str()) {
        return families()
            .iter()
            .map(|f| f.model_type)
            .find(|t| *t == model_type)
            .ok_or_else(|| unsupported(model_type));
    }
    let architecture = config.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str());
    let Some(architecture) = architecture else { return Ok(Bert::INFO.model_type) };
    // The longest matching prefix, so that no family's place in the list decides.
    families()
        .iter()
        .filter(|f| architecture.starts_with(f.architecture))
        .max_by_key(|f| f.architecture.len())
        .map(|f| f.model_type)
        .ok_or_else(|| format!("architecture {architecture:?} is not a supported encoder; expected one of {}", list()))
}

fn unsupported(model_type: &str) -> String {
    format!("model_type {model_type:?} is not supported; expected one of {}", list())
}

fn list() -> String {
    let mut types: Vec<String> = families().iter().map(|f| format!("{:?}", f.model_type)).collect();
    types.sort();
    types.join(", ")
}

/// The `...ForSequenceClassification` of whichever family a config names: the type the program
/// holds, since the family is known only at run time.
// One model per process, held once: boxing the larger variants would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AutoModel<B: Backend> {
    Bert(BertForSequenceClassification<B>),
    /// RoBERTa and XLM-RoBERTa.
    Roberta(RobertaForSequenceClassification<B>),
    DistilBert(DistilBertForSequenceClassification<B>),
    Electra(ElectraForSequenceClassification<B>),
    ModernBert(ModernBertForSequenceClassification<B>),
    DebertaV2(DebertaV2ForSequenceClassification<B>),
}

impl<B: Backend> AutoModel<B> {
    /// The model `config` describes, its tensors from `w`.
    pub fn load(w: &mut Weights<B>, config: &FamilyConfigs) -> Result<Self> {
        Ok(match config {
            FamilyConfigs::Bert(c) => Self::Bert(Bert::load(w, c)?),
            FamilyConfigs::Roberta(c) => Self::Roberta(Roberta::load(w, c)?),
            FamilyConfigs::XlmRoberta(c) => Self::Roberta(XlmRoberta::load(w, c)?),
            FamilyConfigs::DistilBert(c) => Self::DistilBert(DistilBert::load(w, c)?),
            FamilyConfigs::Electra(c) => Self::Electra(Electra::load(w, c)?),
            FamilyConfigs::ModernBert(c) => Self::ModernBert(ModernBert::load(w, c)?),
            FamilyConfigs::DebertaV2(c) => Self::DebertaV2(DebertaV2::load(w, c)?),
        })
    }

    fn get(&self) -> &dyn ClassifierRef<B> {
        match self {
            Self::Bert(m) => m,
            Self::Roberta(m) => m,
            Self::DistilBert(m) => m,
            Self::Electra(m) => m,
            Self::ModernBert(m) => m,
            Self::DebertaV2(m) => m,
        }
    }

    /// `[batch, num_labels]` logits ([`Classifier::forward`], without the trait in scope).
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        self.get().forward(input)
    }

    /// The encoder's last hidden state, `[batch, seq, hidden]`.
    pub fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.get().last_hidden_state(input)
    }

    /// Rows of the output layer.
    pub fn num_labels(&self) -> usize {
        self.get().num_labels()
    }

    /// The BERT model inside, if this is one.
    pub fn as_bert(&self) -> Option<&BertForSequenceClassification<B>> {
        match self {
            Self::Bert(m) => Some(m),
            _ => None,
        }
    }
}

/// The object-safe part of [`Classifier`], for the one `match` that picks the variant.
trait ClassifierRef<B: Backend> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2>;
    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3>;
    fn num_labels(&self) -> usize;
}

impl<B: Backend, M: Classifier<B>> ClassifierRef<B> for M {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        Classifier::forward(self, input)
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        Classifier::last_hidden_state(self, input)
    }

    fn num_labels(&self) -> usize {
        Classifier::num_labels(self)
    }
}

impl<B: Backend> AdaptableModel<B> for AutoModel<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        match self {
            Self::Bert(m) => m.each_linear(f),
            Self::Roberta(m) => m.each_linear(f),
            Self::DistilBert(m) => m.each_linear(f),
            Self::Electra(m) => m.each_linear(f),
            Self::ModernBert(m) => m.each_linear(f),
            Self::DebertaV2(m) => m.each_linear(f),
        }
    }
}

impl<B: Backend> Classifier<B> for AutoModel<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        AutoModel::forward(self, input)
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        AutoModel::last_hidden_state(self, input)
    }

    fn num_labels(&self) -> usize {
        AutoModel::num_labels(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_by_model_type_then_architecture() {
        assert_eq!(detect(&json!({"model_type": "xlm-roberta"})), Ok("xlm-roberta"));
        assert_eq!(detect(&json!({"architectures": ["DistilBertForMaskedLM"]})), Ok("distilbert"));
        assert_eq!(detect(&json!({"architectures": ["RobertaModel"]})), Ok("roberta"));
        assert_eq!(detect(&json!({"architectures": ["ModernBertForMaskedLM"]})), Ok("modernbert"));
        assert_eq!(detect(&json!({"architectures": ["DebertaV2ForMaskedLM"]})), Ok("deberta-v2"));
        assert_eq!(detect(&json!({"hidden_size": 8})), Ok("bert"));
        // Every listed family parses under its model_type, as itself.
        for family in families() {
            let parsed = FamilyConfigs::parse(family.model_type, &json!({})).unwrap();
            assert_eq!(parsed.info(), family, "{}", family.model_type);
        }
        // Every family's own class names detect as that family, whichever prefixes others have.
        for family in families() {
            for class in ["ForSequenceClassification", "ForMaskedLM", "Model"] {
                let name = format!("{}{class}", family.architecture);
                assert_eq!(detect(&json!({"architectures": [name]})), Ok(family.model_type), "{name}");
            }
        }
        let err = detect(&json!({"model_type": "gpt2"})).unwrap_err();
        assert!(err.contains("gpt2") && err.contains("\"distilbert\""), "{err}");
    }

    #[test]
    fn every_family_is_listed_once() {
        let mut types: Vec<&str> = families().iter().map(|f| f.model_type).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), families().len());
    }
}
