//! MPNet (`modeling_mpnet.py`; sentence-transformers' all-mpnet-base-v2 and its fine-tunes):
//! RoBERTa-style embeddings (positions after the padding index 1, no token types) under
//! `mpnet.`, BERT's feed-forward, an attention whose projections are `attn.q`/`k`/`v`/`o` with
//! the LayerNorm beside them, a bias per head and bucket of relative distance shared by every
//! layer ([`RelativePositionBias`]), and RoBERTa's two-layer head on the first token.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::{Dropout, LayerNorm, add, dropout_matmul_into_heads, masked_softmax_window, matmul};
use lora_adapter::{AdaptableModel, LoraLinear};
use serde::{Deserialize, Serialize};

use crate::config::BertConfig;
use crate::embeddings::{BertEmbeddings, Positions};
use crate::encoder::{BertIntermediate, BertOutput};
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo, HeadConfig};
use crate::head::{ClassificationHead, HeadActivation};
use crate::input::{EncoderInput, attention_bias};
use crate::relative_position::RelativePositionBias;
use crate::spec::EncoderSpec;
use crate::weights::{Key, Weights};

/// MPNet's padding index: fixed in its embeddings, whatever `pad_token_id` says.
const PADDING_IDX: usize = 1;
/// The buckets `compute_position_bias` sorts distances into, whatever the table's rows.
const BUCKETS: usize = 32;

/// `MPNetConfig`: BERT's keys with MPNet's defaults, and `relative_attention_num_buckets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MPNetConfig {
    /// Rows of the relative position bias table.
    pub relative_attention_num_buckets: usize,
    #[serde(flatten)]
    pub bert: BertConfig,
}

impl MPNetConfig {
    pub fn from_json(json: &serde_json::Value) -> std::result::Result<Self, crate::error::ConfigError> {
        let mut json = json.clone();
        if let Some(map) = json.as_object_mut() {
            // BERT's keys that MPNet has not: refused rather than read and then not used.
            if map.get("type_vocab_size").is_some_and(|v| v.as_u64() != Some(0)) {
                return Err("type_vocab_size is not an MPNet key: MPNet has no token type embeddings"
                    .to_string()
                    .into());
            }
            let defaults = [("relative_attention_num_buckets", 32), ("vocab_size", 30527), ("pad_token_id", 1)];
            for (key, value) in defaults {
                map.entry(key).or_insert(value.into());
            }
        }
        let mut config: Self = serde_json::from_value(json)?;
        // No token types; positions counted after the padding index.
        config.bert.type_vocab_size = 0;
        config.bert.positions = Positions::AfterPadding { padding_idx: PADDING_IDX };
        config.validate()?;
        Ok(config)
    }
}

impl FamilyConfig for MPNetConfig {
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

    fn padding_idx(&self) -> Option<usize> {
        Some(PADDING_IDX)
    }

    fn validate(&self) -> std::result::Result<(), crate::error::ConfigError> {
        if self.relative_attention_num_buckets < BUCKETS {
            return Err(format!(
                "relative_attention_num_buckets ({}) must be at least {BUCKETS}: MPNet sorts distances into {BUCKETS} buckets",
                self.relative_attention_num_buckets
            ).into());
        }
        if let Some(p) = self.bert.classifier_dropout {
            return Err(format!(
                "classifier_dropout ({p}) is not an MPNet key: its head's dropout is hidden_dropout_prob"
            )
            .into());
        }
        self.bert.validate()
    }
}

/// `MPNetSelfAttention`: the projections `q`, `k`, `v`, `o`; the scores get the relative
/// position bias before the mask.
#[derive(Module, Debug)]
pub struct MPNetSelfAttention<B: Backend> {
    pub q: LoraLinear<B>,
    pub k: LoraLinear<B>,
    pub v: LoraLinear<B>,
    pub o: LoraLinear<B>,
    pub dropout: Dropout,
    pub num_attention_heads: usize,
}

