//! The run config: TOML with `[model]`, `[lora]`, `[data]` and `[training]`, keys named as in
//! Hugging Face (`LoraConfig`, `TrainingArguments`), every default written down.

use std::path::Path;

use anyhow::{Context, Result, bail};
use lora_adapter::LoraConfig;
use lora_adapter::{InitLoraWeights, Layers, TargetModules};
use serde::{Deserialize, Serialize};

pub use lora_train::args::{Interval, IntervalStrategy, ReportTo, SaveStrategy, TrainingArguments};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// A local directory or a Hub model id.
    pub name_or_path: String,
    /// Unset: from the data (its classes; 1 for regression). Set: checked against the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// transformers' `problem_type`: `single_label_classification`, `multi_label_classification`
    /// or `regression`. Unset: inferred from the labels (lists: multi-label; decimal numbers:
    /// regression; integers or strings: single-label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<textdata::ProblemType>,
    /// A checkpoint whose classifier has another number of labels: false refuses it, true
    /// trains a new classifier in its place (transformers' `ignore_mismatched_sizes`).
    pub ignore_mismatched_sizes: bool,
    /// Overrides of `config.json`, as `from_pretrained(..., hidden_dropout_prob=...)`.
    pub hidden_dropout_prob: Option<f64>,
    pub attention_probs_dropout_prob: Option<f64>,
    pub classifier_dropout: Option<f64>,
}

impl ModelSection {
    /// `from_pretrained`'s arguments for this section and the task's labels: the head the
    /// data needs, the dropouts set here (as `from_pretrained(..., hidden_dropout_prob=...)`),
    /// `ignore_mismatched_sizes`.
    pub fn load_options(&self, labels: &textdata::LabelSpace) -> encoders::LoadOptions {
        let mut options = encoders::LoadOptions {
            head: Some(labels.clone()),
            ignore_mismatched_sizes: self.ignore_mismatched_sizes,
            ..Default::default()
        };
        let dropouts = [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
            ("classifier_dropout", self.classifier_dropout),
        ];
        for (key, value) in dropouts {
            if let Some(p) = value {
                options.config.insert(key.into(), p.into());
            }
        }
        options
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            name_or_path: "bert-base-uncased".into(),
            num_labels: None,
            problem_type: None,
            ignore_mismatched_sizes: false,
            hidden_dropout_prob: None,
            attention_probs_dropout_prob: None,
            classifier_dropout: None,
        }
    }
}

/// PEFT's `LoraConfig` keys a run sets (the rest keep PEFT's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSection {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Unset: PEFT's default for the model's family (`query`/`value` for BERT, RoBERTa, XLM-R
    /// and ELECTRA; DistilBERT has none and must name its own, e.g. `["q_lin", "v_lin"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_modules: Option<TargetModules>,
    pub modules_to_save: Option<Vec<String>>,
    pub use_rslora: bool,
    pub layers_to_transform: Option<Vec<usize>>,
    pub bias: String,
    pub init_lora_weights: InitLoraWeights,
    /// DoRA: a trained magnitude per output beside the low-rank direction (PEFT's `use_dora`).
    pub use_dora: bool,
    pub task_type: String,
}

impl Default for LoraSection {
    fn default() -> Self {
        let peft = LoraConfig::default();
        Self {
            r: peft.r,
            lora_alpha: peft.lora_alpha,
            lora_dropout: peft.lora_dropout,
            target_modules: None,
            modules_to_save: None,
            use_rslora: false,
            layers_to_transform: None,
            bias: "none".into(),
            init_lora_weights: InitLoraWeights::Flag(true),
            use_dora: false,
            task_type: "SEQ_CLS".into(),
        }
    }
}

