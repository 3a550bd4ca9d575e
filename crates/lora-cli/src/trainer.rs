//! The training loop in Hugging Face Trainer's shape: [`Trainer::step`] (one optimizer step),
//! [`Trainer::train`] (the epochs), [`Trainer::maybe_log_save_evaluate`] (the one place that
//! logs, evaluates and saves), and the checkpoint pair [`Trainer::save_checkpoint`] /
//! [`Trainer::resume`].
//!
//! The loop is ours rather than burn-train's `Learner`: Trainer's global-norm clipping, weight
//! decay groups and schedule (see [`crate::optim`]), PEFT-format adapters in each checkpoint,
//! bit-exact resume and a checkpoint on Ctrl-C are not things the `Learner` offers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::data::dataloader::batcher::Batcher;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use encoders::{AutoModel, Classifier};
use indicatif::{ProgressBar, ProgressStyle};
use lora_adapter::LoraConfig;
use serde::{Deserialize, Serialize};
use tensor_file::RawTensor;
use textdata::{LabelSpace, TextBatch, TextBatcher, TextDataset, TokenizedExample};

use crate::checkpoint::{Checkpoint, DataFingerprint, OPTIMIZER_FILE, STATE_FILE, SplitFingerprint, write_manifest};
use crate::config::RunConfig;
use crate::eval::{EvalMetrics, evaluate};
use crate::loss::loss;
use crate::optim::{AdamW, AdamWConfig, learning_rate};
use crate::report::{EpochRecord, append_jsonl, write_atomic};

/// Set by the signal handler (Ctrl-C, SIGTERM); the loop checks it after every step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Why the run was stopped, when not by a signal (standard output closed).
pub static STOPPED_BY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The run was stopped by a signal after writing a checkpoint (or before writing anything).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

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

/// A model with adapters, its optimizer, its schedule and where the run stands; generic over
/// the model, as Burn's `Learner<M, O>` is (the program trains an [`AutoModel`]).
pub struct Trainer<B: AutodiffBackend, M = AutoModel<B>> {
    pub model: M,
    pub lora: LoraConfig,
    pub optim: AdamW<B::InnerBackend>,
    pub config: RunConfig,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// How each batch is padded (the tokenizer's padding id, `data.pad_to_multiple_of`).
    pub batcher: TextBatcher,
    pub device: B::Device,
    pub state: TrainerState,
    /// The task and classes (evaluation's metrics, `labels.json` in each checkpoint); by
    /// default the head's rows, unnamed.
    pub labels: LabelSpace,
    /// What the run trains on, recorded in each checkpoint's manifest.
    pub data: Option<DataFingerprint>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub real_tokens: usize,
}

/// A running mean of step losses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossSum {
    pub sum: f64,
    pub steps: usize,
}

impl LossSum {
    fn add(&mut self, loss: f64) {
        self.sum += loss;
        self.steps += 1;
    }

    fn mean(&self) -> f64 {
        if self.steps > 0 { self.sum / self.steps as f64 } else { f64::NAN }
    }
}

/// Where the run stands; a checkpoint holds it, so that a resumed run records exactly what the
/// uninterrupted one would (timings aside).
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
    /// Losses since the last log line.
    #[serde(default)]
    pub window: LossSum,
    /// Losses of the current epoch so far.
    #[serde(default)]
    pub epoch_losses: LossSum,
    /// Seconds of the current epoch's steps so far.
    #[serde(default)]
    pub epoch_seconds: f64,
}

