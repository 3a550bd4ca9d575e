//! What a run reports and what may end it, as transformers' `TrainerCallback`s: the trainer
//! calls each [`Callback`] at the same points Trainer does, and the program's progress bars,
//! JSON lines, TensorBoard and early stopping are callbacks like any a library user adds. The
//! run's own record (`metrics.jsonl`, the state in each checkpoint) is the trainer's, not a
//! callback's: it is what resuming reads.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::Result;
use indicatif::ProgressBar;

use crate::report::{EpochRecord, Evaluation};
use crate::tensorboard::TensorBoard;
use crate::trainer::{Output, StepOutput, TrainerState, progress_bar, say};

/// Hooks into a run, in Trainer's order; each does nothing unless a callback says otherwise.
/// An error from one ends the run (after the checkpoints already written).
pub trait Callback {
    /// An epoch begins: `steps` optimizer steps, the first `done` of them already taken (a
    /// resumed run).
    fn on_epoch_begin(&mut self, _epoch: usize, _epochs: usize, _steps: usize, _done: usize) {}

    /// An optimizer step ended, taking `seconds` for `samples` examples.
    fn on_step_end(&mut self, _state: &TrainerState, _step: &StepOutput, _samples: usize, _seconds: f64) {}

    /// A line of the run's log: a step's loss, an evaluation, an epoch's record (as written to
    /// `metrics.jsonl`).
    fn on_log(&mut self, _state: &TrainerState, _line: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// An evaluation, before the best model's bookkeeping takes it in (`state.best_metric` is
    /// the best before it); `value` is the metric for the best model. Setting
    /// `state.stopped_early_at_step` ends the run after this step. `epoch_record`: the
    /// evaluation is the epoch's, reported with its record.
    fn on_evaluate(&mut self, _state: &mut TrainerState, _evaluation: &Evaluation, _value: f64, _epoch_record: bool) {}

    /// An epoch ended with `record`.
    fn on_epoch_end(&mut self, _state: &TrainerState, _record: &EpochRecord) {}

    /// A checkpoint was written to `dir`.
    fn on_save(&mut self, _state: &TrainerState, _dir: &Path) {}

    /// The run is over, however it ended.
    fn on_train_end(&mut self) {}
}

/// Asks a running trainer to stop after its current step and write a checkpoint: the
/// program's Ctrl-C and SIGTERM handler holds a clone, and so does whatever else may stop a run
/// (standard output closed under `--json`). Replaces a process-global flag, so that two runs in
/// one process stop apart.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<InterruptState>);

#[derive(Debug, Default)]
struct InterruptState {
    requested: AtomicBool,
    why: OnceLock<String>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop; `why` is what the stop then says (the first request's; none: a
    /// signal, "interrupted"). Returns whether it had been asked already (a second Ctrl-C).
    pub fn request(&self, why: Option<String>) -> bool {
        let asked = self.0.requested.swap(true, Ordering::SeqCst);
        if !asked && let Some(why) = why {
            let _ = self.0.why.set(why);
        }
        asked
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// What stopped the run.
    pub fn why(&self) -> &str {
        self.0.why.get().map_or("interrupted", String::as_str)
    }
}

/// Progress bars and a line per evaluation and epoch on standard error (the program's output
/// without `--quiet` or `--json`).
pub struct ProgressBars {
    output: Output,
    bar: ProgressBar,
}

impl ProgressBars {
    pub fn new(output: Output) -> Self {
        Self { output, bar: ProgressBar::hidden() }
    }
}

impl Callback for ProgressBars {
    fn on_epoch_begin(&mut self, epoch: usize, epochs: usize, steps: usize, done: usize) {
        self.bar = progress_bar(self.output, steps as u64, &format!("epoch {}/{epochs}", epoch + 1));
        self.bar.set_position(done as u64);
    }

    fn on_step_end(&mut self, _state: &TrainerState, step: &StepOutput, samples: usize, seconds: f64) {
        self.bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.1} samples/s",
            step.loss,
            step.learning_rate,
            samples as f64 / seconds.max(1e-9)
        ));
        self.bar.inc(1);
    }

    fn on_evaluate(&mut self, state: &mut TrainerState, evaluation: &Evaluation, _value: f64, epoch_record: bool) {
        if !epoch_record {
            say(self.output, &format!("step {}: {}", state.global_step, evaluation.metrics.headline()));
        }
    }

    fn on_epoch_end(&mut self, _state: &TrainerState, record: &EpochRecord) {
        self.bar.finish_and_clear();
        let headline = record.eval.as_ref().map_or_else(|| "not evaluated".to_string(), |m| m.headline());
        say(
            self.output,
            &format!(
                "epoch {}: train loss {:.4}, {headline} ({:.0} s)",
                record.epoch,
                record.train_loss,
                record.train_seconds + record.eval_seconds
            ),
        );
    }

    fn on_train_end(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// `--json`: each log line as one JSON object on standard output. Standard output closed or
/// full stops the run as Ctrl-C does (a checkpoint, then `--resume` continues it).
pub struct JsonLines {
    pub interrupt: Interrupt,
}

impl Callback for JsonLines {
    fn on_log(&mut self, _state: &TrainerState, line: &serde_json::Value) -> Result<()> {
        if let Err(e) = crate::console::out(line) {
            self.interrupt.request(Some(e.to_string()));
        }
        Ok(())
    }
}

/// `report_to = "tensorboard"`: each log line's numbers as scalars under Trainer's tags.
pub struct TensorBoardLogs(pub TensorBoard);

impl Callback for TensorBoardLogs {
    fn on_log(&mut self, state: &TrainerState, line: &serde_json::Value) -> Result<()> {
        self.0.log(line, state.global_step)
    }
}

/// transformers' `EarlyStoppingCallback`: after `patience` evaluations in a row that do not
/// beat the best by more than `threshold`, the run stops (its counter is in the trainer's state,
/// so that a resumed run counts on).
pub struct EarlyStopping {
    pub patience: usize,
    pub threshold: f64,
    pub greater_is_better: bool,
    pub output: Output,
    stopped_at: Option<u64>,
}

impl EarlyStopping {
    pub fn new(patience: usize, threshold: f64, greater_is_better: bool, output: Output) -> Self {
        Self { patience, threshold, greater_is_better, output, stopped_at: None }
    }
}

impl Callback for EarlyStopping {
    fn on_evaluate(&mut self, state: &mut TrainerState, evaluation: &Evaluation, value: f64, _epoch_record: bool) {
        let better = |a: f64, b: f64| if self.greater_is_better { a > b } else { a < b };
        let improved =
            state.best_metric.is_none_or(|best| better(value, best) && (value - best).abs() > self.threshold);
        state.patience_counter = if improved { 0 } else { state.patience_counter + 1 };
        if state.patience_counter >= self.patience {
            state.stopped_early_at_step = Some(evaluation.step);
            self.stopped_at = Some(evaluation.step);
        }
    }

    fn on_train_end(&mut self) {
        if let Some(at) = self.stopped_at.take() {
            let patience = self.patience;
            say(self.output, &format!("early stopping at step {at}: no improvement in {patience} evaluation(s)"));
        }
    }
}
