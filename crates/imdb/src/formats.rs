//! Single files: JSON Lines, CSV (either may be gzip-compressed) and parquet.
//!
//! Columns are found by name: the text in `text` (or `review`, `sentence`), the label in `label`
//! (or `sentiment`), as the Hub copy, the original release and the popular `IMDB Dataset.csv` name them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{DataError, Result};
use crate::review::{Review, json_label, parse_label};

pub const TEXT_COLUMNS: [&str; 3] = ["text", "review", "sentence"];
pub const LABEL_COLUMNS: [&str; 2] = ["label", "sentiment"];

/// The file formats this module reads, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines { gzip: bool },
    Csv { gzip: bool },
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem.to_string(), true),
            None => (name, false),
        };
        if stem.ends_with(".jsonl") || stem.ends_with(".json") || stem.ends_with(".ndjson") {
            Some(Self::JsonLines { gzip })
        } else if stem.ends_with(".csv") {
            Some(Self::Csv { gzip })
        } else if stem.ends_with(".parquet") && !gzip {
            Some(Self::Parquet)
        } else {
            None
        }
    }
}

/// Reads every review of one file.
pub fn read_file(path: &Path) -> Result<Vec<Review>> {
    let format = Format::of(path).ok_or_else(|| DataError::Unrecognised {
        path: path.to_path_buf(),
        hint: "expected .jsonl, .csv, either with .gz, or .parquet".into(),
    })?;
    match format {
        Format::JsonLines { gzip } => read_jsonl(path, open(path, gzip)?),
        Format::Csv { gzip } => read_csv(path, open(path, gzip)?),
        Format::Parquet => read_parquet(path),
    }
}

fn open(path: &Path, gzip: bool) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    Ok(if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

fn find_column<'a>(names: impl Iterator<Item = &'a str> + Clone, candidates: &[&str]) -> Option<String> {
    candidates.iter().find_map(|c| names.clone().find(|n| n.eq_ignore_ascii_case(c)).map(str::to_string))
}

fn missing_column(path: &Path, role: &str, candidates: &[&str], found: Vec<String>) -> DataError {
    DataError::MissingColumn {
        path: path.to_path_buf(),
        role: role.into(),
        expected: candidates.iter().map(|s| s.to_string()).collect(),
        found,
    }
}

/// JSON Lines: one object per line with a text and a label field; blank lines are not reviews.
pub fn read_jsonl(path: &Path, reader: impl BufRead) -> Result<Vec<Review>> {
    let mut reviews = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i + 1;
        let at = |message: String| DataError::Line { path: path.to_path_buf(), line: line_no, message };
        let bytes = line.map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| at(format!("not valid UTF-8 ({e})")))?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| at(format!("not a JSON object ({e})")))?;
        let object = value.as_object().ok_or_else(|| at("expected a JSON object".into()))?;
        let keys = || object.keys().map(String::as_str);
        let text_key = find_column(keys(), &TEXT_COLUMNS).ok_or_else(|| {
            at(format!("no text field; expected one of {TEXT_COLUMNS:?}, found {:?}", keys().collect::<Vec<_>>()))
        })?;
        let label_key = find_column(keys(), &LABEL_COLUMNS).ok_or_else(|| {
            at(format!("no label field; expected one of {LABEL_COLUMNS:?}, found {:?}", keys().collect::<Vec<_>>()))
        })?;
        let review_text = object[&text_key].as_str().ok_or_else(|| at(format!("`{text_key}` is not a string")))?;
        let label = json_label(&object[&label_key])
            .ok_or_else(|| at(format!("label {} is not 0/1 or negative/positive", object[&label_key])))?;
        reviews.push(Review { text: review_text.to_string(), label });
    }
    Ok(reviews)
}

