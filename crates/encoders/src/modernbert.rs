//! ModernBERT (`modeling_modernbert.py`): token embeddings without positions, pre-norm layers
//! (layer 0's `attn_norm` is the identity) with a fused `Wqkv`, rotary position embeddings
//! (`global_rope_theta` on global layers, `local_rope_theta` on local ones), global attention
//! every `global_attn_every_n_layers` layers and a sliding window of `local_attention` tokens
//! elsewhere, a GeGLU MLP (`Wi` split into input and gate), `final_norm`; no biases unless the
//! config asks; the head `head.dense` -> activation -> `head.norm` -> `classifier` on the first
//! token or the mean of the tokens (`classifier_pooling`). Checkpoint keys are transformers'
//! (`model.layers.0.attn.Wqkv.weight`), so the fields keep their capitals.
//!
//! Configs come in two spellings, read as the transformers that wrote them reads them:
//! transformers 4 writes `global_rope_theta`, `local_rope_theta` and `global_attn_every_n_layers`;
//! transformers 5 writes `layer_types` (`full_attention` / `sliding_attention` per layer) and
//! `rope_parameters` (per layer type: `rope_type`, `rope_theta`, and the type's own keys), and
//! applies a legacy `rope_scaling` to both types. Of transformers' rope types, `default` and
//! `linear` are implemented; the others (`dynamic`, `yarn`, `longrope`, `llama3`, ...) are
//! refused by name, never ignored.
#![allow(non_snake_case)]

use burn::module::Module;
use burn::tensor::backend::Backend;

use burn::tensor::Tensor;
use kernels::{Dropout, LayerNorm, RotaryTables, add, geglu, rotary};
use lora_adapter::{AdaptableModel, LoraLinear};
use serde::{Deserialize, Serialize};

use crate::activation::{Activation, activate};
use crate::attention::attend_heads;
use crate::config::{check_dropouts, check_heads};
use crate::error::{ConfigError, Result};
use crate::family::{Classifier, Family, FamilyConfig, FamilyInfo, HeadConfig};
use crate::input::{EncoderInput, attention_bias, first_token};
use crate::rotary::Rotary;
use crate::weights::{Key, Weights};

/// `ModernBertConfig`, with transformers' names and defaults (ModernBERT-base's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub hidden_activation: String,
    pub max_position_embeddings: usize,
    pub initializer_range: f64,
    /// Fresh weights are a normal cut at this many standard deviations.
    pub initializer_cutoff_factor: f64,
    pub norm_eps: f64,
    pub norm_bias: bool,
    pub pad_token_id: usize,
    pub global_rope_theta: f64,
    pub attention_bias: bool,
    pub attention_dropout: f64,
    pub global_attn_every_n_layers: usize,
    /// The sliding window of local layers, in tokens (half of it on each side of a query).
    pub local_attention: usize,
    /// Unset: `global_rope_theta`.
    pub local_rope_theta: Option<f64>,
    pub embedding_dropout: f64,
    pub mlp_bias: bool,
    pub mlp_dropout: f64,
    /// transformers 5: each layer's attention, `full_attention` or `sliding_attention` (over
    /// `global_attn_every_n_layers` when given).
    pub layer_types: Option<Vec<String>>,
    /// transformers 5: the rotary settings of `full_attention` and `sliding_attention` layers
    /// (over `global_rope_theta` / `local_rope_theta` when given).
    pub rope_parameters: Option<serde_json::Value>,
    /// Legacy rotary scaling, applied to both layer types as transformers 5 does.
    pub rope_scaling: Option<serde_json::Value>,
    /// `cls` (the first token) or `mean` (of the real tokens).
    pub classifier_pooling: String,
    pub classifier_dropout: f64,
    /// The bias of `head.dense` (the classifier itself always has one).
    pub classifier_bias: bool,
    pub classifier_activation: String,
    #[serde(flatten)]
    pub head: HeadConfig,
}

