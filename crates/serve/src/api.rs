//! The HTTP API's bodies: text-embeddings-inference's `/predict` request and answer (same
//! fields, same shapes, same error body), plus `adapter_id`, and the adapter API's.

use std::fmt::Formatter;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// One text, or a pair (`[CLS] a [SEP] b [SEP]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequence {
    Single(String),
    Pair(String, String),
}

/// TEI's `inputs`: `"text"`, `["text"]`, `["a", "b"]` (one pair), or a batch of those as lists:
/// `[["t1"], ["a", "b"], ...]`. A flat list is one input (a pair when it holds two strings), as
/// in TEI; a batch is a list of lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredictInput {
    Single(Sequence),
    Batch(Vec<Sequence>),
}

impl PredictInput {
    pub fn sequences(&self) -> Vec<&Sequence> {
        match self {
            Self::Single(s) => vec![s],
            Self::Batch(b) => b.iter().collect(),
        }
    }
}

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        const EXPECTED: &str = "a string, a pair of strings [string, string], or a batch of strings and pairs [[string], [string, string], ...]";
        fn sequence<E: de::Error>(mut list: Vec<String>, at: usize) -> Result<Sequence, E> {
            match list.len() {
                1 => Ok(Sequence::Single(list.remove(0))),
                2 => {
                    let b = list.remove(1);
                    Ok(Sequence::Pair(list.remove(0), b))
                }
                n => Err(E::custom(format!(
                    "inputs[{at}] holds {n} strings: each input is [text] or a pair [text, text_pair]"
                ))),
            }
        }
        /// What a JSON value is, for an error (`null`, `a number`, ...).
        fn kind(v: &serde_json::Value) -> &'static str {
            match v {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "a list",
                serde_json::Value::Object(_) => "an object",
            }
        }
        /// The strings of batch entry `inputs[at]`, naming the first that is not one.
        fn strings<E: de::Error>(v: serde_json::Value, at: usize) -> Result<Vec<String>, E> {
            let serde_json::Value::Array(items) = v else {
                return Err(E::custom(format!(
                    "inputs[{at}] is {}: in a batch each input is a list, [text] or [text, text_pair]",
                    kind(&v)
                )));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(j, item)| match item {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(E::custom(format!("inputs[{at}][{j}] is {}: expected a string", kind(&other)))),
                })
                .collect()
        }
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = PredictInput;

            fn expecting(&self, f: &mut Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PredictInput::Single(Sequence::Single(v.to_string())))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let Some(first) = seq.next_element::<serde_json::Value>()? else {
                    return Ok(PredictInput::Batch(Vec::new()));
                };
                match first {
                    // A flat list: one text or one pair.
                    serde_json::Value::String(a) => {
                        let b = match seq.next_element::<serde_json::Value>()? {
                            None => None,
                            Some(serde_json::Value::String(b)) => Some(b),
                            Some(other) => {
                                return Err(de::Error::custom(format!(
                                    "inputs[1] is {}: a flat list is one input, [text] or [text, text_pair]",
                                    kind(&other)
                                )));
                            }
                        };
                        if seq.next_element::<serde_json::Value>()?.is_some() {
                            return Err(de::Error::custom(
                                "inputs: a flat list is one input, a text or a pair [text, text_pair], and this one \
                                 holds more than 2 strings; send a batch as a list of lists: [[\"t1\"], [\"t2\"]]",
                            ));
                        }
                        Ok(PredictInput::Single(match b {
                            Some(b) => Sequence::Pair(a, b),
                            None => Sequence::Single(a),
                        }))
                    }
                    serde_json::Value::Array(_) => {
                        let mut batch = vec![sequence(strings(first, 0)?, 0)?];
                        while let Some(next) = seq.next_element::<serde_json::Value>()? {
                            let at = batch.len();
                            batch.push(sequence(strings(next, at)?, at)?);
                        }
                        Ok(PredictInput::Batch(batch))
                    }
                    other => Err(de::Error::custom(format!("inputs[0] is {}: expected {EXPECTED}", kind(&other)))),
                }
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

/// Which end of a text too long for the model is cut off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TruncationDirection {
    #[serde(alias = "Left", rename = "left")]
    Left,
    #[default]
    #[serde(alias = "Right", rename = "right")]
    Right,
}

/// `POST /predict`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub inputs: PredictInput,
    /// Cut texts longer than the model takes (else such a text is refused), as TEI's.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// Logits instead of probabilities.
    #[serde(default)]
    pub raw_scores: bool,
    /// The adapter to classify with (optional when one is loaded or `--default-adapter` is set).
    #[serde(default)]
    pub adapter_id: Option<String>,
    /// The Hugging Face inference clients' options (huggingface_hub's `text_classification`,
    /// huggingface.js): a body with `parameters` is answered as the Hugging Face Inference API
    /// answers, one list of classes per input (`[[...]]` for one text).
    #[serde(default)]
    pub parameters: Option<Parameters>,
}

/// `parameters` of the Hugging Face inference clients' text-classification request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// Only the `top_k` highest classes (at least 1); all of them when absent.
    #[serde(default)]
    pub top_k: Option<usize>,
    /// What turns the logits into scores; the adapter's task decides when absent (softmax for
    /// single-label classification, sigmoid for multi-label, none for regression).
    #[serde(default)]
    pub function_to_apply: Option<FunctionToApply>,
}

/// transformers' `ClassificationFunction`: `softmax`, `sigmoid` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionToApply {
    Softmax,
    Sigmoid,
    None,
}

impl FunctionToApply {
    pub fn apply(self, logits: &[f32]) -> Vec<f32> {
        match self {
            Self::Softmax => encoders::ProblemType::SingleLabelClassification.scores(logits),
            Self::Sigmoid => encoders::ProblemType::MultiLabelClassification.scores(logits),
            Self::None => logits.to_vec(),
        }
    }
}

