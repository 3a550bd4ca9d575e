//! Hugging Face Trainer's loop for LoRA on encoder classifiers, as a library: a run is a
//! [`Trainer`] over a model with adapters ([`lora_adapter::inject`]), its [`TrainingArguments`]
//! (transformers' names and defaults) and tokenized data ([`RunData`]); [`Trainer::train`] runs
//! the epochs with Trainer's logging, evaluation, checkpoints (whole or absent; a resumed run
//! is the uninterrupted one to the bit) and [`Callback`]s (progress bars, JSON lines,
//! TensorBoard, early stopping, or a caller's own); an [`Interrupt`] stops it after a step with
//! a checkpoint.
//!
//! The optimizer is Trainer's AdamW with PyTorch's arithmetic ([`optim`]), the schedules are
//! transformers' `get_scheduler` ([`schedule`]), the loss and metrics are Trainer's and
//! `evaluate`'s ([`loss`], [`metrics`]). `lora train` is this crate driven by a TOML config.
#![warn(unreachable_pub)]

pub mod args;
pub mod callbacks;
pub mod checkpoint;
pub mod console;
mod error;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod report;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;

pub use args::{Interval, IntervalStrategy, ReportTo, SaveStrategy, TrainingArguments};
pub use callbacks::{Callback, EarlyStopping, Interrupt, JsonLines, ProgressBars, TensorBoardLogs};
pub use error::{Result, TrainError};
pub use trainer::{Output, RunData, StepOutput, Trainer, TrainerState};
