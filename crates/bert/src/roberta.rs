//! RoBERTa and XLM-RoBERTa (`modeling_roberta.py`, `modeling_xlm_roberta.py`: the same model
//! and names): BERT's encoder under `roberta.`, embeddings whose positions start after the
//! padding index ([`crate::embeddings::Positions`]), no pooler, and a two-layer head on the
//! first token.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::LoraLinear;

use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::model::{BertInput, ClassificationHead, HeadActivation, attention_bias};
use crate::weights::{Key, Weights};

/// `RobertaModel` without its pooler (`add_pooling_layer=False`, as the classifier builds it).
#[derive(Module, Debug)]
pub struct RobertaModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
}

impl<B: Backend> RobertaModel<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), config)?,
            encoder: BertEncoder::load(w, &at.pp("encoder"), config)?,
        })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let embedded = self.embeddings.forward(input.input_ids, input.token_type_ids);
        self.encoder.forward(embedded, mask_bias)
    }
}

/// `RobertaForSequenceClassification` (and `XLMRobertaForSequenceClassification`).
#[derive(Module, Debug)]
pub struct RobertaForSequenceClassification<B: Backend> {
    pub roberta: RobertaModel<B>,
    pub classifier: ClassificationHead<B>,
}

impl<B: Backend> RobertaForSequenceClassification<B> {
    /// Checkpoint keys after normalisation: the encoder's without `roberta.`, the head's under
    /// `classifier.` (see [`crate::checkpoint`]).
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            roberta: RobertaModel::load(w, &Key::root(), config)?,
            classifier: ClassificationHead::load(w, &Key::root().pp("classifier"), config, HeadActivation::Tanh)?,
        })
    }

    /// `[batch, num_labels]` logits.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 2> {
        self.classifier.forward(self.roberta.forward(input))
    }

    /// Every linear under its name in PEFT's view of the model.
    pub fn visit_linears(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        self.roberta.encoder.visit_linears(&Key::root().pp("roberta").pp("encoder"), f);
        self.classifier.visit_linears(&Key::root().pp("classifier"), f);
    }
}
