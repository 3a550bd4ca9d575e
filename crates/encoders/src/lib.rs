//! Encoder classifiers in Burn, in the shape of transformers' `modeling_bert.py`,
//! `modeling_roberta.py` (and XLM-RoBERTa's), `modeling_distilbert.py`, `modeling_electra.py`
//! and `modeling_modernbert.py`: each family is a plug-in of one file ([`Family`]) with its own
//! config, names and head; [`registry`] lists them and picks one from `config.json`
//! ([`AutoModel`]); [`from_pretrained`] loads any of them.
//!
//! Field names are checkpoint keys, so loading a Hugging Face checkpoint is a walk over the
//! model's own structure ([`weights`]). Every linear is a [`lora_adapter::LoraLinear`], so that
//! the LoRA crate can put an adapter on any of them by name ([`lora_adapter::AdaptableModel`]);
//! the ops with their own CPU kernels (attention products, softmax, GELU, LayerNorm, dropout)
//! come from the `kernels` crate.
//!
//! The `testing` feature adds what other crates' tests use: [`testing::FakeHub`], a local
//! stand-in for the Hugging Face Hub, and [`assets`], where the shared real assets are.

#[cfg(feature = "testing")]
pub mod assets;
pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod deberta;
pub mod distilbert;
pub mod electra;
pub mod embeddings;
pub mod encoder;
pub mod error;
pub mod family;
pub mod hub;
pub mod model;
pub mod model_config;
pub mod modernbert;
pub mod registry;
pub mod roberta;
pub mod save;
mod spm;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::BertConfig;
pub use error::{ConfigError, EncoderError, Result};
pub use family::{Classifier, Family, FamilyConfig, FamilyInfo, HeadConfig, HeadSpec};
pub use hub::{FetchError, HubOptions, LoadOptions, ModelFiles, Pretrained, from_pretrained, random};
pub use model::{BertForSequenceClassification, BertModel, BertModelOutput, EncoderInput};
pub use model_config::ModelConfig;
pub use registry::AutoModel;
pub use tokenizer::{Encoded, EncoderTokenizer, PaddedBatch};
pub use weights::{Key, LoadReport, Weights};
