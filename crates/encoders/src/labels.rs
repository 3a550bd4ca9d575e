//! The one label type of the workspace: a classification head's task and class names
//! ([`LabelSpace`]: transformers' `problem_type`, `num_labels` and `id2label`), and
//! `labels.json`, the file that carries them beside an adapter. The data crate infers a space
//! from a training split, the model takes it as its head ([`crate::LoadOptions::head`]), the
//! server reads it beside each adapter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// transformers' `config.problem_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// One class per example; cross-entropy.
    #[default]
    SingleLabelClassification,
    /// Any number of classes per example; sigmoid and binary cross-entropy per class.
    MultiLabelClassification,
    /// One real value per example (`num_labels = 1`); mean squared error.
    Regression,
}

impl ProblemType {
    pub const NAMES: [&'static str; 3] = ["single_label_classification", "multi_label_classification", "regression"];

    /// What this task reads from one row of logits: softmax probabilities (as `torch.softmax`,
    /// the maximum subtracted first), each class's sigmoid, or the value itself.
    pub fn scores(self, logits: &[f32]) -> Vec<f32> {
        match self {
            Self::SingleLabelClassification => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                exps.iter().map(|e| e / sum).collect()
            }
            Self::MultiLabelClassification => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            Self::Regression => logits.to_vec(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::SingleLabelClassification => Self::NAMES[0],
            Self::MultiLabelClassification => Self::NAMES[1],
            Self::Regression => Self::NAMES[2],
        }
    }
}

impl std::fmt::Display for ProblemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The task and its classes: what `num_labels`, `id2label`, `label2id` and `problem_type`
/// say in a transformers config.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSpace {
    pub problem_type: ProblemType,
    /// Class names by id; regression has the one name `LABEL_0`, as transformers gives it.
    pub names: Vec<String>,
}

/// `labels.json`, written beside an adapter: the keyword arguments that give a base model this
/// run's head in Python, `AutoModelForSequenceClassification.from_pretrained(base, **labels)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsFile {
    pub num_labels: usize,
    pub problem_type: ProblemType,
    pub id2label: BTreeMap<String, String>,
    pub label2id: BTreeMap<String, usize>,
}

pub const LABELS_FILE: &str = "labels.json";

/// Why an adapter's `labels.json` cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{} names {labels} labels, but the adapter's classifier has {rows} rows", path.display())]
    Rows { path: PathBuf, labels: usize, rows: usize },
}

impl LabelSpace {
    /// Classes named `LABEL_0`.. (transformers' defaults) for a head of `num_labels` rows:
    /// regression when it has one, single-label classification otherwise.
    pub fn unnamed(num_labels: usize) -> Self {
        let problem_type =
            if num_labels == 1 { ProblemType::Regression } else { ProblemType::SingleLabelClassification };
        Self { problem_type, names: (0..num_labels.max(1)).map(|i| format!("LABEL_{i}")).collect() }
    }

    pub fn num_labels(&self) -> usize {
        match self.problem_type {
            ProblemType::Regression => 1,
            _ => self.names.len(),
        }
    }

    pub fn id2label(&self) -> BTreeMap<String, String> {
        self.names.iter().enumerate().map(|(i, n)| (i.to_string(), n.clone())).collect()
    }

    pub fn to_file(&self) -> LabelsFile {
        LabelsFile {
            num_labels: self.num_labels(),
            problem_type: self.problem_type,
            id2label: self.id2label(),
            label2id: self.names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
        }
    }

    /// Writes `dir/labels.json` through a temporary file.
    /// The error names the file (`cannot write DIR/labels.json: ...`).
    pub fn write(&self, dir: &Path) -> Result<(), tensor_file::TensorFileError> {
        let path = dir.join(LABELS_FILE);
        let json = serde_json::to_string_pretty(&self.to_file()).map_err(|e| tensor_file::TensorFileError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        tensor_file::write_atomic(&path, json.as_bytes())
    }

    /// The task and class names of the adapter in `dir`: its `labels.json`, else transformers'
    /// defaults for a head of `rows` (`LABEL_0`..; one row: regression). Refused when the two
    /// disagree.
    pub fn for_adapter(dir: &Path, rows: usize) -> Result<Self, LabelsError> {
        match Self::read(dir)? {
            Some(labels) if labels.num_labels() != rows => {
                Err(LabelsError::Rows { path: dir.join(LABELS_FILE), labels: labels.num_labels(), rows })
            }
            Some(labels) => Ok(labels),
            None => Ok(Self::unnamed(rows)),
        }
    }

    /// `dir/labels.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>, LabelsError> {
        let path = dir.join(LABELS_FILE);
        let text = match tensor_file::read_small_text(&path, tensor_file::SMALL_FILE_LIMIT) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LabelsError::Read { path, source }),
        };
        let invalid = |message: String| LabelsError::Invalid { path: path.clone(), message };
        let file: LabelsFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut names = Vec::with_capacity(file.id2label.len());
        for i in 0..file.id2label.len() {
            let name = file
                .id2label
                .get(&i.to_string())
                .ok_or_else(|| invalid(format!("id2label has no id {i} (expected ids 0..{})", file.id2label.len())))?;
            names.push(name.clone());
        }
        let space = Self { problem_type: file.problem_type, names };
        if space.num_labels() != file.num_labels {
            return Err(invalid(format!(
                "num_labels = {} but id2label names {} classes",
                file.num_labels,
                space.names.len()
            )));
        }
        Ok(Some(space))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LabelSpace::read(dir.path()).unwrap(), None);
        let space =
            LabelSpace { problem_type: ProblemType::MultiLabelClassification, names: vec!["x".into(), "y".into()] };
        space.write(dir.path()).unwrap();
        assert_eq!(LabelSpace::read(dir.path()).unwrap(), Some(space.clone()));
        let err = LabelSpace::for_adapter(dir.path(), 3).unwrap_err().to_string();
        assert!(err.contains("labels.json names 2 labels, but the adapter's classifier has 3 rows"), "{err}");
        assert_eq!(LabelSpace::for_adapter(dir.path(), 2).unwrap(), space);
        std::fs::write(
            dir.path().join(LABELS_FILE),
            r#"{"num_labels": 2, "problem_type": "regression", "id2label": {}, "label2id": {}}"#,
        )
        .unwrap();
        let err = LabelSpace::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("labels.json: num_labels = 2 but id2label names 0 classes"), "{err}");
    }
}
