//! `report_to = "tensorboard"`: the run's log lines as TensorBoard scalars, as transformers'
//! `TensorBoardCallback` writes them (`rewrite_logs`: `eval_loss` as `eval/loss`, every other
//! key `k` as `train/k`; every number of a line, at the run's global step).
//!
//! The event file (`events.out.tfevents.SECONDS.HOST.PID.0`, TensorFlow's record framing with
//! masked CRC-32C) is written by the `tfrecord` crate; it starts with the `brain.Event:2` version
//! event, as PyTorch's `SummaryWriter` does, and is flushed after every line, so TensorBoard
//! follows a run while it trains and a killed run loses nothing that was logged.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, TrainError};
use tfrecord::protobuf::{Event, event::What};
use tfrecord::{EventWriter, EventWriterConfig};

/// One event file, open for the run.
pub struct TensorBoard {
    writer: EventWriter<BufWriter<File>>,
    pub path: PathBuf,
}

impl std::fmt::Debug for TensorBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBoard").field("path", &self.path).finish()
    }
}

impl TensorBoard {
    /// A new event file in `dir` (created if needed). A resumed run writes a second file
    /// beside the first; TensorBoard reads a directory's files as one run.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(TrainError::io("create the TensorBoard directory", dir))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = hostname();
        let path = dir.join(format!("events.out.tfevents.{}.{host}.{}.0", now.as_secs(), std::process::id()));
        let file = File::create_new(&path).map_err(TrainError::io("create", &path))?;
        let mut writer = EventWriter::from_writer(BufWriter::new(file), EventWriterConfig { auto_flush: true })
            .map_err(|source| TrainError::TensorBoard { path: path.clone(), source })?;
        let version = Event {
            wall_time: now.as_secs_f64(),
            step: 0,
            source_metadata: None,
            what: Some(What::FileVersion("brain.Event:2".into())),
        };
        writer.write_event(version).map_err(|source| TrainError::TensorBoard { path: path.clone(), source })?;
        Ok(Self { writer, path })
    }

    /// Every number of the log line `value` as a scalar at `step`, under Trainer's tag.
    pub fn log(&mut self, value: &serde_json::Value, step: u64) -> Result<()> {
        let Some(fields) = value.as_object() else { return Ok(()) };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        for (key, v) in fields {
            let Some(x) = v.as_f64().filter(|_| key != "step") else { continue };
            self.writer
                .write_scalar(tag(key), step, x as f32)
                .map_err(|source| TrainError::TensorBoard { path: self.path.clone(), source })?;
        }
        Ok(())
    }
}

/// transformers' `rewrite_logs`.
pub fn tag(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("eval_") {
        format!("eval/{rest}")
    } else if let Some(rest) = key.strip_prefix("test_") {
        format!("test/{rest}")
    } else {
        format!("train/{key}")
    }
}

/// The machine's name for the file name, as TensorFlow's writers put it there.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    if name.is_empty() { "localhost".into() } else { name }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tfrecord::protobuf::summary::value::Value as SummaryValue;
    use tfrecord::{RecordIter, RecordReaderConfig};

    #[test]
    fn tags_as_trainer_rewrites_them() {
        assert_eq!(tag("loss"), "train/loss");
        assert_eq!(tag("learning_rate"), "train/learning_rate");
        assert_eq!(tag("eval_loss"), "eval/loss");
        assert_eq!(tag("eval_accuracy"), "eval/accuracy");
        assert_eq!(tag("test_f1"), "test/f1");
    }

    /// What is written reads back as records (framing and CRCs as the reader checks them):
    /// the version event first, then one scalar per number of each line at its step.
    #[test]
    fn events_read_back_in_order_with_their_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut tb = TensorBoard::create(dir.path()).unwrap();
        tb.log(&serde_json::json!({"step": 1, "loss": 0.5, "learning_rate": 1e-3, "note": "x"}), 1).unwrap();
        tb.log(&serde_json::json!({"step": 2, "eval_loss": 0.25, "eval_confusion": [[1, 0], [0, 1]]}), 2).unwrap();
        let events: Vec<Event> = RecordIter::<Event, _>::open(&tb.path, RecordReaderConfig::default())
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert!(matches!(&events[0].what, Some(What::FileVersion(v)) if v == "brain.Event:2"));
        let mut scalars: Vec<(i64, String, f32)> = events[1..]
            .iter()
            .map(|e| match &e.what {
                Some(What::Summary(s)) => match &s.value[0].value {
                    Some(SummaryValue::SimpleValue(x)) => (e.step, s.value[0].tag.clone(), *x),
                    other => panic!("not a scalar: {other:?}"),
                },
                other => panic!("not a summary: {other:?}"),
            })
            .collect();
        scalars.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        assert_eq!(
            scalars,
            vec![(1, "train/learning_rate".into(), 1e-3), (1, "train/loss".into(), 0.5), (2, "eval/loss".into(), 0.25)]
        );
    }
}
