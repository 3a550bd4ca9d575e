//! A training checkpoint on disk, and how `--resume` decides which one to trust.
//!
//! A checkpoint directory (`checkpoints/epoch-N`, `checkpoints/step-N`) holds the adapter in
//! PEFT's format, `labels.json`, `optimizer.safetensors`, `trainer_state.json`, and last
//! `checkpoint.json`, its manifest: every other file's size and SHA-256, the run's config, and a
//! fingerprint of the tokenized training and evaluation data. The directory is assembled
//! under a temporary name and renamed into place, so it is whole or absent; the manifest is
//! what tells a whole one from one that was damaged afterwards (a file deleted, truncated,
//! replaced by another run's).
//!
//! [`find`] verifies every checkpoint of a run and picks the newest that verifies, with the
//! reason each other one was skipped; `lora train --resume` says both before it changes anything.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use textdata::{Target, TokenizedExample};

use crate::report::write_atomic;
use crate::trainer::TrainerState;

pub const MANIFEST_FILE: &str = "checkpoint.json";
pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// The manifest's layout version.
const FORMAT: u32 = 1;

/// One file of a checkpoint as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub bytes: u64,
    pub sha256: String,
}

/// The examples of one split as the run consumed them: their number and a SHA-256 over their
/// token ids, token types and labels, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFingerprint {
    pub examples: usize,
    pub sha256: String,
}

impl SplitFingerprint {
    pub fn of(items: &[TokenizedExample]) -> Self {
        let mut hash = Sha256::new();
        for item in items {
            // Lengths first: two splits of one id sequence hash apart.
            for ids in [&item.encoded.input_ids, &item.encoded.token_type_ids] {
                hash.update((ids.len() as u64).to_le_bytes());
                for id in ids {
                    hash.update(id.to_le_bytes());
                }
            }
            match &item.label {
                Target::Class(c) => {
                    hash.update([0]);
                    hash.update((*c as u64).to_le_bytes());
                }
                Target::MultiHot(v) => {
                    hash.update([1]);
                    hash.update((v.len() as u64).to_le_bytes());
                    v.iter().for_each(|x| hash.update(x.to_le_bytes()));
                }
                Target::Value(x) => {
                    hash.update([2]);
                    hash.update(x.to_le_bytes());
                }
            }
        }
        Self { examples: items.len(), sha256: hex(&hash.finalize()) }
    }
}

/// What the run trained and evaluated on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub train: SplitFingerprint,
    pub eval: SplitFingerprint,
}

impl DataFingerprint {
    /// How `now` differs from the run's data (`self`), in words; `None` when it does not.
    pub fn differences(&self, now: &Self) -> Option<String> {
        let split = |name: &str, then: &SplitFingerprint, now: &SplitFingerprint| {
            if then == now {
                None
            } else if then.examples != now.examples {
                Some(format!("the {name} subset has {} examples, the run's had {}", now.examples, then.examples))
            } else {
                Some(format!(
                    "the {name} subset has the run's {} examples, but not the same texts, labels or tokens",
                    now.examples
                ))
            }
        };
        let found: Vec<String> =
            [split("training", &self.train, &now.train), split("evaluation", &self.eval, &now.eval)]
                .into_iter()
                .flatten()
                .collect();
        (!found.is_empty()).then(|| found.join("; "))
    }
}

/// `checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub global_step: u64,
    pub epoch: usize,
    /// Every other file of the directory.
    pub files: BTreeMap<String, FileEntry>,
    /// The run's config as it was when the checkpoint was written.
    pub config: serde_json::Value,
    pub data: DataFingerprint,
}

/// Writes `dir/checkpoint.json` over the files already in `dir` (call it last).
pub fn write_manifest(
    dir: &Path,
    state: &TrainerState,
    config: serde_json::Value,
    data: &DataFingerprint,
) -> Result<()> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(TrainError::io("list", dir))? {
        let path = entry.map_err(TrainError::io("list", dir))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name != MANIFEST_FILE && path.is_file() {
            files.insert(name, file_entry(&path)?);
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        global_step: state.global_step,
        epoch: state.epoch,
        files,
        config,
        data: data.clone(),
    };
    write_atomic(&dir.join(MANIFEST_FILE), &serde_json::to_string_pretty(&manifest)?)
}

