//! Finding a model's files: a local directory, or a Hugging Face Hub model id through
//! `hf-hub` and its cache (`HF_HOME`, `HF_ENDPOINT`; `HF_HUB_OFFLINE=1` reads the cache only).
//!
//! hf-hub's blocking client has no timeouts: an endpoint that accepts the connection and never
//! answers would hang a run forever. Each download here runs on a worker thread watched for
//! progress; no byte for `HF_HUB_DOWNLOAD_TIMEOUT` seconds (huggingface_hub's variable and
//! default, 10) abandons the attempt, and a bounded number of attempts (timeouts, connection
//! failures and server errors are retried; a missing file is not) ends in an error naming the
//! endpoint and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use hf_hub::api::Progress;
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::checkpoint::Checkpoint;
use crate::error::{EncoderError, FetchError, Result};
use crate::labels::LabelSpace;
use crate::model_config::ModelConfig;
use crate::registry::AutoModel;
use crate::tokenizer::EncoderTokenizer;
use crate::weights::{LoadReport, Weights};

/// Weight files in the order transformers prefers them.
const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
/// Tokenizer files a model directory may carry (the first three are what this crate reads; the
/// rest travel with a merged model so that transformers' slow tokenizers find theirs too).
const TOKENIZER_FILES: [&str; 9] = [
    "tokenizer.json",
    "vocab.txt",
    "spm.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
];

/// The files of one model, wherever they came from.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user named: a directory or a Hub id.
    pub name: String,
    pub config: PathBuf,
    pub weights: PathBuf,
    /// Every tokenizer file present (`tokenizer.json`, `vocab.txt`, ...).
    pub tokenizer_files: Vec<PathBuf>,
}

/// Where and how the Hub is reached; [`HubOptions::from_env`] reads the variables
/// `huggingface_hub` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct HubOptions {
    /// The cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `$HF_ENDPOINT`, default `https://huggingface.co`.
    pub endpoint: String,
    /// `$HF_HUB_OFFLINE`: read the cache only, never the network.
    pub offline: bool,
    /// `$HF_HUB_DOWNLOAD_TIMEOUT` (seconds, default 10): an attempt that receives nothing for
    /// this long is abandoned.
    pub timeout: Duration,
    /// Attempts per file before giving up.
    pub attempts: usize,
}

/// huggingface_hub's `HF_HUB_DOWNLOAD_TIMEOUT` default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HubOptions {
    pub fn from_env() -> Self {
        let timeout = std::env::var("HF_HUB_DOWNLOAD_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        Self {
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| is_truthy(&v)),
            timeout,
            ..Self::at(Cache::from_env().path().clone(), endpoint)
        }
    }

    /// The Hub at `endpoint` with its cache in `cache_dir`, online, default timeout and attempts.
    pub fn at(cache_dir: impl Into<PathBuf>, endpoint: impl Into<String>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            endpoint: endpoint.into(),
            offline: false,
            timeout: DEFAULT_TIMEOUT,
            attempts: 3,
        }
    }

    /// Fetches one file of a repository: from the cache if there, else (online) downloaded
    /// into the cache, with the timeout and retries above.
    pub fn fetch(&self, repo: &Repo, file: &str) -> std::result::Result<PathBuf, FetchError> {
        let cache = Cache::new(self.cache_dir.clone());
        if let Some(path) = cache.repo(repo.clone()).get(file) {
            return Ok(path);
        }
        if self.offline {
            return Err(FetchError::NotCached { file: file.to_string(), cache: self.cache_dir.clone() });
        }
        let attempts = self.attempts.max(1);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
            match self.download(repo, file) {
                Ok(path) => return Ok(path),
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Retry(error)) => last = Some(error),
            }
        }
        let last = last.unwrap_or_else(|| unreachable!("at least one attempt was made and failed"));
        Err(FetchError::GaveUp { last: Box::new(last), attempts })
    }

    /// One attempt, on a worker thread that is abandoned if it stalls.
    fn download(&self, repo: &Repo, file: &str) -> std::result::Result<PathBuf, Attempt> {
        let (file_name, endpoint) = (file.to_string(), self.endpoint.clone());
        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_progress(false)
            .with_retries(0)
            .build()
            .map_err(|source| {
                Attempt::Final(FetchError::Api { file: file_name.clone(), endpoint: endpoint.clone(), source })
            })?;
        let watch = Watch { start: Instant::now(), last: Arc::new(AtomicU64::new(0)) };
        let (started, last) = (watch.start, watch.last.clone());
        let (tx, rx) = mpsc::channel();
        let (repo, name) = (repo.clone(), file.to_string());
        std::thread::spawn(move || {
            let _ = tx.send(api.repo(repo).download_with_progress(&name, watch));
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(path)) => return Ok(path),
                Ok(Err(e)) => return Err(Attempt::of(e, file_name, endpoint)),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Attempt::Retry(FetchError::Stopped { file: file_name, endpoint }));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let idle = started.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                    if idle >= self.timeout {
                        let seconds = self.timeout.as_secs_f64();
                        return Err(Attempt::Retry(FetchError::Stalled { file: file_name, endpoint, seconds }));
                    }
                }
            }
        }
    }
}

