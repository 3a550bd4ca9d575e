//! `LoraConfig` with PEFT's names and meanings; read from and written to `adapter_config.json`.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Which linears get an adapter, as PEFT's `target_modules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Names matched as PEFT matches them: the whole module name, or its last dotted segments
    /// (`"query"` matches `bert.encoder.layer.0.attention.self.query`). `["all-linear"]` (or
    /// the string `"all-linear"`) means every linear except the output head.
    Names(Vec<String>),
    /// A regular expression that must match the whole module name (`re.fullmatch`).
    Regex(String),
}

/// How fresh adapters start, as PEFT's `init_lora_weights`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLoraWeights {
    /// `true`: A Kaiming-uniform (a = √5), B zero; `false`: both as `nn.Linear` draws them
    /// (the adapter then changes the output from the start).
    Flag(bool),
    /// `"gaussian"`: A normal with std 1/r, B zero; `"pissa"` / `"pissa_niter_N"` / `"olora"`:
    /// from the SVD / QR of the base weight, which keeps the residual ([`crate::init`]).
    Method(String),
}

/// A layer index or list of them, as PEFT's `layers_to_transform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Layers {
    One(usize),
    Many(Vec<usize>),
}

impl Layers {
    fn contains(&self, layer: usize) -> bool {
        match self {
            Self::One(l) => *l == layer,
            Self::Many(ls) => ls.contains(&layer),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Many(ls) if ls.is_empty())
    }
}

/// `layers_pattern`: a string or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

/// PEFT's `LoraConfig` and the `PeftConfig` fields it inherits, as `adapter_config.json` holds
/// them. Reading accepts any PEFT version's file (unknown keys are ignored); writing emits only
/// keys PEFT 0.13.2 knows, since that version refuses others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub peft_type: String,
    pub task_type: Option<String>,
    pub base_model_name_or_path: Option<String>,
    pub revision: Option<String>,
    pub inference_mode: bool,
    pub auto_mapping: Option<serde_json::Value>,
    pub r: usize,
    pub target_modules: Option<TargetModules>,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub fan_in_fan_out: bool,
    pub bias: String,
    pub use_rslora: bool,
    pub modules_to_save: Option<Vec<String>>,
    pub init_lora_weights: InitLoraWeights,
    pub layers_to_transform: Option<Layers>,
    pub layers_pattern: Option<Patterns>,
    /// Per-module rank overrides: a regex over the module name, to a rank (order matters).
    pub rank_pattern: IndexMap<String, usize>,
    /// Per-module alpha overrides, as `rank_pattern`.
    pub alpha_pattern: IndexMap<String, f64>,
    pub megatron_config: Option<serde_json::Value>,
    pub megatron_core: Option<String>,
    pub loftq_config: serde_json::Map<String, serde_json::Value>,
    pub use_dora: bool,
    pub layer_replication: Option<serde_json::Value>,
}

impl Default for LoraConfig {
    /// This project's defaults: PEFT's `LoraConfig` defaults, with `r = 8` on `query` and
    /// `value` for sequence classification.
    fn default() -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: Some("SEQ_CLS".into()),
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
            auto_mapping: None,
            r: 8,
            target_modules: Some(TargetModules::Names(vec!["query".into(), "value".into()])),
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            fan_in_fan_out: false,
            bias: "none".into(),
            use_rslora: false,
            modules_to_save: None,
            init_lora_weights: InitLoraWeights::Flag(true),
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: IndexMap::new(),
            alpha_pattern: IndexMap::new(),
            megatron_config: None,
            megatron_core: Some("megatron.core".into()),
            loftq_config: serde_json::Map::new(),
            use_dora: false,
            layer_replication: None,
        }
    }
}

/// What is wrong with a LoRA config's values: one this crate does not implement (the message
/// names the key and what it takes), or a pattern that is not a regex (`regex`'s error kept).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoraConfigError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{what} is not a valid regex: {source}")]
    Regex {
        what: String,
        #[source]
        source: regex::Error,
    },
}

/// The rank, alpha and scaling of one wrapped module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdapterShape {
    pub r: usize,
    pub alpha: f64,
    pub scaling: f64,
}

