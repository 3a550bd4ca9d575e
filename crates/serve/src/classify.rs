//! The routes that run the model: `POST /predict` (also `POST /` and `POST /invocations`, as
//! TEI serves a classifier) and `POST /rerank`. Both choose an adapter, tokenize on a blocking
//! thread, queue their rows for the batching thread and answer with TEI's timing headers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use burn::tensor::backend::Backend;
use encoders::Encoded;
use encoders::LabelSpace;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::adapters::{Served, names};
use crate::api::{
    ApiError, ErrorType, FunctionToApply, PredictInput, PredictRequest, PredictResponse, Prediction, Rank,
    RerankRequest, Sequence,
};
use crate::batcher::Job;
use crate::routes::{AppState, parse};
use crate::tokenization::{RowOptions, tokenize};

/// What TEI's timing and size headers report of one request.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    /// Characters of every text (a reranked query once per text, as TEI counts it).
    pub(crate) characters: usize,
    /// Tokens of every row, special tokens included.
    pub(crate) tokens: usize,
    pub(crate) tokenization: Duration,
    pub(crate) queue: Duration,
    pub(crate) inference: Duration,
}

impl Timings {
    /// TEI's headers: `x-compute-type`, `x-compute-time`, `x-compute-characters`,
    /// `x-compute-tokens`, `x-total-time`, `x-tokenization-time`, `x-queue-time`,
    /// `x-inference-time` (times in whole milliseconds).
    fn headers(&self, compute_type: &'static str, total: Duration) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        let ms = |d: Duration| d.as_millis().to_string();
        put("x-compute-type", compute_type.to_string());
        put("x-compute-time", ms(total));
        put("x-compute-characters", self.characters.to_string());
        put("x-compute-tokens", self.tokens.to_string());
        put("x-total-time", ms(total));
        put("x-tokenization-time", ms(self.tokenization));
        put("x-queue-time", ms(self.queue));
        put("x-inference-time", ms(self.inference));
        headers
    }
}

/// What a model route did: the adapter's name (for the metrics; `-` before it is known), and the
/// number of inputs, the answer and its timings, or the error.
type Outcome<T> = (String, Result<(usize, T, Timings), ApiError>);

/// Runs `work` under one of `--max-concurrent-requests`' permits (else a 429), counts it in the
/// metrics and answers it with TEI's headers.
async fn guarded<B: Backend, T: Serialize>(
    state: &Arc<AppState<B>>,
    work: impl Future<Output = Outcome<T>>,
) -> Response {
    let started = Instant::now();
    let (adapter, outcome) = match state.permits.clone().try_acquire_owned() {
        Ok(permit) => {
            let outcome = work.await;
            drop(permit);
            outcome
        }
        Err(_) => (
            "-".to_string(),
            Err(ApiError::new(
                ErrorType::Overloaded,
                format!(
                    "Model is overloaded: {} requests at once (--max-concurrent-requests)",
                    state.options.max_concurrent_requests
                ),
            )),
        ),
    };
    match outcome {
        Ok((inputs, answer, timings)) => {
            state.answered.fetch_add(1, Ordering::Relaxed);
            let took = started.elapsed();
            state.metrics.observe_request(&adapter, 200, None, inputs, took);
            let compute_type = if state.device_name.starts_with("cpu") { "cpu" } else { "gpu" };
            (timings.headers(compute_type, took), Json(answer)).into_response()
        }
        Err(e) => {
            let kind = format!("{:?}", e.error_type);
            state.metrics.observe_request(&adapter, e.status.as_u16(), Some(&kind), 0, started.elapsed());
            e.into_response()
        }
    }
}

/// `POST /predict` (and `POST /`, `POST /invocations`).
pub(crate) async fn predict<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    guarded(&state, predict_checked(&state, body)).await
}

async fn predict_checked<B: Backend>(
    state: &Arc<AppState<B>>,
    body: Result<Bytes, BytesRejection>,
) -> Outcome<PredictResponse> {
    let request: PredictRequest = match parse(body, state.options.payload_limit) {
        Ok(r) => r,
        Err(e) => return ("-".into(), Err(e)),
    };
    let served = match choose_adapter(state, request.adapter_id.as_deref()) {
        Ok(s) => s,
        // Not the requested name: a client's made-up names must not grow the metrics' labels.
        Err(e) => return ("-".into(), Err(e)),
    };
    let name = served.name.clone();
    (name, run_predict(state, served, request).await)
}

