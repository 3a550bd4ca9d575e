//! Single files: JSON Lines, CSV (either may be gzip-compressed) and parquet.
//!
//! Columns are found by name ([`Columns`]): those a run names, else the usual ones (`text`,
//! `sentence1` + `sentence2`, `label`, ...), as the Hub copy, GLUE and the popular
//! `IMDB Dataset.csv` name them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{DataError, Result};
use crate::labels::RawLabel;
use crate::records::{Columns, Location, RawSplit, Record};

/// The file formats this module reads, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    JsonLines { gzip: bool },
    Csv { gzip: bool },
    Parquet,
}

impl Format {
    pub(crate) fn of(path: &Path) -> Option<Self> {
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

/// Reads every row of one file.
pub fn read_file(path: &Path, columns: &Columns) -> Result<RawSplit> {
    let format = Format::of(path).ok_or_else(|| DataError::Unrecognised {
        path: path.to_path_buf(),
        hint: "expected .jsonl, .csv, either with .gz, or .parquet".into(),
    })?;
    match format {
        Format::JsonLines { gzip } => read_jsonl(path, open(path, gzip)?, columns),
        Format::Csv { gzip } => read_csv(path, open(path, gzip)?, columns),
        Format::Parquet => read_parquet(path, columns),
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

/// JSON Lines: one object per line; blank lines are not rows. The columns are found from the
/// first object's keys, and every line must have them.
pub(crate) fn read_jsonl(path: &Path, reader: impl BufRead, columns: &Columns) -> Result<RawSplit> {
    let mut records = Vec::new();
    let mut found = None;
    for (i, line) in reader.split(b'\n').enumerate() {
        let at = Location::Line(i + 1);
        let fail = |message: String| at.error(path, message);
        let bytes = line.map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| fail(format!("not valid UTF-8 ({e})")))?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| fail(format!("not a JSON object ({e})")))?;
        let object = value.as_object().ok_or_else(|| fail("expected a JSON object".into()))?;
        let cols = match &found {
            Some(cols) => cols,
            None => {
                let cols = columns.find(&object.keys().cloned().collect::<Vec<_>>(), path).map_err(|e| match e {
                    DataError::MissingColumn { role, expected, found, .. } => {
                        fail(format!("no field for the {role}; expected one of {expected:?}, found {found:?}"))
                    }
                    other => other,
                })?;
                found.insert(cols)
            }
        };
        let field = |name: &str| object.get(name).ok_or_else(|| fail(format!("no `{name}` field")));
        let string = |name: &str| -> Result<String> {
            field(name)?.as_str().map(str::to_string).ok_or_else(|| fail(format!("`{name}` is not a string")))
        };
        let raw = field(&cols.label)?;
        let label = RawLabel::from_json(raw).ok_or_else(|| {
            fail(format!("label `{}` is {raw}; expected a number, a string or a list of them", cols.label))
        })?;
        let text_pair = cols.text_pair.as_deref().map(string).transpose()?;
        records.push(Record { text: string(&cols.text)?, text_pair, label, at });
    }
    Ok(RawSplit::new(path, records))
}

/// CSV with a header row naming the columns.
pub(crate) fn read_csv(path: &Path, reader: impl Read, columns: &Columns) -> Result<RawSplit> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| Location::Line(1).error(path, format!("cannot read the header ({e})")))?
        .iter()
        .map(str::to_string)
        .collect();
    // pandas would read the second `text` as `text.1` and use the first without a word.
    for (i, name) in headers.iter().enumerate() {
        if let Some(j) = headers[..i].iter().position(|h| h.eq_ignore_ascii_case(name)) {
            return Err(Location::Line(1).error(
                path,
                format!(
                    "the header names column `{name}` twice (columns {} and {}); rename one so that it is clear which is meant",
                    j + 1,
                    i + 1
                ),
            ));
        }
    }
    let cols = columns.find(&headers, path)?;
    let index = |name: &str| headers.iter().position(|h| h == name).unwrap_or_default();
    let (text_i, label_i) = (index(&cols.text), index(&cols.label));
    let pair_i = cols.text_pair.as_deref().map(index);
    let mut records = Vec::new();
    for record in csv.byte_records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Location::Line(line).error(path, format!("malformed CSV ({e})"))
        })?;
        let at = Location::Line(record.position().map_or(0, |p| p.line() as usize));
        let field = |i: usize| -> Result<String> {
            let name = &headers[i];
            let bytes = record.get(i).ok_or_else(|| at.error(path, format!("no `{name}` field in this row")))?;
            String::from_utf8(bytes.to_vec()).map_err(|e| at.error(path, format!("`{name}` is not valid UTF-8 ({e})")))
        };
        let label = RawLabel::from_field(&field(label_i)?);
        let text_pair = pair_i.map(field).transpose()?;
        records.push(Record { text: field(text_i)?, text_pair, label, at });
    }
    Ok(RawSplit::new(path, records))
}

