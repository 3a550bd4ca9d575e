//! The one list of families, keyed by `model_type` as transformers' Auto mappings are: a
//! family's config ([`FamilyConfigs`]) and its model ([`AutoModel`]), whichever `config.json`
//! names. Adding a family is a file of its own and one line of the list in [`families!`]'s
//! invocation below; every `match` over the families is generated from that list.

// One model per process, held once (and its record, which the `Module` derive writes beside
// it): boxing the larger variants would save nothing.
#![allow(clippy::large_enum_variant)]

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::bert::{Bert, BertForSequenceClassification};
use crate::error::{ConfigError, Result};
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo};
use crate::input::EncoderInput;
use crate::weights::Weights;

/// Writes, from one list of `Variant => FamilyType` lines, everything that names every family:
/// [`families`], the [`FamilyConfigs`] and [`AutoModel`] enums (a variant per family, holding
/// the family's `Config` and `Model`) and each `match` over them. Burn's `Module` derive needs a
/// concrete enum (no `Box<dyn Module>`), hence a macro rather than a trait object.
macro_rules! families {
    ($($variant:ident => $family:ty),+ $(,)?) => {
        /// Every family. Their order does not matter: a config without `model_type` is detected
        /// by the longest `architectures` prefix that matches.
        pub fn families() -> [FamilyInfo; [$(stringify!($variant)),+].len()] {
            [$(<$family as Family>::INFO),+]
        }

        /// A family's parsed config, as the family reads it.
        #[derive(Debug, Clone, PartialEq)]
        pub enum FamilyConfigs {
            $($variant(<$family as Family>::Config)),+
        }

        impl FamilyConfigs {
            /// The config of the family `model_type` names, from the text of its `config.json`.
            pub fn parse(model_type: &str, json: &serde_json::Value) -> std::result::Result<Self, ConfigError> {
                $(
                    if model_type == <$family as Family>::INFO.model_type {
                        return Ok(Self::$variant(<$family as Family>::config(json)?));
                    }
                )+
                Err(unsupported(model_type).into())
            }

            pub fn info(&self) -> FamilyInfo {
                match self {
                    $(Self::$variant(_) => <$family as Family>::INFO),+
                }
            }

            /// What every family's config answers.
            pub fn get(&self) -> &dyn FamilyConfig {
                match self {
                    $(Self::$variant(c) => c),+
                }
            }

            pub fn get_mut(&mut self) -> &mut dyn FamilyConfig {
                match self {
                    $(Self::$variant(c) => c),+
                }
            }

            /// The config as JSON with the family's own key names (what a change made to it shows).
            pub fn to_value(&self) -> serde_json::Value {
                let value = match self {
                    $(Self::$variant(c) => serde_json::to_value(c)),+
                };
                value.unwrap_or_default()
            }
        }

        /// The `...ForSequenceClassification` of whichever family a config names: the type the
        /// program holds, since the family is known only at run time.
        #[derive(Module, Debug)]
        pub enum AutoModel<B: Backend> {
            $($variant(<$family as Family>::Model<B>)),+
        }

        impl<B: Backend> AutoModel<B> {
            /// The model `config` describes, its tensors from `w`.
            pub fn load(w: &mut Weights<B>, config: &FamilyConfigs) -> Result<Self> {
                Ok(match config {
                    $(FamilyConfigs::$variant(c) => Self::$variant(<$family as Family>::load(w, c)?)),+
                })
            }

            fn get(&self) -> &dyn ClassifierRef<B> {
                match self {
                    $(Self::$variant(m) => m),+
                }
            }

            fn get_mut(&mut self) -> &mut dyn AdaptableModel<B> {
                match self {
                    $(Self::$variant(m) => m),+
                }
            }
        }
    };
}

families! {
    Bert => crate::bert::Bert,
    Roberta => crate::roberta::Roberta,
    XlmRoberta => crate::roberta::XlmRoberta,
    DistilBert => crate::distilbert::DistilBert,
    Electra => crate::electra::Electra,
    ModernBert => crate::modernbert::ModernBert,
    DebertaV2 => crate::deberta::DebertaV2,
    Camembert => crate::camembert::Camembert,
    MPNet => crate::mpnet::MPNet,
}

/// The family's `model_type`: from `model_type`, else the first of `architectures`
/// (`RobertaForMaskedLM` -> `roberta`), else BERT (old BERT configs name neither).
pub(crate) fn detect(config: &serde_json::Value) -> std::result::Result<&'static str, ConfigError> {
    if let Some(model_type) = config.get("model_type").and_then(|v| v.as_str()) {
        return families()
            .iter()
            .map(|f| f.model_type)
            .find(|t| *t == model_type)
            .ok_or_else(|| unsupported(model_type).into());
    }
    let architecture = config.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str());
    let Some(architecture) = architecture else { return Ok(Bert::INFO.model_type) };
    // The longest matching prefix, so that no family's place in the list decides.
    families()
        .iter()
        .filter(|f| architecture.starts_with(f.architecture))
        .max_by_key(|f| f.architecture.len())
        .map(|f| f.model_type)
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "architecture {architecture:?} is not a supported encoder; expected one of {}",
                list()
            ))
        })
}

fn unsupported(model_type: &str) -> String {
    format!("model_type {model_type:?} is not supported; expected one of {}", list())
}

fn list() -> String {
    let mut types: Vec<String> = families().iter().map(|f| format!("{:?}", f.model_type)).collect();
    types.sort();
    types.join(", ")
}

impl<B: Backend> AutoModel<B> {
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
        self.get_mut().each_linear(f);
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
        assert_eq!(detect(&json!({"model_type": "xlm-roberta"})).ok(), Some("xlm-roberta"));
        assert_eq!(detect(&json!({"architectures": ["DistilBertForMaskedLM"]})).ok(), Some("distilbert"));
        assert_eq!(detect(&json!({"architectures": ["RobertaModel"]})).ok(), Some("roberta"));
        assert_eq!(detect(&json!({"architectures": ["ModernBertForMaskedLM"]})).ok(), Some("modernbert"));
        assert_eq!(detect(&json!({"architectures": ["DebertaV2ForMaskedLM"]})).ok(), Some("deberta-v2"));
        assert_eq!(detect(&json!({"hidden_size": 8})).ok(), Some("bert"));
        // Every listed family parses under its model_type, as itself.
        for family in families() {
            let parsed = FamilyConfigs::parse(family.model_type, &json!({})).unwrap();
            assert_eq!(parsed.info(), family, "{}", family.model_type);
        }
        // Every family's own class names detect as that family, whichever prefixes others have.
        for family in families() {
            for class in ["ForSequenceClassification", "ForMaskedLM", "Model"] {
                let name = format!("{}{class}", family.architecture);
                assert_eq!(detect(&json!({"architectures": [name]})).ok(), Some(family.model_type), "{name}");
            }
        }
        let err = detect(&json!({"model_type": "gpt2"})).unwrap_err().to_string();
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
