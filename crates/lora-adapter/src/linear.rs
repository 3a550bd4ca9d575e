//! A linear layer that can carry a LoRA adapter: `y = x W + b + (dropout(x) A B) * scaling`.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::{Dropout, linear};

/// A linear layer with an optional LoRA adapter beside it.
///
/// Without an adapter it computes exactly what `burn::nn::Linear` computes. The field names
/// are the checkpoint's (`weight`, `bias`), so a model's loader needs no remapping.
///
/// # Shapes
/// - weight: `[d_input, d_output]` (Burn's layout: the transpose of PyTorch's `[out, in]`)
/// - input: `[..., d_input]`, output: `[..., d_output]`
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub adapter: Option<LoraAdapter<B>>,
}

/// The trainable low-rank pair of one wrapped linear.
///
/// # Shapes
/// - lora_A: `[d_input, r]` (PEFT saves its transpose, `[r, in]`)
/// - lora_B: `[r, d_output]` (PEFT saves `[out, r]`)
#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    pub lora_A: Param<Tensor<B, 2>>,
    pub lora_B: Param<Tensor<B, 2>>,
    /// `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA.
    pub scaling: f64,
    /// Applied to the adapter's input only; active only on an autodiff backend (training).
    pub dropout: Dropout,
}

impl<B: Backend> LoraLinear<B> {
    /// A plain linear from its parameters.
    pub fn new(weight: Param<Tensor<B, 2>>, bias: Option<Param<Tensor<B, 1>>>) -> Self {
        Self { weight, bias, adapter: None }
    }

    /// `[d_input, d_output]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.shape().dims()
    }

    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        match &self.adapter {
            None => linear(input, self.weight.val(), self.bias.as_ref().map(|b| b.val())),
            Some(adapter) => {
                let delta = adapter.forward(input.clone());
                linear(input, self.weight.val(), self.bias.as_ref().map(|b| b.val())) + delta
            }
        }
    }
}

impl<B: Backend> LoraAdapter<B> {
    /// The adapter's contribution, `dropout(x) A B * scaling`.
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let x = self.dropout.forward(input);
        let x = linear(x, self.lora_A.val(), None); // [..., r]
        linear(x, self.lora_B.val(), None) * self.scaling
    }

    pub fn rank(&self) -> usize {
        self.lora_A.shape().dims::<2>()[1]
    }
}

/// A model whose linears can take adapters. Implemented by the model crate, which lists its
/// linears under their checkpoint names (`bert.encoder.layer.0.attention.self.query`): the
/// names PEFT matches `target_modules` against and writes into saved adapters.
pub trait AdaptableModel<B: Backend> {
    /// Calls `f` once per linear, in a fixed order, with its full checkpoint name.
    fn visit_linears(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>));
}
