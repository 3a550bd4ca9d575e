//! `lora train`: check every input, take the output directory, train, and leave the run's
//! record behind (adapter, checkpoints, `metrics.jsonl`, `summary.json`, `curves.svg`).
//!
//! Nothing in the output directory is removed or replaced until the config, model, tokenizer,
//! data, labels and the checkpoint to resume have all been read and checked: a run that fails
//! before that leaves an earlier run as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use encoders::{EncoderTokenizer, HubOptions};
use lora_adapter::ParameterCount;
use serde::{Deserialize, Serialize};
use textdata::{LabelSpace, ProblemType, TextDataset};

use crate::callbacks::{EarlyStopping, Interrupt, JsonLines, ProgressBars, TensorBoardLogs};
use crate::checkpoint::{self, Checkpoint, DataFingerprint, SplitFingerprint};
use crate::cli::Dtype;
use crate::config::RunConfig;
use crate::report::{EpochRecord, Evaluation, curves_svg, peak_rss_bytes, write_atomic};
use crate::run_dir::{Holds, RunDir};
use crate::tensorboard::TensorBoard;
use crate::trainer::{Output, RunData, Trainer, TrainerState, progress_bar, say};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub resume: bool,
    pub overwrite: bool,
    pub output: Output,
    pub device: String,
    /// What stops the run after its current step (the program's Ctrl-C handler holds a clone).
    pub interrupt: Interrupt,
}

/// Everything `summary.json` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The last evaluation's figures (none with `eval_strategy = "no"`). Classification only
    /// (multi-label: subset accuracy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_eval_accuracy: Option<f64>,
    pub final_eval_loss: Option<f64>,
    /// The highest accuracy of any evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_eval_accuracy: Option<f64>,
    pub best_eval_loss: Option<f64>,
    /// Trainer's `metric_for_best_model` (without `eval_`), its best value, and the step and
    /// epoch of the evaluation that reached it (the first, on a tie, as Trainer keeps it).
    pub metric_for_best_model: String,
    pub best_metric: Option<f64>,
    pub best_global_step: Option<u64>,
    /// The epoch the best evaluation was in (1-based; 0: no evaluation).
    pub best_epoch: usize,
    /// The checkpoint of the best evaluation, under `checkpoints/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_model_checkpoint: Option<String>,
    /// `adapter/` is the best checkpoint's (`load_best_model_at_end`), not the last step's.
    pub loaded_best_model_at_end: bool,
    /// The step early stopping ended the run at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early_at_step: Option<u64>,
    /// Optimizer steps taken.
    pub global_step: u64,
    pub problem_type: ProblemType,
    pub label_names: Vec<String>,
    /// Examples of each class (by id) in the training and evaluation subsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_counts: Option<ClassCounts>,
    /// What the run noted about its data at the start (see `label_report`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_notes: Vec<String>,
    pub epochs: Vec<EpochRecord>,
    /// Every evaluation, with its step.
    pub evaluations: Vec<Evaluation>,
    pub train_seconds: f64,
    pub total_seconds: f64,
    pub train_samples_per_second: f64,
    pub train_tokens_per_second: f64,
    pub peak_rss_bytes: Option<u64>,
    pub adapter_bytes: u64,
    pub trainable_parameters: usize,
    pub all_parameters: usize,
    pub train_padding_waste: f64,
    pub device: String,
    pub versions: serde_json::Value,
    pub config: serde_json::Value,
}

/// Examples per class, by class id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub train: Vec<usize>,
    pub eval: Vec<usize>,
}

/// What a summary needs besides the trainer state.
struct RunFacts {
    labels: LabelSpace,
    class_counts: Option<ClassCounts>,
    data_notes: Vec<String>,
    total_seconds: f64,
    adapter_bytes: u64,
    parameters: ParameterCount,
    padding_waste: f64,
    device: String,
    loaded_best: bool,
}

