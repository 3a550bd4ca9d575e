//! Rows as a source holds them, before their labels mean anything: the columns a run reads
//! ([`Columns`]), each row's text, pair and raw label with where it came from ([`Record`]),
//! and the step that gives the labels their meaning ([`RawSplits::resolve`]).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::example::{Example, Splits};
use crate::labels::{InferLabels, RawLabel, Target};
use encoders::LabelSpace;

/// Single-text columns, in the order they are looked for (`review`: the popular
/// `IMDB Dataset.csv`).
pub(crate) const TEXT_COLUMNS: [&str; 3] = ["text", "sentence", "review"];
/// Pair columns: transformers' pipelines' `text` + `text_pair`, and as GLUE and its kin name them
/// (MRPC, STS-B; QNLI; QQP; MNLI, RTE).
pub(crate) const PAIR_COLUMNS: [(&str, &str); 5] = [
    ("text", "text_pair"),
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
];
pub(crate) const LABEL_COLUMNS: [&str; 3] = ["label", "labels", "sentiment"];

/// The columns to read, by name (`data.text_column`, `text_pair_column`, `label_column`);
/// unset ones are found among the usual names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    pub text: Option<String>,
    pub text_pair: Option<String>,
    pub label: Option<String>,
}

/// The columns found in a file: the text's, the pair's (if any) and the label's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: String,
}

fn find<'a>(names: &'a [String], wanted: &str) -> Option<&'a String> {
    names.iter().find(|n| *n == wanted).or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(wanted)))
}

impl Columns {
    /// The columns among `names` (a header, a parquet schema, a JSON object's keys), or an
    /// error naming what is missing, what was looked for and what is there.
    pub fn find(&self, names: &[String], path: &Path) -> Result<Found> {
        let (text, text_pair) = self.find_texts(names, path)?;
        let label = match &self.label {
            Some(label) => named(names, label, "label", "label_column", path)?,
            None => LABEL_COLUMNS.iter().find_map(|c| find(names, c)).cloned().ok_or_else(|| {
                missing(names, path, "label", LABEL_COLUMNS.iter().map(|s| s.to_string()).collect(), "label_column")
            })?,
        };
        Ok(Found { text, text_pair, label })
    }

    /// The text's column and the pair's, if any (what `lora predict` reads).
    pub fn find_texts(&self, names: &[String], path: &Path) -> Result<(String, Option<String>)> {
        Ok(match (&self.text, &self.text_pair) {
            (Some(text), pair) => (
                named(names, text, "text", "text_column", path)?,
                pair.as_ref().map(|p| named(names, p, "text pair", "text_pair_column", path)).transpose()?,
            ),
            (None, Some(pair)) => {
                let pair = named(names, pair, "text pair", "text_pair_column", path)?;
                let text = TEXT_COLUMNS
                    .iter()
                    .chain(PAIR_COLUMNS.iter().map(|(a, _)| a))
                    .filter_map(|c| find(names, c))
                    .find(|c| **c != pair)
                    .cloned()
                    .ok_or_else(|| {
                        missing(
                            names,
                            path,
                            "text",
                            TEXT_COLUMNS.iter().map(|s| s.to_string()).collect(),
                            "text_column",
                        )
                    })?;
                (text, Some(pair))
            }
            (None, None) => match PAIR_COLUMNS.iter().find_map(|(a, b)| Some((find(names, a)?, find(names, b)?))) {
                Some((a, b)) => (a.clone(), Some(b.clone())),
                None => {
                    let text = TEXT_COLUMNS.iter().find_map(|c| find(names, c)).cloned().ok_or_else(|| {
                        let mut expected: Vec<String> = TEXT_COLUMNS.iter().map(|s| s.to_string()).collect();
                        expected.extend(PAIR_COLUMNS.iter().map(|(a, b)| format!("{a} + {b}")));
                        missing(names, path, "text", expected, "text_column")
                    })?;
                    (text, None)
                }
            },
        })
    }
}

fn missing(names: &[String], path: &Path, role: &str, expected: Vec<String>, key: &str) -> DataError {
    DataError::MissingColumn {
        path: path.to_path_buf(),
        role: format!("{role} (set data.{key}; lora eval: --{})", key.replace('_', "-")),
        expected,
        found: names.to_vec(),
    }
}

fn named(names: &[String], name: &str, role: &str, key: &str, path: &Path) -> Result<String> {
    find(names, name).cloned().ok_or_else(|| missing(names, path, role, vec![name.to_string()], key))
}

/// Where in its file a record is: a line (JSON Lines, CSV), a row (parquet), or a member
/// (a file of the aclImdb tree or tarball).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Line(usize),
    Row(usize),
    Member(String),
}