pub(crate) fn choose_adapter<B: Backend>(
    state: &AppState<B>,
    requested: Option<&str>,
) -> Result<Arc<Served<B>>, ApiError> {
    let adapters = state.adapters.read().unwrap_or_else(|p| p.into_inner());
    let loaded = names(&adapters);
    match requested.or(state.options.default_adapter.as_deref()) {
        Some(name) => adapters.get(name).cloned().ok_or_else(|| {
            let which = if requested.is_some() { "`adapter_id`" } else { "the default adapter" };
            ApiError::validation(format!("{which} {name:?} is not loaded (adapters: {loaded})"))
        }),
        None => match adapters.values().next() {
            Some(only) if adapters.len() == 1 => Ok(only.clone()),
            None => Err(ApiError::new(ErrorType::Unhealthy, "no adapter is loaded: POST /adapters loads one")),
            Some(_) => Err(ApiError::validation(format!(
                "`adapter_id` is required: {} adapters are loaded ({loaded}) and no --default-adapter is set",
                adapters.len()
            ))),
        },
    }
}

/// How a row's logits become its scores.
#[derive(Debug, Clone, Copy)]
enum Scoring {
    /// The adapter's task: softmax, each class's sigmoid, or the regression value.
    Task,
    /// The logits (`raw_scores`).
    Raw,
    /// `parameters.function_to_apply`.
    Function(FunctionToApply),
}

async fn run_predict<B: Backend>(
    state: &Arc<AppState<B>>,
    served: Arc<Served<B>>,
    request: PredictRequest,
) -> Result<(usize, PredictResponse, Timings), ApiError> {
    // The Hugging Face inference clients send `parameters` (if only `{}`) and read one list of
    // classes per input, `[[...]]` for one text, as the Inference API answers; TEI's body gets
    // TEI's shape.
    let per_input = request.parameters.is_some();
    let parameters = request.parameters.unwrap_or_default();
    if parameters.top_k == Some(0) {
        return Err(ApiError::validation("`parameters.top_k` must be at least 1"));
    }
    let scoring = match (request.raw_scores, parameters.function_to_apply) {
        (true, Some(f)) if f != FunctionToApply::None => {
            return Err(ApiError::validation(format!(
                "`raw_scores: true` asks for the logits and `parameters.function_to_apply` for {}: send one",
                serde_json::to_string(&f).unwrap_or_default()
            )));
        }
        (true, _) => Scoring::Raw,
        (false, Some(f)) => Scoring::Function(f),
        (false, None) => Scoring::Task,
    };
    let single = matches!(request.inputs, PredictInput::Single(_)) && !per_input;
    let sequences: Vec<Sequence> = match request.inputs {
        PredictInput::Single(s) => vec![s],
        PredictInput::Batch(b) => b,
    };
    let rows = Rows::Sequences(sequences);
    let options = RowOptions {
        truncate: request.truncate.unwrap_or(false),
        direction: request.truncation_direction,
        field: "inputs",
        single,
    };
    let n = rows.len();
    let ((logits, _), timings) = score_rows(state, &served, rows, options).await?;
    let mut answers: Vec<Vec<Prediction>> =
        logits.iter().map(|row| predictions(row, &served.labels, scoring)).collect();
    if let Some(k) = parameters.top_k {
        answers.iter_mut().for_each(|a| a.truncate(k));
    }
    let answer = if single {
        PredictResponse::Single(answers.pop().unwrap_or_default())
    } else {
        PredictResponse::Batch(answers)
    };
    Ok((n, answer, timings))
}

/// `POST /rerank`: every `(query, text)` pair scored by a one-output adapter, highest first.
pub(crate) async fn rerank<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    guarded(&state, rerank_checked(&state, body)).await
}

