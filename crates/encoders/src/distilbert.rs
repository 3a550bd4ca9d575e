//! DistilBERT (`modeling_distilbert.py`): its own names (`transformer.layer.N.attention.q_lin`,
//! `sa_layer_norm`, `ffn.lin1`, `output_layer_norm`), embeddings without token types, no
//! dropout after the attention's output projection, and a head of `pre_classifier`, ReLU,
//! dropout (`seq_classif_dropout`) and `classifier` on the first token. Its config has its own
//! key names (`dim`, `n_heads`, `n_layers`, `hidden_dim`, `dropout`, `activation`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use kernels::{Dropout, LayerNorm, add};
use lora_adapter::{AdaptableModel, LoraLinear};
use serde::{Deserialize, Serialize};

use crate::activation::{Activation, activate};
use crate::attention::attend;
use crate::config::{check_dropouts, check_heads};
use crate::embeddings::{BertEmbeddings, EmbeddingSpec, Positions};
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo, HeadConfig};
use crate::input::{EncoderInput, attention_bias, first_token};
use crate::weights::{Key, Weights};

/// `DistilBertConfig`, with transformers' names and defaults (distilbert-base-uncased's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistilBertConfig {
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// Fixed sinusoidal position embeddings when freshly initialised.
    pub sinusoidal_pos_embds: bool,
    pub n_layers: usize,
    pub n_heads: usize,
    pub dim: usize,
    pub hidden_dim: usize,
    pub dropout: f64,
    pub attention_dropout: f64,
    pub activation: String,
    pub initializer_range: f64,
    /// The dropout before the classifier.
    pub seq_classif_dropout: f64,
    pub pad_token_id: usize,
    #[serde(flatten)]
    pub head: HeadConfig,
}

impl Default for DistilBertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            max_position_embeddings: 512,
            sinusoidal_pos_embds: false,
            n_layers: 6,
            n_heads: 12,
            dim: 768,
            hidden_dim: 3072,
            dropout: 0.1,
            attention_dropout: 0.1,
            activation: "gelu".into(),
            initializer_range: 0.02,
            seq_classif_dropout: 0.2,
            pad_token_id: 0,
            head: HeadConfig::default(),
        }
    }
}

impl FamilyConfig for DistilBertConfig {
    fn labels(&self) -> &HeadConfig {
        &self.head
    }

