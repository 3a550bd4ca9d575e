//! The original release: the `aclImdb/` tree (`{train,test}/{pos,neg}/<id>_<rating>.txt`), or
//! the `aclImdb_v1.tar.gz` archive read in place, never unpacked to disk.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path};

use crate::error::{DataError, Result};
use crate::review::{NEGATIVE, POSITIVE, Review, Splits};

const SPLITS: [&str; 2] = ["train", "test"];
const CLASSES: [(&str, u8); 2] = [("neg", NEGATIVE), ("pos", POSITIVE)];

/// Whether `dir` is an aclImdb tree root (it has `train/pos` or `test/pos`).
pub fn is_tree(dir: &Path) -> bool {
    SPLITS.iter().any(|s| dir.join(s).join("pos").is_dir())
}

/// Reads `dir/{train,test}/{pos,neg}/*.txt`; `unsup/` and the URL lists are not reviews.
pub fn read_tree(dir: &Path) -> Result<Splits> {
    let mut splits = Vec::new();
    for split in SPLITS {
        let mut reviews = Vec::new();
        for (class, label) in CLASSES {
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
                reviews.push(Review { text, label });
            }
        }
        if reviews.is_empty() {
            return Err(DataError::EmptySplit { path: dir.join(split), split: split.into() });
        }
        splits.push(reviews);
    }
    let test = splits.pop().unwrap_or_default();
    let train = splits.pop().unwrap_or_default();
    Ok(Splits::TrainTest { train, test })
}

/// Reads the labelled reviews straight out of a `.tar.gz` (or plain `.tar`) of the tree.
/// An entry whose path is absolute or climbs out with `..` is refused: a crafted archive is an
/// error, not something to skip.
pub fn read_tarball(path: &Path) -> Result<Splits> {
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
    let entries =
        archive.entries().map_err(|e| fail("(archive)".into(), format!("not a readable tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail("(archive)".into(), format!("corrupt tar archive ({e})")))?;
        let entry_path = entry.path().map_err(|e| fail("(archive)".into(), e.to_string()))?.into_owned();
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
        let Some(&(_, label)) = CLASSES.iter().find(|(c, _)| *c == parts[n - 2]) else { continue };
        let target = match parts[n - 3].as_str() {
            "train" => &mut train,
            "test" => &mut test,
            _ => continue,
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| fail(shown.clone(), format!("cannot read ({e})")))?;
        let text = String::from_utf8(bytes).map_err(|e| fail(shown.clone(), format!("not valid UTF-8 ({e})")))?;
        target.push(Review { text, label });
    }
    for (split, reviews) in [("train", &train), ("test", &test)] {
        if reviews.is_empty() {
            return Err(DataError::EmptySplit { path: path.to_path_buf(), split: split.into() });
        }
    }
    Ok(Splits::TrainTest { train, test })
}