impl Default for ModernBertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 50368,
            hidden_size: 768,
            intermediate_size: 1152,
            num_hidden_layers: 22,
            num_attention_heads: 12,
            hidden_activation: "gelu".into(),
            max_position_embeddings: 8192,
            initializer_range: 0.02,
            initializer_cutoff_factor: 2.0,
            norm_eps: 1e-5,
            norm_bias: false,
            pad_token_id: 50283,
            global_rope_theta: 160000.0,
            attention_bias: false,
            attention_dropout: 0.0,
            global_attn_every_n_layers: 3,
            local_attention: 128,
            local_rope_theta: Some(10000.0),
            embedding_dropout: 0.0,
            mlp_bias: false,
            mlp_dropout: 0.0,
            layer_types: None,
            rope_parameters: None,
            rope_scaling: None,
            classifier_pooling: "cls".into(),
            classifier_dropout: 0.0,
            classifier_bias: false,
            classifier_activation: "gelu".into(),
            head: HeadConfig::default(),
        }
    }
}

impl ModernBertConfig {
    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Whether layer `i` attends globally (else through the sliding window): its entry of
    /// `layer_types`, else every `global_attn_every_n_layers`-th layer from the first.
    fn is_global(&self, i: usize) -> std::result::Result<bool, ConfigError> {
        let Some(types) = &self.layer_types else {
            return Ok(i.is_multiple_of(self.global_attn_every_n_layers));
        };
        if types.len() != self.num_hidden_layers {
            return Err(ConfigError::Invalid(format!(
                "layer_types has {} entries for num_hidden_layers {}",
                types.len(),
                self.num_hidden_layers
            )));
        }
        match types[i].as_str() {
            "full_attention" => Ok(true),
            "sliding_attention" => Ok(false),
            other => Err(ConfigError::Invalid(format!(
                "layer_types[{i}] is {other:?}; expected \"full_attention\" or \"sliding_attention\""
            ))),
        }
    }

    /// The rotary settings of global (`full_attention`) or local (`sliding_attention`) layers,
    /// as transformers 5's `ModernBertConfig` resolves them: `rope_parameters[type]` with a
    /// legacy `rope_scaling` over it, `rope_theta` defaulting to `global_rope_theta` (global)
    /// or `local_rope_theta` (local; unset: the global one). A rope type or key that would
    /// change the numbers and is not implemented is an error naming it.
    pub fn rope(&self, global: bool) -> std::result::Result<Rope, ConfigError> {
        let kind = if global { "full_attention" } else { "sliding_attention" };
        let mut params = serde_json::Map::new();
        let mut from = |value: &serde_json::Value, key: &str| -> std::result::Result<(), ConfigError> {
            match value {
                serde_json::Value::Object(map) => {
                    params.extend(map.clone());
                    Ok(())
                }
                serde_json::Value::Null => Ok(()),
                other => Err(ConfigError::Invalid(format!("{key} must be an object, got {other}"))),
            }
        };
        if let Some(rope) = &self.rope_parameters {
            match rope {
                serde_json::Value::Object(by_type) => {
                    if let Some(key) =
                        by_type.keys().find(|k| !["full_attention", "sliding_attention"].contains(&k.as_str()))
                    {
                        return Err(ConfigError::Invalid(format!(
                            "rope_parameters.{key}: ModernBERT's rope_parameters are given per layer type, \
                             under \"full_attention\" and \"sliding_attention\""
                        )));
                    }
                    if let Some(value) = by_type.get(kind) {
                        from(value, &format!("rope_parameters.{kind}"))?;
                    }
                }
                serde_json::Value::Null => {}
                other => return Err(ConfigError::Invalid(format!("rope_parameters must be an object, got {other}"))),
            }
        }
        if let Some(scaling) = &self.rope_scaling {
            from(scaling, "rope_scaling")?;
        }
        let at = if self.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
            format!("rope_parameters.{kind} (with rope_scaling)")
        } else {
            format!("rope_parameters.{kind}")
        };
        let number = |key: &str| -> std::result::Result<Option<f64>, ConfigError> {
            match params.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .map(Some)
                    .ok_or_else(|| ConfigError::Invalid(format!("{at}.{key} must be a positive number, got {v}"))),
            }
        };
        let theta = match number("rope_theta")? {
            Some(theta) => theta,
            None if global => self.global_rope_theta,
            None => self.local_rope_theta.unwrap_or(self.global_rope_theta),
        };
        if let (Some(a), Some(b)) = (params.get("rope_type"), params.get("type"))
            && a != b
        {
            return Err(ConfigError::Invalid(format!("{at}: rope_type {a} and type {b} disagree")));
        }
        let rope_type = match params.get("rope_type").or_else(|| params.get("type")) {
            None | Some(serde_json::Value::Null) => "default".to_string(),
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(other) => return Err(ConfigError::Invalid(format!("{at}.rope_type must be a string, got {other}"))),
        };
        if let Some(p) = number("partial_rotary_factor")?
            && p != 1.0
        {
            return Err(ConfigError::Invalid(format!(
                "{at}.partial_rotary_factor {p} is not supported (only 1: the whole head rotates)"
            )));
        }
        let factor = match rope_type.as_str() {
            "default" => 1.0,
            "linear" => number("factor")?
                .ok_or_else(|| ConfigError::Invalid(format!("{at}: rope_type \"linear\" needs a factor")))?,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "{at}.rope_type {other:?} is not supported: \"default\" and \"linear\" are (transformers' \
                     dynamic, yarn, longrope, llama3 and proportional scalings are not implemented here)"
                )));
            }
        };
        Ok(Rope { theta, factor })
    }
}