impl LoraSection {
    /// PEFT's `LoraConfig` for a model of `family` named `base_model`: `target_modules` as set,
    /// else the family's PEFT default; a family without one must be told.
    pub fn to_peft(&self, base_model: &str, family: &encoders::FamilyInfo) -> Result<LoraConfig> {
        let target_modules = match (&self.target_modules, family.default_targets) {
            (Some(targets), _) => targets.clone(),
            (None, Ok(defaults)) => TargetModules::Names(defaults.iter().map(|s| s.to_string()).collect()),
            (None, Err(hint)) => bail!(
                "{base_model} is a {} model, for which PEFT has no default target_modules: set lora.target_modules ({hint})",
                family.model_type
            ),
        };
        Ok(self.peft(base_model, target_modules))
    }

    fn peft(&self, base_model: &str, target_modules: TargetModules) -> LoraConfig {
        LoraConfig {
            r: self.r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            target_modules: Some(target_modules),
            modules_to_save: self.modules_to_save.clone(),
            use_rslora: self.use_rslora,
            layers_to_transform: self.layers_to_transform.clone().map(Layers::Many),
            bias: self.bias.clone(),
            init_lora_weights: self.init_lora_weights.clone(),
            use_dora: self.use_dora,
            task_type: Some(self.task_type.clone()),
            base_model_name_or_path: Some(base_model.to_string()),
            ..LoraConfig::default()
        }
        .with_task_defaults()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// A directory, file, tarball or Hub dataset id (see the textdata crate).
    pub source: String,
    /// Examples drawn for training. Unset: all of the train split (of a single file: all that
    /// the evaluation subset leaves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_size: Option<usize>,
    /// Examples drawn for evaluation. Unset: all of the evaluation split (of a single file: a
    /// quarter, as `train_test_split`'s default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_size: Option<usize>,
    /// The text's column. Unset: `text`, `sentence` or `review`, unless the data has a pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    /// The second text of a pair. Unset: found when the data has `sentence1`/`sentence2`,
    /// `question`/`sentence`, `question1`/`question2` or `premise`/`hypothesis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_pair_column: Option<String>,
    /// Unset: `label`, `labels` or `sentiment`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// Class names in id order. Unset: the names the source declares (a Hub export's
    /// `ClassLabel`), else the training split's distinct labels, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_names: Option<Vec<String>>,
    /// The training split of a directory or Hub dataset. Unset: `train`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_split: Option<String>,
    /// The evaluation split of a directory or Hub dataset. Unset: `test`, `validation`, `eval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_split: Option<String>,
    /// A Hub dataset's configuration (its parquet export's folder). Unset: `plain_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_config: Option<String>,
    /// Seed of the subset draw.
    #[serde(with = "lora_train::args::full_u64")]
    pub seed: u64,
    /// An equal share of each subset from each class. Unset: true for single-label
    /// classification, false otherwise (regression and multi-label have nothing to balance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balanced: Option<bool>,
    pub dedup: bool,
    pub drop_test_overlap: bool,
    pub max_length: usize,
    /// `<br />` to spaces before tokenizing (off: the Hub copy keeps them).
    pub strip_html_breaks: bool,
    /// Pad each batch to a multiple of this (`DataCollatorWithPadding(pad_to_multiple_of=...)`);
    /// unset: to the batch's longest example. On a GPU, a few lengths mean few kernels to compile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad_to_multiple_of: Option<usize>,
}

impl Default for DataSection {
    fn default() -> Self {
        let s = textdata::SubsetConfig::default();
        Self {
            source: "stanfordnlp/imdb".into(),
            text_column: None,
            text_pair_column: None,
            label_column: None,
            label_names: None,
            train_split: None,
            eval_split: None,
            hub_config: None,
            train_size: None,
            eval_size: None,
            seed: s.seed,
            balanced: None,
            dedup: s.dedup,
            drop_test_overlap: s.drop_test_overlap,
            max_length: 512,
            strip_html_breaks: false,
            pad_to_multiple_of: None,
        }
    }
}

impl DataSection {
    /// How batches are padded, with the tokenizer's padding id.
    pub fn batcher(&self, pad_id: u32) -> textdata::TextBatcher {
        textdata::TextBatcher { pad_id, pad_to_multiple_of: self.pad_to_multiple_of.unwrap_or(1) }
    }