impl Summary {
    fn new(state: &TrainerState, config: &RunConfig, facts: RunFacts) -> Result<Self> {
        let last = state.evaluations.last();
        let (metric, _) = config.training.best_metric(&facts.labels)?;
        let best = state.evaluations.iter().find(|e| Some(e.step) == state.best_global_step);
        let accuracies = state.evaluations.iter().filter_map(|e| e.metrics.eval_accuracy);
        let losses = state.evaluations.iter().map(|e| e.metrics.eval_loss);
        Ok(Self {
            final_eval_accuracy: last.and_then(|e| e.metrics.eval_accuracy),
            final_eval_loss: last.map(|e| e.metrics.eval_loss),
            best_eval_accuracy: accuracies.reduce(f64::max),
            best_eval_loss: losses.reduce(f64::min),
            metric_for_best_model: metric,
            best_metric: state.best_metric,
            best_global_step: state.best_global_step,
            best_epoch: best.map_or(0, |e| (e.epoch - 1e-9).ceil().max(1.0) as usize),
            best_model_checkpoint: state.best_model_checkpoint.clone(),
            loaded_best_model_at_end: facts.loaded_best,
            stopped_early_at_step: state.stopped_early_at_step,
            global_step: state.global_step,
            problem_type: facts.labels.problem_type,
            label_names: facts.labels.names.clone(),
            class_counts: facts.class_counts,
            data_notes: facts.data_notes,
            epochs: state.epochs.clone(),
            evaluations: state.evaluations.clone(),
            train_seconds: state.train_seconds,
            total_seconds: facts.total_seconds,
            train_samples_per_second: state.train_samples as f64 / state.train_seconds.max(1e-9),
            train_tokens_per_second: state.train_tokens as f64 / state.train_seconds.max(1e-9),
            peak_rss_bytes: peak_rss_bytes(),
            adapter_bytes: facts.adapter_bytes,
            trainable_parameters: facts.parameters.trainable,
            all_parameters: facts.parameters.all,
            train_padding_waste: facts.padding_waste,
            device: facts.device,
            versions: serde_json::json!({ "lora": env!("CARGO_PKG_VERSION"), "burn": "0.21.0" }),
            config: serde_json::to_value(config)?,
        })
    }
}

/// The config a `--resume` continues with: the run's own `config.toml`, where only
/// `training.num_train_epochs` and `training.max_steps` may be changed (to train longer, as
/// Trainer allows); any other
/// difference between it and what the command gives is refused. The run is the one the command
/// names: `--output-dir`, else the directory of a `--config` that sits in a run directory, else
/// the config's `training.output_dir`.
pub fn resume_config(config: Option<&Path>, overrides: &[String], output_dir: Option<&Path>) -> Result<RunConfig> {
    let dir: PathBuf = match (output_dir, config) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(file)) if file.parent().is_some_and(|d| d.join("checkpoints").is_dir()) => {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        }
        (None, file) => RunConfig::load(file, overrides)?.training.output_dir,
    };
    let saved_path = dir.join("config.toml");
    let has_checkpoint = std::fs::read_dir(dir.join("checkpoints"))
        .is_ok_and(|entries| entries.flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.')));
    if !has_checkpoint || !saved_path.is_file() {
        // Nothing to continue: the run starts again, with what the command gives.
        let file = match config {
            Some(file) => file,
            None if saved_path.is_file() => &saved_path,
            None => bail!("--resume: {} holds no run (no config.toml); start one with --config FILE", dir.display()),
        };
        let mut fresh = RunConfig::load(Some(file), overrides)?;
        fresh.training.output_dir = dir;
        return Ok(fresh);
    }
    let saved = RunConfig::load(Some(&saved_path), &[])
        .with_context(|| format!("cannot read the run's config {}", saved_path.display()))?;
    let mut requested = RunConfig::load(Some(config.unwrap_or(&saved_path)), overrides)?;
    requested.training.output_dir = saved.training.output_dir.clone();
    let changed = differences(&saved, &requested)?;
    let refused: Vec<&String> =
        changed.iter().filter(|k| !["training.num_train_epochs", "training.max_steps"].contains(&k.as_str())).collect();
    if !refused.is_empty() {
        let list: Vec<&str> = refused.iter().map(|k| k.as_str()).collect();
        bail!(
            "--resume continues the run in {} as it was configured, but {} differ(s) from its config.toml; only training.num_train_epochs and training.max_steps may change on resume (start a new run with --overwrite or another --output-dir to change the rest)",
            dir.display(),
            list.join(", ")
        );
    }
    let mut config = saved;
    config.training.num_train_epochs = requested.training.num_train_epochs;
    config.training.max_steps = requested.training.max_steps;
    config.training.output_dir = dir;
    Ok(config)
}

/// The `section.key`s whose values differ between two configs.
fn differences(a: &RunConfig, b: &RunConfig) -> Result<Vec<String>> {
    Ok(value_differences(&serde_json::to_value(a)?, &serde_json::to_value(b)?))
}

/// The `section.key`s whose values differ between two configs as JSON.
fn value_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        let mut sections: Vec<&String> = a.keys().chain(b.keys()).collect();
        sections.sort();
        sections.dedup();
        let empty = serde_json::Map::new();
        for section in sections {
            let x = a.get(section).and_then(|v| v.as_object()).unwrap_or(&empty);
            let y = b.get(section).and_then(|v| v.as_object()).unwrap_or(&empty);
            let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
            names.sort();
            names.dedup();
            keys.extend(names.into_iter().filter(|k| x.get(*k) != y.get(*k)).map(|k| format!("{section}.{k}")));
        }
    }
    keys
}