impl<B: Backend> MPNetSelfAttention<B> {
    fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        let h = spec.hidden_size;
        Ok(Self {
            q: w.linear(&at.pp("q"), h, h)?,
            k: w.linear(&at.pp("k"), h, h)?,
            v: w.linear(&at.pp("v"), h, h)?,
            o: w.linear(&at.pp("o"), h, h)?,
            dropout: Dropout::new(spec.attention_dropout),
            num_attention_heads: spec.num_attention_heads,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, mask_bias: `[batch, 1, 1, seq]`,
    ///   position_bias: `[1, heads, seq, seq]`; output: `[batch, seq, hidden]`
    fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>, position_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq, width] = hidden.dims();
        let heads = self.num_attention_heads;
        let head_dim = width / heads;
        let split = |x: Tensor<B, 3>| x.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2); // (B, nh, T, hs)
        // The 1/sqrt(hs) scale on q, as BERT's attention does here.
        let q = split(self.q.forward(hidden.clone()) / (head_dim as f64).sqrt());
        let k = split(self.k.forward(hidden.clone()));
        let v = split(self.v.forward(hidden));
        let scores = add(matmul(q, k.swap_dims(2, 3)), position_bias); // (B, nh, T, T)
        let probs = masked_softmax_window(scores, mask_bias, None);
        let context = dropout_matmul_into_heads(probs, v, &self.dropout); // (B, nh, T, hs) laid out (B, T, nh, hs)
        self.o.forward(context.swap_dims(1, 2).reshape([batch, seq, width]))
    }
}

/// `MPNetAttention`: self-attention, then dropout, residual and `LayerNorm`.
#[derive(Module, Debug)]
pub struct MPNetAttention<B: Backend> {
    pub attn: MPNetSelfAttention<B>,
    /// Checkpoint key `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

/// `MPNetLayer`: attention, then BERT's intermediate and output.
#[derive(Module, Debug)]
pub struct MPNetLayer<B: Backend> {
    pub attention: MPNetAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> MPNetLayer<B> {
    fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        let attention = at.pp("attention");
        Ok(Self {
            attention: MPNetAttention {
                attn: MPNetSelfAttention::load(w, &attention.pp("attn"), spec)?,
                layer_norm: w.layer_norm(&attention.pp("LayerNorm"), spec.hidden_size, spec.layer_norm_eps)?,
                dropout: Dropout::new(spec.hidden_dropout),
            },
            intermediate: BertIntermediate::load(w, &at.pp("intermediate"), spec)?,
            output: BertOutput::load(w, &at.pp("output"), spec)?,
        })
    }

    fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>, position_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let attention = &self.attention;
        let attended = attention.attn.forward(hidden.clone(), mask_bias, position_bias);
        let attended = attention.layer_norm.forward(add(attention.dropout.forward(attended), hidden));
        let intermediate = self.intermediate.forward(attended.clone());
        self.output.forward(intermediate, attended)
    }
}

/// `MPNetEncoder`: the layers and the relative position bias they share.
#[derive(Module, Debug)]
pub struct MPNetEncoder<B: Backend> {
    pub layer: Vec<MPNetLayer<B>>,
    pub relative_attention_bias: RelativePositionBias<B>,
}

impl<B: Backend> MPNetEncoder<B> {
    fn load(w: &mut Weights<B>, at: &Key, config: &MPNetConfig) -> Result<Self> {
        let spec = config.bert.encoder_spec()?;
        let layer = (0..spec.num_hidden_layers)
            .map(|i| MPNetLayer::load(w, &at.pp("layer").pp(i), &spec))
            .collect::<Result<_>>()?;
        let table = (config.relative_attention_num_buckets, spec.num_attention_heads);
        let relative_attention_bias = RelativePositionBias::load(w, &at.pp("relative_attention_bias"), table, BUCKETS)?;
        Ok(Self { layer, relative_attention_bias })
    }

    fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [_, seq, _] = hidden.dims();
        let position_bias = self.relative_attention_bias.forward(seq, &hidden.device());
        self.layer.iter().fold(hidden, |hidden, layer| layer.forward(hidden, mask_bias.clone(), position_bias.clone()))
    }
}

/// `MPNetModel` without its pooler (`add_pooling_layer=False`, as the classifier builds it).
#[derive(Module, Debug)]
pub struct MPNetModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: MPNetEncoder<B>,
}

