//! `lora train`: the fine-tuning loop, its checkpoints and what a run leaves behind.
//!
//! The loop is ours rather than burn-train's `Learner`: Trainer's global-norm clipping, weight
//! decay groups and schedule (see [`crate::optim`]), PEFT-format adapters in each checkpoint,
//! bit-exact resume and a checkpoint on Ctrl-C are not things the `Learner` offers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bert::{BertForSequenceClassification, BertTokenizer, HubOptions};
use burn::data::dataloader::batcher::Batcher;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use imdb::{ReviewBatch, ReviewBatcher, ReviewDataset, TokenizedReview};
use indicatif::{ProgressBar, ProgressStyle};
use lora_adapter::{LoraConfig, ParameterCount};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::eval::{EvalMetrics, cross_entropy, evaluate};
use crate::optim::{AdamW, AdamWConfig, learning_rate};
use crate::report::{EpochRecord, append_jsonl, curves_svg, peak_rss_bytes, write_atomic};

/// Set by the Ctrl-C handler; the loop checks it after every step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How the run reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Progress bars on standard error.
    Bars,
    /// Nothing but errors.
    Quiet,
    /// One JSON object per log line on standard output.
    Json,
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub resume: bool,
    pub overwrite: bool,
    pub output: Output,
    pub device: String,
}

/// A model with adapters, its optimizer and its schedule: one step at a time.
pub struct Trainer<B: AutodiffBackend> {
    pub model: BertForSequenceClassification<B>,
    pub lora: LoraConfig,
    pub optim: AdamW<B::InnerBackend>,
    pub config: RunConfig,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// How each batch is padded (the tokenizer's padding id, `data.pad_to_multiple_of`).
    pub batcher: ReviewBatcher,
    pub device: B::Device,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub real_tokens: usize,
}

impl<B: AutodiffBackend> Trainer<B> {
    pub fn new(
        model: BertForSequenceClassification<B>,
        lora: LoraConfig,
        config: RunConfig,
        steps_per_epoch: usize,
        batcher: ReviewBatcher,
        device: B::Device,
    ) -> Self {
        let t = &config.training;
        let total_steps = steps_per_epoch * t.num_train_epochs;
        // Trainer: warmup_steps wins over warmup_ratio when set.
        let warmup_steps =
            if t.warmup_steps > 0 { t.warmup_steps } else { (t.warmup_ratio * total_steps as f64).ceil() as usize };
        let optim = AdamW::new(AdamWConfig {
            weight_decay: t.weight_decay,
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            epsilon: t.adam_epsilon,
            max_grad_norm: t.max_grad_norm,
        });
        Self { model, lora, optim, config, total_steps, warmup_steps, batcher, device }
    }

    /// One optimizer step on one batch. A non-finite loss is an error and changes nothing.
    pub fn step(&mut self, items: Vec<TokenizedReview>) -> Result<StepOutput> {
        let t = &self.config.training;
        let lr = learning_rate(
            t.learning_rate,
            self.optim.step as usize,
            self.total_steps,
            self.warmup_steps,
            &t.lr_scheduler_type,
        );
        // Dropout draws from a generator seeded per step, so a resumed run draws what the
        // uninterrupted one drew.
        B::seed(&self.device, step_seed(t.seed, self.optim.step));
        let batch: ReviewBatch<B> = self.batcher.batch(items, &self.device);
        let real_tokens = batch.real_tokens;
        let loss = cross_entropy(self.model.forward(batch.input), batch.labels);
        let grads = loss.backward();
        // The loss is read with the gradient norm, once the backward pass is queued: a GPU
        // backend then runs forward and backward without waiting on the host in between.
        let gradients = self.optim.gradients::<B, _>(&mut self.model, &self.lora, &grads, loss.inner());
        let loss_value = gradients.read_with;
        if !loss_value.is_finite() {
            bail!(
                "the training loss became {loss_value} at step {}; stopping (the last checkpoint is kept)",
                self.optim.step + 1
            );
        }
        let stats = self.optim.apply::<B, _>(&mut self.model, &self.lora, gradients, lr);
        Ok(StepOutput { loss: loss_value, learning_rate: lr, grad_norm: stats.grad_norm, real_tokens })
    }

    pub fn evaluate(&self, items: &[TokenizedReview]) -> EvalMetrics {
        let model = self.model.valid();
        evaluate(&model, items, self.config.training.per_device_eval_batch_size, self.batcher, &self.device)
    }
}

