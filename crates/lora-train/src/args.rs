//! `TrainingArguments`: transformers' names, defaults and checks for how a run trains (the
//! optimizer, the schedule, the strategies for logging, evaluation and checkpoints, early
//! stopping, LoRA+, bf16), read from the `[training]` table of a config or built in code.

use std::path::PathBuf;

use crate::error::{Result, invalid};
use serde::{Deserialize, Serialize};

/// `TrainingArguments` names and defaults, where they apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingArguments {
    pub output_dir: PathBuf,
    pub num_train_epochs: usize,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub max_grad_norm: f64,
    /// One of transformers' `get_scheduler` names (see [`crate::schedule::NAMES`]).
    pub lr_scheduler_type: String,
    /// The schedule's keywords, as `TrainingArguments(lr_scheduler_kwargs={...})`: a TOML table
    /// (`lr_scheduler_kwargs = { num_cycles = 2 }`).
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub lr_scheduler_kwargs: toml::Table,
    pub warmup_steps: usize,
    pub warmup_ratio: f64,
    /// Micro-batches per optimizer step; the step's loss is the mean over all their examples.
    pub gradient_accumulation_steps: usize,
    /// More than 0: the optimizer steps of the run, whatever `num_train_epochs` says (Trainer's rule).
    pub max_steps: i64,
    /// Seed of the model's fresh weights (classifier, adapters), dropout and each epoch's shuffle.
    #[serde(with = "full_u64")]
    pub seed: u64,
    /// `"no"`, `"steps"` (every `eval_steps`) or `"epoch"`.
    pub eval_strategy: IntervalStrategy,
    /// Steps between evaluations (a fraction below 1: of the run's steps); only with
    /// `eval_strategy = "steps"`. Unset: `logging_steps`, as Trainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_steps: Option<Interval>,
    /// `"no"`, `"steps"`, `"epoch"` or `"best"` (a checkpoint at each new best evaluation).
    pub save_strategy: SaveStrategy,
    /// Steps between checkpoints; only with `save_strategy = "steps"`. Unset: 500, as Trainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_steps: Option<Interval>,
    /// Checkpoints kept (the oldest go first; never the best one). Unset: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_total_limit: Option<usize>,
    /// The final adapter is the best checkpoint's, by `metric_for_best_model` (unset: the loss).
    pub load_best_model_at_end: bool,
    /// Stop after this many evaluations without improvement (EarlyStoppingCallback). Unset: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<usize>,
    /// How much better than the best an evaluation must be to count as an improvement.
    pub early_stopping_threshold: f64,
    /// `"no"`, `"steps"` (every `logging_steps`) or `"epoch"`.
    pub logging_strategy: IntervalStrategy,
    pub logging_steps: Interval,
    /// Log the first step too.
    pub logging_first_step: bool,
    /// Cross-entropy against targets smoothed by this much (Trainer's `LabelSmoother`).
    pub label_smoothing_factor: f64,
    pub group_by_length: bool,
    /// The metric that picks the best evaluation, as Trainer names it (`accuracy` or
    /// `eval_accuracy`, `f1_macro`, `loss`, `pearson`, ...). Unset: the loss with
    /// `load_best_model_at_end` (Trainer's rule), else for `summary.json` accuracy for
    /// classification and the loss for regression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_for_best_model: Option<String>,
    /// Unset: true unless the metric is a loss (Trainer's rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greater_is_better: Option<bool>,
    /// Where the run's logs also go, as Trainer's `report_to`: `"none"`, `"tensorboard"` (or
    /// `"all"`, which here is TensorBoard), or a list of them.
    pub report_to: ReportTo,
    /// TensorBoard's directory. Unset: `OUTPUT_DIR/runs` (Trainer's is a dated folder inside
    /// it; here a resumed run adds its event file beside the first, so TensorBoard shows one run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging_dir: Option<PathBuf>,
    /// LoRA+ (PEFT's `create_loraplus_optimizer`): `lora_B` and every 1-D trainable tensor
    /// (biases, DoRA's magnitudes) learn at `learning_rate * loraplus_lr_ratio`. Unset: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loraplus_lr_ratio: Option<f64>,
    /// LoRA+'s rate for adapters on embedding layers; this project adapts linears only, and
    /// PEFT 0.17.1's grouping never finds one either, so it changes nothing (accepted for configs
    /// that carry it).
    pub loraplus_lr_embedding: f64,
    /// With LoRA+, the decay of every group but biases and LayerNorm weights, in place of
    /// `weight_decay` (PEFT's groups each set their own, and this is theirs: 0 unless given).
    pub loraplus_weight_decay: f64,
    /// Train in bfloat16. On the CPU (with AVX512-BF16; elsewhere float32 and a warning), as
    /// Hugging Face's `bf16 = true` autocasts: the frozen base linears' products and their
    /// input gradients in bf16 with f32 accumulation, the adapters, classifier, optimizer state
    /// and saved adapter in f32. On CUDA, Burn 0.21 has no mixed precision: weights, activations
    /// and optimiser state are all bf16.
    pub bf16: bool,
}

