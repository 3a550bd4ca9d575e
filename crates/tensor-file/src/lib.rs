//! f32 tensors in files: safetensors and PyTorch pickles in, safetensors out, every write atomic.
//!
//! The bottom of the file side of the workspace: model checkpoints (`encoders`), adapters
//! (`lora-adapter`) and the program's own files (optimizer state, run records) all read and write
//! through here, so that no crate reaches into another's format code for a file helper.
#![warn(unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A tensor in PyTorch's layout, row-major f32.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: not a valid safetensors file: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

impl TensorFileError {
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. }
            | Self::Write { path, .. }
            | Self::Format { path, .. }
            | Self::Safetensors { path, .. } => path,
        }
    }
}

type Result<T> = std::result::Result<T, TensorFileError>;

/// Every tensor of a safetensors file as f32 (F32, F16, BF16, F64). A tensor of another dtype is
/// an error unless `skip(name)` says it is not wanted (integer buffers such as `position_ids`).
pub fn read_safetensors(path: &Path, skip: impl Fn(&str) -> bool) -> Result<BTreeMap<String, RawTensor>> {
    let read = |source| TensorFileError::Read { path: path.to_path_buf(), source };
    // A FIFO or a device (`/dev/zero`) would be read until memory runs out.
    if !std::fs::metadata(path).map_err(read)?.is_file() {
        return Err(read(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file")));
    }
    let bytes = std::fs::read(path).map_err(read)?;
    let format = |message: String| TensorFileError::Format { path: path.to_path_buf(), message };
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|source| TensorFileError::Safetensors { path: path.to_path_buf(), source })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let d = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => d.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => d.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            _ if skip(&name) => continue,
            other => {
                return Err(format(format!("tensor `{name}` has dtype {other:?}; expected F32, F16, BF16 or F64")));
            }
        };
        tensors.insert(name, RawTensor { shape: view.shape().to_vec(), data });
    }
    Ok(tensors)
}

/// Every float tensor of a PyTorch pickle (`pytorch_model.bin`, `adapter_model.bin`) as f32,
/// through burn-store's reader; tensors `skip` names are left out.
pub fn read_pytorch(path: &Path, skip: impl Fn(&str) -> bool) -> Result<BTreeMap<String, RawTensor>> {
    if !path.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        return Err(TensorFileError::Read { path: path.to_path_buf(), source });
    }
    let format = |message: String| TensorFileError::Format { path: path.to_path_buf(), message };
    let reader = burn_store::pytorch::PytorchReader::new(path)
        .map_err(|e| format(format!("not a readable PyTorch file ({e})")))?;
    let mut tensors = BTreeMap::new();
    for (name, snapshot) in reader.into_tensors() {
        if skip(&name) {
            continue;
        }
        if !snapshot.dtype.is_float() {
            return Err(format(format!("tensor `{name}` has dtype {:?}; expected a float dtype", snapshot.dtype)));
        }
        let shape = snapshot.shape.to_vec();
        let data = snapshot
            .to_data()
            .map_err(|e| format(format!("tensor `{name}`: {e:?}")))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| format(format!("tensor `{name}`: {e:?}")))?;
        tensors.insert(name, RawTensor { shape, data });
    }
    Ok(tensors)
}

/// Writes `tensors` as an f32 safetensors file with `metadata`, atomically; returns its size.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, RawTensor>, metadata: &[(&str, &str)]) -> Result<u64> {
    let fail = |e: safetensors::SafeTensorError| TensorFileError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let bytes: Vec<(&String, Vec<u8>, &Vec<usize>)> =
        tensors.iter().map(|(k, t)| (k, t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), &t.shape)).collect();
    let views = bytes
        .iter()
        .map(|(k, b, shape)| TensorView::new(Dtype::F32, shape.to_vec(), b).map(|v| (k.to_string(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(fail)?;
    let metadata: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let serialized = safetensors::serialize(views, metadata).map_err(fail)?;
    write_atomic(path, &serialized)?;
    Ok(serialized.len() as u64)
}

/// Writes `bytes` to `path` through a synced temporary file beside it and a rename: a reader
/// sees the old file or the new one, never a torn one. A failed write removes its temporary.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file written piece by piece to a temporary beside `path` and renamed over it by
/// [`AtomicFile::commit`]: a reader sees the old file or the whole new one. Dropped without a
/// commit (an error, a panic), the temporary is removed.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp)
            .map_err(|source| TensorFileError::Write { path: path.to_path_buf(), source })?;
        live().push(tmp.clone());
        Ok(Self { path: path.to_path_buf(), tmp, file: Some(std::io::BufWriter::new(file)) })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(bytes),
            None => Err(std::io::Error::other("the file was already committed")),
        };
        result.map_err(|source| TensorFileError::Write { path: self.path.clone(), source })
    }

    /// Flushes, syncs and renames the temporary over the path, then syncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take();
        let result = (|| {
            let file = file.ok_or_else(|| std::io::Error::other("the file was already committed"))?;
            let file = file.into_inner().map_err(std::io::IntoInnerError::into_error)?;
            file.sync_all()?;
            std::fs::rename(&self.tmp, &self.path)?;
            // The rename is durable once the directory is synced: a failure there fails the
            // write (a file system that cannot sync a directory, EINVAL, has nothing to sync).
            if let Some(dir) = self.path.parent() {
                let dir = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?;
                match dir.sync_all() {
                    Err(e) if e.raw_os_error() != Some(22) => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })();
        result.map_err(|source| TensorFileError::Write { path: self.path.clone(), source })
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed, or committed and already renamed (then there is nothing to remove).
        let _ = std::fs::remove_file(&self.tmp);
        live().retain(|t| t != &self.tmp);
    }
}

/// The temporaries of the [`AtomicFile`]s not yet dropped.
fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static LIVE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the temporaries of every [`AtomicFile`] still open: for a process about to exit
/// without unwinding (a Ctrl-C handler's `exit`), which would leave `.NAME.tmp-PID` behind.
pub fn remove_temporaries() {
    for tmp in live().drain(..) {
        let _ = std::fs::remove_file(tmp);
    }
}

/// The largest small JSON file (`adapter_config.json`, `labels.json`) read: far above any real
/// one (a few KB), far below what would hurt a server that reads one on a client's request.
pub const SMALL_FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// A small text file whole, refusing what is not a regular file (a FIFO, `/dev/zero`, a
/// directory) and anything over `limit` bytes, without reading more than that.
///
/// # Errors
/// The open or read error, `InvalidData` for a file that is not regular, too large, or not UTF-8.
pub fn read_small_text(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(invalid(format!("larger than {limit} bytes: not a config this program writes or reads")));
    }
    String::from_utf8(bytes).map_err(|e| invalid(e.to_string()))
}