    /// Refuses a `pad_to_multiple_of` that would pad a example of `max_length` tokens (capped at
    /// `positions`) past the model's `positions` position embeddings.
    pub fn check_padding(&self, positions: usize) -> Result<()> {
        let multiple = self.pad_to_multiple_of.unwrap_or(1);
        check_padding("data.pad_to_multiple_of =", multiple, self.max_length, positions)
    }

    /// What to read from the source: columns, evaluation split, Hub configuration.
    pub fn source_options(&self) -> textdata::SourceOptions {
        textdata::SourceOptions {
            columns: textdata::Columns {
                text: self.text_column.clone(),
                text_pair: self.text_pair_column.clone(),
                label: self.label_column.clone(),
            },
            train_split: self.train_split.clone(),
            eval_split: self.eval_split.clone(),
            hub_config: self.hub_config.clone(),
        }
    }

    /// The subsets to draw from data whose labels are `space`.
    pub fn subset(&self, space: &textdata::LabelSpace) -> textdata::SubsetConfig {
        let classification = space.problem_type == textdata::ProblemType::SingleLabelClassification;
        textdata::SubsetConfig {
            train_size: self.train_size,
            eval_size: self.eval_size,
            seed: self.seed,
            balanced: self.balanced.unwrap_or(classification),
            dedup: self.dedup,
            drop_test_overlap: self.drop_test_overlap,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelSection,
    pub lora: LoraSection,
    pub data: DataSection,
    pub training: TrainingArguments,
}

const SECTIONS: [&str; 4] = ["model", "lora", "data", "training"];

impl RunConfig {
    /// Reads `path` (if any), applies `--set section.key=value` overrides, and checks the result.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut table = match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
                text.parse::<toml::Table>().with_context(|| format!("{} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        let from_file = table.clone();
        for item in overrides {
            set(&mut table, item)?;
        }
        let config = match Self::from_table(table) {
            Ok(config) => config,
            Err(e) => return Err(blame(path, from_file, overrides, e)),
        };
        config.validate()?;
        Ok(config)
    }

    fn from_table(mut table: toml::Table) -> Result<Self> {
        if let Some(unknown) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            bail!("unknown section [{unknown}]; expected one of [{}]", SECTIONS.join("], ["));
        }
        let mut section = |name: &str| table.remove(name).unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        Ok(Self {
            model: section("model").try_into().context("in [model]")?,
            lora: section("lora").try_into().context("in [lora]")?,
            data: section("data").try_into().context("in [data]")?,
            training: section("training").try_into().context("in [training]")?,
        })
    }

    pub fn validate(&self) -> Result<()> {
        let t = &self.training;
        if t.num_train_epochs == 0 || t.per_device_train_batch_size == 0 || t.per_device_eval_batch_size == 0 {
            bail!("training.num_train_epochs and the batch sizes must be at least 1");
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            bail!("training.learning_rate must be a positive number, got {}", t.learning_rate);
        }
        t.schedule()?;
        t.check_strategies()?;
        if let Some(ratio) = t.loraplus_lr_ratio
            && !(ratio > 0.0 && ratio.is_finite())
        {
            bail!("training.loraplus_lr_ratio must be a positive number (LoRA+'s paper uses 16), got {ratio}");
        }
        t.report_to.check()?;
        if !(t.loraplus_weight_decay >= 0.0 && t.loraplus_weight_decay.is_finite()) {
            bail!("training.loraplus_weight_decay must be 0 or more, got {}", t.loraplus_weight_decay);
        }
        if !(0.0..=1.0).contains(&t.warmup_ratio) {
            bail!("training.warmup_ratio must be in [0, 1], got {}", t.warmup_ratio);
        }
        if self.model.num_labels == Some(0) {
            bail!("model.num_labels must be at least 1 (1: regression), or left out to take it from the data");
        }
        if let Some(names) = &self.data.label_names
            && names.is_empty()
        {
            bail!("data.label_names is empty; list the class names in id order, or leave it out");
        }
        // Bounded by the model's positions once it is loaded (512 for BERT, 8,192 for ModernBERT).
        if self.data.max_length < 2 {
            bail!("data.max_length must be at least 2 (room for the two special tokens), got {}", self.data.max_length);
        }
        if self.data.pad_to_multiple_of == Some(0) {
            bail!("data.pad_to_multiple_of must be at least 1 (or left out to pad to the longest example)");
        }
        self.data.check_padding(512)?;
        // The targets are checked against the model once it is loaded.
        let targets = self.lora.target_modules.clone().unwrap_or(TargetModules::Names(vec!["query".into()]));
        self.lora.peft(&self.model.name_or_path, targets).validate().map_err(|m| anyhow::anyhow!("[lora]: {m}"))?;
        Ok(())
    }

    /// How the data's labels get their meaning: inferred from the training split, with the task
    /// and class names this config sets.
    pub fn labels(&self) -> textdata::Labels {
        textdata::Labels::Infer { problem_type: self.model.problem_type, names: self.data.label_names.clone() }
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot write the config as TOML")
    }
}

/// The padding a run uses: the one given (`data.pad_to_multiple_of`, `--pad-to-multiple-of`);
/// unset, none on the CPU, and on a GPU (`device` names `cuda` or `wgpu`) the largest of 64,
/// 32, 16 and 8 that keeps a `max_length` text within the model's `positions`. A GPU compiles
/// (and autotunes) kernels for each new batch shape on first use, and CubeCL keys them by how
/// many times 2 divides each size: with multiples of 64 every batch of a run falls in the
/// same few classes (docs/benchmarks.md, "`--device wgpu` on lavapipe").
pub fn padding_for(given: Option<usize>, device: &str, max_length: usize, positions: usize) -> usize {
    if let Some(multiple) = given {
        return multiple;
    }
    if !(device.starts_with("cuda") || device.starts_with("wgpu")) {
        return 1;
    }
    [64, 32, 16, 8].into_iter().find(|&m| check_padding("", m, max_length, positions).is_ok()).unwrap_or(1)
}

/// What a run that chose its own padding says about it (`None` when it was given, or is none).
pub fn padding_note(given: Option<usize>, used: usize, key: &str) -> Option<String> {
    (given.is_none() && used > 1).then(|| {
        format!(
            "padding batches to multiples of {used} tokens on the GPU: fewer batch shapes to compile kernels for \
             ({key} 1 pads each batch to its longest)"
        )
    })
}

pub fn check_padding(what: &str, multiple: usize, max_length: usize, positions: usize) -> Result<()> {
    let longest = max_length.min(positions);
    let padded = encoders::padded_length(longest, multiple);
    if padded > positions {
        bail!(
            "{what} {multiple} would pad a {longest}-token example to {padded}, past the model's {positions} positions"
        );
    }
    Ok(())
}

/// The error of a config that does not deserialize, put on what caused it: the file when it
/// fails alone, else the first `--set` that makes it fail (`--set "training.seed=x": ...`).
fn blame(path: Option<&Path>, from_file: toml::Table, overrides: &[String], e: anyhow::Error) -> anyhow::Error {
    if let (Some(path), Err(e)) = (path, RunConfig::from_table(from_file.clone())) {
        return e.context(format!("invalid config {}", path.display()));
    }
    let mut table = from_file;
    for item in overrides {
        if set(&mut table, item).is_ok()
            && let Err(e) = RunConfig::from_table(table.clone())
        {
            return anyhow::anyhow!("--set {item:?}: {e:#}");
        }
    }
    e.context("invalid config")
}

/// Applies one `section.key=value`; the value is read as TOML (`5e-5`, `true`, `["query"]`),
/// or as a string if it is not TOML.
fn set(table: &mut toml::Table, item: &str) -> Result<()> {
    let (key, value) = item.split_once('=').with_context(|| format!("--set {item:?}: expected section.key=value"))?;
    let (section, field) = key
        .trim()
        .split_once('.')
        .with_context(|| format!("--set {item:?}: expected section.key=value, e.g. training.learning_rate=1e-4"))?;
    if !SECTIONS.contains(&section) {
        bail!("--set {item:?}: unknown section {section:?}; expected one of {}", SECTIONS.join(", "));
    }
    let value = format!("v = {}", value.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
    let entry = table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section_table) = entry else { bail!("[{section}] in the config is not a table") };
    section_table.insert(field.to_string(), value);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The card's config names every key of [lora] and [training], set or commented out, so a
    /// user reads there what can be set (issue #23: "lists every new key").
    #[test]
    fn the_card_config_names_every_lora_and_training_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/imdb-bert-base-lora.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let config = RunConfig::load(Some(Path::new(path)), &[]).unwrap();
        let mut defaults = toml::Table::try_from(RunConfig::default()).unwrap();
        // Keys whose default is unset are not serialized: add them with any value.
        let training = defaults["training"].as_table_mut().unwrap();
        for key in [
            "eval_steps",
            "save_steps",
            "save_total_limit",
            "early_stopping_patience",
            "metric_for_best_model",
            "greater_is_better",
            "logging_dir",
            "loraplus_lr_ratio",
        ] {
            training.insert(key.into(), 0.into());
        }
        defaults["lora"].as_table_mut().unwrap().insert("target_modules".into(), 0.into());
        for section in ["lora", "training"] {
            for key in defaults[section].as_table().unwrap().keys() {
                let named = text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
                });
                assert!(named, "configs/imdb-bert-base-lora.toml does not name [{section}] {key}");
            }
        }
        // And the keys it sets are the defaults where the card says nothing.
        let t = &config.training;
        assert_eq!((t.gradient_accumulation_steps, t.max_steps, t.label_smoothing_factor), (1, -1, 0.0));
        assert_eq!((config.lora.use_dora, t.report_to.tensorboard(), t.loraplus_lr_ratio), (false, false, None));
    }