/// CSV with a header row naming the text and label columns.
pub fn read_csv(path: &Path, reader: impl Read) -> Result<Vec<Review>> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| DataError::Line {
            path: path.to_path_buf(),
            line: 1,
            message: format!("cannot read the header ({e})"),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    let names = || headers.iter().map(String::as_str);
    let text_col = find_column(names(), &TEXT_COLUMNS)
        .ok_or_else(|| missing_column(path, "review text", &TEXT_COLUMNS, headers.clone()))?;
    let label_col = find_column(names(), &LABEL_COLUMNS)
        .ok_or_else(|| missing_column(path, "label", &LABEL_COLUMNS, headers.clone()))?;
    let text_i = headers.iter().position(|h| *h == text_col).unwrap_or_default();
    let label_i = headers.iter().position(|h| *h == label_col).unwrap_or_default();
    let mut reviews = Vec::new();
    for record in csv.byte_records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            DataError::Line { path: path.to_path_buf(), line, message: format!("malformed CSV ({e})") }
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let at = |message: String| DataError::Line { path: path.to_path_buf(), line, message };
        let field = |i: usize, name: &str| -> Result<String> {
            let bytes = record.get(i).ok_or_else(|| at(format!("no `{name}` field in this row")))?;
            String::from_utf8(bytes.to_vec()).map_err(|e| at(format!("`{name}` is not valid UTF-8 ({e})")))
        };
        let text = field(text_i, &text_col)?;
        let raw_label = field(label_i, &label_col)?;
        let label = parse_label(&raw_label)
            .ok_or_else(|| at(format!("label {raw_label:?} is not 0/1 or negative/positive")))?;
        reviews.push(Review { text, label });
    }
    Ok(reviews)
}

/// Parquet as the Hub's `stanfordnlp/imdb` export writes it (`text` string, `label` integer).
pub fn read_parquet(path: &Path) -> Result<Vec<Review>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let file = File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let fail = |entry: String, message: String| DataError::Entry { path: path.to_path_buf(), entry, message };
    let reader = SerializedFileReader::new(file)
        .map_err(|e| fail("footer".into(), format!("not a readable parquet file ({e})")))?;
    let columns: Vec<String> =
        reader.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
    let names = || columns.iter().map(String::as_str);
    let text_col = find_column(names(), &TEXT_COLUMNS)
        .ok_or_else(|| missing_column(path, "review text", &TEXT_COLUMNS, columns.clone()))?;
    let label_col = find_column(names(), &LABEL_COLUMNS)
        .ok_or_else(|| missing_column(path, "label", &LABEL_COLUMNS, columns.clone()))?;
    let rows = reader.get_row_iter(None).map_err(|e| fail("rows".into(), e.to_string()))?;
    let mut reviews = Vec::new();
    for (i, row) in rows.enumerate() {
        let entry = || format!("row {i}");
        let row = row.map_err(|e| fail(entry(), e.to_string()))?;
        let (mut text, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            if *name == text_col {
                text = match field {
                    Field::Str(s) => Some(s.clone()),
                    Field::Bytes(b) => Some(
                        String::from_utf8(b.data().to_vec())
                            .map_err(|e| fail(entry(), format!("`{name}` is not valid UTF-8 ({e})")))?,
                    ),
                    other => return Err(fail(entry(), format!("`{name}` is {other:?}, expected a string"))),
                };
            } else if *name == label_col {
                label = match field {
                    Field::Long(v) => parse_label(&v.to_string()),
                    Field::Int(v) => parse_label(&v.to_string()),
                    Field::Short(v) => parse_label(&v.to_string()),
                    Field::Byte(v) => parse_label(&v.to_string()),
                    Field::Str(s) => parse_label(s),
                    _ => None,
                };
                if label.is_none() {
                    return Err(fail(entry(), format!("label {field:?} is not 0/1 or negative/positive")));
                }
            }
        }
        match (text, label) {
            (Some(text), Some(label)) => reviews.push(Review { text, label }),
            _ => return Err(fail(entry(), format!("`{text_col}` or `{label_col}` is null"))),
        }
    }
    Ok(reviews)
}
