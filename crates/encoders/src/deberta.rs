//! DeBERTa-v2 and -v3 (`modeling_deberta_v2.py`, `model_type = "deberta-v2"`): BERT's layer
//! shape around a disentangled self-attention. Besides content to content, each query attends
//! to the keys' relative positions (`c2p`) and each key to the query's (`p2c`), as
//! `pos_att_type` says, through one shared table of relative-position embeddings
//! (`encoder.rel_embeddings`, LayerNorm-ed when `norm_rel_ebd` says so) projected by the
//! layer's own `query_proj`/`key_proj` (`share_att_key`) or by `pos_query_proj`/`pos_key_proj`;
//! relative distances are log-bucketed past `position_buckets / 2`; the scores are scaled by
//! `sqrt(head_size * (1 + number of position terms))`. The head is the `ContextPooler`
//! (`pooler.dense` on the first token, an activation) then `classifier`.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kernels::{
    Dropout, LayerNorm, RelativeIndex, add, dropout_matmul_into_heads, masked_softmax, matmul, relative_gather,
};
use lora_adapter::{AdaptableModel, LoraLinear};
use serde::{Deserialize, Serialize};

use crate::activation::{Activation, activate};
use crate::attention::BertSelfOutput;
use crate::config::check_dropouts;
use crate::encoder::{BertIntermediate, BertOutput};
use crate::error::Result;
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo, HeadConfig};
use crate::input::{EncoderInput, attention_bias, first_token};
use crate::spec::EncoderSpec;
use crate::weights::{Key, Weights};

/// `pos_att_type`: a list (`["p2c", "c2p"]`) or, in older configs, a string (`"p2c|c2p"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PosAttType {
    List(Vec<String>),
    Joined(String),
}

impl PosAttType {
    fn names(&self) -> Vec<String> {
        match self {
            Self::List(names) => names.iter().map(|n| n.trim().to_lowercase()).collect(),
            Self::Joined(names) => names.split('|').map(|n| n.trim().to_lowercase()).collect(),
        }
    }
}

/// `DebertaV2Config`, with transformers' names and defaults (DeBERTa-v2-xlarge's, as
/// transformers has them; DeBERTa-v3 configs set the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebertaV2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub relative_attention: bool,
    /// Below 1: `max_position_embeddings`.
    pub max_relative_positions: i64,
    /// Above 0: relative distances past half of this are log-bucketed.
    pub position_buckets: i64,
    pub pad_token_id: usize,
    /// Absolute position embeddings added to the word embeddings (v3: false).
    pub position_biased_input: bool,
    pub pos_att_type: Option<PosAttType>,
    /// The relative embeddings' projections are the layer's `query_proj` / `key_proj`.
    pub share_att_key: bool,
    /// `"layer_norm"`: the relative embeddings are LayerNorm-ed (`encoder.LayerNorm`).
    pub norm_rel_ebd: String,
    pub embedding_size: Option<usize>,
    pub attention_head_size: Option<usize>,
    pub pooler_hidden_size: Option<usize>,
    pub pooler_dropout: f64,
    pub pooler_hidden_act: String,
    /// The dropout before the classifier; unset: `hidden_dropout_prob`.
    pub cls_dropout: Option<f64>,
    /// DeBERTa-v2-xlarge's ConvLayer after the first layer: not supported (refused).
    pub conv_kernel_size: usize,
    #[serde(flatten)]
    pub head: HeadConfig,
}

impl Default for DebertaV2Config {
    fn default() -> Self {
        Self {
            vocab_size: 128100,
            hidden_size: 1536,
            num_hidden_layers: 24,
            num_attention_heads: 24,
            intermediate_size: 6144,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-7,
            relative_attention: false,
            max_relative_positions: -1,
            position_buckets: -1,
            pad_token_id: 0,
            position_biased_input: true,
            pos_att_type: None,
            share_att_key: false,
            norm_rel_ebd: "none".into(),
            embedding_size: None,
            attention_head_size: None,
            pooler_hidden_size: None,
            pooler_dropout: 0.0,
            pooler_hidden_act: "gelu".into(),
            cls_dropout: None,
            conv_kernel_size: 0,
            head: HeadConfig::default(),
        }
    }
}