/// Parquet as the Hub's exports write it; the class names of a `ClassLabel` column are read
/// from the file's `huggingface` metadata.
pub(crate) fn read_parquet(path: &Path, columns: &Columns) -> Result<RawSplit> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let parquet = |what: &str| {
        let (path, what) = (path.to_path_buf(), what.to_string());
        move |source| DataError::Parquet { path, what, source }
    };
    let reader = SerializedFileReader::new(file).map_err(parquet("not a readable parquet file"))?;
    let metadata = reader.metadata().file_metadata();
    let names: Vec<String> =
        metadata.schema_descr().root_schema().get_fields().iter().map(|f| f.name().to_string()).collect();
    let cols = columns.find(&names, path)?;
    let label_names = metadata
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == "huggingface"))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| class_names(&v["info"]["features"][&cols.label]));
    let rows = reader.get_row_iter(None).map_err(parquet("its rows cannot be read"))?;
    let mut records = Vec::new();
    for (i, row) in rows.enumerate() {
        let at = Location::Row(i);
        let row = row.map_err(parquet(&format!("row {i}")))?;
        let (mut text, mut text_pair, mut label) = (None, None, None);
        for (name, field) in row.get_column_iter() {
            if *name == cols.text || Some(name) == cols.text_pair.as_ref() {
                let value = parquet_text(field)
                    .ok_or_else(|| at.error(path, format!("`{name}` is {field:?}, expected a string")))?;
                if *name == cols.text {
                    text = Some(value);
                } else {
                    text_pair = Some(value);
                }
            } else if *name == cols.label {
                label = Some(parquet_label(field).ok_or_else(|| {
                    at.error(
                        path,
                        format!("label `{name}` is {field:?}; expected a number, a string or a list of them"),
                    )
                })?);
            }
        }
        let null = |name: &str| at.error(path, format!("`{name}` is null"));
        let text = text.ok_or_else(|| null(&cols.text))?;
        if let (Some(pair), None) = (&cols.text_pair, &text_pair) {
            return Err(null(pair));
        }
        let label = label.ok_or_else(|| null(&cols.label))?;
        records.push(Record { text, text_pair, label, at });
    }
    Ok(RawSplit { label_names, ..RawSplit::new(path, records) })
}

/// The names of a `datasets` feature that is a `ClassLabel`, or a sequence of them.
fn class_names(feature: &serde_json::Value) -> Option<Vec<String>> {
    let names = feature.get("names").or_else(|| feature.get("feature").and_then(|f| f.get("names")))?;
    names.as_array()?.iter().map(|n| n.as_str().map(str::to_string)).collect()
}

fn parquet_text(field: &parquet::record::Field) -> Option<String> {
    use parquet::record::Field;
    match field {
        Field::Str(s) => Some(s.clone()),
        Field::Bytes(b) => String::from_utf8(b.data().to_vec()).ok(),
        _ => None,
    }
}

fn parquet_label(field: &parquet::record::Field) -> Option<RawLabel> {
    use parquet::record::Field;
    Some(match field {
        Field::Byte(v) => RawLabel::Int(i64::from(*v)),
        Field::Short(v) => RawLabel::Int(i64::from(*v)),
        Field::Int(v) => RawLabel::Int(i64::from(*v)),
        Field::Long(v) => RawLabel::Int(*v),
        Field::UByte(v) => RawLabel::Int(i64::from(*v)),
        Field::UShort(v) => RawLabel::Int(i64::from(*v)),
        Field::UInt(v) => RawLabel::Int(i64::from(*v)),
        Field::ULong(v) => RawLabel::Int(i64::try_from(*v).ok()?),
        Field::Float(v) => RawLabel::Float(f64::from(*v)),
        Field::Double(v) => RawLabel::Float(*v),
        Field::Str(s) => RawLabel::Text(s.trim().to_string()),
        Field::ListInternal(list) => {
            RawLabel::List(list.elements().iter().map(parquet_label).collect::<Option<Vec<_>>>()?)
        }
        _ => return None,
    })
}
