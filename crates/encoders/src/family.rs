//! What a model family is to the rest of the crate: a plug-in of one file that owns its config
//! (Hugging Face's key names), its `...ForSequenceClassification`, its checkpoint conventions
//! and PEFT's defaults for it. [`crate::registry`] lists the families; nothing else does.

use std::collections::BTreeMap;
use std::fmt::Debug;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::AdaptableModel;
use serde::{Deserialize, Serialize};

use crate::error::Result;
pub use crate::info::FamilyInfo;
use crate::input::EncoderInput;
use crate::labels::LabelSpace;
use crate::weights::Weights;

/// One encoder family: a unit type in the family's file, listed once in [`crate::registry`].
pub trait Family {
    const INFO: FamilyInfo;
    type Config: FamilyConfig;
    type Model<B: Backend>: Classifier<B>;

    /// The config from the text of a `config.json` (its family's names and defaults).
    fn config(json: &serde_json::Value) -> std::result::Result<Self::Config, crate::error::ConfigError>;

    /// The `...ForSequenceClassification`, its tensors asked of `w` by their PEFT names.
    fn load<B: Backend>(w: &mut Weights<B>, config: &Self::Config) -> Result<Self::Model<B>>;
}

/// What the rest of the crate reads from any family's config.
pub trait FamilyConfig: Debug + Send + Sync {
    /// The head's labels and task (`num_labels`, `id2label`, `problem_type`).
    fn labels(&self) -> &HeadConfig;
    fn labels_mut(&mut self) -> &mut HeadConfig;
    fn vocab_size(&self) -> usize;
    /// The standard deviation fresh weights are drawn with (`initializer_range`).
    fn initializer_range(&self) -> f64;
    /// Positions a tokenized text may fill.
    fn max_text_positions(&self) -> usize;
    /// The token id position ids count after (RoBERTa's `padding_idx`), for families that do.
    fn padding_idx(&self) -> Option<usize> {
        None
    }
    /// Checks what the model code relies on; the message names the offending key.
    fn validate(&self) -> std::result::Result<(), crate::error::ConfigError>;
}

/// A `...ForSequenceClassification` of any family: what the trainer, evaluation, prediction
/// and the benchmark run.
pub trait Classifier<B: Backend>: Module<B> + AdaptableModel<B> {
    /// `[batch, num_labels]` logits.
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2>;

    /// The encoder's last hidden state, `[batch, seq, hidden]`.
    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3>;

    /// Rows of the output layer: the number of labels it was built for.
    fn num_labels(&self) -> usize;
}

/// The keys of transformers' `PretrainedConfig` that describe the classification head; every
/// family's config holds them (flattened: they sit beside the family's own keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, usize>>,
    /// transformers' `problem_type` (`single_label_classification`,
    /// `multi_label_classification`, `regression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
}

impl HeadConfig {
    /// Labels of the classification head: `num_labels`, else the size of `id2label`, else 2
    /// (transformers' default).
    pub fn num_labels(&self) -> usize {
        self.num_labels.or_else(|| self.id2label.as_ref().map(BTreeMap::len)).unwrap_or(2)
    }

    /// `id2label` with transformers' `LABEL_i` for a head without names.
    pub fn id2label(&self) -> BTreeMap<String, String> {
        let n = self.num_labels();
        match &self.id2label {
            Some(names) if names.len() == n => names.clone(),
            _ => (0..n).map(|i| (i.to_string(), format!("LABEL_{i}"))).collect(),
        }
    }

    /// The head a task asks for, as `from_pretrained(..., num_labels=, id2label=, label2id=,
    /// problem_type=)` sets it.
    pub fn set(&mut self, labels: &LabelSpace) {
        self.num_labels = Some(labels.num_labels());
        self.id2label = Some(labels.id2label());
        self.label2id = None;
        self.problem_type = Some(labels.problem_type.to_string());
    }
}
