//! The HTTP server (axum on tokio): routes, request checks, the adapter registry, back-pressure
//! and graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use burn::tensor::backend::Backend;
use encoders::{AutoModel, EncoderTokenizer, Truncation};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::adapters::{Served, adapter_json, list_adapters, load, load_adapter, names, unload};
use crate::api::{ApiError, ErrorType};
use crate::batcher::{BatchLimits, Queue};
use crate::classify::{predict, rerank};
use crate::metrics::Metrics;
use crate::tokens::{decode, tokenize};

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
    #[error("adapter {name} ({path}): {message}")]
    Adapter { name: String, path: PathBuf, message: String },
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
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the batching thread stopped with a panic")]
    Batcher,
    #[error("stopped with connections {0}: their requests were not answered")]
    Drain(&'static str),
}

/// How long a stopping server waits for the connections it holds.
const DRAIN: Duration = Duration::from_secs(30);

/// Tokenizers for each `truncate` / `truncation_direction`.
pub(crate) struct Tokenizers {
    /// `truncate: false`: cuts at one token past the model's, so that a text too long to
    /// answer is read only that far (in pieces past the tokenizer's window) before it is refused:
    /// a refused text costs no more than an accepted one.
    pub(crate) probe: EncoderTokenizer,
    /// Never cuts: counts the tokens of a refused text that is short enough to read whole, for
    /// the error, and answers `/tokenize` and `/decode`.
    pub(crate) whole: EncoderTokenizer,
    pub(crate) right: EncoderTokenizer,
    pub(crate) left: EncoderTokenizer,
}

pub(crate) struct AppState<B: Backend> {
    pub(crate) model: Arc<AutoModel<B>>,
    pub(crate) device: B::Device,
    pub(crate) tokenizers: Arc<Tokenizers>,
    pub(crate) max_input_length: usize,
    pub(crate) adapters: RwLock<BTreeMap<String, Arc<Served<B>>>>,
    pub(crate) queue: Queue<B>,
    pub(crate) permits: Arc<Semaphore>,
    /// `/tokenize` requests tokenizing at once (one a core): each may build a large answer.
    pub(crate) tokenizing: Arc<Semaphore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) options: ServeOptions,
    pub(crate) model_id: String,
    pub(crate) model_type: String,
    pub(crate) dtype: String,
    pub(crate) device_name: String,
    pub(crate) answered: AtomicU64,
}