/// How an attempt failed: worth another try (timeouts, connection failures, server errors) or
/// not (a missing file, a refused token, a cache that cannot be written).
enum Attempt {
    Retry(FetchError),
    Final(FetchError),
}

impl Attempt {
    fn of(source: ApiError, file: String, endpoint: String) -> Self {
        let (missing, transient) = match &source {
            ApiError::RequestError(e) => match e.as_ref() {
                ureq::Error::Status(code, _) => (*code == 404, *code >= 500 || *code == 429),
                ureq::Error::Transport(_) => (false, true),
            },
            _ => (false, false),
        };
        if missing {
            return Self::Final(FetchError::NotOnHub { file, endpoint });
        }
        let error = FetchError::Api { file, endpoint, source };
        if transient { Self::Retry(error) } else { Self::Final(error) }
    }
}

/// The time of the last byte received, for the watchdog: hf-hub reports progress per chunk.
struct Watch {
    start: Instant,
    /// Milliseconds from `start` to the last progress.
    last: Arc<AtomicU64>,
}

impl Watch {
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl Progress for Watch {
    fn init(&mut self, _size: usize, _filename: &str) {
        self.touch();
    }

    fn update(&mut self, _size: usize) {
        self.touch();
    }

    fn finish(&mut self) {
        self.touch();
    }
}

fn is_truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// The directory of a PEFT adapter: `name` itself if it is a directory, else a Hub repository
/// id whose `adapter_config.json`, `adapter_model.safetensors` (or `.bin`) and, if it has one,
/// `labels.json` are fetched into the cache (`PeftModel.from_pretrained(model, "owner/name")`).
pub fn adapter_dir(name: &str, hub: &HubOptions) -> Result<PathBuf> {
    let path = Path::new(name);
    let looks_like_path = name.starts_with(['.', '/', '~']) || name.contains('\\') || name.split('/').count() != 2;
    if path.is_dir() || path.exists() || looks_like_path {
        return Ok(path.to_path_buf());
    }
    let hub_error = |source: FetchError| EncoderError::Hub { model_id: name.to_string(), source };
    let repo = Repo::new(name.to_string(), RepoType::Model);
    let config = hub.fetch(&repo, "adapter_config.json").map_err(hub_error)?;
    match hub.fetch(&repo, "adapter_model.safetensors") {
        Ok(_) => {}
        Err(FetchError::NotOnHub { .. }) => {
            hub.fetch(&repo, "adapter_model.bin").map_err(hub_error)?;
        }
        Err(e) => return Err(hub_error(e)),
    }
    // Optional: absent from the repository, or (offline) never cached because it was absent.
    match hub.fetch(&repo, "labels.json") {
        Ok(_) | Err(FetchError::NotOnHub { .. } | FetchError::NotCached { .. }) => {}
        Err(e) => return Err(hub_error(e)),
    }
    Ok(config.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf))
}

