//! ELECTRA (`modeling_electra.py`): BERT's embeddings and encoder under `electra.`, the
//! embeddings `embedding_size` wide and projected to `hidden_size` (`embeddings_project`) when
//! the two differ, no pooler, and a two-layer GELU head on the first token.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::{AdaptableModel, LoraLinear};
use serde::{Deserialize, Serialize};

use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo, HeadConfig};
use crate::head::{ClassificationHead, HeadActivation};
use crate::input::{EncoderInput, attention_bias};
use crate::weights::{Key, Weights};

/// `ElectraConfig`: BERT's keys and `embedding_size`, with ELECTRA's defaults (the small
/// discriminator's) for keys a file leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectraConfig {
    /// The width of the embeddings, projected to `hidden_size` when it differs.
    pub embedding_size: usize,
    #[serde(flatten)]
    pub bert: BertConfig,
}

impl ElectraConfig {
    pub fn from_json(json: &serde_json::Value) -> std::result::Result<Self, crate::error::ConfigError> {
        let mut json = json.clone();
        if let Some(map) = json.as_object_mut() {
            let defaults = [
                ("embedding_size", 128),
                ("hidden_size", 256),
                ("num_attention_heads", 4),
                ("intermediate_size", 1024),
            ];
            for (key, value) in defaults {
                map.entry(key).or_insert(value.into());
            }
        }
        let config: Self = serde_json::from_value(json)?;
        config.validate()?;
        Ok(config)
    }
}

impl FamilyConfig for ElectraConfig {
    fn labels(&self) -> &HeadConfig {
        self.bert.labels()
    }

    fn labels_mut(&mut self) -> &mut HeadConfig {
        self.bert.labels_mut()
    }

    fn vocab_size(&self) -> usize {
        self.bert.vocab_size
    }

    fn initializer_range(&self) -> f64 {
        self.bert.initializer_range
    }

    fn max_text_positions(&self) -> usize {
        self.bert.max_text_positions()
    }

    fn validate(&self) -> std::result::Result<(), crate::error::ConfigError> {
        self.bert.validate()
    }
}

/// `ElectraModel`.
#[derive(Module, Debug)]
pub struct ElectraModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    /// Only when `embedding_size != hidden_size`.
    pub embeddings_project: Option<LoraLinear<B>>,
    pub encoder: BertEncoder<B>,
}

impl<B: Backend> ElectraModel<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &ElectraConfig) -> Result<Self> {
        let (width, h) = (config.embedding_size, config.bert.hidden_size);
        let embeddings = BertEmbeddings::load(w, &at.pp("embeddings"), &config.bert.embedding_spec(width))?;
        let embeddings_project =
            if width != h { Some(w.linear(&at.pp("embeddings_project"), width, h)?) } else { None };
        Ok(Self {
            embeddings,
            embeddings_project,
            encoder: BertEncoder::load(w, &at.pp("encoder"), &config.bert.encoder_spec()?)?,
        })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let mut hidden = self.embeddings.forward(input.input_ids, input.token_type_ids);
        if let Some(project) = &self.embeddings_project {
            hidden = project.forward(hidden);
        }
        self.encoder.forward(hidden, mask_bias)
    }
}

/// `ElectraForSequenceClassification`.
#[derive(Module, Debug)]
pub struct ElectraForSequenceClassification<B: Backend> {
    pub electra: ElectraModel<B>,
    pub classifier: ClassificationHead<B>,
}

impl<B: Backend> ElectraForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &ElectraConfig) -> Result<Self> {
        Ok(Self {
            electra: ElectraModel::load(w, &Key::root().pp("electra"), config)?,
            classifier: ClassificationHead::load(
                w,
                &Key::root().pp("classifier"),
                (config.bert.hidden_size, config.bert.num_labels()),
                config.bert.classifier_dropout(),
                HeadActivation::Gelu,
            )?,
        })
    }
}

impl<B: Backend> AdaptableModel<B> for ElectraForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.electra.embeddings_project.each_linear(f);
        self.electra.encoder.each_linear(f);
        self.classifier.each_linear(f);
    }
}

impl<B: Backend> Classifier<B> for ElectraForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        self.classifier.forward(self.electra.forward(input))
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.electra.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.out_proj.dims()[1]
    }
}

/// ELECTRA.
#[derive(Debug, Clone, Copy)]
pub struct Electra;

impl Family for Electra {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "electra",
        architecture: "Electra",
        class: "ElectraForSequenceClassification",
        base_model_prefix: "electra",
        default_targets: Ok(&["query", "value"]),
        unused_keys: &["discriminator_predictions.", "generator_predictions.", "generator_lm_head."],
        head: &["classifier."],
        aliases: &[],
        tokenizer_models: &["WordPiece"],
    };
    type Config = ElectraConfig;
    type Model<B: Backend> = ElectraForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<ElectraConfig, crate::error::ConfigError> {
        ElectraConfig::from_json(json)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &ElectraConfig) -> Result<Self::Model<B>> {
        ElectraForSequenceClassification::load(w, config)
    }
}