/// One layer type's rotary settings: the base `theta` and linear scaling's `factor` (positions
/// divided by it; 1 without scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub factor: f64,
}

impl FamilyConfig for ModernBertConfig {
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
        check_heads(self.hidden_size, self.num_attention_heads, "hidden_size", "num_attention_heads")?;
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "the rotary embedding needs an even head size, got {} (hidden_size / num_attention_heads)",
                self.head_dim()
            )
            .into());
        }
        if self.global_attn_every_n_layers == 0 {
            return Err(ConfigError::Invalid("global_attn_every_n_layers must be at least 1".into()));
        }
        for i in 0..self.num_hidden_layers {
            self.is_global(i)?;
        }
        self.rope(true)?;
        self.rope(false)?;
        if !["cls", "mean"].contains(&self.classifier_pooling.as_str()) {
            return Err(format!(
                "classifier_pooling {:?} is not supported; expected \"cls\" or \"mean\"",
                self.classifier_pooling
            )
            .into());
        }
        Activation::named("hidden_activation", &self.hidden_activation)?;
        Activation::named("classifier_activation", &self.classifier_activation)?;
        check_dropouts(&[
            ("attention_dropout", self.attention_dropout),
            ("embedding_dropout", self.embedding_dropout),
            ("mlp_dropout", self.mlp_dropout),
            ("classifier_dropout", self.classifier_dropout),
        ])
    }
}

/// `ModernBertEmbeddings`: token embeddings, LayerNorm, dropout (no positions: rotary ones
/// are applied in the attention).
#[derive(Module, Debug)]
pub struct ModernBertEmbeddings<B: Backend> {
    pub tok_embeddings: burn::nn::Embedding<B>,
    pub norm: LayerNorm<B>,
    pub drop: Dropout,
}

/// `ModernBertAttention`: the fused `Wqkv`, rotary embeddings, scaled dot-product attention
/// (global, or in a sliding window), `Wo`, dropout.
#[derive(Module, Debug)]
pub struct ModernBertAttention<B: Backend> {
    pub Wqkv: LoraLinear<B>,
    pub Wo: LoraLinear<B>,
    /// On the probabilities.
    pub dropout: Dropout,
    /// After `Wo`.
    pub out_drop: Dropout,
    pub num_heads: usize,
    /// Half the sliding window (`local_attention // 2`), for local layers.
    pub window: Option<usize>,
    pub rotary: Rotary,
}

