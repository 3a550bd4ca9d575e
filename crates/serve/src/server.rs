//! Start-up and shutdown: the options checked, the start's adapters loaded, the batching thread
//! and the state built, the connections served (hyper, with timeouts and a connection limit)
//! until Ctrl-C or SIGTERM, then drained. The routes are in [`crate::routes`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use burn::tensor::backend::Backend;
use encoders::{AutoModel, EncoderTokenizer};
use tokio::sync::Semaphore;

use crate::adapters::{AdapterError, Served, load_adapter, names};
use crate::batcher::{BatchLimits, MixedModel, Queue};
use crate::metrics::Metrics;
use crate::routes::{AppState, check_origins, router};
use crate::tokenization::Tokenizers;

/// What the server runs over: the base model with its tokenizer, and how to name it in `/info`.
pub struct Base<B: Backend> {
    pub model: AutoModel<B>,
    /// What the model computes in (`float32`, `bfloat16`), for `/info` and the start line.
    pub dtype: String,
    /// Truncating at the model's positions (`max_length`).
    pub tokenizer: EncoderTokenizer,
    pub model_id: String,
    /// The family's `model_type` (`bert`, `modernbert`).
    pub model_type: String,
    pub device: B::Device,
    /// `cpu`, `cuda:0`.
    pub device_name: String,
}

/// The server's flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// Past this many predict requests at once, a 429 (TEI's `--max-concurrent-requests`).
    pub max_concurrent_requests: usize,
    /// Inputs in one request (TEI's `--max-client-batch-size`).
    pub max_client_batch_size: usize,
    /// A request body larger than this many bytes is refused (TEI's `--payload-limit`).
    pub payload_limit: usize,
    pub batch: BatchLimits,
    /// The adapter of requests that name none.
    pub default_adapter: Option<String>,
    /// Whether `POST /adapters` and `DELETE /adapters/{name}` are served.
    pub adapter_api: bool,
    /// TEI's `--api-key`: every route but `/health` requires `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// `POST /adapters` loads only directories under this one (symlinks resolved first).
    pub adapter_root: Option<PathBuf>,
    /// A connection that sends no complete request head for this long is closed: a new one
    /// that sends nothing (or too slowly), and a kept-alive one left idle.
    pub idle_timeout: Duration,
    /// A request not answered within this long gets a 504 (`None`: no deadline).
    pub request_timeout: Option<Duration>,
    /// Connections held at once; past it, new ones wait in the kernel's backlog (`None`: the
    /// process's open-file limit less 64, so that accepting never fails for want of files).
    pub max_connections: Option<usize>,
    /// TEI's `--cors-allow-origin`: origins whose pages may call the API (`*`: any); none: no
    /// CORS headers.
    pub cors_allow_origin: Option<Vec<String>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            payload_limit: 2_000_000,
            batch: BatchLimits { max_batch_tokens: 16_384, max_wait: Duration::from_millis(2), pad_to_multiple_of: 1 },
            default_adapter: None,
            adapter_api: true,
            api_key: None,
            adapter_root: None,
            idle_timeout: Duration::from_secs(30),
            request_timeout: None,
            max_connections: None,
            cors_allow_origin: None,
        }
    }
}

