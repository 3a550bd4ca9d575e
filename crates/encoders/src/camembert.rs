//! CamemBERT (`modeling_camembert.py`): RoBERTa's model, names and head under `roberta.` (the
//! French models almanach/camembert-base and its fine-tunes), read through [`Roberta`]'s config
//! and loader; a SentencePiece Unigram tokenizer with `<s> $A </s></s> $B </s>`.

use burn::tensor::backend::Backend;

use crate::config::BertConfig;
use crate::error::Result;
use crate::family::{Family, FamilyInfo};
use crate::roberta::{Roberta, RobertaForSequenceClassification};
use crate::weights::Weights;

/// CamemBERT.
#[derive(Debug, Clone, Copy)]
pub struct Camembert;

impl Family for Camembert {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "camembert",
        architecture: "Camembert",
        class: "CamembertForSequenceClassification",
        // PEFT 0.17 has no CamemBERT entry in its default targets (RoBERTa's are query, value).
        default_targets: Err(
            "its linears are RoBERTa's: query, key, value, attention.output.dense, intermediate.dense, output.dense (and classifier.dense); the usual choice is [\"query\", \"value\"]",
        ),
        tokenizer_models: &["Unigram"],
        ..Roberta::INFO
    };
    type Config = BertConfig;
    type Model<B: Backend> = RobertaForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<BertConfig, crate::error::ConfigError> {
        Roberta::config(json)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &BertConfig) -> Result<Self::Model<B>> {
        Roberta::load(w, config)
    }
}
