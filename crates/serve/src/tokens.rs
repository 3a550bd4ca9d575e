//! `POST /tokenize` and `POST /decode`, as TEI's: how clients count tokens and check what
//! truncation would cut, with the served model's own tokenizer.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use burn::tensor::backend::Backend;

use crate::api::{ApiError, DecodeRequest, ErrorType, Ids, SimpleToken, TextOrTexts, TokenizeRequest};
use crate::routes::{AppState, parse};

/// A list of at most `--max-client-batch-size` items, not empty.
fn check_count(n: usize, field: &str, max: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::new(ErrorType::Empty, format!("`{field}` cannot be empty")));
    }
    if n > max {
        return Err(ApiError::validation(format!(
            "batch size {n} > maximum allowed batch size {max} (--max-client-batch-size)"
        )));
    }
    Ok(())
}

/// Every token of each input, whatever the model's length (one list per input, also for one):
/// `[[{"id", "text", "special", "start", "stop"}]]`.
pub(crate) async fn tokenize<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<Vec<SimpleToken>>>, ApiError> {
    let request: TokenizeRequest = parse(body, state.options.payload_limit)?;
    if let Some(name) = request.prompt_name {
        return Err(ApiError::validation(format!(
            "`prompt_name` {name:?}: this server has no prompts (sentence-transformers' `prompts`); send null, \
             with the prompt in the text"
        )));
    }
    let (texts, single) = match request.inputs {
        TextOrTexts::Single(text) => (vec![text], true),
        TextOrTexts::Batch(texts) => (texts, false),
    };
    if !single {
        check_count(texts.len(), "inputs", state.options.max_client_batch_size)?;
    }
    // Tokenizing a large text takes a while: not on the server's threads, and under a permit
    // like any model request, so that many of them are a 429 rather than a stall.
    let _permit = state.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            ErrorType::Overloaded,
            "Model is overloaded: too many requests at once (--max-concurrent-requests)",
        )
    })?;
    // Every token of a text as large as the payload limit allows is a large answer (a 2 MB
    // text can be a million tokens, some 150 MB while built): as many at once as there are
    // cores, the others wait their turn.
    let _turn = state
        .tokenizing
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(ErrorType::Unhealthy, "the server is stopping"))?;
    let tokenizers = state.tokenizers.clone();
    let add_special_tokens = request.add_special_tokens;
    let tokens = tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let tokens = tokenizers.whole.tokens(text, add_special_tokens).map_err(|e| {
                    let which = if single { "`inputs`".to_string() } else { format!("`inputs[{i}]`") };
                    ApiError::new(ErrorType::Tokenizer, format!("{which}: {e}"))
                })?;
                Ok(tokens.into_iter().map(SimpleToken::from).collect())
            })
            .collect::<Result<Vec<Vec<SimpleToken>>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization stopped: {e}")))??;
    Ok(Json(tokens))
}

/// The text of each list of ids (one string per list, also for one list).
pub(crate) async fn decode<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<String>>, ApiError> {
    let request: DecodeRequest = parse(body, state.options.payload_limit)?;
    let (lists, single) = match request.ids {
        Ids::Single(ids) => (vec![ids], true),
        Ids::Batch(lists) => (lists, false),
    };
    if !single {
        check_count(lists.len(), "ids", state.options.max_client_batch_size)?;
    }
    let tokenizers = state.tokenizers.clone();
    let texts = lists
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let which = if single { "`ids`".to_string() } else { format!("`ids[{i}]`") };
            if ids.is_empty() {
                return Err(ApiError::new(ErrorType::Empty, format!("{which} cannot be empty")));
            }
            tokenizers.whole.decode(ids, request.skip_special_tokens).map_err(|e| {
                // An id past the vocabulary is the client's mistake.
                ApiError::validation(format!("{which}: {e}"))
            })
        })
        .collect::<Result<Vec<String>, ApiError>>()?;
    Ok(Json(texts))
}