impl<B: Backend> ModernBertAttention<B> {
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, mask_bias: `[batch, 1, 1, seq]`, output: `[batch, seq, hidden]`
    /// - tables: the rotary tables of this layer's base for `seq` ([`Rotary::tables`])
    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>, tables: &RotaryTables) -> Tensor<B, 3> {
        let [batch, seq, width] = hidden.dims();
        let (heads, head_dim) = (self.num_heads, width / self.num_heads);
        let qkv = self.Wqkv.forward(hidden); // (B, T, 3 * hidden), as (B, T, 3, nh, hs)
        let part = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..seq, i * width..(i + 1) * width])
                .reshape([batch, seq, heads, head_dim])
                .swap_dims(1, 2) // (B, nh, T, hs)
        };
        let q = rotary(part(0), tables) / (head_dim as f64).sqrt();
        let k = rotary(part(1), tables);
        let attended = attend_heads(q, k, part(2), mask_bias, self.window, &self.dropout);
        self.out_drop.forward(self.Wo.forward(attended))
    }
}

/// `ModernBertMLP`: `Wo(drop(act(input) * gate))` where `input, gate = Wi(x).chunk(2)`.
#[derive(Module, Debug)]
pub struct ModernBertMLP<B: Backend> {
    pub Wi: LoraLinear<B>,
    pub Wo: LoraLinear<B>,
    pub drop: Dropout,
    pub act: Activation,
}

impl<B: Backend> ModernBertMLP<B> {
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let projected = self.Wi.forward(hidden); // (B, T, 2 * intermediate)
        let gated = match self.act {
            Activation::Gelu => geglu(projected),
            act => {
                let [b, t, two] = projected.dims();
                let input = projected.clone().slice([0..b, 0..t, 0..two / 2]);
                activate(act, input) * projected.slice([0..b, 0..t, two / 2..two])
            }
        };
        self.Wo.forward(self.drop.forward(gated))
    }
}

/// `ModernBertEncoderLayer`: `h + attn(attn_norm(h))`, then `h + mlp(mlp_norm(h))`.
#[derive(Module, Debug)]
pub struct ModernBertEncoderLayer<B: Backend> {
    /// The identity in layer 0 (the embeddings end with a LayerNorm).
    pub attn_norm: Option<LayerNorm<B>>,
    pub attn: ModernBertAttention<B>,
    pub mlp_norm: LayerNorm<B>,
    pub mlp: ModernBertMLP<B>,
}

impl<B: Backend> ModernBertEncoderLayer<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &ModernBertConfig, i: usize) -> Result<Self> {
        let (h, eps, norm_bias) = (config.hidden_size, config.norm_eps, config.norm_bias);
        // transformers' `_init_weights`: inputs at `initializer_range`, outputs scaled down by
        // the depth.
        let out_std = config.initializer_range / (2.0 * config.num_hidden_layers as f64).sqrt();
        let attn_norm = if i == 0 { None } else { Some(w.layer_norm_with(&at.pp("attn_norm"), h, eps, norm_bias)?) };
        let global = config.is_global(i).map_err(crate::EncoderError::invalid_config)?;
        let rope = config.rope(global).map_err(crate::EncoderError::invalid_config)?;
        let window = if global { None } else { Some(config.local_attention / 2) };
        let attn = at.pp("attn");
        let attn = ModernBertAttention {
            Wqkv: w.linear_with(&attn.pp("Wqkv"), h, 3 * h, config.attention_bias)?,
            Wo: w.with_std(out_std, |w| w.linear_with(&attn.pp("Wo"), h, h, config.attention_bias))?,
            dropout: Dropout::new(config.attention_dropout),
            out_drop: Dropout::new(config.attention_dropout),
            num_heads: config.num_attention_heads,
            window,
            rotary: Rotary { theta: rope.theta, factor: rope.factor, head_dim: config.head_dim() },
        };
        let mlp_norm = w.layer_norm_with(&at.pp("mlp_norm"), h, eps, norm_bias)?;
        let mlp = at.pp("mlp");
        let mlp = ModernBertMLP {
            Wi: w.linear_with(&mlp.pp("Wi"), h, 2 * config.intermediate_size, config.mlp_bias)?,
            Wo: w.with_std(out_std, |w| w.linear_with(&mlp.pp("Wo"), config.intermediate_size, h, config.mlp_bias))?,
            drop: Dropout::new(config.mlp_dropout),
            act: Activation::named("hidden_activation", &config.hidden_activation)
                .map_err(crate::EncoderError::invalid_config)?,
        };
        Ok(Self { attn_norm, attn, mlp_norm, mlp })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>, tables: &RotaryTables) -> Tensor<B, 3> {
        let normed = match &self.attn_norm {
            Some(norm) => norm.forward(hidden.clone()),
            None => hidden.clone(),
        };
        let hidden = add(hidden, self.attn.forward(normed, mask_bias, tables));
        add(hidden.clone(), self.mlp.forward(self.mlp_norm.forward(hidden)))
    }
}

