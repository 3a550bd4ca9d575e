//! ELECTRA (`modeling_electra.py`): BERT's embeddings and encoder under `electra.`, the
//! embeddings `embedding_size` wide and projected to `hidden_size` (`embeddings_project`) when
//! the two differ, no pooler, and a two-layer GELU head on the first token.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::{Dropout, gelu};
use lora_adapter::LoraLinear;

use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::model::{BertInput, attention_bias, first_token};
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

/// `ElectraClassificationHead`: dropout, dense, GELU (always the exact one, whatever
/// `hidden_act` says, as transformers builds it), dropout, out_proj, on the first token.
#[derive(Module, Debug)]
pub struct ElectraClassificationHead<B: Backend> {
    pub dense: LoraLinear<B>,
    pub dropout: Dropout,
    pub out_proj: LoraLinear<B>,
}

impl<B: Backend> ElectraClassificationHead<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            dense: w.linear(&at.pp("dense"), h, h)?,
            dropout: Dropout::new(config.classifier_dropout()),
            out_proj: w.linear(&at.pp("out_proj"), h, config.num_labels())?,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, output: `[batch, num_labels]`
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let x = self.dropout.forward(first_token(hidden));
        let x = self.dropout.forward(gelu(self.dense.forward(x)));
        self.out_proj.forward(x)
    }
}

/// `ElectraForSequenceClassification`.
#[derive(Module, Debug)]
pub struct ElectraForSequenceClassification<B: Backend> {
    pub electra: ElectraModel<B>,
    pub classifier: ElectraClassificationHead<B>,
}

impl<B: Backend> ElectraForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            electra: ElectraModel::load(w, &Key::root(), config)?,
            classifier: ElectraClassificationHead::load(w, &Key::root().pp("classifier"), config)?,
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
        let head = Key::root().pp("classifier");
        f(head.pp("dense").as_str(), &mut self.classifier.dense);
        f(head.pp("out_proj").as_str(), &mut self.classifier.out_proj);
    }
}
