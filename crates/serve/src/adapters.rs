//! The adapters being served: the registry's entry, loading one (a directory or a Hub id, with
//! every check a lone load makes), and the adapter API (`GET`/`POST /adapters`,
//! `DELETE /adapters/{name}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use burn::tensor::backend::Backend;
use encoders::AutoModel;
use encoders::LabelSpace;
use lora_adapter::AdapterWeights;
use lora_adapter::peft::Adapter;
use serde_json::json;

use crate::api::{ApiError, ErrorType, LoadRequest};
use crate::routes::{AppState, parse};

/// One adapter being served.
pub(crate) struct Served<B: Backend> {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) weights: Arc<AdapterWeights<B>>,
    pub(crate) labels: LabelSpace,
}

/// The name `--adapter DIR` gets without `NAME=`: the directory's name, or its parent's when it
/// is a run's `adapter/` (`runs/imdb/adapter` is `imdb`).
pub fn adapter_name(dir: &Path) -> String {
    let last = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if last == "adapter"
        && let Some(parent) = dir.parent().and_then(Path::file_name)
    {
        return parent.to_string_lossy().into_owned();
    }
    last
}

/// Why an adapter cannot be served; each keeps its source (the reader's, the loader's).
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapter name {0:?}: 1 to 128 characters among letters, digits, '-', '_' and '.'")]
    Name(String),
    /// The Hub id could not be fetched.
    #[error(transparent)]
    Fetch(#[from] encoders::EncoderError),
    /// The files are not a PEFT adapter of this model.
    #[error(transparent)]
    Adapter(#[from] lora_adapter::LoraError),
    /// Its `labels.json` is unreadable or disagrees with its head.
    #[error(transparent)]
    Labels(#[from] encoders::LabelsError),
}

pub(crate) fn check_name(name: &str) -> Result<(), AdapterError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(AdapterError::Name(name.to_string())) }
}

/// Reads the adapter in `dir` (a directory, or a Hub id) and puts it on `model` with every check
/// a lone load makes.
pub(crate) fn load_adapter<B: Backend>(
    model: &AutoModel<B>,
    name: &str,
    dir: &Path,
    device: &B::Device,
) -> Result<Served<B>, AdapterError> {
    check_name(name)?;
    // A Hub id is fetched into the cache (huggingface_hub's variables: HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE).
    let dir = &encoders::adapter_dir(&dir.to_string_lossy(), &encoders::HubOptions::from_env())?;
    let adapter = Adapter::read(dir)?;
    let weights = AdapterWeights::new(model, adapter, device)?;
    let labels = LabelSpace::for_adapter(dir, weights.num_labels)?;
    Ok(Served { name: name.to_string(), path: dir.to_path_buf(), weights: Arc::new(weights), labels })
}

pub(crate) fn names<B: Backend>(adapters: &BTreeMap<String, Arc<Served<B>>>) -> String {
    if adapters.is_empty() {
        return "none".into();
    }
    adapters.keys().cloned().collect::<Vec<_>>().join(", ")
}

