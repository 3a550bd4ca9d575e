//! `BertEncoder`: the stack of `BertLayer`s (attention, intermediate, output).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::{Dropout, LayerNorm, add};
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::activation::{Activation, activate};
use crate::attention::BertAttention;
use crate::error::Result;
use crate::spec::EncoderSpec;
use crate::weights::{Key, Weights};

/// `BertIntermediate`: dense to `intermediate_size`, then the activation.
#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: LoraLinear<B>,
    pub activation: Activation,
}

impl<B: Backend> BertIntermediate<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        let dense = w.linear(&at.pp("dense"), spec.hidden_size, spec.intermediate_size)?;
        Ok(Self { dense, activation: spec.activation })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        activate(self.activation, self.dense.forward(hidden))
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
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        Ok(Self {
            dense: w.linear(&at.pp("dense"), spec.intermediate_size, spec.hidden_size)?,
            layer_norm: w.layer_norm(&at.pp("LayerNorm"), spec.hidden_size, spec.layer_norm_eps)?,
            dropout: Dropout::new(spec.hidden_dropout),
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
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        Ok(Self {
            attention: BertAttention::load(w, &at.pp("attention"), spec)?,
            intermediate: BertIntermediate::load(w, &at.pp("intermediate"), spec)?,
            output: BertOutput::load(w, &at.pp("output"), spec)?,
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
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        let layer = (0..spec.num_hidden_layers)
            .map(|i| BertLayer::load(w, &at.pp("layer").pp(i), spec))
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