impl Default for TrainingArguments {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("runs/lora"),
            num_train_epochs: 3,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            learning_rate: 5e-5,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            lr_scheduler_type: "linear".into(),
            lr_scheduler_kwargs: toml::Table::new(),
            warmup_steps: 0,
            warmup_ratio: 0.0,
            gradient_accumulation_steps: 1,
            max_steps: -1,
            seed: 42,
            eval_strategy: IntervalStrategy::Epoch,
            eval_steps: None,
            save_strategy: SaveStrategy::Epoch,
            save_steps: None,
            save_total_limit: None,
            load_best_model_at_end: false,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
            logging_strategy: IntervalStrategy::Steps,
            logging_steps: Interval::Steps(10),
            logging_first_step: false,
            label_smoothing_factor: 0.0,
            group_by_length: false,
            metric_for_best_model: None,
            greater_is_better: None,
            report_to: ReportTo::One("none".into()),
            logging_dir: None,
            loraplus_lr_ratio: None,
            loraplus_lr_embedding: 1e-6,
            loraplus_weight_decay: 0.0,
            bf16: false,
        }
    }
}

/// Trainer's `IntervalStrategy`: when to log or evaluate (`"no"`, `"steps"`, `"epoch"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalStrategy {
    No,
    Steps,
    Epoch,
}

/// Trainer's `SaveStrategy`: when to write a checkpoint (`"no"`, `"steps"`, `"epoch"`, or
/// `"best"`: at each new best evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveStrategy {
    No,
    Steps,
    Epoch,
    Best,
}

impl SaveStrategy {
    /// The same interval as an [`IntervalStrategy`] (`best` has none).
    pub fn interval(self) -> Option<IntervalStrategy> {
        match self {
            Self::No => Some(IntervalStrategy::No),
            Self::Steps => Some(IntervalStrategy::Steps),
            Self::Epoch => Some(IntervalStrategy::Epoch),
            Self::Best => None,
        }
    }
}

/// As the config writes it, quoted: `"steps"`.
impl std::fmt::Display for IntervalStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::No => "no",
            Self::Steps => "steps",
            Self::Epoch => "epoch",
        };
        write!(f, "{name:?}")
    }
}

impl std::fmt::Display for SaveStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.interval() {
            Some(interval) => interval.fmt(f),
            None => f.write_str("\"best\""),
        }
    }
}

/// Trainer's `report_to`: one integration's name or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReportTo {
    One(String),
    Many(Vec<String>),
}

