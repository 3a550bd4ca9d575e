//! `lora train`: check every input, take the output directory, train, and leave the run's
//! record behind (adapter, checkpoints, `metrics.jsonl`, `summary.json`, `curves.svg`).
//!
//! Nothing in the output directory is removed or replaced until the config, model, tokenizer,
//! data, labels and the checkpoint to resume have all been read and checked: a run that fails
//! before that leaves an earlier run as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bert::{BertTokenizer, HubOptions};
use burn::tensor::backend::AutodiffBackend;
use imdb::ReviewDataset;
use lora_adapter::ParameterCount;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::report::{EpochRecord, curves_svg, peak_rss_bytes, write_atomic};
use crate::run_dir::{Holds, RunDir};
use crate::trainer::{Checkpoint, INTERRUPTED, Interrupted, Output, RunData, Trainer, TrainerState, progress_bar, say};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub resume: bool,
    pub overwrite: bool,
    pub output: Output,
    pub device: String,
}

/// Everything `summary.json` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub final_eval_accuracy: f64,
    pub final_eval_loss: f64,
    pub best_eval_accuracy: f64,
    pub best_eval_loss: f64,
    pub best_epoch: usize,
    pub epochs: Vec<EpochRecord>,
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

/// What a summary needs besides the trainer state.
struct RunFacts {
    total_seconds: f64,
    adapter_bytes: u64,
    parameters: ParameterCount,
    padding_waste: f64,
    device: String,
}

impl Summary {
    fn new(state: &TrainerState, config: &RunConfig, facts: RunFacts) -> Result<Self> {
        let last = state.epochs.last().cloned().unwrap_or_default();
        let best = state
            .epochs
            .iter()
            .max_by(|a, b| a.eval.eval_accuracy.total_cmp(&b.eval.eval_accuracy))
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            final_eval_accuracy: last.eval.eval_accuracy,
            final_eval_loss: last.eval.eval_loss,
            best_eval_accuracy: best.eval.eval_accuracy,
            best_eval_loss: state.epochs.iter().map(|e| e.eval.eval_loss).fold(f64::INFINITY, f64::min),
            best_epoch: best.epoch,
            epochs: state.epochs.clone(),
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
/// `training.num_train_epochs` may be changed (to train longer, as Trainer allows); any other
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
    let refused: Vec<&String> = changed.iter().filter(|k| k.as_str() != "training.num_train_epochs").collect();
    if !refused.is_empty() {
        let list: Vec<&str> = refused.iter().map(|k| k.as_str()).collect();
        bail!(
            "--resume continues the run in {} as it was configured, but {} differ(s) from its config.toml; only training.num_train_epochs may change on resume (start a new run with --overwrite or another --output-dir to change the rest)",
            dir.display(),
            list.join(", ")
        );
    }
    let mut config = saved;
    config.training.num_train_epochs = requested.training.num_train_epochs;
    config.training.output_dir = dir;
    Ok(config)
}

/// The `section.key`s whose values differ between two configs.
fn differences(a: &RunConfig, b: &RunConfig) -> Result<Vec<String>> {
    let (a, b) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
    let mut keys = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (section, values) in a {
            let (Some(x), Some(y)) = (values.as_object(), b.get(section).and_then(|v| v.as_object())) else { continue };
            let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
            names.sort();
            names.dedup();
            keys.extend(names.into_iter().filter(|k| x.get(*k) != y.get(*k)).map(|k| format!("{section}.{k}")));
        }
    }
    Ok(keys)
}

/// Loads the data and tokenizes it once for the run.
pub fn prepare_data(config: &RunConfig, tokenizer: BertTokenizer, output: Output) -> Result<RunData> {
    let source = imdb::Source::detect(&config.data.source)?;
    let splits = source.load(&HubOptions::from_env())?;
    let subsets = imdb::draw(splits, &config.data.subset())?;
    let bar = progress_bar(output, (subsets.train.len() + subsets.eval.len()) as u64, "tokenize");
    let train =
        imdb::tokenize(&subsets.train, &tokenizer, config.data.strip_html_breaks, |n| bar.set_position(n as u64))?;
    let done = train.len();
    let eval = imdb::tokenize(&subsets.eval, &tokenizer, config.data.strip_html_breaks, |n| {
        bar.set_position((done + n) as u64)
    })?;
    bar.finish_and_clear();
    Ok(RunData { train: ReviewDataset::new(train), eval: ReviewDataset::new(eval), tokenizer })
}

/// The data's labels must be exactly the classes `0..num_labels`: a label the classifier has
/// no row for, or a class the data never shows, is a config that does not fit the data.
fn check_labels(data: &RunData, num_labels: usize) -> Result<()> {
    let mut seen: Vec<u8> = data.train.items().iter().chain(data.eval.items()).map(|r| r.label).collect();
    seen.sort_unstable();
    seen.dedup();
    let list = seen.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    if seen.len() != num_labels || seen.iter().any(|&l| usize::from(l) >= num_labels) {
        bail!(
            "model.num_labels = {num_labels}, but the data has {} classes ({list}): set model.num_labels = {}",
            seen.len(),
            seen.len()
        );
    }
    Ok(())
}

