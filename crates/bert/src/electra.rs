//! ELECTRA (`modeling_electra.py`): BERT's embeddings and encoder under `electra.`, the
//! embeddings `embedding_size` wide and projected to `hidden_size` (`embeddings_project`) when
//! the two differ, no pooler, and a two-layer GELU head on the first token.

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

/// `ElectraModel`.
#[derive(Module, Debug)]
pub struct ElectraModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    /// Only when `embedding_size != hidden_size`.
    pub embeddings_project: Option<LoraLinear<B>>,
    pub encoder: BertEncoder<B>,
}

impl<B: Backend> ElectraModel<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let (width, h) = (config.embedding_width(), config.hidden_size);
        let embeddings = BertEmbeddings::load(w, &at.pp("embeddings"), config)?;
        let embeddings_project =
            if width != h { Some(w.linear(&at.pp("embeddings_project"), width, h)?) } else { None };
        Ok(Self { embeddings, embeddings_project, encoder: BertEncoder::load(w, &at.pp("encoder"), config)? })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let mut hidden = self.embeddings.forward(input.input_ids, input.token_type_ids);
        if let Some(project) = &self.embeddings_project {
            hidden = project.forward(hidden);
        }
        self.encoder.forward(hidden, mask_bias)
    }
}

/// `ElectraForSequenceClassification`.
#[derive(Module, Debug)]
pub struct ElectraForSequenceClassification<B: Backend> {
    pub electra: ElectraModel<B>,
    pub classifier: ClassificationHead<B>,
}

impl<B: Backend> ElectraForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            electra: ElectraModel::load(w, &Key::root(), config)?,
            classifier: ClassificationHead::load(w, &Key::root().pp("classifier"), config, HeadActivation::Gelu)?,
        })
    }

    /// `[batch, num_labels]` logits.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 2> {
        self.classifier.forward(self.electra.forward(input))
    }

    /// Every linear under its name in PEFT's view of the model.
    pub fn visit_linears(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        let electra = Key::root().pp("electra");
        if let Some(project) = self.electra.embeddings_project.as_mut() {
            f(electra.pp("embeddings_project").as_str(), project);
        }
        self.electra.encoder.visit_linears(&electra.pp("encoder"), f);
        self.classifier.visit_linears(&Key::root().pp("classifier"), f);
    }
}