impl DebertaV2Config {
    fn position_terms(&self) -> (bool, bool) {
        let names = self.pos_att_type.as_ref().map(PosAttType::names).unwrap_or_default();
        (names.iter().any(|n| n == "c2p"), names.iter().any(|n| n == "p2c"))
    }

    fn max_relative_positions(&self) -> usize {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings
        } else {
            self.max_relative_positions as usize
        }
    }

    /// How many relative positions the table covers on each side (`pos_ebd_size`).
    fn span(&self) -> usize {
        if self.position_buckets > 0 { self.position_buckets as usize } else { self.max_relative_positions() }
    }

    fn head_size(&self) -> usize {
        self.attention_head_size.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// BERT's output, intermediate and output blocks around the disentangled attention, under
    /// the same keys (the attention's own sizes are read by it: `attention_head_size`).
    fn encoder_spec(&self) -> Result<EncoderSpec> {
        Ok(EncoderSpec {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            num_hidden_layers: self.num_hidden_layers,
            layer_norm_eps: self.layer_norm_eps,
            hidden_dropout: self.hidden_dropout_prob,
            attention_dropout: self.attention_probs_dropout_prob,
            activation: Activation::named("hidden_act", &self.hidden_act)
                .map_err(crate::EncoderError::invalid_config)?,
        })
    }
}

impl FamilyConfig for DebertaV2Config {
    fn labels(&self) -> &HeadConfig {
        &self.head
    }

    fn labels_mut(&mut self) -> &mut HeadConfig {
        &mut self.head
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn initializer_range(&self) -> f64 {
        self.initializer_range
    }

    fn max_text_positions(&self) -> usize {
        self.max_position_embeddings
    }

    fn validate(&self) -> std::result::Result<(), crate::error::ConfigError> {
        if self.conv_kernel_size > 0 {
            return Err(format!(
                "conv_kernel_size = {} asks for DeBERTa-v2-xlarge's ConvLayer, which is not supported (DeBERTa-v3 has none)",
                self.conv_kernel_size
            ).into());
        }
        if self.num_attention_heads == 0 || self.num_attention_heads * self.head_size() != self.hidden_size {
            return Err(format!(
                "num_attention_heads ({}) times the head size ({}) must be hidden_size ({})",
                self.num_attention_heads,
                self.head_size(),
                self.hidden_size
            )
            .into());
        }
        if let Some(size) = self.pooler_hidden_size.filter(|&s| s != self.hidden_size) {
            return Err(format!("pooler_hidden_size ({size}) must be hidden_size ({})", self.hidden_size).into());
        }
        for name in self.pos_att_type.as_ref().map(PosAttType::names).unwrap_or_default() {
            if name != "c2p" && name != "p2c" {
                return Err(format!("pos_att_type {name:?} is not supported; expected \"c2p\" and/or \"p2c\"").into());
            }
        }
        let rel_norm: Vec<String> = self.norm_rel_ebd.split('|').map(|n| n.trim().to_lowercase()).collect();
        if rel_norm.iter().any(|n| n != "none" && n != "layer_norm") {
            return Err(format!(
                "norm_rel_ebd {:?} is not supported; expected \"layer_norm\" or \"none\"",
                self.norm_rel_ebd
            )
            .into());
        }
        Activation::named("hidden_act", &self.hidden_act)?;
        Activation::named("pooler_hidden_act", &self.pooler_hidden_act)?;
        check_dropouts(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
            ("pooler_dropout", self.pooler_dropout),
            ("cls_dropout", self.cls_dropout.unwrap_or(0.0)),
        ])
    }
}

/// transformers' `make_log_bucket_position` for one relative distance, in f32 as torch
/// computes it (so a bucket boundary falls where transformers' does).
fn log_bucket(relative: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    let abs_pos = if relative < mid && relative > -mid { mid - 1 } else { relative.abs() };
    if abs_pos <= mid {
        return relative;
    }
    let ratio = ((max_position - 1) as f64 / mid as f64) as f32;
    let log_pos = ((abs_pos as f32 / mid as f32).ln() / ratio.ln() * (mid - 1) as f32).ceil() + mid as f32;
    log_pos as i64 * relative.signum()
}

