//! A run's output directory: owned by one `lora train` at a time, and never emptied by mistake.
//!
//! A run takes an exclusive lock (`flock`) on `DIR/.lora.lock` before it reads anything, holds
//! it to the end and removes the file then; the kernel drops the lock when a process dies, so a
//! lock file left by a crash is stale and the next run takes it. A second run into the same
//! directory is refused with the holder's pid. Nothing in the directory is removed or replaced
//! until the run has checked every input ([`RunDir::prepare`] comes after that).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const LOCK_FILE: &str = ".lora.lock";

/// What a run writes at the top of its directory, besides `checkpoints/` and `adapter/`.
pub const RUN_FILES: [&str; 5] = ["config.toml", "metrics.jsonl", "summary.json", "curves.svg", "eval_results.json"];

/// An output directory this process owns until it is dropped.
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    lock: File,
    /// The directory did not exist before this run: removed again if the run writes nothing.
    created: bool,
    written: bool,
}

/// What a directory holds from an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Nothing of a run's (or nothing worth keeping: a run killed before its first checkpoint).
    Nothing,
    /// Checkpoints but no final adapter: an interrupted run.
    Unfinished,
    /// A final adapter or summary.
    Finished,
}

impl RunDir {
    /// Takes `path` (created if missing) for this process, or says who holds it.
    pub fn lock(path: &Path) -> Result<Self> {
        let created = !path.exists();
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the output directory {}", path.display()))?;
        let in_use = |who: String| {
            format!(
                "{} is in use by another `lora train` ({who}); wait for it to finish, or choose another --output-dir",
                path.display()
            )
        };
        let lock = lock_file(&path.join(LOCK_FILE), in_use)?;
        Ok(Self { path: path.to_path_buf(), lock, created, written: false })
    }

    /// What the directory holds from an earlier run.
    pub fn holds(&self) -> Holds {
        if self.path.join("adapter").exists() || self.path.join("summary.json").exists() {
            Holds::Finished
        } else if has_checkpoint(&self.path) {
            Holds::Unfinished
        } else {
            Holds::Nothing
        }
    }

    /// Makes the directory ready for the run's first write: with `replace`, the earlier run's
    /// files go (only those a run writes; anything else of the user's stays), and so do the
    /// TensorBoard event files in `logging_dir` when that is inside this directory (a shared
    /// one outside it keeps every run's, as TensorBoard expects); temporary files of killed runs
    /// go in any case. Call once every input has been checked.
    pub fn prepare(&mut self, replace: bool, logging_dir: Option<&Path>) -> Result<()> {
        self.written = true;
        if replace {
            for f in RUN_FILES {
                remove(&self.path.join(f))?;
            }
            // `runs/`: TensorBoard's event files at their default place.
            for d in ["checkpoints", "adapter", "runs"] {
                remove(&self.path.join(d))?;
            }
            if let Some(dir) = logging_dir
                && let (Ok(dir), Ok(own)) = (dir.canonicalize(), self.path.canonicalize())
                && dir.starts_with(&own)
                && let Ok(entries) = std::fs::read_dir(&dir)
            {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with("events.out.tfevents.") {
                        remove(&entry.path())?;
                    }
                }
            }
        }
        remove_temporaries(&self.path)?;
        remove_temporaries(&self.path.join("checkpoints"))?;
        remove_temporaries(&self.path.join("adapter"))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.created && !self.written {
            let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&self.path);
            return;
        }
        // Removed while still locked: a process waiting on the old file sees it is gone.
        let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        let _ = self.lock.unlock();
    }
}

fn has_checkpoint(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir.join("checkpoints")) else { return false };
    entries.flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir())
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Removes what an interrupted write leaves in `dir`: `.NAME.tmp-PID` files (atomic writes)
/// and `.tmp-NAME` directories (checkpoints being assembled).
fn remove_temporaries(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || (name.starts_with('.') && name.contains(".tmp-")) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// An exclusive lock (`flock`) on `lock_path`, created if missing, holding this process's pid;
/// held, the error is `in_use(holder)`. The kernel drops it when the process dies.
pub fn lock_file(lock_path: &Path, in_use: impl Fn(String) -> String) -> Result<File> {
    loop {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        if let Err(e) = file.try_lock() {
            if !matches!(e, std::fs::TryLockError::WouldBlock) {
                bail!("cannot lock {}: {e}", lock_path.display());
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
            bail!("{}", in_use(who));
        }
        // The holder before us may have removed the file after we opened it: then the lock
        // is on a file nobody else will see, and we start again on the one at the path.
        let same = std::fs::metadata(lock_path)
            .is_ok_and(|m| file.metadata().is_ok_and(|ours| ours.ino() == m.ino() && ours.dev() == m.dev()));
        if !same {
            continue;
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
        return Ok(file);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_released_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        let first = RunDir::lock(&dir).unwrap();
        let err = format!("{:#}", RunDir::lock(&dir).unwrap_err());
        assert!(err.contains("in use") && err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        // Never written: the directory it created is gone again.
        assert!(!dir.exists());
        let mut again = RunDir::lock(&dir).unwrap();
        again.prepare(false, None).unwrap();
        drop(again);
        assert!(dir.is_dir() && !dir.join(LOCK_FILE).exists());
    }

    #[test]
    fn prepare_clears_temporaries_and_replaces_only_run_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::create_dir_all(dir.join("checkpoints/.tmp-epoch-2")).unwrap();
        std::fs::create_dir_all(dir.join("checkpoints/epoch-1")).unwrap();
        std::fs::write(dir.join(".summary.json.tmp-123"), "x").unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        std::fs::write(dir.join("metrics.jsonl"), "{}").unwrap();
        let mut run = RunDir::lock(dir).unwrap();
        assert_eq!(run.holds(), Holds::Unfinished);
        run.prepare(false, None).unwrap();
        assert!(!dir.join("checkpoints/.tmp-epoch-2").exists() && !dir.join(".summary.json.tmp-123").exists());
        assert!(dir.join("checkpoints/epoch-1").exists() && dir.join("metrics.jsonl").exists());
        run.prepare(true, None).unwrap();
        assert!(!dir.join("checkpoints").exists() && !dir.join("metrics.jsonl").exists());
        assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
        assert_eq!(run.holds(), Holds::Nothing);
    }
}
