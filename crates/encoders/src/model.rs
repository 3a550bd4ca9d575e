//! BERT: `BertModel` (embeddings, encoder, pooler) and `BertForSequenceClassification`, the
//! family's plug-in ([`Bert`]); and what the families share: the batch ([`EncoderInput`]), the
//! additive attention mask, first-token pooling and the two-layer head of RoBERTa and ELECTRA.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kernels::Dropout;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::config::BertConfig;
use crate::embeddings::{BertEmbeddings, EmbeddingSpec};
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyInfo};
use crate::weights::{Key, Weights};

/// A padded batch, with Hugging Face's field names.
///
/// # Shapes
/// - each field: `[batch, seq]`; `attention_mask` is 1 for real tokens and 0 for padding
#[derive(Debug, Clone)]
pub struct EncoderInput<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2, Int>,
    pub token_type_ids: Tensor<B, 2, Int>,
}

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

/// The two-layer head of RoBERTa (`RobertaClassificationHead`: tanh) and ELECTRA
/// (`ElectraClassificationHead`: GELU, the exact one whatever `hidden_act` says, as
/// transformers builds it): dropout, dense, the activation, dropout, out_proj, on the first token.
#[derive(Module, Debug)]
pub struct ClassificationHead<B: Backend> {
    pub dense: LoraLinear<B>,
    pub dropout: Dropout,
    pub out_proj: LoraLinear<B>,
    pub activation: HeadActivation,
}

/// The activation between a [`ClassificationHead`]'s two linears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadActivation {
    Tanh,
    Gelu,
}

impl<B: Backend> ClassificationHead<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig, activation: HeadActivation) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            dense: w.linear(&at.pp("dense"), h, h)?,
            dropout: Dropout::new(config.classifier_dropout()),
            out_proj: w.output_linear(&at.pp("out_proj"), h, config.num_labels(), true)?,
            activation,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, output: `[batch, num_labels]`
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let x = self.dense.forward(self.dropout.forward(first_token(hidden)));
        let x = match self.activation {
            HeadActivation::Tanh => x.tanh(),
            HeadActivation::Gelu => kernels::gelu(x),
        };
        self.out_proj.forward(self.dropout.forward(x))
    }
}

impl<B: Backend> AdaptableModel<B> for ClassificationHead<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        f(&mut self.dense);
        f(&mut self.out_proj);
    }
}

/// The first token's hidden state (`[CLS]`, `<s>`), as the heads read it: `hidden[:, 0]`.
///
/// # Shapes
/// - hidden: `[batch, seq, hidden]`, output: `[batch, hidden]`
pub fn first_token<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, width] = hidden.dims();
    hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width])
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
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), &EmbeddingSpec::bert(config, h))?,
            encoder: BertEncoder::load(w, &at.pp("encoder"), config)?,
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
/// `(1 - mask) * finfo(float32).min`, shaped to broadcast over heads and query positions (the
/// attention's softmax adds it; see [`kernels::masked_softmax`]).
///
/// # Shapes
/// - attention_mask: `[batch, seq]`, output: `[batch, 1, 1, seq]`
pub fn attention_bias<B: Backend>(attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 4> {
    let [batch, seq] = attention_mask.dims();
    let mask = attention_mask.float();
    (mask.neg() + 1.0).mul_scalar(f32::MIN).reshape([batch, 1, 1, seq])
}

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
