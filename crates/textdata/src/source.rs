//! Naming a source once: a path or a Hub dataset id, recognised by what is there.

use std::path::{Path, PathBuf};

use encoders::HubOptions;
use hf_hub::{Repo, RepoType};

use crate::acl;
use crate::error::{DataError, Result};
use crate::formats::{Format, read_file};
use crate::labels::InferLabels;
use crate::records::{Columns, RawSplit, RawSplits};
use encoders::{LabelSpace, ProblemType};

const SPLIT_EXTENSIONS: [&str; 5] = ["jsonl", "jsonl.gz", "csv", "csv.gz", "parquet"];
/// The evaluation split's names, in the order they are looked for when none is given
/// (`eval`: what `lora export-data` writes).
pub(crate) const EVAL_SPLITS: [&str; 3] = ["test", "validation", "eval"];

/// What to read from a source: the columns, the evaluation split's name, and for a Hub
/// dataset its configuration (the folder of its parquet export).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    pub columns: Columns,
    /// The training split's name. Unset: `train`.
    pub train_split: Option<String>,
    /// Unset: `test`, else `validation`, else `eval`.
    pub eval_split: Option<String>,
    /// Unset: `plain_text` (as `stanfordnlp/imdb`); most single-configuration datasets use `default`.
    pub hub_config: Option<String>,
}

impl SourceOptions {
    fn train_split(&self) -> &str {
        self.train_split.as_deref().unwrap_or("train")
    }

    fn eval_splits(&self) -> Vec<&str> {
        match &self.eval_split {
            Some(split) => vec![split.as_str()],
            None => EVAL_SPLITS.to_vec(),
        }
    }

    /// The Hub's parquet files of a split: `{config}/{split}-00000-of-00001.parquet`.
    pub fn hub_file(&self, split: &str) -> String {
        format!("{}/{split}-00000-of-00001.parquet", self.hub_config.as_deref().unwrap_or("plain_text"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `aclImdb/` with `{train,test}/{pos,neg}/*.txt`.
    AclTree(PathBuf),
    /// `aclImdb_v1.tar.gz`, read in place.
    AclTarball(PathBuf),
    /// One file per split (`train.jsonl` + `test.jsonl`, or `.csv`, `.jsonl.gz`, ...).
    SplitFiles { train: PathBuf, test: PathBuf },
    /// One file holding every example, train and test subsets both drawn from it.
    SingleFile(PathBuf),
    /// A Hub dataset id with the `stanfordnlp/imdb` parquet layout.
    Hub(String),
}

impl Source {
    /// Recognises `spec`: a directory, a file, or a Hub dataset id.
    pub fn detect(spec: &str, options: &SourceOptions) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::detect_dir(path, options);
        }
        if path.is_file() {
            let name = spec.to_ascii_lowercase();
            if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar") {
                return Ok(Self::AclTarball(path.to_path_buf()));
            }
            if Format::of(path).is_some() {
                return Ok(Self::SingleFile(path.to_path_buf()));
            }
            return Err(DataError::Unrecognised {
                path: path.to_path_buf(),
                hint: "expected .jsonl, .csv (either may be .gz), .parquet, or an aclImdb .tar.gz".into(),
            });
        }
        let hub_like = spec.split('/').count() == 2 && !spec.starts_with(['.', '/', '~']) && !spec.contains('\\');
        if hub_like {
            return Ok(Self::Hub(spec.to_string()));
        }
        Err(DataError::Missing { path: path.to_path_buf(), what: "the dataset (no such file or directory)".into() })
    }

