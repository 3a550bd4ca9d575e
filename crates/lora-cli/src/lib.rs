//! The `lora` program's library: the run config, the training loop with Hugging Face Trainer's
//! optimizer semantics, evaluation, and the subcommands. `src/main.rs` is a thin shell over it,
//! so that tests drive the same code.
#![warn(unreachable_pub)]

pub mod alloc;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod device;
pub mod run_dir;
pub mod train;

// The trainer is the lora-train crate; its modules keep their paths here (`lora_cli::trainer`).
pub use lora_train::{
    TrainError, callbacks, checkpoint, console, eval, loss, metrics, optim, report, schedule, tensorboard, trainer,
};