/// The checkpoint `--resume` continues from: the newest under `out/checkpoints` that verifies,
/// with a line for each one skipped and why. A run that has checkpoints but none that
/// verifies, or a finished run with none, is an error, never a run started over; so is a
/// checkpoint written by another config than the run's.
fn resume_point(out: &Path, holds: Holds, config: &RunConfig) -> Result<Option<Checkpoint>> {
    let found = checkpoint::find(out)?;
    let skipped = found.skipped_lines();
    let Some(chosen) = found.chosen else {
        if !skipped.is_empty() {
            bail!(
                "--resume: no checkpoint of {} can be trusted, nothing was changed:\n  {}\n(--overwrite starts the run again from the beginning)",
                out.display(),
                skipped.join("\n  ")
            );
        }
        if holds == Holds::Finished {
            bail!(
                "--resume: {} holds a finished run but no checkpoint to continue it from (checkpoints/ is gone); nothing was changed (--overwrite starts it again)",
                out.display()
            );
        }
        return Ok(None);
    };
    // Said whatever the output mode (--quiet too): a damaged checkpoint is news.
    for line in &skipped {
        crate::console::err(format!("warning: skipped checkpoint {line}"));
    }
    let mut saved = chosen.manifest.config.clone();
    let mut now = serde_json::to_value(config)?;
    for c in [&mut saved, &mut now] {
        if let Some(t) = c.get_mut("training").and_then(|t| t.as_object_mut()) {
            t.remove("output_dir");
            t.remove("num_train_epochs");
            t.remove("max_steps");
        }
    }
    let changed = value_differences(&saved, &now);
    if !changed.is_empty() {
        bail!(
            "--resume: {} was written by another config than the run's config.toml ({} differ); nothing was changed",
            chosen.dir.display(),
            changed.join(", ")
        );
    }
    if config.training.max_steps <= 0 && chosen.state.epoch > config.training.num_train_epochs {
        bail!(
            "{} is past epoch {} already; training.num_train_epochs = {} cannot continue it",
            chosen.dir.display(),
            chosen.state.epoch,
            config.training.num_train_epochs
        );
    }
    Ok(Some(chosen))
}

/// The run's subsets with their labels resolved, and the label space they were read with.
pub fn read_data(config: &RunConfig) -> Result<(textdata::Subsets, LabelSpace)> {
    let d = &config.data;
    let (splits, labels) =
        textdata::load_labelled(&d.source, &d.source_options(), &HubOptions::from_env(), config.labels())?;
    check_num_labels(config.model.num_labels, &labels)?;
    config.training.best_metric(&labels)?;
    check_inferred_classes(config, &splits, &labels)?;
    let subsets = textdata::draw(splits, &d.subset(&labels), &labels)?;
    if subsets.train.is_empty() || subsets.eval.is_empty() {
        let which = if subsets.train.is_empty() { "training" } else { "evaluation" };
        bail!("{}: the {which} subset is empty; data.train_size and data.eval_size must be at least 1", d.source);
    }
    Ok((subsets, labels))
}

/// Refuses a label space the data only seems to have: classes inferred (neither
/// `data.label_names` nor `model.num_labels` says what they are) that look like a text column
/// picked as the label (a title, an id): more than half of at least three classes with a
/// single example, or more than ten classes, more than one per ten rows, and values that read as
/// text (four words or 25 characters on average): twelve short topic names over 100 rows are
/// classes.
fn check_inferred_classes(config: &RunConfig, splits: &textdata::Splits, labels: &LabelSpace) -> Result<()> {
    if labels.problem_type != ProblemType::SingleLabelClassification
        || config.data.label_names.is_some()
        || config.model.num_labels.is_some()
    {
        return Ok(());
    }
    let train = match splits {
        textdata::Splits::TrainTest { train, .. } | textdata::Splits::Unsplit(train) => train,
    };
    let counts = textdata::class_counts(train, labels.names.len());
    let classes = counts.len();
    let singletons = counts.iter().filter(|&&c| c == 1).count();
    let names = labels.names.len().max(1) as f64;
    let chars = labels.names.iter().map(|n| n.chars().count()).sum::<usize>() as f64 / names;
    let words = labels.names.iter().map(|n| n.split_whitespace().count()).sum::<usize>() as f64 / names;
    let reads_as_text = chars >= 25.0 || words >= 4.0;
    if (classes >= 3 && singletons * 2 > classes) || (classes > 10 && classes * 10 > train.len() && reads_as_text) {
        let shown: Vec<&str> = labels.names.iter().take(3).map(String::as_str).collect();
        bail!(
            "{}: the label column has {classes} distinct values in {} training rows ({singletons} of them once, e.g. {:?}): that looks like a text column, not classes; name the label's column with data.label_column, or set data.label_names (or model.num_labels) if these are the classes you mean",
            config.data.source,
            train.len(),
            shown.join("\", \"")
        );
    }
    Ok(())
}

