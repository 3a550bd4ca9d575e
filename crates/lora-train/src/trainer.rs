//! The training loop in Hugging Face Trainer's shape: [`Trainer::step`] (one optimizer step),
//! [`Trainer::train`] (the epochs), [`Trainer::maybe_log_save_evaluate`] (the one place that
//! logs, evaluates and saves), and the checkpoint pair [`Trainer::save_checkpoint`] /
//! [`Trainer::resume`].
//!
//! The loop is ours rather than burn-train's `Learner`: Trainer's global-norm clipping, weight
//! decay groups and schedule (see [`crate::optim`]), PEFT-format adapters in each checkpoint,
//! bit-exact resume and a checkpoint on Ctrl-C are not things the `Learner` offers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Result, TrainError, invalid};
use burn::data::dataloader::batcher::Batcher;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use encoders::{AutoModel, Classifier};
use indicatif::{ProgressBar, ProgressStyle};
use lora_adapter::LoraConfig;
use serde::{Deserialize, Serialize};
use tensor_file::RawTensor;
use textdata::{LabelSpace, TextBatch, TextBatcher, TextDataset, TokenizedExample};

use crate::args::{IntervalStrategy, SaveStrategy, TrainingArguments};
use crate::callbacks::{Callback, Interrupt};
use crate::checkpoint::{Checkpoint, DataFingerprint, OPTIMIZER_FILE, STATE_FILE, SplitFingerprint, write_manifest};
use crate::eval::{EvalMetrics, evaluate};
use crate::loss::smoothed_loss;
use crate::optim::{AdamW, AdamWConfig, LoraPlus};
use crate::report::{EpochRecord, Evaluation, append_jsonl, write_atomic};
use crate::schedule::Schedule;

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
    /// How the run trains: Trainer's `TrainingArguments`.
    pub args: TrainingArguments,
    /// What each checkpoint's manifest records as the run's config (`--resume` compares it):
    /// by default the arguments; the program gives its whole config.
    pub run_config: serde_json::Value,
    /// Optimizer steps of the run (`max_steps`, else the epochs' steps).
    pub total_steps: usize,
    /// Epochs the run goes through (with `max_steps`, enough to reach it; the last may be cut).
    pub epochs: usize,
    pub warmup_steps: usize,
    pub schedule: Schedule,
    /// How each batch is padded (the tokenizer's padding id, `data.pad_to_multiple_of`).
    pub batcher: TextBatcher,
    pub device: B::Device,
    pub state: TrainerState,
    /// The task and classes (evaluation's metrics, `labels.json` in each checkpoint); by
    /// default the head's rows, unnamed.
    pub labels: LabelSpace,
    /// What the run trains on, recorded in each checkpoint's manifest.
    pub data: Option<DataFingerprint>,
    /// What reports the run and what may end it (progress bars, JSON lines, TensorBoard, early
    /// stopping), called in order.
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Stops the run after its current step, with a checkpoint.
    pub interrupt: Interrupt,
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
    /// Every evaluation, in order (per epoch or every `eval_steps`).
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
    /// The best value of the metric for the best model so far, and the step it was reached at
    /// (the first, on a tie, as Trainer keeps it).
    #[serde(default)]
    pub best_metric: Option<f64>,
    #[serde(default)]
    pub best_global_step: Option<u64>,
    /// The checkpoint (under `checkpoints/`) of the best evaluation, once one is written.
    #[serde(default)]
    pub best_model_checkpoint: Option<String>,
    /// Evaluations since the last improvement (EarlyStoppingCallback's counter).
    #[serde(default)]
    pub patience_counter: usize,
    /// The step early stopping ended the run at.
    #[serde(default)]
    pub stopped_early_at_step: Option<u64>,
    /// The checkpoints this run wrote and still keeps (`save_total_limit`'s rotation).
    #[serde(default)]
    pub checkpoints: Vec<SavedCheckpoint>,
}

/// A checkpoint of the run: its directory's name under `checkpoints/` and its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    pub name: String,
    pub step: u64,
}