impl ModelFiles {
    /// A local directory if `name` is one, else a Hub model id (with [`HubOptions::from_env`]).
    pub fn resolve(name: &str) -> Result<Self> {
        Self::resolve_with(name, &HubOptions::from_env())
    }

    pub fn resolve_with(name: &str, hub: &HubOptions) -> Result<Self> {
        let path = Path::new(name);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        let looks_like_path = name.starts_with(['.', '/', '~']) || name.contains('\\') || name.split('/').count() > 2;
        if path.exists() || looks_like_path || name.is_empty() {
            return Err(EncoderError::NotFound {
                path: path.to_path_buf(),
                what: "a model directory holding config.json and model.safetensors".into(),
            });
        }
        Self::from_hub(name, hub)
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(EncoderError::NotFound { path: config, what: "a Hugging Face config.json".into() });
        }
        let weights =
            WEIGHT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()).ok_or_else(|| EncoderError::NotFound {
                path: dir.join(WEIGHT_FILES[0]),
                what: format!("model weights ({})", WEIGHT_FILES.join(" or ")),
            })?;
        let tokenizer_files = TOKENIZER_FILES.iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
        Ok(Self { name: dir.display().to_string(), config, weights, tokenizer_files })
    }

    /// Fetches from the Hub, or its cache: a file already cached is never downloaded again.
    pub fn from_hub(model_id: &str, hub: &HubOptions) -> Result<Self> {
        let hub_error = |source: FetchError| EncoderError::Hub { model_id: model_id.to_string(), source };
        let repo = Repo::new(model_id.to_string(), RepoType::Model);
        let fetch = |file: &str| hub.fetch(&repo, file);
        let config = fetch("config.json").map_err(hub_error)?;
        let mut weights = fetch(WEIGHT_FILES[0]);
        for file in &WEIGHT_FILES[1..] {
            if weights.is_ok() {
                break;
            }
            weights = fetch(file);
        }
        let weights = weights.map_err(hub_error)?;
        let tokenizer_files = TOKENIZER_FILES.iter().filter_map(|f| fetch(f).ok()).collect();
        Ok(Self { name: model_id.to_string(), config, weights, tokenizer_files })
    }

    /// `tokenizer.json`, else `vocab.txt`, else DeBERTa's `spm.model`.
    pub fn tokenizer(&self) -> Option<&Path> {
        let find = |name: &str| self.tokenizer_files.iter().find(|p| p.file_name().is_some_and(|f| f == name));
        find("tokenizer.json").or_else(|| find("vocab.txt")).or_else(|| find("spm.model")).map(PathBuf::as_path)
    }
}

/// A loaded classification model with everything that came with it.
pub struct Pretrained<B: Backend> {
    pub model: AutoModel<B>,
    pub config: ModelConfig,
    pub files: ModelFiles,
    pub report: LoadReport,
}

/// How [`from_pretrained`] loads: transformers' `from_pretrained` keyword arguments.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub hub: HubOptions,
    /// The head to build (the task's labels); `None`: the one `config.json` describes.
    pub head: Option<LabelSpace>,
    /// A checkpoint whose classifier has another number of labels: refused (false) or its
    /// output layer initialised anew (true), as `ignore_mismatched_sizes=True`.
    pub ignore_mismatched_sizes: bool,
    /// Config attributes set before the model is built (`from_pretrained(name, key=value)`:
    /// dropouts, `num_labels`); a key the family's config lacks is an error.
    pub config: serde_json::Map<String, serde_json::Value>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { hub: HubOptions::from_env(), head: None, ignore_mismatched_sizes: false, config: Default::default() }
    }
}

impl LoadOptions {
    /// The defaults with a head of `n` labels (`from_pretrained(name, num_labels=n)`).
    pub fn num_labels(n: usize) -> Self {
        let mut options = Self::default();
        options.config.insert("num_labels".into(), n.into());
        options
    }
}