/// What a run says about its task at the start: the task, each class with its training and
/// evaluation examples, and what deserves a second look (a class almost absent from training,
/// a class absent from evaluation, decimal labels read as a regression target).
pub fn label_report(config: &RunConfig, subsets: &textdata::Subsets, labels: &LabelSpace) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    if labels.problem_type == ProblemType::Regression {
        let values: Vec<f32> = subsets
            .train
            .iter()
            .filter_map(|e| match e.label {
                textdata::Target::Value(v) => Some(v),
                _ => None,
            })
            .collect();
        let mut distinct: Vec<f32> = values.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        if config.model.problem_type.is_none() && distinct.len() <= 10 && distinct.iter().all(|v| v.fract() == 0.0) {
            let shown: Vec<String> = distinct.iter().map(|v| format!("{v:.1}")).collect();
            notes.push(format!(
                "the labels are written as decimals ({}): read as a regression target, as transformers' run_glue.py reads them; set model.problem_type = \"single_label_classification\" if they are classes",
                shown.join(", ")
            ));
        }
        return (format!("task: regression on {} training examples", values.len()), notes);
    }
    let (train, eval) = (class_totals(&subsets.train, labels), class_totals(&subsets.eval, labels));
    let largest = train.iter().copied().max().unwrap_or(0);
    for (i, name) in labels.names.iter().enumerate() {
        if train[i] > 0 && train[i] * 100 < largest && train[i] <= 5 {
            notes.push(format!(
                "class {name:?} has {} training example(s) against {largest} of the largest class: a stray label? (data.label_names lists the classes meant; a label outside them is then an error naming its line)",
                train[i]
            ));
        }
        if eval[i] == 0 {
            notes
                .push(format!("class {name:?} has no example in the evaluation subset: its scores cannot be measured"));
        }
    }
    let classes: Vec<String> =
        labels.names.iter().enumerate().map(|(i, n)| format!("{n} {}/{}", train[i], eval[i])).collect();
    (format!("task: {}; classes (train/eval examples): {}", labels.problem_type, classes.join(", ")), notes)
}

/// Examples per class (multi-label: examples that have it).
pub fn class_totals(examples: &[textdata::Example], labels: &LabelSpace) -> Vec<usize> {
    let mut counts = vec![0; labels.names.len()];
    for e in examples {
        match &e.label {
            textdata::Target::Class(c) => {
                if let Some(n) = counts.get_mut(*c) {
                    *n += 1;
                }
            }
            textdata::Target::MultiHot(row) => {
                for (n, v) in counts.iter_mut().zip(row) {
                    if *v > 0.5 {
                        *n += 1;
                    }
                }
            }
            textdata::Target::Value(_) => {}
        }
    }
    counts
}

/// Tokenizes the subsets once for the run.
pub fn tokenize_data(
    config: &RunConfig,
    subsets: textdata::Subsets,
    labels: LabelSpace,
    tokenizer: EncoderTokenizer,
    output: Output,
) -> Result<RunData> {
    let strip = config.data.strip_html_breaks;
    let bar = progress_bar(output, (subsets.train.len() + subsets.eval.len()) as u64, "tokenize");
    let train = textdata::tokenize(&subsets.train, &tokenizer, strip, |n| bar.set_position(n as u64))?;
    let done = train.len();
    let eval = textdata::tokenize(&subsets.eval, &tokenizer, strip, |n| bar.set_position((done + n) as u64))?;
    bar.finish_and_clear();
    Ok(RunData { train: TextDataset::new(train), eval: TextDataset::new(eval), tokenizer, labels })
}

/// A `model.num_labels` the config sets must be what the data has: a label the classifier
/// has no row for, or a row no label means, is a config that does not fit the data.
fn check_num_labels(num_labels: Option<usize>, labels: &LabelSpace) -> Result<()> {
    match num_labels {
        Some(n) if n != labels.num_labels() => {
            let what = match labels.problem_type {
                ProblemType::Regression => "a regression target (1 output)".to_string(),
                _ => format!("{} classes ({})", labels.names.len(), labels.names.join(", ")),
            };
            bail!(
                "model.num_labels = {n}, but the data has {what}: set model.num_labels = {} or leave it out",
                labels.num_labels()
            )
        }
        _ => Ok(()),
    }
}

