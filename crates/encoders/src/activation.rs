//! [`Activation`]: the feed-forward activations every family names by transformers' `ACT2FN`
//! keys, and [`activate`], which applies one.

use burn::tensor::Tensor;
use burn::tensor::activation::{relu, silu};
use burn::tensor::backend::Backend;
use kernels::gelu;

use crate::error::ConfigError;

/// The activation of the intermediate (feed-forward) layer, by transformers' `ACT2FN` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)` with erf (transformers' `"gelu"`).
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    /// The activation transformers' `ACT2FN[name]` gives; `key` is the config key that named it.
    pub fn named(key: &str, name: &str) -> std::result::Result<Self, ConfigError> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(format!(
                "{key} {other:?} is not supported; expected one of \"gelu\", \"gelu_new\", \"relu\", \"silu\""
            )
            .into()),
        }
    }
}

/// `ACT2FN[hidden_act](x)`.
pub(crate) fn activate<B: Backend, const D: usize>(activation: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match activation {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => burn::tensor::activation::gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Silu => silu(x),
    }
}