/// What the relative-position terms need: which of them, the table's span, the bucketing.
#[derive(Debug, Clone)]
pub struct Relative {
    pub c2p: bool,
    pub p2c: bool,
    pub span: usize,
    pub buckets: i64,
    pub max_relative_positions: i64,
}

impl Relative {
    /// The gather indices of the two terms, `[seq, seq]` each: `clamp(±rel(i, j) + span, 0,
    /// 2 span - 1)` where `rel(i, j)` is the (bucketed) distance `i - j`.
    fn indices(&self, seq: usize) -> (RelativeIndex, RelativeIndex) {
        let span = self.span as i64;
        let (mut c2p, mut p2c) = (Vec::with_capacity(seq * seq), Vec::with_capacity(seq * seq));
        for i in 0..seq as i64 {
            for j in 0..seq as i64 {
                let mut rel = i - j;
                if self.buckets > 0 && self.max_relative_positions > 0 {
                    rel = log_bucket(rel, self.buckets, self.max_relative_positions);
                }
                c2p.push((rel + span).clamp(0, 2 * span - 1) as u32);
                p2c.push((-rel + span).clamp(0, 2 * span - 1) as u32);
            }
        }
        let index = |v: Vec<u32>| RelativeIndex { seq, index: Arc::new(v) };
        (index(c2p), index(p2c))
    }
}

/// What every layer's position terms read, computed once per forward: the (LayerNorm-ed)
/// relative embeddings and the two gather indices for this sequence length.
#[derive(Debug, Clone)]
pub struct RelativeInputs<B: Backend> {
    /// `[2 span, hidden]`.
    pub embeddings: Tensor<B, 2>,
    pub c2p: RelativeIndex,
    pub p2c: RelativeIndex,
}

/// `DisentangledSelfAttention`.
#[derive(Module, Debug)]
pub struct DisentangledSelfAttention<B: Backend> {
    pub query_proj: LoraLinear<B>,
    pub key_proj: LoraLinear<B>,
    pub value_proj: LoraLinear<B>,
    /// Without `share_att_key`, the relative embeddings' own projections.
    pub pos_key_proj: Option<LoraLinear<B>>,
    pub pos_query_proj: Option<LoraLinear<B>>,
    pub dropout: Dropout,
    pub pos_dropout: Dropout,
    pub num_attention_heads: usize,
    /// `None` without `relative_attention`.
    pub relative: Option<Relative>,
}