/// `POST /rerank`: TEI's, with `adapter_id` (the adapter must have one output).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    pub query: String,
    pub texts: Vec<String>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// The logit instead of its sigmoid.
    #[serde(default)]
    pub raw_scores: bool,
    /// Each answer carries its text.
    #[serde(default)]
    pub return_text: bool,
    #[serde(default)]
    pub adapter_id: Option<String>,
}

/// One text's rank: where it was in `texts`, its score, and (with `return_text`) the text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

/// A string or a list of strings (`/tokenize`'s `inputs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum TextOrTexts {
    Single(String),
    Batch(Vec<String>),
}

/// `POST /tokenize`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub inputs: TextOrTexts,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    /// TEI's sentence-transformers prompt; this server has none, so only `null` is taken.
    #[serde(default)]
    pub prompt_name: Option<String>,
}

fn yes() -> bool {
    true
}

/// One token, as TEI's `SimpleToken`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

impl From<encoders::Token> for SimpleToken {
    fn from(t: encoders::Token) -> Self {
        Self { id: t.id, text: t.text, special: t.special, start: t.start, stop: t.stop }
    }
}

/// Token ids: one list, or a list of lists (`/decode`'s `ids`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a list of token ids or a list of such lists")]
pub enum Ids {
    Single(Vec<u32>),
    Batch(Vec<Vec<u32>>),
}

/// `POST /decode`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeRequest {
    pub ids: Ids,
    #[serde(default = "yes")]
    pub skip_special_tokens: bool,
}

/// One class and its score, as TEI's `Prediction`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    pub score: f32,
    pub label: String,
}

/// TEI's answer: a list of predictions for one input, a list of lists for a batch.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PredictResponse {
    Single(Vec<Prediction>),
    Batch(Vec<Vec<Prediction>>),
}

/// `POST /adapters`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// The name requests give as `adapter_id`.
    pub name: String,
    /// The adapter's directory on the server's machine (PEFT's files, and `labels.json`).
    pub path: String,
}

/// TEI's error kinds, which fix the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorType {
    Unhealthy,
    Backend,
    Overloaded,
    Validation,
    Tokenizer,
    Empty,
    /// No `Authorization: Bearer KEY` matching `--api-key` (401).
    Unauthorized,
}

/// TEI's error body: `{"error": "...", "error_type": "Validation"}`, with its status.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub error: String,
    pub error_type: ErrorType,
    #[serde(skip)]
    pub status: StatusCode,
}

impl ApiError {
    /// With TEI's status for the kind: 503, 424, 429, 422, 422, 400, 401.
    pub fn new(error_type: ErrorType, error: impl Into<String>) -> Self {
        let status = match error_type {
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Tokenizer | ErrorType::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Empty => StatusCode::BAD_REQUEST,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
        };
        Self { error: error.into(), error_type, status }
    }

    pub fn validation(error: impl Into<String>) -> Self {
        Self::new(ErrorType::Validation, error)
    }

    /// The same body under another status (404, 409, 413, 400 for what TEI has no kind for).
    pub fn with_status(self, status: StatusCode) -> Self {
        Self { status, ..self }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inputs(json: &str) -> Result<PredictInput, String> {
        serde_json::from_str::<PredictRequest>(&format!("{{\"inputs\": {json}}}"))
            .map(|r| r.inputs)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn inputs_read_as_tei_reads_them() {
        let s = |t: &str| Sequence::Single(t.into());
        let p = |a: &str, b: &str| Sequence::Pair(a.into(), b.into());
        assert_eq!(inputs(r#""a""#).unwrap(), PredictInput::Single(s("a")));
        assert_eq!(inputs(r#"["a"]"#).unwrap(), PredictInput::Single(s("a")));
        assert_eq!(inputs(r#"["a", "b"]"#).unwrap(), PredictInput::Single(p("a", "b")));
        assert_eq!(inputs(r#"[["a"], ["b", "c"]]"#).unwrap(), PredictInput::Batch(vec![s("a"), p("b", "c")]));
        assert_eq!(inputs("[]").unwrap(), PredictInput::Batch(vec![]));
        let e = inputs(r#"["a", "b", "c"]"#).unwrap_err();
        assert!(e.contains("more than 2 strings"), "{e}");
        let e = inputs(r#"[["a"], ["b", "c", "d"]]"#).unwrap_err();
        assert!(e.contains("inputs[1] holds 3 strings"), "{e}");
        assert!(inputs("3").unwrap_err().contains("a string, a pair"));
        assert!(inputs(r#"[["a"], "b"]"#).is_err());
    }

    #[test]
    fn unknown_fields_and_directions() {
        let e = serde_json::from_str::<PredictRequest>(r#"{"inputs": "a", "raw_score": true}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `raw_score`"), "{e}");
        let r: PredictRequest = serde_json::from_str(r#"{"inputs": "a", "truncation_direction": "Left"}"#).unwrap();
        assert_eq!(r.truncation_direction, TruncationDirection::Left);
        let r: PredictRequest = serde_json::from_str(r#"{"inputs": "a"}"#).unwrap();
        assert_eq!((r.truncate, r.truncation_direction, r.raw_scores), (None, TruncationDirection::Right, false));
    }

    #[test]
    fn errors_have_tei_statuses() {
        assert_eq!(ApiError::new(ErrorType::Overloaded, "x").status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ApiError::validation("x").status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ApiError::new(ErrorType::Empty, "x").status, StatusCode::BAD_REQUEST);
        let body = serde_json::to_value(ApiError::validation("bad")).unwrap();
        assert_eq!(body, serde_json::json!({"error": "bad", "error_type": "Validation"}));
    }
}