/// The linears the checkpoint lacked (drawn at random: DeBERTa's `pooler.dense`, a base
/// ModernBERT's `head.dense`) that `lora` would neither train nor save. PEFT leaves such a layer
/// frozen and out of the adapter, so that every later load draws it anew and the classifier
/// reads another layer than it was trained with; here they are added to `modules_to_save`.
fn fresh_unsaved_linears<B: burn::tensor::backend::Backend, M: lora_adapter::AdaptableModel<B>>(
    model: &mut M,
    report: &encoders::LoadReport,
    lora: &lora_adapter::LoraConfig,
) -> Vec<String> {
    let mut fresh = Vec::new();
    model.visit_linears(&mut |name, _| {
        if report.initialized.iter().any(|k| k == &format!("{name}.weight")) && !lora.saves_module(name) {
            fresh.push(name.to_string());
        }
    });
    fresh
}

/// `lora train`.
pub fn train<B: AutodiffBackend>(config: RunConfig, options: &TrainOptions, device: &B::Device) -> Result<Summary> {
    let started = Instant::now();
    let output = options.output;
    let mut run = RunDir::lock(&config.training.output_dir)?;
    let out = run.path.clone();

    // Every input, read and checked; the directory is not touched yet.
    let checkpoint = checkpoint_to_resume(&run, &config, options)?;
    check_local_paths(&config)?;
    // The data before the model: its labels size the classifier.
    let task = read_task(&config, output)?;
    let built = build_model::<B>(&config, &task.labels, options, device)?;
    let data = tokenize_data(&config, task.subsets, task.labels, built.tokenizer, output)?;
    let (mut trainer, batcher) =
        make_trainer(&config, built.model, built.lora, &data, built.positions, options, device)?;
    let resumed = resume(&mut trainer, checkpoint, &data, &config)?;
    trainer.interrupt = options.interrupt.clone();
    if trainer.interrupt.is_requested() {
        let why = format!("interrupted before training started; {} is as it was", out.display());
        return Err(lora_train::TrainError::Interrupted(why).into());
    }
    let logging_dir = prepare_run_dir(&mut run, &config, &trainer, resumed, output)?;

    let lengths = data.train.lengths();
    let t = &config.training;
    let first_epoch = textdata::epoch_batches(&lengths, t.per_device_train_batch_size, t.seed, 0, t.group_by_length);
    let padding_waste = textdata::PaddingStats::of(&lengths, &first_epoch, &batcher).waste();
    let tensorboard = add_callbacks(&mut trainer, &logging_dir, output)?;
    trainer.train(&data, &out)?;
    let loaded_best = load_best_model(&mut trainer, &out, output)?;

    let saved = lora_adapter::peft::save_adapter(&mut trainer.model, &trainer.lora, &out.join("adapter"))?;
    data.labels.write(&out.join("adapter"))?;
    let facts = RunFacts {
        labels: data.labels.clone(),
        class_counts: task.class_counts,
        data_notes: task.notes,
        total_seconds: started.elapsed().as_secs_f64(),
        adapter_bytes: saved.bytes,
        parameters: built.parameters,
        padding_waste,
        device: options.device.clone(),
        loaded_best,
    };
    let summary = Summary::new(&trainer.state, &config, facts)?;
    write_atomic(&out.join("summary.json"), &serde_json::to_string_pretty(&summary)?)?;
    write_atomic(&out.join("curves.svg"), &curves_svg(&trainer.state.log_history, &trainer.state.evaluations)?)?;
    say_where_the_results_are(&out, saved.bytes, &config, data.labels.num_labels(), tensorboard.as_deref(), output);
    Ok(summary)
}

/// The checkpoint `--resume` continues from (none: the run starts over), after the run
/// directory's contents are checked against `--resume` / `--overwrite`.
fn checkpoint_to_resume(run: &RunDir, config: &RunConfig, options: &TrainOptions) -> Result<Option<Checkpoint>> {
    let out = &run.path;
    let holds = run.holds();
    match (holds, options.resume, options.overwrite) {
        (Holds::Nothing, _, _) | (_, true, _) | (_, _, true) => {}
        (Holds::Finished, false, false) => bail!(
            "{} already holds a finished run; pass --overwrite to replace it (or --resume with more training.num_train_epochs)",
            out.display()
        ),
        (Holds::Unfinished, false, false) => {
            bail!("{} already holds a run; pass --resume to continue it or --overwrite to replace it", out.display())
        }
    }
    let checkpoint = if options.resume { resume_point(out, holds, config)? } else { None };
    if options.resume && checkpoint.is_none() {
        say(options.output, &format!("{} holds no checkpoint: starting the run from the beginning", out.display()));
    }
    Ok(checkpoint)
}

/// The run's data and what it says of the task: the subsets, their label space, the class
/// counts and the notes shown whatever the output mode.
struct Task {
    subsets: textdata::Subsets,
    labels: LabelSpace,
    class_counts: Option<ClassCounts>,
    notes: Vec<String>,
}