impl LoraConfig {
    /// Refuses what this crate does not implement, naming the key.
    pub fn validate(&self) -> Result<(), LoraConfigError> {
        if self.peft_type != "LORA" {
            return Err(LoraConfigError::Unsupported(format!(
                "peft_type is {:?}; only \"LORA\" is supported",
                self.peft_type
            )));
        }
        if self.r == 0 {
            return Err(LoraConfigError::Unsupported("r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(LoraConfigError::Unsupported(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            )));
        }
        if self.bias != "none" {
            return Err(LoraConfigError::Unsupported(format!(
                "bias = {:?} is not supported; expected \"none\"",
                self.bias
            )));
        }
        if self.fan_in_fan_out {
            return Err(LoraConfigError::Unsupported(
                "fan_in_fan_out = true is for GPT-2's Conv1D; BERT's linears need false".into(),
            ));
        }
        if self.layer_replication.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(LoraConfigError::Unsupported("layer_replication is not supported".into()));
        }
        match &self.init_lora_weights {
            InitLoraWeights::Flag(_) => {}
            InitLoraWeights::Method(m)
                if m == "gaussian" || crate::init::MutatingInit::of(&self.init_lora_weights).is_some() => {}
            InitLoraWeights::Method(m) => {
                return Err(LoraConfigError::Unsupported(format!(
                    "init_lora_weights = {m:?} is not supported; expected true, false, \"gaussian\", \"pissa\", \"pissa_niter_N\" (N a number of iterations) or \"olora\""
                )));
            }
        }
        if crate::init::MutatingInit::of(&self.init_lora_weights).is_some()
            && let Some(bad) = std::iter::once(self.lora_alpha)
                .chain(self.alpha_pattern.values().copied())
                .find(|a| !(*a > 0.0 && a.is_finite()))
        {
            // PiSSA and OLoRA divide the factors by the scaling (lora_alpha / r): NaN at 0.
            return Err(LoraConfigError::Unsupported(format!(
                "lora_alpha {bad} with init_lora_weights = {:?}: PiSSA and OLoRA divide by lora_alpha / r, so it must be above 0",
                self.init_lora_weights
            )));
        }
        if self.target_modules.is_none() {
            return Err(LoraConfigError::Unsupported("target_modules must name the linears to adapt".into()));
        }
        if let Some(TargetModules::Regex(re)) = &self.target_modules
            && re != "all-linear"
        {
            regex::Regex::new(re).map_err(|source| LoraConfigError::Regex { what: "target_modules".into(), source })?;
        }
        for key in self.rank_pattern.keys().chain(self.alpha_pattern.keys()) {
            regex::Regex::new(key)
                .map_err(|source| LoraConfigError::Regex { what: format!("rank/alpha pattern {key:?}"), source })?;
        }
        Ok(())
    }

    /// Whether the module `name` gets an adapter, as PEFT's `check_target_module_exists`.
    /// `is_output_layer` marks the head that `"all-linear"` leaves out.
    pub fn targets(&self, name: &str, is_output_layer: bool) -> bool {
        let Some(targets) = &self.target_modules else { return false };
        let names = match targets {
            TargetModules::Regex(re) if re == "all-linear" => return !is_output_layer,
            TargetModules::Regex(re) => {
                return regex::Regex::new(&format!("^(?:{re})$")).is_ok_and(|re| re.is_match(name));
            }
            TargetModules::Names(names) if names.len() == 1 && names[0] == "all-linear" => return !is_output_layer,
            TargetModules::Names(names) => names,
        };
        if names.iter().any(|t| t == name) {
            return true;
        }
        if !names.iter().any(|t| name.ends_with(&format!(".{t}"))) {
            return false;
        }
        match &self.layers_to_transform {
            Some(layers) if !layers.is_empty() => {
                layer_index(name, self.layers_pattern.as_ref()).is_some_and(|i| layers.contains(i))
            }
            _ => true,
        }
    }

    /// Whether the linear `name` is trained in full and saved with the adapter: PEFT wraps
    /// every module whose name ends with an entry of `modules_to_save` (a plain string suffix:
    /// `pre_classifier` ends with `classifier`), and everything inside it (RoBERTa's
    /// `classifier` holds `classifier.dense` and `classifier.out_proj`).
    pub fn saves_module(&self, name: &str) -> bool {
        let mut ancestors = name.match_indices('.').map(|(i, _)| &name[..i]).chain([name]);
        ancestors.any(|module| self.modules_to_save.iter().flatten().any(|m| module.ends_with(m.as_str())))
    }

    /// Rank and scaling for `name`, with `rank_pattern` / `alpha_pattern` overrides.
    ///
    /// As PEFT 0.13: the first key of `rank_pattern` then `alpha_pattern` for which
    /// `re.match(rf".*\.{key}$", name)` holds is looked up in both maps.
    pub fn shape_for(&self, name: &str) -> AdapterShape {
        let key = self
            .rank_pattern
            .keys()
            .chain(self.alpha_pattern.keys())
            .find(|k| regex::Regex::new(&format!(r"^.*\.(?:{k})$")).is_ok_and(|re| re.is_match(name)));
        let r = key.and_then(|k| self.rank_pattern.get(k)).copied().unwrap_or(self.r);
        let alpha = key.and_then(|k| self.alpha_pattern.get(k)).copied().unwrap_or(self.lora_alpha);
        let scaling = if self.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 };
        AdapterShape { r, alpha, scaling }
    }

