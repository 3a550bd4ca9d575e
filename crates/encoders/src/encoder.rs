//! `BertEncoder`: the stack of `BertLayer`s (attention, intermediate, output).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, silu};
use burn::tensor::backend::Backend;
use kernels::{Dropout, LayerNorm, add, gelu};
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::attention::BertAttention;
use crate::config::{Activation, BertConfig};
use crate::error::Result;
use crate::weights::{Key, Weights};

/// `BertIntermediate`: dense to `intermediate_size`, then the activation.
#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: LoraLinear<B>,
    pub activation: Activation,
}

impl<B: Backend> BertIntermediate<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig, activation: Activation) -> Result<Self> {
        Ok(Self { dense: w.linear(&at.pp("dense"), config.hidden_size, config.intermediate_size)?, activation })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        activate(self.activation, self.dense.forward(hidden))
    }
}

/// `ACT2FN[hidden_act](x)`.
pub fn activate<B: Backend, const D: usize>(activation: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match activation {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => burn::tensor::activation::gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Silu => silu(x),
    }
}

/// `BertOutput`: dense back to `hidden_size`, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertOutput<B: Backend> {
    pub dense: LoraLinear<B>,
    /// Checkpoint key `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertOutput<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            dense: w.linear(&at.pp("dense"), config.intermediate_size, config.hidden_size)?,
            layer_norm: w.layer_norm(&at.pp("LayerNorm"), config.hidden_size, config.layer_norm_eps)?,
            dropout: Dropout::new(config.hidden_dropout_prob),
        })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.dropout.forward(self.dense.forward(hidden));
        self.layer_norm.forward(add(hidden, residual))
    }
}

/// `BertLayer`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> BertLayer<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig, activation: Activation) -> Result<Self> {
        Ok(Self {
            attention: BertAttention::load(w, &at.pp("attention"), config)?,
            intermediate: BertIntermediate::load(w, &at.pp("intermediate"), config, activation)?,
            output: BertOutput::load(w, &at.pp("output"), config)?,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, mask_bias: `[batch, 1, 1, seq]`
    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let attended = self.attention.forward(hidden, mask_bias);
        let intermediate = self.intermediate.forward(attended.clone());
        self.output.forward(intermediate, attended)
    }
}

/// `BertEncoder`.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

impl<B: Backend> BertEncoder<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let activation = config.activation().map_err(crate::EncoderError::invalid_config)?;
        let layer = (0..config.num_hidden_layers)
            .map(|i| BertLayer::load(w, &at.pp("layer").pp(i), config, activation))
            .collect::<Result<_>>()?;
        Ok(Self { layer })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        self.layer.iter().fold(hidden, |hidden, layer| layer.forward(hidden, mask_bias.clone()))
    }
}

impl<B: Backend> AdaptableModel<B> for BertLayer<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        let attention = &mut self.attention;
        f(&mut attention.self_attention.query);
        f(&mut attention.self_attention.key);
        f(&mut attention.self_attention.value);
        f(&mut attention.output.dense);
        f(&mut self.intermediate.dense);
        f(&mut self.output.dense);
    }
}

impl<B: Backend> AdaptableModel<B> for BertEncoder<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.layer.each_linear(f)
    }
}