    fn detect_dir(dir: &Path, options: &SourceOptions) -> Result<Self> {
        if acl::is_tree(dir) {
            return Ok(Self::AclTree(dir.to_path_buf()));
        }
        if acl::is_tree(&dir.join("aclImdb")) {
            return Ok(Self::AclTree(dir.join("aclImdb")));
        }
        // One file per split: `train.jsonl` beside `train.csv` is a question, not a choice.
        let mut ambiguous = None;
        let mut find = |split: &str| {
            let found: Vec<PathBuf> =
                SPLIT_EXTENSIONS.iter().map(|ext| dir.join(format!("{split}.{ext}"))).filter(|p| p.is_file()).collect();
            if found.len() > 1 && ambiguous.is_none() {
                ambiguous = Some((split.to_string(), found.clone()));
            }
            found.into_iter().next()
        };
        let eval_splits = options.eval_splits();
        let train_split = options.train_split();
        let found = (find(train_split), eval_splits.iter().find_map(|s| find(s)));
        if let Some((split, files)) = ambiguous {
            let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            return Err(DataError::Ambiguous {
                path: dir.to_path_buf(),
                message: format!(
                    "the {split} split is in {} files ({}); keep one, or name the file itself as data.source",
                    files.len(),
                    names.join(" and ")
                ),
            });
        }
        match found {
            (Some(train), Some(test)) => Ok(Self::SplitFiles { train, test }),
            (Some(_), None) => Err(DataError::Missing {
                path: dir.join(format!("{}.jsonl", eval_splits[0])),
                what: format!("the evaluation split ({} as .jsonl, .csv, .jsonl.gz, .parquet; data.eval_split names another)", eval_splits.join(", ")),
            }),
            (None, Some(_)) => Err(DataError::Missing {
                path: dir.join(format!("{train_split}.jsonl")),
                what: format!("the training split ({train_split} as .jsonl, .csv, .jsonl.gz, .parquet; data.train_split names another)"),
            }),
            (None, None) => Err(DataError::Unrecognised {
                path: dir.to_path_buf(),
                hint: "expected an aclImdb tree ({train,test}/{pos,neg}/*.txt) or train/test files (.jsonl, .csv, .jsonl.gz, .parquet)".into(),
            }),
        }
    }

    /// Reads every row of the source, its labels as written.
    pub fn load(&self, options: &SourceOptions, hub: &HubOptions) -> Result<RawSplits> {
        let columns = &options.columns;
        let splits = match self {
            Self::AclTree(dir) => acl::read_tree(dir, columns)?,
            Self::AclTarball(path) => acl::read_tarball(path, columns)?,
            Self::SplitFiles { train, test } => RawSplits::TrainTest {
                train: read_split(train, "train", columns)?,
                test: read_split(test, "evaluation", columns)?,
            },
            Self::SingleFile(path) => RawSplits::Unsplit(read_split(path, "all", columns)?),
            Self::Hub(dataset) => {
                let repo = Repo::new(dataset.clone(), RepoType::Dataset);
                let eval_split = options.eval_split.as_deref().unwrap_or(EVAL_SPLITS[0]);
                let mut files = Vec::new();
                for split in [options.train_split(), eval_split] {
                    let file = options.hub_file(split);
                    let path = hub.fetch(&repo, &file).map_err(|source| DataError::HubFile {
                        dataset: dataset.clone(),
                        file: file.clone(),
                        source,
                    })?;
                    files.push(read_split(&path, split, columns)?);
                }
                let (Some(test), Some(train)) = (files.pop(), files.pop()) else {
                    return Err(DataError::Hub { dataset: dataset.clone(), message: "no splits".into() });
                };
                RawSplits::TrainTest { train, test }
            }
        };
        Ok(splits)
    }
}

fn read_split(path: &Path, split: &str, columns: &Columns) -> Result<RawSplit> {
    let records = read_file(path, columns)?;
    if records.records.is_empty() {
        return Err(DataError::EmptySplit { path: path.to_path_buf(), split: split.into() });
    }
    Ok(records)
}

/// How a load gives labels their meaning: an adapter's known classes, or inferred from the
/// training split with what a run sets (`model.problem_type`, `data.label_names`).
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    Known(LabelSpace),
    Infer { problem_type: Option<ProblemType>, names: Option<Vec<String>> },
}

/// Reads `spec` and resolves every label: the splits and the label space they were read with.
/// Class names the source declares (a Hub export's `ClassLabel`) are used unless a run names
/// its own.
pub fn load_labelled(
    spec: &str,
    options: &SourceOptions,
    hub: &HubOptions,
    labels: Labels,
) -> Result<(crate::example::Splits, LabelSpace)> {
    let raw = Source::detect(spec, options)?.load(options, hub)?;
    let space = match labels {
        Labels::Known(space) => space,
        Labels::Infer { problem_type, names } => {
            let names = names.or_else(|| raw.declared_names());
            LabelSpace::infer(raw.train_labels(), problem_type, names)
                .map_err(|source| DataError::Labels { path: raw.train().path.clone(), source })?
        }
    };
    Ok((raw.resolve(&space)?, space))
}
