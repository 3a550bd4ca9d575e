//! The routes: what each path and method answers, and the checks every request passes
//! (`--api-key`, JSON bodies, `--request-timeout`, CORS) before its handler; the state the
//! handlers share.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use burn::tensor::backend::Backend;
use encoders::AutoModel;
use lora_adapter::AdapterWeights;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::adapters::{Served, adapter_json, list_adapters, load, unload};
use crate::api::{ApiError, ErrorType};
use crate::batcher::Queue;
use crate::classify::{predict, rerank};
use crate::metrics::Metrics;
use crate::server::{ServeError, ServeOptions};
use crate::tokenization::Tokenizers;
use crate::tokens::{decode, tokenize};

/// What every handler reads: the model, its tokenizers, the adapters, the batching queue and
/// the limits.
pub(crate) struct AppState<B: Backend> {
    pub(crate) model: Arc<AutoModel<B>>,
    pub(crate) device: B::Device,
    pub(crate) tokenizers: Arc<Tokenizers>,
    pub(crate) max_input_length: usize,
    pub(crate) adapters: RwLock<BTreeMap<String, Arc<Served<B>>>>,
    pub(crate) queue: Queue<AdapterWeights<B>>,
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

/// The routes every client may reach without `--api-key`'s header (TEI's public routes, and
/// the API's description).
const PUBLIC: [&str; 5] = ["/health", "/", "/ping", "/docs", "/api-doc/openapi.json"];

pub(crate) fn router<B: Backend>(state: Arc<AppState<B>>) -> Router {
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