/// Why the server did not start, or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("adapter {name} ({path}): {source}")]
    Adapter { name: String, path: PathBuf, source: Box<AdapterError> },
    #[error("--adapter {0} is given twice")]
    DuplicateAdapter(String),
    #[error("--adapter-root {path}: {message}")]
    AdapterRoot { path: PathBuf, message: String },
    #[error(
        "--pad-to-multiple-of {pad} pads an input of the model's {positions} tokens to {padded}, past its positions, so such requests would all fail; give a divisor of {positions} (8, 64)"
    )]
    PadPastPositions { pad: usize, positions: usize, padded: usize },
    #[error(
        "--max-connections {given} is more than this process may open files ({limit}, less 64 for the model and the logs)"
    )]
    TooManyConnections { given: usize, limit: usize },
    #[error("--api-key is empty: give the key clients must send as `Authorization: Bearer KEY`")]
    EmptyApiKey,
    #[error("--cors-allow-origin {0:?}: expected `*` or an origin, scheme://host[:port] (e.g. http://localhost:3000)")]
    Origin(String),
    #[error("--default-adapter {name} is not among the adapters ({loaded})")]
    UnknownDefault { name: String, loaded: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the model's tokenizer cannot be set up for serving: {0}")]
    Tokenizer(#[source] encoders::EncoderError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the batching thread stopped with a panic")]
    Batcher,
    #[error("stopped with connections {0}: their requests were not answered")]
    Drain(&'static str),
}

/// How long a stopping server waits for the connections it holds.
const DRAIN: Duration = Duration::from_secs(30);

/// Runs the server until Ctrl-C or SIGTERM: it then stops accepting connections, answers the
/// requests it holds, and returns.
pub fn serve<B: Backend>(
    base: Base<B>,
    adapters: &[(String, PathBuf)],
    options: ServeOptions,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let model = Arc::new(base.model);
    let loaded = load_adapters(&model, adapters, &base.device)?;
    let options = checked_options(options, &loaded, base.tokenizer.max_length())?;
    metrics.adapters.set(loaded.len() as i64);
    let tokenizers = Tokenizers::new(&base.tokenizer).map_err(ServeError::Tokenizer)?;
    let mixed = MixedModel {
        model: model.clone(),
        pad_id: base.tokenizer.pad_id(),
        pad_to_multiple_of: options.batch.pad_to_multiple_of,
        device: base.device.clone(),
    };
    let (queue, batcher) = Queue::start(mixed, options.batch, metrics.clone())?;
    let state = Arc::new(AppState {
        model_type: base.model_type,
        model,
        device: base.device,
        max_input_length: base.tokenizer.max_length(),
        tokenizers: Arc::new(tokenizers),
        adapters: RwLock::new(loaded),
        queue,
        permits: Arc::new(Semaphore::new(options.max_concurrent_requests.max(1))),
        tokenizing: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
        metrics,
        options: options.clone(),
        model_id: base.model_id,
        dtype: base.dtype,
        device_name: base.device_name,
        answered: AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("lora-serve").build()?;
    let result = runtime.block_on(run(state.clone(), &options));
    let answered = state.answered.load(Ordering::Relaxed);
    // The queue's last sender goes with the state: the batching thread ends.
    drop(state);
    runtime.shutdown_timeout(Duration::from_secs(5));
    // A failed or cut-short server exits at once; else the batching thread, which has answered
    // everything queued, is joined.
    result?;
    batcher.join().map_err(|_| ServeError::Batcher)?;
    say!("stopped after answering {answered} predict requests");
    Ok(())
}

/// The start's adapters (`--adapter NAME=DIR`), each loaded with every check a lone load makes,
/// and said.
fn load_adapters<B: Backend>(
    model: &Arc<AutoModel<B>>,
    adapters: &[(String, PathBuf)],
    device: &B::Device,
) -> Result<BTreeMap<String, Arc<Served<B>>>, ServeError> {
    let mut loaded = BTreeMap::new();
    for (name, dir) in adapters {
        if loaded.contains_key(name) {
            return Err(ServeError::DuplicateAdapter(name.clone()));
        }
        let served = load_adapter(model, name, dir, device).map_err(|source| ServeError::Adapter {
            name: name.clone(),
            path: dir.clone(),
            source: Box::new(source),
        })?;
        say!(
            "adapter {name}: {} ({}, {} labels, r {}, {:.1} MB)",
            dir.display(),
            served.labels.problem_type,
            served.weights.num_labels,
            served.weights.config.r,
            served.weights.bytes as f64 / 1e6
        );
        loaded.insert(name.clone(), Arc::new(served));
    }
    Ok(loaded)
}

/// The options checked against the machine and the model (padding within the positions, the
/// connection limit within the open-file limit, the key, the origins, the adapter root), with
/// what they leave unset filled in: one adapter at start is the default.
fn checked_options<B: Backend>(
    options: ServeOptions,
    loaded: &BTreeMap<String, Arc<Served<B>>>,
    positions: usize,
) -> Result<ServeOptions, ServeError> {
    if let Some(name) = &options.default_adapter
        && !loaded.contains_key(name)
    {
        return Err(ServeError::UnknownDefault { name: name.clone(), loaded: names(loaded) });
    }
    let mut options = options;
    let padded = encoders::padded_length(positions, options.batch.pad_to_multiple_of);
    if padded > positions {
        return Err(ServeError::PadPastPositions { pad: options.batch.pad_to_multiple_of, positions, padded });
    }
    let files = open_file_limit().map(|n| n.saturating_sub(64).max(1));
    match (options.max_connections, files) {
        (Some(given), Some(limit)) if given > limit => return Err(ServeError::TooManyConnections { given, limit }),
        (None, limit) => options.max_connections = Some(limit.unwrap_or(1000).min(10_000)),
        _ => {}
    }
    if options.api_key.as_deref().is_some_and(str::is_empty) {
        return Err(ServeError::EmptyApiKey);
    }
    check_origins(options.cors_allow_origin.as_deref().unwrap_or_default())?;
    if let Some(root) = &options.adapter_root {
        let resolved =
            root.canonicalize().map_err(|e| ServeError::AdapterRoot { path: root.clone(), message: e.to_string() })?;
        if !resolved.is_dir() {
            return Err(ServeError::AdapterRoot { path: root.clone(), message: "not a directory".into() });
        }
        options.adapter_root = Some(resolved);
    }
    // One adapter at start is the default: loading a second later keeps requests without
    // `adapter_id` working.
    if options.default_adapter.is_none() && loaded.len() == 1 {
        options.default_adapter = loaded.keys().next().cloned();
    }
    Ok(options)
}

/// Serves on `options`' address until a signal, then drains: what was accepted is answered,
/// however long the queue takes, as long as answers keep coming; once none has come for
/// `DRAIN` (a client that never sends its body, a stuck connection), or at a second signal,
/// what is left is cut.
async fn run<B: Backend>(state: Arc<AppState<B>>, options: &ServeOptions) -> Result<(), ServeError> {
    let addr = format!("{}:{}", options.host, options.port);
    let listener =
        tokio::net::TcpListener::bind(&addr).await.map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
    let local: SocketAddr = listener.local_addr()?;
    say!(
        "listening on http://{local} ({} on {}, {}; adapters: {})",
        state.model_id,
        state.device_name,
        state.dtype,
        names(&state.adapters.read().unwrap_or_else(|p| p.into_inner()))
    );
    let app = router(state.clone());
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let held = state.clone();
    let signal = async move {
        signal_received().await;
        let in_flight = held.options.max_concurrent_requests.max(1) - held.permits.available_permits();
        say!(
            "shutting down: no new connections; answering the {in_flight} predict request(s) in flight, for as \
             long as answers keep coming (a connection with nothing answered for 30 s is cut; again to quit now)"
        );
        let _ = stopping.send(true);
    };
    let server = serve_connections(listener, app, options, signal);
    // After the signal: what was accepted is answered, however long the queue takes, as
    // long as answers keep coming; once none has come for DRAIN (a client that never sends
    // its body, a stuck connection), or at a second signal, what is left is cut.
    let progress = state.clone();
    let drain_limit = async move {
        let _ = stopped.wait_for(|s| *s).await;
        let mut last = (progress.answered.load(Ordering::Relaxed), Instant::now());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = signal_received() => return "still open at a second signal",
            }
            let answered = progress.answered.load(Ordering::Relaxed);
            if answered != last.0 {
                last = (answered, Instant::now());
            } else if last.1.elapsed() >= DRAIN {
                return "still open with nothing answered for 30 s";
            }
        }
    };
    tokio::select! {
        served = server => served?,
        why = drain_limit => return Err(ServeError::Drain(why)),
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn signal_received() {
    let ctrl_c = async {
        // A handler that cannot be installed never fires (rather than stopping the server at once).
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the connections held
/// (each told to finish its request and close). axum's own loop has no timeouts: this one gives
/// hyper a timer, so that a connection that sends no complete request head within
/// `idle_timeout` (new, slow, or kept alive and idle) is closed, and holds at most
/// `max_connections` at once (the rest wait in the kernel's backlog), so idle clients cannot
/// hold every file the process may open.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    options: &ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(Semaphore::new(options.max_connections.unwrap_or(1000).max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of files, or a connection reset before it was accepted: try again soon.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.idle_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The soft limit on open files (`/proc/self/limits` on Linux; `None` elsewhere or unreadable).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