impl ReportTo {
    fn names(&self) -> Vec<&str> {
        match self {
            Self::One(name) => vec![name.as_str()],
            Self::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }

    /// Whether TensorBoard event files are written.
    pub fn tensorboard(&self) -> bool {
        self.names().iter().any(|n| matches!(*n, "tensorboard" | "all"))
    }

    pub fn check(&self) -> Result<()> {
        for name in self.names() {
            match name {
                "none" | "all" | "tensorboard" => {}
                "wandb" | "mlflow" | "comet_ml" | "neptune" | "clearml" | "dvclive" | "codecarbon" | "azure_ml"
                | "aim" | "swanlab" | "trackio" | "dagshub" | "flyte" => invalid!(
                    "training.report_to = {name:?}: only \"tensorboard\" is built into this program (or \"none\"); every log line is also in the run's metrics.jsonl, for other tools to read"
                ),
                other => {
                    invalid!("training.report_to = {other:?} is unknown; expected \"none\", \"tensorboard\" or \"all\"")
                }
            }
        }
        Ok(())
    }
}

/// A number of steps, or a fraction (below 1) of the run's optimizer steps, as Trainer's
/// `logging_steps`, `eval_steps` and `save_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Interval {
    Steps(usize),
    Ratio(f64),
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Whole(i64),
            Number(f64),
            Other(toml::Value),
        }
        let expected = "a whole number of steps (1 or more) or a fraction of the run's steps (above 0, below 1)";
        match Raw::deserialize(d)? {
            Raw::Whole(n) => usize::try_from(n)
                .map(Self::Steps)
                .map_err(|_| serde::de::Error::custom(format!("{n}: expected {expected}"))),
            // Trainer reads a float of 1 or more that is whole as that many steps (1.0 is 1).
            Raw::Number(r) if r >= 1.0 && r.fract() == 0.0 && r < 1e15 => Ok(Self::Steps(r as usize)),
            Raw::Number(r) => Ok(Self::Ratio(r)),
            Raw::Other(v) => Err(serde::de::Error::custom(format!("{v}: expected {expected}"))),
        }
    }
}

impl Interval {
    /// Steps, for a run of `total` optimizer steps (a fraction rounds up, as Trainer's `math.ceil`).
    pub fn steps(self, total: usize) -> usize {
        match self {
            Self::Steps(n) => n,
            Self::Ratio(r) => (total as f64 * r).ceil() as usize,
        }
    }

    fn check(self, key: &str) -> Result<()> {
        match self {
            Self::Steps(0) => {
                invalid!("training.{key} must be at least 1 (or a fraction of the run's steps, e.g. 0.1)")
            }
            Self::Ratio(r) if !(r > 0.0 && r < 1.0) => {
                invalid!(
                    "training.{key} = {r}: a fraction of the run's steps must be above 0 and below 1 (or give whole steps)"
                )
            }
            _ => Ok(()),
        }
    }
}

impl TrainingArguments {
    /// The learning-rate schedule `lr_scheduler_type` and `lr_scheduler_kwargs` name.
    pub fn schedule(&self) -> Result<crate::schedule::Schedule> {
        crate::schedule::Schedule::parse(&self.lr_scheduler_type, &self.lr_scheduler_kwargs, self.learning_rate)
    }

    /// TensorBoard's directory for a run in `out`: `logging_dir`, else `out/runs`.
    pub fn logging_dir(&self, out: &std::path::Path) -> std::path::PathBuf {
        self.logging_dir.clone().unwrap_or_else(|| out.join("runs"))
    }

    /// The steps between evaluations (`eval_steps`, else `logging_steps`), for a run of `total` steps.
    pub fn eval_every(&self, total: usize) -> usize {
        self.eval_steps.unwrap_or(self.logging_steps).steps(total).max(1)
    }

    /// The steps between checkpoints (`save_steps`, else 500), for a run of `total` steps.
    pub fn save_every(&self, total: usize) -> usize {
        self.save_steps.unwrap_or(Interval::Steps(500)).steps(total).max(1)
    }

