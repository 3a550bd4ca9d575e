//! [`FamilyInfo`]: what a family is without its config, plain data that the checkpoint reader
//! and the registry read (in a module of its own, so that reading a checkpoint needs no family).

/// The facts about a family that need no config: its names in transformers and PEFT, and what
/// of a checkpoint it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyInfo {
    /// transformers' `model_type` (`config.json`).
    pub model_type: &'static str,
    /// The prefix of the classes in `architectures` that name this family (`Roberta` for
    /// `RobertaForMaskedLM`), used when a config has no `model_type`.
    pub architecture: &'static str,
    /// The class transformers loads a merged model as.
    pub class: &'static str,
    /// The attribute the `...ForSequenceClassification` keeps its base model under: the prefix
    /// of its checkpoint keys and of PEFT's module names.
    pub base_model_prefix: &'static str,
    /// PEFT's default LoRA targets (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`), or,
    /// where PEFT has none, what to tell the user (the family's linears and the usual choice).
    pub default_targets: std::result::Result<&'static [&'static str], &'static str>,
    /// Checkpoint keys (below the base-model prefix) the classifier has no place for:
    /// pre-training heads, dropped when read.
    pub unused_keys: &'static [&'static str],
    /// Top-level modules of the classification head: a checkpoint may lack them (a base model,
    /// a pre-training checkpoint), and they are then initialised as transformers does.
    pub head: &'static [&'static str],
    /// Other names a config key is known by (`(alias, key)`): DistilBERT's `dropout` is what
    /// BERT calls `hidden_dropout_prob`, so that one setting reaches every family.
    pub aliases: &'static [(&'static str, &'static str)],
    /// The tokenizer models (`tokenizer.json`'s `model.type`) the family's checkpoints ship:
    /// another one is said (a WordPiece vocabulary read by a BPE family's embeddings).
    pub tokenizer_models: &'static [&'static str],
}
