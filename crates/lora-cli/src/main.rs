//! `lora`: LoRA fine-tuning of encoder classifiers with Hugging Face PEFT-compatible adapters.
//!
//! ```text
//! lora train   --config configs/imdb-minilm-lora.toml [--set training.learning_rate=1e-4 ...]
//! lora eval    --model M --adapter DIR --data D
//! lora predict --model M --adapter DIR --text "..." | --input FILE
//! lora merge   --model M --adapter DIR --output DIR
//! lora serve   --model M --adapter NAME=DIR [--adapter NAME2=DIR2 ...] [--port 8080]
//! ```

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use lora_cli::TrainError;
use lora_cli::callbacks::Interrupt;
use lora_cli::cli::{Cli, Command};
use lora_cli::{commands, console};

/// The shell's status for a process ended by SIGINT.
const INTERRUPTED_STATUS: u8 = 130;

fn main() -> ExitCode {
    lora_cli::alloc::keep_freed_memory();
    let cli = Cli::parse();
    // Ctrl-C, SIGTERM (`timeout`, systemd, job schedulers) and SIGHUP. Training finishes its step
    // and writes a checkpoint; every other command stops at once (its files are written
    // atomically, so none is left half-written).
    let training = matches!(cli.command, Command::Train(_));
    let interrupt = Interrupt::new();
    let requests = interrupt.clone();
    let handler = move || {
        if !training || requests.request(None) {
            // `exit` runs no destructors: an unfinished --output's temporary goes here.
            tensor_file::remove_temporaries();
            console::err("\ninterrupted");
            std::process::exit(INTERRUPTED_STATUS.into());
        }
        console::err("\ninterrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit now)");
    };
    // The server handles its own signals: it stops accepting and answers what it holds.
    let serving = matches!(cli.command, Command::Serve(_));
    if !serving && ctrlc::set_handler(handler).is_err() {
        console::err("warning: cannot install the Ctrl-C handler");
    }
    let result = match cli.command {
        Command::Train(args) => commands::train(args, interrupt),
        Command::Eval(args) => commands::eval(args),
        Command::Predict(args) => commands::predict(args),
        Command::Merge(args) => commands::merge(args),
        Command::ExportData(args) => commands::export_data(args),
        Command::Bench(args) => commands::bench(args),
        Command::Serve(args) => commands::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<TrainError>().is_some_and(TrainError::is_interrupt) => {
            console::err(&e);
            ExitCode::from(INTERRUPTED_STATUS)
        }
        Err(e) => {
            console::err(format!("error: {}", one_line(&e)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined with `: `, each cause said once: library errors put their
/// source's text in their own message (`cannot read F: No such file`), and repeating it after
/// would print it twice.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    shortened(line, 2000)
}

/// `line` cut in its middle to at most about `most` characters, saying how much was left out
/// (an error quoting a whole input was once 24,009 characters on one line).
fn shortened(line: String, most: usize) -> String {
    let count = line.chars().count();
    if count <= most {
        return line;
    }
    let (head, tail) = (most * 3 / 4, most / 4);
    let start: String = line.chars().take(head).collect();
    let end: String = line.chars().skip(count - tail).collect();
    format!("{start} [... {} characters left out ...] {end}", count - head - tail)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_error_is_cut_in_its_middle() {
        let long = format!("start {} end", "x".repeat(30_000));
        let short = super::shortened(long, 2000);
        assert!(short.starts_with("start x") && short.ends_with("x end"), "{short}");
        assert!(short.contains("[... 28010 characters left out ...]"), "{short}");
        assert!(short.chars().count() < 2100);
        assert_eq!(super::shortened("short".into(), 2000), "short");
    }
}