/// `ModernBertModel`: embeddings, layers, `final_norm`.
#[derive(Module, Debug)]
pub struct ModernBertModel<B: Backend> {
    pub embeddings: ModernBertEmbeddings<B>,
    pub layers: Vec<ModernBertEncoderLayer<B>>,
    pub final_norm: LayerNorm<B>,
}

impl<B: Backend> ModernBertModel<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &ModernBertConfig) -> Result<Self> {
        let (h, eps, norm_bias) = (config.hidden_size, config.norm_eps, config.norm_bias);
        let embeddings = at.pp("embeddings");
        let embeddings = ModernBertEmbeddings {
            // `_init_weights` draws the whole table, padding row included.
            tok_embeddings: w.embedding(&embeddings.pp("tok_embeddings"), config.vocab_size, h, None)?,
            norm: w.layer_norm_with(&embeddings.pp("norm"), h, eps, norm_bias)?,
            drop: Dropout::new(config.embedding_dropout),
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| ModernBertEncoderLayer::load(w, &at.pp("layers").pp(i), config, i))
            .collect::<Result<_>>()?;
        Ok(Self { embeddings, layers, final_norm: w.layer_norm_with(&at.pp("final_norm"), h, eps, norm_bias)? })
    }

    /// `[batch, seq, hidden]`.
    pub fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        let mask_bias = attention_bias(input.attention_mask);
        let e = &self.embeddings;
        let hidden = e.drop.forward(e.norm.forward(e.tok_embeddings.forward(input.input_ids)));
        // One set of rotary tables per setting (global and local), not one per layer.
        let seq = hidden.dims()[1];
        let mut tables: Vec<(&Rotary, RotaryTables)> = Vec::with_capacity(2);
        for layer in &self.layers {
            let rotary = &layer.attn.rotary;
            if !tables.iter().any(|(r, _)| *r == rotary) {
                tables.push((rotary, rotary.tables(seq)));
            }
        }
        let hidden = self.layers.iter().fold(hidden, |hidden, layer| {
            match tables.iter().find(|(r, _)| *r == &layer.attn.rotary) {
                Some((_, tables)) => layer.forward(hidden, mask_bias.clone(), tables),
                None => unreachable!("a table was made for every layer's base above"),
            }
        });
        self.final_norm.forward(hidden)
    }
}

/// `ModernBertPredictionHead`: `norm(act(dense(x)))`.
#[derive(Module, Debug)]
pub struct ModernBertPredictionHead<B: Backend> {
    pub dense: LoraLinear<B>,
    pub act: Activation,
    pub norm: LayerNorm<B>,
}

/// How the head reads the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token.
    Cls,
    /// The mean over the real tokens (the attention mask's).
    Mean,
}

/// `ModernBertForSequenceClassification`.
#[derive(Module, Debug)]
pub struct ModernBertForSequenceClassification<B: Backend> {
    pub model: ModernBertModel<B>,
    pub head: ModernBertPredictionHead<B>,
    pub drop: Dropout,
    pub classifier: LoraLinear<B>,
    pub pooling: Pooling,
}

