//! BERT in Burn, in the shape of transformers' `modeling_bert.py`.
//!
//! Field names are checkpoint keys, so loading a Hugging Face checkpoint is a walk over the
//! model's own structure ([`weights`]). Every linear is a [`lora_adapter::LoraLinear`], so that
//! the LoRA crate can put an adapter on any of them by name ([`lora_adapter::AdaptableModel`]).

pub mod assets;
pub mod attention;
pub mod checkpoint;
pub mod config;
mod cpu;
pub mod device;
pub mod embeddings;
pub mod encoder;
pub mod error;
mod gelu;
pub mod hub;
pub mod layer_norm;
pub mod model;
pub mod save;
mod softmax;
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::BertConfig;
pub use error::{BertError, Result};
pub use hub::{HubOptions, ModelFiles, Pretrained, load_pretrained, load_pretrained_configured, load_pretrained_with};
pub use model::{BertForSequenceClassification, BertInput, BertModel, BertModelOutput};
pub use tokenizer::{BertTokenizer, Encoded, PaddedBatch};
pub use weights::{LoadReport, Weights};
