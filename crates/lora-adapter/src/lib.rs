//! LoRA adapters (Hu et al., 2021) with Hugging Face PEFT's semantics.
#![allow(non_snake_case)] // `lora_A`, `lora_B`: PEFT's names, which are the saved tensor names.
//!
//! The unit is [`LoraLinear`]: a frozen linear with an optional low-rank adapter beside it.
//! A model that builds its linears from it can take adapters on any of them without a code
//! change; the adapter knows nothing about the model around it.

mod linear;

pub use linear::{AdaptableModel, LoraAdapter, LoraLinear};
