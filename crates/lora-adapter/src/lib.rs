//! LoRA adapters (Hu et al., 2021) with Hugging Face PEFT's semantics and file format.
#![allow(non_snake_case)] // `lora_A`, `lora_B`: PEFT's names, which are the saved tensor names.
//!
//! The unit is [`LoraLinear`]: a frozen linear with an optional low-rank adapter beside it.
//! A model that builds its linears from it and lists them ([`AdaptableModel`]) takes adapters on
//! any of them by config ([`inject`]); this crate knows nothing about the model around them.
#![warn(unreachable_pub)]

mod config;
mod error;
pub mod init;
mod inject;
mod linear;
mod mixed;
pub mod peft;

pub use config::{AdapterShape, InitLoraWeights, Layers, LoraConfig, LoraConfigError, Patterns, TargetModules};
pub use error::{LoraError, Result};
pub use inject::{Injected, ParameterCount, fresh_adapter, inject, merge};
pub use linear::{AdaptableModel, LoraAdapter, LoraLinear, hold_in_bf16};
pub use mixed::{AdapterWeights, MixedBatch, with_adapters};
