//! The program's standard streams, written through one place. Results go to standard output, and
//! a write that fails there (a closed pipe: `lora train --json | head -1`; a full device:
//! `lora eval ... > /dev/full`) is an error naming the stream, never a panic (`println!` panics).
//! Messages go to standard error, and a failed write there loses the message, never the command:
//! nothing a program does can report it anywhere else.

use std::fmt::Display;
use std::io::Write;

/// A result could not be written to standard output.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {source}")]
pub struct StdoutError {
    #[source]
    pub source: std::io::Error,
}

/// `text` and a newline on standard output, flushed.
pub fn out(text: impl Display) -> Result<(), StdoutError> {
    out_raw(&format!("{text}\n"))
}

/// `text` as it is on standard output, flushed.
pub fn out_raw(text: &str) -> Result<(), StdoutError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(|source| StdoutError { source })
}

/// `text` and a newline on standard error; a closed or full stream drops it.
pub fn err(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