/// A seed per optimizer step, derived from the run's seed (odd multipliers keep distinct
/// `(seed, step)` pairs apart).
fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// Where a checkpoint leaves the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: u64,
    /// Epochs fully done.
    pub epoch: usize,
    /// Batches of the current epoch already done (non-zero after a Ctrl-C).
    pub batch_in_epoch: usize,
    pub epochs: Vec<EpochRecord>,
    pub log_history: Vec<serde_json::Value>,
    pub train_seconds: f64,
    pub train_samples: usize,
    pub train_tokens: usize,
}

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Writes `DIR/checkpoints/NAME/` (adapter, optimizer, state) through a temporary directory.
pub fn save_checkpoint<B: AutodiffBackend>(
    trainer: &mut Trainer<B>,
    state: &TrainerState,
    dir: &Path,
) -> Result<PathBuf> {
    let parent = dir.parent().context("checkpoint directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir.file_name().context("checkpoint directory has no name")?.to_string_lossy().into_owned();
    let tmp = parent.join(format!(".tmp-{name}"));
    let _ = std::fs::remove_dir_all(&tmp);
    lora_adapter::peft::save_adapter(&mut trainer.model, &trainer.lora, &tmp)?;
    let tensors = trainer
        .optim
        .to_tensors()
        .into_iter()
        .map(|(k, data)| (k, lora_adapter::tensor_file::RawTensor { shape: vec![data.len()], data }))
        .collect();
    lora_adapter::tensor_file::write_safetensors(&tmp.join(OPTIMIZER_FILE), &tensors, &[])?;
    write_atomic(&tmp.join(STATE_FILE), &serde_json::to_string_pretty(state)?)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("cannot move the checkpoint into {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// The checkpoint with the most steps under `DIR/checkpoints`.
pub fn latest_checkpoint(output_dir: &Path) -> Result<Option<(PathBuf, TrainerState)>> {
    let root = output_dir.join("checkpoints");
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(None) };
    let mut best: Option<(PathBuf, TrainerState)> = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let state_path = path.join(STATE_FILE);
        if entry.file_name().to_string_lossy().starts_with('.') || !state_path.is_file() {
            continue;
        }
        let state: TrainerState = serde_json::from_str(&std::fs::read_to_string(&state_path)?)
            .with_context(|| format!("{} is not a trainer state", state_path.display()))?;
        if best.as_ref().is_none_or(|(_, b)| state.global_step > b.global_step) {
            best = Some((path, state));
        }
    }
    Ok(best)
}

fn read_optimizer(path: &Path) -> Result<std::collections::BTreeMap<String, Vec<f32>>> {
    let tensors = lora_adapter::tensor_file::read_safetensors(path, |_| false)?;
    Ok(tensors.into_iter().map(|(k, t)| (k, t.data)).collect())
}

/// The tokenized subsets of a run.
pub struct RunData {
    pub train: ReviewDataset,
    pub eval: ReviewDataset,
    pub tokenizer: BertTokenizer,
}

fn spinner(output: Output, len: u64, prefix: &str) -> ProgressBar {
    if output != Output::Bars {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed} elapsed, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

pub fn say(output: Output, message: &str) {
    if output == Output::Bars {
        eprintln!("{message}");
    }
}

/// Loads the data and tokenizes it once for the run.
pub fn prepare_data(config: &RunConfig, tokenizer: BertTokenizer, output: Output) -> Result<RunData> {
    let source = imdb::Source::detect(&config.data.source)?;
    let splits = source.load(&HubOptions::from_env())?;
    let subsets = imdb::draw(splits, &config.data.subset())?;
    let bar = spinner(output, (subsets.train.len() + subsets.eval.len()) as u64, "tokenize");
    let train =
        imdb::tokenize(&subsets.train, &tokenizer, config.data.strip_html_breaks, |n| bar.set_position(n as u64))?;
    let done = train.len();
    let eval = imdb::tokenize(&subsets.eval, &tokenizer, config.data.strip_html_breaks, |n| {
        bar.set_position((done + n) as u64)
    })?;
    bar.finish_and_clear();
    Ok(RunData { train: ReviewDataset::new(train), eval: ReviewDataset::new(eval), tokenizer })
}

/// A run's output directory: refuse to mix two runs.
fn claim_output_dir(dir: &Path, options: &TrainOptions) -> Result<()> {
    let holds_run = ["summary.json", "checkpoints", "metrics.jsonl", "adapter"].iter().any(|f| dir.join(f).exists());
    if holds_run && !options.resume && !options.overwrite {
        bail!("{} already holds a run; pass --resume to continue it or --overwrite to replace it", dir.display());
    }
    if holds_run && options.overwrite && !options.resume {
        for f in ["summary.json", "metrics.jsonl", "curves.svg", "config.toml"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        for d in ["checkpoints", "adapter"] {
            let _ = std::fs::remove_dir_all(dir.join(d));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
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

/// `lora train`.
pub fn train<B: AutodiffBackend>(mut config: RunConfig, options: &TrainOptions, device: &B::Device) -> Result<Summary> {
    let started = Instant::now();
    let out_dir = config.training.output_dir.clone();
    let output = options.output;
    let resume = if options.resume {
        let found = latest_checkpoint(&out_dir)?;
        if found.is_none() {
            bail!("--resume: {} holds no checkpoint to resume from", out_dir.join("checkpoints").display());
        }
        // The run continues with the config it started with.
        let saved = out_dir.join("config.toml");
        config = RunConfig::load(Some(&saved), &[])
            .with_context(|| format!("cannot read the run's config {}", saved.display()))?;
        found
    } else {
        None
    };
    claim_output_dir(&out_dir, options)?;
    write_atomic(&out_dir.join("config.toml"), &config.to_toml())?;

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
    config.data.check_padding(pretrained.config.max_position_embeddings)?;
    let lora = config.lora.to_peft(&m.name_or_path);
    // Resuming: the checkpoint's adapter replaces the fresh one.
    let mut model = match &resume {
        Some((dir, _)) => lora_adapter::peft::load_adapter(pretrained.model, dir, device)?.0,
        None => lora_adapter::inject(pretrained.model, &lora, device)?.0,
    };
    let count = ParameterCount::of(&mut model, &lora);
    say(output, &count.to_string());

    let data = prepare_data(&config, tokenizer, output)?;
    let batch_size = config.training.per_device_train_batch_size;
    let steps_per_epoch = data.train.items().len().div_ceil(batch_size);
    let batcher = config.data.batcher(data.tokenizer.pad_id());
    let mut trainer = Trainer::new(model, lora, config.clone(), steps_per_epoch, batcher, device.clone());

    let mut state = TrainerState::default();
    if let Some((dir, saved)) = resume {
        trainer
            .optim
            .restore(saved.global_step, read_optimizer(&dir.join(OPTIMIZER_FILE))?, device)
            .map_err(anyhow::Error::msg)?;
        state = saved;
        // metrics.jsonl is rebuilt from the checkpoint's history: no line from a lost step.
        let lines: Vec<String> = state.log_history.iter().map(|v| v.to_string()).collect();
        write_atomic(&out_dir.join("metrics.jsonl"), &(lines.join("\n") + if lines.is_empty() { "" } else { "\n" }))?;
        say(output, &format!("resuming from {} (step {}, epoch {})", dir.display(), state.global_step, state.epoch));
    } else {
        let _ = std::fs::remove_file(out_dir.join("metrics.jsonl"));
    }

    let lengths = data.train.lengths();
    let t = config.training.clone();
    let first_epoch = imdb::epoch_batches(&lengths, batch_size, t.seed, 0, t.group_by_length);
    let waste = imdb::PaddingStats::of(&lengths, &first_epoch, &batcher).waste();
    let log = |state: &mut TrainerState, value: serde_json::Value| -> Result<()> {
        if output == Output::Json {
            println!("{value}");
        }
        append_jsonl(&out_dir.join("metrics.jsonl"), &value)?;
        state.log_history.push(value);
        Ok(())
    };

    for epoch in state.epoch..t.num_train_epochs {
        let batches = imdb::epoch_batches(&lengths, batch_size, t.seed, epoch as u64, t.group_by_length);
        let bar = spinner(output, batches.len() as u64, &format!("epoch {}/{}", epoch + 1, t.num_train_epochs));
        bar.set_position(state.batch_in_epoch as u64);
        let epoch_start = Instant::now();
        let (mut window_loss, mut window_steps, mut epoch_loss, mut epoch_steps) = (0.0, 0usize, 0.0, 0usize);
        for (b, indices) in batches.iter().enumerate().skip(state.batch_in_epoch) {
            let step_start = Instant::now();
            let step = trainer.step(data.train.select(indices))?;
            let seconds = step_start.elapsed().as_secs_f64();
            state.global_step = trainer.optim.step;
            state.batch_in_epoch = b + 1;
            state.train_seconds += seconds;
            state.train_samples += indices.len();
            state.train_tokens += step.real_tokens;
            window_loss += step.loss;
            window_steps += 1;
            epoch_loss += step.loss;
            epoch_steps += 1;
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {:.1} samples/s",
                step.loss,
                step.learning_rate,
                indices.len() as f64 / seconds.max(1e-9)
            ));
            bar.inc(1);
            if (state.global_step as usize).is_multiple_of(t.logging_steps.max(1)) {
                let value = serde_json::json!({
                    "step": state.global_step,
                    "epoch": epoch as f64 + (b + 1) as f64 / batches.len() as f64,
                    "loss": window_loss / window_steps as f64,
                    "learning_rate": step.learning_rate,
                    "grad_norm": step.grad_norm,
                });
                log(&mut state, value)?;
                (window_loss, window_steps) = (0.0, 0);
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                bar.abandon();
                let dir = save_checkpoint(
                    &mut trainer,
                    &state,
                    &out_dir.join("checkpoints").join(format!("step-{}", state.global_step)),
                )?;
                bail!(
                    "interrupted: wrote {}; continue with `lora train --resume --config {}`",
                    dir.display(),
                    out_dir.join("config.toml").display()
                );
            }
        }
        bar.finish_and_clear();
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let eval_start = Instant::now();
        let metrics = trainer.evaluate(data.eval.items());
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: if epoch_steps > 0 { epoch_loss / epoch_steps as f64 } else { f64::NAN },
            eval: metrics,
            train_seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
        };
        let mut value = serde_json::to_value(&record)?;
        value["step"] = state.global_step.into();
        log(&mut state, value)?;
        say(
            output,
            &format!(
                "epoch {}: train loss {:.4}, eval loss {:.4}, eval accuracy {:.4}, F1 {:.4} ({:.0} s)",
                record.epoch,
                record.train_loss,
                record.eval.eval_loss,
                record.eval.eval_accuracy,
                record.eval.eval_f1,
                record.train_seconds + record.eval_seconds
            ),
        );
        state.epochs.push(record);
        state.epoch = epoch + 1;
        state.batch_in_epoch = 0;
        save_checkpoint(&mut trainer, &state, &out_dir.join("checkpoints").join(format!("epoch-{}", epoch + 1)))?;
    }

    let saved = lora_adapter::peft::save_adapter(&mut trainer.model, &trainer.lora, &out_dir.join("adapter"))?;
    let last = state.epochs.last().cloned().unwrap_or_default();
    let best = state
        .epochs
        .iter()
        .max_by(|a, b| a.eval.eval_accuracy.total_cmp(&b.eval.eval_accuracy))
        .cloned()
        .unwrap_or_default();
    let summary = Summary {
        final_eval_accuracy: last.eval.eval_accuracy,
        final_eval_loss: last.eval.eval_loss,
        best_eval_accuracy: best.eval.eval_accuracy,
        best_eval_loss: state.epochs.iter().map(|e| e.eval.eval_loss).fold(f64::INFINITY, f64::min),
        best_epoch: best.epoch,
        epochs: state.epochs.clone(),
        train_seconds: state.train_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        train_samples_per_second: state.train_samples as f64 / state.train_seconds.max(1e-9),
        train_tokens_per_second: state.train_tokens as f64 / state.train_seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        adapter_bytes: saved.bytes,
        trainable_parameters: count.trainable,
        all_parameters: count.all,
        train_padding_waste: waste,
        device: options.device.clone(),
        versions: serde_json::json!({ "lora": env!("CARGO_PKG_VERSION"), "burn": "0.21.0" }),
        config: serde_json::to_value(&config)?,
    };
    write_atomic(&out_dir.join("summary.json"), &serde_json::to_string_pretty(&summary)?)?;
    write_atomic(&out_dir.join("curves.svg"), &curves_svg(&state.epochs))?;
    say(
        output,
        &format!(
            "adapter: {} ({} bytes); summary: {}",
            out_dir.join("adapter").display(),
            saved.bytes,
            out_dir.join("summary.json").display()
        ),
    );
    Ok(summary)
}

/// Loads base model + adapter for eval/predict (inference backend, dropout off).
/// The model with its adapter, its tokenizer (truncating at `max_length`), and batches padded to
/// a multiple of `pad_to_multiple_of` (1: to their longest).
pub fn load_for_inference<B: Backend>(
    model: &str,
    adapter: &Path,
    max_length: usize,
    pad_to_multiple_of: usize,
    device: &B::Device,
) -> Result<(BertForSequenceClassification<B>, BertTokenizer, ReviewBatcher)> {
    // A bad adapter config is reported before the (slower) model load.
    lora_adapter::peft::read_config(adapter)?;
    let pretrained = bert::load_pretrained::<B>(model, None, device)?;
    let tokenizer = pretrained.tokenizer(max_length)?;
    let positions = pretrained.config.max_position_embeddings;
    crate::config::check_padding("--pad-to-multiple-of", pad_to_multiple_of.max(1), max_length, positions)?;
    let batcher = ReviewBatcher { pad_id: tokenizer.pad_id(), pad_to_multiple_of: pad_to_multiple_of.max(1) };
    let (model, _) = lora_adapter::peft::load_adapter(pretrained.model, adapter, device)?;
    Ok((model, tokenizer, batcher))
}
