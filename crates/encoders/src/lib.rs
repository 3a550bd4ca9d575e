//! Encoder classifiers in Burn, in the shape of transformers' `modeling_bert.py`,
//! `modeling_roberta.py` (and XLM-RoBERTa's), `modeling_distilbert.py`, `modeling_electra.py`,
//! `modeling_modernbert.py` and `modeling_deberta_v2.py`. Each family is a plug-in of one file
//! with its own config, checkpoint names and head; one registry lists them ([`families`]) and
//! picks one from `config.json` ([`AutoModel`]).
//!
//! What a user of the library needs is here at the top: [`from_pretrained`] (a directory or a
//! Hub id, with transformers' keyword arguments as [`LoadOptions`]) or [`random`], the
//! [`Classifier`] the model is, its [`ModelConfig`], [`EncoderTokenizer`] and
//! [`save_pretrained`]. Every linear is a [`lora_adapter::LoraLinear`], so that the LoRA crate
//! can put an adapter on any of them by name ([`lora_adapter::AdaptableModel`]); the ops with
//! their own CPU kernels come from the `kernels` crate. The loader, the checkpoint reader and
//! the families' building blocks are the crate's own.
//!
//! The `testing` feature adds what other crates' tests use: [`testing::FakeHub`], a local
//! stand-in for the Hugging Face Hub, and [`assets`], where the shared real assets are.
#![warn(unreachable_pub)]

mod activation;
#[cfg(feature = "testing")]
pub mod assets;
mod attention;
mod bert;
mod camembert;
mod checkpoint;
mod config;
mod deberta;
mod distilbert;
mod electra;
mod embeddings;
mod encoder;
mod error;
mod family;
mod head;
mod hub;
mod info;
mod input;
mod labels;
mod model_config;
mod modernbert;
mod mpnet;
mod registry;
mod relative_position;
mod roberta;
mod rotary;
mod save;
mod spec;
mod spm;
#[cfg(feature = "testing")]
pub mod testing;
mod tokenizer;
mod weights;

pub use bert::{BertForSequenceClassification, BertModel, BertModelOutput};
pub use config::BertConfig;
pub use deberta::{DebertaV2Config, DebertaV2ForSequenceClassification};
pub use distilbert::{DistilBertConfig, DistilBertForSequenceClassification};
pub use electra::{ElectraConfig, ElectraForSequenceClassification};
pub use error::{ConfigError, EncoderError, FetchError, Result};
pub use family::{Classifier, FamilyConfig, FamilyInfo, HeadConfig};
pub use hub::{HubOptions, LoadOptions, ModelFiles, Pretrained, adapter_dir, from_pretrained, random};
pub use input::EncoderInput;
pub use labels::{LABELS_FILE, LabelSpace, LabelsError, LabelsFile, ProblemType};
pub use model_config::ModelConfig;
pub use modernbert::{ModernBertConfig, ModernBertForSequenceClassification, Pooling};
pub use mpnet::{MPNetConfig, MPNetForSequenceClassification};
pub use registry::{AutoModel, families};
pub use roberta::{RobertaForSequenceClassification, RobertaModel};
pub use save::save_pretrained;
pub use tokenizer::{Encoded, EncoderTokenizer, PaddedBatch, Token, Truncation, pad_batch, padded_length};
pub use weights::LoadReport;

#[cfg(test)]
mod layout {
    use std::collections::{BTreeMap, BTreeSet};

    /// Each module's `crate::` dependencies in its code (comments and test modules left out).
    fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let modules: BTreeMap<String, String> = std::fs::read_dir(&dir)
            .expect("the crate's src directory")
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let name = path.file_stem()?.to_str()?.to_string();
                let text = std::fs::read_to_string(&path).ok()?;
                (path.extension()? == "rs" && name != "lib").then_some((name, text))
            })
            .collect();
        modules
            .iter()
            .map(|(name, text)| {
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                let code: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
                let deps = code
                    .iter()
                    .flat_map(|line| line.split("crate::").skip(1))
                    .map(|rest| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
                    .filter(|dep| dep != name && modules.contains_key(dep))
                    .collect();
                (name.clone(), deps)
            })
            .collect()
    }

    /// Issue #44: the modules form no import cycle (they were one cycle of 18), so that a
    /// family's file, a shared block or the loader can be read and changed on its own.
    #[test]
    fn the_modules_form_no_import_cycle() {
        let deps = dependencies();
        assert!(deps.len() > 20 && deps["bert"].contains("input"), "the source was read: {deps:?}");
        // Depth-first search; a module met again while still on the path closes a cycle.
        fn visit<'a>(
            m: &'a str,
            deps: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if done.contains(m) {
                return;
            }
            if let Some(at) = path.iter().position(|p| *p == m) {
                panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
            }
            path.push(m);
            for d in &deps[m] {
                visit(d, deps, path, done);
            }
            path.pop();
            done.insert(m);
        }
        let mut done = BTreeSet::new();
        for m in deps.keys() {
            visit(m, &deps, &mut Vec::new(), &mut done);
        }
    }
}
