//! Naming a source once: a path or a Hub dataset id, recognised by what is there.

use std::path::{Path, PathBuf};

use bert::HubOptions;
use hf_hub::{Repo, RepoType};

use crate::acl;
use crate::error::{DataError, Result};
use crate::formats::{Format, read_file};
use crate::review::{Review, Splits};

/// The Hub's parquet export of `stanfordnlp/imdb` (the `plain_text` configuration).
pub const HUB_SPLIT_FILES: [(&str, &str); 2] =
    [("train", "plain_text/train-00000-of-00001.parquet"), ("test", "plain_text/test-00000-of-00001.parquet")];

const SPLIT_EXTENSIONS: [&str; 5] = ["jsonl", "jsonl.gz", "csv", "csv.gz", "parquet"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `aclImdb/` with `{train,test}/{pos,neg}/*.txt`.
    AclTree(PathBuf),
    /// `aclImdb_v1.tar.gz`, read in place.
    AclTarball(PathBuf),
    /// One file per split (`train.jsonl` + `test.jsonl`, or `.csv`, `.jsonl.gz`, ...).
    SplitFiles { train: PathBuf, test: PathBuf },
    /// One file holding every review, train and test subsets both drawn from it.
    SingleFile(PathBuf),
    /// A Hub dataset id with the `stanfordnlp/imdb` parquet layout.
    Hub(String),
}

impl Source {
    /// Recognises `spec`: a directory, a file, or a Hub dataset id.
    pub fn detect(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::detect_dir(path);
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

    fn detect_dir(dir: &Path) -> Result<Self> {
        if acl::is_tree(dir) {
            return Ok(Self::AclTree(dir.to_path_buf()));
        }
        if acl::is_tree(&dir.join("aclImdb")) {
            return Ok(Self::AclTree(dir.join("aclImdb")));
        }
        let find =
            |split: &str| SPLIT_EXTENSIONS.iter().map(|ext| dir.join(format!("{split}.{ext}"))).find(|p| p.is_file());
        match (find("train"), find("test")) {
            (Some(train), Some(test)) => Ok(Self::SplitFiles { train, test }),
            (Some(_), None) => Err(DataError::Missing { path: dir.join("test.jsonl"), what: "the test split (test.jsonl, .csv, .jsonl.gz, ...)".into() }),
            (None, Some(_)) => Err(DataError::Missing { path: dir.join("train.jsonl"), what: "the train split (train.jsonl, .csv, .jsonl.gz, ...)".into() }),
            (None, None) => Err(DataError::Unrecognised {
                path: dir.to_path_buf(),
                hint: "expected an aclImdb tree ({train,test}/{pos,neg}/*.txt) or train/test files (.jsonl, .csv, .jsonl.gz, .parquet)".into(),
            }),
        }
    }

    /// Reads every review of the source.
    pub fn load(&self, hub: &HubOptions) -> Result<Splits> {
        let splits = match self {
            Self::AclTree(dir) => acl::read_tree(dir)?,
            Self::AclTarball(path) => acl::read_tarball(path)?,
            Self::SplitFiles { train, test } => {
                Splits::TrainTest { train: read_split(train, "train")?, test: read_split(test, "test")? }
            }
            Self::SingleFile(path) => Splits::Unsplit(read_split(path, "all")?),
            Self::Hub(dataset) => {
                let repo = Repo::new(dataset.clone(), RepoType::Dataset);
                let mut files = Vec::new();
                for (split, file) in HUB_SPLIT_FILES {
                    let path = hub
                        .fetch(&repo, file)
                        .map_err(|message| DataError::Hub { dataset: dataset.clone(), message })?;
                    files.push(read_split(&path, split)?);
                }
                let test = files.pop().unwrap_or_default();
                let train = files.pop().unwrap_or_default();
                Splits::TrainTest { train, test }
            }
        };
        Ok(splits)
    }
}

fn read_split(path: &Path, split: &str) -> Result<Vec<Review>> {
    let reviews = read_file(path)?;
    if reviews.is_empty() {
        return Err(DataError::EmptySplit { path: path.to_path_buf(), split: split.into() });
    }
    Ok(reviews)
}