    /// `modules_to_save` for sequence classification: PEFT adds `classifier` and `score` to
    /// whatever the user named for `SEQ_CLS`.
    pub fn with_task_defaults(mut self) -> Self {
        if self.task_type.as_deref() == Some("SEQ_CLS") {
            let mut modules = self.modules_to_save.take().unwrap_or_default();
            for m in ["classifier", "score"] {
                if !modules.iter().any(|x| x == m) {
                    modules.push(m.into());
                }
            }
            self.modules_to_save = Some(modules);
        }
        self
    }
}

/// The layer index of the module `name` under `config`'s `layers_pattern`.
pub(crate) fn layer_of(name: &str, config: &LoraConfig) -> Option<usize> {
    layer_index(name, config.layers_pattern.as_ref())
}

/// The layer index in a module name, as PEFT finds it for `layers_to_transform`.
fn layer_index(name: &str, patterns: Option<&Patterns>) -> Option<usize> {
    let patterns: Vec<String> = match patterns {
        None => vec![r"[^.]*".into()],
        Some(Patterns::One(p)) if p.is_empty() => vec![r"[^.]*".into()],
        Some(Patterns::One(p)) => vec![regex::escape(p)],
        Some(Patterns::Many(ps)) if ps.is_empty() => vec![r"[^.]*".into()],
        Some(Patterns::Many(ps)) => ps.iter().map(|p| regex::escape(p)).collect(),
    };
    patterns.iter().find_map(|p| {
        let re = regex::Regex::new(&format!(r"^.*\.{p}\.(\d+)\.")).ok()?;
        re.captures(name)?.get(1)?.as_str().parse().ok()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// PEFT wraps every module whose name ends with an entry (a string suffix, not a segment),
    /// and what is inside it.
    #[test]
    fn modules_to_save_match_as_peft_wraps_them() {
        let config = LoraConfig { modules_to_save: Some(vec!["classifier".into()]), ..LoraConfig::default() };
        assert!(config.saves_module("classifier"));
        assert!(config.saves_module("classifier.out_proj"), "inside RoBERTa's head module");
        assert!(config.saves_module("pre_classifier"), "DistilBERT's: PEFT's endswith matches it too");
        assert!(!config.saves_module("bert.pooler.dense"));
        assert!(!config.saves_module("classifier_extra.dense"));
    }

    const Q0: &str = "bert.encoder.layer.0.attention.self.query";
    const V1: &str = "bert.encoder.layer.1.attention.self.value";
    const K0: &str = "bert.encoder.layer.0.attention.self.key";

    #[test]
    fn names_match_on_dotted_suffixes_as_peft_does() {
        let config = LoraConfig::default();
        assert!(config.targets(Q0, false));
        assert!(config.targets(V1, false));
        assert!(!config.targets(K0, false));
        // `ery` is not a dotted suffix of `query`.
        let config =
            LoraConfig { target_modules: Some(TargetModules::Names(vec!["ery".into()])), ..Default::default() };
        assert!(!config.targets(Q0, false));
        let config =
            LoraConfig { target_modules: Some(TargetModules::Names(vec!["self.query".into()])), ..Default::default() };
        assert!(config.targets(Q0, false));
    }

    #[test]
    fn a_string_target_is_a_full_match_regex() {
        let config = LoraConfig {
            target_modules: Some(TargetModules::Regex(r".*layer\.1\..*(query|value)".into())),
            ..Default::default()
        };
        assert!(config.targets(V1, false));
        assert!(!config.targets(Q0, false));
        let config = LoraConfig { target_modules: Some(TargetModules::Regex("query".into())), ..Default::default() };
        assert!(!config.targets(Q0, false), "fullmatch, not search");
    }

    #[test]
    fn layers_to_transform_restricts_by_layer_index() {
        let config = LoraConfig { layers_to_transform: Some(Layers::Many(vec![1])), ..Default::default() };
        assert!(!config.targets(Q0, false));
        assert!(config.targets(V1, false));
        let config = LoraConfig {
            layers_to_transform: Some(Layers::One(0)),
            layers_pattern: Some(Patterns::One("layer".into())),
            ..Default::default()
        };
        assert!(config.targets(Q0, false));
        assert!(!config.targets(V1, false));
    }

    #[test]
    fn all_linear_leaves_out_the_output_layer() {
        let config =
            LoraConfig { target_modules: Some(TargetModules::Regex("all-linear".into())), ..Default::default() };
        assert!(config.targets(K0, false));
        assert!(!config.targets("classifier", true));
    }

    #[test]
    fn scaling_and_patterns() {
        let config = LoraConfig { r: 8, lora_alpha: 16.0, ..Default::default() };
        assert_eq!(config.shape_for(Q0).scaling, 2.0);
        let config = LoraConfig { r: 4, lora_alpha: 8.0, use_rslora: true, ..Default::default() };
        assert_eq!(config.shape_for(Q0).scaling, 4.0);
        let mut config = LoraConfig::default();
        config.rank_pattern.insert("value".into(), 2);
        config.alpha_pattern.insert(r"layer\.0\.attention\.self\.query".into(), 4.0);
        assert_eq!(config.shape_for(V1).r, 2);
        assert_eq!(config.shape_for(V1).scaling, 4.0, "alpha 8 over rank 2");
        assert_eq!(config.shape_for(Q0).r, 8);
        assert_eq!(config.shape_for(Q0).scaling, 0.5);
        // PEFT looks the first matching key up in both maps: `value` has no alpha override.
        config.alpha_pattern.insert("value".into(), 1.0);
        config.rank_pattern.insert(r"layer\.1\.attention\.self\.value".into(), 4);
        assert_eq!(config.shape_for(V1).r, 2);
        assert_eq!(config.shape_for(V1).alpha, 1.0);
    }

    #[test]
    fn seq_cls_saves_the_classifier() {
        let config = LoraConfig::default().with_task_defaults();
        assert!(config.saves_module("classifier"));
        assert!(!config.saves_module("bert.pooler.dense"));
    }

    #[test]
    fn reads_a_peft_config_with_keys_of_newer_versions() {
        let json = r#"{"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 4, "lora_alpha": 16,
            "target_modules": ["value", "query"], "modules_to_save": ["classifier", "score"],
            "init_lora_weights": "gaussian", "lora_bias": false, "use_qalora": false,
            "exclude_modules": null, "eva_config": null}"#;
        let config: LoraConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.r, 4);
        assert_eq!(config.lora_alpha, 16.0);
        assert_eq!(config.init_lora_weights, InitLoraWeights::Method("gaussian".into()));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let config = LoraConfig { bias: "all".into(), ..Default::default() };
        assert!(config.validate().unwrap_err().to_string().contains("bias"));
        let config = LoraConfig { init_lora_weights: InitLoraWeights::Method("loftq".into()), ..Default::default() };
        assert!(config.validate().unwrap_err().to_string().contains("\"loftq\" is not supported"));
        let config =
            LoraConfig { init_lora_weights: InitLoraWeights::Method("pissa_niter_".into()), ..Default::default() };
        assert!(config.validate().is_err(), "PEFT's int() of an empty N fails too");
        for ok in ["pissa", "pissa_niter_4", "olora", "gaussian"] {
            let config = LoraConfig {
                init_lora_weights: InitLoraWeights::Method(ok.into()),
                use_dora: true,
                ..Default::default()
            };
            assert_eq!(config.validate(), Ok(()), "{ok} with DoRA");
        }
        // Issue 40: PiSSA at lora_alpha 0 trained to NaN; plain LoRA may have it (PEFT's too).
        for alpha in [0.0, -8.0, f64::NAN] {
            let pissa = LoraConfig {
                init_lora_weights: InitLoraWeights::Method("pissa".into()),
                lora_alpha: alpha,
                ..Default::default()
            };
            let err = pissa.validate().unwrap_err().to_string();
            assert!(err.contains("must be above 0") && err.contains("lora_alpha"), "{alpha}: {err}");
            if alpha.is_finite() {
                assert_eq!(LoraConfig { lora_alpha: alpha, ..Default::default() }.validate(), Ok(()), "{alpha}");
            }
        }
    }
}