impl<B: Backend> DisentangledSelfAttention<B> {
    fn load(w: &mut Weights<B>, at: &Key, config: &DebertaV2Config) -> Result<Self> {
        let (h, all) = (config.hidden_size, config.num_attention_heads * config.head_size());
        let (c2p, p2c) = config.position_terms();
        let relative = config.relative_attention.then(|| Relative {
            c2p,
            p2c,
            span: config.span(),
            buckets: config.position_buckets,
            max_relative_positions: config.max_relative_positions() as i64,
        });
        let own = relative.is_some() && !config.share_att_key;
        Ok(Self {
            query_proj: w.linear(&at.pp("query_proj"), h, all)?,
            key_proj: w.linear(&at.pp("key_proj"), h, all)?,
            value_proj: w.linear(&at.pp("value_proj"), h, all)?,
            pos_key_proj: if own && c2p { Some(w.linear(&at.pp("pos_key_proj"), h, all)?) } else { None },
            pos_query_proj: if own && p2c { Some(w.linear(&at.pp("pos_query_proj"), h, all)?) } else { None },
            dropout: Dropout::new(config.attention_probs_dropout_prob),
            pos_dropout: Dropout::new(config.hidden_dropout_prob),
            num_attention_heads: config.num_attention_heads,
            relative,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`; mask_bias: `[batch, 1, 1, seq]`; output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        mask_bias: Tensor<B, 4>,
        relative_inputs: Option<&RelativeInputs<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = hidden.dims();
        let heads = self.num_attention_heads;
        let split = |x: Tensor<B, 3>| {
            let [b, t, width] = x.dims();
            x.reshape([b, t, heads, width / heads]).swap_dims(1, 2) // (B, nh, T, hs)
        };
        let q = split(self.query_proj.forward(hidden.clone()));
        let k = split(self.key_proj.forward(hidden.clone()));
        let v = split(self.value_proj.forward(hidden));
        let head_size = q.dims()[3];
        let terms = self.relative.as_ref().map_or(0, |r| usize::from(r.c2p) + usize::from(r.p2c));
        // The scale counts the position terms: sqrt(hs * (1 + c2p + p2c)). It goes on q (and
        // on the position queries of p2c), smaller than the scores.
        let scale = ((head_size * (1 + terms)) as f64).sqrt();
        let q = q / scale;
        let mut scores = matmul(q.clone(), k.clone().swap_dims(2, 3)); // (B, nh, T, T)
        if let (Some(relative), Some(inputs)) = (&self.relative, relative_inputs) {
            let rel =
                self.pos_dropout.forward(inputs.embeddings.clone()).reshape([1, 2 * relative.span, heads * head_size]);
            // One row for the batch; one per batch row when a mixed batch's adapters change
            // this projection (`lora_adapter::with_adapters`).
            let positions = |proj: &LoraLinear<B>| {
                let projected = proj.forward(rel.clone());
                let rows = projected.dims()[0];
                projected.reshape([rows, 2 * relative.span, heads, head_size]).swap_dims(1, 2)
            }; // (1 or B, nh, 2S, hs)
            if relative.c2p {
                let pos_key = positions(self.pos_key_proj.as_ref().unwrap_or(&self.key_proj));
                let c2p = matmul(q.clone(), pos_key.swap_dims(2, 3)); // (B, nh, T, 2S)
                scores = scores + relative_gather(c2p, &inputs.c2p, false);
            }
            if relative.p2c {
                let pos_query = positions(self.pos_query_proj.as_ref().unwrap_or(&self.query_proj)) / scale;
                let p2c = matmul(k, pos_query.swap_dims(2, 3)); // (B, nh, T keys, 2S)
                scores = scores + relative_gather(p2c, &inputs.p2c, true);
            }
        }
        dropout_matmul_into_heads(masked_softmax(scores, mask_bias), v, &self.dropout).swap_dims(1, 2).reshape([
            batch,
            seq,
            heads * head_size,
        ])
    }
}

/// `DebertaV2Attention`: the disentangled self-attention and BERT's output block.
#[derive(Module, Debug)]
pub struct DebertaV2Attention<B: Backend> {
    /// Checkpoint key `self`.
    pub self_attention: DisentangledSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

/// `DebertaV2Layer`: attention, intermediate, output, as BERT's.
#[derive(Module, Debug)]
pub struct DebertaV2Layer<B: Backend> {
    pub attention: DebertaV2Attention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> DebertaV2Layer<B> {
    fn load(w: &mut Weights<B>, at: &Key, config: &DebertaV2Config, spec: &EncoderSpec) -> Result<Self> {
        let attention = at.pp("attention");
        let self_attention = DisentangledSelfAttention::load(w, &attention.pp("self"), config)?;
        let output = BertSelfOutput::load(w, &attention.pp("output"), spec)?;
        let intermediate = BertIntermediate::load(w, &at.pp("intermediate"), spec)?;
        let out = BertOutput::load(w, &at.pp("output"), spec)?;
        Ok(Self { attention: DebertaV2Attention { self_attention, output }, intermediate, output: out })
    }

    fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>, rel: Option<&RelativeInputs<B>>) -> Tensor<B, 3> {
        let attended = self.attention.self_attention.forward(hidden.clone(), mask_bias, rel);
        let attended = self.attention.output.forward(attended, hidden);
        let intermediate = self.intermediate.forward(attended.clone());
        self.output.forward(intermediate, attended)
    }
}

/// `DebertaV2Encoder`: the layers, and the relative-position table they share.
#[derive(Module, Debug)]
pub struct DebertaV2Encoder<B: Backend> {
    pub layer: Vec<DebertaV2Layer<B>>,
    pub rel_embeddings: Option<Embedding<B>>,
    /// Checkpoint key `LayerNorm`: on the relative embeddings (`norm_rel_ebd = "layer_norm"`).
    pub layer_norm: Option<LayerNorm<B>>,
}

/// `DebertaV2Embeddings`: word (+ absolute position, + token type) embeddings, an optional
/// projection, LayerNorm, padding zeroed, dropout.
#[derive(Module, Debug)]
pub struct DebertaV2Embeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Option<Embedding<B>>,
    pub token_type_embeddings: Option<Embedding<B>>,
    pub embed_proj: Option<LoraLinear<B>>,
    /// Checkpoint key `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

/// `DebertaV2Model`.
#[derive(Module, Debug)]
pub struct DebertaV2Model<B: Backend> {
    pub embeddings: DebertaV2Embeddings<B>,
    pub encoder: DebertaV2Encoder<B>,
}

impl<B: Backend> DebertaV2Model<B> {
    fn load(w: &mut Weights<B>, at: &Key, config: &DebertaV2Config) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let width = config.embedding_size.unwrap_or(h);
        let e = at.pp("embeddings");
        let position = e.pp("position_embeddings");
        let embeddings = DebertaV2Embeddings {
            word_embeddings: w.embedding(
                &e.pp("word_embeddings"),
                config.vocab_size,
                width,
                Some(config.pad_token_id),
            )?,
            position_embeddings: if config.position_biased_input {
                Some(w.embedding(&position, config.max_position_embeddings, width, None)?)
            } else {
                // transformers ignores a checkpoint's table it does not use.
                w.skip(&position.pp("weight"));
                None
            },
            token_type_embeddings: match config.type_vocab_size {
                0 => None,
                n => Some(w.embedding(&e.pp("token_type_embeddings"), n, width, None)?),
            },
            embed_proj: if width != h { Some(w.linear_with(&e.pp("embed_proj"), width, h, false)?) } else { None },
            layer_norm: w.layer_norm(&e.pp("LayerNorm"), h, eps)?,
            dropout: Dropout::new(config.hidden_dropout_prob),
        };
        let spec = config.encoder_spec()?;
        let enc = at.pp("encoder");
        let layer = (0..config.num_hidden_layers)
            .map(|i| DebertaV2Layer::load(w, &enc.pp("layer").pp(i), config, &spec))
            .collect::<Result<_>>()?;
        let rel_embeddings = if config.relative_attention {
            Some(w.embedding(&enc.pp("rel_embeddings"), 2 * config.span(), h, None)?)
        } else {
            None
        };
        let norm_rel = config.norm_rel_ebd.split('|').any(|n| n.trim().eq_ignore_ascii_case("layer_norm"));
        let layer_norm = if norm_rel { Some(w.layer_norm(&enc.pp("LayerNorm"), h, eps)?) } else { None };
        Ok(Self { embeddings, encoder: DebertaV2Encoder { layer, rel_embeddings, layer_norm } })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        let [batch, seq] = input.input_ids.dims();
        let mask = input.attention_mask.clone().float().reshape([batch, seq, 1]);
        let e = &self.embeddings;
        let mut embedded = e.word_embeddings.forward(input.input_ids);
        if let Some(positions) = &e.position_embeddings {
            let ids =
                Tensor::<B, 1, Int>::arange(0..seq as i64, &embedded.device()).reshape([1, seq]).expand([batch, seq]);
            embedded = add(embedded, positions.forward(ids));
        }
        if let Some(types) = &e.token_type_embeddings {
            embedded = add(embedded, types.forward(input.token_type_ids));
        }
        if let Some(project) = &e.embed_proj {
            embedded = project.forward(embedded);
        }
        let hidden = e.dropout.forward(e.layer_norm.forward(embedded) * mask);
        let mask_bias = attention_bias(input.attention_mask);
        let enc = &self.encoder;
        let relative = enc.layer.first().and_then(|l| l.attention.self_attention.relative.as_ref());
        let rel = match (relative, &enc.rel_embeddings) {
            (Some(relative), Some(table)) => {
                let table = table.weight.val();
                let embeddings = match &enc.layer_norm {
                    Some(norm) => norm.forward(table),
                    None => table,
                };
                let (c2p, p2c) = relative.indices(seq);
                Some(RelativeInputs { embeddings, c2p, p2c })
            }
            _ => None,
        };
        enc.layer.iter().fold(hidden, |hidden, layer| layer.forward(hidden, mask_bias.clone(), rel.as_ref()))
    }
}

/// `ContextPooler`: dropout, `dense`, the activation, on the first token.
#[derive(Module, Debug)]
pub struct ContextPooler<B: Backend> {
    pub dense: LoraLinear<B>,
    pub dropout: Dropout,
    pub activation: Activation,
}

/// `DebertaV2ForSequenceClassification`.
#[derive(Module, Debug)]
pub struct DebertaV2ForSequenceClassification<B: Backend> {
    pub deberta: DebertaV2Model<B>,
    pub pooler: ContextPooler<B>,
    pub classifier: LoraLinear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> DebertaV2ForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &DebertaV2Config) -> Result<Self> {
        let h = config.hidden_size;
        let deberta = DebertaV2Model::load(w, &Key::root().pp("deberta"), config)?;
        let pooler = ContextPooler {
            dense: w.linear(&Key::root().pp("pooler").pp("dense"), h, h)?,
            dropout: Dropout::new(config.pooler_dropout),
            activation: Activation::named("pooler_hidden_act", &config.pooler_hidden_act)
                .map_err(crate::EncoderError::invalid_config)?,
        };
        Ok(Self {
            deberta,
            pooler,
            classifier: w.output_linear(&Key::root().pp("classifier"), h, config.head.num_labels(), true)?,
            dropout: Dropout::new(config.cls_dropout.unwrap_or(config.hidden_dropout_prob)),
        })
    }
}

impl<B: Backend> AdaptableModel<B> for DebertaV2Layer<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        let attention = &mut self.attention.self_attention;
        f(&mut attention.query_proj);
        f(&mut attention.key_proj);
        f(&mut attention.value_proj);
        attention.pos_key_proj.each_linear(f);
        attention.pos_query_proj.each_linear(f);
        f(&mut self.attention.output.dense);
        f(&mut self.intermediate.dense);
        f(&mut self.output.dense);
    }
}