fn file_entry(path: &Path) -> Result<FileEntry> {
    let mut file = std::fs::File::open(path).map_err(TrainError::io("read", path))?;
    let (mut hash, mut buf, mut bytes) = (Sha256::new(), vec![0u8; 1 << 16], 0u64);
    loop {
        let n = file.read(&mut buf).map_err(TrainError::io("read", path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileEntry { bytes, sha256: hex(&hash.finalize()) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint directory read whole and verified, before the run touches anything.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainerState,
    pub manifest: Manifest,
    pub optimizer: BTreeMap<String, Vec<f32>>,
    pub adapter: lora_adapter::peft::Adapter,
}

/// What `--resume` found under `DIR/checkpoints`.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest checkpoint that verifies.
    pub chosen: Option<Checkpoint>,
    /// Every other checkpoint that did not verify, with why.
    pub skipped: Vec<(PathBuf, Unusable)>,
}

impl Found {
    /// The skipped checkpoints, one per line.
    pub fn skipped_lines(&self) -> Vec<String> {
        self.skipped.iter().map(|(dir, why)| format!("{}: {why}", dir.display())).collect()
    }
}

/// Verifies every checkpoint under `output_dir/checkpoints` and reads the newest one that
/// verifies (most optimizer steps).
pub fn find(output_dir: &Path) -> Result<Found> {
    let root = output_dir.join("checkpoints");
    let mut found = Found::default();
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(TrainError::io("list", &root)(e)),
    };
    let mut verified = Vec::new();
    for entry in entries {
        let path = entry.map_err(TrainError::io("list", &root))?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) || !path.is_dir() {
            continue;
        }
        match verify(&path) {
            Ok((manifest, state)) => verified.push((path, manifest, state)),
            Err(why) => found.skipped.push((path, why)),
        }
    }
    verified.sort_by_key(|(path, manifest, _)| (std::cmp::Reverse(manifest.global_step), path.clone()));
    for (dir, manifest, state) in verified {
        if found.chosen.is_some() {
            break;
        }
        match read(&dir) {
            Ok((optimizer, adapter)) => {
                found.chosen = Some(Checkpoint { dir, state, manifest, optimizer, adapter });
            }
            Err(why) => found.skipped.push((dir, why)),
        }
    }
    found.skipped.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The manifest and trainer state of `dir` when every file it lists is there as it was
/// written; otherwise what is wrong.
fn verify(dir: &Path) -> std::result::Result<(Manifest, TrainerState), Unusable> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::NoManifest),
        Err(e) => return Err(Unusable::ReadManifest(e)),
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(Unusable::BadManifest)?;
    if manifest.format != FORMAT {
        return Err(Unusable::Format(manifest.format));
    }
    for required in [STATE_FILE, OPTIMIZER_FILE] {
        if !manifest.files.contains_key(required) {
            return Err(Unusable::Unlisted(required));
        }
    }
    for (name, expected) in &manifest.files {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Unusable::Missing(name.clone()));
        }
        let actual = file_entry(&path).map_err(|e| Unusable::Unreadable(Box::new(e)))?;
        if actual.bytes != expected.bytes {
            return Err(Unusable::Size { name: name.clone(), found: actual.bytes, written: expected.bytes });
        }
        if actual.sha256 != expected.sha256 {
            return Err(Unusable::Changed(name.clone()));
        }
    }
    let state_text = std::fs::read_to_string(dir.join(STATE_FILE)).map_err(Unusable::ReadState)?;
    let state: TrainerState = serde_json::from_str(&state_text).map_err(Unusable::BadState)?;
    if (state.global_step, state.epoch) != (manifest.global_step, manifest.epoch) {
        return Err(Unusable::Disagree {
            state: (state.global_step, state.epoch),
            manifest: (manifest.global_step, manifest.epoch),
        });
    }
    Ok((manifest, state))
}