/// `lora train`.
pub fn train<B: AutodiffBackend>(config: RunConfig, options: &TrainOptions, device: &B::Device) -> Result<Summary> {
    let started = Instant::now();
    let output = options.output;
    let mut run = RunDir::lock(&config.training.output_dir)?;
    let out = run.path.clone();

    // Every input, read and checked; the directory is not touched yet.
    let checkpoint = if options.resume { Checkpoint::latest(&out)? } else { None };
    match (run.holds(), options.resume, options.overwrite) {
        (Holds::Nothing, _, _) | (_, true, _) | (_, _, true) => {}
        (Holds::Finished, false, false) => bail!(
            "{} already holds a finished run; pass --overwrite to replace it (or --resume with more training.num_train_epochs)",
            out.display()
        ),
        (Holds::Unfinished, false, false) => {
            bail!("{} already holds a run; pass --resume to continue it or --overwrite to replace it", out.display())
        }
    }
    if let Some(c) = &checkpoint
        && c.state.epoch > config.training.num_train_epochs
    {
        bail!(
            "{} is past epoch {} already; training.num_train_epochs = {} cannot continue it",
            c.dir.display(),
            c.state.epoch,
            config.training.num_train_epochs
        );
    }
    if options.resume && checkpoint.is_none() {
        say(output, &format!("{} holds no checkpoint: starting the run from the beginning", out.display()));
    }

    // Model: fresh weights (classifier, adapters) come from the run's seed.
    B::seed(device, config.training.seed);
    let m = &config.model;
    let pretrained = bert::load_pretrained_configured::<B>(&m.name_or_path, &HubOptions::from_env(), device, |c| {
        c.num_labels = Some(m.num_labels);
        c.id2label = None;
        c.label2id = None;
        if let Some(p) = m.hidden_dropout_prob {
            c.hidden_dropout_prob = p;
        }
        if let Some(p) = m.attention_probs_dropout_prob {
            c.attention_probs_dropout_prob = p;
        }
        if let Some(p) = m.classifier_dropout {
            c.classifier_dropout = Some(p);
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
    let tokenizer = pretrained.tokenizer(config.data.max_length)?;
    config.data.check_padding(pretrained.config.max_text_positions())?;
    let lora = config.lora.to_peft(&m.name_or_path, pretrained.config.family)?;
    let (mut model, _) = lora_adapter::inject(pretrained.model, &lora, device)?;
    let parameters = ParameterCount::of(&mut model, &lora);
    say(output, &parameters.to_string());

    let data = prepare_data(&config, tokenizer, output)?;
    check_labels(&data, config.model.num_labels)?;
    let batch_size = config.training.per_device_train_batch_size;
    let steps_per_epoch = data.train.items().len().div_ceil(batch_size);
    let batcher = config.data.batcher(data.tokenizer.pad_id());
    let mut trainer = Trainer::new(model, lora, config.clone(), steps_per_epoch, batcher, device.clone());
    let resumed = checkpoint.as_ref().map(|c| (c.dir.clone(), c.state.global_step, c.state.epoch));
    if let Some(checkpoint) = checkpoint {
        trainer.resume(checkpoint)?;
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Interrupted(format!("interrupted before training started; {} is as it was", out.display())).into());
    }

    // The first write: an earlier run's files go only now (when not continuing it).
    run.prepare(resumed.is_none())?;
    write_atomic(&out.join("config.toml"), &config.to_toml()?)?;
    // metrics.jsonl is the checkpoint's history: no line from a lost step.
    let lines: String = trainer.state.log_history.iter().map(|v| format!("{v}\n")).collect();
    write_atomic(&out.join("metrics.jsonl"), &lines)?;
    if let Some((dir, step, epoch)) = resumed {
        say(output, &format!("resuming from {} (step {step}, epoch {epoch})", dir.display()));
    }

    let lengths = data.train.lengths();
    let first_epoch =
        imdb::epoch_batches(&lengths, batch_size, config.training.seed, 0, config.training.group_by_length);
    let padding_waste = imdb::PaddingStats::of(&lengths, &first_epoch, &batcher).waste();
    trainer.train(&data, &out, output)?;

    let saved = lora_adapter::peft::save_adapter(&mut trainer.model, &trainer.lora, &out.join("adapter"))?;
    let facts = RunFacts {
        total_seconds: started.elapsed().as_secs_f64(),
        adapter_bytes: saved.bytes,
        parameters,
        padding_waste,
        device: options.device.clone(),
    };
    let summary = Summary::new(&trainer.state, &config, facts)?;
    write_atomic(&out.join("summary.json"), &serde_json::to_string_pretty(&summary)?)?;
    write_atomic(&out.join("curves.svg"), &curves_svg(&trainer.state.epochs))?;
    say(
        output,
        &format!(
            "adapter: {} ({} bytes); summary: {}",
            out.join("adapter").display(),
            saved.bytes,
            out.join("summary.json").display()
        ),
    );
    Ok(summary)
}