async fn rerank_checked<B: Backend>(
    state: &Arc<AppState<B>>,
    body: Result<Bytes, BytesRejection>,
) -> Outcome<Vec<Rank>> {
    let request: RerankRequest = match parse(body, state.options.payload_limit) {
        Ok(r) => r,
        Err(e) => return ("-".into(), Err(e)),
    };
    if request.texts.is_empty() {
        return ("-".into(), Err(ApiError::new(ErrorType::Empty, "`texts` cannot be empty")));
    }
    let served = match choose_adapter(state, request.adapter_id.as_deref()) {
        Ok(s) => s,
        Err(e) => return ("-".into(), Err(e)),
    };
    let name = served.name.clone();
    let labels = served.weights.num_labels;
    if labels != 1 {
        let error = ApiError::validation(format!(
            "adapter {name:?} has {labels} labels ({}): /rerank needs a reranker, an adapter with one output \
             (num_labels 1, trained on (query, text) pairs with a numeric label); POST /predict classifies",
            served.labels.problem_type.name()
        ));
        return (name, Err(error));
    }
    let RerankRequest { query, texts, truncate, truncation_direction, raw_scores, return_text, .. } = request;
    let n = texts.len();
    let options = RowOptions {
        truncate: truncate.unwrap_or(false),
        direction: truncation_direction,
        field: "texts",
        single: false,
    };
    let (logits, timings) = match score_rows(state, &served, Rows::Rerank { query, texts }, options).await {
        Ok(done) => done,
        Err(e) => return (name, Err(e)),
    };
    let (logits, Rows::Rerank { texts, .. }) = logits else {
        return (name, Err(ApiError::new(ErrorType::Backend, "the rows came back as another kind")));
    };
    let mut texts = texts.into_iter();
    let mut ranks: Vec<Rank> = logits
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let logit = row.first().copied().unwrap_or(f32::NAN);
            let score = if raw_scores { logit } else { FunctionToApply::Sigmoid.apply(&[logit])[0] };
            let text = texts.next().filter(|_| return_text);
            Rank { index, text, score }
        })
        .collect();
    // Highest first; equal scores keep their order in `texts`.
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    (name, Ok((n, ranks, timings)))
}

/// The rows of one request: texts and pairs, or a query paired with each text (held once).
pub(crate) enum Rows {
    Sequences(Vec<Sequence>),
    Rerank { query: String, texts: Vec<String> },
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Self::Sequences(s) => s.len(),
            Self::Rerank { texts, .. } => texts.len(),
        }
    }

    fn pairs(&self) -> Vec<(&str, Option<&str>)> {
        match self {
            Self::Sequences(s) => s
                .iter()
                .map(|s| match s {
                    Sequence::Single(a) => (a.as_str(), None),
                    Sequence::Pair(a, b) => (a.as_str(), Some(b.as_str())),
                })
                .collect(),
            Self::Rerank { query, texts } => texts.iter().map(|t| (query.as_str(), Some(t.as_str()))).collect(),
        }
    }

    /// Characters in all, a query once per text (TEI's `x-compute-characters`).
    fn characters(&self) -> usize {
        match self {
            Self::Rerank { query, texts } => {
                query.chars().count() * texts.len() + texts.iter().map(|t| t.chars().count()).sum::<usize>()
            }
            Self::Sequences(_) => {
                self.pairs().iter().map(|(a, b)| a.chars().count() + b.map_or(0, |b| b.chars().count())).sum()
            }
        }
    }
}

/// Each row's logits (checked finite) and the request's timings, and the rows back.
async fn score_rows<B: Backend>(
    state: &Arc<AppState<B>>,
    served: &Served<B>,
    rows: Rows,
    options: RowOptions,
) -> Result<((Vec<Vec<f32>>, Rows), Timings), ApiError> {
    let n = rows.len();
    if n == 0 {
        return Err(ApiError::new(ErrorType::Empty, format!("`{}` cannot be empty", options.field)));
    }
    let max = state.options.max_client_batch_size;
    if n > max {
        return Err(ApiError::validation(format!(
            "batch size {n} > maximum allowed batch size {max} (--max-client-batch-size)"
        )));
    }
    let tokenizers = state.tokenizers.clone();
    let limit = state.max_input_length;
    let started = Instant::now();
    let (encoded, rows) = tokio::task::spawn_blocking(move || {
        let encoded = tokenize(&tokenizers, &rows.pairs(), options, limit);
        (encoded, rows)
    })
    .await
    .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization stopped: {e}")))?;
    let encoded = encoded?;
    let mut timings = Timings {
        characters: rows.characters(),
        tokens: encoded.iter().map(Encoded::len).sum(),
        tokenization: started.elapsed(),
        ..Timings::default()
    };

    let (reply, answer) = oneshot::channel();
    let queued = encoded.into_iter().map(|e| (e, served.weights.clone())).collect();
    if !state.queue.submit(Job { rows: queued, reply, queued: Instant::now() }) {
        return Err(ApiError::new(ErrorType::Unhealthy, "the server is stopping"));
    }
    let answer = answer
        .await
        .map_err(|_| ApiError::new(ErrorType::Backend, "the batching thread stopped"))?
        .map_err(|error| ApiError::new(ErrorType::Backend, error.to_string()))?;
    for (i, row) in answer.logits.iter().enumerate() {
        if !row.iter().all(|v| v.is_finite()) {
            return Err(ApiError::new(
                ErrorType::Backend,
                format!("adapter {}: non-finite logits for {}[{i}]", served.name, options.field),
            ));
        }
    }
    timings.queue = answer.queue;
    timings.inference = answer.inference;
    Ok(((answer.logits, rows), timings))
}

