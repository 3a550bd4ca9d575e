//! The two-layer classification head that RoBERTa and ELECTRA share, built from sizes.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::Dropout;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::error::Result;
use crate::input::first_token;
use crate::weights::{Key, Weights};

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
    /// A head over `hidden`-wide states with `labels` outputs and dropout `dropout` (the
    /// config's `classifier_dropout`, else `hidden_dropout_prob`).
    pub fn load(
        w: &mut Weights<B>,
        at: &Key,
        (hidden, labels): (usize, usize),
        dropout: f64,
        activation: HeadActivation,
    ) -> Result<Self> {
        Ok(Self {
            dense: w.linear(&at.pp("dense"), hidden, hidden)?,
            dropout: Dropout::new(dropout),
            out_proj: w.output_linear(&at.pp("out_proj"), hidden, labels, true)?,
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
