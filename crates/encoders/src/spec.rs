//! [`EncoderSpec`]: what BERT's shared layer blocks (`attention.rs`, `encoder.rs`) are built
//! from: sizes, rates and the activation, whichever family's config names them (BERT's keys,
//! MPNet's, DeBERTa's). The blocks know no family's config.

use crate::activation::Activation;

/// The sizes and rates of a stack of BERT-shaped layers (attention, intermediate, output).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSpec {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub layer_norm_eps: f64,
    /// After each dense layer (`hidden_dropout_prob`).
    pub hidden_dropout: f64,
    /// On the attention probabilities (`attention_probs_dropout_prob`).
    pub attention_dropout: f64,
    /// Of the intermediate layer (`hidden_act`).
    pub activation: Activation,
}