impl<B: Backend> AdaptableModel<B> for DebertaV2ForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.deberta.embeddings.embed_proj.each_linear(f);
        self.deberta.encoder.layer.each_linear(f);
        f(&mut self.pooler.dense);
        f(&mut self.classifier);
    }
}

impl<B: Backend> Classifier<B> for DebertaV2ForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        let p = &self.pooler;
        let pooled =
            activate(p.activation, p.dense.forward(p.dropout.forward(first_token(self.deberta.forward(input)))));
        self.classifier.forward(self.dropout.forward(pooled))
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.deberta.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.dims()[1]
    }
}

/// DeBERTa-v2 and -v3 (`microsoft/deberta-v3-base`, `mdeberta-v3-base`, ...).
#[derive(Debug, Clone, Copy)]
pub struct DebertaV2;

impl Family for DebertaV2 {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "deberta-v2",
        architecture: "DebertaV2",
        class: "DebertaV2ForSequenceClassification",
        base_model_prefix: "deberta",
        default_targets: Ok(&["query_proj", "value_proj"]),
        // The masked-LM heads of the Hub's checkpoints (v3's `lm_predictions`, the legacy `cls`).
        unused_keys: &["lm_predictions.", "mask_predictions.", "cls.", "lm_head."],
        head: &["pooler.", "classifier."],
        aliases: &[],
        tokenizer_models: &["Unigram"],
    };
    type Config = DebertaV2Config;
    type Model<B: Backend> = DebertaV2ForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<DebertaV2Config, crate::error::ConfigError> {
        let config: DebertaV2Config = serde_json::from_value(json.clone())?;
        config.validate()?;
        Ok(config)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &DebertaV2Config) -> Result<Self::Model<B>> {
        DebertaV2ForSequenceClassification::load(w, config)
    }
}

#[cfg(test)]
mod tests {
    use super::log_bucket;

    /// transformers' `make_log_bucket_position(rel, 256, 512)`: exact inside ±128, then
    /// logarithmic, symmetric.
    #[test]
    fn log_buckets_match_transformers() {
        let cases = [(0, 0), (5, 5), (-127, -127), (128, 128), (129, 129), (200, 169), (511, 255), (-300, -207)];
        for (rel, bucket) in cases {
            assert_eq!(log_bucket(rel, 256, 512), bucket, "rel {rel}");
        }
    }
}