impl<B, M> Trainer<B, M>
where
    B: AutodiffBackend,
    M: Classifier<B> + AutodiffModule<B>,
    M::InnerModule: Classifier<B::InnerBackend>,
{
    /// A trainer for `batches_per_epoch` batches of `per_device_train_batch_size` an epoch.
    pub fn new(
        model: M,
        lora: LoraConfig,
        args: TrainingArguments,
        batches_per_epoch: usize,
        batcher: TextBatcher,
        device: B::Device,
    ) -> Result<Self> {
        let t = &args;
        let schedule = t.schedule()?;
        // Trainer: an epoch's last step takes the micro-batches that are left.
        let steps_per_epoch = batches_per_epoch.div_ceil(t.gradient_accumulation_steps.max(1)).max(1);
        let (total_steps, epochs) = match usize::try_from(t.max_steps) {
            Ok(max) if max > 0 => (max, max.div_ceil(steps_per_epoch)),
            _ => (steps_per_epoch * t.num_train_epochs, t.num_train_epochs),
        };
        // Trainer: warmup_steps wins over warmup_ratio when set.
        let warmup_steps =
            if t.warmup_steps > 0 { t.warmup_steps } else { (t.warmup_ratio * total_steps as f64).ceil() as usize };
        if t.load_best_model_at_end
            && t.save_strategy == SaveStrategy::Steps
            && t.eval_strategy == IntervalStrategy::Steps
        {
            let (save, eval) = (t.save_every(total_steps), t.eval_every(total_steps));
            if !save.is_multiple_of(eval) {
                invalid!(
                    "training.load_best_model_at_end requires save_steps ({save} steps) to be a round multiple of eval_steps ({eval} steps), so that each best evaluation has its checkpoint"
                );
            }
        }
        let optim = AdamW::new(AdamWConfig {
            weight_decay: t.weight_decay,
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            epsilon: t.adam_epsilon,
            max_grad_norm: t.max_grad_norm,
            loraplus: t.loraplus_lr_ratio.map(|ratio| LoraPlus { ratio, weight_decay: t.loraplus_weight_decay }),
        });
        let labels = LabelSpace::unnamed(model.num_labels());
        Ok(Self {
            model,
            lora,
            optim,
            run_config: serde_json::json!({ "training": &args }),
            args,
            total_steps,
            epochs,
            warmup_steps,
            schedule,
            batcher,
            device,
            state: TrainerState::default(),
            labels,
            data: None,
            callbacks: Vec::new(),
            interrupt: Interrupt::new(),
        })
    }

    /// One optimizer step on one batch.
    pub fn step(&mut self, items: Vec<TokenizedExample>) -> Result<StepOutput> {
        self.accumulated_step(vec![items])
    }

    /// One optimizer step over `micro_batches` (`gradient_accumulation_steps` of them, fewer at
    /// an epoch's end): each one's forward and backward pass in turn, its loss weighted by its
    /// share of the step's examples, so that the step's loss and gradient are those of the mean
    /// over all of them (transformers' normalisation, also when the last micro-batch is short).
    /// A non-finite loss, gradient norm or weight is an error and the update is not made.
    pub fn accumulated_step(&mut self, micro_batches: Vec<Vec<TokenizedExample>>) -> Result<StepOutput> {
        let t = &self.args;
        let lr = self.schedule.lr(t.learning_rate, self.optim.step as usize, self.total_steps, self.warmup_steps);
        let smoothing = t.label_smoothing_factor;
        // Dropout draws from a generator seeded per step, so a resumed run draws what the
        // uninterrupted one drew.
        B::seed(&self.device, step_seed(t.seed, self.optim.step));
        let examples: usize = micro_batches.iter().map(Vec::len).sum();
        let mut flat = None;
        let mut step_loss = None;
        let mut real_tokens = 0;
        for items in micro_batches {
            let share = items.len() as f64 / examples.max(1) as f64;
            let batch: TextBatch<B> = self.batcher.batch(items, &self.device);
            real_tokens += batch.real_tokens;
            let loss = smoothed_loss(self.model.forward(batch.input), batch.labels, smoothing);
            let loss = if share < 1.0 { loss * share } else { loss };
            let grads = loss.backward();
            flat = Some(AdamW::collect::<B, _>(&mut self.model, &self.lora, &grads, flat));
            step_loss = Some(match step_loss {
                Some(before) => before + loss.inner(),
                None => loss.inner(),
            });
        }
        let (Some(flat), Some(step_loss)) = (flat, step_loss) else { return Err(TrainError::NoBatch) };
        // The loss is read with the gradient norm, once the backward passes are queued: a GPU
        // backend then runs forward and backward without waiting on the host in between.
        let gradients = self.optim.finish::<B, _>(&mut self.model, &self.lora, flat, step_loss)?;
        let step = self.optim.step + 1;
        let stop = |what: &str, value: f64| {
            Err(TrainError::Diverged(format!(
                "{what} became {value} at step {step}; stopping (the last checkpoint is kept)"
            )))
        };
        if !gradients.read_with.is_finite() {
            return stop("the training loss", gradients.read_with);
        }
        if !gradients.weights_norm.is_finite() {
            return stop("the trained weights' norm", gradients.weights_norm);
        }
        if !gradients.grad_norm.is_finite() {
            return stop("the gradient norm", gradients.grad_norm);
        }
        let loss_value = gradients.read_with;
        let stats = self.optim.apply::<B, _>(&mut self.model, &self.lora, gradients, lr);
        Ok(StepOutput { loss: loss_value, learning_rate: lr, grad_norm: stats.grad_norm, real_tokens })
    }

    /// The model's metrics on `items`; with `label_smoothing_factor`, `eval_loss` is the
    /// smoothed loss, as Trainer's (its label smoother computes evaluation's loss too).
    pub fn evaluate(&self, items: &[TokenizedExample]) -> Result<EvalMetrics> {
        let model = self.model.valid();
        let batch_size = self.args.per_device_eval_batch_size;
        let epsilon = self.args.label_smoothing_factor;
        if epsilon > 0.0 && self.labels.problem_type == textdata::ProblemType::SingleLabelClassification {
            let all = crate::eval::logits(&model, items, batch_size, self.batcher, &self.device)?;
            let targets: Vec<textdata::Target> = items.iter().map(|i| i.label.clone()).collect();
            let mut metrics = crate::metrics::metrics(&all, &targets, &self.labels);
            metrics.eval_loss = crate::metrics::label_smoothed_loss(&all, &targets, epsilon);
            return Ok(metrics);
        }
        Ok(evaluate(&model, items, &self.labels, batch_size, self.batcher, &self.device)?)
    }

    /// Writes the adapter, the optimizer state, the trainer state and last the manifest into
    /// `dir`, through a temporary directory beside it and a rename: a checkpoint is whole or absent.
    pub fn save_checkpoint(&mut self, dir: &Path) -> Result<PathBuf> {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return Err(TrainError::Setting(format!("checkpoint directory {} has no parent or name", dir.display())));
        };
        std::fs::create_dir_all(parent).map_err(TrainError::io("create", parent))?;
        let name = name.to_string_lossy().into_owned();
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
            write_manifest(&tmp, &self.state, self.run_config.clone(), &data)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(TrainError::io("replace", dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(TrainError::io("move the checkpoint into", dir))?;
        Ok(dir.to_path_buf())
    }

    /// Continues from `checkpoint`: its adapter weights, optimizer state and trainer state.
    pub fn resume(&mut self, checkpoint: Checkpoint) -> Result<()> {
        let Checkpoint { dir, state, optimizer, adapter, .. } = checkpoint;
        let saved = &adapter.config;
        if (saved.r, &saved.target_modules, &saved.modules_to_save)
            != (self.lora.r, &self.lora.target_modules, &self.lora.modules_to_save)
        {
            return Err(TrainError::OtherAdapter(dir));
        }
        lora_adapter::peft::load_weights(&mut self.model, &self.lora, &adapter.path, adapter.tensors, &self.device)?;
        self.optim
            .restore::<B, M>(&mut self.model, &self.lora, state.global_step, optimizer, &self.device)
            .map_err(|source| TrainError::OtherOptimizer { path: dir.join(OPTIMIZER_FILE), source })?;
        self.state = state;
        Ok(())
    }

    /// The epochs from where the state stands to the run's end (its last epoch, `max_steps`,
    /// or early stopping), with Trainer's logging, evaluation and checkpoints; `out` is the run
    /// directory. The callbacks hear of every step, log line, evaluation, epoch and checkpoint,
    /// and of the end, however the run ends.
    pub fn train(&mut self, data: &RunData, out: &Path) -> Result<()> {
        let result = self.train_epochs(data, out);
        for callback in &mut self.callbacks {
            callback.on_train_end();
        }
        result
    }

    fn train_epochs(&mut self, data: &RunData, out: &Path) -> Result<()> {
        let t = self.args.clone();
        let gas = t.gradient_accumulation_steps.max(1);
        let lengths = data.train.lengths();
        for epoch in self.state.epoch..self.epochs {
            if self.finished() {
                break;
            }
            let batches = textdata::epoch_batches(
                &lengths,
                t.per_device_train_batch_size,
                t.seed,
                epoch as u64,
                t.group_by_length,
            );
            let steps: Vec<&[Vec<usize>]> = batches.chunks(gas).collect();
            let done = self.state.batch_in_epoch.div_ceil(gas);
            for callback in &mut self.callbacks {
                callback.on_epoch_begin(epoch, self.epochs, steps.len(), done);
            }
            for (i, chunk) in steps.iter().enumerate().skip(done) {
                let started = Instant::now();
                let samples: usize = chunk.iter().map(Vec::len).sum();
                let step = self.accumulated_step(chunk.iter().map(|indices| data.train.select(indices)).collect())?;
                let seconds = started.elapsed().as_secs_f64();
                self.record_step(&step, samples, seconds, ((i + 1) * gas).min(batches.len()));
                let epoch_end = i + 1 == steps.len() || self.state.global_step as usize >= self.total_steps;
                let control = self.control(epoch_end);
                let fraction = epoch as f64 + (i + 1) as f64 / steps.len() as f64;
                self.maybe_log_save_evaluate(control, &step, fraction, data, out)?;
                if self.finished() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A step's figures into the state, and to the callbacks.
    fn record_step(&mut self, step: &StepOutput, samples: usize, seconds: f64, batch_in_epoch: usize) {
        let s = &mut self.state;
        s.global_step = self.optim.step;
        s.batch_in_epoch = batch_in_epoch;
        s.train_seconds += seconds;
        s.epoch_seconds += seconds;
        s.train_samples += samples;
        s.train_tokens += step.real_tokens;
        s.window.add(step.loss);
        s.epoch_losses.add(step.loss);
        for callback in &mut self.callbacks {
            callback.on_step_end(&self.state, step, samples, seconds);
        }
    }

    /// DefaultFlowCallback's `on_step_end`, then `on_epoch_end`'s at an epoch's last step (and
    /// at `max_steps`, where Trainer ends the epoch too): what to do after this step.
    fn control(&self, epoch_end: bool) -> Control {
        let t = &self.args;
        let (gs, total) = (self.state.global_step as usize, self.total_steps);
        let every = |steps: usize| gs.is_multiple_of(steps.max(1));
        let end = gs >= total;
        let (log, eval, save) = (t.logging_strategy, t.eval_strategy, t.save_strategy);
        let at_epoch = |interval: IntervalStrategy| epoch_end && interval == IntervalStrategy::Epoch;
        Control {
            log: (log == IntervalStrategy::Steps && every(t.logging_steps.steps(total)))
                || (gs == 1 && t.logging_first_step)
                || at_epoch(log),
            evaluate: (eval == IntervalStrategy::Steps && every(t.eval_every(total))) || at_epoch(eval),
            save: (save == SaveStrategy::Steps && every(t.save_every(total)))
                || (end && matches!(save, SaveStrategy::Steps | SaveStrategy::Epoch))
                || (epoch_end && save == SaveStrategy::Epoch),
            epoch_end,
            interrupted: self.interrupt.is_requested(),
        }
    }

    /// The run has reached its last step, or early stopping ended it.
    pub fn finished(&self) -> bool {
        self.state.global_step as usize >= self.total_steps || self.state.stopped_early_at_step.is_some()
    }

    /// What happens after a step, in Trainer's order: the log line; the evaluation (with the
    /// best model's bookkeeping and the callbacks' say, early stopping's among them); at an
    /// epoch's end its record; the checkpoint and the rotation; on an interrupt, a checkpoint
    /// and a stop.
    fn maybe_log_save_evaluate(
        &mut self,
        mut control: Control,
        step: &StepOutput,
        epoch: f64,
        data: &RunData,
        out: &Path,
    ) -> Result<()> {
        let gs = self.state.global_step;
        if control.log {
            let value = serde_json::json!({
                "step": gs,
                "epoch": epoch,
                "loss": self.state.window.mean(),
                "learning_rate": step.learning_rate,
                "grad_norm": step.grad_norm,
            });
            self.log(value, out)?;
            self.state.window = LossSum::default();
        }
        let epoch_record = control.epoch_end && self.args.eval_strategy == IntervalStrategy::Epoch;
        let evaluated = match control.evaluate {
            true => Some(self.evaluate_and_track(&mut control, epoch, epoch_record, data, out)?),
            false => None,
        };
        if control.epoch_end {
            self.end_epoch(evaluated.filter(|_| epoch_record), out)?;
        }
        // Named by what made it: `step-N` for save_steps, `epoch-N` at an epoch's end otherwise.
        let name = match control.epoch_end && self.args.save_strategy != SaveStrategy::Steps {
            true => format!("epoch-{}", self.state.epoch),
            false => format!("step-{gs}"),
        };
        let mut saved = None;
        if control.save || control.interrupted {
            saved = Some(self.save_named(out, &name)?);
        }
        if control.interrupted {
            let dir = saved.unwrap_or_else(|| out.join("checkpoints").join(&name));
            return Err(TrainError::Interrupted(format!(
                "{}: wrote {}; continue with `lora train --resume --output-dir {}`",
                self.interrupt.why(),
                dir.display(),
                shell_quoted(out)
            )));
        }
        Ok(())
    }

    /// An evaluation on the eval split: refused when its loss is not finite (naming the last
    /// good checkpoint), told to the callbacks, taken into the best model's bookkeeping (with
    /// `save_strategy = "best"`, a checkpoint when it is a new best) and logged.
    fn evaluate_and_track(
        &mut self,
        control: &mut Control,
        epoch: f64,
        epoch_record: bool,
        data: &RunData,
        out: &Path,
    ) -> Result<Evaluation> {
        let gs = self.state.global_step;
        let started = Instant::now();
        let metrics = self.evaluate(data.eval.items())?;
        if !metrics.eval_loss.is_finite() {
            let kept = match self.state.checkpoints.last() {
                None => "no checkpoint was written".to_string(),
                Some(c) => format!("{} is the last good checkpoint", out.join("checkpoints").join(&c.name).display()),
            };
            let at = match epoch_record {
                true => format!("after epoch {} (step {gs})", self.state.epoch + 1),
                false => format!("at step {gs}"),
            };
            return Err(TrainError::Diverged(format!(
                "the evaluation loss {at} is {}: the model diverged; stopping ({kept})",
                metrics.eval_loss
            )));
        }
        let evaluation = Evaluation { step: gs, epoch, metrics, eval_seconds: started.elapsed().as_secs_f64() };
        let new_best = self.track_best(&evaluation, epoch_record)?;
        if self.args.save_strategy == SaveStrategy::Best {
            control.save = new_best;
        }
        if !epoch_record {
            self.log(serde_json::to_value(&evaluation)?, out)?;
        }
        self.state.evaluations.push(evaluation.clone());
        Ok(evaluation)
    }

    /// The epoch's record (with its evaluation, when it is the epoch's): logged, told to the
    /// callbacks, and the state moved to the next epoch.
    fn end_epoch(&mut self, evaluation: Option<Evaluation>, out: &Path) -> Result<()> {
        let done = self.state.epoch + 1;
        let record = EpochRecord {
            epoch: done,
            train_loss: self.state.epoch_losses.mean(),
            eval_seconds: evaluation.as_ref().map_or(0.0, |e| e.eval_seconds),
            eval: evaluation.map(|e| e.metrics),
            train_seconds: self.state.epoch_seconds,
        };
        let mut value = serde_json::to_value(&record)?;
        value["step"] = self.state.global_step.into();
        self.log(value, out)?;
        for callback in &mut self.callbacks {
            callback.on_epoch_end(&self.state, &record);
        }
        let s = &mut self.state;
        s.epochs.push(record);
        s.epoch = done;
        s.batch_in_epoch = 0;
        s.epoch_losses = LossSum::default();
        s.epoch_seconds = 0.0;
        Ok(())
    }

    /// Trainer's `_determine_best_metric`: whether `evaluation` is a new best (strictly better
    /// than the best so far). The callbacks see it first, with the best before it
    /// (EarlyStoppingCallback's `on_evaluate` compares against that).
    fn track_best(&mut self, evaluation: &Evaluation, epoch_record: bool) -> Result<bool> {
        let (metric, greater) = self.args.best_metric(&self.labels)?;
        let Some(value) = evaluation.metrics.get(&metric) else {
            return Err(TrainError::NoMetric { step: evaluation.step, metric });
        };
        for callback in &mut self.callbacks {
            callback.on_evaluate(&mut self.state, evaluation, value, epoch_record);
        }
        let s = &mut self.state;
        let new_best = s.best_metric.is_none_or(|best| if greater { value > best } else { value < best });
        if new_best {
            s.best_metric = Some(value);
            s.best_global_step = Some(evaluation.step);
        }
        Ok(new_best)
    }

    /// Writes the checkpoint `checkpoints/NAME`, notes it (and whether it holds the best
    /// evaluation) in the state it saves, then rotates the older ones out.
    fn save_named(&mut self, out: &Path, name: &str) -> Result<PathBuf> {
        let gs = self.state.global_step;
        let s = &mut self.state;
        s.checkpoints.retain(|c| c.name != name);
        s.checkpoints.push(SavedCheckpoint { name: name.to_string(), step: gs });
        if s.best_global_step == Some(gs) {
            s.best_model_checkpoint = Some(name.to_string());
        }
        let dir = self.save_checkpoint(&out.join("checkpoints").join(name))?;
        self.rotate(&out.join("checkpoints"))?;
        for callback in &mut self.callbacks {
            callback.on_save(&self.state, &dir);
        }
        Ok(dir)
    }

    /// `save_total_limit`: Trainer's `_rotate_checkpoints`. The run's checkpoints by step, the
    /// best one moved next to the newest, the oldest beyond the limit removed (through a rename
    /// to a hidden name, so that a removal cut short leaves no half checkpoint); with a limit of
    /// 1 and a best checkpoint that is not the newest, two are kept.
    fn rotate(&mut self, root: &Path) -> Result<()> {
        let Some(limit) = self.args.save_total_limit else { return Ok(()) };
        let s = &mut self.state;
        s.checkpoints.retain(|c| root.join(&c.name).is_dir());
        let mut sorted = s.checkpoints.clone();
        sorted.sort_by(|a, b| (a.step, &a.name).cmp(&(b.step, &b.name)));
        if sorted.len() <= limit {
            return Ok(());
        }
        let mut limit = limit;
        if let Some(best) = &s.best_model_checkpoint
            && let Some(index) = sorted.iter().position(|c| &c.name == best)
        {
            for i in index..sorted.len().saturating_sub(2) {
                sorted.swap(i, i + 1);
            }
            if limit == 1 && sorted.last().is_some_and(|c| &c.name != best) {
                limit = 2;
            }
        }
        for old in &sorted[..sorted.len().saturating_sub(limit)] {
            let dir = root.join(&old.name);
            let doomed = root.join(format!(".removing-{}", old.name));
            std::fs::rename(&dir, &doomed).map_err(TrainError::io("remove the old checkpoint", &dir))?;
            std::fs::remove_dir_all(&doomed).map_err(TrainError::io("remove", &doomed))?;
            s.checkpoints.retain(|c| c.name != old.name);
        }
        Ok(())
    }

    /// One line of the run's record: `metrics.jsonl` and the trainer state (what a resumed run
    /// reads back), then the callbacks (standard output with `--json`, TensorBoard).
    fn log(&mut self, value: serde_json::Value, out: &Path) -> Result<()> {
        append_jsonl(&out.join("metrics.jsonl"), &value)?;
        for callback in &mut self.callbacks {
            callback.on_log(&self.state, &value)?;
        }
        self.state.log_history.push(value);
        Ok(())
    }
}

/// What [`Trainer::maybe_log_save_evaluate`] does after a step (Trainer's `TrainerControl`).
#[derive(Debug, Clone, Copy)]
struct Control {
    log: bool,
    evaluate: bool,
    save: bool,
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

/// `path` as one shell word, for a command the user is told to run (a space or a quote in it
/// would otherwise split it).
pub fn shell_quoted(path: &Path) -> String {
    let text = path.display().to_string();
    match shlex::try_quote(&text) {
        Ok(quoted) => quoted.into_owned(),
        Err(_) => text, // a NUL byte: no shell word holds it
    }
}