/// Runs the server until Ctrl-C or SIGTERM: it then stops accepting connections, answers the
/// requests it holds, and returns.
pub fn serve<B: Backend>(
    base: Base<B>,
    adapters: &[(String, PathBuf)],
    options: ServeOptions,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let model = Arc::new(base.model);
    let mut loaded = BTreeMap::new();
    for (name, dir) in adapters {
        if loaded.contains_key(name) {
            return Err(ServeError::DuplicateAdapter(name.clone()));
        }
        let served = load_adapter(&model, name, dir, &base.device).map_err(|message| ServeError::Adapter {
            name: name.clone(),
            path: dir.clone(),
            message,
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
    if let Some(name) = &options.default_adapter
        && !loaded.contains_key(name)
    {
        return Err(ServeError::UnknownDefault { name: name.clone(), loaded: names(&loaded) });
    }
    // One adapter at start is the default: loading a second later keeps requests without
    // `adapter_id` working.
    let mut options = options;
    let positions = base.tokenizer.max_length();
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
    if options.default_adapter.is_none() && loaded.len() == 1 {
        options.default_adapter = loaded.keys().next().cloned();
    }
    metrics.adapters.set(loaded.len() as i64);
    let cut = |truncation, at| {
        base.tokenizer.truncating_at(truncation, at).map_err(|e| ServeError::Io(std::io::Error::other(e)))
    };
    let tokenizers = Tokenizers {
        probe: cut(Truncation::Right, positions + 1)?,
        whole: cut(Truncation::None, positions)?,
        right: cut(Truncation::Right, positions)?,
        left: cut(Truncation::Left, positions)?,
    };
    let (queue, batcher) =
        Queue::start(model.clone(), base.tokenizer.pad_id(), options.batch, base.device.clone(), metrics.clone())?;
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
    let result = runtime.block_on(async {
        let addr = format!("{}:{}", options.host, options.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
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
        let server = serve_connections(listener, app, &options, signal);
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
        Ok::<(), ServeError>(())
    });
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

/// The routes every client may reach without `--api-key`'s header (TEI's public routes, and
/// the API's description).
const PUBLIC: [&str; 5] = ["/health", "/", "/ping", "/docs", "/api-doc/openapi.json"];

fn router<B: Backend>(state: Arc<AppState<B>>) -> Router {
    let limit = state.options.payload_limit;
    let mut router = Router::new()
        // TEI serves a classifier's `/predict` at `/` too (the Hugging Face inference clients
        // post there) and at SageMaker's `/invocations`; `GET /` and `/ping` are health checks.
        .route("/", post(predict::<B>).get(health::<B>))
        .route("/invocations", post(predict::<B>))
        .route("/predict", post(predict::<B>))
        .route("/rerank", post(rerank::<B>))
        .route("/tokenize", post(tokenize::<B>))
        .route("/decode", post(decode::<B>))
        .route("/health", get(health::<B>))
        .route("/ping", get(health::<B>))
        .route("/docs", get(crate::openapi::page))
        .route("/api-doc/openapi.json", get(crate::openapi::document::<B>))
        .route("/info", get(info::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/adapters", get(list_adapters::<B>));
    if state.options.adapter_api {
        router = router.route("/adapters", post(load::<B>)).route("/adapters/{name}", delete(unload::<B>));
    }
    let router = router
        .method_not_allowed_fallback(|| async {
            ApiError::validation(
                "this route does not take that method (POST /predict, /rerank, /tokenize, /decode; GET /health, \
                 /info, /metrics, /docs; the whole API: GET /api-doc/openapi.json)",
            )
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .fallback(|| async {
            ApiError::validation(
                "no such route: the API is POST /predict, /rerank, /tokenize, /decode; GET /health, /info, \
                 /metrics, /adapters, /docs (GET /api-doc/openapi.json describes every route)",
            )
            .with_status(StatusCode::NOT_FOUND)
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(json_bodies))
        .layer(axum::middleware::from_fn_with_state(state.clone(), deadline::<B>))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize::<B>));
    // Outermost: a browser's preflight is answered before the key is asked for.
    match cors(state.options.cors_allow_origin.as_deref()) {
        Some(layer) => router.layer(layer).with_state(state),
        None => router.with_state(state),
    }
}

/// `--cors-allow-origin`: the origins whose pages may call the API from a browser (`*`: any).
/// None given: no CORS headers, so browsers keep other sites' pages from reading answers or
/// sending JSON (this server also loads adapters from paths; TEI allows every origin).
fn cors(origins: Option<&[String]>) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = origins.filter(|o| !o.is_empty())?;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked at start (`check_origins`): every one is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .allow_origin(allow),
    )
}

/// Refuses an origin that is not `*` nor `scheme://host[:port]`, naming it.
pub(crate) fn check_origins(origins: &[String]) -> Result<(), ServeError> {
    for origin in origins {
        let ok = origin == "*"
            || (origin.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                    && !rest.is_empty()
                    && !rest.contains(['/', ' ', '?', '#'])
            }) && axum::http::HeaderValue::from_str(origin).is_ok());
        if !ok {
            return Err(ServeError::Origin(origin.clone()));
        }
    }
    Ok(())
}

/// A request with a body must say it is JSON (`Content-Type: application/json`), as TEI's
/// routes require: else a 415. This also keeps a web page's plain form posts (which need no
/// CORS permission) away from the API.
async fn json_bodies(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{Method, header};
    if request.method() == Method::POST {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || (v.starts_with("application/") && v.ends_with("+json")));
        if !json {
            return ApiError::validation("the request body must be JSON, sent with `Content-Type: application/json`")
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .into_response();
        }
    }
    next.run(request).await
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

/// With `--request-timeout`, a request not answered in time gets a 504 with TEI's error body
/// (its batch, if queued, still runs; the answer is dropped).
async fn deadline<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(limit) = state.options.request_timeout else { return next.run(request).await };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(ErrorType::Backend, format!("no answer within --request-timeout {} s", limit.as_secs_f64()))
                .with_status(StatusCode::GATEWAY_TIMEOUT)
                .into_response()
        }
    }
}

/// With `--api-key`, every request but `GET /health` must carry `Authorization: Bearer KEY`,
/// else a 401; the keys are compared as SHA-256 digests in constant time (`subtle`), so neither
/// the key's bytes nor its length show in the time an answer takes.
async fn authorize<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let open = request.method() == axum::http::Method::GET && PUBLIC.contains(&request.uri().path());
    if let Some(key) = &state.options.api_key
        && !open
    {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110).
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
            .unwrap_or("");
        let (given, key) = (sha2::Sha256::digest(given.as_bytes()), sha2::Sha256::digest(key.as_bytes()));
        let same: bool = given.as_slice().ct_eq(key.as_slice()).into();
        if !same {
            return ApiError::new(
                ErrorType::Unauthorized,
                "this server needs `Authorization: Bearer KEY` with its --api-key (only GET /health is open)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// 200 while the batching thread runs (the model and the start's adapters are loaded before
/// the server listens); 503 once it has stopped.
async fn health<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Response {
    if state.queue.is_running() {
        StatusCode::OK.into_response()
    } else {
        ApiError::new(ErrorType::Unhealthy, "the batching thread has stopped").into_response()
    }
}

/// The body as JSON of type `T`, or the error naming what is wrong: 413 over the size limit,
/// 400 for text that is not JSON, 422 for JSON that is not a `T`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::validation(format!(
                "the request body is larger than the limit of {limit} bytes (--payload-limit)"
            ))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::validation(format!("cannot read the request body: {e}")).with_status(StatusCode::BAD_REQUEST)
        }
    })?;
    // serde reads a struct from a list by position: `["text"]` would be a request. Every
    // request of this API is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::validation(
            "the request body is a JSON list; it must be an object, e.g. {\"inputs\": \"text\"}",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::validation(format!("the request body: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::validation(format!("the request body is not valid JSON: {e}"))
                    .with_status(StatusCode::BAD_REQUEST)
            }
        }
    })
}

async fn info<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Json<serde_json::Value> {
    let adapters: Vec<serde_json::Value> =
        state.adapters.read().unwrap_or_else(|p| p.into_inner()).values().map(|s| adapter_json(s)).collect();
    let o = &state.options;
    Json(json!({
        "model_id": state.model_id,
        "model_type": state.model_type,
        "model_dtype": state.dtype,
        "device": state.device_name,
        "max_input_length": state.max_input_length,
        "max_concurrent_requests": o.max_concurrent_requests,
        "max_client_batch_size": o.max_client_batch_size,
        "max_batch_tokens": o.batch.max_batch_tokens,
        "max_wait_ms": o.batch.max_wait.as_secs_f64() * 1e3,
        "payload_limit": o.payload_limit,
        "default_adapter": o.default_adapter,
        "adapter_api": o.adapter_api,
        "version": env!("CARGO_PKG_VERSION"),
        "adapters": adapters,
    }))
}

async fn metrics<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