impl<B, M> Trainer<B, M>
where
    B: AutodiffBackend,
    M: Classifier<B> + AutodiffModule<B>,
    M::InnerModule: Classifier<B::InnerBackend>,
{
    pub fn new(
        model: M,
        lora: LoraConfig,
        config: RunConfig,
        steps_per_epoch: usize,
        batcher: TextBatcher,
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
        let labels = LabelSpace::unnamed(model.num_labels());
        Self {
            model,
            lora,
            optim,
            config,
            total_steps,
            warmup_steps,
            batcher,
            device,
            state: TrainerState::default(),
            labels,
            data: None,
        }
    }

    /// One optimizer step on one batch. A non-finite loss, gradient norm or weight is an error
    /// and the update is not made.
    pub fn step(&mut self, items: Vec<TokenizedExample>) -> Result<StepOutput> {
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
        let batch: TextBatch<B> = self.batcher.batch(items, &self.device);
        let real_tokens = batch.real_tokens;
        let loss = loss(self.model.forward(batch.input), batch.labels);
        let grads = loss.backward();
        // The loss is read with the gradient norm, once the backward pass is queued: a GPU
        // backend then runs forward and backward without waiting on the host in between.
        let gradients = self.optim.gradients::<B, _>(&mut self.model, &self.lora, &grads, loss.inner())?;
        let step = self.optim.step + 1;
        let stop = |what: &str, value: f64| {
            format!("{what} became {value} at step {step}; stopping (the last checkpoint is kept)")
        };
        if !gradients.read_with.is_finite() {
            bail!(stop("the training loss", gradients.read_with));
        }
        if !gradients.weights_norm.is_finite() {
            bail!(stop("the trained weights' norm", gradients.weights_norm));
        }
        if !gradients.grad_norm.is_finite() {
            bail!(stop("the gradient norm", gradients.grad_norm));
        }
        let loss_value = gradients.read_with;
        let stats = self.optim.apply::<B, _>(&mut self.model, &self.lora, gradients, lr);
        Ok(StepOutput { loss: loss_value, learning_rate: lr, grad_norm: stats.grad_norm, real_tokens })
    }

    pub fn evaluate(&self, items: &[TokenizedExample]) -> Result<EvalMetrics> {
        let model = self.model.valid();
        let batch_size = self.config.training.per_device_eval_batch_size;
        Ok(evaluate(&model, items, &self.labels, batch_size, self.batcher, &self.device)?)
    }

    /// Writes the adapter, the optimizer state, the trainer state and last the manifest into
    /// `dir`, through a temporary directory beside it and a rename: a checkpoint is whole or absent.
    pub fn save_checkpoint(&mut self, dir: &Path) -> Result<PathBuf> {
        let parent = dir.parent().context("checkpoint directory has no parent")?;
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        let name = dir.file_name().context("checkpoint directory has no name")?.to_string_lossy().into_owned();
        let tmp = parent.join(format!(".tmp-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let written = (|| -> Result<()> {
            lora_adapter::peft::save_adapter(&mut self.model, &self.lora, &tmp)?;
            self.labels.write(&tmp)?;
            let tensors = self
                .optim
                .to_tensors()?
                .into_iter()
                .map(|(k, data)| (k, RawTensor { shape: vec![data.len()], data }))
                .collect();
            tensor_file::write_safetensors(&tmp.join(OPTIMIZER_FILE), &tensors, &[])?;
            write_atomic(&tmp.join(STATE_FILE), &serde_json::to_string_pretty(&self.state)?)?;
            let data = self.data.clone().unwrap_or_else(|| {
                let none = SplitFingerprint::of(&[]);
                DataFingerprint { train: none.clone(), eval: none }
            });
            write_manifest(&tmp, &self.state, serde_json::to_value(&self.config)?, &data)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        std::fs::rename(&tmp, dir).with_context(|| format!("cannot move the checkpoint into {}", dir.display()))?;
        Ok(dir.to_path_buf())
    }

    /// Continues from `checkpoint`: its adapter weights, optimizer state and trainer state.
    pub fn resume(&mut self, checkpoint: Checkpoint) -> Result<()> {
        let Checkpoint { dir, state, optimizer, adapter, .. } = checkpoint;
        let saved = &adapter.config;
        if (saved.r, &saved.target_modules, &saved.modules_to_save)
            != (self.lora.r, &self.lora.target_modules, &self.lora.modules_to_save)
        {
            bail!("the adapter in {} is not this run's ([lora] differs from its adapter_config.json)", dir.display());
        }
        lora_adapter::peft::load_weights(&mut self.model, &self.lora, &adapter.path, adapter.tensors, &self.device)?;
        self.optim
            .restore::<B, M>(&mut self.model, &self.lora, state.global_step, optimizer, &self.device)
            .map_err(|m| anyhow::anyhow!("{}: {m}", dir.join(OPTIMIZER_FILE).display()))?;
        self.state = state;
        Ok(())
    }

    /// The epochs from where the state stands to the config's last, checkpointing each; `out`
    /// is the run directory.
    pub fn train(&mut self, data: &RunData, out: &Path, output: Output) -> Result<()> {
        let batch_size = self.config.training.per_device_train_batch_size;
        let (seed, epochs, group) =
            (self.config.training.seed, self.config.training.num_train_epochs, self.config.training.group_by_length);
        let lengths = data.train.lengths();
        for epoch in self.state.epoch..epochs {
            let batches = textdata::epoch_batches(&lengths, batch_size, seed, epoch as u64, group);
            let bar = progress_bar(output, batches.len() as u64, &format!("epoch {}/{epochs}", epoch + 1));
            bar.set_position(self.state.batch_in_epoch as u64);
            for (b, indices) in batches.iter().enumerate().skip(self.state.batch_in_epoch) {
                let started = Instant::now();
                let step = self.step(data.train.select(indices))?;
                let seconds = started.elapsed().as_secs_f64();
                let s = &mut self.state;
                s.global_step = self.optim.step;
                s.batch_in_epoch = b + 1;
                s.train_seconds += seconds;
                s.epoch_seconds += seconds;
                s.train_samples += indices.len();
                s.train_tokens += step.real_tokens;
                s.window.add(step.loss);
                s.epoch_losses.add(step.loss);
                bar.set_message(format!(
                    "loss {:.4} lr {:.2e} {:.1} samples/s",
                    step.loss,
                    step.learning_rate,
                    indices.len() as f64 / seconds.max(1e-9)
                ));
                bar.inc(1);
                let control = Control {
                    log: (s.global_step as usize).is_multiple_of(self.config.training.logging_steps.max(1)),
                    epoch_end: b + 1 == batches.len(),
                    interrupted: INTERRUPTED.load(Ordering::SeqCst),
                };
                if control.epoch_end || control.interrupted {
                    bar.finish_and_clear();
                }
                let fraction = epoch as f64 + (b + 1) as f64 / batches.len() as f64;
                self.maybe_log_save_evaluate(control, &step, fraction, data, out, output)?;
            }
        }
        Ok(())
    }

    /// What happens after a step, in Trainer's order: a log line every `logging_steps`; at the
    /// end of an epoch, evaluation, its record and a checkpoint; on a signal, a checkpoint and
    /// a stop.
    fn maybe_log_save_evaluate(
        &mut self,
        control: Control,
        step: &StepOutput,
        epoch: f64,
        data: &RunData,
        out: &Path,
        output: Output,
    ) -> Result<()> {
        if control.log {
            let value = serde_json::json!({
                "step": self.state.global_step,
                "epoch": epoch,
                "loss": self.state.window.mean(),
                "learning_rate": step.learning_rate,
                "grad_norm": step.grad_norm,
            });
            self.log(value, out, output)?;
            self.state.window = LossSum::default();
        }
        if control.epoch_end {
            let done = self.state.epoch + 1;
            let started = Instant::now();
            let metrics = self.evaluate(data.eval.items())?;
            if !metrics.eval_loss.is_finite() {
                let kept = match self.state.epoch {
                    0 => "no checkpoint was written".to_string(),
                    n => format!(
                        "{} is the last good checkpoint",
                        out.join("checkpoints").join(format!("epoch-{n}")).display()
                    ),
                };
                bail!(
                    "the evaluation loss after epoch {done} is {}: the model diverged; stopping ({kept})",
                    metrics.eval_loss
                );
            }
            let record = EpochRecord {
                epoch: done,
                train_loss: self.state.epoch_losses.mean(),
                eval: metrics,
                train_seconds: self.state.epoch_seconds,
                eval_seconds: started.elapsed().as_secs_f64(),
            };
            let mut value = serde_json::to_value(&record)?;
            value["step"] = self.state.global_step.into();
            self.log(value, out, output)?;
            say(
                output,
                &format!(
                    "epoch {}: train loss {:.4}, {} ({:.0} s)",
                    record.epoch,
                    record.train_loss,
                    record.eval.headline(),
                    record.train_seconds + record.eval_seconds
                ),
            );
            let s = &mut self.state;
            s.epochs.push(record);
            s.epoch = done;
            s.batch_in_epoch = 0;
            s.epoch_losses = LossSum::default();
            s.epoch_seconds = 0.0;
            self.save_checkpoint(&out.join("checkpoints").join(format!("epoch-{done}")))?;
        }
        if control.interrupted {
            let dir = if control.epoch_end {
                out.join("checkpoints").join(format!("epoch-{}", self.state.epoch))
            } else {
                self.save_checkpoint(&out.join("checkpoints").join(format!("step-{}", self.state.global_step)))?
            };
            let why = STOPPED_BY.get().map_or("interrupted", String::as_str);
            return Err(Interrupted(format!(
                "{why}: wrote {}; continue with `lora train --resume --output-dir {}`",
                dir.display(),
                out.display()
            ))
            .into());
        }
        Ok(())
    }

    /// One line of the run's record: `metrics.jsonl`, the trainer state, and stdout with `--json`.
    fn log(&mut self, value: serde_json::Value, out: &Path, output: Output) -> Result<()> {
        if output == Output::Json
            && let Err(e) = crate::console::out(&value)
        {
            // As Ctrl-C: the step ends with a checkpoint, and `--resume` continues the run.
            if !INTERRUPTED.swap(true, Ordering::SeqCst) {
                let _ = STOPPED_BY.set(format!("{e}"));
            }
        }
        append_jsonl(&out.join("metrics.jsonl"), &value)?;
        self.state.log_history.push(value);
        Ok(())
    }
}

/// What [`Trainer::maybe_log_save_evaluate`] does after a step (Trainer's `TrainerControl`).
#[derive(Debug, Clone, Copy)]
struct Control {
    log: bool,
    epoch_end: bool,
    interrupted: bool,
}

/// A seed per optimizer step, derived from the run's seed (odd multipliers keep distinct
/// `(seed, step)` pairs apart).
fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The tokenized subsets of a run.
pub struct RunData {
    pub train: TextDataset,
    pub eval: TextDataset,
    pub tokenizer: encoders::EncoderTokenizer,
    pub labels: LabelSpace,
}

pub fn progress_bar(output: Output, len: u64, prefix: &str) -> ProgressBar {
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
        crate::console::err(message);
    }
}