impl<B: Backend> ModernBertForSequenceClassification<B> {
    pub fn load(w: &mut Weights<B>, config: &ModernBertConfig) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.norm_eps);
        let config_error = crate::EncoderError::invalid_config;
        w.truncate_normal_at(Some(config.initializer_cutoff_factor));
        let model = ModernBertModel::load(w, &Key::root().pp("model"), config)?;
        let head = Key::root().pp("head");
        let out_std = config.initializer_range / (2.0 * config.num_hidden_layers as f64).sqrt();
        let head = ModernBertPredictionHead {
            dense: w.with_std(out_std, |w| w.linear_with(&head.pp("dense"), h, h, config.classifier_bias))?,
            act: Activation::named("classifier_activation", &config.classifier_activation).map_err(config_error)?,
            norm: w.layer_norm_with(&head.pp("norm"), h, eps, config.norm_bias)?,
        };
        let classifier = w.with_std((h as f64).powf(-0.5), |w| {
            w.output_linear(&Key::root().pp("classifier"), h, config.head.num_labels(), true)
        })?;
        w.truncate_normal_at(None);
        let pooling = if config.classifier_pooling == "mean" { Pooling::Mean } else { Pooling::Cls };
        Ok(Self { model, head, drop: Dropout::new(config.classifier_dropout), classifier, pooling })
    }
}

impl<B: Backend> AdaptableModel<B> for ModernBertEncoderLayer<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        f(&mut self.attn.Wqkv);
        f(&mut self.attn.Wo);
        f(&mut self.mlp.Wi);
        f(&mut self.mlp.Wo);
    }
}

impl<B: Backend> AdaptableModel<B> for ModernBertForSequenceClassification<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.model.layers.each_linear(f);
        f(&mut self.head.dense);
        f(&mut self.classifier);
    }
}

impl<B: Backend> Classifier<B> for ModernBertForSequenceClassification<B> {
    fn forward(&self, input: EncoderInput<B>) -> Tensor<B, 2> {
        let mask = input.attention_mask.clone();
        let hidden = self.model.forward(input);
        let pooled = match self.pooling {
            Pooling::Cls => first_token(hidden),
            Pooling::Mean => {
                let [batch, seq, width] = hidden.dims();
                let mask = mask.float().reshape([batch, seq, 1]);
                let sum = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
                sum / mask.sum_dim(1).reshape([batch, 1])
            }
        };
        let h = &self.head;
        let pooled = h.norm.forward(activate(h.act, h.dense.forward(pooled)));
        self.classifier.forward(self.drop.forward(pooled))
    }

    fn last_hidden_state(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        self.model.forward(input)
    }

    fn num_labels(&self) -> usize {
        self.classifier.dims()[1]
    }
}

/// ModernBERT (and the models built on it: Ettin, mmBERT, gte-modernbert).
#[derive(Debug, Clone, Copy)]
pub struct ModernBert;

impl Family for ModernBert {
    const INFO: FamilyInfo = FamilyInfo {
        model_type: "modernbert",
        architecture: "ModernBert",
        class: "ModernBertForSequenceClassification",
        base_model_prefix: "model",
        // PEFT 0.17 has no ModernBERT entry in its default targets.
        default_targets: Err(
            "its linears are Wqkv, attn.Wo, mlp.Wi, mlp.Wo (and head.dense); the usual choice is [\"Wqkv\", \"attn.Wo\"] (a bare \"Wo\" matches both attn.Wo and mlp.Wo)",
        ),
        // The masked-LM checkpoints' decoder; its `head` is the classifier's too.
        unused_keys: &["decoder."],
        head: &["head.", "classifier."],
        aliases: &[],
        tokenizer_models: &["BPE"],
    };
    type Config = ModernBertConfig;
    type Model<B: Backend> = ModernBertForSequenceClassification<B>;

    fn config(json: &serde_json::Value) -> std::result::Result<ModernBertConfig, crate::error::ConfigError> {
        let config: ModernBertConfig = serde_json::from_value(json.clone())?;
        config.validate()?;
        Ok(config)
    }

    fn load<B: Backend>(w: &mut Weights<B>, config: &ModernBertConfig) -> Result<Self::Model<B>> {
        ModernBertForSequenceClassification::load(w, config)
    }
}
