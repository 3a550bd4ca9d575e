//! BERT: `BertModel` (embeddings, encoder, pooler) and `BertForSequenceClassification`, the
//! family's plug-in ([`Bert`]).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::Dropout;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyInfo};
use crate::input::{EncoderInput, attention_bias, first_token};
use crate::weights::{Key, Weights};

/// What `BertModel` computes.
#[derive(Debug, Clone)]
pub struct BertModelOutput<B: Backend> {
    /// `[batch, seq, hidden]`: after the embeddings' LayerNorm (transformers' `hidden_states[0]`).
    pub embedding_output: Tensor<B, 3>,
    /// `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// `[batch, hidden]`: `tanh(dense(h[:, 0]))`.
    pub pooler_output: Tensor<B, 2>,
}

/// `BertPooler`: `tanh(dense(h[:, 0]))`.
#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: LoraLinear<B>,
}

impl<B: Backend> BertPooler<B> {
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, output: `[batch, hidden]`
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        self.dense.forward(first_token(hidden)).tanh()
    }
}

/// `BertModel`.
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: BertPooler<B>,
}

impl<B: Backend> BertModel<B> {
    /// Builds the model under `at` ([`Key::root`] for the top level).
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), &config.embedding_spec(h))?,
            encoder: BertEncoder::load(w, &at.pp("encoder"), &config.encoder_spec()?)?,
            pooler: BertPooler { dense: w.linear(&at.pp("pooler").pp("dense"), h, h)? },
        })
    }

    pub fn forward(&self, input: EncoderInput<B>) -> BertModelOutput<B> {
        let mask_bias = attention_bias(input.attention_mask);
        let embedding_output = self.embeddings.forward(input.input_ids, input.token_type_ids);
        let last_hidden_state = self.encoder.forward(embedding_output.clone(), mask_bias);
        let pooler_output = self.pooler.forward(last_hidden_state.clone());
        BertModelOutput { embedding_output, last_hidden_state, pooler_output }
    }
}

/// The additive attention mask of transformers' `get_extended_attention_mask`:
impl<B: Backend> AdaptableModel<B> for BertModel<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.encoder.each_linear(f);
        f(&mut self.pooler.dense);
    }
}

/// `BertForSequenceClassification`: pooler output, dropout, classifier.
#[derive(Module, Debug)]
pub struct BertForSequenceClassification<B: Backend> {
    pub bert: BertModel<B>,
    pub dropout: Dropout,
    pub classifier: LoraLinear<B>,
}

impl<B: Backend> BertForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            bert: BertModel::load(w, &Key::root().pp("bert"), config)?,
            dropout: Dropout::new(config.classifier_dropout()),
            classifier: w.output_linear(
                &Key::root().pp("classifier"),
                config.hidden_size,
                config.num_labels(),
                true,
            )?,
        })
    }

    /// The encoder's outputs and the logits.
    pub fn forward_all(&self, input: EncoderInput<B>) -> (BertModelOutput<B>, Tensor<B, 2>) {
        let out = self.bert.forward(input);
        let logits = self.classifier.forward(self.dropout.forward(out.pooler_output.clone()));
        (out, logits)
    }
}

impl<B: Backend> AdaptableModel<B> for BertForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.bert.each_linear(f);
        f(&mut self.classifier);
    }
}

impl<B: Backend> Classifier<B> for BertForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        self.forward_all(input).1
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.bert.forward(input).last_hidden_state
    }

    fn num_labels(&self) -> usize {
        self.classifier.dims()[1]
    }
}

/// BERT (and every BERT-architecture checkpoint, such as all-MiniLM-L6-v2).
#[derive(Debug, Clone, Copy)]
pub struct Bert;

impl Family for Bert {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "bert",
        architecture: "Bert",
        class: "BertForSequenceClassification",
        base_model_prefix: "bert",
        default_targets: Ok(&["query", "value"]),
        unused_keys: &["cls."],
        head: &["classifier."],
        aliases: &[],
        tokenizer_models: &["WordPiece"],
    };
    type Config = BertConfig;
    type Model<B: Backend> = BertForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<BertConfig, crate::error::ConfigError> {
        BertConfig::from_json(json)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &BertConfig) -> Result<Self::Model<B>> {
        BertForSequenceClassification::load(w, config)
    }
}