/// TEI's answer for one row, every class highest first: softmax probabilities (or the logits
/// with `raw_scores`). Multi-label adapters give each class's sigmoid (or logit); regression
/// adapters the value itself; `function_to_apply` what it names.
fn predictions(row: &[f32], labels: &LabelSpace, scoring: Scoring) -> Vec<Prediction> {
    let name = |i: usize| labels.names.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}"));
    let scores = match scoring {
        Scoring::Raw => row.to_vec(),
        Scoring::Task => labels.problem_type.scores(row),
        Scoring::Function(f) => f.apply(row),
    };
    let mut out: Vec<Prediction> =
        scores.into_iter().enumerate().map(|(i, score)| Prediction { score, label: name(i) }).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use encoders::ProblemType;

    #[test]
    fn predictions_per_task() {
        let classes = LabelSpace {
            problem_type: ProblemType::SingleLabelClassification,
            names: vec!["neg".into(), "pos".into()],
        };
        let p = predictions(&[0.0, 1.0], &classes, Scoring::Task);
        assert_eq!(p[0].label, "pos");
        assert!((p[0].score - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        assert!((p[0].score + p[1].score - 1.0).abs() < 1e-6);
        let raw = predictions(&[0.0, 1.0], &classes, Scoring::Raw);
        assert_eq!((raw[0].score, raw[1].score), (1.0, 0.0));
        let multi = LabelSpace { problem_type: ProblemType::MultiLabelClassification, names: vec![] };
        let m = predictions(&[2.0, -1.0, 0.5], &multi, Scoring::Task);
        assert_eq!(m.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), ["LABEL_0", "LABEL_2", "LABEL_1"]);
        assert!((m[1].score - 1.0 / (1.0 + (-0.5f32).exp())).abs() < 1e-6);
        let regression = LabelSpace::unnamed(1);
        assert_eq!(regression.problem_type, ProblemType::Regression);
        assert_eq!(
            predictions(&[3.25], &regression, Scoring::Task),
            vec![Prediction { score: 3.25, label: "LABEL_0".into() }]
        );
    }

    #[test]
    fn function_to_apply_overrides_the_task() {
        let classes = LabelSpace {
            problem_type: ProblemType::SingleLabelClassification,
            names: vec!["neg".into(), "pos".into()],
        };
        let sigmoid = predictions(&[0.0, 1.0], &classes, Scoring::Function(FunctionToApply::Sigmoid));
        assert!((sigmoid[0].score - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        assert!((sigmoid[1].score - 0.5).abs() < 1e-6, "each class alone, not normalised");
        let none = predictions(&[0.0, 1.0], &classes, Scoring::Function(FunctionToApply::None));
        assert_eq!((none[0].score, none[1].score), (1.0, 0.0));
        let regression = LabelSpace::unnamed(1);
        let softmax = predictions(&[3.25], &regression, Scoring::Function(FunctionToApply::Softmax));
        assert_eq!(softmax[0].score, 1.0);
    }

    #[test]
    fn timing_headers_are_teis() {
        let timings = Timings {
            characters: 12,
            tokens: 7,
            tokenization: Duration::from_micros(2500),
            queue: Duration::from_millis(3),
            inference: Duration::from_millis(40),
        };
        let headers = timings.headers("cpu", Duration::from_millis(51));
        let get = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(get("x-compute-type"), "cpu");
        assert_eq!(get("x-compute-characters"), "12");
        assert_eq!(get("x-compute-tokens"), "7");
        assert_eq!(get("x-tokenization-time"), "2");
        assert_eq!((get("x-queue-time"), get("x-inference-time")), ("3".into(), "40".into()));
        assert_eq!((get("x-total-time"), get("x-compute-time")), ("51".into(), "51".into()));
    }
}
