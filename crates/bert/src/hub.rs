//! Finding a model's files: a local directory, or a Hugging Face Hub model id through
//! `hf-hub` and its cache (`HF_HOME`, `HF_ENDPOINT`; `HF_HUB_OFFLINE=1` reads the cache only).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::checkpoint::Checkpoint;
use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::model::BertForSequenceClassification;
use crate::tokenizer::BertTokenizer;
use crate::weights::LoadReport;

/// Weight files in the order transformers prefers them.
const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
/// Tokenizer files a model directory may carry; the first two are alternatives.
const TOKENIZER_FILES: [&str; 4] = ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"];

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
}

impl HubOptions {
    pub fn from_env() -> Self {
        Self {
            cache_dir: Cache::from_env().path().clone(),
            endpoint: std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into()),
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| is_truthy(&v)),
        }
    }

    /// Fetches one file of a repository: from the cache if there, else (online) downloaded
    /// into the cache.
    pub fn fetch(&self, repo: &Repo, file: &str) -> std::result::Result<PathBuf, String> {
        let cache = Cache::new(self.cache_dir.clone());
        if let Some(path) = cache.repo(repo.clone()).get(file) {
            return Ok(path);
        }
        if self.offline {
            return Err(format!(
                "{file} is not in the local Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
                self.cache_dir.display()
            ));
        }
        let api = ApiBuilder::from_cache(cache)
            .with_endpoint(self.endpoint.clone())
            .with_progress(false)
            .with_retries(0)
            .build()
            .map_err(|e| format!("cannot start the Hub client: {e}"))?;
        api.repo(repo.clone()).download(file).map_err(|e| format!("cannot fetch {file} from {}: {e}", self.endpoint))
    }
}

fn is_truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
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
            return Err(BertError::NotFound {
                path: path.to_path_buf(),
                what: "a model directory holding config.json and model.safetensors".into(),
            });
        }
        Self::from_hub(name, hub)
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(BertError::NotFound { path: config, what: "a Hugging Face config.json".into() });
        }
        let weights =
            WEIGHT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()).ok_or_else(|| BertError::NotFound {
                path: dir.join(WEIGHT_FILES[0]),
                what: format!("model weights ({})", WEIGHT_FILES.join(" or ")),
            })?;
        let tokenizer_files = TOKENIZER_FILES.iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
        Ok(Self { name: dir.display().to_string(), config, weights, tokenizer_files })
    }

    /// Fetches from the Hub, or its cache: a file already cached is never downloaded again.
    pub fn from_hub(model_id: &str, hub: &HubOptions) -> Result<Self> {
        let hub_error = |message: String| BertError::Hub { model_id: model_id.to_string(), message };
        let repo = Repo::new(model_id.to_string(), RepoType::Model);
        let fetch = |file: &str| hub.fetch(&repo, file);
        let config = fetch("config.json").map_err(hub_error)?;
        let mut weights = Err(String::new());
        for file in WEIGHT_FILES {
            weights = fetch(file);
            if weights.is_ok() {
                break;
            }
        }
        let weights = weights.map_err(hub_error)?;
        let tokenizer_files = TOKENIZER_FILES.iter().filter_map(|f| fetch(f).ok()).collect();
        Ok(Self { name: model_id.to_string(), config, weights, tokenizer_files })
    }

    /// `tokenizer.json`, else `vocab.txt`.
    pub fn tokenizer(&self) -> Option<&Path> {
        let find = |name: &str| self.tokenizer_files.iter().find(|p| p.file_name().is_some_and(|f| f == name));
        find("tokenizer.json").or_else(|| find("vocab.txt")).map(PathBuf::as_path)
    }
}

/// A loaded classification model with everything that came with it.
pub struct Pretrained<B: Backend> {
    pub model: BertForSequenceClassification<B>,
    pub config: BertConfig,
    pub files: ModelFiles,
    pub report: LoadReport,
}

/// Loads a model directory or Hub id as `BertForSequenceClassification`.
pub fn load_pretrained<B: Backend>(name: &str, num_labels: Option<usize>, device: &B::Device) -> Result<Pretrained<B>> {
    load_pretrained_with(name, num_labels, &HubOptions::from_env(), device)
}

pub fn load_pretrained_with<B: Backend>(
    name: &str,
    num_labels: Option<usize>,
    hub: &HubOptions,
    device: &B::Device,
) -> Result<Pretrained<B>> {
    load_pretrained_configured(name, hub, device, |config| {
        if let Some(n) = num_labels {
            config.num_labels = Some(n);
        }
    })
}

/// Loads with `configure` applied to `config.json` first, as `from_pretrained(name, **kwargs)`
/// overrides config attributes (dropout, `num_labels`).
pub fn load_pretrained_configured<B: Backend>(
    name: &str,
    hub: &HubOptions,
    device: &B::Device,
    configure: impl FnOnce(&mut BertConfig),
) -> Result<Pretrained<B>> {
    let files = ModelFiles::resolve_with(name, hub)?;
    let mut config = BertConfig::from_file(&files.config)?;
    configure(&mut config);
    config.validate().map_err(|message| BertError::Config { path: files.config.clone(), message })?;
    let checkpoint = Checkpoint::read(&files.weights)?;
    let (model, report) = BertForSequenceClassification::from_checkpoint(&config, checkpoint, device)?;
    Ok(Pretrained { model, config, files, report })
}

impl<B: Backend> Pretrained<B> {
    /// The tokenizer shipped with the model, truncating at `max_length`, capped at the model's
    /// `max_position_embeddings` (a longer sequence has no position embedding).
    pub fn tokenizer(&self, max_length: usize) -> Result<BertTokenizer> {
        let max_length = max_length.min(self.config.max_position_embeddings);
        let path = self.files.tokenizer().ok_or_else(|| BertError::NotFound {
            path: self.files.config.with_file_name("tokenizer.json"),
            what: "a tokenizer (tokenizer.json or vocab.txt)".into(),
        })?;
        let tokenizer = BertTokenizer::from_file(path, max_length)?;
        // An id past the embedding table would fail deep inside the backend: refuse here.
        if tokenizer.vocab_size() > self.config.vocab_size {
            return Err(BertError::Tokenizer {
                path: path.to_path_buf(),
                message: format!(
                    "it has {} tokens but the model's vocab_size is {} ({}): tokenizer and model do not belong together",
                    tokenizer.vocab_size(),
                    self.config.vocab_size,
                    self.files.config.display()
                ),
            });
        }
        Ok(tokenizer)
    }
}