    #[test]
    fn overrides_apply_and_unknown_keys_list_the_valid_ones() {
        let config = RunConfig::load(
            None,
            &[
                "training.learning_rate=1e-4".into(),
                "lora.target_modules=[\"query\"]".into(),
                "data.source=some/dir".into(),
            ],
        )
        .unwrap();
        assert_eq!(config.training.learning_rate, 1e-4);
        assert_eq!(config.lora.target_modules, Some(TargetModules::Names(vec!["query".into()])));
        assert_eq!(config.data.source, "some/dir");

        let err = format!("{:#}", RunConfig::load(None, &["training.lerning_rate=1".into()]).unwrap_err());
        assert!(err.contains("lerning_rate") && err.contains("learning_rate") && err.contains("[training]"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["optim.lr=1".into()]).unwrap_err());
        assert!(err.contains("optim") && err.contains("training"), "{err}");
    }

    #[test]
    fn set_errors_name_the_set_and_seeds_take_the_whole_u64_range() {
        let err =
            format!("{:#}", RunConfig::load(None, &["training.per_device_train_batch_size=abc".into()]).unwrap_err());
        assert!(
            err.starts_with("--set \"training.per_device_train_batch_size=abc\"") && err.contains("usize"),
            "{err}"
        );
        assert!(!err.contains("invalid config"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "[training]\nlearning_rate = 1e-3\n").unwrap();
        let err = format!(
            "{:#}",
            RunConfig::load(Some(file.path()), &["data.train_size=10".into(), "training.seed=-1".into()]).unwrap_err()
        );
        assert!(err.starts_with("--set \"training.seed=-1\"") && err.contains("0 to 18446744073709551615"), "{err}");
        // A broken file is the file's error, whatever --set says.
        std::fs::write(file.path(), "[training]\nlearning_rate = \"fast\"\n").unwrap();
        let err = format!("{:#}", RunConfig::load(Some(file.path()), &["training.seed=1".into()]).unwrap_err());
        assert!(err.contains(&file.path().display().to_string()) && !err.contains("--set"), "{err}");

        let config = RunConfig::load(None, &["training.seed=18446744073709551615".into()]).unwrap();
        assert_eq!(config.training.seed, u64::MAX);
        let saved: RunConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(saved.training.seed, u64::MAX);
        assert_eq!(RunConfig::load(None, &["data.seed=7".into()]).unwrap().data.seed, 7);
        assert!(config.to_toml().unwrap().contains("seed = 42"), "small seeds stay numbers");
    }

    #[test]
    fn values_the_model_cannot_take_are_refused() {
        let err = format!("{:#}", RunConfig::load(None, &["model.num_labels=0".into()]).unwrap_err());
        assert!(err.contains("num_labels"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["data.max_length=1".into()]).unwrap_err());
        assert!(err.contains("max_length"), "{err}");
        // Past 512 is the model's to bound (ModernBERT reads 8,192).
        assert_eq!(RunConfig::load(None, &["data.max_length=8192".into()]).unwrap().data.max_length, 8192);
        let err = format!("{:#}", RunConfig::load(None, &["lora.bias=\"all\"".into()]).unwrap_err());
        assert!(err.contains("bias"), "{err}");
    }

    #[test]
    fn a_gpu_pads_to_64_unless_told_otherwise() {
        assert_eq!(padding_for(None, "cpu", 512, 512), 1);
        assert_eq!(padding_for(None, "cuda:0", 512, 512), 64);
        assert_eq!(padding_for(None, "wgpu no-fusion", 128, 512), 64);
        assert_eq!(padding_for(Some(1), "cuda:0", 512, 512), 1, "given is kept");
        assert_eq!(padding_for(Some(8), "cpu", 512, 512), 8);
        // A model of 40 positions: 64 would pad past them; 8 fits (40 = 5 x 8).
        assert_eq!(padding_for(None, "wgpu", 40, 40), 8);
        assert_eq!(padding_for(None, "wgpu", 30, 30), 1, "30 has no multiple of 8 within it");
        assert_eq!(padding_for(None, "wgpu", 16, 40), 32, "16 tokens pad to 32, within 40");
        assert!(padding_note(None, 64, "--pad-to-multiple-of").unwrap().contains("multiples of 64"));
        assert!(padding_note(Some(64), 64, "x").is_none() && padding_note(None, 1, "x").is_none());
    }

    #[test]
    fn pad_to_multiple_of_is_optional_and_checked() {
        let config = RunConfig::load(None, &[]).unwrap();
        assert_eq!(config.data.batcher(7), textdata::TextBatcher::new(7));
        assert!(!config.to_toml().unwrap().contains("pad_to_multiple_of"), "unset stays unset in the saved config");

        let config = RunConfig::load(None, &["data.pad_to_multiple_of=64".into()]).unwrap();
        assert_eq!(config.data.batcher(0).padded_length(300), 320);
        let saved: RunConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(saved.data.pad_to_multiple_of, Some(64));

        let err = format!("{:#}", RunConfig::load(None, &["data.pad_to_multiple_of=0".into()]).unwrap_err());
        assert!(err.contains("pad_to_multiple_of") && err.contains("at least 1"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["data.pad_to_multiple_of=100".into()]).unwrap_err());
        assert!(err.contains("pad_to_multiple_of = 100") && err.contains("600") && err.contains("512"), "{err}");
        // A model with fewer positions: the tokenizer truncates to them, and the padding must fit too.
        let config =
            RunConfig::load(None, &["data.pad_to_multiple_of=48".into(), "data.max_length=96".into()]).unwrap();
        assert!(config.data.check_padding(512).is_ok());
        let err = format!("{:#}", config.data.check_padding(64).unwrap_err());
        assert!(err.contains("64-token example to 96"), "{err}");
    }

    #[test]
    fn step_intervals_take_steps_or_fractions() {
        let config = RunConfig::load(None, &["training.logging_steps=0.25".into()]).unwrap();
        assert_eq!(config.training.logging_steps.steps(10), 3, "a fraction rounds up, as math.ceil");
        let saved: RunConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(saved.training.logging_steps, Interval::Ratio(0.25));
        assert!(RunConfig::load(None, &[]).unwrap().to_toml().unwrap().contains("logging_steps = 10\n"));
        // Trainer reads a whole float as steps (issue 40: 1.0 was refused).
        for (given, steps) in [("1.0", 1), ("20.0", 20)] {
            let config = RunConfig::load(None, &[format!("training.logging_steps={given}")]).unwrap();
            assert_eq!(config.training.logging_steps, Interval::Steps(steps), "{given}");
        }
        for bad in ["-1", "1.5", "0", "\"often\""] {
            let err = format!("{:#}", RunConfig::load(None, &[format!("training.logging_steps={bad}")]).unwrap_err());
            assert!(err.contains("logging_steps") || err.contains("whole number of steps"), "{bad}: {err}");
        }
        let err = format!(
            "{:#}",
            RunConfig::load(None, &["training.eval_strategy=\"steps\"".into(), "training.eval_steps=-3".into()])
                .unwrap_err()
        );
        assert!(err.contains("whole number of steps"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["training.label_smoothing_factor=1.0".into()]).unwrap_err());
        assert!(err.contains("label_smoothing_factor"), "{err}");
        let err =
            format!("{:#}", RunConfig::load(None, &["training.gradient_accumulation_steps=0".into()]).unwrap_err());
        assert!(err.contains("gradient_accumulation_steps"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["training.save_total_limit=0".into()]).unwrap_err());
        assert!(err.contains("save_total_limit"), "{err}");
        // Strategies are Trainer's enums: a typo names the key and what it takes.
        let err = format!("{:#}", RunConfig::load(None, &["training.eval_strategy=\"sttps\"".into()]).unwrap_err());
        assert!(err.contains("eval_strategy") && err.contains("`no`, `steps`, `epoch`"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["training.save_strategy=\"bestt\"".into()]).unwrap_err());
        assert!(err.contains("save_strategy") && err.contains("`best`"), "{err}");
        let config = RunConfig::load(
            None,
            &["training.save_strategy=\"best\"".into(), "training.metric_for_best_model=\"accuracy\"".into()],
        )
        .unwrap();
        assert_eq!(
            (config.training.save_strategy, config.training.eval_strategy),
            (SaveStrategy::Best, IntervalStrategy::Epoch)
        );
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        assert!(names.len() >= 11, "{names:?}");
        for name in names {
            let path = dir.join(&name);
            let config = RunConfig::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(config.training.num_train_epochs, 5);
            assert_eq!(config.training.per_device_train_batch_size, 16);
            assert_eq!(config.lora.r, 8);
        }
    }

    #[test]
    fn task_keys_parse_and_the_best_metric_is_checked() {
        let config = RunConfig::load(
            None,
            &[
                "model.problem_type=\"multi_label_classification\"".into(),
                "data.label_column=topics".into(),
                "data.label_names=[\"a\", \"b\"]".into(),
                "training.metric_for_best_model=eval_f1_macro".into(),
            ],
        )
        .unwrap();
        assert_eq!(config.model.problem_type, Some(textdata::ProblemType::MultiLabelClassification));
        assert_eq!(config.data.source_options().columns.label.as_deref(), Some("topics"));
        let space = textdata::LabelSpace {
            problem_type: textdata::ProblemType::MultiLabelClassification,
            names: vec!["a".into(), "b".into()],
        };
        assert_eq!(config.training.best_metric(&space).unwrap(), ("f1_macro".to_string(), true));
        assert!(!config.data.subset(&space).balanced, "nothing to balance in multi-label data");
        let saved: RunConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(saved, config);

        let regression = textdata::LabelSpace::unnamed(1);
        let defaults = RunConfig::load(None, &[]).unwrap();
        assert_eq!(defaults.training.best_metric(&regression).unwrap(), ("loss".to_string(), false));
        let err = format!("{:#}", config.training.best_metric(&regression).unwrap_err());
        assert!(err.contains("f1_macro") && err.contains("regression") && err.contains("pearson"), "{err}");
        let err = format!("{:#}", RunConfig::load(None, &["model.problem_type=\"ranking\"".into()]).unwrap_err());
        assert!(err.contains("problem_type") && err.contains("regression"), "{err}");
    }
}