impl<B: Backend> MPNetModel<B> {
    fn load(w: &mut Weights<B>, at: &Key, config: &MPNetConfig) -> Result<Self> {
        let mut spec = config.bert.embedding_spec(config.bert.hidden_size);
        spec.pad_token_id = PADDING_IDX;
        Ok(Self {
            embeddings: BertEmbeddings::load(w, &at.pp("embeddings"), &spec)?,
            encoder: MPNetEncoder::load(w, &at.pp("encoder"), config)?,
        })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let embedded = self.embeddings.forward(input.input_ids, input.token_type_ids);
        self.encoder.forward(embedded, mask_bias)
    }
}

/// `MPNetForSequenceClassification`.
#[derive(Module, Debug)]
pub struct MPNetForSequenceClassification<B: Backend> {
    pub mpnet: MPNetModel<B>,
    pub classifier: ClassificationHead<B>,
}

impl<B: Backend> MPNetForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &MPNetConfig) -> Result<Self> {
        let bert = &config.bert;
        Ok(Self {
            mpnet: MPNetModel::load(w, &Key::root().pp("mpnet"), config)?,
            // MPNetClassificationHead: RoBERTa's, dropout `hidden_dropout_prob`.
            classifier: ClassificationHead::load(
                w,
                &Key::root().pp("classifier"),
                (bert.hidden_size, bert.num_labels()),
                bert.hidden_dropout_prob,
                HeadActivation::Tanh,
            )?,
        })
    }
}

impl<B: Backend> AdaptableModel<B> for MPNetForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        for layer in &mut self.mpnet.encoder.layer {
            let attn = &mut layer.attention.attn;
            f(&mut attn.q);
            f(&mut attn.k);
            f(&mut attn.v);
            f(&mut attn.o);
            f(&mut layer.intermediate.dense);
            f(&mut layer.output.dense);
        }
        self.classifier.each_linear(f);
    }
}

impl<B: Backend> Classifier<B> for MPNetForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        self.classifier.forward(self.mpnet.forward(input))
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.mpnet.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.out_proj.dims()[1]
    }
}

/// MPNet (and the sentence-transformers models built on it: all-mpnet-base-v2, multi-qa-mpnet).
#[derive(Debug, Clone, Copy)]
pub struct MPNet;

impl Family for MPNet {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "mpnet",
        architecture: "MPNet",
        class: "MPNetForSequenceClassification",
        base_model_prefix: "mpnet",
        // PEFT 0.17 has no MPNet entry in its default targets.
        default_targets: Err(
            "its linears are attention.attn.q, .k, .v, .o, intermediate.dense, output.dense (and classifier.dense); the usual choice is [\"q\", \"v\"]",
        ),
        // The masked-LM head, and the pooler sentence-transformers' checkpoints (MPNetModel) carry.
        unused_keys: &["lm_head.", "pooler."],
        head: &["classifier."],
        aliases: &[],
        tokenizer_models: &["WordPiece"],
    };
    type Config = MPNetConfig;
    type Model<B: Backend> = MPNetForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<MPNetConfig, crate::error::ConfigError> {
        MPNetConfig::from_json(json)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &MPNetConfig) -> Result<Self::Model<B>> {
        MPNetForSequenceClassification::load(w, config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_are_mpnets_and_bert_keys_it_has_not_are_refused() {
        let config = MPNetConfig::from_json(&json!({"max_position_embeddings": 514})).unwrap();
        assert_eq!((config.relative_attention_num_buckets, config.bert.vocab_size), (32, 30527));
        assert_eq!(config.max_text_positions(), 512, "positions after the padding index 1");
        assert_eq!(config.padding_idx(), Some(1));
        // The padding index is MPNet's whatever pad_token_id says.
        let config = MPNetConfig::from_json(&json!({"pad_token_id": 0})).unwrap();
        assert_eq!((config.padding_idx(), config.max_text_positions()), (Some(1), 510));

        let err = |json: serde_json::Value| MPNetConfig::from_json(&json).unwrap_err().to_string();
        assert!(err(json!({"classifier_dropout": 0.2})).contains("classifier_dropout (0.2) is not an MPNet key"));
        assert!(err(json!({"type_vocab_size": 2})).contains("type_vocab_size is not an MPNet key"));
        let few = err(json!({"relative_attention_num_buckets": 16}));
        assert!(few.contains("relative_attention_num_buckets (16) must be at least 32"), "{few}");
    }
}