impl Location {
    /// An error at this place in `path`.
    pub fn error(&self, path: &Path, message: String) -> DataError {
        match self {
            Self::Line(line) => DataError::Line { path: path.to_path_buf(), line: *line, message },
            Self::Row(row) => DataError::Entry { path: path.to_path_buf(), entry: format!("row {row}"), message },
            Self::Member(entry) => DataError::Entry { path: path.to_path_buf(), entry: entry.clone(), message },
        }
    }
}

/// One row: its text, its pair's text, its label as written, and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: RawLabel,
    pub at: Location,
}

/// The records of one split and the file they came from; `label_names` are the class names
/// the file itself declares (a Hub parquet export's `ClassLabel`), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSplit {
    pub path: PathBuf,
    pub records: Vec<Record>,
    pub label_names: Option<Vec<String>>,
}

impl RawSplit {
    pub fn new(path: &Path, records: Vec<Record>) -> Self {
        Self { path: path.to_path_buf(), records, label_names: None }
    }

    /// The texts alone, every label class 0 (for timing and prediction, where labels do not count).
    pub fn unlabelled(self) -> Vec<Example> {
        self.records
            .into_iter()
            .map(|r| Example { text: r.text, text_pair: r.text_pair, label: Target::Class(0) })
            .collect()
    }

    fn resolve(self, space: &LabelSpace) -> Result<Vec<Example>> {
        let path = self.path;
        let resolver = space.resolver();
        self.records
            .into_iter()
            .map(|r| {
                let label = resolver.target(&r.label).map_err(|e| r.at.error(&path, e.to_string()))?;
                Ok(Example { text: r.text, text_pair: r.text_pair, label })
            })
            .collect()
    }
}

/// A source's splits before their labels are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum RawSplits {
    TrainTest { train: RawSplit, test: RawSplit },
    Unsplit(RawSplit),
}

impl RawSplits {
    /// The split the classes are learned from: train (or the one unsplit file).
    pub fn train(&self) -> &RawSplit {
        match self {
            Self::TrainTest { train, .. } | Self::Unsplit(train) => train,
        }
    }

    /// The label names the source declares, if it does.
    pub fn declared_names(&self) -> Option<Vec<String>> {
        self.train().label_names.clone()
    }

    /// The labels of the training split, as written.
    pub fn train_labels(&self) -> impl Iterator<Item = &RawLabel> + Clone {
        self.train().records.iter().map(|r| &r.label)
    }

    /// Every record's label as `space` reads it; a label outside it is an error naming the
    /// file and line.
    pub fn resolve(self, space: &LabelSpace) -> Result<Splits> {
        Ok(match self {
            Self::TrainTest { train, test } => {
                Splits::TrainTest { train: train.resolve(space)?, test: test.resolve(space)? }
            }
            Self::Unsplit(all) => Splits::Unsplit(all.resolve(space)?),
        })
    }

    /// The evaluation split alone (train's records dropped), for `lora eval`.
    pub fn without_train(self) -> Self {
        match self {
            Self::TrainTest { train, test } => {
                Self::TrainTest { train: RawSplit { records: Vec::new(), ..train }, test }
            }
            unsplit => unsplit,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn usual_names_are_found_and_pairs_come_first() {
        let path = Path::new("f.csv");
        let found = Columns::default().find(&names(&["idx", "sentence1", "sentence2", "label"]), path).unwrap();
        assert_eq!(
            (found.text.as_str(), found.text_pair.as_deref(), found.label.as_str()),
            ("sentence1", Some("sentence2"), "label")
        );
        let found = Columns::default().find(&names(&["question", "sentence", "labels"]), path).unwrap();
        assert_eq!((found.text.as_str(), found.text_pair.as_deref()), ("question", Some("sentence")));
        let found = Columns::default().find(&names(&["Review", "Sentiment"]), path).unwrap();
        assert_eq!((found.text.as_str(), found.text_pair, found.label.as_str()), ("Review", None, "Sentiment"));
        let chosen = Columns { text: Some("body".into()), label: Some("topic".into()), text_pair: None };
        let found = chosen.find(&names(&["body", "topic", "label"]), path).unwrap();
        assert_eq!((found.text.as_str(), found.label.as_str()), ("body", "topic"));
    }

    #[test]
    fn a_missing_column_names_the_key_to_set() {
        let err = Columns::default().find(&names(&["body", "label"]), Path::new("f.csv")).unwrap_err().to_string();
        assert!(err.contains("f.csv") && err.contains("data.text_column") && err.contains("body"), "{err}");
        let chosen = Columns { label: Some("topic".into()), ..Default::default() };
        let err = chosen.find(&names(&["text", "label"]), Path::new("f.csv")).unwrap_err().to_string();
        assert!(err.contains("data.label_column") && err.contains("topic"), "{err}");
    }
}
