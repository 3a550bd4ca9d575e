//! The original release: the `aclImdb/` tree (`{train,test}/{pos,neg}/<id>_<rating>.txt`), or
//! the `aclImdb_v1.tar.gz` archive read in place, never unpacked to disk.
//!
//! Its columns: `text`, `label` (0 = `neg`, 1 = `pos`, the directory; the class names are
//! declared, as the Hub copy's `ClassLabel` declares them) and `rating` (1-10, from the file
//! name): `data.label_column = "rating"` makes it a rating task.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path};

use crate::error::{DataError, Result};
use crate::labels::RawLabel;
use crate::records::{Columns, Location, RawSplit, RawSplits, Record};

const SPLITS: [&str; 2] = ["train", "test"];
const CLASSES: [&str; 2] = ["neg", "pos"];

/// The columns each review has.
fn columns(columns: &Columns, path: &Path) -> Result<Rating> {
    let names = ["text", "label", "rating"].map(String::from);
    let found = columns.find(&names, path)?;
    if found.text != "text" || found.text_pair.is_some() {
        return Err(DataError::Unrecognised {
            path: path.to_path_buf(),
            hint: "an aclImdb tree has one text column, `text` (and `label`, `rating`)".into(),
        });
    }
    Ok(if found.label == "rating" { Rating::Label } else { Rating::Ignored })
}

/// Whether the label is the rating in the file name (else the class directory).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rating {
    Label,
    Ignored,
}

/// The class names of the `label` column (the rating's are its numbers).
fn named(split: RawSplit, rating: Rating) -> RawSplit {
    let label_names = (rating == Rating::Ignored).then(|| CLASSES.map(String::from).to_vec());
    RawSplit { label_names, ..split }
}

/// The record of one review file: `<id>_<rating>.txt` in `class`.
fn record(name: &str, class: &str, text: String, rating: Rating, at: Location, path: &Path) -> Result<Record> {
    let label = match rating {
        // 0 and 1, as the other copies of the release write them, named by the directories.
        Rating::Ignored => RawLabel::Int(CLASSES.iter().position(|c| *c == class).unwrap_or_default() as i64),
        Rating::Label => {
            let value = name
                .strip_suffix(".txt")
                .and_then(|stem| stem.rsplit_once('_'))
                .and_then(|(_, r)| r.parse::<i64>().ok())
                .ok_or_else(|| at.error(path, "the file name has no rating (expected <id>_<rating>.txt)".into()))?;
            RawLabel::Int(value)
        }
    };
    Ok(Record { text, text_pair: None, label, at })
}

/// Whether `dir` is an aclImdb tree root (it has `train/pos` or `test/pos`).
pub(crate) fn is_tree(dir: &Path) -> bool {
    SPLITS.iter().any(|s| dir.join(s).join("pos").is_dir())
}

/// Reads `dir/{train,test}/{pos,neg}/*.txt`; `unsup/` and the URL lists are not reviews.
pub(crate) fn read_tree(dir: &Path, wanted: &Columns) -> Result<RawSplits> {
    let rating = columns(wanted, dir)?;
    let mut splits = Vec::new();
    for split in SPLITS {
        let mut reviews = Vec::new();
        for class in CLASSES {
            let class_dir = dir.join(split).join(class);
            if !class_dir.is_dir() {
                return Err(DataError::Missing {
                    path: class_dir,
                    what: format!("the {split}/{class} directory of the aclImdb tree"),
                });
            }
            let mut files: Vec<_> = std::fs::read_dir(&class_dir)
                .map_err(|source| DataError::Io { path: class_dir.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect();
            files.sort();
            for path in files {
                let bytes = std::fs::read(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
                let text = String::from_utf8(bytes).map_err(|e| DataError::Entry {
                    path: path.clone(),
                    entry: path.display().to_string(),
                    message: format!("not valid UTF-8 ({e})"),
                })?;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let at = Location::Member(path.display().to_string());
                reviews.push(record(&name, class, text, rating, at, dir)?);
            }
        }
        if reviews.is_empty() {
            return Err(DataError::EmptySplit { path: dir.join(split), split: split.into() });
        }
        splits.push(named(RawSplit::new(&dir.join(split), reviews), rating));
    }
    let (Some(test), Some(train)) = (splits.pop(), splits.pop()) else {
        return Err(DataError::EmptySplit { path: dir.to_path_buf(), split: "train".into() });
    };
    Ok(RawSplits::TrainTest { train, test })
}

/// Reads the labelled reviews straight out of a `.tar.gz` (or plain `.tar`) of the tree.
/// An entry whose path is absolute or climbs out with `..` is refused: a crafted archive is an
/// error, not something to skip.
pub(crate) fn read_tarball(path: &Path, wanted: &Columns) -> Result<RawSplits> {
    let rating = columns(wanted, path)?;
    let file = File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    let reader: Box<dyn Read> = if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let fail = |entry: String, message: String| DataError::Entry { path: path.to_path_buf(), entry, message };
    let archive_error = |what: &str| {
        let (path, what) = (path.to_path_buf(), what.to_string());
        move |source| DataError::Archive { path, what, source }
    };
    let entries = archive.entries().map_err(archive_error("not a readable tar archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(archive_error("corrupt tar archive"))?;
        let entry_path = entry.path().map_err(archive_error("an entry's path cannot be read"))?.into_owned();
        let shown = entry_path.display().to_string();
        if entry_path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_)))
        {
            return Err(fail(shown, "path escapes the archive's tree; refusing to read it".into()));
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        // Match `.../{train,test}/{pos,neg}/<file>.txt`, whatever the archive's top directory.
        let parts: Vec<String> =
            entry_path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let n = parts.len();
        if n < 3 || !parts[n - 1].ends_with(".txt") {
            continue;
        }
        let Some(class) = CLASSES.iter().find(|c| **c == parts[n - 2]) else { continue };
        let target = match parts[n - 3].as_str() {
            "train" => &mut train,
            "test" => &mut test,
            _ => continue,
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| fail(shown.clone(), format!("cannot read ({e})")))?;
        let text = String::from_utf8(bytes).map_err(|e| fail(shown.clone(), format!("not valid UTF-8 ({e})")))?;
        target.push(record(&parts[n - 1], class, text, rating, Location::Member(shown), path)?);
    }
    for (split, reviews) in [("train", &train), ("test", &test)] {
        if reviews.is_empty() {
            return Err(DataError::EmptySplit { path: path.to_path_buf(), split: split.into() });
        }
    }
    Ok(RawSplits::TrainTest {
        train: named(RawSplit::new(path, train), rating),
        test: named(RawSplit::new(path, test), rating),
    })
}