    /// The checks `TrainingArguments` makes of its strategies (and `EarlyStoppingCallback` of its own).
    pub fn check_strategies(&self) -> Result<()> {
        self.logging_steps.check("logging_steps")?;
        if self.gradient_accumulation_steps == 0 {
            invalid!("training.gradient_accumulation_steps must be at least 1");
        }
        if let Some(steps) = self.eval_steps {
            steps.check("eval_steps")?;
            if self.eval_strategy != IntervalStrategy::Steps {
                invalid!(
                    "training.eval_steps is set but training.eval_strategy = {}: eval_steps only applies with eval_strategy = \"steps\"",
                    self.eval_strategy
                );
            }
        }
        if let Some(steps) = self.save_steps {
            steps.check("save_steps")?;
            if self.save_strategy != SaveStrategy::Steps {
                invalid!(
                    "training.save_steps is set but training.save_strategy = {}: save_steps only applies with save_strategy = \"steps\"",
                    self.save_strategy
                );
            }
        }
        if self.save_total_limit == Some(0) {
            invalid!("training.save_total_limit must be at least 1 (or left out to keep every checkpoint)");
        }
        if self.save_strategy == SaveStrategy::Best && self.metric_for_best_model.is_none() {
            invalid!(
                "training.save_strategy = \"best\" needs training.metric_for_best_model (the metric that says which is best)"
            );
        }
        if self.save_strategy == SaveStrategy::Best && self.eval_strategy == IntervalStrategy::No {
            invalid!(
                "training.save_strategy = \"best\" needs an evaluation to say what is best; set training.eval_strategy"
            );
        }
        if self.load_best_model_at_end {
            if self.eval_strategy == IntervalStrategy::No {
                invalid!(
                    "training.load_best_model_at_end needs evaluation: set training.eval_strategy to \"epoch\" or \"steps\""
                );
            }
            if self.save_strategy != SaveStrategy::Best {
                if self.save_strategy.interval() != Some(self.eval_strategy) {
                    invalid!(
                        "training.load_best_model_at_end requires the save and eval strategy to match (as Trainer), but eval_strategy = {} and save_strategy = {}",
                        self.eval_strategy,
                        self.save_strategy
                    );
                }
                if let (Some(Interval::Steps(save)), Interval::Steps(eval)) =
                    (self.save_steps.or(Some(Interval::Steps(500))), self.eval_steps.unwrap_or(self.logging_steps))
                    && self.save_strategy == SaveStrategy::Steps
                    && !save.is_multiple_of(eval)
                {
                    invalid!(
                        "training.load_best_model_at_end requires save_steps ({save}) to be a round multiple of eval_steps ({eval}), so that each best evaluation has its checkpoint"
                    );
                }
            }
        }
        if self.early_stopping_patience.is_some() {
            if !self.load_best_model_at_end {
                invalid!(
                    "training.early_stopping_patience needs training.load_best_model_at_end = true (as EarlyStoppingCallback)"
                );
            }
            if self.early_stopping_patience == Some(0) {
                invalid!("training.early_stopping_patience must be at least 1 evaluation");
            }
        }
        if !(self.early_stopping_threshold >= 0.0 && self.early_stopping_threshold.is_finite()) {
            invalid!("training.early_stopping_threshold must be 0 or more, got {}", self.early_stopping_threshold);
        }
        if !(0.0..1.0).contains(&self.label_smoothing_factor) {
            invalid!("training.label_smoothing_factor must be in [0, 1), got {}", self.label_smoothing_factor);
        }
        Ok(())
    }

    /// The metric that picks the best epoch and whether more is better, checked against what a
    /// task with `space`'s labels reports.
    pub fn best_metric(&self, space: &textdata::LabelSpace) -> Result<(String, bool)> {
        let names = crate::metrics::metric_names(space.problem_type, space.names.len());
        let name = match &self.metric_for_best_model {
            Some(name) => name.strip_prefix("eval_").unwrap_or(name).to_string(),
            None if self.load_best_model_at_end => "loss".into(),
            None if space.problem_type == textdata::ProblemType::Regression => "loss".into(),
            None => "accuracy".into(),
        };
        if !names.contains(&name.as_str()) {
            invalid!(
                "training.metric_for_best_model = {name:?} is not a metric of {}; it reports {}",
                space.problem_type,
                names.join(", ")
            );
        }
        let greater = self.greater_is_better.unwrap_or(!name.ends_with("loss"));
        Ok((name, greater))
    }
}

/// Refuses a padding `multiple` (named `what` in the error) that would pad an example of
/// `max_length` tokens (capped at `positions`) past the model's `positions` position embeddings.
/// A `u64` over its full range, which TOML's integers (`i64`) do not reach: one past
/// `i64::MAX` is written and read as a string of digits (`seed = "18446744073709551615"`).
pub mod full_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*value) {
            Ok(v) => s.serialize_i64(v),
            Err(_) => s.serialize_str(&value.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let expected = "a whole number from 0 to 18446744073709551615";
        match Raw::deserialize(d)? {
            Raw::Number(n) => {
                u64::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n}: expected {expected}")))
            }
            Raw::Text(t) => {
                t.trim().parse().map_err(|_| serde::de::Error::custom(format!("{t:?}: expected {expected}")))
            }
        }
    }
}