/// Why a checkpoint directory is not resumed from.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("no {MANIFEST_FILE} (written by an earlier lora, or damaged)")]
    NoManifest,
    #[error("cannot read {MANIFEST_FILE}: {0}")]
    ReadManifest(#[source] std::io::Error),
    #[error("{MANIFEST_FILE} is not a checkpoint manifest: {0}")]
    BadManifest(#[source] serde_json::Error),
    #[error("{MANIFEST_FILE} has format {0}, this lora reads format {FORMAT}")]
    Format(u32),
    #[error("{MANIFEST_FILE} lists no {0}")]
    Unlisted(&'static str),
    #[error("{0} is missing")]
    Missing(String),
    #[error("{name} has {found} bytes, {written} were written")]
    Size { name: String, found: u64, written: u64 },
    #[error("{0} is not the file that was written (its SHA-256 differs)")]
    Changed(String),
    #[error("{STATE_FILE}: {0}")]
    ReadState(#[source] std::io::Error),
    #[error("{STATE_FILE} is not a trainer state: {0}")]
    BadState(#[source] serde_json::Error),
    /// `(global_step, epoch)` of the state and of the manifest.
    #[error("{STATE_FILE} is at step {} (epoch {}), {MANIFEST_FILE} says step {} (epoch {})", state.0, state.1, manifest.0, manifest.1)]
    Disagree { state: (u64, usize), manifest: (u64, usize) },
    /// A listed file, the optimizer state or the adapter cannot be read.
    #[error(transparent)]
    Unreadable(Box<dyn std::error::Error + Send + Sync>),
}

type Contents = (BTreeMap<String, Vec<f32>>, lora_adapter::peft::Adapter);

fn read(dir: &Path) -> std::result::Result<Contents, Unusable> {
    let optimizer = tensor_file::read_safetensors(&dir.join(OPTIMIZER_FILE), |_| false)
        .map_err(|e| Unusable::Unreadable(Box::new(e)))?
        .into_iter()
        .map(|(k, t)| (k, t.data))
        .collect();
    let adapter = lora_adapter::peft::Adapter::read(dir).map_err(|e| Unusable::Unreadable(Box::new(e)))?;
    Ok((optimizer, adapter))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use encoders::Encoded;

    fn item(ids: &[u32], label: usize) -> TokenizedExample {
        TokenizedExample {
            encoded: Encoded { input_ids: ids.to_vec(), token_type_ids: vec![0; ids.len()] },
            label: Target::Class(label),
        }
    }

    #[test]
    fn fingerprints_tell_labels_tokens_and_order_apart() {
        let base = [item(&[2, 7, 3], 0), item(&[2, 8, 3], 1)];
        let fp = SplitFingerprint::of(&base);
        assert_eq!(fp, SplitFingerprint::of(&base.clone()));
        assert_ne!(fp, SplitFingerprint::of(&[item(&[2, 7, 3], 1), item(&[2, 8, 3], 1)]));
        assert_ne!(fp, SplitFingerprint::of(&[item(&[2, 8, 3], 1), item(&[2, 7, 3], 0)]));
        assert_ne!(fp, SplitFingerprint::of(&[item(&[2, 7], 0), item(&[3, 2, 8, 3], 1)]));
        let data = DataFingerprint { train: fp.clone(), eval: fp.clone() };
        assert_eq!(data.differences(&data.clone()), None);
        let fewer = DataFingerprint { train: SplitFingerprint::of(&base[..1]), eval: fp };
        let said = data.differences(&fewer).unwrap();
        assert!(said.contains("training subset has 1 examples, the run's had 2"), "{said}");
    }

    #[test]
    fn a_checkpoint_verifies_until_a_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("epoch-1");
        std::fs::create_dir_all(&dir).unwrap();
        let state = TrainerState { global_step: 4, epoch: 1, ..TrainerState::default() };
        std::fs::write(dir.join(STATE_FILE), serde_json::to_string(&state).unwrap()).unwrap();
        std::fs::write(dir.join(OPTIMIZER_FILE), b"0123456789").unwrap();
        let fp = SplitFingerprint::of(&[]);
        let data = DataFingerprint { train: fp.clone(), eval: fp };
        write_manifest(&dir, &state, serde_json::json!({}), &data).unwrap();
        assert_eq!(verify(&dir).unwrap().1, state);
        std::fs::write(dir.join(OPTIMIZER_FILE), b"012345678").unwrap();
        assert!(verify(&dir).unwrap_err().to_string().contains("has 9 bytes, 10 were written"));
        std::fs::write(dir.join(OPTIMIZER_FILE), b"0123456780").unwrap();
        assert!(verify(&dir).unwrap_err().to_string().contains("SHA-256 differs"));
        std::fs::remove_file(dir.join(OPTIMIZER_FILE)).unwrap();
        assert!(verify(&dir).unwrap_err().to_string().contains("optimizer.safetensors is missing"));
        std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
        assert!(verify(&dir).unwrap_err().to_string().contains("no checkpoint.json"));
    }
}
