//! `SequenceClassifier`: a `...ForSequenceClassification` of any family this crate builds, the
//! one type the program trains, evaluates and saves.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::checkpoint::Checkpoint;
use crate::config::BertConfig;
use crate::distilbert::DistilBertForSequenceClassification;
use crate::electra::ElectraForSequenceClassification;
use crate::error::Result;
use crate::family::Family;
use crate::model::{BertForSequenceClassification, BertInput};
use crate::roberta::RobertaForSequenceClassification;
use crate::weights::{LoadReport, Weights};

// One model per process, held once: boxing the larger variants would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum SequenceClassifier<B: Backend> {
    Bert(BertForSequenceClassification<B>),
    /// RoBERTa and XLM-RoBERTa.
    Roberta(RobertaForSequenceClassification<B>),
    DistilBert(DistilBertForSequenceClassification<B>),
    Electra(ElectraForSequenceClassification<B>),
}

impl<B: Backend> SequenceClassifier<B> {
    /// The model `config.family` names, its tensors from `w`.
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        Ok(match config.family {
            Family::Bert => Self::Bert(BertForSequenceClassification::load(w, config)?),
            Family::Roberta | Family::XlmRoberta => Self::Roberta(RobertaForSequenceClassification::load(w, config)?),
            Family::DistilBert => Self::DistilBert(DistilBertForSequenceClassification::load(w, config)?),
            Family::Electra => Self::Electra(ElectraForSequenceClassification::load(w, config)?),
        })
    }

    /// A model of `config` with every weight drawn as transformers initialises it.
    pub fn random(config: &BertConfig, device: &B::Device) -> Self {
        Weights::build_random(config.initializer_range, device, |w| Self::load(w, config))
    }

    /// Loads a checkpoint; a missing classification head is initialised (and listed in the
    /// report), as transformers does; any other missing, unexpected or mis-shaped tensor is an
    /// error.
    pub fn from_checkpoint(
        config: &BertConfig,
        checkpoint: Checkpoint,
        device: &B::Device,
    ) -> Result<(Self, LoadReport)> {
        let head: &[&str] = match config.family {
            Family::DistilBert => &["pre_classifier.", "classifier."],
            _ => &["classifier."],
        };
        Weights::build_from_checkpoint(checkpoint, config.initializer_range, head, device, |w| Self::load(w, config))
    }

    /// `[batch, num_labels]` logits.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 2> {
        match self {
            Self::Bert(m) => m.forward(input),
            Self::Roberta(m) => m.forward(input),
            Self::DistilBert(m) => m.forward(input),
            Self::Electra(m) => m.forward(input),
        }
    }

    /// The encoder's last hidden state, `[batch, seq, hidden]`: what the head reads.
    pub fn last_hidden_state(&self, input: BertInput<B>) -> Tensor<B, 3> {
        match self {
            Self::Bert(m) => m.bert.forward(input).last_hidden_state,
            Self::Roberta(m) => m.roberta.forward(input),
            Self::DistilBert(m) => m.distilbert.forward(input),
            Self::Electra(m) => m.electra.forward(input),
        }
    }

    /// Rows of the output layer: the number of labels it was built for.
    pub fn num_labels(&self) -> usize {
        let output = match self {
            Self::Bert(m) => &m.classifier,
            Self::Roberta(m) => &m.classifier.out_proj,
            Self::DistilBert(m) => &m.classifier,
            Self::Electra(m) => &m.classifier.out_proj,
        };
        output.dims()[1]
    }

    /// The BERT model inside, if this is one.
    pub fn as_bert(&self) -> Option<&BertForSequenceClassification<B>> {
        match self {
            Self::Bert(m) => Some(m),
            _ => None,
        }
    }
}

impl<B: Backend> AdaptableModel<B> for SequenceClassifier<B> {
    /// Names as in PEFT's view of the transformers model (`bert.encoder.layer.0.attention.self.query`,
    /// `roberta.encoder...`, `distilbert.transformer.layer.0.attention.q_lin`, `classifier.out_proj`).
    fn visit_linears(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        match self {
            Self::Bert(m) => m.visit_linears(f),
            Self::Roberta(m) => m.visit_linears(f),
            Self::DistilBert(m) => m.visit_linears(f),
            Self::Electra(m) => m.visit_linears(f),
        }
    }
}