fn read_task(config: &RunConfig, output: Output) -> Result<Task> {
    let (subsets, labels) = read_data(config)?;
    if config.training.label_smoothing_factor > 0.0 && labels.problem_type != ProblemType::SingleLabelClassification {
        bail!(
            "training.label_smoothing_factor smooths class targets, but {} is {}; set it to 0",
            config.data.source,
            labels.problem_type
        );
    }
    let (task, notes) = label_report(config, &subsets, &labels);
    say(output, &task);
    for note in &notes {
        // Shown whatever the output mode: they may mean the run is not the one intended.
        crate::console::err(format!("note: {note}"));
    }
    let class_counts = (labels.problem_type != ProblemType::Regression).then(|| ClassCounts {
        train: class_totals(&subsets.train, &labels),
        eval: class_totals(&subsets.eval, &labels),
    });
    Ok(Task { subsets, labels, class_counts, notes })
}

/// The base model with the run's adapters on it, its tokenizer, its text positions and the
/// parameters it trains.
struct Built<B: AutodiffBackend> {
    model: encoders::AutoModel<B>,
    lora: lora_adapter::LoraConfig,
    tokenizer: EncoderTokenizer,
    positions: usize,
    parameters: ParameterCount,
}

fn build_model<B: AutodiffBackend>(
    config: &RunConfig,
    labels: &LabelSpace,
    options: &TrainOptions,
    device: &B::Device,
) -> Result<Built<B>> {
    let output = options.output;
    // Fresh weights (classifier, adapters) come from the run's seed, drawn on the host.
    kernels::random::seed::<B>(device, config.training.seed);
    let m = &config.model;
    let mut pretrained = load_base::<B>(config, labels, output, device)?;
    let positions = pretrained.config.max_text_positions();
    if config.data.max_length > positions {
        say(
            output,
            &format!(
                "data.max_length = {} is more than the {positions} positions {} has: texts are cut at {positions} tokens",
                config.data.max_length, m.name_or_path
            ),
        );
    }
    let tokenizer = crate::commands::tokenizer(&pretrained, config.data.max_length)?;
    config.data.check_padding(positions)?;
    let mut lora = config.lora.to_peft(&m.name_or_path, &pretrained.config.family)?;
    let fresh = fresh_unsaved_linears(&mut pretrained.model, &pretrained.report, &lora);
    if !fresh.is_empty() {
        say(
            output,
            &format!(
                "{} drawn at random and not in modules_to_save: trained and saved with the adapter, since a frozen random layer would be drawn again, differently, wherever the adapter is loaded",
                fresh.join(", ")
            ),
        );
        lora.modules_to_save.get_or_insert_with(Vec::new).extend(fresh);
    }
    let (mut model, _) = lora_adapter::inject(pretrained.model, &lora, device)?;
    if config.training.bf16 && options.device.starts_with("cpu") {
        // Autocast's share of Trainer's `bf16=True` on the CPU: the frozen base products (and
        // their input gradients) in bf16; adapters, optimizer state and the saved adapter f32.
        let dtype = crate::commands::in_dtype(&mut model, Dtype::Bfloat16, &options.device, "training.bf16 = true");
        if dtype == Dtype::Bfloat16 {
            say(
                output,
                "bf16: the frozen base linears compute in bfloat16 (f32 accumulation); adapters, classifier and optimizer state stay float32",
            );
        }
    }
    let parameters = ParameterCount::of(&mut model, &lora);
    say(output, &parameters.to_string());
    Ok(Built { model, lora, tokenizer, positions, parameters })
}

/// `model.name_or_path` with the task's head; a keyword the family's config lacks, set here as
/// `model.KEY`, is named as that setting.
fn load_base<B: AutodiffBackend>(
    config: &RunConfig,
    labels: &LabelSpace,
    output: Output,
    device: &B::Device,
) -> Result<encoders::Pretrained<B>> {
    let m = &config.model;
    let pretrained = encoders::from_pretrained::<B>(&m.name_or_path, &m.load_options(labels), device).map_err(|e| {
        let setting = match &e {
            encoders::EncoderError::UnknownConfigKey { key, .. } => Some(format!("model.{key}")),
            _ => None,
        };
        match setting {
            Some(setting) => anyhow::Error::new(e).context(setting),
            None => e.into(),
        }
    })?;
    if !pretrained.report.initialized.is_empty() {
        say(
            output,
            &format!(
                "{} has no classifier: initialised {} as transformers does",
                m.name_or_path,
                pretrained.report.initialized.join(", ")
            ),
        );
    }
    Ok(pretrained)
}
/// The trainer over the tokenized data, its batches padded as `data.pad_to_multiple_of` says
/// (or as suits the device).
fn make_trainer<B: AutodiffBackend>(
    config: &RunConfig,
    model: encoders::AutoModel<B>,
    lora: lora_adapter::LoraConfig,
    data: &RunData,
    positions: usize,
    options: &TrainOptions,
    device: &B::Device,
) -> Result<(Trainer<B>, textdata::TextBatcher)> {
    let steps_per_epoch = data.train.items().len().div_ceil(config.training.per_device_train_batch_size);
    let given = config.data.pad_to_multiple_of;
    let pad = crate::config::padding_for(given, &options.device, config.data.max_length, positions);
    if let Some(note) = crate::config::padding_note(given, pad, "data.pad_to_multiple_of =") {
        say(options.output, &note);
    }
    let batcher = textdata::TextBatcher { pad_id: data.tokenizer.pad_id(), pad_to_multiple_of: pad };
    let mut trainer = Trainer::new(model, lora, config.training.clone(), steps_per_epoch, batcher, device.clone())?;
    // The manifest records the whole run's config, which `--resume` compares.
    trainer.run_config = serde_json::to_value(config)?;
    trainer.labels = data.labels.clone();
    Ok((trainer, batcher))
}

