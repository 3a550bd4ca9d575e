//! The `lora` program's library: the run config, the training loop with Hugging Face Trainer's
//! optimizer semantics, evaluation, and the subcommands. `src/main.rs` is a thin shell over it,
//! so that tests drive the same code.

pub mod alloc;
pub mod bench;
pub mod callbacks;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod device;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod report;
pub mod run_dir;
pub mod schedule;
pub mod tensorboard;
pub mod train;
pub mod trainer;
