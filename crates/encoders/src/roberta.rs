//! RoBERTa and XLM-RoBERTa (`modeling_roberta.py`, `modeling_xlm_roberta.py`: the same model
//! and names): BERT's config keys and encoder under `roberta.`, embeddings whose positions start
//! after the padding index ([`Positions::AfterPadding`]), no pooler, and a two-layer head on
//! the first token. Two plug-ins, [`Roberta`] and [`XlmRoberta`], over one model.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use lora_adapter::{AdaptableModel, LoraLinear};

use crate::config::BertConfig;
use crate::embeddings::{BertEmbeddings, Positions};
use crate::encoder::BertEncoder;
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyInfo};
use crate::head::{ClassificationHead, HeadActivation};
use crate::input::{EncoderInput, attention_bias};
use crate::weights::{Key, Weights};

/// `RobertaModel` without its pooler (`add_pooling_layer=False`, as the classifier builds it).
#[derive(Module, Debug)]
pub struct RobertaModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
}

impl<B: Backend> RobertaModel<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), &config.embedding_spec(config.hidden_size))?,
            encoder: BertEncoder::load(w, &at.pp("encoder"), &config.encoder_spec()?)?,
        })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let embedded = self.embeddings.forward(input.input_ids, input.token_type_ids);
        self.encoder.forward(embedded, mask_bias)
    }
}

/// `RobertaForSequenceClassification` (and `XLMRobertaForSequenceClassification`).
#[derive(Module, Debug)]
pub struct RobertaForSequenceClassification<B: Backend> {
    pub roberta: RobertaModel<B>,
    pub classifier: ClassificationHead<B>,
}

impl<B: Backend> RobertaForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            roberta: RobertaModel::load(w, &Key::root().pp("roberta"), config)?,
            classifier: ClassificationHead::load(
                w,
                &Key::root().pp("classifier"),
                (config.hidden_size, config.num_labels()),
                config.classifier_dropout(),
                HeadActivation::Tanh,
            )?,
        })
    }
}

impl<B: Backend> AdaptableModel<B> for RobertaForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.roberta.encoder.each_linear(f);
        self.classifier.each_linear(f);
    }
}

impl<B: Backend> Classifier<B> for RobertaForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        self.classifier.forward(self.roberta.forward(input))
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.roberta.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.out_proj.dims()[1]
    }
}

/// RoBERTa's config: BERT's keys, `pad_token_id` 1 by default, positions after it.
fn roberta_config(json: &serde_json::Value) -> std::result::Result<BertConfig, crate::error::ConfigError> {
    let mut json = json.clone();
    if let Some(map) = json.as_object_mut() {
        map.entry("pad_token_id").or_insert(1.into());
    }
    let mut config = BertConfig::from_json(&json)?;
    config.positions = Positions::AfterPadding { padding_idx: config.pad_token_id };
    Ok(config)
}

const ROBERTA_HEAD: &[&str] = &["classifier."];
/// RoBERTa's pre-training head, and the pooler its classifier does not use.
const ROBERTA_UNUSED: &[&str] = &["lm_head.", "pooler."];

/// RoBERTa.
#[derive(Debug, Clone, Copy)]
pub struct Roberta;

impl Family for Roberta {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "roberta",
        architecture: "Roberta",
        class: "RobertaForSequenceClassification",
        base_model_prefix: "roberta",
        default_targets: Ok(&["query", "value"]),
        unused_keys: ROBERTA_UNUSED,
        head: ROBERTA_HEAD,
        aliases: &[],
        tokenizer_models: &["BPE"],
    };
    type Config = BertConfig;
    type Model<B: Backend> = RobertaForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<BertConfig, crate::error::ConfigError> {
        roberta_config(json)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &BertConfig) -> Result<Self::Model<B>> {
        RobertaForSequenceClassification::load(w, config)
    }
}

/// XLM-RoBERTa: RoBERTa's model and names, a multilingual Unigram tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct XlmRoberta;

impl Family for XlmRoberta {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "xlm-roberta",
        architecture: "XLMRoberta",
        class: "XLMRobertaForSequenceClassification",
        tokenizer_models: &["Unigram"],
        ..Roberta::INFO
    };
    type Config = BertConfig;
    type Model<B: Backend> = RobertaForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<BertConfig, crate::error::ConfigError> {
        roberta_config(json)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &BertConfig) -> Result<Self::Model<B>> {
        RobertaForSequenceClassification::load(w, config)
    }
}
