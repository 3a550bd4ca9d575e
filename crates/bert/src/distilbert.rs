//! DistilBERT (`modeling_distilbert.py`): its own names (`transformer.layer.N.attention.q_lin`,
//! `sa_layer_norm`, `ffn.lin1`, `output_layer_norm`), embeddings without token types, no
//! dropout after the attention's output projection, and a head of `pre_classifier`, ReLU,
//! dropout (`seq_classif_dropout`) and `classifier` on the first token.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use kernels::{Dropout, LayerNorm};
use lora_adapter::LoraLinear;

use crate::attention::attend;
use crate::config::{Activation, BertConfig};
use crate::embeddings::BertEmbeddings;
use crate::encoder::activate;
use crate::error::Result;
use crate::model::{BertInput, attention_bias, first_token};
use crate::weights::{Key, Weights};

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
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            q_lin: w.linear(&at.pp("q_lin"), h, h)?,
            k_lin: w.linear(&at.pp("k_lin"), h, h)?,
            v_lin: w.linear(&at.pp("v_lin"), h, h)?,
            out_lin: w.linear(&at.pp("out_lin"), h, h)?,
            dropout: Dropout::new(config.attention_probs_dropout_prob),
            n_heads: config.num_attention_heads,
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
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig, activation: Activation) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let ffn = at.pp("ffn");
        Ok(Self {
            attention: MultiHeadSelfAttention::load(w, &at.pp("attention"), config)?,
            sa_layer_norm: w.layer_norm(&at.pp("sa_layer_norm"), h, eps)?,
            ffn: Ffn {
                lin1: w.linear(&ffn.pp("lin1"), h, config.intermediate_size)?,
                lin2: w.linear(&ffn.pp("lin2"), config.intermediate_size, h)?,
                dropout: Dropout::new(config.hidden_dropout_prob),
                activation,
            },
            output_layer_norm: w.layer_norm(&at.pp("output_layer_norm"), h, eps)?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let attended = self.sa_layer_norm.forward(self.attention.forward(x.clone(), mask_bias) + x);
        let f = &self.ffn;
        let out = f.dropout.forward(f.lin2.forward(activate(f.activation, f.lin1.forward(attended.clone()))));
        self.output_layer_norm.forward(out + attended)
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
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let activation =
            config.activation().map_err(|message| crate::BertError::Config { path: "config.json".into(), message })?;
        let layers = at.pp("transformer").pp("layer");
        let layer = (0..config.num_hidden_layers)
            .map(|i| TransformerBlock::load(w, &layers.pp(i), config, activation))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), config)?,
            transformer: Transformer { layer },
        })
    }

    /// `[batch, seq, dim]`.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 3> {
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
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            distilbert: DistilBertModel::load(w, &Key::root(), config)?,
            pre_classifier: w.linear(&Key::root().pp("pre_classifier"), h, h)?,
            classifier: w.linear(&Key::root().pp("classifier"), h, config.num_labels())?,
            dropout: Dropout::new(config.classifier_dropout()),
        })
    }

    /// `[batch, num_labels]` logits.
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 2> {
        let pooled = relu(self.pre_classifier.forward(first_token(self.distilbert.forward(input))));
        self.classifier.forward(self.dropout.forward(pooled))
    }

    /// Every linear under its name in PEFT's view of the model.
    pub fn visit_linears(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        let layers = Key::root().pp("distilbert").pp("transformer").pp("layer");
        for (i, layer) in self.distilbert.transformer.layer.iter_mut().enumerate() {
            let at = layers.pp(i);
            let (attention, own) = (at.pp("attention"), &mut layer.attention);
            f(attention.pp("q_lin").as_str(), &mut own.q_lin);
            f(attention.pp("k_lin").as_str(), &mut own.k_lin);
            f(attention.pp("v_lin").as_str(), &mut own.v_lin);
            f(attention.pp("out_lin").as_str(), &mut own.out_lin);
            f(at.pp("ffn").pp("lin1").as_str(), &mut layer.ffn.lin1);
            f(at.pp("ffn").pp("lin2").as_str(), &mut layer.ffn.lin2);
        }
        f(Key::root().pp("pre_classifier").as_str(), &mut self.pre_classifier);
        f(Key::root().pp("classifier").as_str(), &mut self.classifier);
    }
}
