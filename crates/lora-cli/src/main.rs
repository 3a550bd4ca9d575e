//! `lora`: LoRA fine-tuning of BERT encoders with Hugging Face PEFT-compatible adapters.
//!
//! ```text
//! lora train   --config configs/imdb-minilm-lora.toml [--set training.learning_rate=1e-4 ...]
//! lora eval    --model M --adapter DIR --data D
//! lora predict --model M --adapter DIR --text "..." | --input FILE
//! lora merge   --model M --adapter DIR --output DIR
//! ```

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use lora_cli::cli::{Cli, Command};
use lora_cli::{commands, train};

fn main() -> ExitCode {
    lora_cli::alloc::keep_freed_memory();
    let cli = Cli::parse();
    if ctrlc::set_handler(|| {
        if train::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // A second Ctrl-C ends at once.
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit now)");
    })
    .is_err()
    {
        eprintln!("warning: cannot install the Ctrl-C handler");
    }
    let result = match cli.command {
        Command::Train(args) => commands::train(args),
        Command::Eval(args) => commands::eval(args),
        Command::Predict(args) => commands::predict(args),
        Command::Merge(args) => commands::merge(args),
        Command::ExportData(args) => commands::export_data(args),
        Command::Bench(args) => commands::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