pub(crate) fn adapter_json<B: Backend>(served: &Served<B>) -> serde_json::Value {
    let config = &served.weights.config;
    json!({
        "name": served.name,
        "path": served.path.display().to_string(),
        "problem_type": served.labels.problem_type.to_string(),
        "num_labels": served.weights.num_labels,
        "labels": (0..served.weights.num_labels)
            .map(|i| served.labels.names.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")))
            .collect::<Vec<_>>(),
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": config.target_modules,
        "modules_to_save": config.modules_to_save,
        "bytes": served.weights.bytes,
    })
}

pub(crate) async fn list_adapters<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Json<serde_json::Value> {
    let adapters: Vec<serde_json::Value> =
        state.adapters.read().unwrap_or_else(|p| p.into_inner()).values().map(|s| adapter_json(s)).collect();
    Json(json!({ "adapters": adapters }))
}

pub(crate) async fn load<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: LoadRequest = match parse(body, state.options.payload_limit) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(error) = check_name(&request.name) {
        return ApiError::validation(error.to_string()).into_response();
    }
    let taken =
        |state: &AppState<B>| state.adapters.read().unwrap_or_else(|p| p.into_inner()).contains_key(&request.name);
    let conflict = || {
        ApiError::validation(format!(
            "an adapter named {:?} is loaded; DELETE /adapters/{} first",
            request.name, request.name
        ))
        .with_status(StatusCode::CONFLICT)
    };
    if taken(&state) {
        return conflict().into_response();
    }
    let dir = match &state.options.adapter_root {
        Some(root) => match under_root(root, &request.path) {
            Ok(dir) => dir,
            Err(message) => {
                return ApiError::validation(format!("`path` {:?}: {message}", request.path))
                    .with_status(StatusCode::FORBIDDEN)
                    .into_response();
            }
        },
        None => PathBuf::from(&request.path),
    };
    let (model, device) = (state.model.clone(), state.device.clone());
    let name = request.name.clone();
    let loaded = tokio::task::spawn_blocking(move || load_adapter(&model, &name, &dir, &device)).await;
    let served = match loaded {
        Ok(Ok(served)) => Arc::new(served),
        Ok(Err(error)) => {
            return ApiError::validation(format!("adapter {:?}: {error}", request.path)).into_response();
        }
        Err(e) => return ApiError::new(ErrorType::Backend, format!("loading stopped: {e}")).into_response(),
    };
    let mut adapters = state.adapters.write().unwrap_or_else(|p| p.into_inner());
    if adapters.contains_key(&request.name) {
        return conflict().into_response();
    }
    adapters.insert(request.name.clone(), served.clone());
    state.metrics.adapters.set(adapters.len() as i64);
    drop(adapters);
    say!("adapter {} loaded from {}", request.name, request.path);
    (StatusCode::CREATED, Json(adapter_json(&served))).into_response()
}

pub(crate) async fn unload<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let mut adapters = state.adapters.write().unwrap_or_else(|p| p.into_inner());
    // Requests already queued hold the adapter's tensors and are answered with it.
    match adapters.remove(&name) {
        Some(_) => {
            state.metrics.adapters.set(adapters.len() as i64);
            drop(adapters);
            say!("adapter {name} unloaded");
            Json(json!({ "unloaded": name })).into_response()
        }
        None => ApiError::validation(format!("no adapter named {name:?} is loaded (adapters: {})", names(&adapters)))
            .with_status(StatusCode::NOT_FOUND)
            .into_response(),
    }
}

/// The adapter directory `path` names under `--adapter-root` (`root` already resolved): a
/// relative path is taken from the root; symlinks and `..` are resolved before the check, so
/// the directory must really be inside it. Hub ids are refused: with a root, adapters are local.
fn under_root(root: &Path, path: &str) -> Result<PathBuf, RootError> {
    let given = Path::new(path);
    let joined = if given.is_absolute() { given.to_path_buf() } else { root.join(given) };
    let resolved = joined.canonicalize().map_err(|source| RootError::Unresolved { root: root.into(), source })?;
    if !resolved.starts_with(root) {
        return Err(RootError::Outside { root: root.into(), resolved });
    }
    if !resolved.is_dir() {
        return Err(RootError::NotADirectory);
    }
    Ok(resolved)
}

/// Why `POST /adapters` refuses a `path` under `--adapter-root` (said after the path).
#[derive(Debug, thiserror::Error)]
enum RootError {
    #[error("{source}; with --adapter-root, adapters load from directories under {}", root.display())]
    Unresolved {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("is outside --adapter-root {} (resolved: {})", root.display(), resolved.display())]
    Outside { root: PathBuf, resolved: PathBuf },
    #[error("is not a directory")]
    NotADirectory,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adapter_names() {
        assert_eq!(adapter_name(Path::new("runs/imdb/adapter")), "imdb");
        assert_eq!(adapter_name(Path::new("adapters/sst2")), "sst2");
        assert!(check_name("sst2-v1.0_a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("../x").is_err());
    }
}