/// Where a resumed run was (its checkpoint, step and epoch), after its checkpoint is checked
/// against this run's data and length and loaded; the data's fingerprint goes into the trainer
/// either way, for the checkpoints it writes.
fn resume<B: AutodiffBackend>(
    trainer: &mut Trainer<B>,
    checkpoint: Option<Checkpoint>,
    data: &RunData,
    config: &RunConfig,
) -> Result<Option<(PathBuf, u64, usize)>> {
    let fingerprint = DataFingerprint {
        train: SplitFingerprint::of(data.train.items()),
        eval: SplitFingerprint::of(data.eval.items()),
    };
    let resumed = checkpoint.as_ref().map(|c| (c.dir.clone(), c.state.global_step, c.state.epoch));
    if let Some(checkpoint) = checkpoint {
        if let Some(what) = checkpoint.manifest.data.differences(&fingerprint) {
            bail!(
                "--resume: the data is not the run's ({what}); {} was trained on other data (data.source = {}). Nothing was changed; restore the run's data, or start a new run with --overwrite",
                checkpoint.dir.display(),
                config.data.source
            );
        }
        if checkpoint.state.global_step > trainer.total_steps as u64 {
            bail!(
                "{} is at step {}, past the {} steps of this run's {} epochs; nothing was changed",
                checkpoint.dir.display(),
                checkpoint.state.global_step,
                trainer.total_steps,
                config.training.num_train_epochs
            );
        }
        let dir = checkpoint.dir.clone();
        trainer
            .resume(checkpoint)
            .with_context(|| format!("cannot resume from {}; nothing was changed", dir.display()))?;
    }
    trainer.data = Some(fingerprint);
    Ok(resumed)
}

/// The run directory's first writes: an earlier run's files go (when not continuing it), then
/// `config.toml` and the checkpoint's `metrics.jsonl`. TensorBoard's directory (returned) is
/// checked writable before anything goes.
fn prepare_run_dir<B: AutodiffBackend>(
    run: &mut RunDir,
    config: &RunConfig,
    trainer: &Trainer<B>,
    resumed: Option<(PathBuf, u64, usize)>,
    output: Output,
) -> Result<PathBuf> {
    let out = run.path.clone();
    let logging_dir = config.training.logging_dir(&out);
    if config.training.report_to.tensorboard() {
        check_writable_dir(&logging_dir)
            .with_context(|| format!("training.logging_dir {}: nothing was changed", logging_dir.display()))?;
    }
    run.prepare(resumed.is_none(), Some(&logging_dir))?;
    write_atomic(&out.join("config.toml"), &config.to_toml()?)?;
    // metrics.jsonl is the checkpoint's history: no line from a lost step.
    let lines: String = trainer.state.log_history.iter().map(|v| format!("{v}\n")).collect();
    write_atomic(&out.join("metrics.jsonl"), &lines)?;
    if let Some((dir, step, epoch)) = resumed {
        say(output, &format!("resuming from {} (step {step}, epoch {epoch})", dir.display()));
    }
    Ok(logging_dir)
}

/// The run's last lines: where the adapter and summary are, how to load the adapter in
/// Python, and TensorBoard's command.
fn say_where_the_results_are(
    out: &Path,
    bytes: u64,
    config: &RunConfig,
    num_labels: usize,
    tensorboard: Option<&Path>,
    output: Output,
) {
    let adapter = out.join("adapter");
    say(
        output,
        &format!(
            "adapter: {} ({bytes} bytes); summary: {}\nload it in Python with PEFT:\n    model = AutoModelForSequenceClassification.from_pretrained({:?}, num_labels={num_labels})\n    model = PeftModel.from_pretrained(model, {:?})",
            adapter.display(),
            out.join("summary.json").display(),
            config.model.name_or_path,
            adapter.display().to_string(),
        ),
    );
    if let Some(dir) = tensorboard.and_then(Path::parent) {
        say(output, &format!("TensorBoard: tensorboard --logdir {}", dir.display()));
    }
}

