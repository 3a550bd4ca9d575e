//! BERT-family encoders in Burn, in the shape of transformers' `modeling_bert.py`,
//! `modeling_roberta.py` (and XLM-RoBERTa's), `modeling_distilbert.py` and `modeling_electra.py`:
//! each family's `...ForSequenceClassification` with its own names, one [`SequenceClassifier`]
//! over them, detected from `config.json` ([`Family`]).
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
pub mod classifier;
pub mod config;
pub mod distilbert;
pub mod electra;
pub mod embeddings;
pub mod encoder;
pub mod error;
pub mod family;
pub mod hub;
pub mod model;
pub mod roberta;
pub mod save;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use classifier::SequenceClassifier;
pub use config::BertConfig;
pub use error::{BertError, Result};
pub use family::Family;
pub use hub::{
    HubOptions, ModelFiles, Pretrained, load_pretrained, load_pretrained_configured, load_pretrained_for_labels,
    load_pretrained_with,
};
pub use model::{BertForSequenceClassification, BertInput, BertModel, BertModelOutput};
pub use tokenizer::{BertTokenizer, Encoded, PaddedBatch};
pub use weights::{Key, LoadReport, Weights};