/// Loads a model directory or Hub id as its family's `...ForSequenceClassification`: a missing
/// classification head is initialised as transformers does (and listed in the report); any
/// other missing, unexpected or mis-shaped tensor is an error naming it.
pub fn from_pretrained<B: Backend>(name: &str, options: &LoadOptions, device: &B::Device) -> Result<Pretrained<B>> {
    let files = ModelFiles::resolve_with(name, &options.hub)?;
    let mut config = ModelConfig::from_file_with(&files.config, &options.config)?;
    if let Some(head) = &options.head {
        config.set_head(head);
    }
    config.get().validate().map_err(|source| EncoderError::Config { path: files.config.clone(), source })?;
    let checkpoint = Checkpoint::read(&files.weights, &config.family, &crate::registry::families())?;
    let (model, report) = Weights::build_from_checkpoint(
        checkpoint,
        config.get().initializer_range(),
        config.family.head,
        options.ignore_mismatched_sizes,
        device,
        |w| AutoModel::load(w, &config.parsed),
    )?;
    Ok(Pretrained { model, config, files, report })
}

/// A model of `config` with every weight drawn as transformers initialises it.
pub fn random<B: Backend>(config: &ModelConfig, device: &B::Device) -> AutoModel<B> {
    Weights::build_random(config.get().initializer_range(), device, |w| AutoModel::load(w, &config.parsed))
}

impl<B: Backend> Pretrained<B> {
    /// The tokenizer shipped with the model, truncating at `max_length`, capped at the positions
    /// a text may fill (`max_position_embeddings`, less RoBERTa's padding offset): a longer
    /// sequence has no position embedding.
    pub fn tokenizer(&self, max_length: usize) -> Result<EncoderTokenizer> {
        let max_length = max_length.min(self.config.max_text_positions());
        let path = self.files.tokenizer().ok_or_else(|| EncoderError::NotFound {
            path: self.files.config.with_file_name("tokenizer.json"),
            what: "a tokenizer (tokenizer.json, vocab.txt or spm.model)".into(),
        })?;
        let tokenizer = EncoderTokenizer::from_file(path, max_length)?;
        // An id past the embedding table would fail deep inside the backend: refuse here.
        if tokenizer.vocab_size() > self.config.vocab_size() {
            let message = format!(
                "it has {} tokens but the model's vocab_size is {} ({}): tokenizer and model do not belong together",
                tokenizer.vocab_size(),
                self.config.vocab_size(),
                self.files.config.display()
            );
            return Err(EncoderError::Tokenizer { path: path.to_path_buf(), source: message.into() });
        }
        Ok(tokenizer)
    }

    /// What does not fit between this model and `tokenizer` (from [`Self::tokenizer`]) without
    /// making tokenization fail: a tokenizer model the family's checkpoints never ship (a
    /// WordPiece vocabulary under a RoBERTa `config.json`), a padding id other than the one
    /// position ids count after (RoBERTa's `pad_token_id`). Said, not refused: some models do
    /// pair a family with another tokenizer (klue/roberta-base ships a WordPiece one).
    pub fn tokenizer_warnings(&self, tokenizer: &EncoderTokenizer) -> Vec<String> {
        let family = &self.config.family;
        let path = self.files.tokenizer().map_or_else(|| "the tokenizer".to_string(), |p| p.display().to_string());
        let config = self.files.config.display();
        let mut warnings = Vec::new();
        if !family.tokenizer_models.contains(&tokenizer.model_type()) {
            warnings.push(format!(
                "{path} is a {} tokenizer, but {config} is a {} model, whose checkpoints ship {} tokenizers: check that the tokenizer and the weights belong together",
                tokenizer.model_type(),
                family.model_type,
                family.tokenizer_models.join(" or ")
            ));
        }
        if let Some(padding_idx) = self.config.get().padding_idx()
            && padding_idx != tokenizer.pad_id() as usize
        {
            warnings.push(format!(
                "{path} pads with token id {}, but {config} has pad_token_id {padding_idx}, after which {} counts position ids: the tokenizer and the weights do not look like one model's",
                tokenizer.pad_id(),
                family.model_type
            ));
        }
        warnings
    }
}