/// The program's callbacks, as its flags and config ask: progress bars, JSON lines
/// (`--json`), TensorBoard's event file (`report_to`, opened now so that an unwritable
/// `logging_dir` is said before the first step; its path is returned), early stopping.
fn add_callbacks<B: AutodiffBackend>(
    trainer: &mut Trainer<B>,
    logging_dir: &Path,
    output: Output,
) -> Result<Option<std::path::PathBuf>> {
    let t = trainer.args.clone();
    trainer.callbacks.push(Box::new(ProgressBars::new(output)));
    if output == Output::Json {
        trainer.callbacks.push(Box::new(JsonLines { interrupt: trainer.interrupt.clone() }));
    }
    let mut tensorboard = None;
    if t.report_to.tensorboard() {
        let tb = TensorBoard::create(logging_dir)?;
        tensorboard = Some(tb.path.clone());
        trainer.callbacks.push(Box::new(TensorBoardLogs(tb)));
    }
    if let Some(patience) = t.early_stopping_patience {
        let (_, greater) = t.best_metric(&trainer.labels)?;
        trainer.callbacks.push(Box::new(EarlyStopping::new(patience, t.early_stopping_threshold, greater, output)));
    }
    Ok(tensorboard)
}

/// Creates `dir` (with its parents) and checks that a file can be made in it.
fn check_writable_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).context("cannot create the directory")?;
    let probe = dir.join(format!(".lora-write-check.{}", std::process::id()));
    std::fs::File::create(&probe).context("cannot write in the directory")?;
    std::fs::remove_file(&probe).context("cannot write in the directory")?;
    Ok(())
}

/// The Hub ids of the local copies the shipped configs name (`../shared/assets/...` exists on
/// the project's machines only).
const HUB_IDS: [(&str, &str); 4] = [
    ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    ("bert-base-uncased", "bert-base-uncased"),
    ("imdb", "stanfordnlp/imdb"),
    ("imdb-1000-500", "stanfordnlp/imdb"),
];

/// A model or data path that is plainly local (`./`, `../`, `/`, `~`, or more than `owner/name`)
/// and missing is said so before anything else, with the Hub id to use instead when the path
/// is a copy of a known one.
fn check_local_paths(config: &RunConfig) -> Result<()> {
    let named = [("model.name_or_path", &config.model.name_or_path), ("data.source", &config.data.source)];
    for (key, value) in named {
        let path = Path::new(value.as_str());
        let local = value.starts_with(['.', '/', '~']) || value.split('/').count() > 2;
        if !local || path.exists() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let hint = match HUB_IDS.iter().find(|(local, _)| *local == name) {
            Some((_, id)) => {
                format!("; to download it from the Hugging Face Hub instead, set {key} = \"{id}\" (--set {key}={id})")
            }
            None => String::new(),
        };
        bail!("{key} = {value:?}: no such file or directory{hint}");
    }
    Ok(())
}

/// `load_best_model_at_end`: the best checkpoint's adapter into the model, so that `adapter/`
/// is it. Whether it was loaded; a best checkpoint that is gone is an error, not the last
/// step's adapter passed off as the best.
fn load_best_model<B: AutodiffBackend>(trainer: &mut Trainer<B>, out: &Path, output: Output) -> Result<bool> {
    if !trainer.args.load_best_model_at_end {
        return Ok(false);
    }
    let Some(name) = trainer.state.best_model_checkpoint.clone() else {
        say(output, "load_best_model_at_end: no evaluation had a checkpoint; adapter/ is the last step's");
        return Ok(false);
    };
    let dir = out.join("checkpoints").join(&name);
    let adapter = lora_adapter::peft::Adapter::read(&dir)
        .with_context(|| format!("load_best_model_at_end: cannot read the best checkpoint {}", dir.display()))?;
    lora_adapter::peft::load_weights(
        &mut trainer.model,
        &trainer.lora,
        &adapter.path,
        adapter.tensors,
        &trainer.device,
    )?;
    let (metric, _) = trainer.args.best_metric(&trainer.labels)?;
    say(
        output,
        &format!(
            "load_best_model_at_end: adapter/ is {} (eval_{metric} {:.4} at step {})",
            dir.display(),
            trainer.state.best_metric.unwrap_or(f64::NAN),
            trainer.state.best_global_step.unwrap_or_default()
        ),
    );
    Ok(true)
}