    fn labels_mut(&mut self) -> &mut HeadConfig {
        &mut self.head
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn initializer_range(&self) -> f64 {
        self.initializer_range
    }

    fn max_text_positions(&self) -> usize {
        self.max_position_embeddings
    }

    fn validate(&self) -> std::result::Result<(), crate::error::ConfigError> {
        check_heads(self.dim, self.n_heads, "dim", "n_heads")?;
        Activation::named("activation", &self.activation)?;
        check_dropouts(&[
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("seq_classif_dropout", self.seq_classif_dropout),
        ])
    }
}

/// DistilBERT's LayerNorms use 1e-12, whatever the file says (transformers hard-codes it).
const LAYER_NORM_EPS: f64 = 1e-12;

/// `MultiHeadSelfAttention`: q/k/v projections, scaled dot-product attention, `out_lin`.
#[derive(Module, Debug)]
pub struct MultiHeadSelfAttention<B: Backend> {
    pub q_lin: LoraLinear<B>,
    pub k_lin: LoraLinear<B>,
    pub v_lin: LoraLinear<B>,
    pub out_lin: LoraLinear<B>,
    pub dropout: Dropout,
    pub n_heads: usize,
}

impl<B: Backend> MultiHeadSelfAttention<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &DistilBertConfig) -> Result<Self> {
        let h = config.dim;
        Ok(Self {
            q_lin: w.linear(&at.pp("q_lin"), h, h)?,
            k_lin: w.linear(&at.pp("k_lin"), h, h)?,
            v_lin: w.linear(&at.pp("v_lin"), h, h)?,
            out_lin: w.linear(&at.pp("out_lin"), h, h)?,
            dropout: Dropout::new(config.attention_dropout),
            n_heads: config.n_heads,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, dim]`, mask_bias: `[batch, 1, 1, seq]`, output: `[batch, seq, dim]`
    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [_, _, dim] = hidden.dims();
        let q = self.q_lin.forward(hidden.clone()) / ((dim / self.n_heads) as f64).sqrt();
        let k = self.k_lin.forward(hidden.clone());
        let v = self.v_lin.forward(hidden);
        self.out_lin.forward(attend(q, k, v, mask_bias, self.n_heads, &self.dropout))
    }
}

/// `FFN`: lin1, the activation, lin2, dropout.
#[derive(Module, Debug)]
pub struct Ffn<B: Backend> {
    pub lin1: LoraLinear<B>,
    pub lin2: LoraLinear<B>,
    pub dropout: Dropout,
    pub activation: Activation,
}

/// `TransformerBlock`: attention, residual and `sa_layer_norm`; feed-forward, residual and
/// `output_layer_norm`.
#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    pub attention: MultiHeadSelfAttention<B>,
    pub sa_layer_norm: LayerNorm<B>,
    pub ffn: Ffn<B>,
    pub output_layer_norm: LayerNorm<B>,
}

impl<B: Backend> TransformerBlock<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &DistilBertConfig, activation: Activation) -> Result<Self> {
        let (h, eps) = (config.dim, LAYER_NORM_EPS);
        let ffn = at.pp("ffn");
        Ok(Self {
            attention: MultiHeadSelfAttention::load(w, &at.pp("attention"), config)?,
            sa_layer_norm: w.layer_norm(&at.pp("sa_layer_norm"), h, eps)?,
            ffn: Ffn {
                lin1: w.linear(&ffn.pp("lin1"), h, config.hidden_dim)?,
                lin2: w.linear(&ffn.pp("lin2"), config.hidden_dim, h)?,
                dropout: Dropout::new(config.dropout),
                activation,
            },
            output_layer_norm: w.layer_norm(&at.pp("output_layer_norm"), h, eps)?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let attended = self.sa_layer_norm.forward(add(self.attention.forward(x.clone(), mask_bias), x));
        let f = &self.ffn;
        let out = f.dropout.forward(f.lin2.forward(activate(f.activation, f.lin1.forward(attended.clone()))));
        self.output_layer_norm.forward(add(out, attended))
    }
}

/// `Transformer`: the stack of blocks.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    pub layer: Vec<TransformerBlock<B>>,
}

/// `DistilBertModel`.
#[derive(Module, Debug)]
pub struct DistilBertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub transformer: Transformer<B>,
}

impl<B: Backend> DistilBertModel<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &DistilBertConfig) -> Result<Self> {
        let activation =
            Activation::named("activation", &config.activation).map_err(crate::EncoderError::invalid_config)?;
        let layers = at.pp("transformer").pp("layer");
        let layer = (0..config.n_layers)
            .map(|i| TransformerBlock::load(w, &layers.pp(i), config, activation))
            .collect::<Result<_>>()?;
        let spec = EmbeddingSpec {
            vocab_size: config.vocab_size,
            width: config.dim,
            max_position_embeddings: config.max_position_embeddings,
            type_vocab_size: 0,
            pad_token_id: config.pad_token_id,
            positions: Positions::FromZero,
            sinusoidal: config.sinusoidal_pos_embds,
            layer_norm_eps: LAYER_NORM_EPS,
            dropout: config.dropout,
        };
        Ok(Self {
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), &spec)?,
            transformer: Transformer { layer },
        })
    }

    /// `[batch, seq, dim]`.
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let hidden = self.embeddings.forward(input.input_ids, input.token_type_ids);
        self.transformer.layer.iter().fold(hidden, |hidden, layer| layer.forward(hidden, mask_bias.clone()))
    }
}

/// `DistilBertForSequenceClassification`.
#[derive(Module, Debug)]
pub struct DistilBertForSequenceClassification<B: Backend> {
    pub distilbert: DistilBertModel<B>,
    pub pre_classifier: LoraLinear<B>,
    pub classifier: LoraLinear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> DistilBertForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &DistilBertConfig) -> Result<Self> {
        let h = config.dim;
        Ok(Self {
            distilbert: DistilBertModel::load(w, &Key::root().pp("distilbert"), config)?,
            pre_classifier: w.linear(&Key::root().pp("pre_classifier"), h, h)?,
            classifier: w.output_linear(&Key::root().pp("classifier"), h, config.head.num_labels(), true)?,
            dropout: Dropout::new(config.seq_classif_dropout),
        })
    }
}

impl<B: Backend> AdaptableModel<B> for TransformerBlock<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        let attention = &mut self.attention;
        f(&mut attention.q_lin);
        f(&mut attention.k_lin);
        f(&mut attention.v_lin);
        f(&mut attention.out_lin);
        f(&mut self.ffn.lin1);
        f(&mut self.ffn.lin2);
    }
}

impl<B: Backend> AdaptableModel<B> for DistilBertForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.distilbert.transformer.layer.each_linear(f);
        f(&mut self.pre_classifier);
        f(&mut self.classifier);
    }
}

impl<B: Backend> Classifier<B> for DistilBertForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        let pooled = relu(self.pre_classifier.forward(first_token(self.distilbert.forward(input))));
        self.classifier.forward(self.dropout.forward(pooled))
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.distilbert.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.dims()[1]
    }
}

/// DistilBERT.
#[derive(Debug, Clone, Copy)]
pub struct DistilBert;

impl Family for DistilBert {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "distilbert",
        architecture: "DistilBert",
        class: "DistilBertForSequenceClassification",
        base_model_prefix: "distilbert",
        default_targets: Err(
            "its attention linears are q_lin, k_lin, v_lin, out_lin; the usual choice is [\"q_lin\", \"v_lin\"]",
        ),
        unused_keys: &["vocab_transform.", "vocab_layer_norm.", "vocab_projector."],
        head: &["pre_classifier.", "classifier."],
        aliases: &[
            ("hidden_dropout_prob", "dropout"),
            ("attention_probs_dropout_prob", "attention_dropout"),
            ("classifier_dropout", "seq_classif_dropout"),
            ("hidden_size", "dim"),
            ("num_attention_heads", "n_heads"),
            ("num_hidden_layers", "n_layers"),
        ],
        tokenizer_models: &["WordPiece"],
    };
    type Config = DistilBertConfig;
    type Model<B: Backend> = DistilBertForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<DistilBertConfig, crate::error::ConfigError> {
        let config: DistilBertConfig = serde_json::from_value(json.clone())?;
        config.validate()?;
        Ok(config)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &DistilBertConfig) -> Result<Self::Model<B>> {
        DistilBertForSequenceClassification::load(w, config)
    }
}
